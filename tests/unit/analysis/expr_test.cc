#include "capstan/analysis/expr.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace capstan::analysis {
namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

Env Num(double x) { return Env{Value::Number(x), Value()}; }
Env Vec(std::vector<double> xs) { return Env{Value::Vector(std::move(xs)), Value()}; }

struct Case {
  std::string name;
  std::string expr;
  Env env;
  // Expected value as Value::ToString(), or the start of the error message (with
  // `error` set).
  std::string want;
  bool error = false;
};

TEST(ExprTest, EvaluatesEveryOperator) {
  const std::vector<Case> cases = {
      // Comparisons.
      {"less", "result < 0.05", Num(0.01), "true"},
      {"less false", "result < 0.05", Num(0.31), "false"},
      {"less equal at bound", "result <= 0.05", Num(0.05), "true"},
      {"greater", "result > 2", Num(2.5), "true"},
      {"greater equal", "result >= 0.05", Num(0.05), "true"},
      {"equal", "result == 1", Num(1), "true"},
      {"not equal", "result != 1", Num(2), "true"},
      {"string equal", "result == 'ok'", Env{Value::String("ok"), Value()}, "true"},
      {"bool equal", "true == true", {}, "true"},
      // Arithmetic, precedence, associativity.
      {"add mul precedence", "1 + 2 * 3", {}, "7"},
      {"parentheses", "(1 + 2) * 3", {}, "9"},
      {"subtract left assoc", "10 - 4 - 3", {}, "3"},
      {"divide", "result / 4", Num(1), "0.25"},
      {"modulo", "7 % 4", {}, "3"},
      {"power", "2 ** 10", {}, "1024"},
      {"caret power right assoc", "2 ^ 3 ^ 2", {}, "512"},
      {"unary minus", "-result + 1", Num(3), "-2"},
      {"unary plus", "+2", {}, "2"},
      {"divide by zero is Inf", "1 / 0", {}, "+Inf"},
      {"zero by zero is NaN", "0 / 0", {}, "NaN"},
      {"exponent literal", "1e-3 * 1000", {}, "1"},
      {"underscore digits", "1_000 + 1", {}, "1001"},
      // Logic.
      {"and", "result > 0 && result < 1", Num(0.5), "true"},
      {"and word", "result > 0 and result < 1", Num(2), "false"},
      {"or", "result < 0 || result > 1", Num(2), "true"},
      {"or word", "result < 0 or result > 1", Num(0.5), "false"},
      {"not", "!(result > 1)", Num(0.5), "true"},
      {"not word", "not (result > 1)", Num(2), "false"},
      {"and binds tighter than or", "true || false && false", {}, "true"},
      {"short-circuit and skips type error", "false && result[5] > 0", Vec({}), "false"},
      {"short-circuit or skips type error", "true || result[5] > 0", Vec({}), "true"},
      // Vectors.
      {"index", "result[0]", Vec({0.2, 0.4}), "0.2"},
      {"index from end", "result[-1]", Vec({0.2, 0.4}), "0.4"},
      {"len", "len(result)", Vec({1, 2, 3}), "3"},
      {"len of empty", "len(result) == 0", Vec({}), "true"},
      {"empty guard", "len(result) == 0 || result[0] < 0.05", Vec({}), "true"},
      {"single element vector compares", "result < 0.05", Vec({0.01}), "true"},
      {"vector equality", "result == result", Vec({1, 2}), "true"},
      {"min max", "max(result) - min(result)", Vec({1, 5, 3}), "4"},
      {"max of numbers", "max(1, 7, 3)", {}, "7"},
      {"abs", "abs(result - 1)", Num(0.25), "0.75"},
      {"int truncates", "int(2.7)", {}, "2"},
      {"float", "float(3)", {}, "3"},
      // NaN and Inf.
      {"NaN compares false", "result < 0.05", Num(kNaN), "false"},
      {"NaN not equal to itself", "result == result", Num(kNaN), "false"},
      {"isNaN", "isNaN(result)", Num(kNaN), "true"},
      {"isNaN of number", "isNaN(result)", Num(1), "false"},
      {"isNaN of vector with NaN", "isNaN(result)", Vec({1, kNaN}), "true"},
      {"isInf", "isInf(result)", Num(kInf), "true"},
      {"isInf negative", "isInf(result)", Num(-kInf), "true"},
      {"Inf compares", "result > 1e300", Num(kInf), "true"},
      {"NaN poisons max", "max(result)", Vec({1, kNaN}), "NaN"},
      // Baseline.
      {"baseline", "result <= baseline * 1.2", Env{Value::Number(1.1), Value::Number(1)}, "true"},
      {"baseline regression", "result <= baseline * 1.2", Env{Value::Number(1.3), Value::Number(1)},
       "false"},
      {"baseline vectors", "result[0] <= baseline[0] * 1.2",
       Env{Value::Vector({1.3}), Value::Vector({1})}, "false"},
      {"nil baseline", "baseline == nil", Num(1), "true"},
      // Errors: never a silent false.
      {"empty vector index", "result[0] < 0.05", Vec({}), "index 0 out of range (len 0)", true},
      {"vector vs number", "result < 1", Vec({1, 2}), "'<' needs a number, got a vector of 2",
       true},
      {"index a number", "result[0]", Num(1), "cannot index number", true},
      {"fractional index", "result[0.5]", Vec({1}), "index 0.5 is not an integer", true},
      {"unknown name", "foo > 1", Num(1), "unknown name foo", true},
      {"unknown function", "median(result)", Vec({1}), "unknown function median()", true},
      {"and needs bools", "result && true", Num(1), "'&&' needs true or false", true},
      {"not needs bool", "!result", Num(1), "'!' needs true or false", true},
      {"len arity", "len()", {}, "len() takes 1 argument, got 0", true},
      {"len of number", "len(result)", Num(1), "len() needs a vector or a string", true},
      {"min of empty", "min(result)", Vec({}), "min() of nothing", true},
      {"string arithmetic", "'a' * 2", {}, "'*' needs a number, got string", true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<Expr> e = Expr::Parse(c.expr);
    ASSERT_TRUE(e.ok()) << e.status();
    absl::StatusOr<Value> v = e->Evaluate(c.env);
    if (c.error) {
      ASSERT_FALSE(v.ok()) << v->ToString();
      EXPECT_TRUE(absl::StartsWith(v.status().message(), c.want)) << v.status();
    } else {
      ASSERT_TRUE(v.ok()) << v.status();
      EXPECT_EQ(v->ToString(), c.want);
    }
  }
}

TEST(ExprTest, RejectsMalformedText) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "condition is empty"},
      {"   ", "condition is empty"},
      {"result >", "position 8: expected a value, found the end"},
      {"result > > 1", "position 9: expected a value, found '>'"},
      {"(result > 1", "position 11: expected ')', found the end"},
      {"result[0", "position 8: expected ']', found the end"},
      {"result > 1)", "position 10: expected an operator or the end, found ')'"},
      {"result = 1", "position 7: unexpected character '='"},
      {"result > 'x", "position 9: unterminated string"},
      {"1 < result < 2", "position 11: comparisons do not chain"},
      {"result & 1", "position 7: unexpected character '&'"},
      {"len(result,", "position 11: expected a value, found the end"},
      {"and", "position 0: expected a value, found 'and'"},
      {std::string(kMaxExprLength + 1, '1'), "condition is 4097 characters long"},
      {std::string(200, '(') + "1" + std::string(200, ')'), "expression nests too deeply"},
      {std::string(200, '!') + "true", "expression nests too deeply"},
  };
  for (const auto& [text, want] : cases) {
    SCOPED_TRACE(text.substr(0, 40));
    absl::StatusOr<Expr> e = Expr::Parse(text);
    ASSERT_FALSE(e.ok());
    EXPECT_TRUE(absl::StrContains(e.status().message(), want)) << e.status();
  }
}

TEST(ExprTest, EvaluateBoolRequiresABool) {
  absl::StatusOr<Expr> e = Expr::Parse("result * 2");
  ASSERT_TRUE(e.ok());
  absl::StatusOr<bool> b = e->EvaluateBool(Num(0.31));
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().message(), "condition must be true or false, got number 0.62");
}

TEST(ExprTest, ReportsWhatItCallsAndReads) {
  absl::StatusOr<Expr> e = Expr::Parse("isNaN(result) || result <= baseline * 1.2");
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->Calls("isNaN"));
  EXPECT_FALSE(e->Calls("isInf"));
  EXPECT_TRUE(e->Reads("baseline"));
  EXPECT_TRUE(e->Reads("result"));
  EXPECT_FALSE(e->Reads("foo"));
}

}  // namespace
}  // namespace capstan::analysis
