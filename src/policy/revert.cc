#include "capstan/policy/revert.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace capstan::policy {

const api::RevisionRecord* RanReady(const std::vector<api::RevisionRecord>& history,
                                    const std::string& digest) {
  if (digest.empty()) return nullptr;
  for (const api::RevisionRecord& r : history) {
    if (r.digest == digest &&
        (r.phase == api::RevisionPhase::kReady || r.phase == api::RevisionPhase::kSuperseded))
      return &r;
  }
  return nullptr;
}

RevertDecision RevertPastGates(const GateDecision& decision,
                               const std::vector<api::RevisionRecord>& history,
                               const std::string& desired, const std::string& current,
                               const std::string& revision) {
  RevertDecision out;
  if (decision.allowed || desired.empty() || desired == current) return out;
  if (decision.reason != GateReason::kAwaitingApproval &&
      decision.reason != GateReason::kFrozenUntil &&
      decision.reason != GateReason::kAwaitingUpstream) {
    return out;
  }
  if (RanReady(history, desired) == nullptr) return out;
  out.lifted = true;
  out.message = absl::StrCat("revision ", revision.empty() ? desired : revision,
                             " ran Ready in this Release before: a rollback, so approval, freeze "
                             "windows and the upstream soak do not hold it (health checks still "
                             "apply; held for: ",
                             decision.message, ")");
  return out;
}

}  // namespace capstan::policy
