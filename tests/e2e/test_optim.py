"""End-to-end tests of tensord.optim (SGD, Adam, AdamW) against NumPy re-implementations of torch.optim.

Each test gives the parameters known gradients (by backward() of
sum(p * G), whose gradient is G), runs several server-side steps, and
compares the parameters with the same steps written out below in NumPy,
following torch.optim's single-tensor code. Also: param groups, changing
the learning rate between steps, zero_grad, parameters without a gradient,
torch's validation messages, and freeing the server-side optimizer.
"""
from __future__ import annotations

import gc
from typing import Any, Optional

import numpy as np
import pytest

import tensord
from raw_wire import wait_for
from tensord import nn, optim

SHAPES = [(3, 4), (5,)]
GRAD_SCALES = [3.0, 1.0, 0.2, 2.0, 0.5]  # shrinking then growing, so amsgrad's max matters


# ---- NumPy references (torch.optim's single-tensor algorithms) -----------------


def sgd_ref(p, g, state, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    t = p.dtype.type
    g = -g if maximize else g
    if weight_decay != 0:
        g = g + t(weight_decay) * p
    if momentum != 0:
        if "buf" not in state:
            state["buf"] = g.copy()
        else:
            state["buf"] = state["buf"] * t(momentum) + t(1 - dampening) * g
        g = g + t(momentum) * state["buf"] if nesterov else state["buf"]
    return p + t(-lr) * g


def adam_ref(
    p, g, state, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False, decoupled=False
):
    t = p.dtype.type
    b1, b2 = betas
    state["step"] = state.get("step", 0) + 1
    for key in ("m", "v", "vmax"):
        state.setdefault(key, np.zeros_like(p))
    if decoupled:
        p = p * t(1 - lr * weight_decay)
    g = -g if maximize else g
    if not decoupled and weight_decay != 0:
        g = g + t(weight_decay) * p
    state["m"] = state["m"] + t(1 - b1) * (g - state["m"])  # torch.lerp with weight < 0.5
    state["v"] = state["v"] * t(b2) + t(1 - b2) * g * g
    second = state["v"]
    if amsgrad:
        state["vmax"] = np.maximum(state["vmax"], state["v"])
        second = state["vmax"]
    step_size = lr / (1 - b1 ** state["step"])
    bc2_sqrt = np.sqrt(1 - b2 ** state["step"])
    denom = np.sqrt(second) / t(bc2_sqrt) + t(eps)
    return p + t(-step_size) * state["m"] / denom


# ---- helpers ----------------------------------------------------------------------


def make_params(td, dtype=np.float64, seed=0) -> tuple[list[nn.Parameter], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    return [nn.Parameter(td.from_numpy(a)) for a in arrays], [a.copy() for a in arrays]


def grads_for(step: int, dtype=np.float64, seed=1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed + step)
    return [(GRAD_SCALES[step % len(GRAD_SCALES)] * rng.standard_normal(s)).astype(dtype) for s in SHAPES]


def set_grads(td, params, grads: list[Optional[np.ndarray]]) -> None:
    """Makes each param's grad exactly `grads[i]` (None: no grad) with backward() of sum(p * G)."""
    total = None
    for p, g in zip(params, grads):
        if g is not None:
            term = (p * td.from_numpy(g)).sum()
            total = term if total is None else total + term
    total.backward()


def assert_params(params, expected, dtype=np.float64) -> None:
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=2e-6, atol=1e-7)
    for i, (p, e) in enumerate(zip(params, expected)):
        np.testing.assert_allclose(p.numpy(), e, err_msg=f"param {i}", **tol)


def run_and_compare(td, make_opt, ref, options: dict[str, Any], steps=5, dtype=np.float64) -> None:
    params, expected = make_params(td, dtype)
    opt = make_opt(params, **options)
    states: list[dict] = [{} for _ in params]
    for step in range(steps):
        grads = grads_for(step, dtype)
        opt.zero_grad()
        set_grads(td, params, grads)
        opt.step()
        expected = [ref(e, g, s, **options) for e, g, s in zip(expected, grads, states)]
        assert_params(params, expected, dtype)


# ---- update rules ------------------------------------------------------------------

SGD_CASES = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.05, momentum=0.9),
    "dampening": dict(lr=0.05, momentum=0.9, dampening=0.5),
    "nesterov": dict(lr=0.05, momentum=0.8, nesterov=True),
    "weight_decay": dict(lr=0.1, weight_decay=0.1),
    "maximize": dict(lr=0.1, momentum=0.5, maximize=True),
    "everything": dict(lr=0.02, momentum=0.7, weight_decay=0.01, nesterov=True, maximize=True),
}


