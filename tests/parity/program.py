"""How one parity case runs, the same code for PyTorch and for tensord.

A case is a few lines of Python that use only names both libraries share:
`lib` (the `torch` module, or a connected `tensord.Client`), `F` (its
`nn.functional`), `optim`, and the case's inputs as tensors. The code sets
`out` to a tensor, a tuple of tensors or a Python number. When the case asks
for gradients, its differentiable inputs are leaves that require grad,
`out.backward(gout)` runs, and their `.grad` are the gradients compared.

Arrays cross between interpreters as `Packed` tuples (dtype name, shape,
strides in elements, C-order bytes): the reference interpreter has NumPy and
torch but not ml_dtypes, so bfloat16 travels as its raw 16-bit pattern.

This module imports only NumPy; both interpreters import it.
"""
from __future__ import annotations

import traceback
from typing import Any, NamedTuple

import numpy as np

DTYPES = [
    "bool", "uint8", "int8", "int16", "int32", "int64",
    "float16", "bfloat16", "float32", "float64", "complex64", "complex128",
]


class Packed(NamedTuple):
    dtype: str
    shape: tuple
    strides: tuple | None  # in elements; None for inputs
    data: bytes


class Case(NamedTuple):
    id: str
    code: str
    inputs: dict  # name -> Packed
    grad: tuple = ()  # names of inputs that require grad
    gout: Packed | None = None  # the gradient fed to out.backward
    layout: bool = False  # compare strides too (views)
    tol: float | None = None  # relative/absolute tolerance; None: by dtype


def pack(array: np.ndarray, dtype: str, strides: tuple | None = None) -> Packed:
    """`array` (already of `dtype`'s NumPy type, or its 16-bit view for bfloat16)."""
    return Packed(dtype, tuple(array.shape), strides, np.ascontiguousarray(array).tobytes())


def raw_numpy(packed: Packed) -> np.ndarray:
    """The array, with bfloat16 as uint16 bit patterns (no ml_dtypes needed)."""
    np_dtype = np.uint16 if packed.dtype == "bfloat16" else np.dtype(packed.dtype)
    return np.frombuffer(packed.data, dtype=np_dtype).reshape(packed.shape).copy()


class Library:
    """What a side provides: tensors from packed arrays and packed results."""

    namespace: dict

    def tensor(self, packed: Packed, requires_grad: bool) -> Any:
        raise NotImplementedError

    def result(self, value: Any) -> Packed:
        raise NotImplementedError

    def synchronize(self) -> None:
        pass


def run(case: Case, library: Library) -> dict:
    """{"out": [Packed...], "grads": [Packed|None...]} or {"error": text}."""
    try:
        scope = dict(library.namespace)
        leaves = {}
        for name, packed in case.inputs.items():
            scope[name] = library.tensor(packed, name in case.grad)
            if name in case.grad:
                leaves[name] = scope[name]
        exec(case.code, scope)  # noqa: S102 - the suite's own generated code
        out = scope["out"]
        results = [library.result(v) for v in (out if isinstance(out, (tuple, list)) else [out])]
        grads = []
        if case.grad:
            gout = library.tensor(case.gout, False)
            out.backward(gout)
            for name in case.grad:
                g = leaves[name].grad
                grads.append(None if g is None else library.result(g))
        library.synchronize()
        return {"out": results, "grads": grads}
    except Exception as e:  # noqa: BLE001 - either side's refusal is a result to compare
        return {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}",
                "trace": traceback.format_exc(limit=3)}


def reproducer(case: Case) -> str:
    """A standalone script that runs `case` on both sides and prints each result."""
    lines = [
        "import numpy as np, ml_dtypes, torch, tensord",
        "td = tensord.connect('127.0.0.1:50051')  # a running tensord",
        "def both(a, requires_grad=False):",
        "    t = torch.from_numpy(a.view(np.int16)).view(torch.bfloat16) if a.dtype == ml_dtypes.bfloat16 "
        "else torch.from_numpy(a)",
        "    return t.requires_grad_(requires_grad), td.from_numpy(a).requires_grad_(requires_grad)",
    ]
    names = list(case.inputs)
    for name, packed in case.inputs.items():
        array = raw_numpy(packed)
        if packed.dtype == "bfloat16":
            lines.append(f"{name} = np.array({array.tolist()!r}, dtype=np.uint16).view(ml_dtypes.bfloat16)")
        else:
            lines.append(f"{name} = np.array({array.tolist()!r}, dtype=np.{packed.dtype})")
        lines.append(f"{name}_torch, {name}_td = both({name}, {name in case.grad})")
    code = case.code.replace("\n", "\n    ")
    for side, lib in (("torch", "torch"), ("td", "td")):
        args = ", ".join(f"{n}={n}_{side}" for n in names)
        lines.append(f"def run_{side}({', '.join(names)}):")
        lines.append(f"    lib, F, optim = {lib}, {lib}.nn.functional, {lib}.optim")
        lines.append(f"    {code}")
        lines.append("    return out")
        lines.append(f"print('{side}:', run_{side}({args}))")
    if case.grad:
        lines.append(f"# then out.backward(gout) and compare the .grad of {', '.join(case.grad)}")
    return "\n".join(lines)

