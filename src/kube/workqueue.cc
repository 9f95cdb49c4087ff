#include "capstan/kube/workqueue.h"

#include <algorithm>
#include <exception>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "capstan/common/metrics.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "spdlog/spdlog.h"

namespace capstan::kube {

namespace {

// The longest the timer sleeps without looking at the clock: bounds how late a
// delayed key can be if the wall clock jumps (client-go's heartbeat is 10 s too).
constexpr absl::Duration kMaxTimerWait = absl::Seconds(10);

constexpr char kTerminalPayload[] = "capstan.dev/terminal-error";

prometheus::Histogram& LatencyHistogram(prometheus::Family<prometheus::Histogram>* family,
                                        const std::map<std::string, std::string>& labels) {
  return family->Add(labels, Metrics::LatencyBuckets());
}

}  // namespace

WorkQueue::WorkQueue(std::string name, const Clock& clock,
                     std::unique_ptr<RateLimiter> rate_limiter)
    : name_(std::move(name)),
      clock_(clock),
      rate_limiter_(rate_limiter != nullptr ? std::move(rate_limiter)
                                            : DefaultControllerRateLimiter(clock)),
      depth_(Metrics::Get().workqueue_depth->Add({{"name", name_}})),
      adds_(Metrics::Get().workqueue_adds->Add({{"name", name_}})),
      retries_(Metrics::Get().workqueue_retries->Add({{"name", name_}})),
      queue_duration_(LatencyHistogram(Metrics::Get().workqueue_queue_duration, {{"name", name_}})),
      work_duration_(LatencyHistogram(Metrics::Get().workqueue_work_duration, {{"name", name_}})) {}

WorkQueue::~WorkQueue() {
  ShutDown();
  std::thread timer;
  {
    absl::MutexLock lock(&mu_);
    timer = std::move(timer_);
    // Queues with the same name share the gauge: take back only our own keys.
    depth_.Decrement(static_cast<double>(ready_));
  }
  if (timer.joinable()) {
    timer.join();
  }
}

void WorkQueue::Add(const std::string& key, Priority priority) {
  absl::MutexLock lock(&mu_);
  AddLocked(key, clock_.Now(), priority);
}

void WorkQueue::AddLocked(const std::string& key, absl::Time now, Priority priority) {
  if (shutting_down_) {
    return;
  }
  const bool low = priority == Priority::kLow;
  auto [dirty, added] = dirty_.try_emplace(key, Dirty{now, low});
  if (!added) {
    // Already queued, or already marked for another pass after Done(). A low
    // key added at normal priority moves up; its entry in low_ goes stale.
    if (!low && dirty->second.low) {
      dirty->second.low = false;
      if (!processing_.contains(key)) queue_.push_back(key);
    }
    return;
  }
  adds_.Increment();
  if (processing_.contains(key)) {
    return;  // Done() queues it: one key never runs on two workers
  }
  (low ? low_ : queue_).push_back(key);
  ++ready_;
  depth_.Increment();
}

void WorkQueue::AddAfter(const std::string& key, absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  if (shutting_down_) {
    return;
  }
  const absl::Time now = clock_.Now();
  if (delay <= absl::ZeroDuration()) {
    AddLocked(key, now, Priority::kNormal);
    return;
  }
  const absl::Time ready_at = now + delay;
  std::multimap<absl::Time, std::string>::iterator entry;
  auto indexed = waiting_index_.find(key);
  if (indexed != waiting_index_.end()) {
    if (indexed->second->first <= ready_at) {
      return;  // already due sooner
    }
    waiting_.erase(indexed->second);
    entry = indexed->second = waiting_.emplace(ready_at, key);
  } else {
    entry = waiting_.emplace(ready_at, key);
    waiting_index_.emplace(key, entry);
  }
  if (entry == waiting_.begin()) {
    ++timer_generation_;  // a new earliest deadline: the timer re-plans its sleep
  }
  if (!timer_.joinable()) {
    timer_ = std::thread(&WorkQueue::TimerLoop, this);
  }
}

void WorkQueue::AddRateLimited(const std::string& key) {
  if (ShuttingDown()) {
    return;
  }
  retries_.Increment();
  AddAfter(key, rate_limiter_->When(key));
}

void WorkQueue::Forget(const std::string& key) { rate_limiter_->Forget(key); }

int WorkQueue::NumRequeues(const std::string& key) { return rate_limiter_->NumRequeues(key); }

std::optional<std::string> WorkQueue::Get() {
  absl::MutexLock lock(&mu_);
  PromoteDueLocked(clock_.Now());
  // No timeout: the timer (or a Poke) promotes delayed keys, and the Condition
  // is re-evaluated whenever anyone releases mu_, so a blocked Get costs nothing.
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return ready_ > 0 || shutting_down_; };
  mu_.Await(absl::Condition(&ready));
  if (ready_ == 0) {
    low_.clear();  // only stale entries can be left
    queue_.clear();
    return std::nullopt;  // shut down and drained
  }
  std::optional<std::string> key = PopLocked(queue_, /*low=*/false);
  if (!key.has_value()) key = PopLocked(low_, /*low=*/true);
  return key;  // ready_ > 0: one of the two held a live entry
}

