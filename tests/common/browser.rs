//! Real browsers as producers: headless Chromium or Firefox ESR opening one of the pages in
//! `tests/browser/`, served by a small HTTP server of the test's own that also collects what
//! the page reports (`POST /report`, one JSON object per event).
//!
//! No WebDriver: the browser is started on the page's URL and the page's script does the
//! rest, reporting `{"event": NAME, ...}` as it goes (`registered`, `session`, `connected`,
//! `done` with `sent_secs` and the sender's statistics, or `error` with a message). The
//! browser runs with fake camera and microphone, a fresh profile in a temporary directory, and
//! everything that phones home turned off; it is told to resolve no host name but 127.0.0.1.
//! It runs in a process group of its own, and the whole group is killed on drop.
//!
//! The page server also serves the JavaScript libraries Debian installs for web apps under
//! `/javascript/` (as Debian's `javascript-common` does for a web server): Janus's
//! `janus.js` (`libjs-janus-gateway`) and the `adapter.js` it needs (`libjs-webrtc-adapter`),
//! for a page that is a Janus app as Janus's own demos are. A browser can also run inside a
//! network namespace the test made ([`BrowserPage::open_in_netns`]), with the page server on
//! that namespace's loopback, to reach a server that listens only there (Janus).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::netns::bind_tcp_in;
use super::processes::{kill_group, tail_file};

/// Where the pages are.
pub const PAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");

/// The Debian packages' JavaScript the page server serves as `/javascript/DIR/FILE.js`, from
/// `/usr/share/javascript/DIR/` (the directories, with the package that installs each).
pub const SYSTEM_SCRIPTS: &[(&str, &str)] = &[
    ("janus-gateway", "libjs-janus-gateway"),
    ("webrtc-adapter", "libjs-webrtc-adapter"),
];
/// Where Debian installs JavaScript libraries for web apps.
const SYSTEM_JAVASCRIPT: &str = "/usr/share/javascript";

/// Which browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowserKind {
    /// Debian's `chromium`, `--headless=new`.
    Chromium,
    /// Debian's `firefox-esr`, `--headless`.
    Firefox,
}

/// Serves `tests/browser/` on 127.0.0.1 and collects the pages' reports.
pub struct PageServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    reports: mpsc::Receiver<Value>,
}

/// Largest request the page server reads (a report carries an SDP offer at most).
const MAX_REQUEST: usize = 1 << 20;

impl PageServer {
    /// Starts it on a port the OS picks.
    pub fn start() -> Self {
        Self::serve_on(TcpListener::bind("127.0.0.1:0").expect("bind the page server"))
    }

    /// Starts it on the loopback of network namespace `netns`, on a port the OS picks: the
    /// pages are then reachable from inside that namespace only.
    pub fn start_in_netns(netns: &str) -> Self {
        let listener = bind_tcp_in(netns, SocketAddr::from(([127, 0, 0, 1], 0)))
            .unwrap_or_else(|e| panic!("bind the page server in {netns}: {e}"));
        Self::serve_on(listener)
    }

    fn serve_on(listener: TcpListener) -> Self {
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, reports) = mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let tx = tx.clone();
                        std::thread::spawn(move || serve(stream, &tx));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        PageServer {
            addr,
            stop,
            thread: Some(thread),
            reports,
        }
    }

    /// The URL of page `name` (e.g. `producer.html`) with `query` (already encoded).
    pub fn url(&self, name: &str, query: &str) -> String {
        format!("http://{}/{name}?{query}", self.addr)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request: a page file (GET) or a report (POST /report). Every read and write is bounded.
fn serve(stream: TcpStream, reports: &mpsc::Sender<Value>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone.take(MAX_REQUEST as u64));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line.trim().is_empty() => break,
            Ok(_) => {
                if let Some((name, value)) = line.split_once(':') {
                    if name.trim().eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
        }
    }
    let mut body = vec![0; length.min(MAX_REQUEST)];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, kind, content) = match (method, path) {
        ("POST", "/report") => match serde_json::from_slice::<Value>(&body) {
            Ok(v) => {
                let _ = reports.send(v);
                ("204 No Content", "text/plain", vec![])
            }
            Err(e) => ("400 Bad Request", "text/plain", e.to_string().into_bytes()),
        },
        ("GET", path) => match page_file(path) {
            Some((kind, bytes)) => ("200 OK", kind, bytes),
            None => ("404 Not Found", "text/plain", b"no such page".to_vec()),
        },
        _ => ("405 Method Not Allowed", "text/plain", vec![]),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        content.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&content);
}

