"""Property tests: NumPy arrays of every dtype and layout survive a round trip
through tensord bit for bit, and server-side views agree with NumPy's views.

Values are random bytes, so floats include NaNs with payloads, infinities and
subnormals; equality is checked on the bytes of compact copies.
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import tensord
from raw_wire import RawSession, span_nbytes

DTYPES = [
    np.dtype(t)
    for t in (
        np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64, np.float16,
        ml_dtypes.bfloat16, np.float32, np.float64, np.complex64, np.complex128,
    )
]
# NumPy has no big-endian bfloat16 (ml_dtypes turns it into void), and one-byte
# dtypes have no byte order at all.
SWAPPABLE = [d for d in DTYPES if d.itemsize > 1 and d != np.dtype(ml_dtypes.bfloat16)]
# Dimension sizes, zero one time in thirteen so that most examples hold data.
SIZES = st.sampled_from([0] + [1, 2, 3, 4] * 3)


@pytest.fixture(scope="module")
def client(server):
    """One session for the whole module: hypothesis runs many examples per test."""
    with tensord.connect(server.address, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def wire(server, client):
    """Raw access to the client's own session, to read Download headers as sent."""
    with RawSession(server.address, session_id=client.session_id) as raw:
        yield raw


def random_array(seed: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A C-contiguous native array of random bit patterns (bools are 0 or 1)."""
    rng = np.random.default_rng(seed)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    nbytes = math.prod(shape) * dtype.itemsize
    return np.frombuffer(rng.bytes(nbytes), dtype=dtype).reshape(shape).copy()


def bits(a: np.ndarray) -> np.ndarray:
    """The bytes of a compact C-order copy, in native byte order."""
    a = np.ascontiguousarray(a)
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return a.reshape(-1).view(np.uint8)


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype.newbyteorder("=")
    assert np.array_equal(bits(actual), bits(expected)), (actual, expected)


@st.composite
def laid_out_arrays(draw) -> tuple[np.ndarray, np.ndarray]:
    """(array, native_twin): the array in a drawn layout and the same values natively.

    The layout combines, per example: C or Fortran parent storage, gaps (slice
    steps and padding), reversed dimensions (negative strides), a permutation,
    broadcast dimensions (zero strides) and big-endian bytes.
    """
    dtype = draw(st.sampled_from(DTYPES))
    shape = tuple(draw(st.lists(SIZES, max_size=6)))
    rank = len(shape)
    broadcast = [draw(st.booleans()) and draw(st.booleans()) for _ in shape]
    source = tuple(1 if b else n for n, b in zip(shape, broadcast))
    perm = draw(st.permutations(range(rank)))
    steps = [draw(st.integers(1, 3)) for _ in shape]
    pads = [draw(st.integers(0, 2)) for _ in shape]
    flips = [draw(st.booleans()) for _ in shape]
    fortran = draw(st.booleans())
    big_endian = dtype in SWAPPABLE and draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))

    # Parent dimension k holds result dimension perm[k], spread out by its step.
    parent_shape = tuple(source[p] * steps[k] + pads[k] for k, p in enumerate(perm))
    native = random_array(seed, dtype, parent_shape)
    if fortran:
        native = native.copy(order="F")
    parent = native
    if big_endian:
        parent = native.byteswap().view(dtype.newbyteorder(">"))

    def lay_out(a: np.ndarray) -> np.ndarray:
        if rank == 0:
            return a
        a = a[tuple(slice(0, source[p] * steps[k], steps[k]) for k, p in enumerate(perm))]
        a = a[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
        return np.broadcast_to(a.transpose(np.argsort(perm)), shape)

    array, twin = lay_out(parent), lay_out(native)
    assert array.shape == shape
    return array, twin


@settings(max_examples=300, deadline=None)
@given(laid_out_arrays())
def test_upload_download_is_bit_exact(client, case):
    array, native = case
    t = client.from_numpy(array)
    assert t.shape == array.shape
    assert t.dtype == native.dtype
    assert t.ndim == array.ndim
    assert t.numel() == array.size
    out = t.numpy()
    assert_same(out, native)
    assert_same(np.asarray(t), native)
    t.free()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype_zero_dim_and_empty(client, dtype):
    """The rank-0 and zero-size corners for every dtype, independent of hypothesis' luck."""
    for shape in [(), (0,), (3, 0, 2), (1,)]:
        a = random_array(11, dtype, shape)
        out = client.from_numpy(a).numpy()
        assert_same(out, a)


def test_rank_16_permuted_and_gapped(client):
    shape = (2, 1, 3, 1) * 4
    parent = random_array(16, np.dtype(np.float64), tuple(2 * n for n in shape))
    array = parent[(slice(None, None, 2),) * 16].transpose(list(reversed(range(16))))
    t = client.from_numpy(array)
    assert t.ndim == 16
    assert t.shape == array.shape
    assert_same(t.numpy(), array)


# ---- views: the same chain of view ops on NumPy and on the server ------------------


def c_array_for_views(data) -> np.ndarray:
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    shape = tuple(data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=4), label="shape"))
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    return random_array(seed, dtype, shape)


