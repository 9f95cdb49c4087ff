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

struct PrometheusClient::Client {
  web::http::client::http_client http;
  Client(const std::string& address, const web::http::client::http_client_config& cfg)
      : http(address, cfg) {}
};

PrometheusClient::PrometheusClient() = default;
PrometheusClient::~PrometheusClient() = default;

std::shared_ptr<PrometheusClient::Client> PrometheusClient::ClientFor(const std::string& address,
                                                                      absl::Duration timeout) {
  const std::string key = absl::StrCat(address, "#", absl::ToInt64Milliseconds(timeout));
  absl::MutexLock lock(&mu_);
  auto it = clients_.find(key);
  if (it != clients_.end()) return it->second;
  web::http::client::http_client_config cfg;
  cfg.set_timeout(absl::ToChronoMilliseconds(timeout));
  auto c = std::make_shared<Client>(address, cfg);
  clients_[key] = c;
  return c;
}

absl::StatusOr<Value> PrometheusClient::Query(const std::string& address, const std::string& query,
                                              absl::Duration timeout, const PrometheusAuth& auth) {
  try {
    std::shared_ptr<Client> c = ClientFor(address, timeout);
    web::uri_builder path("/api/v1/query");
    path.append_query("query", query);
    web::http::http_request req(web::http::methods::GET);
    req.set_request_uri(path.to_uri());
    req.headers().add("Accept", "application/json");
    if (!auth.bearer_token.empty()) {
      req.headers().add("Authorization", absl::StrCat("Bearer ", auth.bearer_token));
    } else if (!auth.username.empty()) {
      req.headers().add("Authorization",
                        absl::StrCat("Basic ", absl::Base64Escape(absl::StrCat(auth.username, ":",
                                                                               auth.password))));
    }
    // Blocking in the caller's (worker) thread, never inside a continuation.
    web::http::http_response resp = c->http.request(req).get();
    const std::string body = resp.extract_utf8string(true).get();
    return ParsePrometheusAnswer(resp.status_code(), body);
  } catch (const web::http::http_exception& e) {
    const std::string what = e.what();
    if (what.find("timed out") != std::string::npos || e.error_code() == std::errc::timed_out) {
      return absl::DeadlineExceededError(absl::StrCat(
          "Prometheus at ", address, " did not answer within ", absl::FormatDuration(timeout)));
    }
    return absl::UnavailableError(absl::StrCat("Prometheus at ", address, ": ", what));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("Prometheus at ", address, ": ", e.what()));
  }
}

}  // namespace capstan::analysis
