// Client requests against the real API server of tests/cluster: create, get,
// update with optimistic concurrency, server-side apply and its conflicts,
// merge patch, delete with preconditions, and the status subresource.

#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "capstan/common/metrics.h"
#include "cluster_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"

namespace capstan::kube::itest {
namespace {

using ::testing::HasSubstr;

class CrudTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CAPSTAN_REQUIRE_CLUSTER();
    client_ = NewClusterClient();
    ASSERT_NE(client_, nullptr);
    ns_ = std::make_unique<TestNamespace>(*client_, "capstan-crud");
    ASSERT_TRUE(ns_->ok()) << ns_->status();
  }
  void TearDown() override { ns_.reset(); }

  const std::string& ns() const { return ns_->name(); }

  std::unique_ptr<Client> client_;
  std::unique_ptr<TestNamespace> ns_;
};

const Resource& CM() { return resources::ConfigMaps(); }

TEST_F(CrudTest, CreateGetUpdateConflictDelete) {
  // Create, and create again.
  absl::StatusOr<Object> created =
      client_->Create(CM(), ns(), ConfigMap(ns(), "crud", {{"a", "1"}}));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->value("kind", ""), "ConfigMap");
  const std::string uid = UidOf(*created);
  const std::string rv1 = ResourceVersionOf(*created);
  ASSERT_FALSE(uid.empty());
  ASSERT_FALSE(rv1.empty());

  absl::StatusOr<Object> again = client_->Create(CM(), ns(), ConfigMap(ns(), "crud", {{"a", "1"}}));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists) << again.status();
  EXPECT_EQ(ApiReason(again.status()), "AlreadyExists");

  // Get.
  absl::StatusOr<Object> got = client_->Get(CM(), ns(), "crud");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->value("/data/a"_json_pointer, std::string()), "1");
  EXPECT_EQ(UidOf(*got), uid);

  // Update with the resourceVersion we read: accepted, and the version moves on.
  Object update = *got;
  update["data"]["a"] = "2";
  absl::StatusOr<Object> updated = client_->Update(CM(), ns(), update);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->value("/data/a"_json_pointer, std::string()), "2");
  EXPECT_NE(ResourceVersionOf(*updated), rv1);

  // The same update again carries the now stale resourceVersion: 409 Conflict.
  update["data"]["a"] = "3";
  absl::StatusOr<Object> stale = client_->Update(CM(), ns(), update);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kAborted) << stale.status();
  EXPECT_EQ(ApiReason(stale.status()), "Conflict");
  EXPECT_THAT(std::string(stale.status().message()), HasSubstr("modified"));

  // Merge patch: adds a key, keeps the others; null removes a key.
  absl::StatusOr<Object> patched =
      client_->MergePatch(CM(), ns(), "crud", {{"data", {{"b", "patched"}}}});
  ASSERT_TRUE(patched.ok()) << patched.status();
  EXPECT_EQ(patched->value("/data/a"_json_pointer, std::string()), "2");
  EXPECT_EQ(patched->value("/data/b"_json_pointer, std::string()), "patched");
  patched = client_->MergePatch(CM(), ns(), "crud", {{"data", {{"a", nullptr}}}});
  ASSERT_TRUE(patched.ok()) << patched.status();
  EXPECT_FALSE(patched->at("data").contains("a"));

  // Delete with a precondition on another uid: refused with 409 Conflict.
  DeleteOptions wrong;
  wrong.precondition_uid = "00000000-0000-0000-0000-000000000000";
  absl::Status refused = client_->Delete(CM(), ns(), "crud", wrong);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.code(), absl::StatusCode::kAborted) << refused;
  EXPECT_EQ(ApiReason(refused), "Conflict");
  EXPECT_THAT(std::string(refused.message()), HasSubstr("precondition"));
  ASSERT_TRUE(client_->Get(CM(), ns(), "crud").ok()) << "the refused delete removed the object";

  // With the right uid (and resourceVersion) it goes.
  DeleteOptions right;
  right.precondition_uid = uid;
  right.precondition_resource_version = ResourceVersionOf(*patched);
  right.propagation_policy = "Background";
  ASSERT_TRUE(client_->Delete(CM(), ns(), "crud", right).ok());

  absl::StatusOr<Object> gone = client_->Get(CM(), ns(), "crud");
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound) << gone.status();
  EXPECT_EQ(ApiReason(gone.status()), "NotFound");

  absl::Status twice = client_->Delete(CM(), ns(), "crud");
  EXPECT_EQ(twice.code(), absl::StatusCode::kNotFound) << twice;
}

