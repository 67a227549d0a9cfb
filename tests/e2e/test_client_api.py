"""End-to-end tests of the Python client API against the real tensord binary.

Each test drives `tensord` (the package in client_py/) through the fixtures of
conftest.py and compares what comes back with NumPy: values, dtypes, shapes
and, where the contract promises it, the exact strides.
"""
from __future__ import annotations

import gc
import threading
import time

import grpc
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tensord
from tensord.v1 import tensord_pb2 as pb
from tensord.v1.tensord_pb2_grpc import TensordStub
from syncing import synced

BF16 = np.dtype(ml_dtypes.bfloat16)
ALL_DTYPES = [
    np.dtype(name)
    for name in ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64",
                 "complex64", "complex128")
] + [BF16]


def sample(shape: tuple[int, ...], dtype=np.float64, seed: int = 0) -> np.ndarray:
    """Distinct, exactly representable values of `dtype` (so equality is exact)."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    if dtype == np.bool_:
        return (rng.integers(0, 2, n) == 1).reshape(shape)
    values = rng.permutation(n) % 100 - (0 if dtype.kind == "u" else 50)
    if dtype.kind == "c":
        values = values + 1j * (values[::-1] % 7)
    return values.astype(dtype).reshape(shape)  # last, so big-endian dtypes stay big-endian


def element_strides(a: np.ndarray) -> tuple[int, ...]:
    return tuple(s // a.itemsize for s in a.strides)


def assert_strides(tensor_strides: tuple[int, ...], a: np.ndarray) -> None:
    """The tensor's element strides equal the array's, except along size-1 dims (never used)."""
    assert len(tensor_strides) == a.ndim
    expected = element_strides(a)
    for dim, size in enumerate(a.shape):
        if size != 1:
            assert tensor_strides[dim] == expected[dim], f"strides {tensor_strides} vs NumPy's {expected}"


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype.newbyteorder("=")
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)


def wait_for(condition, what: str, timeout_s: float = 10.0) -> None:
    """Polls `condition` until true; the GC frees happen on the client's background thread."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)


# ---- round trips -------------------------------------------------------------


DENSE_LAYOUTS = {
    "c_order": lambda: sample((3, 4, 5)),
    "fortran": lambda: np.asfortranarray(sample((3, 4, 5))),
    "transposed": lambda: sample((3, 4, 5)).transpose(2, 0, 1),
    "broadcast": lambda: np.broadcast_to(sample((1, 5)), (4, 5)),
    "broadcast_new_dim": lambda: np.broadcast_to(sample((5,)), (3, 5)),
    "size_one_dims": lambda: sample((4, 1, 3))[:, :, :],
    "overlapping_windows": lambda: np.lib.stride_tricks.sliding_window_view(sample((8,)), 3),
}


@pytest.mark.parametrize("make", DENSE_LAYOUTS.values(), ids=DENSE_LAYOUTS.keys())
def test_dense_layouts_keep_their_strides(td, make):
    a = make()
    t = td.from_numpy(a)
    assert t.shape == a.shape
    assert_strides(t.stride(), a)
    assert t.is_contiguous() == a.flags.c_contiguous
    assert_same(t.numpy(), a)


SPARSE_LAYOUTS = {
    "gaps": lambda: sample((6, 8))[:, ::2],
    "gaps_both_dims": lambda: sample((9, 7))[1::3, 2::2],
    "negative_stride": lambda: sample((10,))[::-1],
    "negative_2d": lambda: sample((4, 5))[::-1, ::2],
    "transposed_gaps": lambda: sample((6, 6))[::2].T,
}


@pytest.mark.parametrize("make", SPARSE_LAYOUTS.values(), ids=SPARSE_LAYOUTS.keys())
def test_gapped_and_negative_layouts_arrive_compacted(td, make):
    a = make()
    t = td.from_numpy(a)
    assert t.is_contiguous()
    assert t.stride() == element_strides(np.ascontiguousarray(a))
    assert_same(t.numpy(), a)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_every_dtype_round_trips(td, dtype):
    a = sample((3, 7), dtype, seed=3)
    t = td.from_numpy(a)
    assert t.dtype == dtype
    assert t.itemsize == t.element_size() == dtype.itemsize
    assert_same(t.numpy(), a)
    assert_same(t.T.numpy(), a.T)


