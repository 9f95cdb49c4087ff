#pragma once

// Runs tests/tools/faultproxy.py as a child process for one test suite and
// talks to its control API. RAII: the destructor stops the process (SIGTERM,
// then SIGKILL) and reaps it. Not thread-safe; the proxy itself is.

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "capstan/kube/client.h"
#include "capstan/kube/transport.h"

namespace capstan::kube::itest {

class FaultProxy {
 public:
  // Starts the proxy in front of the API server of `upstream_kubeconfig` and has it
  // write a kubeconfig for itself (http://127.0.0.1:<port>, no credentials) to
  // `proxy_kubeconfig`. python3 comes from PATH, the script from
  // $CAPSTAN_SOURCE_DIR (or the source dir this test was built from).
  static absl::StatusOr<std::unique_ptr<FaultProxy>> Start(const std::string& upstream_kubeconfig,
                                                           const std::string& proxy_kubeconfig);
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  int port() const { return port_; }
  const std::string& kubeconfig() const { return kubeconfig_; }

  // Adds a rule (see the fields in faultproxy.py).
  absl::Status AddRule(const Object& rule);
  // Forgets all rules and the request log.
  absl::Status Reset();
  // Drops every response being forwarded right now (open watches); returns how many.
  absl::StatusOr<int> CutOpenResponses();
  // The log of proxied requests: [{"method", "target", "status", "rule", "bytes"}...].
  absl::StatusOr<Object> Requests();
  // How many logged requests have this method (empty: any) and contain `target_part`.
  absl::StatusOr<int> Count(const std::string& method, const std::string& target_part);

 private:
  FaultProxy(pid_t pid, int port, std::string kubeconfig, std::unique_ptr<Transport> control);
  absl::StatusOr<Object> Control(const std::string& method, const std::string& path,
                                 const std::string& body);

  pid_t pid_;
  int port_;
  std::string kubeconfig_;
  std::unique_ptr<Transport> control_;
};

}  // namespace capstan::kube::itest
