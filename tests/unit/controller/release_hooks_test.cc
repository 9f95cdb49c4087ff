// spec.hooks through whole reconciles of ReleaseController against the in-memory API
// server (the real informers list and watch it): the ordered writes of each pass.

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "capstan/api/release.h"
#include "capstan/common/clock.h"
#include "capstan/controller/release_controller.h"
#include "capstan/render/render.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "unit/controller/controller_test_support.h"

namespace capstan::controller {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::Json;
using ::testing::Not;
using testing::NsPath;

constexpr char kCore[] = "/api/v1";
constexpr char kApps[] = "/apis/apps/v1";
constexpr char kBatch[] = "/apis/batch/v1";
constexpr char kCapstan[] = "/apis/capstan.dev/v1alpha1";
constexpr char kKey[] = "shop/web";
constexpr char kUid[] = "uid-release-web";

Json HookJob(const std::string& image) {
  return {{"backoffLimit", 0},
          {"template", {{"spec", {{"containers", {{{"name", "hook"}, {"image", image}}}}}}}}};
}

// A RollingUpdate Release with the given hooks (keys of spec.hooks).
Json WithHooks(const std::string& image, const std::vector<std::string>& hooks) {
  Json r = {
      {"apiVersion", "capstan.dev/v1alpha1"},
      {"kind", "Release"},
      {"metadata", {{"name", "web"}, {"namespace", "shop"}, {"uid", kUid}, {"generation", 1}}},
      {"spec",
       {{"replicas", 2},
        {"template", {{"spec", {{"containers", {{{"name", "web"}, {"image", image}}}}}}}},
        {"service", {{"ports", {{{"name", "http"}, {"port", 80}}}}}}}}};
  for (const std::string& h : hooks) r["spec"]["hooks"][h] = HookJob("migrate:1");
  return r;
}

std::string RevisionOf(const Json& release) {
  absl::StatusOr<api::Release> r = api::ParseRelease(release);
  EXPECT_TRUE(r.ok()) << r.status();
  return render::RenderPodTemplate(*r).revision;
}

class ReleaseHooksTest : public ::testing::Test {
 protected:
  ~ReleaseHooksTest() override {
    if (controller_ != nullptr) controller_->Stop();
  }

  void Start() {
    controller_ = std::make_unique<ReleaseController>(
        *client_, ReleaseController::Options{},
        [this](const kube::Object&, const rollout::Event& e) {
          absl::MutexLock lock(&mu_);
          events_.push_back(absl::StrCat(e.type, " ", e.reason));
        },
        clock_);
    controller_->StartCaches();
    testing::WaitForCaches(server_, *controller_);
  }

  std::vector<std::string> Reconcile() {
    testing::WaitForCaches(server_, *controller_);
    server_.ClearWrites();
    {
      absl::MutexLock lock(&mu_);
      events_.clear();
    }
    absl::StatusOr<kube::ReconcileResult> r = controller_->Reconcile(kKey);
    EXPECT_TRUE(r.ok()) << r.status();
    return server_.WriteLines();
  }

  std::vector<std::string> Events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }

  void PutRelease(const Json& release) {
    const std::string path = NsPath(kCapstan, "shop", "releases", "web");
    Json obj = release;
    if (std::optional<Json> live = server_.Get(path); live.has_value()) {
      if (live->contains("status")) obj["status"] = (*live)["status"];
      const int64_t gen = live->value("/metadata/generation"_json_pointer, int64_t{1});
      obj["metadata"]["generation"] = obj["spec"] == (*live)["spec"] ? gen : gen + 1;
    }
    server_.Put(path, std::move(obj));
  }

  Json Release() { return *server_.Get(NsPath(kCapstan, "shop", "releases", "web")); }
  std::string Phase() { return Release().value("/status/phase"_json_pointer, std::string()); }
  std::string Message() { return Release().value("/status/message"_json_pointer, std::string()); }
  std::string Condition(const std::string& type) {
    for (const Json& c : Release().value("/status/conditions"_json_pointer, Json::array())) {
      if (c.value("type", "") == type) {
        return absl::StrCat(c.value("status", ""), "/", c.value("reason", ""));
      }
    }
    return "";
  }
  std::optional<Json> Deployment() {
    return server_.Get(NsPath(kApps, "shop", "deployments", "web"));
  }

