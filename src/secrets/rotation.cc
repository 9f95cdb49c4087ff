#include "capstan/secrets/rotation.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "capstan/common/json_util.h"

namespace capstan::secrets {
namespace {

using nlohmann::json;

std::string Ann(const std::map<std::string, std::string>& a, const char* key) {
  auto it = a.find(key);
  return it == a.end() ? "" : it->second;
}

State ParseState(const std::string& s) {
  if (s == "Pending") return State::kPending;
  if (s == "Swapped") return State::kSwapped;
  if (s == "Restarted") return State::kRestarted;
  if (s == "Restoring") return State::kRestoring;
  return State::kIdle;
}

int64_t ParseCount(const std::string& s) {
  int64_t n = 0;
  if (!absl::SimpleAtoi(s, &n) || n < 0) return 0;
  return n;
}

std::string KeyList(const SecretRotation& sr) {
  std::vector<std::string> names;
  for (const KeySpec& k : sr.spec.keys) names.push_back(k.name);
  return absl::StrJoin(names, ", ");
}

int64_t Int(const json& o, const json::json_pointer& p, int64_t def) {
  if (!o.contains(p)) return def;
  const json& v = o.at(p);
  return v.is_number_integer() ? v.get<int64_t>() : def;
}

void AddSecretRefsFromVolumeSources(const json& sources, std::set<std::string>* out) {
  for (const json& s : sources) {
    const std::string n = JsonString(s, "/secret/name"_json_pointer);
    if (!n.empty()) out->insert(n);
  }
}

json Condition(const std::string& type, bool ok, const std::string& reason,
               const std::string& message, int64_t generation, absl::Time now,
               const json& previous_status) {
  std::string transition = FormatRfc3339(now);
  if (previous_status.is_object() && previous_status.contains("conditions")) {
    for (const json& c : previous_status["conditions"]) {
      if (c.value("type", "") == type && c.value("status", "") == (ok ? "True" : "False")) {
        transition = c.value("lastTransitionTime", transition);
      }
    }
  }
  return json{
      {"type", type},       {"status", ok ? "True" : "False"},  {"reason", reason},
      {"message", message}, {"observedGeneration", generation}, {"lastTransitionTime", transition}};
}

// The user the next password is for: the inactive one of users (the first when the
// Secret holds neither), or the single user.
std::string NextUser(const PostgresTarget& t, const std::string& current) {
  if (t.strategy == DbStrategy::kSingleUser) return t.user;
  if (t.users.size() < 2) return t.users.empty() ? "" : t.users[0];
  return current == t.users[0] ? t.users[1] : t.users[0];
}

// The verification run's verdict as a failure message; nullopt when it succeeded (a
// running one is not asked).
std::optional<std::string> VerifyFailure(const std::string& secret_name, const std::string& version,
                                         const std::string& run, const VerifyVerdict& verdict) {
  const char* ended = nullptr;
  switch (verdict.state) {
    case VerifyVerdict::State::kRunning:
    case VerifyVerdict::State::kSuccessful:
      return std::nullopt;
    case VerifyVerdict::State::kFailed:
      ended = "Failed";
      break;
    case VerifyVerdict::State::kError:
      ended = "Error";
      break;
    case VerifyVerdict::State::kInconclusive:
      ended = "Inconclusive";
      break;
    case VerifyVerdict::State::kInvalid:
      ended = "invalid";
      break;
  }
  return absl::StrCat("verification of Secret ", secret_name, " version ", version,
                      " failed: analysis ", run, " ", ended, verdict.message.empty() ? "" : ": ",
                      verdict.message);
}

}  // namespace

State StateOf(const std::map<std::string, std::string>& annotations) {
  return ParseState(Ann(annotations, kAnnState));
}

std::string PhaseName(Phase p) {
  switch (p) {
    case Phase::kReady:
      return "Ready";
    case Phase::kRotating:
      return "Rotating";
    case Phase::kFailed:
      return "Failed";
    case Phase::kStalled:
      return "Stalled";
  }
  return "";
}

std::string StallReasonName(StallReason r) {
  switch (r) {
    case StallReason::kInvalidSpec:
      return "InvalidSpec";
    case StallReason::kConflict:
      return "Conflict";
    case StallReason::kInvalidKey:
      return "InvalidKey";
  }
  return "";
}

std::string StateName(State s) {
  switch (s) {
    case State::kIdle:
      return "Idle";
    case State::kPending:
      return "Pending";
    case State::kSwapped:
      return "Swapped";
    case State::kRestarted:
      return "Restarted";
    case State::kRestoring:
      return "Restoring";
  }
  return "Idle";
}

std::string ActionName(Action a) {
  switch (a) {
    case Action::kNone:
      return "none";
    case Action::kCreate:
      return "create";
    case Action::kFillMissing:
      return "fill-missing";
    case Action::kClearPrevious:
      return "clear-previous";
    case Action::kWritePending:
      return "write-pending";
    case Action::kSwap:
      return "swap";
    case Action::kRestart:
      return "restart";
    case Action::kComplete:
      return "complete";
    case Action::kRestore:
      return "restore";
    case Action::kAbort:
      return "abort";
    case Action::kVerify:
      return "verify";
  }
  return "none";
}

std::string VerifyRunName(const std::string& rotation, const std::string& version) {
  return absl::StrCat(rotation, "-v", version, "-verify");
}

std::string StampAnnotationKey(const std::string& secret_name) {
  if (secret_name.size() <= 63) return kAnnSecretVersionPrefix + secret_name;
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(secret_name.data()), secret_name.size(), digest);
  std::string head = secret_name.substr(0, 46);
  // A name part must end alphanumeric; the hash suffix takes care of that.
  return absl::StrCat(
      kAnnSecretVersionPrefix, head, "-",
      absl::BytesToHexString(std::string(reinterpret_cast<const char*>(digest), 8)));
}

namespace {

ConsumerView ViewCommon(const json& w, const std::string& secret_name, const char* kind) {
  ConsumerView v;
  v.kind = kind;
  v.name = JsonString(w, "/metadata/name"_json_pointer);
  const json::json_pointer annotations("/spec/template/metadata/annotations");
  if (w.contains(annotations) && w.at(annotations).is_object()) {
    const json& a = w.at(annotations);
    auto it = a.find(StampAnnotationKey(secret_name));
    if (it != a.end() && it->is_string()) v.stamped = it->get<std::string>();
  }
  return v;
}

}  // namespace

