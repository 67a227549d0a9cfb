"""End-to-end tests of tensord.nn's layers, activations, losses and functional API against NumPy.

Every layer and loss runs on the real `tensord` binary; forward values are
compared with NumPy references (float64), losses with each reduction, and
gradients through `backward()` with hand-derived NumPy gradients (Linear +
loss, a small MLP) and with central finite differences of the same NumPy
references in float64. Module mechanics (registration, state_dict, repr)
are in test_nn_module.py.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pytest

import tensord
from tensord import nn
from tensord.nn import functional as F

RNG = np.random.default_rng(1234)
_erf = np.vectorize(math.erf)


def randn(*shape: int, dtype=np.float64, away_from_zero: bool = False) -> np.ndarray:
    a = RNG.standard_normal(shape)
    if away_from_zero:  # keeps kinks (relu, |x|) out of finite differences
        a = np.where(np.abs(a) < 0.05, 0.05 + np.abs(a), a)
    return a.astype(dtype)


# ---- NumPy references (float64) ---------------------------------------------


def np_softmax(x: np.ndarray, dim: int) -> np.ndarray:
    e = np.exp(x - x.max(dim, keepdims=True))
    return e / e.sum(dim, keepdims=True)


def np_log_softmax(x: np.ndarray, dim: int) -> np.ndarray:
    m = x.max(dim, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(dim, keepdims=True))


def np_gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def np_gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def reduce(loss: np.ndarray, reduction: str) -> np.ndarray:
    return {"none": loss, "mean": np.asarray(loss.mean()), "sum": np.asarray(loss.sum())}[reduction]


def np_nll(logp: np.ndarray, target: np.ndarray, reduction: str, ignore_index: int = -100) -> np.ndarray:
    valid = target != ignore_index
    picked = np.take_along_axis(logp, np.where(valid, target, 0)[:, None], axis=1)[:, 0]
    loss = np.where(valid, -picked, 0.0)
    if reduction == "mean":
        return np.asarray(loss.sum() / valid.sum())
    return reduce(loss, reduction)


def np_cross_entropy(
    x: np.ndarray, target: np.ndarray, reduction: str, ignore_index: int = -100, label_smoothing: float = 0.0
) -> np.ndarray:
    """torch's cross_entropy for logits [N, C, *] and class indices [N, *] or probabilities [N, C, *]."""
    logp = np_log_softmax(x, 1)
    c = x.shape[1]
    if target.dtype.kind == "f":
        t = target * (1 - label_smoothing) + label_smoothing / c
        return reduce(-(t * logp).sum(1), reduction)
    valid = target != ignore_index
    nll = -np.take_along_axis(logp, np.where(valid, target, 0)[:, None], axis=1)[:, 0]
    smooth = -logp.sum(1)
    loss = np.where(valid, (1 - label_smoothing) * nll + label_smoothing / c * smooth, 0.0)
    if reduction == "mean":
        return np.asarray(loss.sum() / valid.sum())
    return reduce(loss, reduction)


def np_bce_with_logits(x: np.ndarray, y: np.ndarray, reduction: str, pos_weight=None) -> np.ndarray:
    pw = 1.0 if pos_weight is None else pos_weight
    loss = pw * y * np.logaddexp(0, -x) + (1 - y) * np.logaddexp(0, x)
    return reduce(loss, reduction)


