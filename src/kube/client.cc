#include "capstan/kube/client.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "capstan/common/log.h"
#include "capstan/common/metrics.h"
#include "capstan/common/status_macros.h"
#include "capstan/kube/object_limits.h"

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

// How many levels of objects and arrays `obj` has, counted without recursion, stopping
// once past `limit`. The API server admits a custom resource nested 10,000 deep (a pod
// template under x-kubernetes-preserve-unknown-fields); every recursive walk, copy or
// msgpack encoding of such an object overflows a thread's stack (a sanitized build's
// first). nlohmann parses and destroys iteratively, so the check runs on the parsed
// tree before anything else touches it.
bool NestedDeeperThan(const Object& obj, int limit) {
  std::vector<std::pair<const Object*, int>> stack = {{&obj, 1}};
  while (!stack.empty()) {
    const auto [o, depth] = stack.back();
    stack.pop_back();
    if (!o->is_structured()) continue;
    if (depth > limit) return true;
    for (const Object& child : *o) {
      if (child.is_structured()) stack.emplace_back(&child, depth + 1);
    }
  }
  return false;
}

// `check_depth` false: a list, whose items List() checks one by one.
absl::StatusOr<Object> ParseObject(const HttpResponse& resp, absl::string_view what,
                                   bool check_depth = true) {
  Object obj = Object::parse(resp.body, nullptr, /*allow_exceptions=*/false);
  if (obj.is_discarded()) {
    return absl::InternalError(absl::StrCat(what, ": the API server answered with invalid JSON"));
  }
  if (check_depth && NestedDeeperThan(obj, kMaxObjectDepth)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": the object is nested deeper than ", kMaxObjectDepth, " levels"));
  }
  return obj;
}

// "namespace/name" for a log line; mistyped fields read as absent.
std::string KeyOf(const Object& obj) {
  auto md = obj.find("metadata");
  if (md == obj.end() || !md->is_object()) return "<unnamed>";
  auto field = [&md](const char* key) -> std::string {
    auto it = md->find(key);
    return it != md->end() && it->is_string() ? it->get<std::string>() : "";
  };
  const std::string ns = field("namespace");
  return ns.empty() ? field("name") : absl::StrCat(ns, "/", field("name"));
}

// The string at `key` of `obj`: "" when absent or null, an error for another type.
absl::Status StringField(const Object& obj, const char* key, std::string* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) {
    return absl::InternalError(absl::StrCat(key, " is a ", it->type_name(), ", not a string"));
  }
  *out = it->get<std::string>();
  return absl::OkStatus();
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

// The API server's validation messages quote the rejected value ("spec.template.spec.
// containers[0].env[0].value: Invalid value: \"hunter2\": ..."), and the value may be a
// secret a tenant put in a Release. Errors travel into logs, Events and status, so the
// values are replaced: after "Invalid value: ", "Unsupported value: ", "Duplicate value: "
// and "Not found: " a Go-quoted string becomes "<redacted>", anything else up to the next
// ": ", ", " or "]" becomes <redacted>. Field paths and reasons stay.
std::string ScrubValues(absl::string_view message) {
  static constexpr absl::string_view kMarkers[] = {
      "Invalid value: ", "Unsupported value: ", "Duplicate value: ", "Not found: "};
  std::string out;
  out.reserve(message.size());
  size_t i = 0;
  while (i < message.size()) {
    size_t at = absl::string_view::npos;
    size_t len = 0;
    for (absl::string_view m : kMarkers) {
      const size_t p = message.find(m, i);
      if (p < at) {
        at = p;
        len = m.size();
      }
    }
    if (at == absl::string_view::npos) {
      absl::StrAppend(&out, message.substr(i));
      break;
    }
    absl::StrAppend(&out, message.substr(i, at + len - i));
    size_t j = at + len;
    if (j < message.size() && message[j] == '"') {
      ++j;
      while (j < message.size() && message[j] != '"') j += message[j] == '\\' ? 2 : 1;
      j = std::min(j + 1, message.size());
      out.append("\"<redacted>\"");
    } else {
      size_t end = message.size();
      for (absl::string_view stop : {": ", ", ", "]"}) end = std::min(end, message.find(stop, j));
      j = end;
      out.append("<redacted>");
    }
    i = j;
  }
  return out;
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
  std::string kind;
  // Mistyped fields read as absent (never an exception: this runs on every thread).
  if (s.is_object() && StringField(s, "kind", &kind).ok() && kind == "Status") {
    if (!StringField(s, "reason", &reason).ok()) reason.clear();
    if (!StringField(s, "message", &message).ok()) message.clear();
  }
  if (message.empty()) {
    message = http_status == 0 ? "no answer" : absl::StrCat("HTTP ", http_status);
  }
  absl::Status status(CodeFor(http_status, reason), absl::StrCat(what, ": ", ScrubValues(message)));
  if (!reason.empty()) status.SetPayload(kReasonPayload, absl::Cord(reason));
  return status;
}

