//! The daemon's configuration: a TOML file, typed, with every key documented in the README.
//!
//! Unknown keys are errors (`deny_unknown_fields`), so a misspelt setting is never silently
//! ignored. Loading does no I/O beyond reading the file; `validate` checks values that serde
//! cannot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the daemon looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/callrec/callrec.toml";

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source} (check the path given to --config)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML did not parse or did not match the schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is out of its allowed range.
    #[error("invalid config value `{key}`: {message}")]
    Value {
        /// The dotted key (`source[1].url` for the second `[[source]]`).
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[signalling]`: one gst-webrtc source, the form configs had before `[[source]]`.
    /// [`Config::parse`] moves it into [`Config::sources`], so it is always `None` after.
    #[serde(default)]
    signalling: Option<SignallingConfig>,
    /// `[[source]]`: where calls come from, `[signalling]` first if it is there. Never empty
    /// once parsed.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// What to record and where.
    pub recording: RecordingConfig,
    /// STUN/TURN servers (none by default, so closed networks work).
    #[serde(default)]
    pub ice: IceConfig,
    /// Troubleshooting aids (all off by default).
    #[serde(default)]
    pub debug: DebugConfig,
    /// Post-processing after each call (none by default).
    #[serde(default)]
    pub post: PostConfig,
}

/// `[post]`: `post`-scope templates run over each finished call's recorded files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostConfig {
    /// Names of the `post` templates to run, in order, after each call.
    #[serde(default)]
    pub templates: Vec<String>,
    /// Most post-processing pipelines running at once (needs a restart to change).
    #[serde(default = "default_post_concurrency")]
    pub concurrency: usize,
    /// Seconds one template may take over one call before it is stopped and marked failed.
    #[serde(default = "default_post_timeout")]
    pub timeout_secs: f64,
}

impl Default for PostConfig {
    fn default() -> Self {
        PostConfig {
            templates: vec![],
            concurrency: default_post_concurrency(),
            timeout_secs: default_post_timeout(),
        }
    }
}

fn default_post_concurrency() -> usize {
    1
}
fn default_post_timeout() -> f64 {
    3600.0
}

/// The signalling protocols callrec speaks (`[signalling] protocol`, kebab-case in the file).
///
/// A new protocol is a new variant here, in [`Protocol::ALL`] and in [`Protocol::name`], plus
/// its adapter where `daemon::run` matches on the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// The JSON protocol of `gst-webrtc-signalling-server` (webrtcsink, webrtcsrc, gstwebrtc-api).
    GstWebrtc,
    /// WHIP ingest (RFC 9725): callrec is the HTTP endpoint clients publish to.
    Whip,
    /// Janus 1.x's VideoRoom over its WebSocket transport: each room is a call.
    Janus,
}

impl Protocol {
    /// Every supported protocol, as listed in errors.
    pub const ALL: &[Protocol] = &[Protocol::GstWebrtc, Protocol::Whip, Protocol::Janus];

    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::GstWebrtc => "gst-webrtc",
            Protocol::Whip => "whip",
            Protocol::Janus => "janus",
        }
    }

    /// Reads a `protocol` key with an error that names the value and what is supported
    /// (serde's own message lists variant names, not the config's spelling; the TOML error
    /// around it shows the line).
    fn deserialize_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Protocol, D::Error> {
        use serde::de::{Error, IntoDeserializer};
        let value = String::deserialize(d)?;
        let parsed: Result<Protocol, serde::de::value::Error> =
            Protocol::deserialize(value.as_str().into_deserializer());
        parsed.map_err(|_| {
            let supported: Vec<&str> = Protocol::ALL.iter().map(|p| p.name()).collect();
            D::Error::custom(format!(
                "protocol = {value:?} is not supported; supported: {}",
                supported.join(", ")
            ))
        })
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Who makes a gst-webrtc session's SDP offer (`offerer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Offerer {
    /// The producer offers and callrec answers (webrtcsink, browsers with gstwebrtc-api).
    #[default]
    Producer,
    /// callrec offers to receive and the producer answers (`startSession` with an offer),
    /// for producers that only answer.
    Callrec,
}

/// `rooms` of a janus source: `"all"`, or a list of room ids (numbers, or strings where
/// Janus runs with `string_ids`).
#[derive(Debug, Clone, PartialEq)]
pub enum RoomsConfig {
    /// Every room the VideoRoom lists, found again as rooms are created.
    All,
    /// These rooms.
    List(Vec<crate::signalling::janus::JanusId>),
}

impl<'de> Deserialize<'de> for RoomsConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Word(String),
            List(Vec<crate::signalling::janus::JanusId>),
        }
        match Written::deserialize(d) {
            Ok(Written::Word(w)) if w == "all" => Ok(RoomsConfig::All),
            Ok(Written::List(ids)) => Ok(RoomsConfig::List(ids)),
            _ => Err(serde::de::Error::custom(
                "rooms must be \"all\" or a list of room ids, e.g. [1234, 5678]",
            )),
        }
    }
}

/// The name `[signalling]` gets as a source (in logs and manifests). Its calls keep the
/// names they had before sources existed: no `<source>-` prefix.
pub const SIGNALLING_SOURCE: &str = "signalling";

