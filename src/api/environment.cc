#include "capstan/api/environment.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/civil_time.h"
#include "capstan/api/labels.h"
#include "capstan/api/time_zone.h"
#include "capstan/api/yaml.h"
#include "capstan/common/status_macros.h"
#include "json_read.h"

namespace capstan::api {
namespace {

using nlohmann::json;

constexpr char kUtcFormat[] = "%Y-%m-%d%ET%H:%M:%SZ";

using internal::CheckKind;
using internal::Find;
using internal::IsDnsLabel;
using internal::IsDnsSubdomain;
using internal::ParseEnum;
using internal::Quote;
using internal::ReadBool;
using internal::ReadList;
using internal::ReadObject;
using internal::ReadString;
using internal::ReadStringList;
using internal::ReadStringMap;
using internal::TypeError;
using internal::TypeName;
using internal::WithoutNulls;

// ---------------------------------------------------------------------------
// Typed reads beyond json_read.h's. This ReadInt32 is not release.cc's: it takes any
// whole number and reports a 32-bit overflow with the value as written.

absl::Status ReadInt32(const json& obj, const char* key, const std::string& path,
                       std::optional<int32_t>* out) {
  const json* v = Find(obj, key);
  if (v == nullptr) {
    return absl::OkStatus();
  }
  double d = 0;
  if (v->is_number_integer() && !v->is_number_unsigned()) {
    d = static_cast<double>(v->get<int64_t>());
  } else if (v->is_number_unsigned()) {
    d = static_cast<double>(v->get<uint64_t>());
  } else if (v->is_number_float() && std::isfinite(v->get<double>()) &&
             v->get<double>() == std::floor(v->get<double>())) {
    d = v->get<double>();  // 3.0 from a tool that only knows doubles
  } else {
    return TypeError(absl::StrCat(path, ".", key), "an integer", *v);
  }
  if (d < std::numeric_limits<int32_t>::min() || d > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ".", key, ": ", v->dump(), " is out of range for a 32-bit integer"));
  }
  *out = static_cast<int32_t>(d);
  return absl::OkStatus();
}

absl::Status ReadTime(const json& obj, const char* key, const std::string& path,
                      std::optional<absl::Time>* out) {
  std::string s;
  RETURN_IF_ERROR(ReadString(obj, key, path, &s));
  if (s.empty()) {
    return absl::OkStatus();
  }
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, s, &t, &err)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ".", key, ": ", Quote(s), " is not an RFC 3339 time such as 2026-12-24T00:00:00Z"));
  }
  *out = t;
  return absl::OkStatus();
}

