#include "capstan/diff/quantity.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace capstan::diff {
namespace {

using u128 = unsigned __int128;

constexpr u128 kMaxU128 = ~static_cast<u128>(0);
constexpr u128 kMaxI128 = kMaxU128 >> 1;
constexpr int64_t kNanosPerUnit = 1'000'000'000;
// apimachinery caps a binary-SI quantity at 2^63-1 units ("8Ei" parses as that).
constexpr u128 kMaxBinaryNanos = static_cast<u128>(INT64_MAX) * kNanosPerUnit;
// 10^38 is the largest power of ten below 2^128.
constexpr int kMaxPow10 = 38;
// Exponents beyond this cannot be represented anyway; bounding them keeps the
// integer parse below from overflowing.
constexpr int kMaxExponentDigits = 6;

struct Suffix {
  int exp10 = 0;  // value *= 10^exp10
  int exp2 = 0;   // value *= 2^exp2
  QuantityFormat format = QuantityFormat::kDecimalSI;
};

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::optional<Suffix> InterpretSuffix(std::string_view s) {
  struct Named {
    std::string_view name;
    Suffix suffix;
  };
  static constexpr Named kNamed[] = {
      {"", {0, 0, QuantityFormat::kDecimalSI}},   {"n", {-9, 0, QuantityFormat::kDecimalSI}},
      {"u", {-6, 0, QuantityFormat::kDecimalSI}}, {"m", {-3, 0, QuantityFormat::kDecimalSI}},
      {"k", {3, 0, QuantityFormat::kDecimalSI}},  {"M", {6, 0, QuantityFormat::kDecimalSI}},
      {"G", {9, 0, QuantityFormat::kDecimalSI}},  {"T", {12, 0, QuantityFormat::kDecimalSI}},
      {"P", {15, 0, QuantityFormat::kDecimalSI}}, {"E", {18, 0, QuantityFormat::kDecimalSI}},
      {"Ki", {0, 10, QuantityFormat::kBinarySI}}, {"Mi", {0, 20, QuantityFormat::kBinarySI}},
      {"Gi", {0, 30, QuantityFormat::kBinarySI}}, {"Ti", {0, 40, QuantityFormat::kBinarySI}},
      {"Pi", {0, 50, QuantityFormat::kBinarySI}}, {"Ei", {0, 60, QuantityFormat::kBinarySI}},
  };
  for (const Named& n : kNamed) {
    if (s == n.name) {
      return n.suffix;
    }
  }
  // Decimal exponent: "e3", "E-2", "e+20". A bare "E" is exa, matched above.
  if (s.size() < 2 || (s[0] != 'e' && s[0] != 'E')) {
    return std::nullopt;
  }
  std::string_view digits = s.substr(1);
  bool negative = false;
  if (digits[0] == '+' || digits[0] == '-') {
    negative = digits[0] == '-';
    digits.remove_prefix(1);
  }
  if (digits.empty()) {
    return std::nullopt;
  }
  while (digits.size() > 1 && digits[0] == '0') {
    digits.remove_prefix(1);
  }
  if (digits.size() > kMaxExponentDigits) {
    return std::nullopt;
  }
  int exp = 0;
  for (char c : digits) {
    if (!IsDigit(c)) {
      return std::nullopt;
    }
    exp = exp * 10 + (c - '0');
  }
  return Suffix{negative ? -exp : exp, 0, QuantityFormat::kDecimalExponent};
}

u128 Pow10(int n) {
  u128 p = 1;
  for (int i = 0; i < n; ++i) {
    p *= 10;
  }
  return p;
}

std::string Int128ToString(__int128 v) {
  const bool negative = v < 0;
  // Magnitudes never reach 2^127 (ParseQuantity bounds them), so negation is safe.
  u128 mag = negative ? static_cast<u128>(-v) : static_cast<u128>(v);
  std::string out;
  do {
    out.insert(out.begin(), static_cast<char>('0' + static_cast<int>(mag % 10)));
    mag /= 10;
  } while (mag != 0);
  if (negative) {
    out.insert(out.begin(), '-');
  }
  return out;
}

std::string_view DecimalSuffix(int exp10) {
  switch (exp10) {
    case -9:
      return "n";
    case -6:
      return "u";
    case -3:
      return "m";
    case 0:
      return "";
    case 3:
      return "k";
    case 6:
      return "M";
    case 9:
      return "G";
    case 12:
      return "T";
    case 15:
      return "P";
    case 18:
      return "E";
    default:
      return "?";
  }
}

std::string_view BinarySuffix(int exp1024) {
  static constexpr std::string_view kSuffixes[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
  return exp1024 >= 0 && exp1024 <= 6 ? kSuffixes[exp1024] : "?";
}

}  // namespace

std::optional<Quantity> ParseQuantity(std::string_view text) {
  std::string_view s = text;
  if (s.empty()) {
    return std::nullopt;
  }
  bool negative = false;
  if (s[0] == '+' || s[0] == '-') {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  size_t pos = 0;
  while (pos < s.size() && IsDigit(s[pos])) {
    ++pos;
  }
  const std::string_view whole = s.substr(0, pos);
  std::string_view fraction;
  if (pos < s.size() && s[pos] == '.') {
    const size_t begin = ++pos;
    while (pos < s.size() && IsDigit(s[pos])) {
      ++pos;
    }
    fraction = s.substr(begin, pos - begin);
  }
  if (whole.empty() && fraction.empty()) {
    return std::nullopt;  // "", "-", ".", "Mi"
  }
  const std::optional<Suffix> suffix = InterpretSuffix(s.substr(pos));
  if (!suffix) {
    return std::nullopt;
  }

  // value = digits * 10^exp10 * 2^exp2 nanos, with `digits` the number without
  // its point and exp10 already shifted by the fraction length and to nanos.
  std::string digits;
  digits.reserve(whole.size() + fraction.size());
  digits.append(whole).append(fraction);
  int exp10 = suffix->exp10 - static_cast<int>(fraction.size()) + 9;
  const size_t first = digits.find_first_not_of('0');
  digits.erase(0, first == std::string::npos ? digits.size() : first);
  while (!digits.empty() && digits.back() == '0') {
    digits.pop_back();
    ++exp10;
  }
  Quantity q;
  q.format = suffix->format;
  if (digits.empty()) {
    return q;  // zero, whatever the suffix
  }
  if (digits.size() > static_cast<size_t>(kMaxPow10)) {
    return std::nullopt;
  }
  const bool binary = q.format == QuantityFormat::kBinarySI;
  // Too large for 128 bits: a binary value is capped below anyway; a decimal
  // one is given up on.
  const auto too_large = [&]() -> std::optional<Quantity> {
    if (!binary) {
      return std::nullopt;
    }
    q.nanos = static_cast<__int128>(kMaxBinaryNanos) * (negative ? -1 : 1);
    return q;
  };
  u128 mag = 0;
  for (char c : digits) {
    mag = mag * 10 + static_cast<unsigned>(c - '0');
  }
  if (suffix->exp2 > 0) {
    if (mag > (kMaxU128 >> suffix->exp2)) {
      return too_large();
    }
    mag <<= suffix->exp2;
  }
  if (exp10 >= 0) {
    for (int i = 0; i < exp10; ++i) {
      if (mag > kMaxU128 / 10) {
        return too_large();
      }
      mag *= 10;
    }
  } else if (-exp10 > kMaxPow10) {
    // mag < 2^128 < 10^39: finer than a nano, which rounds up to 1n.
    mag = 1;
  } else {
    // Finer than a nano: round away from zero, as the API server does, so that
    // asking for "0.1n" still gets some.
    const u128 divisor = Pow10(-exp10);
    const bool inexact = mag % divisor != 0;
    mag = mag / divisor + (inexact ? 1 : 0);
  }
  if (mag > kMaxI128) {
    return too_large();
  }
  if (binary) {
    if (mag > kMaxBinaryNanos) {
      mag = kMaxBinaryNanos;
    }
    if (mag < static_cast<u128>(kNanosPerUnit)) {
      q.format = QuantityFormat::kDecimalSI;  // "0.5Ki" would otherwise need rounding
    }
  }
  q.nanos = negative ? -static_cast<__int128>(mag) : static_cast<__int128>(mag);
  return q;
}

std::string CanonicalQuantity(const Quantity& q) {
  if (q.nanos == 0) {
    return "0";
  }
  const __int128 unit = kNanosPerUnit;
  if (q.format == QuantityFormat::kBinarySI && q.nanos > -1024 * unit && q.nanos < 1024 * unit) {
    // Fall through to decimal: apimachinery writes small binary values in
    // decimal ("0.5Ki" -> "512") rather than round them.
  } else if (q.format == QuantityFormat::kBinarySI && q.nanos % unit == 0) {
    // Worked example: 1.5Gi = 1610612736 = 1536 * 1024^2 -> "1536Mi".
    __int128 mantissa = q.nanos / unit;
    int exp1024 = 0;
    while (mantissa % 1024 == 0) {
      mantissa /= 1024;
      ++exp1024;
    }
    return Int128ToString(mantissa) + std::string(BinarySuffix(exp1024));
  }
  // Decimal: strip every factor of ten into the exponent, then step the
  // exponent down to a multiple of three. 1.5 = 1500000000n -> 15e-1 -> 1500e-3
  // -> "1500m". The exponent starts at -9 and only decreases to the multiple of
  // three at or above -9, so the mantissa never exceeds the nano count.
  __int128 mantissa = q.nanos;
  int exp10 = -9;
  while (mantissa % 10 == 0) {
    mantissa /= 10;
    ++exp10;
  }
  while (exp10 % 3 != 0) {
    mantissa *= 10;
    --exp10;
  }
  std::string out = Int128ToString(mantissa);
  const bool decimal_si = q.format != QuantityFormat::kDecimalExponent;
  if (decimal_si && exp10 <= 18) {
    out.append(DecimalSuffix(exp10));
  } else if (exp10 != 0) {
    // Decimal SI has no suffix past E (10^18): the API server also falls back
    // to exponent notation there.
    out.append("e").append(std::to_string(exp10));
  }
  return out;
}

}  // namespace capstan::diff