/// `[signalling]`: the connection to the existing signalling server (a gst-webrtc source).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignallingConfig {
    url: String,
    #[serde(
        default = "default_protocol",
        deserialize_with = "Protocol::deserialize_field"
    )]
    protocol: Protocol,
    #[serde(default = "default_own_meta")]
    meta: serde_json::Map<String, serde_json::Value>,
    ca_file: Option<PathBuf>,
    #[serde(default = "default_connect_timeout")]
    connect_timeout_secs: f64,
    #[serde(default = "default_reconnect_min")]
    reconnect_min_secs: f64,
    #[serde(default = "default_reconnect_max")]
    reconnect_max_secs: f64,
    #[serde(default = "default_negotiation_timeout")]
    negotiation_timeout_secs: f64,
    #[serde(default)]
    offerer: Offerer,
}

impl SignallingConfig {
    fn into_source(self) -> SourceConfig {
        SourceConfig {
            name: SIGNALLING_SOURCE.into(),
            protocol: self.protocol,
            url: Some(self.url),
            meta: self.meta,
            ca_file: self.ca_file,
            connect_timeout_secs: self.connect_timeout_secs,
            reconnect_min_secs: self.reconnect_min_secs,
            reconnect_max_secs: self.reconnect_max_secs,
            negotiation_timeout_secs: self.negotiation_timeout_secs,
            listen: None,
            tokens_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            rooms: None,
            pins_file: None,
            admin_key_file: None,
            api_secret_file: None,
            display: None,
            offerer: self.offerer,
            from_signalling_section: true,
        }
    }
}

/// `[[source]]`: one place calls come from, a signalling server of one protocol.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Unique among the sources: in logs, in the manifest, and first in each call's name.
    pub name: String,
    /// The protocol it speaks.
    #[serde(deserialize_with = "Protocol::deserialize_field")]
    pub protocol: Protocol,
    /// `ws://` or `wss://` URL of the server (gst-webrtc).
    pub url: Option<String>,
    /// The `meta` callrec announces for itself (as a listener), so the app can tell it apart
    /// (gst-webrtc).
    #[serde(default = "default_own_meta")]
    pub meta: serde_json::Map<String, serde_json::Value>,
    /// The address the WHIP endpoint listens on (whip).
    pub listen: Option<std::net::SocketAddr>,
    /// The file of bearer tokens a WHIP client must present, one a line: `TOKEN` for every
    /// call, or `CALL TOKEN` for one call (whip).
    pub tokens_file: Option<PathBuf>,
    /// PEM certificate chain for HTTPS; with `tls_key_file` (whip).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for HTTPS; with `tls_cert_file` (whip).
    pub tls_key_file: Option<PathBuf>,
    /// PEM file of the CAs to trust for `wss://` (default: the public web roots).
    pub ca_file: Option<PathBuf>,
    /// The rooms to record: a list of room ids, or `"all"` (janus).
    pub rooms: Option<RoomsConfig>,
    /// The PINs of PIN-protected rooms, one `ROOM PIN` a line (janus).
    pub pins_file: Option<PathBuf>,
    /// The VideoRoom plugin's `admin_key`, to list private rooms too (janus).
    pub admin_key_file: Option<PathBuf>,
    /// Janus's `api_secret`, when Janus requires one (janus).
    pub api_secret_file: Option<PathBuf>,
    /// The display name callrec joins rooms with; others in the room can see it (janus).
    pub display: Option<String>,
    /// Who makes the SDP offer: the producer (the default) or callrec, for producers that
    /// only answer (gst-webrtc).
    #[serde(default)]
    pub offerer: Offerer,
    /// Seconds allowed for the TCP/TLS/WebSocket handshake.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    /// First reconnect delay in seconds; doubles up to `reconnect_max_secs`, with jitter.
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min_secs: f64,
    /// Longest reconnect delay in seconds.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_secs: f64,
    /// Seconds a producer has to send its offer after a session starts, and to connect after.
    #[serde(default = "default_negotiation_timeout")]
    pub negotiation_timeout_secs: f64,
    /// Whether it was written as `[signalling]`: its calls are named as before sources
    /// existed, without the source's name in front.
    #[serde(skip)]
    pub from_signalling_section: bool,
}

impl SourceConfig {
    /// The name of a call of this source that the network called `call`: `<source>-<call>`,
    /// so calls of two sources never share a name (`[signalling]`'s calls keep theirs).
    pub fn call_name(&self, call: &str) -> String {
        if self.from_signalling_section {
            call.to_owned()
        } else {
            format!("{}-{call}", self.name)
        }
    }

    /// Where it is, for logs and `callrec check`: the server's URL, or the WHIP listener.
    pub fn address(&self) -> String {
        match (&self.url, &self.listen) {
            (Some(url), _) => url.clone(),
            (None, Some(listen)) => {
                let scheme = if self.tls_cert_file.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{listen}/whip/")
            }
            (None, None) => String::new(),
        }
    }

