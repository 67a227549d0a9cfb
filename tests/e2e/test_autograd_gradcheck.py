"""Finite-difference gradient checks, in float64, of every differentiable op, end to end.

Each case runs a function of float64 leaves on the real `tensord` binary,
reduces its output to a scalar with fixed random weights (so every output
element matters), runs `backward()` on the server, and compares each leaf's
`.grad` with central differences (L(x + eps e_i) - L(x - eps e_i)) / 2 eps,
where L re-runs the same function on the server, under `no_grad`, on inputs
perturbed in NumPy. Inputs are small (a few to ~24 elements), kept away from
kinks (relu, abs, clamp, max/min ties) so the differences are meaningful, and
include broadcasting operands, Python-scalar operands and non-contiguous
views of leaves (and leaves uploaded in Fortran order). Other tests check
what finite differences cannot: exact grads of `prod` at zeros, casts,
dropout masks, torch's conventions at ties and kinks, accumulation,
`backward(gradient=...)` and grads of broadcast operands.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

import numpy as np
import pytest

import tensord
from tensord.nn import functional as F

RNG = np.random.default_rng(20240611)


# ---- inputs -------------------------------------------------------------------------


def normal(*shape: int, scale: float = 1.0) -> np.ndarray:
    return RNG.standard_normal(shape) * scale


def uniform(lo: float, hi: float, *shape: int) -> np.ndarray:
    return RNG.uniform(lo, hi, shape)


def away(
    *shape: int, points: Sequence[float] = (0.0,), margin: float = 0.1, lo: float = -1.5, hi: float = 1.5
) -> np.ndarray:
    """Uniform values on [lo, hi] at least `margin` from every one of `points` (kinks)."""
    out = np.empty(int(np.prod(shape)))
    for i in range(out.size):
        while True:
            v = RNG.uniform(lo, hi)
            if all(abs(v - p) >= margin for p in points):
                out[i] = v
                break
    return out.reshape(shape)


def distinct(*shape: int, gap: float = 0.25) -> np.ndarray:
    """Values at least `gap` apart from each other (no ties for max/min), in random order."""
    n = int(np.prod(shape))
    return (RNG.permutation(n) * gap - n * gap / 2 + RNG.uniform(0, 0.05, n)).reshape(shape)


def probabilities(*shape: int, dim: int = 1) -> np.ndarray:
    e = np.exp(normal(*shape))
    return e / e.sum(axis=dim, keepdims=True)


def indices(high: int, *shape: int) -> np.ndarray:
    return RNG.integers(0, high, shape).astype(np.int64)


# ---- the check ------------------------------------------------------------------------


def gradcheck(
    td: tensord.Client,
    fn: Callable[..., tensord.Tensor],
    *arrays: np.ndarray,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    wrt: Sequence[int] | None = None,
    order: str = "C",
) -> list[np.ndarray]:
    """Checks the server's gradients of `fn` at `arrays` against central differences; returns them.

    Floating-point arrays become float64 leaves that require grad (`wrt` picks
    a subset); other arrays (bool conditions, int64 targets) are uploaded as
    constants. `order="F"` uploads the leaves in Fortran order, so that the
    leaves themselves are non-contiguous on the server.
    """
    arrays = tuple(np.asarray(a) for a in arrays)
    if wrt is None:
        wrt = [i for i, a in enumerate(arrays) if a.dtype.kind == "f"]

    def laid_out(a: np.ndarray, batch_dims: int = 0) -> np.ndarray:
        """`a`, or for order="F" a copy whose trailing dims are in Fortran order."""
        if order != "F" or a.dtype.kind != "f":
            return a
        flip = (*range(batch_dims), *reversed(range(batch_dims, a.ndim)))
        return np.ascontiguousarray(a.transpose(flip)).transpose(flip)

    leaves = [
        td.tensor(laid_out(a), dtype="float64", requires_grad=True) if i in wrt else td.from_numpy(laid_out(a))
        for i, a in enumerate(arrays)
    ]
    if order == "F":  # the leaves themselves are strided on the server
        assert not any(t.is_contiguous() for t, a in zip(leaves, arrays) if a.ndim >= 2 and a.dtype.kind == "f")
    out = fn(*leaves)
    assert out.dtype == np.float64, f"output dtype {out.dtype}"
    assert out.requires_grad
    weights = np.asarray(np.random.default_rng(7).standard_normal(out.shape))
    loss = (out * td.from_numpy(weights)).sum()
    loss.backward()

    grads = []
    for i in wrt:
        a = arrays[i].astype(np.float64)
        grad = leaves[i].grad
        assert grad is not None, f"input {i} got no gradient"
        g = grad.numpy()
        assert g.shape == a.shape, f"input {i}: grad shape {g.shape}, input shape {a.shape}"
        assert g.dtype == np.float64, f"input {i}: grad dtype {g.dtype}"
        # Every perturbed input in one upload, [x + eps e_0, x - eps e_0, x + eps e_1, ...], and every
        # output in one download: each evaluation then costs a select and fn's own ops.
        n = a.size
        plus, minus = np.tile(a.reshape(-1), (n, 1)), np.tile(a.reshape(-1), (n, 1))
        plus[range(n), range(n)] += eps
        minus[range(n), range(n)] -= eps
        h = plus.diagonal() - minus.diagonal()  # the step actually taken, after rounding
        perturbed = np.stack([plus, minus], axis=1).reshape(2 * n, *a.shape)
        with tensord.no_grad():
            batch = td.from_numpy(laid_out(perturbed, batch_dims=1))
            values = list(leaves)
            results = []
            for k in range(2 * n):
                values[i] = batch[k]
                results.append(fn(*values))
            assert not results[0].requires_grad
            evaluated = td.stack(results).numpy()
        losses = (evaluated * weights).reshape(n, 2, -1).sum(-1)
        expected = ((losses[:, 0] - losses[:, 1]) / h).reshape(a.shape)
        np.testing.assert_allclose(g, expected, rtol=rtol, atol=atol, err_msg=f"gradient of input {i}")
        grads.append(g)
    return grads


def case(name: str, fn: Callable[..., Any], *arrays: np.ndarray, marks: Any = (), **check: Any) -> Any:
    return pytest.param(fn, arrays, check, id=name, marks=marks)


def test_gradcheck_catches_a_wrong_gradient(td):
    """The check itself: x * x.detach() has server grad x, but L(x) = sum(w x^2) has derivative 2 w x."""
    with pytest.raises(AssertionError, match="gradient of input 0"):
        gradcheck(td, lambda a: a * a.detach(), uniform(0.5, 1.5, 2, 3))


# ---- elementwise --------------------------------------------------------------------

# Unary ops, each on a plain [3, 4] leaf and on the transpose of a [4, 3] leaf.
UNARY = [
    ("neg", lambda a: -a, lambda s: normal(*s)),
    ("abs", lambda a: a.abs(), lambda s: away(*s)),
    ("abs_builtin", lambda a: abs(a), lambda s: away(*s)),
    ("exp", lambda a: a.exp(), lambda s: normal(*s)),
    ("log", lambda a: a.log(), lambda s: uniform(0.3, 3.0, *s)),
    ("sqrt", lambda a: a.sqrt(), lambda s: uniform(0.3, 3.0, *s)),
    ("rsqrt", lambda a: a.rsqrt(), lambda s: uniform(0.3, 3.0, *s)),
    ("sin", lambda a: a.sin(), lambda s: normal(*s, scale=2.0)),
    ("cos", lambda a: a.cos(), lambda s: normal(*s, scale=2.0)),
    ("tanh", lambda a: a.tanh(), lambda s: normal(*s)),
    ("F.tanh", lambda a: F.tanh(a), lambda s: normal(*s)),
    ("sigmoid", lambda a: a.sigmoid(), lambda s: normal(*s, scale=2.0)),
    ("F.sigmoid", lambda a: F.sigmoid(a), lambda s: normal(*s, scale=2.0)),
    ("relu", lambda a: a.relu(), lambda s: away(*s)),
    ("F.relu", lambda a: F.relu(a), lambda s: away(*s)),
    ("gelu", lambda a: a.gelu(), lambda s: normal(*s, scale=2.0)),
    ("F.gelu_none", lambda a: F.gelu(a, approximate="none"), lambda s: normal(*s, scale=2.0)),
    ("F.gelu_tanh", lambda a: F.gelu(a, approximate="tanh"), lambda s: normal(*s, scale=2.0)),
    ("log1p", lambda a: a.log1p(), lambda s: uniform(-0.7, 3.0, *s)),
    ("clamp_min", lambda a: a.clamp(min=-0.3), lambda s: away(*s, points=(-0.3,))),
    ("clamp_max", lambda a: a.clamp(max=0.4), lambda s: away(*s, points=(0.4,))),
    ("clamp_both", lambda a: a.clamp(-0.5, 0.5), lambda s: away(*s, points=(-0.5, 0.5))),
    ("clamp_int_bounds", lambda a: a.clamp(-1, 1), lambda s: away(*s, points=(-1, 1))),
    ("td.clamp", lambda a: a._client.clamp(a, min=-0.5, max=0.5), lambda s: away(*s, points=(-0.5, 0.5))),
]


def _unary_cases() -> list[Any]:
    cases = []
    for name, fn, make in UNARY:
        cases.append(case(name, fn, make((3, 4))))
        cases.append(case(f"{name}_of_T", lambda a, fn=fn: fn(a.T), make((4, 3))))
    cases.append(case("exp_of_stepped", lambda a: a[:, ::2].exp(), normal(3, 5)))
    cases.append(case("tanh_0d", lambda a: a.tanh(), normal()))
    cases.append(case("sigmoid_fortran_leaf", lambda a: a.sigmoid(), normal(3, 4), order="F"))
    return cases


@pytest.mark.parametrize("fn, arrays, check", _unary_cases())
def test_unary_gradients(td, fn, arrays, check):
    gradcheck(td, fn, *arrays, **check)


def _nonzero_pair(*shape: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) with a - b at least 0.2 from zero everywhere (b broadcast to a's shape)."""
    b = normal(*shape[1:])
    return np.broadcast_to(b, shape) + away(*shape, points=(0.0,), margin=0.2), b


