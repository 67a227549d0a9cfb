// Tests of rpc/chunk_codec.h: UploadFrame::Parse on ByteBuffers made of real
// serialized UploadRequests (split into gRPC slices the way a transport may
// deliver them), the zero-copy download frame, and Encode/DecodeMessage.
#include "rpc/chunk_codec.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <grpcpp/impl/grpc_library.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>
#include <gtest/gtest.h>

#include "tensord/v1/tensord.pb.h"
#include "testing.h"

namespace tensord {
namespace {

using ::tensord_testing::IsOk;
using ::tensord_testing::LargeBudget;
using ::tensord_testing::StatusIs;
using ::tensord_testing::ValueOrThrow;
using ::testing::ElementsAre;

constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

// grpc::Slice and grpc::ByteBuffer call into gRPC core through a pointer that
// a GrpcLibraryInitializer sets. libgrpc++'s own static initialisers set it
// too, but only because it is a shared library loaded whole; say so here.
grpc::internal::GrpcLibraryInitializer grpc_library_initializer;

// A ByteBuffer of `bytes` split into slices at `cuts` (ascending offsets).
grpc::ByteBuffer BufferOf(const std::string& bytes, std::vector<size_t> cuts = {}) {
  std::vector<grpc::Slice> slices;
  size_t begin = 0;
  cuts.push_back(bytes.size());
  for (size_t end : cuts) {
    slices.emplace_back(bytes.data() + begin, end - begin);
    begin = end;
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

std::string BytesOf(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) throw std::runtime_error("unreadable ByteBuffer");
  std::string out;
  for (const grpc::Slice& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

std::string PatternBytes(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 7 + 3) & 0xff);
  return s;
}

std::string SerializedChunk(const std::string& payload) {
  v1::UploadRequest request;
  request.set_chunk(payload);
  return request.SerializeAsString();
}

std::string SerializedHeader() {
  v1::UploadRequest request;
  v1::UploadHeader* header = request.mutable_header();
  header->set_dtype(v1::DTYPE_FLOAT32);
  header->add_shape(2);
  header->add_shape(300);
  header->add_strides(300);
  header->add_strides(1);
  return request.SerializeAsString();
}

std::string ChunkOf(const UploadFrame& frame) {
  std::string out(frame.chunk_size(), '\0');
  frame.CopyChunkTo(reinterpret_cast<std::byte*>(out.data()));
  return out;
}

// ---- UploadFrame::Parse: valid messages -------------------------------------------------

TEST(UploadFrameTest, ParsesAHeader) {
  ASSERT_OK_AND_ASSIGN(UploadFrame frame, UploadFrame::Parse(BufferOf(SerializedHeader())));
  EXPECT_TRUE(frame.is_header());
  EXPECT_EQ(frame.chunk_size(), 0u);
  EXPECT_EQ(frame.header().dtype(), v1::DTYPE_FLOAT32);
  EXPECT_THAT(frame.header().shape(), ElementsAre(2, 300));
  EXPECT_THAT(frame.header().strides(), ElementsAre(300, 1));
}

TEST(UploadFrameTest, ParsesAHeaderSplitIntoOneByteSlices) {
  const std::string bytes = SerializedHeader();
  std::vector<size_t> cuts;
  for (size_t i = 1; i < bytes.size(); ++i) cuts.push_back(i);
  ASSERT_OK_AND_ASSIGN(UploadFrame frame, UploadFrame::Parse(BufferOf(bytes, cuts)));
  ASSERT_TRUE(frame.is_header());
  EXPECT_THAT(frame.header().shape(), ElementsAre(2, 300));
}

TEST(UploadFrameTest, ParsesAnEmptyHeader) {
  v1::UploadRequest request;
  request.mutable_header();
  ASSERT_OK_AND_ASSIGN(UploadFrame frame,
                       UploadFrame::Parse(BufferOf(request.SerializeAsString())));
  EXPECT_TRUE(frame.is_header());
  EXPECT_EQ(frame.header().shape_size(), 0);
}

TEST(UploadFrameTest, ParsesAChunkInOneSlice) {
  const std::string payload = PatternBytes(300);  // a 2-byte length varint (0xac 0x02)
  ASSERT_OK_AND_ASSIGN(UploadFrame frame, UploadFrame::Parse(BufferOf(SerializedChunk(payload))));
  EXPECT_FALSE(frame.is_header());
  EXPECT_EQ(frame.chunk_size(), 300u);
  EXPECT_EQ(ChunkOf(frame), payload);
}

TEST(UploadFrameTest, ParsesAChunkWhoseVarintSpansSlices) {
  const std::string payload = PatternBytes(300);
  const std::string bytes = SerializedChunk(payload);
  ASSERT_EQ(bytes.substr(0, 3), std::string("\x12\xac\x02"));
  // Cut between the two varint bytes; then also right after the prefix, and
  // inside the payload several times (with an empty slice thrown in).
  for (const std::vector<size_t>& cuts : std::vector<std::vector<size_t>>{
           {2}, {1, 2}, {2, 3}, {2, 3, 3, 100, 101, 250}, {1, 2, 3, 4, 5}}) {
    ASSERT_OK_AND_ASSIGN(UploadFrame frame, UploadFrame::Parse(BufferOf(bytes, cuts)));
    EXPECT_FALSE(frame.is_header());
    EXPECT_EQ(frame.chunk_size(), 300u);
    EXPECT_EQ(ChunkOf(frame), payload) << "cuts " << cuts.size();
  }
}

TEST(UploadFrameTest, ParsesALargeChunkAtEveryCutPosition) {
  const std::string payload = PatternBytes(20000);  // a 3-byte varint
  const std::string bytes = SerializedChunk(payload);
  for (size_t cut = 1; cut < 8; ++cut) {
    ASSERT_OK_AND_ASSIGN(UploadFrame frame, UploadFrame::Parse(BufferOf(bytes, {cut, cut + 4096})));
    EXPECT_EQ(frame.chunk_size(), 20000u) << "cut at " << cut;
    EXPECT_EQ(ChunkOf(frame), payload) << "cut at " << cut;
  }
}

TEST(UploadFrameTest, ParsesAnEmptyChunk) {
  ASSERT_OK_AND_ASSIGN(UploadFrame frame, UploadFrame::Parse(BufferOf(SerializedChunk(""))));
  EXPECT_FALSE(frame.is_header());
  EXPECT_EQ(frame.chunk_size(), 0u);
  std::byte untouched{0x5a};
  frame.CopyChunkTo(&untouched);
  EXPECT_EQ(untouched, std::byte{0x5a});
}

// ---- UploadFrame::Parse: malformed messages ----------------------------------------------

TEST(UploadFrameTest, RejectsAnEmptyMessage) {
  EXPECT_THAT(UploadFrame::Parse(BufferOf("")),
              StatusIs(kInvalid, "upload: empty message (neither `header` nor `chunk` is set)"));
  EXPECT_THAT(UploadFrame::Parse(grpc::ByteBuffer()), StatusIs(kInvalid, "unreadable"));
}

TEST(UploadFrameTest, RejectsAnUnknownTag) {
  EXPECT_THAT(UploadFrame::Parse(BufferOf(std::string("\x1a\x01x", 3))),
              StatusIs(kInvalid, "unexpected field tag 0x1a"));
  // Field 2 with the varint wire type instead of length-delimited.
  EXPECT_THAT(UploadFrame::Parse(BufferOf(std::string("\x10\x05", 2))),
              StatusIs(kInvalid, "unexpected field tag 0x10"));
}

TEST(UploadFrameTest, RejectsTwoFieldsInOneMessage) {
  const std::string two = SerializedHeader() + SerializedChunk("abc");
  EXPECT_THAT(UploadFrame::Parse(BufferOf(two)),
              StatusIs(kInvalid, "exactly one field is expected"));
  const std::string two_chunks = SerializedChunk("abc") + SerializedChunk("de");
  EXPECT_THAT(
      UploadFrame::Parse(BufferOf(two_chunks, {3})),
      StatusIs(kInvalid, "message of 9 bytes declares a 3-byte field after a 2-byte prefix"));
}

TEST(UploadFrameTest, RejectsATruncatedOrOverlongVarint) {
  EXPECT_THAT(UploadFrame::Parse(BufferOf(std::string("\x12", 1))),
              StatusIs(kInvalid, "truncated or malformed length varint"));
  EXPECT_THAT(UploadFrame::Parse(BufferOf(std::string("\x12\xac", 2))),
              StatusIs(kInvalid, "truncated or malformed length varint"));
  EXPECT_THAT(UploadFrame::Parse(BufferOf(std::string("\x12") + std::string(11, '\xff') + "\x01")),
              StatusIs(kInvalid, "truncated or malformed length varint"));
}

TEST(UploadFrameTest, RejectsALengthPastTheMessage) {
  EXPECT_THAT(UploadFrame::Parse(BufferOf(std::string("\x12\x05"
                                                      "ab",
                                                      4))),
              StatusIs(kInvalid, "message of 4 bytes declares a 5-byte field"));
}

TEST(UploadFrameTest, RejectsAnOversizedHeader) {
  const size_t n = kMaxUploadHeaderBytes + 1;  // 65537 = 0x81 0x80 0x04
  const std::string bytes = std::string("\x0a\x81\x80\x04", 4) + std::string(n, '\0');
  EXPECT_THAT(UploadFrame::Parse(BufferOf(bytes)),
              StatusIs(kInvalid, "header of 65537 bytes is larger than the 65536-byte limit"));
}

TEST(UploadFrameTest, RejectsAHeaderThatIsNotAnUploadHeader) {
  EXPECT_THAT(UploadFrame::Parse(BufferOf(std::string("\x0a\x02\xff\xff", 4))),
              StatusIs(kInvalid, "header is not a valid UploadHeader message"));
}

// ---- EncodeChunkFrame ---------------------------------------------------------------------

std::shared_ptr<Storage> PatternStorage(size_t n) {
  auto storage =
      ValueOrThrow(Storage::Allocate(static_cast<int64_t>(n), Device::Cpu(), LargeBudget()));
  const std::string bytes = PatternBytes(n);
  std::memcpy(storage->data(), bytes.data(), n);
  return storage;
}

TEST(EncodeChunkFrameTest, ParsesAsADownloadResponseChunk) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{127}, size_t{128}, size_t{300}, size_t{20000}}) {
    auto storage = PatternStorage(20010);
    const grpc::ByteBuffer frame = EncodeChunkFrame(storage->TakeSnapshot(), storage->data() + 10, n);
    v1::DownloadResponse response;
    ASSERT_TRUE(response.ParseFromString(BytesOf(frame))) << n;
    EXPECT_EQ(response.kind_case(), v1::DownloadResponse::kChunk) << n;
    EXPECT_EQ(response.chunk(), PatternBytes(20010).substr(10, n)) << n;
    EXPECT_EQ(frame.Length(), response.ByteSizeLong()) << n;
  }
}

