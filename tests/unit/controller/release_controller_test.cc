// ReleaseController driven through whole reconciles against the in-memory API server
// (the real informers list and watch it). Each test sets up an observed state, runs
// one reconcile and asserts the ordered list of writes it made, as
// kube-controller-manager's deployment_controller_test does with its fake client.

#include "capstan/controller/release_controller.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "capstan/api/release.h"
#include "capstan/common/clock.h"
#include "capstan/render/render.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "unit/controller/controller_test_support.h"

namespace capstan::controller {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using testing::Json;
using ::testing::Not;
using testing::NsPath;

constexpr char kCore[] = "/api/v1";
constexpr char kApps[] = "/apis/apps/v1";
constexpr char kCapstan[] = "/apis/capstan.dev/v1alpha1";
constexpr char kDiscovery[] = "/apis/discovery.k8s.io/v1";
constexpr char kKey[] = "shop/web";
constexpr char kUid[] = "uid-release-web";

Json RollingRelease(const std::string& image = "nginx:1") {
  return Json{
      {"apiVersion", "capstan.dev/v1alpha1"},
      {"kind", "Release"},
      {"metadata", {{"name", "web"}, {"namespace", "shop"}, {"uid", kUid}, {"generation", 1}}},
      {"spec",
       {{"replicas", 2},
        {"template", {{"spec", {{"containers", {{{"name", "web"}, {"image", image}}}}}}}},
        {"service", {{"ports", {{{"name", "http"}, {"port", 80}}}}}},
        {"strategy", {{"type", "RollingUpdate"}}}}}};
}

Json BlueGreenRelease(const std::string& image = "nginx:1") {
  Json r = RollingRelease(image);
  r["spec"]["strategy"] = {
      {"type", "BlueGreen"},
      {"blueGreen",
       {{"autoPromote", true}, {"promotionDelaySeconds", 0}, {"scaleDownDelaySeconds", 600}}}};
  return r;
}

// The revision (template hash) Capstan gives `release`'s template.
std::string RevisionOf(const Json& release) {
  absl::StatusOr<api::Release> r = api::ParseRelease(release);
  EXPECT_TRUE(r.ok()) << r.status();
  return render::RenderPodTemplate(*r).revision;
}

// The desired-state digest Capstan gives `release` (no Environment defaults).
std::string DigestOf(const Json& release) {
  absl::StatusOr<api::Release> r = api::ParseRelease(release);
  EXPECT_TRUE(r.ok()) << r.status();
  return render::DesiredStateDigest(*r);
}

// `release` as written by `author` (admission's capstan.dev/changed-by).
Json By(Json release, const std::string& author = "dave") {
  release["metadata"]["annotations"]["capstan.dev/changed-by"] = author;
  return release;
}

// Two templates with one 40-bit revision (a birthday search over the annotation
// value, 6 s on one core: /tmp-free reproduction in render_test.cc's comment).
Json Colliding(const std::string& image, const std::string& v) {
  Json r = By(RollingRelease(image));
  r["spec"]["template"]["metadata"]["annotations"]["v"] = v;
  return r;
}

Json Approval(const std::string& name, const Json& release, const std::string& by,
              const std::string& uid = kUid) {
  return {{"apiVersion", "capstan.dev/v1alpha1"},
          {"kind", "ReleaseApproval"},
          {"metadata", {{"name", name}, {"namespace", "shop"}}},
          {"spec",
           {{"release", "web"},
            {"revision", RevisionOf(release)},
            {"digest", DigestOf(release)},
            {"releaseUID", uid},
            {"approvedBy", by}}}};
}

class ReleaseControllerTest : public ::testing::Test {
 protected:
  ~ReleaseControllerTest() override {
    if (controller_ != nullptr) controller_->Stop();
  }

  void Start() {
    ReleaseController::Options o;
    controller_ = std::make_unique<ReleaseController>(
        *client_, o,
        [this](const kube::Object&, const rollout::Event& e) {
          absl::MutexLock lock(&mu_);
          events_.push_back(absl::StrCat(e.type, " ", e.reason));
        },
        clock_);
    controller_->StartCaches();
    testing::WaitForCaches(server_, *controller_);
  }

  // One reconcile of shop/web from what the server holds now; its writes, in order.
  std::vector<std::string> Reconcile() {
    testing::WaitForCaches(server_, *controller_);
    server_.ClearWrites();
    {
      absl::MutexLock lock(&mu_);
      events_.clear();
    }
    absl::StatusOr<kube::ReconcileResult> r = controller_->Reconcile(kKey);
    EXPECT_TRUE(r.ok()) << r.status();
    if (r.ok()) last_requeue_ = r->requeue_after;
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
      // Keep what the controller wrote (status) and what the API server keeps (uid).
      if (live->contains("status")) obj["status"] = (*live)["status"];
      const int64_t gen = live->value("/metadata/generation"_json_pointer, int64_t{1});
      obj["metadata"]["generation"] = obj["spec"] == (*live)["spec"] ? gen : gen + 1;
    }
    server_.Put(path, std::move(obj));
  }

  Json Release() { return *server_.Get(NsPath(kCapstan, "shop", "releases", "web")); }
  std::string Phase() { return Release().value("/status/phase"_json_pointer, std::string()); }
  std::string Condition(const std::string& type) {
    for (const Json& c : Release().value("/status/conditions"_json_pointer, Json::array())) {
      if (c.value("type", "") == type) {
        return absl::StrCat(c.value("status", ""), "/", c.value("reason", ""));
      }
    }
    return "";
  }

