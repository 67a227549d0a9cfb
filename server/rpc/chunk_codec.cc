#include "rpc/chunk_codec.h"

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tensord {
namespace {

constexpr uint8_t kHeaderTag = 0x0a;  // field 1, length-delimited
constexpr uint8_t kChunkTag = 0x12;   // field 2, length-delimited

size_t PutVarint(uint64_t value, uint8_t* out) {
  size_t n = 0;
  while (value >= 0x80) {
    out[n++] = static_cast<uint8_t>(value | 0x80);
    value >>= 7;
  }
  out[n++] = static_cast<uint8_t>(value);
  return n;
}

void ReleaseSnapshot(void* ref) { delete static_cast<Storage::Snapshot*>(ref); }

// Reads bytes across a sequence of slices.
class SliceCursor {
 public:
  explicit SliceCursor(const std::vector<grpc::Slice>& slices) : slices_(slices) { Skip(); }

  bool Next(uint8_t* byte) {
    if (slice_ >= slices_.size()) return false;
    *byte = slices_[slice_].begin()[offset_++];
    Skip();
    return true;
  }
  size_t slice() const { return slice_; }
  size_t offset() const { return offset_; }

 private:
  void Skip() {  // step over exhausted (and empty) slices
    while (slice_ < slices_.size() && offset_ >= slices_[slice_].size()) {
      ++slice_;
      offset_ = 0;
    }
  }
  const std::vector<grpc::Slice>& slices_;
  size_t slice_ = 0;
  size_t offset_ = 0;
};

}  // namespace

grpc::ByteBuffer EncodeMessage(const google::protobuf::MessageLite& message) {
  grpc::Slice slice(message.SerializeAsString());
  return grpc::ByteBuffer(&slice, 1);
}

absl::Status DecodeMessage(const grpc::ByteBuffer& buffer,
                           google::protobuf::MessageLite* message) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return absl::InvalidArgumentError("unreadable request");
  std::string bytes;
  bytes.reserve(buffer.Length());
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  if (!message->ParseFromString(bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("request is not a valid ", message->GetTypeName(), " message"));
  }
  return absl::OkStatus();
}

grpc::ByteBuffer EncodeChunkFrame(const Storage::Snapshot& owner, const std::byte* data,
                                  size_t n) {
  uint8_t prefix[11];
  prefix[0] = kChunkTag;
  const size_t prefix_size = 1 + PutVarint(n, prefix + 1);
  grpc::Slice slices[2] = {
      grpc::Slice(prefix, prefix_size),  // copies the few prefix bytes
      // Zero-copy: the slice points into the pinned bytes and owns a pin.
      grpc::Slice(const_cast<std::byte*>(data), n, &ReleaseSnapshot,
                  new Storage::Snapshot(owner)),
  };
  return grpc::ByteBuffer(slices, 2);
}

absl::StatusOr<UploadFrame> UploadFrame::Parse(const grpc::ByteBuffer& buffer) {
  UploadFrame frame;
  if (!buffer.Dump(&frame.slices_).ok()) {
    return absl::InvalidArgumentError("upload: unreadable message");
  }
  const size_t total = buffer.Length();
  SliceCursor cursor(frame.slices_);
  uint8_t tag = 0;
  if (!cursor.Next(&tag)) {
    return absl::InvalidArgumentError(
        "upload: empty message (neither `header` nor `chunk` is set)");
  }
  if (tag != kHeaderTag && tag != kChunkTag) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "upload: unexpected field tag 0x%02x; an UploadRequest holds `header` (field 1) or "
        "`chunk` (field 2)", tag));
  }
  uint64_t length = 0;
  size_t consumed = 1;
  for (int shift = 0;; shift += 7) {
    uint8_t byte = 0;
    if (shift > 63 || !cursor.Next(&byte)) {
      return absl::InvalidArgumentError("upload: truncated or malformed length varint");
    }
    ++consumed;
    length |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0) break;
  }
  if (length != total - consumed) {
    return absl::InvalidArgumentError(absl::StrCat(
        "upload: message of ", total, " bytes declares a ", length,
        "-byte field after a ", consumed, "-byte prefix; exactly one field is expected"));
  }
  frame.payload_slice_ = cursor.slice();
  frame.payload_offset_ = cursor.offset();
  frame.payload_size_ = length;
  if (tag == kChunkTag) return frame;

  if (length > kMaxUploadHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("upload: header of ", length, " bytes is larger than the ",
                     kMaxUploadHeaderBytes, "-byte limit"));
  }
  std::string bytes(length, '\0');
  frame.CopyChunkTo(reinterpret_cast<std::byte*>(bytes.data()));
  if (!frame.header_.ParseFromString(bytes)) {
    return absl::InvalidArgumentError("upload: header is not a valid UploadHeader message");
  }
  frame.is_header_ = true;
  frame.payload_size_ = 0;
  return frame;
}

void UploadFrame::CopyChunkTo(std::byte* dst) const {
  size_t remaining = payload_size_;
  size_t offset = payload_offset_;
  for (size_t i = payload_slice_; remaining > 0 && i < slices_.size(); ++i) {
    const size_t n = std::min(remaining, slices_[i].size() - offset);
    std::memcpy(dst, slices_[i].begin() + offset, n);
    dst += n;
    remaining -= n;
    offset = 0;
  }
}

}  // namespace tensord