TEST(EncodeChunkFrameTest, PointsIntoTheStorageWithoutCopying) {
  auto storage = PatternStorage(4096);
  const grpc::ByteBuffer frame = EncodeChunkFrame(storage->TakeSnapshot(), storage->data() + 64, 1000);
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(frame.Dump(&slices).ok());
  ASSERT_EQ(slices.size(), 2u);
  EXPECT_EQ(slices[0].size(), 3u);  // tag + 2-byte varint
  EXPECT_EQ(reinterpret_cast<const std::byte*>(slices[1].begin()), storage->data() + 64);
  EXPECT_EQ(slices[1].size(), 1000u);
}

TEST(EncodeChunkFrameTest, FrameKeepsTheBytesAlive) {
  auto budget = std::make_shared<MemoryBudget>(1 << 20);
  auto storage = ValueOrThrow(Storage::Allocate(5000, Device::Cpu(), budget));
  std::memset(storage->data(), 0x42, 5000);
  std::optional<grpc::ByteBuffer> frame =
      EncodeChunkFrame(storage->TakeSnapshot(), storage->data(), 5000);
  storage.reset();
  EXPECT_EQ(budget->in_use(), 5056) << "the frame must keep the bytes (79 blocks of 64)";
  v1::DownloadResponse response;
  ASSERT_TRUE(response.ParseFromString(BytesOf(*frame)));
  EXPECT_EQ(response.chunk(), std::string(5000, '\x42'));
  frame.reset();
  EXPECT_EQ(budget->in_use(), 0) << "destroying the frame must release the bytes";
}

