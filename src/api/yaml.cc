#include "capstan/api/yaml.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "capstan/kube/yaml_limits.h"
#include "yaml-cpp/yaml.h"

namespace capstan::api {
namespace {

using nlohmann::json;

bool OneOf(const std::string& s, std::initializer_list<const char*> words) {
  for (const char* w : words) {
    if (s == w) {
      return true;
    }
  }
  return false;
}

// An integer as YAML 1.1 / go-yaml v2 reads it: optional sign, underscores ignored,
// 0x hex, 0o or leading-0 octal, 0b binary, else decimal.
std::optional<json> ParseYamlInt(const std::string& text) {
  std::string s = absl::StrReplaceAll(text, {{"_", ""}});
  if (s.empty()) {
    return std::nullopt;
  }
  bool negative = false;
  size_t i = 0;
  if (s[0] == '+' || s[0] == '-') {
    negative = s[0] == '-';
    i = 1;
  }
  std::string body = s.substr(i);
  if (body.empty()) {
    return std::nullopt;
  }
  int base = 10;
  if (body.size() > 2 && body[0] == '0' && (body[1] == 'x' || body[1] == 'X')) {
    base = 16;
    body = body.substr(2);
  } else if (body.size() > 2 && body[0] == '0' && (body[1] == 'o' || body[1] == 'O')) {
    base = 8;
    body = body.substr(2);
  } else if (body.size() > 2 && body[0] == '0' && (body[1] == 'b' || body[1] == 'B')) {
    base = 2;
    body = body.substr(2);
  } else if (body.size() > 1 && body[0] == '0') {
    base = 8;
    body = body.substr(1);
  }
  for (char c : body) {
    const bool ok = base == 16   ? absl::ascii_isxdigit(static_cast<unsigned char>(c))
                    : base == 10 ? absl::ascii_isdigit(static_cast<unsigned char>(c))
                    : base == 8  ? (c >= '0' && c <= '7')
                                 : (c == '0' || c == '1');
    if (!ok) {
      return std::nullopt;
    }
  }
  errno = 0;
  char* end = nullptr;
  const unsigned long long magnitude = std::strtoull(body.c_str(), &end, base);
  if (errno == ERANGE || end == nullptr || *end != '\0') {
    return std::nullopt;  // too large for 64 bits: go-yaml falls back to a float
  }
  if (negative) {
    if (magnitude > static_cast<unsigned long long>(INT64_MAX) + 1ULL) {
      return std::nullopt;
    }
    return json(static_cast<int64_t>(0 - magnitude));
  }
  if (magnitude > static_cast<unsigned long long>(INT64_MAX)) {
    return json(static_cast<uint64_t>(magnitude));
  }
  return json(static_cast<int64_t>(magnitude));
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, go-yaml v2's float syntax.
// Scanned by hand: std::regex recurses per character and a long scalar would overflow
// the stack.
bool IsYamlFloat(const std::string& s) {
  size_t i = 0;
  const size_t n = s.size();
  auto digits = [&] {
    const size_t start = i;
    while (i < n && absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) {
      ++i;
    }
    return i - start;
  };
  if (i < n && (s[i] == '+' || s[i] == '-')) {
    ++i;
  }
  if (i < n && s[i] == '.') {
    ++i;
    if (digits() == 0) {
      return false;
    }
  } else {
    if (digits() == 0) {
      return false;
    }
    if (i < n && s[i] == '.') {
      ++i;
      digits();
    }
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) {
      ++i;
    }
    if (digits() == 0) {
      return false;
    }
  }
  return i == n;
}

std::optional<json> ParseYamlFloat(const std::string& text) {
  std::string s = absl::StrReplaceAll(text, {{"_", ""}});
  if (!IsYamlFloat(s)) {
    return std::nullopt;
  }
  double d = 0;
  if (!absl::SimpleAtod(s, &d) || !std::isfinite(d)) {
    return std::nullopt;  // JSON has no infinity: keep the text
  }
  return json(d);
}

// The JSON value of a plain (unquoted, untagged) scalar.
json ResolvePlain(const std::string& s) {
  if (OneOf(s, {"", "~", "null", "Null", "NULL"})) {
    return nullptr;
  }
  if (OneOf(s, {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"})) {
    return true;
  }
  if (OneOf(s, {"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"})) {
    return false;
  }
  const char c = s[0];
  if (absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '+' || c == '.') {
    if (std::optional<json> i = ParseYamlInt(s)) {
      return *i;
    }
    if (std::optional<json> f = ParseYamlFloat(s)) {
      return *f;
    }
  }
  return s;
}

std::string Where(const YAML::Mark& mark) {
  if (mark.is_null()) {
    return "";
  }
  return absl::StrCat("line ", mark.line + 1, ", column ", mark.column + 1, ": ");
}

absl::StatusOr<json> Convert(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return json(nullptr);
    case YAML::NodeType::Scalar: {
      const std::string& tag = node.Tag();
      const std::string& text = node.Scalar();
      // "!" marks a quoted or block scalar; "?" a plain one.
      if (tag == "!" || tag == "tag:yaml.org,2002:str") {
        return json(text);
      }
      return ResolvePlain(text);
    }
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (const YAML::Node& item : node) {
        absl::StatusOr<json> v = Convert(item);
        if (!v.ok()) {
          return v.status();
        }
        out.push_back(*std::move(v));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) {
          return absl::InvalidArgumentError(
              absl::StrCat(Where(kv.first.Mark()), "mapping keys must be scalars"));
        }
        const std::string key = kv.first.Scalar();
        if (out.contains(key)) {
          return absl::InvalidArgumentError(
              absl::StrCat(Where(kv.first.Mark()), "duplicate key \"", key, "\""));
        }
        absl::StatusOr<json> v = Convert(kv.second);
        if (!v.ok()) {
          return v.status();
        }
        out[key] = *std::move(v);
      }
      return out;
    }
  }
  return json(nullptr);
}

// Strings whose plain form would read back as something else need quotes.
bool NeedsQuotes(const std::string& s) {
  if (s.empty()) {
    return true;
  }
  // Control characters (a plain \r is read back as a line break, found by the YAML
  // fuzzer) and edge whitespace only survive in double quotes, where yaml-cpp escapes.
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      return true;
    }
  }
  if (s.front() == ' ' || s.back() == ' ') {
    return true;
  }
  return !ResolvePlain(s).is_string();
}

