"""gismo.dask with real distributed clusters: results travel between workers
by reference, the consumer's arrays are read-only views of the region, the
objects go when Dask forgets the keys or a worker dies, and everything else
(a full region, another pool, a client that is not a worker) gets bytes."""

import hashlib
import os
import signal
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")
import gismo  # noqa: E402
import gismo.dask  # noqa: E402

DEADLINE_S = 60


def _wait(predicate, what):
    end = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < end, what
        time.sleep(0.02)


def _owned(c):
    return [o for o in c.list() if o["owned"]]


def _cluster(**options):
    # Dask's active memory manager drops extra replicas at any time, the
    # producer's among them: these tests look at who owns what, so it is off
    # (test_a_replica_outlives_its_producers_copy drops one on purpose).
    import dask
    dask.config.set({"distributed.scheduler.active-memory-manager.start": False})
    return distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
        scheduler_port=0, host="127.0.0.1", silence_logs=False, **options)


def _workers(client):
    return sorted(client.scheduler_info()["workers"])


# Run on the consumer: what it got, and whether it lies in the region.
def _inspect_array(a):
    import gismo.dask as gd
    base, size = gd._process.client.region_read_view()
    address = a.__array_interface__["data"][0]
    return {"sha": hashlib.sha256(a.tobytes()).hexdigest(),
            "writeable": bool(a.flags.writeable),
            "in_region": base <= address < base + size,
            "stats": gd.stats()}


def _inspect_frame(df):
    import gismo.dask as gd
    base, size = gd._process.client.region_read_view()
    col = df["x"].to_numpy()
    address = col.__array_interface__["data"][0]
    return {"hash": int(pd.util.hash_pandas_object(df, index=True).sum()),
            "writeable": bool(col.flags.writeable),
            "in_region": base <= address < base + size}


def _frame(n):
    rng = np.random.default_rng(17)
    return pd.DataFrame({"x": rng.random(n), "y": np.arange(n, dtype=np.int64)})


def _owned_keys(dask_worker):
    return {k: oid.hex() for k, oid in dask_worker.data.owned().items()}


@pytest.fixture(scope="module")
def dask_pool():
    from conftest import Manager, manager_binary
    m = Manager(manager_binary(), size="512MiB")
    cluster = _cluster(**gismo.dask.worker_options(address=m.address))
    client = distributed.Client(cluster)
    try:
        yield m, client
    finally:
        client.close()
        cluster.close()
        m.stop()


def test_array_and_frame_travel_by_reference(dask_pool):
    m, client = dask_pool
    a, b = _workers(client)
    with m.connect() as g:
        before = len(_owned(g))
        x = client.submit(np.arange, 4 << 20, dtype=np.float64, workers=[a], pure=False)
        got = client.submit(_inspect_array, x, workers=[b], pure=False).result()
        expect = hashlib.sha256(np.arange(4 << 20, dtype=np.float64).tobytes()).hexdigest()
        assert got["sha"] == expect
        assert got["in_region"] and not got["writeable"]
        assert got["stats"]["received_refs"] >= 1
        assert got["stats"]["received_ref_bytes"] >= 32 << 20
        df = client.submit(_frame, 1 << 18, workers=[a], pure=False)
        fgot = client.submit(_inspect_frame, df, workers=[b], pure=False).result()
        assert fgot["hash"] == int(pd.util.hash_pandas_object(_frame(1 << 18), index=True).sum())
        assert fgot["in_region"] and not fgot["writeable"]
        owners = client.run(_owned_keys, workers=[a])[a]
        assert x.key in owners and df.key in owners
        assert len(_owned(g)) >= before + 2
        # The client on this side is not a worker: it gets bytes.
        local = x.result()
        assert local.sum() == np.arange(4 << 20, dtype=np.float64).sum()
        del local
        # Dask forgets the keys: their objects are deleted.
        oids = [gismo.ObjectID.from_hex(owners[k]) for k in (x.key, df.key)]
        del x, df
        _wait(lambda: not any(g.contains(o) for o in oids), "objects outlived their keys")
        _wait(lambda: len(_owned(g)) == before, "owned objects left behind")


def _dask_stats(dask_worker):
    import gismo.dask as gd
    return gd.stats()


