"""Advanced indexing end to end: x[idx], x[mask], lists, Python bools, their
writes (x[mask] = v, index_put_ with accumulate), nonzero, their gradients,
and what the server does with bad index expressions.

NumPy is the oracle for values and shapes (PyTorch follows the same rules;
tests/parity compares against PyTorch itself). Gradients are checked against
finite differences in test_autograd_gradcheck.py; here their exact values at
repeated indices and masks.
"""
from __future__ import annotations

import re

import grpc
import ml_dtypes
import numpy as np
import pytest

import tensord
from raw_wire import RawSession
from syncing import synced
from tensord.v1 import tensord_pb2 as pb

A = np.arange(60, dtype=np.float64).reshape(3, 4, 5) - 20
I = np.array([2, 0, -1, 2])
J = np.array([[0, 3], [-4, 1]])
K = np.array([4, 0, -5, 1])
M01 = (A[:, :, 0] % 3) == 0  # a mask over dims 0-1
M1 = np.array([True, False, True, True])
M2 = np.array([False, True, True, False, True])

PARTS = {"i": I, "j": J, "k": K, "k1": K[:1], "jrow": J[:, :1] % 3, "jmod": J % 4, "m01": M01, "m1": M1, "m2": M2}
# name -> key, built by `p`, which gives a part of PARTS as a tensor, an ndarray or a list
READS = {
    "int-tensor": lambda p: (p("i"),),
    "int-tensor-dim1": lambda p: (slice(None), p("j")),
    "ellipsis-then-tensor": lambda p: (Ellipsis, p("k")),
    "apart-tensors-lead": lambda p: (p("i"), slice(None), p("k")),
    "apart-with-slice": lambda p: (p("i"), slice(1, None), p("k")),
    "broadcast-pair": lambda p: (p("jrow"), p("jmod")),
    "int-then-tensor": lambda p: (1, p("j")),
    "int-tensor-slice": lambda p: (1, p("j"), slice(None, None, 2)),
    "new-axis-first": lambda p: (None, p("i")),
    "new-axis-after": lambda p: (p("i"), None),
    "mask-2d": lambda p: (p("m01"),),
    "mask-2d-then-slice": lambda p: (p("m01"), slice(1, 4)),
    "mask-dim1": lambda p: (slice(None), p("m1")),
    "mask-last": lambda p: (Ellipsis, p("m2")),
    "mask-and-int": lambda p: (slice(1, None), p("m1"), 2),
    "mask-and-tensor": lambda p: (slice(None), p("m1"), p("k1")),
}


@pytest.mark.parametrize("dtype", ["float64", "int32", "bool", "bfloat16", "complex64"])
@pytest.mark.parametrize("name", READS)
def test_advanced_reads_match_numpy(td, name, dtype):
    a = A.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
    x = td.from_numpy(a)
    want = a[READS[name](lambda part: PARTS[part])]
    for form in (td.from_numpy, lambda part: part, lambda part: part.tolist()):
        got = x[READS[name](lambda part: form(PARTS[part]))]
        out = got.numpy()
        assert out.dtype == want.dtype and out.shape == want.shape, (out.shape, want.shape)
        np.testing.assert_array_equal(out, want)
        assert got.is_contiguous()


def test_reads_of_a_strided_view(td):
    base = td.from_numpy(A)
    x = base.permute(2, 0, 1)[1:, :, ::2]
    a = A.transpose(2, 0, 1)[1:, :, ::2]
    np.testing.assert_array_equal(x[I % 3 - 1].numpy(), a[I % 3 - 1])
    np.testing.assert_array_equal(x[:, [True, False, True]].numpy(), a[:, [True, False, True]])
    np.testing.assert_array_equal(x[x > 0].numpy(), a[a > 0])
    np.testing.assert_array_equal(base[td.from_numpy(A > 0)].numpy(), A[A > 0])


