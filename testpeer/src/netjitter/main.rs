//! `callrec-netjitter`: netem-style random delay for tests, on kernels without netem.
//!
//! The packet loss test sends its media's UDP packets to an NFQUEUE queue inside a network
//! namespace of its own (`iptables -A OUTPUT -p udp -j NFQUEUE --queue-num N
//! --queue-bypass`), and runs this tool there. For each queued packet it draws a delay,
//! uniform in `--delay-ms` ± `--jitter-ms` (30 ± 30 ms by default, what `netem delay 30ms
//! 30ms` gives), and accepts the packet once that has passed. Verdicts go out in due order,
//! not arrival order, so packets are reordered as under netem. Nothing is dropped: at most
//! `--max-held` packets wait at once, later ones are accepted at once, and the queue is
//! configured fail-open, so a full kernel queue accepts too.
//!
//! Progress on stdout, one JSON object per line: `ready` once the queue is bound (start the
//! traffic after it), `stopped` at the end with what was done (packets received, delayed,
//! passed over the bound, released at the stop, mean and maximum delay as held, reordered,
//! failed verdicts, receive overruns), and `error` when binding or the queue fails.
//!
//! It stops on SIGTERM or SIGINT (exit 0) and when the queue fails (exit 1): either way it
//! first accepts every packet it holds, so no packet is lost by the stop, then unbinds (after a
//! failure, closing the socket at exit does). Bad arguments exit 2. It needs CAP_NET_ADMIN in
//! its network namespace.
//!
//! The packets take one thread: one `poll` over the queue's socket and a self-pipe for the
//! signals, with the next due packet as its timeout, so a syscall or two per packet. A second
//! thread only waits for the signals.
//!
//! Modules: [`nfqueue`] (the netlink protocol and socket), [`hold`] (the delays and which
//! packet goes next). This file has the arguments, the signals and the loop.

#![forbid(unsafe_code)]

mod hold;
mod nfqueue;

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::Parser;
use rand::SeedableRng;
use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};

use hold::{Hold, Jitter};
use nfqueue::{Incoming, Queue};

/// Random delay for the packets of an NFQUEUE queue, netem-style, for tests.
#[derive(Parser, Debug)]
#[command(name = "callrec-netjitter", version, about, long_about = None)]
struct Args {
    /// The NFQUEUE queue number (as in `iptables -j NFQUEUE --queue-num N`)
    #[arg(long)]
    queue: u16,
    /// Mean delay per packet, in milliseconds
    #[arg(long, default_value_t = 30)]
    delay_ms: u64,
    /// Each delay is uniform in the mean plus or minus this, in milliseconds (never below 0)
    #[arg(long, default_value_t = 30)]
    jitter_ms: u64,
    /// Most packets held at once; more are accepted without delay
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_held: u32,
    /// Seed for the delays, to repeat a run (random otherwise)
    #[arg(long)]
    seed: Option<u64>,
}

/// Why the loop ended.
enum Stop {
    Signal(&'static str),
    Failed(io::Error),
}

/// What the loop counts beyond [`hold::Stats`].
#[derive(Default)]
struct Errors {
    /// Verdicts the kernel refused (an unknown packet id).
    verdicts: u64,
    /// Times the socket's buffer overran and the kernel lost messages (their packets stay
    /// queued in the kernel until the unbind drops them).
    overruns: u64,
}

/// SIGTERM and SIGINT as a socket that becomes readable (the self-pipe trick, so the loop's
/// one `poll` sees them), and the name of the one that came. The signals are caught by tokio
/// (which the crate has for the peer anyway) on a thread of their own, which writes the byte.
struct Signals {
    wake: UnixStream,
    came: Arc<OnceLock<&'static str>>,
}

impl Signals {
    fn watch() -> io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        // Registered here, before `ready` is printed, so that a stop sent as soon as the
        // injector is ready is caught, never the default action (exit without releasing).
        let (mut term, mut int) = rt.block_on(async {
            io::Result::Ok((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            ))
        })?;
        let (wake, mut write) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let came = Arc::new(OnceLock::new());
        let seen = Arc::clone(&came);
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let name = rt.block_on(async {
                    tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    }
                });
                // The name first: the wake-up must find it set.
                let _ = seen.set(name);
                let _ = write.write_all(&[1]);
            })?;
        Ok(Signals { wake, came })
    }

    /// The signal that came, if one did.
    fn received(&self) -> Option<&'static str> {
        self.came.get().copied()
    }
}

/// Prints one event as a JSON line on stdout and flushes it.
fn emit(event: serde_json::Value) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{event}");
    let _ = out.flush();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Takes packets, holds them, releases them when due, until a signal or a failure.
