// The autograd machinery without RPCs: RunRecorded builds nodes with the
// right edges and saves only what each op declares; Backward runs a diamond
// graph once per node, accumulates into leaves, releases saved tensors, and
// refuses a second pass and a saved tensor changed in place.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/recorder.h"
#include "core/create.h"
#include "testing.h"

namespace tensord {
namespace {

using tensord_testing::Elements;
using tensord_testing::LargeBudget;
using tensord_testing::StatusIs;
using tensord_testing::ValueOrThrow;

class AutogradTest : public ::testing::Test {
 protected:
  Variable Leaf(std::vector<double> values) {
    Tensor t = ValueOrThrow(Tensor::Empty(DType::kFloat64, Dims{static_cast<int64_t>(values.size())},
                                          Device::Cpu(), budget_));
    std::copy(values.begin(), values.end(), reinterpret_cast<double*>(t.data()));
    return Variable{t, std::make_shared<AutogradMeta>(true, nullptr, 0)};
  }

  // Runs `op` on variables and numbers, recording it.
  Variable Run(const std::string& op, std::vector<std::variant<Variable, Scalar>> args,
               std::map<std::string, Attr> attrs = {}, bool grad_enabled = true) {
    std::vector<Operand> operands;
    std::vector<std::shared_ptr<AutogradMeta>> autograd;
    for (auto& arg : args) {
      if (auto* v = std::get_if<Variable>(&arg)) {
        operands.push_back(v->tensor);
        autograd.push_back(v->autograd);
      } else {
        operands.push_back(std::get<Scalar>(arg));
        autograd.push_back(nullptr);
      }
    }
    std::vector<Variable> out = ValueOrThrow(RunRecorded(
        OpContext(op, std::move(operands), std::move(attrs), budget_), autograd, grad_enabled,
        [] { return uint64_t{7}; }));
    return out.at(0);
  }

  std::vector<double> Grad(const Variable& v) {
    absl::MutexLock lock(&v.autograd->mu);
    return Elements<double>(*v.autograd->grad);
  }