std::optional<std::string> WorkQueue::PopLocked(std::deque<std::string>& from, bool low) {
  while (!from.empty()) {
    std::string key = std::move(from.front());
    from.pop_front();
    auto dirty = dirty_.find(key);
    if (dirty == dirty_.end() || dirty->second.low != low || processing_.contains(key)) {
      continue;  // stale: handed out already, or moved up to queue_
    }
    --ready_;
    depth_.Decrement();
    const absl::Time now = clock_.Now();
    queue_duration_.Observe(absl::ToDoubleSeconds(now - dirty->second.added));
    dirty_.erase(dirty);
    processing_.emplace(key, now);
    return key;
  }
  return std::nullopt;
}

void WorkQueue::Done(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto processing = processing_.find(key);
  if (processing == processing_.end()) {
    spdlog::warn("workqueue Done for a key not being processed queue={} key={}", name_, key);
    return;
  }
  work_duration_.Observe(absl::ToDoubleSeconds(clock_.Now() - processing->second));
  processing_.erase(processing);
  if (auto dirty = dirty_.find(key); dirty != dirty_.end()) {
    (dirty->second.low ? low_ : queue_).push_back(key);
    ++ready_;
    depth_.Increment();
  }
}

void WorkQueue::ShutDown() {
  absl::MutexLock lock(&mu_);
  if (shutting_down_) {
    return;
  }
  shutting_down_ = true;
  waiting_.clear();
  waiting_index_.clear();
  ++timer_generation_;
}

bool WorkQueue::ShutDownWithDrain(absl::Duration timeout) {
  ShutDown();
  absl::MutexLock lock(&mu_);
  // Stable once true: a shut-down queue accepts no keys and, with nothing in
  // flight, Done() cannot queue one again.
  auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return ready_ == 0 && processing_.empty();
  };
  return mu_.AwaitWithTimeout(absl::Condition(&drained), timeout);
}

bool WorkQueue::ShuttingDown() const {
  absl::MutexLock lock(&mu_);
  return shutting_down_;
}

int WorkQueue::Len() {
  absl::MutexLock lock(&mu_);
  PromoteDueLocked(clock_.Now());
  return static_cast<int>(ready_);
}

int WorkQueue::NumWaiting() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(waiting_.size());
}

int WorkQueue::NumProcessing() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(processing_.size());
}

void WorkQueue::Poke() {
  absl::MutexLock lock(&mu_);
  PromoteDueLocked(clock_.Now());
}

void WorkQueue::PromoteDueLocked(absl::Time now) {
  while (!waiting_.empty() && waiting_.begin()->first <= now) {
    auto first = waiting_.begin();
    std::string key = std::move(first->second);
    waiting_.erase(first);
    waiting_index_.erase(key);
    AddLocked(key, now, Priority::kNormal);
  }
}

void WorkQueue::TimerLoop() {
  absl::MutexLock lock(&mu_);
  absl::Time last_now = absl::InfinitePast();
  bool timed_out = false;
  while (!shutting_down_) {
    const absl::Time now = clock_.Now();
    // A thread entry: nothing thrown here (memory exhaustion) may end the process;
    // the keys stay waiting and the next round promotes them.
    try {
      PromoteDueLocked(now);
    } catch (const std::exception& e) {
      spdlog::error("work queue {}: timer: {}", name_, e.what());
    }
    absl::Duration sleep = absl::InfiniteDuration();
    if (!waiting_.empty()) {
      // A clock that did not move across a whole timed sleep is a FakeClock
      // nobody advanced: sleeping until the (fake) deadline again would only
      // wake us to the same time, over and over. Wait for a change (an earlier
      // deadline, shutdown) or the cap instead; tests that advance the clock
      // call Poke(). A real clock always moves, so it always takes the
      // deadline branch.
      const bool clock_stalled = timed_out && now == last_now;
      sleep =
          clock_stalled ? kMaxTimerWait : std::min(waiting_.begin()->first - now, kMaxTimerWait);
    }
    last_now = now;
    const uint64_t generation = timer_generation_;
    auto replan = [this, generation]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return shutting_down_ || timer_generation_ != generation;
    };
    timed_out = !mu_.AwaitWithTimeout(absl::Condition(&replan), sleep);
  }
}