def _same_shape_pair(*shape: int) -> tuple[np.ndarray, np.ndarray]:
    """`_nonzero_pair` with b repeated to a's shape (for losses, which want equal shapes)."""
    a, b = _nonzero_pair(*shape)
    return a, np.broadcast_to(b, shape).copy()


_MAX_A, _MAX_B = _nonzero_pair(3, 4)

BINARY = [
    # add
    case("add", lambda a, b: a + b, normal(3, 4), normal(3, 4)),
    case("add_bcast_row", lambda a, b: a + b, normal(3, 4), normal(4)),
    case("add_bcast_outer", lambda a, b: a + b, normal(3, 1), normal(1, 4)),
    case("add_bcast_3d", lambda a, b: a + b, normal(2, 3, 4), normal(3, 1)),
    case("add_scalar", lambda a: a + 2.5, normal(3, 4)),
    case("radd_int_scalar", lambda a: 3 + a, normal(3, 4)),
    case("add_method", lambda a, b: a.add(b), normal(2, 3), normal(2, 3)),
    case("add_T", lambda a, b: a.T + b, normal(4, 3), normal(3, 4)),
    case("add_stepped", lambda a, b: a[:, ::2] + b, normal(3, 6), normal(3)[:, None]),
    case("add_same_leaf", lambda a: a + a, normal(3, 4)),
    case("add_fortran_leaves", lambda a, b: a + b, normal(3, 4), normal(3, 4), order="F"),
    # sub
    case("sub", lambda a, b: a - b, normal(3, 4), normal(3, 4)),
    case("sub_bcast", lambda a, b: a - b, normal(4), normal(3, 4)),
    case("sub_scalar", lambda a: a - 1.5, normal(3, 4)),
    case("rsub_scalar", lambda a: 1.5 - a, normal(3, 4)),
    case("sub_T", lambda a, b: a - b.T, normal(3, 4), normal(4, 3)),
    # mul
    case("mul", lambda a, b: a * b, normal(3, 4), normal(3, 4)),
    case("mul_bcast", lambda a, b: a * b, normal(2, 1, 4), normal(3, 1)),
    case("mul_scalar", lambda a: a * 2.5, normal(3, 4)),
    case("rmul_scalar", lambda a: -0.5 * a, normal(3, 4)),
    case("mul_same_leaf", lambda a: a * a, normal(3, 4)),
    case("mul_stepped_T", lambda a, b: a[:, ::2] * b.T, normal(3, 8), normal(4, 3)),
    case("mul_0d", lambda a, b: a * b, normal(), normal(3, 2)),
    # div
    case("div", lambda a, b: a / b, normal(3, 4), away(3, 4, margin=0.4)),
    case("div_bcast", lambda a, b: a / b, normal(3, 4), away(3, 1, margin=0.4)),
    case("div_bcast_numerator", lambda a, b: a / b, normal(4), away(3, 4, margin=0.4)),
    case("div_scalar", lambda a: a / 3.0, normal(3, 4)),
    case("rdiv_scalar", lambda a: 2.0 / a, away(3, 4, margin=0.4)),
    case("div_method_T", lambda a, b: a.T.div(b), normal(4, 3), away(3, 4, margin=0.4)),
    # pow
    case("pow_tt", lambda a, b: a**b, uniform(0.5, 2.0, 3, 4), normal(3, 4)),
    case("pow_tt_bcast", lambda a, b: a**b, uniform(0.5, 2.0, 3, 4), normal(4)),
    case("pow_tt_bcast_base", lambda a, b: a.pow(b), uniform(0.5, 2.0, 4), normal(3, 4)),
    case("pow_t_int", lambda a: a**3, normal(3, 4)),
    case("pow_t_2", lambda a: a**2, normal(3, 4)),
    case("pow_t_float", lambda a: a**2.5, uniform(0.3, 2.0, 3, 4)),
    case("pow_t_negative", lambda a: a**-1.5, uniform(0.3, 2.0, 3, 4)),
    case("pow_t_zero", lambda a: a**0, normal(3, 4)),
    case("pow_t_one", lambda a: a**1, normal(3, 4)),
    case("rpow_scalar", lambda a: 2.0**a, normal(3, 4)),
    case("rpow_scalar_lt1", lambda a: 0.5**a, normal(3, 4)),
    case("pow_T", lambda a, b: a.T**b, uniform(0.5, 2.0, 4, 3), normal(3, 4)),
    # maximum / minimum (no ties)
    case("maximum", lambda a, b: a.maximum(b), *_nonzero_pair(3, 4)),
    case("minimum", lambda a, b: a.minimum(b), *_nonzero_pair(3, 4)),
    case("maximum_bcast", lambda a, b: a._client.maximum(a, b), _MAX_A, _MAX_B),
    case("minimum_bcast", lambda a, b: a._client.minimum(b, a), _MAX_A, _MAX_B),
    case("maximum_scalar", lambda a: a.maximum(0.25), away(3, 4, points=(0.25,))),
    case("minimum_scalar", lambda a: a.minimum(-0.25), away(3, 4, points=(-0.25,))),
    case("maximum_T", lambda a, b: a.T.maximum(b), _MAX_A.T.copy(), _MAX_B),
    # where
    case(
        "where",
        lambda c, a, b: a._client.where(c, a, b),
        np.array([[True, False, True, False], [False, False, True, True], [True, True, False, False]]),
        normal(3, 4),
        normal(3, 4),
    ),
    case(
        "where_bcast",
        lambda c, a, b: a._client.where(c, a, b),
        np.array([[True], [False], [True]]),
        normal(3, 4),
        normal(4),
    ),
    case("where_scalar_other", lambda c, a: a.where(c, 0.5), np.array([True, False, True, True]), normal(3, 4)),
    case("where_scalar_input", lambda c, b: b._client.where(c, 1.5, b), np.array([[True], [False]]), normal(2, 3)),
    case("where_T", lambda c, a, b: a._client.where(c, a.T, b), np.eye(3, dtype=bool), normal(3, 3), normal(3, 3)),
]


