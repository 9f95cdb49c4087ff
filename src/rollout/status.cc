#include "capstan/rollout/status.h"

#include <string>
#include <utility>
#include <vector>

namespace capstan::rollout {

using api::Condition;
using api::ReleaseStatus;

const char* ReasonName(Reason reason) {
  switch (reason) {
    case Reason::kReady:
      return "Ready";
    case Reason::kProgressing:
      return "Progressing";
    case Reason::kPreviewing:
      return "Previewing";
    case Reason::kPrePromotionAnalysis:
      return "PrePromotionAnalysis";
    case Reason::kAwaitingPromotion:
      return "AwaitingPromotion";
    case Reason::kAnalysisInconclusive:
      return "AnalysisInconclusive";
    case Reason::kRevisionFailed:
      return "RevisionFailed";
    case Reason::kRolledBack:
      return "RolledBack";
    case Reason::kAborted:
      return "Aborted";
    case Reason::kHookFailed:
      return "HookFailed";
  }
  return "";
}

void SetCondition(std::vector<Condition>* conditions, Condition c, absl::Time now) {
  for (Condition& existing : *conditions) {
    if (existing.type != c.type) continue;
    c.last_transition_time = existing.status == c.status ? existing.last_transition_time : now;
    existing = std::move(c);
    return;
  }
  c.last_transition_time = now;
  conditions->push_back(std::move(c));
}

const Condition* FindCondition(const std::vector<Condition>& conditions, const std::string& type) {
  for (const Condition& c : conditions) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

bool StatusEqual(const ReleaseStatus& a, const ReleaseStatus& b) { return a == b; }

namespace {

// The Release's kstatus conditions in one place.
void SetConditions(api::ReleaseStatus* s, int64_t generation, absl::Time now, bool ready,
                   const std::string& ready_reason, bool reconciling, bool stalled,
                   const std::string& reason, const std::string& message) {
  SetCondition(
      &s->conditions,
      api::Condition{"Ready", ready ? "True" : "False", ready_reason, message, now, generation},
      now);
  SetCondition(&s->conditions,
               api::Condition{"Reconciling", reconciling ? "True" : "False",
                              reconciling ? reason : ready_reason, reconciling ? message : "", now,
                              generation},
               now);
  SetCondition(
      &s->conditions,
      api::Condition{"Stalled", stalled ? "True" : "False", stalled ? reason : ready_reason,
                     stalled ? message : "", now, generation},
      now);
}

}  // namespace

void MarkReady(api::ReleaseStatus* s, int64_t generation, absl::Time now,
               const std::string& message) {
  SetConditions(s, generation, now, true, "Ready", false, false, "Ready", message);
}

void MarkReconciling(api::ReleaseStatus* s, int64_t generation, absl::Time now, Reason ready_reason,
                     Reason reason, const std::string& message) {
  SetConditions(s, generation, now, false, ReasonName(ready_reason), true, false,
                ReasonName(reason), message);
}

void MarkStalled(api::ReleaseStatus* s, int64_t generation, absl::Time now, Reason ready_reason,
                 Reason reason, const std::string& message) {
  SetConditions(s, generation, now, false, ReasonName(ready_reason), false, true,
                ReasonName(reason), message);
}

void MarkStalled(api::ReleaseStatus* s, int64_t generation, absl::Time now,
                 const std::string& reason, const std::string& message) {
  SetConditions(s, generation, now, false, reason, false, true, reason, message);
}

bool ApplyHold(const api::Release& r, const Hold& hold, int64_t generation, absl::Time now,
               api::ReleaseStatus* s) {
  s->phase = api::ReleasePhase::kWaiting;
  s->message = hold.message;
  SetConditions(s, generation, now, false, hold.reason, true, false, hold.reason, hold.message);
  return r.status.phase != api::ReleasePhase::kWaiting || r.status.message != hold.message;
}

}  // namespace capstan::rollout
