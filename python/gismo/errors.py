"""The exceptions of gismo: one class per gismo_status_t, all under Error.

The classes are made from the one list of status codes,
include/gismo/status_codes.h (which names each class and the builtin
exception it also derives from), through _gismo.ERROR_CLASSES.
STATUS_ERRORS maps every status code but OK to its class; the extension
raises that class for every failed call, with the C library's
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


class NotAnArray(Error, ValueError):
    """get_array on an object that put_array did not write."""


def _error_class(status, name, builtin_base, message):
    bases = (Error,)
    if builtin_base:
        bases += (getattr(builtins, builtin_base),)
    return type(name, bases, {
        "__doc__": f"{message} (Status.{status.name})",
        "__module__": __name__,
        "__qualname__": name,
        "status": status,
    })


STATUS_ERRORS = {status: _error_class(status, name, base, message)
                 for status, name, base, message in _gismo.ERROR_CLASSES}
globals().update({cls.__name__: cls for cls in STATUS_ERRORS.values()})

__all__ = ["Error", "NotAnArray", "STATUS_ERRORS",
           *(cls.__name__ for cls in STATUS_ERRORS.values())]

_gismo._register_errors(
    {int(status): cls for status, cls in STATUS_ERRORS.items()})
