#include "capstan/secrets/secret_writes.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace capstan::secrets {
namespace {

using nlohmann::json;

SecretRotation Rotation(bool adopt) {
  SecretRotation sr;
  sr.name = "jwt";
  sr.ns = "shop";
  sr.uid = "uid-jwt";
  sr.spec.secret_name = "jwt-keys";
  sr.spec.adopt_existing = adopt;
  return sr;
}

json SecretLabelled(const std::string& owner) {
  json s = {{"metadata", {{"name", "jwt-keys"}, {"resourceVersion", "7"}}}};
  if (!owner.empty()) s["metadata"]["labels"]["capstan.dev/secret-rotation"] = owner;
  return s;
}

// An unlabelled Secret whose writer consents to adoption (issue #20 item 7).
json Consenting(const std::string& value = "true") {
  json s = SecretLabelled("");
  s["metadata"]["annotations"]["capstan.dev/allow-adoption"] = value;
  return s;
}

json OfType(json s, const std::string& type) {
  s["type"] = type;
  return s;
}

TEST(DecideOwnershipTest, OneRowPerOutcome) {
  struct Case {
    std::string name;
    std::optional<json> secret;
    bool adopt;
    Ownership want;
    std::string message_has;
  };
  const std::vector<Case> cases = {
      {"missing: create", std::nullopt, false, Ownership::kMissing, ""},
      {"missing, adoptExisting: create", std::nullopt, true, Ownership::kMissing, ""},
      {"labelled for us", SecretLabelled("jwt"), false, Ownership::kManaged, ""},
      {"labelled for us, adoptExisting", SecretLabelled("jwt"), true, Ownership::kManaged, ""},
      {"unlabelled, adoptExisting, the Secret consents: adopt", Consenting(), true,
       Ownership::kAdopt, ""},
      {"unlabelled, adoptExisting, no consent on the Secret: conflict", SecretLabelled(""), true,
       Ownership::kConflictForeign, "capstan.dev/allow-adoption=true"},
      {"consent must say true", Consenting("yes"), true, Ownership::kConflictForeign,
       "does not consent"},
      {"consent without adoptExisting: conflict", Consenting(), false, Ownership::kConflictForeign,
       "adoptExisting"},
      {"a service account token is never adopted",
       OfType(Consenting(), "kubernetes.io/service-account-token"), true, Ownership::kConflictType,
       "kubernetes.io/ types"},
      {"nor managed, even labelled", OfType(SecretLabelled("jwt"), "kubernetes.io/tls"), false,
       Ownership::kConflictType, "type kubernetes.io/tls"},
      {"an Opaque Secret is fine", OfType(Consenting(), "Opaque"), true, Ownership::kAdopt, ""},
      {"unlabelled: conflict", SecretLabelled(""), false, Ownership::kConflictForeign,
       "adoptExisting"},
      {"labelled for another", SecretLabelled("other"), false, Ownership::kConflictOther,
       "SecretRotation other"},
      {"labelled for another, adoptExisting: still a conflict", SecretLabelled("other"), true,
       Ownership::kConflictOther, "SecretRotation other"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const OwnershipDecision d =
        DecideOwnership(Rotation(c.adopt), c.secret.has_value() ? &*c.secret : nullptr);
    EXPECT_EQ(d.ownership, c.want);
    EXPECT_TRUE(absl::StrContains(d.message, c.message_has)) << d.message;
    EXPECT_EQ(d.message.empty(), c.message_has.empty());
  }
}

TEST(SecretWritesTest, AdoptionIsTheLabelOnly) {
  EXPECT_EQ(AdoptPatch(Rotation(true), "7"), json::parse(R"({"metadata": {"resourceVersion": "7",
                            "labels": {"capstan.dev/secret-rotation": "jwt"}}})"));
}

TEST(SecretWritesTest, CreateIsLabelledAndOwned) {
  const json body =
      SecretCreateBody(Rotation(false), {{"capstan.dev/rotation-state", "Idle"}}, {{"k", "dg=="}});
  EXPECT_EQ(body, json::parse(R"({
    "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
    "metadata": {
      "name": "jwt-keys", "namespace": "shop",
      "labels": {"capstan.dev/secret-rotation": "jwt", "app.kubernetes.io/managed-by": "capstan"},
      "annotations": {"capstan.dev/rotation-state": "Idle"},
      "ownerReferences": [{"apiVersion": "capstan.dev/v1alpha1", "kind": "SecretRotation",
                           "name": "jwt", "uid": "uid-jwt", "controller": true}]},
    "data": {"k": "dg=="}})"));
}

TEST(SecretWritesTest, StepPatch) {
  struct Case {
    std::string name;
    json annotations;
    json data;
    json want;
  };
  const std::vector<Case> cases = {
      {"annotations only (Restarted)",
       {{"capstan.dev/rotation-state", "Restarted"}},
       json::object(),
       json::parse(R"({"metadata": {"resourceVersion": "7",
                       "annotations": {"capstan.dev/rotation-state": "Restarted"}}})")},
      {"data set and removed (Swapped)",
       {{"capstan.dev/rotation-state", "Swapped"}, {"capstan.dev/previous-expires", nullptr}},
       {{"k", "bmV3"}, {".capstan-pending.k", nullptr}},
       json::parse(R"({"metadata": {"resourceVersion": "7",
                       "annotations": {"capstan.dev/rotation-state": "Swapped",
                                       "capstan.dev/previous-expires": null}},
                       "data": {"k": "bmV3", ".capstan-pending.k": null}})")},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(SecretStepPatch("7", c.annotations, c.data), c.want);
  }
}

TEST(SecretWritesTest, StampPatchNamesTheSecret) {
  EXPECT_EQ(StampPatch("jwt-keys", "abc"),
            json::parse(R"({"spec": {"template": {"metadata": {"annotations":
                            {"secret-version.capstan.dev/jwt-keys": "abc"}}}}})"));
}

}  // namespace
}  // namespace capstan::secrets
