#!/usr/bin/python3
"""Turns bench/results/results.json into results.md (markdown tables) and PNG plots.

Usage: plot.py RESULTS_JSON OUT_DIR
       plot.py --dask DASK_JSON OUT_DIR     (dask.md, dask.png)
       plot.py --cache CACHE_JSON OUT_DIR   (cache.md, cache.png: gismo_cache_bench --json)
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def size_name(b):
    for unit in ["B", "KB", "MB", "GB"]:
        if b < 1024:
            return f"{b:.0f}{unit}" if b == int(b) else f"{b:.1f}{unit}"
        b /= 1024
    return f"{b:g}TB"


def us(s):
    return s * 1e6


def fmt(x, digits=3):
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def aim(ok):
    return "met" if ok else "**not met**"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"

NOT_MEASURED = "not measured in this run"


def issue15_md(res):
    """The aims of issue #15 beside the latest measurements (met / not met /
    not measured in this run), with a note wherever an aim is missed."""
    rows, notes = [], []

    def row(what, measured, target, ok, note=None):
        rows.append([what, measured, target, NOT_MEASURED if ok is None else aim(ok)])
        if ok is False and note:
            notes.append(f"* {what}: {note}")

    g = res.get("gismo")
    if g and "ratios" in g:
        r, size = g["ratios"], size_name(g["size"])
        # A transfer rerun alone says so beside its figures (its note).
        rerun = " (a later run: see the transfer section)" if g.get("note") else ""
        row(f"first-touch {size} transfer, network / gismo other node",
            f"{r['network_over_other_first']:.2f}×{rerun}", "≥ 10×", r["network_over_other_first"] >= 10,
            "where the first read costs more than a warm one, its page faults (a region on "
            "/dev/shm, or not prefaulted); otherwise as for the warm read (see the transfer "
            "section)")
        warm_note = ("gismo's read runs at the memory speed of these 2 cores, and TCP over a "
                     "veth bridge in one kernel is itself a memory copy on them: a real network "
                     "is slower (see the transfer section)")
        # The checksum's own speed over private memory: from the transfer's
        # own run when it was rerun alone, else from gismo_core_bench.
        xxh3 = (g.get("checksum_baseline_gbps") or
                ((res.get("core") or {}).get("xxh3_gbps") or {}).get("median"))
        if xxh3 and "other_node" in g and "network" in g:
            gismo_gbps, tcp_gbps = g["other_node"]["warm_gbps"], g["network"]["warm_gbps"]
            warm_note = (f"gismo's get+read on another node ran at {gismo_gbps:.1f} GB/s, "
                         f"{100 * gismo_gbps / xxh3:.0f}% of the same checksum over a private "
                         f"buffer ({xxh3:.1f} GB/s, gismo_core_bench): the read is at one "
                         f"core's memory speed and gismo adds nothing to it. The ratio is then "
                         f"that speed over TCP's, {tcp_gbps:.1f} GB/s over a veth bridge in one "
                         f"kernel (a memory copy on the same 2 cores); 10× needs TCP at "
                         f"{gismo_gbps / 10:.1f} GB/s or less (a 10 Gb/s link carries 1.25 GB/s) "
                         f"(see the transfer section)")
        row(f"warm {size} transfer, network / gismo other node",
            f"{r['network_over_other_warm']:.2f}×{rerun}", "≥ 10×", r["network_over_other_warm"] >= 10,
            warm_note)
    else:
        row("first-touch 1 GB transfer", "–", "≥ 10×", None)
        row("warm 1 GB transfer", "–", "≥ 10×", None)
    sh = res.get("shuffle")
    if sh:
        ratio = sh["ratio_tcp_over_gismo"]
        row(f"shuffle {size_name(sh['bytes'])}, TCP / gismo", f"{ratio:.2f}×", "≥ 4×", ratio >= 4,
            "see the shuffle section")
    else:
        row("shuffle 2 GB", "–", "≥ 4×", None)
    lat = (res.get("notify") or {}).get("latency", [])
    same = [c for c in lat if c.get("sealer_node") == c.get("subscriber_node")]
    other = [c for c in lat if c not in same]
    for label, cases, target in [("seal → notification, same node", same, 20),
                                 ("seal → notification, other node", other, 50)]:
        if cases:
            worst = max(c["latency_ns"]["median"] for c in cases) / 1e3
            row(label, f"{worst:.1f} µs median" + (" (worst case)" if len(cases) > 1 else ""),
                f"≤ {target} µs", worst <= target, "see notify.txt")
        else:
            row(label, "–", f"≤ {target} µs", None)
    alloc = res.get("alloc") or {}
    frag = alloc.get("create_fragmented_1tib_ns")
    if frag:
        med = frag["median"] / 1e3 if isinstance(frag, dict) else frag / 1e3
        row("create on a fragmented 1 TiB heap", f"{med:.2f} µs median", "≤ 10 µs", med <= 10,
            "see the allocator's report")
    else:
        row("create on a fragmented 1 TiB heap", "–", "≤ 10 µs", None)
    idx = res.get("index") or {}
    scale = idx.get("index_scale", [])
    if len(scale) >= 2:
        meds = [p["median_ns"] for p in scale]
        spread = max(meds) / min(meds)
        points = ", ".join(f"{p['objects']:,}: {p['median_ns']:.0f}" for p in scale)
        batched = ""
        if all("batch_prefetch_ns_per_object" in p for p in scale):
            per = [p["batch_prefetch_ns_per_object"] for p in scale]
            batched = (f"; in gets of {scale[0]['batch']} ids: "
                       + ", ".join(f"{v:.0f}" for v in per)
                       + f" ns per object ({max(per) / min(per):.2f}×)")
        if all("cold_ns" in p for p in scale):
            cold = [p["cold_ns"] for p in scale]
            batched += ("; index lines flushed before each get: "
                        + ", ".join(f"{v:.0f}" for v in cold)
                        + f" ns ({max(cold) / min(cold):.2f}×)")
        row(f"get+release median ns, {scale[0]['objects']:,} → {scale[-1]['objects']:,} objects",
            f"{points} ns ({spread:.2f}×){batched}", "flat within 1.5×", spread <= 1.5,
            idx.get("note", "the largest counts miss the CPU caches and the TLB on every "
                            "get (uniformly random ids); see the index section"))
    else:
        row("get+release latency 1 K → 10 M objects", "–", "flat within 1.5×", None)
    sd = idx.get("seal_delete", [])
    if sd:
        ok = idx.get("format_version", 0) >= 4
        before = {r["threads"]: r for r in (res.get("index_before") or {}).get("seal_delete", [])}
        parts = []
        for r in sd:
            b = before.get(r["threads"])
            parts.append(f"{r['threads']} thr: {r['seals_per_s']/1e3:,.0f}k seals/s"
                         + (f" (before {b['seals_per_s']/1e3:,.0f}k)" if b else ""))
        row("no global lock on seal/delete", "; ".join(parts), "no ring lock (format ≥ 4)", ok,
            "the region format still has the ring lock")
    else:
        row("no global lock on seal/delete", "–", "no ring lock", None)
    waste = alloc.get("waste_8_64k")
    if waste is not None:
        worst = max(waste.values()) if isinstance(waste, dict) else waste
        row("space waste, objects of 8–64 KiB", f"{100*worst:.1f}% (worst)", "≤ 12.5%",
            worst <= 0.125, "see the allocator's report")
    else:
        row("space waste, objects of 8–64 KiB", "–", "≤ 12.5%", None)
    md = ["## Issue #15 aims\n\n", table(["aim", "latest measurement", "target", ""], rows)]
    if notes:
        md.append("\nWhere an aim is missed:\n\n" + "\n".join(notes) + "\n")
    md.append("\nRows marked *not measured in this run* had no result in `results.json` (an "
              "experiment another branch adds, or one this run skipped).\n")
    return "".join(md)


def index_md(idx, before):
    md = [f"### Index scale and seal/delete throughput (`gismo_index_bench`, region in "
          f"{idx.get('dir', '?')})\n\n"]
    scale = idx.get("index_scale", [])
    batched = bool(scale) and all("batch_prefetch_ns_per_object" in p for p in scale)
    cold = bool(scale) and all("cold_ns" in p for p in scale)
    rows = [[f"{p['objects']:,}", f"{p['median_ns']:.0f}", f"{p['p99_ns']:.0f}"]
            + ([f"{p['batch_ns_per_object']:.0f}", f"{p['batch_prefetch_ns_per_object']:.0f}"]
               if batched else [])
            + ([f"{p['cold_ns']:.0f}", f"{p['probe_mean']:.2f} / {p['probe_max']}"]
               if cold else [])
            for p in scale]
    if rows:
        head = ["live objects", "get+release median ns", "p99 ns"]
        if batched:
            n = scale[0]["batch"]
            head += [f"gets of {n} ids, ns per object", "same, index prefetched"]
        if cold:
            head += ["index lines flushed, median ns", "probe distance mean / max"]
        md.append(table(head, rows))
        if batched:
            md.append("\nGets of many ids: each id got in turn, then all released; \"index "
                      "prefetched\" is the client's multi-id get (Store::PrefetchBatch brings "
                      "the hash slots and records of the ids a few places ahead).\n")
        if cold:
            md.append("\n\"Index lines flushed\": single gets, each after the shard header, "
                      "hash slot and record it reads were flushed from the caches (their "
                      "address translations stay cached): what the index itself costs at "
                      "each count. Probe distance: slots past its home slot, over every live "
                      "object.\n")
    b = {r["threads"]: r for r in (before or {}).get("seal_delete", [])}
    rows = []
    for r in idx.get("seal_delete", []):
        o = b.get(r["threads"], {})
        rows.append([r["threads"], fmt(o["seals_per_s"]) if o else "–", fmt(r["seals_per_s"]),
                     fmt(o["deletes_per_s"]) if o else "–", fmt(r["deletes_per_s"])])
    if rows:
        md.append("\nSeals and deletes per second (sum over threads; before: the ring lock):\n\n")
        md.append(table(["threads", "seals/s before", "seals/s", "deletes/s before", "deletes/s"],
                        rows))
    if idx.get("note"):
        md.append("\n" + idx["note"] + "\n")
    return "".join(md)


def core_md(c):
    md = ["### Core operations (`gismo_core_bench`)\n"]
    csr, gr = c["create_seal_release_1k_ns"], c["get_release_1k_ns"]
    w = c["create_seal_release_1k_while_waiter_ns"]
    memcpy = c["memcpy_gbps"]["median"]
    rows = [
        ["create+seal+release 1 KB", f"{csr['median']/1e3:.3f} µs", f"{csr['p99']/1e3:.3f} µs", "–", ""],
        ["create+seal+release 1 KB, another client blocked in a get", f"{w['median']/1e3:.3f} µs",
         f"{w['p99']/1e3:.3f} µs", "–", ""],
        ["get+release 1 KB", f"{gr['median']/1e3:.3f} µs", f"{gr['p99']/1e3:.3f} µs", "< 0.5 µs median",
         aim(gr["median"] < 500)],
    ]
    md.append(table(["operation", "median", "p99", "target", ""], rows))
    two = c["churn_2proc_ops_per_s"]
    rows = [
        ["1 process", f"{c['churn_1proc_ops_per_s']:,.0f}", "> 1,000,000 (create+write+seal+release)",
         aim(c["churn_1proc_ops_per_s"] > 1e6)],
        ["2 processes, per process", f"{sum(two)/2:,.0f}", "", ""],
        ["2 processes, together", f"{sum(two):,.0f}", "", ""],
        ["1 / median create+seal+release (1 core)", f"{1e9/csr['median']:,.0f}", "> 1,000,000",
         aim(1e9 / csr["median"] > 1e6)],
    ]
    md.append("\nThroughput, 1 KB create+write+seal+release+delete per second:\n\n")
    md.append(table(["clients", "ops/s", "target", ""], rows))
    size = size_name(c["large_bytes"])
    rows = []
    for label, key in [("create+write(memcpy)+seal+release", "large_write_gbps"),
                       ("  first 5 repeats (fresh heap pages)", "large_write_cold_gbps"),
                       ("  last half (heap pages reused)", "large_write_warm_gbps"),
                       ("get+read(XXH3)+release", "large_read_gbps")]:
        v = c[key]["median"]
        top = not label.startswith(" ")
        rows.append([label, f"{v:.2f}", f"{100*v/memcpy:.0f}%", "≥ 80% of memcpy" if top else "",
                     aim(v >= 0.8 * memcpy) if top else ""])
    rows.append(["memcpy (private, warm)", f"{memcpy:.2f}", "100%", "", ""])
    rows.append(["XXH3 of a private warm buffer (read baseline)", f"{c['xxh3_gbps']['median']:.2f}",
                 f"{100*c['xxh3_gbps']['median']/memcpy:.0f}%", "", ""])
    md.append(f"\nLarge object ({size}), GB/s (median of {c['large_write_gbps']['n']}):\n\n")
    md.append(table(["operation", "GB/s", "of memcpy", "target", ""], rows))
    return "".join(md)


def table1_md(t):
    md = [f"### Table 1 (Plasma paper), median of {t['repeats']} repeats (p99 in parentheses)\n\n"
          "Times are for the whole batch. One writer on one node; a reader on the same node "
          "and a reader on another node take turns, one batch each.\n\n"]
    rows = []
    for r in t["rows"]:
        name = f"{r['count']} × {size_name(r['size'])}"
        cells = [name]
        for k in ["same_node", "other_node"]:
            x = r[k]
            cells += [f"{x['create_s']['median']*1e3:.3g} ({x['create_s']['p99']*1e3:.3g})",
                      f"{x['get_s']['median']*1e3:.3g} ({x['get_s']['p99']*1e3:.3g})",
                      f"{x['read_s']['median']*1e3:.3g} ({x['read_s']['p99']*1e3:.3g})"]
        ratio = r["other_node"]["read_s"]["median"] / r["same_node"]["read_s"]["median"]
        cells.append(f"{ratio:.2f}")
        rows.append(cells)
    md.append(table(["objects", "create+write+seal ms (same)", "get ms (same)", "read ms (same)",
                     "create+write+seal ms (other)", "get ms (other)", "read ms (other)",
                     "read other/same"], rows))
    md.append("\nAim: the reader on another node as fast as the local one (ratio ≈ 1).\n")
    return "".join(md)


def transfer_md(g):
    size = size_name(g["size"])
    md = [f"### get+read of a {size} object (checksum verified; first access and warm median of "
          f"{g['repeats'] - 1})\n\n"]
    rows = []
    names = {"same_node": "gismo, same node", "other_node": "gismo, other node",
             "other_node_populate": "gismo, other node, MADV_POPULATE_READ before reading",
             "network": "network path: TCP stream, 5 MB chunks"}
    for k, label in names.items():
        x = g[k]
        rows.append([label, f"{x['first_s']:.3f}", f"{x['warm_s']['median']:.3f}",
                     f"{x['first_gbps']:.2f}", f"{x['warm_gbps']:.2f}"])
    md.append(table(["variant", "first s", "warm s", "first GB/s", "warm GB/s"], rows))
    r = g["ratios"]
    rows = [
        ["other node / same node (first)", f"{r['other_over_same_first']:.2f}", "≤ 1.2",
         aim(r["other_over_same_first"] <= 1.2)],
        ["other node / same node (warm)", f"{r['other_over_same_warm']:.2f}", "≤ 1.2",
         aim(r["other_over_same_warm"] <= 1.2)],
        ["network / gismo other node (first)", f"{r['network_over_other_first']:.2f}×",
         "≥ 10× (seeds: 6.75×)", aim(r["network_over_other_first"] >= 10)],
        ["network / gismo other node (warm)", f"{r['network_over_other_warm']:.2f}×",
         "≥ 10× (seeds: 6.75×)", aim(r["network_over_other_warm"] >= 10)],
    ]
    md.append("\n" + table(["ratio", "measured", "aim", ""], rows))
    if g.get("note"):
        md.append("\n" + g["note"] + "\n")
    return "".join(md)


def shuffle_md(s):
    md = [f"### Shuffle: {s['nodes']} map and {s['nodes']} reduce tasks, one of each per node, "
          f"{size_name(s['bytes'])} in all (median of {s['repeats']})\n\n"]
    rows = []
    for k, label in [("gismo", "gismo (references)"), ("tcp", "baseline (partitions over TCP)")]:
        x = s[k]
        peaks = ", ".join(size_name(n["mem"]["vm_hwm"]) for n in x["per_node"])
        held = x["pool_used_at_end"] + x["rss_anon_sum_at_end"]
        rows.append([label, f"{x['seconds']['median']:.2f}", f"{x['gbps']:.2f}", peaks,
                     size_name(x["rss_anon_sum_at_end"]), size_name(x["pool_used_at_end"]),
                     size_name(held)])
    md.append(table(["variant", "seconds", "GB/s", "peak RSS per node process (VmHWM)",
                     "private RSS, all nodes, end of reduce", "gismo pool used",
                     "memory held at end of reduce"], rows))
    ratio = s["ratio_tcp_over_gismo"]
    md.append(f"\nSpeed-up of gismo over the network baseline: **{ratio:.2f}×** "
              f"(aim ≥ 4×, seeds 2.8×: {aim(ratio >= 4)}). VmHWM counts the shared region pages a "
              "process touched, so with gismo the same physical page appears in the mapper's and "
              "the reducer's peak; the last column counts each physical byte once.\n")
    return "".join(md)


def memory_md(m):
    g, t = m["gismo"], m["tcp"]
    md = [f"### One {size_name(m['size'])} object read by {m['nodes']} nodes\n\n"]
    rows = [["gismo", size_name(g["pool_bytes_for_object"]), f"{g['copies']:.2f}",
             size_name(g["readers_private_growth_sum"])],
            ["baseline (a copy per node)", size_name(t["bytes_held"]), f"{t['copies']:.2f}",
             size_name(t["readers_private_growth_sum"])]]
    md.append(table(["variant", "memory for the object", "copies",
                     "readers' private memory growth (sum)"], rows))
    md.append("\ngismo: growth of `gismo_usage().used_bytes` while every reader holds the object. "
              "Baseline: the producer's copy plus each other node's received copy.\n")
    return "".join(md)


def redis_md(r):
    g, d = r["gismo"], r["redis"]
    md = [f"### Key-value: 1 KB values, 2 nodes, {r['ops_per_node']:,} sets then gets per node\n\n"]
    rows = []
    for label, x in [("gismo", g), ("Redis (redis-server, hiredis)", d)]:
        rows.append([label, f"{x['set_median_ns']/1e3:.2f}", f"{x['set_p99_ns']/1e3:.2f}",
                     f"{x['get_median_ns']/1e3:.2f}", f"{x['get_p99_ns']/1e3:.2f}",
                     f"{x['set_ops_per_s']:,.0f}", f"{x['get_ops_per_s']:,.0f}"])
    md.append(table(["system", "set median µs", "set p99 µs", "get median µs", "get p99 µs",
                     "set ops/s (2 nodes)", "get ops/s (2 nodes)"], rows))
    q = r["ratios"]
    rows = [[k.replace("_", " "), f"{v:.1f}×", "≥ 20×", aim(v >= 20)] for k, v in q.items()]
    md.append("\n" + table(["gismo faster than Redis", "measured", "aim", ""], rows))
    return "".join(md)


def machine_md(m):
    return (f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, "
            f"Linux {m['kernel']}. Placement: {m['placement']}. Suite took {m['suite_seconds']} s; "
            f"load average at the end: {' '.join(m['loadavg_at_end'])}.\n")


def plots(res, out):
    # Table 1
    t = res["table1"]
    labels = [f"{r['count']}×{size_name(r['size'])}" for r in t["rows"]]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, key, title in zip(axes, ["create_s", "get_s", "read_s"],
                              ["create+write+seal", "get (buffer only)", "read all bytes"]):
        x = range(len(labels))
        for off, k in [(-0.2, "same_node"), (0.2, "other_node")]:
            ax.bar([i + off for i in x], [r[k][key]["median"] * 1e3 for r in t["rows"]], 0.4,
                   label=k.replace("_", " "))
        ax.set_yscale("log")
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, rotation=30)
        ax.set_ylabel("ms per batch (median)")
        ax.set_title(title)
        ax.legend()
    fig.suptitle("Plasma Table 1 on gismo: reader on the same node vs another node")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "table1.png"), dpi=110)
    plt.close(fig)

    # 1 GB transfer
    g = res["gismo"]
    keys = ["same_node", "other_node", "other_node_populate", "network"]
    names = ["gismo\nsame node", "gismo\nother node", "gismo other node\n+POPULATE_READ",
             "network path\n(TCP, 5 MB chunks)"]
    fig, ax = plt.subplots(figsize=(8, 4))
    x = range(len(keys))
    ax.bar([i - 0.2 for i in x], [g[k]["first_s"] for k in keys], 0.4, label="first access")
    ax.bar([i + 0.2 for i in x], [g[k]["warm_s"]["median"] for k in keys], 0.4, label="warm")
    ax.set_xticks(list(x))
    ax.set_xticklabels(names)
    ax.set_ylabel("seconds")
    ax.set_title(f"get+read of a {size_name(g['size'])} object")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "transfer.png"), dpi=110)
    plt.close(fig)

    # Shuffle and memory
    s, m = res["shuffle"], res["memory"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    axes[0].bar(["gismo", "TCP"], [s["gismo"]["seconds"]["median"], s["tcp"]["seconds"]["median"]],
                color=["tab:blue", "tab:orange"])
    axes[0].set_ylabel("seconds")
    axes[0].set_title(f"shuffle of {size_name(s['bytes'])} on {s['nodes']} nodes")
    held = [(s[k]["pool_used_at_end"] + s[k]["rss_anon_sum_at_end"]) / 2**30 for k in ["gismo", "tcp"]]
    axes[1].bar(["gismo", "TCP"], held, color=["tab:blue", "tab:orange"])
    axes[1].set_ylabel("GiB held at end of reduce")
    axes[1].set_title("shuffle memory (each byte once)")
    axes[2].bar(["gismo", "a copy per node"],
                [m["gismo"]["pool_bytes_for_object"] / 2**20, m["tcp"]["bytes_held"] / 2**20],
                color=["tab:blue", "tab:orange"])
    axes[2].set_ylabel("MiB")
    axes[2].set_title(f"one {size_name(m['size'])} object read by {m['nodes']} nodes")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "shuffle_memory.png"), dpi=110)
    plt.close(fig)

    # Redis
    r = res["redis"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    cats = ["set median", "set p99", "get median", "get p99"]
    keys = ["set_median_ns", "set_p99_ns", "get_median_ns", "get_p99_ns"]
    x = range(len(cats))
    for off, k in [(-0.2, "gismo"), (0.2, "redis")]:
        axes[0].bar([i + off for i in x], [r[k][c] / 1e3 for c in keys], 0.4, label=k)
    axes[0].set_yscale("log")
    axes[0].set_xticks(list(x))
    axes[0].set_xticklabels(cats)
    axes[0].set_ylabel("µs")
    axes[0].set_title("1 KB latency")
    axes[0].legend()
    x = range(2)
    for off, k in [(-0.2, "gismo"), (0.2, "redis")]:
        axes[1].bar([i + off for i in x], [r[k]["set_ops_per_s"], r[k]["get_ops_per_s"]], 0.4, label=k)
    axes[1].set_yscale("log")
    axes[1].set_xticks(list(x))
    axes[1].set_xticklabels(["set", "get"])
    axes[1].set_ylabel("ops/s, 2 nodes together")
    axes[1].set_title("1 KB throughput")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "redis.png"), dpi=110)
    plt.close(fig)


DASK_THRESHOLD = 64 << 10  # gismo.dask.DEFAULT_THRESHOLD


def dask_seconds(r):
    """The median run's time, with the range of every run."""
    runs = r.get("runs_seconds", [])
    spread = f" ({min(runs):.3f}–{max(runs):.3f})" if len(runs) > 1 else ""
    return f"{r['seconds']:.3f} s{spread}"


