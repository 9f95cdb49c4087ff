#pragma once

// Helpers for the kube integration tests: the test cluster of tests/cluster
// ($CAPSTAN_CLUSTER_DIR), clients for it, a namespace per test, polling with a
// deadline, etcd's HTTP gateway for forced compaction, and YAML manifests.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "capstan/kube/client.h"
#include "capstan/kube/informer.h"
#include "capstan/kube/rest_config.h"
#include "capstan/kube/transport.h"
#include "gtest/gtest.h"

namespace capstan::kube::itest {

// $CAPSTAN_CLUSTER_DIR, or "" when the tests run without a cluster.
std::string ClusterDir();

// Skips the current test (from a test body or SetUp) when there is no cluster.
#define CAPSTAN_REQUIRE_CLUSTER()                                                               \
  do {                                                                                          \
    if (::capstan::kube::itest::ClusterDir().empty()) {                                         \
      GTEST_SKIP() << "CAPSTAN_CLUSTER_DIR is not set: start a cluster with "                   \
                      "`tests/cluster/cluster.sh up DIR` and run with CAPSTAN_CLUSTER_DIR=DIR " \
                      "(ctest does this through the cluster fixture)";                          \
    }                                                                                           \
  } while (false)

// The admin kubeconfig of the cluster: DIR/kubeconfig, or the KUBECONFIG named in
// DIR/env when the ctest fixture reuses an existing cluster ($CAPSTAN_E2E_KUBECONFIG).
std::string ClusterKubeconfig();

// The RestConfig of that kubeconfig, with the client-side rate limit raised to
// `qps`/`burst` when they are positive.
absl::StatusOr<RestConfig> ClusterConfig(double qps = 0, int burst = 0);

// A client for the cluster (defaults: the kubeconfig's 20 qps / 30 burst).
std::unique_ptr<Client> NewClusterClient(double qps = 0, int burst = 0);

// A client on top of `transport` with `options`.
std::unique_ptr<Client> NewClient(std::unique_ptr<Transport> transport, Client::Options options);

// Polls `done` every `interval` until it is true or `timeout` passes; returns its last value.
bool PollUntil(const std::function<bool()>& done, absl::Duration timeout,
               absl::Duration interval = absl::Milliseconds(100));

// Eight random lower-case alphanumerics, for names that must not collide between runs.
std::string RandomSuffix();

// A namespace of its own for one test: created in the constructor (the name is
// `prefix-<random>`), deleted in the destructor without waiting (the namespace
// controller removes its content in the background).
class TestNamespace {
 public:
  TestNamespace(Client& client, const std::string& prefix);
  ~TestNamespace();
  TestNamespace(const TestNamespace&) = delete;
  TestNamespace& operator=(const TestNamespace&) = delete;

  const std::string& name() const { return name_; }
  bool ok() const { return status_.ok(); }
  const absl::Status& status() const { return status_; }

 private:
  Client& client_;
  std::string name_;
  absl::Status status_;
};

// A minimal ConfigMap.
Object ConfigMap(const std::string& ns, const std::string& name,
                 const Object& data = Object::object(), const Object& labels = Object::object());

// Objects' metadata.resourceVersion / uid / name, "" when absent.
std::string ResourceVersionOf(const Object& obj);
std::string UidOf(const Object& obj);
std::string NameOf(const Object& obj);

// --- etcd ----------------------------------------------------------------------
//
// The cluster's etcd serves plain HTTP on a loopback port chosen at start-up
// (tests/cluster/cluster.sh passes it as --listen-client-urls). We find it from
// the process itself: DIR/pids/etcd holds etcd's pid and /proc/<pid>/cmdline its
// flags; failing that, kube-apiserver's --etcd-servers (DIR/pids/kube-apiserver).
// etcd's gRPC gateway then answers JSON on /v3/kv/range and /v3/kv/compaction.

// "http://127.0.0.1:<port>", or NotFound when the cluster's etcd cannot be found
// (for example when the fixture reuses a cluster started elsewhere).
absl::StatusOr<std::string> FindEtcdEndpoint();
// The current etcd revision (the header revision of a one-key range request).
absl::StatusOr<int64_t> EtcdRevision(const std::string& endpoint);
// Compacts etcd's history up to `revision` (physical: waits until it is done).
// Compacting at or below an earlier compaction is OK.
absl::Status EtcdCompact(const std::string& endpoint, int64_t revision);

// --- manifests -------------------------------------------------------------------

// The documents of a YAML file as JSON, reading scalars like kubectl (YAML 1.1 as in
// sigs.k8s.io/yaml): unquoted true/false/yes/no/on/off are booleans, integers and
// floats are numbers, null/~/empty are null; quoted scalars are strings.
absl::StatusOr<std::vector<Object>> ReadYamlFile(const std::string& path);

// Waits until a CustomResourceDefinition reports Established=True and its resource
// answers a list in `ns` (the handler is installed a moment after Established).
absl::Status WaitForCrd(Client& client, const std::string& crd_name, const Resource& resource,
                        const std::string& ns, absl::Duration timeout);

// apiextensions.k8s.io/v1 customresourcedefinitions.
const Resource& CustomResourceDefinitions();

// A CustomResourceDefinition of one test's own (group <random>.itest.capstan.dev,
// kind Thing, any content), so the test may rebuild the API server's cache for it
// without disturbing others. Created in the constructor, deleted in the destructor.
class ScratchCrd {
 public:
  explicit ScratchCrd(Client& client);
  ~ScratchCrd();
  ScratchCrd(const ScratchCrd&) = delete;
  ScratchCrd& operator=(const ScratchCrd&) = delete;

  const absl::Status& status() const { return status_; }
  const Resource& resource() const { return resource_; }
  const std::string& name() const { return name_; }

  // A Thing with a `value`.
  Object Thing(const std::string& ns, const std::string& name, int value) const;
  // Changes the CRD's spec (a new short name). The API server then rebuilds its
  // storage and watch cache for the kind: it closes the open watches, answers 429
  // "storage is (re)initializing" for a moment, and the new cache starts at the
  // current revision, so older resourceVersions get 410 Gone from it.
  absl::Status RebuildCache();

 private:
  Client& client_;
  Resource resource_;
  std::string name_;
  absl::Status status_;
};

// --- informers -------------------------------------------------------------------

// Polls until `informer`'s cache holds exactly what the server holds: the same keys
// with the same resourceVersions as a fresh ListAll (in `ns`, with `selector`).
// The failure message shows both sides.
::testing::AssertionResult Converges(Client& client, const Informer& informer,
                                     const std::string& ns, const std::string& selector,
                                     absl::Duration timeout);

}  // namespace capstan::kube::itest