    /// The keys its protocol needs are there, and none of another protocol's.
    fn validate_protocol_keys(&self, index: usize) -> Result<(), ConfigError> {
        let key = |field: &str| self.key(index, field);
        if self.from_signalling_section && self.protocol != Protocol::GstWebrtc {
            return Err(ConfigError::Value {
                key: key("protocol"),
                message: format!(
                    "[signalling] is a gst-webrtc source; for {} write a [[source]] section with its keys (see the README)",
                    self.protocol
                ),
            });
        }
        // Each protocol's own keys, refused on sources of another protocol.
        let own_keys = [
            (Protocol::Whip, "listen", self.listen.is_some()),
            (Protocol::Whip, "tokens_file", self.tokens_file.is_some()),
            (
                Protocol::Whip,
                "tls_cert_file",
                self.tls_cert_file.is_some(),
            ),
            (Protocol::Whip, "tls_key_file", self.tls_key_file.is_some()),
            (Protocol::Janus, "rooms", self.rooms.is_some()),
            (Protocol::Janus, "pins_file", self.pins_file.is_some()),
            (
                Protocol::Janus,
                "admin_key_file",
                self.admin_key_file.is_some(),
            ),
            (
                Protocol::Janus,
                "api_secret_file",
                self.api_secret_file.is_some(),
            ),
            (Protocol::Janus, "display", self.display.is_some()),
            (
                Protocol::GstWebrtc,
                "offerer",
                self.offerer != Offerer::Producer,
            ),
        ];
        if let Some((owner, field, _)) = own_keys
            .iter()
            .find(|(owner, _, set)| *set && *owner != self.protocol)
        {
            return Err(ConfigError::Value {
                key: key(field),
                message: format!(
                    "applies to {owner} sources only; remove it, or set protocol = \"{owner}\""
                ),
            });
        }
        match self.protocol {
            Protocol::GstWebrtc => self.validate_server_url(index, "its signalling server")?,
            Protocol::Janus => {
                self.validate_server_url(
                    index,
                    "Janus's WebSocket transport (not the admin one), e.g. ws://127.0.0.1:8188",
                )?;
                match &self.rooms {
                    None => {
                        return Err(ConfigError::Value {
                            key: key("rooms"),
                            message: "a janus source needs the rooms to record: a list of room ids such as [1234], or \"all\"".into(),
                        })
                    }
                    Some(RoomsConfig::List(ids)) if ids.is_empty() => {
                        return Err(ConfigError::Value {
                            key: key("rooms"),
                            message: "the list of rooms is empty; name at least one room id, or give \"all\"".into(),
                        })
                    }
                    Some(_) => {}
                }
                if let Some(display) = &self.display {
                    if display.is_empty()
                        || display.len() > 64
                        || display.chars().any(char::is_control)
                    {
                        return Err(ConfigError::Value {
                            key: key("display"),
                            message: "give 1 to 64 printable characters".into(),
                        });
                    }
                }
            }
            Protocol::Whip => {
                if self.url.is_some() {
                    return Err(ConfigError::Value {
                        key: key("url"),
                        message: "a whip source is an endpoint clients reach, not a server callrec connects to; give `listen` (address:port) instead".into(),
                    });
                }
                if self.listen.is_none() {
                    return Err(ConfigError::Value {
                        key: key("listen"),
                        message: "a whip source needs the address:port to listen on, e.g. \"127.0.0.1:8090\"".into(),
                    });
                }
                if self.tokens_file.is_none() {
                    return Err(ConfigError::Value {
                        key: key("tokens_file"),
                        message: "a whip source needs a file of bearer tokens (one a line: TOKEN, or CALL TOKEN); every listener authenticates".into(),
                    });
                }
                if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
                    return Err(ConfigError::Value {
                        key: key("tls_key_file"),
                        message: "give both tls_cert_file and tls_key_file for HTTPS, or neither"
                            .into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// `url` is there and is a `ws://` or `wss://` URL of `what`.
    fn validate_server_url(&self, index: usize, what: &str) -> Result<(), ConfigError> {
        let key = || self.key(index, "url");
        let Some(url_text) = &self.url else {
            return Err(ConfigError::Value {
                key: key(),
                message: format!(
                    "a {} source needs the ws:// or wss:// URL of {what}",
                    self.protocol
                ),
            });
        };
        let url = url::Url::parse(url_text).map_err(|e| ConfigError::Value {
            key: key(),
            message: format!("`{url_text}` is not a URL: {e}"),
        })?;
        if !matches!(url.scheme(), "ws" | "wss") {
            return Err(ConfigError::Value {
                key: key(),
                message: format!("scheme must be ws:// or wss://, not {}://", url.scheme()),
            });
        }
        Ok(())
    }

    /// The config key of one of its fields, for error messages: `signalling.url` or
    /// `source[1].url`.
    fn key(&self, index: usize, field: &str) -> String {
        if self.from_signalling_section {
            format!("signalling.{field}")
        } else {
            format!("source[{index}].{field}")
        }
    }
}

/// `[recording]`: what is recorded, how and where.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// The recordings directory; each call gets `<dir>/<call>/`.
    pub dir: PathBuf,
    /// Names of the templates that run for every call.
    #[serde(default = "default_templates")]
    pub templates: Vec<String>,
    /// A directory of `*.pipeline` templates layered over the built-in ones (a file replaces
    /// the built-in template of its name). Unset: the packaged directory if installed, else
    /// the built-in templates alone; see [`crate::templates::TemplateDir::from_config`].
    pub pipelines_dir: Option<PathBuf>,
    /// The producer `meta` key whose value names the call a producer belongs to.
    #[serde(default = "default_group_key")]
    pub group_key: String,
    /// Record only producers whose `meta` has all of these key/value pairs (empty: record all).
    #[serde(default)]
    pub filter: BTreeMap<String, String>,
    /// Seconds a call waits after its last session ends before it is finalised.
    #[serde(default = "default_linger")]
    pub linger_secs: f64,
    /// Seconds a participant file waits for the tracks announced in the SDP before it starts
    /// with those that have arrived.
    #[serde(default = "default_track_wait")]
    pub track_wait_secs: f64,
    /// Seconds allowed on SIGTERM/SIGINT to finalise every call before exiting.
    #[serde(default = "default_grace")]
    pub stop_grace_secs: f64,
    /// Milliseconds between keyframe requests (PLI) while a video track waits for one.
    #[serde(default = "default_keyframe_interval")]
    pub keyframe_request_interval_ms: u64,
    /// Seconds without media after which a connected session is ended (the producer vanished
    /// without ending its session, e.g. while the signalling server was down).
    #[serde(default = "default_media_timeout")]
    pub media_timeout_secs: f64,
    /// Most calls recorded at once; producers beyond it are refused with a log line.
    #[serde(default = "default_max_calls")]
    pub max_calls: usize,
    /// Free space (MB) the recordings directory's filesystem must have for a new call to
    /// start; below it new calls are refused with a log line (0: no floor).
    #[serde(default = "default_min_free_mb")]
    pub min_free_mb: u64,
}

/// `[ice]`: optional STUN and TURN servers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceConfig {
    /// `stun://host:port`.
    pub stun_server: Option<String>,
    /// `turn://user:password@host:port` (or `turns://`).
    #[serde(default)]
    pub turn_servers: Vec<String>,
    /// Local IP addresses ICE may use (empty: every interface).
    #[serde(default)]
    pub local_addresses: Vec<String>,
}

/// `[debug]`: troubleshooting aids, off by default because they cost disk and CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugConfig {
    /// Write GStreamer pipeline graphs (`.dot`) into `<call_dir>/debug/`.
    #[serde(default)]
    pub graphs: bool,
}

fn default_protocol() -> Protocol {
    Protocol::GstWebrtc
}
fn default_own_meta() -> serde_json::Map<String, serde_json::Value> {
    let mut meta = serde_json::Map::new();
    meta.insert("name".into(), "callrec".into());
    meta
}
fn default_connect_timeout() -> f64 {
    10.0
}
fn default_reconnect_min() -> f64 {
    0.5
}
fn default_reconnect_max() -> f64 {
    30.0
}
fn default_negotiation_timeout() -> f64 {
    20.0
}
fn default_templates() -> Vec<String> {
    vec!["participant-mkv".into()]
}
fn default_group_key() -> String {
    "call".into()
}
fn default_linger() -> f64 {
    5.0
}
fn default_track_wait() -> f64 {
    5.0
}
fn default_grace() -> f64 {
    10.0
}
fn default_keyframe_interval() -> u64 {
    200
}
fn default_media_timeout() -> f64 {
    15.0
}
fn default_max_calls() -> usize {
    64
}
fn default_min_free_mb() -> u64 {
    100
}

/// Converts a validated seconds value into a `Duration`.
pub fn secs(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.0))
}

