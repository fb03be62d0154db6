#!/usr/bin/env bash
# Janus benchmark: the same N Janus VideoRoom publishers recorded two ways in one run, on one
# machine, and the cost of each written to bench-out/janus-results.txt:
#   - Janus's own recorder (`record = true`: raw RTP dumps, .mjr), then janus-pp-rec to make
#     them playable;
#   - callrec through its Janus source (one multistream subscription, files that play at
#     once).
# Three phases of SECS seconds each, every one with N fresh publishers (the test peer's
# Janus mode, one process each, VP8 + Opus):
#   0. publishing, nothing recorded: Janus's baseline CPU;
#   1. Janus records (room 1001): Janus's CPU above the baseline is its recorder;
#   2. callrec records (room 1002): callrec's CPU, and Janus's for forwarding to callrec.
# Then the time from the end of the call to playable files: janus-pp-rec over every .mjr,
# against callrec's manifest turning `complete` after the publishers left.
# Janus only gathers candidates off loopback, so everything runs in a network namespace of
# this script's own (root; Debian's janus and janus-tools).
# Usage: sudo bash scripts/bench-janus.sh [N=4] [SECS=30] [WIDTHxHEIGHT=640x360] [FPS=15]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-4}
SECS=${2:-30}
SIZE=${3:-640x360}
FPS=${4:-15}
WIDTH=${SIZE%x*}
HEIGHT=${SIZE#*x}
export PATH="$HOME/.cargo/bin:$PATH"
command -v janus >/dev/null || { echo "needs Janus: bash scripts/setup-debian.sh" >&2; exit 1; }
cargo build --locked --release -p callrec -p callrec-testpeer >/dev/null
source scripts/lib.sh

out="$PWD/bench-out/janus"
rm -rf "$out"; mkdir -p "$out/mjr" "$out/recordings" "$out/pp"
ns="callrec-bench-$$"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

ip netns add "$ns"
# Processes that are measured or killed are started with `ip netns exec` itself (it execs
# them, so $! is theirs), never through this function (a subshell).
in_ns() { ip netns exec "$ns" "$@"; }
in_ns ip link set lo up
in_ns ip link add jb0 type veth peer name jb1
in_ns ip addr add 10.239.0.1/24 dev jb0
in_ns ip addr add 10.239.0.2/24 dev jb1
in_ns ip link set jb0 up
in_ns ip link set jb1 up
# Both ends are local to the namespace: packets bound to one device come back in on the
# other only with accept_local (and no reverse-path filter).
for dev in all default jb0 jb1; do
  in_ns sysctl -q -w "net.ipv4.conf.$dev.accept_local=1" "net.ipv4.conf.$dev.rp_filter=0"
done

lib=/usr/lib/x86_64-linux-gnu/janus
cat >"$out/janus.jcfg" <<CFG
general: {
	configs_folder = "$out"
	plugins_folder = "$lib/plugins"
	transports_folder = "$lib/transports"
	events_folder = "$lib/events"
	loggers_folder = "$lib/loggers"
	debug_level = 3
	server_name = "callrec-bench"
}
media: {
	rtp_port_range = "40000-49999"
}
nat: {
	ice_enforce_list = "jb0"
	ignore_mdns = true
	full_trickle = true
}
plugins: {
	disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so"
}
transports: {
	disable = "libjanus_http.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so"
}
CFG
cat >"$out/janus.transport.websockets.jcfg" <<CFG
general: {
	ws = true
	ws_port = 8188
	ws_ip = "10.239.0.1"
}
CFG
cat >"$out/janus.plugin.videoroom.jcfg" <<CFG
room-1000: {
	description = "baseline"
	publishers = 64
	videocodec = "vp8"
	fir_freq = 2
}
room-1001: {
	description = "janus records"
	publishers = 64
	videocodec = "vp8"
	fir_freq = 2
	record = true
	rec_dir = "$out/mjr"
}
room-1002: {
	description = "callrec records"
	publishers = 64
	videocodec = "vp8"
	fir_freq = 2
}
CFG
ip netns exec "$ns" janus -F "$out" -C "$out/janus.jcfg" -L "$out/janus.log" >/dev/null 2>&1 &
janus=$!
pids+=($janus)
for _ in $(seq 100); do
  (in_ns bash -c 'echo >/dev/tcp/10.239.0.1/8188') 2>/dev/null && break
  sleep 0.1
done

cat >"$out/callrec.toml" <<TOML
[[source]]
name = "janus"
protocol = "janus"
url = "ws://10.239.0.1:8188"
rooms = [1002]
[recording]
dir = "$out/recordings"
pipelines_dir = "$PWD/pipelines"
linger_secs = 1
[ice]
local_addresses = ["10.239.0.2"]
TOML

ticks() {  # utime+stime of a process, in clock ticks
  python3 -c 'import sys; f=open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")",1)[1].split(); print(int(f[11])+int(f[12]))' "$1"
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

# publish ROOM: N publishers in ROOM for SECS plus a warm-up; their pids in $publishers.
publish() {
  publishers=()
  for i in $(seq "$N"); do
    ip netns exec "$ns" "$bin/callrec-testpeer" --janus ws://10.239.0.1:8188 --janus-room "$1" \
      --display "p$i" --ice-address 10.239.0.1 --width "$WIDTH" --height "$HEIGHT" \
      --fps "$FPS" --duration $((SECS + 8)) >"$out/peer-$1-$i.log" 2>&1 &
    publishers+=($!)
    pids+=($!)
  done
  sleep 8   # negotiation and first keyframes
}

# measure PID...: CPU % of one core per publisher over SECS for each pid, space-separated.
measure() {
  local before=() after=() p
  for p in "$@"; do before+=("$(ticks "$p")"); done
  sleep "$SECS"
  for p in "$@"; do after+=("$(ticks "$p")"); done
  local i
  for i in "${!before[@]}"; do
    python3 -c "import sys; print(f'{(int(sys.argv[2])-int(sys.argv[1]))/int(sys.argv[3])/float(sys.argv[4])/int(sys.argv[5])*100:.2f}')" \
      "${before[$i]}" "${after[$i]}" "$hz" "$SECS" "$N"
  done
}

echo "phase 0: $N publishers, nothing recorded" >&2
publish 1000
janus_rss0=$(rss "$janus")
base=$(measure "$janus")
wait "${publishers[@]}" 2>/dev/null || true

echo "phase 1: Janus records" >&2
publish 1001
janus_rec=$(measure "$janus")
janus_rss1=$(rss "$janus")
wait "${publishers[@]}" 2>/dev/null || true

echo "phase 2: callrec records" >&2
ip netns exec "$ns" "$bin/callrec" run --config "$out/callrec.toml" 2>"$out/callrec.log" &
callrec=$!
pids+=($callrec)
sleep 2
callrec_rss0=$(rss "$callrec")
publish 1002
both=$(measure "$janus" "$callrec")
janus_fwd=$(echo "$both" | sed -n 1p)
callrec_cpu=$(echo "$both" | sed -n 2p)
callrec_rss1=$(rss "$callrec")
wait "${publishers[@]}" 2>/dev/null || true
left=$(date +%s.%N)
# The end of the call to final files: the manifest says complete once every file is final.
done_at=""
for _ in $(seq 300); do
  if python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["status"] != "complete")' \
      "$out"/recordings/*/manifest.json 2>/dev/null; then
    done_at=$(date +%s.%N); break
  fi
  sleep 0.05
done
callrec_final=$(python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.2f}' if sys.argv[2] else 'n/a')" "$left" "${done_at:-}")

# Janus's dumps need janus-pp-rec before anything plays them.
pp_start=$(date +%s.%N)
for mjr in "$out"/mjr/*.mjr; do
  [ -e "$mjr" ] || continue
  base_name=$(basename "$mjr" .mjr)
  case "$base_name" in
    *audio*) ext=opus ;;
    *) ext=webm ;;
  esac
  janus-pp-rec "$mjr" "$out/pp/$base_name.$ext" >>"$out/pp.log" 2>&1 || true
done
pp_secs=$(python3 -c "import sys,time; print(f'{time.time()-float(sys.argv[1]):.2f}')" "$pp_start")
mjrs=$(ls "$out"/mjr/*.mjr 2>/dev/null | wc -l)
files=$(ls "$out"/recordings/*/*.mkv 2>/dev/null | wc -l)

janus_recorder=$(python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.2f}')" "$base" "$janus_rec")
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "command: sudo bash scripts/bench-janus.sh $N $SECS $SIZE $FPS"
  echo "machine: $(nproc) cores, $(uname -r)"
  echo "publishers: $N x VP8 ${WIDTH}x${HEIGHT}@${FPS} + Opus, ${SECS} s windows"
  echo "janus baseline (publishing, nothing recorded): ${base} % of a core per publisher"
  echo "janus recording (record = true): ${janus_rec} % per publisher; its recorder: ${janus_recorder} % per publisher; RSS ${janus_rss0} -> ${janus_rss1} kB"
  echo "janus forwarding to callrec: ${janus_fwd} % per publisher"
  echo "callrec recording through its janus source: ${callrec_cpu} % per publisher; RSS ${callrec_rss0} -> ${callrec_rss1} kB"
  echo "end of call to playable files: callrec ${callrec_final} s ($files files); janus-pp-rec ${pp_secs} s for $mjrs .mjr dumps"
} | tee "$out/../janus-results.txt"