def test_a_replica_outlives_its_producers_copy(dask_pool):
    # What Dask's active memory manager does: the producer's replica is
    # dropped while a peer's, backed by the same object, is kept. The object
    # must stay gettable so that the peer can still serve it by reference,
    # and go once the last replica is released.
    m, client = dask_pool
    a, b = _workers(client)
    x = client.submit(np.arange, 2 << 20, dtype=np.float64, workers=[a], pure=False)
    x.result()
    oid = gismo.ObjectID.from_hex(client.run(_owned_keys, workers=[a])[a][x.key])

    def acquire(dask_scheduler, key=x.key, addr=b):
        dask_scheduler.request_acquire_replicas(addr, [key], stimulus_id="test-acquire")

    def remove(dask_scheduler, key=x.key, addr=a):
        dask_scheduler.request_remove_replicas(addr, [key], stimulus_id="test-remove")

    client.run_on_scheduler(acquire)
    _wait(lambda: set(client.who_has([x])[x.key]) == {a, b}, "no replica on the peer")
    client.run_on_scheduler(remove)
    _wait(lambda: set(client.who_has([x])[x.key]) == {b}, "the producer kept its replica")
    _wait(lambda: x.key not in client.run(_owned_keys, workers=[a])[a],
          "the producer did not forget the key")
    with m.connect() as g:
        assert g.stat(oid)["state"] == "sealed"  # b still holds it
        assert client.run(_dask_stats, workers=[a])[a]["deferred_deletes"] >= 1
        # a fetches x back from b, which sends the same object by reference.
        got = client.submit(_inspect_array, x, workers=[a], pure=False).result()
        assert got["sha"] == hashlib.sha256(
            np.arange(2 << 20, dtype=np.float64).tobytes()).hexdigest()
        assert got["in_region"] and not got["writeable"]
        del x
        _wait(lambda: not g.contains(oid), "the object outlived its last replica")


_LATE_REFERENCE = """
import pickle, sys
import gismo, gismo.dask as gd
gd.enable(sys.argv[1])
c = gd._process.client
oid = gismo.ObjectID.random()
c.put(oid, b"x" * 64)
c.delete(oid)  # gone before the reference arrives
try:
    gd._loads({"region": gd.region_id(), "refs": [[oid.hex(), 0, 64, True]]},
              [pickle.dumps(None)])
except gd.ReferenceGone as e:
    assert isinstance(e, EOFError), type(e).__mro__
    print("late:", gd.stats()["late_refs"], e)
"""


def test_a_reference_to_a_deleted_object_fails_like_a_lost_replica(dask_pool):
    # The receiver must make Dask fetch the key again (an EOFError is what
    # Dask's comm turns into a broken connection), not fail the task.
    import subprocess
    import sys
    m, _ = dask_pool
    r = subprocess.run([sys.executable, "-c", _LATE_REFERENCE, m.address],
                       capture_output=True, text=True, timeout=DEADLINE_S)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("late: 1 ") and "is gone" in r.stdout, r.stdout


def test_small_values_stay_out_of_the_region(dask_pool):
    m, client = dask_pool
    a, b = _workers(client)
    small = client.submit(np.arange, 100, workers=[a], pure=False)
    assert client.submit(lambda v: int(v.sum()), small, workers=[b]).result() == 4950
    assert small.key not in client.run(_owned_keys, workers=[a])[a]


def test_killed_worker_leaks_nothing(dask_pool):
    m, client = dask_pool
    a, _ = _workers(client)
    x = client.submit(np.ones, 1 << 20, workers=[a], pure=False)
    x.result()
    owners = client.run(_owned_keys, workers=[a])[a]
    oid = gismo.ObjectID.from_hex(owners[x.key])
    pid = client.run(os.getpid, workers=[a])[a]
    with m.connect() as g:
        assert g.contains(oid)
        os.kill(pid, signal.SIGKILL)
        _wait(lambda: not g.contains(oid), "a dead worker's object leaked")
        with pytest.raises(gismo.ObjectNotFound):
            g.stat(oid)
    # The nanny starts a new worker, which goes on (x was pinned to the dead
    # one's address, so Dask cannot recompute it there: not awaited here).
    client.wait_for_workers(2, timeout=DEADLINE_S)
    y = client.submit(np.ones, 1 << 20, pure=False)
    assert float(client.submit(np.sum, y, pure=False).result()) == float(1 << 20)