  // The Job controller's part: Job `name` finished with `type` (Complete or Failed) now.
  void FinishJob(const std::string& name, const std::string& type) {
    const std::string now =
        absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", clock_.Now(), absl::UTCTimeZone());
    const std::string path = NsPath(kBatch, "shop", "jobs", name);
    std::optional<Json> job = server_.Get(path);
    ASSERT_TRUE(job.has_value()) << name;
    (*job)["status"] = {{"conditions",
                         {{{"type", type},
                           {"status", "True"},
                           {"reason", type == "Failed" ? "BackoffLimitExceeded" : ""},
                           {"lastTransitionTime", now}}}}};
    if (type == "Complete") (*job)["status"]["completionTime"] = now;
    server_.Put(path, *job);
  }

  void RollOut(const std::string& name) {
    const std::string path = NsPath(kApps, "shop", "deployments", name);
    std::optional<Json> d = server_.Get(path);
    ASSERT_TRUE(d.has_value()) << name;
    const int32_t replicas = d->value("/spec/replicas"_json_pointer, 1);
    const std::string revision =
        d->value("/spec/template/metadata/labels/capstan.dev~1revision"_json_pointer, "");
    (*d)["status"] = {{"observedGeneration", (*d)["metadata"]["generation"]},
                      {"replicas", replicas},
                      {"updatedReplicas", replicas},
                      {"readyReplicas", replicas},
                      {"availableReplicas", replicas}};
    server_.Put(path, *d);
    for (int i = 0; i < replicas; ++i) {
      PutPod(absl::StrCat(name, "-", revision, "-", i), revision, true);
    }
  }

  void PutPod(const std::string& name, const std::string& revision, bool ready,
              const std::string& waiting = "") {
    Json cs = {{"name", "web"}, {"ready", ready}, {"restartCount", waiting.empty() ? 0 : 6}};
    if (!waiting.empty()) cs["state"]["waiting"]["reason"] = waiting;
    server_.Put(
        NsPath(kCore, "shop", "pods", name),
        {{"apiVersion", "v1"},
         {"kind", "Pod"},
         {"metadata",
          {{"name", name},
           {"namespace", "shop"},
           {"labels", {{"capstan.dev/release", "web"}, {"capstan.dev/revision", revision}}}}},
         {"status",
          {{"phase", "Running"},
           {"conditions",
            {{{"type", "Ready"},
              {"status", ready ? "True" : "False"},
              {"lastTransitionTime", "2023-11-14T22:13:20Z"}}}},
           {"containerStatuses", {cs}}}}});
  }

  // `release` (with a preRollout hook) rolled out and Ready on its revision.
  void Converged(const Json& release) {
    PutRelease(release);
    Start();
    Reconcile();
    if (release.contains("/spec/hooks/preRollout"_json_pointer)) {
      FinishJob(absl::StrCat("web-", RevisionOf(release), "-pre"), "Complete");
      Reconcile();
    }
    RollOut("web");
    Reconcile();
    ASSERT_EQ(Phase(), "Ready");
  }

  testing::InMemoryApiServer server_;
  std::unique_ptr<kube::Client> client_ = server_.NewClient();
  FakeClock clock_;
  absl::Mutex mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<ReleaseController> controller_;
};

