// Tests of optim/optimizer.h: every SGD/Adam/AdamW option against a textbook
// reference written in plain double loops, over several steps and in every
// floating dtype; strided parameters and gradients; skipped parameters;
// parameter groups and option changes; and errors that must leave parameters,
// state and budget untouched.
#include "optim/optimizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "core/views.h"
#include "testing.h"

namespace tensord {
namespace {

using tensord_testing::ElementsAsComplex;
using tensord_testing::LargeBudget;
using tensord_testing::StatusIs;
using tensord_testing::ValueOrThrow;

constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

// A C-contiguous tensor holding `values` (rounded to `dtype`).
Tensor FromValues(DType dtype, Dims shape, const std::vector<double>& values) {
  Tensor t = ValueOrThrow(Tensor::Empty(dtype, std::move(shape), Device::Cpu(), LargeBudget()));
  VisitDType(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* data = reinterpret_cast<T*>(t.data());
    for (int64_t i = 0; i < t.numel(); ++i) data[i] = Convert<T>(values[i]);
  });
  return t;
}

// Elements in logical order, read through the tensor's own strides.
std::vector<double> Values(const Tensor& t) {
  std::vector<double> out;
  for (const auto& c : ElementsAsComplex(t)) out.push_back(c.real());
  return out;
}

std::vector<double> InitialParams(int64_t n) {
  std::vector<double> p;
  for (int64_t i = 0; i < n; ++i) p.push_back(0.25 * static_cast<double>(i) - 0.8);
  return p;
}

// Large gradients on the first step and small ones after, so that amsgrad's
// running maximum differs from exp_avg_sq.
std::vector<double> Grads(int64_t n, int step) {
  std::vector<double> g;
  for (int64_t i = 0; i < n; ++i) {
    g.push_back((step == 0 ? 2.0 : 0.4) * std::sin(1.3 * static_cast<double>(i) + 0.7 * step) +
                0.05 * step);
  }
  return g;
}

// The algorithms as their papers and the torch.optim docs write them, in
// double, one element at a time.
struct Reference {
  explicit Reference(OptimizerKind kind) : kind(kind) {}

  OptimizerKind kind;
  std::vector<double> buf, m, v, vmax;
  int64_t step = 0;

  void Step(std::vector<double>& p, const std::vector<double>& grad, const OptimizerOptions& o) {
    const size_t n = p.size();
    if (m.empty()) m = v = vmax = std::vector<double>(n, 0.0);
    const bool first_momentum_step = buf.empty();
    if (kind == OptimizerKind::kSgd && o.momentum != 0 && buf.empty()) buf.assign(n, 0.0);
    ++step;
    for (size_t i = 0; i < n; ++i) {
      double g = o.maximize ? -grad[i] : grad[i];
      if (kind == OptimizerKind::kSgd) {
        g += o.weight_decay * p[i];
        if (o.momentum != 0) {
          buf[i] = first_momentum_step ? g : o.momentum * buf[i] + (1 - o.dampening) * g;
          g = o.nesterov ? g + o.momentum * buf[i] : buf[i];
        }
        p[i] -= o.lr * g;
        continue;
      }
      if (kind == OptimizerKind::kAdamW) {
        p[i] -= o.lr * o.weight_decay * p[i];
      } else {
        g += o.weight_decay * p[i];
      }
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
      vmax[i] = std::max(vmax[i], v[i]);
      const double m_hat = m[i] / (1 - std::pow(o.beta1, static_cast<double>(step)));
      const double v_hat =
          (o.amsgrad ? vmax[i] : v[i]) / (1 - std::pow(o.beta2, static_cast<double>(step)));
      p[i] -= o.lr * m_hat / (std::sqrt(v_hat) + o.eps);
    }
  }
};

// |got - want| <= tol * max(1, |want|) element by element.
void ExpectClose(const std::vector<double>& got, const std::vector<double>& want, double tol,
                 const std::string& label) {
  ASSERT_EQ(got.size(), want.size()) << label;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], tol * std::max(1.0, std::abs(want[i])))
        << label << " element " << i;
  }
}

std::unique_ptr<Optimizer> MakeOne(OptimizerKind kind, const OptimizerOptions& options,
                                   int num_params = 1) {
  return ValueOrThrow(
      Optimizer::Make(kind, {options}, std::vector<int>(num_params, 0), LargeBudget()));
}

