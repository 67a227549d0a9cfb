// The op registry: every tensor operation is declared once by name, with a
// function that validates its arguments, promotes dtypes, picks the backend
// for the inputs' device and returns the outputs.
//
// Ops receive an OpContext: positional arguments (tensors or Python-style
// scalars) and named attributes (`dim`, `keepdim`, ...), exactly as a client
// sent them in one OpRequest. Validation and type promotion happen in the op
// function, before any backend code runs; backends (ops/cpu/, later
// ops/cuda/) only compute.
//
// Thread-safety: the registry is built once, on first use, and read-only
// afterwards; op functions must be reentrant.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/scalar.h"
#include "core/tensor.h"

namespace tensord {

// A positional argument: a tensor or a Python number.
using Operand = std::variant<Tensor, Scalar>;

// A named attribute.
using Attr = std::variant<int64_t, double, bool, Dims, DType, Scalar, std::string>;

class OpContext {
 public:
  OpContext(std::string op, std::vector<Operand> args, std::map<std::string, Attr> attrs,
            std::shared_ptr<MemoryBudget> budget)
      : op_(std::move(op)), args_(std::move(args)), attrs_(std::move(attrs)),
        budget_(std::move(budget)) {}

  const std::string& op() const { return op_; }
  size_t num_args() const { return args_.size(); }
  const Operand& arg(size_t i) const { return args_[i]; }
  const std::shared_ptr<MemoryBudget>& budget() const { return budget_; }

  // InvalidArgument naming the op when the count differs.
  absl::Status ExpectArgs(size_t min, size_t max) const;
  // Argument i as a tensor; InvalidArgument if it is a scalar.
  absl::StatusOr<Tensor> TensorArg(size_t i) const;

  // Named attributes with defaults; InvalidArgument for a wrong type.
  absl::StatusOr<std::optional<int64_t>> Int(const std::string& name) const;
  absl::StatusOr<bool> Bool(const std::string& name, bool fallback) const;
  absl::StatusOr<std::optional<double>> Double(const std::string& name) const;
  // `dim` given as one int or a list; nullopt when absent.
  absl::StatusOr<std::optional<Dims>> Dims_(const std::string& name) const;
  absl::StatusOr<std::optional<DType>> DTypeAttr(const std::string& name) const;
  absl::StatusOr<std::optional<Scalar>> ScalarAttr(const std::string& name) const;

 private:
  std::string op_;
  std::vector<Operand> args_;
  std::map<std::string, Attr> attrs_;
  std::shared_ptr<MemoryBudget> budget_;
};

using OpFunction = std::function<absl::StatusOr<std::vector<Tensor>>(const OpContext&)>;

using OpTable = absl::flat_hash_map<std::string, OpFunction>;

// Each op family adds its ops to the table; ops/op.cc calls them all once.
// (Explicit calls, not static registrars, which a static library would drop.)
void AddElementwiseOps(OpTable& table);  // ops/elementwise.cc
void AddReductionOps(OpTable& table);    // ops/reduction.cc
void AddLinalgOps(OpTable& table);       // ops/linalg.cc: matmul, cat, stack, in-place updates

// The op named `name`, or NotFound listing nothing secret.
absl::StatusOr<const OpFunction*> FindOp(absl::string_view name);

// Runs the op: FindOp + call, with the op name prefixed to error messages.
absl::StatusOr<std::vector<Tensor>> RunOp(const OpContext& context);

}  // namespace tensord
