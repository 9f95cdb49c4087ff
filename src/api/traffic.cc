#include "traffic.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "capstan/common/status_macros.h"
#include "json_read.h"

namespace capstan::api::internal {
namespace {

using nlohmann::json;

absl::Status ReadPort(const json& obj, const std::string& path, std::optional<IntOrString>* out) {
  const json* v = Find(obj, "port");
  if (v == nullptr) return absl::OkStatus();
  if (v->is_string()) {
    *out = IntOrString::FromString(v->get<std::string>());
    return absl::OkStatus();
  }
  std::optional<int64_t> i;
  if (!v->is_number()) return TypeError(Join(path, "port"), "an integer or a string", *v);
  RETURN_IF_ERROR(ReadInt64(obj, "port", path, &i));
  if (*i < 0 || *i > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(path, ".port: ", *i, " is not a port"));
  }
  *out = IntOrString::FromInt(static_cast<int32_t>(*i));
  return absl::OkStatus();
}

absl::Status ReadMetadata(const json& obj, const std::string& path, ExtraMetadata* out) {
  ASSIGN_OR_RETURN(const json* m, ReadObject(obj, "metadata", path));
  if (m == nullptr) return absl::OkStatus();
  const std::string mpath = path + ".metadata";
  RETURN_IF_ERROR(ReadStringMap(*m, "labels", mpath, &out->labels));
  RETURN_IF_ERROR(ReadStringMap(*m, "annotations", mpath, &out->annotations));
  return absl::OkStatus();
}

// A list of objects, passed through without nulls.
absl::Status ReadObjectList(const json& obj, const char* key, const std::string& path, json* out) {
  ASSIGN_OR_RETURN(const json* list, ReadList(obj, key, path));
  if (list == nullptr) return absl::OkStatus();
  for (size_t i = 0; i < list->size(); ++i) {
    if (!(*list)[i].is_object()) {
      return TypeError(absl::StrCat(Join(path, key), "[", i, "]"), "an object", (*list)[i]);
    }
  }
  *out = WithoutNulls(*list);
  return absl::OkStatus();
}

// A host name as Ingress and HTTPRoute take it: a DNS subdomain, optionally "*."
// in front (one leading wildcard label), no port, no IP semantics checked.
bool IsHostName(const std::string& host) {
  std::string rest = host;
  if (absl::StartsWith(rest, "*.")) rest = rest.substr(2);
  return !rest.empty() && IsDnsSubdomain(rest);
}

}  // namespace

absl::Status ParseIngress(const json& spec, std::optional<IngressSpec>* out) {
  const std::string path = "spec.ingress";
  ASSIGN_OR_RETURN(const json* in, ReadObject(spec, "ingress", "spec"));
  if (in == nullptr) return absl::OkStatus();
  IngressSpec s;
  RETURN_IF_ERROR(ReadString(*in, "className", path, &s.class_name));
  RETURN_IF_ERROR(ReadString(*in, "previewHost", path, &s.preview_host));
  RETURN_IF_ERROR(ReadPort(*in, path, &s.port));
  RETURN_IF_ERROR(ReadMetadata(*in, path, &s.metadata));
  ASSIGN_OR_RETURN(const json* hosts, ReadList(*in, "hosts", path));
  if (hosts != nullptr) {
    for (size_t i = 0; i < hosts->size(); ++i) {
      const json& h = (*hosts)[i];
      const std::string hpath = absl::StrCat(path, ".hosts[", i, "]");
      if (!h.is_object()) return TypeError(hpath, "an object", h);
      IngressHost host;
      RETURN_IF_ERROR(ReadString(h, "host", hpath, &host.host));
      ASSIGN_OR_RETURN(const json* paths, ReadList(h, "paths", hpath));
      if (paths != nullptr) {
        for (size_t j = 0; j < paths->size(); ++j) {
          const json& p = (*paths)[j];
          const std::string ppath = absl::StrCat(hpath, ".paths[", j, "]");
          if (!p.is_object()) return TypeError(ppath, "an object", p);
          IngressPath ip;
          RETURN_IF_ERROR(ReadString(p, "path", ppath, &ip.path));
          RETURN_IF_ERROR(ReadString(p, "pathType", ppath, &ip.path_type));
          host.paths.push_back(std::move(ip));
        }
      }
      if (host.paths.empty()) host.paths.push_back(IngressPath{});
      s.hosts.push_back(std::move(host));
    }
  }
  ASSIGN_OR_RETURN(const json* tls, ReadList(*in, "tls", path));
  if (tls != nullptr) {
    for (size_t i = 0; i < tls->size(); ++i) {
      const json& t = (*tls)[i];
      const std::string tpath = absl::StrCat(path, ".tls[", i, "]");
      if (!t.is_object()) return TypeError(tpath, "an object", t);
      IngressTls it;
      RETURN_IF_ERROR(ReadString(t, "secretName", tpath, &it.secret_name));
      RETURN_IF_ERROR(ReadStringList(t, "hosts", tpath, &it.hosts));
      s.tls.push_back(std::move(it));
    }
  }
  *out = std::move(s);
  return absl::OkStatus();
}