def test_full_region_falls_back_to_bytes():
    from conftest import Manager, manager_binary
    m = Manager(manager_binary(), size="64MiB")
    cluster = _cluster(**gismo.dask.worker_options(address=m.address))
    client = distributed.Client(cluster)
    try:
        a, b = _workers(client)
        x = client.submit(np.arange, 16 << 20, dtype=np.float64, workers=[a], pure=False)
        got = client.submit(_inspect_array, x, workers=[b], pure=False).result()
        assert got["sha"] == hashlib.sha256(
            np.arange(16 << 20, dtype=np.float64).tobytes()).hexdigest()
        assert not got["in_region"]
        logs = "\n".join(line for _, line in client.get_worker_logs()[a])
        assert logs.count("the gismo region is full") == 1
    finally:
        client.close()
        cluster.close()
        m.stop()


def _sum_all(*arrays):
    return float(sum(a.sum() for a in arrays))


def test_a_worker_at_its_reference_limit_gets_bytes():
    # Each client may hold 12 objects (a table of 16, three quarters full).
    # Worker b holds 12 results of its own in the region when a task there
    # needs four of a's, which a offers by reference: b cannot hold them, so
    # it asks for bytes, and the task runs (it failed with LimitReached).
    from conftest import Manager, manager_binary
    m = Manager(manager_binary(), size="256MiB", extra=["--max-refs-per-client", "16"])
    cluster = _cluster(**gismo.dask.worker_options(address=m.address))
    client = distributed.Client(cluster)
    try:
        a, b = _workers(client)
        n = 20000  # 160 KB of float64: over the threshold
        mine = [client.submit(np.full, n, float(i), workers=[b], pure=False) for i in range(14)]
        theirs = [client.submit(np.full, n, 100.0 + i, workers=[a], pure=False)
                  for i in range(4)]
        distributed.wait(mine + theirs)
        total = client.submit(_sum_all, *theirs, *mine, workers=[b], pure=False).result()
        assert total == n * (sum(range(14)) + sum(100.0 + i for i in range(4)))
        stats = client.run(gismo.dask.stats, workers=[b])[b]
        assert stats["refs_full"] >= 1
        logs = "\n".join(line for _, line in client.get_worker_logs()[b])
        assert "asking peers for bytes" in logs
    finally:
        client.close()
        cluster.close()
        m.stop()


def test_worker_of_another_pool_gets_bytes():
    from conftest import Manager, manager_binary
    from distributed import Nanny, Scheduler, SpecCluster
    one = Manager(manager_binary(), size="128MiB")
    two = Manager(manager_binary(), size="128MiB")
    spec = {name: {"cls": Nanny, "options": {
        "nthreads": 1, "host": "127.0.0.1",
        **gismo.dask.worker_options(address=mgr.address)}}
        for name, mgr in (("one", one), ("two", two))}
    cluster = SpecCluster(workers=spec, scheduler={
        "cls": Scheduler, "options": {"dashboard_address": ":0", "host": "127.0.0.1"}})
    client = distributed.Client(cluster)
    try:
        client.wait_for_workers(2, timeout=DEADLINE_S)
        by_name = {w["name"]: addr for addr, w in client.scheduler_info()["workers"].items()}
        a, b = by_name["one"], by_name["two"]
        x = client.submit(np.arange, 1 << 20, workers=[a], pure=False)
        got = client.submit(lambda v: int(v.sum()), x, workers=[b], pure=False).result()
        assert got == int(np.arange(1 << 20).sum())
        logs = "\n".join(line for _, line in client.get_worker_logs()[a])
        assert "maps another gismo region" in logs and "sending it bytes" in logs
    finally:
        client.close()
        cluster.close()
        one.stop()
        two.stop()


@pytest.fixture
def warnings(monkeypatch):
    """A fresh gismo.dask process state (its client closed by the test), and
    the warnings gismo.dask logs meanwhile, as a list of messages."""
    import logging
    import gismo.dask as gd
    monkeypatch.setattr(gd, "_process", gd._Process())
    said = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: said.append(record.getMessage())
    gd.logger.addHandler(handler)
    yield said
    gd.logger.removeHandler(handler)


def test_store_errors_keep_the_value_in_memory(start_manager, warnings):
    # A client may hold 16 objects here: stores soon fail with LimitReached
    # (at create, or at the get after the seal). The value stays in memory,
    # the failure is logged once, and a failed store leaves no object.
    import gismo.dask as gd
    m = start_manager("--max-refs-per-client", "16")
    data = gd.GismoData(m.address, threshold=1024)
    try:
        values = [np.full(4096, i, dtype=np.uint8) for i in range(40)]
        for i, v in enumerate(values):
            data[i] = v
        owned = data.owned()
        assert 0 < len(owned) < len(values)
        assert all(np.array_equal(data[i], v) for i, v in enumerate(values))
        assert data[39] is values[39]  # kept as it was
        assert sum("LimitReached" in w for w in warnings) == 1, warnings
        with m.connect() as g:
            listed = sorted(o["id"].hex() for o in g.list())
        assert listed == sorted(oid.hex() for oid in owned.values())
    finally:
        gd._process.client.close()


