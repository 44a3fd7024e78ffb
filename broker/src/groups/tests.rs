//! The classic group state machine, driven directly with explicit times:
//! every transition and the error codes Kafka answers at each.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::group::{Group, GroupState, JoinAnswer, JoinRequest, Pending, SyncAnswer};
use super::{GroupConfig, GroupError};

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn cfg() -> GroupConfig {
    GroupConfig::default()
}

fn request(member_id: &str, instance: Option<&str>, protocols: &[(&str, &str)]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        group_instance_id: instance.map(str::to_string),
        client_id: "client".to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".to_string(),
        protocols: protocols
            .iter()
            .map(|(n, m)| (n.to_string(), Bytes::from(m.to_string())))
            .collect(),
        require_known_member_id: true,
    }
}

fn now<T: std::fmt::Debug>(p: Pending<T>) -> T {
    match p {
        Pending::Now(answer) => answer,
        Pending::Later(_) => panic!("expected an answer now"),
    }
}

fn later<T>(p: Pending<T>) -> oneshot::Receiver<T> {
    match p {
        Pending::Later(rx) => rx,
        Pending::Now(_) => panic!("expected a held answer"),
    }
}

fn ready<T: std::fmt::Debug>(rx: &mut oneshot::Receiver<T>) -> Option<T> {
    rx.try_recv().ok()
}

const RANGE: &[(&str, &str)] = &[("range", "m")];

/// A new member: MEMBER_ID_REQUIRED, then its join with that id (held).
fn new_member(g: &mut Group, at: i64) -> (String, oneshot::Receiver<JoinAnswer>) {
    let first = now(g.join(request("", None, RANGE), &cfg(), at));
    assert_eq!(first.error, Some(GroupError::MemberIdRequired));
    assert!(
        first.member_id.starts_with("client-"),
        "{}",
        first.member_id
    );
    let rx = later(g.join(request(&first.member_id, None, RANGE), &cfg(), at));
    (first.member_id, rx)
}

fn sync_leader(
    g: &mut Group,
    leader: &str,
    generation: i32,
    assignments: &[(&str, &str)],
    at: i64,
) -> oneshot::Receiver<SyncAnswer> {
    let assignments = assignments
        .iter()
        .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
        .collect();
    later(g.sync(
        generation,
        leader,
        None,
        (Some("consumer"), Some("range")),
        assignments,
        at,
    ))
}

/// A Stable group of `n` dynamic members (first is leader), synced at 6_000.
fn stable_group(n: usize) -> (Group, Vec<String>) {
    let mut g = Group::new("g", None, 0);
    let mut ids = Vec::new();
    let mut waits = Vec::new();
    for _ in 0..n {
        let (id, rx) = new_member(&mut g, 0);
        ids.push(id);
        waits.push(rx);
    }
    // The initial delay (3 s), extended once if more than one member came.
    g.tick(&cfg(), 3_000);
    g.tick(&cfg(), 6_000);
    let answers: Vec<JoinAnswer> = waits
        .iter_mut()
        .map(|rx| ready(rx).expect("joined"))
        .collect();
    assert!(
        answers
            .iter()
            .all(|a| a.generation_id == 1 && a.leader == ids[0])
    );
    let assignments: Vec<(String, String)> = ids
        .iter()
        .map(|id| (id.clone(), format!("to-{id}")))
        .collect();
    let refs: Vec<(&str, &str)> = assignments
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let mut rx = sync_leader(&mut g, &ids[0], 1, &refs, 6_000);
    assert!(ready(&mut rx).expect("leader synced").is_ok());
    assert_eq!(g.state, GroupState::Stable);
    for id in &ids[1..] {
        assert_eq!(sync_follower(&mut g, id, 1, 6_000), Ok(format!("to-{id}")));
    }
    (g, ids)
}

/// A follower's SyncGroup once the leader has assigned: its assignment.
fn sync_follower(
    g: &mut Group,
    member_id: &str,
    generation: i32,
    at: i64,
) -> Result<String, GroupError> {
    let answer = now(g.sync(generation, member_id, None, (None, None), Vec::new(), at))?;
    Ok(String::from_utf8(answer.assignment.to_vec()).expect("utf-8 assignment"))
}

