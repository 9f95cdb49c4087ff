// Kubeconfig and in-cluster configuration. yaml-cpp throws; every call into it
// happens below LoadKubeconfig's try block, so no exception leaves this file.
//
// Messages name the file and the field ("kubeconfig /x/config: users[0].user.tokenFile:
// ..."); they never contain token or key material, and neither do the logs.

#include "capstan/kube/rest_config.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "capstan/common/status_macros.h"
#include "capstan/kube/exec_credential.h"
#include "capstan/kube/yaml_limits.h"
#include "config_io.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"
#include "yaml-cpp/yaml.h"

namespace capstan::kube {
namespace {

constexpr char kDefaultInClusterRoot[] = "/var/run/secrets/kubernetes.io/serviceaccount";
constexpr char kExecExtensionName[] = "client.authentication.k8s.io/exec";
constexpr size_t kMaxNamesInMessage = 10;

std::string Quote(absl::string_view s) { return absl::StrCat("\"", s, "\""); }

// ---------------------------------------------------------------------------
// Errors that name the file and the field.

// A place in one kubeconfig file: "kubeconfig /x/config: users[0].user.token".
class Field {
 public:
  Field(std::string file, std::string path) : file_(std::move(file)), path_(std::move(path)) {}

  Field operator/(absl::string_view key) const {
    return Field(file_, path_.empty() ? std::string(key) : absl::StrCat(path_, ".", key));
  }
  Field operator[](size_t index) const {
    return Field(file_, absl::StrCat(path_, "[", index, "]"));
  }
  const std::string& path() const { return path_; }

  absl::Status Error(absl::StatusCode code, absl::string_view what) const {
    return absl::Status(code, absl::StrCat("kubeconfig ", file_, ": ",
                                           path_.empty() ? "" : absl::StrCat(path_, ": "), what));
  }
  absl::Status Invalid(absl::string_view what) const {
    return Error(absl::StatusCode::kInvalidArgument, what);
  }
  // Keeps the cause's code (NotFound for a missing certificate file, ...).
  absl::Status Wrap(const absl::Status& cause) const {
    return Error(cause.code(), cause.message());
  }

