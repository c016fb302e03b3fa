#!/usr/bin/env bash
# End-to-end monitoring overhead of the release server, measured from outside.
#
#   scripts/overhead.sh            wrk A/B/C interleaved + callgrind instructions
#   scripts/overhead.sh soak [S]   RSS across an S-second wrk run (default 300)
#                                  with the dashboard polled every 5 s
#   scripts/overhead.sh front OLD  throughput of another starpunk binary (OLD,
#                                  say a build of an earlier commit) against
#                                  this one, interleaved, monitoring on
#   scripts/overhead.sh own [BIN]  the monitor's own instructions per request:
#                                  callgrind self cost of every function of
#                                  starpunk::monitoring, starpunk_perf and
#                                  quanta over all threads, per request
#                                  (OWN_REQUESTS, default 1000), by function
#
# A = monitoring off, B = on at sample rate 1.0 (memory tracking off),
# C = on at 1.0 with memory tracking. Pages: /, a note, /feed.xml, a search.
# Installs wrk and valgrind (Debian packages) when missing. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-8}
CALLGRIND_REQUESTS=${CALLGRIND_REQUESTS:-200}
PORT=${PORT:-18431}
TOKEN=overhead-micropub-token-0123456789
PASSWORD=overhead-admin-password

need() {
  if ! command -v "$1" >/dev/null; then
    echo "installing $2" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
  fi
}
[ "${1:-}" = "own" ] || need wrk wrk
need valgrind valgrind
need curl curl

cargo build --release -p starpunk >&2
BIN=$PWD/target/release/starpunk
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

start() { # $1 = name, rest = env assignments; prints the pid
  env STARPUNK_DATA_DIR="$WORK/data" STARPUNK_BIND="127.0.0.1:$PORT" \
      STARPUNK_SITE_URL="http://127.0.0.1:$PORT" STARPUNK_ADMIN_PASSWORD="$PASSWORD" \
      STARPUNK_MICROPUB_TOKEN="$TOKEN" STARPUNK_HTTP_TRUSTED_PROXIES=127.0.0.1 "${@:2}" "${SERVER_BIN:-$BIN}" >"$WORK/$1.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && { echo "$pid"; return; }
    sleep 0.1
  done
  echo "server did not start: $(cat "$WORK/$1.log")" >&2; exit 1
}
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }

OFF=(STARPUNK_PERF_MONITORING_ENABLED=false)
# The load comes from one address standing for many readers: trusted like
# a proxy, so it is not held to one client's share of connections and threads.
ON=(STARPUNK_PERF_MONITORING_ENABLED=true STARPUNK_PERF_SAMPLE_RATE=1.0)
ONMEM=(STARPUNK_PERF_MONITORING_ENABLED=true STARPUNK_PERF_SAMPLE_RATE=1.0 STARPUNK_PERF_MEMORY_TRACKING=true)

# Seed 20 notes.
pid=$(start seed "${OFF[@]}")
for i in $(seq 1 20); do
  curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" \
    --data-urlencode "content=Overhead note $i: $(printf 'lorem ipsum dolor sit amet %.0s' $(seq 1 8))" \
    --data "h=entry&mp-slug=note-$i" "http://127.0.0.1:$PORT/micropub"
done
stop "$pid"

cat >"$WORK/paths.lua" <<'LUA'
local paths = { "/", "/notes/note-7", "/feed.xml", "/search?q=lorem" }
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
LUA
URLS=("/" "/notes/note-7" "/feed.xml" "/search?q=lorem")