@pytest.mark.parametrize("fn, arrays, check", BINARY)
def test_binary_gradients(td, fn, arrays, check):
    gradcheck(td, fn, *arrays, **check)


def test_pow_at_zero_base_has_finite_gradients(td):
    """0 ** b for b > 1: d/da = b * 0 ** (b - 1) = 0 and d/db = 0 ** b * log(0) taken as 0, as in torch."""
    base = np.array([0.0, 0.5, 2.0])
    exponent = np.array([1.5, 2.0, 3.0])
    a = td.tensor(base, dtype="float64", requires_grad=True)
    b = td.tensor(exponent, dtype="float64", requires_grad=True)
    (a**b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), exponent * base ** (exponent - 1), rtol=1e-12)
    expected_b = np.array([0.0, 0.5**2.0 * np.log(0.5), 2.0**3.0 * np.log(2.0)])
    np.testing.assert_allclose(b.grad.numpy(), expected_b, rtol=1e-12)
    gradcheck(td, lambda x, y: x**y, base, exponent, wrt=[1])  # FD in the exponent is fine at 0


# ---- matmul ---------------------------------------------------------------------------

MATMUL = [
    case("dot_1d_1d", lambda a, b: a @ b, normal(4), normal(4)),
    case("mv_2d_1d", lambda a, b: a @ b, normal(3, 4), normal(4)),
    case("vm_1d_2d", lambda a, b: a @ b, normal(3), normal(3, 4)),
    case("mm_2d_2d", lambda a, b: a @ b, normal(3, 4), normal(4, 2)),
    case("bmm_3d_3d", lambda a, b: a @ b, normal(2, 3, 4), normal(2, 4, 2)),
    case("batched_bcast", lambda a, b: a @ b, normal(2, 1, 3, 4), normal(5, 4, 2), atol=2e-5),
    case("batched_1d_right", lambda a, b: a @ b, normal(2, 3, 4), normal(4)),
    case("batched_1d_left", lambda a, b: a.matmul(b), normal(3), normal(2, 3, 4)),
    case("batched_2d_right", lambda a, b: a @ b, normal(2, 3, 4), normal(4, 2)),
    case("mm_T", lambda a, b: a.T @ b, normal(4, 3), normal(4, 2)),
    case("mm_both_T", lambda a, b: a.T @ b.T, normal(4, 3), normal(2, 4)),
    case("mm_stepped", lambda a, b: a[:, ::2] @ b, normal(3, 8), normal(4, 2)),
    case("mm_same_leaf", lambda a: a @ a, normal(3, 3)),
    case("td.matmul", lambda a, b: a._client.matmul(a, b), normal(3, 4), normal(4, 2)),
    case("mm", lambda a, b: a.mm(b), normal(3, 4), normal(4, 2)),
    case("mm_fortran_leaves", lambda a, b: a.mm(b), normal(3, 4), normal(4, 2), order="F"),
    case("bmm", lambda a, b: a.bmm(b), normal(2, 3, 4), normal(2, 4, 2)),
    case("bmm_permuted", lambda a, b: a.permute(1, 0, 2).bmm(b), normal(3, 2, 4), normal(2, 4, 2)),
]


