// Release, Environment, ReleaseApproval and SecretRotation objects as the API server
// (or a file) hands them over: parse and validate never crash. The first byte picks
// the kind so one corpus covers all four.

#include "capstan/api/environment.h"
#include "capstan/api/release.h"
#include "capstan/policy/environment.h"
#include "capstan/secrets/secret_rotation.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t kind = data[0] % 4;
  const nlohmann::json obj = capstan::fuzz::Json(data + 1, size - 1);
  if (obj.is_discarded()) return 0;
  switch (kind) {
    case 0:
      if (auto r = capstan::api::ParseRelease(obj); r.ok()) {
        (void)capstan::api::ValidateRelease(*r);
      }
      (void)capstan::api::ParseReleaseStatus(obj);
      break;
    case 1:
      if (auto e = capstan::api::ParseEnvironment(obj); e.ok()) {
        (void)capstan::api::ValidateEnvironment(*e);
        // Freeze windows (time zones, days, times) evaluated at a fixed instant.
        (void)capstan::policy::ActiveFreeze(e->spec.policies.freeze_windows,
                                            absl::FromUnixSeconds(1'790'000'000));
      }
      break;
    case 2:
      (void)capstan::api::ParseReleaseApproval(obj);
      break;
    case 3:
      if (auto s = capstan::secrets::ParseSecretRotation(obj); s.ok()) {
        (void)capstan::secrets::ValidateSecretRotation(*s);
      }
      if (obj.is_string()) (void)capstan::secrets::ParseGoDuration(obj.get<std::string>());
      break;
  }
  return 0;
}