  std::shared_ptr<MemoryBudget> budget_ = LargeBudget();
};

TEST_F(AutogradTest, RecordsNodesWithEdgesToLeaves) {
  Variable x = Leaf({1, 2});
  Variable c{ValueOrThrow(Full(Dims{2}, Scalar{3.0}, {DType::kFloat64, Device::Cpu(), budget_})),
             nullptr};
  Variable y = Run("mul", {x, c});
  ASSERT_TRUE(y.requires_grad());
  EXPECT_EQ(y.autograd->grad_fn->name(), "MulBackward0");
  const std::vector<Edge>& next = y.autograd->grad_fn->next();
  ASSERT_EQ(next.size(), 2u);
  EXPECT_EQ(next[0].node->name(), "AccumulateGrad");
  EXPECT_EQ(next[1].node, nullptr);  // the constant needs no gradient
  // The same leaf used again reaches the same accumulator.
  Variable z = Run("add", {x, Scalar{1.0}});
  EXPECT_EQ(z.autograd->grad_fn->next()[0].node, next[0].node);
}

TEST_F(AutogradTest, NothingIsRecordedWithoutGradOrForIntegerOutputs) {
  Variable x = Leaf({1, 2});
  EXPECT_FALSE(Run("mul", {x, Scalar{2.0}}, {}, /*grad_enabled=*/false).requires_grad());
  EXPECT_FALSE(Run("gt", {x, Scalar{1.0}}).requires_grad());
  EXPECT_FALSE(Run("argmax", {x}).requires_grad());
}

TEST_F(AutogradTest, DiamondGraphAccumulatesBothPaths) {
  // y = x*x; z = y*3 + y; dz/dx = 4 * 2x
  Variable x = Leaf({1, 2, 3});
  Variable y = Run("mul", {x, x});
  Variable z = Run("add", {Run("mul", {y, Scalar{3.0}}), y});
  Variable loss = Run("sum", {z});
  ASSERT_TRUE(Backward({BackwardRoot{loss, std::nullopt}}, false, budget_).ok());
  EXPECT_EQ(Grad(x), (std::vector<double>{8, 16, 24}));
  // A second backward through released nodes is refused, and adds nothing.
  EXPECT_THAT(Backward({BackwardRoot{loss, std::nullopt}}, false, budget_),
              StatusIs(absl::StatusCode::kFailedPrecondition, "second time"));
  EXPECT_EQ(Grad(x), (std::vector<double>{8, 16, 24}));
}

TEST_F(AutogradTest, RetainedGraphRunsTwiceAndAccumulates) {
  Variable x = Leaf({1, 2});
  Variable loss = Run("sum", {Run("mul", {x, x})});
  ASSERT_TRUE(Backward({BackwardRoot{loss, std::nullopt}}, true, budget_).ok());
  ASSERT_TRUE(Backward({BackwardRoot{loss, std::nullopt}}, false, budget_).ok());
  EXPECT_EQ(Grad(x), (std::vector<double>{4, 8}));
}

TEST_F(AutogradTest, OpsSaveOnlyWhatTheirBackwardReads) {
  Variable x = Leaf({1, 2});
  const int64_t before = budget_->in_use();
  std::optional<Variable> y = Run("add", {x, Scalar{1.0}});  // add saves nothing
  Variable z = Run("exp", {*y});                            // exp saves its output (z itself)
  // Each storage is charged its 64-byte block, each node kNodeBytes.
  EXPECT_EQ(budget_->in_use() - before, 64 + 64 + 2 * kNodeBytes);
  y.reset();  // drop the only handle on y's tensor: no node kept it
  EXPECT_EQ(budget_->in_use() - before, 64 + 2 * kNodeBytes);
}

TEST_F(AutogradTest, SavedTensorChangedInPlaceStopsBackward) {
  Variable x = Leaf({1, 2});
  Variable w = Leaf({3, 4});
  Variable loss = Run("sum", {Run("mul", {x, w})});
  ASSERT_TRUE(RunRecorded(OpContext("mul_", {w.tensor, Scalar{2.0}}, {}, budget_), {w.autograd, nullptr},
                          /*grad_enabled=*/false, [] { return uint64_t{0}; })
                  .ok());
  EXPECT_THAT(Backward({BackwardRoot{loss, std::nullopt}}, false, budget_),
              StatusIs(absl::StatusCode::kFailedPrecondition, "modified by an inplace operation"));
}

TEST_F(AutogradTest, InPlaceOnALeafThatRequiresGradIsRefused) {
  Variable w = Leaf({3, 4});
  EXPECT_THAT(RunRecorded(OpContext("add_", {w.tensor, Scalar{1.0}}, {}, budget_), {w.autograd, nullptr},
                          /*grad_enabled=*/true, [] { return uint64_t{0}; }),
              StatusIs(absl::StatusCode::kFailedPrecondition, "leaf Variable"));
  EXPECT_EQ(Elements<double>(w.tensor), (std::vector<double>{3, 4}));
}

TEST_F(AutogradTest, BroadcastGradientsAreSummedToEachShape) {
  Variable a = Leaf({1, 2, 3});
  Variable row = Run("reshape", {a}, {{"shape", Dims{3, 1}}});
  Variable b = Leaf({10, 20});
  Variable loss = Run("sum", {Run("mul", {row, b})});  // [3,1] * [2] -> [3,2]
  ASSERT_TRUE(Backward({BackwardRoot{loss, std::nullopt}}, false, budget_).ok());
  EXPECT_EQ(Grad(a), (std::vector<double>{30, 30, 30}));
  EXPECT_EQ(Grad(b), (std::vector<double>{6, 6}));
}

TEST(BackwardNameTest, FollowsPyTorch) {
  EXPECT_EQ(BackwardName("mul"), "MulBackward0");
  EXPECT_EQ(BackwardName("log_softmax"), "LogSoftmaxBackward0");
  EXPECT_EQ(BackwardName("binary_cross_entropy_with_logits"),
            "BinaryCrossEntropyWithLogitsBackward0");
}

}  // namespace
}  // namespace tensord