TEST_F(ReleaseHooksTest, PreRolloutCompletesBeforeTheDeploymentIsWritten) {
  const Json rel = WithHooks("nginx:1", {"preRollout"});
  const std::string rev = RevisionOf(rel);
  PutRelease(rel);
  Start();
  EXPECT_THAT(Reconcile(), ElementsAre(absl::StrCat("create jobs shop/web-", rev, "-pre"),
                                       "apply releases shop/web/status"));
  EXPECT_EQ(Phase(), "Waiting");
  EXPECT_EQ(Condition("Reconciling"), "True/PreRolloutHook");
  EXPECT_THAT(Events(), ElementsAre("Normal HookStarted", "Normal Waiting"));
  EXPECT_FALSE(Deployment().has_value()) << "no pod of the revision before the hook completed";
  const Json job = *server_.Get(NsPath(kBatch, "shop", "jobs", absl::StrCat("web-", rev, "-pre")));
  EXPECT_EQ(job.value("/metadata/ownerReferences/0/uid"_json_pointer, ""), kUid);
  EXPECT_EQ(job.value("/metadata/ownerReferences/0/controller"_json_pointer, false), true);
  EXPECT_EQ(job.value("/metadata/labels/capstan.dev~1hook"_json_pointer, ""), "preRollout");
  EXPECT_EQ(job.value("/spec/template/spec/restartPolicy"_json_pointer, ""), "Never");
  EXPECT_FALSE(job.contains("/spec/template/metadata/labels/capstan.dev~1release"_json_pointer))
      << "a hook's pod is not a pod of the revision";

  // Running: held, nothing written, never created twice.
  EXPECT_THAT(Reconcile(), IsEmpty());

  FinishJob(absl::StrCat("web-", rev, "-pre"), "Complete");
  EXPECT_THAT(Reconcile(), ElementsAre(absl::StrCat("create controllerrevisions shop/web-", rev),
                                       "apply deployments shop/web", "apply services shop/web",
                                       "apply releases shop/web/status"));
  EXPECT_EQ(Phase(), "Progressing");
}

TEST_F(ReleaseHooksTest, PreRolloutFailureFailsTheRevisionAndLeavesTheRunningOne) {
  Converged(WithHooks("nginx:1", {"preRollout"}));
  const Json deployment = *Deployment();
  const Json next = WithHooks("nginx:2", {"preRollout"});
  const std::string rev = RevisionOf(next);
  PutRelease(next);
  EXPECT_THAT(Reconcile(), ElementsAre(absl::StrCat("create jobs shop/web-", rev, "-pre"),
                                       "apply releases shop/web/status"));
  FinishJob(absl::StrCat("web-", rev, "-pre"), "Failed");
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
  EXPECT_EQ(Phase(), "Degraded");
  EXPECT_EQ(Condition("Stalled"), "True/HookFailed");
  EXPECT_EQ(Condition("Ready"), "False/HookFailed");
  EXPECT_THAT(Message(), HasSubstr(absl::StrCat("Job web-", rev, "-pre failed")));
  EXPECT_THAT(Events(), ElementsAre("Warning HookFailed"));
  EXPECT_EQ(*Deployment(), deployment);
  // Terminal until the spec changes (or the Job is deleted to run it again), also when
  // time moves on.
  clock_.Advance(absl::Minutes(1));
  EXPECT_THAT(Reconcile(), IsEmpty());
  EXPECT_THAT(Events(), IsEmpty());
}

TEST_F(ReleaseHooksTest, AJobLeftByAKilledPredecessorIsNeverCreatedAgain) {
  const Json rel = WithHooks("nginx:1", {"preRollout"});
  const std::string name = absl::StrCat("web-", RevisionOf(rel), "-pre");
  PutRelease(rel);
  Start();
  Reconcile();
  controller_->Stop();
  controller_.reset();
  // A new process: same Job, no second one; the status it has not written yet is.
  server_.Put(NsPath(kCapstan, "shop", "releases", "web"), rel);
  Start();
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
  EXPECT_EQ(Condition("Reconciling"), "True/PreRolloutHook");
  EXPECT_TRUE(server_.Get(NsPath(kBatch, "shop", "jobs", name)).has_value());
}