@pytest.mark.parametrize("fn, arrays, check", MATMUL)
def test_matmul_gradients(td, fn, arrays, check):
    gradcheck(td, fn, *arrays, **check)


# ---- reductions -----------------------------------------------------------------------

REDUCTIONS = [
    case("sum_all", lambda a: a.sum(), normal(3, 4)),
    case("sum_dim", lambda a: a.sum(1), normal(3, 4)),
    case("sum_dim_keepdim", lambda a: a.sum(0, keepdim=True), normal(3, 4)),
    case("sum_dims", lambda a: a.sum([0, 2]), normal(2, 3, 4)),
    case("sum_dims_keepdim", lambda a: a.sum([-1, 0], keepdim=True), normal(2, 3, 4)),
    case("sum_empty_dims", lambda a: a.sum([]), normal(2, 3)),
    case("sum_T", lambda a: a.T.sum(0), normal(3, 4)),
    case("sum_expanded", lambda a: a.expand(3, 4).sum(1), normal(3, 1)),
    case("mean_all", lambda a: a.mean(), normal(3, 4)),
    case("mean_dim", lambda a: a.mean(-1), normal(3, 4)),
    case("mean_dim_keepdim", lambda a: a.mean(1, keepdim=True), normal(2, 3, 4)),
    case("mean_dims", lambda a: a.mean([0, 2]), normal(2, 3, 4)),
    case("mean_dims_keepdim", lambda a: a.mean([0, 1], keepdim=True), normal(2, 3, 4)),
    case("mean_stepped", lambda a: a[:, ::2].mean(0), normal(3, 6)),
    case("prod_all", lambda a: a.prod(), uniform(0.5, 1.5, 3, 4)),
    case("prod_dim", lambda a: a.prod(1), normal(3, 4)),
    case("prod_dim_keepdim", lambda a: a.prod(0, keepdim=True), normal(3, 4)),
    case("prod_dims", lambda a: a.prod([0, 2]), normal(2, 3, 2)),
    case("prod_one_zero", lambda a: a.prod(1), np.array([[2.0, 0.0, 3.0], [1.5, -2.0, 0.5]])),
    case("prod_two_zeros", lambda a: a.prod(1), np.array([[0.0, 0.0, 3.0], [0.0, 4.0, 0.5], [1.5, -2.0, 0.5]])),
    case("prod_all_one_zero", lambda a: a.prod(), np.array([[2.0, 0.0], [3.0, -1.5]])),
    case("prod_all_two_zeros", lambda a: a.prod(), np.array([[2.0, 0.0], [0.0, -1.5]])),
    case("prod_T", lambda a: a.T.prod(1), normal(3, 4)),
    case("max_all", lambda a: a.max(), distinct(3, 4)),
    case("min_all", lambda a: a.min(), distinct(3, 4)),
    case("max_dim", lambda a: a.max(1).values, distinct(3, 4)),
    case("max_dim_keepdim", lambda a: a.max(0, keepdim=True).values, distinct(3, 4)),
    case("min_dim", lambda a: a.min(-1)[0], distinct(2, 3, 4)),
    case("min_dim_keepdim", lambda a: a.min(1, keepdim=True).values, distinct(2, 3, 4)),
    case("max_dim_T", lambda a: a.T.max(0).values, distinct(3, 4)),
    case("var_all", lambda a: a.var(), normal(3, 4)),
    case("var_dim", lambda a: a.var(1), normal(3, 4)),
    case("var_dim_keepdim", lambda a: a.var(0, keepdim=True), normal(3, 4)),
    case("var_dims", lambda a: a.var([0, 2]), normal(2, 3, 4)),
    case("var_correction0", lambda a: a.var(1, correction=0), normal(3, 4)),
    case("var_correction2", lambda a: a.var(-1, correction=2), normal(3, 5)),
    case("var_T", lambda a: a.T.var(0), normal(3, 4)),
    case("std_all", lambda a: a.std(), normal(3, 4)),
    case("std_dim", lambda a: a.std(1), normal(3, 4)),
    case("std_dim_keepdim", lambda a: a.std(0, keepdim=True), normal(3, 4)),
    case("std_dims", lambda a: a.std([0, 2], keepdim=True), normal(2, 3, 4)),
    case("std_correction0", lambda a: a.std(1, correction=0), normal(3, 4)),
    case("std_correction2", lambda a: a.std(None, correction=2), normal(3, 4)),
    case("std_stepped", lambda a: a[:, ::2].std(1), normal(3, 8)),
    case("softmax_dim0", lambda a: a.softmax(0), normal(3, 4)),
    case("softmax_dim1", lambda a: a.softmax(1), normal(3, 4)),
    case("softmax_dim-1", lambda a: a.softmax(-1), normal(2, 3, 4)),
    case("softmax_1d", lambda a: a.softmax(0), normal(5)),
    case("softmax_T", lambda a: a.T.softmax(1), normal(4, 3)),
    case("F.softmax", lambda a: F.softmax(a, dim=1), normal(3, 4)),
    case("log_softmax_dim0", lambda a: a.log_softmax(0), normal(3, 4)),
    case("log_softmax_dim1", lambda a: a.log_softmax(1), normal(3, 4)),
    case("log_softmax_dim-1", lambda a: a.log_softmax(-1), normal(2, 3, 4)),
    case("log_softmax_T", lambda a: a.T.log_softmax(-1), normal(4, 3)),
    case("F.log_softmax", lambda a: F.log_softmax(a, dim=0), normal(3, 4)),
]


