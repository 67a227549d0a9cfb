#include "core/copy.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/convert.h"
#include "core/strided_loop.h"

namespace tensord {
namespace {

// Copies with conversion from a strided source to a strided destination.
// `src_strides` may contain zeros (broadcast), which is how Fill works.
void CopyStrided(absl::Span<const int64_t> shape, DType src_dtype, const std::byte* src,
                 absl::Span<const int64_t> src_strides, DType dst_dtype, std::byte* dst,
                 absl::Span<const int64_t> dst_strides) {
  const int64_t src_size = ItemSize(src_dtype);
  const int64_t dst_size = ItemSize(dst_dtype);
  std::array<absl::Span<const int64_t>, 2> strides = {dst_strides, src_strides};
  if (src_dtype == dst_dtype) {
    ForEachRun<2>(shape, strides, [&](const std::array<int64_t, 2>& off, int64_t n,
                                      const std::array<int64_t, 2>& inner) {
      std::byte* d = dst + off[0] * dst_size;
      const std::byte* s = src + off[1] * src_size;
      if (inner[0] == 1 && inner[1] == 1) {
        std::memcpy(d, s, static_cast<size_t>(n * dst_size));
        return;
      }
      for (int64_t i = 0; i < n; ++i) {
        std::memcpy(d + i * inner[0] * dst_size, s + i * inner[1] * src_size,
                    static_cast<size_t>(dst_size));
      }
    });
    return;
  }
  VisitDType(src_dtype, [&](auto src_tag) {
    using S = typename decltype(src_tag)::type;
    VisitDType(dst_dtype, [&](auto dst_tag) {
      using D = typename decltype(dst_tag)::type;
      ForEachRun<2>(shape, strides, [&](const std::array<int64_t, 2>& off, int64_t n,
                                        const std::array<int64_t, 2>& inner) {
        D* d = reinterpret_cast<D*>(dst) + off[0];
        const S* s = reinterpret_cast<const S*>(src) + off[1];
        for (int64_t i = 0; i < n; ++i) d[i * inner[0]] = Convert<D>(s[i * inner[1]]);
      });
    });
  });
}

}  // namespace

absl::Status CopyInto(const Tensor& src, const Tensor& dst) {
  if (src.shape() != dst.shape()) {
    return absl::InvalidArgumentError(absl::StrCat("copy: shapes ", DimsToString(src.shape()),
                                                   " and ", DimsToString(dst.shape()),
                                                   " differ"));
  }
  if (src.numel() == 0) return absl::OkStatus();
  CopyStrided(src.shape(), src.dtype(), src.data(), src.strides(), dst.dtype(), dst.data(),
              dst.strides());
  return absl::OkStatus();
}

absl::StatusOr<Tensor> Contiguous(const Tensor& t) {
  if (t.is_contiguous()) return t;
  return Clone(t);
}

absl::StatusOr<Tensor> Clone(const Tensor& t) {
  auto out = Tensor::Empty(t.dtype(), t.shape(), t.device(), t.storage()->budget());
  if (!out.ok()) return out.status();
  if (absl::Status s = CopyInto(t, *out); !s.ok()) return s;
  return out;
}

absl::StatusOr<Tensor> Cast(const Tensor& t, DType dtype) {
  if (t.dtype() == dtype) return t;
  auto out = Tensor::Empty(dtype, t.shape(), t.device(), t.storage()->budget());
  if (!out.ok()) return out.status();
  if (absl::Status s = CopyInto(t, *out); !s.ok()) return s;
  return out;
}

void Fill(const Tensor& dst, const Scalar& value) {
  if (dst.numel() == 0) return;
  // The scalar becomes a one-element source of its own widest type, read
  // with all-zero strides.
  alignas(16) std::byte one[16];
  DType src_dtype;
  if (value.imag != 0.0) {
    const std::complex<double> c(value.ToDouble(), value.imag);
    std::memcpy(one, &c, sizeof c);
    src_dtype = DType::kComplex128;
  } else if (const auto* b = std::get_if<bool>(&value.value)) {
    std::memcpy(one, b, sizeof *b);
    src_dtype = DType::kBool;
  } else if (const auto* i = std::get_if<int64_t>(&value.value)) {
    std::memcpy(one, i, sizeof *i);
    src_dtype = DType::kInt64;
  } else {
    const double d = std::get<double>(value.value);
    std::memcpy(one, &d, sizeof d);
    src_dtype = DType::kFloat64;
  }
  const Dims zeros(dst.shape().size(), 0);
  CopyStrided(dst.shape(), src_dtype, one, zeros, dst.dtype(), dst.data(), dst.strides());
}

}  // namespace tensord
