#include "capstan/cli/view.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "capstan/common/json_util.h"

namespace capstan::cli {
namespace {

using nlohmann::json;

int64_t Int(const json& j, const char* pointer) {
  const json::json_pointer p(pointer);
  if (!j.is_object() || !j.contains(p) || !j.at(p).is_number_integer()) return 0;
  return j.at(p).get<int64_t>();
}

const json& Arr(const json& j, const char* pointer) {
  static const json kEmpty = json::array();
  const json::json_pointer p(pointer);
  if (!j.is_object() || !j.contains(p) || !j.at(p).is_array()) return kEmpty;
  return j.at(p);
}

std::string Or(const std::string& s, const char* fallback) { return s.empty() ? fallback : s; }

const json* FindCondition(const json& obj, const std::string& type) {
  for (const json& c : Arr(obj, "/status/conditions")) {
    if (JsonText(c, "/type") == type) return &c;
  }
  return nullptr;
}

std::string Colored(bool on, const char* code, const std::string& s) {
  if (!on || s.empty()) return s;
  return absl::StrCat("\033[", code, "m", s, "\033[0m");
}

// kubectl -n flag for a command, "" when the namespace is unknown.
std::string NsFlag(const json& obj) {
  const std::string ns = JsonText(obj, "/metadata/namespace");
  return ns.empty() ? "" : absl::StrCat(" -n ", ns);
}

}  // namespace

std::string Style::Bold(const std::string& s) const { return Colored(color, "1", s); }
std::string Style::Dim(const std::string& s) const { return Colored(color, "2", s); }
std::string Style::Phase(const std::string& phase) const {
  if (phase == "Ready" || phase == "Rotated") return Colored(color, "32", phase);
  if (phase == "Progressing" || phase == "Previewing" || phase == "Waiting" || phase == "Pending" ||
      phase == "Rotating") {
    return Colored(color, "33", phase);
  }
  if (phase == "RolledBack" || phase == "Degraded" || phase == "Aborted" || phase == "Stalled" ||
      phase == "Failed") {
    return Colored(color, "31", phase);
  }
  return phase;
}

std::string FormatAge(absl::Duration d) {
  // k8s.io/apimachinery/pkg/util/duration.HumanDuration.
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  const int64_t s = absl::ToInt64Seconds(d);
  if (s < 120) return absl::StrCat(s, "s");
  const int64_t m = s / 60;
  if (m < 10) return s % 60 == 0 ? absl::StrCat(m, "m") : absl::StrCat(m, "m", s % 60, "s");
  if (m < 180) return absl::StrCat(m, "m");
  const int64_t h = m / 60;
  if (h < 8) return m % 60 == 0 ? absl::StrCat(h, "h") : absl::StrCat(h, "h", m % 60, "m");
  if (h < 48) return absl::StrCat(h, "h");
  const int64_t days = h / 24;
  if (h < 24 * 8)
    return h % 24 == 0 ? absl::StrCat(days, "d") : absl::StrCat(days, "d", h % 24, "h");
  if (days < 365 * 2) return absl::StrCat(days, "d");
  return absl::StrCat(days / 365, "y");
}

std::string AgeSince(const json& rfc3339, absl::Time now) {
  if (!rfc3339.is_string()) return "-";
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, rfc3339.get<std::string>(), &t, &err)) return "-";
  return FormatAge(now - t);
}

namespace {

// Columns a cell takes on a terminal: ANSI colour sequences take none, and a UTF-8
// character (the tree's lines) takes one.
size_t VisibleWidth(const std::string& s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\033') {
      while (i < s.size() && s[i] != 'm') ++i;
      continue;
    }
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) ++n;
  }
  return n;
}

}  // namespace

std::string Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], VisibleWidth(row[i]));
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - VisibleWidth(row[i]) + 3, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::vector<std::string> TemplateImages(const json& pod_template) {
  std::vector<std::string> images;
  for (const json& c : Arr(pod_template, "/spec/containers")) {
    images.push_back(JsonText(c, "/image"));
  }
  return images;
}

