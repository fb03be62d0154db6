#!/usr/bin/env bash
# Benchmark: N producers (720p30 VP8 ~1.5 Mbit/s + Opus, encoded once, sent as N sessions,
# each its own call) recorded by callrec for SECS seconds. Reports callrec's CPU time per
# recorded participant-second and RSS growth per call into bench-out/results.txt.
# Usage: bash scripts/bench.sh [N=4] [SECS=60]
# With CALLREC_BENCH_MIX=mix-mp4 (any call-scope template), the N producers send 640x360 and
# share one call, which callrec live-mixes; the report adds the mix's real-time factor.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-4}
SECS=${2:-60}
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --locked --release -p callrec -p callrec-testpeer >/dev/null

out="$PWD/bench-out"
rm -rf "$out/recordings"; mkdir -p "$out"
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
templates = ["${CALLREC_BENCH_MIX:-${CALLREC_BENCH_TEMPLATE:-participant-mkv}}"]
linger_secs = 1
[ice]
local_addresses = ["127.0.0.1"]
TOML
"$bin"/callrec run --config "$out/callrec.toml" 2>"$out/callrec.log" &
callrec=$!
pids+=($callrec)
sleep 1

stat() {  # utime+stime in clock ticks, and RSS in kB
  python3 - "$1" <<'PY'
import sys
pid = sys.argv[1]
f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
ticks = int(f[11]) + int(f[12])
rss = [l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0].split()[1]
print(ticks, rss)
PY
}
read -r _ rss0 < <(stat "$callrec")
if [ -n "${CALLREC_BENCH_MIX:-}" ]; then
  size=(--width 640 --height 360 --bitrate 600 --meta '{"call":"bench"}')
else
  size=(--width 1280 --height 720 --bitrate 1500)
fi
"$bin"/callrec-testpeer --url "ws://127.0.0.1:$port" --ice-address 127.0.0.1 --peers "$N" "${size[@]}" \
  --fps 30 --duration $((SECS + 10)) >"$out/peers.log" 2>&1 &
peers=$!
pids+=($peers)
sleep 8   # negotiation and first keyframes
read -r t1 _ < <(stat "$callrec")
start=$(date +%s.%N)
sleep "$SECS"
read -r t2 rss1 < <(stat "$callrec")
end=$(date +%s.%N)
wait "$peers" || true
sleep 3
kill -TERM "$callrec"; wait "$callrec" || true

hz=$(getconf CLK_TCK)
python3 - "$N" "$t1" "$t2" "$start" "$end" "$rss0" "$rss1" "$hz" "$out" <<'PY' | tee "$out/results.txt"
import sys, glob, subprocess, json
n, t1, t2, start, end, rss0, rss1, hz, out = sys.argv[1:]
n = int(n); wall = float(end) - float(start)
cpu = (int(t2) - int(t1)) / int(hz)
files = glob.glob(f"{out}/recordings/*/*.mkv")
print(f"participants: {n}, window: {wall:.1f} s, recorded files: {len(files)}")
for manifest in glob.glob(f"{out}/recordings/*/manifest.json"):
    m = json.load(open(manifest))
    for mix in m.get("mixes", []):
        from datetime import datetime
        t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
        call = t(m["ended_at"]) - t(m["started_at"])
        path = manifest.rsplit("/", 1)[0] + "/" + mix["files"][0]
        dur = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
                                   capture_output=True, text=True).stdout.strip() or 0)
        print(f"mix {mix['template']} ({mix['canvas']}): {dur:.1f} s of output for a {call:.1f} s call, real-time factor {dur/call:.3f}")
        print(f"mix CPU: {cpu/wall:.2f} of one core for the whole daemon")
print(f"callrec CPU: {100*cpu/wall:.2f} % of one core in all, {100*cpu/wall/n:.2f} % per participant")
print(f"CPU time per recorded participant-second: {1000*cpu/wall/n:.2f} ms")
print(f"RSS: {int(rss0)/1024:.1f} MB idle, {int(rss1)/1024:.1f} MB recording, {(int(rss1)-int(rss0))/1024/n:.1f} MB per call")
PY
