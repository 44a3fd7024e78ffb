//! The broker's Prometheus metrics, served at the admin listener's
//! `/metrics` (docs/operations.md lists every one with its meaning).
//!
//! Two kinds: counters and histograms the request path updates as it goes
//! (`Metrics`, owned by the broker), and values read off the components at
//! scrape time (`collect::BrokerState`): object-store and metadata-store
//! request counters, caches, partitions led, groups. Each scrape builds a
//! fresh registry over both, so nothing global is shared between the
//! brokers a test runs in one process.
//!
//! Label cardinality is bounded: topics beyond `metrics_max_topics` are
//! counted as `topic="other"`, API names and error names are finite sets.

mod collect;
mod response_errors;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, ResponseKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

pub use collect::BrokerState;

/// Labels of one Kafka API at one version.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiVersionLabels {
    pub api: &'static str,
    pub version: i16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: &'static str,
}

/// An error code in answers of one API, by Kafka's name for it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiErrorLabels {
    pub api: &'static str,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 0.5 ms to about 16 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The metrics the request path updates. Cheap to clone (every family is
/// an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    pub requests: Family<ApiVersionLabels, Counter>,
    pub request_errors: Family<ApiErrorLabels, Counter>,
    pub request_seconds: Histograms<ApiLabels>,
    pub produced_records: Family<TopicLabels, Counter>,
    pub produced_bytes: Family<TopicLabels, Counter>,
    pub fetched_records: Family<TopicLabels, Counter>,
    pub fetched_bytes: Family<TopicLabels, Counter>,
    pub connections_accepted: Counter,
    pub connections_refused: Counter,
    pub connections_open: Gauge,
    topics: Arc<TopicNames>,
}

impl Metrics {
    pub fn new(max_topics: usize) -> Metrics {
        Metrics {
            requests: Family::default(),
            request_errors: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            produced_records: Family::default(),
            produced_bytes: Family::default(),
            fetched_records: Family::default(),
            fetched_bytes: Family::default(),
            connections_accepted: Counter::default(),
            connections_refused: Counter::default(),
            connections_open: Gauge::default(),
            topics: Arc::new(TopicNames::new(max_topics)),
        }
    }

    /// `put_cost` shared between topics by the bytes each produced, and
    /// `get_cost` by the bytes each fetched: an estimate, since one object
    /// holds many topics and a fetch from the tail cache costs nothing.
    pub fn cost_shares(&self, put_cost: f64, get_cost: f64) -> Vec<(String, f64)> {
        let named = self.topics.named.lock().expect("never poisoned");
        let produced: u64 = named.values().map(|b| b.produced).sum();
        let fetched: u64 = named.values().map(|b| b.fetched).sum();
        let share = |part: u64, whole: u64, cost: f64| {
            if whole == 0 {
                0.0
            } else {
                cost * part as f64 / whole as f64
            }
        };
        let mut shares: Vec<(String, f64)> = named
            .iter()
            .map(|(topic, b)| {
                let cost =
                    share(b.produced, produced, put_cost) + share(b.fetched, fetched, get_cost);
                (topic.clone(), cost)
            })
            .collect();
        shares.sort_by(|a, b| a.0.cmp(&b.0));
        shares
    }

    /// One answered request: its count, latency and the error codes in it.
    pub fn answered(
        &self,
        api_key: ApiKey,
        version: i16,
        took: Duration,
        body: Option<&ResponseKind>,
    ) {
        let api = api_name(api_key);
        self.requests
            .get_or_create(&ApiVersionLabels { api, version })
            .inc();
        self.request_seconds
            .get_or_create(&ApiLabels { api })
            .observe(took.as_secs_f64());
        if let Some(body) = body {
            response_errors::for_each_error(body, |code| {
                self.request_errors
                    .get_or_create(&ApiErrorLabels {
                        api,
                        error: response_errors::error_name(code),
                    })
                    .inc();
            });
        }
    }

    /// Records and bytes of one produced batch, counted once it is durable.
    pub fn produced(&self, topic: &str, records: u64, bytes: u64) {
        let labels = TopicLabels {
            topic: self.topics.count(topic, bytes, 0),
        };
        self.produced_records.get_or_create(&labels).inc_by(records);
        self.produced_bytes.get_or_create(&labels).inc_by(bytes);
    }

