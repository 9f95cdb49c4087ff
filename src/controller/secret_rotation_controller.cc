#include "capstan/controller/secret_rotation_controller.h"

#include <algorithm>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "capstan/api/labels.h"
#include "capstan/common/json_util.h"
#include "capstan/common/log.h"
#include "capstan/common/metrics.h"
#include "capstan/common/status_macros.h"
#include "capstan/controller/projections.h"
#include "capstan/controller/release_hooks.h"
#include "capstan/policy/environment.h"
#include "capstan/render/rotation_job.h"
#include "capstan/rollout/hooks.h"
#include "capstan/secrets/keypair.h"
#include "capstan/secrets/rotation.h"
#include "capstan/secrets/secret_rotation.h"
#include "capstan/secrets/secret_writes.h"

namespace capstan::controller {
namespace {

using kube::Object;
namespace res = kube::resources;
namespace sec = secrets;

// The synthetic field a projected Deployment carries: the Secrets its pod template reads.
constexpr char kReferencedField[] = "capstanSecretRefs";
// ... and whether a Release controls it (restarted through the Release, never directly).
constexpr char kReleaseOwnedField[] = "capstanReleaseOwned";

// Deployments, StatefulSets, DaemonSets: identity, the secrets their template reads,
// the stamp, the update strategy and the counts that say whether a rollout finished.
Object ProjectWorkload(Object d) {
  Object out;
  Object& md = d["metadata"];
  for (const char* f : {"name", "namespace", "uid", "resourceVersion", "generation"}) {
    if (md.contains(f)) out["metadata"][f] = std::move(md[f]);
  }
  if (d.contains("/spec/replicas"_json_pointer)) {
    out["spec"]["replicas"] = d.at("/spec/replicas"_json_pointer);
  }
  if (d.contains("/spec/updateStrategy"_json_pointer)) {
    out["spec"]["updateStrategy"] = d.at("/spec/updateStrategy"_json_pointer);
  }
  const Object::json_pointer annotations("/spec/template/metadata/annotations");
  if (d.contains(annotations) && d.at(annotations).is_object()) {
    for (const auto& [k, v] : d.at(annotations).items()) {
      if (absl::StartsWith(k, sec::kAnnSecretVersionPrefix)) {
        out["spec"]["template"]["metadata"]["annotations"][k] = v;
      }
    }
  }
  Object refs = Object::array();
  if (d.contains("/spec/template"_json_pointer)) {
    for (const std::string& n : sec::SecretsReferenced(d.at("/spec/template"_json_pointer))) {
      refs.push_back(n);
    }
  }
  out[kReferencedField] = std::move(refs);
  if (md.contains("ownerReferences") && md["ownerReferences"].is_array()) {
    for (const Object& o : md["ownerReferences"]) {
      if (o.value("controller", false) && o.value("kind", "") == api::kReleaseKind &&
          o.value("apiVersion", "") == api::kApiVersion) {
        out[kReleaseOwnedField] = true;
      }
    }
  }
  if (d.contains("status") && d["status"].is_object()) {
    for (const char* f : {"observedGeneration", "replicas", "updatedReplicas", "readyReplicas",
                          "availableReplicas", "currentRevision", "updateRevision",
                          "desiredNumberScheduled", "updatedNumberScheduled", "numberAvailable"}) {
      if (d["status"].contains(f)) out["status"][f] = d["status"][f];
    }
  }
  return out;
}

std::vector<std::string> DeploymentSecretKeys(const Object& d) {
  std::vector<std::string> out;
  const std::string ns = JsonString(d, "/metadata/namespace"_json_pointer);
  if (!d.contains(kReferencedField)) return out;
  for (const Object& n : d[kReferencedField]) {
    if (n.is_string()) out.push_back(absl::StrCat(ns, "/", n.get<std::string>()));
  }
  return out;
}

// A Release (the Release controller's cache, shared: ProjectRelease keeps the spec): the
// Secrets its pod template reads, as DeploymentSecretKeys gives them for a workload.
std::vector<std::string> ReleaseSecretKeys(const Object& r) {
  std::vector<std::string> out;
  const Object::json_pointer tmpl("/spec/template");
  if (!r.contains(tmpl)) return out;
  const std::string ns = JsonString(r, "/metadata/namespace"_json_pointer);
  for (const std::string& n : sec::SecretsReferenced(r.at(tmpl))) {
    out.push_back(absl::StrCat(ns, "/", n));
  }
  return out;
}

std::vector<std::string> RotationSecretKeys(const Object& r) {
  const std::string name = JsonString(r, "/spec/secretName"_json_pointer);
  if (name.empty()) return {};
  return {absl::StrCat(JsonString(r, "/metadata/namespace"_json_pointer), "/", name)};
}

// "<Kind>:<namespace>/<name>" of a consumer workload.
std::string WorkloadKey(const std::string& kind, const std::string& ns, const std::string& name) {
  return absl::StrCat(kind, ":", ns, "/", name);
}

// The workloads a SecretRotation names (consumers.deployments and consumers.workloads).
std::vector<std::string> RotationWorkloadKeys(const Object& r) {
  std::vector<std::string> out;
  const std::string ns = JsonString(r, "/metadata/namespace"_json_pointer);
  const Object::json_pointer p("/spec/consumers/deployments");
  if (r.contains(p) && r.at(p).is_array()) {
    for (const Object& n : r.at(p)) {
      if (n.is_string()) out.push_back(WorkloadKey(sec::kDeploymentKind, ns, n.get<std::string>()));
    }
  }
  const Object::json_pointer w("/spec/consumers/workloads");
  if (r.contains(w) && r.at(w).is_array()) {
    for (const Object& n : r.at(w)) {
      out.push_back(WorkloadKey(JsonString(n, "/kind"_json_pointer), ns,
                                JsonString(n, "/name"_json_pointer)));
    }
  }
  return out;
}

// An error from a Secret write, without the API server's message: a
// validation message can quote submitted field values.
absl::Status ScrubbedSecretError(const absl::Status& s, const std::string& what) {
  std::string reason = kube::ApiReason(s);
  if (reason.empty()) reason = absl::StatusCodeToString(s.code());
  return absl::Status(s.code(), absl::StrCat(what, ": ", reason));
}

// A data value of a Secret as the application reads it ("" when absent or not base64).
std::string DecodedValue(const Object& data, const std::string& key) {
  std::string out;
  if (!data.is_object() || !data.contains(key) || !data[key].is_string()) return out;
  if (!absl::Base64Unescape(data[key].get<std::string>(), &out)) out.clear();
  return out;
}

void Wipe(std::string& s) { std::fill(s.begin(), s.end(), '\0'); }

// Whether any key is a keyPair (its public key and JWKS are derived from the private keys).
bool HasKeyPairs(const sec::SecretRotation& sr) {
  return std::any_of(sr.spec.keys.begin(), sr.spec.keys.end(),
                     [](const sec::KeySpec& k) { return k.kind == sec::KeySpec::Kind::kKeyPair; });
}

// "<namespace>/<SecretRotation>" of a hook step Job (its capstan.dev/secret-rotation label).
std::vector<std::string> HookJobRotationKeys(const Object& job) {
  const std::string owner =
      JsonString(job, "/metadata/labels/capstan.dev~1secret-rotation"_json_pointer);
  if (owner.empty()) return {};
  return {absl::StrCat(JsonString(job, "/metadata/namespace"_json_pointer), "/", owner)};
}

// A hook step Job as the planner reads it: rollout::ViewJob judges its state, as for a
// Release's hooks.
sec::HookJobView ViewHookJob(const Object& job, const std::string& rotation_uid) {
  const rollout::JobView v = rollout::ViewJob(job);
  sec::HookJobView out;
  out.name = v.name;
  out.step = JsonString(job, "/metadata/labels/capstan.dev~1rotation-step"_json_pointer);
  out.version = JsonString(job, "/metadata/labels/capstan.dev~1rotation-version"_json_pointer);
  out.owned =
      !rotation_uid.empty() && CapstanControllerUid(job, sec::kSecretRotationKind) == rotation_uid;
  out.state = v.state == rollout::JobView::State::kSucceeded ? sec::HookJobView::State::kSucceeded
              : v.state == rollout::JobView::State::kFailed  ? sec::HookJobView::State::kFailed
                                                             : sec::HookJobView::State::kRunning;
  out.message = v.message;
  return out;
}

// Performs a plan's database effect: reads the admin credential (and CA) Secrets
// directly (Capstan does not cache Secrets it does not manage), then checks the admin
// or makes the user's password the one in `data[step.password_key]`.
sec::DbStepOutcome RunDatabaseStep(kube::Client& client, sec::PasswordDatabase* database,
                                   const sec::SecretRotation& sr, const std::string& ns,
                                   const Object& data, const sec::DatabaseStep& step) {
  const sec::PostgresTarget& pg = *sr.spec.postgresql;
  sec::DbStepOutcome fail;
  fail.step = "connect";
  if (database == nullptr) {
    fail.message = "this operator has no PostgreSQL client";
    return fail;
  }
  auto read = [&](const std::string& name, std::string* why) -> std::optional<Object> {
    absl::StatusOr<Object> got = client.Get(res::Secrets(), ns, name);
    if (!got.ok()) {
      *why = absl::StrCat("cannot read Secret ", name, ": ",
                          got.status().code() == absl::StatusCode::kNotFound
                              ? std::string("not found")
                              : ScrubbedSecretError(got.status(), "read").message());
      return std::nullopt;
    }
    return got->contains("data") ? (*got)["data"] : Object::object();
  };
  std::optional<Object> admin_data = read(pg.admin_secret, &fail.message);
  if (!admin_data) return fail;
  sec::DbCredential admin{DecodedValue(*admin_data, pg.admin_username_key),
                          DecodedValue(*admin_data, pg.admin_password_key)};
  if (admin.user.empty() || admin.password.empty()) {
    fail.message = absl::StrCat("Secret ", pg.admin_secret, " has no keys ", pg.admin_username_key,
                                " and ", pg.admin_password_key);
    return fail;
  }
  sec::DbConnection conn{pg.host, pg.port, pg.database, pg.ssl_mode, ""};
  if (!pg.ca_secret.empty()) {
    std::optional<Object> ca_data = read(pg.ca_secret, &fail.message);
    if (!ca_data) return fail;
    conn.ca_pem = DecodedValue(*ca_data, pg.ca_key);
    if (conn.ca_pem.empty()) {
      fail.message = absl::StrCat("Secret ", pg.ca_secret, " has no key ", pg.ca_key);
      return fail;
    }
  }
  sec::DbStepOutcome out;
  if (step.kind == sec::DatabaseStep::Kind::kCheckAdmin) {
    out = sec::CheckAdmin(*database, conn, admin);
  } else {
    sec::DbCredential target{step.user, DecodedValue(data, step.password_key)};
    if (target.password.empty()) {
      out.step = "set";
      out.message = absl::StrCat("no value in ", step.password_key);
    } else if (!step.test) {
      out = sec::SetPasswordBack(*database, conn, admin, target);
    } else {
      out = sec::EnsurePassword(*database, conn, admin, target, step.create, step.member_of);
    }
    Wipe(target.password);
  }
  Wipe(admin.password);
  return out;
}

}  // namespace

SecretRotationController::SecretRotationController(kube::Client& client, Options options,
                                                   SecretRotationEventSink events,
                                                   const Clock& clock, secrets::RandomSource& rng)
    : client_(client),
      options_(std::move(options)),
      events_(std::move(events)),
      clock_(clock),
      rng_(rng) {
  auto make = [&](const kube::Resource& r, std::string selector,
                  std::function<Object(Object)> projection, bool compact = false) {
    kube::InformerOptions o;
    o.ns = options_.watch_namespace;
    o.label_selector = std::move(selector);
    if (projection) o.projection = std::move(projection);
    o.compact = compact;
    return &loop_.Shared(r, std::move(o));
  };
  rotations_ = make(res::SecretRotations(), "", nullptr);
  // Only Secrets Capstan manages are listed and watched.
  secrets_ = make(res::Secrets(), sec::kLabelSecretRotation, ProjectSecretKeys);
  deployments_ = make(res::Deployments(), "", ProjectWorkload);
  statefulsets_ = make(res::StatefulSets(), "", ProjectWorkload);
  daemonsets_ = make(res::DaemonSets(), "", ProjectWorkload);
  hook_jobs_ = make(res::Jobs(), sec::kLabelSecretRotation, ProjectHookJob);
  hook_jobs_->AddIndex("rotation", HookJobRotationKeys);
  hook_jobs_->AddHandler([this](const Object* old_obj, const Object* new_obj) {
    for (const Object* o : {old_obj, new_obj}) {
      if (o == nullptr) continue;
      for (const std::string& k : HookJobRotationKeys(*o)) queue_->Add(k);
    }
  });
  // The Release controller's cache of Releases, with its options (ProjectRelease, packed):
  // in the same namespace scope it is one informer, listed and watched once.
  releases_ = make(res::Releases(), "", ProjectRelease, /*compact=*/true);
  rotations_->AddIndex("secret", RotationSecretKeys);
  rotations_->AddIndex("workload", RotationWorkloadKeys);

  rotations_->AddHandler([this](const Object* old_obj, const Object* new_obj) {
    const Object* o = new_obj != nullptr ? new_obj : old_obj;
    queue_->Add(kube::ObjectKey(*o), Loop::EventPriority(*rotations_));
  });
  secrets_->AddHandler([this](const Object* old_obj, const Object* new_obj) {
    for (const Object* o : {old_obj, new_obj}) {
      if (o == nullptr) continue;
      const std::string owner =
          JsonString(*o, "/metadata/labels/capstan.dev~1secret-rotation"_json_pointer);
      if (!owner.empty()) {
        queue_->Add(absl::StrCat(JsonString(*o, "/metadata/namespace"_json_pointer), "/", owner));
      }
    }
  });
  for (const auto& [kind, informer] : Workloads()) {
    const kube::Informer::IndexFunc secret_keys =
        kind == sec::kReleaseKind ? ReleaseSecretKeys : DeploymentSecretKeys;
    informer->AddIndex("secret", secret_keys);
    informer->AddHandler(
        [this, kind = kind, secret_keys](const Object* old_obj, const Object* new_obj) {
          for (const Object* o : {old_obj, new_obj}) {
            if (o == nullptr) continue;
            for (const std::string& secret_key : secret_keys(*o)) {
              for (const auto& r : rotations_->ByIndex("secret", secret_key)) {
                queue_->Add(kube::ObjectKey(*r));
              }
            }
            const std::string key =
                WorkloadKey(kind, JsonString(*o, "/metadata/namespace"_json_pointer),
                            JsonString(*o, "/metadata/name"_json_pointer));
            for (const auto& r : rotations_->ByIndex("workload", key)) {
              queue_->Add(kube::ObjectKey(*r));
            }
          }
        });
  }
}

std::vector<std::pair<std::string, kube::Informer*>> SecretRotationController::Workloads() const {
  return {{sec::kDeploymentKind, deployments_},
          {sec::kStatefulSetKind, statefulsets_},
          {sec::kDaemonSetKind, daemonsets_},
          {sec::kReleaseKind, releases_}};
}

SecretRotationController::~SecretRotationController() { Stop(); }

void SecretRotationController::StartCaches() { loop_.StartCaches(); }

bool SecretRotationController::HasSynced() const { return loop_.HasSynced(); }

void SecretRotationController::StartWorkers() {
  loop_.StartWorkers(
      options_.workers, [this](const std::string& key) { return Reconcile(key); }, absl::Seconds(5),
      [this] { Resync(); });
}

void SecretRotationController::Resync() {
  // Every 5 s: refresh the seconds-until-next gauges (a countdown goes stale
  // between reconciles). Every `resync`: re-check every SecretRotation.
  const absl::Time now = clock_.Now();
  const bool resync = now - last_resync_ >= options_.resync;
  if (resync) last_resync_ = now;
  for (const auto& r : rotations_->List()) {
    const std::string next = JsonString(*r, "/status/nextRotationTime"_json_pointer);
    if (std::optional<absl::Time> t = sec::ParseRfc3339(next)) {
      Metrics::Get()
          .secret_rotation_next_seconds
          ->Add({{"namespace", JsonString(*r, "/metadata/namespace"_json_pointer)},
                 {"name", JsonString(*r, "/metadata/name"_json_pointer)}})
          .Set(absl::ToDoubleSeconds(*t - now));
    }
    if (resync) queue_->Add(kube::ObjectKey(*r), kube::WorkQueue::Priority::kLow);
  }
}

void SecretRotationController::Stop() { loop_.Stop(); }

void SecretRotationController::ForgetMetrics(const std::string& key) {
  const std::vector<std::string> parts = absl::StrSplit(key, absl::MaxSplits('/', 1));
  if (parts.size() != 2) return;
  for (auto* family :
       {Metrics::Get().secret_rotation_next_seconds, Metrics::Get().secret_rotation_due}) {
    family->Remove(&family->Add({{"namespace", parts[0]}, {"name", parts[1]}}));
  }
}

sec::VerifyVerdict SecretRotationController::Verify(const sec::SecretRotation& sr,
                                                    const std::string& version, absl::Time now,
                                                    absl::Duration* requeue,
                                                    std::vector<rollout::Event>* events) {
  sec::VerifyVerdict out;
  out.run = sec::VerifyRunName(sr.name, version);
  if (options_.analysis == nullptr) {
    out.state = sec::VerifyVerdict::State::kInvalid;
    out.message = "this operator runs no analysis";
    return out;
  }
  const AnalysisGates::Owner owner{api::kApiVersion, sec::kSecretRotationKind,  sr.name, sr.ns,
                                   sr.uid,           sec::kLabelSecretRotation, ""};
  AnalysisGates::Request r;
  r.owner = &owner;
  r.gate = "verify";
  r.spec = &*sr.spec.verify_analysis;
  // RunName(<rotation>, "v<version>", "verify") is VerifyRunName: one run per version,
  // found again (never created twice) after a restart.
  r.revision = absl::StrCat("v", version);
  r.rollout_complete = true;  // every consumer is restarted and healthy
  r.implicit_args = {{"namespace", sr.ns}, {"secret", sr.spec.secret_name}, {"version", version}};
  absl::StatusOr<AnalysisGates::Result> res = options_.analysis->Step(r, now);
  if (!res.ok()) {
    // The API server did not answer: no verdict yet (Running), look again soon.
    spdlog::warn("secretrotation={}/{} verification {}: {}", sr.ns, sr.name, out.run,
                 res.status().message());
    *requeue = options_.poll;
    return out;
  }
  *events = std::move(res->events);
  out.run = res->verdict.run;
  out.message = res->verdict.message;
  using S = rollout::AnalysisVerdict::State;
  if (res->verdict.invalid) {
    out.state = sec::VerifyVerdict::State::kInvalid;
  } else if (res->verdict.state == S::kSuccessful) {
    out.state = sec::VerifyVerdict::State::kSuccessful;
  } else if (res->verdict.state == S::kFailed) {
    // The gate folds Error into Failed; the run's message keeps the metric's phase.
    out.state = absl::StrContains(out.message, " Error: ") ? sec::VerifyVerdict::State::kError
                                                           : sec::VerifyVerdict::State::kFailed;
  } else if (res->verdict.state == S::kInconclusive) {
    out.state = sec::VerifyVerdict::State::kInconclusive;
  }
  if (res->requeue_after) *requeue = *res->requeue_after;
  return out;
}

std::optional<sec::RotationHold> SecretRotationController::RotationHoldOf(const std::string& ns,
                                                                          absl::Time now) const {
  absl::StatusOr<NamespaceEnvironment> ne = options_.environment_of(ns);
  if (!ne.ok()) {
    return sec::RotationHold{.reason = "EnvironmentUnknown",
                             .message = std::string(ne.status().message())};
  }
  if (!ne->hold_reason.empty()) {
    return sec::RotationHold{.reason = ne->hold_reason, .message = ne->hold_message};
  }
  if (!ne->environment) return std::nullopt;
  const std::optional<policy::FreezeHit> f =
      policy::ActiveFreeze(ne->environment->spec.policies.freeze_windows, now);
  if (!f) return std::nullopt;
  return sec::RotationHold{
      .reason = "FrozenUntil",
      .message = absl::StrCat("Environment ", ne->environment->metadata.name, " is frozen until ",
                              policy::FormatInZone(f->until, f->time_zone), " (window ", f->window,
                              "); set spec.ignoreFreeze to rotate in a freeze"),
      .until = f->until};
}

// One reconcile of one SecretRotation: observe (the Secret, its consumers, hook Jobs,
// holds, the verification's verdict) -> secrets::PlanRotation -> apply the plan's
// effects in their order (database, hook Job, consumer stamps, the one Secret write)
// -> events, metrics and status. Each step that can end the pass early (a stall, an
// adoption) returns the result to return; nullopt goes on.
class SecretRotationController::Pass {
 public:
  using Early = std::optional<kube::ReconcileResult>;

