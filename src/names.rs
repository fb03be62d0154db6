//! Safe names for values that come from the network (peer ids, meta values, call names).
//!
//! A safe name is a single path component made of `[A-Za-z0-9.-]` and `_XX` escapes (the
//! UTF-8 bytes of every other character, in hex), so it can never leave the recordings
//! directory and never changes the syntax of the pipeline text it is substituted into. The
//! mapping is injective: `_` itself is escaped, so two different inputs never share a name.
//! Long names are cut and end with a hash of the whole original, which keeps them unique.
//! The original value is kept in the manifest.

use sha2::{Digest, Sha256};

/// Longest safe name before it is cut and hashed.
pub const MAX_NAME_LEN: usize = 64;
/// How much of a long name is kept before the hash.
const KEPT_PREFIX_LEN: usize = 48;

/// Maps any string to a safe, unique file-name component.
pub fn safe_name(original: &str) -> String {
    let mut out = String::with_capacity(original.len());
    for (i, c) in original.char_indices() {
        // A leading dot would make hidden files, or `.`/`..` components.
        let keep = c.is_ascii_alphanumeric() || c == '-' || (c == '.' && i > 0);
        if keep {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("_{byte:02x}"));
            }
        }
    }
    if out.is_empty() {
        // No encoding of a non-empty string is a lone underscore.
        return "_".into();
    }
    if out.len() <= MAX_NAME_LEN {
        return out;
    }
    // Cut on a char boundary (the output is ASCII) and add a hash of the full original; the
    // result is longer than any uncut name, so it cannot equal one.
    let digest = Sha256::digest(original.as_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}_{hash}", &out[..KEPT_PREFIX_LEN])
}

/// The file-name stem for a participant: their meta `name` (when it is a string) and the
/// start of their peer id, so files say who they are and still differ per peer; or the safe
/// peer id alone. Callers add `+N` if a call already has the stem.
pub fn participant_name(peer_id: &str, meta: &serde_json::Value) -> String {
    let id = safe_name(peer_id);
    match meta.get("name").and_then(|n| n.as_str()) {
        Some(name) if !name.is_empty() => {
            let short: String = id.chars().take(8).collect();
            format!("{}+{short}", safe_name(name))
        }
        _ => id,
    }
}

/// True if `name` is made only of characters a safe name may contain (for values that are
/// built by callrec itself and substituted into pipelines, such as track names). Names
/// callrec makes are far shorter than the bound, which keeps file names within limits.
pub fn is_safe_component(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '+'))
}

/// True if an operator-supplied path (the recordings directory) can be put into pipeline
/// text as it is.
pub fn is_pipeline_safe_path(path: &str) -> bool {
    !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '+' | '/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn plain_names_stay_readable() {
        assert_eq!(safe_name("alice"), "alice");
        assert_eq!(
            safe_name("3f2a-77b1-9c0d.x"),
            "3f2a-77b1-9c0d.x",
            "uuids and dots inside are kept"
        );
    }

    #[test]
    fn path_traversal_is_neutralised() {
        for hostile in ["../../etc", "..", ".", "/etc/passwd", "a/../../b", "./x"] {
            let name = safe_name(hostile);
            assert!(!name.contains('/'), "{hostile} -> {name}");
            assert!(!name.starts_with('.'), "{hostile} -> {name}");
            assert!(is_safe_component(&name), "{hostile} -> {name}");
        }
        assert_eq!(safe_name("../../etc"), "_2e._2f.._2fetc");
    }

    #[test]
    fn pipeline_syntax_is_neutralised() {
        for hostile in [
            "a ! filesink location=/tmp/x",
            "\"quoted\"",
            "it's",
            "line\nbreak",
            "tab\there",
            "semi;colon",
            "$(reboot)",
            "${call_dir}",
            "name=x",
            "日本語",
            "",
        ] {
            let name = safe_name(hostile);
            assert!(is_safe_component(&name), "{hostile:?} -> {name}");
            assert!(
                !name.contains(['!', '"', '\'', ' ', '\n', '=', '$', '{', ';']),
                "{hostile:?} -> {name}"
            );
        }
    }

    #[test]
    fn names_never_collide() {
        let inputs = [
            "a_2f", "a/", "a_", "a", "_", "", ".a", "_2ea", "A", "a.", "a-", "a+",
        ];
        let names: HashSet<String> = inputs.iter().map(|s| safe_name(s)).collect();
        assert_eq!(names.len(), inputs.len(), "{names:?}");
    }

    #[test]
    fn long_names_are_cut_and_hashed() {
        let long_a = "a".repeat(10_000);
        let mut long_b = long_a.clone();
        long_b.push('b');
        let (na, nb) = (safe_name(&long_a), safe_name(&long_b));
        assert_ne!(na, nb);
        assert_eq!(na.len(), KEPT_PREFIX_LEN + 17);
        assert!(na.len() > MAX_NAME_LEN);
        assert!(is_safe_component(&na));
        // Hostile long values made of escapes stay bounded too.
        let n = safe_name(&"/".repeat(10_000));
        assert_eq!(n.len(), KEPT_PREFIX_LEN + 17);
    }

    #[test]
    fn participant_names_carry_the_display_name() {
        let meta = serde_json::json!({"name": "Alice Ö"});
        let name = participant_name("3f2a77b1-9c0d", &meta);
        assert_eq!(name, "Alice_20_c3_96+3f2a77b1");
        assert!(is_safe_component(&name));
        assert_eq!(participant_name("p/1", &serde_json::Value::Null), "p_2f1");
        let hostile = serde_json::json!({"name": "../../x ! y".repeat(1000)});
        assert!(is_safe_component(&participant_name("id", &hostile)));
    }

    #[test]
    fn operator_paths_are_checked() {
        assert!(is_pipeline_safe_path("/var/lib/callrec/recordings"));
        assert!(!is_pipeline_safe_path("/var/my recordings"));
        assert!(!is_pipeline_safe_path("/tmp/a!b"));
    }
}
