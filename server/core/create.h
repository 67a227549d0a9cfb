// Tensor factories: the server side of empty/zeros/ones/full/arange/rand/randn.
//
// Random values come from a 64-bit Mersenne Twister with the given seed and
// are turned into numbers by our own arithmetic (not <random>'s
// distributions, whose output differs between standard libraries), so a
// seed gives the same tensor on every build. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "core/scalar.h"
#include "core/tensor.h"

namespace tensord {

struct TensorOptions {
  DType dtype = DType::kFloat32;
  Device device = Device::Cpu();
  std::shared_ptr<MemoryBudget> budget;
};

absl::StatusOr<Tensor> Full(Dims shape, const Scalar& value, const TensorOptions& options);

// Values start, start+step, ... while < end (> end for a negative step).
absl::StatusOr<Tensor> Arange(const Scalar& start, const Scalar& end, const Scalar& step,
                              const TensorOptions& options);

// Uniform in [0, 1) (each of real and imaginary part for complex dtypes).
absl::StatusOr<Tensor> Rand(Dims shape, uint64_t seed, const TensorOptions& options);

// Standard normal (complex: each part has variance 1/2, as in PyTorch).
absl::StatusOr<Tensor> Randn(Dims shape, uint64_t seed, const TensorOptions& options);

// A seed from the operating system's entropy source.
uint64_t RandomSeed();

}  // namespace tensord
