"""The twelve dtypes tensord stores, and their mapping to NumPy and the wire.

`resolve(dtype_like)` turns anything a user may pass as `dtype=` (a NumPy dtype,
a NumPy scalar type, a string such as "float32" or "bfloat16") into a native
NumPy dtype, or raises TypeError naming what it got. `to_proto` / `from_proto`
convert between NumPy dtypes and the proto `DType` enum.

bfloat16 comes from the optional `ml_dtypes` package (`pip install
tensord[bfloat16]`); everything else works without it, and using bfloat16
without it raises ImportError saying so.
"""
from __future__ import annotations

from typing import Any, Union

import numpy as np

from tensord.v1 import tensord_pb2 as pb

try:
    import ml_dtypes as _ml_dtypes

    _BFLOAT16: np.dtype | None = np.dtype(_ml_dtypes.bfloat16)
except ImportError:  # optional extra: only bfloat16 needs it
    _BFLOAT16 = None

DTypeLike = Union[np.dtype, type, str]

_MISSING_BFLOAT16 = (
    "bfloat16 needs the ml_dtypes package: pip install 'tensord[bfloat16]' (or pip install ml_dtypes)"
)

# Proto enum <-> NumPy scalar type name; bfloat16 is handled apart because its
# NumPy type only exists when ml_dtypes is installed.
_PROTO_BY_NAME: dict[str, pb.DType] = {
    "bool": pb.DTYPE_BOOL,
    "uint8": pb.DTYPE_UINT8,
    "int8": pb.DTYPE_INT8,
    "int16": pb.DTYPE_INT16,
    "int32": pb.DTYPE_INT32,
    "int64": pb.DTYPE_INT64,
    "float16": pb.DTYPE_FLOAT16,
    "float32": pb.DTYPE_FLOAT32,
    "float64": pb.DTYPE_FLOAT64,
    "complex64": pb.DTYPE_COMPLEX64,
    "complex128": pb.DTYPE_COMPLEX128,
}
_NUMPY_BY_PROTO: dict[pb.DType, np.dtype] = {p: np.dtype(name) for name, p in _PROTO_BY_NAME.items()}

#: Names of every dtype the server stores, in proto order.
SUPPORTED: tuple[str, ...] = (
    "bool", "uint8", "int8", "int16", "int32", "int64",
    "float16", "bfloat16", "float32", "float64", "complex64", "complex128",
)


def bfloat16() -> np.dtype:
    """The NumPy bfloat16 dtype from ml_dtypes; ImportError if it is not installed."""
    if _BFLOAT16 is None:
        raise ImportError(_MISSING_BFLOAT16)
    return _BFLOAT16


def resolve(dtype: Any) -> np.dtype:
    """Normalizes a user's `dtype=` argument to a native-byte-order NumPy dtype.

    Accepts np.dtype, NumPy scalar types (np.float32), Python `bool`/`int`/`float`/
    `complex` (as NumPy reads them) and strings ("float32", "bfloat16"). Raises
    TypeError for anything tensord does not store, naming it.
    """
    if dtype is None:  # np.dtype(None) would silently mean float64
        raise TypeError("tensord: dtype must not be None here")
    if isinstance(dtype, str) and dtype == "bfloat16":
        return bfloat16()
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"tensord: {dtype!r} is not a dtype ({e})") from None
    _check_supported(dt)
    return dt.newbyteorder("=") if dt.byteorder in "<>" else dt


def to_proto(dtype: Any) -> pb.DType:
    """The proto `DType` enum value of a dtype-like; TypeError if unsupported."""
    dt = resolve(dtype)
    if _BFLOAT16 is not None and dt == _BFLOAT16:
        return pb.DTYPE_BFLOAT16
    return _PROTO_BY_NAME[dt.name]


def from_proto(value: pb.DType) -> np.dtype:
    """The NumPy dtype of a proto `DType` enum value (native byte order)."""
    if value == pb.DTYPE_BFLOAT16:
        return bfloat16()
    try:
        return _NUMPY_BY_PROTO[value]
    except KeyError:
        raise TypeError(f"tensord: the server sent unknown dtype enum {value}") from None


def proto_name(value: pb.DType) -> str:
    """A short name for a proto `DType` ("float32"), usable without ml_dtypes."""
    name = pb.DType.Name(value) if value in pb.DType.values() else f"DTYPE_{value}"
    return name.removeprefix("DTYPE_").lower()


def _check_supported(dt: np.dtype) -> None:
    if _BFLOAT16 is not None and dt == _BFLOAT16:
        return
    if dt.fields is None and dt.subdtype is None and dt.name in _PROTO_BY_NAME:
        # "name" ignores byte order, and structured/void types never reach here
        # with a supported name.
        if np.dtype(dt.name).type is dt.type:
            return
    raise TypeError(
        f"tensord: dtype {dt} is not supported; supported dtypes are {', '.join(SUPPORTED)}"
    )


def named() -> dict[str, Any]:
    """torch-style dtype names (`td.float16`, `td.int64`, ...) and their NumPy dtypes.

    bfloat16 is the string "bfloat16" when ml_dtypes is missing, so that the
    name exists and using it raises the ImportError that says why.
    """
    names = {name: np.dtype(name) for name in _PROTO_BY_NAME}
    names["bfloat16"] = _BFLOAT16 if _BFLOAT16 is not None else "bfloat16"
    return names
