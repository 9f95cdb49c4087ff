#include "capstan/kube/leader_election.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "capstan/common/clock.h"
#include "capstan/common/metrics.h"
#include "capstan/kube/micro_time.h"
#include "capstan/kube/resource.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/gauge.h"
#include "spdlog/sinks/sink.h"
#include "spdlog/spdlog.h"
#include "unit/kube/in_memory_api_server.h"

namespace capstan::kube {
namespace {

using absl::Milliseconds;
using absl::Seconds;
using testing::InMemoryApiServer;

// Generous: only reached when a test is about to fail.
constexpr absl::Duration kTimeout = absl::Seconds(10);

constexpr char kNs[] = "capstan-system";
constexpr char kName[] = "capstan-leader";

bool Eventually(const std::function<bool()>& done, absl::Duration timeout = kTimeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(Milliseconds(1));
  }
  return true;
}

std::string LeasePath() { return ObjectPath(resources::Leases(), kNs, kName); }

Object ForeignLease(const std::string& holder, absl::Time renew, int64_t seconds = 15,
                    int64_t transitions = 3) {
  Object lease = {{"apiVersion", "coordination.k8s.io/v1"},
                  {"kind", "Lease"},
                  {"metadata", {{"name", kName}, {"namespace", kNs}}}};
  LeaseRecord r;
  r.holder_identity = holder;
  r.lease_duration_seconds = seconds;
  r.acquire_time = renew - Seconds(60);
  r.renew_time = renew;
  r.lease_transitions = transitions;
  SetLeaseRecord(r, &lease);
  return lease;
}

// What the callbacks saw. Thread-safe.
struct Calls {
  mutable absl::Mutex mu;
  int started ABSL_GUARDED_BY(mu) = 0;
  int stopped ABSL_GUARDED_BY(mu) = 0;
  std::vector<std::string> new_leaders ABSL_GUARDED_BY(mu);