  Pass(SecretRotationController& c, std::string key, std::shared_ptr<const Object> obj)
      : c_(c), key_(std::move(key)), obj_(std::move(obj)), now_(c.clock_.Now()) {
    const std::vector<std::string> parts = absl::StrSplit(key_, absl::MaxSplits('/', 1));
    ns_ = parts[0];
    name_ = parts.size() > 1 ? parts[1] : "";
    if (obj_->contains("status") && (*obj_)["status"].is_object()) previous_ = (*obj_)["status"];
  }
  ~Pass() {
    // The values read for this pass (base64) do not outlive it in the heap unwiped.
    for (auto& [k, v] : data_.items()) {
      if (v.is_string()) Wipe(v.get_ref<std::string&>());
    }
  }
  Pass(const Pass&) = delete;
  Pass& operator=(const Pass&) = delete;

  // A spec that does not parse or validate: Stalled InvalidSpec, nothing else written.
  absl::StatusOr<kube::ReconcileResult> Invalid(const absl::StatusOr<sec::SecretRotation>& parsed,
                                                const std::vector<std::string>& problems);
  absl::StatusOr<kube::ReconcileResult> Run(const sec::SecretRotation& sr);

 private:
  // Finds the Secret and decides whether it is this rotation's to manage (adopting it
  // when the spec allows: that write ends the pass).
  absl::StatusOr<Early> ResolveSecret();
  absl::StatusOr<sec::RotationInput> Observe(absl::Duration* verify_requeue);
  std::vector<sec::ConsumerView> Consumers() const;
  // The plan's database effect (spec.target.postgresql), before any write; a failed
  // first step replaces the plan (PlanDatabaseFailure).
  absl::Status RunDatabaseEffect(const sec::RotationInput& in, sec::RotationPlan& plan);
  // spec.target.hook: the step Job to start, then the Jobs of earlier rotations to delete.
  absl::StatusOr<Early> ApplyHookJobs(const sec::RotationInput& in, const sec::RotationPlan& plan);
  // The consumers' restart stamps (before the Secret records that they were stamped).
  absl::Status StampConsumers(const sec::RotationPlan& plan);
  // The one Secret write of the step (create or patch).
  absl::StatusOr<Early> WriteSecret(const sec::RotationInput& in, const sec::RotationPlan& plan);
  // Events, metrics and status; when to look again.
  absl::StatusOr<kube::ReconcileResult> Finish(const sec::RotationInput& in,
                                               const sec::RotationPlan& plan,
                                               absl::Duration verify_requeue);

