"""Producers and consumers in different processes and threads."""

import os
import threading
import time

import numpy as np
import pytest
import gismo

CONSUMER = """
import sys, gismo
oid = gismo.ObjectID.from_hex(sys.argv[2])
with gismo.connect(sys.argv[1]) as c:
    print("waiting", flush=True)
    a = c.get_array(oid, timeout_ms=30000)  # blocks until it is sealed
    base, size = c.region_read_view()
    assert base <= a.ctypes.data < base + size
    print(a.dtype, a.shape, int(a.sum()), flush=True)
"""

HOLDER = """
import sys, gismo
c = gismo.connect(sys.argv[1])
a = c.get_array(gismo.ObjectID.from_hex(sys.argv[2]))
print("holding", int(a[-1]), flush=True)
sys.stdin.read()  # until killed
"""


def test_consumer_in_another_process_waits_for_the_producer(
        manager, client, run_python, oid):
    consumer = run_python(CONSUMER, manager.address, oid.hex())
    assert consumer.stdout.readline().strip() == "waiting"
    client.put_array(oid, np.arange(1000, dtype=np.int64).reshape(10, 100))
    out, err = consumer.communicate(timeout=60)
    assert consumer.returncode == 0, err
    assert out.strip() == "int64 (10, 100) 499500"
    assert client.stat(oid)["refs"] == 0  # the consumer's reference is gone


def test_killed_consumer_is_cleaned_up(manager, client, run_python, oid):
    client.put_array(oid, np.arange(5))
    holder = run_python(HOLDER, manager.address, oid.hex())
    assert holder.stdout.readline().strip() == "holding 4"
    assert client.stat(oid)["refs"] == 1
    holder.kill()
    holder.wait(timeout=30)
    # The manager notices the closed connection and drops its references.
    deadline = time.monotonic() + 30
    while client.stat(oid)["refs"] != 0:
        assert time.monotonic() < deadline, "the dead client still holds it"
        time.sleep(0.01)


def test_forked_child_must_connect_again(manager, client, oid):
    client.put_bytes(oid, b"from the parent")
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            try:
                client.contains(oid)
            except gismo.InvalidArgument as e:
                if "another process" in str(e):
                    with manager.connect() as c:
                        if c.get_bytes(oid) == b"from the parent":
                            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert client.contains(oid)  # the parent's client is unaffected
    assert client.get_bytes(oid) == b"from the parent"


def test_a_forked_child_makes_no_view_of_the_parents_buffer(client, oid):
    # The reference is the parent's, which may release it (and the memory be
    # reused) at any time: before, the child's copy still made views and
    # said it was not released, and read another object's bytes once the
    # parent had let go.
    client.put_bytes(oid, b"AAAA")
    buf = client.get(oid)
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            refused = 0
            for make in (memoryview, bytes, lambda b: b.metadata):
                try:
                    make(buf)
                except (BufferError, gismo.InvalidArgument) as e:
                    refused += "fork()" in str(e)
            if refused == 3 and buf.released and buf.address == 0:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not buf.released and buf.address != 0  # the parent's is unaffected
    assert bytes(memoryview(buf)) == b"AAAA"
    buf.release()


def test_blocking_get_releases_the_gil(client, oid):
    got = {}

    def reader():
        got["array"] = client.get_array(oid, timeout_ms=20000)

    t = threading.Thread(target=reader)
    t.start()
    # This thread runs while the reader blocks in C: the GIL is free.
    client.put_array(oid, np.ones(10))
    t.join(timeout=30)
    assert not t.is_alive()
    assert got["array"].sum() == 10


def test_many_threads_share_one_client(client):
    errors = []

    def work(n):
        try:
            for i in range(50):
                oid = gismo.ObjectID.from_name(f"thread-{os.getpid()}-{n}-{i}")
                client.put_array(oid, np.full(64, n * 1000 + i))
                a = client.get_array(oid, timeout_ms=1000)
                assert int(a[0]) == n * 1000 + i
                del a
                client.delete(oid)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)


def test_close_from_another_thread_during_a_call(manager, oid):
    c = manager.connect()
    result = {}

    def reader():
        try:
            result["array"] = c.get_array(oid, timeout_ms=200)
        except gismo.Error as e:
            result["error"] = e

    t = threading.Thread(target=reader)
    t.start()
    c.close()  # the running call finishes first, then the client closes
    t.join(timeout=30)
    assert isinstance(result.get("error"),
                      (gismo.Timeout, gismo.InvalidArgument))


OWNER = """
import sys, numpy as np, gismo
c = gismo.connect(sys.argv[1])
c.put_array(gismo.ObjectID.from_hex(sys.argv[2]), np.arange(1000), owned=True)
c.put_bytes(gismo.ObjectID.from_hex(sys.argv[3]), b"plain")
print("owning", flush=True)
sys.stdin.read()  # until killed, or closed: then it disconnects
c.close()
"""


def test_owned_objects_go_with_their_owner(manager, client, run_python):
    for kill in (False, True):
        owned, plain = gismo.ObjectID.random(), gismo.ObjectID.random()
        p = run_python(OWNER, manager.address, owned.hex(), plain.hex())
        assert p.stdout.readline().strip() == "owning"
        assert client.stat(owned)["owned"]
        held = client.get_array(owned)  # a reader keeps it until released
        if kill:
            p.kill()
            p.wait(timeout=30)
        else:
            p.communicate(timeout=30)  # end of input: it disconnects
        end = time.monotonic() + 30
        while client.stat(owned)["state"] != "deleting":
            assert time.monotonic() < end, "the owner's departure deleted nothing"
            time.sleep(0.001)
        assert not client.contains(owned)
        assert int(held[-1]) == 999  # still readable
        del held
        with pytest.raises(gismo.ObjectNotFound):
            client.stat(owned)
        assert client.get_bytes(plain) == b"plain"
        client.delete(plain)