if [ "${1:-}" = "soak" ]; then
  SECS=${2:-300}
  pid=$(start soak "${ONMEM[@]}")
  cookie="$WORK/cookies"
  csrf=$(curl -s -c "$cookie" "http://127.0.0.1:$PORT/admin/login" | grep -o 'name="csrf" value="[0-9a-f]*"' | grep -o '[0-9a-f]\{32\}')
  curl -s -b "$cookie" -c "$cookie" -o /dev/null --data "csrf=$csrf&password=$PASSWORD" "http://127.0.0.1:$PORT/admin/login"
  wrk -t2 -c"$CONNECTIONS" -d"${SECS}s" -s "$WORK/paths.lua" "http://127.0.0.1:$PORT" >"$WORK/soak.wrk" &
  wrkpid=$!
  echo "seconds rss_kib"
  for t in $(seq 0 5 "$SECS"); do
    curl -s -b "$cookie" -o /dev/null "http://127.0.0.1:$PORT/admin/performance"
    if [ $((t % 10)) -eq 0 ]; then echo "$t $(ps -o rss= -p "$pid" | tr -d ' ')"; fi
    sleep 5
  done
  wait "$wrkpid" || true
  grep -E "Requests/sec|Latency" "$WORK/soak.wrk"
  stop "$pid"
  exit 0
fi

if [ "${1:-}" = "own" ]; then
  # The monitor's own code per request (issue 20): rate 1.0, memory
  # tracking off; counters zeroed after a warm-up, dumped after exactly
  # OWN_REQUESTS requests of the four-page mix, one file per thread.
  N=${OWN_REQUESTS:-1000}
  OWNBIN=${2:-$BIN}
  env STARPUNK_DATA_DIR="$WORK/data" STARPUNK_BIND="127.0.0.1:$PORT" \
      STARPUNK_SITE_URL="http://127.0.0.1:$PORT" STARPUNK_ADMIN_PASSWORD="$PASSWORD" \
      STARPUNK_MICROPUB_TOKEN="$TOKEN" STARPUNK_HTTP_TRUSTED_PROXIES=127.0.0.1 STARPUNK_ACCESS_LOG=false "${ON[@]}" \
      valgrind --tool=callgrind --separate-threads=yes \
      --callgrind-out-file="$WORK/own.%p" "$OWNBIN" >"$WORK/own.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.2; done
  for i in $(seq 1 80); do curl -s -o /dev/null "http://127.0.0.1:$PORT${URLS[$((i % 4))]}"; done
  callgrind_control -z "$pid" >/dev/null
  for i in $(seq 1 "$N"); do curl -s -o /dev/null "http://127.0.0.1:$PORT${URLS[$((i % 4))]}"; done
  callgrind_control -d "$pid" >/dev/null
  sleep 1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # Only the dump after the measured requests: `callgrind_control -d`
  # writes part 1 of every thread (`own.PID.1-TID`); the zero before it
  # dropped the warm-up, and what runs after it goes to the final dump.
  files=$(ls "$WORK"/own.*.1-*)
  if [ -n "${OWN_KEEP:-}" ]; then mkdir -p "$OWN_KEEP" && cp $files "$OWN_KEEP"/; fi
  python3 scripts/callgrind_own.py "$N" $files
  exit 0
fi

run_wrk() { # $1 = label
  local out
  out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/paths.lua" "http://127.0.0.1:$PORT")
  local rps p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  echo "$1 $rps $p99"
}

if [ "${1:-}" = "front" ]; then
  OTHER=${2:?usage: scripts/overhead.sh front OTHER_BINARY}
  echo "# wrk: ${ROUNDS} rounds of old, new, new+log; ${DURATION}s each, ${CONNECTIONS} connections, 2 threads"
  echo "# old = $OTHER, new = $BIN (access log off), new+log = the same with STARPUNK_ACCESS_LOG=true"
  echo "# binary requests_per_sec p99"
  for r in $(seq 1 "$ROUNDS"); do
    for which in old new new+log; do
      case $which in
        old) export SERVER_BIN=$OTHER; extra=();;
        new) export SERVER_BIN=$BIN; extra=(STARPUNK_ACCESS_LOG=false);;
        new+log) export SERVER_BIN=$BIN; extra=(STARPUNK_ACCESS_LOG=true);;
      esac
      pid=$(start "front-$which" "${ON[@]}" "${extra[@]}")
      wrk -t2 -c"$CONNECTIONS" -d2s -s "$WORK/paths.lua" "http://127.0.0.1:$PORT" >/dev/null
      run_wrk "$which" | tee -a "$WORK/front.txt"
      stop "$pid"
    done
  done
  awk '{ s[$1] += $2; n[$1]++ }
       END { o = s["old"]/n["old"]; w = s["new"]/n["new"]; l = s["new+log"]/n["new+log"];
             printf "# mean req/s: old %.0f  new %.0f  new+log %.0f\n", o, w, l;
             printf "# ratio new/old %.4f  new+log/old %.4f\n", w/o, l/o }' "$WORK/front.txt"
  exit 0
