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

from . import _gismo
from .errors import ObjectExists, Timeout


class Cache:
    """A cache of immutable blocks by key, shared through a gismo store.

    client: a gismo.Client (it must outlive the buffers get returns).
    namespace: a prefix that keys are hashed under. timeout_ms: how long
    get waits for another client's load (-1: forever).
    stats: dict of hits, loads (by this object) and waits.
    """

    def __init__(self, client, namespace="", timeout_ms=-1):
        self._client = client
        self._ns = namespace
        self._timeout_ms = timeout_ms
        self.stats = {"hits": 0, "loads": 0, "waits": 0}

    def id_of(self, key):
        """The ObjectID of a key's block."""
        return _gismo.ObjectID.from_name(self._ns + key)

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
        recovery drops the claim.
        """
        c = self._client
        oid = self.id_of(key)
        claim = self._claim_id(oid)
        while True:
            try:
                buf = c.get(oid, 0)
                self.stats["hits"] += 1
                return buf
            except Timeout:
                pass
            got, view = c.get_or_create(claim, 0, evictable=False,
                                        timeout_ms=self._timeout_ms)
            if view is None:  # a sealed claim is nobody's: try again
                got.release()
                continue
            try:
                try:
                    buf = c.get(oid, 0)  # loaded while we waited
                    self.stats["waits"] += 1
                    return buf
                except Timeout:
                    pass
                data = memoryview(loader(key)).cast("B")
                try:
                    c.put(oid, data, evictable=True)
                except ObjectExists:
                    continue
                self.stats["loads"] += 1
                # The block is evictable from here on until we hold it;
                # if it went already, the loop loads it again.
                try:
                    return c.get(oid, 0)
                except Timeout:
                    continue
            finally:
                c.abort(claim)  # wakes the waiters: they find the block

    def touch(self, key):
        """Marks a block recently used without reading it."""
        self._client.touch(self.id_of(key))

    def invalidate(self, key):
        """Drops a block (the next get loads it again)."""
        self._client.delete(self.id_of(key))