ConsumerView ViewStatefulSet(const json& s, const std::string& secret_name) {
  ConsumerView v = ViewCommon(s, secret_name, kStatefulSetKind);
  const int64_t generation = Int(s, "/metadata/generation"_json_pointer, 0);
  const int64_t observed = Int(s, "/status/observedGeneration"_json_pointer, 0);
  const int64_t want = Int(s, "/spec/replicas"_json_pointer, 1);
  const int64_t partition = Int(s, "/spec/updateStrategy/rollingUpdate/partition"_json_pointer, 0);
  const int64_t updated = Int(s, "/status/updatedReplicas"_json_pointer, 0);
  const int64_t ready = Int(s, "/status/readyReplicas"_json_pointer, 0);
  const std::string current = JsonString(s, "/status/currentRevision"_json_pointer);
  const std::string update = JsonString(s, "/status/updateRevision"_json_pointer);
  const bool on_delete = JsonString(s, "/spec/updateStrategy/type"_json_pointer) == "OnDelete";
  // `kubectl rollout status statefulset` semantics; with a partition only the
  // ordinals at or above it are updated, and the revisions never converge.
  if (observed < generation) {
    v.why = "rollout not observed yet";
  } else if (on_delete) {
    v.healthy = true;
  } else if (ready < want) {
    v.why = absl::StrCat(ready, "/", want, " ready");
  } else if (updated < want - partition) {
    v.why = absl::StrCat(updated, "/", want - partition, " updated");
  } else if (partition == 0 && current != update) {
    v.why = "revision update not finished (currentRevision != updateRevision)";
  } else {
    v.healthy = true;
  }
  return v;
}

ConsumerView ViewDaemonSet(const json& d, const std::string& secret_name) {
  ConsumerView v = ViewCommon(d, secret_name, kDaemonSetKind);
  const int64_t generation = Int(d, "/metadata/generation"_json_pointer, 0);
  const int64_t observed = Int(d, "/status/observedGeneration"_json_pointer, 0);
  const int64_t desired = Int(d, "/status/desiredNumberScheduled"_json_pointer, 0);
  const int64_t updated = Int(d, "/status/updatedNumberScheduled"_json_pointer, 0);
  const int64_t available = Int(d, "/status/numberAvailable"_json_pointer, 0);
  const bool on_delete = JsonString(d, "/spec/updateStrategy/type"_json_pointer) == "OnDelete";
  if (observed < generation) {
    v.why = "rollout not observed yet";
  } else if (on_delete) {
    v.healthy = true;
  } else if (updated < desired) {
    v.why = absl::StrCat(updated, "/", desired, " updated");
  } else if (available < desired) {
    v.why = absl::StrCat(available, "/", desired, " available");
  } else {
    v.healthy = true;
  }
  return v;
}

ConsumerView ViewRelease(const json& r, const std::string& secret_name) {
  ConsumerView v;
  v.kind = kReleaseKind;
  v.name = JsonString(r, "/metadata/name"_json_pointer);
  const std::string key = StampAnnotationKey(secret_name);
  const json::json_pointer annotations("/metadata/annotations");
  if (r.contains(annotations) && r.at(annotations).is_object()) {
    auto it = r.at(annotations).find(key);
    if (it != r.at(annotations).end() && it->is_string()) v.stamped = it->get<std::string>();
  }
  std::string running;  // the stamp of the state the Release controller let through
  const json::json_pointer versions("/status/secretVersions");
  if (r.contains(versions) && r.at(versions).is_object()) {
    auto it = r.at(versions).find(key);
    if (it != r.at(versions).end() && it->is_string()) running = it->get<std::string>();
  }
  const int64_t generation = Int(r, "/metadata/generation"_json_pointer, 0);
  const int64_t observed = Int(r, "/status/observedGeneration"_json_pointer, 0);
  const std::string phase = JsonString(r, "/status/phase"_json_pointer);
  const std::string current = JsonString(r, "/status/currentRevision"_json_pointer);
  const std::string stable = JsonString(r, "/status/stableRevision"_json_pointer);
  const std::string failed = JsonString(r, "/status/failedRevision"_json_pointer);
  if (running != v.stamped) {
    v.why = phase.empty() ? "restart not picked up by the Release controller yet"
                          : absl::StrCat("restart not let through yet (phase ", phase, ")");
  } else if (observed < generation) {
    v.why = "generation not observed yet";
  } else if (phase == "RolledBack" || phase == "Aborted" ||
             (!failed.empty() && failed == current)) {
    v.failed = true;
    v.why = absl::StrCat("its restart revision ", current, " ended ", phase,
                         " (see kubectl describe release ", v.name, ")");
  } else if (phase == "Ready" && stable == current) {
    v.healthy = true;
  } else {
    v.why = absl::StrCat("phase ", phase.empty() ? "unknown" : phase);
  }
  return v;
}

ConsumerView ViewWorkload(const std::string& kind, const json& w, const std::string& secret_name) {
  if (kind == kReleaseKind) return ViewRelease(w, secret_name);
  if (kind == kStatefulSetKind) return ViewStatefulSet(w, secret_name);
  if (kind == kDaemonSetKind) return ViewDaemonSet(w, secret_name);
  return ViewDeployment(w, secret_name);
}

ConsumerView ViewDeployment(const json& d, const std::string& secret_name) {
  ConsumerView v = ViewCommon(d, secret_name, kDeploymentKind);
  const int64_t generation = Int(d, "/metadata/generation"_json_pointer, 0);
  const int64_t observed = Int(d, "/status/observedGeneration"_json_pointer, 0);
  const int64_t want = Int(d, "/spec/replicas"_json_pointer, 1);
  const int64_t total = Int(d, "/status/replicas"_json_pointer, 0);
  const int64_t updated = Int(d, "/status/updatedReplicas"_json_pointer, 0);
  const int64_t available = Int(d, "/status/availableReplicas"_json_pointer, 0);
  // `kubectl rollout status` semantics: the controller saw this generation,
  // every replica runs the new template, old ones are gone, all available.
  if (observed < generation) {
    v.why = "rollout not observed yet";
  } else if (updated < want) {
    v.why = absl::StrCat(updated, "/", want, " updated");
  } else if (total > updated) {
    v.why = absl::StrCat(total - updated, " old replicas still running");
  } else if (available < want) {
    v.why = absl::StrCat(available, "/", want, " available");
  } else {
    v.healthy = true;
  }
  return v;
}