 private:
  std::string file_;
  std::string path_;
};

// ---------------------------------------------------------------------------
// Typed access to YAML values. Missing and null read as empty.

bool Absent(const YAML::Node& node) { return !node.IsDefined() || node.IsNull(); }

// `map[key]`, or an undefined node when `map` is absent or not a mapping (the
// caller has checked the shape of every mapping it indexes).
YAML::Node Child(const YAML::Node& map, const char* key) {
  if (!map.IsDefined() || !map.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  const YAML::Node& const_map = map;
  return const_map[key];
}

absl::StatusOr<std::string> String(const YAML::Node& map, const char* key, const Field& parent) {
  YAML::Node value = Child(map, key);
  if (Absent(value)) return std::string();
  if (!value.IsScalar()) return (parent / key).Invalid("not a string");
  return value.Scalar();
}

absl::StatusOr<bool> Bool(const YAML::Node& map, const char* key, const Field& parent) {
  YAML::Node value = Child(map, key);
  if (Absent(value)) return false;
  bool b = false;
  if (!value.IsScalar() || !YAML::convert<bool>::decode(value, b)) {
    return (parent / key).Invalid("not a boolean");
  }
  return b;
}

absl::StatusOr<std::vector<std::string>> StringList(const YAML::Node& map, const char* key,
                                                    const Field& parent) {
  YAML::Node value = Child(map, key);
  std::vector<std::string> out;
  if (Absent(value)) return out;
  if (!value.IsSequence()) return (parent / key).Invalid("not a list");
  for (size_t i = 0; i < value.size(); ++i) {
    const YAML::Node item = value[i];
    if (Absent(item)) {
      out.emplace_back();
    } else if (item.IsScalar()) {
      out.push_back(item.Scalar());
    } else {
      return (parent / key)[i].Invalid("not a string");
    }
  }
  return out;
}

// A "-data" field: base64 in the file, bytes (PEM) in memory.
absl::StatusOr<std::string> Base64(const YAML::Node& map, const char* key, const Field& parent) {
  ASSIGN_OR_RETURN(std::string encoded, String(map, key, parent));
  std::string decoded;
  if (!encoded.empty() && (!absl::Base64Unescape(encoded, &decoded) || decoded.empty())) {
    return (parent / key).Invalid("not valid base64");
  }
  return decoded;
}

// For KUBERNETES_EXEC_INFO's cluster.config: YAML has no types, so plain scalars
// that read as null, booleans or numbers become those; quoted ones stay strings.
nlohmann::json YamlToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      nlohmann::json object = nlohmann::json::object();
      for (auto it = node.begin(); it != node.end(); ++it) {
        object[it->first.IsScalar() ? it->first.Scalar() : YAML::Dump(it->first)] =
            YamlToJson(it->second);
      }
      return object;
    }
    case YAML::NodeType::Sequence: {
      nlohmann::json array = nlohmann::json::array();
      for (const YAML::Node& item : node) array.push_back(YamlToJson(item));
      return array;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      if (node.Tag() == "!") return s;  // quoted
      if (s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
      if (s == "true" || s == "True" || s == "TRUE") return true;
      if (s == "false" || s == "False" || s == "FALSE") return false;
      int64_t i;
      if (absl::SimpleAtoi(s, &i)) return i;
      double d;
      if (!s.empty() && (absl::ascii_isdigit(s[0]) || s[0] == '-' || s[0] == '.') &&
          absl::SimpleAtod(s, &d)) {
        return d;
      }
      return s;
    }
    default:
      return nullptr;
  }
}

// ---------------------------------------------------------------------------
// PEM checks, so a bad certificate is reported here, with its field, rather than as
// an obscure TLS failure on the first request.

int NoPassword(char*, int, int, void*) { return 0; }  // never prompt on a terminal

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

BioPtr MemBio(absl::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

// OK when `pem` holds at least one certificate.
absl::Status CheckCertificates(absl::string_view pem) {
  BioPtr bio = MemBio(pem);
  int count = 0;
  while (X509Ptr cert{PEM_read_bio_X509(bio.get(), nullptr, NoPassword, nullptr)}) ++count;
  ERR_clear_error();
  if (count == 0) return absl::InvalidArgumentError("no PEM certificate found");
  return absl::OkStatus();
}

// Names "cert" or "key" in its message so the caller can point at the field.
struct PairError {
  enum Which { kCert, kKey, kBoth } which;
  std::string what;
};

std::optional<PairError> CheckClientPair(absl::string_view cert_pem, absl::string_view key_pem) {
  BioPtr cert_bio = MemBio(cert_pem);
  X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, NoPassword, nullptr));
  BioPtr key_bio = MemBio(key_pem);
  PkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, NoPassword, nullptr));
  ERR_clear_error();
  if (cert == nullptr) return PairError{PairError::kCert, "no PEM certificate found"};
  if (key == nullptr) {
    return PairError{PairError::kKey,
                     "no PEM private key found (encrypted keys are not supported)"};
  }
  int match = X509_check_private_key(cert.get(), key.get());
  ERR_clear_error();
  if (match != 1) return PairError{PairError::kBoth, "client certificate and key do not match"};
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Reading and merging kubeconfig files.

// A cluster, user or context as first defined across the merged files.
struct Entry {
  YAML::Node body;   // the `cluster:` / `user:` / `context:` mapping; may be absent
  std::string file;  // the kubeconfig that defined it, as given
  std::string dir;   // that file's absolute directory, for relative paths
  std::string path;  // "users[2].user"

  Field field() const { return Field(file, path); }
};

struct Kubeconfig {
  std::vector<std::string> files;  // read, in order
  std::string current_context;
  absl::flat_hash_map<std::string, Entry> clusters;
  absl::flat_hash_map<std::string, Entry> users;
  absl::flat_hash_map<std::string, Entry> contexts;
  std::vector<std::string> context_names;  // in definition order, for messages
};

std::string AbsoluteDir(const std::string& file) {
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(file, ec);
  if (ec) abs = file;
  return abs.lexically_normal().parent_path().string();
}

