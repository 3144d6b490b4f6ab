"""The C API's object life cycle and its errors, seen from Python."""

import os
import threading

import numpy as np
import pytest

import gismo


def test_create_seal_get_release(client, other, oid):
    view = client.create(oid, 5, b"meta!")
    assert isinstance(view, memoryview) and not view.readonly
    assert len(view) == 5
    view[:] = b"hello"
    assert not client.contains(oid)
    assert client.stat(oid)["state"] == "unsealed"
    client.seal(oid)
    assert client.contains(oid) and other.contains(oid)
    buf = other.get(oid)
    assert isinstance(buf, gismo.Buffer)
    assert bytes(buf) == b"hello" and buf.tobytes() == b"hello"
    assert buf.metadata == b"meta!" and buf.size == len(buf) == 5
    assert buf.id == oid
    info = client.stat(oid)
    assert info["state"] == "sealed" and info["refs"] == 2  # creator + reader
    assert info["size"] == 5 and info["metadata_size"] == 5
    assert info["id"] == oid and info["created"] > 0
    buf.release()
    buf.release()  # idempotent
    assert buf.released and buf.address == 0
    client.release(oid)
    assert client.stat(oid)["refs"] == 0


def test_create_flags_are_shown_by_stat(client, oid):
    client.create(oid, 4, evictable=True)
    info = client.stat(oid)
    assert info["evictable"] and not info["owned"]
    client.seal(oid)
    client.release(oid)
    assert client.stat(oid)["evictable"]
    other_id = gismo.ObjectID.from_name(str(oid) + "-put")
    client.put_bytes(other_id, b"x", owned=True)
    info = client.stat(other_id)
    assert info["owned"] and not info["evictable"]
    plain = gismo.ObjectID.from_name(str(oid) + "-plain")
    client.put_bytes(plain, b"y")
    info = client.stat(plain)
    assert not info["owned"] and not info["evictable"]


def test_create_existing(client, other, oid):
    client.create(oid, 10)
    with pytest.raises(gismo.ObjectExists):  # unsealed
        client.create(oid, 10)
    client.seal(oid)
    with pytest.raises(gismo.ObjectExists):  # sealed
        other.create(oid, 10)
    client.release(oid)


def test_seal_and_abort_rules(client, other, oid):
    with pytest.raises(gismo.ObjectNotFound):
        client.seal(oid)
    with pytest.raises(gismo.ObjectNotFound):
        client.abort(oid)
    client.create(oid, 100)
    with pytest.raises(gismo.NotCreator):
        other.seal(oid)
    with pytest.raises(gismo.NotCreator):
        other.abort(oid)
    with pytest.raises(gismo.ObjectNotSealed):
        client.release(oid)
    with pytest.raises(gismo.ObjectNotSealed):
        client.delete(oid)
    client.abort(oid)
    assert not client.contains(oid)
    with pytest.raises(gismo.ObjectNotFound):
        client.stat(oid)
    client.create(oid, 100)  # the id is free again after abort
    client.seal(oid)
    with pytest.raises(gismo.ObjectAlreadySealed):
        client.seal(oid)
    with pytest.raises(gismo.ObjectAlreadySealed):
        client.abort(oid)
    client.release(oid)


def test_get_missing_returns_none(client, oid):
    missing = gismo.ObjectID.random()
    client.put_bytes(oid, b"abc")
    bufs = client.get([oid, missing], timeout_ms=50)
    assert isinstance(bufs, list) and len(bufs) == 2
    assert bytes(bufs[0]) == b"abc" and bufs[1] is None
    assert client.get([missing], 0) == [None]
    assert client.get([], 0) == []
    assert client.get((x for x in [oid]), 0)[0].tobytes() == b"abc"


def test_single_get_times_out(client, other, oid):
    # The message says why there was nothing to get.
    with pytest.raises(gismo.Timeout, match=oid.hex() + " does not exist"):
        client.get(oid, timeout_ms=0)
    with pytest.raises(TimeoutError, match="after waiting 30 ms"):  # a builtins.TimeoutError
        client.get(oid, timeout_ms=30)
    client.create(oid, 4)  # unsealed: still times out, even for its creator
    with pytest.raises(gismo.Timeout, match="still being written"):
        client.get(oid, timeout_ms=20)
    client.seal(oid)
    client.delete(oid)  # the creator's reference keeps it, deleting
    with pytest.raises(gismo.Timeout, match="was deleted"):
        other.get(oid, timeout_ms=0)
    client.release(oid)


