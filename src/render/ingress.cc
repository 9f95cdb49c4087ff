#include "capstan/render/ingress.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "capstan/render/render.h"

namespace capstan::render {
namespace {

using api::Release;
using nlohmann::json;

const api::ServiceSpec& ServiceOf(const Release& r) {
  static const api::ServiceSpec* const kEmpty = new api::ServiceSpec();
  return r.spec.service.has_value() ? *r.spec.service : *kEmpty;
}

// An Ingress backend port: by name when the Service port has one (a renumbered port
// keeps working), else by number.
json IngressPort(const std::optional<api::ServicePort>& p) {
  if (!p.has_value()) return {{"number", 0}};
  if (!p->name.empty()) return {{"name", p->name}};
  return {{"number", p->port}};
}

json IngressRule(const std::string& host, const std::vector<api::IngressPath>& paths,
                 const std::string& service, const json& port) {
  json out_paths = json::array();
  for (const api::IngressPath& p : paths) {
    out_paths.push_back({{"path", p.path},
                         {"pathType", p.path_type},
                         {"backend", {{"service", {{"name", service}, {"port", port}}}}}});
  }
  json rule = {{"http", {{"paths", std::move(out_paths)}}}};
  if (!host.empty()) rule["host"] = host;
  return rule;
}

}  // namespace

std::optional<api::ServicePort> ResolveServicePort(const api::ServiceSpec& service,
                                                   const std::optional<api::IntOrString>& port) {
  if (service.ports.empty()) return std::nullopt;
  if (!port.has_value()) return service.ports.front();
  for (const api::ServicePort& p : service.ports) {
    if (port->is_string() ? p.name == port->string_value() : p.port == port->int_value()) {
      return p;
    }
  }
  return std::nullopt;
}

json RenderIngress(const Release& release) {
  const api::IngressSpec empty;
  const api::IngressSpec& in = release.spec.ingress.has_value() ? *release.spec.ingress : empty;
  const json port = IngressPort(ResolveServicePort(ServiceOf(release), in.port));
  const std::string& name = release.metadata.name;
  json rules = json::array();
  static const std::vector<api::IngressPath> kRoot = {api::IngressPath{}};
  if (in.hosts.empty()) {
    rules.push_back(IngressRule("", kRoot, name, port));
  }
  for (const api::IngressHost& h : in.hosts) {
    rules.push_back(IngressRule(h.host, h.paths, name, port));
  }
  if (!in.preview_host.empty()) {
    // The preview host serves the same paths as the first host.
    rules.push_back(IngressRule(in.preview_host, in.hosts.empty() ? kRoot : in.hosts.front().paths,
                                absl::StrCat(name, "-preview"), port));
  }
  json spec = {{"rules", std::move(rules)}};
  if (!in.class_name.empty()) spec["ingressClassName"] = in.class_name;
  if (!in.tls.empty()) {
    json tls = json::array();
    for (const api::IngressTls& t : in.tls) {
      json entry = {{"secretName", t.secret_name}};
      if (!t.hosts.empty()) entry["hosts"] = t.hosts;
      tls.push_back(std::move(entry));
    }
    spec["tls"] = std::move(tls);
  }
  return {{"apiVersion", "networking.k8s.io/v1"},
          {"kind", "Ingress"},
          {"metadata", RenderOwnedMetadata(release, name, in.metadata)},
          {"spec", std::move(spec)}};
}

std::string PreviewRouteName(const Release& release) {
  return absl::StrCat(release.metadata.name, "-preview");
}

json RenderHttpRoute(const Release& release, bool preview) {
  const api::RouteSpec empty;
  const api::RouteSpec& rt = release.spec.route.has_value() ? *release.spec.route : empty;
  const std::optional<api::ServicePort> port = ResolveServicePort(ServiceOf(release), rt.port);
  const std::string service =
      preview ? absl::StrCat(release.metadata.name, "-preview") : release.metadata.name;
  const json backend =
      json::array({{{"name", service}, {"port", port.has_value() ? port->port : 0}}});
  json rules = json::array();
  if (rt.rules.empty()) {
    rules.push_back({{"backendRefs", backend}});
  }
  for (const api::RouteRule& r : rt.rules) {
    json rule = {{"backendRefs", backend}};
    // No key for no matches: the API server fills in the default match, which an
    // empty list in the desired body would then never equal.
    if (!r.matches.empty()) rule["matches"] = r.matches;
    rules.push_back(std::move(rule));
  }
  json spec = {{"parentRefs", rt.parent_refs}, {"rules", std::move(rules)}};
  const std::vector<std::string>& hostnames = preview ? rt.preview_hostnames : rt.hostnames;
  if (!hostnames.empty()) spec["hostnames"] = hostnames;
  const std::string name = preview ? PreviewRouteName(release) : release.metadata.name;
  return {{"apiVersion", "gateway.networking.k8s.io/v1"},
          {"kind", "HTTPRoute"},
          {"metadata", RenderOwnedMetadata(release, name, rt.metadata)},
          {"spec", std::move(spec)}};
}

std::vector<json> RenderTraffic(const Release& release) {
  std::vector<json> out;
  if (!release.spec.service.has_value()) return out;
  if (release.spec.ingress.has_value()) out.push_back(RenderIngress(release));
  if (release.spec.route.has_value()) {
    out.push_back(RenderHttpRoute(release));
    if (!release.spec.route->preview_hostnames.empty()) {
      out.push_back(RenderHttpRoute(release, /*preview=*/true));
    }
  }
  return out;
}

}  // namespace capstan::render
