"""End-to-end tests of the reduction ops against NumPy.

sum, prod, mean, var, std, max, min, argmax, argmin, softmax and log_softmax
run on the real `tensord` binary over many dtypes, shapes (0-d, 1-d, 3-d, with
a zero-size dim), dim choices (None, one, negative, a list, an empty list),
keepdim, and non-contiguous inputs (permuted, sliced with steps, expanded).
Every result is checked for the dtype torch would give and for its values
against a NumPy reference computed in float64/complex128 (or int64).
"""
from __future__ import annotations

import itertools
import warnings
from typing import Any, Callable

import ml_dtypes
import numpy as np
import pytest

import tensord
from syncing import synced

BF16 = np.dtype(ml_dtypes.bfloat16)
FLOATS = [np.dtype(n) for n in ("float16", "float32", "float64")] + [BF16]
COMPLEX = [np.dtype("complex64"), np.dtype("complex128")]
INTS = [np.dtype(n) for n in ("uint8", "int32", "int64")]
BOOL = np.dtype("bool")

# (shape, dims to try); a dim is None, an int, or a list.
CASES: list[tuple[tuple[int, ...], list[Any]]] = [
    ((), [None, 0, -1]),
    ((5,), [None, 0, -1, [0]]),
    ((2, 3, 4), [None, 1, -1, [0, 2], [2, 0], [-1, -3, 1], []]),
    ((2, 0, 3), [None, 1, 0, [0, 2]]),
]
LAYOUTS = ("contiguous", "permuted", "stepped", "expanded")


def values(shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator, small: bool = False) -> np.ndarray:
    """Random values of `dtype`; `small` keeps integers in [-3, 3] and floats near 1 (for prod)."""
    n = int(np.prod(shape))
    if dtype == BOOL:
        return (rng.integers(0, 2, n) == 1).reshape(shape)
    if dtype.kind in "ui":
        lo, hi = (0, 4) if dtype.kind == "u" else (-3, 4)
        if not small:
            lo, hi = (0, 200) if dtype.kind == "u" else (-1000, 1000)
        return rng.integers(lo, hi, n).astype(dtype).reshape(shape)
    real = rng.uniform(0.5, 1.5, n) if small else rng.standard_normal(n) * 3
    if dtype.kind == "c":
        imag = rng.uniform(-0.5, 0.5, n) if small else rng.standard_normal(n)
        return (real + 1j * imag).astype(dtype).reshape(shape)
    return real.astype(dtype).reshape(shape)


def make_input(td, a: np.ndarray, layout: str) -> tuple[tensord.Tensor, np.ndarray]:
    """A server tensor with `a`'s values and shape laid out as `layout`, and the NumPy array it equals."""
    if layout == "contiguous" or a.ndim == 0:
        return td.from_numpy(a), a
    if layout == "permuted":  # upload the reversed-axes array, then permute back on the server
        order = tuple(reversed(range(a.ndim)))
        base = np.ascontiguousarray(a.transpose(order))
        t = td.from_numpy(base).permute(*order)
        assert a.ndim < 2 or 0 in a.shape or not t.is_contiguous()
        return t, a
    if layout == "stepped":  # every other element of a larger array, starting at 1
        big = np.zeros(tuple(2 * s + 1 for s in a.shape), dtype=a.dtype)
        index = tuple(slice(1, None, 2) for _ in a.shape)
        big[index] = a
        t = td.from_numpy(big)[index]
        assert t.shape == a.shape
        return t, a
    if layout == "expanded":  # the first row repeated with stride 0 along dim 0
        row = np.ascontiguousarray(a[:1])
        t = td.from_numpy(row).expand(*a.shape)
        return t, np.broadcast_to(row, a.shape)
    raise AssertionError(layout)


def np_axis(dim: Any, ndim: int) -> tuple[int, ...] | None:
    if dim is None or ndim == 0 or (isinstance(dim, list) and not dim):
        return None
    dims = [dim] if isinstance(dim, int) else dim
    return tuple(d % ndim for d in dims)


