#pragma once

// The operator's controllers and what they share (as controller-runtime's Manager): one
// kube::InformerFactory, so each kind is listed, watched and cached once, and the
// lifecycle every controller has. run.cc makes each controller with Make() on
// informers(); the Manager starts their caches, says when all are synced, starts their
// workers (when leading) and stops them in order:
//
//   StopControllers()   every controller's workers (an in-flight reconcile finishes)
//   ...                 the caller releases the Lease and flushes Events here
//   StopInformers()     the shared informers, whose handlers enqueue into controllers
//   ~Manager            both (idempotent), then destroys the controllers, then the
//                       factory: nothing is left to call into a destroyed controller.

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "capstan/common/clock.h"
#include "capstan/kube/client.h"
#include "capstan/kube/informer_factory.h"

namespace capstan::controller {

// Not thread-safe: one thread (run.cc's) makes, starts and stops; HasSynced() may be
// called from any thread once every controller is made.
class Manager {
 public:
  explicit Manager(kube::Client& client, const Clock& clock = RealClock::Get())
      : informers_(client, clock) {}
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // The factory every controller's options name (Options::informers).
  kube::InformerFactory& informers() { return informers_; }

  // Makes and owns a controller: any type with StartCaches(), HasSynced() const,
  // StartWorkers() and Stop(), the order of Make() being the order of each step.
  template <typename C, typename... Args>
  C& Make(Args&&... args) {
    auto owned = std::make_shared<C>(std::forward<Args>(args)...);
    C* c = owned.get();
    controllers_.push_back({.start_caches = [c] { c->StartCaches(); },
                            .has_synced = [c] { return c->HasSynced(); },
                            .start_workers = [c] { c->StartWorkers(); },
                            .stop = [c] { c->Stop(); },
                            .owned = std::move(owned)});
    return *c;
  }

  void StartCaches();
  // Every controller's caches synced (the /readyz check).
  bool HasSynced() const;
  void StartWorkers();
  void StopControllers();
  void StopInformers();

 private:
  struct Controller {
    std::function<void()> start_caches;
    std::function<bool()> has_synced;
    std::function<void()> start_workers;
    std::function<void()> stop;
    std::shared_ptr<void> owned;
  };

  // Declared first: destroyed after the controllers.
  kube::InformerFactory informers_;
  std::vector<Controller> controllers_;
  bool controllers_stopped_ = false;
};

}  // namespace capstan::controller