// Runs four steps on a [2, 3] parameter of `dtype` and compares with Reference.
void ExpectMatchesReference(OptimizerKind kind, const OptimizerOptions& options, DType dtype,
                            double tol, const std::string& label) {
  const std::string where = std::string(OptimizerKindName(kind)) + " " + label + " " +
                            std::string(DTypeName(dtype));
  const Tensor param = FromValues(dtype, {2, 3}, InitialParams(6));
  std::vector<double> want = Values(param);
  Reference reference(kind);
  auto optimizer = MakeOne(kind, options);
  for (int step = 0; step < 4; ++step) {
    const Tensor grad = FromValues(dtype, {2, 3}, Grads(6, step));
    ASSERT_TRUE(optimizer->Step({param}, {grad}).ok()) << where;
    reference.Step(want, Values(grad), options);
    ExpectClose(Values(param), want, tol, where + " step " + std::to_string(step));
  }
  EXPECT_EQ(optimizer->step_count(0), 4) << where;
}

// The reference rounds in a different (equally valid) order, so float64
// agrees to a few units in the last place and float32 to a few of its own
// (measured: under 1e-7 relative over four steps).
double Tolerance(DType dtype) { return dtype == DType::kFloat64 ? 1e-14 : 5e-7; }

TEST(OptimizerSgdTest, MatchesReferenceForEveryOption) {
  struct Case {
    std::string label;
    OptimizerOptions options;
  };
  std::vector<Case> cases = {
      {"plain", {.lr = 0.1}},
      {"momentum", {.lr = 0.1, .momentum = 0.9}},
      {"dampening", {.lr = 0.1, .momentum = 0.9, .dampening = 0.3}},
      {"nesterov", {.lr = 0.1, .momentum = 0.8, .nesterov = true}},
      {"weight_decay", {.lr = 0.1, .weight_decay = 0.05}},
      {"maximize", {.lr = 0.1, .momentum = 0.5, .maximize = true}},
      {"everything", {.lr = 0.05, .momentum = 0.7, .nesterov = true, .weight_decay = 0.1,
                      .maximize = true}},
  };
  for (const Case& c : cases) {
    for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
      ExpectMatchesReference(OptimizerKind::kSgd, c.options, dtype, Tolerance(dtype), c.label);
    }
  }
}

TEST(OptimizerAdamTest, MatchesReferenceForEveryOption) {
  struct Case {
    OptimizerKind kind;
    std::string label;
    OptimizerOptions options;
  };
  std::vector<Case> cases = {
      {OptimizerKind::kAdam, "plain", {.lr = 0.1}},
      {OptimizerKind::kAdam, "weight_decay", {.lr = 0.1, .weight_decay = 0.2}},
      {OptimizerKind::kAdam, "amsgrad", {.lr = 0.1, .beta1 = 0.8, .beta2 = 0.9, .amsgrad = true}},
      {OptimizerKind::kAdam, "maximize", {.lr = 0.1, .weight_decay = 0.1, .maximize = true}},
      {OptimizerKind::kAdam, "large eps", {.lr = 0.1, .eps = 0.5}},
      {OptimizerKind::kAdamW, "plain", {.lr = 0.1}},
      {OptimizerKind::kAdamW, "weight_decay", {.lr = 0.1, .weight_decay = 0.3}},
      {OptimizerKind::kAdamW, "amsgrad",
       {.lr = 0.1, .weight_decay = 0.01, .beta1 = 0.6, .beta2 = 0.95, .amsgrad = true,
        .maximize = true}},
  };
  for (const Case& c : cases) {
    for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
      ExpectMatchesReference(c.kind, c.options, dtype, Tolerance(dtype), c.label);
    }
  }
}

TEST(OptimizerStepTest, SixteenBitFloatsComputeInFloatAndRoundOnStore) {
  // Parameters move by about 0.1 a step; the tolerance is a few units in the
  // last place of each format, so a step that did nothing would fail.
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    const double tol = dtype == DType::kFloat16 ? 2e-3 : 1.5e-2;
    ExpectMatchesReference(OptimizerKind::kSgd, {.lr = 0.1, .momentum = 0.9}, dtype, tol, "smoke");
    ExpectMatchesReference(OptimizerKind::kAdam, {.lr = 0.1, .amsgrad = true}, dtype, tol, "smoke");
    ExpectMatchesReference(OptimizerKind::kAdamW, {.lr = 0.1, .weight_decay = 0.1}, dtype, tol,
                           "smoke");
  }
}