  // The deployment controller's part: Deployment `name` fully rolled out, and its
  // pods (of the revision it runs), Ready.
  void RollOut(const std::string& name, const std::string& color = "") {
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
      PutPod(absl::StrCat(name, "-", revision, "-", i), revision, color, true);
    }
  }

  void PutPod(const std::string& name, const std::string& revision, const std::string& color,
              bool ready, const std::string& waiting = "") {
    Json labels = {{"capstan.dev/release", "web"}, {"capstan.dev/revision", revision}};
    if (!color.empty()) labels["capstan.dev/color"] = color;
    Json cs = {{"name", "web"}, {"ready", ready}, {"restartCount", waiting.empty() ? 0 : 6}};
    if (!waiting.empty()) cs["state"]["waiting"]["reason"] = waiting;
    server_.Put(NsPath(kCore, "shop", "pods", name),
                {{"apiVersion", "v1"},
                 {"kind", "Pod"},
                 {"metadata", {{"name", name}, {"namespace", "shop"}, {"labels", labels}}},
                 {"status",
                  {{"phase", "Running"},
                   {"conditions",
                    {{{"type", "Ready"},
                      {"status", ready ? "True" : "False"},
                      {"lastTransitionTime", "2023-11-14T22:13:20Z"}}}},
                   {"containerStatuses", {cs}}}}});
  }

  // The EndpointSlice controller's part: every pod of `revision` a ready endpoint of
  // Service `service`.
  void PutEndpoints(const std::string& service, const std::string& revision) {
    Json endpoints = Json::array();
    for (const Json& pod : server_.List(absl::StrCat(kCore, "/namespaces/shop/pods/"))) {
      if (pod.value("/metadata/labels/capstan.dev~1revision"_json_pointer, "") != revision) {
        continue;
      }
      endpoints.push_back({{"conditions", {{"ready", true}}},
                           {"targetRef", {{"kind", "Pod"}, {"name", pod["metadata"]["name"]}}}});
    }
    server_.Put(NsPath(kDiscovery, "shop", "endpointslices", service + "-abcde"),
                {{"apiVersion", "discovery.k8s.io/v1"},
                 {"kind", "EndpointSlice"},
                 {"metadata",
                  {{"name", service + "-abcde"},
                   {"namespace", "shop"},
                   {"labels",
                    {{"kubernetes.io/service-name", service},
                     {"app.kubernetes.io/managed-by", "capstan"}}}}},
                 {"endpoints", endpoints}});
  }

  // A RollingUpdate Release rolled out and Ready.
  void ConvergedRolling() {
    PutRelease(RollingRelease());
    Start();
    Reconcile();
    RollOut("web");
    Reconcile();
    ASSERT_EQ(Phase(), "Ready");
  }

  // A BlueGreen Release serving `nginx:1` on blue, Ready.
  void ConvergedBlueGreen() {
    PutRelease(BlueGreenRelease());
    Start();
    Reconcile();
    RollOut("web-blue", "blue");
    Reconcile();
    ASSERT_EQ(Phase(), "Ready");
    ASSERT_THAT(Reconcile(), IsEmpty());
  }

  testing::InMemoryApiServer server_;
  std::unique_ptr<kube::Client> client_ = server_.NewClient();
  FakeClock clock_;
  absl::Mutex mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);
  absl::Duration last_requeue_;
  std::unique_ptr<ReleaseController> controller_;
};

TEST_F(ReleaseControllerTest, FirstRolloutRecordsTheRevisionBeforeTheDeployment) {
  PutRelease(RollingRelease());
  Start();
  const std::string rev = RevisionOf(RollingRelease());
  EXPECT_THAT(Reconcile(), ElementsAre(absl::StrCat("create controllerrevisions shop/web-", rev),
                                       "apply deployments shop/web", "apply services shop/web",
                                       "apply releases shop/web/status"));
  EXPECT_EQ(Phase(), "Progressing");
  EXPECT_THAT(Events(), ElementsAre("Normal RolloutStarted"));
  EXPECT_EQ(last_requeue_, absl::Seconds(30));
}

TEST_F(ReleaseControllerTest, ANameFoundAbsentIsCreatedWithoutAskingAgain) {
  PutRelease(RollingRelease());
  Start();
  // The first pass looks up the Deployment and the Service (neither is in the
  // label-selected cache, so one GET each finds the name free) and creates both: no
  // second GET of a name this pass just found absent.
  const int64_t gets = server_.Requests("GET");
  EXPECT_THAT(Reconcile(), Contains("apply deployments shop/web"));
  EXPECT_EQ(server_.Requests("GET") - gets, 2);
}

TEST_F(ReleaseControllerTest, ConvergedReleaseCostsNoWrites) {
  ConvergedRolling();
  EXPECT_THAT(Reconcile(), IsEmpty());
  EXPECT_THAT(Reconcile(), IsEmpty());
  EXPECT_THAT(Events(), IsEmpty());
}

TEST_F(ReleaseControllerTest, ReadyIsOneStatusWrite) {
  PutRelease(RollingRelease());
  Start();
  Reconcile();
  RollOut("web");
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
  EXPECT_EQ(Phase(), "Ready");
  EXPECT_EQ(Condition("Ready"), "True/Ready");
}

TEST_F(ReleaseControllerTest, UnownedObjectIsNeverWrittenAndStallsWithConflict) {
  // A Deployment with the Release's name that nobody labelled for Capstan: not in
  // the label-selected cache, found by the GET Capstan makes before it writes.
  server_.Put(NsPath(kApps, "shop", "deployments", "web"),
              {{"apiVersion", "apps/v1"},
               {"kind", "Deployment"},
               {"metadata", {{"name", "web"}, {"namespace", "shop"}}},
               {"spec", {{"replicas", 1}}}});
  PutRelease(RollingRelease());
  Start();
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
  EXPECT_EQ(Phase(), "Stalled");
  EXPECT_EQ(Condition("Stalled"), "True/Conflict");
  EXPECT_THAT(Events(), ElementsAre("Warning Conflict"));
  EXPECT_EQ(server_.Get(NsPath(kApps, "shop", "deployments", "web"))->value("spec", Json()),
            Json({{"replicas", 1}}));
  // Still stalled, nothing more to write.
  EXPECT_THAT(Reconcile(), IsEmpty());
}

TEST_F(ReleaseControllerTest, StrategyChangedInPlaceStallsAndLeavesTheDeployment) {
  ConvergedRolling();
  const Json before = *server_.Get(NsPath(kApps, "shop", "deployments", "web"));
  PutRelease(BlueGreenRelease());
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
  EXPECT_EQ(Condition("Stalled"), "True/StrategyChange");
  EXPECT_EQ(*server_.Get(NsPath(kApps, "shop", "deployments", "web")), before);
  EXPECT_FALSE(server_.Get(NsPath(kApps, "shop", "deployments", "web-blue")).has_value());
}

