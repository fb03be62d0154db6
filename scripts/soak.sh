#!/usr/bin/env bash
# Soak: participants joining and leaving one call for a long time, while callrec's memory and
# open file descriptors are sampled every minute. Measured, never asserted.
#
# Usage: bash scripts/soak.sh [MINUTES=30] [PARTICIPANTS=8] [CHURN_SECS=20]
# Keeps PARTICIPANTS producers (320x180 VP8 + Opus) in one call; every CHURN_SECS the oldest
# leaves (SIGTERM: its session ends cleanly) and a new one joins. Writes one line a minute to
# bench-out/soak.tsv (minute, RSS kB, fds, participants seen so far, then the anonymous part
# of RSS, the thread count and CPU seconds used, which tell heap and stacks from mapped
# libraries and show what an allocator setting costs) and a summary to
# bench-out/soak-summary.txt: growth of RSS and fds after a 5-minute warm-up, and RSS per
# recorded participant (the daemon's RSS while recording minus its RSS when idle, divided by
# PARTICIPANTS).
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-30}
N=${2:-8}
CHURN=${3:-20}
WARMUP=5
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --quiet --locked --release --workspace --bins

out="$PWD/bench-out"
rm -rf "$out/soak-recordings"; mkdir -p "$out"
source scripts/lib.sh
port=$(free_port)
pids=()
peers=()
cleanup() {
  for p in "${peers[@]}" "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

start_signalling "$port" "$out/soak-signalling.log"
cat >"$out/soak.toml" <<TOML
[signalling]
url = "ws://127.0.0.1:$port"
[recording]
dir = "$out/soak-recordings"
pipelines_dir = "$PWD/pipelines"
linger_secs = 30
[ice]
local_addresses = ["127.0.0.1"]
TOML
RUST_LOG=warn ./target/release/callrec run --config "$out/soak.toml" 2>"$out/soak-callrec.log" &
callrec=$!
pids+=($callrec)
sleep 2

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
anon() { awk '/^RssAnon/ {print $2}' "/proc/$1/status"; }
threads() { ls "/proc/$1/task" | wc -l; }
cpu() { awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$1/stat"; }
fds() { ls "/proc/$1/fd" | wc -l; }
rss_idle=$(rss "$callrec")
anon_idle=$(anon "$callrec")

joined=0
join() {
  ./target/release/callrec-testpeer --url "ws://127.0.0.1:$port" --ice-address 127.0.0.1 \
    --width 320 --height 180 --fps 30 --bitrate 300 --keep-alive \
    --meta "{\"call\":\"soak\",\"name\":\"p$joined\"}" >/dev/null 2>&1 &
  peers+=($!)
  joined=$((joined + 1))
}
for _ in $(seq "$N"); do join; done

printf 'minute\trss_kb\tfds\tparticipants_joined\trss_anon_kb\tthreads\tcpu_s\n' >"$out/soak.tsv"
start=$(date +%s)
next_sample=$start
next_churn=$((start + CHURN))
minute=0
while [ $(( $(date +%s) - start )) -lt $((MINUTES * 60)) ]; do
  now=$(date +%s)
  if ! kill -0 "$callrec" 2>/dev/null; then
    echo "callrec exited during the soak; see $out/soak-callrec.log" >&2
    exit 1
  fi
  if [ "$now" -ge "$next_churn" ]; then
    kill "${peers[0]}" 2>/dev/null || true
    wait "${peers[0]}" 2>/dev/null || true
    peers=("${peers[@]:1}")
    join
    next_churn=$((next_churn + CHURN))
  fi
  if [ "$now" -ge "$next_sample" ]; then
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$minute" "$(rss "$callrec")" "$(fds "$callrec")" "$joined" \
      "$(anon "$callrec")" "$(threads "$callrec")" "$(cpu "$callrec")" >>"$out/soak.tsv"
    minute=$((minute + 1))
    next_sample=$((next_sample + 60))
  fi
  sleep 1
done

python3 - "$out/soak.tsv" "$rss_idle" "$N" "$WARMUP" "$MINUTES" "$CHURN" "$anon_idle" >"$out/soak-summary.txt" <<'PY'
import sys
path, idle, n, warmup, minutes, churn = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
anon_idle = int(sys.argv[7])
lines = [l.split("\t") for l in open(path).read().splitlines()[1:]]
rows = [tuple(int(v) for v in l[:4]) for l in lines]
anon = {int(l[0]): int(l[4]) for l in lines}
threads = {int(l[0]): int(l[5]) for l in lines}
base = next(r for r in rows if r[0] >= warmup) if any(r[0] >= warmup for r in rows) else rows[0]
last = rows[-1]
steady = sorted(r[1] for r in rows if r[0] >= warmup)
median = steady[len(steady) // 2] if steady else last[1]
print(f"soak: {minutes} min, {n} participants at once, one leaving and one joining every {churn} s")
print(f"participants recorded: {last[3]}")
print(f"RSS idle: {idle / 1024:.1f} MB; after warm-up (minute {base[0]}): {base[1] / 1024:.1f} MB; at the end: {last[1] / 1024:.1f} MB")
print(f"RSS growth after warm-up: {(last[1] - base[1]) / 1024:+.1f} MB (target < 5 MB)")
print(f"open fds after warm-up: {base[2]}; at the end: {last[2]}; growth {last[2] - base[2]:+d} (target 0)")
print(f"RSS per recorded participant: {(median - idle) / 1024 / n:.2f} MB (median RSS after warm-up minus idle, / {n})")
steady_anon = sorted(anon[r[0]] for r in rows if r[0] >= warmup) or [anon[last[0]]]
print(f"anonymous RSS (heap and stacks) idle: {anon_idle / 1024:.1f} MB; after warm-up: {anon[base[0]] / 1024:.1f} MB; at the end: {anon[last[0]] / 1024:.1f} MB; per participant: {(steady_anon[len(steady_anon) // 2] - anon_idle) / 1024 / n:.2f} MB")
print(f"threads at the end: {threads[last[0]]}; CPU used: {lines[-1][6]} s")
PY
cat "$out/soak-summary.txt"
