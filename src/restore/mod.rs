//! Writing a workspace back: creating or checking the target database, applying schema SQL
//! with psql, loading tables with `COPY FROM`, setting sequences, refreshing materialized
//! views. Every byte fed to Postgres comes from a verified object stream.

pub mod copytext;
pub mod database;
pub mod load;
pub mod media;
pub mod media_swap;
pub mod postdata;
pub mod tables;
