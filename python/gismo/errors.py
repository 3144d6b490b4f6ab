"""The exceptions of gismo: one class per gismo_status_t, all under Error.

STATUS_ERRORS is the one mapping from status codes to classes; the extension
raises the class registered here for every failed call, with the C library's
gismo_last_error() detail as the message.
"""

import builtins

from . import _gismo

Status = _gismo.Status


class Error(Exception):
    """A failed gismo call. `status` is the gismo.Status code."""

    status = None

    def __init__(self, message="", status=None):
        super().__init__(message)
        if status is not None:
            self.status = Status(status)


class InvalidArgument(Error, ValueError):
    status = Status.INVALID_ARGUMENT


class ObjectExists(Error):
    status = Status.OBJECT_EXISTS


class ObjectNotFound(Error, LookupError):
    status = Status.OBJECT_NOT_FOUND


class ObjectNotSealed(Error):
    status = Status.OBJECT_NOT_SEALED


class ObjectAlreadySealed(Error):
    status = Status.OBJECT_ALREADY_SEALED


class ObjectInUse(Error):
    status = Status.OBJECT_IN_USE


class StoreFull(Error, MemoryError):
    """The store's heap or object index is full (OUT_OF_MEMORY)."""

    status = Status.OUT_OF_MEMORY


class Timeout(Error, TimeoutError):
    status = Status.TIMEOUT


class ConnectionError(Error, builtins.ConnectionError):  # noqa: A001
    """The manager is unreachable or gone, or the lease was lost."""

    status = Status.CONNECTION


class ProtocolError(Error):
    status = Status.PROTOCOL


class IOError(Error, OSError):  # noqa: A001
    status = Status.IO


class LimitReached(Error):
    status = Status.LIMIT


class NotCreator(Error, PermissionError):
    status = Status.NOT_CREATOR


class NotHeld(Error):
    status = Status.NOT_HELD


class BadRegion(Error):
    status = Status.BAD_REGION


class InternalError(Error):
    status = Status.INTERNAL


class Unsupported(Error, NotImplementedError):
    status = Status.UNSUPPORTED


class NotAnArray(Error, ValueError):
    """get_array on an object that put_array did not write."""


STATUS_ERRORS = {
    Status.INVALID_ARGUMENT: InvalidArgument,
    Status.OBJECT_EXISTS: ObjectExists,
    Status.OBJECT_NOT_FOUND: ObjectNotFound,
    Status.OBJECT_NOT_SEALED: ObjectNotSealed,
    Status.OBJECT_ALREADY_SEALED: ObjectAlreadySealed,
    Status.OBJECT_IN_USE: ObjectInUse,
    Status.OUT_OF_MEMORY: StoreFull,
    Status.TIMEOUT: Timeout,
    Status.CONNECTION: ConnectionError,
    Status.PROTOCOL: ProtocolError,
    Status.IO: IOError,
    Status.LIMIT: LimitReached,
    Status.NOT_CREATOR: NotCreator,
    Status.NOT_HELD: NotHeld,
    Status.BAD_REGION: BadRegion,
    Status.INTERNAL: InternalError,
    Status.UNSUPPORTED: Unsupported,
}

# A status without a class here (a newer library) raises Error itself.
_gismo._register_errors(
    {int(code): STATUS_ERRORS.get(code, Error)
     for code in Status.__members__.values() if code != Status.OK})
