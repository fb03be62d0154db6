//! What a test sets up on disk: the shipped templates, template directories of its own, and
//! config files in temporary directories that live as long as the test needs them.

use std::path::PathBuf;

/// The shipped pipeline templates.
pub const PIPELINES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines");

/// `text` as `callrec.toml` in a new temporary directory (removed when the guard drops).
pub fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callrec.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// The shipped templates, plus `extra` files (name, text), in a directory of the test's own.
pub fn pipelines_with(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(PIPELINES).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "pipeline") {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    for (name, text) in extra {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}