@pytest.mark.parametrize("forever", [2**62, 10**13, 2**63 - 1, 2**70])
def test_timeouts_meaning_forever_wait(client, other, oid, forever):
    """A timeout too long to count in nanoseconds waits (it overflowed into
    "at once": Timeout)."""
    import threading
    got = []

    def getter():
        try:
            got.append(client.get(oid, timeout_ms=forever))
        except gismo.Error as e:
            got.append(e)

    t = threading.Thread(target=getter)
    t.start()
    t.join(0.3)  # give it time to wait (the object does not exist yet)
    other.put_bytes(oid, b"late")
    t.join(30)
    assert not t.is_alive()
    assert len(got) == 1 and isinstance(got[0], gismo.Buffer), got
    assert bytes(got[0]) == b"late"
    got[0].release()


def test_ids_as_raw_bytes(client, oid):
    client.put_bytes(oid.binary, b"raw")
    assert client.contains(bytearray(oid.binary))
    assert client.get_bytes(memoryview(oid.binary)) == b"raw"
    assert client.get(oid.binary).id == oid


def test_delete_is_deferred_until_last_release(client, other, oid):
    client.put_bytes(oid, b"z" * 100000)
    used_before = client.usage()["used_bytes"]
    held = other.get(oid, 0)
    client.delete(oid)
    assert not client.contains(oid)
    assert other.get([oid], 0) == [None]  # cannot be got any more
    with pytest.raises(gismo.ObjectNotFound):
        client.delete(oid)
    with pytest.raises(gismo.ObjectExists):  # still held
        client.create(oid, 1)
    assert client.stat(oid)["state"] == "deleting"
    assert bytes(held)[99999:] == b"z"  # the holder can still read it
    assert client.usage()["used_bytes"] == used_before
    held.release()
    with pytest.raises(gismo.ObjectNotFound):
        client.stat(oid)
    assert client.usage()["used_bytes"] < used_before


def test_release_errors(client, oid):
    with pytest.raises(gismo.ObjectNotFound):
        client.release(oid)
    client.put_bytes(oid, b"x")
    with pytest.raises(gismo.NotHeld):
        client.release(oid)
    a, b = client.get(oid), client.get(oid)
    assert client.stat(oid)["refs"] == 2
    a.release()
    assert client.stat(oid)["refs"] == 1
    del b  # garbage collection releases too
    assert client.stat(oid)["refs"] == 0


def test_release_never_takes_a_buffers_reference(client, other, oid):
    """release(id) gives back the creator's reference, never one a Buffer
    counts on: that would let another client's delete free the memory the
    Buffer still shows."""
    client.put_bytes(oid, b"kept")
    buf = client.get(oid)
    with pytest.raises(gismo.NotHeld, match="Buffer.release"):
        client.release(oid)
    assert client.stat(oid)["refs"] == 1
    other.delete(oid)  # deferred: the Buffer still holds it
    assert bytes(buf) == b"kept"
    with pytest.raises(gismo.NotHeld):
        client.release(oid)  # deleting, still there: not held, not "gone"
    buf.release()
    with pytest.raises(gismo.ObjectNotFound):
        client.stat(oid)
    # The creator's own reference, given back once; the second call finds
    # only the Buffer's.
    view = client.create(oid, 3)
    view[:] = b"new"
    with pytest.raises(gismo.ObjectNotSealed):
        client.release(oid)  # refused, and still the creator's to give back
    client.seal(oid)
    buf = client.get(oid)
    client.release(oid)
    with pytest.raises(gismo.NotHeld):
        client.release(oid)
    assert client.stat(oid)["refs"] == 1 and bytes(buf) == b"new"
    buf.release()


def test_put_and_get_bytes(client, oid):
    client.put_bytes(oid, bytearray(b"payload"), metadata=b"m")
    assert client.get_bytes(oid) == b"payload"
    assert client.get(oid).metadata == b"m"
    assert client.stat(oid)["refs"] == 0  # get_bytes gave its reference back
    empty = gismo.ObjectID.random()
    client.put_bytes(empty, b"")
    assert client.get_bytes(empty) == b""
    zero = gismo.ObjectID.random()
    client.create(zero, 0)
    client.seal(zero)
    client.release(zero)
    assert len(client.get(zero)) == 0