@pytest.mark.parametrize("options", SGD_CASES.values(), ids=SGD_CASES.keys())
def test_sgd_matches_torch_rule(td, options):
    run_and_compare(td, optim.SGD, sgd_ref, options)


ADAM_CASES = {
    "default": dict(lr=0.01),
    "betas_eps": dict(lr=0.05, betas=(0.8, 0.9), eps=1e-3),
    "weight_decay": dict(lr=0.01, weight_decay=0.1),
    "amsgrad": dict(lr=0.01, amsgrad=True),
    "maximize": dict(lr=0.01, maximize=True, amsgrad=True),
}


@pytest.mark.parametrize("options", ADAM_CASES.values(), ids=ADAM_CASES.keys())
def test_adam_matches_torch_rule(td, options):
    run_and_compare(td, optim.Adam, adam_ref, options)


ADAMW_CASES = {
    "default": dict(lr=0.01),
    "weight_decay_amsgrad": dict(lr=0.02, weight_decay=0.3, amsgrad=True),
    "maximize": dict(lr=0.01, maximize=True),
}


@pytest.mark.parametrize("options", ADAMW_CASES.values(), ids=ADAMW_CASES.keys())
def test_adamw_matches_torch_rule(td, options):
    def adamw_ref(p, g, s, **kw):
        return adam_ref(p, g, s, decoupled=True, **{"weight_decay": 1e-2, **kw})

    run_and_compare(td, optim.AdamW, adamw_ref, options)


@pytest.mark.parametrize(
    "make_opt, ref, options",
    [
        (optim.SGD, sgd_ref, dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
        (optim.Adam, adam_ref, dict(lr=0.01, amsgrad=True)),
    ],
    ids=["sgd", "adam"],
)
def test_float32_parameters(td, make_opt, ref, options):
    run_and_compare(td, make_opt, ref, options, dtype=np.float32)


def test_defaults_match_torch(td):
    params, _ = make_params(td)
    assert optim.SGD(params).defaults == dict(
        lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, maximize=False
    )
    adam = optim.Adam(params)
    assert adam.defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, maximize=False)
    assert optim.AdamW(params).defaults["weight_decay"] == 1e-2
    assert td.optim is optim
    group = adam.param_groups[0]
    assert len(group["params"]) == 2 and all(a is b for a, b in zip(group["params"], params))
    assert group["lr"] == 1e-3 and group["betas"] == (0.9, 0.999)


# ---- groups, schedules and bookkeeping ---------------------------------------------


def test_changing_lr_in_param_groups_takes_effect(td):
    params, expected = make_params(td)
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    states: list[dict] = [{}, {}]
    for step, lr in enumerate([0.1, 0.1, 0.01, 0.5]):
        opt.param_groups[0]["lr"] = lr
        grads = grads_for(step)
        opt.zero_grad()
        set_grads(td, params, grads)
        opt.step()
        expected = [sgd_ref(e, g, s, lr=lr, momentum=0.9) for e, g, s in zip(expected, grads, states)]
        assert_params(params, expected)


