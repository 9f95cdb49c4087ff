#pragma once

// Going back is not going forward: a rollback to a revision that already ran Ready in
// this Release is let through the gates that guard new changes (approval, freeze
// windows, the upstream soak), because the revision was approved, soaked and healthy
// here before, and waiting for a soak it can never get during an incident is exactly
// wrong. Health checks, the progress deadline and automatic rollback still apply: the
// revert rolls out like any change. StrategyNotAllowed is never lifted (as for
// emergencies).
//
// "Ran Ready in this Release" is read from status.history: a record of the revision in
// phase Ready or Superseded (Superseded is only ever set on a revision that was Ready).
// A revision trimmed from the history, or one that only ever failed, does not count:
// the gates hold it as any new revision (fail closed).
//
// Pure; thread-compatible.

#include <string>
#include <vector>

#include "capstan/api/release.h"
#include "capstan/policy/environment.h"

namespace capstan::policy {

struct RevertDecision {
  bool lifted = false;  // the gate's hold is lifted: roll out `desired` now
  // For status, the Event and logs: "revision R ran Ready in this Release before: a
  // rollback, so approval, freeze windows and the upstream soak do not hold it (health
  // checks still apply)".
  std::string message;
};

// The record whose desired-state digest is `digest` when it ran Ready (phase Ready or
// Superseded); null otherwise, and for an empty digest. Records are matched by digest,
// never by the short revision (two states can share one); records written before
// digests existed match nothing (fail closed).
const api::RevisionRecord* RanReady(const std::vector<api::RevisionRecord>& history,
                                    const std::string& digest);

// Whether the held `decision` about rolling `desired` out over `current` is lifted
// because `desired` is a revision that already ran Ready in this Release. Only the holds
// AwaitingApproval, FrozenUntil and AwaitingUpstream are lifted; an allowed decision, a
// StrategyNotAllowed hold, `desired == current` or an empty `desired` are left alone.
// `desired` and `current` are desired-state digests; `revision` names the desired one
// in the message.
RevertDecision RevertPastGates(const GateDecision& decision,
                               const std::vector<api::RevisionRecord>& history,
                               const std::string& desired, const std::string& current,
                               const std::string& revision = "");

}  // namespace capstan::policy
