//! A real Janus (Debian's `janus` 1.1.x, VideoRoom plugin, WebSocket transport) for the tests,
//! in a network namespace of its own: Janus gathers ICE candidates only on non-loopback
//! interfaces, so the fixture makes a namespace with a veth pair that leads nowhere (both
//! ends inside it), Janus on one end's address, and callrec and the test peers, run inside
//! the same namespace ([`Janus::netns`]), on the other's ([`Janus::local_address`]).
//!
//! Janus's config is written by the fixture: the rooms the test asks for ([`JanusRoom`]),
//! the WebSocket API on the namespace's address (port [`WS_PORT`], free in a fresh
//! namespace), every other plugin, transport, logger and event handler off, `full_trickle`,
//! ICE on the veth only, a short `session_timeout` ([`SESSION_TIMEOUT_SECS`]), and the
//! VideoRoom `admin_key` [`ADMIN_KEY`] (so rooms are created with it, and private rooms
//! listed). The test talks to Janus through its API too ([`Janus::request`]): to create a
//! room at run time, or to see who publishes. [`Janus::restart`] kills Janus and starts it on
//! the same config. On drop Janus is killed and the namespace (with whatever the test still
//! runs in it) removed, also when the test panics; Janus's log is printed then.
//!
//! Two kernel settings make the veth usable inside one namespace: the media between the two
//! ends really goes through the veth (libnice, Janus's and webrtcbin's alike, sends through
//! the interface of its address: with `accept_local` off no connectivity check gets through,
//! with it on the media shows in the veth's counters), so it comes in on the other end with
//! a source address that is local to the namespace, which the kernel drops unless
//! `accept_local` is set (and `rp_filter` is off).

use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message, WebSocket};

use super::netns::{is_root, NetNs};
use super::processes::{kill, tail_file};

/// Janus's WebSocket API port, on its address inside the namespace.
pub const WS_PORT: u16 = 8188;
/// The VideoRoom plugin's `admin_key`: needed to create rooms and to list private ones.
pub const ADMIN_KEY: &str = "callrec-test-admin-key";
/// Janus forgets a session without a request for this long (callrec keeps its alive every
/// 20 s; Janus's default is 60 s, shorter makes a missed keepalive show up in a test).
pub const SESSION_TIMEOUT_SECS: u32 = 30;
/// Longest Janus may take to start and answer on its WebSocket.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest one API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Where Debian installs Janus's plugins.
const LIB: &str = "/usr/lib/x86_64-linux-gnu/janus";

/// A VideoRoom room: what goes into janus.plugin.videoroom.jcfg, or into a `create`.
#[derive(Debug, Clone)]
pub struct JanusRoom {
    pub id: u64,
    pub description: String,
    pub pin: Option<String>,
    /// Most publishers at once.
    pub publishers: u32,
    /// Allowed audio codecs, comma-separated (`opus`).
    pub audiocodec: String,
    /// Allowed video codecs, comma-separated (`vp8`, `h264`, `vp8,h264`).
    pub videocodec: String,
    /// Hidden from `list` unless the admin key is given.
    pub private: bool,
    /// Janus asks each publisher for a keyframe every this many seconds by itself (besides
    /// when a subscriber joins, and when a subscriber asks for one).
    pub fir_freq: u32,
}

impl JanusRoom {
    /// A public room for 6 publishers, Opus and VP8 or H.264, a keyframe request every 10 s.
    pub fn new(id: u64) -> Self {
        JanusRoom {
            id,
            description: format!("Room {id}"),
            pin: None,
            publishers: 6,
            audiocodec: "opus".into(),
            videocodec: "vp8,h264".into(),
            private: false,
            fir_freq: 10,
        }
    }

    /// With a PIN publishers and subscribers must give.
    pub fn pin(mut self, pin: &str) -> Self {
        self.pin = Some(pin.to_owned());
        self
    }

