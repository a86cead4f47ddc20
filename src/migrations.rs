//! Migrations embedded in the binary (migrations/workspace and migrations/catalog), so a
//! tidemark binary never depends on files beside it. sqlx's `Migrator` applies them.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationSource, MigrationType};

/// One migration: version, description, SQL text.
pub type EmbeddedMigration = (i64, &'static str, &'static str);

/// A fixed list of embedded migrations, as a sqlx migration source.
#[derive(Debug, Clone, Copy)]
pub struct Embedded(pub &'static [EmbeddedMigration]);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> futures::future::BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        sqlx::SqlSafeStr::into_sql_str(*sql),
                        // A migration that must run outside a transaction (one that turns
                        // foreign keys off to make a table again) says so on its first line.
                        sql.starts_with("-- no-transaction"),
                    )
                })
                .collect())
        })
    }
}
