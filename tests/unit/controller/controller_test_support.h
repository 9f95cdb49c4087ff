#pragma once

// What the controller tests share: an InMemoryApiServer the real informers list and
// watch, a helper that waits until a controller's caches hold everything the server
// has (an observable, never a sleep), and builders for the objects other controllers
// would write (Deployment status, pods, EndpointSlices).

#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "unit/kube/in_memory_api_server.h"

namespace capstan::controller::testing {

using Json = nlohmann::json;
using kube::testing::InMemoryApiServer;

// Waits until `done` holds; a test that gets here with a broken cache fails after a
// generous bound instead of hanging. Nothing is asserted about how long it took.
inline bool Eventually(const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

// Blocks until `caches_hold(rv)` for the server's current resourceVersion.
template <typename Controller>
void WaitForCaches(const InMemoryApiServer& server, const Controller& controller) {
  const uint64_t rv = static_cast<uint64_t>(server.ResourceVersion());
  ASSERT_TRUE(Eventually([&] { return controller.CachesHold(rv); }))
      << "caches never reached resourceVersion " << rv;
}

inline std::string NsPath(const std::string& prefix, const std::string& ns,
                          const std::string& resource, const std::string& name) {
  return absl::StrCat(prefix, "/namespaces/", ns, "/", resource, "/", name);
}

}  // namespace capstan::controller::testing