@pytest.mark.parametrize("fn, arrays, check", REDUCTIONS)
def test_reduction_gradients(td, fn, arrays, check):
    gradcheck(td, fn, *arrays, **check)


def _leave_one_out_products(a: np.ndarray, axis: int | None) -> np.ndarray:
    """d prod / d a_i: the product of the other elements of a_i's slice (exact, zeros included)."""
    moved = a.reshape(-1, 1) if axis is None else np.moveaxis(a, axis, -1)
    out = np.empty_like(moved)
    for k in range(moved.shape[-1] if axis is not None else moved.shape[0]):
        if axis is None:
            out[k] = np.prod(np.delete(moved[:, 0], k))
        else:
            out[..., k] = np.prod(np.delete(moved, k, axis=-1), axis=-1)
    return out.reshape(a.shape) if axis is None else np.moveaxis(out, -1, axis)


@pytest.mark.parametrize(
    "values, dim",
    [
        ([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0], [1.0, 2.0, 4.0]], 1),
        ([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0], [1.0, 2.0, 4.0]], 0),
        ([[2.0, 0.0], [3.0, 4.0]], None),
        ([[2.0, 0.0], [0.0, 4.0]], None),
    ],
    ids=["dim1", "dim0", "all_one_zero", "all_two_zeros"],
)
def test_prod_gradient_at_zeros_is_exact(td, values, dim):
    a = np.array(values)
    x = td.tensor(a, dtype="float64", requires_grad=True)
    x.prod(dim).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), _leave_one_out_products(a, dim))


# ---- shape ops ------------------------------------------------------------------------

SHAPE_OPS = [
    case("transpose", lambda a: a.transpose(0, 1), normal(3, 4)),
    case("transpose_3d", lambda a: a.transpose(0, 2), normal(2, 3, 4)),
    case("T", lambda a: a.T, normal(3, 4)),
    case("permute", lambda a: a.permute(2, 0, 1), normal(2, 3, 4)),
    case("view", lambda a: a.view(4, 3), normal(3, 4)),
    case("view_minus1", lambda a: a.view(-1), normal(2, 3, 2)),
    case("reshape", lambda a: a.reshape(2, 6), normal(3, 4)),
    case("reshape_of_T_copies", lambda a: a.T.reshape(-1), normal(3, 4)),
    case("flatten", lambda a: a.flatten(), normal(2, 3, 2)),
    case("flatten_range", lambda a: a.flatten(1, 2), normal(2, 3, 2)),
    case("F.flatten", lambda a: F.flatten(a, 0, 1), normal(2, 3, 2)),
    case("squeeze_all", lambda a: a.squeeze(), normal(3, 1, 4, 1)),
    case("squeeze_dim", lambda a: a.squeeze(1), normal(3, 1, 4, 1)),
    case("squeeze_dims", lambda a: a.squeeze((1, 3)), normal(3, 1, 4, 1)),
    case("unsqueeze", lambda a: a.unsqueeze(1), normal(3, 4)),
    case("unsqueeze_last", lambda a: a.unsqueeze(-1), normal(3, 4)),
    case("expand", lambda a: a.expand(3, 4), normal(3, 1)),
    case("expand_new_dims", lambda a: a.expand(2, 3, 4), normal(4)),
    case("expand_minus1", lambda a: a.expand(-1, 4) * 1.0, normal(3, 1)),
    case("index_slices", lambda a: a[1:, ::2], normal(3, 5)),
    case("index_int", lambda a: a[0], normal(3, 4)),
    case("index_negative_int", lambda a: a[-1, 1:3], normal(3, 4)),
    case("index_none", lambda a: a[..., None], normal(3, 4)),
    case("index_mixed", lambda a: a[None, 1, ..., ::3], normal(3, 2, 7)),
    case("index_twice_same_leaf", lambda a: a[0] * a[1], normal(2, 4)),
    case("index_int_tensor_repeats", lambda a, i: a[i], normal(3, 4), np.array([2, 0, 2, -1])),
    case("index_int_tensor_2d", lambda a, i: a[:, i], normal(3, 4), np.array([[0, 3], [3, 3]])),
    case("index_two_tensors_apart", lambda a, i, k: a[i, :, k], normal(3, 2, 4), indices(3, 5), indices(4, 5)),
    case("index_mask", lambda a, m: a[m], normal(3, 4), RNG.random((3, 4)) > 0.4),
    case("index_mask_then_slice", lambda a, m: a[1:, m], normal(3, 4), np.array([True, False, True, True])),
    case("index_list", lambda a: a[[1, 1, 0]] * a[0, [2, 2, 3, 3]], normal(2, 4)),
    case("index_put_values", lambda a, v: a.index_put((a._client.tensor([0, 2]),), v), normal(3, 4), normal(2, 1)),
    case("index_put_accumulate", lambda a, v: a.index_put((a._client.tensor([1, 1]),), v, accumulate=True),
         normal(3, 4), normal(4)),
    case("select", lambda a: a.select(1, 2), normal(3, 4)),
    case("select_negative", lambda a: a.select(0, -1), normal(3, 4)),
    case("iter", lambda a: list(a)[1], normal(3, 4)),
    case("contiguous", lambda a: a.T.contiguous(), normal(3, 4)),
    case("clone", lambda a: a[:, ::2].clone(), normal(3, 4)),
    case("to_float64", lambda a: a.to("float64"), normal(3, 4)),
    case("double", lambda a: a.T.double(), normal(3, 4)),
    case("cat_dim0", lambda a, b: a._client.cat([a, b], 0), normal(2, 3), normal(3, 3)),
    case("cat_dim1", lambda a, b: a._client.cat([a, b], 1), normal(2, 3), normal(2, 1)),
    case("cat_three_T", lambda a, b: a._client.cat([a, b.T, a], -1), normal(2, 3), normal(2, 2)),
    case("stack_dim0", lambda a, b: a._client.stack([a, b]), normal(2, 3), normal(2, 3)),
    case("stack_dim1", lambda a, b: a._client.stack([a, b], 1), normal(2, 3), normal(2, 3)),
    case("stack_dim-1_T", lambda a, b: a._client.stack([a.T, b], -1), normal(3, 2), normal(2, 3)),
    case("chain", lambda a: a.T.reshape(2, 6)[:, 1:5].unsqueeze(0).expand(2, 2, 4).permute(2, 1, 0), normal(3, 4)),
]


