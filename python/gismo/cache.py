"""gismo.Cache: one shared cache for every process on every node.

    cache = gismo.Cache(client, "tpch/lineitem/")
    with cache.get("block-17", lambda key: read_and_decompress(key)) as buf:
        scan(memoryview(buf))              # shared memory, zero copy

The first client to miss a block loads it; every other client that misses
it meanwhile waits for that load and reads the same copy. Blocks are
evictable objects: a full store evicts the least recently used ones that
nobody holds (CLOCK; a get counts as a use). Blocks are immutable: a
changed block is a new key (put a version in the key). The same protocol as
gismo::Cache in include/gismo/cache.hpp, so C++ and Python nodes share one
cache.
"""

import time

from . import _gismo
from ._names import name_bytes
from ._timeout import timeout_ms as _timeout
from .errors import Error, ObjectExists, Timeout

# Backoff of a get that waits for an invalidated block to be freed.
_FIRST_PAUSE_S = 0.001
_MAX_PAUSE_S = 0.05


class _Deadline:
    """The time one get may take (timeout_ms, -1: forever), and its backoff."""

    def __init__(self, timeout_ms, key):
        self._timeout_ms = timeout_ms
        self._key = key
        self._end = (None if timeout_ms < 0
                     else time.monotonic() + timeout_ms / 1000)
        self._pause = _FIRST_PAUSE_S

    def left_ms(self):
        """What is left for a waiting call: -1 (forever) or >= 0 ms."""
        if self._end is None:
            return -1
        return max(0, int((self._end - time.monotonic()) * 1000))

    def pause(self, why):
        """Sleeps the next backoff step; raises Timeout if the deadline has
        passed (after the step: a timeout of 0 still tries once)."""
        if self._end is not None:
            left = self._end - time.monotonic()
            if left <= 0:
                raise Timeout(f"cache block {self._key!r}: {why} after "
                              f"{self._timeout_ms} ms")
            time.sleep(min(self._pause, left))
        else:
            time.sleep(self._pause)
        self._pause = min(self._pause * 2, _MAX_PAUSE_S)


class Cache:
    """A cache of immutable blocks by key, shared through a gismo store.

    client: a gismo.Client (it must outlive the buffers get returns).
    namespace: keys are hashed under it (id_of): caches of one namespace
    share their blocks, caches of different namespaces never do.
    timeout_ms: how long a get may wait, for another client's load or for
    an invalidated block to be freed (-1: forever; below -1:
    InvalidArgument).
    stats: dict of hits, loads (by this object) and waits.
    """

    def __init__(self, client, namespace="", timeout_ms=-1):
        self._client = client
        self._ns = name_bytes(namespace, "a cache's namespace")
        self._timeout_ms = _timeout(timeout_ms)
        self.stats = {"hits": 0, "loads": 0, "waits": 0}

    def id_of(self, key):
        """The ObjectID of a key's block: ObjectID.from_name of
        "gismo.cache:" + the namespace's length in bytes + ":" + namespace
        + key, as gismo::Cache::IdOf. Keys and namespaces are str (UTF-8;
        surrogate escapes are their own bytes) or bytes, the same bytes the
        C++ side hashes; anything else is a TypeError. The length keeps namespaces apart ("img" and
        "2x" never meet "img2" and "x"), the tag keeps blocks apart from
        objects named by applications."""
        return _gismo.ObjectID.from_name(
            b"gismo.cache:%d:%s%s" %
            (len(self._ns), self._ns, name_bytes(key, "a cache key")))

    def _claim_id(self, oid):
        b = bytearray(bytes(oid))
        b[-1] ^= 0xFF
        return _gismo.ObjectID(bytes(b))

    def get(self, key, loader):
        """The block of `key` as a Buffer (held until released), loaded by
        loader(key) -> bytes-like if no client has it.

        Exactly one client loads a block that many miss at once: a load
        claim (an unsealed object) decides who, the others wait for the
        claim to go. If the loader raises, its exception propagates and the
        claim goes (another client may load); if the process dies, its
        recovery drops the claim. The loader runs at most once per get: an
        invalidated block that a reader still holds keeps its id until it
        is released, and the loaded bytes wait (with backoff, holding the
        claim) to replace it. Raises Timeout once timeout_ms has passed;
        ObjectExists if a sealed object, which no cache client makes, has
        the claim's id.
        """
        c = self._client
        oid = self.id_of(key)
        claim = self._claim_id(oid)
        wait = _Deadline(self._timeout_ms, key)
        data = None  # the loader's bytes, once loaded
        while True:
            try:
                buf = c.get(oid, 0)
                self.stats["hits"] += 1
                return buf
            except Timeout:
                pass
            got, view = c.get_or_create(claim, 0, evictable=False,
                                        timeout_ms=wait.left_ms())
            if view is None:
                # A claim is an empty object that its client aborts, never
                # seals: this one was put by something outside the cache,
                # and waiting for it to go would wait for ever.
                got.release()
                raise ObjectExists(
                    f"cache block {key!r}: the id of its load claim, "
                    f"{claim.hex()}, holds a sealed object, which no cache "
                    "client makes: something outside the cache put it there "
                    "(delete it)")
            try:
                try:
                    buf = c.get(oid, 0)  # loaded while we waited
                    self.stats["waits"] += 1
                    return buf
                except Timeout:
                    pass
                if data is None:
                    data = memoryview(loader(key)).cast("B")
                    self.stats["loads"] += 1
                # The block's id is taken while an invalidated copy is still
                # held (deleting): the claim stays ours until it is freed.
                while True:
                    try:
                        view = c.create(oid, len(data), evictable=True)
                        break
                    except ObjectExists:
                        try:  # put by a client outside the protocol
                            buf = c.get(oid, 0)
                            self.stats["waits"] += 1
                            return buf
                        except Timeout:
                            pass
                        wait.pause("its invalidated copy is still held")
                try:
                    view[:] = data
                    c.seal(oid)
                except BaseException:
                    try:
                        c.abort(oid)
                    except Error:
                        pass
                    raise
                # Sealed with the creator's reference held, so that no
                # eviction takes the block before the caller holds it (as
                # gismo::Cache does); invalidated in between, it is put
                # again.
                try:
                    return c.get(oid, 0)
                except Timeout:
                    continue
                finally:
                    c.release(oid)
            finally:
                # Wakes the waiters: they find the block. One that fails (a
                # lost connection) must not replace the block being returned
                # or the loader's exception: the claim then goes with this
                # client's recovery.
                try:
                    c.abort(claim)
                except Error:
                    pass

    def touch(self, key):
        """Marks a block recently used without reading it."""
        self._client.touch(self.id_of(key))

    def invalidate(self, key):
        """Drops a block (the next get loads it again)."""
        self._client.delete(self.id_of(key))
