// Lists, watches and informers against the real API server: pagination over
// 1,000 objects, watch order and resume, 410 Gone after a forced etcd compaction,
// informer convergence and its request economy when idle. (The informer's relist
// after compaction is in faults_test.cc: it needs the proxy to cut its watch.)

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "capstan/kube/informer.h"
#include "cluster_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::kube::itest {
namespace {

const Resource& CM() { return resources::ConfigMaps(); }

// Records every request it passes on, and how many items each list answer held.
class CountingTransport final : public Transport {
 public:
  struct Record {
    std::string path;
    std::vector<std::pair<std::string, std::string>> query;
    int items = -1;

    std::string Query(absl::string_view key) const {
      for (const auto& [k, v] : query) {
        if (k == key) return v;
      }
      return "";
    }
  };

  explicit CountingTransport(std::unique_ptr<Transport> inner) : inner_(std::move(inner)) {}

  absl::StatusOr<HttpResponse> Do(const HttpRequest& request) override {
    absl::StatusOr<HttpResponse> resp = inner_->Do(request);
    Record r{request.path, request.query, -1};
    if (resp.ok()) {
      Object body = Object::parse(resp->body, nullptr, /*allow_exceptions=*/false);
      if (body.is_object() && body.contains("items")) {
        r.items = static_cast<int>(body["items"].size());
      }
    }
    absl::MutexLock lock(&mu_);
    records_.push_back(std::move(r));
    return resp;
  }

  absl::Status Stream(const HttpRequest& request,
                      const std::function<bool(absl::string_view line)>& on_line, int* status_code,
                      Cancellation* cancel) override {
    {
      absl::MutexLock lock(&mu_);
      records_.push_back(Record{request.path, request.query, -1});
    }
    return inner_->Stream(request, on_line, status_code, cancel);
  }

  std::vector<Record> records() const {
    absl::MutexLock lock(&mu_);
    return records_;
  }

 private:
  std::unique_ptr<Transport> inner_;
  mutable absl::Mutex mu_;
  std::vector<Record> records_ ABSL_GUARDED_BY(mu_);
};

class ListWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CAPSTAN_REQUIRE_CLUSTER();
    client_ = NewClusterClient();
    ASSERT_NE(client_, nullptr);
    ns_ = std::make_unique<TestNamespace>(*client_, "capstan-lw");
    ASSERT_TRUE(ns_->ok()) << ns_->status();
  }
  void TearDown() override { ns_.reset(); }

  const std::string& ns() const { return ns_->name(); }

  std::unique_ptr<Client> client_;
  std::unique_ptr<TestNamespace> ns_;
};

