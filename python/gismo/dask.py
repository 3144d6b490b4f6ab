"""Dask workers that hand large results to each other through gismo.

Three lines turn it on for a LocalCluster:

    import gismo.dask
    from dask.distributed import Client, LocalCluster
    client = Client(LocalCluster(**gismo.dask.worker_options()))

and for workers started by hand on each node (``$GISMO_ADDRESS`` naming the
node's manager, as for any gismo client):

    dask-worker --preload gismo.dask tcp://scheduler:8786

Task code does not change. What happens:

* **Results.** A worker's ``data`` mapping (GismoData) pickles each task
  result with protocol 5; when its out-of-band buffers add up to
  ``threshold`` bytes or more (64 KiB by default), they are copied once into
  one gismo object created *owned* by the worker (GISMO_CREATE_OWNED), and
  the value kept in the mapping is rebuilt from the object: read-only numpy
  buffers in the shared region, no private copy. A value whose buffers
  already lie in objects this worker maps (one received from a peer, or a
  view of one) is kept as it is.
* **Transfers.** The serialization family ``"gismo"`` answers a peer whose
  comm handshake says it maps the same region (``gismo-region``: the
  region's uuid, which gismo draws at format): what travels is the
  region id, each buffer's object id, offset and length, and the in-band
  pickle. The peer takes a reference on each object and calls
  ``pickle.loads(buffers=...)`` on read-only views of it (Dask's own pickle
  family would copy read-only buffers). Anyone else (a worker of another
  pool, a client on a laptop, the scheduler) gets Dask's normal bytes; a
  worker logs once per peer that it sends bytes and why.
* **Lifetime.** When Dask forgets a key on the worker that produced it, the
  worker deletes its object as soon as no process holds a reference to it
  any more. Until then peers that hold the value (replicas the scheduler
  still counts, which Dask's active memory manager may keep while it drops
  the producer's) can still serve it by reference; a background sweep
  deletes it once the last reader has released. A peer's value holds
  references that are released when it is garbage. A worker that exits or
  dies takes its owned objects with it: the gismo manager deletes them when
  it recovers the worker's client. Dask recomputes what was lost.
* **A reference that arrives too late** (its object was deleted between the
  sender's check and the receiver's get) is treated as a lost replica: the
  receiver logs it and fails the transfer the way a broken connection
  does, so Dask fetches the key again, and the sender, which now sees the
  object gone, sends bytes (or the scheduler recomputes it).
* **A receiver that holds all the references it may**
  (``gismo-manager --max-refs-per-client``: its get fails with
  LimitReached) fails the transfer the same way, and for the next
  ``_REFS_FULL_SECONDS`` it does not say in its handshakes that it maps
  the region: peers that connect to it, the sender of the fetch Dask
  retries included, send it bytes. Any other error of the receiver's get
  fails the transfer with that error.
* **Full region** (or a limit reached, a manager restarting: any gismo
  error while storing a result; or a value that cannot be rebuilt from the
  object, whose object is then deleted). The result stays in the worker's
  memory and travels as bytes; the worker logs that once per kind of error.

Values taken from the region are read-only: a task that writes into its
input in place (``x += 1`` on an argument) fails, as it would on any
read-only array; copy first. GismoData does not spill to disk.
"""

import bisect
import collections
import functools
import logging
import os
import pickle
import threading
import time
import weakref
from collections.abc import MutableMapping

import gismo

FAMILY = "gismo"
SERIALIZERS = [FAMILY, "dask", "pickle", "error"]
HANDSHAKE_KEY = "gismo-region"
DEFAULT_THRESHOLD = 64 * 1024
_ALIGN = 64
_MAX_METADATA = 8 << 20  # the in-band pickle travels in the object's metadata
_SWEEP_SECONDS = 0.2  # how often forgotten objects still held are looked at
_REFS_FULL_SECONDS = 5.0  # a receiver at its reference limit takes bytes this long


class ReferenceGone(EOFError):
    """A reference whose object was deleted before the receiver got it."""


class ReceiverFull(EOFError):
    """A reference that the receiver cannot take: it holds as many
    references as its client may. As an EOFError it makes Dask abort the
    connection and fetch again, over a new one whose handshake asks for
    bytes."""

# Dask's worker logger: its lines are in the worker's log (get_worker_logs).
logger = logging.getLogger("distributed.worker")