TEST(OptimizerStepTest, StridedParamsAndGradsAreUpdatedThroughTheirStrides) {
  const OptimizerOptions options{.lr = 0.1, .weight_decay = 0.1, .amsgrad = true};
  for (DType dtype : {DType::kFloat32, DType::kFloat64}) {
    // A transposed parameter, a transposed gradient, and a gradient that
    // repeats one row (stride 0).
    const Tensor base = FromValues(dtype, {3, 4}, InitialParams(12));
    const Tensor param = ValueOrThrow(Transpose(base, 0, 1));  // [4, 3], strides [1, 4]
    std::vector<double> want = Values(param);
    Reference reference(OptimizerKind::kAdam);
    auto optimizer = MakeOne(OptimizerKind::kAdam, options);
    for (int step = 0; step < 3; ++step) {
      Tensor grad = FromValues(dtype, {4, 3}, Grads(12, step));
      if (step == 1) grad = ValueOrThrow(Transpose(FromValues(dtype, {3, 4}, Grads(12, 1)), 0, 1));
      if (step == 2) grad = ValueOrThrow(Expand(FromValues(dtype, {1, 3}, Grads(3, 2)), {4, 3}));
      ASSERT_TRUE(optimizer->Step({param}, {grad}).ok());
      reference.Step(want, Values(grad), options);
      ExpectClose(Values(param), want, Tolerance(dtype), "transposed step " + std::to_string(step));
    }
    EXPECT_EQ(optimizer->state_bytes(), 3 * 12 * ItemSize(dtype));  // m, v and vmax
  }

  // Every other column: the columns in between must not be written.
  const Tensor base = FromValues(DType::kFloat32, {2, 6}, InitialParams(12));
  const Tensor param = ValueOrThrow(Slice(base, 1, SliceSpec{0, 6, 2}));
  const Tensor skipped = ValueOrThrow(Slice(base, 1, SliceSpec{1, 6, 2}));
  const std::vector<double> skipped_before = Values(skipped);
  std::vector<double> want = Values(param);
  const OptimizerOptions sgd{.lr = 0.5, .momentum = 0.9};
  Reference reference(OptimizerKind::kSgd);
  auto optimizer = MakeOne(OptimizerKind::kSgd, sgd);
  for (int step = 0; step < 3; ++step) {
    const Tensor grad = FromValues(DType::kFloat32, {2, 3}, Grads(6, step));
    ASSERT_TRUE(optimizer->Step({param}, {grad}).ok());
    reference.Step(want, Values(grad), sgd);
  }
  ExpectClose(Values(param), want, Tolerance(DType::kFloat32), "sliced");
  EXPECT_EQ(Values(skipped), skipped_before);
}

TEST(OptimizerStepTest, ParamsWithoutAGradAreSkippedAndKeepTheirStepCount) {
  const OptimizerOptions options{.lr = 0.1};
  const Tensor a = FromValues(DType::kFloat64, {3}, InitialParams(3));
  const Tensor b = FromValues(DType::kFloat64, {3}, InitialParams(3));
  auto optimizer = MakeOne(OptimizerKind::kAdam, options, 2);
  std::vector<double> want_a = Values(a), want_b = Values(b);
  Reference ref_a(OptimizerKind::kAdam), ref_b(OptimizerKind::kAdam);
  for (int step = 0; step < 2; ++step) {
    const Tensor grad = FromValues(DType::kFloat64, {3}, Grads(3, step));
    ASSERT_TRUE(optimizer->Step({a, b}, {grad, std::nullopt}).ok());
    ref_a.Step(want_a, Values(grad), options);
  }
  EXPECT_EQ(optimizer->step_count(0), 2);
  EXPECT_EQ(optimizer->step_count(1), 0);
  EXPECT_EQ(Values(b), want_b);
  EXPECT_EQ(optimizer->state_bytes(), 2 * 3 * 8);  // b has no state yet

  // b's first real step uses bias corrections for step 1, not step 3.
  const Tensor grad = FromValues(DType::kFloat64, {3}, Grads(3, 5));
  ASSERT_TRUE(optimizer->Step({a, b}, {std::nullopt, grad}).ok());
  ref_b.Step(want_b, Values(grad), options);
  ExpectClose(Values(a), want_a, 1e-14, "a");
  ExpectClose(Values(b), want_b, 1e-14, "b");
  EXPECT_EQ(optimizer->step_count(1), 1);
}

