// Upload and Download: the streaming handlers that move tensor bytes.
#include <algorithm>
#include <exception>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "core/copy.h"
#include "rpc/chunk_codec.h"
#include "rpc/proto_convert.h"
#include "rpc/respond.h"
#include "rpc/service.h"

namespace tensord {
namespace {

// Whoever takes the reactor from a Gate goes on with it: the waiter of a
// transfer ordered after a command (exec::Stream::WhenReached), or
// OnCancel. So the reactor is finished exactly once, and never touched by a
// waiter that fires after it is gone.
template <typename Reactor>
struct Gate {
  explicit Gate(Reactor* r) : reactor(r) {}
  Reactor* Take() {
    absl::MutexLock lock(&mu);
    return std::exchange(reactor, nullptr);
  }
  absl::Mutex mu;
  Reactor* reactor ABSL_GUARDED_BY(mu);
};

// Receives an UploadRequest stream and writes each chunk straight into the
// storage allocated when the header arrived (once the command the header
// names in after_command has run: uploads are ordered like everything the
// session issues, so memory freed before an upload is free for it). On any
// error, cancellation or disconnect the partial storage is released at once.
class UploadReactor final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  UploadReactor(TensordService* service, grpc::CallbackServerContext* context,
                grpc::ByteBuffer* response)
      : service_(service), context_(context), response_(response) {
    absl::StatusOr<std::shared_ptr<Session>> session = service_->SessionFor(context_);
    if (!session.ok()) {
      Fail(session.status());
      return;
    }
    session_ = *std::move(session);
    StartRead(&message_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed the stream, or the call ended
      Complete();
      return;
    }
    absl::Status status = Guarded([&] { return Consume(); });
    if (!status.ok()) {
      Fail(status);
      return;
    }
    if (after_command_ != 0) {  // the header waits for its command; the waiter reads on
      session_->stream()->WhenReached(
          std::exchange(after_command_, 0), [gate = gate_](const absl::Status& reached) {
            UploadReactor* reactor = gate->Take();
            if (reactor == nullptr) return;  // cancelled meanwhile
            absl::Status allocated =
                reached.ok() ? Guarded([&] { return reactor->Allocate(); }) : reached;
            if (!allocated.ok()) {
              reactor->Fail(allocated);
              return;
            }
            reactor->StartRead(&reactor->message_);
          });
      return;
    }
    StartRead(&message_);
  }

  void OnCancel() override {
    if (gate_ != nullptr && gate_->Take() != nullptr) {
      Fail(absl::CancelledError("upload cancelled while waiting for earlier commands"));
    }
  }

  void OnDone() override { delete this; }

