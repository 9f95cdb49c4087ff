#pragma once

// Status bookkeeping shared by the RollingUpdate and BlueGreen planners (private
// to the rollout layer).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "capstan/api/release.h"
#include "capstan/rollout/status.h"

namespace capstan::rollout {

// Records `revision` in status.history (newest first, at most `limit` entries:
// spec.revisionHistoryLimit, clamped to 1..100) with `phase`; an existing record moves
// to the front only when its phase changes. A longer history (the limit was lowered) is
// cut to `limit` on the next record.
void RecordHistory(api::ReleaseStatus* s, int32_t limit, const std::string& revision,
                   const std::vector<std::string>& images, api::RevisionPhase phase,
                   absl::Time now);

// A rollout of `desired` (with `images`) starts or is being started: phase Progressing
// with `message`, Reconciling=True/Progressing, the revision's history record
// Progressing. A RolloutStarted Event is appended when that is news (the Release was
// not already Progressing on `desired`).
void StartRollout(const api::Release& r, const std::string& desired,
                  const std::vector<std::string>& images, std::string message, absl::Time now,
                  api::ReleaseStatus* s, std::vector<Event>* events);

// A new token on the capstan.dev/retry annotation while `desired` is the failed
// revision: clears status.failedRevision, records the token and an Event, and
// returns the token. nullopt when there is nothing to retry or the token is old.
std::optional<std::string> ConsumeRetry(const api::Release& r, const std::string& desired,
                                        api::ReleaseStatus* s, std::vector<Event>* events);

// True when status.history records `revision` as aborted by a user.
bool WasAborted(const api::ReleaseStatus& s, const std::string& revision);

// A new token on the capstan.dev/abort annotation (recorded in status.lastAbort).
// nullopt when the annotation is absent or its token was already acted on.
std::optional<std::string> NewAbortToken(const api::Release& r, const api::ReleaseStatus& s);

}  // namespace capstan::rollout
