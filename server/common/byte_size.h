// Parsing of human-readable byte sizes for flags such as --max-memory.
#pragma once

#include <cstdint>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace tensord {

// "1024", "512K", "512M", "8G", "1.5G", "2T" (binary multiples; an optional
// trailing "B" or "iB" is accepted). InvalidArgument for anything else,
// negative values and sizes beyond int64.
absl::StatusOr<int64_t> ParseByteSize(absl::string_view text);

}  // namespace tensord