__all__ = ["FAMILY", "SERIALIZERS", "GismoData", "worker_options", "dask_setup",
           "enable", "region_id", "stats", "ReferenceGone", "ReceiverFull"]


def _timed(counter):
    """Adds the decorated call's wall time to the process's counter."""
    def decorate(f):
        @functools.wraps(f)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                _process.counts[counter] += time.perf_counter() - t0
        return timed
    return decorate


def _address_of(view):
    """The address of a contiguous buffer (read-only ones included)."""
    import numpy as np
    return np.frombuffer(view, dtype=np.uint8).ctypes.data if view.nbytes else 0


class _Process:
    """This process's gismo side: one client, the region's id, and the
    objects it maps (address spans, for the serializer to name them)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.client = None
        self.region = None
        self.threshold = DEFAULT_THRESHOLD
        self.starts = []  # sorted span starts
        self.spans = {}   # start -> (end, ObjectID, token)
        self.token = 0
        # (start, token) of Buffers that are gone, queued by their finalizers
        # (which may run in garbage collection while this thread holds the
        # lock) and forgotten by the next holder of the lock.
        self.gone = collections.deque()
        self.warned = set()
        self.pending = {}  # hex -> ObjectID: forgotten, deleted once unreferenced
        self.sweeper = None
        self.refs_full_until = 0.0  # time.monotonic(): until then, bytes wanted
        self.counts = {"stored": 0, "stored_bytes": 0, "sent_refs": 0,
                       "sent_ref_bytes": 0, "received_refs": 0,
                       "received_ref_bytes": 0, "fallbacks": 0,
                       "deferred_deletes": 0, "late_refs": 0, "refs_full": 0,
                       # seconds spent copying results in, and sending and
                       # receiving references (what gismo.dask adds to a task)
                       "store_seconds": 0.0, "send_seconds": 0.0, "receive_seconds": 0.0}

    @property
    def enabled(self):
        return self.client is not None

    def enable(self, address=None, threshold=DEFAULT_THRESHOLD):
        with self.lock:
            self.threshold = int(threshold)
            if self.client is None:
                client = gismo.connect(address)
                usage = client.usage()
                self.region = usage["region_uuid"]
                self.client = client
        return self.region

    def advertised_region(self):
        """The region this process's handshakes name: its own, or None
        (peers send bytes) while it is at its reference limit."""
        if not self.enabled or time.monotonic() < self.refs_full_until:
            return None
        return self.region

    def warn_once(self, what, message, *args):
        with self.lock:
            if what in self.warned:
                return
            self.warned.add(what)
        logger.warning(message, *args)

    # -- the objects mapped here -------------------------------------------
    def register(self, buf):
        """Notes a Buffer's span until the Buffer (and every view) is gone.
        Several Buffers of one object share its span, which stays until the
        last of them is gone (a span is [end, id, token, live Buffers])."""
        start, end = buf.address, buf.address + buf.size
        with self.lock:
            self._forget_gone()
            span = self.spans.get(start)
            if span is not None and span[0] == end and span[1] == buf.id:
                span[3] += 1
                token = span[2]
            else:
                self.token += 1
                token = self.token
                if span is None:
                    bisect.insort(self.starts, start)
                self.spans[start] = [end, buf.id, token, 1]
        weakref.finalize(buf, self.gone.append, (start, token))

    def _forget_gone(self):
        """Drops the spans whose Buffers are all gone (with the lock held)."""
        while self.gone:
            start, token = self.gone.popleft()
            span = self.spans.get(start)
            if span is None or span[2] != token:
                continue  # a newer object at the same place
            span[3] -= 1
            if span[3] > 0:
                continue  # another Buffer of the object still maps it
            del self.spans[start]
            i = bisect.bisect_left(self.starts, start)
            if i < len(self.starts) and self.starts[i] == start:
                del self.starts[i]

    def lookup(self, address, nbytes):
        """(ObjectID, offset) of the mapped object holding the whole range."""
        with self.lock:
            self._forget_gone()
            i = bisect.bisect_right(self.starts, address) - 1
            if i < 0:
                return None
            start = self.starts[i]
            end, oid = self.spans[start][:2]
            if address + nbytes > end:
                return None
            return oid, address - start

    def still_sealed(self, oid):
        """Whether a peer can still get `oid` (an object deleted while this
        process holds it stays readable here, but nobody can get it again)."""
        try:
            return self.client.stat(oid)["state"] == "sealed"
        except gismo.Error:
            return False

    # -- results -----------------------------------------------------------
    @_timed("store_seconds")
    def store(self, value):
        """(value to keep, ObjectID it owns or None)."""
        buffers = []
        try:
            main = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        except Exception:  # not picklable this way: Dask's own path
            return value, None
        raws = [b.raw() for b in buffers]
        total = sum(r.nbytes for r in raws)
        if total < self.threshold:
            return value, None
        if all(self.lookup(_address_of(r), r.nbytes) for r in raws):
            return value, None  # already in the region
        layout, offset = [], 0
        for r in raws:
            layout.append((offset, r.nbytes, r.readonly))
            offset += (r.nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
        metadata = pickle.dumps((main, layout), protocol=5)
        if len(metadata) > _MAX_METADATA:
            return value, None
        oid = gismo.ObjectID.random()
        client = self.client
        try:
            view = client.create(oid, max(offset, 1), metadata, owned=True)
        except gismo.Error as e:  # full, a limit, the manager restarting...
            return self._keep_in_memory(value, e)
        sealed, creator_holds, buf = False, True, None
        try:
            for r, (off, n, _) in zip(raws, layout):
                view[off:off + n] = r.cast("B")
            del view
            client.seal(oid)
            sealed = True
            buf = client.get(oid, timeout_ms=0)
            client.release(oid)  # the creator's reference; `buf` holds one
            creator_holds = False
        except BaseException as e:
            self._discard(oid, sealed, creator_holds, buf)
            if isinstance(e, gismo.Error):
                return self._keep_in_memory(value, e)
            raise
        self.register(buf)
        whole = memoryview(buf)
        views = [whole[off:off + n] for off, n, _ in layout]
        try:
            kept = pickle.loads(main, buffers=views)
        except BaseException as e:
            # Not rebuilt from the object (its type refuses read-only
            # buffers, say): nobody will own it, so it goes now. Its views
            # are released (the error's traceback may outlive this call);
            # one that something still exports goes when that is garbage.
            for v in views + [whole]:
                try:
                    v.release()
                except BufferError:
                    pass
            self._discard(oid, sealed, creator_holds, buf)
            if isinstance(e, Exception):
                return self._keep_in_memory(value, e)
            raise
        self.counts["stored"] += 1
        self.counts["stored_bytes"] += total
        return kept, oid

    def _keep_in_memory(self, value, error):
        """(value, None): a result the store did not take stays here."""
        self.counts["fallbacks"] += 1
        if isinstance(error, gismo.StoreFull):
            self.warn_once("full", "gismo.dask: the gismo region is full (%s); results "
                           "stay in this worker's memory and travel as bytes", error)
        else:
            self.warn_once(("store", type(error).__name__),
                           "gismo.dask: gismo did not take a result (%s: %s); results it "
                           "does not take stay in this worker's memory and travel as bytes",
                           type(error).__name__, error)
        return value, None

    def _discard(self, oid, sealed, creator_holds, buf):
        """Undoes a store that failed part way: aborts the object, or once
        sealed gives back every reference taken and deletes it. What fails
        here goes with this client at the latest (the object is owned)."""
        client = self.client
        if not sealed:
            try:
                client.abort(oid)  # drops the creator's reference too
                return
            except gismo.Error as e:  # sealed after all: the seal failed late
                logger.debug("gismo.dask: abort of %s: %s", oid, e)
        steps = [buf.release] if buf is not None else []
        if creator_holds:
            steps.append(functools.partial(client.release, oid))
        steps.append(functools.partial(client.delete, oid))
        for step in steps:
            try:
                step()
            except gismo.Error as e:
                logger.debug("gismo.dask: cleanup of %s: %s", oid, e)

    def delete(self, oid):
        """Deletes `oid` now if nobody holds it, else once nobody does: a
        peer that holds it (a replica backed by this object) can still serve
        it by reference until then."""
        if self._delete_if_unreferenced(oid):
            return
        with self.lock:
            self.pending[oid.hex()] = oid
            self.counts["deferred_deletes"] += 1
            if self.sweeper is None:
                self.sweeper = threading.Thread(target=self._sweep, name="gismo-dask-sweep",
                                                daemon=True)
                self.sweeper.start()

    def _delete_if_unreferenced(self, oid):
        """True when `oid` is gone (deleted here or before); False while it
        is held, or if looking or deleting failed otherwise (Busy, a lost
        connection...): it stays pending, and the sweep tries again."""
        try:
            if self.client.stat(oid)["refs"] > 0:
                return False
            self.client.delete(oid)
        except gismo.ObjectNotFound:  # already gone: nothing to free
            pass
        except gismo.Error as e:
            logger.debug("gismo.dask: delete of %s: %s", oid, e)
            return False
        return True

    def _sweep(self):
        """Deletes the pending objects as their last readers release them;
        ends when none is left (delete starts a new one)."""
        while True:
            time.sleep(_SWEEP_SECONDS)
            self.sweep_now()
            with self.lock:
                if not self.pending:
                    self.sweeper = None
                    return

    def sweep_now(self):
        """One pass of the sweep (tests); returns how many are still pending."""
        with self.lock:
            pending = list(self.pending.values())
        for oid in pending:
            if self._delete_if_unreferenced(oid):
                with self.lock:
                    self.pending.pop(oid.hex(), None)
        with self.lock:
            return len(self.pending)


_process = _Process()


def enable(address=None, threshold=DEFAULT_THRESHOLD):
    """Connects this process to gismo (``address``: as gismo.connect) and
    returns the region's id. Workers call it through GismoData."""
    return _process.enable(address, threshold)


