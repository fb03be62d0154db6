//! Which producers are recorded, and which call each belongs to: plain functions of the
//! producer's meta and the `[recording]` settings.

use serde_json::Value;

/// The call a producer belongs to: `(key, name)`. Producers sharing a group value share a
/// call; a producer without one is a call of its own. Keys of the two kinds cannot collide.
pub fn call_key(peer_id: &str, meta: &Value, group_key: &str) -> (String, String) {
    match meta.get(group_key) {
        Some(Value::String(s)) => (format!("g:{s}"), s.clone()),
        Some(v) if !v.is_null() => {
            let s = v.to_string();
            (format!("g:{s}"), s)
        }
        _ => (format!("p:{peer_id}"), format!("peer-{peer_id}")),
    }
}

/// True if every filter pair is in the producer's meta (string values, or other JSON values
/// compared by their JSON text).
pub fn matches_filter(meta: &Value, filter: &std::collections::BTreeMap<String, String>) -> bool {
    filter.iter().all(|(k, want)| match meta.get(k) {
        Some(Value::String(s)) => s == want,
        Some(v) => *v == serde_json::from_str::<Value>(want).unwrap_or(Value::Null),
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn grouping_by_meta_key() {
        let (a, name) = call_key("p1", &json!({"call": "standup"}), "call");
        let (b, _) = call_key("p2", &json!({"call": "standup"}), "call");
        assert_eq!(a, b);
        assert_eq!(name, "standup");
        let (c, name_c) = call_key("p3", &json!({"room": "x"}), "call");
        assert_ne!(a, c);
        assert_eq!(name_c, "peer-p3");
        let (d, _) = call_key("p4", &Value::Null, "call");
        assert_ne!(c, d);
        // A meta value equal to a peer id is still a different call.
        let (e, _) = call_key("x", &Value::Null, "call");
        let (f, _) = call_key("y", &json!({"call": "x"}), "call");
        assert_ne!(e, f);
        let (g, name_g) = call_key("p", &json!({"call": 42}), "call");
        assert_eq!((g.as_str(), name_g.as_str()), ("g:42", "42"));
    }

    #[test]
    fn filter_matching() {
        let mut filter = std::collections::BTreeMap::new();
        assert!(matches_filter(&Value::Null, &filter));
        filter.insert("record".to_owned(), "yes".to_owned());
        assert!(matches_filter(&json!({"record": "yes", "x": 1}), &filter));
        assert!(!matches_filter(&json!({"record": "no"}), &filter));
        assert!(!matches_filter(&Value::Null, &filter));
        filter.insert("n".to_owned(), "1".to_owned());
        assert!(matches_filter(&json!({"record": "yes", "n": 1}), &filter));
    }
}
