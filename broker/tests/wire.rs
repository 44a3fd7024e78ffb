//! The broker as a server on a loopback port (port 0), spoken to in raw Kafka
//! frames built with the `kafka-protocol` crate: ApiVersions, topic admin,
//! produce → fetch, the fetch long-poll, and bad input.
//!
//! The broker runs with the in-memory object store and an in-memory SQLite
//! metadata store, so each test starts from nothing.

use std::sync::Arc;
use std::time::Duration;

use broker::config::Settings;
use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::Compression;

mod common;

use common::*;

#[tokio::test]
async fn api_versions_v3_lists_supported_apis() {
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    let response: ApiVersionsResponse = client
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(response.error_code, 0);
    let produce = response
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .expect("produce is listed");
    assert_eq!((produce.min_version, produce.max_version), (3, 13));
    // Default-valued tagged fields must stay off the wire (librdkafka 2.0.2).
    assert!(response.supported_features.is_empty());
    assert_eq!(response.finalized_features_epoch, -1);
    broker.stop().await;
}

#[tokio::test]
async fn unknown_api_versions_version_gets_v0_answer_with_unsupported_version() {
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    let mut frame = BytesMut::new();
    frame.put_i32(10);
    frame.put_i16(ApiKey::ApiVersions as i16);
    frame.put_i16(99);
    frame.put_i32(77);
    frame.put_i16(-1); // null client id
    client.send_raw(&frame).await;
    let mut response = client.read_frame().await.unwrap();
    assert_eq!(response.get_i32(), 77);
    let body = ApiVersionsResponse::decode(&mut response, 0).unwrap();
    assert_eq!(body.error_code, 35);
    assert!(!body.api_keys.is_empty());
    broker.stop().await;
}

#[tokio::test]
async fn produced_records_are_fetched_back_by_name_and_by_topic_id() {
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    let created = create_topic(&mut client, "orders", 1).await;
    assert_eq!(created.topics[0].error_code, 0);
    let topic_id = created.topics[0].topic_id;
    for (values, expected_base) in [(vec!["a", "b"], 0), (vec!["c"], 2)] {
        let response: ProduceResponse = client
            .call(
                ApiKey::Produce,
                9,
                &produce_request("orders", 0, batch(&values)),
            )
            .await;
        let p = &response.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, expected_base));
    }
    let fetched: FetchResponse = client
        .call(ApiKey::Fetch, 12, &fetch_request("orders", 1, 0))
        .await;
    let data = &fetched.responses[0].partitions[0];
    assert_eq!(data.high_watermark, 3);
    let values = values_of(data.records.clone().unwrap());
    assert_eq!(
        values[0],
        (0, "a".to_string()),
        "whole batch from its start"
    );
    assert_eq!(values.len(), 3);

    let mut by_id = fetch_request("", 2, 0);
    by_id.topics[0].topic_id = topic_id;
    let fetched: FetchResponse = client.call(ApiKey::Fetch, 13, &by_id).await;
    assert_eq!(fetched.responses[0].topic_id, topic_id);
    assert_eq!(
        values_of(fetched.responses[0].partitions[0].records.clone().unwrap()),
        vec![(2, "c".to_string())]
    );
    broker.stop().await;
}

