#pragma once

// How traffic enters: spec.ingress -> a networking.k8s.io/v1 Ingress <name>, spec.route
// -> a gateway.networking.k8s.io/v1 HTTPRoute <name> (and <name>-preview with
// previewHostnames). Pure functions, like render.h.
//
// Both send traffic to the Service <name>. With BlueGreen that is the active Service,
// whose selector is what the switch moves, so the Ingress and HTTPRoute never change
// on a promotion or a switch back: traffic follows the switch with no write here. A
// preview host (Ingress) or preview HTTPRoute goes to <name>-preview.
//
// Fields the API server defaults (HTTPRoute backendRef kind/group/weight, parentRef
// group/kind, a rule's default match) are left out so the apply owns only what the
// Release says and the diff (diff/diff.h, a subset test) sees no drift in them.

#include <optional>
#include <string>
#include <vector>

#include "capstan/api/release.h"
#include "nlohmann/json.hpp"

namespace capstan::render {

// The Service port `port` names (a number or a port name; nullopt: the first port), or
// nullopt when the Service has no such port (validation rejects that).
std::optional<api::ServicePort> ResolveServicePort(const api::ServiceSpec& service,
                                                   const std::optional<api::IntOrString>& port);

// The Ingress <name>. Requires release.spec.ingress and release.spec.service.
nlohmann::json RenderIngress(const api::Release& release);

// The HTTPRoute <name> (preview = false) or <name>-preview (preview = true, needs
// spec.route.previewHostnames). Requires release.spec.route and release.spec.service.
nlohmann::json RenderHttpRoute(const api::Release& release, bool preview = false);

// "<name>-preview", the preview HTTPRoute's name.
std::string PreviewRouteName(const api::Release& release);

// What the spec asks for, in order: Ingress, HTTPRoute, preview HTTPRoute.
std::vector<nlohmann::json> RenderTraffic(const api::Release& release);

}  // namespace capstan::render