std::vector<std::string> SecretsReferenced(const json& pod_template) {
  std::set<std::string> out;
  const json::json_pointer spec_ptr("/spec");
  if (!pod_template.contains(spec_ptr)) return {};
  const json& spec = pod_template.at(spec_ptr);
  for (const char* list : {"containers", "initContainers"}) {
    if (!spec.contains(list) || !spec[list].is_array()) continue;
    for (const json& c : spec[list]) {
      if (c.contains("env") && c["env"].is_array()) {
        for (const json& e : c["env"]) {
          const std::string n = JsonString(e, "/valueFrom/secretKeyRef/name"_json_pointer);
          if (!n.empty()) out.insert(n);
        }
      }
      if (c.contains("envFrom") && c["envFrom"].is_array()) {
        for (const json& e : c["envFrom"]) {
          const std::string n = JsonString(e, "/secretRef/name"_json_pointer);
          if (!n.empty()) out.insert(n);
        }
      }
    }
  }
  if (spec.contains("volumes") && spec["volumes"].is_array()) {
    for (const json& v : spec["volumes"]) {
      const std::string n = JsonString(v, "/secret/secretName"_json_pointer);
      if (!n.empty()) out.insert(n);
      const json::json_pointer sources("/projected/sources");
      if (v.contains(sources) && v.at(sources).is_array()) {
        AddSecretRefsFromVolumeSources(v.at(sources), &out);
      }
    }
  }
  return {out.begin(), out.end()};
}

std::string VersionStamp(const std::string& rotation_uid, const std::string& version) {
  const std::string input = absl::StrCat(rotation_uid, "/", version);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  return absl::BytesToHexString(std::string(reinterpret_cast<const char*>(digest), 8));
}

std::map<std::string, std::string> ApplyAnnotations(
    const std::map<std::string, std::string>& before, const SecretChange& change) {
  std::map<std::string, std::string> out = before;
  for (const auto& [k, v] : change.set_annotations) out[k] = v;
  for (const std::string& k : change.remove_annotations) out.erase(k);
  return out;
}

std::optional<absl::Time> RotationDueSince(const SecretRotation& sr,
                                           const std::map<std::string, std::string>& annotations,
                                           absl::Time now) {
  if (sr.spec.trigger != RotationTrigger::kManual) return std::nullopt;
  if (StateOf(annotations) != State::kIdle) return std::nullopt;
  std::optional<absl::Time> next = NextRotation(sr, annotations);
  if (!next || now < *next) return std::nullopt;
  return next;
}

bool ConditionTurnedTrue(const json& previous_status, const json& status, const std::string& type) {
  auto is_true = [&](const json& st) {
    if (!st.is_object() || !st.contains("conditions") || !st["conditions"].is_array()) {
      return false;
    }
    for (const json& c : st["conditions"]) {
      if (c.is_object() && c.value("type", "") == type) return c.value("status", "") == "True";
    }
    return false;
  };
  return is_true(status) && !is_true(previous_status);
}

std::optional<absl::Time> NextRotation(const SecretRotation& sr,
                                       const std::map<std::string, std::string>& annotations) {
  std::optional<absl::Time> last = ParseRfc3339(Ann(annotations, kAnnLastAttempt));
  if (!last) return std::nullopt;
  if (!sr.spec.schedule.empty()) return NextCronTime(sr.spec.cron, sr.spec.tz, *last);
  return *last + sr.spec.interval;
}

namespace {

// One PlanRotation call: the observations every branch shares (the spec, the Secret's
// annotations and keys, the version in use, the plan being built), then ClassifyRotation's
// situation and one method per state or branch. Each branch ends in Finish(exit).
class Planner {
 public:
  explicit Planner(const RotationInput& in);
  RotationPlan Plan();

 private:
  using Exit = RotationPlan::Exit;

  // The Secret is missing.
  RotationPlan CreateEmpty(bool hook);
  RotationPlan Create();
  // kIdle and its branches.
  RotationPlan Idle();
  RotationPlan FillMissing(const std::vector<std::string>& missing);
  RotationPlan ClearPrevious();
  RotationPlan Held();
  RotationPlan Start(bool triggered);
  RotationPlan WaitUntilDue(std::optional<absl::Time> next, std::optional<absl::Time> expires);
  // kPending, kPendingHook (PlanHookSteps first).
  RotationPlan Pending();
  RotationPlan SwapDatabase();
  RotationPlan Swap();
  // kSwapped.
  RotationPlan Swapped();
  // kRestarted and its branches.
  RotationPlan Restarted();
  RotationPlan RestartNextBatch();
  RotationPlan StartVerify(const std::string& run);
  RotationPlan Complete();
  RotationPlan Fail(const std::string& message, bool verify_failed);
  void RestoreValues(const std::string& message);
  void KeepNewValues(const std::string& message);
  // kRestoring.
  RotationPlan Restoring();

  // Every consumer not yet stamped with `ver`, or (staggered) as many of them as
  // there are free slots: maxConcurrentRestarts less the consumers stamped but not
  // healthy yet. E.g. 5 consumers, at most 2: 2 on the swap, then one more each
  // time one of those is healthy.
  void StampConsumers(const std::string& ver, bool staggered);
  std::string StampLabels() const;
  std::string Ann(const char* key) const { return secrets::Ann(ann_, key); }
  bool Has(const std::string& data_key) const { return secret_.data_keys.count(data_key) > 0; }
  // Every data key with `prefix` (PendingKey(""), RollbackKey("")) goes, including those of
  // keys removed from spec meanwhile.
  void RemoveKeysWithPrefix(const std::string& prefix);
  RotationPlan Finish(Exit exit);

