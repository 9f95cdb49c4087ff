#pragma once

// The small decisions the Release controller's shell used to make inline, as pure
// functions with table tests (tests/unit/rollout/decisions_test.cc): where traffic
// is, how many preview endpoints are ready, whether the strategy changed in place,
// how revisions are numbered and pruned, and when to look again.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "capstan/api/release.h"
#include "capstan/rollout/status.h"
#include "capstan/rollout/views.h"
#include "nlohmann/json.hpp"

namespace capstan::rollout {

// Where traffic is: the colour the live Service `<name>` selects, else the one status
// last recorded, else blue (nothing deployed yet). The selector write is the switch,
// so the Service is the truth and status follows it.
api::Color ServingColor(std::optional<api::Color> service_color, const api::ReleaseStatus& status);

// One endpoint of an EndpointSlice (as the informer projects it): ready flag and the
// name of the pod behind it.
struct EndpointView {
  bool ready = true;  // EndpointSlice: an absent ready condition means ready
  std::string pod;
};
std::vector<EndpointView> ViewEndpoints(const nlohmann::json& slice);

// Ready endpoints of the preview Service that are Ready pods of `revision` on
// `color` (the colour a promotion would send traffic to). An endpoint of an unknown
// pod, of another revision or colour, or not ready, does not count.
int32_t ReadyPreviewEndpoints(const std::vector<EndpointView>& endpoints,
                              const std::vector<PodView>& pods, const std::string& revision,
                              api::Color color);

// The Deployments the other strategy would own: `<name>-blue`/`<name>-green` for a
// RollingUpdate Release, `<name>` for a BlueGreen one. One of them still controlled by
// the Release means its strategy changed in place (the CRD forbids it; an older CRD
// may not), which Capstan refuses rather than run a half state.
std::vector<std::string> OtherStrategyDeployments(const api::Release& release);

// A ControllerRevision of a Release as the pruner sees it.
struct RevisionView {
  std::string name;
  std::string revision;  // label capstan.dev/revision ("" when missing)
  int64_t number = 0;    // .revision
};

// The number of a new revision: one more than the highest so far (1 for the first).
int64_t NextRevisionNumber(const std::vector<RevisionView>& revisions);

// The revisions to delete so that at most `limit` remain: oldest (lowest number)
// first, never one named in `keep` and never one without a revision label. May
// leave more than `limit` when the kept ones are among the oldest.
std::vector<std::string> RevisionsToPrune(std::vector<RevisionView> revisions, int32_t limit,
                                          const std::vector<std::string>& keep);

// When a RollingUpdate Release is looked at again without events: every 30 s while
// Progressing (a quiet cluster still deserves a check against the progress
// deadline); when the Environment holds it until a time (end of a freeze or soak),
// then (at least 100 ms from now), whatever the phase. Zero: only on events.
absl::Duration RollingRequeue(api::ReleasePhase phase, std::optional<absl::Time> hold_until,
                              absl::Time now);

// The same for BlueGreen: the soonest of the plan's own time (promotion delay,
// scale-down, readiness checks) and the end of a hold (at least 100 ms from now);
// while Progressing, at most 30 s.
absl::Duration BlueGreenRequeue(std::optional<absl::Duration> plan, api::ReleasePhase phase,
                                std::optional<absl::Time> hold_until, absl::Time now);

// Why the stable revision's ControllerRevision `cr` may not be rolled back to, or "":
// the TemplateDigest of its data.template must be the one status.history recorded when
// the revision ran (a record from before digests carries none and is trusted).
std::string StableTemplateProblem(const api::Release& release, const nlohmann::json& cr);

// The sooner of two times to look again, where zero (or less) means "only on events":
// `other` when set and `requeue` is zero or later, else `requeue`.
absl::Duration SoonerRequeue(absl::Duration requeue, std::optional<absl::Duration> other);

// What the planner is given of an analysis gate's verdict (controller/analysis_gate.h).
// A gate that cannot run (verdict.invalid) holds a revision that has not `started`
// (RollingUpdate: the Deployment does not run it; BlueGreen: no preview yet) with reason
// AnalysisInvalid, unless a hold is already set; otherwise the verdict is the planner's
// (`*use`), the failed one of an invalid gate under way included.
void UseAnalysis(const AnalysisVerdict& verdict, bool started, std::optional<Hold>* hold,
                 std::optional<AnalysisVerdict>* use);

}  // namespace capstan::rollout
