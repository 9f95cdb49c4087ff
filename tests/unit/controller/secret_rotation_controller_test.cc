// SecretRotationController driven through whole reconciles against the in-memory API
// server: the ownership rule (create, adopt, conflict) and the write each rotation
// step makes, in order.

#include "capstan/controller/secret_rotation_controller.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "capstan/common/clock.h"
#include "capstan/secrets/keypair.h"
#include "capstan/secrets/rotation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "unit/controller/controller_test_support.h"

namespace capstan::controller {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using testing::Json;
using testing::NsPath;

constexpr char kCore[] = "/api/v1";
constexpr char kApps[] = "/apis/apps/v1";
constexpr char kCapstan[] = "/apis/capstan.dev/v1alpha1";
constexpr char kStatusWrite[] = "apply secretrotations shop/jwt/status";

// Bytes 0, 1, 2, ...: values are predictable, and never appear in a test's output.
class CountingRandom : public secrets::RandomSource {
 public:
  absl::Status Fill(uint8_t* out, size_t n) override {
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(next_++);
    return absl::OkStatus();
  }

 private:
  uint32_t next_ = 0;
};

Json Rotation(bool adopt = false, const std::string& token = "") {
  Json r = {{"apiVersion", "capstan.dev/v1alpha1"},
            {"kind", "SecretRotation"},
            {"metadata", {{"name", "jwt"}, {"namespace", "shop"}, {"uid", "uid-jwt"}}},
            {"spec",
             {{"secretName", "jwt-keys"},
              {"interval", "168h"},
              {"keys", {{{"name", "signing-key"}, {"randomBytes", {{"length", 32}}}}}}}}};
  if (adopt) r["spec"]["adoptExisting"] = true;
  if (!token.empty()) r["metadata"]["annotations"]["capstan.dev/rotate"] = token;
  return r;
}

Json Secret(const Json& labels = Json::object()) {
  return {{"apiVersion", "v1"},
          {"kind", "Secret"},
          {"metadata", {{"name", "jwt-keys"}, {"namespace", "shop"}, {"labels", labels}}},
          {"data", {{"signing-key", "b2xk"}, {"other", "a2VlcA=="}}}};
}

class SecretRotationControllerTest : public ::testing::Test {
 protected:
  ~SecretRotationControllerTest() override {
    if (controller_ != nullptr) controller_->Stop();
  }

  void Start() {
    controller_ = std::make_unique<SecretRotationController>(
        *client_, SecretRotationController::Options{},
        [this](const kube::Object&, const std::string& type, const std::string& reason,
               const std::string&) {
          absl::MutexLock lock(&mu_);
          events_.push_back(absl::StrCat(type, " ", reason));
        },
        clock_, random_);
    controller_->StartCaches();
    testing::WaitForCaches(server_, *controller_);
  }

  std::vector<kube::testing::Write> Reconcile() {
    testing::WaitForCaches(server_, *controller_);
    server_.ClearWrites();
    {
      absl::MutexLock lock(&mu_);
      events_.clear();
    }
    absl::StatusOr<kube::ReconcileResult> r = controller_->Reconcile("shop/jwt");
    EXPECT_TRUE(r.ok()) << r.status();
    return server_.Writes();
  }
  std::vector<std::string> Lines() {
    std::vector<std::string> out;
    for (const kube::testing::Write& w : Reconcile()) out.push_back(w.Line());
    return out;
  }
  // A reconcile's writes other than the status write, which (when there is one) comes last.
  std::vector<kube::testing::Write> Step() {
    std::vector<kube::testing::Write> writes = Reconcile();
    for (size_t i = 0; i + 1 < writes.size(); ++i) {
      EXPECT_NE(writes[i].Line(), kStatusWrite) << "status is written last";
    }
    if (!writes.empty() && writes.back().Line() == kStatusWrite) writes.pop_back();
    return writes;
  }

  std::vector<std::string> Events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }

  void PutRotation(const Json& r) {
    const std::string path = NsPath(kCapstan, "shop", "secretrotations", "jwt");
    Json obj = r;
    if (std::optional<Json> live = server_.Get(path); live && live->contains("status")) {
      obj["status"] = (*live)["status"];
    }
    server_.Put(path, std::move(obj));
  }
  Json SecretNow() { return *server_.Get(NsPath(kCore, "shop", "secrets", "jwt-keys")); }
  std::string StalledReason() {
    const Json r = *server_.Get(NsPath(kCapstan, "shop", "secretrotations", "jwt"));
    if (r.value("/status/phase"_json_pointer, "") != "Stalled") return "";
    return r.value("/status/reason"_json_pointer, "");
  }

