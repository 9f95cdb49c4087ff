// libFuzzer target for the analysis condition parser and evaluator:
//   make fuzz (tests/fuzz/run.sh; seeds in tests/fuzz/corpus/expr)
// Any input must parse or be rejected with a Status, and evaluate or fail with one:
// no crash, no sanitizer report, no unbounded recursion.
#include <cstddef>
#include <cstdint>
#include <string>

#include "capstan/analysis/expr.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<capstan::analysis::Expr> e = capstan::analysis::Expr::Parse(text);
  if (!e.ok()) return 0;
  using capstan::analysis::Value;
  for (const capstan::analysis::Env& env :
       {capstan::analysis::Env{Value::Number(0.31), Value::Number(0.2)},
        capstan::analysis::Env{Value::Vector({}), Value()},
        capstan::analysis::Env{Value::Vector({1, 2, 3}), Value::Vector({0.5})},
        capstan::analysis::Env{Value::String("ok"), Value::Bool(true)}}) {
    (void)e->Evaluate(env);
    (void)e->EvaluateBool(env);
  }
  (void)e->Calls("isNaN");
  return 0;
}
