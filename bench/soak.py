"""Soak test: real clients of mixed operations, and hostile peers, against one
gismo-manager for a bounded time; the manager's memory and descriptors are
sampled every second. Not part of the default test run (bench/soak.sh runs
it; doc/security.md and doc/operations.md report its figures).

Real clients (gismo package, Unix socket and TCP with the cluster key) put,
get, wait with a timeout for missing ids, subscribe and delete; any error
they see is counted (an expected timeout is not an error). Hostile peers,
each kind in its own processes, in a loop:
  bigheader   a 16-byte header announcing 16 MiB, before any hello
  silent      connects and says nothing
  slowloris   one byte per second
  tcphello    a hello over TCP without the key
  barehello   a hello over the Unix socket, never followed by a region proof
  nonreader   an admitted peer (it maps the region) that subscribes and never
              reads, plus a kicker sending seal kicks as fast as it can
  waitflood   an admitted peer registering waits of 1000 ids until refused
  fdflood     holds as many connections as it can open

Prints one JSON object: durations, operations, errors, refusals, and the
manager's RSS (anonymous memory, not the region), descriptors and
connections over time (min/max/last).
"""

import argparse
import hashlib
import hmac
import json
import mmap
import multiprocessing as mp
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import time

HDR = struct.Struct("<IHHQ")
PROTOCOL_VERSION = 3
T_HELLO, T_WELCOME, T_ERROR, T_WAIT, T_WAITACK = 1, 2, 3, 4, 5
T_SEALED, T_HEARTBEAT, T_SUBSCRIBE = 8, 9, 13
T_CHALLENGE, T_ACCESS, T_PROOF = 20, 21, 22


def frame(t, payload=b"", req=0):
    return HDR.pack(len(payload), t, 0, req) + payload


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise ConnectionError("closed")
        b += c
    return b


def recv_frame(s):
    length, t, _, req = HDR.unpack(recv_exact(s, HDR.size))
    return t, req, recv_exact(s, length)


def connect(addr):
    if addr.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(addr[5:])
    else:
        host, port = addr[4:].rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
    return s


def hello_payload(nonce, name=b"hostile", role=0):
    p = struct.pack("<IIQ", PROTOCOL_VERSION, 0, os.getpid())
    p += struct.pack("<I", 4) + b"soak" + struct.pack("<I", len(name)) + name
    p += struct.pack("<4Q", 0, 0, 0, 0)
    p += struct.pack("<IIQQQQ", role, 0, 0, 0, 0, 0)
    p += nonce + b"\x00"
    return p