TEST_F(ListWatchTest, PaginatesOverAThousandObjects) {
  constexpr int kObjects = 1000;
  constexpr int kThreads = 4;
  const std::string selector = "capstan.dev/page=yes";
  // Setup at 400 qps: the default 20 qps would make 1,000 creates take 50 s.
  std::unique_ptr<Client> setup = NewClusterClient(/*qps=*/400, /*burst=*/400);
  ASSERT_NE(setup, nullptr);
  const absl::Time create_start = absl::Now();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kObjects; i += kThreads) {
        const std::string name = absl::StrFormat("page-%04d", i);
        absl::Status s;
        // Create is never retried by the client; retry here what is safe to retry.
        for (int attempt = 0; attempt < 3; ++attempt) {
          s = setup
                  ->Create(CM(), ns(),
                           ConfigMap(ns(), name, {{"i", std::to_string(i)}},
                                     {{"capstan.dev/page", "yes"}}))
                  .status();
          if (s.code() != absl::StatusCode::kUnavailable) break;
        }
        if (!s.ok() && s.code() != absl::StatusCode::kAlreadyExists) {
          ADD_FAILURE() << name << ": " << s;
          ++failures;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(failures.load(), 0);
  const absl::Duration create_time = absl::Now() - create_start;

  auto counting = std::make_unique<CountingTransport>([] {
    absl::StatusOr<RestConfig> config = ClusterConfig();
    EXPECT_TRUE(config.ok()) << config.status();
    absl::StatusOr<std::unique_ptr<Transport>> t = NewCppRestTransport(*config);
    EXPECT_TRUE(t.ok()) << t.status();
    return std::move(t).value();
  }());
  CountingTransport* pages = counting.get();
  Client lister(std::move(counting), Client::Options{});

  ListOptions lo;
  lo.label_selector = selector;
  const absl::Time list_start = absl::Now();
  absl::StatusOr<ListPage> all = lister.ListAll(CM(), ns(), lo, /*page_size=*/100);
  const absl::Duration list_time = absl::Now() - list_start;
  ASSERT_TRUE(all.ok()) << all.status();

  std::set<std::string> names;
  for (const Object& o : all->items) names.insert(NameOf(o));
  EXPECT_EQ(all->items.size(), static_cast<size_t>(kObjects));
  EXPECT_EQ(names.size(), static_cast<size_t>(kObjects)) << "duplicates across pages";
  EXPECT_EQ(*names.begin(), "page-0000");
  EXPECT_EQ(*names.rbegin(), "page-0999");
  EXPECT_FALSE(all->resource_version.empty());
  EXPECT_TRUE(all->continue_token.empty());

  // 1,000 objects at 100 a page: 10 requests, the first without a continue token,
  // every later one with the token the previous page returned.
  const std::vector<CountingTransport::Record> requests = pages->records();
  ASSERT_EQ(requests.size(), 10u);
  for (size_t i = 0; i < requests.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("page ", i));
    EXPECT_EQ(requests[i].Query("limit"), "100");
    EXPECT_EQ(requests[i].Query("labelSelector"), selector);
    EXPECT_EQ(requests[i].Query("continue").empty(), i == 0);
    EXPECT_EQ(requests[i].items, 100);
  }
  EXPECT_EQ(lister.RequestCount(), 10);

  // The same through an informer (paginated list of 500, then a watch).
  Client informer_client(
      [] {
        absl::StatusOr<RestConfig> config = ClusterConfig();
        return std::move(NewCppRestTransport(*config)).value();
      }(),
      Client::Options{});
  InformerOptions io;
  io.ns = ns();
  io.label_selector = selector;
  Informer informer(informer_client, CM(), io);
  const absl::Time sync_start = absl::Now();
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(absl::Seconds(30)));
  const absl::Duration sync_time = absl::Now() - sync_start;
  EXPECT_EQ(informer.Size(), static_cast<size_t>(kObjects));
  informer.Stop();

  std::printf(
      "[ numbers  ] created %d ConfigMaps in %s (%d threads, 400 qps); ListAll with "
      "page size 100: %zu requests, %s; informer synced %zu objects in %s\n",
      kObjects, absl::FormatDuration(create_time).c_str(), kThreads, requests.size(),
      absl::FormatDuration(list_time).c_str(), informer.Size(),
      absl::FormatDuration(sync_time).c_str());
}

// Collects the non-bookmark events of one watch until `want` arrived.
struct Collected {
  absl::Status status;
  std::vector<WatchEvent> events;
};

// Only objects labelled for this test: the namespace controller adds kube-root-ca.crt
// to every new namespace whenever it gets to it.
constexpr char kWatchLabel[] = "capstan.dev/watch-test";

