// SecretRotation with spec.target.postgresql: the planner's database steps, run by an
// in-memory shell against a fake database, and EnsurePassword's step detection.
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "capstan/secrets/database.h"
#include "capstan/secrets/rotation.h"
#include "capstan/secrets/secret_rotation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::secrets {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

// Users and their passwords; the admin may or may not create/alter roles.
class FakeDatabase : public PasswordDatabase {
 public:
  std::map<std::string, std::string> passwords = {{"admin", "admin-pw"}};
  std::set<std::string> members;  // "user>group"
  bool admin_may_alter = true;
  bool reachable = true;
  std::set<std::string> refused;     // passwords that never log in (pg_hba, a replica behind)
  std::set<std::string> unsettable;  // passwords SetPassword fails for
  int sets = 0;

  absl::Status TryLogin(const DbConnection&, const DbCredential& login) override {
    if (!reachable) return absl::UnavailableError("connection refused");
    auto it = passwords.find(login.user);
    if (it == passwords.end() || it->second != login.password || refused.count(login.password)) {
      return absl::UnauthenticatedError(
          absl::StrCat("password authentication failed for user \"", login.user, "\""));
    }
    return absl::OkStatus();
  }
  absl::Status SetPassword(const DbConnection& c, const DbCredential& admin,
                           const DbCredential& target, bool create,
                           const std::string& member_of) override {
    if (absl::Status s = TryLogin(c, admin); !s.ok()) return s;
    if (!admin_may_alter || unsettable.count(target.password)) {
      return absl::PermissionDeniedError("permission denied to alter role");
    }
    if (!passwords.count(target.user) && !create) {
      return absl::FailedPreconditionError("role does not exist");
    }
    ++sets;
    passwords[target.user] = target.password;
    if (!member_of.empty()) members.insert(target.user + ">" + member_of);
    return absl::OkStatus();
  }
};

SecretRotation Alternating() {
  SecretRotation sr;
  sr.name = "db";
  sr.ns = "shop";
  sr.uid = "uid-1";
  sr.generation = 1;
  sr.spec.secret_name = "db-creds";
  KeySpec k;
  k.name = "password";
  k.kind = KeySpec::Kind::kPassword;
  sr.spec.keys = {k};
  sr.spec.interval = absl::Hours(720);
  sr.spec.health_timeout = absl::Minutes(5);
  PostgresTarget t;
  t.host = "db";
  t.admin_secret = "db-admin";
  t.strategy = DbStrategy::kAlternatingUsers;
  t.users = {"app_a", "app_b"};
  t.member_of = "app";
  sr.spec.postgresql = t;
  return sr;
}

SecretRotation Single() {
  SecretRotation sr = Alternating();
  sr.spec.postgresql->strategy = DbStrategy::kSingleUser;
  sr.spec.postgresql->users.clear();
  sr.spec.postgresql->member_of.clear();
  sr.spec.postgresql->user = "app";
  return sr;
}

// The controller, in memory: the plan's database effect first (failing steps become
// PlanDatabaseFailure), then the Secret write.
struct Shell {
  const SecretRotation* sr;
  FakeDatabase db;
  bool exists = false;
  std::map<std::string, std::string> data, annotations;
  int generated = 0;
  std::map<std::string, std::string> stamps;  // consumer -> its pod template stamp
  std::optional<VerifyVerdict> verify;        // spec.verify.analysis: the run's verdict

