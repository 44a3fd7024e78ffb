//! The group coordinator's APIs over a loopback socket, in raw frames:
//! FindCoordinator (single and batched), the KIP-394 join flow, SyncGroup,
//! Heartbeat, OffsetCommit/OffsetFetch (metadata kept, per-partition
//! errors, batched groups), DescribeGroups, ListGroups, DeleteGroups,
//! OffsetDelete, and committed offsets across a broker restart.

use broker::config::Settings;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

mod common;

use common::*;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

/// A broker whose new groups do not wait the initial rebalance delay.
async fn quick_broker() -> TestBroker {
    TestBroker::start_with(Settings {
        group_initial_rebalance_delay_ms: 0,
        ..Settings::default()
    })
    .await
}

fn join_request(group: &str, member_id: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"meta")),
        ])
}

/// Joins a new member (MEMBER_ID_REQUIRED first) and syncs it as the only
/// member; returns (member id, generation).
async fn join_alone(client: &mut Client, group: &str) -> (String, i32) {
    let first: JoinGroupResponse = client
        .call(ApiKey::JoinGroup, 9, &join_request(group, ""))
        .await;
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let member_id = first.member_id.to_string();
    assert!(member_id.starts_with("wire-test-"), "{member_id}");
    let joined: JoinGroupResponse = client
        .call(ApiKey::JoinGroup, 9, &join_request(group, &member_id))
        .await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.leader.as_str(), member_id);
    assert_eq!(
        joined.protocol_name.as_ref().map(|p| p.as_str()),
        Some("range")
    );
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.members[0].metadata, Bytes::from_static(b"meta"));
    let sync = SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(joined.generation_id)
        .with_member_id(s(&member_id))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(vec![
            SyncGroupRequestAssignment::default()
                .with_member_id(s(&member_id))
                .with_assignment(Bytes::from_static(b"all of it")),
        ]);
    let synced: SyncGroupResponse = client.call(ApiKey::SyncGroup, 5, &sync).await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment, Bytes::from_static(b"all of it"));
    (member_id, joined.generation_id)
}

fn commit_request(
    group: &str,
    generation: i32,
    member_id: &str,
    topic: &str,
    offsets: &[(i32, i64, &str)],
) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member_id))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(
                    offsets
                        .iter()
                        .map(|(p, o, m)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o)
                                .with_committed_leader_epoch(4)
                                .with_committed_metadata(Some(s(m)))
                        })
                        .collect(),
                ),
        ])
}

fn commit_codes(response: &OffsetCommitResponse) -> Vec<(i32, i16)> {
    response.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.error_code))
        .collect()
}

/// (partition, offset, leader epoch, metadata) from OffsetFetch v9 for one group.
async fn fetch_offsets(
    client: &mut Client,
    group: &str,
    topic: &str,
    partitions: Option<Vec<i32>>,
) -> Vec<(i32, i64, i32, String)> {
    let topics = partitions.map(|ps| {
        vec![
            OffsetFetchRequestTopics::default()
                .with_name(TopicName(s(topic)))
                .with_partition_indexes(ps),
        ]
    });
    let request = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(gid(group))
            .with_topics(topics),
    ]);
    let response: OffsetFetchResponse = client.call(ApiKey::OffsetFetch, 9, &request).await;
    assert_eq!(response.groups.len(), 1);
    assert_eq!(response.groups[0].error_code, 0);
    response.groups[0]
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            (
                p.partition_index,
                p.committed_offset,
                p.committed_leader_epoch,
                p.metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn find_coordinator_names_this_broker_single_and_batched() {
    let broker = TestBroker::start().await;
    let mut client = broker.connect().await;
    let one: FindCoordinatorResponse = client
        .call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default().with_key(s("g")),
        )
        .await;
    assert_eq!((one.error_code, one.node_id.0), (0, 1));
    assert_eq!(one.port, broker.addr.port() as i32);
    assert_eq!(one.host.as_str(), "127.0.0.1");
    let many: FindCoordinatorResponse = client
        .call(
            ApiKey::FindCoordinator,
            6,
            &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("a"), s("b")]),
        )
        .await;
    let keys: Vec<(&str, i16, i32)> = many
        .coordinators
        .iter()
        .map(|c| (c.key.as_str(), c.error_code, c.node_id.0))
        .collect();
    assert_eq!(keys, [("a", 0, 1), ("b", 0, 1)]);
    // A transactional id is sent here too; its InitProducerId is refused
    // (transactions are not built yet), which clients take as fatal.
    let txn: FindCoordinatorResponse = client
        .call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default()
                .with_key(s("t"))
                .with_key_type(1),
        )
        .await;
    assert_eq!((txn.error_code, txn.node_id.0), (0, 1));
    // Kafka: an unknown key type is INVALID_REQUEST.
    let unknown: FindCoordinatorResponse = client
        .call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default()
                .with_key(s("t"))
                .with_key_type(7),
        )
        .await;
    assert_eq!(unknown.error_code, ResponseError::InvalidRequest.code());
    broker.stop().await;
}

