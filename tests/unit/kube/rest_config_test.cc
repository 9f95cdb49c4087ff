#include "capstan/kube/rest_config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "capstan/common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "unit/kube/rest_config_test_support.h"

namespace capstan::kube {
namespace {

using ::capstan::kube::testing::CountOccurrences;
using ::capstan::kube::testing::LogCapture;
using ::capstan::kube::testing::MakeCert;
using ::capstan::kube::testing::ScopedEnv;
using ::capstan::kube::testing::TempDir;
using ::capstan::kube::testing::TestCert;
using ::testing::HasSubstr;
using ::testing::Not;

// Distinctive, so a leak into a message or a log line cannot go unnoticed.
constexpr char kToken[] = "s3cr3t-T0KEN-4f1d9a";

const TestCert& Ca() {
  static const TestCert* cert = new TestCert(MakeCert("capstan-test-ca"));
  return *cert;
}
const TestCert& Client() {
  static const TestCert* cert = new TestCert(MakeCert("capstan-test-client"));
  return *cert;
}
const TestCert& Other() {
  static const TestCert* cert = new TestCert(MakeCert("capstan-test-other"));
  return *cert;
}
std::string B64(const std::string& s) { return absl::Base64Escape(s); }

KubeconfigOptions Options(std::string path, std::string context = "") {
  KubeconfigOptions options;
  options.path = std::move(path);
  options.context = std::move(context);
  return options;
}

// Replaces $TOKEN, $CA_DATA, $CERT_DATA, $KEY_DATA, $OTHER_KEY_DATA and $DIR.
std::string Expand(const std::string& text, const std::string& dir) {
  return absl::StrReplaceAll(text, {{"$TOKEN", kToken},
                                    {"$CA_DATA", B64(Ca().cert_pem)},
                                    {"$CERT_DATA", B64(Client().cert_pem)},
                                    {"$KEY_DATA", B64(Client().key_pem)},
                                    {"$OTHER_KEY_DATA", B64(Other().key_pem)},
                                    {"$DIR", dir}});
}

// One cluster "c", one user "me", one context "dev" (current) joining them.
std::string OneContext(const std::string& cluster, const std::string& user) {
  return absl::StrCat("current-context: dev\n", "clusters:\n- name: c\n  cluster: {", cluster,
                      "}\n", "users:\n- name: me\n  user: {", user, "}\n",
                      "contexts:\n- name: dev\n  context: {cluster: c, user: me}\n");
}

// Every test starts from a clean environment: no $KUBECONFIG, not in a pod, $HOME
// in the temp dir. Nothing secret may reach the log.
class RestConfigTest : public ::testing::Test {
 protected:
  void TearDown() override {
    const std::string log = logs_.text();
    EXPECT_THAT(log, Not(HasSubstr(kToken)));
    EXPECT_THAT(log, Not(HasSubstr("PRIVATE KEY")));
  }

  std::string Write(const std::string& relative, const std::string& content) {
    return dir_.Write(relative, Expand(content, dir_.path()));
  }

