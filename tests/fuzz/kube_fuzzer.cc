// What the API client reads from outside: watch event lines and list pages from the
// API server, exec credential plugin output, kubeconfig files. The first byte picks.

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "capstan/kube/client.h"
#include "capstan/kube/exec_credential.h"
#include "capstan/kube/resource.h"
#include "capstan/kube/rest_config.h"
#include "capstan/kube/transport.h"
#include "capstan/kube/yaml_limits.h"
#include "fuzz_util.h"
#include "yaml-cpp/yaml.h"

namespace {

// Answers with the fuzz input: as a list body, or as the lines of a watch.
class InputTransport : public capstan::kube::Transport {
 public:
  explicit InputTransport(std::string input) : input_(std::move(input)) {}
  absl::StatusOr<capstan::kube::HttpResponse> Do(const capstan::kube::HttpRequest&) override {
    return capstan::kube::HttpResponse{200, input_, {}};
  }
  absl::Status Stream(const capstan::kube::HttpRequest&,
                      const std::function<bool(absl::string_view)>& on_line, int* status_code,
                      capstan::kube::Cancellation*) override {
    *status_code = 200;
    size_t start = 0;
    while (start <= input_.size()) {
      size_t nl = input_.find('\n', start);
      if (nl == std::string::npos) nl = input_.size();
      if (nl > start && !on_line(absl::string_view(input_).substr(start, nl - start))) break;
      start = nl + 1;
    }
    return absl::OkStatus();
  }

 private:
  const std::string input_;
};

// True when `n` has a mapping key "exec" at any depth, as yaml-cpp reads it (escapes and
// quoting resolved). LoadKubeconfig runs an exec plugin it finds, and a fuzzed command
// line must never run: such inputs are skipped.
bool HasExecKey(const YAML::Node& n, int depth = 0) {
  if (depth > 200) return true;  // deeper than the loader accepts; skip rather than recurse
  if (n.IsMap()) {
    for (const auto& kv : n) {
      if (kv.first.IsScalar() && kv.first.Scalar() == "exec") return true;
      if (HasExecKey(kv.first, depth + 1) || HasExecKey(kv.second, depth + 1)) return true;
    }
  } else if (n.IsSequence()) {
    for (const auto& e : n) {
      if (HasExecKey(e, depth + 1)) return true;
    }
  }
  return false;
}

// Whether LoadKubeconfig may be handed `input` without running a program. Mirrors the
// loader (rest_config.cc MergeFile): YAML::Load, then the limits; input either refuses
// never reaches an exec plugin.
bool SafeKubeconfig(const std::string& input) {
  YAML::Node root;
  try {
    root = YAML::Load(input);
  } catch (const std::exception&) {
    return true;
  }
  if (!capstan::kube::CheckYamlLimits(input).ok()) return true;
  return !HasExecKey(root);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t kind = data[0] % 4;
  std::string input = capstan::fuzz::Text(data + 1, size - 1);
  capstan::kube::Client::Options o;
  o.qps = 0;
  o.max_retries = 0;
  switch (kind) {
    case 0: {
      capstan::kube::Client client(std::make_unique<InputTransport>(input), o);
      capstan::kube::Cancellation cancel;
      (void)client.Watch(
          capstan::kube::resources::Deployments(), "ns", {},
          [](capstan::kube::WatchEvent&&) { return true; }, &cancel);
      break;
    }
    case 1: {
      capstan::kube::Client client(std::make_unique<InputTransport>(input), o);
      (void)client.List(capstan::kube::resources::Deployments(), "ns");
      (void)client.Get(capstan::kube::resources::Deployments(), "ns", "x");
      (void)client.ServerGroups();
      break;
    }
    case 2:
      (void)capstan::kube::ParseExecCredential(input, "client.authentication.k8s.io/v1");
      (void)capstan::kube::ParseExecCredential(input, "client.authentication.k8s.io/v1beta1");
      break;
    case 3: {
      if (!SafeKubeconfig(input)) break;
      // LoadKubeconfig reads files: one scratch file per process, rewritten per input.
      static const std::string path = [] {
        char tmpl[] = "/tmp/capstan-fuzz-kubeconfig-XXXXXX";
        const int fd = mkstemp(tmpl);
        if (fd >= 0) close(fd);
        return std::string(tmpl);
      }();
      FILE* f = std::fopen(path.c_str(), "wb");
      if (f == nullptr) return 0;
      std::fwrite(input.data(), 1, input.size(), f);
      std::fclose(f);
      capstan::kube::KubeconfigOptions ko;
      ko.path = path;
      (void)capstan::kube::LoadKubeconfig(ko);
      break;
    }
  }
  return 0;
}
