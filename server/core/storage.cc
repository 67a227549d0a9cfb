#include "core/storage.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <cstdlib>
#include <new>

#include "absl/base/const_init.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"

namespace tensord {
namespace {

// Freed blocks of at least kMinBytes, kept for the next allocation of the
// same padded size, up to kMaxBytes in all. A training loop or a repeated
// op allocates the same sizes over and over; a cached block skips the
// page faults and zeroing of fresh pages, and the munmap that would stop
// every thread of the process (GEMM workers included) for a TLB shootdown.
// Cached bytes are not charged to any MemoryBudget (they hold no tensor),
// but they live inside the server's: the cache only keeps what fits in the
// room the budget has left, and gives blocks back as that room shrinks, so
// charged bytes plus cached bytes never exceed --max-memory.
// Every allocation path writes all bytes of its storage before a client
// can read them (EMPTY zero-fills), so a reused block leaks nothing.
class BlockCache {
 public:
  static constexpr int64_t kMinBytes = int64_t{1} << 20;
  static constexpr int64_t kMaxBytes = int64_t{256} << 20;

  static BlockCache& Get() {
    static BlockCache* cache = new BlockCache();
    return *cache;
  }

  // A cached block of exactly `padded` bytes at `alignment`, or null.
  void* Take(int64_t padded, int64_t alignment) {
    if (padded < kMinBytes) return nullptr;
    absl::MutexLock lock(&mu_);
    auto it = blocks_.find(Key{padded, alignment});
    if (it == blocks_.end() || it->second.empty()) return nullptr;
    void* block = it->second.back();
    it->second.pop_back();
    cached_ -= padded;
    return block;
  }

  // Keeps `block` for reuse, evicting other sizes to make room; frees it
  // when it is too small or alone larger than the cache may be, which is
  // kMaxBytes or the budget's free `room`, whichever is less.
  void Put(void* block, int64_t padded, int64_t alignment, int64_t room) {
    const int64_t capacity = std::min(kMaxBytes, room);
    if (padded < kMinBytes || padded > capacity) {
      std::free(block);
      return;
    }
    std::vector<void*> evicted;
    {
      absl::MutexLock lock(&mu_);
      EvictLocked(capacity - padded, evicted);
      blocks_[Key{padded, alignment}].push_back(block);
      cached_ += padded;
    }
    for (void* old : evicted) std::free(old);  // outside the lock: munmap is slow
  }

  int64_t cached() {
    absl::MutexLock lock(&mu_);
    return cached_;
  }

  // Frees cached blocks until at most `room` bytes stay cached.
  void TrimTo(int64_t room) {
    if (room >= kMaxBytes) return;  // the cache never holds more: no lock needed
    std::vector<void*> evicted;
    {
      absl::MutexLock lock(&mu_);
      if (cached_ <= room) return;
      EvictLocked(room, evicted);
    }
    for (void* old : evicted) std::free(old);
  }

 private:
  struct Key {
    int64_t padded;
    int64_t alignment;
    bool operator==(const Key& other) const {
      return padded == other.padded && alignment == other.alignment;
    }
    template <typename H>
    friend H AbslHashValue(H h, const Key& key) {
      return H::combine(std::move(h), key.padded, key.alignment);
    }
  };
  void EvictLocked(int64_t keep, std::vector<void*>& evicted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (auto it = blocks_.begin(); cached_ > keep && it != blocks_.end(); ++it) {
      while (!it->second.empty() && cached_ > keep) {
        evicted.push_back(it->second.back());
        it->second.pop_back();
        cached_ -= it->first.padded;
      }
    }
  }

  absl::Mutex mu_;
  absl::flat_hash_map<Key, std::vector<void*>> blocks_ ABSL_GUARDED_BY(mu_);
  int64_t cached_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::Status MemoryBudget::Reserve(int64_t bytes, absl::string_view what) {
  int64_t current = in_use_.load(std::memory_order_relaxed);
  do {
    if (bytes > limit_ - current) {
      return absl::ResourceExhaustedError(absl::StrCat(
          what, " needs ", bytes, " bytes but only ", limit_ - current, " of the ",
          limit_, "-byte ", flag_, " are free"));
    }
  } while (!in_use_.compare_exchange_weak(current, current + bytes,
                                          std::memory_order_relaxed));
  if (parent_ != nullptr) {
    if (absl::Status status = parent_->Reserve(bytes, what); !status.ok()) {
      in_use_.fetch_sub(bytes, std::memory_order_relaxed);
      return status;
    }
  }
  return absl::OkStatus();
}

void MemoryBudget::Release(int64_t bytes) {
  in_use_.fetch_sub(bytes, std::memory_order_relaxed);
  if (parent_ != nullptr) parent_->Release(bytes);
}

// One allocation. It lives as long as the Storage that uses it or the last
// snapshot of it, whichever is later, and only then goes back to the cache
// and uncharges its budget.
struct Storage::Block {
  Block(std::byte* data, int64_t capacity, int64_t alignment, std::shared_ptr<MemoryBudget> budget)
      : data(data), capacity(capacity), alignment(alignment), budget(std::move(budget)) {}
  ~Block() {
    budget->Release(capacity);
    BlockCache::Get().Put(data, capacity, alignment, budget->room());
  }
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;

