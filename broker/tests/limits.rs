//! Broker-wide limits on metadata: `max_topics` and `max_partitions` refuse
//! with POLICY_VIOLATION through every way topics come to be (CreateTopics,
//! CreatePartitions, auto-creation), and one Metadata request auto-creates
//! all the topics it names in one step.

mod common;

use broker::config::Settings;
use common::{TestBroker, create_topic};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const POLICY_VIOLATION: i16 = 44;

fn name(n: &str) -> TopicName {
    TopicName(StrBytes::from_string(n.to_string()))
}

#[tokio::test]
async fn topic_and_partition_limits_are_policy_violations() {
    let broker = TestBroker::start_with(Settings {
        max_topics: 3,
        max_partitions: 10,
        ..Settings::default()
    })
    .await;
    let mut client = broker.connect().await;
    create_topic(&mut client, "a", 4).await;
    let request = CreateTopicsRequest::default().with_topics(vec![
        CreatableTopic::default()
            .with_name(name("b"))
            .with_num_partitions(4)
            .with_replication_factor(-1),
        // 4 + 4 + 4 = 12 partitions: over 10.
        CreatableTopic::default()
            .with_name(name("c"))
            .with_num_partitions(4)
            .with_replication_factor(-1),
    ]);
    let created: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &request).await;
    let codes: Vec<i16> = created.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, vec![0, POLICY_VIOLATION]);
    assert!(
        created.topics[1]
            .error_message
            .as_ref()
            .is_some_and(|m| m.contains("max_partitions=10")),
        "{:?}",
        created.topics[1].error_message
    );

    let grow = CreatePartitionsRequest::default().with_topics(vec![
        CreatePartitionsTopic::default()
            .with_name(name("a"))
            .with_count(7),
    ]);
    let grown: CreatePartitionsResponse = client.call(ApiKey::CreatePartitions, 3, &grow).await;
    assert_eq!(grown.results[0].error_code, POLICY_VIOLATION);

    // Two topics of 1 partition fit the partitions (8 + 1 = 9, then 10) but
    // only one fits max_topics=3.
    let metadata = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(
            ["d", "e"]
                .iter()
                .map(|n| MetadataRequestTopic::default().with_name(Some(name(n))))
                .collect(),
        ));
    let answer: MetadataResponse = client.call(ApiKey::Metadata, 12, &metadata).await;
    let codes: Vec<i16> = answer.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, vec![0, POLICY_VIOLATION]);
    broker.stop().await;
}

#[tokio::test]
async fn one_metadata_request_auto_creates_many_topics_in_one_step() {
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    let names: Vec<String> = (0..300).map(|i| format!("auto-{i}")).collect();
    let metadata = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(
            names
                .iter()
                .map(|n| MetadataRequestTopic::default().with_name(Some(name(n))))
                .collect(),
        ));
    let answer: MetadataResponse = client.call(ApiKey::Metadata, 12, &metadata).await;
    assert_eq!(answer.topics.len(), 300);
    for (topic, wanted) in answer.topics.iter().zip(&names) {
        assert_eq!(topic.error_code, 0, "{wanted}");
        assert_eq!(
            topic.name.as_ref().map(|n| n.as_str()),
            Some(wanted.as_str())
        );
        assert_eq!(topic.partitions.len(), 1);
    }
    // Asked again, the same topics, not new ones.
    let again: MetadataResponse = client.call(ApiKey::Metadata, 12, &metadata).await;
    let ids = |r: &MetadataResponse| r.topics.iter().map(|t| t.topic_id).collect::<Vec<_>>();
    assert_eq!(ids(&answer), ids(&again));
    broker.stop().await;
}