impl Config {
    /// Reads and validates the file at `path`. Relative paths inside it are resolved against
    /// the file's directory, so a config and its templates can travel together.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.recording.dir = base.join(&config.recording.dir);
        if let Some(dir) = &mut config.recording.pipelines_dir {
            *dir = base.join(&*dir);
        }
        for source in &mut config.sources {
            for file in [
                &mut source.ca_file,
                &mut source.tokens_file,
                &mut source.tls_cert_file,
                &mut source.tls_key_file,
                &mut source.pins_file,
                &mut source.admin_key_file,
                &mut source.api_secret_file,
            ]
            .into_iter()
            .flatten()
            {
                *file = base.join(&*file);
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text; the error is the parser's message, with position. A `[signalling]`
    /// section becomes the first source.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        if let Some(signalling) = config.signalling.take() {
            config.sources.insert(0, signalling.into_source());
        }
        Ok(config)
    }

    /// Keeps `running`'s values for the settings that only take effect at start-up, and names
    /// those that differed. Reloading uses it so a changed restart-only setting is reported
    /// instead of half applied: the signalling clients and the recordings directory are set
    /// up once, when the daemon starts. Of a source, only `negotiation_timeout_secs` and `offerer` are
    /// reloaded (sources are matched by name; one added or removed needs a restart).
    pub fn keep_restart_only(&mut self, running: &Config) -> Vec<String> {
        let mut changed = vec![];
        let names = |c: &Config| c.sources.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        if names(self) != names(running) {
            changed.push("the list of sources ([[source]] and [signalling])".to_owned());
            let timeouts: BTreeMap<String, f64> = self
                .sources
                .iter()
                .map(|s| (s.name.clone(), s.negotiation_timeout_secs))
                .collect();
            self.sources = running.sources.clone();
            for source in &mut self.sources {
                if let Some(&t) = timeouts.get(&source.name) {
                    source.negotiation_timeout_secs = t;
                }
            }
        } else {
            for (i, (new, old)) in self.sources.iter_mut().zip(&running.sources).enumerate() {
                let key = |field: &str| old.key(i, field);
                keep(&mut changed, key("url"), &mut new.url, &old.url);
                keep(&mut changed, key("listen"), &mut new.listen, &old.listen);
                keep(
                    &mut changed,
                    key("tokens_file"),
                    &mut new.tokens_file,
                    &old.tokens_file,
                );
                keep(
                    &mut changed,
                    key("tls_cert_file"),
                    &mut new.tls_cert_file,
                    &old.tls_cert_file,
                );
                keep(
                    &mut changed,
                    key("tls_key_file"),
                    &mut new.tls_key_file,
                    &old.tls_key_file,
                );
                keep(
                    &mut changed,
                    key("protocol"),
                    &mut new.protocol,
                    &old.protocol,
                );
                keep(&mut changed, key("meta"), &mut new.meta, &old.meta);
                keep(&mut changed, key("ca_file"), &mut new.ca_file, &old.ca_file);
                keep(&mut changed, key("rooms"), &mut new.rooms, &old.rooms);
                keep(
                    &mut changed,
                    key("pins_file"),
                    &mut new.pins_file,
                    &old.pins_file,
                );
                keep(
                    &mut changed,
                    key("admin_key_file"),
                    &mut new.admin_key_file,
                    &old.admin_key_file,
                );
                keep(
                    &mut changed,
                    key("api_secret_file"),
                    &mut new.api_secret_file,
                    &old.api_secret_file,
                );
                keep(&mut changed, key("display"), &mut new.display, &old.display);
                keep(
                    &mut changed,
                    key("connect_timeout_secs"),
                    &mut new.connect_timeout_secs,
                    &old.connect_timeout_secs,
                );
                keep(
                    &mut changed,
                    key("reconnect_min_secs"),
                    &mut new.reconnect_min_secs,
                    &old.reconnect_min_secs,
                );
                keep(
                    &mut changed,
                    key("reconnect_max_secs"),
                    &mut new.reconnect_max_secs,
                    &old.reconnect_max_secs,
                );
                keep(
                    &mut changed,
                    key("from_signalling_section"),
                    &mut new.from_signalling_section,
                    &old.from_signalling_section,
                );
            }
        }
        keep(
            &mut changed,
            "recording.dir".into(),
            &mut self.recording.dir,
            &running.recording.dir,
        );
        keep(
            &mut changed,
            "post.concurrency".into(),
            &mut self.post.concurrency,
            &running.post.concurrency,
        );
        changed
    }

