//! Broker settings: plain data, loaded with figment from, in rising order of
//! precedence, built-in defaults → `lightstream.toml` (or `--config FILE`) →
//! `LIGHTSTREAM_*` environment variables → command-line flags.
//!
//! Every setting is listed in `docs/configuration.md`; keep the two in step.
//! Settings whose Kafka counterpart exists say its name in their doc line.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Provider};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Kafka `node.id`: this broker's id in Metadata answers.
    pub node_id: i32,
    /// Address the Kafka listener binds.
    pub listen: String,
    /// Host clients are told to connect to (Kafka `advertised.listeners`).
    /// Defaults to the listen host, or `localhost` when listening on all interfaces.
    pub advertised_host: Option<String>,
    /// Port clients are told to connect to. Defaults to the bound port.
    pub advertised_port: Option<u16>,
    /// Where objects and the embedded metadata file live.
    pub data_dir: PathBuf,
    /// Kafka `auto.create.topics.enable`: Metadata requests create unknown topics.
    pub auto_create_topics: bool,
    /// Most topics the cluster holds; creating more is refused with
    /// POLICY_VIOLATION (auto-creation too). Every broker keeps every
    /// topic's state in memory, so this bounds that memory.
    pub max_topics: usize,
    /// Most partitions the cluster holds, over all topics (POLICY_VIOLATION
    /// beyond, like Kafka's per-request cap).
    pub max_partitions: usize,
    /// Kafka `num.partitions`: partitions of auto-created topics and of
    /// CreateTopics with `num_partitions = -1`.
    pub num_partitions: i32,
    /// Kafka `message.max.bytes`: the largest record batch a topic accepts
    /// unless its `max.message.bytes` says otherwise.
    pub message_max_bytes: i32,
    /// Kafka `socket.request.max.bytes`: frames above it close the connection.
    pub socket_request_max_bytes: usize,
    /// Kafka `max.connections`: connections beyond it wait in the accept backlog.
    pub max_connections: usize,
    /// Kafka `queued.max.request.bytes`: bytes of requests read but not yet
    /// answered, across all connections. When reached, connections stop
    /// reading until answers go out. At least `socket_request_max_bytes`.
    pub queued_max_request_bytes: usize,
    /// Kafka `connections.max.idle.ms`: a connection with no request in
    /// flight that sends nothing for this long is closed.
    pub connections_max_idle_ms: u64,
    /// Longest a request may take to arrive once its first byte has: a
    /// client that starts a frame and stalls (slowloris) is closed. Twice
    /// the clients' default `request.timeout.ms`, by which time they have
    /// given up on the request anyway.
    pub request_read_timeout_ms: u64,
    /// Longest one answer may take to be written: a client that does not
    /// read its answers (holding their memory) is closed after it.
    pub response_write_timeout_ms: u64,
    /// Kafka `max.connections.per.ip`: connections from one address beyond
    /// it are closed as soon as they are accepted.
    pub max_connections_per_ip: usize,
    /// Bytes of Fetch answers read but not yet written to their clients,
    /// across all connections (clients that ask for much and never read).
    /// A fetch that finds it short gets a smaller share, down to 1 MiB and
    /// always at least one batch.
    pub fetch_response_buffer_max_bytes: usize,
    /// Requests of one connection read ahead of their responses. Reading
    /// stops when reached, which pushes back on a client that pipelines.
    pub max_in_flight_requests_per_connection: usize,
    /// Longest a produced batch waits before its flush starts.
    pub flush_interval_ms: u64,
    /// A flush starts once this many bytes are buffered.
    pub flush_max_bytes: usize,
    /// Bound on produced bytes held in memory; produce waits when reached.
    pub flush_buffer_max_bytes: usize,
    /// Bytes of recent objects kept in memory for consumers at the tail.
    pub tail_cache_max_bytes: usize,
    /// Bytes of older data read from the object store kept for re-reads
    /// (lagging consumers, several groups reading the same data).
    pub block_cache_max_bytes: usize,
    /// Kafka `fetch.max.bytes`: upper bound on one Fetch answer.
    pub fetch_max_bytes: i32,
    /// Where the log's objects live: empty for `data_dir/objects`, or
    /// `s3://bucket/prefix` for an S3-compatible object store.
    pub storage_url: String,
    /// Where the metadata lives: empty for the embedded file
    /// `data_dir/metadata.sqlite`, or
    /// `scylla://[user[:password]@]host:port[,host:port…]/keyspace[?options]`
    /// for ScyllaDB (docs/configuration.md lists the options).
    pub metadata_url: String,
    /// ScyllaDB user name; empty: the URL's.
    pub metadata_username: String,
    /// ScyllaDB password; empty: `metadata_password_file`'s, or the URL's.
    pub metadata_password: String,
    /// A file holding the ScyllaDB password (a mounted Kubernetes secret);
    /// a trailing newline is ignored.
    pub metadata_password_file: String,
    /// S3 endpoint URL (`http://127.0.0.1:9000`); empty for AWS's own.
    pub s3_endpoint: String,
    pub s3_region: String,
    /// Bucket in the path, not the host name (local servers, Ceph RGW).
    pub s3_path_style: bool,
    /// Static credentials; both empty: the AWS SDK's default chain
    /// (AWS_* environment variables, profile, instance metadata).
    pub s3_access_key_id: String,
    pub s3_secret_access_key: String,
    /// `when_supported` (AWS, modern servers) or `when_required` (older
    /// servers such as Ceph RGW 16).
    pub s3_checksum: String,
    /// Per-attempt timeout of one S3 request.
    pub s3_request_timeout_ms: u64,
    /// Attempts per S3 request (jittered exponential backoff between them).
    pub s3_max_attempts: u32,
    /// S3 requests in flight at once.
    pub s3_max_concurrent_requests: usize,
    /// How often the S3 request counters are logged ("s3 stats" lines).
    pub s3_stats_interval_ms: u64,
    /// Objects bigger than this are written as multipart uploads in parts
    /// of this size (at least 5 MiB, S3's minimum part).
    pub s3_part_size_bytes: usize,
    /// Parts of one multipart upload in flight at once.
    pub s3_max_parts_in_flight: usize,
    /// Multipart uploads under our prefix older than this are aborted (a
    /// crash mid-upload leaves them, and they cost storage). Must exceed
    /// `object_write_timeout_ms`.
    pub s3_stale_upload_age_ms: u64,
    /// How often the stale-upload sweep runs (also once at start-up).
    pub s3_stale_upload_sweep_interval_ms: u64,
    /// Flushes whose objects may be written at once (commits stay in order).
    /// More hides upload latency (S3); each holds its object in memory,
    /// within `flush_buffer_max_bytes`.
    pub max_flushes_in_flight: usize,
    /// Longest an object write may take before its flush fails (retriable).
    pub object_write_timeout_ms: u64,
    /// How often unreferenced objects are looked for (a full listing of the
    /// store: one LIST request per 1,000 objects).
    pub object_gc_interval_ms: u64,
    /// An object is deleted once it is older than this and has been seen
    /// unreferenced for this long. Must exceed the longest write plus commit
    /// and the longest read.
    pub object_gc_grace_ms: u64,
    /// Kafka `producer.id.expiration.ms`: an idempotent producer's state on a
    /// partition is forgotten this long after its last write there.
    pub producer_id_expiration_ms: i64,
    /// Kafka `producer.id.expiration.check.interval.ms`.
    pub producer_id_expiration_check_interval_ms: u64,
    /// Kafka `group.initial.rebalance.delay.ms`: a new group's first
    /// rebalance waits this long for more members.
    pub group_initial_rebalance_delay_ms: i64,
    /// Kafka `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    /// Kafka `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: i32,
    /// Kafka `offsets.retention.minutes`: offsets of an empty group expire
    /// this long after it became empty.
    pub offsets_retention_minutes: i64,
    /// Kafka `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
    /// Kafka `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// How long shutdown waits for in-flight requests before giving up on them.
    pub shutdown_timeout_ms: u64,
    /// Kafka `broker.rack`: reported in Metadata and DescribeCluster.
    pub broker_rack: Option<String>,
    /// Kafka `broker.session.timeout.ms`: a broker that has not renewed its
    /// lease for this long is taken for dead; its partitions and groups
    /// move to live brokers. Also how long a restarted broker may wait for
    /// its previous process's lease (same node id) to lapse.
    pub broker_session_timeout_ms: u64,
    /// Kafka `broker.heartbeat.interval.ms`: how often the lease is renewed.
    pub broker_heartbeat_interval_ms: u64,
    /// How often each broker looks at the cluster version (one small read)
    /// to learn of other brokers' admin changes, claims and releases, and
    /// at the registry for lapsed leases.
    pub cluster_watch_interval_ms: u64,
    /// Longest a partition being handed over waits for its queued produces
    /// to commit before it is released.
    pub partition_handover_drain_ms: u64,
    /// Log filter, in `tracing_subscriber::EnvFilter` syntax (`info`, `broker=debug`).
    pub log: String,
    /// `plain` or `json`.
    pub log_format: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            node_id: 1,
            listen: "127.0.0.1:9092".to_string(),
            advertised_host: None,
            advertised_port: None,
            data_dir: PathBuf::from("lightstream-data"),
            auto_create_topics: true,
            num_partitions: 1,
            max_topics: 10_000,
            max_partitions: 100_000,
            message_max_bytes: 1_048_588,
            socket_request_max_bytes: protocol::frame::DEFAULT_MAX_FRAME_BYTES,
            max_connections: 1_000,
            queued_max_request_bytes: 512 * 1024 * 1024,
            max_in_flight_requests_per_connection: 16,
            connections_max_idle_ms: 600_000,
            request_read_timeout_ms: 60_000,
            response_write_timeout_ms: 120_000,
            max_connections_per_ip: i32::MAX as usize,
            fetch_response_buffer_max_bytes: 256 * 1024 * 1024,
            flush_interval_ms: 2,
            flush_max_bytes: 8 * 1024 * 1024,
            flush_buffer_max_bytes: 64 * 1024 * 1024,
            tail_cache_max_bytes: 64 * 1024 * 1024,
            block_cache_max_bytes: 64 * 1024 * 1024,
            fetch_max_bytes: 55 * 1024 * 1024,
            storage_url: String::new(),
            metadata_url: String::new(),
            metadata_username: String::new(),
            metadata_password: String::new(),
            metadata_password_file: String::new(),
            s3_endpoint: String::new(),
            s3_region: "us-east-1".to_string(),
            s3_path_style: false,
            s3_access_key_id: String::new(),
            s3_secret_access_key: String::new(),
            s3_checksum: "when_supported".to_string(),
            s3_request_timeout_ms: 5_000,
            s3_max_attempts: 4,
            s3_max_concurrent_requests: 64,
            s3_stats_interval_ms: 60_000,
            s3_part_size_bytes: 16 * 1024 * 1024,
            s3_max_parts_in_flight: 8,
            s3_stale_upload_age_ms: 3_600_000,
            s3_stale_upload_sweep_interval_ms: 3_600_000,
            max_flushes_in_flight: 4,
            object_write_timeout_ms: 30_000,
            object_gc_interval_ms: 600_000,
            object_gc_grace_ms: 3_600_000,
            producer_id_expiration_ms: 86_400_000,
            producer_id_expiration_check_interval_ms: 600_000,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            offsets_retention_minutes: 10_080,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4_096,
            shutdown_timeout_ms: 30_000,
            broker_rack: None,
            broker_session_timeout_ms: 9_000,
            broker_heartbeat_interval_ms: 2_000,
            cluster_watch_interval_ms: 200,
            partition_handover_drain_ms: 5_000,
            log: "info".to_string(),
            log_format: "plain".to_string(),
        }
    }
}

