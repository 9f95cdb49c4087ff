// capstan: the operator binary; as kubectl-capstan, the kubectl plugin (src/cli/).
//
//   capstan run      reconcile Releases, Environments and SecretRotations
//   capstan render   print the objects a Release renders to, without a cluster
//   capstan version  print the version

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "capstan/cli/cli.h"
#include "capstan/common/logging.h"
#include "capstan/common/version.h"
#include "capstan/render/render.h"
#include "run.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, log_level, "info", "Log level: trace, debug, info, warn, error.");
ABSL_FLAG(std::string, log_format, "json", "Log format: json or text.");
ABSL_FLAG(std::string, filename, "", "render: the file holding the Release(s); - for stdin.");
ABSL_FLAG(std::string, f, "", "Shorthand for --filename.");

namespace capstan {
namespace {

constexpr char kUsage[] = R"(capstan: safe releases on Kubernetes.

Usage:
  capstan run [flags]                 run the operator
  capstan render -f release.yaml      print what a Release renders to (no cluster needed)
  capstan version                     print the version

Run `capstan --helpfull` for every flag.)";

int Main(int argc, char** argv) {
  // Started as kubectl-capstan (kubectl runs plugins by that name): the command line.
  if (argc > 0 && cli::IsPluginName(argv[0])) {
    return cli::Run(std::vector<std::string>(argv + 1, argv + argc), std::cout, std::cerr);
  }
  absl::SetProgramUsageMessage(kUsage);
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view path) -> bool {
    return absl::StrContains(path, "main.cc") || absl::StrContains(path, "run.cc");
  };
  config.version_string = [] { return absl::StrCat("capstan ", kVersion, "\n"); };
  absl::SetFlagsUsageConfig(config);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);

  const std::string format = absl::GetFlag(FLAGS_log_format);
  if (format != "json" && format != "text") {
    std::fprintf(stderr, "capstan: --log_format must be json or text, not \"%s\"\n",
                 format.c_str());
    return 2;
  }
  if (absl::Status s = InitLogging(absl::GetFlag(FLAGS_log_level),
                                   format == "json" ? LogFormat::kJson : LogFormat::kText);
      !s.ok()) {
    std::fprintf(stderr, "capstan: %s\n", std::string(s.message()).c_str());
    return 2;
  }

  if (args.size() < 2) {
    std::fprintf(stderr, "%s\n", kUsage);
    return 2;
  }
  const std::string command = args[1];
  if (command == "run") {
    return RunOperator();
  }
  if (command == "version") {
    std::printf("capstan %s\n", kVersion);
    return 0;
  }
  if (command == "render") {
    std::string file = absl::GetFlag(FLAGS_filename);
    if (file.empty()) {
      file = absl::GetFlag(FLAGS_f);
    }
    if (file.empty() && args.size() > 2) {
      file = args[2];  // capstan render release.yaml
    }
    if (absl::Status s = render::RenderCommand(file, std::cout); !s.ok()) {
      std::fprintf(stderr, "capstan render: %s\n", std::string(s.message()).c_str());
      return 1;
    }
    return 0;
  }
  if (command == "help") {
    std::printf("%s\n", kUsage);
    return 0;
  }
  std::fprintf(stderr, "capstan: unknown command \"%s\"\n\n%s\n", command.c_str(), kUsage);
  return 2;
}

}  // namespace
}  // namespace capstan

int main(int argc, char** argv) { return capstan::Main(argc, argv); }
