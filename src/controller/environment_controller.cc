#include "capstan/controller/environment_controller.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "capstan/api/labels.h"
#include "capstan/common/json_util.h"
#include "capstan/common/log.h"
#include "capstan/common/rfc3339.h"
#include "capstan/controller/projections.h"
#include "capstan/render/render.h"

namespace capstan::controller {
namespace {

using kube::Object;
using nlohmann::json;
namespace res = kube::resources;

// status.releases is bounded (the CRD says maxItems 500); the counts cover all.
constexpr size_t kMaxListedReleases = 500;

// A JSON string as an RFC 3339 time; nullopt for anything else.
std::optional<absl::Time> TimeOf(const json& v) {
  return v.is_string() ? ParseRfc3339(v.get<std::string>()) : std::nullopt;
}

// When the Release's running revision became Ready, if it runs the spec's template and
// is Ready now: the history record of that revision in phase Ready, else the Ready
// condition's transition time.
std::optional<absl::Time> ReadySince(const api::Release& rel,
                                     const std::set<std::string>& spec_revisions) {
  const api::ReleaseStatus& st = rel.status;
  // Only time with something serving counts toward a downstream soak.
  if (st.phase != api::ReleasePhase::kReady || st.current_revision.empty() ||
      st.available_replicas < 1 || spec_revisions.count(st.current_revision) == 0) {
    return std::nullopt;
  }
  for (const api::RevisionRecord& h : st.history) {
    if (h.revision == st.current_revision && h.phase == api::RevisionPhase::kReady &&
        h.time.has_value()) {
      return h.time;
    }
  }
  for (const api::Condition& c : st.conditions) {
    if (c.type == "Ready" && c.status == "True" && c.last_transition_time > absl::UnixEpoch()) {
      return c.last_transition_time;
    }
  }
  return std::nullopt;
}

// Whether the Release's analysis of `revision` passed, and when: the newest run of each
// gate (a retry makes a new run; the old one stays for the record) must be Successful;
// then the latest measurement's finish. No run at all passes only when `required` is
// false (the Environment names no analysis, and the Release none of its own).
struct AnalysisPass {
  bool passed = true;
  std::optional<absl::Time> at;
};
AnalysisPass AnalysisPassed(const std::vector<json>& runs, const std::string& ns,
                            const std::string& release, const std::string& revision,
                            bool required) {
  std::map<std::string, const json*> newest;  // gate -> run
  for (const json& r : runs) {
    if (JsonString(r, "/metadata/namespace"_json_pointer) != ns ||
        JsonString(r, "/metadata/labels/capstan.dev~1release"_json_pointer) != release ||
        JsonString(r, "/spec/revision"_json_pointer) != revision) {
      continue;
    }
    const std::string gate = JsonString(r, "/spec/gate"_json_pointer);
    const json*& slot = newest[gate];
    if (slot == nullptr || JsonString(r, "/metadata/creationTimestamp"_json_pointer) >
                               JsonString(*slot, "/metadata/creationTimestamp"_json_pointer)) {
      slot = &r;
    }
  }
  AnalysisPass out;
  if (newest.empty()) {
    out.passed = !required;
    return out;
  }
  for (const auto& [gate, r] : newest) {
    if (JsonString(*r, "/status/phase"_json_pointer) != "Successful") {
      out.passed = false;
      return out;
    }
    for (const json& m : r->value("/status/metricResults"_json_pointer, json::array())) {
      for (const json& x : m.value("measurements", json::array())) {
        std::optional<absl::Time> t = TimeOf(x.value("finishedAt", json()));
        if (t.has_value() && (!out.at.has_value() || *t > *out.at)) out.at = t;
      }
    }
  }
  return out;
}

json Condition(const json& stored_status, const std::string& type, const std::string& status,
               const std::string& reason, const std::string& message, int64_t generation,
               absl::Time now) {
  absl::Time transition = now;
  if (stored_status.contains("conditions") && stored_status["conditions"].is_array()) {
    for (const json& c : stored_status["conditions"]) {
      if (c.value("type", "") == type && c.value("status", "") == status) {
        transition = TimeOf(c.value("lastTransitionTime", json())).value_or(now);
      }
    }
  }
  return {{"type", type},
          {"status", status},
          {"reason", reason},
          {"message", message},
          {"lastTransitionTime", FormatRfc3339(transition)},
          {"observedGeneration", generation}};
}

// What the soak check reads of an AnalysisRun: who it is for, its phase and when its
// measurements finished (not the metrics it copied from its templates).
Object ProjectAnalysisRun(Object run) {
  Object out;
  Object& md = run["metadata"];
  for (const char* key : {"name", "namespace", "uid", "resourceVersion", "creationTimestamp"}) {
    if (md.contains(key)) out["metadata"][key] = md[key];
  }
  if (md.contains("labels")) out["metadata"]["labels"] = md["labels"];
  const Object spec = run.value("spec", Object::object());
  out["spec"]["gate"] = spec.value("gate", "");
  out["spec"]["revision"] = spec.value("revision", "");
  const Object status = run.value("status", Object::object());
  out["status"]["phase"] = status.value("phase", "");
  for (const Object& m : status.value("metricResults", Object::array())) {
    Object last = Object::object();
    const Object ms = m.value("measurements", Object::array());
    if (ms.is_array() && !ms.empty()) last["finishedAt"] = ms.back().value("finishedAt", "");
    out["status"]["metricResults"].push_back({{"measurements", Object::array({last})}});
  }
  return out;
}

// What the status reads of a Release: no annotations (kubectl's last-applied copy of the
// whole object lives there), no status fields but phase, revision, history, conditions.
// Releases and AnalysisRuns are the informers the Release controller shares (its
// projections keep more); these narrow each one read to what the status computation
// has always been given.
Object ProjectEnvironmentRelease(Object rel) {
  Object out;
  Object& md = rel["metadata"];
  for (const char* key : {"name", "namespace", "uid", "generation", "resourceVersion"}) {
    if (md.contains(key)) out["metadata"][key] = std::move(md[key]);
  }
  if (rel.contains("spec")) out["spec"] = std::move(rel["spec"]);
  if (rel.contains("status") && rel["status"].is_object()) {
    // What ReadySince and the soak's identity read: availableReplicas (a revision with
    // nothing available soaks nothing), the digests (sourceDigest).
    for (const char* key : {"phase", "currentRevision", "history", "conditions",
                            "availableReplicas", "desiredDigest", "appliedDigest"}) {
      if (rel["status"].contains(key)) out["status"][key] = std::move(rel["status"][key]);
    }
  }
  return out;
}

}  // namespace

json ComputeEnvironmentStatus(const EnvironmentObservation& in) {
  const json stored = in.object.contains("status") && in.object["status"].is_object()
                          ? in.object["status"]
                          : json::object();
  const int64_t generation = in.object.value("/metadata/generation"_json_pointer, int64_t{0});
  const std::string name = JsonString(in.object, "/metadata/name"_json_pointer);

  std::vector<std::string> problems;
  absl::StatusOr<api::Environment> env = api::ParseEnvironment(in.object);
  const std::vector<api::Environment> all = ParseEnvironments(in.all_environments);
  if (!env.ok()) {
    problems.push_back(std::string(env.status().message()));
  } else {
    problems = EnvironmentProblems(*env, all);
  }

  // Membership: namespaces this Environment claims; one also claimed elsewhere (through
  // a selector: name-vs-name is reported above) is a problem, and its Releases are held
  // by the Release reconciler (EnvironmentAmbiguous).
  std::set<std::string> namespaces;
  if (env.ok()) {
    std::set<std::string> name_clashes;  // already reported by ValidateEnvironments
    for (const api::Environment& other : all) {
      if (other.metadata.name == name) {
        continue;
      }
      for (const std::string& ns : other.spec.namespaces) {
        if (std::find(env->spec.namespaces.begin(), env->spec.namespaces.end(), ns) !=
            env->spec.namespaces.end()) {
          name_clashes.insert(ns);
        }
      }
    }
    for (const policy::NamespaceInfo& ns : in.namespaces) {
      if (!policy::Claims(*env, ns)) {
        continue;
      }
      namespaces.insert(ns.name);
      if (name_clashes.count(ns.name) > 0) {
        continue;
      }
      std::vector<std::string> others;
      for (const api::Environment& other : all) {
        if (other.metadata.name != name && policy::Claims(other, ns)) {
          others.push_back(other.metadata.name);
        }
      }
      if (!others.empty()) {
        problems.push_back(absl::StrCat("namespace ", ns.name, " is also claimed by Environment ",
                                        absl::StrJoin(others, ", "),
                                        "; Releases there are held until one lets go of it"));
      }
    }
  }

  // Releases in those namespaces.
  struct Row {
    std::string ns;
    std::string name;
    json entry;
  };
  std::vector<Row> rows;
  std::map<std::string, int32_t> phases;
  int32_t ready = 0;
  for (const json& obj : in.releases) {
    const std::string ns = JsonString(obj, "/metadata/namespace"_json_pointer);
    if (namespaces.count(ns) == 0) {
      continue;
    }
    Row row{ns, JsonString(obj, "/metadata/name"_json_pointer), json::object()};
    row.entry["namespace"] = row.ns;
    row.entry["name"] = row.name;
    std::string phase = JsonString(obj, "/status/phase"_json_pointer);
    absl::StatusOr<api::Release> rel = api::ParseRelease(obj);
    if (rel.ok()) {
      api::Release applied = *rel;
      if (env.ok()) {
        policy::ApplyEnvironment(*env, &applied);
      }
      // Before the Release reconciler applies Environment defaults the running revision
      // is the plain one; after, the applied one. Either counts as "runs the spec".
      const std::set<std::string> spec_revisions = {render::RenderPodTemplate(*rel).revision,
                                                    render::RenderPodTemplate(applied).revision};
      row.entry["sourceRevision"] = SourceRevision(*rel);
      // The template's identity, while the Release runs (or was let through to run)
      // exactly its spec: a downstream soak compares this, not the short revision.
      if (!rel->status.applied_digest.empty() &&
          rel->status.applied_digest == rel->status.desired_digest) {
        row.entry["sourceDigest"] = render::TemplateDigest(rel->spec.pod_template);
      }
      if (!rel->status.current_revision.empty()) {
        row.entry["revision"] = rel->status.current_revision;
      }
      std::optional<absl::Time> since = ReadySince(*rel, spec_revisions);
      if (since.has_value()) {
        // A downstream soak counts only a revision whose analysis passed here: from
        // when it passed, never while it runs, failed or was promoted past Inconclusive.
        const bool required = env.ok() && env->spec.policies.analysis.has_value();
        const AnalysisPass pass = AnalysisPassed(in.analysis_runs, row.ns, row.name,
                                                 rel->status.current_revision, required);
        if (!pass.passed) {
          since.reset();
        } else if (pass.at.has_value() && *pass.at > *since) {
          since = pass.at;
        }
      }
      if (since.has_value()) {
        row.entry["readySince"] = FormatRfc3339(*since);
      }
    }
    if (!phase.empty()) {
      row.entry["phase"] = phase;
    }
    ++phases[phase.empty() ? "Pending" : phase];
    if (phase == "Ready") {
      ++ready;
    }
    rows.push_back(std::move(row));
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return std::tie(a.ns, a.name) < std::tie(b.ns, b.name);
  });