  RotationInput Input(absl::Time now, std::vector<ConsumerView> consumers) const {
    RotationInput in;
    in.rotation = sr;
    in.secret.exists = exists;
    in.secret.annotations = annotations;
    for (const auto& [k, v] : data) in.secret.data_keys.insert(k);
    for (ConsumerView& c : consumers) c.stamped = stamps.count(c.name) ? stamps.at(c.name) : "";
    in.consumers = std::move(consumers);
    in.now = now;
    in.verify = verify;
    if (!sr->spec.postgresql) return in;  // no target (verify.analysis rows)
    auto it = data.find(sr->spec.postgresql->username_key);
    if (it != data.end()) in.db_user = it->second;
    return in;
  }
  RotationPlan Step(absl::Time now, std::vector<ConsumerView> consumers = {}) {
    const RotationInput in = Input(now, std::move(consumers));
    RotationPlan p = PlanRotation(in);
    const DbConnection conn{"db", 5432, "postgres", "disable", ""};
    const DbCredential admin{"admin", "admin-pw"};
    auto run = [&](const DatabaseStep& step) {
      if (step.kind == DatabaseStep::Kind::kCheckAdmin) return CheckAdmin(db, conn, admin);
      const DbCredential target{step.user, data.at(step.password_key)};
      return step.test ? EnsurePassword(db, conn, admin, target, step.create, step.member_of)
                       : SetPasswordBack(db, conn, admin, target);
    };
    if (p.db.kind != DatabaseStep::Kind::kNone) {
      if (DbStepOutcome o = run(p.db); !o.ok) {
        p = PlanDatabaseFailure(in, o.step, o.message);
        // The controller returns an error (and retries) when the set-back fails.
        if (p.db.kind != DatabaseStep::Kind::kNone && !run(p.db).ok) return RotationPlan{};
      }
    }
    if (p.action == Action::kCreate) exists = true;
    for (const ConsumerRef& c : p.stamp) stamps[c.name] = p.stamp_value;
    std::map<std::string, std::string> next = data;
    for (const auto& [dk, i] : p.change.generate) next[dk] = absl::StrCat("pw", ++generated);
    for (const auto& [to, from] : p.change.copy) next[to] = data.at(from);
    for (const auto& [to, v] : p.change.set_values) next[to] = v;
    for (const std::string& k : p.change.remove) next.erase(k);
    data = next;
    annotations = ApplyAnnotations(annotations, p.change);
    return p;
  }
  std::string State() const {
    auto it = annotations.find(kAnnState);
    return it == annotations.end() ? "Idle" : it->second;
  }
  // The Secret's credential logs in (what a consumer would do).
  bool SecretLogsIn() {
    if (!data.count("username") || !data.count("password")) return true;  // nothing held
    return db.TryLogin({}, {data["username"], data["password"]}).ok();
  }
  // Runs steps until Idle again, checking the Secret's credential after each step.
  void Converge(absl::Time now, std::vector<ConsumerView> consumers = {}) {
    for (int i = 0; i < 10; ++i) {
      Step(now, consumers);
      EXPECT_TRUE(SecretLogsIn()) << "after step " << i << " in " << State();
      if (State() == "Idle") return;
    }
    ADD_FAILURE() << "did not converge";
  }
};

ConsumerView Healthy() { return {.name = "api", .stamped = "", .healthy = true}; }

TEST(DatabaseRotationTest, AlternatingUsersNeverHoldARejectedCredential) {
  SecretRotation sr = Alternating();
  Shell s{&sr};
  EXPECT_EQ(s.Step(kT0).action, Action::kCreate);
  EXPECT_THAT(s.data, IsEmpty()) << "no value before the database has it";
  // First rotation: app_a gets the password, then the Secret names it.
  RotationPlan p = s.Step(kT0);
  EXPECT_EQ(p.action, Action::kWritePending);
  EXPECT_EQ(p.db.kind, DatabaseStep::Kind::kCheckAdmin);
  EXPECT_EQ(s.annotations[kAnnPendingUser], "app_a");
  EXPECT_FALSE(s.data.count("password"));
  s.Converge(kT0, {Healthy()});
  EXPECT_EQ(s.data["username"], "app_a");
  EXPECT_EQ(s.db.passwords["app_a"], s.data["password"]);
  EXPECT_TRUE(s.db.members.count("app_a>app"));
  const std::string a_password = s.data["password"];

  // The next rotation goes to app_b; app_a keeps working until the one after.
  const absl::Time t1 = kT0 + absl::Hours(721);
  s.Converge(t1, {Healthy()});
  EXPECT_EQ(s.data["username"], "app_b");
  EXPECT_EQ(s.db.passwords["app_a"], a_password) << "the previous user is untouched";
  EXPECT_EQ(s.db.passwords["app_b"], s.data["password"]);
  EXPECT_EQ(s.annotations[kAnnUser], "app_b");
  EXPECT_EQ(s.annotations[kAnnPreviousUser], "app_a");
  EXPECT_FALSE(s.data.count(RollbackKey("password")));
  s.Converge(t1 + absl::Hours(721), {Healthy()});
  EXPECT_EQ(s.data["username"], "app_a");
  EXPECT_NE(s.db.passwords["app_a"], a_password);
}