  void Emit(const std::string& type, const std::string& reason, const std::string& note) const {
    if (c_.events_) c_.events_(*obj_, type, reason, note);
  }
  absl::Status WriteStatus(const Object& status);
  absl::StatusOr<kube::ReconcileResult> Stall(sec::StallReason reason, const std::string& message,
                                              absl::Duration recheck = absl::ZeroDuration());
  // The cache holds no values (ProjectSecretKeys): a step that needs them reads the
  // Secret, and only at the version the plan was made from (else the plan is made again).
  absl::Status ReadValues();
  const std::string& SecretName() const { return sr_->spec.secret_name; }
  std::string ResourceVersionOfSecret() const {
    return JsonString(*secret_, "/metadata/resourceVersion"_json_pointer);
  }

  SecretRotationController& c_;
  const std::string key_;
  const std::shared_ptr<const Object> obj_;
  const absl::Time now_;
  std::string ns_;
  std::string name_;
  Object previous_ = Object::object();  // the status as observed
  const sec::SecretRotation* sr_ = nullptr;
  std::shared_ptr<const Object> secret_;  // the cached (projected) Secret; null: none
  Object data_ = Object::object();        // its values, once ReadValues() read them
  bool have_values_ = false;
};

absl::StatusOr<kube::ReconcileResult> SecretRotationController::Reconcile(const std::string& key) {
  std::shared_ptr<const Object> obj = rotations_->Get(key);
  if (obj == nullptr) {
    // Deleted: a Secret Capstan created goes with it (ownerReference); an
    // adopted one stays.
    ForgetMetrics(key);
    return kube::ReconcileResult{};
  }
  if (obj->contains("/metadata/deletionTimestamp"_json_pointer)) return kube::ReconcileResult{};
  Pass pass(*this, key, obj);
  absl::StatusOr<sec::SecretRotation> parsed = sec::ParseSecretRotation(*obj);
  std::vector<std::string> problems;
  if (!parsed.ok()) {
    problems.push_back(std::string(parsed.status().message()));
  } else {
    problems = sec::ValidateSecretRotation(*parsed);
  }
  if (!problems.empty()) return pass.Invalid(parsed, problems);
  return pass.Run(*parsed);
}

absl::Status SecretRotationController::Pass::WriteStatus(const Object& status) {
  if (status == previous_) return absl::OkStatus();
  Object body = {{"apiVersion", api::kApiVersion},
                 {"kind", sec::kSecretRotationKind},
                 {"metadata", {{"name", name_}, {"namespace", ns_}}},
                 {"status", status}};
  kube::ApplyOptions ao;
  ao.force = true;  // Capstan alone writes SecretRotation status.
  ao.subresource = "status";
  return c_.client_.Apply(res::SecretRotations(), ns_, name_, body, ao).status();
}

absl::StatusOr<kube::ReconcileResult> SecretRotationController::Pass::Stall(
    sec::StallReason reason, const std::string& message, absl::Duration recheck) {
  const std::string name = sec::StallReasonName(reason);
  if (previous_.value("message", "") != message) Emit("Warning", name, message);
  RETURN_IF_ERROR(WriteStatus(sec::StalledStatus(*sr_, reason, message, now_, previous_)));
  spdlog::info("secretrotation={} stalled reason={} secret={}", key_, name, SecretName());
  kube::ReconcileResult r;
  r.requeue_after = recheck;
  return r;
}

absl::StatusOr<kube::ReconcileResult> SecretRotationController::Pass::Invalid(
    const absl::StatusOr<sec::SecretRotation>& parsed, const std::vector<std::string>& problems) {
  sec::SecretRotation shell;
  shell.generation = obj_->value("/metadata/generation"_json_pointer, int64_t{0});
  if (parsed.ok()) shell = *parsed;
  const std::string message = absl::StrJoin(problems, "; ");
  const sec::StallReason reason = sec::StallReason::kInvalidSpec;
  if (previous_.value("message", "") != message) {
    Emit("Warning", sec::StallReasonName(reason), message);
  }
  RETURN_IF_ERROR(WriteStatus(sec::StalledStatus(shell, reason, message, now_, previous_)));
  spdlog::info("secretrotation={} stalled reason=InvalidSpec message={}", key_, message);
  return kube::ReconcileResult{};
}

absl::Status SecretRotationController::Pass::ReadValues() {
  if (have_values_ || secret_ == nullptr) return absl::OkStatus();
  absl::StatusOr<Object> got = c_.client_.Get(res::Secrets(), ns_, SecretName());
  if (!got.ok()) {
    return ScrubbedSecretError(got.status(), absl::StrCat("read Secret ", SecretName()));
  }
  if (JsonString(*got, "/metadata/resourceVersion"_json_pointer) != ResourceVersionOfSecret()) {
    return absl::AbortedError(
        absl::StrCat("Secret ", SecretName(), " changed since it was cached; planning again"));
  }
  if (auto d = got->find("data"); d != got->end() && d->is_object()) data_ = std::move(*d);
  have_values_ = true;
  return absl::OkStatus();
}

absl::StatusOr<kube::ReconcileResult> SecretRotationController::Pass::Run(
    const sec::SecretRotation& sr) {
  sr_ = &sr;
  ASSIGN_OR_RETURN(Early resolved, ResolveSecret());
  if (resolved) return *resolved;

  absl::Duration verify_requeue = absl::ZeroDuration();
  ASSIGN_OR_RETURN(const sec::RotationInput in, Observe(&verify_requeue));
  sec::RotationPlan plan = sec::PlanRotation(in);
  if (!plan.conflict.empty())
    return Stall(sec::StallReason::kConflict, plan.conflict, plan.requeue_after);
  // Values a write needs, read before anything is written: copies, and a keyPair's
  // private keys (its public key and JWKS are derived from them in the write).
  if (!plan.change.copy.empty() || (HasKeyPairs(sr) && plan.action != sec::Action::kNone)) {
    RETURN_IF_ERROR(ReadValues());
  }

  RETURN_IF_ERROR(RunDatabaseEffect(in, plan));
  ASSIGN_OR_RETURN(Early hook, ApplyHookJobs(in, plan));
  if (hook) return *hook;
  RETURN_IF_ERROR(StampConsumers(plan));
  ASSIGN_OR_RETURN(Early written, WriteSecret(in, plan));
  if (written) return *written;
  return Finish(in, plan, verify_requeue);
}

absl::StatusOr<SecretRotationController::Pass::Early>
SecretRotationController::Pass::ResolveSecret() {
  secret_ = c_.secrets_->Get(ns_, SecretName());
  if (secret_ == nullptr) {
    // Not labelled (or just created and not cached yet): one direct read.
    absl::StatusOr<Object> got = c_.client_.Get(res::Secrets(), ns_, SecretName());
    if (got.ok()) {
      secret_ = std::make_shared<const Object>(ProjectSecretKeys(std::move(*got)));
    } else if (got.status().code() != absl::StatusCode::kNotFound) {
      return ScrubbedSecretError(got.status(), absl::StrCat("read Secret ", SecretName()));
    }
  }
  const sec::OwnershipDecision owned = sec::DecideOwnership(*sr_, secret_.get());
  switch (owned.ownership) {
    case sec::Ownership::kConflictForeign:
      // An unlabelled Secret is not in the label-selected cache, so its owner's consent
      // (the allow-adoption annotation) raises no event here: look again now and then.
      return Stall(sec::StallReason::kConflict, owned.message, absl::Seconds(10));
    case sec::Ownership::kConflictOther:
    case sec::Ownership::kConflictType:
      return Stall(sec::StallReason::kConflict, owned.message);
    case sec::Ownership::kAdopt: {
      // Adopt: label only, no ownerReference (deleting the SecretRotation
      // must not delete a Secret someone else made).
      absl::Status s = c_.client_
                           .MergePatch(res::Secrets(), ns_, SecretName(),
                                       sec::AdoptPatch(*sr_, ResourceVersionOfSecret()))
                           .status();
      if (!s.ok()) return ScrubbedSecretError(s, absl::StrCat("adopt Secret ", SecretName()));
      spdlog::info("secretrotation={} adopted secret={}", key_, SecretName());
      Emit("Normal", "Adopted",
           absl::StrCat("labelled existing Secret ", SecretName(),
                        " as managed by this SecretRotation (no ownerReference)"));
      kube::ReconcileResult again;
      again.requeue_after = absl::Milliseconds(500);
      return again;
    }
    case sec::Ownership::kMissing:
    case sec::Ownership::kManaged:
      break;
  }
  return Early{};
}

std::vector<sec::ConsumerView> SecretRotationController::Pass::Consumers() const {
  std::vector<sec::ConsumerView> out;
  const sec::SecretRotation& sr = *sr_;
  switch (sr.spec.consumer_mode) {
    case sec::ConsumerMode::kAuto:
      for (const auto& [kind, informer] : c_.Workloads()) {
        for (const auto& w : informer->ByIndex("secret", absl::StrCat(ns_, "/", SecretName()))) {
          // A Release's Deployments restart through the Release (its own rollout).
          if (w->value(kReleaseOwnedField, false)) continue;
          out.push_back(sec::ViewWorkload(kind, *w, SecretName()));
        }
      }
      break;
    case sec::ConsumerMode::kExplicit: {
      std::vector<std::pair<std::string, std::string>> named;
      for (const std::string& d : sr.spec.consumer_deployments) {
        named.emplace_back(sec::kDeploymentKind, d);
      }
      named.insert(named.end(), sr.spec.consumer_workloads.begin(),
                   sr.spec.consumer_workloads.end());
      for (const auto& [kind, wname] : named) {
        for (const auto& [k, informer] : c_.Workloads()) {
          if (k != kind) continue;
          if (auto live = informer->Get(ns_, wname); live != nullptr) {
            out.push_back(sec::ViewWorkload(kind, *live, SecretName()));
          }
        }
      }
      break;
    }
    case sec::ConsumerMode::kNone:
      break;
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::tie(a.name, a.kind) < std::tie(b.name, b.kind);
  });
  out.erase(std::unique(
                out.begin(), out.end(),
                [](const auto& a, const auto& b) { return a.name == b.name && a.kind == b.kind; }),
            out.end());
  return out;
}

