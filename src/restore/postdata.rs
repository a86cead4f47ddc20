//! Post-data in parallel, as `pg_restore -j` does: pg_dump's plain output marks every
//! entry with a `-- Name: ...; Type: ...` header, so the section splits into entries.
//! Indexes and (non-foreign-key) constraints are built on several connections at once;
//! everything else (foreign keys, triggers, policies, index attachments, comments) then
//! runs in dump order in one transaction.

/// One entry of a pg_dump section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The `Type:` of the header (`INDEX`, `CONSTRAINT`, `FK CONSTRAINT`, `TRIGGER`...).
    pub kind: String,
    pub sql: String,
}

/// A section split into its session preamble (the `SET` lines at the top) and entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub preamble: String,
    pub entries: Vec<Entry>,
}

impl Split {
    /// Entries that can be built concurrently: they depend only on tables and pre-data.
    pub fn parallel(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| is_parallel(&e.kind))
    }

    /// Everything else, in dump order.
    pub fn serial(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| !is_parallel(&e.kind))
    }
}

impl Entry {
    /// The table an index or constraint is built on (`schema`, `name`, unquoted), read
    /// from `CREATE [UNIQUE] INDEX name ON [ONLY] table` or `ALTER TABLE [ONLY] table`;
    /// `None` for other entries and for text this does not read.
    pub fn table(&self) -> Option<(String, String)> {
        let sql = self.sql.trim_start();
        let rest = if let Some(rest) = sql.strip_prefix("ALTER TABLE ") {
            rest
        } else {
            let rest = sql.strip_prefix("CREATE ")?;
            let rest = rest.strip_prefix("UNIQUE ").unwrap_or(rest);
            let rest = rest.strip_prefix("INDEX ")?;
            let (_, after_name) = identifier(rest)?;
            after_name.trim_start().strip_prefix("ON ")?
        };
        let rest = rest.trim_start();
        let rest = rest.strip_prefix("ONLY ").unwrap_or(rest).trim_start();
        let (schema, rest) = identifier(rest)?;
        let (name, _) = identifier(rest.strip_prefix('.')?)?;
        Some((schema, name))
    }
}

/// One SQL identifier at the start of `text` (`"quoted ""x"""` or bare), unquoted, and
/// the text after it.
fn identifier(text: &str) -> Option<(String, &str)> {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '"' {
                name.push(c);
                continue;
            }
            if quoted[i + 1..].starts_with('"') {
                name.push('"');
                chars.next();
                continue;
            }
            return Some((name, &quoted[i + 1..]));
        }
        return None;
    }
    let end = text.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$')).unwrap_or(text.len());
    (end > 0).then(|| (text[..end].to_string(), &text[end..]))
}

fn is_parallel(kind: &str) -> bool {
    matches!(kind, "INDEX" | "CONSTRAINT")
}

/// Splits pg_dump plain SQL. Returns `None` for text this parser does not fully
/// understand (psql meta-commands other than `\restrict`/`\unrestrict`), so the caller
/// can fall back to feeding the whole text to psql.
pub fn split(sql: &str) -> Option<Split> {
    let lines: Vec<&str> = sql.lines().collect();
    let mut preamble = String::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("\\restrict") || line.starts_with("\\unrestrict") {
            i += 1;
            continue;
        }
        if line.starts_with('\\') {
            return None;
        }
        // A header block: "--", "-- Name: ...; Type: T; ...", "--".
        if line == "--"
            && let Some(kind) = lines.get(i + 1).and_then(|l| header_kind(l))
        {
            entries.push(Entry { kind: kind.to_string(), sql: String::new() });
            i += 3;
            continue;
        }
        match entries.last_mut() {
            Some(entry) => {
                entry.sql.push_str(line);
                entry.sql.push('\n');
            }
            None => {
                preamble.push_str(line);
                preamble.push('\n');
            }
        }
        i += 1;
    }
    for e in &mut entries {
        e.sql = e.sql.trim().to_string();
    }
    entries.retain(|e| !e.sql.is_empty());
    Some(Split { preamble, entries })
}

/// A pre-data section with its privileges apart: the text without the statements of
/// pg_dump's `ACL` and `DEFAULT ACL` entries (GRANT, REVOKE, ALTER DEFAULT PRIVILEGES, one
/// line each), and those statements in dump order. Everything else of such an entry (a
/// `SET` pg_dump puts before the next object, say) stays in the text, so the text is the
/// section as pg_dump wrote it minus exactly the statements returned. A statement that
/// does not end its line (an identifier with a line break in it) stays in the text too.
pub fn without_privileges(sql: &str) -> (String, Vec<String>) {
    let mut rest = String::with_capacity(sql.len());
    let mut privileges = Vec::new();
    let mut in_acl = false;
    let lines: Vec<&str> = sql.split_inclusive('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare == "--"
            && let Some(kind) = lines.get(i + 1).and_then(|l| header_kind(l.trim_end_matches(['\n', '\r'])))
        {
            in_acl = matches!(kind, "ACL" | "DEFAULT ACL");
        }
        let statement = ["GRANT ", "REVOKE ", "ALTER DEFAULT PRIVILEGES "].iter().any(|p| bare.starts_with(p))
            && bare.ends_with(';');
        if in_acl && statement {
            privileges.push(bare.to_string());
        } else {
            rest.push_str(line);
        }
    }
    (rest, privileges)
}