def test_python_bools_and_empty_indices(td):
    x = td.from_numpy(A)
    assert x[True].shape == (1, 3, 4, 5) and x[False].shape == (0, 3, 4, 5)
    assert x[None, True, 1].shape == (1, 1, 4, 5)
    np.testing.assert_array_equal(x[True].numpy(), A[None])
    assert x[[]].shape == (0, 4, 5)
    assert x[:, []].shape == (3, 0, 5)
    assert x[td.tensor([], dtype="int64")].shape == (0, 4, 5)
    assert x[td.zeros(3, 4, 5, dtype="bool")].shape == (0,)
    empty = td.zeros(0, 3)
    assert empty[td.tensor([], dtype="int64")].shape == (0, 3)
    assert empty[:, [2, 0]].shape == (0, 2)
    scalar = td.tensor(5.0)
    np.testing.assert_array_equal(scalar[True].numpy(), [5.0])
    assert scalar[False].shape == (0,)
    assert scalar[td.tensor(True)].shape == (1,)


def test_zero_dim_and_int32_and_uint8_indices(td):
    x = td.from_numpy(A)
    np.testing.assert_array_equal(x[td.tensor(2)].numpy(), A[2])  # a 0-d tensor index copies, as in torch
    np.testing.assert_array_equal(x[td.tensor([2, 0], dtype="int32")].numpy(), A[[2, 0]])
    mask = np.array([1, 0, 1], dtype=np.uint8)  # uint8 indices are masks, as in torch
    np.testing.assert_array_equal(x[mask].numpy(), A[mask.astype(bool)])
    np.testing.assert_array_equal(x[td.from_numpy(mask)].numpy(), A[mask.astype(bool)])


def test_torch_reads_a_short_list_of_sequences_as_a_tuple(td):
    x = td.from_numpy(A)
    np.testing.assert_array_equal(x[[[0, 2], [1, 3]]].numpy(), A[[0, 2], [1, 3]])  # t[[0, 2], [1, 3]]
    np.testing.assert_array_equal(x[[0, [1]]].numpy(), A[0, [1]])
    np.testing.assert_array_equal(x[np.array([[0, 2], [1, 0]])].numpy(), A[np.array([[0, 2], [1, 0]])])  # one index


def test_large_index_is_uploaded_and_big_endian_literals_are_read_right(td):
    n = 20_000  # 160 KB of int64: more than a command carries inline
    rng = np.random.default_rng(1)
    values = rng.standard_normal(1000)
    idx = rng.integers(-1000, 1000, n)
    x = td.from_numpy(values)
    np.testing.assert_array_equal(x[idx].numpy(), values[idx])
    big = np.array([3, -1, 0], dtype=">i8")
    np.testing.assert_array_equal(x[big].numpy(), values[big.astype(np.int64)])


# ---- writes -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "int16", "complex128"])
def test_setitem_matches_numpy(td, dtype):
    a = A.astype(dtype)
    x = td.from_numpy(a)
    steps = [  # (key, value), applied in turn to both
        ((A > 3,), 0),
        (([2, 0], slice(None), 1), np.arange(4, dtype=dtype)),
        ((slice(None), M1), 7),
        ((1, [3, 0], slice(None, None, 2)), np.arange(3, dtype=dtype)[None]),
        ((Ellipsis, M2), np.ones((3, 4, 1), dtype=dtype)),
        ((0,), 5),
        ((slice(1, None), slice(None), 0), np.arange(8, dtype=dtype).reshape(2, 4)),
        ((I[:2], slice(None), K[:2]), -1),
    ]
    for key, value in steps:
        a[key] = value
        # Masks go as tensors, lists and index arrays inline, values as tensors.
        x[tuple(td.from_numpy(k) if isinstance(k, np.ndarray) and k.dtype == bool else k for k in key)] = (
            td.from_numpy(value) if isinstance(value, np.ndarray) else value
        )
        np.testing.assert_array_equal(x.numpy(), a)


def test_setitem_casts_values_and_reads_them_before_writing(td):
    x = td.tensor([0, 0, 0], dtype="int32")
    x[[0, 2]] = td.tensor([1.7, -2.5], dtype="float64")  # cast like copy_ (torch refuses the dtypes)
    np.testing.assert_array_equal(x.numpy(), [1, 0, -2])
    y = td.tensor([1.0, 2.0, 3.0, 4.0])
    y[[0, 1, 2, 3]] = y[[3, 2, 1, 0]]
    np.testing.assert_array_equal(y.numpy(), [4.0, 3.0, 2.0, 1.0])
    z = td.tensor([1.0, 2.0, 3.0])
    z[1:] = z[:2]  # the values are a view of the target's own storage: read before written
    np.testing.assert_array_equal(z.numpy(), [1.0, 1.0, 2.0])
    w = td.zeros(2, 3)
    w[0] = [1.0, 2.0, 3.0]  # a list value is uploaded
    w[1, [True, False, True]] = np.array([7.0, 8.0])
    np.testing.assert_array_equal(w.numpy(), [[1, 2, 3], [7, 0, 8]])