TEST(OptimizerOptionsTest, RejectsWhatTorchRejectsWithItsMessages) {
  const auto sgd = OptimizerKind::kSgd;
  const auto adam = OptimizerKind::kAdam;
  EXPECT_TRUE(ValidateOptions(sgd, {}).ok());
  EXPECT_TRUE(ValidateOptions(adam, {.lr = 0, .beta1 = 0, .beta2 = 0, .eps = 0}).ok());
  EXPECT_THAT(ValidateOptions(sgd, {.lr = -1}), StatusIs(kInvalid, "Invalid learning rate: -1"));
  EXPECT_THAT(ValidateOptions(adam, {.lr = NAN}), StatusIs(kInvalid, "Invalid learning rate: nan"));
  EXPECT_THAT(ValidateOptions(sgd, {.lr = INFINITY}),
              StatusIs(kInvalid, "Invalid learning rate: inf"));
  EXPECT_THAT(ValidateOptions(sgd, {.momentum = -0.5}),
              StatusIs(kInvalid, "Invalid momentum value: -0.5"));
  EXPECT_THAT(ValidateOptions(sgd, {.weight_decay = -1}),
              StatusIs(kInvalid, "Invalid weight_decay value: -1"));
  EXPECT_THAT(ValidateOptions(sgd, {.nesterov = true}),
              StatusIs(kInvalid, "Nesterov momentum requires a momentum and zero dampening"));
  EXPECT_THAT(ValidateOptions(sgd, {.momentum = 0.9, .dampening = 0.1, .nesterov = true}),
              StatusIs(kInvalid, "Nesterov momentum requires a momentum and zero dampening"));
  EXPECT_THAT(ValidateOptions(adam, {.beta1 = 1.5}),
              StatusIs(kInvalid, "Invalid beta parameter at index 0: 1.5"));
  EXPECT_THAT(ValidateOptions(OptimizerKind::kAdamW, {.beta2 = 1.0}),
              StatusIs(kInvalid, "Invalid beta parameter at index 1: 1"));
  EXPECT_THAT(ValidateOptions(adam, {.eps = -1}), StatusIs(kInvalid, "Invalid epsilon value: -1"));
  EXPECT_THAT(ValidateOptions(adam, {.weight_decay = -1e-8}),
              StatusIs(kInvalid, "Invalid weight_decay value: -1e-08"));
  // Fields a kind does not use are not its business.
  EXPECT_TRUE(ValidateOptions(sgd, {.beta1 = 2}).ok());
  EXPECT_TRUE(ValidateOptions(adam, {.momentum = -1, .nesterov = true}).ok());

  EXPECT_EQ(OptimizerKindName(sgd), "SGD");
  EXPECT_EQ(OptimizerKindName(adam), "Adam");
  EXPECT_EQ(OptimizerKindName(OptimizerKind::kAdamW), "AdamW");

  EXPECT_THAT(Optimizer::Make(sgd, {{.lr = -1}}, {0}, LargeBudget()),
              StatusIs(kInvalid, "Invalid learning rate: -1"));
  EXPECT_THAT(Optimizer::Make(sgd, {{}, {.lr = -1}}, {0, 1}, LargeBudget()),
              StatusIs(kInvalid, "Invalid learning rate: -1 (param group 1)"));
  EXPECT_THAT(Optimizer::Make(sgd, {{}}, {}, LargeBudget()),
              StatusIs(kInvalid, "optimizer got an empty parameter list"));
  EXPECT_THAT(Optimizer::Make(sgd, {{}}, {0, 1}, LargeBudget()),
              StatusIs(kInvalid, "parameter 1 is in group 1 but there are 1 groups"));
}