def region_id():
    """The id of the region this process maps, or None."""
    return _process.region


def stats():
    """Counters of this process: results stored, references sent and
    received (with their bytes), fallbacks to bytes, references that
    arrived too late (late_refs) or that this process could not hold
    (refs_full)."""
    return dict(_process.counts)


# -- the serialization family ----------------------------------------------
@_timed("send_seconds")
def _dumps(x, context=None):
    p = _process
    if not p.enabled:
        raise NotImplementedError
    recipient = (context or {}).get("recipient") or {}
    peer_region = recipient.get(HANDSHAKE_KEY)
    if peer_region != p.region:
        peer = recipient.get("address", "a peer")
        why = ("does not use gismo" if peer_region is None else
               "maps another gismo region (%s, this worker %s)" % (peer_region, p.region))
        p.counts["fallbacks"] += 1
        p.warn_once(("peer", peer), "gismo.dask: %s %s; sending it bytes", peer, why)
        raise NotImplementedError
    buffers = []
    try:
        main = pickle.dumps(x, protocol=5, buffer_callback=buffers.append)
        raws = [b.raw() for b in buffers]
    except Exception:
        # What plain pickle cannot take (a lambda, a class of the client's
        # __main__) goes to the next family (Dask's pickle, cloudpickle):
        # any other exception would make Dask send an error frame instead.
        raise NotImplementedError
    refs, frames, in_region = [], [main], 0
    for raw in raws:
        found = p.lookup(_address_of(raw), raw.nbytes) if raw.nbytes else None
        if found is not None and not p.still_sealed(found[0]):
            found = None  # its producer deleted it (Dask dropped that replica): bytes
        if found is None:
            refs.append(None)
            frames.append(raw)
        else:
            oid, offset = found
            refs.append([oid.hex(), offset, raw.nbytes, raw.readonly])
            in_region += raw.nbytes
    if in_region == 0:
        raise NotImplementedError  # nothing of it is in the region
    p.counts["sent_refs"] += 1
    p.counts["sent_ref_bytes"] += in_region
    return {"region": p.region, "refs": refs}, frames


