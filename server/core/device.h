// Where a tensor's storage lives. Only the CPU exists today; the CUDA backend
// adds kCuda with a device index. Value type, thread-safe.
#pragma once

#include <string>

#include "absl/strings/str_cat.h"

namespace tensord {

struct Device {
  enum class Type { kCpu, kCuda };
  Type type = Type::kCpu;
  int index = 0;

  static Device Cpu() { return Device{}; }

  std::string ToString() const {
    return type == Type::kCpu ? std::string("cpu") : absl::StrCat("cuda:", index);
  }
  friend bool operator==(const Device&, const Device&) = default;
};

}  // namespace tensord
