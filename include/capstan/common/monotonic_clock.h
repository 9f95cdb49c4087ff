#pragma once

// Deadlines and durations (lease expiry, renew deadline, ages) must not move when the
// wall clock is stepped (NTP, a VM resumed): a step forward would hand a lease over
// early, a step back would keep a stale leader. MonotonicClock reads
// std::chrono::steady_clock and returns it as an absl::Time counted from the Unix
// epoch: only differences between its readings mean anything, never the dates.

#include <chrono>

#include "absl/time/time.h"
#include "capstan/common/clock.h"

namespace capstan {

// Thread-safe.
class MonotonicClock final : public Clock {
 public:
  absl::Time Now() const override {
    return absl::UnixEpoch() +
           absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
  }
  static const MonotonicClock& Get() {
    static const MonotonicClock* clock = new MonotonicClock();
    return *clock;
  }
};

}  // namespace capstan
