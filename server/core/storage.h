// Storage: one refcounted, 64-byte-aligned block of tensor bytes, charged to a
// MemoryBudget for as long as it lives. Blocks of 1 MiB and more are kept
// in a small process-wide cache (256 MiB at most) when freed and handed to
// the next storage of the same size: their bytes are NOT zeroed.
//
// Views share a Storage through std::shared_ptr.
//
// THE CONCURRENCY RULE (the one place it is stated; every writer and reader
// of tensor bytes follows it):
//
//  1. A session's commands run one at a time, in its order, on its
//     exec::Stream. Only they read or write the bytes of the tensors that
//     already exist, so commands never race each other.
//  2. A new storage (an upload, an op's output) is written by the one thread
//     that creates it, before any other thread can reach it.
//  3. A reader outside the stream (a download streaming zero-copy from the
//     bytes while later commands run) takes a Snapshot at its place in the
//     stream's order (exec::Stream::WhenReached runs it between two tasks).
//     The snapshot pins the bytes as they were at that point.
//  4. Every command that writes bytes that already exist (in-place ops,
//     optimizer steps, gradient accumulation, zero_grad) calls
//     PrepareWrite(t, what) (core/tensor.h) before writing. When snapshots
//     pin the storage's block, the storage moves to a fresh copy of it
//     (copy-on-write, charged to the same budget) and the writer writes
//     there; the pinned block stays unchanged until its last snapshot goes.
//
// So a download sees the tensor exactly as it was at its place in the
// session's order, never a torn mix, and never stalls the writer; the price
// is one copy of the tensor, only when a write meets a download in flight.
//
// Thread-safety: MemoryBudget is fully thread-safe. Snapshots may be
// released on any thread. data(), TakeSnapshot and PrepareWrite follow the
// rule above (they run on the session's stream, or before the storage is
// shared).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/device.h"

namespace tensord {

inline constexpr int64_t kStorageAlignment = 64;
inline constexpr int64_t kHugePageBytes = int64_t{2} << 20;

// Caps the bytes of all storage held at once: the server's (--max-memory),
// or one session's (--session-max-memory), which also charges its parent,
// the server's, so that one client cannot take the whole server.
class MemoryBudget {
 public:
  explicit MemoryBudget(int64_t limit_bytes, std::shared_ptr<MemoryBudget> parent = nullptr,
                        std::string flag = "--max-memory")
      : limit_(limit_bytes), parent_(std::move(parent)), flag_(std::move(flag)) {}

  // Charges `bytes` here and in the parent, or fails with RESOURCE_EXHAUSTED
  // naming `what`, the limit that refused it and the figures.
  absl::Status Reserve(int64_t bytes, absl::string_view what);
  void Release(int64_t bytes);

  int64_t in_use() const { return in_use_.load(std::memory_order_relaxed); }
  int64_t limit() const { return limit_; }
  // Bytes free here and in every ancestor: the least of their limits minus use.
  int64_t room() const {
    const int64_t own = limit_ - in_use();
    return parent_ == nullptr ? own : std::min(own, parent_->room());
  }

 private:
  const int64_t limit_;
  const std::shared_ptr<MemoryBudget> parent_;
  const std::string flag_;
  std::atomic<int64_t> in_use_{0};
};

class Storage {
 public:
  // Allocates `nbytes` uninitialised bytes on `device`, charged to `budget`.
  // `what` names the request in the RESOURCE_EXHAUSTED message.
  static absl::StatusOr<std::shared_ptr<Storage>> Allocate(
      int64_t nbytes, Device device, std::shared_ptr<MemoryBudget> budget,
      absl::string_view what = "allocation");

  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  std::byte* data() const { return data_; }
  int64_t nbytes() const { return nbytes_; }
  const Device& device() const { return device_; }
  const std::shared_ptr<MemoryBudget>& budget() const;

  // Counts in-place writes to the bytes, like PyTorch's version counter: a
  // backward node remembers the versions of the tensors it saved and refuses
  // to run if one was overwritten since. Writers that can run after the
  // storage was shared (in-place ops, optimizer steps) bump it.
  uint64_t version() const { return version_.load(std::memory_order_acquire); }
  void BumpVersion() { version_.fetch_add(1, std::memory_order_acq_rel); }

  // Points at data() and keeps those bytes alive and unchanged until the
  // last copy of it is gone (rule 3 above); any thread may release it.
  using Snapshot = std::shared_ptr<const std::byte>;
  Snapshot TakeSnapshot();
  // Rule 4: call before writing bytes others may have seen. When snapshots
  // are open, moves this storage to a copy of its bytes (RESOURCE_EXHAUSTED,
  // naming `what`, when the budget cannot hold the copy). Tensors reach the
  // bytes through data(), so every view follows.
  absl::Status PrepareWrite(absl::string_view what);
  // Bytes copied by PrepareWrite since the process started (for tests and
  // metrics).
  static int64_t copies_on_write();
  // Bytes of freed blocks the process-wide cache holds for reuse now.
  static int64_t cached_bytes();

  struct Block;  // the allocation: bytes, their charge, their snapshot count

 private:
  Storage(std::shared_ptr<Block> block, int64_t nbytes, Device device);

  std::shared_ptr<Block> block_;  // replaced only by PrepareWrite
  std::byte* data_;               // block_'s bytes; never null, even for 0 bytes
  const int64_t nbytes_;
  const Device device_;
  std::atomic<uint64_t> version_{0};
};

}  // namespace tensord
