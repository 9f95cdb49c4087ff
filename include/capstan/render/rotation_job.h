#pragma once

// A SecretRotation's hook step (spec.target.hook.set / .test) as a batch/v1 Job. Pure.
//
//   Job <name> (secrets::HookJobName: <rotation>-<version>-set|test)
//     labels  app.kubernetes.io/managed-by=capstan, capstan.dev/secret-rotation=<rotation>,
//             capstan.dev/rotation-version=<version>, capstan.dev/rotation-step=set|test,
//             and the step's metadata.labels
//     ownerReference to the SecretRotation (controller=true), so it goes with it
//   its pod: the step's template plus
//     a volume capstan-pending: the Secret with `items` listing only the pending data
//       keys (.capstan-pending.<key> -> file <key>), defaultMode 0400, mounted read-only at
//       kRotationPendingDir (/var/run/capstan/pending/<key>) in every container and init
//       container: nothing else of the Secret (not the values in use)
//     env CAPSTAN_ROTATION_STEP=set|test, CAPSTAN_ROTATION_VERSION, CAPSTAN_PENDING_DIR
//   Pod labels: the template's (capstan.dev/ keys dropped) and capstan.dev/rotation-step.

#include <string>
#include <utility>
#include <vector>

#include "capstan/api/release.h"
#include "nlohmann/json.hpp"

namespace capstan::render {

inline constexpr char kLabelRotationStep[] = "capstan.dev/rotation-step";
inline constexpr char kLabelRotationVersion[] = "capstan.dev/rotation-version";
inline constexpr char kLabelSecretRotationOwner[] = "capstan.dev/secret-rotation";
inline constexpr char kRotationPendingDir[] = "/var/run/capstan/pending";
inline constexpr char kRotationPendingVolume[] = "capstan-pending";

struct RotationJobParams {
  std::string name;  // the Job's
  std::string ns;
  std::string rotation;  // the SecretRotation's name
  std::string rotation_uid;
  std::string secret;   // the managed Secret
  std::string step;     // set | test
  std::string version;  // the rotation's version id (the pending values' id)
  // (data key in the Secret, file name under kRotationPendingDir): the pending keys only.
  std::vector<std::pair<std::string, std::string>> items;
};

nlohmann::json RenderRotationJob(const RotationJobParams& p, const api::HookJobSpec& step);

}  // namespace capstan::render
