"""`Optimizer`: the base of tensord's optimizers, with torch.optim's interface.

The optimizer and its state (momentum buffers, Adam moments, step counts)
live on the server, created by one create_optimizer command; this object
holds its id and `param_groups`, a list of dicts exactly like torch's.
`step()` is one command that sends every group's current options, so
changing `optimizer.param_groups[0]["lr"]` (an LR schedule) takes effect at
the next step. `zero_grad()` is one command. Like every op they are
pipelined: a failure is raised at the next sync point. The server-side
optimizer is freed when this object is garbage-collected (or its session
closes).

Options are checked here, with torch's messages, before anything is sent;
the server checks them again.

Not thread-safe: step an optimizer from one thread at a time.
"""
from __future__ import annotations

import math
import numbers
import warnings
import weakref
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Optional, Union

from tensord import autograd
from tensord.tensor import Tensor
from tensord.v1 import tensord_pb2 as pb

if TYPE_CHECKING:
    from tensord.client import Client

ParamsT = Union[Iterable[Tensor], Iterable[dict[str, Any]]]


class _Required:
    """The default of an option that every param group must give (torch's `required`)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


class Optimizer:
    """Base class: subclasses set `_kind`, `_check_options` and `_options`.

    `params` is an iterable of Tensors, or of dicts (param groups) each with
    a "params" entry and any options that override `defaults`.
    """

    _kind: ClassVar[int]

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        self._check_options(defaults)
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = []
        self._client: Optional["Client"] = None
        self._id = ""
        self._stepped = False
        if isinstance(params, Tensor):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or dicts, "
                f"but got {type(params).__module__}.{type(params).__name__}"
            )
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self._add_group(group)
        self._create()

    # ---- the torch.optim interface ------------------------------------------

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clears the grads of every parameter: to None (default) or to zeros. One command."""
        request = pb.ZeroGradRequest(optimizer=self._id, set_to_none=bool(set_to_none))
        self._issue("zero_grad", pb.Command(zero_grad=request))

    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        """One update of every parameter that has a grad, with the groups' current options. One command.

        `closure`, if given, is called first, with grad mode on (it should
        recompute the loss and its gradients), and its result is returned, as in torch.
        """
        loss = None
        if closure is not None:
            with autograd.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._check_options(group)
        request = pb.StepRequest(optimizer=self._id, groups=[self._options(g) for g in self.param_groups])
        self._issue("step", pb.Command(step=request))
        self._stepped = True
        return loss

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a group of parameters (a dict with "params" and optional options).

        The server builds an optimizer's parameter list once, so a group can
        only be added before the first `step()`: the server-side optimizer is
        then made again with every group.
        """
        if self._stepped:
            raise NotImplementedError(
                "tensord optimizers cannot gain parameter groups after their first step(); "
                "create the optimizer with every group instead"
            )
        self._add_group(param_group)
        self._create()

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError(
            "tensord optimizers keep their state on the server and cannot export it yet; "
            "save the model's state_dict() and make a new optimizer when loading"
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        raise NotImplementedError("tensord optimizers cannot load a state_dict yet (see state_dict())")

    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)

    # ---- for subclasses -----------------------------------------------------

    def _check_options(self, options: dict[str, Any]) -> None:
        """Raises ValueError (torch's message) for a bad option in `options` (defaults or a group)."""
        raise NotImplementedError

    def _options(self, group: dict[str, Any]) -> pb.OptimizerOptions:
        """The wire form of `group`'s options."""
        raise NotImplementedError

    # ---- helpers ------------------------------------------------------------

    def _add_group(self, param_group: dict[str, Any]) -> None:
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but the ordering of tensors "
                "in sets will change between runs. Please use a list instead."
            )
        else:
            params = list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
            if self._client is None:
                self._client = p._client
            elif p._client is not self._client:
                raise ValueError("all parameters of an optimizer must belong to the same tensord client")
        unique: list[Tensor] = []
        seen: set[int] = set()
        for p in params:
            if id(p) not in seen:
                seen.add(id(p))
                unique.append(p)
        if len(unique) != len(params):
            warnings.warn(
                "optimizer contains a parameter group with duplicate parameters; each is optimized once",
                UserWarning,
                stacklevel=3,
            )
        group = dict(param_group, params=unique)
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            group.setdefault(name, default)
        self._check_options(group)
        for other in self.param_groups:
            if any(id(p) in seen for p in other["params"]):
                raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def _create(self) -> None:
        """Makes the server-side optimizer for the current groups (freeing any previous one)."""
        if self._client is None:  # _add_group sets it at the first parameter
            raise ValueError("optimizer got an empty parameter list")
        groups = [
            pb.ParamGroup(params=[p._live_handle() for p in g["params"]], options=self._options(g))
            for g in self.param_groups
        ]
        executor = self._client._executor
        optimizer_id = executor.new_handle()
        command = pb.Command(
            create_optimizer=pb.CreateOptimizerRequest(kind=self._kind, groups=groups), outputs=[optimizer_id]
        )
        params = [p for g in self.param_groups for p in g["params"]]
        executor.command(self._client, "create_optimizer", command, params)
        if self._id:
            self._finalizer()  # frees the optimizer this one replaces
        self._id = optimizer_id
        self._finalizer = weakref.finalize(self, executor.release, self._id)
        self._finalizer.atexit = False  # at exit the session close frees everything

    def _issue(self, name: str, command: pb.Command) -> None:
        assert self._client is not None
        self._client._executor.command(self._client, name, command)


def check_number(value: Any, name: str, what: str, upper: Optional[float] = None) -> float:
    """`value` as a float if it is a finite real number in [0, upper); else ValueError with torch's message.

    Unlike torch (and like the server), infinities are refused too: they
    would turn every parameter into NaN.
    """
    if isinstance(value, Tensor):
        raise TypeError(f"{name} must be a Python number, not a tensord.Tensor")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not (math.isfinite(v) and v >= 0.0 and (upper is None or v < upper)):
        raise ValueError(f"Invalid {what}: {value}")
    return v
