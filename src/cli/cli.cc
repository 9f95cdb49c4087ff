// `kubectl capstan`: argument handling, the cluster session and every command.
// What is printed is built by view.h's pure functions; this file reads and writes.

#include "capstan/cli/cli.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "capstan/api/environment.h"
#include "capstan/api/labels.h"
#include "capstan/api/release.h"
#include "capstan/api/yaml.h"
#include "capstan/cli/view.h"
#include "capstan/common/json_util.h"
#include "capstan/common/status_macros.h"
#include "capstan/common/version.h"
#include "capstan/kube/client.h"
#include "capstan/kube/resource.h"
#include "capstan/kube/rest_config.h"
#include "capstan/policy/environment.h"
#include "capstan/render/render.h"

namespace capstan::cli {
namespace {

using nlohmann::json;
namespace res = kube::resources;

constexpr char kUsage[] = R"(kubectl capstan: safe releases on Kubernetes, from the command line.

Releases:
  get [release] [NAME] [--watch]     the Release as a tree (revisions, Deployments, pods, what
                                     it waits for); without NAME a table of Releases
  status NAME [--timeout 5m] [--until Ready|Previewing|Waiting]
                                     follow until reached (exit 0), failed or rolled back (1),
                                     or timed out (2): run it in CI after kubectl apply
  promote NAME [--revision HASH]     send the BlueGreen preview live
  abort NAME                         stop the rollout in flight, back to the stable revision
  retry NAME                         one more attempt at the failed revision
  restart NAME                       new revision with the same template (a restart)
  history NAME                       revisions, their images and how they ended
  undo NAME [--to-revision HASH|N]   put an earlier revision's template back (-o yaml: what
                                     to commit to Git; --dry-run: only print)
  approve NAME [--revision HASH] [--digest sha256:...] [--comment TEXT]
                                     approve the revision waiting (the API server records you)

Environments and secrets:
  env list | env get NAME            Environments, their gates, their Releases
  env freeze NAME --until T [--reason TEXT]   stop the line until T (RFC 3339 or 2h)
  env unfreeze NAME [--window W]     remove the freeze added by env freeze (or window W)
  get srot [NAME]                    SecretRotations with last and next rotation
  rotate NAME                        rotate a SecretRotation's Secret now

Files and more:
  render -f FILE                     the objects a Release becomes (no cluster needed)
  diff -f FILE                       what applying FILE would change (exit 1: differences)
  version                            client and operator versions
  completion bash|zsh                shell completion

Flags: --kubeconfig FILE, --context NAME, -n/--namespace NS, -A/--all-namespaces,
       -o/--output json|yaml|name, -f/--filename FILE.
Exit codes: 0 done, 1 error (status: failed), 2 status timed out.
)";

// ---------------------------------------------------------------------------
// Arguments. Written by hand rather than with absl flags (process-global, no
// subcommands): kubectl's conventions are -n ns, --namespace=ns, flags anywhere.

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> values;
  std::set<std::string> bools;

  std::string Get(const std::string& key) const {
    auto it = values.find(key);
    return it == values.end() ? "" : it->second;
  }
  bool Has(const std::string& key) const { return values.count(key) > 0 || bools.count(key) > 0; }
};

const std::map<std::string, std::string>& ValueFlags() {
  static const auto* m =
      new std::map<std::string, std::string>{{"kubeconfig", "kubeconfig"},
                                             {"context", "context"},
                                             {"namespace", "namespace"},
                                             {"n", "namespace"},
                                             {"output", "output"},
                                             {"o", "output"},
                                             {"timeout", "timeout"},
                                             {"until", "until"},
                                             {"to-revision", "to-revision"},
                                             {"revision", "revision"},
                                             {"comment", "comment"},
                                             {"reason", "reason"},
                                             {"digest", "digest"},
                                             {"filename", "filename"},
                                             {"f", "filename"},
                                             {"window", "window"},
                                             {"request-timeout", "request-timeout"}};
  return *m;
}

const std::map<std::string, std::string>& BoolFlags() {
  static const auto* m =
      new std::map<std::string, std::string>{{"all-namespaces", "all-namespaces"},
                                             {"A", "all-namespaces"},
                                             {"watch", "watch"},
                                             {"w", "watch"},
                                             {"dry-run", "dry-run"},
                                             {"help", "help"},
                                             {"h", "help"}};
  return *m;
}

absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& argv) {
  Args a;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (arg == "--") {
      for (++i; i < argv.size(); ++i) a.positional.push_back(argv[i]);
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      a.positional.push_back(arg);
      continue;
    }
    std::string key = arg.substr(arg[1] == '-' ? 2 : 1);
    std::optional<std::string> value;
    if (size_t eq = key.find('='); eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    } else if (arg[1] != '-' && key.size() > 1 && ValueFlags().count(key.substr(0, 1)) > 0 &&
               ValueFlags().count(key) == 0) {
      value = key.substr(1);  // -nshop, -oyaml
      key = key.substr(0, 1);
    }
    if (auto it = BoolFlags().find(key); it != BoolFlags().end()) {
      if (value.has_value() && *value != "true") {
        if (*value == "false") continue;
        return absl::InvalidArgumentError(absl::StrCat("flag --", key, " takes no value"));
      }
      a.bools.insert(it->second);
      continue;
    }
    auto it = ValueFlags().find(key);
    if (it == ValueFlags().end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg));
    }
    if (!value.has_value()) {
      if (i + 1 >= argv.size()) {
        return absl::InvalidArgumentError(absl::StrCat("flag ", arg, " needs a value"));
      }
      value = argv[++i];
    }
    a.values[it->second] = *value;
  }
  return a;
}

// A fresh token for the act annotations: the time, for people, and random digits, so two
// acts in the same second are still two acts.
std::string Token() {
  std::random_device rd;
  return absl::StrCat(absl::FormatTime("%Y%m%dT%H%M%SZ", absl::Now(), absl::UTCTimeZone()), "-",
                      absl::Hex(rd() & 0xffffff, absl::kZeroPad6));
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%SZ", t, absl::UTCTimeZone());
}

// ---------------------------------------------------------------------------
// The cluster session.

class Session {
 public:
  static absl::StatusOr<std::unique_ptr<Session>> Open(const Args& args) {
    auto s = std::unique_ptr<Session>(new Session());
    kube::KubeconfigOptions ko;
    ko.path = args.Get("kubeconfig");
    ko.context = args.Get("context");
    absl::StatusOr<kube::RestConfig> config = kube::LoadKubeconfig(ko);
    if (!config.ok() && ko.path.empty() && ko.context.empty() &&
        std::getenv("KUBECONFIG") == nullptr && std::getenv("KUBERNETES_SERVICE_HOST") != nullptr) {
      config = kube::InClusterConfig();  // kubectl in a pod without a kubeconfig does the same
    }
    if (!config.ok()) return config.status();
    s->config_ = *config;
    s->config_.user_agent = absl::StrCat("kubectl-capstan/", kVersion);
    if (const std::string t = args.Get("request-timeout"); !t.empty()) {
      absl::Duration d;
      if (!absl::ParseDuration(t, &d)) return absl::InvalidArgumentError("bad --request-timeout");
      s->config_.timeout = d;
    }
    ASSIGN_OR_RETURN(s->client_, kube::Client::FromConfig(s->config_));
    s->ns_ = args.Get("namespace");
    if (s->ns_.empty()) s->ns_ = s->config_.namespace_;
    if (s->ns_.empty()) s->ns_ = "default";
    s->all_ = args.Has("all-namespaces");
    return s;
  }