#[test]
fn a_new_group_waits_the_initial_delay_then_the_leader_assigns() {
    let mut g = Group::new("g", None, 0);
    let (a, mut a_rx) = new_member(&mut g, 0);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    let (b, mut b_rx) = new_member(&mut g, 1_000);
    // Everyone has joined, but a new group waits out the delay (3 s).
    g.tick(&cfg(), 2_999);
    assert!(ready(&mut a_rx).is_none());
    // A member arrived during the delay: it is extended once more.
    g.tick(&cfg(), 3_000);
    assert!(ready(&mut a_rx).is_none());
    g.tick(&cfg(), 6_000);
    let leader = ready(&mut a_rx).expect("joined");
    let follower = ready(&mut b_rx).expect("joined");
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert_eq!(
        (leader.generation_id, leader.leader.as_str()),
        (1, a.as_str())
    );
    assert_eq!(leader.protocol_name.as_deref(), Some("range"));
    assert_eq!(leader.members.len(), 2, "the leader gets every member");
    assert!(follower.members.is_empty());
    // The follower syncs first and waits; the leader's sync answers both.
    let mut b_sync = later(g.sync(1, &b, None, (None, None), vec![], 6_000));
    assert!(ready(&mut b_sync).is_none());
    let mut a_sync = sync_leader(&mut g, &a, 1, &[(&a, "A"), (&b, "B")], 6_001);
    assert_eq!(ready(&mut a_sync).unwrap().unwrap().assignment, "A");
    assert_eq!(ready(&mut b_sync).unwrap().unwrap().assignment, "B");
    assert_eq!(g.state, GroupState::Stable);
    // Stable: a late SyncGroup gets the assignment at once.
    assert_eq!(
        now(g.sync(1, &b, None, (None, None), vec![], 6_002))
            .unwrap()
            .assignment,
        "B"
    );
}

#[test]
fn a_rebalance_ends_as_soon_as_every_member_rejoined() {
    let (mut g, ids) = stable_group(2);
    let (c, mut c_rx) = new_member(&mut g, 10_000);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    // The others learn of it from their heartbeats and rejoin.
    for id in &ids {
        assert_eq!(
            g.heartbeat(1, id, None, 10_100),
            Err(GroupError::RebalanceInProgress)
        );
    }
    let mut rxs: Vec<_> = ids
        .iter()
        .map(|id| later(g.join(request(id, None, RANGE), &cfg(), 10_200)))
        .collect();
    // No timer needed: the last rejoin completes the join phase.
    let answers: Vec<JoinAnswer> = rxs
        .iter_mut()
        .map(|rx| ready(rx).expect("answered"))
        .collect();
    let new = ready(&mut c_rx).expect("answered");
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert!(answers.iter().chain([&new]).all(|a| a.generation_id == 2));
    assert_eq!(answers[0].leader, ids[0], "the leader stays the leader");
    assert_eq!(answers[0].members.len(), 3);
    assert_ne!(c, ids[0]);
}