absl::StatusOr<sec::RotationInput> SecretRotationController::Pass::Observe(
    absl::Duration* verify_requeue) {
  const sec::SecretRotation& sr = *sr_;
  sec::RotationInput in;
  in.rotation = &sr;
  in.now = now_;
  in.poll = c_.options_.poll;
  if (secret_ != nullptr) {
    in.secret.exists = true;
    if (secret_->contains("/metadata/annotations"_json_pointer)) {
      for (const auto& [k, v] : secret_->at("/metadata/annotations"_json_pointer).items()) {
        if (v.is_string()) in.secret.annotations[k] = v.get<std::string>();
      }
    }
    if (secret_->contains("data") && (*secret_)["data"].is_object()) {
      for (const auto& [k, v] : (*secret_)["data"].items()) in.secret.data_keys.insert(k);
    }
  }
  in.consumers = Consumers();
  if (sr.spec.postgresql) {
    RETURN_IF_ERROR(ReadValues());
    in.db_user = DecodedValue(data_, sr.spec.postgresql->username_key);
  }
  if (!sr.spec.ignore_freeze && c_.options_.environment_of) {
    in.hold = c_.RotationHoldOf(ns_, now_);
  }
  if (sr.spec.hook) {
    for (const auto& j : c_.hook_jobs_->ByIndex("rotation", key_)) {
      in.hook_jobs.push_back(ViewHookJob(*j, sr.uid));
    }
  }
  // spec.verify.analysis: the verification run's verdict, once the Secret names it.
  const auto& ann = in.secret.annotations;
  if (sr.spec.verify_analysis && ann.count(sec::kAnnVerifyRun) &&
      sec::StateOf(ann) == sec::State::kRestarted) {
    const std::string version = ann.count(sec::kAnnVersion) ? ann.at(sec::kAnnVersion) : "0";
    std::vector<rollout::Event> gate_events;
    in.verify = c_.Verify(sr, version, now_, verify_requeue, &gate_events);
    for (const rollout::Event& e : gate_events) Emit(e.type, e.reason, e.note);
  }
  return in;
}