    /// With this description.
    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }

    /// With these video codecs allowed.
    pub fn videocodec(mut self, codecs: &str) -> Self {
        self.videocodec = codecs.to_owned();
        self
    }

    /// With at most `n` publishers.
    pub fn publishers(mut self, n: u32) -> Self {
        self.publishers = n;
        self
    }

    /// With Janus asking each publisher for a keyframe every `secs` seconds (0: never by
    /// itself, only when a subscriber joins or asks).
    pub fn fir_freq(mut self, secs: u32) -> Self {
        self.fir_freq = secs;
        self
    }

    /// Hidden from `list` without the admin key.
    pub fn private(mut self) -> Self {
        self.private = true;
        self
    }

    /// Its section of janus.plugin.videoroom.jcfg.
    fn jcfg(&self) -> String {
        let mut s = format!(
            "room-{}: {{\n\tdescription = {}\n\tpublishers = {}\n\taudiocodec = {}\n\t\
             videocodec = {}\n\tfir_freq = {}\n",
            self.id,
            quote(&self.description),
            self.publishers,
            quote(&self.audiocodec),
            quote(&self.videocodec),
            self.fir_freq
        );
        if let Some(pin) = &self.pin {
            s.push_str(&format!("\tpin = {}\n", quote(pin)));
        }
        if self.private {
            s.push_str("\tis_private = true\n");
        }
        s.push_str("}\n");
        s
    }

    /// The body of a VideoRoom `create` for it.
    fn create_body(&self) -> Value {
        let mut body = json!({
            "request": "create",
            "room": self.id,
            "description": self.description,
            "publishers": self.publishers,
            "audiocodec": self.audiocodec,
            "videocodec": self.videocodec,
            "fir_freq": self.fir_freq,
            "is_private": self.private,
            "admin_key": ADMIN_KEY,
        });
        if let Some(pin) = &self.pin {
            body["pin"] = pin.as_str().into();
        }
        body
    }
}

/// A libconfig string literal.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A real Janus in a network namespace of its own.
pub struct Janus {
    child: Option<Child>,
    dir: tempfile::TempDir,
    janus_ip: Ipv4Addr,
    local_ip: Ipv4Addr,
    api_secret: Option<String>,
    // Last: the namespace goes after Janus is killed.
    ns: NetNs,
}

/// Why a Janus could not be started here (the test then says it is skipped).
#[derive(Debug)]
pub struct Unavailable(pub String);

impl Janus {
    /// Starts Janus with `rooms` and waits until its WebSocket answers.
    pub fn start(rooms: &[JanusRoom]) -> Result<Self, Unavailable> {
        Self::start_with(rooms, None)
    }

