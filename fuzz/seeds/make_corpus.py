#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/seed-*.

Seeds are realistic inputs: the SDP offers in seeds/sdp/ (webrtcbin's, from
webrtcbin_offers.py; Chromium's and Firefox's, written after real ones), gst-webrtc
protocol messages carrying them, the shipped pipelines/*.pipeline, systemd/callrec.toml and
the configs and manifests in seeds/. Run it from anywhere; it only adds files.
"""
import hashlib
import json
import pathlib

FUZZ = pathlib.Path(__file__).resolve().parent.parent
REPO = FUZZ.parent
SEEDS = FUZZ / "seeds"


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = FUZZ / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)


sdps = sorted((SEEDS / "sdp").glob("*.sdp"))
for p in sdps:
    write("sdp_offer", p.read_bytes())

# gst-webrtc-signalling-server messages, as callrec (a listener and consumer) receives them.
messages = [
    {"type": "welcome", "peerId": "7a1c5e2b-0d9f-4b3a-8e6c-1f2d3a4b5c6d"},
    {"type": "list", "producers": []},
    {"type": "list", "producers": [
        {"id": "3f2a77b1-9c0d", "meta": {"call": "standup", "name": "Alice Ö"}},
        {"id": "9d8c7b6a", "meta": None},
        {"id": "p/../1", "meta": {"call": 42, "name": ["x"]}}]},
    {"type": "listConsumers", "consumers": [{"id": "c1", "meta": {"name": "callrec"}}]},
    {"type": "peerStatusChanged", "roles": ["producer"], "meta": {"call": "c1", "name": "bob"}, "peerId": "p1"},
    {"type": "peerStatusChanged", "roles": ["producer", "consumer"], "meta": {"call": {"room": 1}}, "peerId": "p2"},
    {"type": "peerStatusChanged", "roles": [], "meta": None, "peerId": "p1"},
    {"type": "peerStatusChanged", "roles": ["listener"], "meta": None, "peerId": "l"},
    {"type": "peerStatusChanged", "roles": ["producer"], "meta": None},
    {"type": "sessionStarted", "peerId": "p1", "sessionId": "0b1c2d3e-4f50"},
    {"type": "startSession", "peerId": "p1", "sessionId": "s2", "offer": None},
    {"type": "peer", "sessionId": "s", "ice": {"candidate": "candidate:1467250027 1 udp 2122260223 192.0.2.10 51472 typ host generation 0 ufrag aB3d network-id 1", "sdpMLineIndex": 0}},
    {"type": "peer", "sessionId": "s", "ice": {"candidate": "", "sdpMLineIndex": 4294967295}},
    {"type": "peer", "sessionId": "s", "sdp": {"type": "answer", "sdp": "v=0\r\n"}},
    {"type": "endSession", "sessionId": "s"},
    {"type": "error", "details": "No consumer with ID s"},
]
for p in sdps:
    messages.append({"type": "peer", "sessionId": "0b1c2d3e-4f50",
                     "sdp": {"type": "offer", "sdp": p.read_text()}})
for m in messages:
    write("signalling_message", json.dumps(m))
write("signalling_message", "{\"type\":\"welcome\",\"peerId\":\"\\ud83d\\ude00\"}")

pipelines = sorted((REPO / "pipelines").glob("*.pipeline"))
for p in pipelines:
    write("template", p.read_bytes())
variants = {
    "track": "# scope: track\n# media: video/x-vp8, audio/x-opus\n# inputs: mux\n"
             "matroskamux name=mux ! filesink location=${call_dir}/${participant}-${track}-${kind}.${codec}.mkv\n",
    "speaker": "# name: spk\n# scope: call\n# media: video/x-raw, audio/x-raw\n# inputs: video=vmix, audio=amix\n"
               "# canvas: 640x360@15\n# background: #102030\n# layout: speaker\n"
               "compositor name=vmix ! videoconvert ! vp8enc ! mux. \\\n  audiomixer name=amix ! opusenc ! mux.\n"
               "webmmux name=mux ! filesink location=\"${call_dir}/${call} ${template}.webm\"\n",
    "post": "# scope: post\n# media: video/x-raw, audio/x-raw\n# inputs: video=v, audio=a\n"
            "videoconvert name=v ! x264enc ! mux. audioconvert name=a ! avenc_aac ! mux. mp4mux name=mux ! filesink location=${call_dir}/${input}.mp4\n",
}
for text in variants.values():
    write("template", text)

messages_gst = [
    "no property \"bitrate\" in element \"x264enc0\"",
    "could not link queue0 to mux",
    "no element \"avenc_nosuchcodec\"",
    "could not set property \"location\" in element \"filesink0\" to \"x\"",
    "syntax error",
]
bodies = [p.read_text().split("\n", 1)[1] for p in pipelines] + list(variants.values())
for i, body in enumerate(bodies):
    write("launch_tokens", messages_gst[i % len(messages_gst)] + "\n" + body)

for p in sorted((SEEDS / "manifest").glob("*.json")):
    write("manifest_roundtrip", p.read_bytes())

for p in sorted((SEEDS / "config").glob("*.toml")):
    write("config", p.read_bytes())

for pair in ["alice\0bob", "a_2f\0a/", "../../etc\0_2e._2f.._2fetc", "日本語 ! x\0\"q\"",
             "a" * 70 + "\0" + "a" * 71, ".hidden\0_2ehidden", "\0_"]:
    write("safe_names", pair)
