#pragma once

// An informer: list, then watch one resource kind (optionally label-selected),
// keep a cache of projections of the objects, and tell handlers what changed.
//
// Like client-go's reflector + indexer, reduced to what Capstan needs:
//  - the initial list is paginated (ListAll) and the watch resumes from the
//    last resourceVersion seen (bookmarks keep it fresh);
//  - a watch that the server closes is re-opened from that resourceVersion;
//  - 410 Gone (the resourceVersion was compacted away) triggers a relist, and
//    the relist is diffed against the cache so handlers see the deletes and
//    updates they missed;
//  - other failures back off exponentially (1 s doubling to 30 s, jittered);
//  - lists are served from the API server's watch cache, as client-go's reflector
//    asks for them: resourceVersion=0 for the first list, the last version seen
//    (NotOlderThan) after a failed watch, a consistent read ("") only after 410;
//  - a watch that delivers nothing, not even a bookmark (the watch cache sends one
//    about every minute), for `watch_idle_limit` is taken for a half-open
//    connection and re-opened, long before a TCP timeout would notice;
//  - nothing thrown on the informer's thread ends the process: it is logged and
//    the informer relists.
// The cache holds projections (by default: managedFields stripped), never
// whole objects we do not read, to keep memory per object small; with
// `compact` it holds them as MessagePack bytes and decodes on each read.

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "capstan/common/clock.h"
#include "capstan/kube/client.h"

namespace capstan::kube {

// Informers whose last progress is older than `max_age` (by resource name), for a
// liveness check: a cache that stopped moving makes every decision from stale data.
std::vector<std::string> StalledInformers(absl::Duration max_age);

// Removes metadata.managedFields (large, never read by Capstan).
Object StripManagedFields(Object obj);

// "namespace/name", or "name" for cluster-scoped objects.
std::string ObjectKey(const Object& obj);

struct InformerOptions {
  std::string ns;              // "" watches all namespaces
  std::string label_selector;  // e.g. "app.kubernetes.io/managed-by=capstan"
  std::string field_selector;
  // Reduces each object to what the controllers read. Default: StripManagedFields.
  std::function<Object(Object)> projection;
  // Server-side watch timeout, at least this and less than twice it (random, as client-go's
  // reflector); the watch is re-opened after it. It only bounds how long one connection
  // lives (so watches move to a new API server after a control-plane rollout): a stale
  // watch is noticed by watch_idle_limit. client-go's 5 minutes re-opened Capstan's ~16
  // watches about 3 times a minute at rest; 10 minutes halves that.
  absl::Duration watch_timeout = absl::Minutes(10);
  int64_t page_size = 500;
  // About two and a half bookmark intervals.
  absl::Duration watch_idle_limit = absl::Seconds(150);
  // Keep each object as MessagePack bytes instead of an nlohmann::json tree.
  // A tree costs ~7x its JSON text (a map node and a key string per field, a
  // heap string per long value): a 1.4 KB Deployment projection is ~10 KB as
  // a tree and ~1.2 KB packed. The price is a decode (microseconds) on every
  // Get/List/ByIndex, which then return a fresh object of their own.
  bool compact = false;
};

// Thread-safe. Handlers run on the informer's thread, one at a time, and must
// be quick (enqueue a key). `old_obj` is null for adds, `new_obj` null for deletes.
class Informer {
 public:
  using Handler = std::function<void(const Object* old_obj, const Object* new_obj)>;
  using IndexFunc = std::function<std::vector<std::string>(const Object&)>;

  Informer(Client& client, Resource resource, InformerOptions options,
           const Clock& clock = RealClock::Get());
  ~Informer();
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;

  // Before Start().
  void AddHandler(Handler handler);
  // Before Start(): an index from values (e.g. a release name) to object keys.
  void AddIndex(const std::string& name, IndexFunc fn);

  void Start();
  // Stops the watch thread; idempotent. The cache stays readable.
  void Stop();

  // True once the first list has been stored and its handlers called.
  bool HasSynced() const;
  // Blocks until synced or `timeout`; true when synced.
  bool WaitForSync(absl::Duration timeout) const;

  std::shared_ptr<const Object> Get(const std::string& key) const;
  std::shared_ptr<const Object> Get(absl::string_view ns, absl::string_view name) const;
  std::vector<std::shared_ptr<const Object>> List() const;
  // The keys ("namespace/name", or "name") of every cached object, without
  // decoding any object: what a resync or a fan-out needs.
  std::vector<std::string> Keys() const;
  std::vector<std::shared_ptr<const Object>> ByIndex(const std::string& index,
                                                     const std::string& value) const;
  size_t Size() const;
  std::string LastResourceVersion() const;
  const Resource& resource() const { return resource_; }

  // Counters for tests and benchmarks.
  int64_t relists() const;
  int64_t watches() const;

  // Time since the informer last made progress: a list stored, a watch event or
  // bookmark, a watch the server ended normally (monotonic clock).
  absl::Duration SinceProgress() const;

 private:
  void Run();
  // Called by the process-wide monitor: cancels a watch silent for longer than
  // watch_idle_limit, and refreshes the last-event age gauge.
  void CheckIdle();
  void Progress() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  friend class InformerMonitor;
  // Lists everything and replaces the cache, telling handlers the difference.
  // After 410 Gone the list is a consistent read; otherwise from the watch cache.
  absl::Status Relist(bool consistent);
  // Watches from the last RV until the stream ends; returns why it ended.
  absl::Status WatchOnce();
  // One cached object: the tree, or (compact) its MessagePack bytes; what
  // Relist compares and Remove must un-index are kept beside it.
  struct Entry {
    std::shared_ptr<const Object> object;
    std::string packed;
    std::string resource_version;
    // (index number in index_funcs_, value) pairs this object is indexed under.
    std::vector<std::pair<size_t, std::string>> index_values;
  };
  Entry MakeEntry(std::shared_ptr<const Object> obj) const;
  std::shared_ptr<const Object> Materialize(const Entry& entry) const;
  void Store(const std::string& key, Entry entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Remove(const std::string& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Notify(const Object* old_obj, const Object* new_obj);
  bool SleepOrStop(absl::Duration d);

  Client& client_;
  const Resource resource_;
  const InformerOptions options_;
  const Clock& clock_;
  std::vector<Handler> handlers_;
  std::vector<std::pair<std::string, IndexFunc>> index_funcs_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> items_ ABSL_GUARDED_BY(mu_);
  // index name -> value -> keys
  absl::flat_hash_map<std::string,
                      absl::flat_hash_map<std::string, absl::flat_hash_set<std::string>>>
      indices_ ABSL_GUARDED_BY(mu_);
  std::string resource_version_ ABSL_GUARDED_BY(mu_);
  bool synced_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t relists_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t watches_ ABSL_GUARDED_BY(mu_) = 0;
  Cancellation* cancel_ ABSL_GUARDED_BY(mu_) = nullptr;
  absl::Time last_progress_ ABSL_GUARDED_BY(mu_);
  bool idle_cancelled_ ABSL_GUARDED_BY(mu_) = false;

  std::thread thread_;
};

}  // namespace capstan::kube
