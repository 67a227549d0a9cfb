"""Wire encoding by hand: framing of the bulk-transfer streams, and scalars.

Upload and Download carry tensor bytes, so they skip the generated message
classes: grpcio hands us `bytes` and we frame the `chunk` field (field 2,
wire type 2, tag byte 0x12) ourselves. That costs exactly one allocation per
upload chunk (prefix + payload joined) and one copy per download chunk
(straight from the received message into the destination buffer); the whole
tensor is never copied.

Invariants: upload chunks are the span bytes in order with no gaps; a
download is one header message (tag 0x0A) followed by chunk messages whose
payloads add up to `span_nbytes`, else DataLossError.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from tensord.errors import DataLossError
from tensord.v1 import tensord_pb2 as pb

_INT64 = (-(1 << 63), (1 << 63) - 1)
_HEADER_TAG = 0x0A  # field 1, wire type 2 (length-delimited)
_CHUNK_TAG = 0x12  # field 2, wire type 2


def encode_varint(value: int) -> bytes:
    """The protobuf base-128 varint encoding of a non-negative int."""
    if value < 0:
        raise ValueError(f"varint of negative value {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decodes the varint at buf[pos:]; returns (value, position after it)."""
    value = 0
    shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise DataLossError("Download: truncated or oversized varint in a chunk message")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def upload_messages(header: bytes, span: memoryview, chunk_bytes: int) -> Iterator[bytes]:
    """The serialized UploadRequest stream: `header`, then `span` cut into chunks.

    `header` is a serialized `UploadRequest(header=...)`; `span` a flat byte
    memoryview of the tensor's bytes (never copied as a whole).
    """
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    yield header
    total = len(span)
    full_prefix = bytes((_CHUNK_TAG,)) + encode_varint(chunk_bytes)
    for start in range(0, total, chunk_bytes):
        piece = span[start:start + chunk_bytes]
        n = len(piece)
        prefix = full_prefix if n == chunk_bytes else bytes((_CHUNK_TAG,)) + encode_varint(n)
        yield b"".join((prefix, piece))


def chunk_payload(message: bytes) -> memoryview | bytes:
    """The payload of one serialized DownloadResponse that should hold a chunk.

    The fast path reads `0x12 varint payload` in place; anything else (an
    encoder that adds fields, an empty message) goes through the generated parser.
    """
    if message and message[0] == _CHUNK_TAG:
        length, pos = decode_varint(message, 1)
        if pos + length == len(message):
            return memoryview(message)[pos:]
    resp = pb.DownloadResponse.FromString(message)
    kind = resp.WhichOneof("kind")
    if kind == "header":
        raise DataLossError("Download: the server sent a second header in the middle of the stream")
    return resp.chunk  # b"" when no field is set


def read_download(
    messages: Iterable[bytes], allocate: Callable[[pb.DownloadHeader], memoryview]
) -> pb.DownloadHeader:
    """Consumes a raw Download stream, writing the chunks into `allocate(header)`.

    `allocate` receives the parsed header and returns a writable byte
    memoryview of exactly `header.span_nbytes` bytes. Returns the header.
    Raises DataLossError when the stream is malformed or its chunks do not add
    up to `span_nbytes`.
    """
    stream = iter(messages)
    first = next(stream, None)
    if first is None:
        raise DataLossError("Download: the stream ended before its header")
    if not first or first[0] != _HEADER_TAG:
        raise DataLossError(
            f"Download: the first message must be a header (tag 0x0a), got {bytes(first[:1])!r}"
        )
    header = pb.DownloadResponse.FromString(first).header
    span_nbytes = header.span_nbytes
    dest = allocate(header)
    if len(dest) != span_nbytes:
        raise ValueError(f"allocate returned {len(dest)} bytes for a span of {span_nbytes}")
    filled = 0
    for message in stream:
        payload = chunk_payload(message)
        end = filled + len(payload)
        if end > span_nbytes:
            raise DataLossError(
                f"Download: received more than span_nbytes={span_nbytes} bytes ({end} so far)"
            )
        dest[filled:end] = payload
        filled = end
    if filled != span_nbytes:
        raise DataLossError(f"Download: received {filled} bytes, header promised span_nbytes={span_nbytes}")
    return header


def scalar(value: Any) -> pb.Scalar:
    """A proto Scalar that keeps ints exact; TypeError for non-numbers."""
    if isinstance(value, (bool, np.bool_)):
        return pb.Scalar(b=bool(value))
    if isinstance(value, numbers.Integral):
        i = int(value)
        if not _INT64[0] <= i <= _INT64[1]:
            raise ValueError(f"{i} does not fit in int64")
        return pb.Scalar(i=i)
    if isinstance(value, numbers.Real):
        return pb.Scalar(f=float(value))
    if isinstance(value, numbers.Complex):
        c = complex(value)
        return pb.Scalar(f=c.real, imag=c.imag)
    raise TypeError(f"expected a number, got {type(value).__name__}: {value!r}")