@pytest.mark.parametrize("dtype", [">i2", ">i4", ">i8", ">f2", ">f4", ">f8", ">c8", ">c16"])
def test_big_endian_values_arrive_equal(td, dtype):
    a = sample((4, 3), dtype)
    t = td.from_numpy(a)
    assert t.dtype == np.dtype(dtype).newbyteorder("=")
    assert_same(t.numpy(), a)
    # A big-endian Fortran array keeps its layout through the byte swap.
    f = np.asfortranarray(a)
    assert_strides(td.from_numpy(f).stride(), f)
    assert_same(td.from_numpy(f).numpy(), a)


def test_zero_dim_and_empty(td):
    scalar = np.array(2.5, dtype=np.float32)
    t = td.from_numpy(scalar)
    assert t.shape == () and t.ndim == 0 and t.numel() == 1
    assert_same(t.numpy(), scalar)
    assert t.item() == 2.5
    with pytest.raises(TypeError, match="0-d"):
        len(t)

    for shape in [(0,), (0, 3), (4, 0, 2)]:
        e = td.from_numpy(np.zeros(shape, dtype=np.int16))
        assert e.shape == shape and e.numel() == 0 and e.nbytes == 0
        out = e.numpy()
        assert out.shape == shape and out.dtype == np.int16


def test_bfloat16_round_trip_and_cast(td):
    a = np.array([[1.5, -2.0, 3.25], [0.0, 100.0, -0.125]], dtype=BF16)
    t = td.from_numpy(a)
    assert t.dtype == BF16
    assert_same(t.numpy(), a)
    assert_same(t.float().numpy(), a.astype(np.float32))
    assert_same(td.tensor([1.5, -2.0]).bfloat16().numpy(), np.array([1.5, -2.0], dtype=BF16))


def test_large_arrays_cross_many_chunks(td):
    a = np.random.default_rng(1).standard_normal((1024, 1100))  # ~8.6 MiB, 9 default chunks
    t = td.from_numpy(a)
    assert_same(t.numpy(), a)
    assert_same(t.T.numpy(), a.T)
    assert_same(t[3:, 5::3].numpy(), a[3:, 5::3])


@pytest.mark.parametrize("chunk_bytes, shape", [(7, (5, 13)), (100_003, (300, 1001)), (3 << 20, (300, 1001))])
def test_any_chunk_size_round_trips(server, chunk_bytes, shape):
    # Odd sizes put chunk boundaries inside elements, in both directions (the
    # server clamps download chunks to its own limits).
    a = np.random.default_rng(2).standard_normal(shape).astype(np.complex64)
    with tensord.connect(server.address, chunk_bytes=chunk_bytes, timeout=30) as client:
        t = client.from_numpy(np.asfortranarray(a))
        assert_same(t.numpy(), a)
        assert_same(t[1::2].numpy(), a[1::2])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=4),
    data=st.data(),
)
def test_any_strided_layout_round_trips(td, shape, data):
    base = sample(tuple(shape), np.int32, seed=len(shape))
    perm = data.draw(st.permutations(range(len(shape))))
    steps = [data.draw(st.sampled_from([1, 2, -1])) for _ in shape]
    a = base.transpose(perm)[tuple(slice(None, None, s) for s in steps) + (Ellipsis,)]  # "..." keeps 0-d an array
    t = td.from_numpy(a)
    assert_same(t.numpy(), a)


# ---- downloads: layout, alignment, writability -------------------------------


def test_numpy_of_views_keeps_view_strides(td):
    a = sample((4, 6), np.float32)
    t = td.from_numpy(a)

    b = t.T.numpy()
    assert b.strides == a.T.strides
    assert_same(b, a.T)

    s = t[:, 1::2].numpy()
    assert s.strides == a[:, 1::2].strides
    assert_same(s, a[:, 1::2])

    p = td.from_numpy(sample((2, 3, 4))).permute(2, 0, 1).numpy()
    assert p.strides == sample((2, 3, 4)).transpose(2, 0, 1).strides