    /// [`Janus::start`] with an `api_secret` every request must carry.
    pub fn start_with(rooms: &[JanusRoom], api_secret: Option<&str>) -> Result<Self, Unavailable> {
        if !is_root() {
            return Err(Unavailable(
                "needs root, to make a network namespace".into(),
            ));
        }
        if !Path::new("/usr/bin/janus").is_file()
            || !Path::new(LIB)
                .join("plugins/libjanus_videoroom.so")
                .is_file()
        {
            return Err(Unavailable(
                "needs Janus (`janus`; scripts/setup-debian.sh installs it)".into(),
            ));
        }
        let ns = NetNs::create("callrec-janus").map_err(Unavailable)?;
        // A /24 of its own per namespace of this process, so logs tell them apart.
        let (b, c) = (
            200 + (std::process::id() % 50) as u8,
            (ns.index() % 250) as u8 + 1,
        );
        let janus_ip = Ipv4Addr::new(10, b, c, 1);
        let local_ip = Ipv4Addr::new(10, b, c, 2);
        let (ja, jb) = (format!("ja{}", ns.index()), format!("jb{}", ns.index()));
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns.exec(&[
            "ip", "link", "add", &ja, "type", "veth", "peer", "name", &jb,
        ]);
        for (dev, ip) in [(&ja, janus_ip), (&jb, local_ip)] {
            ns.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", dev]);
            ns.exec(&["ip", "link", "set", dev, "up"]);
        }
        for dev in ["all", "default", &ja, &jb] {
            ns.exec(&[
                "sysctl",
                "-q",
                "-w",
                &format!("net.ipv4.conf.{dev}.accept_local=1"),
            ]);
            ns.exec(&[
                "sysctl",
                "-q",
                "-w",
                &format!("net.ipv4.conf.{dev}.rp_filter=0"),
            ]);
        }
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), &ja, janus_ip, rooms, api_secret);
        let mut janus = Janus {
            child: None,
            dir,
            janus_ip,
            local_ip,
            api_secret: api_secret.map(str::to_owned),
            ns,
        };
        janus.spawn();
        Ok(janus)
    }

    /// Starts the Janus process on the config written and waits until it answers `info`.
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = self.ns.command("/usr/bin/janus");
        cmd.arg("-F")
            .arg(self.dir.path())
            .arg("-C")
            .arg(self.dir.path().join("janus.jcfg"))
            .arg("-o") // no colours in the log
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut child = cmd.spawn().expect("start janus");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "janus exited at start ({status}); log:\n{}",
                    tail_file(&self.log_path(), 4000)
                );
            }
            if let Ok(mut api) = self.api() {
                if api
                    .call(json!({"janus": "info"}))
                    .is_ok_and(|r| r["janus"] == "server_info")
                {
                    break;
                }
            }
            if Instant::now() >= deadline {
                kill(&mut child);
                panic!(
                    "janus did not answer on {} within {START_TIMEOUT:?}; log:\n{}",
                    self.url(),
                    tail_file(&self.log_path(), 4000)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child = Some(child);
    }

    /// Kills Janus (SIGKILL, as a crash would end it) without starting it again.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }

    /// Kills Janus and starts it again on the same config: every session, handle and
    /// PeerConnection is gone, rooms created at run time too; the configured rooms are back.
    pub fn restart(&mut self) {
        self.kill();
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.log_path())
            .unwrap();
        let _ = writeln!(log, "==== restarted by the test ====");
        self.spawn();
    }

    /// `ws://ADDRESS:PORT`, Janus's WebSocket API (reachable inside [`Janus::netns`] only).
    pub fn url(&self) -> String {
        format!("ws://{}:{WS_PORT}", self.janus_ip)
    }

    /// Janus's own address, inside [`Janus::netns`] (that of [`Janus::url`]).
    pub fn address(&self) -> String {
        self.janus_ip.to_string()
    }

    /// The namespace's name: run callrec and the test peers there (`ip netns exec`).
    pub fn netns(&self) -> &str {
        self.ns.name()
    }

    /// The address callrec and the test peers use for ICE (`[ice] local_addresses`,
    /// `--ice-address`): the veth's other end.
    pub fn local_address(&self) -> String {
        self.local_ip.to_string()
    }

    /// The API secret requests must carry, if Janus was started with one.
    pub fn api_secret(&self) -> Option<&str> {
        self.api_secret.as_deref()
    }

    /// Everything Janus logged so far (all its runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("janus.log")
    }

    /// A connection to Janus's API, from inside the namespace.
    fn api(&self) -> std::io::Result<Api> {
        let addr = SocketAddr::from((self.janus_ip, WS_PORT));
        let stream = self.ns.connect_tcp(addr, Duration::from_secs(2))?;
        Api::handshake(stream, &self.url(), self.api_secret.clone())
    }

    /// Sends one VideoRoom request `body` on a Janus session of its own, and returns the
    /// plugin's reply (`plugindata.data`). Panics if Janus does not answer in time.
    pub fn request(&self, body: Value) -> Value {
        let mut api = self
            .api()
            .unwrap_or_else(|e| panic!("cannot reach Janus at {}: {e}", self.url()));
        let session = api.core(json!({"janus": "create"}))["data"]["id"].clone();
        let handle = api.core(json!({"janus": "attach", "session_id": session,
            "plugin": "janus.plugin.videoroom"}))["data"]["id"]
            .clone();
        let reply = api
            .call(
                json!({"janus": "message", "session_id": session, "handle_id": handle,
                "body": body}),
            )
            .unwrap_or_else(|e| panic!("Janus did not answer {body}: {e}"));
        let _ = api.call(json!({"janus": "destroy", "session_id": session}));
        reply["plugindata"]["data"].clone()
    }

    /// Creates `room` at run time (VideoRoom `create`, with the admin key).
    pub fn create_room(&self, room: &JanusRoom) {
        let reply = self.request(room.create_body());
        assert_eq!(
            reply["videoroom"], "created",
            "Janus did not create room {}: {reply}",
            room.id
        );
    }

    /// Who is in `room` now (VideoRoom `listparticipants`): `id`, `display`, `publisher`.
    pub fn participants(&self, room: u64) -> Vec<Value> {
        let reply = self.request(json!({"request": "listparticipants", "room": room}));
        reply["participants"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("listparticipants {room}: {reply}"))
    }

    /// Waits until `room` has a publisher with each of `displays` (Janus's own word that
    /// they publish), and returns the room's participants.
    pub fn wait_publishers(&self, room: u64, displays: &[&str], timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let participants = self.participants(room);
            let publishing = |d: &&str| {
                participants
                    .iter()
                    .any(|p| p["display"] == *d && p["publisher"] == true)
            };
            if displays.iter().all(publishing) {
                return participants;
            }
            assert!(
                Instant::now() < deadline,
                "room {room}: not all of {displays:?} publish within {timeout:?}: \
                 {participants:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until `room` has a participant that is none of `ours` (by display): callrec's
    /// follower, which joins as a publisher that never publishes. Returns it.
    pub fn wait_follower(&self, room: u64, ours: &[&str], timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let participants = self.participants(room);
            if let Some(p) = participants
                .iter()
                .find(|p| !ours.iter().any(|d| p["display"] == *d))
            {
                return p.clone();
            }
            assert!(
                Instant::now() < deadline,
                "room {room}: callrec did not join within {timeout:?}: {participants:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- janus log tail ({}) ----\n{}",
                self.ns.name(),
                tail_file(&self.log_path(), 6000)
            );
        }
    }
}

