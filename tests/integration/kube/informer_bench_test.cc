// Informer measurements against the real API server (numbers, not assertions):
//  - cache memory per 1,000 Deployments and per 1,000 Releases (custom objects),
//    as the malloc heap in use (mallinfo2 uordblks + hblkhd) and RSS, before and
//    after the first sync;
//  - list+watch start-up, Start() -> HasSynced(), at N ConfigMaps: 1,000 by
//    default, CAPSTAN_INFORMER_BENCH_OBJECTS=10000 for the figure docs/design.md
//    quotes (creating 10,000 objects takes the cluster a minute or two).
// The tests assert only correctness: each cache ends up holding every object.
// The numbers are printed as "[bench] ..." lines; the machine's load moves the
// times a lot (the test cluster shares the CPUs with the test).

#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "capstan/kube/informer.h"
#include "cluster_util.h"
#include "gtest/gtest.h"

namespace capstan::kube::itest {
namespace {

constexpr char kBenchLabel[] = "capstan.dev/bench";

struct Mem {
  int64_t heap = 0;  // bytes malloc has handed out and not had back
  int64_t rss = 0;   // resident bytes of the whole process
};

// Trims first so that RSS counts what is in use, not what free() kept.
Mem SampleMemory() {
  malloc_trim(0);
  Mem m;
  struct mallinfo2 mi = mallinfo2();
  m.heap = static_cast<int64_t>(mi.uordblks + mi.hblkhd);
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0;
  int64_t resident = 0;
  statm >> size >> resident;
  m.rss = resident * sysconf(_SC_PAGESIZE);
  return m;
}

int BenchObjects() {
  const char* env = std::getenv("CAPSTAN_INFORMER_BENCH_OBJECTS");
  int n = 0;
  if (env != nullptr && absl::SimpleAtoi(env, &n) && n > 0) return n;
  return 1000;
}

// Creates objects 0..n-1 from `make` on `threads` parallel requests.
void CreateInParallel(Client& client, const Resource& r, const std::string& ns, int n,
                      const std::function<Object(int)>& make, int threads = 8) {
  std::atomic<int> next{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = next++; i < n; i = next++) {
        const Object obj = make(i);
        absl::Status s;
        // Create is never retried by the client; retry here what is safe to retry.
        for (int attempt = 0; attempt < 5; ++attempt) {
          s = client.Create(r, ns, obj).status();
          if (s.code() != absl::StatusCode::kUnavailable) break;
          absl::SleepFor(absl::Milliseconds(100 * (attempt + 1)));
        }
        if (!s.ok() && s.code() != absl::StatusCode::kAlreadyExists) {
          if (failures++ < 5) ADD_FAILURE() << r.resource << " " << i << ": " << s;
        }
      }
    });
  }
  for (std::thread& t : pool) t.join();
  ASSERT_EQ(failures.load(), 0);
}

// A Deployment shaped like the ones Capstan renders (labels, the revision and
// applied-hash annotations, a controller ownerReference, one container with a
// port, resources and a readiness probe). Paused with 0 replicas, so the
// deployment controller creates no ReplicaSet and the cluster stays quiet. The
// owner is a real object (`owner_uid`): the garbage collector deletes objects
// whose owner does not exist.
Object BenchDeployment(const std::string& ns, int i, const std::string& owner_uid) {
  const std::string name = absl::StrFormat("bench-%05d", i);
  Object labels = {{"app.kubernetes.io/name", name},
                   {"app.kubernetes.io/managed-by", "capstan"},
                   {"capstan.dev/release", name},
                   {kBenchLabel, "yes"}};
  Object pod_labels = {{"app.kubernetes.io/name", name},
                       {"capstan.dev/release", name},
                       {"capstan.dev/revision", "5d8f7c9b6a"}};
  return Object{
      {"apiVersion", "apps/v1"},
      {"kind", "Deployment"},
      {"metadata",
       {{"name", name},
        {"namespace", ns},
        {"labels", labels},
        {"annotations",
         {{"capstan.dev/revision", "5d8f7c9b6a"},
          {"capstan.dev/applied-hash", "0123456789abcdef"}}},
        {"ownerReferences", Object::array({{{"apiVersion", "v1"},
                                            {"kind", "ConfigMap"},
                                            {"name", "owner"},
                                            {"uid", owner_uid},
                                            {"controller", true},
                                            {"blockOwnerDeletion", true}}})}}},
      {"spec",
       {{"replicas", 0},
        {"paused", true},
        {"selector",
         {{"matchLabels", {{"app.kubernetes.io/name", name}, {"capstan.dev/release", name}}}}},
        {"strategy",
         {{"type", "RollingUpdate"},
          {"rollingUpdate", {{"maxSurge", "25%"}, {"maxUnavailable", "25%"}}}}},
        {"progressDeadlineSeconds", 600},
        {"revisionHistoryLimit", 3},
        {"template",
         {{"metadata", {{"labels", pod_labels}}},
          {"spec",
           {{"containers", Object::array({{{"name", "app"},
                                           {"image", "registry.example/app:1"},
                                           {"ports", Object::array({{{"name", "http"},
                                                                     {"containerPort", 8080}}})},
                                           {"resources",
                                            {{"requests", {{"cpu", "100m"}, {"memory", "128Mi"}}},
                                             {"limits", {{"memory", "256Mi"}}}}},
                                           {"readinessProbe",
                                            {{"httpGet", {{"path", "/healthz"}, {"port", "http"}}},
                                             {"periodSeconds", 5}}}}})}}}}}}}};
}

