#pragma once

// Release (capstan.dev/v1alpha1): the typed view of crds/capstan.dev_releases.yaml.
//
// ParseRelease reads what the API server returns (or a file) and applies the same
// defaults the CRD schema declares, so an object that went through the API server and
// one read straight from a file give the same Release. ValidateRelease reports what
// would make the release impossible to run: the checks of the CRD schema and its CEL
// rules again (so `capstan render` catches them without a cluster) and what the schema
// cannot express (reserved labels, target ports naming no container port, names too
// long for the objects derived from them).
//
// Nothing here throws: nlohmann and yaml-cpp exceptions are caught and returned as
// absl::Status. All types are plain values; thread-compatible.

#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "capstan/api/analysis.h"
#include "nlohmann/json.hpp"

namespace capstan::api {

// A Kubernetes int-or-string: a count (3) or a percentage ("25%").
class IntOrString {
 public:
  IntOrString() = default;  // the integer 0
  static IntOrString FromInt(int32_t value);
  static IntOrString FromString(std::string value);

  bool is_string() const { return is_string_; }
  int32_t int_value() const { return int_value_; }
  const std::string& string_value() const { return string_value_; }

  // 3 or "25%", as JSON.
  nlohmann::json ToJson() const;
  // 3 or "25%" (quoted), for messages.
  std::string DebugString() const;
  // The N of a string "N%"; nullopt for integers and malformed strings.
  std::optional<int32_t> Percent() const;
  // True for 0 and "0%".
  bool IsZero() const;
  // The value against `total` the way Kubernetes resolves it: integers as they are,
  // "N%" as N% of total rounded up or down. InvalidArgument for a string that is not
  // a percentage. Worked numbers: "25%" of 10 is 3 rounded up, 2 rounded down.
  absl::StatusOr<int32_t> Scaled(int32_t total, bool round_up) const;

  friend bool operator==(const IntOrString&, const IntOrString&) = default;

 private:
  bool is_string_ = false;
  int32_t int_value_ = 0;
  std::string string_value_;
};

enum class StrategyType { kRollingUpdate, kBlueGreen };
// "RollingUpdate" / "BlueGreen".
const char* StrategyTypeName(StrategyType type);

enum class Color { kBlue, kGreen };
// "blue" / "green".
const char* ColorName(Color color);
Color OtherColor(Color color);
std::optional<Color> ParseColor(const std::string& name);

// status.phase of a Release: where it stands (the CRD says what each means). kNone is a
// Release Capstan has not written a status for yet (shown as Pending).
enum class ReleasePhase {
  kNone,
  kPending,
  kWaiting,
  kPaused,
  kProgressing,
  kPreviewing,
  kReady,
  kDegraded,
  kRolledBack,
  kAborted,
  kStalled,
};
// "Progressing", "RolledBack", ...; "" for kNone.
const char* ReleasePhaseName(ReleasePhase phase);
std::ostream& operator<<(std::ostream& os, ReleasePhase phase);

// status.history[].phase: how a revision fared. kNone: no phase recorded (or one this
// version does not know).
enum class RevisionPhase {
  kNone,
  kProgressing,
  kPreviewing,
  kReady,
  kSuperseded,
  kFailed,
  kRolledBack,
  kAborted,
};
// "Ready", "Superseded", ...; "" for kNone.
const char* RevisionPhaseName(RevisionPhase phase);
std::ostream& operator<<(std::ostream& os, RevisionPhase phase);

struct ObjectMeta {
  std::string name;
  std::string ns;  // metadata.namespace; "" in a file that does not say
  std::string uid;
  int64_t generation = 0;
  std::string resource_version;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;

  friend bool operator==(const ObjectMeta&, const ObjectMeta&) = default;
};

struct ServicePort {
  std::string name;
  int32_t port = 0;
  std::optional<IntOrString> target_port;  // nullopt: Kubernetes uses port
  std::string protocol = "TCP";
  std::optional<int32_t> node_port;

  friend bool operator==(const ServicePort&, const ServicePort&) = default;
};

// Labels and annotations a Release adds to one object Capstan renders (a Service, the
// HPA, the PDB), e.g. a cloud load balancer's Service annotations. Keys under
// capstan.dev/ and the label app.kubernetes.io/managed-by are Capstan's (a validation
// error); Capstan's own labels always win.
struct ExtraMetadata {
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;