/// Janus's `debug_level`: 4 (warnings and what it does), or `CALLREC_JANUS_DEBUG_LEVEL`
/// (0-7; 5 shows keyframe requests and ICE, 7 everything) to look into a failure.
fn debug_level() -> u8 {
    std::env::var("CALLREC_JANUS_DEBUG_LEVEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|l| *l <= 7)
        .unwrap_or(4)
}

/// Writes janus.jcfg, the VideoRoom's and the WebSocket transport's configs into `dir`.
fn write_config(
    dir: &Path,
    iface: &str,
    ip: Ipv4Addr,
    rooms: &[JanusRoom],
    api_secret: Option<&str>,
) {
    let secret = api_secret
        .map(|s| format!("\tapi_secret = {}\n", quote(s)))
        .unwrap_or_default();
    let general = format!(
        "general: {{\n\tconfigs_folder = {dir}\n\tplugins_folder = \"{LIB}/plugins\"\n\t\
         transports_folder = \"{LIB}/transports\"\n\tevents_folder = \"{LIB}/events\"\n\t\
         loggers_folder = \"{LIB}/loggers\"\n\tdebug_level = {level}\n\t\
         session_timeout = {SESSION_TIMEOUT_SECS}\n\tserver_name = \"callrec-test\"\n{secret}}}\n",
        dir = quote(&dir.display().to_string()),
        level = debug_level(),
    );
    // Everything but the VideoRoom and the WebSocket transport is off: less to start, and
    // nothing else listens.
    let plugins = [
        "audiobridge",
        "duktape",
        "echotest",
        "lua",
        "nosip",
        "recordplay",
        "sip",
        "streaming",
        "textroom",
        "videocall",
        "voicemail",
    ]
    .map(|p| format!("libjanus_{p}.so"))
    .join(",");
    let transports = ["http", "mqtt", "nanomsg", "pfunix", "rabbitmq"]
        .map(|t| format!("libjanus_{t}.so"))
        .join(",");
    let janus = format!(
        "{general}media: {{\n\trtp_port_range = \"40000-40999\"\n}}\n\
         nat: {{\n\tice_enforce_list = \"{iface}\"\n\tignore_mdns = true\n\t\
         full_trickle = true\n}}\n\
         plugins: {{\n\tdisable = \"{plugins}\"\n}}\n\
         transports: {{\n\tdisable = \"{transports}\"\n}}\n\
         loggers: {{\n\tdisable = \"libjanus_jsonlog.so\"\n}}\n\
         events: {{\n\tbroadcast = false\n}}\n"
    );
    std::fs::write(dir.join("janus.jcfg"), janus).unwrap();
    let ws = format!(
        "general: {{\n\tjson = \"plain\"\n\tws = true\n\tws_port = {WS_PORT}\n\t\
         ws_ip = \"{ip}\"\n\twss = false\n}}\nadmin: {{\n\tadmin_ws = false\n\t\
         admin_wss = false\n}}\n"
    );
    std::fs::write(dir.join("janus.transport.websockets.jcfg"), ws).unwrap();
    let mut videoroom = format!("general: {{\n\tadmin_key = {}\n}}\n", quote(ADMIN_KEY));
    for room in rooms {
        videoroom.push_str(&room.jcfg());
    }
    std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), videoroom).unwrap();
}

