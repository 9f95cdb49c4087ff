#include "capstan/kube/rate_limiter.h"

#include <atomic>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "capstan/common/clock.h"
#include "gtest/gtest.h"

namespace capstan::kube {
namespace {

using absl::Milliseconds;
using absl::Seconds;

TEST(ItemExponentialFailureRateLimiterTest, BackoffTable) {
  const absl::Duration base = Milliseconds(5);
  const absl::Duration cap = Seconds(1000);
  struct Case {
    int failures;
    absl::Duration want;
  };
  const Case cases[] = {
      {0, Milliseconds(5)},
      {1, Milliseconds(10)},
      {2, Milliseconds(20)},
      {3, Milliseconds(40)},
      {4, Milliseconds(80)},
      {10, Milliseconds(5120)},    // 5 ms * 1024
      {17, Milliseconds(655360)},  // 5 ms * 131072: the last step under the cap
      {18, cap},                   // 1310.72 s > 1000 s
      {19, cap},
      {31, cap},
      {62, cap},  // 5 ms * 2^62 overflows int64 nanoseconds
      {63, cap},
      {64, cap},
      {1000, cap},
      {std::numeric_limits<int>::max(), cap},
      {-1, absl::ZeroDuration()},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("failures=", c.failures));
    EXPECT_EQ(ItemExponentialFailureRateLimiter::Backoff(base, cap, c.failures), c.want);
  }
}

TEST(ItemExponentialFailureRateLimiterTest, BackoffEdgeCases) {
  struct Case {
    const char* name;
    absl::Duration base;
    absl::Duration max;
    int failures;
    absl::Duration want;
  };
  const Case cases[] = {
      {"zero base", absl::ZeroDuration(), Seconds(1), 3, absl::ZeroDuration()},
      {"negative base", Milliseconds(-5), Seconds(1), 3, absl::ZeroDuration()},
      {"zero cap", Milliseconds(5), absl::ZeroDuration(), 3, absl::ZeroDuration()},
      {"base above cap", Seconds(5), Seconds(1), 0, Seconds(1)},
      {"base equals cap", Seconds(1), Seconds(1), 40, Seconds(1)},
      // With no cap, doubling saturates at InfiniteDuration rather than wrapping.
      {"uncapped saturates", absl::Nanoseconds(1), absl::InfiniteDuration(),
       std::numeric_limits<int>::max(), absl::InfiniteDuration()},
      {"uncapped exact", absl::Nanoseconds(1), absl::InfiniteDuration(), 40,
       absl::Nanoseconds(int64_t{1} << 40)},
      {"large base, large count", absl::Hours(1'000'000), absl::Hours(2'000'000'000), 100,
       absl::Hours(2'000'000'000)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(ItemExponentialFailureRateLimiter::Backoff(c.base, c.max, c.failures), c.want);
  }
}

TEST(ItemExponentialFailureRateLimiterTest, CountsPerKeyAndForgets) {
  ItemExponentialFailureRateLimiter limiter;  // 5 ms .. 1000 s
  EXPECT_EQ(limiter.NumRequeues("ns/a"), 0);
  EXPECT_EQ(limiter.When("ns/a"), Milliseconds(5));
  EXPECT_EQ(limiter.When("ns/a"), Milliseconds(10));
  EXPECT_EQ(limiter.When("ns/b"), Milliseconds(5));  // keys are independent
  EXPECT_EQ(limiter.When("ns/a"), Milliseconds(20));
  EXPECT_EQ(limiter.NumRequeues("ns/a"), 3);
  EXPECT_EQ(limiter.NumRequeues("ns/b"), 1);

  limiter.Forget("ns/a");
  EXPECT_EQ(limiter.NumRequeues("ns/a"), 0);
  EXPECT_EQ(limiter.When("ns/a"), Milliseconds(5));
  EXPECT_EQ(limiter.NumRequeues("ns/b"), 1);
}

TEST(ItemExponentialFailureRateLimiterTest, ReachesCapAndStaysThere) {
  ItemExponentialFailureRateLimiter limiter(Milliseconds(5), Seconds(1000));
  absl::Duration last;
  for (int i = 0; i < 200; ++i) {
    last = limiter.When("ns/a");
    ASSERT_LE(last, Seconds(1000));
  }
  EXPECT_EQ(last, Seconds(1000));
  EXPECT_EQ(limiter.NumRequeues("ns/a"), 200);
}

TEST(TokenBucketTest, BurstThenRate) {
  FakeClock clock;
  TokenBucket bucket(/*qps=*/1, /*burst=*/3, clock);
  EXPECT_DOUBLE_EQ(bucket.Tokens(), 3);
  EXPECT_TRUE(bucket.TryTake());
  EXPECT_TRUE(bucket.TryTake());
  EXPECT_TRUE(bucket.TryTake());
  EXPECT_FALSE(bucket.TryTake());  // empty; TryTake never borrows
  EXPECT_DOUBLE_EQ(bucket.Tokens(), 0);

  clock.Advance(Milliseconds(999));
  EXPECT_FALSE(bucket.TryTake());
  clock.Advance(Milliseconds(1));
  EXPECT_TRUE(bucket.TryTake());  // one token per second
  EXPECT_FALSE(bucket.TryTake());

  clock.Advance(absl::Hours(1));  // refills, but never beyond the burst
  EXPECT_DOUBLE_EQ(bucket.Tokens(), 3);
  EXPECT_TRUE(bucket.TryTake());
  EXPECT_TRUE(bucket.TryTake());
  EXPECT_TRUE(bucket.TryTake());
  EXPECT_FALSE(bucket.TryTake());
}

TEST(TokenBucketTest, ReserveGoesIntoDebt) {
  FakeClock clock;
  TokenBucket bucket(/*qps=*/10, /*burst=*/2, clock);
  EXPECT_EQ(bucket.Reserve(), absl::ZeroDuration());
  EXPECT_EQ(bucket.Reserve(), absl::ZeroDuration());
  EXPECT_EQ(bucket.Reserve(), Milliseconds(100));
  EXPECT_EQ(bucket.Reserve(), Milliseconds(200));
  EXPECT_DOUBLE_EQ(bucket.Tokens(), -2);
  EXPECT_FALSE(bucket.TryTake());  // the debt is paid first

  // 100 ms later one token of debt is paid back; the next caller still queues
  // behind the other: 400 ms of tokens reserved, 200 ms of them were the burst.
  clock.Advance(Milliseconds(100));
  EXPECT_EQ(bucket.Reserve(), Milliseconds(200));

  // At 400 ms, 2 + 4 tokens have existed and 5 were taken: one is left.
  clock.Advance(Milliseconds(300));
  EXPECT_DOUBLE_EQ(bucket.Tokens(), 1);
  EXPECT_EQ(bucket.Reserve(), absl::ZeroDuration());
  EXPECT_EQ(bucket.Reserve(), Milliseconds(100));
  clock.Advance(Seconds(10));
  EXPECT_DOUBLE_EQ(bucket.Tokens(), 2);
}

TEST(TokenBucketTest, RestClientDefaultsTwentyQpsBurstThirty) {
  FakeClock clock;
  TokenBucket bucket(/*qps=*/20, /*burst=*/30, clock);
  for (int i = 0; i < 30; ++i) {
    ASSERT_EQ(bucket.Reserve(), absl::ZeroDuration()) << i;
  }
  for (int i = 1; i <= 5; ++i) {
    EXPECT_EQ(bucket.Reserve(), Milliseconds(50) * i);
  }
}

TEST(TokenBucketTest, UnlimitedWhenQpsNotPositiveOrInfinite) {
  FakeClock clock;
  for (double qps : {0.0, -1.0, std::numeric_limits<double>::infinity()}) {
    SCOPED_TRACE(qps);
    TokenBucket bucket(qps, 1, clock);
    for (int i = 0; i < 1000; ++i) {
      ASSERT_TRUE(bucket.TryTake());
      ASSERT_EQ(bucket.Reserve(), absl::ZeroDuration());
    }
  }
}

TEST(TokenBucketTest, BurstBelowOneMeansOne) {
  FakeClock clock;
  TokenBucket bucket(/*qps=*/1, /*burst=*/0, clock);
  EXPECT_EQ(bucket.burst(), 1);
  EXPECT_TRUE(bucket.TryTake());
  EXPECT_FALSE(bucket.TryTake());
}

TEST(TokenBucketTest, ConcurrentTakersGetExactlyTheBurst) {
  FakeClock clock;  // never advanced: no refill
  TokenBucket bucket(/*qps=*/1, /*burst=*/500, clock);
  std::atomic<int> taken{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        if (bucket.TryTake()) {
          taken.fetch_add(1);
        }
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  EXPECT_EQ(taken.load(), 500);
}

TEST(BucketRateLimiterTest, SharedAcrossKeys) {
  FakeClock clock;
  BucketRateLimiter limiter(/*qps=*/10, /*burst=*/100, clock);
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(limiter.When(absl::StrCat("ns/", i)), absl::ZeroDuration());
  }
  EXPECT_EQ(limiter.When("ns/x"), Milliseconds(100));
  EXPECT_EQ(limiter.When("ns/y"), Milliseconds(200));
  EXPECT_EQ(limiter.NumRequeues("ns/x"), 0);
  limiter.Forget("ns/x");  // no per-key state: nothing changes
  EXPECT_EQ(limiter.When("ns/x"), Milliseconds(300));
}

TEST(MaxOfRateLimiterTest, DefaultControllerRateLimiter) {
  FakeClock clock;
  std::unique_ptr<RateLimiter> limiter = DefaultControllerRateLimiter(clock);

  // Per-key backoff dominates while the bucket has tokens.
  EXPECT_EQ(limiter->When("ns/a"), Milliseconds(5));
  EXPECT_EQ(limiter->When("ns/a"), Milliseconds(10));
  EXPECT_EQ(limiter->When("ns/a"), Milliseconds(20));
  EXPECT_EQ(limiter->NumRequeues("ns/a"), 3);
  limiter->Forget("ns/a");
  EXPECT_EQ(limiter->NumRequeues("ns/a"), 0);
  EXPECT_EQ(limiter->When("ns/a"), Milliseconds(5));

  // 4 tokens used; 96 more first failures empty the bucket (10 qps, burst 100),
  // after which the bucket dominates a fresh key's 5 ms.
  for (int i = 0; i < 96; ++i) {
    ASSERT_EQ(limiter->When(absl::StrCat("ns/k", i)), Milliseconds(5));
  }
  EXPECT_EQ(limiter->When("ns/fresh"), Milliseconds(100));
  EXPECT_EQ(limiter->When("ns/fresh2"), Milliseconds(200));
}

TEST(MaxOfRateLimiterTest, EveryLimiterSeesEveryCall) {
  std::vector<std::unique_ptr<RateLimiter>> limiters;
  limiters.push_back(
      std::make_unique<ItemExponentialFailureRateLimiter>(Milliseconds(1), Seconds(1)));
  limiters.push_back(
      std::make_unique<ItemExponentialFailureRateLimiter>(Milliseconds(3), Milliseconds(10)));
  MaxOfRateLimiter limiter(std::move(limiters));
  EXPECT_EQ(limiter.When("k"), Milliseconds(3));   // max(1, 3)
  EXPECT_EQ(limiter.When("k"), Milliseconds(6));   // max(2, 6)
  EXPECT_EQ(limiter.When("k"), Milliseconds(10));  // max(4, 12 -> cap 10)
  EXPECT_EQ(limiter.When("k"), Milliseconds(10));  // max(8, 10)
  EXPECT_EQ(limiter.When("k"), Milliseconds(16));  // max(16, 10)
  EXPECT_EQ(limiter.NumRequeues("k"), 5);
  limiter.Forget("k");
  EXPECT_EQ(limiter.NumRequeues("k"), 0);
  EXPECT_EQ(limiter.When("k"), Milliseconds(3));
}

}  // namespace
}  // namespace capstan::kube
