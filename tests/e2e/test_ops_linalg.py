"""matmul (and mm/bmm), cat/stack and the in-place updates against NumPy, through the real server.

matmul: every torch.matmul shape case, batch broadcasting, BLAS and loop dtypes, operands
that BLAS reads transposed or that must be copied first. cat/stack: negative dims, promotion,
views and zero-size inputs. In-place ops: values, writes seen through every handle sharing the
storage, self-aliasing, torch's cast and broadcast rules, and errors that leave self untouched.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

import tensord
from syncing import synced

RNG = np.random.default_rng(11)


def sample(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        return RNG.integers(-9 if dt.kind == "i" else 0, 10, size=shape).astype(dt)
    if dt.kind == "c":
        return (RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)).astype(dt)
    return RNG.standard_normal(shape).astype(dt)


def check_matmul(actual: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """`actual` against a @ b computed in float64/complex128 (exactly, for integers)."""
    dt = a.dtype
    if dt.kind in "iu":
        np.testing.assert_array_equal(actual, np.matmul(a, b))
        return
    wide = np.complex128 if dt.kind == "c" else np.float64
    expected = np.matmul(a.astype(wide), b.astype(wide))
    tol = {np.float16: 3e-3, np.float32: 1e-5, np.complex64: 1e-5}.get(dt.type, 1e-12)
    assert actual.dtype == dt and actual.shape == expected.shape
    np.testing.assert_allclose(actual.astype(wide), expected, rtol=tol, atol=tol * 4)


SHAPES = [
    ((5,), (5,)),  # dot: a 0-d result
    ((3, 4), (4, 2)),
    ((4,), (4, 3)),  # vector @ matrix: the prepended dim is dropped
    ((3, 4), (4,)),  # matrix @ vector: the appended dim is dropped
    ((2, 1, 3, 4), (5, 4, 2)),  # batch dims broadcast to (2, 5)
    ((6, 3, 4), (4, 2)),  # one b for every batch: a single tall GEMM
    ((5, 3, 4), (4,)),
    ((4,), (2, 4, 3)),
    ((7, 2, 3), (7, 3, 5)),
    ((1, 1), (1, 1)),
    ((3, 0), (0, 4)),  # empty sums are zeros
    ((0, 3), (3, 4)),
    ((2, 0, 3), (3, 4)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "float16", "int32", "complex64"])
@pytest.mark.parametrize("shapes", SHAPES, ids=lambda s: f"{s[0]}@{s[1]}")
def test_matmul_matches_numpy(td, shapes, dtype):
    a, b = sample(dtype, shapes[0]), sample(dtype, shapes[1])
    out = td.from_numpy(a) @ td.from_numpy(b)
    assert out.dtype == np.dtype(dtype)
    assert out.shape == np.matmul(a, b).shape
    check_matmul(out.numpy(), a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "float16"])
def test_matmul_reads_transposed_and_strided_operands(td, dtype):
    a, b = sample(dtype, (6, 8)), sample(dtype, (8, 5))
    ta, tb = td.from_numpy(a), td.from_numpy(b)
    plain = (ta @ tb).numpy()
    check_matmul(plain, a, b)
    # Column-major operands: uploaded in Fortran order, and transposed views.
    fa, fb = td.from_numpy(np.asfortranarray(a)), td.from_numpy(np.asfortranarray(b))
    assert not fa.is_contiguous()
    ta_t, tb_t = td.from_numpy(a.T.copy()).T, td.from_numpy(b.T.copy()).T
    # Strided views that no BLAS layout describes, which the server copies first.
    big_a, big_b = sample(dtype, (12, 16)), sample(dtype, (8, 15))
    sa, sb = td.from_numpy(big_a)[::2, ::2], td.from_numpy(big_b)[:, ::3]
    for left, right, (na, nb) in [
        (fa, fb, (a, b)),
        (ta_t, tb_t, (a, b)),
        (fa, tb_t, (a, b)),
        (sa, sb, (big_a[::2, ::2], big_b[:, ::3])),
    ]:
        got = (left @ right).numpy()
        if np.dtype(dtype).kind == "i":
            np.testing.assert_array_equal(got, np.matmul(na, nb))
        else:
            check_matmul(got, na, nb)
    if np.dtype(dtype).kind == "i":  # integers: every layout gives exactly the same result
        np.testing.assert_array_equal((fa @ tb_t).numpy(), plain)


def test_matmul_vectors_and_batches_with_odd_layouts(td):
    a = sample("float32", (4, 3, 5))
    m = sample("float32", (5, 2))
    v = sample("float32", (10,))
    ta = td.from_numpy(a)
    # A permuted batch (rows not evenly spaced across batches) cannot fold into one GEMM.
    tp = td.from_numpy(a.transpose(1, 0, 2).copy()).permute(1, 0, 2)
    check_matmul((tp @ td.from_numpy(m)).numpy(), a, m)
    check_matmul((ta @ td.from_numpy(m)).numpy(), a, m)
    # Strided vectors on either side (BLAS GEMV with an increment).
    tv = td.from_numpy(v)[::2]
    check_matmul((ta @ tv).numpy(), a, v[::2])
    check_matmul((tv @ ta.transpose(1, 2)).numpy(), v[::2], a.transpose(0, 2, 1))
    check_matmul((tv @ tv).numpy(), v[::2], v[::2])
    # A broadcast (stride 0) batch operand and a broadcast matrix.
    bb = np.broadcast_to(sample("float32", (1, 5, 2)), (4, 5, 2))
    check_matmul((ta @ td.from_numpy(m).expand(4, 5, 2)).numpy(), a, np.broadcast_to(m, (4, 5, 2)))
    check_matmul((ta @ td.from_numpy(bb)).numpy(), a, bb)
    ones = td.ones(1, 1).expand(5, 2)
    check_matmul((ta @ ones).numpy(), a, np.ones((5, 2), np.float32))


def test_matmul_large_float32_and_float64(td):
    for dtype in ("float32", "float64"):
        a, b = sample(dtype, (300, 257)), sample(dtype, (257, 129))
        check_matmul((td.from_numpy(a) @ td.from_numpy(b)).numpy(), a, b)
        m, v = sample(dtype, (513, 700)), sample(dtype, (513,))
        check_matmul((td.from_numpy(v) @ td.from_numpy(m)).numpy(), v, m)
        check_matmul((td.from_numpy(m).T @ td.from_numpy(v)).numpy(), m.T, v)


def test_matmul_names_and_aliases(td):
    a, b = sample("float64", (3, 4)), sample("float64", (4, 2))
    ta, tb = td.from_numpy(a), td.from_numpy(b)
    for out in (ta.matmul(tb), td.matmul(ta, tb), ta.mm(tb)):
        check_matmul(out.numpy(), a, b)
    x, y = sample("float64", (2, 3, 4)), sample("float64", (2, 4, 5))
    check_matmul(td.from_numpy(x).bmm(td.from_numpy(y)).numpy(), x, y)
    with pytest.raises(tensord.InvalidArgumentError, match=r"mm: expected 2-D tensors"):
        synced(ta.mm(td.from_numpy(b[:, 0])))
    with pytest.raises(tensord.InvalidArgumentError, match=r"bmm: batch sizes differ"):
        synced(td.from_numpy(x).bmm(td.from_numpy(y[:1])))
    with pytest.raises(TypeError):
        ta @ 2.0


def test_matmul_errors(td):
    f32 = td.zeros(3, 4)
    with pytest.raises(tensord.InvalidArgumentError) as err:
        synced(f32 @ td.zeros(5, 6))
    assert err.value.details == "matmul: shapes [3, 4] and [5, 6] cannot be multiplied (4 != 5)"
    with pytest.raises(tensord.InvalidArgumentError, match=r"shapes \[4\] and \[5\] cannot be multiplied"):
        synced(td.zeros(4) @ td.zeros(5))
    with pytest.raises(tensord.InvalidArgumentError) as err:
        synced(f32 @ td.zeros(4, 2, dtype="float64"))
    assert err.value.details == (
        "matmul: expected both operands to have the same dtype, got float32 and float64"
    )
    with pytest.raises(tensord.InvalidArgumentError, match="batch dimensions \\[2\\] and \\[3\\] do not broadcast"):
        synced(td.zeros(2, 3, 4) @ td.zeros(3, 4, 5))
    with pytest.raises(tensord.InvalidArgumentError, match="at least one dimension"):
        synced(td.zeros(()) @ f32)
    with pytest.raises(tensord.InvalidArgumentError, match="bool"):
        synced(td.zeros(2, 2, dtype="bool") @ td.zeros(2, 2, dtype="bool"))
    with pytest.raises(tensord.InvalidArgumentError, match="must be a tensor"):
        synced(td._op("matmul", f32, 2))
    # Still serving.
    np.testing.assert_array_equal((td.ones(2, 3) @ td.ones(3)).numpy(), [3.0, 3.0])


def test_concurrent_matmuls_are_correct(td):
    # Large enough for OpenBLAS's thread pool, with a different GEMM kind (NN, TN, NT,
    # float64) in each request thread: they must not disturb each other.
    a, b = sample("float32", (300, 260)), sample("float32", (260, 280))
    ta, tb = td.from_numpy(a), td.from_numpy(b)
    ta_t, tb_t = td.from_numpy(a.T.copy()).T, td.from_numpy(b.T.copy()).T
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    t64a, t64b = td.from_numpy(a64), td.from_numpy(b64)
    pairs = [(ta, tb, a, b), (ta_t, tb, a, b), (ta, tb_t, a, b), (t64a, t64b, a64, b64)]
    failures: list[BaseException] = []

    def work(left, right, na, nb) -> None:
        try:
            for _ in range(6):
                check_matmul((left @ right).numpy(), na, nb)
        except BaseException as e:  # reported by the main thread
            failures.append(e)

    threads = [threading.Thread(target=work, args=p) for p in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures


# ---- cat and stack --------------------------------------------------------------


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_cat_matches_numpy(td, dim):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for i, s in enumerate(shapes):
        s[dim] = i + 1
    arrays = [sample("float32", tuple(s)) for s in shapes]
    out = td.cat([td.from_numpy(x) for x in arrays], dim=dim)
    np.testing.assert_array_equal(out.numpy(), np.concatenate(arrays, axis=dim))


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
def test_stack_matches_numpy(td, dim):
    arrays = [sample("int64", (2, 3)) for _ in range(4)]
    out = td.stack([td.from_numpy(x) for x in arrays], dim=dim)
    np.testing.assert_array_equal(out.numpy(), np.stack(arrays, axis=dim))


@pytest.mark.parametrize(
    "dtypes, expected",
    [
        (("int32", "float32"), "float32"),
        (("int64", "float16"), "float16"),
        (("uint8", "int8"), "int16"),
        (("bool", "int32", "int64"), "int64"),
        (("float32", "float64"), "float64"),
        (("float32", "complex64"), "complex64"),
    ],
)
def test_cat_and_stack_promote(td, dtypes, expected):
    arrays = [sample(d, (2, 2)) if d != "bool" else RNG.random((2, 2)) > 0.5 for d in dtypes]
    tensors = [td.from_numpy(x) for x in arrays]
    cat, stack = td.cat(tensors, dim=1), td.stack(tensors)
    assert cat.dtype == np.dtype(expected) and stack.dtype == np.dtype(expected)
    np.testing.assert_array_equal(cat.numpy(), np.concatenate([x.astype(expected) for x in arrays], axis=1))
    np.testing.assert_array_equal(stack.numpy(), np.stack([x.astype(expected) for x in arrays]))


def test_cat_and_stack_read_views(td):
    a = sample("float64", (4, 6))
    t = td.from_numpy(a)
    views = [t.T[:, :2], t[::2].T, td.from_numpy(a[0]).expand(4, 6).T[:, 1:3]]
    expected = [a.T[:, :2], a[::2].T, np.broadcast_to(a[0], (4, 6)).T[:, 1:3]]
    np.testing.assert_array_equal(td.cat(views, dim=-1).numpy(), np.concatenate(expected, axis=-1))
    np.testing.assert_array_equal(td.stack(views, dim=1).numpy(), np.stack(expected, axis=1))
    out = td.cat([t[1], t[3]])
    assert out.is_contiguous()
    np.testing.assert_array_equal(out.numpy(), np.concatenate([a[1], a[3]]))


def test_cat_and_stack_zero_size(td):
    x = sample("float32", (2, 3))
    tx = td.from_numpy(x)
    # torch skips 1-D tensors of size 0, whatever the rank of the others (and promotes with them).
    out = td.cat([td.zeros(0, dtype="float64"), tx, td.zeros(0)], dim=1)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out.numpy(), x)
    np.testing.assert_array_equal(td.cat([tx, td.zeros(2, 0)], dim=1).numpy(), x)
    np.testing.assert_array_equal(td.cat([td.zeros(0, 3), tx]).numpy(), x)
    assert td.cat([td.zeros(0), td.zeros(0)]).shape == (0,)
    assert td.stack([td.zeros(0, 3), td.zeros(0, 3)], dim=1).shape == (0, 2, 3)
    scalars = td.stack([td.tensor(1), td.tensor(2.5)])
    assert scalars.dtype == np.float32
    np.testing.assert_array_equal(scalars.numpy(), [1.0, 2.5])


def test_cat_and_stack_errors(td):
    a, b = td.zeros(2, 3), td.zeros(2, 4)
    with pytest.raises(tensord.InvalidArgumentError) as err:
        synced(td.cat([a, a, b]))
    assert "cat: sizes of tensors must match except in dimension 0" in err.value.details
    assert "expected size 3 but got size 4 for tensor 2" in err.value.details
    with pytest.raises(tensord.InvalidArgumentError, match="tensor 0 has shape \\[2, 3\\] but tensor 1 has shape \\[2, 3, 1\\]"):
        synced(td.cat([a, td.zeros(2, 3, 1)]))
    with pytest.raises(tensord.InvalidArgumentError, match=r"zero-dimensional tensor \(at position 1\)"):
        synced(td.cat([a, td.tensor(1.0)]))
    with pytest.raises(tensord.InvalidArgumentError, match="non-empty list"):
        synced(td.cat([]))
    with pytest.raises(tensord.InvalidArgumentError, match="dimension out of range"):
        synced(td.cat([a, a], dim=2))
    with pytest.raises(tensord.InvalidArgumentError) as err:
        synced(td.stack([a, a, b]))
    assert err.value.details == (
        "stack: expects each tensor to be equal size, but got [2, 3] at entry 0 and [2, 4] at entry 2"
    )
    with pytest.raises(tensord.InvalidArgumentError, match="dimension out of range"):
        synced(td.stack([a, a], dim=3))
    with pytest.raises(tensord.InvalidArgumentError, match="argument 1 must be a tensor"):
        synced(td.cat([a, 1.0]))
    with pytest.raises(TypeError):
        td.cat(a)
    assert td.cat([a, a]).shape == (4, 3)  # still serving


# ---- in-place updates -----------------------------------------------------------


def test_in_place_ops_update_values_and_return_self(td):
    x = sample("float32", (3, 4))
    y = sample("float32", (3, 4))
    t = td.from_numpy(x)
    assert t.add_(td.from_numpy(y)) is t
    x = x + y
    np.testing.assert_allclose(t.numpy(), x, rtol=1e-6)
    assert t.add_(2.5, alpha=-2) is t
    x = x - 5
    np.testing.assert_allclose(t.numpy(), x, rtol=1e-6)
    t.add_(td.from_numpy(y), alpha=0.5)
    x = x + np.float32(0.5) * y
    np.testing.assert_allclose(t.numpy(), x, rtol=1e-6)
    assert t.mul_(td.from_numpy(y[0])) is t  # broadcast over rows
    x = x * y[0]
    np.testing.assert_allclose(t.numpy(), x, rtol=1e-6)
    t.mul_(3)
    np.testing.assert_allclose(t.numpy(), x * 3, rtol=1e-6)
    assert t.fill_(1.25) is t
    np.testing.assert_array_equal(t.numpy(), np.full((3, 4), 1.25, np.float32))
    assert t.zero_() is t
    np.testing.assert_array_equal(t.numpy(), np.zeros((3, 4), np.float32))
    assert t.copy_(td.from_numpy(y)) is t
    np.testing.assert_array_equal(t.numpy(), y)


def test_in_place_changes_are_seen_by_views_and_bases(td):
    base = np.arange(12, dtype=np.int64).reshape(3, 4)
    t = td.from_numpy(base)
    tail, column, transposed = t[1:], t[:, 1], t.T
    t.add_(1)
    expected = base + 1
    np.testing.assert_array_equal(tail.numpy(), expected[1:])
    np.testing.assert_array_equal(column.numpy(), expected[:, 1])
    # Writing through a strided view updates the base and the other views.
    column.mul_(10)
    expected[:, 1] *= 10
    np.testing.assert_array_equal(t.numpy(), expected)
    np.testing.assert_array_equal(transposed.numpy(), expected.T)
    transposed[1:3].fill_(-1)
    expected.T[1:3] = -1
    np.testing.assert_array_equal(t.numpy(), expected)
    t[::2, ::3].zero_()
    expected[::2, ::3] = 0
    np.testing.assert_array_equal(tail.numpy(), expected[1:])
    t[1].copy_(td.from_numpy(np.array([7, 8, 9, 10])))
    expected[1] = [7, 8, 9, 10]
    np.testing.assert_array_equal(t.numpy(), expected)


def test_in_place_self_aliasing(td):
    x = sample("float64", (4, 5))
    t = td.from_numpy(x)
    t.add_(t)
    np.testing.assert_array_equal(t.numpy(), x * 2)
    t.mul_(t)
    np.testing.assert_array_equal(t.numpy(), (x * 2) ** 2)
    t.add_(t, alpha=-1)
    np.testing.assert_array_equal(t.numpy(), np.zeros((4, 5)))
    # Partial overlap reads the old values (NumPy's semantics for a[1:] += a[:-1]).
    v = np.arange(6.0)
    tv = td.from_numpy(v)
    tv[1:].add_(tv[:-1])
    expected = v.copy()
    expected[1:] += v[:-1]
    np.testing.assert_array_equal(tv.numpy(), expected)
    m = np.arange(9.0).reshape(3, 3)
    tm = td.from_numpy(m)
    tm.copy_(tm.T)  # a transpose of itself
    np.testing.assert_array_equal(tm.numpy(), m.T)
    tm.mul_(tm[0])  # broadcast of its own first row
    np.testing.assert_array_equal(tm.numpy(), m.T * m.T[0])
    tm.fill_(tm[2, 2])  # a 0-d view of itself
    np.testing.assert_array_equal(tm.numpy(), np.full((3, 3), (m.T * m.T[0])[2, 2]))


def test_in_place_keeps_self_dtype(td):
    f32 = td.from_numpy(np.ones(3, np.float32))
    f32.add_(td.from_numpy(np.full(3, 1 / 3)))  # float64 operand: computed wide, stored float32
    assert f32.dtype == np.float32
    np.testing.assert_array_equal(f32.numpy(), np.full(3, np.float32(1 + 1 / 3)))
    i32 = td.from_numpy(np.array([1, 2, 3], np.int32))
    i32.mul_(td.from_numpy(np.array([2, 2, 2], np.int64)))
    assert i32.dtype == np.int32
    np.testing.assert_array_equal(i32.numpy(), [2, 4, 6])
    i8 = td.from_numpy(np.array([100, -100], np.int8))
    i8.add_(100)  # wraps like torch
    np.testing.assert_array_equal(i8.numpy(), np.array([100, -100], np.int8) + np.int8(100))
    h = td.from_numpy(np.array([1.0, 2.0], np.float16))
    h.add_(td.from_numpy(np.array([0.5, 0.25], np.float16)), alpha=2)
    np.testing.assert_array_equal(h.numpy(), np.array([2.0, 2.5], np.float16))
    flags = td.from_numpy(np.array([True, False, False]))
    flags.add_(td.from_numpy(np.array([False, True, False])))
    np.testing.assert_array_equal(flags.numpy(), [True, True, False])
    c = td.from_numpy(np.array([1 + 1j], np.complex64))
    c.mul_(2j)
    np.testing.assert_array_equal(c.numpy(), np.array([-2 + 2j], np.complex64))
    ints = td.zeros(3, dtype="int64")
    ints.fill_(2.7)  # truncates, as torch's fill_
    np.testing.assert_array_equal(ints.numpy(), [2, 2, 2])
    ints.copy_(td.from_numpy(np.array([1.9, -1.9, 5.5])))
    np.testing.assert_array_equal(ints.numpy(), [1, -1, 5])


def test_in_place_cast_errors_leave_self_unchanged(td):
    ints = td.from_numpy(np.array([1, 2, 3], np.int64))
    with pytest.raises(tensord.InvalidArgumentError) as err:
        synced(ints.add_(0.5))
    assert err.value.details == "add_: result type float32 can't be cast to the desired output type int64"
    with pytest.raises(tensord.InvalidArgumentError, match="result type float64 can't be cast to the desired output type int64"):
        synced(ints.mul_(td.from_numpy(np.ones(3))))
    with pytest.raises(tensord.InvalidArgumentError, match="result type complex64 can't be cast"):
        synced(td.zeros(3).add_(1j))
    with pytest.raises(tensord.InvalidArgumentError, match="result type int64 can't be cast to the desired output type bool"):
        synced(td.zeros(3, dtype="bool").add_(1))
    with pytest.raises(tensord.InvalidArgumentError, match="alpha must not be a floating point number"):
        synced(ints.add_(ints, alpha=0.5))
    with pytest.raises(tensord.InvalidArgumentError, match="bool alpha"):
        synced(ints.add_(ints, alpha=True))
    with pytest.raises(tensord.InvalidArgumentError, match="without overflow"):
        synced(td.zeros(2, dtype="int8").fill_(300))
    with pytest.raises(tensord.InvalidArgumentError, match="without overflow"):
        synced(td.zeros(2, dtype="float16").fill_(1e6))
    np.testing.assert_array_equal(ints.numpy(), [1, 2, 3])


def test_in_place_broadcast_and_overlap_errors(td):
    t = td.zeros(2, 3)
    t.add_(td.ones(3))  # other broadcasts to self
    t.add_(td.ones(2, 1))
    np.testing.assert_array_equal(t.numpy(), np.full((2, 3), 2.0, np.float32))
    with pytest.raises(tensord.InvalidArgumentError) as err:
        synced(td.zeros(3).add_(td.ones(2, 3)))  # self never grows
    assert err.value.details == "add_: shape [2, 3] cannot be broadcast to self's shape [3]"
    with pytest.raises(tensord.InvalidArgumentError, match="shape \\[4\\] cannot be broadcast"):
        synced(t.mul_(td.ones(4)))
    with pytest.raises(tensord.InvalidArgumentError, match="cannot be broadcast"):
        synced(t.copy_(td.ones(3, 3)))
    expanded = td.zeros(1, 3).expand(4, 3)
    for call in (lambda: expanded.add_(1), lambda: expanded.zero_(), lambda: expanded.fill_(2),
                 lambda: expanded.copy_(td.ones(4, 3)), lambda: expanded.mul_(expanded)):
        with pytest.raises(tensord.InvalidArgumentError, match="expanded view"):
            synced(call())
    with pytest.raises(tensord.InvalidArgumentError, match="0-dimensional tensor"):
        synced(t.fill_(td.ones(1)))
    with pytest.raises(TypeError):
        t.copy_(1.0)
    with pytest.raises(tensord.InvalidArgumentError, match="argument 1 must be a tensor"):
        td._op("copy_", t, 1.0, nout=0)  # in place: no output
        td.synchronize()
    np.testing.assert_array_equal(t.numpy(), np.full((2, 3), 2.0, np.float32))


def test_in_place_on_empty_tensors(td):
    e = td.zeros(0, 3)
    assert e.add_(1) is e and e.mul_(td.ones(3)) is e and e.zero_() is e and e.fill_(3) is e
    assert e.copy_(td.ones(1, 3)) is e
    assert e.numpy().shape == (0, 3)


def test_writes_into_overlapping_uploads_are_refused(td):
    """An upload may carry overlapping strides (NumPy's as_strided): reads work,
    every in-place write is refused (it would apply several times to the shared
    elements), and nothing changes."""
    windows = np.lib.stride_tricks.as_strided(np.arange(5.0), (3, 3), (8, 8))
    t = td.from_numpy(windows)
    assert t.stride() == (1, 1)
    np.testing.assert_array_equal(t.numpy(), windows)
    np.testing.assert_array_equal((t + 1).numpy(), windows + 1)
    writes = (lambda: t.add_(1), lambda: t.mul_(2), lambda: t.zero_(), lambda: t.fill_(2),
              lambda: t.copy_(td.ones(3, 3, dtype="float64")), lambda: t.__setitem__(0, 1.0),
              lambda: t.index_put_(([0, 2],), 5.0, accumulate=True))
    for write in writes:
        with pytest.raises(tensord.InvalidArgumentError, match=r"strides \[1, 1\]\) has several elements at one memory location"):
            write()
            td.synchronize()
    np.testing.assert_array_equal(t.numpy(), windows)
    w = td.from_numpy(windows).requires_grad_()
    (w * 1.0).sum().backward()
    opt = td.optim.SGD([w], lr=0.1)
    with pytest.raises(tensord.InvalidArgumentError, match="SGD: parameter 0 .* several elements"):
        opt.step()
        td.synchronize()
    np.testing.assert_array_equal(w.detach().numpy(), windows)