def test_narrow_views_of_large_tensors_download_only_their_elements(td, server_factory):
    """A view whose span is more than twice its bytes (and over 64 KiB) comes back
    C-contiguous with just its elements, instead of the whole span; wider views
    keep their strides. Without the memory for the compact copy the span goes."""
    a = sample((512, 256), np.float64)  # 1 MiB
    t = td.from_numpy(a)
    column = t[:, 3].numpy()
    assert column.strides == (8,) and column.flags.c_contiguous
    assert_same(column, a[:, 3])
    corner = t.T[::3, 100:250].numpy()
    assert corner.flags.c_contiguous
    assert_same(corner, a.T[::3, 100:250])
    half = t[:, ::2].numpy()  # gaps are half the span: sent as it is
    assert half.strides == a[:, ::2].strides
    assert_same(half, a[:, ::2])
    small = td.from_numpy(sample((64, 64), np.float64))[:, 0].numpy()  # a 32 KiB span: sent as it is
    assert small.strides == (512,)

    tight = server_factory("--max-memory", "2M")
    with tensord.connect(tight.address) as client:
        full = client.from_numpy(a)
        info = client.memory_info()
        filler = client.zeros((info.bytes_limit - info.bytes_in_use - 1024) // 8, dtype="float64")
        info = client.memory_info()
        assert info.bytes_limit - info.bytes_in_use < 4096  # no room for the column's 4 KiB copy
        column = full[:, 3].numpy()
        assert column.strides == (256 * 8,)  # so the span was sent
        assert_same(column, a[:, 3])
        filler.free()


def test_numpy_of_expanded_view_aliases_like_torch(td):
    t = td.from_numpy(np.array([1, 2, 3], dtype=np.int64)).expand(4, 3)
    assert t.stride() == (0, 1)
    e = t.numpy()
    assert e.strides == (0, 8)
    assert e.flags.writeable
    assert_same(e, np.broadcast_to(np.array([1, 2, 3]), (4, 3)))
    e[0, 0] = 7  # every row shares the same storage
    assert e[:, 0].tolist() == [7, 7, 7, 7]


@pytest.mark.parametrize("index", [(), (slice(None), slice(1, None, 2)), (1,), (slice(1, 3), 2)])
def test_downloads_are_aligned_writable_and_private(td, index):
    a = sample((4, 5), np.float64)
    t = td.from_numpy(a)[index]
    first = t.numpy()
    assert first.ctypes.data % 64 == 0
    assert first.flags.writeable
    first[...] = 1000
    second = t.numpy()
    assert not np.shares_memory(first, second)
    assert_same(second, a[index])  # writing a downloaded array changes nothing on the server


def test_array_protocol(td):
    a = sample((2, 3), np.int32)
    t = td.from_numpy(a)
    assert_same(np.asarray(t), a)
    assert_same(np.asarray(t, dtype=np.float64), a.astype(np.float64))
    assert_same(np.array(t), a)
    with pytest.raises(ValueError, match="copies"):
        np.array(t, copy=False)
    assert t.tolist() == a.tolist()


# ---- creation ------------------------------------------------------------------


def test_zeros_ones_empty_shapes_and_dtypes(td):
    z = td.zeros(2, 3)
    assert z.shape == (2, 3) and z.dtype == np.float32 and z.is_contiguous()
    assert_same(z.numpy(), np.zeros((2, 3), np.float32))
    assert_same(td.zeros((2, 3)).numpy(), np.zeros((2, 3), np.float32))
    assert_same(td.zeros([4], dtype="int16").numpy(), np.zeros(4, np.int16))
    assert_same(td.ones(3, 2, dtype=np.complex64).numpy(), np.ones((3, 2), np.complex64))
    assert_same(td.ones(2, dtype=np.bool_).numpy(), np.ones(2, bool))
    assert td.zeros().shape == ()
    e = td.empty(5, 4, dtype=np.dtype("float64"))
    assert e.shape == (5, 4) and e.dtype == np.float64 and e.numpy().shape == (5, 4)
    assert td.zeros(3, dtype="bfloat16").dtype == BF16


@pytest.mark.parametrize(
    "fill, dtype, expected",
    [
        (True, None, np.full(3, True)),
        (7, None, np.full(3, 7, np.int64)),
        (2.5, None, np.full(3, 2.5, np.float32)),
        (1 + 2j, None, np.full(3, 1 + 2j, np.complex64)),
        (-(2**62) - 3, None, np.full(3, -(2**62) - 3, np.int64)),  # exact beyond float precision
        (3, np.float64, np.full(3, 3.0)),
        (1.5, "complex128", np.full(3, 1.5 + 0j)),
    ],
)
def test_full_infers_dtype_like_torch(td, fill, dtype, expected):
    assert_same(td.full(3, fill, dtype=dtype).numpy(), expected)
    assert td.full((1, 3), fill, dtype=dtype).shape == (1, 3)


@pytest.mark.parametrize(
    "args, kwargs, expected",
    [
        ((5,), {}, np.arange(5, dtype=np.int64)),
        ((2, 11, 3), {}, np.arange(2, 11, 3, dtype=np.int64)),
        ((-3, 3), {}, np.arange(-3, 3, dtype=np.int64)),
        ((0.0, 1.0, 0.25), {}, np.arange(0, 1, 0.25, dtype=np.float32)),
        ((5,), {"dtype": np.float64}, np.arange(5, dtype=np.float64)),
        ((1, 2.5, 0.5), {}, np.arange(1, 2.5, 0.5, dtype=np.float32)),
        ((10, 0, -2), {}, np.arange(10, 0, -2, dtype=np.int64)),
        ((3, 3), {}, np.arange(3, 3, dtype=np.int64)),
    ],
)
def test_arange_matches_numpy(td, args, kwargs, expected):
    assert_same(td.arange(*args, **kwargs).numpy(), expected)


def test_rand_and_randn_are_seeded(td):
    a = td.rand(100, 3, seed=42).numpy()
    b = td.rand((100, 3), seed=42).numpy()
    assert a.dtype == np.float32 and a.shape == (100, 3)
    assert_same(b, a)
    assert ((a >= 0) & (a < 1)).all()
    assert not np.array_equal(td.rand(100, 3, seed=43).numpy(), a)

    n = td.randn(4000, seed=7, dtype=np.float64).numpy()
    assert_same(td.randn(4000, seed=7, dtype=np.float64).numpy(), n)
    assert abs(n.mean()) < 0.2 and 0.8 < n.std() < 1.2
    assert td.randn(2, 2).shape == (2, 2)
    with pytest.raises(ValueError, match="seed"):
        td.rand(2, seed=-1)


@pytest.mark.parametrize(
    "data, dtype, expected",
    [
        ([1.0, 2.0], None, np.array([1.0, 2.0], np.float32)),
        ([[1, 2], [3, 4]], None, np.array([[1, 2], [3, 4]], np.int64)),
        ([True, False], None, np.array([True, False])),
        (1 + 1j, None, np.array(1 + 1j, np.complex64)),
        (3, None, np.array(3, np.int64)),
        ([1, 2], "float64", np.array([1.0, 2.0])),
        (np.arange(3, dtype=np.float64), None, np.arange(3, dtype=np.float64)),  # arrays keep their dtype
        (np.arange(3, dtype=np.uint8), np.int16, np.arange(3, dtype=np.int16)),
    ],
)
def test_tensor_infers_dtype_like_torch(td, data, dtype, expected):
    assert_same(td.tensor(data, dtype=dtype).numpy(), expected)


def test_tensor_of_a_tensor_copies(td):
    t = td.tensor([1, 2, 3])
    c = td.tensor(t)
    assert c.handle != t.handle
    assert_same(c.numpy(), np.array([1, 2, 3]))
    assert_same(td.tensor(t, dtype=np.float32).numpy(), np.array([1, 2, 3], np.float32))


# ---- views vs NumPy --------------------------------------------------------------


VIEWS = {
    "T": (lambda t: t.T, lambda a: a.T),
    "transpose": (lambda t: t.transpose(0, 2), lambda a: a.swapaxes(0, 2)),
    "transpose_neg": (lambda t: t.transpose(-1, -2), lambda a: a.swapaxes(-1, -2)),
    "permute": (lambda t: t.permute(1, 2, 0), lambda a: a.transpose(1, 2, 0)),
    "permute_tuple": (lambda t: t.permute((2, 0, 1)), lambda a: a.transpose(2, 0, 1)),
    "reshape": (lambda t: t.reshape(6, 4), lambda a: a.reshape(6, 4)),
    "reshape_infer": (lambda t: t.reshape((-1, 2)), lambda a: a.reshape(-1, 2)),
    "reshape_copy": (lambda t: t.T.reshape(-1), lambda a: a.T.reshape(-1)),
    "view": (lambda t: t.view(2, 12), lambda a: a.reshape(2, 12)),
    "flatten": (lambda t: t.flatten(), lambda a: a.reshape(-1)),
    "flatten_partial": (lambda t: t.flatten(1), lambda a: a.reshape(2, 12)),
    "flatten_range": (lambda t: t.flatten(0, 1), lambda a: a.reshape(6, 4)),
    "flatten_of_transpose": (lambda t: t.T.flatten(), lambda a: a.T.reshape(-1)),
    "unsqueeze": (lambda t: t.unsqueeze(1), lambda a: a[:, None]),
    "unsqueeze_neg": (lambda t: t.unsqueeze(-1), lambda a: a[..., None]),
    "squeeze_all": (lambda t: t[:, :1, None].squeeze(), lambda a: a[:, 0]),
    "squeeze_dim": (lambda t: t[:, :1].squeeze(1), lambda a: a[:, 0]),
    "squeeze_dims": (lambda t: t[:1, :1].squeeze((0, 1)), lambda a: a[0, 0]),
    "squeeze_noop": (lambda t: t.squeeze(0), lambda a: a),
    "expand": (lambda t: t[:, :1].expand(2, 5, 4), lambda a: np.broadcast_to(a[:, :1], (2, 5, 4))),
    "expand_keep": (lambda t: t[:1].expand(3, -1, -1), lambda a: np.broadcast_to(a[:1], (3, 3, 4))),
    "expand_new_dims": (lambda t: t.expand(2, 2, 3, 4), lambda a: np.broadcast_to(a, (2, 2, 3, 4))),
    "select": (lambda t: t.select(1, 2), lambda a: a[:, 2]),
    "select_neg": (lambda t: t.select(-1, -1), lambda a: a[..., -1]),
    "chain": (lambda t: t.T[1:, ::2].unsqueeze(0).flatten(1), lambda a: a.T[1:, ::2][None].reshape(1, -1)),
}


@pytest.mark.parametrize("op", VIEWS.values(), ids=VIEWS.keys())
def test_view_methods_match_numpy(td, op):
    tensor_op, numpy_op = op
    a = sample((2, 3, 4), np.int64)
    t = tensor_op(td.from_numpy(a))
    expected = numpy_op(a)
    assert t.shape == expected.shape
    out = t.numpy()
    assert_same(out, expected)
    if np.shares_memory(expected, a):  # a true view on both sides: the same strides
        assert_strides(t.stride(), expected)
        assert_strides(element_strides(out), expected)  # and the download keeps them


INDEXES = {
    "int": 1,
    "neg_int": -1,
    "slice": slice(1, 3),
    "slice_step": slice(None, None, 2),
    "slice_neg_bounds": slice(-3, -1),
    "slice_clamped": slice(-100, 100),
    "slice_empty": slice(3, 1),
    "ellipsis": Ellipsis,
    "none": None,
    "tuple": (1, slice(None), 2),
    "ellipsis_last": (Ellipsis, 1),
    "ellipsis_mid": (0, Ellipsis, slice(1, None, 2)),
    "new_axes": (None, slice(None), None, 0),
    "numpy_int": (np.int64(2), np.int32(-1)),
    "all_slices": (slice(None, None, 3), slice(1, None), slice(0, 4, 3)),
    "empty_tuple": (),
}


@pytest.mark.parametrize("key", INDEXES.values(), ids=INDEXES.keys())
def test_getitem_matches_numpy(td, key):
    a = sample((4, 3, 5), np.float32)
    t = td.from_numpy(a)[key]
    expected = a[key]
    assert t.shape == expected.shape
    assert_same(t.numpy(), expected)
    if 0 not in expected.shape:
        assert_strides(t.stride(), expected)
        assert_strides(element_strides(t.numpy()), expected)


def test_getitem_rejects_what_torch_rejects(td):
    t = td.from_numpy(sample((4, 3)))
    with pytest.raises(ValueError, match="step"):
        t[::-1]
    with pytest.raises(ValueError, match="step"):
        t[:, ::0]
    with pytest.raises(TypeError):
        t[1.5]
    with pytest.raises(TypeError):
        t["a"]
    with pytest.raises(IndexError, match="long, int, byte or bool"):
        t[[0.5]]  # torch truncates float lists; tensord refuses them
    with pytest.raises((tensord.InvalidArgumentError, tensord.OutOfRangeError)):
        synced(t[4])  # checked by the server: raised at the sync point
    with pytest.raises((tensord.InvalidArgumentError, tensord.OutOfRangeError)):
        synced(t[0, 0, 0])


def test_view_metadata_without_download(td):
    a = sample((5, 6), np.float64)
    t = td.from_numpy(a)
    v = t[1:, 2:]
    assert v.shape == (4, 4)
    assert v.stride() == (6, 1) and v.stride(0) == 6 and v.stride(-1) == 1
    assert v.storage_offset() == 1 * 6 + 2
    assert not v.is_contiguous()
    assert (v.ndim, v.dim(), v.numel(), v.nbytes, len(v)) == (2, 2, 16, 128, 4)
    assert v.device == "cpu"
    with pytest.raises(IndexError):
        v.stride(2)
    assert [row.numpy().tolist() for row in v] == a[1:, 2:].tolist()
    r = repr(v)
    assert r == f"tensord.Tensor(shape=(4, 4), dtype=float64, device='cpu', handle='…{v.handle[-8:]}')"


def test_invalid_views_raise_mapped_errors(td):
    t = td.from_numpy(sample((3, 4)))
    with pytest.raises(tensord.FailedPreconditionError):
        synced(t.T.view(12))
    assert_same(t.T.reshape(12).numpy(), sample((3, 4)).T.reshape(12))
    with pytest.raises(tensord.InvalidArgumentError):
        synced(t.reshape(5, -1))
    with pytest.raises(tensord.InvalidArgumentError):
        synced(t.transpose(0, 2))
    with pytest.raises(tensord.InvalidArgumentError):
        synced(t.permute(0, 0))
    with pytest.raises(tensord.InvalidArgumentError):
        synced(t.expand(3, 5))
    with pytest.raises(tensord.InvalidArgumentError):
        synced(t.unsqueeze(3))
    with pytest.raises(tensord.InvalidArgumentError):
        synced(t.select(0, 3))


# ---- copies and casts --------------------------------------------------------------


def test_contiguous_and_clone_always_return_new_handles(td):
    a = sample((3, 4))
    t = td.from_numpy(a)
    c = t.contiguous()
    assert c.handle != t.handle and c.is_contiguous()
    assert_same(c.numpy(), a)
    tc = t.T.contiguous()
    assert tc.is_contiguous() and tc.stride() == (3, 1)
    assert_same(tc.numpy(), a.T)
    k = t[:, ::2].clone()
    assert k.handle != t.handle and k.is_contiguous() and k.storage_offset() == 0
    assert_same(k.numpy(), a[:, ::2])
    same = t.to(np.float64)
    assert same.handle != t.handle
    assert_same(same.numpy(), a)


CASTS = {
    "float": (lambda t: t.float(), np.float32),
    "double": (lambda t: t.double(), np.float64),
    "half": (lambda t: t.half(), np.float16),
    "bfloat16": (lambda t: t.bfloat16(), BF16),
    "int": (lambda t: t.int(), np.int32),
    "long": (lambda t: t.long(), np.int64),
    "bool": (lambda t: t.bool(), np.bool_),
    "to_str": (lambda t: t.to("int16"), np.int16),
    "to_type": (lambda t: t.to(np.uint8), np.uint8),
    "to_complex": (lambda t: t.to(np.dtype("complex64")), np.complex64),
}


@pytest.mark.parametrize("op", CASTS.values(), ids=CASTS.keys())
def test_casts_match_numpy(td, op):
    cast, dtype = op
    a = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 100.0]], dtype=np.float64)
    t = cast(td.from_numpy(a))
    assert t.dtype == np.dtype(dtype)
    assert_same(t.numpy(), a.astype(dtype))
    # Casting a view casts the view's elements, in the view's shape.
    assert_same(cast(td.from_numpy(a).T).numpy(), a.T.astype(dtype))


