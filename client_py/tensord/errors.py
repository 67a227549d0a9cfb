"""Exceptions raised by the tensord client, one class per gRPC status code.

Every `grpc.RpcError` coming out of a tensord call is turned into one of these
by `from_rpc_error`, so users catch `tensord.Error` (or a subclass such as
`tensord.NotFoundError`) and never see grpc types. `.code` is the
`grpc.StatusCode` and `.details` the server's message. The failure of a
pipelined op, raised at a later sync point, also has `.op` (the op's name)
and `.where` (the file and line that issued it); both are None otherwise.
`SessionExpiredError`, a `NotFoundError`, says that the session itself is
gone (see `tensord.connect` on dropped connections).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import grpc


class Error(Exception):
    """Any failure of a tensord call; `.code` is a grpc.StatusCode, `.details` the message."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    op: str | None = None
    where: tuple[str, int] | None = None
    #: True when raised for a tensor that was not computed because `op` failed.
    dependent: bool = False

    def __init__(self, details: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(details)
        self.details = details
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        text = f"{self.code.name}: "
        if self.dependent:
            text += "this tensor depends on a failed op: "
        text += self.details
        if self.op is not None and self.where is not None:
            text += f" (op '{self.op}' issued at {self.where[0]}:{self.where[1]})"
        return text

    def __reduce__(self):  # keeps pickling working despite the two-argument __init__
        return (type(self), (self.details, self.code))


class CancelledError(Error):
    code = grpc.StatusCode.CANCELLED


class InvalidArgumentError(Error):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceededError(Error):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFoundError(Error):
    code = grpc.StatusCode.NOT_FOUND


class SessionExpiredError(NotFoundError):
    """The client's session no longer exists on the server, so every tensor it held is gone.

    Raised when the connection was lost for longer than the session's lease
    (the server then closes the session and frees its tensors), or the server
    restarted. A shorter drop is resumed by the client on its own. The client
    cannot be used any more: open a new one with `tensord.connect`.
    """


class PermissionDeniedError(Error):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(Error):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(Error):
    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRangeError(Error):
    code = grpc.StatusCode.OUT_OF_RANGE


class UnimplementedError(Error):
    code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(Error):
    code = grpc.StatusCode.INTERNAL


class UnavailableError(Error):
    code = grpc.StatusCode.UNAVAILABLE


class DataLossError(Error):
    code = grpc.StatusCode.DATA_LOSS


class UnauthenticatedError(Error):
    code = grpc.StatusCode.UNAUTHENTICATED


_CLASS_BY_CODE: dict[grpc.StatusCode, type[Error]] = {
    cls.code: cls
    for cls in (
        CancelledError, InvalidArgumentError, DeadlineExceededError, NotFoundError,
        PermissionDeniedError, ResourceExhaustedError, FailedPreconditionError,
        OutOfRangeError, UnimplementedError, InternalError, UnavailableError,
        DataLossError, UnauthenticatedError,
    )
}


def error_class(code: grpc.StatusCode) -> type[Error]:
    """The exception class for a status code (`Error` itself for codes without one)."""
    return _CLASS_BY_CODE.get(code, Error)


def from_rpc_error(err: grpc.RpcError) -> Error:
    """The tensord exception for a failed gRPC call (the one translation point)."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    if code is None:
        code = grpc.StatusCode.UNKNOWN
    cls = _CLASS_BY_CODE.get(code, Error)
    return cls(details or code.name.lower(), code)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Runs a block that talks gRPC, re-raising any grpc.RpcError as a tensord.Error."""
    try:
        yield
    except grpc.RpcError as e:
        raise from_rpc_error(e) from None
