// Tests of common/byte_size.h (ParseByteSize) and common/flags.h (FlagSet).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "common/byte_size.h"
#include "common/flags.h"
#include "testing.h"

namespace tensord {
namespace {

using ::tensord_testing::IsOk;
using ::tensord_testing::IsOkAndHolds;
using ::tensord_testing::StatusIs;
using ::testing::HasSubstr;

constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

// ---- ParseByteSize -----------------------------------------------------------------------

TEST(ParseByteSizeTest, PlainNumbersAndBinarySuffixes) {
  EXPECT_THAT(ParseByteSize("1024"), IsOkAndHolds(1024));
  EXPECT_THAT(ParseByteSize("0"), IsOkAndHolds(0));
  EXPECT_THAT(ParseByteSize("512K"), IsOkAndHolds(512 << 10));
  EXPECT_THAT(ParseByteSize("512M"), IsOkAndHolds(int64_t{512} << 20));
  EXPECT_THAT(ParseByteSize("8G"), IsOkAndHolds(int64_t{8} << 30));
  EXPECT_THAT(ParseByteSize("2T"), IsOkAndHolds(int64_t{2} << 40));
  EXPECT_THAT(ParseByteSize("1.5G"), IsOkAndHolds(int64_t{3} << 29));
  EXPECT_THAT(ParseByteSize("0.5K"), IsOkAndHolds(512));
}

TEST(ParseByteSizeTest, OptionalByteSuffixCaseAndWhitespace) {
  EXPECT_THAT(ParseByteSize("2KiB"), IsOkAndHolds(2048));
  EXPECT_THAT(ParseByteSize("2KB"), IsOkAndHolds(2048));
  EXPECT_THAT(ParseByteSize("2k"), IsOkAndHolds(2048));
  EXPECT_THAT(ParseByteSize("3mib"), IsOkAndHolds(int64_t{3} << 20));
  EXPECT_THAT(ParseByteSize("100B"), IsOkAndHolds(100));
  EXPECT_THAT(ParseByteSize(" 8G "), IsOkAndHolds(int64_t{8} << 30));
}

TEST(ParseByteSizeTest, FractionsOfAByteAreDropped) {
  EXPECT_THAT(ParseByteSize("1.9"), IsOkAndHolds(1));
  EXPECT_THAT(ParseByteSize("1.0001K"), IsOkAndHolds(1024));
}

TEST(ParseByteSizeTest, RejectsMalformedInputNamingIt) {
  for (const char* text : {"", "abc", "12Q", "M", "KiB", "1.2.3G", "G8", "nan", "inf", "1 2"}) {
    EXPECT_THAT(ParseByteSize(text),
                StatusIs(kInvalid, absl::StrCat("invalid byte size '", text, "'")))
        << "'" << text << "'";
  }
}

TEST(ParseByteSizeTest, RejectsNegativeSizes) {
  EXPECT_THAT(ParseByteSize("-1"), StatusIs(kInvalid, "invalid byte size '-1'"));
  EXPECT_THAT(ParseByteSize("-3G"), StatusIs(kInvalid, "'-3G'"));
  EXPECT_THAT(ParseByteSize("-0.5K"), StatusIs(kInvalid, "'-0.5K'"));
}

TEST(ParseByteSizeTest, RejectsSizesBeyondInt64) {
  EXPECT_THAT(ParseByteSize("9999999T"), StatusIs(kInvalid, "'9999999T'"));
  EXPECT_THAT(ParseByteSize("8388608T"), StatusIs(kInvalid, "'8388608T'"));  // exactly 2^63
  EXPECT_THAT(ParseByteSize("8388607T"), IsOkAndHolds(int64_t{8388607} << 40));
  EXPECT_THAT(ParseByteSize("1e300"), StatusIs(kInvalid, "'1e300'"));
}

// ---- FlagSet ---------------------------------------------------------------------------

// argv for FlagSet::Parse from a list of arguments (the program name first).
class Argv {
 public:
  explicit Argv(std::vector<std::string> args) : args_(std::move(args)) {
    for (std::string& arg : args_) pointers_.push_back(arg.data());
    pointers_.push_back(nullptr);
  }
  int argc() const { return static_cast<int>(args_.size()); }
  char** argv() { return pointers_.data(); }

 private:
  std::vector<std::string> args_;
  std::vector<char*> pointers_;
};

// Sets an environment variable for the life of the object.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, const std::string& value) : name_(std::move(name)) {
    setenv(name_.c_str(), value.c_str(), /*overwrite=*/1);
  }
  ~ScopedEnv() { unsetenv(name_.c_str()); }

 private:
  std::string name_;
};

// Flag names that no real environment sets (TENSORD_UNIT_TEST_...).
class FlagSetTest : public ::testing::Test {
 protected:
  FlagSetTest()
      : flags_("tensord", "A tensor service."),
        port_(flags_.Add("unit-test-port", "PORT", "50051", "port to listen on")),
        memory_(flags_.Add("unit-test-memory", "SIZE", "8G", "memory cap")) {}

