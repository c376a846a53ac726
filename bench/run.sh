#!/usr/bin/env bash
# Runs every Relaycast benchmark on this machine and prints one JSON line per result.
#   bash bench/run.sh            # all scenarios; results also in bench/results.jsonl
#   bash bench/run.sh blobs      # one group: fanout, store, engine, pairs, idle, history, cluster, blobs or media
# Servers bind to 127.0.0.1 only; every load loop is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p relaycast -p relaycast-bench
source bench/lib.sh
ONLY=${1:-}
OUT=bench/results${ONLY:+-$ONLY}.jsonl
: > "$OUT"

# Relaycast as deployed (durable redb store), with limits opened for load (bench/lib.sh).
start_relaycast() {
  RC_PORT=$(free_port)
  "$BIN/relaycast" --bind "127.0.0.1:$RC_PORT" --data-dir "${RC_DATA:-$DATA/$RC_PORT}" --static-dir "$DATA/none" \
    "${LOAD_FLAGS[@]}" "${OPEN_LIMITS[@]}" --log warn "$@" > "$DATA/relaycast-$RC_PORT.log" 2>&1 &
  RC_PID=$!; PIDS+=("$RC_PID"); wait_port "$RC_PORT"
}
stop_relaycast() { kill "$RC_PID"; wait "$RC_PID" 2>/dev/null || true; }

# Redis as the tests run it: AOF fsynced on every write (sets REDIS_PORT, once).
start_redis() {
  [ -n "${REDIS_PORT:-}" ] && return 0
  REDIS_PORT=$(free_port); mkdir -p "$DATA/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always \
    --dir "$DATA/redis" > "$DATA/redis.log" 2>&1 &
  REDIS_PID=$!; PIDS+=("$REDIS_PID"); wait_port "$REDIS_PORT"
}

# Node's ws and socket.io relays (bench/node/), with the bare relay's room semantics; their
# packages are installed on first use. Sets WS_PORT and SIO_PORT, or neither without Node.
start_node_references() {
  [ -n "${WS_PORT:-}" ] && return 0
  if ! command -v node > /dev/null; then echo "node is not installed: skipping the Node references" >&2; return 0; fi
  [ -d bench/node/node_modules ] || (cd bench/node && npm ci --no-audit --no-fund > /dev/null)
  WS_PORT=$(free_port); node bench/node/ws-relay.js "127.0.0.1:$WS_PORT" > /dev/null &
  WS_PID=$!; PIDS+=("$WS_PID"); wait_port "$WS_PORT"
  SIO_PORT=$(free_port); node bench/node/socketio-relay.js "127.0.0.1:$SIO_PORT" > /dev/null &
  SIO_PID=$!; PIDS+=("$SIO_PID"); wait_port "$SIO_PORT"
}

REF_PORT=$(free_port)
"$BIN/relaycast-bench" reference --bind "127.0.0.1:$REF_PORT" > /dev/null &
REF_PID=$!; PIDS+=("$REF_PID"); wait_port "$REF_PORT"

run() { timeout 300 "$BIN/relaycast-bench" "$@" | tee -a "$OUT"; }
want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }

# Fan-out 1 -> 100 and 1 -> 1,000, Relaycast and the bare relay alternating to share any
# machine noise; then paced (2,000 msg/s to 100) for latency, durable and --memory, the bare
# relay's being this machine's floor.
if want fanout; then
  start_relaycast
  for i in 1 2 3; do
    run fanout --url "ws://127.0.0.1:$RC_PORT/ws" --server-pid "$RC_PID"
    run fanout --speak bare --url "ws://127.0.0.1:$REF_PORT/" --server-pid "$REF_PID"
  done
  for i in 1 2 3; do
    run fanout --url "ws://127.0.0.1:$RC_PORT/ws" --server-pid "$RC_PID" --subscribers 1000 --messages 20000
    run fanout --speak bare --url "ws://127.0.0.1:$REF_PORT/" --server-pid "$REF_PID" --subscribers 1000 --messages 20000
  done
  # Paced, --memory too: its latency over the bare relay's is the engine's and the frames';
  # durable's over --memory's is the commit's (a batch waits for its fdatasync).
  DUR_PORT=$RC_PORT; DUR_PID=$RC_PID
  start_relaycast --memory; MEM_PORT=$RC_PORT; MEM_PID=$RC_PID
  for i in 1 2 3; do
    run fanout --url "ws://127.0.0.1:$DUR_PORT/ws" --rate 2000 --messages 20000
    run fanout --url "ws://127.0.0.1:$MEM_PORT/ws" --rate 2000 --messages 20000 --label relaycast-memory
    run fanout --speak bare --url "ws://127.0.0.1:$REF_PORT/" --rate 2000 --messages 20000
  done
  kill "$DUR_PID" "$MEM_PID"; wait "$DUR_PID" "$MEM_PID" 2>/dev/null || true
