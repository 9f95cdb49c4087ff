#include "capstan/diff/diff.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "capstan/diff/quantity.h"
#include "nlohmann/json.hpp"
#include "openssl/sha.h"

namespace capstan::diff {
namespace {

using nlohmann::json;

constexpr std::string_view kAbsent = "<absent>";
constexpr size_t kDescribeValueMax = 64;

// Never throws: invalid UTF-8 in a string is replaced rather than rejected.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Strings as they are, everything else as JSON.
std::string Render(const json& j) {
  return j.is_string() ? j.get_ref<const std::string&>() : Dump(j);
}

bool IsBareKey(std::string_view key) {
  return !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

void AppendKey(std::string& path, const std::string& key) {
  if (IsBareKey(key)) {
    if (!path.empty()) {
      path += '.';
    }
    path += key;
  } else {
    path += '[';
    path += Dump(json(key));
    path += ']';
  }
}

std::string HashPath() {
  std::string path = "metadata";
  AppendKey(path, "annotations");
  AppendKey(path, kAppliedHashAnnotation);
  return path;
}

// The Go zero values that omitempty drops when the server writes the object.
bool IsEmptyValue(const json& j) {
  switch (j.type()) {
    case json::value_t::object:
    case json::value_t::array:
      return j.empty();
    case json::value_t::string:
      return j.get_ref<const std::string&>().empty();
    case json::value_t::boolean:
      return !j.get<bool>();
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return j == 0;
    default:
      return false;
  }
}

// Fields the API server parses as resource.Quantity, keyed by where they sit.
// Here any two spellings of one value are equal ("1e3" and "1k").
bool IsQuantityField(std::string_view parent_key, std::string_view key) {
  return parent_key == "requests" || parent_key == "limits" || parent_key == "hard" ||
         parent_key == "overhead" || key == "sizeLimit" || key == "divisor" ||
         (parent_key == "target" && (key == "value" || key == "averageValue"));
}

// `want` and `got` differ as text; are they one quantity? Outside known
// quantity fields only when `got` is what the server would turn `want` into.
bool SameQuantity(const std::string& want, const std::string& got, bool quantity_field) {
  const std::optional<Quantity> w = ParseQuantity(want);
  if (!w) {
    return false;
  }
  const std::optional<Quantity> g = ParseQuantity(got);
  if (!g || w->nanos != g->nanos) {
    return false;
  }
  return quantity_field || CanonicalQuantity(*w) == got;
}

// Walks desired, recording where live differs. `path_` grows and shrinks with
// the recursion so that only drifts allocate their path.
class Comparer {
 public:
  // `skip`: a node of desired not to compare (NeedsApply checks the hash itself).
  Comparer(std::vector<Drift>* out, bool stop_at_first, const json* skip)
      : out_(out), stop_at_first_(stop_at_first), skip_(skip) {}

  void Walk(const json& want, const json* got, std::string_view parent_key, std::string_view key) {
    if (stop_at_first_ && !out_->empty()) {
      return;
    }
    if (want.is_null()) {
      if (got != nullptr && !got->is_null()) {
        Add("null", Render(*got));
      }
      return;
    }
    if (got == nullptr || got->is_null() || got->is_discarded()) {
      if (!IsEmptyValue(want)) {
        Add(Render(want), std::string(kAbsent));
      }
      return;
    }
    switch (want.type()) {
      case json::value_t::object:
        WalkObject(want, *got, key);
        return;
      case json::value_t::array:
        WalkArray(want, *got, key);
        return;
      case json::value_t::string:
        WalkString(want.get_ref<const std::string&>(), *got, IsQuantityField(parent_key, key));
        return;
      case json::value_t::number_integer:
      case json::value_t::number_unsigned:
      case json::value_t::number_float:
        WalkNumber(want, *got, IsQuantityField(parent_key, key));
        return;
      default:  // boolean, binary
        if (want.type() != got->type()) {
          AddMismatch(want, *got);
        } else if (want != *got) {
          Add(Render(want), Render(*got));
        }
        return;
    }
  }

 private:
  void WalkObject(const json& want, const json& got, std::string_view key) {
    if (!got.is_object()) {
      AddMismatch(want, got);
      return;
    }
    const size_t depth = path_.size();
    for (auto it = want.begin(); it != want.end(); ++it) {
      if (&it.value() == skip_) {
        continue;
      }
      AppendKey(path_, it.key());
      const auto found = got.find(it.key());
      Walk(it.value(), found == got.end() ? nullptr : &*found, key, it.key());
      path_.resize(depth);
    }
  }

  void WalkArray(const json& want, const json& got, std::string_view key) {
    if (!got.is_array()) {
      AddMismatch(want, got);
      return;
    }
    if (want.size() != got.size()) {
      // Elements have probably shifted; comparing them pairwise would only add noise.
      Add(ItemCount(want), ItemCount(got));
      return;
    }
    const size_t depth = path_.size();
    for (size_t i = 0; i < want.size(); ++i) {
      path_ += '[';
      path_ += std::to_string(i);
      path_ += ']';
      // Elements take the list's key, so `ports[0].port` has parent key "ports".
      Walk(want[i], &got[i], key, key);
      path_.resize(depth);
    }
  }

  void WalkString(const std::string& want, const json& got, bool quantity_field) {
    if (got.is_string()) {
      const std::string& g = got.get_ref<const std::string&>();
      if (want != g && !SameQuantity(want, g, quantity_field)) {
        Add(want, g);
      }
      return;
    }
    // cpu: 1 is accepted for a quantity; only there is a number like a string.
    if (got.is_number() && quantity_field && SameQuantity(want, Dump(got), true)) {
      return;
    }
    AddMismatch(json(want), got);
  }

  void WalkNumber(const json& want, const json& got, bool quantity_field) {
    if (got.is_number()) {
      if (want != got) {  // nlohmann compares across integer and float: 1 == 1.0
        Add(Dump(want), Dump(got));
      }
      return;
    }
    // The server parses a JSON number in a quantity field from its text and
    // returns a string: desired cpu: 0.5 reads back as "500m".
    if (got.is_string() && quantity_field &&
        SameQuantity(Dump(want), got.get_ref<const std::string&>(), true)) {
      return;
    }
    AddMismatch(want, got);
  }

  static std::string ItemCount(const json& array) {
    // absl::StrCat rather than "[" + std::to_string(...): GCC 12 at -O3 (the image's
    // Release build) reports a false -Werror=restrict inside that operator+.
    return absl::StrCat("[", array.size(), array.size() == 1 ? " item]" : " items]");
  }

  void Add(std::string want, std::string got) {
    out_->push_back(Drift{path_, std::move(want), std::move(got)});
  }

  // Different JSON types: both as JSON, so 8080 and "8080" look different.
  void AddMismatch(const json& want, const json& got) { Add(Dump(want), Dump(got)); }

  std::vector<Drift>* out_;
  const bool stop_at_first_;
  const json* skip_;
  std::string path_;
};

// metadata.annotations[kAppliedHashAnnotation] of `obj`, or null.
const json* FindHash(const json& obj) {
  if (!obj.is_object()) {
    return nullptr;
  }
  const auto metadata = obj.find("metadata");
  if (metadata == obj.end() || !metadata->is_object()) {
    return nullptr;
  }
  const auto annotations = metadata->find("annotations");
  if (annotations == metadata->end() || !annotations->is_object()) {
    return nullptr;
  }
  const auto hash = annotations->find(kAppliedHashAnnotation);
  return hash == annotations->end() ? nullptr : &*hash;
}

// True when HashBody must look at a copy of the body with the annotation (and
// what its removal empties) taken out.
bool NeedsStripping(const json& body) {
  if (!body.is_object()) {
    return false;
  }
  const auto metadata = body.find("metadata");
  if (metadata == body.end() || !metadata->is_object()) {
    return false;
  }
  if (metadata->empty()) {
    return true;
  }
  const auto annotations = metadata->find("annotations");
  return annotations != metadata->end() && annotations->is_object() &&
         (annotations->empty() || annotations->contains(kAppliedHashAnnotation));
}

void Strip(json& body) {
  json& metadata = body["metadata"];
  if (const auto annotations = metadata.find("annotations");
      annotations != metadata.end() && annotations->is_object()) {
    annotations->erase(kAppliedHashAnnotation);
    if (annotations->empty()) {
      metadata.erase("annotations");
    }
  }
  if (metadata.empty()) {
    body.erase("metadata");
  }
}

uint64_t Fnv1a64(std::string_view data) {
  uint64_t hash = 14695981039346656037ULL;
  for (unsigned char c : data) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  return hash;
}

std::string Hex16(uint64_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) {
    out[i] = kDigits[v & 0xf];
  }
  return out;
}

// At most kDescribeValueMax bytes, not cutting a UTF-8 sequence in two.
std::string Cut(const std::string& s) {
  if (s.size() <= kDescribeValueMax) {
    return s;
  }
  size_t end = kDescribeValueMax - 3;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) {
    --end;
  }
  return s.substr(0, end) + "...";
}

}  // namespace