def test_list_usage_capacity(fresh_manager):
    with fresh_manager.connect() as c:
        before = c.usage()
        assert before["object_count"] == 0 and before["client_count"] == 1
        assert c.capacity() == before["capacity_bytes"] > 0
        ids = [gismo.ObjectID.random() for _ in range(3)]
        for i, oid in enumerate(ids):
            c.put_bytes(oid, b"x" * (i + 1), metadata=b"md")
        c.create(gismo.ObjectID.random(), 7)
        listed = {o["id"]: o for o in c.list()}
        assert set(ids) <= set(listed) and len(listed) == 4
        for i, oid in enumerate(ids):
            o = listed[oid]
            assert (o["size"], o["metadata_size"], o["state"], o["refs"]) == \
                (i + 1, 2, "sealed", 0)
            assert o["node"] == c.identity()[0] and o["created"] > 0
        u = c.usage()
        assert (u["object_count"], u["sealed_count"], u["unsealed_count"]) == \
            (4, 3, 1)
        assert u["used_bytes"] > before["used_bytes"]
        clients = c.list_clients()
        assert len(clients) == 1 and clients[0]["client"] == c.identity()[1]


def test_store_full(client):
    too_big = client.capacity() + 1
    with pytest.raises(gismo.StoreFull, match="never fit"):
        client.create(gismo.ObjectID.random(), too_big)
    with pytest.raises(MemoryError):
        client.put_bytes(gismo.ObjectID.random(), bytes(too_big))
    client.put_bytes(gismo.ObjectID.random(), b"still works")


def test_every_status_has_an_exception():
    for name, status in gismo.Status.__members__.items():
        if status == gismo.Status.OK:
            continue
        cls = gismo.STATUS_ERRORS[status]
        assert issubclass(cls, gismo.Error) and cls.status == status, name
    assert issubclass(gismo.ConnectionError, ConnectionError)
    assert issubclass(gismo.InvalidArgument, ValueError)
    assert gismo.status_message(gismo.Status.OUT_OF_MEMORY) == "store is full"


def test_error_carries_status_and_detail(client, oid):
    with pytest.raises(gismo.ObjectNotFound) as e:
        client.delete(oid)
    assert e.value.status == gismo.Status.OBJECT_NOT_FOUND
    assert str(e.value)  # the C library's detail


