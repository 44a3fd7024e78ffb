//! The ScyllaDB backend of the metadata seam — its groundwork: the
//! `metadata_url` (`config`), the schema and every statement (`cql`), and the decisions taken from what a
//! conditional write or a SERIAL read answered (`decide`), as pure
//! functions tested alone and under random interleavings.
//!
//! The driver side (connecting, preparing, executing, reading back) builds
//! on these; docs/design/0008-scylla-schema.md is the plan, with the
//! conditional writes every seam operation costs.

pub mod config;
pub mod cql;
pub mod decide;
pub mod session;

pub use config::ScyllaConfig;