    /// Records and bytes of one partition's share of a Fetch answer.
    pub fn fetched(&self, topic: &str, records: &[u8]) {
        if records.is_empty() {
            return;
        }
        let count: u64 = protocol::batch::batches(records)
            .map(|(_, header)| header.records_count.max(0) as u64)
            .sum();
        let labels = TopicLabels {
            topic: self.topics.count(topic, 0, records.len() as u64),
        };
        self.fetched_records.get_or_create(&labels).inc_by(count);
        self.fetched_bytes
            .get_or_create(&labels)
            .inc_by(records.len() as u64);
    }

    /// Every metric in the OpenMetrics text format Prometheus scrapes:
    /// these, then what `state` (the broker's `BrokerState`) reads at scrape.
    pub fn encode(&self, state: impl prometheus_client::collector::Collector) -> String {
        let mut registry = Registry::with_prefix("lightstream");
        registry.register(
            "kafka_requests",
            "Kafka requests answered, by API and version",
            self.requests.clone(),
        );
        registry.register(
            "kafka_request_errors",
            "Error codes in Kafka answers (one per partition, topic or group that carries one), by API and Kafka's error name",
            self.request_errors.clone(),
        );
        registry.register_with_unit(
            "kafka_request_duration",
            "Time from a request's arrival to its answer being ready, by API",
            Unit::Seconds,
            self.request_seconds.clone(),
        );
        registry.register(
            "produced_records",
            "Records acknowledged to producers, by topic",
            self.produced_records.clone(),
        );
        registry.register_with_unit(
            "produced",
            "Record batch bytes acknowledged to producers, by topic",
            Unit::Bytes,
            self.produced_bytes.clone(),
        );
        registry.register(
            "fetched_records",
            "Records sent to consumers, by topic",
            self.fetched_records.clone(),
        );
        registry.register_with_unit(
            "fetched",
            "Record batch bytes sent to consumers, by topic",
            Unit::Bytes,
            self.fetched_bytes.clone(),
        );
        registry.register(
            "connections_accepted",
            "Kafka connections accepted",
            self.connections_accepted.clone(),
        );
        registry.register(
            "connections_refused",
            "Kafka connections closed at once for max_connections_per_ip",
            self.connections_refused.clone(),
        );
        registry.register(
            "connections_open",
            "Kafka connections open now",
            self.connections_open.clone(),
        );
        registry.register_collector(Box::new(state));
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        text
    }
}

/// The topic names with a label of their own, at most `max` of them, with
/// the bytes produced and fetched under each label (for the cost shares).
struct TopicNames {
    max: usize,
    named: Mutex<HashMap<String, TopicBytes>>,
}

#[derive(Clone, Copy, Default)]
struct TopicBytes {
    produced: u64,
    fetched: u64,
}

/// The label shared by topics beyond `metrics_max_topics`.
pub const OTHER_TOPICS: &str = "other";

impl TopicNames {
    fn new(max: usize) -> TopicNames {
        TopicNames {
            max,
            named: Mutex::new(HashMap::new()),
        }
    }

    /// The label for `topic`, adding `produced` and `fetched` bytes to it.
    fn count(&self, topic: &str, produced: u64, fetched: u64) -> String {
        let mut named = self.named.lock().expect("never poisoned");
        let label = if named.contains_key(topic) || named.len() < self.max {
            topic
        } else {
            OTHER_TOPICS
        };
        let bytes = named.entry(label.to_string()).or_default();
        bytes.produced += produced;
        bytes.fetched += fetched;
        label.to_string()
    }
}

/// Kafka's name of an API (`Produce`, `Fetch`, …), as in its request metrics.
pub fn api_name(api_key: ApiKey) -> &'static str {
    // ApiKey's Debug is the name; built once into a table of leaked
    // strings (a few dozen keys), so labels stay `&'static str`.
    use std::sync::OnceLock;
    static NAMES: OnceLock<std::collections::HashMap<i16, &'static str>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        (0..1_000i16)
            .filter_map(|k| ApiKey::try_from(k).ok().map(|key| (k, key)))
            .map(|(k, key)| {
                let debug = format!("{key:?}");
                let name = debug.strip_suffix("Key").unwrap_or(&debug).to_string();
                (k, &*Box::leak(name.into_boxed_str()))
            })
            .collect()
    });
    names.get(&(api_key as i16)).copied().unwrap_or("Unknown")
}

#[cfg(test)]
mod tests;