def test_bad_arguments(client, oid):
    with pytest.raises(gismo.InvalidArgument, match="size"):
        client.create(oid, -1)
    with pytest.raises(TypeError):
        client.create(oid, "10")
    with pytest.raises(TypeError, match="bytes-like"):
        client.create(oid, 1, metadata="text")
    with pytest.raises(TypeError, match="bytes-like"):
        client.put_bytes(oid, "text")
    with pytest.raises(TypeError, match="bytes-like"):
        client.put_bytes(oid, None)  # it stored an empty object
    # A bytes-like object that refuses its buffer says why (it was a
    # TypeError "expected a bytes-like object, not memoryview").
    released = memoryview(b"gone")
    released.release()
    with pytest.raises(ValueError, match="released"):
        client.put_bytes(oid, released)
    assert not client.contains(oid)
    client.put_bytes(oid, b"", metadata=None)  # no metadata
    assert client.stat(oid)["metadata_size"] == 0
    client.delete(oid)
    with pytest.raises(TypeError, match="contiguous"):
        client.contains(memoryview(bytes(40))[::2])  # it raised BufferError
    with pytest.raises(TypeError, match="ObjectID or 20 bytes"):
        client.contains("not an id")
    with pytest.raises(TypeError, match="from_name"):
        client.get("name", 0)
    with pytest.raises(gismo.InvalidArgument, match="20 bytes"):
        client.contains(b"short")
    with pytest.raises(gismo.InvalidArgument):
        client.get(oid, timeout_ms=-5)
    with pytest.raises(TypeError, match="timeout_ms"):
        client.get(oid, timeout_ms=1.5)
    # Every timeout below -1 is refused, not taken as "forever".
    for wait in (lambda t: client.get(oid, timeout_ms=t),
                 lambda t: client.get([oid], timeout_ms=t),
                 lambda t: client.get_bytes(oid, timeout_ms=t),
                 lambda t: client.get_or_create(oid, 4, timeout_ms=t),
                 lambda t: client._get_or_create(oid, 4, b"", False, False, t),
                 lambda t: client.wait_name("n", timeout_ms=t),
                 lambda t: gismo.Cache(client, timeout_ms=t)):
        for t in (-2, -(2**63)):
            with pytest.raises(gismo.InvalidArgument, match="timeout_ms"):
                wait(t)
    assert not client.contains(oid)
    # Sizes and counts out of range, or not integers, get the library's
    # own errors (they got pybind11's "incompatible function arguments").
    for call in (lambda n: client.create(oid, n),
                 lambda n: client.get_or_create(oid, n, timeout_ms=0),
                 client.evict):
        for n in (-1, 2**64):
            with pytest.raises(gismo.InvalidArgument, match=r"must be from 0 to") as e:
                call(n)
            assert "incompatible" not in str(e.value)
        for n in (1.0, True, "1"):
            with pytest.raises(TypeError, match=r"must be an int") as e:
                call(n)
    # numpy's integers are integers, for sizes and timeouts alike.
    client.create(oid, np.int64(3))
    client.abort(oid)
    assert client.evict(np.uint64(0)) == 0
    with pytest.raises(gismo.Timeout):
        client.get(oid, timeout_ms=np.int64(0))
    assert not client.contains(oid)
    with pytest.raises(gismo.InvalidArgument):
        gismo.connect("bogus:thing")
    # Ids, names, flags and objects of the wrong type get a TypeError that
    # names what was expected, never pybind11's "incompatible function
    # arguments" (nor the truth value of "yes" for a flag).
    wrong_types = [
        (lambda: client.get(None), "iterable"),
        (lambda: client.get(5), "iterable"),
        (lambda: client.get(3.0), "iterable"),
        (lambda: gismo.ObjectID.from_name(5), "str or bytes"),
        (lambda: gismo.ObjectID.from_hex(5), "40 hex digits"),
        (lambda: client.create(oid, 1, owned="yes"), "owned must be a bool"),
        (lambda: client.put_bytes(oid, b"x", evictable=[]), "evictable must be a bool"),
        (lambda: client.get_or_create(oid, 1, evictable="no"), "evictable must be a bool"),
        (lambda: oid < 5, "not supported"),
        (lambda: sorted([oid, b"x" * 20]), "not supported"),
        (lambda: gismo.Subscription(5), "gismo.Client"),
    ]
    for call, expected in wrong_types:
        with pytest.raises(TypeError, match=expected) as e:
            call()
        assert "incompatible" not in str(e.value)
    assert not client.contains(oid)
    # Flags take numpy's bools and 0 or 1; names, a str that is not UTF-8
    # (what list_names gives back for such a name) or bytes.
    client.create(oid, 1, owned=np.bool_(True), evictable=0)
    client.abort(oid)
    # Read with the GIL held: an int's __index__ (numpy's too) and the error
    # for one out of range (this crashed, the flags read without the GIL).
    client.put_bytes(oid, b"x", owned=np.int64(1), evictable=1)
    client.delete(oid)
    for flag in (2, -1, np.int64(7)):
        with pytest.raises(TypeError, match="owned must be a bool"):
            client.put_bytes(oid, b"x", owned=flag)
        with pytest.raises(TypeError, match="evictable must be a bool"):
            client.get_or_create(oid, 1, evictable=flag, timeout_ms=0)
    assert not client.contains(oid)
    assert gismo.ObjectID.from_hex(b"ab" * 20) == gismo.ObjectID.from_hex("ab" * 20)
    assert (gismo.ObjectID.from_name("k\udcff") ==
            gismo.ObjectID.from_name(b"k\xff"))
    assert gismo.ObjectID.from_name("k") == gismo.ObjectID.from_name(b"k")
    with pytest.raises(TypeError, match="address"):
        gismo.connect(42)
    with pytest.raises(gismo.ConnectionError, match="gismo-manager"):
        gismo.connect("unix:/nonexistent/gismo.sock")


def test_closed_client(manager, oid):
    c = manager.connect()
    assert not c.closed
    c.close()
    c.close()  # idempotent
    assert c.closed and "closed" in repr(c)
    with pytest.raises(gismo.InvalidArgument, match="closed"):
        c.contains(oid)
    with pytest.raises(gismo.InvalidArgument, match="closed"):
        c.get(oid, 0)


