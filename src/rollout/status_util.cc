#include "status_util.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace capstan::rollout {
void RecordHistory(api::ReleaseStatus* s, int32_t limit, const std::string& revision,
                   const std::vector<std::string>& images, api::RevisionPhase phase,
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

void StartRollout(const api::Release& r, const std::string& desired,
                  const std::vector<std::string>& images, std::string message, absl::Time now,
                  api::ReleaseStatus* s, std::vector<Event>* events) {
  s->phase = api::ReleasePhase::kProgressing;
  s->message = std::move(message);
  MarkReconciling(s, r.metadata.generation, now, Reason::kProgressing, Reason::kProgressing,
                  s->message);
  RecordHistory(s, r.spec.revision_history_limit, desired, images, api::RevisionPhase::kProgressing,
                now);
  if (r.status.current_revision != desired || r.status.phase != api::ReleasePhase::kProgressing) {
    events->push_back({"Normal", "RolloutStarted", "Rollout", s->message});
  }
}

bool WasAborted(const api::ReleaseStatus& s, const std::string& revision) {
  for (const api::RevisionRecord& r : s.history) {
    if (r.revision == revision) return r.phase == api::RevisionPhase::kAborted;
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
