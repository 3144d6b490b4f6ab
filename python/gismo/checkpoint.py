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
from ._names import name_bytes
from .errors import (BadRegion, Busy, Conflict, Error, InvalidArgument,
                     LimitReached, ObjectExists, ObjectNotFound,
                     ObjectNotSealed, Status, Timeout)

ObjectID = _gismo.ObjectID
checksum = _gismo._checkpoint_checksum

MANIFEST_MAGIC = 0x31544b43534d4947  # "GISMCKT1"
MAX_CHUNKS = 1 << 20
MAX_CLAIMS = 256
# Generations run from 1; a manifest (or its header) naming 0 or one above
# this is corrupt, so the next generation never overflows.
MAX_GENERATION = 1 << 62
# A failed swap_name with one of these may still be applied: in a
# non-coherent region the owner did not answer in time (the same request
# asked again as the client's next call waits for its outcome), or the
# answer was lost.
_OUTCOME_UNKNOWN = frozenset({Status.TIMEOUT, Status.CONNECTION, Status.IO,
                              Status.PROTOCOL, Status.INTERNAL})
_SWAP_ATTEMPTS = 3  # how many times a publish asks while that is so


def _name_bytes(set_name):
    """A set's name as the bytes its ids derive from, as C++ derives them
    from its std::string."""
    return name_bytes(set_name, "a checkpoint set's name")


def _key(set_name, generation, nonce):
    return b"%s#%d.%d" % (_name_bytes(set_name), generation, nonce)


def chunk_id(set_name, generation, nonce, index):
    return ObjectID.from_name(b"%s/chunk/%d" % (_key(set_name, generation, nonce), index))


def manifest_id(set_name, generation, nonce):
    return ObjectID.from_name(_key(set_name, generation, nonce) + b"/manifest")


def claim_id(set_name, generation, k):
    suffix = b"/%d" % k if k else b""
    return ObjectID.from_name(b"%s#%d/intent%s" % (_name_bytes(set_name), generation, suffix))


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
        if not 0 < generation <= MAX_GENERATION:
            raise bad(f"its generation {generation} is out of range")
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
    """Deletes what the writer of `generation` with `nonce` wrote: its
    chunks, the highest first, then its manifest. The chunks that exist are
    a prefix 0..j (as in the C++ DeleteWritten); the count deleted is the
    larger of that prefix's and the chunk count of the writer's manifest, if
    it decodes. Only the ids of (set, generation, nonce, i) are deleted,
    never ids a manifest lists. Raises ObjectNotSealed, deleting nothing, if
    a chunk is still being written."""
    n = 0
    while n < MAX_CHUNKS:
        oid = chunk_id(set_name, generation, nonce, n)
        try:
            state = client.stat(oid)["state"]
        except ObjectNotFound:
            break
        if state == "unsealed":
            raise ObjectNotSealed(
                f"checkpoint chunk {oid.hex()} is still being written")
        if state != "sealed":
            break  # deleted, still held
        n += 1
    mid = manifest_id(set_name, generation, nonce)
    try:
        with client.get(mid, 0) as buf:
            manifest = Manifest.decode(buf.tobytes())
        if (manifest.generation, manifest.nonce) == (generation, nonce):
            n = max(n, len(manifest.chunks))
    except (ObjectNotFound, Timeout, BadRegion):
        pass
    for i in reversed(range(n)):
        _delete_quietly(client, chunk_id(set_name, generation, nonce, i))
    _delete_quietly(client, mid)


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


# How many times a reader looks the name up again when the manifest it
# names went meanwhile (each time, a newer publish deleted it).
_LOOKUP_ATTEMPTS = 16


def _manifest_gone(set_name, mid):
    """A set whose name is bound to a manifest that is gone: not a race (a
    publish binds the name to its own manifest before it deletes the one
    before), so it stays so until drop()."""
    return BadRegion(f"checkpoint set {set_name!r} is bound to manifest "
                     f"{mid.hex()}, which is gone (deleted outside the "
                     "checkpoint protocol?): drop() removes the set")


def _published(client, set_name):
    """(manifest id, manifest) of the published checkpoint, or None."""
    missing, last = None, None
    for _ in range(_LOOKUP_ATTEMPTS):
        try:
            mid = client.lookup_name(set_name)["id"]
        except ObjectNotFound:
            return None
        if mid == missing:
            raise _manifest_gone(set_name, mid)
        try:
            with client.get(mid, 0) as buf:
                return mid, Manifest.decode(buf.tobytes())
        except (ObjectNotFound, Timeout) as e:
            missing, last = mid, e  # a newer publish deleted it: look again
    raise Busy(f"checkpoint {set_name!r} kept changing while it was looked "
               f"up: {last}")