 private:
  absl::Status Consume() {
    ASSIGN_OR_RETURN(UploadFrame frame, UploadFrame::Parse(message_));
    message_.Clear();  // drop our reference to the receive slices early
    if (frame.is_header()) {
      RETURN_IF_ERROR(ParseHeader(frame.header()));
      if (frame.header().after_command() == 0 ||
          session_->stream()->reached() >= frame.header().after_command()) {
        return Allocate();
      }
      after_command_ = frame.header().after_command();
      gate_ = std::make_shared<Gate<UploadReactor>>(this);
      return absl::OkStatus();
    }
    if (!tensor_) {
      return absl::InvalidArgumentError("upload: chunk received before the header");
    }
    if (frame.chunk_size() > static_cast<size_t>(expected_ - received_)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "upload: received more than the ", expected_, " bytes that the header describes (",
          Describe(), ")"));
    }
    // The one copy of an uploaded byte: from gRPC's receive buffer into the
    // tensor's final storage.
    frame.CopyChunkTo(tensor_->storage()->data() + received_);
    received_ += static_cast<int64_t>(frame.chunk_size());
    service_->metrics().AddBytesIn(static_cast<int64_t>(frame.chunk_size()));
    return absl::OkStatus();
  }

  // Validates the header and keeps what Allocate needs.
  absl::Status ParseHeader(const v1::UploadHeader& header) {
    if (tensor_ || header_seen_) {
      return absl::InvalidArgumentError("upload: a second header was sent");
    }
    header_seen_ = true;
    ASSIGN_OR_RETURN(dtype_, FromProto(header.dtype()));
    shape_ = ToDims(header.shape());
    ASSIGN_OR_RETURN(const int64_t numel, CheckedNumel(shape_, ItemSize(dtype_)));
    (void)numel;
    strides_ = header.strides().empty() ? ContiguousStrides(shape_) : ToDims(header.strides());
    ASSIGN_OR_RETURN(const int64_t span, SpanElements(shape_, strides_));
    if (__builtin_mul_overflow(span, ItemSize(dtype_), &expected_)) {
      return absl::InvalidArgumentError(absl::StrCat("upload: strides ", DimsToString(strides_),
                                                     " span more than 2^63 bytes"));
    }
    return absl::OkStatus();
  }

  absl::Status Allocate() {
    ASSIGN_OR_RETURN(
        std::shared_ptr<Storage> storage,
        Storage::Allocate(expected_, Device::Cpu(), session_->budget(),
                          absl::StrCat("upload of a ", DTypeName(dtype_), " tensor of shape ",
                                       DimsToString(shape_))));
    ASSIGN_OR_RETURN(Tensor tensor,
                     Tensor::Make(std::move(storage), dtype_, shape_, strides_, 0));
    tensor_ = std::move(tensor);
    return absl::OkStatus();
  }

  void Complete() {
    if (context_->IsCancelled()) {
      Fail(absl::CancelledError("upload cancelled by the client"));
      return;
    }
    if (!tensor_) {
      Fail(absl::InvalidArgumentError("upload: the stream ended without a header"));
      return;
    }
    if (received_ != expected_) {
      Fail(absl::InvalidArgumentError(absl::StrCat("upload: received ", received_,
                                                   " bytes but the header describes ",
                                                   expected_, " (", Describe(), ")")));
      return;
    }
    v1::TensorMeta meta;
    absl::StatusOr<std::string> handle = session_->Put(*tensor_);
    if (!handle.ok()) {
      Fail(handle.status());
      return;
    }
    FillMeta(*handle, *tensor_, &meta);
    *response_ = EncodeMessage(meta);
    tensor_.reset();
    Finish(grpc::Status::OK);
  }

  void Fail(const absl::Status& status) {
    tensor_.reset();  // return the partial storage to the budget now
    Finish(ToGrpcStatus(status));
  }

  std::string Describe() const {
    return absl::StrCat("dtype ", DTypeName(tensor_->dtype()), ", shape ",
                        DimsToString(tensor_->shape()), ", strides ",
                        DimsToString(tensor_->strides()));
  }

  TensordService* const service_;
  grpc::CallbackServerContext* const context_;
  grpc::ByteBuffer* const response_;
  std::shared_ptr<Session> session_;
  grpc::ByteBuffer message_;
  bool header_seen_ = false;
  DType dtype_ = DType::kFloat32;
  Dims shape_;
  Dims strides_;
  uint64_t after_command_ = 0;  // set by a header that must wait, until the wait starts
  std::shared_ptr<Gate<UploadReactor>> gate_;  // set once a header had to wait
  std::optional<Tensor> tensor_;
  int64_t expected_ = 0;
  int64_t received_ = 0;
};

// A view whose storage span is more than twice its own bytes, and over
// 64 KiB, is downloaded compacted: sending the span would move mostly gaps.
// (A view with gaps up to half its span, such as t[:, ::2], keeps its strides.)
bool IsNarrow(const Tensor& t) {
  constexpr int64_t kMinCompactedSpanBytes = 64 << 10;
  const int64_t span_bytes = t.span_elements() * t.itemsize();
  return span_bytes > kMinCompactedSpanBytes && span_bytes > 2 * t.nbytes();
}

