"""Regression tests for results that differed from PyTorch's (tests/parity finds
such differences against real PyTorch; these pin each one without it).

Each expected value below is what PyTorch 2.15 gives for the same call.
"""
from __future__ import annotations

import numpy as np
import pytest

import tensord


def test_integer_pow_with_negative_exponents_truncates(td):
    base = td.tensor([-2, -1, 0, 1, 2, 3])
    exponent = td.tensor([-1, -3, -1, -2, -1, -2])
    np.testing.assert_array_equal((base ** exponent).numpy(), [0, -1, 0, 1, 0, 0])
    np.testing.assert_array_equal((td.tensor([-1, -1], dtype="int8") ** td.tensor([-2, -3], dtype="int8")).numpy(), [1, -1])


@pytest.mark.parametrize("dtype", ["int64", "int8", "uint8"])
def test_integer_tensor_to_negative_number_power_is_refused(td, dtype):
    with pytest.raises(tensord.InvalidArgumentError, match="negative integer powers"):
        (td.tensor([2, 3], dtype=dtype) ** -1).numpy()
    np.testing.assert_array_equal((td.tensor([2, 3]) ** td.tensor(-1)).numpy(), [0, 0])  # a 0-d tensor is fine
    np.testing.assert_allclose((td.tensor([2, 4]) ** -1.0).numpy(), [0.5, 0.25])


def test_clamp_with_integer_bounds_beyond_the_dtype(td):
    np.testing.assert_array_equal(td.tensor([-128, 0, 127], dtype="int8").clamp(min=-200).numpy(), [-128, 0, 127])
    np.testing.assert_array_equal(td.tensor([0, 7, 255], dtype="uint8").clamp(max=300).numpy(), [0, 7, 255])
    np.testing.assert_array_equal(td.tensor([0, 7, 255], dtype="uint8").clamp(min=-1).numpy(), [0, 7, 255])
    for kwargs in ({"min": 300}, {"max": -1}):
        with pytest.raises(tensord.InvalidArgumentError, match="outside the representable range of uint8"):
            td.tensor([1, 2], dtype="uint8").clamp(**kwargs).numpy()
    with pytest.raises(tensord.InvalidArgumentError, match="cannot be converted to type float16"):
        td.tensor([1.0], dtype="float16").clamp(max=1e6).numpy()


def test_clamp_with_tensor_bounds_splits_ties_like_maximum(td):
    x = td.tensor([5.0, -5.0, 3.5], dtype="float64", requires_grad=True)
    lo = td.tensor([0.0, -5.0, 0.0], dtype="float64")
    hi = td.tensor([6.0, 0.0, 1.0], dtype="float64")
    out = x.clamp(lo, hi)
    np.testing.assert_array_equal(out.numpy(), [5.0, -5.0, 1.0])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 0.5, 0.0])
    np.testing.assert_array_equal(td.tensor([1, 2, 3]).clamp(min=td.tensor(1.5)).numpy(), [1.5, 2.0, 3.0])


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("batched", [True, False])
def test_mean_class_loss_with_every_target_ignored_has_zero_gradient(td, smoothing, batched):
    shape, target = ((3, 4), [-100, -100, -100]) if batched else ((4,), -100)
    logits = td.from_numpy(np.random.default_rng(0).standard_normal(shape)).requires_grad_(True)
    loss = td.nn.functional.cross_entropy(logits, td.tensor(target), label_smoothing=smoothing)
    assert np.isnan(loss.item())  # 0 / 0, as in torch
    loss.backward()
    np.testing.assert_array_equal(logits.grad.numpy(), np.zeros(shape))
    logp = td.from_numpy(np.random.default_rng(1).standard_normal((2, 3))).requires_grad_(True)
    td.nn.functional.nll_loss(logp, td.tensor([1, 1]), ignore_index=1).backward()
    np.testing.assert_array_equal(logp.grad.numpy(), np.zeros((2, 3)))