@_timed("receive_seconds")
def _loads(header, frames):
    p = _process
    region = header.get("region")
    if not p.enabled or region != p.region:
        raise ValueError(
            "gismo.dask: a reference to gismo region %s reached a process that maps %s; "
            "its sender should have sent bytes" % (region, p.region or "no region"))
    held, buffers, inline = {}, [], iter(frames[1:])
    for ref in header["refs"]:
        if ref is None:
            buffers.append(next(inline))
            continue
        oid_hex, offset, nbytes = ref[0], int(ref[1]), int(ref[2])
        whole = held.get(oid_hex)
        if whole is None:
            try:
                buf = p.client.get(gismo.ObjectID.from_hex(oid_hex), timeout_ms=0)
            except (gismo.Timeout, gismo.ObjectNotFound) as e:
                # Deleted after its sender checked it: a lost replica. An
                # EOFError makes Dask's comm fail the transfer as a broken
                # connection, and the worker fetches the key again. (Other
                # errors, a LimitReached say, are not a lost replica: they
                # pass as they are.)
                p.counts["late_refs"] += 1
                logger.warning("gismo.dask: object %s, sent by reference, was deleted before "
                               "it arrived (%s); fetching the value again", oid_hex, e)
                raise ReferenceGone("gismo.dask: object %s, sent by reference, is gone: %s"
                                    % (oid_hex, e)) from e
            except gismo.LimitReached as e:
                # This client holds all it may: peers send bytes for a
                # while (see advertised_region), starting with the retry
                # of this fetch over a new connection.
                p.counts["refs_full"] += 1
                p.refs_full_until = time.monotonic() + _REFS_FULL_SECONDS
                logger.warning("gismo.dask: object %s, sent by reference, cannot be held here "
                               "(%s); asking peers for bytes for %g s", oid_hex, e,
                               _REFS_FULL_SECONDS)
                raise ReceiverFull("gismo.dask: object %s, sent by reference, cannot be held: %s"
                                   % (oid_hex, e)) from e
            except gismo.Error as e:
                raise type(e)("gismo.dask: object %s, sent by reference, could not be got: %s"
                              % (oid_hex, e)) from e
            p.register(buf)
            whole = held[oid_hex] = memoryview(buf)
        if offset < 0 or nbytes < 0 or offset + nbytes > whole.nbytes:
            raise ValueError("gismo.dask: reference to bytes [%d, +%d) of object %s, "
                             "which holds %d" % (offset, nbytes, oid_hex, whole.nbytes))
        buffers.append(whole[offset:offset + nbytes])
        p.counts["received_refs"] += 1
        p.counts["received_ref_bytes"] += nbytes
    return pickle.loads(frames[0], buffers=buffers)


