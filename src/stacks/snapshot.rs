//! Function stacks as a snapshot holds them: the rows of `tidemark.stacks` and
//! `tidemark.stack_changes`, and from them each stack's live document at that moment.

use std::collections::BTreeMap;

use super::{Document, StackRef};
use crate::error::{Error, Result};

/// A table of a snapshot: its rows as `COPY` text fields (`None`: NULL), and its columns.
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    pub rows: &'a [Vec<Option<String>>],
    pub columns: &'a [String],
}

/// Each stack's live document at the snapshot (its newest change), by stack name.
///
/// Errors: `Integrity` for rows that are malformed or tables without the columns needed.
pub fn live_documents(stacks: Rows<'_>, changes: Rows<'_>, snapshot: &str) -> Result<Vec<(StackRef, Document)>> {
    let position = |cols: &[String], name: &str| {
        cols.iter()
            .position(|c| c == name)
            .ok_or_else(|| Error::integrity(format!("the snapshot's stack tables have no column {name}")))
    };
    let (stack_id_col, kind_col, name_col) =
        (position(stacks.columns, "id")?, position(stacks.columns, "kind")?, position(stacks.columns, "name")?);
    let (change_id_col, of_col, content_col) = (
        position(changes.columns, "id")?,
        position(changes.columns, "stack_id")?,
        position(changes.columns, "content")?,
    );
    let number = |v: &Option<String>| v.as_deref().and_then(|s| s.parse::<i64>().ok());
    // The live change of each stack at the snapshot: its newest change.
    let mut live: BTreeMap<i64, (i64, String)> = BTreeMap::new();
    for row in changes.rows {
        let (Some(id), Some(stack), Some(content)) =
            (number(&row[change_id_col]), number(&row[of_col]), row[content_col].clone())
        else {
            return Err(Error::integrity("a stack change in the snapshot is malformed"));
        };
        if live.get(&stack).is_none_or(|(newest, _)| id > *newest) {
            live.insert(stack, (id, content));
        }
    }
    let mut out = Vec::new();
    for row in stacks.rows {
        let (Some(id), Some(kind), Some(name)) = (number(&row[stack_id_col]), &row[kind_col], &row[name_col]) else {
            return Err(Error::integrity("a stack in the snapshot is malformed"));
        };
        let Some((_, content)) = live.get(&id) else { continue };
        let stack = StackRef::parse(&format!("{kind}/{name}"))?;
        let doc = Document::parse(content, &format!("{stack} in snapshot {snapshot}"))?;
        out.push((stack, doc));
    }
    Ok(out)
}