TEST(OptimizerStepTest, InvalidStepsChangeNothing) {
  const OptimizerOptions options{.lr = 0.1, .momentum = 0.9};
  const Tensor good = FromValues(DType::kFloat32, {2, 2}, InitialParams(4));
  const Tensor good_grad = FromValues(DType::kFloat32, {2, 2}, Grads(4, 0));
  const std::vector<double> before = Values(good);
  auto optimizer = MakeOne(OptimizerKind::kSgd, options, 2);
  struct Case {
    Tensor param;
    Tensor grad;
    std::string message;
  };
  const std::vector<Case> cases = {
      {FromValues(DType::kFloat32, {2, 2}, InitialParams(4)),
       FromValues(DType::kFloat32, {4}, Grads(4, 0)),
       "the gradient of parameter 1 has shape [4] but the parameter has shape [2, 2]"},
      {FromValues(DType::kFloat32, {2, 2}, InitialParams(4)),
       FromValues(DType::kFloat64, {2, 2}, Grads(4, 0)),
       "the gradient of parameter 1 has dtype float64 but the parameter has dtype float32"},
      {FromValues(DType::kInt64, {2, 2}, InitialParams(4)),
       FromValues(DType::kInt64, {2, 2}, Grads(4, 0)),
       "parameter 1 has dtype int64; only floating point parameters"},
      {ValueOrThrow(Expand(FromValues(DType::kFloat32, {1, 2}, InitialParams(2)), {2, 2})),
       FromValues(DType::kFloat32, {2, 2}, Grads(4, 0)),
       "parameter 1 (shape [2, 2], strides [0, 1]) has several elements at one memory location"},
  };
  for (const Case& c : cases) {
    const std::vector<double> bad_before = Values(c.param);
    EXPECT_THAT(optimizer->Step({good, c.param}, {good_grad, c.grad}),
                StatusIs(kInvalid, c.message));
    EXPECT_EQ(Values(good), before) << c.message;
    EXPECT_EQ(Values(c.param), bad_before) << c.message;
  }
  EXPECT_THAT(optimizer->Step({good}, {good_grad}),
              StatusIs(kInvalid, "step got 1 parameters and 1 gradients for an optimizer of 2"));
  EXPECT_EQ(optimizer->state_bytes(), 0);
  EXPECT_EQ(optimizer->step_count(0), 0);

  // The first step after the errors is a first step: the momentum buffer
  // starts as a clone of the gradient, so p moves by exactly lr * grad.
  ASSERT_TRUE(optimizer->Step({good, good}, {good_grad, std::nullopt}).ok());
  std::vector<double> want = before;
  Reference reference(OptimizerKind::kSgd);
  reference.Step(want, Values(good_grad), options);
  ExpectClose(Values(good), want, 1e-6, "after errors");
}

