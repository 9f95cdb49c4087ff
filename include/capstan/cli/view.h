#pragma once

// What `kubectl capstan` prints, as pure functions of the objects it read: the Release
// tree of `get release NAME`, the tables of `get`, `history`, `env list` and `get srot`,
// ages the way kubectl writes them, and what a Release waits for with the command that
// unblocks it. No I/O, no clock (`now` is an argument), so golden-file tests pin the
// output (tests/unit/cli/testdata/).
//
// Objects are the API server's JSON (nlohmann::json); absent fields print as "" or "-",
// never throw. Thread-compatible.

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace capstan::cli {

// ANSI colour on a terminal; none when piped or with NO_COLOR (https://no-color.org).
struct Style {
  bool color = false;

  std::string Bold(const std::string& s) const;
  std::string Dim(const std::string& s) const;
  // Green for Ready, yellow for phases in motion or waiting, red for failures.
  std::string Phase(const std::string& phase) const;
};

// kubectl's age: 45s, 3m20s, 45m, 3h20m, 30h, 3d4h, 12d, 3y.
std::string FormatAge(absl::Duration d);
// FormatAge(now - t), or "-" when `t` is absent or not RFC 3339.
std::string AgeSince(const nlohmann::json& rfc3339, absl::Time now);

// Columns separated by three spaces, each as wide as its widest cell (kubectl's
// printer); the first row is the header. Trailing spaces are trimmed.
std::string Table(const std::vector<std::vector<std::string>>& rows);

// What holds a Release, for people, and the command that moves it on.
struct Blocker {
  std::string what;     // "approval of revision 5f2c0a1b2c (1 needed)"
  std::string command;  // "kubectl capstan approve shop -n shop-prod --revision 5f2c0a1b2c"
};
// From the Release's phase, Ready condition and status. `desired_revision` is the
// revision that would roll out (computed with the Environment applied), "" when unknown.
std::vector<Blocker> BlockersOf(const nlohmann::json& release, const std::string& desired_revision);

struct TreeInput {
  nlohmann::json release;
  std::vector<nlohmann::json> deployments;    // owned by the Release
  std::vector<nlohmann::json> pods;           // labelled capstan.dev/release=<name>
  std::vector<nlohmann::json> revisions;      // its ControllerRevisions
  std::vector<nlohmann::json> analysis_runs;  // its AnalysisRuns (empty without the CRD)
  std::string desired_revision;               // "" when unknown
  absl::Time now;
};
// The screen of `kubectl capstan get release NAME`: the Release and why it is in its
// phase, its revisions (current / stable / failed / preview marked), the Deployments or
// colours with ready counts and their pods, its analysis runs (newest three, each metric
// with its counts and last measurements), and what it waits for.
std::string RenderTree(const TreeInput& in, const Style& style);

// One revision of a Release: status.history joined with its ControllerRevision.
struct RevisionRow {
  int64_t number = 0;  // ControllerRevision .revision, 0 when it is gone
  std::string hash;
  std::vector<std::string> images;
  std::string phase;               // from status.history, "" when not recorded there
  std::string time;                // RFC 3339 of the last phase change, or ""
  std::vector<std::string> marks;  // current, stable, failed, preview
};
// Newest first: every revision in status.history, then ControllerRevisions not in it.
std::vector<RevisionRow> Revisions(const nlohmann::json& release,
                                   const std::vector<nlohmann::json>& revisions);
std::string HistoryTable(const std::vector<RevisionRow>& rows, absl::Time now);

// `kubectl capstan get` (every Release of a namespace, or -A).
std::string ReleaseTable(const std::vector<nlohmann::json>& releases, bool all_namespaces,
                         absl::Time now);
// `kubectl capstan env list`.
std::string EnvironmentTable(const std::vector<nlohmann::json>& envs, absl::Time now);
// `kubectl capstan env get NAME`: policies, active freezes, Releases with phase and gates.
std::string EnvironmentDetail(const nlohmann::json& env, absl::Time now, const Style& style);
// `kubectl capstan get srot`.
std::string SecretRotationTable(const std::vector<nlohmann::json>& rotations, bool all_namespaces,
                                absl::Time now);

// Images of a pod template's containers, in order.
std::vector<std::string> TemplateImages(const nlohmann::json& pod_template);

}  // namespace capstan::cli