TEST_F(CrudTest, ServerSideApplyOwnsFieldsAndReportsConflicts) {
  // Apply creates the object; fieldManager capstan owns data.x.
  Object desired = ConfigMap(ns(), "applied", {{"x", "1"}, {"shared", "capstan"}});
  absl::StatusOr<Object> applied = client_->Apply(CM(), ns(), "applied", desired);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->value("/data/x"_json_pointer, std::string()), "1");
  bool capstan_applies = false;
  for (const Object& mf : applied->value("/metadata/managedFields"_json_pointer, Object::array())) {
    if (mf.value("manager", "") == kFieldManager && mf.value("operation", "") == "Apply") {
      capstan_applies = true;
    }
  }
  EXPECT_TRUE(capstan_applies) << applied->at("metadata").dump();

  // Applying again with a changed value changes it.
  desired["data"]["x"] = "2";
  applied = client_->Apply(CM(), ns(), "applied", desired);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->value("/data/x"_json_pointer, std::string()), "2");

  // Another manager claiming a field capstan owns, with another value: 409 Conflict.
  Object theirs = ConfigMap(ns(), "applied", {{"shared", "other"}});
  ApplyOptions other;
  other.field_manager = "other-controller";
  absl::StatusOr<Object> conflict = client_->Apply(CM(), ns(), "applied", theirs, other);
  ASSERT_FALSE(conflict.ok());
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kAborted) << conflict.status();
  EXPECT_EQ(ApiReason(conflict.status()), "Conflict");
  EXPECT_THAT(std::string(conflict.status().message()), HasSubstr(kFieldManager));

  // Nothing changed; with force the other manager takes the field over.
  absl::StatusOr<Object> now = client_->Get(CM(), ns(), "applied");
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(now->value("/data/shared"_json_pointer, std::string()), "capstan");
  other.force = true;
  absl::StatusOr<Object> forced = client_->Apply(CM(), ns(), "applied", theirs, other);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_EQ(forced->value("/data/shared"_json_pointer, std::string()), "other");
  EXPECT_EQ(forced->value("/data/x"_json_pointer, std::string()), "2");
}

