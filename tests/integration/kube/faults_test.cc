// The client behind a fault-injecting proxy (tests/tools/faultproxy.py) on
// loopback: 429 with Retry-After, 500s, conflicts, slow answers and watch streams
// cut mid-way. The client must retry what is safe to retry and nothing else,
// keep its requests bounded, and an informer must still converge to what the
// server holds. The proxy counts the requests it sees.

#include <stdlib.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "capstan/kube/informer.h"
#include "cluster_util.h"
#include "fault_proxy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::kube::itest {
namespace {

const Resource& CM() { return resources::ConfigMaps(); }

class FaultsTest : public ::testing::Test {
 protected:
  // One proxy for the suite (starting Python costs a moment); rules and the request
  // log are reset before each test.
  static void SetUpTestSuite() {
    if (ClusterDir().empty()) return;
    char tmpl[] = "/tmp/capstan-faultproxy-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      start_error_ = new absl::Status(absl::InternalError("mkdtemp failed"));
      return;
    }
    tmp_dir_ = new std::string(tmpl);
    absl::StatusOr<std::unique_ptr<FaultProxy>> proxy =
        FaultProxy::Start(ClusterKubeconfig(), absl::StrCat(*tmp_dir_, "/proxy.kubeconfig"));
    if (!proxy.ok()) {
      start_error_ = new absl::Status(proxy.status());
      return;
    }
    proxy_ = proxy->release();
  }
  static void TearDownTestSuite() {
    delete proxy_;
    proxy_ = nullptr;
    if (tmp_dir_ != nullptr) {
      std::error_code ec;
      std::filesystem::remove_all(*tmp_dir_, ec);
      delete tmp_dir_;
      tmp_dir_ = nullptr;
    }
    delete start_error_;
    start_error_ = nullptr;
  }

  void SetUp() override {
    CAPSTAN_REQUIRE_CLUSTER();
    ASSERT_EQ(start_error_, nullptr) << *start_error_;
    ASSERT_NE(proxy_, nullptr);
    ASSERT_TRUE(proxy_->Reset().ok());
    direct_ = NewClusterClient();
    ASSERT_NE(direct_, nullptr);
    ns_ = std::make_unique<TestNamespace>(*direct_, "capstan-faults");
    ASSERT_TRUE(ns_->ok()) << ns_->status();
    // The client under test reads the proxy's kubeconfig: an http:// server and no
    // user credentials at all.
    KubeconfigOptions options;
    options.path = proxy_->kubeconfig();
    absl::StatusOr<RestConfig> config = LoadKubeconfig(options);
    ASSERT_TRUE(config.ok()) << config.status();
    ASSERT_EQ(config->server, absl::StrCat("http://127.0.0.1:", proxy_->port()));
    absl::StatusOr<std::unique_ptr<Client>> client = Client::FromConfig(*config);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(client).value();
  }
  void TearDown() override {
    if (proxy_ != nullptr) proxy_->Reset().IgnoreError();
    ns_.reset();
  }

  const std::string& ns() const { return ns_->name(); }
  FaultProxy& proxy() { return *proxy_; }

  void AddRule(const Object& rule) { ASSERT_TRUE(proxy().AddRule(rule).ok()) << rule.dump(); }
  int Count(const std::string& method, const std::string& target_part) {
    absl::StatusOr<int> n = proxy().Count(method, target_part);
    EXPECT_TRUE(n.ok()) << n.status();
    return n.value_or(-1);
  }
  void CreateDirect(const std::string& name) {
    ASSERT_TRUE(direct_->Create(CM(), ns(), ConfigMap(ns(), name, {{"v", "1"}})).ok());
  }
  std::string ObjectTarget(const std::string& name) const { return ObjectPath(CM(), ns(), name); }

  static FaultProxy* proxy_;
  static std::string* tmp_dir_;
  static absl::Status* start_error_;

  std::unique_ptr<Client> direct_;  // straight to the API server, for setup and truth
  std::unique_ptr<Client> client_;  // through the proxy
  std::unique_ptr<TestNamespace> ns_;
};

FaultProxy* FaultsTest::proxy_ = nullptr;
std::string* FaultsTest::tmp_dir_ = nullptr;
absl::Status* FaultsTest::start_error_ = nullptr;

TEST_F(FaultsTest, GetRetriesAfter429AndHonoursRetryAfter) {
  CreateDirect("r");
  const std::string path = ObjectTarget("r");
  AddRule(
      {{"method", "GET"}, {"path", path + "$"}, {"status", 429}, {"retry_after", 1}, {"count", 1}});
  const absl::Time start = absl::Now();
  absl::StatusOr<Object> got = client_->Get(CM(), ns(), "r");
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(NameOf(*got), "r");
  // The first backoff would be 50-100 ms; Retry-After: 1 makes it a second.
  EXPECT_GE(took, absl::Milliseconds(950));
  EXPECT_LT(took, absl::Seconds(5));
  EXPECT_EQ(Count("GET", path), 2);
  EXPECT_EQ(client_->RequestCount(), 2);
}

