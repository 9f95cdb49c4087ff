#include "capstan/kube/informer_factory.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace capstan::kube {

InformerFactory::InformerFactory(Client& client, const Clock& clock)
    : client_(client), clock_(clock) {}

InformerFactory::~InformerFactory() { Stop(); }

Informer& InformerFactory::For(const Resource& resource, InformerOptions options) {
  Key key{absl::StrCat(resource.group, "/", resource.version, "/", resource.resource), options.ns,
          options.label_selector, options.field_selector};
  absl::MutexLock lock(&mu_);
  Shared& shared = informers_[std::move(key)];
  if (shared.informer == nullptr) {
    shared.informer = std::make_unique<Informer>(client_, resource, std::move(options), clock_);
  }
  return *shared.informer;
}

void InformerFactory::Start() {
  absl::MutexLock lock(&mu_);
  for (auto& [key, shared] : informers_) {
    if (shared.started) continue;
    shared.started = true;
    shared.informer->Start();
  }
}

void InformerFactory::Stop() {
  // Not under mu_: a stop joins the informer's thread, which may be in a handler.
  std::vector<Informer*> started;
  {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
    for (auto& [key, shared] : informers_) {
      if (shared.started) started.push_back(shared.informer.get());
    }
  }
  for (Informer* informer : started) informer->Stop();
}

bool InformerFactory::stopped() const {
  absl::MutexLock lock(&mu_);
  return stopped_;
}

size_t InformerFactory::size() const {
  absl::MutexLock lock(&mu_);
  return informers_.size();
}

}  // namespace capstan::kube
