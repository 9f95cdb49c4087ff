#include "capstan/api/secret_rotation.h"

#include <exception>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "capstan/api/time_zone.h"
#include "capstan/common/status_macros.h"
#include "json_read.h"

namespace capstan::api {
namespace {

using nlohmann::json;

constexpr int32_t kMaxLength = 4096;
constexpr char kPendingPrefix[] = ".capstan-pending.";
constexpr char kRollbackPrefix[] = ".capstan-rollback.";
constexpr char kPreviousSuffix[] = "_previous";
constexpr char kLower[] = "abcdefghijklmnopqrstuvwxyz";
constexpr char kUpper[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
constexpr char kDigits[] = "0123456789";
// Printable ASCII punctuation minus quotes, backslash and space, which break
// connection strings and shell quoting more often than they add strength.
constexpr char kSymbols[] = "!#$%&()*+,-./:;<=>?@[]^_{|}~";

using internal::Find;
using internal::IsDnsSubdomain;
using internal::Join;
using internal::Quote;
using internal::ReadBool;
using internal::ReadEnum;
using internal::ReadList;
using internal::ReadObject;
using internal::ReadString;
using internal::ReadStringList;

// A count (a length, a number of restarts): an integer 0..kMaxLength.
absl::Status ReadCount(const json& obj, const char* key, const std::string& path, int32_t* out) {
  std::optional<int64_t> n;
  RETURN_IF_ERROR(internal::ReadInt64(obj, key, path, &n));
  if (!n) return absl::OkStatus();
  if (*n < 0 || *n > kMaxLength) {
    return absl::InvalidArgumentError(
        absl::StrCat(Join(path, key), ": must be between 0 and ", kMaxLength));
  }
  *out = static_cast<int32_t>(*n);
  return absl::OkStatus();
}

absl::Status ReadDuration(const json& obj, const char* key, const std::string& path,
                          absl::Duration* out) {
  std::string s;
  RETURN_IF_ERROR(ReadString(obj, key, path, &s));
  if (s.empty()) return absl::OkStatus();
  absl::StatusOr<absl::Duration> d = ParseGoDuration(s);
  if (!d.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(Join(path, key), ": ", d.status().message()));
  }
  *out = *d;
  return absl::OkStatus();
}

absl::StatusOr<KeySpec> ParseKey(const json& k, const std::string& path) {
  if (!k.is_object()) return internal::TypeError(path, "an object", k);
  KeySpec key;
  RETURN_IF_ERROR(ReadString(k, "name", path, &key.name));
  int generators = 0;
  ASSIGN_OR_RETURN(const json* rb, ReadObject(k, "randomBytes", path));
  if (rb != nullptr) {
    ++generators;
    key.kind = KeySpec::Kind::kRandomBytes;
    const std::string p = Join(path, "randomBytes");
    RETURN_IF_ERROR(ReadCount(*rb, "length", p, &key.random_bytes.length));
    RETURN_IF_ERROR(
        ReadEnum(*rb, "encoding", p,
                 {ValueEncoding::kBase64, ValueEncoding::kBase64Url, ValueEncoding::kHex},
                 ValueEncodingName, &key.random_bytes.encoding));
  }
  ASSIGN_OR_RETURN(const json* pw, ReadObject(k, "password", path));
  if (pw != nullptr) {
    ++generators;
    key.kind = KeySpec::Kind::kPassword;
    const std::string p = Join(path, "password");
    RETURN_IF_ERROR(ReadCount(*pw, "length", p, &key.password.length));
    RETURN_IF_ERROR(ReadString(*pw, "exclude", p, &key.password.exclude));
    std::vector<std::string> classes;
    RETURN_IF_ERROR(ReadStringList(*pw, "characterClasses", p, &classes));
    if (Find(*pw, "characterClasses") != nullptr) key.password.classes.clear();
    for (const std::string& s : classes) {
      if (s == "Lower") {
        key.password.classes.push_back(CharClass::kLower);
      } else if (s == "Upper") {
        key.password.classes.push_back(CharClass::kUpper);
      } else if (s == "Digit") {
        key.password.classes.push_back(CharClass::kDigit);
      } else if (s == "Symbol") {
        key.password.classes.push_back(CharClass::kSymbol);
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(Join(p, "characterClasses"),
                         ": each must be Lower, Upper, Digit or Symbol, not ", Quote(s)));
      }
    }
  }
  if (Find(k, "uuid") != nullptr) {
    ++generators;
    key.kind = KeySpec::Kind::kUuid;
  }
  ASSIGN_OR_RETURN(const json* kp, ReadObject(k, "keyPair", path));
  if (kp != nullptr) {
    ++generators;
    key.kind = KeySpec::Kind::kKeyPair;
    const std::string p = Join(path, "keyPair");
    std::string type;
    RETURN_IF_ERROR(ReadString(*kp, "type", p, &type));
    if (type == "RSA") {
      key.key_pair.type = KeyPairType::kRsa;
    } else if (type == "EC") {
      key.key_pair.type = KeyPairType::kEc;
    } else if (type == "Ed25519") {
      key.key_pair.type = KeyPairType::kEd25519;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(Join(p, "type"), ": must be RSA, EC or Ed25519, not ", Quote(type)));
    }
    RETURN_IF_ERROR(ReadCount(*kp, "rsaBits", p, &key.key_pair.rsa_bits));
    RETURN_IF_ERROR(ReadString(*kp, "curve", p, &key.key_pair.curve));
    RETURN_IF_ERROR(ReadString(*kp, "jwsAlgorithm", p, &key.key_pair.jws_algorithm));
    RETURN_IF_ERROR(ReadString(*kp, "publicKeyKey", p, &key.key_pair.public_key_key));
    RETURN_IF_ERROR(ReadString(*kp, "jwksKey", p, &key.key_pair.jwks_key));
  }
  if (generators != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        ": exactly one generator (randomBytes, password, uuid or keyPair) must be set, found ",
        generators));
  }
  return key;
}

