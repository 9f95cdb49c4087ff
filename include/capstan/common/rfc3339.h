#pragma once

// RFC 3339 times as Kubernetes writes them in status and annotations (seconds,
// UTC, "Z"). kube/micro_time.h has the microsecond form of events.k8s.io; an
// Environment's freeze message formats in the window's zone (policy/environment.h).

#include <optional>
#include <string>

#include "absl/time/time.h"

namespace capstan {

// 2026-11-26T07:00:00Z
inline std::string FormatRfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

// Any RFC 3339 time (fractions and offsets accepted); nullopt when empty or invalid.
inline std::optional<absl::Time> ParseRfc3339(const std::string& s) {
  absl::Time t;
  std::string err;
  if (s.empty() || !absl::ParseTime(absl::RFC3339_full, s, &t, &err)) return std::nullopt;
  return t;
}

}  // namespace capstan
