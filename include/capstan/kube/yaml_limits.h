#pragma once

// Bounds for YAML read from outside (manifests given to `capstan render`, kubeconfigs,
// anything a tenant can write). yaml-cpp resolves an alias to a shared node, but every
// reader here turns the tree into JSON (or walks it), which copies each alias: nine
// nested anchors of nine aliases each ("billion laughs") are 1 KiB of text and 10^9
// nodes. CheckYamlLimits scans the event stream once, without building anything, and
// refuses a stream that is too large, nests too deep, or whose aliases would expand
// past a node budget (the same idea as go-yaml's alias ratio limit). Aliases within
// the budget stay legal: anchors are common in hand-written manifests.

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace capstan::kube {

struct YamlLimits {
  // The whole stream. A 10,000-Release manifest is ~10 MB.
  size_t max_bytes = 32u << 20;
  // Mappings and sequences inside each other, counting alias expansions. Kubernetes
  // objects are ~15 deep (a pod template's affinity terms are the deepest), CRD
  // schemas ~20.
  int max_depth = 100;
  // Nodes (scalars, mappings, sequences) after expanding every alias, per stream: ~100 MB
  // as JSON at most. 10,000 Releases are ~500,000.
  int64_t max_nodes = 1'000'000;
};

// InvalidArgument ("invalid YAML: ...", with line and column where known) when `text`
// is not YAML or exceeds `limits`. Never throws; memory used is O(depth + anchors).
absl::Status CheckYamlLimits(absl::string_view text, const YamlLimits& limits = {});

}  // namespace capstan::kube