absl::Status ParseMeta(const json& object, ObjectMeta* meta) {
  ASSIGN_OR_RETURN(const json* m, ReadObject(object, "metadata", "object"));
  if (m == nullptr) {
    return absl::OkStatus();
  }
  const std::string path = "metadata";
  RETURN_IF_ERROR(ReadString(*m, "name", path, &meta->name));
  RETURN_IF_ERROR(ReadString(*m, "namespace", path, &meta->ns));
  RETURN_IF_ERROR(ReadString(*m, "uid", path, &meta->uid));
  RETURN_IF_ERROR(ReadString(*m, "resourceVersion", path, &meta->resource_version));
  if (const json* g = Find(*m, "generation"); g != nullptr && g->is_number_integer()) {
    meta->generation = g->get<int64_t>();
  }
  RETURN_IF_ERROR(ReadStringMap(*m, "labels", path, &meta->labels));
  RETURN_IF_ERROR(ReadStringMap(*m, "annotations", path, &meta->annotations));
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Environment spec.

absl::Status ParseSelector(const json& s, const std::string& path, LabelSelector* out) {
  RETURN_IF_ERROR(ReadStringMap(s, "matchLabels", path, &out->match_labels));
  ASSIGN_OR_RETURN(const json* exprs, ReadList(s, "matchExpressions", path));
  if (exprs == nullptr) {
    return absl::OkStatus();
  }
  for (size_t i = 0; i < exprs->size(); ++i) {
    const json& e = (*exprs)[i];
    const std::string epath = absl::StrCat(path, ".matchExpressions[", i, "]");
    if (!e.is_object()) {
      return TypeError(epath, "an object", e);
    }
    LabelSelectorRequirement r;
    RETURN_IF_ERROR(ReadString(e, "key", epath, &r.key));
    RETURN_IF_ERROR(ReadString(e, "operator", epath, &r.op));
    RETURN_IF_ERROR(ReadStringList(e, "values", epath, &r.values));
    out->match_expressions.push_back(std::move(r));
  }
  return absl::OkStatus();
}

absl::StatusOr<Weekday> ParseWeekday(const std::string& s, const std::string& path) {
  static const std::pair<const char*, Weekday> kDays[] = {
      {"Mon", Weekday::kMonday},   {"Tue", Weekday::kTuesday}, {"Wed", Weekday::kWednesday},
      {"Thu", Weekday::kThursday}, {"Fri", Weekday::kFriday},  {"Sat", Weekday::kSaturday},
      {"Sun", Weekday::kSunday}};
  for (const auto& [name, day] : kDays) {
    if (s == name) {
      return day;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": ", Quote(s), " is not a day; use Mon, Tue, Wed, Thu, Fri, Sat, Sun"));
}

absl::Status ParseFreezeWindow(const json& w, const std::string& path, FreezeWindow* out) {
  if (!w.is_object()) {
    return TypeError(path, "an object", w);
  }
  RETURN_IF_ERROR(ReadString(w, "name", path, &out->name));
  RETURN_IF_ERROR(ReadString(w, "timeZone", path, &out->time_zone));
  std::vector<std::string> days;
  RETURN_IF_ERROR(ReadStringList(w, "days", path, &days));
  for (size_t i = 0; i < days.size(); ++i) {
    ASSIGN_OR_RETURN(Weekday d, ParseWeekday(days[i], absl::StrCat(path, ".days[", i, "]")));
    out->days.push_back(d);
  }
  RETURN_IF_ERROR(ReadString(w, "start", path, &out->start));
  RETURN_IF_ERROR(ReadString(w, "end", path, &out->end));
  RETURN_IF_ERROR(ReadTime(w, "from", path, &out->from));
  RETURN_IF_ERROR(ReadTime(w, "until", path, &out->until));
  return absl::OkStatus();
}

absl::Status ParseDefaults(const json& d, EnvironmentDefaults* out) {
  const std::string path = "spec.defaults";
  for (const char* key : {"env", "envFrom"}) {
    ASSIGN_OR_RETURN(const json* list, ReadList(d, key, path));
    if (list == nullptr) {
      continue;
    }
    for (size_t i = 0; i < list->size(); ++i) {
      const json& item = (*list)[i];
      if (!item.is_object()) {
        return TypeError(absl::StrCat(path, ".", key, "[", i, "]"), "an object", item);
      }
      (std::string(key) == "env" ? out->env : out->env_from).push_back(WithoutNulls(item));
    }
  }
  RETURN_IF_ERROR(ReadStringMap(d, "labels", path, &out->labels));
  RETURN_IF_ERROR(ReadStringMap(d, "annotations", path, &out->annotations));
  ASSIGN_OR_RETURN(const json* resources, ReadObject(d, "resources", path));
  if (resources != nullptr) {
    out->resources = WithoutNulls(*resources);
  }
  RETURN_IF_ERROR(ReadInt32(d, "replicas", path, &out->replicas));
  return absl::OkStatus();
}

absl::Status ParsePolicies(const json& p, EnvironmentPolicies* out) {
  const std::string path = "spec.policies";
  std::vector<std::string> strategies;
  RETURN_IF_ERROR(ReadStringList(p, "allowedStrategies", path, &strategies));
  for (size_t i = 0; i < strategies.size(); ++i) {
    ASSIGN_OR_RETURN(
        const StrategyType type,
        ParseEnum(strategies[i], absl::StrCat(path, ".allowedStrategies[", i, "]"),
                  {StrategyType::kRollingUpdate, StrategyType::kBlueGreen}, StrategyTypeName));
    out->allowed_strategies.push_back(type);
  }
  RETURN_IF_ERROR(ReadBool(p, "requireApproval", path, &out->require_approval));
  RETURN_IF_ERROR(ReadBool(p, "requireImageDigest", path, &out->require_image_digest));
  std::optional<int32_t> min_approvals;
  RETURN_IF_ERROR(ReadInt32(p, "minApprovals", path, &min_approvals));
  out->min_approvals = min_approvals.value_or(1);
  ASSIGN_OR_RETURN(const json* windows, ReadList(p, "freezeWindows", path));
  if (windows != nullptr) {
    for (size_t i = 0; i < windows->size(); ++i) {
      FreezeWindow w;
      RETURN_IF_ERROR(
          ParseFreezeWindow((*windows)[i], absl::StrCat(path, ".freezeWindows[", i, "]"), &w));
      out->freeze_windows.push_back(std::move(w));
    }
  }
  ASSIGN_OR_RETURN(const json* upstream, ReadObject(p, "upstream", path));
  if (upstream != nullptr) {
    RETURN_IF_ERROR(
        ReadString(*upstream, "environment", path + ".upstream", &out->upstream.environment));
    std::optional<int32_t> soak;
    RETURN_IF_ERROR(ReadInt32(*upstream, "soakSeconds", path + ".upstream", &soak));
    out->upstream.soak_seconds = soak.value_or(0);
  }
  RETURN_IF_ERROR(ReadBool(p, "allowEmergency", path, &out->allow_emergency));
  ASSIGN_OR_RETURN(out->analysis, ParseAnalysisGateSpec(p, "analysis", path));
  out->four_eyes = true;
  RETURN_IF_ERROR(ReadBool(p, "fourEyes", path, &out->four_eyes));
  return absl::OkStatus();
}

absl::StatusOr<Environment> ParseEnvironmentImpl(const json& object) {
  RETURN_IF_ERROR(CheckKind(object, kEnvironmentKind, "object"));
  Environment env;
  RETURN_IF_ERROR(ParseMeta(object, &env.metadata));
  ASSIGN_OR_RETURN(const json* spec, ReadObject(object, "spec", "object"));
  if (spec == nullptr) {
    return absl::InvalidArgumentError("spec: required");
  }
  RETURN_IF_ERROR(ReadStringList(*spec, "namespaces", "spec", &env.spec.namespaces));
  ASSIGN_OR_RETURN(const json* selector, ReadObject(*spec, "namespaceSelector", "spec"));
  if (selector != nullptr) {
    LabelSelector s;
    RETURN_IF_ERROR(ParseSelector(*selector, "spec.namespaceSelector", &s));
    env.spec.namespace_selector = std::move(s);
  }
  ASSIGN_OR_RETURN(const json* defaults, ReadObject(*spec, "defaults", "spec"));
  if (defaults != nullptr) {
    RETURN_IF_ERROR(ParseDefaults(*defaults, &env.spec.defaults));
  }
  ASSIGN_OR_RETURN(const json* policies, ReadObject(*spec, "policies", "spec"));
  if (policies != nullptr) {
    RETURN_IF_ERROR(ParsePolicies(*policies, &env.spec.policies));
  }
  return env;
}

// ---------------------------------------------------------------------------
// Validation.

// "HH:MM", 00:00 to 23:59; minutes after midnight.
std::optional<int> ParseClock(const std::string& s) {
  if (s.size() != 5 || s[2] != ':') {
    return std::nullopt;
  }
  int h = 0;
  int m = 0;
  if (!absl::ascii_isdigit(static_cast<unsigned char>(s[0])) ||
      !absl::ascii_isdigit(static_cast<unsigned char>(s[1])) ||
      !absl::ascii_isdigit(static_cast<unsigned char>(s[3])) ||
      !absl::ascii_isdigit(static_cast<unsigned char>(s[4]))) {
    return std::nullopt;
  }
  h = (s[0] - '0') * 10 + (s[1] - '0');
  m = (s[3] - '0') * 10 + (s[4] - '0');
  if (h > 23 || m > 59) {
    return std::nullopt;
  }
  return h * 60 + m;
}

class Validator {
 public:
  explicit Validator(const Environment& env) : env_(env) {}

  std::vector<std::string> Run() && {
    Metadata();
    Namespaces();
    Defaults();
    Policies();
    return std::move(errors_);
  }

 private:
  template <typename... Args>
  void Error(const Args&... args) {
    errors_.push_back(absl::StrCat(args...));
  }

  void Metadata() {
    const std::string& name = env_.metadata.name;
    if (name.empty()) {
      Error("metadata.name: required");
    } else if (!IsDnsSubdomain(name)) {
      Error("metadata.name: ", Quote(name),
            " must consist of lower case letters, digits, '-' and '.', and start and end with "
            "a letter or digit");
    }
  }

  void Namespaces() {
    const EnvironmentSpec& s = env_.spec;
    const bool selector = s.namespace_selector.has_value() && !s.namespace_selector->Empty();
    if (s.namespaces.empty() && !selector) {
      Error(
          "spec: set namespaces or a non-empty namespaceSelector; an Environment must say "
          "which namespaces belong to it");
    }
    std::set<std::string> seen;
    for (size_t i = 0; i < s.namespaces.size(); ++i) {
      const std::string& ns = s.namespaces[i];
      if (!IsDnsLabel(ns)) {
        Error("spec.namespaces[", i, "]: ", Quote(ns), " is not a namespace name");
      } else if (!seen.insert(ns).second) {
        Error("spec.namespaces[", i, "]: ", Quote(ns), " is listed twice");
      }
    }
    if (!s.namespace_selector.has_value()) {
      return;
    }
    for (size_t i = 0; i < s.namespace_selector->match_expressions.size(); ++i) {
      const LabelSelectorRequirement& r = s.namespace_selector->match_expressions[i];
      const std::string path = absl::StrCat("spec.namespaceSelector.matchExpressions[", i, "]");
      if (r.key.empty()) {
        Error(path, ".key: required");
      }
      if (r.op == "In" || r.op == "NotIn") {
        if (r.values.empty()) {
          Error(path, ".values: operator ", r.op, " needs at least one value");
        }
      } else if (r.op == "Exists" || r.op == "DoesNotExist") {
        if (!r.values.empty()) {
          Error(path, ".values: must be empty for operator ", r.op);
        }
      } else {
        Error(path, ".operator: must be In, NotIn, Exists or DoesNotExist, not ", Quote(r.op));
      }
    }
  }

  void Defaults() {
    const EnvironmentDefaults& d = env_.spec.defaults;
    std::set<std::string> names;
    for (size_t i = 0; i < d.env.size(); ++i) {
      const json* name = Find(d.env[i], "name");
      const std::string path = absl::StrCat("spec.defaults.env[", i, "]");
      if (name == nullptr || !name->is_string() || name->get<std::string>().empty()) {
        Error(path, ".name: required");
      } else if (!names.insert(name->get<std::string>()).second) {
        Error(path, ".name: ", Quote(name->get<std::string>()), " is listed twice");
      }
    }
    for (size_t i = 0; i < d.env_from.size(); ++i) {
      const json& e = d.env_from[i];
      const bool cm = Find(e, "configMapRef") != nullptr;
      const bool secret = Find(e, "secretRef") != nullptr;
      if (cm == secret) {
        Error("spec.defaults.envFrom[", i, "]: set exactly one of configMapRef and secretRef");
      }
    }
    for (const auto* m : {&d.labels, &d.annotations}) {
      const char* field = m == &d.labels ? "labels" : "annotations";
      for (const auto& [key, value] : *m) {
        if (absl::StartsWith(key, kReservedPrefix)) {
          Error("spec.defaults.", field, ": ", Quote(key), " is reserved: keys under ",
                kReservedPrefix, " belong to Capstan");
        }
      }
    }
    if (!d.resources.is_null()) {
      for (auto it = d.resources.begin(); it != d.resources.end(); ++it) {
        if (it.key() != "requests" && it.key() != "limits") {
          Error("spec.defaults.resources.", it.key(),
                ": only requests and limits can be defaulted");
        } else if (!it->is_object()) {
          Error("spec.defaults.resources.", it.key(), ": must be an object, not ", TypeName(*it));
        }
      }
    }
    if (d.replicas.has_value() && *d.replicas < 0) {
      Error("spec.defaults.replicas: must be 0 or more, not ", *d.replicas);
    }
  }

  void Policies() {
    const EnvironmentPolicies& p = env_.spec.policies;
    if (p.min_approvals < 1) {
      Error("spec.policies.minApprovals: must be at least 1, not ", p.min_approvals);
    }
    std::set<std::string> names;
    for (size_t i = 0; i < p.freeze_windows.size(); ++i) {
      Window(p.freeze_windows[i], absl::StrCat("spec.policies.freezeWindows[", i, "]"), &names);
    }
    const std::string& up = p.upstream.environment;
    if (!up.empty()) {
      if (up == env_.metadata.name) {
        Error("spec.policies.upstream.environment: ", Quote(up),
              " is this Environment itself; name the environment revisions come from (e.g. "
              "staging)");
      } else if (!IsDnsSubdomain(up)) {
        Error("spec.policies.upstream.environment: ", Quote(up), " is not an Environment name");
      }
    }
    if (p.upstream.soak_seconds < 0) {
      Error("spec.policies.upstream.soakSeconds: must be 0 or more, not ", p.upstream.soak_seconds);
    }
  }

  void Window(const FreezeWindow& w, const std::string& path, std::set<std::string>* names) {
    if (w.name.empty()) {
      Error(path, ".name: required (it names the window in messages)");
    } else if (!names->insert(w.name).second) {
      Error(path, ".name: ", Quote(w.name), " is used twice");
    }
    absl::TimeZone tz;
    if (!LoadIanaTimeZone(w.time_zone, &tz)) {
      Error(path, ".timeZone: ", Quote(w.time_zone),
            " is not a known IANA time zone (such as Europe/Berlin, America/New_York or UTC)");
    }
    const bool recurring_fields = !w.days.empty() || !w.start.empty() || !w.end.empty();
    const bool absolute_fields = w.from.has_value() || w.until.has_value();
    if (recurring_fields == absolute_fields) {
      Error(path,
            ": set either days, start and end (a recurring window) or from and until (a "
            "one-off window)");
      return;
    }
    if (absolute_fields) {
      if (!w.from.has_value() || !w.until.has_value()) {
        Error(path, ": a one-off window needs both from and until");
      } else if (*w.until <= *w.from) {
        Error(path, ": the window is empty: until (",
              absl::FormatTime(kUtcFormat, *w.until, absl::UTCTimeZone()), ") must be after from (",
              absl::FormatTime(kUtcFormat, *w.from, absl::UTCTimeZone()), ")");
      }
      return;
    }
    if (w.days.empty()) {
      Error(path, ".days: at least one day is required");
    }
    const std::optional<int> start = ParseClock(w.start);
    const std::optional<int> end = ParseClock(w.end);
    if (!start.has_value()) {
      Error(path, ".start: ", Quote(w.start), " is not a time of day HH:MM (00:00 to 23:59)");
    }
    if (!end.has_value()) {
      Error(path, ".end: ", Quote(w.end), " is not a time of day HH:MM (00:00 to 23:59)");
    }
    if (start.has_value() && end.has_value() && *start == *end) {
      Error(path, ": the window is empty: start and end are both ", w.start,
            " (end before start crosses midnight, e.g. 18:00-08:00)");
    }
  }

  const Environment& env_;
  std::vector<std::string> errors_;
};

absl::StatusOr<ReleaseApproval> ParseApprovalImpl(const json& object) {
  RETURN_IF_ERROR(CheckKind(object, kReleaseApprovalKind, "object"));
  ReleaseApproval a;
  RETURN_IF_ERROR(ParseMeta(object, &a.metadata));
  if (const json* m = Find(object, "metadata"); m != nullptr) {
    RETURN_IF_ERROR(ReadTime(*m, "creationTimestamp", "metadata", &a.created));
  }
  ASSIGN_OR_RETURN(const json* spec, ReadObject(object, "spec", "object"));
  if (spec == nullptr) {
    return absl::InvalidArgumentError("spec: required");
  }
  RETURN_IF_ERROR(ReadString(*spec, "release", "spec", &a.release));
  RETURN_IF_ERROR(ReadString(*spec, "revision", "spec", &a.revision));
  RETURN_IF_ERROR(ReadString(*spec, "digest", "spec", &a.digest));
  RETURN_IF_ERROR(ReadString(*spec, "releaseUID", "spec", &a.release_uid));
  RETURN_IF_ERROR(ReadString(*spec, "approvedBy", "spec", &a.approved_by));
  RETURN_IF_ERROR(ReadString(*spec, "comment", "spec", &a.comment));
  return a;
}

}  // namespace

