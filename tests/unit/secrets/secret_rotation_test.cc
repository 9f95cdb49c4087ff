#include "capstan/secrets/secret_rotation.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "capstan/api/yaml.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::secrets {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

json Minimal() {
  return json::parse(R"({
    "apiVersion": "capstan.dev/v1alpha1", "kind": "SecretRotation",
    "metadata": {"name": "jwt", "namespace": "shop", "uid": "u1", "generation": 3,
                 "annotations": {"capstan.dev/rotate": "t1"}},
    "spec": {"secretName": "jwt-keys", "interval": "168h",
             "keys": [{"name": "signing-key", "randomBytes": {"length": 32, "encoding": "base64"}}]}
  })");
}

TEST(ParseTest, MinimalWithDefaults) {
  absl::StatusOr<SecretRotation> sr = ParseSecretRotation(Minimal());
  ASSERT_TRUE(sr.ok()) << sr.status();
  EXPECT_EQ(sr->name, "jwt");
  EXPECT_EQ(sr->ns, "shop");
  EXPECT_EQ(sr->generation, 3);
  EXPECT_EQ(sr->trigger_token, "t1");
  EXPECT_EQ(sr->spec.secret_name, "jwt-keys");
  EXPECT_EQ(sr->spec.interval, absl::Hours(168));
  EXPECT_EQ(sr->spec.strategy, RotationStrategy::kReplace);
  EXPECT_EQ(sr->spec.consumer_mode, ConsumerMode::kAuto);
  EXPECT_EQ(sr->spec.on_failure, FailureAction::kRestore);
  EXPECT_EQ(sr->spec.health_timeout, absl::Minutes(10));
  EXPECT_EQ(sr->spec.trigger, RotationTrigger::kScheduled);
  ASSERT_EQ(sr->spec.keys.size(), 1u);
  EXPECT_EQ(sr->spec.keys[0].random_bytes.length, 32);
  EXPECT_TRUE(ValidateSecretRotation(*sr).empty());
}

TEST(ParseTest, FullSpec) {
  json o = Minimal();
  o["spec"]["keys"] = json::parse(R"([
    {"name": "db-password", "password": {"length": 20, "characterClasses": ["Lower", "Digit"],
                                         "exclude": "0l"}},
    {"name": "api-key", "randomBytes": {"length": 16, "encoding": "hex"}},
    {"name": "client-id", "uuid": {}}])");
  o["spec"]["strategy"] = {{"type", "KeepPrevious"}, {"gracePeriod", "24h"}};
  o["spec"]["consumers"] = {{"mode", "Explicit"}, {"deployments", {"api", "worker"}}};
  o["spec"]["onFailure"] = {{"action", "Keep"}, {"healthTimeout", "90s"}};
  o["spec"]["adoptExisting"] = true;
  absl::StatusOr<SecretRotation> sr = ParseSecretRotation(o);
  ASSERT_TRUE(sr.ok()) << sr.status();
  const SecretRotationSpec& s = sr->spec;
  ASSERT_EQ(s.keys.size(), 3u);
  EXPECT_EQ(s.keys[0].kind, KeySpec::Kind::kPassword);
  EXPECT_EQ(s.keys[0].password.length, 20);
  EXPECT_EQ(s.keys[0].password.classes,
            (std::vector<CharClass>{CharClass::kLower, CharClass::kDigit}));
  EXPECT_EQ(s.keys[0].password.exclude, "0l");
  EXPECT_EQ(s.keys[1].random_bytes.encoding, ValueEncoding::kHex);
  EXPECT_EQ(s.keys[2].kind, KeySpec::Kind::kUuid);
  EXPECT_EQ(s.strategy, RotationStrategy::kKeepPrevious);
  EXPECT_EQ(s.grace_period, absl::Hours(24));
  EXPECT_EQ(s.consumer_mode, ConsumerMode::kExplicit);
  EXPECT_EQ(s.consumer_deployments, (std::vector<std::string>{"api", "worker"}));
  EXPECT_EQ(s.on_failure, FailureAction::kKeep);
  EXPECT_EQ(s.health_timeout, absl::Seconds(90));
  EXPECT_TRUE(s.adopt_existing);
  EXPECT_TRUE(ValidateSecretRotation(*sr).empty());
}