TEST_F(ReleaseHooksTest, AJobCapstanDoesNotOwnIsNeverAdoptedAndHoldsTheRevision) {
  const Json rel = WithHooks("nginx:1", {"preRollout"});
  const std::string name = absl::StrCat("web-", RevisionOf(rel), "-pre");
  server_.Put(NsPath(kBatch, "shop", "jobs", name),
              {{"apiVersion", "batch/v1"},
               {"kind", "Job"},
               {"metadata", {{"name", name}, {"namespace", "shop"}}},
               {"spec", {{"template", Json::object()}}}});
  const Json foreign = *server_.Get(NsPath(kBatch, "shop", "jobs", name));
  PutRelease(rel);
  Start();
  const std::vector<std::string> writes = Reconcile();
  EXPECT_THAT(writes, Contains("apply releases shop/web/status"));
  EXPECT_THAT(writes, Not(Contains("apply deployments shop/web")));
  EXPECT_EQ(Condition("Stalled"), "True/HookFailed");
  EXPECT_THAT(Message(), HasSubstr("not owned by this Release"));
  EXPECT_EQ(*server_.Get(NsPath(kBatch, "shop", "jobs", name)), foreign);
  EXPECT_FALSE(Deployment().has_value());
}

TEST_F(ReleaseHooksTest, PostRolloutRunsOnceTheRevisionIsReady) {
  const Json rel = WithHooks("nginx:1", {"postRollout"});
  const std::string rev = RevisionOf(rel);
  PutRelease(rel);
  Start();
  EXPECT_THAT(Reconcile(), ElementsAre(absl::StrCat("create controllerrevisions shop/web-", rev),
                                       "apply deployments shop/web", "apply services shop/web",
                                       "apply releases shop/web/status"));
  RollOut("web");
  // Ready is recorded first, then the Job starts.
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status",
                                       absl::StrCat("create jobs shop/web-", rev, "-post")));
  EXPECT_EQ(Phase(), "Ready");
  EXPECT_EQ(Condition("HooksSucceeded"), "True/Succeeded");
  EXPECT_THAT(Reconcile(), IsEmpty());

  // A failed postRollout is reported (the revision already serves; no rollback).
  FinishJob(absl::StrCat("web-", rev, "-post"), "Failed");
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
  EXPECT_EQ(Phase(), "Ready");
  EXPECT_EQ(Condition("HooksSucceeded"), "False/HookFailed");
  EXPECT_THAT(Events(), ElementsAre("Warning HookFailed"));
  EXPECT_THAT(Reconcile(), IsEmpty());
}

TEST_F(ReleaseHooksTest, OnRollbackRunsForTheRevisionRolledBackFrom) {
  Converged(WithHooks("nginx:1", {"onRollback"}));
  const Json next = WithHooks("nginx:2", {"onRollback"});
  const std::string rev = RevisionOf(next);
  PutRelease(next);
  Reconcile();
  PutPod(absl::StrCat("web-", rev, "-0"), rev, false, "CrashLoopBackOff");
  EXPECT_THAT(Reconcile(),
              ElementsAre("apply deployments shop/web", "apply releases shop/web/status",
                          absl::StrCat("create jobs shop/web-", rev, "-rollback")));
  EXPECT_EQ(Phase(), "RolledBack");
  EXPECT_THAT(Reconcile(), IsEmpty());
}

TEST_F(ReleaseHooksTest, FinishedJobsPastTheirRetentionAreDeletedButTheNewest) {
  Json rel = WithHooks("nginx:1", {"preRollout"});
  rel["spec"]["hooks"]["retentionSeconds"] = 60;
  const std::string rev1 = RevisionOf(rel);
  Converged(rel);
  Json next = WithHooks("nginx:2", {"preRollout"});
  next["spec"]["hooks"]["retentionSeconds"] = 60;
  const std::string rev2 = RevisionOf(next);
  clock_.Advance(absl::Seconds(10));
  PutRelease(next);
  Reconcile();
  FinishJob(absl::StrCat("web-", rev2, "-pre"), "Complete");
  Reconcile();
  RollOut("web");
  // Two minutes on: rev1's Job is past its 60 s retention; rev2's is the newest of its
  // hook (and the running revision's).
  clock_.Advance(absl::Minutes(2));
  const std::vector<std::string> writes = Reconcile();
  EXPECT_THAT(writes, Contains(absl::StrCat("delete jobs shop/web-", rev1, "-pre")));
  EXPECT_THAT(writes, Not(Contains(absl::StrCat("delete jobs shop/web-", rev2, "-pre"))));
}

}  // namespace
}  // namespace capstan::controller
