"""gismo: a shared-memory object store, zero copy from Python.

    import gismo, numpy as np
    with gismo.connect("unix:/run/gismo/gismo.sock") as client:
        oid = gismo.ObjectID.from_name("weights")
        client.put_array(oid, np.arange(10.0))
        view = client.get_array(oid)   # read-only, points into shared memory

See python/README.md for the zero-copy and lifetime rules.
"""

from ._gismo import ID_SIZE, Buffer, Event, ObjectID, Status, __version__
from ._gismo import status_message
from .cache import Cache
from .client import Client, Identity, connect
from .subscription import REASON_EVICTED, Notification, Subscription
from . import checkpoint
from . import errors as _errors
# Error, NotAnArray, STATUS_ERRORS and the class of each status code.
from .errors import *  # noqa: F401,F403

__all__ = [
    "ID_SIZE", "REASON_EVICTED", "Buffer", "Cache", "Client", "Event",
    "Identity", "Notification", "ObjectID", "Status", "Subscription",
    "connect", "status_message",
    "__version__",
    *_errors.__all__,
]