Collected WatchFor(Client& client, const std::string& ns, const std::string& rv, size_t want,
                   absl::Duration server_timeout, absl::Duration deadline) {
  Collected out;
  Cancellation cancel;
  std::atomic<bool> done{false};
  // A watchdog so a missing event fails the test instead of hanging it.
  std::thread watchdog([&] {
    PollUntil([&] { return done.load(); }, deadline, absl::Milliseconds(50));
    cancel.Cancel();
  });
  WatchOptions wo;
  wo.resource_version = rv;
  wo.timeout = server_timeout;
  wo.label_selector = absl::StrCat(kWatchLabel, "=yes");
  out.status = client.Watch(
      CM(), ns, wo,
      [&](WatchEvent&& ev) {
        if (ev.type == WatchEvent::Type::kBookmark) return true;
        out.events.push_back(std::move(ev));
        return out.events.size() < want;
      },
      &cancel);
  done = true;
  watchdog.join();
  return out;
}

const char* TypeName(WatchEvent::Type t) {
  switch (t) {
    case WatchEvent::Type::kAdded:
      return "ADDED";
    case WatchEvent::Type::kModified:
      return "MODIFIED";
    case WatchEvent::Type::kDeleted:
      return "DELETED";
    case WatchEvent::Type::kBookmark:
      return "BOOKMARK";
  }
  return "?";
}

std::vector<std::string> Summary(const std::vector<WatchEvent>& events) {
  std::vector<std::string> out;
  for (const WatchEvent& e : events) {
    out.push_back(absl::StrCat(TypeName(e.type), " ", NameOf(e.object)));
  }
  return out;
}

TEST_F(ListWatchTest, WatchDeliversInOrderAndResumes) {
  absl::StatusOr<ListPage> list = client_->List(CM(), ns());
  ASSERT_TRUE(list.ok()) << list.status();
  const std::string rv0 = list->resource_version;
  ASSERT_FALSE(rv0.empty());

  // Changes made before the watch even opens are delivered: it starts at rv0.
  std::thread writer([&] {
    EXPECT_TRUE(
        client_->Create(CM(), ns(), ConfigMap(ns(), "w1", {{"v", "1"}}, {{kWatchLabel, "yes"}}))
            .ok());
    EXPECT_TRUE(client_->MergePatch(CM(), ns(), "w1", {{"data", {{"v", "2"}}}}).ok());
    EXPECT_TRUE(client_->Delete(CM(), ns(), "w1").ok());
  });
  Collected first = WatchFor(*client_, ns(), rv0, 3, absl::Seconds(30), absl::Seconds(20));
  writer.join();
  EXPECT_EQ(first.status.code(), absl::StatusCode::kCancelled) << first.status;  // we stopped it
  ASSERT_THAT(Summary(first.events),
              ::testing::ElementsAre("ADDED w1", "MODIFIED w1", "DELETED w1"));
  EXPECT_EQ(first.events[1].object.value("/data/v"_json_pointer, std::string()), "2");
  EXPECT_EQ(first.events[1].object.value("kind", ""), "ConfigMap");

  // Resuming from the ADDED event's resourceVersion replays only what came after it.
  Collected resumed = WatchFor(*client_, ns(), ResourceVersionOf(first.events[0].object), 2,
                               absl::Seconds(30), absl::Seconds(20));
  ASSERT_THAT(Summary(resumed.events), ::testing::ElementsAre("MODIFIED w1", "DELETED w1"));
  EXPECT_EQ(ResourceVersionOf(resumed.events[1].object), ResourceVersionOf(first.events[2].object));

  // From the last event on there is nothing to tell: the server ends the watch at its
  // timeout and Watch returns OK (the caller re-opens from its last resourceVersion).
  Collected quiet = WatchFor(*client_, ns(), ResourceVersionOf(first.events[2].object), 1,
                             absl::Seconds(1), absl::Seconds(20));
  EXPECT_TRUE(quiet.status.ok()) << quiet.status;
  EXPECT_TRUE(quiet.events.empty()) << ::testing::PrintToString(Summary(quiet.events));
}