TEST_F(ReleaseControllerTest, InvalidSpecStallsAndLeavesRunningWorkloads) {
  struct Case {
    std::string name;
    std::function<void(Json*)> edit;
  };
  const std::vector<Case> cases = {
      {"no containers", [](Json* r) { (*r)["spec"]["template"]["spec"]["containers"] = {}; }},
      {"negative replicas", [](Json* r) { (*r)["spec"]["replicas"] = -1; }},
      {"not a spec", [](Json* r) { (*r)["spec"]["replicas"] = "three"; }},
  };
  ConvergedRolling();
  const Json deployment = *server_.Get(NsPath(kApps, "shop", "deployments", "web"));
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Json r = RollingRelease();
    c.edit(&r);
    PutRelease(r);
    EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
    EXPECT_EQ(Condition("Stalled"), "True/InvalidSpec");
    EXPECT_EQ(*server_.Get(NsPath(kApps, "shop", "deployments", "web")), deployment);
    // Back to a valid spec for the next row: the running revision was never touched.
    PutRelease(RollingRelease());
    EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
    EXPECT_EQ(Phase(), "Ready");
  }
}

TEST_F(ReleaseControllerTest, GateHoldKeepsTheRunningRevision) {
  ConvergedRolling();
  server_.Put(absl::StrCat(kCapstan, "/environments/production"),
              {{"apiVersion", "capstan.dev/v1alpha1"},
               {"kind", "Environment"},
               {"metadata", {{"name", "production"}}},
               {"spec", {{"namespaces", {"shop"}}, {"policies", {{"requireApproval", true}}}}}});
  const Json deployment = *server_.Get(NsPath(kApps, "shop", "deployments", "web"));
  PutRelease(By(RollingRelease("nginx:2")));
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
  EXPECT_EQ(Phase(), "Waiting");
  EXPECT_EQ(Condition("Reconciling"), "True/AwaitingApproval");
  EXPECT_EQ(*server_.Get(NsPath(kApps, "shop", "deployments", "web")), deployment);
  EXPECT_EQ(Release().value("/status/desiredDigest"_json_pointer, ""),
            DigestOf(RollingRelease("nginx:2")));

  // An approval of exactly that state of this Release, by someone else, lets it start.
  const std::string rev = RevisionOf(RollingRelease("nginx:2"));
  server_.Put(NsPath(kCapstan, "shop", "releaseapprovals", "web-approval"),
              Approval("web-approval", RollingRelease("nginx:2"), "alice"));
  EXPECT_THAT(Reconcile(),
              ElementsAre(absl::StrCat("create controllerrevisions shop/web-", rev),
                          "apply deployments shop/web", "apply releases shop/web/status"));
  EXPECT_EQ(Phase(), "Progressing");
}

TEST_F(ReleaseControllerTest, RevisionsBeyondTheHistoryLimitArePrunedOldestFirst) {
  Json release = RollingRelease();
  release["spec"]["revisionHistoryLimit"] = 2;
  for (int n = 1; n <= 3; ++n) {
    const std::string name = absl::StrCat("web-old", n);
    server_.Put(NsPath(kApps, "shop", "controllerrevisions", name),
                {{"apiVersion", "apps/v1"},
                 {"kind", "ControllerRevision"},
                 {"metadata",
                  {{"name", name},
                   {"namespace", "shop"},
                   {"labels",
                    {{"app.kubernetes.io/managed-by", "capstan"},
                     {"capstan.dev/release", "web"},
                     {"capstan.dev/revision", absl::StrCat("old", n)}}},
                   {"ownerReferences",
                    {{{"apiVersion", "capstan.dev/v1alpha1"},
                      {"kind", "Release"},
                      {"name", "web"},
                      {"uid", kUid},
                      {"controller", true}}}}}},
                 {"revision", n},
                 {"data", Json::object()}});
  }
  PutRelease(release);
  Start();
  const std::string rev = RevisionOf(release);
  Reconcile();
  const std::vector<kube::testing::Write> writes = server_.Writes();
  ASSERT_GE(writes.size(), 4u);
  EXPECT_EQ(writes[0].Line(), absl::StrCat("create controllerrevisions shop/web-", rev));
  EXPECT_EQ(writes[0].body.value("revision", 0), 4) << "numbered after the highest";
  EXPECT_EQ(writes.back().Line(), "apply releases shop/web/status");
  // Deletes go oldest first. Whether this pass already counts the revision it just
  // created depends on the watch delivering it before the prune; the next pass does.
  std::vector<std::string> deleted;
  for (const auto& w : writes) {
    if (w.verb == "delete") deleted.push_back(w.Line());
  }
  for (const std::string& line : Reconcile()) {
    if (absl::StartsWith(line, "delete ")) deleted.push_back(line);
  }
  EXPECT_THAT(deleted, ElementsAre("delete controllerrevisions shop/web-old1",
                                   "delete controllerrevisions shop/web-old2"));
  EXPECT_THAT(Reconcile(), Not(Contains(::testing::StartsWith("delete "))));
  EXPECT_TRUE(server_.Get(NsPath(kApps, "shop", "controllerrevisions", "web-old3")).has_value());
}

TEST_F(ReleaseControllerTest, ARollbackToAChangedRevisionStallsAndWritesOnlyStatus) {
  ConvergedRolling();
  const std::string stable = RevisionOf(RollingRelease());
  // Someone edits the stable revision's recorded template.
  const std::string cr_path = NsPath(kApps, "shop", "controllerrevisions", "web-" + stable);
  Json cr = *server_.Get(cr_path);
  ASSERT_TRUE(cr.contains("/data/template"_json_pointer));
  cr["data"]["template"]["spec"]["containers"][0]["image"] = "evil:1";
  server_.Put(cr_path, cr);
  PutRelease(RollingRelease("nginx:2"));
  Reconcile();
  const std::string failing = RevisionOf(RollingRelease("nginx:2"));
  PutPod("web-" + failing + "-0", failing, "", false, "CrashLoopBackOff");
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
  EXPECT_EQ(Condition("Stalled"), "True/RevisionMismatch");
  EXPECT_EQ(server_.Get(NsPath(kApps, "shop", "deployments", "web"))
                ->value("/spec/template/metadata/labels/capstan.dev~1revision"_json_pointer, ""),
            failing)
      << "the changed template is never rolled out";
}

