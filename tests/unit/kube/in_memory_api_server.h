#pragma once

// A tiny in-memory API server behind the Transport interface, for unit tests
// of components that read and write objects: GET, LIST and WATCH (label
// selectors k, !k, k=v, k==v, k!=v; no paging, no field selectors), POST
// (AlreadyExists), PUT with resourceVersion conflicts, PATCH
// application/merge-patch+json, server-side apply (application/apply-patch+yaml
// with a JSON body: created when absent, else merged into the object; a
// managedFields entry of the field manager, operation Apply, lists what the
// body sets), the status subresource (apply/patch change only `status`), and
// DELETE. Objects are keyed by their REST path; there is no validation and no
// defaulting beyond uid, resourceVersion, generation and creationTimestamp.
// The real kube::Informer runs on it, so a controller's whole reconcile runs
// in a unit test; Writes() is the ordered list of what it wrote.
// Fault injection: an interceptor per request (it sees which transport sent
// it, so one replica can be partitioned), and a gate that holds every request
// until opened.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "capstan/kube/client.h"
#include "capstan/kube/transport.h"
#include "nlohmann/json.hpp"

namespace capstan::kube::testing {

// One write the server received, in arrival order.
struct Write {
  std::string verb;  // create, update, apply, patch, delete
  std::string resource;
  std::string ns;
  std::string name;
  std::string subresource;
  nlohmann::json body;  // null for delete

  // "apply deployments shop/web", "patch releases shop/web/status", ...
  std::string Line() const {
    return absl::StrCat(verb, " ", resource, " ", ns, ns.empty() ? "" : "/", name,
                        subresource.empty() ? "" : "/", subresource);
  }
};

// The parts of a REST path: <prefix>/[namespaces/<ns>/]<resource>[/<name>[/<subresource>]],
// prefix "/api/v1" or "/apis/<group>/<version>".
struct RestPath {
  std::string prefix;
  std::string ns;
  std::string resource;
  std::string name;
  std::string subresource;

