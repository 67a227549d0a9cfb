#include "common/byte_size.h"

#include <cmath>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace tensord {

absl::StatusOr<int64_t> ParseByteSize(absl::string_view text) {
  std::string s = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(text));
  auto invalid = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid byte size '", text, "' (expected a number with an optional K, M, G or T "
        "suffix, e.g. 512M or 8G)"));
  };
  absl::string_view rest = s;
  if (!absl::ConsumeSuffix(&rest, "IB")) absl::ConsumeSuffix(&rest, "B");
  double multiplier = 1;
  if (!rest.empty()) {
    switch (rest.back()) {
      case 'K': multiplier = 0x1p10; break;
      case 'M': multiplier = 0x1p20; break;
      case 'G': multiplier = 0x1p30; break;
      case 'T': multiplier = 0x1p40; break;
      default: break;
    }
    if (multiplier != 1) rest.remove_suffix(1);
  }
  double value = 0;
  if (rest.empty() || !absl::SimpleAtod(rest, &value) || !std::isfinite(value) || value < 0) {
    return invalid();
  }
  const double bytes = std::floor(value * multiplier);
  if (bytes >= 0x1p63) return invalid();
  return static_cast<int64_t>(bytes);
}

}  // namespace tensord
