#pragma once

// Condition expressions of analysis metrics (successCondition / failureCondition), in
// the subset of expr-lang (github.com/expr-lang/expr, what Argo Rollouts evaluates)
// that Argo Rollouts templates use:
//
//   literals     1  2.5  1e-3  true  false  "text"  'text'
//   variables    result, baseline (a number, a vector of numbers, a string, a bool)
//   indexing     result[0]  result[-1] (from the end)
//   calls        len(x)  isNaN(x)  isInf(x)  abs(x)  min(a, b, ...)  max(a, b, ...)
//                float(x)  int(x)  (a vector of one element counts as that number)
//   unary        !  not  -  +
//   binary       **  ^ (power)   * / %   + -   == != < <= > >=   && and   || or
//   grouping     ( ... )
//
// Precedence, strongest first: postfix [] and calls, unary, **/^ (right-assoc),
// * / %, + -, comparisons (non-associative), &&, ||. `&&` and `||` short-circuit.
//
// Hand-written recursive-descent parser: Debian has no C++ library for expr-lang's
// syntax (muparser/muparserx are math parsers with other operators, no `and`/`not`,
// no string values, and they report errors by exception). Inputs are bounded
// (kMaxLength, kMaxDepth) so a hostile template cannot exhaust the stack; the parser
// is fuzzed (tests/fuzz/expr_fuzz.cc).
//
// Numbers are IEEE doubles: NaN compares unequal to everything (so `result < 0.05`
// is false for NaN), x/0 is +-Inf or NaN, % is fmod. Type errors (a vector compared
// to a number, indexing a number, an index out of range) are errors, never false.
//
// Thread-compatible: a parsed Expr is immutable and may be evaluated concurrently.

#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace capstan::analysis {

inline constexpr size_t kMaxExprLength = 4096;
inline constexpr int kMaxExprDepth = 64;

// null (an unset baseline), bool, number, string, or a vector of numbers.
struct Value {
  std::variant<std::monostate, bool, double, std::string, std::vector<double>> v;

  Value() = default;
  static Value Bool(bool b) { return Value{b}; }
  static Value Number(double d) { return Value{d}; }
  static Value String(std::string s) { return Value{std::move(s)}; }
  static Value Vector(std::vector<double> xs) { return Value{std::move(xs)}; }

  bool is_null() const { return std::holds_alternative<std::monostate>(v); }
  bool is_bool() const { return std::holds_alternative<bool>(v); }
  bool is_number() const { return std::holds_alternative<double>(v); }
  bool is_string() const { return std::holds_alternative<std::string>(v); }
  bool is_vector() const { return std::holds_alternative<std::vector<double>>(v); }

  // "0.31", "[0.31, 0.2]", "true", "\"ok\"", "nil"; for measurement values and messages.
  std::string ToString() const;
  // True when the value is NaN or a vector holding a NaN.
  bool HasNaN() const;

  friend bool operator==(const Value&, const Value&) = default;

 private:
  template <typename T>
  explicit Value(T x) : v(std::move(x)) {}
};

// The variables an expression sees.
struct Env {
  Value result;
  Value baseline;  // null unless the metric compares against a baseline
};

class Expr {
 public:
  struct Node;
  // InvalidArgument with the position and what was expected:
  //   `result >` : "position 8: expected a value, found the end"
  static absl::StatusOr<Expr> Parse(absl::string_view text);

  // The value of the expression. InvalidArgument for type errors and unknown names.
  absl::StatusOr<Value> Evaluate(const Env& env) const;
  // Evaluate, then require a bool ("condition must be true or false, got 0.31").
  absl::StatusOr<bool> EvaluateBool(const Env& env) const;

  // True when the expression calls `name` (e.g. isNaN), so callers can tell whether a
  // condition decides NaN itself.
  bool Calls(absl::string_view name) const;
  // True when the expression reads the variable `name`.
  bool Reads(absl::string_view name) const;

  const std::string& text() const { return text_; }

 private:
  std::shared_ptr<const Node> root_;
  std::string text_;
};

}  // namespace capstan::analysis