TEST(DatabaseRotationTest, ASetStepAlreadyDoneIsDetectedNotRedone) {
  SecretRotation sr = Alternating();
  Shell s{&sr};
  s.Step(kT0);
  s.Step(kT0);  // Pending, pending user app_a
  ASSERT_EQ(s.State(), "Pending");
  // A process set the password and was killed before the Secret write.
  s.db.passwords["app_a"] = s.data.at(PendingKey("password"));
  s.Step(kT0);
  EXPECT_EQ(s.State(), "Swapped");
  EXPECT_EQ(s.db.sets, 0) << "found by logging in, not set again";
  EXPECT_EQ(s.data["username"], "app_a");
}

TEST(DatabaseRotationTest, AdminWithoutPrivilegeSwitchesNothingAndNamesTheStep) {
  SecretRotation sr = Alternating();
  Shell s{&sr};
  s.Step(kT0);
  s.Converge(kT0, {Healthy()});
  const auto before = s.data;
  s.db.admin_may_alter = false;
  const absl::Time t1 = kT0 + absl::Hours(721);
  s.Step(t1);  // Pending
  RotationPlan p = s.Step(t1);
  EXPECT_EQ(p.action, Action::kAbort);
  EXPECT_EQ(p.result, "failed");
  ASSERT_EQ(p.events.size(), 1u);
  EXPECT_EQ(p.events[0].type, "Warning");
  EXPECT_THAT(p.events[0].note, HasSubstr("database step set failed"));
  EXPECT_THAT(p.events[0].note, HasSubstr("permission denied"));
  EXPECT_EQ(s.State(), "Idle");
  EXPECT_EQ(s.data, before) << "pending value dropped, nothing switched";
  nlohmann::json st = ComputeStatus(sr, s.annotations, {}, t1, nlohmann::json::object());
  EXPECT_EQ(st["phase"], "Failed");
  EXPECT_EQ(st["reason"], "DatabaseStepFailed");
  EXPECT_EQ(st["failedStep"], "set");
  EXPECT_EQ(st["currentUser"], "app_a");
  // Not retried before the next interval.
  EXPECT_EQ(s.Step(t1).action, Action::kNone);
}

TEST(DatabaseRotationTest, UnreachableDatabaseWritesNoValue) {
  SecretRotation sr = Alternating();
  Shell s{&sr};
  s.Step(kT0);
  s.Converge(kT0, {Healthy()});
  const auto before = s.data;
  s.db.reachable = false;
  RotationPlan p = s.Step(kT0 + absl::Hours(721));
  EXPECT_EQ(p.action, Action::kAbort);
  EXPECT_EQ(s.data, before);
  EXPECT_EQ(s.annotations[kAnnFailedStep], "connect");
  EXPECT_THAT(s.annotations[kAnnMessage], HasSubstr("as admin admin"));
}

TEST(DatabaseRotationTest, UnhealthyConsumersSwitchBackToThePreviousUser) {
  SecretRotation sr = Alternating();
  Shell s{&sr};
  s.Step(kT0);
  s.Converge(kT0, {Healthy()});
  const auto before = s.data;
  const absl::Time t1 = kT0 + absl::Hours(721);
  ConsumerView sick{.name = "api", .stamped = "", .healthy = false, .why = "0/1 available"};
  for (int i = 0; i < 3; ++i) s.Step(t1, {sick});
  ASSERT_EQ(s.State(), "Restarted");
  ASSERT_EQ(s.data["username"], "app_b");
  RotationPlan p = s.Step(t1 + absl::Minutes(6), {sick});
  EXPECT_EQ(p.action, Action::kRestore);
  EXPECT_EQ(p.db.kind, DatabaseStep::Kind::kNone) << "app_a's password never changed";
  EXPECT_EQ(s.data["username"], "app_a");
  EXPECT_EQ(s.data["password"], before.at("password"));
  EXPECT_TRUE(s.SecretLogsIn());
  EXPECT_EQ(s.annotations[kAnnUser], "app_a");
}