  static std::optional<RestPath> Parse(const std::string& path) {
    std::vector<std::string> seg = absl::StrSplit(path, '/', absl::SkipEmpty());
    RestPath p;
    size_t i = 0;
    if (seg.size() >= 2 && seg[0] == "api") {
      p.prefix = absl::StrCat("/api/", seg[1]);
      i = 2;
    } else if (seg.size() >= 3 && seg[0] == "apis") {
      p.prefix = absl::StrCat("/apis/", seg[1], "/", seg[2]);
      i = 3;
    } else {
      return std::nullopt;
    }
    std::vector<std::string> rest(seg.begin() + i, seg.end());
    if (rest.size() >= 3 && rest[0] == "namespaces") {
      p.ns = rest[1];
      rest.erase(rest.begin(), rest.begin() + 2);
    }
    if (rest.empty() || rest.size() > 3) return std::nullopt;
    p.resource = rest[0];
    if (rest.size() > 1) p.name = rest[1];
    if (rest.size() > 2) p.subresource = rest[2];
    return p;
  }
  std::string ObjectPath() const {
    return absl::StrCat(prefix, ns.empty() ? "" : "/namespaces/", ns, "/", resource, "/", name);
  }
  // True when `object_path` names an object of this collection (all namespaces when ns is "").
  bool Contains(const RestPath& object) const {
    return object.prefix == prefix && object.resource == resource &&
           (ns.empty() || object.ns == ns) && !object.name.empty() && object.subresource.empty();
  }
};

// Label selector terms: k, !k, k=v, k==v, k!=v (comma-separated, all must hold).
inline bool MatchesLabelSelector(const nlohmann::json& obj, const std::string& selector) {
  const nlohmann::json labels =
      obj.value("/metadata/labels"_json_pointer, nlohmann::json::object());
  auto label = [&](const std::string& k) -> std::optional<std::string> {
    auto it = labels.find(k);
    if (it == labels.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
  };
  for (absl::string_view term : absl::StrSplit(selector, ',', absl::SkipWhitespace())) {
    term = absl::StripAsciiWhitespace(term);
    if (size_t at = term.find("!="); at != absl::string_view::npos) {
      if (label(std::string(term.substr(0, at))) == std::string(term.substr(at + 2))) return false;
    } else if (size_t eq = term.find('='); eq != absl::string_view::npos) {
      absl::string_view v = term.substr(eq + 1);
      absl::ConsumePrefix(&v, "=");
      if (label(std::string(term.substr(0, eq))) != std::string(v)) return false;
    } else if (absl::ConsumePrefix(&term, "!")) {
      if (label(std::string(term)).has_value()) return false;
    } else if (!label(std::string(term)).has_value()) {
      return false;
    }
  }
  return true;
}

// The fieldsV1 set of what `body` sets: maps member by member, lists and scalars whole.
inline nlohmann::json FieldSetOf(const nlohmann::json& body) {
  nlohmann::json out = nlohmann::json::object();
  if (!body.is_object()) return out;
  for (auto it = body.begin(); it != body.end(); ++it) {
    out[absl::StrCat("f:", it.key())] = FieldSetOf(it.value());
  }
  return out;
}

// Thread-safe.
class InMemoryApiServer {
 public:
  // Returns a response (or transport error) to answer `request` from `client`
  // instead of the store, or nullopt to serve it normally.
  using Interceptor = std::function<std::optional<absl::StatusOr<HttpResponse>>(
      const std::string& client, const HttpRequest& request)>;

  ~InMemoryApiServer() {
    // Open watches end (their clients must be stopped before the server goes).
    absl::MutexLock lock(&mu_);
    shutdown_ = true;
  }

  // A transport for a Client; `client` names it for the interceptor. The
  // server must outlive it.
  std::unique_ptr<Transport> NewTransport(std::string client = "") {
    return std::make_unique<FakeTransport>(*this, std::move(client));
  }

  // A Client without rate limit or retries: tests control every request.
  std::unique_ptr<Client> NewClient(std::string client = "") {
    Client::Options options;
    options.qps = 0;
    options.max_retries = 0;
    return std::make_unique<Client>(NewTransport(std::move(client)), options);
  }

  void SetInterceptor(Interceptor interceptor) {
    absl::MutexLock lock(&mu_);
    interceptor_ = std::move(interceptor);
  }

  // While closed, requests wait (after being counted in Waiting()).
  void CloseGate() {
    absl::MutexLock lock(&mu_);
    gate_open_ = false;
  }
  void OpenGate() {
    absl::MutexLock lock(&mu_);
    gate_open_ = true;
  }
  int Waiting() const {
    absl::MutexLock lock(&mu_);
    return waiting_;
  }

  // Requests served or intercepted so far, by method ("" for all).
  int64_t Requests(const std::string& method = "") const {
    absl::MutexLock lock(&mu_);
    if (method.empty()) {
      int64_t n = 0;
      for (const auto& [m, c] : requests_) n += c;
      return n;
    }
    auto it = requests_.find(method);
    return it == requests_.end() ? 0 : it->second;
  }

  // Writes served (not intercepted), in order, since the last ClearWrites().
  std::vector<Write> Writes() const {
    absl::MutexLock lock(&mu_);
    return writes_;
  }
  std::vector<std::string> WriteLines() const {
    std::vector<std::string> out;
    for (const Write& w : Writes()) out.push_back(w.Line());
    return out;
  }
  void ClearWrites() {
    absl::MutexLock lock(&mu_);
    writes_.clear();
  }
  // The resourceVersion of the last change (what a list would report).
  int64_t ResourceVersion() const {
    absl::MutexLock lock(&mu_);
    return resource_version_;
  }

  // Direct store access (no conflicts checked, not recorded as writes; watches
  // see the change). Put bumps the resourceVersion.
  std::optional<nlohmann::json> Get(const std::string& path) const {
    absl::MutexLock lock(&mu_);
    auto it = store_.find(path);
    if (it == store_.end()) return std::nullopt;
    return it->second;
  }
  nlohmann::json Put(const std::string& path, nlohmann::json obj) {
    absl::MutexLock lock(&mu_);
    return StoreLocked(path, std::move(obj));
  }
  void Erase(const std::string& path) {
    absl::MutexLock lock(&mu_);
    EraseLocked(path);
  }
  // Objects whose path starts with `prefix`.
  std::vector<nlohmann::json> List(const std::string& prefix) const {
    absl::MutexLock lock(&mu_);
    std::vector<nlohmann::json> out;
    for (const auto& [path, obj] : store_) {
      if (absl::StartsWith(path, prefix)) out.push_back(obj);
    }
    return out;
  }

  absl::StatusOr<HttpResponse> Handle(const std::string& client, const HttpRequest& req) {
    Interceptor interceptor;
    {
      absl::MutexLock lock(&mu_);
      ++requests_[req.method];
      ++waiting_;
      mu_.Await(absl::Condition(&gate_open_));
      --waiting_;
      interceptor = interceptor_;
    }
    if (interceptor) {
      if (auto answer = interceptor(client, req); answer.has_value()) return *answer;
    }
    absl::MutexLock lock(&mu_);
    return ServeLocked(req);
  }

  static HttpResponse StatusResponse(int code, const std::string& reason,
                                     const std::string& message) {
    nlohmann::json s = {{"kind", "Status"}, {"apiVersion", "v1"}, {"status", "Failure"},
                        {"reason", reason}, {"message", message}, {"code", code}};
    return HttpResponse{code, s.dump(), {}};
  }

 private:
  class FakeTransport : public Transport {
   public:
    FakeTransport(InMemoryApiServer& server, std::string client)
        : server_(server), client_(std::move(client)) {}
    absl::StatusOr<HttpResponse> Do(const HttpRequest& request) override {
      return server_.Handle(client_, request);
    }
    absl::Status Stream(const HttpRequest& request,
                        const std::function<bool(absl::string_view)>& on_line, int* status_code,
                        Cancellation* cancel) override {
      return server_.Watch(request, on_line, status_code, cancel);
    }

   private:
    InMemoryApiServer& server_;
    const std::string client_;
  };

  // One change, as a watch reports it.
  struct Change {
    int64_t resource_version;
    std::string path;
    std::optional<nlohmann::json> before;  // absent: created
    std::optional<nlohmann::json> after;   // absent: deleted
  };

  static std::string Query(const HttpRequest& req, const std::string& key) {
    for (const auto& [k, v] : req.query) {
      if (k == key) return v;
    }
    return "";
  }

  // Sends the changes after the request's resourceVersion, then each new one, until
  // cancelled or the server goes away.
  absl::Status Watch(const HttpRequest& req, const std::function<bool(absl::string_view)>& on_line,
                     int* status_code, Cancellation* cancel) {
    std::optional<RestPath> collection = RestPath::Parse(req.path);
    {
      absl::MutexLock lock(&mu_);
      ++requests_["WATCH"];
    }
    if (!collection.has_value() || !collection->name.empty()) {
      *status_code = 404;
      on_line(StatusResponse(404, "NotFound", req.path).body);
      return absl::OkStatus();
    }
    *status_code = 200;
    const std::string selector = Query(req, "labelSelector");
    int64_t cursor = 0;
    if (!absl::SimpleAtoi(Query(req, "resourceVersion"), &cursor)) cursor = 0;
    auto stopped = std::make_shared<bool>(false);
    if (cancel != nullptr) {
      cancel->set_on_cancel([this, stopped] {
        absl::MutexLock lock(&mu_);
        *stopped = true;
      });
      if (cancel->cancelled()) {
        absl::MutexLock lock(&mu_);
        *stopped = true;
      }
    }
    struct Clear {
      Cancellation* c;
      ~Clear() {
        if (c != nullptr) c->set_on_cancel(nullptr);
      }
    } clear{cancel};
    while (true) {
      std::vector<std::string> lines;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return *stopped || shutdown_ ||
                 (!changes_.empty() && changes_.back().resource_version > cursor);
        };
        mu_.Await(absl::Condition(&ready));
        if (*stopped || shutdown_) return absl::CancelledError("watch stopped");
        for (const Change& c : changes_) {
          if (c.resource_version <= cursor) continue;
          cursor = c.resource_version;
          std::optional<RestPath> p = RestPath::Parse(c.path);
          if (!p.has_value() || !collection->Contains(*p)) continue;
          const bool was = c.before.has_value() && MatchesLabelSelector(*c.before, selector);
          const bool is = c.after.has_value() && MatchesLabelSelector(*c.after, selector);
          const char* type = nullptr;
          nlohmann::json obj;
          if (was && is) {
            type = "MODIFIED";
            obj = *c.after;
          } else if (is) {
            type = "ADDED";
            obj = *c.after;
          } else if (was) {
            type = "DELETED";
            obj = c.after.has_value() ? *c.after : *c.before;
            obj["metadata"]["resourceVersion"] = std::to_string(c.resource_version);
          } else {
            continue;
          }
          lines.push_back(nlohmann::json{{"type", type}, {"object", std::move(obj)}}.dump());
        }
        // A bookmark at the newest version: the watcher has seen everything up to it,
        // even when nothing matched its selector (tests wait on it).
        lines.push_back(nlohmann::json{
            {"type", "BOOKMARK"},
            {"object", {{"metadata", {{"resourceVersion", std::to_string(cursor)}}}}}}
                            .dump());
      }
      for (const std::string& line : lines) {
        if (!on_line(line)) return absl::OkStatus();
      }
    }
  }