absl::Status SecretRotationController::Pass::RunDatabaseEffect(const sec::RotationInput& in,
                                                               sec::RotationPlan& plan) {
  if (plan.db.kind == sec::DatabaseStep::Kind::kNone) return absl::OkStatus();
  sec::PasswordDatabase* const database = c_.options_.database;
  const sec::DbStepOutcome o = RunDatabaseStep(c_.client_, database, *sr_, ns_, data_, plan.db);
  if (o.ok) {
    if (plan.db.kind == sec::DatabaseStep::Kind::kSetPassword) {
      spdlog::info(
          "secretrotation={} database user={} password {}", key_, plan.db.user,
          o.already_done ? "already set (found by logging in), not set again" : "set and tested");
    }
    return absl::OkStatus();
  }
  spdlog::warn("secretrotation={} database step={} user={} failed: {}", key_, o.step, plan.db.user,
               o.message);
  const sec::State state = sec::StateOf(in.secret.annotations);
  if (state != sec::State::kIdle && state != sec::State::kPending) {
    // Restoring the previous password: retried (with backoff) until it works.
    return absl::UnavailableError(absl::StrCat("database step ", o.step, ": ", o.message));
  }
  plan = sec::PlanDatabaseFailure(in, o.step, o.message);
  if (plan.db.kind == sec::DatabaseStep::Kind::kNone) return absl::OkStatus();
  // SingleUser after a failed test: the previous password back before the Secret says
  // the rotation failed; retried (state Pending, with backoff) until it works.
  const sec::DbStepOutcome back = RunDatabaseStep(c_.client_, database, *sr_, ns_, data_, plan.db);
  if (!back.ok) {
    spdlog::warn("secretrotation={} database step={} user={} failed: {}", key_, back.step,
                 plan.db.user, back.message);
    return absl::UnavailableError(absl::StrCat("database step ", back.step, ": ", back.message));
  }
  spdlog::info("secretrotation={} database user={} previous password set back", key_, plan.db.user);
  return absl::OkStatus();
}