def test_float_to_int_truncates_toward_zero(td):
    a = np.array([-2.7, -0.5, 0.0, 1.5, 3.9], dtype=np.float32)
    assert_same(td.from_numpy(a).long().numpy(), a.astype(np.int64))
    assert_same(td.from_numpy(a).bool().numpy(), a.astype(bool))


# ---- lifetime: free, garbage collection, close ---------------------------------------


def test_free_releases_memory_and_is_idempotent(td):
    before = td.memory_info()
    t = td.zeros(1024, 256)  # 1 MiB
    during = td.memory_info()
    assert during.session_bytes >= before.session_bytes + 1024 * 256 * 4
    assert during.session_tensors == before.session_tensors + 1
    assert t.handle in {info.handle for info in td.tensors()}
    t.free()
    t.free()  # harmless
    after = td.memory_info()
    assert after.session_bytes == before.session_bytes
    assert after.session_tensors == before.session_tensors
    assert t.handle not in {info.handle for info in td.tensors()}
    assert "freed" in repr(t)
    with pytest.raises(tensord.NotFoundError, match="freed"):
        t.numpy()
    with pytest.raises(tensord.NotFoundError, match="freed"):
        t.T


def test_garbage_collected_tensors_are_freed(td):
    baseline = td.memory_info().session_tensors
    tensors = [td.zeros(256, 256) for _ in range(20)]
    assert td.memory_info().session_tensors == baseline + 20
    del tensors
    gc.collect()
    wait_for(lambda: td.memory_info().session_tensors == baseline, "the GC'd tensors to be freed")
    assert td.memory_info().session_tensors == baseline


