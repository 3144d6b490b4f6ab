"""Restore of a 64 MiB checkpoint (16 chunks of 4 MiB) by pointer, with and
without checksum verification, beside reading the same bytes from a local file.
Usage: /usr/bin/python3 bench/checkpoint_restore.py BUILD/tools/gismo-manager
(PYTHONPATH: the build tree's python/ is taken from the manager's build)."""
import os, subprocess, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(sys.argv[1]))), "python"))
import gismo
from gismo import checkpoint
M = sys.argv[1]
region, sock = "/dev/shm/names-measure", "/tmp/names-measure.sock"
p = subprocess.Popen([M, "--region", region, "--size", "512MiB", "--listen", "unix:" + sock, "--log-level", "warn", "--format"], stdout=subprocess.PIPE)
while b"ready" not in p.stdout.readline(): pass
try:
    c = gismo.connect("unix:" + sock); d = gismo.connect("unix:" + sock)
    chunk = os.urandom(4 << 20)
    w = checkpoint.Writer(c, "bench"); [w.add_chunk(chunk) for _ in range(16)]; w.commit(b"offset=1")
    best = {}
    for _ in range(5):
        t = time.perf_counter(); r = checkpoint.restore(d, "bench"); t1 = time.perf_counter() - t
        [b.release() for b in r.chunks]
        t = time.perf_counter(); r = checkpoint.restore(d, "bench", verify=False); t2 = time.perf_counter() - t
        [b.release() for b in r.chunks]
        t = time.perf_counter(); b = d.lookup_name("bench"); t3 = time.perf_counter() - t
        best["verified"] = min(best.get("verified", 9), t1); best["by pointer, no verify"] = min(best.get("by pointer, no verify", 9), t2); best["lookup_name"] = min(best.get("lookup_name", 9), t3)
    with open("/var/tmp/names-measure.bin", "wb") as f:
        f.write(chunk * 16); f.flush(); os.fsync(f.fileno())
    for _ in range(5):
        t = time.perf_counter()
        with open("/var/tmp/names-measure.bin", "rb") as f: data = f.read()
        x = checkpoint.checksum(data)
        best["local file read+checksum (page cache)"] = min(best.get("local file read+checksum (page cache)", 9), time.perf_counter() - t)
    for k, v in best.items(): print(f"{k}: {v*1e3:.2f} ms (64 MiB, 16 chunks)")
finally:
    p.terminate(); p.wait()
    for f in (region, sock, "/var/tmp/names-measure.bin"):
        try: os.unlink(f)
        except FileNotFoundError: pass
