// libFuzzer target for the web provider's JSONPath reader and answer parser:
//   make fuzz (tests/fuzz/run.sh; seeds in tests/fuzz/corpus/jsonpath)
// The input is used as a jsonPath (from a template) and as a web answer (from a server
// Capstan calls): each must give a value or a Status, never a crash or a sanitizer report.
#include <cstddef>
#include <cstdint>
#include <string>

#include "capstan/analysis/web.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)capstan::analysis::ParseJsonPath(text);
  (void)capstan::analysis::ParseWebAnswer(200, R"({"a": [1, {"b": "x"}], "c": true})", text);
  for (const char* path : {"", "{$.data.results[0].value}", "$.a[-1]", "$['a'][0]"}) {
    (void)capstan::analysis::ParseWebAnswer(200, text, path);
  }
  return 0;
}
