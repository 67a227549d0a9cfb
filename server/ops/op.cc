#include "ops/op.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace tensord {
namespace {

// The named attributes (keyword arguments) of each op that takes any; the
// others take none. RunOp refuses any other name before the op runs, as
// Python refuses an unexpected keyword argument: a misspelt `dims=` must
// not silently reduce over every dimension. One table, like PyTorch's
// native_functions.yaml, so the whole surface reads in one place; the ops'
// own readers (OpContext::Int, ...) still check each value's type.
// "seed" is drawn by the recorder for kRandom ops when the client gives none.
const std::pair<const char*, std::vector<std::string>> kAttributes[] = {
    // elementwise
    {"gelu", {"approximate"}},
    {"gelu_backward", {"approximate"}},
    {"clamp", {"min", "max"}},
    // reductions
    {"sum", {"dim", "keepdim"}},
    {"prod", {"dim", "keepdim"}},
    {"mean", {"dim", "keepdim"}},
    {"var", {"dim", "keepdim", "correction"}},
    {"std", {"dim", "keepdim", "correction"}},
    {"max", {"dim", "keepdim"}},
    {"min", {"dim", "keepdim"}},
    {"argmax", {"dim", "keepdim"}},
    {"argmin", {"dim", "keepdim"}},
    {"softmax", {"dim"}},
    {"log_softmax", {"dim"}},
    // linalg and in-place updates
    {"cat", {"dim"}},
    {"stack", {"dim"}},
    {"add_", {"alpha"}},
    // shape
    {"transpose", {"dim0", "dim1"}},
    {"permute", {"dims"}},
    {"view", {"shape"}},
    {"reshape", {"shape"}},
    {"flatten", {"start_dim", "end_dim"}},
    {"squeeze", {"dims"}},
    {"unsqueeze", {"dim"}},
    {"expand", {"shape"}},
    {"select", {"dim", "index"}},
    {"to", {"dtype"}},
    // nn
    {"mse_loss", {"reduction"}},
    {"l1_loss", {"reduction"}},
    {"nll_loss", {"reduction", "ignore_index", "label_smoothing"}},
    {"cross_entropy", {"reduction", "ignore_index", "label_smoothing"}},
    {"binary_cross_entropy_with_logits", {"reduction"}},
    {"dropout", {"p", "training", "seed"}},
    // indexing
    {"index", {"items"}},
    {"index_put_", {"items", "accumulate"}},
    {"index_put", {"items", "accumulate"}},
};

const OpTable& Registry() {
  static const OpTable* table = [] {
    auto* t = new OpTable();
    AddElementwiseOps(*t);
    AddReductionOps(*t);
    AddLinalgOps(*t);
    AddShapeOps(*t);
    AddNnOps(*t);
    AddIndexOps(*t);
    for (const auto& [name, attrs] : kAttributes) {
      // An entry for an op that does not exist is a bug; ops_test checks it.
      if (auto it = t->find(name); it != t->end()) it->second.attrs = attrs;
    }
    return t;
  }();
  return *table;
}

// InvalidArgument naming the first attribute `def` does not take, and what
// it takes.
absl::Status CheckAttributes(const OpContext& context, const OpDef& def) {
  for (const auto& [name, value] : context.attrs()) {
    if (std::find(def.attrs.begin(), def.attrs.end(), name) != def.attrs.end()) continue;
    return absl::InvalidArgumentError(absl::StrCat(
        context.op(), " got an unexpected attribute '", name, "'",
        def.attrs.empty() ? "; it takes none"
                          : absl::StrCat("; it takes ", absl::StrJoin(def.attrs, ", "))));
  }
  return absl::OkStatus();
}

absl::string_view AttrTypeName(const Attr& attr) {
  static constexpr absl::string_view kNames[] = {"int",    "float",  "bool",
                                                 "int list", "dtype", "scalar",
                                                 "string", "index"};
  return kNames[attr.index()];
}

}  // namespace

std::vector<std::string> UnknownOpsInAttributeTable() {
  std::vector<std::string> unknown;
  for (const auto& entry : kAttributes) {
    if (!Registry().contains(entry.first)) unknown.push_back(entry.first);
  }
  return unknown;
}

absl::StatusOr<const OpDef*> FindOp(absl::string_view name) {
  auto it = Registry().find(name);
  if (it == Registry().end()) {
    return absl::NotFoundError(absl::StrCat("unknown op '", name, "'"));
  }
  return &it->second;
}

absl::StatusOr<std::vector<Tensor>> RunOp(const OpContext& context) {
  absl::StatusOr<const OpDef*> def = FindOp(context.op());
  if (!def.ok()) return def.status();
  RETURN_IF_ERROR(CheckAttributes(context, **def));
  absl::StatusOr<std::vector<Tensor>> result = (*def)->forward(context);
  if (!result.ok()) {
    return absl::Status(result.status().code(),
                        absl::StrCat(context.op(), ": ", result.status().message()));
  }
  return result;
}

absl::StatusOr<Tensor> CallOp(absl::string_view op, std::vector<Operand> args,
                              std::shared_ptr<MemoryBudget> budget,
                              std::map<std::string, Attr> attrs) {
  ASSIGN_OR_RETURN(std::vector<Tensor> outputs,
                   RunOp(OpContext(std::string(op), std::move(args), std::move(attrs),
                                   std::move(budget))));
  if (outputs.empty()) {
    return absl::InternalError(absl::StrCat(op, " returned no output"));
  }
  return std::move(outputs[0]);
}