#[tokio::test]
async fn join_sync_heartbeat_and_leave_answer_kafka_codes() {
    let broker = quick_broker().await;
    let mut client = broker.connect().await;
    let (member, generation) = join_alone(&mut client, "g1").await;
    let heartbeat = |generation: i32, member: &str| {
        HeartbeatRequest::default()
            .with_group_id(gid("g1"))
            .with_generation_id(generation)
            .with_member_id(s(member))
    };
    let ok: HeartbeatResponse = client
        .call(ApiKey::Heartbeat, 4, &heartbeat(generation, &member))
        .await;
    assert_eq!(ok.error_code, 0);
    let stale: HeartbeatResponse = client
        .call(ApiKey::Heartbeat, 4, &heartbeat(generation - 1, &member))
        .await;
    assert_eq!(stale.error_code, ResponseError::IllegalGeneration.code());
    let stranger: HeartbeatResponse = client
        .call(ApiKey::Heartbeat, 4, &heartbeat(generation, "x"))
        .await;
    assert_eq!(stranger.error_code, ResponseError::UnknownMemberId.code());
    let nowhere: HeartbeatResponse = client
        .call(
            ApiKey::Heartbeat,
            4,
            &heartbeat(generation, &member).with_group_id(gid("none")),
        )
        .await;
    assert_eq!(nowhere.error_code, ResponseError::UnknownMemberId.code());
    // A session timeout outside the broker's bounds.
    let short: JoinGroupResponse = client
        .call(
            ApiKey::JoinGroup,
            9,
            &join_request("g1", "").with_session_timeout_ms(1_000),
        )
        .await;
    assert_eq!(
        short.error_code,
        ResponseError::InvalidSessionTimeout.code()
    );
    // v3 joins without MEMBER_ID_REQUIRED; the group rebalances, and the
    // first member learns of it through its heartbeat.
    let mut second = broker.connect().await;
    let join_v3 = tokio::spawn(async move {
        let r: JoinGroupResponse = second
            .call(ApiKey::JoinGroup, 3, &join_request("g1", ""))
            .await;
        (r.error_code, r.generation_id, r.member_id.to_string())
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let told: HeartbeatResponse = client
        .call(ApiKey::Heartbeat, 4, &heartbeat(generation, &member))
        .await;
    assert_eq!(told.error_code, ResponseError::RebalanceInProgress.code());
    let rejoined: JoinGroupResponse = client
        .call(ApiKey::JoinGroup, 9, &join_request("g1", &member))
        .await;
    assert_eq!(
        (rejoined.error_code, rejoined.generation_id),
        (0, generation + 1)
    );
    assert_eq!(rejoined.members.len(), 2, "the leader sees both members");
    let (code, new_generation, second_id) = join_v3.await.unwrap();
    assert_eq!((code, new_generation), (0, generation + 1));
    // Leaving (v3+, batched): one known member, one stranger.
    let leave = LeaveGroupRequest::default()
        .with_group_id(gid("g1"))
        .with_members(vec![
            leave_group_request::MemberIdentity::default().with_member_id(s(&second_id)),
            leave_group_request::MemberIdentity::default().with_member_id(s("stranger")),
        ]);
    let left: LeaveGroupResponse = client.call(ApiKey::LeaveGroup, 5, &leave).await;
    let codes: Vec<i16> = left.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, [0, ResponseError::UnknownMemberId.code()]);
    broker.stop().await;
}

#[tokio::test]
async fn offsets_are_committed_fetched_and_checked_per_partition() {
    let broker = quick_broker().await;
    let mut client = broker.connect().await;
    create_topic(&mut client, "t", 3).await;
    // A simple (non-group) commit: generation -1, no member.
    let simple: OffsetCommitResponse = client
        .call(
            ApiKey::OffsetCommit,
            8,
            &commit_request("simple", -1, "", "t", &[(0, 5, "meta-0"), (1, 7, "")]),
        )
        .await;
    assert_eq!(commit_codes(&simple), [(0, 0), (1, 0)]);
    assert_eq!(
        fetch_offsets(&mut client, "simple", "t", Some(vec![0, 1, 2])).await,
        [
            (0, 5, 4, "meta-0".into()),
            (1, 7, 4, String::new()),
            (2, -1, -1, String::new())
        ]
    );
    // Null topics: everything committed.
    assert_eq!(
        fetch_offsets(&mut client, "simple", "t", None).await.len(),
        2
    );
    // Unknown group: -1, no error.
    assert_eq!(
        fetch_offsets(&mut client, "nobody", "t", Some(vec![0])).await,
        [(0, -1, -1, String::new())]
    );
    // Per partition: unknown partition, metadata over 4096 bytes.
    let big = "x".repeat(4097);
    let mixed: OffsetCommitResponse = client
        .call(
            ApiKey::OffsetCommit,
            8,
            &commit_request(
                "simple",
                -1,
                "",
                "t",
                &[(0, 9, ""), (7, 1, ""), (1, 1, &big)],
            ),
        )
        .await;
    assert_eq!(
        commit_codes(&mixed),
        [
            (0, 0),
            (7, ResponseError::UnknownTopicOrPartition.code()),
            (1, ResponseError::OffsetMetadataTooLarge.code())
        ]
    );
    // Member commits: the current generation is accepted, a stale one is not,
    // and neither is a simple commit while the group has members.
    let (member, generation) = join_alone(&mut client, "grp").await;
    let accepted: OffsetCommitResponse = client
        .call(
            ApiKey::OffsetCommit,
            9,
            &commit_request("grp", generation, &member, "t", &[(2, 3, "m")]),
        )
        .await;
    assert_eq!(commit_codes(&accepted), [(2, 0)]);
    let stale: OffsetCommitResponse = client
        .call(
            ApiKey::OffsetCommit,
            9,
            &commit_request("grp", generation + 5, &member, "t", &[(2, 4, "")]),
        )
        .await;
    assert_eq!(
        commit_codes(&stale),
        [(2, ResponseError::IllegalGeneration.code())]
    );
    let outsider: OffsetCommitResponse = client
        .call(
            ApiKey::OffsetCommit,
            9,
            &commit_request("grp", -1, "", "t", &[(2, 4, "")]),
        )
        .await;
    assert_eq!(
        commit_codes(&outsider),
        [(2, ResponseError::UnknownMemberId.code())]
    );
    // v9: a member commit to a group that does not exist.
    let missing: OffsetCommitResponse = client
        .call(
            ApiKey::OffsetCommit,
            9,
            &commit_request("missing", 1, "m", "t", &[(0, 1, "")]),
        )
        .await;
    assert_eq!(
        commit_codes(&missing),
        [(0, ResponseError::GroupIdNotFound.code())]
    );
    let missing_v8: OffsetCommitResponse = client
        .call(
            ApiKey::OffsetCommit,
            8,
            &commit_request("missing", 1, "m", "t", &[(0, 1, "")]),
        )
        .await;
    assert_eq!(
        commit_codes(&missing_v8),
        [(0, ResponseError::IllegalGeneration.code())]
    );
    // OffsetFetch v1 (one group, no batching) sees the same offsets.
    let old: OffsetFetchResponse = client
        .call(
            ApiKey::OffsetFetch,
            1,
            &OffsetFetchRequest::default()
                .with_group_id(gid("grp"))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![2]),
                ])),
        )
        .await;
    assert_eq!(old.topics[0].partitions[0].committed_offset, 3);
    broker.stop().await;
}