  json status = json::object();
  status["observedGeneration"] = generation;
  status["releaseCount"] = static_cast<int32_t>(rows.size());
  status["readyCount"] = ready;
  // Empty collections are left out: an empty object does not survive the round trip
  // through the API server (it comes back as null and fails the schema).
  for (const auto& [phase, count] : phases) {
    status["phases"][phase] = count;
  }
  for (const std::string& ns : namespaces) {
    status["namespaces"].push_back(ns);
  }
  for (size_t i = 0; i < rows.size() && i < kMaxListedReleases; ++i) {
    status["releases"].push_back(std::move(rows[i].entry));
  }
  const std::string message =
      problems.empty()
          ? absl::StrCat(rows.size(), rows.size() == 1 ? " Release" : " Releases", " in ",
                         namespaces.size(), namespaces.size() == 1 ? " namespace" : " namespaces")
          : absl::StrJoin(problems, "; ");
  const bool valid = problems.empty();
  status["conditions"] = json::array(
      {Condition(stored, "Ready", valid ? "True" : "False", valid ? "Valid" : "Invalid", message,
                 generation, in.now),
       Condition(stored, "Stalled", valid ? "False" : "True", valid ? "Valid" : "Invalid",
                 valid ? "" : message, generation, in.now)});
  return status;
}

