#include "capstan/kube/workqueue.h"

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "capstan/common/clock.h"
#include "capstan/common/metrics.h"
#include "capstan/common/status_macros.h"
#include "capstan/kube/rate_limiter.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"

namespace capstan::kube {
namespace {

using absl::Milliseconds;
using absl::Seconds;

// Generous: only reached when a test is about to fail.
constexpr absl::Duration kTimeout = absl::Seconds(10);

// Polls `done` until it holds or `timeout` of real time passes.
bool Eventually(const std::function<bool()>& done, absl::Duration timeout = kTimeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) {
      return false;
    }
    absl::SleepFor(Milliseconds(1));
  }
  return true;
}

// A per-key backoff without the overall bucket: exact, predictable delays.
std::unique_ptr<RateLimiter> ExponentialOnly() {
  return std::make_unique<ItemExponentialFailureRateLimiter>(Milliseconds(5), Seconds(1000));
}

// Get() on its own thread, so a test can wait for it with a deadline. If the
// test ends while Get() is still blocked, the queue is shut down to free it.
class AsyncGet {
 public:
  explicit AsyncGet(WorkQueue& queue)
      : queue_(queue), thread_([this] {
          result_ = queue_.Get();
          done_.Notify();
        }) {}
  ~AsyncGet() {
    if (!done_.HasBeenNotified()) {
      queue_.ShutDown();
    }
    thread_.join();
  }

  bool Returned() const { return done_.HasBeenNotified(); }
  bool WaitFor(absl::Duration timeout = kTimeout) {
    return done_.WaitForNotificationWithTimeout(timeout);
  }
  // Valid once Returned().
  const std::optional<std::string>& result() const { return result_; }

 private:
  WorkQueue& queue_;
  absl::Notification done_;
  std::optional<std::string> result_;
  std::thread thread_;
};

// A queue name no other test (or --gtest_repeat iteration) used, so metric
// values read back belong to this test alone.
std::string UniqueName(const std::string& base) {
  static std::atomic<int> next{0};
  return absl::StrCat(base, "-", next.fetch_add(1));
}

double CounterValue(prometheus::Family<prometheus::Counter>* family,
                    const std::map<std::string, std::string>& labels) {
  return family->Add(labels).Value();
}

double GaugeValue(const std::string& queue) {
  return Metrics::Get().workqueue_depth->Add({{"name", queue}}).Value();
}

uint64_t HistogramCount(prometheus::Family<prometheus::Histogram>* family,
                        const std::map<std::string, std::string>& labels) {
  return family->Add(labels, Metrics::LatencyBuckets()).Collect().histogram.sample_count;
}

// ---------------------------------------------------------------------------
// WorkQueue

TEST(WorkQueueTest, FifoAddGetDone) {
  FakeClock clock;
  WorkQueue queue("wq-fifo", clock);
  queue.Add("ns/a");
  queue.Add("ns/b");
  queue.Add("ns/c");
  EXPECT_EQ(queue.Len(), 3);
  EXPECT_EQ(queue.Get(), "ns/a");
  EXPECT_EQ(queue.Get(), "ns/b");
  EXPECT_EQ(queue.Len(), 1);
  EXPECT_EQ(queue.NumProcessing(), 2);
  queue.Done("ns/a");
  queue.Done("ns/b");
  EXPECT_EQ(queue.NumProcessing(), 0);
  EXPECT_EQ(queue.Get(), "ns/c");
}

TEST(WorkQueueTest, DeduplicatesQueuedKeys) {
  FakeClock clock;
  WorkQueue queue("wq-dedup", clock);
  queue.Add("ns/a");
  queue.Add("ns/b");
  queue.Add("ns/a");
  queue.Add("ns/a");
  EXPECT_EQ(queue.Len(), 2);
  EXPECT_EQ(queue.Get(), "ns/a");
  EXPECT_EQ(queue.Get(), "ns/b");
  EXPECT_EQ(queue.Len(), 0);
}