TEST_F(FaultsTest, GetRetries500sThenSucceeds) {
  CreateDirect("r");
  const std::string path = ObjectTarget("r");
  AddRule({{"method", "GET"}, {"path", path + "$"}, {"status", 500}, {"count", 2}});
  absl::StatusOr<Object> got = client_->Get(CM(), ns(), "r");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Count("GET", path), 3);
}

TEST_F(FaultsTest, PersistentFailureStopsAfterMaxRetries) {
  const std::string path = ObjectTarget("never");
  AddRule({{"method", "GET"}, {"path", path + "$"}, {"status", 500}});
  const absl::Time start = absl::Now();
  absl::StatusOr<Object> got = client_->Get(CM(), ns(), "never");
  const absl::Duration took = absl::Now() - start;
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << got.status();
  EXPECT_EQ(ApiReason(got.status()), "InternalError");
  // max_retries (3) + 1 attempts, then the error; the backoffs are 100, 200 and
  // 400 ms at most (jittered down to half).
  EXPECT_EQ(Count("GET", path), Client::Options{}.max_retries + 1);
  EXPECT_LT(took, absl::Seconds(3));

  // Same for 429 without Retry-After, and for an idempotent apply.
  AddRule({{"method", "PATCH"}, {"path", ObjectTarget("applied") + "\\?"}, {"status", 429}});
  absl::StatusOr<Object> applied =
      client_->Apply(CM(), ns(), "applied", ConfigMap(ns(), "applied", {{"v", "1"}}));
  EXPECT_EQ(applied.status().code(), absl::StatusCode::kUnavailable) << applied.status();
  EXPECT_EQ(Count("PATCH", ObjectTarget("applied")), Client::Options{}.max_retries + 1);
}

TEST_F(FaultsTest, CreateIsNotRetried) {
  AddRule({{"method", "POST"}, {"status", 500}});
  absl::StatusOr<Object> created = client_->Create(CM(), ns(), ConfigMap(ns(), "p", {{"v", "1"}}));
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), absl::StatusCode::kUnavailable) << created.status();
  EXPECT_EQ(Count("POST", ""), 1);
  EXPECT_EQ(client_->RequestCount(), 1);
  EXPECT_EQ(direct_->Get(CM(), ns(), "p").status().code(), absl::StatusCode::kNotFound);

  // Also a 429 with Retry-After: a POST is left to the caller's work queue.
  ASSERT_TRUE(proxy().Reset().ok());
  AddRule({{"method", "POST"}, {"status", 429}, {"retry_after", 1}});
  created = client_->Create(CM(), ns(), ConfigMap(ns(), "p", {{"v", "1"}}));
  EXPECT_EQ(created.status().code(), absl::StatusCode::kUnavailable) << created.status();
  EXPECT_EQ(Count("POST", ""), 1);
}

TEST_F(FaultsTest, ConflictOnUpdateIsReturnedNotRetried) {
  CreateDirect("u");
  absl::StatusOr<Object> obj = direct_->Get(CM(), ns(), "u");
  ASSERT_TRUE(obj.ok()) << obj.status();
  AddRule({{"method", "PUT"}, {"status", 409}, {"count", 1}});
  (*obj)["data"]["v"] = "2";
  absl::StatusOr<Object> updated = client_->Update(CM(), ns(), *obj);
  ASSERT_FALSE(updated.ok());
  EXPECT_EQ(updated.status().code(), absl::StatusCode::kAborted) << updated.status();
  EXPECT_EQ(ApiReason(updated.status()), "Conflict");
  EXPECT_EQ(Count("PUT", ""), 1);
  // The caller re-reads and tries again: now it goes through.
  updated = client_->Update(CM(), ns(), *obj);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->value("/data/v"_json_pointer, std::string()), "2");
}

TEST_F(FaultsTest, SlowAnswersWithinTheTimeoutSucceed) {
  CreateDirect("slow");
  AddRule({{"method", "GET"}, {"path", ObjectTarget("slow") + "$"}, {"latency", 1.5}});
  const absl::Time start = absl::Now();
  absl::StatusOr<Object> got = client_->Get(CM(), ns(), "slow");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(1400));
  EXPECT_EQ(Count("GET", ObjectTarget("slow")), 1);
}

