#!/usr/bin/env bash
# Compares two builds of Relaycast in one run, next to the bare reference server, so that a
# change's cost is a ratio measured under the same machine noise:
#   bash bench/compare.sh /path/to/relaycast-before /path/to/relaycast-after
# Fan-out (1 -> 100 and 1 -> 1,000, unpaced), paced fan-out (2,000 msg/s to 100: latency) and pairs (500 x 200
# round trips), alternating before, after (and the reference), three times each; one JSON line
# per result, then the medians and ratios.
# Servers bind to 127.0.0.1 only; every load loop is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=$1
AFTER=$2
cargo build --release -q -p relaycast-bench
source bench/lib.sh

# The same flags for both (the per-address limits are opened where the build has them). Sets
# PORT and PID (not run in a subshell, so that the server's pid reaches PIDS and the cleanup).
start() {
  local bin=$1 port
  port=$(free_port)
  local extra=()
  if "$bin" --help | grep -q -- --max-connections-per-ip; then extra=("${OPEN_LIMITS[@]}"); fi
  "$bin" --bind "127.0.0.1:$port" --data-dir "$DATA/$port" --static-dir "$DATA/none" "${LOAD_FLAGS[@]}" \
    --log warn "${extra[@]}" > "$DATA/$port.log" 2>&1 &
  PID=$!; PIDS+=("$PID"); wait_port "$port"; PORT=$port
}
start "$BEFORE"; B_PORT=$PORT; B_PID=$PID
start "$AFTER"; A_PORT=$PORT; A_PID=$PID
REF_PORT=$(free_port)
"$BIN/relaycast-bench" reference --bind "127.0.0.1:$REF_PORT" > /dev/null & REF_PID=$!; PIDS+=("$REF_PID"); wait_port "$REF_PORT"

OUT=$DATA/results.jsonl
tag() { python3 -c 'import json,sys; t=sys.argv[1]
for l in sys.stdin: r=json.loads(l); r["build"]=t; print(json.dumps(r))' "$1" | tee -a "$OUT"; }
for i in 1 2 3; do
  for fan in "--subscribers 100" "--subscribers 1000 --messages 20000"; do
    timeout 300 "$BIN/relaycast-bench" fanout $fan --url "ws://127.0.0.1:$B_PORT/ws" --server-pid "$B_PID" | tag before
    timeout 300 "$BIN/relaycast-bench" fanout $fan --url "ws://127.0.0.1:$A_PORT/ws" --server-pid "$A_PID" | tag after
    timeout 300 "$BIN/relaycast-bench" fanout $fan --speak bare --url "ws://127.0.0.1:$REF_PORT/" --server-pid "$REF_PID" | tag reference
  done
done
for i in 1 2 3; do
  timeout 300 "$BIN/relaycast-bench" fanout --url "ws://127.0.0.1:$B_PORT/ws" --rate 2000 --messages 20000 | tag before
  timeout 300 "$BIN/relaycast-bench" fanout --url "ws://127.0.0.1:$A_PORT/ws" --rate 2000 --messages 20000 | tag after
done
for i in 1 2 3; do
  timeout 300 "$BIN/relaycast-bench" pairs --url "ws://127.0.0.1:$B_PORT/ws" --server-pid "$B_PID" | tag before
  timeout 300 "$BIN/relaycast-bench" pairs --url "ws://127.0.0.1:$A_PORT/ws" --server-pid "$A_PID" | tag after
done
python3 - "$OUT" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(scenario, build, key, paced=False, subscribers=None):
    v = [r[key] if not isinstance(key, tuple) else r[key[0]][key[1]] for r in rows
         if r["scenario"] == scenario and r["build"] == build and (r.get("paced_rate") is not None) == paced
         and subscribers in (None, r.get("subscribers"))]
    return statistics.median(v) if v else None
lat = {b: med("fanout", b, ("latency_ms", "p99"), paced=True) for b in ("before", "after")}
print(json.dumps({"scenario": "compare_paced_p99_ms", **lat}))
p = {b: med("pairs", b, "round_trips_per_sec") for b in ("before", "after")}
cpu = {b: med("pairs", b, ("cpu", "server_us_per_delivery")) for b in ("before", "after")}
for subs in (100, 1000):
    f = {b: med("fanout", b, "deliveries_per_sec", subscribers=subs) for b in ("before", "after", "reference")}
    fcpu = {b: med("fanout", b, ("cpu", "server_us_per_delivery"), subscribers=subs) for b in ("before", "after", "reference")}
    print(json.dumps({"scenario": "compare_fanout", "subscribers": subs, **f,
                      "before_vs_reference": round(f["before"] / f["reference"], 3),
                      "after_vs_reference": round(f["after"] / f["reference"], 3),
                      "after_vs_before": round(f["after"] / f["before"], 3), "server_us_per_delivery": fcpu}))
print(json.dumps({"scenario": "compare_pairs", **p, "after_vs_before": round(p["after"] / p["before"], 3),
                  "server_us_per_delivery": cpu}))
PY
