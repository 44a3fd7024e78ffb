//! The Lightstream broker: settings, the accept loop and connections, one
//! handler per Kafka API, and the one place internal errors become Kafka
//! error codes (`errors`). The `lightstream` binary (`main.rs`) wires these
//! together; tests drive them directly.

pub mod admin;
pub mod authorized_operations;
pub mod broker;
pub mod cluster;
pub mod compaction;
pub mod config;
pub mod configs;
pub mod connection;
pub mod errors;
pub mod groups;
pub mod handlers;
pub mod metrics;
pub mod producer_ids;
pub mod record_checks;
pub mod retention;
pub mod server;
pub mod topics;