  kube::Client& client() { return *client_; }
  const std::string& ns() const { return ns_; }
  bool all() const { return all_; }

  // The error of a request, said for people: what was asked, and what to do about it.
  absl::Status Explain(const absl::Status& s, const kube::Resource& r, const std::string& ns,
                       const std::string& name) {
    const std::string kind = absl::AsciiStrToLower(r.kind);
    const std::string where = ns.empty() ? "" : absl::StrCat(" in namespace \"", ns, "\"");
    switch (s.code()) {
      case absl::StatusCode::kNotFound:
        // A missing object is a 404 whose message names it ('releases.capstan.dev "web"
        // not found'); a missing resource type is a bare 404 (or "could not find the
        // requested resource"), and a list is never a 404 otherwise.
        if (r.group == "capstan.dev" &&
            (name.empty() || !absl::StrContains(s.message(), absl::StrCat("\"", name, "\"")) ||
             !GroupServed("capstan.dev"))) {
          return absl::NotFoundError(absl::StrCat(
              "the Capstan CRDs are not installed on this cluster (the API server serves no ",
              r.resource,
              ".capstan.dev). Install them: kubectl apply --server-side -f crds/ "
              "(or the Helm chart)"));
        }
        if (!name.empty()) {
          return absl::NotFoundError(absl::StrCat(kind, " \"", name, "\" not found", where));
        }
        return s;
      case absl::StatusCode::kPermissionDenied:
        return absl::PermissionDeniedError(
            absl::StrCat("not allowed: ", s.message(),
                         ". Ask a cluster admin for RBAC (kubectl auth can-i --list",
                         where.empty() ? "" : " -n ", ns, ")"));
      case absl::StatusCode::kUnauthenticated:
        return absl::UnauthenticatedError(
            absl::StrCat("the API server did not accept your credentials (", config_.source,
                         "): ", s.message()));
      case absl::StatusCode::kUnavailable:
        return absl::UnavailableError(
            absl::StrCat("cannot reach the API server ", config_.server, ": ", s.message()));
      default:
        return s;
    }
  }

  absl::StatusOr<json> Get(const kube::Resource& r, const std::string& ns,
                           const std::string& name) {
    absl::StatusOr<json> o = client_->Get(r, r.namespaced ? ns : "", name);
    if (!o.ok()) return Explain(o.status(), r, r.namespaced ? ns : "", name);
    return o;
  }

  absl::StatusOr<std::vector<json>> List(const kube::Resource& r, const std::string& ns,
                                         const std::string& selector = "") {
    kube::ListOptions lo;
    lo.label_selector = selector;
    absl::StatusOr<kube::ListPage> page = client_->ListAll(r, r.namespaced ? ns : "", lo);
    if (!page.ok()) return Explain(page.status(), r, ns, "");
    return std::move(page->items);
  }

  absl::StatusOr<json> Patch(const kube::Resource& r, const std::string& ns,
                             const std::string& name, const json& patch) {
    absl::StatusOr<json> o =
        client_->MergePatch(r, r.namespaced ? ns : "", name, patch, "", "kubectl-capstan");
    if (!o.ok()) return Explain(o.status(), r, ns, name);
    return o;
  }

  // Read-modify-write with the object's resourceVersion, again on a conflict.
  absl::StatusOr<json> Modify(const kube::Resource& r, const std::string& ns,
                              const std::string& name,
                              const std::function<absl::Status(json*)>& change) {
    for (int attempt = 0;; ++attempt) {
      ASSIGN_OR_RETURN(json obj, Get(r, ns, name));
      RETURN_IF_ERROR(change(&obj));
      absl::StatusOr<json> o =
          client_->Update(r, r.namespaced ? ns : "", obj, "", "kubectl-capstan");
      if (o.ok()) return o;
      if (o.status().code() != absl::StatusCode::kAborted || attempt >= 4) {
        return Explain(o.status(), r, ns, name);
      }
    }
  }

  bool GroupServed(const std::string& group) {
    absl::StatusOr<std::vector<kube::ApiGroupVersion>> groups = client_->ServerGroups();
    if (!groups.ok()) return true;  // cannot tell: keep the original error
    for (const kube::ApiGroupVersion& g : *groups) {
      if (g.group == group) return true;
    }
    return false;
  }

 private:
  Session() = default;
  kube::RestConfig config_;
  std::unique_ptr<kube::Client> client_;
  std::string ns_;
  bool all_ = false;
};

// ---------------------------------------------------------------------------
// Output.

absl::Status PrintObjects(const std::string& format, const std::vector<json>& objects, bool list,
                          std::ostream& out) {
  if (format == "json") {
    if (list) {
      out << json{{"apiVersion", "v1"}, {"kind", "List"}, {"items", objects}}.dump(4) << "\n";
    } else {
      out << (objects.empty() ? json() : objects[0]).dump(4) << "\n";
    }
  } else if (format == "yaml") {
    if (list) {
      out << api::JsonToYaml(json{{"apiVersion", "v1"}, {"kind", "List"}, {"items", objects}});
    } else {
      out << api::JsonToYaml(objects.empty() ? json() : objects[0]);
    }
  } else if (format == "name") {
    for (const json& o : objects) {
      std::string kind = absl::AsciiStrToLower(JsonString(o, "/kind"));
      const std::string api_version = JsonString(o, "/apiVersion");
      if (absl::StrContains(api_version, "/")) {
        kind = absl::StrCat(kind, ".", api_version.substr(0, api_version.find('/')));
      }
      out << kind << "/" << JsonString(o, "/metadata/name") << "\n";
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown output format \"", format, "\" (json, yaml or name)"));
  }
  return absl::OkStatus();
}

Style TerminalStyle() {
  const char* no_color = std::getenv("NO_COLOR");
  const char* term = std::getenv("TERM");
  Style s;
  s.color = isatty(STDOUT_FILENO) && (no_color == nullptr || *no_color == '\0') &&
            !(term != nullptr && std::string(term) == "dumb");
  return s;
}

absl::Status NeedName(const Args& a, size_t index, const std::string& usage) {
  if (a.positional.size() <= index) {
    return absl::InvalidArgumentError(absl::StrCat("usage: kubectl capstan ", usage));
  }
  return absl::OkStatus();
}

// The revision and desired-state digest the operator would compute for `release`
// (render::DesiredStateDigest after the Environment's defaults); empty when they cannot
// be known from here.
struct Desired {
  std::string revision;
  std::string digest;
};

Desired DesiredState(Session& s, const json& release);

// The revision that would roll out now: the template with the Environment's defaults
// applied, hashed as the operator does (same pure functions). "" when it cannot be
// computed (the Release does not parse).
std::string DesiredRevision(Session& s, const json& release) {
  return DesiredState(s, release).revision;
}