// A Release like tests/bench/operator_bench.py creates (no status).
Object BenchRelease(const std::string& ns, int i) {
  const std::string name = absl::StrFormat("bench-%05d", i);
  return Object{
      {"apiVersion", "capstan.dev/v1alpha1"},
      {"kind", "Release"},
      {"metadata", {{"name", name}, {"namespace", ns}, {"labels", {{kBenchLabel, "yes"}}}}},
      {"spec",
       {{"replicas", 1},
        {"template",
         {{"metadata", {{"labels", {{"app", name}}}}},
          {"spec",
           {{"containers",
             Object::array({{{"name", "app"}, {"image", "registry.example/app:1"}}})}}}}}}}};
}

class InformerBenchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CAPSTAN_REQUIRE_CLUSTER();
    // Setup is not what is measured: let it go as fast as the server takes it.
    setup_ = NewClusterClient(/*qps=*/2000, /*burst=*/2000);
    ASSERT_NE(setup_, nullptr);
    ns_ = std::make_unique<TestNamespace>(*setup_, "capstan-ibench");
    ASSERT_TRUE(ns_->ok()) << ns_->status();
  }
  void TearDown() override { ns_.reset(); }

  const std::string& ns() const { return ns_->name(); }

  // Syncs an informer on `r` in the test namespace and prints its cost.
  void MeasureCache(const Resource& r, int n, const std::string& what, bool compact) {
    std::unique_ptr<Client> client = NewClusterClient(/*qps=*/200, /*burst=*/200);
    ASSERT_NE(client, nullptr);
    // Warm the connection (TLS handshake, cpprestsdk's buffers) outside the measurement.
    ListOptions lo;
    lo.limit = 1;
    ASSERT_TRUE(client->List(r, ns(), lo).ok());

    // An informer selecting nothing: the fixed cost of a cache (thread, watch stream).
    Mem empty_delta;
    {
      InformerOptions o;
      o.ns = ns();
      o.label_selector = "capstan.dev/nothing=here";
      const Mem before = SampleMemory();
      Informer empty(*client, r, o);
      empty.Start();
      ASSERT_TRUE(empty.WaitForSync(absl::Seconds(60)));
      const Mem after = SampleMemory();
      empty_delta = {after.heap - before.heap, after.rss - before.rss};
    }

    InformerOptions o;
    o.ns = ns();
    o.label_selector = absl::StrCat(kBenchLabel, "=yes");
    o.compact = compact;
    const Mem before = SampleMemory();
    const absl::Time start = absl::Now();
    Informer informer(*client, r, o);
    informer.Start();
    ASSERT_TRUE(informer.WaitForSync(absl::Seconds(120)));
    const absl::Duration sync = absl::Now() - start;
    const Mem after = SampleMemory();
    EXPECT_EQ(informer.Size(), static_cast<size_t>(n));

    int64_t text = 0;
    for (const auto& obj : informer.List()) text += static_cast<int64_t>(obj->dump().size());
    const int64_t heap = after.heap - before.heap - empty_delta.heap;
    const int64_t rss = after.rss - before.rss - empty_delta.rss;
    std::printf(
        "[bench] %s: %d objects, synced in %s; cache heap %.2f MiB (%.1f KiB/object), RSS "
        "%+.2f MiB (%.1f KiB/object); empty informer heap %+.1f KiB, RSS %+.1f KiB; cached "
        "JSON text %.1f KiB/object (heap/text %.1fx)\n",
        absl::StrCat(what, compact ? " (compact)" : "").c_str(), n,
        absl::FormatDuration(sync).c_str(), heap / 1048576.0, heap / 1024.0 / n, rss / 1048576.0,
        rss / 1024.0 / n, empty_delta.heap / 1024.0, empty_delta.rss / 1024.0, text / 1024.0 / n,
        static_cast<double>(heap) / text);
    informer.Stop();
  }

  std::unique_ptr<Client> setup_;
  std::unique_ptr<TestNamespace> ns_;
};

