#include "capstan/render/source_revision.h"

#include "capstan/render/render.h"

namespace capstan::render {

std::string SourceRevision(const api::Release& release) {
  return TemplateHash(release.spec.pod_template);
}

}  // namespace capstan::render