def test_index_put_accumulates_repeated_indices(td):
    x = td.zeros(4)
    x.index_put_((td.tensor([0, 2, 0, 0]),), td.tensor([1.0, 2.0, 3.0, 4.0]), accumulate=True)
    np.testing.assert_array_equal(x.numpy(), [8.0, 0.0, 2.0, 0.0])
    m = td.zeros(3, 3, dtype="int64")
    rows, cols = np.array([0, 1, 1, 0]), np.array([2, 0, 0, 2])
    m.index_put_((td.from_numpy(rows), td.from_numpy(cols)), 5, accumulate=True)
    expected = np.zeros((3, 3), dtype=np.int64)
    np.add.at(expected, (rows, cols), 5)
    np.testing.assert_array_equal(m.numpy(), expected)
    y = td.tensor([1.0, 2.0])
    out = y.index_put((td.tensor([1, 1]),), td.tensor(10.0), accumulate=True)
    np.testing.assert_array_equal(out.numpy(), [1.0, 22.0])
    np.testing.assert_array_equal(y.numpy(), [1.0, 2.0])  # index_put leaves self alone


def test_writes_follow_the_in_place_rules(td):
    w = td.tensor([1.0, 2.0, 3.0], requires_grad=True)
    with pytest.raises(tensord.FailedPreconditionError, match="leaf"):
        w[[0]] = 0.0
        td.synchronize()
    with tensord.no_grad():
        w[[0]] = 0.0
    np.testing.assert_array_equal(w.detach().numpy(), [0.0, 2.0, 3.0])
    # A tensor saved for backward and then written through an index is caught.
    x = td.tensor([1.0, 2.0], requires_grad=True)
    c = td.tensor([3.0, 4.0])
    y = (x * c).sum()
    c[td.tensor([True, False])] = 0.0
    with pytest.raises(tensord.Error, match="modified by an inplace operation|version"):
        y.backward()
        td.synchronize()
    e = td.zeros(3).expand(2, 3)
    with pytest.raises(tensord.InvalidArgumentError, match="expanded view"):
        e[[0]] = 1.0
        td.synchronize()


# ---- gradients ------------------------------------------------------------------------------


def test_gradient_accumulates_at_repeated_indices_and_masks(td):
    x = td.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    (x[[0, 0, 1]] * td.tensor([[1.0], [2.0], [3.0]])).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[3.0, 3.0, 3.0], [3.0, 3.0, 3.0]])
    x.grad = None
    x[x > 2.5].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 0, 1], [1, 1, 1]])
    x.grad = None
    x[:, [2, 2]][[1, 1]].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 0, 0], [0, 0, 4]])
    assert x[[0]].grad_fn.name() == "IndexBackward0"


# ---- nonzero -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "bool", "int8", "complex64", "bfloat16"])
def test_nonzero_matches_numpy(td, dtype):
    if dtype in ("float32", "bfloat16", "complex64"):  # -0.0 is zero, NaN is not
        a = np.array([[0.0, -0.0, 1.5], [np.nan, 0.0, -2.0]]).astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
    else:
        a = np.array([[0, 0, 1], [3, 0, -2]]).astype(dtype)
    x = td.from_numpy(a)
    want = np.array([[0, 2], [1, 0], [1, 2]])
    np.testing.assert_array_equal(x.nonzero().numpy(), want)
    np.testing.assert_array_equal(x.argwhere().numpy(), want)
    rows, cols = x.nonzero(as_tuple=True)
    np.testing.assert_array_equal(rows.numpy(), want[:, 0])
    np.testing.assert_array_equal(cols.numpy(), want[:, 1])
    np.testing.assert_array_equal(x.T.nonzero().numpy(), np.argwhere(a.T != 0))
    assert td.tensor(0.0).nonzero().shape == (0, 0) and td.tensor(2.0).nonzero().shape == (1, 0)


# ---- bad index expressions -------------------------------------------------------------------

