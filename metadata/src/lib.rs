//! Lightstream's metadata: the model (typed ids with Kafka's names) and the
//! `MetadataStore` seam with its backends. The broker and the log depend on the
//! trait only; which backend runs is chosen by configuration.
//!
//! This crate does no object I/O and knows nothing of the Kafka wire protocol.

pub mod commit_rules;
pub mod contract;
pub mod counting;
pub mod model;
pub mod scylla;
pub mod sqlite;
pub mod store;

pub use model::*;
pub use sqlite::SqliteStore;
pub use store::{
    ClusterStore, Error, ErrorKind, GroupStore, LogStore, MetadataStore, Result, TopicStore,
};
