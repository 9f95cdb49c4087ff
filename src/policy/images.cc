#include "capstan/policy/images.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace capstan::policy {
namespace {

using nlohmann::json;

void AppendImages(const json& pod_template, const char* list, std::vector<std::string>* out) {
  if (!pod_template.is_object()) return;
  auto spec = pod_template.find("spec");
  if (spec == pod_template.end() || !spec->is_object()) return;
  auto containers = spec->find(list);
  if (containers == spec->end() || !containers->is_array()) return;
  for (const json& c : *containers) {
    if (!c.is_object()) continue;
    auto image = c.find("image");
    if (image != c.end() && image->is_string()) out->push_back(image->get<std::string>());
  }
}

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

template <typename Pred>
std::vector<std::string> Select(const json& pod_template, Pred pred) {
  std::vector<std::string> out;
  for (const std::string& image : PodImages(pod_template)) {
    if (pred(image) && std::find(out.begin(), out.end(), image) == out.end()) {
      out.push_back(image);
    }
  }
  return out;
}

}  // namespace

std::vector<std::string> PodImages(const json& pod_template) {
  std::vector<std::string> out;
  AppendImages(pod_template, "initContainers", &out);
  AppendImages(pod_template, "containers", &out);
  return out;
}

bool PinnedByDigest(const std::string& image) {
  const size_t at = image.find('@');
  if (at == std::string::npos || at == 0) return false;
  const std::string digest = image.substr(at + 1);
  constexpr char kPrefix[] = "sha256:";
  constexpr size_t kPrefixLen = sizeof(kPrefix) - 1;
  if (digest.size() != kPrefixLen + 64 || digest.compare(0, kPrefixLen, kPrefix) != 0) {
    return false;
  }
  return std::all_of(digest.begin() + kPrefixLen, digest.end(), IsLowerHex);
}

bool MutableTag(const std::string& image) {
  if (image.find('@') != std::string::npos) return false;  // a digest (checked or not)
  const size_t slash = image.rfind('/');
  const std::string last = slash == std::string::npos ? image : image.substr(slash + 1);
  const size_t colon = last.rfind(':');
  if (colon == std::string::npos) return true;  // no tag: latest
  const std::string tag = last.substr(colon + 1);
  return tag.empty() || tag == "latest";
}

std::vector<std::string> UnpinnedImages(const json& pod_template) {
  return Select(pod_template, [](const std::string& i) { return !PinnedByDigest(i); });
}

std::vector<std::string> MutableTagImages(const json& pod_template) {
  return Select(pod_template, [](const std::string& i) { return MutableTag(i); });
}

std::string MutableTagWarning(const json& pod_template) {
  const std::vector<std::string> images = MutableTagImages(pod_template);
  if (images.empty()) return "";
  return absl::StrCat("images with a mutable tag (:latest or none): ", absl::StrJoin(images, ", "),
                      "; a re-push changes what runs without a rollout; pin a tag or a digest "
                      "(image@sha256:...)");
}

std::string RecordImageWarning(const json& pod_template, int64_t generation, absl::Time now,
                               api::ReleaseStatus* s) {
  const std::string warning = MutableTagWarning(pod_template);
  auto it = std::find_if(s->conditions.begin(), s->conditions.end(),
                         [](const api::Condition& c) { return c.type == kImagesPinnedCondition; });
  if (warning.empty()) {
    if (it != s->conditions.end()) s->conditions.erase(it);
    return "";
  }
  if (it != s->conditions.end() && it->status == "False" && it->message == warning) {
    it->observed_generation = generation;
    return "";
  }
  api::Condition c{kImagesPinnedCondition, "False", "MutableTag", warning, now, generation};
  if (it != s->conditions.end()) {
    if (it->status == "False") c.last_transition_time = it->last_transition_time;
    *it = std::move(c);
  } else {
    s->conditions.push_back(std::move(c));
  }
  return warning;
}

}  // namespace capstan::policy