def _install():
    from distributed.comm.core import Comm
    from distributed.protocol.serialize import register_serialization_family

    register_serialization_family(FAMILY, _dumps, _loads)
    if getattr(Comm.handshake_info, "_gismo", False):
        return
    original = Comm.handshake_info

    def handshake_info():
        info = original()
        region = _process.advertised_region()
        if region is not None:
            info[HANDSHAKE_KEY] = region
        return info

    handshake_info._gismo = True
    Comm.handshake_info = staticmethod(handshake_info)


_install()


# -- the worker's data ------------------------------------------------------
class GismoData(MutableMapping):
    """A worker's ``data`` mapping whose large values live in gismo objects
    owned by the worker (see the module's documentation)."""

    def __init__(self, address=None, threshold=DEFAULT_THRESHOLD):
        enable(address, threshold)
        self._values = {}
        self._owned = {}  # key -> ObjectID of the object this worker created

    def __setitem__(self, key, value):
        if key in self._values:
            del self[key]
        value, oid = _process.store(value)
        self._values[key] = value
        if oid is not None:
            self._owned[key] = oid

    def __getitem__(self, key):
        return self._values[key]

    def __delitem__(self, key):
        del self._values[key]
        oid = self._owned.pop(key, None)
        if oid is not None:
            _process.delete(oid)

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def owned(self):
        """{key: ObjectID} of the objects this worker created."""
        return dict(self._owned)


def worker_options(address=None, threshold=DEFAULT_THRESHOLD):
    """Keyword arguments for LocalCluster / Worker / Nanny that make the
    workers use gismo: their data mapping and serializer lists."""
    return {
        "data": (GismoData, {"address": address, "threshold": threshold}),
        "serializers": list(SERIALIZERS),
        "deserializers": list(SERIALIZERS),
    }


def dask_setup(worker, address=None, threshold=DEFAULT_THRESHOLD):
    """The preload hook (``dask-worker --preload gismo.dask``): gives the
    worker a GismoData mapping and puts the gismo family first in the lists
    its connection pool sends to peers. ``$GISMO_DASK_THRESHOLD`` sets the
    threshold in bytes."""
    threshold = int(os.environ.get("GISMO_DASK_THRESHOLD", threshold))
    data = GismoData(address, threshold)
    for key, value in list(worker.memory_manager.data.items()):
        data[key] = value
    worker.memory_manager.data = data
    worker.state.data = data
    worker.rpc.serializers = list(SERIALIZERS)
    worker.rpc.deserializers = list(SERIALIZERS)
    logger.info("gismo.dask: results of %d bytes or more go into gismo region %s",
                threshold, _process.region)