TEST(WorkQueueTest, KeyReAddedWhileProcessingIsQueuedOnceOnDone) {
  FakeClock clock;
  WorkQueue queue("wq-dirty", clock);
  queue.Add("ns/a");
  ASSERT_EQ(queue.Get(), "ns/a");

  // Added (twice) while a worker holds it: not handed out to anyone now.
  queue.Add("ns/a");
  queue.Add("ns/a");
  EXPECT_EQ(queue.Len(), 0);
  queue.Add("ns/b");
  EXPECT_EQ(queue.Get(), "ns/b");  // other keys are not held up
  queue.Done("ns/b");

  queue.Done("ns/a");  // now it comes back, once
  EXPECT_EQ(queue.Len(), 1);
  EXPECT_EQ(queue.Get(), "ns/a");
  queue.Done("ns/a");
  EXPECT_EQ(queue.Len(), 0);
}

TEST(WorkQueueTest, NormalKeysGoBeforeLowPriorityKeys) {
  FakeClock clock;
  WorkQueue queue("wq-priority", clock);
  using P = WorkQueue::Priority;
  queue.Add("ns/resync-1", P::kLow);
  queue.Add("ns/resync-2", P::kLow);
  queue.Add("ns/event-1");
  queue.Add("ns/resync-3", P::kLow);
  queue.Add("ns/event-2");
  EXPECT_EQ(queue.Len(), 5);
  // Normal keys first, in order; then the low ones, in order.
  EXPECT_EQ(queue.Get(), "ns/event-1");
  EXPECT_EQ(queue.Get(), "ns/event-2");
  EXPECT_EQ(queue.Get(), "ns/resync-1");
  queue.Add("ns/event-3");  // arrives while resyncs are still queued: goes first
  EXPECT_EQ(queue.Get(), "ns/event-3");
  EXPECT_EQ(queue.Get(), "ns/resync-2");
  EXPECT_EQ(queue.Get(), "ns/resync-3");
  EXPECT_EQ(queue.Len(), 0);
}

TEST(WorkQueueTest, LowKeyAddedAtNormalPriorityMovesUpOnce) {
  FakeClock clock;
  WorkQueue queue("wq-priority-up", clock);
  using P = WorkQueue::Priority;
  queue.Add("ns/a", P::kLow);
  queue.Add("ns/b", P::kLow);
  queue.Add("ns/b");           // an event for a key waiting as a resync: moves up
  queue.Add("ns/b", P::kLow);  // a later resync does not move it down
  EXPECT_EQ(queue.Len(), 2);
  EXPECT_EQ(queue.Get(), "ns/b");
  EXPECT_EQ(queue.Get(), "ns/a");
  // The stale entry left in the low lane is never handed out.
  EXPECT_EQ(queue.Len(), 0);
  queue.Done("ns/a");
  queue.Done("ns/b");
  queue.ShutDown();
  EXPECT_EQ(queue.Get(), std::nullopt);
}

TEST(WorkQueueTest, PriorityOfAKeyReAddedWhileProcessingIsKept) {
  FakeClock clock;
  WorkQueue queue("wq-priority-dirty", clock);
  using P = WorkQueue::Priority;
  queue.Add("ns/a");
  ASSERT_EQ(queue.Get(), "ns/a");
  queue.Add("ns/a", P::kLow);  // a resync while a worker holds it
  queue.Add("ns/b", P::kLow);
  queue.Add("ns/c");
  queue.Done("ns/a");  // back in the low lane, after ns/b
  EXPECT_EQ(queue.Get(), "ns/c");
  EXPECT_EQ(queue.Get(), "ns/b");
  EXPECT_EQ(queue.Get(), "ns/a");
  queue.Done("ns/a");
  queue.Add("ns/a", P::kLow);
  ASSERT_EQ(queue.Get(), "ns/a");
  queue.Add("ns/a", P::kLow);
  queue.Add("ns/a");  // moved up while held: comes back at normal priority
  queue.Add("ns/d", P::kLow);
  queue.Done("ns/a");
  EXPECT_EQ(queue.Get(), "ns/a");
  EXPECT_EQ(queue.Get(), "ns/d");
  EXPECT_EQ(queue.Len(), 0);
}

TEST(WorkQueueTest, DelayedKeysComeBackAtNormalPriority) {
  FakeClock clock;
  WorkQueue queue("wq-priority-delay", clock);
  queue.Add("ns/resync", WorkQueue::Priority::kLow);
  queue.AddAfter("ns/follow-up", Seconds(1));
  clock.Advance(Seconds(1));
  EXPECT_EQ(queue.Get(), "ns/follow-up");
  EXPECT_EQ(queue.Get(), "ns/resync");
}