// ---------------------------------------------------------------------------

EnvironmentController::EnvironmentController(kube::Client& client, Options options,
                                             const Clock& clock)
    : client_(client), options_(std::move(options)), clock_(clock) {
  // The Release controller's informers when they share a factory (run.cc): the same
  // options, so whichever controller asks first makes the same informer.
  kube::InformerOptions o;
  environments_ = &loop_.Shared(res::Environments(), o);
  analysis_runs_ = &loop_.Shared(res::AnalysisRuns(), o);  // AnalysisGates' projection
  o.projection = ProjectNamespace;
  namespaces_ = &loop_.Shared(res::Namespaces(), o);
  o.projection = ProjectRelease;
  o.compact = true;
  releases_ = &loop_.Shared(res::Releases(), o);
  releases_->AddIndex("namespace", [](const Object& o) {
    return std::vector<std::string>{JsonString(o, "/metadata/namespace"_json_pointer)};
  });

  // Environments are few and affect each other (namespace claims, upstream chains):
  // any change re-checks them all.
  environments_->AddHandler([this](const Object*, const Object*) { EnqueueAll(); });
  namespaces_->AddHandler([this](const Object* o, const Object* n) {
    // Only a label change (or add/delete) can move a namespace between Environments.
    if (o == nullptr || n == nullptr ||
        o->value("/metadata/labels"_json_pointer, json()) !=
            n->value("/metadata/labels"_json_pointer, json())) {
      EnqueueAll();
    }
  });
  releases_->AddHandler([this](const Object* o, const Object* n) {
    const Object* obj = n != nullptr ? n : o;
    EnqueueForNamespace(JsonString(*obj, "/metadata/namespace"_json_pointer));
  });
  // A run that ends changes when a revision counts as soaking.
  analysis_runs_->AddHandler([this](const Object* o, const Object* n) {
    const Object* obj = n != nullptr ? n : o;
    if (o != nullptr && n != nullptr &&
        JsonString(*o, "/status/phase"_json_pointer) ==
            JsonString(*n, "/status/phase"_json_pointer)) {
      return;
    }
    EnqueueForNamespace(JsonString(*obj, "/metadata/namespace"_json_pointer));
  });
}

