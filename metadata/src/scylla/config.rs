//! `metadata_url = "scylla://[user[:password]@]host[:port][,host[:port]…]/keyspace[?option=value&…]"`:
//! where the ScyllaDB backend connects, and how.
//!
//! Options: `dc` (the local datacenter, for routing), `consistency`
//! (`quorum`, default, or `local_quorum`), `serial_consistency` (`serial`,
//! default, or `local_serial`), `request_timeout_ms` (default 5,000),
//! `replication` (`simple:<rf>` or `network:<dc>=<rf>[;<dc>=<rf>…]`, used
//! when the broker creates the keyspace; default `simple:1`, a single dev
//! node), `tls_ca_file` (TLS with this CA). The password may also come from
//! the environment or a file (Kubernetes secrets); the broker's settings
//! decide, this module only parses the URL.
//!
//! **Why SERIAL, not the driver's LOCAL_SERIAL.** Fencing is only as good as
//! the linearizability of the conditional writes behind it. LOCAL_SERIAL
//! runs Paxos among one datacenter's replicas: two brokers in two
//! datacenters could both win a claim of the same partition, and both
//! commit — acknowledged records lost. SERIAL runs it among all replicas.
//! With every broker and replica in one datacenter the two are the same
//! and `local_serial` saves nothing but is allowed; across datacenters only
//! SERIAL is safe. The same holds for QUORUM against LOCAL_QUORUM for the
//! reads that follow a conditional write.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScyllaConfig {
    /// `host:port`, at least one.
    pub contact_points: Vec<String>,
    pub keyspace: String,
    pub local_datacenter: Option<String>,
    pub consistency: Consistency,
    pub serial_consistency: SerialConsistency,
    pub request_timeout_ms: u64,
    pub replication: Replication,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls_ca_file: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    Quorum,
    LocalQuorum,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SerialConsistency {
    Serial,
    LocalSerial,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replication {
    /// SimpleStrategy: one datacenter, for a dev node.
    Simple { replication_factor: u32 },
    /// NetworkTopologyStrategy: replicas per datacenter (production: 3).
    Network { datacenters: Vec<(String, u32)> },
}

impl Replication {
    /// The map for `CREATE KEYSPACE … WITH replication = …`.
    pub fn cql(&self) -> String {
        match self {
            Replication::Simple { replication_factor } => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}")
            }
            Replication::Network { datacenters } => {
                let dcs: Vec<String> = datacenters
                    .iter()
                    .map(|(dc, rf)| format!("'{dc}': {rf}"))
                    .collect();
                format!("{{'class': 'NetworkTopologyStrategy', {}}}", dcs.join(", "))
            }
        }
    }
}

pub const DEFAULT_PORT: u16 = 9042;
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 5_000;

/// A `metadata_url` that cannot be used, with what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlError(pub String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "metadata_url: {}", self.0)
    }
}

impl std::error::Error for UrlError {}

fn err<T>(what: impl Into<String>) -> Result<T, UrlError> {
    Err(UrlError(what.into()))
}

/// A CQL identifier we accept unquoted: a letter, then letters, digits and
/// underscores, at most 48 characters (ScyllaDB's limit for keyspaces).
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 48
}

impl ScyllaConfig {
    pub fn from_url(url: &str) -> Result<ScyllaConfig, UrlError> {
        let Some(rest) = url.strip_prefix("scylla://") else {
            return err(format!("{url:?} does not start with scylla://"));
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let Some((authority, keyspace)) = rest.split_once('/') else {
            return err("no keyspace: scylla://host:9042/<keyspace>");
        };
        if !is_identifier(keyspace) {
            return err(format!(
                "keyspace {keyspace:?} must be a letter then letters, digits or _ (at most 48)"
            ));
        }
        let (credentials, hosts) = match authority.rsplit_once('@') {
            Some((credentials, hosts)) => (Some(credentials), hosts),
            None => (None, authority),
        };
        let (username, password) = match credentials {
            None => (None, None),
            Some(c) => match c.split_once(':') {
                Some((user, password)) => (Some(user.to_string()), Some(password.to_string())),
                None => (Some(c.to_string()), None),
            },
        };
        let mut contact_points = Vec::new();
        for host in hosts.split(',') {
            let (name, port) = match host.rsplit_once(':') {
                Some((name, port)) => match port.parse::<u16>() {
                    Ok(port) if port > 0 => (name, port),
                    _ => return err(format!("port {port:?} of {host:?} is not a port")),
                },
                None => (host, DEFAULT_PORT),
            };
            if name.is_empty() {
                return err(format!("empty host in {hosts:?}"));
            }
            contact_points.push(format!("{name}:{port}"));
        }
        let mut config = ScyllaConfig {
            contact_points,
            keyspace: keyspace.to_string(),
            local_datacenter: None,
            consistency: Consistency::Quorum,
            serial_consistency: SerialConsistency::Serial,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            replication: Replication::Simple {
                replication_factor: 1,
            },
            username,
            password,
            tls_ca_file: None,
        };
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            let Some((name, value)) = pair.split_once('=') else {
                return err(format!("option {pair:?} is not name=value"));
            };
            config.set(name, value)?;
        }
        Ok(config)
    }

