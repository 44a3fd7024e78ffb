use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceResponse, ResponseKind};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::response_errors::error_name;
use super::*;

/// A collector with nothing to add: the request-path metrics alone.
#[derive(Debug)]
struct Nothing;

impl Collector for Nothing {
    fn encode(&self, _: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[test]
fn names_are_kafkas() {
    assert_eq!(api_name(ApiKey::Produce), "Produce");
    assert_eq!(api_name(ApiKey::OffsetCommit), "OffsetCommit");
    assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
    assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
    assert_eq!(error_name(-32000), "-32000");
}

#[test]
fn an_answer_counts_its_request_latency_and_each_error() {
    let metrics = Metrics::new(10);
    let partition = |index, error_code| {
        PartitionProduceResponse::default()
            .with_index(index)
            .with_error_code(error_code)
    };
    let answer = ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
        TopicProduceResponse::default().with_partition_responses(vec![
            partition(0, 0),
            partition(1, 6),
            partition(2, 6),
        ]),
    ]));
    metrics.answered(ApiKey::Produce, 9, Duration::from_millis(3), Some(&answer));
    metrics.answered(ApiKey::Produce, 9, Duration::from_millis(5), None);
    let text = metrics.encode(Nothing);
    assert_eq!(
        sample(
            &text,
            r#"lightstream_kafka_requests_total{api="Produce",version="9"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"lightstream_kafka_request_errors_total{api="Produce",error="NOT_LEADER_OR_FOLLOWER"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"lightstream_kafka_request_duration_seconds_count{api="Produce"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
}

#[test]
fn topics_beyond_the_limit_share_one_label_and_costs_split_by_bytes() {
    let metrics = Metrics::new(2);
    metrics.produced("a", 10, 300);
    metrics.produced("b", 1, 100);
    metrics.produced("c", 5, 100);
    metrics.produced("d", 5, 100);
    let text = metrics.encode(Nothing);
    assert_eq!(
        sample(&text, r#"lightstream_produced_records_total{topic="a"}"#),
        Some(10.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"lightstream_produced_records_total{topic="other"}"#
        ),
        Some(10.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"lightstream_produced_records_total{topic="c"}"#),
        None
    );
    let shares = metrics.cost_shares(6.0, 0.0);
    let share = |t: &str| shares.iter().find(|(n, _)| n == t).map(|(_, c)| *c);
    assert_eq!(share("a"), Some(3.0));
    assert_eq!(share("b"), Some(1.0));
    assert_eq!(share("other"), Some(2.0));
}

#[test]
fn fetched_records_are_counted_from_the_batches_sent() {
    let metrics = Metrics::new(10);
    let batch = protocol::testing::record_batch(
        &["a", "b", "c"],
        0,
        false,
        kafka_protocol::records::Compression::None,
    );
    let mut two = batch.to_vec();
    two.extend_from_slice(&batch);
    metrics.fetched("t", &two);
    let text = metrics.encode(Nothing);
    assert_eq!(
        sample(&text, r#"lightstream_fetched_records_total{topic="t"}"#),
        Some(6.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"lightstream_fetched_bytes_total{topic="t"}"#),
        Some(two.len() as f64)
    );
}
