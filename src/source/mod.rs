//! Reading a workspace: its Postgres database (schema through pg_dump, data through COPY, all
//! inside one exported transaction snapshot) and the content digests that let a restore or a
//! drill prove it got back exactly what was read.

pub mod copy;
pub mod digest;
pub mod fingerprint;
pub mod media;
pub mod media_backup;
pub mod postgres;
