#pragma once

// HTTP for the analysis providers (prometheus, web): one cpprestsdk client per
// (scheme://authority, timeout, CA), reused by every request to it, so connections are
// kept alive. Requests carry only the headers the caller passes: never the API server's
// credentials (those live in kube's transport, which this does not touch).
//
// TLS trust: with a CA (PEM text, from the Secret or ConfigMap a template names) the
// client trusts that CA alone; without one, the system's bundle (loaded explicitly:
// the process's SSL_CTX_set_default_verify_paths loads nothing once the API server's
// transport exists, see kube/transport_cpprest.cc), from $SSL_CERT_FILE / $SSL_CERT_DIR
// when set, as OpenSSL's default paths are.
//
// Thread-safe.

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace capstan::analysis {

struct HttpAnswer {
  int status = 0;
  std::string body;
};

struct HttpCall {
  std::string method = "GET";
  // scheme://host[:port][/base path], and the part after it ("/api/v1/query?query=..").
  std::string base;
  std::string path_and_query;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string content_type = "application/json";
  absl::Duration timeout = absl::Seconds(10);
  std::string ca_pem;  // empty: the system's bundle
  // For error messages: "Prometheus at http://..", "http://host/health".
  std::string what;
};

// "https://host:8443" and "/path?q=1" of a URL; InvalidArgument when it is not an
// absolute http(s) URL.
absl::StatusOr<std::pair<std::string, std::string>> SplitUrl(const std::string& url);

class HttpPool {
 public:
  HttpPool();
  ~HttpPool();
  HttpPool(const HttpPool&) = delete;
  HttpPool& operator=(const HttpPool&) = delete;

  // Blocks the calling thread for at most call.timeout. DeadlineExceeded on a timeout,
  // Unavailable when there is no answer (refused, DNS, TLS: the message says which).
  // Header values never appear in an error.
  absl::StatusOr<HttpAnswer> Send(const HttpCall& call);

 private:
  struct Client;
  std::shared_ptr<Client> ClientFor(const HttpCall& call);

  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Client>> clients_ ABSL_GUARDED_BY(mu_);
};

}  // namespace capstan::analysis
