#include "cluster_util.h"

#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "capstan/common/log.h"
#include "capstan/common/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace capstan::kube::itest {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> CmdlineOf(const std::string& pid) {
  std::string raw = ReadFile(absl::StrCat("/proc/", absl::StripAsciiWhitespace(pid), "/cmdline"));
  std::vector<std::string> args = absl::StrSplit(raw, '\0', absl::SkipEmpty());
  return args;
}

// The value of `--flag v` or `--flag=v` in `args`, or "".
std::string FlagValue(const std::vector<std::string>& args, absl::string_view flag) {
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == flag && i + 1 < args.size()) return args[i + 1];
    if (absl::StartsWith(args[i], absl::StrCat(flag, "="))) {
      return args[i].substr(flag.size() + 1);
    }
  }
  return "";
}

std::string FirstUrl(const std::string& urls) {
  std::vector<std::string> parts = absl::StrSplit(urls, ',', absl::SkipEmpty());
  return parts.empty() ? "" : parts.front();
}

absl::StatusOr<Object> EtcdCall(const std::string& endpoint, const std::string& path,
                                const Object& body) {
  RestConfig config;
  config.server = endpoint;
  config.source = "etcd";
  config.timeout = absl::Seconds(30);
  ASSIGN_OR_RETURN(std::unique_ptr<Transport> transport, NewCppRestTransport(config));
  HttpRequest req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.content_type = "application/json";
  ASSIGN_OR_RETURN(HttpResponse resp, transport->Do(req));
  Object out = Object::parse(resp.body, nullptr, /*allow_exceptions=*/false);
  if (resp.status != 200) {
    return absl::UnknownError(absl::StrCat("etcd ", path, ": HTTP ", resp.status, ": ", resp.body));
  }
  if (out.is_discarded()) return absl::InternalError(absl::StrCat("etcd ", path, ": not JSON"));
  return out;
}

// A YAML scalar as kubectl reads it (sigs.k8s.io/yaml: YAML 1.1 for plain scalars).
Object Scalar(const YAML::Node& node) {
  const std::string& s = node.Scalar();
  if (node.Tag() != "?") return s;  // quoted, literal or folded: always a string
  static const std::regex kInt(R"([-+]?(0|[1-9][0-9]*))");
  static const std::regex kFloat(R"([-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?)");
  const std::string lower = absl::AsciiStrToLower(s);
  if (s.empty() || s == "~" || lower == "null") return nullptr;
  if (lower == "true" || lower == "yes" || lower == "on") return true;
  if (lower == "false" || lower == "no" || lower == "off") return false;
  if (std::regex_match(s, kInt)) {
    int64_t v = 0;
    if (absl::SimpleAtoi(s, &v)) return v;
  }
  if (std::regex_match(s, kFloat)) {
    double v = 0;
    if (absl::SimpleAtod(s, &v)) return v;
  }
  return s;
}

Object ToJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      Object out = Object::object();
      for (const auto& kv : node) out[kv.first.as<std::string>()] = ToJson(kv.second);
      return out;
    }
    case YAML::NodeType::Sequence: {
      Object out = Object::array();
      for (const auto& item : node) out.push_back(ToJson(item));
      return out;
    }
    case YAML::NodeType::Scalar:
      return Scalar(node);
    default:
      return nullptr;
  }
}

}  // namespace

std::string ClusterDir() {
  const char* dir = std::getenv("CAPSTAN_CLUSTER_DIR");
  return dir == nullptr ? "" : dir;
}

std::string ClusterKubeconfig() {
  const std::string dir = ClusterDir();
  const std::string direct = absl::StrCat(dir, "/kubeconfig");
  if (std::ifstream(direct).good()) return direct;
  // fixture-up with $CAPSTAN_E2E_KUBECONFIG writes only DIR/env.
  for (absl::string_view line : absl::StrSplit(ReadFile(absl::StrCat(dir, "/env")), '\n')) {
    if (absl::ConsumePrefix(&line, "export KUBECONFIG=")) return std::string(line);
  }
  return direct;
}

absl::StatusOr<RestConfig> ClusterConfig(double qps, int burst) {
  KubeconfigOptions options;
  options.path = ClusterKubeconfig();
  ASSIGN_OR_RETURN(RestConfig config, LoadKubeconfig(options));
  if (qps > 0) config.qps = qps;
  if (burst > 0) config.burst = burst;
  return config;
}

