#!/usr/bin/python3
"""Drives a real Janus VideoRoom and records every message in and out, as JSON lines.

Roles: `rec` is what callrec will do (session, list, passive publisher join, one multistream
subscriber per room, answers made by a real webrtcbin); `alice` and `bob` are real publishers
(webrtcbin, VP8 + Opus, and H.264 + Opus for bob). Run inside a network namespace where Janus
listens on 127.0.0.1:18188.
"""
import asyncio
import json
import random
import string
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import Gst, GstSdp, GstWebRTC  # noqa: E402
import websockets  # noqa: E402

URL = "ws://127.0.0.1:18188"
OUT = open(sys.argv[1], "w")
Gst.init(None)
LOOP = None


def log(who, direction, text, note=""):
    try:
        msg = json.loads(text)
    except ValueError:
        msg = text
    OUT.write(json.dumps({"who": who, "dir": direction, "note": note, "msg": msg}) + "\n")
    OUT.flush()


def tid():
    return "".join(random.choice(string.ascii_letters) for _ in range(12))


class Conn:
    def __init__(self, who):
        self.who = who
        self.inbox = []
        self.cond = asyncio.Condition()

    async def open(self):
        self.ws = await websockets.connect(URL, subprotocols=["janus-protocol"], max_size=None)
        self.reader = asyncio.create_task(self._read())

    async def _read(self):
        try:
            async for text in self.ws:
                log(self.who, "in", text)
                async with self.cond:
                    self.inbox.append(json.loads(text))
                    self.cond.notify_all()
        except websockets.ConnectionClosed:
            pass

    async def send(self, msg, note=""):
        msg.setdefault("transaction", tid())
        text = json.dumps(msg)
        log(self.who, "out", text, note)
        await self.ws.send(text)
        return msg["transaction"]

    async def wait(self, pred, timeout=10, what="?"):
        async def inner():
            async with self.cond:
                while True:
                    for i, m in enumerate(self.inbox):
                        if pred(m):
                            return self.inbox.pop(i)
                    await self.cond.wait()
        try:
            return await asyncio.wait_for(inner(), timeout)
        except asyncio.TimeoutError:
            print(f"{self.who}: timed out waiting for {what}", file=sys.stderr)
            return None

    async def reply(self, transaction, final=True, timeout=10):
        """The answer to a request: for async plugin requests the event after the ack."""
        def pred(m):
            return m.get("transaction") == transaction and m.get("janus") != "ack"
        return await self.wait(pred, timeout, f"reply to {transaction}")

    async def create(self):
        t = await self.send({"janus": "create"}, "create")
        r = await self.reply(t)
        self.session = r["data"]["id"]
        return self.session

    async def attach(self, note="attach"):
        t = await self.send({"janus": "attach", "plugin": "janus.plugin.videoroom",
                             "session_id": self.session}, note)
        r = await self.reply(t)
        return r["data"]["id"]

    async def message(self, handle, body, jsep=None, note=""):
        msg = {"janus": "message", "session_id": self.session, "handle_id": handle, "body": body}
        if jsep:
            msg["jsep"] = jsep
        t = await self.send(msg, note)
        return await self.reply(t)

    async def trickle(self, handle, candidate, note="trickle"):
        await self.send({"janus": "trickle", "session_id": self.session, "handle_id": handle,
                         "candidate": candidate}, note)