def test_two_param_groups_use_their_own_options(td):
    params, expected = make_params(td)
    opt = optim.SGD([{"params": [params[0]]}, {"params": params[1], "lr": 0.5, "momentum": 0.5}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert [g["momentum"] for g in opt.param_groups] == [0, 0.5]
    options = [dict(lr=0.1), dict(lr=0.5, momentum=0.5)]
    states: list[dict] = [{}, {}]
    for step in range(3):
        grads = grads_for(step)
        opt.zero_grad()
        set_grads(td, params, grads)
        opt.step()
        expected = [sgd_ref(e, g, s, **o) for e, g, s, o in zip(expected, grads, states, options)]
        assert_params(params, expected)


def test_adam_param_groups_with_their_own_betas(td):
    params, expected = make_params(td)
    opt = optim.Adam([{"params": [params[0]], "betas": (0.5, 0.6)}, {"params": [params[1]], "amsgrad": True}], lr=0.05)
    options = [dict(lr=0.05, betas=(0.5, 0.6)), dict(lr=0.05, amsgrad=True)]
    states: list[dict] = [{}, {}]
    for step in range(3):
        grads = grads_for(step)
        opt.zero_grad()
        set_grads(td, params, grads)
        opt.step()
        expected = [adam_ref(e, g, s, **o) for e, g, s, o in zip(expected, grads, states, options)]
        assert_params(params, expected)


def test_zero_grad_to_none_or_zeros(td):
    params, _ = make_params(td)
    opt = optim.SGD(params, lr=0.1)
    set_grads(td, params, grads_for(0))
    opt.zero_grad(set_to_none=False)
    for p in params:
        np.testing.assert_array_equal(p.grad.numpy(), np.zeros(p.shape))
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    opt.step()  # no grads: nothing moves


def test_parameters_without_grad_are_skipped(td):
    params, expected = make_params(td)
    opt = optim.Adam(params, lr=0.1)
    states: list[dict] = [{}, {}]
    # Step 1: only the first parameter has a gradient; the second must not move,
    # and its step count must not advance (its first real step uses step 1's bias correction).
    for grads in ([grads_for(0)[0], None], grads_for(1)):
        opt.zero_grad()
        set_grads(td, params, grads)
        opt.step()
        expected = [e if g is None else adam_ref(e, g, s, lr=0.1) for e, g, s in zip(expected, grads, states)]
        assert_params(params, expected)
    assert states[0]["step"] == 2 and states[1]["step"] == 1


def test_model_training_step_end_to_end(td):
    layer = td.nn.Linear(2, 1, dtype="float64")
    layer.load_state_dict({"weight": np.array([[0.5, -0.5]]), "bias": np.array([0.1])})
    opt = optim.SGD(layer.parameters(), lr=0.1)
    x, y = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0], [2.0]])
    loss = nn.MSELoss()(layer(td.from_numpy(x)), td.from_numpy(y))
    opt.zero_grad()
    loss.backward()
    opt.step()
    out = x @ np.array([[0.5, -0.5]]).T + 0.1
    g = 2 * (out - y) / 2
    np.testing.assert_allclose(layer.weight.numpy(), [[0.5, -0.5]] - 0.1 * (g.T @ x), rtol=1e-12)
    np.testing.assert_allclose(layer.bias.numpy(), [0.1] - 0.1 * g.sum(0), rtol=1e-12)


def test_step_calls_the_closure_and_returns_its_value(td):
    params, _ = make_params(td)
    opt = optim.SGD(params, lr=0.1)

    def closure():
        opt.zero_grad()
        set_grads(td, params, grads_for(0))
        return 42.0

    before = params[0].numpy()
    assert opt.step(closure) == 42.0
    np.testing.assert_allclose(params[0].numpy(), before - 0.1 * grads_for(0)[0], rtol=1e-12)


def test_add_param_group_before_the_first_step(td):
    params, expected = make_params(td)
    opt = optim.SGD([params[0]], lr=0.1)
    opt.add_param_group({"params": [params[1]], "lr": 0.2})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.2]
    grads = grads_for(0)
    set_grads(td, params, grads)
    opt.step()
    assert_params(params, [expected[0] - 0.1 * grads[0], expected[1] - 0.2 * grads[1]])
    with pytest.raises(NotImplementedError, match="after their first step"):
        opt.add_param_group({"params": [nn.Parameter(td.ones(1))]})


def test_state_dict_is_not_supported_yet(td):
    opt = optim.Adam(make_params(td)[0])
    with pytest.raises(NotImplementedError, match="state"):
        opt.state_dict()