#[tokio::test]
async fn fetch_at_the_end_waits_for_the_next_produce() {
    let broker = TestBroker::start().await;
    let mut consumer = broker.connect().await;
    let mut producer = broker.connect().await;
    create_topic(&mut producer, "tail", 1).await;
    let waiting = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let response: FetchResponse = consumer
            .call(ApiKey::Fetch, 12, &fetch_request("tail", 0, 30_000))
            .await;
        (response, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _: ProduceResponse = producer
        .call(
            ApiKey::Produce,
            9,
            &produce_request("tail", 0, batch(&["wake"])),
        )
        .await;
    let (response, waited) = waiting.await.unwrap();
    let values = values_of(response.responses[0].partitions[0].records.clone().unwrap());
    assert_eq!(values, vec![(0, "wake".to_string())]);
    // Woken by the append, long before max_wait_ms (30 s).
    assert!(waited < Duration::from_secs(20), "waited {waited:?}");
    broker.stop().await;
}

#[tokio::test]
async fn empty_fetch_has_empty_not_null_records() {
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    create_topic(&mut client, "empty", 1).await;
    let fetched: FetchResponse = client
        .call(ApiKey::Fetch, 12, &fetch_request("empty", 0, 0))
        .await;
    let data = &fetched.responses[0].partitions[0];
    assert_eq!(data.error_code, 0);
    assert_eq!(data.records.as_ref().map(|r| r.len()), Some(0));
    let out_of_range: FetchResponse = client
        .call(ApiKey::Fetch, 12, &fetch_request("empty", 5, 0))
        .await;
    assert_eq!(out_of_range.responses[0].partitions[0].error_code, 1);
    broker.stop().await;
}

#[tokio::test]
async fn corrupt_and_misdirected_batches_get_kafka_error_codes() {
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    create_topic(&mut client, "checked", 1).await;
    let mut corrupt = BytesMut::from(&batch(&["x"])[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    let cases = [
        ("checked", 0, corrupt.freeze(), 2), // CORRUPT_MESSAGE
        ("missing", 0, batch(&["x"]), 3),    // UNKNOWN_TOPIC_OR_PARTITION
        ("checked", 7, batch(&["x"]), 3),    // no such partition
    ];
    for (topic, partition, records, code) in cases {
        let response: ProduceResponse = client
            .call(
                ApiKey::Produce,
                9,
                &produce_request(topic, partition, records),
            )
            .await;
        assert_eq!(
            response.responses[0].partition_responses[0].error_code, code,
            "{topic}-{partition}"
        );
    }
    let fetched: FetchResponse = client
        .call(ApiKey::Fetch, 12, &fetch_request("checked", 0, 0))
        .await;
    assert_eq!(
        fetched.responses[0].partitions[0].high_watermark, 0,
        "nothing stored"
    );
    broker.stop().await;
}

#[tokio::test]
async fn oversized_frame_closes_only_that_connection() {
    let broker = TestBroker::start().await;
    let mut bad = broker.connect().await;
    bad.send_raw(&0x7fff_ffffi32.to_be_bytes()).await;
    assert!(bad.read_frame().await.is_none(), "closed");
    let mut good = broker.connect().await;
    let response: ApiVersionsResponse = good
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(response.error_code, 0);
    broker.stop().await;
}

#[tokio::test]
async fn create_topics_reports_each_error_on_its_own() {
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    create_topic(&mut client, "taken", 1).await;
    let topic = |name: &str, partitions: i32, rf: i16| {
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
    };
    let request = CreateTopicsRequest::default().with_topics(vec![
        topic("taken", 1, 1),
        topic("bad/name", 1, 1),
        topic("zero", 0, 1),
        topic("no-replicas", 1, 0),
        topic("three-replicas", 2, 3),
        topic("fine", -1, -1),
    ]);
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &request).await;
    let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, vec![36, 17, 37, 38, 0, 0]);
    assert_eq!(response.topics[5].num_partitions, 1);
    broker.stop().await;
}

#[tokio::test]
async fn any_replication_factor_is_accepted_and_replicas_are_the_live_brokers() {
    // Kafka Connect, Schema Registry and Streams ask for 3 replicas; the
    // object store holds the data, so the factor asked for is always met.
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    let request = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("rf3")))
            .with_num_partitions(2)
            .with_replication_factor(3),
    ]);
    let created: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &request).await;
    assert_eq!(created.topics[0].error_code, 0);
    assert_eq!(created.topics[0].replication_factor, 1, "one live broker");
    let metadata: MetadataResponse = client
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("rf3")))),
            ])),
        )
        .await;
    for p in &metadata.topics[0].partitions {
        assert_eq!(p.replica_nodes, vec![BrokerId(1)]);
        assert_eq!(p.isr_nodes, p.replica_nodes);
    }
    broker.stop().await;
}

