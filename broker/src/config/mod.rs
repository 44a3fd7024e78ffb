//! Broker settings: plain data, loaded with figment from, in rising order of
//! precedence, built-in defaults → `lightstream.toml` (or `--config FILE`) →
//! `LIGHTSTREAM_*` environment variables → command-line flags.
//!
//! Every setting is listed in `docs/configuration.md`; keep the two in step.
//! Settings whose Kafka counterpart exists say its name in their doc line.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod load;
#[cfg(test)]
mod tests;
mod validate;

pub use load::{Flags, Loaded, SettingsError, setting_names};
pub use validate::MIN_FETCH_SHARE_BYTES;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Kafka `node.id`: this broker's id in Metadata answers.
    pub node_id: i32,
    /// Address the Kafka listener binds (`host:port`; a name such as
    /// `localhost` binds what it resolves to).
    pub listen: String,
    /// Address of the admin HTTP listener: `/metrics` (Prometheus),
    /// `/healthz`, `/readyz`. Loopback by default; open it to your scraper.
    pub admin_listen: String,
    /// Topics with their own label in per-topic metrics; the rest are
    /// counted under `topic="other"` (bounds the series a scrape returns).
    pub metrics_max_topics: usize,
    /// Price of 1,000 object-store PUT requests (PUT, POST, LIST, multipart
    /// parts), in your currency; feeds the per-topic cost estimate in
    /// `/metrics`. Default: AWS S3 Standard, us-east-1, USD.
    pub s3_put_price_per_1000: f64,
    /// Price of 1,000 GET (and HEAD) requests; see `s3_put_price_per_1000`.
    pub s3_get_price_per_1000: f64,
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
    /// Bytes a read of compacted data fetches ahead into the block cache
    /// (within a quarter of `block_cache_max_bytes`).
    pub read_ahead_max_bytes: usize,
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
    /// Kafka `log.retention.hours`: the default of `retention.ms` when
    /// neither `log_retention_minutes` nor `log_retention_ms` is set.
    pub log_retention_hours: i64,
    /// Kafka `log.retention.minutes`: before `log_retention_hours`.
    pub log_retention_minutes: Option<i64>,
    /// Kafka `log.retention.ms`: before the other two; -1 keeps everything.
    pub log_retention_ms: Option<i64>,
    /// Kafka `log.retention.bytes`: the default of `retention.bytes`; -1
    /// means no size limit.
    pub log_retention_bytes: i64,
    /// Kafka `log.retention.check.interval.ms`: how often each broker cuts
    /// the partitions it leads to their retention limits.
    pub log_retention_check_interval_ms: u64,
    /// How often each broker rewrites the small runs of the partitions it
    /// leads into per-partition objects (object compaction); 0 turns it off.
    pub object_compaction_interval_ms: u64,
    /// Only runs in objects at least this old are rewritten (0: any age).
    pub object_compaction_min_age_ms: u64,
    /// Runs of earlier rewrites at least this large are left as they are
    /// (a flush's runs are rewritten whatever their size).
    pub object_compaction_small_run_bytes: u64,
    /// The largest object one rewrite writes (streamed in parts to S3; held
    /// whole in memory for a local directory).
    pub object_compaction_max_object_bytes: u64,
    /// The largest index entry a rewrite makes (a fetch reads at least one).
    pub object_compaction_max_entry_bytes: u64,
    /// The widest spread of timestamps one rewritten entry may hold:
    /// retention cuts whole entries, so this bounds how long a record can
    /// outlive `retention.ms` because it was merged with newer ones.
    pub object_compaction_max_entry_span_ms: u64,
    /// Rewrites one pass makes at most, over all partitions (bounds the
    /// object store requests compaction makes per interval).
    pub object_compaction_max_rewrites_per_pass: u32,
    /// Object store requests (ranged reads, parts written) object
    /// compaction makes per second on this broker, at most, evenly spaced;
    /// 0 is no limit.
    pub object_compaction_max_requests_per_second: u32,
    /// Bytes object compaction reads and writes per second on this broker,
    /// at most (Kafka's `log.cleaner.io.max.bytes.per.second` for its
    /// cleaner), less the bytes produce flushed over the last second, down
    /// to an eighth of it; 0 is no limit (and nothing yielded).
    pub object_compaction_max_bytes_per_second: u64,
    /// Partitions rewritten at once (on S3): their runs in one flush object
    /// are read with one ranged read. Each rewrite holds about 10 MiB (two
    /// 5 MiB parts); together they share 32 MiB of reads.
    pub object_compaction_max_partitions_at_once: u32,
    /// The nice value of object compaction's thread (Linux): it runs on a
    /// thread of its own, below produce's and fetch's priority, so that
    /// when the cores are busy the compactor waits and produce does not
    /// (as RocksDB lowers its compaction threads' CPU priority). 0 keeps
    /// the broker's priority; 19 is the lowest.
    pub object_compaction_thread_niceness: i32,
    /// The whole shutdown's budget, from SIGTERM to exit: readiness turns
    /// false, partitions and groups are handed over, in-flight requests are
    /// answered and buffered produces flushed. Keep it below Kubernetes'
    /// `terminationGracePeriodSeconds` (the chart does).
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

impl Settings {
    /// The broker's default `retention.ms`, from the first of
    /// `log_retention_ms`, `log_retention_minutes`, `log_retention_hours`
    /// that is set (Kafka's order); a negative value means no limit (-1).
    pub fn log_retention_effective_ms(&self) -> i64 {
        let ms = self.log_retention_ms.unwrap_or_else(|| {
            self.log_retention_minutes.map_or_else(
                || self.log_retention_hours.saturating_mul(3_600_000),
                |minutes| minutes.saturating_mul(60_000),
            )
        });
        if ms < 0 { -1 } else { ms }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            node_id: 1,
            listen: "127.0.0.1:9092".to_string(),
            admin_listen: "127.0.0.1:9080".to_string(),
            metrics_max_topics: 100,
            s3_put_price_per_1000: 0.005,
            s3_get_price_per_1000: 0.0004,
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
            block_cache_max_bytes: 256 * 1024 * 1024,
            read_ahead_max_bytes: 64 * 1024 * 1024,
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
            log_retention_hours: 168,
            log_retention_minutes: None,
            log_retention_ms: None,
            log_retention_bytes: -1,
            log_retention_check_interval_ms: 300_000,
            object_compaction_interval_ms: 60_000,
            object_compaction_min_age_ms: 600_000,
            object_compaction_small_run_bytes: 256 * 1024,
            object_compaction_max_object_bytes: 64 * 1024 * 1024,
            object_compaction_max_entry_bytes: 4 * 1024 * 1024,
            object_compaction_max_entry_span_ms: 3_600_000,
            object_compaction_max_rewrites_per_pass: 20,
            object_compaction_max_requests_per_second: 1_000,
            object_compaction_max_bytes_per_second: 48 * 1024 * 1024,
            object_compaction_max_partitions_at_once: 16,
            object_compaction_thread_niceness: 10,
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
