"""Autograd semantics through the real server: requires_grad, grad, backward, accumulation,
retain_graph, no_grad, detach, retain_grad, grad_fn, in-place rules and the version check,
PyTorch's errors, and the graph's memory being returned after backward.

Gradient values of every op are checked against finite differences in
test_autograd_gradcheck.py; this file is about the machinery.
"""
from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

import tensord
from servers import SANITIZER
from syncing import synced


def leaf(td, values, dtype="float64"):
    return td.tensor(np.asarray(values, dtype=dtype), requires_grad=True)


def test_requires_grad_on_creation_and_after(td):
    for t in (
        td.zeros(2, 3, requires_grad=True),
        td.ones(2, requires_grad=True),
        td.full((2,), 1.5, requires_grad=True),
        td.rand(3, requires_grad=True),
        td.randn(3, dtype="float64", requires_grad=True),
        td.arange(0.0, 3.0, requires_grad=True),
        td.tensor([1.0, 2.0], requires_grad=True),
    ):
        assert t.requires_grad and t.is_leaf and t.grad_fn is None and t.grad is None
        assert "requires_grad=True" in repr(t)
    t = td.from_numpy(np.ones(3, np.float32))
    assert not t.requires_grad
    assert t.requires_grad_() is t and t.requires_grad
    t.requires_grad = False
    assert not t.requires_grad
    assert not td.zeros(2).requires_grad


@pytest.mark.parametrize("dtype", ["int64", "int32", "bool", "complex64"])
def test_only_floating_tensors_can_require_grad(td, dtype):
    t = td.from_numpy(np.zeros(3, dtype))
    with pytest.raises(tensord.InvalidArgumentError, match=f"only tensors of floating-point dtype.*{dtype}"):
        synced(t.requires_grad_())  # ops are pipelined: the failure comes at a sync point
    with pytest.raises(tensord.InvalidArgumentError, match="floating-point"):
        synced(td.zeros(2, dtype=dtype, requires_grad=True))
    assert not t.requires_grad  # unchanged, and the server still serves it
    np.testing.assert_array_equal(t.numpy(), np.zeros(3, dtype))


def test_grad_fn_names_and_leaves(td):
    x = leaf(td, [1.0, 2.0])
    y = x * 2
    assert repr(y.grad_fn) == "<MulBackward0>" and y.grad_fn.name() == "MulBackward0"
    assert "grad_fn=<MulBackward0>" in repr(y)
    assert not y.is_leaf and y.requires_grad
    assert repr((y + 1).grad_fn) == "<AddBackward0>"
    assert repr(y.sum().grad_fn) == "<SumBackward0>"
    assert repr(y.T.grad_fn) == "<PermuteBackward0>"  # .T is a permute, as in torch
    assert repr(y.unsqueeze(0).transpose(0, 1).grad_fn) == "<TransposeBackward0>"
    assert repr(y[0].grad_fn) == "<IndexBackward0>"
    assert repr(y.float().grad_fn) == "<ToBackward0>"
    assert repr(td.nn.functional.log_softmax(y, 0).grad_fn) == "<LogSoftmaxBackward0>"
    # Ops that give no gradient: comparisons, argmax, integer results.
    assert not (y > 1).requires_grad
    assert not y.argmax().requires_grad
    assert not y.long().requires_grad
    # A tensor whose inputs need no grad is untracked.
    assert not (td.ones(2) * 2).requires_grad


def test_backward_on_a_scalar_fills_leaf_grads(td):
    x = leaf(td, [[1.0, 2.0], [3.0, 4.0]])
    w = leaf(td, [0.5, -1.0])
    loss = ((x * w).sum(1) ** 2).mean()
    loss.backward()
    xs = np.array([[1.0, 2.0], [3.0, 4.0]])
    ws = np.array([0.5, -1.0])
    rows = xs @ ws
    np.testing.assert_allclose(x.grad.numpy(), (rows[:, None] * ws[None, :]), rtol=1e-12)
    np.testing.assert_allclose(w.grad.numpy(), (rows[:, None] * xs).sum(0), rtol=1e-12)
    assert x.grad.dtype == np.float64 and x.grad.shape == (2, 2)
    assert not x.grad.requires_grad


def test_gradients_accumulate_and_zero_grad_resets(td):
    x = leaf(td, [1.0, -2.0, 3.0])
    (x * x).sum().backward()
    held = x.grad  # a handle on the grad itself: accumulation shows through it
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * np.array([1.0, -2.0, 3.0]))
    np.testing.assert_allclose(held.numpy(), 4 * np.array([1.0, -2.0, 3.0]))
    x.grad = None
    assert x.grad is None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0, 3.0])