// The API server answers watches and most lists from its watch cache, which keeps
// serving a resourceVersion after etcd compacted it away (checked on this cluster:
// a watch, an exact list and a continue token from a compacted version all still
// work while the cache holds them). A client sees 410 Gone when its version is
// older than what the cache holds, as after the cache is rebuilt (API server
// restart, or a CRD change), and a read that the cache cannot answer goes to etcd
// and gets 410 once etcd compacted the version.
//
// The test forces both: it rebuilds the API server's cache for a scratch CRD by
// changing the CRD's spec, and compacts etcd through its HTTP gateway (the endpoint
// comes from the etcd process, see FindEtcdEndpoint).
TEST_F(ListWatchTest, ExpiredVersionAfterCompaction) {
  absl::StatusOr<std::string> etcd = FindEtcdEndpoint();
  if (!etcd.ok()) GTEST_SKIP() << "cannot compact etcd: " << etcd.status();
  ScratchCrd crd(*client_);
  ASSERT_TRUE(crd.status().ok()) << crd.status();
  const Resource& things = crd.resource();
  ASSERT_TRUE(WaitForCrd(*client_, crd.name(), things, ns(), absl::Seconds(30)).ok());
  for (int i = 0; i < 3; ++i) {
    const std::string name = absl::StrCat("t", i);
    ASSERT_TRUE(client_->Apply(things, ns(), name, crd.Thing(ns(), name, i)).ok());
  }
  absl::StatusOr<ListPage> before = client_->List(things, ns());
  ASSERT_TRUE(before.ok()) << before.status();
  const std::string old_rv = before->resource_version;

  ASSERT_TRUE(crd.RebuildCache().ok());
  ASSERT_TRUE(client_->Delete(things, ns(), "t0").ok());

  ListOptions exact;
  exact.resource_version = old_rv;
  exact.resource_version_match = "Exact";
  // The rebuilt cache starts after old_rv, so this list reads etcd's history...
  absl::StatusOr<ListPage> history;
  PollUntil(
      [&] {
        history = client_->List(things, ns(), exact);
        return history.status().code() != absl::StatusCode::kUnavailable;  // cache warming up
      },
      absl::Seconds(20), absl::Milliseconds(200));
  ASSERT_TRUE(history.ok()) << history.status();
  EXPECT_EQ(history->items.size(), 3u);
  EXPECT_EQ(history->resource_version, old_rv);

  // ...which compaction removes: 410 Gone, reason Expired.
  absl::StatusOr<int64_t> revision = EtcdRevision(*etcd);
  ASSERT_TRUE(revision.ok()) << revision.status();
  ASSERT_TRUE(EtcdCompact(*etcd, *revision).ok());
  absl::StatusOr<ListPage> compacted = client_->List(things, ns(), exact);
  ASSERT_FALSE(compacted.ok());
  EXPECT_EQ(compacted.status().code(), absl::StatusCode::kOutOfRange) << compacted.status();
  EXPECT_EQ(ApiReason(compacted.status()), "Expired");

  // A watch from the old version: 410 Gone (reason Expired), sent as an ERROR event.
  absl::Status watch;
  PollUntil(
      [&] {
        WatchOptions wo;
        wo.resource_version = old_rv;
        wo.timeout = absl::Seconds(5);
        Cancellation cancel;
        watch = client_->Watch(
            things, ns(), wo, [](WatchEvent&&) { return false; }, &cancel);
        return watch.code() != absl::StatusCode::kUnavailable;
      },
      absl::Seconds(20), absl::Milliseconds(200));
  EXPECT_EQ(watch.code(), absl::StatusCode::kOutOfRange) << watch;
  EXPECT_EQ(ApiReason(watch), "Expired");

  // A current list is fine, and ListAll works as ever.
  absl::StatusOr<ListPage> now = client_->ListAll(things, ns());
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(now->items.size(), 2u);
}