@pytest.mark.parametrize("call", ["get", "get_many", "get_or_create",
                                  "wait_name"])
def test_close_ends_a_wait_in_another_thread(manager, oid, call):
    """A wait without end in one thread, close() in another: the wait
    raises InvalidArgument (it went on for ever)."""
    c = manager.connect()
    waits = {
        "get": lambda: c.get(oid),
        "get_many": lambda: c.get([oid, gismo.ObjectID.random()]),
        "get_or_create": lambda: c.get_or_create(oid, 8),
        "wait_name": lambda: c.wait_name("never-bound-" + oid.hex()),
    }
    outcome = []

    def run():
        try:
            waits[call]()
            outcome.append("returned")
        except gismo.InvalidArgument as e:
            outcome.append(str(e))

    with manager.connect() as creator:
        if call == "get_or_create":
            creator.create(oid, 8)  # unsealed: get_or_create waits for it
        waiter = threading.Thread(target=run, daemon=True)
        waiter.start()
        # Time for the call to block (if it has not, close() comes first
        # and the call raises all the same); it cannot return by itself.
        waiter.join(0.3)
        assert waiter.is_alive(), outcome
        c.close()
        waiter.join(60)
    assert not waiter.is_alive(), "the wait went on after close()"
    assert outcome and "closed" in outcome[0], outcome


def test_disconnect_aborts_unsealed(manager, client, oid):
    with manager.connect() as c:
        c.create(oid, 10)
        assert client.stat(oid)["state"] == "unsealed"
    with pytest.raises(gismo.ObjectNotFound):
        client.stat(oid)


def test_manager_death_keeps_the_client_working(fresh_manager, oid):
    # Object operations need no manager; the client re-attaches to the next.
    c = fresh_manager.connect()
    c.put_bytes(oid, b"survives")
    fresh_manager.proc.kill()
    fresh_manager.proc.wait()
    for _ in range(100):
        c.put_bytes(gismo.ObjectID.random(), b"x")
        c.get(oid, 10).release()
    fresh_manager.restart()
    later = gismo.ObjectID.random()
    with fresh_manager.connect() as other:
        other.put_bytes(later, b"later")
    with c.get(later, 10000) as buf:  # a blocking get needs the manager
        assert bytes(buf) == b"later"
    c.close()


def _key_file(path):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(os.urandom(32))
    return str(path)


def test_connect_takes_the_key_file_as_an_argument(start_manager, tmp_path):
    key = _key_file(tmp_path / "cluster.key")
    wrong = _key_file(tmp_path / "wrong.key")
    m = start_manager("--key-file", key)
    # A client with a key wants the manager to prove it holds the same one.
    with gismo.connect(m.address, key_file=key) as c:
        assert c.capacity() > 0
    with pytest.raises(gismo.PermissionDenied):
        gismo.connect(m.address, key_file=wrong)
    with pytest.raises(gismo.Error, match="nonexistent"):
        gismo.connect(m.address, key_file=str(tmp_path / "nonexistent.key"))
    # Arguments of the wrong type are TypeErrors (the README's rule); a
    # path may be any os.PathLike.
    with pytest.raises(TypeError, match="key_file"):
        gismo.connect(m.address, key_file=3)
    with pytest.raises(TypeError, match="address"):
        gismo.connect(5)
    with gismo.connect(m.address, key_file=tmp_path / "cluster.key") as c:
        assert c.capacity() > 0
    # A NUL byte would cut the C string short: another file, another socket.
    for args, kwargs in [((m.address + "\0junk",), {}),
                         ((m.address,), {"key_file": key + "\0x"}),
                         ((m.address,), {"region_path": "/dev/shm/x\0y"})]:
        with pytest.raises(gismo.InvalidArgument, match="NUL"):
            gismo.connect(*args, **kwargs)


def test_clients_of_one_pool_see_one_region_uuid(client, other):
    uuid = client.usage()["region_uuid"]
    assert len(uuid) == 32 and int(uuid, 16) != 0
    assert other.usage()["region_uuid"] == uuid


@pytest.mark.parametrize("cls", [gismo.Client, gismo._gismo._Client,
                                 gismo.Subscription, gismo._gismo._Subscription,
                                 gismo.ObjectID, gismo.Buffer,
                                 gismo._gismo._WritableRegion])
