#pragma once

// The scaffolding every controller shares: its informers, its work queue, the
// workers that wait for synced caches, a periodic tick (resync), and an
// orderly stop. A controller owns one Loop and supplies the parts that differ:
// its reconcile function and what its tick enqueues.

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
#include "capstan/kube/workqueue.h"

namespace capstan::controller {

// Thread-safe.
class Loop {
 public:
  // `name` names the work queue (and so its metrics and log lines).
  Loop(std::string name, const Clock& clock);
  // Stop().
  ~Loop();

  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  kube::WorkQueue& queue() { return *queue_; }

  // Informers are added before StartCaches(); the Loop does not own them.
  void AddInformer(kube::Informer* informer) { informers_.push_back(informer); }

  // The priority for a key enqueued by an event of `informer`: low while it
  // is still delivering its initial list (every object "added" at once), so
  // that a real change made meanwhile is not queued behind all of them.
  static kube::WorkQueue::Priority EventPriority(const kube::Informer& informer) {
    return informer.HasSynced() ? kube::WorkQueue::Priority::kNormal
                                : kube::WorkQueue::Priority::kLow;
  }

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
  // and the informers, in that order. Idempotent.
  void Stop();

 private:
  std::vector<kube::Informer*> informers_;
  std::unique_ptr<kube::WorkQueue> queue_;
  std::unique_ptr<kube::WorkerPool> workers_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread ticker_;
};

}  // namespace capstan::controller
