#include "capstan/api/yaml.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace capstan::api {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

json One(const std::string& text) {
  absl::StatusOr<std::vector<json>> docs = YamlToJson(text);
  EXPECT_TRUE(docs.ok()) << docs.status();
  if (!docs.ok() || docs->size() != 1) {
    return json("<no single document>");
  }
  return (*docs)[0];
}

TEST(YamlToJson, ScalarsResolveLikeKubectl) {
  struct Case {
    const char* yaml;
    json want;
  };
  const std::vector<Case> cases = {
      {"v: 80", 80},
      {"v: \"80\"", "80"},
      {"v: '80'", "80"},
      {"v: -3", -3},
      {"v: +3", 3},
      {"v: 0644", 420},  // defaultMode: octal, as go-yaml v2 reads it
      {"v: 0o17", 15},
      {"v: 0x1F", 31},
      {"v: 1_000", 1000},
      {"v: 1.5", 1.5},
      {"v: 1e3", 1000.0},
      {"v: 08", 8.0},  // not octal, so a float (go-yaml v2 does the same)
      {"v: 25%", "25%"},
      {"v: 250m", "250m"},
      {"v: true", true},
      {"v: yes", true},
      {"v: On", true},
      {"v: no", false},
      {"v: FALSE", false},
      {"v: \"yes\"", "yes"},
      {"v: ~", nullptr},
      {"v: null", nullptr},
      {"v:", nullptr},
      {"v: \"\"", ""},
      {"v: 1.2.3", "1.2.3"},
      {"v: 12:30", "12:30"},
      {"v: !!str 42", "42"},
      {"v: |\n  line one\n  line two\n", "line one\nline two\n"},
      {"v: 99999999999999999999", 1e20},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.yaml);
    EXPECT_EQ(One(c.yaml)["v"], c.want);
  }
}

TEST(YamlToJson, HugeNumbersDoNotCrash) {
  const std::string digits(100000, '7');
  EXPECT_EQ(One("v: " + digits)["v"], digits) << "beyond a double: kept as text";
  EXPECT_EQ(One("v: 1e400")["v"], "1e400");
}

TEST(YamlToJson, StructuresAnchorsAndDocuments) {
  absl::StatusOr<std::vector<json>> docs = YamlToJson(
      "a: &x {b: [1, two, {c: d}]}\n"
      "e: *x\n"
      "---\n"
      "---\n"
      "- 1\n");
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(docs->size(), 3u);
  EXPECT_EQ((*docs)[0], json::parse(R"({"a": {"b": [1, "two", {"c": "d"}]},
                                         "e": {"b": [1, "two", {"c": "d"}]}})"));
  EXPECT_TRUE((*docs)[1].is_null());
  EXPECT_EQ((*docs)[2], json::array({1}));
}

// Nine anchors, each a list of nine aliases of the one before: 1 KiB of text that a
// reader copying aliases would expand to 9^9 (387 million) nodes.
std::string BillionLaughs() {
  std::string s = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 9; ++i) {
    std::string prev = "*a" + std::to_string(i - 1);
    s += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 9; ++j) s += (j == 0 ? "" : ", ") + prev;
    s += "]\n";
  }
  return s;
}

TEST(YamlToJson, HostileInputIsRefusedWithoutExpanding) {
  struct Case {
    std::string name;
    std::string yaml;
    std::string want_error;
  };
  const std::vector<Case> cases = {
      {"billion laughs", BillionLaughs(), "once aliases are expanded"},
      {"deep flow sequences", std::string(100000, '[') + std::string(100000, ']'),
       "nested deeper than 100 levels"},
      {"deep block mappings",
       [] {
         std::string s;
         for (int i = 0; i < 150; ++i) s += std::string(i, ' ') + "k:\n";
         return s;
       }(),
       "nested deeper than 100 levels"},
      {"alias deepens past the limit",
       [] {
         std::string s = "a: &deep " + std::string(60, '[') + std::string(60, ']') + "\nb: ";
         s += std::string(50, '[') + "*deep" + std::string(50, ']') + "\n";
         return s;
       }(),
       "nested deeper than 100 levels"},
      {"unknown alias", "a: *nope\n", "invalid YAML"},
      // yaml-cpp reports nodes for this forever (gigabytes within a minute).
      {"parser loop", ", e:", "the parser is looping"},
      // yaml-cpp passes the bytes through; nlohmann::json would throw on dump().
      {"not UTF-8", "a: \"\xff\xfe\"\n", "not UTF-8 (byte 4"},
      {"overlong UTF-8", "a: \xc0\xaf\n", "not UTF-8 (byte 3"},
      {"truncated UTF-8", "a: \xe2\x82", "not UTF-8 (byte 3"},
      // yaml-cpp would read NULs as UTF-32 and decode garbage.
      {"NUL bytes", std::string("v\0\0\0'4]\n", 8), "not UTF-8 (byte 1"},
      {"too large", std::string((32u << 20) + 1, ' '), "more than the limit"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<std::vector<json>> r = YamlToJson(c.yaml);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.want_error));
  }
}

