"""The cache use case from Python: evict, touch, get_or_create, the
"evicted" notification and gismo.Cache."""

import threading

import pytest

import gismo


def test_evict_touch_and_counters(fresh_manager):
    with fresh_manager.connect() as c:
        ids = [gismo.ObjectID.from_name(f"blk{i}") for i in range(4)]
        for i in ids:
            c.put(i, b"x" * 100000, evictable=True)
        pinned = gismo.ObjectID.from_name("pinned")
        c.put(pinned, b"y" * 100000)
        held = c.get(ids[0])
        assert c.stat(ids[0])["evictable"]
        evicted = c.evict(1 << 40)
        assert evicted == 3 * 7 * 16384  # three 100 kB objects: 7 pages each
        assert c.contains(ids[0]) and c.contains(pinned)
        assert not any(c.contains(i) for i in ids[1:])
        u = c.usage()
        assert u["evictions"] == 3 and u["evicted_bytes"] == evicted
        c.touch(ids[0])
        with pytest.raises(gismo.ObjectNotFound):
            c.touch(ids[1])
        held.release()


def test_evicted_notification(fresh_manager):
    with fresh_manager.connect() as c, fresh_manager.connect() as s:
        sub = s.subscribe()
        oid = gismo.ObjectID.from_name("evict-me")
        c.put(oid, b"abc", evictable=True)
        assert sub.next(10000).event == gismo.Event.SEALED
        c.evict(1)
        n = sub.next(10000)
        assert n.event == gismo.Event.DELETED and n.id == oid
        assert n.evicted and n.reason == gismo.REASON_EVICTED


def test_get_or_create_has_one_loader(client, other, oid):
    buf, view = client.get_or_create(oid, 4)
    assert buf is None and len(view) == 4
    result = {}

    def wait():
        result["got"] = other.get_or_create(oid, 4, timeout_ms=60000)

    t = threading.Thread(target=wait)
    t.start()
    view[:] = b"load"
    client.seal(oid)
    client.release(oid)
    t.join()
    buf, view2 = result["got"]
    assert view2 is None and bytes(buf) == b"load"
    buf.release()
    loading = gismo.ObjectID.random()
    client.get_or_create(loading, 4)  # being loaded by client
    with pytest.raises(gismo.Timeout):
        other.get_or_create(loading, 4, timeout_ms=0)
    client.abort(loading)


def test_cache_loads_once_and_survives_a_failing_loader(client, other):
    ns = gismo.ObjectID.random().hex() + "/"
    a, b = gismo.Cache(client, ns), gismo.Cache(other, ns)
    loads = []

    def loader(key):
        loads.append(key)
        return key.encode() * 1000

    with a.get("k1", loader) as x, b.get("k1", loader) as y:
        assert bytes(x) == bytes(y) == b"k1" * 1000
    assert loads == ["k1"]
    assert a.stats["loads"] == 1 and b.stats["hits"] == 1

    def failing(key):
        raise OSError("storage unreachable")

    with pytest.raises(OSError):
        a.get("k2", failing)
    with b.get("k2", loader) as z:  # the claim went with the failure
        assert bytes(z) == b"k2" * 1000


def test_namespaces_never_share_a_block(client):
    """The ids of gismo::Cache::IdOf (cache_test.cc pins the same values):
    "img" + "2x" and "img2" + "x" are different blocks, and neither is an
    application's object named "img2x"."""
    img, img2 = gismo.Cache(client, "img"), gismo.Cache(client, "img2")
    from_name = gismo.ObjectID.from_name
    assert img.id_of("2x") == from_name("gismo.cache:3:img2x")
    assert gismo.Cache(client, "\u00e9").id_of("k") == \
        from_name("gismo.cache:2:\u00e9k")
    assert img.id_of("2x") != img2.id_of("x")
    assert img.id_of("2x") != from_name("img2x")
    with img.get("2x", lambda key: b"a" * 64) as a, \
            img2.get("x", lambda key: b"b" * 64) as b:
        assert bytes(a) == b"a" * 64 and bytes(b) == b"b" * 64
    assert img2.stats["loads"] == 1
    # Keys and namespaces are their bytes, as C++ hashes them: str or
    # bytes alike; a str that is not UTF-8 (surrogate escapes) is its own
    # bytes; anything else is refused, not hashed as its repr.
    assert img.id_of(b"2x") == img.id_of("2x")
    assert gismo.Cache(client, b"img").id_of("2x") == img.id_of("2x")
    assert img.id_of("k\udcff") == from_name(b"gismo.cache:3:imgk\xff")
    for bad in (None, 17):
        with pytest.raises(TypeError):
            img.id_of(bad)
        with pytest.raises(TypeError):
            img.get(bad, lambda key: b"x")
        with pytest.raises(TypeError):
            gismo.Cache(client, bad)


