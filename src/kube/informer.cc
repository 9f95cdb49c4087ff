#include "capstan/kube/informer.h"

#include <algorithm>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "capstan/common/log.h"
#include "capstan/common/metrics.h"
#include "capstan/common/monotonic_clock.h"
#include "prometheus/gauge.h"

namespace capstan::kube {

// Every running informer, checked every few seconds by one thread: half-open watches
// are cancelled, the last-event age gauges refreshed. One thread for all informers
// (there are ~15) instead of a timer per watch. Never destroyed (informers may outlive
// static destruction in tests).
class InformerMonitor {
 public:
  static InformerMonitor& Get() {
    static InformerMonitor* monitor = new InformerMonitor();
    return *monitor;
  }

  void Add(Informer* informer) {
    absl::MutexLock lock(&mu_);
    informers_.push_back(informer);
    if (!started_) {
      started_ = true;
      std::thread([this] { Run(); }).detach();
    }
  }
  void Remove(Informer* informer) {
    absl::MutexLock lock(&mu_);
    informers_.erase(std::remove(informers_.begin(), informers_.end(), informer), informers_.end());
    // Remove() returns only once no check of `informer` is running.
    mu_.Await(absl::Condition(
        +[](InformerMonitor* m)
             ABSL_EXCLUSIVE_LOCKS_REQUIRED(m->mu_) { return m->checking_ == nullptr; },
        this));
  }
  std::vector<std::string> Stalled(absl::Duration max_age) {
    std::vector<std::string> out;
    absl::MutexLock lock(&mu_);
    for (Informer* i : informers_) {
      if (i->SinceProgress() > max_age) out.push_back(i->resource().resource);
    }
    return out;
  }

 private:
  void Run() {
    while (true) {
      absl::Duration tick = absl::Seconds(5);
      {
        absl::MutexLock lock(&mu_);
        for (size_t n = 0; n < informers_.size(); ++n) {
          Informer* i = informers_[n];
          tick = std::min(tick, i->options_.watch_idle_limit / 4);
          checking_ = i;
          mu_.Unlock();
          try {
            i->CheckIdle();
          } catch (const std::exception& e) {
            spdlog::error("informer monitor: {}", e.what());
          }
          mu_.Lock();
          checking_ = nullptr;
        }
      }
      absl::SleepFor(std::max(tick, absl::Milliseconds(20)));
    }
  }

  absl::Mutex mu_;
  std::vector<Informer*> informers_ ABSL_GUARDED_BY(mu_);
  Informer* checking_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
};

std::vector<std::string> StalledInformers(absl::Duration max_age) {
  return InformerMonitor::Get().Stalled(max_age);
}

Object StripManagedFields(Object obj) {
  if (auto it = obj.find("metadata"); it != obj.end() && it->is_object()) {
    it->erase("managedFields");
  }
  return obj;
}

std::string ObjectKey(const Object& obj) {
  // Mistyped fields read as absent: a key is needed even for a broken object.
  auto field = [&obj](const char* key) -> std::string {
    auto md = obj.find("metadata");
    if (md == obj.end() || !md->is_object()) return "";
    auto it = md->find(key);
    return it != md->end() && it->is_string() ? it->get<std::string>() : "";
  };
  std::string ns = field("namespace");
  std::string name = field("name");
  return ns.empty() ? name : absl::StrCat(ns, "/", name);
}

Informer::Informer(Client& client, Resource resource, InformerOptions options, const Clock& clock)
    : client_(client),
      resource_(std::move(resource)),
      options_(std::move(options)),
      clock_(clock) {}

Informer::~Informer() { Stop(); }

void Informer::AddHandler(Handler handler) { handlers_.push_back(std::move(handler)); }

void Informer::AddIndex(const std::string& name, IndexFunc fn) {
  for (auto& [n, f] : index_funcs_) {
    if (n == name) {
      f = std::move(fn);
      return;
    }
  }
  index_funcs_.emplace_back(name, std::move(fn));
}

void Informer::Start() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = false;
    last_progress_ = MonotonicClock::Get().Now();
  }
  thread_ = std::thread([this] { Run(); });
  InformerMonitor::Get().Add(this);
}

void Informer::Stop() {
  InformerMonitor::Get().Remove(this);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (cancel_ != nullptr) cancel_->Cancel();
  }
  if (thread_.joinable()) thread_.join();
}

void Informer::Progress() { last_progress_ = MonotonicClock::Get().Now(); }