// kubectl resolves relative paths against the directory of the file that names them.
std::string ResolvePath(const std::string& dir, const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  return (std::filesystem::path(dir) / path).lexically_normal().string();
}

absl::Status MergeSection(const YAML::Node& root, const char* section, const char* body_key,
                          const std::string& file, const std::string& dir,
                          absl::flat_hash_map<std::string, Entry>* merged,
                          std::vector<std::string>* names_in_order) {
  const Field list_field(file, section);
  YAML::Node list = Child(root, section);
  if (Absent(list)) return absl::OkStatus();
  if (!list.IsSequence()) return list_field.Invalid("not a list");
  absl::flat_hash_map<std::string, size_t> seen;  // in this file
  for (size_t i = 0; i < list.size(); ++i) {
    const Field item_field = list_field[i];
    const YAML::Node item = list[i];
    if (!item.IsMap()) return item_field.Invalid("not a mapping");
    ASSIGN_OR_RETURN(std::string name, String(item, "name", item_field));
    if (name.empty()) return (item_field / "name").Invalid("missing");
    if (auto [it, inserted] = seen.emplace(name, i); !inserted) {
      // kubectl refuses a file that defines a name twice, and so do we.
      return (item_field / "name")
          .Invalid(
              absl::StrCat(Quote(name), " is also defined at ", section, "[", it->second, "]"));
    }
    YAML::Node body = Child(item, body_key);
    if (!Absent(body) && !body.IsMap()) return (item_field / body_key).Invalid("not a mapping");
    if (merged->contains(name)) continue;  // an earlier file wins
    merged->emplace(name, Entry{body, file, dir, (item_field / body_key).path()});
    if (names_in_order != nullptr) names_in_order->push_back(name);
  }
  return absl::OkStatus();
}

absl::Status MergeFile(const std::string& file, const std::string& content, Kubeconfig* config) {
  const Field top(file, "");
  YAML::Node root;
  try {
    root = YAML::Load(content);
  } catch (const YAML::ParserException& e) {
    // e.msg describes the syntax ("illegal map value"); it does not quote the input.
    return top.Invalid(absl::StrCat("invalid YAML at line ", e.mark.line + 1, ", column ",
                                    e.mark.column + 1, ": ", e.msg));
  }
  // yaml-cpp's tree shares aliased nodes, but the readers below walk them (and copy
  // exec extensions into JSON) once per alias: bound depth and alias expansion first.
  if (absl::Status s = CheckYamlLimits(content); !s.ok()) return top.Invalid(s.message());
  config->files.push_back(file);
  if (Absent(root)) return absl::OkStatus();  // an empty file is an empty config
  if (!root.IsMap()) return top.Invalid("not a YAML mapping");

  const std::string dir = AbsoluteDir(file);
  ASSIGN_OR_RETURN(std::string current, String(root, "current-context", top));
  if (config->current_context.empty()) config->current_context = current;
  RETURN_IF_ERROR(MergeSection(root, "clusters", "cluster", file, dir, &config->clusters, nullptr));
  RETURN_IF_ERROR(MergeSection(root, "users", "user", file, dir, &config->users, nullptr));
  RETURN_IF_ERROR(MergeSection(root, "contexts", "context", file, dir, &config->contexts,
                               &config->context_names));
  return absl::OkStatus();
}

std::string HomeDir() {
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') return home;
  passwd pw;
  passwd* result = nullptr;
  char buf[4096];
  if (getpwuid_r(getuid(), &pw, buf, sizeof(buf), &result) == 0 && result != nullptr &&
      result->pw_dir != nullptr) {
    return result->pw_dir;
  }
  return "";
}

