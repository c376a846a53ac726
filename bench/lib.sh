# Shared by run.sh and compare.sh (sourced): a scratch directory and the processes started,
# both cleaned up on exit; free loopback ports; and the flags that open Relaycast's limits for
# a load generator whose every client is 127.0.0.1.
BIN=target/release
DATA=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$DATA"; }
trap cleanup EXIT
# As many open files as this shell may have (its hard limit; 20,000 on the machine the results
# were taken on).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# The load generators connect without tokens: open mode (an environment variable, which builds
# from before token mode ignore, unlike an unknown flag).
export RELAYCAST_AUTH=open

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

# No per-connection message rate limit, rooms of up to 1,001 (a publisher and 1,000
# subscribers), a history that holds the history scenario's 10,000 messages.
LOAD_FLAGS=(--messages-per-second 0 --max-peers-per-room 1001 --history-max-messages 20000 --history-max-bytes 16777216)
# The per-address limits (builds that have them).
OPEN_LIMITS=(--max-connections-per-ip 100000 --connections-per-ip-per-second 0 --joins-per-second 0
  --rooms-per-ip-per-minute 0 --max-rooms-per-ip 1000000)
