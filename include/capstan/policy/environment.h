#pragma once

// Environment policy as pure functions (no I/O, no clock: `now` is an argument).
//
//   ResolveEnvironment   which Environment a Release belongs to
//   ApplyEnvironment     the Environment's defaults merged into a Release spec
//   ActiveFreeze         is `now` inside a freeze window, and until when
//   Decide               may the desired revision roll out now?
//
// The Release reconciler calls them in this order (docs/design.md, "Environment"):
//   env  = ResolveEnvironment(envs, release.spec.environment, namespace)   // or Stalled
//   ApplyEnvironment(*env, &release)                                       // before render
//   gate = Decide(*env, {desired, current, approvals, emergency, upstream, now})
//   if (!gate.allowed) keep the running revision, report gate.reason/message,
//                      requeue at gate.requeue_at
//
// Thread-compatible; every function is deterministic.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "capstan/api/environment.h"
#include "capstan/api/release.h"

namespace capstan::policy {

// Metadata annotation on a Release marking an emergency release; its value is the reason
// (shown in status and events). Honoured only where the Environment has
// policies.allowEmergency. It skips approval, freeze windows and the upstream soak; it
// never skips health checks, the progress deadline or automatic rollback.
inline constexpr char kEmergencyAnnotation[] = "capstan.dev/emergency";
// Who set kEmergencyAnnotation: written by admission (charts/capstan/templates/
// release-policy.yaml: only policies.breakGlassGroups may set the emergency annotation,
// and this one must be the requesting user). An emergency without it is not honoured.
inline constexpr char kEmergencyByAnnotation[] = "capstan.dev/emergency-by";
// The author of the Release's spec as it is now: written by admission on every create
// or spec change (the same policy). Four-eyes does not count this user's approval.
inline constexpr char kChangedByAnnotation[] = "capstan.dev/changed-by";

// ---------------------------------------------------------------------------
// Membership.

struct NamespaceInfo {
  std::string name;
  std::map<std::string, std::string> labels;
};

struct Membership {
  // The Environment the Release belongs to; null for none (no defaults, no policies).
  const api::Environment* environment = nullptr;
  // Set when the Release must not proceed (the reconciler goes Stalled with `reason`).
  // Reasons: EnvironmentNotFound, EnvironmentMismatch, EnvironmentAmbiguous.
  std::string reason;
  std::string message;

