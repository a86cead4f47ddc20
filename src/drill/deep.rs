//! Deep verification of a restored copy, beneath its rows: `pg_amcheck` on every table
//! (heap pages and tuples, with their TOAST) and B-tree index (structure and order), and
//! `pg_checksums --check` on a stopped physical copy. A corrupt index restores "fine" and
//! answers queries wrongly later; these checks name it now.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::Check;
use crate::pg::ConnSpec;

/// The checks' names in reports and JUnit.
pub const AMCHECK_TABLES: &str = "amcheck tables";
pub const AMCHECK_INDEXES: &str = "amcheck indexes";
pub const DATA_CHECKSUMS: &str = "data-checksums";

/// Relations named in a failure's details before "and N more".
const NAMED: usize = 5;

/// The amcheck checks, skipped for `why` (the restore failed, say).
pub fn amcheck_skipped(why: &str) -> [Check; 2] {
    [Check::skipped(AMCHECK_TABLES, why), Check::skipped(AMCHECK_INDEXES, why)]
}

/// Runs `pg_amcheck` on the database `conn` names (installing the `amcheck` extension in it
/// when missing: a throwaway's, never a live one) and returns the two checks: tables and
/// indexes, each failing with the relations it found corrupt. `heapallindexed` also checks
/// that every table row is in each of its indexes (slower: reads every index entry).
/// Checks that could not run (no pg_amcheck, no privilege to install amcheck) are skipped
/// with what pg_amcheck said.
pub async fn amcheck(bin_dir: Option<&Path>, conn: &ConnSpec, heapallindexed: bool) -> [Check; 2] {
    let clock = Instant::now();
    let tool = crate::pg::tool(bin_dir, "pg_amcheck");
    let mut cmd = tokio::process::Command::new(&tool);
    cmd.args(["--install-missing", "--jobs", "2"]);
    if heapallindexed {
        cmd.arg("--heapallindexed");
    }
    conn.apply_as_argument(&mut cmd);
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = match cmd.output().await {
        Ok(out) => out,
        Err(e) => {
            let why = crate::pg::tool_spawn_error(&tool, &e).report();
            return amcheck_skipped(&format!("pg_amcheck could not run: {why}"));
        }
    };
    let ms = clock.elapsed().as_millis() as u64;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    match out.status.code() {
        Some(0 | 2) => {}
        _ => {
            let said = format!("{}{}", stdout.trim(), stderr.trim());
            return amcheck_skipped(&format!("pg_amcheck could not check ({}): {said}", out.status));
        }
    }
    let database = conn.database().unwrap_or_default();
    let found = parse_amcheck(&stdout, &database);
    let verdict = |kind: Kind, clean: String| match found.get(&kind) {
        None => Ok(clean),
        Some(problems) => Err(named(kind, problems)),
    };
    let indexes_clean = match heapallindexed {
        true => "every B-tree index is well ordered and structured, and holds every row of its table".to_string(),
        false => "every B-tree index is well ordered and structured".to_string(),
    };
    [
        Check::new(
            AMCHECK_TABLES,
            verdict(Kind::Table, "every table page and tuple (and its TOAST) is sound".into()),
            ms,
        ),
        Check::new(AMCHECK_INDEXES, verdict(Kind::Index, indexes_clean), ms),
    ]
}

/// What a failed check says: each relation and pg_amcheck's first line about it.
fn named(kind: Kind, problems: &[(String, String)]) -> String {
    let what = match kind {
        Kind::Table => "table",
        Kind::Index => "index",
    };
    let mut lines: Vec<String> =
        problems.iter().take(NAMED).map(|(rel, said)| format!("{what} {rel}: {said}")).collect();
    if problems.len() > NAMED {
        lines.push(format!("and {} more", problems.len() - NAMED));
    }
    format!("pg_amcheck found corruption: {}", lines.join("; "))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Table,
    Index,
}

