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
#include "capstan/render/render.h"

namespace capstan::render {
namespace {

absl::StatusOr<std::string> ReadInput(const std::string& path) {
  if (path.empty()) {
    return absl::InvalidArgumentError(
        "no file given: use -f release.yaml (or --filename=- for stdin)");
  }
  std::ostringstream buf;
  if (path == "-") {
    buf << std::cin.rdbuf();
    return buf.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path));
  }
  buf << in.rdbuf();
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("error while reading ", path));
  }
  return buf.str();
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
  }
  out << api::JsonToYamlStream(objects);
  out.flush();
  if (!out) {
    return absl::UnavailableError("cannot write the rendered objects");
  }
  return absl::OkStatus();
}

}  // namespace capstan::render