std::vector<Blocker> BlockersOf(const json& release, const std::string& desired_revision) {
  std::vector<Blocker> out;
  const std::string name = JsonText(release, "/metadata/name");
  const std::string ns = NsFlag(release);
  const std::string phase = JsonText(release, "/status/phase");
  // A held change is reported on Reconciling (and Ready) with the gate's reason.
  const json* ready = FindCondition(release, "Reconciling");
  if (ready == nullptr || JsonText(*ready, "/reason").empty())
    ready = FindCondition(release, "Ready");
  const std::string reason = ready != nullptr ? JsonText(*ready, "/reason") : "";
  const std::string message = ready != nullptr ? JsonText(*ready, "/message") : "";
  const std::string env = JsonText(release, "/status/environment");
  if (phase == "Waiting" || reason == "AwaitingApproval" || reason == "FrozenUntil" ||
      reason == "AwaitingUpstream" || reason == "StrategyNotAllowed") {
    const std::string shown = Or(message, JsonText(release, "/status/message").c_str());
    if (reason == "AwaitingApproval") {
      const std::string& rev = desired_revision;
      out.push_back({rev.empty() ? "approval" : absl::StrCat("approval of revision ", rev),
                     absl::StrCat("kubectl capstan approve ", name, ns,
                                  rev.empty() ? "" : absl::StrCat(" --revision ", rev))});
    } else if (reason == "FrozenUntil") {
      out.push_back({shown, env.empty() ? "" : absl::StrCat("kubectl capstan env unfreeze ", env)});
    } else {
      out.push_back({shown, ""});  // upstream soak, strategy: only time or a spec change
    }
    if (reason == "AwaitingApproval" && !shown.empty()) out.back().what = shown;
    return out;
  }
  if (phase == "Previewing") {
    const std::string rev = JsonText(release, "/status/currentRevision");
    out.push_back({absl::StrCat("promotion of revision ", rev, " (preview ",
                                Or(JsonText(release, "/status/previewColor"), "?"), ")"),
                   absl::StrCat("kubectl capstan promote ", name, ns)});
    return out;
  }
  if (phase == "RolledBack" || phase == "Degraded" || phase == "Aborted") {
    const std::string failed = JsonText(release, "/status/failedRevision");
    if (!failed.empty()) {
      out.push_back(
          {absl::StrCat("revision ", failed, " ", phase == "Aborted" ? "was aborted" : "failed",
                        "; a new template, or a retry of the same one"),
           absl::StrCat("kubectl capstan retry ", name, ns)});
    }
    return out;
  }
  if (phase == "Stalled") {
    out.push_back({Or(JsonText(release, "/status/message"), "stalled"), ""});
  }
  return out;
}

std::vector<RevisionRow> Revisions(const json& release, const std::vector<json>& revisions) {
  const std::string current = JsonText(release, "/status/currentRevision");
  const std::string stable = JsonText(release, "/status/stableRevision");
  const std::string failed = JsonText(release, "/status/failedRevision");
  const std::string phase = JsonText(release, "/status/phase");
  auto marks = [&](const std::string& hash) {
    std::vector<std::string> m;
    if (hash == current) m.push_back(phase == "Previewing" ? "preview" : "current");
    if (hash == stable) m.push_back("stable");
    if (hash == failed) m.push_back("failed");
    return m;
  };
  auto find_cr = [&](const std::string& hash) -> const json* {
    for (const json& cr : revisions) {
      if (JsonText(cr, "/metadata/labels/capstan.dev~1revision") == hash) return &cr;
    }
    return nullptr;
  };
  std::vector<RevisionRow> rows;
  for (const json& h : Arr(release, "/status/history")) {
    RevisionRow row;
    row.hash = JsonText(h, "/revision");
    for (const json& i : Arr(h, "/images")) {
      if (i.is_string()) row.images.push_back(i.get<std::string>());
    }
    row.phase = JsonText(h, "/phase");
    row.time = JsonText(h, "/time");
    if (const json* cr = find_cr(row.hash); cr != nullptr) {
      row.number = Int(*cr, "/revision");
      if (row.images.empty())
        row.images = TemplateImages(cr->value("data", json::object()).value("template", json()));
    }
    row.marks = marks(row.hash);
    rows.push_back(std::move(row));
  }
  std::vector<RevisionRow> rest;
  for (const json& cr : revisions) {
    const std::string hash = JsonText(cr, "/metadata/labels/capstan.dev~1revision");
    if (std::any_of(rows.begin(), rows.end(),
                    [&](const RevisionRow& r) { return r.hash == hash; })) {
      continue;
    }
    RevisionRow row;
    row.hash = hash;
    row.number = Int(cr, "/revision");
    row.images = TemplateImages(cr.value("data", json::object()).value("template", json()));
    row.time = JsonText(cr, "/metadata/creationTimestamp");
    row.marks = marks(hash);
    rest.push_back(std::move(row));
  }
  std::sort(rest.begin(), rest.end(),
            [](const RevisionRow& a, const RevisionRow& b) { return a.number > b.number; });
  rows.insert(rows.end(), rest.begin(), rest.end());
  return rows;
}

