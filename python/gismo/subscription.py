"""Notifications of sealed and deleted objects: Client.subscribe()."""

import typing

from . import _gismo
from ._timeout import FOREVER as _FOREVER
from ._timeout import timeout_ms as _timeout
from .errors import InvalidArgument

Event = _gismo.Event
# Notification.reason of an eviction (GISMO_REASON_EVICTED).
REASON_EVICTED = 1


class Notification(typing.NamedTuple):
    """One seal or delete somewhere in the cluster, or an overflow.

    event: Event.SEALED, Event.DELETED or Event.OVERFLOW (events were lost:
    resynchronize with Client.list()). id: the ObjectID, None for OVERFLOW.
    node: the node that sealed or deleted it. seq: the position in the
    store's one event order, 0 for objects already sealed when the
    subscription began. reason: why it was deleted, REASON_EVICTED if the
    store evicted it to make room, else 0 (also the `evicted` property).
    """

    event: Event
    id: typing.Optional[_gismo.ObjectID]
    data_size: int
    metadata_size: int
    node: int
    seq: int
    reason: int = 0

    @property
    def evicted(self):
        """Whether the store evicted the object (a DELETED event)."""
        return self.reason == REASON_EVICTED


class Subscription(_gismo._Subscription):
    """A client's stream of notifications (Client.subscribe()).

    First every object already sealed (seq 0), then each seal and delete
    anywhere in the cluster, in the store's order. fileno() is readable when
    notifications wait: register it with select/selectors/asyncio, then call
    next(0) until it raises Timeout. Iterating blocks for each notification
    and ends when the subscription or its client is closed.

    The subscriptions of one client share one stream: each notification is
    delivered once, to whichever of them asks first. The connection stays
    open while a Subscription lives (like a Buffer); close() (or leaving
    `with`) drops it and ends waits in other threads at once.
    """

    def __init__(self, client):
        if not isinstance(client, _gismo._Client):
            raise TypeError("Subscription(client) takes a gismo.Client, not "
                            f"{type(client).__name__}")
        super().__init__(client)

    def next(self, timeout_ms=-1):
        """The next Notification, waiting up to timeout_ms (-1 or None:
        forever, 0: no wait); raises Timeout if none came. Runs without the
        GIL; Ctrl-C interrupts it."""
        return Notification(*self._next(_timeout(timeout_ms)))

    def __iter__(self):
        return self

    def __next__(self):
        if self.closed:
            raise StopIteration
        try:
            return self.next(_FOREVER)
        except InvalidArgument as e:  # raised for a closed subscription/client
            if self.closed:
                raise StopIteration from e
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else f"fd={self.fileno()}"
        return f"<gismo.Subscription {state}>"