    /// The source called `name`.
    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// Checks the sources: at least one, unique safe names, and each one's values.
    fn validate_sources(&self) -> Result<(), ConfigError> {
        if self.sources.is_empty() {
            return Err(ConfigError::Value {
                key: "source".into(),
                message: "no source of calls is configured; add a [[source]] (name, protocol, url) or a [signalling] section with its url".into(),
            });
        }
        if self.sources.len() > MAX_SOURCES {
            return Err(ConfigError::Value {
                key: "source".into(),
                message: format!(
                    "{} sources configured; at most {MAX_SOURCES}",
                    self.sources.len()
                ),
            });
        }
        for (i, source) in self.sources.iter().enumerate() {
            let key = |field: &str| source.key(i, field);
            if !crate::names::is_safe_component(&source.name) || source.name.len() > 64 {
                return Err(ConfigError::Value {
                    key: key("name"),
                    message: format!(
                        "`{}` must be 1 to 64 letters, digits or . _ + - (not starting with .): it names the source's calls on disk",
                        source.name
                    ),
                });
            }
            if self.sources[..i].iter().any(|s| s.name == source.name) {
                return Err(ConfigError::Value {
                    key: key("name"),
                    message: format!(
                        "`{}` names two sources (a [signalling] section is the source `{SIGNALLING_SOURCE}`); give each source its own name",
                        source.name
                    ),
                });
            }
            source.validate_protocol_keys(i)?;
            for (field, value) in [
                ("connect_timeout_secs", source.connect_timeout_secs),
                ("reconnect_min_secs", source.reconnect_min_secs),
                ("reconnect_max_secs", source.reconnect_max_secs),
                ("negotiation_timeout_secs", source.negotiation_timeout_secs),
            ] {
                positive_secs(key(field), value)?;
            }
        }
        Ok(())
    }

