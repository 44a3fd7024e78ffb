//! Metrics read off the broker's components at scrape time: the object
//! store's and metadata store's request counters, the log's flushes,
//! commits, caches and buffer, partitions led, groups, garbage collection,
//! and the estimated object-store cost per topic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use storage::LatencySnapshot;

use crate::broker::Broker;

/// The broker, as a collector for one scrape.
pub struct BrokerState(pub Arc<Broker>);

impl std::fmt::Debug for BrokerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerState")
    }
}

/// Writes one metric family: `samples` are (labels, value) pairs.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    metric_type: MetricType,
    samples: impl IntoIterator<Item = (L, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, unit.as_ref(), metric_type)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One sample without labels (no `{}` after the name).
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    value: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, unit.as_ref(), value.metric_type())?;
    value.encode(metric)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    value: u64,
) -> Result<(), std::fmt::Error> {
    single(encoder, name, help, unit, ConstCounter::new(value))
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    value: i64,
) -> Result<(), std::fmt::Error> {
    single(encoder, name, help, unit, ConstGauge::new(value))
}

/// Writes one histogram family of latencies, in seconds; samples with
/// `None` for labels have none.
fn histograms<'a, L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Option<L>, &'a LatencySnapshot)>,
) -> Result<(), std::fmt::Error> {
    let mut metric =
        encoder.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    for (labels, h) in samples {
        // The encoder adds the counts up itself and spells +Inf as f64::MAX.
        let mut below = 0;
        let buckets: Vec<(f64, u64)> = h
            .buckets
            .iter()
            .map(|&(bound, cumulative)| {
                let in_bucket = cumulative - below;
                below = cumulative;
                let bound = if bound.is_finite() { bound } else { f64::MAX };
                (bound, in_bucket)
            })
            .collect();
        match labels {
            None => {
                metric.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &buckets, None)?
            }
            Some(labels) => metric
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &buckets, None)?,
        }
    }
    Ok(())
}

/// A histogram without labels.
fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &LatencySnapshot,
) -> Result<(), std::fmt::Error> {
    histograms::<[(&str, &str); 0]>(encoder, name, help, [(None, h)])
}

/// Most consumer-lag series one scrape returns (groups × partitions can
/// be large; the first ones by group id are kept).
const MAX_LAG_SERIES: usize = 1_000;

/// Object-store request kinds billed at the PUT price (S3's "PUT, COPY,
/// POST, LIST"); the others (GET, and DELETE, which S3 does not bill) at
/// the GET price or not at all.
fn billed_as_put(kind: &str) -> bool {
    kind != "get" && kind != "delete"
}

impl Collector for BrokerState {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let broker = &self.0;
        let e = &mut encoder;
        let log = broker.log.stats();
        let settings = &broker.settings;

        // The broker itself.
        gauge(
            e,
            "ready",
            "1 when /readyz answers 200 (stores reachable, partitions loaded, not stopping)",
            None,
            i64::from(broker.health.last_ready()),
        )?;
        gauge(
            e,
            "partitions_led",
            "Partitions this broker leads",
            None,
            log.partitions_led as i64,
        )?;
        let mut groups: BTreeMap<String, i64> = BTreeMap::new();
        for (_, _, state) in broker.groups.list() {
            *groups.entry(format!("{state:?}")).or_default() += 1;
        }
        family(
            e,
            "groups",
            "Consumer groups this broker coordinates, by state",
            None,
            MetricType::Gauge,
            groups
                .into_iter()
                .map(|(state, n)| ([("state", state)], ConstGauge::new(n))),
        )?;

        // Consumer lag: the high watermark minus the committed offset, for
        // the groups coordinated here and the partitions led here (a
        // broker knows the high watermark of those alone; the leaders of
        // the others are other brokers). Bounded to MAX_LAG_SERIES series.
        let mut lag = Vec::new();
        for (group, topic, partition, offset) in broker.groups.committed_offsets(MAX_LAG_SERIES) {
            let Some(view) = broker.topics.by_name(&topic) else {
                continue;
            };
            let tp = metadata::TopicPartition::new(view.topic.topic_id, partition);
            if let Some((_, high_watermark, _)) = broker.log.offsets(&tp) {
                let labels = [
                    ("group", group),
                    ("topic", topic),
                    ("partition", partition.to_string()),
                ];
                lag.push((labels, ConstGauge::new((high_watermark - offset).max(0))));
            }
        }
        family(
            e,
            "consumer_group_lag",
            "Records between a group's committed offset and the high watermark, by group and partition (groups coordinated and partitions led by this broker)",
            None,
            MetricType::Gauge,
            lag,
        )?;