#[tokio::test]
async fn groups_are_described_listed_and_deleted() {
    let broker = quick_broker().await;
    let mut client = broker.connect().await;
    create_topic(&mut client, "t", 1).await;
    let (member, _) = join_alone(&mut client, "live").await;
    let _: OffsetCommitResponse = client
        .call(
            ApiKey::OffsetCommit,
            8,
            &commit_request("idle", -1, "", "t", &[(0, 1, "")]),
        )
        .await;
    let described: DescribeGroupsResponse = client
        .call(
            ApiKey::DescribeGroups,
            5,
            &DescribeGroupsRequest::default().with_groups(vec![gid("live"), gid("ghost")]),
        )
        .await;
    let live = &described.groups[0];
    assert_eq!((live.error_code, live.group_state.as_str()), (0, "Stable"));
    assert_eq!(
        (live.protocol_type.as_str(), live.protocol_data.as_str()),
        ("consumer", "range")
    );
    assert_eq!(live.members[0].member_id.as_str(), member);
    assert_eq!(
        live.members[0].member_assignment,
        Bytes::from_static(b"all of it")
    );
    assert_eq!(live.members[0].client_host.as_str(), "/127.0.0.1");
    assert_eq!(
        (
            described.groups[1].error_code,
            described.groups[1].group_state.as_str()
        ),
        (0, "Dead")
    );
    let v6: DescribeGroupsResponse = client
        .call(
            ApiKey::DescribeGroups,
            6,
            &DescribeGroupsRequest::default().with_groups(vec![gid("ghost")]),
        )
        .await;
    assert_eq!(
        v6.groups[0].error_code,
        ResponseError::GroupIdNotFound.code()
    );

    let listed: ListGroupsResponse = client
        .call(ApiKey::ListGroups, 5, &ListGroupsRequest::default())
        .await;
    let names: Vec<(&str, &str, &str)> = listed
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.as_str(),
                g.group_state.as_str(),
                g.group_type.as_str(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [("idle", "Empty", "classic"), ("live", "Stable", "classic")]
    );
    let stable_only: ListGroupsResponse = client
        .call(
            ApiKey::ListGroups,
            4,
            &ListGroupsRequest::default().with_states_filter(vec![s("stable")]),
        )
        .await;
    assert_eq!(stable_only.groups.len(), 1);

    // OffsetDelete: a live consumer group whose members' subscription
    // metadata does not parse as a topic list is not subscribed to "t".
    let delete_offsets = OffsetDeleteRequest::default()
        .with_group_id(gid("idle"))
        .with_topics(vec![
            OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(0),
                ]),
        ]);
    let deleted: OffsetDeleteResponse = client.call(ApiKey::OffsetDelete, 0, &delete_offsets).await;
    assert_eq!(
        (
            deleted.error_code,
            deleted.topics[0].partitions[0].error_code
        ),
        (0, 0)
    );
    assert_eq!(
        fetch_offsets(&mut client, "idle", "t", Some(vec![0])).await[0].1,
        -1
    );
    let unknown: OffsetDeleteResponse = client
        .call(
            ApiKey::OffsetDelete,
            0,
            &delete_offsets.clone().with_group_id(gid("ghost")),
        )
        .await;
    assert_eq!(unknown.error_code, ResponseError::GroupIdNotFound.code());

    let result: DeleteGroupsResponse = client
        .call(
            ApiKey::DeleteGroups,
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![
                gid("live"),
                gid("idle"),
                gid("ghost"),
            ]),
        )
        .await;
    let codes: Vec<i16> = result.results.iter().map(|r| r.error_code).collect();
    assert_eq!(
        codes,
        [
            ResponseError::NonEmptyGroup.code(),
            0,
            ResponseError::GroupIdNotFound.code()
        ]
    );
    broker.stop().await;
}