std::string HistoryTable(const std::vector<RevisionRow>& rows, absl::Time now) {
  std::vector<std::vector<std::string>> t = {{"REVISION", "HASH", "IMAGES", "PHASE", "AGE", ""}};
  for (const RevisionRow& r : rows) {
    t.push_back({r.number > 0 ? std::to_string(r.number) : "-", r.hash,
                 Or(absl::StrJoin(r.images, ","), "-"), Or(r.phase, "-"),
                 AgeSince(r.time.empty() ? json() : json(r.time), now),
                 absl::StrJoin(r.marks, ",")});
  }
  return Table(t);
}

namespace {

// The Release's analysis runs, newest first (at most three), each metric with its counts
// and its last three measurements: why a revision was kept, paused or rolled back.
void AppendAnalysis(const TreeInput& in, const Style& st, std::string* out) {
  if (in.analysis_runs.empty()) return;
  std::vector<json> runs = in.analysis_runs;
  std::sort(runs.begin(), runs.end(), [](const json& a, const json& b) {
    const std::string ta = JsonText(a, "/metadata/creationTimestamp");
    const std::string tb = JsonText(b, "/metadata/creationTimestamp");
    if (ta != tb) return ta > tb;
    return JsonText(a, "/metadata/name") < JsonText(b, "/metadata/name");
  });
  constexpr size_t kRuns = 3;
  constexpr size_t kMeasurements = 3;
  absl::StrAppend(out, "\n", st.Bold("Analysis"), "\n");
  for (size_t i = 0; i < runs.size() && i < kRuns; ++i) {
    const json& run = runs[i];
    absl::StrAppend(
        out, "  ", JsonText(run, "/metadata/name"), "   ", Or(JsonText(run, "/spec/gate"), "-"),
        "   revision ", Or(JsonText(run, "/spec/revision"), "-"), "   ",
        st.Phase(Or(JsonText(run, "/status/phase"), "Pending")), "   ",
        AgeSince(run.value("metadata", json::object()).value("creationTimestamp", json()), in.now),
        "\n");
    const std::string message = JsonText(run, "/status/message");
    if (!message.empty()) absl::StrAppend(out, "    ", message, "\n");
    for (const json& m : Arr(run, "/status/metricResults")) {
      absl::StrAppend(out, "    ", JsonText(m, "/name"), "   ",
                      st.Phase(Or(JsonText(m, "/phase"), "Running")), "   ", Int(m, "/successful"),
                      " successful, ", Int(m, "/failed"), " failed, ", Int(m, "/error"),
                      " errors, ", Int(m, "/inconclusive"), " inconclusive", "\n");
      const json& ms = Arr(m, "/measurements");
      const size_t from = ms.size() > kMeasurements ? ms.size() - kMeasurements : 0;
      for (size_t k = ms.size(); k > from; --k) {
        const json& x = ms[k - 1];
        const bool last = k - 1 == from;
        std::string line = absl::StrCat(Or(JsonText(x, "/phase"), "-"), "   value ",
                                        Or(JsonText(x, "/value"), "-"));
        const std::string baseline = JsonText(x, "/baseline");
        if (!baseline.empty()) absl::StrAppend(&line, " (baseline ", baseline, ")");
        absl::StrAppend(&line, "   ", AgeSince(x.value("finishedAt", json()), in.now));
        const std::string why = JsonText(x, "/message");
        if (!why.empty()) absl::StrAppend(&line, "   ", why);
        absl::StrAppend(out, "      ", last ? "└── " : "├── ", line, "\n");
      }
    }
  }
  if (runs.size() > kRuns) {
    absl::StrAppend(
        out, "  ",
        st.Dim(absl::StrCat("(", runs.size() - kRuns, " older: kubectl get analysisrun -l ",
                            "capstan.dev/release=", JsonText(in.release, "/metadata/name"), ")")),
        "\n");
  }
}

}  // namespace

