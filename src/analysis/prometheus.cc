#include "capstan/analysis/prometheus.h"

#include <cmath>
#include <cstdlib>
#include <exception>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "cpprest/http_client.h"
#include "nlohmann/json.hpp"

namespace capstan::analysis {
namespace {

using nlohmann::json;

absl::StatusOr<double> SampleValue(const json& pair) {
  // [ <unix time>, "<value>" ]
  if (!pair.is_array() || pair.size() != 2 || !pair[1].is_string()) {
    return absl::InvalidArgumentError("malformed sample (want [time, \"value\"])");
  }
  const std::string s = pair[1].get<std::string>();
  if (s == "NaN") return std::nan("");
  if (s == "+Inf" || s == "Inf") return HUGE_VAL;
  if (s == "-Inf") return -HUGE_VAL;
  char* end = nullptr;
  const double d = std::strtod(s.c_str(), &end);
  if (end == nullptr || *end != '\0' || s.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("sample value \"", s, "\" is not a number"));
  }
  return d;
}

}  // namespace

absl::StatusOr<Value> ParsePrometheusAnswer(int http_status, const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  std::string error;
  if (j.is_object()) error = j.value("error", "");
  if (http_status != 200) {
    const std::string what =
        absl::StrCat("Prometheus answered HTTP ", http_status, error.empty() ? "" : ": ", error);
    if (http_status == 401) return absl::UnauthenticatedError(what);
    if (http_status == 403) return absl::PermissionDeniedError(what);
    if (http_status == 400 || http_status == 422) return absl::InvalidArgumentError(what);
    return absl::UnavailableError(what);
  }
  if (!j.is_object()) return absl::UnavailableError("Prometheus answered with no JSON object");
  if (j.value("status", "") != "success") {
    return absl::UnavailableError(absl::StrCat("Prometheus query failed: ", error));
  }
  const json data = j.value("data", json::object());
  const std::string type = data.is_object() ? data.value("resultType", "") : "";
  const json result = data.is_object() ? data.value("result", json()) : json();
  if (type == "scalar") {
    absl::StatusOr<double> v = SampleValue(result);
    if (!v.ok()) return v.status();
    return Value::Number(*v);
  }
  if (type == "vector") {
    if (!result.is_array()) return absl::UnavailableError("vector result is not a list");
    std::vector<double> xs;
    for (const json& series : result) {
      if (!series.is_object() || !series.contains("value")) {
        return absl::UnavailableError("vector sample without a value");
      }
      absl::StatusOr<double> v = SampleValue(series["value"]);
      if (!v.ok()) return v.status();
      xs.push_back(*v);
    }
    return Value::Vector(std::move(xs));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("the query returns a ", type.empty() ? "result of no known type" : type,
                   "; a condition needs a scalar or an instant vector"));
}

absl::StatusOr<Value> PrometheusClient::Query(const std::string& address, const std::string& query,
                                              absl::Duration timeout, const PrometheusAuth& auth) {
  HttpCall call;
  call.base = address;
  call.timeout = timeout;
  call.ca_pem = auth.ca_pem;
  call.what = absl::StrCat("Prometheus at ", address);
  try {
    web::uri_builder path("/api/v1/query");
    path.append_query("query", query);
    call.path_and_query = path.to_string();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("query: ", e.what()));
  }
  call.headers.push_back({"Accept", "application/json"});
  if (!auth.bearer_token.empty()) {
    call.headers.push_back({"Authorization", absl::StrCat("Bearer ", auth.bearer_token)});
  } else if (!auth.username.empty()) {
    call.headers.push_back(
        {"Authorization", absl::StrCat("Basic ", absl::Base64Escape(absl::StrCat(auth.username, ":",
                                                                                 auth.password)))});
  }
  absl::StatusOr<HttpAnswer> answer = http_.Send(call);
  if (!answer.ok()) return answer.status();
  return ParsePrometheusAnswer(answer->status, answer->body);
}

}  // namespace capstan::analysis