TEST(WorkQueueTest, DoneWithoutReAddDoesNotRequeue) {
  FakeClock clock;
  WorkQueue queue("wq-done", clock);
  queue.Add("ns/a");
  ASSERT_EQ(queue.Get(), "ns/a");
  queue.Done("ns/a");
  EXPECT_EQ(queue.Len(), 0);
  EXPECT_EQ(queue.NumProcessing(), 0);
}

TEST(WorkQueueTest, DoneForUnknownKeyIsIgnored) {
  FakeClock clock;
  WorkQueue queue("wq-done-unknown", clock);
  queue.Add("ns/a");
  queue.Done("ns/a");  // queued, not processing: must not queue it a second time
  queue.Done("ns/zzz");
  EXPECT_EQ(queue.Len(), 1);
  EXPECT_EQ(queue.Get(), "ns/a");
  EXPECT_EQ(queue.Len(), 0);
}

TEST(WorkQueueTest, GetBlocksUntilAdd) {
  FakeClock clock;
  WorkQueue queue("wq-block", clock);
  AsyncGet get(queue);
  EXPECT_FALSE(get.Returned());
  queue.Add("ns/a");
  ASSERT_TRUE(get.WaitFor());
  EXPECT_EQ(get.result(), "ns/a");
}

TEST(WorkQueueTest, DelayedAddNotDeliveredBeforeDue) {
  FakeClock clock;
  WorkQueue queue("wq-delay", clock);
  queue.AddAfter("ns/a", Seconds(1));
  EXPECT_EQ(queue.Len(), 0);
  EXPECT_EQ(queue.NumWaiting(), 1);

  clock.Advance(Milliseconds(999));
  EXPECT_EQ(queue.Len(), 0);
  clock.Advance(Milliseconds(1));
  EXPECT_EQ(queue.Len(), 1);  // Len() promotes due keys itself
  EXPECT_EQ(queue.NumWaiting(), 0);
  EXPECT_EQ(queue.Get(), "ns/a");
}

TEST(WorkQueueTest, DelayedAddWakesBlockedGetOnPoke) {
  FakeClock clock;
  WorkQueue queue("wq-delay-poke", clock);
  AsyncGet get(queue);
  queue.AddAfter("ns/a", Seconds(30));

  clock.Advance(Seconds(29));
  queue.Poke();
  // Poke() promotes under the queue's lock before it returns, so had anything
  // been due, Get() could already have it; nothing was.
  EXPECT_EQ(queue.Len(), 0);
  EXPECT_FALSE(get.Returned());

  clock.Advance(Seconds(1));
  queue.Poke();
  ASSERT_TRUE(get.WaitFor());
  EXPECT_EQ(get.result(), "ns/a");
}

TEST(WorkQueueTest, DelayedKeysComeOutInDeadlineOrder) {
  FakeClock clock;
  WorkQueue queue("wq-delay-order", clock);
  queue.AddAfter("ns/late", Seconds(3));
  queue.AddAfter("ns/early", Seconds(1));
  queue.AddAfter("ns/tie-1", Seconds(2));
  queue.AddAfter("ns/tie-2", Seconds(2));
  clock.Advance(Seconds(5));
  EXPECT_EQ(queue.Get(), "ns/early");
  EXPECT_EQ(queue.Get(), "ns/tie-1");
  EXPECT_EQ(queue.Get(), "ns/tie-2");
  EXPECT_EQ(queue.Get(), "ns/late");
}

TEST(WorkQueueTest, ShorterDelayForWaitingKeyWins) {
  FakeClock clock;
  WorkQueue queue("wq-delay-shorter", clock);
  queue.AddAfter("ns/a", Seconds(10));
  queue.AddAfter("ns/a", Seconds(1));   // earlier: replaces
  queue.AddAfter("ns/a", Seconds(20));  // later: ignored
  EXPECT_EQ(queue.NumWaiting(), 1);
  clock.Advance(Seconds(1));
  EXPECT_EQ(queue.Len(), 1);
  EXPECT_EQ(queue.Get(), "ns/a");
  queue.Done("ns/a");
  clock.Advance(Seconds(60));
  EXPECT_EQ(queue.Len(), 0);  // delivered once
}