    fn set(&mut self, name: &str, value: &str) -> Result<(), UrlError> {
        match name {
            "dc" => self.local_datacenter = Some(value.to_string()),
            "consistency" => {
                self.consistency = match value {
                    "quorum" => Consistency::Quorum,
                    "local_quorum" => Consistency::LocalQuorum,
                    _ => return err(format!("consistency={value}: quorum or local_quorum")),
                }
            }
            "serial_consistency" => {
                self.serial_consistency = match value {
                    "serial" => SerialConsistency::Serial,
                    "local_serial" => SerialConsistency::LocalSerial,
                    _ => {
                        return err(format!(
                            "serial_consistency={value}: serial or local_serial"
                        ));
                    }
                }
            }
            "request_timeout_ms" => {
                self.request_timeout_ms = match value.parse::<u64>() {
                    Ok(ms) if ms > 0 => ms,
                    _ => return err(format!("request_timeout_ms={value}: a positive number")),
                }
            }
            "replication" => self.replication = parse_replication(value)?,
            "tls_ca_file" => self.tls_ca_file = Some(value.to_string()),
            _ => {
                return err(format!(
                    "unknown option {name:?} (dc, consistency, serial_consistency, \
                     request_timeout_ms, replication, tls_ca_file)"
                ));
            }
        }
        Ok(())
    }
}

fn parse_replication(value: &str) -> Result<Replication, UrlError> {
    let factor = |rf: &str| match rf.parse::<u32>() {
        Ok(rf) if rf > 0 => Ok(rf),
        _ => err(format!(
            "replication factor {rf:?} must be a positive number"
        )),
    };
    if let Some(rf) = value.strip_prefix("simple:") {
        return Ok(Replication::Simple {
            replication_factor: factor(rf)?,
        });
    }
    if let Some(dcs) = value.strip_prefix("network:") {
        let mut datacenters = Vec::new();
        for dc in dcs.split(';') {
            let Some((name, rf)) = dc.split_once('=') else {
                return err(format!("replication {dc:?}: <dc>=<rf>"));
            };
            // It goes into a CQL string literal: letters, digits, - and _ only.
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
            {
                return err(format!(
                    "datacenter name {name:?}: letters, digits, - and _"
                ));
            }
            datacenters.push((name.to_string(), factor(rf)?));
        }
        return Ok(Replication::Network { datacenters });
    }
    err(format!(
        "replication={value}: simple:<rf> or network:<dc>=<rf>[;<dc>=<rf>…]"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_url_sets_every_field() {
        let c = ScyllaConfig::from_url(
            "scylla://ls:s3cret@10.0.0.1:9142,10.0.0.2,db-3:19042/lightstream\
             ?dc=eu1&consistency=local_quorum&serial_consistency=local_serial\
             &request_timeout_ms=2500&replication=network:eu1=3;us2=3&tls_ca_file=/etc/ca.pem",
        )
        .expect("valid");
        assert_eq!(
            c.contact_points,
            ["10.0.0.1:9142", "10.0.0.2:9042", "db-3:19042"]
        );
        assert_eq!(c.keyspace, "lightstream");
        assert_eq!(c.local_datacenter.as_deref(), Some("eu1"));
        assert_eq!(c.consistency, Consistency::LocalQuorum);
        assert_eq!(c.serial_consistency, SerialConsistency::LocalSerial);
        assert_eq!(c.request_timeout_ms, 2500);
        assert_eq!(
            c.replication.cql(),
            "{'class': 'NetworkTopologyStrategy', 'eu1': 3, 'us2': 3}"
        );
        assert_eq!(c.username.as_deref(), Some("ls"));
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert_eq!(c.tls_ca_file.as_deref(), Some("/etc/ca.pem"));
    }

    #[test]
    fn defaults_are_serial_quorum_and_one_simple_replica() {
        let c = ScyllaConfig::from_url("scylla://localhost/ls").expect("valid");
        assert_eq!(c.contact_points, ["localhost:9042"]);
        assert_eq!(c.consistency, Consistency::Quorum);
        assert_eq!(c.serial_consistency, SerialConsistency::Serial);
        assert_eq!(c.request_timeout_ms, DEFAULT_REQUEST_TIMEOUT_MS);
        assert_eq!(
            c.replication.cql(),
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        assert_eq!((c.username, c.password, c.tls_ca_file), (None, None, None));
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, says) in [
            ("cassandra://h/ks", "scylla://"),
            ("scylla://h", "no keyspace"),
            ("scylla://h/1ks", "keyspace"),
            ("scylla://h/ks;drop", "keyspace"),
            ("scylla://h:0/ks", "not a port"),
            ("scylla://h:x/ks", "not a port"),
            ("scylla://,h/ks", "empty host"),
            ("scylla://h/ks?consistency=one", "quorum or local_quorum"),
            (
                "scylla://h/ks?serial_consistency=one",
                "serial or local_serial",
            ),
            ("scylla://h/ks?request_timeout_ms=0", "positive"),
            ("scylla://h/ks?replication=simple:0", "positive"),
            ("scylla://h/ks?replication=everywhere", "simple:<rf>"),
            ("scylla://h/ks?retries=3", "unknown option"),
            ("scylla://h/ks?dc", "name=value"),
            (
                "scylla://h/ks?replication=network:eu'1=3",
                "datacenter name",
            ),
        ] {
            let e = ScyllaConfig::from_url(url).expect_err(url);
            assert!(e.to_string().contains(says), "{url}: {e}");
        }
    }
}
