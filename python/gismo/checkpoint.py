"""Checkpoint sets: a state saved as objects and published by name, so that
a standby on another host restores it by pointer.

The same format and protocol as the C++ layer, include/gismo/checkpoint.hpp
(read its header comment for the whole story): a writer claims generation g
of set S with a claim object holding its nonce (the first free of
kMaxClaims claim ids), writes its chunks, seals a checksummed manifest last,
and publishes it by a compare-and-swap of the name S; of the writers of g
one wins, and it then deletes what the others wrote and generation g - 1.
Nothing a writer wrote is deleted before S has moved past g - 1, so a
frozen writer that thaws and wins publishes a whole checkpoint. Readers see
a whole generation or the one before.

    w = gismo.checkpoint.Writer(client, "trades/state")
    w.add_chunk(b"...")
    w.commit(b"offset=1234")

    r = gismo.checkpoint.restore(client, "trades/state")
    r.generation, r.metadata, [bytes(c) for c in r.chunks]
"""

import os
import struct
import typing

from . import _gismo
from .errors import (BadRegion, Busy, Error, ObjectExists, ObjectNotFound,
                     ObjectNotSealed, Timeout)

ObjectID = _gismo.ObjectID
checksum = _gismo._checkpoint_checksum

MANIFEST_MAGIC = 0x31544b43534d4947  # "GISMCKT1"
MAX_CHUNKS = 1 << 20
MAX_CLAIMS = 256


def _key(set_name, generation, nonce):
    return f"{set_name}#{generation}.{nonce}"


def chunk_id(set_name, generation, nonce, index):
    return ObjectID.from_name(f"{_key(set_name, generation, nonce)}/chunk/{index}")


def manifest_id(set_name, generation, nonce):
    return ObjectID.from_name(f"{_key(set_name, generation, nonce)}/manifest")


def claim_id(set_name, generation, k):
    suffix = f"/{k}" if k else ""
    return ObjectID.from_name(f"{set_name}#{generation}/intent{suffix}")