  nlohmann::json StoreLocked(const std::string& path, nlohmann::json obj)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    nlohmann::json& md = obj["metadata"];
    md["resourceVersion"] = std::to_string(++resource_version_);
    if (!md.contains("uid")) md["uid"] = absl::StrCat("uid-", resource_version_);
    if (!md.contains("creationTimestamp")) md["creationTimestamp"] = "2023-11-14T22:13:20Z";
    if (!md.contains("generation")) md["generation"] = 1;
    std::optional<nlohmann::json> before;
    if (auto it = store_.find(path); it != store_.end()) before = it->second;
    store_[path] = obj;
    changes_.push_back({resource_version_, path, std::move(before), obj});
    return obj;
  }

  void EraseLocked(const std::string& path) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = store_.find(path);
    if (it == store_.end()) return;
    changes_.push_back({++resource_version_, path, it->second, std::nullopt});
    store_.erase(it);
  }

  void RecordWrite(const std::string& verb, const HttpRequest& req, const nlohmann::json& body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::optional<RestPath> p = RestPath::Parse(req.path);
    if (!p.has_value()) return;
    Write w{verb, p->resource, p->ns, p->name, p->subresource, body};
    if (verb == "create") w.name = body.value("/metadata/name"_json_pointer, std::string());
    writes_.push_back(std::move(w));
  }

  // A changed spec moves metadata.generation, as the API server does.
  static void BumpGeneration(const nlohmann::json& before, nlohmann::json* after) {
    const int64_t gen = before.value("/metadata/generation"_json_pointer, int64_t{1});
    const bool changed =
        before.value("spec", nlohmann::json()) != after->value("spec", nlohmann::json());
    (*after)["metadata"]["generation"] = changed ? gen + 1 : gen;
  }

  HttpResponse ListLocked(const HttpRequest& req, const RestPath& collection)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const std::string selector = Query(req, "labelSelector");
    nlohmann::json items = nlohmann::json::array();
    for (const auto& [path, obj] : store_) {
      std::optional<RestPath> p = RestPath::Parse(path);
      if (p.has_value() && collection.Contains(*p) && MatchesLabelSelector(obj, selector)) {
        items.push_back(obj);
      }
    }
    nlohmann::json list = {{"metadata", {{"resourceVersion", std::to_string(resource_version_)}}},
                           {"items", std::move(items)}};
    return HttpResponse{200, list.dump(), {}};
  }

  // Server-side apply: create, or merge the body into the object (a subresource: only
  // that part). The manager's Apply entry lists what the body sets.
  HttpResponse ApplyLocked(const HttpRequest& req, const RestPath& p, nlohmann::json body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const std::string path = p.ObjectPath();
    const std::string manager = Query(req, "fieldManager");
    auto it = store_.find(path);
    if (!p.subresource.empty()) {
      if (it == store_.end()) return StatusResponse(404, "NotFound", path + " not found");
      nlohmann::json obj = it->second;
      obj[p.subresource] = body.value(p.subresource, nlohmann::json::object());
      return HttpResponse{200, StoreLocked(path, std::move(obj)).dump(), {}};
    }
    nlohmann::json entry = {{"manager", manager},
                            {"operation", "Apply"},
                            {"apiVersion", body.value("apiVersion", "")},
                            {"fieldsType", "FieldsV1"},
                            {"fieldsV1", FieldSetOf(body)}};
    if (it == store_.end()) {
      body["metadata"]["managedFields"] = nlohmann::json::array({entry});
      return HttpResponse{201, StoreLocked(path, std::move(body)).dump(), {}};
    }
    nlohmann::json obj = it->second;
    nlohmann::json fields = obj["metadata"].value("managedFields", nlohmann::json::array());
    obj.merge_patch(body);
    nlohmann::json kept = nlohmann::json::array();
    for (const nlohmann::json& e : fields) {
      if (e.value("manager", "") != manager || e.value("operation", "") != "Apply") {
        kept.push_back(e);
      }
    }
    kept.push_back(entry);
    obj["metadata"]["managedFields"] = std::move(kept);
    BumpGeneration(it->second, &obj);
    return HttpResponse{200, StoreLocked(path, std::move(obj)).dump(), {}};
  }

  HttpResponse ServeLocked(const HttpRequest& req) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    nlohmann::json body;
    if (!req.body.empty()) {
      body = nlohmann::json::parse(req.body, nullptr, /*allow_exceptions=*/false);
      if (!body.is_object()) return StatusResponse(400, "BadRequest", "not a JSON object");
    }
    std::optional<RestPath> parsed = RestPath::Parse(req.path);
    if (req.method == "GET") {
      if (parsed.has_value() && parsed->name.empty()) return ListLocked(req, *parsed);
      auto it = store_.find(req.path);
      if (it == store_.end()) return StatusResponse(404, "NotFound", req.path + " not found");
      return HttpResponse{200, it->second.dump(), {}};
    }
    if (req.method != "DELETE" && !body.is_object()) {
      return StatusResponse(400, "BadRequest", "a body is required");
    }
    if (req.method == "POST") {
      const std::string name = body.value("/metadata/name"_json_pointer, std::string());
      if (name.empty()) return StatusResponse(422, "Invalid", "metadata.name: Required value");
      const std::string path = req.path + "/" + name;
      if (store_.contains(path)) {
        return StatusResponse(409, "AlreadyExists", name + " already exists");
      }
      RecordWrite("create", req, body);
      return HttpResponse{201, StoreLocked(path, std::move(body)).dump(), {}};
    }
    if (req.method == "PATCH" && req.content_type == "application/apply-patch+yaml" &&
        parsed.has_value()) {
      RecordWrite("apply", req, body);
      return ApplyLocked(req, *parsed, std::move(body));
    }
    const std::string path =
        parsed.has_value() && !parsed->subresource.empty() ? parsed->ObjectPath() : req.path;
    auto it = store_.find(path);
    if (it == store_.end()) return StatusResponse(404, "NotFound", path + " not found");
    if (req.method == "PUT") {
      const std::string want = body.value("/metadata/resourceVersion"_json_pointer, std::string());
      const std::string have = it->second["metadata"]["resourceVersion"].get<std::string>();
      if (!want.empty() && want != have) {
        return StatusResponse(409, "Conflict",
                              "the object has been modified; please apply your changes to the "
                              "latest version and try again");
      }
      RecordWrite("update", req, body);
      body["metadata"]["uid"] = it->second["metadata"]["uid"];
      return HttpResponse{200, StoreLocked(path, std::move(body)).dump(), {}};
    }
    if (req.method == "PATCH") {
      if (req.content_type != "application/merge-patch+json") {
        return StatusResponse(415, "UnsupportedMediaType", req.content_type);
      }
      // A resourceVersion in the patch is a precondition, as on the API server.
      const std::string want = body.value("/metadata/resourceVersion"_json_pointer, std::string());
      if (!want.empty() && want != it->second["metadata"]["resourceVersion"].get<std::string>()) {
        return StatusResponse(409, "Conflict",
                              "the object has been modified; please apply your changes to the "
                              "latest version and try again");
      }
      RecordWrite("patch", req, body);
      nlohmann::json merged = it->second;
      if (parsed.has_value() && !parsed->subresource.empty()) {
        merged[parsed->subresource].merge_patch(body.value(parsed->subresource, nlohmann::json()));
      } else {
        merged.merge_patch(body);
        BumpGeneration(it->second, &merged);
      }
      return HttpResponse{200, StoreLocked(path, std::move(merged)).dump(), {}};
    }
    if (req.method == "DELETE") {
      RecordWrite("delete", req, body);
      EraseLocked(path);
      return HttpResponse{200, StatusResponse(200, "", "").body, {}};
    }
    return StatusResponse(405, "MethodNotAllowed", req.method);
  }

  mutable absl::Mutex mu_;
  std::map<std::string, nlohmann::json> store_ ABSL_GUARDED_BY(mu_);
  int64_t resource_version_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Change> changes_ ABSL_GUARDED_BY(mu_);
  std::vector<Write> writes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> requests_ ABSL_GUARDED_BY(mu_);
  Interceptor interceptor_ ABSL_GUARDED_BY(mu_);
  bool gate_open_ ABSL_GUARDED_BY(mu_) = true;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace capstan::kube::testing