// The files to read, like kubectl: --kubeconfig, else $KUBECONFIG (missing entries
// skipped), else ~/.kube/config.
absl::StatusOr<Kubeconfig> ReadKubeconfigs(const KubeconfigOptions& options) {
  enum class Origin { kExplicit, kEnv, kHome };
  Origin origin;
  std::vector<std::string> candidates;
  if (!options.path.empty()) {
    origin = Origin::kExplicit;
    candidates.push_back(options.path);
  } else if (const char* env = std::getenv("KUBECONFIG"); env != nullptr && *env != '\0') {
    origin = Origin::kEnv;
    absl::flat_hash_set<std::string> seen;
    for (absl::string_view part : absl::StrSplit(env, ':', absl::SkipEmpty())) {
      if (seen.emplace(part).second) candidates.emplace_back(part);
    }
  } else {
    origin = Origin::kHome;
    std::string home = HomeDir();
    if (home.empty()) {
      return absl::NotFoundError(
          "no kubeconfig found: $KUBECONFIG is not set and the home directory is unknown");
    }
    candidates.push_back(absl::StrCat(home, "/.kube/config"));
  }

  Kubeconfig config;
  for (const std::string& file : candidates) {
    absl::StatusOr<std::string> content = internal::ReadFileToString(file);
    if (!content.ok()) {
      // kubectl skips $KUBECONFIG entries that do not exist.
      if (origin != Origin::kExplicit && absl::IsNotFound(content.status())) continue;
      return absl::Status(content.status().code(),
                          absl::StrCat("kubeconfig ", content.status().message()));
    }
    RETURN_IF_ERROR(MergeFile(file, *content, &config));
  }
  if (config.files.empty()) {
    if (origin == Origin::kHome) {
      return absl::NotFoundError(absl::StrCat("no kubeconfig found: $KUBECONFIG is not set and ",
                                              candidates[0], " does not exist"));
    }
    return absl::NotFoundError(
        absl::StrCat("no kubeconfig found: no file in $KUBECONFIG exists (tried ",
                     candidates.empty() ? "none" : absl::StrJoin(candidates, ", "), ")"));
  }
  return config;
}

// ---------------------------------------------------------------------------
// From the selected context to a RestConfig.

absl::StatusOr<std::string> ReadReferencedFile(const Field& field, const std::string& path) {
  absl::StatusOr<std::string> content = internal::ReadFileToString(path);
  if (!content.ok()) return field.Wrap(content.status());
  return content;
}

// Fills server/CA/TLS fields; `exec_cluster` gets what provideClusterInfo passes on.
absl::Status ApplyCluster(const Entry& entry, RestConfig* rc, ExecClusterInfo* exec_cluster) {
  const Field f = entry.field();
  if (Absent(entry.body)) return f.Invalid("missing");
  const YAML::Node& c = entry.body;

  ASSIGN_OR_RETURN(std::string server, String(c, "server", f));
  if (server.empty()) return (f / "server").Invalid("missing");
  if (!absl::StrContains(server, "://")) server = absl::StrCat("https://", server);
  if (!absl::StartsWith(server, "https://") && !absl::StartsWith(server, "http://")) {
    return (f / "server").Invalid("must be an https:// (or http://) URL");
  }
  while (absl::EndsWith(server, "/")) server.pop_back();
  rc->server = server;

  ASSIGN_OR_RETURN(rc->tls_server_name, String(c, "tls-server-name", f));
  ASSIGN_OR_RETURN(rc->insecure_skip_tls_verify, Bool(c, "insecure-skip-tls-verify", f));
  ASSIGN_OR_RETURN(std::string ca_file, String(c, "certificate-authority", f));
  ASSIGN_OR_RETURN(std::string ca_data, Base64(c, "certificate-authority-data", f));
  ASSIGN_OR_RETURN(std::string proxy_url, String(c, "proxy-url", f));
  if (!proxy_url.empty()) {
    return (f / "proxy-url")
        .Error(absl::StatusCode::kUnimplemented, "not supported; reach the server directly");
  }
  if (rc->insecure_skip_tls_verify && (!ca_file.empty() || !ca_data.empty())) {
    // kubectl refuses this too: which one was meant?
    return f.Invalid(
        "insecure-skip-tls-verify cannot be combined with certificate-authority or "
        "certificate-authority-data");
  }
  if (!ca_data.empty()) {
    // As in kubectl, the inline data wins over the file.
    if (absl::Status s = CheckCertificates(ca_data); !s.ok()) {
      return (f / "certificate-authority-data").Invalid(s.message());
    }
    rc->ca_pem = std::move(ca_data);
  } else if (!ca_file.empty()) {
    const std::string path = ResolvePath(entry.dir, ca_file);
    const Field ff = f / "certificate-authority";
    ASSIGN_OR_RETURN(rc->ca_pem, ReadReferencedFile(ff, path));
    if (absl::Status s = CheckCertificates(rc->ca_pem); !s.ok()) {
      return ff.Invalid(absl::StrCat(path, ": ", s.message()));
    }
  }

  exec_cluster->server = rc->server;
  exec_cluster->tls_server_name = rc->tls_server_name;
  exec_cluster->insecure_skip_tls_verify = rc->insecure_skip_tls_verify;
  exec_cluster->ca_pem = rc->ca_pem;
  YAML::Node extensions = Child(c, "extensions");
  if (!Absent(extensions) && extensions.IsSequence()) {
    for (const YAML::Node& ext : extensions) {
      if (ext.IsMap() && Child(ext, "name").IsScalar() &&
          Child(ext, "name").Scalar() == kExecExtensionName) {
        exec_cluster->config_json =
            YamlToJson(Child(ext, "extension"))
                .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      }
    }
  }
  return absl::OkStatus();
}