    /// Checks the values serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, names) in [
            ("recording.templates", &self.recording.templates),
            ("post.templates", &self.post.templates),
        ] {
            if let Some((_, name)) = names
                .iter()
                .enumerate()
                .find(|(i, n)| names[..*i].contains(n))
            {
                return Err(ConfigError::Value {
                    key: key.into(),
                    message: format!("`{name}` is listed twice; list each template once"),
                });
            }
        }
        if !(1..=64).contains(&self.post.concurrency) {
            return Err(ConfigError::Value {
                key: "post.concurrency".into(),
                message: format!("{} must be between 1 and 64", self.post.concurrency),
            });
        }
        self.validate_sources()?;
        let positive = [
            ("recording.stop_grace_secs", self.recording.stop_grace_secs),
            (
                "recording.media_timeout_secs",
                self.recording.media_timeout_secs,
            ),
            ("post.timeout_secs", self.post.timeout_secs),
        ];
        for (key, value) in positive {
            positive_secs(key.into(), value)?;
        }
        for (key, value) in [
            ("recording.linger_secs", self.recording.linger_secs),
            ("recording.track_wait_secs", self.recording.track_wait_secs),
        ] {
            if !(value.is_finite() && (0.0..86_400.0).contains(&value)) {
                return Err(ConfigError::Value {
                    key: key.into(),
                    message: format!("{value} must be a number of seconds, 0 or more"),
                });
            }
        }
        let dir = self.recording.dir.to_string_lossy();
        if !crate::names::is_pipeline_safe_path(&dir) {
            return Err(ConfigError::Value {
                key: "recording.dir".into(),
                message: format!(
                    "`{dir}` must use only letters, digits and . _ + - / (it is put into pipeline text)"
                ),
            });
        }
        for address in &self.ice.local_addresses {
            if address.parse::<std::net::IpAddr>().is_err() {
                return Err(ConfigError::Value {
                    key: "ice.local_addresses".into(),
                    message: format!("`{address}` is not an IP address"),
                });
            }
        }
        if self.recording.templates.is_empty() {
            return Err(ConfigError::Value {
                key: "recording.templates".into(),
                message: "list at least one template, e.g. [\"participant-mkv\"]".into(),
            });
        }
        if self.recording.group_key.is_empty() {
            return Err(ConfigError::Value {
                key: "recording.group_key".into(),
                message: "must not be empty".into(),
            });
        }
        if self.recording.max_calls == 0 {
            return Err(ConfigError::Value {
                key: "recording.max_calls".into(),
                message: "must be at least 1".into(),
            });
        }
        if self.recording.keyframe_request_interval_ms < 20 {
            return Err(ConfigError::Value {
                key: "recording.keyframe_request_interval_ms".into(),
                message: "must be at least 20 ms, or senders get flooded with PLIs".into(),
            });
        }
        Ok(())
    }
}

/// Most sources one daemon takes (each is a connection and a task).
pub const MAX_SOURCES: usize = 32;

/// `value` as a number of seconds above 0 and below a day, or the error naming `key`.
fn positive_secs(key: String, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 && value < 86_400.0 {
        Ok(())
    } else {
        Err(ConfigError::Value {
            key,
            message: format!("{value} must be a number of seconds above 0"),
        })
    }
}