/// pg_amcheck's report: a line per corrupt place (`heap table "db.s.t", block 0, offset
/// 3:` or `btree index "db.s.i":`), then what is wrong, indented. Per kind, each relation
/// (without the database's name) once, with the first thing said of it.
fn parse_amcheck(stdout: &str, database: &str) -> HashMap<Kind, Vec<(String, String)>> {
    let mut out: HashMap<Kind, Vec<(String, String)>> = HashMap::new();
    let mut lines = stdout.lines().peekable();
    while let Some(line) = lines.next() {
        let (kind, rest) = if let Some(rest) = line.strip_prefix("heap table \"") {
            (Kind::Table, rest)
        } else if let Some(rest) = line.strip_prefix("btree index \"") {
            (Kind::Index, rest)
        } else {
            continue;
        };
        let Some((qualified, place)) = rest.split_once('"') else { continue };
        let relation = qualified.strip_prefix(&format!("{database}.")).unwrap_or(qualified).to_string();
        let place = place.trim_start_matches(',').trim_end_matches(':').trim();
        let said = lines.peek().filter(|l| l.starts_with(' ')).map(|l| l.trim().to_string()).unwrap_or_default();
        let said = match place.is_empty() {
            true => said,
            false => format!("{place}: {said}"),
        };
        let found = out.entry(kind).or_default();
        if !found.iter().any(|(r, _)| *r == relation) {
            found.push((relation, said));
        }
    }
    out
}

/// Runs `pg_checksums --check` on the stopped data directory `pgdata` of a physical
/// restore: every page's checksum, a failing one named by relation (`files` maps the files
/// the restored server reported, relative to the data directory, to relation names).
/// Skipped when the cluster has no data checksums.
pub async fn checksums(
    bin_dir: Option<PathBuf>,
    pgdata: &Path,
    enabled: bool,
    files: &HashMap<String, String>,
) -> Check {
    if !enabled {
        return Check::skipped(
            DATA_CHECKSUMS,
            "the source cluster has no data checksums (initdb --data-checksums, or pg_checksums --enable on the \
             stopped server, turns them on), so its pages carry nothing to check",
        );
    }
    let clock = Instant::now();
    let data = pgdata.to_path_buf();
    let scanned = tokio::task::spawn_blocking(move || crate::pgcluster::verify_checksums(bin_dir.as_deref(), &data))
        .await
        .map_err(|e| crate::error::Error::internal(format!("pg_checksums task: {e}")))
        .and_then(|r| r);
    let ms = clock.elapsed().as_millis() as u64;
    let outcome = match scanned {
        Ok(scan) if scan.bad.is_empty() => {
            Ok(format!("{} blocks in {} files: every page's checksum matches", scan.blocks, scan.files))
        }
        Ok(scan) => {
            let named: Vec<String> = scan
                .bad
                .iter()
                .take(NAMED)
                .map(|(file, block)| {
                    let base = file.split('.').next().unwrap_or(file);
                    match files.get(base) {
                        Some(relation) => format!("{relation} ({file}) block {block}"),
                        None => format!("{file} block {block}"),
                    }
                })
                .collect();
            let more = scan.bad.len().saturating_sub(NAMED);
            Err(format!(
                "pg_checksums found {} pages whose checksum does not match: {}{}",
                scan.bad.len(),
                named.join("; "),
                if more > 0 { format!("; and {more} more") } else { String::new() }
            ))
        }
        Err(e) => Err(format!("pg_checksums could not check the restored data directory: {}", e.report())),
    };
    Check::new(DATA_CHECKSUMS, outcome, ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_amcheck_reports_are_read_per_relation_and_kind() {
        let report = "heap table \"shop.public.orders\", block 12, offset 3:\n    \
                      xmin 4294967295 precedes relation freeze threshold 0:3\n\
                      heap table \"shop.public.orders\", block 12, offset 4:\n    another\n\
                      btree index \"shop.public.orders_pkey\":\n    \
                      ERROR:  item order invariant violated for index \"orders_pkey\"\n    \
                      DETAIL:  Lower index tid=(1,5)\n\
                      btree index \"shop.audit.t_id\":\n    ERROR:  invalid page in block 1 of relation base/5/16389\n";
        let found = parse_amcheck(report, "shop");
        assert_eq!(
            found[&Kind::Table],
            vec![(
                "public.orders".to_string(),
                "block 12, offset 3: xmin 4294967295 precedes relation freeze threshold 0:3".to_string()
            )]
        );
        let indexes = &found[&Kind::Index];
        assert_eq!(indexes.len(), 2);
        assert_eq!(indexes[0].0, "public.orders_pkey");
        assert!(indexes[0].1.starts_with("ERROR:  item order invariant violated"), "{}", indexes[0].1);
        assert_eq!(indexes[1].0, "audit.t_id");
        assert!(parse_amcheck("", "shop").is_empty());
        let said = named(Kind::Index, indexes);
        assert!(said.contains("index public.orders_pkey: ERROR") && said.contains("index audit.t_id"), "{said}");
        let many: Vec<(String, String)> = (0..8).map(|i| (format!("public.t{i}"), "bad".into())).collect();
        assert!(named(Kind::Table, &many).ends_with("and 3 more"));
    }
}