def wide(dtype: np.dtype) -> np.dtype:
    """The dtype a NumPy reference computes in."""
    if dtype.kind == "c":
        return np.dtype("complex128")
    if dtype.kind == "f" or dtype == BF16:
        return np.dtype("float64")
    return np.dtype("int64")


def real_of(dtype: np.dtype) -> np.dtype:
    return {np.dtype("complex64"): np.dtype("float32"), np.dtype("complex128"): np.dtype("float64")}.get(dtype, dtype)


def assert_close(actual: np.ndarray, expected: np.ndarray, dtype: np.dtype, what: str) -> None:
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    if dtype.kind in "biu":
        np.testing.assert_array_equal(actual, expected, err_msg=what)
        return
    # Results are rounded once from a double, like the reference, so these allow about one ulp.
    tol = 1e-2 if dtype == BF16 else {2: 2e-3, 4: 2e-6, 8: 1e-12}[np.dtype(real_of(dtype)).itemsize]
    np.testing.assert_allclose(
        actual.astype(wide(dtype)), expected.astype(wide(dtype)), rtol=tol, atol=tol, err_msg=what
    )


def each_case(td, dtype: np.dtype, rng: np.random.Generator, small: bool = False) -> Any:
    """(tensor, its NumPy twin, what, dim, keepdim) for every case; one upload per shape and layout."""
    for (shape, dims), layout in itertools.product(CASES, LAYOUTS):
        if layout == "expanded" and (not shape or shape[0] == 0):
            continue
        t, a = make_input(td, values(shape, dtype, rng, small), layout)
        for dim, keepdim in itertools.product(dims, (False, True)):
            yield t, a, f"{shape} {layout} dim={dim} keepdim={keepdim}", dim, keepdim


def reference(fn: Callable[..., np.ndarray], a: np.ndarray, dim: Any, keepdim: bool, **kw: Any) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return np.asarray(fn(a.astype(wide(a.dtype)), axis=np_axis(dim, a.ndim), keepdims=keepdim, **kw))


# ---- sum, prod, mean ---------------------------------------------------------------


def fold_result_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype("int64") if dtype.kind in "biu" else dtype


@pytest.mark.parametrize("dtype", [BOOL, *INTS, *FLOATS, *COMPLEX], ids=str)
@pytest.mark.parametrize("op", ["sum", "prod"])
def test_sum_and_prod_match_numpy(td, op, dtype):
    for t, a, what, dim, keepdim in each_case(td, dtype, np.random.default_rng(1), small=op == "prod"):
        out = getattr(t, op)(dim=dim, keepdim=keepdim).numpy()
        expected = reference(np.sum if op == "sum" else np.prod, a, dim, keepdim)
        assert_close(out, expected.astype(fold_result_dtype(dtype)), fold_result_dtype(dtype), f"{op} {what}")


@pytest.mark.parametrize("dtype", [*FLOATS, *COMPLEX], ids=str)
def test_mean_matches_numpy(td, dtype):
    for t, a, what, dim, keepdim in each_case(td, dtype, np.random.default_rng(2)):
        out = t.mean(dim, keepdim).numpy()
        expected = reference(np.mean, a, dim, keepdim)
        assert_close(out, expected.astype(dtype), dtype, f"mean {what}")