def _generation_of(client, set_name, mid):
    """The generation of `mid`, the manifest `set_name` is bound to, or None
    if it is gone or tells nothing (as the C++ GenerationOf: one that does
    not decode still tells it if its header's generation and nonce give
    `mid`)."""
    try:
        with client.get(mid, 0) as buf:
            raw = buf.tobytes()
    except (ObjectNotFound, Timeout):
        return None
    try:
        return Manifest.decode(raw).generation
    except BadRegion:
        pass
    if len(raw) < 24:
        return None
    generation, nonce = struct.unpack_from("<2Q", raw, 8)
    if (0 < generation <= MAX_GENERATION
            and manifest_id(set_name, generation, nonce) == mid):
        return generation
    return None


def _publish(client, set_name, expected, mid):
    """Publishes manifest `mid` as `set_name` by a compare-and-swap from
    `expected` (None: only if unbound), asked again at once while its
    outcome is unknown. Returns (None, False) if published: a swap succeeded
    or the name names `mid` after the last one; else (the last swap's
    error, whether the outcome is unknown: False only for a sure refusal
    such as Conflict, another writer published)."""
    unknown = False
    for _ in range(_SWAP_ATTEMPTS):
        try:
            client.swap_name(set_name, expected, mid)
            return None, False
        except Error as e:
            error = e
            if e.status not in _OUTCOME_UNKNOWN:
                break
            unknown = True
    try:
        if client.lookup_name(set_name)["id"] == mid:
            return None, False
        looked = True
    except ObjectNotFound:
        looked = True
    except Error:
        looked = False
    return error, (error.status in _OUTCOME_UNKNOWN
                   or (unknown and not looked))


class Writer:
    """Writes one checkpoint of a set: add_chunk()..., commit(metadata).
    Closed without commit (abort(), leaving a `with` block, or dropped as
    garbage), it deletes what it wrote, unless whether its commit published
    it is unknown."""

    def __init__(self, client, set_name):
        self._client, self._set = client, set_name
        self._committed = False
        self._claimed = False
        self._kept = False  # its publish's outcome is unknown
        self._put = None  # the manifest's bytes, once stored
        self._chunks = []
        pub = _published(client, set_name)
        self._previous = pub[0] if pub else None
        prev_gen = pub[1].generation if pub else 0
        if prev_gen >= MAX_GENERATION:
            raise LimitReached(
                f"checkpoint set {set_name!r} is at its last generation "
                f"({MAX_GENERATION}): start a new set")
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

    def __del__(self):
        # Dropped without commit or abort: what it wrote goes, as with the
        # C++ Writer's destructor. Best effort (its client may be closed, the
        # interpreter ending); the cleanup after the next publish deletes
        # whatever stays, through its claim.
        try:
            self.abort()
        except Exception:  # whatever it was, a finalizer raises nothing
            pass

    def _check_open(self, doing):
        """InvalidArgument unless this writer may still write: not
        aborted, not committed, its commit's outcome not unknown."""
        why = ("it committed" if self._committed else
               "its commit's outcome is unknown" if self._kept else
               "it was aborted" if not self._claimed else None)
        if why is not None:
            raise InvalidArgument(
                f"checkpoint {self._set!r} generation {self.generation}: "
                f"cannot {doing}, {why}; begin a new Writer")

    def add_chunk(self, data):
        """Stores the next chunk: a copy of `data`, a C-contiguous
        bytes-like object. Raises TypeError, storing nothing, for anything
        else (None, or a buffer in another layout such as a Fortran-ordered
        array: numpy.ascontiguousarray copies it into C order), and
        InvalidArgument once the writer committed or was aborted (leaving a
        `with` block aborts it). Raises LimitReached past MAX_CHUNKS chunks
        (a manifest of more is one no reader accepts)."""
        self._check_open("add a chunk")
        if len(self._chunks) >= MAX_CHUNKS:
            raise LimitReached(
                f"checkpoint {self._set!r} has {len(self._chunks)} chunks, "
                f"the most a manifest holds ({MAX_CHUNKS})")
        if data is None:
            raise TypeError("a checkpoint chunk must be a bytes-like object, "
                            "not None")
        with memoryview(data) as view:
            if not view.c_contiguous:
                raise TypeError(
                    "a checkpoint chunk must be C-contiguous "
                    "(numpy.ascontiguousarray copies it into C order)")
            size = view.nbytes
        check = checksum(data)
        oid = chunk_id(self._set, self.generation, self.nonce,
                       len(self._chunks))
        self._client.put(oid, data)
        self._chunks.append((oid, size, check))

    def commit(self, metadata=b""):
        """Seals the manifest, publishes it, then deletes what the other
        writers of this generation wrote and the previous generation.
        Raises Conflict (nothing published) if another writer published
        meanwhile. If whether it was published stays unknown (a swap that
        timed out, asked again in vain), the error raised says so and
        abort() deletes nothing: if it was not published, the cleanup after
        the next publish deletes its objects through its claim. Raises
        InvalidArgument once the writer committed or was aborted."""
        self._check_open("commit")
        if metadata is None or isinstance(metadata, int):
            # bytes(12) would be 12 zero bytes, bytes(10**12) a terabyte.
            raise TypeError("checkpoint metadata must be a bytes-like "
                            f"object, not {type(metadata).__name__}")
        with memoryview(metadata) as view:
            metadata = view.tobytes()
        manifest = Manifest(self.generation, self.nonce, self._chunks,
                            metadata)
        mid = manifest_id(self._set, self.generation, self.nonce)
        encoded = manifest.encode()
        # A commit tried again after a refused swap (Busy, LimitReached...)
        # puts its manifest again only if its metadata changed.
        if self._put is not None and self._put != encoded:
            _delete_quietly(self._client, mid)
            self._put = None
        if self._put is None:
            self._client.put(mid, encoded)
            self._put = encoded
        error, unknown = _publish(self._client, self._set, self._previous,
                                  mid)
        if error is not None:
            if not unknown:
                # The swap found no manifest: the winner of this generation
                # deleted this loser's (its cleanup) after it published.
                if (isinstance(error, ObjectNotFound)
                        and not self._client.contains(mid)):
                    raise Conflict(
                        f"checkpoint {self._set!r} generation "
                        f"{self.generation}: another writer published it "
                        "first (and deleted this writer's manifest)") from error
                raise error  # abort() deletes this writer's objects
            self._kept = True
            raise type(error)(
                f"checkpoint {self._set!r} generation {self.generation}: "
                f"whether it was published is unknown ({error}); its objects "
                "were kept (if it was not published, the cleanup after the "
                "next publish deletes them)") from error
        self._committed = True
        _clean_up(self._client, self._set, self.generation, keep=self.nonce)
        if self._previous is not None:
            _clean_up(self._client, self._set, self.generation - 1)

    def abort(self):
        """Deletes what this writer wrote, the highest chunk first, unless it
        committed or its commit's outcome is unknown. Idempotent; after an
        error, calling it again goes on (or the cleanup after the next
        publish does, through its claim)."""
        if self._committed or self._kept or not self._claimed:
            return
        for oid, _, _ in reversed(self._chunks):
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
        self._claimed = False