// {name, <key_field>}: a Secret in the SecretRotation's namespace and one of its keys.
absl::Status ReadSecretRef(const json& obj, const char* field, const std::string& path,
                           std::string* name, const char* key_field, std::string* key) {
  ASSIGN_OR_RETURN(const json* ref, ReadObject(obj, field, path));
  if (ref == nullptr) return absl::OkStatus();
  const std::string p = Join(path, field);
  RETURN_IF_ERROR(ReadString(*ref, "name", p, name));
  RETURN_IF_ERROR(ReadString(*ref, key_field, p, key));
  return absl::OkStatus();
}

// spec.target.hook: {set, test}, each a Job step as a Release hook takes it.
absl::StatusOr<HookTarget> ParseHookTarget(const json& hook) {
  HookTarget h;
  for (const auto& [field, out] : {std::pair{"set", &h.set}, std::pair{"test", &h.test}}) {
    const json* step = Find(hook, field);
    if (step == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec.target.hook.", field, ": required (a Job step: template, ...)"));
    }
    ASSIGN_OR_RETURN(*out, ParseHookJobSpec(*step, absl::StrCat("spec.target.hook.", field)));
  }
  return h;
}

absl::StatusOr<PostgresTarget> ParsePostgres(const json& pg) {
  const std::string p = "spec.target.postgresql";
  PostgresTarget t;
  RETURN_IF_ERROR(ReadString(pg, "host", p, &t.host));
  std::optional<int64_t> port;
  absl::Status port_read = internal::ReadInt64(pg, "port", p, &port);
  if (!port_read.ok() || (port && (*port < 1 || *port > 65535))) {
    return absl::InvalidArgumentError(absl::StrCat(p, ".port: must be an integer 1..65535"));
  }
  if (port) t.port = static_cast<int32_t>(*port);
  RETURN_IF_ERROR(ReadString(pg, "database", p, &t.database));
  RETURN_IF_ERROR(ReadString(pg, "sslMode", p, &t.ssl_mode));
  RETURN_IF_ERROR(ReadSecretRef(pg, "caSecretRef", p, &t.ca_secret, "key", &t.ca_key));
  ASSIGN_OR_RETURN(const json* admin, ReadObject(pg, "adminSecretRef", p));
  if (admin != nullptr) {
    const std::string ap = Join(p, "adminSecretRef");
    RETURN_IF_ERROR(ReadString(*admin, "name", ap, &t.admin_secret));
    RETURN_IF_ERROR(ReadString(*admin, "usernameKey", ap, &t.admin_username_key));
    RETURN_IF_ERROR(ReadString(*admin, "passwordKey", ap, &t.admin_password_key));
  }
  RETURN_IF_ERROR(ReadEnum(pg, "strategy", p,
                           {DbStrategy::kSingleUser, DbStrategy::kAlternatingUsers}, DbStrategyName,
                           &t.strategy));
  RETURN_IF_ERROR(ReadString(pg, "user", p, &t.user));
  RETURN_IF_ERROR(ReadStringList(pg, "users", p, &t.users));
  RETURN_IF_ERROR(ReadString(pg, "memberOf", p, &t.member_of));
  RETURN_IF_ERROR(ReadString(pg, "usernameKey", p, &t.username_key));
  return t;
}

