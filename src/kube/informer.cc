#include "capstan/kube/informer.h"

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "capstan/common/metrics.h"
#include "capstan/common/log.h"

namespace capstan::kube {

Object StripManagedFields(Object obj) {
  if (auto it = obj.find("metadata"); it != obj.end() && it->is_object()) {
    it->erase("managedFields");
  }
  return obj;
}

std::string ObjectKey(const Object& obj) {
  const Object& md = obj.contains("metadata") ? obj["metadata"] : Object::object();
  std::string ns = md.value("namespace", "");
  std::string name = md.value("name", "");
  return ns.empty() ? name : absl::StrCat(ns, "/", name);
}

Informer::Informer(Client& client, Resource resource, InformerOptions options, const Clock& clock)
    : client_(client), resource_(std::move(resource)), options_(std::move(options)), clock_(clock) {}

Informer::~Informer() { Stop(); }

void Informer::AddHandler(Handler handler) { handlers_.push_back(std::move(handler)); }

void Informer::AddIndex(const std::string& name, IndexFunc fn) {
  index_funcs_[name] = std::move(fn);
}

void Informer::Start() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = false;
  }
  thread_ = std::thread([this] { Run(); });
}

void Informer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (cancel_ != nullptr) cancel_->Cancel();
  }
  if (thread_.joinable()) thread_.join();
}

bool Informer::HasSynced() const {
  absl::MutexLock lock(&mu_);
  return synced_;
}

bool Informer::WaitForSync(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&synced_), timeout);
}

std::shared_ptr<const Object> Informer::Get(const std::string& key) const {
  absl::MutexLock lock(&mu_);
  auto it = items_.find(key);
  return it == items_.end() ? nullptr : it->second;
}

std::shared_ptr<const Object> Informer::Get(absl::string_view ns, absl::string_view name) const {
  return Get(ns.empty() ? std::string(name) : absl::StrCat(ns, "/", name));
}

std::vector<std::shared_ptr<const Object>> Informer::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<const Object>> out;
  out.reserve(items_.size());
  for (const auto& [k, v] : items_) out.push_back(v);
  return out;
}

std::vector<std::shared_ptr<const Object>> Informer::ByIndex(const std::string& index,
                                                             const std::string& value) const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<const Object>> out;
  auto idx = indices_.find(index);
  if (idx == indices_.end()) return out;
  auto keys = idx->second.find(value);
  if (keys == idx->second.end()) return out;
  for (const std::string& key : keys->second) {
    if (auto it = items_.find(key); it != items_.end()) out.push_back(it->second);
  }
  return out;
}

size_t Informer::Size() const {
  absl::MutexLock lock(&mu_);
  return items_.size();
}

std::string Informer::LastResourceVersion() const {
  absl::MutexLock lock(&mu_);
  return resource_version_;
}

int64_t Informer::relists() const {
  absl::MutexLock lock(&mu_);
  return relists_;
}

int64_t Informer::watches() const {
  absl::MutexLock lock(&mu_);
  return watches_;
}

void Informer::Store(std::shared_ptr<const Object> obj) {
  const std::string key = ObjectKey(*obj);
  Remove(key);
  for (const auto& [name, fn] : index_funcs_) {
    for (std::string& value : fn(*obj)) indices_[name][std::move(value)].insert(key);
  }
  items_[key] = std::move(obj);
}

void Informer::Remove(const std::string& key) {
  auto it = items_.find(key);
  if (it == items_.end()) return;
  for (const auto& [name, fn] : index_funcs_) {
    auto& idx = indices_[name];
    for (const std::string& value : fn(*it->second)) {
      auto v = idx.find(value);
      if (v == idx.end()) continue;
      v->second.erase(key);
      if (v->second.empty()) idx.erase(v);
    }
  }
  items_.erase(it);
}

void Informer::Notify(const Object* old_obj, const Object* new_obj) {
  for (const Handler& h : handlers_) {
    try {
      h(old_obj, new_obj);
    } catch (const std::exception& e) {
      spdlog::error("informer {}: handler threw: {}", resource_.resource, e.what());
    }
  }
}

bool Informer::SleepOrStop(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&stopping_), d);
}