// Watches cut mid-event (connection dropped) and after a while (stream ended),
// slow lists and watch opens, and one failed list: the informer still ends up
// holding exactly what the server holds, with a bounded number of requests.
TEST_F(FaultsTest, InformerConvergesThroughCutWatchesAndSlowAnswers) {
  const std::string collection = CollectionPath(CM(), ns());
  // Rules apply first-match-first. The first list fails once (then is retried);
  // the first two watches are dropped 1,500 bytes in (mid-event); every later
  // watch opens slowly and is ended by the "server" after two seconds; lists are slow.
  AddRule(
      {{"method", "GET"}, {"path", collection + "\\?(?!.*watch=)"}, {"status", 500}, {"count", 1}});
  AddRule({{"path", collection + "\\?.*watch="}, {"count", 2}, {"cut_after_bytes", 1500}});
  AddRule({{"path", collection + "\\?.*watch="},
           {"latency", 0.3},
           {"cut_after_seconds", 2},
           {"cut_mode", "end"}});
  AddRule({{"method", "GET"}, {"path", collection}, {"latency", 0.5}});

  for (int i = 0; i < 5; ++i) CreateDirect(absl::StrCat("pre-", i));
  InformerOptions io;
  io.ns = ns();
  Informer informer(*client_, CM(), io);
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(absl::Seconds(20)));

  // About eight seconds of changes while the faults play out.
  for (int i = 0; i < 20; ++i) {
    const std::string name = absl::StrCat("cm-", i);
    ASSERT_TRUE(direct_->Create(CM(), ns(), ConfigMap(ns(), name, {{"v", "1"}})).ok());
    if (i % 3 == 1) {
      ASSERT_TRUE(direct_->MergePatch(CM(), ns(), name, {{"data", {{"v", "2"}}}}).ok());
    }
    if (i % 5 == 4) {
      ASSERT_TRUE(direct_->Delete(CM(), ns(), absl::StrCat("cm-", i - 2)).ok());
    }
    absl::SleepFor(absl::Milliseconds(400));
  }
  ASSERT_TRUE(direct_->Delete(CM(), ns(), "pre-0").ok());

  // The cache must match a fresh list from the server (keys and resourceVersions).
  EXPECT_TRUE(Converges(*direct_, informer, ns(), "", absl::Seconds(30)));
  informer.Stop();

  absl::StatusOr<Object> log = proxy().Requests();
  ASSERT_TRUE(log.ok()) << log.status();
  int watches = 0;
  int lists = 0;
  int dropped = 0;  // cut mid-event
  int ended = 0;    // ended cleanly by the "server"
  for (const Object& r : *log) {
    const std::string target = r.value("target", "");
    if (target.find("watch=") != std::string::npos) {
      ++watches;
    } else {
      ++lists;
    }
    if (r.value("cut", "") == "bytes") ++dropped;
    if (r.value("cut", "") == "time") ++ended;
  }
  EXPECT_EQ(dropped, 2) << log->dump();
  EXPECT_GE(ended, 1) << log->dump();
  EXPECT_LT(static_cast<int>(log->size()), 50) << log->dump();
  EXPECT_LT(client_->RequestCount(), 50);
  std::printf(
      "[ numbers  ] informer through faults: %zu requests at the proxy (%d lists, %d "
      "watches: %d dropped mid-event, %d ended after 2 s), client counted %lld; "
      "informer relists %lld, watches %lld\n",
      log->size(), lists, watches, dropped, ended, static_cast<long long>(client_->RequestCount()),
      static_cast<long long>(informer.relists()), static_cast<long long>(informer.watches()));
}

// A watch that sends nothing (here: its answer held back for two minutes, as a
// black-holed connection would) is taken for dead after the idle limit and re-opened,
// instead of leaving the cache stale until a TCP or client timeout (15 minutes).
TEST_F(FaultsTest, SilentWatchIsReopenedAfterTheIdleLimit) {
  const std::string collection = CollectionPath(CM(), ns());
  AddRule({{"path", collection + "\\?.*watch="}, {"count", 1}, {"latency", 120}});
  CreateDirect("pre-0");
  InformerOptions io;
  io.ns = ns();
  io.watch_idle_limit = absl::Seconds(2);
  Informer informer(*client_, CM(), io);
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(absl::Seconds(20)));
  ASSERT_TRUE(direct_->Create(CM(), ns(), ConfigMap(ns(), "after", {{"v", "1"}})).ok());
  EXPECT_TRUE(Converges(*direct_, informer, ns(), "", absl::Seconds(30)));
  EXPECT_GE(informer.watches(), 2);
  informer.Stop();
}

