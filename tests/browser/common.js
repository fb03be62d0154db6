// Shared by the test pages (tests/common/browser.rs serves them): the options in the query
// string, fake media, the codec choice, ICE candidate filtering, sender statistics and
// reports back to the test. Every step reports an `error` event when it fails, so a test sees
// why instead of waiting for a timeout.
'use strict';

const params = new URLSearchParams(location.search);

/** What the test asked for. */
const opts = {
  // VP8, VP9, H264 or AV1.
  codec: (params.get('codec') || 'VP8').toUpperCase(),
  // A VP9/AV1 scalability mode, e.g. L3T3_KEY (one encoding, spatial/temporal layers).
  svc: params.get('svc'),
  // Three simulcast encodings with rids q, h, f.
  simulcast: params.get('simulcast') === '1',
  // With simulcast, "A-B": the top encoding (rid f) is turned off A seconds after the
  // connection came up, and on again at B (what a sender short of bandwidth does).
  topOff: params.get('topOff'),
  // Seconds of media once connected.
  duration: Number(params.get('duration') || '6'),
  // Tell the other side only about 127.0.0.1 candidates (the tests use loopback alone).
  loopbackOnly: params.get('loopback') !== '0',
};

// Reports go out one after the other, so the test sees them in order.
let reports = Promise.resolve();

/** Sends `{event, ...fields}` to the test's page server. */
function report(event, fields = {}) {
  const body = JSON.stringify({ event, page_secs: performance.now() / 1000, ...fields });
  reports = reports.then(() =>
    fetch('/report', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body })
      .catch(() => {}));
  return reports;
}

/** Reports a failure (the test panics with the message). */
function fail(where, e) {
  const stack = e && e.stack ? `\n${e.stack}` : '';
  return report('error', { message: `${where}: ${e}${stack}` });
}

window.addEventListener('error', (e) => fail('uncaught', e.message));
window.addEventListener('unhandledrejection', (e) => fail('unhandled rejection', e.reason));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rejects after `ms` with what was being waited for. */
function within(ms, what, promise) {
  return Promise.race([
    promise,
    sleep(ms).then(() => { throw new Error(`${what}: nothing after ${ms} ms`); }),
  ]);
}

/** The fake camera and microphone (the browsers are started with fake devices). */
function getMedia() {
  // Three simulcast or spatial layers need a large enough picture: browsers drop layers
  // below about 320 pixels.
  const video = opts.simulcast || opts.svc
    ? { width: 1280, height: 720, frameRate: 30 }
    : { width: 640, height: 480, frameRate: 30 };
  return navigator.mediaDevices.getUserMedia({ audio: true, video });
}

/** The send codecs to prefer for `opts.codec`, with RTX so losses can be repaired. */
function preferredCodecs() {
  const all = RTCRtpSender.getCapabilities('video').codecs;
  let chosen = all.filter((c) => c.mimeType.toUpperCase() === `VIDEO/${opts.codec}`);
  const fmtp = (c) => c.sdpFmtpLine || '';
  if (opts.codec === 'H264') {
    // Constrained baseline, packetization mode 1: what every H.264 receiver takes.
    const cb = chosen.filter((c) => /packetization-mode=1/.test(fmtp(c)) && /42e01f/.test(fmtp(c)));
    chosen = cb.length ? cb.slice(0, 1) : chosen.filter((c) => /packetization-mode=1/.test(fmtp(c)));
  } else if (opts.codec === 'VP9') {
    const p0 = chosen.filter((c) => !/profile-id=[^0]/.test(fmtp(c)));
    chosen = p0.length ? p0 : chosen;
  }
  if (!chosen.length) {
    const offered = [...new Set(all.map((c) => c.mimeType))].join(', ');
    throw new Error(`this browser cannot send ${opts.codec} (it can send ${offered})`);
  }
  return [...chosen, ...all.filter((c) => c.mimeType.toUpperCase() === 'VIDEO/RTX')];
}