Desired DesiredState(Session& s, const json& release) {
  absl::StatusOr<api::Release> rel = api::ParseRelease(release);
  if (!rel.ok()) return {};
  absl::StatusOr<std::vector<json>> envs = s.List(res::Environments(), "");
  if (!envs.ok() && envs.status().code() != absl::StatusCode::kNotFound) {
    return {};  // cannot see the Environments (RBAC): the hash could be wrong, so none
  }
  if (envs.ok() && !envs->empty()) {
    std::vector<api::Environment> parsed;
    bool selectors = false;
    for (const json& e : *envs) {
      if (absl::StatusOr<api::Environment> pe = api::ParseEnvironment(e); pe.ok()) {
        selectors |= pe->spec.namespace_selector.has_value();
        parsed.push_back(std::move(*pe));
      }
    }
    policy::NamespaceInfo info{rel->metadata.ns, {}};
    absl::StatusOr<json> nso = s.client().Get(res::Namespaces(), "", rel->metadata.ns);
    if (!nso.ok() && selectors) return {};  // membership by labels we cannot read
    if (nso.ok() && nso->contains("/metadata/labels"_json_pointer)) {
      for (const auto& [k, v] : nso->at("/metadata/labels"_json_pointer).items()) {
        if (v.is_string()) info.labels[k] = v.get<std::string>();
      }
    }
    const policy::Membership m = policy::ResolveEnvironment(parsed, rel->spec.environment, info);
    if (m.ok() && m.environment != nullptr) policy::ApplyEnvironment(*m.environment, &*rel);
  }
  return {render::RenderPodTemplate(*rel).revision, render::DesiredStateDigest(*rel)};
}

absl::StatusOr<TreeInput> ReadTree(Session& s, const std::string& name) {
  TreeInput in;
  ASSIGN_OR_RETURN(in.release, s.Get(res::Releases(), s.ns(), name));
  const std::string sel = absl::StrCat(api::kLabelRelease, "=", name);
  // Objects of other Releases with the same label are not this one's: match the owner.
  const std::string uid = JsonString(in.release, "/metadata/uid");
  auto owned = [&uid](const json& o) {
    for (const json& ref :
         o.value("metadata", json::object()).value("ownerReferences", json::array())) {
      if (ref.value("uid", "") == uid) return true;
    }
    return false;
  };
  ASSIGN_OR_RETURN(std::vector<json> deployments, s.List(res::Deployments(), s.ns(), sel));
  for (json& d : deployments) {
    if (owned(d)) in.deployments.push_back(std::move(d));
  }
  ASSIGN_OR_RETURN(in.pods, s.List(res::Pods(), s.ns(), sel));
  ASSIGN_OR_RETURN(std::vector<json> revisions, s.List(res::ControllerRevisions(), s.ns(), sel));
  for (json& r : revisions) {
    if (owned(r)) in.revisions.push_back(std::move(r));
  }
  // Analysis runs are optional on the screen: a cluster without the AnalysisRun CRD (404)
  // or a caller who may not list them (403) still gets the rest of the tree.
  absl::StatusOr<std::vector<json>> runs = s.List(res::AnalysisRuns(), s.ns(), sel);
  if (runs.ok()) {
    for (json& r : *runs) {
      if (owned(r)) in.analysis_runs.push_back(std::move(r));
    }
  } else if (!absl::IsNotFound(runs.status()) && !absl::IsPermissionDenied(runs.status())) {
    return runs.status();
  }
  in.desired_revision = DesiredRevision(s, in.release);
  in.now = absl::Now();
  return in;
}

// Calls `changed` whenever one of `watches` reports an event, from one thread per watch;
// returns when `changed` returns false. Watches re-open when the server ends them.
struct WatchSpec {
  kube::Resource resource;
  std::string ns;
  std::string label_selector;
  std::string field_selector;
};

class Watcher {
 public:
  explicit Watcher(kube::Client& client) : client_(client) {}
  ~Watcher() {
    for (auto& c : cancels_) c->Cancel();
    for (std::thread& t : threads_) t.join();
  }
  void Start(const WatchSpec& w) {
    // One Cancellation per stream: it holds the hook that aborts that stream's connection.
    cancels_.push_back(std::make_unique<kube::Cancellation>());
    kube::Cancellation* cancel = cancels_.back().get();
    threads_.emplace_back([this, w, cancel] {
      std::string rv;
      while (!cancel->cancelled()) {
        kube::WatchOptions wo;
        wo.label_selector = w.label_selector;
        wo.field_selector = w.field_selector;
        wo.resource_version = rv;
        wo.timeout = absl::Minutes(5);
        absl::Status st = client_.Watch(
            w.resource, w.ns, wo,
            [this, &rv](kube::WatchEvent&& ev) {
              const std::string v = ev.object.value("/metadata/resourceVersion"_json_pointer, "");
              if (!v.empty()) rv = v;
              if (ev.type != kube::WatchEvent::Type::kBookmark) Signal();
              return true;
            },
            cancel);
        if (st.code() == absl::StatusCode::kOutOfRange) rv.clear();  // 410 Gone: start over
        if (!st.ok() && st.code() != absl::StatusCode::kOutOfRange && !cancel->cancelled()) {
          absl::SleepFor(absl::Seconds(1));  // API server away: try again, not in a hot loop
        }
      }
    });
  }
  void Signal() {
    absl::MutexLock lock(&mu_);
    dirty_ = true;
  }
  // Waits until an event came or `deadline`; true when one came.
  bool WaitForEvent(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithDeadline(absl::Condition(&dirty_), deadline);
    const bool got = dirty_;
    dirty_ = false;
    return got;
  }

 private:
  kube::Client& client_;
  std::vector<std::unique_ptr<kube::Cancellation>> cancels_;
  std::vector<std::thread> threads_;
  absl::Mutex mu_;
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
};

// ---------------------------------------------------------------------------
// Commands.

int Fail(std::ostream& err, const absl::Status& s) {
  err << "error: " << s.message() << "\n";
  return 1;
}

absl::Status CmdGetRelease(Session& s, const Args& a, const std::string& name, std::ostream& out) {
  const std::string format = a.Get("output");
  if (name.empty()) {
    ASSIGN_OR_RETURN(std::vector<json> rels, s.List(res::Releases(), s.all() ? "" : s.ns()));
    if (!format.empty()) return PrintObjects(format, rels, true, out);
    if (rels.empty()) {
      out << (s.all() ? "No Releases found.\n"
                      : absl::StrCat("No Releases found in namespace ", s.ns(), ".\n"));
      return absl::OkStatus();
    }
    out << ReleaseTable(rels, s.all(), absl::Now());
    return absl::OkStatus();
  }
  if (!format.empty()) {
    ASSIGN_OR_RETURN(json rel, s.Get(res::Releases(), s.ns(), name));
    return PrintObjects(format, {rel}, false, out);
  }
  const Style style = TerminalStyle();
  if (!a.Has("watch")) {
    ASSIGN_OR_RETURN(TreeInput in, ReadTree(s, name));
    out << RenderTree(in, style);
    return absl::OkStatus();
  }
  // --watch: one watch per kind of object on the screen; every event redraws from fresh
  // reads (a burst of events draws once).
  ASSIGN_OR_RETURN(TreeInput first, ReadTree(s, name));
  Watcher watcher(s.client());
  const std::string sel = absl::StrCat(api::kLabelRelease, "=", name);
  watcher.Start({res::Releases(), s.ns(), "", absl::StrCat("metadata.name=", name)});
  watcher.Start({res::Deployments(), s.ns(), sel, ""});
  watcher.Start({res::Pods(), s.ns(), sel, ""});
  const bool tty = isatty(STDOUT_FILENO);
  std::string last;
  TreeInput in = std::move(first);
  for (;;) {
    const std::string screen = RenderTree(in, style);
    if (screen != last) {
      if (tty) {
        out << "\033[H\033[2J";  // home, clear: redraw in place
      } else if (!last.empty()) {
        out << "\n";
      }
      out << screen << std::flush;
      last = screen;
    }
    // Ages tick even without events; a redraw every 30 s keeps them roughly right.
    watcher.WaitForEvent(absl::Now() + absl::Seconds(30));
    absl::StatusOr<TreeInput> next = ReadTree(s, name);
    if (!next.ok()) return next.status();
    in = std::move(*next);
  }
}