  // A Deployment reading the Secret through envFrom, rolled out (or not).
  void PutConsumer(bool healthy) {
    const std::string path = NsPath(kApps, "shop", "deployments", "api");
    Json d = server_.Get(path).value_or(
        Json{{"apiVersion", "apps/v1"},
             {"kind", "Deployment"},
             {"metadata", {{"name", "api"}, {"namespace", "shop"}}},
             {"spec",
              {{"replicas", 1},
               {"template",
                {{"spec",
                  {{"containers",
                    {{{"name", "api"},
                      {"image", "api:1"},
                      {"envFrom", {{{"secretRef", {{"name", "jwt-keys"}}}}}}}}}}}}}}}});
    const int64_t gen = d.value("/metadata/generation"_json_pointer, int64_t{1});
    d["status"] = {{"observedGeneration", healthy ? gen : gen - 1},
                   {"replicas", 1},
                   {"updatedReplicas", healthy ? 1 : 0},
                   {"readyReplicas", 1},
                   {"availableReplicas", 1}};
    server_.Put(path, d);
  }

  testing::InMemoryApiServer server_;
  std::unique_ptr<kube::Client> client_ = server_.NewClient();
  FakeClock clock_;
  CountingRandom random_;
  absl::Mutex mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<SecretRotationController> controller_;
};

TEST_F(SecretRotationControllerTest, MissingSecretIsCreatedOwnedAndLabelled) {
  PutRotation(Rotation());
  Start();
  const std::vector<kube::testing::Write> writes = Reconcile();
  ASSERT_EQ(writes.size(), 2u);
  EXPECT_EQ(writes[0].Line(), "create secrets shop/jwt-keys");
  EXPECT_EQ(writes[1].Line(), kStatusWrite);
  const Json& body = writes[0].body;
  EXPECT_EQ(body.value("/metadata/labels/capstan.dev~1secret-rotation"_json_pointer, ""), "jwt");
  EXPECT_EQ(body.value("/metadata/ownerReferences/0/uid"_json_pointer, ""), "uid-jwt");
  EXPECT_TRUE(body.contains("/data/signing-key"_json_pointer));
  EXPECT_EQ(body.value("/metadata/annotations/capstan.dev~1rotation-state"_json_pointer, ""),
            "Idle");
  EXPECT_THAT(Events(), ElementsAre("Normal Created"));
}

