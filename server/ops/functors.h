// Elementwise math as small functors, shared by the CPU loops and (later)
// the CUDA kernels: each is `__host__ __device__` and templated on the
// compute type `T` (float for float16/bfloat16, the dtype itself otherwise).
// `Out<T>` is the result type: T, bool for predicates, or the real type of a
// complex T for abs.
// Header-only, stateless.
#pragma once

#include <cmath>
#include <complex>
#include <type_traits>

#include "core/half.h"

namespace tensord::functors {

template <typename T>
struct IsComplexT : std::false_type {};
template <typename R>
struct IsComplexT<std::complex<R>> : std::true_type {};

template <typename T>
struct RealOf {
  using type = T;
};
template <typename R>
struct RealOf<std::complex<R>> {
  using type = R;
};

#define TENSORD_SAME_OUT \
  template <typename T>  \
  using Out = T;
#define TENSORD_BOOL_OUT \
  template <typename T>  \
  using Out = bool;

// ---- wrapping integer arithmetic ------------------------------------------------
// Integer results wrap around in two's complement on overflow, as in PyTorch
// and as the hardware does. Signed overflow is undefined behaviour in C++,
// so signed operands are computed in their unsigned type, where it is
// defined, and converted back (modular since C++20). Other types pass
// through.
template <typename T>
inline constexpr bool kWraps = std::is_integral_v<T> && std::is_signed_v<T>;

template <typename T> TENSORD_HOST_DEVICE T WrapAdd(T a, T b) {
  if constexpr (kWraps<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
  } else {
    return a + b;
  }
}
template <typename T> TENSORD_HOST_DEVICE T WrapSub(T a, T b) {
  if constexpr (kWraps<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) - static_cast<U>(b)));
  } else {
    return a - b;
  }
}
template <typename T> TENSORD_HOST_DEVICE T WrapMul(T a, T b) {
  if constexpr (kWraps<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) * static_cast<U>(b)));
  } else {
    return a * b;
  }
}

// ---- binary -------------------------------------------------------------------
struct Add {
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T a, T b) const {
    if constexpr (std::is_same_v<T, bool>) return a || b;
    else return WrapAdd(a, b);
  }
};
struct Sub {
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T a, T b) const { return WrapSub(a, b); }
};
struct Mul {
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T a, T b) const {
    if constexpr (std::is_same_v<T, bool>) return a && b;
    else return WrapMul(a, b);
  }
};
struct Div {  // true division: callers promote integers to floating point first
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T a, T b) const { return a / b; }
};
struct Pow {
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) {
      // Exponentiation by squaring. A negative exponent gives 1/a^|b|
      // truncated toward zero, as in PyTorch: 0 except for bases 1 and -1
      // (and 0, which gives 0 rather than dividing by zero).
      if constexpr (std::is_signed_v<T>) {
        if (b < 0) {
          if (a == 1) return 1;
          if (a == -1) return (b & 1) ? T(-1) : T(1);
          return 0;
        }
      }
      T result = 1;
      for (T e = b; e > 0; e >>= 1) {
        if (e & 1) result = WrapMul(result, a);
        a = WrapMul(a, a);
      }
      return result;
    } else {
      return std::pow(a, b);
    }
  }
};
// Floor division and the remainder with the divisor's sign, Python's // and %
// (torch.floor_divide, torch.remainder). Integer callers check the divisor
// for zero first. Floating division by zero gives inf or NaN, as in PyTorch.
struct FloorDivide {
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T a, T b) const {
    if constexpr (std::is_same_v<T, bool>) {
      return a;  // callers refuse bool
    } else if constexpr (std::is_integral_v<T>) {
      if constexpr (std::is_signed_v<T>) {
        if (b == T(-1)) return WrapSub(T(0), a);  // min / -1 wraps instead of trapping
      }
      const T q = static_cast<T>(a / b);
      if constexpr (std::is_signed_v<T>) {
        if ((a % b != 0) && ((a < 0) != (b < 0))) return static_cast<T>(q - 1);
      }
      return q;
    } else {
      if (b == T(0)) return a / b;
      const T mod = std::fmod(a, b);
      T div = (a - mod) / b;
      if (mod != T(0) && (b < T(0)) != (mod < T(0))) div -= T(1);
      if (div == T(0)) return std::copysign(T(0), a / b);
      T floor = std::floor(div);
      if (div - floor > T(0.5)) floor += T(1);
      return floor;
    }
  }
};
struct Remainder {
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T a, T b) const {
    if constexpr (std::is_same_v<T, bool>) {
      return a;  // callers refuse bool
    } else if constexpr (std::is_integral_v<T>) {
      if constexpr (std::is_signed_v<T>) {
        if (b == T(-1)) return 0;
      }
      T r = static_cast<T>(a % b);
      if constexpr (std::is_signed_v<T>) {
        if (r != 0 && ((r < 0) != (b < 0))) r = static_cast<T>(r + b);
      }
      return r;
    } else {
      T mod = std::fmod(a, b);
      if (mod != T(0) && (b < T(0)) != (mod < T(0))) mod += b;
      return mod;
    }
  }
};
struct Maximum {  // NaN-propagating, like torch.maximum
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      if (a != a || b != b) return a != a ? a : b;
    }
    return a > b ? a : b;
  }
};
struct Minimum {
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      if (a != a || b != b) return a != a ? a : b;
    }
    return a < b ? a : b;
  }
};
struct Eq { TENSORD_BOOL_OUT template <typename T> TENSORD_HOST_DEVICE bool operator()(T a, T b) const { return a == b; } };
struct Ne { TENSORD_BOOL_OUT template <typename T> TENSORD_HOST_DEVICE bool operator()(T a, T b) const { return a != b; } };
struct Lt { TENSORD_BOOL_OUT template <typename T> TENSORD_HOST_DEVICE bool operator()(T a, T b) const { return a < b; } };
struct Le { TENSORD_BOOL_OUT template <typename T> TENSORD_HOST_DEVICE bool operator()(T a, T b) const { return a <= b; } };
struct Gt { TENSORD_BOOL_OUT template <typename T> TENSORD_HOST_DEVICE bool operator()(T a, T b) const { return a > b; } };
struct Ge { TENSORD_BOOL_OUT template <typename T> TENSORD_HOST_DEVICE bool operator()(T a, T b) const { return a >= b; } };

