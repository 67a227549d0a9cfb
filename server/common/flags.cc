#include "common/flags.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace tensord {

Flag* FlagSet::Add(std::string name, std::string value_name, std::string default_value,
                   std::string help) {
  flags_.push_back(std::make_unique<Flag>(
      Flag{std::move(name), std::move(value_name), std::move(help), std::move(default_value)}));
  return flags_.back().get();
}

Flag* FlagSet::AddBool(std::string name, std::string help) {
  Flag* flag = Add(std::move(name), "", "false", std::move(help));
  flag->is_bool = true;
  return flag;
}

bool Flag::enabled() const {
  const std::string lower = absl::AsciiStrToLower(value);
  return lower == "true" || lower == "1" || lower == "yes";
}

std::string FlagSet::EnvName(const std::string& flag_name) {
  return absl::StrCat("TENSORD_",
                      absl::AsciiStrToUpper(absl::StrReplaceAll(flag_name, {{"-", "_"}})));
}

Flag* FlagSet::Find(const std::string& name) {
  for (auto& flag : flags_) {
    if (flag->name == name) return flag.get();
  }
  return nullptr;
}

absl::Status FlagSet::Parse(int argc, char** argv) {
  for (auto& flag : flags_) {
    if (const char* env = std::getenv(EnvName(flag->name).c_str())) flag->value = env;
  }
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      help_requested_ = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    Flag* flag = Find(name);
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '--", name, "'"));
    }
    if (!has_value && flag->is_bool) {
      value = "true";
    } else if (!has_value) {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(
            absl::StrCat("flag '--", name, "' needs a value (", flag->value_name, ")"));
      }
      value = argv[++i];
    }
    flag->value = value;
  }
  return absl::OkStatus();
}

std::string FlagSet::Usage() const {
  std::string usage = absl::StrCat("usage: ", program_, " [flags]\n\n", summary_, "\n\nflags:\n");
  for (const auto& flag : flags_) {
    absl::StrAppend(&usage, "  --", flag->name, flag->is_bool ? "" : " ", flag->value_name,
                    "\n      ", flag->help, "\n      env: ", EnvName(flag->name));
    if (!flag->value.empty() && !flag->is_bool) {
      absl::StrAppend(&usage, "; default: ", flag->value);
    }
    absl::StrAppend(&usage, "\n");
  }
  absl::StrAppend(&usage, "  -h, --help\n      print this help and exit\n");
  return usage;
}

}  // namespace tensord