absl::Status TerminalError(absl::Status status) {
  if (status.ok()) {
    status = absl::InternalError("terminal error without a cause");
  }
  status.SetPayload(kTerminalPayload, absl::Cord("true"));
  return status;
}

bool IsTerminalError(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kTerminalPayload).has_value();
}

WorkerPool::WorkerPool(WorkQueue& queue, int workers, ReconcileFunc reconcile)
    : queue_(queue),
      reconcile_(std::move(reconcile)),
      success_(Metrics::Get().reconcile_total->Add(
          {{"controller", queue.name()}, {"result", "success"}})),
      requeue_(Metrics::Get().reconcile_total->Add(
          {{"controller", queue.name()}, {"result", "requeue"}})),
      requeue_after_(Metrics::Get().reconcile_total->Add(
          {{"controller", queue.name()}, {"result", "requeue_after"}})),
      error_(
          Metrics::Get().reconcile_total->Add({{"controller", queue.name()}, {"result", "error"}})),
      terminal_(Metrics::Get().reconcile_total->Add(
          {{"controller", queue.name()}, {"result", "terminal"}})),
      duration_(
          LatencyHistogram(Metrics::Get().reconcile_duration, {{"controller", queue.name()}})) {
  absl::MutexLock lock(&mu_);
  for (int i = 0; i < std::max(workers, 1); ++i) {
    threads_.emplace_back(&WorkerPool::Work, this);
  }
}

WorkerPool::~WorkerPool() { Stop(); }

void WorkerPool::Stop() {
  // Held while joining, so a second Stop() returns only once the workers are gone.
  absl::MutexLock lock(&mu_);
  queue_.ShutDown();
  for (std::thread& thread : threads_) {
    thread.join();
  }
  threads_.clear();
}

void WorkerPool::Work() {
  while (std::optional<std::string> key = queue_.Get()) {
    Process(*key);
    queue_.Done(*key);
  }
}

void WorkerPool::Process(const std::string& key) {
  const absl::Time start = queue_.clock().Now();
  absl::StatusOr<ReconcileResult> result;
  // A reconciler is not supposed to throw (docs/style.md, style rule 5), but if one does,
  // the key is retried with backoff and the worker lives on.
  try {
    result = reconcile_(key);
  } catch (const std::exception& e) {
    result = absl::InternalError(absl::StrCat("reconcile threw an exception: ", e.what()));
  } catch (...) {
    result = absl::InternalError("reconcile threw a non-standard exception");
  }
  duration_.Observe(absl::ToDoubleSeconds(queue_.clock().Now() - start));

  if (!result.ok()) {
    if (IsTerminalError(result.status())) {
      queue_.Forget(key);
      terminal_.Increment();
      absl::Status shown = result.status();
      shown.ErasePayload(kTerminalPayload);  // the log line says so in words
      spdlog::error("reconcile failed, not retrying queue={} key={} error={}", queue_.name(), key,
                    shown.ToString());
    } else {
      queue_.AddRateLimited(key);
      error_.Increment();
      spdlog::error("reconcile failed, will retry queue={} key={} requeues={} error={}",
                    queue_.name(), key, queue_.NumRequeues(key), result.status().ToString());
    }
  } else if (result->requeue_after > absl::ZeroDuration()) {
    // Periodic work, not a failure: the backoff starts over.
    queue_.Forget(key);
    queue_.AddAfter(key, result->requeue_after);
    requeue_after_.Increment();
    spdlog::debug("reconcile requeued queue={} key={} after={}", queue_.name(), key,
                  absl::FormatDuration(result->requeue_after));
  } else if (result->requeue) {
    queue_.AddRateLimited(key);
    requeue_.Increment();
    spdlog::debug("reconcile requeued with backoff queue={} key={} requeues={}", queue_.name(), key,
                  queue_.NumRequeues(key));
  } else {
    queue_.Forget(key);
    success_.Increment();
  }
}

}  // namespace capstan::kube