// A PostgreSQL role name Capstan accepts: what needs no surprise when quoted.
bool ValidRoleName(const std::string& n) {
  if (n.empty() || n.size() > 63) return false;
  for (char c : n) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return false;
    }
  }
  return true;
}

absl::Status ParseMetadata(const json& obj, SecretRotation* sr) {
  ASSIGN_OR_RETURN(const json* md, ReadObject(obj, "metadata", ""));
  if (md == nullptr) return absl::OkStatus();
  RETURN_IF_ERROR(ReadString(*md, "name", "metadata", &sr->name));
  RETURN_IF_ERROR(ReadString(*md, "namespace", "metadata", &sr->ns));
  RETURN_IF_ERROR(ReadString(*md, "uid", "metadata", &sr->uid));
  std::optional<int64_t> generation;
  if (internal::ReadInt64(*md, "generation", "metadata", &generation).ok() && generation) {
    sr->generation = *generation;
  }
  if (const json* a = Find(*md, "annotations"); a != nullptr && a->is_object()) {
    RETURN_IF_ERROR(
        ReadString(*a, "capstan.dev/rotate", "metadata.annotations", &sr->trigger_token));
  }
  return absl::OkStatus();
}

// spec.interval or spec.schedule (in spec.timeZone).
absl::Status ParseWhen(const json& spec, SecretRotationSpec* s) {
  RETURN_IF_ERROR(ReadDuration(spec, "interval", "spec", &s->interval));
  RETURN_IF_ERROR(ReadString(spec, "schedule", "spec", &s->schedule));
  RETURN_IF_ERROR(ReadString(spec, "timeZone", "spec", &s->time_zone));
  if (!s->schedule.empty()) {
    if (Find(spec, "interval") != nullptr) {
      return absl::InvalidArgumentError("spec.interval, spec.schedule: set one of them, not both");
    }
    absl::StatusOr<CronSchedule> cron = ParseCron(s->schedule);
    if (!cron.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("spec.schedule: ", cron.status().message()));
    }
    s->cron = *cron;
  }
  if (s->time_zone.empty()) s->time_zone = "UTC";
  // A name, never a path: LoadIanaTimeZone refuses anything not shaped like one.
  if (!LoadIanaTimeZone(s->time_zone, &s->tz)) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.timeZone: \"", s->time_zone,
                     "\" is not an IANA time zone name this system knows (e.g. Europe/Berlin, "
                     "America/New_York, UTC)"));
  }
  return absl::OkStatus();
}

absl::Status ParseConsumers(const json& spec, SecretRotationSpec* s) {
  ASSIGN_OR_RETURN(const json* c, ReadObject(spec, "consumers", "spec"));
  if (c == nullptr) return absl::OkStatus();
  const std::string p = "spec.consumers";
  RETURN_IF_ERROR(ReadEnum(*c, "mode", p,
                           {ConsumerMode::kAuto, ConsumerMode::kExplicit, ConsumerMode::kNone},
                           ConsumerModeName, &s->consumer_mode));
  RETURN_IF_ERROR(ReadStringList(*c, "deployments", p, &s->consumer_deployments));
  ASSIGN_OR_RETURN(const json* w, ReadList(*c, "workloads", p));
  if (w != nullptr) {
    for (size_t i = 0; i < w->size(); ++i) {
      const std::string wp = absl::StrCat(p, ".workloads[", i, "]");
      if (!(*w)[i].is_object()) return internal::TypeError(wp, "an object", (*w)[i]);
      std::string kind, wname;
      RETURN_IF_ERROR(ReadString((*w)[i], "kind", wp, &kind));
      RETURN_IF_ERROR(ReadString((*w)[i], "name", wp, &wname));
      s->consumer_workloads.emplace_back(kind, wname);
    }
  }
  return ReadCount(*c, "maxConcurrentRestarts", p, &s->max_concurrent_restarts);
}

