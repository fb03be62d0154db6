//! Test support: the real signalling server, the callrec daemon and test producers as child
//! processes (killed on drop), and media verification with ffprobe/ffmpeg. Every wait is
//! bounded; everything binds to 127.0.0.1 on ports the OS picks.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

fn tool(name: &str) -> PathBuf {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    home.join("bin").join(name)
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .arg(sig)
        .arg(child.id().to_string())
        .status();
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tail(path: &Path, bytes: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(bytes);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    text[start..].to_owned()
}

/// A real `gst-webrtc-signalling-server` on a loopback port.
pub struct SignallingServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    tls: Option<(PathBuf, PathBuf)>,
}

impl SignallingServer {
    /// Starts it on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts it with TLS (`wss://`), using a PEM certificate chain and key.
    pub fn start_tls(cert: &Path, key: &Path) -> Self {
        Self::start_with(Some((cert.to_owned(), key.to_owned())))
    }

    fn start_with(tls: Option<(PathBuf, PathBuf)>) -> Self {
        let mut server = SignallingServer {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
            tls,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
            let mut cmd = Command::new(tool("gst-webrtc-signalling-server"));
            cmd.args(["--host", "127.0.0.1", "--port", &self.port.to_string()]);
            if let Some((cert, key)) = &self.tls {
                cmd.arg("--cert").arg(cert).arg("--key").arg(key);
            }
            let mut child = cmd
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect(
                "start gst-webrtc-signalling-server (cargo install gst-plugin-webrtc-signalling)",
            );
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port still taken: try again
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            kill(&mut child);
            assert!(
                Instant::now() < deadline,
                "signalling server did not start: {}",
                tail(&self.dir.path().join("server.log"), 2000)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `ws://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Kills it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }

    /// Kills it and starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for SignallingServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `callrec-testpeer` producer process.
pub struct TestPeer {
    child: Child,
    events: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    dir: tempfile::TempDir,
}

impl TestPeer {
    /// Starts a producer against `url` with extra arguments.
    pub fn spawn(url: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("peer.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_callrec-testpeer"))
            .arg("--url")
            .arg(url)
            .args(["--ice-address", "127.0.0.1"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start callrec-testpeer");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        TestPeer {
            child,
            events: rx,
            seen: vec![],
            dir,
        }
    }

    /// Waits for the next event named `event` (or returns one already seen but not taken).
    pub fn wait_event(&mut self, event: &str, timeout: Duration) -> Value {
        if let Some(pos) = self.seen.iter().position(|v| v["event"] == event) {
            return self.seen.remove(pos);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) if v["event"] == event => return v,
                Ok(v) => self.seen.push(v),
                Err(_) => panic!(
                    "test peer: no {event:?} event within {timeout:?}; stderr tail:\n{}",
                    tail(&self.dir.path().join("peer.log"), 3000)
                ),
            }
        }
    }

    /// Every event received so far (without waiting).
    pub fn events(&mut self) -> Vec<Value> {
        while let Ok(v) = self.events.try_recv() {
            self.seen.push(v);
        }
        self.seen.clone()
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_child(&mut self.child, timeout)
            .unwrap_or_else(|| panic!("test peer did not exit within {timeout:?}"))
    }

    /// SIGKILL: the abrupt disconnect.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }
}

impl Drop for TestPeer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// The callrec daemon, with a notify socket standing in for systemd.
pub struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    notifications: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Writes the config, starts `callrec run` and waits for READY=1.
    pub fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("callrec.toml");
        std::fs::write(&config_path, config).unwrap();
        let socket_path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&socket_path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let notifications = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let sink = notifications.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                        if msg.lines().any(|l| l == "READY=1") {
                            let _ = ready_tx.send(());
                        }
                        sink.lock().unwrap().push(msg);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        if Arc::strong_count(&sink) == 1 {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_callrec"))
            .args(["run", "--config"])
            .arg(&config_path)
            .env("NOTIFY_SOCKET", &socket_path)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "callrec=debug,info".into()),
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start callrec");
        let mut daemon = Daemon {
            child,
            dir,
            notifications,
        };
        if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let log = daemon.log();
            kill(&mut daemon.child);
            panic!("callrec did not send READY=1 within 20 s; log:\n{log}");
        }
        daemon
    }

    /// Runs `callrec check` on a config; returns its status and output.
    pub fn check(config: &str) -> (ExitStatus, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callrec.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_callrec"));
        cmd.args(["check", "--config"]).arg(&path);
        let out = run_with_timeout(cmd, Duration::from_secs(30));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status, text)
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        signal(&self.child, "-TERM");
    }

    /// Sends SIGINT.
    pub fn sigint(&self) {
        signal(&self.child, "-INT");
    }

    /// Sends SIGHUP (reload).
    pub fn sighup(&self) {
        signal(&self.child, "-HUP");
    }

    /// True while the daemon process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills it with SIGKILL and reaps it, as a crash would end it.
    pub fn sigkill(&mut self) {
        kill(&mut self.child);
    }

    /// Waits for the daemon to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match wait_child(&mut self.child, timeout) {
            Some(s) => s,
            None => panic!(
                "callrec did not exit within {timeout:?}; log tail:\n{}",
                tail(&self.dir.path().join("daemon.log"), 4000)
            ),
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// The sd_notify messages received so far.
    pub fn notifications(&self) -> Vec<String> {
        self.notifications.lock().unwrap().clone()
    }

    /// The daemon's temporary directory (config, log, notify socket).
    pub fn tmp_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        kill(&mut self.child);
        if std::thread::panicking() {
            eprintln!(
                "---- callrec log tail ----\n{}",
                tail(&self.dir.path().join("daemon.log"), 6000)
            );
        }
    }
}

/// Runs a command with a time limit, killing it if it runs over.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut v = vec![];
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_thread = std::thread::spawn(move || {
        let mut v = vec![];
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let status = match wait_child(&mut child, timeout) {
        Some(s) => s,
        None => {
            kill(&mut child);
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
    };
    Output {
        status,
        stdout: out_thread.join().unwrap(),
        stderr: err_thread.join().unwrap(),
    }
}

/// One stream as ffprobe sees it.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// `audio` or `video`.
    pub codec_type: String,
    /// `vp8`, `h264`, `opus`...
    pub codec_name: String,
    /// Video width.
    pub width: Option<u64>,
    /// Video height.
    pub height: Option<u64>,
}

/// A media file as ffprobe sees it.
#[derive(Debug, Clone)]
pub struct MediaInfo {
    /// Container.
    pub format_name: String,
    /// Seconds.
    pub duration_s: f64,
    /// Streams.
    pub streams: Vec<StreamInfo>,
}

/// Probes a file with ffprobe.
pub fn probe(path: &Path) -> MediaInfo {
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
    ])
    .arg(path);
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let num = |v: &Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
    let streams: Vec<StreamInfo> = v["streams"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| StreamInfo {
            codec_type: s["codec_type"].as_str().unwrap_or_default().to_owned(),
            codec_name: s["codec_name"].as_str().unwrap_or_default().to_owned(),
            width: s["width"].as_u64(),
            height: s["height"].as_u64(),
        })
        .collect();
    let duration_s = num(&v["format"]["duration"])
        .or_else(|| {
            v["streams"]
                .as_array()?
                .iter()
                .filter_map(|s| num(&s["duration"]))
                .reduce(f64::max)
        })
        .unwrap_or(0.0);
    MediaInfo {
        format_name: v["format"]["format_name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        duration_s,
        streams,
    }
}

/// True if the first video packet is flagged as a keyframe.
pub fn first_video_frame_is_keyframe(path: &Path) -> bool {
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=flags",
        "-read_intervals",
        "%+#1",
        "-of",
        "json",
    ])
    .arg(path);
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["packets"][0]["flags"]
        .as_str()
        .is_some_and(|f| f.starts_with('K'))
}

/// What decoding a whole file gave.
#[derive(Debug, Clone)]
pub struct DecodeReport {
    /// Decoded video frames.
    pub video_frames: u64,
    /// Decoded audio frames.
    pub audio_frames: u64,
    /// ffmpeg's error output.
    pub errors: String,
}

/// Decodes the first video and audio streams in full, counting frames and collecting errors.
pub fn decode_check(path: &Path) -> DecodeReport {
    // ffprobe decodes every frame of the stream with -count_frames and reports decoder errors
    // at -v error. (`ffmpeg -f null` would also complain about its own output muxer's
    // timestamp rounding, which says nothing about the file.)
    let count = |sel: &str| -> (u64, String) {
        let mut cmd = Command::new("ffprobe");
        cmd.args([
            "-v",
            "error",
            "-select_streams",
            sel,
            "-count_frames",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "json",
        ])
        .arg(path);
        let out = run_with_timeout(cmd, Duration::from_secs(60));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let frames = v["streams"][0]["nb_read_frames"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (frames, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (video_frames, video_errors) = count("v:0");
    let (audio_frames, audio_errors) = count("a:0");
    DecodeReport {
        video_frames,
        audio_frames,
        errors: video_errors + &audio_errors,
    }
}

/// What a recording should be.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    /// Video codec, or no video stream.
    pub video_codec: Option<&'a str>,
    /// Audio codec, or no audio stream.
    pub audio_codec: Option<&'a str>,
    /// Expected duration.
    pub duration_s: f64,
    /// Allowed difference.
    pub tolerance_s: f64,
}

/// Checks codecs, duration, the first video frame being a keyframe, and that frames decode.
pub fn assert_playable(path: &Path, expect: &Expect) {
    let info = probe(path);
    let codec = |kind: &str| {
        info.streams
            .iter()
            .find(|s| s.codec_type == kind)
            .map(|s| s.codec_name.clone())
    };
    assert_eq!(
        codec("video").as_deref(),
        expect.video_codec,
        "{}: {info:?}",
        path.display()
    );
    assert_eq!(
        codec("audio").as_deref(),
        expect.audio_codec,
        "{}: {info:?}",
        path.display()
    );
    assert!(
        (info.duration_s - expect.duration_s).abs() <= expect.tolerance_s,
        "{}: duration {:.3} s, expected {:.3} ± {} s: {info:?}",
        path.display(),
        info.duration_s,
        expect.duration_s,
        expect.tolerance_s
    );
    let report = decode_check(path);
    if expect.video_codec.is_some() {
        assert!(
            first_video_frame_is_keyframe(path),
            "{}: first video frame is not a keyframe",
            path.display()
        );
        assert!(
            report.video_frames > 0,
            "{}: no video frame decodes: {report:?}",
            path.display()
        );
    }
    if expect.audio_codec.is_some() {
        assert!(
            report.audio_frames > 0,
            "{}: no audio frame decodes: {report:?}",
            path.display()
        );
    }
    assert!(
        report.errors.trim().is_empty(),
        "{}: decoding errors: {}",
        path.display(),
        report.errors
    );
}

/// Reads `manifest.json` of a call directory (Null if absent or mid-write).
pub fn read_manifest(call_dir: &Path) -> Value {
    std::fs::read_to_string(call_dir.join("manifest.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// Polls `f` until it gives a value; panics after `timeout`.
pub fn wait_for<T>(timeout: Duration, poll: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        std::thread::sleep(poll);
    }
}

/// Waits (up to 40 s) until a call directory's manifest says `complete`, and returns it.
pub fn wait_complete(call_dir: &Path) -> Value {
    wait_for(Duration::from_secs(40), Duration::from_millis(200), || {
        let m = read_manifest(call_dir);
        (m["status"] == "complete").then_some(m)
    })
}

/// The call directories under a recordings directory.
pub fn find_call_dirs(recordings: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(recordings)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// The peer id a test peer got from the server.
pub fn peer_id(peer: &mut TestPeer) -> String {
    peer.wait_event("welcome", Duration::from_secs(20))["peer_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits for a test peer to finish and returns the seconds of media it sent.
pub fn sent_secs(peer: &mut TestPeer) -> f64 {
    let done = peer.wait_event("done", Duration::from_secs(60));
    done["sent_secs"].as_f64().expect("done carries sent_secs")
}

/// The complete files a manifest lists for a participant.
pub fn files_of(manifest: &Value, peer_id: &str) -> Vec<String> {
    let mut files: Vec<String> = manifest["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["participant"] == peer_id && t["status"] == "complete")
        .filter_map(|t| t["file"].as_str().map(str::to_owned))
        .collect();
    files.sort();
    files.dedup();
    files
}
