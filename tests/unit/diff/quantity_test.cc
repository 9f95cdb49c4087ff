#include "capstan/diff/quantity.h"

#include <optional>
#include <string>

#include "gtest/gtest.h"

namespace capstan::diff {
namespace {

constexpr __int128 kUnit = 1'000'000'000;

// Expected strings are what apimachinery v0.37.2 returns for
// resource.MustParse(in) after an arithmetic no-op (which drops the echo of
// the input some inputs get, e.g. "1.500" for "1.500").
TEST(QuantityTest, CanonicalMatchesApimachinery) {
  struct Case {
    const char* in;
    const char* canonical;
  };
  const Case cases[] = {
      {"0.5", "500m"},
      {".5", "500m"},
      {"5.", "5"},
      {"1.500", "1500m"},
      {"1000m", "1"},
      {"2.0", "2"},
      {"0.25", "250m"},
      {"250m", "250m"},
      {"1.10", "1100m"},
      {"1.2345", "1234500u"},
      {"1e3", "1e3"},  // a decimal exponent stays one
      {"1E3", "1e3"},
      {"1E", "1E"},  // exa, not an exponent
      {"1e-3", "1e-3"},
      {"1.5e-3", "1500e-6"},
      {"1e18", "1e18"},
      {"129M", "129M"},
      {"129e6", "129e6"},
      {"128974848", "128974848"},
      {"18446744073709551616", "18446744073709551616"},  // decimals are not capped at 2^63
      {"123Mi", "123Mi"},
      {"1024Mi", "1Gi"},
      {"1048576Ki", "1Gi"},
      {"1.5Gi", "1536Mi"},
      {"0.5Gi", "512Mi"},
      {"100Gi", "100Gi"},
      {"1023Ki", "1023Ki"},
      {"1.5Ki", "1536"},     // 1536 is not a multiple of 1024
      {"0.5Ki", "512"},      // below 1024, binary is written in decimal
      {"0.1Ki", "102400m"},  // 102.4
      {"-1.5Ki", "-1536"},
      {"8Ei", "9223372036854775807"},  // binary is capped at 2^63-1
      {"0.1n", "1n"},                  // finer than nano rounds away from zero
      {"-0.1n", "-1n"},
      {"1e-9", "1e-9"},
      {"1e-10", "1e-9"},
      {"0", "0"},
      {"-0", "0"},
      {"00", "0"},
      {"0Mi", "0"},
      {"+1k", "1k"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.in);
    const std::optional<Quantity> q = ParseQuantity(c.in);
    ASSERT_TRUE(q.has_value());
    EXPECT_EQ(CanonicalQuantity(*q), c.canonical);
    // Canonical forms are fixed points.
    const std::optional<Quantity> again = ParseQuantity(CanonicalQuantity(*q));
    ASSERT_TRUE(again.has_value());
    EXPECT_TRUE(again->nanos == q->nanos);
    EXPECT_EQ(CanonicalQuantity(*again), c.canonical);
  }
}

TEST(QuantityTest, Values) {
  struct Case {
    const char* in;
    __int128 nanos;
  };
  const Case cases[] = {
      {"1", kUnit},
      {"500m", kUnit / 2},
      {"1Ki", 1024 * kUnit},
      {"1Gi", (__int128{1} << 30) * kUnit},
      {"123Mi", __int128{128974848} * kUnit},
      {"1k", 1000 * kUnit},
      {"1e3", 1000 * kUnit},
      {"1e+3", 1000 * kUnit},
      {"2.5E2", 250 * kUnit},
      {"1u", 1000},
      {"3n", 3},
      {"-2m", -2'000'000},
      {"1E", __int128{1'000'000'000'000'000'000} * kUnit},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.in);
    const std::optional<Quantity> q = ParseQuantity(c.in);
    ASSERT_TRUE(q.has_value());
    EXPECT_TRUE(q->nanos == c.nanos);
  }
}

TEST(QuantityTest, Formats) {
  EXPECT_EQ(ParseQuantity("1Gi")->format, QuantityFormat::kBinarySI);
  EXPECT_EQ(ParseQuantity("1G")->format, QuantityFormat::kDecimalSI);
  EXPECT_EQ(ParseQuantity("1")->format, QuantityFormat::kDecimalSI);
  EXPECT_EQ(ParseQuantity("1e9")->format, QuantityFormat::kDecimalExponent);
  // Below one unit a binary value cannot be written in binary suffixes.
  EXPECT_EQ(ParseQuantity("0.0001Ki")->format, QuantityFormat::kDecimalSI);
}

TEST(QuantityTest, RejectsMalformed) {
  const char* const cases[] = {
      "",
      "1K",
      "1 Gi",
      " 1Gi",
      "1Gi ",
      "1.5.5",
      "1e",
      "1ee3",
      "1i",
      "abc",
      "1e3e",
      "1Mi3",
      "1KI",
      "1gi",
      "--1",
      "1m2",
      "0x10",
      "1,5",
      "1e3.5",
      // Stricter than apimachinery, which reads these as zero.
      "-",
      ".",
      "Mi",
      // Out of this parser's range: compared as text instead.
      "1e40",
      "100000000000000000000000000000000000000000",
  };
  for (const char* c : cases) {
    SCOPED_TRACE(c);
    EXPECT_FALSE(ParseQuantity(c).has_value());
  }
}

TEST(QuantityTest, HugeBinaryIsCappedLikeTheServer) {
  const std::optional<Quantity> q = ParseQuantity("784650000000Ei");
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(CanonicalQuantity(*q), "9223372036854775807");
}

}  // namespace
}  // namespace capstan::diff