  std::byte* const data;
  const int64_t capacity;  // bytes allocated (nbytes padded to the alignment)
  const int64_t alignment;
  const std::shared_ptr<MemoryBudget> budget;
  // Open snapshots. Released with release order by readers on any thread
  // and read with acquire order by the writer, so a reader's last read of
  // the bytes happens before a write that finds no snapshot.
  std::atomic<int64_t> pins{0};
};

namespace {

std::atomic<int64_t> copied_on_write{0};

// Allocates and charges one block of `nbytes`.
absl::StatusOr<std::shared_ptr<Storage::Block>> AllocateBlock(
    int64_t nbytes, const std::shared_ptr<MemoryBudget>& budget, absl::string_view what) {
  if (nbytes > INT64_MAX - kHugePageBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(what, " of ", nbytes, " bytes is too large"));
  }
  // Large blocks are aligned to 2 MiB and marked for transparent huge pages:
  // filling a fresh 256 MiB upload then takes 128 page faults instead of
  // 65536, which measurably speeds up uploads (bench/transfer.py). Small
  // blocks keep the 64-byte alignment every tensor gets.
  const int64_t alignment = nbytes >= kHugePageBytes ? kHugePageBytes : kStorageAlignment;
  // aligned_alloc wants a size that is a multiple of the alignment, and > 0 so
  // that empty tensors still get a distinct, valid pointer.
  const int64_t padded =
      std::max<int64_t>(alignment, (nbytes + alignment - 1) / alignment * alignment);
  // The budget is charged what is allocated, padding included.
  if (absl::Status s = budget->Reserve(padded, what); !s.ok()) return s;
  void* data = BlockCache::Get().Take(padded, alignment);
  BlockCache::Get().TrimTo(budget->room());  // the cache keeps only what the budget has free
  if (data == nullptr) {
    data = std::aligned_alloc(static_cast<size_t>(alignment), static_cast<size_t>(padded));
    if (data != nullptr && alignment == kHugePageBytes) {
      madvise(data, static_cast<size_t>(padded), MADV_HUGEPAGE);  // a hint; failure is harmless
    }
  }
  if (data == nullptr) {
    budget->Release(padded);
    return absl::ResourceExhaustedError(
        absl::StrCat(what, ": the system could not allocate ", nbytes, " bytes"));
  }
  return std::make_shared<Storage::Block>(static_cast<std::byte*>(data), padded, alignment,
                                          budget);
}

// What a Snapshot owns: one pin on the block, and the block itself.
struct Pin {
  explicit Pin(std::shared_ptr<Storage::Block> b) : block(std::move(b)) {
    block->pins.fetch_add(1, std::memory_order_relaxed);
  }
  ~Pin() { block->pins.fetch_sub(1, std::memory_order_release); }
  Pin(const Pin&) = delete;
  Pin& operator=(const Pin&) = delete;
  const std::shared_ptr<Storage::Block> block;
};

}  // namespace

Storage::Storage(std::shared_ptr<Block> block, int64_t nbytes, Device device)
    : block_(std::move(block)), data_(block_->data), nbytes_(nbytes), device_(device) {}

Storage::~Storage() = default;  // the block goes when its last snapshot does

const std::shared_ptr<MemoryBudget>& Storage::budget() const { return block_->budget; }

absl::StatusOr<std::shared_ptr<Storage>> Storage::Allocate(
    int64_t nbytes, Device device, std::shared_ptr<MemoryBudget> budget,
    absl::string_view what) {
  if (nbytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat("negative storage size ", nbytes));
  }
  if (device.type != Device::Type::kCpu) {
    return absl::UnimplementedError(
        absl::StrCat("device ", device.ToString(), " is not available in this build"));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Block> block, AllocateBlock(nbytes, budget, what));
  return std::shared_ptr<Storage>(new Storage(std::move(block), nbytes, device));
}

Storage::Snapshot Storage::TakeSnapshot() {
  auto pin = std::make_shared<Pin>(block_);
  return Snapshot(std::move(pin), data_);  // aliasing: points at the bytes, owns the pin
}

absl::Status Storage::PrepareWrite(absl::string_view what) {
  if (block_->pins.load(std::memory_order_acquire) == 0) return absl::OkStatus();
  // Copy-on-write: the snapshots keep the old block as it is; this storage
  // (and so every view of it) moves to a copy, which the writer then changes.
  // Two copies exist until the last snapshot goes: that is the cost of a
  // consistent download, and the budget is charged for both.
  ASSIGN_OR_RETURN(std::shared_ptr<Block> copy,
                   AllocateBlock(nbytes_, block_->budget,
                                 absl::StrCat(what, ": copy of a tensor being downloaded")));
  std::memcpy(copy->data, block_->data, static_cast<size_t>(nbytes_));
  copied_on_write.fetch_add(nbytes_, std::memory_order_relaxed);
  block_ = std::move(copy);
  data_ = block_->data;
  return absl::OkStatus();
}

int64_t Storage::cached_bytes() { return BlockCache::Get().cached(); }

int64_t Storage::copies_on_write() { return copied_on_write.load(std::memory_order_relaxed); }

}  // namespace tensord
