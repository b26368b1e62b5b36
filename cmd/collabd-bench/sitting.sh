#!/usr/bin/env bash
# sitting.sh: one benchmark sitting, collabd beside Centrifugo, every run on a freshly
# started server, on loopback ports that stay clear of the defaults. Run it from the
# repository root:
#
#   cmd/collabd-bench/sitting.sh [OUT]
#
# It builds collabd, collabd-bench and nats-server from this tree and Centrifugo v6.9.1 from
# the Go module proxy (once, into $CENTRIFUGO_DIR), then runs the workloads of
# docs/benchmarks.md and prints the table. The JSON summaries and server logs stay in OUT.
# Set RUNS to choose workloads, e.g. RUNS="fanout-10 idle-10k"; BEFORE=/path/to/collabd adds
# an older build's fan-out rows.
set -euo pipefail

OUT=${1:-$(mktemp -d /tmp/collabd-sitting.XXXXXX)}
BIN=${BIN:-/tmp/collabd-bench-bin}
CENTRIFUGO_DIR=${CENTRIFUGO_DIR:-/tmp/collabd-bench-centrifugo}
RUNS=${RUNS:-"fanout-10 fanout-30 fanout-50 fanout-10-x2 idle-10k idle-19k pprof-30"}
mkdir -p "$OUT" "$BIN" "$CENTRIFUGO_DIR"
ulimit -n "$(ulimit -Hn)"

go build -o "$BIN/collabd" ./cmd/collabd
go build -tags pprof -o "$BIN/collabd-pprof" ./cmd/collabd
go build -o "$BIN/collabd-bench" ./cmd/collabd-bench
go build -o "$BIN/nats-server" github.com/nats-io/nats-server/v2
if [[ ! -x $CENTRIFUGO_DIR/centrifugo ]]; then
  (cd "$CENTRIFUGO_DIR" && GOFLAGS=-mod=mod GOBIN=$CENTRIFUGO_DIR go install github.com/centrifugal/centrifugo/v6@v6.9.1)
fi
cat >"$CENTRIFUGO_DIR/config.json" <<'EOF'
{
  "http_server": {"address": "127.0.0.1", "port": 18000},
  "client": {"token": {"hmac_secret_key": "bench-secret"}},
  "channel": {"namespaces": [
    {"name": "doc", "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true}
  ]}
}
EOF

IPS=127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8,127.0.0.9
FANOUT="-clients 20 -rate 30 -warmup 3s -duration 8s -drain 2s"
IDLE="-mode idle -clients 20 -settle 5s -duration 3s -source-ips $IPS"

waitport() { for _ in $(seq 100); do (: >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 not open" >&2; return 1; }

# one NAME PORT "BENCH FLAGS" SERVER COMMAND...: start the server, run the tool, stop it.
one() {
  local name=$1 port=$2 flags=$3; shift 3
  "$@" >>"$OUT/$name.log" 2>&1 & local pid=$!
  waitport "$port"
  "$BIN/collabd-bench" -url "ws://127.0.0.1:$port" $flags -server-pid $pid -label "$name" -quiet >"$OUT/$name.json"
  kill $pid; wait $pid || true
}
collabd() { exec "$BIN/collabd" -addr 127.0.0.1:18080 -nats-listen off -log-level warn -max-conns-per-ip 20000 "$@"; }
# BEFORE=path runs an older collabd binary beside the others, for before/after figures.
before() { exec "$BEFORE" -addr 127.0.0.1:18080 -nats-listen off -log-level warn; }
centrifugo() { exec "$CENTRIFUGO_DIR/centrifugo" -c "$CENTRIFUGO_DIR/config.json"; }
CF="-adapter centrifugo -centrifugo-secret bench-secret"

# two DOCS: two collabd instances on one nats-server, client i of a document on instance i mod 2.
two() {
  "$BIN/nats-server" -a 127.0.0.1 -p 14222 >>"$OUT/nats.log" 2>&1 & local np=$!; waitport 14222
  "$BIN/collabd" -addr 127.0.0.1:18080 -nats nats://127.0.0.1:14222 -log-level warn >>"$OUT/x2.log" 2>&1 & local pa=$!
  "$BIN/collabd" -addr 127.0.0.1:18081 -nats nats://127.0.0.1:14222 -log-level warn >>"$OUT/x2.log" 2>&1 & local pb=$!
  waitport 18080; waitport 18081; sleep 1.5 # the instances hear each other's heartbeats
  "$BIN/collabd-bench" -url ws://127.0.0.1:18080,ws://127.0.0.1:18081 -docs "$1" $FANOUT \
    -server-pid $pa,$pb,$np -label "collabd-x2 fanout-$1" -quiet >"$OUT/collabd-x2-fanout-$1.json"
  kill $pa $pb; wait $pa $pb || true; kill $np; wait $np || true
}

# pprof DOCS: an 8 s CPU profile of collabd in the middle of a fan-out run.
pprof() {
  COLLABD_PPROF=127.0.0.1:16060 "$BIN/collabd-pprof" -addr 127.0.0.1:18080 -nats-listen off -log-level warn >>"$OUT/pprof.log" 2>&1 & local pid=$!
  waitport 18080
  "$BIN/collabd-bench" -url ws://127.0.0.1:18080 -docs "$1" $FANOUT -server-pid $pid -label "collabd pprof fanout-$1" -quiet >"$OUT/collabd-pprof-fanout-$1.json" &
  local bp=$!
  sleep 5
  curl -s -o "$OUT/collabd-fanout-$1.pprof" "http://127.0.0.1:16060/debug/pprof/profile?seconds=8"
  wait $bp
  kill $pid; wait $pid || true
  go tool pprof -top -nodecount 10 "$BIN/collabd-pprof" "$OUT/collabd-fanout-$1.pprof" >"$OUT/collabd-fanout-$1.top" 2>/dev/null
  go tool pprof -top -cum -nodecount 40 "$BIN/collabd-pprof" "$OUT/collabd-fanout-$1.pprof" >"$OUT/collabd-fanout-$1.cum" 2>/dev/null
}

for r in $RUNS; do
  echo "== $r" >&2
  case $r in
  fanout-*-x2) n=${r#fanout-}; two "${n%-x2}" ;;
  fanout-*)
    n=${r#fanout-}
    one "collabd fanout-$n" 18080 "-docs $n $FANOUT" collabd
    one "centrifugo fanout-$n" 18000 "$CF -docs $n $FANOUT" centrifugo
    if [[ -n ${BEFORE:-} ]]; then one "collabd-before fanout-$n" 18080 "-docs $n $FANOUT" before; fi
    ;;
  idle-10k)
    one "collabd idle-10k" 18080 "-docs 500 $IDLE" collabd
    one "centrifugo idle-10k" 18000 "$CF -docs 500 $IDLE" centrifugo
    ;;
  idle-19k) one "collabd idle-19k" 18080 "-docs 950 $IDLE" collabd ;;
  pprof-*) pprof "${r#pprof-}" ;;
  esac
done

echo -e "run\tdelivered/s\tdelivery\tp50 ms\tp99 ms\tsend lag p99\tsrv cores\tsrv us/delivery\tconnect s\tKB/conn"
jq -r '[.label, .delivered_per_s, .delivery_ratio, .latency_ms.p50, .latency_ms.p99, .send_lag_ms.p99,
  .server.cpu_cores, .server_us_per_delivery, .connect_phase_s, .idle.rss_per_conn_kb] | @tsv' "$OUT"/*.json
echo "results in $OUT" >&2