TEST_F(SecretRotationControllerTest, OwnershipRule) {
  struct Case {
    std::string name;
    Json labels;
    bool adopt;
    std::vector<std::string> writes;
    std::string stalled;  // reason, "" when not stalled
    std::string event;
  };
  const std::vector<Case> cases = {
      {"unlabelled, no adoptExisting",
       Json::object(),
       false,
       {kStatusWrite},
       "Conflict",
       "Warning Conflict"},
      {"unlabelled, adoptExisting: label only",
       Json::object(),
       true,
       {"patch secrets shop/jwt-keys"},
       "",
       "Normal Adopted"},
      {"labelled for another SecretRotation",
       {{"capstan.dev/secret-rotation", "other"}},
       true,
       {kStatusWrite},
       "Conflict",
       "Warning Conflict"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Json secret = Secret(c.labels);
    // The Secret's own consent to adoption (issue #20 item 7).
    secret["metadata"]["annotations"]["capstan.dev/allow-adoption"] = "true";
    server_.Put(NsPath(kCore, "shop", "secrets", "jwt-keys"), secret);
    server_.Erase(NsPath(kCapstan, "shop", "secretrotations", "jwt"));
    PutRotation(Rotation(c.adopt));
    if (controller_ == nullptr) Start();
    const Json before = SecretNow();
    const std::vector<kube::testing::Write> writes = Reconcile();
    std::vector<std::string> lines;
    for (const auto& w : writes) lines.push_back(w.Line());
    EXPECT_EQ(lines, c.writes);
    EXPECT_EQ(StalledReason(), c.stalled);
    EXPECT_THAT(Events(), ElementsAre(c.event));
    if (c.adopt && c.stalled.empty()) {
      // Only the label, conditional on the version read; no ownerReference, no data.
      ASSERT_EQ(writes.size(), 1u);
      EXPECT_EQ(writes[0].body, Json({{"metadata",
                                       {{"resourceVersion", before["metadata"]["resourceVersion"]},
                                        {"labels", {{"capstan.dev/secret-rotation", "jwt"}}}}}}));
      EXPECT_EQ(SecretNow()["data"], before["data"]);
    } else {
      EXPECT_EQ(SecretNow(), before) << "a Secret that is not ours is never written";
    }
  }
}

TEST_F(SecretRotationControllerTest, AdoptedSecretKeepsUnlistedKeys) {
  Json consenting = Secret();
  consenting["metadata"]["annotations"]["capstan.dev/allow-adoption"] = "true";
  server_.Put(NsPath(kCore, "shop", "secrets", "jwt-keys"), consenting);
  PutRotation(Rotation(/*adopt=*/true));
  Start();
  EXPECT_THAT(Lines(), ElementsAre("patch secrets shop/jwt-keys"));  // the label
  // Its schedule starts now; existing values stay.
  const std::vector<kube::testing::Write> writes = Step();
  ASSERT_EQ(writes.size(), 1u);
  EXPECT_EQ(writes[0].Line(), "patch secrets shop/jwt-keys");
  EXPECT_FALSE(writes[0].body.contains("data"));
  EXPECT_EQ(SecretNow()["data"]["other"], "a2VlcA==");
  EXPECT_EQ(SecretNow()["data"]["signing-key"], "b2xk");
}

TEST_F(SecretRotationControllerTest, EachRotationStepIsOneSecretWrite) {
  PutConsumer(/*healthy=*/true);
  PutRotation(Rotation());
  Start();
  ASSERT_EQ(Step().size(), 1u);  // created
  const std::string first = SecretNow()["data"]["signing-key"];
  auto state = [](const kube::testing::Write& w) {
    return w.body.value("/metadata/annotations/capstan.dev~1rotation-state"_json_pointer, "");
  };
  auto precondition = [](const kube::testing::Write& w) {
    return w.body.value("/metadata/resourceVersion"_json_pointer, "");
  };

  PutRotation(Rotation(false, "t1"));  // a manual trigger
  {
    SCOPED_TRACE("Idle -> Pending: new values into pending keys only");
    const std::string rv = SecretNow()["metadata"]["resourceVersion"];
    const std::vector<kube::testing::Write> w = Step();
    ASSERT_EQ(w.size(), 1u);
    EXPECT_EQ(w[0].Line(), "patch secrets shop/jwt-keys");
    EXPECT_EQ(state(w[0]), "Pending");
    EXPECT_EQ(precondition(w[0]), rv);
    EXPECT_TRUE(w[0].body.contains("/data/.capstan-pending.signing-key"_json_pointer));
    EXPECT_FALSE(w[0].body.contains("/data/signing-key"_json_pointer));
    EXPECT_THAT(Events(), ElementsAre("Normal RotationStarted"));
  }
  const std::string pending = SecretNow()["data"][".capstan-pending.signing-key"];
  {
    SCOPED_TRACE("Pending -> Swapped: pending to current, current to rollback");
    const std::vector<kube::testing::Write> w = Step();
    ASSERT_EQ(w.size(), 1u);
    EXPECT_EQ(state(w[0]), "Swapped");
    EXPECT_EQ(w[0].body["data"], Json({{"signing-key", pending},
                                       {".capstan-rollback.signing-key", first},
                                       {".capstan-pending.signing-key", nullptr}}));
  }
  {
    SCOPED_TRACE("Swapped -> Restarted: the consumer is stamped first, then the state");
    const std::vector<kube::testing::Write> w = Step();
    ASSERT_EQ(w.size(), 2u);
    EXPECT_EQ(w[0].Line(), "patch deployments shop/api");
    EXPECT_EQ(w[1].Line(), "patch secrets shop/jwt-keys");
    EXPECT_EQ(state(w[1]), "Restarted");
    EXPECT_FALSE(w[1].body.contains("data"));
  }
  {
    SCOPED_TRACE("Restarted, consumer still rolling out: nothing written");
    PutConsumer(/*healthy=*/false);
    EXPECT_THAT(Step(), IsEmpty());
  }
  {
    SCOPED_TRACE("Restarted -> Idle: healthy, rollback copies dropped");
    PutConsumer(/*healthy=*/true);
    const std::vector<kube::testing::Write> w = Step();
    ASSERT_EQ(w.size(), 1u);
    EXPECT_EQ(state(w[0]), "Idle");
    EXPECT_EQ(w[0].body["data"], Json({{".capstan-rollback.signing-key", nullptr}}));
    EXPECT_THAT(Events(), ElementsAre("Normal Rotated"));
  }
  EXPECT_EQ(SecretNow()["data"], Json({{"signing-key", pending}}));
  EXPECT_THAT(Step(), IsEmpty()) << "converged";
}

// A Release reading the Secret is found in the Releases cache (the Release controller's,
// unprojected: its pod template is read there) and restarted through its own metadata;
// the Deployment it controls is not stamped directly.
TEST_F(SecretRotationControllerTest, AReleaseConsumerIsStampedOnItsMetadataNotItsDeployment) {
  const Json reads = {
      {"spec",
       {{"containers",
         {{{"name", "web"},
           {"image", "web:1"},
           {"env",
            {{{"name", "KEY"},
              {"valueFrom",
               {{"secretKeyRef", {{"name", "jwt-keys"}, {"key", "signing-key"}}}}}}}}}}}}}};
  server_.Put(NsPath(kCapstan, "shop", "releases", "web"),
              {{"apiVersion", "capstan.dev/v1alpha1"},
               {"kind", "Release"},
               {"metadata", {{"name", "web"}, {"namespace", "shop"}, {"generation", 1}}},
               {"spec", {{"replicas", 1}, {"template", reads}}},
               {"status", {{"observedGeneration", 1}, {"phase", "Succeeded"}}}});
  server_.Put(NsPath(kApps, "shop", "deployments", "web-1"),
              {{"apiVersion", "apps/v1"},
               {"kind", "Deployment"},
               {"metadata",
                {{"name", "web-1"},
                 {"namespace", "shop"},
                 {"ownerReferences",
                  {{{"apiVersion", "capstan.dev/v1alpha1"},
                    {"kind", "Release"},
                    {"name", "web"},
                    {"uid", "uid-web"},
                    {"controller", true}}}}}},
               {"spec", {{"replicas", 1}, {"template", reads}}}});
  PutRotation(Rotation());
  Start();
  ASSERT_EQ(Step().size(), 1u);  // created
  PutRotation(Rotation(false, "t1"));
  ASSERT_EQ(Step().size(), 1u);  // Pending
  ASSERT_EQ(Step().size(), 1u);  // Swapped
  const std::vector<kube::testing::Write> w = Step();
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0].Line(), "patch releases shop/web");
  const std::string key = absl::StrCat(secrets::kAnnSecretVersionPrefix, "jwt-keys");
  ASSERT_TRUE(w[0].body.contains("metadata")) << w[0].body.dump();
  EXPECT_TRUE(w[0].body["metadata"]["annotations"].contains(key)) << w[0].body.dump();
  EXPECT_FALSE(w[0].body.contains("spec")) << "a Release is restarted through its metadata";
  EXPECT_EQ(w[1].Line(), "patch secrets shop/jwt-keys");
}