TEST(WorkQueueTest, NonPositiveDelayAddsNow) {
  FakeClock clock;
  WorkQueue queue("wq-delay-zero", clock);
  queue.AddAfter("ns/a", absl::ZeroDuration());
  queue.AddAfter("ns/b", Seconds(-1));
  EXPECT_EQ(queue.Len(), 2);
  EXPECT_EQ(queue.NumWaiting(), 0);
}

TEST(WorkQueueTest, DelayedKeyAlreadyQueuedIsDeduplicated) {
  FakeClock clock;
  WorkQueue queue("wq-delay-dedup", clock);
  queue.Add("ns/a");
  queue.AddAfter("ns/a", Seconds(1));
  clock.Advance(Seconds(1));
  EXPECT_EQ(queue.Len(), 1);
}

TEST(WorkQueueTest, RealClockTimerDeliversDelayedKey) {
  WorkQueue queue("wq-real-timer", RealClock::Get());
  AsyncGet get(queue);
  const absl::Time start = absl::Now();
  // The 1 h entry makes the timer sleep long; the shorter delay must re-plan it.
  queue.AddAfter("ns/a", absl::Hours(1));
  queue.AddAfter("ns/a", Milliseconds(20));
  ASSERT_TRUE(get.WaitFor(Seconds(5)));  // well under the timer's 10 s cap
  EXPECT_EQ(get.result(), "ns/a");
  EXPECT_GE(absl::Now() - start, Milliseconds(20));
}

TEST(WorkQueueTest, AddRateLimitedBacksOffPerKey) {
  FakeClock clock;
  WorkQueue queue("wq-ratelimited", clock, ExponentialOnly());
  struct Step {
    absl::Duration want;
  };
  const Step steps[] = {
      {Milliseconds(5)}, {Milliseconds(10)}, {Milliseconds(20)}, {Milliseconds(40)}};
  int i = 0;
  for (const Step& s : steps) {
    SCOPED_TRACE(absl::StrCat("retry ", i));
    queue.AddRateLimited("ns/a");
    EXPECT_EQ(queue.NumRequeues("ns/a"), ++i);
    clock.Advance(s.want - absl::Nanoseconds(1));
    EXPECT_EQ(queue.Len(), 0);
    clock.Advance(absl::Nanoseconds(1));
    ASSERT_EQ(queue.Len(), 1);
    ASSERT_EQ(queue.Get(), "ns/a");
    queue.Done("ns/a");
  }
  queue.Forget("ns/a");
  EXPECT_EQ(queue.NumRequeues("ns/a"), 0);
  queue.AddRateLimited("ns/a");
  clock.Advance(Milliseconds(5));
  EXPECT_EQ(queue.Len(), 1);
}

TEST(WorkQueueTest, ShutDownWakesBlockedGets) {
  FakeClock clock;
  WorkQueue queue("wq-shutdown-wake", clock);
  std::vector<std::unique_ptr<AsyncGet>> gets;
  for (int i = 0; i < 3; ++i) {
    gets.push_back(std::make_unique<AsyncGet>(queue));
  }
  queue.ShutDown();
  for (auto& get : gets) {
    ASSERT_TRUE(get->WaitFor());
    EXPECT_EQ(get->result(), std::nullopt);
  }
  EXPECT_TRUE(queue.ShuttingDown());
}

TEST(WorkQueueTest, ShutDownHandsOutQueuedKeysThenNothing) {
  FakeClock clock;
  WorkQueue queue("wq-shutdown-drain", clock);
  queue.Add("ns/a");
  queue.Add("ns/b");
  queue.AddAfter("ns/delayed", Seconds(1));
  queue.ShutDown();
  queue.Add("ns/c");  // ignored
  queue.AddAfter("ns/d", Seconds(1));
  queue.AddRateLimited("ns/e");
  EXPECT_EQ(queue.NumWaiting(), 0);  // delayed keys are dropped
  EXPECT_EQ(queue.NumRequeues("ns/e"), 0);
  clock.Advance(Seconds(2));
  EXPECT_EQ(queue.Get(), "ns/a");
  EXPECT_EQ(queue.Get(), "ns/b");
  EXPECT_EQ(queue.Get(), std::nullopt);
  EXPECT_EQ(queue.Get(), std::nullopt);
}