#[tokio::test]
async fn acks_zero_produce_gets_no_answer_and_a_refused_one_closes_the_connection() {
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    create_topic(&mut client, "fire-and-forget", 1).await;
    // A good acks=0 produce: no answer, and the next request is answered.
    let mut good = produce_request("fire-and-forget", 0, batch(&["x"]));
    good.acks = 0;
    let mut frame = BytesMut::new();
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(9)
        .with_correlation_id(1000);
    header
        .encode(&mut frame, ApiKey::Produce.request_header_version(9))
        .unwrap();
    good.encode(&mut frame, 9).unwrap();
    let mut sized = BytesMut::new();
    sized.put_i32(frame.len() as i32);
    sized.extend_from_slice(&frame);
    client.send_raw(&sized).await;
    let versions: ApiVersionsResponse = client
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(
        versions.error_code, 0,
        "the acks=0 produce was not answered"
    );
    // A refused acks=0 produce (unknown topic) closes the connection.
    let mut refused = produce_request("no-such-topic", 0, batch(&["x"]));
    refused.acks = 0;
    let mut frame = BytesMut::new();
    header
        .encode(&mut frame, ApiKey::Produce.request_header_version(9))
        .unwrap();
    refused.encode(&mut frame, 9).unwrap();
    let mut sized = BytesMut::new();
    sized.put_i32(frame.len() as i32);
    sized.extend_from_slice(&frame);
    client.send_raw(&sized).await;
    assert!(client.read_frame().await.is_none(), "connection closed");
    broker.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_wait_until_one_closes() {
    let broker = TestBroker::start_with(Settings {
        max_connections: 1,
        ..Settings::default()
    })
    .await;
    let connect = || broker.connect();
    let mut first = connect().await;
    let _: ApiVersionsResponse = first
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    let mut second = connect().await; // accepted by the kernel, not yet served
    let waiting = tokio::spawn(async move {
        let r: ApiVersionsResponse = second
            .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
            .await;
        r.error_code
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "second connection served beyond max_connections"
    );
    drop(first);
    assert_eq!(waiting.await.unwrap(), 0, "served once the first closed");
    broker.stop().await;
}

#[tokio::test]
async fn fetch_answers_at_once_when_data_was_left_out_by_the_size_limits() {
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    create_topic(&mut client, "backlog", 1).await;
    for v in ["one", "two"] {
        let _: ProduceResponse = client
            .call(
                ApiKey::Produce,
                9,
                &produce_request("backlog", 0, batch(&[v])),
            )
            .await;
    }
    // min_bytes far above what exists, but a partition limit of 1 byte: the
    // second batch is left out, so Kafka answers now instead of waiting.
    let mut request = fetch_request("backlog", 0, 30_000).with_min_bytes(10 << 20);
    request.topics[0].partitions[0].partition_max_bytes = 1;
    let started = std::time::Instant::now();
    let fetched: FetchResponse = client.call(ApiKey::Fetch, 12, &request).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "did not wait out max_wait_ms"
    );
    let values = values_of(fetched.responses[0].partitions[0].records.clone().unwrap());
    assert_eq!(values, vec![(0, "one".to_string())]);
    broker.stop().await;
}

#[tokio::test]
async fn create_topics_says_exists_before_judging_the_rest_and_caps_partitions() {
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    create_topic(&mut client, "present", 1).await;
    let ask = |name: &str, partitions: i32, rf: i16| {
        CreateTopicsRequest::default().with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.to_string())))
                .with_num_partitions(partitions)
                .with_replication_factor(rf),
        ])
    };
    let exists: CreateTopicsResponse = client
        .call(ApiKey::CreateTopics, 7, &ask("present", 1, 3))
        .await;
    assert_eq!(
        exists.topics[0].error_code, 36,
        "TOPIC_ALREADY_EXISTS before the replication factor"
    );
    let huge: CreateTopicsResponse = client
        .call(ApiKey::CreateTopics, 7, &ask("huge", 20_000, 1))
        .await;
    assert_eq!(huge.topics[0].error_code, 44, "POLICY_VIOLATION");
    broker.stop().await;
}

async fn create_topic_with_configs(
    client: &mut Client,
    name: &str,
    configs: &[(&str, &str)],
) -> CreateTopicsResponse {
    use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
    let request = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(1)
            .with_replication_factor(-1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            ),
    ]);
    client.call(ApiKey::CreateTopics, 7, &request).await
}

