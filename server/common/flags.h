// Command-line flags in GNU style (--max-memory 8G, --max-memory=8G), each
// also settable from an environment variable (TENSORD_MAX_MEMORY); the
// command line wins. Values are strings; callers parse and validate them.
// Not thread-safe: used once, at startup.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace tensord {

struct Flag {
  std::string name;        // without the leading dashes, e.g. "max-memory"
  std::string value_name;  // shown in --help, e.g. "SIZE"
  std::string help;
  std::string value;       // holds the default until Parse() replaces it
  bool is_bool = false;    // takes no value on the command line: `--insecure`

  // For boolean flags: "true"/"1"/"yes" (any case) are true.
  bool enabled() const;
};

class FlagSet {
 public:
  FlagSet(std::string program, std::string summary)
      : program_(std::move(program)), summary_(std::move(summary)) {}

  // REQUIRES: names are unique. The pointer stays valid for the FlagSet's life.
  Flag* Add(std::string name, std::string value_name, std::string default_value,
            std::string help);
  // A boolean flag, false unless given (`--name` or `--name=true`).
  Flag* AddBool(std::string name, std::string help);

  // Reads environment variables, then argv. Sets help_requested() for -h/--help.
  // InvalidArgument names an unknown flag or a missing value.
  absl::Status Parse(int argc, char** argv);
  bool help_requested() const { return help_requested_; }
  std::string Usage() const;

  // "max-memory" -> "TENSORD_MAX_MEMORY"
  static std::string EnvName(const std::string& flag_name);

 private:
  Flag* Find(const std::string& name);

  std::string program_;
  std::string summary_;
  std::vector<std::unique_ptr<Flag>> flags_;
  bool help_requested_ = false;
};

}  // namespace tensord
