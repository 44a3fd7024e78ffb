//! The driver side of the ScyllaDB backend: a session built from
//! `ScyllaConfig`, the keyspace and tables created if absent, and every
//! statement of `cql` prepared once with what its kind implies —
//! idempotence (the driver retries and speculates only idempotent ones),
//! and SERIAL consistency for the conditional writes and serial reads.

use std::collections::HashMap;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};

use super::config::{self, ScyllaConfig};
use super::cql::{self, Kind, Statement};
use super::exec::StatementStats;
use crate::store::{Error, Result};

/// A connected session with every statement prepared.
pub struct Cql {
    session: Session,
    prepared: HashMap<&'static str, PreparedStatement>,
    serial: SerialConsistency,
    stats: StatementStats,
}

impl std::fmt::Debug for Cql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cql")
            .field("prepared", &self.prepared.len())
            .finish_non_exhaustive()
    }
}

fn backend(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Backend(format!("scylla {what}: {e}"))
}

fn consistency(c: config::Consistency) -> Consistency {
    match c {
        config::Consistency::Quorum => Consistency::Quorum,
        config::Consistency::LocalQuorum => Consistency::LocalQuorum,
    }
}

fn serial_consistency(c: config::SerialConsistency) -> SerialConsistency {
    match c {
        config::SerialConsistency::Serial => SerialConsistency::Serial,
        config::SerialConsistency::LocalSerial => SerialConsistency::LocalSerial,
    }
}

impl Cql {
    /// Connects, creates the keyspace and the tables when absent, and
    /// prepares every statement.
    pub async fn connect(config: &ScyllaConfig) -> Result<Cql> {
        let session = open(config, true).await?;
        create_schema(&session, config, &cql::ALL.iter().collect::<Vec<_>>()).await?;
        let statements: Vec<&Statement> =
            cql::ALL.iter().filter(|s| s.kind != Kind::Schema).collect();
        Cql::prepare_all(session, config, &statements).await
    }

    /// Prepares `statements` on `session` (every non-schema statement in
    /// production; tests leave out what their server cannot parse).
    pub(crate) async fn prepare_all(
        session: Session,
        config: &ScyllaConfig,
        statements: &[&Statement],
    ) -> Result<Cql> {
        let serial = serial_consistency(config.serial_consistency);
        let mut prepared = HashMap::new();
        for statement in statements {
            prepared.insert(
                statement.name,
                prepare(&session, statement, &config.keyspace, serial).await?,
            );
        }
        Ok(Cql {
            session,
            prepared,
            serial,
            stats: StatementStats::default(),
        })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// SERIAL or LOCAL_SERIAL, as configured: what conditional writes use.
    pub fn serial_consistency(&self) -> SerialConsistency {
        self.serial
    }

    /// Statement counts and latencies, by kind.
    pub fn stats(&self) -> &StatementStats {
        &self.stats
    }

    /// The prepared form of `statement`: every statement is prepared at
    /// connect (a test session on a server that cannot hold the whole
    /// schema prepares fewer).
    pub fn prepared(&self, statement: &Statement) -> Result<&PreparedStatement> {
        self.prepared.get(statement.name).ok_or_else(|| {
            Error::Backend(format!(
                "scylla: statement {} is not prepared",
                statement.name
            ))
        })
    }
}

/// A session with our execution profile. `await_schema_agreement` is off
/// only for servers that do not report schema versions (the in-process
/// test server).
pub(crate) async fn open(config: &ScyllaConfig, await_schema_agreement: bool) -> Result<Session> {
    let profile = ExecutionProfile::builder()
        .consistency(consistency(config.consistency))
        .serial_consistency(Some(serial_consistency(config.serial_consistency)))
        .request_timeout(Some(Duration::from_millis(config.request_timeout_ms)))
        .build()
        .into_handle();
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.contact_points)
        .default_execution_profile_handle(profile)
        .auto_await_schema_agreement(await_schema_agreement);
    if let Some(user) = &config.username {
        builder = builder.user(user, config.password.clone().unwrap_or_default());
    }
    if let Some(ca_file) = &config.tls_ca_file {
        builder = builder.tls_context(Some(tls_config(ca_file)?));
    }
    builder.build().await.map_err(|e| backend("connect", e))
}

/// TLS to ScyllaDB with rustls, trusting only the CA certificates in
/// `ca_file` (PEM). The node's certificate must name the address the
/// broker connects to (a DNS name or an IP address SAN).
pub(crate) fn tls_config(ca_file: &str) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let tls = |what: String| Error::Backend(format!("scylla tls_ca_file {ca_file}: {what}"));
    let mut roots = rustls::RootCertStore::empty();
    let certificates =
        CertificateDer::pem_file_iter(ca_file).map_err(|e| tls(format!("cannot read it: {e}")))?;
    for certificate in certificates {
        let certificate = certificate.map_err(|e| tls(format!("not PEM: {e}")))?;
        roots
            .add(certificate)
            .map_err(|e| tls(format!("not a CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(tls("holds no certificate".into()));
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

/// Creates the keyspace and, of `statements`, the tables (schema ones).
pub(crate) async fn create_schema(
    session: &Session,
    config: &ScyllaConfig,
    statements: &[&Statement],
) -> Result<()> {
    let keyspace = &config.keyspace;
    session
        .query_unpaged(
            cql::create_keyspace(keyspace, &config.replication.cql()),
            (),
        )
        .await
        .map_err(|e| backend("create keyspace", e))?;
    for statement in statements.iter().filter(|s| s.kind == Kind::Schema) {
        session
            .query_unpaged(cql::text(statement, keyspace), ())
            .await
            .map_err(|e| backend(statement.name, e))?;
    }
    Ok(())
}

/// Prepares one statement with the flags its kind implies.
pub async fn prepare(
    session: &Session,
    statement: &Statement,
    keyspace: &str,
    serial: SerialConsistency,
) -> Result<PreparedStatement> {
    let mut prepared = session
        .prepare(cql::text(statement, keyspace))
        .await
        .map_err(|e| backend(&format!("prepare {}", statement.name), e))?;
    prepared.set_is_idempotent(statement.kind.idempotent());
    if statement.kind == Kind::SerialRead {
        // A read at SERIAL (or LOCAL_SERIAL) consistency runs Paxos: it
        // completes a conditional write in flight before answering.
        prepared.set_consistency(match serial {
            SerialConsistency::Serial => Consistency::Serial,
            SerialConsistency::LocalSerial => Consistency::LocalSerial,
        });
    }
    Ok(prepared)
}

#[cfg(test)]
mod tests;
