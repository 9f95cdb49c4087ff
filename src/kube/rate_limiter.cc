#include "capstan/kube/rate_limiter.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

namespace capstan::kube {

namespace {

bool IsUnlimited(double qps) { return !(qps > 0) || std::isinf(qps); }

}  // namespace

TokenBucket::TokenBucket(double qps, int burst, const Clock& clock)
    : qps_(qps),
      burst_(std::max(burst, 1)),
      unlimited_(IsUnlimited(qps)),
      interval_(unlimited_ ? absl::ZeroDuration() : absl::Seconds(1.0 / qps)),
      capacity_(interval_ * burst_),
      clock_(clock),
      full_at_(absl::InfinitePast()) {}

absl::Duration TokenBucket::Reserve() {
  if (unlimited_) {
    return absl::ZeroDuration();
  }
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  // Worked example, qps 1, burst 2, at t: the bucket is full (full_at_ <= t).
  // 1st: full_at_ = t+1s, the token was there at t-1s: wait 0.
  // 2nd: full_at_ = t+2s, there at t: wait 0.
  // 3rd: full_at_ = t+3s, there at t+1s: wait 1s (the bucket is 1 token in debt).
  full_at_ = std::max(full_at_, now) + interval_;
  return std::max(full_at_ - capacity_ - now, absl::ZeroDuration());
}

bool TokenBucket::TryTake() {
  if (unlimited_) {
    return true;
  }
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  const absl::Time next = std::max(full_at_, now) + interval_;
  if (next - capacity_ > now) {
    return false;
  }
  full_at_ = next;
  return true;
}

double TokenBucket::Tokens() const {
  if (unlimited_) {
    return std::numeric_limits<double>::infinity();
  }
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  return burst_ - absl::FDivDuration(std::max(full_at_, now) - now, interval_);
}

ItemExponentialFailureRateLimiter::ItemExponentialFailureRateLimiter(absl::Duration base_delay,
                                                                     absl::Duration max_delay)
    : base_delay_(base_delay), max_delay_(max_delay) {}

absl::Duration ItemExponentialFailureRateLimiter::Backoff(absl::Duration base, absl::Duration max,
                                                          int failures) {
  if (failures < 0 || base <= absl::ZeroDuration() || max <= absl::ZeroDuration()) {
    return absl::ZeroDuration();
  }
  // Doubling stops at the cap, so the loop runs at most log2(max / base) times
  // (< 100 for any durations) however large `failures` is, and absl::Duration
  // multiplication saturates at InfiniteDuration instead of overflowing.
  absl::Duration delay = base;
  for (int i = 0; i < failures && delay < max; ++i) {
    delay *= 2;
  }
  return std::min(delay, max);
}

absl::Duration ItemExponentialFailureRateLimiter::When(const std::string& key) {
  int failures;
  {
    absl::MutexLock lock(&mu_);
    int& count = failures_[key];
    failures = count;
    if (count < std::numeric_limits<int>::max()) {
      ++count;
    }
  }
  return Backoff(base_delay_, max_delay_, failures);
}

void ItemExponentialFailureRateLimiter::Forget(const std::string& key) {
  absl::MutexLock lock(&mu_);
  failures_.erase(key);
}

int ItemExponentialFailureRateLimiter::NumRequeues(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = failures_.find(key);
  return it == failures_.end() ? 0 : it->second;
}

BucketRateLimiter::BucketRateLimiter(double qps, int burst, const Clock& clock)
    : bucket_(qps, burst, clock) {}

absl::Duration BucketRateLimiter::When(const std::string& key) { return bucket_.Reserve(); }

MaxOfRateLimiter::MaxOfRateLimiter(std::vector<std::unique_ptr<RateLimiter>> limiters)
    : limiters_(std::move(limiters)) {}

absl::Duration MaxOfRateLimiter::When(const std::string& key) {
  absl::Duration longest = absl::ZeroDuration();
  for (const auto& limiter : limiters_) {
    longest = std::max(longest, limiter->When(key));
  }
  return longest;
}

void MaxOfRateLimiter::Forget(const std::string& key) {
  for (const auto& limiter : limiters_) {
    limiter->Forget(key);
  }
}

int MaxOfRateLimiter::NumRequeues(const std::string& key) {
  int most = 0;
  for (const auto& limiter : limiters_) {
    most = std::max(most, limiter->NumRequeues(key));
  }
  return most;
}

std::unique_ptr<RateLimiter> DefaultControllerRateLimiter(const Clock& clock) {
  std::vector<std::unique_ptr<RateLimiter>> limiters;
  limiters.push_back(std::make_unique<ItemExponentialFailureRateLimiter>(absl::Milliseconds(5),
                                                                         absl::Seconds(1000)));
  limiters.push_back(std::make_unique<BucketRateLimiter>(10, 100, clock));
  return std::make_unique<MaxOfRateLimiter>(std::move(limiters));
}

}  // namespace capstan::kube