absl::Duration Informer::SinceProgress() const {
  absl::MutexLock lock(&mu_);
  return MonotonicClock::Get().Now() - last_progress_;
}

void Informer::CheckIdle() {
  absl::Duration age;
  {
    absl::MutexLock lock(&mu_);
    age = MonotonicClock::Get().Now() - last_progress_;
    if (cancel_ != nullptr && !idle_cancelled_ && age > options_.watch_idle_limit) {
      // Not even a bookmark: the connection is most likely half-open (a peer or
      // middlebox gone without a FIN). Cancel it; the informer re-opens the watch.
      idle_cancelled_ = true;
      cancel_->Cancel();
    }
  }
  Metrics::Get()
      .informer_last_event_age->Add({{"resource", resource_.resource}})
      .Set(absl::ToDoubleSeconds(age));
}

bool Informer::HasSynced() const {
  absl::MutexLock lock(&mu_);
  return synced_;
}

bool Informer::WaitForSync(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&synced_), timeout);
}

// index_funcs_ and options_ do not change after Start(), so building an entry
// needs no lock.
Informer::Entry Informer::MakeEntry(std::shared_ptr<const Object> obj) const {
  Entry e;
  e.resource_version = obj->value("/metadata/resourceVersion"_json_pointer, std::string());
  for (size_t i = 0; i < index_funcs_.size(); ++i) {
    for (std::string& v : index_funcs_[i].second(*obj))
      e.index_values.emplace_back(i, std::move(v));
  }
  if (options_.compact) {
    Object::to_msgpack(*obj, nlohmann::detail::output_adapter<char>(e.packed));
    e.packed.shrink_to_fit();  // The string grew by doubling.
  } else {
    e.object = std::move(obj);
  }
  return e;
}

std::shared_ptr<const Object> Informer::Materialize(const Entry& entry) const {
  if (!options_.compact) return entry.object;
  // Packed by to_msgpack above: decoding cannot fail short of memory corruption.
  Object obj = Object::from_msgpack(entry.packed, /*strict=*/true, /*allow_exceptions=*/false);
  return std::make_shared<const Object>(std::move(obj));
}

std::shared_ptr<const Object> Informer::Get(const std::string& key) const {
  Entry copy;
  {
    absl::MutexLock lock(&mu_);
    auto it = items_.find(key);
    if (it == items_.end()) return nullptr;
    if (!options_.compact) return it->second.object;
    copy.packed = it->second.packed;  // Decoded outside the lock.
  }
  return Materialize(copy);
}

std::shared_ptr<const Object> Informer::Get(absl::string_view ns, absl::string_view name) const {
  return Get(ns.empty() ? std::string(name) : absl::StrCat(ns, "/", name));
}

std::vector<std::shared_ptr<const Object>> Informer::List() const {
  std::vector<std::shared_ptr<const Object>> out;
  std::vector<Entry> copies;
  {
    absl::MutexLock lock(&mu_);
    if (!options_.compact) {
      out.reserve(items_.size());
      for (const auto& [k, v] : items_) out.push_back(v.object);
      return out;
    }
    copies.resize(items_.size());
    size_t i = 0;
    for (const auto& [k, v] : items_) copies[i++].packed = v.packed;
  }
  out.reserve(copies.size());
  for (const Entry& e : copies) out.push_back(Materialize(e));
  return out;
}

std::vector<std::string> Informer::Keys() const {
  std::vector<std::string> out;
  absl::MutexLock lock(&mu_);
  out.reserve(items_.size());
  for (const auto& [k, v] : items_) out.push_back(k);
  return out;
}