  int Started() const {
    absl::MutexLock lock(&mu);
    return started;
  }
  int Stopped() const {
    absl::MutexLock lock(&mu);
    return stopped;
  }
  std::vector<std::string> NewLeaders() const {
    absl::MutexLock lock(&mu);
    return new_leaders;
  }
};

LeaderElectionConfig Config(const std::string& identity, Calls* calls) {
  LeaderElectionConfig c;
  c.lease_namespace = kNs;
  c.lease_name = kName;
  c.identity = identity;
  c.on_started_leading = [calls] {
    absl::MutexLock lock(&calls->mu);
    ++calls->started;
  };
  c.on_stopped_leading = [calls] {
    absl::MutexLock lock(&calls->mu);
    ++calls->stopped;
  };
  c.on_new_leader = [calls](const std::string& id) {
    absl::MutexLock lock(&calls->mu);
    calls->new_leaders.push_back(id);
  };
  return c;
}

double LeaderGauge() {
  return Metrics::Get().leader->Add({{"lease", std::string(kNs) + "/" + kName}}).Value();
}

// ---------------------------------------------------------------------------
// Pure parts.

TEST(LeaderElectionPureTest, MicroTimeFormatAndParse) {
  const absl::Time t = absl::FromUnixMicros(1'136'214'245'123'456);  // 2006-01-02T15:04:05.123456Z
  EXPECT_EQ(FormatMicroTime(t), "2006-01-02T15:04:05.123456Z");
  EXPECT_EQ(FormatMicroTime(absl::FromUnixSeconds(1'136'214'245)), "2006-01-02T15:04:05.000000Z");
  EXPECT_EQ(ParseMicroTime("2006-01-02T15:04:05.123456Z"), t);
  EXPECT_EQ(ParseMicroTime("2006-01-02T15:04:05Z"), absl::FromUnixSeconds(1'136'214'245));
  EXPECT_EQ(ParseMicroTime("2006-01-02T17:04:05+02:00"), absl::FromUnixSeconds(1'136'214'245));
  EXPECT_EQ(ParseMicroTime(""), std::nullopt);
  EXPECT_EQ(ParseMicroTime("yesterday"), std::nullopt);
}

TEST(LeaderElectionPureTest, LeaseRecordRoundTripKeepsOtherFields) {
  Object lease = {{"metadata", {{"name", "x"}, {"resourceVersion", "7"}}},
                  {"spec", {{"preferredHolder", "b"}}}};
  LeaseRecord r;
  r.holder_identity = "a";
  r.lease_duration_seconds = 15;
  r.acquire_time = absl::FromUnixSeconds(100);
  r.renew_time = absl::FromUnixSeconds(110);
  r.lease_transitions = 4;
  SetLeaseRecord(r, &lease);
  EXPECT_EQ(LeaseRecordFromLease(lease), r);
  EXPECT_EQ(lease["spec"]["preferredHolder"], "b");
  EXPECT_EQ(lease["metadata"]["resourceVersion"], "7");
  EXPECT_EQ(lease["spec"]["renewTime"], "1970-01-01T00:01:50.000000Z");

  // A release writes holderIdentity "" explicitly.
  SetLeaseRecord(ReleasedLeaseRecord(r, absl::FromUnixSeconds(120)), &lease);
  EXPECT_EQ(lease["spec"]["holderIdentity"], "");
  EXPECT_EQ(lease["spec"]["leaseDurationSeconds"], 1);
  EXPECT_EQ(lease["spec"]["leaseTransitions"], 4);

  // Garbage reads as empty, never throws.
  EXPECT_EQ(LeaseRecordFromLease(Object::parse(R"({"spec": {"holderIdentity": 3,
      "leaseDurationSeconds": "x", "renewTime": "never"}})")),
            LeaseRecord());
  EXPECT_EQ(LeaseRecordFromLease(Object()), LeaseRecord());
}

TEST(LeaderElectionPureTest, DecideLease) {
  const absl::Time t0 = absl::FromUnixSeconds(1'000'000);
  LeaseRecord foreign;
  foreign.holder_identity = "other";
  foreign.lease_duration_seconds = 15;
  foreign.acquire_time = t0 - Seconds(100);
  foreign.renew_time = t0;
  foreign.lease_transitions = 3;
  LeaseRecord ours = foreign;
  ours.holder_identity = "me";
  LeaseRecord released = ReleasedLeaseRecord(foreign, t0);
  LeaseRecord stale_clock = foreign;  // written by a replica whose clock is an hour behind
  stale_clock.renew_time = t0 - absl::Hours(1);

  struct Case {
    std::string name;
    LeaseRecord current;
    absl::Time observed;
    absl::Time now;
    bool write;
    int64_t transitions;
    std::optional<absl::Time> acquire;
  };
  const std::vector<Case> cases = {
      {"foreign lease still valid", foreign, t0, t0 + Seconds(14), false, 0, std::nullopt},
      {"foreign lease exactly at expiry", foreign, t0, t0 + Seconds(15), true, 4, t0 + Seconds(15)},
      {"foreign lease expired", foreign, t0, t0 + Seconds(20), true, 4, t0 + Seconds(20)},
      {"renewTime in the past but just observed: skew is ignored", stale_clock, t0, t0 + Seconds(1),
       false, 0, std::nullopt},
      {"released lease: take over at once", released, t0, t0, true, 4, t0},
      {"our lease: renew keeps acquireTime and transitions", ours, t0, t0 + Seconds(2), true, 3,
       t0 - Seconds(100)},
      {"our lease after expiry: still ours", ours, t0, t0 + Seconds(60), true, 3,
       t0 - Seconds(100)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    LeaseDecision d = DecideLease(c.current, c.observed, "me", Seconds(15), c.now);
    ASSERT_EQ(d.write, c.write);
    if (!d.write) continue;
    EXPECT_EQ(d.record.holder_identity, "me");
    EXPECT_EQ(d.record.lease_duration_seconds, 15);
    EXPECT_EQ(d.record.renew_time, c.now);
    EXPECT_EQ(d.record.acquire_time, c.acquire);
    EXPECT_EQ(d.record.lease_transitions, c.transitions);
  }
  // Sub-second leases are declared as a whole second.
  LeaseDecision short_lease = DecideLease(released, t0, "me", Milliseconds(300), t0);
  EXPECT_EQ(short_lease.record.lease_duration_seconds, 1);
}

TEST(LeaderElectionPureTest, ValidateConfig) {
  Calls calls;
  struct Case {
    std::string name;
    std::function<void(LeaderElectionConfig&)> change;
    bool ok;
  };
  const std::vector<Case> cases = {
      {"defaults", [](LeaderElectionConfig&) {}, true},
      {"no namespace", [](LeaderElectionConfig& c) { c.lease_namespace.clear(); }, false},
      {"no name", [](LeaderElectionConfig& c) { c.lease_name.clear(); }, false},
      {"no identity", [](LeaderElectionConfig& c) { c.identity.clear(); }, false},
      {"lease not longer than deadline",
       [](LeaderElectionConfig& c) { c.lease_duration = c.renew_deadline; }, false},
      {"deadline not above 1.2 retry",
       [](LeaderElectionConfig& c) { c.renew_deadline = c.retry_period * 1.2; }, false},
      {"zero retry", [](LeaderElectionConfig& c) { c.retry_period = absl::ZeroDuration(); }, false},
      {"millisecond test durations",
       [](LeaderElectionConfig& c) {
         c.lease_duration = Milliseconds(300);
         c.renew_deadline = Milliseconds(200);
         c.retry_period = Milliseconds(20);
       },
       true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    LeaderElectionConfig config = Config("me", &calls);
    c.change(config);
    EXPECT_EQ(ValidateLeaderElectionConfig(config).ok(), c.ok);
  }
}

TEST(LeaderElectionPureTest, DefaultIdentityIsHostnameAndRandomSuffix) {
  const std::string a = DefaultIdentity();
  const std::string b = DefaultIdentity();
  EXPECT_NE(a, b);
  EXPECT_THAT(a, ::testing::MatchesRegex(".+_[0-9a-f]{16}"));
}

// ---------------------------------------------------------------------------
// The elector against the in-memory API server, on a FakeClock.

class LeaderElectorTest : public ::testing::Test {
 protected:
  std::unique_ptr<LeaderElector> NewElector(const std::string& identity, Calls* calls,
                                            Client* client = nullptr) {
    auto elector =
        LeaderElector::New(client != nullptr ? *client : *client_, Config(identity, calls), clock_);
    EXPECT_TRUE(elector.ok()) << elector.status();
    return std::move(elector).value();
  }

  LeaseRecord StoredRecord() const {
    std::optional<Object> lease = server_.Get(LeasePath());
    return lease.has_value() ? LeaseRecordFromLease(*lease) : LeaseRecord();
  }

  // Waits until `elector` has finished `n` steps and waits for its clock.
  static void WaitSteps(const LeaderElector& elector, int64_t n) {
    ASSERT_TRUE(Eventually([&] { return elector.Steps() >= n; })) << "steps: " << elector.Steps();
  }

  // Moves the clock and wakes the electors.
  void Advance(absl::Duration d, std::initializer_list<LeaderElector*> electors) {
    clock_.Advance(d);
    for (LeaderElector* e : electors) e->Poke();
  }

  InMemoryApiServer server_;
  std::unique_ptr<Client> client_ = server_.NewClient("a");
  FakeClock clock_;
};

TEST_F(LeaderElectorTest, NewRejectsInvalidConfigAndFillsIdentity) {
  Calls calls;
  LeaderElectionConfig bad = Config("me", &calls);
  bad.renew_deadline = Seconds(20);
  EXPECT_EQ(LeaderElector::New(*client_, bad, clock_).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto elector = LeaderElector::New(*client_, Config("", &calls), clock_);
  ASSERT_TRUE(elector.ok());
  EXPECT_THAT((*elector)->identity(), ::testing::MatchesRegex(".+_[0-9a-f]{16}"));
  EXPECT_FALSE((*elector)->IsLeader());
}

TEST_F(LeaderElectorTest, AcquiresWhenLeaseIsMissing) {
  Calls calls;
  auto elector = NewElector("a", &calls);
  elector->Start();
  ASSERT_TRUE(Eventually([&] { return elector->IsLeader(); }));
  ASSERT_TRUE(Eventually([&] { return calls.Started() == 1; }));

  LeaseRecord r = StoredRecord();
  EXPECT_EQ(r.holder_identity, "a");
  EXPECT_EQ(r.lease_duration_seconds, 15);
  EXPECT_EQ(r.lease_transitions, 0);
  EXPECT_EQ(r.acquire_time, clock_.Now());
  EXPECT_EQ(r.renew_time, clock_.Now());
  EXPECT_EQ(server_.Get(LeasePath()).value()["spec"]["renewTime"], FormatMicroTime(clock_.Now()));
  EXPECT_EQ(server_.Requests("POST"), 1);
  EXPECT_EQ(elector->Leader(), "a");
  EXPECT_THAT(calls.NewLeaders(), ::testing::ElementsAre("a"));
  EXPECT_EQ(LeaderGauge(), 1);
  EXPECT_EQ(calls.Stopped(), 0);
}

TEST_F(LeaderElectorTest, DoesNotAcquireAFreshForeignLease) {
  server_.Put(LeasePath(), ForeignLease("other", clock_.Now()));
  Calls calls;
  auto elector = NewElector("a", &calls);
  elector->Start();
  WaitSteps(*elector, 1);
  // Two more attempts, 14 s after first seeing the record: still valid.
  for (int i = 2; i <= 3; ++i) {
    Advance(Seconds(7), {elector.get()});
    WaitSteps(*elector, i);
  }
  EXPECT_EQ(server_.Requests("GET"), 3);
  EXPECT_FALSE(elector->IsLeader());
  EXPECT_EQ(server_.Requests("PUT"), 0);
  EXPECT_EQ(server_.Requests("POST"), 0);
  EXPECT_EQ(StoredRecord().holder_identity, "other");
  EXPECT_EQ(calls.Started(), 0);
  ASSERT_TRUE(Eventually([&] { return elector->Leader() == "other"; }));
  EXPECT_THAT(calls.NewLeaders(), ::testing::ElementsAre("other"));
}

TEST_F(LeaderElectorTest, TakesOverAnExpiredLease) {
  server_.Put(LeasePath(), ForeignLease("other", clock_.Now(), 15, 3));
  Calls calls;
  auto elector = NewElector("a", &calls);
  elector->Start();
  WaitSteps(*elector, 1);
  Advance(Seconds(16), {elector.get()});
  ASSERT_TRUE(Eventually([&] { return elector->IsLeader(); }));

  LeaseRecord r = StoredRecord();
  EXPECT_EQ(r.holder_identity, "a");
  EXPECT_EQ(r.lease_transitions, 4);
  EXPECT_EQ(r.acquire_time, clock_.Now());
  EXPECT_EQ(r.renew_time, clock_.Now());
  ASSERT_TRUE(Eventually([&] { return calls.Started() == 1; }));
  EXPECT_THAT(calls.NewLeaders(), ::testing::ElementsAre("other", "a"));
}

TEST_F(LeaderElectorTest, ExpiryIsJudgedFromWhenWeSawTheRecordChange) {
  // The holder's clock is an hour behind: its renewTime always looks expired.
  // Only the record changing matters, so we never take over while it renews.
  server_.Put(LeasePath(), ForeignLease("other", clock_.Now() - absl::Hours(1)));
  Calls calls;
  auto elector = NewElector("a", &calls);
  elector->Start();
  WaitSteps(*elector, 1);
  for (int i = 2; i <= 6; ++i) {
    // The holder renews every 10 s; we look every ~5 s.
    if (i % 2 == 0) {
      server_.Put(LeasePath(),
                  ForeignLease("other", clock_.Now() - absl::Hours(1) + Seconds(10 * i)));
    }
    Advance(Seconds(5), {elector.get()});
    WaitSteps(*elector, i);
    EXPECT_FALSE(elector->IsLeader());
  }
  EXPECT_EQ(server_.Requests("PUT"), 0);
  // The holder stops renewing: 15 s after we last saw a change, we take over.
  Advance(Seconds(16), {elector.get()});
  ASSERT_TRUE(Eventually([&] { return elector->IsLeader(); }));
}

TEST_F(LeaderElectorTest, CreateRaceReadsTheWinnersLease) {
  // Between our GET (404) and POST, another replica creates the lease.
  std::atomic<bool> raced = false;
  server_.SetInterceptor(
      [&](const std::string&,
          const HttpRequest& req) -> std::optional<absl::StatusOr<HttpResponse>> {
        if (req.method == "GET" && !raced.exchange(true)) {
          server_.Put(LeasePath(), ForeignLease("winner", clock_.Now()));
          return InMemoryApiServer::StatusResponse(404, "NotFound", "not found");
        }
        return std::nullopt;
      });
  Calls calls;
  auto elector = NewElector("a", &calls);
  elector->Start();
  ASSERT_TRUE(Eventually([&] { return elector->Leader() == "winner"; }));
  EXPECT_EQ(server_.Requests("POST"), 1);
  EXPECT_EQ(server_.Requests("GET"), 2);
  EXPECT_FALSE(elector->IsLeader());
  EXPECT_EQ(StoredRecord().holder_identity, "winner");
}

TEST_F(LeaderElectorTest, RenewsEveryRetryPeriod) {
  Calls calls;
  auto elector = NewElector("a", &calls);
  elector->Start();
  ASSERT_TRUE(Eventually([&] { return elector->IsLeader(); }));
  WaitSteps(*elector, 1);
  const absl::Time acquired = clock_.Now();
  for (int i = 1; i <= 3; ++i) {
    Advance(Seconds(2), {elector.get()});
    WaitSteps(*elector, 1 + i);
    EXPECT_EQ(StoredRecord().renew_time, clock_.Now());
    EXPECT_TRUE(elector->IsLeader());
  }
  LeaseRecord r = StoredRecord();
  EXPECT_EQ(r.acquire_time, acquired);
  EXPECT_EQ(r.lease_transitions, 0);
  // The fast path: a renewal is one PUT, no GET.
  EXPECT_EQ(server_.Requests("PUT"), 3);
  EXPECT_EQ(server_.Requests("GET"), 1);
  EXPECT_EQ(calls.Started(), 1);
  EXPECT_EQ(calls.Stopped(), 0);
}

TEST_F(LeaderElectorTest, LosesLeadershipWhenRenewingFailsPastTheDeadline) {
  Calls calls;
  auto elector = NewElector("a", &calls);
  elector->Start();
  ASSERT_TRUE(Eventually([&] { return elector->IsLeader(); }));

  std::atomic<int> failed = 0;
  std::atomic<bool> partitioned = true;
  server_.SetInterceptor(
      [&](const std::string&, const HttpRequest&) -> std::optional<absl::StatusOr<HttpResponse>> {
        if (!partitioned) return std::nullopt;
        ++failed;
        return InMemoryApiServer::StatusResponse(503, "ServiceUnavailable", "etcd is down");
      });
  WaitSteps(*elector, 1);
  Advance(Seconds(2), {elector.get()});
  WaitSteps(*elector, 2);
  Advance(Seconds(2), {elector.get()});
  WaitSteps(*elector, 3);
  EXPECT_GE(failed, 2);              // each failed renew is a PUT, then a GET
  EXPECT_TRUE(elector->IsLeader());  // 4 s without a renew: within the 10 s deadline
  EXPECT_EQ(calls.Stopped(), 0);

  // 10 s after the last successful renew IsLeader() is false at once, even
  // before the elector's thread has noticed.
  Advance(Seconds(6), {});
  EXPECT_FALSE(elector->IsLeader());
  elector->Poke();
  ASSERT_TRUE(Eventually([&] { return calls.Stopped() == 1; }));
  EXPECT_EQ(LeaderGauge(), 0);
  WaitSteps(*elector, 4);

  // The API server comes back; nobody took the lease, so we lead again.
  partitioned = false;
  Advance(Seconds(5), {elector.get()});
  ASSERT_TRUE(Eventually([&] { return calls.Started() == 2; }));
  EXPECT_TRUE(elector->IsLeader());
  EXPECT_EQ(StoredRecord().lease_transitions, 0);
}

TEST_F(LeaderElectorTest, HangingRenewEndsTheTermAtTheRenewDeadline) {
  // A black-holed connection: the renew never answers. Leader-only work must end at
  // the renew deadline (before another replica may take the lease at lease_duration),
  // not whenever the stuck request gives up.
  Calls calls;
  auto elector = NewElector("a", &calls);
  elector->Start();
  ASSERT_TRUE(Eventually([&] { return elector->IsLeader(); }));
  WaitSteps(*elector, 1);
  server_.CloseGate();
  Advance(Seconds(2), {elector.get()});
  ASSERT_TRUE(Eventually([&] { return server_.Waiting() == 1; }));  // the renew hangs
  Advance(Seconds(7), {elector.get()});
  EXPECT_TRUE(elector->IsLeader());
  EXPECT_TRUE(elector->Healthy());
  EXPECT_EQ(calls.Stopped(), 0);
  Advance(Seconds(1), {elector.get()});  // 10 s since the last renew
  ASSERT_TRUE(Eventually([&] { return calls.Stopped() == 1; }));
  EXPECT_FALSE(elector->IsLeader());
  EXPECT_EQ(LeaderGauge(), 0);
  EXPECT_EQ(server_.Waiting(), 1) << "the term ended while the request was still stuck";
  server_.OpenGate();
  // The late answer does not start a second stop: the elector comes back as a
  // candidate (its second wait).
  WaitSteps(*elector, 2);
  EXPECT_EQ(calls.Stopped(), 1);
}

// Keeps every log line; holds the thread that logs a line containing `needle` inside
// the log call until Release(), so a test can stop a thread between a decision it logged
// and its next step. Derives from spdlog's sink (not base_sink) so it holds no lock while
// it waits: other threads keep logging.
class StallingSink final : public spdlog::sinks::sink {
 public:
  explicit StallingSink(std::string needle) : needle_(std::move(needle)) {}

  void log(const spdlog::details::log_msg& msg) override {
    const std::string line(msg.payload.data(), msg.payload.size());
    absl::MutexLock lock(&mu_);
    lines_.push_back(line);
    if (line.find(needle_) == std::string::npos) return;
    ++stalled_;
    mu_.AwaitWithTimeout(absl::Condition(&released_), kTimeout);
  }
  void flush() override {}
  void set_pattern(const std::string&) override {}
  void set_formatter(std::unique_ptr<spdlog::formatter>) override {}

  int Stalled() const {
    absl::MutexLock lock(&mu_);
    return stalled_;
  }
  bool Logged(absl::string_view part) const {
    absl::MutexLock lock(&mu_);
    return std::any_of(lines_.begin(), lines_.end(),
                       [&](const std::string& l) { return absl::StrContains(l, part); });
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }

 private:
  const std::string needle_;
  mutable absl::Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
  int stalled_ ABSL_GUARDED_BY(mu_) = 0;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
};

TEST_F(LeaderElectorTest, ALateWatchdogNeverEndsTheNextTerm) {
  // The watchdog decides a term is over (a hanging renew) and is descheduled before it
  // ends it. Meanwhile the elector's own thread ends that term and wins the lease again.
  // The watchdog's late step must not end the new term (it did: IsLeader() false right
  // after becoming leader, and a second on_stopped_leading).
  auto sink = std::make_shared<StallingSink>("a request to the API server is hanging");
  auto previous = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>("stall", sink);
  logger->set_level(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  Calls calls;
  auto elector = NewElector("a", &calls);
  absl::Cleanup restore = [&] {
    sink->Release();
    elector->Stop();
    spdlog::set_default_logger(previous);
  };
  elector->Start();
  ASSERT_TRUE(Eventually([&] { return elector->IsLeader(); }));
  WaitSteps(*elector, 1);
  std::atomic<bool> partitioned = true;
  server_.SetInterceptor(
      [&](const std::string&, const HttpRequest&) -> std::optional<absl::StatusOr<HttpResponse>> {
        if (!partitioned) return std::nullopt;
        return InMemoryApiServer::StatusResponse(503, "ServiceUnavailable", "etcd is down");
      });
  server_.CloseGate();
  Advance(Seconds(2), {elector.get()});
  ASSERT_TRUE(Eventually([&] { return server_.Waiting() == 1; }));  // the renew hangs
  Advance(Seconds(8), {elector.get()});                             // 10 s since the last renew
  ASSERT_TRUE(Eventually([&] { return sink->Stalled() == 1; }));    // the watchdog decided
  EXPECT_EQ(calls.Stopped(), 0);
  // The stuck renew fails; the elector's thread sees the deadline passed and ends the term.
  server_.OpenGate();
  ASSERT_TRUE(Eventually([&] { return calls.Stopped() == 1; }));
  WaitSteps(*elector, 3);
  // The API server recovers and the elector leads again.
  partitioned = false;
  Advance(Seconds(5), {elector.get()});
  ASSERT_TRUE(Eventually([&] { return calls.Started() == 2; }));
  ASSERT_TRUE(elector->IsLeader());
  // Now the watchdog takes its late step: it finds its term over and leaves the new one.
  sink->Release();
  ASSERT_TRUE(Eventually([&] { return sink->Logged("term 1 already ended"); }))
      << "the watchdog's late step ended the new term: stopped " << calls.Stopped() << " times";
  EXPECT_TRUE(elector->IsLeader());
  EXPECT_EQ(calls.Stopped(), 1);
}

TEST_F(LeaderElectorTest, WallClockStepsNeitherExpireNorExtendALease) {
  // Deadlines run on the monotonic clock; the wall clock only stamps the Lease.
  FakeClock mono;
  server_.Put(LeasePath(), ForeignLease("other", clock_.Now(), 15, 3));
  Calls calls;
  auto made = LeaderElector::New(*client_, Config("a", &calls), clock_, &mono);
  ASSERT_TRUE(made.ok()) << made.status();
  std::unique_ptr<LeaderElector> elector = std::move(*made);
  elector->Start();
  WaitSteps(*elector, 1);
  // NTP steps the wall clock an hour ahead; 5 s really pass.
  clock_.Advance(absl::Hours(1));
  mono.Advance(Seconds(5));
  elector->Poke();
  WaitSteps(*elector, 2);
  EXPECT_FALSE(elector->IsLeader()) << "took over a lease that is valid for 10 more seconds";
  // 16 s after the record was seen, by the monotonic clock, it may be taken.
  mono.Advance(Seconds(11));
  elector->Poke();
  ASSERT_TRUE(Eventually([&] { return elector->IsLeader(); }));
  EXPECT_EQ(StoredRecord().renew_time, clock_.Now()) << "the Lease carries wall time";
  // The wall clock stepping back does not end the term either.
  clock_.Advance(-absl::Hours(2));
  elector->Poke();
  EXPECT_TRUE(elector->IsLeader());
}

TEST_F(LeaderElectorTest, StopsLeadingAtOnceWhenAnotherHolderWrote) {
  Calls calls;
  auto elector = NewElector("a", &calls);
  elector->Start();
  ASSERT_TRUE(Eventually([&] { return elector->IsLeader(); }));
  WaitSteps(*elector, 1);
  server_.Put(LeasePath(), ForeignLease("intruder", clock_.Now()));
  Advance(Seconds(2), {elector.get()});
  ASSERT_TRUE(Eventually([&] { return calls.Stopped() == 1; }));
  EXPECT_FALSE(elector->IsLeader());
  EXPECT_EQ(StoredRecord().holder_identity, "intruder");
  EXPECT_THAT(calls.NewLeaders(), ::testing::ElementsAre("a", "intruder"));
}

TEST_F(LeaderElectorTest, ReleasesOnStopSoASuccessorTakesOverAtOnce) {
  Calls calls_a;
  Calls calls_b;
  std::unique_ptr<Client> client_b = server_.NewClient("b");
  LeaderElectionConfig config_a = Config("a", &calls_a);
  // Leader-only work must have stopped before the lease is released.
  std::optional<std::string> holder_when_stopped;
  config_a.on_stopped_leading = [&] { holder_when_stopped = StoredRecord().holder_identity; };
  auto a = LeaderElector::New(*client_, config_a, clock_).value();
  auto b = NewElector("b", &calls_b, client_b.get());
  a->Start();
  ASSERT_TRUE(Eventually([&] { return a->IsLeader(); }));
  b->Start();
  ASSERT_TRUE(Eventually([&] { return b->Leader() == "a"; }));
  WaitSteps(*b, 1);

  a->Stop();
  EXPECT_EQ(holder_when_stopped, "a");
  EXPECT_FALSE(a->IsLeader());
  LeaseRecord released = StoredRecord();
  EXPECT_EQ(released.holder_identity, "");
  EXPECT_EQ(released.lease_duration_seconds, 1);
  EXPECT_EQ(released.lease_transitions, 0);
  EXPECT_EQ(LeaderGauge(), 0);

  // b's next attempt (at most 2.2 * retry_period later), far less than the
  // 15 s lease.
  Advance(Seconds(5), {b.get()});
  ASSERT_TRUE(Eventually([&] { return b->IsLeader(); }));
  EXPECT_EQ(StoredRecord().holder_identity, "b");
  EXPECT_EQ(StoredRecord().lease_transitions, 1);
}

TEST_F(LeaderElectorTest, DestructorReleases) {
  Calls calls;
  {
    auto elector = NewElector("a", &calls);
    elector->Start();
    ASSERT_TRUE(Eventually([&] { return elector->IsLeader(); }));
  }
  EXPECT_EQ(calls.Stopped(), 1);
  EXPECT_EQ(StoredRecord().holder_identity, "");
}

TEST_F(LeaderElectorTest, StopWithoutLeadingWritesNothing) {
  server_.Put(LeasePath(), ForeignLease("other", clock_.Now()));
  Calls calls;
  auto elector = NewElector("a", &calls);
  elector->Start();
  WaitSteps(*elector, 1);
  elector->Stop();
  elector->Stop();  // idempotent
  EXPECT_EQ(server_.Requests("PUT"), 0);
  EXPECT_EQ(StoredRecord().holder_identity, "other");
  EXPECT_EQ(calls.Stopped(), 0);
}

// ---------------------------------------------------------------------------
// Two electors racing on the real clock with millisecond durations.

TEST(LeaderElectorRaceTest, ExactlyOneLeadsAtAnyTime) {
  InMemoryApiServer server;
  std::atomic<bool> partition_a = false;
  std::atomic<bool> partition_b = false;
  server.SetInterceptor([&](const std::string& client,
                            const HttpRequest&) -> std::optional<absl::StatusOr<HttpResponse>> {
    if ((client == "a" && partition_a) || (client == "b" && partition_b)) {
      return absl::UnavailableError("connection refused");
    }
    return std::nullopt;
  });
  std::unique_ptr<Client> client_a = server.NewClient("a");
  std::unique_ptr<Client> client_b = server.NewClient("b");
  Calls calls_a;
  Calls calls_b;
  auto config = [](const std::string& id, Calls* calls) {
    LeaderElectionConfig c = Config(id, calls);
    c.lease_duration = Milliseconds(1000);  // written as 1 s
    c.renew_deadline = Milliseconds(600);
    c.retry_period = Milliseconds(50);
    return c;
  };
  auto a = LeaderElector::New(*client_a, config("a", &calls_a)).value();
  auto b = LeaderElector::New(*client_b, config("b", &calls_b)).value();

  int samples = 0;
  int both = 0;
  // Samples every millisecond (the sampling rate, not a wait for state) until
  // `done` or the timeout; counts moments where both claim to lead.
  auto sample_until = [&](const std::function<bool()>& done, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      const bool la = a->IsLeader();
      const bool lb = b->IsLeader();
      ++samples;
      if (la && lb) ++both;
      if (done()) return true;
      absl::SleepFor(Milliseconds(1));
    }
    return false;
  };
  auto one_leads = [&] { return a->IsLeader() != b->IsLeader(); };
  const auto never = [] { return false; };

  a->Start();
  b->Start();
  ASSERT_TRUE(sample_until(one_leads, kTimeout));
  sample_until(never, Milliseconds(300));

  // Cut the leader off: it stops leading after the renew deadline, the other
  // takes over after the lease, never both at once.
  const bool a_led = a->IsLeader();
  (a_led ? partition_a : partition_b) = true;
  LeaderElector* survivor = a_led ? b.get() : a.get();
  ASSERT_TRUE(sample_until([&] { return survivor->IsLeader(); }, kTimeout));
  (a_led ? partition_a : partition_b) = false;
  sample_until(never, Milliseconds(300));
  EXPECT_TRUE(survivor->IsLeader());

  // Graceful hand-over back: the survivor stops and releases; the other
  // takes over without waiting out the lease.
  LeaderElector* other = survivor == a.get() ? b.get() : a.get();
  survivor->Stop();
  ASSERT_TRUE(sample_until([&] { return other->IsLeader(); }, kTimeout));
  sample_until(never, Milliseconds(200));

  EXPECT_EQ(both, 0) << "both led in " << both << " of " << samples << " samples";
  EXPECT_GT(samples, 100);
  EXPECT_GE(calls_a.Started() + calls_b.Started(), 3);
}

}  // namespace
}  // namespace capstan::kube
