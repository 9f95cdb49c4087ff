#pragma once

// Include this instead of spdlog/spdlog.h: it teaches fmt the abseil types we
// log (Debian's abseil has its own absl::string_view, not std::string_view).

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "spdlog/spdlog.h"

template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename Ctx>
  auto format(absl::string_view s, Ctx& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

template <>
struct fmt::formatter<absl::Status> : fmt::formatter<fmt::string_view> {
  template <typename Ctx>
  auto format(const absl::Status& s, Ctx& ctx) const {
    const std::string text = s.ToString();
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(text), ctx);
  }
};

template <>
struct fmt::formatter<absl::Duration> : fmt::formatter<fmt::string_view> {
  template <typename Ctx>
  auto format(absl::Duration d, Ctx& ctx) const {
    const std::string text = absl::FormatDuration(d);
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(text), ctx);
  }
};