/// A file of [`PAGES`] by its URL path (plain names only), or a script of
/// [`SYSTEM_SCRIPTS`] (`/javascript/DIR/NAME.js`), with its content type.
fn page_file(path: &str) -> Option<(&'static str, Vec<u8>)> {
    let plain = |name: &str| {
        !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let (dir, name) = match path.strip_prefix("/javascript/") {
        Some(rest) => {
            let (lib, name) = rest.split_once('/')?;
            SYSTEM_SCRIPTS.iter().find(|(d, _)| *d == lib)?;
            (Path::new(SYSTEM_JAVASCRIPT).join(lib), name)
        }
        None => (PathBuf::from(PAGES), path.strip_prefix('/')?),
    };
    if !plain(name) {
        return None;
    }
    let kind = match Path::new(name).extension()?.to_str()? {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        _ => return None,
    };
    std::fs::read(dir.join(name)).ok().map(|b| (kind, b))
}

/// The [`SYSTEM_SCRIPTS`] packages that are not installed here (their directory is missing).
pub fn missing_system_scripts() -> Vec<&'static str> {
    SYSTEM_SCRIPTS
        .iter()
        .filter(|(dir, _)| !Path::new(SYSTEM_JAVASCRIPT).join(dir).is_dir())
        .map(|(_, package)| *package)
        .collect()
}

/// Preferences of the Firefox profile: fake media without asking, WebRTC on loopback only,
/// and nothing that phones home (updates, telemetry, safe browsing, captive portal and
/// connectivity checks, remote settings, the OpenH264 download, DNS prefetching).
const FIREFOX_PREFS: &[(&str, &str)] = &[
    ("media.navigator.streams.fake", "true"),
    ("media.navigator.permission.disabled", "true"),
    // Firefox hands out only the default route's address (here not loopback) to a page it
    // thinks is not capturing, and fake devices do not count: a standing permission does.
    ("permissions.default.camera", "1"),
    ("permissions.default.microphone", "1"),
    ("media.peerconnection.ice.loopback", "true"),
    ("media.peerconnection.ice.obfuscate_host_addresses", "false"),
    ("media.peerconnection.ice.tcp", "false"),
    ("media.gmp-manager.url", "\"\""),
    ("media.gmp-gmpopenh264.enabled", "false"),
    ("media.gmp-gmpopenh264.autoupdate", "false"),
    ("media.gmp-widevinecdm.enabled", "false"),
    ("media.eme.enabled", "false"),
    ("app.update.auto", "false"),
    ("app.update.enabled", "false"),
    ("app.normandy.enabled", "false"),
    ("app.shield.optoutstudies.enabled", "false"),
    ("browser.aboutwelcome.enabled", "false"),
    ("browser.discovery.enabled", "false"),
    ("browser.newtabpage.enabled", "false"),
    ("browser.region.network.url", "\"\""),
    ("browser.region.update.enabled", "false"),
    ("browser.safebrowsing.downloads.enabled", "false"),
    ("browser.safebrowsing.downloads.remote.enabled", "false"),
    ("browser.safebrowsing.malware.enabled", "false"),
    ("browser.safebrowsing.phishing.enabled", "false"),
    ("browser.safebrowsing.provider.google4.updateURL", "\"\""),
    ("browser.safebrowsing.provider.mozilla.updateURL", "\"\""),
    ("browser.search.geoip.url", "\"\""),
    ("browser.search.update", "false"),
    ("browser.sessionstore.resume_from_crash", "false"),
    ("browser.shell.checkDefaultBrowser", "false"),
    ("browser.startup.homepage_override.mstone", "\"ignore\""),
    ("browser.startup.page", "0"),
    ("browser.topsites.contile.enabled", "false"),
    ("captivedetect.canonicalURL", "\"\""),
    ("datareporting.healthreport.uploadEnabled", "false"),
    ("datareporting.policy.dataSubmissionEnabled", "false"),
    ("devtools.console.stdout.content", "true"),
    ("dom.push.enabled", "false"),
    ("dom.push.serverURL", "\"\""),
    ("extensions.blocklist.enabled", "false"),
    ("extensions.getAddons.cache.enabled", "false"),
    ("extensions.systemAddon.update.enabled", "false"),
    ("extensions.update.enabled", "false"),
    ("geo.enabled", "false"),
    ("network.captive-portal-service.enabled", "false"),
    ("network.connectivity-service.enabled", "false"),
    ("network.dns.disablePrefetch", "true"),
    ("network.http.speculative-parallel-limit", "0"),
    ("network.predictor.enabled", "false"),
    ("network.prefetch-next", "false"),
    ("network.trr.mode", "5"),
    ("security.OCSP.enabled", "0"),
    ("services.settings.server", "\"\""),
    ("toolkit.telemetry.archive.enabled", "false"),
    ("toolkit.telemetry.enabled", "false"),
    ("toolkit.telemetry.server", "\"\""),
    ("toolkit.telemetry.unified", "false"),
];