TEST_F(SecretRotationControllerTest, UnhealthyConsumersPastTheTimeoutRestoreTheOldValues) {
  PutConsumer(/*healthy=*/true);
  PutRotation(Rotation());
  Start();
  Step();
  const std::string first = SecretNow()["data"]["signing-key"];
  PutRotation(Rotation(false, "t1"));
  Step();  // Pending
  Step();  // Swapped
  Step();  // Restarted
  PutConsumer(/*healthy=*/false);
  clock_.Advance(absl::Minutes(11));  // past onFailure.healthTimeout (10m)
  {
    SCOPED_TRACE("Restarted -> Restoring: the rollback copy back into place");
    const std::vector<kube::testing::Write> w = Step();
    ASSERT_EQ(w.size(), 1u);
    EXPECT_EQ(w[0].body.value("/metadata/annotations/capstan.dev~1rotation-state"_json_pointer, ""),
              "Restoring");
    EXPECT_EQ(w[0].body["data"]["signing-key"], first);
    EXPECT_THAT(Events(), ElementsAre("Warning RotationFailed"));
  }
  {
    SCOPED_TRACE("Restoring -> Idle: the consumer re-stamped with the restored version first");
    const std::vector<kube::testing::Write> w = Step();
    ASSERT_EQ(w.size(), 2u);
    EXPECT_EQ(w[0].Line(), "patch deployments shop/api");
    EXPECT_EQ(w[1].body.value("/metadata/annotations/capstan.dev~1rotation-state"_json_pointer, ""),
              "Idle");
  }
  EXPECT_EQ(SecretNow()["data"], Json({{"signing-key", first}}));
}

