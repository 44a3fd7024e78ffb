//! The ScyllaDB backend of the metadata seam — its groundwork (issue 12):
//!
//! - `config`: the `metadata_url` and its settings;
//! - `cql`: the schema and every statement, pinned in `statements.cql`;
//! - `decide`: what to do with an LWT's answer or a SERIAL read-back, as
//!   pure functions tested alone and under random interleavings;
//! - `entry`: a journal entry's bytes;
//! - `rewrite`: what a retention cut or an index swap writes, and the
//!   logical write times that order index changes (design 0009);
//! - `session`: the driver session, schema creation and prepared statements.
//!
//! The `MetadataStore` implementation on top (`store`, `log`, `topics`,
//! `registry`, `groups`, `index_rewrites`) follows
//! docs/design/0008-scylla-schema.md, with the conditional writes every
//! seam operation costs.

pub mod apply;
pub mod config;
pub mod cql;
pub mod decide;
pub mod entry;
pub mod exec;
mod failures;
mod groups;
mod index_rewrites;
mod log;
mod registry;
pub mod rewrite;
pub mod session;
pub mod store;
#[cfg(test)]
mod test_server;
mod topics;

pub use config::ScyllaConfig;