std::unique_ptr<Client> NewClusterClient(double qps, int burst) {
  absl::StatusOr<RestConfig> config = ClusterConfig(qps, burst);
  if (!config.ok()) {
    ADD_FAILURE() << config.status();
    return nullptr;
  }
  absl::StatusOr<std::unique_ptr<Client>> client = Client::FromConfig(*config);
  if (!client.ok()) {
    ADD_FAILURE() << client.status();
    return nullptr;
  }
  return std::move(client).value();
}

std::unique_ptr<Client> NewClient(std::unique_ptr<Transport> transport, Client::Options options) {
  return std::make_unique<Client>(std::move(transport), options);
}

bool PollUntil(const std::function<bool()>& done, absl::Duration timeout, absl::Duration interval) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (done()) return true;
    if (absl::Now() >= deadline) return done();
    absl::SleepFor(interval);
  }
}

std::string RandomSuffix() {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* rng = new absl::BitGen();
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  absl::MutexLock lock(&mu);
  std::string out;
  for (int i = 0; i < 8; ++i) out += kChars[absl::Uniform(*rng, size_t{0}, sizeof(kChars) - 1)];
  return out;
}

TestNamespace::TestNamespace(Client& client, const std::string& prefix)
    : client_(client), name_(absl::StrCat(prefix, "-", RandomSuffix())) {
  Object ns = {{"apiVersion", "v1"},
               {"kind", "Namespace"},
               {"metadata", {{"name", name_}, {"labels", {{"capstan.dev/test", "integration"}}}}}};
  status_ = client_.Create(resources::Namespaces(), "", ns).status();
}

TestNamespace::~TestNamespace() {
  if (!status_.ok()) return;
  absl::Status s = client_.Delete(resources::Namespaces(), "", name_);
  if (!s.ok() && s.code() != absl::StatusCode::kNotFound) {
    spdlog::warn("deleting test namespace {}: {}", name_, s);
  }
}

Object ConfigMap(const std::string& ns, const std::string& name, const Object& data,
                 const Object& labels) {
  Object cm = {{"apiVersion", "v1"},
               {"kind", "ConfigMap"},
               {"metadata", {{"name", name}, {"namespace", ns}}},
               {"data", data}};
  if (!labels.empty()) cm["metadata"]["labels"] = labels;
  return cm;
}

std::string ResourceVersionOf(const Object& obj) {
  return obj.value("/metadata/resourceVersion"_json_pointer, std::string());
}
std::string UidOf(const Object& obj) {
  return obj.value("/metadata/uid"_json_pointer, std::string());
}
std::string NameOf(const Object& obj) {
  return obj.value("/metadata/name"_json_pointer, std::string());
}

absl::StatusOr<std::string> FindEtcdEndpoint() {
  const std::string dir = ClusterDir();
  const std::string etcd_pid = ReadFile(absl::StrCat(dir, "/pids/etcd"));
  if (!etcd_pid.empty()) {
    std::string url = FirstUrl(FlagValue(CmdlineOf(etcd_pid), "--listen-client-urls"));
    if (!url.empty()) return url;
  }
  const std::string api_pid = ReadFile(absl::StrCat(dir, "/pids/kube-apiserver"));
  if (!api_pid.empty()) {
    std::string url = FirstUrl(FlagValue(CmdlineOf(api_pid), "--etcd-servers"));
    if (!url.empty()) return url;
  }
  return absl::NotFoundError(
      absl::StrCat("no etcd process recorded under ", dir,
                   "/pids (the cluster was not started by tests/cluster/cluster.sh up ", dir, ")"));
}

absl::StatusOr<int64_t> EtcdRevision(const std::string& endpoint) {
  // Any key will do: every answer carries the store's current revision.
  ASSIGN_OR_RETURN(Object out, EtcdCall(endpoint, "/v3/kv/range", {{"key", "AA=="}}));
  const Object& rev = out["header"]["revision"];
  int64_t v = 0;
  // grpc-gateway writes int64 as a JSON string.
  if (rev.is_string() && absl::SimpleAtoi(rev.get<std::string>(), &v)) return v;
  if (rev.is_number_integer()) return rev.get<int64_t>();
  return absl::InternalError(absl::StrCat("etcd range: no header.revision in ", out.dump()));
}

absl::Status EtcdCompact(const std::string& endpoint, int64_t revision) {
  absl::StatusOr<Object> out = EtcdCall(
      endpoint, "/v3/kv/compaction", {{"revision", std::to_string(revision)}, {"physical", true}});
  if (!out.ok() && absl::StrContains(out.status().message(), "compacted")) {
    return absl::OkStatus();  // "required revision has been compacted": already done
  }
  return out.status();
}