// ---------------------------------------------------------------------------

bool LabelSelector::Matches(const std::map<std::string, std::string>& labels) const {
  for (const auto& [key, value] : match_labels) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) {
      return false;
    }
  }
  for (const LabelSelectorRequirement& r : match_expressions) {
    auto it = labels.find(r.key);
    const bool has = it != labels.end();
    const bool in =
        has && std::find(r.values.begin(), r.values.end(), it->second) != r.values.end();
    if (r.op == "In" && !in) {
      return false;
    }
    if (r.op == "NotIn" && in) {
      return false;
    }
    if (r.op == "Exists" && !has) {
      return false;
    }
    if (r.op == "DoesNotExist" && has) {
      return false;
    }
    if (r.op != "In" && r.op != "NotIn" && r.op != "Exists" && r.op != "DoesNotExist") {
      return false;  // an unknown operator matches nothing (validation reports it)
    }
  }
  return true;
}

const char* WeekdayName(Weekday day) {
  static const char* const kNames[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
  return kNames[static_cast<int>(day)];
}

absl::StatusOr<Environment> ParseEnvironment(const json& object) {
  try {
    return ParseEnvironmentImpl(object);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read Environment: ", e.what()));
  }
}

absl::StatusOr<std::vector<Environment>> ParseEnvironmentYaml(const std::string& text) {
  ASSIGN_OR_RETURN(std::vector<json> docs, YamlToJson(text));
  std::vector<Environment> out;
  for (size_t i = 0; i < docs.size(); ++i) {
    const json& doc = docs[i];
    const json* kind = Find(doc, "kind");
    if (kind == nullptr || !kind->is_string() || kind->get<std::string>() != kEnvironmentKind) {
      continue;
    }
    absl::StatusOr<Environment> env = ParseEnvironment(doc);
    if (!env.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("document ", i + 1, ": ", env.status().message()));
    }
    out.push_back(*std::move(env));
  }
  return out;
}