// The kids of a JWKS data value (base64 of the document).
std::vector<std::string> Kids(const Json& data, const std::string& key) {
  std::string doc;
  EXPECT_TRUE(absl::Base64Unescape(data.value(key, ""), &doc)) << key;
  std::vector<std::string> out;
  const Json parsed = Json::parse(doc);
  for (const Json& k : parsed["keys"]) out.push_back(k["kid"]);
  return out;
}

// The public half of the private key in data[key]: its kid, or its PEM.
std::string PublicOf(const Json& data, const std::string& key, bool pem_not_kid = false) {
  std::string pem;
  EXPECT_TRUE(absl::Base64Unescape(data.value(key, ""), &pem)) << key;
  absl::StatusOr<secrets::PublicKeyParts> parts = secrets::DerivePublicKey(pem, {});
  EXPECT_TRUE(parts.ok()) << parts.status();
  if (!parts.ok()) return "";
  return pem_not_kid ? parts->public_pem : parts->jwk["kid"].get<std::string>();
}
std::string KidOf(const Json& data, const std::string& key) { return PublicOf(data, key); }
std::string Plain(const Json& data, const std::string& key) {
  std::string out;
  EXPECT_TRUE(absl::Base64Unescape(data.value(key, ""), &out)) << key;
  return out;
}

TEST_F(SecretRotationControllerTest, KeyPairPublishesCurrentAndPreviousKeysDuringGrace) {
  Json r = Rotation();
  r["spec"]["keys"] = {{{"name", "signing.key"}, {"keyPair", {{"type", "EC"}}}}};
  r["spec"]["strategy"] = {{"type", "KeepPrevious"}, {"gracePeriod", "24h"}};
  r["spec"]["consumers"] = {{"mode", "None"}};
  PutRotation(r);
  Start();
  ASSERT_EQ(Step().size(), 1u);  // created
  Json d = SecretNow()["data"];
  EXPECT_EQ(d.size(), 3u) << d.dump();
  const std::string first = KidOf(d, "signing.key");
  EXPECT_EQ(Plain(d, "signing.key.pub"), PublicOf(d, "signing.key", true));
  EXPECT_EQ(Kids(d, "signing.key.jwks.json"), std::vector<std::string>{first});

  r["metadata"]["annotations"]["capstan.dev/rotate"] = "t1";
  PutRotation(r);
  {
    SCOPED_TRACE("Pending: the JWKS does not change before the swap");
    const std::vector<kube::testing::Write> w = Step();
    ASSERT_EQ(w.size(), 1u);
    EXPECT_FALSE(w[0].body.contains("/data/signing.key.jwks.json"_json_pointer));
  }
  {
    SCOPED_TRACE("Swapped: one write switches the key and publishes both");
    const std::vector<kube::testing::Write> w = Step();
    ASSERT_EQ(w.size(), 1u);
    const Json& data = w[0].body["data"];
    for (const char* k : {"signing.key", "signing.key_previous", "signing.key.pub",
                          "signing.key.pub_previous", "signing.key.jwks.json"}) {
      EXPECT_TRUE(data.contains(k)) << k;
    }
  }
  Step();  // Restarted (no consumers)
  Step();  // Idle
  d = SecretNow()["data"];
  const std::string second = KidOf(d, "signing.key");
  EXPECT_NE(second, first);
  EXPECT_EQ(KidOf(d, "signing.key_previous"), first);
  EXPECT_EQ(Plain(d, "signing.key.pub_previous"), PublicOf(d, "signing.key_previous", true));
  EXPECT_EQ(Plain(d, "signing.key.pub"), PublicOf(d, "signing.key", true));
  EXPECT_EQ(Kids(d, "signing.key.jwks.json"), (std::vector<std::string>{second, first}));

  clock_.Advance(absl::Hours(25));  // past the grace period
  {
    SCOPED_TRACE("Grace over: the previous key leaves the JWKS");
    const std::vector<kube::testing::Write> w = Step();
    ASSERT_EQ(w.size(), 1u);
    EXPECT_THAT(Events(), ElementsAre("Normal PreviousCleared"));
  }
  d = SecretNow()["data"];
  EXPECT_EQ(d.size(), 3u) << d.dump();
  EXPECT_EQ(Kids(d, "signing.key.jwks.json"), std::vector<std::string>{second});
  EXPECT_THAT(Step(), IsEmpty()) << "converged";
}