  TempDir dir_;
  LogCapture logs_;
  ScopedEnv kubeconfig_{"KUBECONFIG", std::nullopt};
  ScopedEnv service_host_{"KUBERNETES_SERVICE_HOST", std::nullopt};
  ScopedEnv service_port_{"KUBERNETES_SERVICE_PORT", std::nullopt};
  ScopedEnv pod_namespace_{"POD_NAMESPACE", std::nullopt};
  ScopedEnv home_{"HOME", dir_.Path("home")};
};

std::string TokenOf(const RestConfig& rc) {
  if (rc.token_source == nullptr) return "<none>";
  absl::StatusOr<std::string> t = rc.token_source->Token();
  return t.ok() ? *t : std::string(t.status().message());
}

constexpr char kTwoContexts[] = R"(apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev-cluster
  cluster:
    server: https://dev.example:6443
    certificate-authority-data: $CA_DATA
    tls-server-name: api.dev.example
- name: prod-cluster
  cluster:
    server: prod.example:443/
    insecure-skip-tls-verify: true
users:
- name: dev-user
  user:
    token: $TOKEN
- name: cert-user
  user:
    client-certificate-data: $CERT_DATA
    client-key-data: $KEY_DATA
contexts:
- name: dev
  context:
    cluster: dev-cluster
    user: dev-user
    namespace: team-a
- name: prod
  context: {cluster: prod-cluster, user: cert-user}
)";

TEST_F(RestConfigTest, CurrentContextWithInlineCaAndToken) {
  const std::string path = Write("config", kTwoContexts);
  absl::StatusOr<RestConfig> rc = LoadKubeconfig(Options(path));
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(rc->server, "https://dev.example:6443");
  EXPECT_EQ(rc->ca_pem, Ca().cert_pem);
  EXPECT_EQ(rc->tls_server_name, "api.dev.example");
  EXPECT_FALSE(rc->insecure_skip_tls_verify);
  EXPECT_EQ(rc->namespace_, "team-a");
  EXPECT_EQ(rc->source, absl::StrCat("kubeconfig ", path, " context dev"));
  EXPECT_TRUE(rc->client_cert_pem.empty());
  EXPECT_EQ(TokenOf(*rc), kToken);
}

TEST_F(RestConfigTest, ExplicitContextWithClientCertAndInsecureWarnsOnce) {
  const std::string path = Write("config", kTwoContexts);
  absl::StatusOr<RestConfig> rc = LoadKubeconfig(Options(path, "prod"));
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(rc->server, "https://prod.example:443");  // scheme added, slash dropped
  EXPECT_TRUE(rc->insecure_skip_tls_verify);
  EXPECT_TRUE(rc->ca_pem.empty());
  EXPECT_EQ(rc->client_cert_pem, Client().cert_pem);
  EXPECT_EQ(rc->client_key_pem, Client().key_pem);
  EXPECT_EQ(rc->token_source, nullptr);
  EXPECT_EQ(rc->namespace_, "");
  EXPECT_EQ(CountOccurrences(logs_.text(), "insecure-skip-tls-verify"), 1) << logs_.text();
  EXPECT_THAT(logs_.text(), HasSubstr("[warning]"));
}

TEST_F(RestConfigTest, KubeconfigEnvMergesLikeKubectl) {
  const std::string a = Write("a/config", R"(
clusters:
- name: shared
  cluster: {server: "https://a.example"}
users:
- name: ua
  user: {token: token-a}
contexts:
- name: ctx-a
  context: {cluster: shared, user: ua}
)");
  const std::string b = Write("b/config", R"(
current-context: ctx-b
clusters:
- name: shared
  cluster: {server: "https://b.example"}
- name: only-b
  cluster: {server: "https://only-b.example"}
users:
- name: ua
  user: {token: token-b}
contexts:
- name: ctx-a
  context: {cluster: only-b, user: ua}
- name: ctx-b
  context: {cluster: shared, user: ua, namespace: from-b}
)");
  const std::string c = Write("c/config", R"(
current-context: ctx-c
contexts:
- name: ctx-c
  context: {cluster: only-b}
)");
  const std::string missing = dir_.Path("nowhere/config");

  struct Case {
    std::string name;
    std::string kubeconfig_env;
    std::string context;
    std::string want_server;
    std::string want_token;
    std::string want_namespace;
    std::string want_source_file;
  };
  const std::vector<Case> cases = {
      // a sets no current-context, b does; b's ctx-b names "shared", which a defined first.
      {"current-context from the first file that sets it", absl::StrCat(a, ":", missing, ":", b),
       "", "https://a.example", "token-a", "from-b", b},
      {"first file to define a context wins", absl::StrCat(a, ":", b), "ctx-a", "https://a.example",
       "token-a", "", a},
      {"a context without a user is anonymous", absl::StrCat(a, ":", b, ":", c), "ctx-c",
       "https://only-b.example", "<none>", "", c},
      {"order decides current-context", absl::StrCat(c, "::", a, ":", b, ":", a), "",
       "https://only-b.example", "<none>", "", c},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    ScopedEnv env("KUBECONFIG", tc.kubeconfig_env);
    absl::StatusOr<RestConfig> rc = LoadKubeconfig(Options("", tc.context));
    ASSERT_TRUE(rc.ok()) << rc.status();
    EXPECT_EQ(rc->server, tc.want_server);
    EXPECT_EQ(TokenOf(*rc), tc.want_token);
    EXPECT_EQ(rc->namespace_, tc.want_namespace);
    EXPECT_THAT(rc->source, HasSubstr(absl::StrCat("kubeconfig ", tc.want_source_file, " ")));
  }
}

TEST_F(RestConfigTest, HomeKubeconfigIsTheFallback) {
  Write("home/.kube/config", OneContext(R"(server: "https://home.example")", ""));
  absl::StatusOr<RestConfig> rc = LoadKubeconfig({});
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(rc->server, "https://home.example");
  EXPECT_THAT(rc->source, HasSubstr(dir_.Path("home/.kube/config")));
}

// Restores the working directory at the end of a scope.
class ScopedCwd {
 public:
  explicit ScopedCwd(const std::string& dir) {
    char buf[PATH_MAX];
    if (getcwd(buf, sizeof(buf)) != nullptr) old_ = buf;
    EXPECT_EQ(chdir(dir.c_str()), 0);
  }
  ~ScopedCwd() {
    if (!old_.empty()) {
      EXPECT_EQ(chdir(old_.c_str()), 0);
    }
  }

 private:
  std::string old_;
};

TEST_F(RestConfigTest, RelativePathsAreResolvedAgainstTheKubeconfigDirectory) {
  Write("kube/sub/pki/ca.crt", Ca().cert_pem);
  Write("kube/sub/pki/client.crt", Client().cert_pem);
  Write("kube/keys/client.key", Client().key_pem);
  Write("kube/sub/token", "  token-from-file\n");
  Write("kube/sub/config", R"(
current-context: x
clusters:
- name: c
  cluster: {server: "https://x.example", certificate-authority: pki/ca.crt}
users:
- name: u
  user: {client-certificate: pki/client.crt, client-key: ../keys/client.key, tokenFile: token}
contexts:
- name: x
  context: {cluster: c, user: u}
)");
  struct Case {
    std::string name;
    std::string cwd;
    std::string path;
  };
  const std::vector<Case> cases = {
      {"absolute kubeconfig path, unrelated cwd", "/", dir_.Path("kube/sub/config")},
      {"relative kubeconfig path", dir_.Path("kube"), "sub/config"},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    ScopedCwd cwd(tc.cwd);
    absl::StatusOr<RestConfig> rc = LoadKubeconfig(Options(tc.path));
    ASSERT_TRUE(rc.ok()) << rc.status();
    EXPECT_EQ(rc->ca_pem, Ca().cert_pem);
    EXPECT_EQ(rc->client_cert_pem, Client().cert_pem);
    EXPECT_EQ(rc->client_key_pem, Client().key_pem);
    EXPECT_EQ(TokenOf(*rc), "token-from-file");  // trimmed
  }
}

TEST_F(RestConfigTest, InlineDataAndFilesAreEquivalent) {
  Write("ca.crt", Ca().cert_pem);
  Write("other.crt", Other().cert_pem);
  Write("client.crt", Client().cert_pem);
  Write("client.key", Client().key_pem);
  struct Case {
    std::string name;
    std::string cluster;
    std::string user;
  };
  const std::vector<Case> cases = {
      {"files", R"(server: "https://x", certificate-authority: "$DIR/ca.crt")",
       R"(client-certificate: "$DIR/client.crt", client-key: "$DIR/client.key")"},
      {"data", R"(server: "https://x", certificate-authority-data: "$CA_DATA")",
       R"(client-certificate-data: "$CERT_DATA", client-key-data: "$KEY_DATA")"},
      {"mixed", R"(server: "https://x", certificate-authority-data: "$CA_DATA")",
       R"(client-certificate: "$DIR/client.crt", client-key-data: "$KEY_DATA")"},
      // As in kubectl, certificate-authority-data wins over certificate-authority.
      {"CA data wins over the file",
       R"(server: "https://x", certificate-authority: "$DIR/other.crt", )"
       R"(certificate-authority-data: "$CA_DATA")",
       R"(client-certificate-data: "$CERT_DATA", client-key: "$DIR/client.key")"},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    const std::string path = Write("config", OneContext(tc.cluster, tc.user));
    absl::StatusOr<RestConfig> rc = LoadKubeconfig(Options(path));
    ASSERT_TRUE(rc.ok()) << rc.status();
    EXPECT_EQ(rc->ca_pem, Ca().cert_pem);
    EXPECT_EQ(rc->client_cert_pem, Client().cert_pem);
    EXPECT_EQ(rc->client_key_pem, Client().key_pem);
    EXPECT_EQ(rc->token_source, nullptr);
  }
}

TEST_F(RestConfigTest, TokenFileTakesPrecedenceAndRotates) {
  Write("token", "first-token");
  const std::string path =
      Write("config", OneContext(R"(server: "https://x")", R"(token: "$TOKEN", tokenFile: token)"));
  FakeClock clock;
  absl::StatusOr<RestConfig> rc = LoadKubeconfig(Options(path), clock);
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(TokenOf(*rc), "first-token");
  Write("token", "second-token");
  clock.Advance(absl::Seconds(6));
  EXPECT_EQ(TokenOf(*rc), "second-token");
}

struct BrokenCase {
  std::string name;
  std::string yaml;  // expanded; "" means: do not write the file
  std::string context;
  absl::StatusCode code;
  std::vector<std::string> want;  // substrings; $FILE is the kubeconfig path
};

TEST_F(RestConfigTest, BrokenKubeconfigsGiveOneClearMessage) {
  Write("empty-token", " \n");
  Write("client.crt", Client().cert_pem);
  const std::string ok_cluster = R"(server: "https://x")";
  const std::string ok_user = R"(token: "$TOKEN")";
  const std::string exec_head = R"(exec: {apiVersion: client.authentication.k8s.io/v1, )";
  const std::vector<BrokenCase> cases = {
      {"bad YAML",
       "current-context: dev\nusers:\n- name: me\n  user: {token: $TOKEN\n",
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: invalid YAML at line "}},
      {"aliases expanding past the node budget",
       [] {
         std::string s = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n";
         for (int i = 1; i <= 9; ++i) {
           s += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
           for (int j = 0; j < 9; ++j) s += (j == 0 ? "*a" : ", *a") + std::to_string(i - 1);
           s += "]\n";
         }
         return s;
       }(),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: invalid YAML: ", "once aliases are expanded"}},
      {"nested too deep",
       "users: " + std::string(500, '[') + std::string(500, ']') + "\n",
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: invalid YAML"}},
      {"not a mapping",
       "- a\n- b\n",
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: not a YAML mapping"}},
      {"clusters not a list",
       "clusters: {a: b}\n",
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: clusters: not a list"}},
      {"entry without name",
       "clusters:\n- cluster: {server: x}\n",
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: clusters[0].name: missing"}},
      {"duplicate name",
       "users:\n- name: me\n  user: {token: $TOKEN}\n- name: me\n  user: {token: b}\n",
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: users[1].name: \"me\" is also defined at users[0]"}},
      {"no current-context",
       "clusters: []\n",
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: current-context is not set and no context was given"}},
      {"explicit context not defined",
       OneContext(ok_cluster, ok_user),
       "nope",
       absl::StatusCode::kNotFound,
       {"kubeconfig $FILE: context \"nope\" is not defined (defined: \"dev\")"}},
      {"current-context not defined",
       "current-context: gone\n",
       "",
       absl::StatusCode::kNotFound,
       {"kubeconfig $FILE: current-context \"gone\" is not defined (none are defined)"}},
      {"context names an undefined cluster",
       "current-context: dev\ncontexts:\n- name: dev\n  context: {cluster: nowhere}\n",
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: context \"dev\" names cluster \"nowhere\", which is not defined"}},
      {"context names an undefined user",
       absl::StrCat("current-context: dev\nclusters:\n- name: c\n  cluster: {", ok_cluster,
                    "}\ncontexts:\n- name: dev\n  context: {cluster: c, user: me}\n"),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: context \"dev\" names user \"me\", which is not defined"}},
      {"context without cluster",
       "current-context: dev\ncontexts:\n- name: dev\n  context: {user: me}\n",
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: contexts[0].context.cluster: missing"}},
      {"cluster without server",
       OneContext("tls-server-name: x", ok_user),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: clusters[0].cluster.server: missing"}},
      {"server with another scheme",
       OneContext(R"(server: "ftp://x")", ok_user),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: clusters[0].cluster.server: must be an https://"}},
      {"bad base64 client certificate",
       OneContext(ok_cluster,
                  R"(client-certificate-data: "!!$TOKEN!!", client-key-data: "$KEY_DATA")"),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: users[0].user.client-certificate-data: not valid base64"}},
      {"bad base64 CA",
       OneContext(R"(server: "https://x", certificate-authority-data: "%%%")", ok_user),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: clusters[0].cluster.certificate-authority-data: not valid base64"}},
      {"CA data is not a certificate",
       OneContext(
           absl::StrCat(R"(server: "https://x", certificate-authority-data: ")", B64(kToken), "\""),
           ok_user),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: clusters[0].cluster.certificate-authority-data: no PEM certificate"}},
      {"missing CA file",
       OneContext(R"(server: "https://x", certificate-authority: "$DIR/missing-ca.crt")", ok_user),
       "",
       absl::StatusCode::kNotFound,
       {"kubeconfig $FILE: clusters[0].cluster.certificate-authority: $DIR/missing-ca.crt: No "
        "such file or directory"}},
      {"missing client key file",
       OneContext(ok_cluster, R"(client-certificate-data: "$CERT_DATA", client-key: nokey.pem)"),
       "",
       absl::StatusCode::kNotFound,
       {"kubeconfig $FILE: users[0].user.client-key: $DIR/nokey.pem: No such file or directory"}},
      {"certificate without key",
       OneContext(ok_cluster, R"(client-certificate-data: "$CERT_DATA")"),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: users[0].user: client-certificate is set without client-key"}},
      {"key is not a key",
       OneContext(ok_cluster,
                  absl::StrCat(R"(client-certificate-data: "$CERT_DATA", client-key-data: ")",
                               B64(kToken), "\"")),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: users[0].user.client-key-data: no PEM private key found"}},
      {"certificate and key do not match",
       OneContext(ok_cluster,
                  R"(client-certificate: client.crt, client-key-data: "$OTHER_KEY_DATA")"),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: users[0].user: client certificate and key do not match"}},
      {"certificate file and data",
       OneContext(ok_cluster,
                  R"(client-certificate: client.crt, client-certificate-data: "$CERT_DATA", )"
                  R"(client-key-data: "$KEY_DATA")"),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: users[0].user: client-certificate and client-certificate-data are "
        "both set"}},
      {"token is not a string",
       OneContext(ok_cluster, "token: {nested: $TOKEN}"),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: users[0].user.token: not a string"}},
      {"insecure with a CA",
       OneContext(R"(server: "https://x", insecure-skip-tls-verify: true, )"
                  R"(certificate-authority-data: "$CA_DATA")",
                  ok_user),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: clusters[0].cluster: insecure-skip-tls-verify cannot be combined"}},
      {"insecure not a boolean",
       OneContext(R"(server: "https://x", insecure-skip-tls-verify: maybe)", ok_user),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: clusters[0].cluster.insecure-skip-tls-verify: not a boolean"}},
      {"proxy-url",
       OneContext(R"(server: "https://x", proxy-url: "http://proxy:3128")", ok_user),
       "",
       absl::StatusCode::kUnimplemented,
       {"kubeconfig $FILE: clusters[0].cluster.proxy-url: not supported"}},
      {"impersonation",
       OneContext(ok_cluster, R"(token: "$TOKEN", as: admin)"),
       "",
       absl::StatusCode::kUnimplemented,
       {"kubeconfig $FILE: users[0].user.as: impersonation is not supported"}},
      {"basic auth",
       OneContext(ok_cluster, R"(password: "$TOKEN")"),
       "",
       absl::StatusCode::kUnimplemented,
       {"kubeconfig $FILE: users[0].user.password: basic authentication is not supported"}},
      {"auth-provider",
       OneContext(ok_cluster, "auth-provider: {name: oidc}"),
       "",
       absl::StatusCode::kUnimplemented,
       {"kubeconfig $FILE: users[0].user.auth-provider: legacy auth providers are not supported"}},
      {"missing token file",
       OneContext(ok_cluster, "tokenFile: no-token"),
       "",
       absl::StatusCode::kNotFound,
       {"kubeconfig $FILE: users[0].user.tokenFile: $DIR/no-token: No such file or directory"}},
      {"empty token file",
       OneContext(ok_cluster, "tokenFile: empty-token"),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: users[0].user.tokenFile: $DIR/empty-token: empty"}},
      {"exec v1alpha1",
       OneContext(ok_cluster,
                  "exec: {apiVersion: client.authentication.k8s.io/v1alpha1, command: x}"),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: users[0].user.exec.apiVersion: "
        "\"client.authentication.k8s.io/v1alpha1\" is not supported"}},
      {"exec without apiVersion",
       OneContext(ok_cluster, "exec: {command: x}"),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: users[0].user.exec.apiVersion: missing"}},
      {"exec without command",
       OneContext(ok_cluster, exec_head + "args: [a]}"),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: users[0].user.exec.command: missing"}},
      {"exec interactive",
       OneContext(ok_cluster, exec_head + "command: x, interactiveMode: Always}"),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: users[0].user.exec.interactiveMode: Always needs a terminal"}},
      {"exec env without name",
       OneContext(ok_cluster, exec_head + "command: x, env: [{value: $TOKEN}]}"),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: users[0].user.exec.env[0].name: missing"}},
      {"exec args not a list",
       OneContext(ok_cluster, exec_head + "command: x, args: $TOKEN}"),
       "",
       absl::StatusCode::kInvalidArgument,
       {"kubeconfig $FILE: users[0].user.exec.args: not a list"}},
  };
  for (const BrokenCase& tc : cases) {
    SCOPED_TRACE(tc.name);
    const std::string path = Write("config", tc.yaml);
    absl::StatusOr<RestConfig> rc = LoadKubeconfig(Options(path, tc.context));
    ASSERT_FALSE(rc.ok());
    const std::string message(rc.status().message());
    EXPECT_EQ(rc.status().code(), tc.code) << message;
    for (const std::string& want : tc.want) {
      EXPECT_THAT(message,
                  HasSubstr(absl::StrReplaceAll(want, {{"$FILE", path}, {"$DIR", dir_.path()}})));
    }
    EXPECT_THAT(message, Not(HasSubstr(kToken)));
    EXPECT_THAT(message, Not(HasSubstr(B64(kToken))));
    EXPECT_THAT(message, Not(HasSubstr("PRIVATE KEY")));
    EXPECT_THAT(message, Not(HasSubstr("\n")));
  }
}

TEST_F(RestConfigTest, MissingFilesAreNotFoundAndNameThePathsTried) {
  struct Case {
    std::string name;
    std::optional<std::string> kubeconfig_env;
    std::string path;
    std::vector<std::string> want;
  };
  const std::string a = dir_.Path("a/config");
  const std::string b = dir_.Path("b/config");
  const std::vector<Case> cases = {
      {"explicit path", std::nullopt, a, {"kubeconfig " + a + ": No such file or directory"}},
      {"explicit path beats $KUBECONFIG", b, a, {a}},
      {"every $KUBECONFIG entry missing",
       a + ":" + b,
       "",
       {"no kubeconfig found: no file in $KUBECONFIG exists (tried " + a + ", " + b + ")"}},
      {"no ~/.kube/config",
       std::nullopt,
       "",
       {"no kubeconfig found: $KUBECONFIG is not set and " + dir_.Path("home/.kube/config") +
        " does not exist"}},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    ScopedEnv env("KUBECONFIG", tc.kubeconfig_env);
    absl::StatusOr<RestConfig> rc = LoadKubeconfig(Options(tc.path));
    ASSERT_FALSE(rc.ok());
    EXPECT_EQ(rc.status().code(), absl::StatusCode::kNotFound) << rc.status();
    for (const std::string& want : tc.want) {
      EXPECT_THAT(std::string(rc.status().message()), HasSubstr(want));
    }
  }
}

TEST_F(RestConfigTest, EmptyFileInKubeconfigListIsAnEmptyConfig) {
  const std::string empty = Write("empty", "");
  const std::string real = Write("config", OneContext(R"(server: "https://x")", ""));
  ScopedEnv env("KUBECONFIG", empty + ":" + real);
  absl::StatusOr<RestConfig> rc = LoadKubeconfig({});
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(rc->server, "https://x");
}

// ---------------------------------------------------------------------------
// Token sources.

TEST_F(RestConfigTest, StaticTokenSource) {
  std::shared_ptr<TokenSource> source = NewStaticTokenSource("abc");
  EXPECT_EQ(*source->Token(), "abc");
  source->Invalidate();
  EXPECT_EQ(*source->Token(), "abc");
}

TEST_F(RestConfigTest, FileTokenSourceFollowsRotation) {
  const std::string path = dir_.Write("token", "first\n");
  FakeClock clock;
  std::shared_ptr<TokenSource> source = NewFileTokenSource(path, clock);
  EXPECT_EQ(*source->Token(), "first");

  // Rotated: not looked at again until the stat interval has passed.
  dir_.Write("token", "second\n");
  EXPECT_EQ(*source->Token(), "first");
  clock.Advance(absl::Seconds(5));
  EXPECT_EQ(*source->Token(), "second");

  // A 401 (Invalidate) re-reads at once.
  dir_.Write("token", "third!\n");
  source->Invalidate();
  EXPECT_EQ(*source->Token(), "third!");

  // A rewrite that keeps inode, size and mtime is still picked up once the copy is a
  // minute old.
  struct stat before;
  ASSERT_EQ(stat(path.c_str(), &before), 0);
  dir_.Write("token", "fourth\n");
  timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  clock.Advance(absl::Seconds(10));
  EXPECT_EQ(*source->Token(), "third!");
  clock.Advance(absl::Minutes(1));
  EXPECT_EQ(*source->Token(), "fourth");

  // Gone: the last good token is kept (with a warning)...
  ASSERT_EQ(unlink(path.c_str()), 0);
  clock.Advance(absl::Minutes(2));
  EXPECT_EQ(*source->Token(), "fourth");
  EXPECT_THAT(logs_.text(), HasSubstr("keeping the token read at"));
  // ...unless the server rejected it.
  source->Invalidate();
  absl::StatusOr<std::string> token = source->Token();
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(token.status().message()),
            absl::StrCat("token file ", path, ": No such file or directory"));

  dir_.Write("token", "  \n");
  token = source->Token();
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(std::string(token.status().message()), absl::StrCat("token file ", path, ": empty"));
  dir_.Write("token", "fifth");
  EXPECT_EQ(*source->Token(), "fifth");
}

// ---------------------------------------------------------------------------
// In-cluster.

class InClusterTest : public RestConfigTest {
 protected:
  void SetUp() override {
    root_ = dir_.Path("sa");
    dir_.Write("sa/token", absl::StrCat(kToken, "\n"));
    dir_.Write("sa/ca.crt", Ca().cert_pem);
    dir_.Write("sa/namespace", "capstan-system");
  }
  std::string root_;
};

TEST_F(InClusterTest, ReadsServiceAccountFiles) {
  ScopedEnv host("KUBERNETES_SERVICE_HOST", "10.96.0.1");
  ScopedEnv port("KUBERNETES_SERVICE_PORT", "443");
  FakeClock clock;
  absl::StatusOr<RestConfig> rc = InClusterConfig(root_, clock);
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(rc->server, "https://10.96.0.1:443");
  EXPECT_EQ(rc->ca_pem, Ca().cert_pem);
  EXPECT_EQ(rc->namespace_, "capstan-system");
  EXPECT_EQ(rc->source, "in-cluster service account");
  EXPECT_EQ(TokenOf(*rc), kToken);

  // The kubelet rotates the projected token.
  dir_.Write("sa/token", "rotated-token\n");
  EXPECT_EQ(TokenOf(*rc), kToken);
  clock.Advance(absl::Minutes(1));
  EXPECT_EQ(TokenOf(*rc), "rotated-token");
  dir_.Write("sa/token", "rotated-again");
  rc->token_source->Invalidate();
  EXPECT_EQ(TokenOf(*rc), "rotated-again");
}

TEST_F(InClusterTest, HostAndNamespaceVariants) {
  struct Case {
    std::string name;
    std::string host;
    std::optional<std::string> pod_namespace;
    bool remove_namespace_file;
    std::string want_server;
    std::string want_namespace;
  };
  const std::vector<Case> cases = {
      {"IPv6 gets brackets", "fd00:10:96::1", std::nullopt, false, "https://[fd00:10:96::1]:6443",
       "capstan-system"},
      {"bracketed IPv6 kept", "[fd00::1]", std::nullopt, false, "https://[fd00::1]:6443",
       "capstan-system"},
      {"POD_NAMESPACE wins", "kubernetes.default.svc", "from-env", false,
       "https://kubernetes.default.svc:6443", "from-env"},
      {"no namespace file", "10.0.0.1", std::nullopt, true, "https://10.0.0.1:6443", ""},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    ScopedEnv host("KUBERNETES_SERVICE_HOST", tc.host);
    ScopedEnv port("KUBERNETES_SERVICE_PORT", "6443");
    ScopedEnv ns("POD_NAMESPACE", tc.pod_namespace);
    if (tc.remove_namespace_file) unlink(dir_.Path("sa/namespace").c_str());
    absl::StatusOr<RestConfig> rc = InClusterConfig(root_);
    ASSERT_TRUE(rc.ok()) << rc.status();
    EXPECT_EQ(rc->server, tc.want_server);
    EXPECT_EQ(rc->namespace_, tc.want_namespace);
  }
}

TEST_F(InClusterTest, ClearErrors) {
  struct Case {
    std::string name;
    std::optional<std::string> host;
    std::optional<std::string> port;
    std::string remove;                    // a file under root_ to delete
    std::optional<std::string> overwrite;  // new content for ca.crt
    absl::StatusCode code;
    std::string want;  // $ROOT is root_
  };
  const std::vector<Case> cases = {
      {"no host", std::nullopt, "443", "", std::nullopt, absl::StatusCode::kFailedPrecondition,
       "in-cluster config: KUBERNETES_SERVICE_HOST is not set (not running in a pod?)"},
      {"no port", "10.0.0.1", std::nullopt, "", std::nullopt, absl::StatusCode::kFailedPrecondition,
       "in-cluster config: KUBERNETES_SERVICE_PORT is not set (not running in a pod?)"},
      {"bad port", "10.0.0.1", "https", "", std::nullopt, absl::StatusCode::kInvalidArgument,
       "in-cluster config: KUBERNETES_SERVICE_PORT \"https\" is not a port number"},
      {"no token", "10.0.0.1", "443", "token", std::nullopt, absl::StatusCode::kNotFound,
       "in-cluster config: service account token $ROOT/token: No such file or directory"},
      {"no CA", "10.0.0.1", "443", "ca.crt", std::nullopt, absl::StatusCode::kNotFound,
       "in-cluster config: service account CA $ROOT/ca.crt: No such file or directory"},
      {"CA not PEM", "10.0.0.1", "443", "", kToken, absl::StatusCode::kInvalidArgument,
       "in-cluster config: service account CA $ROOT/ca.crt: no PEM certificate found"},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    SetUp();  // fresh files
    ScopedEnv host("KUBERNETES_SERVICE_HOST", tc.host);
    ScopedEnv port("KUBERNETES_SERVICE_PORT", tc.port);
    if (!tc.remove.empty()) unlink(dir_.Path("sa/" + tc.remove).c_str());
    if (tc.overwrite.has_value()) dir_.Write("sa/ca.crt", *tc.overwrite);
    absl::StatusOr<RestConfig> rc = InClusterConfig(root_);
    ASSERT_FALSE(rc.ok());
    EXPECT_EQ(rc.status().code(), tc.code) << rc.status();
    EXPECT_EQ(std::string(rc.status().message()), absl::StrReplaceAll(tc.want, {{"$ROOT", root_}}))
        << rc.status();
    EXPECT_THAT(std::string(rc.status().message()), Not(HasSubstr(kToken)));
  }
}

// ---------------------------------------------------------------------------
// LoadRestConfig's choice.

TEST_F(RestConfigTest, LoadRestConfigPrefersExplicitThenInClusterThenKubeconfig) {
  const std::string path = Write("config", kTwoContexts);
  ScopedEnv kubeconfig("KUBECONFIG", path);

  // Not in a pod: $KUBECONFIG.
  absl::StatusOr<RestConfig> rc = LoadRestConfig({});
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(rc->source, absl::StrCat("kubeconfig ", path, " context dev"));

  ScopedEnv host("KUBERNETES_SERVICE_HOST", "10.96.0.1");
  ScopedEnv port("KUBERNETES_SERVICE_PORT", "443");
  // An explicit path or context wins over the pod's service account.
  rc = LoadRestConfig(Options(path));
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(rc->server, "https://dev.example:6443");
  rc = LoadRestConfig(Options("", "prod"));
  ASSERT_TRUE(rc.ok()) << rc.status();
  EXPECT_EQ(rc->server, "https://prod.example:443");

  // Otherwise in-cluster, even with $KUBECONFIG set. (This machine has no service
  // account, so it fails naming the default files; in a pod it succeeds.)
  rc = LoadRestConfig({});
  if (rc.ok()) {
    EXPECT_EQ(rc->source, "in-cluster service account");
  } else {
    EXPECT_THAT(std::string(rc.status().message()),
                HasSubstr("in-cluster config: service account token "
                          "/var/run/secrets/kubernetes.io/serviceaccount/token"));
  }
}

}  // namespace
}  // namespace capstan::kube