fi

echo "# wrk: ${ROUNDS} rounds of A B C, ${DURATION}s each, ${CONNECTIONS} connections, 2 threads"
echo "# config requests_per_sec p99"
for r in $(seq 1 "$ROUNDS"); do
  for cfg in A B C; do
    case $cfg in A) envs=("${OFF[@]}");; B) envs=("${ON[@]}");; C) envs=("${ONMEM[@]}");; esac
    pid=$(start "wrk-$cfg" "${envs[@]}")
    wrk -t2 -c"$CONNECTIONS" -d2s -s "$WORK/paths.lua" "http://127.0.0.1:$PORT" >/dev/null  # warm-up
    run_wrk "$cfg" | tee -a "$WORK/wrk.txt"
    stop "$pid"
  done
done
awk '{ s[$1] += $2; n[$1]++ }
     END { a = s["A"]/n["A"]; b = s["B"]/n["B"]; c = s["C"]/n["C"];
           printf "# mean req/s: A %.0f  B %.0f  C %.0f\n", a, b, c;
           printf "# throughput ratio B/A %.4f  C/A %.4f\n", b/a, c/a }' "$WORK/wrk.txt"

# Instructions per request under callgrind: counters are zeroed by a dump
# after warm-up; the second dump holds exactly the measured requests (plus
# the once-a-second ticker).
callgrind_run() { # $1 = label, rest = env
  local label=$1; shift
  env STARPUNK_DATA_DIR="$WORK/data" STARPUNK_BIND="127.0.0.1:$PORT" \
      STARPUNK_SITE_URL="http://127.0.0.1:$PORT" STARPUNK_ADMIN_PASSWORD="$PASSWORD" \
      STARPUNK_MICROPUB_TOKEN="$TOKEN" STARPUNK_HTTP_TRUSTED_PROXIES=127.0.0.1 "$@" \
      valgrind --tool=callgrind --callgrind-out-file="$WORK/cg-$label.%p" "$BIN" >"$WORK/cg-$label.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.2; done
  for i in $(seq 1 40); do curl -s -o /dev/null "http://127.0.0.1:$PORT${URLS[$((i % 4))]}"; done
  callgrind_control -z "$pid" >/dev/null
  for i in $(seq 1 "$CALLGRIND_REQUESTS"); do curl -s -o /dev/null "http://127.0.0.1:$PORT${URLS[$((i % 4))]}"; done
  callgrind_control -d "$pid" >/dev/null
  sleep 1
  local total
  total=$(cat "$WORK"/cg-"$label".*.* 2>/dev/null | awk '/^(summary|totals):/ {print $2}' | sort -n | tail -1)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$label $total $((total / CALLGRIND_REQUESTS))"
}
echo "# callgrind: instructions for ${CALLGRIND_REQUESTS} sequential requests (curl), per request"
a=$(callgrind_run off "${OFF[@]}"); echo "$a"
b=$(callgrind_run on "${ON[@]}"); echo "$b"
echo "$a $b" | awk '{ printf "# instructions per request: off %d  on %d  overhead %+.3f%%\n", $3, $6, ($6 - $3) * 100 / $3 }'