def test_binding_classes_refuse_new_without_init(cls):
    # __new__ alone would give methods uninitialised storage as the C++
    # object (Client.__new__(Client).list() crashed).
    with pytest.raises(TypeError, match="__new__"):
        cls.__new__(cls)
    with pytest.raises(TypeError, match="__new__"):
        cls.__new__(cls, b"x" * 20)


def test_construction_through_the_class_still_works(manager, oid):
    import copy
    import pickle
    assert copy.copy(oid) == oid == pickle.loads(pickle.dumps(oid))
    with gismo.Client(manager.address) as c, c.subscribe() as sub:
        assert isinstance(sub, gismo.Subscription) and not c.closed
    with pytest.raises(TypeError, match="made by gismo"):
        gismo.Buffer()


# Blocks in one of the binding's waits and expects Ctrl-C to end it. The
# SIGINT handler raises only once the wait is running (the innermost Python
# frame is the line calling into the binding); a signal that comes earlier is
# sent again from another thread, so it cannot end the test before the wait
# began (and a binding that does not check signals while waiting hangs).
BLOCKED_WAIT = """
import os, signal, sys, threading
import gismo
address, which = sys.argv[1], sys.argv[2]
c, loader = gismo.connect(address), gismo.connect(address)
oid = gismo.ObjectID.random()
loader.get_or_create(oid, 8)  # being loaded: every wait below blocks


def get():
    return c._get_one(oid, -1)


def get_many():
    return c._get_many([oid, gismo.ObjectID.random()], -1)


def get_or_create():
    return c._get_or_create(oid, 8, b"", False, True, -1)


def wait_name():
    return c._wait_name(oid.hex(), None, -1)


blocked = globals()[which]
waiting_line = blocked.__code__.co_firstlineno + 1


done = False


def on_sigint(signum, frame):
    if done:
        return
    if frame is not None and frame.f_code is blocked.__code__ and \\
            frame.f_lineno == waiting_line:
        raise KeyboardInterrupt
    again = threading.Timer(0.001, os.kill, (os.getpid(), signal.SIGINT))
    again.daemon = True
    again.start()


signal.signal(signal.SIGINT, on_sigint)
try:
    print("waiting", flush=True)
    blocked()
except KeyboardInterrupt:
    done = True
    print("interrupted", flush=True)
"""


@pytest.mark.parametrize("which", ["get", "get_many", "get_or_create", "wait_name"])
def test_ctrl_c_interrupts_a_blocked_wait(manager, run_python, which):
    import signal
    child = run_python(BLOCKED_WAIT, manager.address, which)
    assert child.stdout.readline().strip() == "waiting"
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert out.strip() == "interrupted"


DAEMON_WAITS_AT_EXIT = """
import sys, threading
import gismo

c = gismo.connect(sys.argv[1])
which = sys.argv[2]
waiting = threading.Event()


def wait():
    waiting.set()
    if which == "get":
        c.get(gismo.ObjectID.random())
    elif which == "subscription":
        for _ in c.subscribe():
            pass
    else:
        c.wait_name("never bound")


threading.Thread(target=wait, daemon=True).start()
waiting.wait()
# Freed as the interpreter finalizes, which then lasts longer than the
# daemon's 100 ms wait slice: the daemon takes the GIL back meanwhile.
garbage = [{} for _ in range(3_000_000)]
print("exiting", flush=True)
"""


@pytest.mark.parametrize("which", ["get", "subscription", "wait_name"])
def test_a_daemon_thread_waiting_at_exit_ends_quietly(manager, run_python, which):
    # It was ended inside pybind11's noexcept GIL guard: std::terminate,
    # SIGABRT at the program's exit.
    child = run_python(DAEMON_WAITS_AT_EXIT, manager.address, which)
    out, err = child.communicate(timeout=60)
    assert "terminate" not in err, err
    assert child.returncode == 0, err
    assert out.strip() == "exiting"


def test_a_get_of_many_over_several_slices_holds_each_object_once(client, oid):
    # 250 ms spans three of the binding's 100 ms slices; the sealed object is
    # got in the first and not asked for again.
    client.put_bytes(oid, b"here")
    got = client.get([gismo.ObjectID.random(), oid, gismo.ObjectID.random()],
                     timeout_ms=250)
    assert got[0] is None and got[2] is None
    assert bytes(got[1]) == b"here"
    assert client.stat(oid)["refs"] == 1
    got[1].release()
    assert client.stat(oid)["refs"] == 0
