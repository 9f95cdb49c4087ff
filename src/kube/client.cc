#include "capstan/kube/client.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "capstan/common/log.h"
#include "capstan/common/metrics.h"
#include "capstan/common/status_macros.h"

namespace capstan::kube {
namespace {

absl::StatusCode CodeFor(int http_status, absl::string_view reason) {
  switch (http_status) {
    case 400:
    case 422:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 409:
      return reason == "AlreadyExists" ? absl::StatusCode::kAlreadyExists
                                       : absl::StatusCode::kAborted;
    case 410:
      return absl::StatusCode::kOutOfRange;
    case 415:
      return absl::StatusCode::kInvalidArgument;
    case 429:
      return absl::StatusCode::kUnavailable;
    default:
      if (http_status >= 500 || http_status == 0) return absl::StatusCode::kUnavailable;
      return absl::StatusCode::kUnknown;
  }
}

bool Retryable(int http_status) { return http_status == 429 || http_status >= 500; }

// Retry-After is whole seconds in the API server's answers; cap what we honour.
absl::Duration RetryAfter(const HttpResponse& resp) {
  int secs = 0;
  if (absl::SimpleAtoi(resp.Header("retry-after"), &secs) && secs > 0) {
    return absl::Seconds(std::min(secs, 60));
  }
  return absl::ZeroDuration();
}

// Every list item comes back without apiVersion/kind; fill them in so items can
// be handled like single objects.
void FillTypeMeta(const Resource& r, Object* obj) {
  if (!obj->contains("apiVersion")) (*obj)["apiVersion"] = r.ApiVersion();
  if (!obj->contains("kind")) (*obj)["kind"] = r.kind;
}

absl::StatusOr<Object> ParseObject(const HttpResponse& resp, absl::string_view what) {
  Object obj = Object::parse(resp.body, nullptr, /*allow_exceptions=*/false);
  if (obj.is_discarded()) {
    return absl::InternalError(absl::StrCat(what, ": the API server answered with invalid JSON"));
  }
  return obj;
}

// Without it the API server names the manager after the User-Agent's first word.
void AddFieldManager(absl::string_view field_manager, HttpRequest* req) {
  if (!field_manager.empty()) req->query.emplace_back("fieldManager", std::string(field_manager));
}

std::string VerbOf(const std::string& method, const HttpRequest& req) {
  if (method != "GET") return method;
  for (const auto& [k, v] : req.query) {
    if (k == "watch") return "WATCH";
  }
  return "GET";
}

}  // namespace

std::string ApiReason(const absl::Status& status) {
  auto payload = status.GetPayload(kReasonPayload);
  return payload.has_value() ? std::string(*payload) : std::string();
}

absl::Status StatusFromResponse(int http_status, absl::string_view body, absl::string_view what) {
  std::string reason;
  std::string message;
  Object s = Object::parse(body, nullptr, /*allow_exceptions=*/false);
  if (s.is_object() && s.value("kind", "") == "Status") {
    reason = s.value("reason", "");
    message = s.value("message", "");
  }
  if (message.empty()) {
    message = http_status == 0 ? "no answer" : absl::StrCat("HTTP ", http_status);
  }
  absl::Status status(CodeFor(http_status, reason), absl::StrCat(what, ": ", message));
  if (!reason.empty()) status.SetPayload(kReasonPayload, absl::Cord(reason));
  return status;
}

Client::Client(std::unique_ptr<Transport> transport, Options options, const Clock& clock)
    : transport_(std::move(transport)),
      options_(options),
      clock_(clock),
      tokens_(options.burst),
      last_refill_(clock.Now()) {}

Client::~Client() = default;

absl::StatusOr<std::unique_ptr<Client>> Client::FromConfig(const RestConfig& config) {
  ASSIGN_OR_RETURN(std::unique_ptr<Transport> transport, NewCppRestTransport(config));
  Options options;
  options.qps = config.qps;
  options.burst = config.burst;
  return std::make_unique<Client>(std::move(transport), options);
}

int64_t Client::RequestCount() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

// A token bucket: `burst` requests at once, then `qps` per second. The caller
// sleeps outside the lock for its reservation, like client-go's flowcontrol.
void Client::WaitForToken() {
  if (options_.qps <= 0) return;
  absl::Duration wait;
  {
    absl::MutexLock lock(&mu_);
    absl::Time now = clock_.Now();
    tokens_ = std::min<double>(options_.burst,
                               tokens_ + absl::ToDoubleSeconds(now - last_refill_) * options_.qps);
    last_refill_ = now;
    tokens_ -= 1;
    wait = tokens_ >= 0 ? absl::ZeroDuration() : absl::Seconds(-tokens_ / options_.qps);
  }
  if (wait > absl::ZeroDuration()) absl::SleepFor(wait);
}

absl::StatusOr<HttpResponse> Client::Send(const std::string& verb, HttpRequest request,
                                          bool idempotent) {
  request.method = verb;
  const std::string metric_verb = VerbOf(verb, request);
  Metrics& m = Metrics::Get();
  absl::BitGen rng;
  for (int attempt = 0;; ++attempt) {
    WaitForToken();
    {
      absl::MutexLock lock(&mu_);
      ++requests_;
    }
    const absl::Time start = clock_.Now();
    absl::StatusOr<HttpResponse> resp = transport_->Do(request);
    const int code = resp.ok() ? resp->status : 0;
    m.rest_requests->Add({{"verb", metric_verb}, {"code", std::to_string(code)}}).Increment();
    m.rest_latency->Add({{"verb", metric_verb}}, Metrics::LatencyBuckets())
        .Observe(absl::ToDoubleSeconds(clock_.Now() - start));
    const bool retry =
        idempotent && attempt < options_.max_retries && (!resp.ok() || Retryable(resp->status));
    if (!retry) return resp;
    // Full jitter on an exponential base, at least what the server asked for.
    absl::Duration backoff =
        std::min(options_.retry_cap, options_.retry_base * std::pow(2.0, attempt));
    backoff =
        absl::Milliseconds(absl::Uniform(rng, 0.5, 1.0) * absl::ToDoubleMilliseconds(backoff));
    if (resp.ok()) backoff = std::max(backoff, RetryAfter(*resp));
    spdlog::debug(
        "retrying {} {} in {} after {}", verb, request.path, absl::FormatDuration(backoff),
        resp.ok() ? absl::StrCat("HTTP ", resp->status) : std::string(resp.status().message()));
    absl::SleepFor(backoff);
  }
}

absl::StatusOr<Object> Client::Get(const Resource& r, absl::string_view ns, absl::string_view name,
                                   absl::string_view subresource) {
  HttpRequest req;
  req.path = ObjectPath(r, ns, name, subresource);
  ASSIGN_OR_RETURN(HttpResponse resp, Send("GET", std::move(req), true));
  const std::string what = absl::StrCat("get ", r.resource, " ", ns, ns.empty() ? "" : "/", name);
  if (resp.status != 200) return StatusFromResponse(resp.status, resp.body, what);
  return ParseObject(resp, what);
}

absl::StatusOr<ListPage> Client::List(const Resource& r, absl::string_view ns,
                                      const ListOptions& options) {
  HttpRequest req;
  req.path = CollectionPath(r, ns);
  if (!options.label_selector.empty())
    req.query.emplace_back("labelSelector", options.label_selector);
  if (!options.field_selector.empty())
    req.query.emplace_back("fieldSelector", options.field_selector);
  if (options.limit > 0) req.query.emplace_back("limit", std::to_string(options.limit));
  if (!options.continue_token.empty()) req.query.emplace_back("continue", options.continue_token);
  if (!options.resource_version.empty()) {
    req.query.emplace_back("resourceVersion", options.resource_version);
  }
  if (!options.resource_version_match.empty()) {
    req.query.emplace_back("resourceVersionMatch", options.resource_version_match);
  }
  const std::string what = absl::StrCat("list ", r.resource, ns.empty() ? "" : " in ", ns);
  ASSIGN_OR_RETURN(HttpResponse resp, Send("GET", std::move(req), true));
  if (resp.status != 200) return StatusFromResponse(resp.status, resp.body, what);
  ASSIGN_OR_RETURN(Object list, ParseObject(resp, what));
  ListPage page;
  if (auto it = list.find("metadata"); it != list.end() && it->is_object()) {
    page.resource_version = it->value("resourceVersion", "");
    page.continue_token = it->value("continue", "");
  }
  if (auto it = list.find("items"); it != list.end() && it->is_array()) {
    page.items.reserve(it->size());
    for (Object& item : *it) {
      FillTypeMeta(r, &item);
      page.items.push_back(std::move(item));
    }
  }
  return page;
}

absl::StatusOr<ListPage> Client::ListAll(const Resource& r, absl::string_view ns,
                                         ListOptions options, int64_t page_size) {
  options.limit = page_size;
  options.continue_token.clear();
  ListPage all;
  bool restarted = false;
  while (true) {
    absl::StatusOr<ListPage> page = List(r, ns, options);
    if (!page.ok()) {
      // The continue token expired (compaction between pages): start over once
      // with a fresh list, like client-go's pager falls back to a full list.
      if (page.status().code() == absl::StatusCode::kOutOfRange && !restarted &&
          !options.continue_token.empty()) {
        restarted = true;
        options.continue_token.clear();
        all = ListPage();
        continue;
      }
      return page.status();
    }
    for (Object& item : page->items) all.items.push_back(std::move(item));
    // The first page's resourceVersion is the list's snapshot; later pages agree.
    if (all.resource_version.empty()) all.resource_version = page->resource_version;
    if (page->continue_token.empty()) return all;
    options.continue_token = page->continue_token;
    // Continuation pages must not carry a resourceVersion.
    options.resource_version.clear();
    options.resource_version_match.clear();
  }
}

absl::StatusOr<Object> Client::Create(const Resource& r, absl::string_view ns, const Object& obj,
                                      absl::string_view field_manager) {
  HttpRequest req;
  req.path = CollectionPath(r, ns);
  AddFieldManager(field_manager, &req);
  req.body = obj.dump();
  req.content_type = "application/json";
  const std::string what = absl::StrCat("create ", r.resource, " ", ns, ns.empty() ? "" : "/",
                                        obj.value("/metadata/name"_json_pointer, std::string()));
  // POST is not idempotent: no automatic retry (the caller sees AlreadyExists
  // or retries through its work queue).
  ASSIGN_OR_RETURN(HttpResponse resp, Send("POST", std::move(req), false));
  if (resp.status != 200 && resp.status != 201 && resp.status != 202) {
    return StatusFromResponse(resp.status, resp.body, what);
  }
  return ParseObject(resp, what);
}

absl::StatusOr<Object> Client::Update(const Resource& r, absl::string_view ns, const Object& obj,
                                      absl::string_view subresource,
                                      absl::string_view field_manager) {
  const std::string name = obj.value("/metadata/name"_json_pointer, std::string());
  HttpRequest req;
  req.path = ObjectPath(r, ns, name, subresource);
  AddFieldManager(field_manager, &req);
  req.body = obj.dump();
  req.content_type = "application/json";
  const std::string what = absl::StrCat("update ", r.resource, " ", ns, ns.empty() ? "" : "/", name,
                                        subresource.empty() ? "" : "/", subresource);
  // A PUT with a resourceVersion is safe to repeat: a second attempt after a lost
  // answer fails with a conflict instead of overwriting.
  ASSIGN_OR_RETURN(HttpResponse resp, Send("PUT", std::move(req), true));
  if (resp.status != 200 && resp.status != 201)
    return StatusFromResponse(resp.status, resp.body, what);
  return ParseObject(resp, what);
}

absl::StatusOr<Object> Client::Apply(const Resource& r, absl::string_view ns,
                                     absl::string_view name, const Object& obj,
                                     const ApplyOptions& options) {
  HttpRequest req;
  req.path = ObjectPath(r, ns, name, options.subresource);
  req.query.emplace_back("fieldManager", options.field_manager);
  if (options.force) req.query.emplace_back("force", "true");
  req.body = obj.dump();  // JSON is YAML.
  req.content_type = "application/apply-patch+yaml";
  const std::string what =
      absl::StrCat("apply ", r.resource, " ", ns, ns.empty() ? "" : "/", name,
                   options.subresource.empty() ? "" : "/", options.subresource);
  // Apply is idempotent by design.
  ASSIGN_OR_RETURN(HttpResponse resp, Send("PATCH", std::move(req), true));
  if (resp.status != 200 && resp.status != 201)
    return StatusFromResponse(resp.status, resp.body, what);
  return ParseObject(resp, what);
}

absl::StatusOr<Object> Client::MergePatch(const Resource& r, absl::string_view ns,
                                          absl::string_view name, const Object& patch,
                                          absl::string_view subresource,
                                          absl::string_view field_manager) {
  HttpRequest req;
  req.path = ObjectPath(r, ns, name, subresource);
  AddFieldManager(field_manager, &req);
  req.body = patch.dump();
  req.content_type = "application/merge-patch+json";
  const std::string what = absl::StrCat("patch ", r.resource, " ", ns, ns.empty() ? "" : "/", name,
                                        subresource.empty() ? "" : "/", subresource);
  // A merge patch sets absolute values, so repeating it is harmless.
  ASSIGN_OR_RETURN(HttpResponse resp, Send("PATCH", std::move(req), true));
  if (resp.status != 200 && resp.status != 201)
    return StatusFromResponse(resp.status, resp.body, what);
  return ParseObject(resp, what);
}

absl::Status Client::Delete(const Resource& r, absl::string_view ns, absl::string_view name,
                            const DeleteOptions& options) {
  HttpRequest req;
  req.path = ObjectPath(r, ns, name);
  Object body = {{"apiVersion", "v1"}, {"kind", "DeleteOptions"}};
  if (!options.precondition_uid.empty()) body["preconditions"]["uid"] = options.precondition_uid;
  if (!options.precondition_resource_version.empty()) {
    body["preconditions"]["resourceVersion"] = options.precondition_resource_version;
  }
  if (!options.propagation_policy.empty()) body["propagationPolicy"] = options.propagation_policy;
  req.body = body.dump();
  req.content_type = "application/json";
  const std::string what =
      absl::StrCat("delete ", r.resource, " ", ns, ns.empty() ? "" : "/", name);
  ASSIGN_OR_RETURN(HttpResponse resp, Send("DELETE", std::move(req), true));
  if (resp.status == 200 || resp.status == 202) return absl::OkStatus();
  return StatusFromResponse(resp.status, resp.body, what);
}

absl::Status Client::Watch(const Resource& r, absl::string_view ns, const WatchOptions& options,
                           const std::function<bool(WatchEvent&&)>& on_event,
                           Cancellation* cancel) {
  HttpRequest req;
  req.method = "GET";
  req.path = CollectionPath(r, ns);
  req.query.emplace_back("watch", "1");
  if (!options.label_selector.empty())
    req.query.emplace_back("labelSelector", options.label_selector);
  if (!options.field_selector.empty())
    req.query.emplace_back("fieldSelector", options.field_selector);
  if (!options.resource_version.empty()) {
    req.query.emplace_back("resourceVersion", options.resource_version);
  }
  if (options.allow_bookmarks) req.query.emplace_back("allowWatchBookmarks", "true");
  req.query.emplace_back("timeoutSeconds", std::to_string(absl::ToInt64Seconds(options.timeout)));
  const std::string what = absl::StrCat("watch ", r.resource, ns.empty() ? "" : " in ", ns);

  WaitForToken();
  {
    absl::MutexLock lock(&mu_);
    ++requests_;
  }
  int http_status = 0;
  absl::Status event_error;
  bool stopped = false;
  std::string error_body;
  absl::Status stream = transport_->Stream(
      req,
      [&](absl::string_view line) -> bool {
        if (http_status != 200) {
          error_body.assign(line.data(), line.size());
          return false;
        }
        Object ev = Object::parse(line, nullptr, /*allow_exceptions=*/false);
        if (!ev.is_object()) {
          event_error = absl::InternalError(absl::StrCat(what, ": invalid JSON in watch event"));
          return false;
        }
        const std::string type = ev.value("type", "");
        Object& obj = ev["object"];
        if (type == "ERROR") {
          event_error = StatusFromResponse(obj.value("code", 500), obj.dump(), what);
          return false;
        }
        WatchEvent out;
        if (type == "ADDED") {
          out.type = WatchEvent::Type::kAdded;
        } else if (type == "MODIFIED") {
          out.type = WatchEvent::Type::kModified;
        } else if (type == "DELETED") {
          out.type = WatchEvent::Type::kDeleted;
        } else if (type == "BOOKMARK") {
          out.type = WatchEvent::Type::kBookmark;
        } else {
          return true;  // Unknown types are skipped, like client-go.
        }
        FillTypeMeta(r, &obj);
        out.object = std::move(obj);
        if (!on_event(std::move(out))) {
          stopped = true;
          return false;
        }
        return true;
      },
      &http_status, cancel);
  Metrics::Get()
      .rest_requests->Add({{"verb", "WATCH"}, {"code", std::to_string(http_status)}})
      .Increment();
  if (!event_error.ok()) return event_error;
  if (stopped) return absl::CancelledError(absl::StrCat(what, ": stopped"));
  if (http_status != 0 && http_status != 200) {
    return StatusFromResponse(http_status, error_body, what);
  }
  return stream;
}

absl::StatusOr<std::vector<ApiGroupVersion>> Client::ServerGroups() {
  std::vector<ApiGroupVersion> groups;
  {
    HttpRequest req;
    req.path = "/api";
    ASSIGN_OR_RETURN(HttpResponse resp, Send("GET", std::move(req), true));
    if (resp.status != 200) return StatusFromResponse(resp.status, resp.body, "discovery /api");
    ASSIGN_OR_RETURN(Object core, ParseObject(resp, "discovery /api"));
    ApiGroupVersion g;
    for (const auto& v : core.value("versions", Object::array())) g.versions.push_back(v);
    g.preferred_version = g.versions.empty() ? "" : g.versions.front();
    groups.push_back(std::move(g));
  }
  HttpRequest req;
  req.path = "/apis";
  ASSIGN_OR_RETURN(HttpResponse resp, Send("GET", std::move(req), true));
  if (resp.status != 200) return StatusFromResponse(resp.status, resp.body, "discovery /apis");
  ASSIGN_OR_RETURN(Object list, ParseObject(resp, "discovery /apis"));
  for (const auto& item : list.value("groups", Object::array())) {
    ApiGroupVersion g;
    g.group = item.value("name", "");
    g.preferred_version = item.value("/preferredVersion/version"_json_pointer, std::string());
    for (const auto& v : item.value("versions", Object::array())) {
      g.versions.push_back(v.value("version", ""));
    }
    groups.push_back(std::move(g));
  }
  return groups;
}

}  // namespace capstan::kube