TEST_F(SecretRotationControllerTest, UnreadablePrivateKeyStallsAndWritesNothing) {
  Json r = Rotation();
  r["spec"]["keys"] = {{{"name", "signing.key"}, {"keyPair", {{"type", "Ed25519"}}}}};
  PutRotation(r);
  Start();
  Step();  // created
  Json s = SecretNow();
  s["data"]["signing.key"] = absl::Base64Escape("edited by hand");
  s["data"].erase("signing.key.jwks.json");
  server_.Put(NsPath(kCore, "shop", "secrets", "jwt-keys"), s);
  const Json before = SecretNow();
  EXPECT_THAT(Lines(), ElementsAre(kStatusWrite));
  EXPECT_EQ(StalledReason(), "InvalidKey");
  EXPECT_THAT(Events(), ElementsAre("Warning InvalidKey"));
  EXPECT_EQ(SecretNow(), before);
}

// A StatefulSet (volume) or DaemonSet (env) reading jwt-keys; `healthy`: its status
// says the current template is rolled out.
void PutWorkload(testing::InMemoryApiServer& server, const std::string& resource,
                 const std::string& name, bool healthy) {
  const std::string path = NsPath(kApps, "shop", resource, name);
  const bool sts = resource == "statefulsets";
  Json pod = {{"containers", {{{"name", "c"}, {"image", "c:1"}}}}};
  if (sts) {
    pod["volumes"] = {{{"name", "keys"}, {"secret", {{"secretName", "jwt-keys"}}}}};
  } else {
    pod["containers"][0]["env"] = {
        {{"name", "K"}, {"valueFrom", {{"secretKeyRef", {{"name", "jwt-keys"}, {"key", "k"}}}}}}};
  }
  Json w = server.Get(path).value_or(Json{{"apiVersion", "apps/v1"},
                                          {"kind", sts ? "StatefulSet" : "DaemonSet"},
                                          {"metadata", {{"name", name}, {"namespace", "shop"}}},
                                          {"spec", {{"template", {{"spec", pod}}}}}});
  if (sts) w["spec"]["replicas"] = 2;
  const int64_t gen = w.value("/metadata/generation"_json_pointer, int64_t{1});
  if (sts) {
    w["status"] = {{"observedGeneration", gen},
                   {"replicas", 2},
                   {"readyReplicas", 2},
                   {"updatedReplicas", healthy ? 2 : 1},
                   {"currentRevision", healthy ? "b" : "a"},
                   {"updateRevision", "b"}};
  } else {
    w["status"] = {{"observedGeneration", gen},
                   {"desiredNumberScheduled", 3},
                   {"updatedNumberScheduled", healthy ? 3 : 1},
                   {"numberAvailable", 3}};
  }
  server.Put(path, w);
}