TEST_F(ListWatchTest, InformerConvergesAndStaysQuietWhenIdle) {
  const std::string selector = "capstan.dev/informer-test=yes";
  const Object mine = {{"capstan.dev/informer-test", "yes"}};
  for (const char* name : {"a", "b", "c"}) {
    ASSERT_TRUE(client_->Create(CM(), ns(), ConfigMap(ns(), name, {{"v", "1"}}, mine)).ok());
  }
  ASSERT_TRUE(client_->Create(CM(), ns(), ConfigMap(ns(), "other", {{"v", "1"}})).ok());

  struct Seen {
    absl::Mutex mu;
    std::vector<std::string> adds, updates, deletes;
  } seen;
  auto informer_client = NewClusterClient();
  InformerOptions io;
  io.ns = ns();
  io.label_selector = selector;
  Informer informer(*informer_client, CM(), io);
  informer.AddHandler([&](const Object* old_obj, const Object* new_obj) {
    absl::MutexLock lock(&seen.mu);
    if (old_obj == nullptr) {
      seen.adds.push_back(NameOf(*new_obj));
    } else if (new_obj == nullptr) {
      seen.deletes.push_back(NameOf(*old_obj));
    } else {
      seen.updates.push_back(NameOf(*new_obj));
    }
  });
  EXPECT_FALSE(informer.HasSynced());
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(absl::Seconds(20)));
  EXPECT_TRUE(informer.HasSynced());
  EXPECT_EQ(informer.Size(), 3u);
  ASSERT_NE(informer.Get(ns(), "a"), nullptr);
  EXPECT_FALSE(informer.Get(ns(), "a")->at("metadata").contains("managedFields"));

  // Adds, an update, a delete, and an object that stops matching the selector.
  for (const char* name : {"d", "e"}) {
    ASSERT_TRUE(client_->Create(CM(), ns(), ConfigMap(ns(), name, {{"v", "1"}}, mine)).ok());
  }
  ASSERT_TRUE(client_->MergePatch(CM(), ns(), "a", {{"data", {{"v", "2"}}}}).ok());
  ASSERT_TRUE(client_->Delete(CM(), ns(), "b").ok());
  const Object unlabel = {{"metadata", {{"labels", {{"capstan.dev/informer-test", nullptr}}}}}};
  ASSERT_TRUE(client_->MergePatch(CM(), ns(), "c", unlabel).ok());
  ASSERT_TRUE(client_->MergePatch(CM(), ns(), "other", {{"data", {{"v", "2"}}}}).ok());

  ASSERT_TRUE(Converges(*client_, informer, ns(), selector, absl::Seconds(20)));
  EXPECT_EQ(informer.Size(), 3u);  // a, d, e
  EXPECT_EQ(informer.Get(ns(), "a")->value("/data/v"_json_pointer, std::string()), "2");
  EXPECT_EQ(informer.Get(ns(), "other"), nullptr);
  {
    absl::MutexLock lock(&seen.mu);
    EXPECT_THAT(seen.adds, ::testing::UnorderedElementsAre("a", "b", "c", "d", "e"));
    EXPECT_THAT(seen.updates, ::testing::ElementsAre("a"));
    EXPECT_THAT(seen.deletes, ::testing::UnorderedElementsAre("b", "c"));
  }

  // Idle: an informer whose watch stays open (watch_timeout 5 min) sends nothing.
  // (Over an idle minute the expectation is the same; 15 s keeps the test short.)
  const int64_t requests_before = informer_client->RequestCount();
  const int64_t watches_before = informer.watches();
  absl::SleepFor(absl::Seconds(15));
  EXPECT_EQ(informer_client->RequestCount(), requests_before);
  EXPECT_EQ(informer.watches(), watches_before);
  EXPECT_EQ(informer.relists(), 1);
  std::printf(
      "[ numbers  ] idle informer: %lld requests over 15 s (total %lld: %lld list, %lld "
      "watch)\n",
      static_cast<long long>(informer_client->RequestCount() - requests_before),
      static_cast<long long>(informer_client->RequestCount()),
      static_cast<long long>(informer.relists()), static_cast<long long>(informer.watches()));
  informer.Stop();
}