std::string RenderTree(const TreeInput& in, const Style& st) {
  const json& rel = in.release;
  const std::string name = JsonText(rel, "/metadata/name");
  const std::string ns = JsonText(rel, "/metadata/namespace");
  const std::string phase = Or(JsonText(rel, "/status/phase"), "Pending");
  const std::string strategy = Or(JsonText(rel, "/spec/strategy/type"), "RollingUpdate");
  std::string out;
  absl::StrAppend(&out, st.Bold(absl::StrCat("Release ", name)), "   ",
                  ns.empty() ? "" : absl::StrCat("namespace ", ns, "   "), strategy, "   ",
                  st.Phase(phase), "\n");
  const std::string message = JsonText(rel, "/status/message");
  if (!message.empty()) absl::StrAppend(&out, "  ", message, "\n");
  const int64_t generation = Int(rel, "/metadata/generation");
  const int64_t observed = Int(rel, "/status/observedGeneration");
  if (generation > 0 && observed != generation) {
    absl::StrAppend(&out, "  ",
                    st.Dim(absl::StrCat("(status is for generation ", observed, ", spec is at ",
                                        generation, ": Capstan has not seen the change yet)")),
                    "\n");
  }
  std::vector<std::string> facts;
  const std::string env = JsonText(rel, "/status/environment");
  if (!env.empty()) facts.push_back(absl::StrCat("environment ", env));
  const std::string ready = JsonText(rel, "/status/readyText");
  if (!ready.empty()) facts.push_back(absl::StrCat("ready ", ready));
  if (strategy == "BlueGreen") {
    const std::string active = JsonText(rel, "/status/activeColor");
    if (!active.empty()) facts.push_back(absl::StrCat("traffic on ", active));
  }
  if (rel.contains("/status/emergency"_json_pointer) &&
      rel.at("/status/emergency"_json_pointer) == true) {
    facts.push_back("emergency release");
  }
  if (!facts.empty()) absl::StrAppend(&out, "  ", absl::StrJoin(facts, ", "), "\n");

  // Revisions.
  const std::vector<RevisionRow> rows = Revisions(rel, in.revisions);
  absl::StrAppend(&out, "\n", st.Bold("Revisions"), "\n");
  bool desired_listed = in.desired_revision.empty();
  for (const RevisionRow& r : rows) desired_listed |= r.hash == in.desired_revision;
  std::vector<std::vector<std::string>> t;
  if (!desired_listed) {
    std::vector<std::string> images =
        TemplateImages(rel.value("spec", json::object()).value("template", json()));
    t.push_back({"", "-", in.desired_revision, absl::StrJoin(images, ","), st.Phase("Waiting"), "-",
                 "desired"});
  }
  for (const RevisionRow& r : rows) {
    std::vector<std::string> marks = r.marks;
    if (r.hash == in.desired_revision &&
        std::find(marks.begin(), marks.end(), "current") == marks.end() &&
        std::find(marks.begin(), marks.end(), "preview") == marks.end()) {
      marks.push_back("desired");
    }
    t.push_back({"", r.number > 0 ? absl::StrCat("#", r.number) : "-", r.hash,
                 Or(absl::StrJoin(r.images, ","), "-"), st.Phase(Or(r.phase, "-")),
                 AgeSince(r.time.empty() ? json() : json(r.time), in.now),
                 absl::StrJoin(marks, ",")});
  }
  if (t.empty()) {
    absl::StrAppend(&out, "  (none yet)\n");
  } else {
    out += Table(t);
  }

  // Deployments and their pods.
  absl::StrAppend(&out, "\n", st.Bold(strategy == "BlueGreen" ? "Colours" : "Deployments"), "\n");
  if (in.deployments.empty()) absl::StrAppend(&out, "  (none)\n");
  std::vector<json> deployments = in.deployments;
  std::sort(deployments.begin(), deployments.end(), [](const json& a, const json& b) {
    return JsonText(a, "/metadata/name") < JsonText(b, "/metadata/name");
  });
  for (const json& d : deployments) {
    const std::string dname = JsonText(d, "/metadata/name");
    const std::string color = JsonText(d, "/metadata/labels/capstan.dev~1color");
    const std::string rev = JsonText(d, "/metadata/annotations/capstan.dev~1revision");
    const int64_t want = d.contains("/spec/replicas"_json_pointer) ? Int(d, "/spec/replicas") : 1;
    std::vector<std::string> notes;
    if (!color.empty()) {
      if (color == JsonText(rel, "/status/activeColor")) notes.push_back("active");
      if (color == JsonText(rel, "/status/previewColor")) notes.push_back("preview");
    }
    absl::StrAppend(&out, "  ", dname, "   revision ", Or(rev, "-"), "   ready ",
                    Int(d, "/status/readyReplicas"), "/", want, "   updated ",
                    Int(d, "/status/updatedReplicas"), "   available ",
                    Int(d, "/status/availableReplicas"),
                    notes.empty() ? "" : absl::StrCat("   ", absl::StrJoin(notes, ",")), "\n");
    std::vector<json> pods;
    for (const json& p : in.pods) {
      const std::string pc = JsonText(p, "/metadata/labels/capstan.dev~1color");
      if (pc == color) pods.push_back(p);
    }
    std::sort(pods.begin(), pods.end(), [](const json& a, const json& b) {
      return JsonText(a, "/metadata/name") < JsonText(b, "/metadata/name");
    });
    for (size_t i = 0; i < pods.size(); ++i) {
      const json& p = pods[i];
      const bool last = i + 1 == pods.size();
      std::string state = Or(JsonText(p, "/status/phase"), "Pending");
      int64_t restarts = 0;
      for (const json& cs : Arr(p, "/status/containerStatuses")) {
        restarts += Int(cs, "/restartCount");
        const std::string waiting = JsonText(cs, "/state/waiting/reason");
        if (!waiting.empty()) state = waiting;
      }
      const json* pr = FindCondition(p, "Ready");
      const bool is_ready = pr != nullptr && JsonText(*pr, "/status") == "True";
      if (!JsonText(p, "/metadata/deletionTimestamp").empty()) state = "Terminating";
      const std::string prev = JsonText(p, "/metadata/labels/capstan.dev~1revision");
      absl::StrAppend(
          &out, "    ", last ? "└── " : "├── ", JsonText(p, "/metadata/name"), "   ",
          st.Phase(state == "Running" && is_ready ? "Ready" : state),
          is_ready ? "" : "   not ready", "   restarts ", restarts, "   revision ", Or(prev, "-"),
          "   ",
          AgeSince(p.value("metadata", json::object()).value("creationTimestamp", json()), in.now),
          "\n");
    }
  }

  AppendAnalysis(in, st, &out);

  const std::vector<Blocker> blockers = BlockersOf(rel, in.desired_revision);
  if (!blockers.empty()) {
    absl::StrAppend(&out, "\n", st.Bold("Waiting for"), "\n");
    for (const Blocker& b : blockers) {
      absl::StrAppend(&out, "  ", b.what, "\n");
      if (!b.command.empty()) absl::StrAppend(&out, "    run: ", b.command, "\n");
    }
  }
  return out;
}

