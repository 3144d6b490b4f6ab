#!/usr/bin/env bash
# gismo.dask across emulated nodes: a dask-scheduler on node 0, a dask-worker
# with `--preload gismo.dask` on nodes 1 and 2, the driver on node 3. An
# array and a DataFrame made on node 1's worker reach node 2's worker by
# reference (same bytes, inside node 2's own mapping of the region, not
# writeable); their objects go when the keys are released; then node 1 dies
# and the object its worker still owned is deleted by its recovery.
# Needs python3-distributed, python3-pandas and the built Python package
# (GISMO_PYTHONPATH); skipped (77) without them.
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "$0")/lib.sh"
: "${GISMO_PYTHONPATH:?}"
PY=/usr/bin/python3
if ! PYTHONPATH=$GISMO_PYTHONPATH $PY -c "import distributed, pandas, gismo._gismo" 2>/dev/null; then
  echo "SKIP: needs python3-distributed, python3-pandas and the gismo Python package"
  exit 77
fi
export PYTHONPATH=$GISMO_PYTHONPATH
t_setup dask --size 512MiB
[[ $T_MODE == vm ]] && { echo "SKIP: no Python in the guests"; exit 77; }

host() {  # host NODE: the node's address
  if [[ $T_MODE == netns ]]; then echo "10.77.$((($$ % 200) + 20)).$(($1 + 1))"; else echo 127.0.0.1; fi
}
port=$((20000 + $$ % 20000))
sched="tcp://$(host 0):$port"
# The active memory manager may drop the producer's replica at any time; the
# test looks at who owns what, so it is off (tests/python/test_dask.py too).
gc exec 0 -- env DASK_DISTRIBUTED__SCHEDULER__ACTIVE_MEMORY_MANAGER__START=False \
  dask-scheduler --host "$(host 0)" --port "$port" --dashboard-address :0 \
  --no-show >"$T_WORK/scheduler.err" 2>&1 &
for n in 1 2; do
  gc exec "$n" -- dask-worker --nthreads 1 --no-nanny --memory-limit 0 --name "w$n" \
    --host "$(host "$n")" --dashboard-address :0 --preload gismo.dask "$sched" \
    >"$T_WORK/w$n.err" 2>&1 &
done

cat >"$T_WORK/driver.py" <<'EOF'
import hashlib, sys, time
import numpy as np, pandas as pd
import gismo
from distributed import Client

def inspect(v):
    import gismo.dask as gd
    base, size = gd._process.client.region_read_view()
    a = v["x"].to_numpy() if hasattr(v, "columns") else v
    addr = a.__array_interface__["data"][0]
    h = (int(pd.util.hash_pandas_object(v).sum()) if hasattr(v, "columns")
         else hashlib.sha256(a.tobytes()).hexdigest())
    return h, base <= addr < base + size, bool(a.flags.writeable)

def frame(n):
    rng = np.random.default_rng(5)
    return pd.DataFrame({"x": rng.random(n), "y": np.arange(n)})

def owned(dask_worker):
    return {k: o.hex() for k, o in dask_worker.data.owned().items()}

c = Client(sys.argv[1], timeout=60)
c.wait_for_workers(2, timeout=120)
w = {v["name"]: a for a, v in c.scheduler_info()["workers"].items()}
g = gismo.connect()
x = c.submit(np.arange, 1 << 22, dtype=np.float64, workers=[w["w1"]], pure=False)
df = c.submit(frame, 1 << 18, workers=[w["w1"]], pure=False)
got = c.submit(inspect, x, workers=[w["w2"]], pure=False).result()
assert got == (hashlib.sha256(np.arange(1 << 22, dtype=np.float64).tobytes()).hexdigest(),
               True, False), got
got = c.submit(inspect, df, workers=[w["w2"]], pure=False).result()
assert got == (int(pd.util.hash_pandas_object(frame(1 << 18)).sum()), True, False), got
print("by reference: ok", flush=True)
mine = c.run(owned, workers=[w["w1"]])[w["w1"]]
oids = [gismo.ObjectID.from_hex(mine[f.key]) for f in (x, df)]
assert all(g.contains(o) for o in oids)
del x, df
deadline = time.monotonic() + 60
while any(g.contains(o) for o in oids):
    assert time.monotonic() < deadline, "objects outlived their keys"
    time.sleep(0.02)
print("released: ok", flush=True)
keep = c.submit(np.ones, 1 << 20, workers=[w["w1"]], pure=False)
keep.result()
print("owned", c.run(owned, workers=[w["w1"]])[w["w1"]][keep.key], flush=True)
sys.stdin.read()  # until node 1 is dead
EOF

coproc DRIVER { exec timeout 200 "$GISMO_CLUSTER_BIN" --name "$T_NAME" exec 3 -- $PY "$T_WORK/driver.py" "$sched" 2>"$T_WORK/driver.err"; }
expect_line() {
  local line
  IFS= read -r -t 150 line <&"${DRIVER[0]}" || fail "driver: no '$1' ($(tail -5 "$T_WORK/driver.err"))"
  [[ $line == "$1"* ]] || fail "driver said '$line', expected '$1'"
  R=$line
}
expect_line "by reference: ok"
log "$R"
expect_line "released: ok"
log "$R"
expect_line "owned "
oid=${R#owned }
log "node 1's worker owns $oid"

gc kill 1 || fail "gismo-cluster kill 1 failed"
t_node_fenced 1
gone() { gc exec 4 -- $PY -c "
import sys, gismo
c = gismo.connect()
sys.exit(1 if c.contains(gismo.ObjectID.from_hex('$oid')) else 0)"; }
wait_for 60 "node 1's owned object to be deleted by its recovery" gone
log "the dead worker's object is gone"
exec {DRIVER[1]}>&-
wait "$DRIVER_PID" 2>/dev/null || true
log "PASS"
