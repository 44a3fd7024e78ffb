//! The checks a start makes on settings before anything opens: each
//! refusal names the setting, so the error points at the line to change.

use super::{Settings, SettingsError};

impl Settings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |name, reason: &str| {
            Err(SettingsError::Invalid {
                name,
                reason: reason.to_string(),
            })
        };
        if let Err(reason) = check_host_port(&self.listen) {
            return invalid("listen", &reason);
        }
        if let Err(reason) = check_host_port(&self.admin_listen) {
            return invalid("admin_listen", &reason);
        }
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return invalid(
                "group_min_session_timeout_ms",
                "must not exceed group_max_session_timeout_ms",
            );
        }
        if self.metrics_max_topics == 0 {
            return invalid(
                "metrics_max_topics",
                "must be at least 1 (topics beyond it are counted as `other`)",
            );
        }
        for (name, price) in [
            ("s3_put_price_per_1000", self.s3_put_price_per_1000),
            ("s3_get_price_per_1000", self.s3_get_price_per_1000),
        ] {
            if !(price.is_finite() && price >= 0.0) {
                return invalid(name, "must be a price of zero or more");
            }
        }
        for (name, value) in [
            ("log_retention_hours", Some(self.log_retention_hours)),
            ("log_retention_minutes", self.log_retention_minutes),
            ("log_retention_ms", self.log_retention_ms),
            ("log_retention_bytes", Some(self.log_retention_bytes)),
        ] {
            if value.is_some_and(|v| v < -1) {
                return invalid(name, "must be -1 (no limit) or more");
            }
        }
        if self.log_retention_check_interval_ms == 0 {
            return invalid("log_retention_check_interval_ms", "must be at least 1");
        }
        if self.object_compaction_max_entry_bytes == 0
            || self.object_compaction_max_object_bytes < self.object_compaction_max_entry_bytes
        {
            return invalid(
                "object_compaction_max_object_bytes",
                "must be at least object_compaction_max_entry_bytes, which must be at least 1",
            );
        }
        if self.object_compaction_max_partitions_at_once == 0 {
            return invalid(
                "object_compaction_max_partitions_at_once",
                "must be at least 1",
            );
        }
        if !(0..=19).contains(&self.object_compaction_thread_niceness) {
            return invalid(
                "object_compaction_thread_niceness",
                "must be from 0 (the broker's priority) to 19 (the lowest)",
            );
        }
        if self.shutdown_timeout_ms == 0 {
            return invalid("shutdown_timeout_ms", "must be at least 1");
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

/// `host:port` as a listener takes it: an IP address (`[::1]` for IPv6) or a
/// host name the system resolves (`localhost`), and a port number.
pub(super) fn check_host_port(address: &str) -> Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!(
            "{address:?} must be host:port, e.g. 127.0.0.1:9092"
        ));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!(
            "{address:?} must be host:port with a port from 0 to 65535, e.g. localhost:9092"
        ));
    }
    Ok(())
}
