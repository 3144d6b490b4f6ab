"""Zero copy and the lifetime of Buffers and the views made from them."""

import ctypes
import gc
import io

import numpy as np
import pytest

import gismo


def in_view(view, address, size=1):
    base, length = view
    return base <= address and address + size <= base + length


def in_region(client, address, size=1):
    return in_view(client.region_read_view(), address, size) or in_view(
        client.region_mapping(), address, size)


def test_get_buffer_points_into_the_region(client, oid):
    client.put_bytes(oid, b"0123456789" * 100)
    buf = client.get(oid)
    # Into the read-only view, not the writable mapping.
    assert in_view(client.region_read_view(), buf.address, buf.size)
    assert not in_view(client.region_mapping(), buf.address, buf.size)
    view = memoryview(buf)
    array = np.frombuffer(buf, dtype=np.uint8)
    assert array.ctypes.data == buf.address
    assert np.frombuffer(view, dtype=np.uint8).ctypes.data == buf.address
    assert view.readonly and view.nbytes == 1000 and view.format == "B"


def test_create_view_points_into_the_region(client, oid):
    view = client.create(oid, 4096)
    array = np.frombuffer(view, dtype=np.uint8)
    address = array.ctypes.data
    assert in_region(client, address, 4096)
    array[:] = 7  # written in place: no copy on seal
    del array  # no writable alias may outlive the seal
    client.seal(oid)
    got = client.get(oid)
    assert bytes(got) == bytes([7]) * 4096
    client.release(oid)


def test_create_view_is_unusable_after_seal(client, oid):
    view = client.create(oid, 16)
    view[:] = b"x" * 16
    client.seal(oid)
    with pytest.raises(ValueError):
        view[0] = ord("y")  # the memoryview is released
    with pytest.raises(ValueError):
        bytes(view)
    got = client.get(oid)
    assert bytes(got) == b"x" * 16
    got.release()
    client.release(oid)


def test_seal_with_a_live_array_of_the_create_view_is_refused(client, oid):
    view = client.create(oid, 16)
    array = np.frombuffer(view, dtype=np.uint8)
    array[:] = 1
    with pytest.raises(gismo.ObjectInUse, match="delete them before sealing"):
        client.seal(oid)
    del array
    client.seal(oid)
    with pytest.raises(ValueError):
        view[0] = 2
    client.release(oid)


def test_a_view_made_from_a_released_create_view_still_holds_off_seal(
        client, oid):
    view = client.create(oid, 16)
    derived = view[:]
    view.release()  # the user's own release: `derived` stays writable
    with pytest.raises(gismo.ObjectInUse, match="delete them before sealing"):
        client.seal(oid)
    with pytest.raises(gismo.ObjectInUse, match="delete them before aborting"):
        client.abort(oid)
    derived[:] = b"x" * 16
    derived.release()
    client.seal(oid)
    with client.get(oid) as buf:
        assert buf.tobytes() == b"x" * 16
    client.release(oid)


def test_a_refused_delete_leaves_the_create_view_writable(client, oid):
    view = client.create(oid, 4)
    with pytest.raises(gismo.ObjectNotSealed):
        client.delete(oid)
    view[:] = b"abcd"
    client.seal(oid)
    with client.get(oid) as buf:
        assert buf.tobytes() == b"abcd"
    client.release(oid)


def test_create_view_is_unusable_after_abort(client, oid):
    view = client.create(oid, 16)
    client.abort(oid)
    with pytest.raises(ValueError):
        view[0] = 1


def test_create_view_cannot_be_exported_again_from_its_owner(client, oid):
    # memoryview(view.obj) would be a writable alias that outlives the seal
    # and, once the object is freed, writes into another object's memory.
    view = client.create(oid, 16)
    owner = view.obj
    for export in (memoryview, bytes, lambda o: np.frombuffer(o, np.uint8)):
        with pytest.raises(BufferError, match="create\\(\\) returned"):
            export(owner)
    derived = view[4:]  # views made from the tracked view still work
    derived[:] = b"y" * 12
    view[:4] = b"xxxx"
    del derived
    client.seal(oid)
    with pytest.raises(BufferError):
        memoryview(owner)
    client.release(oid)
    client.delete(oid)
    reused = gismo.ObjectID.random()
    client.put_bytes(reused, b"z" * 16)
    with pytest.raises(BufferError):
        memoryview(owner)[:] = bytes(16)
    assert client.get_bytes(reused) == b"z" * 16
    client.delete(reused)


def test_get_array_points_into_the_region(client, oid):
    client.put_array(oid, np.arange(1000, dtype=np.float64))
    array = client.get_array(oid)
    assert in_region(client, array.ctypes.data, array.nbytes)
    assert not array.flags.owndata