absl::StatusOr<SecretRotationController::Pass::Early> SecretRotationController::Pass::ApplyHookJobs(
    const sec::RotationInput& in, const sec::RotationPlan& plan) {
  if (plan.run_job) {
    const sec::HookJobRun& run = *plan.run_job;
    const sec::HookTarget& hook = *sr_->spec.hook;
    const Object body =
        render::RenderRotationJob({.name = run.name,
                                   .ns = ns_,
                                   .rotation = sr_->name,
                                   .rotation_uid = sr_->uid,
                                   .secret = SecretName(),
                                   .step = run.step,
                                   .version = run.version,
                                   .items = run.items},
                                  run.step == sec::kHookStepSet ? hook.set : hook.test);
    absl::StatusOr<Object> created = c_.client_.Create(res::Jobs(), ns_, body);
    if (created.ok()) {
      spdlog::info("secretrotation={} create Job {} (hook step {} of version {})", key_, run.name,
                   run.step, run.version);
      Emit("Normal", "HookStarted",
           absl::StrCat("hook step ", run.step, " Job ", run.name, " started for version ",
                        run.version, " of Secret ", SecretName()));
    } else if (created.status().code() == absl::StatusCode::kAlreadyExists) {
      // Ours (a cache behind our own create, or a predecessor killed after creating it):
      // it runs, and is never created again. Someone else's: never adopted.
      ASSIGN_OR_RETURN(Object live, c_.client_.Get(res::Jobs(), ns_, run.name));
      if (CapstanControllerUid(live, sec::kSecretRotationKind) != sr_->uid) {
        return Stall(
            sec::StallReason::kConflict,
            absl::StrCat("Job ", run.name, " (the ", run.step, " step of version ", run.version,
                         ") exists and is not owned by this SecretRotation; Capstan "
                         "does not adopt objects it did not create. Delete or rename it"),
            absl::Seconds(10));
      }
    } else {
      return created.status();
    }
  }
  for (const std::string& job_name : sec::HookJobsToDelete(in)) {
    std::shared_ptr<const Object> live = c_.hook_jobs_->Get(ns_, job_name);
    if (live == nullptr) continue;
    kube::DeleteOptions d;
    d.precondition_uid = JsonString(*live, "/metadata/uid"_json_pointer);
    d.propagation_policy = "Background";  // its pods go too (a Job's default orphans them)
    spdlog::info("secretrotation={} delete Job {} (a hook step of an earlier rotation)", key_,
                 job_name);
    if (absl::Status s = c_.client_.Delete(res::Jobs(), ns_, job_name, d);
        !s.ok() && s.code() != absl::StatusCode::kNotFound) {
      spdlog::warn("secretrotation={} cannot delete Job {}: {}", key_, job_name, s.message());
    }
  }
  return Early{};
}