/// A blocking connection to Janus's WebSocket API (subprotocol `janus-protocol`), every
/// read bounded by [`REQUEST_TIMEOUT`].
struct Api {
    ws: WebSocket<TcpStream>,
    secret: Option<String>,
    next: u64,
}

impl Api {
    fn handshake(stream: TcpStream, url: &str, secret: Option<String>) -> std::io::Result<Self> {
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        let mut request = url.into_client_request().map_err(std::io::Error::other)?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "janus-protocol".parse().map_err(std::io::Error::other)?,
        );
        let (ws, _) = tungstenite::client(request, stream)
            .map_err(|e| std::io::Error::other(format!("WebSocket handshake: {e}")))?;
        Ok(Api {
            ws,
            secret,
            next: 0,
        })
    }

    /// Sends `msg` (with a transaction, and the API secret) and returns Janus's reply to it:
    /// for plugin messages the event after the `ack`.
    fn call(&mut self, mut msg: Value) -> Result<Value, String> {
        self.next += 1;
        let transaction = format!("test-{}", self.next);
        msg["transaction"] = transaction.clone().into();
        if let Some(secret) = &self.secret {
            msg["apisecret"] = secret.clone().into();
        }
        let is_message = msg["janus"] == "message";
        self.ws
            .send(Message::text(msg.to_string()))
            .map_err(|e| format!("send: {e}"))?;
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        while Instant::now() < deadline {
            let text = match self.ws.read() {
                Ok(Message::Text(text)) => text,
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    continue
                }
                Err(e) => return Err(format!("read: {e}")),
            };
            let Ok(reply) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            if reply["transaction"] != transaction.as_str() {
                continue;
            }
            if reply["janus"] == "ack" && is_message {
                continue;
            }
            return Ok(reply);
        }
        Err(format!("no reply within {REQUEST_TIMEOUT:?}"))
    }

    /// [`Api::call`] for a core request that must succeed.
    fn core(&mut self, msg: Value) -> Value {
        let reply = self
            .call(msg.clone())
            .unwrap_or_else(|e| panic!("Janus did not answer {msg}: {e}"));
        assert_eq!(reply["janus"], "success", "Janus refused {msg}: {reply}");
        reply
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}
