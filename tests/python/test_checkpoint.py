"""gismo.checkpoint: write, publish, restore by pointer, older generations
deleted, a writer killed mid-checkpoint leaves nothing visible or leaked, a
frozen writer that wins publishes whole, a publish whose outcome is unknown
deletes nothing, a cleanup cut short is finished by the next one, drop
removes a set (one whose manifest is corrupt too)."""

import gc
import signal
import struct
import time
import uuid

import numpy as np
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
        # Dropped without commit or abort: as if aborted.
        w = checkpoint.Writer(c, set_name)
        w.add_chunk(b"dropped")
        assert c.usage()["object_count"] == 5  # + its claim and chunk
        del w
        gc.collect()
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


@pytest.mark.parametrize("generation", [0, 2**62 + 1, 2**64 - 1])
def test_a_manifest_of_a_generation_out_of_range_is_corrupt(generation):
    raw = checkpoint.Manifest(generation, 2, [], b"").encode()
    with pytest.raises(gismo.BadRegion, match="generation"):
        checkpoint.Manifest.decode(raw)


def test_a_set_at_its_last_generation_takes_no_new_writer(fresh_manager,
                                                          set_name):
    """The next generation would be out of range (a manifest no reader
    accepts): the writer is refused before it writes anything."""
    with fresh_manager.connect() as client:
        last = checkpoint.MAX_GENERATION
        manifest = checkpoint.manifest_id(set_name, last, 9)
        client.put(manifest,
                   checkpoint.Manifest(last, 9, [], b"last").encode())
        client.bind_name(set_name, manifest)
        assert checkpoint.restore(client, set_name).generation == last
        objects = client.usage()["object_count"]
        with pytest.raises(gismo.LimitReached, match="last generation"):
            checkpoint.Writer(client, set_name)
        assert client.usage()["object_count"] == objects


def test_a_writer_takes_no_more_chunks_than_a_manifest_holds(
        fresh_manager, set_name, monkeypatch):
    """Past MAX_CHUNKS a chunk is refused (the manifest would be one no
    reader accepts, and its publish would delete the previous generation);
    the writer can still commit what it has. Metadata is bytes-like: an int
    is a TypeError, not that many zero bytes."""
    monkeypatch.setattr(checkpoint, "MAX_CHUNKS", 3)
    with fresh_manager.connect() as c:
        with checkpoint.Writer(c, set_name) as w:
            for k in range(3):
                w.add_chunk(b"c%d" % k)
            with pytest.raises(gismo.LimitReached, match="the most"):
                w.add_chunk(b"c3")
            for bad in (12, None):
                with pytest.raises(TypeError):
                    w.commit(bad)
            w.commit(bytearray(b"meta"))
        r = checkpoint.restore(c, set_name)
        assert len(r.chunks) == 3 and r.metadata == b"meta"


def test_a_writer_that_committed_or_aborted_writes_nothing(fresh_manager,
                                                          set_name):
    """Leaving `with` aborts: a commit after it would publish a manifest
    of deleted chunks and delete the previous generation."""
    with fresh_manager.connect() as c:
        w = checkpoint.Writer(c, set_name)
        w.add_chunk(b"first")
        w.commit()
        with pytest.raises(gismo.InvalidArgument, match="it committed"):
            w.add_chunk(b"more")
        with pytest.raises(gismo.InvalidArgument, match="it committed"):
            w.commit()
        with checkpoint.Writer(c, set_name) as late:
            late.add_chunk(b"second")
        with pytest.raises(gismo.InvalidArgument, match="aborted"):
            late.commit()
        with pytest.raises(gismo.InvalidArgument, match="aborted"):
            late.add_chunk(b"third")
        restored = checkpoint.restore(c, set_name)
        assert restored.generation == 1
        assert [b.tobytes() for b in restored.chunks] == [b"first"]
        for b in restored.chunks:
            b.release()
        assert c.usage()["object_count"] == 3  # chunk, manifest, claim


def test_add_chunk_checks_its_argument_before_storing(fresh_manager,
                                                       set_name):
    with fresh_manager.connect() as c:
        w = checkpoint.Writer(c, set_name)
        before = c.usage()["object_count"]
        with pytest.raises(TypeError):
            w.add_chunk(None)
        with pytest.raises(TypeError):
            w.add_chunk(np.zeros((3, 4), order="F"))
        assert c.usage()["object_count"] == before, "a chunk was stored"
        w.add_chunk(np.arange(12, dtype=np.uint8).reshape(3, 4))
        w.commit()
        r = checkpoint.restore(c, set_name)
        assert [b.tobytes() for b in r.chunks] == [bytes(range(12))]
        for b in r.chunks:
            b.release()


def _write(c, set_name, chunks, metadata=b""):
    w = checkpoint.Writer(c, set_name)
    for chunk in chunks:
        w.add_chunk(chunk)
    w.commit(metadata)
    return w