class Peer:
    """A webrtcbin, as publisher (sendonly test sources) or subscriber (answers offers)."""

    def __init__(self, conn, handle, publish=None):
        self.conn, self.handle = conn, handle
        self.pipe = Gst.Pipeline.new()
        self.webrtc = Gst.ElementFactory.make("webrtcbin")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipe.add(self.webrtc)
        if publish:
            video = {
                "vp8": "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1 ! vp8enc deadline=1 keyframe-max-dist=30 ! rtpvp8pay pt=96 ! capsfilter caps=application/x-rtp,media=video,encoding-name=VP8,payload=96",
                "h264": "videotestsrc is-live=true pattern=smpte ! video/x-raw,width=320,height=240,framerate=15/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! video/x-h264,profile=constrained-baseline ! rtph264pay pt=102 config-interval=-1 aggregate-mode=zero-latency ! capsfilter caps=application/x-rtp,media=video,encoding-name=H264,payload=102",
            }[publish]
            audio = "audiotestsrc is-live=true wave=sine ! opusenc ! rtpopuspay pt=111 ! capsfilter caps=application/x-rtp,media=audio,encoding-name=OPUS,payload=111,encoding-params=(string)2"
            for desc in (video, audio):
                bin_ = Gst.parse_bin_from_description(desc, True)
                self.pipe.add(bin_)
                bin_.link(self.webrtc)
        else:
            self.webrtc.connect("pad-added", self._on_pad)
        self.webrtc.connect("on-ice-candidate", self._on_ice)
        self.pipe.set_state(Gst.State.PLAYING)

    def _on_pad(self, _w, pad):
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("async", False)
        self.pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

    def _on_ice(self, _w, mline, candidate):
        LOOP.call_soon_threadsafe(asyncio.ensure_future, self.conn.trickle(
            self.handle, {"candidate": candidate, "sdpMLineIndex": mline}))

    def _await_promise(self, action, *args):
        fut = LOOP.create_future()

        def done(promise):
            reply = promise.get_reply()
            LOOP.call_soon_threadsafe(fut.set_result, reply)
        self.webrtc.emit(action, *args, Gst.Promise.new_with_change_func(done))
        return fut

    async def offer(self):
        reply = await self._await_promise("create-offer", None)
        offer = reply.get_value("offer")
        await self._await_promise("set-local-description", offer)
        return offer.sdp.as_text()

    async def set_answer(self, sdp):
        _, msg = GstSdp.SDPMessage.new_from_text(sdp)
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        await self._await_promise("set-remote-description", desc)

    async def answer(self, sdp):
        _, msg = GstSdp.SDPMessage.new_from_text(sdp)
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, msg)
        await self._await_promise("set-remote-description", desc)
        reply = await self._await_promise("create-answer", None)
        answer = reply.get_value("answer")
        await self._await_promise("set-local-description", answer)
        return answer.sdp.as_text()

    async def start(self, msg, note):
        """Answers the offer in `msg` (if any) and sends it with `start`, as callrec does."""
        if not msg or not msg.get("jsep"):
            return
        answer = await self.answer(msg["jsep"]["sdp"])
        await self.conn.message(self.handle, {"request": "start"},
                                jsep={"type": "answer", "sdp": answer}, note=note)

    def stop(self):
        self.pipe.set_state(Gst.State.NULL)


async def publisher(who, room, display, codec, pin=None):
    c = Conn(who)
    await c.open()
    await c.create()
    c.ka = asyncio.create_task(keepalive(c))
    h = await c.attach()
    body = {"request": "join", "ptype": "publisher", "room": room, "display": display}
    if pin:
        body["pin"] = pin
    joined = await c.message(h, body, note="publisher join (real publisher)")
    peer = Peer(c, h, publish=codec)
    sdp = await peer.offer()
    r = await c.message(h, {"request": "publish", "audio": True, "video": True},
                        jsep={"type": "offer", "sdp": sdp}, note="publish")
    await peer.set_answer(r["jsep"]["sdp"])
    await c.wait(lambda m: m.get("janus") == "webrtcup", 15, f"{who} webrtcup")
    return c, h, peer, joined


async def keepalive(c):
    while True:
        await asyncio.sleep(5)
        await c.send({"janus": "keepalive", "session_id": c.session}, "keepalive")


