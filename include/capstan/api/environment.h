#pragma once

// Environment (capstan.dev/v1alpha1, cluster-scoped): the typed view of
// crds/capstan.dev_environments.yaml, and ReleaseApproval (namespaced) from
// crds/capstan.dev_releaseapprovals.yaml.
//
// An Environment says which namespaces belong to it (names and/or a label selector),
// what configuration every Release there gets (env vars, envFrom, pod labels and
// annotations, default container resources, a default replica count), and which
// policies guard changes (allowed strategies, approval, freeze windows, an upstream
// environment with a soak time, emergency releases).
//
// ParseEnvironment applies the CRD's defaults, as ParseRelease does. ValidateEnvironment
// checks what the schema cannot: IANA time zones, freeze windows that are empty, an
// upstream naming the Environment itself, reserved labels. ValidateEnvironments checks a
// set of Environments against each other: a namespace name claimed twice, upstream
// chains that loop or name an Environment that does not exist.
//
// Nothing here throws. Plain values; thread-compatible.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "capstan/api/release.h"
#include "nlohmann/json.hpp"

namespace capstan::api {

inline constexpr char kEnvironmentKind[] = "Environment";
inline constexpr char kReleaseApprovalKind[] = "ReleaseApproval";

// A metav1.LabelSelector requirement: operator In, NotIn, Exists or DoesNotExist.
struct LabelSelectorRequirement {
  std::string key;
  std::string op;
  std::vector<std::string> values;

  friend bool operator==(const LabelSelectorRequirement&,
                         const LabelSelectorRequirement&) = default;
};

// metav1.LabelSelector. An empty selector matches everything (as in Kubernetes); the
// Environment type only uses one when it is given and not empty (validation).
struct LabelSelector {
  std::map<std::string, std::string> match_labels;
  std::vector<LabelSelectorRequirement> match_expressions;

  bool Empty() const { return match_labels.empty() && match_expressions.empty(); }
  bool Matches(const std::map<std::string, std::string>& labels) const;

  friend bool operator==(const LabelSelector&, const LabelSelector&) = default;
};

enum class Weekday { kMonday, kTuesday, kWednesday, kThursday, kFriday, kSaturday, kSunday };
// "Mon" .. "Sun".
const char* WeekdayName(Weekday day);

// A period in which changes are not rolled out. Either recurring (days + start/end
// wall-clock times in time_zone) or absolute (from/until instants).
//
// Recurring: the window opens on each listed day at `start` and closes at `end`; when
// end <= start it closes at `end` on the following day (18:00-08:00 crosses midnight),
// so `days` lists the days a window *opens*: Fri 18:00-08:00 freezes until Saturday
// 08:00. Wall times follow the zone's daylight-saving rules; a wall time that does not
// exist (spring forward) means the moment the clocks jump, one that exists twice (fall
// back) opens at its first and closes at its second occurrence: DST never shortens a
// freeze.
struct FreezeWindow {
  std::string name;
  std::string time_zone = "UTC";  // IANA name, e.g. Europe/Berlin
  // Recurring.
  std::vector<Weekday> days;
  std::string start;  // "HH:MM"
  std::string end;    // "HH:MM"
  // Absolute, [from, until).
  std::optional<absl::Time> from;
  std::optional<absl::Time> until;

  bool recurring() const { return !from.has_value() && !until.has_value(); }
  friend bool operator==(const FreezeWindow&, const FreezeWindow&) = default;
};

struct UpstreamSpec {
  std::string environment;  // "" when unset
  // How long the same revision must have been Ready upstream.
  int32_t soak_seconds = 0;

  friend bool operator==(const UpstreamSpec&, const UpstreamSpec&) = default;
};

struct EnvironmentDefaults {
  std::vector<nlohmann::json> env;                 // core/v1 EnvVar, each with a name
  std::vector<nlohmann::json> env_from;            // core/v1 EnvFromSource
  std::map<std::string, std::string> labels;       // pod template labels
  std::map<std::string, std::string> annotations;  // pod template annotations
  nlohmann::json resources;                        // core/v1 ResourceRequirements; null when unset
  std::optional<int32_t> replicas;

  friend bool operator==(const EnvironmentDefaults&, const EnvironmentDefaults&) = default;
};

struct EnvironmentPolicies {
  // Empty: every strategy is allowed.
  std::vector<StrategyType> allowed_strategies;
  bool require_approval = false;
  // Distinct approvers needed when require_approval.
  int32_t min_approvals = 1;
  // Four-eyes: the author of the change (annotation capstan.dev/changed-by, stamped by
  // admission) is not counted among its approvers, and a change whose author is not
  // recorded is held. Default true; only meaningful with require_approval.
  bool four_eyes = true;
  std::vector<FreezeWindow> freeze_windows;
  UpstreamSpec upstream;
  bool allow_emergency = false;
  // Only images pinned by digest (image@sha256:<64 hex>) roll out; never lifted.
  bool require_image_digest = false;
  // Analysis every Release here runs (policy::ApplyEnvironment merges it into the
  // Release's gates); a downstream soak counts a revision only once it passed here.
  std::optional<AnalysisGateSpec> analysis;

  friend bool operator==(const EnvironmentPolicies&, const EnvironmentPolicies&) = default;
};

struct EnvironmentSpec {
  std::vector<std::string> namespaces;  // names
  std::optional<LabelSelector> namespace_selector;
  EnvironmentDefaults defaults;
  EnvironmentPolicies policies;

  friend bool operator==(const EnvironmentSpec&, const EnvironmentSpec&) = default;
};

struct Environment {
  ObjectMeta metadata;
  EnvironmentSpec spec;

  friend bool operator==(const Environment&, const Environment&) = default;
};

// An Environment from its JSON form, CRD defaults applied. InvalidArgument naming the
// field for wrong types or unknown enum values; value checks are ValidateEnvironment's.
absl::StatusOr<Environment> ParseEnvironment(const nlohmann::json& object);

// Every Environment in a YAML stream; other kinds are skipped.
absl::StatusOr<std::vector<Environment>> ParseEnvironmentYaml(const std::string& text);

// What makes the Environment unusable, one sentence per problem starting with the field
// path. Empty when fine.
std::vector<std::string> ValidateEnvironment(const Environment& env);

// Problems between Environments, keyed by Environment name (every Environment involved
// gets the sentence): a namespace listed by name in two Environments, an upstream that
// does not exist, upstream chains with a cycle. Selector overlaps depend on namespace
// labels and are found per namespace (policy::ResolveEnvironment).
std::map<std::string, std::vector<std::string>> ValidateEnvironments(
    const std::vector<Environment>& envs);

// ReleaseApproval: one person's approval of one revision of one Release. spec is
// immutable (CEL), and spec.approvedBy is written by admission from the requesting
// user (charts/capstan/templates/approval-policy.yaml), never trusted from the client.
struct ReleaseApproval {
  ObjectMeta metadata;
  std::string release;   // name of the Release in the same namespace
  std::string revision;  // the revision (pod template hash) approved, for people
  // What is approved: the Release's status.desiredDigest (render::DesiredStateDigest)
  // and metadata.uid. An approval without both approves nothing.
  std::string digest;
  std::string release_uid;
  std::string approved_by;
  std::string comment;
  std::optional<absl::Time> created;  // metadata.creationTimestamp

  friend bool operator==(const ReleaseApproval&, const ReleaseApproval&) = default;
};

absl::StatusOr<ReleaseApproval> ParseReleaseApproval(const nlohmann::json& object);

}  // namespace capstan::api