#[tokio::test]
async fn compacted_topic_refuses_keyless_records() {
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    let created =
        create_topic_with_configs(&mut client, "compacted", &[("cleanup.policy", "compact")]).await;
    assert_eq!(created.topics[0].error_code, 0);
    let keyless = protocol::testing::record_batch(
        &["v", "w", "x"],
        1_700_000_000_000,
        false,
        Compression::None,
    );
    let refused: ProduceResponse = client
        .call(
            ApiKey::Produce,
            9,
            &produce_request("compacted", 0, keyless),
        )
        .await;
    let refused = &refused.responses[0].partition_responses[0];
    assert_eq!(refused.error_code, 87, "INVALID_RECORD");
    // KIP-467: each refused record by its index, so that clients fail those
    // and not their neighbours (librdkafka's 0011_produce_batch checks it).
    let indexes: Vec<i32> = refused
        .record_errors
        .iter()
        .map(|e| e.batch_index)
        .collect();
    assert_eq!(indexes, [0, 1, 2]);
    let message = refused.error_message.as_deref().unwrap_or_default();
    assert!(
        message.starts_with("One or more records have been rejected due to 3 record errors"),
        "{message}"
    );
    let accepted: ProduceResponse = client
        .call(
            ApiKey::Produce,
            9,
            &produce_request("compacted", 0, batch(&["v"])),
        )
        .await;
    assert_eq!(accepted.responses[0].partition_responses[0].error_code, 0);
    broker.stop().await;
}

#[tokio::test]
async fn log_append_time_topic_stamps_the_broker_time() {
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    create_topic_with_configs(
        &mut client,
        "stamped",
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let response: ProduceResponse = client
        .call(
            ApiKey::Produce,
            9,
            &produce_request("stamped", 0, batch(&["v"])),
        )
        .await;
    let p = &response.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0);
    assert!(
        p.log_append_time_ms >= before_ms,
        "log_append_time_ms={}",
        p.log_append_time_ms
    );
    let fetched: FetchResponse = client
        .call(ApiKey::Fetch, 12, &fetch_request("stamped", 0, 0))
        .await;
    let records = fetched.responses[0].partitions[0].records.clone().unwrap();
    let header = protocol::batch::parse_header(&records).unwrap();
    assert!(header.is_log_append_time());
    assert_eq!(header.max_timestamp, p.log_append_time_ms);
    broker.stop().await;
}

#[tokio::test]
async fn topics_are_found_and_deleted_by_topic_id() {
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    let created = create_topic(&mut client, "by-id", 2).await;
    let topic_id = created.topics[0].topic_id;
    let metadata: MetadataResponse = client
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default()
                    .with_topic_id(topic_id)
                    .with_name(None),
            ])),
        )
        .await;
    assert_eq!(metadata.topics[0].error_code, 0);
    assert_eq!(
        metadata.topics[0].name.as_ref().map(|n| n.as_str()),
        Some("by-id")
    );
    assert_eq!(metadata.topics[0].partitions.len(), 2);
    let deleted: DeleteTopicsResponse = client
        .call(
            ApiKey::DeleteTopics,
            6,
            &DeleteTopicsRequest::default()
                .with_topics(vec![DeleteTopicState::default().with_topic_id(topic_id)]),
        )
        .await;
    assert_eq!(deleted.responses[0].error_code, 0);
    let again: DeleteTopicsResponse = client
        .call(
            ApiKey::DeleteTopics,
            6,
            &DeleteTopicsRequest::default()
                .with_topics(vec![DeleteTopicState::default().with_topic_id(topic_id)]),
        )
        .await;
    assert_eq!(again.responses[0].error_code, 100, "UNKNOWN_TOPIC_ID");
    broker.stop().await;
}