TEST(DatabaseRotationTest, SingleUserSetsThePasswordBackWhenRestoring) {
  SecretRotation sr = Single();
  Shell s{&sr};
  s.db.passwords["app"] = "unknown";
  s.Step(kT0);
  s.Converge(kT0, {Healthy()});
  EXPECT_EQ(s.data["username"], "app");
  const std::string first = s.data["password"];
  EXPECT_EQ(s.db.passwords["app"], first);
  const absl::Time t1 = kT0 + absl::Hours(721);
  ConsumerView sick{.name = "api", .stamped = "", .healthy = false, .why = "0/1 available"};
  for (int i = 0; i < 3; ++i) s.Step(t1, {sick});
  ASSERT_EQ(s.State(), "Restarted");
  EXPECT_NE(s.db.passwords["app"], first);
  RotationPlan p = s.Step(t1 + absl::Minutes(6), {sick});
  EXPECT_EQ(p.action, Action::kRestore);
  EXPECT_EQ(p.db.password_key, RollbackKey("password"));
  EXPECT_EQ(s.db.passwords["app"], first) << "the database first";
  EXPECT_EQ(s.data["password"], first) << "then the Secret";
}

// The set step changed the password, then logging in with it failed: the previous
// password is set back before the Secret records the failure, so what logged in before
// still does, and nothing switched.
TEST(DatabaseRotationTest, SingleUserSetsThePreviousPasswordBackWhenTheTestFails) {
  SecretRotation sr = Single();
  Shell s{&sr};
  s.db.passwords["app"] = "unknown";
  s.Step(kT0);
  s.Converge(kT0, {Healthy()});
  const std::string first = s.data["password"];
  ASSERT_EQ(s.db.passwords["app"], first);
  const absl::Time t1 = kT0 + absl::Hours(721);
  s.Step(t1);  // Pending
  ASSERT_EQ(s.State(), "Pending");
  const std::string pending = s.data.at(PendingKey("password"));
  s.db.refused.insert(pending);
  const int sets = s.db.sets;
  RotationPlan p = s.Step(t1);
  EXPECT_EQ(p.action, Action::kAbort);
  EXPECT_EQ(s.db.sets, sets + 2) << "set, then set back";
  EXPECT_EQ(s.db.passwords["app"], first);
  EXPECT_TRUE(s.SecretLogsIn());
  EXPECT_EQ(s.data["password"], first);
  EXPECT_FALSE(s.data.count(PendingKey("password")));
  EXPECT_EQ(s.State(), "Idle");
  EXPECT_EQ(s.annotations[kAnnFailedStep], "test");
  EXPECT_THAT(s.annotations[kAnnMessage], HasSubstr("previous password of app was set back"));
  for (const std::string& v : {first, pending}) {
    EXPECT_THAT(s.annotations[kAnnMessage], Not(HasSubstr(v)));
  }
  // Setting it back fails too: the step is an error (the controller retries it), the
  // Secret is not written; once the database takes it, the rotation fails as above.
  const absl::Time t2 = t1 + absl::Hours(721);  // the next attempt
  s.Step(t2);                                   // Pending again (a new value)
  ASSERT_EQ(s.State(), "Pending");
  s.db.refused.insert(s.data.at(PendingKey("password")));
  s.db.unsettable.insert(first);
  const std::map<std::string, std::string> before = s.data;
  p = s.Step(t2);
  EXPECT_EQ(p.action, Action::kNone);
  EXPECT_EQ(s.data, before);
  EXPECT_EQ(s.State(), "Pending");
  s.db.unsettable.clear();
  s.Step(t2);
  EXPECT_EQ(s.State(), "Idle");
  EXPECT_EQ(s.db.passwords["app"], first);
  EXPECT_TRUE(s.SecretLogsIn());
}

TEST(DatabaseRotationTest, SingleUserNeverCreatesTheRole) {
  SecretRotation sr = Single();
  Shell s{&sr};
  s.Step(kT0);
  s.Step(kT0);
  RotationPlan p = s.Step(kT0);
  EXPECT_EQ(p.action, Action::kAbort);
  EXPECT_EQ(s.annotations[kAnnFailedStep], "set");
  EXPECT_FALSE(s.db.passwords.count("app"));
}

