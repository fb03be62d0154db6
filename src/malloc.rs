//! glibc's allocator, set up for a recorder of many short-lived streaming threads.
//!
//! Every participant brings about a dozen GStreamer threads (ICE, DTLS, jitterbuffers,
//! RTCP), and glibc gives threads up to 8 arenas per core. On the 2-core soak machine that
//! was 16 arenas; each keeps the memory its threads freed, and threads that come later are
//! attached to other arenas, so the free memory is rarely reused. After a call of 31
//! participants had ended, the 16 arenas held 23.3 MB of which 9.0 MB was in use, and RSS
//! went on creeping up while the call lasted (`results/soak-2026-12-02*`, README "Soak").
//! Fewer arenas share their free memory, and trimming hands the free pages back to the
//! kernel when sessions end.
//!
//! GLib 2.74 (Debian 12) also keeps a slab allocator of its own in front of malloc
//! (`g_slice`, which GStreamer uses for every buffer, memory block, event and object): slabs
//! and per-thread magazines of freed chunks that are never given back. heaptrack put it
//! first among the daemon's memory at 5.7 MB with 8 participants. GLib 2.76 dropped it for
//! plain malloc; `G_SLICE=always-malloc` does the same here.
//!
//! This is the binary's module, not the library's: it is the one place that needs `unsafe`
//! (two calls into glibc), and the library forbids it.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Arenas for all threads. Two on any machine: GStreamer's threads mostly wait on the
/// network and on each other, and contention on two arenas cost no measurable CPU in the
/// soak, while every further arena is memory kept apart.
const ARENAS: i32 = 2;

/// How often free memory goes back to the kernel. Participants join and leave on the scale
/// of seconds to minutes; a trim takes about a millisecond (logged at debug level).
const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Limits the number of malloc arenas and sends GLib's slices to malloc. Call it first
/// thing in `main`, before any thread exists: arenas created before it stay, GLib reads
/// `G_SLICE` once, and setting the environment is only sound while no other thread runs.
/// An operator's own `G_SLICE` (a GLib debugging option) is left as it is.
pub fn configure() {
    if std::env::var_os("G_SLICE").is_none() {
        std::env::set_var("G_SLICE", "always-malloc");
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of glibc's allocator; it takes no pointers.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Gives the allocator's free pages back to the kernel every [`TRIM_EVERY`] until
/// `shutdown`. Runs the trim off the async threads: it walks and locks every arena.
pub async fn trim_periodically(shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let _ = tokio::task::spawn_blocking(|| {
            let started = Instant::now();
            trim();
            debug!(took_us = started.elapsed().as_micros(), "malloc_trim");
        })
        .await;
    }
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}