  const RotationInput& in_;
  const SecretRotation& sr_;
  const SecretRotationSpec& spec_;
  const ObservedSecret& secret_;
  const std::map<std::string, std::string>& ann_;
  const PostgresTarget* pg_;
  const std::string now_text_;
  const State state_;
  const std::string version_;  // in use ("0" before the first)
  RotationPlan p_;
};

Planner::Planner(const RotationInput& in)
    : in_(in),
      sr_(*in.rotation),
      spec_(sr_.spec),
      secret_(in.secret),
      ann_(secret_.annotations),
      pg_(spec_.postgresql ? &*spec_.postgresql : nullptr),
      now_text_(FormatRfc3339(in.now)),
      state_(ParseState(secrets::Ann(ann_, kAnnState))),
      version_(secrets::Ann(ann_, kAnnVersion).empty() ? "0" : secrets::Ann(ann_, kAnnVersion)) {}

RotationPlan Planner::Plan() {
  switch (ClassifyRotation(secret_.exists, state_, spec_.hook.has_value(), pg_ != nullptr)) {
    case RotationSituation::kCreateForHook:
      return CreateEmpty(/*hook=*/true);
    case RotationSituation::kCreateForDatabase:
      return CreateEmpty(/*hook=*/false);
    case RotationSituation::kCreate:
      return Create();
    case RotationSituation::kIdle:
      return Idle();
    case RotationSituation::kPendingHook:
    case RotationSituation::kPending:
      return Pending();
    case RotationSituation::kSwapped:
      return Swapped();
    case RotationSituation::kRestarted:
      return Restarted();
    case RotationSituation::kRestoring:
      break;
  }
  return Restoring();
}

RotationPlan Planner::Finish(Exit exit) {
  p_.exit = exit;
  return std::move(p_);
}

void Planner::StampConsumers(const std::string& ver, bool staggered) {
  p_.stamp_value = VersionStamp(sr_.uid, ver);
  int64_t slots = -1;  // unlimited
  if (staggered && spec_.max_concurrent_restarts > 0) {
    slots = spec_.max_concurrent_restarts;
    for (const ConsumerView& c : in_.consumers) {
      if (c.stamped == p_.stamp_value && !c.healthy) --slots;
    }
  }
  for (const ConsumerView& c : in_.consumers) {
    if (c.stamped == p_.stamp_value) continue;
    if (slots == 0) {
      p_.stamp_waiting = true;
      continue;
    }
    if (slots > 0) --slots;
    p_.stamp.push_back({c.kind, c.name});
  }
}

std::string Planner::StampLabels() const {
  std::vector<std::string> out;
  for (const ConsumerRef& r : p_.stamp) out.push_back(r.Label());
  return absl::StrJoin(out, ", ");
}

void Planner::RemoveKeysWithPrefix(const std::string& prefix) {
  for (const std::string& dk : secret_.data_keys) {
    if (dk.rfind(prefix, 0) == 0) p_.change.remove.push_back(dk);
  }
}

// A hook or database target: no value before the target has it. The Secret starts
// empty, and the first rotation (Idle, nothing in use) goes through the target first.
RotationPlan Planner::CreateEmpty(bool hook) {
  p_.action = Action::kCreate;
  p_.change.set_annotations = {{kAnnState, "Idle"}, {kAnnSeq, "0"}};
  if (!sr_.trigger_token.empty()) p_.change.set_annotations[kAnnTrigger] = sr_.trigger_token;
  p_.events.push_back(
      {"Normal", "Created",
       absl::StrCat("created Secret ", spec_.secret_name,
                    hook ? " empty; its first values are set and tested by the hook Jobs first"
                         : " empty; its first password is set in PostgreSQL first")});
  p_.requeue_after = absl::Seconds(1);
  return Finish(hook ? Exit::kCreateForHook : Exit::kCreateForDatabase);
}

RotationPlan Planner::Create() {
  p_.action = Action::kCreate;
  for (size_t i = 0; i < spec_.keys.size(); ++i) {
    p_.change.generate.emplace_back(spec_.keys[i].name, i);
  }
  p_.change.set_annotations = {
      {kAnnState, "Idle"},          {kAnnVersion, "1"},           {kAnnSeq, "1"},
      {kAnnLastAttempt, now_text_}, {kAnnLastSuccess, now_text_}, {kAnnLastResult, "Succeeded"}};
  // A token present at creation is not a request to rotate the values just made.
  if (!sr_.trigger_token.empty()) p_.change.set_annotations[kAnnTrigger] = sr_.trigger_token;
  p_.events.push_back(
      {"Normal", "Created",
       absl::StrCat("created Secret ", spec_.secret_name, " with keys ", KeyList(sr_))});
  const std::optional<absl::Time> next = NextRotation(sr_, {{kAnnLastAttempt, now_text_}});
  p_.requeue_after = next ? std::max(*next - in_.now, absl::Seconds(1)) : spec_.interval;
  return Finish(Exit::kCreate);
}

RotationPlan Planner::Idle() {
  // Keys new to spec (or an adopted Secret missing some): generate only those.
  std::vector<std::string> missing;
  for (size_t i = 0; i < spec_.keys.size(); ++i) {
    const KeySpec& k = spec_.keys[i];
    if (!Has(k.name)) {
      p_.change.generate.emplace_back(k.name, i);
      missing.push_back(k.name);
    } else if (k.kind == KeySpec::Kind::kKeyPair) {
      // Derived from the private key by the write itself (DeriveKeyPairData).
      for (const std::string& dk : {PublicKeyDataKey(k), JwksDataKey(k)}) {
        if (!Has(dk)) missing.push_back(dk);
      }
    }
  }
  // A database target never gets a value the database does not know: a missing
  // password (or user name) is a first rotation, below.
  const bool initial = (pg_ != nullptr && (!missing.empty() || !Has(pg_->username_key))) ||
                       (spec_.hook && !missing.empty());
  if (pg_ != nullptr || spec_.hook) p_.change.generate.clear();
  if ((pg_ == nullptr && !spec_.hook && !missing.empty()) ||
      (!initial && Ann(kAnnLastAttempt).empty())) {
    return FillMissing(missing);
  }
  std::optional<absl::Time> expires = ParseRfc3339(Ann(kAnnPreviousExpires));
  if (expires && in_.now >= *expires) return ClearPrevious();
  const bool triggered = !sr_.trigger_token.empty() && sr_.trigger_token != Ann(kAnnTrigger);
  std::optional<absl::Time> next = NextRotation(sr_, ann_);
  // A first rotation that failed is retried on a trigger or after the interval. A
  // database's first password is not a rotation: Manual sets it too.
  const bool manual = spec_.trigger == RotationTrigger::kManual;
  const bool due = (!manual && next && in_.now >= *next) ||
                   (initial && (Ann(kAnnLastResult) != "Failed" || !next));
  // A database's first password is not a change to hold.
  if ((triggered || due) && in_.hold && !initial) return Held();
  if (triggered || due) return Start(triggered);
  return WaitUntilDue(next, expires);
}

RotationPlan Planner::FillMissing(const std::vector<std::string>& missing) {
  p_.action = Action::kFillMissing;
  if (Ann(kAnnLastAttempt).empty()) {
    // An adopted Secret: its schedule starts now.
    p_.change.set_annotations = {{kAnnState, "Idle"},
                                 {kAnnVersion, version_ == "0" ? "1" : version_},
                                 {kAnnSeq, version_ == "0" ? "1" : version_},
                                 {kAnnLastAttempt, now_text_}};
    if (!sr_.trigger_token.empty()) p_.change.set_annotations[kAnnTrigger] = sr_.trigger_token;
  }
  if (!missing.empty()) {
    p_.events.push_back({"Normal", "KeysAdded",
                         absl::StrCat("generated missing keys ", absl::StrJoin(missing, ", "),
                                      " in Secret ", spec_.secret_name)});
  }
  p_.requeue_after = absl::Seconds(1);
  return Finish(Exit::kFillMissing);
}

// The grace period of KeepPrevious is over.
RotationPlan Planner::ClearPrevious() {
  p_.action = Action::kClearPrevious;
  for (const KeySpec& k : spec_.keys) {
    if (Has(PreviousKey(k.name))) p_.change.remove.push_back(PreviousKey(k.name));
  }
  p_.change.remove_annotations.push_back(kAnnPreviousExpires);
  p_.events.push_back({"Normal", "PreviousCleared",
                       absl::StrCat("grace period over: removed the previous values of ",
                                    KeyList(sr_), " from Secret ", spec_.secret_name)});
  p_.requeue_after = absl::Seconds(1);
  return Finish(Exit::kClearPrevious);
}

// Not now (a freeze, or an Environment that cannot be read): nothing is written; the
// token stays unconsumed, so a triggered rotation starts once the hold ends.
RotationPlan Planner::Held() {
  p_.held = in_.hold;
  p_.requeue_after =
      in_.hold->until ? std::max(*in_.hold->until - in_.now, absl::Seconds(1)) : absl::Seconds(30);
  return Finish(Exit::kHeld);
}

RotationPlan Planner::Start(bool triggered) {
  p_.action = Action::kWritePending;
  for (size_t i = 0; i < spec_.keys.size(); ++i) {
    p_.change.generate.emplace_back(PendingKey(spec_.keys[i].name), i);
  }
  const int64_t seq = std::max(ParseCount(Ann(kAnnSeq)), ParseCount(version_)) + 1;
  p_.change.set_annotations = {{kAnnState, "Pending"},
                               {kAnnSeq, absl::StrCat(seq)},
                               {kAnnLastAttempt, now_text_},
                               {kAnnStepTime, now_text_}};
  if (triggered) p_.change.set_annotations[kAnnTrigger] = sr_.trigger_token;
  if (pg_ != nullptr) {
    p_.change.set_annotations[kAnnPendingUser] = NextUser(*pg_, in_.db_user);
    p_.db.kind = DatabaseStep::Kind::kCheckAdmin;
  }
  p_.events.push_back(
      {"Normal", "RotationStarted",
       absl::StrCat("rotating keys ", KeyList(sr_), " of Secret ", spec_.secret_name, " (",
                    triggered ? absl::StrCat("manual trigger ", sr_.trigger_token) : "scheduled",
                    ")")});
  p_.requeue_after = absl::Seconds(1);
  return Finish(Exit::kStart);
}

RotationPlan Planner::WaitUntilDue(std::optional<absl::Time> next,
                                   std::optional<absl::Time> expires) {
  absl::Time wake = next ? *next : in_.now + spec_.interval;  // next: set after creation
  // Manual and due: nothing happens by itself any more (RotationDue says so) until
  // a token arrives, which is an event; look again hourly.
  if (spec_.trigger == RotationTrigger::kManual && wake <= in_.now) wake = in_.now + absl::Hours(1);
  if (expires) wake = std::min(wake, *expires);
  p_.requeue_after = std::max(wake - in_.now, absl::Seconds(1));
  return Finish(Exit::kWaitUntilDue);
}

RotationPlan Planner::Pending() {
  if (spec_.hook) {
    // The set and test Jobs first (rotation_hook.cc); both Complete: the swap below.
    if (std::optional<RotationPlan> steps = PlanHookSteps(in_)) return *std::move(steps);
  }
  return pg_ != nullptr ? SwapDatabase() : Swap();
}

RotationPlan Planner::SwapDatabase() {
  p_.action = Action::kSwap;
  const std::string user =
      Ann(kAnnPendingUser).empty() ? NextUser(*pg_, in_.db_user) : Ann(kAnnPendingUser);
  const std::string& key = spec_.keys[0].name;
  if (Has(PendingKey(key))) {
    p_.db = {.kind = DatabaseStep::Kind::kSetPassword,
             .user = user,
             .password_key = PendingKey(key),
             .create = pg_->strategy == DbStrategy::kAlternatingUsers,
             .member_of = pg_->member_of};
    if (Has(key)) p_.change.copy.emplace_back(RollbackKey(key), key);
    if (Has(pg_->username_key)) {
      p_.change.copy.emplace_back(RollbackKey(pg_->username_key), pg_->username_key);
    }
    p_.change.copy.emplace_back(key, PendingKey(key));
    p_.change.set_values.emplace_back(pg_->username_key, user);
  }
  RemoveKeysWithPrefix(PendingKey(""));
  const std::string seq = Ann(kAnnSeq).empty() ? "1" : Ann(kAnnSeq);
  p_.change.set_annotations = {{kAnnState, "Swapped"}, {kAnnPreviousVersion, version_},
                               {kAnnVersion, seq},     {kAnnStepTime, now_text_},
                               {kAnnUser, user},       {kAnnPreviousUser, in_.db_user}};
  p_.change.remove_annotations = {kAnnPreviousExpires, kAnnPendingUser};
  p_.requeue_after = absl::Seconds(1);
  return Finish(Exit::kSwapDatabase);
}

RotationPlan Planner::Swap() {
  p_.action = Action::kSwap;
  for (const KeySpec& k : spec_.keys) {
    if (!Has(PendingKey(k.name))) continue;  // Not generated: keep its current value.
    if (Has(k.name)) {
      p_.change.copy.emplace_back(RollbackKey(k.name), k.name);
      if (spec_.strategy == RotationStrategy::kKeepPrevious) {
        p_.change.copy.emplace_back(PreviousKey(k.name), k.name);
      }
    }
    p_.change.copy.emplace_back(k.name, PendingKey(k.name));
  }
  RemoveKeysWithPrefix(PendingKey(""));
  const std::string seq = Ann(kAnnSeq).empty() ? "1" : Ann(kAnnSeq);
  p_.change.set_annotations = {{kAnnState, "Swapped"},
                               {kAnnPreviousVersion, version_},
                               {kAnnVersion, seq},
                               {kAnnStepTime, now_text_}};
  p_.change.remove_annotations = {kAnnPreviousExpires};
  p_.requeue_after = absl::Seconds(1);
  return Finish(Exit::kSwap);
}

RotationPlan Planner::Swapped() {
  p_.action = Action::kRestart;
  StampConsumers(version_, /*staggered=*/true);
  p_.change.set_annotations = {{kAnnState, "Restarted"}, {kAnnStepTime, now_text_}};
  if (!p_.stamp.empty()) {
    p_.events.push_back(
        {"Normal", "ConsumersRestarted",
         absl::StrCat("restarting ", StampLabels(), " for the new values of Secret ",
                      spec_.secret_name,
                      p_.stamp_waiting ? " (the others once these are healthy)" : "")});
  }
  p_.requeue_after = in_.poll;
  return Finish(Exit::kRestart);
}

RotationPlan Planner::Restarted() {
  StampConsumers(version_, /*staggered=*/true);
  if (!p_.stamp.empty()) return RestartNextBatch();
  const bool all_stamped = !p_.stamp_waiting;
  p_.stamp_value.clear();
  p_.stamp_waiting = false;
  std::vector<std::string> unhealthy;
  for (const ConsumerView& c : in_.consumers) {
    if (!c.healthy) unhealthy.push_back(absl::StrCat(c.kind, " ", c.name, " (", c.why, ")"));
  }
  // A consumer that will not become healthy (a Release rolled its restart back):
  // restore now rather than at the health timeout.
  std::vector<std::string> failed;
  for (const ConsumerView& c : in_.consumers) {
    if (c.failed) failed.push_back(absl::StrCat(c.kind, " ", c.name, " (", c.why, ")"));
  }
  // spec.verify.analysis: healthy consumers start (or wait for) the verification run;
  // anything but Successful restores below (fail closed).
  std::optional<std::string> verify_failed;
  if (unhealthy.empty() && all_stamped && spec_.verify_analysis) {
    const std::string run = VerifyRunName(sr_.name, version_);
    if (Ann(kAnnVerifyRun) != run) return StartVerify(run);
    const VerifyVerdict verdict = in_.verify.value_or(VerifyVerdict{.run = run});
    if (verdict.state == VerifyVerdict::State::kRunning) {
      p_.action = Action::kNone;
      p_.requeue_after = in_.poll;
      return Finish(Exit::kVerifyRunning);
    }
    verify_failed = VerifyFailure(spec_.secret_name, version_, run, verdict);
  }
  if (unhealthy.empty() && all_stamped && !verify_failed) return Complete();
  std::optional<absl::Time> since = ParseRfc3339(Ann(kAnnStepTime));
  if (verify_failed) return Fail(*verify_failed, /*verify_failed=*/true);
  if (!failed.empty()) {
    return Fail(absl::StrCat("consumers failed after rotating Secret ", spec_.secret_name, ": ",
                             absl::StrJoin(failed, ", ")),
                false);
  }
  if (since && in_.now - *since > spec_.health_timeout) {
    return Fail(absl::StrCat("consumers not healthy within ",
                             FormatGoDuration(spec_.health_timeout), " after rotating Secret ",
                             spec_.secret_name, ": ", absl::StrJoin(unhealthy, ", ")),
                false);
  }
  p_.action = Action::kNone;
  p_.requeue_after = in_.poll;
  return Finish(Exit::kWaitHealthy);
}

// The next batch (staggered), or someone reset a template meanwhile: stamp, and the
// health timeout starts again for them.
RotationPlan Planner::RestartNextBatch() {
  p_.action = Action::kRestart;
  p_.change.set_annotations = {{kAnnStepTime, now_text_}};
  p_.events.push_back({"Normal", "ConsumersRestarted",
                       absl::StrCat("restarting ", StampLabels(), " for the new values of Secret ",
                                    spec_.secret_name)});
  p_.requeue_after = in_.poll;
  return Finish(Exit::kRestartNextBatch);
}

RotationPlan Planner::StartVerify(const std::string& run) {
  p_.action = Action::kVerify;
  p_.change.set_annotations = {{kAnnVerifyRun, run}, {kAnnStepTime, now_text_}};
  std::vector<std::string> templates;
  for (const api::AnalysisTemplateRef& t : spec_.verify_analysis->templates) {
    templates.push_back(t.template_name);
  }
  p_.events.push_back(
      {"Normal", "VerificationStarted",
       absl::StrCat(in_.consumers.size(), " consumers of Secret ", spec_.secret_name,
                    " healthy; verifying version ", version_, " with analysis ", run, " (",
                    absl::StrJoin(templates, ", "), ")")});
  p_.requeue_after = absl::Seconds(1);
  return Finish(Exit::kStartVerify);
}

RotationPlan Planner::Complete() {
  p_.action = Action::kComplete;
  RemoveKeysWithPrefix(RollbackKey(""));
  p_.change.set_annotations = {{kAnnState, "Idle"},
                               {kAnnLastSuccess, now_text_},
                               {kAnnLastResult, "Succeeded"},
                               {kAnnStepTime, now_text_}};
  p_.change.remove_annotations = {kAnnMessage, kAnnFailedStep};
  if (!Ann(kAnnVerifyRun).empty()) p_.change.remove_annotations.push_back(kAnnVerifyRun);
  if (spec_.strategy == RotationStrategy::kKeepPrevious) {
    p_.change.set_annotations[kAnnPreviousExpires] = FormatRfc3339(in_.now + spec_.grace_period);
  }
  p_.events.push_back(
      {"Normal", "Rotated",
       absl::StrCat("rotated keys ", KeyList(sr_), " of Secret ", spec_.secret_name, " (version ",
                    version_, "); ", in_.consumers.size(), " consumers healthy")});
  p_.result = "succeeded";
  p_.requeue_after = absl::Seconds(1);
  return Finish(Exit::kComplete);
}

// Consumers failed, timed out or the verification did not succeed: restore (onFailure
// Restore) or keep the new values.
RotationPlan Planner::Fail(const std::string& message, bool verify_failed) {
  p_.result = "failed";
  const bool restore = spec_.on_failure == FailureAction::kRestore;
  if (restore) {
    RestoreValues(message);
  } else {
    KeepNewValues(message);
  }
  if (!Ann(kAnnVerifyRun).empty()) p_.change.remove_annotations.push_back(kAnnVerifyRun);
  if (verify_failed) {
    // status.failedStep and the history say which step failed: the verification.
    p_.change.set_annotations[kAnnFailedStep] = "verify";
    std::erase(p_.change.remove_annotations, std::string(kAnnFailedStep));
  }
  p_.requeue_after = absl::Seconds(1);
  return Finish(restore ? Exit::kRestore : Exit::kKeepNew);
}

void Planner::RestoreValues(const std::string& message) {
  p_.action = Action::kRestore;
  for (const KeySpec& k : spec_.keys) {
    if (!Has(RollbackKey(k.name))) continue;
    p_.change.copy.emplace_back(k.name, RollbackKey(k.name));
    if (Has(PreviousKey(k.name))) p_.change.remove.push_back(PreviousKey(k.name));
  }
  const bool user_back = pg_ != nullptr && Has(RollbackKey(pg_->username_key));
  if (user_back) p_.change.copy.emplace_back(pg_->username_key, RollbackKey(pg_->username_key));
  if (pg_ != nullptr && pg_->strategy == DbStrategy::kSingleUser &&
      Has(RollbackKey(spec_.keys[0].name))) {
    // The old password stopped working at the set step: set it back first.
    p_.db = {.kind = DatabaseStep::Kind::kSetPassword,
             .user = pg_->user,
             .password_key = RollbackKey(spec_.keys[0].name)};
  }
  RemoveKeysWithPrefix(RollbackKey(""));
  const std::string prev = Ann(kAnnPreviousVersion).empty() ? "0" : Ann(kAnnPreviousVersion);
  p_.change.set_annotations = {{kAnnState, "Restoring"},
                               {kAnnVersion, prev},
                               {kAnnStepTime, now_text_},
                               {kAnnLastResult, "Failed"},
                               {kAnnMessage, message}};
  p_.change.remove_annotations = {kAnnPreviousExpires, kAnnFailedStep};
  if (user_back) {
    p_.change.set_annotations[kAnnUser] = Ann(kAnnPreviousUser);
    p_.change.set_annotations[kAnnPreviousUser] = Ann(kAnnUser);
  }
  p_.events.push_back(
      {"Warning", "RotationFailed",
       absl::StrCat(message, "; restoring the previous values (version ", prev, ")")});
}

void Planner::KeepNewValues(const std::string& message) {
  p_.action = Action::kComplete;
  RemoveKeysWithPrefix(RollbackKey(""));
  p_.change.set_annotations = {{kAnnState, "Idle"},
                               {kAnnStepTime, now_text_},
                               {kAnnLastResult, "Failed"},
                               {kAnnMessage, message}};
  if (spec_.strategy == RotationStrategy::kKeepPrevious) {
    p_.change.set_annotations[kAnnPreviousExpires] = FormatRfc3339(in_.now + spec_.grace_period);
  }
  p_.events.push_back(
      {"Warning", "RotationFailed", absl::StrCat(message, "; keeping the new values")});
}

RotationPlan Planner::Restoring() {
  p_.action = Action::kRestart;
  // All at once: the consumers stamped with the failed version need the old values
  // back now (those the stagger never reached still carry the old stamp).
  StampConsumers(version_, /*staggered=*/false);
  p_.change.set_annotations = {{kAnnState, "Idle"}, {kAnnStepTime, now_text_}};
  if (!p_.stamp.empty()) {
    p_.events.push_back({"Warning", "ConsumersRestored",
                         absl::StrCat("restarting ", StampLabels(),
                                      " with the restored values of Secret ", spec_.secret_name)});
  }
  p_.requeue_after = absl::Seconds(1);
  return Finish(Exit::kRestoreConsumers);
}

}  // namespace

