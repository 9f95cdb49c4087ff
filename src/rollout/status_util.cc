#include "status_util.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace capstan::rollout {
void RecordHistory(api::ReleaseStatus* s, int32_t limit, const std::string& revision,
                   const std::vector<std::string>& images, const std::string& phase,
                   absl::Time now) {
  auto it = std::find_if(s->history.begin(), s->history.end(),
                         [&](const api::RevisionRecord& r) { return r.revision == revision; });
  if (it != s->history.end()) {
    if (it->phase == phase) return;
    api::RevisionRecord rec = *it;
    s->history.erase(it);
    rec.phase = phase;
    rec.time = now;
    if (!images.empty()) rec.images = images;
    s->history.insert(s->history.begin(), std::move(rec));
  } else {
    s->history.insert(s->history.begin(), api::RevisionRecord{revision, images, phase, now});
  }
  const size_t keep = static_cast<size_t>(std::clamp<int32_t>(limit, 1, 100));
  if (s->history.size() > keep) s->history.resize(keep);
}

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

void MarkReconciling(api::ReleaseStatus* s, int64_t generation, absl::Time now,
                     const std::string& ready_reason, const std::string& reason,
                     const std::string& message) {
  SetConditions(s, generation, now, false, ready_reason, true, false, reason, message);
}

void MarkStalled(api::ReleaseStatus* s, int64_t generation, absl::Time now,
                 const std::string& ready_reason, const std::string& reason,
                 const std::string& message) {
  SetConditions(s, generation, now, false, ready_reason, false, true, reason, message);
}

std::optional<std::string> ConsumeRetry(const api::Release& r, const std::string& desired,
                                        api::ReleaseStatus* s, std::vector<Event>* events) {
  auto ann = r.metadata.annotations.find(kRetryAnnotation);
  if (s->failed_revision.empty() || ann == r.metadata.annotations.end() || ann->second.empty() ||
      ann->second == s->last_retry) {
    return std::nullopt;
  }
  s->last_retry = ann->second;
  s->failed_revision.clear();
  events->push_back({"Normal", "RetryRequested", "Retry",
                     absl::StrCat("retrying failed revision ", desired, " (", kRetryAnnotation, "=",
                                  ann->second, ")")});
  return ann->second;
}

bool ApplyHold(const api::Release& r, const Hold& hold, int64_t generation, absl::Time now,
               api::ReleaseStatus* s) {
  s->phase = "Waiting";
  s->message = hold.message;
  MarkReconciling(s, generation, now, hold.reason, hold.reason, hold.message);
  return r.status.phase != "Waiting" || r.status.message != hold.message;
}

void StartRollout(const api::Release& r, const std::string& desired,
                  const std::vector<std::string>& images, std::string message, absl::Time now,
                  api::ReleaseStatus* s, std::vector<Event>* events) {
  s->phase = "Progressing";
  s->message = std::move(message);
  MarkReconciling(s, r.metadata.generation, now, "Progressing", "Progressing", s->message);
  RecordHistory(s, r.spec.revision_history_limit, desired, images, "Progressing", now);
  if (r.status.current_revision != desired || r.status.phase != "Progressing") {
    events->push_back({"Normal", "RolloutStarted", "Rollout", s->message});
  }
}

bool WasAborted(const api::ReleaseStatus& s, const std::string& revision) {
  for (const api::RevisionRecord& r : s.history) {
    if (r.revision == revision) return r.phase == "Aborted";
  }
  return false;
}

std::optional<std::string> NewAbortToken(const api::Release& r, const api::ReleaseStatus& s) {
  auto ann = r.metadata.annotations.find(kAbortAnnotation);
  if (ann == r.metadata.annotations.end() || ann->second.empty() || ann->second == s.last_abort) {
    return std::nullopt;
  }
  return ann->second;
}

}  // namespace capstan::rollout