absl::Status CmdGetSrot(Session& s, const Args& a, const std::string& name, std::ostream& out) {
  std::vector<json> items;
  if (!name.empty()) {
    ASSIGN_OR_RETURN(json o, s.Get(res::SecretRotations(), s.ns(), name));
    items.push_back(std::move(o));
  } else {
    ASSIGN_OR_RETURN(items, s.List(res::SecretRotations(), s.all() ? "" : s.ns()));
  }
  if (const std::string f = a.Get("output"); !f.empty()) {
    return PrintObjects(f, items, name.empty(), out);
  }
  if (items.empty()) {
    out << "No SecretRotations found.\n";
    return absl::OkStatus();
  }
  out << SecretRotationTable(items, s.all(), absl::Now());
  return absl::OkStatus();
}

// status: one line per phase change; exit 0 reached, 1 failed, 2 timeout.
int CmdStatus(Session& s, const Args& a, std::ostream& out, std::ostream& err) {
  const std::string name = a.positional[1];
  absl::Duration timeout = absl::Minutes(10);
  if (const std::string t = a.Get("timeout"); !t.empty() && !absl::ParseDuration(t, &timeout)) {
    return Fail(err, absl::InvalidArgumentError(
                         absl::StrCat("--timeout ", t, " is not a duration (e.g. 90s, 5m)")));
  }
  const std::string until = a.Get("until").empty() ? "Ready" : a.Get("until");
  if (until != "Ready" && until != "Previewing" && until != "Waiting") {
    return Fail(err, absl::InvalidArgumentError("--until is Ready, Previewing or Waiting"));
  }
  const absl::Time deadline = absl::Now() + timeout;
  Watcher watcher(s.client());
  watcher.Start({res::Releases(), s.ns(), "", absl::StrCat("metadata.name=", name)});
  std::string last_line;
  for (;;) {
    absl::StatusOr<json> rel = s.Get(res::Releases(), s.ns(), name);
    if (!rel.ok()) return Fail(err, rel.status());
    const std::string phase = JsonString(*rel, "/status/phase");
    const int64_t gen = rel->value("/metadata/generation"_json_pointer, int64_t{0});
    const int64_t seen = rel->value("/status/observedGeneration"_json_pointer, int64_t{0});
    const bool current = seen == gen;  // status describes this spec, not the one before
    const std::string rev = JsonString(*rel, "/status/currentRevision");
    const std::string line =
        current ? absl::StrCat(phase.empty() ? "Pending" : phase, rev.empty() ? "" : " ",
                               rev.empty() ? "" : absl::StrCat("revision ", rev), ": ",
                               JsonString(*rel, "/status/message"))
                : absl::StrCat("Pending: generation ", gen, " not yet seen by Capstan");
    if (line != last_line) {
      out << Rfc3339(absl::Now()) << " " << name << " " << line << std::endl;
      last_line = line;
    }
    if (current) {
      if (phase == until || (until == "Previewing" && phase == "Ready")) return 0;
      if (phase == "RolledBack" || phase == "Degraded" || phase == "Aborted" ||
          phase == "Stalled") {
        err << name << ": " << phase << " (" << JsonString(*rel, "/status/message") << ")\n";
        return 1;
      }
    }
    if (absl::Now() >= deadline) {
      err << name << ": timed out after " << absl::FormatDuration(timeout) << " in phase "
          << (phase.empty() ? "Pending" : phase) << " (waiting for " << until << ")\n";
      return 2;
    }
    watcher.WaitForEvent(deadline);
  }
}

absl::Status Annotate(Session& s, const kube::Resource& r, const std::string& name,
                      const std::string& key, const std::string& value) {
  return s.Patch(r, s.ns(), name, json{{"metadata", {{"annotations", {{key, value}}}}}}).status();
}

absl::Status CmdPromote(Session& s, const Args& a, std::ostream& out) {
  const std::string name = a.positional[1];
  ASSIGN_OR_RETURN(json rel, s.Get(res::Releases(), s.ns(), name));
  if (JsonString(rel, "/spec/strategy/type") != "BlueGreen") {
    return absl::FailedPreconditionError(
        absl::StrCat("release ", name, " is RollingUpdate: only BlueGreen Releases are promoted"));
  }
  const std::string rev = JsonString(rel, "/status/currentRevision");
  const std::string phase = JsonString(rel, "/status/phase");
  if (const std::string want = a.Get("revision"); !want.empty() && want != rev) {
    return absl::FailedPreconditionError(absl::StrCat("the preview of ", name, " is revision ", rev,
                                                      ", not ", want, ": nothing promoted"));
  }
  if (phase != "Previewing") {
    return absl::FailedPreconditionError(
        absl::StrCat("release ", name, " is ", phase.empty() ? "Pending" : phase,
                     ", not Previewing: there is no preview to promote"));
  }
  RETURN_IF_ERROR(Annotate(s, res::Releases(), name, "capstan.dev/promote", rev));
  out << "release " << name << ": promoting revision " << rev << " (preview colour "
      << JsonString(rel, "/status/previewColor") << ")\n";
  return absl::OkStatus();
}

absl::Status CmdAbort(Session& s, const Args& a, std::ostream& out) {
  const std::string name = a.positional[1];
  ASSIGN_OR_RETURN(json rel, s.Get(res::Releases(), s.ns(), name));
  const std::string token = Token();
  RETURN_IF_ERROR(Annotate(s, res::Releases(), name, "capstan.dev/abort", token));
  out << "release " << name << ": abort requested (token " << token << "); traffic stays on "
      << "stable revision " << JsonString(rel, "/status/stableRevision") << "\n";
  return absl::OkStatus();
}

absl::Status CmdRetry(Session& s, const Args& a, std::ostream& out) {
  const std::string name = a.positional[1];
  ASSIGN_OR_RETURN(json rel, s.Get(res::Releases(), s.ns(), name));
  const std::string failed = JsonString(rel, "/status/failedRevision");
  if (failed.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("release ", name, " has no failed revision: nothing to retry"));
  }
  const std::string token = Token();
  RETURN_IF_ERROR(Annotate(s, res::Releases(), name, "capstan.dev/retry", token));
  out << "release " << name << ": retrying revision " << failed << " (token " << token << ")\n";
  return absl::OkStatus();
}

absl::Status CmdRestart(Session& s, const Args& a, std::ostream& out) {
  const std::string name = a.positional[1];
  const std::string now = Rfc3339(absl::Now());
  // kubectl rollout restart's annotation: a new template, so a new revision, gated and
  // rolled out like any other change.
  ASSIGN_OR_RETURN(
      json rel,
      s.Patch(res::Releases(), s.ns(), name,
              json{{"spec",
                    {{"template",
                      {{"metadata",
                        {{"annotations", {{"kubectl.kubernetes.io/restartedAt", now}}}}}}}}}}));
  out << "release " << name << ": restarted (generation "
      << rel.value("/metadata/generation"_json_pointer, int64_t{0}) << ")\n";
  return absl::OkStatus();
}