/// The broker runs object garbage collection: a deleted topic's objects go
/// after the grace period (on the broker's clock), the other topic's stay
/// and read back.
#[tokio::test]
async fn a_deleted_topics_objects_are_collected_after_the_grace_period() {
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    use storage::{Clock, ObjectStore};
    let objects = Arc::new(storage::MemoryStore::new());
    let clock = Arc::new(storage::ManualClock::new(storage::SystemClock.now_ms()));
    let settings = Settings {
        object_gc_interval_ms: 1_000,
        object_gc_grace_ms: 300_000,
        ..Settings::default()
    };
    let broker = TestBroker::start_on_clock(
        settings,
        Arc::new(metadata::SqliteStore::open_in_memory().unwrap()),
        objects.clone(),
        clock.clone(),
    )
    .await;
    let mut client = broker.connect().await;
    for topic in ["doomed", "kept"] {
        create_topic(&mut client, topic, 1).await;
        let response: ProduceResponse = client
            .call(
                ApiKey::Produce,
                9,
                &produce_request(topic, 0, batch(&[topic])),
            )
            .await;
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
    assert_eq!(
        objects.list("").await.unwrap().len(),
        2,
        "one flush per produce"
    );
    let deleted: DeleteTopicsResponse = client
        .call(
            ApiKey::DeleteTopics,
            6,
            &DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("doomed")))),
            ]),
        )
        .await;
    assert_eq!(deleted.responses[0].error_code, 0);
    // A pass sees the doomed topic's object unreferenced; one a grace period
    // later deletes it. Passes run every second on the real clock.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while objects.list("").await.unwrap().len() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the deleted topic's object stayed"
        );
        clock.advance(150_000);
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let left = objects.list("").await.unwrap();
    let object = objects.get(&left[0]).await.unwrap();
    let holds = |needle: &[u8]| object.windows(needle.len()).any(|w| w == needle);
    assert!(holds(b"kept") && !holds(b"doomed"), "the wrong object went");
    let fetched: FetchResponse = client
        .call(ApiKey::Fetch, 12, &fetch_request("kept", 0, 0))
        .await;
    let data = &fetched.responses[0].partitions[0];
    assert_eq!(
        values_of(data.records.clone().unwrap()),
        vec![(0, "kept".to_string())]
    );
    broker.stop().await;
}

#[tokio::test]
async fn describe_cluster_and_broker_configs_describe_this_broker() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    let cluster: DescribeClusterResponse = client
        .call(
            ApiKey::DescribeCluster,
            1,
            &DescribeClusterRequest::default().with_endpoint_type(1),
        )
        .await;
    assert_eq!(cluster.error_code, 0);
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(cluster.controller_id, cluster.brokers[0].broker_id);
    assert_eq!(cluster.brokers[0].port, broker.addr.port() as i32);
    let node = cluster.brokers[0].broker_id.0.to_string();
    let configs: DescribeConfigsResponse = client
        .call(
            ApiKey::DescribeConfigs,
            4,
            &DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_string(node))
                    .with_configuration_keys(Some(vec![StrBytes::from_static_str(
                        "num.partitions",
                    )])),
            ]),
        )
        .await;
    let result = &configs.results[0];
    assert_eq!(result.error_code, 0);
    assert_eq!(result.configs.len(), 1);
    assert_eq!(
        result.configs[0].value.as_ref().map(|v| v.as_str()),
        Some("1")
    );
    broker.stop().await;
}

#[tokio::test]
async fn requests_wait_when_queued_request_bytes_are_used_up() {
    let broker = TestBroker::start_with(Settings {
        socket_request_max_bytes: 48 * 1024,
        queued_max_request_bytes: 48 * 1024,
        ..Settings::default()
    })
    .await;
    let mut admin = broker.connect().await;
    create_topic(&mut admin, "waiting", 1).await;
    // A 30 KiB client id makes each Fetch take most of the 48 KiB budget.
    let first = broker.connect().await;
    let second = broker.connect().await;
    let long_poll = tokio::spawn(big_fetch(first, 1_500));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waited = big_fetch(second, 0).await;
    assert!(
        waited >= Duration::from_millis(800),
        "the second request was read while the first held the room: answered after {waited:?}"
    );
    long_poll.await.unwrap();
    broker.stop().await;
}

