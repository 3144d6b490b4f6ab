# Shared by the failure tests on gismo-cluster; sourced after
# tests/cluster/lib.sh (agents, wait_for, t_setup), not run.
#
# Needs GISMO_TORTURE_BIN; GISMO_FSCK_BIN may be empty (gismo-fsck not built
# yet: the region checks are then skipped, and say so).
declare -A WORKER_PID=()
ADDRESS_FILE=""  # when set, workers re-read the manager address from it

# start_worker NODE ID SECONDS: a torture worker on NODE (0 s: until killed),
# journaling into $JDIR/ID.
start_worker() {
  local node=$1 id=$2 secs=$3
  (
    for fd in "${AGENT_W[@]}" "${AGENT_R[@]}"; do eval "exec $fd>&-"; done
    args=(worker --tag "$T_NAME" --journal "$JDIR/$id" --seed "$((node * 7919 + ${#id}))"
      --seconds "$secs")
    [[ -n $ADDRESS_FILE ]] && args+=(--address-file "$ADDRESS_FILE")
    exec "$GISMO_CLUSTER_BIN" --name "$T_NAME" exec "$node" -- "$GISMO_TORTURE_BIN" "${args[@]}" \
      </dev/null >"$T_WORK/$id.out" 2>"$T_WORK/$id.err"
  ) &
  WORKER_PID[$id]=$!
}

# journal_has ID LINES: the worker's journal has at least LINES records.
journal_has() {
  [[ -f $JDIR/$1.log ]] && (($(wc -l <"$JDIR/$1.log") >= $2))
}

# wait_worker ID: the worker must end by itself, successfully.
wait_worker() {
  local rc=0
  wait "${WORKER_PID[$1]}" || rc=$?
  unset "WORKER_PID[$1]"
  ((rc == 0)) || fail "worker $1 exited $rc: $(tail -n 5 "$T_WORK/$1.err")"
}

manager_address() { gc env 0 | sed -n 's/^GISMO_ADDRESS=//p'; }

# torture_check NODE OTHERS: the end-of-run check of the workers' objects,
# run on NODE while OTHERS other clients (the agents) stay connected.
torture_check() {
  local args=(check --tag "$T_NAME" --journal-dir "$JDIR" --others "$2" --idle-timeout 30)
  if [[ -n ${GISMO_FSCK_BIN:-} && -x ${GISMO_FSCK_BIN:-} ]]; then
    args+=(--fsck "$GISMO_FSCK_BIN")
  else
    args+=(--fsck "")
  fi
  local out rc=0
  out=$(gc exec "$1" -- "$GISMO_TORTURE_BIN" "${args[@]}" 2>&1) || rc=$?
  echo "$out" | sed 's/^/    check: /'
  ((rc == 0)) || fail "gismo-torture check failed (exit $rc)"
}

have_fsck() { [[ -n ${GISMO_FSCK_BIN:-} && -x ${GISMO_FSCK_BIN:-} ]]; }

fsck_online() {
  have_fsck || { log "gismo-fsck not built: online region check skipped"; return 0; }
  local out rc=0
  out=$("$GISMO_FSCK_BIN" --address "$(manager_address)" 2>&1) || rc=$?
  echo "    fsck: $out"
  ((rc == 0)) || fail "gismo-fsck (online) exited $rc"
}

# Takes the cluster down (keeping the region) and checks the region offline.
fsck_offline_after_down() {
  gc down --keep-region >/dev/null || fail "gismo-cluster down failed"
  have_fsck || { log "gismo-fsck not built: offline region check skipped"; return 0; }
  local out rc=0
  out=$("$GISMO_FSCK_BIN" --region "$T_REGION" 2>&1) || rc=$?
  echo "    fsck: $out"
  ((rc == 0)) || fail "gismo-fsck (offline) exited $rc"
}