def test_gc_frees_survive_handles_the_server_already_forgot(td):
    baseline = td.memory_info().session_tensors
    gone = td.zeros(10)
    live = td.zeros(10)
    td.synchronize()  # the unary Free below is not ordered with the pipelined ops
    td._session.call("Free", pb.FreeRequest(handles=[gone.handle]))  # behind the Tensor's back
    assert td.memory_info().session_tensors == baseline + 1
    # One batch may hold both handles: the unknown one must not keep the other alive.
    del gone, live
    gc.collect()
    wait_for(lambda: td.memory_info().session_tensors == baseline, "the live handle to be freed")


def test_views_keep_their_base_storage_alive(td):
    a = sample((4, 4))
    base = td.from_numpy(a)
    view = base[1:, ::2]
    base.free()
    assert_same(view.numpy(), a[1:, ::2])
    info = {i.handle: i for i in td.tensors()}[view.handle]
    assert info.shape == (3, 2) and info.strides == (4, 2) and info.storage_offset == 4
    assert info.dtype == "float64" and info.numpy_dtype == np.float64 and not info.is_contiguous


def test_close_frees_the_session_and_is_idempotent(server_factory):
    srv = server_factory("--max-memory", "64M")
    with tensord.connect(srv.address, timeout=30) as watcher:
        client = tensord.connect(srv.address, timeout=30, client_name="closer")
        assert watcher.memory_info().sessions == 2
        kept = client.ones(1 << 20, dtype=np.uint8)
        client.synchronize()  # another session's view of memory does not wait for this one's ops
        assert watcher.memory_info().bytes_in_use >= 1 << 20
        client.close()
        client.close()
        assert client.closed
        info = watcher.memory_info()
        assert info.sessions == 1 and info.bytes_in_use == 0 and info.bytes_limit == 64 << 20
        with pytest.raises(tensord.FailedPreconditionError, match="closed"):
            client.zeros(2)
        with pytest.raises(tensord.FailedPreconditionError, match="closed"):
            kept.numpy()
        kept.free()  # harmless after close
        assert watcher.memory_info().bytes_in_use == 0
    assert watcher.closed