void EmitString(YAML::Emitter& out, const std::string& s) {
  if (NeedsQuotes(s)) {
    out << YAML::DoubleQuoted << s;
  } else {
    out << s;
  }
}

// apiVersion, kind, metadata, name, namespace, labels, annotations, then the rest
// sorted (json objects iterate sorted already).
std::vector<std::string> OrderedKeys(const json& object) {
  static constexpr std::array<const char*, 7> kFirst = {
      "apiVersion", "kind", "metadata", "name", "namespace", "labels", "annotations"};
  std::vector<std::string> keys;
  keys.reserve(object.size());
  for (const char* k : kFirst) {
    if (object.contains(k)) {
      keys.emplace_back(k);
    }
  }
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (std::find(kFirst.begin(), kFirst.end(), it.key()) == kFirst.end()) {
      keys.push_back(it.key());
    }
  }
  return keys;
}

void Emit(YAML::Emitter& out, const json& v) {
  switch (v.type()) {
    case json::value_t::object:
      if (v.empty()) {
        out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
        return;
      }
      out << YAML::BeginMap;
      for (const std::string& key : OrderedKeys(v)) {
        out << YAML::Key;
        EmitString(out, key);
        out << YAML::Value;
        Emit(out, v.at(key));
      }
      out << YAML::EndMap;
      return;
    case json::value_t::array:
      if (v.empty()) {
        out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
        return;
      }
      out << YAML::BeginSeq;
      for (const json& item : v) {
        Emit(out, item);
      }
      out << YAML::EndSeq;
      return;
    case json::value_t::string:
      EmitString(out, v.get_ref<const std::string&>());
      return;
    case json::value_t::boolean:
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      // nlohmann prints the shortest form that reads back exactly; these plain forms
      // resolve to the same type when read.
      out << v.dump();
      return;
    case json::value_t::null:
    case json::value_t::binary:
    case json::value_t::discarded:
      out << YAML::Null;
      return;
  }
}

}  // namespace

absl::StatusOr<std::vector<json>> YamlToJson(const std::string& text) {
  // Before yaml-cpp builds a tree and Convert copies every alias: bounded size, depth
  // and alias expansion (kube/yaml_limits.h).
  if (absl::Status s = kube::CheckYamlLimits(text); !s.ok()) {
    return s;
  }
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid YAML: ", Where(e.mark), e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid YAML: ", e.what()));
  }
  std::vector<json> out;
  out.reserve(docs.size());
  for (const YAML::Node& doc : docs) {
    absl::StatusOr<json> j;
    try {
      j = Convert(doc);
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat("invalid YAML: ", e.what()));
    }
    if (!j.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("invalid YAML: ", j.status().message()));
    }
    out.push_back(*std::move(j));
  }
  return out;
}

std::string JsonToYaml(const json& value) {
  try {
    YAML::Emitter out;
    out.SetIndent(2);
    out.SetNullFormat(YAML::LowerNull);
    Emit(out, value);
    std::string s = out.c_str();
    if (s.empty() || s.back() != '\n') {
      s.push_back('\n');
    }
    return s;
  } catch (const std::exception& e) {
    // The emitter only throws on misuse (unbalanced maps), which Emit never does.
    return absl::StrCat("# capstan: cannot emit YAML: ", e.what(), "\n");
  }
}

std::string JsonToYamlStream(const std::vector<json>& documents) {
  std::string out;
  for (const json& doc : documents) {
    absl::StrAppend(&out, "---\n", JsonToYaml(doc));
  }
  return out;
}

}  // namespace capstan::api
