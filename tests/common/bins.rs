//! The binaries of the `testpeer/` crate that tests run: `callrec-testpeer` (the producer) and
//! `callrec-netjitter` (random delay on an NFQUEUE queue, for the packet loss test).
//!
//! The crate is a workspace member of its own, so cargo does not build it for callrec's tests
//! and there is no `CARGO_BIN_EXE_*` for its binaries. The first test in a process that needs
//! one runs `cargo build -p callrec-testpeer` (in the profile of the running test, into the
//! same target directory), which builds both, and takes their paths from cargo's own report of
//! what it built: nothing is guessed, `CARGO_TARGET_DIR` and build directories are honoured,
//! and a changed crate is rebuilt. That is quick when it is up to date, and
//! `bash scripts/test.sh` builds it before any test runs. `CALLREC_TESTPEER=/path/to/binary`
//! and `CALLREC_NETJITTER=/path/to/binary` skip all this and name the binaries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use super::processes::{run_with_timeout, tail_bytes};

/// Longest a build of the crate may take (a first build compiles the GStreamer bindings).
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The package that holds the binaries.
const PACKAGE: &str = "callrec-testpeer";

/// The `callrec-testpeer` binary the tests run (built or found once per test process).
pub fn testpeer_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| find("callrec-testpeer", "CALLREC_TESTPEER"))
}

/// The `callrec-netjitter` binary (built or found once per test process).
pub fn netjitter_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| find("callrec-netjitter", "CALLREC_NETJITTER"))
}

/// The binary `name`: the one the environment variable `var` names, else the one cargo built.
fn find(name: &str, var: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{var}={} is not a file", path.display());
        return path;
    }
    built().get(name).cloned().unwrap_or_else(|| {
        panic!(
            "cargo built {PACKAGE} but did not say where {name} is; run `{}` and set {var} to \
             the binary",
            by_hand()
        )
    })
}

/// The package's binaries, by name, built once per test process.
fn built() -> &'static HashMap<String, PathBuf> {
    static BUILT: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BUILT.get_or_init(build)
}

/// The build command, for messages.
fn by_hand() -> String {
    format!(
        "cargo build --locked -p {PACKAGE} {}",
        profile_args().join(" ")
    )
    .trim_end()
    .to_owned()
}

/// Builds the package with cargo and returns the executables cargo reports.
fn build() -> HashMap<String, PathBuf> {
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    // Without what cargo set for this test's own package: build scripts that watch such a
    // variable (ring's watches CARGO_MANIFEST_DIR) would otherwise rebuild half the tree on
    // every switch between this build and one from the shell.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_")
            || matches!(
                &*name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
            )
        {
            cmd.env_remove(&*name);
        }
    }
    cmd.args(["build", "-p", PACKAGE])
        .args(profile_args())
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    let out = run_with_timeout(cmd, BUILD_TIMEOUT);
    assert!(
        out.status.success(),
        "cannot build {PACKAGE} ({} {}); run `{}` to see why, or point CALLREC_TESTPEER and \
         CALLREC_NETJITTER at built binaries. cargo said:\n{}",
        Path::new(&cargo).display(),
        out.status,
        by_hand(),
        tail_bytes(&out.stderr, 4000)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| {
            let name = m["target"]["name"].as_str()?.to_owned();
            Some((name, PathBuf::from(m["executable"].as_str()?)))
        })
        .collect()
}

/// The cargo profile of the running test, as `cargo build` arguments: its executable is in
/// `<target>/<profile dir>/deps/`, and `debug` is the `dev` profile.
fn profile_args() -> Vec<String> {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name);
    match dir.and_then(|d| d.to_str()) {
        Some("release") => vec!["--release".into()],
        Some(name) if name != "debug" && !name.is_empty() => {
            vec!["--profile".into(), name.into()]
        }
        _ => vec![],
    }
}
