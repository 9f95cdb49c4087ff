#include "capstan/controller/manager.h"

namespace capstan::controller {

Manager::~Manager() {
  StopControllers();
  StopInformers();
  // Destroyed in reverse order of making, before the factory (a member declared first).
  while (!controllers_.empty()) controllers_.pop_back();
}

void Manager::StartCaches() {
  for (Controller& c : controllers_) c.start_caches();
}

bool Manager::HasSynced() const {
  for (const Controller& c : controllers_) {
    if (!c.has_synced()) return false;
  }
  return true;
}

void Manager::StartWorkers() {
  for (Controller& c : controllers_) c.start_workers();
}

void Manager::StopControllers() {
  if (controllers_stopped_) return;
  controllers_stopped_ = true;
  for (Controller& c : controllers_) c.stop();
}

void Manager::StopInformers() { informers_.Stop(); }

}  // namespace capstan::controller
