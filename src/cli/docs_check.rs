//! The documentation, checked against the code (issue 31): every `tidemark ...` command
//! line in README.md and docs/ parses with the real CLI definitions, every relative link
//! and anchor resolves, and docs/reference/cli.md is what the definitions generate
//! (`TIDEMARK_WRITE_DOCS=1 cargo test --bin tidemark docs` writes it).

use std::path::{Path, PathBuf};

use clap::Parser;

use super::Cli;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file below docs/.
fn doc_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut files = vec![root().join("README.md")];
    walk(&root().join("docs"), &mut files);
    files
}

/// A command line as a reader would copy it: one line of a code block (continued with
/// `\`), or the text of an inline code span, cut at its first comment, `&&`, `|` or `;`.
#[derive(Debug)]
struct Line {
    file: String,
    line: usize,
    text: String,
    /// In a code block (a whole command), not a span in prose (which may name a command
    /// without its required arguments).
    whole: bool,
}

fn command_lines(path: &Path) -> Vec<Line> {
    let text = fs_err::read_to_string(path).unwrap();
    let file = path.strip_prefix(root()).unwrap().display().to_string();
    let mut lines = Vec::new();
    let mut in_block = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        if raw.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            let mut line = raw.trim().strip_prefix("$ ").unwrap_or(raw.trim()).to_string();
            if let Some((start, before)) = pending.take() {
                line = format!("{before} {line}");
                if let Some(cont) = line.strip_suffix('\\') {
                    pending = Some((start, cont.to_string()));
                    continue;
                }
                lines.extend(commands_in(&file, start, &line, true));
                continue;
            }
            if let Some(cont) = line.strip_suffix('\\') {
                pending = Some((i + 1, cont.to_string()));
                continue;
            }
            lines.extend(commands_in(&file, i + 1, &line, true));
        } else {
            for span in raw.split('`').skip(1).step_by(2) {
                lines.extend(commands_in(&file, i + 1, span, false));
            }
        }
    }
    lines
}

/// The `tidemark ...` commands in one line of shell. The docs' usage notation is read as a
/// reader would: an optional `[--flag VALUE]` is taken in, and of alternatives
/// (`[--a | --b]`, `(--time T | --latest)`) the first, so that every flag they show is
/// checked.
fn commands_in(file: &str, line: usize, text: &str, whole: bool) -> Vec<Line> {
    let text = first_alternatives(strip_comment(text));
    text.split("&&")
        .flat_map(|part| part.split(['|', ';']))
        .map(str::trim)
        .filter(|part| part.starts_with("tidemark ") || *part == "tidemark")
        .map(|part| Line { file: file.to_string(), line, text: part.to_string(), whole })
        .collect()
}

/// Innermost `[...]` and `(...)` groups holding a flag, replaced by their first
/// alternative, until none is left.
fn first_alternatives(text: &str) -> String {
    let mut text = text.to_string();
    loop {
        let group = text.char_indices().find_map(|(start, open)| {
            let close = match open {
                '[' => ']',
                '(' => ')',
                _ => return None,
            };
            let inner = &text[start + 1..];
            let end = inner.find(close)?;
            let content = &inner[..end];
            (content.contains("--") && !content.contains(['[', '(', ']', ')']))
                .then(|| (start, start + 1 + end + 1, content.split('|').next().unwrap_or("").trim().to_string()))
        });
        let Some((start, end, first)) = group else { return text };
        text.replace_range(start..end, &first);
    }
}

/// The line without its shell comment (a `#` at a word's start, outside quotes).
fn strip_comment(text: &str) -> &str {
    let (mut single, mut double, mut prev) = (false, false, ' ');
    for (i, c) in text.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return &text[..i],
            _ => {}
        }
        prev = c;
    }
    text
}

