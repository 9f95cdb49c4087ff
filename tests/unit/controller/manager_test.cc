// controller::Manager: each lifecycle step reaches every controller in the order they
// were made, HasSynced is all of theirs, and the manager's end stops workers, then the
// shared informers, then destroys the controllers (in reverse order), then the factory.

#include "capstan/controller/manager.h"

#include <memory>
#include <string>
#include <vector>

#include "capstan/common/clock.h"
#include "capstan/kube/informer_factory.h"
#include "capstan/kube/resource.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "unit/controller/controller_test_support.h"

namespace capstan::controller {
namespace {

using ::testing::ElementsAre;

// Records each call as "<name> <step>".
class FakeController {
 public:
  FakeController(std::string name, std::vector<std::string>* log,
                 const kube::InformerFactory* informers)
      : name_(std::move(name)), log_(log), informers_(informers) {}
  ~FakeController() {
    // The shared informers are stopped before any controller goes (their handlers
    // enqueue into the controllers).
    log_->push_back(name_ + (informers_->stopped() ? " destroyed" : " destroyed-while-watching"));
  }
  void StartCaches() { log_->push_back(name_ + " caches"); }
  bool HasSynced() const { return synced; }
  void StartWorkers() { log_->push_back(name_ + " workers"); }
  void Stop() { log_->push_back(name_ + " stop"); }
  bool synced = false;

 private:
  std::string name_;
  std::vector<std::string>* log_;
  const kube::InformerFactory* informers_;
};

TEST(ManagerTest, StepsInOrderAndTheEndInReverse) {
  testing::InMemoryApiServer server;
  std::unique_ptr<kube::Client> client = server.NewClient();
  FakeClock clock;
  std::vector<std::string> log;
  {
    Manager manager(*client, clock);
    manager.informers().For(kube::resources::Releases(), {});
    FakeController& a = manager.Make<FakeController>("a", &log, &manager.informers());
    FakeController& b = manager.Make<FakeController>("b", &log, &manager.informers());
    EXPECT_EQ(manager.informers().size(), 1u);

    manager.StartCaches();
    EXPECT_FALSE(manager.HasSynced());
    a.synced = true;
    EXPECT_FALSE(manager.HasSynced()) << "b has not synced";
    b.synced = true;
    EXPECT_TRUE(manager.HasSynced());
    manager.StartWorkers();
    manager.StopControllers();
    manager.StopControllers();  // idempotent: each controller is stopped once
    EXPECT_THAT(log,
                ElementsAre("a caches", "b caches", "a workers", "b workers", "a stop", "b stop"));
    log.clear();
  }
  EXPECT_THAT(log, ElementsAre("b destroyed", "a destroyed"));
}

TEST(ManagerTest, TheEndStopsWorkersThenInformersWhenNobodyDid) {
  testing::InMemoryApiServer server;
  std::unique_ptr<kube::Client> client = server.NewClient();
  FakeClock clock;
  std::vector<std::string> log;
  {
    Manager manager(*client, clock);
    manager.Make<FakeController>("a", &log, &manager.informers());
    manager.StartCaches();
    manager.StartWorkers();
    log.clear();
  }
  // An early return (run.cc): the same order as a clean stop.
  EXPECT_THAT(log, ElementsAre("a stop", "a destroyed"));
}

}  // namespace
}  // namespace capstan::controller
