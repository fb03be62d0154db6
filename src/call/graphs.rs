//! Pipeline graphs for troubleshooting (`[debug] graphs = true`).
//!
//! Each dump is `<call_dir>/debug/NNNN-<event>.dot`, NNNN counting up per call, so the files
//! sort in the order things happened. `gst_debug_bin_to_dot_data` (`Bin::debug_to_dot_data`) builds the text without
//! `GST_DEBUG_DUMP_DOT_DIR`. Dumps are written from the call's task, never from a GStreamer
//! streaming thread, and a call writes at most [`MAX_GRAPHS`] of them so a call with many
//! joins and leaves cannot fill the disk. The `debug/` directory exists only once a graph is
//! written, so call directories hold only files when graphs are off.

use std::path::{Path, PathBuf};

use gst::prelude::*;
use tracing::{debug, warn};

/// Most graphs one call writes.
pub const MAX_GRAPHS: u32 = 50;

/// The directory, under a call's directory, that graphs go to.
pub const GRAPHS_DIR: &str = "debug";

/// A call's graph writer; does nothing when graphs are off.
#[derive(Debug)]
pub(super) struct Graphs {
    /// `<call_dir>/debug`, or `None` when graphs are off.
    dir: Option<PathBuf>,
    /// Graphs written (or attempted) so far.
    count: u32,
}

impl Graphs {
    /// A writer for the call in `call_dir`.
    pub(super) fn new(enabled: bool, call_dir: &Path) -> Self {
        Self {
            dir: enabled.then(|| call_dir.join(GRAPHS_DIR)),
            count: 0,
        }
    }

    /// Writes the pipeline's current graph as the next `NNNN-<event>.dot`. Failures are
    /// logged: a graph is a diagnostic and must never stop a recording.
    pub(super) fn dump(&mut self, pipeline: &gst::Pipeline, event: &str) {
        let Some(dir) = &self.dir else {
            return;
        };
        if self.count >= MAX_GRAPHS {
            return;
        }
        self.count += 1;
        let path = dir.join(file_name(self.count, event));
        // Walking the bin and writing the file are short, but they do block: tell the
        // runtime, as the manifest writes do.
        let written = tokio::task::block_in_place(|| {
            let dot = pipeline.debug_to_dot_data(gst::DebugGraphDetails::all());
            write_graph(dir, &path, dot.as_bytes())
        });
        match written {
            Ok(()) => debug!(path = %path.display(), "wrote a pipeline graph"),
            Err(e) => warn!(path = %path.display(), "cannot write a pipeline graph: {e}"),
        }
        if self.count == MAX_GRAPHS {
            warn!(dir = %dir.display(), "this call wrote {MAX_GRAPHS} pipeline graphs; no more for it");
        }
    }
}

/// `NNNN-<event>.dot`.
fn file_name(n: u32, event: &str) -> String {
    format!("{n:04}-{event}.dot")
}

/// Creates the graphs directory (mode 0750, like call directories) and writes one graph.
fn write_graph(dir: &Path, path: &Path, dot: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    // Not recursive: a call directory that is gone must not come back for a graph.
    match std::fs::DirBuilder::new().mode(0o750).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    std::fs::write(path, dot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_order() {
        assert_eq!(file_name(1, "playing"), "0001-playing.dot");
        assert!(file_name(9, "eos") < file_name(10, "error"));
    }

    #[test]
    fn off_writes_nothing_and_on_is_bounded() {
        gst::init().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let pipeline = gst::Pipeline::with_name("graphs-test");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        rt.block_on(async {
            let mut off = Graphs::new(false, tmp.path());
            off.dump(&pipeline, "playing");
            assert!(!tmp.path().join(GRAPHS_DIR).exists());
            let mut on = Graphs::new(true, tmp.path());
            for _ in 0..MAX_GRAPHS + 5 {
                on.dump(&pipeline, "playing");
            }
        });
        let dir = tmp.path().join(GRAPHS_DIR);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            MAX_GRAPHS as usize
        );
        let first = std::fs::read_to_string(dir.join("0001-playing.dot")).unwrap();
        assert!(first.contains("digraph"), "{first}");
    }
}
