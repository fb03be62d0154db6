//! Embeds every shipped template (`pipelines/*.pipeline`) in the binary as the built-in set.
//!
//! The list is generated rather than written by hand so a new `.pipeline` file can never be
//! forgotten: it is built in as soon as it is in the directory. Cargo re-runs this script
//! when anything in `pipelines/` changes, so edits and new files are picked up.

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path()
        })
        .filter(|p| p.extension().is_some_and(|e| e == "pipeline"))
        .collect();
    files.sort();
    let mut out = String::from(
        "/// The shipped templates: (file name, text), sorted by file name.\n\
         pub const BUILTIN: &[(&str, &str)] = &[\n",
    );
    for path in &files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_else(|| panic!("{}: template file names must be UTF-8", path.display()));
        let full = path
            .to_str()
            .unwrap_or_else(|| panic!("{}: the source path must be UTF-8", path.display()));
        // `{:?}` writes a valid Rust string literal, escapes included.
        out.push_str(&format!("    ({name:?}, include_str!({full:?})),\n"));
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("builtin_templates.rs");
    std::fs::write(&target, out)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", target.display()));
}