TEST_F(SecretRotationControllerTest, StatefulSetsAndDaemonSetsRestartOneAtATime) {
  PutConsumer(/*healthy=*/true);  // Deployment api
  PutWorkload(server_, "daemonsets", "agent", /*healthy=*/true);
  PutWorkload(server_, "statefulsets", "db", /*healthy=*/true);
  Json r = Rotation();
  r["spec"]["consumers"] = {{"mode", "Auto"}, {"maxConcurrentRestarts", 1}};
  PutRotation(r);
  Start();
  Step();  // created
  EXPECT_EQ(server_.Get(NsPath(kCapstan, "shop", "secretrotations", "jwt"))
                ->at("/status/consumers"_json_pointer),
            Json({"agent", "api", "db"}))
      << "auto discovery of all three kinds";
  r["metadata"]["annotations"]["capstan.dev/rotate"] = "t1";
  PutRotation(r);
  Step();  // Pending
  Step();  // Swapped
  EXPECT_THAT(Lines(), ElementsAre("patch daemonsets shop/agent", "patch secrets shop/jwt-keys",
                                   kStatusWrite));
  const Json agent = *server_.Get(NsPath(kApps, "shop", "daemonsets", "agent"));
  const std::string stamp = agent.value(
      "/spec/template/metadata/annotations/secret-version.capstan.dev~1jwt-keys"_json_pointer, "");
  EXPECT_EQ(stamp.size(), 16u);
  PutWorkload(server_, "daemonsets", "agent", /*healthy=*/false);  // rolling
  EXPECT_THAT(Step(), IsEmpty()) << "the one slot is busy";
  PutWorkload(server_, "daemonsets", "agent", /*healthy=*/true);
  auto step_lines = [&] {
    std::vector<std::string> out;
    for (const kube::testing::Write& w : Step()) out.push_back(w.Line());
    return out;
  };
  EXPECT_THAT(step_lines(),
              ElementsAre("patch deployments shop/api", "patch secrets shop/jwt-keys"));
  EXPECT_THAT(step_lines(), IsEmpty()) << "api's new generation is not observed yet";
  PutConsumer(/*healthy=*/true);
  EXPECT_THAT(step_lines(),
              ElementsAre("patch statefulsets shop/db", "patch secrets shop/jwt-keys"));
  PutWorkload(server_, "statefulsets", "db", /*healthy=*/false);
  EXPECT_THAT(Step(), IsEmpty()) << "currentRevision != updateRevision";
  PutWorkload(server_, "statefulsets", "db", /*healthy=*/true);
  const std::vector<kube::testing::Write> w = Step();
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].body.value("/metadata/annotations/capstan.dev~1rotation-state"_json_pointer, ""),
            "Idle");
  EXPECT_THAT(Events(), ElementsAre("Normal Rotated"));
  const Json db = *server_.Get(NsPath(kApps, "shop", "statefulsets", "db"));
  EXPECT_EQ(
      db.value(
          "/spec/template/metadata/annotations/secret-version.capstan.dev~1jwt-keys"_json_pointer,
          ""),
      stamp);
}

TEST_F(SecretRotationControllerTest, ExplicitWorkloadsOfEachKind) {
  PutWorkload(server_, "statefulsets", "db", /*healthy=*/true);
  PutWorkload(server_, "daemonsets", "agent", /*healthy=*/true);
  Json r = Rotation();
  r["spec"]["consumers"] = {
      {"mode", "Explicit"},
      {"workloads",
       {{{"kind", "StatefulSet"}, {"name", "db"}}, {{"kind", "DaemonSet"}, {"name", "missing"}}}}};
  PutRotation(r);
  Start();
  Step();  // created
  r["metadata"]["annotations"]["capstan.dev/rotate"] = "t1";
  PutRotation(r);
  Step();  // Pending
  Step();  // Swapped
  EXPECT_THAT(Lines(), ElementsAre("patch statefulsets shop/db", "patch secrets shop/jwt-keys",
                                   kStatusWrite))
      << "only the named workloads that exist; agent reads the Secret but is not named";

  r["spec"]["consumers"]["workloads"][0]["kind"] = "CronJob";
  PutRotation(r);
  EXPECT_THAT(Lines(), ElementsAre(kStatusWrite));
  EXPECT_EQ(StalledReason(), "InvalidSpec");
  EXPECT_THAT(Events(), ElementsAre("Warning InvalidSpec"));
}

namespace hook {

constexpr char kBatch[] = "/apis/batch/v1";

Json HookRotation() {
  Json r = Rotation();
  const Json step = {
      {"template", {{"spec", {{"containers", {{{"name", "s"}, {"image", "exit0"}}}}}}}}};
  r["spec"]["target"]["hook"] = {{"set", step}, {"test", step}};
  return r;
}

}  // namespace hook

class SecretRotationHookTest : public SecretRotationControllerTest {
 protected:
  std::string JobPath(const std::string& name) {
    return NsPath(hook::kBatch, "shop", "jobs", name);
  }
  // The Job controller's verdict on one of our Jobs.
  void Finish(const std::string& name, const std::string& condition, const std::string& reason) {
    Json j = *server_.Get(JobPath(name));
    j["status"] = {
        {"conditions",
         {{{"type", condition}, {"status", "True"}, {"reason", reason}, {"message", "done"}}}}};
    if (condition == "Complete") j["status"]["completionTime"] = "2026-01-01T00:00:00Z";
    server_.Put(JobPath(name), j);
  }
  std::string State() {
    return SecretNow().value("/metadata/annotations/capstan.dev~1rotation-state"_json_pointer, "");
  }
};