TEST(WorkQueueTest, DirtyKeyIsStillHandedOutAfterShutDown) {
  FakeClock clock;
  WorkQueue queue("wq-shutdown-dirty", clock);
  queue.Add("ns/a");
  ASSERT_EQ(queue.Get(), "ns/a");
  queue.Add("ns/a");  // changed while being processed: the change must not be lost
  queue.ShutDown();
  queue.Done("ns/a");
  EXPECT_EQ(queue.Get(), "ns/a");
  queue.Done("ns/a");
  EXPECT_EQ(queue.Get(), std::nullopt);
}

TEST(WorkQueueTest, ShutDownWithDrainWaitsForInFlightAndQueuedKeys) {
  FakeClock clock;
  WorkQueue queue("wq-drain", clock);
  queue.Add("ns/a");
  queue.Add("ns/b");
  ASSERT_EQ(queue.Get(), "ns/a");

  absl::Notification drained;
  bool drain_result = false;
  std::thread drainer([&] {
    drain_result = queue.ShutDownWithDrain();
    drained.Notify();
  });
  ASSERT_TRUE(Eventually([&] { return queue.ShuttingDown(); }));
  queue.Done("ns/a");
  EXPECT_FALSE(drained.HasBeenNotified());  // ns/b is still queued
  EXPECT_EQ(queue.Get(), "ns/b");
  EXPECT_FALSE(drained.HasBeenNotified());  // ns/b is in flight
  queue.Done("ns/b");
  ASSERT_TRUE(drained.WaitForNotificationWithTimeout(kTimeout));
  drainer.join();
  EXPECT_TRUE(drain_result);
  EXPECT_EQ(queue.Get(), std::nullopt);
}

TEST(WorkQueueTest, ShutDownWithDrainTimesOut) {
  FakeClock clock;
  WorkQueue queue("wq-drain-timeout", clock);
  queue.Add("ns/a");
  ASSERT_EQ(queue.Get(), "ns/a");
  EXPECT_FALSE(queue.ShutDownWithDrain(Milliseconds(10)));
  queue.Done("ns/a");
  EXPECT_TRUE(queue.ShutDownWithDrain(absl::ZeroDuration()));
}

TEST(WorkQueueTest, ConcurrentWorkersNeverShareAKey) {
  FakeClock clock;
  WorkQueue queue("wq-concurrent", clock);
  absl::Mutex mu;
  absl::flat_hash_set<std::string> in_flight;
  std::atomic<int> overlaps{0};
  std::atomic<int> handled{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      while (std::optional<std::string> key = queue.Get()) {
        {
          absl::MutexLock lock(&mu);
          if (!in_flight.insert(*key).second) {
            overlaps.fetch_add(1);
          }
        }
        std::this_thread::yield();
        {
          absl::MutexLock lock(&mu);
          in_flight.erase(*key);
        }
        handled.fetch_add(1);
        queue.Done(*key);
      }
    });
  }
  for (int i = 0; i < 20000; ++i) {
    queue.Add(absl::StrCat("ns/k", i % 5));
  }
  EXPECT_TRUE(queue.ShutDownWithDrain(kTimeout));
  for (std::thread& w : workers) {
    w.join();
  }
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_GE(handled.load(), 5);
}

TEST(WorkQueueTest, Metrics) {
  FakeClock clock;
  const std::string name = UniqueName("wq-metrics");
  const std::map<std::string, std::string> labels = {{"name", name}};
  {
    WorkQueue queue(name, clock, ExponentialOnly());
    queue.Add("ns/a");
    queue.Add("ns/b");
    queue.Add("ns/a");
    EXPECT_EQ(GaugeValue(name), 2);
    EXPECT_EQ(CounterValue(Metrics::Get().workqueue_adds, labels), 2);

    ASSERT_EQ(queue.Get(), "ns/a");
    EXPECT_EQ(GaugeValue(name), 1);
    EXPECT_EQ(HistogramCount(Metrics::Get().workqueue_queue_duration, labels), 1);
    clock.Advance(Milliseconds(3));
    queue.Done("ns/a");
    EXPECT_EQ(HistogramCount(Metrics::Get().workqueue_work_duration, labels), 1);

    queue.AddRateLimited("ns/c");
    EXPECT_EQ(CounterValue(Metrics::Get().workqueue_retries, labels), 1);
    EXPECT_EQ(GaugeValue(name), 1);  // waiting keys are not in the depth
    clock.Advance(Milliseconds(5));
    queue.Poke();
    EXPECT_EQ(GaugeValue(name), 2);
  }
  EXPECT_EQ(GaugeValue(name), 0);  // a destroyed queue takes its keys out of the gauge
}