def test_keepalive_holds_the_session_past_its_ttl(server_factory):
    srv = server_factory("--session-ttl", "1")
    with tensord.connect(srv.address, timeout=30) as client:
        t = client.from_numpy(np.arange(4))
        # A bare session that nobody keeps alive, to show the TTL really bites.
        with grpc.insecure_channel(srv.address) as channel:
            TensordStub(channel).OpenSession(pb.OpenSessionRequest(client_name="bare"), timeout=10)
            assert client.memory_info().sessions == 2
            time.sleep(2.5)  # idle for more than two TTLs: only the background KeepAlive renews
        assert client.memory_info().sessions == 1, "the bare session should have expired"
        assert_same(t.numpy(), np.arange(4))
        assert client.memory_info().session_tensors == 1


def test_dropped_client_ends_its_session(server_factory):
    srv = server_factory()
    with tensord.connect(srv.address, timeout=30) as watcher:
        dropped = tensord.connect(srv.address, timeout=30)
        dropped.zeros(1000)
        assert watcher.memory_info().sessions == 2
        del dropped
        gc.collect()
        wait_for(lambda: watcher.memory_info().sessions == 1, "the dropped client's session to close")
        assert watcher.memory_info().bytes_in_use == 0


def test_threads_share_one_client(td):
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(20):
                a = sample((17, 9), np.float32, seed=seed * 100 + i)
                assert_same(td.from_numpy(a).T.numpy(), a.T)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