std::string HashBody(const nlohmann::json& desired) {
  if (!NeedsStripping(desired)) {
    return Hex16(Fnv1a64(Dump(desired)));
  }
  json stripped = desired;
  Strip(stripped);
  return Hex16(Fnv1a64(Dump(stripped)));
}

nlohmann::json StampHash(nlohmann::json desired) {
  if (!desired.is_object()) {
    return desired;
  }
  const auto metadata = desired.find("metadata");
  if (metadata != desired.end() && !metadata->is_object()) {
    return desired;
  }
  if (metadata != desired.end()) {
    const auto annotations = metadata->find("annotations");
    if (annotations != metadata->end() && !annotations->is_object()) {
      return desired;
    }
  }
  std::string hash = HashBody(desired);
  desired["metadata"]["annotations"][kAppliedHashAnnotation] = std::move(hash);
  return desired;
}

std::vector<Drift> Compare(const nlohmann::json& desired, const nlohmann::json& live) {
  std::vector<Drift> out;
  Comparer(&out, /*stop_at_first=*/false, /*skip=*/nullptr).Walk(desired, &live, "", "");
  return out;
}

bool NeedsApply(const nlohmann::json& desired_stamped, const nlohmann::json& live,
                std::vector<Drift>* why) {
  std::vector<Drift> local;
  std::vector<Drift>* out = why != nullptr ? why : &local;
  out->clear();
  if (!live.is_object()) {
    const bool absent = live.is_null() || live.is_discarded();
    out->push_back(Drift{"", "<object>", absent ? std::string(kAbsent) : Dump(live)});
    return true;
  }
  const json* want_hash = FindHash(desired_stamped);
  if (want_hash != nullptr) {
    const json* got_hash = FindHash(live);
    if (got_hash == nullptr || *got_hash != *want_hash) {
      out->push_back(Drift{HashPath(), Render(*want_hash),
                           got_hash == nullptr ? std::string(kAbsent) : Render(*got_hash)});
      if (why == nullptr) {
        return true;
      }
    }
  }
  Comparer(out, /*stop_at_first=*/why == nullptr, want_hash).Walk(desired_stamped, &live, "", "");
  return !out->empty();
}