/** Adds the stream as send-only audio and video transceivers, video in the chosen codec. */
function addTracks(pc, stream) {
  const [audio] = stream.getAudioTracks();
  const [video] = stream.getVideoTracks();
  pc.addTransceiver(audio, { direction: 'sendonly', streams: [stream] });
  const init = { direction: 'sendonly', streams: [stream] };
  if (opts.simulcast) {
    init.sendEncodings = [
      { rid: 'q', scaleResolutionDownBy: 4 },
      { rid: 'h', scaleResolutionDownBy: 2 },
      { rid: 'f' },
    ];
  } else if (opts.svc) {
    init.sendEncodings = [{ scalabilityMode: opts.svc }];
  }
  const transceiver = pc.addTransceiver(video, init);
  transceiver.setCodecPreferences(preferredCodecs());
}

/** Whether a candidate line ("candidate:…") may go to the other side. */
function allowed(candidate) {
  if (!candidate) return false;
  if (!opts.loopbackOnly) return true;
  const f = candidate.replace(/^a=/, '').split(' ');
  return Boolean(f[2]) && f[2].toLowerCase() === 'udp' && f[4] === '127.0.0.1';
}

/** Whether a gathered candidate may go to the other side; reports it either way. */
function usable(candidate) {
  if (!candidate) return false;
  const sent = allowed(candidate);
  report('candidate', { candidate, sent });
  return sent;
}

/** An SDP without the candidates that may not go to the other side. */
function filterSdp(sdp) {
  return sdp.split('\r\n')
    .filter((l) => !l.startsWith('a=candidate:') || allowed(l))
    .join('\r\n');
}

/** Resolves once ICE and DTLS are up; rejects if the connection fails or takes over 20 s. */
function connected(pc) {
  return within(20000, 'connecting', new Promise((resolve, reject) => {
    const check = () => {
      if (pc.connectionState === 'connected') resolve();
      if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
        reject(new Error(`connection ${pc.connectionState}`));
      }
    };
    pc.addEventListener('connectionstatechange', check);
    check();
  }));
}

/** What the browser says it sent: per outbound RTP stream, the codec, frames and layers. */
async function senderStats(pc) {
  const stats = await pc.getStats();
  const codecs = {};
  stats.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s; });
  const streams = [];
  stats.forEach((s) => {
    if (s.type !== 'outbound-rtp') return;
    const codec = codecs[s.codecId] || {};
    streams.push({
      kind: s.kind,
      rid: s.rid || null,
      codec: codec.mimeType || null,
      fmtp: codec.sdpFmtpLine || null,
      packets_sent: s.packetsSent || 0,
      frames_encoded: s.framesEncoded || 0,
      width: s.frameWidth || null,
      height: s.frameHeight || null,
      fps: s.framesPerSecond || null,
      scalability_mode: s.scalabilityMode || null,
      encoder: s.encoderImplementation || null,
      active: s.active === undefined ? null : s.active,
    });
  });
  return streams;
}

/**
 * Sends for `opts.duration` seconds once connected, and returns what was sent:
 * `sent_secs` counts from the moment the connection came up.
 */
async function sendForDuration(pc) {
  await connected(pc);
  const start = performance.now();
  report('connected');
  if (opts.topOff) {
    const [off, on] = opts.topOff.split('-').map(Number);
    const sender = pc.getSenders().find((s) => s.track && s.track.kind === 'video');
    const setTop = async (active) => {
      const p = sender.getParameters();
      p.encodings.find((e) => e.rid === 'f').active = active;
      await sender.setParameters(p);
      report('top_layer', { active, secs: (performance.now() - start) / 1000 });
    };
    setTimeout(() => setTop(false).catch((e) => fail('turning the top layer off', e)), off * 1000);
    setTimeout(() => setTop(true).catch((e) => fail('turning the top layer on', e)), on * 1000);
  }
  await sleep(opts.duration * 1000);
  const streams = await senderStats(pc);
  return { sent_secs: (performance.now() - start) / 1000, streams, user_agent: navigator.userAgent };
}