// ---- unary --------------------------------------------------------------------
struct Neg {
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T a) const {
    if constexpr (kWraps<T>) return WrapSub(T(0), a);  // -min wraps to min, as in PyTorch
    else return -a;
  }
};
struct Abs {
  template <typename T>
  using Out = typename RealOf<T>::type;
  template <typename T> TENSORD_HOST_DEVICE Out<T> operator()(T a) const {
    if constexpr (IsComplexT<T>::value || std::is_floating_point_v<T>) return std::abs(a);
    else if constexpr (std::is_unsigned_v<T> || std::is_same_v<T, bool>) return a;
    else return a < T(0) ? WrapSub(T(0), a) : a;  // abs(min) wraps to min, as in PyTorch
  }
};
struct Exp { TENSORD_SAME_OUT template <typename T> TENSORD_HOST_DEVICE T operator()(T a) const { return std::exp(a); } };
struct Log { TENSORD_SAME_OUT template <typename T> TENSORD_HOST_DEVICE T operator()(T a) const { return std::log(a); } };
struct Sqrt { TENSORD_SAME_OUT template <typename T> TENSORD_HOST_DEVICE T operator()(T a) const { return std::sqrt(a); } };
struct Rsqrt { TENSORD_SAME_OUT template <typename T> TENSORD_HOST_DEVICE T operator()(T a) const { return T(1) / std::sqrt(a); } };
struct Sin { TENSORD_SAME_OUT template <typename T> TENSORD_HOST_DEVICE T operator()(T a) const { return std::sin(a); } };
struct Cos { TENSORD_SAME_OUT template <typename T> TENSORD_HOST_DEVICE T operator()(T a) const { return std::cos(a); } };
struct Tanh { TENSORD_SAME_OUT template <typename T> TENSORD_HOST_DEVICE T operator()(T a) const { return std::tanh(a); } };
struct Sigmoid {
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T a) const { return T(1) / (T(1) + std::exp(-a)); }
};
struct Relu {
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T a) const {
    if constexpr (std::is_floating_point_v<T>) {
      if (a != a) return a;  // NaN stays NaN
    }
    return a > T(0) ? a : T(0);
  }
};
struct Gelu {  // the exact form, 0.5 x (1 + erf(x / sqrt 2)), PyTorch's default
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T a) const {
    return T(0.5) * a * (T(1) + std::erf(a * T(0.70710678118654752440)));
  }
};

struct GeluTanh {  // approximate='tanh': 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T a) const {
    const T inner = T(0.79788456080286535588) * (a + T(0.044715) * a * a * a);
    return T(0.5) * a * (T(1) + std::tanh(inner));
  }
};
struct Sign {
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T a) const {
    if constexpr (std::is_same_v<T, bool>) return a;
    else return T((T(0) < a) - (a < T(0)));
  }
};
struct Log1p {
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T a) const {
    if constexpr (IsComplexT<T>::value) return std::log(T(1) + a);  // no complex log1p in <complex>
    else return std::log1p(a);
  }
};

// ---- gradients: (incoming gradient, saved value) -> input gradient ------------
struct TanhGrad {  // y = tanh(x)
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T g, T y) const { return g * (T(1) - y * y); }
};
struct SigmoidGrad {  // y = sigmoid(x)
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T g, T y) const { return g * y * (T(1) - y); }
};
struct ReluGrad {  // y = relu(x): y > 0 exactly where x > 0
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T g, T y) const { return y > T(0) ? g : T(0); }
};
struct Log1pGrad {  // d log(1 + x) = g / (1 + x)
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T g, T x) const { return g / (T(1) + x); }
};
struct GeluGrad {  // d/dx x Phi(x) = Phi(x) + x phi(x)
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T g, T x) const {
    const T cdf = T(0.5) * (T(1) + std::erf(x * T(0.70710678118654752440)));
    const T pdf = T(0.39894228040143267794) * std::exp(T(-0.5) * x * x);
    return g * (cdf + x * pdf);
  }
};
struct GeluTanhGrad {
  TENSORD_SAME_OUT
  template <typename T> TENSORD_HOST_DEVICE T operator()(T g, T x) const {
    const T k = T(0.79788456080286535588);
    const T inner = k * (x + T(0.044715) * x * x * x);
    const T t = std::tanh(inner);
    const T dinner = k * (T(1) + T(3) * T(0.044715) * x * x);
    return g * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * dinner);
  }
};

#undef TENSORD_SAME_OUT
#undef TENSORD_BOOL_OUT

}  // namespace tensord::functors
