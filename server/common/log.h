// Structured logging: one logfmt line per event on stderr,
//   ts=2026-11-25T08:00:00.123Z level=info msg="session expired" session=1a2b3c4d
// `msg` is always quoted; other values only when they need it.
// so that log collectors can parse fields without regexes. Lines below the
// level set by SetLogLevel (--log-level) are dropped.
// Thread-safe: a line is written with one call under a mutex.
#pragma once

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tensord {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// "debug", "info", "warning" (or "warn"), "error".
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name);
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

using LogField = std::pair<absl::string_view, std::string>;

// Writes the line if `level` is enabled. Values that contain spaces, quotes
// or '=' (and every message) are quoted and escaped.
void Log(LogLevel level, absl::string_view message,
         std::initializer_list<LogField> fields = {});

// The logfmt line without timestamp, for tests: `level=info msg="..." k=v`.
std::string FormatLogLine(LogLevel level, absl::string_view message,
                          std::initializer_list<LogField> fields);

}  // namespace tensord