absl::Status SecretRotationController::Pass::StampConsumers(const sec::RotationPlan& plan) {
  for (const sec::ConsumerRef& c : plan.stamp) {
    const kube::Resource& r = c.kind == sec::kStatefulSetKind ? res::StatefulSets()
                              : c.kind == sec::kDaemonSetKind ? res::DaemonSets()
                              : c.kind == sec::kReleaseKind   ? res::Releases()
                                                              : res::Deployments();
    // A Release: the annotation on its metadata (never its spec); the Release controller
    // makes it a revision of its own (policy/restart.h).
    const Object patch =
        c.kind == sec::kReleaseKind
            ? Object{{"metadata",
                      {{"annotations",
                        {{sec::StampAnnotationKey(SecretName()), plan.stamp_value}}}}}}
            : sec::StampPatch(SecretName(), plan.stamp_value);
    absl::Status s = c_.client_.MergePatch(r, ns_, c.name, patch).status();
    if (s.code() == absl::StatusCode::kNotFound) continue;  // Gone meanwhile.
    if (!s.ok()) return s;
    spdlog::info("secretrotation={} restart {}={} secret-version={}", key_,
                 absl::AsciiStrToLower(c.kind), c.name, plan.stamp_value);
  }
  return absl::OkStatus();
}

absl::StatusOr<SecretRotationController::Pass::Early> SecretRotationController::Pass::WriteSecret(
    const sec::RotationInput& in, const sec::RotationPlan& plan) {
  if (plan.action == sec::Action::kNone) return Early{};
  const sec::SecretRotation& sr = *sr_;
  const sec::SecretChange& change = plan.change;
  Object out_data = Object::object();
  for (const auto& [dk, i] : change.generate) {
    ASSIGN_OR_RETURN(std::string value, sec::GenerateValue(sr.spec.keys[i], c_.rng_));
    out_data[dk] = absl::Base64Escape(value);
    Wipe(value);
  }
  for (const auto& [to, from] : change.copy) {
    if (data_.contains(from)) out_data[to] = data_[from];  // Still base64: never decoded.
  }
  for (const auto& [to, value] : change.set_values) out_data[to] = absl::Base64Escape(value);
  for (const std::string& k : change.remove) out_data[k] = nullptr;
  if (HasKeyPairs(sr)) {
    // A keyPair's public key and JWKS follow from the private keys after the write.
    absl::StatusOr<Object> derived = sec::DeriveKeyPairData(sr.spec, data_, out_data);
    if (!derived.ok()) {
      // A private key someone replaced with something unreadable: nothing is written
      // until the Secret changes again (the message names the data key, never a value).
      return Stall(sec::StallReason::kInvalidKey,
                   absl::StrCat("Secret ", SecretName(), ": ", derived.status().message(),
                                "; nothing written"));
    }
    for (auto& [k, v] : derived->items()) out_data[k] = std::move(v);
  }
  Object annotations = Object::object();
  for (const auto& [k, v] : change.set_annotations) annotations[k] = v;
  absl::Status s;
  if (plan.action == sec::Action::kCreate) {
    s = c_.client_.Create(res::Secrets(), ns_, sec::SecretCreateBody(sr, annotations, out_data))
            .status();
  } else {
    for (const std::string& k : change.remove_annotations) annotations[k] = nullptr;
    s = c_.client_
            .MergePatch(res::Secrets(), ns_, SecretName(),
                        sec::SecretStepPatch(ResourceVersionOfSecret(), annotations, out_data))
            .status();
  }
  if (!s.ok()) {
    return ScrubbedSecretError(
        s, absl::StrCat("write Secret ", SecretName(), " (", sec::ActionName(plan.action), ")"));
  }
  const std::map<std::string, std::string> after =
      sec::ApplyAnnotations(in.secret.annotations, change);
  spdlog::info("secretrotation={} secret={} action={} state={} version={}", key_, SecretName(),
               sec::ActionName(plan.action), sec::StateName(sec::StateOf(after)),
               after.count(sec::kAnnVersion) ? after.at(sec::kAnnVersion) : "");
  return Early{};
}