def test_a_store_failing_after_its_seal_leaves_no_object(start_manager, monkeypatch):
    # The creator's reference is given back too: the object is freed, not
    # left deleting (and counted as held) until the worker exits.
    import gismo.dask as gd
    m = start_manager()
    monkeypatch.setattr(gd, "_process", gd._Process())
    data = gd.GismoData(m.address, threshold=1024)
    client = gd._process.client

    def lost(*args, **kwargs):
        raise gismo.ConnectionError("the manager is restarting")

    monkeypatch.setattr(client, "get", lost)
    try:
        value = np.ones(4096)
        data["k"] = value
        assert data["k"] is value and not data.owned()
        with m.connect() as g:
            assert g.list() == []
    finally:
        client.close()


class _NoReentry:
    """A lock that records (and refuses) being taken again by its holder."""

    def __init__(self):
        import threading
        self._lock = threading.Lock()
        self._owner = None
        self.reentered = False

    def __enter__(self):
        import threading
        if self._owner == threading.get_ident():
            self.reentered = True
            raise RuntimeError("lock taken again by its holder")
        self._lock.acquire()
        self._owner = threading.get_ident()

    def __exit__(self, *exc):
        self._owner = None
        self._lock.release()


@pytest.fixture
def process_with_object(start_manager):
    """A gismo.dask process of its own (not the module's), enabled, and an
    object of 64 bytes it put; its client is closed at the end."""
    import gismo.dask as gd
    p = gd._Process()
    p.enable(start_manager().address)
    try:
        oid = gismo.ObjectID.random()
        p.client.put(oid, b"x" * 64)
        yield p, oid
    finally:
        p.client.close()


def test_a_buffer_dying_while_the_lock_is_held_does_not_take_it(process_with_object):
    # A Buffer's finalizer can run in garbage collection while its thread
    # holds the process's lock: it must not take the lock (a deadlock).
    p, oid = process_with_object
    buf = p.client.get(oid)
    start = buf.address
    p.register(buf)
    assert p.lookup(start, 64) == (oid, 0)
    p.lock = _NoReentry()
    with p.lock:
        del buf  # the last reference: its finalizer runs here
    assert not p.lock.reentered
    assert p.lookup(start, 64) is None


def test_a_receivers_other_errors_are_not_a_lost_replica(start_manager, monkeypatch):
    # Only an object that is gone (Timeout, ObjectNotFound) is a lost
    # replica (ReferenceGone, an EOFError that makes Dask fetch again), and
    # a receiver at its reference limit (LimitReached) a full one
    # (ReceiverFull, another); any other error of the get passes as it is.
    import pickle
    import gismo.dask as gd
    m = start_manager()
    monkeypatch.setattr(gd, "_process", gd._Process())
    gd.enable(m.address)
    client = gd._process.client
    errors = [gismo.Busy("busy"), gismo.ObjectNotFound("no such object")]

    def get(*args, **kwargs):
        raise errors.pop(0)

    monkeypatch.setattr(client, "get", get)
    oid = gismo.ObjectID.random()
    header = {"region": gd.region_id(), "refs": [[oid.hex(), 0, 64, True]]}
    try:
        with pytest.raises(gismo.Busy, match=oid.hex()):
            gd._loads(header, [pickle.dumps(None)])
        assert gd.stats()["late_refs"] == 0
        with pytest.raises(gd.ReferenceGone):
            gd._loads(header, [pickle.dumps(None)])
        assert gd.stats()["late_refs"] == 1
    finally:
        client.close()


