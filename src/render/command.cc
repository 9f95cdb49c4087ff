// `capstan render -f release.yaml`: the one place in this layer that does I/O.

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "capstan/api/release.h"
#include "capstan/api/yaml.h"
#include "capstan/common/status_macros.h"
#include "capstan/kube/yaml_limits.h"
#include "capstan/render/hooks.h"
#include "capstan/render/render.h"

namespace capstan::render {
namespace {

// Reads at most `max_bytes` (a hostile or mistaken input, /dev/zero, must not take all
// memory); more is an error.
absl::StatusOr<std::string> ReadBounded(std::istream& in, const std::string& name,
                                        size_t max_bytes) {
  std::string text;
  char buf[64 << 10];
  while (in) {
    in.read(buf, sizeof(buf));
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > max_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": larger than ", max_bytes, " bytes"));
    }
  }
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("error while reading ", name));
  }
  return text;
}

absl::StatusOr<std::string> ReadInput(const std::string& path) {
  if (path.empty()) {
    return absl::InvalidArgumentError(
        "no file given: use -f release.yaml (or --filename=- for stdin)");
  }
  const size_t max_bytes = kube::YamlLimits().max_bytes;
  if (path == "-") {
    return ReadBounded(std::cin, "stdin", max_bytes);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path));
  }
  return ReadBounded(in, path, max_bytes);
}

}  // namespace

absl::Status RenderCommand(const std::string& path, std::ostream& out) {
  ASSIGN_OR_RETURN(const std::string text, ReadInput(path));
  absl::StatusOr<std::vector<api::Release>> releases = api::ParseReleaseYaml(text);
  if (!releases.ok()) {
    return absl::Status(releases.status().code(),
                        absl::StrCat(path, ": ", releases.status().message()));
  }
  // Check every Release before printing anything: a partial stream piped into
  // `kubectl apply` would be worse than none.
  std::string problems;
  for (const api::Release& r : *releases) {
    const std::vector<std::string> errors = api::ValidateRelease(r);
    if (errors.empty()) {
      continue;
    }
    absl::StrAppend(&problems, "\nRelease \"", r.metadata.name, "\" is invalid:");
    for (const std::string& e : errors) {
      absl::StrAppend(&problems, "\n  - ", e);
    }
  }
  if (!problems.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ":", problems));
  }
  std::vector<nlohmann::json> objects;
  for (const api::Release& r : *releases) {
    for (nlohmann::json& o : RenderRelease(r)) {
      objects.push_back(std::move(o));
    }
    // The hook Jobs the controller would create for the current revision.
    for (nlohmann::json& o : RenderHookJobs(r, RenderPodTemplate(r).revision)) {
      objects.push_back(std::move(o));
    }
  }
  out << api::JsonToYamlStream(objects);
  out.flush();
  if (!out) {
    return absl::UnavailableError("cannot write the rendered objects");
  }
  return absl::OkStatus();
}

}  // namespace capstan::render
