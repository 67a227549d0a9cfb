// Hand-written framing of the Upload and Download streams.
//
// Both streams carry protobuf messages with a `oneof {header = 1; bytes
// chunk = 2}`. Headers are ordinary protobuf. Chunks are framed by hand so
// that tensor bytes never pass through a protobuf object:
// - Download: a chunk frame is a 1-6 byte prefix (tag 0x12 + varint length)
//   followed by a gRPC slice that points straight into the tensor's storage
//   and holds a reference to it (the technique of Arrow Flight's
//   SerializationTraits). No byte of the tensor is copied until the
//   transport writes it to the socket.
// - Upload: UploadFrame parses one received message without flattening it,
//   so a chunk's payload is copied exactly once, from gRPC's receive slices
//   into the final storage.
// A standard protobuf client sees ordinary messages either way.
//
// Thread-safety: stateless functions; an UploadFrame is used by one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include "absl/status/statusor.h"
#include "core/storage.h"
#include "tensord/v1/tensord.pb.h"

namespace tensord {

// Default download chunk size, chosen with `bench/transfer.py --sweep` on
// loopback (2 cores, Python client): 256 KiB and 4 MiB chunks were slower
// than 1 and 2 MiB in both directions, and 1 and 2 MiB tied within noise;
// 1 MiB keeps each in-flight message, and so the client's transient
// memory, smaller. Clients may ask for another size per download.
inline constexpr int64_t kDownloadChunkBytes = int64_t{1} << 20;
inline constexpr int64_t kMinDownloadChunkBytes = int64_t{64} << 10;
inline constexpr int64_t kMaxDownloadChunkBytes = int64_t{16} << 20;

// Largest header accepted in an upload: far above any legal one (64 dims).
inline constexpr size_t kMaxUploadHeaderBytes = 64 * 1024;

// Serialises a small message into a single-slice ByteBuffer.
grpc::ByteBuffer EncodeMessage(const google::protobuf::MessageLite& message);

// Parses a whole small message (a request) out of a ByteBuffer.
absl::Status DecodeMessage(const grpc::ByteBuffer& buffer, google::protobuf::MessageLite* message);

// A DownloadResponse{chunk = data[0, n)} that references `owner`'s bytes and
// holds a copy of `owner` until gRPC is done with them.
// REQUIRES: data..data+n lies inside the bytes `owner` pins.
grpc::ByteBuffer EncodeChunkFrame(const Storage::Snapshot& owner, const std::byte* data,
                                  size_t n);

// One parsed UploadRequest.
class UploadFrame {
 public:
  // InvalidArgument for anything but exactly one `header` or one `chunk` field.
  static absl::StatusOr<UploadFrame> Parse(const grpc::ByteBuffer& buffer);

  bool is_header() const { return is_header_; }
  const v1::UploadHeader& header() const { return header_; }
  size_t chunk_size() const { return payload_size_; }
  // Copies the chunk's payload (chunk_size() bytes) to `dst`.
  void CopyChunkTo(std::byte* dst) const;

 private:
  UploadFrame() = default;

  bool is_header_ = false;
  v1::UploadHeader header_;
  std::vector<grpc::Slice> slices_;
  size_t payload_slice_ = 0;   // slice where the payload starts
  size_t payload_offset_ = 0;  // offset of the payload in that slice
  size_t payload_size_ = 0;
};

}  // namespace tensord