TEST_F(InformerBenchTest, CacheMemoryPerThousandDeployments) {
  constexpr int kObjects = 1000;
  const std::string ns_name = ns();
  absl::StatusOr<Object> owner =
      setup_->Create(resources::ConfigMaps(), ns(), ConfigMap(ns(), "owner"));
  ASSERT_TRUE(owner.ok()) << owner.status();
  const std::string owner_uid = UidOf(*owner);
  const absl::Time t = absl::Now();
  ASSERT_NO_FATAL_FAILURE(
      CreateInParallel(*setup_, resources::Deployments(), ns(), kObjects,
                       [&](int i) { return BenchDeployment(ns_name, i, owner_uid); }));
  std::printf("[bench] created %d Deployments in %s\n", kObjects,
              absl::FormatDuration(absl::Now() - t).c_str());
  MeasureCache(resources::Deployments(), kObjects, "Deployments", /*compact=*/false);
  MeasureCache(resources::Deployments(), kObjects, "Deployments", /*compact=*/true);
}

TEST_F(InformerBenchTest, CacheMemoryPerThousandReleases) {
  const std::string crd_file = absl::StrCat(CAPSTAN_SOURCE_DIR, "/crds/capstan.dev_releases.yaml");
  absl::StatusOr<std::vector<Object>> docs = ReadYamlFile(crd_file);
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(docs->size(), 1u);
  ApplyOptions force;
  force.force = true;  // Capstan's own CRD.
  absl::StatusOr<Object> installed =
      setup_->Apply(CustomResourceDefinitions(), "", NameOf(docs->front()), docs->front(), force);
  ASSERT_TRUE(installed.ok()) << installed.status();
  ASSERT_TRUE(
      WaitForCrd(*setup_, NameOf(docs->front()), resources::Releases(), ns(), absl::Seconds(30))
          .ok());

  constexpr int kObjects = 1000;
  const std::string ns_name = ns();
  const absl::Time t = absl::Now();
  ASSERT_NO_FATAL_FAILURE(CreateInParallel(*setup_, resources::Releases(), ns(), kObjects,
                                           [&](int i) { return BenchRelease(ns_name, i); }));
  std::printf("[bench] created %d Releases in %s\n", kObjects,
              absl::FormatDuration(absl::Now() - t).c_str());
  MeasureCache(resources::Releases(), kObjects, "Releases", /*compact=*/false);
  MeasureCache(resources::Releases(), kObjects, "Releases", /*compact=*/true);
}

// Start() -> HasSynced() at N ConfigMaps, against one ListAll of the same for
// comparison (the list is most of the start-up).
TEST_F(InformerBenchTest, ListWatchStartUp) {
  const int n = BenchObjects();
  const std::string ns_name = ns();
  const absl::Time t = absl::Now();
  ASSERT_NO_FATAL_FAILURE(CreateInParallel(*setup_, resources::ConfigMaps(), ns(), n, [&](int i) {
    return ConfigMap(ns_name, absl::StrFormat("bench-%05d", i),
                     {{"key", absl::StrFormat("value-%05d", i)}}, {{kBenchLabel, "yes"}});
  }));
  const absl::Duration create = absl::Now() - t;
  std::printf("[bench] created %d ConfigMaps in %s (%.0f/s, 8 parallel requests)\n", n,
              absl::FormatDuration(create).c_str(), n / absl::ToDoubleSeconds(create));

  std::unique_ptr<Client> client = NewClusterClient();
  ASSERT_NE(client, nullptr);
  ListOptions lo;
  lo.label_selector = absl::StrCat(kBenchLabel, "=yes");
  // A first list warms the connection and the server's watch cache.
  ASSERT_TRUE(client->List(resources::ConfigMaps(), ns(), {.limit = 1}).ok());
  absl::Time s = absl::Now();
  absl::StatusOr<ListPage> all = client->ListAll(resources::ConfigMaps(), ns(), lo);
  const absl::Duration list500 = absl::Now() - s;
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->items.size(), static_cast<size_t>(n));
  all = ListPage();
  s = absl::Now();
  all = client->ListAll(resources::ConfigMaps(), ns(), lo, /*page_size=*/0);
  const absl::Duration list_whole = absl::Now() - s;
  ASSERT_TRUE(all.ok()) << all.status();
  all = ListPage();

  InformerOptions o;
  o.ns = ns();
  o.label_selector = lo.label_selector;
  s = absl::Now();
  Informer informer(*client, resources::ConfigMaps(), o);
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(absl::Seconds(300)));
  const absl::Duration sync = absl::Now() - s;
  EXPECT_EQ(informer.Size(), static_cast<size_t>(n));
  std::printf(
      "[bench] %d ConfigMaps: informer Start -> HasSynced %s; ListAll alone %s (pages of 500), "
      "%s (one page)\n",
      n, absl::FormatDuration(sync).c_str(), absl::FormatDuration(list500).c_str(),
      absl::FormatDuration(list_whole).c_str());
  // The watch is open from the list's resourceVersion and sees a new object.
  ASSERT_TRUE(setup_
                  ->Create(resources::ConfigMaps(), ns(),
                           ConfigMap(ns(), "after-sync", {}, {{kBenchLabel, "yes"}}))
                  .ok());
  EXPECT_TRUE(
      PollUntil([&] { return informer.Size() == static_cast<size_t>(n) + 1; }, absl::Seconds(30)));
  informer.Stop();
}

}  // namespace
}  // namespace capstan::kube::itest