// A certificate or key from "<name>" (a file) or "<name>-data" (base64), not both.
absl::StatusOr<std::string> FileOrData(const Entry& entry, const char* name, std::string* from) {
  const Field f = entry.field();
  const std::string data_key = absl::StrCat(name, "-data");
  ASSIGN_OR_RETURN(std::string file, String(entry.body, name, f));
  ASSIGN_OR_RETURN(std::string data, Base64(entry.body, data_key.c_str(), f));
  if (!file.empty() && !data.empty()) {
    return f.Invalid(absl::StrCat(name, " and ", data_key, " are both set; keep one"));
  }
  if (!data.empty()) {
    *from = (f / data_key).path();
    return data;
  }
  if (file.empty()) return std::string();
  *from = (f / name).path();
  return ReadReferencedFile(f / name, ResolvePath(entry.dir, file));
}

absl::StatusOr<ExecPluginConfig> ParseExec(const Entry& entry, const YAML::Node& exec,
                                           const ExecClusterInfo& cluster,
                                           const KubeconfigOptions& options) {
  const Field f = entry.field() / "exec";
  if (!exec.IsMap()) return f.Invalid("not a mapping");
  ExecPluginConfig config;
  config.timeout = options.exec_timeout;

  ASSIGN_OR_RETURN(config.api_version, String(exec, "apiVersion", f));
  if (config.api_version.empty()) {
    return (f / "apiVersion").Invalid(absl::StrCat("missing; use ", kExecApiV1));
  }
  if (config.api_version != kExecApiV1 && config.api_version != kExecApiV1beta1) {
    return (f / "apiVersion")
        .Invalid(absl::StrCat(Quote(config.api_version), " is not supported; use ", kExecApiV1,
                              " or ", kExecApiV1beta1));
  }
  ASSIGN_OR_RETURN(std::string command, String(exec, "command", f));
  if (command.empty()) return (f / "command").Invalid("missing");
  // Like kubectl: a bare name is looked up in $PATH, a path is relative to the file.
  config.command = absl::StrContains(command, '/') ? ResolvePath(entry.dir, command) : command;
  ASSIGN_OR_RETURN(config.args, StringList(exec, "args", f));
  ASSIGN_OR_RETURN(config.install_hint, String(exec, "installHint", f));

  YAML::Node env = Child(exec, "env");
  if (!Absent(env)) {
    if (!env.IsSequence()) return (f / "env").Invalid("not a list");
    for (size_t i = 0; i < env.size(); ++i) {
      const Field ef = (f / "env")[i];
      const YAML::Node item = env[i];
      if (!item.IsMap()) return ef.Invalid("not a mapping");
      ASSIGN_OR_RETURN(std::string name, String(item, "name", ef));
      ASSIGN_OR_RETURN(std::string value, String(item, "value", ef));
      if (name.empty() || absl::StrContains(name, '=')) {
        return (ef / "name").Invalid(name.empty() ? "missing" : "contains '='");
      }
      config.env.emplace_back(std::move(name), std::move(value));
    }
  }

  // Capstan never has a terminal: Never and IfAvailable both mean "not interactive".
  ASSIGN_OR_RETURN(std::string interactive, String(exec, "interactiveMode", f));
  if (interactive == "Always") {
    return (f / "interactiveMode")
        .Invalid("Always needs a terminal, and capstan runs without one; use Never");
  }
  if (!interactive.empty() && interactive != "Never" && interactive != "IfAvailable") {
    return (f / "interactiveMode").Invalid("must be Never, IfAvailable or Always");
  }
  ASSIGN_OR_RETURN(bool provide_cluster, Bool(exec, "provideClusterInfo", f));
  config.exec_info = ExecInfoJson(config.api_version, provide_cluster ? &cluster : nullptr);
  return config;
}