  bool empty() const { return labels.empty() && annotations.empty(); }
  friend bool operator==(const ExtraMetadata&, const ExtraMetadata&) = default;
};

struct ServiceSpec {
  std::string type = "ClusterIP";  // ClusterIP, NodePort, LoadBalancer
  std::vector<ServicePort> ports;
  ExtraMetadata metadata;          // spec.service.metadata: the Service <name>
  ExtraMetadata preview_metadata;  // spec.service.previewMetadata: <name>-preview (BlueGreen)

  friend bool operator==(const ServiceSpec&, const ServiceSpec&) = default;
};

struct AutoscalingSpec {
  int32_t min_replicas = 1;
  int32_t max_replicas = 0;
  // autoscaling/v2 MetricSpec list, passed through; defaults to CPU at 80% utilization
  // (DefaultMetrics()).
  nlohmann::json metrics = nlohmann::json::array();
  // autoscaling/v2 HorizontalPodAutoscalerBehavior; null when unset.
  nlohmann::json behavior;
  ExtraMetadata metadata;  // spec.autoscaling.metadata: the HPA

  static nlohmann::json DefaultMetrics();
  friend bool operator==(const AutoscalingSpec&, const AutoscalingSpec&) = default;
};

struct DisruptionBudgetSpec {
  // Exactly one is set in a valid release.
  std::optional<IntOrString> min_available;
  std::optional<IntOrString> max_unavailable;
  ExtraMetadata metadata;  // spec.disruptionBudget.metadata: the PDB

  friend bool operator==(const DisruptionBudgetSpec&, const DisruptionBudgetSpec&) = default;
};

// spec.ingress: a networking.k8s.io/v1 Ingress <name> sending every host's paths to
// the Service <name> (with BlueGreen the active Service, so traffic follows the switch),
// and optionally a preview host to <name>-preview. Needs spec.service.
struct IngressPath {
  std::string path = "/";
  std::string path_type = "Prefix";  // Prefix, Exact, ImplementationSpecific

  friend bool operator==(const IngressPath&, const IngressPath&) = default;
};

struct IngressHost {
  std::string host;                // "" matches every host
  std::vector<IngressPath> paths;  // defaults to [{path: /, pathType: Prefix}]

  friend bool operator==(const IngressHost&, const IngressHost&) = default;
};

struct IngressTls {
  std::string secret_name;
  std::vector<std::string> hosts;

  friend bool operator==(const IngressTls&, const IngressTls&) = default;
};

struct IngressSpec {
  std::string class_name;  // spec.ingressClassName; "" for the cluster's default class
  std::vector<IngressHost> hosts;
  std::vector<IngressTls> tls;
  // The Service port traffic goes to (its name or number); unset: the first port.
  std::optional<IntOrString> port;
  // BlueGreen with a preview Service: this host goes to <name>-preview (same paths as
  // the first host).
  std::string preview_host;
  ExtraMetadata metadata;  // e.g. the ingress controller's annotations

  friend bool operator==(const IngressSpec&, const IngressSpec&) = default;
};

// spec.route: a gateway.networking.k8s.io/v1 HTTPRoute <name> attached to the given
// Gateways, sending the hostnames and matches to the Service <name> (BlueGreen: the
// active Service), and with previewHostnames a second HTTPRoute <name>-preview to
// <name>-preview. Needs spec.service and the Gateway API CRDs in the cluster.
struct RouteRule {
  // Gateway API HTTPRouteMatch list, passed through (nulls removed); empty: the
  // Gateway's default (every request, path prefix /).
  nlohmann::json matches = nlohmann::json::array();

  friend bool operator==(const RouteRule&, const RouteRule&) = default;
};

struct RouteSpec {
  // Gateway API ParentReference list, passed through (nulls removed). At least one.
  nlohmann::json parent_refs = nlohmann::json::array();
  std::vector<std::string> hostnames;
  std::vector<RouteRule> rules;  // empty: one rule matching every request
  std::optional<IntOrString> port;
  std::vector<std::string> preview_hostnames;
  ExtraMetadata metadata;

  friend bool operator==(const RouteSpec&, const RouteSpec&) = default;
};

// spec.hooks.<hook>: a batch/v1 Job Capstan creates once per revision (named
// <release>-<revision>-pre|post|rollback, owned by the Release), from this subset of a
// JobSpec. See rollout/hooks.h for when each hook runs.
struct HookJobSpec {
  // The Job's pod template (a PodTemplateSpec: metadata.labels/annotations and spec),
  // nulls removed. restartPolicy defaults to Never (Always is refused).
  nlohmann::json pod_template = nlohmann::json::object();
  std::optional<int32_t> backoff_limit;            // unset: the Job's default (6)
  std::optional<int64_t> active_deadline_seconds;  // unset: no deadline
  ExtraMetadata metadata;                          // the Job's labels and annotations