def test_repr_lists_groups_like_torch(td):
    opt = optim.SGD(make_params(td)[0], lr=0.01)
    assert repr(opt) == (
        "SGD (\n"
        "Parameter Group 0\n"
        "    dampening: 0\n"
        "    lr: 0.01\n"
        "    maximize: False\n"
        "    momentum: 0\n"
        "    nesterov: False\n"
        "    weight_decay: 0\n"
        ")"
    )


def test_collected_optimizer_frees_its_server_state(td):
    p = nn.Parameter(td.zeros(512, 512))  # 1 MiB
    opt = optim.Adam([p], lr=0.1)
    loss = p.sum()  # kept alive, so that no free happens between the two readings
    loss.backward()
    before = td.memory_info().bytes_in_use
    opt.step()  # allocates exp_avg and exp_avg_sq: 2 MiB
    assert td.memory_info().bytes_in_use >= before + 2 * 512 * 512 * 4
    del opt
    gc.collect()
    assert wait_for(lambda: td.memory_info().bytes_in_use <= before)


# ---- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda ps: optim.SGD(ps, lr=-0.1), "Invalid learning rate: -0.1"),
        (lambda ps: optim.SGD(ps, lr=0.1, momentum=-1), "Invalid momentum value: -1"),
        (lambda ps: optim.SGD(ps, lr=0.1, weight_decay=-0.5), "Invalid weight_decay value: -0.5"),
        (lambda ps: optim.SGD(ps, lr=0.1, nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
        (
            lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
            "Nesterov momentum requires a momentum and zero dampening",
        ),
        (lambda ps: optim.Adam(ps, lr=-1), "Invalid learning rate: -1"),
        (lambda ps: optim.Adam(ps, eps=-1e-8), "Invalid epsilon value: -1e-08"),
        (lambda ps: optim.Adam(ps, betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
        (lambda ps: optim.Adam(ps, betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
        (lambda ps: optim.AdamW(ps, weight_decay=-1), "Invalid weight_decay value: -1"),
        (lambda ps: optim.SGD(ps, lr=float("nan")), "Invalid learning rate: nan"),
        (lambda ps: optim.SGD([{"params": ps, "lr": -2}], lr=0.1), "Invalid learning rate: -2"),
    ],
)
def test_invalid_options_raise_torchs_value_errors(td, make, message):
    params, _ = make_params(td)
    with pytest.raises(ValueError) as info:
        make(params)
    assert str(info.value) == message


def test_invalid_params_are_rejected(td, server):
    params, _ = make_params(td)
    with pytest.raises(ValueError, match="^optimizer got an empty parameter list$"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="iterable of Tensors or dicts"):
        optim.SGD(params[0], lr=0.1)
    with pytest.raises(TypeError, match="optimizer can only optimize Tensors"):
        optim.SGD([params[0], np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match="ordered collections"):
        optim.SGD([{"params": set(params)}], lr=0.1)
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        optim.SGD([params[0] * 2], lr=0.1)
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        optim.SGD([{"params": params}, {"params": [params[0]]}], lr=0.1)
    with tensord.connect(server.address, timeout=30) as other:
        foreign = nn.Parameter(other.ones(2))
        with pytest.raises(ValueError, match="same tensord client"):
            optim.SGD([params[0], foreign], lr=0.1)


def test_invalid_lr_set_between_steps_is_caught_before_the_step(td):
    params, _ = make_params(td)
    opt = optim.SGD(params, lr=0.1)
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="Invalid learning rate: -1.0"):
        opt.step()


def test_duplicate_parameters_in_a_group_warn_and_count_once(td):
    params, expected = make_params(td)
    with pytest.warns(UserWarning, match="duplicate parameters"):
        opt = optim.SGD([params[0], params[0], params[1]], lr=0.1)
    assert len(opt.param_groups[0]["params"]) == 2
    grads = grads_for(0)
    set_grads(td, params, grads)
    opt.step()
    assert_params(params, [e - 0.1 * g for e, g in zip(expected, grads)])
