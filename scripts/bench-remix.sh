#!/usr/bin/env bash
# Benchmark of `callrec remix`: records one N-party call (each participant 1280x720 30 fps
# VP8 ~1.5 Mbit/s + Opus) with participant-mkv for SECS seconds, then remixes it into
# TEMPLATE (default mix-mp4, 1280x720 30 fps) and reports the speed as a multiple of real
# time, and the CPU it used, into bench-out/remix-results.txt.
# Usage: bash scripts/bench-remix.sh [N=4] [SECS=30] [TEMPLATE=mix-mp4]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-4}
SECS=${2:-30}
TEMPLATE=${3:-mix-mp4}
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --locked --release -p callrec -p callrec-testpeer >/dev/null

out="$PWD/bench-out/remix"
rm -rf "$out"; mkdir -p "$out"
source scripts/lib.sh
port=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_signalling "$port" "$out/signalling.log"
cat >"$out/callrec.toml" <<TOML
[signalling]
url = "ws://127.0.0.1:$port"
[recording]
dir = "$out/recordings"
pipelines_dir = "$PWD/pipelines"
templates = ["participant-mkv"]
linger_secs = 1
[ice]
local_addresses = ["127.0.0.1"]
TOML
"$bin"/callrec run --config "$out/callrec.toml" 2>"$out/callrec.log" &
callrec=$!
pids+=($callrec)
sleep 1
"$bin"/callrec-testpeer --url "ws://127.0.0.1:$port" --ice-address 127.0.0.1 --peers "$N" \
  --width 1280 --height 720 --bitrate 1500 --fps 30 --duration "$SECS" --meta '{"call":"bench"}' \
  >"$out/peers.log" 2>&1
for _ in $(seq 100); do
  grep -q '"status": "complete"' "$out/recordings/bench/manifest.json" 2>/dev/null && break
  sleep 0.2
done
kill -TERM "$callrec"; wait "$callrec" || true

/usr/bin/time -f "%e %U %S %M" -o "$out/time.txt" \
  "$bin"/callrec remix "$out/recordings/bench" --template "$TEMPLATE" --pipelines "$PWD/pipelines" \
  >"$out/remix.out" 2>"$out/remix.log"
python3 - "$N" "$TEMPLATE" "$out" <<'PY' | tee "$out/../remix-results.txt"
import sys, subprocess
n, template, out = sys.argv[1:]
wall, user, sys_, rss = open(f"{out}/time.txt").read().split()
wall, cpu = float(wall), float(user) + float(sys_)
path = open(f"{out}/remix.out").read().strip().splitlines()[0]
dur = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
                           capture_output=True, text=True).stdout.strip() or 0)
print(f"remix {template}: {n} participants at 1280x720, {dur:.1f} s of call in {wall:.1f} s: "
      f"{dur / wall:.1f}x real time, {cpu / wall:.2f} cores busy, {int(rss) / 1024:.0f} MB peak RSS")
PY