TEST_F(ReleaseControllerTest, BlueGreenSwitchWritesTheServiceFirstAndAlone) {
  ConvergedBlueGreen();
  const std::string rev = RevisionOf(BlueGreenRelease("nginx:2"));
  PutRelease(BlueGreenRelease("nginx:2"));
  // The new revision comes up on green (its revision recorded first); traffic stays on
  // blue: the active Service is not written.
  const std::vector<std::string> preview = Reconcile();
  ASSERT_GE(preview.size(), 3u);
  EXPECT_EQ(preview[0], absl::StrCat("create controllerrevisions shop/web-", rev));
  EXPECT_EQ(preview[1], "apply deployments shop/web-green");
  EXPECT_THAT(preview, Not(Contains("apply services shop/web")));
  EXPECT_EQ(preview.back(), "apply releases shop/web/status");
  EXPECT_EQ(server_.Get(NsPath(kCore, "shop", "services", "web"))
                ->value("/spec/selector/capstan.dev~1color"_json_pointer, ""),
            "blue");
  RollOut("web-green", "green");
  PutEndpoints("web-preview", rev);
  const std::vector<std::string> writes = Reconcile();
  ASSERT_FALSE(writes.empty());
  EXPECT_EQ(writes.front(), "apply services shop/web");
  EXPECT_EQ(writes.back(), "apply releases shop/web/status");
  EXPECT_EQ(
      server_.Writes().front().body.value("/spec/selector/capstan.dev~1color"_json_pointer, ""),
      "green");
  EXPECT_EQ(Release().value("/status/activeColor"_json_pointer, ""), "green");
}

TEST_F(ReleaseControllerTest, BlueGreenFailureAfterTheSwitchSwitchesBack) {
  ConvergedBlueGreen();
  const std::string rev = RevisionOf(BlueGreenRelease("nginx:2"));
  PutRelease(BlueGreenRelease("nginx:2"));
  Reconcile();
  RollOut("web-green", "green");
  PutEndpoints("web-preview", rev);
  Reconcile();
  ASSERT_EQ(Release().value("/status/activeColor"_json_pointer, ""), "green");
  // A green pod crash-loops inside the scale-down window.
  PutPod(absl::StrCat("web-green-", rev, "-0"), rev, "green", false, "CrashLoopBackOff");
  const std::vector<kube::testing::Write> writes = [&] {
    Reconcile();
    return server_.Writes();
  }();
  ASSERT_FALSE(writes.empty());
  EXPECT_EQ(writes.front().Line(), "apply services shop/web");
  EXPECT_EQ(writes.front().body.value("/spec/selector/capstan.dev~1color"_json_pointer, ""),
            "blue");
  EXPECT_EQ(writes.front().body.value(
                "/metadata/annotations/capstan.dev~1failed-revision"_json_pointer, ""),
            rev)
      << "the switch back carries the failed revision in the same write";
  EXPECT_EQ(writes.back().Line(), "apply releases shop/web/status");
  EXPECT_EQ(Phase(), "RolledBack");
  EXPECT_EQ(Release().value("/status/failedRevision"_json_pointer, ""), rev);
}

TEST_F(ReleaseControllerTest, ConvergedBlueGreenLooksUpTheIdleColourOnce) {
  ConvergedBlueGreen();
  // The idle colour's Deployment (web-green) does not exist and is not in the
  // label-selected cache; a resync does not GET it again.
  const int64_t before = client_->RequestCount();
  EXPECT_THAT(Reconcile(), IsEmpty());
  EXPECT_THAT(Reconcile(), IsEmpty());
  EXPECT_EQ(client_->RequestCount(), before);
  // After kAbsentRecheck it is looked up again (a same-name object someone created
  // meanwhile is reported within that time even if Capstan never writes it).
  clock_.Advance(absl::Minutes(11));
  EXPECT_THAT(Reconcile(), IsEmpty());
  EXPECT_GT(client_->RequestCount(), before);
}

TEST_F(ReleaseControllerTest, ForeignObjectCreatedWhereCapstanRememberedNothingIsNeverWritten) {
  ConvergedBlueGreen();
  // Someone else creates web-green (unlabelled) after Capstan saw the name free.
  const Json foreign = {{"apiVersion", "apps/v1"},
                        {"kind", "Deployment"},
                        {"metadata", {{"name", "web-green"}, {"namespace", "shop"}}},
                        {"spec", {{"replicas", 1}}}};
  server_.Put(NsPath(kApps, "shop", "deployments", "web-green"), foreign);
  PutRelease(BlueGreenRelease("nginx:2"));
  // The pass that would create web-green GETs first and stops before writing it.
  testing::WaitForCaches(server_, *controller_);
  server_.ClearWrites();
  EXPECT_FALSE(controller_->Reconcile(kKey).ok());
  for (const std::string& w : server_.WriteLines())
    EXPECT_NE(w, "apply deployments shop/web-green");
  // The next pass reports the conflict; the foreign object is untouched throughout.
  Reconcile();
  EXPECT_EQ(Condition("Stalled"), "True/Conflict");
  EXPECT_EQ(server_.Get(NsPath(kApps, "shop", "deployments", "web-green"))->value("spec", Json()),
            Json({{"replicas", 1}}));
}

}  // namespace
}  // namespace capstan::controller

