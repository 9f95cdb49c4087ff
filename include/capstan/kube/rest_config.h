#pragma once

// How to reach and authenticate to one API server: the result of reading a
// kubeconfig or the in-cluster service-account files. Secret material (tokens,
// keys) lives only in these structs and in request headers, never in logs or
// error messages.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "capstan/common/clock.h"

namespace capstan::kube {

// Supplies a bearer token. Implementations cache and refresh (token file re-read
// when it changes, exec plugin re-run before expiry). Thread-safe.
//
// Sources made by this module hold a reference to the Clock they were given:
// that clock must outlive them (RealClock::Get() always does).
class TokenSource {
 public:
  virtual ~TokenSource() = default;
  // The token to send now. An error message never contains the token.
  virtual absl::StatusOr<std::string> Token() = 0;
  // The server answered 401 with the last token: drop caches so the next Token()
  // fetches anew (re-reads the file, re-runs the exec plugin).
  virtual void Invalidate() {}
};

struct RestConfig {
  // "https://127.0.0.1:6443" (scheme, host, port; an optional path prefix).
  std::string server;
  // PEM; empty means the system trust store.
  std::string ca_pem;
  bool insecure_skip_tls_verify = false;
  // TLS client authentication, PEM (both or neither).
  std::string client_cert_pem;
  std::string client_key_pem;
  // Bearer token; null when the client certificate (or nothing) authenticates.
  std::shared_ptr<TokenSource> token_source;
  // Optional basic TLS server-name override (kubeconfig tls-server-name).
  std::string tls_server_name;

  // Where this came from, for messages: "kubeconfig /home/me/.kube/config context
  // kind-dev" or "in-cluster service account".
  std::string source;
  std::string namespace_;  // the context's namespace, or the pod's, when known

  // Client-side limits (kube-controller-manager defaults).
  double qps = 20;
  int burst = 30;
  absl::Duration timeout = absl::Seconds(30);
  std::string user_agent = "capstan";
};

struct KubeconfigOptions {
  // Explicit --kubeconfig; when empty, $KUBECONFIG (a ':'-separated list merged
  // like kubectl: first file to set a map key wins), then ~/.kube/config.
  std::string path;
  // --context; empty means current-context.
  std::string context;
  // How long one run of an exec credential plugin may take before it is killed.
  absl::Duration exec_timeout = absl::Seconds(60);
};

// Reads a kubeconfig. Errors name the file and the field:
//   "kubeconfig /x/config: context \"dev\" names user \"me\", which is not defined"
//
// Like kubectl: relative file paths (certificate-authority, client-certificate,
// client-key, tokenFile, an exec command containing '/') are resolved against the
// directory of the file that defined them; a user's client certificate, token and
// tokenFile take precedence over its exec plugin (tokenFile over token).
// An exec plugin is run once here, so a broken plugin fails the load; the client
// certificate/key it returns are taken from that first run only (see
// exec_credential.h). insecure-skip-tls-verify is honoured with one warning.
// Impersonation, basic auth and legacy auth-provider entries are rejected
// rather than silently ignored.
absl::StatusOr<RestConfig> LoadKubeconfig(const KubeconfigOptions& options,
                                          const Clock& clock = RealClock::Get());

// Service-account files under `root` (default /var/run/secrets/kubernetes.io/serviceaccount)
// and KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT. The token is re-read when it
// rotates (kubelet refreshes projected tokens). `token` and `ca.crt` must exist;
// the namespace comes from $POD_NAMESPACE, else the `namespace` file, else stays empty.
absl::StatusOr<RestConfig> InClusterConfig(
    absl::string_view root = "/var/run/secrets/kubernetes.io/serviceaccount",
    const Clock& clock = RealClock::Get());

// The operator's choice: an explicit kubeconfig or context wins; else in-cluster
// when KUBERNETES_SERVICE_HOST is set; else $KUBECONFIG / ~/.kube/config.
absl::StatusOr<RestConfig> LoadRestConfig(const KubeconfigOptions& options,
                                          const Clock& clock = RealClock::Get());

// A fixed bearer token (kubeconfig `token`). Invalidate() does nothing.
std::shared_ptr<TokenSource> NewStaticTokenSource(std::string token);

// A bearer token read from a file (kubeconfig `tokenFile`, the in-cluster
// service-account token) and re-read when it rotates: the file is stat'ed at most
// every `stat_interval` and re-read when its identity (inode, size, mtime) changed,
// re-read unconditionally once the cached copy is older than `max_age` (in case a
// rewrite kept inode, size and mtime), and re-read at once after Invalidate(). If a re-read fails,
// the last good token is kept (with a warning) unless the server has rejected it via Invalidate().
// Surrounding whitespace is trimmed; an empty file is an error.
struct FileTokenSourceOptions {
  absl::Duration stat_interval = absl::Seconds(5);
  absl::Duration max_age = absl::Minutes(1);
};
std::shared_ptr<TokenSource> NewFileTokenSource(std::string path, const Clock& clock,
                                                FileTokenSourceOptions options = {});

}  // namespace capstan::kube
