#pragma once

namespace capstan {

// `capstan run`: runs the operator until SIGINT/SIGTERM. Returns the exit code.
int RunOperator();

}  // namespace capstan