namespace capstan::controller {
namespace {

constexpr char kNetworking[] = "/apis/networking.k8s.io/v1";

class ReleaseTrafficTest : public ReleaseControllerTest {};

TEST_F(ReleaseTrafficTest, IngressIsAppliedOnceAndRemovedWithTheSpec) {
  ConvergedRolling();
  const std::string revision = Release()["status"]["currentRevision"];
  Json r = RollingRelease();
  r["spec"]["ingress"] = {{"className", "nginx"},
                          {"hosts", {{{"host", "shop.example.com"}}}},
                          {"tls", {{{"secretName", "shop-tls"}}}}};
  PutRelease(r);
  // Only the Ingress: no new revision, no Deployment write.
  EXPECT_THAT(Reconcile(),
              ElementsAre("apply ingresses shop/web", "apply releases shop/web/status"));
  const Json ing = *server_.Get(NsPath(kNetworking, "shop", "ingresses", "web"));
  EXPECT_EQ(ing["metadata"]["ownerReferences"][0]["uid"], kUid);
  EXPECT_EQ(ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"], "web");
  EXPECT_EQ(Release()["status"]["currentRevision"], revision);
  EXPECT_THAT(Reconcile(), IsEmpty());
  // An annotation edited on the Release reaches the Ingress, and only it.
  r["spec"]["ingress"]["metadata"] = {{"annotations", {{"nginx.ingress.kubernetes.io/x", "1"}}}};
  PutRelease(r);
  EXPECT_THAT(Reconcile(), Contains("apply ingresses shop/web"));
  EXPECT_THAT(Reconcile(), IsEmpty());
  PutRelease(RollingRelease());
  EXPECT_THAT(Reconcile(), Contains("delete ingresses shop/web"));
  EXPECT_FALSE(server_.Get(NsPath(kNetworking, "shop", "ingresses", "web")).has_value());
}

TEST_F(ReleaseTrafficTest, UnownedIngressStallsWithConflict) {
  server_.Put(NsPath(kNetworking, "shop", "ingresses", "web"),
              {{"apiVersion", "networking.k8s.io/v1"},
               {"kind", "Ingress"},
               {"metadata", {{"name", "web"}, {"namespace", "shop"}}},
               {"spec", {{"ingressClassName", "theirs"}}}});
  Json r = RollingRelease();
  r["spec"]["ingress"] = Json::object();
  PutRelease(r);
  Start();
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
  EXPECT_EQ(Condition("Stalled"), "True/Conflict");
  EXPECT_EQ(server_.Get(NsPath(kNetworking, "shop", "ingresses", "web"))->value("spec", Json()),
            Json({{"ingressClassName", "theirs"}}));
}

TEST_F(ReleaseTrafficTest, RouteWithoutTheGatewayApiStallsAndLeavesTheWorkload) {
  // The in-memory API server serves no discovery: no gateway.networking.k8s.io.
  ConvergedRolling();
  const Json deployment = *server_.Get(NsPath(kApps, "shop", "deployments", "web"));
  Json r = RollingRelease("nginx:2");
  r["spec"]["route"] = {{"parentRefs", {{{"name", "public"}}}}};
  PutRelease(r);
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
  EXPECT_EQ(Condition("Stalled"), "True/GatewayAPIMissing");
  EXPECT_THAT(Release()["status"]["message"].get<std::string>(),
              ::testing::HasSubstr("Gateway API CRDs"));
  EXPECT_THAT(Events(), ElementsAre("Warning GatewayAPIMissing"));
  EXPECT_EQ(*server_.Get(NsPath(kApps, "shop", "deployments", "web")), deployment);
  EXPECT_THAT(Reconcile(), IsEmpty());
}

}  // namespace
}  // namespace capstan::controller

namespace capstan::controller {
namespace {

Json ProductionRequiringApproval() {
  return {{"apiVersion", "capstan.dev/v1alpha1"},
          {"kind", "Environment"},
          {"metadata", {{"name", "production"}}},
          {"spec", {{"namespaces", {"shop"}}, {"policies", {{"requireApproval", true}}}}}};
}

// Issue #20 item 1: approve and run a harmless template, switch to another with the
// same 40-bit revision: held (before: "no change", and the new image rolled out).
TEST_F(ReleaseControllerTest, ATemplateWithTheSameRevisionIsANewChange) {
  ConvergedRolling();
  server_.Put(absl::StrCat(kCapstan, "/environments/production"), ProductionRequiringApproval());
  const Json harmless = Colliding("nginx:1", "1220046");
  const Json evil = Colliding("nginx:2", "255781");
  ASSERT_EQ(RevisionOf(harmless), RevisionOf(evil)) << "the collision this test is about";
  PutRelease(harmless);
  Reconcile();
  ASSERT_EQ(Condition("Reconciling"), "True/AwaitingApproval");
  server_.Put(NsPath(kCapstan, "shop", "releaseapprovals", "ok"),
              Approval("ok", harmless, "alice"));
  Reconcile();
  RollOut("web");
  Reconcile();
  ASSERT_EQ(Phase(), "Ready");
  const Json deployment = *server_.Get(NsPath(kApps, "shop", "deployments", "web"));

  PutRelease(evil);
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
  EXPECT_EQ(Condition("Reconciling"), "True/AwaitingApproval");
  EXPECT_EQ(Phase(), "Waiting");
  EXPECT_EQ(*server_.Get(NsPath(kApps, "shop", "deployments", "web")), deployment)
      << "the other image must not roll out without its own approval";
  EXPECT_EQ(Release().value("/status/appliedDigest"_json_pointer, ""), DigestOf(harmless));
}

// Issue #20 item 2: a Service type change is gated like a template change; while held
// the live Service keeps its spec.
TEST_F(ReleaseControllerTest, AServiceChangeIsGated) {
  ConvergedRolling();
  server_.Put(absl::StrCat(kCapstan, "/environments/production"), ProductionRequiringApproval());
  PutRelease(By(RollingRelease()));
  Reconcile();  // the first state under the Environment: the same as what runs
  const Json service = *server_.Get(NsPath(kCore, "shop", "services", "web"));
  Json lb = By(RollingRelease());
  lb["spec"]["service"]["type"] = "LoadBalancer";
  PutRelease(lb);
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
  EXPECT_EQ(Phase(), "Waiting");
  EXPECT_EQ(Condition("Reconciling"), "True/AwaitingApproval");
  EXPECT_EQ(server_.Get(NsPath(kCore, "shop", "services", "web"))->at("spec").value("type", ""),
            service["spec"].value("type", ""));
  EXPECT_THAT(Reconcile(), IsEmpty()) << "a held change costs no writes";

  server_.Put(NsPath(kCapstan, "shop", "releaseapprovals", "lb"), Approval("lb", lb, "alice"));
  EXPECT_THAT(Reconcile(),
              ElementsAre("apply services shop/web", "apply releases shop/web/status"));
  EXPECT_EQ(server_.Get(NsPath(kCore, "shop", "services", "web"))->at("spec").value("type", ""),
            "LoadBalancer");
  EXPECT_EQ(Phase(), "Ready");
}

// Issue #20 item 2 with spec.ingress: a new public host is gated like the Service.
TEST_F(ReleaseControllerTest, AnIngressChangeIsGated) {
  ConvergedRolling();
  server_.Put(absl::StrCat(kCapstan, "/environments/production"), ProductionRequiringApproval());
  PutRelease(By(RollingRelease()));
  Reconcile();  // the first state under the Environment: the same as what runs
  Json exposed = By(RollingRelease());
  exposed["spec"]["ingress"] = {{"hosts", {{{"host", "admin.example.com"}}}}};
  PutRelease(exposed);
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
  EXPECT_EQ(Condition("Reconciling"), "True/AwaitingApproval");
  EXPECT_FALSE(server_.Get(NsPath("/apis/networking.k8s.io/v1", "shop", "ingresses", "web")))
      << "no Ingress before the change is approved";
  server_.Put(NsPath(kCapstan, "shop", "releaseapprovals", "ing"),
              Approval("ing", exposed, "alice"));
  EXPECT_THAT(Reconcile(), Contains("apply ingresses shop/web"));
  EXPECT_EQ(Phase(), "Ready");
}

// Issue #20 item 3: the author's own approval, and an approval of a deleted Release with
// the same name, do not count.
TEST_F(ReleaseControllerTest, SelfApprovalAndApprovalsOfAnotherUidDoNotCount) {
  ConvergedRolling();
  server_.Put(absl::StrCat(kCapstan, "/environments/production"), ProductionRequiringApproval());
  const Json next = By(RollingRelease("nginx:2"), "dave");
  PutRelease(next);
  server_.Put(NsPath(kCapstan, "shop", "releaseapprovals", "self"), Approval("self", next, "dave"));
  server_.Put(NsPath(kCapstan, "shop", "releaseapprovals", "copied"),
              Approval("copied", next, "alice", "uid-of-a-deleted-release"));
  Reconcile();
  EXPECT_EQ(Condition("Reconciling"), "True/AwaitingApproval");
  EXPECT_THAT(Release().value("/status/message"_json_pointer, ""),
              ::testing::HasSubstr("cannot approve their own change"));
}

// Issue #20 item 3: approvals that can never count again are deleted: those of a Release
// deleted and created again under the same name (another uid, not newer than this Release)
// and those of a state the Release has rolled past. Copies made after this Release was
// created, and approvals of states not seen yet, are left alone (they count for nothing).
TEST_F(ReleaseControllerTest, ApprovalsOfAGoneReleaseOrARolledPastStateAreDeleted) {
  Json first = RollingRelease();
  first["metadata"]["creationTimestamp"] = "2026-12-01T10:00:00Z";
  PutRelease(first);
  Start();
  Reconcile();
  RollOut("web");
  Reconcile();
  ASSERT_EQ(Phase(), "Ready");
  Json second = RollingRelease("nginx:2");
  second["metadata"]["creationTimestamp"] = "2026-12-01T10:00:00Z";
  PutRelease(second);
  Reconcile();
  RollOut("web");
  Reconcile();
  ASSERT_EQ(Phase(), "Ready");
  auto approval = [](const std::string& name, const Json& release, const std::string& uid,
                     const std::string& created) {
    Json a = Approval(name, release, "alice", uid);
    a["metadata"]["creationTimestamp"] = created;
    a["metadata"]["uid"] = absl::StrCat("uid-", name);
    return a;
  };
  const std::string approvals = NsPath(kCapstan, "shop", "releaseapprovals", "");
  server_.Put(approvals + "gone",
              approval("gone", first, "uid-of-a-deleted-release", "2026-12-01T09:00:00Z"));
  // Creation times have whole seconds: approve, delete and create again fit in one (CI
  // saw it), so an approval from this Release's second is its predecessor's.
  server_.Put(approvals + "same-second",
              approval("same-second", first, "uid-of-a-deleted-release", "2026-12-01T10:00:00Z"));
  server_.Put(approvals + "copied",
              approval("copied", first, "uid-of-a-deleted-release", "2026-12-01T11:00:00Z"));
  server_.Put(approvals + "past", approval("past", first, kUid, "2026-12-01T10:30:00Z"));
  server_.Put(approvals + "current", approval("current", second, kUid, "2026-12-01T10:40:00Z"));
  server_.Put(approvals + "future",
              approval("future", RollingRelease("nginx:3"), kUid, "2026-12-01T10:50:00Z"));
  EXPECT_THAT(Reconcile(),
              ::testing::UnorderedElementsAre("delete releaseapprovals shop/gone",
                                              "delete releaseapprovals shop/same-second",
                                              "delete releaseapprovals shop/past"));
  for (const char* kept : {"copied", "current", "future"}) {
    EXPECT_TRUE(server_.Get(approvals + kept).has_value()) << kept;
  }
  EXPECT_THAT(Reconcile(), IsEmpty()) << "converged";
}

// The same in an Environment requiring approval, for a Release created again and
// waiting for its first approval: the approvals of its predecessor are deleted, and do
// not count.
TEST_F(ReleaseControllerTest, ARecreatedReleaseAwaitingApprovalDeletesItsPredecessorsApprovals) {
  server_.Put(absl::StrCat(kCapstan, "/environments/production"), ProductionRequiringApproval());
  Json release = By(RollingRelease());
  release["metadata"]["creationTimestamp"] = "2026-12-01T10:00:00Z";
  PutRelease(release);
  Json old = Approval("old", release, "alice", "uid-of-a-deleted-release");
  old["metadata"]["creationTimestamp"] = "2026-12-01T09:00:00Z";
  old["metadata"]["uid"] = "uid-old";
  server_.Put(NsPath(kCapstan, "shop", "releaseapprovals", "old"), old);
  Start();
  EXPECT_THAT(Reconcile(),
              ElementsAre("delete releaseapprovals shop/old", "apply releases shop/web/status"));
  EXPECT_EQ(Condition("Reconciling"), "True/AwaitingApproval");
  EXPECT_FALSE(server_.Get(NsPath(kApps, "shop", "deployments", "web")).has_value());
}

// Issue #20 item 4: an Environment the operator cannot read holds its Releases.
TEST_F(ReleaseControllerTest, AnUnreadableEnvironmentHoldsItsReleases) {
  ConvergedRolling();
  const Json deployment = *server_.Get(NsPath(kApps, "shop", "deployments", "web"));
  server_.Put(
      absl::StrCat(kCapstan, "/environments/production"),
      {{"apiVersion", "capstan.dev/v1alpha1"},
       {"kind", "Environment"},
       {"metadata", {{"name", "production"}}},
       {"spec", {{"namespaces", {"shop", 7}}, {"policies", {{"requireApproval", "yes"}}}}}});
  PutRelease(RollingRelease("nginx:2"));
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
  EXPECT_EQ(Condition("Stalled"), "True/EnvironmentInvalid");
  EXPECT_THAT(Release().value("/status/message"_json_pointer, ""),
              ::testing::HasSubstr("cannot be read"));
  EXPECT_EQ(*server_.Get(NsPath(kApps, "shop", "deployments", "web")), deployment);
}

// Issue #20 item 8: an object the API server refuses stalls the Release with the
// reason, once; nothing is retried until the spec changes.
TEST_F(ReleaseControllerTest, ARefusedObjectStallsUntilTheSpecChanges) {
  ConvergedRolling();
  server_.SetInterceptor(
      [](const std::string&,
         const kube::HttpRequest& req) -> std::optional<absl::StatusOr<kube::HttpResponse>> {
        if (req.method == "PATCH" && absl::StrContains(req.path, "/services/web")) {
          return testing::InMemoryApiServer::StatusResponse(
              422, "Invalid",
              "Service \"web\" is invalid: spec.ports[0].nodePort: Invalid value: 99999: "
              "provided port is not in the valid range");
        }
        return std::nullopt;
      });
  Json bad = RollingRelease();
  bad["spec"]["service"]["type"] = "NodePort";
  PutRelease(bad);
  testing::WaitForCaches(server_, *controller_);
  server_.ClearWrites();
  absl::StatusOr<kube::ReconcileResult> r = controller_->Reconcile(kKey);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Condition("Stalled"), "True/ObjectRejected");
  const std::string message = Release().value("/status/message"_json_pointer, "");
  EXPECT_THAT(message, ::testing::HasSubstr("refused Service web"));
  EXPECT_THAT(message, ::testing::HasSubstr("nodePort: Invalid value: <redacted>"));
  EXPECT_THAT(message, Not(::testing::HasSubstr("99999")));
  EXPECT_THAT(Events(), Contains("Warning ObjectRejected"));
  EXPECT_THAT(Reconcile(), IsEmpty()) << "terminal: no retry loop";