absl::Status ParseRoute(const json& spec, std::optional<RouteSpec>* out) {
  const std::string path = "spec.route";
  ASSIGN_OR_RETURN(const json* in, ReadObject(spec, "route", "spec"));
  if (in == nullptr) return absl::OkStatus();
  RouteSpec s;
  RETURN_IF_ERROR(ReadObjectList(*in, "parentRefs", path, &s.parent_refs));
  RETURN_IF_ERROR(ReadStringList(*in, "hostnames", path, &s.hostnames));
  RETURN_IF_ERROR(ReadStringList(*in, "previewHostnames", path, &s.preview_hostnames));
  RETURN_IF_ERROR(ReadPort(*in, path, &s.port));
  RETURN_IF_ERROR(ReadMetadata(*in, path, &s.metadata));
  ASSIGN_OR_RETURN(const json* rules, ReadList(*in, "rules", path));
  if (rules != nullptr) {
    for (size_t i = 0; i < rules->size(); ++i) {
      const json& r = (*rules)[i];
      const std::string rpath = absl::StrCat(path, ".rules[", i, "]");
      if (!r.is_object()) return TypeError(rpath, "an object", r);
      RouteRule rule;
      RETURN_IF_ERROR(ReadObjectList(r, "matches", rpath, &rule.matches));
      s.rules.push_back(std::move(rule));
    }
  }
  *out = std::move(s);
  return absl::OkStatus();
}

namespace {

// The Service port `port` names (a number or a port name), or why there is none.
std::string PortProblem(const std::string& path, const ServiceSpec& svc, const IntOrString& port) {
  for (const ServicePort& p : svc.ports) {
    if (port.is_string() ? p.name == port.string_value() : p.port == port.int_value()) return "";
  }
  std::vector<std::string> have;
  for (const ServicePort& p : svc.ports) {
    have.push_back(p.name.empty() ? absl::StrCat(p.port) : absl::StrCat(p.name, " (", p.port, ")"));
  }
  return absl::StrCat(path, ".port: ", port.DebugString(), " is not a port of spec.service (",
                      absl::StrJoin(have, ", "), ")");
}

void CheckHost(const std::string& path, const std::string& host, std::vector<std::string>* errors) {
  if (!IsHostName(host)) {
    errors->push_back(absl::StrCat(path, ": ", Quote(host),
                                   " is not a host name (lower case DNS name, optionally "
                                   "starting with \"*.\"; no port, no scheme)"));
  }
}

void CheckPreview(const Release& r, const std::string& path, std::vector<std::string>* errors) {
  if (r.spec.strategy.type != StrategyType::kBlueGreen ||
      !r.spec.strategy.blue_green.preview_service) {
    errors->push_back(absl::StrCat(path,
                                   ": only for a BlueGreen Release with a preview Service "
                                   "(strategy.blueGreen.previewService)"));
  }
}

}  // namespace