TEST(OptimizerStepTest, ExhaustedBudgetLeavesParamsAndStateUnchanged) {
  // Adam needs 2 x 64 bytes per [4, 4] float32 parameter; 200 bytes fit the
  // first parameter's state but not the second's.
  auto budget = std::make_shared<MemoryBudget>(200);
  auto optimizer = ValueOrThrow(Optimizer::Make(OptimizerKind::kAdam, {{}}, {0, 0}, budget));
  const Tensor a = FromValues(DType::kFloat32, {4, 4}, InitialParams(16));
  const Tensor b = FromValues(DType::kFloat32, {4, 4}, InitialParams(16));
  const Tensor grad = FromValues(DType::kFloat32, {4, 4}, Grads(16, 0));
  const std::vector<double> before = Values(a);
  EXPECT_THAT(optimizer->Step({a, b}, {grad, grad}),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(Values(a), before);
  EXPECT_EQ(Values(b), before);
  EXPECT_EQ(optimizer->state_bytes(), 0);
  EXPECT_EQ(optimizer->step_count(0), 0);
  EXPECT_EQ(budget->in_use(), 0);

  ASSERT_TRUE(optimizer->Step({a, b}, {grad, std::nullopt}).ok());
  EXPECT_EQ(optimizer->state_bytes(), 128);
  EXPECT_EQ(budget->in_use(), 128);
  EXPECT_NE(Values(a), before);
}

TEST(OptimizerGroupsTest, SetGroupOptionsChangesTheLearningRate) {
  const Tensor param = FromValues(DType::kFloat64, {3}, InitialParams(3));
  std::vector<double> want = Values(param);
  auto optimizer = MakeOne(OptimizerKind::kAdam, {.lr = 0.1});
  Reference reference(OptimizerKind::kAdam);
  const std::vector<double> lrs = {0.1, 0.01, 0.5};
  for (int step = 0; step < 3; ++step) {
    const OptimizerOptions options{.lr = lrs[step]};
    ASSERT_TRUE(optimizer->SetGroupOptions({options}).ok());
    const Tensor grad = FromValues(DType::kFloat64, {3}, Grads(3, step));
    ASSERT_TRUE(optimizer->Step({param}, {grad}).ok());
    reference.Step(want, Values(grad), options);
    ExpectClose(Values(param), want, 1e-14, "lr " + std::to_string(lrs[step]));
  }
  // Bad updates are refused whole.
  EXPECT_THAT(optimizer->SetGroupOptions({{.lr = 0.2}, {.lr = 0.3}}),
              StatusIs(kInvalid, "2 group options for 1 param groups"));
  EXPECT_THAT(optimizer->SetGroupOptions({{.beta1 = 1.5}}),
              StatusIs(kInvalid, "Invalid beta parameter at index 0: 1.5"));
  EXPECT_EQ(optimizer->group_options(0).lr, 0.5);
  EXPECT_EQ(optimizer->group_options(0).beta1, 0.9);
}

TEST(OptimizerGroupsTest, MomentumBufferStartsAtTheFirstStepWithMomentum) {
  // As in torch: steps without momentum create no buffer, and the first step
  // with momentum clones the gradient into a new one.
  const Tensor param = FromValues(DType::kFloat64, {3}, InitialParams(3));
  std::vector<double> want = Values(param);
  auto optimizer = MakeOne(OptimizerKind::kSgd, {.lr = 0.1});
  Reference reference(OptimizerKind::kSgd);
  for (int step = 0; step < 4; ++step) {
    const OptimizerOptions options{.lr = 0.1, .momentum = step < 2 ? 0.0 : 0.9, .dampening = 0.5};
    ASSERT_TRUE(optimizer->SetGroupOptions({options}).ok());
    const Tensor grad = FromValues(DType::kFloat64, {3}, Grads(3, step));
    ASSERT_TRUE(optimizer->Step({param}, {grad}).ok());
    reference.Step(want, Values(grad), options);
    ExpectClose(Values(param), want, 1e-14, "step " + std::to_string(step));
    EXPECT_EQ(optimizer->state_bytes(), step < 2 ? 0 : 3 * 8);
  }
}

TEST(OptimizerGroupsTest, EachGroupUsesItsOwnOptions) {
  const std::vector<OptimizerOptions> groups = {{.lr = 0.1}, {.lr = 1.0, .momentum = 0.5}};
  auto optimizer =
      ValueOrThrow(Optimizer::Make(OptimizerKind::kSgd, groups, {1, 0, 1}, LargeBudget()));
  EXPECT_EQ(optimizer->num_params(), 3);
  EXPECT_EQ(optimizer->num_groups(), 2);
  std::vector<Tensor> params;
  std::vector<std::vector<double>> want;
  std::vector<Reference> references(3, Reference(OptimizerKind::kSgd));
  for (int i = 0; i < 3; ++i) {
    params.push_back(FromValues(DType::kFloat64, {2}, InitialParams(2)));
    want.push_back(Values(params.back()));
  }
  for (int step = 0; step < 3; ++step) {
    const Tensor grad = FromValues(DType::kFloat64, {2}, Grads(2, step));
    ASSERT_TRUE(optimizer->Step(params, {grad, grad, grad}).ok());
    for (int i = 0; i < 3; ++i) references[i].Step(want[i], Values(grad), groups[i == 1 ? 0 : 1]);
  }
  for (int i = 0; i < 3; ++i) ExpectClose(Values(params[i]), want[i], 1e-14, std::to_string(i));
  EXPECT_NE(Values(params[0]), Values(params[1]));
  EXPECT_EQ(optimizer->state_bytes(), 2 * 2 * 8);  // momentum buffers of group 1 only
}

}  // namespace
}  // namespace tensord