TEST_F(SecretRotationHookTest, SetThenTestJobThenOneSwapWrite) {
  PutRotation(hook::HookRotation());
  Start();
  EXPECT_THAT(Step().size(), 1u);  // created empty
  EXPECT_FALSE(SecretNow().contains("data") && SecretNow()["data"].contains("signing-key"));
  ASSERT_THAT(Step().size(), 1u);  // the first values, pending
  EXPECT_EQ(State(), "Pending");
  const std::vector<kube::testing::Write> set = Step();
  ASSERT_EQ(set.size(), 1u);
  EXPECT_EQ(set[0].Line(), "create jobs shop/jwt-1-set");
  EXPECT_EQ(set[0].body.value("/metadata/ownerReferences/0/uid"_json_pointer, ""), "uid-jwt");
  EXPECT_EQ(set[0].body["spec"]["template"]["spec"]["volumes"][0]["secret"]["items"],
            Json({{{"key", ".capstan-pending.signing-key"}, {"path", "signing-key"}}}));
  // Running: nothing written (the status says Pending already).
  EXPECT_THAT(Step(), IsEmpty());
  Finish("jwt-1-set", "Complete", "CompletionsReached");
  const std::vector<kube::testing::Write> test = Step();
  ASSERT_EQ(test.size(), 1u);
  EXPECT_EQ(test[0].Line(), "create jobs shop/jwt-1-test");
  Finish("jwt-1-test", "Complete", "CompletionsReached");
  const std::vector<kube::testing::Write> swap = Step();
  ASSERT_EQ(swap.size(), 1u);
  EXPECT_EQ(swap[0].Line(), "patch secrets shop/jwt-keys");
  EXPECT_EQ(State(), "Swapped");
  EXPECT_TRUE(SecretNow()["data"].contains("signing-key"));
  EXPECT_FALSE(SecretNow()["data"].contains(".capstan-pending.signing-key"));
}

TEST_F(SecretRotationHookTest, FailedStepDropsPendingAndSwitchesNothing) {
  PutRotation(hook::HookRotation());
  Start();
  Step();  // created empty
  Step();  // pending
  Step();  // set Job
  Finish("jwt-1-set", "Failed", "BackoffLimitExceeded");
  const std::vector<kube::testing::Write> abort = Step();
  ASSERT_EQ(abort.size(), 1u);
  EXPECT_EQ(abort[0].Line(), "patch secrets shop/jwt-keys");
  EXPECT_EQ(State(), "Idle");
  const Json ann = SecretNow()["metadata"]["annotations"];
  EXPECT_EQ(ann["capstan.dev/rotation-failed-step"], "set");
  EXPECT_EQ(ann["capstan.dev/rotation-message"],
            "hook step set: Job jwt-1-set failed: BackoffLimitExceeded: done");
  EXPECT_FALSE(SecretNow().contains("data") && !SecretNow()["data"].empty());
  EXPECT_THAT(Events(), ElementsAre("Warning RotationFailed"));
  const Json r = *server_.Get(NsPath(kCapstan, "shop", "secretrotations", "jwt"));
  EXPECT_EQ(r["status"]["reason"], "HookStepFailed");
  EXPECT_EQ(r["status"]["failedStep"], "set");
}

TEST_F(SecretRotationHookTest, AJobThatIsNotOursIsNeverAdopted) {
  const Json foreign = {{"apiVersion", "batch/v1"},
                        {"kind", "Job"},
                        {"metadata", {{"name", "jwt-1-set"}, {"namespace", "shop"}}},
                        {"spec", Json::object()}};
  server_.Put(JobPath("jwt-1-set"), foreign);
  PutRotation(hook::HookRotation());
  Start();
  Step();  // created empty
  Step();  // pending
  const Json before = *server_.Get(JobPath("jwt-1-set"));
  const std::vector<std::string> lines = Lines();
  // The create was answered AlreadyExists (the fake records only writes that took).
  EXPECT_THAT(lines, ElementsAre(kStatusWrite));
  EXPECT_EQ(StalledReason(), "Conflict");
  EXPECT_EQ(*server_.Get(JobPath("jwt-1-set")), before) << "never written";
  EXPECT_EQ(State(), "Pending") << "the pending values wait for the Job's owner";
}

}  // namespace
}  // namespace capstan::controller