#[tokio::test]
async fn committed_offsets_survive_a_restart() {
    let stores = DurableStores::new();
    let broker = stores.start().await;
    let mut client = broker.connect().await;
    create_topic(&mut client, "t", 2).await;
    let _: OffsetCommitResponse = client
        .call(
            ApiKey::OffsetCommit,
            8,
            &commit_request("kept", -1, "", "t", &[(0, 11, "meta"), (1, 12, "")]),
        )
        .await;
    drop(client);
    broker.stop().await;
    let broker = stores.start().await;
    let mut client = broker.connect().await;
    assert_eq!(
        fetch_offsets(&mut client, "kept", "t", None).await,
        [(0, 11, 4, "meta".into()), (1, 12, 4, String::new())]
    );
    let listed: ListGroupsResponse = client
        .call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())
        .await;
    assert_eq!(listed.groups[0].group_id.as_str(), "kept");
    assert_eq!(listed.groups[0].group_state.as_str(), "Empty");
    broker.stop().await;
}

#[tokio::test]
async fn a_member_that_joins_but_never_syncs_is_removed_after_the_rebalance_timeout() {
    let broker = quick_broker().await;
    let mut client = broker.connect().await;
    let join = |member_id: &str| join_request("quiet", member_id).with_rebalance_timeout_ms(600);
    let first: JoinGroupResponse = client.call(ApiKey::JoinGroup, 9, &join("")).await;
    let member_id = first.member_id.to_string();
    let joined: JoinGroupResponse = client.call(ApiKey::JoinGroup, 9, &join(&member_id)).await;
    assert_eq!(joined.error_code, 0);
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(gid("quiet"))
        .with_generation_id(joined.generation_id)
        .with_member_id(s(&member_id));
    // Heartbeats keep its 10 s session alive; only the missing SyncGroup
    // (600 ms rebalance timeout) can remove it.
    let started = std::time::Instant::now();
    let removed_after = loop {
        let beat: HeartbeatResponse = client.call(ApiKey::Heartbeat, 4, &heartbeat).await;
        if beat.error_code == ResponseError::UnknownMemberId.code() {
            break started.elapsed();
        }
        assert_eq!(beat.error_code, 0);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "never removed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        removed_after >= std::time::Duration::from_millis(500),
        "{removed_after:?}"
    );
    broker.stop().await;
}
