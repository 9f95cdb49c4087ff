#pragma once

// A typed-enough Kubernetes REST client: objects are nlohmann::json, resources
// are kube::Resource, errors are absl::Status carrying the API's reason.
//
// Status mapping (docs/style.md, style rule 4): 404 NotFound, 409 Conflict -> Aborted,
// 409 AlreadyExists -> AlreadyExists, 401 Unauthenticated, 403 PermissionDenied,
// 400/422 InvalidArgument, 410 Gone -> OutOfRange (resourceVersion too old),
// 429/5xx/no answer -> Unavailable. The Status reason ("Conflict", "NotFound",
// "Invalid", ...) is attached as payload kReasonPayload and the message is the
// API server's message.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "capstan/common/clock.h"
#include "capstan/kube/rate_limiter.h"
#include "capstan/kube/resource.h"
#include "capstan/kube/transport.h"
#include "nlohmann/json.hpp"

namespace capstan::kube {

using Object = nlohmann::json;

inline constexpr char kReasonPayload[] = "capstan.dev/k8s-reason";
inline constexpr char kFieldManager[] = "capstan";

// The API reason of an error from Client ("Conflict", "AlreadyExists", ...), or "".
std::string ApiReason(const absl::Status& status);
// Builds the Status for an HTTP answer (body may be a metav1.Status).
absl::Status StatusFromResponse(int http_status, absl::string_view body, absl::string_view what);

struct ListOptions {
  std::string label_selector;
  std::string field_selector;
  int64_t limit = 0;  // 0: no paging
  std::string continue_token;
  std::string resource_version;        // "" (quorum read), "0" (any), or exact
  std::string resource_version_match;  // "", "NotOlderThan", "Exact"
};

struct ListPage {
  std::vector<Object> items;     // each item gets apiVersion/kind filled in
  std::string resource_version;  // of the list
  std::string continue_token;    // "" when this was the last page
};

struct ApplyOptions {
  std::string field_manager = kFieldManager;
  // Force only where Capstan owns the fields by contract (its own objects).
  bool force = false;
  std::string subresource;  // "" or "status"
};

struct DeleteOptions {
  std::string precondition_uid;
  std::string precondition_resource_version;
  std::string propagation_policy;  // "", "Foreground", "Background", "Orphan"
};

struct WatchOptions {
  std::string label_selector;
  std::string field_selector;
  std::string resource_version;
  bool allow_bookmarks = true;
  // The server ends the watch after this long; callers re-open from the last RV.
  absl::Duration timeout = absl::Minutes(5);
};

struct WatchEvent {
  enum class Type { kAdded, kModified, kDeleted, kBookmark };
  Type type;
  Object object;
};

struct ApiGroupVersion {
  std::string group;              // "" for core
  std::string preferred_version;  // "v1"
  std::vector<std::string> versions;
};

// Thread-safe. Requests pass a client-side token bucket (qps/burst); idempotent
// requests (GET, LIST, apply, DELETE) that fail with 429, 5xx or no answer are
// retried up to 3 more times with jittered exponential backoff, honouring
// Retry-After. POST is never retried here: the caller's work queue decides.
class Client {
 public:
  struct Options {
    double qps = 20;
    int burst = 30;
    int max_retries = 3;
    absl::Duration retry_base = absl::Milliseconds(100);
    absl::Duration retry_cap = absl::Seconds(10);
  };

  Client(std::unique_ptr<Transport> transport, Options options,
         const Clock& clock = RealClock::Get());
  ~Client();

  // From a RestConfig (qps/burst taken from it).
  static absl::StatusOr<std::unique_ptr<Client>> FromConfig(const RestConfig& config);

  absl::StatusOr<Object> Get(const Resource& r, absl::string_view ns, absl::string_view name,
                             absl::string_view subresource = "");
  absl::StatusOr<ListPage> List(const Resource& r, absl::string_view ns,
                                const ListOptions& options = {});
  // Follows continue tokens. `page_size` 500 like client-go's pager.
  absl::StatusOr<ListPage> ListAll(const Resource& r, absl::string_view ns,
                                   ListOptions options = {}, int64_t page_size = 500);
  // Create, Update and MergePatch send `fieldManager` like Apply does, so the
  // object's managedFields name Capstan (not whatever the API server derives
  // from the User-Agent) as the owner of what it wrote.
  absl::StatusOr<Object> Create(const Resource& r, absl::string_view ns, const Object& obj,
                                absl::string_view field_manager = kFieldManager);
  // PUT; obj carries metadata.resourceVersion for optimistic concurrency.
  absl::StatusOr<Object> Update(const Resource& r, absl::string_view ns, const Object& obj,
                                absl::string_view subresource = "",
                                absl::string_view field_manager = kFieldManager);
  // Server-side apply: PATCH application/apply-patch+yaml (JSON is valid YAML).
  absl::StatusOr<Object> Apply(const Resource& r, absl::string_view ns, absl::string_view name,
                               const Object& obj, const ApplyOptions& options = {});
  // PATCH application/merge-patch+json.
  absl::StatusOr<Object> MergePatch(const Resource& r, absl::string_view ns, absl::string_view name,
                                    const Object& patch, absl::string_view subresource = "",
                                    absl::string_view field_manager = kFieldManager);
  absl::Status Delete(const Resource& r, absl::string_view ns, absl::string_view name,
                      const DeleteOptions& options = {});

  // Blocks while the watch is open and calls `on_event` for each event. Returns
  // OK when the server closed the stream normally (re-open from the last RV),
  // OutOfRange on 410 Gone (relist), Cancelled when `cancel` fired or
  // `on_event` returned false, another error otherwise.
  absl::Status Watch(const Resource& r, absl::string_view ns, const WatchOptions& options,
                     const std::function<bool(WatchEvent&&)>& on_event, Cancellation* cancel);

  // The groups the server serves (/api and /apis).
  absl::StatusOr<std::vector<ApiGroupVersion>> ServerGroups();

  // Requests sent since start, by verb (for tests and benchmarks).
  int64_t RequestCount() const;

 private:
  absl::StatusOr<HttpResponse> Send(const std::string& verb, HttpRequest request, bool idempotent);
  void WaitForToken();

  std::unique_ptr<Transport> transport_;
  const Options options_;
  const Clock& clock_;

  TokenBucket bucket_;  // qps/burst, shared by every request of this client

  mutable absl::Mutex mu_;
  int64_t requests_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace capstan::kube