RotationSituation ClassifyRotation(bool secret_exists, State state, bool hook, bool database) {
  if (!secret_exists) {
    // As for a database, a hook target's first values go through its Jobs.
    if (hook) return RotationSituation::kCreateForHook;
    if (database) return RotationSituation::kCreateForDatabase;
    return RotationSituation::kCreate;
  }
  switch (state) {
    case State::kIdle:
      return RotationSituation::kIdle;
    case State::kPending:
      return hook ? RotationSituation::kPendingHook : RotationSituation::kPending;
    case State::kSwapped:
      return RotationSituation::kSwapped;
    case State::kRestarted:
      return RotationSituation::kRestarted;
    case State::kRestoring:
      break;
  }
  return RotationSituation::kRestoring;
}

RotationPlan PlanRotation(const RotationInput& in) { return Planner(in).Plan(); }

RotationPlan PlanDatabaseFailure(const RotationInput& in, const std::string& step,
                                 const std::string& message) {
  const SecretRotation& sr = *in.rotation;
  const std::string now_text = FormatRfc3339(in.now);
  const auto& ann = in.secret.annotations;
  RotationPlan plan;
  plan.action = Action::kAbort;
  plan.exit = RotationPlan::Exit::kDatabaseFailed;
  plan.result = "failed";
  const State state = StateOf(ann);
  if (state == State::kIdle) {
    // The check before a rotation: nothing written but the attempt.
    plan.change.set_annotations[kAnnLastAttempt] = now_text;
    const bool triggered = !sr.trigger_token.empty() && sr.trigger_token != Ann(ann, kAnnTrigger);
    if (triggered) plan.change.set_annotations[kAnnTrigger] = sr.trigger_token;
  }
  for (const std::string& dk : in.secret.data_keys) {
    if (dk.rfind(PendingKey(""), 0) == 0) plan.change.remove.push_back(dk);
  }
  plan.change.set_annotations[kAnnState] = "Idle";
  plan.change.set_annotations[kAnnStepTime] = now_text;
  plan.change.set_annotations[kAnnLastResult] = "Failed";
  plan.change.set_annotations[kAnnFailedStep] = step;
  plan.change.remove_annotations = {kAnnPendingUser};
  const PostgresTarget* pg = sr.spec.postgresql ? &*sr.spec.postgresql : nullptr;
  std::string also;
  if (step == "test" && pg != nullptr && pg->strategy == DbStrategy::kSingleUser &&
      in.secret.data_keys.count(sr.spec.keys[0].name)) {
    // The set step changed the one user's password before its test failed: the
    // current password (still the Secret's) is set back before anything else.
    plan.db = {.kind = DatabaseStep::Kind::kSetPassword,
               .user = pg->user,
               .password_key = sr.spec.keys[0].name,
               .test = false};
    also = absl::StrCat("; the previous password of ", pg->user, " was set back");
  }
  plan.change.set_annotations[kAnnMessage] =
      absl::StrCat("database step ", step, ": ", message, also);
  plan.events.push_back({"Warning", "RotationFailed",
                         absl::StrCat("database step ", step, " failed: ", message, also,
                                      "; nothing switched, Secret ", sr.spec.secret_name,
                                      " keeps its current credential")});
  plan.requeue_after = absl::Seconds(1);
  return plan;
}

