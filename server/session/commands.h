// Commands: everything a client asks of its session besides moving bytes,
// decoded from the wire into plain values, and Execute, which runs one
// against the session: it resolves handles, calls the layers below (the
// autograd recorder and engine, optimizers, factories), and registers the
// results under the handles the command names.
//
// The RPC layer decodes a request into a Command and enqueues
// `Execute(session, command)` on the session's stream (exec/scheduler.h),
// so commands of one session run one at a time in issue order. Execute is
// the only place their semantics live: the unary RPCs, the pipelined
// Execute stream and (later) training jobs all go through it.
//
// Output handles: a command that makes tensors (or an optimizer) names the
// handles for them in `outputs`, chosen by the client so that it can use
// them before the command has run. Empty `outputs` asks Execute to choose
// random ones (the unary RPCs). A named handle that is malformed, or already
// in use in the session, fails the command before it runs.
//
// Thread-safety: Execute is reentrant; callers serialise the commands of
// one session (its stream does) so that they see each other's effects in
// order.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "autograd/node.h"
#include "core/scalar.h"
#include "ops/op.h"
#include "optim/optimizer.h"
#include "session/session.h"

namespace tensord {

// A positional argument: a tensor handle of the session, or a number.
using ArgRef = std::variant<std::string, Scalar>;

// Any op of the registry (views and copies included) on named tensors.
struct OpCommand {
  std::string op;
  std::vector<ArgRef> args;
  std::map<std::string, Attr> attrs;
  bool no_grad = false;  // the client is inside `no_grad()`: record nothing
};

struct CreateCommand {
  enum class Kind { kEmpty, kZeros, kOnes, kFull, kArange, kRand, kRandn };
  Kind kind = Kind::kZeros;
  DType dtype = DType::kFloat32;
  Dims shape;
  Scalar fill;                    // kFull
  Scalar start, end, step;        // kArange
  std::optional<uint64_t> seed;   // kRand, kRandn: absent draws from the session
  bool requires_grad = false;
};

// Drops handles (tensors or optimizers) the client no longer holds. Unlike
// the Free RPC, unknown handles are skipped: they name the outputs of a
// command that failed, which the client frees like any other.
struct ReleaseCommand {
  std::vector<std::string> handles;
};

struct SetRequiresGradCommand {
  std::string handle;
  bool requires_grad = true;
};
struct DetachCommand {
  std::string handle;
};
struct RetainGradCommand {
  std::string handle;
};
// Registers the tensor's gradient, if it has one, under outputs[0].
struct GetGradCommand {
  std::string handle;
};
struct SetGradCommand {
  std::string handle;
  std::string grad;  // empty: None
};
struct BackwardCommand {
  std::vector<std::string> roots;
  std::vector<std::string> grads;  // one per root ("" for ones), or none
  bool retain_graph = false;
};
struct ZeroGradCommand {
  std::vector<std::string> handles;
  std::string optimizer;  // empty: none
  bool set_to_none = true;
};
struct CreateOptimizerCommand {
  OptimizerKind kind = OptimizerKind::kSgd;
  std::vector<std::vector<std::string>> groups;
  std::vector<OptimizerOptions> options;
};
struct StepCommand {
  std::string optimizer;
  std::vector<OptimizerOptions> options;  // one per group, or none
};
struct ManualSeedCommand {
  uint64_t seed = 0;
};
// Does nothing: its completion tells the client that everything it issued
// before has run (td.synchronize()).
struct SyncCommand {};

using CommandBody =
    std::variant<OpCommand, CreateCommand, ReleaseCommand, SetRequiresGradCommand,
                 DetachCommand, RetainGradCommand, GetGradCommand, SetGradCommand,
                 BackwardCommand, ZeroGradCommand, CreateOptimizerCommand, StepCommand,
                 ManualSeedCommand, SyncCommand>;

struct Command {
  CommandBody body;
  std::vector<std::string> outputs;  // see the header comment
};

// What a command left behind for its reply: each tensor it registered (or,
// for SetRequiresGrad and RetainGrad, changed) with its handle, and the id
// of an optimizer it created.
struct CommandResult {
  std::vector<std::pair<std::string, Variable>> tensors;
  std::string optimizer;
};

// The name a command goes by in errors and metrics: the op's name for ops,
// "create", "backward", "step", ... otherwise.
std::string CommandName(const Command& command);

// Runs `command` against `session`. Errors name the offending value; on
// error the session is as it was, except for what an op changed in place
// before failing (nothing, for every op of the registry).
absl::StatusOr<CommandResult> Execute(Session& session, const Command& command);

}  // namespace tensord
