// Upload and Download: the streaming handlers that move tensor bytes.
#include <algorithm>
#include <exception>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "rpc/chunk_codec.h"
#include "rpc/proto_convert.h"
#include "rpc/service.h"

namespace tensord {
namespace {

// Receives an UploadRequest stream and writes each chunk straight into the
// storage allocated when the header arrived. On any error, cancellation or
// disconnect the partial storage is released at once.
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
    absl::Status status;
    try {
      status = Consume();
    } catch (const std::exception& e) {
      status = absl::InternalError(absl::StrCat("upload: unexpected error: ", e.what()));
    }
    if (!status.ok()) {
      Fail(status);
      return;
    }
    StartRead(&message_);
  }

  void OnDone() override { delete this; }

 private:
  absl::Status Consume() {
    ASSIGN_OR_RETURN(UploadFrame frame, UploadFrame::Parse(message_));
    message_.Clear();  // drop our reference to the receive slices early
    if (frame.is_header()) return StartTensor(frame.header());
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

  absl::Status StartTensor(const v1::UploadHeader& header) {
    if (tensor_) return absl::InvalidArgumentError("upload: a second header was sent");
    ASSIGN_OR_RETURN(const DType dtype, FromProto(header.dtype()));
    Dims shape = ToDims(header.shape());
    ASSIGN_OR_RETURN(const int64_t numel, CheckedNumel(shape, ItemSize(dtype)));
    (void)numel;
    Dims strides = header.strides().empty() ? ContiguousStrides(shape) : ToDims(header.strides());
    ASSIGN_OR_RETURN(const int64_t span, SpanElements(shape, strides));
    int64_t nbytes = 0;
    if (__builtin_mul_overflow(span, ItemSize(dtype), &nbytes)) {
      return absl::InvalidArgumentError(absl::StrCat("upload: strides ", DimsToString(strides),
                                                     " span more than 2^63 bytes"));
    }
    ASSIGN_OR_RETURN(
        std::shared_ptr<Storage> storage,
        Storage::Allocate(nbytes, Device::Cpu(), service_->budget(),
                          absl::StrCat("upload of a ", DTypeName(dtype), " tensor of shape ",
                                       DimsToString(shape))));
    ASSIGN_OR_RETURN(Tensor tensor,
                     Tensor::Make(std::move(storage), dtype, std::move(shape),
                                  std::move(strides), 0));
    tensor_ = std::move(tensor);
    expected_ = nbytes;
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
  std::optional<Tensor> tensor_;
  int64_t expected_ = 0;
  int64_t received_ = 0;
};

// Streams a header, then the tensor's storage span in kDownloadChunkBytes
// frames that reference the storage (no copy). One write is in flight at a
// time, which is gRPC's flow control: a slow client slows the server.
//
// A request with `after_command` waits until the session's stream has run
// that command (exec::Stream::WhenReached) before it looks the tensor up.
// While it waits, the reactor is reachable from the waiter through a gate;
// whoever takes it from the gate first (the waiter, or OnCancel) is the one
// that goes on, so the reactor is finished exactly once.
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
    frame_ = EncodeChunkFrame(tensor_->storage(), span_start_ + sent_, static_cast<size_t>(n));
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
  struct Gate {
    absl::Mutex mu;
    DownloadReactor* reactor ABSL_GUARDED_BY(mu);
    DownloadReactor* Take() {
      absl::MutexLock lock(&mu);
      return std::exchange(reactor, nullptr);
    }
  };

  absl::Status Start(TensordService* service, grpc::CallbackServerContext* context,
                     const grpc::ByteBuffer& request_bytes) {
    ASSIGN_OR_RETURN(session_, service->SessionFor(context));
    RETURN_IF_ERROR(DecodeMessage(request_bytes, &request_));
    if (request_.chunk_bytes() > 0) {
      chunk_bytes_ = std::clamp(request_.chunk_bytes(), kMinDownloadChunkBytes,
                                kMaxDownloadChunkBytes);
    }
    if (request_.after_command() == 0) return Begin();
    gate_ = std::make_shared<Gate>();
    gate_->reactor = this;
    session_->stream()->WhenReached(
        request_.after_command(), [gate = gate_](const absl::Status& status) {
          DownloadReactor* reactor = gate->Take();
          if (reactor == nullptr) return;  // cancelled meanwhile
          absl::Status begun = status.ok() ? reactor->Begin() : status;
          if (!begun.ok()) reactor->Finish(ToGrpcStatus(begun));
        });
    return absl::OkStatus();
  }

  // Looks the tensor up and writes the header.
  absl::Status Begin() {
    ASSIGN_OR_RETURN(Tensor tensor, session_->Get(request_.handle()));
    // Strides are non-negative, so element [0,...,0] starts the span.
    span_start_ = tensor.data();
    span_bytes_ = tensor.span_elements() * tensor.itemsize();
    v1::DownloadResponse response;
    v1::DownloadHeader* header = response.mutable_header();
    FillMeta(request_.handle(), tensor, header->mutable_meta());
    header->mutable_strides()->Assign(tensor.strides().begin(), tensor.strides().end());
    header->set_offset(0);
    header->set_span_nbytes(span_bytes_);
    tensor_ = std::move(tensor);
    frame_ = EncodeMessage(response);
    StartWrite(&frame_);
    return absl::OkStatus();
  }

  ServerMetrics* const metrics_;
  std::shared_ptr<Session> session_;
  v1::DownloadRequest request_;
  std::shared_ptr<Gate> gate_;    // set while the download waits for a command
  std::optional<Tensor> tensor_;  // keeps the storage alive for the whole call
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
