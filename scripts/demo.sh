#!/usr/bin/env bash
# The demo: a real signalling server, callrec, and two synthetic participants in one call
# (VP8 + Opus, and H.264 + Opus) for about 10 s. Leaves the recording in ./demo-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --locked --release -p callrec -p callrec-testpeer

out="$PWD/demo-out"
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
templates = ["participant-mkv", "mix-mp4"]
linger_secs = 2
[ice]
local_addresses = ["127.0.0.1"]
TOML
"$bin"/callrec check --config "$out/callrec.toml"
"$bin"/callrec run --config "$out/callrec.toml" 2>"$out/callrec.log" &
callrec=$!
pids+=($callrec)
sleep 1

"$bin"/callrec-testpeer --url "ws://127.0.0.1:$port" --ice-address 127.0.0.1 --meta '{"call":"demo","name":"alice"}' \
  --video vp8 --pattern smpte --freq 440 --duration 10 >"$out/alice.log" 2>&1 &
alice=$!
"$bin"/callrec-testpeer --url "ws://127.0.0.1:$port" --ice-address 127.0.0.1 --meta '{"call":"demo","name":"bob"}' \
  --video h264 --pattern ball --freq 660 --duration 10 >"$out/bob.log" 2>&1 &
bob=$!
wait "$alice" "$bob"
sleep 4   # the call's linger, then finalisation
kill -TERM "$callrec"; wait "$callrec" || true

echo
echo "Recording: $out/recordings"
for f in "$out"/recordings/*/*.mkv "$out"/recordings/*/*.mp4; do
  echo "== $f"
  ffprobe -v error -show_entries format=duration:stream=codec_name,width,height -of compact "$f"
done
echo "== manifest"
cat "$out"/recordings/*/manifest.json