def test_backward_with_a_gradient_for_non_scalars(td):
    x = leaf(td, [1.0, 2.0, 3.0])
    y = x * x
    with pytest.raises(tensord.InvalidArgumentError, match="grad can be implicitly created only for scalar outputs"):
        y.backward()
        td.synchronize()
    y.backward(td.tensor([1.0, 0.5, 0.0], dtype="float64"))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0, 0.0])
    with pytest.raises(tensord.InvalidArgumentError, match=r"Mismatch in shape: grad_output\[0\] has a shape of \[2\]"):
        (x * 2).backward(td.ones(2, dtype="float64"))
        td.synchronize()


def test_backward_through_a_tensor_without_grad_is_refused(td):
    t = td.ones(3)
    with pytest.raises(tensord.FailedPreconditionError, match="does not require grad and does not have a grad_fn"):
        t.sum().backward()
        td.synchronize()
    with pytest.raises(NotImplementedError, match="create_graph"):
        leaf(td, [1.0]).sum().backward(create_graph=True)


def test_second_backward_needs_retain_graph(td):
    x = leaf(td, [1.0, 2.0])
    w = leaf(td, [3.0, 4.0])
    loss = (x * w).sum()
    loss.backward(retain_graph=True)
    loss.backward()  # the graph was kept: the grads add up
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 8.0])
    with pytest.raises(tensord.FailedPreconditionError, match="backward through the graph a second time.*retain_graph=True"):
        loss.backward()
        td.synchronize()
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 8.0])  # nothing was added
    # The server is fine and a new graph over the same leaves works.
    (x * w).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [9.0, 12.0])


def test_multiple_roots_and_shared_subgraphs(td):
    x = leaf(td, [1.0, 2.0])
    h = x * x  # used by both roots
    a = h.sum()
    b = (h * 3).sum()
    tensord.autograd.backward([a, b])
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.array([1.0, 2.0]) * 4)


def test_no_grad_stops_recording_and_is_per_thread(td):
    x = leaf(td, [1.0, 2.0])
    with td.no_grad():
        y = x * 2
        assert not tensord.is_grad_enabled()
        other = {}
        thread = threading.Thread(target=lambda: other.setdefault("t", (x * 2).requires_grad))
        thread.start()
        thread.join()
        with tensord.enable_grad():
            assert (x * 2).requires_grad
    assert tensord.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert other["t"] is True  # another thread's mode is its own

    @tensord.no_grad()
    def doubled(t):
        return t * 2

    assert not doubled(x).requires_grad
    tensord.set_grad_enabled(False)
    try:
        assert not (x + 1).requires_grad
    finally:
        tensord.set_grad_enabled(True)
    with tensord.set_grad_enabled(False):
        assert not x.T.requires_grad and not x.float().requires_grad  # views and copies too
    assert (x + 1).requires_grad


def test_detach_shares_storage_but_not_history(td):
    x = leaf(td, [1.0, 2.0])
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.is_leaf
    with td.no_grad():
        d.add_(10)
    np.testing.assert_allclose(y.numpy(), [12.0, 14.0])  # same storage
    z = d * x
    z.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [12.0, 14.0])  # d is a constant


def test_retain_grad_keeps_a_non_leaf_gradient(td):
    x = leaf(td, [1.0, 2.0])
    h = x * 3
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * np.array([3.0, 6.0]))
    np.testing.assert_allclose(x.grad.numpy(), 18 * np.array([1.0, 2.0]))
    g = x * 1
    assert g.grad is None  # not retained: None, as in torch
    with pytest.raises(tensord.FailedPreconditionError, match="requires_grad=False"):
        td.ones(2).retain_grad()
        td.synchronize()


def test_only_leaves_can_stop_requiring_grad(td):
    x = leaf(td, [1.0])
    y = x * 2
    with pytest.raises(tensord.FailedPreconditionError, match="only change requires_grad flags of leaf variables"):
        synced(y.requires_grad_(False))
    assert y.requires_grad  # unchanged
    assert y.requires_grad_(True).requires_grad


def test_in_place_on_a_leaf_that_requires_grad(td):
    w = leaf(td, [1.0, 2.0])
    with pytest.raises(tensord.FailedPreconditionError, match="a leaf Variable that requires grad is being used in an in-place operation"):
        synced(w.add_(1))
    with pytest.raises(tensord.FailedPreconditionError, match="only allowed under `td.no_grad"):
        synced((w * 1).mul_(2))
    np.testing.assert_allclose(w.numpy(), [1.0, 2.0])  # untouched
    # The hand-written SGD step of the PyTorch tutorials.
    (w * w).sum().backward()
    with td.no_grad():
        w.add_(w.grad, alpha=-0.1)
        w.grad.zero_()
    np.testing.assert_allclose(w.numpy(), [0.8, 1.6])
    np.testing.assert_allclose(w.grad.numpy(), [0.0, 0.0])


