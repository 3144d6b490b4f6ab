#!/usr/bin/python3
"""Dask on gismo beside Dask's own transfers, on emulated nodes.

Brings up a gismo-cluster of 4 nodes (or uses --cluster NAME), runs a
dask-scheduler on node 0 and one dask-worker (1 thread, no nanny) on each of
nodes 1..4, first plain ("dask") and then with `--preload gismo.dask`
("gismo"), and for each:

  transfer  one array (1 KiB .. 1 GiB) made on node 1's worker, consumed
            (summed) by node 2's worker: wall time from submit to result
  shuffle   dask.dataframe shuffle="tasks" of numeric columns (0.5 and 2 GB
            by default), 16 partitions over the 4 workers, input persisted
            first: wall time of the shuffle and a count of its rows

and for each measurement the bytes on the wire between nodes (the sum of
every node's eth0 transmitted bytes, read from /proc/net/dev in its network
namespace, before
and after) and memory (the sum of the workers' private memory, RssAnon, plus
the region's used bytes: region pages the workers touch are shared memory,
counted once, in the region).

    PYTHONPATH=build/python /usr/bin/python3 bench/python/bench_dask.py \\
        --cluster-bin build/tools/gismo-cluster/gismo-cluster \\
        --manager build/tools/gismo-manager --output dask.json

Each measurement runs --repeats times (default 3, each with fresh data) and
the median run is reported. Prints one line per run and writes JSON. Needs
root (namespaces).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

SUBNET = "10.77.11"  # of the cluster it brings up; --subnet for --cluster
PORT = 8786


# -- inside node 0: the driver ---------------------------------------------
def _worker_memory():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def _make(nbytes):
    # Random: Dask compresses frames, and constant data would not travel.
    import numpy as np
    return np.random.default_rng(7).random(nbytes // 8)


def _consume(a):
    return int(a.size), float(a.sum())


def _gismo_stats(dask_worker):
    import gismo.dask
    return gismo.dask.stats()


def _memory(client, g):
    rss = sum(client.run(_worker_memory).values())
    region = g.usage()["used_bytes"] if g is not None else 0
    return {"workers_rss_anon": rss, "region_used": region, "total": rss + region}


def drive(args):
    import numpy as np  # noqa: F401
    import dask
    import dask.array as da
    import dask.dataframe as dd
    from distributed import Client, wait

    client = Client(args.scheduler, timeout=60)
    client.wait_for_workers(args.workers, timeout=120)
    g = None
    if args.mode == "gismo":
        import gismo
        g = gismo.connect()
    workers = sorted(client.scheduler_info()["workers"].items(),
                     key=lambda kv: kv[1]["name"])
    addrs = [a for a, _ in workers]
    out = {"mode": args.mode}
    if args.experiment == "transfer":
        n = int(args.size)
        x = client.submit(_make, n, workers=[addrs[0]], pure=False)
        wait(x)
        print("ready", flush=True)
        sys.stdin.readline()  # the host reads the counters
        t0 = time.perf_counter()
        y = client.submit(_consume, x, workers=[addrs[1]], pure=False)
        count, _ = y.result()
        out["seconds"] = time.perf_counter() - t0
        assert count == n // 8, count
        out["memory"] = _memory(client, g)
        if args.mode == "gismo":
            out["gismo_stats"] = client.run(_gismo_stats)
        print("done", flush=True)
        sys.stdin.readline()
        del x, y
    else:
        n = int(args.size)
        rows = n // 40  # 5 columns of 8 bytes
        parts = 16
        arr = da.random.random((rows, 4), chunks=(rows // parts, 4))
        df = dd.from_dask_array(arr, columns=["a", "b", "c", "d"])
        df["k"] = (df["a"] * 1e9).astype("int64")
        df = df.persist()
        wait(df)
        print("ready", flush=True)
        sys.stdin.readline()
        t0 = time.perf_counter()
        with dask.config.set({"dataframe.shuffle.method": "tasks"}):
            s = df.shuffle("k", shuffle="tasks", npartitions=parts).persist()
            wait(s)
        out["seconds"] = time.perf_counter() - t0
        out["rows"] = int(len(s))
        assert out["rows"] == len(df), (out["rows"], len(df))
        out["memory"] = _memory(client, g)
        if args.mode == "gismo":
            out["gismo_stats"] = client.run(_gismo_stats)
        print("done", flush=True)
        sys.stdin.readline()
        del s, df
    print(json.dumps(out), flush=True)
    client.close()


# -- on the host -------------------------------------------------------------
class Cluster:
    def __init__(self, args):
        self.bin = args.cluster_bin
        self.name = args.cluster or f"gdask{os.getpid()}"
        self.owned = args.cluster is None
        self.region = os.path.join(args.region_dir, self.name)
        if self.owned:
            env = dict(os.environ, GISMO_MANAGER_BIN=args.manager)
            manager_args = ["--", "--prefault"] if args.prefault else []
            subprocess.run([self.bin, "--name", self.name, "up", "--nodes", "4",
                            "--region", self.region, "--size", args.region_size,
                            "--subnet", SUBNET, "--log-level", "warn", *manager_args],
                           check=True, env=env, stdout=subprocess.DEVNULL)

    def popen(self, node, cmd, **kw):
        return subprocess.Popen([self.bin, "--name", self.name, "exec", str(node), "--", *cmd],
                                **kw)

    def tx_bytes(self):
        total = 0
        per_node = []
        for node in range(5):
            # /proc/net/dev is the reader's network namespace (/sys would be
            # the host's: sysfs is not remounted in the nodes).
            r = subprocess.run([self.bin, "--name", self.name, "exec", str(node), "--", "cat",
                                "/proc/net/dev"], capture_output=True, text=True, check=True)
            for line in r.stdout.splitlines():
                name, _, fields = line.partition(":")
                if name.strip() == "eth0":
                    total += int(fields.split()[8])  # transmitted bytes
                    per_node.append(int(fields.split()[8]))
        print("tx per node", per_node, file=sys.stderr, flush=True)
        return total

    def down(self):
        if self.owned:
            subprocess.run([self.bin, "--name", self.name, "down"], stdout=subprocess.DEVNULL)


def run_mode(cluster, mode, experiments, log, port, repeats):
    sched = f"tcp://{SUBNET}.1:{port}"
    procs = [cluster.popen(0, ["dask-scheduler", "--host", f"{SUBNET}.1", "--port", str(port),
                               "--dashboard-address", ":0", "--no-show"],
                           stdout=log, stderr=log)]
    for node in range(1, 5):
        cmd = ["dask-worker", "--nthreads", "1", "--no-nanny", "--memory-limit", "0",
               "--name", f"w{node}", "--host", f"{SUBNET}.{node + 1}",
               "--dashboard-address", ":0"]
        if mode == "gismo":
            cmd += ["--preload", "gismo.dask"]
        procs.append(cluster.popen(node, cmd + [sched], stdout=log, stderr=log))
    results = []
    try:
        for experiment, size in experiments:
            runs = []
            for i in range(repeats):
                d = cluster.popen(0, [sys.executable, os.path.abspath(__file__), "drive",
                                      "--scheduler", sched, "--mode", mode,
                                      "--experiment", experiment, "--size", str(size)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                  text=True)
                assert d.stdout.readline().strip() == "ready", f"{experiment} {size}: no ready"
                tx0 = cluster.tx_bytes()
                d.stdin.write("\n")
                d.stdin.flush()
                assert d.stdout.readline().strip() == "done", f"{experiment} {size}: failed"
                tx1 = cluster.tx_bytes()
                d.stdin.write("\n")
                d.stdin.flush()
                r = json.loads(d.stdout.readline())
                d.wait(timeout=120)
                r.update(experiment=experiment, bytes=size, wire_bytes=tx1 - tx0)
                print(f"{mode:5} {experiment:8} {size / 2**20:7.0f} MiB, run {i + 1}/{repeats}: "
                      f"{r['seconds']:.3f} s, {r['wire_bytes'] / 2**20:.1f} MiB on the wire, "
                      f"memory {r['memory']['total'] / 2**20:.0f} MiB", flush=True)
                runs.append(r)
            # The median run stands for the size; every run's time is kept.
            r = dict(sorted(runs, key=lambda x: x["seconds"])[len(runs) // 2])
            r["runs_seconds"] = [x["seconds"] for x in runs]
            results.append(r)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    d = sub.add_parser("drive")
    d.add_argument("--scheduler", required=True)
    d.add_argument("--mode", required=True)
    d.add_argument("--experiment", required=True)
    d.add_argument("--size", required=True)
    d.add_argument("--workers", type=int, default=4)
    ap.add_argument("--cluster-bin", default="build/tools/gismo-cluster/gismo-cluster")
    ap.add_argument("--manager", default="build/tools/gismo-manager")
    ap.add_argument("--cluster", help="use this cluster (already up) instead of a new one")
    ap.add_argument("--subnet", default=SUBNET, help="the cluster's subnet (with --cluster)")
    ap.add_argument("--region-size", default="8GiB")  # the 2 GB shuffle peaks near 6 GiB
    ap.add_argument("--region-dir", default="/dev/shm",
                    help="where the region file goes: a hugetlbfs mount with enough 2 MiB pages "
                         "reserved makes first writes run at memory speed (doc/operations.md)")
    ap.add_argument("--prefault", action="store_true",
                    help="the manager allocates every page of the region at start")
    # 1 KiB stays below gismo.dask's threshold: what a dependent task costs
    # with either path (the floor under the other transfers).
    ap.add_argument("--transfer-sizes", default=f"{1 << 10},{16 << 20},{256 << 20},{1 << 30}")
    ap.add_argument("--shuffle-sizes", default=f"{512 << 20},{2 << 30}")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs of each measurement; the median run is reported")
    ap.add_argument("--modes", default="dask,gismo")
    ap.add_argument("--output", default="dask.json")
    ap.add_argument("--log", default="/dev/null")
    args = ap.parse_args()
    if args.cmd == "drive":
        return drive(args)
    globals()["SUBNET"] = args.subnet  # used by Cluster and run_mode
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # take the cluster down
    experiments = [("transfer", int(s)) for s in args.transfer_sizes.split(",") if s]
    experiments += [("shuffle", int(s)) for s in args.shuffle_sizes.split(",") if s]
    # A cluster of its own for each mode: `gismo-cluster exec` does not pass
    # a signal on, so one mode's scheduler and workers live until their
    # cluster goes down. On a cluster given with --cluster, each mode uses a
    # port of its own (and the previous mode's processes stay until down).
    res = {}
    with open(args.log, "a") as log:
        for i, mode in enumerate(args.modes.split(",")):
            cluster = Cluster(args)
            try:
                res[mode] = run_mode(cluster, mode, experiments, log, PORT + i, args.repeats)
            finally:
                cluster.down()
    res["method"] = (f"median of {args.repeats} runs; "
                     "4 emulated nodes (gismo-cluster, network namespaces, veth bridge), "
                     "one dask-worker per node (1 thread, no nanny), scheduler and driver "
                     "on node 0; wire bytes: sum of every node's eth0 transmitted bytes (/proc/net/dev); memory: "
                     "workers' RssAnon + region used")
    with open(args.output, "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
