#pragma once

// Bounds on objects read from the API server.

namespace capstan::kube {

// Levels of objects and arrays in one object. A Deployment is ~13 deep, a Release
// ~10; the API server admits a custom resource 10,000 deep, and every recursive walk
// of that overflows a thread's stack. The API client leaves such objects out (list,
// watch) or refuses them (get) before anything walks them.
inline constexpr int kMaxObjectDepth = 100;

}  // namespace capstan::kube