absl::StatusOr<std::vector<json>> OwnedRevisions(Session& s, const json& rel) {
  const std::string name = JsonString(rel, "/metadata/name");
  const std::string uid = JsonString(rel, "/metadata/uid");
  ASSIGN_OR_RETURN(std::vector<json> all, s.List(res::ControllerRevisions(), s.ns(),
                                                 absl::StrCat(api::kLabelRelease, "=", name)));
  std::vector<json> out;
  for (json& cr : all) {
    for (const json& ref :
         cr.value("metadata", json::object()).value("ownerReferences", json::array())) {
      if (ref.value("uid", "") == uid) {
        out.push_back(std::move(cr));
        break;
      }
    }
  }
  return out;
}

absl::Status CmdHistory(Session& s, const Args& a, std::ostream& out) {
  const std::string name = a.positional[1];
  ASSIGN_OR_RETURN(json rel, s.Get(res::Releases(), s.ns(), name));
  ASSIGN_OR_RETURN(std::vector<json> crs, OwnedRevisions(s, rel));
  const std::vector<RevisionRow> rows = Revisions(rel, crs);
  if (const std::string f = a.Get("output"); !f.empty()) {
    if (f == "name") return absl::InvalidArgumentError("history has no -o name");
    std::vector<json> items;
    for (const RevisionRow& r : rows) {
      items.push_back({{"revision", r.number},
                       {"hash", r.hash},
                       {"images", r.images},
                       {"phase", r.phase},
                       {"time", r.time},
                       {"marks", r.marks}});
    }
    if (f == "json") {
      out << json(items).dump(4) << "\n";
    } else if (f == "yaml") {
      out << api::JsonToYaml(json(items));
    } else {
      return absl::InvalidArgumentError("-o is json or yaml");
    }
    return absl::OkStatus();
  }
  out << HistoryTable(rows, absl::Now());
  return absl::OkStatus();
}

// The template of a ControllerRevision as a user writes it: without the labels
// Capstan adds (a Release may not set capstan.dev/ labels).
json UserTemplate(json t) {
  if (t.contains("/metadata/labels"_json_pointer)) {
    json& labels = t["metadata"]["labels"];
    for (auto it = labels.begin(); it != labels.end();) {
      if (absl::StartsWith(it.key(), api::kReservedPrefix)) {
        it = labels.erase(it);
      } else {
        ++it;
      }
    }
    if (labels.empty()) t["metadata"].erase("labels");
    if (t["metadata"].empty()) t.erase("metadata");
  }
  return t;
}

absl::Status CmdUndo(Session& s, const Args& a, std::ostream& out, std::ostream& err) {
  const std::string name = a.positional[1];
  ASSIGN_OR_RETURN(json rel, s.Get(res::Releases(), s.ns(), name));
  ASSIGN_OR_RETURN(std::vector<json> crs, OwnedRevisions(s, rel));
  const std::vector<RevisionRow> rows = Revisions(rel, crs);
  // What the spec asks for now (with the Environment applied, as the operator hashes it).
  const std::string desired = DesiredRevision(s, rel);
  const std::string stable = JsonString(rel, "/status/stableRevision");
  const std::string to = a.Get("to-revision");
  const RevisionRow* target = nullptr;
  int64_t number = 0;
  const bool by_number = !to.empty() && absl::SimpleAtoi(to, &number);
  for (const RevisionRow& r : rows) {
    if (to.empty() && !stable.empty() && desired != stable) {
      // After a rollback the spec still names the failed template: put back what runs.
      if (r.hash == stable) {
        target = &r;
        break;
      }
    } else if (to.empty()) {
      // Like kubectl rollout undo: the newest revision before the current one that ran.
      if (r.hash != desired && (r.phase == "Ready" || r.phase == "Superseded")) {
        target = &r;
        break;
      }
    } else if ((by_number && r.number == number) || r.hash == to) {
      target = &r;
      break;
    }
  }
  if (target == nullptr) {
    return absl::NotFoundError(to.empty() ? absl::StrCat("release ", name,
                                                         " has no earlier revision that ran Ready; "
                                                         "see kubectl capstan history ",
                                                         name)
                                          : absl::StrCat("release ", name, " has no revision ", to,
                                                         "; see kubectl capstan history ", name));
  }
  const json* cr = nullptr;
  for (const json& c : crs) {
    if (JsonString(c, "/metadata/labels/capstan.dev~1revision") == target->hash) cr = &c;
  }
  if (cr == nullptr || !cr->contains("/data/template"_json_pointer)) {
    return absl::NotFoundError(
        absl::StrCat("the template of revision ", target->hash,
                     " is no longer kept (ControllerRevision gone: spec.revisionHistoryLimit)"));
  }
  const json tmpl = UserTemplate(cr->at("/data/template"_json_pointer));
  json manifest = {{"apiVersion", api::kApiVersion},
                   {"kind", "Release"},
                   {"metadata", {{"name", name}, {"namespace", s.ns()}}},
                   {"spec", rel.value("spec", json::object())}};
  manifest["spec"]["template"] = tmpl;
  if (!a.Has("dry-run")) {
    RETURN_IF_ERROR(s.Modify(res::Releases(), s.ns(), name, [&tmpl](json* obj) {
                       (*obj)["spec"]["template"] = tmpl;
                       return absl::OkStatus();
                     }).status());
    err << "release " << name << ": spec.template set to revision " << target->hash
        << (target->number > 0 ? absl::StrCat(" (#", target->number, ")") : "") << ", images "
        << absl::StrJoin(target->images, ",") << "\n";
  }
  err << "warning: if a GitOps tool (Argo CD, Flux) owns this Release, it will put the old "
         "template back: commit the change there too"
      << (a.Get("output") == "yaml" ? " (the Release below)."
                                    : " (kubectl capstan undo -o yaml "
                                      "prints it).")
      << "\n";
  if (const std::string f = a.Get("output"); !f.empty()) {
    RETURN_IF_ERROR(PrintObjects(f, {manifest}, false, out));
  }
  return absl::OkStatus();
}

absl::Status CmdApprove(Session& s, const Args& a, std::ostream& out) {
  const std::string name = a.positional[1];
  ASSIGN_OR_RETURN(json rel, s.Get(res::Releases(), s.ns(), name));
  std::string rev = a.Get("revision");
  const Desired computed = DesiredState(s, rel);
  if (rev.empty()) rev = computed.revision;
  // What is approved is the whole desired state (digest) of this very Release (uid).
  std::string digest = a.Get("digest");
  if (digest.empty() && rev == computed.revision) digest = computed.digest;
  if (digest.empty() && rel.value("/status/observedGeneration"_json_pointer, int64_t{-1}) ==
                            rel.value("/metadata/generation"_json_pointer, int64_t{0})) {
    digest = JsonString(rel, "/status/desiredDigest");
  }
  if (!rev.empty() && digest.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot tell the desired-state digest of ", name,
                     " (status.desiredDigest once the operator has seen the spec): give --digest"));
  }
  if (rev.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot tell which revision of ", name, " waits: give --revision"));
  }
  if (a.Get("revision").empty() && rev == JsonString(rel, "/status/currentRevision") &&
      JsonString(rel, "/status/phase") != "Waiting") {
    return absl::FailedPreconditionError(absl::StrCat("revision ", rev, " of ", name,
                                                      " already runs; nothing waits for approval "
                                                      "(give --revision to approve another)"));
  }
  json spec = {{"release", name},
               {"revision", rev},
               {"digest", digest},
               {"releaseUID", JsonString(rel, "/metadata/uid")}};
  if (const std::string c = a.Get("comment"); !c.empty()) spec["comment"] = c;
  // generateName: each approver their own object, so four-eyes rules can count them.
  const json body = {{"apiVersion", api::kApiVersion},
                     {"kind", api::kReleaseApprovalKind},
                     {"metadata", {{"generateName", absl::StrCat(name, "-", rev, "-")}}},
                     {"spec", spec}};
  absl::StatusOr<json> created =
      s.client().Create(res::ReleaseApprovals(), s.ns(), body, "kubectl-capstan");
  if (!created.ok()) return s.Explain(created.status(), res::ReleaseApprovals(), s.ns(), "");
  if (const std::string f = a.Get("output"); !f.empty()) {
    return PrintObjects(f, {*created}, false, out);
  }
  const std::string by = JsonString(*created, "/spec/approvedBy");
  out << "releaseapproval.capstan.dev/" << JsonString(*created, "/metadata/name")
      << " created: revision " << rev << " of " << name << " approved"
      << (by.empty() ? " (this cluster does not record approvers: install the chart's "
                       "admission policies)"
                     : absl::StrCat(" by ", by))
      << "\n";
  return absl::OkStatus();
}

