#include "capstan/secrets/generator.h"

#include <cstring>
#include <deque>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace capstan::secrets {
namespace {

// Returns scripted bytes, then zeros.
class ScriptedRandom final : public RandomSource {
 public:
  explicit ScriptedRandom(std::vector<uint8_t> bytes) : bytes_(bytes.begin(), bytes.end()) {}
  absl::Status Fill(uint8_t* out, size_t n) override {
    for (size_t i = 0; i < n; ++i) {
      if (bytes_.empty()) {
        out[i] = 0;
      } else {
        out[i] = bytes_.front();
        bytes_.pop_front();
      }
    }
    return absl::OkStatus();
  }

 private:
  std::deque<uint8_t> bytes_;
};

KeySpec Bytes(int32_t len, ValueEncoding enc) {
  KeySpec k;
  k.name = "k";
  k.kind = KeySpec::Kind::kRandomBytes;
  k.random_bytes = {len, enc};
  return k;
}

TEST(GeneratorTest, RandomBytesHaveDeclaredLengthAndAlphabet) {
  struct Case {
    const char* name;
    ValueEncoding enc;
    int32_t len;
    size_t want_chars;
    std::string alphabet;
  };
  const std::string b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
  const std::string b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const std::vector<Case> cases = {
      {"jwt 32 bytes base64", ValueEncoding::kBase64, 32, 44, b64},
      {"base64url unpadded", ValueEncoding::kBase64Url, 32, 43, b64url},
      {"hex", ValueEncoding::kHex, 16, 32, "0123456789abcdef"},
      {"one byte base64", ValueEncoding::kBase64, 1, 4, b64},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    for (int i = 0; i < 50; ++i) {
      absl::StatusOr<std::string> v = GenerateValue(Bytes(c.len, c.enc), OpenSslRandom::Get());
      ASSERT_TRUE(v.ok()) << v.status();
      EXPECT_EQ(v->size(), c.want_chars);
      EXPECT_EQ(v->find_first_not_of(c.alphabet), std::string::npos);
      std::string decoded;
      if (c.enc == ValueEncoding::kBase64) {
        ASSERT_TRUE(absl::Base64Unescape(*v, &decoded));
        EXPECT_EQ(decoded.size(), static_cast<size_t>(c.len));
      } else if (c.enc == ValueEncoding::kBase64Url) {
        ASSERT_TRUE(absl::WebSafeBase64Unescape(*v, &decoded));
        EXPECT_EQ(decoded.size(), static_cast<size_t>(c.len));
      }
    }
  }
}

TEST(GeneratorTest, ValuesDiffer) {
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    seen.insert(*GenerateValue(Bytes(32, ValueEncoding::kBase64), OpenSslRandom::Get()));
  }
  EXPECT_EQ(seen.size(), 200u);
}

TEST(GeneratorTest, PasswordsHaveLengthAlphabetAndEveryClass) {
  struct Case {
    const char* name;
    PasswordGenerator g;
  };
  const std::vector<Case> cases = {
      {"default classes", {24, {CharClass::kLower, CharClass::kUpper, CharClass::kDigit}, ""}},
      {"all classes, excluded look-alikes",
       {12,
        {CharClass::kLower, CharClass::kUpper, CharClass::kDigit, CharClass::kSymbol},
        "O0Il1|"}},
      {"digits only", {8, {CharClass::kDigit}, ""}},
      {"as short as the class count",
       {4, {CharClass::kLower, CharClass::kUpper, CharClass::kDigit, CharClass::kSymbol}, ""}},
      {"long", {300, {CharClass::kLower, CharClass::kSymbol}, "abc"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    KeySpec k;
    k.name = "pw";
    k.kind = KeySpec::Kind::kPassword;
    k.password = c.g;
    const std::string alphabet = PasswordAlphabet(c.g);
    for (char x : c.g.exclude) EXPECT_EQ(alphabet.find(x), std::string::npos);
    for (int i = 0; i < 200; ++i) {
      absl::StatusOr<std::string> v = GenerateValue(k, OpenSslRandom::Get());
      ASSERT_TRUE(v.ok()) << v.status();
      ASSERT_EQ(v->size(), static_cast<size_t>(c.g.length));
      EXPECT_EQ(v->find_first_not_of(alphabet), std::string::npos);
      for (CharClass cls : c.g.classes) {
        EXPECT_NE(v->find_first_of(ClassCharacters(cls)), std::string::npos)
            << "a required class is missing";
      }
    }
  }
}

TEST(GeneratorTest, PasswordCharactersAreRoughlyUniform) {
  KeySpec k;
  k.name = "pw";
  k.kind = KeySpec::Kind::kPassword;
  k.password = {64, {CharClass::kDigit}, ""};
  std::vector<int> counts(10, 0);
  const int rounds = 500;  // 32,000 digits: 3,200 expected per digit
  for (int i = 0; i < rounds; ++i) {
    const std::string v = *GenerateValue(k, OpenSslRandom::Get());
    for (char c : v) ++counts[c - '0'];
  }
  for (int n : counts) {
    EXPECT_GT(n, 2900);
    EXPECT_LT(n, 3500);
  }
}

TEST(GeneratorTest, UniformBelowRejectsBiasedBytes) {
  // n = 10: 256 % 10 = 6, so bytes 250..255 are redrawn and 249 -> 9.
  ScriptedRandom rng({255, 250, 249});
  absl::StatusOr<uint32_t> v = UniformBelow(rng, 10);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 9u);
  ScriptedRandom rng2({7});
  EXPECT_EQ(*UniformBelow(rng2, 256), 7u);
  EXPECT_FALSE(UniformBelow(rng2, 0).ok());
  EXPECT_FALSE(UniformBelow(rng2, 257).ok());
}

TEST(GeneratorTest, UuidIsVersion4) {
  KeySpec k;
  k.name = "id";
  k.kind = KeySpec::Kind::kUuid;
  for (int i = 0; i < 50; ++i) {
    std::string v = *GenerateValue(k, OpenSslRandom::Get());
    ASSERT_EQ(v.size(), 36u);
    EXPECT_EQ(v[8], '-');
    EXPECT_EQ(v[13], '-');
    EXPECT_EQ(v[18], '-');
    EXPECT_EQ(v[23], '-');
    EXPECT_EQ(v[14], '4');
    EXPECT_NE(std::string("89ab").find(v[19]), std::string::npos);
    EXPECT_EQ(v.find_first_not_of("0123456789abcdef-"), std::string::npos);
  }
}

TEST(GeneratorTest, ImpossiblePasswordIsAnErrorWithoutValue) {
  KeySpec k;
  k.name = "pw";
  k.kind = KeySpec::Kind::kPassword;
  k.password = {8, {CharClass::kDigit}, "0123456789"};
  absl::StatusOr<std::string> v = GenerateValue(k, OpenSslRandom::Get());
  EXPECT_FALSE(v.ok());
}

}  // namespace
}  // namespace capstan::secrets
