"""Elementwise ops against NumPy: values, result dtypes (PyTorch's promotion), broadcasting,
non-contiguous operands, Python scalars on either side, and clear errors for bad input."""
from __future__ import annotations

import numpy as np
import pytest

import tensord
from syncing import synced

RNG = np.random.default_rng(7)


def sample(dtype: str, shape: tuple[int, ...], positive: bool = False) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return RNG.random(shape) > 0.5
    if dt.kind in "iu":
        low = 1 if positive else (-5 if dt.kind == "i" else 0)
        return RNG.integers(low, 6, size=shape).astype(dt)
    if dt.kind == "c":
        return (RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)).astype(dt)
    values = RNG.standard_normal(shape)
    return (np.abs(values) + 0.1 if positive else values).astype(dt)


def close(actual: np.ndarray, expected: np.ndarray, dtype: np.dtype) -> None:
    tol = {np.float16: 2e-3, np.float32: 2e-6, np.complex64: 2e-6}.get(np.dtype(dtype).type, 1e-12)
    if np.dtype(dtype).kind in "biu":
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "maximum": np.maximum,
    "minimum": np.minimum,
}


@pytest.mark.parametrize("op", sorted(BINARY))
@pytest.mark.parametrize("dtype", ["int32", "int64", "float16", "float32", "float64"])
def test_binary_ops_match_numpy_with_broadcasting(td, op, dtype):
    a, b = sample(dtype, (4, 1, 3)), sample(dtype, (5, 3))
    out = getattr(td.from_numpy(a), op)(td.from_numpy(b))
    assert out.shape == (4, 5, 3) and out.dtype == np.dtype(dtype)
    close(out.numpy(), BINARY[op](a, b).astype(dtype), dtype)


def test_operators_on_non_contiguous_operands(td):
    a = sample("float64", (6, 8))
    ta = td.from_numpy(a)
    b = sample("float64", (4, 3))
    tb = td.from_numpy(b)
    # Transposed and step-sliced views of one tensor, each of shape (4, 3).
    assert not ta.T[::2, ::2].is_contiguous()
    np.testing.assert_allclose((ta.T[::2, ::2] * tb).numpy(), a.T[::2, ::2] * b)
    np.testing.assert_allclose((ta[::2, 1::3].T - tb[:3].T).numpy(), a[::2, 1::3].T - b[:3].T)
    np.testing.assert_allclose((tb / ta.T[::2, ::2]).numpy(), b / a.T[::2, ::2])


@pytest.mark.parametrize(
    "left, right, expected",
    [
        ("int64", 2.5, "float32"),       # a Python float promotes integers to the default float
        ("float16", 3, "float16"),       # a Python int keeps the tensor's float dtype
        ("float64", 1.5, "float64"),
        ("bool", 2, "int64"),
        ("uint8", "int8", "int16"),
        ("int32", "int64", "int64"),
        ("float16", "bfloat16", "float32"),
        ("int64", "float16", "float16"),
        ("float32", "float64", "float64"),
        ("complex64", "float64", "complex128"),
        ("float64", 1j, "complex128"),
        ("float32", 1j, "complex64"),
    ],
)
def test_type_promotion_follows_pytorch(td, left, right, expected):
    ml_dtypes = pytest.importorskip("ml_dtypes") if "bfloat16" in (left, right) else None
    def make(spec):
        if not isinstance(spec, str):
            return spec
        dt = ml_dtypes.bfloat16 if spec == "bfloat16" else np.dtype(spec)
        return td.from_numpy(np.ones((2,), dtype=dt))
    result = make(left) + make(right)
    expect = ml_dtypes.bfloat16 if expected == "bfloat16" else np.dtype(expected)
    assert result.dtype == np.dtype(expect), (left, right, result.dtype)


def test_zero_dim_tensors_only_promote_across_kinds(td):
    f32 = td.from_numpy(np.ones((3,), np.float32))
    assert (f32 + td.from_numpy(np.array(2.0, np.float64))).dtype == np.float32
    i32 = td.from_numpy(np.ones((3,), np.int32))
    assert (i32 + td.from_numpy(np.array(2.0, np.float64))).dtype == np.float64
    assert (i32 + td.from_numpy(np.array(2, np.int64))).dtype == np.int32


def test_scalars_on_either_side(td):
    a = sample("float32", (3, 4), positive=True)
    t = td.from_numpy(a)
    np.testing.assert_allclose((2 - t).numpy(), 2 - a, rtol=1e-6)
    np.testing.assert_allclose((1 / t).numpy(), 1 / a, rtol=1e-6)
    np.testing.assert_allclose((t ** 2).numpy(), a ** 2, rtol=1e-6)
    np.testing.assert_allclose((2 ** t).numpy(), 2 ** a, rtol=1e-5)
    np.testing.assert_allclose((-t).numpy(), -a)


def test_true_division_of_integers_gives_float32(td):
    a = np.array([1, 2, 7], np.int64)
    out = td.from_numpy(a) / 2
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), a / 2)


def test_integer_power_is_exact(td):
    a = np.array([2, 3, -4], np.int64)
    out = td.from_numpy(a) ** 21
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out.numpy(), a ** 21)


@pytest.mark.parametrize("op", ["eq", "ne", "lt", "le", "gt", "ge"])
def test_comparisons_give_bool(td, op):
    a, b = sample("int64", (3, 4)), sample("float32", (4,))
    out = getattr(td.from_numpy(a), op)(td.from_numpy(b))
    assert out.dtype == np.bool_
    np.testing.assert_array_equal(out.numpy(), getattr(np, {"eq": "equal", "ne": "not_equal",
                                                           "lt": "less", "le": "less_equal",
                                                           "gt": "greater", "ge": "greater_equal"}[op])(a, b))