#[test]
fn members_that_do_not_rejoin_in_time_are_removed() {
    let (mut g, ids) = stable_group(3);
    let (_, mut c_rx) = new_member(&mut g, 10_000);
    let mut a_rx = later(g.join(request(&ids[0], None, RANGE), &cfg(), 10_100));
    // The other two keep heartbeating (told to rejoin) but never rejoin.
    for at in [15_000, 24_000, 33_000] {
        for id in &ids[1..] {
            assert_eq!(
                g.heartbeat(1, id, None, at),
                Err(GroupError::RebalanceInProgress)
            );
        }
        g.tick(&cfg(), at);
    }
    g.tick(&cfg(), 10_000 + i64::from(REBALANCE_MS) - 1);
    assert!(ready(&mut a_rx).is_none(), "waits for the others");
    g.tick(&cfg(), 10_000 + i64::from(REBALANCE_MS));
    let a = ready(&mut a_rx).expect("answered at the rebalance timeout");
    assert!(ready(&mut c_rx).is_some());
    assert_eq!(a.members.len(), 2, "the two that did not rejoin are gone");
    assert_eq!(
        g.heartbeat(2, &ids[1], None, 41_000),
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn an_expired_session_removes_the_member_and_starts_a_rebalance() {
    let (mut g, ids) = stable_group(2);
    assert_eq!(g.heartbeat(1, &ids[0], None, 15_000), Ok(()));
    // ids[1] was last heard at 6_000 (the join answer); its session ends at 16_000.
    g.tick(&cfg(), 15_999);
    assert_eq!(g.state, GroupState::Stable);
    g.tick(&cfg(), 16_000);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert!(!g.members.contains_key(&ids[1]));
    let mut rx = later(g.join(request(&ids[0], None, RANGE), &cfg(), 16_100));
    assert_eq!(ready(&mut rx).expect("alone now").generation_id, 2);
}

#[test]
fn the_last_member_leaving_empties_the_group() {
    let (mut g, ids) = stable_group(2);
    assert_eq!(g.leave(&ids[1], None, &cfg(), 5_000), Ok(()));
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.leave(&ids[1], None, &cfg(), 5_000),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(g.leave(&ids[0], None, &cfg(), 5_001), Ok(()));
    assert_eq!(g.state, GroupState::Empty);
    assert_eq!(g.generation_id, 2);
    // An Empty group takes simple commits and refuses member ones.
    assert_eq!(g.validate_commit(-1, "", None), Ok(()));
    assert_eq!(
        g.validate_commit(2, &ids[0], None),
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn generation_and_member_fencing() {
    let (mut g, ids) = stable_group(2);
    assert_eq!(
        g.heartbeat(0, &ids[0], None, 4_000),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        g.heartbeat(1, "nobody", None, 4_000),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        now(g.sync(7, &ids[0], None, (None, None), vec![], 4_000)).unwrap_err(),
        GroupError::IllegalGeneration
    );
    assert_eq!(
        now(g.sync(1, &ids[0], None, (Some("other"), None), vec![], 4_000)).unwrap_err(),
        GroupError::InconsistentGroupProtocol
    );
    assert_eq!(
        now(g.join(request("nobody", None, RANGE), &cfg(), 4_000)).error,
        Some(GroupError::UnknownMemberId)
    );
    // Commits: current generation fine, stale generation and strangers not,
    // simple commits not while the group has members.
    assert_eq!(g.validate_commit(1, &ids[0], None), Ok(()));
    assert_eq!(
        g.validate_commit(0, &ids[0], None),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        g.validate_commit(1, "nobody", None),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        g.validate_commit(-1, "", None),
        Err(GroupError::UnknownMemberId)
    );
    // During the join phase a commit of the old generation is still taken;
    // a sync is told to rejoin.
    let _c = new_member(&mut g, 5_000);
    assert_eq!(g.validate_commit(1, &ids[0], None), Ok(()));
    assert_eq!(
        now(g.sync(1, &ids[0], None, (None, None), vec![], 5_000)).unwrap_err(),
        GroupError::RebalanceInProgress
    );
}

#[test]
fn commits_are_refused_while_the_leader_assigns() {
    let mut g = Group::new("g", None, 0);
    let (a, _rx) = new_member(&mut g, 0);
    g.tick(&cfg(), 3_000);
    assert_eq!(g.state, GroupState::CompletingRebalance);
    assert_eq!(
        g.validate_commit(1, &a, None),
        Err(GroupError::RebalanceInProgress)
    );
    assert_eq!(g.heartbeat(1, &a, None, 3_100), Ok(()));
}

#[test]
fn join_checks_session_timeout_and_protocols() {
    let (mut g, _) = stable_group(1);
    let mut short = request("", None, RANGE);
    short.session_timeout_ms = 5_999;
    assert_eq!(
        now(g.join(short, &cfg(), 0)).error,
        Some(GroupError::InvalidSessionTimeout)
    );
    let mut other_type = request("", None, RANGE);
    other_type.protocol_type = "connect".into();
    assert_eq!(
        now(g.join(other_type, &cfg(), 0)).error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    assert_eq!(
        now(g.join(request("", None, &[("roundrobin", "m")]), &cfg(), 0)).error,
        Some(GroupError::InconsistentGroupProtocol)
    );
    assert_eq!(
        now(g.join(request("", None, &[]), &cfg(), 0)).error,
        Some(GroupError::InconsistentGroupProtocol)
    );
}

#[test]
fn the_protocol_most_members_prefer_wins() {
    let mut g = Group::new("g", None, 0);
    let both_rr = &[("roundrobin", "r"), ("range", "g")];
    let first = now(g.join(
        request("", None, &[("range", "g"), ("roundrobin", "r")]),
        &cfg(),
        0,
    ));
    let mut rxs = vec![later(g.join(
        request(
            &first.member_id,
            None,
            &[("range", "g"), ("roundrobin", "r")],
        ),
        &cfg(),
        0,
    ))];
    for _ in 0..2 {
        let id = now(g.join(request("", None, both_rr), &cfg(), 0)).member_id;
        rxs.push(later(g.join(request(&id, None, both_rr), &cfg(), 0)));
    }
    g.tick(&cfg(), 3_000);
    g.tick(&cfg(), 6_000);
    let leader = ready(&mut rxs[0]).unwrap();
    assert_eq!(leader.protocol_name.as_deref(), Some("roundrobin"));
    assert!(leader.members.iter().all(|m| m.metadata == "r"));
}

#[test]
fn a_known_follower_rejoining_a_stable_group_changes_nothing() {
    let (mut g, ids) = stable_group(2);
    let answer = now(g.join(request(&ids[1], None, RANGE), &cfg(), 4_000));
    assert_eq!((answer.error, answer.generation_id), (None, 1));
    assert_eq!(g.state, GroupState::Stable);
    // The leader rejoining (or new metadata) starts a rebalance.
    let _rx = later(g.join(request(&ids[0], None, RANGE), &cfg(), 4_000));
    assert_eq!(g.state, GroupState::PreparingRebalance);
}

#[test]
fn a_static_member_restarting_within_its_session_keeps_its_assignment() {
    let mut g = Group::new("g", None, 0);
    let mut rxs = Vec::new();
    for instance in ["i1", "i2"] {
        let p = g.join(request("", Some(instance), RANGE), &cfg(), 0);
        rxs.push(later(p));
    }
    g.tick(&cfg(), 3_000);
    g.tick(&cfg(), 6_000);
    let answers: Vec<JoinAnswer> = rxs.iter_mut().map(|rx| ready(rx).unwrap()).collect();
    let (leader, other) = (answers[0].member_id.clone(), answers[1].member_id.clone());
    assert!(
        leader.starts_with("i1-"),
        "static member ids start with the instance id"
    );
    let mut s = sync_leader(&mut g, &leader, 1, &[(&leader, "L"), (&other, "O")], 6_000);
    assert!(ready(&mut s).unwrap().is_ok());

    // i2 restarts: it rejoins with no member id and its instance id.
    let rejoin = now(g.join(request("", Some("i2"), RANGE), &cfg(), 7_000));
    assert_eq!(rejoin.error, None);
    assert_eq!(rejoin.generation_id, 1, "no rebalance");
    assert_ne!(rejoin.member_id, other);
    assert_eq!(g.state, GroupState::Stable);
    let assignment = now(g.sync(
        1,
        &rejoin.member_id,
        Some("i2"),
        (None, None),
        vec![],
        5_000,
    ));
    assert_eq!(assignment.unwrap().assignment, "O");
    // The old incarnation is fenced.
    assert_eq!(
        g.heartbeat(1, &other, Some("i2"), 5_100),
        Err(GroupError::FencedInstanceId)
    );
    assert_eq!(
        g.leave(&other, Some("i2"), &cfg(), 5_100),
        Err(GroupError::FencedInstanceId)
    );

    // The static leader restarting is answered with the old leader id, so it
    // syncs as a follower and keeps its own assignment.
    let rejoin = now(g.join(request("", Some("i1"), RANGE), &cfg(), 6_000));
    assert_eq!(rejoin.leader, leader);
    assert_ne!(rejoin.member_id, leader);
    let mine = now(g.sync(
        1,
        &rejoin.member_id,
        Some("i1"),
        (None, None),
        vec![],
        6_000,
    ));
    assert_eq!(mine.unwrap().assignment, "L");

    // Leaving by instance id (admin style, no member id) removes it.
    assert_eq!(g.leave("", Some("i1"), &cfg(), 9_000), Ok(()));
    assert_eq!(g.state, GroupState::PreparingRebalance);
}

#[test]
fn a_pending_member_id_expires_unless_used() {
    let (mut g, _) = stable_group(1);
    let pending = now(g.join(request("", None, RANGE), &cfg(), 4_000)).member_id;
    g.tick(&cfg(), 4_000 + i64::from(SESSION_MS));
    assert_eq!(
        now(g.join(request(&pending, None, RANGE), &cfg(), 15_000)).error,
        Some(GroupError::UnknownMemberId)
    );
}

#[test]
fn consumer_subscriptions_are_read_for_offset_delete() {
    // ConsumerProtocolSubscription v0: version, then topics ["a", "bb"].
    let mut meta = vec![0u8, 0, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'b'];
    meta.extend_from_slice(&[0, 0, 0, 0]); // no user data
    let mut g = Group::new("g", None, 0);
    let mut req = request("", None, &[]);
    req.protocols = vec![("range".into(), Bytes::from(meta))];
    req.require_known_member_id = false;
    let _rx = later(g.join(req, &cfg(), 0));
    g.tick(&cfg(), 3_000);
    assert!(g.subscribed_to("bb"));
    assert!(!g.subscribed_to("c"));
}

struct ManualClock(std::sync::atomic::AtomicI64);

/// A lease long enough for every test that does not move the clock past it.
const LEASE_MS: i64 = 60_000;

/// Registers broker `node_id` in `metadata` and opens a coordinator of every
/// group under its session.
async fn open_coordinator(
    node_id: i32,
    config: GroupConfig,
    metadata: std::sync::Arc<metadata::SqliteStore>,
    clock: std::sync::Arc<ManualClock>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> std::sync::Arc<super::GroupCoordinator> {
    use metadata::ClusterStore;
    use storage::Clock;

    let registration = metadata::BrokerRegistration {
        node_id,
        host: "localhost".into(),
        port: 9092,
        rack: None,
    };
    let session = metadata
        .register_broker(&registration, clock.now_ms(), LEASE_MS)
        .await
        .unwrap();
    let coordinator = super::GroupCoordinator::open(
        config,
        metadata,
        clock,
        std::sync::Arc::new(move || session),
        shutdown.clone(),
    );
    coordinator
        .keep_placed(std::sync::Arc::new(|_: &str| true))
        .await;
    coordinator
}

impl storage::Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn offsets_of_an_empty_group_expire_after_the_retention() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use metadata::GroupStore;

    let clock = Arc::new(ManualClock(std::sync::atomic::AtomicI64::new(1_000_000)));
    let metadata = Arc::new(metadata::SqliteStore::open_in_memory().unwrap());
    let config = GroupConfig {
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 1_000,
        ..GroupConfig::default()
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let coordinator = open_coordinator(1, config, metadata.clone(), clock.clone(), &shutdown).await;
    let offset = |partition, offset| metadata::CommittedOffset {
        topic: "t".into(),
        partition,
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 0,
    };
    coordinator
        .commit_offsets("g", -1, "", None, true, vec![offset(0, 5)])
        .await
        .unwrap();
    clock.0.fetch_add(30_000, Ordering::SeqCst);
    coordinator
        .commit_offsets("g", -1, "", None, true, vec![offset(1, 6)])
        .await
        .unwrap();
    let fetched = async |c: &super::GroupCoordinator| {
        c.fetch_offsets("g", Some(vec![("t".into(), 0), ("t".into(), 1)]))
            .await
            .unwrap()
            .iter()
            .map(|o| o.offset)
            .collect::<Vec<_>>()
    };
    // Each offset of a group without members expires `retention` after its commit.
    clock.0.fetch_add(29_000, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(fetched(&coordinator).await, [5, 6]);
    clock.0.fetch_add(2_000, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(fetched(&coordinator).await, [-1, 6]);
    assert_eq!(metadata.committed_offsets("g").await.unwrap().len(), 1);
    clock.0.fetch_add(30_000, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(fetched(&coordinator).await, [-1, -1]);
    // With no offsets and no members, the group itself goes.
    assert!(coordinator.list().is_empty());
    assert!(metadata.groups().await.unwrap().is_empty());
    shutdown.cancel();
}

/// Two members in generation 1, formed at 6_000 (both came at once, so the
/// initial delay ran once and was extended once); neither has synced yet.
/// Returns (group, leader, follower).
fn joined_pair() -> (Group, String, String) {
    let mut g = Group::new("g", None, 0);
    let (leader, mut leader_join) = new_member(&mut g, 0);
    let (follower, mut follower_join) = new_member(&mut g, 0);
    g.tick(&cfg(), 3_000);
    g.tick(&cfg(), 6_000);
    assert!(ready(&mut leader_join).is_some() && ready(&mut follower_join).is_some());
    (g, leader, follower)
}

#[test]
fn a_member_that_never_syncs_is_removed_at_the_rebalance_timeout() {
    // The leader assigns; the follower heartbeats but never syncs.
    let (mut g, leader, follower) = joined_pair();
    let mut rx = sync_leader(
        &mut g,
        &leader,
        1,
        &[(&leader, "p0"), (&follower, "p1")],
        6_000,
    );
    assert!(ready(&mut rx).expect("leader synced").is_ok());
    let sync_deadline = 6_000 + i64::from(REBALANCE_MS);
    for at in (9_000..sync_deadline).step_by(3_000) {
        assert_eq!(g.heartbeat(1, &follower, None, at), Ok(()));
        assert_eq!(g.heartbeat(1, &leader, None, at), Ok(()));
        g.tick(&cfg(), at);
    }
    g.tick(&cfg(), sync_deadline - 1);
    assert_eq!(g.state, GroupState::Stable);
    g.tick(&cfg(), sync_deadline);
    assert!(
        !g.members.contains_key(&follower),
        "removed without a SyncGroup"
    );
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(1, &follower, None, sync_deadline),
        Err(GroupError::UnknownMemberId)
    );
    // The leader rejoins alone and gets the whole topic.
    let mut rx = later(g.join(request(&leader, None, RANGE), &cfg(), sync_deadline + 100));
    let answer = ready(&mut rx).expect("alone now");
    assert_eq!((answer.generation_id, answer.members.len()), (2, 1));
}

#[test]
fn a_leader_that_never_syncs_is_removed_and_the_followers_rebalance() {
    let (mut g, leader, follower) = joined_pair();
    // The follower waits for an assignment the leader never sends.
    let mut held = later(g.sync(1, &follower, None, (None, None), Vec::new(), 6_100));
    let sync_deadline = 6_000 + i64::from(REBALANCE_MS);
    // The leader's session stays alive: it heartbeats, it just never syncs.
    for at in (9_000..sync_deadline).step_by(3_000) {
        assert_eq!(g.heartbeat(1, &leader, None, at), Ok(()));
        g.tick(&cfg(), at);
    }
    g.tick(&cfg(), sync_deadline - 1);
    assert!(ready(&mut held).is_none());
    assert_eq!(g.state, GroupState::CompletingRebalance);
    g.tick(&cfg(), sync_deadline);
    assert!(!g.members.contains_key(&leader));
    let answer = ready(&mut held).expect("answered");
    assert!(
        matches!(answer, Err(GroupError::RebalanceInProgress)),
        "{answer:?}"
    );
    let mut rx = later(g.join(request(&follower, None, RANGE), &cfg(), sync_deadline + 100));
    let answer = ready(&mut rx).expect("the follower alone forms generation 2");
    assert_eq!(
        (answer.generation_id, answer.leader.as_str()),
        (2, follower.as_str())
    );
}

/// `Pending` resolved, whether the answer came at once or was held.
async fn answer<T>(p: Pending<T>) -> T {
    match p {
        Pending::Now(answer) => answer,
        Pending::Later(rx) => rx.await.expect("the group answers"),
    }
}

#[tokio::test]
async fn a_session_that_ran_out_is_gone_for_the_next_request_before_the_timer_turns() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    let clock = Arc::new(ManualClock(std::sync::atomic::AtomicI64::new(1_000_000)));
    let metadata = Arc::new(metadata::SqliteStore::open_in_memory().unwrap());
    let config = GroupConfig {
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let coordinator = open_coordinator(1, config, metadata, clock.clone(), &shutdown).await;
    // A static member joins alone and syncs: the group is Stable.
    let joined = answer(
        coordinator
            .join("g", request("", Some("static-1"), RANGE))
            .await,
    )
    .await;
    assert_eq!(joined.error, None);
    let assignment = vec![(joined.member_id.clone(), Bytes::from_static(b"a"))];
    let synced = coordinator.sync(
        "g",
        joined.generation_id,
        &joined.member_id,
        Some("static-1"),
        (Some("consumer"), Some("range")),
        assignment,
    );
    assert!(answer(synced).await.is_ok());
    assert_eq!(
        coordinator.delete_group("g").await,
        Err(GroupError::NonEmptyGroup)
    );
    // Its session runs out. This test's runtime has one thread and nothing
    // awaits between the clock's move and the request, so the 50 ms timer
    // cannot have turned: the request itself must see the member gone, as
    // librdkafka's suite expects when it deletes a group exactly
    // session.timeout.ms after its static members closed.
    clock
        .0
        .fetch_add(i64::from(SESSION_MS) + 1, Ordering::SeqCst);
    assert_eq!(coordinator.delete_group("g").await, Ok(()));
    shutdown.cancel();
}

fn committed(partition: i32, offset: i64) -> metadata::CommittedOffset {
    metadata::CommittedOffset {
        topic: "t".into(),
        partition,
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 0,
    }
}

/// The committed offsets of group "g" as `coordinator` answers OffsetFetch.
async fn offsets_at(coordinator: &super::GroupCoordinator) -> Result<Vec<i64>, GroupError> {
    Ok(coordinator
        .fetch_offsets("g", None)
        .await?
        .iter()
        .map(|o| o.offset)
        .collect())
}

#[tokio::test]
async fn a_group_moves_to_its_new_coordinator_with_its_offsets_once_the_old_one_lets_go() {
    use std::sync::Arc;

    let clock = Arc::new(ManualClock(std::sync::atomic::AtomicI64::new(1_000_000)));
    let metadata = Arc::new(metadata::SqliteStore::open_in_memory().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let old = open_coordinator(1, cfg(), metadata.clone(), clock.clone(), &shutdown).await;
    old.commit_offsets("g", -1, "", None, true, vec![committed(0, 5)])
        .await
        .unwrap();
    // The group is placed on the new coordinator before the old one's view
    // changed: it may not take the group yet, and says so (retriable)
    // rather than answer "no offset", which would reset the consumer.
    let new = open_coordinator(2, cfg(), metadata.clone(), clock.clone(), &shutdown).await;
    assert_eq!(
        offsets_at(&new).await,
        Err(GroupError::CoordinatorLoadInProgress)
    );
    // The old coordinator learns of the move and lets the group go.
    old.keep_placed(Arc::new(|_: &str| false)).await;
    assert_eq!(
        old.commit_offsets("g", -1, "", None, true, vec![committed(0, 6)])
            .await,
        Err(GroupError::NotCoordinator)
    );
    assert_eq!(offsets_at(&new).await, Ok(vec![5]));
    new.commit_offsets("g", -1, "", None, true, vec![committed(0, 7)])
        .await
        .unwrap();
    assert_eq!(offsets_at(&new).await, Ok(vec![7]));
    shutdown.cancel();
}

#[tokio::test]
async fn a_coordinator_whose_lease_lapsed_is_fenced_and_forgets_the_group() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    let clock = Arc::new(ManualClock(std::sync::atomic::AtomicI64::new(1_000_000)));
    let metadata = Arc::new(metadata::SqliteStore::open_in_memory().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let zombie = open_coordinator(1, cfg(), metadata.clone(), clock.clone(), &shutdown).await;
    zombie
        .commit_offsets("g", -1, "", None, true, vec![committed(0, 5)])
        .await
        .unwrap();
    assert_eq!(zombie.list().len(), 1);
    // The zombie stops renewing its lease (SIGSTOP); when it lapsed, the
    // next coordinator claims the group, with its offsets.
    clock.0.fetch_add(LEASE_MS + 1, Ordering::SeqCst);
    let heir = open_coordinator(2, cfg(), metadata.clone(), clock.clone(), &shutdown).await;
    assert_eq!(offsets_at(&heir).await, Ok(vec![5]));
    // The zombie wakes and still believes it coordinates the group: its
    // commit is refused by the store, it answers NOT_COORDINATOR and drops
    // the group, and the heir's offsets stand.
    assert_eq!(
        zombie
            .commit_offsets("g", -1, "", None, true, vec![committed(0, 9)])
            .await,
        Err(GroupError::NotCoordinator)
    );
    assert!(zombie.list().is_empty());
    assert_eq!(offsets_at(&heir).await, Ok(vec![5]));
    shutdown.cancel();
}
