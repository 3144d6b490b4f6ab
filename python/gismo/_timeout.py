"""The timeout_ms argument of waiting calls, checked the same everywhere."""

import operator

from .errors import InvalidArgument

FOREVER = -1
# The largest timeout the library takes (int64 milliseconds); larger ones
# mean the same: about 292 million years.
_MAX_MS = 2**63 - 1


def timeout_ms(value):
    """timeout_ms as the extension takes it: -1 (or None) waits forever, 0
    does not wait; anything but an integer is a TypeError, an int below -1
    InvalidArgument (a ValueError), as the C API refuses it."""
    if value is None:
        return FOREVER
    # Any integer (numpy's too, through __index__); not a bool or a float.
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise TypeError("timeout_ms must be an int (ms; -1 or None: forever, "
                        f"0: no wait), not {type(value).__name__}") from None
    if value < FOREVER:
        raise InvalidArgument("timeout_ms must be -1 (forever), 0 or "
                              f"positive, got {value}")
    return min(value, _MAX_MS)