std::string ReleaseTable(const std::vector<json>& releases, bool all_namespaces, absl::Time now) {
  std::vector<std::vector<std::string>> t;
  std::vector<std::string> header = {"NAME",  "STRATEGY",    "PHASE", "REVISION",
                                     "READY", "ENVIRONMENT", "AGE"};
  if (all_namespaces) header.insert(header.begin(), "NAMESPACE");
  t.push_back(header);
  for (const json& r : releases) {
    std::vector<std::string> row = {
        JsonText(r, "/metadata/name"),
        Or(JsonText(r, "/spec/strategy/type"), "RollingUpdate"),
        Or(JsonText(r, "/status/phase"), "-"),
        Or(JsonText(r, "/status/currentRevision"), "-"),
        Or(JsonText(r, "/status/readyText"), "-"),
        Or(JsonText(r, "/status/environment"), "-"),
        AgeSince(r.value("metadata", json::object()).value("creationTimestamp", json()), now)};
    if (all_namespaces) row.insert(row.begin(), JsonText(r, "/metadata/namespace"));
    t.push_back(std::move(row));
  }
  return Table(t);
}

namespace {

std::string Gates(const json& env) {
  std::vector<std::string> g;
  const json policies = env.value("spec", json::object()).value("policies", json::object());
  if (policies.value("requireApproval", false)) {
    g.push_back(absl::StrCat("approval(", policies.value("minApprovals", 1), ")"));
  }
  const json& windows = Arr(env, "/spec/policies/freezeWindows");
  if (!windows.empty()) g.push_back(absl::StrCat("freeze windows(", windows.size(), ")"));
  const std::string up = JsonText(env, "/spec/policies/upstream/environment");
  if (!up.empty()) {
    g.push_back(absl::StrCat("upstream ", up, " soak ",
                             Or(JsonText(env, "/spec/policies/upstream/soakSeconds"), "0"), "s"));
  }
  return Or(absl::StrJoin(g, ", "), "-");
}

}  // namespace