def numeric_grad(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of scalar f at x (float64)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f(x)
        flat[i] = old - h
        down = f(x)
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return grad


def check_grad(td, forward: Callable, reference: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> None:
    """backward() of sum(forward(x) * w) against finite differences of the NumPy reference (float64)."""
    out_shape = reference(x).shape
    w = RNG.uniform(0.5, 1.5, out_shape) if out_shape else np.array(1.0)
    xt = td.from_numpy(x.copy()).requires_grad_()
    out = forward(xt)
    scalar = (out * td.from_numpy(w)).sum() if out_shape else out
    scalar.backward()
    expected = numeric_grad(lambda a: float((reference(a) * w).sum()), x.copy())
    np.testing.assert_allclose(xt.grad.numpy(), expected, rtol=1e-6, atol=1e-8)


# ---- Linear ---------------------------------------------------------------------


def test_linear_shapes_dtype_and_default_init_bounds(td):
    layer = td.nn.Linear(256, 64)
    assert layer.in_features == 256 and layer.out_features == 64
    assert layer.weight.shape == (64, 256) and layer.bias.shape == (64,)
    assert layer.weight.dtype == np.float32 and layer.weight.requires_grad and layer.bias.requires_grad
    bound = 1 / math.sqrt(256)  # what kaiming_uniform_(a=sqrt(5)) gives, and the bias's bound
    w, b = layer.weight.numpy(), layer.bias.numpy()
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert w.min() < -0.95 * bound and w.max() > 0.95 * bound  # the whole interval is used
    assert abs(w.mean()) < 0.05 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound  # uniform's spread
    assert len(np.unique(b)) == 64


def test_linear_float64_without_bias(td):
    layer = td.nn.Linear(3, 2, bias=False, dtype="float64")
    assert layer.bias is None and layer.weight.dtype == np.float64
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    assert repr(layer) == "Linear(in_features=3, out_features=2, bias=False)"
    x = randn(4, 3)
    np.testing.assert_allclose(layer(td.from_numpy(x)).numpy(), x @ layer.weight.numpy().T, rtol=1e-12)


def test_linear_zero_in_features_has_zero_bias(td):
    layer = td.nn.Linear(0, 3)
    assert layer.weight.shape == (3, 0)
    np.testing.assert_array_equal(layer.bias.numpy(), np.zeros(3, np.float32))


def test_linear_init_follows_manual_seed(td):
    td.manual_seed(7)
    a = td.nn.Linear(4, 3)
    td.manual_seed(7)
    b = td.nn.Linear(4, 3)
    np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())
    np.testing.assert_array_equal(a.bias.numpy(), b.bias.numpy())
    assert not np.array_equal(a.weight.numpy(), td.nn.Linear(4, 3).weight.numpy())


def test_linear_reset_parameters_keeps_the_parameters(td):
    layer = td.nn.Linear(5, 5)
    weight, before = layer.weight, layer.weight.numpy()
    layer.reset_parameters()
    assert layer.weight is weight and layer.weight.requires_grad
    after = layer.weight.numpy()
    assert not np.array_equal(before, after) and np.abs(after).max() <= 1 / math.sqrt(5)


@pytest.mark.parametrize("shape", [(3,), (5, 3), (2, 4, 3)])
def test_linear_forward_matches_numpy(td, shape):
    layer = td.nn.Linear(3, 2)
    w, b = layer.weight.numpy().astype(np.float64), layer.bias.numpy().astype(np.float64)
    x = randn(*shape, dtype=np.float32)
    np.testing.assert_allclose(layer(td.from_numpy(x)).numpy(), x @ w.T + b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        F.linear(td.from_numpy(x), layer.weight).numpy(), x @ w.T, rtol=1e-5, atol=1e-6
    )


def test_identity_and_flatten(td):
    x = td.from_numpy(randn(2, 3, 4, 5))
    assert nn.Identity(54, unused=True)(x) is x
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, 1)(x).shape == (6, 4, 5)
    assert F.flatten(x).shape == (120,)
    np.testing.assert_array_equal(nn.Flatten(1, 2)(x).numpy(), x.numpy().reshape(2, 12, 5))


# ---- activations ----------------------------------------------------------------