  friend bool operator==(const HookJobSpec&, const HookJobSpec&) = default;
};

struct HooksSpec {
  std::optional<HookJobSpec> pre_rollout;
  std::optional<HookJobSpec> post_rollout;
  std::optional<HookJobSpec> on_rollback;
  // Finished hook Jobs older than this are deleted, except the newest of each hook and
  // the Jobs of the revisions in play. Defaults to 86400 (one day).
  int64_t retention_seconds = 86400;

  bool any() const {
    return pre_rollout.has_value() || post_rollout.has_value() || on_rollback.has_value();
  }
  friend bool operator==(const HooksSpec&, const HooksSpec&) = default;
};

struct RollingUpdateSpec {
  IntOrString max_surge = IntOrString::FromString("25%");
  IntOrString max_unavailable = IntOrString::FromString("25%");
  // Metric analysis while the rollout progresses and bakeSeconds after it completed.
  std::optional<AnalysisGateSpec> analysis;

  friend bool operator==(const RollingUpdateSpec&, const RollingUpdateSpec&) = default;
};

struct BlueGreenSpec {
  bool auto_promote = true;
  int32_t promotion_delay_seconds = 0;
  int32_t scale_down_delay_seconds = 30;
  bool preview_service = true;
  int32_t failure_threshold = 5;
  // Against the preview colour before the switch; in the scale-down window after it.
  std::optional<AnalysisGateSpec> pre_promotion_analysis;
  std::optional<AnalysisGateSpec> post_promotion_analysis;

  friend bool operator==(const BlueGreenSpec&, const BlueGreenSpec&) = default;
};

struct StrategySpec {
  StrategyType type = StrategyType::kRollingUpdate;
  // Always populated with defaults; the *_set flags say whether the object had the
  // block (a block for the other type is a validation error).
  RollingUpdateSpec rolling_update;
  BlueGreenSpec blue_green;
  bool rolling_update_set = false;
  bool blue_green_set = false;

  friend bool operator==(const StrategySpec&, const StrategySpec&) = default;
};

struct RollbackSpec {
  bool automatic = true;
  int32_t progress_deadline_seconds = 600;
  int32_t max_restarts = 3;  // container restarts per pod of the new revision

  friend bool operator==(const RollbackSpec&, const RollbackSpec&) = default;
};

struct ReleaseSpec {
  // spec.template as given (a PodTemplateSpec), nulls removed. Rendering adds labels.
  nlohmann::json pod_template = nlohmann::json::object();
  // Set unless autoscaling is (defaults to 1). Both set is a validation error.
  std::optional<int32_t> replicas;
  // True when replicas is ParseRelease's default (neither replicas nor autoscaling
  // written), so an Environment's default replica count may replace it.
  bool replicas_defaulted = false;
  std::optional<AutoscalingSpec> autoscaling;
  std::optional<ServiceSpec> service;
  std::optional<DisruptionBudgetSpec> disruption_budget;
  std::optional<IngressSpec> ingress;
  std::optional<RouteSpec> route;
  HooksSpec hooks;  // spec.hooks
  StrategySpec strategy;
  RollbackSpec rollback;
  int32_t revision_history_limit = 10;
  std::string environment;  // "" when unset
  // spec.adopt: take over an existing Deployment and Service named like the Release,
  // in place, when the object itself consents (annotation capstan.dev/adopt naming the
  // Release; rollout/adoption.h decides).
  bool adopt = false;

  friend bool operator==(const ReleaseSpec&, const ReleaseSpec&) = default;
};

// metav1.Condition.
struct Condition {
  std::string type;
  std::string status;  // "True", "False", "Unknown"
  std::string reason;
  std::string message;
  absl::Time last_transition_time = absl::UnixEpoch();
  int64_t observed_generation = 0;

  friend bool operator==(const Condition&, const Condition&) = default;
};

struct RevisionRecord {
  std::string revision;
  std::vector<std::string> images;
  RevisionPhase phase = RevisionPhase::kNone;
  std::optional<absl::Time> time;
  // render::DesiredStateDigest of the state last let through the gates at this revision,
  // and render::TemplateDigest of its pod template (what its ControllerRevision must
  // still hold for a rollback). Empty in records written before digests existed.
  std::string digest;
  std::string template_digest;