// ---------------------------------------------------------------------------
// Terminal errors

TEST(WorkerPoolTest, TerminalErrorMarksStatusAndSurvivesPropagation) {
  const absl::Status plain = absl::InvalidArgumentError("spec.replicas: must be >= 0");
  EXPECT_FALSE(IsTerminalError(plain));
  EXPECT_FALSE(IsTerminalError(absl::OkStatus()));

  auto inner = [&]() -> absl::Status { return TerminalError(plain); };
  auto outer = [&]() -> absl::StatusOr<ReconcileResult> {
    RETURN_IF_ERROR(inner());
    return ReconcileResult{};
  };
  absl::StatusOr<ReconcileResult> result = outer();
  ASSERT_FALSE(result.ok());
  EXPECT_TRUE(IsTerminalError(result.status()));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(result.status().message(), plain.message());

  absl::Status from_ok = TerminalError(absl::OkStatus());
  EXPECT_FALSE(from_ok.ok());
  EXPECT_TRUE(IsTerminalError(from_ok));
}

// ---------------------------------------------------------------------------
// WorkerPool

// Counts calls per key and answers each call with the next scripted outcome
// (the last one repeats).
class ScriptedReconciler {
 public:
  using Outcome = std::function<absl::StatusOr<ReconcileResult>()>;

  explicit ScriptedReconciler(std::vector<Outcome> script) : script_(std::move(script)) {}

  absl::StatusOr<ReconcileResult> operator()(const std::string& key) {
    int call;
    {
      absl::MutexLock lock(&mu_);
      call = calls_++;
    }
    return script_[std::min<size_t>(call, script_.size() - 1)]();
  }

  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  const std::vector<Outcome> script_;
  absl::Mutex mu_;
  int calls_ = 0;
};

ScriptedReconciler::Outcome Ok(ReconcileResult r = {}) {
  return [r]() -> absl::StatusOr<ReconcileResult> { return r; };
}
ScriptedReconciler::Outcome Fail(absl::Status s) {
  return [s]() -> absl::StatusOr<ReconcileResult> { return s; };
}

// Waits until `calls` reconciles have run and the pool has acted on the last
// one (the key is no longer being processed).
void WaitForCalls(ScriptedReconciler& r, WorkQueue& queue, int calls) {
  ASSERT_TRUE(Eventually([&] { return r.calls() >= calls && queue.NumProcessing() == 0; }))
      << "calls=" << r.calls() << " want " << calls;
  EXPECT_EQ(r.calls(), calls);
}

double ReconcileCount(const std::string& controller, const std::string& result) {
  return CounterValue(Metrics::Get().reconcile_total,
                      {{"controller", controller}, {"result", result}});
}

TEST(WorkerPoolTest, SuccessForgetsBackoff) {
  FakeClock clock;
  WorkQueue queue(UniqueName("wp-success"), clock, ExponentialOnly());
  ScriptedReconciler r({Ok()});
  WorkerPool pool(queue, 2, std::ref(r));
  queue.AddRateLimited("ns/a");  // as if it had failed before
  clock.Advance(Milliseconds(5));
  queue.Poke();
  WaitForCalls(r, queue, 1);
  EXPECT_EQ(queue.NumRequeues("ns/a"), 0);
  EXPECT_EQ(queue.NumWaiting(), 0);
  EXPECT_EQ(queue.Len(), 0);
  EXPECT_EQ(ReconcileCount(queue.name(), "success"), 1);
}