fi

# The durable store's fold into redb: many small rooms' messages in arrival order, against
# the same in key order (no server; a fresh store in the temporary directory each time).
if want store; then
  run store-fold
fi

# The engine alone, many small rooms' messages on one thread without sockets or store IO,
# against the least an in-process relay does: Relaycast's own work per message.
if want engine; then
  run engine --repeats 7
fi

# Pairs (500 rooms of two ping-ponging): Relaycast durable, --memory and on Redis (one node),
# the bare relay, and Node's ws and socket.io relays, alternating, each with its own and the
# generator's CPU.
if want pairs; then
  start_relaycast; DUR_PORT=$RC_PORT; DUR_PID=$RC_PID
  start_relaycast --memory; MEM_PORT=$RC_PORT; MEM_PID=$RC_PID
  start_redis
  start_relaycast --memory --redis "redis://127.0.0.1:$REDIS_PORT/" --node-id bench-pairs; RED_PORT=$RC_PORT; RED_PID=$RC_PID
  start_node_references
  for i in 1 2 3; do
    run pairs --url "ws://127.0.0.1:$DUR_PORT/ws" --server-pid "$DUR_PID" --label relaycast-durable
    run pairs --url "ws://127.0.0.1:$MEM_PORT/ws" --server-pid "$MEM_PID" --label relaycast-memory
    run pairs --url "ws://127.0.0.1:$RED_PORT/ws" --server-pid "$RED_PID" --store-pid "$REDIS_PID" --label relaycast-redis-1-node
    run pairs --speak bare --url "ws://127.0.0.1:$REF_PORT" --server-pid "$REF_PID"
    if [ -n "${WS_PORT:-}" ]; then
      run pairs --speak bare --url "ws://127.0.0.1:$WS_PORT" --server-pid "$WS_PID" --label node-ws
      run pairs --speak socket-io --url "ws://127.0.0.1:$SIO_PORT" --server-pid "$SIO_PID" --label node-socket.io
    fi
  done
  kill "$DUR_PID" "$MEM_PID" "$RED_PID"; wait "$DUR_PID" "$MEM_PID" "$RED_PID" 2>/dev/null || true
fi

# Idle joined connections: 5,000, then as many as this machine's open-file limit lets one
# process hold (IDLE_MAX, default 17,000 under a 20,000 limit; 100,000 needs a hard open-file limit
# above 100,000 for both processes), from several loopback source addresses.
if want idle; then
  start_relaycast
  run idle --url "ws://127.0.0.1:$RC_PORT/ws" --server-pid "$RC_PID"
  stop_relaycast
  # The same 5,000 on the bare relay and Node's relays (each in a fresh process of its own).
  IDLE_REF_PORT=$(free_port)
  "$BIN/relaycast-bench" reference --bind "127.0.0.1:$IDLE_REF_PORT" > /dev/null &
  IDLE_REF_PID=$!; PIDS+=("$IDLE_REF_PID"); wait_port "$IDLE_REF_PORT"
  run idle --speak bare --url "ws://127.0.0.1:$IDLE_REF_PORT" --server-pid "$IDLE_REF_PID"
  kill "$IDLE_REF_PID"
  start_node_references
  if [ -n "${WS_PORT:-}" ]; then
    run idle --speak bare --url "ws://127.0.0.1:$WS_PORT" --server-pid "$WS_PID" --label node-ws
    run idle --speak socket-io --url "ws://127.0.0.1:$SIO_PORT" --server-pid "$SIO_PID" --label node-socket.io
  fi
  start_relaycast --max-connections "${IDLE_MAX:-17000}"
  run idle --url "ws://127.0.0.1:$RC_PORT/ws" --server-pid "$RC_PID" --connections "${IDLE_MAX:-17000}" --sources 8
  stop_relaycast
fi

if want history; then
  start_relaycast
  run history --url "ws://127.0.0.1:$RC_PORT/ws"
  stop_relaycast
fi

