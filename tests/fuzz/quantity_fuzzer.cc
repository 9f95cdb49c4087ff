// Kubernetes quantities (resources, Environment defaults): parse, print canonically,
// and the canonical form reads back as the same quantity.

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
  if (!again.has_value()) std::abort();
  if (capstan::diff::CanonicalQuantity(*again) != canonical) std::abort();
  return 0;
}
