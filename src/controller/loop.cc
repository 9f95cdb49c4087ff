#include "capstan/controller/loop.h"

#include <algorithm>
#include <exception>
#include <utility>

#include "absl/strings/numbers.h"
#include "capstan/common/log.h"
#include "capstan/common/monotonic_clock.h"

namespace capstan::controller {

// Queue delays are durations: on the monotonic clock in production (a wall-clock step
// must not fire or hold back every requeue at once), on a test's FakeClock in tests.
Loop::Loop(std::string name, const Clock& clock)
    : queue_(std::make_unique<kube::WorkQueue>(
          std::move(name), &clock == &RealClock::Get() ? MonotonicClock::Get() : clock)) {}

Loop::Loop(std::string name, const Clock& clock, kube::Client& client,
           kube::InformerFactory* informers)
    : Loop(std::move(name), clock) {
  if (informers == nullptr) {
    own_factory_ = std::make_unique<kube::InformerFactory>(client, clock);
    informers = own_factory_.get();
  }
  factory_ = informers;
}

Loop::~Loop() { Stop(); }

kube::Informer& Loop::Shared(const kube::Resource& resource, kube::InformerOptions options) {
  kube::Informer& informer = factory_->For(resource, std::move(options));
  // Two parts of one controller may ask for the same informer; it is waited for once.
  if (std::find(informers_.begin(), informers_.end(), &informer) == informers_.end()) {
    informers_.push_back(&informer);
  }
  return informer;
}

void Loop::StartCaches() {
  for (kube::Informer* inf : added_) inf->Start();
  if (factory_ != nullptr) factory_->Start();
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
      // A thread entry: a tick that throws is reported and the ticker lives on.
      try {
        tick();
      } catch (const std::exception& e) {
        spdlog::error("{}: resync tick threw: {}", queue_->name(), e.what());
      }
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
  for (kube::Informer* inf : added_) inf->Stop();
  if (own_factory_ != nullptr) own_factory_->Stop();
}

}  // namespace capstan::controller
