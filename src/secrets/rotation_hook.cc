// spec.target.hook: the set and test Jobs of a rotation, as pure decisions (rotation.h).

#include <openssl/sha.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "capstan/secrets/rotation.h"

namespace capstan::secrets {
namespace {

std::string Ann(const std::map<std::string, std::string>& a, const char* key) {
  auto it = a.find(key);
  return it == a.end() ? "" : it->second;
}

// The version the pending values will have (what the swap sets capstan.dev/rotation-version to).
std::string PendingVersion(const ObservedSecret& secret) {
  const std::string seq = Ann(secret.annotations, kAnnSeq);
  return seq.empty() ? "1" : seq;
}

}  // namespace

std::string HookJobName(const std::string& rotation, const std::string& version,
                        const std::string& step) {
  const std::string suffix = absl::StrCat("-", version, "-", step);
  if (rotation.size() + suffix.size() <= 63) return absl::StrCat(rotation, suffix);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(rotation.data()), rotation.size(), digest);
  // 63 = head + "-" + 8 hex + suffix.
  const size_t head = suffix.size() + 9 >= 63 ? 1 : 63 - 9 - suffix.size();
  return absl::StrCat(rotation.substr(0, head), "-",
                      absl::BytesToHexString(std::string(reinterpret_cast<const char*>(digest), 4)),
                      suffix);
}

std::optional<RotationPlan> PlanHookSteps(const RotationInput& in) {
  const SecretRotation& sr = *in.rotation;
  const std::string version = PendingVersion(in.secret);
  for (const char* step : {kHookStepSet, kHookStepTest}) {
    const std::string name = HookJobName(sr.name, version, step);
    const HookJobView* job = nullptr;
    for (const HookJobView& j : in.hook_jobs) {
      if (j.name == name) job = &j;
    }
    RotationPlan plan;
    plan.action = Action::kNone;
    plan.requeue_after = in.poll;
    if (job != nullptr && !job->owned) {
      plan.conflict = absl::StrCat("Job ", name, " (the ", step, " step of version ", version,
                                   ") exists and is not owned by this SecretRotation; Capstan "
                                   "does not adopt objects it did not create. Delete or rename it");
      plan.requeue_after = absl::Seconds(10);
      plan.exit = RotationPlan::Exit::kHookConflict;
      return plan;
    }
    if (job == nullptr) {
      HookJobRun run{.step = step, .name = name, .version = version, .items = {}};
      for (const KeySpec& k : sr.spec.keys) {
        if (in.secret.data_keys.count(PendingKey(k.name)) > 0) {
          run.items.emplace_back(PendingKey(k.name), k.name);
        }
      }
      if (run.items.empty()) {
        // A Secret volume without items would mount every key: never.
        return PlanHookFailure(in, step, "no pending values to hand to the Job");
      }
      plan.run_job = std::move(run);
      plan.exit = RotationPlan::Exit::kHookRunJob;
      return plan;
    }
    if (job->state == HookJobView::State::kRunning) {
      plan.exit = RotationPlan::Exit::kHookRunning;
      return plan;
    }
    if (job->state == HookJobView::State::kFailed) {
      return PlanHookFailure(
          in, step,
          absl::StrCat("Job ", name, " failed", job->message.empty() ? "" : ": ", job->message));
    }
  }
  return std::nullopt;
}

RotationPlan PlanHookFailure(const RotationInput& in, const std::string& step,
                             const std::string& message) {
  const SecretRotation& sr = *in.rotation;
  const std::string now_text = FormatRfc3339(in.now);
  RotationPlan plan;
  plan.action = Action::kAbort;
  plan.exit = RotationPlan::Exit::kHookFailed;
  plan.result = "failed";
  for (const std::string& dk : in.secret.data_keys) {
    if (dk.rfind(PendingKey(""), 0) == 0) plan.change.remove.push_back(dk);
  }
  plan.change.set_annotations = {{kAnnState, "Idle"},
                                 {kAnnStepTime, now_text},
                                 {kAnnLastResult, "Failed"},
                                 {kAnnFailedStep, step},
                                 {kAnnMessage, absl::StrCat("hook step ", step, ": ", message)}};
  plan.events.push_back(
      {"Warning", "RotationFailed",
       absl::StrCat("hook step ", step, " failed: ", message, "; nothing switched, Secret ",
                    sr.spec.secret_name, " keeps its current values")});
  plan.requeue_after = absl::Seconds(1);
  return plan;
}

std::vector<std::string> HookJobsToDelete(const RotationInput& in) {
  std::vector<std::string> out;
  if (!in.rotation->spec.hook || !in.secret.exists) return out;
  const std::string latest = PendingVersion(in.secret);
  for (const HookJobView& j : in.hook_jobs) {
    if (j.owned && j.version != latest && j.state != HookJobView::State::kRunning) {
      out.push_back(j.name);
    }
  }
  return out;
}

}  // namespace capstan::secrets