TEST(EncodeChunkFrameTest, AWriteWhileTheFrameIsOutGoesToACopy) {
  auto budget = std::make_shared<MemoryBudget>(1 << 20);
  auto storage = ValueOrThrow(Storage::Allocate(5000, Device::Cpu(), budget));
  std::memset(storage->data(), 0x42, 5000);
  const grpc::ByteBuffer frame = EncodeChunkFrame(storage->TakeSnapshot(), storage->data(), 5000);
  ASSERT_TRUE(storage->PrepareWrite("test").ok());
  std::memset(storage->data(), 0x17, 5000);
  v1::DownloadResponse response;
  ASSERT_TRUE(response.ParseFromString(BytesOf(frame)));
  EXPECT_EQ(response.chunk(), std::string(5000, '\x42'));
}

// ---- EncodeMessage, DecodeMessage ------------------------------------------------------------

TEST(MessageCodecTest, RoundTrip) {
  v1::DownloadRequest request;
  request.set_handle("0123456789abcdef0123456789abcdef");
  v1::DownloadRequest decoded;
  ASSERT_THAT(DecodeMessage(EncodeMessage(request), &decoded), IsOk());
  EXPECT_EQ(decoded.handle(), request.handle());
}

TEST(MessageCodecTest, DecodesAMessageSpreadOverSlices) {
  v1::UploadRequest request;
  request.set_chunk(PatternBytes(1000));
  v1::UploadRequest decoded;
  ASSERT_THAT(DecodeMessage(BufferOf(request.SerializeAsString(), {1, 2, 500}), &decoded), IsOk());
  EXPECT_EQ(decoded.chunk(), PatternBytes(1000));
}

TEST(MessageCodecTest, RejectsGarbageNamingTheType) {
  v1::DownloadRequest decoded;
  EXPECT_THAT(DecodeMessage(BufferOf(std::string("\xff\xff\xff", 3)), &decoded),
              StatusIs(kInvalid, "request is not a valid tensord.v1.DownloadRequest message"));
  EXPECT_THAT(DecodeMessage(grpc::ByteBuffer(), &decoded),
              StatusIs(kInvalid, "unreadable request"));
}

}  // namespace
}  // namespace tensord