TEST(WorkerPoolTest, RequeueAfterForgetsAndDelays) {
  FakeClock clock;
  WorkQueue queue(UniqueName("wp-requeue-after"), clock, ExponentialOnly());
  ScriptedReconciler r(
      {Fail(absl::UnavailableError("apiserver down")), Ok({.requeue_after = Seconds(30)}), Ok()});
  WorkerPool pool(queue, 2, std::ref(r));
  queue.Add("ns/a");
  WaitForCalls(r, queue, 1);  // error: backoff 5 ms
  EXPECT_EQ(queue.NumRequeues("ns/a"), 1);
  clock.Advance(Milliseconds(5));
  queue.Poke();
  WaitForCalls(r, queue, 2);  // requeue after 30 s, backoff reset
  EXPECT_EQ(queue.NumRequeues("ns/a"), 0);
  EXPECT_EQ(queue.NumWaiting(), 1);

  clock.Advance(Seconds(29));
  queue.Poke();
  EXPECT_EQ(queue.Len(), 0);
  EXPECT_EQ(r.calls(), 2);
  clock.Advance(Seconds(1));
  queue.Poke();
  WaitForCalls(r, queue, 3);
  EXPECT_EQ(queue.NumWaiting(), 0);
  EXPECT_EQ(ReconcileCount(queue.name(), "requeue_after"), 1);
}

TEST(WorkerPoolTest, ErrorRetriesWithGrowingBackoff) {
  FakeClock clock;
  WorkQueue queue(UniqueName("wp-error"), clock, ExponentialOnly());
  const absl::Status conflict = absl::AbortedError("the object has been modified");
  ScriptedReconciler r({Fail(conflict), Fail(conflict), Fail(conflict), Ok()});
  WorkerPool pool(queue, 2, std::ref(r));
  queue.Add("ns/a");
  absl::Duration backoff = Milliseconds(5);
  for (int call = 1; call <= 3; ++call) {
    SCOPED_TRACE(absl::StrCat("call ", call));
    WaitForCalls(r, queue, call);
    EXPECT_EQ(queue.NumRequeues("ns/a"), call);
    EXPECT_EQ(queue.NumWaiting(), 1);
    clock.Advance(backoff - absl::Nanoseconds(1));
    queue.Poke();
    EXPECT_EQ(queue.Len(), 0);
    EXPECT_EQ(r.calls(), call);  // not retried early
    clock.Advance(absl::Nanoseconds(1));
    queue.Poke();
    backoff *= 2;
  }
  WaitForCalls(r, queue, 4);
  EXPECT_EQ(queue.NumRequeues("ns/a"), 0);  // success forgot the failures
  EXPECT_EQ(ReconcileCount(queue.name(), "error"), 3);
  EXPECT_EQ(ReconcileCount(queue.name(), "success"), 1);
}

TEST(WorkerPoolTest, RequeueWithoutErrorIsRateLimited) {
  FakeClock clock;
  WorkQueue queue(UniqueName("wp-requeue"), clock, ExponentialOnly());
  ScriptedReconciler r({Ok({.requeue = true}), Ok()});
  WorkerPool pool(queue, 1, std::ref(r));
  queue.Add("ns/a");
  WaitForCalls(r, queue, 1);
  EXPECT_EQ(queue.NumRequeues("ns/a"), 1);
  clock.Advance(Milliseconds(5));
  queue.Poke();
  WaitForCalls(r, queue, 2);
  EXPECT_EQ(queue.NumRequeues("ns/a"), 0);
  EXPECT_EQ(ReconcileCount(queue.name(), "requeue"), 1);
}

TEST(WorkerPoolTest, TerminalErrorIsNotRetried) {
  FakeClock clock;
  WorkQueue queue(UniqueName("wp-terminal"), clock, ExponentialOnly());
  ScriptedReconciler r({Fail(absl::UnavailableError("timeout")),
                        Fail(TerminalError(absl::InvalidArgumentError("unknown strategy")))});
  WorkerPool pool(queue, 2, std::ref(r));
  queue.Add("ns/a");
  WaitForCalls(r, queue, 1);
  clock.Advance(Milliseconds(5));
  queue.Poke();
  WaitForCalls(r, queue, 2);
  EXPECT_EQ(queue.NumRequeues("ns/a"), 0);
  EXPECT_EQ(queue.NumWaiting(), 0);
  clock.Advance(Seconds(2000));  // longer than any backoff
  queue.Poke();
  EXPECT_EQ(queue.Len(), 0);
  EXPECT_EQ(r.calls(), 2);
  EXPECT_EQ(ReconcileCount(queue.name(), "terminal"), 1);

  queue.Add("ns/a");  // a change to the object brings it back
  WaitForCalls(r, queue, 3);
}

