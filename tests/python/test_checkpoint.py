"""gismo.checkpoint: write, publish, restore by pointer, older generations
deleted, a writer killed mid-checkpoint leaves nothing visible or leaked."""

import signal
import time
import uuid

import pytest

import gismo
from gismo import checkpoint


@pytest.fixture
def set_name():
    return f"py-ckpt-{uuid.uuid4().hex[:8]}"


def test_write_restore_replace(client, other, set_name):
    with pytest.raises(gismo.ObjectNotFound):
        checkpoint.restore(other, set_name)
    w = checkpoint.Writer(client, set_name)
    w.add_chunk(b"alpha")
    w.add_chunk(bytearray(b"b" * 100000))
    w.commit(b"offset=42")
    r = checkpoint.restore(other, set_name)
    assert r.generation == 1 and r.metadata == b"offset=42"
    assert [c.size for c in r.chunks] == [5, 100000]
    assert r.chunks[0].tobytes() == b"alpha"
    w = checkpoint.Writer(client, set_name)
    w.add_chunk(b"second")
    w.commit(b"offset=43")
    # The holder of generation 1 keeps it; a new restore sees generation 2.
    assert r.chunks[0].tobytes() == b"alpha"
    r2 = checkpoint.restore(other, set_name)
    assert r2.generation == 2 and r2.chunks[0].tobytes() == b"second"


def test_older_generations_and_aborts_leave_nothing(fresh_manager, set_name):
    with fresh_manager.connect() as c:
        for g in range(1, 6):
            w = checkpoint.Writer(c, set_name)
            w.add_chunk(b"x" * g)
            w.commit()
        assert c.usage()["object_count"] == 3  # chunk, manifest, intent
        with checkpoint.Writer(c, set_name) as w:
            w.add_chunk(b"never published")
        assert c.usage()["object_count"] == 3
        assert checkpoint.restore(c, set_name).generation == 5


KILLED_WRITER = """
import os, signal, sys, gismo
from gismo import checkpoint
c = gismo.connect(sys.argv[1])
w = checkpoint.Writer(c, sys.argv[2])
w.add_chunk(b"new-0")
w.add_chunk(b"new-1")
c.create(checkpoint.chunk_id(sys.argv[2], w.generation, w.nonce, 2), 100)
print("mid-checkpoint", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_writer_killed_mid_checkpoint(fresh_manager, run_python, set_name):
    with fresh_manager.connect() as c:
        w = checkpoint.Writer(c, set_name)
        w.add_chunk(b"old")
        w.commit(b"old")
        p = run_python(KILLED_WRITER, fresh_manager.address, set_name)
        assert p.stdout.readline().strip() == "mid-checkpoint"
        assert p.wait(timeout=30) == -signal.SIGKILL
        r = checkpoint.restore(c, set_name)
        assert r.generation == 1 and r.metadata == b"old"
        for b in r.chunks:
            b.release()
        # Its recovery aborts the unsealed chunk; the sealed ones stay.
        deadline = time.monotonic() + 30
        while c.usage()["client_count"] > 1:
            assert time.monotonic() < deadline, "the writer was not recovered"
            time.sleep(0.001)
        assert c.usage()["object_count"] == 3 + 3  # its intent, two chunks
        w = checkpoint.Writer(c, set_name)  # removes the leftovers
        w.add_chunk(b"next")
        w.commit(b"next")
        assert checkpoint.restore(c, set_name).metadata == b"next"
        assert c.usage()["object_count"] == 3


def test_corrupt_manifest_is_caught(client, set_name):
    m = checkpoint.Manifest(1, 2, [], b"meta")
    assert checkpoint.Manifest.decode(m.encode()) == m
    raw = bytearray(m.encode())
    raw[24] ^= 1
    with pytest.raises(gismo.BadRegion):
        checkpoint.Manifest.decode(raw)
    with pytest.raises(gismo.BadRegion):
        checkpoint.Manifest.decode(b"short")