std::string EnvironmentTable(const std::vector<json>& envs, absl::Time now) {
  std::vector<std::vector<std::string>> t = {
      {"NAME", "NAMESPACES", "RELEASES", "READY", "GATES", "AGE"}};
  for (const json& e : envs) {
    std::vector<std::string> nss;
    for (const json& n : Arr(e, "/status/namespaces")) {
      if (n.is_string()) nss.push_back(n.get<std::string>());
    }
    if (nss.empty()) {
      for (const json& n : Arr(e, "/spec/namespaces")) {
        if (n.is_string()) nss.push_back(n.get<std::string>());
      }
    }
    t.push_back(
        {JsonText(e, "/metadata/name"), Or(absl::StrJoin(nss, ","), "-"),
         std::to_string(Int(e, "/status/releaseCount")),
         std::to_string(Int(e, "/status/readyCount")), Gates(e),
         AgeSince(e.value("metadata", json::object()).value("creationTimestamp", json()), now)});
  }
  return Table(t);
}

std::string EnvironmentDetail(const json& env, absl::Time now, const Style& st) {
  std::string out;
  absl::StrAppend(&out, st.Bold(absl::StrCat("Environment ", JsonText(env, "/metadata/name"))),
                  "\n");
  std::vector<std::string> nss;
  for (const json& n : Arr(env, "/status/namespaces")) {
    if (n.is_string()) nss.push_back(n.get<std::string>());
  }
  absl::StrAppend(&out, "  namespaces: ", Or(absl::StrJoin(nss, ", "), "-"), "\n");
  absl::StrAppend(&out, "  gates: ", Gates(env), "\n");
  if (env.contains("/spec/policies/allowEmergency"_json_pointer) &&
      env.at("/spec/policies/allowEmergency"_json_pointer) == true) {
    absl::StrAppend(&out, "  emergencies allowed (annotation capstan.dev/emergency)\n");
  }
  const json& windows = Arr(env, "/spec/policies/freezeWindows");
  if (!windows.empty()) {
    absl::StrAppend(&out, "\n", st.Bold("Freeze windows"), "\n");
    std::vector<std::vector<std::string>> t = {{"", "NAME", "WHEN", "STATE"}};
    for (const json& w : windows) {
      std::string when;
      std::string state = "";
      if (w.contains("from") || w.contains("until")) {
        when = absl::StrCat(JsonText(w, "/from"), " .. ", JsonText(w, "/until"));
        absl::Time from, until;
        std::string err;
        if (absl::ParseTime(absl::RFC3339_full, JsonText(w, "/from"), &from, &err) &&
            absl::ParseTime(absl::RFC3339_full, JsonText(w, "/until"), &until, &err)) {
          state = now < from ? "upcoming" : (now < until ? "ACTIVE" : "over");
        }
      } else {
        std::vector<std::string> days;
        for (const json& d : Arr(w, "/days")) {
          if (d.is_string()) days.push_back(d.get<std::string>());
        }
        when = absl::StrCat(absl::StrJoin(days, ","), " ", JsonText(w, "/start"), "-",
                            JsonText(w, "/end"), " ", Or(JsonText(w, "/timeZone"), "UTC"));
        state = "recurring";
      }
      t.push_back({"", JsonText(w, "/name"), when, state});
    }
    out += Table(t);
  }
  absl::StrAppend(&out, "\n", st.Bold("Releases"), "\n");
  const json& rels = Arr(env, "/status/releases");
  if (rels.empty()) {
    absl::StrAppend(&out, "  (none)\n");
  } else {
    std::vector<std::vector<std::string>> t = {
        {"", "NAMESPACE", "NAME", "PHASE", "REVISION", "READY SINCE"}};
    for (const json& r : rels) {
      t.push_back({"", JsonText(r, "/namespace"), JsonText(r, "/name"),
                   Or(JsonText(r, "/phase"), "-"), Or(JsonText(r, "/revision"), "-"),
                   AgeSince(r.value("readySince", json()), now)});
    }
    out += Table(t);
  }
  for (const json& c : Arr(env, "/status/conditions")) {
    if (JsonText(c, "/type") == "Stalled" && JsonText(c, "/status") == "True") {
      absl::StrAppend(&out, "\n", st.Phase("Stalled"), ": ", JsonText(c, "/message"), "\n");
    }
  }
  return out;
}

