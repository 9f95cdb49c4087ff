#pragma once

// The controller work queue, with client-go's workqueue semantics, and the
// worker pool that drains it with controller-runtime's reconcile semantics.
//
// Keys are "namespace/name" strings. A key is queued at most once however
// often it is added, and it is never handed to two workers at once: a key
// added while a worker holds it is marked dirty and queued again when the
// worker calls Done(). Delays (AddAfter, AddRateLimited) are measured on an
// injected Clock.
//
// How delays meet a FakeClock. Delayed keys wait in a deadline-ordered set.
// They are moved to the ready queue (a) by a timer thread, started on the
// first delayed add, that sleeps until the earliest deadline by real time
// (capped at 10 s, so a clock that jumps is caught up with), and (b) inline,
// under the queue's lock, by Get(), Len() and Poke(). With a RealClock (a)
// delivers on time. A FakeClock only moves when a test advances it, so a test
// calls Poke() (or Get()/Len()) after Advance() and the due keys are ready
// before that call returns: deterministic, no sleeps. Idle costs nothing: with
// no delayed keys the timer blocks without a timeout, and when the clock did
// not move across a timed wait (a FakeClock nobody advanced) it waits for the
// next change or poke (at most 10 s) instead of re-arming a short timeout.
//
// Two priorities, as in controller-runtime's priority queue: keys added with
// Priority::kLow (periodic resyncs, the initial list) are handed out only when
// no normal key is ready, so a user's change is not queued behind a thousand
// resyncs. A low key added again at normal priority moves up; a normal key is
// never moved down. Delayed keys (AddAfter, AddRateLimited) come back at
// normal priority: they are a reconcile's own follow-up.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "capstan/common/clock.h"
#include "capstan/kube/rate_limiter.h"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace capstan::kube {

// A de-duplicating, delaying, rate-limited work queue. Thread-safe.
//
// Typical worker loop (WorkerPool does this for you):
//   while (std::optional<std::string> key = queue.Get()) {
//     ... reconcile *key ...; queue.Forget(*key) or queue.AddRateLimited(*key);
//     queue.Done(*key);
//   }
//
// The queue must outlive every thread that calls it.
class WorkQueue {
 public:
  enum class Priority { kNormal, kLow };

  // `name` labels the metrics ({name=<name>}) and log lines. `rate_limiter`
  // null: DefaultControllerRateLimiter(clock).
  WorkQueue(std::string name, const Clock& clock,
            std::unique_ptr<RateLimiter> rate_limiter = nullptr);
  // Shuts the queue down and stops the timer thread.
  ~WorkQueue();

  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Queues `key` unless it is already queued (then this is a no-op) or being
  // processed (then it is queued again when Done() is called). Ignored after
  // ShutDown(). A key already queued at low priority moves to normal when
  // added at normal priority.
  void Add(const std::string& key, Priority priority = Priority::kNormal);

  // Adds `key` once `delay` has passed on the clock; delay <= 0 adds now. If
  // `key` is already waiting, the earlier of the two deadlines wins. Ignored
  // after ShutDown().
  void AddAfter(const std::string& key, absl::Duration delay);

  // AddAfter(key, rate_limiter.When(key)): the next step of key's backoff.
  void AddRateLimited(const std::string& key);

  // Resets key's backoff (call it when key was processed successfully, or
  // given up on). Does not remove key from the queue.
  void Forget(const std::string& key);

  // Rate-limited re-adds of key since it was last forgotten.
  int NumRequeues(const std::string& key);

  // Blocks until a key is ready and returns it; the caller owns it until it
  // calls Done(key). After ShutDown() keys already queued are still handed
  // out; once none are left, returns nullopt (at once, for every caller).
  std::optional<std::string> Get();

  // Marks `key` (returned by Get()) as finished. If it was added meanwhile it
  // is queued again now. Done() for a key not being processed is ignored.
  void Done(const std::string& key);

  // Stops accepting keys (Add, AddAfter and AddRateLimited become no-ops,
  // delayed keys are dropped) and wakes every blocked Get(). Idempotent.
  void ShutDown();

  // ShutDown(), then waits up to `timeout` (real time) until every queued key
  // has been handed out and every handed-out key is Done(): in-flight work
  // finishes, nothing is left. Returns false on timeout. Must not be called by
  // a thread that holds a key, or with no workers and keys still queued
  // (unless a timeout bounds it).
  bool ShutDownWithDrain(absl::Duration timeout = absl::InfiniteDuration());

  bool ShuttingDown() const;

  // Keys ready to be handed out (not those waiting for a delay, nor those
  // being processed). Moves due delayed keys to the ready queue first.
  int Len();

  // Keys waiting for their delay to pass.
  int NumWaiting() const;

  // Keys handed out and not yet Done().
  int NumProcessing() const;

