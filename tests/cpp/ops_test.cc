// Unit tests of the operational pieces: token checks, logfmt lines, metric names.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>

#include "common/log.h"
#include "rpc/auth.h"
#include "rpc/metrics.h"

namespace tensord {
namespace {

using Metadata = std::multimap<grpc::string_ref, grpc::string_ref>;

TEST(TokenAuthenticatorTest, AcceptsOnlyTheBearerToken) {
  TokenAuthenticator auth("s3cret");
  EXPECT_TRUE(auth.Check(Metadata{{"authorization", "Bearer s3cret"}}).ok());
  for (const char* value : {"Bearer s3cre", "Bearer s3cret2", "bearer s3cret", "s3cret",
                            "Bearer ", "Bearer S3CRET"}) {
    absl::Status status = auth.Check(Metadata{{"authorization", value}});
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << value;
    EXPECT_EQ(std::string(status.message()).find("s3cret"), std::string::npos) << value;
  }
  absl::Status missing = auth.Check(Metadata{{"x-api-key", "s3cret"}});
  EXPECT_EQ(missing.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(std::string(missing.message()).find("authorization"), std::string::npos);
}

TEST(TokenAuthenticatorTest, ReadsTheTokenFileWithoutSurroundingWhitespace) {
  const std::string path = ::testing::TempDir() + "/token";
  std::ofstream(path) << "  tok3n \n";
  auto auth = TokenAuthenticator::FromFile(path);
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_TRUE((*auth)->Check(Metadata{{"authorization", "Bearer tok3n"}}).ok());

  std::ofstream(path) << " \n";
  EXPECT_EQ(TokenAuthenticator::FromFile(path).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TokenAuthenticator::FromFile(path + ".missing").status().code(),
            absl::StatusCode::kInvalidArgument);
  std::remove(path.c_str());
}

TEST(LogTest, FormatsLogfmtAndQuotesWhereNeeded) {
  EXPECT_EQ(FormatLogLine(LogLevel::kInfo, "serving", {{"address", "127.0.0.1:1"}}),
            "level=info msg=\"serving\" address=127.0.0.1:1");
  EXPECT_EQ(FormatLogLine(LogLevel::kWarning, "two words", {{"k", "a=\"b\""}, {"e", ""}}),
            "level=warning msg=\"two words\" k=\"a=\\\"b\\\"\" e=\"\"");
}

TEST(LogTest, ParsesLevelsAndFiltersBelowTheSetOne) {
  EXPECT_EQ(*ParseLogLevel("WARN"), LogLevel::kWarning);
  EXPECT_EQ(ParseLogLevel("loud").status().code(), absl::StatusCode::kInvalidArgument);
  SetLogLevel(LogLevel::kWarning);
  EXPECT_FALSE(LogEnabled(LogLevel::kInfo));
  EXPECT_TRUE(LogEnabled(LogLevel::kError));
  SetLogLevel(LogLevel::kInfo);
  EXPECT_TRUE(LogEnabled(LogLevel::kInfo));
}

TEST(MetricsTest, StatusCodesHaveTheirCanonicalNames) {
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::OK), "OK");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::NOT_FOUND), "NOT_FOUND");
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::UNAUTHENTICATED), "UNAUTHENTICATED");
}

}  // namespace
}  // namespace tensord
