#pragma once

// The one place for early-return helpers on absl::Status / absl::StatusOr.
//
//   RETURN_IF_ERROR(client.Apply(obj));
//   ASSIGN_OR_RETURN(auto deploy, client.Get(ref, name));

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define CAPSTAN_CONCAT_INNER_(a, b) a##b
#define CAPSTAN_CONCAT_(a, b) CAPSTAN_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                \
  do {                                       \
    ::absl::Status capstan_status_ = (expr); \
    if (!capstan_status_.ok()) {             \
      return capstan_status_;                \
    }                                        \
  } while (false)

#define CAPSTAN_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) {                                     \
    return std::move(tmp).status();                    \
  }                                                    \
  lhs = std::move(tmp).value()

#define ASSIGN_OR_RETURN(lhs, expr) \
  CAPSTAN_ASSIGN_OR_RETURN_IMPL_(CAPSTAN_CONCAT_(capstan_statusor_, __LINE__), lhs, expr)