absl::StatusOr<SecretRotation> ParseImpl(const json& obj) {
  RETURN_IF_ERROR(internal::CheckKind(obj, kSecretRotationKind, ""));
  SecretRotation sr;
  RETURN_IF_ERROR(ParseMetadata(obj, &sr));
  ASSIGN_OR_RETURN(const json* spec, ReadObject(obj, "spec", ""));
  if (spec == nullptr) return absl::InvalidArgumentError("spec: required");
  SecretRotationSpec& s = sr.spec;
  RETURN_IF_ERROR(ReadString(*spec, "secretName", "spec", &s.secret_name));
  RETURN_IF_ERROR(ParseWhen(*spec, &s));
  RETURN_IF_ERROR(ReadEnum(*spec, "trigger", "spec",
                           {RotationTrigger::kScheduled, RotationTrigger::kManual},
                           RotationTriggerName, &s.trigger));
  RETURN_IF_ERROR(ReadBool(*spec, "adoptExisting", "spec", &s.adopt_existing));
  RETURN_IF_ERROR(ReadBool(*spec, "ignoreFreeze", "spec", &s.ignore_freeze));
  ASSIGN_OR_RETURN(const json* keys, ReadList(*spec, "keys", "spec"));
  if (keys != nullptr) {
    for (size_t i = 0; i < keys->size(); ++i) {
      ASSIGN_OR_RETURN(KeySpec k, ParseKey((*keys)[i], absl::StrCat("spec.keys[", i, "]")));
      s.keys.push_back(std::move(k));
    }
  }
  ASSIGN_OR_RETURN(const json* st, ReadObject(*spec, "strategy", "spec"));
  if (st != nullptr) {
    RETURN_IF_ERROR(ReadEnum(*st, "type", "spec.strategy",
                             {RotationStrategy::kReplace, RotationStrategy::kKeepPrevious},
                             RotationStrategyName, &s.strategy));
    RETURN_IF_ERROR(ReadDuration(*st, "gracePeriod", "spec.strategy", &s.grace_period));
  }
  RETURN_IF_ERROR(ParseConsumers(*spec, &s));
  ASSIGN_OR_RETURN(const json* f, ReadObject(*spec, "onFailure", "spec"));
  if (f != nullptr) {
    RETURN_IF_ERROR(ReadEnum(*f, "action", "spec.onFailure",
                             {FailureAction::kRestore, FailureAction::kKeep}, FailureActionName,
                             &s.on_failure));
    RETURN_IF_ERROR(ReadDuration(*f, "healthTimeout", "spec.onFailure", &s.health_timeout));
  }
  ASSIGN_OR_RETURN(const json* v, ReadObject(*spec, "verify", "spec"));
  if (v != nullptr) {
    ASSIGN_OR_RETURN(s.verify_analysis, ParseAnalysisGateSpec(*v, "analysis", "spec.verify"));
  }
  ASSIGN_OR_RETURN(const json* target, ReadObject(*spec, "target", "spec"));
  if (target != nullptr) {
    ASSIGN_OR_RETURN(const json* pg, ReadObject(*target, "postgresql", "spec.target"));
    if (pg != nullptr) {
      ASSIGN_OR_RETURN(PostgresTarget t, ParsePostgres(*pg));
      s.postgresql = std::move(t);
    }
    ASSIGN_OR_RETURN(const json* hook, ReadObject(*target, "hook", "spec.target"));
    if (hook != nullptr) {
      ASSIGN_OR_RETURN(HookTarget h, ParseHookTarget(*hook));
      s.hook = std::move(h);
    }
  }
  return sr;
}

bool ValidDataKey(const std::string& k) {
  if (k.empty() || k.size() > 200 || k == "." || k == "..") return false;
  for (char c : k) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string ValueEncodingName(ValueEncoding v) {
  switch (v) {
    case ValueEncoding::kBase64:
      return "base64";
    case ValueEncoding::kBase64Url:
      return "base64url";
    case ValueEncoding::kHex:
      return "hex";
  }
  return "";
}

std::string RotationStrategyName(RotationStrategy v) {
  switch (v) {
    case RotationStrategy::kReplace:
      return "Replace";
    case RotationStrategy::kKeepPrevious:
      return "KeepPrevious";
  }
  return "";
}

std::string RotationTriggerName(RotationTrigger v) {
  switch (v) {
    case RotationTrigger::kScheduled:
      return "Scheduled";
    case RotationTrigger::kManual:
      return "Manual";
  }
  return "";
}

std::string ConsumerModeName(ConsumerMode v) {
  switch (v) {
    case ConsumerMode::kAuto:
      return "Auto";
    case ConsumerMode::kExplicit:
      return "Explicit";
    case ConsumerMode::kNone:
      return "None";
  }
  return "";
}

std::string FailureActionName(FailureAction v) {
  switch (v) {
    case FailureAction::kRestore:
      return "Restore";
    case FailureAction::kKeep:
      return "Keep";
  }
  return "";
}

std::string DbStrategyName(DbStrategy v) {
  switch (v) {
    case DbStrategy::kSingleUser:
      return "SingleUser";
    case DbStrategy::kAlternatingUsers:
      return "AlternatingUsers";
  }
  return "";
}

std::string ClassCharacters(CharClass c) {
  switch (c) {
    case CharClass::kLower:
      return kLower;
    case CharClass::kUpper:
      return kUpper;
    case CharClass::kDigit:
      return kDigits;
    case CharClass::kSymbol:
      return kSymbols;
  }
  return "";
}

absl::StatusOr<absl::Duration> ParseGoDuration(const std::string& s) {
  absl::Duration d;
  // absl::ParseDuration takes Go's syntax ("1h30m", "90s", "1.5h"), plus "inf",
  // which a schedule cannot use.
  if (s.empty() || absl::StrContains(s, "inf") || !absl::ParseDuration(s, &d)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", s, "\" is not a duration (examples: 168h, 30m, 90s)"));
  }
  if (d <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", s, "\" must be positive"));
  }
  return d;
}