  server_.SetInterceptor(nullptr);
  PutRelease(RollingRelease());
  Reconcile();
  EXPECT_EQ(Phase(), "Ready");
}

// Issue #17 item 4: adoption of a Deployment and Service made with kubectl.
Json KubectlDeployment(bool consent = true) {
  Json d = {{"apiVersion", "apps/v1"},
            {"kind", "Deployment"},
            {"metadata",
             {{"name", "web"},
              {"namespace", "shop"},
              {"labels", {{"app", "web"}}},
              {"managedFields",
               {{{"manager", "kubectl-create"},
                 {"operation", "Update"},
                 {"apiVersion", "apps/v1"},
                 {"fieldsType", "FieldsV1"},
                 {"fieldsV1",
                  {{"f:spec",
                    {{"f:replicas", Json::object()},
                     {"f:template", {{"f:spec", {{"f:containers", Json::object()}}}}}}}}}}}}}},
            {"spec",
             {{"replicas", 2},
              {"selector", {{"matchLabels", {{"app", "web"}}}}},
              {"template",
               {{"metadata", {{"labels", {{"app", "web"}}}}},
                {"spec", {{"containers", {{{"name", "web"}, {"image", "nginx:1"}}}}}}}}}},
            {"status", {{"replicas", 2}, {"readyReplicas", 2}, {"availableReplicas", 2}}}};
  if (consent) d["metadata"]["annotations"]["capstan.dev/adopt"] = "web";
  return d;
}

Json KubectlService(bool consent = true) {
  Json s = {{"apiVersion", "v1"},
            {"kind", "Service"},
            {"metadata", {{"name", "web"}, {"namespace", "shop"}}},
            {"spec",
             {{"type", "ClusterIP"},
              {"clusterIP", "10.0.0.7"},
              {"selector", {{"app", "web"}}},
              {"ports", {{{"port", 80}, {"protocol", "TCP"}}}}}}};
  if (consent) s["metadata"]["annotations"]["capstan.dev/adopt"] = "web";
  return s;
}

Json Adopting(Json release) {
  release["spec"]["adopt"] = true;
  return release;
}

// The revision of `release` over an adopted Deployment selecting app=web.
std::string AdoptedRevisionOf(const Json& release) {
  absl::StatusOr<api::Release> r = api::ParseRelease(release);
  EXPECT_TRUE(r.ok()) << r.status();
  r->adopted_selector = {{"app", "web"}};
  return render::RenderPodTemplate(*r).revision;
}

TEST_F(ReleaseControllerTest, AdoptsAConsentingDeploymentAndServiceInPlace) {
  server_.Put(NsPath(kApps, "shop", "deployments", "web"), KubectlDeployment());
  server_.Put(NsPath(kCore, "shop", "services", "web"), KubectlService());
  PutRelease(Adopting(RollingRelease("nginx:2")));
  Start();
  const std::string rev = AdoptedRevisionOf(Adopting(RollingRelease("nginx:2")));
  EXPECT_THAT(Reconcile(), ElementsAre(absl::StrCat("create controllerrevisions shop/web-", rev),
                                       "patch deployments shop/web", "apply deployments shop/web",
                                       "patch services shop/web", "apply services shop/web",
                                       "apply releases shop/web/status"));
  EXPECT_THAT(Events(), ElementsAre("Normal Adopted", "Normal Adopted", "Normal RolloutStarted"));
  EXPECT_EQ(Phase(), "Progressing");

  const Json d = *server_.Get(NsPath(kApps, "shop", "deployments", "web"));
  EXPECT_EQ(d["spec"]["selector"], Json({{"matchLabels", {{"app", "web"}}}}))
      << "spec.selector is immutable: the live one is kept";
  EXPECT_EQ(d["spec"]["template"]["metadata"]["labels"]["app"], "web");
  EXPECT_EQ(d["spec"]["template"]["metadata"]["labels"]["capstan.dev/revision"], rev);
  EXPECT_EQ(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:2");
  EXPECT_EQ(d["metadata"]["ownerReferences"][0]["uid"], kUid);
  EXPECT_EQ(d["metadata"]["labels"]["app.kubernetes.io/managed-by"], "capstan");
  EXPECT_EQ(d["metadata"]["annotations"]["capstan.dev/adopted-selector"], R"({"app":"web"})");
  EXPECT_EQ(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0)
      << "the adoption rollout never has fewer ready pods";
  // kubectl's spec fields were handed to Capstan before its apply (replicas excepted).
  bool kubectl_keeps_template = false;
  const std::vector<kube::testing::Write> writes = server_.Writes();
  for (const Json& e : writes[1].body["metadata"]["managedFields"]) {
    if (e.value("manager", "") == "kubectl-create") {
      kubectl_keeps_template = e["fieldsV1"]["f:spec"].contains("f:template");
    }
  }
  EXPECT_FALSE(kubectl_keeps_template);
  const Json svc = *server_.Get(NsPath(kCore, "shop", "services", "web"));
  EXPECT_EQ(svc["spec"]["selector"], Json({{"app", "web"}}))
      << "the Service keeps selecting the old pods and the new ones";
  EXPECT_EQ(svc["metadata"]["ownerReferences"][0]["uid"], kUid);

  RollOut("web");
  Reconcile();
  EXPECT_EQ(Phase(), "Ready");
  // Ready: the Release's own strategy again (one write, no new pods), then converged
  // once the deployment controller observed it.
  EXPECT_THAT(Reconcile(), ElementsAre("apply deployments shop/web"));
  RollOut("web");
  Reconcile();
  EXPECT_EQ(Phase(), "Ready");
  EXPECT_THAT(Reconcile(), IsEmpty());

  // Then rolled like any Release, under the selector it adopted.
  PutRelease(Adopting(RollingRelease("nginx:3")));
  EXPECT_THAT(Reconcile(),
              ElementsAre(absl::StrCat("create controllerrevisions shop/web-",
                                       AdoptedRevisionOf(Adopting(RollingRelease("nginx:3")))),
                          "apply deployments shop/web", "apply releases shop/web/status"));
  const Json rolled = *server_.Get(NsPath(kApps, "shop", "deployments", "web"));
  EXPECT_EQ(rolled["spec"]["selector"], Json({{"matchLabels", {{"app", "web"}}}}));
  EXPECT_EQ(rolled["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:3");
  EXPECT_EQ(rolled["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], "25%");
}

TEST_F(ReleaseControllerTest, AdoptWithoutTheObjectsConsentStallsAndWritesNothing) {
  server_.Put(NsPath(kApps, "shop", "deployments", "web"), KubectlDeployment(/*consent=*/false));
  const Json before = *server_.Get(NsPath(kApps, "shop", "deployments", "web"));
  PutRelease(Adopting(RollingRelease("nginx:2")));
  Start();
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
  EXPECT_EQ(Condition("Stalled"), "True/Conflict");
  EXPECT_THAT(Release().value("/status/message"_json_pointer, ""),
              ::testing::HasSubstr("spec.adopt is true, but Deployment web does not consent"));
  EXPECT_THAT(Events(), ElementsAre("Warning Conflict"));
  EXPECT_EQ(*server_.Get(NsPath(kApps, "shop", "deployments", "web")), before);
  EXPECT_THAT(Reconcile(), IsEmpty());
}

TEST_F(ReleaseControllerTest, ConsentWithoutSpecAdoptIsAConflict) {
  server_.Put(NsPath(kApps, "shop", "deployments", "web"), KubectlDeployment());
  const Json before = *server_.Get(NsPath(kApps, "shop", "deployments", "web"));
  PutRelease(RollingRelease("nginx:2"));
  Start();
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
  EXPECT_EQ(Condition("Stalled"), "True/Conflict");
  EXPECT_THAT(Release().value("/status/message"_json_pointer, ""),
              ::testing::HasSubstr("set spec.adopt: true"));
  EXPECT_EQ(*server_.Get(NsPath(kApps, "shop", "deployments", "web")), before);
}

TEST_F(ReleaseControllerTest, TheGateDecidesBeforeTheAdoptionWrites) {
  server_.Put(absl::StrCat(kCapstan, "/environments/production"), ProductionRequiringApproval());
  server_.Put(NsPath(kApps, "shop", "deployments", "web"), KubectlDeployment());
  server_.Put(NsPath(kCore, "shop", "services", "web"), KubectlService());
  const Json deployment = *server_.Get(NsPath(kApps, "shop", "deployments", "web"));
  const Json service = *server_.Get(NsPath(kCore, "shop", "services", "web"));
  const Json release = By(Adopting(RollingRelease("nginx:2")));
  PutRelease(release);
  Start();
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
  EXPECT_EQ(Condition("Reconciling"), "True/AwaitingApproval");
  EXPECT_EQ(*server_.Get(NsPath(kApps, "shop", "deployments", "web")), deployment);
  EXPECT_EQ(*server_.Get(NsPath(kCore, "shop", "services", "web")), service);
  EXPECT_THAT(Reconcile(), IsEmpty());

  Json approval = Approval("adopt", release, "alice");
  approval["spec"]["revision"] = AdoptedRevisionOf(release);
  approval["spec"]["digest"] = Release().value("/status/desiredDigest"_json_pointer, "");
  server_.Put(NsPath(kCapstan, "shop", "releaseapprovals", "adopt"), approval);
  EXPECT_THAT(Reconcile(), Contains("patch deployments shop/web"));
  EXPECT_THAT(Events(), Contains("Normal Adopted"));
  EXPECT_EQ(Phase(), "Progressing");
}

TEST_F(ReleaseControllerTest, AServiceAloneIsAdoptedOnceTheReleaseServes) {
  server_.Put(NsPath(kCore, "shop", "services", "web"), KubectlService());
  const Json service = *server_.Get(NsPath(kCore, "shop", "services", "web"));
  PutRelease(Adopting(RollingRelease()));
  Start();
  EXPECT_THAT(Reconcile(),
              ElementsAre(absl::StrCat("create controllerrevisions shop/web-",
                                       RevisionOf(RollingRelease())),
                          "apply deployments shop/web", "apply releases shop/web/status"));
  EXPECT_EQ(*server_.Get(NsPath(kCore, "shop", "services", "web")), service)
      << "its selector would select no ready pod yet";
  RollOut("web");
  EXPECT_THAT(Reconcile(), ElementsAre("patch services shop/web", "apply services shop/web",
                                       "apply releases shop/web/status"));
  EXPECT_EQ(
      server_.Get(NsPath(kCore, "shop", "services", "web"))->at("/spec/selector"_json_pointer),
      Json({{"app", "web"}, {"capstan.dev/release", "web"}}))
      << "the in-memory server merges; the API server replaces the adopted selector";
}

TEST_F(ReleaseControllerTest, BlueGreenRefusesToAdoptADeployment) {
  server_.Put(NsPath(kApps, "shop", "deployments", "web"), KubectlDeployment());
  const Json before = *server_.Get(NsPath(kApps, "shop", "deployments", "web"));
  PutRelease(Adopting(BlueGreenRelease()));
  Start();
  EXPECT_THAT(Reconcile(), ElementsAre("apply releases shop/web/status"));
  EXPECT_EQ(Condition("Stalled"), "True/AdoptionRefused");
  EXPECT_THAT(Release().value("/status/message"_json_pointer, ""),
              ::testing::HasSubstr("cannot be adopted by a BlueGreen Release"));
  EXPECT_EQ(*server_.Get(NsPath(kApps, "shop", "deployments", "web")), before);
}

}  // namespace
}  // namespace capstan::controller