@pytest.mark.parametrize("fn, arrays, check", SHAPE_OPS)
def test_shape_op_gradients(td, fn, arrays, check):
    gradcheck(td, fn, *arrays, **check)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_cast_gradients_return_in_the_leaf_dtype(td, dtype):
    """Casts are not float64-exact, so FD does not apply: d(x.to(t).to(float64) . w)/dx = w rounded to t."""
    import ml_dtypes

    narrow = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    a = normal(3, 4)
    w = normal(3, 4)
    x = td.tensor(a, dtype="float64", requires_grad=True)
    y = x.T.to(dtype)
    assert y.dtype == narrow and y.requires_grad
    (y.to("float64") * td.from_numpy(w.T.copy())).sum().backward()
    grad = x.grad.numpy()
    assert grad.dtype == np.float64 and grad.shape == a.shape
    np.testing.assert_array_equal(grad, w.astype(narrow).astype(np.float64))


def test_cast_to_float32_then_float32_loss(td):
    """A float32 loss of a float64 leaf: the grad comes back as float64, equal to the float32 one."""
    a = normal(2, 3)
    w = normal(2, 3).astype(np.float32)
    x = td.tensor(a, dtype="float64", requires_grad=True)
    (x.float() * td.from_numpy(w)).sum().backward()
    grad = x.grad.numpy()
    assert grad.dtype == np.float64
    np.testing.assert_array_equal(grad, w.astype(np.float64))


# ---- nn.functional --------------------------------------------------------------------

_CLASSES = np.array([1, 0, 4, 2], dtype=np.int64)
_IGNORED = np.array([1, -100, 4, 2], dtype=np.int64)
_IGNORED_3 = np.array([3, 0, 3, 2], dtype=np.int64)
_L1_X, _L1_Y = _same_shape_pair(3, 4)
BCE = F.binary_cross_entropy_with_logits
CE = F.cross_entropy

