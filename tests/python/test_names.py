"""The name table from Python: bind, swap (compare-and-swap), unbind,
lookup, list by prefix, the errors, and names that outlive the manager."""

import uuid

import pytest

import gismo


@pytest.fixture
def prefix():
    return f"py-{uuid.uuid4().hex[:8]}/"


def put(client, data=b"x"):
    oid = gismo.ObjectID.random()
    client.put(oid, data)
    return oid


def test_bind_lookup_swap_unbind(client, other, prefix):
    a, b = put(client), put(client)
    name = prefix + "ckpt"
    with pytest.raises(gismo.ObjectNotFound):
        client.lookup_name(name)
    client.bind_name(name, a)
    got = other.lookup_name(name)
    assert got["name"] == name and got["id"] == a and got["version"] == 1
    assert got["bound_ns"] > 0
    with pytest.raises(gismo.Conflict):
        client.swap_name(name, b, b)
    with pytest.raises(gismo.Conflict):
        client.swap_name(name, None, b)
    client.swap_name(name, a, b)
    assert other.lookup_name(name)["id"] == b
    assert other.lookup_name(name.encode())["version"] == 2
    with pytest.raises(gismo.Conflict):
        client.unbind_name(name, expected=a)
    client.unbind_name(name, expected=b)
    with pytest.raises(gismo.ObjectNotFound):
        client.unbind_name(name)
    client.swap_name(name, None, a)  # only if unbound
    assert client.lookup_name(name)["id"] == a


def test_list_by_prefix(client, prefix):
    a = put(client)
    for n in ("x/1", "x/2", "y"):
        client.bind_name(prefix + n, a)
    names = sorted(d["name"] for d in client.list_names(prefix + "x/"))
    assert names == [prefix + "x/1", prefix + "x/2"]
    assert len(client.list_names(prefix)) == 3
    assert any(d["name"] == prefix + "y" for d in client.list_names())


def test_bad_names_and_objects(client, prefix):
    a = put(client)
    for bad in ("", "n" * 193, "a\0b", b"a\0b"):
        with pytest.raises(gismo.InvalidArgument):
            client.bind_name(bad, a)
    with pytest.raises(TypeError):
        client.bind_name(17, a)
    client.bind_name(prefix + "n" * (192 - len(prefix)), a)
    with pytest.raises(gismo.ObjectNotFound):
        client.bind_name(prefix + "missing", gismo.ObjectID.random())
    oid = gismo.ObjectID.random()
    buf = client.create(oid, 10)
    with pytest.raises(gismo.ObjectNotSealed):
        client.bind_name(prefix + "unsealed", oid)
    buf.release()
    client.abort(oid)
    # Bytes that are not UTF-8 come back as they went in (surrogateescape).
    raw = prefix.encode() + b"\xff\xfe"
    client.bind_name(raw, a)
    got = client.lookup_name(raw)["name"]
    assert got.encode("utf-8", "surrogateescape") == raw
    assert client.lookup_name(got)["id"] == a
    # An error that names such a name is the gismo error, its bytes escaped
    # in the message (it was a UnicodeDecodeError).
    missing = prefix.encode() + b"nobody\xff"
    with pytest.raises(gismo.ObjectNotFound, match=r"nobody\\xff"):
        client.lookup_name(missing)
    with pytest.raises(gismo.ObjectNotFound):
        client.unbind_name(missing)
    with pytest.raises(gismo.Timeout):
        client.wait_name(missing, timeout_ms=0)


def test_names_outlive_the_manager(fresh_manager):
    with fresh_manager.connect() as c:
        a = put(c, b"kept")
        c.bind_name("kept", a)
    fresh_manager.proc.kill()
    fresh_manager.proc.wait()
    fresh_manager.restart()
    with fresh_manager.connect() as c:
        assert c.lookup_name("kept")["id"] == a
        assert c.get_bytes(c.lookup_name("kept")["id"]) == b"kept"


def test_wait_name(client, other, prefix):
    import threading
    a, b, c = put(client), put(client), put(client)
    name = prefix + "ckpt"
    # Unbound and nothing known: times out; bound: returns at once.
    with pytest.raises(gismo.Timeout):
        client.wait_name(name, None, timeout_ms=20)
    other.bind_name(name, a)
    assert client.wait_name(name, timeout_ms=0)["id"] == a
    with pytest.raises(gismo.Timeout):
        client.wait_name(name, a, timeout_ms=20)
    # Changed before the wait: at once, whatever the timeout.
    other.swap_name(name, a, b)
    got = client.wait_name(name, a, timeout_ms=-1)
    assert got["id"] == b and got["version"] == 2
    # Changed by another client while waiting.
    result = {}
    waiter = threading.Thread(
        target=lambda: result.update(client.wait_name(name, b, timeout_ms=60000)))
    waiter.start()
    other.swap_name(name, b, c)
    waiter.join(timeout=60)
    assert not waiter.is_alive() and result["id"] == c
    # Unbound: ObjectNotFound.
    other.unbind_name(name)
    with pytest.raises(gismo.ObjectNotFound):
        client.wait_name(name, c, timeout_ms=-1)
    with pytest.raises(gismo.InvalidArgument):
        client.wait_name("", None, timeout_ms=0)
