//! A structural JSON diff: the paths (JSON Pointers) of values added, removed and changed
//! between two documents. Objects compare by key, arrays by position.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Change {
    Added { path: String, value: Value },
    Removed { path: String, value: Value },
    Changed { path: String, from: Value, to: Value },
}

impl Change {
    pub fn path(&self) -> &str {
        match self {
            Change::Added { path, .. } | Change::Removed { path, .. } | Change::Changed { path, .. } => path,
        }
    }

    /// One line for people: `~ /a/b: 1 -> 2`, `+ /c: "x"`, `- /d: true`.
    pub fn render(&self) -> String {
        match self {
            Change::Added { path, value } => format!("+ {}: {value}", display(path)),
            Change::Removed { path, value } => format!("- {}: {value}", display(path)),
            Change::Changed { path, from, to } => format!("~ {}: {from} -> {to}", display(path)),
        }
    }
}

fn display(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

/// Differences from `from` to `to`, in document order.
pub fn diff(from: &Value, to: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk("", from, to, &mut out);
    out
}

fn walk(path: &str, from: &Value, to: &Value, out: &mut Vec<Change>) {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, va) in a {
                let p = format!("{path}/{}", escape(key));
                match b.get(key) {
                    Some(vb) => walk(&p, va, vb, out),
                    None => out.push(Change::Removed { path: p, value: va.clone() }),
                }
            }
            for (key, vb) in b {
                if !a.contains_key(key) {
                    out.push(Change::Added { path: format!("{path}/{}", escape(key)), value: vb.clone() });
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let p = format!("{path}/{i}");
                match (a.get(i), b.get(i)) {
                    (Some(va), Some(vb)) => walk(&p, va, vb, out),
                    (Some(va), None) => out.push(Change::Removed { path: p, value: va.clone() }),
                    (None, Some(vb)) => out.push(Change::Added { path: p, value: vb.clone() }),
                    (None, None) => {}
                }
            }
        }
        (a, b) if a != b => out.push(Change::Changed { path: path.to_string(), from: a.clone(), to: b.clone() }),
        _ => {}
    }
}

/// JSON Pointer escaping (RFC 6901).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_added_removed_and_changed_paths() {
        let a = json!({"route": "/checkout", "steps": [1, 2, 3], "auth": {"required": true}, "old": 1});
        let b = json!({"route": "/pay", "steps": [1, 2], "auth": {"required": true, "role": "x"}, "a/b": null});
        let changes = diff(&a, &b);
        let lines: Vec<String> = changes.iter().map(Change::render).collect();
        assert!(lines.contains(&"~ /route: \"/checkout\" -> \"/pay\"".to_string()), "{lines:?}");
        assert!(lines.contains(&"- /steps/2: 3".to_string()));
        assert!(lines.contains(&"+ /auth/role: \"x\"".to_string()));
        assert!(lines.contains(&"- /old: 1".to_string()));
        assert!(lines.contains(&"+ /a~1b: null".to_string()));
        assert_eq!(changes.len(), 5);
    }

    #[test]
    fn equal_documents_and_type_changes() {
        assert!(diff(&json!({"a": [1]}), &json!({"a": [1]})).is_empty());
        assert_eq!(diff(&json!({"a": [1]}), &json!({"a": "1"})).len(), 1);
        assert_eq!(diff(&json!(1), &json!(2))[0].path(), "");
    }
}