  // Moves every delayed key whose deadline has passed (by the clock) to the
  // ready queue and wakes waiting workers. Production never needs it (the
  // timer does it); tests call it after advancing a FakeClock.
  void Poke();

  const std::string& name() const { return name_; }
  const Clock& clock() const { return clock_; }

 private:
  void AddLocked(const std::string& key, absl::Time now, Priority priority)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Pops the next key to hand out from `from`, skipping stale entries.
  std::optional<std::string> PopLocked(std::deque<std::string>& from, bool low)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PromoteDueLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TimerLoop();

  const std::string name_;
  const Clock& clock_;
  const std::unique_ptr<RateLimiter> rate_limiter_;

  prometheus::Gauge& depth_;
  prometheus::Counter& adds_;
  prometheus::Counter& retries_;
  prometheus::Histogram& queue_duration_;
  prometheus::Histogram& work_duration_;

  mutable absl::Mutex mu_;
  // Ready keys, in order, by priority. An entry is live when its key is in
  // dirty_ with the same priority and not in processing_; a key moved up from
  // low_ leaves a stale entry there, skipped when it comes out (so a move is
  // O(1)). Each ready key has exactly one live entry.
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> low_ ABSL_GUARDED_BY(mu_);
  // Live entries in queue_ and low_: the keys ready to be handed out.
  size_t ready_ ABSL_GUARDED_BY(mu_) = 0;
  // Keys that need processing (queued, or re-added while being processed),
  // with the time they were added (for the queue-duration metric) and their
  // priority.
  struct Dirty {
    absl::Time added;
    bool low;
  };
  absl::flat_hash_map<std::string, Dirty> dirty_ ABSL_GUARDED_BY(mu_);
  // Keys handed out by Get() and not yet Done(), with the time handed out.
  absl::flat_hash_map<std::string, absl::Time> processing_ ABSL_GUARDED_BY(mu_);
  // Delayed keys by deadline (equal deadlines keep insertion order), and each
  // waiting key's entry there, so a shorter delay can replace a longer one.
  std::multimap<absl::Time, std::string> waiting_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::multimap<absl::Time, std::string>::iterator> waiting_index_
      ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  // Bumped when the timer should re-plan: a new earliest deadline, ShutDown().
  uint64_t timer_generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread timer_ ABSL_GUARDED_BY(mu_);
};

// What a reconcile asks the worker pool to do next, as in controller-runtime's
// reconcile.Result. With an OK result:
//   {}                       done: Forget(key) (its backoff starts over).
//   {.requeue_after = d > 0} Forget(key), then AddAfter(key, d): periodic
//                            work such as waiting for a rollout to progress.
//   {.requeue = true}        AddRateLimited(key) without an error.
// A non-OK status means AddRateLimited(key) (the result is not looked at);
// a TerminalError() means Forget(key) and no retry: the input can never work
// until it changes, and a change re-adds the key through the informer.
struct ReconcileResult {
  bool requeue = false;
  absl::Duration requeue_after = absl::ZeroDuration();
};

// Reconciles one key. May throw: a thrown exception counts as an error.
using ReconcileFunc = std::function<absl::StatusOr<ReconcileResult>(const std::string& key)>;

// Marks `status` (which must not be OK) as terminal: the worker pool logs it
// and does not retry. Survives RETURN_IF_ERROR (it is a Status payload).
absl::Status TerminalError(absl::Status status);
bool IsTerminalError(const absl::Status& status);

// Runs `workers` threads that take keys from `queue` and call `reconcile`,
// acting on its result as ReconcileResult describes. Exceptions are caught,
// logged and retried with backoff; a worker thread never dies of one. Records
// capstan_reconcile_total{controller,result} (result: success, requeue,
// requeue_after, error, terminal) and capstan_reconcile_duration_seconds,
// with controller = the queue's name. Thread-safe.
class WorkerPool {
 public:
  // Starts the workers at once. `queue` must outlive the pool.
  WorkerPool(WorkQueue& queue, int workers, ReconcileFunc reconcile);
  // Stop().
  ~WorkerPool();

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Shuts the queue down and waits for the workers: each finishes the key in
  // hand and the keys already queued, then exits (delayed and retried keys
  // are dropped by the shut-down queue, so this terminates). Idempotent. Must
  // not be called from inside `reconcile`.
  void Stop();

 private:
  void Work();
  void Process(const std::string& key);

  WorkQueue& queue_;
  const ReconcileFunc reconcile_;

  prometheus::Counter& success_;
  prometheus::Counter& requeue_;
  prometheus::Counter& requeue_after_;
  prometheus::Counter& error_;
  prometheus::Counter& terminal_;
  prometheus::Histogram& duration_;

  absl::Mutex mu_;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace capstan::kube