ACTIVATIONS = [
    ("relu", nn.ReLU(), F.relu, lambda x: np.maximum(x, 0)),
    ("sigmoid", nn.Sigmoid(), F.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    ("tanh", nn.Tanh(), F.tanh, np.tanh),
    ("gelu", nn.GELU(), F.gelu, np_gelu),
    ("gelu_tanh", nn.GELU("tanh"), lambda x: F.gelu(x, approximate="tanh"), np_gelu_tanh),
    ("softmax", nn.Softmax(dim=1), lambda x: F.softmax(x, dim=1), lambda x: np_softmax(x, 1)),
    ("softmax_neg", nn.Softmax(dim=-1), lambda x: F.softmax(x, -1), lambda x: np_softmax(x, -1)),
    ("log_softmax", nn.LogSoftmax(dim=0), lambda x: F.log_softmax(x, dim=0), lambda x: np_log_softmax(x, 0)),
]


@pytest.mark.parametrize("name, module, function, reference", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_forward_matches_numpy(td, name, module, function, reference, dtype):
    x = randn(4, 5, 3, dtype=dtype) * 3
    expected = reference(x.astype(np.float64))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    for out in (module(td.from_numpy(x)), function(td.from_numpy(x))):
        assert out.dtype == dtype and out.shape == x.shape
        np.testing.assert_allclose(out.numpy(), expected, **tol)


@pytest.mark.parametrize("name, module, function, reference", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_gradient_matches_finite_differences(td, name, module, function, reference):
    check_grad(td, function, reference, randn(3, 4, away_from_zero=True))


def test_softmax_without_dim_uses_torchs_legacy_rule_and_warns(td):
    for shape, dim in [((5,), 0), ((2, 5), 1), ((2, 3, 4), 0), ((2, 3, 4, 5), 1)]:
        x = randn(*shape)
        with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
            out = F.softmax(td.from_numpy(x))
        np.testing.assert_allclose(out.numpy(), np_softmax(x, dim), rtol=1e-12)
        with pytest.warns(UserWarning, match="Implicit dimension choice for log_softmax"):
            out = nn.LogSoftmax()(td.from_numpy(x))
        np.testing.assert_allclose(out.numpy(), np_log_softmax(x, dim), rtol=1e-12, atol=1e-14)


def test_softmax_dtype_argument_casts_first(td):
    x = randn(3, 4, dtype=np.float32)
    out = F.softmax(td.from_numpy(x), dim=1, dtype=np.float64)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.numpy(), np_softmax(x.astype(np.float64), 1), rtol=1e-12)


def test_activation_argument_errors(td):
    with pytest.raises(ValueError, match="approximate argument must be either none or tanh"):
        nn.GELU("fast")
    with pytest.raises(ValueError, match="approximate argument must be either none or tanh"):
        F.gelu(td.ones(2), approximate="erf")
    with pytest.raises(TypeError, match="argument 'input' must be a tensord.Tensor"):
        F.relu(np.ones(3))
    assert repr(nn.ReLU(inplace=True)) == "ReLU(inplace=True)"


# ---- dropout --------------------------------------------------------------------


def test_dropout_training_statistics(td):
    p = 0.3
    x = td.ones(200, 500)
    layer = nn.Dropout(p)
    a = layer(x).numpy()
    zero = a == 0
    assert abs(zero.mean() - p) < 0.01  # 100000 draws: the standard error is 0.0015
    np.testing.assert_allclose(a[~zero], 1 / (1 - p), rtol=1e-6)
    assert abs(a.mean() - 1) < 0.02  # the 1/(1-p) scale keeps the expectation
    b = F.dropout(x, p).numpy()
    assert not np.array_equal(zero, b == 0)  # a fresh mask per call


def test_dropout_eval_and_edge_probabilities(td):
    x = td.from_numpy(randn(10, 10, dtype=np.float32))
    layer = nn.Dropout(0.5)
    layer.eval()
    assert layer(x) is x
    assert F.dropout(x, 0.5, training=False) is x
    np.testing.assert_array_equal(F.dropout(x, 0.0).numpy(), x.numpy())
    np.testing.assert_array_equal(F.dropout(x, 1.0).numpy(), np.zeros((10, 10), np.float32))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=f"dropout probability has to be between 0 and 1, but got {bad}"):
            nn.Dropout(bad)
        with pytest.raises(ValueError, match="dropout probability"):
            F.dropout(x, bad)


def test_dropout_gradient_is_the_mask_times_the_scale(td):
    x = td.ones(50, 40, dtype="float64").requires_grad_()
    out = F.dropout(x, 0.4)
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), out.detach().numpy(), rtol=1e-12)