def test_probability_targets_refuse_a_class_ignore_index(td):
    logits = td.tensor([[1.0, 2.0]])
    probs = td.tensor([[0.2, 0.8]])
    with pytest.raises(tensord.InvalidArgumentError, match="ignore_index"):
        td.nn.functional.cross_entropy(logits, probs, ignore_index=0).numpy()
    assert abs(td.nn.functional.cross_entropy(logits, probs, ignore_index=-1).item() - 0.51326) < 1e-4


@pytest.mark.parametrize("expr", ["a - b", "b - a", "a - True", "True - a", "b - b"])
def test_subtraction_with_a_bool_operand_is_refused(td, expr):
    a = td.tensor([4], dtype="int16")
    b = td.tensor([True])
    with pytest.raises(tensord.InvalidArgumentError, match="subtraction"):
        eval(expr).numpy()
    np.testing.assert_array_equal((a + b).numpy(), [5])  # addition is fine, as in torch


def test_complex_zero_to_the_power_zero_is_one(td):
    z = td.tensor([0j, 1 + 1j])
    np.testing.assert_array_equal((z ** 0).numpy(), [1 + 0j, 1 + 0j])
    np.testing.assert_array_equal((td.tensor([float("nan")]) ** 0).numpy(), [1.0])


def test_numbers_stored_into_dtypes_follow_one_rule(td):
    np.testing.assert_array_equal(td.tensor([1], dtype="uint8").fill_(-1).numpy(), [255])
    np.testing.assert_array_equal(td.full((2,), -1, dtype="uint8").numpy(), [255, 255])
    np.testing.assert_array_equal(td.tensor([1], dtype="int8").fill_(127.5).numpy(), [127])
    for make in (lambda: td.tensor([1], dtype="uint8").fill_(-256), lambda: td.full((1,), 300, dtype="uint8"),
                 lambda: td.tensor([1.0]).fill_(1e39), lambda: td.tensor([1], dtype="int8").fill_(-128.5)):
        with pytest.raises(tensord.InvalidArgumentError, match="without overflow"):
            make().numpy()
    np.testing.assert_array_equal(td.tensor([1.5]).to("uint8").numpy(), [1])
    np.testing.assert_array_equal(td.tensor([-2.5]).to("uint8").numpy(), [254])  # through int64, as torch


def test_floor_divide_and_remainder_follow_python(td):
    a, b = td.tensor([5, -5, 7, -7]), td.tensor([3, 3, -2, -2])
    np.testing.assert_array_equal((a // b).numpy(), [1, -2, -4, 3])
    np.testing.assert_array_equal((a % b).numpy(), [2, 1, -1, -1])
    np.testing.assert_array_equal((17 // td.tensor([5])).numpy(), [3])
    np.testing.assert_allclose((td.tensor([5.0, -5.0]) % td.tensor([-3.0, 3.0])).numpy(), [-1.0, 1.0])
    np.testing.assert_array_equal((td.tensor([5.0]) // 0).numpy(), [np.inf])
    with pytest.raises(tensord.InvalidArgumentError, match="ZeroDivisionError"):
        (a // td.tensor([1, 0, 1, 1])).numpy()
    with pytest.raises(tensord.InvalidArgumentError, match="ZeroDivisionError"):
        (a % 0).numpy()
    x = td.tensor([5.0, -5.0, 3.5], dtype="float64", requires_grad=True)
    y = td.tensor([3.0, 3.0, -2.0], dtype="float64", requires_grad=True)
    (x % y).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(y.grad.numpy(), [-1.0, 2.0, 2.0])


def test_half_precision_arithmetic_reads_numbers_in_float(td):
    h = td.from_numpy(np.array([-1.4296875], dtype="float32")).bfloat16()
    # 30000 is not a bfloat16 (its neighbour is 29952): torch multiplies by 30000 in float.
    np.testing.assert_array_equal((h * 30000).float().numpy(), [-43008.0])  # 29952 would give -42752


def test_strides_of_size_one_dims_match_torch(td):
    a = td.from_numpy(np.arange(24.0).reshape(2, 3, 4))
    assert a[None, 0, :, None].stride() == (24, 4, 4, 1)
    assert a[1:, ::2, 1::3].stride() == (12, 8, 3)