// The same life cycle with a compact (MessagePack) cache and an index: reads
// decode what was stored, handlers get the old object back for updates and
// deletes, and the index follows label changes.
TEST_F(ListWatchTest, CompactInformerWithIndexConverges) {
  const std::string selector = "capstan.dev/informer-test=yes";
  auto labels = [](const std::string& group) {
    return Object{{"capstan.dev/informer-test", "yes"}, {"group", group}};
  };
  ASSERT_TRUE(client_->Create(CM(), ns(), ConfigMap(ns(), "a", {{"v", "1"}}, labels("x"))).ok());
  ASSERT_TRUE(client_->Create(CM(), ns(), ConfigMap(ns(), "b", {{"v", "1"}}, labels("x"))).ok());

  struct Seen {
    absl::Mutex mu;
    std::vector<std::string> updates_from, deletes;
  } seen;
  auto informer_client = NewClusterClient();
  InformerOptions io;
  io.ns = ns();
  io.label_selector = selector;
  io.compact = true;
  Informer informer(*informer_client, CM(), io);
  informer.AddIndex("group", [](const Object& o) {
    return std::vector<std::string>{o.value("/metadata/labels/group"_json_pointer, std::string())};
  });
  informer.AddHandler([&](const Object* old_obj, const Object* new_obj) {
    absl::MutexLock lock(&seen.mu);
    if (old_obj != nullptr && new_obj != nullptr) {
      seen.updates_from.push_back(absl::StrCat(
          NameOf(*old_obj), "=", old_obj->value("/data/v"_json_pointer, std::string())));
    } else if (new_obj == nullptr) {
      seen.deletes.push_back(NameOf(*old_obj));
    }
  });
  informer.Start();
  ASSERT_TRUE(informer.WaitForSync(absl::Seconds(20)));
  EXPECT_EQ(informer.ByIndex("group", "x").size(), 2u);
  ASSERT_NE(informer.Get(ns(), "a"), nullptr);
  EXPECT_EQ(informer.Get(ns(), "a")->value("/data/v"_json_pointer, std::string()), "1");
  EXPECT_FALSE(informer.Get(ns(), "a")->at("metadata").contains("managedFields"));

  ASSERT_TRUE(
      client_
          ->MergePatch(CM(), ns(), "a",
                       {{"data", {{"v", "2"}}}, {"metadata", {{"labels", {{"group", "y"}}}}}})
          .ok());
  ASSERT_TRUE(client_->Delete(CM(), ns(), "b").ok());
  ASSERT_TRUE(client_->Create(CM(), ns(), ConfigMap(ns(), "c", {{"v", "1"}}, labels("y"))).ok());
  ASSERT_TRUE(Converges(*client_, informer, ns(), selector, absl::Seconds(20)));
  EXPECT_EQ(informer.Get(ns(), "a")->value("/data/v"_json_pointer, std::string()), "2");
  EXPECT_EQ(informer.Get(ns(), "b"), nullptr);
  EXPECT_TRUE(informer.ByIndex("group", "x").empty());
  std::vector<std::string> in_y;
  for (const auto& o : informer.ByIndex("group", "y")) in_y.push_back(NameOf(*o));
  EXPECT_THAT(in_y, ::testing::UnorderedElementsAre("a", "c"));
  EXPECT_EQ(informer.List().size(), 2u);
  // Keys without decoding: the same objects, as "namespace/name".
  EXPECT_THAT(informer.Keys(),
              ::testing::UnorderedElementsAre(absl::StrCat(ns(), "/a"), absl::StrCat(ns(), "/c")));
  {
    absl::MutexLock lock(&seen.mu);
    EXPECT_THAT(seen.updates_from, ::testing::ElementsAre("a=1"));
    EXPECT_THAT(seen.deletes, ::testing::ElementsAre("b"));
  }
  informer.Stop();
}

}  // namespace
}  // namespace capstan::kube::itest