std::vector<std::shared_ptr<const Object>> Informer::ByIndex(const std::string& index,
                                                             const std::string& value) const {
  std::vector<std::shared_ptr<const Object>> out;
  std::vector<Entry> copies;
  {
    absl::MutexLock lock(&mu_);
    auto idx = indices_.find(index);
    if (idx == indices_.end()) return out;
    auto keys = idx->second.find(value);
    if (keys == idx->second.end()) return out;
    for (const std::string& key : keys->second) {
      auto it = items_.find(key);
      if (it == items_.end()) continue;
      if (options_.compact) {
        copies.emplace_back().packed = it->second.packed;
      } else {
        out.push_back(it->second.object);
      }
    }
  }
  for (const Entry& e : copies) out.push_back(Materialize(e));
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

void Informer::Store(const std::string& key, Entry entry) {
  Remove(key);
  for (const auto& [i, value] : entry.index_values) {
    indices_[index_funcs_[i].first][value].insert(key);
  }
  items_.insert_or_assign(key, std::move(entry));
}

void Informer::Remove(const std::string& key) {
  auto it = items_.find(key);
  if (it == items_.end()) return;
  for (const auto& [i, value] : it->second.index_values) {
    auto idx = indices_.find(index_funcs_[i].first);
    if (idx == indices_.end()) continue;
    auto v = idx->second.find(value);
    if (v == idx->second.end()) continue;
    v->second.erase(key);
    if (v->second.empty()) idx->second.erase(v);
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

absl::Status Informer::Relist(bool consistent) {
  ListOptions lo;
  lo.label_selector = options_.label_selector;
  lo.field_selector = options_.field_selector;
  lo.limit = options_.page_size;
  if (!consistent) {
    // From the watch cache, as client-go's reflector lists: "0" (any version) the
    // first time, else no older than what this cache already holds, so a lagging
    // API server never takes the cache back in time.
    const std::string last = LastResourceVersion();
    lo.resource_version = last.empty() ? "0" : last;
    if (!last.empty()) lo.resource_version_match = "NotOlderThan";
  }

  // Page by page, projecting each page before asking for the next, so that at
  // most one page of whole objects (managedFields and all) is in memory at once;
  // the projections are built outside the lock. Like ListAll, a continue token
  // that expired (compaction between pages) starts the list over once.
  absl::flat_hash_map<std::string, Entry> fresh;
  std::vector<std::pair<std::string, std::shared_ptr<const Object>>> objects;
  std::string list_rv;
  bool restarted = false;
  while (true) {
    absl::StatusOr<ListPage> page = client_.List(resource_, options_.ns, lo);
    if (!page.ok()) {
      if (page.status().code() == absl::StatusCode::kOutOfRange && !restarted &&
          !lo.continue_token.empty()) {
        restarted = true;
        lo.continue_token.clear();
        fresh.clear();
        objects.clear();
        list_rv.clear();
        continue;
      }
      return page.status();
    }
    // The first page's resourceVersion is the list's snapshot; later pages agree.
    if (list_rv.empty()) list_rv = page->resource_version;
    for (Object& item : page->items) {
      Object projected = options_.projection ? options_.projection(std::move(item))
                                             : StripManagedFields(std::move(item));
      std::string key = ObjectKey(projected);
      auto obj = std::make_shared<const Object>(std::move(projected));
      fresh.insert_or_assign(key, MakeEntry(obj));
      objects.emplace_back(std::move(key), std::move(obj));
    }
    if (page->continue_token.empty() || options_.page_size <= 0) break;
    lo.continue_token = page->continue_token;
    // Continuation pages carry the snapshot in the token, never a resourceVersion.
    lo.resource_version.clear();
    lo.resource_version_match.clear();
  }
  Metrics::Get().relists->Add({{"resource", resource_.resource}}).Increment();

  // Swap in the new state and compute what changed.
  std::vector<std::pair<std::shared_ptr<const Object>, std::shared_ptr<const Object>>> changes;
  const size_t listed = fresh.size();
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, old] : items_) {
      if (!fresh.contains(key)) changes.emplace_back(Materialize(old), nullptr);
    }
    for (auto& [key, obj] : objects) {
      auto it = items_.find(key);
      if (it == items_.end()) {
        changes.emplace_back(nullptr, std::move(obj));
      } else if (it->second.resource_version != fresh[key].resource_version) {
        changes.emplace_back(Materialize(it->second), std::move(obj));
      }
    }
    objects.clear();  // Unchanged objects need no tree once stored (compact).
    items_.clear();
    indices_.clear();
    for (auto& [key, entry] : fresh) Store(key, std::move(entry));
    resource_version_ = list_rv;
    ++relists_;
    Progress();
  }
  for (const auto& [old_obj, new_obj] : changes) Notify(old_obj.get(), new_obj.get());
  // Synced once the handlers have seen the first list (like client-go), and once
  // the trees built for them are gone: a compact cache then holds only bytes.
  changes.clear();
  changes.shrink_to_fit();
  {
    absl::MutexLock lock(&mu_);
    synced_ = true;
  }
  spdlog::debug("informer {}: listed {} objects at resourceVersion {}", resource_.resource, listed,
                list_rv);
  return absl::OkStatus();
}

