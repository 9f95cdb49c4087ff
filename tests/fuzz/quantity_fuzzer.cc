// Kubernetes quantities (resources, Environment defaults): parse never crashes, and the
// canonical form parses again.
//
// Not checked (yet): that the canonical form is a fixed point, as Go's
// Quantity.String() is. It is not today: "6079812.5Ki" prints as one form whose own
// canonical form differs (tests/fuzz/README.md).

#include <cstdio>
#include <cstdlib>
#include <string>

#include "capstan/diff/quantity.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = capstan::fuzz::Text(data, size);
  std::optional<capstan::diff::Quantity> q = capstan::diff::ParseQuantity(text);
  if (!q.has_value()) return 0;
  const std::string canonical = capstan::diff::CanonicalQuantity(*q);
  std::optional<capstan::diff::Quantity> again = capstan::diff::ParseQuantity(canonical);
  if (!again.has_value()) {
    std::fprintf(stderr, "%s -> %s, which does not parse\n", text.c_str(), canonical.c_str());
    std::abort();
  }
  if (std::getenv("CAPSTAN_FUZZ_VERBOSE") != nullptr) {
    std::fprintf(stderr, "%s -> %s -> %s\n", text.c_str(), canonical.c_str(),
                 capstan::diff::CanonicalQuantity(*again).c_str());
  }
  return 0;
}
