#include "capstan/analysis/prometheus.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace capstan::analysis {
namespace {

TEST(PrometheusAnswerTest, Parses) {
  struct Case {
    std::string name;
    int status;
    std::string body;
    std::string want;  // Value::ToString(), or the error message's start
    absl::StatusCode code = absl::StatusCode::kOk;
  };
  const std::vector<Case> cases = {
      {"scalar", 200,
       R"({"status":"success","data":{"resultType":"scalar","result":[1700000000.1,"0.31"]}})",
       "0.31"},
      {"vector of two", 200,
       R"({"status":"success","data":{"resultType":"vector","result":[
           {"metric":{"revision":"a"},"value":[1,"0.2"]},{"metric":{},"value":[1,"0.4"]}]}})",
       "[0.2, 0.4]"},
      {"empty vector", 200, R"({"status":"success","data":{"resultType":"vector","result":[]}})",
       "[]"},
      {"NaN", 200,
       R"({"status":"success","data":{"resultType":"vector","result":[{"value":[1,"NaN"]}]}})",
       "[NaN]"},
      {"Inf", 200, R"({"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}})",
       "+Inf"},
      {"matrix", 200, R"({"status":"success","data":{"resultType":"matrix","result":[]}})",
       "the query returns a matrix", absl::StatusCode::kInvalidArgument},
      {"bad query", 400, R"({"status":"error","errorType":"bad_data","error":"parse error"})",
       "Prometheus answered HTTP 400: parse error", absl::StatusCode::kInvalidArgument},
      {"server error", 503, "down", "Prometheus answered HTTP 503", absl::StatusCode::kUnavailable},
      {"unauthorized", 401, "", "Prometheus answered HTTP 401", absl::StatusCode::kUnauthenticated},
      {"not json", 200, "<html>", "Prometheus answered with no JSON object",
       absl::StatusCode::kUnavailable},
      {"malformed sample", 200,
       R"({"status":"success","data":{"resultType":"scalar","result":[1,"abc"]}})",
       "sample value \"abc\" is not a number", absl::StatusCode::kInvalidArgument},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<Value> v = ParsePrometheusAnswer(c.status, c.body);
    if (c.code == absl::StatusCode::kOk) {
      ASSERT_TRUE(v.ok()) << v.status();
      EXPECT_EQ(v->ToString(), c.want);
    } else {
      ASSERT_FALSE(v.ok());
      EXPECT_EQ(v.status().code(), c.code) << v.status();
      EXPECT_TRUE(absl::StartsWith(v.status().message(), c.want)) << v.status();
    }
  }
}

// Nothing listens on the port: an error naming the address, not an exception.
TEST(PrometheusClientTest, ConnectionRefusedIsAnError) {
  HttpPool http;
  PrometheusClient client(http);
  absl::StatusOr<Value> v = client.Query("http://127.0.0.1:1", "up", absl::Seconds(2),
                                         PrometheusAuth{"s3cret", "", "", ""});
  ASSERT_FALSE(v.ok());
  EXPECT_TRUE(absl::StrContains(v.status().message(), "Prometheus at http://127.0.0.1:1"))
      << v.status();
  EXPECT_FALSE(absl::StrContains(v.status().message(), "s3cret"));
}

}  // namespace
}  // namespace capstan::analysis
