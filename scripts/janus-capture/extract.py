#!/usr/bin/python3
"""Picks the samples the Janus adapter's tests replay out of a capture made by run.sh.

Each sample is one message exactly as Janus sent it (pretty-printed), named after what it
answers or tells: replies are found by the transaction of the request whose note names
them, news by the handle it came on and what it says.

    extract.py CAPTURE.jsonl src/signalling/janus/samples
"""
import json
import os
import sys

capture, outdir = sys.argv[1], sys.argv[2]
entries = [json.loads(line) for line in open(capture)]

notes = {}  # transaction -> note of the request
for e in entries:
    m = e["msg"]
    if e["dir"] == "out" and isinstance(m, dict) and e["note"]:
        notes[m["transaction"]] = (e["who"], e["note"])

replies = {}  # (who, note) -> first final reply; acks apart
acks = {}
for e in entries:
    m = e["msg"]
    if e["dir"] != "in" or not isinstance(m, dict):
        continue
    key = notes.get(m.get("transaction"))
    if key is None or key[0] != e["who"]:
        continue
    if m.get("janus") == "ack":
        acks.setdefault(key, m)
    else:
        replies.setdefault(key, m)


def reply(note, who="rec"):
    return replies[(who, note)]


def handle(note):
    return reply(note)["data"]["id"]


def news(who, sender, pred, nth=0):
    """The nth message without a transaction from `sender` that satisfies pred."""
    found = [e["msg"] for e in entries
             if e["dir"] == "in" and e["who"] == who and isinstance(e["msg"], dict)
             and "transaction" not in e["msg"] and e["msg"].get("sender") == sender
             and pred(e["msg"])]
    return found[nth]


def data(m):
    return m.get("plugindata", {}).get("data", {})


f1234 = handle("attach follower 1234")
f1234b = handle("attach second follower 1234")
f4242 = handle("attach follower 4242")
f4321 = handle("attach follower 4321")
s1234 = handle("attach subscriber 1234")
s4321 = handle("attach subscriber 4321")

samples = {
    # The session.
    "create-success": reply("create"),
    "keepalive-ack": acks[("rec", "keepalive")],
    "error-no-such-session": reply("attach to no such session"),
    "error-unhandled-request": reply("unknown request"),
    "error-session-gone": reply("keepalive on a gone session"),
    "timeout": next(e["msg"] for e in entries
                    if e["who"] == "lazy" and e["msg"].get("janus") == "timeout"),
    # Rooms.
    "attach-control-success": reply("attach list handle"),
    "list": reply("list without admin key"),
    "list-admin-key": reply("list with admin key"),
    "list-wrong-admin-key": reply("list with a wrong admin key"),
    # Following a room.
    "attach-follower-1234": reply("attach follower 1234"),
    "joined-empty": reply("passive join, empty room"),
    "join-ack": acks[("rec", "passive join, empty room")],
    "join-no-such-room": reply("join a room that does not exist"),
    "join-wrong-pin": reply("join with a wrong pin"),
    "join-missing-pin": reply("join without the pin"),
    "join-bad-room-type": reply("room id of the wrong type"),
    "attach-follower-4321": reply("attach follower 4321"),
    "joined-pin": reply("passive join with pin"),
    "attach-second-follower-1234": reply("attach second follower 1234"),
    "joined-with-publisher": reply("passive join, room with a publisher"),
    "publishers-alice": news("rec", f1234, lambda m: "publishers" in data(m)),
    "publishers-bob": news("rec", f1234, lambda m: "publishers" in data(m), 1),
    "publishers-bob-again": news("rec", f1234, lambda m: "publishers" in data(m), 2),
    "unpublished-bob": news("rec", f1234, lambda m: "unpublished" in data(m)),
    "unpublished-bob-repeated": news("rec", f1234, lambda m: "unpublished" in data(m), 1),
    "leaving-bob": news("rec", f1234, lambda m: "leaving" in data(m)),
    "kicked-self": news("rec", f1234b, lambda m: data(m).get("reason") == "kicked"),
    "kicked-other": news("rec", f1234, lambda m: "kicked" in data(m)),
    "attach-follower-4242": reply("attach follower 4242"),
    "joined-temp": reply("join temp"),
    "destroyed": news("rec", f4242, lambda m: data(m).get("videoroom") == "destroyed"),
    "leave-ok": reply("leave the pinned room"),
    "detached": news("rec", f4321, lambda m: m.get("janus") == "detached"),
    # Receiving.
    "attach-subscriber-1234": reply("attach subscriber 1234"),
    "subscribe-no-such-feed": reply("subscribe to a feed that does not exist"),
    "attached": reply("subscriber join"),
    "trickle-candidate": news("rec", s1234, lambda m: m.get("janus") == "trickle"
                              and "candidate" in m["candidate"]),
    "trickle-completed": news("rec", s1234, lambda m: m.get("janus") == "trickle"
                              and m["candidate"].get("completed")),
    "started": reply("start with answer"),
    "webrtcup": news("rec", s1234, lambda m: m.get("janus") == "webrtcup"),
    "updated-subscribe": reply("update: subscribe bob"),
    "started-renegotiation": reply("start with the renegotiation answer"),
    "updated-unsubscribe": reply("unsubscribe bob"),
    "updated-by-janus": news("rec", s1234, lambda m: data(m).get("videoroom") == "updated"),
    "updated-reused-mlines": reply("update: subscribe bob again, reusing m-lines"),
    "updated-alice-gone": [m for m in (e["msg"] for e in entries if e["dir"] == "in")
                           if isinstance(m, dict) and m.get("sender") == s1234
                           and "transaction" not in m
                           and data(m).get("videoroom") == "updated"][-1],
    "updated-all-inactive": news("rec", s4321, lambda m: data(m).get("videoroom") == "updated"
                                 and not any(s.get("active") for s in data(m)["streams"])),
    "attach-subscriber-4321": reply("attach subscriber 4321"),
    "subscribe-wrong-pin": reply("subscriber join, wrong pin"),
    "attached-two-feeds": reply("subscriber join, two feeds"),
    # Publisher-side messages that share the shapes callrec reads.
    "hangup": next(e["msg"] for e in entries if e["msg"].get("janus") == "hangup"),
    "media": next(e["msg"] for e in entries if e["msg"].get("janus") == "media"),
}

os.makedirs(outdir, exist_ok=True)
for name, msg in samples.items():
    with open(os.path.join(outdir, name + ".json"), "w") as f:
        json.dump(msg, f, indent=2, ensure_ascii=False)
        f.write("\n")
print(f"wrote {len(samples)} samples into {outdir}")
