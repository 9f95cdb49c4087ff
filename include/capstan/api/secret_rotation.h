#pragma once

// SecretRotation (capstan.dev/v1alpha1): which Secret keys Capstan regenerates,
// how, how often, and which workloads it restarts afterwards. Parse + validate
// only (with the Release's and Environment's JSON readers and Kubernetes name
// checks); the decisions live in secrets/rotation.h, value generation in
// secrets/generator.h.
//
// SECURITY: nothing in this layer ever puts a Secret value into a Status
// message, a problem string or a log line; messages name keys, not values.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "capstan/api/analysis.h"
#include "capstan/api/cron.h"
#include "capstan/api/release.h"
#include "nlohmann/json.hpp"

namespace capstan::api {

inline constexpr char kSecretRotationKind[] = "SecretRotation";

enum class ValueEncoding { kBase64, kBase64Url, kHex };
// As spec.keys[].randomBytes.encoding spells it (base64, base64url, hex); so for each enum
// below, the spec's spelling.
std::string ValueEncodingName(ValueEncoding e);

struct RandomBytesGenerator {
  int32_t length = 32;  // bytes of entropy before encoding
  ValueEncoding encoding = ValueEncoding::kBase64;
};

enum class CharClass { kLower, kUpper, kDigit, kSymbol };

// The characters of one class (before exclusion).
std::string ClassCharacters(CharClass c);

struct PasswordGenerator {
  int32_t length = 32;
  // Every class listed contributes to the alphabet and appears at least once.
  std::vector<CharClass> classes = {CharClass::kLower, CharClass::kUpper, CharClass::kDigit};
  std::string exclude;  // characters never used (e.g. "O0Il1" for humans)
};

struct UuidGenerator {};  // RFC 4122 version 4

// An asymmetric signing key (keypair.h): the key's data key holds the private key
// (PEM, PKCS#8); two more data keys, derived from it, hold the public key (PEM,
// SubjectPublicKeyInfo) and a JWKS document with the current public key and, while
// <key>_previous exists (KeepPrevious grace), the previous one.
enum class KeyPairType { kRsa, kEc, kEd25519 };

struct KeyPairGenerator {
  KeyPairType type = KeyPairType::kRsa;
  int32_t rsa_bits = 0;        // RSA: 2048, 3072 or 4096; 0: unset (2048)
  std::string curve;           // EC: P-256 or P-384; "": unset (P-256)
  std::string jws_algorithm;   // RSA: RS256 (unset), RS384, RS512, PS256, PS384, PS512
  std::string public_key_key;  // data key of the public key PEM; "": <name>.pub
  std::string jwks_key;        // data key of the JWKS document; "": <name>.jwks.json
};

struct KeySpec {
  std::string name;
  enum class Kind { kRandomBytes, kPassword, kUuid, kKeyPair } kind = Kind::kRandomBytes;
  RandomBytesGenerator random_bytes;
  PasswordGenerator password;
  KeyPairGenerator key_pair;
};

// The data keys a keyPair key derives from its private key (defaults applied).
std::string PublicKeyDataKey(const KeySpec& key);
std::string JwksDataKey(const KeySpec& key);

enum class RotationStrategy { kReplace, kKeepPrevious };
std::string RotationStrategyName(RotationStrategy s);
// spec.trigger: Scheduled rotates by itself when due; Manual only on a new
// capstan.dev/rotate token, and reports RotationDue (condition, Event, metric) once
// the interval or schedule says a rotation is due, so an alert can ask a person.
enum class RotationTrigger { kScheduled, kManual };
std::string RotationTriggerName(RotationTrigger t);
enum class ConsumerMode { kAuto, kExplicit, kNone };
std::string ConsumerModeName(ConsumerMode m);
enum class FailureAction { kRestore, kKeep };
std::string FailureActionName(FailureAction a);

// spec.target.postgresql: the rotated password is set in PostgreSQL before any
// consumer sees it (see rotation.h for the steps and database.h for the client).
enum class DbStrategy { kSingleUser, kAlternatingUsers };
std::string DbStrategyName(DbStrategy s);

struct PostgresTarget {
  std::string host;
  int32_t port = 5432;
  std::string database = "postgres";
  std::string ssl_mode = "require";  // libpq sslmode
  std::string ca_secret;             // optional: a Secret holding the server's CA (PEM)
  std::string ca_key = "ca.crt";
  std::string admin_secret;  // a role allowed to CREATE/ALTER ROLE
  std::string admin_username_key = "username";
  std::string admin_password_key = "password";
  DbStrategy strategy = DbStrategy::kSingleUser;
  std::string user;                // SingleUser
  std::vector<std::string> users;  // AlternatingUsers: exactly two
  std::string member_of;           // AlternatingUsers: role carrying the grants
  // The managed Secret's data key holding the user name (written by Capstan).
  std::string username_key = "username";
};

// spec.target.hook: the credential is set and tested by Jobs the operator runs from
// these templates (rotation.h has the steps): `set` makes the pending values work where
// they are checked, `test` proves it; both must complete before the Secret switches.
struct HookTarget {
  HookJobSpec set;
  HookJobSpec test;
};

struct SecretRotationSpec {
  std::string secret_name;
  std::vector<KeySpec> keys;
  absl::Duration interval = absl::Hours(24 * 7);
  // spec.schedule (cron, cron.h) instead of interval, in spec.timeZone (IANA, UTC
  // when unset). Empty: interval.
  std::string schedule;
  std::string time_zone = "UTC";
  CronSchedule cron;
  absl::TimeZone tz = absl::UTCTimeZone();
  RotationTrigger trigger = RotationTrigger::kScheduled;
  // spec.ignoreFreeze: start rotations inside the namespace Environment's freeze windows.
  bool ignore_freeze = false;
  RotationStrategy strategy = RotationStrategy::kReplace;
  absl::Duration grace_period = absl::Hours(24);  // KeepPrevious only
  ConsumerMode consumer_mode = ConsumerMode::kAuto;
  std::vector<std::string> consumer_deployments;  // kExplicit
  // kExplicit: other workloads, (kind, name); kind Deployment, StatefulSet or DaemonSet.
  std::vector<std::pair<std::string, std::string>> consumer_workloads;
  // How many consumers restart at once (0: all together).
  int32_t max_concurrent_restarts = 0;
  FailureAction on_failure = FailureAction::kRestore;
  absl::Duration health_timeout = absl::Minutes(10);
  // spec.verify.analysis: AnalysisTemplates run once every consumer restarted and is
  // healthy (the AnalysisRun <name>-v<version>-verify); a run that does not end
  // Successful restores (rotation.h). Unset: healthy consumers finish the rotation.
  std::optional<AnalysisGateSpec> verify_analysis;
  // A Secret that exists and was not created by Capstan is only taken over
  // when this is true (see docs/design.md, "SecretRotation ownership").
  bool adopt_existing = false;
  // Where the credential is checked; unset: the value belongs to the application.
  std::optional<PostgresTarget> postgresql;
  std::optional<HookTarget> hook;
};

struct SecretRotation {
  std::string name;
  std::string ns;
  std::string uid;
  int64_t generation = 0;
  // metadata.annotations["capstan.dev/rotate"]: a manual trigger token.
  std::string trigger_token;
  SecretRotationSpec spec;
};

// Go duration ("168h", "1h30m", "90s"). Rejects negative, zero and infinite.
absl::StatusOr<absl::Duration> ParseGoDuration(const std::string& s);
// "168h0m0s"-free short form: "168h", "90s", "1h30m".
std::string FormatGoDuration(absl::Duration d);

// Parses the object (as stored: CRD defaults applied, but parsing applies the
// same defaults so a file parses the same way). Structural errors only.
absl::StatusOr<SecretRotation> ParseSecretRotation(const nlohmann::json& obj);
// Semantic problems, each a sentence naming the field; empty when valid.
std::vector<std::string> ValidateSecretRotation(const SecretRotation& sr);

// Data keys Capstan reserves inside the managed Secret.
//   "<key>_previous"               the value before the last rotation (KeepPrevious)
//   ".capstan-pending.<key>"      a generated value not yet swapped in
//   ".capstan-rollback.<key>"     the value to restore if consumers fail
std::string PreviousKey(const std::string& key);
std::string PendingKey(const std::string& key);
std::string RollbackKey(const std::string& key);
bool IsReservedDataKey(const std::string& key);

}  // namespace capstan::api