# Cluster mode: the same fan-out and pairs on one node with its embedded store (redb), one
# node on Redis, and two nodes on Redis with the subscribers (or each pair's answering side)
# on the other node; then paced cross-node latency, Redis's own work per message, and the CPU
# each process used (they all share the 2 cores). Redis runs as the tests run it: AOF fsynced
# on every write.
if want cluster; then
  start_redis
  start_relaycast; EMB=$RC_PORT; EMB_PID=$RC_PID
  start_relaycast --memory --redis "redis://127.0.0.1:$REDIS_PORT/" --node-id bench-a; NODE_A=$RC_PORT; PID_A=$RC_PID
  start_relaycast --memory --redis "redis://127.0.0.1:$REDIS_PORT/" --node-id bench-b; NODE_B=$RC_PORT; PID_B=$RC_PID
  ws() { echo "ws://127.0.0.1:$1/ws"; }
  for i in 1 2; do
    run fanout --label embedded --url "$(ws $EMB)" --server-pid "$EMB_PID"
    run fanout --label redis-1-node --url "$(ws $NODE_A)" --server-pid "$PID_A" --store-pid "$REDIS_PID"
    run fanout --label redis-2-nodes --url "$(ws $NODE_A)" --sub-url "$(ws $NODE_A)" --sub-url "$(ws $NODE_B)"
  done
  # Redis's work and every process's CPU during one two-node fan-out (20,000 messages).
  cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
  redis_stat() { redis-cli -p "$REDIS_PORT" INFO stats | tr -d '\r' | awk -F: -v k="$1" '$1 == k {print $2}'; }
  C0=$(redis_stat total_commands_processed); I0=$(redis_stat total_net_input_bytes); O0=$(redis_stat total_net_output_bytes)
  R0=$(cpu "$REDIS_PID"); A0=$(cpu "$PID_A"); B0=$(cpu "$PID_B"); T0=$(date +%s.%N)
  run fanout --label redis-2-nodes --url "$(ws $NODE_A)" --sub-url "$(ws $NODE_A)" --sub-url "$(ws $NODE_B)"
  T1=$(date +%s.%N); R1=$(cpu "$REDIS_PID"); A1=$(cpu "$PID_A"); B1=$(cpu "$PID_B")
  C1=$(redis_stat total_commands_processed); I1=$(redis_stat total_net_input_bytes); O1=$(redis_stat total_net_output_bytes)
  python3 -c "
import json, os
hz = os.sysconf('SC_CLK_TCK'); n = 20000; wall = $T1 - $T0
line = {'scenario': 'redis_per_message', 'messages': n,
        'commands_per_message': round(($C1 - $C0) / n, 2),
        'bytes_in_per_message': round(($I1 - $I0) / n), 'bytes_out_per_message': round(($O1 - $O0) / n),
        'cpu_share_of_wall': {'redis': round(($R1 - $R0) / hz / wall, 2), 'node_a': round(($A1 - $A0) / hz / wall, 2),
                              'node_b': round(($B1 - $B0) / hz / wall, 2)}, 'wall_seconds': round(wall, 2)}
print(json.dumps(line))" | tee -a "$OUT"
  # Cross-node latency: publisher on one node, every subscriber on the other, 2,000 msg/s.
  for i in 1 2; do
    run fanout --label redis-2-nodes --url "$(ws $NODE_A)" --sub-url "$(ws $NODE_B)" --rate 2000 --messages 20000
  done
  run fanout --label embedded --url "$(ws $EMB)" --rate 2000 --messages 20000
  run pairs --label embedded --url "$(ws $EMB)" --pairs 500 --rounds 100 --server-pid "$EMB_PID"
  run pairs --label redis-1-node --url "$(ws $NODE_A)" --pairs 500 --rounds 100 --server-pid "$PID_A" --store-pid "$REDIS_PID"
  run pairs --label redis-2-nodes --url "$(ws $NODE_A)" --pong-url "$(ws $NODE_B)" --pairs 500 --rounds 100
fi

# Blob cache: uploads, then downloads next to nginx (Debian's package) serving the same file
# from its own root with sendfile, alternating; nginx runs with its defaults (a worker per core).
# Then the same downloads over https: Relaycast restarted on the same store with --tls-cert,
# and nginx's ssl server, both with one self-signed certificate the client pins.
if ! want blobs; then
  :
elif command -v nginx > /dev/null; then
  chmod 755 "$DATA"; mkdir -p "$DATA/www" "$DATA/nginx-tmp"; chmod 755 "$DATA/www"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$DATA/key.pem" -out "$DATA/cert.pem" 2> /dev/null
  chmod 644 "$DATA/key.pem"
  FINGERPRINT=$(openssl x509 -in "$DATA/cert.pem" -noout -fingerprint -sha256 | cut -d= -f2)
  NG_PORT=$(free_port)
  NG_TLS_PORT=$(free_port)
  cat > "$DATA/nginx.conf" <<NG
