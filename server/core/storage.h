// Storage: one refcounted, 64-byte-aligned block of tensor bytes, charged to a
// MemoryBudget for as long as it lives. Blocks of 1 MiB and more are kept
// in a small process-wide cache (256 MiB at most) when freed and handed to
// the next storage of the same size: their bytes are NOT zeroed.
//
// Views share a Storage through std::shared_ptr, and so do in-flight download
// chunks: the bytes stay valid until the last reference is gone, even if the
// tensor that owned them was freed meanwhile.
//
// Thread-safety: MemoryBudget is fully thread-safe. A Storage's bytes are not
// synchronised; writers (upload, copies) fill a Storage before any other
// thread can reach it.
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
  const std::shared_ptr<MemoryBudget>& budget() const { return budget_; }

  // Counts in-place writes to the bytes, like PyTorch's version counter: a
  // backward node remembers the versions of the tensors it saved and refuses
  // to run if one was overwritten since. Writers that can run after the
  // storage was shared (in-place ops, optimizer steps) bump it.
  uint64_t version() const { return version_.load(std::memory_order_acquire); }
  void BumpVersion() { version_.fetch_add(1, std::memory_order_acq_rel); }

 private:
  Storage(std::byte* data, int64_t nbytes, int64_t capacity, Device device,
          std::shared_ptr<MemoryBudget> budget)
      : data_(data), nbytes_(nbytes), capacity_(capacity), device_(device),
        budget_(std::move(budget)) {}

  std::byte* const data_;  // never null, even for 0 bytes
  const int64_t nbytes_;
  const int64_t capacity_;  // bytes allocated (nbytes padded to the alignment)
  const Device device_;
  const std::shared_ptr<MemoryBudget> budget_;
  std::atomic<uint64_t> version_{0};
};

}  // namespace tensord