TEST(ParseTest, KeyPairs) {
  json o = Minimal();
  o["spec"]["keys"] = json::parse(R"([
    {"name": "rsa.key", "keyPair": {"type": "RSA", "rsaBits": 3072, "jwsAlgorithm": "PS256",
                                    "publicKeyKey": "rsa.pub.pem", "jwksKey": "jwks.json"}},
    {"name": "ec.key", "keyPair": {"type": "EC", "curve": "P-384"}},
    {"name": "ed.key", "keyPair": {"type": "Ed25519"}}])");
  absl::StatusOr<SecretRotation> sr = ParseSecretRotation(o);
  ASSERT_TRUE(sr.ok()) << sr.status();
  const std::vector<KeySpec>& k = sr->spec.keys;
  ASSERT_EQ(k.size(), 3u);
  EXPECT_EQ(k[0].kind, KeySpec::Kind::kKeyPair);
  EXPECT_EQ(k[0].key_pair.type, KeyPairType::kRsa);
  EXPECT_EQ(k[0].key_pair.rsa_bits, 3072);
  EXPECT_EQ(k[0].key_pair.jws_algorithm, "PS256");
  EXPECT_EQ(PublicKeyDataKey(k[0]), "rsa.pub.pem");
  EXPECT_EQ(JwksDataKey(k[0]), "jwks.json");
  EXPECT_EQ(k[1].key_pair.type, KeyPairType::kEc);
  EXPECT_EQ(k[1].key_pair.curve, "P-384");
  EXPECT_EQ(PublicKeyDataKey(k[1]), "ec.key.pub");
  EXPECT_EQ(k[2].key_pair.type, KeyPairType::kEd25519);
  EXPECT_EQ(JwksDataKey(k[2]), "ed.key.jwks.json");
  EXPECT_TRUE(ValidateSecretRotation(*sr).empty());
  o["spec"]["keys"][1]["keyPair"]["type"] = "DSA";
  EXPECT_THAT(std::string(ParseSecretRotation(o).status().message()),
              HasSubstr("must be RSA, EC or Ed25519"));
}

TEST(ParseTest, Trigger) {
  for (const auto& [text, want] : std::vector<std::pair<std::string, RotationTrigger>>{
           {"Scheduled", RotationTrigger::kScheduled}, {"Manual", RotationTrigger::kManual}}) {
    SCOPED_TRACE(text);
    json o = Minimal();
    o["spec"]["trigger"] = text;
    absl::StatusOr<SecretRotation> sr = ParseSecretRotation(o);
    ASSERT_TRUE(sr.ok()) << sr.status();
    EXPECT_EQ(sr->spec.trigger, want);
  }
}

