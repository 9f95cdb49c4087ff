#pragma once

// The HTTP edge. Everything above speaks in these plain structs; only the
// cpprestsdk implementation knows about pplx, asio and std::chrono.

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "capstan/kube/rest_config.h"

namespace capstan::kube {

struct HttpRequest {
  std::string method = "GET";  // GET, POST, PUT, PATCH, DELETE
  std::string path;            // "/apis/apps/v1/namespaces/x/deployments/y"
  std::vector<std::pair<std::string, std::string>> query;  // unescaped; the transport escapes
  std::string body;
  std::string content_type;  // e.g. "application/apply-patch+yaml"
  std::string accept = "application/json";
  // Zero: the transport's default (RestConfig::timeout). Watches pass a longer one.
  absl::Duration timeout = absl::ZeroDuration();
};

struct HttpResponse {
  int status = 0;
  std::string body;
  // Header names lower-cased.
  std::vector<std::pair<std::string, std::string>> headers;

  // The first header with this (lower-case) name, or "".
  absl::string_view Header(absl::string_view name) const {
    for (const auto& [k, v] : headers) {
      if (k == name) return v;
    }
    return {};
  }
};

// Cancels a stream from another thread. Thread-safe.
class Cancellation {
 public:
  void Cancel() {
    std::function<void()> cb;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      cb = on_cancel_;
    }
    if (cb) cb();
  }
  bool cancelled() const {
    absl::MutexLock lock(&mu_);
    return cancelled_;
  }
  // Set by the transport while a stream is open, to abort its connection at once.
  void set_on_cancel(std::function<void()> cb) {
    absl::MutexLock lock(&mu_);
    on_cancel_ = std::move(cb);
  }

 private:
  mutable absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> on_cancel_ ABSL_GUARDED_BY(mu_);
};

// Sends requests to one API server. Implementations keep one long-lived
// connection pool. Thread-safe.
class Transport {
 public:
  virtual ~Transport() = default;

  // A transport-level failure (connect, TLS, timeout) is kUnavailable with the
  // cause; any HTTP answer, including 4xx/5xx, is a response.
  virtual absl::StatusOr<HttpResponse> Do(const HttpRequest& request) = 0;

  // For watches: sends the request and calls `on_line` with each newline-terminated
  // line of the body as it arrives, until the body ends, `on_line` returns false,
  // or `cancel` fires. A non-2xx answer is returned in `*status_code` with the body
  // passed to `on_line` whole. Returns OK when the stream ended normally.
  virtual absl::Status Stream(const HttpRequest& request,
                              const std::function<bool(absl::string_view line)>& on_line,
                              int* status_code, Cancellation* cancel) = 0;
};

// The production transport (cpprestsdk, one http_client per server).
absl::StatusOr<std::unique_ptr<Transport>> NewCppRestTransport(const RestConfig& config);

}  // namespace capstan::kube
