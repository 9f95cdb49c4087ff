#pragma once

// spec.hooks -> the batch/v1 Job of one hook for one revision. Pure.
//
//   Job <job_name> (rollout::HookJobName: <release>-<revision>-pre|post|rollback)
//     labels  app.kubernetes.io/managed-by=capstan, capstan.dev/release=<name>,
//             capstan.dev/revision=<revision>, capstan.dev/hook=<preRollout|...>,
//             and the hook's metadata.labels
//     ownerReference to the Release (controller=true), so it goes with the Release
//   its pods carry the template's labels and capstan.dev/hook, never capstan.dev/release
//   or capstan.dev/revision: the rollout reads the Release's pods by those labels, and a
//   hook's pod is none of them (a failing migration is not a crash-looping revision).

#include <map>
#include <string>
#include <vector>

#include "capstan/api/release.h"
#include "nlohmann/json.hpp"

namespace capstan::render {

inline constexpr char kLabelHook[] = "capstan.dev/hook";

// `hook_type` is the spec's field name (preRollout, postRollout, onRollback).
nlohmann::json RenderHookJob(const api::Release& release, const api::HookJobSpec& hook,
                             const std::string& job_name, const std::string& hook_type,
                             const std::string& revision);

// The Job's spec for one Job step (a Release hook, a SecretRotation hook step): the pod
// template with restartPolicy Never unless set, reserved (capstan.dev/) pod labels
// dropped and `pod_labels` added, backoffLimit and activeDeadlineSeconds.
nlohmann::json RenderJobSpec(const api::HookJobSpec& hook,
                             const std::map<std::string, std::string>& pod_labels);

// Every hook Job spec.hooks asks for, as the controller creates them for `revision`
// (`capstan render` passes the current template's): <release>-<revision>-pre, -post,
// -rollback (the names rollout::HookJobName gives), in that order; none without hooks.
// The controller runs onRollback for the revision rolled back *from*, postRollout once
// it is Ready; rendered here for `revision` so each can be read before it ever runs.
std::vector<nlohmann::json> RenderHookJobs(const api::Release& release,
                                           const std::string& revision);

// spec.hooks as the identity DesiredStateDigest includes (each hook's Job without the
// per-revision name and labels), or null when the Release has no hooks (so the digest
// of a Release without hooks is what it always was).
nlohmann::json HooksIdentity(const api::Release& release);

}  // namespace capstan::render