constexpr char kFreezeAnnotation[] = "capstan.dev/cli-freezes";

absl::Status CmdEnv(Session& s, const Args& a, std::ostream& out, std::ostream& err) {
  const std::string sub = a.positional.size() > 1 ? a.positional[1] : "list";
  const std::string f = a.Get("output");
  if (sub == "list" || sub == "ls") {
    ASSIGN_OR_RETURN(std::vector<json> envs, s.List(res::Environments(), ""));
    if (!f.empty()) return PrintObjects(f, envs, true, out);
    if (envs.empty()) {
      out << "No Environments found.\n";
      return absl::OkStatus();
    }
    out << EnvironmentTable(envs, absl::Now());
    return absl::OkStatus();
  }
  if (a.positional.size() < 3) {
    return absl::InvalidArgumentError(absl::StrCat("usage: kubectl capstan env ", sub, " NAME"));
  }
  const std::string name = a.positional[2];
  if (sub == "get") {
    ASSIGN_OR_RETURN(json env, s.Get(res::Environments(), "", name));
    if (!f.empty()) return PrintObjects(f, {env}, false, out);
    out << EnvironmentDetail(env, absl::Now(), TerminalStyle());
    return absl::OkStatus();
  }
  if (sub == "freeze") {
    const std::string until_text = a.Get("until");
    if (until_text.empty()) {
      return absl::InvalidArgumentError(
          "usage: kubectl capstan env freeze NAME --until 2026-12-24T08:00:00Z|2h [--reason TEXT]");
    }
    const absl::Time now = absl::Now();
    absl::Time until;
    absl::Duration d;
    std::string perr;
    if (absl::ParseDuration(until_text, &d)) {
      until = now + d;
    } else if (!absl::ParseTime(absl::RFC3339_full, until_text, &until, &perr)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--until ", until_text,
                       " is neither RFC 3339 (2026-12-24T08:00:00Z) nor a duration (2h)"));
    }
    if (until <= now) return absl::InvalidArgumentError("--until is in the past");
    std::string window = a.Get("reason").empty() ? "kubectl-capstan-freeze" : a.Get("reason");
    if (window.size() > 63) window.resize(63);
    const absl::Time from = absl::FromUnixSeconds(absl::ToUnixSeconds(now));
    RETURN_IF_ERROR(s.Modify(res::Environments(), "", name, [&](json* env) -> absl::Status {
                       json& windows = (*env)["spec"]["policies"]["freezeWindows"];
                       if (!windows.is_array()) windows = json::array();
                       for (const json& w : windows) {
                         if (w.value("name", "") == window) {
                           return absl::AlreadyExistsError(absl::StrCat(
                               "Environment ", name, " already has a freeze window \"", window,
                               "\" (give another --reason, or env unfreeze first)"));
                         }
                       }
                       windows.push_back(
                           {{"name", window}, {"from", Rfc3339(from)}, {"until", Rfc3339(until)}});
                       json added = json::array();
                       json& ann = (*env)["metadata"]["annotations"];
                       if (ann.is_object() && ann.contains(kFreezeAnnotation)) {
                         added =
                             json::parse(ann[kFreezeAnnotation].get<std::string>(), nullptr, false);
                         if (!added.is_array()) added = json::array();
                       }
                       added.push_back(window);
                       ann[kFreezeAnnotation] = added.dump();
                       return absl::OkStatus();
                     }).status());
    out << "environment " << name << ": frozen until " << Rfc3339(until) << " (window \"" << window
        << "\"); rollouts that have not started wait, rollbacks never do\n";
    err << "note: if a GitOps tool owns this Environment it may remove the window again\n";
    return absl::OkStatus();
  }
  if (sub == "unfreeze") {
    const std::string only = a.Get("window");
    std::vector<std::string> removed;
    RETURN_IF_ERROR(
        s.Modify(res::Environments(), "", name, [&](json* env) -> absl::Status {
           removed.clear();
           json added = json::array();
           json& ann = (*env)["metadata"]["annotations"];
           if (ann.is_object() && ann.contains(kFreezeAnnotation) &&
               ann[kFreezeAnnotation].is_string()) {
             added = json::parse(ann[kFreezeAnnotation].get<std::string>(), nullptr, false);
             if (!added.is_array()) added = json::array();
           }
           std::set<std::string> drop;
           if (!only.empty()) {
             drop.insert(only);
           } else {
             for (const json& n : added) {
               if (n.is_string()) drop.insert(n.get<std::string>());
             }
           }
           json& windows = (*env)["spec"]["policies"]["freezeWindows"];
           if (!windows.is_array()) windows = json::array();
           json kept = json::array();
           for (const json& w : windows) {
             if (drop.count(w.value("name", "")) > 0) {
               removed.push_back(w.value("name", ""));
             } else {
               kept.push_back(w);
             }
           }
           if (removed.empty()) {
             return absl::NotFoundError(
                 only.empty()
                     ? absl::StrCat("Environment ", name,
                                    " has no freeze added by kubectl capstan env "
                                    "freeze (others: --window NAME)")
                     : absl::StrCat("Environment ", name, " has no freeze window \"", only, "\""));
           }
           windows = kept;
           json left = json::array();
           for (const json& n : added) {
             if (n.is_string() && drop.count(n.get<std::string>()) == 0) left.push_back(n);
           }
           if (left.empty()) {
             ann.erase(kFreezeAnnotation);
           } else {
             ann[kFreezeAnnotation] = left.dump();
           }
           return absl::OkStatus();
         }).status());
    out << "environment " << name << ": removed freeze window" << (removed.size() > 1 ? "s" : "")
        << " " << absl::StrJoin(removed, ", ") << "\n";
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown env command \"", sub, "\" (list, get, freeze, unfreeze)"));
}

absl::Status CmdRotate(Session& s, const Args& a, std::ostream& out) {
  const std::string name = a.positional[1];
  RETURN_IF_ERROR(s.Get(res::SecretRotations(), s.ns(), name).status());
  const std::string token = Token();
  RETURN_IF_ERROR(Annotate(s, res::SecretRotations(), name, "capstan.dev/rotate", token));
  out << "secretrotation " << name << ": rotation requested (token " << token << ")\n";
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::stringstream buf;
  if (path == "-") {
    buf << std::cin.rdbuf();
  } else {
    std::ifstream in(path);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
    buf << in.rdbuf();
  }
  return buf.str();
}