def draw_view_op(data, a: np.ndarray):
    """A view op valid for `a`: (description, numpy function, tensord function)."""
    nd = a.ndim
    kinds = ["unsqueeze", "index-none"]
    if nd >= 1:
        kinds += ["transpose", "permute", "slice", "slice-ellipsis"]
    if any(n > 0 for n in a.shape):
        kinds += ["select", "index-int"]
    if 1 in a.shape:
        kinds += ["expand", "squeeze"]
    if nd == 2:
        kinds.append("T")
    kind = data.draw(st.sampled_from(kinds), label="op")
    dim = st.integers(-nd, nd - 1) if nd else st.just(0)

    if kind == "transpose":
        d0, d1 = data.draw(dim), data.draw(dim)
        return f"transpose({d0}, {d1})", lambda x: np.swapaxes(x, d0, d1), lambda t: t.transpose(d0, d1)
    if kind == "permute":
        perm = data.draw(st.permutations(range(nd)))
        return f"permute{tuple(perm)}", lambda x: x.transpose(perm), lambda t: t.permute(*perm)
    if kind == "T":
        return "T", lambda x: x.T, lambda t: t.T
    if kind in ("slice", "slice-ellipsis"):
        d = data.draw(st.integers(0, nd - 1))
        bound = st.none() | st.integers(-7, 7)
        sl = slice(data.draw(bound), data.draw(bound), data.draw(st.none() | st.integers(1, 3)))
        key = (Ellipsis, sl) + (slice(None),) * (nd - 1 - d) if kind == "slice-ellipsis" else (slice(None),) * d + (sl,)
        return f"[{key}]", lambda x: x[key], lambda t: t[key]
    if kind in ("select", "index-int"):
        d = data.draw(st.sampled_from([i for i, n in enumerate(a.shape) if n > 0]))
        i = data.draw(st.integers(-a.shape[d], a.shape[d] - 1))
        key = (slice(None),) * d + (i,)
        # A trailing `...` keeps NumPy from turning a 0-d result into a scalar copy.
        if kind == "select":
            return f"select({d}, {i})", lambda x: x[key + (...,)], lambda t: t.select(d, i)
        return f"[{key}]", lambda x: x[key + (...,)], lambda t: t[key]
    if kind == "index-none":
        d = data.draw(st.integers(0, nd))
        key = (slice(None),) * d + (None,)
        return f"[{key}]", lambda x: x[key], lambda t: t[key]
    if kind == "unsqueeze":
        d = data.draw(st.integers(-nd - 1, nd))
        return f"unsqueeze({d})", lambda x: np.expand_dims(x, d), lambda t: t.unsqueeze(d)
    if kind == "squeeze":
        d = data.draw(st.sampled_from([i for i, n in enumerate(a.shape) if n == 1]))
        return f"squeeze({d})", lambda x: np.squeeze(x, d), lambda t: t.squeeze(d)
    # expand: size-1 dims grow, others keep their size (sometimes written -1),
    # and sometimes new leading dims appear.
    lead = tuple(data.draw(st.lists(st.integers(1, 3), max_size=2)))
    sizes = tuple(
        data.draw(st.integers(1, 3)) if n == 1 else data.draw(st.sampled_from([n, -1]))
        for n in a.shape
    )
    target = lead + tuple(n if s == -1 else s for n, s in zip(a.shape, sizes))
    return f"expand{lead + sizes}", lambda x: np.broadcast_to(x, target), lambda t: t.expand(*(lead + sizes))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_view_chain_matches_numpy(client, wire, data):
    base = c_array_for_views(data)
    t = client.from_numpy(base)
    ref = base
    for _ in range(data.draw(st.integers(1, 6), label="chain length")):
        if ref.ndim >= 6:
            break
        description, np_op, td_op = draw_view_op(data, ref)
        note(description)
        ref, t = np_op(ref), td_op(t)

    itemsize = base.dtype.itemsize
    assert t.shape == ref.shape
    assert t.dtype == base.dtype
    out = t.numpy()
    assert_same(out, ref)
    # numpy() lays the download out exactly as the server reports the view.
    assert out.strides == tuple(s * itemsize for s in t.stride())
    # The wire carries the smallest span holding the view, starting at element [0, ..., 0].
    head, span = wire.download(t.handle)
    assert tuple(head.strides) == t.stride()
    assert head.span_nbytes == len(span) == span_nbytes(t.shape, t.stride(), itemsize)
    if ref.size > 0:
        assert head.offset == 0

    # Views of the same C storage: the server and NumPy must agree on every
    # stride that matters (size-1 dims may differ: NumPy gives new axes stride 0,
    # PyTorch size*stride) and on where element [0, ..., 0] lies.
    if ref.size > 0:
        for n, s_np, s_td in zip(ref.shape, ref.strides, t.stride()):
            if n > 1:
                assert s_td * itemsize == s_np
        offset = ref.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        assert t.storage_offset() * itemsize == offset
    assert t.is_contiguous() == ref.flags.c_contiguous


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_copies_of_views_match_numpy(client, data):
    """contiguous(), clone(), reshape() and flatten() of a viewed tensor copy the right values."""
    base = c_array_for_views(data)
    t, ref = client.from_numpy(base), base
    for _ in range(data.draw(st.integers(0, 3), label="views before")):
        if ref.ndim >= 6:
            break
        description, np_op, td_op = draw_view_op(data, ref)
        note(description)
        ref, t = np_op(ref), td_op(t)

    contiguous = t.contiguous()
    assert contiguous.is_contiguous()
    assert_same(contiguous.numpy(), ref)

    clone = t.clone()
    assert clone.is_contiguous()
    assert_same(clone.numpy(), ref)

    assert_same(t.flatten().numpy(), ref.reshape(-1))
    if ref.size > 0:  # -1 is ambiguous for zero elements (PyTorch refuses it)
        k = data.draw(st.sampled_from([k for k in range(1, ref.size + 1) if ref.size % k == 0]))
        assert_same(t.reshape(-1, k).numpy(), ref.reshape(-1, k))
