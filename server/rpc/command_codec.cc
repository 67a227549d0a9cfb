#include "rpc/command_codec.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "rpc/proto_convert.h"

namespace tensord {
namespace {

using Attrs = std::map<std::string, Attr>;

OptimizerOptions OptionsFromProto(const v1::OptimizerOptions& proto) {
  OptimizerOptions options;
  options.lr = proto.lr();
  options.momentum = proto.momentum();
  options.dampening = proto.dampening();
  options.nesterov = proto.nesterov();
  options.weight_decay = proto.weight_decay();
  options.beta1 = proto.beta1();
  options.beta2 = proto.beta2();
  options.eps = proto.eps();
  options.amsgrad = proto.amsgrad();
  options.maximize = proto.maximize();
  return options;
}

std::vector<std::string> Strings(const google::protobuf::RepeatedPtrField<std::string>& values) {
  return std::vector<std::string>(values.begin(), values.end());
}

// The view op (ops/shape.cc) a ViewRequest names, with its attributes.
absl::StatusOr<std::pair<std::string, Attrs>> ViewOp(const v1::ViewRequest& request) {
  using Result = std::pair<std::string, Attrs>;
  switch (request.op_case()) {
    case v1::ViewRequest::kTranspose:
      return Result{"transpose",
                    Attrs{{"dim0", request.transpose().dim0()}, {"dim1", request.transpose().dim1()}}};
    case v1::ViewRequest::kPermute:
      return Result{"permute", Attrs{{"dims", ToDims(request.permute().dims())}}};
    case v1::ViewRequest::kView:
      return Result{"view", Attrs{{"shape", ToDims(request.view().shape())}}};
    case v1::ViewRequest::kReshape:
      return Result{"reshape", Attrs{{"shape", ToDims(request.reshape().shape())}}};
    case v1::ViewRequest::kSqueeze:
      return Result{"squeeze", Attrs{{"dims", ToDims(request.squeeze().dims())}}};
    case v1::ViewRequest::kUnsqueeze:
      return Result{"unsqueeze", Attrs{{"dim", request.unsqueeze().dim()}}};
    case v1::ViewRequest::kExpand:
      return Result{"expand", Attrs{{"shape", ToDims(request.expand().shape())}}};
    case v1::ViewRequest::kFlatten:
      return Result{"flatten", Attrs{{"start_dim", request.flatten().start_dim()},
                                     {"end_dim", request.flatten().end_dim()}}};
    case v1::ViewRequest::kSelect:
      return Result{"select",
                    Attrs{{"dim", request.select().dim()}, {"index", request.select().index()}}};
    case v1::ViewRequest::kIndex: {
      std::vector<IndexItem> items;
      for (const v1::IndexItem& item : request.index().items()) {
        ASSIGN_OR_RETURN(IndexItem converted, FromProto(item));
        if (IsAdvanced(converted)) {
          return absl::InvalidArgumentError(
              "tensor, bool and list indices make a copy, not a view: send them in an Op "
              "request for 'index'");
        }
        items.push_back(std::move(converted));
      }
      return Result{"index", Attrs{{"items", std::move(items)}}};
    }
    case v1::ViewRequest::OP_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("view request names no operation");
}

absl::StatusOr<CreateCommand::Kind> KindFromProto(v1::CreateRequest::Kind kind) {
  using Kind = CreateCommand::Kind;
  switch (kind) {
    case v1::CreateRequest::EMPTY: return Kind::kEmpty;
    case v1::CreateRequest::ZEROS: return Kind::kZeros;
    case v1::CreateRequest::ONES: return Kind::kOnes;
    case v1::CreateRequest::FULL: return Kind::kFull;
    case v1::CreateRequest::ARANGE: return Kind::kArange;
    case v1::CreateRequest::RAND: return Kind::kRand;
    case v1::CreateRequest::RANDN: return Kind::kRandn;
    default: break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown creation kind ", static_cast<int>(kind)));
}

absl::StatusOr<OptimizerKind> KindFromProto(v1::CreateOptimizerRequest::Kind kind) {
  switch (kind) {
    case v1::CreateOptimizerRequest::SGD: return OptimizerKind::kSgd;
    case v1::CreateOptimizerRequest::ADAM: return OptimizerKind::kAdam;
    case v1::CreateOptimizerRequest::ADAMW: return OptimizerKind::kAdamW;
    default: break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown optimizer kind ", static_cast<int>(kind)));
}

}  // namespace

absl::StatusOr<CommandBody> DecodeBody(const v1::OpRequest& request) {
  OpCommand op;
  op.op = request.op();
  op.no_grad = request.no_grad();
  op.args.reserve(static_cast<size_t>(request.args_size()));
  for (const v1::OpArg& arg : request.args()) {
    if (arg.value_case() == v1::OpArg::kHandle) {
      op.args.emplace_back(arg.handle());
    } else if (arg.value_case() == v1::OpArg::kScalar) {
      op.args.emplace_back(FromProto(arg.scalar()));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(request.op(), ": positional arguments must be tensors or numbers"));
    }
  }
  for (const auto& [name, arg] : request.attrs()) {
    absl::StatusOr<Attr> attr = AttrFromProto(arg);
    if (!attr.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(request.op(), ": attribute '", name, "': ", attr.status().message()));
    }
    op.attrs.emplace(name, *std::move(attr));
  }
  return op;
}

absl::StatusOr<CommandBody> DecodeBody(const v1::ViewRequest& request) {
  ASSIGN_OR_RETURN(auto view, ViewOp(request));
  return OpCommand{std::move(view.first), {request.handle()}, std::move(view.second),
                   request.no_grad()};
}

absl::StatusOr<CommandBody> DecodeBody(const v1::CopyRequest& request) {
  OpCommand op{"", {request.handle()}, {}, request.no_grad()};
  switch (request.kind()) {
    case v1::CopyRequest::CONTIGUOUS:
      op.op = "contiguous";
      break;
    case v1::CopyRequest::CLONE:
      op.op = "clone";
      break;
    case v1::CopyRequest::CAST: {
      ASSIGN_OR_RETURN(const DType dtype, FromProto(request.dtype()));
      op.op = "to";
      op.attrs.emplace("dtype", dtype);
      break;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown copy kind ", static_cast<int>(request.kind())));
  }
  return op;
}

absl::StatusOr<CommandBody> DecodeBody(const v1::CreateRequest& request) {
  CreateCommand create;
  ASSIGN_OR_RETURN(create.dtype, FromProto(request.dtype()));
  ASSIGN_OR_RETURN(create.kind, KindFromProto(request.kind()));
  create.shape = ToDims(request.shape());
  create.fill = FromProto(request.fill());
  create.start = FromProto(request.start());
  create.end = FromProto(request.end());
  create.step = request.has_step() ? FromProto(request.step()) : Scalar{int64_t{1}};
  if (request.has_seed()) create.seed = request.seed();
  create.requires_grad = request.requires_grad();
  return create;
}

absl::StatusOr<CommandBody> DecodeBody(const v1::BackwardRequest& request) {
  return BackwardCommand{Strings(request.tensors()), Strings(request.grad_tensors()),
                         request.retain_graph()};
}

absl::StatusOr<CommandBody> DecodeBody(const v1::ZeroGradRequest& request) {
  return ZeroGradCommand{Strings(request.handles()), request.optimizer(), request.set_to_none()};
}

absl::StatusOr<CommandBody> DecodeBody(const v1::CreateOptimizerRequest& request) {
  CreateOptimizerCommand create;
  ASSIGN_OR_RETURN(create.kind, KindFromProto(request.kind()));
  for (const v1::ParamGroup& group : request.groups()) {
    create.groups.push_back(Strings(group.params()));
    create.options.push_back(OptionsFromProto(group.options()));
  }
  return create;
}

absl::StatusOr<CommandBody> DecodeBody(const v1::StepRequest& request) {
  StepCommand step{request.optimizer(), {}};
  for (const v1::OptimizerOptions& group : request.groups()) {
    step.options.push_back(OptionsFromProto(group));
  }
  return step;
}

absl::StatusOr<CommandBody> DecodeBody(const v1::SetRequiresGradRequest& request) {
  return SetRequiresGradCommand{request.handle(), request.requires_grad()};
}

absl::StatusOr<CommandBody> DecodeBody(const v1::SetGradRequest& request) {
  return SetGradCommand{request.handle(), request.grad()};
}

absl::StatusOr<Command> DecodeCommand(const v1::Command& proto) {
  absl::StatusOr<CommandBody> body;
  switch (proto.kind_case()) {
    case v1::Command::kOp: body = DecodeBody(proto.op()); break;
    case v1::Command::kView: body = DecodeBody(proto.view()); break;
    case v1::Command::kCopy: body = DecodeBody(proto.copy()); break;
    case v1::Command::kCreate: body = DecodeBody(proto.create()); break;
    case v1::Command::kRelease:
      body = ReleaseCommand{Strings(proto.release().handles())};
      break;
    case v1::Command::kSetRequiresGrad: body = DecodeBody(proto.set_requires_grad()); break;
    case v1::Command::kDetach: body = DetachCommand{proto.detach().handle()}; break;
    case v1::Command::kRetainGrad: body = RetainGradCommand{proto.retain_grad().handle()}; break;
    case v1::Command::kGetGrad: body = GetGradCommand{proto.get_grad().handle()}; break;
    case v1::Command::kSetGrad: body = DecodeBody(proto.set_grad()); break;
    case v1::Command::kBackward: body = DecodeBody(proto.backward()); break;
    case v1::Command::kZeroGrad: body = DecodeBody(proto.zero_grad()); break;
    case v1::Command::kCreateOptimizer: body = DecodeBody(proto.create_optimizer()); break;
    case v1::Command::kStep: body = DecodeBody(proto.step()); break;
    case v1::Command::kManualSeed: body = ManualSeedCommand{proto.manual_seed().seed()}; break;
    case v1::Command::kSync: body = SyncCommand{}; break;
    case v1::Command::KIND_NOT_SET:
      return absl::InvalidArgumentError(
          absl::StrCat("command ", proto.id(), " names no operation"));
  }
  if (!body.ok()) return body.status();
  return Command{*std::move(body), Strings(proto.outputs())};
}

void FillOutputs(const CommandResult& result,
                 google::protobuf::RepeatedPtrField<v1::TensorMeta>* outputs) {
  for (const auto& [handle, variable] : result.tensors) FillMeta(handle, variable, outputs->Add());
}

}  // namespace tensord
