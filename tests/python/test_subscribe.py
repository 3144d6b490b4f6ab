"""Notifications: Client.subscribe(), Subscription, Notification, Event."""

import asyncio
import os
import select
import selectors
import signal
import threading
import time

import pytest

import gismo

WAIT_MS = 10000  # bound on every wait for a notification that must come


def drain(sub):
    """Every notification waiting now."""
    out = []
    while True:
        try:
            out.append(sub.next(0))
        except gismo.Timeout:
            return out


def put(client, name, data=b"x", metadata=b""):
    oid = gismo.ObjectID.from_name(f"sub-{os.getpid()}-{name}")
    client.put(oid, data, metadata)
    return oid


def test_live_events_in_order_with_sizes_node_and_seq(client, other):
    with client.subscribe() as sub:
        drain(sub)  # objects of earlier tests
        a = put(other, "a", b"aaaa", b"meta")
        b = put(other, "b", b"bb")
        other.delete(a)
        got = [sub.next(WAIT_MS) for _ in range(3)]
        assert drain(sub) == []
    assert [(n.event, n.id) for n in got] == [
        (gismo.Event.SEALED, a), (gismo.Event.SEALED, b),
        (gismo.Event.DELETED, a)]
    assert (got[0].data_size, got[0].metadata_size) == (4, 4)
    assert (got[1].data_size, got[1].metadata_size) == (2, 0)
    assert (got[2].data_size, got[2].metadata_size) == (4, 4)
    node, _ = other.identity()
    assert all(n.node == node for n in got)
    assert 0 < got[0].seq < got[1].seq < got[2].seq
    assert isinstance(got[0], gismo.Notification)
    assert got[0]._asdict()["event"] == gismo.Event.SEALED
    other.delete(b)


def test_late_subscriber_first_gets_every_sealed_object(fresh_manager):
    with fresh_manager.connect() as producer, \
            fresh_manager.connect() as watcher:
        sealed = {put(producer, f"old{i}", b"v" * i) for i in range(5)}
        pending = gismo.ObjectID.random()
        producer.create(pending, 3)  # unsealed: not listed
        deleted = put(producer, "gone")
        producer.delete(deleted)

        sub = watcher.subscribe()
        initial = drain(sub)
        assert {n.id for n in initial} == sealed
        assert all(n.event == gismo.Event.SEALED and n.seq == 0
                   for n in initial)
        assert sorted(n.data_size for n in initial) == list(range(5))

        producer.seal(pending)
        n = sub.next(WAIT_MS)
        assert (n.event, n.id, n.data_size) == (gismo.Event.SEALED, pending, 3)
        assert n.seq > 0
        producer.release(pending)


def test_deletions_of_sealed_and_held_objects(client, other):
    sub = client.subscribe()
    drain(sub)
    oid = put(other, "held", b"12345")
    assert sub.next(WAIT_MS).event == gismo.Event.SEALED
    buf = client.get(oid, timeout_ms=0)
    other.delete(oid)  # deleted at once for everyone; freed at release
    n = sub.next(WAIT_MS)
    assert (n.event, n.id, n.data_size) == (gismo.Event.DELETED, oid, 5)
    buf.release()
    assert drain(sub) == []  # the release is no event
    sub.close()


def test_overflow_when_the_subscriber_falls_behind(start_manager):
    m = start_manager("--event-capacity", "64")
    with m.connect() as producer, m.connect() as watcher:
        sub = watcher.subscribe()
        for i in range(300):  # never waits for the subscriber
            put(producer, f"ov{i}")
        n = sub.next(WAIT_MS)
        assert n.event == gismo.Event.OVERFLOW
        assert n.id is None
        after = put(producer, "after")
        n = sub.next(WAIT_MS)
        assert (n.event, n.id) == (gismo.Event.SEALED, after)
        # Resynchronizing with list() finds everything.
        assert len(watcher.list()) == 301
        sub.close()


