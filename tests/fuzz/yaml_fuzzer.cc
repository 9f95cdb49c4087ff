// The YAML reader (capstan render, Release and Environment files): no crash, bounded
// memory (aliases, depth, size), and what it reads writes back and reads the same.

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "capstan/api/yaml.h"
#include "capstan/kube/yaml_limits.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<std::vector<nlohmann::json>> docs =
      capstan::api::YamlToJson(capstan::fuzz::Text(data, size));
  if (!docs.ok()) return 0;
  const std::string again = capstan::api::JsonToYamlStream(*docs);
  // Aliases are written out expanded: within the alias budget the written form can still
  // pass the reader's size limit, and then it is rightly refused on the way back.
  if (again.size() > capstan::kube::YamlLimits{}.max_bytes) return 0;
  absl::StatusOr<std::vector<nlohmann::json>> back = capstan::api::YamlToJson(again);
  // JsonToYaml must write what YamlToJson reads back as the same documents.
  if (!back.ok() || *back != *docs) {
    std::fprintf(stderr, "read:\n%s\nwritten:\n%s\nread back: %s\n",
                 nlohmann::json(*docs)
                     .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                     .c_str(),
                 again.c_str(),
                 back.ok() ? nlohmann::json(*back)
                                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                                 .c_str()
                           : std::string(back.status().message()).c_str());
    std::abort();
  }
  return 0;
}