absl::Status ApplyUser(const Entry& entry, const ExecClusterInfo& cluster,
                       const KubeconfigOptions& options, const Clock& clock, RestConfig* rc) {
  const Field f = entry.field();
  if (Absent(entry.body)) return absl::OkStatus();  // `user: {}`-like: anonymous
  const YAML::Node& u = entry.body;

  // Silently ignoring these would talk to the server as someone else than meant.
  for (const char* key : {"as", "as-uid", "as-groups", "as-user-extra"}) {
    if (!Absent(Child(u, key))) {
      return (f / key).Error(absl::StatusCode::kUnimplemented, "impersonation is not supported");
    }
  }
  for (const char* key : {"username", "password"}) {
    if (!Absent(Child(u, key))) {
      return (f / key).Error(absl::StatusCode::kUnimplemented,
                             "basic authentication is not supported");
    }
  }
  if (!Absent(Child(u, "auth-provider"))) {
    return (f / "auth-provider")
        .Error(absl::StatusCode::kUnimplemented,
               "legacy auth providers are not supported; use an exec plugin (kubelogin, "
               "gke-gcloud-auth-plugin, ...)");
  }

  std::string cert_from, key_from;
  ASSIGN_OR_RETURN(std::string cert, FileOrData(entry, "client-certificate", &cert_from));
  ASSIGN_OR_RETURN(std::string key, FileOrData(entry, "client-key", &key_from));
  if (cert.empty() != key.empty()) {
    return f.Invalid(cert.empty() ? "client-key is set without client-certificate"
                                  : "client-certificate is set without client-key");
  }
  if (!cert.empty()) {
    if (std::optional<PairError> e = CheckClientPair(cert, key)) {
      Field at(entry.file, e->which == PairError::kCert  ? cert_from
                           : e->which == PairError::kKey ? key_from
                                                         : f.path());
      return at.Invalid(e->what);
    }
    rc->client_cert_pem = std::move(cert);
    rc->client_key_pem = std::move(key);
  }

  ASSIGN_OR_RETURN(std::string token, String(u, "token", f));
  ASSIGN_OR_RETURN(std::string token_file, String(u, "tokenFile", f));
  if (!token_file.empty()) {
    // client-go: the file's (periodically re-read) value takes precedence over `token`.
    const Field tf = f / "tokenFile";
    const std::string path = ResolvePath(entry.dir, token_file);
    ASSIGN_OR_RETURN(std::string content, ReadReferencedFile(tf, path));
    if (absl::StripAsciiWhitespace(content).empty()) {
      return tf.Invalid(absl::StrCat(path, ": empty"));
    }
    rc->token_source = NewFileTokenSource(path, clock);
    // Prime the cache, so the first request does not wait on the disk.
    if (absl::StatusOr<std::string> t = rc->token_source->Token(); !t.ok()) {
      return tf.Wrap(t.status());
    }
  } else if (!token.empty()) {
    rc->token_source = NewStaticTokenSource(std::move(token));
  }

  YAML::Node exec = Child(u, "exec");
  if (Absent(exec)) return absl::OkStatus();
  if (rc->token_source != nullptr || !rc->client_cert_pem.empty()) {
    // kubectl does not run the plugin when the user already has a token or certificate.
    spdlog::debug("kubeconfig {}: {}.exec is not used: the user has a token or certificate",
                  entry.file, f.path());
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(ExecPluginConfig config, ParseExec(entry, exec, cluster, options));
  auto source = std::make_shared<ExecTokenSource>(std::move(config), clock);
  // Run it now: a broken plugin fails the load, and a certificate it returns must be in
  // the RestConfig before the transport is built (it is not refreshed later; see
  // exec_credential.h).
  absl::StatusOr<ExecCredential> cred = source->Credential();
  if (!cred.ok()) return (f / "exec").Wrap(cred.status());
  if (!cred->client_certificate_pem.empty()) {
    if (std::optional<PairError> e =
            CheckClientPair(cred->client_certificate_pem, cred->client_key_pem)) {
      return (f / "exec")
          .Invalid(absl::StrCat("the plugin's ",
                                e->which == PairError::kCert ? "status.clientCertificateData"
                                : e->which == PairError::kKey
                                    ? "status.clientKeyData"
                                    : "status.clientCertificateData/clientKeyData",
                                ": ", e->what));
    }
    rc->client_cert_pem = cred->client_certificate_pem;
    rc->client_key_pem = cred->client_key_pem;
  }
  if (!cred->token.empty()) rc->token_source = std::move(source);
  return absl::OkStatus();
}

std::string NameList(const std::vector<std::string>& names) {
  if (names.empty()) return "none are defined";
  std::vector<std::string> quoted;
  for (size_t i = 0; i < names.size() && i < kMaxNamesInMessage; ++i) {
    quoted.push_back(Quote(names[i]));
  }
  if (names.size() > kMaxNamesInMessage) quoted.push_back("...");
  return absl::StrCat("defined: ", absl::StrJoin(quoted, ", "));
}

absl::StatusOr<RestConfig> Resolve(const Kubeconfig& config, const KubeconfigOptions& options,
                                   const Clock& clock) {
  const Field all(absl::StrJoin(config.files, ":"), "");
  const std::string context_name =
      options.context.empty() ? config.current_context : options.context;
  if (context_name.empty()) {
    return all.Invalid("current-context is not set and no context was given");
  }
  auto ctx_it = config.contexts.find(context_name);
  if (ctx_it == config.contexts.end()) {
    return all.Error(
        absl::StatusCode::kNotFound,
        absl::StrCat(options.context.empty() ? "current-context " : "context ", Quote(context_name),
                     " is not defined (", NameList(config.context_names), ")"));
  }
  const Entry& ctx = ctx_it->second;
  const Field cf = ctx.field();
  const Field in_file(ctx.file, "");
  if (Absent(ctx.body)) return cf.Invalid("missing");
  ASSIGN_OR_RETURN(std::string cluster_name, String(ctx.body, "cluster", cf));
  ASSIGN_OR_RETURN(std::string user_name, String(ctx.body, "user", cf));
  RestConfig rc;
  ASSIGN_OR_RETURN(rc.namespace_, String(ctx.body, "namespace", cf));
  if (cluster_name.empty()) return (cf / "cluster").Invalid("missing");

  auto cluster_it = config.clusters.find(cluster_name);
  if (cluster_it == config.clusters.end()) {
    return in_file.Invalid(absl::StrCat("context ", Quote(context_name), " names cluster ",
                                        Quote(cluster_name), ", which is not defined"));
  }
  const Entry* user = nullptr;
  if (!user_name.empty()) {
    auto user_it = config.users.find(user_name);
    if (user_it == config.users.end()) {
      return in_file.Invalid(absl::StrCat("context ", Quote(context_name), " names user ",
                                          Quote(user_name), ", which is not defined"));
    }
    user = &user_it->second;
  }

  rc.source = absl::StrCat("kubeconfig ", ctx.file, " context ", context_name);
  ExecClusterInfo exec_cluster;
  RETURN_IF_ERROR(ApplyCluster(cluster_it->second, &rc, &exec_cluster));
  if (user != nullptr) RETURN_IF_ERROR(ApplyUser(*user, exec_cluster, options, clock, &rc));
  if (rc.insecure_skip_tls_verify) {
    spdlog::warn("{}: insecure-skip-tls-verify is set; the certificate of {} is not verified",
                 rc.source, rc.server);
  }
  return rc;
}

// The service-account file `name` under `root`, trimmed.
absl::StatusOr<std::string> ReadServiceAccountFile(absl::string_view root, const char* name,
                                                   const char* what) {
  const std::string path = absl::StrCat(root, "/", name);
  absl::StatusOr<std::string> content = internal::ReadFileToString(path);
  if (!content.ok()) {
    return absl::Status(content.status().code(),
                        absl::StrCat("in-cluster config: ", what, " ", content.status().message()));
  }
  if (absl::StripAsciiWhitespace(*content).empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("in-cluster config: ", what, " ", path, ": empty"));
  }
  return content;
}

}  // namespace