json ComputeStatus(const SecretRotation& sr, const std::map<std::string, std::string>& ann,
                   const std::vector<ConsumerView>& consumers, absl::Time now,
                   const json& previous_status, const std::optional<RotationHold>& held) {
  json st = json::object();
  st["observedGeneration"] = sr.generation;
  st["secretName"] = sr.spec.secret_name;
  const State state = StateOf(ann);
  st["rotationState"] = StateName(state);
  if (!Ann(ann, kAnnVersion).empty()) st["currentVersion"] = Ann(ann, kAnnVersion);
  if (!Ann(ann, kAnnLastSuccess).empty()) st["lastRotationTime"] = Ann(ann, kAnnLastSuccess);
  if (!Ann(ann, kAnnLastAttempt).empty()) st["lastAttemptTime"] = Ann(ann, kAnnLastAttempt);
  if (std::optional<absl::Time> next = NextRotation(sr, ann)) {
    // Overdue (operator down): the rotation runs now, so "next" is now. Manual: when it
    // became due, which may be past (RotationDue).
    st["nextRotationTime"] =
        FormatRfc3339(sr.spec.trigger == RotationTrigger::kManual ? *next : std::max(*next, now));
  }
  if (!Ann(ann, kAnnPreviousExpires).empty()) {
    st["previousExpiresTime"] = Ann(ann, kAnnPreviousExpires);
  }
  if (!Ann(ann, kAnnTrigger).empty()) st["lastTriggerToken"] = Ann(ann, kAnnTrigger);
  json names = json::array();
  for (const ConsumerView& c : consumers) names.push_back(c.name);
  st["consumers"] = names;
  Phase phase = Phase::kReady;
  std::string reason, message;
  if (state != State::kIdle) {
    phase = Phase::kRotating;
    reason = StateName(state);
    message = absl::StrCat("rotation in progress: ", StateName(state));
    if (state == State::kRestarted && !Ann(ann, kAnnVerifyRun).empty()) {
      reason = "Verifying";
      message = absl::StrCat("rotation in progress: consumers healthy, verifying with analysis ",
                             Ann(ann, kAnnVerifyRun));
    }
  } else if (Ann(ann, kAnnLastResult) == "Failed") {
    phase = Phase::kFailed;
    reason = Ann(ann, kAnnFailedStep).empty()       ? "ConsumersUnhealthy"
             : Ann(ann, kAnnFailedStep) == "verify" ? "VerificationFailed"
             : sr.spec.hook                         ? "HookStepFailed"
                                                    : "DatabaseStepFailed";
    message = Ann(ann, kAnnMessage);
  } else {
    phase = Phase::kReady;
    reason = "Rotated";
    message = absl::StrCat("version ", Ann(ann, kAnnVersion), " in use");
  }
  if (held) {
    // The values in use stay fine (Ready keeps its phase); the message says why the due
    // rotation waits.
    message = absl::StrCat(message, "; the due rotation is held: ", held->message);
  }
  if (!Ann(ann, kAnnUser).empty()) st["currentUser"] = Ann(ann, kAnnUser);
  if (!Ann(ann, kAnnFailedStep).empty() && Ann(ann, kAnnLastResult) == "Failed") {
    st["failedStep"] = Ann(ann, kAnnFailedStep);
  }
  st["phase"] = PhaseName(phase);
  st["reason"] = reason;
  st["message"] = message;
  st["conditions"] = json::array({Condition("Ready", phase == Phase::kReady, reason, message,
                                            sr.generation, now, previous_status)});
  if (sr.spec.trigger == RotationTrigger::kManual) {
    std::string due_reason = "NotDue", due_message = "no rotation is due";
    if (std::optional<absl::Time> since = RotationDueSince(sr, ann, now)) {
      due_reason = "RotationDue";
      due_message = absl::StrCat(
          "a rotation of Secret ", sr.spec.secret_name, " has been due since ",
          FormatRfc3339(*since), " (trigger: Manual); rotate with: kubectl -n ", sr.ns,
          " annotate secretrotation ", sr.name, " capstan.dev/rotate=<new token> --overwrite");
    } else if (state != State::kIdle) {
      due_reason = "Rotating";
      due_message = "a rotation is in progress";
    } else if (std::optional<absl::Time> next = NextRotation(sr, ann)) {
      due_message = absl::StrCat("the next rotation is due at ", FormatRfc3339(*next));
    }
    st["conditions"].push_back(Condition("RotationDue", due_reason == "RotationDue", due_reason,
                                         due_message, sr.generation, now, previous_status));
  }
  if (held) {
    st["conditions"].push_back(
        Condition("Held", true, held->reason, held->message, sr.generation, now, previous_status));
  }
  st["history"] = RotationHistory(ann, previous_status);
  return st;
}

