"""gismo.Client: a connection to a gismo manager and its shared region."""

import os
import typing

from . import _gismo, ndarray
from ._timeout import timeout_ms as _timeout
from .errors import NotAnArray
from .subscription import Subscription


def _is_single_id(ids):
    return isinstance(ids, (_gismo.ObjectID, bytes, bytearray, memoryview))


class Identity(typing.NamedTuple):
    """Where a client is (Client.identity()).

    node: its node id. slot: its client slot there, as "client" in
    list_clients() and stat(); reused once the client is gone (the
    "client_id" of list_clients() is not).
    """

    node: int
    slot: int


class Client(_gismo._Client):
    """A connection to a gismo manager.

    address: "unix:/path", "tcp:host:port", or None for $GISMO_ADDRESS (else
    the default socket, see gismo_connect in gismo.h). key_file: the cluster
    key file a manager with --key-file requires over TCP, or None for
    $GISMO_KEY_FILE (doc/security.md). region_path: where this host sees the
    region, or None for $GISMO_REGION. Usable as a context manager; close()
    on exit.
    One client may be used from several threads: the C library serializes
    the calls, and every call that can block runs without the GIL.

    close() makes the client unusable at once. The connection itself (the
    region mapping and this client's references) stays until the last
    Buffer, array or memoryview obtained from it is gone; then its unsealed
    objects are aborted and its references dropped.
    """

    def __init__(self, address=None, *, key_file=None, region_path=None):
        if address is not None and not isinstance(address, str):
            raise TypeError(
                f"address must be a str or None, not {type(address).__name__}")
        # Paths: a str or any os.PathLike (pathlib.Path), as open() takes.
        paths = []
        for name, value in (("key_file", key_file),
                            ("region_path", region_path)):
            if value is not None:
                try:
                    value = os.fsdecode(value)
                except TypeError:
                    raise TypeError(f"{name} must be a path (str or os.PathLike) "
                                    f"or None, not {type(value).__name__}") from None
            paths.append(value)
        super().__init__(address, *paths)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else "connected"
        return f"<gismo.Client {state}>"

    # create, seal, abort, release, delete, contains, put, stat, list,
    # usage, list_clients, region_mapping and region_read_view come from _gismo.

    def get_or_create(self, id, size, metadata=b"", *, evictable=True,
                      owned=False, timeout_ms=-1):
        """Load once: gets the object, or creates it for this client to load.

        Returns (buffer, None) if the object is sealed (waiting up to
        timeout_ms while another client loads it), or (None, view) if this
        client won the create: fill the writable memoryview, then seal()
        (and release()) or abort(). If the loader aborts or dies, one
        waiter becomes the loader. Raises Timeout if nothing came in time.
        """
        return self._get_or_create(id, size, metadata, owned, evictable,
                                   _timeout(timeout_ms))

    def wait_name(self, name, known=None, timeout_ms=-1):
        """Waits for `name` to be bound to another id than `known`.

        known None: waits for the name to be bound at all. Returns the new
        binding as lookup_name does, at once if it already changed. Raises
        ObjectNotFound if `known` is given and the name is (or becomes)
        unbound, Timeout if it did not change within timeout_ms (-1:
        forever). A change on any node wakes it (through the manager);
        nothing polls.
        """
        return self._wait_name(name, known, _timeout(timeout_ms))

    def identity(self):
        """This client's Identity: (node, slot)."""
        return Identity(*self._identity())

    def capacity(self):
        """Heap bytes objects can use."""
        return self.usage()["capacity_bytes"]

    def get(self, ids, timeout_ms=-1):
        """Waits up to timeout_ms (-1 or None: forever, 0: no wait) for
        objects to be sealed.

        get(id) returns one Buffer, or raises Timeout if the object was not
        sealed in time. get([id, ...]) returns a list with a Buffer per id,
        None where the object was not sealed in time.
        """
        timeout_ms = _timeout(timeout_ms)
        if _is_single_id(ids):
            return self._get_one(ids, timeout_ms)
        if isinstance(ids, str):
            raise TypeError("an object id is a gismo.ObjectID or 20 bytes; "
                            "use ObjectID.from_name() or ObjectID.from_hex() "
                            "for a str")
        try:
            iter(ids)
        except TypeError:
            raise TypeError("get() takes an object id (a gismo.ObjectID or 20 "
                            "bytes) or an iterable of them, not "
                            f"{type(ids).__name__}") from None
        return self._get_many(ids, timeout_ms)

    def put_bytes(self, id, data, metadata=b"", *, owned=False, evictable=False):
        """Creates, fills, seals and releases an object in one call. owned:
        deleted when this client disconnects or dies; evictable: the store
        may delete it, once nobody holds it, to make room (see gismo.h)."""
        self.put(id, data, metadata, owned=owned, evictable=evictable)

    def get_bytes(self, id, timeout_ms=-1):
        """A copy of an object's data; the reference is given back at once."""
        with self._get_one(id, _timeout(timeout_ms)) as buf:
            return buf.tobytes()

    def put_array(self, id, array, *, owned=False, evictable=False):
        """Stores a numpy array: its bytes as data, dtype/shape/strides in the
        metadata (see gismo.ndarray). C- and Fortran-ordered arrays are
        copied once, straight into the shared region; others are made
        C-contiguous first."""
        raw, header = ndarray.encode(array)
        self.put(id, raw, header, owned=owned, evictable=evictable)

    def get_array(self, id, timeout_ms=-1):
        """A read-only numpy array viewing the object in the shared region
        (no copy). It holds the object's reference for as long as it, or any
        view of it, lives. Raises Timeout if the object was not sealed in
        time, NotAnArray if put_array did not write it."""
        import numpy as np
        buf = self._get_one(id, _timeout(timeout_ms))
        try:
            dtype, shape, strides = ndarray.decode(buf.metadata, buf.size)
            # The memoryview holds a buffer export until the array is gone,
            # so the reference outlives every view of the array.
            try:
                array = np.ndarray(shape, dtype, buffer=memoryview(buf),
                                   strides=strides)
            except (ValueError, TypeError) as e:
                # A header decode accepts but numpy does not (more
                # dimensions than it has, an item size of 0...).
                raise NotAnArray(f"bad gismo.ndarray header: {e}") from e
        except BaseException:
            buf.release()
            raise
        return array

    def subscribe(self):
        """A Subscription: every object already sealed, then each seal and
        delete anywhere in the cluster. The subscriptions of one client
        share one stream: the listing of sealed objects comes once, to the
        first that reads it; a later subscribe() does not list them again
        (connect another client for that). See gismo.Subscription."""
        return Subscription(self)


def connect(address=None, *, key_file=None, region_path=None):
    """Connects to a gismo manager; see Client."""
    if address is not None and not isinstance(address, str):
        raise TypeError("address must be a str like 'unix:/path' or "
                        f"'tcp:host:port', not {type(address).__name__}")
    return Client(address, key_file=key_file, region_path=region_path)