absl::Status Informer::WatchOnce() {
  Cancellation cancel;
  WatchOptions wo;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::CancelledError("stopping");
    cancel_ = &cancel;
    idle_cancelled_ = false;
    wo.resource_version = resource_version_;
    ++watches_;
  }
  wo.label_selector = options_.label_selector;
  wo.field_selector = options_.field_selector;
  // As client-go's reflector: a random timeout in [watch_timeout, 2 * watch_timeout), so the
  // watches one process opened together do not all end and re-open in the same second.
  wo.timeout = absl::Seconds(
      absl::ToInt64Seconds(options_.watch_timeout * absl::Uniform(absl::BitGen(), 1.0, 2.0)));
  const absl::Time start = clock_.Now();
  int64_t events = 0;
  absl::Status s = client_.Watch(
      resource_, options_.ns, wo,
      [this, &events](WatchEvent&& ev) {
        ++events;
        auto rv_it = ev.object.find("metadata");
        std::string rv;
        if (rv_it != ev.object.end() && rv_it->is_object()) {
          auto v = rv_it->find("resourceVersion");
          if (v != rv_it->end() && v->is_string()) rv = v->get<std::string>();
        }
        if (ev.type == WatchEvent::Type::kBookmark) {
          absl::MutexLock lock(&mu_);
          if (!rv.empty()) resource_version_ = rv;
          Progress();
          return true;
        }
        Object projected = options_.projection ? options_.projection(std::move(ev.object))
                                               : StripManagedFields(std::move(ev.object));
        auto obj = std::make_shared<const Object>(std::move(projected));
        const std::string key = ObjectKey(*obj);
        Entry entry;
        if (ev.type != WatchEvent::Type::kDeleted) entry = MakeEntry(obj);
        std::shared_ptr<const Object> old;
        {
          absl::MutexLock lock(&mu_);
          if (auto it = items_.find(key); it != items_.end()) old = Materialize(it->second);
          if (ev.type == WatchEvent::Type::kDeleted) {
            Remove(key);
          } else {
            Store(key, std::move(entry));
          }
          if (!rv.empty()) resource_version_ = rv;
          Progress();
        }
        if (ev.type == WatchEvent::Type::kDeleted) {
          Notify(old ? old.get() : obj.get(), nullptr);
        } else {
          Notify(old.get(), obj.get());
        }
        return true;
      },
      &cancel);
  bool idle = false;
  {
    absl::MutexLock lock(&mu_);
    cancel_ = nullptr;
    idle = idle_cancelled_ && !stopping_;
    if (s.ok()) Progress();  // the server ended the watch: it is alive
  }
  if (idle) {
    return absl::UnavailableError(
        absl::StrCat("watch ", resource_.resource, ": nothing received for ",
                     absl::FormatDuration(options_.watch_idle_limit),
                     " (not even a bookmark); the connection is taken for dead"));
  }
  // Like client-go's reflector: a watch closed within a second with nothing in it
  // is a failure to back off from, or a peer that closes every watch at once would
  // have us re-open it as fast as the rate limiter allows.
  if (s.ok() && events == 0 && clock_.Now() - start < absl::Seconds(1)) {
    return absl::UnavailableError(
        absl::StrCat("watch ", resource_.resource, ": closed at once with no events"));
  }
  return s;
}

void Informer::Run() {
  absl::BitGen rng;
  int failures = 0;
  bool need_list = true;
  bool consistent = false;  // the next list: a consistent read (after 410 Gone)
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    absl::Status s;
    // A thread entry: a projection, handler or parse that throws is an error and a
    // relist, never std::terminate.
    try {
      if (need_list) {
        s = Relist(consistent);
        if (s.ok()) {
          need_list = false;
          consistent = false;
        }
      } else {
        s = WatchOnce();
        Metrics::Get().watch_restarts->Add({{"resource", resource_.resource}}).Increment();
        if (s.code() == absl::StatusCode::kOutOfRange) {
          // 410 Gone: our resourceVersion was compacted away. Relist at once.
          spdlog::info("informer {}: watch expired ({}), relisting", resource_.resource,
                       s.message());
          need_list = true;
          consistent = true;
          continue;
        }
        if (s.code() == absl::StatusCode::kCancelled) {
          absl::MutexLock lock(&mu_);
          if (stopping_) return;
        }
      }
    } catch (const std::exception& e) {
      s = absl::InternalError(absl::StrCat("unexpected error: ", e.what()));
      need_list = true;
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