def test_a_receiver_at_its_reference_limit_asks_for_bytes(start_manager, monkeypatch):
    # A receiver whose get fails with LimitReached (it holds all the
    # references its client may) fails the transfer as a broken connection
    # (ReceiverFull, an EOFError: Dask aborts the connection and fetches
    # again), and its handshakes stop naming the region for a while, so the
    # retry's sender sends bytes; the transfer used to fail with the
    # LimitReached, again at every retry.
    import pickle
    from distributed.comm.core import Comm
    import gismo.dask as gd
    m = start_manager()
    monkeypatch.setattr(gd, "_process", gd._Process())
    gd.enable(m.address)
    client = gd._process.client

    def get(*args, **kwargs):
        raise gismo.LimitReached("this client holds too many references")

    monkeypatch.setattr(client, "get", get)
    oid = gismo.ObjectID.random()
    header = {"region": gd.region_id(), "refs": [[oid.hex(), 0, 64, True]]}
    try:
        assert Comm.handshake_info()[gd.HANDSHAKE_KEY] == gd.region_id()
        with pytest.raises(gd.ReceiverFull, match=oid.hex()) as raised:
            gd._loads(header, [pickle.dumps(None)])
        assert isinstance(raised.value, EOFError)
        assert gd.stats()["refs_full"] == 1
        assert gd.HANDSHAKE_KEY not in Comm.handshake_info()
        # A sender whose recipient says nothing of gismo sends bytes.
        with pytest.raises(NotImplementedError):
            gd._dumps(b"x" * 100000, {"recipient": Comm.handshake_info()})
        gd._process.refs_full_until = 0.0  # the while is over
        assert Comm.handshake_info()[gd.HANDSHAKE_KEY] == gd.region_id()
    finally:
        client.close()


def test_a_forgotten_object_that_cannot_be_looked_at_stays_pending(process_with_object,
                                                                   monkeypatch):
    # Only ObjectNotFound means that a forgotten object is gone; after any
    # other error (Busy) it stays pending, and a later sweep deletes it.
    p, oid = process_with_object
    stat = p.client.stat

    def busy(*args, **kwargs):
        raise gismo.Busy("a lock is held by a suspected client")

    monkeypatch.setattr(p.client, "stat", busy)
    assert not p._delete_if_unreferenced(oid)
    p.delete(oid)
    assert oid.hex() in p.pending and p.client.contains(oid)
    monkeypatch.setattr(p.client, "stat", stat)
    assert p.sweep_now() == 0
    assert not p.client.contains(oid)
    assert p._delete_if_unreferenced(gismo.ObjectID.random())  # never there


def _refuse_to_rebuild(buffer):
    raise ValueError("this value cannot be rebuilt")


class _Unrebuildable:
    """Pickles with an out-of-band buffer, and never unpickles."""

    def __init__(self, n):
        self.data = bytearray(n)

    def __reduce_ex__(self, protocol):
        import pickle
        return _refuse_to_rebuild, (pickle.PickleBuffer(self.data),)


def test_a_value_that_cannot_be_rebuilt_leaves_no_object(start_manager, warnings):
    # Rebuilding the value from its sealed object fails: the object is
    # deleted (nobody would own it) and the value stays in memory.
    import gismo.dask as gd
    m = start_manager()
    data = gd.GismoData(m.address, threshold=1024)
    try:
        value = _Unrebuildable(4096)
        data["k"] = value
        assert data["k"] is value and not data.owned()
        assert any("cannot be rebuilt" in w for w in warnings), warnings
        with m.connect() as g:
            assert g.list() == []
    finally:
        gd._process.client.close()


def test_what_plain_pickle_cannot_take_goes_to_the_next_family(process_with_object,
                                                               monkeypatch):
    # A lambda (or a class of the client's __main__) to a peer of the same
    # region: NotImplementedError, so that Dask tries its pickle family
    # (cloudpickle); any other exception made it send an error frame.
    import gismo.dask as gd
    p, _ = process_with_object
    monkeypatch.setattr(gd, "_process", p)
    context = {"recipient": {gd.HANDSHAKE_KEY: p.region, "address": "tcp://peer"}}
    with pytest.raises(NotImplementedError):
        gd._dumps(lambda: 1, context)


def test_two_buffers_of_one_object_keep_its_span_until_both_are_gone(process_with_object):
    # The newer of two Buffers of one object collected first: the older one
    # still maps it, and sending it must still go by reference (its span was
    # dropped, and the value sent as bytes and stored again).
    import gc
    p, oid = process_with_object
    older, newer = p.client.get(oid), p.client.get(oid)
    start = older.address
    assert newer.address == start
    p.register(older)
    p.register(newer)
    del newer
    gc.collect()
    assert p.lookup(start, 64) == (oid, 0)
    del older
    gc.collect()
    assert p.lookup(start, 64) is None
