#pragma once

// Kubernetes resource quantities ("500m", "1Gi", "129e6"), after
// k8s.io/apimachinery/pkg/api/resource. The diff layer needs them because the
// API server stores a quantity in canonical form: Capstan applies cpu "0.5" and
// reads back "500m", and the two must compare equal or a converged object would
// be re-applied on every resync.
//
// A value is held exactly as a count of nano-units in a 128-bit integer, the
// precision the API server keeps. Grammar (identical to apimachinery's):
//
//   <quantity> ::= <sign>? <number> <suffix>
//   <number>   ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
//   <suffix>   ::= "" | n | u | m | k | M | G | T | P | E      (decimal SI)
//                | Ki | Mi | Gi | Ti | Pi | Ei                 (binary SI)
//                | e<sign>?<digits> | E<sign>?<digits>         (decimal exponent)
//
// Like the API server, parsing rounds a non-zero value finer than a nano away
// from zero ("0.1n" is 1n) and caps a binary-SI magnitude at 2^63-1 units.
// Unlike it, this parser rejects decimal values whose magnitude exceeds about
// 1.7e29 units (2^127 nanos), numbers with more than 38 significant digits,
// and degenerate strings apimachinery reads as zero ("-", ".", "Mi"). Callers
// then fall back to comparing the text, which is safe for a diff. Checked
// against apimachinery v0.37.2 on 20,000 generated strings; the API server's
// only other difference is a bug it has above 10^21 (it writes "1000E" as "1").
//
// The API server echoes some inputs verbatim instead of canonicalising them
// ("1.500", "+1k"); a diff sees those as textually equal before it needs this.
//
// Pure functions; thread-safe.

#include <optional>
#include <string>
#include <string_view>

namespace capstan::diff {

// How the quantity was written; the canonical form keeps the family.
enum class QuantityFormat {
  kDecimalSI,        // "", n, u, m, k, M, G, T, P, E
  kBinarySI,         // Ki .. Ei
  kDecimalExponent,  // 1e3, 5E-2
};

struct Quantity {
  // The value in units of 10^-9 ("1" is 1'000'000'000, "1Ki" is 1024 * 10^9).
  __int128 nanos = 0;
  QuantityFormat format = QuantityFormat::kDecimalSI;
};

// Parses `text` as a Kubernetes quantity; nullopt when it is not one
// (including "", "1K", "1 Gi", "1.5.5", "1e", "Mi") or is out of range.
std::optional<Quantity> ParseQuantity(std::string_view text);

// The string the API server serialises `q` as (Quantity.String()): no
// fractional digits, the largest suffix of q's family that loses nothing.
// Examples: 0.5 -> "500m", 1.5Gi -> "1536Mi", 1024Mi -> "1Gi", 0.5Ki -> "512",
// 1000m -> "1", 1.5e3 -> "1500", 12e6 -> "12e6", 0 -> "0".
std::string CanonicalQuantity(const Quantity& q);

}  // namespace capstan::diff
