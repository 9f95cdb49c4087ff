#include "capstan/policy/environment.h"

#include <algorithm>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "capstan/api/time_zone.h"
#include "capstan/policy/images.h"

namespace capstan::policy {
namespace {

using nlohmann::json;

std::string Quote(const std::string& s) { return absl::StrCat("\"", s, "\""); }

// ---------------------------------------------------------------------------
// Freeze windows.

struct Interval {
  absl::Time start;
  absl::Time end;
};

// "HH:MM" -> minutes after midnight; nullopt when malformed.
std::optional<int> Minutes(const std::string& s) {
  if (s.size() != 5 || s[2] != ':') {
    return std::nullopt;
  }
  for (int i : {0, 1, 3, 4}) {
    if (s[i] < '0' || s[i] > '9') {
      return std::nullopt;
    }
  }
  const int h = (s[0] - '0') * 10 + (s[1] - '0');
  const int m = (s[3] - '0') * 10 + (s[4] - '0');
  if (h > 23 || m > 59) {
    return std::nullopt;
  }
  return h * 60 + m;
}

// A wall time as an instant, resolving daylight-saving gaps and overlaps so that a
// window only ever grows: a start takes the earliest reading, an end the latest. For a
// wall time the clocks skip (02:30 on a spring-forward night) both are the moment of
// the jump.
absl::Time Earliest(const absl::TimeZone::TimeInfo& ti) {
  switch (ti.kind) {
    case absl::TimeZone::TimeInfo::SKIPPED:
      return ti.trans;
    case absl::TimeZone::TimeInfo::REPEATED:
      return std::min(ti.pre, ti.post);
    default:
      return ti.pre;
  }
}

absl::Time Latest(const absl::TimeZone::TimeInfo& ti) {
  switch (ti.kind) {
    case absl::TimeZone::TimeInfo::SKIPPED:
      return ti.trans;
    case absl::TimeZone::TimeInfo::REPEATED:
      return std::max(ti.pre, ti.post);
    default:
      return ti.pre;
  }
}

api::Weekday ToWeekday(absl::Weekday d) {
  switch (d) {
    case absl::Weekday::monday:
      return api::Weekday::kMonday;
    case absl::Weekday::tuesday:
      return api::Weekday::kTuesday;
    case absl::Weekday::wednesday:
      return api::Weekday::kWednesday;
    case absl::Weekday::thursday:
      return api::Weekday::kThursday;
    case absl::Weekday::friday:
      return api::Weekday::kFriday;
    case absl::Weekday::saturday:
      return api::Weekday::kSaturday;
    default:
      return api::Weekday::kSunday;
  }
}

// The occurrences of `w` that may contain `t`: an occurrence opens on t's civil day or
// the day before (a window crossing midnight opened yesterday). Empty for a window that
// cannot be evaluated.
std::vector<Interval> Occurrences(const api::FreezeWindow& w, absl::Time t) {
  std::vector<Interval> out;
  if (!w.recurring()) {
    if (w.from.has_value() && w.until.has_value() && *w.from < *w.until) {
      out.push_back({*w.from, *w.until});
    }
    return out;
  }
  absl::TimeZone tz;
  const std::optional<int> start = Minutes(w.start);
  const std::optional<int> end = Minutes(w.end);
  if (!api::LoadIanaTimeZone(w.time_zone, &tz) || !start.has_value() || !end.has_value() ||
      *start == *end) {
    return out;
  }
  const absl::CivilDay today = absl::ToCivilDay(t, tz);
  for (const absl::CivilDay day : {today - 1, today}) {
    if (std::find(w.days.begin(), w.days.end(), ToWeekday(absl::GetWeekday(day))) == w.days.end()) {
      continue;
    }
    const absl::CivilDay end_day = *end > *start ? day : day + 1;
    const absl::CivilSecond open(day.year(), day.month(), day.day(), *start / 60, *start % 60, 0);
    const absl::CivilSecond close(end_day.year(), end_day.month(), end_day.day(), *end / 60,
                                  *end % 60, 0);
    const Interval i{Earliest(tz.At(open)), Latest(tz.At(close))};
    if (i.start < i.end) {
      out.push_back(i);
    }
  }
  return out;
}

// The window containing t (start <= t < end) that ends last, or nullopt.
std::optional<std::pair<const api::FreezeWindow*, Interval>> Containing(
    const std::vector<api::FreezeWindow>& windows, absl::Time t) {
  std::optional<std::pair<const api::FreezeWindow*, Interval>> best;
  for (const api::FreezeWindow& w : windows) {
    for (const Interval& i : Occurrences(w, t)) {
      if (i.start <= t && t < i.end && (!best.has_value() || i.end > best->second.end)) {
        best = std::make_pair(&w, i);
      }
    }
  }
  return best;
}

}  // namespace

// ---------------------------------------------------------------------------
// Membership.

bool Claims(const api::Environment& env, const NamespaceInfo& ns) {
  const auto& names = env.spec.namespaces;
  if (std::find(names.begin(), names.end(), ns.name) != names.end()) {
    return true;
  }
  // An empty selector would match every namespace; validation rejects an Environment
  // whose only claim is one, and here it claims nothing.
  return env.spec.namespace_selector.has_value() && !env.spec.namespace_selector->Empty() &&
         env.spec.namespace_selector->Matches(ns.labels);
}

Membership ResolveEnvironment(const std::vector<api::Environment>& envs,
                              const std::string& requested, const NamespaceInfo& ns) {
  Membership m;
  std::vector<const api::Environment*> claiming;
  for (const api::Environment& e : envs) {
    if (Claims(e, ns)) {
      claiming.push_back(&e);
    }
  }
  std::sort(claiming.begin(), claiming.end(),
            [](const auto* a, const auto* b) { return a->metadata.name < b->metadata.name; });
  if (claiming.size() > 1) {
    std::vector<std::string> names;
    for (const auto* e : claiming) {
      names.push_back(e->metadata.name);
    }
    m.reason = "EnvironmentAmbiguous";
    m.message = absl::StrCat("namespace ", ns.name, " is claimed by Environments ",
                             absl::StrJoin(names, " and "),
                             "; a namespace must belong to exactly one Environment, so nothing "
                             "is rolled out until one of them lets go of it");
    return m;
  }
  const api::Environment* owner = claiming.empty() ? nullptr : claiming[0];
  if (requested.empty()) {
    m.environment = owner;
    return m;
  }
  if (owner != nullptr && owner->metadata.name == requested) {
    m.environment = owner;
    return m;
  }
  const bool exists = std::any_of(envs.begin(), envs.end(), [&](const api::Environment& e) {
    return e.metadata.name == requested;
  });
  if (!exists) {
    m.reason = "EnvironmentNotFound";
    m.message = absl::StrCat(
        "spec.environment: Environment ", Quote(requested), " does not exist",
        owner != nullptr
            ? absl::StrCat("; namespace ", ns.name, " belongs to ", Quote(owner->metadata.name))
            : std::string());
    return m;
  }
  m.reason = "EnvironmentMismatch";
  m.message = absl::StrCat(
      "spec.environment: Environment ", Quote(requested), " does not include namespace ", ns.name,
      owner != nullptr ? absl::StrCat(" (it belongs to ", Quote(owner->metadata.name), ")")
                       : std::string(" (no Environment includes it)"),
      "; spec.environment must name the Environment of the Release's namespace, or be left "
      "out");
  return m;
}

// ---------------------------------------------------------------------------
// Defaults.

void ApplyEnvironmentAnalysis(const api::AnalysisGateSpec& add, api::ReleaseSpec* spec) {
  auto merge = [&add](std::optional<api::AnalysisGateSpec>* into) {
    if (!into->has_value()) {
      *into = add;
      return;
    }
    api::AnalysisGateSpec& g = **into;
    for (const api::AnalysisTemplateRef& t : add.templates) {
      if (std::find(g.templates.begin(), g.templates.end(), t) == g.templates.end()) {
        g.templates.push_back(t);
      }
    }
    for (const api::AnalysisArgValue& a : add.args) {
      if (std::none_of(g.args.begin(), g.args.end(),
                       [&a](const api::AnalysisArgValue& b) { return b.name == a.name; })) {
        g.args.push_back(a);
      }
    }
    g.bake_seconds = std::max(g.bake_seconds, add.bake_seconds);
  };
  if (spec->strategy.type == api::StrategyType::kRollingUpdate) {
    merge(&spec->strategy.rolling_update.analysis);
    return;
  }
  api::BlueGreenSpec& bg = spec->strategy.blue_green;
  if (!bg.pre_promotion_analysis && !bg.post_promotion_analysis) {
    merge(&bg.pre_promotion_analysis);
    return;
  }
  if (bg.pre_promotion_analysis) merge(&bg.pre_promotion_analysis);
  if (bg.post_promotion_analysis) merge(&bg.post_promotion_analysis);
}

void ApplyEnvironment(const api::Environment& env, api::Release* release) {
  if (env.spec.policies.analysis.has_value()) {
    ApplyEnvironmentAnalysis(*env.spec.policies.analysis, &release->spec);
  }
  const api::EnvironmentDefaults& d = env.spec.defaults;
  json& tmpl = release->spec.pod_template;
  if (!tmpl.is_object()) {
    return;  // ValidateRelease reports it; nothing sensible to merge into
  }
  auto merge_map = [&tmpl](const char* field, const std::map<std::string, std::string>& add) {
    if (add.empty()) {
      return;
    }
    json& meta = tmpl["metadata"];
    if (meta.is_null()) {
      meta = json::object();
    }
    if (!meta.is_object()) {
      return;
    }
    json& m = meta[field];
    if (m.is_null()) {
      m = json::object();
    }
    if (!m.is_object()) {
      return;
    }
    for (const auto& [key, value] : add) {
      if (!m.contains(key)) {
        m[key] = value;
      }
    }
  };
  merge_map("labels", d.labels);
  merge_map("annotations", d.annotations);

  json* containers = nullptr;
  if (tmpl.contains("spec") && tmpl["spec"].is_object() && tmpl["spec"].contains("containers") &&
      tmpl["spec"]["containers"].is_array()) {
    containers = &tmpl["spec"]["containers"];
  }
  if (containers != nullptr) {
    for (json& c : *containers) {
      if (!c.is_object()) {
        continue;
      }
      if (!d.env.empty()) {
        json& list = c["env"];
        if (list.is_null()) {
          list = json::array();
        }
        if (list.is_array()) {
          std::set<std::string> have;
          for (const json& e : list) {
            if (e.is_object() && e.contains("name") && e["name"].is_string()) {
              have.insert(e["name"].get<std::string>());
            }
          }
          for (const json& e : d.env) {
            const std::string name = e.value("name", "");
            if (have.insert(name).second) {
              list.push_back(e);
            }
          }
        }
      }
      if (!d.env_from.empty()) {
        json& list = c["envFrom"];
        if (list.is_null()) {
          list = json::array();
        }
        if (list.is_array()) {
          for (const json& e : d.env_from) {
            if (std::find(list.begin(), list.end(), e) == list.end()) {
              list.push_back(e);
            }
          }
        }
      }
      if (d.resources.is_object() && !d.resources.empty()) {
        const json* own = c.contains("resources") ? &c["resources"] : nullptr;
        const auto has = [own](const char* key) {
          return own != nullptr && own->is_object() && own->contains(key) &&
                 (*own)[key].is_object() && !(*own)[key].empty();
        };
        if (!has("requests") && !has("limits")) {
          json merged = own != nullptr && own->is_object() ? *own : json::object();
          for (auto it = d.resources.begin(); it != d.resources.end(); ++it) {
            merged[it.key()] = *it;
          }
          c["resources"] = std::move(merged);
        }
      }
    }
  }

  if (release->spec.replicas_defaulted && d.replicas.has_value() &&
      !release->spec.autoscaling.has_value()) {
    release->spec.replicas = *d.replicas;
  }
}

// ---------------------------------------------------------------------------
// Freeze windows.

std::string FormatInZone(absl::Time t, const std::string& time_zone) {
  absl::TimeZone tz;
  if (time_zone.empty() || time_zone == "UTC" || !api::LoadIanaTimeZone(time_zone, &tz)) {
    return absl::FormatTime("%Y-%m-%d%ET%H:%M:%SZ", t, absl::UTCTimeZone());
  }
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%S%Ez", t, tz);
}

std::optional<FreezeHit> ActiveFreeze(const std::vector<api::FreezeWindow>& windows,
                                      absl::Time now) {
  auto first = Containing(windows, now);
  if (!first.has_value()) {
    return std::nullopt;
  }
  FreezeHit hit;
  hit.window = first->first->name;
  hit.time_zone = first->first->recurring() ? first->first->time_zone : "UTC";
  hit.until = first->second.end;
  // Windows that overlap or touch extend the freeze: Fri 18:00-Mon 08:00 written as a
  // weekday-evening window plus a weekend window is one freeze. Bounded, because a set of
  // windows covering every minute of the week would never end.
  for (int i = 0; i < 64; ++i) {
    auto next = Containing(windows, hit.until);
    if (!next.has_value() || next->second.end <= hit.until) {
      break;
    }
    hit.until = next->second.end;
  }
  return hit;
}

// ---------------------------------------------------------------------------
// The gate.

const char* GateReasonName(GateReason reason) {
  switch (reason) {
    case GateReason::kAllowed:
      return "Allowed";
    case GateReason::kNoChange:
      return "NoChange";
    case GateReason::kEmergency:
      return "Emergency";
    case GateReason::kStrategyNotAllowed:
      return "StrategyNotAllowed";
    case GateReason::kAwaitingUpstream:
      return "AwaitingUpstream";
    case GateReason::kAwaitingApproval:
      return "AwaitingApproval";
    case GateReason::kFrozenUntil:
      return "FrozenUntil";
    case GateReason::kImageDigestRequired:
      return "ImageDigestRequired";
  }
  return "Unknown";
}

GateDecision Decide(const api::Environment& env, const GateInput& in) {
  const api::EnvironmentPolicies& p = env.spec.policies;
  const std::string& env_name = env.metadata.name;
  GateDecision d;

  std::set<std::string> approvers;
  for (const Approval& a : in.approvals) {
    // Bound to the state and to this very Release: a recreated Release (new uid) or
    // another state with the same short revision inherits nothing.
    if (!a.approved_by.empty() && !a.digest.empty() && a.digest == in.desired_digest &&
        !a.release_uid.empty() && a.release_uid == in.release_uid) {
      approvers.insert(a.approved_by);
    }
  }
  const bool four_eyes = p.require_approval && p.four_eyes;
  const bool self_approved = four_eyes && !in.author.empty() && approvers.erase(in.author) > 0;
  d.approved_by.assign(approvers.begin(), approvers.end());

  const bool no_change = in.desired_digest.empty() && in.current_digest.empty()
                             ? in.desired_revision == in.current_revision
                             : in.desired_digest == in.current_digest;
  if (no_change) {
    d.reason = GateReason::kNoChange;
    return d;
  }
  if (!p.allowed_strategies.empty() &&
      std::find(p.allowed_strategies.begin(), p.allowed_strategies.end(), in.strategy) ==
          p.allowed_strategies.end()) {
    std::vector<std::string> allowed;
    for (api::StrategyType t : p.allowed_strategies) {
      allowed.push_back(api::StrategyTypeName(t));
    }
    d.allowed = false;
    d.reason = GateReason::kStrategyNotAllowed;
    d.message = absl::StrCat("strategy ", api::StrategyTypeName(in.strategy),
                             " is not allowed in Environment ", env_name,
                             " (allowed: ", absl::StrJoin(allowed, ", "), ")");
    return d;
  }
  if (p.require_image_digest) {
    std::vector<std::string> unpinned;
    for (const std::string& image : in.images) {
      if (!PinnedByDigest(image) &&
          std::find(unpinned.begin(), unpinned.end(), image) == unpinned.end()) {
        unpinned.push_back(image);
      }
    }
    if (!unpinned.empty()) {
      d.allowed = false;
      d.reason = GateReason::kImageDigestRequired;
      d.message = absl::StrCat("Environment ", env_name,
                               " requires images pinned by digest (image@sha256:<digest>); "
                               "not pinned: ",
                               absl::StrJoin(unpinned, ", "), "; the running revision is kept");
      return d;
    }
  }
  if (in.emergency.has_value() && p.allow_emergency && !in.emergency_by.empty()) {
    d.reason = GateReason::kEmergency;
    d.message = absl::StrCat("emergency release by ", in.emergency_by, " (", *in.emergency,
                             "): approval, freeze windows and upstream soak skipped; health "
                             "checks and automatic rollback still apply");
    return d;
  }

  std::vector<std::string> held;
  auto hold = [&](GateReason reason, std::string message, std::optional<absl::Time> at) {
    if (d.allowed) {
      d.allowed = false;
      d.reason = reason;
    }
    held.push_back(std::move(message));
    if (at.has_value() && (!d.requeue_at.has_value() || *at < *d.requeue_at)) {
      d.requeue_at = at;
    }
  };

  // Only restart annotations differ from the state let through (GateInput): no new code
  // or config to approve or soak.
  const bool restart_only =
      !in.desired_base_digest.empty() && in.desired_base_digest == in.current_base_digest;
  if (const std::string& up = p.upstream.environment; !up.empty() && !restart_only) {
    std::optional<absl::Time> since;
    std::string where;
    for (const UpstreamObservation& o : in.upstream) {
      const bool same = in.source_digest.empty() ? o.source_revision == in.source_revision
                                                 : o.source_digest == in.source_digest;
      if (o.environment == up && same && o.ready_since.has_value() &&
          (!since.has_value() || *o.ready_since < *since)) {
        since = o.ready_since;
        where = o.release;
      }
    }
    const absl::Duration soak = absl::Seconds(p.upstream.soak_seconds);
    if (!since.has_value()) {
      hold(GateReason::kAwaitingUpstream,
           absl::StrCat("revision ", in.source_revision, " has not been Ready in Environment ", up,
                        " yet (it must soak there for ", absl::FormatDuration(soak), " first)"),
           std::nullopt);
    } else if (in.now < *since + soak) {
      hold(GateReason::kAwaitingUpstream,
           absl::StrCat("revision ", in.source_revision, " is Ready in Environment ", up, " (",
                        where, ") since ", FormatInZone(*since, "UTC"), "; soaking until ",
                        FormatInZone(*since + soak, "UTC")),
           *since + soak);
    }
  }

  if (!restart_only && p.require_approval && four_eyes && in.author.empty()) {
    hold(
        GateReason::kAwaitingApproval,
        absl::StrCat("the author of this change is not recorded (annotation ", kChangedByAnnotation,
                     ", written by admission: install the chart's release policy), so "
                     "four-eyes approval cannot be checked"),
        std::nullopt);
  } else if (!restart_only && p.require_approval &&
             static_cast<int32_t>(approvers.size()) < p.min_approvals) {
    const int32_t missing = p.min_approvals - static_cast<int32_t>(approvers.size());
    hold(GateReason::kAwaitingApproval,
         absl::StrCat("revision ", in.desired_revision, " (", in.desired_digest, ") awaits ",
                      missing, missing == 1 ? " approval" : " approvals",
                      approvers.empty()
                          ? std::string()
                          : absl::StrCat(" (approved by ", absl::StrJoin(approvers, ", "), ")"),
                      self_approved ? absl::StrCat("; the author ", in.author,
                                                   " cannot approve their own change (fourEyes)")
                                    : std::string(),
                      ": create a ReleaseApproval with spec.digest ", in.desired_digest,
                      " and spec.releaseUID ", in.release_uid, " (kubectl capstan approve)"),
         std::nullopt);
  }

  if (std::optional<FreezeHit> f = ActiveFreeze(p.freeze_windows, in.now); f.has_value()) {
    hold(
        GateReason::kFrozenUntil,
        absl::StrCat("frozen until ", FormatInZone(f->until, f->time_zone), " (window ", f->window,
                     f->time_zone == "UTC" ? std::string() : absl::StrCat(", ", f->time_zone), ")"),
        f->until);
  }

  if (in.emergency.has_value() && !p.allow_emergency) {
    held.push_back(absl::StrCat("the ", kEmergencyAnnotation,
                                " annotation is ignored: Environment ", env_name,
                                " does not allow emergency releases"));
  } else if (in.emergency.has_value() && in.emergency_by.empty()) {
    held.push_back(absl::StrCat("the ", kEmergencyAnnotation,
                                " annotation is ignored: ", kEmergencyByAnnotation,
                                " was not recorded by admission (install the chart's release "
                                "policy; only its break-glass groups may set the annotation)"));
  }
  d.message = absl::StrJoin(held, "; ");
  if (restart_only && d.allowed) {
    d.message =
        "a restart (only secret-version.capstan.dev annotations changed): approval and upstream "
        "soak do not apply";
  }
  return d;
}

}  // namespace capstan::policy