std::string SecretRotationTable(const std::vector<json>& rotations, bool all_namespaces,
                                absl::Time now) {
  std::vector<std::vector<std::string>> t;
  std::vector<std::string> header = {"NAME", "SECRET", "INTERVAL", "LAST", "NEXT", "PHASE"};
  if (all_namespaces) header.insert(header.begin(), "NAMESPACE");
  t.push_back(header);
  for (const json& r : rotations) {
    std::string next = "-";
    absl::Time t_next;
    std::string err;
    if (absl::ParseTime(absl::RFC3339_full, JsonText(r, "/status/nextRotationTime"), &t_next,
                        &err)) {
      next = t_next <= now ? "due" : absl::StrCat("in ", FormatAge(t_next - now));
    }
    const std::string last_age =
        AgeSince(r.value("status", json::object()).value("lastRotationTime", json()), now);
    std::vector<std::string> row = {JsonText(r, "/metadata/name"),
                                    JsonText(r, "/spec/secretName"),
                                    Or(JsonText(r, "/spec/interval"), "-"),
                                    last_age == "-" ? "never" : absl::StrCat(last_age, " ago"),
                                    next,
                                    Or(JsonText(r, "/status/phase"), "-")};
    if (all_namespaces) row.insert(row.begin(), JsonText(r, "/metadata/namespace"));
    t.push_back(std::move(row));
  }
  return Table(t);
}

}  // namespace capstan::cli
