// Shared informers (kube::InformerFactory): one informer per resource, namespace and
// selectors, started once, its events fanned out to every handler; the Release and
// Environment controllers on one factory watch each kind once and both reconcile
// from the one cache.

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "capstan/common/clock.h"
#include "capstan/controller/environment_controller.h"
#include "capstan/controller/release_controller.h"
#include "capstan/controller/secret_rotation_controller.h"
#include "capstan/kube/informer_factory.h"
#include "capstan/kube/resource.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "unit/controller/controller_test_support.h"

namespace capstan::controller {
namespace {

using ::testing::ElementsAre;
using testing::Eventually;
using testing::Json;
using testing::NsPath;

constexpr char kCore[] = "/api/v1";
constexpr char kCapstan[] = "/apis/capstan.dev/v1alpha1";

TEST(InformerFactoryTest, OneInformerPerResourceNamespaceAndSelectors) {
  testing::InMemoryApiServer server;
  std::unique_ptr<kube::Client> client = server.NewClient();
  kube::InformerFactory factory(*client);
  kube::InformerOptions first;
  first.ns = "shop";
  first.label_selector = "app=web";
  kube::Informer& base = factory.For(kube::resources::Releases(), first);

  struct Row {
    std::string name;
    kube::Resource resource;
    std::string ns;
    std::string label_selector;
    std::string field_selector;
    bool compact;
    bool same;
  };
  const std::vector<Row> rows = {
      {"same key", kube::resources::Releases(), "shop", "app=web", "", false, true},
      {"same key, other options (the first asker's win)", kube::resources::Releases(), "shop",
       "app=web", "", true, true},
      {"other namespace", kube::resources::Releases(), "", "app=web", "", false, false},
      {"other label selector", kube::resources::Releases(), "shop", "", "", false, false},
      {"other field selector", kube::resources::Releases(), "shop", "app=web", "metadata.name=web",
       false, false},
      {"other resource", kube::resources::Deployments(), "shop", "app=web", "", false, false},
  };
  size_t distinct = 1;
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    kube::InformerOptions o;
    o.ns = row.ns;
    o.label_selector = row.label_selector;
    o.field_selector = row.field_selector;
    o.compact = row.compact;
    kube::Informer& got = factory.For(row.resource, o);
    EXPECT_EQ(&got == &base, row.same);
    // Asked again: the same informer as the first time.
    EXPECT_EQ(&factory.For(row.resource, o), &got);
    if (!row.same) ++distinct;
    EXPECT_EQ(factory.size(), distinct);
  }
}

TEST(InformerFactoryTest, StartsEachInformerOnceAndFansEventsOutToEveryHandler) {
  testing::InMemoryApiServer server;
  std::unique_ptr<kube::Client> client = server.NewClient();
  kube::InformerFactory factory(*client);
  kube::InformerOptions o;
  o.ns = "shop";
  std::atomic<int> first{0};
  std::atomic<int> second{0};
  factory.For(kube::resources::ConfigMaps(), o)
      .AddHandler([&](const kube::Object*, const kube::Object*) { ++first; });
  kube::Informer& shared = factory.For(kube::resources::ConfigMaps(), o);
  shared.AddHandler([&](const kube::Object*, const kube::Object*) { ++second; });
  // Two controllers' StartCaches.
  factory.Start();
  factory.Start();
  ASSERT_TRUE(shared.WaitForSync(absl::Seconds(30)));
  server.Put(NsPath(kCore, "shop", "configmaps", "settings"),
             {{"apiVersion", "v1"},
              {"kind", "ConfigMap"},
              {"metadata", {{"name", "settings"}, {"namespace", "shop"}}}});
  ASSERT_TRUE(Eventually([&] { return first > 0 && second > 0; }));
  EXPECT_EQ(first, 1);
  EXPECT_EQ(second, 1);
  // Started once: one list and one watch (a second start would have made two).
  EXPECT_EQ(shared.watches(), 1);
  EXPECT_EQ(server.Requests("WATCH"), 1);
  factory.Stop();
  factory.Stop();
}

// The informers the Release controller makes: its own 12 (Releases, Deployments,
// Services, HPAs, PDBs, ControllerRevisions, Pods, Environments, Namespaces,
// ReleaseApprovals, EndpointSlices, Ingresses), AnalysisGates' 4 and the hook Jobs.
constexpr size_t kReleaseControllerInformers = 17;

TEST(SharedInformersTest, TheOtherControllersAddNoWatchOfAKindTheReleaseControllerWatches) {
  testing::InMemoryApiServer server;
  std::unique_ptr<kube::Client> client = server.NewClient();
  server.Put(absl::StrCat(kCore, "/namespaces/shop"),
             {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "shop"}}}});
  server.Put(absl::StrCat(kCapstan, "/environments/production"),
             {{"apiVersion", "capstan.dev/v1alpha1"},
              {"kind", "Environment"},
              {"metadata", {{"name", "production"}, {"generation", 1}}},
              {"spec", {{"namespaces", {"shop"}}}}});
  server.Put(
      NsPath(kCapstan, "shop", "releases", "web"),
      {{"apiVersion", "capstan.dev/v1alpha1"},
       {"kind", "Release"},
       {"metadata", {{"name", "web"}, {"namespace", "shop"}, {"generation", 1}}},
       {"spec",
        {{"replicas", 1},
         {"template", {{"spec", {{"containers", {{{"name", "web"}, {"image", "nginx:1"}}}}}}}}}}});

  FakeClock clock;
  kube::InformerFactory factory(*client, clock);
  ReleaseController::Options ro;
  ro.informers = &factory;
  ReleaseController releases(
      *client, ro, [](const kube::Object&, const rollout::Event&) {}, clock);
  ASSERT_EQ(factory.size(), kReleaseControllerInformers);
  EnvironmentController::Options eo;
  eo.informers = &factory;
  EnvironmentController environments(*client, eo, clock);
  // Environments, Releases, Namespaces and AnalysisRuns are the Release controller's.
  EXPECT_EQ(factory.size(), kReleaseControllerInformers);
  // The SecretRotation controller's own: SecretRotations, its labelled Secrets and Jobs,
  // and every Deployment, StatefulSet and DaemonSet; its Releases are the Release
  // controller's (same namespace scope, same options).
  SecretRotationController::Options so;
  so.informers = &factory;
  SecretRotationController rotations(
      *client, so,
      [](const kube::Object&, const std::string&, const std::string&, const std::string&) {},
      clock);
  constexpr size_t kSecretRotationInformers = 6;
  EXPECT_EQ(factory.size(), kReleaseControllerInformers + kSecretRotationInformers);

  releases.StartCaches();
  environments.StartCaches();
  rotations.StartCaches();
  testing::WaitForCaches(server, releases);
  ASSERT_TRUE(Eventually([&] { return environments.HasSynced() && rotations.HasSynced(); }));
  // Each informer watches once (HTTPRoutes are not served here, so not watched).
  constexpr int64_t kWatches = kReleaseControllerInformers + kSecretRotationInformers;
  ASSERT_TRUE(Eventually([&] { return server.Requests("WATCH") >= kWatches; }));
  EXPECT_EQ(server.Requests("WATCH"), kWatches);

  // The Environment's status counts the Release from the shared cache.
  server.ClearWrites();
  absl::StatusOr<kube::ReconcileResult> r = environments.Reconcile("production");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(server.WriteLines(), ElementsAre("apply environments production/status"));
  const std::optional<Json> env = server.Get(absl::StrCat(kCapstan, "/environments/production"));
  ASSERT_TRUE(env.has_value());
  EXPECT_EQ(env->value("/status/releaseCount"_json_pointer, -1), 1);

  rotations.Stop();
  environments.Stop();
  releases.Stop();
  factory.Stop();
}

}  // namespace
}  // namespace capstan::controller
