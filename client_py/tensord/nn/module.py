"""`Module`: the base class of layers and models, like `torch.nn.Module`.

A Module keeps three ordered registries, filled by attribute assignment:
`Parameter`s, buffers (tensors that are state but not weights, added with
`register_buffer`) and child Modules. Everything that walks a model
(`parameters()`, `named_modules()`, `state_dict()`, `train()`, `repr`)
walks these registries in registration order, with torch's dotted names
("encoder.0.weight").

Parameters and buffers live on the server; a Module itself is a plain Python
object. Calls that touch many parameters batch them: `zero_grad()` is one
command per client, whatever the number of parameters.

Not thread-safe: build and mutate a Module from one thread.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Mapping, NamedTuple, Optional

import numpy as np

from tensord import autograd
from tensord.nn.parameter import Parameter
from tensord.tensor import Tensor
from tensord.v1 import tensord_pb2 as pb

if TYPE_CHECKING:
    from tensord.client import Client


class IncompatibleKeys(NamedTuple):
    """What `load_state_dict(strict=False)` did not match, like torch's `_IncompatibleKeys`."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def _typename(value: Any) -> str:
    if isinstance(value, Tensor):
        return "tensord." + type(value).__name__
    return type(value).__name__


def _addindent(text: str, spaces: int) -> str:
    """Indents every line of `text` but the first (torch's helper for nested reprs)."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    pad = " " * spaces
    return lines[0] + "\n" + "\n".join(pad + line for line in lines[1:])


class Module:
    """Base class of every layer and model; subclass it and define `forward`.

        class Net(td.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = td.nn.Linear(4, 2)    # registered: shows up in parameters()

            def forward(self, x):
                return self.fc(x).relu()

    Layers that create parameters on the server (such as `Linear`) take their
    client from the class they were created through (`td.nn.Linear`) or from
    a `client=` argument.
    """

    #: Set on the per-client subclasses that `Client.nn` hands out (see `tensord.nn.bind`).
    _client: ClassVar[Optional["Client"]] = None
    #: True for layers that create tensors on the server, and so need a client.
    _needs_client: ClassVar[bool] = False

    training: bool

    def __init__(self) -> None:
        # Set through object.__setattr__: our __setattr__ reads these registries.
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ---- registration -------------------------------------------------------

    def register_parameter(self, name: str, param: Optional[Parameter]) -> None:
        """Adds `param` (a Parameter, or None for an absent one such as `bias=False`) as `name`."""
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        self._check_new_name(name, "parameter", self._parameters)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign '{_typename(param)}' object to parameter '{name}' "
                "(tensord.nn.Parameter or None required)"
            )
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Optional[Tensor], persistent: bool = True) -> None:
        """Adds `tensor` as buffer `name`: module state that is not a parameter.

        Persistent buffers are part of `state_dict()`; non-persistent ones are not.
        """
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        self._check_new_name(name, "buffer", self._buffers)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{_typename(tensor)}' object to buffer '{name}' (tensord.Tensor or None required)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: Optional["Module"]) -> None:
        """Adds child `module` (or None) as `name`."""
        if not isinstance(module, Module) and module is not None:
            raise TypeError(f"{_typename(module)} is not a Module subclass")
        if "_modules" not in self.__dict__:
            raise AttributeError("cannot assign module before Module.__init__() call")
        self._check_new_name(name, "module", self._modules)
        self._modules[name] = module

    register_module = add_module

    def _check_new_name(self, name: Any, kind: str, registry: Mapping[str, Any]) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {_typename(name)}")
        if "." in name:
            raise KeyError(f'{kind} name can\'t contain ".", got "{name}"')
        if name == "":
            raise KeyError(f'{kind} name can\'t be empty string ""')
        if name not in registry and hasattr(self, name):
            raise KeyError(f"attribute '{name}' already exists")

    def __setattr__(self, name: str, value: Any) -> None:
        params = self.__dict__.get("_parameters")
        modules = self.__dict__.get("_modules")
        buffers = self.__dict__.get("_buffers")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            self._forget(name, keep=params)
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{_typename(value)}' as parameter '{name}' (tensord.nn.Parameter or None expected)"
                )
            params[name] = None
        elif isinstance(value, Module):
            if modules is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            self._forget(name, keep=modules)
            modules[name] = value
        elif modules is not None and name in modules:
            if value is not None:
                raise TypeError(f"cannot assign '{_typename(value)}' as child module '{name}' (Module or None expected)")
            modules[name] = None
        elif buffers is not None and name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{_typename(value)}' as buffer '{name}' (tensord.Tensor or None expected)")
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str, keep: Mapping[str, Any]) -> None:
        """Removes `name` from every registry but `keep`, and from the plain attributes."""
        self.__dict__.pop(name, None)
        for registry in (self._parameters, self._buffers, self._modules):
            if registry is not keep:
                registry.pop(name, None)
        self._non_persistent_buffers.discard(name)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: registered members are not in __dict__.
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        if name in self._parameters:
            del self._parameters[name]
        elif name in self._buffers:
            del self._buffers[name]
            self._non_persistent_buffers.discard(name)
        elif name in self._modules:
            del self._modules[name]
        else:
            object.__delattr__(self, name)

    def __dir__(self) -> list[str]:
        names = list(super().__dir__())
        names += list(self._parameters) + list(self._buffers) + list(self._modules)
        return sorted(n for n in set(names) if not n[:1].isdigit())

    # ---- traversal ----------------------------------------------------------

    def named_modules(
        self, memo: Optional[set[int]] = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, "Module"]]:
        """(name, module) for this module ("") and every descendant, depth first; each once."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            child_prefix = prefix + ("." if prefix else "") + name
            yield from module.named_modules(memo, child_prefix, remove_duplicate)

    def modules(self) -> Iterator["Module"]:
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        """(name, module) for each direct child, each module once."""
        seen: set[int] = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self) -> Iterator["Module"]:
        for _, module in self.named_children():
            yield module

    def _named_members(
        self, registry: str, prefix: str, recurse: bool, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Tensor]]:
        seen: set[int] = set()
        walk = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for module_prefix, module in walk:
            for name, value in getattr(module, registry).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield module_prefix + ("." if module_prefix else "") + name, value

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) pairs; a parameter shared by two modules is listed once."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)  # type: ignore[misc]

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Tensor]]:
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    def get_submodule(self, target: str) -> "Module":
        """The descendant at dotted path `target` ("" is this module)."""
        module = self
        if target == "":
            return module
        for item in target.split("."):
            child = module._modules.get(item)
            if not isinstance(child, Module):
                raise AttributeError(f"{module._get_name()} has no submodule `{item}`")
            module = child
        return module

    def get_parameter(self, target: str) -> Parameter:
        """The parameter at dotted path `target` ("fc.weight")."""
        module_path, _, name = target.rpartition(".")
        module = self.get_submodule(module_path)
        param = module._parameters.get(name)
        if not isinstance(param, Parameter):
            raise AttributeError(f"`{name}` is not a parameter of {module._get_name()}")
        return param

    def apply(self, fn: Callable[["Module"], None]) -> "Module":
        """Calls `fn` on every child (recursively), then on this module; returns self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ---- modes and gradients ------------------------------------------------

    def train(self, mode: bool = True) -> "Module":
        """Sets training mode on this module and every descendant (Dropout cares); returns self."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> "Module":
        """`train(False)`."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Sets `requires_grad` on every parameter (freezing or unfreezing the module); returns self."""
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clears every parameter's grad: to None (default), or to zeros.

        One command per client holding parameters (normally one).
        """
        by_client: dict[int, tuple[Any, list[Tensor]]] = {}
        for param in self.parameters():
            client = param._client
            by_client.setdefault(id(client), (client, []))[1].append(param)
        for client, params in by_client.values():
            request = pb.ZeroGradRequest(handles=[p._live_handle() for p in params], set_to_none=bool(set_to_none))
            client._executor.command(client, "zero_grad", pb.Command(zero_grad=request), params)

    # ---- state --------------------------------------------------------------

    def _state_items(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """(dotted name, tensor) of every parameter and persistent buffer, as `state_dict` lists them."""
        for name, param in self._parameters.items():
            if param is not None:
                yield prefix + name, param
        for name, buffer in self._buffers.items():
            if buffer is not None and name not in self._non_persistent_buffers:
                yield prefix + name, buffer
        for name, module in self._modules.items():
            if module is not None:
                yield from module._state_items(prefix + name + ".")

    def state_dict(
        self, *, destination: Optional[dict[str, Any]] = None, prefix: str = "", keep_vars: bool = False
    ) -> "OrderedDict[str, Any]":
        """Parameters and persistent buffers by dotted name, downloaded as NumPy arrays.

        With `keep_vars=True` the values are the tensord Tensors themselves
        (nothing is downloaded). The order is registration order, as in torch.
        """
        if destination is None:
            destination = OrderedDict()
        for name, tensor in self._state_items(prefix):
            destination[name] = tensor if keep_vars else tensor.numpy()
        return destination  # type: ignore[return-value]

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copies values (NumPy arrays or tensord Tensors) into the existing parameters and buffers.

        The tensors are written in place (`copy_`, under `tensord.no_grad()`),
        so optimizers built on `parameters()` keep working. Values are cast to
        each parameter's dtype. With `strict`, missing and unexpected keys are
        errors; a shape mismatch always is. On error nothing is copied and
        RuntimeError lists every problem, like torch. Returns the missing and
        unexpected keys.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict).__name__}.")
        expected = OrderedDict(self._state_items())
        missing = [key for key in expected if key not in state_dict]
        unexpected = [key for key in state_dict if key not in expected]
        errors: list[str] = []
        if strict:
            if unexpected:
                errors.append("Unexpected key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in unexpected)))
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in missing)))
        copies: list[tuple[Tensor, Any]] = []
        for key, target in expected.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            if not isinstance(value, (Tensor, np.ndarray, np.generic)):
                errors.append(
                    f'While copying the parameter named "{key}", expected a tensord.Tensor or NumPy array '
                    f"from checkpoint but received {type(value).__name__}"
                )
                continue
            if tuple(value.shape) != target.shape:
                errors.append(
                    f"size mismatch for {key}: copying a param with shape {tuple(value.shape)} from checkpoint, "
                    f"the shape in current model is {target.shape}."
                )
                continue
            copies.append((target, value))
        if errors:
            raise RuntimeError(
                "Error(s) in loading state_dict for {}:\n\t{}".format(type(self).__name__, "\n\t".join(errors))
            )
        with autograd.no_grad():
            for target, value in copies:
                target.copy_(_on_client(value, target))
        return IncompatibleKeys(missing, unexpected)

    # ---- printing -----------------------------------------------------------

    def _get_name(self) -> str:
        return type(self).__name__

    def extra_repr(self) -> str:
        """The text inside this module's parentheses in `repr` (override it, like torch)."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): " + _addindent(repr(module), 2) for name, module in self._modules.items()]
        lines = extra_lines + child_lines
        text = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                text += extra_lines[0]
            else:
                text += "\n  " + "\n  ".join(lines) + "\n"
        return text + ")"

    # ---- helpers for layers -------------------------------------------------

    def _resolve_client(self, client: Optional["Client"]) -> "Client":
        """The client a layer creates its tensors on: `client=`, else the class's binding."""
        if client is None:
            client = type(self)._client
        if client is None:
            name = type(self).__name__
            raise TypeError(
                f"{name} creates its parameters on a tensord server, so it needs a client: "
                f"create it through one, `td.nn.{name}(...)` where td = tensord.connect(...), "
                f"or pass `client=td`"
            )
        return client


def _on_client(value: Any, target: Tensor) -> Tensor:
    """`value` as a Tensor of `target`'s client (uploading arrays, cast to its dtype first)."""
    if isinstance(value, Tensor):
        if value._client is target._client:
            return value
        value = value.numpy()
    array = np.ascontiguousarray(np.asarray(value, dtype=target.dtype))
    return target._client.from_numpy(array)