/// Command-line flags; each overrides the setting of the same name.
#[derive(Debug, Default, clap::Parser, Serialize)]
#[command(
    name = "lightstream",
    version,
    about = "A Kafka-compatible broker whose log lives in object storage"
)]
pub struct Flags {
    /// A TOML settings file (default: ./lightstream.toml when present).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<i32>,
    /// Address to bind, e.g. 127.0.0.1:9092.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_host: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_port: Option<u16>,
    /// Directory for objects and the embedded metadata file.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_create_topics: Option<bool>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_partitions: Option<i32>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_interval_ms: Option<u64>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl Settings {
    /// Loads settings from every source, in order of precedence.
    pub fn load(flags: &Flags) -> Result<Settings, SettingsError> {
        let file = flags
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("lightstream.toml"));
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if flags.config.is_some() || file.exists() {
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only variables naming a setting: LIGHTSTREAM_BIN and friends belong to tools.
        let known = setting_names();
        let env = Env::prefixed("LIGHTSTREAM_")
            .filter(move |key| known.iter().any(|k| key.as_str().eq_ignore_ascii_case(k)))
            .split("__");
        let settings: Settings = figment
            .merge(env)
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |name, reason: &str| {
            Err(SettingsError::Invalid {
                name,
                reason: reason.to_string(),
            })
        };
        if self.listen.parse::<SocketAddr>().is_err() {
            return invalid("listen", "must be an ip:port address");
        }
        if self.num_partitions < 1 {
            return invalid("num_partitions", "must be at least 1");
        }
        if self.max_topics == 0 || self.max_partitions == 0 {
            return invalid(
                "max_partitions",
                "topic and partition limits must be at least 1",
            );
        }
        if !self.metadata_url.is_empty()
            && let Err(e) = metadata::scylla::ScyllaConfig::from_url(&self.metadata_url)
        {
            return invalid(
                "metadata_url",
                &format!("must be empty (embedded file) or scylla://hosts/keyspace: {e}"),
            );
        }
        if !self.metadata_password.is_empty() && !self.metadata_password_file.is_empty() {
            return invalid(
                "metadata_password_file",
                "set either metadata_password or metadata_password_file, not both",
            );
        }
        if !self.storage_url.is_empty() && !self.storage_url.starts_with("s3://") {
            return invalid(
                "storage_url",
                "must be empty (local directory) or s3://bucket/prefix",
            );
        }
        if !matches!(
            self.s3_checksum.as_str(),
            "when_supported" | "when_required"
        ) {
            return invalid("s3_checksum", "must be when_supported or when_required");
        }
        if self.s3_part_size_bytes < storage::MIN_PART_SIZE {
            return invalid("s3_part_size_bytes", "must be at least 5 MiB (5242880)");
        }
        if self.s3_stale_upload_age_ms <= self.object_write_timeout_ms {
            return invalid(
                "s3_stale_upload_age_ms",
                "must exceed object_write_timeout_ms, or uploads in progress are aborted",
            );
        }
        let metadata_timeout_ms = storage::LogConfig::default().metadata_timeout_ms;
        if self.object_gc_grace_ms < MIN_OBJECT_GC_GRACE_MS
            || self.object_gc_grace_ms
                <= self
                    .object_write_timeout_ms
                    .saturating_add(metadata_timeout_ms)
                    .saturating_add(self.broker_session_timeout_ms)
        {
            // A dead broker's commits are decided once its session is
            // fenced, at most a session timeout after it died.
            return invalid(
                "object_gc_grace_ms",
                &format!(
                    "must be at least {MIN_OBJECT_GC_GRACE_MS} ms and exceed object_write_timeout_ms \
                     plus the {metadata_timeout_ms} ms metadata timeout plus broker_session_timeout_ms"
                ),
            );
        }
        if self.max_flushes_in_flight == 0 {
            return invalid("max_flushes_in_flight", "must be at least 1");
        }
        if self.max_connections == 0 || self.max_in_flight_requests_per_connection == 0 {
            return invalid("max_connections", "limits must be at least 1");
        }
        if self.flush_buffer_max_bytes < self.flush_max_bytes {
            return invalid("flush_buffer_max_bytes", "must be at least flush_max_bytes");
        }
        if self.flush_buffer_max_bytes > u32::MAX as usize {
            return invalid("flush_buffer_max_bytes", "must fit in 32 bits");
        }
        if self.queued_max_request_bytes < self.socket_request_max_bytes
            || self.queued_max_request_bytes > u32::MAX as usize
        {
            return invalid(
                "queued_max_request_bytes",
                "must be at least socket_request_max_bytes and fit in 32 bits",
            );
        }
        if self.max_connections_per_ip == 0 || self.connections_max_idle_ms == 0 {
            return invalid(
                "max_connections_per_ip",
                "connection limits and timeouts must be at least 1",
            );
        }
        if self.request_read_timeout_ms == 0 || self.response_write_timeout_ms == 0 {
            return invalid("request_read_timeout_ms", "timeouts must be at least 1");
        }
        if self.fetch_response_buffer_max_bytes < MIN_FETCH_SHARE_BYTES
            || self.fetch_response_buffer_max_bytes > u32::MAX as usize
        {
            return invalid(
                "fetch_response_buffer_max_bytes",
                "must be at least 1 MiB (1048576) and fit in 32 bits",
            );
        }
        if self.broker_heartbeat_interval_ms == 0
            || self.broker_session_timeout_ms < 2 * self.broker_heartbeat_interval_ms
        {
            return invalid(
                "broker_session_timeout_ms",
                "must be at least twice broker_heartbeat_interval_ms (at least 1)",
            );
        }
        if self.cluster_watch_interval_ms == 0 {
            return invalid("cluster_watch_interval_ms", "must be at least 1");
        }
        if !matches!(self.log_format.as_str(), "plain" | "json") {
            return invalid("log_format", "must be plain or json");
        }
        Ok(())
    }
}

