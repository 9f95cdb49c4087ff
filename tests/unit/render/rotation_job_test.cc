// spec.target.hook step Jobs: only the pending keys are mounted, read-only, 0400.
#include "capstan/render/rotation_job.h"

#include "gtest/gtest.h"

namespace capstan::render {
namespace {

using nlohmann::json;

TEST(RotationJob, MountsOnlyThePendingKeysReadOnly) {
  api::HookJobSpec step;
  step.pod_template = {
      {"metadata", {{"labels", {{"team", "a"}, {"capstan.dev/hook", "x"}}}}},
      {"spec",
       {{"containers", {{{"name", "set"}, {"image", "exit0"}, {"env", {{{"name", "A"}}}}}}},
        {"volumes", {{{"name", "tmp"}, {"emptyDir", json::object()}}}}}}};
  step.backoff_limit = 0;
  const json job = RenderRotationJob({.name = "api-4-set",
                                      .ns = "shop",
                                      .rotation = "api",
                                      .rotation_uid = "uid-1",
                                      .secret = "api-key",
                                      .step = "set",
                                      .version = "4",
                                      .items = {{".capstan-pending.token", "token"}}},
                                     step);
  EXPECT_EQ(job["metadata"]["name"], "api-4-set");
  EXPECT_EQ(job["metadata"]["labels"]["capstan.dev/secret-rotation"], "api");
  EXPECT_EQ(job["metadata"]["labels"]["capstan.dev/rotation-step"], "set");
  EXPECT_EQ(job["metadata"]["labels"]["capstan.dev/rotation-version"], "4");
  EXPECT_EQ(job["metadata"]["ownerReferences"][0]["kind"], "SecretRotation");
  EXPECT_EQ(job["metadata"]["ownerReferences"][0]["uid"], "uid-1");
  EXPECT_EQ(job["metadata"]["ownerReferences"][0]["controller"], true);
  EXPECT_EQ(job["spec"]["backoffLimit"], 0);
  const json& pod = job["spec"]["template"];
  EXPECT_EQ(pod["metadata"]["labels"], json({{"team", "a"}, {"capstan.dev/rotation-step", "set"}}));
  EXPECT_EQ(pod["spec"]["restartPolicy"], "Never");
  ASSERT_EQ(pod["spec"]["volumes"].size(), 2u);
  EXPECT_EQ(pod["spec"]["volumes"][1],
            json({{"name", "capstan-pending"},
                  {"secret",
                   {{"secretName", "api-key"},
                    {"items", {{{"key", ".capstan-pending.token"}, {"path", "token"}}}},
                    {"defaultMode", 256},
                    {"optional", false}}}}));
  const json& c = pod["spec"]["containers"][0];
  EXPECT_EQ(c["volumeMounts"], json({{{"name", "capstan-pending"},
                                      {"mountPath", "/var/run/capstan/pending"},
                                      {"readOnly", true}}}));
  ASSERT_EQ(c["env"].size(), 4u);
  EXPECT_EQ(c["env"][1], json({{"name", "CAPSTAN_ROTATION_STEP"}, {"value", "set"}}));
}

}  // namespace
}  // namespace capstan::render