std::vector<std::string> ValidateEnvironment(const Environment& env) {
  try {
    return Validator(env).Run();
  } catch (const std::exception& e) {
    return {absl::StrCat("cannot validate Environment: ", e.what())};
  }
}

std::map<std::string, std::vector<std::string>> ValidateEnvironments(
    const std::vector<Environment>& envs) {
  std::map<std::string, std::vector<std::string>> out;
  std::map<std::string, const Environment*> by_name;
  for (const Environment& e : envs) {
    by_name[e.metadata.name] = &e;
  }
  // Namespaces claimed by name twice.
  std::map<std::string, std::set<std::string>> claims;  // namespace -> environments
  for (const Environment& e : envs) {
    for (const std::string& ns : e.spec.namespaces) {
      claims[ns].insert(e.metadata.name);
    }
  }
  for (const auto& [ns, owners] : claims) {
    if (owners.size() < 2) {
      continue;
    }
    const std::string msg =
        absl::StrCat("namespace ", Quote(ns), " is claimed by more than one Environment (",
                     absl::StrJoin(owners, ", "),
                     "); a namespace belongs to one Environment, so Releases there are held");
    for (const std::string& owner : owners) {
      out[owner].push_back(msg);
    }
  }
  // Upstreams: must exist, must not loop. Each chain is walked from every Environment;
  // a cycle is reported once per member, naming the whole loop.
  for (const Environment& e : envs) {
    const std::string& up = e.spec.policies.upstream.environment;
    if (up.empty() || up == e.metadata.name) {
      continue;  // self-reference is ValidateEnvironment's
    }
    if (by_name.count(up) == 0) {
      out[e.metadata.name].push_back(
          absl::StrCat("spec.policies.upstream.environment: Environment ", Quote(up),
                       " does not exist; changes wait until it does"));
      continue;
    }
    std::vector<std::string> chain = {e.metadata.name};
    std::string cur = up;
    while (!cur.empty() && by_name.count(cur) > 0) {
      auto seen = std::find(chain.begin(), chain.end(), cur);
      if (seen != chain.end()) {
        if (seen == chain.begin()) {  // the loop runs through e
          chain.push_back(cur);
          out[e.metadata.name].push_back(
              absl::StrCat("spec.policies.upstream.environment: upstream environments form a "
                           "cycle (",
                           absl::StrJoin(chain, " -> "), "); no revision could ever be promoted"));
        }
        break;
      }
      chain.push_back(cur);
      cur = by_name[cur]->spec.policies.upstream.environment;
    }
  }
  return out;
}

absl::StatusOr<ReleaseApproval> ParseReleaseApproval(const json& object) {
  try {
    return ParseApprovalImpl(object);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read ReleaseApproval: ", e.what()));
  }
}

}  // namespace capstan::api