def region_secret(region):
    with open(region, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        table = struct.unpack_from("<Q", m, 88)[0]
        secret = m[table + 224:table + 240]
        m.close()
    return secret


def admitted_peer(addr, region):
    """A raw peer admitted as a client: challenge, hello, region proof."""
    s = connect(addr)
    t, _, p = recv_frame(s)
    assert t == T_CHALLENGE, t
    server = p[4:20]
    client = os.urandom(16)
    s.sendall(frame(T_HELLO, hello_payload(client)))
    t, _, p = recv_frame(s)
    assert t == T_ACCESS, t
    proof = hmac.new(region_secret(region), b"gismo-region" + server + client,
                     hashlib.sha256).digest()
    s.sendall(frame(T_PROOF, proof))
    t, _, p = recv_frame(s)
    assert t == T_WELCOME, t
    return s


def until(deadline):
    return time.monotonic() < deadline


def hostile(kind, unix, tcp, region, deadline, counter):
    random.seed(os.getpid())
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    held = []
    while until(deadline):
        try:
            if kind == "bigheader":
                s = connect(unix)
                s.sendall(HDR.pack(16 << 20, T_HELLO, 0, 0))
                s.settimeout(10)
                while s.recv(4096):
                    pass
                s.close()
            elif kind == "silent":
                s = connect(random.choice([unix, tcp]))
                s.settimeout(30)
                while s.recv(4096):
                    pass
                s.close()
            elif kind == "slowloris":
                s = connect(unix)
                recv_frame(s)
                data = frame(T_HELLO, hello_payload(os.urandom(16)))
                for b in data:
                    s.sendall(bytes([b]))
                    time.sleep(1)
            elif kind == "tcphello":
                s = connect(tcp)
                recv_frame(s)
                s.sendall(frame(T_HELLO, hello_payload(os.urandom(16),
                                                       b"x\nFORGED line")))
                s.settimeout(10)
                while s.recv(4096):
                    pass
                s.close()
            elif kind == "barehello":
                s = connect(unix)
                recv_frame(s)
                s.sendall(frame(T_HELLO, hello_payload(os.urandom(16))))
                s.settimeout(30)
                while s.recv(4096):
                    pass
                s.close()
            elif kind == "nonreader":
                sub = admitted_peer(unix, region)
                sub.sendall(frame(T_SUBSCRIBE, b"", 1))
                kick = admitted_peer(unix, region)
                batch = frame(T_SEALED, bytes(20)) * 1000
                while until(deadline):
                    kick.sendall(batch)
                    kick.sendall(frame(T_HEARTBEAT))
                    sub.sendall(frame(T_HEARTBEAT))
                    time.sleep(0.01)
            elif kind == "waitflood":
                s = admitted_peer(unix, region)
                wid = 1
                while until(deadline):
                    ids = b"".join(os.urandom(20) for _ in range(1000))
                    s.sendall(frame(T_WAIT, struct.pack("<I", 1000) + ids, wid))
                    wid += 1
                    t, _, _ = recv_frame(s)
                    while t not in (T_WAITACK, T_ERROR):
                        t, _, _ = recv_frame(s)
                    if t == T_ERROR:
                        with counter.get_lock():
                            counter.value += 1
                        break
            elif kind == "fdflood":
                while until(deadline) and len(held) < 2000:
                    try:
                        held.append(connect(unix))
                    except OSError:
                        time.sleep(0.1)
                        break
                time.sleep(1)
                for s in held[:100]:
                    s.close()
                del held[:100]
        except (OSError, ConnectionError, AssertionError, struct.error):
            with counter.get_lock():
                counter.value += 1
            time.sleep(0.05)


def real_client(idx, addr, key_file, region, deadline, ops, errors, lasterr):
    if key_file and addr.startswith("tcp:"):
        os.environ["GISMO_KEY_FILE"] = key_file
        os.environ["GISMO_REGION"] = region
    import gismo
    rnd = random.Random(idx)
    n_ops = n_err = 0
    c = None
    while until(deadline):
        try:
            if c is None:
                c = gismo.connect(addr)
            oid = gismo.ObjectID.random()
            data = os.urandom(rnd.randint(1, 65536))
            c.put(oid, data)
            with c.get(oid) as b:  # released at the end of the block
                if bytes(b) != data:
                    raise RuntimeError("wrong data")
            try:
                c.get(gismo.ObjectID.random(), timeout_ms=5)
            except gismo.Timeout:
                pass
            if rnd.random() < 0.05:
                with c.subscribe() as sub:
                    sub.next(timeout_ms=1)
            c.delete(oid)
            n_ops += 5
        except Exception as e:  # noqa: BLE001 - every error is a finding
            n_err += 1
            lasterr.put(f"client {idx}: {type(e).__name__}: {e}")
            try:
                if c is not None:
                    c.close()
            except Exception:  # noqa: BLE001
                pass
            c = None
            time.sleep(0.1)
    if c is not None:
        c.close()
    with ops.get_lock():
        ops.value += n_ops
    with errors.get_lock():
        errors.value += n_err


def sample(pid):
    st = open(f"/proc/{pid}/status").read()
    anon = int(re.search(r"RssAnon:\s+(\d+)", st).group(1))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return anon, fds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manager", required=True, help="gismo-manager binary")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--hostile", type=int, default=2, help="processes per kind")
    ap.add_argument("--size", default="1GiB")
    args = ap.parse_args()

    tag = f"soak{os.getpid()}"
    region = f"/dev/shm/{tag}"
    unix = f"unix:/tmp/{tag}.sock"
    key_file = f"/tmp/{tag}.key"
    with open(os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
        f.write(os.urandom(32))
    log = open(f"/tmp/{tag}.log", "w")
    mgr = subprocess.Popen(
        [args.manager, "--region", region, "--size", args.size, "--listen", unix,
         "--listen", "tcp:127.0.0.1:0", "--key-file", key_file,
         "--max-clients", str(args.clients + 32), "--log-level", "warn"],
        stdout=subprocess.PIPE, stderr=log, text=True)
    ready = mgr.stdout.readline()
    if "ready" not in ready:
        sys.exit(f"soak: the manager did not start: {ready}")
    tcp = re.search(r"(tcp:127\.0\.0\.1:\d+)", ready).group(1)

    start = time.monotonic()
    deadline = start + args.minutes * 60
    ops, errors = mp.Value("q", 0), mp.Value("q", 0)
    refused = mp.Value("q", 0)
    lasterr = mp.Queue()
    procs = []
    for i in range(args.clients):
        addr = tcp if i % 4 == 0 else unix
        procs.append(mp.Process(target=real_client,
                                args=(i, addr, key_file, region, deadline, ops, errors,
                                      lasterr)))
    kinds = ["bigheader", "silent", "slowloris", "tcphello", "barehello", "nonreader",
             "waitflood", "fdflood"]
    for k in kinds:
        for _ in range(args.hostile):
            procs.append(mp.Process(target=hostile,
                                    args=(k, unix, tcp, region, deadline, refused)))
    base = sample(mgr.pid)
    for p in procs:
        p.start()
    samples = []
    while time.monotonic() < deadline:
        time.sleep(1)
        samples.append(sample(mgr.pid))
    for p in procs:
        p.join(timeout=60)
        if p.is_alive():
            p.kill()
    after = sample(mgr.pid)
    mgr.send_signal(signal.SIGTERM)
    mgr.wait(timeout=30)
    errs = []
    while not lasterr.empty() and len(errs) < 10:
        errs.append(lasterr.get())
    rss = [s[0] for s in samples]
    fds = [s[1] for s in samples]
    half = len(samples) // 2
    print(json.dumps({
        "minutes": args.minutes,
        "real_clients": args.clients,
        "hostile_processes": len(kinds) * args.hostile,
        "real_client_operations": ops.value,
        "real_client_errors": errors.value,
        "real_client_error_samples": errs,
        "hostile_connections_ended": refused.value,
        "manager_rss_anon_kib": {"start": base[0], "min": min(rss), "max": max(rss),
                                  "max_second_half": max(rss[half:] or rss),
                                  "end": after[0]},
        "manager_fds": {"start": base[1], "min": min(fds), "max": max(fds), "end": after[1]},
        "manager_exit": mgr.returncode,
        "manager_log": log.name,
    }, indent=1))
    for p in (region, key_file, unix[5:]):
        try:
            os.unlink(p)
        except OSError:
            pass


if __name__ == "__main__":
    main()
