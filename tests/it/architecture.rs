//! The layers of the crate, checked on its source: every module imports only modules of its
//! own layer or below, and no two modules import each other (directly or around a cycle),
//! among the top-level modules and among the operations in `ops/`. docs/architecture.md
//! section describes the same table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. A module may import its own layer and the ones before it.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["secret", "actor", "access", "progress", "migrations", "wal_name", "faults"],
    &["keys", "signing", "pg", "operation"],
    &["config"],
    &["pgcluster", "repo", "catalog"],
    &["stacks", "source", "wal", "schedule"],
    &["restore", "drill", "bundle", "monitor", "copies"],
    &["ops"],
    &["api"],
    &["service"],
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code without its unit tests (a test may reach anywhere).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The names following `prefix` in `text` (`crate::repo::x` with prefix `crate::` gives `repo`).
fn referenced(text: &str, prefix: &str) -> BTreeSet<String> {
    text.match_indices(prefix)
        .filter(|(i, _)| !text[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .map(|(i, _)| {
            text[i + prefix.len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// A cycle in `graph`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn layers_import_downward_only_and_nothing_imports_in_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rank: BTreeMap<&str, usize> =
        LAYERS.iter().enumerate().flat_map(|(i, layer)| layer.iter().map(move |m| (*m, i))).collect();
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut ops: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut upward = Vec::new();
    for path in &all {
        let rel = path.strip_prefix(&src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if matches!(first.as_str(), "main" | "lib" | "cli") {
            continue; // the binary's front end sits on top of everything
        }
        let module_rank = *rank.get(first.as_str()).unwrap_or_else(|| panic!("module {first} is in no layer"));
        let text = code(path);
        for dep in referenced(&text, "crate::").into_iter().filter(|d| *d != first) {
            let dep_rank =
                *rank.get(dep.as_str()).unwrap_or_else(|| panic!("{dep} (used by {}) is in no layer", rel.display()));
            if dep_rank > module_rank {
                upward.push(format!("{} imports {dep}", rel.display()));
            }
            top.entry(first.clone()).or_default().insert(dep);
        }
        // Among the operations: `super::x` from `ops/y.rs`, `crate::ops::x` anywhere in ops.
        if first == "ops" && rel.components().count() >= 2 {
            let op = rel.components().nth(1).unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
            let nested = rel.components().count() > 2;
            let mut deps = referenced(&text, "crate::ops::");
            if nested {
                deps.extend(referenced(&text, "super::super::"));
            } else {
                deps.extend(referenced(&text, "super::"));
            }
            let is_op = |d: &str| src.join("ops").join(format!("{d}.rs")).exists() || src.join("ops").join(d).is_dir();
            for dep in deps.into_iter().filter(|d| *d != op && is_op(d)) {
                ops.entry(op.clone()).or_default().insert(dep);
            }
        }
    }
    assert!(upward.is_empty(), "modules import a layer above them:\n{}", upward.join("\n"));
    assert_eq!(cycle(&top), None, "top-level modules import each other in a circle");
    assert_eq!(cycle(&ops), None, "operations import each other in a circle");
    // The check itself sees imports: ops uses repo, and the repository uses no engine.
    assert!(top["ops"].contains("repo") && !top["repo"].contains("wal"), "{top:?}");
    assert!(ops.get("catalog").is_some_and(|d| d.contains("drill")), "{ops:?}");
}

/// Issue 32: every operation is named once, in `operation::Operation`; its job name, audit
/// action and lock label derive from there. No code outside it spells an operation's
/// compound name (its job name, or the older spellings it replaced) as a string literal.
#[test]
fn operations_are_spelled_only_in_the_operation_enum() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut spellings: Vec<String> = tidemark::operation::Operation::ALL
        .iter()
        .map(|o| o.job_name().to_string())
        .filter(|name| name.contains('-') || name.contains('.'))
        .collect();
    // What they replaced: a second and third spelling of one operation.
    for older in ["restore.in-place", "restore --in-place", "restore undo", "restore.undo", "branch.create"] {
        spellings.push(older.to_string());
    }
    spellings.extend(["branch set-live", "branch.set-live"].map(String::from));
    assert!(spellings.len() > 8, "{spellings:?}");
    let mut found = Vec::new();
    for path in all.iter().filter(|p| !p.ends_with("operation.rs")) {
        let text = code(path);
        for name in &spellings {
            if text.contains(&format!("\"{name}\"")) {
                found.push(format!("{}: \"{name}\"", path.strip_prefix(&src).unwrap().display()));
            }
        }
    }
    assert!(found.is_empty(), "operations named outside Operation:\n{}", found.join("\n"));
}

/// Issue 32: `ops/` orchestrates. No file there is longer than ~300 lines of code (its unit
/// tests aside), and no function longer than ~100, without the reason written beside it:
/// a `//! Longer than ~300 lines: ...` line in the file, a `// Longer than ~100 lines: ...`
/// comment in the lines just above the function.
#[test]
fn ops_files_and_functions_stay_short_or_say_why() {
    let ops = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ops");
    let mut all = Vec::new();
    files(&ops, &mut all);
    assert!(all.len() > 30, "{all:?}");
    let mut unexplained = Vec::new();
    for path in &all {
        let text = code(path);
        let lines: Vec<&str> = text.lines().collect();
        let name = path.strip_prefix(&ops).unwrap().display().to_string();
        if lines.len() > 300 && !lines.iter().any(|l| l.starts_with("//! Longer than ~300 lines: ")) {
            unexplained.push(format!("{name}: {} lines", lines.len()));
        }
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let is_fn = ["fn ", "async fn ", "pub fn ", "pub async fn ", "pub(super) fn ", "pub(super) async fn "]
                .iter()
                .any(|p| trimmed.starts_with(p) || trimmed.starts_with(&format!("pub(crate) {p}")));
            if !is_fn || line.trim_end().ends_with(';') {
                continue;
            }
            let indent = &line[..line.len() - trimmed.len()];
            let close = format!("{indent}}}");
            let Some(end) = lines[i..].iter().position(|l| *l == close) else { continue };
            let said = lines[i.saturating_sub(12)..i].iter().any(|l| l.contains("// Longer than ~100 lines: "));
            if end + 1 > 100 && !said {
                let function = trimmed.split("fn ").nth(1).and_then(|f| f.split(['(', '<']).next()).unwrap_or(trimmed);
                unexplained.push(format!("{name}: fn {function} is {} lines", end + 1));
            }
        }
    }
    assert!(unexplained.is_empty(), "over the limit without a reason:\n{}", unexplained.join("\n"));
}