#[test]
fn the_usage_notation_reads_as_its_first_choice() {
    assert_eq!(first_alternatives("tidemark x [--a 1] [--b | --c]"), "tidemark x --a 1 --b");
    assert_eq!(first_alternatives("tidemark x (--time '1 2' | --latest) [--start]"), "tidemark x --time '1 2' --start");
    assert_eq!(first_alternatives("tidemark x [--v live|published]"), "tidemark x --v live");
    assert_eq!(strip_comment("tidemark x --note \"a # b\"   # says"), "tidemark x --note \"a # b\"   ");
    let found = commands_in("f", 1, "cd /x && tidemark snapshot list | jq . ; tidemark jobs", true);
    let texts: Vec<&str> = found.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["tidemark snapshot list", "tidemark jobs"]);
}

#[test]
fn every_command_line_in_the_docs_parses_with_the_real_cli() {
    use clap::error::ErrorKind as K;
    let mut checked = 0;
    let mut failures = Vec::new();
    // The generated reference holds clap's own usage lines (`tidemark init [OPTIONS] --repo <URL>`).
    for path in doc_files().into_iter().filter(|p| !p.ends_with("docs/reference/cli.md")) {
        for line in command_lines(&path) {
            let Some(words) = shlex::split(&line.text) else {
                failures.push(format!("{}:{}: unbalanced quotes in `{}`", line.file, line.line, line.text));
                continue;
            };
            checked += 1;
            match Cli::try_parse_from(&words) {
                Ok(_) => {}
                Err(e) if matches!(e.kind(), K::DisplayHelp | K::DisplayVersion) => {}
                // Prose may name a command without what it needs (`tidemark restore undo`).
                Err(e)
                    if !line.whole
                        && matches!(
                            e.kind(),
                            K::MissingRequiredArgument | K::DisplayHelpOnMissingArgumentOrSubcommand
                        ) => {}
                Err(e) => failures.push(format!(
                    "{}:{}: `{}`: {}",
                    line.file,
                    line.line,
                    line.text,
                    e.render().to_string().lines().next().unwrap_or_default()
                )),
            }
        }
    }
    assert!(checked > 100, "only {checked} command lines found: is the extraction broken?");
    assert!(failures.is_empty(), "{} command lines do not parse:\n{}", failures.len(), failures.join("\n"));
}

/// GitHub's anchor for a heading.
fn slug(heading: &str) -> String {
    let kept: String = heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ' || *c == '_')
        .collect();
    kept.replace(' ', "-")
}

fn anchors(path: &Path) -> Vec<String> {
    let text = fs_err::read_to_string(path).unwrap_or_default();
    let mut in_block = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
        } else if !in_block && line.starts_with('#') {
            found.push(slug(line.trim_start_matches('#')));
        }
    }
    found
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for path in doc_files() {
        let text = fs_err::read_to_string(&path).unwrap();
        let file = path.strip_prefix(root()).unwrap().display().to_string();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file_part, anchor) = target.split_once('#').map_or((target.as_str(), None), |(f, a)| (f, Some(a)));
            let resolved = if file_part.is_empty() { path.clone() } else { path.parent().unwrap().join(file_part) };
            if !resolved.exists() {
                broken.push(format!("{file}: {target}: no such file"));
                continue;
            }
            if let Some(anchor) = anchor
                && resolved.extension().is_some_and(|e| e == "md")
                && !anchors(&resolved).iter().any(|a| a == anchor)
            {
                broken.push(format!("{file}: {target}: no such heading"));
            }
        }
    }
    assert!(checked > 30, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The targets of Markdown links `[text](target)` outside code.
fn links(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        let mut rest = if in_block { "" } else { line };
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    targets
}

#[test]
fn the_cli_reference_is_what_the_definitions_generate() {
    let generated = format!(
        "<!-- Generated from the CLI's definitions: `TIDEMARK_WRITE_DOCS=1 cargo test --bin tidemark docs` \
         rewrites it. -->\n\n{}",
        clap_markdown::help_markdown::<Cli>()
    );
    let path = root().join("docs/reference/cli.md");
    if std::env::var_os("TIDEMARK_WRITE_DOCS").is_some() {
        fs_err::write(&path, &generated).unwrap();
    }
    let committed = fs_err::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/reference/cli.md differs from the CLI's definitions: run `TIDEMARK_WRITE_DOCS=1 cargo test --bin \
         tidemark docs` and commit it"
    );
}