async def main():
    global LOOP
    LOOP = asyncio.get_running_loop()
    rec = Conn("rec")
    await rec.open()
    # Errors before a session: a request on a session that does not exist.
    t = await rec.send({"janus": "attach", "plugin": "janus.plugin.videoroom",
                        "session_id": 12345}, "attach to no such session")
    await rec.reply(t)
    t = await rec.send({"janus": "nonsense"}, "unknown request")
    await rec.reply(t)
    await rec.create()
    ka = asyncio.create_task(keepalive(rec))
    t = await rec.send({"janus": "keepalive", "session_id": rec.session}, "keepalive")
    await rec.wait(lambda m: m.get("transaction") == t, 5, "keepalive ack")
    lh = await rec.attach("attach list handle")
    await rec.message(lh, {"request": "list"}, note="list without admin key")
    await rec.message(lh, {"request": "list", "admin_key": "capture-admin-key"},
                      note="list with admin key")
    await rec.message(lh, {"request": "list", "admin_key": "wrong"}, note="list with a wrong admin key")
    # Passive publisher joins.
    p1234 = await rec.attach("attach follower 1234")
    await rec.message(p1234, {"request": "join", "ptype": "publisher", "room": 1234,
                              "display": "callrec"}, note="passive join, empty room")
    bad = await rec.attach("attach follower for errors")
    await rec.message(bad, {"request": "join", "ptype": "publisher", "room": 9999},
                      note="join a room that does not exist")
    await rec.message(bad, {"request": "join", "ptype": "publisher", "room": 4321, "pin": "nope"},
                      note="join with a wrong pin")
    await rec.message(bad, {"request": "join", "ptype": "publisher", "room": 4321},
                      note="join without the pin")
    await rec.message(bad, {"request": "join", "ptype": "publisher", "room": "1234"},
                      note="room id of the wrong type")
    p4321 = await rec.attach("attach follower 4321")
    await rec.message(p4321, {"request": "join", "ptype": "publisher", "room": 4321, "pin": "sesame",
                              "display": "callrec"}, note="passive join with pin")
    # Alice publishes VP8 + Opus into 1234.
    alice, ah, apeer, _ = await publisher("alice", 1234, "Alice <b>&amp;", "vp8")
    await rec.wait(lambda m: m.get("sender") == p1234 and "publishers" in
                   m.get("plugindata", {}).get("data", {}), 10, "publishers event")
    # A second passive join now sees Alice in `joined`.
    p1234b = await rec.attach("attach second follower 1234")
    joined = await rec.message(p1234b, {"request": "join", "ptype": "publisher", "room": 1234,
                                        "display": "callrec-2"},
                               note="passive join, room with a publisher")
    alice_id = joined["plugindata"]["data"]["publishers"][0]["id"]
    # Subscriber: join with Alice's feed.
    sh = await rec.attach("attach subscriber for a bad feed")
    await rec.message(sh, {"request": "join", "ptype": "subscriber", "room": 1234,
                               "streams": [{"feed": 0}]}, note="subscribe to a feed that does not exist")
    sh = await rec.attach("attach subscriber 1234")
    sub = Peer(rec, sh)
    r = await rec.message(sh, {"request": "join", "ptype": "subscriber", "room": 1234,
                               "streams": [{"feed": alice_id}]}, note="subscriber join")
    await sub.start(r, note="start with answer")
    await rec.wait(lambda m: m.get("janus") == "webrtcup" and m.get("sender") == sh, 15, "sub webrtcup")
    await asyncio.sleep(2)
    # Bob publishes H.264 + Opus; rec subscribes through `update`.
    bob, bh, bpeer, _ = await publisher("bob", 1234, "Bob", "h264")
    ev = await rec.wait(lambda m: m.get("sender") == p1234 and "publishers" in
                        m.get("plugindata", {}).get("data", {}), 10, "bob publishers event")
    bob_id = ev["plugindata"]["data"]["publishers"][0]["id"]
    r = await rec.message(sh, {"request": "update", "subscribe": [{"feed": bob_id}]},
                          note="update: subscribe bob")
    await sub.start(r, note="start with the renegotiation answer")
    await asyncio.sleep(2)
    # subscribe/unsubscribe requests (the older names), on the same handle.
    for request, note in (("unsubscribe", "unsubscribe bob"), ("subscribe", "subscribe bob again")):
        r = await rec.message(sh, {"request": request, "streams": [{"feed": bob_id}]}, note=note)
        await sub.start(r, note=f"start after {request}")
        await asyncio.sleep(1)
    # Bob unpublishes: rec's publisher handle gets `unpublished`, the subscriber an `updated`
    # with a re-offer (Janus updates the subscription by itself).
    await bob.message(bh, {"request": "unpublish"}, note="bob unpublishes")
    offer_ev = await rec.wait(lambda m: m.get("sender") == sh and m.get("jsep"), 10, "auto re-offer")
    await sub.start(offer_ev, note="start answering Janus's own re-offer")
    await asyncio.sleep(1)
    # Bob publishes again on the same handle (same feed id), then leaves.
    bpeer.stop()
    bpeer = Peer(bob, bh, publish="h264")
    sdp = await bpeer.offer()
    r = await bob.message(bh, {"request": "publish"}, jsep={"type": "offer", "sdp": sdp},
                          note="bob publishes again")
    await bpeer.set_answer(r["jsep"]["sdp"])
    ev = await rec.wait(lambda m: m.get("sender") == p1234 and "publishers" in
                        m.get("plugindata", {}).get("data", {}), 10, "bob again publishers event")
    # Subscribed again, his streams take the m-lines his old ones left inactive.
    r = await rec.message(sh, {"request": "update", "subscribe": [{"feed": bob_id}]},
                          note="update: subscribe bob again, reusing m-lines")
    await sub.start(r, note="start after reusing m-lines")
    await asyncio.sleep(1)
    # A publisher's `leave` (not `unpublish`): Janus 1.1.2 says `leaving` but does not
    # re-offer, and keeps his m-lines in the subscription's table (updated-alice-gone.json).
    await bob.message(bh, {"request": "leave"}, note="bob leaves")
    await asyncio.sleep(1)
    # Alice vanishes: her socket closes without a word.
    apeer.stop()
    await alice.ws.close()
    await asyncio.sleep(3)
    # Kick: rec kicks its own second passive handle.
    r = await rec.message(lh, {"request": "listparticipants", "room": 1234}, note="listparticipants")
    parts = r["plugindata"]["data"].get("participants", [])
    me2 = [p["id"] for p in parts if p.get("display") == "callrec-2"]
    if me2:
        await rec.message(lh, {"request": "kick", "room": 1234, "secret": "adminpwd", "id": me2[0]},
                          note="kick callrec-2")
    await asyncio.sleep(1)
    # Destroyed: a room made on the fly, joined passively, then destroyed.
    await rec.message(lh, {"request": "create", "room": 4242, "description": "Temp",
                              "admin_key": "capture-admin-key"}, note="create room")
    p4242 = await rec.attach("attach follower 4242")
    await rec.message(p4242, {"request": "join", "ptype": "publisher", "room": 4242}, note="join temp")
    await rec.message(lh, {"request": "destroy", "room": 4242}, note="destroy temp room")
    await asyncio.sleep(1)
    # Trickle completed, detach, destroy.
    await rec.send({"janus": "trickle", "session_id": rec.session, "handle_id": sh,
                    "candidate": {"completed": True}}, "trickle completed")
    await asyncio.sleep(0.5)
    await rec.message(p4321, {"request": "leave"}, note="leave the pinned room")
    t = await rec.send({"janus": "detach", "session_id": rec.session, "handle_id": p4321}, "detach")
    await rec.reply(t)
    await asyncio.sleep(0.5)
    # Two publishers already in the pinned room: one subscriber join takes both feeds.
    carol, ch, cpeer, _ = await publisher("carol", 4321, "Carol", "vp8", pin="sesame")
    dave, dh, dpeer, _ = await publisher("dave", 4321, "Dave", "h264", pin="sesame")
    await asyncio.sleep(1)
    r = await rec.message(lh, {"request": "listparticipants", "room": 4321}, note="listparticipants 4321")
    ids = [p["id"] for p in r["plugindata"]["data"]["participants"] if p.get("publisher")]
    sh2 = await rec.attach("attach subscriber 4321")
    sub2 = Peer(rec, sh2)
    await rec.message(sh2, {"request": "join", "ptype": "subscriber", "room": 4321, "pin": "nope",
                            "streams": [{"feed": i} for i in ids]}, note="subscriber join, wrong pin")
    r = await rec.message(sh2, {"request": "join", "ptype": "subscriber", "room": 4321, "pin": "sesame",
                                "streams": [{"feed": i} for i in ids]}, note="subscriber join, two feeds")
    await sub2.start(r, note="start, two feeds")
    await rec.wait(lambda m: m.get("janus") == "webrtcup" and m.get("sender") == sh2, 15, "sub2 webrtcup")
    await asyncio.sleep(1)
    # Both vanish. Janus re-offers once per departure, holding each offer back until the
    # one before is answered.
    cpeer.stop(); dpeer.stop()
    await carol.ws.close(); await dave.ws.close()
    for _ in range(2):
        ev = await rec.wait(lambda m: m.get("sender") == sh2 and m.get("jsep")
                            and "transaction" not in m, 10, "re-offer after a departure")
        await sub2.start(ev, note="start answering a departure")
    await asyncio.sleep(1)
    sub2.stop()
    # A session left without keepalives times out.
    lazy = Conn("lazy")
    await lazy.open()
    await lazy.create()
    await lazy.wait(lambda m: m.get("janus") == "timeout", 40, "session timeout")
    await lazy.ws.close()
    ka.cancel()
    sub.stop()
    bpeer.stop()
    t = await rec.send({"janus": "destroy", "session_id": rec.session}, "destroy session")
    await rec.reply(t)
    await asyncio.sleep(0.5)
    t = await rec.send({"janus": "keepalive", "session_id": rec.session}, "keepalive on a gone session")
    await rec.reply(t)
    await bob.ws.close()
    await rec.ws.close()


asyncio.run(main())
