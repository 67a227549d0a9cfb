"""The parity suite's cases: seeded, generated, small enough to read.

Each family below yields `program.Case`s; `generate()` returns them all in a
fixed order for a seed. Inputs are small (at most a few dozen elements) so a
failing case prints a reproducer that fits on a screen. Values are drawn per
dtype so that they are exact in it (float16 and bfloat16 values are rounded
before they are packed) and include zeros, negatives and, where a family
asks for them, inf and NaN.
"""
from __future__ import annotations

import itertools
from typing import Iterator

import ml_dtypes
import numpy as np

from program import DTYPES, Case, pack

INTS = ["uint8", "int8", "int16", "int32", "int64"]
FLOATS = ["float16", "bfloat16", "float32", "float64"]
COMPLEX = ["complex64", "complex128"]
NUMERIC = INTS + FLOATS + COMPLEX


def np_dtype(name: str):
    return ml_dtypes.bfloat16 if name == "bfloat16" else np.dtype(name)


class Inputs:
    """Draws input arrays for one case."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.packed: dict = {}

    def array(self, dtype: str, shape: tuple, special: bool = False, positive: bool = False,
              low: int = -9, high: int = 10) -> np.ndarray:
        rng = self.rng
        if dtype == "bool":
            a = rng.integers(0, 2, size=shape).astype(bool)
        elif dtype in INTS:
            lo = 1 if positive else (0 if dtype == "uint8" else low)
            a = rng.integers(lo, high, size=shape).astype(dtype)
        else:
            real = rng.standard_normal(shape) * 3
            if positive:
                real = np.abs(real) + 0.25
            if dtype in COMPLEX:
                a = (real + 1j * rng.standard_normal(shape) * 3).astype(dtype)
            else:
                a = real.astype(np_dtype(dtype))
            if special and a.size >= 4:
                flat = a.reshape(-1)
                flat[:4] = [np.inf, -np.inf, np.nan, 0.0]
                rng.shuffle(flat)
        return np.asarray(a)

    def add(self, name: str, array: np.ndarray, dtype: str) -> None:
        raw = array.view(np.uint16) if dtype == "bfloat16" else array
        self.packed[name] = pack(raw, dtype)

    def new(self, name: str, dtype: str, shape: tuple, **kw) -> np.ndarray:
        a = self.array(dtype, shape, **kw)
        self.add(name, a, dtype)
        return a


def case(rng, id_, code, inputs: dict, grad=(), layout=False, tol=None, gout_dtype=None, gout_shape=None):
    """`inputs` maps a name to (dtype, shape) or (dtype, shape, options)."""
    gen = Inputs(rng)
    for name, spec in inputs.items():
        dtype, shape, *opts = spec
        gen.new(name, dtype, shape, **(opts[0] if opts else {}))
    gout = None
    if grad:
        garray = gen.array(gout_dtype or "float64", gout_shape if gout_shape is not None else ())
        gout = pack(garray.view(np.uint16) if gout_dtype == "bfloat16" else garray, gout_dtype or "float64")
    return Case(id_, code, gen.packed, tuple(grad), gout, layout, tol)


# ---- type promotion ---------------------------------------------------------------

PYTHON_NUMBERS = {"int": "3", "negint": "-2", "float": "2.5", "bool": "True", "complex": "(1.5-2j)"}


def promotion(rng) -> Iterator[Case]:
    ops = {"add": "a + b", "sub": "a - b", "mul": "a * b", "div": "a / b", "lt": "a < b", "eq": "a == b"}
    for (da, db), (op, expr) in itertools.product(itertools.product(DTYPES, DTYPES), ops.items()):
        yield case(rng, f"promote/{op}/{da}-{db}", f"out = {expr}", {"a": (da, (3,)), "b": (db, (3,))})
    zero_dim = {"add": "a + b", "mul": "a * b", "maximum": "lib.maximum(a, b)"}
    for (da, db), (op, expr) in itertools.product(itertools.product(DTYPES, DTYPES), zero_dim.items()):
        yield case(rng, f"promote0d/{op}/{da}-0d{db}", f"out = {expr}", {"a": (da, (2, 2)), "b": (db, ())})
        yield case(rng, f"promote0d/{op}/0d{db}-{da}", f"out = {expr}", {"a": (db, ()), "b": (da, (2, 2))})
    for da, (kind, number), op in itertools.product(DTYPES, PYTHON_NUMBERS.items(), ["+", "-", "*", "/", "**"]):
        yield case(rng, f"number/{da}{op}py{kind}", f"out = a {op} {number}", {"a": (da, (4,))})
        yield case(rng, f"number/py{kind}{op}{da}", f"out = {number} {op} a", {"a": (da, (4,))})


# ---- elementwise over every dtype ----------------------------------------------------

UNARY = ["neg", "abs", "sign", "exp", "log", "log1p", "sqrt", "rsqrt", "sin", "cos", "tanh",
         "sigmoid", "relu"]
BINARY = {"maximum": "lib.maximum(a, b)", "minimum": "lib.minimum(a, b)", "pow": "a ** b",
          "floordiv": "a // b", "mod": "a % b", "ne": "a != b", "le": "a <= b", "gt": "a > b",
          "ge": "a >= b", "where": "lib.where(a > b, a, b)"}
SHAPES = [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((4,), ())]


def elementwise(rng) -> Iterator[Case]:
    for dtype, op in itertools.product(DTYPES, UNARY):
        tol = 2e-2 if dtype == "bfloat16" else None
        yield case(rng, f"unary/{op}/{dtype}", f"out = a.{op}()", {"a": (dtype, (3, 4), {"special": True})}, tol=tol)
        yield case(rng, f"unary-strided/{op}/{dtype}", f"out = a.T[1:, ::2].{op}()", {"a": (dtype, (5, 4))}, tol=tol)
    for dtype in DTYPES:
        yield case(rng, f"unary/gelu/{dtype}", "out = F.gelu(a)", {"a": (dtype, (5,))})
        yield case(rng, f"unary/gelu-tanh/{dtype}", "out = F.gelu(a, approximate='tanh')", {"a": (dtype, (5,))})
    for dtype, (op, expr), (sa, sb) in itertools.product(DTYPES, BINARY.items(), SHAPES):
        positive = op in ("floordiv", "mod")  # integer division by zero raises on both sides
        yield case(rng, f"binary/{op}/{dtype}/{sa}x{sb}", f"out = {expr}",
                   {"a": (dtype, sa, {"special": op not in ("pow",)}),
                    "b": (dtype, sb, {"positive": positive, "low": -3, "high": 4})})
    for dtype in INTS + FLOATS:
        yield case(rng, f"binary/divzero/{dtype}", "out = a // b", {"a": (dtype, (3,)), "b": (dtype, (3,), {"low": 0, "high": 1})})
        yield case(rng, f"binary/modzero/{dtype}", "out = a % b", {"a": (dtype, (3,)), "b": (dtype, (3,), {"low": 0, "high": 1})})
    for dtype in DTYPES:
        for lo, hi in [("-2", "3"), ("None", "1"), ("0.5", "None"), ("-200", "None"), ("None", "300"),
                       ("300", "None"), ("None", "-300"), ("1e6", "None")]:
            yield case(rng, f"clamp/{dtype}/{lo},{hi}", f"out = a.clamp(min={lo}, max={hi})", {"a": (dtype, (6,))})
        yield case(rng, f"clamp-tensor/{dtype}", "out = a.clamp(lo, hi)",
                   {"a": (dtype, (2, 3)), "lo": (dtype, (3,)), "hi": (dtype, (2, 1))})
        yield case(rng, f"clamp-tensor-min/{dtype}", "out = a.clamp(min=lo)", {"a": (dtype, (2, 3)), "lo": (dtype, (3,))})
        for value in ["-1", "255", "300", "-129", "127.5", "-0.5", "1e39", "70000.0", "(1+2j)", "True", "float('nan')", "float('inf')"]:
            yield case(rng, f"fill/{dtype}/{value}", f"a.fill_({value})\nout = a", {"a": (dtype, (2,))})
            yield case(rng, f"full/{dtype}/{value}", f"out = lib.full((2,), {value}, dtype=a.dtype)", {"a": (dtype, (1,))})
    for dtype in INTS:  # integer powers, negative exponents included
        yield case(rng, f"intpow/{dtype}", "out = a ** b", {"a": (dtype, (8,), {"low": -3, "high": 4}),
                                                           "b": (dtype, (8,), {"low": -3, "high": 4})})
        for e in ["-1", "0", "2", "3"]:
            yield case(rng, f"intpow/{dtype}/{e}", f"out = a ** {e}", {"a": (dtype, (8,), {"low": -3, "high": 4})})
    for dtype in COMPLEX:
        yield case(rng, f"complexpow/{dtype}/zero", "out = (a * 0) ** 0", {"a": (dtype, (3,))})


# ---- reductions -------------------------------------------------------------------------

def reductions(rng) -> Iterator[Case]:
    calls = {
        "sum": ["a.sum()", "a.sum(0)", "a.sum(-1, keepdim=True)", "a.sum((0, 2))"],
        "prod": ["a.prod()", "a.prod(1)"],
        "mean": ["a.mean()", "a.mean(1, keepdim=True)", "a.mean((0, 1))"],
        "var": ["a.var()", "a.var(1)", "a.var(0, correction=0)"],
        "std": ["a.std()", "a.std(2, keepdim=True)"],
        "max": ["a.max()", "a.max(1)", "a.max(-1, keepdim=True)"],
        "min": ["a.min()", "a.min(0)"],
        "argmax": ["a.argmax()", "a.argmax(1)", "a.argmax(2, keepdim=True)"],
        "argmin": ["a.argmin()", "a.argmin(0)"],
        "softmax": ["a.softmax(1)", "a.softmax(-1)"],
        "log_softmax": ["a.log_softmax(0)", "a.log_softmax(2)"],
    }
    for dtype, (op, exprs) in itertools.product(DTYPES, calls.items()):
        for i, expr in enumerate(exprs):
            tol = {"float16": 5e-3, "bfloat16": 3e-2}.get(dtype)
            yield case(rng, f"reduce/{op}{i}/{dtype}", f"out = {expr}", {"a": (dtype, (2, 3, 4))}, tol=tol)
            yield case(rng, f"reduce-strided/{op}{i}/{dtype}", f"out = a.permute(2, 0, 1)[:, :, 1:].{expr[2:]}",
                       {"a": (dtype, (2, 4, 3))}, tol=tol)


# ---- views, indexing and casts --------------------------------------------------------------

VIEWS = [
    "a.T", "a.transpose(0, 2)", "a.permute(2, 0, 1)", "a[1]", "a[:, 1:3]", "a[..., ::2]", "a[None, 0, :, None]",
    "a[1:, ::2, 1::3]", "a.reshape(4, 6)", "a.view(-1)", "a.flatten(1)", "a.unsqueeze(1)", "a[:, :1].squeeze(1)",
    "a[:, :1].expand(2, 5, 4)", "a.select(2, 3)", "a.permute(1, 2, 0)[1:].transpose(0, 1)", "a[-1, -2:]",
    "a.transpose(1, 2)[:, 1:3, ::2]", "a[:, 2][1:]", "a.permute(2, 1, 0).reshape(4, 6)", "a.T.contiguous()",
    "a.T.clone()", "a[:, ::2].flatten()", "a.unsqueeze(-1).expand(2, 3, 4, 2)", "a.squeeze()", "a[0, 0, 0]",
]


def views(rng) -> Iterator[Case]:
    for (i, expr), dtype in itertools.product(enumerate(VIEWS), ["float32", "int64", "bool", "bfloat16", "complex64"]):
        yield case(rng, f"view{i}/{dtype}", f"out = {expr}", {"a": (dtype, (2, 3, 4))}, layout=True)


def casts(rng) -> Iterator[Case]:
    for src, dst in itertools.product(DTYPES, DTYPES):
        yield case(rng, f"cast/{src}->{dst}", f"out = a.to(lib.{dst})", {"a": (src, (8,))})
        if src in FLOATS + COMPLEX:  # inf, -inf, nan and 0 among the values
            yield case(rng, f"cast-special/{src}->{dst}", f"out = a.to(lib.{dst})", {"a": (src, (8,), {"special": True})})
        if src in FLOATS and dst in INTS:  # beyond the integer range
            yield case(rng, f"cast-range/{src}->{dst}", f"out = (a * 1e4).to(lib.{dst})", {"a": (src, (8,))})
    for src in FLOATS:  # large magnitudes into narrow types
        yield case(rng, f"cast-big/{src}->float16", "out = (a * 30000).to(lib.float16)", {"a": (src, (6,))})


# ---- autograd ------------------------------------------------------------------------------

EXPRESSIONS = [
    "(x * y).sum(1)", "(x / (y.abs() + 1)).exp()", "x.tanh() * y.sigmoid() - x", "(x ** 2 + y ** 3).sqrt()",
    "lib.maximum(x, y) + lib.minimum(x, y.T[:3].T)", "x.log_softmax(1) * y", "(x @ y.T).relu()",
    "x.clamp(-0.5, 0.5) * y", "lib.where(x > y, x * y, x - y)", "(x.unsqueeze(0) * y.unsqueeze(1)).mean(0)",
    "x.softmax(0).log1p() + y.cos()", "(x - y).abs().pow(1.5)", "x.std(1, keepdim=True) * y", "x.var(0) + y.sum(0)",
    "x.max(1).values + y.min(1).values", "lib.cat([x, y], 0).sin()", "lib.stack([x, y], 2).prod(2)",
    "F.gelu(x) * F.gelu(y, approximate='tanh')", "x.T.reshape(12)[::2] * y.flatten()[1::2]", "x % 1.5 + y",
    "x.clamp(min=y)", "x.clamp(y - 1, y + 1)", "(x * y).sum() / x.numel()", "x[1:, ::2] * y[:-1, 1::2]",
    "F.linear(x, y, y[0])", "(x + 1j * y).abs()",
]


# Output shapes of the expressions above on (3, 4) inputs, where not (3, 4):
# the shape of the gradient fed to out.backward.
GRAD_OUT_SHAPES = {
    "(x * y).sum(1)": (3,), "lib.cat([x, y], 0).sin()": (6, 4), "x.var(0) + y.sum(0)": (4,),
    "x.max(1).values + y.min(1).values": (3,), "(x @ y.T).relu()": (3, 3), "(x * y).sum() / x.numel()": (),
    "x.T.reshape(12)[::2] * y.flatten()[1::2]": (6,), "x[1:, ::2] * y[:-1, 1::2]": (2, 2),
    "F.linear(x, y, y[0])": (3, 3),
}


def autograd(rng) -> Iterator[Case]:
    for (i, expr), seed in itertools.product(enumerate(EXPRESSIONS), range(6)):
        yield case(rng, f"grad{i}/{seed}", f"out = {expr}", {"x": ("float64", (3, 4)), "y": ("float64", (3, 4))},
                   grad=("x", "y"), gout_shape=GRAD_OUT_SHAPES.get(expr, (3, 4)), tol=1e-10)


# ---- losses ---------------------------------------------------------------------------------

def losses(rng) -> Iterator[Case]:
    reductions_ = ["'mean'", "'sum'", "'none'"]
    for red, dtype in itertools.product(reductions_, ["float32", "float64"]):
        out_shape = (4, 3) if red == "'none'" else ()
        for fn in ["mse_loss", "l1_loss", "binary_cross_entropy_with_logits"]:
            yield case(rng, f"loss/{fn}/{red}/{dtype}", f"out = F.{fn}(x, t, reduction={red})",
                       {"x": (dtype, (4, 3)), "t": (dtype, (4, 3), {"positive": fn.startswith("binary")})},
                       grad=("x",), gout_dtype=dtype, gout_shape=out_shape, tol=1e-5 if dtype == "float32" else 1e-10)
        yield case(rng, f"loss/bce-pos-weight/{red}/{dtype}",
                   f"out = F.binary_cross_entropy_with_logits(x, t.sigmoid(), pos_weight=w.abs(), reduction={red})",
                   {"x": (dtype, (4, 3)), "t": (dtype, (4, 3)), "w": (dtype, (3,))},
                   grad=("x",), gout_dtype=dtype, gout_shape=out_shape, tol=1e-5 if dtype == "float32" else 1e-10)
        for smoothing, ignore in itertools.product(["0.0", "0.2"], ["-100", "1"]):
            class_shape = (5,) if red == "'none'" else ()
            for fn in ["cross_entropy", "nll_loss"]:
                if fn == "nll_loss" and smoothing != "0.0":
                    continue
                extra = f", label_smoothing={smoothing}" if fn == "cross_entropy" else ""
                prep = "x.log_softmax(1)" if fn == "nll_loss" else "x"
                yield case(rng, f"loss/{fn}/{red}/{dtype}/ls{smoothing}/ig{ignore}",
                           f"out = F.{fn}({prep}, t, reduction={red}, ignore_index={ignore}{extra})",
                           {"x": (dtype, (5, 4)), "t": ("int64", (5,), {"low": 0, "high": 4})},
                           grad=("x",), gout_dtype=dtype, gout_shape=class_shape, tol=1e-5 if dtype == "float32" else 1e-10)
            # every target ignored: nan loss, zero gradient
            yield case(rng, f"loss/ce-all-ignored/{red}/{dtype}/ls{smoothing}/ig{ignore}",
                       f"out = F.cross_entropy(x, t * 0 + {ignore}, reduction={red}, ignore_index={ignore}, label_smoothing={smoothing})",
                       {"x": (dtype, (5, 4)), "t": ("int64", (5,), {"low": 0, "high": 4})},
                       grad=("x",), gout_dtype=dtype, gout_shape=class_shape, tol=1e-5 if dtype == "float32" else 1e-10)
            yield case(rng, f"loss/ce-unbatched-ignored/{red}/{dtype}/ls{smoothing}/ig{ignore}",
                       f"out = F.cross_entropy(x, t[0] * 0 - 100, reduction={red}, label_smoothing={smoothing})",
                       {"x": (dtype, (4,)), "t": ("int64", (5,), {"low": 0, "high": 4})},
                       grad=("x",), gout_dtype=dtype, gout_shape=(), tol=1e-5 if dtype == "float32" else 1e-10)
        for smoothing, ignore in itertools.product(["0.0", "0.3"], ["-100", "0", "-1"]):
            yield case(rng, f"loss/ce-probs/{red}/{dtype}/ls{smoothing}/ig{ignore}",
                       f"out = F.cross_entropy(x, t.softmax(1), reduction={red}, label_smoothing={smoothing}, ignore_index={ignore})",
                       {"x": (dtype, (5, 4)), "t": (dtype, (5, 4))},
                       grad=("x",), gout_dtype=dtype, gout_shape=(5,) if red == "'none'" else (),
                       tol=1e-5 if dtype == "float32" else 1e-10)
        yield case(rng, f"loss/ce-spatial/{red}/{dtype}", f"out = F.cross_entropy(x, t, reduction={red})",
                   {"x": (dtype, (2, 4, 3)), "t": ("int64", (2, 3), {"low": 0, "high": 4})},
                   grad=("x",), gout_dtype=dtype, gout_shape=(2, 3) if red == "'none'" else (),
                   tol=1e-5 if dtype == "float32" else 1e-10)


# ---- optimizers --------------------------------------------------------------------------------

OPTIMIZERS = [
    "optim.SGD([w], lr=0.1)", "optim.SGD([w], lr=0.1, momentum=0.9)", "optim.SGD([w], lr=0.1, momentum=0.9, nesterov=True)",
    "optim.SGD([w], lr=0.05, momentum=0.5, dampening=0.3)", "optim.SGD([w], lr=0.1, weight_decay=0.1)",
    "optim.SGD([w], lr=0.1, momentum=0.9, weight_decay=0.01, maximize=True)",
    "optim.Adam([w], lr=0.01)", "optim.Adam([w], lr=0.01, betas=(0.8, 0.9), eps=1e-6)",
    "optim.Adam([w], lr=0.01, weight_decay=0.1)", "optim.Adam([w], lr=0.01, amsgrad=True)",
    "optim.Adam([w], lr=0.01, maximize=True, amsgrad=True)", "optim.AdamW([w], lr=0.01)",
    "optim.AdamW([w], lr=0.01, weight_decay=0.5, amsgrad=True)", "optim.AdamW([w], lr=0.02, maximize=True)",
]


def optimizers(rng) -> Iterator[Case]:
    for (i, make), dtype, steps in itertools.product(enumerate(OPTIMIZERS), ["float32", "float64"], [1, 4]):
        code = "\n".join([
            "w.requires_grad_(True)",
            f"opt = {make}",
            f"for step in range({steps}):",
            "    opt.zero_grad()",
            "    loss = ((w * x).sum(1) - y).pow(2).mean()",
            "    loss.backward()",
            "    opt.step()",
            "    opt.param_groups[0]['lr'] *= 0.5",
            "out = w.detach()",
        ])
        yield case(rng, f"optim{i}/{dtype}/{steps}", code,
                   {"w": (dtype, (3, 4)), "x": (dtype, (3, 4)), "y": (dtype, (3,))},
                   tol=1e-5 if dtype == "float32" else 1e-11)


def rules(rng) -> Iterator[Case]:
    """Version-specific and deliberate behaviours, one case each (differences.py)."""
    yield case(rng, "rule/zero-grad-sets-none",
               "w.requires_grad_(True)\nopt = optim.SGD([w], lr=0.1)\n(w * 2).sum().backward()\n"
               "opt.zero_grad()\nout = int(w.grad is None)", {"w": ("float32", (3,))})
    yield case(rng, "rule/float64-to-float16-rounds-once", "out = (a * 0 + (1 + 2 ** -11 + 2 ** -40)).to(lib.float16)",
               {"a": ("float64", (2,))})
    for dtype in ["float32", "float64"]:
        yield case(rng, f"rule/inplace-on-graph-nonleaf/{dtype}", "y = x * 2\ny.add_(1)\nout = y", {"x": (dtype, (3,))},
                   grad=("x",), gout_dtype=dtype, gout_shape=(3,))
        yield case(rng, f"rule/floor-divide-backward/{dtype}", "out = x // 1.5", {"x": (dtype, (3,))},
                   grad=("x",), gout_dtype=dtype, gout_shape=(3,))
    yield case(rng, "rule/index-write-casts-values", "b = a.clone()\nb[[0, 2]] = v\nout = b",
               {"a": ("int32", (3,)), "v": ("float64", (2,))})
    yield case(rng, "rule/float-list-index", "out = a[[0.5]]", {"a": ("float32", (2, 3))})


# ---- advanced indexing: integer tensors, masks, lists, and writes through them ------------

# On `a` of shape (3, 4, 5): i, k index dims of size 3 and 5 (repeats and negative
# positions included), j dim 1, i2 is (2, 2), m masks dims 0-1, n dim 1, z dim 2.
INDEX_READS = [
    "a[i]", "a[:, j]", "a[..., k]", "a[i, :, k]", "a[i, j]", "a[i2]", "a[1, j]", "a[1, j, ::2]", "a[i, 1:, k]",
    "a[None, i]", "a[i, None]", "a[m]", "a[m, 1:]", "a[:, n]", "a[1:, n, 2]", "a[..., z]", "a[True]", "a[False]",
    "a[[0, 2, 2, -1]]", "a[:, [True, False, True, False]]", "a[[[0], [2]], [1, 3]]", "a[i.to(lib.int32)]",
    "a[i[0]]", "a[i2, :, i2]", "a[a != 0]", "a.permute(2, 1, 0)[k, 1]", "a[:, 1:3][:, j % 2]",
    "a[i][:, j]", "a[[]]", "a[:, lib.tensor([], dtype=lib.int64)]", "a[m.nonzero()[:, 0]]", "a.nonzero()",
]
INDEX_INPUTS = {
    "i": ("int64", (4,), {"low": -3, "high": 3}), "j": ("int64", (3,), {"low": -4, "high": 4}),
    "k": ("int64", (4,), {"low": -5, "high": 5}), "i2": ("int64", (2, 2), {"low": 0, "high": 3}),
    "m": ("bool", (3, 4)), "n": ("bool", (4,)), "z": ("bool", (5,)),
}
INDEX_WRITES = [
    "b[m] = 0", "b[i] = v", "b[:, j, 1] = v[:3, :3]", "b[m] = b[m] * 2", "b[1:, n] = 7", "b[b != 0] = v[0, 0]",
    "b.index_put_((i,), v[0], accumulate=True)", "b.index_put_((i, lib.tensor([0, 1, 1, 3])), v, accumulate=True)",
    "b[..., z] = v[0, :1]", "b[[0, 0]] = v[:1]", "b[0] = 5",
]
INDEX_GRADS = {  # expression: output shape on x of shape (3, 4)
    "x[i]": (4, 4), "x[:, j]": (3, 3), "x[m].sum(0, keepdim=True) * 2": (1,), "x[i, j[:1]] * 2": (4,), "x[i, None, 1:]": (4, 1, 3),
    "x.index_put((lib.tensor([0, 2]),), x[0, :2].unsqueeze(1) * 3)": (3, 4),
    "x.index_put((j[:2],), x[0].unsqueeze(0), accumulate=True)": (3, 4),
}


def indexing(rng) -> Iterator[Case]:
    for (n, expr), dtype in itertools.product(enumerate(INDEX_READS), ["float32", "int64", "bool", "bfloat16", "complex64"]):
        yield case(rng, f"index{n}/{dtype}", f"out = {expr}", {"a": (dtype, (3, 4, 5)), **INDEX_INPUTS})
    for (n, expr), dtype in itertools.product(enumerate(INDEX_WRITES), ["float32", "int16", "float64"]):
        yield case(rng, f"index-put{n}/{dtype}", f"b = a.clone()\n{expr}\nout = b",
                   {"a": (dtype, (3, 4, 5)), "v": (dtype, (4, 5)), **INDEX_INPUTS})
    for (n, (expr, shape)), dtype in itertools.product(enumerate(INDEX_GRADS.items()), ["float32", "float64"]):
        inputs = {"x": (dtype, (3, 4)), "i": ("int64", (4,), {"low": -3, "high": 3}),
                  "j": ("int64", (3,), {"low": -3, "high": 3}), "m": ("bool", (3, 4))}
        yield case(rng, f"index-grad{n}/{dtype}", f"out = {expr}", inputs, grad=("x",),
                   gout_dtype=dtype, gout_shape=shape)


FAMILIES = [promotion, elementwise, reductions, views, casts, autograd, losses, optimizers, rules, indexing]


def generate(seed: int = 0) -> list[Case]:
    cases: list[Case] = []
    for family in FAMILIES:
        rng = np.random.default_rng([seed, FAMILIES.index(family)])
        cases.extend(family(rng))
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return cases