// Streams a header, then the tensor's storage span in kDownloadChunkBytes
// frames that reference the storage's bytes (no copy). One write is in
// flight at a time, which is gRPC's flow control: a slow client slows the
// server.
//
// The download takes its place in the session's order: Begin runs through
// exec::Stream::WhenReached, after the command named by `after_command` (or
// at once when 0) and between two commands, and takes a Storage::Snapshot
// there. Commands that later write the tensor in place move it to a copy
// (the rule in core/storage.h), so the client gets the bytes as they were
// at that point, whatever runs while they travel.
class DownloadReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  DownloadReactor(TensordService* service, grpc::CallbackServerContext* context,
                  const grpc::ByteBuffer* request)
      : metrics_(&service->metrics()) {
    absl::Status status = Start(service, context, *request);
    if (!status.ok()) Finish(ToGrpcStatus(status));
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "download: the client went away"));
      return;
    }
    if (sent_ == span_bytes_) {
      Finish(grpc::Status::OK);
      return;
    }
    const int64_t n = std::min(chunk_bytes_, span_bytes_ - sent_);
    frame_ = EncodeChunkFrame(snapshot_, span_start_ + sent_, static_cast<size_t>(n));
    sent_ += n;
    metrics_->AddBytesOut(n);
    StartWrite(&frame_);
  }

  void OnCancel() override {
    // Only a download still waiting for its command is finished here; one
    // that writes learns of the cancellation from OnWriteDone.
    if (gate_ != nullptr && gate_->Take() != nullptr) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "download: cancelled while waiting"));
    }
  }

  void OnDone() override { delete this; }

 private:
  absl::Status Start(TensordService* service, grpc::CallbackServerContext* context,
                     const grpc::ByteBuffer& request_bytes) {
    ASSIGN_OR_RETURN(session_, service->SessionFor(context));
    RETURN_IF_ERROR(DecodeMessage(request_bytes, &request_));
    if (request_.chunk_bytes() > 0) {
      chunk_bytes_ = std::clamp(request_.chunk_bytes(), kMinDownloadChunkBytes,
                                kMaxDownloadChunkBytes);
    }
    gate_ = std::make_shared<Gate<DownloadReactor>>(this);
    session_->stream()->WhenReached(
        request_.after_command(), [gate = gate_](const absl::Status& status) {
          DownloadReactor* reactor = gate->Take();
          if (reactor == nullptr) return;  // cancelled meanwhile
          absl::Status begun = status.ok() ? reactor->Begin() : status;
          if (!begun.ok()) reactor->Finish(ToGrpcStatus(begun));
        });
    return absl::OkStatus();
  }

  // Looks the tensor up, pins its bytes and writes the header. Runs at the
  // download's place in the stream (see above).
  absl::Status Begin() {
    ASSIGN_OR_RETURN(const Tensor tensor, session_->Get(request_.handle()));
    v1::DownloadResponse response;
    v1::DownloadHeader* header = response.mutable_header();
    FillMeta(request_.handle(), tensor, header->mutable_meta());
    // What travels: the storage span, zero-copy, with the view's strides, or,
    // for a narrow view of a much larger span (big[:, 0]), a compact copy of
    // the view's elements alone. That copy costs the view's bytes of server
    // memory for the call; when the budget cannot hold it, the span goes.
    Tensor sent = tensor;
    if (IsNarrow(tensor)) {
      if (absl::StatusOr<Tensor> compact = Clone(tensor); compact.ok()) sent = *std::move(compact);
    }
    // Strides are non-negative, so element [0,...,0] starts the span.
    snapshot_ = sent.storage()->TakeSnapshot();
    span_start_ = snapshot_.get() + (sent.data() - sent.storage()->data());
    span_bytes_ = sent.span_elements() * sent.itemsize();
    header->mutable_strides()->Assign(sent.strides().begin(), sent.strides().end());
    header->set_offset(0);
    header->set_span_nbytes(span_bytes_);
    frame_ = EncodeMessage(response);
    StartWrite(&frame_);
    return absl::OkStatus();
  }

  ServerMetrics* const metrics_;
  std::shared_ptr<Session> session_;
  v1::DownloadRequest request_;
  std::shared_ptr<Gate<DownloadReactor>> gate_;  // set while the download waits for a command
  Storage::Snapshot snapshot_;  // the bytes sent, pinned for the whole call
  const std::byte* span_start_ = nullptr;
  int64_t span_bytes_ = 0;
  int64_t sent_ = 0;
  int64_t chunk_bytes_ = kDownloadChunkBytes;
  grpc::ByteBuffer frame_;
};

}  // namespace

grpc::ServerReadReactor<grpc::ByteBuffer>* TensordService::Upload(
    grpc::CallbackServerContext* context, grpc::ByteBuffer* response) {
  return new UploadReactor(this, context, response);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* TensordService::Download(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  return new DownloadReactor(this, context, request);
}

}  // namespace tensord