EnvironmentController::~EnvironmentController() { Stop(); }

void EnvironmentController::EnqueueAll(kube::WorkQueue::Priority priority) {
  for (const auto& e : environments_->List()) {
    queue_->Add(JsonString(*e, "/metadata/name"_json_pointer), priority);
  }
}

void EnvironmentController::EnqueueForNamespace(const std::string& ns) {
  std::shared_ptr<const Object> nsobj = namespaces_->Get("", ns);
  const policy::NamespaceInfo info =
      nsobj != nullptr ? NamespaceInfoOf(*nsobj) : policy::NamespaceInfo{ns, {}};
  for (const auto& e : environments_->List()) {
    absl::StatusOr<api::Environment> env = api::ParseEnvironment(*e);
    // An unreadable Environment is enqueued anyway: its status says why.
    if (!env.ok() || policy::Claims(*env, info)) {
      queue_->Add(JsonString(*e, "/metadata/name"_json_pointer));
    }
  }
}

void EnvironmentController::StartCaches() { loop_.StartCaches(); }

bool EnvironmentController::HasSynced() const { return loop_.HasSynced(); }

void EnvironmentController::StartWorkers() {
  loop_.StartWorkers(
      options_.workers, [this](const std::string& key) { return Reconcile(key); }, options_.resync,
      [this] { Resync(); });
  EnqueueAll();
}

void EnvironmentController::Resync() { EnqueueAll(kube::WorkQueue::Priority::kLow); }

void EnvironmentController::Stop() { loop_.Stop(); }

absl::StatusOr<kube::ReconcileResult> EnvironmentController::Reconcile(const std::string& name) {
  std::shared_ptr<const Object> obj = environments_->Get("", name);
  if (obj == nullptr || obj->contains("/metadata/deletionTimestamp"_json_pointer)) {
    return kube::ReconcileResult{};
  }
  EnvironmentObservation in;
  in.object = *obj;
  in.now = clock_.Now();
  for (const auto& e : environments_->List()) in.all_environments.push_back(*e);
  for (const auto& ns : namespaces_->List()) in.namespaces.push_back(NamespaceInfoOf(*ns));
  // Only the namespaces that can matter: those this Environment may claim.
  absl::StatusOr<api::Environment> env = api::ParseEnvironment(*obj);
  if (env.ok()) {
    for (const policy::NamespaceInfo& ns : in.namespaces) {
      if (!policy::Claims(*env, ns)) continue;
      for (const auto& r : releases_->ByIndex("namespace", ns.name)) {
        in.releases.push_back(ProjectEnvironmentRelease(*r));
      }
    }
    for (const auto& r : analysis_runs_->List()) {
      in.analysis_runs.push_back(ProjectAnalysisRun(*r));
    }
  }
  json status = ComputeEnvironmentStatus(in);
  if (obj->contains("status") && obj->at("status") == status) {
    return kube::ReconcileResult{};
  }
  Object body = {{"apiVersion", api::kApiVersion},
                 {"kind", api::kEnvironmentKind},
                 {"metadata", {{"name", name}}},
                 {"status", status}};
  kube::ApplyOptions ao;
  ao.force = true;  // Capstan alone writes Environment status.
  ao.subresource = "status";
  absl::Status s = client_.Apply(res::Environments(), "", name, body, ao).status();
  if (!s.ok()) return s;
  spdlog::info("environment={} status releases={} ready={} valid={}", name,
               status["releaseCount"].get<int32_t>(), status["readyCount"].get<int32_t>(),
               status["conditions"][0]["status"].get<std::string>());
  return kube::ReconcileResult{};
}

}  // namespace capstan::controller
