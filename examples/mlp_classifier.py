#!/usr/bin/env python3
"""A small MLP that learns to tell the arms of a 2-D spiral apart, trained on a tensord server.

The data set is the classic three-arm spiral (points along three
interleaved arms, with noise on the angle), made with NumPy from a fixed
seed. The model is `Linear(2, H) -> ReLU -> Linear(H, C)`, trained full
batch with `CrossEntropyLoss` and `Adam`; it prints the training accuracy
and draws the data over the learned decision regions to a PNG.

    make run                                  # in another terminal
    .venv/bin/python examples/mlp_classifier.py [--target 127.0.0.1:50051]
        [--epochs 500] [--hidden 64] [--out mlp_classifier.png]   # --out '' skips the figure

The figure needs matplotlib (`.venv/bin/pip install matplotlib`).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

import numpy as np

import tensord


def spiral(points_per_class: int = 100, classes: int = 3, noise: float = 0.2, seed: int = 0):
    """`classes` interleaved spiral arms: X [N, 2] float32 in [-1, 1], labels [N] int64."""
    rng = np.random.default_rng(seed)
    X = np.zeros((points_per_class * classes, 2), dtype=np.float32)
    labels = np.zeros(points_per_class * classes, dtype=np.int64)
    for c in range(classes):
        rows = slice(c * points_per_class, (c + 1) * points_per_class)
        radius = np.linspace(0.05, 1.0, points_per_class)
        angle = np.linspace(c * 4, (c + 1) * 4, points_per_class) + noise * rng.standard_normal(points_per_class)
        X[rows] = np.c_[radius * np.sin(angle), radius * np.cos(angle)]
        labels[rows] = c
    return X, labels


def run(
    td: tensord.Client,
    epochs: int = 500,
    hidden: int = 64,
    lr: float = 0.01,
    points_per_class: int = 100,
    classes: int = 3,
    seed: int = 0,
    out: str = "",
) -> float:
    """Trains the MLP on `td`'s server and returns its training accuracy (0..1); draws to `out` if given."""
    X, labels = spiral(points_per_class, classes, seed=seed)
    td.manual_seed(seed)  # the same initial weights on every run
    X_tensor = td.from_numpy(X)
    y_tensor = td.from_numpy(labels)

    model = td.nn.Sequential(td.nn.Linear(2, hidden), td.nn.ReLU(), td.nn.Linear(hidden, classes))
    criterion = td.nn.CrossEntropyLoss()
    optimizer = td.optim.Adam(model.parameters(), lr=lr)

    for epoch in range(epochs):
        loss = criterion(model(X_tensor), y_tensor)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (epoch + 1) % 100 == 0:
            print(f"epoch {epoch + 1}: loss {loss.item():.4f}")

    with tensord.no_grad():
        predicted = model(X_tensor).argmax(dim=1).numpy()
    accuracy = float((predicted == labels).mean())
    print(f"training accuracy: {accuracy:.1%} ({points_per_class * classes} points, {classes} classes)")
    if out:
        plot(td, model, X, labels, out)
        print(f"figure written to {out}")
    return accuracy


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


def plot(td: tensord.Client, model: tensord.nn.Module, X: np.ndarray, labels: np.ndarray, out: str) -> None:
    """Draws the points over the model's decision regions into the PNG `out`."""
    plt = pyplot()
    xs = np.linspace(-1.1, 1.1, 200, dtype=np.float32)
    grid = np.stack(np.meshgrid(xs, xs), axis=-1).reshape(-1, 2)
    with tensord.no_grad():
        regions = model(td.from_numpy(grid)).argmax(dim=1).numpy().reshape(len(xs), len(xs))
    plt.contourf(xs, xs, regions, alpha=0.3, cmap="brg")
    plt.scatter(X[:, 0], X[:, 1], c=labels, s=12, cmap="brg")
    plt.gca().set_aspect("equal")
    plt.savefig(out)
    plt.close()


def main(argv: Optional[Sequence[str]] = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051", help="tensord server address (HOST:PORT)")
    parser.add_argument("--out", default="mlp_classifier.png", help="PNG to draw into ('' for none)")
    parser.add_argument("--epochs", type=int, default=500, help="full-batch Adam steps")
    parser.add_argument("--hidden", type=int, default=64, help="hidden units")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate")
    args = parser.parse_args(argv)
    if args.out:
        pyplot()  # fail before training, not after, when matplotlib is missing

    with tensord.connect(args.target) as td:
        return run(td, epochs=args.epochs, hidden=args.hidden, lr=args.lr, out=args.out)


if __name__ == "__main__":
    main()
