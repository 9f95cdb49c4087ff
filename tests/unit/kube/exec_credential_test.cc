#include "capstan/kube/exec_credential.h"

#include <atomic>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "capstan/common/clock.h"
#include "capstan/kube/rest_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "unit/kube/rest_config_test_support.h"

namespace capstan::kube {
namespace {

using ::capstan::kube::testing::LogCapture;
using ::capstan::kube::testing::MakeCert;
using ::capstan::kube::testing::ScopedEnv;
using ::capstan::kube::testing::TempDir;
using ::capstan::kube::testing::TestCert;
using ::testing::HasSubstr;
using ::testing::Not;

KubeconfigOptions Options(std::string path, absl::Duration exec_timeout = absl::Seconds(60)) {
  KubeconfigOptions options;
  options.path = std::move(path);
  options.exec_timeout = exec_timeout;
  return options;
}

// ---------------------------------------------------------------------------
// Pure parts.

TEST(ParseExecCredential, Table) {
  struct Case {
    std::string name;
    std::string json;
    std::string api_version;
    std::string want_error;  // empty: success
    std::string want_token;
    std::optional<absl::Time> want_expiry;
  };
  const std::string head =
      R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",)";
  const std::string v1 = kExecApiV1;
  const std::string v1beta1 = kExecApiV1beta1;
  const absl::Time t = absl::FromUnixSeconds(1'700'000'600);  // 2023-11-14T22:23:20Z
  // name, plugin output, kubeconfig apiVersion, error substring ("" = success), token, expiry
  const std::vector<Case> cases = {
      {"token only", head + R"("status":{"token":"abc"}})", v1, "", "abc", std::nullopt},
      {"v1beta1 with expiry",
       R"({"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential",)"
       R"("status":{"token":"abc","expirationTimestamp":"2023-11-14T22:23:20Z"}})",
       v1beta1, "", "abc", t},
      {"fractional seconds and offset",
       head + R"("status":{"token":"abc","expirationTimestamp":"2023-11-14T23:23:20.5+01:00"}})",
       v1, "", "abc", t + absl::Milliseconds(500)},
      {"null expiry", head + R"("status":{"token":"abc","expirationTimestamp":null}})", v1, "",
       "abc", std::nullopt},
      {"certificate pair", head + R"("status":{"clientCertificateData":"C","clientKeyData":"K"}})",
       v1, "", "", std::nullopt},
      {"not JSON, secret not quoted", "token=SECRET-VALUE", v1,
       "output is not a JSON ExecCredential (18 bytes)", "", std::nullopt},
      {"not an object", "[1]", v1, "output is not a JSON object", "", std::nullopt},
      {"other apiVersion", head + R"("status":{"token":"abc"}})", v1beta1,
       "apiVersion is \"client.authentication.k8s.io/v1\", but the kubeconfig asks for "
       "\"client.authentication.k8s.io/v1beta1\"",
       "", std::nullopt},
      {"other kind",
       R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"Secret","status":{}})", v1,
       "kind: not ExecCredential", "", std::nullopt},
      {"no status", head + R"("spec":{}})", v1, "status: missing", "", std::nullopt},
      {"status not an object", head + R"("status":"SECRET-VALUE"})", v1, "status: not an object",
       "", std::nullopt},
      {"token not a string", head + R"("status":{"token":42}})", v1, "status.token: not a string",
       "", std::nullopt},
      {"nothing usable", head + R"("status":{"token":""}})", v1,
       "status: neither token nor clientCertificateData/clientKeyData is set", "", std::nullopt},
      {"certificate without key", head + R"("status":{"clientCertificateData":"C"}})", v1,
       "status.clientCertificateData is set without status.clientKeyData", "", std::nullopt},
      {"bad expiry",
       head + R"("status":{"token":"SECRET-VALUE","expirationTimestamp":"tomorrow"}})", v1,
       "status.expirationTimestamp: not an RFC 3339 time", "", std::nullopt},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    absl::StatusOr<ExecCredential> cred = ParseExecCredential(tc.json, tc.api_version);
    if (!tc.want_error.empty()) {
      ASSERT_FALSE(cred.ok());
      EXPECT_THAT(std::string(cred.status().message()), HasSubstr(tc.want_error));
      EXPECT_THAT(std::string(cred.status().message()), Not(HasSubstr("SECRET-VALUE")));
      continue;
    }
    ASSERT_TRUE(cred.ok()) << cred.status();
    EXPECT_EQ(cred->token, tc.want_token);
    EXPECT_EQ(cred->expiry, tc.want_expiry);
  }
}

TEST(ExecCredentialRefreshTime, RefreshesALittleBeforeExpiry) {
  const absl::Time t0 = absl::FromUnixSeconds(1'700'000'000);
  struct Case {
    std::string name;
    absl::Duration lifetime;
    absl::Duration want_after_fetch;
  };
  const std::vector<Case> cases = {
      {"15-minute token: 30s margin", absl::Minutes(15), absl::Minutes(14) + absl::Seconds(30)},
      {"1-hour token: margin capped at 30s", absl::Hours(1), absl::Minutes(59) + absl::Seconds(30)},
      {"60s token: 10% margin", absl::Seconds(60), absl::Seconds(54)},
      {"already expired: at once", -absl::Seconds(5), -absl::Seconds(5)},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    EXPECT_EQ(ExecCredentialRefreshTime(t0, t0 + tc.lifetime), t0 + tc.want_after_fetch);
  }
}

TEST(ExecInfoJson, WithAndWithoutCluster) {
  nlohmann::json bare = nlohmann::json::parse(ExecInfoJson(kExecApiV1beta1, nullptr));
  EXPECT_EQ(bare, nlohmann::json::parse(
                      R"({"apiVersion":"client.authentication.k8s.io/v1beta1",
                          "kind":"ExecCredential","spec":{"interactive":false}})"));

  ExecClusterInfo cluster{.server = "https://x",
                          .tls_server_name = "api.x",
                          .insecure_skip_tls_verify = false,
                          .ca_pem = "PEM",
                          .config_json = R"({"audience":"a"})"};
  nlohmann::json full = nlohmann::json::parse(ExecInfoJson(kExecApiV1, &cluster));
  EXPECT_EQ(full["spec"]["cluster"],
            nlohmann::json::parse(R"({"server":"https://x","tls-server-name":"api.x",
                                      "certificate-authority-data":"UEVN",
                                      "config":{"audience":"a"}})"));
}

// ---------------------------------------------------------------------------
// Running a plugin: a shell script in a temp dir, steered by files beside it.

// count: runs so far (the script increments it); exec_info/args/env: what it saw;
// stderr: printed to stderr; sleep: seconds to sleep; fail: exit status (after printing a
// secret on stdout); output: printed as is instead of the default credential;
// expiry: the credential's expirationTimestamp.
constexpr char kPluginScript[] = R"SH(#!/bin/sh
d=$(dirname "$0")
n=$(( $(cat "$d/count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$d/count"
printf '%s' "$KUBERNETES_EXEC_INFO" > "$d/exec_info"
printf '%s\n' "$@" > "$d/args"
printf '%s' "$PLUGIN_GREETING" > "$d/env"
if [ -f "$d/stderr" ]; then cat "$d/stderr" >&2; fi
if [ -f "$d/sleep" ]; then sleep "$(cat "$d/sleep")"; fi
while [ -f "$d/block" ]; do sleep 0.02; done
if [ -f "$d/fail" ]; then echo "SECRET-STDOUT-$n"; exit "$(cat "$d/fail")"; fi
if [ -f "$d/output" ]; then cat "$d/output"; exit 0; fi
exp=""
if [ -f "$d/expiry" ]; then exp=",\"expirationTimestamp\":\"$(cat "$d/expiry")\""; fi
printf '{"apiVersion":"%s","kind":"ExecCredential","status":{"token":"tok-%s"%s}}' \
  "${PLUGIN_API:-client.authentication.k8s.io/v1}" "$n" "$exp"
)SH";

bool Eventually(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

const TestCert& Ca() {
  static const TestCert* cert = new TestCert(MakeCert("exec-test-ca"));
  return *cert;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// FakeClock's default start, 2023-11-14T22:13:20Z, plus `d`, in RFC 3339.
std::string At(absl::Duration d) {
  return absl::FormatTime(absl::RFC3339_sec, absl::FromUnixSeconds(1'700'000'000) + d,
                          absl::UTCTimeZone());
}

class ExecPluginTest : public ::testing::Test {
 protected:
  void SetUp() override { plugin_ = dir_.Write("plugin/plugin.sh", kPluginScript, 0755); }
  void TearDown() override {
    // Neither the credential (stdout) nor anything secret reaches the log.
    EXPECT_THAT(logs_.text(), Not(HasSubstr("tok-")));
    EXPECT_THAT(logs_.text(), Not(HasSubstr("SECRET-STDOUT")));
    EXPECT_THAT(logs_.text(), Not(HasSubstr("PRIVATE KEY")));
  }

  int Runs() const {
    std::string n = Slurp(dir_.Path("plugin/count"));
    return n.empty() ? 0 : std::stoi(n);
  }
  void Steer(const std::string& file, const std::string& content) {
    dir_.Write("plugin/" + file, content);
  }

  // A kubeconfig in plugin/ whose user runs ./plugin.sh (relative to the file).
  std::string Kubeconfig(const std::string& exec_extra, const std::string& user_extra = "",
                         const std::string& api = kExecApiV1) {
    return dir_.Write("plugin/config", absl::StrCat(R"(current-context: dev
clusters:
- name: c
  cluster:
    server: https://x.example
    certificate-authority-data: )",
                                                    absl::Base64Escape(Ca().cert_pem), R"(
    extensions:
    - name: client.authentication.k8s.io/exec
      extension: {audience: "sts.example", retries: 3, verbose: true}
users:
- name: me
  user:
)",
                                                    user_extra, R"(
    exec:
      apiVersion: )",
                                                    api, R"(
      command: ./plugin.sh
      env: [{name: PLUGIN_GREETING, value: hello}, {name: PLUGIN_API, value: )",
                                                    api, R"(}]
)",
                                                    exec_extra, R"(
contexts:
- name: dev
  context: {cluster: c, user: me}
)"));
  }

  TempDir dir_;
  LogCapture logs_;
  ScopedEnv kubeconfig_{"KUBECONFIG", std::nullopt};
  std::string plugin_;
  FakeClock clock_;
};

TEST_F(ExecPluginTest, TokenIsCachedUntilShortlyBeforeExpiryAndAfterInvalidate) {
  Steer("expiry", At(absl::Minutes(10)));
  const std::string path = Kubeconfig(R"(      args: [get-token, --cluster, "dev cluster"]
      provideClusterInfo: true
      interactiveMode: Never)");
  absl::StatusOr<RestConfig> rc = LoadKubeconfig(Options(path), clock_);
  ASSERT_TRUE(rc.ok()) << rc.status();
  ASSERT_NE(rc->token_source, nullptr);
  EXPECT_EQ(Runs(), 1);  // run at load
  EXPECT_EQ(*rc->token_source->Token(), "tok-1");
  EXPECT_EQ(Runs(), 1);

  // What the plugin saw: args, env, KUBERNETES_EXEC_INFO with the cluster.
  EXPECT_EQ(Slurp(dir_.Path("plugin/args")), "get-token\n--cluster\ndev cluster\n");
  EXPECT_EQ(Slurp(dir_.Path("plugin/env")), "hello");
  nlohmann::json info = nlohmann::json::parse(Slurp(dir_.Path("plugin/exec_info")));
  EXPECT_EQ(info["apiVersion"].get<std::string>(), kExecApiV1);
  EXPECT_EQ(info["kind"].get<std::string>(), "ExecCredential");
  EXPECT_FALSE(info["spec"]["interactive"].get<bool>());
  EXPECT_EQ(info["spec"]["cluster"]["server"].get<std::string>(), "https://x.example");
  EXPECT_EQ(info["spec"]["cluster"]["certificate-authority-data"].get<std::string>(),
            absl::Base64Escape(Ca().cert_pem));
  EXPECT_EQ(info["spec"]["cluster"]["config"],
            nlohmann::json::parse(R"({"audience":"sts.example","retries":3,"verbose":true})"));

  // 10-minute credential: refreshed 30s before it expires.
  clock_.Advance(absl::Minutes(9) + absl::Seconds(29));
  EXPECT_EQ(*rc->token_source->Token(), "tok-1");
  Steer("expiry", At(absl::Hours(1)));
  clock_.Advance(absl::Seconds(1));
  // Still valid for 30 s: answered at once, refreshed in the background.
  ASSERT_TRUE(Eventually([&] { return *rc->token_source->Token() == "tok-2"; }));
  EXPECT_EQ(*rc->token_source->Token(), "tok-2");
  EXPECT_EQ(Runs(), 2);

  // The server said 401.
  rc->token_source->Invalidate();
  EXPECT_EQ(*rc->token_source->Token(), "tok-3");
  EXPECT_EQ(*rc->token_source->Token(), "tok-3");
  EXPECT_EQ(Runs(), 3);
}

TEST_F(ExecPluginTest, ExecInfoVariants) {
  struct Case {
    std::string name;
    std::string api;
    std::string extra;
    bool want_cluster;
  };
  const std::vector<Case> cases = {
      {"v1 without cluster info", kExecApiV1, "      interactiveMode: IfAvailable", false},
      {"v1beta1 with cluster info", kExecApiV1beta1, "      provideClusterInfo: true", true},
      {"v1beta1 without", kExecApiV1beta1, "", false},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    absl::StatusOr<RestConfig> rc =
        LoadKubeconfig(Options(Kubeconfig(tc.extra, "", tc.api)), clock_);
    ASSERT_TRUE(rc.ok()) << rc.status();
    EXPECT_THAT(*rc->token_source->Token(), HasSubstr("tok-"));
    nlohmann::json info = nlohmann::json::parse(Slurp(dir_.Path("plugin/exec_info")));
    EXPECT_EQ(info["apiVersion"].get<std::string>(), tc.api);
    EXPECT_FALSE(info["spec"]["interactive"].get<bool>());
    EXPECT_EQ(info["spec"].contains("cluster"), tc.want_cluster);
  }
}

TEST_F(ExecPluginTest, FailingPluginAtLoadShowsStderrButNotStdout) {
  Steer("stderr", "boom: credentials expired\nrun `login` again\n");
  Steer("fail", "3");
  const std::string path = Kubeconfig("");
  absl::StatusOr<RestConfig> rc = LoadKubeconfig(Options(path), clock_);
  ASSERT_FALSE(rc.ok());
  EXPECT_EQ(rc.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(std::string(rc.status().message()),
            absl::StrCat("kubeconfig ", path, ": users[0].user.exec: exec plugin \"", plugin_,
                         "\": exited with status 3; stderr: boom: credentials expired; run "
                         "`login` again"));
  EXPECT_THAT(std::string(rc.status().message()), Not(HasSubstr("SECRET-STDOUT")));
}

TEST_F(ExecPluginTest, FailedRefreshKeepsTheCredentialUntilItExpires) {
  Steer("expiry", At(absl::Minutes(10)));
  absl::StatusOr<RestConfig> rc = LoadKubeconfig(Options(Kubeconfig("")), clock_);
  ASSERT_TRUE(rc.ok()) << rc.status();
  Steer("fail", "1");
  Steer("stderr", "network unreachable");

  clock_.Advance(absl::Minutes(9) + absl::Seconds(45));  // past the refresh time
  EXPECT_EQ(*rc->token_source->Token(), "tok-1");
  ASSERT_TRUE(Eventually([&] {
    return logs_.text().find("keeping the current credential until it expires") !=
           std::string::npos;
  }));
  EXPECT_EQ(*rc->token_source->Token(), "tok-1");

  clock_.Advance(absl::Minutes(1));  // past expiry
  absl::StatusOr<std::string> token = rc->token_source->Token();
  ASSERT_FALSE(token.ok());
  EXPECT_THAT(std::string(token.status().message()),
              HasSubstr("exited with status 1; stderr: network unreachable"));
  EXPECT_THAT(std::string(token.status().message()), Not(HasSubstr("SECRET-STDOUT")));

  std::remove(dir_.Path("plugin/fail").c_str());
  EXPECT_THAT(*rc->token_source->Token(), HasSubstr("tok-"));
}

TEST_F(ExecPluginTest, TimeoutKillsThePlugin) {
  Steer("stderr", "waiting for browser login");
  Steer("sleep", "30");
  const absl::Time start = absl::Now();
  absl::StatusOr<RestConfig> rc =
      LoadKubeconfig(Options(Kubeconfig(""), absl::Milliseconds(300)), clock_);
  ASSERT_FALSE(rc.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  EXPECT_EQ(rc.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(rc.status().message()),
              HasSubstr("\": no answer within 300ms, killed; stderr: waiting for browser login"));
}

TEST_F(ExecPluginTest, PluginOutputProblems) {
  const TestCert client = MakeCert("exec-client");
  const TestCert other = MakeCert("exec-other");
  auto credential = [](const std::string& api, nlohmann::json status) {
    return nlohmann::json{{"apiVersion", api}, {"kind", "ExecCredential"}, {"status", status}}
        .dump();
  };
  struct Case {
    std::string name;
    std::string output;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"not JSON", "SECRET-STDOUT token=abc",
       "users[0].user.exec: exec plugin \"$PLUGIN\": output is not a JSON ExecCredential"},
      {"wrong apiVersion", credential(kExecApiV1beta1, {{"token", "SECRET-STDOUT"}}),
       "apiVersion is \"client.authentication.k8s.io/v1beta1\", but the kubeconfig asks for "
       "\"client.authentication.k8s.io/v1\""},
      {"certificate and key do not match",
       credential(kExecApiV1,
                  {{"clientCertificateData", client.cert_pem}, {"clientKeyData", other.key_pem}}),
       "users[0].user.exec: the plugin's status.clientCertificateData/clientKeyData: client "
       "certificate and key do not match"},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    Steer("output", tc.output);
    const std::string path = Kubeconfig("");
    absl::StatusOr<RestConfig> rc = LoadKubeconfig(Options(path), clock_);
    ASSERT_FALSE(rc.ok());
    const std::string message(rc.status().message());
    EXPECT_THAT(message, HasSubstr(absl::StrCat("kubeconfig ", path, ": ")));
    EXPECT_THAT(message, HasSubstr(absl::StrReplaceAll(tc.want, {{"$PLUGIN", plugin_}})));
    EXPECT_THAT(message, Not(HasSubstr("SECRET-STDOUT")));
    EXPECT_THAT(message, Not(HasSubstr("PRIVATE KEY")));
  }
}

TEST_F(ExecPluginTest, CertificateFromPluginGoesIntoTheConfig) {
  const TestCert client = MakeCert("exec-client");
  Steer("output", nlohmann::json{{"apiVersion", kExecApiV1},
                                 {"kind", "ExecCredential"},
                                 {"status",
                                  {{"clientCertificateData", client.cert_pem},
                                   {"clientKeyData", client.key_pem}}}}
                      .dump());
  absl::StatusOr<RestConfig> rc = LoadKubeconfig(Options(Kubeconfig("")), clock_);
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(rc->client_cert_pem, client.cert_pem);
  EXPECT_EQ(rc->client_key_pem, client.key_pem);
  EXPECT_EQ(rc->token_source, nullptr);
}

TEST_F(ExecPluginTest, TokenInTheKubeconfigWinsOverThePlugin) {
  absl::StatusOr<RestConfig> rc =
      LoadKubeconfig(Options(Kubeconfig("", "    token: static-token")), clock_);
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(*rc->token_source->Token(), "static-token");
  EXPECT_EQ(Runs(), 0);
}

TEST_F(ExecPluginTest, MissingCommandShowsTheInstallHint) {
  ExecPluginConfig config;
  config.command = "capstan-no-such-plugin";
  config.install_hint = "Install it:\n  apt install x\n";
  ExecTokenSource source(config, clock_);
  absl::StatusOr<std::string> token = source.Token();
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(std::string(token.status().message()),
            "exec plugin \"capstan-no-such-plugin\": executable not found (No such file or "
            "directory); Install it:; apt install x");
}

TEST_F(ExecPluginTest, ASlowRefreshNeverHoldsUpARequest) {
  // A cloud login plugin can take seconds; a lease renewal asking for a token in
  // that time must get the still-valid one at once.
  Steer("expiry", At(absl::Minutes(10)));
  absl::StatusOr<RestConfig> rc = LoadKubeconfig(Options(Kubeconfig("")), clock_);
  ASSERT_TRUE(rc.ok()) << rc.status();
  Steer("block", "");  // the next run waits until the file is gone
  clock_.Advance(absl::Minutes(9) + absl::Seconds(45));  // past the refresh time
  std::atomic<bool> answered = false;
  std::string token;
  std::thread caller([&] {
    absl::StatusOr<std::string> t = rc->token_source->Token();
    token = t.ok() ? *t : std::string(t.status().message());
    answered = true;
  });
  const bool in_time = Eventually([&] { return answered.load(); });
  std::remove(dir_.Path("plugin/block").c_str());
  caller.join();
  ASSERT_TRUE(in_time) << "Token() waited for the plugin";
  EXPECT_EQ(token, "tok-1");
  ASSERT_TRUE(Eventually([&] { return *rc->token_source->Token() == "tok-2"; }));
  EXPECT_EQ(Runs(), 2);
}

TEST_F(ExecPluginTest, ConcurrentCallersShareOneRun) {
  Steer("sleep", "0.2");  // so the callers overlap
  ExecPluginConfig config;
  config.command = plugin_;
  ExecTokenSource source(config, clock_);
  std::vector<std::thread> threads;
  std::vector<std::string> tokens(8);
  for (size_t i = 0; i < tokens.size(); ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<std::string> t = source.Token();
      tokens[i] = t.ok() ? *t : std::string(t.status().message());
    });
  }
  for (std::thread& t : threads) t.join();
  for (const std::string& t : tokens) EXPECT_EQ(t, "tok-1");
  EXPECT_EQ(Runs(), 1);
}

}  // namespace
}  // namespace capstan::kube
