// Early-return helpers for absl::Status / absl::StatusOr.
//
//   RETURN_IF_ERROR(expr);            // returns expr's status if it is not OK
//   ASSIGN_OR_RETURN(auto x, expr);   // x = *expr, or returns expr's status
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TENSORD_CONCAT_INNER(a, b) a##b
#define TENSORD_CONCAT(a, b) TENSORD_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status tensord_status_ = (expr);   \
    if (!tensord_status_.ok()) return tensord_status_; \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(TENSORD_CONCAT(tensord_statusor_, __LINE__), lhs, expr)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(*tmp)
