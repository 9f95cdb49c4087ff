#include "capstan/policy/images.h"

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::policy {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

const std::string kDigest = "sha256:" + std::string(64, '0');

TEST(Images, Classification) {
  struct Case {
    std::string image;
    bool pinned;
    bool mutable_tag;
  };
  const std::vector<Case> cases = {
      {"nginx", false, true},
      {"nginx:latest", false, true},
      {"nginx:1.27", false, false},
      {"registry.example:5000/team/app", false, true},
      {"registry.example:5000/team/app:2.1", false, false},
      {"registry.example:5000/team/app:latest", false, true},
      {"registry.example/app:", false, true},
      {"registry.example/app@" + kDigest, true, false},
      {"registry.example/app:1.2@" + kDigest, true, false},
      {"registry.example/app:latest@" + kDigest, true, false},
      {"registry.example/app@sha256:1234", false, false},
      {"registry.example/app@sha256:" + std::string(64, 'A'), false, false},
      {"registry.example/app@sha512:" + std::string(64, '0'), false, false},
      {"@" + kDigest, false, false},
      {"app:LATEST", false, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.image);
    EXPECT_EQ(PinnedByDigest(c.image), c.pinned);
    EXPECT_EQ(MutableTag(c.image), c.mutable_tag);
  }
}

TEST(Images, OfAPodTemplate) {
  const json tmpl = json::parse(R"({"spec": {
      "initContainers": [{"name": "migrate", "image": "tools"}],
      "containers": [{"name": "app", "image": "app:1"}, {"name": "side", "image": "tools"},
                     {"name": "bad", "image": 7}, {"name": "none"}]}})");
  EXPECT_THAT(PodImages(tmpl), ElementsAre("tools", "app:1", "tools"));
  EXPECT_THAT(UnpinnedImages(tmpl), ElementsAre("tools", "app:1"));
  EXPECT_THAT(MutableTagImages(tmpl), ElementsAre("tools"));
  EXPECT_THAT(PodImages(json::object()), IsEmpty());
  EXPECT_THAT(PodImages(json::parse(R"({"spec": {"containers": "x"}})")), IsEmpty());
  EXPECT_EQ(MutableTagWarning(tmpl),
            "images with a mutable tag (:latest or none): tools; a re-push changes what runs "
            "without a rollout; pin a tag or a digest (image@sha256:...)");
  EXPECT_EQ(MutableTagWarning(json::parse(R"({"spec": {"containers": [{"image": "a:1"}]}})")), "");
}

TEST(Images, RecordImageWarningOncePerChange) {
  const json latest = json::parse(R"({"spec": {"containers": [{"image": "app:latest"}]}})");
  const json tagged = json::parse(R"({"spec": {"containers": [{"image": "app:2"}]}})");
  const json other = json::parse(R"({"spec": {"containers": [{"image": "other"}]}})");
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  api::ReleaseStatus s;
  s.conditions.push_back({"Ready", "True", "Ready", "", t0, 1});

  struct Step {
    std::string name;
    const json* tmpl;
    int64_t generation;
    bool event;        // a warning is due
    bool present;      // the condition is in status
    absl::Time since;  // its lastTransitionTime when present
  };
  const std::vector<Step> steps = {
      {"latest: new warning", &latest, 2, true, true, t0 + absl::Seconds(1)},
      {"same again: no second event", &latest, 3, false, true, t0 + absl::Seconds(1)},
      {"another mutable image: news, same transition", &other, 4, true, true,
       t0 + absl::Seconds(1)},
      {"pinned tag: the condition goes", &tagged, 5, false, false, {}},
      {"latest again: a new warning", &latest, 6, true, true, t0 + absl::Seconds(5)},
  };
  int i = 0;
  for (const Step& step : steps) {
    SCOPED_TRACE(step.name);
    ++i;
    const std::string warning =
        RecordImageWarning(*step.tmpl, step.generation, t0 + absl::Seconds(i), &s);
    EXPECT_EQ(!warning.empty(), step.event) << warning;
    const api::Condition* c = nullptr;
    for (const api::Condition& x : s.conditions) {
      if (x.type == kImagesPinnedCondition) c = &x;
    }
    ASSERT_EQ(c != nullptr, step.present);
    EXPECT_EQ(s.conditions.front().type, "Ready");  // others untouched
    if (c == nullptr) continue;
    EXPECT_EQ(c->status, "False");
    EXPECT_EQ(c->reason, "MutableTag");
    EXPECT_EQ(c->message, MutableTagWarning(*step.tmpl));
    EXPECT_EQ(c->observed_generation, step.generation);
    EXPECT_EQ(c->last_transition_time, step.since);
  }
}

}  // namespace
}  // namespace capstan::policy
