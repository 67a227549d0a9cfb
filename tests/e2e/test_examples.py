"""End-to-end runs of the programs in examples/ against the test server.

The linear regression is replayed step by step in NumPy float32 from the
parameters it started with, so its 100 SGD steps must land on the same
weight and bias up to float32 rounding; the MLP must classify its spiral
with at least 95% training accuracy. The figures are drawn only when
matplotlib is installed (it is not a test dependency).
"""
from __future__ import annotations

import importlib.util
import pathlib
import sys
import types

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> types.ModuleType:
    """Imports examples/<name>.py (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"tensord_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def sgd_linear_regression_float32(X, y, weight, bias, epochs: int, lr: float = 0.01):
    """The example's training in NumPy float32: MSELoss's gradient, then p += (-lr) * grad."""
    X, y = X.astype(np.float32), y.astype(np.float32)
    w, b = weight.astype(np.float32).copy(), bias.astype(np.float32).copy()
    neg_lr = np.float32(-lr)
    for _ in range(epochs):
        out = X @ w.T + b
        g = np.float32(2.0 / out.size) * (out - y)  # d mean((out - y)^2) / d out
        w = w + neg_lr * (g.T @ X)
        b = b + neg_lr * g.sum(0)
    return w, b


def test_linear_regression_matches_numpy_sgd(td):
    example = load("linear_regression")
    fit = example.run(td, epochs=100)
    start = fit.initial_state
    assert set(start) == {"linear.weight", "linear.bias"}
    w, b = sgd_linear_regression_float32(fit.X, fit.y, start["linear.weight"], start["linear.bias"], epochs=100)
    np.testing.assert_allclose(fit.final_state["linear.weight"], w, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fit.final_state["linear.bias"], b, rtol=1e-6, atol=1e-7)
    expected_predictions = fit.X.astype(np.float32) @ w.T + b
    np.testing.assert_allclose(fit.predicted, expected_predictions, rtol=1e-5, atol=1e-5)
    first_loss = np.mean((fit.X @ start["linear.weight"].T + start["linear.bias"] - fit.y) ** 2)
    assert fit.loss < first_loss  # it learned something (100 small steps do not reach y = 2x + 1)


def test_linear_regression_command_line(server, capsys):
    example = load("linear_regression")
    fit = example.main(["--target", server.address, "--epochs", "3", "--out", ""])
    printed = capsys.readouterr().out
    assert "final loss" in printed and "learned weight" in printed
    assert fit.final_state["linear.weight"].shape == (1, 1)


def test_linear_regression_figure(server, tmp_path):
    out = tmp_path / "fit.png"
    load("linear_regression").main(["--target", server.address, "--epochs", "2", "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mlp_classifier_learns_the_spiral(td):
    example = load("mlp_classifier")
    accuracy = example.run(td, epochs=200, hidden=64, lr=0.02)
    assert accuracy >= 0.95


def test_mlp_classifier_command_line_and_figure(server, tmp_path, capsys):
    example = load("mlp_classifier")
    out = tmp_path / "mlp.png"
    example.main(["--target", server.address, "--epochs", "5", "--hidden", "8", "--out", str(out)])
    assert "training accuracy" in capsys.readouterr().out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