/// The smallest share of `fetch_response_buffer_max_bytes` a fetch waits
/// for when the buffer is short.
pub const MIN_FETCH_SHARE_BYTES: usize = 1024 * 1024;

/// Shortest `object_gc_grace_ms`: an object's commit can wait behind the
/// commits of every flush in flight, each up to two metadata timeouts.
const MIN_OBJECT_GC_GRACE_MS: u64 = 300_000;

/// The names of every setting, read off the defaults.
fn setting_names() -> Vec<String> {
    Figment::from(Serialized::defaults(Settings::default()))
        .data()
        .ok()
        .and_then(|profiles| profiles.into_values().next())
        .map(|dict| dict.into_keys().collect())
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment's error
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_localhost_9092() {
        let s = Settings::default();
        assert_eq!(s.listen, "127.0.0.1:9092");
        assert!(s.validate().is_ok());
    }

    #[test]
    fn flags_override_file_and_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("lightstream.toml", "num_partitions = 3\nnode_id = 7\n")?;
            jail.set_env("LIGHTSTREAM_NUM_PARTITIONS", "5");
            jail.set_env("LIGHTSTREAM_BIN", "/not/a/setting");
            let flags = Flags {
                listen: Some("127.0.0.1:1234".to_string()),
                ..Flags::default()
            };
            let s = Settings::load(&flags).expect("settings load");
            assert_eq!(s.node_id, 7);
            assert_eq!(s.num_partitions, 5);
            assert_eq!(s.listen, "127.0.0.1:1234");
            Ok(())
        });
    }

    #[test]
    fn storage_settings_that_would_lose_or_waste_data_are_refused() {
        let refused = |s: Settings| match s.validate() {
            Err(SettingsError::Invalid { name, .. }) => name,
            other => panic!("accepted: {other:?}"),
        };
        let d = Settings::default;
        let small_part = Settings {
            s3_part_size_bytes: 5 * 1024 * 1024 - 1,
            ..d()
        };
        assert_eq!(refused(small_part), "s3_part_size_bytes");
        let short_grace = Settings {
            object_gc_grace_ms: 299_999,
            ..d()
        };
        assert_eq!(refused(short_grace), "object_gc_grace_ms");
        let grace_under_write = Settings {
            object_write_timeout_ms: 600_000,
            s3_stale_upload_age_ms: 3_600_000,
            object_gc_grace_ms: 605_000,
            ..d()
        };
        assert_eq!(refused(grace_under_write), "object_gc_grace_ms");
        let overflow = Settings {
            object_write_timeout_ms: u64::MAX,
            ..d()
        };
        assert!(overflow.validate().is_err(), "no overflow panic, refused");
        let sweep_in_flight = Settings {
            s3_stale_upload_age_ms: 30_000,
            ..d()
        };
        assert_eq!(refused(sweep_in_flight), "s3_stale_upload_age_ms");
        let no_flushes = Settings {
            max_flushes_in_flight: 0,
            ..d()
        };
        assert_eq!(refused(no_flushes), "max_flushes_in_flight");
    }

    #[test]
    fn metadata_settings_are_checked_before_anything_connects() {
        let refused = |s: Settings| match s.validate() {
            Err(SettingsError::Invalid { name, .. }) => name,
            other => panic!("accepted: {other:?}"),
        };
        let d = Settings::default;
        for url in [
            "postgres://db/x",
            "scylla://",
            "scylla://h:9042/bad-keyspace",
        ] {
            let wrong = Settings {
                metadata_url: url.to_string(),
                ..d()
            };
            assert_eq!(refused(wrong), "metadata_url", "{url}");
        }
        let both = Settings {
            metadata_url: "scylla://127.0.0.1:9042/lightstream".to_string(),
            metadata_password: "a".to_string(),
            metadata_password_file: "/run/secrets/scylla".to_string(),
            ..d()
        };
        assert_eq!(refused(both), "metadata_password_file");
        let fine = Settings {
            metadata_url: "scylla://u@10.0.0.1:9042,10.0.0.2/lightstream?dc=dc1".to_string(),
            metadata_password_file: "/run/secrets/scylla".to_string(),
            ..d()
        };
        fine.validate()
            .expect("a ScyllaDB URL with a password file");
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("lightstream.toml", "no_such_setting = 1\n")?;
            assert!(Settings::load(&Flags::default()).is_err());
            Ok(())
        });
    }
}
