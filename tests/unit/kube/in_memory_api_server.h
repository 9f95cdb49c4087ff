#pragma once

// A tiny in-memory API server behind the Transport interface, for unit tests
// of components that write objects: GET, POST (AlreadyExists), PUT with
// resourceVersion conflicts, PATCH application/merge-patch+json, DELETE.
// Objects are keyed by their REST path; there is no list, watch or
// validation. Fault injection: an interceptor per request (it sees which
// transport sent it, so one replica can be partitioned), and a gate that
// holds every request until opened.

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
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "capstan/kube/client.h"
#include "capstan/kube/transport.h"
#include "nlohmann/json.hpp"

namespace capstan::kube::testing {

// Thread-safe.
class InMemoryApiServer {
 public:
  // Returns a response (or transport error) to answer `request` from `client`
  // instead of the store, or nullopt to serve it normally.
  using Interceptor = std::function<std::optional<absl::StatusOr<HttpResponse>>(
      const std::string& client, const HttpRequest& request)>;

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

  // Direct store access (no conflicts checked). Put bumps the resourceVersion.
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
    store_.erase(path);
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
    absl::Status Stream(const HttpRequest&, const std::function<bool(absl::string_view)>&, int*,
                        Cancellation*) override {
      return absl::UnimplementedError("the in-memory API server has no watch");
    }

   private:
    InMemoryApiServer& server_;
    const std::string client_;
  };

  nlohmann::json StoreLocked(const std::string& path, nlohmann::json obj)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    nlohmann::json& md = obj["metadata"];
    md["resourceVersion"] = std::to_string(++resource_version_);
    if (!md.contains("uid")) md["uid"] = absl::StrCat("uid-", resource_version_);
    store_[path] = obj;
    return obj;
  }

  HttpResponse ServeLocked(const HttpRequest& req) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    nlohmann::json body;
    if (!req.body.empty()) {
      body = nlohmann::json::parse(req.body, nullptr, /*allow_exceptions=*/false);
      if (!body.is_object()) return StatusResponse(400, "BadRequest", "not a JSON object");
    }
    if (req.method == "GET") {
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
      return HttpResponse{201, StoreLocked(path, std::move(body)).dump(), {}};
    }
    auto it = store_.find(req.path);
    if (it == store_.end()) return StatusResponse(404, "NotFound", req.path + " not found");
    if (req.method == "PUT") {
      const std::string want = body.value("/metadata/resourceVersion"_json_pointer, std::string());
      const std::string have = it->second["metadata"]["resourceVersion"].get<std::string>();
      if (!want.empty() && want != have) {
        return StatusResponse(409, "Conflict",
                              "the object has been modified; please apply your changes to the "
                              "latest version and try again");
      }
      body["metadata"]["uid"] = it->second["metadata"]["uid"];
      return HttpResponse{200, StoreLocked(req.path, std::move(body)).dump(), {}};
    }
    if (req.method == "PATCH") {
      if (req.content_type != "application/merge-patch+json") {
        return StatusResponse(415, "UnsupportedMediaType", req.content_type);
      }
      nlohmann::json merged = it->second;
      merged.merge_patch(body);
      return HttpResponse{200, StoreLocked(req.path, std::move(merged)).dump(), {}};
    }
    if (req.method == "DELETE") {
      store_.erase(it);
      return HttpResponse{200, StatusResponse(200, "", "").body, {}};
    }
    return StatusResponse(405, "MethodNotAllowed", req.method);
  }

  mutable absl::Mutex mu_;
  std::map<std::string, nlohmann::json> store_ ABSL_GUARDED_BY(mu_);
  int64_t resource_version_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int64_t> requests_ ABSL_GUARDED_BY(mu_);
  Interceptor interceptor_ ABSL_GUARDED_BY(mu_);
  bool gate_open_ ABSL_GUARDED_BY(mu_) = true;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace capstan::kube::testing