def test_sequential_eval_turns_dropout_off(td):
    model = nn.Sequential(nn.Dropout(0.9), nn.Identity())
    x = td.ones(100)
    model.eval()
    np.testing.assert_array_equal(model(x).numpy(), np.ones(100, np.float32))
    model.train()
    assert (model(x).numpy() == 0).sum() > 50


# ---- losses ---------------------------------------------------------------------

REDUCTIONS = ["none", "mean", "sum"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_and_l1_losses_match_numpy(td, reduction):
    x, y = randn(4, 3), randn(4, 3)
    mse = reduce((x - y) ** 2, reduction)
    l1 = reduce(np.abs(x - y), reduction)
    xt, yt = td.from_numpy(x), td.from_numpy(y)
    np.testing.assert_allclose(nn.MSELoss(reduction=reduction)(xt, yt).numpy(), mse, rtol=1e-12)
    np.testing.assert_allclose(F.mse_loss(xt, yt, reduction=reduction).numpy(), mse, rtol=1e-12)
    np.testing.assert_allclose(nn.L1Loss(reduction=reduction)(xt, yt).numpy(), l1, rtol=1e-12)
    np.testing.assert_allclose(F.l1_loss(xt, yt, reduction=reduction).numpy(), l1, rtol=1e-12)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    out = F.mse_loss(td.from_numpy(x32), td.from_numpy(y32), reduction=reduction)
    assert out.dtype == np.float32 and out.shape == mse.shape
    expected32 = reduce((x32.astype(np.float64) - y32) ** 2, reduction)
    np.testing.assert_allclose(out.numpy(), expected32, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_with_class_indices_matches_numpy(td, reduction):
    x = randn(6, 4)
    target = np.array([0, 3, 1, 1, 2, 3])
    expected = np_cross_entropy(x, target, reduction)
    xt, tt = td.from_numpy(x), td.from_numpy(target)
    np.testing.assert_allclose(nn.CrossEntropyLoss(reduction=reduction)(xt, tt).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(F.cross_entropy(xt, tt, reduction=reduction).numpy(), expected, rtol=1e-12)


CE_OPTIONS = {
    "ignore_outside_classes": ({"ignore_index": 7}, [0, 7, 1, 7, 2, 3]),
    "ignore_a_class": ({"ignore_index": 0}, [0, 3, 1, 0, 2, 3]),  # class 0 as padding, a common use
    "smoothing": ({"label_smoothing": 0.2}, [0, 3, 1, 2, 2, 3]),
    "both": ({"ignore_index": 1, "label_smoothing": 0.1}, [0, 1, 1, 3, 2, 0]),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kwargs, target", CE_OPTIONS.values(), ids=CE_OPTIONS.keys())
def test_cross_entropy_ignore_index_and_label_smoothing(td, reduction, kwargs, target):
    x, target = randn(6, 4), np.array(target)
    expected = np_cross_entropy(x, target, reduction, **kwargs)
    loss = nn.CrossEntropyLoss(reduction=reduction, **kwargs)(td.from_numpy(x), td.from_numpy(target))
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-12)


def test_cross_entropy_default_ignore_index_is_minus_100(td):
    x, target = randn(4, 3), np.array([2, -100, 0, -100])
    loss = F.cross_entropy(td.from_numpy(x), td.from_numpy(target))
    np.testing.assert_allclose(loss.numpy(), np_cross_entropy(x, target, "mean"), rtol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_with_spatial_dims_and_probabilities(td, reduction):
    x = randn(2, 3, 4, 5)
    target = RNG.integers(0, 3, (2, 4, 5))
    np.testing.assert_allclose(
        F.cross_entropy(td.from_numpy(x), td.from_numpy(target), reduction=reduction).numpy(),
        np_cross_entropy(x, target, reduction),
        rtol=1e-12,
    )
    probs = np_softmax(randn(2, 3, 4, 5), 1)
    for smoothing in (0.0, 0.3):
        np.testing.assert_allclose(
            F.cross_entropy(
                td.from_numpy(x), td.from_numpy(probs), reduction=reduction, label_smoothing=smoothing
            ).numpy(),
            np_cross_entropy(x, probs, reduction, label_smoothing=smoothing),
            rtol=1e-12,
        )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_matches_numpy(td, reduction):
    logp = np_log_softmax(randn(5, 4), 1)
    target = np.array([3, 0, 2, 2, 1])
    expected = np_nll(logp, target, reduction)
    lt, tt = td.from_numpy(logp), td.from_numpy(target)
    np.testing.assert_allclose(nn.NLLLoss(reduction=reduction)(lt, tt).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(F.nll_loss(lt, tt, reduction=reduction).numpy(), expected, rtol=1e-12)
    for ignore_index, ignoring in ((9, [3, 0, 9, 2, 9]), (2, [3, 0, 2, 2, 1])):  # outside and inside the classes
        ignoring = np.array(ignoring)
        np.testing.assert_allclose(
            F.nll_loss(lt, td.from_numpy(ignoring), reduction=reduction, ignore_index=ignore_index).numpy(),
            np_nll(logp, ignoring, reduction, ignore_index=ignore_index),
            rtol=1e-12,
            err_msg=f"ignore_index={ignore_index}",
        )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_matches_numpy(td, reduction):
    x = randn(4, 3) * 4
    y = RNG.uniform(0, 1, (4, 3))
    xt, yt = td.from_numpy(x), td.from_numpy(y)
    expected = np_bce_with_logits(x, y, reduction)
    np.testing.assert_allclose(nn.BCEWithLogitsLoss(reduction=reduction)(xt, yt).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(
        F.binary_cross_entropy_with_logits(xt, yt, reduction=reduction).numpy(), expected, rtol=1e-12
    )
    pos_weight = np.array([0.5, 2.0, 3.0])
    loss = nn.BCEWithLogitsLoss(reduction=reduction, pos_weight=td.from_numpy(pos_weight))
    assert [n for n, _ in loss.named_buffers()] == ["pos_weight"]
    np.testing.assert_allclose(
        loss(xt, yt).numpy(), np_bce_with_logits(x, y, reduction, pos_weight), rtol=1e-12
    )


def test_bce_with_logits_is_stable_for_large_logits(td):
    x = np.array([-200.0, -30.0, 30.0, 200.0])
    y = np.array([1.0, 0.0, 1.0, 0.0])
    loss = F.binary_cross_entropy_with_logits(td.from_numpy(x), td.from_numpy(y), reduction="none")
    # No inf or nan; the tiny losses carry torch's own cancellation error (x + softplus(-x)).
    np.testing.assert_allclose(loss.numpy(), np_bce_with_logits(x, y, "none"), rtol=1e-12, atol=1e-14)


LOSS_GRADS = [
    ("mse", lambda x, t: F.mse_loss(x, t), lambda x, t: np.mean((x - t) ** 2), "float"),
    ("l1_sum", lambda x, t: F.l1_loss(x, t, reduction="sum"), lambda x, t: np.abs(x - t).sum(), "float"),
    ("ce", lambda x, t: F.cross_entropy(x, t), lambda x, t: np_cross_entropy(x, t, "mean"), "index"),
    (
        "ce_ignore",
        lambda x, t: F.cross_entropy(x, t, ignore_index=1),
        lambda x, t: np_cross_entropy(x, t, "mean", ignore_index=1),
        "index",
    ),
    (
        "ce_smooth_ignore",
        lambda x, t: F.cross_entropy(x, t, ignore_index=1, label_smoothing=0.1, reduction="sum"),
        lambda x, t: np_cross_entropy(x, t, "sum", ignore_index=1, label_smoothing=0.1),
        "index",
    ),
    ("ce_probs", lambda x, t: F.cross_entropy(x, t), lambda x, t: np_cross_entropy(x, t, "mean"), "probs"),
    (
        "nll",
        lambda x, t: F.nll_loss(F.log_softmax(x, 1), t),
        lambda x, t: np_nll(np_log_softmax(x, 1), t, "mean"),
        "index",
    ),
    (
        "nll_ignore_sum",
        lambda x, t: F.nll_loss(x, t, ignore_index=3, reduction="sum"),
        lambda x, t: np_nll(x, t, "sum", ignore_index=3),
        "index",
    ),
    (
        "bce",
        lambda x, t: F.binary_cross_entropy_with_logits(x, t),
        lambda x, t: np_bce_with_logits(x, t, "mean"),
        "probs",
    ),
]


@pytest.mark.parametrize("name, loss, reference, target_kind", LOSS_GRADS, ids=[g[0] for g in LOSS_GRADS])
def test_loss_gradient_matches_finite_differences(td, name, loss, reference, target_kind):
    x = randn(5, 4, away_from_zero=True)
    if target_kind == "index":
        t = np.array([0, 1, 3, 2, 1])
    elif target_kind == "probs":
        t = np_softmax(randn(5, 4), 1)
    else:
        t = x + randn(5, 4, away_from_zero=True)
    tt = td.from_numpy(t)
    check_grad(td, lambda xt: loss(xt, tt), lambda a: np.asarray(reference(a, t)), x)


def test_loss_reduction_is_validated_like_torch(td):
    for cls in (nn.MSELoss, nn.L1Loss, nn.CrossEntropyLoss, nn.NLLLoss, nn.BCEWithLogitsLoss):
        with pytest.raises(ValueError, match="^avg is not a valid value for reduction$"):
            cls(reduction="avg")
    x = td.ones(2, 3)
    with pytest.raises(ValueError, match="^elementwise is not a valid value for reduction$"):
        F.mse_loss(x, x, reduction="elementwise")
    loss = nn.L1Loss()
    loss.reduction = "bad"
    with pytest.raises(ValueError, match="bad is not a valid value for reduction"):
        loss(x, x)


def test_loss_argument_errors(td):
    x = td.ones(2, 3)
    # The shapes come from the server: the warning is given once they are in (a sync point at the latest).
    with pytest.warns(UserWarning, match=r"Using a target size \(\(3,\)\) that is different to the input size"):
        F.mse_loss(x, td.ones(3)).numpy()
    # With both shapes known the client refuses at once, like torch; otherwise the server does.
    known = td.from_numpy(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"Target size \(\(2, 2\)\) must be the same as input size \(\(2, 3\)\)"):
        F.binary_cross_entropy_with_logits(known, td.from_numpy(np.ones((2, 2), np.float32)))
    with pytest.raises(tensord.InvalidArgumentError, match=r"Target size \(\[2, 2\]\) must be the same as input size \(\[2, 3\]\)"):
        F.binary_cross_entropy_with_logits(x, td.ones(2, 2)).numpy()
    with pytest.raises(NotImplementedError, match="weight"):
        nn.CrossEntropyLoss(weight=td.ones(3))
    with pytest.raises(NotImplementedError, match="weight"):
        F.nll_loss(x, td.zeros(2, dtype="int64"), td.ones(3))
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0"):
        F.cross_entropy(x, td.zeros(2, dtype="int64"), label_smoothing=1.5)
    with pytest.warns(UserWarning, match="reduction='sum'"):
        assert nn.MSELoss(size_average=False).reduction == "sum"


def test_server_rejects_bad_operands(td):
    x = td.ones(4, 3)
    # Checked by the server: each is raised at the sync point after the op.
    with pytest.raises(tensord.InvalidArgumentError):
        F.linear(x, td.ones(2, 5)).numpy()  # 3 input features against a weight for 5
    with pytest.raises(tensord.InvalidArgumentError):
        F.cross_entropy(x, td.from_numpy(np.array([0, 1, 2, 3]))).numpy()  # class 3 of 3
    with pytest.raises(tensord.InvalidArgumentError):
        F.cross_entropy(x, td.from_numpy(np.array([0, 1]))).numpy()  # 2 targets for 4 rows
    with pytest.raises(tensord.InvalidArgumentError):
        F.nll_loss(x, td.ones(4)).numpy()  # float targets need the input's shape


# ---- backward through layers ----------------------------------------------------


def test_backward_through_linear_and_mse_matches_hand_gradients(td):
    layer = td.nn.Linear(3, 2, dtype="float64")
    w, b = layer.weight.numpy(), layer.bias.numpy()
    x, target = randn(5, 3), randn(5, 2)
    xt = td.from_numpy(x).requires_grad_()
    loss = nn.MSELoss()(layer(xt), td.from_numpy(target))
    loss.backward()
    out = x @ w.T + b
    np.testing.assert_allclose(loss.item(), np.mean((out - target) ** 2), rtol=1e-12)
    g = 2 * (out - target) / out.size
    np.testing.assert_allclose(layer.weight.grad.numpy(), g.T @ x, rtol=1e-10)
    np.testing.assert_allclose(layer.bias.grad.numpy(), g.sum(0), rtol=1e-10)
    np.testing.assert_allclose(xt.grad.numpy(), g @ w, rtol=1e-10)


def test_backward_through_mlp_and_cross_entropy_matches_hand_gradients(td):
    model = nn.Sequential(td.nn.Linear(4, 8, dtype="float64"), nn.ReLU(), td.nn.Linear(8, 3, dtype="float64"))
    w1, b1, w2, b2 = (p.numpy() for p in model.parameters())
    x, labels = randn(6, 4), np.array([0, 2, 1, 1, 0, 2])
    loss = nn.CrossEntropyLoss()(model(td.from_numpy(x)), td.from_numpy(labels))
    loss.backward()
    h = x @ w1.T + b1
    a = np.maximum(h, 0)
    z = a @ w2.T + b2
    g = np_softmax(z, 1)
    g[np.arange(6), labels] -= 1
    g /= 6
    ga = (g @ w2) * (h > 0)
    expected = {"0.weight": ga.T @ x, "0.bias": ga.sum(0), "2.weight": g.T @ a, "2.bias": g.sum(0)}
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), expected[name], rtol=1e-10, atol=1e-14, err_msg=name)


def test_gradients_accumulate_until_zero_grad(td):
    layer = td.nn.Linear(2, 1, dtype="float64")
    x = td.from_numpy(np.array([[1.0, 2.0]]))
    layer(x).sum().backward()
    layer(x).sum().backward()
    np.testing.assert_allclose(layer.weight.grad.numpy(), [[2.0, 4.0]])
    layer.zero_grad()
    assert layer.weight.grad is None
    layer(x).sum().backward()
    np.testing.assert_allclose(layer.weight.grad.numpy(), [[1.0, 2.0]])


def test_frozen_layer_gets_no_gradient(td):
    frozen, trained = td.nn.Linear(2, 2), td.nn.Linear(2, 1)
    frozen.requires_grad_(False)
    trained(frozen(td.ones(3, 2))).sum().backward()
    assert frozen.weight.grad is None and trained.weight.grad is not None


def test_no_grad_forward_records_nothing(td):
    layer = td.nn.Linear(2, 2)
    with tensord.no_grad():
        out = layer(td.ones(1, 2))
    assert not out.requires_grad
    assert layer(td.ones(1, 2)).requires_grad
