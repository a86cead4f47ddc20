//! What a snapshot records about the schema so a drill can prove the restored schema is the
//! same: a fingerprint (SHA-256 per kind of object over lines that name objects by name,
//! never by OID, read from the catalogs inside the snapshot's transaction), and the roles
//! the database's objects refer to (owners, grantees, policies), so a throwaway cluster can
//! create them before the schema is loaded.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use sqlx::{PgConnection, Row};

use crate::error::Result;

/// The schemas a fingerprint covers: everything but the system's own.
const USER_NAMESPACES: &str = "SELECT oid, nspname FROM pg_namespace \
     WHERE nspname NOT IN ('pg_catalog', 'information_schema') \
       AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp%'";

/// One `(kind, line)` row per schema object. Lines use names and deparsed definitions
/// (`pg_get_indexdef`, `pg_get_constraintdef`, ...), which a dump and restore reproduce
/// exactly; OIDs, attnums of dropped columns and ACL grantors, which they do not, stay out.
fn fingerprint_query() -> String {
    format!(
        "WITH ns AS ({USER_NAMESPACES}) \
         SELECT 'schemas', nspname::text FROM ns \
         UNION ALL \
         SELECT 'relations', format('%s.%s kind=%s persistence=%s rls=%s/%s bound=%s', ns.nspname, c.relname, \
                c.relkind, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity, \
                coalesce(pg_get_expr(c.relpartbound, c.oid), '')) \
           FROM pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relkind IN ('r','p','v','m','S','f','c') \
         UNION ALL \
         SELECT 'columns', format('%s.%s #%s %s %s notnull=%s default=%s generated=%s identity=%s collation=%s', \
                ns.nspname, c.relname, \
                row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum), a.attname, \
                format_type(a.atttypid, a.atttypmod), a.attnotnull, coalesce(pg_get_expr(d.adbin, d.adrelid), ''), \
                a.attgenerated, a.attidentity, coalesce(co.collname, '')) \
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN ns ON ns.oid = c.relnamespace \
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
           LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 100 \
          WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r','p','v','m','f','c') \
         UNION ALL \
         SELECT 'constraints', format('%s.%s %s %s', ns.nspname, coalesce(c.relname, t.typname), con.conname, \
                pg_get_constraintdef(con.oid)) \
           FROM pg_constraint con JOIN ns ON ns.oid = con.connamespace \
           LEFT JOIN pg_class c ON c.oid = con.conrelid LEFT JOIN pg_type t ON t.oid = con.contypid \
         UNION ALL \
         SELECT 'indexes', pg_get_indexdef(i.indexrelid) \
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN ns ON ns.oid = c.relnamespace \
         UNION ALL \
         SELECT 'triggers', pg_get_triggerdef(t.oid) \
           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns ON ns.oid = c.relnamespace \
          WHERE NOT t.tgisinternal \
         UNION ALL \
         SELECT 'functions', format('%s.%s(%s) kind=%s returns=%s language=%s volatility=%s source_md5=%s', \
                ns.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prokind, \
                coalesce(pg_get_function_result(p.oid), ''), l.lanname, p.provolatile, md5(coalesce(p.prosrc, ''))) \
           FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang \
         UNION ALL \
         SELECT 'views', format('%s.%s %s', ns.nspname, c.relname, md5(pg_get_viewdef(c.oid))) \
           FROM pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relkind IN ('v','m') \
         UNION ALL \
         SELECT 'sequences', format('%s.%s %s start=%s increment=%s min=%s max=%s cache=%s cycle=%s', \
                ns.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, \
                s.seqmax, s.seqcache, s.seqcycle) \
           FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN ns ON ns.oid = c.relnamespace \
         UNION ALL \
         SELECT 'types', format('%s.%s type=%s base=%s labels=%s', ns.nspname, t.typname, t.typtype, \
                CASE WHEN t.typbasetype <> 0 THEN format_type(t.typbasetype, t.typtypmod) ELSE '' END, \
                (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e \
                  WHERE e.enumtypid = t.oid)) \
           FROM pg_type t JOIN ns ON ns.oid = t.typnamespace WHERE t.typtype IN ('e','d','r','m') \
         UNION ALL \
         SELECT 'policies', format('%s.%s %s cmd=%s permissive=%s using=%s check=%s', ns.nspname, c.relname, \
                p.polname, p.polcmd, p.polpermissive, coalesce(pg_get_expr(p.polqual, p.polrelid), ''), \
                coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')) \
           FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN ns ON ns.oid = c.relnamespace \
         UNION ALL \
         SELECT 'extensions', format('%s schema=%s', e.extname, n.nspname) \
           FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql'"
    )
}

