#pragma once

// The scaffolding every controller shares: its informers, its work queue, the
// workers that wait for synced caches, a periodic tick (resync), and an
// orderly stop. A controller owns one Loop and supplies the parts that differ:
// its reconcile function and what its tick enqueues.
//
// Informers come from a kube::InformerFactory (Shared()): the one given, which
// other controllers share (run.cc: each kind is watched once), or, when none is
// given, one the Loop owns.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "capstan/common/clock.h"
#include "capstan/kube/informer.h"
#include "capstan/kube/informer_factory.h"
#include "capstan/kube/workqueue.h"

namespace capstan::controller {

// Thread-safe.
class Loop {
 public:
  // `name` names the work queue (and so its metrics and log lines). A Loop made
  // this way has no factory: its informers are all added (AddInformer).
  Loop(std::string name, const Clock& clock);
  // With Shared() informers from `informers`: the shared factory, which outlives the
  // Loop and is stopped by its owner after every controller sharing it; null: the
  // Loop makes its own (on `client`) and stops it.
  Loop(std::string name, const Clock& clock, kube::Client& client,
       kube::InformerFactory* informers);
  // Stop().
  ~Loop();

  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  kube::WorkQueue& queue() { return *queue_; }

  // Informers are added before StartCaches(); the Loop does not own them, but
  // starts and stops them.
  void AddInformer(kube::Informer* informer) {
    informers_.push_back(informer);
    added_.push_back(informer);
  }
  // The factory's informer for `resource` with `options` (made by the first asker),
  // which this Loop then waits for (HasSynced, CachesHold). Before StartCaches();
  // only on a Loop made with a factory.
  kube::Informer& Shared(const kube::Resource& resource, kube::InformerOptions options);

  // The priority for a key enqueued by an event of `informer`: low while it
  // is still delivering its initial list (every object "added" at once), so
  // that a real change made meanwhile is not queued behind all of them.
  static kube::WorkQueue::Priority EventPriority(const kube::Informer& informer) {
    return informer.HasSynced() ? kube::WorkQueue::Priority::kNormal
                                : kube::WorkQueue::Priority::kLow;
  }

  // Starts the informers added, and the factory's not started yet (each once).
  void StartCaches();
  bool HasSynced() const;
  // True when every informer has seen the API server's state up to
  // `resource_version` (events or bookmarks): what a test waits for before it
  // reconciles, so the reconcile decides from what the test put there.
  bool CachesHold(uint64_t resource_version) const;

  // Starts `workers` workers running `reconcile`, and a thread that calls
  // `tick` every `period` until Stop(). A new leader may start before its
  // caches are synced (it can win the lease at once); deciding from a partial
  // cache could mis-number revisions or re-create what exists, so until every
  // informer has synced, keys wait (200 ms requeues).
  void StartWorkers(int workers, kube::ReconcileFunc reconcile, absl::Duration period,
                    std::function<void()> tick);

  // Stops the tick, the workers (an in-flight reconcile finishes), the queue
  // and the informers, in that order (the shared ones only when the factory is
  // the Loop's own). Idempotent.
  void Stop();

 private:
  std::unique_ptr<kube::InformerFactory> own_factory_;
  kube::InformerFactory* factory_ = nullptr;
  // Every informer this Loop waits for; added_ of them it starts and stops itself.
  std::vector<kube::Informer*> informers_;
  std::vector<kube::Informer*> added_;
  std::unique_ptr<kube::WorkQueue> queue_;
  std::unique_ptr<kube::WorkerPool> workers_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread ticker_;
};

}  // namespace capstan::controller