namespace {

// Values that may be secret, or that a tenant may put secrets in: env values
// (`value: hunter2` is common), annotation and label values. Described by a hash:
// enough to see that two sides differ, and that a value came back, never the value.
bool SensitivePath(std::string_view path) {
  auto has = [path](std::string_view part) { return path.find(part) != std::string_view::npos; };
  return has("annotations") || has("labels") || has("Labels") || has(".env[") ||
         path.rfind("env[", 0) == 0;
}

std::string Hashed(const std::string& value) {
  if (value == kAbsent) {
    return value;
  }
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(value.data()), value.size(), md);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (int i = 0; i < 6; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xf];
  }
  return out;
}

}  // namespace

std::string Describe(const std::vector<Drift>& drifts, size_t max) {
  std::string out;
  const size_t shown = std::min(max, drifts.size());
  for (size_t i = 0; i < shown; ++i) {
    const Drift& d = drifts[i];
    if (i > 0) {
      out += "; ";
    }
    out += d.path.empty() ? "<object>" : d.path;
    const bool sensitive = SensitivePath(d.path);
    out += ": want ";
    out += sensitive ? Hashed(d.want) : Cut(d.want);
    out += ", got ";
    out += sensitive ? Hashed(d.got) : Cut(d.got);
  }
  if (shown < drifts.size()) {
    const size_t more = drifts.size() - shown;
    out += shown == 0 ? absl::StrCat(more, more == 1 ? " difference" : " differences")
                      : absl::StrCat(" (and ", more, " more)");
  }
  return out;
}

}  // namespace capstan::diff