SUBSCRIBER = """
import sys, gismo
with gismo.connect(sys.argv[1]) as c, c.subscribe() as sub:
    while True:
        try:
            sub.next(0)
        except gismo.Timeout:
            break
    print("ready", flush=True)
    for n in sub:
        print(n.event.name, n.id.hex(), n.data_size, n.seq > 0, flush=True)
        if n.event == gismo.Event.DELETED:
            break
"""


def test_subscriber_in_another_process(manager, client, run_python):
    child = run_python(SUBSCRIBER, manager.address)
    assert child.stdout.readline().strip() == "ready"
    a = put(client, "proc-a", b"abc")
    b = put(client, "proc-b", b"")
    client.delete(a)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.splitlines() == [
        f"SEALED {a.hex()} 3 True", f"SEALED {b.hex()} 0 True",
        f"DELETED {a.hex()} 3 True"]
    client.delete(b)


def test_fileno_with_selectors(client, other):
    sub = client.subscribe()
    drain(sub)
    with selectors.DefaultSelector() as sel:
        sel.register(sub, selectors.EVENT_READ)  # uses fileno()
        assert sel.select(timeout=0) == []  # drained: not readable
        oid = put(other, "sel")
        assert sel.select(timeout=WAIT_MS / 1000)  # readable without next()
        got = drain(sub)
        assert [(n.event, n.id) for n in got] == [(gismo.Event.SEALED, oid)]
        assert sel.select(timeout=0) == []
    other.delete(oid)
    sub.close()


def test_fileno_with_asyncio(client, other):
    sub = client.subscribe()
    drain(sub)
    names = [f"aio{i}" for i in range(3)]

    async def main():
        loop = asyncio.get_running_loop()
        queue = asyncio.Queue()

        def readable():
            for n in drain(sub):
                queue.put_nowait(n)

        loop.add_reader(sub.fileno(), readable)
        try:
            ids = [put(other, name) for name in names]
            got = [await asyncio.wait_for(queue.get(), WAIT_MS / 1000)
                   for _ in ids]
        finally:
            loop.remove_reader(sub.fileno())
        return ids, got

    ids, got = asyncio.run(main())
    assert [n.id for n in got] == ids
    for oid in ids:
        other.delete(oid)
    sub.close()


def test_iteration_blocks_and_close_from_another_thread_ends_it(client, other):
    sub = client.subscribe()
    drain(sub)
    seen = []

    def watch():
        for n in sub:  # blocks without the GIL
            seen.append(n)

    t = threading.Thread(target=watch)
    t.start()
    oid = put(other, "iter")  # runs while the watcher blocks
    deadline = time.monotonic() + WAIT_MS / 1000
    while not seen and time.monotonic() < deadline:
        time.sleep(0.005)
    sub.close()
    t.join(timeout=WAIT_MS / 1000)
    assert not t.is_alive()
    assert [(n.event, n.id) for n in seen] == [(gismo.Event.SEALED, oid)]
    other.delete(oid)


def test_client_close_ends_a_blocked_next(manager):
    c = manager.connect()
    sub = c.subscribe()
    drain(sub)
    result = {}

    def wait():
        start = time.monotonic()
        try:
            sub.next()
        except gismo.Error as e:
            result["error"] = e
        result["took"] = time.monotonic() - start

    t = threading.Thread(target=wait)
    t.start()
    c.close()
    t.join(timeout=WAIT_MS / 1000)
    assert not t.is_alive()
    assert isinstance(result["error"], gismo.InvalidArgument)
    assert sub.closed
    assert list(sub) == []  # iteration of a closed subscription ends
    with pytest.raises(gismo.InvalidArgument, match="closed"):
        sub.fileno()