  bool ok() const { return reason.empty(); }
};

// True when `env` claims the namespace: listed by name, or matched by namespaceSelector.
bool Claims(const api::Environment& env, const NamespaceInfo& ns);

// Which Environment a Release in `ns` with spec.environment = `requested` belongs to.
//  - The Environment is the one claiming the namespace (by name or selector).
//  - spec.environment, when set, must name that Environment: it is an assertion, not a
//    choice. A Release in a production namespace that says `environment: dev` would
//    otherwise escape production's approval and freezes. Mismatch or an Environment that
//    does not exist -> EnvironmentMismatch / EnvironmentNotFound.
//  - Two Environments claiming one namespace -> EnvironmentAmbiguous (fail closed:
//    neither set of policies is silently picked).
//  - No Environment claims the namespace and none is requested -> no Environment.
Membership ResolveEnvironment(const std::vector<api::Environment>& envs,
                              const std::string& requested, const NamespaceInfo& ns);

// ---------------------------------------------------------------------------
// Defaults.

// Merges env.spec.defaults into release->spec, the Release winning everywhere:
//  - env: appended to every container (containers, not initContainers) unless the
//    container already has a variable of that name; the Environment's order is kept.
//  - envFrom: appended to every container unless an identical entry is there.
//  - labels / annotations: added to the pod template unless the key is present.
//  - resources: per container, only when the container has no requests and no limits
//    of its own. Nothing is half-merged: a default request on top of a container's own
//    smaller limit would make the pod invalid.
//  - replicas: when the Release had neither replicas nor autoscaling.
//  - policies.analysis: ApplyEnvironmentAnalysis.
// Deterministic (same inputs -> byte-identical template), so the revision hash is stable;
// idempotent (applying twice changes nothing more).
void ApplyEnvironment(const api::Environment& env, api::Release* release);

// The Environment's required analysis merged into the Release's gates: its templates are
// added (once) to every gate the Release has: RollingUpdate's analysis; BlueGreen's pre-
// and post-promotion analysis. A Release with no gate gets it as rollingUpdate.analysis
// or, for BlueGreen, as prePromotionAnalysis (judged before traffic moves, so a failure
// never touches the active Service). Args the Release gives win; bakeSeconds is the
// larger. The pod template is untouched, so the revision does not change.
void ApplyEnvironmentAnalysis(const api::AnalysisGateSpec& add, api::ReleaseSpec* spec);

// ---------------------------------------------------------------------------
// Freeze windows.

struct FreezeHit {
  std::string window;     // name of the window that holds `now`
  std::string time_zone;  // its zone, for the message
  // When changes may flow again: the end of the window, extended through windows that
  // overlap or touch it.
  absl::Time until;
};

// The freeze `now` is in, or nullopt. Windows with an unknown time zone or bad times are
// skipped (ValidateEnvironment reports them; the reconciler does not use an invalid
// Environment).
std::optional<FreezeHit> ActiveFreeze(const std::vector<api::FreezeWindow>& windows,
                                      absl::Time now);

// RFC 3339 with the zone's offset: 2026-11-26T08:00:00+01:00 ("Z" for UTC).
std::string FormatInZone(absl::Time t, const std::string& time_zone);

// ---------------------------------------------------------------------------
// The gate.

struct Approval {
  std::string name;         // the ReleaseApproval object
  std::string revision;     // revision approved (for people)
  std::string digest;       // desired-state digest approved
  std::string release_uid;  // the Release approved (metadata.uid)
  std::string approved_by;  // set by admission from the requesting user
};

// "Revision R of some Release in the upstream Environment has been Ready since T"
// (Environment status.releases of the upstream).
struct UpstreamObservation {
  std::string environment;
  std::string release;          // namespace/name, for messages
  std::string source_revision;  // hash of the template without Environment defaults
  std::optional<absl::Time> ready_since;
  // render::TemplateDigest of that template ("" when the upstream did not publish one).
  std::string source_digest;
};

struct GateInput {
  // Revision that would roll out: hash of the template with the Environment applied.
  // Approvals name this one (it is what runs).
  std::string desired_revision;
  // Hash of the template as written, without Environment defaults: the same in every
  // environment, so it is what the upstream must have run.
  std::string source_revision;
  // render::TemplateDigest of the template as written: what the soak compares (with an
  // empty one, the short source revision is compared, for callers without digests).
  std::string source_digest;
  std::string current_revision;  // running now ("" before the first rollout)
  // The identities compared: render::DesiredStateDigest of the spec, and of the state
  // last let through (status.appliedDigest). A change is desired_digest !=
  // current_digest; the revisions above are names for messages. (Only when both
  // digests are empty are the revisions compared, for callers without a state.)
  std::string desired_digest;
  std::string current_digest;
  // The same two digests with the restart annotations taken out of the pod template
  // (policy/restart.h; status.appliedBaseDigest). Equal and non-empty while the full
  // digests differ: the change is only a restart (a SecretRotation's), so approval and
  // the upstream soak do not apply; freeze windows, allowedStrategies and image pinning
  // do. From digests only: no field a tenant sets can claim a restart.
  std::string desired_base_digest;
  std::string current_base_digest;
  std::string release_uid;  // approvals bind to it
  // capstan.dev/changed-by: who wrote the spec as it is ("" when not recorded).
  std::string author;
  // capstan.dev/emergency-by: who set the emergency annotation ("" when not recorded).
  std::string emergency_by;
  api::StrategyType strategy = api::StrategyType::kRollingUpdate;
  // The images of the desired pod template (PodImages in capstan/policy/images.h).
  std::vector<std::string> images;
  std::vector<Approval> approvals;  // ReleaseApprovals for this Release (any revision)
  // Value of the capstan.dev/emergency annotation; nullopt when absent or empty.
  std::optional<std::string> emergency;
  std::vector<UpstreamObservation> upstream;
  absl::Time now;
};

enum class GateReason {
  kAllowed,              // nothing holds the change
  kNoChange,             // desired == current: nothing to gate
  kEmergency,            // allowed, approvals/freeze/upstream skipped
  kStrategyNotAllowed,   // never lifted, not even for emergencies
  kImageDigestRequired,  // requireImageDigest and an image without a digest; never lifted
  kAwaitingUpstream,
  kAwaitingApproval,
  kFrozenUntil,
};
// "Allowed", "NoChange", "Emergency", "StrategyNotAllowed", "ImageDigestRequired",
// "AwaitingUpstream", "AwaitingApproval", "FrozenUntil" (condition reasons).
const char* GateReasonName(GateReason reason);

struct GateDecision {
  bool allowed = true;
  GateReason reason = GateReason::kAllowed;
  // For people. When held, every outstanding requirement, most fundamental first, e.g.
  // "revision 5f2c... awaits 1 approval; frozen until 2026-11-26T08:00:00+01:00 (window
  // weekdays-evening, Europe/Berlin)".
  std::string message;
  // When the decision may change by itself (end of a freeze or of a soak); nullopt when
  // only a new object (approval, upstream readiness) can change it.
  std::optional<absl::Time> requeue_at;
  // Distinct approvers of desired_revision, sorted (recorded in status and events).
  std::vector<std::string> approved_by;
};

// Whether `in.desired_revision` may start rolling out now in `env`.
// Held reasons, most fundamental first (the reason reported is the first that holds):
//   StrategyNotAllowed  the Release's strategy is not in allowedStrategies
//   ImageDigestRequired policies.requireImageDigest and an image of the template is
//                       not image@sha256:<digest> (the message names them)
//   AwaitingUpstream    the source revision has not been Ready in the upstream
//                       Environment for soakSeconds
//   AwaitingApproval    fewer than minApprovals distinct approvers of desired_digest for
//                       this release_uid (with fourEyes, the author not counted, and an
//                       unrecorded author holds)
//   FrozenUntil         now is inside a freeze window
// An emergency (annotation set, allowEmergency true) skips the last three, never the first
// two. Rolling back to
// the stable revision is never gated: the gate is asked only about rolling forward.
GateDecision Decide(const api::Environment& env, const GateInput& in);

}  // namespace capstan::policy
