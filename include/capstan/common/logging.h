#pragma once

// Logging set-up. Production logs are one JSON object per line; development
// logs are human text. Context goes in as key=value pairs inside the message
// (`release=ns/name rev=abc`), never secret material.

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace capstan {

enum class LogFormat { kJson, kText };

// Configures the default spdlog logger (stderr). `level` is one of
// trace, debug, info, warn, error; anything else is an InvalidArgument.
absl::Status InitLogging(absl::string_view level, LogFormat format);

}  // namespace capstan