// An informer whose watch is down while the API server's cache for its kind is
// rebuilt and etcd is compacted: when the watch comes back its resourceVersion is
// gone (410 Gone), so it must relist, and then hold exactly what the server holds,
// including the changes it never saw as events. The proxy cuts the watch and holds
// the next one back for a few seconds; the 410 comes from the real API server.
// (See ListWatchTest.ExpiredVersionAfterCompaction for why the cache is rebuilt.)
TEST_F(FaultsTest, InformerRelistsAfterCompactionWhileItsWatchWasCut) {
  absl::StatusOr<std::string> etcd = FindEtcdEndpoint();
  if (!etcd.ok()) GTEST_SKIP() << "cannot compact etcd: " << etcd.status();
  ScratchCrd crd(*direct_);
  ASSERT_TRUE(crd.status().ok()) << crd.status();
  const Resource& things = crd.resource();
  ASSERT_TRUE(WaitForCrd(*direct_, crd.name(), things, ns(), absl::Seconds(30)).ok());
  for (int i = 0; i < 5; ++i) {
    const std::string name = absl::StrCat("t", i);
    ASSERT_TRUE(direct_->Apply(things, ns(), name, crd.Thing(ns(), name, i)).ok());
  }

  InformerOptions io;
  io.ns = ns();
  io.compact = true;  // As the Release controller runs its caches.
  Informer informer(*client_, things, io);
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(absl::Seconds(20)));
  ASSERT_TRUE(Converges(*direct_, informer, ns(), "", absl::Seconds(10)));
  const int64_t relists_before = informer.relists();
  const std::string informer_rv = informer.LastResourceVersion();

  // Drop the open watch; hold the informer's next watch at the proxy for 4 s.
  AddRule({{"path", CollectionPath(things, ns()) + "\\?.*watch="}, {"count", 1}, {"latency", 4}});
  PollUntil([&] { return proxy().CutOpenResponses().value_or(0) > 0; }, absl::Seconds(5));

  // Meanwhile: the cache is rebuilt, objects change, etcd forgets the history.
  ASSERT_TRUE(crd.RebuildCache().ok());
  ASSERT_TRUE(direct_->Delete(things, ns(), "t0").ok());
  ASSERT_TRUE(direct_->Apply(things, ns(), "t1", crd.Thing(ns(), "t1", 100)).ok());
  ASSERT_TRUE(direct_->Apply(things, ns(), "t5", crd.Thing(ns(), "t5", 5)).ok());
  absl::StatusOr<int64_t> revision = EtcdRevision(*etcd);
  ASSERT_TRUE(revision.ok()) << revision.status();
  ASSERT_TRUE(EtcdCompact(*etcd, *revision).ok());

  EXPECT_TRUE(PollUntil([&] { return informer.relists() > relists_before; }, absl::Seconds(30)))
      << "the informer resumed from " << informer_rv << " without relisting";
  EXPECT_TRUE(Converges(*direct_, informer, ns(), "", absl::Seconds(20)));
  EXPECT_EQ(informer.Get(ns(), "t0"), nullptr);
  ASSERT_NE(informer.Get(ns(), "t1"), nullptr);
  EXPECT_EQ(informer.Get(ns(), "t1")->value("value", 0), 100);
  ASSERT_NE(informer.Get(ns(), "t5"), nullptr);
  informer.Stop();

  absl::StatusOr<Object> log = proxy().Requests();
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_LT(static_cast<int>(log->size()), 20) << log->dump();
  std::printf(
      "[ numbers  ] informer across compaction: resumed from %s, %lld lists, %lld "
      "watches, %zu requests at the proxy\n",
      informer_rv.c_str(), static_cast<long long>(informer.relists()),
      static_cast<long long>(informer.watches()), log->size());
}

// A watch that the other end closes at once, with nothing in it, again and again
// (a misbehaving load balancer): the informer must back off, not spin.
TEST_F(FaultsTest, WatchClosedAtOnceDoesNotSpin) {
  const std::string collection = CollectionPath(CM(), ns());
  AddRule({{"path", collection + "\\?.*watch="}, {"cut_after_seconds", 0}, {"cut_mode", "end"}});
  CreateDirect("x");
  InformerOptions io;
  io.ns = ns();
  Informer informer(*client_, CM(), io);
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(absl::Seconds(20)));
  absl::SleepFor(absl::Seconds(6));
  informer.Stop();
  const int watches = Count("GET", "watch=");
  // client-go treats a watch that ends within a second with no events as a failure
  // and backs off (1 s doubling); about 4 to 6 opens fit in six seconds.
  EXPECT_LE(watches, 12) << "watch re-opened " << watches << " times in 6 s";
  EXPECT_NE(informer.Get(ns(), "x"), nullptr);
  std::printf("[ numbers  ] watch closed at once: %d watch requests in 6 s, %lld relists\n",
              watches, static_cast<long long>(informer.relists()));
}

}  // namespace
}  // namespace capstan::kube::itest