# ---- errors --------------------------------------------------------------------------


def test_errors_map_status_codes_to_subclasses(td):
    with pytest.raises(tensord.NotFoundError) as info:
        td._session.call("GetTensor", pb.TensorRef(handle="no-such-handle"))
    err = info.value
    assert isinstance(err, tensord.Error)
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert err.details and str(err).startswith("NOT_FOUND: ")

    with pytest.raises(tensord.InvalidArgumentError) as info:
        synced(td.zeros(-1, 3))
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "-1" in info.value.details

    with pytest.raises(tensord.InvalidArgumentError):
        synced(td.rand(3, dtype=np.int32))
    with pytest.raises(tensord.InvalidArgumentError):
        synced(td.arange(0, 10, 0))


def test_handles_of_another_session_are_not_found(td, server):
    with tensord.connect(server.address, timeout=30) as other:
        theirs = other.zeros(2)
        with pytest.raises(tensord.NotFoundError):
            td._session.call("GetTensor", pb.TensorRef(handle=theirs.handle))
        assert theirs.handle not in {i.handle for i in td.tensors()}


def test_resource_exhausted_past_max_memory(server_factory):
    srv = server_factory("--max-memory", "1M")
    with tensord.connect(srv.address, timeout=30) as client:
        with pytest.raises(tensord.ResourceExhaustedError) as info:
            synced(client.zeros(1 << 20))  # 4 MiB of float32
        assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(tensord.ResourceExhaustedError):
            client.from_numpy(np.zeros(1 << 18, np.float64))  # 2 MiB upload
        small = client.zeros(1000)
        assert_same(small.numpy(), np.zeros(1000, np.float32))
        assert client.memory_info().bytes_in_use == 4032 + 512  # allocated in 64-byte blocks, and the handle


