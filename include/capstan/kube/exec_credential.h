#pragma once

// Exec credential plugins (kubeconfig users[].user.exec): aws eks get-token,
// gke-gcloud-auth-plugin, kubelogin, ... The plugin is run directly (no shell)
// with stdin on /dev/null, its stdout (an ExecCredential JSON document that holds
// the credential) is parsed and never logged, its stderr goes into error messages.
//
// Protocol: client.authentication.k8s.io/v1 and v1beta1, see
// https://kubernetes.io/docs/reference/access-authn-authz/authentication/#client-go-credential-plugins
//
// Limitation: a client certificate/key returned by a plugin is used from the first
// run only (LoadKubeconfig copies it into RestConfig, whose TLS settings are fixed
// once the transport is built). When such a certificate expires, the config must be
// loaded again. Tokens are refreshed for the whole life of the source.

#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "capstan/common/clock.h"
#include "capstan/kube/rest_config.h"

namespace capstan::kube {

inline constexpr char kExecApiV1[] = "client.authentication.k8s.io/v1";
inline constexpr char kExecApiV1beta1[] = "client.authentication.k8s.io/v1beta1";

// What a plugin returned (its `status`).
struct ExecCredential {
  std::string token;
  std::string client_certificate_pem;  // both or neither
  std::string client_key_pem;
  // Absent: valid until the server rejects it (then Invalidate()).
  std::optional<absl::Time> expiry;
};

// Parses a plugin's stdout. `api_version` is the one the kubeconfig asked for; the
// plugin must answer with the same. Messages name the field, never its value.
absl::StatusOr<ExecCredential> ParseExecCredential(absl::string_view json,
                                                   absl::string_view api_version);

// When a credential fetched at `fetched_at` that expires at `expiry` should be
// replaced: a little before expiry, so a request never leaves with a token that
// expires in flight. margin = min(30s, lifetime / 10):
//   a 15-minute EKS token is refreshed at 14m30s, a 60s token at 54s,
//   one already expired at once.
absl::Time ExecCredentialRefreshTime(absl::Time fetched_at, absl::Time expiry);

struct ExecPluginConfig {
  // Run as is when it contains '/', else looked up in $PATH.
  std::string command;
  std::vector<std::string> args;
  // Added to (and overriding) this process's environment.
  std::vector<std::pair<std::string, std::string>> env;
  std::string api_version = kExecApiV1;
  // Shown when the command is not found ("install gke-gcloud-auth-plugin ...").
  std::string install_hint;
  // The value of KUBERNETES_EXEC_INFO (an ExecCredential with `spec`); see
  // ExecInfoJson(). Empty: a minimal one for `api_version` is used.
  std::string exec_info;
  absl::Duration timeout = absl::Seconds(60);
};

// The cluster a plugin may learn about through KUBERNETES_EXEC_INFO
// (provideClusterInfo: true).
struct ExecClusterInfo {
  std::string server;
  std::string tls_server_name;
  bool insecure_skip_tls_verify = false;
  std::string ca_pem;
  // The cluster's extensions["client.authentication.k8s.io/exec"], as JSON; empty if none.
  std::string config_json;
};

// KUBERNETES_EXEC_INFO: {"apiVersion":..., "kind":"ExecCredential",
// "spec":{"interactive":false, "cluster":{...}}}; `cluster` may be null.
std::string ExecInfoJson(absl::string_view api_version, const ExecClusterInfo* cluster);

// Runs the plugin when there is no credential yet, after Invalidate(), or when the
// cached one has expired: callers wait for that run (concurrent callers share it).
// A credential past its refresh time but not yet expired is returned at once and the
// plugin runs in the background, so a slow plugin (seconds for a cloud login) never
// holds up a request, a lease renewal least of all. Thread-safe; `clock` must outlive
// it; the destructor waits for a background run.
class ExecTokenSource final : public TokenSource {
 public:
  ExecTokenSource(ExecPluginConfig config, const Clock& clock);
  ~ExecTokenSource() override;

  // The credential's token; an error if the plugin fails or returns no token.
  absl::StatusOr<std::string> Token() override;
  void Invalidate() override;

  // The whole credential (cached or fresh).
  absl::StatusOr<ExecCredential> Credential();

 private:
  struct Cached {
    ExecCredential credential;
    absl::Time refresh_at = absl::InfiniteFuture();
  };

  bool FreshLocked(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs the plugin and stores what it gave (caller holds run_mu_).
  absl::StatusOr<ExecCredential> RunAndStore();

  const ExecPluginConfig config_;
  const Clock& clock_;

  // Held across a plugin run so that only one runs at a time; never taken while
  // holding mu_.
  absl::Mutex run_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::optional<Cached> cached_ ABSL_GUARDED_BY(mu_);
  // Counts finished runs, so a caller that waited on run_mu_ for someone else's
  // run takes that result (success or failure) instead of running again.
  uint64_t runs_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
  // A background refresh is running (in refresher_).
  bool refreshing_ ABSL_GUARDED_BY(mu_) = false;
  std::thread refresher_ ABSL_GUARDED_BY(mu_);
};

}  // namespace capstan::kube
