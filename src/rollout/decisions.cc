#include "capstan/rollout/decisions.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "capstan/render/render.h"

namespace capstan::rollout {

using nlohmann::json;

api::Color ServingColor(std::optional<api::Color> service_color, const api::ReleaseStatus& status) {
  return service_color.value_or(status.active_color.value_or(api::Color::kBlue));
}

std::vector<EndpointView> ViewEndpoints(const json& slice) {
  std::vector<EndpointView> out;
  auto eps = slice.find("endpoints");
  if (eps == slice.end() || !eps->is_array()) return out;
  for (const json& ep : *eps) {
    if (!ep.is_object()) continue;
    EndpointView v;
    static const json::json_pointer kReady("/conditions/ready");
    static const json::json_pointer kPod("/targetRef/name");
    v.ready = !ep.contains(kReady) || ep.at(kReady) == true;
    if (ep.contains(kPod) && ep.at(kPod).is_string()) v.pod = ep.at(kPod).get<std::string>();
    out.push_back(std::move(v));
  }
  return out;
}

int32_t ReadyPreviewEndpoints(const std::vector<EndpointView>& endpoints,
                              const std::vector<PodView>& pods, const std::string& revision,
                              api::Color color) {
  const std::string color_name = api::ColorName(color);
  int32_t ready = 0;
  for (const EndpointView& ep : endpoints) {
    if (!ep.ready) continue;
    auto pod = std::find_if(pods.begin(), pods.end(),
                            [&](const PodView& p) { return p.name == ep.pod && !p.color.empty(); });
    if (pod != pods.end() && pod->revision == revision && pod->color == color_name && pod->ready) {
      ++ready;
    }
  }
  return ready;
}

std::vector<std::string> OtherStrategyDeployments(const api::Release& release) {
  if (release.spec.strategy.type == api::StrategyType::kBlueGreen) {
    return {release.metadata.name};
  }
  return {render::DeploymentName(release, api::Color::kBlue),
          render::DeploymentName(release, api::Color::kGreen)};
}

int64_t NextRevisionNumber(const std::vector<RevisionView>& revisions) {
  int64_t highest = 0;
  for (const RevisionView& r : revisions) highest = std::max(highest, r.number);
  return highest + 1;
}

std::vector<std::string> RevisionsToPrune(std::vector<RevisionView> revisions, int32_t limit,
                                          const std::vector<std::string>& keep) {
  std::vector<std::string> out;
  if (static_cast<int32_t>(revisions.size()) <= limit) return out;
  std::sort(revisions.begin(), revisions.end(),
            [](const RevisionView& a, const RevisionView& b) { return a.number < b.number; });
  int32_t excess = static_cast<int32_t>(revisions.size()) - limit;
  for (const RevisionView& r : revisions) {
    if (excess <= 0) break;
    if (r.revision.empty() || std::find(keep.begin(), keep.end(), r.revision) != keep.end()) {
      continue;
    }
    out.push_back(r.name);
    --excess;
  }
  return out;
}

absl::Duration RollingRequeue(api::ReleasePhase phase, std::optional<absl::Time> hold_until,
                              absl::Time now) {
  absl::Duration d = absl::ZeroDuration();
  if (phase == api::ReleasePhase::kProgressing) d = absl::Seconds(30);
  if (hold_until.has_value()) d = std::max(*hold_until - now, absl::Milliseconds(100));
  return d;
}

std::string StableTemplateProblem(const api::Release& rel, const json& cr) {
  for (const api::RevisionRecord& rec : rel.status.history) {
    if (rec.revision != rel.status.stable_revision) continue;
    if (rec.template_digest.empty()) return "";
    const std::string got = render::TemplateDigest(cr.at("/data/template"_json_pointer));
    if (got == rec.template_digest) return "";
    return absl::StrCat("ControllerRevision ", rel.metadata.name, "-", rec.revision,
                        " no longer holds the template recorded for revision ", rec.revision, " (",
                        rec.template_digest, ", found ", got,
                        "); it was changed, so Capstan does not roll back to it. Nothing was "
                        "changed.");
  }
  return "";
}

absl::Duration SoonerRequeue(absl::Duration requeue, std::optional<absl::Duration> other) {
  if (other.has_value() && (requeue <= absl::ZeroDuration() || *other < requeue)) return *other;
  return requeue;
}

void UseAnalysis(const AnalysisVerdict& verdict, bool started, std::optional<Hold>* hold,
                 std::optional<AnalysisVerdict>* use) {
  if (verdict.invalid && !started) {
    if (!hold->has_value()) *hold = Hold{"AnalysisInvalid", verdict.message};
    return;
  }
  *use = verdict;
}

absl::Duration BlueGreenRequeue(std::optional<absl::Duration> plan, api::ReleasePhase phase,
                                std::optional<absl::Time> hold_until, absl::Time now) {
  absl::Duration d = plan.value_or(absl::ZeroDuration());
  if (hold_until.has_value()) {
    d = SoonerRequeue(d, std::max(*hold_until - now, absl::Milliseconds(100)));
  }
  if (phase == api::ReleasePhase::kProgressing &&
      (d <= absl::ZeroDuration() || d > absl::Seconds(30))) {
    d = absl::Seconds(30);
  }
  return d;
}

}  // namespace capstan::rollout