absl::StatusOr<std::vector<Object>> ReadYamlFile(const std::string& path) {
  try {
    std::vector<Object> docs;
    for (const YAML::Node& doc : YAML::LoadAllFromFile(path)) {
      if (doc.IsNull()) continue;
      docs.push_back(ToJson(doc));
    }
    return docs;
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", e.what()));
  }
}

const Resource& CustomResourceDefinitions() {
  static const Resource* r = new Resource{"apiextensions.k8s.io", "v1", "customresourcedefinitions",
                                          "CustomResourceDefinition", false};
  return *r;
}

ScratchCrd::ScratchCrd(Client& client) : client_(client) {
  const std::string group = absl::StrCat(RandomSuffix(), ".itest.capstan.dev");
  resource_ = Resource{group, "v1", "things", "Thing", true};
  name_ = absl::StrCat("things.", group);
  Object crd = Object::parse(R"({
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "spec": {
      "scope": "Namespaced",
      "names": {"kind": "Thing", "plural": "things", "singular": "thing", "listKind": "ThingList"},
      "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object",
                               "x-kubernetes-preserve-unknown-fields": true}}}]
    }})");
  crd["metadata"]["name"] = name_;
  crd["spec"]["group"] = group;
  status_ = client_.Create(CustomResourceDefinitions(), "", crd).status();
}

ScratchCrd::~ScratchCrd() {
  if (status_.ok()) client_.Delete(CustomResourceDefinitions(), "", name_).IgnoreError();
}

Object ScratchCrd::Thing(const std::string& ns, const std::string& name, int value) const {
  return {{"apiVersion", resource_.ApiVersion()},
          {"kind", resource_.kind},
          {"metadata", {{"name", name}, {"namespace", ns}}},
          {"value", value}};
}

absl::Status ScratchCrd::RebuildCache() {
  const Object patch = {
      {"spec", {{"names", {{"shortNames", Object::array({"thg" + RandomSuffix()})}}}}}};
  return client_.MergePatch(CustomResourceDefinitions(), "", name_, patch).status();
}

namespace {

// key -> resourceVersion.
using State = std::map<std::string, std::string>;

std::string Describe(const State& state) {
  std::string out;
  for (const auto& [k, v] : state) absl::StrAppend(&out, k, "@", v, " ");
  return out;
}

}  // namespace

::testing::AssertionResult Converges(Client& client, const Informer& informer,
                                     const std::string& ns, const std::string& selector,
                                     absl::Duration timeout) {
  State server;
  State cache;
  absl::Status list_status;
  const bool ok = PollUntil(
      [&] {
        ListOptions lo;
        lo.label_selector = selector;
        absl::StatusOr<ListPage> all = client.ListAll(informer.resource(), ns, lo);
        list_status = all.status();
        if (!all.ok()) return false;
        server.clear();
        for (const Object& o : all->items) server[ObjectKey(o)] = ResourceVersionOf(o);
        cache.clear();
        for (const auto& o : informer.List()) cache[ObjectKey(*o)] = ResourceVersionOf(*o);
        return server == cache;
      },
      timeout, absl::Milliseconds(250));
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "the cache never matched the server within " << absl::FormatDuration(timeout)
         << " (last list: " << list_status << ")\n  server: " << Describe(server)
         << "\n  cache:  " << Describe(cache);
}

absl::Status WaitForCrd(Client& client, const std::string& crd_name, const Resource& resource,
                        const std::string& ns, absl::Duration timeout) {
  absl::Status last = absl::DeadlineExceededError("not checked yet");
  PollUntil(
      [&] {
        absl::StatusOr<Object> crd = client.Get(CustomResourceDefinitions(), "", crd_name);
        if (!crd.ok()) {
          last = crd.status();
          return false;
        }
        bool established = false;
        for (const Object& c : crd->value("/status/conditions"_json_pointer, Object::array())) {
          if (c.value("type", "") == "Established" && c.value("status", "") == "True") {
            established = true;
          }
        }
        if (!established) {
          last = absl::UnavailableError(absl::StrCat(crd_name, " is not Established yet"));
          return false;
        }
        ListOptions lo;
        lo.limit = 1;
        last = client.List(resource, ns, lo).status();
        return last.ok();
      },
      timeout, absl::Milliseconds(200));
  return last;
}

}  // namespace capstan::kube::itest