UNARY = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "sin": np.sin, "cos": np.cos, "tanh": np.tanh,
    "rsqrt": lambda x: 1 / np.sqrt(x), "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "relu": lambda x: np.maximum(x, 0), "abs": np.abs, "neg": np.negative,
}


@pytest.mark.parametrize("op", sorted(UNARY))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unary_ops_match_numpy(td, op, dtype):
    a = sample(dtype, (3, 5), positive=op in ("log", "sqrt", "rsqrt"))
    out = getattr(td.from_numpy(a).T, op)()
    assert out.dtype == np.dtype(dtype)
    close(out.numpy(), UNARY[op](a.T).astype(dtype), dtype)


def test_gelu_is_the_exact_form(td):
    from math import erf, sqrt
    a = np.linspace(-4, 4, 17)
    expected = np.array([0.5 * x * (1 + erf(x / sqrt(2))) for x in a])
    np.testing.assert_allclose(td.from_numpy(a).gelu().numpy(), expected, rtol=1e-12, atol=1e-15)


def test_float_math_on_integers_computes_in_float32(td):
    out = td.from_numpy(np.array([1, 4, 9], np.int64)).sqrt()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), [1, 2, 3])


def test_abs_of_complex_is_real_and_of_negative_zero_is_zero(td):
    z = np.array([3 + 4j, -1j], np.complex64)
    out = td.from_numpy(z).abs()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), [5, 1])
    assert not np.signbit(td.from_numpy(np.array([-0.0])).abs().numpy()[0])


def test_nan_propagates_through_maximum_and_relu(td):
    a = np.array([np.nan, 1.0, -2.0])
    b = np.array([0.0, np.nan, -3.0])
    np.testing.assert_array_equal(td.from_numpy(a).maximum(td.from_numpy(b)).numpy(), np.maximum(a, b))
    assert np.isnan(td.from_numpy(a).relu().numpy()[0])


def test_where_and_clamp(td):
    a = sample("float32", (4, 3))
    ta = td.from_numpy(a)
    np.testing.assert_array_equal(td.where(ta > 0, ta, 0.0).numpy(), np.where(a > 0, a, 0).astype(np.float32))
    np.testing.assert_array_equal(ta.where(ta < 0, -1.0).numpy(), np.where(a < 0, a, -1).astype(np.float32))
    np.testing.assert_allclose(ta.clamp(-0.5, 0.5).numpy(), np.clip(a, -0.5, 0.5))
    np.testing.assert_allclose(ta.clamp(min=0).numpy(), np.maximum(a, 0))
    np.testing.assert_allclose(ta.clamp(max=0).numpy(), np.minimum(a, 0))
    clamped = td.from_numpy(np.arange(5)).clamp(1, 3)
    assert clamped.dtype == np.int64
    np.testing.assert_array_equal(clamped.numpy(), [1, 1, 2, 3, 3])


def test_results_are_new_tensors_and_inputs_are_untouched(td):
    a = sample("float32", (3,))
    t = td.from_numpy(a)
    u = t.clamp(min=-10)  # a no-op bound must still not alias its input
    assert u.handle != t.handle
    np.testing.assert_array_equal(t.numpy(), a)


def test_zero_size_and_zero_dim(td):
    empty = td.from_numpy(np.zeros((0, 3), np.float32))
    assert (empty + 1).shape == (0, 3)
    scalar = td.from_numpy(np.array(2.0, np.float32))
    out = scalar * td.from_numpy(np.arange(3, dtype=np.float32))
    np.testing.assert_array_equal(out.numpy(), [0, 2, 4])
    assert (scalar + 1).shape == ()


@pytest.mark.parametrize(
    "make, code, words",
    [
        (lambda td: td.from_numpy(np.ones((2, 3))) + td.from_numpy(np.ones((4,))),
         tensord.InvalidArgumentError, ["add", "3", "4"]),
        (lambda td: td.where(td.from_numpy(np.ones(3)), td.from_numpy(np.ones(3)), 0.0),
         tensord.InvalidArgumentError, ["where", "bool"]),
        (lambda td: td.from_numpy(np.ones(3, np.complex64)).maximum(td.from_numpy(np.ones(3, np.complex64))),
         tensord.InvalidArgumentError, ["maximum", "complex"]),
        (lambda td: -td.from_numpy(np.ones(3, bool)), tensord.InvalidArgumentError, ["neg", "bool"]),
        (lambda td: td.from_numpy(np.ones(3, bool)) - td.from_numpy(np.ones(3, bool)),
         tensord.InvalidArgumentError, ["sub", "bool"]),
        (lambda td: td.from_numpy(np.ones(3)).clamp(), tensord.InvalidArgumentError, ["clamp", "min"]),
        (lambda td: td._op("no_such_op", td.from_numpy(np.ones(3))), tensord.NotFoundError, ["no_such_op"]),
    ],
)
def test_bad_ops_fail_clearly_and_the_server_keeps_serving(td, make, code, words):
    kept = td.from_numpy(np.arange(4.0))
    with pytest.raises(code) as info:
        synced(make(td))  # checked by the server: raised at the sync point
    for word in words:
        assert word in info.value.details, (word, info.value.details)
    np.testing.assert_array_equal((kept + 1).numpy(), np.arange(4.0) + 1)