absl::StatusOr<kube::ReconcileResult> SecretRotationController::Pass::Finish(
    const sec::RotationInput& in, const sec::RotationPlan& plan, absl::Duration verify_requeue) {
  const sec::SecretRotation& sr = *sr_;
  for (const sec::PlanEvent& e : plan.events) Emit(e.type, e.reason, e.note);
  if (!plan.result.empty()) {
    Metrics::Get()
        .secret_rotations
        ->Add({{"namespace", ns_},
               {"name", name_},
               {"target", sr.spec.postgresql ? "postgresql"
                          : sr.spec.hook     ? "hook"
                                             : "none"},
               {"result", plan.result}})
        .Increment();
  }
  const std::map<std::string, std::string> after =
      sec::ApplyAnnotations(in.secret.annotations, plan.change);
  if (std::optional<absl::Time> next = sec::NextRotation(sr, after)) {
    Metrics::Get()
        .secret_rotation_next_seconds->Add({{"namespace", ns_}, {"name", name_}})
        .Set(absl::ToDoubleSeconds(*next - now_));
  }
  const std::optional<absl::Time> due_since = sec::RotationDueSince(sr, after, now_);
  if (sr.spec.trigger == sec::RotationTrigger::kManual) {
    Metrics::Get()
        .secret_rotation_due->Add({{"namespace", ns_}, {"name", name_}})
        .Set(due_since ? 1 : 0);
  }
  const Object status = sec::ComputeStatus(sr, after, in.consumers, now_, previous_, plan.held);
  if (plan.held && sec::ConditionTurnedTrue(previous_, status, "Held")) {
    Emit("Normal", "RotationHeld",
         absl::StrCat("the due rotation of Secret ", SecretName(), " waits: ", plan.held->message));
  }
  if (due_since && sec::ConditionTurnedTrue(previous_, status, "RotationDue")) {
    // Once per due period (the condition's transition), for a person to act on.
    Emit("Warning", "RotationDue",
         absl::StrCat("a rotation of Secret ", SecretName(), " has been due since ",
                      sec::FormatRfc3339(*due_since),
                      " (trigger: Manual); set a new capstan.dev/rotate token to rotate"));
  }
  RETURN_IF_ERROR(WriteStatus(status));

  kube::ReconcileResult result;
  result.requeue_after = plan.requeue_after;
  if (result.requeue_after <= absl::ZeroDuration()) result.requeue_after = c_.options_.poll;
  if (verify_requeue > absl::ZeroDuration() && plan.action == sec::Action::kNone) {
    // The next measurement of the verification run may be due before the next poll.
    result.requeue_after = std::min(result.requeue_after, verify_requeue);
  }
  if (plan.action == sec::Action::kNone) {
    spdlog::debug("secretrotation={} waiting requeue_after={}", key_, result.requeue_after);
  }
  return result;
}

}  // namespace capstan::controller