json RotationHistory(const std::map<std::string, std::string>& ann, const json& previous_status) {
  json history = json::array();
  if (previous_status.is_object() && previous_status.contains("history") &&
      previous_status["history"].is_array()) {
    for (const json& h : previous_status["history"]) {
      if (h.is_object() && history.size() < kRotationHistoryLimit) history.push_back(h);
    }
  }
  const std::string started = Ann(ann, kAnnLastAttempt);
  const std::string result = Ann(ann, kAnnLastResult);
  // Only once a rotation has ended (the Secret is Idle again): every path back to Idle
  // records its result. Derived from the Secret, so a lost status write is redone.
  if (StateOf(ann) != State::kIdle || started.empty() || result.empty()) {
    return history;
  }
  // The attempt is its start time (whole seconds), result and version: a rotation that fails
  // in the second the one before it succeeded started at the same "second" too.
  if (!history.empty() && history[0].value("startTime", "") == started &&
      history[0].value("result", "") == result &&
      history[0].value("version", "") == Ann(ann, kAnnVersion)) {
    return history;
  }
  json entry = {{"startTime", started}, {"result", result}};
  if (!Ann(ann, kAnnVersion).empty()) entry["version"] = Ann(ann, kAnnVersion);
  if (result == "Succeeded" && !Ann(ann, kAnnLastSuccess).empty()) {
    entry["finishTime"] = Ann(ann, kAnnLastSuccess);
  }
  if (!Ann(ann, kAnnUser).empty()) entry["user"] = Ann(ann, kAnnUser);
  if (result == "Failed") {
    if (!Ann(ann, kAnnFailedStep).empty()) entry["failedStep"] = Ann(ann, kAnnFailedStep);
    if (!Ann(ann, kAnnMessage).empty()) entry["message"] = Ann(ann, kAnnMessage);
  }
  history.insert(history.begin(), std::move(entry));
  if (history.size() > kRotationHistoryLimit)
    history.erase(history.begin() + kRotationHistoryLimit, history.end());
  return history;
}

json StalledStatus(const SecretRotation& sr, StallReason reason, const std::string& message,
                   absl::Time now, const json& previous_status) {
  json st = previous_status.is_object() ? previous_status : json::object();
  st["observedGeneration"] = sr.generation;
  st["secretName"] = sr.spec.secret_name;
  st["phase"] = PhaseName(Phase::kStalled);
  st["reason"] = StallReasonName(reason);
  st["message"] = message;
  st["conditions"] = json::array({Condition("Ready", false, StallReasonName(reason), message,
                                            sr.generation, now, previous_status)});
  return st;
}

}  // namespace capstan::secrets