CLIENT_ERRORS = {  # (td, x) -> the failing call, and the server's message
    "out-of-bounds": (lambda td, x: x[[0, 3]], r"index 3 is out of bounds for dimension 0 with size 3"),
    "negative-out-of-bounds": (lambda td, x: x[:, td.tensor([-5])], r"index -5 is out of bounds for dimension 1 with size 4"),
    "float-tensor": (lambda td, x: x[td.tensor([1.0])], r"long, int, byte or bool tensors, got float32"),
    "mask-shape": (lambda td, x: x[td.tensor([True, False])], r"shape of the mask \[2\] does not match the shape \[3\]"),
    "mask-shape-2d": (lambda td, x: x[:, np.ones((4, 4), dtype=bool)], r"mask \[4, 4\] .* \[4, 5\]"),
    "broadcast": (lambda td, x: x[[0, 1], [0, 1, 2]], r"could not be broadcast together with shapes \[2\], \[3\]"),
    "too-many": (lambda td, x: x[0, 0, 0, [0]], r"too many indices for tensor of dimension 3"),
    "value-shape": (lambda td, x: x.__setitem__([0, 1], td.from_numpy(np.ones((3, 4)))),
                    r"value tensor of shape \[3, 4\] cannot be broadcast to indexing result of shape \[2, 4, 5\]"),
    "value-range": (lambda td, x: x.to("uint8").__setitem__([0], 300), r"300.*uint8"),
    "empty-dim": (lambda td, x: x[:0][[0]], r"index 0 is out of bounds for dimension 0 with size 0"),
}


@pytest.mark.parametrize("case", CLIENT_ERRORS, ids=str)
def test_bad_index_is_refused_and_loses_nothing(td, case):
    fn, message = CLIENT_ERRORS[case]
    x = td.from_numpy(A)
    keep = td.from_numpy(A * 2)
    with pytest.raises(tensord.InvalidArgumentError, match=message):
        out = fn(td, x)  # a read gives a tensor, a write None
        synced(td if out is None else out)
    np.testing.assert_array_equal(x.numpy(), A)
    np.testing.assert_array_equal(keep.numpy(), A * 2)
    np.testing.assert_array_equal(x[[1]].numpy(), A[[1]])  # the session goes on


def literal(dtype: int, shape, data: bytes) -> pb.IndexItem:
    return pb.IndexItem(array=pb.IndexArray(dtype=dtype, shape=shape, data=data))


RAW_ERRORS = {
    "literal-short": ([literal(pb.DTYPE_INT64, [2], b"\0" * 15)], 0, r"needs 16 bytes, got 15"),
    "literal-float": ([literal(pb.DTYPE_FLOAT32, [1], b"\0" * 4)], 0, r"int64 or bool, got float32"),
    "literal-negative-shape": ([literal(pb.DTYPE_INT64, [-1], b"")], 0, r"-1"),
    "literal-dtype-99": ([literal(99, [1], b"\0" * 8)], 0, r"99"),
    "tensor-item-without-tensor": ([pb.IndexItem(tensor=True)], 0, r"more tensor items than the 0"),
    "tensor-without-item": ([pb.IndexItem(select=0)], 1, r"got 1 tensor arguments but the index uses 0"),
    "empty-item": ([pb.IndexItem()], 0, r"index item with no value"),
}


@pytest.mark.parametrize("case", RAW_ERRORS, ids=str)
def test_malformed_index_requests(server, case):
    items, extra_tensors, message = RAW_ERRORS[case]
    with RawSession(server.address) as raw:
        handle = raw.upload(A).handle
        index = raw.upload(np.array([0], dtype=np.int64)).handle
        request = pb.OpRequest(op="index", args=[pb.OpArg(handle=handle)])
        request.args.extend([pb.OpArg(handle=index)] * extra_tensors)
        request.attrs["items"].index.items.extend(items)
        with pytest.raises(grpc.RpcError) as error:
            raw.op(request)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert re.search(message, error.value.details()), error.value.details()
        assert sorted(raw.handles()) == sorted([handle, index])
        np.testing.assert_array_equal(raw.download_numpy(handle), A)
        view = pb.ViewRequest(handle=handle, index=pb.ViewRequest.Index(items=[pb.IndexItem(tensor=True)]))
        with pytest.raises(grpc.RpcError, match="copy, not a view"):
            raw.view(view)