std::string FormatGoDuration(absl::Duration d) {
  std::string out;
  const int64_t h = absl::IDivDuration(d, absl::Hours(1), &d);
  const int64_t m = absl::IDivDuration(d, absl::Minutes(1), &d);
  if (h > 0) absl::StrAppend(&out, h, "h");
  if (m > 0) absl::StrAppend(&out, m, "m");
  if (d > absl::ZeroDuration() || out.empty()) absl::StrAppend(&out, absl::FormatDuration(d));
  return out;
}

absl::StatusOr<SecretRotation> ParseSecretRotation(const json& obj) {
  try {
    return ParseImpl(obj);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read SecretRotation: ", e.what()));
  }
}

namespace {

// Names of objects in this namespace: Kubernetes' own syntax, so a typo is reported here
// and not as a failed read later.
void CheckObjectName(const std::string& path, const std::string& kind, const std::string& name,
                     std::vector<std::string>* problems) {
  if (!name.empty() && !IsDnsSubdomain(name)) {
    problems->push_back(absl::StrCat(path, ": ", Quote(name), " is not a valid ", kind,
                                     " name (lower-case letters, digits, '-' and '.', "
                                     "alphanumeric at both ends, at most 253 characters)"));
  }
}

// spec.secretName and every other object the spec names.
void ValidateObjectNames(const SecretRotationSpec& s, std::vector<std::string>* problems) {
  if (s.secret_name.empty()) problems->push_back("spec.secretName: required");
  CheckObjectName("spec.secretName", "Secret", s.secret_name, problems);
  for (size_t i = 0; i < s.consumer_deployments.size(); ++i) {
    CheckObjectName(absl::StrCat("spec.consumers.deployments[", i, "]"), "Deployment",
                    s.consumer_deployments[i], problems);
  }
  for (size_t i = 0; i < s.consumer_workloads.size(); ++i) {
    CheckObjectName(absl::StrCat("spec.consumers.workloads[", i, "].name"),
                    s.consumer_workloads[i].first, s.consumer_workloads[i].second, problems);
  }
  if (s.postgresql) {
    CheckObjectName("spec.target.postgresql.adminSecretRef.name", "Secret",
                    s.postgresql->admin_secret, problems);
    CheckObjectName("spec.target.postgresql.caSecretRef.name", "Secret", s.postgresql->ca_secret,
                    problems);
  }
}

// spec.interval, or spec.schedule when it is set.
void ValidateSchedule(const SecretRotationSpec& s, std::vector<std::string>* problems) {
  if (s.schedule.empty() && s.interval < absl::Seconds(1)) {
    problems->push_back("spec.interval: must be at least 1s");
  }
  if (!s.schedule.empty() &&
      !NextCronTime(s.cron, absl::UTCTimeZone(),
                    absl::FromCivil(absl::CivilDay(2000, 1, 1), absl::UTCTimeZone()))) {
    problems->push_back(
        absl::StrCat("spec.schedule: \"", s.schedule, "\" never fires (no such date)"));
  }
}

// spec.keys[i].name: a data key of its own, not one Capstan reserves. `names` collects the
// names seen so far.
void ValidateKeyName(const KeySpec& k, const std::string& path, std::set<std::string>* names,
                     std::vector<std::string>* problems) {
  if (!ValidDataKey(k.name)) {
    problems->push_back(
        absl::StrCat(path, ".name: \"", k.name,
                     "\" is not a valid Secret data key (letters, digits, '-', '_' and '.')"));
  } else if (IsReservedDataKey(k.name)) {
    problems->push_back(absl::StrCat(path, ".name: \"", k.name,
                                     "\" is reserved (Capstan uses the suffix _previous and "
                                     "the prefix .capstan- for its own keys)"));
  }
  if (!names->insert(k.name).second) {
    problems->push_back(absl::StrCat(path, ".name: \"", k.name, "\" is listed twice"));
  }
}

// spec.keys[i].password (`path` is spec.keys[i]).
void ValidatePassword(const PasswordGenerator& p, const std::string& path,
                      std::vector<std::string>* problems) {
  if (p.classes.empty()) {
    problems->push_back(absl::StrCat(path, ".password.characterClasses: at least one"));
  }
  if (p.length < 8 || p.length > 1024) {
    problems->push_back(absl::StrCat(path, ".password.length: must be 8..1024"));
  }
  if (static_cast<size_t>(p.length) < p.classes.size()) {
    problems->push_back(absl::StrCat(path,
                                     ".password.length: shorter than the number of "
                                     "required character classes"));
  }
  for (CharClass c : p.classes) {
    bool any = false;
    for (char ch : ClassCharacters(c)) {
      if (p.exclude.find(ch) == std::string::npos) any = true;
    }
    if (!any) {
      problems->push_back(absl::StrCat(path,
                                       ".password.exclude: removes every character "
                                       "of a required class"));
    }
  }
}

// rsaBits, curve and jwsAlgorithm of a keyPair: each only with its type (`p` is
// spec.keys[i].keyPair.).
void ValidateKeyPairType(const KeyPairGenerator& g, const std::string& p,
                         std::vector<std::string>* problems) {
  if (g.type == KeyPairType::kRsa) {
    if (g.rsa_bits != 0 && g.rsa_bits != 2048 && g.rsa_bits != 3072 && g.rsa_bits != 4096) {
      problems->push_back(p + "rsaBits: must be 2048, 3072 or 4096");
    }
  } else if (g.rsa_bits != 0) {
    problems->push_back(p + "rsaBits: only used with type RSA");
  }
  if (g.type == KeyPairType::kEc) {
    if (!g.curve.empty() && g.curve != "P-256" && g.curve != "P-384") {
      problems->push_back(p + "curve: must be P-256 or P-384");
    }
  } else if (!g.curve.empty()) {
    problems->push_back(p + "curve: only used with type EC");
  }
  if (g.type == KeyPairType::kRsa) {
    static const std::set<std::string> kAlgs = {"",      "RS256", "RS384", "RS512",
                                                "PS256", "PS384", "PS512"};
    if (kAlgs.count(g.jws_algorithm) == 0) {
      problems->push_back(p + "jwsAlgorithm: must be RS256, RS384, RS512, PS256, PS384 or PS512");
    }
  } else if (!g.jws_algorithm.empty()) {
    problems->push_back(p +
                        "jwsAlgorithm: only used with type RSA (EC and Ed25519 keys have "
                        "one algorithm each: ES256, ES384, EdDSA)");
  }
}

// The data keys a keyPair derives (publicKeyKey, jwksKey): valid, and distinct from each
// other and from the key's name (`p` is spec.keys[i].keyPair.).
void ValidateKeyPairDataKeys(const KeySpec& k, const std::string& p,
                             std::vector<std::string>* problems) {
  for (const std::string& dk : {PublicKeyDataKey(k), JwksDataKey(k)}) {
    if (!ValidDataKey(dk) || IsReservedDataKey(dk)) {
      problems->push_back(absl::StrCat(p, "publicKeyKey/jwksKey: \"", dk,
                                       "\" is not a valid Secret data key or is reserved"));
    }
  }
  if (PublicKeyDataKey(k) == JwksDataKey(k) || PublicKeyDataKey(k) == k.name ||
      JwksDataKey(k) == k.name) {
    problems->push_back(p + "publicKeyKey, jwksKey and name: must all differ");
  }
}

// One entry of spec.keys: its name, then its generator.
void ValidateKey(const KeySpec& k, const std::string& path, std::set<std::string>* names,
                 std::vector<std::string>* problems) {
  ValidateKeyName(k, path, names, problems);
  switch (k.kind) {
    case KeySpec::Kind::kRandomBytes:
      if (k.random_bytes.length < 1 || k.random_bytes.length > 1024) {
        problems->push_back(absl::StrCat(path, ".randomBytes.length: must be 1..1024"));
      }
      break;
    case KeySpec::Kind::kPassword:
      ValidatePassword(k.password, path, problems);
      break;
    case KeySpec::Kind::kUuid:
      break;
    case KeySpec::Kind::kKeyPair:
      ValidateKeyPairType(k.key_pair, path + ".keyPair.", problems);
      ValidateKeyPairDataKeys(k, path + ".keyPair.", problems);
      break;
  }
}

// Every data key a keyPair derives belongs to it alone (names listed twice are
// reported by ValidateKeyName).
void ValidateDerivedKeyOwners(const SecretRotationSpec& s, std::vector<std::string>* problems) {
  std::map<std::string, size_t> owner;
  for (size_t i = 0; i < s.keys.size(); ++i) owner.emplace(s.keys[i].name, i);
  for (size_t i = 0; i < s.keys.size(); ++i) {
    if (s.keys[i].kind != KeySpec::Kind::kKeyPair) continue;
    for (const std::string& dk : {PublicKeyDataKey(s.keys[i]), JwksDataKey(s.keys[i])}) {
      auto [it, inserted] = owner.emplace(dk, i);
      if (!inserted && it->second != i) {
        problems->push_back(absl::StrCat("spec.keys[", i, "].keyPair: data key \"", dk,
                                         "\" is also written by spec.keys[", it->second, "]"));
      }
    }
  }
}

// spec.keys, one entry after the other, then the data keys they derive.
void ValidateKeys(const SecretRotationSpec& s, std::vector<std::string>* problems) {
  std::set<std::string> names;
  for (size_t i = 0; i < s.keys.size(); ++i) {
    ValidateKey(s.keys[i], absl::StrCat("spec.keys[", i, "]"), &names, problems);
  }
  ValidateDerivedKeyOwners(s, problems);
}

// spec.strategy.gracePeriod against the interval it must fit in.
void ValidateStrategy(const SecretRotationSpec& s, std::vector<std::string>* problems) {
  if (s.strategy == RotationStrategy::kKeepPrevious && s.schedule.empty() &&
      s.grace_period >= s.interval) {
    problems->push_back(
        "spec.strategy.gracePeriod: must be shorter than spec.interval (the previous value is "
        "cleared before the next rotation)");
  }
}

// spec.consumers: the mode, and the kinds and names of the workloads it lists.
void ValidateConsumers(const SecretRotationSpec& s, std::vector<std::string>* problems) {
  if (s.consumer_mode == ConsumerMode::kExplicit && s.consumer_deployments.empty() &&
      s.consumer_workloads.empty()) {
    problems->push_back(
        "spec.consumers.deployments: required when mode is Explicit (or workloads)");
  }
  if (s.consumer_mode != ConsumerMode::kExplicit &&
      (!s.consumer_deployments.empty() || !s.consumer_workloads.empty())) {
    problems->push_back(
        "spec.consumers.deployments: only used when mode is Explicit (so is workloads)");
  }
  for (size_t i = 0; i < s.consumer_workloads.size(); ++i) {
    const auto& [kind, wname] = s.consumer_workloads[i];
    if (kind != "Deployment" && kind != "StatefulSet" && kind != "DaemonSet" && kind != "Release") {
      problems->push_back(absl::StrCat("spec.consumers.workloads[", i, "].kind: \"", kind,
                                       "\" is not a consumer kind Capstan restarts (Deployment, "
                                       "StatefulSet, DaemonSet or Release)"));
    }
    if (wname.empty()) {
      problems->push_back(absl::StrCat("spec.consumers.workloads[", i, "].name: required"));
    }
  }
}

// spec.target.hook: its set and test Jobs, which may not take Capstan's volume name.
void ValidateHookTarget(const SecretRotationSpec& s, std::vector<std::string>* problems) {
  if (!s.hook) return;
  if (s.postgresql) {
    problems->push_back("spec.target: set either postgresql or hook, not both");
  }
  for (const auto& [field, step] :
       {std::pair{"set", &s.hook->set}, std::pair{"test", &s.hook->test}}) {
    const std::string path = absl::StrCat("spec.target.hook.", field);
    for (std::string& p : ValidateHookJobSpec(path, *step)) problems->push_back(std::move(p));
    const json::json_pointer volumes("/spec/volumes");
    if (step->pod_template.contains(volumes) && step->pod_template.at(volumes).is_array()) {
      for (const json& v : step->pod_template.at(volumes)) {
        if (v.is_object() && v.value("name", "") == "capstan-pending") {
          problems->push_back(
              absl::StrCat(path,
                           ".template.spec.volumes: the name capstan-pending is reserved (Capstan "
                           "mounts the pending values under it)"));
        }
      }
    }
  }
}

// spec.target.postgresql's user or users, by its strategy (`p` is spec.target.postgresql.).
void ValidatePostgresUsers(const PostgresTarget& t, const std::string& p,
                           std::vector<std::string>* problems) {
  if (t.strategy == DbStrategy::kSingleUser) {
    if (!ValidRoleName(t.user)) {
      problems->push_back(absl::StrCat(
          p, "user: required with SingleUser (letters, digits, '_', '-', '.'; at most 63)"));
    }
    if (!t.users.empty()) problems->push_back(p + "users: only used with AlternatingUsers");
    if (!t.member_of.empty()) problems->push_back(p + "memberOf: only used with AlternatingUsers");
    return;
  }
  if (t.users.size() != 2 || t.users[0] == t.users[1]) {
    problems->push_back(absl::StrCat(
        p, "users: AlternatingUsers needs exactly two different users, found ", t.users.size()));
  }
  for (const std::string& u : t.users) {
    if (!ValidRoleName(u)) {
      problems->push_back(absl::StrCat(p, "users: \"", u,
                                       "\" is not a role name Capstan accepts (letters, "
                                       "digits, '_', '-', '.'; at most 63)"));
    }
  }
  if (!t.user.empty()) problems->push_back(p + "user: only used with SingleUser");
  if (!t.member_of.empty() && !ValidRoleName(t.member_of)) {
    problems->push_back(absl::StrCat(p, "memberOf: not a role name Capstan accepts"));
  }
}

// spec.target.postgresql: the one key it rotates, the connection, the admin Secret, the
// strategy, then the users.
void ValidatePostgresTarget(const SecretRotationSpec& s, std::vector<std::string>* problems) {
  if (!s.postgresql) return;
  const PostgresTarget& t = *s.postgresql;
  const std::string p = "spec.target.postgresql.";
  if (s.keys.size() != 1) {
    problems->push_back("spec.keys: a postgresql target rotates exactly one key (the password)");
  } else if (s.keys[0].kind == KeySpec::Kind::kKeyPair) {
    problems->push_back("spec.keys[0].keyPair: a postgresql password cannot be a key pair");
  } else if (s.keys[0].name == t.username_key) {
    problems->push_back(
        absl::StrCat(p, "usernameKey: must differ from the password key \"", s.keys[0].name, "\""));
  }
  if (!ValidDataKey(t.username_key) || IsReservedDataKey(t.username_key)) {
    problems->push_back(absl::StrCat(p, "usernameKey: not a valid Secret data key"));
  }
  if (t.host.empty()) problems->push_back(p + "host: required");
  if (t.database.empty()) problems->push_back(p + "database: required");
  static const std::set<std::string> kModes = {"disable", "allow",     "prefer",
                                               "require", "verify-ca", "verify-full"};
  if (kModes.count(t.ssl_mode) == 0) {
    problems->push_back(absl::StrCat(
        p, "sslMode: must be disable, allow, prefer, require, verify-ca or verify-full"));
  }
  if (t.admin_secret.empty()) problems->push_back(p + "adminSecretRef.name: required");
  if (t.admin_secret == s.secret_name || (!t.ca_secret.empty() && t.ca_secret == s.secret_name)) {
    problems->push_back(absl::StrCat(p,
                                     "adminSecretRef/caSecretRef: must not name the rotated "
                                     "Secret"));
  }
  if (s.strategy != RotationStrategy::kReplace) {
    problems->push_back(
        "spec.strategy.type: must be Replace with a postgresql target (AlternatingUsers keeps "
        "the previous credential working)");
  }
  ValidatePostgresUsers(t, p, problems);
}

}  // namespace

