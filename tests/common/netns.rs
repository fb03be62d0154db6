//! Network namespaces the tests make (needs root): named from the test's pid and a counter,
//! so tests in parallel never share one; commands run inside them through `ip netns exec`
//! (which execs the command, so a child's pid is the command's own and killing it kills
//! the command); TCP connections and listeners opened from a thread that entered the
//! namespace, so the test itself can talk to a server that listens only there, and serve
//! what runs there. On drop, whatever still runs
//! in the namespace is killed (only the test's own processes can be there) and the
//! namespace is deleted, also when the test panics.

use std::ffi::OsStr;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::processes::run_with_timeout;

/// Namespaces made by this test process so far (names and addresses come from it).
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Longest a namespace command (`ip`, `sysctl`) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A network namespace this test made; deleted on drop.
pub struct NetNs {
    name: String,
    /// Which namespace of this process it is (0, 1, ...).
    index: u32,
}

impl NetNs {
    /// Makes `PREFIX-PID-N`. `Err` says why not (not root, no `ip`, the kernel refused).
    pub fn create(prefix: &str) -> Result<Self, String> {
        let index = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{index}", std::process::id());
        let out = short("ip", &["netns", "add", &name])?;
        if !out.status.success() {
            return Err(format!(
                "ip netns add {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(NetNs { name, index })
    }

    /// Its name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which namespace of this test process it is, to pick addresses of its own.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Runs a short command inside; panics if it fails or runs over [`COMMAND_TIMEOUT`].
    pub fn exec(&self, args: &[&str]) -> String {
        let mut cmd = self.command(args[0]);
        cmd.args(&args[1..]).stdin(Stdio::null());
        let out = run_with_timeout(cmd, COMMAND_TIMEOUT);
        assert!(
            out.status.success(),
            "ip netns exec {} {args:?}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A command that runs `program` inside the namespace (add its arguments, then spawn).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Opens a TCP connection to `addr` from inside the namespace (see [`connect_tcp_in`]).
    pub fn connect_tcp(&self, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        connect_tcp_in(&self.name, addr, timeout)
    }
}

/// Runs `f` on a thread of its own that entered network namespace `name` (setns affects
/// only the calling thread), and returns what it gave: a socket made there stays in the
/// namespace wherever it is used afterwards.
fn in_netns<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path)?;
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        f()
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("the thread in the namespace panicked")))
}

/// Opens a TCP connection to `addr` from inside namespace `name`, so the test itself can
/// talk to a server that listens only there.
pub fn connect_tcp_in(name: &str, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    in_netns(name, move || TcpStream::connect_timeout(&addr, timeout))
}

/// Listens on `addr` inside namespace `name` (e.g. `127.0.0.1:0`, the namespace's own
/// loopback, for a port the kernel picks): for a server of the test's own that programs run
/// inside the namespace must reach.
pub fn bind_tcp_in(name: &str, addr: SocketAddr) -> io::Result<TcpListener> {
    in_netns(name, move || TcpListener::bind(addr))
}

/// A TCP port free on the loopback of namespace `name` a moment ago.
pub fn free_port_in(name: &str) -> u16 {
    bind_tcp_in(name, SocketAddr::from(([127, 0, 0, 1], 0)))
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 in network namespace {name}: {e}"))
        .port()
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pids = short("ip", &["netns", "pids", &self.name])
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let pids: Vec<&str> = pids.split_whitespace().collect();
            if pids.is_empty() || Instant::now() >= deadline {
                break;
            }
            for pid in pids {
                let _ = short("kill", &["-KILL", pid]);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        match short("ip", &["netns", "del", &self.name]) {
            Ok(o) if o.status.success() => {}
            other => eprintln!("cannot delete network namespace {}: {other:?}", self.name),
        }
    }
}

/// Runs a short command with a time limit; an error if the program is not installed.
fn short(program: &str, args: &[&str]) -> Result<Output, String> {
    let installed = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if !installed {
        return Err(format!("{program} is not installed"));
    }
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    Ok(run_with_timeout(cmd, COMMAND_TIMEOUT))
}

/// True if this process runs as root (namespaces need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