def test_timeout_and_bad_arguments(client):
    sub = client.subscribe()
    drain(sub)
    start = time.monotonic()
    with pytest.raises(gismo.Timeout, match="no notification within 50 ms"):
        sub.next(timeout_ms=50)
    assert time.monotonic() - start >= 0.045
    with pytest.raises(TimeoutError):  # gismo.Timeout is one
        sub.next(0)
    with pytest.raises(TypeError):
        sub.next(timeout_ms=1.5)
    # Below -1 is refused, not taken as "forever" (one is waiting).
    client.put_bytes(gismo.ObjectID.random(), b"n")
    for t in (-2, -(2**63)):
        with pytest.raises(gismo.InvalidArgument, match="timeout_ms"):
            sub.next(timeout_ms=t)
        with pytest.raises(gismo.InvalidArgument, match="timeout_ms"):
            sub._next(t)
    assert sub.next(10000).event == gismo.Event.SEALED
    # Subscribing again shares the stream (and the fd).
    again = client.subscribe()
    assert again.fileno() == sub.fileno()
    sub.close()
    sub.close()  # idempotent
    with pytest.raises(gismo.InvalidArgument, match="subscription is closed"):
        sub.next(0)
    assert "closed" in repr(sub)
    assert "fd=" in repr(again)
    again.close()


SIGNALLED = """
import gismo, sys
with gismo.connect(sys.argv[1]) as c, c.subscribe() as sub:
    while True:
        try:
            sub.next(0)
        except gismo.Timeout:
            break
    try:
        print("waiting", flush=True)
        sub.next()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


def test_ctrl_c_interrupts_a_blocked_next(manager, run_python):
    child = run_python(SIGNALLED, manager.address)
    assert child.stdout.readline().strip() == "waiting"
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert out.strip() == "interrupted"


def test_subscription_keeps_the_connection_and_refuses_after_fork(manager):
    sub = manager.connect().subscribe()  # the Client object is gone at once
    drain(sub)
    with manager.connect() as other:
        oid = put(other, "kept")
        n = sub.next(WAIT_MS)
        assert n.id == oid
        other.delete(oid)
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            try:
                sub.next(0)
            except gismo.InvalidArgument as e:
                code = 0 if "another process" in str(e) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sub.next(WAIT_MS).event == gismo.Event.DELETED
    sub.close()


def _readable_eventfds():
    """This process's eventfds that poll readable now."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[eventfd]":
                fds.append(int(name))
        except OSError:
            pass  # the listing's own fd
    p = select.poll()
    for fd in fds:
        p.register(fd, select.POLLIN)
    return sorted(fd for fd, _ in p.poll(0))


def test_a_forked_childs_close_wakes_nothing_in_the_parent(manager):
    # The child shares the parent's eventfds: its close() of the client and
    # of a subscription raised them, and the parent's waits, which found
    # nothing closed, polled them again at once for good (a core spinning).
    client = manager.connect()
    sub = client.subscribe()
    drain(sub)
    before = _readable_eventfds()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            sub.close()
            client.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _readable_eventfds() == before
    with pytest.raises(gismo.Timeout):
        sub.next(0)
    with manager.connect() as other:
        oid = put(other, "after the child")
        assert sub.next(WAIT_MS).id == oid
    sub.close()
    client.close()


def test_manager_restart_keeps_a_blocked_next(fresh_manager):
    # The subscription outlives the manager: the subscriber re-attaches and
    # the seal made meanwhile (the ring is in the region) is delivered.
    with fresh_manager.connect() as c, fresh_manager.connect() as producer:
        sub = c.subscribe()
        result = {}

        def wait():
            try:
                result["n"] = sub.next(timeout_ms=30000)
            except gismo.Error as e:
                result["error"] = e

        t = threading.Thread(target=wait)
        t.start()
        fresh_manager.proc.kill()
        fresh_manager.proc.wait()
        oid = gismo.ObjectID.random()
        producer.put_bytes(oid, b"while the manager was down")
        fresh_manager.restart()
        t.join(timeout=WAIT_MS / 1000)
        assert not t.is_alive()
        assert "error" not in result, result.get("error")
        assert result["n"].id == oid
