"""Memory layout on the client: which bytes an upload sends, where a download lands.

Upload: an array whose strides are non-negative multiples of its itemsize and
whose element span fits in `a.size` elements (C or Fortran order, transposes,
any dense permutation, broadcasts) is sent as-is, its span read in place with
its element strides in the header. Anything else (gaps, negative strides) is
compacted to C order first. Big-endian arrays are converted to little-endian
first, keeping their layout as far as NumPy's `order="K"` does.

Download: the span lands in one fresh buffer, offset so that element [0,...,0]
is 64-byte aligned, and the result is an ndarray over that buffer with the
view's own strides: never a compacted copy, writable, and aliasing itself
where the view has stride 0 (like torch's .numpy()).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from tensord import dtypes
from tensord.errors import DataLossError
from tensord.v1 import tensord_pb2 as pb

ALIGNMENT = 64


def span_elements(shape: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """Elements between the first and last addressed element, inclusive; 0 if empty."""
    if any(n == 0 for n in shape):
        return 0
    return 1 + sum((n - 1) * s for n, s in zip(shape, strides))


@dataclass(frozen=True)
class UploadLayout:
    """What an Upload sends: the header fields and the span bytes (a view, not a copy)."""

    dtype: pb.DType
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # elements; () means C-contiguous
    span: memoryview  # flat bytes; keeps the source array alive


def plan_upload(a: np.ndarray) -> UploadLayout:
    """Chooses how to send `a` (see the module docstring); TypeError for unsupported dtypes."""
    proto_dtype = dtypes.to_proto(a.dtype)
    if _is_big_endian(a.dtype):
        a = a.astype(a.dtype.newbyteorder("<"), order="K")
    shape = tuple(a.shape)
    if a.size == 0:
        return UploadLayout(proto_dtype, shape, (), memoryview(b""))
    strides = _element_strides(a)
    if strides is not None and span_elements(shape, strides) <= a.size:
        return UploadLayout(proto_dtype, shape, strides, _span_in_place(a, span_elements(shape, strides)))
    compact = np.ascontiguousarray(a)
    return UploadLayout(proto_dtype, shape, (), compact.reshape(-1).view(np.uint8).data)


def _is_big_endian(dt: np.dtype) -> bool:
    return dt.byteorder == ">" or (dt.byteorder == "=" and sys.byteorder == "big")


def _element_strides(a: np.ndarray) -> tuple[int, ...] | None:
    """Strides in elements, or None when some stride is negative or not a multiple of itemsize.

    A dimension of size 1 never moves the address, so whatever NumPy reports
    for its stride is replaced by 0 when it would not be a valid element stride.
    """
    out = []
    for n, s in zip(a.shape, a.strides):
        if s >= 0 and s % a.itemsize == 0:
            out.append(s // a.itemsize)
        elif n == 1:
            out.append(0)
        else:
            return None
    return tuple(out)


def _span_in_place(a: np.ndarray, span: int) -> memoryview:
    """The `span` elements starting at a's data pointer, as flat bytes, without copying."""
    items = a.view(np.dtype((np.void, a.itemsize)))
    flat = np.lib.stride_tricks.as_strided(items, shape=(span,), strides=(a.itemsize,), writeable=False)
    return flat.view(np.uint8).data


class DownloadBuffer:
    """One aligned buffer for a Download's span, and the ndarray view over it.

    Construct from the DownloadHeader, let the wire layer fill `span`, then
    call `array()`. Peak memory is the span plus ALIGNMENT bytes.
    """

    def __init__(self, header: pb.DownloadHeader) -> None:
        meta = header.meta
        dtype = dtypes.from_proto(meta.dtype)
        if sys.byteorder == "big" and dtype.itemsize > 1:
            dtype = dtype.newbyteorder("<")  # the wire is little-endian
        self._dtype = dtype
        self._shape = tuple(meta.shape)
        strides = tuple(header.strides)
        if len(strides) != len(self._shape) or any(s < 0 for s in strides) or header.offset < 0:
            raise DataLossError(
                f"Download: bad header for shape {list(self._shape)}: strides {list(strides)}, "
                f"offset {header.offset}"
            )
        span_nbytes = header.span_nbytes
        needed = dtype.itemsize * (header.offset + span_elements(self._shape, strides)) if all(self._shape) else 0
        if span_nbytes < needed or span_nbytes < 0:
            raise DataLossError(
                f"Download: span_nbytes={span_nbytes} cannot hold shape {list(self._shape)} with "
                f"strides {list(strides)} and offset {header.offset} ({needed} bytes needed)"
            )
        self._byte_strides = tuple(s * dtype.itemsize for s in strides)
        first = header.offset * dtype.itemsize
        self._raw = np.empty(span_nbytes + ALIGNMENT, dtype=np.uint8)
        self._start = (-(self._raw.ctypes.data + first)) % ALIGNMENT
        self._first = self._start + first
        self.span = self._raw.data[self._start:self._start + span_nbytes]

    def array(self) -> np.ndarray:
        """The downloaded tensor: its dtype, shape and strides over this buffer."""
        return np.ndarray(
            self._shape, dtype=self._dtype, buffer=self._raw, offset=self._first, strides=self._byte_strides
        )