/// A browser showing one page, in a process group of its own, killed on drop.
pub struct Browser {
    kind: BrowserKind,
    child: Child,
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts `kind` on `url` with a fresh profile.
    pub fn launch(kind: BrowserKind, url: &str) -> Self {
        Self::launch_in(kind, url, None, &[])
    }

    /// Starts `kind` on `url` with a fresh profile, inside network namespace `netns` if
    /// given (`ip netns exec`, which execs the browser, so it still leads its process group),
    /// resolving `hosts` (IP addresses) as well as 127.0.0.1.
    pub fn launch_in(kind: BrowserKind, url: &str, netns: Option<&str>, hosts: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("profile");
        std::fs::create_dir(&profile).unwrap();
        let program = match kind {
            BrowserKind::Chromium => "/usr/bin/chromium",
            BrowserKind::Firefox => "/usr/bin/firefox-esr",
        };
        let mut cmd = match netns {
            None => Command::new(program),
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]).arg(program);
                cmd
            }
        };
        match kind {
            BrowserKind::Chromium => chromium(&mut cmd, &profile, hosts),
            BrowserKind::Firefox => firefox(&mut cmd, &profile),
        }
        let log = std::fs::File::create(dir.path().join("browser.log")).unwrap();
        let child = cmd
            .arg(url)
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group, so the renderers and helpers die with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {kind:?}: {e}"));
        Browser { kind, child, dir }
    }

    /// Which browser this is.
    pub fn kind(&self) -> BrowserKind {
        self.kind
    }

    /// The last `max` bytes of its log (stdout and stderr).
    pub fn log_tail(&self, max: usize) -> String {
        tail_file(&self.log_path(), max)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("browser.log")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// Chromium's options (after the program in `cmd`): headless, fake media, nothing that phones
/// home, and no host name resolved but 127.0.0.1 and `hosts`.
fn chromium(cmd: &mut Command, profile: &Path, hosts: &[&str]) {
    let excluded: String = ["127.0.0.1"]
        .iter()
        .chain(hosts)
        .map(|h| format!(", EXCLUDE {h}"))
        .collect();
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        // Gather 127.0.0.1 candidates too (Chromium leaves loopback out by default) and
        // show them as addresses rather than mDNS names nobody here can resolve.
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns,MediaRouter,OptimizationHints,Translate",
        "--no-default-browser-check",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-client-side-phishing-detection",
        "--disable-domain-reliability",
        "--disable-breakpad",
        "--metrics-recording-only",
        "--password-store=basic",
        "--mute-audio",
        "--autoplay-policy=no-user-gesture-required",
        "--enable-logging=stderr",
        "--v=0",
    ])
    // Whatever still tries to phone home finds no host.
    .arg(format!("--host-resolver-rules=MAP * ~NOTFOUND{excluded}"))
    .arg(format!("--user-data-dir={}", profile.display()));
}