/// Puts `old` back into `new` if they differ, noting `key`.
fn keep<T: PartialEq + Clone>(changed: &mut Vec<String>, key: String, new: &mut T, old: &T) {
    if new != old {
        changed.push(key);
        *new = old.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [signalling]
        url = "ws://127.0.0.1:8443"
        protocol = "gst-webrtc"
        [recording]
        dir = "/var/lib/callrec/recordings"
    "#;

    #[test]
    fn minimal_config_gets_defaults() {
        let config = Config::parse(MINIMAL).unwrap();
        config.validate().unwrap();
        assert_eq!(config.recording.templates, vec!["participant-mkv"]);
        assert_eq!(config.recording.group_key, "call");
        assert_eq!(config.recording.linger_secs, 5.0);
        assert_eq!(config.recording.stop_grace_secs, 10.0);
        assert!(config.ice.stun_server.is_none());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = MINIMAL.replace("protocol", "protocl");
        let err = Config::parse(&text).unwrap_err();
        assert!(err.contains("protocl"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let text = MINIMAL.replace("ws://127.0.0.1:8443", "http://x");
        let err = Config::parse(&text).unwrap().validate().unwrap_err();
        assert!(err.to_string().contains("signalling.url"), "{err}");
        let text = format!("{MINIMAL}\nlinger_secs = -1");
        let err = Config::parse(&text).unwrap().validate().unwrap_err();
        assert!(err.to_string().contains("linger_secs"), "{err}");
    }

    #[test]
    fn debug_graphs_default_off_and_unknown_debug_keys_are_errors() {
        assert!(!Config::parse(MINIMAL).unwrap().debug.graphs);
        let on = Config::parse(&format!("{MINIMAL}\n[debug]\ngraphs = true")).unwrap();
        assert!(on.debug.graphs);
        let err = Config::parse(&format!("{MINIMAL}\n[debug]\ngraph = true")).unwrap_err();
        assert!(err.contains("graph"), "{err}");
    }

    #[test]
    fn restart_only_settings_keep_their_running_values() {
        let running = Config::parse(MINIMAL).unwrap();
        let text = MINIMAL
            .replace("8443", "9999")
            .replace("/var/lib/callrec/recordings", "/elsewhere")
            .replace(
                "[recording]",
                "negotiation_timeout_secs = 3\n[recording]\nlinger_secs = 9",
            );
        let mut new = Config::parse(&text).unwrap();
        let changed = new.keep_restart_only(&running);
        assert_eq!(changed, vec!["signalling.url", "recording.dir"]);
        assert_eq!(new.sources[0].url, running.sources[0].url);
        assert_eq!(new.recording.dir, running.recording.dir);
        // Reloadable settings take their new values.
        assert_eq!(new.recording.linger_secs, 9.0);
        assert_eq!(new.sources[0].negotiation_timeout_secs, 3.0);
        let mut same = Config::parse(MINIMAL).unwrap();
        assert!(same.keep_restart_only(&running).is_empty());
    }

    #[test]
    fn unknown_protocol_is_rejected_with_key_value_and_supported_values() {
        let text = MINIMAL.replace("\"gst-webrtc\"", "\"mqtt\"");
        let err = Config::parse(&text).unwrap_err();
        assert!(err.contains("protocol"), "{err}");
        assert!(err.contains("\"mqtt\""), "{err}");
        assert!(err.contains("supported: gst-webrtc, whip, janus"), "{err}");
        let text = MINIMAL.replace("\"gst-webrtc\"", "7");
        assert!(Config::parse(&text).is_err());
    }

    #[test]
    fn protocol_names_are_the_config_spelling() {
        let config = Config::parse(MINIMAL).unwrap();
        assert_eq!(config.sources[0].protocol, Protocol::GstWebrtc);
        let without = MINIMAL.replace("protocol = \"gst-webrtc\"", "");
        assert_eq!(
            Config::parse(&without).unwrap().sources[0].protocol,
            Protocol::GstWebrtc
        );
        // `name` and serde's kebab-case spelling agree for every protocol.
        for protocol in Protocol::ALL {
            let text = MINIMAL.replace("gst-webrtc", protocol.name());
            assert_eq!(Config::parse(&text).unwrap().sources[0].protocol, *protocol);
        }
    }

    #[test]
    fn pipelines_dir_is_optional_and_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callrec.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        assert_eq!(Config::load(&path).unwrap().recording.pipelines_dir, None);
        std::fs::write(&path, format!("{MINIMAL}\npipelines_dir = \"pipes\"")).unwrap();
        assert_eq!(
            Config::load(&path).unwrap().recording.pipelines_dir,
            Some(dir.path().join("pipes"))
        );
    }

    const TWO_SOURCES: &str = r#"
        [[source]]
        name = "east"
        protocol = "gst-webrtc"
        url = "ws://127.0.0.1:8443"
        [[source]]
        name = "west"
        protocol = "gst-webrtc"
        url = "wss://signalling.example:443"
        negotiation_timeout_secs = 7
        [recording]
        dir = "/r"
    "#;

    #[test]
    fn sources_are_listed_with_signalling_first_and_name_their_calls() {
        let config = Config::parse(TWO_SOURCES).unwrap();
        config.validate().unwrap();
        let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["east", "west"]);
        assert_eq!(config.sources[1].negotiation_timeout_secs, 7.0);
        assert_eq!(config.sources[0].call_name("standup"), "east-standup");
        // `[signalling]` is a source too, first, and its calls keep their plain names.
        let both = format!("[signalling]\nurl = \"ws://127.0.0.1:1\"\n{TWO_SOURCES}");
        let config = Config::parse(&both).unwrap();
        config.validate().unwrap();
        assert_eq!(config.sources.len(), 3);
        assert_eq!(config.sources[0].name, SIGNALLING_SOURCE);
        assert_eq!(config.sources[0].call_name("standup"), "standup");
        assert_eq!(
            config.source("west").unwrap().url.as_deref(),
            Some("wss://signalling.example:443")
        );
    }

    #[test]
    fn bad_sources_are_named_by_their_index() {
        let check = |text: &str| {
            Config::parse(text)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string()
        };
        let err = check("[recording]\ndir = \"/r\"\n");
        assert!(err.contains("no source of calls"), "{err}");
        let err = check(&TWO_SOURCES.replace("\"west\"", "\"east\""));
        assert!(
            err.contains("source[1].name") && err.contains("two sources"),
            "{err}"
        );
        let err = check(&TWO_SOURCES.replace("\"west\"", "\"../x\""));
        assert!(err.contains("source[1].name"), "{err}");
        let err = check(&TWO_SOURCES.replace("wss://signalling", "http://signalling"));
        assert!(
            err.contains("source[1].url") && err.contains("ws://"),
            "{err}"
        );
        let err = check(&TWO_SOURCES.replace("= 7", "= -7"));
        assert!(err.contains("source[1].negotiation_timeout_secs"), "{err}");
        let signalling = format!(
            "[signalling]\nurl = \"ws://127.0.0.1:1\"\n{}",
            TWO_SOURCES.replace("\"east\"", "\"signalling\"")
        );
        let err = check(&signalling);
        assert!(err.contains("source[1].name"), "{err}");
        // A source without its required keys is a parse error that names the key.
        let err =
            Config::parse("[[source]]\nname = \"a\"\nurl = \"ws://x\"\n[recording]\ndir = \"/r\"")
                .unwrap_err();
        assert!(err.contains("protocol"), "{err}");
    }

    #[test]
    fn a_reload_keeps_the_sources_but_their_negotiation_timeouts() {
        let running = Config::parse(TWO_SOURCES).unwrap();
        let mut new =
            Config::parse(&TWO_SOURCES.replace("= 7", "= 9").replace("8443", "1")).unwrap();
        let changed = new.keep_restart_only(&running);
        assert_eq!(changed, vec!["source[0].url"]);
        assert_eq!(new.sources[0].url.as_deref(), Some("ws://127.0.0.1:8443"));
        assert_eq!(new.sources[1].negotiation_timeout_secs, 9.0);
        let mut renamed = Config::parse(&TWO_SOURCES.replace("\"west\"", "\"north\"")).unwrap();
        let changed = renamed.keep_restart_only(&running);
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert_eq!(renamed.sources, running.sources);
    }

    #[test]
    fn janus_sources_need_a_url_and_rooms() {
        let janus = "[[source]]\nname = \"j\"\nprotocol = \"janus\"\nurl = \"ws://127.0.0.1:8188\"\nrooms = [1234, \"lobby\"]\npins_file = \"pins\"\nadmin_key_file = \"admin\"\n[recording]\ndir = \"/r\"\n";
        let config = Config::parse(janus).unwrap();
        config.validate().unwrap();
        use crate::signalling::janus::JanusId;
        assert_eq!(
            config.sources[0].rooms,
            Some(RoomsConfig::List(vec![
                JanusId::Num(1234),
                JanusId::Str("lobby".into())
            ]))
        );
        let all = Config::parse(&janus.replace("[1234, \"lobby\"]", "\"all\"")).unwrap();
        assert_eq!(all.sources[0].rooms, Some(RoomsConfig::All));
        let check = |text: &str| match Config::parse(text) {
            Ok(c) => c.validate().unwrap_err().to_string(),
            Err(e) => e,
        };
        let err = check(&janus.replace("[1234, \"lobby\"]", "\"some\""));
        assert!(err.contains("rooms must be \"all\" or a list"), "{err}");
        let err = check(&janus.replace("rooms = [1234, \"lobby\"]\n", ""));
        assert!(err.contains("source[0].rooms"), "{err}");
        let err = check(&janus.replace("[1234, \"lobby\"]", "[]"));
        assert!(err.contains("empty"), "{err}");
        let err = check(&janus.replace("url = \"ws://127.0.0.1:8188\"\n", ""));
        assert!(
            err.contains("source[0].url") && err.contains("Janus"),
            "{err}"
        );
        let err = check(&janus.replace("ws://", "http://"));
        assert!(err.contains("ws:// or wss://"), "{err}");
        // Keys of one protocol on another's source are refused by name.
        let err = check(&janus.replace("\"janus\"", "\"gst-webrtc\""));
        assert!(
            err.contains("source[0].rooms") && err.contains("janus sources only"),
            "{err}"
        );
        let err = check(&janus.replace("pins_file", "tokens_file"));
        assert!(err.contains("whip sources only"), "{err}");
        // [signalling] stays a gst-webrtc source.
        let err = check(&MINIMAL.replace("\"gst-webrtc\"", "\"janus\""));
        assert!(err.contains("signalling.protocol"), "{err}");
    }

    #[test]
    fn whip_sources_need_their_keys_and_no_url() {
        let whip = "[[source]]\nname = \"in\"\nprotocol = \"whip\"\nlisten = \"127.0.0.1:8090\"\ntokens_file = \"tokens\"\n[recording]\ndir = \"/r\"\n";
        let config = Config::parse(whip).unwrap();
        config.validate().unwrap();
        assert_eq!(config.sources[0].address(), "http://127.0.0.1:8090/whip/");
        let check = |text: &str| {
            Config::parse(text)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string()
        };
        let err = check(&whip.replace("tokens_file = \"tokens\"\n", ""));
        assert!(err.contains("source[0].tokens_file"), "{err}");
        let err = check(&whip.replace("listen = \"127.0.0.1:8090\"\n", ""));
        assert!(err.contains("source[0].listen"), "{err}");
        let err = check(&whip.replace("name = \"in\"\n", "name = \"in\"\nurl = \"ws://x\"\n"));
        assert!(
            err.contains("source[0].url") && err.contains("listen"),
            "{err}"
        );
        let err = check(&whip.replace(
            "tokens_file = \"tokens\"\n",
            "tokens_file = \"t\"\ntls_cert_file = \"c\"\n",
        ));
        assert!(err.contains("tls_key_file"), "{err}");
        let err = check(&whip.replace("\"whip\"", "\"gst-webrtc\""));
        assert!(
            err.contains("source[0].listen") && err.contains("whip sources only"),
            "{err}"
        );
        assert!(Config::parse(&whip.replace("127.0.0.1:8090", "nowhere")).is_err());
    }
}
