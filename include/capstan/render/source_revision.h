#pragma once

#include <string>

#include "capstan/api/release.h"

namespace capstan::render {

// Hash of a Release's pod template as written: no Capstan labels, no Environment
// defaults. The same template has the same source revision in every namespace and
// Environment, so it identifies a revision along the promotion chain (dev -> staging ->
// production) while status.currentRevision (what runs, Environment defaults included)
// differs per Environment.
std::string SourceRevision(const api::Release& release);

}  // namespace capstan::render