TEST(WorkerPoolTest, ExceptionsAreErrorsAndWorkersSurvive) {
  FakeClock clock;
  WorkQueue queue(UniqueName("wp-exception"), clock, ExponentialOnly());
  ScriptedReconciler r(
      {[]() -> absl::StatusOr<ReconcileResult> { throw std::runtime_error("boom"); },
       []() -> absl::StatusOr<ReconcileResult> { throw 42; }, Ok()});
  WorkerPool pool(queue, 1, std::ref(r));  // one worker: it must survive both throws
  queue.Add("ns/a");
  WaitForCalls(r, queue, 1);
  EXPECT_EQ(queue.NumRequeues("ns/a"), 1);
  clock.Advance(Milliseconds(5));
  queue.Poke();
  WaitForCalls(r, queue, 2);
  EXPECT_EQ(queue.NumRequeues("ns/a"), 2);
  clock.Advance(Milliseconds(10));
  queue.Poke();
  WaitForCalls(r, queue, 3);
  EXPECT_EQ(queue.NumRequeues("ns/a"), 0);
  EXPECT_EQ(ReconcileCount(queue.name(), "error"), 2);
  EXPECT_EQ(ReconcileCount(queue.name(), "success"), 1);
}

TEST(WorkerPoolTest, OneKeyNeverOnTwoWorkers) {
  FakeClock clock;
  WorkQueue queue("wp-exclusive", clock, ExponentialOnly());
  absl::Mutex mu;
  absl::flat_hash_set<std::string> in_flight;
  std::atomic<int> overlaps{0};
  std::atomic<int> calls{0};
  WorkerPool pool(queue, 4, [&](const std::string& key) -> absl::StatusOr<ReconcileResult> {
    {
      absl::MutexLock lock(&mu);
      if (!in_flight.insert(key).second) {
        overlaps.fetch_add(1);
      }
    }
    // Re-add our own key while holding it: it must wait for Done(), not go to
    // another worker now.
    if (calls.fetch_add(1) < 2000) {
      queue.Add(key);
    }
    std::this_thread::yield();
    {
      absl::MutexLock lock(&mu);
      in_flight.erase(key);
    }
    return ReconcileResult{};
  });
  // Keys arrive from outside too, while workers hold them.
  std::atomic<bool> stop_producing{false};
  std::thread producer([&] {
    for (int i = 0; !stop_producing.load(); ++i) {
      queue.Add(absl::StrCat("ns/k", i % 6));
      std::this_thread::yield();
    }
  });
  // 2000 calls take well under a second idle; the bound is for a loaded machine (1748 in 10 s
  // under ASan at load 20).
  EXPECT_TRUE(Eventually([&] { return calls.load() >= 2000; }, absl::Seconds(60)));
  stop_producing.store(true);
  producer.join();
  pool.Stop();  // the queue hands out what is left, then the workers exit
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_GE(calls.load(), 2000);
  EXPECT_EQ(queue.Len(), 0);
  EXPECT_EQ(queue.NumProcessing(), 0);
}

TEST(WorkerPoolTest, StopWaitsForInFlightReconcile) {
  FakeClock clock;
  WorkQueue queue("wp-stop", clock);
  absl::Notification started;
  absl::Notification release;
  std::atomic<bool> finished{false};
  WorkerPool pool(queue, 2, [&](const std::string& key) -> absl::StatusOr<ReconcileResult> {
    started.Notify();
    release.WaitForNotification();
    finished.store(true);
    return ReconcileResult{};
  });
  queue.Add("ns/a");
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(kTimeout));

  bool finished_when_stopped = false;
  std::thread stopper([&] {
    pool.Stop();
    finished_when_stopped = finished.load();
  });
  ASSERT_TRUE(Eventually([&] { return queue.ShuttingDown(); }));
  release.Notify();
  stopper.join();
  EXPECT_TRUE(finished_when_stopped);
  pool.Stop();  // idempotent
}

}  // namespace
}  // namespace capstan::kube
