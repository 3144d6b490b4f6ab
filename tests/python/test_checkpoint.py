"""gismo.checkpoint: write, publish, restore by pointer, older generations
deleted, a writer killed mid-checkpoint leaves nothing visible or leaked, a
frozen writer that wins publishes whole, drop removes a set."""

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
        assert c.usage()["object_count"] == 3  # chunk, manifest, claim
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
        assert c.usage()["object_count"] == 3 + 3  # its claim, two chunks
        w = checkpoint.Writer(c, set_name)  # removes the leftovers
        w.add_chunk(b"next")
        w.commit(b"next")
        assert checkpoint.restore(c, set_name).metadata == b"next"
        assert c.usage()["object_count"] == 3


def test_frozen_writer_that_wins_publishes_whole(fresh_manager, set_name):
    with fresh_manager.connect() as c, fresh_manager.connect() as standby_c:
        w = checkpoint.Writer(c, set_name)
        w.add_chunk(b"one")
        w.commit(b"one")
        frozen = checkpoint.Writer(c, set_name)
        frozen.add_chunk(b"frozen-0")
        standby = checkpoint.Writer(standby_c, set_name)
        assert standby.generation == frozen.generation == 2
        standby.add_chunk(b"standby")
        frozen.add_chunk(b"frozen-1")  # it thaws, and publishes first
        frozen.commit(b"frozen")
        with pytest.raises(gismo.Conflict):
            standby.commit(b"standby")
        standby.abort()
        r = checkpoint.restore(standby_c, set_name)
        assert r.metadata == b"frozen"
        assert [b.tobytes() for b in r.chunks] == [b"frozen-0", b"frozen-1"]
        for b in r.chunks:
            b.release()
        assert c.usage()["object_count"] == 4  # two chunks, manifest, claim


def test_drop_removes_everything_and_full_claims_refuse(fresh_manager, set_name):
    with fresh_manager.connect() as c:
        checkpoint.drop(c, set_name)  # no such set: nothing to do
        for g in range(3):
            w = checkpoint.Writer(c, set_name)
            w.add_chunk(b"x" * (g + 1))
            w.commit()
        abandoned = checkpoint.Writer(c, set_name)
        abandoned.add_chunk(b"abandoned")
        for k in range(1, checkpoint.MAX_CLAIMS):  # every claim id taken
            c.put(checkpoint.claim_id(set_name, 4, k), k.to_bytes(8, "little"))
        with pytest.raises(gismo.Busy):
            checkpoint.Writer(c, set_name)
        checkpoint.drop(c, set_name)
        assert c.usage()["object_count"] == 0
        with pytest.raises(gismo.ObjectNotFound):
            c.lookup_name(set_name)
        abandoned.abort()  # finds nothing left to delete
        assert checkpoint.Writer(c, set_name).generation == 1


def test_corrupt_manifest_is_caught(client, set_name):
    m = checkpoint.Manifest(1, 2, [], b"meta")
    assert checkpoint.Manifest.decode(m.encode()) == m
    raw = bytearray(m.encode())
    raw[24] ^= 1
    with pytest.raises(gismo.BadRegion):
        checkpoint.Manifest.decode(raw)
    with pytest.raises(gismo.BadRegion):
        checkpoint.Manifest.decode(b"short")
