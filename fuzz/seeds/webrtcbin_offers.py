#!/usr/bin/python3
"""Writes webrtcbin's SDP offers for a few codec and bundle-policy mixes into DIR.

Usage: /usr/bin/python3 webrtcbin_offers.py DIR   (needs python3-gi and gir1.2-gst-plugins-bad-1.0)
The promise reply is kept in a variable before reading it: reading it inline crashes PyGObject.
"""
import sys, gi
gi.require_version('Gst','1.0'); gi.require_version('GstWebRTC','1.0'); gi.require_version('GstSdp','1.0')
from gi.repository import Gst, GstWebRTC, GstSdp
Gst.init(None)
def offer(specs, bundle='max-bundle'):
    pipe = Gst.Pipeline()
    w = Gst.ElementFactory.make('webrtcbin')
    w.set_property('bundle-policy', {'max-bundle':GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE,'none':GstWebRTC.WebRTCBundlePolicy.NONE,'max-compat':GstWebRTC.WebRTCBundlePolicy.MAX_COMPAT}[bundle])
    pipe.add(w)
    pipe.set_state(Gst.State.READY)
    for direction, caps in specs:
        w.emit('add-transceiver', direction, Gst.Caps.from_string(caps))
    p = Gst.Promise.new()
    w.emit('create-offer', None, p)
    p.wait()
    r = p.get_reply()
    o = r.get_value('offer')
    t = o.sdp.as_text()
    pipe.set_state(Gst.State.NULL)
    return t
S = GstWebRTC.WebRTCRTPTransceiverDirection
vp8 = 'application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000'
h264 = 'application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,packetization-mode=(string)1,profile-level-id=(string)42e01f'
vp9 = 'application/x-rtp,media=video,encoding-name=VP9,payload=98,clock-rate=90000'
opus = 'application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,encoding-params=(string)2'
cases = {
 'webrtcbin-vp8-opus': ([(S.SENDONLY, vp8), (S.SENDONLY, opus)], 'max-bundle'),
 'webrtcbin-h264-opus': ([(S.SENDONLY, h264), (S.SENDONLY, opus)], 'max-bundle'),
 'webrtcbin-vp9-nobundle': ([(S.SENDRECV, vp9), (S.SENDRECV, opus)], 'none'),
 'webrtcbin-two-video-compat': ([(S.SENDONLY, vp8), (S.SENDONLY, h264), (S.RECVONLY, opus)], 'max-compat'),
}
out = sys.argv[1]
for name, (specs, b) in cases.items():
    open(f'{out}/{name}.sdp','w').write(offer(specs, b))