        // The log.
        counter(
            e,
            "flushes",
            "Flushes committed (one object each)",
            None,
            log.flushes,
        )?;
        counter(
            e,
            "flushed",
            "Bytes of the objects flushes wrote",
            Some(Unit::Bytes),
            log.flushed_bytes,
        )?;
        histogram(
            e,
            "flush_duration",
            "Time from sealing a flush to its commit, of committed flushes",
            &log.flush_latency,
        )?;
        histogram(
            e,
            "object_write_duration",
            "Time to write a flush's object to the object store",
            &log.object_write_latency,
        )?;
        histogram(
            e,
            "commit_duration",
            "Time to commit a flush's index entries to the metadata store (the conditional write, and its read-back when the answer was lost)",
            &log.commit_latency,
        )?;
        family(
            e,
            "flush_failures",
            "Flushes that failed, by reason: write (object not written), not_applied (the store refused the commit), fenced (this broker's session was fenced), uncertain (commit outcome unknown), stale (an earlier flush failed)",
            None,
            MetricType::Counter,
            [
                ("write", log.write_failures),
                ("not_applied", log.commit_not_applied),
                ("fenced", log.commit_fenced),
                ("uncertain", log.commit_uncertain),
                ("stale", log.stale_flushes),
            ]
            .map(|(reason, n)| ([("reason", reason)], ConstCounter::new(n))),
        )?;
        gauge(
            e,
            "flush_buffer",
            "Bytes of produced batches buffered, not yet committed",
            Some(Unit::Bytes),
            log.buffer_bytes as i64,
        )?;
        gauge(
            e,
            "flush_buffer_max",
            "flush_buffer_max_bytes: produce waits when the buffer holds this much",
            Some(Unit::Bytes),
            log.buffer_max_bytes as i64,
        )?;
        counter(
            e,
            "backpressure_waits",
            "Produced batches that waited for room in the flush buffer",
            None,
            log.backpressure_waits,
        )?;
        family(
            e,
            "cache_reads",
            "Index entries read, by cache and result: tail/hit (recent objects in memory), block/hit, block/miss (a ranged GET)",
            None,
            MetricType::Counter,
            [
                ("tail", "hit", log.tail_cache_hits),
                ("block", "hit", log.block_cache_hits),
                ("block", "miss", log.block_cache_misses),
            ]
            .map(|(cache, result, n)| {
                ([("cache", cache), ("result", result)], ConstCounter::new(n))
            }),
        )?;
        counter(
            e,
            "read_ahead_bytes",
            "Bytes read ahead into the block cache (compacted runs, one ranged GET)",
            None,
            log.read_ahead_bytes,
        )?;
        counter(
            e,
            "read_ahead_wasted_bytes",
            "Bytes read ahead that were evicted from the block cache before any read used them",
            None,
            log.read_ahead_wasted_bytes,
        )?;
        single(
            e,
            "object_compaction_paced",
            "Seconds object compaction's object store requests waited for their slot under object_compaction_max_requests_per_second, summed over requests",
            Some(Unit::Seconds),
            ConstCounter::new(log.compaction_paced_ms as f64 / 1000.0),
        )?;
        counter(
            e,
            "object_compaction_span_reads",
            "Ranged reads object compaction made of several partitions' runs in one flush object at once",
            None,
            log.compaction_span_reads,
        )?;
        counter(
            e,
            "read_streams_resumed",
            "Reads of older data that went on with a streamed GET an earlier read parked, without a new request",
            None,
            log.read_streams_resumed,
        )?;
        gauge(
            e,
            "read_streams_parked",
            "Streamed GETs of older data kept open for the reader's next fetch",
            None,
            log.read_streams_parked as i64,
        )?;
        family(
            e,
            "cache",
            "Bytes held by each cache",
            Some(Unit::Bytes),
            MetricType::Gauge,
            [
                ("tail", log.tail_cache_bytes),
                ("block", log.block_cache_bytes),
            ]
            .map(|(cache, n)| ([("cache", cache)], ConstGauge::new(n as i64))),
        )?;
        let gc = &broker.gc_stats;
        counter(
            e,
            "gc_passes",
            "Garbage collection passes run by this broker",
            None,
            gc.passes.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "gc_deleted_objects",
            "Unreferenced objects garbage collection deleted",
            None,
            gc.deleted_objects.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "gc_failed_deletes",
            "Deletes of unreferenced objects that failed (retried next pass)",
            None,
            gc.failed_deletes.load(Ordering::Relaxed),
        )?;
        let retention = &broker.retention_stats;
        for (name, help, value) in [
            (
                "retention_passes",
                "Retention passes over the partitions this broker leads",
                &retention.passes,
            ),
            (
                "retention_log_start_moves",
                "Log starts retention moved forward",
                &retention.log_start_moves,
            ),
            (
                "retention_removed_offsets",
                "Offsets retention moved log starts past",
                &retention.offsets_removed,
            ),
            (
                "retention_failures",
                "Partitions retention could not cut (tried again next pass)",
                &retention.failures,
            ),
        ] {
            counter(e, name, help, None, value.load(Ordering::Relaxed))?;
        }
        let compaction = &broker.compaction_stats;
        for (name, help, value) in [
            (
                "object_compaction_rewrites",
                "Object compaction rewrites whose index swap landed",
                &compaction.rewrites,
            ),
            (
                "object_compaction_rewritten_bytes",
                "Batch bytes object compaction copied into new objects",
                &compaction.rewritten_bytes,
            ),
            (
                "object_compaction_replaced_entries",
                "Index entries object compaction replaced",
                &compaction.replaced_entries,
            ),
            (
                "object_compaction_lost",
                "Rewrites dropped because the run changed first (retention, DeleteRecords, a new leader)",
                &compaction.lost,
            ),
            (
                "object_compaction_failures",
                "Rewrites that failed (tried again next pass)",
                &compaction.failures,
            ),
        ] {
            counter(e, name, help, None, value.load(Ordering::Relaxed))?;
        }