absl::StatusOr<RestConfig> LoadKubeconfig(const KubeconfigOptions& options, const Clock& clock) {
  try {
    ASSIGN_OR_RETURN(Kubeconfig config, ReadKubeconfigs(options));
    return Resolve(config, options, clock);
  } catch (const std::exception& e) {
    // Not expected (values are checked before they are converted); yaml-cpp messages
    // name a position, not the content.
    return absl::InternalError(absl::StrCat("kubeconfig: ", e.what()));
  }
}

absl::StatusOr<RestConfig> InClusterConfig(absl::string_view root, const Clock& clock) {
  const char* host_env = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port_env = std::getenv("KUBERNETES_SERVICE_PORT");
  std::string host = host_env == nullptr ? "" : host_env;
  const std::string port = port_env == nullptr ? "" : port_env;
  if (host.empty() || port.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "in-cluster config: ", host.empty() ? "KUBERNETES_SERVICE_HOST" : "KUBERNETES_SERVICE_PORT",
        " is not set (not running in a pod?)"));
  }
  int port_number = 0;
  if (!absl::SimpleAtoi(port, &port_number) || port_number <= 0 || port_number > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("in-cluster config: KUBERNETES_SERVICE_PORT ",
                                                   Quote(port), " is not a port number"));
  }
  if (absl::StrContains(host, ':') && !absl::StartsWith(host, "[")) {
    host = absl::StrCat("[", host, "]");  // IPv6
  }

  RestConfig rc;
  rc.server = absl::StrCat("https://", host, ":", port_number);
  rc.source = "in-cluster service account";
  RETURN_IF_ERROR(ReadServiceAccountFile(root, "token", "service account token").status());
  ASSIGN_OR_RETURN(rc.ca_pem, ReadServiceAccountFile(root, "ca.crt", "service account CA"));
  if (absl::Status s = CheckCertificates(rc.ca_pem); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("in-cluster config: service account CA ", root, "/ca.crt: ", s.message()));
  }
  if (const char* ns = std::getenv("POD_NAMESPACE"); ns != nullptr && *ns != '\0') {
    rc.namespace_ = ns;
  } else if (absl::StatusOr<std::string> ns_file =
                 internal::ReadFileToString(absl::StrCat(root, "/namespace"));
             ns_file.ok()) {
    rc.namespace_ = std::string(absl::StripAsciiWhitespace(*ns_file));
  } else {
    spdlog::debug("in-cluster config: namespace unknown: {}",
                  std::string(ns_file.status().message()));
  }

  // The kubelet rewrites a projected token well before it expires; the file source
  // picks the new one up (stat every few seconds, re-read at least every minute).
  rc.token_source = NewFileTokenSource(absl::StrCat(root, "/token"), clock);
  if (absl::StatusOr<std::string> t = rc.token_source->Token(); !t.ok()) {
    return absl::Status(t.status().code(),
                        absl::StrCat("in-cluster config: ", t.status().message()));
  }
  return rc;
}

absl::StatusOr<RestConfig> LoadRestConfig(const KubeconfigOptions& options, const Clock& clock) {
  absl::StatusOr<RestConfig> config;
  if (!options.path.empty() || !options.context.empty()) {
    config = LoadKubeconfig(options, clock);
  } else if (const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
             host != nullptr && *host != '\0') {
    config = InClusterConfig(kDefaultInClusterRoot, clock);
  } else {
    config = LoadKubeconfig(options, clock);
  }
  if (config.ok()) {
    spdlog::info("API server {} from {}", config->server, config->source);
  }
  return config;
}

}  // namespace capstan::kube
