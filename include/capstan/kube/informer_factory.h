#pragma once

// Shared informers: one Informer per resource, namespace and selectors, made by the
// first controller that asks and handed to every later one (like client-go's
// SharedInformerFactory). Each asker adds its own handlers and indexes to the one
// informer (handlers fan out: each event reaches all of them), so a kind two
// controllers read is listed, watched and cached once.
//
// The informer's other options (projection, compact, page size) are the first
// asker's: controllers sharing an informer agree on the projection, or project
// again on read what they need narrower.

#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "capstan/common/clock.h"
#include "capstan/kube/client.h"
#include "capstan/kube/informer.h"
#include "capstan/kube/resource.h"

namespace capstan::kube {

// Thread-safe.
class InformerFactory {
 public:
  explicit InformerFactory(Client& client, const Clock& clock = RealClock::Get());
  // Stop().
  ~InformerFactory();
  InformerFactory(const InformerFactory&) = delete;
  InformerFactory& operator=(const InformerFactory&) = delete;

  // The informer for `resource` in `options.ns` with `options.label_selector` and
  // `options.field_selector`: made on the first call, the same one on every later call
  // (which ignores its other options). Handlers and indexes are added before Start().
  // The factory owns it; it lives as long as the factory.
  Informer& For(const Resource& resource, InformerOptions options);

  // Starts every informer not started yet. Idempotent: each controller's StartCaches
  // may call it; an informer is started once.
  void Start();
  // Stops every started informer; idempotent (and final: Start() does not restart
  // them). Their caches stay readable.
  void Stop();

  // How many informers (and so watches) the factory holds.
  size_t size() const;
  // Whether Stop() was called.
  bool stopped() const;

 private:
  // resource (group/version/plural), namespace, label selector, field selector.
  using Key = std::tuple<std::string, std::string, std::string, std::string>;
  struct Shared {
    std::unique_ptr<Informer> informer;
    bool started = false;
  };

  Client& client_;
  const Clock& clock_;
  mutable absl::Mutex mu_;
  std::map<Key, Shared> informers_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace capstan::kube