// Runs `diff -u` (or $KUBECTL_EXTERNAL_DIFF, as kubectl diff does) on two texts; true when
// they differ.
absl::StatusOr<bool> ExternalDiff(const std::string& label, const std::string& live,
                                  const std::string& merged, std::ostream& out) {
  char dir_template[] = "/tmp/kubectl-capstan-diff-XXXXXX";
  const char* dir = mkdtemp(dir_template);
  if (dir == nullptr) return absl::InternalError("cannot make a temporary directory");
  const std::string a = absl::StrCat(dir, "/live-", label),
                    b = absl::StrCat(dir, "/merged-", label);
  std::ofstream(a) << live;
  std::ofstream(b) << merged;
  const char* ext = std::getenv("KUBECTL_EXTERNAL_DIFF");
  const std::string cmd =
      absl::StrCat(ext != nullptr && *ext != '\0' ? ext : "diff -u -N", " '", a, "' '", b, "'");
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return absl::InternalError("cannot run diff");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.write(buf, static_cast<std::streamsize>(n));
  const int rc = pclose(p);
  std::remove(a.c_str());
  std::remove(b.c_str());
  rmdir(dir);
  if (!WIFEXITED(rc) || WEXITSTATUS(rc) > 1) return absl::InternalError("diff failed");
  return WEXITSTATUS(rc) == 1;
}

json Comparable(json o) {
  if (!o.is_object()) return o;
  o.erase("status");
  if (o.contains("metadata")) {
    json& m = o["metadata"];
    for (const char* k : {"managedFields", "resourceVersion", "uid", "creationTimestamp",
                          "generation", "selfLink"}) {
      m.erase(k);
    }
    if (m.contains("annotations")) {
      m["annotations"].erase("kubectl.kubernetes.io/last-applied-configuration");
      if (m["annotations"].empty()) m.erase("annotations");
    }
  }
  return o;
}

int CmdDiff(Session& s, const Args& a, std::ostream& out, std::ostream& err) {
  const std::string file = a.Get("filename");
  if (file.empty())
    return Fail(err, absl::InvalidArgumentError("usage: kubectl capstan diff -f FILE"));
  absl::StatusOr<std::string> text = ReadFile(file);
  if (!text.ok()) return Fail(err, text.status());
  absl::StatusOr<std::vector<json>> docs = api::YamlToJson(*text);
  if (!docs.ok())
    return Fail(err, absl::InvalidArgumentError(absl::StrCat(file, ": ", docs.status().message())));
  bool differs = false;
  int releases = 0;
  for (json& doc : *docs) {
    if (!doc.is_object() || doc.value("kind", "") != api::kReleaseKind) continue;
    ++releases;
    const std::string name = JsonString(doc, "/metadata/name");
    const std::string ns = JsonString(doc, "/metadata/namespace").empty()
                               ? s.ns()
                               : JsonString(doc, "/metadata/namespace");
    doc["metadata"]["namespace"] = ns;
    absl::StatusOr<json> live = s.client().Get(res::Releases(), ns, name);
    json before;
    if (!live.ok() && live.status().code() != absl::StatusCode::kNotFound) {
      return Fail(err, s.Explain(live.status(), res::Releases(), ns, name));
    }
    if (live.ok()) before = *live;
    // What applying the file would make of the live object: its spec merged in as a JSON
    // merge patch (RFC 7386; lists are replaced whole, as apply does for these fields).
    // Capstan's CRD defaults nothing inside the template, so this matches the server's
    // result closely without a server-side dry run.
    json merged_obj = before.is_null() ? doc : before;
    if (!before.is_null()) {
      for (const char* part : {"spec"}) {
        if (doc.contains(part)) merged_obj[part].merge_patch(doc[part]);
      }
      for (const char* part : {"labels", "annotations"}) {
        if (doc["metadata"].contains(part))
          merged_obj["metadata"][part].merge_patch(doc["metadata"][part]);
      }
    }
    absl::StatusOr<json> merged = merged_obj;
    absl::StatusOr<bool> d = ExternalDiff(
        absl::StrCat(ns, ".", name), before.is_null() ? "" : api::JsonToYaml(Comparable(before)),
        api::JsonToYaml(Comparable(*merged)), out);
    if (!d.ok()) return Fail(err, d.status());
    if (*d) {
      differs = true;
      const std::string from = JsonString(before, "/status/currentRevision");
      const std::string to = DesiredRevision(s, *merged);
      if (!to.empty() && to != from) {
        out << "# release " << ns << "/" << name << ": revision "
            << (from.empty() ? "(none)" : from) << " -> " << to << ", images "
            << absl::StrJoin(
                   TemplateImages(merged->value("spec", json::object()).value("template", json())),
                   ",")
            << "\n";
      }
    }
  }
  if (releases == 0)
    return Fail(err, absl::InvalidArgumentError(absl::StrCat(file, ": no Release")));
  return differs ? 1 : 0;
}

absl::Status CmdVersion(Session* s, const Args& a, std::ostream& out) {
  json v = {{"client", {{"version", kVersion}}}};
  std::vector<std::string> lines = {absl::StrCat("client: kubectl-capstan ", kVersion)};
  if (s != nullptr) {
    absl::StatusOr<std::vector<json>> deps =
        s->List(res::Deployments(), "", "app.kubernetes.io/name=capstan");
    json ops = json::array();
    if (!deps.ok()) {
      lines.push_back(absl::StrCat("operator: unknown (", deps.status().message(), ")"));
    } else if (deps->empty()) {
      lines.push_back("operator: no Deployment labelled app.kubernetes.io/name=capstan found");
    } else {
      for (const json& d : *deps) {
        std::vector<std::string> images =
            TemplateImages(d.value("spec", json::object()).value("template", json()));
        const std::string image = images.empty() ? "" : images[0];
        const std::string version = d.value(
            "/metadata/labels/app.kubernetes.io~1version"_json_pointer,
            std::string(image.find(':') != std::string::npos ? image.substr(image.rfind(':') + 1)
                                                             : "?"));
        ops.push_back({{"namespace", JsonString(d, "/metadata/namespace")},
                       {"name", JsonString(d, "/metadata/name")},
                       {"image", image},
                       {"version", version}});
        lines.push_back(absl::StrCat("operator: ", version, " (deployment ",
                                     JsonString(d, "/metadata/namespace"), "/",
                                     JsonString(d, "/metadata/name"), ", image ", image, ")"));
      }
    }
    v["operators"] = ops;
  }
  const std::string f = a.Get("output");
  if (f == "json") {
    out << v.dump(4) << "\n";
  } else if (f == "yaml") {
    out << api::JsonToYaml(v);
  } else if (f.empty()) {
    out << absl::StrJoin(lines, "\n") << "\n";
  } else {
    return absl::InvalidArgumentError("-o is json or yaml");
  }
  return absl::OkStatus();
}