def dask_md(d):
    """Dask with and without gismo.dask (bench/python/bench_dask.py)."""
    md = ["### Dask on gismo (`bench/python/bench_dask.py`)\n\n", d.get("method", ""), "\n\n"]
    rows = []
    for plain, g in zip(d["dask"], d["gismo"]):
        what = (f"move {size_name(plain['bytes'])} between workers" if plain["experiment"] ==
                "transfer" else f"task shuffle of {size_name(plain['bytes'])}")
        aim_ratio = 6.75 if plain["experiment"] == "transfer" else 2.8
        ratio = plain["seconds"] / g["seconds"]
        # Below gismo.dask's threshold both take Dask's own path: that row
        # is the floor, what one dependent task costs the scheduler.
        floor = plain["experiment"] == "transfer" and plain["bytes"] < DASK_THRESHOLD
        rows.append([what + (" (floor: Dask's own path in both)" if floor else ""),
                     dask_seconds(plain), dask_seconds(g), f"{ratio:.2f}×",
                     "—" if floor else f"≥ {aim_ratio}× ({aim(ratio >= aim_ratio)})",
                     f"{plain['wire_bytes'] / 2**20:.1f} / {g['wire_bytes'] / 2**20:.1f} MiB",
                     f"{plain['memory']['total'] / 2**20:.0f} / {g['memory']['total'] / 2**20:.0f} MiB"])
    md.append(table(["what", "Dask", "Dask + gismo", "speed-up", "aim", "wire (Dask / gismo)",
                     "memory (Dask / gismo)"], rows))
    own = []  # what gismo.dask itself spent, summed over the workers
    for g in d["gismo"]:
        stats = list(g.get("gismo_stats", {}).values())
        if stats and "store_seconds" in stats[0]:
            what = (f"move {size_name(g['bytes'])}" if g["experiment"] == "transfer"
                    else f"shuffle {size_name(g['bytes'])}")
            own.append([what] + [f"{sum(s[k] for s in stats):.3f} s" for k in
                                 ("store_seconds", "send_seconds", "receive_seconds")] +
                       [str(sum(s["late_refs"] for s in stats))])
    if own:
        md.append("\n\ngismo.dask's own time, summed over the 4 workers (store: a result "
                  "copied into the region, includes the producer's copy made before the "
                  "timed transfer; send/receive: references through Dask's comms):\n\n")
        md.append(table(["run", "store", "send", "receive", "late references"], own))
    return "".join(md)