std::vector<std::string> TrafficProblems(const Release& r) {
  std::vector<std::string> errors;
  const ReleaseSpec& spec = r.spec;
  if (spec.ingress.has_value()) {
    const IngressSpec& in = *spec.ingress;
    const std::string path = "spec.ingress";
    if (!spec.service.has_value()) {
      errors.push_back(path + " needs spec.service (the Ingress sends traffic to it)");
    } else if (in.port.has_value()) {
      if (std::string p = PortProblem(path, *spec.service, *in.port); !p.empty()) {
        errors.push_back(std::move(p));
      }
    }
    if (!in.class_name.empty() && !IsDnsSubdomain(in.class_name)) {
      errors.push_back(absl::StrCat(path, ".className: ", Quote(in.class_name),
                                    " is not a valid IngressClass name"));
    }
    if (in.hosts.size() > 64) errors.push_back(path + ".hosts: at most 64 hosts");
    for (size_t i = 0; i < in.hosts.size(); ++i) {
      const IngressHost& h = in.hosts[i];
      const std::string hpath = absl::StrCat(path, ".hosts[", i, "]");
      if (!h.host.empty()) CheckHost(hpath + ".host", h.host, &errors);
      for (size_t j = 0; j < h.paths.size(); ++j) {
        const IngressPath& p = h.paths[j];
        const std::string ppath = absl::StrCat(hpath, ".paths[", j, "]");
        if (!absl::StartsWith(p.path, "/")) {
          errors.push_back(absl::StrCat(ppath, ".path: ", Quote(p.path), " must start with /"));
        }
        if (p.path_type != "Prefix" && p.path_type != "Exact" &&
            p.path_type != "ImplementationSpecific") {
          errors.push_back(absl::StrCat(ppath,
                                        ".pathType: must be Prefix, Exact or "
                                        "ImplementationSpecific, not ",
                                        Quote(p.path_type)));
        }
      }
    }
    for (size_t i = 0; i < in.tls.size(); ++i) {
      const IngressTls& t = in.tls[i];
      const std::string tpath = absl::StrCat(path, ".tls[", i, "]");
      if (t.secret_name.empty() || !IsDnsSubdomain(t.secret_name)) {
        errors.push_back(absl::StrCat(tpath, ".secretName: ", Quote(t.secret_name),
                                      " is not a Secret name (required)"));
      }
      for (size_t j = 0; j < t.hosts.size(); ++j) {
        CheckHost(absl::StrCat(tpath, ".hosts[", j, "]"), t.hosts[j], &errors);
      }
    }
    if (!in.preview_host.empty()) {
      CheckHost(path + ".previewHost", in.preview_host, &errors);
      CheckPreview(r, path + ".previewHost", &errors);
      for (const IngressHost& h : in.hosts) {
        if (h.host == in.preview_host) {
          errors.push_back(absl::StrCat(path, ".previewHost: ", Quote(in.preview_host),
                                        " is also in spec.ingress.hosts"));
        }
      }
    }
  }
  if (spec.route.has_value()) {
    const RouteSpec& rt = *spec.route;
    const std::string path = "spec.route";
    if (!spec.service.has_value()) {
      errors.push_back(path + " needs spec.service (the HTTPRoute sends traffic to it)");
    } else if (rt.port.has_value()) {
      if (std::string p = PortProblem(path, *spec.service, *rt.port); !p.empty()) {
        errors.push_back(std::move(p));
      }
    }
    if (rt.parent_refs.empty()) {
      errors.push_back(path + ".parentRefs: at least one Gateway is required");
    } else if (rt.parent_refs.size() > 32) {
      errors.push_back(path + ".parentRefs: at most 32");
    }
    for (size_t i = 0; i < rt.parent_refs.size(); ++i) {
      const json& ref = rt.parent_refs[i];
      const json* name = Find(ref, "name");
      if (name == nullptr || !name->is_string() || name->get<std::string>().empty()) {
        errors.push_back(absl::StrCat(path, ".parentRefs[", i, "].name: required"));
      }
    }
    if (rt.hostnames.size() > 16) errors.push_back(path + ".hostnames: at most 16");
    for (size_t i = 0; i < rt.hostnames.size(); ++i) {
      CheckHost(absl::StrCat(path, ".hostnames[", i, "]"), rt.hostnames[i], &errors);
    }
    if (rt.rules.size() > 16) errors.push_back(path + ".rules: at most 16");
    for (size_t i = 0; i < rt.rules.size(); ++i) {
      if (rt.rules[i].matches.size() > 64) {
        errors.push_back(absl::StrCat(path, ".rules[", i, "].matches: at most 64"));
      }
    }
    if (!rt.preview_hostnames.empty()) {
      CheckPreview(r, path + ".previewHostnames", &errors);
      if (rt.preview_hostnames.size() > 16) {
        errors.push_back(path + ".previewHostnames: at most 16");
      }
      for (size_t i = 0; i < rt.preview_hostnames.size(); ++i) {
        CheckHost(absl::StrCat(path, ".previewHostnames[", i, "]"), rt.preview_hostnames[i],
                  &errors);
      }
    }
  }
  return errors;
}

}  // namespace capstan::api::internal
