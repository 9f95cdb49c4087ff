#include "capstan/kube/yaml_limits.h"

#include <algorithm>
#include <cstdint>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/exceptions.h"
#include "yaml-cpp/mark.h"
#include "yaml-cpp/parser.h"

namespace capstan::kube {
namespace {

std::string Where(const YAML::Mark& mark) {
  if (mark.is_null()) return "";
  return absl::StrCat("line ", mark.line + 1, ", column ", mark.column + 1, ": ");
}

// Thrown by the handler to stop the parser at the first violation (yaml-cpp reports
// its own errors the same way).
struct LimitExceeded {
  std::string message;
};

// Tracks, for each open collection, how many nodes and how deep its subtree is once
// aliases are expanded, so that an anchored node's expansion is known when it closes.
class LimitScanner final : public YAML::EventHandler {
 public:
  LimitScanner(const YamlLimits& limits, size_t bytes)
      : limits_(limits), max_events_(2 * static_cast<int64_t>(bytes) + 64) {}

  void OnDocumentStart(const YAML::Mark& mark) override { Event(mark); }
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { Leaf(mark, anchor, 1, 0); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                const std::string&) override {
    Leaf(mark, anchor, 1, 0);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    // yaml-cpp numbers anchors from 1 in order of appearance; an alias to an anchor
    // still open (a recursive alias) has no size yet and is refused.
    if (anchor == 0 || anchor > anchors_.size() || !anchors_[anchor - 1].closed) {
      throw LimitExceeded{absl::StrCat(Where(mark), "alias to an unknown or enclosing anchor")};
    }
    const Subtree& s = anchors_[anchor - 1];
    Leaf(mark, /*anchor=*/0, s.nodes, s.depth);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(mark, anchor);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(mark, anchor);
  }
  void OnMapEnd() override { Close(); }

 private:
  struct Subtree {
    int64_t nodes = 0;
    int depth = 0;  // levels of collections below (and including) this node
    bool closed = false;
  };
  struct Frame {
    YAML::anchor_t anchor = 0;
    Subtree subtree;
  };

  // yaml-cpp 0.7 has inputs on which it reports nodes forever (", e:" is one, found
  // by the YAML fuzzer: gigabytes within a minute). Every node takes at least a byte
  // or two of text, so more events than twice the input's size is that bug.
  void Event(const YAML::Mark& mark) {
    if (++events_ > max_events_) {
      throw LimitExceeded{absl::StrCat(Where(mark), "more YAML nodes than ", max_events_ / 2 - 32,
                                       " bytes can hold (the parser is looping)")};
    }
  }

  void Count(const YAML::Mark& mark, int64_t nodes, int depth_below) {
    Event(mark);
    total_ += nodes;
    if (total_ > limits_.max_nodes) {
      throw LimitExceeded{absl::StrCat(Where(mark), "more than ", limits_.max_nodes,
                                       " nodes once aliases are expanded")};
    }
    if (static_cast<int64_t>(stack_.size()) + depth_below > limits_.max_depth) {
      throw LimitExceeded{
          absl::StrCat(Where(mark), "nested deeper than ", limits_.max_depth, " levels")};
    }
  }

  void Record(YAML::anchor_t anchor, const Subtree& s) {
    if (anchor == 0) return;
    if (anchors_.size() < anchor) anchors_.resize(anchor);
    anchors_[anchor - 1] = s;
    anchors_[anchor - 1].closed = true;
  }

  // A node of `nodes` nodes, `depth` collection levels deep, inside the open frame.
  void AddToParent(int64_t nodes, int depth) {
    if (stack_.empty()) return;
    Subtree& p = stack_.back().subtree;
    p.nodes += nodes;
    p.depth = std::max(p.depth, depth + 1);
  }

  void Leaf(const YAML::Mark& mark, YAML::anchor_t anchor, int64_t nodes, int depth) {
    Count(mark, nodes, depth);
    Record(anchor, Subtree{nodes, depth, true});
    AddToParent(nodes, depth);
  }

  void Open(const YAML::Mark& mark, YAML::anchor_t anchor) {
    Count(mark, 1, 1);
    if (anchor != 0) {
      if (anchors_.size() < anchor) anchors_.resize(anchor);
      anchors_[anchor - 1].closed = false;
    }
    stack_.push_back(Frame{anchor, Subtree{1, 1, false}});
  }

  void Close() {
    if (stack_.empty()) return;
    const Frame f = stack_.back();
    stack_.pop_back();
    Record(f.anchor, f.subtree);
    AddToParent(f.subtree.nodes, f.subtree.depth);
  }

  const YamlLimits& limits_;
  const int64_t max_events_;
  int64_t events_ = 0;
  std::vector<Frame> stack_;
  std::vector<Subtree> anchors_;
  int64_t total_ = 0;
};

// The offset of the first byte that is not well-formed UTF-8 (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF) or is NUL, or npos. yaml-cpp passes such bytes
// through into scalars, and nlohmann::json refuses to serialise them (it throws).
size_t InvalidUtf8At(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    // NUL is no YAML character, and yaml-cpp takes NULs for UTF-16/32 and decodes the
    // stream as such (garbage code points, bytes nlohmann::json refuses).
    if (c == 0) return i;
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n = 0;
    uint32_t cp = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (i + n >= s.size()) return i;  // truncated
    for (size_t k = 1; k <= n; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3f);
    }
    const bool overlong = (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000);
    if (overlong || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return i;
    i += n + 1;
  }
  return absl::string_view::npos;
}

}  // namespace

absl::Status CheckYamlLimits(absl::string_view text, const YamlLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid YAML: ", text.size(), " bytes, more than the limit of ", limits.max_bytes));
  }
  if (const size_t at = InvalidUtf8At(text); at != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid YAML: not UTF-8 (byte ", at, " is NUL or not part of a character)"));
  }
  try {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    LimitScanner scanner(limits, text.size());
    while (parser.HandleNextDocument(scanner)) {
    }
  } catch (const LimitExceeded& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid YAML: ", e.message));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid YAML: ", Where(e.mark), e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid YAML: ", e.what()));
  }
  return absl::OkStatus();
}

}  // namespace capstan::kube
