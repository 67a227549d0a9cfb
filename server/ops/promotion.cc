#include "ops/promotion.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"

namespace tensord {
namespace {

enum class Kind { kBool = 0, kInt = 1, kFloat = 2, kComplex = 3 };

Kind KindOf(DType t) {
  if (t == DType::kBool) return Kind::kBool;
  if (IsIntegral(t)) return Kind::kInt;
  if (IsFloatingPoint(t)) return Kind::kFloat;
  return Kind::kComplex;
}

Kind KindOf(const Scalar& s) {
  if (s.imag != 0.0) return Kind::kComplex;
  if (std::holds_alternative<bool>(s.value)) return Kind::kBool;
  if (std::holds_alternative<int64_t>(s.value)) return Kind::kInt;
  return Kind::kFloat;
}

}  // namespace

DType PromoteTypes(DType a, DType b) {
  if (a == b) return a;
  using D = DType;
  // Unsigned 8-bit with a signed type needs the next wider signed type.
  auto int_rank = [](D t) {
    switch (t) {
      case D::kInt8: return 1;
      case D::kInt16: return 2;
      case D::kInt32: return 3;
      case D::kInt64: return 4;
      default: return 0;  // uint8
    }
  };
  const Kind ka = KindOf(a), kb = KindOf(b);
  if (ka != kb) {
    const DType high = ka > kb ? a : b;
    const DType low = ka > kb ? b : a;
    // complex64 with float64 widens to complex128.
    if (high == D::kComplex64 && low == D::kFloat64) return D::kComplex128;
    return high;
  }
  switch (ka) {
    case Kind::kBool: return D::kBool;
    case Kind::kInt: {
      if (a == D::kUInt8 || b == D::kUInt8) {
        const DType other = a == D::kUInt8 ? b : a;
        return other == D::kInt8 ? D::kInt16 : other;
      }
      return int_rank(a) > int_rank(b) ? a : b;
    }
    case Kind::kFloat: {
      if ((a == D::kFloat16 && b == D::kBFloat16) || (a == D::kBFloat16 && b == D::kFloat16)) {
        return D::kFloat32;
      }
      return ItemSize(a) >= ItemSize(b) ? a : b;
    }
    case Kind::kComplex:
      return ItemSize(a) >= ItemSize(b) ? a : b;
  }
  return a;
}

namespace {

using Maybe = std::optional<DType>;

Maybe PromoteMaybe(Maybe a, Maybe b) {
  if (!a) return b;
  if (!b) return a;
  return PromoteTypes(*a, *b);
}

DType ToComplex(DType t) { return t == DType::kFloat64 ? DType::kComplex128 : DType::kComplex64; }

// PyTorch's combine_categories: `lower` (a weaker tier) only matters when it
// is of a higher kind than `higher`.
Maybe CombineCategories(Maybe higher, Maybe lower) {
  if (!higher) return lower;
  if (!lower) return higher;
  if (IsComplex(*higher)) return higher;
  if (IsComplex(*lower)) return IsFloatingPoint(*higher) ? ToComplex(*higher) : *lower;
  if (IsFloatingPoint(*higher)) return higher;
  if (*higher == DType::kBool || IsFloatingPoint(*lower)) return PromoteTypes(*higher, *lower);
  return higher;
}

}  // namespace

DType ResultType(absl::Span<const Operand> operands) {
  Maybe dimensioned, zero_dim, scalars;
  for (const Operand& op : operands) {
    if (const Tensor* t = std::get_if<Tensor>(&op)) {
      Maybe& tier = t->ndim() > 0 ? dimensioned : zero_dim;
      tier = PromoteMaybe(tier, t->dtype());
    } else {
      // Python numbers take the default dtype of their kind.
      DType as;
      switch (KindOf(std::get<Scalar>(op))) {
        case Kind::kBool: as = DType::kBool; break;
        case Kind::kInt: as = DType::kInt64; break;
        case Kind::kFloat: as = DType::kFloat32; break;
        default: as = DType::kComplex64; break;
      }
      scalars = PromoteMaybe(scalars, as);
    }
  }
  return CombineCategories(dimensioned, CombineCategories(zero_dim, scalars))
      .value_or(DType::kFloat32);
}

absl::Status CheckSubtractionOperands(absl::Span<const Operand> operands) {
  int bools = 0;
  for (const Operand& op : operands) {
    const Tensor* t = std::get_if<Tensor>(&op);
    bools += t ? t->dtype() == DType::kBool : std::get<Scalar>(op).is_bool();
  }
  if (bools == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      bools == static_cast<int>(operands.size())
          ? "subtraction, the `-` operator, with two bool tensors is not supported: use the `^` "
            "or logical_xor() operator instead"
          : "subtraction, the `-` operator, with a bool tensor is not supported: to invert a "
            "mask, use the `~` or logical_not() operator instead");
}

absl::StatusOr<Dims> BroadcastShapes(absl::Span<const int64_t> a, absl::Span<const int64_t> b) {
  const size_t n = std::max(a.size(), b.size());
  Dims out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the size of tensor a (", da, ") must match the size of tensor b (", db,
          ") at non-singleton dimension ", i, " (shapes ", DimsToString(a), " and ",
          DimsToString(b), ")"));
    }
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor BroadcastTo(const Tensor& t, absl::Span<const int64_t> shape) {
  const size_t lead = shape.size() - t.shape().size();
  Dims strides(shape.size(), 0);
  for (size_t i = 0; i < t.shape().size(); ++i) {
    strides[lead + i] = t.shape()[i] == shape[lead + i] ? t.strides()[i] : 0;
  }
  return t.WithLayout(Dims(shape.begin(), shape.end()), std::move(strides), t.storage_offset());
}

}  // namespace tensord
