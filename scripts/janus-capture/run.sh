#!/bin/sh
# Captures the Janus VideoRoom messages that the adapter's unit tests replay
# (src/signalling/janus/samples/), from the real Janus of Debian (packages janus,
# python3-gi, gir1.2-gst-plugins-bad-1.0, python3-websockets, gstreamer1.0-plugins-*).
#
# Janus gathers ICE candidates on non-loopback interfaces only, so everything runs in a
# network namespace of its own with a veth pair (10.200.0.1/2) that leads nowhere; Janus's
# API listens on 127.0.0.1:18188 inside it. Needs root (ip netns). Every process it starts
# is stopped, and the namespace removed, when it ends.
#
#   scripts/janus-capture/run.sh [OUT.jsonl]   then   extract.py OUT.jsonl SAMPLES_DIR
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$(pwd)/janus-capture.jsonl}
work=$(mktemp -d)
ns=callrec-janus-$$
janus_pid=
cleanup() {
    [ -n "$janus_pid" ] && kill "$janus_pid" 2>/dev/null && wait "$janus_pid" 2>/dev/null
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

lib=/usr/lib/x86_64-linux-gnu/janus
cat > "$work/janus.jcfg" <<CFG
general: {
	configs_folder = "$work"
	plugins_folder = "$lib/plugins"
	transports_folder = "$lib/transports"
	events_folder = "$lib/events"
	loggers_folder = "$lib/loggers"
	debug_level = 4
	session_timeout = 15
	server_name = "callrec-capture"
}
media: {
	rtp_port_range = "40000-40100"
}
nat: {
	ice_enforce_list = "v0"
	ignore_mdns = true
	full_trickle = true
}
plugins: {
	disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so"
}
transports: {
	disable = "libjanus_http.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so"
}
loggers: {
	disable = "libjanus_jsonlog.so"
}
events: {
	broadcast = false
}
CFG
cat > "$work/janus.transport.websockets.jcfg" <<CFG
general: {
	json = "indented"
	ws = true
	ws_port = 18188
	ws_ip = "127.0.0.1"
	wss = false
}
admin: {
	admin_ws = false
	admin_wss = false
}
CFG
cat > "$work/janus.plugin.videoroom.jcfg" <<CFG
general: {
	admin_key = "capture-admin-key"
}
room-1234: {
	description = "Demo Room"
	secret = "adminpwd"
	publishers = 6
	bitrate = 128000
	fir_freq = 10
	videocodec = "vp8,h264"
}
room-4321: {
	description = "Pinned Room"
	pin = "sesame"
	secret = "adminpwd"
	publishers = 6
	videocodec = "vp8,h264"
}
room-777: {
	description = "Hidden Room"
	is_private = true
	secret = "adminpwd"
	publishers = 3
}
CFG

ip netns add "$ns"
ip netns exec "$ns" sh -c 'ip link set lo up &&
    ip link add v0 type veth peer name v1 &&
    ip addr add 10.200.0.1/24 dev v0 && ip addr add 10.200.0.2/24 dev v1 &&
    ip link set v0 up && ip link set v1 up'
ip netns exec "$ns" janus -F "$work" -C "$work/janus.jcfg" -L "$work/janus.log" >/dev/null 2>&1 &
janus_pid=$!
for _ in $(seq 50); do
    ip netns exec "$ns" ss -ltn | grep -q 127.0.0.1:18188 && break
    sleep 0.2
done
janus --version 2>/dev/null | head -1 || true
timeout 300 ip netns exec "$ns" /usr/bin/python3 "$here/capture.py" "$out"
echo "captured $(wc -l < "$out") messages into $out"