def test_a_swap_that_failed_but_was_applied_is_published(
        fresh_manager, set_name, monkeypatch):
    # In a non-coherent region the owner may answer a swap too late: once
    # the name is seen naming the writer's manifest, it is published.
    with fresh_manager.connect() as c:
        _write(c, set_name, [b"one"])
        real, calls = c.swap_name, []

        def swap(name, expected, desired):
            calls.append(desired)
            if len(calls) > 1:
                raise gismo.Conflict("a new request meets its own binding")
            real(name, expected, desired)
            raise gismo.Timeout("no answer in time")

        w = checkpoint.Writer(c, set_name)
        w.add_chunk(b"two")
        monkeypatch.setattr(c, "swap_name", swap)
        w.commit(b"two")
        monkeypatch.undo()
        w.abort()  # nothing to do: it committed
        r = checkpoint.restore(c, set_name)
        assert r.generation == 2 and r.metadata == b"two"
        for b in r.chunks:
            b.release()
        assert c.usage()["object_count"] == 3  # generation 1 went


def test_a_swap_whose_outcome_stays_unknown_keeps_the_writers_objects(
        fresh_manager, set_name, monkeypatch):
    with fresh_manager.connect() as c:
        _write(c, set_name, [b"one"])
        calls = []

        def swap(name, expected, desired):
            calls.append(desired)
            raise gismo.Timeout("no answer in time")

        with checkpoint.Writer(c, set_name) as w:
            w.add_chunk(b"a")
            w.add_chunk(b"b")
            monkeypatch.setattr(c, "swap_name", swap)
            with pytest.raises(gismo.Timeout, match="unknown"):
                w.commit(b"x")
            monkeypatch.undo()
        assert len(calls) > 1, "not asked again"
        # Its claim, two chunks and manifest stay: it may be published yet.
        assert c.usage()["object_count"] == 3 + 4
        assert checkpoint.restore(c, set_name).generation == 1
        # It was not: the next publish of generation 2 deletes them.
        assert _write(c, set_name, [b"two"]).generation == 2
        assert c.usage()["object_count"] == 3


def test_a_loser_whose_manifest_the_winner_deleted_gets_conflict(
        fresh_manager, set_name, monkeypatch):
    # The winner of the generation deleted the loser's manifest (its
    # cleanup) before the loser's swap ran: Conflict, not ObjectNotFound.
    with fresh_manager.connect() as c, fresh_manager.connect() as d:
        _write(c, set_name, [b"one"])
        winner = checkpoint.Writer(c, set_name)
        loser = checkpoint.Writer(d, set_name)
        winner.add_chunk(b"won")
        loser.add_chunk(b"lost")
        real = d.swap_name

        def swap(name, expected, desired):
            winner.commit(b"won")
            real(name, expected, desired)

        monkeypatch.setattr(d, "swap_name", swap)
        with pytest.raises(gismo.Conflict, match="published it first"):
            loser.commit(b"lost")
        monkeypatch.undo()
        loser.abort()
        r = checkpoint.restore(c, set_name)
        assert r.metadata == b"won"
        for b in r.chunks:
            b.release()


def test_a_commit_refused_for_now_can_be_tried_again(fresh_manager, set_name,
                                                     monkeypatch):
    # Its manifest is not put twice (that raised ObjectExists on every try),
    # and one with other metadata replaces it.
    with fresh_manager.connect() as c:
        _write(c, set_name, [b"one"])
        w = checkpoint.Writer(c, set_name)
        w.add_chunk(b"two")

        def busy(name, expected, desired):
            raise gismo.Busy("try again later")

        monkeypatch.setattr(c, "swap_name", busy)
        for _ in range(2):
            with pytest.raises(gismo.Busy):
                w.commit(b"first try")
        monkeypatch.undo()
        w.commit(b"second try")
        r = checkpoint.restore(c, set_name)
        assert (r.generation, r.metadata) == (2, b"second try")
        for b in r.chunks:
            b.release()
        assert c.usage()["object_count"] == 3


def test_a_manifest_deleted_outside_the_protocol_is_named(fresh_manager,
                                                          set_name):
    with fresh_manager.connect() as c:
        _write(c, set_name, [b"one"])
        c.delete(c.lookup_name(set_name)["id"])
        with pytest.raises(gismo.BadRegion, match="drop"):
            checkpoint.Writer(c, set_name)
        with pytest.raises(gismo.BadRegion, match="drop"):
            checkpoint.restore(c, set_name)
        checkpoint.drop(c, set_name)
        assert _write(c, set_name, [b"again"]).generation == 1


def _published_nonce(c, set_name):
    with c.get(c.lookup_name(set_name)["id"], 0) as buf:
        return checkpoint.Manifest.decode(buf.tobytes()).nonce


