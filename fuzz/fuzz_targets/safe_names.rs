//! Safe names: two inputs (split at the first NUL) never share a name, and every name stays
//! in the allowed character set.
#![no_main]

use callrec::names::{is_safe_component, safe_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let (a, b) = text.split_once('\0').unwrap_or((text, ""));
    let (na, nb) = (safe_name(a), safe_name(b));
    assert!(is_safe_component(&na), "{a:?} -> {na:?}");
    assert!(is_safe_component(&nb), "{b:?} -> {nb:?}");
    assert!(a == b || na != nb, "{a:?} and {b:?} both -> {na:?}");
});