  friend bool operator==(const RevisionRecord&, const RevisionRecord&) = default;
};

// status of a Release.
struct ReleaseStatus {
  int64_t observed_generation = 0;
  ReleasePhase phase = ReleasePhase::kNone;
  std::string message;
  std::string current_revision;
  std::string stable_revision;
  std::string failed_revision;
  int32_t replicas = 0;
  int32_t ready_replicas = 0;
  int32_t updated_replicas = 0;
  int32_t available_replicas = 0;
  std::string ready_text;  // "3/3", shown by kubectl get
  std::optional<Color> active_color;
  std::optional<Color> preview_color;
  bool emergency = false;
  // Who set the emergency annotation (capstan.dev/emergency-by, written by admission).
  std::string emergency_by;
  // render::DesiredStateDigest of the spec (Environment defaults applied), and of the
  // state the gates last let through (what Capstan runs or works toward). A change is
  // desiredDigest != appliedDigest, whatever the short revision says.
  std::string desired_digest;
  std::string applied_digest;
  // The same digest of the state let through, with the restart annotations
  // (kRestartAnnotationPrefix) taken out of the pod template (policy/restart.h): a
  // desired state whose restart-free digest equals it is only a restart.
  std::string applied_base_digest;
  // The restart annotations of the state let through (what the SecretRotation that
  // restarts the Release waits for: Ready with its stamp).
  std::map<std::string, std::string> secret_versions;
  // The current revision is a return to a revision that already ran Ready in this
  // Release (policy/revert.h): approval, freeze windows and the upstream soak did not
  // hold it. The message says which revision and what it skipped.
  std::string revert;
  std::string environment;
  // The capstan.dev/retry annotation value last acted on; a new value asks for one
  // more attempt at the failed revision.
  std::string last_retry;
  // The capstan.dev/abort annotation value last acted on (same token rules as retry).
  std::string last_abort;
  // BlueGreen: when the preview colour became fully available with ready endpoints
  // (promotionDelaySeconds counts from here), when traffic last moved, and when the
  // idle colour is scaled down (scaleDownDelaySeconds after a switch or a failure).
  std::optional<absl::Time> preview_ready_at;
  std::optional<absl::Time> switched_at;
  std::optional<absl::Time> scale_down_at;
  std::vector<RevisionRecord> history;  // newest first
  std::vector<Condition> conditions;

  friend bool operator==(const ReleaseStatus&, const ReleaseStatus&) = default;
};

struct Release {
  ObjectMeta metadata;
  ReleaseSpec spec;
  ReleaseStatus status;
  // Never parsed: set by the controller when the RollingUpdate Deployment was adopted
  // (spec.adopt). Its live spec.selector.matchLabels, immutable for that Deployment's
  // life: the Deployment and the Service select by it and RenderPodTemplate adds its
  // labels to the pod template (docs/design.md "Adoption"). Empty: Capstan's selector.
  std::map<std::string, std::string> adopted_selector;

  // "namespace/name" (or "name" without a namespace), for logs and messages.
  std::string Key() const;

  friend bool operator==(const Release&, const Release&) = default;
};

// A Release from its JSON form (apiVersion capstan.dev/v1alpha1, kind Release), with
// the CRD's defaults applied. InvalidArgument, naming the field, when the object is
// not a Release or a field has the wrong type; value checks are ValidateRelease's.
absl::StatusOr<Release> ParseRelease(const nlohmann::json& object);

// Every Release in a YAML stream (documents separated by ---). Empty documents and
// objects of other kinds are skipped (a file may carry a Namespace beside its Release);
// a document that says it is a Release but does not parse is an error naming the
// document. InvalidArgument for malformed YAML (with line and column) or a stream
// with no Release.
absl::StatusOr<std::vector<Release>> ParseReleaseYaml(const std::string& text);

// One Job step ({template, backoffLimit, activeDeadlineSeconds, metadata}: a Release's
// spec.hooks.<hook>, a SecretRotation's spec.target.hook.<step>) at `path`, and its
// value checks (the template has a spec with containers, each named and with an image;
// restartPolicy Never or OnFailure; no reserved labels), one sentence per problem.
absl::StatusOr<HookJobSpec> ParseHookJobSpec(const nlohmann::json& job, const std::string& path);
std::vector<std::string> ValidateHookJobSpec(const std::string& path, const HookJobSpec& job);

// What makes the release impossible to run, one sentence per problem starting with
// the field path. Empty when the release is fine.
std::vector<std::string> ValidateRelease(const Release& release);

// status from JSON (lenient about absent fields, strict about types) and back.
absl::StatusOr<ReleaseStatus> ParseReleaseStatus(const nlohmann::json& status);
nlohmann::json ReleaseStatusToJson(const ReleaseStatus& status);

}  // namespace capstan::api
