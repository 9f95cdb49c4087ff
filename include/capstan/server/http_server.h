#pragma once

// The operator's own HTTP endpoints, on one port:
//   GET /healthz  liveness: 200 "ok" unless a liveness check fails (then 500)
//   GET /readyz   readiness: 200 "ok" when every readiness check passes, else 503
//                 and one "[-]<name> failed" line per failing check
//   GET /metrics  Prometheus text exposition (version 0.0.4)
// Any other path is 404; another method on a known path is 405.
//
// Served by cpprestsdk's http_listener (asio backend), the project's one HTTP
// stack. What we learned about it shapes this API:
// - It binds port 0 but cannot report the port the kernel chose. Start() with
//   port 0 therefore asks the kernel for a free port itself (bind 0.0.0.0:0,
//   read it, close), listens on that number and retries if another process took
//   it in between; port() reports it.
// - It keys listeners by "host:port" and, when a second listener in the process
//   asks for a key already in use, it tears down the first one's socket. Start()
//   refuses such a duplicate with AlreadyExists before cpprestsdk sees it.
// - Its accept loop, connections and close() all run on the shared pplx thread
//   pool (see InitCppRestThreads). Start(), Stop() and the destructor block on
//   that pool: never call them from a cpprestsdk thread or pplx continuation.
// - It splits "host:port" at the first ':', so IPv6 literals cannot be served.
// - Its listening socket is not close-on-exec: a child process started while
//   the server runs inherits it unless the spawner closes descriptors.

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/collectable.h"

namespace web::http::experimental::listener {
class http_listener;
}  // namespace web::http::experimental::listener

namespace capstan::server {

// Sizes cpprestsdk's process-wide thread pool, which otherwise starts 40
// threads on first use (8 MiB of stack address space each, plus per-thread
// allocator arenas). It serves every http_client, http_listener and pplx task.
//
// main() must call this first, before anything touches cpprestsdk: the pool is
// created exactly once, on first use, and cannot be resized afterwards (a late
// call logs a warning and changes nothing). Later calls are no-ops.
//
// `n` is raised to at least 2: closing a listener blocks one pool thread until
// the others have finished the open connections' handlers, so a one-thread pool
// deadlocks on shutdown whenever a client holds a keep-alive connection.
void InitCppRestThreads(size_t n);

// Serves /healthz, /readyz and /metrics on one address.
//
// Thread-safe: checks may be added from any thread, before or after Start();
// requests are handled on cpprestsdk's pool. Start(), Stop() and destruction
// belong to the owning thread (see the file comment). Stops in the destructor.
class HealthServer {
 public:
  // Returns true when healthy/ready. Called on a cpprestsdk thread for every
  // probe, so it must be cheap and must not block on cpprestsdk tasks. A check
  // that throws counts as failing.
  using Check = std::function<bool()>;

  // What one request gets back; Handle() computes it without any I/O.
  struct Response {
    int status = 200;
    std::string content_type;
    std::string body;
  };

  static constexpr absl::string_view kMetricsContentType =
      "text/plain; version=0.0.4; charset=utf-8";

  // `address` is "host:port": "0.0.0.0:8080", "127.0.0.1:0" (any free port),
  // ":8080" (all interfaces). `registry` feeds /metrics; null means
  // Metrics::Get().registry. Nothing is bound until Start().
  explicit HealthServer(std::string address,
                        std::shared_ptr<prometheus::Collectable> registry = nullptr);
  ~HealthServer();

  HealthServer(const HealthServer&) = delete;
  HealthServer& operator=(const HealthServer&) = delete;

  // Registers a named check for /healthz or /readyz. Liveness is "this process
  // should be restarted if false" (e.g. workers wedged); readiness is "can serve"
  // (e.g. informer caches synced). Leadership is neither: a standby replica
  // waiting for the lease is alive and ready. InvalidArgument for an
  // empty name or an empty function, AlreadyExists for a name already used on
  // the same endpoint.
  absl::Status AddLivenessCheck(std::string name, Check check);
  absl::Status AddReadinessCheck(std::string name, Check check);

  // Binds and starts serving. InvalidArgument for a malformed address,
  // AlreadyExists when another HealthServer in this process serves the same
  // host:port, Unavailable when the address cannot be bound (e.g. in use),
  // FailedPrecondition when already started. Never throws.
  absl::Status Start();

  // Stops accepting, closes open connections, waits for running handlers and
  // releases the port. Idempotent; the destructor calls it.
  void Stop();

  // The port being served (the chosen one when the address said 0); 0 when
  // not started.
  int port() const { return port_; }

  // Routes one request; the listener's handler is a thin shell around this.
  // `path` excludes the query string.
  Response Handle(absl::string_view method, absl::string_view path) const;

 private:
  struct NamedCheck {
    std::string name;
    Check check;
  };
  using CheckList = std::vector<NamedCheck>;

  absl::Status AddCheck(std::shared_ptr<const CheckList>& list, std::string name, Check check)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // 200 "ok" when every check passes, else `failure_status` and the failing names.
  Response RunChecks(const std::shared_ptr<const CheckList>& list, int failure_status,
                     absl::string_view endpoint) const;
  Response MetricsResponse() const;

  const std::string address_;
  const std::shared_ptr<prometheus::Collectable> registry_;

  // Copy-on-write, so a probe evaluates a snapshot without holding mu_ while
  // calling user code.
  mutable absl::Mutex mu_;
  std::shared_ptr<const CheckList> liveness_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const CheckList> readiness_ ABSL_GUARDED_BY(mu_);

  // Owned by the thread that calls Start()/Stop().
  std::string claimed_key_;  // "host:port" held in the process-wide set
  int port_ = 0;
  std::unique_ptr<web::http::experimental::listener::http_listener> listener_;
};

}  // namespace capstan::server