def test_writing_through_a_get_buffer_is_refused(client, oid):
    client.put_bytes(oid, b"immutable")
    buf = client.get(oid)
    view = memoryview(buf)
    with pytest.raises(TypeError):
        view[0] = ord("X")
    array = np.frombuffer(buf, dtype=np.uint8)
    assert not array.flags.writeable
    with pytest.raises(ValueError):
        array[0] = 1
    with pytest.raises(ValueError):
        array.setflags(write=True)
    with pytest.raises(TypeError, match="not writable"):
        (ctypes.c_char * 9).from_buffer(buf)
    with pytest.raises((TypeError, BufferError)):
        io.BytesIO(b"overwrite").readinto(buf)  # asks for a writable buffer
    assert (ctypes.c_char * 9).from_buffer_copy(buf).raw == b"immutable"
    arr = client.get_array(_put_array(client))
    with pytest.raises(ValueError):
        arr[0] = 1
    assert bytes(buf) == b"immutable"


def _put_array(client):
    oid = gismo.ObjectID.random()
    client.put_array(oid, np.ones(8))
    return oid


def test_array_outlives_its_buffer_object(client, oid):
    client.put_bytes(oid, bytes(range(256)))
    buf = client.get(oid)
    array = np.frombuffer(buf, dtype=np.uint8)
    view = memoryview(buf)[10:20]
    del buf
    gc.collect()
    assert client.stat(oid)["refs"] == 1  # the views keep the reference
    assert array[255] == 255 and view[0] == 10
    del array
    assert client.stat(oid)["refs"] == 1
    del view  # the last view goes: the reference is given back
    assert client.stat(oid)["refs"] == 0


def test_get_array_holds_the_reference(client, oid):
    client.put_array(oid, np.arange(10))
    array = client.get_array(oid)
    assert client.stat(oid)["refs"] == 1
    part = array[2:5]
    del array
    gc.collect()
    assert client.stat(oid)["refs"] == 1
    assert part.tolist() == [2, 3, 4]
    del part
    assert client.stat(oid)["refs"] == 0


def test_release_waits_for_the_last_view(client, oid):
    client.put_bytes(oid, b"abcdef")
    buf = client.get(oid)
    array = np.frombuffer(buf, dtype=np.uint8)
    buf.release()  # views exist: given back when they are gone
    assert buf.released
    assert client.stat(oid)["refs"] == 1
    assert array.tobytes() == b"abcdef"
    with pytest.raises(BufferError, match="released"):
        memoryview(buf)  # no new views once released
    with pytest.raises(gismo.InvalidArgument, match="released"):
        buf.tobytes()
    del array
    assert client.stat(oid)["refs"] == 0


def test_buffer_context_manager(client, oid):
    client.put_bytes(oid, b"ctx")
    with client.get(oid) as buf:
        assert bytes(buf) == b"ctx"
        assert client.stat(oid)["refs"] == 1
    assert buf.released and client.stat(oid)["refs"] == 0


def test_deleted_object_stays_readable_through_a_view(client, oid):
    client.put_array(oid, np.full(100000, 3, dtype=np.int32))
    array = client.get_array(oid)
    client.delete(oid)
    assert not client.contains(oid)
    assert client.stat(oid)["state"] == "deleting"
    assert int(array.sum()) == 300000
    del array
    with pytest.raises(gismo.ObjectNotFound):
        client.stat(oid)


def test_close_keeps_the_mapping_for_live_buffers(manager, client, oid):
    client.put_array(oid, np.arange(1000))
    c = manager.connect()
    slot = c.identity()[1]
    array = c.get_array(oid)
    buf = c.get(oid)
    c.close()
    with pytest.raises(gismo.InvalidArgument, match="closed"):
        c.get(oid, 0)
    assert int(array.sum()) == 499500  # still mapped
    assert client.stat(oid)["refs"] == 2
    del array, buf
    gc.collect()
    # The last one gone: the connection is closed and its references dropped.
    assert client.stat(oid)["refs"] == 0
    assert slot not in [i["client"] for i in client.list_clients()]


def test_many_views_of_many_objects(client):
    ids = [gismo.ObjectID.random() for _ in range(50)]
    for i, oid in enumerate(ids):
        client.put_array(oid, np.full(16, i, dtype=np.int16))
    arrays = [client.get_array(oid) for oid in ids]
    assert [int(a[0]) for a in arrays] == list(range(50))
    assert all(client.stat(oid)["refs"] == 1 for oid in ids)
    arrays.clear()
    assert all(client.stat(oid)["refs"] == 0 for oid in ids)