absl::Status Informer::Relist() {
  ListOptions lo;
  lo.label_selector = options_.label_selector;
  lo.field_selector = options_.field_selector;
  absl::StatusOr<ListPage> page = client_.ListAll(resource_, options_.ns, lo, options_.page_size);
  if (!page.ok()) return page.status();
  Metrics::Get().relists->Add({{"resource", resource_.resource}}).Increment();

  // Project outside the lock; then swap in the new state and compute what changed.
  absl::flat_hash_map<std::string, std::shared_ptr<const Object>> fresh;
  fresh.reserve(page->items.size());
  for (Object& item : page->items) {
    Object projected = options_.projection ? options_.projection(std::move(item))
                                           : StripManagedFields(std::move(item));
    std::string key = ObjectKey(projected);
    fresh.emplace(std::move(key), std::make_shared<const Object>(std::move(projected)));
  }
  std::vector<std::pair<std::shared_ptr<const Object>, std::shared_ptr<const Object>>> changes;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, old] : items_) {
      if (!fresh.contains(key)) changes.emplace_back(old, nullptr);
    }
    for (const auto& [key, obj] : fresh) {
      auto it = items_.find(key);
      std::shared_ptr<const Object> old = it == items_.end() ? nullptr : it->second;
      const std::string old_rv =
          old ? old->value("/metadata/resourceVersion"_json_pointer, std::string()) : "";
      const std::string new_rv = obj->value("/metadata/resourceVersion"_json_pointer, std::string());
      if (!old || old_rv != new_rv) changes.emplace_back(old, obj);
    }
    items_.clear();
    indices_.clear();
    for (auto& [key, obj] : fresh) Store(obj);
    resource_version_ = page->resource_version;
    synced_ = true;
    ++relists_;
  }
  for (const auto& [old_obj, new_obj] : changes) Notify(old_obj.get(), new_obj.get());
  spdlog::debug("informer {}: listed {} objects at resourceVersion {}", resource_.resource,
                fresh.size(), page->resource_version);
  return absl::OkStatus();
}

absl::Status Informer::WatchOnce() {
  Cancellation cancel;
  WatchOptions wo;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::CancelledError("stopping");
    cancel_ = &cancel;
    wo.resource_version = resource_version_;
    ++watches_;
  }
  wo.label_selector = options_.label_selector;
  wo.field_selector = options_.field_selector;
  wo.timeout = options_.watch_timeout;
  const absl::Time start = clock_.Now();
  int64_t events = 0;
  absl::Status s = client_.Watch(
      resource_, options_.ns, wo,
      [this, &events](WatchEvent&& ev) {
        ++events;
        const std::string rv = ev.object.value("/metadata/resourceVersion"_json_pointer, std::string());
        if (ev.type == WatchEvent::Type::kBookmark) {
          absl::MutexLock lock(&mu_);
          if (!rv.empty()) resource_version_ = rv;
          return true;
        }
        Object projected = options_.projection ? options_.projection(std::move(ev.object))
                                               : StripManagedFields(std::move(ev.object));
        auto obj = std::make_shared<const Object>(std::move(projected));
        const std::string key = ObjectKey(*obj);
        std::shared_ptr<const Object> old;
        {
          absl::MutexLock lock(&mu_);
          if (auto it = items_.find(key); it != items_.end()) old = it->second;
          if (ev.type == WatchEvent::Type::kDeleted) {
            Remove(key);
          } else {
            Store(obj);
          }
          if (!rv.empty()) resource_version_ = rv;
        }
        if (ev.type == WatchEvent::Type::kDeleted) {
          Notify(old ? old.get() : obj.get(), nullptr);
        } else {
          Notify(old.get(), obj.get());
        }
        return true;
      },
      &cancel);
  {
    absl::MutexLock lock(&mu_);
    cancel_ = nullptr;
  }
  // Like client-go's reflector: a watch closed within a second with nothing in it
  // is a failure to back off from, or a peer that closes every watch at once would
  // have us re-open it as fast as the rate limiter allows.
  if (s.ok() && events == 0 && clock_.Now() - start < absl::Seconds(1)) {
    return absl::UnavailableError(absl::StrCat("watch ", resource_.resource,
                                               ": closed at once with no events"));
  }
  return s;
}

void Informer::Run() {
  absl::BitGen rng;
  int failures = 0;
  bool need_list = true;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    absl::Status s;
    if (need_list) {
      s = Relist();
      if (s.ok()) need_list = false;
    } else {
      s = WatchOnce();
      Metrics::Get().watch_restarts->Add({{"resource", resource_.resource}}).Increment();
      if (s.code() == absl::StatusCode::kOutOfRange) {
        // 410 Gone: our resourceVersion was compacted away. Relist at once.
        spdlog::info("informer {}: watch expired ({}), relisting", resource_.resource,
                     s.message());
        need_list = true;
        continue;
      }
      if (s.code() == absl::StatusCode::kCancelled) {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
      }
    }
    if (s.ok()) {
      failures = 0;
      continue;  // The server closed the watch normally; re-open from the last RV.
    }
    ++failures;
    // Exponential backoff 1 s .. 30 s with jitter, so many informers never
    // reconnect in lockstep after an API server restart.
    const double base = std::min(30.0, std::pow(2.0, std::min(failures - 1, 5)));
    const absl::Duration delay = absl::Seconds(base * absl::Uniform(rng, 0.5, 1.0));
    spdlog::warn("informer {}: {} failed ({}); retrying in {}", resource_.resource,
                 need_list ? "list" : "watch", s.message(), absl::FormatDuration(delay));
    // After repeated watch failures, relist: the cache may have missed events.
    if (failures >= 3) need_list = true;
    if (SleepOrStop(delay)) return;
  }
}

}  // namespace capstan::kube