// Every problem, in the order of the spec's sections; the helpers above append to one list.
std::vector<std::string> ValidateSecretRotation(const SecretRotation& sr) {
  std::vector<std::string> problems;
  const SecretRotationSpec& s = sr.spec;
  ValidateObjectNames(s, &problems);
  if (s.keys.empty()) problems.push_back("spec.keys: at least one key is required");
  ValidateSchedule(s, &problems);
  ValidateKeys(s, &problems);
  ValidateStrategy(s, &problems);
  ValidateConsumers(s, &problems);
  ValidateHookTarget(s, &problems);
  ValidatePostgresTarget(s, &problems);
  return problems;
}

std::string PublicKeyDataKey(const KeySpec& key) {
  return key.key_pair.public_key_key.empty() ? key.name + ".pub" : key.key_pair.public_key_key;
}
std::string JwksDataKey(const KeySpec& key) {
  return key.key_pair.jwks_key.empty() ? key.name + ".jwks.json" : key.key_pair.jwks_key;
}

std::string PreviousKey(const std::string& key) { return key + kPreviousSuffix; }
std::string PendingKey(const std::string& key) { return kPendingPrefix + key; }
std::string RollbackKey(const std::string& key) { return kRollbackPrefix + key; }

bool IsReservedDataKey(const std::string& key) {
  return absl::StartsWith(key, ".capstan-") || absl::EndsWith(key, kPreviousSuffix);
}

}  // namespace capstan::api