def dask_plot(d, out):
    labels = [(f"transfer {size_name(r['bytes'])}" if r["experiment"] == "transfer"
               else f"shuffle {size_name(r['bytes'])}") for r in d["dask"]]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    x = range(len(labels))
    for ax, key, title in [(axes[0], lambda r: r["seconds"], "wall time (s)"),
                           (axes[1], lambda r: r["wire_bytes"] / 2**20, "bytes on the wire (MiB)"),
                           (axes[2], lambda r: r["memory"]["total"] / 2**20,
                            "workers' RssAnon + region used (MiB)")]:
        for off, mode in [(-0.2, "dask"), (0.2, "gismo")]:
            ax.bar([i + off for i in x], [key(r) for r in d[mode]], 0.4,
                   label="Dask" if mode == "dask" else "Dask + gismo.dask")
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, rotation=20)
        ax.set_title(title)
        ax.legend()
    fig.suptitle("Dask on 4 emulated nodes, with and without gismo.dask")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "dask.png"), dpi=110)
    plt.close(fig)


CACHE_LABELS = {"private": "private LRU, C per node", "gismo4C": "gismo, 4C shared",
                "gismoC": "gismo, C shared"}


def cache_md(c):
    """The shared cache (bench/cache_bench.cc)."""
    st = c["setup"]
    md = ["### A shared cache for four database nodes (`gismo_cache_bench`)\n\n",
          f"{st['blocks']} blocks of {st['block_kib']} KiB (zstd-compressed in a file; a miss "
          f"reads and decompresses one), C = {st['cache_blocks']} blocks, "
          f"{st['reads_per_node']} Zipf reads per node, load delay {st['delay_us']} µs; "
          f"nodes: {st['placement']}; load average {' '.join(st.get('loadavg_at_start', []))} "
          f"at the start, {' '.join(st.get('loadavg_at_end', []))} at the end. Memory: the "
          "nodes' private memory (RssAnon) plus the region's used bytes (the ballast that "
          "trims a gismo heap to its size left out). \"for blocks\": what the cache may hold "
          "(gismo: heap minus ballast minus one claim slab page per node).\n\n"]
    rows = []
    for r in c["cache"]:
        cap = (f"4 × {r['cache_capacity_bytes'] / 4 / 2**20:.2f}" if r["mode"] == "private"
               else f"{r['cache_capacity_bytes'] / 2**20:.2f} (heap {r['heap_bytes'] / 2**20:.2f} − "
               f"ballast {r['ballast_bytes'] / 2**20:.2f})")
        rows.append([r["zipf"], r["keys"], CACHE_LABELS[r["mode"]], cap, f"{r['hit_ratio']:.3f}",
                     r["loads"], f"{r['memory_bytes'] / 2**20:.0f}", f"{r['p50_us']:.1f}",
                     f"{r['p99_us']:.1f}"])
    md.append(table(["zipf", "keys", "cache", "for blocks MiB", "hit ratio", "loads",
                     "memory MiB", "p50 µs", "p99 µs"], rows))
    h = c["herd"]
    md.append(f"\nHerd: {h['nodes']} nodes missed the same block at once: {h['loads']} load(s) "
              "(aim: 1).\n")
    return "".join(md)


