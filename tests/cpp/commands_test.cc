// Tests of session/commands.h: Execute against a session, with handles the
// caller names (the Execute stream) or the server chooses (unary RPCs).
#include "session/commands.h"

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "testing.h"

namespace tensord {
namespace {

using tensord_testing::Elements;
using tensord_testing::IsOk;
using tensord_testing::LargeBudget;
using tensord_testing::StatusIs;

class CommandsTest : public ::testing::Test {
 protected:
  Session session_{"id", "client", nullptr, LargeBudget()};

  absl::StatusOr<CommandResult> Run(CommandBody body, std::vector<std::string> outputs = {}) {
    return Execute(session_, Command{std::move(body), std::move(outputs)});
  }

  // A float32 tensor of `n` ones under `handle`.
  void Ones(const std::string& handle, int64_t n) {
    CreateCommand create;
    create.kind = CreateCommand::Kind::kOnes;
    create.shape = {n};
    ASSERT_THAT(Run(create, {handle}), IsOk());
  }

  OpCommand Op(std::string name, std::vector<ArgRef> args) {
    return OpCommand{std::move(name), std::move(args), {}, false};
  }
};

TEST_F(CommandsTest, OutputsGetTheHandlesTheCommandNames) {
  Ones("a", 3);
  ASSERT_OK_AND_ASSIGN(CommandResult result, Run(Op("add", {"a", Scalar{int64_t{2}}}), {"b"}));
  ASSERT_EQ(result.tensors.size(), 1u);
  EXPECT_EQ(result.tensors[0].first, "b");
  ASSERT_OK_AND_ASSIGN(Tensor b, session_.Get("b"));
  EXPECT_EQ(Elements<float>(b), (std::vector<float>{3, 3, 3}));
  // max with a dim has two outputs: values and indices.
  OpCommand max = Op("max", {"b"});
  max.attrs.emplace("dim", int64_t{0});
  ASSERT_OK_AND_ASSIGN(result, Run(max, {"values", "indices"}));
  EXPECT_EQ(result.tensors[1].first, "indices");
  EXPECT_THAT(session_.Get("indices"), IsOk());
}

TEST_F(CommandsTest, WithoutNamedOutputsTheServerChoosesRandomHandles) {
  Ones("a", 2);
  ASSERT_OK_AND_ASSIGN(CommandResult result, Run(Op("neg", {"a"})));
  ASSERT_EQ(result.tensors.size(), 1u);
  EXPECT_EQ(result.tensors[0].first.size(), 32u);
  EXPECT_THAT(session_.Get(result.tensors[0].first), IsOk());
}

TEST_F(CommandsTest, BadOutputHandlesFailTheCommandAndMakeNothing) {
  Ones("a", 2);
  EXPECT_THAT(Run(Op("neg", {"a"}), {"a"}), StatusIs(absl::StatusCode::kInvalidArgument, "already in use"));
  EXPECT_THAT(Run(Op("neg", {"a"}), {""}), StatusIs(absl::StatusCode::kInvalidArgument, "1 to 128 bytes"));
  EXPECT_THAT(Run(Op("neg", {"a"}), {std::string(129, 'x')}),
              StatusIs(absl::StatusCode::kInvalidArgument, "got 129"));
  EXPECT_THAT(Run(Op("neg", {"a"}), {"x", "y"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "neg produces 1 output but the command names 2"));
  EXPECT_THAT(Run(Op("max", {"a"}), {"v", "v"}), StatusIs(absl::StatusCode::kInvalidArgument, "named twice"));
  EXPECT_THAT(Run(Op("add_", {"a", Scalar{1.0}}), {"z"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "produces 0 outputs"));
  EXPECT_THAT(Run(SyncCommand{}, {"s"}), StatusIs(absl::StatusCode::kInvalidArgument, "makes no tensor"));
  EXPECT_EQ(session_.size(), 1);
  ASSERT_OK_AND_ASSIGN(Tensor a, session_.Get("a"));
  EXPECT_EQ(Elements<float>(a), (std::vector<float>{1, 1}));  // add_ with a bad output never ran
}

TEST_F(CommandsTest, AnUnknownInputIsNotFoundAndReleaseSkipsUnknownHandles) {
  Ones("a", 2);
  Ones("b", 2);
  EXPECT_THAT(Run(Op("neg", {"never-made"}), {"c"}), StatusIs(absl::StatusCode::kNotFound, "never-made"));
  EXPECT_THAT(Run(ReleaseCommand{{"a", "never-made", "a"}}), IsOk());
  EXPECT_EQ(session_.size(), 1);
  EXPECT_THAT(session_.Get("b"), IsOk());
  // The unary Free is all or nothing.
  EXPECT_THAT(session_.Free({"b", "never-made"}), StatusIs(absl::StatusCode::kNotFound, "never-made"));
  EXPECT_EQ(session_.size(), 1);
}

TEST_F(CommandsTest, AutogradStateChangesGoThroughTheRules) {
  CreateCommand create;
  create.kind = CreateCommand::Kind::kOnes;
  create.dtype = DType::kInt64;
  create.shape = {2};
  ASSERT_THAT(Run(create, {"ints"}), IsOk());
  EXPECT_THAT(Run(SetRequiresGradCommand{"ints", true}),
              StatusIs(absl::StatusCode::kInvalidArgument, "floating-point"));
  Ones("x", 2);
  ASSERT_OK_AND_ASSIGN(CommandResult set, Run(SetRequiresGradCommand{"x", true}));
  ASSERT_EQ(set.tensors.size(), 1u);
  EXPECT_TRUE(set.tensors[0].second.requires_grad());
  ASSERT_THAT(Run(Op("mul", {"x", "x"}), {"y"}), IsOk());
  EXPECT_THAT(Run(SetRequiresGradCommand{"y", false}),
              StatusIs(absl::StatusCode::kFailedPrecondition, "leaf variables"));
  EXPECT_THAT(Run(RetainGradCommand{"ints"}), StatusIs(absl::StatusCode::kFailedPrecondition));
  // No gradient yet: get_grad registers nothing.
  ASSERT_OK_AND_ASSIGN(CommandResult none, Run(GetGradCommand{"x"}, {"g"}));
  EXPECT_TRUE(none.tensors.empty());
  EXPECT_THAT(session_.Get("g"), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_THAT(Run(Op("sum", {"y"}), {"loss"}), IsOk());
  ASSERT_THAT(Run(BackwardCommand{{"loss"}, {}, false}), IsOk());
  ASSERT_OK_AND_ASSIGN(CommandResult grad, Run(GetGradCommand{"x"}, {"g"}));
  ASSERT_EQ(grad.tensors.size(), 1u);
  ASSERT_OK_AND_ASSIGN(Tensor g, session_.Get("g"));
  EXPECT_EQ(Elements<float>(g), (std::vector<float>{2, 2}));
  EXPECT_THAT(Run(SetGradCommand{"x", "ints"}), StatusIs(absl::StatusCode::kInvalidArgument, "different type"));
}

TEST_F(CommandsTest, AnOptimizerTakesTheIdTheCommandNames) {
  Ones("w", 2);
  ASSERT_THAT(Run(SetRequiresGradCommand{"w", true}), IsOk());
  CreateOptimizerCommand create;
  create.kind = OptimizerKind::kSgd;
  create.groups = {{"w"}};
  OptimizerOptions options;
  options.lr = 0.5;
  create.options = {options};
  ASSERT_OK_AND_ASSIGN(CommandResult made, Run(create, {"opt"}));
  EXPECT_EQ(made.optimizer, "opt");
  EXPECT_THAT(Run(create, {"opt"}), StatusIs(absl::StatusCode::kInvalidArgument, "already in use"));
  ASSERT_THAT(Run(Op("sum", {"w"}), {"loss"}), IsOk());
  ASSERT_THAT(Run(BackwardCommand{{"loss"}, {}, false}), IsOk());
  ASSERT_THAT(Run(StepCommand{"opt", {}}), IsOk());
  ASSERT_OK_AND_ASSIGN(Tensor w, session_.Get("w"));
  EXPECT_EQ(Elements<float>(w), (std::vector<float>{0.5f, 0.5f}));
  EXPECT_THAT(Run(ReleaseCommand{{"opt"}}), IsOk());
  EXPECT_THAT(Run(StepCommand{"opt", {}}), StatusIs(absl::StatusCode::kNotFound, "opt"));
}

TEST_F(CommandsTest, CommandNamesAreStable) {
  EXPECT_EQ(CommandName(Command{Op("matmul", {}), {}}), "matmul");
  EXPECT_EQ(CommandName(Command{ReleaseCommand{}, {}}), "release");
  EXPECT_EQ(CommandName(Command{CreateCommand{}, {}}), "create");
  EXPECT_EQ(CommandName(Command{SyncCommand{}, {}}), "sync");
}

}  // namespace
}  // namespace tensord
