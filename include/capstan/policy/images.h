#pragma once

// Image references of a pod template, and whether they pin what runs (issue #17 item 5).
// Pure functions.
//
// A reference is [registry[:port]/]path[:tag][@digest]. A tag can be pushed again (most
// of all `latest`, which a tagless reference means), so the same revision can run other
// code after a restart without any rollout having checked it; a digest cannot.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "capstan/api/release.h"
#include "nlohmann/json.hpp"

namespace capstan::policy {

// The images of `pod_template` (a PodTemplateSpec): initContainers, then containers, in
// order. Entries without a string image are skipped (validation reports them).
std::vector<std::string> PodImages(const nlohmann::json& pod_template);

// True for `name@sha256:<64 lower-case hex digits>` (a tag may come before the @).
bool PinnedByDigest(const std::string& image);

// True when `image` has no digest and its tag is `latest` or missing.
bool MutableTag(const std::string& image);

// The images (from PodImages) that are not PinnedByDigest / that are MutableTag, in
// order, without duplicates.
std::vector<std::string> UnpinnedImages(const nlohmann::json& pod_template);
std::vector<std::string> MutableTagImages(const nlohmann::json& pod_template);

// The warning for a template with MutableTag images: "" when there are none, else e.g.
// "images with a mutable tag (:latest or none): web, redis:latest; a re-push changes what
// runs without a rollout; pin a tag or a digest (image@sha256:...)".
std::string MutableTagWarning(const nlohmann::json& pod_template);

// The Release condition carrying that warning.
inline constexpr char kImagesPinnedCondition[] = "ImagesPinned";

// Keeps condition ImagesPinned in `s` for `pod_template` (the desired template): False
// with reason MutableTag and MutableTagWarning's message while there are such images,
// absent otherwise. Returns the message when the warning is new or changed (a Warning
// Event is due), "" otherwise.
std::string RecordImageWarning(const nlohmann::json& pod_template, int64_t generation,
                               absl::Time now, api::ReleaseStatus* s);

}  // namespace capstan::policy