def test_cache_get_after_invalidate_loads_once_and_times_out(client, other):
    # An invalidated block that a reader still holds keeps its id until it
    # is released: a get meanwhile loads once and waits, up to its timeout.
    ns = gismo.ObjectID.random().hex() + "/"
    a = gismo.Cache(client, ns)
    b = gismo.Cache(other, ns, timeout_ms=50)
    loads = []

    def loader(key):
        loads.append(key)
        if len(loads) > 1:
            raise AssertionError("loaded twice in one get")
        return b"v" * 4096

    held = a.get("blk", loader)
    a.invalidate("blk")
    loads.clear()
    with pytest.raises(gismo.Timeout):
        b.get("blk", loader)
    assert loads == ["blk"]
    held.release()  # frees the old copy: the block loads again
    loads.clear()
    with gismo.Cache(other, ns).get("blk", loader) as buf:
        assert bytes(buf) == b"v" * 4096
    assert loads == ["blk"]


def test_cache_get_refuses_a_sealed_object_at_a_claim_id(client):
    # A claim is never sealed by a cache client: a sealed object at a
    # claim's id was put by something else, and a get without a timeout
    # says so instead of waiting for ever.
    cache = gismo.Cache(client, gismo.ObjectID.random().hex() + "/")
    raw = bytearray(bytes(cache.id_of("blk")))
    raw[-1] ^= 0xFF
    claim = gismo.ObjectID(bytes(raw))
    client.put(claim, b"not a claim")
    loads = []

    def loader(key):
        loads.append(key)
        return b"v" * 8

    with pytest.raises(gismo.ObjectExists, match=claim.hex()):
        cache.get("blk", loader)
    assert loads == []
    client.delete(claim)
    with cache.get("blk", loader) as buf:
        assert bytes(buf) == b"v" * 8
    assert loads == ["blk"]


class _EvictingAfterEachStore:
    """A client whose first `evictions` stores of `oid` (seal, or the put
    gismo.Cache used before) are followed at once by another client's
    eviction of everything nobody holds: the moment between a loaded
    block's store and the get that hands it out."""

    def __init__(self, client, evictor, oid, evictions):
        self._client, self._evictor, self._oid = client, evictor, oid
        self._left = evictions
        self.stores = 0

    def __getattr__(self, name):
        return getattr(self._client, name)

    def _stored(self, id):
        if bytes(id) == bytes(self._oid):
            self.stores += 1
            if self._left > 0:
                self._left -= 1
                self._evictor.evict(1 << 40)

    def seal(self, id):
        self._client.seal(id)
        self._stored(id)

    def put(self, id, *args, **kwargs):
        self._client.put(id, *args, **kwargs)
        self._stored(id)


def test_cache_get_hands_out_its_load_before_any_eviction(client, other):
    """A loaded block is stored with its creator's reference held until the
    caller holds it, as gismo::Cache does: an eviction right after the store
    finds it held. (It was put unheld, so each eviction there made the get
    put it again: without end under steady eviction.)"""
    ns = gismo.ObjectID.random().hex() + "/"
    block = gismo.Cache(client, ns).id_of("k")
    proxy = _EvictingAfterEachStore(client, other, block, evictions=3)
    cache = gismo.Cache(proxy, ns)
    with cache.get("k", lambda key: b"v" * 5000) as buf:
        assert bytes(buf) == b"v" * 5000
    assert proxy.stores == 1
    assert cache.stats["loads"] == 1
    with gismo.Cache(other, ns).get("k", lambda key: b"not loaded") as again:
        assert bytes(again) == b"v" * 5000  # still there: released, not gone