/// Sends a Fetch whose client id is 30 KiB; returns how long its answer took.
async fn big_fetch(mut client: Client, max_wait_ms: i32) -> Duration {
    let request = fetch_request("waiting", 0, max_wait_ms);
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(12)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_string("c".repeat(30 * 1024))))
        .encode(&mut body, ApiKey::Fetch.request_header_version(12))
        .unwrap();
    request.encode(&mut body, 12).unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    let started = std::time::Instant::now();
    client.send_raw(&frame).await;
    assert!(client.read_frame().await.is_some(), "answered");
    started.elapsed()
}

#[tokio::test]
async fn max_timestamp_comes_from_the_records_not_the_batch_header() {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    create_topic(&mut client, "stamps", 1).await;
    // Records at 1_700_000_000_000 + 0..3, written by a producer that puts
    // -1 in the header's max timestamp, as Sarama 1.22 does.
    for compression in [Compression::None, Compression::Lz4] {
        let mut records = BytesMut::from(
            &protocol::testing::record_batch(
                &["a", "b", "c"],
                1_700_000_000_000,
                true,
                compression,
            )[..],
        );
        protocol::batch::set_max_timestamp(&mut records, -1);
        let produced: ProduceResponse = client
            .call(
                ApiKey::Produce,
                9,
                &produce_request("stamps", 0, records.freeze()),
            )
            .await;
        assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    }
    let ask = |timestamp: i64| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("stamps")))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(timestamp),
                    ]),
            ])
    };
    // MAX_TIMESTAMP (-3): the last record of the newest batch, at +2.
    let max: ListOffsetsResponse = client.call(ApiKey::ListOffsets, 8, &ask(-3)).await;
    let p = &max.topics[0].partitions[0];
    assert_eq!((p.error_code, p.timestamp), (0, 1_700_000_000_002));
    // By time: the first record at or after +1 is offset 1.
    let by_time: ListOffsetsResponse = client
        .call(ApiKey::ListOffsets, 8, &ask(1_700_000_000_001))
        .await;
    let p = &by_time.topics[0].partitions[0];
    assert_eq!((p.error_code, p.offset), (0, 1));
    // The stored batch carries the records' max timestamp, as Kafka's does.
    let fetched: FetchResponse = client
        .call(ApiKey::Fetch, 12, &fetch_request("stamps", 0, 0))
        .await;
    let stored = fetched.responses[0].partitions[0].records.clone().unwrap();
    let header = protocol::batch::parse_header(&stored).unwrap();
    assert_eq!(header.max_timestamp, 1_700_000_000_002);
    broker.stop().await;
}

#[tokio::test]
async fn authorized_operations_are_every_supported_one_when_asked_for() {
    // No authorizer: Kafka answers every operation the resource type
    // supports, and i32::MIN when the client did not ask.
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    create_topic(&mut client, "ops", 1).await;
    let ask = |include: bool| {
        MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("ops")))),
            ]))
            .with_include_cluster_authorized_operations(include)
            .with_include_topic_authorized_operations(include)
    };
    let asked: MetadataResponse = client.call(ApiKey::Metadata, 10, &ask(true)).await;
    // READ WRITE CREATE DELETE ALTER DESCRIBE DESCRIBE_CONFIGS ALTER_CONFIGS
    let topic_bits = [3, 4, 5, 6, 7, 8, 10, 11]
        .iter()
        .fold(0, |f, op| f | (1 << op));
    assert_eq!(asked.topics[0].topic_authorized_operations, topic_bits);
    // CREATE ALTER DESCRIBE CLUSTER_ACTION DESCRIBE_CONFIGS ALTER_CONFIGS IDEMPOTENT_WRITE
    let cluster_bits = [5, 7, 8, 9, 10, 11, 12]
        .iter()
        .fold(0, |f, op| f | (1 << op));
    assert_eq!(asked.cluster_authorized_operations, cluster_bits);
    let not_asked: MetadataResponse = client.call(ApiKey::Metadata, 10, &ask(false)).await;
    assert_eq!(not_asked.topics[0].topic_authorized_operations, i32::MIN);
    assert_eq!(not_asked.cluster_authorized_operations, i32::MIN);
    let cluster: DescribeClusterResponse = client
        .call(
            ApiKey::DescribeCluster,
            1,
            &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
        )
        .await;
    assert_eq!(cluster.cluster_authorized_operations, cluster_bits);
    broker.stop().await;
}