TEST(DatabaseRotationTest, MessagesNeverCarryAPassword) {
  class Echo : public FakeDatabase {
    absl::Status SetPassword(const DbConnection&, const DbCredential&, const DbCredential& t, bool,
                             const std::string&) override {
      return absl::PermissionDeniedError("syntax error near '" + t.password + "'");
    }
  } db;
  DbStepOutcome o = EnsurePassword(db, {}, {"admin", "admin-pw"}, {"u", "s3cret-value"}, true, "");
  EXPECT_FALSE(o.ok);
  EXPECT_EQ(o.step, "set");
  EXPECT_THAT(o.message, testing::Not(HasSubstr("s3cret-value")));
  EXPECT_THAT(o.message, HasSubstr("[redacted]"));
  db.passwords["u"] = "s3cret-value";
  o = EnsurePassword(db, {}, {"admin", "wrong"}, {"u", "s3cret-value"}, true, "");
  EXPECT_TRUE(o.ok && o.already_done);
}

TEST(DatabaseRotationTest, ValidationOfTheTarget) {
  SecretRotation sr = Alternating();
  EXPECT_THAT(ValidateSecretRotation(sr), IsEmpty());
  sr.spec.postgresql->users = {"app_a"};
  EXPECT_THAT(ValidateSecretRotation(sr),
              testing::Contains(HasSubstr("exactly two different users, found 1")));
  sr = Alternating();
  sr.spec.keys.push_back(sr.spec.keys[0]);
  sr.spec.keys[1].name = "other";
  EXPECT_THAT(ValidateSecretRotation(sr), testing::Contains(HasSubstr("exactly one key")));
  sr = Single();
  sr.spec.postgresql->user = "";
  EXPECT_THAT(ValidateSecretRotation(sr), testing::Contains(HasSubstr("user: required")));
  sr = Single();
  sr.spec.strategy = RotationStrategy::kKeepPrevious;
  EXPECT_THAT(ValidateSecretRotation(sr), testing::Contains(HasSubstr("must be Replace")));
}

TEST(DatabaseRotationTest, ParsesTheTarget) {
  auto sr = ParseSecretRotation(nlohmann::json::parse(R"({
    "metadata": {"name": "db"},
    "spec": {"secretName": "db-creds", "interval": "720h",
             "keys": [{"name": "password", "password": {"length": 32}}],
             "target": {"postgresql": {
               "host": "pg.db.svc", "port": 6432, "database": "shop", "sslMode": "verify-full",
               "caSecretRef": {"name": "pg-ca"},
               "adminSecretRef": {"name": "pg-admin", "usernameKey": "user"},
               "strategy": "AlternatingUsers", "users": ["shop_a", "shop_b"],
               "memberOf": "shop"}}}})"));
  ASSERT_TRUE(sr.ok()) << sr.status();
  ASSERT_TRUE(sr->spec.postgresql.has_value());
  const PostgresTarget& t = *sr->spec.postgresql;
  EXPECT_EQ(t.port, 6432);
  EXPECT_EQ(t.ca_secret, "pg-ca");
  EXPECT_EQ(t.ca_key, "ca.crt");
  EXPECT_EQ(t.admin_username_key, "user");
  EXPECT_EQ(t.admin_password_key, "password");
  EXPECT_EQ(t.strategy, DbStrategy::kAlternatingUsers);
  EXPECT_THAT(ValidateSecretRotation(*sr), IsEmpty());
  EXPECT_FALSE(ParseSecretRotation(nlohmann::json::parse(R"({"spec": {"target": {"postgresql":
      {"strategy": "Dual"}}}})"))
                   .ok());
}