// The status subresource of Capstan's own Release CRD (crds/capstan.dev_releases.yaml),
// installed through the client with server-side apply.
TEST_F(CrudTest, StatusSubresource) {
  const std::string crd_file = absl::StrCat(CAPSTAN_SOURCE_DIR, "/crds/capstan.dev_releases.yaml");
  absl::StatusOr<std::vector<Object>> docs = ReadYamlFile(crd_file);
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(docs->size(), 1u);
  const Object& crd = docs->front();
  const std::string crd_name = NameOf(crd);
  ASSERT_EQ(crd_name, "releases.capstan.dev");
  ApplyOptions force;
  force.force = true;  // Capstan's own CRD: Capstan owns every field of it.
  absl::StatusOr<Object> installed =
      client_->Apply(CustomResourceDefinitions(), "", crd_name, crd, force);
  ASSERT_TRUE(installed.ok()) << installed.status();
  const Resource& rel = resources::Releases();
  ASSERT_TRUE(WaitForCrd(*client_, crd_name, rel, ns(), absl::Seconds(30)).ok());

  Object release = Object::parse(R"({
    "apiVersion": "capstan.dev/v1alpha1", "kind": "Release",
    "metadata": {"name": "web"},
    "spec": {"template": {"spec": {"containers": [
      {"name": "web", "image": "registry.example/web:1"}]}}}
  })");
  release["metadata"]["namespace"] = ns();
  absl::StatusOr<Object> created = client_->Create(rel, ns(), release);
  ASSERT_TRUE(created.ok()) << created.status();
  const int64_t generation = created->value("/metadata/generation"_json_pointer, int64_t{0});

  // Writing status through the main resource is ignored (the status subresource is on).
  absl::StatusOr<Object> ignored =
      client_->MergePatch(rel, ns(), "web", {{"status", {{"phase", "Ready"}}}});
  ASSERT_TRUE(ignored.ok()) << ignored.status();
  EXPECT_FALSE(ignored->contains("status") && ignored->at("status").contains("phase"))
      << ignored->dump();

  // A merge patch of /status sets it and leaves spec and generation alone.
  absl::StatusOr<Object> patched = client_->MergePatch(rel, ns(), "web",
                                                       {{"status",
                                                         {{"phase", "Progressing"},
                                                          {"observedGeneration", generation},
                                                          {"message", "rolling out"}}}},
                                                       "status");
  ASSERT_TRUE(patched.ok()) << patched.status();
  EXPECT_EQ(patched->value("/status/phase"_json_pointer, std::string()), "Progressing");
  EXPECT_EQ(patched->value("/metadata/generation"_json_pointer, int64_t{0}), generation);

  // Server-side apply of /status by capstan. The merge patch above was an Update
  // by manager "capstan", a different owner from the Apply manager "capstan" (the
  // API server tells managers apart by operation too); Capstan owns its Releases'
  // status, so it applies status with force.
  Object status_apply = {{"apiVersion", rel.ApiVersion()},
                         {"kind", rel.kind},
                         {"metadata", {{"name", "web"}, {"namespace", ns()}}},
                         {"status", {{"phase", "Ready"}, {"message", "all pods ready"}}}};
  ApplyOptions status_opts;
  status_opts.subresource = "status";
  absl::StatusOr<Object> applied = client_->Apply(rel, ns(), "web", status_apply, status_opts);
  ASSERT_FALSE(applied.ok());
  EXPECT_EQ(applied.status().code(), absl::StatusCode::kAborted) << applied.status();
  status_opts.force = true;
  applied = client_->Apply(rel, ns(), "web", status_apply, status_opts);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->value("/status/phase"_json_pointer, std::string()), "Ready");

  // The schema is enforced on the subresource: an unknown phase is Invalid (422).
  absl::StatusOr<Object> invalid =
      client_->MergePatch(rel, ns(), "web", {{"status", {{"phase", "Sideways"}}}}, "status");
  ASSERT_FALSE(invalid.ok());
  EXPECT_EQ(invalid.status().code(), absl::StatusCode::kInvalidArgument) << invalid.status();
  EXPECT_EQ(ApiReason(invalid.status()), "Invalid");

  // GET of the subresource.
  absl::StatusOr<Object> status = client_->Get(rel, ns(), "web", "status");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->value("/status/phase"_json_pointer, std::string()), "Ready");
  EXPECT_EQ(status->value("/status/message"_json_pointer, std::string()), "all pods ready");
}

// The managedFields entries of `obj` as "manager/operation" -> the fieldsV1 they own.
std::map<std::string, Object> ManagedFields(const Object& obj) {
  std::map<std::string, Object> out;
  if (!obj.contains("/metadata/managedFields"_json_pointer)) return out;
  for (const Object& e : obj.at("/metadata/managedFields"_json_pointer)) {
    out[absl::StrCat(e.value("manager", ""), "/", e.value("operation", ""))] =
        e.value("fieldsV1", Object::object());
  }
  return out;
}