def test_a_cleanup_cut_short_leaves_nothing_behind(fresh_manager, set_name):
    # A cleanup that deleted chunk 0 and stopped (a forward delete stopped
    # by Busy, or killed) left the other chunks: the next cleanup finds
    # them through the manifest.
    with fresh_manager.connect() as c:
        _write(c, set_name, [b"1a", b"1b", b"1c"])
        assert c.usage()["object_count"] == 5
        nonce = _published_nonce(c, set_name)
        c.delete(checkpoint.chunk_id(set_name, 1, nonce, 0))
        assert _write(c, set_name, [b"2a"]).generation == 2
        assert not any(c.contains(checkpoint.chunk_id(set_name, 1, nonce, i))
                       for i in range(3))
        assert c.usage()["object_count"] == 3


def test_drop_removes_a_set_whose_manifest_is_corrupt_or_gone(fresh_manager,
                                                               set_name):
    with fresh_manager.connect() as c:
        _write(c, set_name, [b"1a", b"1b"])
        one = c.lookup_name(set_name)["id"]
        # Generation 2, whose manifest is corrupt (its metadata changed
        # after its checksum was computed), published.
        nonce = 77
        chunk = checkpoint.chunk_id(set_name, 2, nonce, 0)
        raw = bytearray(checkpoint.Manifest(2, nonce, [(chunk, 2, 0)],
                                            b"meta").encode())
        raw[-16] ^= 1
        c.put(checkpoint.claim_id(set_name, 2, 0), struct.pack("<Q", nonce))
        c.put(chunk, b"2a")
        two = checkpoint.manifest_id(set_name, 2, nonce)
        c.put(two, bytes(raw))
        c.swap_name(set_name, one, two)
        with pytest.raises(gismo.BadRegion):
            checkpoint.restore(c, set_name)
        with pytest.raises(gismo.BadRegion):
            checkpoint.Writer(c, set_name)
        checkpoint.drop(c, set_name)
        with pytest.raises(gismo.ObjectNotFound):
            c.lookup_name(set_name)
        # Its header names generation 2 and gives its id: everything goes.
        assert c.usage()["object_count"] == 0
        # Bound to an object that is no manifest of the set, or to one
        # deleted: unbound, and nothing else is found (that object stays).
        junk = gismo.ObjectID.from_name(f"{set_name}/junk")
        c.put(junk, b"not a manifest")
        c.bind_name(set_name, junk)
        checkpoint.drop(c, set_name)
        with pytest.raises(gismo.ObjectNotFound):
            c.lookup_name(set_name)
        assert c.usage()["object_count"] == 1
        c.bind_name(set_name, junk)
        c.delete(junk)
        checkpoint.drop(c, set_name)
        with pytest.raises(gismo.ObjectNotFound):
            c.lookup_name(set_name)
        assert _write(c, set_name, [b"again"]).generation == 1


def test_restore_of_more_chunks_than_a_client_may_hold_says_so(
        start_manager, set_name):
    # A restore holds a reference to each chunk: past the client's limit it
    # is LimitReached naming the chunk count, not a retried "kept changing".
    m = start_manager("--max-refs-per-client", "16")
    with m.connect() as c:
        w = checkpoint.Writer(c, set_name)
        for i in range(40):
            w.add_chunk(bytes([i]) * 8)
        w.commit()
        with pytest.raises(gismo.LimitReached, match="has 40 chunks"):
            checkpoint.restore(c, set_name)
        assert c.usage()["object_count"] == 42  # nothing held, nothing lost


def test_a_set_named_by_bytes_or_a_name_that_is_not_utf8(fresh_manager):
    """Ids derive from the name's bytes, as C++'s ChunkId/ManifestId/ClaimId
    from its std::string: "s" and b"s" are one set, and a name listed back
    with surrogate escapes (not UTF-8) is the set it names. drop() leaves
    nothing behind for either (it unbound the name, then failed or leaked
    the objects under ids of the name's repr)."""
    from_name = gismo.ObjectID.from_name
    assert checkpoint.claim_id(b"s", 3, 0) == from_name("s#3/intent")
    assert checkpoint.claim_id("s", 3, 2) == from_name("s#3/intent/2")
    assert checkpoint.chunk_id(b"s", 3, 7, 1) == from_name("s#3.7/chunk/1")
    assert checkpoint.manifest_id("s", 3, 7) == from_name("s#3.7/manifest")
    with pytest.raises(TypeError):
        checkpoint.claim_id(None, 1, 0)
    with fresh_manager.connect() as c:
        for name in (b"py-bytes-set", "py-set-\udcff"):
            _write(c, name, [b"one"])
            _write(c, name.decode() if isinstance(name, bytes) else name, [b"two"])
            r = checkpoint.restore(c, name)
            assert r.generation == 2 and r.chunks[0].tobytes() == b"two"
            del r
            checkpoint.drop(c, name)
        assert c.usage()["object_count"] == 0
        assert c.list_names() == []