  absl::Status Parse(std::vector<std::string> args) {
    args.insert(args.begin(), "tensord");
    Argv argv(std::move(args));
    return flags_.Parse(argv.argc(), argv.argv());
  }

  FlagSet flags_;
  Flag* port_;
  Flag* memory_;
};

TEST_F(FlagSetTest, DefaultsStayWithoutArguments) {
  ASSERT_THAT(Parse({}), IsOk());
  EXPECT_EQ(port_->value, "50051");
  EXPECT_EQ(memory_->value, "8G");
  EXPECT_FALSE(flags_.help_requested());
}

TEST_F(FlagSetTest, EqualsAndSeparateValueForms) {
  ASSERT_THAT(Parse({"--unit-test-port=1", "--unit-test-memory", "2G"}), IsOk());
  EXPECT_EQ(port_->value, "1");
  EXPECT_EQ(memory_->value, "2G");
}

TEST_F(FlagSetTest, ValuesMayContainEqualsOrBeEmpty) {
  ASSERT_THAT(Parse({"--unit-test-port=a=b", "--unit-test-memory="}), IsOk());
  EXPECT_EQ(port_->value, "a=b");
  EXPECT_EQ(memory_->value, "");
}

TEST_F(FlagSetTest, LaterOccurrenceWins) {
  ASSERT_THAT(Parse({"--unit-test-port=1", "--unit-test-port", "2"}), IsOk());
  EXPECT_EQ(port_->value, "2");
}

TEST_F(FlagSetTest, UnknownFlagIsNamed) {
  EXPECT_THAT(Parse({"--bogus=1"}), StatusIs(kInvalid, "unknown flag '--bogus'"));
  EXPECT_THAT(Parse({"--unit-test-portt", "1"}),
              StatusIs(kInvalid, "unknown flag '--unit-test-portt'"));
}

TEST_F(FlagSetTest, MissingValueNamesTheFlag) {
  EXPECT_THAT(Parse({"--unit-test-port"}),
              StatusIs(kInvalid, "flag '--unit-test-port' needs a value (PORT)"));
}

TEST_F(FlagSetTest, PositionalArgumentIsRejected) {
  EXPECT_THAT(Parse({"serve"}), StatusIs(kInvalid, "unexpected argument 'serve'"));
  EXPECT_THAT(Parse({"-p", "1"}), StatusIs(kInvalid, "unexpected argument '-p'"));
}

TEST_F(FlagSetTest, EnvironmentVariableIsTheFallback) {
  ScopedEnv env("TENSORD_UNIT_TEST_MEMORY", "4G");
  ASSERT_THAT(Parse({}), IsOk());
  EXPECT_EQ(memory_->value, "4G");
  EXPECT_EQ(port_->value, "50051");
}

TEST_F(FlagSetTest, CommandLineWinsOverEnvironment) {
  ScopedEnv env("TENSORD_UNIT_TEST_MEMORY", "4G");
  ASSERT_THAT(Parse({"--unit-test-memory=1G"}), IsOk());
  EXPECT_EQ(memory_->value, "1G");
}

TEST_F(FlagSetTest, HelpIsRequestedWithEitherSpelling) {
  ASSERT_THAT(Parse({"--help", "--unit-test-port=7"}), IsOk());
  EXPECT_TRUE(flags_.help_requested());
  EXPECT_EQ(port_->value, "7");  // the rest is still parsed

  FlagSet other("tensord", "summary");
  Argv argv({"tensord", "-h"});
  ASSERT_THAT(other.Parse(argv.argc(), argv.argv()), IsOk());
  EXPECT_TRUE(other.help_requested());
}

TEST_F(FlagSetTest, UsageListsFlagsEnvNamesAndDefaults) {
  const std::string usage = flags_.Usage();
  EXPECT_THAT(usage, HasSubstr("usage: tensord [flags]"));
  EXPECT_THAT(usage, HasSubstr("A tensor service."));
  EXPECT_THAT(usage, HasSubstr("--unit-test-port PORT\n      port to listen on\n"
                               "      env: TENSORD_UNIT_TEST_PORT; default: 50051"));
  EXPECT_THAT(usage, HasSubstr("env: TENSORD_UNIT_TEST_MEMORY; default: 8G"));
  EXPECT_THAT(usage, HasSubstr("-h, --help"));
}

TEST(FlagEnvNameTest, UpperCaseWithUnderscores) {
  EXPECT_EQ(FlagSet::EnvName("max-memory"), "TENSORD_MAX_MEMORY");
  EXPECT_EQ(FlagSet::EnvName("port"), "TENSORD_PORT");
}

}  // namespace
}  // namespace tensord
