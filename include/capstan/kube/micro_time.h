#pragma once

// Kubernetes timestamps. metav1.MicroTime (Lease acquire/renew times, Event
// eventTime and series.lastObservedTime) is RFC3339 in UTC with exactly six
// fractional digits: "2006-01-02T15:04:05.000000Z".

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace capstan::kube {

// "2006-01-02T15:04:05.000000Z" (UTC; sub-microsecond digits are dropped).
std::string FormatMicroTime(absl::Time t);

// Any RFC3339 time: MicroTime, metav1.Time ("2006-01-02T15:04:05Z"), or with an
// offset. nullopt when `s` is not one.
std::optional<absl::Time> ParseMicroTime(absl::string_view s);

}  // namespace capstan::kube