def test_empty_reductions_give_the_identity_or_nan(td):
    t = td.zeros(2, 0, 3)
    np.testing.assert_array_equal(t.sum(1).numpy(), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(t.prod(1).numpy(), np.ones((2, 3), np.float32))
    assert np.isnan(t.mean().item())
    assert t.sum(2).shape == (2, 0)
    assert td.zeros(0, dtype="int32").sum().numpy().dtype == np.int64


def test_integer_sums_are_int64_and_wrap_like_torch(td):
    big = np.array([2**31 - 1, 2**31 - 1], np.int32)
    assert td.from_numpy(big).sum().item() == 2 * (2**31 - 1)
    wraps = np.array([2**62, 2**62, 2**62], np.int64)
    assert td.from_numpy(wraps).sum().item() == int(np.sum(wraps))
    assert td.from_numpy(np.array([True, True, False])).sum().numpy().dtype == np.int64
    assert td.from_numpy(np.array([True, True])).prod().numpy().dtype == np.int64


def test_large_float32_sum_is_accumulated_in_double(td):
    a = np.full(1 << 21, 0.1, np.float32)
    total = td.from_numpy(a).sum().item()
    exact = float(np.sum(a.astype(np.float64)))
    assert abs(total - exact) / exact < 1e-6  # a float32 running sum is off by about 1%
    half = td.from_numpy(np.full(4096, 1.0, np.float16)).sum()
    assert half.numpy().dtype == np.float16 and half.item() == 4096.0  # float16 alone stalls at 2048


# ---- var, std ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [*FLOATS, *COMPLEX], ids=str)
@pytest.mark.parametrize("op", ["var", "std"])
def test_var_and_std_match_numpy(td, op, dtype):
    for t, a, what, dim, keepdim in each_case(td, dtype, np.random.default_rng(3)):
        for correction in (1, 0, 2):
            out = getattr(t, op)(dim, keepdim, correction=correction).numpy()
            expected = reference(np.var if op == "var" else np.std, a, dim, keepdim, ddof=correction)
            assert_close(out, expected.astype(real_of(dtype)), real_of(dtype), f"{op} {what} correction={correction}")


def test_var_with_too_few_elements_is_inf_or_nan(td):
    one = td.tensor([3.0], dtype="float64")
    assert np.isnan(one.var().item())  # 0 / 0
    assert one.var(correction=0).item() == 0.0
    two = td.tensor([1.0, 2.0], dtype="float64")
    assert two.var(correction=5).item() == np.inf  # 0.5 / max(0, 2 - 5)
    assert two.std(correction=2).item() == np.inf
    assert td.tensor([1.0, 3.0], dtype="float64").var().item() == 2.0


# ---- max, min, argmax, argmin ------------------------------------------------------


def with_ties_and_nans(shape: tuple[int, ...], dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    """Few distinct values (so ties are common) and, for floats, some NaNs."""
    n = int(np.prod(shape))
    if dtype == BOOL:
        return (rng.integers(0, 2, n) == 1).reshape(shape)
    a = rng.integers(-2, 3, n).astype(np.float64)
    if dtype.kind in "ui":
        return (a + 2).astype(dtype).reshape(shape)
    a[rng.random(n) < 0.1] = np.nan
    return a.astype(dtype).reshape(shape)


@pytest.mark.parametrize("dtype", [BOOL, np.dtype("int32"), np.dtype("int64"), *FLOATS], ids=str)
@pytest.mark.parametrize("op", ["max", "min"])
def test_max_and_min_match_numpy(td, op, dtype):
    rng = np.random.default_rng(4)
    np_pick, np_index = (np.max, np.argmax) if op == "max" else (np.min, np.argmin)

    def np_values(a: np.ndarray, **kw: Any) -> np.ndarray:
        return np.asarray(np_pick(a.astype(wide(dtype)) if dtype != BOOL else a, **kw)).astype(dtype)
    for shape, dims in CASES:
        for layout in LAYOUTS:
            if layout == "expanded" and (not shape or shape[0] == 0):
                continue
            t, a = make_input(td, with_ties_and_nans(shape, dtype, rng), layout)
            if a.size:
                whole = getattr(t, op)()
                assert whole.shape == () and whole.dtype == dtype
                assert_close(whole.numpy(), np.asarray(np_values(a)), dtype, f"{op} {shape} {layout}")
            for dim, keepdim in itertools.product([d for d in dims if isinstance(d, int)], (False, True)):
                what = f"{op} {shape} {layout} dim={dim} keepdim={keepdim}"
                if shape and shape[dim] == 0:
                    continue  # an error, tested below
                result = getattr(t, op)(dim, keepdim)
                vals, idx = result
                assert result.values is vals and result.indices is idx
                if a.ndim == 0:
                    exp_vals, exp_idx = a, np.asarray(0)
                else:
                    exp_vals = np_values(a, axis=dim, keepdims=keepdim)
                    exp_idx = np_index(a.astype(wide(dtype)), axis=dim, keepdims=keepdim)
                assert_close(vals.numpy(), np.asarray(exp_vals), dtype, what)
                assert_close(idx.numpy(), np.asarray(exp_idx), np.dtype("int64"), what)


@pytest.mark.parametrize("dtype", [np.dtype("int32"), np.dtype("int64"), *FLOATS], ids=str)
@pytest.mark.parametrize("op", ["argmax", "argmin"])
def test_argmax_and_argmin_match_numpy(td, op, dtype):
    rng = np.random.default_rng(5)
    np_index = np.argmax if op == "argmax" else np.argmin
    for shape, dims in CASES:
        for layout, keepdim in itertools.product(LAYOUTS, (False, True)):
            if layout == "expanded" and (not shape or shape[0] == 0):
                continue
            t, a = make_input(td, with_ties_and_nans(shape, dtype, rng), layout)
            wa = a.astype(wide(dtype))
            for dim in dims:
                if not (dim is None or isinstance(dim, int)):
                    continue
                if (dim is None and a.size == 0) or (dim is not None and shape and shape[dim] == 0):
                    continue  # errors, tested below
                what = f"{op} {shape} {layout} dim={dim} keepdim={keepdim}"
                out = getattr(t, op)(dim, keepdim).numpy()
                if dim is None:
                    expected = np.asarray(np_index(wa)).reshape((1,) * a.ndim if keepdim else ())
                elif a.ndim == 0:
                    expected = np.asarray(0)
                else:
                    expected = np.asarray(np_index(wa, axis=dim, keepdims=keepdim))
                assert_close(out, expected, np.dtype("int64"), what)


def test_nan_is_the_max_and_the_min_and_ties_give_the_first_index(td):
    t = td.tensor([[1.0, np.nan, 5.0, np.nan], [2.0, 7.0, 7.0, -1.0]], dtype="float32")
    vals, idx = t.max(1)
    np.testing.assert_array_equal(vals.numpy(), np.array([np.nan, 7.0], np.float32))
    assert idx.tolist() == [1, 1]
    vals, idx = t.min(1)
    np.testing.assert_array_equal(vals.numpy(), np.array([np.nan, -1.0], np.float32))
    assert idx.tolist() == [1, 3]
    assert np.isnan(t.max().item()) and np.isnan(t.min().item())
    assert t.argmax().item() == 1 and t.argmin().item() == 1
    assert t[1].argmax().item() == 1
    ints = td.tensor([3, 1, 3, 1], dtype="int64")
    assert ints.argmax().item() == 0 and ints.argmin().item() == 1
    assert ints.max(0).indices.item() == 0
    assert td.tensor([True, False, True]).max(0).indices.item() == 0


# ---- softmax, log_softmax --------------------------------------------------------------


def np_softmax(a: np.ndarray, axis: int | None, log: bool) -> np.ndarray:
    a = a.astype(np.float64)
    if axis is None:  # 0-d
        return np.zeros_like(a) if log else np.ones_like(a)
    shifted = a - np.max(a, axis=axis, keepdims=True, initial=-np.inf)  # initial: empty rows
    total = np.sum(np.exp(shifted), axis=axis, keepdims=True)
    return shifted - np.log(total) if log else np.exp(shifted) / total


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_matches_numpy(td, op, dtype):
    rng = np.random.default_rng(6)
    for (shape, dims), layout in itertools.product(CASES, LAYOUTS):
        if layout == "expanded" and (not shape or shape[0] == 0):
            continue
        t, a = make_input(td, values(shape, dtype, rng), layout)
        for dim in [d for d in dims if isinstance(d, int)]:
            out = getattr(t, op)(dim).numpy()
            with np.errstate(divide="ignore"):  # log(0) for an empty row
                expected = np_softmax(a, np_axis(dim, a.ndim)[0] if a.ndim else None, op == "log_softmax")
            assert_close(out, expected.astype(dtype), dtype, f"{op} {shape} {layout} dim={dim}")
            if op == "softmax" and a.size:
                sums = out.astype(np.float64).sum(axis=dim if a.ndim else None)
                np.testing.assert_allclose(sums, 1.0, rtol=2e-2 if dtype.itemsize == 2 else 1e-6)


def test_softmax_is_numerically_stable(td):
    t = td.tensor([[1000.0, 1000.0, -1000.0], [-np.inf, 0.0, -np.inf]], dtype="float32")
    np.testing.assert_allclose(t.softmax(1).numpy(), [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]], atol=1e-7)
    log = t.log_softmax(1).numpy()
    np.testing.assert_allclose(log[0], [-np.log(2), -np.log(2), -2000 - np.log(2)], rtol=1e-6)
    assert log[1, 1] == 0.0 and log[1, 0] == -np.inf
    with_nan = td.tensor([1.0, np.nan, 2.0], dtype="float64").softmax(0).numpy()
    assert np.isnan(with_nan).all()


# ---- bad input -------------------------------------------------------------------------


BAD = [
    ("sum dim out of range", lambda t, td: t.sum(3), ["sum", "dimension out of range", "but got 3"]),
    ("negative dim out of range", lambda t, td: t.mean(-4), ["mean", "but got -4"]),
    ("duplicate dims", lambda t, td: t.sum([0, -3]), ["sum", "dim 0 appears multiple times"]),
    ("mean of int", lambda t, td: t.long().mean(), ["mean", "could not infer output dtype", "int64"]),
    ("var of int", lambda t, td: t.int().var(), ["var", "floating point and complex", "int32"]),
    ("softmax of int", lambda t, td: t.long().softmax(0), ["softmax", "floating point", "int64"]),
    ("log_softmax of bool", lambda t, td: t.bool().log_softmax(0), ["log_softmax", "bool"]),
    ("softmax without dim", lambda t, td: td._op("softmax", t), ["softmax", "'dim'"]),
    ("max of empty", lambda t, td: td.zeros(2, 0).max(), ["max", "numel() == 0"]),
    ("argmin of empty", lambda t, td: td.zeros(0).argmin(), ["argmin", "numel() == 0"]),
    ("max over a zero-size dim", lambda t, td: td.zeros(2, 0).max(1), ["max", "dim 1", "non-zero size"]),
    ("max with a dim list", lambda t, td: td._op("max", t, dim=[0, 1]), ["max", "single int", "[0, 1]"]),
    ("max of complex", lambda t, td: t.to("complex64").max(), ["max", "complex64"]),
    ("argmax of bool", lambda t, td: t.bool().argmax(), ["argmax", "bool"]),
    ("softmax dim out of range", lambda t, td: t.softmax(-5), ["softmax", "but got -5"]),
    ("keepdim not a bool", lambda t, td: td._op("sum", t, keepdim=2), ["sum", "keepdim", "bool"]),
]


@pytest.mark.parametrize("call,words", [(c, w) for _, c, w in BAD], ids=[n for n, _, _ in BAD])
def test_bad_input_is_invalid_argument_and_the_server_keeps_serving(td, call, words):
    t = td.from_numpy(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    with pytest.raises(tensord.InvalidArgumentError) as info:
        synced(call(t, td))  # checked by the server: raised at the sync point
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value}"
    assert t.sum().item() == 276.0