worker_processes auto;
pid $DATA/nginx.pid;
error_log $DATA/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on; tcp_nopush on;
  client_body_temp_path $DATA/nginx-tmp; proxy_temp_path $DATA/nginx-tmp; fastcgi_temp_path $DATA/nginx-tmp;
  uwsgi_temp_path $DATA/nginx-tmp; scgi_temp_path $DATA/nginx-tmp;
  server { listen 127.0.0.1:$NG_PORT; root $DATA/www; }
  server { listen 127.0.0.1:$NG_TLS_PORT ssl; root $DATA/www;
           ssl_certificate $DATA/cert.pem; ssl_certificate_key $DATA/key.pem; }
}
NG
  nginx -c "$DATA/nginx.conf" -g 'daemon off;' & PIDS+=("$!"); wait_port "$NG_PORT"
  RC_DATA="$DATA/blob-store"
  start_relaycast
  run blobs --relaycast "127.0.0.1:$RC_PORT" --nginx "127.0.0.1:$NG_PORT" --file "$DATA/www/bench.bin"
  stop_relaycast
  start_relaycast --tls-cert "$DATA/cert.pem" --tls-key "$DATA/key.pem"
  run blobs --relaycast "127.0.0.1:$RC_PORT" --nginx "127.0.0.1:$NG_TLS_PORT" --file "$DATA/www/bench.bin" \
    --tls-fingerprint "$FINGERPRINT"
  stop_relaycast
  unset RC_DATA
else
  echo "nginx is not installed (scripts/dev setup installs it): skipping the blob download comparison" >&2
fi

# Media relay: one synthetic publisher (1 Mbit/s video + 64 kbit/s audio), N viewers in the
# load generator, all real WebRTC peers over loopback.
if want media; then
  RC_PORT=$(free_port)
  "$BIN/relaycast" --bind "127.0.0.1:$RC_PORT" --memory --static-dir "$DATA/none" --stream-key bench=bench-stream-key \
    --media-max-viewers 1000 --media-max-sessions-per-ip 100000 "${OPEN_LIMITS[@]}" \
    --log warn > "$DATA/relaycast-media.log" 2>&1 &
  RC_PID=$!; PIDS+=("$RC_PID"); wait_port "$RC_PORT"
  ulimit -n 65536 2>/dev/null || true
  run media --server "http://127.0.0.1:$RC_PORT" --key bench-stream-key --server-pid "$RC_PID" \
    --viewers "${MEDIA_VIEWERS:-50,100,200,300,400}" --seconds 10
  kill "$RC_PID"; wait "$RC_PID" 2>/dev/null || true
fi

python3 - "$OUT" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
for scenario in ("blob_download", "blob_download_tls"):
    dl = lambda t: [r["mib_per_sec"] for r in rows if r["scenario"] == scenario and r["target"] == t]
    if dl("relaycast") and dl("nginx"):
        line = {"scenario": scenario + "_ratio", "relaycast_median": statistics.median(dl("relaycast")),
                "nginx_median": statistics.median(dl("nginx")),
                "ratio": round(statistics.median(dl("relaycast")) / statistics.median(dl("nginx")), 3)}
        print(json.dumps(line))
        open(sys.argv[1], "a").write(json.dumps(line) + "\n")
def emit(line):
    print(json.dumps(line))
    open(sys.argv[1], "a").write(json.dumps(line) + "\n")
# Fan-out: medians of Relaycast and the bare relay at each size, and their ratio.
for subs in sorted({r["subscribers"] for r in rows if r["scenario"] == "fanout"}):
    best = lambda t: [r["deliveries_per_sec"] for r in rows if r["scenario"] == "fanout" and r["target"] == t
                      and r["paced_rate"] is None and r["subscribers"] == subs]
    rc, ref = best("relaycast"), best("reference")
    if rc and ref:
        emit({"scenario": "fanout_ratio", "subscribers": subs, "relaycast_median": statistics.median(rc),
              "reference_median": statistics.median(ref), "ratio": round(statistics.median(rc) / statistics.median(ref), 3)})
# Pairs: each setup's medians, and its ratio to the bare relay's median.
pairs = [r for r in rows if r["scenario"] == "pairs"]
ref = [r["round_trips_per_sec"] for r in pairs if r["target"] == "reference"]
for target in dict.fromkeys(r["target"] for r in pairs):
    mine = [r for r in pairs if r["target"] == target]
    med = lambda f: statistics.median(f(r) for r in mine)
    line = {"scenario": "pairs_summary", "target": target, "runs": len(mine),
            "round_trips_per_sec": med(lambda r: r["round_trips_per_sec"]),
            "rtt_p50_ms": med(lambda r: r["rtt_ms"]["p50"]),
            "server_us_per_delivery": med(lambda r: r["cpu"]["server_us_per_delivery"] or 0)}
    if ref:
        line["x_bare_relay"] = round(line["round_trips_per_sec"] / statistics.median(ref), 3)
    emit(line)
PY
