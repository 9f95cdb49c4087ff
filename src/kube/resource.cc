#include "capstan/kube/resource.h"

#include "absl/strings/str_cat.h"

namespace capstan::kube {

std::string CollectionPath(const Resource& r, absl::string_view ns) {
  std::string path = r.group.empty() ? absl::StrCat("/api/", r.version)
                                     : absl::StrCat("/apis/", r.group, "/", r.version);
  if (r.namespaced && !ns.empty()) {
    absl::StrAppend(&path, "/namespaces/", ns);
  }
  absl::StrAppend(&path, "/", r.resource);
  return path;
}

std::string ObjectPath(const Resource& r, absl::string_view ns, absl::string_view name,
                       absl::string_view subresource) {
  std::string path = absl::StrCat(CollectionPath(r, ns), "/", name);
  if (!subresource.empty()) {
    absl::StrAppend(&path, "/", subresource);
  }
  return path;
}

namespace resources {
namespace {
const Resource& Make(const char* group, const char* version, const char* resource, const char* kind,
                     bool namespaced) {
  // Intentionally leaked: these are process-lifetime constants.
  return *new Resource{group, version, resource, kind, namespaced};
}
}  // namespace

#define CAPSTAN_RESOURCE(fn, group, version, plural, kind, namespaced)         \
  const Resource& fn() {                                                       \
    static const Resource& r = Make(group, version, plural, kind, namespaced); \
    return r;                                                                  \
  }

CAPSTAN_RESOURCE(Namespaces, "", "v1", "namespaces", "Namespace", false)
CAPSTAN_RESOURCE(Pods, "", "v1", "pods", "Pod", true)
CAPSTAN_RESOURCE(Services, "", "v1", "services", "Service", true)
CAPSTAN_RESOURCE(Secrets, "", "v1", "secrets", "Secret", true)
CAPSTAN_RESOURCE(ConfigMaps, "", "v1", "configmaps", "ConfigMap", true)
CAPSTAN_RESOURCE(Events, "events.k8s.io", "v1", "events", "Event", true)
CAPSTAN_RESOURCE(Deployments, "apps", "v1", "deployments", "Deployment", true)
CAPSTAN_RESOURCE(ReplicaSets, "apps", "v1", "replicasets", "ReplicaSet", true)
CAPSTAN_RESOURCE(StatefulSets, "apps", "v1", "statefulsets", "StatefulSet", true)
CAPSTAN_RESOURCE(DaemonSets, "apps", "v1", "daemonsets", "DaemonSet", true)
CAPSTAN_RESOURCE(ControllerRevisions, "apps", "v1", "controllerrevisions", "ControllerRevision",
                 true)
CAPSTAN_RESOURCE(HorizontalPodAutoscalers, "autoscaling", "v2", "horizontalpodautoscalers",
                 "HorizontalPodAutoscaler", true)
CAPSTAN_RESOURCE(PodDisruptionBudgets, "policy", "v1", "poddisruptionbudgets",
                 "PodDisruptionBudget", true)
CAPSTAN_RESOURCE(Ingresses, "networking.k8s.io", "v1", "ingresses", "Ingress", true)
CAPSTAN_RESOURCE(Jobs, "batch", "v1", "jobs", "Job", true)
CAPSTAN_RESOURCE(HttpRoutes, "gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", true)
CAPSTAN_RESOURCE(EndpointSlices, "discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true)
CAPSTAN_RESOURCE(Leases, "coordination.k8s.io", "v1", "leases", "Lease", true)
CAPSTAN_RESOURCE(Releases, "capstan.dev", "v1alpha1", "releases", "Release", true)
CAPSTAN_RESOURCE(Environments, "capstan.dev", "v1alpha1", "environments", "Environment", false)
CAPSTAN_RESOURCE(ReleaseApprovals, "capstan.dev", "v1alpha1", "releaseapprovals", "ReleaseApproval",
                 true)
CAPSTAN_RESOURCE(SecretRotations, "capstan.dev", "v1alpha1", "secretrotations", "SecretRotation",
                 true)
CAPSTAN_RESOURCE(AnalysisRuns, "capstan.dev", "v1alpha1", "analysisruns", "AnalysisRun", true)

#undef CAPSTAN_RESOURCE

}  // namespace resources
}  // namespace capstan::kube