class Manifest(typing.NamedTuple):
    generation: int
    nonce: int
    chunks: list  # [(ObjectID, size, checksum)]
    metadata: bytes

    def encode(self):
        out = bytearray(struct.pack("<5Q", MANIFEST_MAGIC, self.generation,
                                    self.nonce, len(self.chunks),
                                    len(self.metadata)))
        for oid, size, check in self.chunks:
            out += oid.binary + bytes(4) + struct.pack("<2Q", size, check)
        out += self.metadata + bytes((8 - len(self.metadata) % 8) % 8)
        out += struct.pack("<Q", checksum(bytes(out)))
        return bytes(out)

    @classmethod
    def decode(cls, data):
        data = bytes(data)

        def bad(why):
            return BadRegion(f"checkpoint manifest is corrupt: {why}")
        if len(data) < 48 or len(data) % 8:
            raise bad(f"its size is {len(data)}")
        magic, generation, nonce, n, msize = struct.unpack_from("<5Q", data)
        if magic != MANIFEST_MAGIC:
            raise bad("wrong magic number")
        if struct.unpack_from("<Q", data, len(data) - 8)[0] != checksum(
                data[:-8]):
            raise bad("checksum mismatch")
        if (n > MAX_CHUNKS or msize > len(data)
                or 48 + n * 40 + (msize + 7) // 8 * 8 != len(data)):
            raise bad("its counts do not match its size")
        chunks, at = [], 40
        for _ in range(n):
            size, check = struct.unpack_from("<2Q", data, at + 24)
            chunks.append((ObjectID(data[at:at + 20]), size, check))
            at += 40
        return cls(generation, nonce, chunks, data[at:at + msize])


def _claims(client, set_name, generation):
    """[(k, nonce or None)] of the claims of `generation` (None: not 8
    bytes, so no writer's)."""
    claims = []
    for k in range(MAX_CLAIMS):
        oid = claim_id(set_name, generation, k)
        if not client.contains(oid):
            continue
        try:
            with client.get(oid, 0) as buf:
                raw = buf.tobytes()
        except (ObjectNotFound, Timeout):
            continue  # deleted since
        claims.append((k, struct.unpack("<Q", raw)[0] if len(raw) == 8
                       else None))
    return claims


def _delete_written(client, set_name, generation, nonce):
    """Deletes the chunks (up to the first missing) and the manifest of the
    writer of `generation` with `nonce`."""
    for i in range(MAX_CHUNKS):
        try:
            client.delete(chunk_id(set_name, generation, nonce, i))
        except ObjectNotFound:
            break
    _delete_quietly(client, manifest_id(set_name, generation, nonce))


def _delete_claims(client, set_name, generation, keep=None):
    """Deletes the claims of `generation`, each after what its writer wrote,
    but the writer with nonce `keep`. A claim whose objects cannot go yet
    (a chunk still being written) stays for a later cleanup. REQUIRES: S
    names `generation` or a later one."""
    for k, nonce in _claims(client, set_name, generation):
        if keep is not None and nonce == keep:
            continue
        try:
            if nonce is not None:
                _delete_written(client, set_name, generation, nonce)
        except ObjectNotSealed:
            continue
        _delete_quietly(client, claim_id(set_name, generation, k))


def _clean_up(client, set_name, generation, keep=None):
    """_delete_claims as a cleanup that need not finish: what it cannot
    delete now, a later Writer or commit deletes; a real failure shows in
    the caller's next call."""
    try:
        _delete_claims(client, set_name, generation, keep)
    except Error:
        pass


def _published(client, set_name):
    """(manifest id, manifest) of the published checkpoint, or None."""
    try:
        bound = client.lookup_name(set_name)
    except ObjectNotFound:
        return None
    with client.get(bound["id"], 0) as buf:
        return bound["id"], Manifest.decode(buf.tobytes())


class Writer:
    """Writes one checkpoint of a set: add_chunk()..., commit(metadata).
    Closed without commit (abort(), or leaving a `with` block), it deletes
    what it wrote."""

    def __init__(self, client, set_name):
        self._client, self._set = client, set_name
        self._committed = False
        self._claimed = False
        self._chunks = []
        pub = _published(client, set_name)
        self._previous = pub[0] if pub else None
        prev_gen = pub[1].generation if pub else 0
        self.generation = prev_gen + 1
        self.nonce = struct.unpack("<Q", os.urandom(8))[0]
        # Step 4 of the published generation, in case its winner died
        # before it (best effort: a loser still writing goes later).
        if pub:
            _clean_up(client, set_name, prev_gen, keep=pub[1].nonce)
            if prev_gen > 1:
                _clean_up(client, set_name, prev_gen - 1)
        nonce = struct.pack("<Q", self.nonce)
        for k in range(MAX_CLAIMS):
            try:
                client.put(claim_id(set_name, self.generation, k), nonce)
            except ObjectExists:
                continue  # another writer's
            self._claim = k
            self._claimed = True
            return
        raise Busy(f"generation {self.generation} of checkpoint {set_name!r} "
                   f"has {MAX_CLAIMS} claims and none was published: its "
                   "writers died or are still writing (once none runs, "
                   "drop() removes the set)")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.abort()

    def add_chunk(self, data):
        """Stores the next chunk (a copy of the bytes-like `data`)."""
        oid = chunk_id(self._set, self.generation, self.nonce,
                       len(self._chunks))
        self._client.put(oid, data)
        self._chunks.append((oid, len(memoryview(data).cast("B")),
                             checksum(data)))

    def commit(self, metadata=b""):
        """Seals the manifest, publishes it, then deletes what the other
        writers of this generation wrote and the previous generation.
        Raises Conflict (nothing published) if another writer published
        meanwhile."""
        manifest = Manifest(self.generation, self.nonce, self._chunks,
                            bytes(metadata))
        mid = manifest_id(self._set, self.generation, self.nonce)
        self._client.put(mid, manifest.encode())
        self._client.swap_name(self._set, self._previous, mid)
        self._committed = True
        _clean_up(self._client, self._set, self.generation, keep=self.nonce)
        if self._previous is not None:
            _clean_up(self._client, self._set, self.generation - 1)

    def abort(self):
        """Deletes what this writer wrote, unless it committed. Idempotent."""
        if self._committed or not self._claimed:
            return
        self._claimed = False
        for oid, _, _ in self._chunks:
            _delete_quietly(self._client, oid)
        _delete_quietly(self._client,
                        manifest_id(self._set, self.generation, self.nonce))
        # Its claim, if still its (a winner may have deleted it, and a
        # stale writer taken its k).
        claim = claim_id(self._set, self.generation, self._claim)
        try:
            with self._client.get(claim, 0) as buf:
                ours = buf.tobytes() == struct.pack("<Q", self.nonce)
        except (ObjectNotFound, Timeout):
            ours = False
        if ours:
            _delete_quietly(self._client, claim)


def drop(client, set_name):
    """Removes a set: unbinds its name, then deletes the published
    generation and the claimed ones beside it. Nothing to do if there is no
    such set. REQUIRES: no writer of the set runs."""
    pub = _published(client, set_name)
    gen = pub[1].generation if pub else 0
    if pub:
        try:
            client.unbind_name(set_name, pub[0])
        except ObjectNotFound:
            pass
    for g in range(gen + 1, max(gen - 2, 0), -1):
        _delete_claims(client, set_name, g)


def _delete_quietly(client, oid):
    try:
        client.delete(oid)
    except ObjectNotFound:
        pass


class Restored(typing.NamedTuple):
    """A restored checkpoint; `chunks` are gismo.Buffers viewing the region
    (zero copy), held until released."""
    generation: int
    metadata: bytes
    chunks: list


def restore(client, set_name, verify=True):
    """The newest published checkpoint of the set. Raises ObjectNotFound if
    none was published, BadRegion if a checksum does not match."""
    last = None
    for _ in range(16):
        bound = client.lookup_name(set_name)
        try:
            with client.get(bound["id"], 0) as buf:
                manifest = Manifest.decode(buf.tobytes())
        except (ObjectNotFound, Timeout) as e:
            last = e
            continue
        chunks = []
        try:
            for oid, size, check in manifest.chunks:
                buf = client.get(oid, 0)
                chunks.append(buf)
                if buf.size != size or (verify and
                                        checksum(memoryview(buf)) != check):
                    raise BadRegion(
                        f"checkpoint {set_name!r} generation "
                        f"{manifest.generation}: chunk {oid.hex()} does "
                        "not match its checksum")
        except (ObjectNotFound, Timeout) as e:
            for b in chunks:
                b.release()
            last = e
            continue
        except BaseException:
            for b in chunks:
                b.release()
            raise
        return Restored(manifest.generation, manifest.metadata, chunks)
    raise Busy(f"checkpoint {set_name!r} kept changing while being restored: "
               f"{last}")
