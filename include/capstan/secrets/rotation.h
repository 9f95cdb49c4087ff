#pragma once

// The rotation state machine, as pure functions.
//
// All state of record lives in the cluster, on the managed Secret, so a
// process killed at any instruction resumes from what it reads back:
//
//   annotations  capstan.dev/rotation-state      Idle | Pending | Swapped | Restarted | Restoring
//                capstan.dev/rotation-version    id of the values in <key> (a counter)
//                capstan.dev/rotation-previous-version   id to restore on failure
//                capstan.dev/rotation-seq        last id handed out
//                capstan.dev/rotation-step-time  when the current state was entered
//                capstan.dev/rotation-last-attempt / -last-success / -last-result / -message
//                capstan.dev/rotation-trigger    last manual trigger token consumed
//                capstan.dev/previous-expires    when <key>_previous is cleared (KeepPrevious)
//   data         <key>, <key>_previous, .capstan-pending.<key>, .capstan-rollback.<key>
//
// One step per Secret write, each a merge patch with a resourceVersion
// precondition (a stale cache gets 409 and retries; two writers never both win):
//
//   Idle --due/trigger--> Pending      new values generated into .capstan-pending.<key>
//   Pending ------------> Swapped      <key> := pending; .capstan-rollback.<key> (and, for
//                                      KeepPrevious, <key>_previous) := old value
//   Swapped ------------> Restarted    consumers' pod templates stamped (before this write);
//                                      with maxConcurrentRestarts N, the first N only
//   Restarted ----------> Restarted    (staggered) the next consumers stamped as earlier
//                                      ones become healthy, each batch restarting the
//                                      health timeout (step-time)
//   Restarted --healthy-> Idle         all stamped and healthy: rollback copies dropped
//   Restarted --timeout-> Restoring    <key> := rollback copy; Failed (onFailure Restore)
//   Restoring ----------> Idle         consumers re-stamped with the restored version
//   Idle --grace over---> Idle         <key>_previous removed
//
// With spec.target.postgresql the database changes before any consumer sees a
// value, as effects the plan names (RotationPlan::db) and the controller
// performs before the step's Secret write (secrets/database.h):
//
//   Idle --due--> Pending     db: log in as the admin first (step "connect");
//                             the pending user (capstan.dev/rotation-pending-user)
//                             is recorded: the inactive one of users
//                             (AlternatingUsers) or user (SingleUser)
//   Pending ----> Swapped     db: the pending user gets the pending password (created
//                             and made a member of memberOf when missing), then logs
//                             in with it (steps "set", "test"); a login that already
//                             works means a killed process did it: not set again.
//                             Then <usernameKey> and <key> switch in one write.
//   Restarted --timeout--> Restoring   SingleUser: db: the rollback password is set
//                             back first; AlternatingUsers: the previous user's password
//                             never changed, the Secret alone switches back.
//   a db step fails (Idle/Pending) --> Idle, Failed, pending keys dropped, nothing
//                             switched (PlanDatabaseFailure); status names the step.
//
// With spec.target.hook the set and test steps are Jobs (PlanHookSteps, below):
//
//   Pending ----> Pending     the set Job, then (set Complete) the test Job, created;
//                             nothing written to the Secret while they run
//   Pending ----> Swapped     both Complete: the swap as without a target
//   a step Job Failed --> Idle, Failed, pending keys dropped, nothing switched
//                             (PlanHookFailure); status names the step.
//
// With spec.verify.analysis, healthy consumers do not finish the rotation yet: a
// sub-step of Restarted runs the AnalysisTemplates first (rotation-verify names the
// AnalysisRun, VerifyRunName: derived from the version, so a process killed before or
// after creating it finds the same run and never starts a second one):
//
//   Restarted --healthy--> Restarted + rotation-verify=<run>    (VerificationStarted)
//   Restarted + verify --Successful--> Idle                     as without verify
//   Restarted + verify --Failed, Error, Inconclusive, invalid--> Restoring (fail closed;
//                             the same restore as a health timeout: the rollback values,
//                             AlternatingUsers back to the previous user, SingleUser its
//                             previous password set in the database first), failed step
//                             "verify", the message names the run and its failed metric
//
// A generated value is written exactly once (into a pending key) and only
// ever copied afterwards, so no value is lost to a crash between steps.
// Missed schedules: due means now >= last-attempt + interval, and a rotation
// moves last-attempt to now, so an operator that was down for three intervals
// rotates once.
//
// The planner sees data key names, never values.