// clang-format off
constexpr char kBashCompletion[] = R"SH(# bash completion for kubectl-capstan / kubectl capstan
# source <(kubectl capstan completion bash)
_kubectl_capstan() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
  local cmds="get status promote abort retry restart history undo approve env rotate render diff version completion"
  local i cmd=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      -*) ;;
      capstan) ;;
      *) cmd=${COMP_WORDS[i]}; break ;;
    esac
  done
  case $prev in
    -n|--namespace)
      COMPREPLY=($(compgen -W "$(kubectl get ns -o name 2>/dev/null | cut -d/ -f2)" -- "$cur"))
      return ;;
    -o|--output) COMPREPLY=($(compgen -W "json yaml name" -- "$cur")); return ;;
    --until) COMPREPLY=($(compgen -W "Ready Previewing Waiting" -- "$cur")); return ;;
    -f|--filename) COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "--namespace --all-namespaces --context --kubeconfig --output --watch --timeout --until --to-revision --revision --comment --reason --window --dry-run --filename" -- "$cur"))
    return
  fi
  case $cmd in
    "") COMPREPLY=($(compgen -W "$cmds" -- "$cur")) ;;
    env) COMPREPLY=($(compgen -W "list get freeze unfreeze $(kubectl get env -o name 2>/dev/null | cut -d/ -f2)" -- "$cur")) ;;
    completion) COMPREPLY=($(compgen -W "bash zsh" -- "$cur")) ;;
    rotate) COMPREPLY=($(compgen -W "$(kubectl get srot -o name 2>/dev/null | cut -d/ -f2)" -- "$cur")) ;;
    render|diff|version) ;;
    *) COMPREPLY=($(compgen -W "$(kubectl get rel -o name 2>/dev/null | cut -d/ -f2)" -- "$cur")) ;;
  esac
}
complete -F _kubectl_capstan kubectl-capstan
)SH";

constexpr char kZshCompletion[] = R"SH(#compdef kubectl-capstan
# zsh completion for kubectl-capstan: source <(kubectl capstan completion zsh)
_kubectl_capstan() {
  local -a cmds
  cmds=(get status promote abort retry restart history undo approve env rotate render diff version completion)
  if (( CURRENT == 2 )); then
    _describe 'command' cmds
    return
  fi
  case ${words[2]} in
    env) compadd list get freeze unfreeze ${(f)"$(kubectl get env -o name 2>/dev/null | cut -d/ -f2)"} ;;
    completion) compadd bash zsh ;;
    rotate) compadd ${(f)"$(kubectl get srot -o name 2>/dev/null | cut -d/ -f2)"} ;;
    render|diff) _files ;;
    *) compadd ${(f)"$(kubectl get rel -o name 2>/dev/null | cut -d/ -f2)"} ;;
  esac
}
compdef _kubectl_capstan kubectl-capstan
)SH";
// clang-format on

int Dispatch(const Args& a, std::ostream& out, std::ostream& err) {
  if (a.positional.empty() || a.Has("help") || a.positional[0] == "help") {
    (a.positional.empty() && !a.Has("help") ? err : out) << kUsage;
    return a.positional.empty() && !a.Has("help") ? 1 : 0;
  }
  const std::string cmd = a.positional[0];
  if (cmd == "completion") {
    const std::string shell = a.positional.size() > 1 ? a.positional[1] : "";
    if (shell == "bash") {
      out << kBashCompletion;
    } else if (shell == "zsh") {
      out << kZshCompletion;
    } else {
      return Fail(err, absl::InvalidArgumentError("usage: kubectl capstan completion bash|zsh"));
    }
    return 0;
  }
  if (cmd == "render") {
    std::string file = a.Get("filename");
    if (file.empty() && a.positional.size() > 1) file = a.positional[1];
    if (file.empty())
      return Fail(err, absl::InvalidArgumentError("usage: kubectl capstan render -f FILE"));
    if (absl::Status s = render::RenderCommand(file, out); !s.ok()) return Fail(err, s);
    return 0;
  }
  static const std::set<std::string> kKnown = {"get",     "status",  "promote", "abort",   "retry",
                                               "restart", "history", "undo",    "approve", "env",
                                               "rotate",  "diff",    "version"};
  if (kKnown.count(cmd) == 0) {
    err << "error: unknown command \"" << cmd << "\"\n\n" << kUsage;
    return 1;
  }
  static const std::map<std::string, std::string> kUsageOf = {
      {"status", "status NAME [--timeout D] [--until Ready|Previewing|Waiting]"},
      {"promote", "promote NAME [--revision HASH]"},
      {"abort", "abort NAME"},
      {"retry", "retry NAME"},
      {"restart", "restart NAME"},
      {"history", "history NAME"},
      {"undo", "undo NAME [--to-revision HASH|N] [-o yaml] [--dry-run]"},
      {"approve", "approve NAME [--revision HASH] [--digest sha256:...] [--comment TEXT]"},
      {"rotate", "rotate NAME"}};
  if (auto it = kUsageOf.find(cmd); it != kUsageOf.end()) {
    if (absl::Status u = NeedName(a, 1, it->second); !u.ok()) return Fail(err, u);
  }
  absl::StatusOr<std::unique_ptr<Session>> session = Session::Open(a);
  if (cmd == "version") {
    absl::Status st = CmdVersion(session.ok() ? session->get() : nullptr, a, out);
    if (!session.ok()) err << "operator: unknown (" << session.status().message() << ")\n";
    return st.ok() ? 0 : Fail(err, st);
  }
  if (!session.ok()) return Fail(err, session.status());
  Session& s = **session;
  absl::Status st;
  if (cmd == "get") {
    std::string type = "release";
    size_t name_at = 1;
    if (a.positional.size() > 1) {
      static const std::map<std::string, std::string> kTypes = {
          {"release", "release"}, {"releases", "release"},    {"rel", "release"},
          {"srot", "srot"},       {"secretrotation", "srot"}, {"secretrotations", "srot"},
          {"env", "env"},         {"environment", "env"},     {"environments", "env"}};
      if (auto it = kTypes.find(a.positional[1]); it != kTypes.end()) {
        type = it->second;
        name_at = 2;
      }
    }
    const std::string name = a.positional.size() > name_at ? a.positional[name_at] : "";
    if (type == "srot") {
      st = CmdGetSrot(s, a, name, out);
    } else if (type == "env") {
      Args b = a;
      b.positional = {"env", name.empty() ? "list" : "get"};
      if (!name.empty()) b.positional.push_back(name);
      st = CmdEnv(s, b, out, err);
    } else {
      st = CmdGetRelease(s, a, name, out);
    }
  } else if (cmd == "env") {
    st = CmdEnv(s, a, out, err);
  } else if (cmd == "diff") {
    return CmdDiff(s, a, out, err);
  } else {
    if (cmd == "status") return CmdStatus(s, a, out, err);
    if (cmd == "promote") st = CmdPromote(s, a, out);
    if (cmd == "abort") st = CmdAbort(s, a, out);
    if (cmd == "retry") st = CmdRetry(s, a, out);
    if (cmd == "restart") st = CmdRestart(s, a, out);
    if (cmd == "history") st = CmdHistory(s, a, out);
    if (cmd == "undo") st = CmdUndo(s, a, out, err);
    if (cmd == "approve") st = CmdApprove(s, a, out);
    if (cmd == "rotate") st = CmdRotate(s, a, out);
  }
  return st.ok() ? 0 : Fail(err, st);
}

}  // namespace

bool IsPluginName(const std::string& argv0) {
  const std::string base =
      argv0.substr(argv0.rfind('/') == std::string::npos ? 0 : argv0.rfind('/') + 1);
  return base == "kubectl-capstan" || base == "kubectl_capstan";
}

int Run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  absl::StatusOr<Args> a = ParseArgs(args);
  if (!a.ok()) {
    err << "error: " << a.status().message() << "\nSee 'kubectl capstan --help'.\n";
    return 1;
  }
  return Dispatch(*a, out, err);
}

}  // namespace capstan::cli
