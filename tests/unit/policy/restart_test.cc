// policy/restart.h: a SecretRotation's restart annotations become part of the pod
// template, and the restart-free digest input ignores them (and only them).
#include "capstan/policy/restart.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace capstan::policy {
namespace {

using nlohmann::json;

api::Release Rel(json pod_template, std::map<std::string, std::string> annotations = {}) {
  api::Release r;
  r.metadata.name = "web";
  r.metadata.ns = "shop";
  r.metadata.annotations = std::move(annotations);
  r.spec.pod_template = std::move(pod_template);
  return r;
}

const json kTemplate = json::parse(R"({"metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}})");
const json kBare = json::parse(R"({"spec": {"containers": [{"name": "web",
    "image": "registry.example/web:1"}]}})");
constexpr char kStamp[] = "secret-version.capstan.dev/db-creds";

TEST(Restart, Table) {
  struct Case {
    std::string name;
    api::Release running;  // the state last let through (before ApplyRestartAnnotations)
    api::Release desired;
    bool same_base;  // restart-free digests equal: only a restart
  };
  json image2 = kTemplate;
  image2["spec"]["containers"][0]["image"] = "registry.example/web:2";
  json stamped_in_spec = kTemplate;
  stamped_in_spec["metadata"]["annotations"][kStamp] = "aaaa";
  json other_annotation = kTemplate;
  other_annotation["metadata"]["annotations"]["team"] = "payments";
  const std::vector<Case> cases = {
      {"first restart", Rel(kTemplate), Rel(kTemplate, {{kStamp, "aaaa"}}), true},
      {"next restart", Rel(kTemplate, {{kStamp, "aaaa"}}), Rel(kTemplate, {{kStamp, "bbbb"}}),
       true},
      {"restart of a template without metadata", Rel(kBare), Rel(kBare, {{kStamp, "aaaa"}}), true},
      {"restart annotation written in the spec", Rel(kTemplate), Rel(stamped_in_spec), true},
      {"image and restart together", Rel(kTemplate, {{kStamp, "aaaa"}}),
       Rel(image2, {{kStamp, "bbbb"}}), false},
      {"another pod annotation is a change", Rel(kTemplate, {{kStamp, "aaaa"}}),
       Rel(other_annotation, {{kStamp, "bbbb"}}), false},
      {"other metadata annotations are not restarts", Rel(kTemplate),
       Rel(kTemplate, {{"capstan.dev/changed-by", "dave"}}), true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    api::Release running = c.running, desired = c.desired;
    ApplyRestartAnnotations(&running);
    ApplyRestartAnnotations(&desired);
    for (const auto& [k, v] : RestartAnnotations(c.desired)) {
      EXPECT_EQ(PodTemplateRestartAnnotations(desired).at(k), v) << "copied into the template";
    }
    // render::DesiredStateDigest hashes the template (the controller test covers the
    // digest): equal restart-free templates mean equal restart-free digests.
    EXPECT_EQ(WithoutRestartAnnotations(running).spec == WithoutRestartAnnotations(desired).spec,
              c.same_base);
    if (RestartAnnotations(c.running) != RestartAnnotations(c.desired) ||
        c.running.spec.pod_template != c.desired.spec.pod_template) {
      EXPECT_NE(running.spec, desired.spec)
          << "a restart is a new desired state (a revision of its own)";
    }
  }
}

}  // namespace
}  // namespace capstan::policy
