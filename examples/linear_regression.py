#!/usr/bin/env python3
"""Linear regression with tensord: the PyTorch tutorial, with `td.` where it says `torch.`.

Fits y = 2x + 1 (plus noise) with one `td.nn.Linear(1, 1)`, `MSELoss` and
plain SGD, all running on a tensord server, then draws the data and the
fitted line to a PNG.

    make run                                  # in another terminal
    .venv/bin/python examples/linear_regression.py [--target 127.0.0.1:50051]
        [--epochs 100] [--out linear_regression.png]   # --out '' skips the figure

The figure needs matplotlib (`.venv/bin/pip install matplotlib`).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

import tensord


@dataclass
class Fit:
    """What `run` gives back: the data, the model's predictions and its parameters before and after."""

    X: np.ndarray
    y: np.ndarray
    predicted: np.ndarray
    loss: float
    initial_state: dict[str, np.ndarray]
    final_state: dict[str, np.ndarray]


def run(td: tensord.Client, epochs: int = 100) -> Fit:
    """Trains the tutorial's model on `td`'s server for `epochs` full-batch SGD steps."""
    np.random.seed(0)
    X = np.random.rand(100, 1)
    y = 2 * X + 1 + 0.1 * np.random.randn(100, 1)
    X_tensor = td.from_numpy(X).float()
    y_tensor = td.from_numpy(y).float()

    class LinearRegression(td.nn.Module):
        def __init__(self):
            super(LinearRegression, self).__init__()
            self.linear = td.nn.Linear(1, 1)

        def forward(self, x):
            return self.linear(x)

    model = LinearRegression()
    criterion = td.nn.MSELoss()
    optimizer = td.optim.SGD(model.parameters(), lr=0.01)
    initial_state = model.state_dict()  # not in the tutorial: lets a test replay the training

    for epoch in range(epochs):
        outputs = model(X_tensor)
        loss = criterion(outputs, y_tensor)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    predicted = model(X_tensor).detach().numpy()
    final_loss = loss.item() if epochs > 0 else float("nan")
    return Fit(X, y, predicted, final_loss, initial_state, model.state_dict())


def pyplot():
    """matplotlib.pyplot, on the Agg backend when there is no display; exits with a hint if it is missing."""
    try:
        import matplotlib
    except ImportError:
        sys.exit("the figure needs matplotlib: `.venv/bin/pip install matplotlib`, or pass --out ''")
    if not os.environ.get("DISPLAY"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(fit: Fit, out: str) -> None:
    """Draws the data and the fitted line into the PNG `out` (Agg backend when there is no display)."""
    plt = pyplot()
    X, y, predicted = fit.X, fit.y, fit.predicted
    plt.scatter(X, y, label='Original data'); plt.plot(X, predicted, color='red', label='Fitted line')
    plt.legend()
    plt.savefig(out)
    plt.close()


def main(argv: Optional[Sequence[str]] = None) -> Fit:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051", help="tensord server address (HOST:PORT)")
    parser.add_argument("--out", default="linear_regression.png", help="PNG to draw into ('' for none)")
    parser.add_argument("--epochs", type=int, default=100, help="SGD steps")
    args = parser.parse_args(argv)
    if args.out:
        pyplot()  # fail before training, not after, when matplotlib is missing

    with tensord.connect(args.target) as td:
        fit = run(td, args.epochs)
    weight, bias = fit.final_state["linear.weight"], fit.final_state["linear.bias"]
    print(f"final loss {fit.loss:.6f}; learned weight {weight.item():.4f}, bias {bias.item():.4f} (true: 2, 1)")
    if args.out:
        plot(fit, args.out)
        print(f"figure written to {args.out}")
    return fit


if __name__ == "__main__":
    main()
