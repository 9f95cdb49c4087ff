#include "capstan/controller/loop.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"

namespace capstan::controller {

Loop::Loop(std::string name, const Clock& clock)
    : queue_(std::make_unique<kube::WorkQueue>(std::move(name), clock)) {}

Loop::~Loop() { Stop(); }

void Loop::StartCaches() {
  for (kube::Informer* inf : informers_) inf->Start();
}

bool Loop::CachesHold(uint64_t resource_version) const {
  return std::all_of(informers_.begin(), informers_.end(), [&](const kube::Informer* i) {
    uint64_t rv = 0;
    return i->HasSynced() && absl::SimpleAtoi(i->LastResourceVersion(), &rv) &&
           rv >= resource_version;
  });
}

bool Loop::HasSynced() const {
  return std::all_of(informers_.begin(), informers_.end(),
                     [](const kube::Informer* i) { return i->HasSynced(); });
}

void Loop::StartWorkers(int workers, kube::ReconcileFunc reconcile, absl::Duration period,
                        std::function<void()> tick) {
  workers_ = std::make_unique<kube::WorkerPool>(
      *queue_, workers,
      [this, reconcile = std::move(reconcile)](
          const std::string& key) -> absl::StatusOr<kube::ReconcileResult> {
        if (!HasSynced()) {
          kube::ReconcileResult wait;
          wait.requeue_after = absl::Milliseconds(200);
          return wait;
        }
        return reconcile(key);
      });
  ticker_ = std::thread([this, period, tick = std::move(tick)] {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), period)) return;
      }
      tick();
    }
  });
}

void Loop::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (ticker_.joinable()) ticker_.join();
  if (workers_ != nullptr) workers_->Stop();
  queue_->ShutDown();
  for (kube::Informer* inf : informers_) inf->Stop();
}

}  // namespace capstan::controller