FUNCTIONAL = [
    case("linear", lambda x, w, b: F.linear(x, w, b), normal(4, 3), normal(5, 3), normal(5)),
    case("linear_no_bias", lambda x, w: F.linear(x, w), normal(4, 3), normal(5, 3)),
    case("linear_1d", lambda x, w, b: F.linear(x, w, b), normal(3), normal(5, 3), normal(5)),
    case("linear_1d_no_bias", lambda x, w: F.linear(x, w), normal(3), normal(2, 3)),
    case("linear_3d", lambda x, w, b: F.linear(x, w, b), normal(2, 3, 4), normal(2, 4), normal(2)),
    case("linear_weight_T", lambda x, w, b: F.linear(x, w.T, b), normal(4, 3), normal(3, 5), normal(5)),
    case("linear_input_T", lambda x, w: F.linear(x.T, w), normal(3, 4), normal(2, 3)),
    case("mse_mean", F.mse_loss, normal(3, 4), normal(3, 4)),
    case("mse_sum", partial(F.mse_loss, reduction="sum"), normal(3, 4), normal(3, 4)),
    case("mse_none", partial(F.mse_loss, reduction="none"), normal(3, 4), normal(3, 4)),
    case("mse_T", lambda x, y: F.mse_loss(x.T, y), normal(4, 3), normal(3, 4)),
    case("l1_mean", F.l1_loss, *_same_shape_pair(3, 4)),
    case("l1_sum", partial(F.l1_loss, reduction="sum"), *_same_shape_pair(3, 4)),
    case("l1_none", partial(F.l1_loss, reduction="none"), *_same_shape_pair(3, 4)),
    case("l1_T", lambda x, y: F.l1_loss(x.T, y), _L1_X.T.copy(), _L1_Y),
    case("ce_mean", F.cross_entropy, normal(4, 5), _CLASSES),
    case("ce_sum", partial(CE, reduction="sum"), normal(4, 5), _CLASSES),
    case("ce_none", partial(CE, reduction="none"), normal(4, 5), _CLASSES),
    case("ce_ignore_default_mean", F.cross_entropy, normal(4, 5), _IGNORED),
    case("ce_ignore_default_none", partial(CE, reduction="none"), normal(4, 5), _IGNORED),
    case("ce_ignore_index_3_sum", partial(CE, ignore_index=3, reduction="sum"), normal(4, 5), _IGNORED_3),
    case("ce_ignore_index_3_mean", partial(CE, ignore_index=3), normal(4, 5), _IGNORED_3),
    case("ce_smoothing_mean", partial(CE, label_smoothing=0.1), normal(4, 5), _CLASSES),
    case("ce_smoothing_none", partial(CE, reduction="none", label_smoothing=0.2), normal(4, 5), _CLASSES),
    case("ce_smoothing_ignore", partial(CE, label_smoothing=0.1), normal(4, 5), _IGNORED),
    case("ce_probs_mean", F.cross_entropy, normal(4, 5), probabilities(4, 5)),
    case("ce_probs_sum", partial(CE, reduction="sum"), normal(4, 5), probabilities(4, 5)),
    case("ce_probs_none", partial(CE, reduction="none"), normal(4, 5), probabilities(4, 5)),
    case("ce_probs_smoothing", partial(CE, label_smoothing=0.3), normal(4, 5), probabilities(4, 5)),
    case("ce_NCd_mean", F.cross_entropy, normal(2, 3, 4), indices(3, 2, 4)),
    case("ce_NCd_none", partial(CE, reduction="none"), normal(2, 3, 4), indices(3, 2, 4)),
    case("ce_NCd_ignore", F.cross_entropy, normal(2, 3, 2), np.array([[0, -100], [2, 1]])),
    case("ce_NCd_probs", F.cross_entropy, normal(2, 3, 2), probabilities(2, 3, 2)),
    case("ce_1d", F.cross_entropy, normal(5), np.array(3, dtype=np.int64)),
    case("ce_T", lambda x, t: F.cross_entropy(x.T, t), normal(5, 4), _CLASSES),
    case("nll_mean", F.nll_loss, normal(4, 5), _CLASSES),
    case("nll_sum", partial(F.nll_loss, reduction="sum"), normal(4, 5), _CLASSES),
    case("nll_none", partial(F.nll_loss, reduction="none"), normal(4, 5), _CLASSES),
    case("nll_ignore_mean", F.nll_loss, normal(4, 5), _IGNORED),
    case("nll_ignore_index_3", partial(F.nll_loss, ignore_index=3, reduction="none"), normal(4, 5), _IGNORED_3),
    case("nll_NCd", F.nll_loss, normal(2, 3, 4), indices(3, 2, 4)),
    case("nll_of_log_softmax", lambda x, t: F.nll_loss(x.log_softmax(1), t), normal(4, 5), _CLASSES),
    case("bce_mean", BCE, normal(3, 4, scale=2), uniform(0, 1, 3, 4)),
    case("bce_sum", partial(BCE, reduction="sum"), normal(3, 4, scale=2), uniform(0, 1, 3, 4)),
    case("bce_none", partial(BCE, reduction="none"), normal(3, 4, scale=2), uniform(0, 1, 3, 4)),
    case(
        "bce_pos_weight_mean",
        lambda x, y, p: BCE(x, y, pos_weight=p),
        normal(3, 4, scale=2), uniform(0, 1, 3, 4), uniform(0.5, 2.0, 4), wrt=[0, 1],
    ),
    case(
        "bce_pos_weight_none",
        lambda x, y, p: BCE(x, y, reduction="none", pos_weight=p),
        normal(3, 4, scale=2), uniform(0, 1, 3, 4), uniform(0.5, 2.0, 4), wrt=[0, 1],
    ),
    case(
        "bce_pos_weight_grad",
        lambda x, y, p: BCE(x, y, pos_weight=p),
        normal(3, 4, scale=2), uniform(0, 1, 3, 4), uniform(0.5, 2.0, 4),
    ),
    case("bce_T", lambda x, y: BCE(x.T, y), normal(4, 3, scale=2), uniform(0, 1, 3, 4)),
    case("dropout_eval", lambda x: F.dropout(x, 0.5, training=False), normal(3, 4)),
    case("dropout_p0", lambda x: F.dropout(x, 0.0, training=True), normal(3, 4)),
]


@pytest.mark.parametrize("fn, arrays, check", FUNCTIONAL)
def test_functional_gradients(td, fn, arrays, check):
    gradcheck(td, fn, *arrays, **check)


@pytest.mark.parametrize("p", [0.3, 0.5, 0.9])  # 1/(1-0.3) is not exact in float32: the scale keeps float64
def test_dropout_gradient_is_the_scaled_mask(td, p):
    """d sum(w * dropout(x)) / dx = w * (out != 0) / (1 - p), for the mask this call drew."""
    a = away(8, 25, points=(0.0,), margin=0.1)
    w = normal(8, 25)
    x = td.tensor(a, dtype="float64", requires_grad=True)
    out = F.dropout(x, p, training=True)
    kept = out.numpy() != 0
    assert 0 < kept.sum() < kept.size
    np.testing.assert_allclose(out.numpy(), np.where(kept, a / (1 - p), 0.0), rtol=1e-14)
    (out * td.from_numpy(w)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), kept * w / (1 - p), rtol=1e-14)
    y = td.tensor(a, dtype="float64", requires_grad=True)
    F.dropout(y.T, p, training=True).sum().backward()  # a non-contiguous input: grad is 0 or 1/(1-p)
    g = y.grad.numpy()
    assert np.all((g == 0) | np.isclose(g, 1 / (1 - p), rtol=1e-14))


def test_dropout_p1_gives_zero_gradient(td):
    x = td.tensor(normal(3, 4), dtype="float64", requires_grad=True)
    out = F.dropout(x, 1.0, training=True)
    out.sum().backward()
    np.testing.assert_array_equal(out.numpy(), np.zeros((3, 4)))
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((3, 4)))


# ---- composite ------------------------------------------------------------------------