/// The schema's fingerprint: for each kind of object (`tables`, `columns`, `indexes`...),
/// the SHA-256 of its sorted lines. Kinds with no objects are absent.
///
/// Errors: `Database` when the catalogs cannot be read.
pub async fn schema_fingerprint(conn: &mut PgConnection) -> Result<BTreeMap<String, String>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(fingerprint_query())).fetch_all(&mut *conn).await?;
    let mut lines: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows {
        let kind: String = row.get(0);
        let line: Option<String> = row.get(1);
        lines.entry(kind).or_default().push(line.unwrap_or_default());
    }
    Ok(lines
        .into_iter()
        .map(|(kind, mut lines)| {
            lines.sort_unstable();
            let mut hash = Sha256::new();
            for line in &lines {
                hash.update(line.as_bytes());
                hash.update(b"\n");
            }
            (kind, hex::encode(hash.finalize()))
        })
        .collect())
}

/// The kinds whose hashes differ between a recorded fingerprint and an actual one.
pub fn fingerprint_differences(expected: &BTreeMap<String, String>, actual: &BTreeMap<String, String>) -> Vec<String> {
    let kinds: std::collections::BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    kinds.into_iter().filter(|k| expected.get(*k) != actual.get(*k)).cloned().collect()
}

/// The roles this database's objects refer to (owners, grantees, policy roles, default
/// privileges), plus the database owner and the bootstrap superuser (whose ownerships are
/// not tracked). Built-in `pg_*` roles are left out: every cluster has them.
///
/// Errors: `Database` when the catalogs cannot be read.
pub async fn referenced_roles(conn: &mut PgConnection) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT r.rolname::text FROM pg_roles r WHERE r.oid IN ( \
             SELECT refobjid FROM pg_shdepend \
              WHERE refclassid = 'pg_authid'::regclass \
                AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             UNION SELECT datdba FROM pg_database WHERE datname = current_database() \
             UNION SELECT 10::oid) \
           AND r.rolname NOT LIKE 'pg\\_%' ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await?)
}

/// The connected role: its name, whether it is a superuser, and which of `among` it is a
/// member of (directly or through other roles).
///
/// Errors: `Database`.
pub async fn connected_role(conn: &mut PgConnection, among: &[String]) -> Result<crate::repo::manifest::RoleInfo> {
    let (name, superuser): (String, bool) =
        sqlx::query_as("SELECT rolname::text, rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut *conn)
            .await?;
    let member_of: Vec<String> = sqlx::query_scalar(
        "SELECT r FROM unnest($1::text[]) AS r \
          WHERE r <> current_user AND pg_has_role(current_user, r::name, 'MEMBER') ORDER BY 1",
    )
    .bind(among)
    .fetch_all(&mut *conn)
    .await?;
    Ok(crate::repo::manifest::RoleInfo { name, superuser, member_of })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_every_kind_that_changed_appeared_or_vanished() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let expected = map(&[("columns", "a"), ("indexes", "b"), ("triggers", "c")]);
        let actual = map(&[("columns", "a"), ("indexes", "x"), ("views", "d")]);
        assert_eq!(fingerprint_differences(&expected, &actual), vec!["indexes", "triggers", "views"]);
        assert!(fingerprint_differences(&expected, &expected).is_empty());
    }
}
