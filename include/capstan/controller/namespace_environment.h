#pragma once

// The Environment that governs a namespace, as the Release controller resolves it
// (ReleaseController::EnvironmentOf), for the controllers that honour its policies:
// Releases (every policy) and SecretRotations (freeze windows).

#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "capstan/api/environment.h"

namespace capstan::controller {

struct NamespaceEnvironment {
  // The Environment claiming the namespace; nullopt for none.
  std::optional<api::Environment> environment;
  // Set when none can be used and what it governs must hold (fail closed):
  // EnvironmentNotFound | EnvironmentMismatch | EnvironmentAmbiguous | EnvironmentInvalid.
  std::string hold_reason;
  std::string hold_message;
};

// Looks up the Environment of a namespace; Unavailable while that is unknown.
using EnvironmentLookup =
    std::function<absl::StatusOr<NamespaceEnvironment>(const std::string& ns)>;

}  // namespace capstan::controller