def cache_plot(c, out):
    groups = []
    for r in c["cache"]:
        g = (r["zipf"], r["keys"])
        if g not in groups:
            groups.append(g)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    x = range(len(groups))
    for ax, key, title in [(axes[0], "hit_ratio", "hit ratio (all nodes)"),
                           (axes[1], "loads", "loads from storage"),
                           (axes[2], "p99_us", "p99 read latency, worst node (µs)")]:
        for off, mode in [(-0.27, "private"), (0, "gismo4C"), (0.27, "gismoC")]:
            vals = []
            for g in groups:
                r = [r for r in c["cache"] if (r["zipf"], r["keys"]) == g and r["mode"] == mode]
                vals.append(r[0][key] if r else 0)
            ax.bar([i + off for i in x], vals, 0.27, label=CACHE_LABELS[mode])
        ax.set_xticks(list(x))
        ax.set_xticklabels([f"zipf {z}\n{k}" for z, k in groups])
        ax.set_title(title)
        if key == "p99_us":
            ax.set_yscale("log")
    axes[0].set_ylim(0, 1)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3)
    fig.suptitle("One gismo cache shared by 4 nodes vs a private LRU per node")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(os.path.join(out, "cache.png"), dpi=110)
    plt.close(fig)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--dask":  # plot.py --dask DASK_JSON OUT_DIR
        with open(sys.argv[2]) as f:
            d = json.load(f)
        with open(os.path.join(sys.argv[3], "dask.md"), "w") as f:
            f.write(dask_md(d))
        dask_plot(d, sys.argv[3])
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--cache":  # plot.py --cache CACHE_JSON OUT_DIR
        with open(sys.argv[2]) as f:
            c = json.load(f)
        with open(os.path.join(sys.argv[3], "cache.md"), "w") as f:
            f.write(cache_md(c))
        cache_plot(c, sys.argv[3])
        return
    path, out = sys.argv[1], sys.argv[2]
    with open(path) as f:
        res = json.load(f)
    md = ["# gismo benchmark results\n\n", "Generated by `bench/run_suite.sh`; numbers from "
          "`results.json`. Aims are printed beside the measurements, never asserted.\n\n",
          issue15_md(res), "\n", machine_md(res["machine"]), "\n", core_md(res["core"]), "\n", table1_md(res["table1"]),
          "\n![Table 1](table1.png)\n\n", transfer_md(res["gismo"]), "\n![transfer](transfer.png)\n\n",
          shuffle_md(res["shuffle"]), "\n", memory_md(res["memory"]),
          "\n![shuffle and memory](shuffle_memory.png)\n\n", redis_md(res["redis"]),
          "\n![redis](redis.png)\n"]
    if "index" in res:
        md += ["\n", index_md(res["index"], res.get("index_before"))]
    if "dask" in res:
        md += ["\n", dask_md(res["dask"]), "\n![dask](dask.png)\n"]
    if "cache" in res:
        md += ["\n", cache_md(res["cache"]), "\n![cache](cache.png)\n"]
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("".join(md))
    plots(res, out)
    if "dask" in res:
        dask_plot(res["dask"], out)
    if "cache" in res:
        cache_plot(res["cache"], out)


if __name__ == "__main__":
    main()