/// Firefox's options (after the program in `cmd`), with the profile's preferences.
fn firefox(cmd: &mut Command, profile: &Path) {
    let prefs: String = FIREFOX_PREFS
        .iter()
        .map(|(k, v)| format!("user_pref(\"{k}\", {v});\n"))
        .collect();
    std::fs::write(profile.join("user.js"), prefs).unwrap();
    cmd.args(["--headless", "--no-remote", "--profile"])
        .arg(profile)
        .env("MOZ_CRASHREPORTER_DISABLE", "1")
        .env("MOZ_HEADLESS", "1");
}

/// A browser on one of the test pages, with the page's reports.
pub struct BrowserPage {
    server: PageServer,
    browser: Browser,
    seen: Vec<Value>,
}

impl BrowserPage {
    /// Serves the pages and opens `page` (e.g. `producer.html`) with `query` in `kind`.
    pub fn open(kind: BrowserKind, page: &str, query: &[(&str, &str)]) -> Self {
        Self::open_with(PageServer::start(), kind, None, &[], page, query)
    }

    /// [`BrowserPage::open`] with the browser and the page server inside network namespace
    /// `netns` (the page on that namespace's loopback), the browser resolving `hosts` (IP
    /// addresses of the namespace the page connects to) as well as 127.0.0.1.
    pub fn open_in_netns(
        kind: BrowserKind,
        netns: &str,
        hosts: &[&str],
        page: &str,
        query: &[(&str, &str)],
    ) -> Self {
        let server = PageServer::start_in_netns(netns);
        Self::open_with(server, kind, Some(netns), hosts, page, query)
    }

    fn open_with(
        server: PageServer,
        kind: BrowserKind,
        netns: Option<&str>,
        hosts: &[&str],
        page: &str,
        query: &[(&str, &str)],
    ) -> Self {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        let browser = Browser::launch_in(kind, &server.url(page, &query), netns, hosts);
        BrowserPage {
            server,
            browser,
            seen: vec![],
        }
    }

    /// Waits for the next report named `event` (or returns one already received but not
    /// taken). Panics, with the browser's log, on an `error` report or after `timeout`.
    pub fn wait_event(&mut self, event: &str, timeout: Duration) -> Value {
        if let Some(pos) = self.seen.iter().position(|v| v["event"] == event) {
            return self.seen.remove(pos);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.server.reports.recv_timeout(left) {
                Ok(v) if v["event"] == event => return v,
                Ok(v) if v["event"] == "error" => panic!(
                    "{:?} page failed: {}\nreports before: {:#?}\nbrowser log tail:\n{}",
                    self.browser.kind(),
                    v["message"].as_str().unwrap_or_default(),
                    self.seen,
                    self.browser.log_tail(4000)
                ),
                Ok(v) => self.seen.push(v),
                Err(_) => panic!(
                    "{:?} page: no {event:?} report within {timeout:?}; reports: {:#?}\nbrowser log tail:\n{}",
                    self.browser.kind(),
                    self.seen,
                    self.browser.log_tail(4000)
                ),
            }
        }
    }

    /// The reports received so far (without waiting).
    pub fn reports(&mut self) -> Vec<Value> {
        while let Ok(v) = self.server.reports.try_recv() {
            self.seen.push(v);
        }
        self.seen.clone()
    }

    /// The browser's log tail, for messages.
    pub fn log_tail(&self, max: usize) -> String {
        self.browser.log_tail(max)
    }
}