def drop(client, set_name):
    """Removes a set: unbinds its name, then deletes the published
    generation and the claimed ones beside it. Nothing to do if there is no
    such set. A name bound to a manifest that cannot be read or decoded is
    unbound all the same, and the generation taken from the manifest's
    header if the generation and nonce there give its id. Otherwise (the
    manifest is gone, its header is corrupt too, or it is no manifest of the
    set) the generation is unknown, and so are the ids of the claims,
    chunks and manifests to delete: those stay, and so does the object the
    name was bound to. REQUIRES: no writer of the set runs."""
    try:
        mid = client.lookup_name(set_name)["id"]
    except ObjectNotFound:
        mid = None
    gen = 0
    if mid is not None:
        gen = _generation_of(client, set_name, mid)
        try:
            client.unbind_name(set_name, mid)
        except ObjectNotFound:
            pass
        if gen is None:
            return
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
    none was published, BadRegion if a checksum does not match,
    LimitReached if it has more chunks than this client may hold references
    (the manager's --max-refs-per-client: write fewer, larger chunks)."""
    last, missing = None, None
    for _ in range(_LOOKUP_ATTEMPTS):
        mid = client.lookup_name(set_name)["id"]
        try:
            with client.get(mid, 0) as buf:
                manifest = Manifest.decode(buf.tobytes())
        except (ObjectNotFound, Timeout) as e:
            if mid == missing:
                raise _manifest_gone(set_name, mid) from e
            missing, last = mid, e
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
        except LimitReached as e:
            for b in chunks:
                b.release()
            raise LimitReached(
                f"checkpoint {set_name!r} generation {manifest.generation} "
                f"has {len(manifest.chunks)} chunks, and a restore holds a "
                f"reference to each: {e}") from e
        except BaseException:
            for b in chunks:
                b.release()
            raise
        return Restored(manifest.generation, manifest.metadata, chunks)
    raise Busy(f"checkpoint {set_name!r} kept changing while being restored: "
               f"{last}")
