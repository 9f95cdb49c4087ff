#pragma once

// Rate limiters, after client-go's util/flowcontrol and util/workqueue.
//
// TokenBucket limits a stream of requests (the REST client's QPS/burst).
// RateLimiter decides how long one work-queue key waits before it is retried:
// exponential per key, an overall bucket, or the larger of several. All time
// comes from an injected Clock, so tests drive them with a FakeClock.

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "capstan/common/clock.h"

namespace capstan::kube {

// A token bucket holding up to `burst` tokens, refilled at `qps` per second.
// Starts full. Thread-safe.
//
// Implemented as a virtual "time the bucket is full again" (GCRA) in
// absl::Duration, not a floating-point token count, so the arithmetic is exact
// for the rates we use: at 10 qps a token costs exactly 100 ms, and after a
// burst of 100 the 101st caller waits exactly 100 ms, the 102nd 200 ms.
class TokenBucket {
 public:
  // `qps` <= 0 or infinite: no limit (every call gets a token at once).
  // `burst` < 1 is treated as 1.
  TokenBucket(double qps, int burst, const Clock& clock);

  TokenBucket(const TokenBucket&) = delete;
  TokenBucket& operator=(const TokenBucket&) = delete;

  // Takes one token now, going into debt if the bucket is empty, and returns
  // how long the caller must wait before acting on it (zero if a token was
  // available). Later callers queue behind the debt.
  absl::Duration Reserve();

  // Takes a token if one is available now; never goes into debt.
  bool TryTake();

  // Tokens available now; negative while in debt. For tests and metrics.
  double Tokens() const;

  double qps() const { return qps_; }
  int burst() const { return burst_; }

 private:
  const double qps_;
  const int burst_;
  const bool unlimited_;
  const absl::Duration interval_;  // the cost of one token: 1 / qps
  const absl::Duration capacity_;  // burst_ * interval_
  const Clock& clock_;

  mutable absl::Mutex mu_;
  // The time at which the bucket holds `burst_` tokens again. In the past
  // means full; `burst_ * interval_` in the future means empty; beyond that
  // is debt.
  absl::Time full_at_ ABSL_GUARDED_BY(mu_);
};

// Decides how long a work-queue key waits before its next attempt.
// Implementations are thread-safe.
class RateLimiter {
 public:
  virtual ~RateLimiter() = default;

  // How long `key` should wait now. Counts one more failure for `key`.
  virtual absl::Duration When(const std::string& key) = 0;
  // Stops tracking `key` (it succeeded, or gave up): its backoff starts over.
  virtual void Forget(const std::string& key) = 0;
  // How many times `key` has been through When() since it was last forgotten.
  virtual int NumRequeues(const std::string& key) = 0;
};

// base * 2^failures, capped at `max_delay`, per key: with the defaults
// 5 ms, 10 ms, 20 ms, ... 655.36 s, then 1000 s for ever. Thread-safe.
class ItemExponentialFailureRateLimiter final : public RateLimiter {
 public:
  ItemExponentialFailureRateLimiter(absl::Duration base_delay = absl::Milliseconds(5),
                                    absl::Duration max_delay = absl::Seconds(1000));

  absl::Duration When(const std::string& key) override;
  void Forget(const std::string& key) override;
  int NumRequeues(const std::string& key) override;

  // The delay after `failures` earlier failures: min(base * 2^failures, max),
  // saturating (never overflowing) for any `failures`; zero for failures < 0
  // or base <= 0.
  static absl::Duration Backoff(absl::Duration base, absl::Duration max, int failures);

 private:
  const absl::Duration base_delay_;
  const absl::Duration max_delay_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> failures_ ABSL_GUARDED_BY(mu_);
};

// One token bucket shared by all keys: limits the overall retry rate, so a
// burst of failures cannot hammer the API server. Thread-safe.
class BucketRateLimiter final : public RateLimiter {
 public:
  BucketRateLimiter(double qps, int burst, const Clock& clock);

  absl::Duration When(const std::string& key) override;
  void Forget(const std::string& key) override {}
  int NumRequeues(const std::string& key) override { return 0; }

 private:
  TokenBucket bucket_;
};

// The longest delay of its limiters; every limiter sees every call.
// Thread-safe if its limiters are.
class MaxOfRateLimiter final : public RateLimiter {
 public:
  explicit MaxOfRateLimiter(std::vector<std::unique_ptr<RateLimiter>> limiters);

  absl::Duration When(const std::string& key) override;
  void Forget(const std::string& key) override;
  int NumRequeues(const std::string& key) override;

 private:
  const std::vector<std::unique_ptr<RateLimiter>> limiters_;
};

// client-go's DefaultControllerRateLimiter: max(per-key exponential 5 ms ..
// 1000 s, overall bucket 10 qps / burst 100).
std::unique_ptr<RateLimiter> DefaultControllerRateLimiter(const Clock& clock);

}  // namespace capstan::kube