#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "capstan/common/rfc3339.h"
#include "capstan/secrets/secret_rotation.h"
#include "nlohmann/json.hpp"

namespace capstan::secrets {

inline constexpr char kAnnState[] = "capstan.dev/rotation-state";
inline constexpr char kAnnVersion[] = "capstan.dev/rotation-version";
inline constexpr char kAnnPreviousVersion[] = "capstan.dev/rotation-previous-version";
inline constexpr char kAnnSeq[] = "capstan.dev/rotation-seq";
inline constexpr char kAnnStepTime[] = "capstan.dev/rotation-step-time";
inline constexpr char kAnnLastAttempt[] = "capstan.dev/rotation-last-attempt";
inline constexpr char kAnnLastSuccess[] = "capstan.dev/rotation-last-success";
inline constexpr char kAnnLastResult[] = "capstan.dev/rotation-last-result";
inline constexpr char kAnnMessage[] = "capstan.dev/rotation-message";
inline constexpr char kAnnTrigger[] = "capstan.dev/rotation-trigger";
inline constexpr char kAnnPreviousExpires[] = "capstan.dev/previous-expires";
// Database targets: the user the pending password is for, the user in use and the one
// before it (names only), the database step that failed last.
inline constexpr char kAnnPendingUser[] = "capstan.dev/rotation-pending-user";
inline constexpr char kAnnUser[] = "capstan.dev/rotation-user";
inline constexpr char kAnnPreviousUser[] = "capstan.dev/rotation-previous-user";
inline constexpr char kAnnFailedStep[] = "capstan.dev/rotation-failed-step";
// spec.verify.analysis: the AnalysisRun verifying the version in use (set once every
// consumer is healthy, removed when the rotation ends).
inline constexpr char kAnnVerifyRun[] = "capstan.dev/rotation-verify";
// The AnalysisRun that verifies `version` of SecretRotation `rotation`:
// "<rotation>-v<version>-verify" (AnalysisGates::RunName's shape).
std::string VerifyRunName(const std::string& rotation, const std::string& version);
// On the SecretRotation: a manual trigger (any new token rotates once).
inline constexpr char kAnnRotate[] = "capstan.dev/rotate";
// On consumer pod templates, one annotation per rotated Secret (a Deployment
// often reads two: a JWT key and a database password, each with its own
// SecretRotation), "secret-version.capstan.dev/<secret name>", valued with a
// hash of the version id, never of a value.
inline constexpr char kAnnSecretVersionPrefix[] = "secret-version.capstan.dev/";
// The annotation key for one Secret. Names longer than an annotation name part
// (63) are cut to 46 characters plus "-" and 16 hex characters of their SHA-256.
std::string StampAnnotationKey(const std::string& secret_name);
// On managed Secrets: the SecretRotation that manages it (the informer selects on it).
inline constexpr char kLabelSecretRotation[] = "capstan.dev/secret-rotation";

enum class State { kIdle, kPending, kSwapped, kRestarted, kRestoring };
std::string StateName(State s);
// The state a managed Secret records (kAnnState; Idle when unset or unknown).
State StateOf(const std::map<std::string, std::string>& annotations);

// status.phase of a SecretRotation.
enum class Phase {
  kReady,     // the values in use are fine (a due rotation may be held)
  kRotating,  // a rotation is under way
  kFailed,    // the last rotation failed (the values in use are the ones before it)
  kStalled,   // nothing is done until the spec or the world changes (StallReason)
};
std::string PhaseName(Phase p);

// Why a SecretRotation is Stalled: its status.reason and the Warning Event's reason.
enum class StallReason {
  kInvalidSpec,  // the spec does not parse or validate
  kConflict,     // a Secret or Job this rotation would write is not its own
  kInvalidKey,   // a keyPair's private key in the Secret cannot be read
};
std::string StallReasonName(StallReason r);

struct ObservedSecret {
  bool exists = false;
  std::map<std::string, std::string> annotations;
  std::set<std::string> data_keys;  // names only
};

// The workload kinds that consume a Secret (apps/v1).
inline constexpr char kDeploymentKind[] = "Deployment";
inline constexpr char kStatefulSetKind[] = "StatefulSet";
inline constexpr char kDaemonSetKind[] = "DaemonSet";
// capstan.dev/v1alpha1: restarted through its own rollout (ViewRelease).
inline constexpr char kReleaseKind[] = "Release";

// One consumer workload as the planner needs it.
struct ConsumerView {
  std::string name;
  std::string stamped;   // its pod template's StampAnnotationKey(secret) annotation
  bool healthy = false;  // rolled out: observed, updated and available
  std::string why;       // when not healthy, e.g. "1/2 available"
  std::string kind = kDeploymentKind;
  // Will not become healthy with the values it was restarted for (a Release rolled its
  // restart revision back): the rotation restores without waiting for healthTimeout.
  bool failed = false;
};

// A workload to restart (stamp).
struct ConsumerRef {
  std::string kind;
  std::string name;
  bool operator==(const ConsumerRef&) const = default;
  std::string Label() const { return kind + " " + name; }  // "StatefulSet db"
};

// Reads a workload (as the API returns it) as a consumer of `secret_name`, its
// health as `kubectl rollout status` judges it:
//   Deployment   observedGeneration, updatedReplicas = replicas, no old replicas,
//                availableReplicas = replicas
//   StatefulSet  observedGeneration, updatedReplicas and readyReplicas = replicas
//                (less a RollingUpdate partition for updated), currentRevision =
//                updateRevision; OnDelete: healthy once observed (its pods take the
//                new template only when deleted, which Capstan never does)
//   DaemonSet    observedGeneration, updatedNumberScheduled and numberAvailable =
//                desiredNumberScheduled; OnDelete as for StatefulSets
ConsumerView ViewDeployment(const nlohmann::json& deployment, const std::string& secret_name);
ConsumerView ViewStatefulSet(const nlohmann::json& statefulset, const std::string& secret_name);
ConsumerView ViewDaemonSet(const nlohmann::json& daemonset, const std::string& secret_name);
// A Release (capstan.dev) as a consumer. Its stamp is the annotation
// StampAnnotationKey(secret) on its metadata (the Release controller copies it into the
// pod template: a revision of its own, rolled out with the Release's strategy, analysis
// and rollback). Healthy: status.secretVersions holds that stamp (the controller let the
// restart through), phase Ready, stableRevision = currentRevision, generation observed.
// Failed: the restart was let through and the Release rolled it back or aborted it
// (phase RolledBack or Aborted, or failedRevision = currentRevision).
ConsumerView ViewRelease(const nlohmann::json& release, const std::string& secret_name);
// By kind (kDeploymentKind, ...); an unknown kind is viewed as a Deployment.
ConsumerView ViewWorkload(const std::string& kind, const nlohmann::json& workload,
                          const std::string& secret_name);
// Names of the Secrets a pod template reads: env valueFrom.secretKeyRef,
// envFrom.secretRef, volumes[].secret and projected volume sources, in
// containers and initContainers. Sorted, unique.
std::vector<std::string> SecretsReferenced(const nlohmann::json& pod_template);
// The pod template annotation value for a version: a hash of
// (SecretRotation uid, version id), so a new id restarts pods and a restored
// id returns them to the previous template. Never derived from a value.
std::string VersionStamp(const std::string& rotation_uid, const std::string& version);

enum class Action {
  kNone,           // wait (requeue_after says how long)
  kCreate,         // the Secret is missing: create it with every key generated
  kFillMissing,    // keys added to spec: generate just those, no rotation
  kClearPrevious,  // the grace period is over
  kWritePending,   // a rotation starts
  kSwap,
  kRestart,  // stamp consumers, then record the state
  kComplete,
  kRestore,
  kAbort,   // a database step failed: drop pending values, switch nothing
  kVerify,  // consumers healthy: record the verification run (spec.verify.analysis)
};
std::string ActionName(Action a);

// How the Secret changes. Applied by the shell in this order: generate, copy
// (values read from the observed Secret), remove, annotations; then the keys a
// keyPair derives (public key, JWKS) follow from the result (keypair.h).
struct SecretChange {
  std::vector<std::pair<std::string, size_t>> generate;   // data key <- spec.keys[i]
  std::vector<std::pair<std::string, std::string>> copy;  // to <- from
  // data key <- a literal that is not a secret (a database user name)
  std::vector<std::pair<std::string, std::string>> set_values;
  std::vector<std::string> remove;  // data keys
  std::map<std::string, std::string> set_annotations;
  std::vector<std::string> remove_annotations;
};

struct PlanEvent {
  std::string type;  // Normal | Warning
  std::string reason;
  std::string note;  // names Secret and keys, never a value
};

// A database effect the controller performs before the step's Secret write.
struct DatabaseStep {
  enum class Kind { kNone, kCheckAdmin, kSetPassword } kind = Kind::kNone;
  std::string user;
  std::string password_key;  // the data key whose (current) value is the password
  bool create = false;       // create the role when missing
  std::string member_of;
  // Log in with it once set (false: SetPasswordBack, the restore after a failed test).
  bool test = true;
};

// Why a rotation may not start now (the shell decides it from the namespace's
// Environment: a freeze window, or an Environment that cannot be read, fail closed).
// A rotation already under way always finishes (or restores): only the start waits.
struct RotationHold {
  std::string reason;  // FrozenUntil | EnvironmentInvalid | EnvironmentUnknown | ...
  std::string message;
  std::optional<absl::Time> until;  // when it ends by itself (a freeze); nullopt: unknown
};

// spec.target.hook: one step's Job as the controller observed it.
struct HookJobView {
  std::string name;
  std::string step;     // set | test (label capstan.dev/rotation-step)
  std::string version;  // the rotation version it runs for (label capstan.dev/rotation-version)
  bool owned = true;    // its controller ownerReference is this SecretRotation
  enum class State { kRunning, kSucceeded, kFailed } state = State::kRunning;
  std::string message;  // Failed: the Job's Failed condition (reason: message)
};

// A hook step Job to create (render::RenderRotationJob renders it).
struct HookJobRun {
  std::string step;  // set | test
  std::string name;  // HookJobName
  std::string version;
  // (pending data key, file name): what the Job's Secret volume lists, nothing else.
  std::vector<std::pair<std::string, std::string>> items;
};

struct RotationPlan {
  // Which of the planner's outcomes this is: one per branch of PlanRotation, PlanHookSteps,
  // PlanHookFailure and PlanDatabaseFailure (RotationExitsTest has a row for each).
  enum class Exit {
    // The Secret is missing (RotationSituation kCreate*).
    kCreateForHook,      // created empty: the first values go through the hook Jobs
    kCreateForDatabase,  // created empty: the first password is set in PostgreSQL first
    kCreate,             // created with every key generated
    // kIdle
    kFillMissing,    // keys new to spec generated, or an adopted Secret's schedule starts
    kClearPrevious,  // KeepPrevious: the grace period is over
    kHeld,           // a rotation is due (or triggered) but the input's hold keeps it
    kStart,          // a rotation starts: pending values (and the database's admin check)
    kWaitUntilDue,   // nothing due: look again when it is
    // kPendingHook (PlanHookSteps, PlanHookFailure)
    kHookConflict,  // a step Job of that name is not ours: nothing is done
    kHookRunJob,    // the next step Job is created
    kHookRunning,   // a step Job runs
    kHookFailed,    // a step Job failed: pending keys dropped, nothing switched
    // kPending (and kPendingHook once both Jobs are Complete)
    kSwapDatabase,  // the pending user gets the password (db effect), then the Secret switches
    kSwap,          // <key> := pending
    // kSwapped
    kRestart,  // the (first) consumers stamped
    // kRestarted
    kRestartNextBatch,  // the next staggered consumers (or a reset template) stamped
    kStartVerify,       // consumers healthy: the verification run is recorded
    kVerifyRunning,     // the verification run has no verdict yet
    kComplete,          // healthy (and verified): the rotation succeeded
    kRestore,           // failed (consumers, timeout, verification), onFailure Restore
    kKeepNew,           // failed, onFailure Keep: the new values stay
    kWaitHealthy,       // consumers not healthy yet, within healthTimeout
    // kRestoring
    kRestoreConsumers,  // consumers re-stamped with the restored version
    // PlanDatabaseFailure
    kDatabaseFailed,  // a database step failed: pending keys dropped, nothing switched
  };
  Exit exit = Exit::kWaitUntilDue;
  Action action = Action::kNone;
  DatabaseStep db;
  SecretChange change;
  // Workloads whose pod template gets StampAnnotationKey(secret)=stamp_value,
  // before the Secret write (at most spec.consumers.maxConcurrentRestarts restarting
  // at once: see PlanRotation).
  std::vector<ConsumerRef> stamp;
  std::string stamp_value;
  // Consumers left unstamped for now (maxConcurrentRestarts reached).
  bool stamp_waiting = false;
  std::vector<PlanEvent> events;
  std::string result;  // "succeeded" | "failed" when a rotation ended in this step
  // Look again after this long even without events (0: only on events).
  absl::Duration requeue_after = absl::ZeroDuration();
  // A rotation was due (or triggered) and did not start because of the input's hold.
  std::optional<RotationHold> held;
  // spec.target.hook: the step Job to create now (nothing else is written in this pass).
  std::optional<HookJobRun> run_job;
  // spec.target.hook: a Job with a step's name that is not ours; nothing is done (the
  // SecretRotation goes Stalled/Conflict) until it is deleted.
  std::string conflict;
};

// The state of the verification run (spec.verify.analysis), as the shell observed it.
struct VerifyVerdict {
  // kInvalid: the run cannot be built (a template missing, an arg without value).
  enum class State { kRunning, kSuccessful, kFailed, kError, kInconclusive, kInvalid };
  State state = State::kRunning;
  std::string run;      // the AnalysisRun's name
  std::string message;  // the run's: "metric auth-errors Failed: 1 of 1 measurements failed"
};

struct RotationInput {
  const SecretRotation* rotation = nullptr;
  ObservedSecret secret;
  std::vector<ConsumerView> consumers;
  absl::Time now;
  // Database targets: the value of the Secret's username key (a name, not a secret).
  std::string db_user;
  // While waiting for consumers, how often to look again.
  absl::Duration poll = absl::Seconds(2);
  // Set: a due or triggered rotation does not start (RotationPlan::held says so).
  std::optional<RotationHold> hold;
  // spec.target.hook: this SecretRotation's step Jobs (label-selected; owned or not).
  std::vector<HookJobView> hook_jobs;
  // spec.verify.analysis while the Secret names a verification run (kAnnVerifyRun):
  // its verdict; nullopt is Running (nothing observed yet).
  std::optional<VerifyVerdict> verify;
};

// Where a rotation stands, PlanRotation's first decision (from the Secret's
// capstan.dev/rotation-state and the spec's target); each situation has its own branch in
// the planner.
enum class RotationSituation {
  kCreateForHook,      // the Secret is missing, spec.target.hook
  kCreateForDatabase,  // the Secret is missing, spec.target.postgresql
  kCreate,             // the Secret is missing
  kIdle,               // values in use; maybe due, keys to fill or previous values to clear
  kPendingHook,        // pending values written; the set and test Jobs run before the swap
  kPending,            // pending values written: swap (after the database's set step)
  kSwapped,            // the new values are in use: restart the consumers
  kRestarted,          // consumers restarting: wait for health (and verification)
  kRestoring,          // the previous values are back: re-stamp the consumers
};
RotationSituation ClassifyRotation(bool secret_exists, State state, bool hook, bool database);

// ClassifyRotation, then the situation's branch.
RotationPlan PlanRotation(const RotationInput& in);
// The step instead of PlanRotation's when its database effect failed at `step`
// (connect, set, test). Only for the Idle and Pending states (nothing switched yet).
RotationPlan PlanDatabaseFailure(const RotationInput& in, const std::string& step,
                                 const std::string& message);

// spec.target.hook (rotation_hook.cc). In Pending, after the pending values are written:
//   the set Job for this version: missing -> create it; running -> wait; Failed -> the
//   rotation fails (PlanHookFailure); Complete -> the test Job, the same way; both
//   Complete -> nullopt: PlanRotation swaps as without a target. A Job of that name not
//   owned by this SecretRotation -> RotationPlan::conflict, never adopted.
// A Job is named by rotation, version and step (HookJobName), so a process killed at any
// point finds the Job it created and waits for it instead of running it again.
inline constexpr char kHookStepSet[] = "set";
inline constexpr char kHookStepTest[] = "test";
std::optional<RotationPlan> PlanHookSteps(const RotationInput& in);
// The step instead of the swap when the `step` Job failed: pending keys dropped, Idle,
// Failed, capstan.dev/rotation-failed-step=<step>, a Warning Event; nothing switched.
RotationPlan PlanHookFailure(const RotationInput& in, const std::string& step,
                             const std::string& message);
// "<rotation>-<version>-<step>", at most 63 characters (a long rotation name is cut and
// gets 8 hex characters of its SHA-256).
std::string HookJobName(const std::string& rotation, const std::string& version,
                        const std::string& step);
// Finished step Jobs this SecretRotation owns of versions other than the latest
// (capstan.dev/rotation-seq): deleted, so the Jobs of the last rotation stay for
// debugging and no others.
std::vector<std::string> HookJobsToDelete(const RotationInput& in);

// The annotations after `change` is applied to `before`.
std::map<std::string, std::string> ApplyAnnotations(
    const std::map<std::string, std::string>& before, const SecretChange& change);

// The SecretRotation status for a Secret with these annotations (after the
// step), as JSON for the status subresource. `conditions` of the previous
// status keep their lastTransitionTime when their status did not change.
// `held`: the plan's (a rotation due but held): a Held condition (True) and the
// phase's message say why; without it there is no Held condition.
nlohmann::json ComputeStatus(const SecretRotation& sr,
                             const std::map<std::string, std::string>& annotations,
                             const std::vector<ConsumerView>& consumers, absl::Time now,
                             const nlohmann::json& previous_status,
                             const std::optional<RotationHold>& held = std::nullopt);
// A Stalled status (invalid spec, ownership conflict): nothing was changed.
nlohmann::json StalledStatus(const SecretRotation& sr, StallReason reason,
                             const std::string& message, absl::Time now,
                             const nlohmann::json& previous_status);

// status.history: the last kRotationHistoryLimit rotations that ended, newest first
// (startTime, result, version in use after it, finishTime, user, failedStep, message).
// Derived from the Secret's annotations and the previous status: an entry is added once
// the Secret is Idle with a result for an attempt not listed yet.
inline constexpr size_t kRotationHistoryLimit = 10;
nlohmann::json RotationHistory(const std::map<std::string, std::string>& annotations,
                               const nlohmann::json& previous_status);

// spec.trigger Manual: since when a rotation has been due (the Secret Idle, the interval
// or schedule passed); nullopt when none is due or the trigger is Scheduled.
std::optional<absl::Time> RotationDueSince(const SecretRotation& sr,
                                           const std::map<std::string, std::string>& annotations,
                                           absl::Time now);
// True when condition `type` is True in `status` and was not in `previous_status` (the
// moment to emit its Event once).
bool ConditionTurnedTrue(const nlohmann::json& previous_status, const nlohmann::json& status,
                         const std::string& type);

// When the next rotation is due, from the Secret's annotations.
std::optional<absl::Time> NextRotation(const SecretRotation& sr,
                                       const std::map<std::string, std::string>& annotations);

using ::capstan::FormatRfc3339;  // capstan/common/rfc3339.h
using ::capstan::ParseRfc3339;

}  // namespace capstan::secrets
