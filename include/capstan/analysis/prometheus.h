#pragma once

// The prometheus provider: an instant query (GET <address>/api/v1/query) and the answer
// as a condition value. Scalars become numbers; instant vectors a vector of numbers in
// the order Prometheus returns them (one per series; empty when no series matched);
// "NaN", "+Inf", "-Inf" are kept as such (the condition decides; see run.h for NaN).
// Range matrices and strings are errors: a condition compares numbers.
//
// Credentials (a bearer token, or basic auth) are passed in by the caller, which reads
// them from the Secret the template names; they are sent in the Authorization header
// and never appear in an error, a log line or a metric.
//
// Thread-safe: one cpprestsdk client per address (analysis/http.h), shared by all
// queries to it.

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "capstan/analysis/expr.h"
#include "capstan/analysis/http.h"

namespace capstan::analysis {

// The value of a Prometheus HTTP API answer. Unavailable for 5xx and 429 (a
// measurement error, counted against consecutiveErrorLimit), InvalidArgument for a
// query Prometheus rejects (400/422: the message is Prometheus' own error text),
// Unauthenticated/PermissionDenied for 401/403.
absl::StatusOr<Value> ParsePrometheusAnswer(int http_status, const std::string& body);

struct PrometheusAuth {
  std::string bearer_token;
  std::string username;
  std::string password;
  std::string ca_pem;  // https: the CA to trust (empty: the system's bundle)
};

class PrometheusClient {
 public:
  explicit PrometheusClient(HttpPool& http) : http_(http) {}

  // One instant query. Errors name the address and what went wrong ("connection
  // refused", "timed out after 10s"), never the credentials.
  absl::StatusOr<Value> Query(const std::string& address, const std::string& query,
                              absl::Duration timeout, const PrometheusAuth& auth);

 private:
  HttpPool& http_;
};

}  // namespace capstan::analysis