def test_a_saved_tensor_changed_in_place_is_detected(td):
    x = leaf(td, [1.0, 2.0])
    w = leaf(td, [3.0, 4.0])
    y = (x * w).sum()
    with td.no_grad():
        w.mul_(2)
    with pytest.raises(tensord.FailedPreconditionError, match="modified by an inplace operation.*version 1; expected version 0"):
        y.backward()
        td.synchronize()
    # Ops that saved nothing do not care.
    z = (x + w).sum()
    with td.no_grad():
        w.mul_(2)
    z.backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 1.0])


def test_grad_assignment_checks_shape_and_dtype(td):
    x = leaf(td, [1.0, 2.0])
    x.grad = td.tensor([5.0, 6.0], dtype="float64")
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 6.0])
    (x * 1).sum().backward()  # adds into the assigned grad
    np.testing.assert_allclose(x.grad.numpy(), [6.0, 7.0])
    with pytest.raises(tensord.InvalidArgumentError, match="different size"):
        x.grad = td.zeros(3, dtype="float64")
        td.synchronize()
    with pytest.raises(tensord.InvalidArgumentError, match="different type"):
        x.grad = td.zeros(2, dtype="float32")
        td.synchronize()
    with pytest.raises(TypeError):
        x.grad = np.zeros(2)


def test_mixed_dtypes_give_each_leaf_its_own_dtype(td):
    a = leaf(td, [1.0, 2.0], "float32")
    b = leaf(td, [3.0, 4.0], "float64")
    (a * b).sum().backward()  # computed in float64
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_allclose(a.grad.numpy(), [3.0, 4.0])
    h = leaf(td, [1.0, 2.0], "float16")
    (h.float() * 2).sum().backward()
    assert h.grad.dtype == np.float16
    np.testing.assert_array_equal(h.grad.numpy(), np.array([2.0, 2.0], np.float16))


def test_views_of_leaves_route_gradients_back(td):
    x = leaf(td, np.arange(6.0).reshape(2, 3))
    (x.T[1:] * 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 2, 2], [0, 2, 2]])
    x.grad = None
    (x.reshape(3, 2).expand(2, 3, 2).sum(0) * x.view(3, 2)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * np.arange(6.0).reshape(2, 3))


def test_graph_memory_is_returned_after_backward(server_factory):
    server = server_factory()
    with tensord.connect(server.address, timeout=30) as td:
        x = td.randn(256, 256, dtype="float64", requires_grad=True)
        baseline = td.memory_info().bytes_in_use
        h = x
        for _ in range(4):
            h = (h * h).tanh()  # each step saves 256x256 doubles
        loss = h.sum()
        del h
        gc.collect()
        held = td.memory_info().bytes_in_use - baseline
        assert held >= 4 * 256 * 256 * 8
        loss.backward()
        after = td.memory_info().bytes_in_use - baseline
        grad_bytes = 256 * 256 * 8
        # What is left: the grad, the loss itself and its graph's (emptied) nodes.
        assert after <= grad_bytes + 16384, (held, after)
        with pytest.raises(tensord.FailedPreconditionError, match="second time"):
            loss.backward()
            td.synchronize()


def test_a_million_node_chain_backpropagates_and_frees(server_factory):
    """A running total kept over a million steps without detach(): the graph is
    released iteratively, not by a million nested destructors (which overflowed
    the stack and killed the server at a few hundred thousand)."""
    # Under a sanitizer (make test-asan) 200,000 nodes: still far past the
    # depth that overflowed, with frames several times larger there.
    steps = 200_000 if SANITIZER else 1_000_000
    server = server_factory()
    with tensord.connect(server.address, timeout=300) as td, tensord.connect(server.address) as other:
        kept = other.tensor([1.0, 2.0, 3.0])
        x = td.tensor([1.0], dtype="float64", requires_grad=True)
        total = td.zeros(1, dtype="float64")
        for _ in range(steps):
            total = total + x
        total.backward()
        assert x.grad.item() == float(steps)
        total.free()
        # Every node with both edges into the same node (y + y) takes the other path of the release.
        y = x * 1.0
        for _ in range(100_000):
            y = (y + y) * 0.5
        y.free()
        td.synchronize()
        assert td.memory_info().session_tensors == 1  # x: every intermediate is gone
        np.testing.assert_array_equal(kept.numpy(), [1.0, 2.0, 3.0])
        np.testing.assert_array_equal((x * 2).detach().numpy(), [2.0])
    assert server.proc.poll() is None, server.stderr_text()