TEST(YamlToJson, AliasesWithinTheBudgetStillWork) {
  // Three levels of the same shape: 9^3 leaves, well within the budget.
  std::string s = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 2; ++i) {
    std::string prev = "*a" + std::to_string(i - 1);
    s += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 9; ++j) s += (j == 0 ? "" : ", ") + prev;
    s += "]\n";
  }
  const json doc = One(s);
  ASSERT_TRUE(doc.contains("a2"));
  EXPECT_EQ(doc["a2"].size(), 9u);
  EXPECT_EQ(doc["a2"][8][8][8], "x");
  EXPECT_EQ(One("v: \"caf\xc3\xa9 \xf0\x9f\x9a\x80\"\n")["v"], "caf\xc3\xa9 \xf0\x9f\x9a\x80");
  // 99 levels is still a document.
  EXPECT_TRUE(One("v: " + std::string(98, '[') + std::string(98, ']')).is_object());
}

TEST(YamlToJson, ErrorsSayWhere) {
  absl::StatusOr<std::vector<json>> r = YamlToJson("a: 1\nb: [2, 3\n");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("invalid YAML: line"));

  r = YamlToJson("a: 1\nb: 2\na: 3\n");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("line 3, column 1: duplicate key \"a\""));

  r = YamlToJson("? [a, b]\n: c\n");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("mapping keys must be scalars"));
}

TEST(JsonToYaml, RoundTripsTrickyValues) {
  const json value = json::parse(R"({
    "strings": ["80", "true", "yes", "off", "", "~", "null", "0644", "1e3", "25%", "a: b",
                "- x", " lead", "trail ", "#hash", "multi\nline", "ünïcode", "'q'", "\"dq\"",
                "@at", "`tick", "{x}", "[y]", "*star", "&amp", "!bang", "|pipe", ">gt",
                "cr\r\r", "tab\tx", "bell\u0007", "del\u007f"],
    "numbers": [0, -1, 3000000000, 1.5, 0.1, 1e-7],
    "bools": [true, false],
    "null": null,
    "empty_object": {},
    "empty_list": [],
    "80": "numeric key",
    "nested": {"list": [{"a": 1}, [1, 2]]}
  })");
  const std::string yaml = JsonToYaml(value);
  EXPECT_EQ(One(yaml), value) << yaml;
}

TEST(JsonToYaml, KubernetesKeysComeFirst) {
  const json obj = {
      {"spec", {{"replicas", 1}}},
      {"kind", "Deployment"},
      {"metadata", {{"namespace", "shop"}, {"labels", {{"a", "b"}}}, {"name", "web"}}},
      {"apiVersion", "apps/v1"}};
  EXPECT_EQ(JsonToYaml(obj),
            "apiVersion: apps/v1\n"
            "kind: Deployment\n"
            "metadata:\n"
            "  name: web\n"
            "  namespace: shop\n"
            "  labels:\n"
            "    a: b\n"
            "spec:\n"
            "  replicas: 1\n");
}

TEST(JsonToYaml, StreamSeparatesDocuments) {
  const std::string s = JsonToYamlStream({json{{"a", 1}}, json{{"b", "2"}}});
  EXPECT_EQ(s, "---\na: 1\n---\nb: \"2\"\n");
  absl::StatusOr<std::vector<json>> back = YamlToJson(s);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->size(), 2u);
}

}  // namespace
}  // namespace capstan::api