Client::Client(std::unique_ptr<Transport> transport, Options options, const Clock& clock)
    : transport_(std::move(transport)),
      options_(options),
      clock_(clock),
      bucket_(options.qps, options.burst, clock) {}

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

// `burst` requests at once, then `qps` per second (kube::TokenBucket). The caller
// sleeps for its reservation without holding any lock, like client-go's flowcontrol.
void Client::WaitForToken() {
  const absl::Duration wait = bucket_.Reserve();
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
  ASSIGN_OR_RETURN(Object list, ParseObject(resp, what, /*check_depth=*/false));
  // Every type is checked: a number where the metadata or an item belongs is an error
  // (the informer relists), never an exception on the informer's thread.
  auto unexpected = [&what](absl::string_view why) {
    return absl::InternalError(absl::StrCat(what, ": unexpected answer: ", why));
  };
  if (!list.is_object()) return unexpected(absl::StrCat("a ", list.type_name(), ", not a list"));
  ListPage page;
  if (auto it = list.find("metadata"); it != list.end() && !it->is_null()) {
    if (!it->is_object()) return unexpected("metadata is not an object");
    if (absl::Status s = StringField(*it, "resourceVersion", &page.resource_version); !s.ok()) {
      return unexpected(absl::StrCat("metadata.", s.message()));
    }
    if (absl::Status s = StringField(*it, "continue", &page.continue_token); !s.ok()) {
      return unexpected(absl::StrCat("metadata.", s.message()));
    }
  }
  if (auto it = list.find("items"); it != list.end() && !it->is_null()) {
    if (!it->is_array()) return unexpected("items is not an array");
    page.items.reserve(it->size());
    for (size_t i = 0; i < it->size(); ++i) {
      Object& item = (*it)[i];
      if (!item.is_object()) {
        return unexpected(absl::StrCat("items[", i, "] is a ", item.type_name()));
      }
      if (NestedDeeperThan(item, kMaxObjectDepth)) {
        // One hostile object must not stop the whole cache: it is left out (and
        // never reconciled), the rest of the list is used.
        spdlog::error("{}: {} nested deeper than {} levels; ignored", what, KeyOf(item),
                      kMaxObjectDepth);
        Metrics::Get().objects_refused->Add({{"resource", r.resource}}).Increment();
        continue;
      }
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
        auto type_it = ev.find("type");
        auto obj_it = ev.find("object");
        if (type_it == ev.end() || !type_it->is_string() || obj_it == ev.end() ||
            !obj_it->is_object()) {
          event_error = absl::InternalError(
              absl::StrCat(what, ": unexpected watch event (type or object missing or mistyped)"));
          return false;
        }
        const std::string type = type_it->get<std::string>();
        Object& obj = *obj_it;
        if (type == "ERROR") {
          auto code = obj.find("code");
          event_error = StatusFromResponse(
              code != obj.end() && code->is_number_integer() ? code->get<int>() : 500, obj.dump(),
              what);
          return false;
        }
        if (NestedDeeperThan(obj, kMaxObjectDepth)) {
          spdlog::error("{}: {} nested deeper than {} levels; event ignored", what, KeyOf(obj),
                        kMaxObjectDepth);
          Metrics::Get().objects_refused->Add({{"resource", r.resource}}).Increment();
          return true;
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
  // The reads below convert JSON values to strings; a mistyped answer throws, and
  // the exception ends here as an error.
  auto read = [this]() -> absl::StatusOr<std::vector<ApiGroupVersion>> {
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
  };
  try {
    return read();
  } catch (const nlohmann::json::exception& e) {
    return absl::InternalError(absl::StrCat("discovery: unexpected answer: ", e.what()));
  }
}

}  // namespace capstan::kube
