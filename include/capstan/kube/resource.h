#pragma once

// Which API resource a request is about, and the REST paths that name it.

#include <string>

#include "absl/strings/string_view.h"

namespace capstan::kube {

// A served resource: group "" is the core group (/api/v1).
struct Resource {
  std::string group;     // "apps", "" for core
  std::string version;   // "v1"
  std::string resource;  // plural, lower case: "deployments"
  std::string kind;      // "Deployment"
  bool namespaced = true;

  std::string ApiVersion() const { return group.empty() ? version : group + "/" + version; }
};

// /api/v1/namespaces/<ns>/pods, /apis/apps/v1/deployments (ns empty: all namespaces
// or a cluster-scoped resource).
std::string CollectionPath(const Resource& r, absl::string_view ns);
// CollectionPath + "/<name>" (+ "/<subresource>" when given).
std::string ObjectPath(const Resource& r, absl::string_view ns, absl::string_view name,
                       absl::string_view subresource = "");

// The resources Capstan works with.
namespace resources {
const Resource& Namespaces();
const Resource& Pods();
const Resource& Services();
const Resource& Secrets();
const Resource& ConfigMaps();
const Resource& Events();  // events.k8s.io/v1
const Resource& Deployments();
const Resource& ReplicaSets();
const Resource& StatefulSets();
const Resource& DaemonSets();
const Resource& ControllerRevisions();
const Resource& HorizontalPodAutoscalers();  // autoscaling/v2
const Resource& PodDisruptionBudgets();      // policy/v1
const Resource& Ingresses();                 // networking.k8s.io/v1
const Resource& Jobs();                      // batch/v1
const Resource& HttpRoutes();                // gateway.networking.k8s.io/v1 (a CRD)
const Resource& EndpointSlices();            // discovery.k8s.io/v1
const Resource& Leases();                    // coordination.k8s.io/v1
const Resource& Releases();                  // capstan.dev/v1alpha1
const Resource& Environments();              // capstan.dev/v1alpha1, cluster-scoped
const Resource& ReleaseApprovals();          // capstan.dev/v1alpha1
const Resource& SecretRotations();           // capstan.dev/v1alpha1
const Resource& AnalysisRuns();              // capstan.dev/v1alpha1
}  // namespace resources

}  // namespace capstan::kube