absl::StatusOr<Tensor> GradContext::Call(absl::string_view op, std::vector<Operand> args,
                                         std::map<std::string, Attr> attrs) const {
  return CallOp(op, std::move(args), budget(), std::move(attrs));
}

OpContext OpContext::WithAttr(const std::string& name, Attr value) const {
  std::map<std::string, Attr> attrs = attrs_;
  attrs[name] = std::move(value);
  return OpContext(op_, args_, std::move(attrs), budget_);
}

OpContext OpContext::WithoutArgs() const { return OpContext(op_, {}, attrs_, budget_); }

OpContext OpContext::WithIndexArgsOnly() const {
  std::vector<Operand> args;
  args.reserve(args_.size());
  for (const Operand& arg : args_) {
    const Tensor* t = std::get_if<Tensor>(&arg);
    const bool index = t != nullptr && (IsIntegral(t->dtype()) || t->dtype() == DType::kBool);
    args.push_back(index ? arg : Operand(Scalar{}));
  }
  return OpContext(op_, std::move(args), attrs_, budget_);
}

absl::Status OpContext::ExpectArgs(size_t min, size_t max) const {
  if (args_.size() < min || args_.size() > max) {
    return absl::InvalidArgumentError(absl::StrCat(
        "takes ", min == max ? absl::StrCat(min) : absl::StrCat(min, " to ", max),
        " arguments but got ", args_.size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<Tensor> OpContext::TensorArg(size_t i) const {
  if (i >= args_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("missing argument ", i));
  }
  if (const Tensor* t = std::get_if<Tensor>(&args_[i])) return *t;
  return absl::InvalidArgumentError(absl::StrCat("argument ", i, " must be a tensor, not a scalar"));
}

namespace {
template <typename T>
absl::StatusOr<const T*> Get(const std::map<std::string, Attr>& attrs, const std::string& name,
                             absl::string_view want) {
  auto it = attrs.find(name);
  if (it == attrs.end()) return nullptr;
  if (const T* value = std::get_if<T>(&it->second)) return value;
  return absl::InvalidArgumentError(absl::StrCat("attribute '", name, "' must be ", want,
                                                 ", not ", AttrTypeName(it->second)));
}
}  // namespace

absl::StatusOr<std::optional<int64_t>> OpContext::Int(const std::string& name) const {
  absl::StatusOr<const int64_t*> v = Get<int64_t>(attrs_, name, "an int");
  if (!v.ok()) return v.status();
  return *v ? std::optional<int64_t>(**v) : std::nullopt;
}

absl::StatusOr<bool> OpContext::Bool(const std::string& name, bool fallback) const {
  absl::StatusOr<const bool*> v = Get<bool>(attrs_, name, "a bool");
  if (!v.ok()) return v.status();
  return *v ? **v : fallback;
}

absl::StatusOr<std::optional<double>> OpContext::Double(const std::string& name) const {
  auto it = attrs_.find(name);
  if (it == attrs_.end()) return std::nullopt;
  if (const double* d = std::get_if<double>(&it->second)) return *d;
  if (const int64_t* i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
  return absl::InvalidArgumentError(absl::StrCat("attribute '", name, "' must be a number, not ",
                                                 AttrTypeName(it->second)));
}

absl::StatusOr<std::optional<Dims>> OpContext::Dims_(const std::string& name) const {
  auto it = attrs_.find(name);
  if (it == attrs_.end()) return std::nullopt;
  if (const Dims* d = std::get_if<Dims>(&it->second)) return *d;
  if (const int64_t* i = std::get_if<int64_t>(&it->second)) return Dims{*i};
  return absl::InvalidArgumentError(absl::StrCat(
      "attribute '", name, "' must be an int or a list of ints, not ", AttrTypeName(it->second)));
}

absl::StatusOr<std::optional<DType>> OpContext::DTypeAttr(const std::string& name) const {
  absl::StatusOr<const DType*> v = Get<DType>(attrs_, name, "a dtype");
  if (!v.ok()) return v.status();
  return *v ? std::optional<DType>(**v) : std::nullopt;
}

absl::StatusOr<std::optional<Scalar>> OpContext::ScalarAttr(const std::string& name) const {
  auto it = attrs_.find(name);
  if (it == attrs_.end()) return std::nullopt;
  if (const Scalar* s = std::get_if<Scalar>(&it->second)) return *s;
  if (const int64_t* i = std::get_if<int64_t>(&it->second)) return Scalar{*i};
  if (const double* d = std::get_if<double>(&it->second)) return Scalar{*d};
  if (const bool* b = std::get_if<bool>(&it->second)) return Scalar{*b};
  return absl::InvalidArgumentError(absl::StrCat("attribute '", name, "' must be a number, not ",
                                                 AttrTypeName(it->second)));
}

absl::StatusOr<std::optional<std::string>> OpContext::Text(const std::string& name) const {
  absl::StatusOr<const std::string*> v = Get<std::string>(attrs_, name, "a string");
  if (!v.ok()) return v.status();
  return *v ? std::optional<std::string>(**v) : std::nullopt;
}

absl::StatusOr<std::vector<IndexItem>> OpContext::IndexItems(const std::string& name) const {
  absl::StatusOr<const std::vector<IndexItem>*> v =
      Get<std::vector<IndexItem>>(attrs_, name, "an index expression");
  if (!v.ok()) return v.status();
  return *v ? **v : std::vector<IndexItem>{};
}

}  // namespace tensord