// spec.verify.analysis: once the consumers are healthy the rotation waits for the
// verification run; anything but Successful restores (fail closed), for every target.
TEST(VerifyAnalysisTest, EachOutcomeForEachTarget) {
  using V = VerifyVerdict::State;
  enum class Target { kNone, kAlternating, kSingle };
  struct Case {
    std::string name;
    Target target;
    V verdict;
    bool restored;  // false: the new values stay (Succeeded)
  };
  const std::vector<Case> cases = {
      {"none successful", Target::kNone, V::kSuccessful, false},
      {"none failed", Target::kNone, V::kFailed, true},
      {"none error", Target::kNone, V::kError, true},
      {"none inconclusive", Target::kNone, V::kInconclusive, true},
      {"none invalid template", Target::kNone, V::kInvalid, true},
      {"alternating successful", Target::kAlternating, V::kSuccessful, false},
      {"alternating failed", Target::kAlternating, V::kFailed, true},
      {"alternating inconclusive", Target::kAlternating, V::kInconclusive, true},
      {"single successful", Target::kSingle, V::kSuccessful, false},
      {"single failed", Target::kSingle, V::kFailed, true},
      {"single error", Target::kSingle, V::kError, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    SecretRotation sr = c.target == Target::kSingle ? Single() : Alternating();
    if (c.target == Target::kNone) {
      sr.spec.postgresql.reset();
      sr.spec.keys[0].kind = KeySpec::Kind::kRandomBytes;
    }
    sr.spec.verify_analysis =
        api::AnalysisGateSpec{.templates = {{.template_name = "auth-errors"}}};
    Shell s{&sr};
    if (c.target == Target::kSingle) s.db.passwords["app"] = "unknown";
    // The first values (a database's first password goes through the verification too).
    s.verify = VerifyVerdict{.state = V::kSuccessful};
    s.Step(kT0);
    s.Converge(kT0, {Healthy()});
    ASSERT_EQ(s.State(), "Idle");
    const auto before = s.data;
    const std::string user_before = s.annotations.count(kAnnUser) ? s.annotations.at(kAnnUser) : "";

    // Due: Pending, Swapped (a database target changes first), Restarted, consumers healthy.
    s.verify.reset();
    const absl::Time t1 = kT0 + absl::Hours(721);
    RotationPlan p;
    for (int i = 0; i < 6 && p.action != Action::kVerify; ++i) p = s.Step(t1, {Healthy()});
    ASSERT_EQ(p.action, Action::kVerify);
    const std::string version = s.annotations[kAnnVersion];
    const std::string run = VerifyRunName("db", version);
    EXPECT_EQ(run, absl::StrCat("db-v", version, "-verify"));
    EXPECT_EQ(s.annotations[kAnnVerifyRun], run);
    ASSERT_EQ(p.events.size(), 1u);
    EXPECT_EQ(p.events[0].reason, "VerificationStarted");
    EXPECT_THAT(p.events[0].note, HasSubstr(run));
    EXPECT_THAT(p.events[0].note, HasSubstr("auth-errors"));
    EXPECT_TRUE(s.SecretLogsIn());
    const auto rotated = s.data;

    // Running (or nothing observed yet, e.g. after a restart): wait, write nothing, and
    // never ask for a second run.
    for (const std::optional<VerifyVerdict>& running :
         {std::optional<VerifyVerdict>(), std::optional(VerifyVerdict{.run = run})}) {
      s.verify = running;
      p = s.Step(t1 + absl::Hours(1), {Healthy()});  // past healthTimeout: consumers are fine
      EXPECT_EQ(p.action, Action::kNone);
      EXPECT_EQ(s.State(), "Restarted");
      const nlohmann::json st = ComputeStatus(sr, s.annotations, {Healthy()}, t1, {});
      EXPECT_EQ(st["reason"], "Verifying");
      EXPECT_THAT(st["message"].get<std::string>(), HasSubstr(run));
    }

    s.verify = VerifyVerdict{.state = c.verdict,
                             .run = run,
                             .message = "metric auth-errors Failed: 1 of 1 measurements failed"};
    p = s.Step(t1 + absl::Hours(1), {Healthy()});
    if (!c.restored) {
      EXPECT_EQ(p.action, Action::kComplete);
      EXPECT_EQ(p.result, "succeeded");
      EXPECT_EQ(s.State(), "Idle");
      EXPECT_EQ(s.data, [&] {
        auto d = rotated;
        std::erase_if(d, [](const auto& kv) { return kv.first.rfind(RollbackKey(""), 0) == 0; });
        return d;
      }());
      EXPECT_FALSE(s.annotations.count(kAnnVerifyRun));
      EXPECT_EQ(s.annotations[kAnnLastResult], "Succeeded");
      continue;
    }
    EXPECT_EQ(p.action, Action::kRestore);
    EXPECT_EQ(p.result, "failed");
    ASSERT_EQ(p.events.size(), 1u);
    EXPECT_EQ(p.events[0].type, "Warning");
    EXPECT_EQ(p.events[0].reason, "RotationFailed");
    EXPECT_THAT(p.events[0].note, HasSubstr(absl::StrCat("analysis ", run)));
    EXPECT_THAT(p.events[0].note, HasSubstr("metric auth-errors"));
    if (c.target == Target::kSingle) {
      EXPECT_EQ(p.db.kind, DatabaseStep::Kind::kSetPassword) << "the database first";
      EXPECT_EQ(s.db.passwords["app"], before.at("password"));
    } else {
      EXPECT_EQ(p.db.kind, DatabaseStep::Kind::kNone);
    }
    EXPECT_TRUE(s.SecretLogsIn());
    s.Step(t1 + absl::Hours(1), {Healthy()});  // Restoring -> Idle, consumers re-stamped
    EXPECT_EQ(s.State(), "Idle");
    EXPECT_EQ(s.data, before) << "the Secret holds the old values again";
    EXPECT_EQ(s.annotations.count(kAnnUser) ? s.annotations.at(kAnnUser) : "", user_before);
    EXPECT_TRUE(s.SecretLogsIn());
    EXPECT_FALSE(s.annotations.count(kAnnVerifyRun));
    const nlohmann::json st = ComputeStatus(sr, s.annotations, {Healthy()}, t1, {});
    EXPECT_EQ(st["phase"], "Failed");
    EXPECT_EQ(st["reason"], "VerificationFailed");
    EXPECT_EQ(st["failedStep"], "verify");
    EXPECT_THAT(st["message"].get<std::string>(), HasSubstr("metric auth-errors"));
    ASSERT_FALSE(st["history"].empty());
    EXPECT_EQ(st["history"][0]["result"], "Failed");
    EXPECT_EQ(st["history"][0]["failedStep"], "verify");
  }
}

// A consumer that falls over while the verification runs: the health timeout (counted
// from the start of the verification) restores, whatever the run says.
TEST(VerifyAnalysisTest, UnhealthyDuringVerificationRestoresAfterTheTimeout) {
  SecretRotation sr = Alternating();
  sr.spec.verify_analysis = api::AnalysisGateSpec{.templates = {{.template_name = "t"}}};
  Shell s{&sr};
  s.verify = VerifyVerdict{.state = VerifyVerdict::State::kSuccessful};
  s.Step(kT0);
  s.Converge(kT0, {Healthy()});
  s.verify.reset();
  const absl::Time t1 = kT0 + absl::Hours(721);
  RotationPlan p;
  for (int i = 0; i < 6 && p.action != Action::kVerify; ++i) p = s.Step(t1, {Healthy()});
  ASSERT_EQ(p.action, Action::kVerify);
  ConsumerView sick{.name = "api", .stamped = "", .healthy = false, .why = "0/1 available"};
  p = s.Step(t1 + absl::Minutes(4), {sick});
  EXPECT_EQ(p.action, Action::kNone);
  p = s.Step(t1 + absl::Minutes(6), {sick});
  EXPECT_EQ(p.action, Action::kRestore);
  EXPECT_FALSE(s.annotations.count(kAnnVerifyRun));
  EXPECT_FALSE(s.annotations.count(kAnnFailedStep)) << "the consumers failed, not the analysis";
}

TEST(VerifyAnalysisTest, ParsesVerifyAnalysis) {
  auto sr = ParseSecretRotation(nlohmann::json::parse(R"({
    "metadata": {"name": "db"},
    "spec": {"secretName": "db-creds", "interval": "720h",
             "keys": [{"name": "password", "password": {"length": 32}}],
             "verify": {"analysis": {"templates": [{"templateName": "auth-errors"}],
                                     "args": [{"name": "service", "value": "shop"}],
                                     "bakeSeconds": 300}}}})"));
  ASSERT_TRUE(sr.ok()) << sr.status();
  ASSERT_TRUE(sr->spec.verify_analysis.has_value());
  EXPECT_EQ(sr->spec.verify_analysis->templates[0].template_name, "auth-errors");
  EXPECT_EQ(sr->spec.verify_analysis->args[0].value, "shop");
  EXPECT_EQ(sr->spec.verify_analysis->bake_seconds, 300);
  auto bad = ParseSecretRotation(nlohmann::json::parse(R"({"metadata": {"name": "db"},
    "spec": {"secretName": "s", "keys": [{"name": "k", "uuid": {}}],
             "verify": {"analysis": {}}}})"));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("spec.verify.analysis.templates"));
}

}  // namespace
}  // namespace capstan::secrets