TEST(ParseTest, StructuralErrors) {
  struct Case {
    const char* name;
    const char* pointer;
    json value;
    const char* want;
  };
  const std::vector<Case> cases = {
      {"bad interval", "/spec/interval", "7d", "spec.interval"},
      {"negative interval", "/spec/interval", "-1h", "positive"},
      {"infinite interval", "/spec/interval", "inf", "spec.interval"},
      {"two generators", "/spec/keys/0/uuid", json::object(), "exactly one generator"},
      {"bad encoding", "/spec/keys/0/randomBytes/encoding", "base32", "encoding"},
      {"bad strategy", "/spec/strategy", {{"type", "Swap"}}, "spec.strategy.type"},
      {"bad mode", "/spec/consumers", {{"mode", "All"}}, "spec.consumers.mode"},
      {"bad action", "/spec/onFailure", {{"action", "Retry"}}, "spec.onFailure.action"},
      {"length not int", "/spec/keys/0/randomBytes/length", "32", "length"},
      {"bad trigger", "/spec/trigger", "Never", "spec.trigger: must be Scheduled or Manual"},
      {"trigger not a string", "/spec/trigger", 1,
       "spec.trigger: must be a string, not an integer"},
      // The shared JSON readers (api/json_read.h): a field of the wrong type is named with
      // what it is, and an object field that is not one is an error (not ignored).
      {"secretName not a string", "/spec/secretName", true,
       "spec.secretName: must be a string, not a boolean"},
      {"keys not a list", "/spec/keys", "k", "spec.keys: must be a list, not a string"},
      {"randomBytes not an object", "/spec/keys/0/randomBytes", 32,
       "spec.keys[0].randomBytes: must be an object, not an integer"},
      {"length out of range", "/spec/keys/0/randomBytes/length", 5000,
       "spec.keys[0].randomBytes.length: must be between 0 and 4096"},
      {"deployments not strings",
       "/spec/consumers",
       {{"mode", "Explicit"}, {"deployments", {1}}},
       "spec.consumers.deployments[0]: must be a string, not an integer"},
      {"workload not an object",
       "/spec/consumers",
       {{"mode", "Explicit"}, {"workloads", {"api"}}},
       "spec.consumers.workloads[0]: must be an object, not a string"},
      {"target not an object", "/spec/target", "db", "spec.target: must be an object"},
      {"port out of range",
       "/spec/target",
       {{"postgresql", {{"host", "db"}, {"port", 70000}}}},
       "spec.target.postgresql.port: must be an integer 1..65535"},
      {"db strategy",
       "/spec/target",
       {{"postgresql", {{"strategy", "Both"}}}},
       "spec.target.postgresql.strategy: must be SingleUser or AlternatingUsers, not \"Both\""},
      {"wrong kind", "/kind", "Release", "kind: expected SecretRotation, got \"Release\""},
      {"wrong apiVersion", "/apiVersion", "capstan.dev/v1", "apiVersion: expected"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    json o = Minimal();
    o[json::json_pointer(c.pointer)] = c.value;
    absl::StatusOr<SecretRotation> sr = ParseSecretRotation(o);
    ASSERT_FALSE(sr.ok());
    EXPECT_THAT(std::string(sr.status().message()), HasSubstr(c.want));
  }
}

KeyPairGenerator& KeyPair(SecretRotationSpec& s, KeyPairType type) {
  s.keys[0].kind = KeySpec::Kind::kKeyPair;
  s.keys[0].key_pair.type = type;
  return s.keys[0].key_pair;
}

TEST(ValidateTest, Problems) {
  struct Case {
    const char* name;
    std::function<void(SecretRotationSpec&)> edit;
    const char* want;
  };
  const std::vector<Case> cases = {
      {"no secret", [](SecretRotationSpec& s) { s.secret_name.clear(); }, "spec.secretName"},
      // Kubernetes name syntax (api/json_read.h's IsDnsSubdomain) for every object named.
      {"secret name", [](SecretRotationSpec& s) { s.secret_name = "JWT_keys"; },
       "spec.secretName: \"JWT_keys\" is not a valid Secret name"},
      {"consumer deployment name",
       [](SecretRotationSpec& s) {
         s.consumer_mode = ConsumerMode::kExplicit;
         s.consumer_deployments = {"api", "-api"};
       },
       "spec.consumers.deployments[1]: \"-api\" is not a valid Deployment name"},
      {"consumer workload name",
       [](SecretRotationSpec& s) {
         s.consumer_mode = ConsumerMode::kExplicit;
         s.consumer_workloads = {{"StatefulSet", "db/0"}};
       },
       "spec.consumers.workloads[0].name: \"db/0\" is not a valid StatefulSet name"},
      {"admin secret name",
       [](SecretRotationSpec& s) {
         s.postgresql = PostgresTarget{.host = "db", .admin_secret = "Admin", .user = "app"};
       },
       "spec.target.postgresql.adminSecretRef.name: \"Admin\" is not a valid Secret name"},
      {"no keys", [](SecretRotationSpec& s) { s.keys.clear(); }, "at least one key"},
      {"duplicate key", [](SecretRotationSpec& s) { s.keys.push_back(s.keys[0]); }, "listed twice"},
      {"reserved suffix", [](SecretRotationSpec& s) { s.keys[0].name = "key_previous"; },
       "reserved"},
      {"reserved prefix", [](SecretRotationSpec& s) { s.keys[0].name = ".capstan-x"; }, "reserved"},
      {"bad key name", [](SecretRotationSpec& s) { s.keys[0].name = "a/b"; }, "data key"},
      {"zero bytes", [](SecretRotationSpec& s) { s.keys[0].random_bytes.length = 0; },
       "randomBytes.length"},
      {"grace not shorter than interval",
       [](SecretRotationSpec& s) {
         s.strategy = RotationStrategy::kKeepPrevious;
         s.grace_period = s.interval;
       },
       "gracePeriod"},
      {"explicit without names",
       [](SecretRotationSpec& s) { s.consumer_mode = ConsumerMode::kExplicit; },
       "required when mode is Explicit"},
      {"names without explicit", [](SecretRotationSpec& s) { s.consumer_deployments = {"x"}; },
       "only used"},
      {"short password",
       [](SecretRotationSpec& s) {
         s.keys[0].kind = KeySpec::Kind::kPassword;
         s.keys[0].password.length = 4;
       },
       "password.length"},
      {"rsa bits", [](SecretRotationSpec& s) { KeyPair(s, KeyPairType::kRsa).rsa_bits = 1024; },
       "rsaBits: must be 2048, 3072 or 4096"},
      {"rsa bits on EC",
       [](SecretRotationSpec& s) { KeyPair(s, KeyPairType::kEc).rsa_bits = 2048; },
       "rsaBits: only used with type RSA"},
      {"curve", [](SecretRotationSpec& s) { KeyPair(s, KeyPairType::kEc).curve = "P-521"; },
       "curve: must be P-256 or P-384"},
      {"curve on Ed25519",
       [](SecretRotationSpec& s) { KeyPair(s, KeyPairType::kEd25519).curve = "P-256"; },
       "curve: only used with type EC"},
      {"RSA alg",
       [](SecretRotationSpec& s) { KeyPair(s, KeyPairType::kRsa).jws_algorithm = "HS256"; },
       "jwsAlgorithm: must be"},
      {"alg on EC",
       [](SecretRotationSpec& s) { KeyPair(s, KeyPairType::kEc).jws_algorithm = "ES256"; },
       "jwsAlgorithm: only used with type RSA"},
      {"reserved public key name",
       [](SecretRotationSpec& s) { KeyPair(s, KeyPairType::kEc).public_key_key = "pub_previous"; },
       "reserved"},
      {"jwks is the private key",
       [](SecretRotationSpec& s) { KeyPair(s, KeyPairType::kEc).jwks_key = "signing-key"; },
       "must all differ"},
      {"derived key written by another key",
       [](SecretRotationSpec& s) {
         KeyPair(s, KeyPairType::kEc);
         KeySpec other;
         other.name = "signing-key.pub";
         s.keys.push_back(other);
       },
       "also written by spec.keys[1]"},
      {"key pair with postgresql",
       [](SecretRotationSpec& s) {
         KeyPair(s, KeyPairType::kEc);
         s.postgresql = PostgresTarget{.host = "db", .admin_secret = "admin", .user = "app"};
       },
       "cannot be a key pair"},
      {"exclude kills a class",
       [](SecretRotationSpec& s) {
         s.keys[0].kind = KeySpec::Kind::kPassword;
         s.keys[0].password.exclude = "0123456789";
       },
       "removes every character"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    SecretRotation sr = *ParseSecretRotation(Minimal());
    c.edit(sr.spec);
    std::vector<std::string> problems = ValidateSecretRotation(sr);
    ASSERT_FALSE(problems.empty());
    EXPECT_THAT(problems[0], HasSubstr(c.want));
  }
}

TEST(DurationTest, GoSyntax) {
  EXPECT_EQ(*ParseGoDuration("168h"), absl::Hours(168));
  EXPECT_EQ(*ParseGoDuration("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseGoDuration("1.5s"), absl::Milliseconds(1500));
  EXPECT_FALSE(ParseGoDuration("").ok());
  EXPECT_FALSE(ParseGoDuration("0s").ok());
  EXPECT_FALSE(ParseGoDuration("7d").ok());
  EXPECT_EQ(FormatGoDuration(absl::Hours(168)), "168h");
  EXPECT_EQ(FormatGoDuration(absl::Minutes(90)), "1h30m");
  EXPECT_EQ(FormatGoDuration(absl::Seconds(5)), "5s");
}

TEST(DataKeysTest, Reserved) {
  EXPECT_EQ(PreviousKey("k"), "k_previous");
  EXPECT_EQ(PendingKey("k"), ".capstan-pending.k");
  EXPECT_EQ(RollbackKey("k"), ".capstan-rollback.k");
  EXPECT_TRUE(IsReservedDataKey("k_previous"));
  EXPECT_TRUE(IsReservedDataKey(".capstan-pending.k"));
  EXPECT_FALSE(IsReservedDataKey("k"));
}

TEST(ExampleTest, ExamplesParseAndValidate) {
  for (const auto& [file, count] : {std::pair<std::string, size_t>{"secretrotation.yaml", 4},
                                    {"secretrotation-postgresql.yaml", 1},
                                    {"secretrotation-hook.yaml", 1}}) {
    std::ifstream f(std::string(CAPSTAN_SOURCE_DIR) + "/examples/" + file);
    std::stringstream ss;
    ss << f.rdbuf();
    absl::StatusOr<std::vector<json>> docs = api::YamlToJson(ss.str());
    ASSERT_TRUE(docs.ok()) << docs.status();
    ASSERT_EQ(docs->size(), count) << file;
    for (const json& doc : *docs) {
      absl::StatusOr<SecretRotation> sr = ParseSecretRotation(doc);
      ASSERT_TRUE(sr.ok()) << sr.status();
      EXPECT_TRUE(ValidateSecretRotation(*sr).empty()) << sr->name;
    }
  }
}

}  // namespace
}  // namespace capstan::secrets