// Create, Update and MergePatch name their field manager ("capstan" unless told
// otherwise) instead of leaving the API server to derive one from the User-Agent.
TEST_F(CrudTest, WritesRecordTheirFieldManager) {
  absl::StatusOr<RestConfig> config = ClusterConfig();
  ASSERT_TRUE(config.ok()) << config.status();
  config->user_agent = "itest-agent/1.0";  // What the server would fall back to.
  absl::StatusOr<std::unique_ptr<Client>> client = Client::FromConfig(*config);
  ASSERT_TRUE(client.ok()) << client.status();
  Client& c = **client;

  absl::StatusOr<Object> created = c.Create(CM(), ns(), ConfigMap(ns(), "fm", {{"a", "1"}}));
  ASSERT_TRUE(created.ok()) << created.status();
  std::map<std::string, Object> mf = ManagedFields(*created);
  ASSERT_TRUE(mf.contains("capstan/Update")) << created->at("metadata").dump();
  EXPECT_FALSE(mf.contains("itest-agent/Update")) << created->at("metadata").dump();
  EXPECT_TRUE(mf["capstan/Update"].contains("/f:data/f:a"_json_pointer)) << mf["capstan/Update"];

  Object update = *created;
  update["data"]["b"] = "2";
  absl::StatusOr<Object> updated = c.Update(CM(), ns(), update);
  ASSERT_TRUE(updated.ok()) << updated.status();
  mf = ManagedFields(*updated);
  EXPECT_FALSE(mf.contains("itest-agent/Update")) << updated->at("metadata").dump();
  EXPECT_TRUE(mf["capstan/Update"].contains("/f:data/f:b"_json_pointer)) << mf["capstan/Update"];

  absl::StatusOr<Object> patched = c.MergePatch(CM(), ns(), "fm", {{"data", {{"c", "3"}}}});
  ASSERT_TRUE(patched.ok()) << patched.status();
  mf = ManagedFields(*patched);
  EXPECT_FALSE(mf.contains("itest-agent/Update")) << patched->at("metadata").dump();
  EXPECT_TRUE(mf["capstan/Update"].contains("/f:data/f:c"_json_pointer)) << mf["capstan/Update"];

  // Another manager's write is recorded under its own name, and takes the field over.
  patched = c.MergePatch(CM(), ns(), "fm", {{"data", {{"c", "4"}}}}, "", "capstan-other");
  ASSERT_TRUE(patched.ok()) << patched.status();
  mf = ManagedFields(*patched);
  EXPECT_TRUE(mf["capstan-other/Update"].contains("/f:data/f:c"_json_pointer))
      << patched->at("metadata").dump();
  EXPECT_FALSE(mf["capstan/Update"].contains("/f:data/f:c"_json_pointer))
      << patched->at("metadata").dump();
  EXPECT_TRUE(mf["capstan/Update"].contains("/f:data/f:a"_json_pointer))
      << patched->at("metadata").dump();

  Object update2 = *patched;
  update2["data"]["d"] = "5";
  updated = c.Update(CM(), ns(), update2, "", "capstan-other");
  ASSERT_TRUE(updated.ok()) << updated.status();
  mf = ManagedFields(*updated);
  EXPECT_TRUE(mf["capstan-other/Update"].contains("/f:data/f:d"_json_pointer))
      << updated->at("metadata").dump();
  EXPECT_FALSE(mf.contains("itest-agent/Update")) << updated->at("metadata").dump();
}

TEST_F(CrudTest, DiscoveryListsCoreAndCapstanGroups) {
  absl::StatusOr<std::vector<ApiGroupVersion>> groups = client_->ServerGroups();
  ASSERT_TRUE(groups.ok()) << groups.status();
  bool core = false;
  bool apps = false;
  for (const ApiGroupVersion& g : *groups) {
    if (g.group.empty() && g.preferred_version == "v1") core = true;
    if (g.group == "apps" && g.preferred_version == "v1") apps = true;
  }
  EXPECT_TRUE(core);
  EXPECT_TRUE(apps);
}

TEST_F(CrudTest, NewConnectionsResumeTheTlsSession) {
  auto handshakes = [](const char* resumed) {
    return Metrics::Get().tls_handshakes->Add({{"resumed", resumed}}).Value();
  };
  // A fresh client: its first connection has no session to offer.
  std::unique_ptr<Client> client = NewClusterClient();
  ASSERT_NE(client, nullptr);
  const double full = handshakes("false");
  const double resumed = handshakes("true");
  ASSERT_EQ(client->Get(CM(), ns(), "absent").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(handshakes("false") - full, 1);
  EXPECT_EQ(handshakes("true") - resumed, 0);

  // A watch always opens a connection of its own (watches have their own
  // http_client): it resumes the session the first request set up.
  Cancellation cancel;
  std::thread watch([&] {
    WatchOptions options;
    (void)client->Watch(
        CM(), ns(), options, [](WatchEvent&&) { return true; }, &cancel);
  });
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (handshakes("true") - resumed < 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  cancel.Cancel();
  watch.join();
  EXPECT_EQ(handshakes("true") - resumed, 1);
  EXPECT_EQ(handshakes("false") - full, 1);
}

}  // namespace
}  // namespace capstan::kube::itest