def _mlp_loss(x, w1, b1, w2, b2, target):
    hidden = F.gelu(F.linear(x, w1, b1), approximate="tanh").tanh()
    return F.cross_entropy(F.linear(hidden, w2, b2), target)


def test_mlp_loss_gradients_for_all_weights(td):
    gradcheck(
        td, _mlp_loss, normal(4, 3), normal(5, 3), normal(5), normal(3, 5), normal(3), np.array([0, 2, 1, 2])
    )


def test_mlp_with_mse_and_shared_weight(td):
    """The same weight used twice (a tied layer) gets the sum of both contributions."""

    def loss(x, w, b, y):
        h = F.linear(x, w, b).sigmoid()
        return F.mse_loss(F.linear(h, w.T), y)  # w [4, 3]: x [5, 3] -> h [5, 4] -> [5, 3]

    gradcheck(td, loss, normal(5, 3), normal(4, 3), normal(4), normal(5, 3))


# ---- autograd semantics ---------------------------------------------------------------


def test_gradients_accumulate_across_backward_calls(td):
    a, w = normal(3, 4), normal(3, 4)
    x = td.tensor(a, dtype="float64", requires_grad=True)
    weights = td.from_numpy(w)
    (x.sin() * weights).sum().backward()
    first = x.grad.numpy()
    np.testing.assert_allclose(first, np.cos(a) * w, rtol=1e-12)
    (x.sin() * weights).sum().backward()  # a second graph: adds into the same .grad
    np.testing.assert_allclose(x.grad.numpy(), 2 * first, rtol=1e-12)


def test_gradients_accumulate_with_retain_graph(td):
    a = normal(2, 3)
    x = td.tensor(a, dtype="float64", requires_grad=True)
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * a, rtol=1e-12)


def test_backward_with_gradient_on_a_non_scalar(td):
    a, b, g = normal(3, 4), normal(4, 2), normal(3, 2)
    x = td.tensor(a, dtype="float64", requires_grad=True)
    y = td.tensor(b, dtype="float64", requires_grad=True)
    out = x @ y
    out.backward(gradient=td.from_numpy(g))
    np.testing.assert_allclose(x.grad.numpy(), g @ b.T, rtol=1e-12)
    np.testing.assert_allclose(y.grad.numpy(), a.T @ g, rtol=1e-12)


def test_backward_of_a_non_scalar_needs_a_gradient(td):
    x = td.tensor(normal(3), dtype="float64", requires_grad=True)
    with pytest.raises(tensord.Error):
        (x * 2).backward()
        td.synchronize()


def test_broadcast_operands_get_grads_of_their_own_shapes(td):
    a, b, w = normal(3, 1), normal(1, 4), normal(3, 4)
    x = td.tensor(a, dtype="float64", requires_grad=True)
    y = td.tensor(b, dtype="float64", requires_grad=True)
    ((x + y) * td.from_numpy(w)).sum().backward()
    gx, gy = x.grad.numpy(), y.grad.numpy()
    assert gx.shape == (3, 1) and gy.shape == (1, 4)
    np.testing.assert_allclose(gx, w.sum(1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(gy, w.sum(0, keepdims=True), rtol=1e-12)


# Where finite differences do not apply (ties, kinks) the gradient follows torch's conventions.
@pytest.mark.parametrize(
    "fn, inputs, expected",
    [
        (lambda a: a.max(), [[1.0, 3.0, 3.0, 2.0]], [[0.0, 0.5, 0.5, 0.0]]),  # full max splits ties evenly
        (lambda a: a.min(), [[1.0, -3.0, -3.0, -3.0]], [[0.0, 1 / 3, 1 / 3, 1 / 3]]),
        (lambda a: a.max(0).values, [[1.0, 3.0, 3.0, 2.0]], [[0.0, 1.0, 0.0, 0.0]]),  # max(dim): first index
        (lambda a: a.min(0).values, [[-3.0, 1.0, -3.0]], [[1.0, 0.0, 0.0]]),
        (lambda a, b: a.maximum(b), [[1.0, 2.0], [1.0, 3.0]], [[0.5, 0.0], [0.5, 1.0]]),  # ties split
        (lambda a, b: a.minimum(b), [[1.0, 2.0], [1.0, 3.0]], [[0.5, 1.0], [0.5, 0.0]]),
        (lambda a: a.abs(), [[0.0, -1.0]], [[0.0, -1.0]]),
        (lambda a: a.relu(), [[0.0, -1.0, 2.0]], [[0.0, 0.0, 1.0]]),
        (lambda a: a.clamp(-0.5, 0.5), [[-0.5, 0.5, 0.7]], [[1.0, 1.0, 0.0]]),  # bounds are inside
        (lambda a, b: F.l1_loss(a, b, reduction="none"), [[1.0, 2.0], [1.0, 3.0]], [[0.0, -1.0], [0.0, 1.0]]),
        (lambda a: a.std(), [[2.0, 2.0, 2.0]], [[0.0, 0.0, 0.0]]),  # zero std: 0, not NaN
    ],
    ids=["max_all", "min_all", "max_dim", "min_dim", "maximum", "minimum", "abs", "relu", "clamp", "l1", "std"],
)
def test_gradient_at_ties_and_kinks_follows_torch(td, fn, inputs, expected):
    leaves = [td.tensor(np.array(v), dtype="float64", requires_grad=True) for v in inputs]
    fn(*leaves).sum().backward()
    for i, (leaf, want) in enumerate(zip(leaves, expected)):
        np.testing.assert_allclose(leaf.grad.numpy(), np.array(want), rtol=1e-15, err_msg=f"input {i}")


def test_leaf_without_requires_grad_gets_no_grad(td):
    x = td.tensor(normal(3), dtype="float64", requires_grad=True)
    c = td.from_numpy(normal(3))
    (x * c).sum().backward()
    assert x.grad is not None
    assert c.grad is None