        // The object store (S3 only; a local directory makes no requests).
        if let Some(s3) = &broker.store_stats.s3 {
            let kinds = s3.kinds();
            let load = |f: fn(&storage::RequestStats) -> u64| {
                kinds.map(|(kind, s)| ([("kind", kind)], ConstCounter::new(f(s))))
            };
            family(
                e,
                "object_store_requests",
                "Object-store requests (one per SDK call, retries included), by kind",
                None,
                MetricType::Counter,
                load(|s| s.requests.load(Ordering::Relaxed)),
            )?;
            family(
                e,
                "object_store_errors",
                "Object-store requests that failed after their retries, by kind",
                None,
                MetricType::Counter,
                load(|s| s.errors.load(Ordering::Relaxed)),
            )?;
            family(
                e,
                "object_store",
                "Bytes moved by object-store requests that succeeded, by kind",
                Some(Unit::Bytes),
                MetricType::Counter,
                load(|s| s.bytes.load(Ordering::Relaxed)),
            )?;
            let latencies: Vec<_> = kinds
                .iter()
                .map(|(kind, s)| ([("kind", *kind)], s.latency.snapshot()))
                .collect();
            histograms(
                e,
                "object_store_request_duration",
                "Object-store request latency (retries included), by kind",
                latencies.iter().map(|(labels, h)| (Some(*labels), h)),
            )?;
            let (mut puts, mut gets) = (0u64, 0u64);
            for (kind, s) in kinds {
                let n = s.requests.load(Ordering::Relaxed);
                match kind {
                    "get" => gets += n,
                    k if billed_as_put(k) => puts += n,
                    _ => {}
                }
            }
            let put_cost = puts as f64 * settings.s3_put_price_per_1000 / 1000.0;
            let get_cost = gets as f64 * settings.s3_get_price_per_1000 / 1000.0;
            family(
                e,
                "object_store_estimated_cost",
                "Estimated object-store request cost, in the currency of s3_{put,get}_price_per_1000, by topic: PUT-class requests shared by the bytes each topic produced, GETs by the bytes each topic fetched",
                None,
                MetricType::Counter,
                broker
                    .metrics
                    .cost_shares(put_cost, get_cost)
                    .into_iter()
                    .map(|(topic, cost)| ([("topic", topic)], ConstCounter::new(cost))),
            )?;
        }

        // The metadata store (ScyllaDB only; the embedded file has no requests).
        if let Some(scylla) = broker.store_stats.scylla.as_ref().and_then(|s| s.upgrade()) {
            let stats = scylla.statement_stats();
            family(
                e,
                "metadata_statements",
                "ScyllaDB statements run, by kind (conditional: lightweight transactions)",
                None,
                MetricType::Counter,
                stats
                    .by_kind
                    .iter()
                    .map(|(kind, n, _)| ([("kind", *kind)], ConstCounter::new(*n))),
            )?;
            family(
                e,
                "metadata_statement_duration",
                "Seconds spent in ScyllaDB statements, summed, by kind",
                Some(Unit::Seconds),
                MetricType::Counter,
                stats.by_kind.iter().map(|(kind, _, micros)| {
                    ([("kind", *kind)], ConstCounter::new(*micros as f64 / 1e6))
                }),
            )?;
            family(
                e,
                "metadata_conditional_outcomes",
                "Lightweight transactions that did not apply (not_applied) or whose outcome was unknown (uncertain)",
                None,
                MetricType::Counter,
                [
                    ("not_applied", stats.lwt_not_applied),
                    ("uncertain", stats.lwt_uncertain),
                ]
                .map(|(outcome, n)| ([("outcome", outcome)], ConstCounter::new(n))),
            )?;
        }
        Ok(())
    }
}
