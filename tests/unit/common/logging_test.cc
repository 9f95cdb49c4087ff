#include "capstan/common/logging.h"

#include "gtest/gtest.h"

namespace capstan {
namespace {

TEST(InitLogging, AcceptsKnownLevels) {
  for (const char* level : {"trace", "debug", "info", "warn", "error", "off"}) {
    SCOPED_TRACE(level);
    EXPECT_TRUE(InitLogging(level, LogFormat::kText).ok());
  }
}

TEST(InitLogging, RejectsUnknownLevelWithClearMessage) {
  absl::Status s = InitLogging("verbose", LogFormat::kJson);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("\"verbose\""), std::string::npos);
}

}  // namespace
}  // namespace capstan
