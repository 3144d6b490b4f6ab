#!/usr/bin/env python3
"""Numpy arrays through gismo versus pickling them through a socket.

For a 1 KB and a 100 MB array, times:
  gismo put_array          create + copy into the region + seal + release
  gismo get_array          get + a read-only ndarray view (no copy) + release
  gismo to other process   put_array, send the id; the other process
                           get_array()s it and acknowledges
  pickle to other process  pickle.dumps (protocol 5) + send through a
                           socketpair; the other process receives,
                           pickle.loads and acknowledges
Prints a table (median and p99 per operation); asserts nothing.

    PYTHONPATH=build-py/python /usr/bin/python3 bench/python/bench_numpy.py \\
        --manager build-py/tools/gismo-manager

Starts its own manager on a private region unless --address is given.
"""

import argparse
import multiprocessing
import os
import pickle
import selectors
import socket
import statistics
import struct
import subprocess
import time
import uuid

import numpy as np

import gismo

SIZES = [("1 KB", 1 << 10, 2000), ("100 MB", 100 << 20, 12)]


def start_manager(binary, size):
    name = f"gismo-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    region, sock = f"/dev/shm/{name}", f"/tmp/{name}.sock"
    proc = subprocess.Popen(
        [binary, "--region", region, "--size", size, "--listen",
         f"unix:{sock}", "--log-level", "warn"], stdout=subprocess.PIPE)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    out = b""
    while b"gismo-manager ready" not in out:
        if not sel.select(30):
            raise RuntimeError("gismo-manager did not get ready")
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            raise RuntimeError("gismo-manager exited")
        out += chunk
    sel.close()

    def stop():
        proc.terminate()
        proc.wait()
        for path in (region, sock):
            if os.path.exists(path):
                os.unlink(path)

    return f"unix:{sock}", stop


def recv_exact(sock, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            raise EOFError
        got += k
    return buf


def consumer(sock, address):
    """The other process: answers every message with one byte."""
    with gismo.connect(address) as client:
        while True:
            kind = recv_exact(sock, 1)
            if kind == b"G":
                oid = gismo.ObjectID(bytes(recv_exact(sock, gismo.ID_SIZE)))
                # The view is dropped at once: the reference is given back.
                client.get_array(oid)
            elif kind == b"P":
                (n,) = struct.unpack("<Q", recv_exact(sock, 8))
                pickle.loads(recv_exact(sock, n))
            else:
                return
            sock.sendall(b"k")


def timed(fn, n, setup=None, teardown=None):
    """n timings of fn, after one untimed warm-up (first-touch page faults)."""
    samples = []
    for i in range(n + 1):
        state = setup() if setup else None
        t0 = time.perf_counter()
        fn(state)
        if i:
            samples.append(time.perf_counter() - t0)
        if teardown:
            teardown(state)
    return samples


def p99(samples):
    s = sorted(samples)
    return s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]


def fmt_time(seconds):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:8.2f} {unit}"
    return f"{seconds / 1e-9:8.0f} ns"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manager", default=os.environ.get(
        "GISMO_MANAGER_BIN", "build-py/tools/gismo-manager"))
    parser.add_argument("--address", help="use this running manager")
    parser.add_argument("--region-size", default="512MiB")
    args = parser.parse_args()

    stop = None
    address = args.address
    if not address:
        address, stop = start_manager(args.manager, args.region_size)
    ours, theirs = socket.socketpair()
    child = multiprocessing.get_context("fork").Process(
        target=consumer, args=(theirs, address), daemon=True)
    child.start()
    theirs.close()
    rows = []
    try:
        with gismo.connect(address) as client:
            for label, nbytes, n in SIZES:
                array = np.random.default_rng(0).integers(
                    0, 255, nbytes, dtype=np.uint8)
                ids = []

                def new_id(_=None):
                    oid = gismo.ObjectID.random()
                    ids.append(oid)
                    return oid

                def delete(oid):
                    client.delete(oid)

                rows.append(("gismo put_array", label, timed(
                    lambda oid: client.put_array(oid, array), n,
                    setup=new_id, teardown=delete)))

                kept = new_id()
                client.put_array(kept, array)
                rows.append(("gismo get_array", label, timed(
                    lambda _: client.get_array(kept), n)))
                client.delete(kept)

                def via_gismo(oid):
                    client.put_array(oid, array)
                    ours.sendall(b"G" + oid.binary)
                    recv_exact(ours, 1)

                rows.append(("gismo to other process", label, timed(
                    via_gismo, n, setup=new_id, teardown=delete)))

                def via_pickle(_):
                    data = pickle.dumps(array, protocol=5)
                    ours.sendall(b"P" + struct.pack("<Q", len(data)))
                    ours.sendall(data)
                    recv_exact(ours, 1)

                rows.append(("pickle to other process", label, timed(
                    via_pickle, n)))
        ours.sendall(b"Q")
    finally:
        child.join(timeout=30)
        ours.close()
        if stop:
            stop()

    print(f"{'operation':<26}{'size':>8}{'n':>6}{'median':>13}{'p99':>13}"
          f"{'GB/s (median)':>15}")
    for name, label, samples in rows:
        med = statistics.median(samples)
        nbytes = dict((lbl, b) for lbl, b, _ in SIZES)[label]
        moves_bytes = nbytes >= 1 << 20 and name != "gismo get_array"
        rate = f"{nbytes / med / 1e9:13.2f}" if moves_bytes else ""
        print(f"{name:<26}{label:>8}{len(samples):>6}{fmt_time(med):>13}"
              f"{fmt_time(p99(samples)):>13}{rate:>15}")


if __name__ == "__main__":
    main()