fn serve(
    queue: &mut Queue,
    hold: &mut Hold,
    jitter: Jitter,
    rng: &mut impl rand::Rng,
    errors: &mut Errors,
    signals: &Signals,
) -> Stop {
    loop {
        if let Some(name) = signals.received() {
            return Stop::Signal(name);
        }
        let now = Instant::now();
        while let Some(id) = hold.pop_due(now) {
            if let Err(e) = queue.accept(id) {
                return Stop::Failed(e);
            }
        }
        // Everything waiting in the socket, before sleeping again.
        loop {
            match queue.recv() {
                Ok(Some(messages)) => {
                    for m in messages {
                        match m {
                            Incoming::Packet(id) => {
                                let delay = jitter.sample(rng);
                                if !hold.admit(id, Instant::now(), delay) {
                                    if let Err(e) = queue.accept(id) {
                                        return Stop::Failed(e);
                                    }
                                }
                            }
                            Incoming::Ack(0) | Incoming::Other => {}
                            Incoming::Ack(_) => errors.verdicts += 1,
                        }
                    }
                }
                Ok(None) => break,
                Err(e) if e.raw_os_error() == Some(Errno::NOBUFS.raw_os_error()) => {
                    errors.overruns += 1;
                }
                Err(e) => return Stop::Failed(e),
            }
        }
        let timeout = hold
            .next_due()
            .map(|due| due.saturating_duration_since(Instant::now()));
        let mut fds = [
            PollFd::new(queue, PollFlags::IN),
            PollFd::new(&signals.wake, PollFlags::IN),
        ];
        if let Err(e) = nfqueue::wait(&mut fds, timeout) {
            return Stop::Failed(e);
        }
    }
}

fn run(args: Args) -> ExitCode {
    let fail = |what: &str, e: io::Error| {
        eprintln!("callrec-netjitter: {what}: {e}");
        emit(json!({"event": "error", "message": format!("{what}: {e}")}));
        ExitCode::from(1)
    };
    // Signals first, so a stop that comes while binding is not lost.
    let signals = match Signals::watch() {
        Ok(s) => s,
        Err(e) => return fail("cannot watch signals", e),
    };
    // The kernel keeps every held packet in its queue too; room for twice the bound, so the
    // bound, not the kernel, decides when packets pass without delay.
    let kernel_len = args.max_held.saturating_mul(2);
    let mut queue = match Queue::bind(args.queue, kernel_len) {
        Ok(q) => q,
        Err(e) => return fail(&format!("cannot bind NFQUEUE queue {}", args.queue), e),
    };
    let jitter = Jitter {
        mean: Duration::from_millis(args.delay_ms),
        jitter: Duration::from_millis(args.jitter_ms),
    };
    let mut rng = match args.seed {
        Some(seed) => rand::rngs::StdRng::seed_from_u64(seed),
        None => rand::rngs::StdRng::from_os_rng(),
    };
    emit(json!({
        "event": "ready",
        "queue": args.queue,
        "delay_ms": args.delay_ms,
        "jitter_ms": args.jitter_ms,
        "max_held": args.max_held,
    }));
    let mut hold = Hold::new(args.max_held as usize);
    let mut errors = Errors::default();
    let stop = serve(
        &mut queue,
        &mut hold,
        jitter,
        &mut rng,
        &mut errors,
        &signals,
    );
    // Release what is held before unbinding: the kernel drops whatever an unbind finds queued.
    let mut release_failed = None;
    for id in hold.drain() {
        if let Err(e) = queue.accept(id) {
            release_failed = Some(e);
            break;
        }
    }
    let unbound = match (&stop, &release_failed) {
        (Stop::Signal(_), None) => queue.unbind().err(),
        _ => None,
    };
    let s = hold.stats();
    let (reason, code) = match &stop {
        Stop::Signal(name) => ((*name).to_owned(), ExitCode::SUCCESS),
        Stop::Failed(e) => {
            eprintln!("callrec-netjitter: the queue failed: {e}");
            (format!("queue failed: {e}"), ExitCode::from(1))
        }
    };
    for (what, e) in [
        ("releasing held packets", release_failed),
        ("unbinding", unbound),
    ] {
        if let Some(e) = e {
            eprintln!("callrec-netjitter: {what}: {e}");
        }
    }
    emit(json!({
        "event": "stopped",
        "reason": reason,
        "received": s.received,
        "delayed": s.delayed,
        "over_bound": s.over_bound,
        "released_at_stop": s.released_at_stop,
        "mean_delay_ms": ms(s.mean_delay()),
        "max_delay_ms": ms(s.max_delay),
        "reordered": s.reordered,
        "max_held": s.max_held,
        "verdict_errors": errors.verdicts,
        "overruns": errors.overruns,
    }));
    code
}

fn main() -> ExitCode {
    run(Args::parse())
}