fn header_kind(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("-- Name: ")?;
    let start = rest.find("; Type: ")? + "; Type: ".len();
    let kind = &rest[start..];
    Some(kind.split("; ").next().unwrap_or(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n\nSET statement_timeout = 0;\n\
SELECT pg_catalog.set_config('search_path', '', false);\n\n\
--\n-- Name: t t_pkey; Type: CONSTRAINT; Schema: public; Owner: me\n--\n\n\
ALTER TABLE ONLY public.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id);\n\n\n\
--\n-- Name: t_v; Type: INDEX; Schema: public; Owner: me\n--\n\n\
CREATE INDEX t_v ON public.t USING btree (v);\n\n\n\
--\n-- Name: u u_t_fkey; Type: FK CONSTRAINT; Schema: public; Owner: me\n--\n\n\
ALTER TABLE ONLY public.u\n    ADD CONSTRAINT u_t_fkey FOREIGN KEY (t) REFERENCES public.t(id);\n\n\
--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n";

    #[test]
    fn splits_pg_dump_post_data_into_entries() {
        let s = split(DUMP).unwrap();
        assert!(s.preamble.contains("SET statement_timeout = 0;"));
        assert!(s.preamble.contains("set_config('search_path'"));
        assert!(!s.preamble.contains("restrict"));
        let kinds: Vec<&str> = s.entries.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["CONSTRAINT", "INDEX", "FK CONSTRAINT"]);
        assert_eq!(s.parallel().count(), 2);
        let fk = s.serial().next().unwrap();
        assert!(fk.sql.starts_with("ALTER TABLE ONLY public.u"));
    }

    #[test]
    fn an_entry_names_the_table_it_builds_on() {
        let s = split(DUMP).unwrap();
        let tables: Vec<Option<(String, String)>> = s.entries.iter().map(Entry::table).collect();
        let t = Some(("public".to_string(), "t".to_string()));
        assert_eq!(tables, [t.clone(), t, Some(("public".to_string(), "u".to_string()))]);
        let entry = |sql: &str| Entry { kind: "INDEX".into(), sql: sql.into() };
        assert_eq!(
            entry("CREATE UNIQUE INDEX \"Odd \"\"ix\"\"\" ON ONLY \"My Schema\".\"Tab.le\" USING btree (a);").table(),
            Some(("My Schema".to_string(), "Tab.le".to_string()))
        );
        assert_eq!(
            entry("ALTER TABLE ONLY s.\"x\"\"y\"\n    ADD CONSTRAINT k PRIMARY KEY (id);").table(),
            Some(("s".to_string(), "x\"y".to_string()))
        );
        assert_eq!(entry("CREATE INDEX i ON t USING btree (a);").table(), None, "unqualified: not read");
        assert_eq!(entry("ALTER INDEX s.i ATTACH PARTITION s.j;").table(), None);
        assert_eq!(entry("CREATE UNIQUE INDEX \"unterminated ON s.t").table(), None);
    }

    #[test]
    fn privileges_come_apart_from_the_rest_of_pre_data() {
        let pre = "SET x = 0;\n\n--\n-- Name: t; Type: TABLE; Schema: public; Owner: app\n--\n\n\
CREATE TABLE public.t (\n    grant_ integer\n);\n\nALTER TABLE public.t OWNER TO app;\n\n\
--\n-- Name: FUNCTION pg_create_restore_point(text); Type: ACL; Schema: pg_catalog; Owner: postgres\n--\n\n\
GRANT ALL ON FUNCTION pg_catalog.pg_create_restore_point(text) TO app;\n\n\n\
--\n-- Name: TABLE t; Type: ACL; Schema: public; Owner: app\n--\n\n\
REVOKE ALL ON TABLE public.t FROM PUBLIC;\nGRANT SELECT ON TABLE public.\"odd\nname\" TO r;\n\
SET default_tablespace = '';\n\n\
--\n-- Name: DEFAULT PRIVILEGES FOR TABLES; Type: DEFAULT ACL; Schema: public; Owner: app\n--\n\n\
ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT SELECT ON TABLES TO r;\n\n\
--\n-- Name: t2; Type: TABLE; Schema: public; Owner: app\n--\n\nGRANT SELECT ON TABLE public.t TO r;\n";
        let (rest, privileges) = without_privileges(pre);
        assert_eq!(
            privileges,
            [
                "GRANT ALL ON FUNCTION pg_catalog.pg_create_restore_point(text) TO app;",
                "REVOKE ALL ON TABLE public.t FROM PUBLIC;",
                "ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT SELECT ON TABLES TO r;",
            ]
        );
        // The rest is the text less exactly those lines: what is not an ACL entry's own
        // one-line statement stays (a split identifier, a SET, a grant outside an ACL entry).
        let mut expected = pre.to_string();
        for p in &privileges {
            expected = expected.replacen(&format!("{p}\n"), "", 1);
        }
        assert_eq!(rest, expected);
        assert!(rest.contains("ALTER TABLE public.t OWNER TO app;"));
        assert!(rest.contains("GRANT SELECT ON TABLE public.\"odd\nname\" TO r;"));
        assert!(rest.contains("SET default_tablespace = '';"));
        assert!(rest.ends_with("GRANT SELECT ON TABLE public.t TO r;\n"));
    }

    #[test]
    fn unknown_meta_commands_fall_back() {
        assert!(split("\\connect other\nCREATE INDEX x ON t (a);\n").is_none());
    }
}