def test_unreachable_server_is_unavailable(server_factory):
    srv = server_factory()
    address = srv.address
    srv.stop()
    with pytest.raises(tensord.UnavailableError) as info:
        tensord.connect(address, timeout=5)
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


def test_unsupported_dtypes_are_type_errors(td):
    for bad in (np.array([1, 2], np.uint16), np.array([1], np.uint64), np.array(["a"]), np.array([object()])):
        with pytest.raises(TypeError, match=str(bad.dtype) if bad.dtype.kind != "O" else "object"):
            td.from_numpy(bad)
    with pytest.raises(TypeError, match="ndarray"):
        td.from_numpy([1, 2, 3])
    with pytest.raises(TypeError, match="uint32"):
        td.zeros(2, dtype=np.uint32)
    with pytest.raises(TypeError):
        td.zeros(2).to("float128")


def test_bfloat16_without_ml_dtypes_says_so(td, monkeypatch):
    monkeypatch.setattr(tensord.dtypes, "_BFLOAT16", None)
    with pytest.raises(ImportError, match="ml_dtypes"):
        td.zeros(2, dtype="bfloat16")
    assert_same(td.zeros(2).numpy(), np.zeros(2, np.float32))


def test_invalid_connect_arguments(server):
    with pytest.raises(ValueError, match="chunk_bytes"):
        tensord.connect(server.address, chunk_bytes=0)
    with pytest.raises(ValueError, match="timeout"):
        tensord.connect(server.address, timeout=-1)


def test_empty_never_shows_another_tensors_bytes(td):
    # A 4 MiB block freed by one tensor is reused by the server's block cache.
    for _ in range(3):
        filled = td.full((1024, 1024), 7.0)
        filled.free()
        assert not td.empty(1024, 1024).numpy().any()
