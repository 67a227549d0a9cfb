// The op registry: every tensor operation is declared once by name, with a
// function that validates its arguments, promotes dtypes, picks the backend
// for the inputs' device and returns the outputs, and, for differentiable
// ops, the backward function written beside it.
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
#include <type_traits>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/scalar.h"
#include "core/tensor.h"
#include "core/views.h"

namespace tensord {

// A positional argument: a tensor or a Python number.
using Operand = std::variant<Tensor, Scalar>;

// A named attribute.
using Attr = std::variant<int64_t, double, bool, Dims, DType, Scalar, std::string,
                          std::vector<IndexItem>>;

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
  absl::StatusOr<std::optional<std::string>> Text(const std::string& name) const;
  // The index expression of the `index` view op.
  absl::StatusOr<std::vector<IndexItem>> IndexItems(const std::string& name) const;

  const std::map<std::string, Attr>& attrs() const { return attrs_; }
  // A copy with `name` set to `value` (the recorder adds a drawn "seed").
  OpContext WithAttr(const std::string& name, Attr value) const;
  // A copy without the positional arguments, for backward nodes that need
  // only the attributes: it keeps no tensor alive.
  OpContext WithoutArgs() const;
  // A copy keeping only the integer and bool tensor arguments; the others
  // become the number 0 (kSavesIndexInputs).
  OpContext WithIndexArgsOnly() const;

 private:
  std::string op_;
  std::vector<Operand> args_;
  std::map<std::string, Attr> attrs_;
  std::shared_ptr<MemoryBudget> budget_;
};

using OpFunction = std::function<absl::StatusOr<std::vector<Tensor>>(const OpContext&)>;

// What an argument of the forward was, kept for every recorded op (saved
// tensors or not): the engine casts and sums each input gradient back to it.
struct InputInfo {
  bool is_tensor = false;
  DType dtype = DType::kFloat32;
  Dims shape;
};

// What a backward function sees: the forward's attributes (and its tensor
// arguments when the op declares kSavesInputs), its outputs (kSavesOutputs),
// and the gradient flowing into each output.
class GradContext {
 public:
  GradContext(const OpContext& forward, absl::Span<const InputInfo> inputs,
              absl::Span<const Tensor> outputs, absl::Span<const std::optional<Tensor>> grads,
              absl::Span<const bool> needs_grad)
      : forward_(forward), inputs_(inputs), outputs_(outputs), grads_(grads),
        needs_grad_(needs_grad) {}

  const OpContext& forward() const { return forward_; }
  const std::shared_ptr<MemoryBudget>& budget() const { return forward_.budget(); }
  size_t num_inputs() const { return inputs_.size(); }
  const InputInfo& info(size_t i) const { return inputs_[i]; }
  // Argument i of the forward. REQUIRES: the op saves its inputs.
  const Operand& operand(size_t i) const { return forward_.arg(i); }
  // REQUIRES: saved inputs and argument i a tensor.
  const Tensor& input(size_t i) const { return std::get<Tensor>(forward_.arg(i)); }
  // REQUIRES: the op saves its outputs.
  const Tensor& output(size_t i = 0) const { return outputs_[i]; }
  bool has_grad(size_t i) const { return grads_[i].has_value(); }
  // The gradient of output i. REQUIRES: has_grad(i); always true for output 0
  // of a single-output op, since a node only runs when a gradient reached it.
  const Tensor& grad(size_t i = 0) const { return *grads_[i]; }
  // Whether argument i needs a gradient; a backward may skip the others.
  bool needs_grad(size_t i) const { return needs_grad_[i]; }

  // Runs another op (no autograd recording) with the forward's budget.
  absl::StatusOr<Tensor> Call(absl::string_view op, std::vector<Operand> args,
                              std::map<std::string, Attr> attrs = {}) const;

 private:
  const OpContext& forward_;
  absl::Span<const InputInfo> inputs_;
  absl::Span<const Tensor> outputs_;
  absl::Span<const std::optional<Tensor>> grads_;
  absl::Span<const bool> needs_grad_;
};

// One gradient per forward argument (nullopt where there is none, e.g. for
// a number or an argument that needs none). A gradient may have a dtype or
// a broadcast shape other than its input's: the engine casts it back and
// sums broadcast dimensions away, so backward functions need not.
using BackwardFunction =
    std::function<absl::StatusOr<std::vector<std::optional<Tensor>>>(const GradContext&)>;

enum OpTraits : unsigned {
  kNoTraits = 0,
  kSavesInputs = 1,   // the backward reads the forward's tensor arguments
  kSavesOutputs = 2,  // the backward reads the forward's outputs
  kInPlace = 4,       // writes its first argument and returns nothing
  kRandom = 8,        // reads a "seed" attribute, drawn from the session when absent
  // The backward reads the forward's integer and bool tensor arguments (the
  // indices and masks of an indexing op) but none of its floating ones, so
  // the graph never keeps the indexed data alive for them.
  kSavesIndexInputs = 16,
};

struct OpDef {
  // A plain op, not differentiable: any callable taking an OpContext.
  template <typename F,
            typename = std::enable_if_t<std::is_invocable_v<const F&, const OpContext&>>>
  OpDef(F forward) : forward(std::move(forward)) {}  // NOLINT(google-explicit-constructor)
  OpDef(OpFunction forward, unsigned traits) : forward(std::move(forward)), traits(traits) {}
  OpDef(OpFunction forward, BackwardFunction backward, unsigned traits = kNoTraits)
      : forward(std::move(forward)), backward(std::move(backward)), traits(traits) {}

  OpFunction forward;
  BackwardFunction backward;  // null: outputs never require grad
  unsigned traits = kNoTraits;
  // The named attributes the op takes (from the table in ops/op.cc); RunOp
  // refuses any other.
  std::vector<std::string> attrs;
};

using OpTable = absl::flat_hash_map<std::string, OpDef>;

// Each op family adds its ops to the table; ops/op.cc calls them all once.
// (Explicit calls, not static registrars, which a static library would drop.)
void AddElementwiseOps(OpTable& table);  // ops/elementwise.cc
void AddReductionOps(OpTable& table);    // ops/reduction.cc
void AddLinalgOps(OpTable& table);       // ops/linalg.cc: matmul, cat, stack, in-place updates
void AddShapeOps(OpTable& table);        // ops/shape.cc: views and copies
void AddNnOps(OpTable& table);           // ops/nn.cc: linear, losses, dropout
void AddIndexOps(OpTable& table);        // ops/index.cc: index, index_put(_), nonzero

// Names in op.cc's attribute table that are not registered ops (for a test).
std::vector<std::string> UnknownOpsInAttributeTable();

// The op named `name`, or NotFound listing nothing secret.
absl::StatusOr<const OpDef*> FindOp(absl::string_view name);

// Runs the op's forward, with the op name prefixed to error messages. No
// autograd: autograd/recorder.h records ops run on behalf of clients.
absl::StatusOr<std::vector<Tensor>> RunOp(const OpContext& context);

// RunOp for one-output ops, for ops and backward functions built from others.
absl::StatusOr<Tensor> CallOp(absl::string_view op, std::vector<Operand> args,
                              std::shared_ptr<MemoryBudget> budget,
                              std::map<std::string, Attr> attrs = {});

}  // namespace tensord
