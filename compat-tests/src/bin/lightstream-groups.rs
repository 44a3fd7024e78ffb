//! Group coordinator benchmark, in raw Kafka requests (no client library):
//!
//! 1. **Rebalance time**: a group of `--members` members (threads, one
//!    connection each, heartbeating every `--heartbeat-ms`) is Stable; one
//!    more member joins; the time until every member has synced the new
//!    generation is one sample. The newcomer then leaves, the group settles,
//!    and the next round starts (`--rounds`, default 20). Members learn of a
//!    rebalance from their heartbeat, as real clients do, so the heartbeat
//!    interval is part of every sample.
//! 2. **Commit rate**: `--committers` connections each send OffsetCommit
//!    requests of `--partitions` partitions (simple commits, one group per
//!    connection) back to back for `--commit-seconds`; requests/s and
//!    latency percentiles.
//!
//! Prints figures; asserts nothing.

#[path = "../figures.rs"]
mod figures;
#[path = "../wire.rs"]
mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use figures::percentile;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use wire::Conn;

#[derive(Parser, Debug)]
#[command(about = "Group coordinator benchmark: rebalance time and commit rate")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Members of the stable group before one more joins.
    #[arg(long, default_value_t = 10)]
    members: usize,
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// How often members heartbeat (librdkafka's default is 3000).
    #[arg(long, default_value_t = 100)]
    heartbeat_ms: u64,
    #[arg(long, default_value_t = 4)]
    committers: usize,
    #[arg(long, default_value_t = 100)]
    partitions: i32,
    #[arg(long, default_value_t = 10)]
    commit_seconds: u64,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The generation each member last completed a SyncGroup in.
#[derive(Default)]
struct Synced {
    generations: Mutex<HashMap<usize, i32>>,
    changed: Condvar,
}

impl Synced {
    fn record(&self, member: usize, generation: i32) {
        self.generations.lock().unwrap().insert(member, generation);
        self.changed.notify_all();
    }

    fn forget(&self, member: usize) {
        self.generations.lock().unwrap().remove(&member);
        self.changed.notify_all();
    }

    /// Waits until exactly `members` are synced, all in one generation newer
    /// than `after`; returns that generation.
    fn wait_all(&self, members: &[usize], after: i32, timeout: Duration) -> anyhow::Result<i32> {
        let deadline = Instant::now() + timeout;
        let mut g = self.generations.lock().unwrap();
        loop {
            let gens: Vec<Option<&i32>> = members.iter().map(|m| g.get(m)).collect();
            if let Some(Some(first)) = gens.first()
                && **first > after
                && g.len() == members.len()
                && gens.iter().all(|x| *x == Some(*first))
            {
                return Ok(**first);
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("members not synced within {timeout:?}: {:?}", *g);
            }
            g = self.changed.wait_timeout(g, deadline - now).unwrap().0;
        }
    }
}

const GROUP: &str = "lightstream-groups-bench";

fn join_request(member_id: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"bench")),
        ])
}

/// One member: join, sync, heartbeat; rejoin when told; leave when stopped.
fn member(
    bootstrap: String,
    index: usize,
    heartbeat: Duration,
    synced: Arc<Synced>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut conn = Conn::connect(&bootstrap, "lightstream-groups")?;
    let first: JoinGroupResponse = conn.call(ApiKey::JoinGroup, 9, &join_request(""))?;
    if first.error_code != ResponseError::MemberIdRequired.code() {
        bail!("first join error_code={}", first.error_code);
    }
    let member_id = first.member_id.to_string();
    'rejoin: loop {
        let joined: JoinGroupResponse =
            conn.call(ApiKey::JoinGroup, 9, &join_request(&member_id))?;
        if joined.error_code != 0 {
            bail!("join error_code={}", joined.error_code);
        }
        let assignments = joined
            .members
            .iter()
            .map(|m| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(m.member_id.clone())
                    .with_assignment(Bytes::from_static(b"a"))
            })
            .collect();
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id(joined.generation_id)
            .with_member_id(s(&member_id))
            .with_assignments(assignments);
        let synced_answer: SyncGroupResponse = conn.call(ApiKey::SyncGroup, 5, &sync)?;
        if synced_answer.error_code == ResponseError::RebalanceInProgress.code() {
            continue 'rejoin;
        }
        if synced_answer.error_code != 0 {
            bail!("sync error_code={}", synced_answer.error_code);
        }
        synced.record(index, joined.generation_id);
        loop {
            if stop.load(Ordering::SeqCst) {
                let leave = LeaveGroupRequest::default()
                    .with_group_id(GroupId(s(GROUP)))
                    .with_members(vec![
                        leave_group_request::MemberIdentity::default()
                            .with_member_id(s(&member_id)),
                    ]);
                let _: LeaveGroupResponse = conn.call(ApiKey::LeaveGroup, 5, &leave)?;
                synced.forget(index);
                return Ok(());
            }
            thread::sleep(heartbeat);
            let beat = HeartbeatRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_generation_id(joined.generation_id)
                .with_member_id(s(&member_id));
            let answer: HeartbeatResponse = conn.call(ApiKey::Heartbeat, 4, &beat)?;
            match answer.error_code {
                0 => {}
                c if c == ResponseError::RebalanceInProgress.code() => continue 'rejoin,
                c => bail!("heartbeat error_code={c}"),
            }
        }
    }
}

fn rebalances(args: &Args) -> anyhow::Result<()> {
    let synced = Arc::new(Synced::default());
    let heartbeat = Duration::from_millis(args.heartbeat_ms);
    let spawn = |index: usize, stop: Arc<AtomicBool>| {
        let (bootstrap, synced) = (args.bootstrap.clone(), synced.clone());
        thread::spawn(move || {
            if let Err(e) = member(bootstrap, index, heartbeat, synced, stop) {
                eprintln!("member {index}: {e:#}");
            }
        })
    };
    let stop_all = Arc::new(AtomicBool::new(false));
    let base: Vec<usize> = (0..args.members).collect();
    let threads: Vec<_> = base.iter().map(|&i| spawn(i, stop_all.clone())).collect();
    let mut generation = synced
        .wait_all(&base, 0, Duration::from_secs(120))
        .context("initial group")?;
    let mut samples = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        let newcomer = args.members + round;
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let t = spawn(newcomer, stop.clone());
        let mut all = base.clone();
        all.push(newcomer);
        generation = synced.wait_all(&all, generation, Duration::from_secs(120))?;
        samples.push(started.elapsed().as_secs_f64() * 1e3);
        stop.store(true, Ordering::SeqCst);
        t.join().expect("newcomer thread");
        generation = synced.wait_all(&base, generation, Duration::from_secs(120))?;
    }
    stop_all.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "rebalance members={} joining=1 heartbeat_ms={} rounds={} ms_median={:.1} ms_p90={:.1} ms_worst={:.1} ms_best={:.1}",
        args.members + 1,
        args.heartbeat_ms,
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        percentile(&samples, 1.0),
        percentile(&samples, 0.0)
    );
    Ok(())
}

fn commits(args: &Args) -> anyhow::Result<()> {
    let topic = format!("lightstream-groups-commit-{}", std::process::id());
    let mut admin = Conn::connect(&args.bootstrap, "lightstream-groups")?;
    let created: CreateTopicsResponse = admin.call(
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(TopicName(s(&topic)))
                    .with_num_partitions(args.partitions)
                    .with_replication_factor(-1),
            ])
            .with_timeout_ms(30_000),
    )?;
    if created.topics[0].error_code != 0 {
        bail!("create topic error_code={}", created.topics[0].error_code);
    }
    let deadline = Instant::now() + Duration::from_secs(args.commit_seconds);
    let workers: Vec<_> = (0..args.committers)
        .map(|c| {
            let (bootstrap, topic, partitions) =
                (args.bootstrap.clone(), topic.clone(), args.partitions);
            thread::spawn(move || -> anyhow::Result<Vec<f64>> {
                let mut conn = Conn::connect(&bootstrap, "lightstream-groups")?;
                let mut latencies = Vec::new();
                let mut offset = 0i64;
                while Instant::now() < deadline {
                    offset += 1;
                    let request = OffsetCommitRequest::default()
                        .with_group_id(GroupId(s(&format!("bench-commit-{c}"))))
                        .with_generation_id_or_member_epoch(-1)
                        .with_topics(vec![
                            OffsetCommitRequestTopic::default()
                                .with_name(TopicName(s(&topic)))
                                .with_partitions(
                                    (0..partitions)
                                        .map(|p| {
                                            OffsetCommitRequestPartition::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(offset)
                                                .with_committed_leader_epoch(-1)
                                        })
                                        .collect(),
                                ),
                        ]);
                    let started = Instant::now();
                    let answer: OffsetCommitResponse =
                        conn.call(ApiKey::OffsetCommit, 8, &request)?;
                    latencies.push(started.elapsed().as_secs_f64() * 1e3);
                    if let Some(bad) = answer.topics[0]
                        .partitions
                        .iter()
                        .find(|p| p.error_code != 0)
                    {
                        bail!("commit error_code={}", bad.error_code);
                    }
                }
                Ok(latencies)
            })
        })
        .collect();
    let started = Instant::now();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.join().expect("committer thread")?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    println!(
        "offset_commit committers={} partitions_per_request={} requests={} requests_per_s={:.0} partitions_per_s={:.0} latency_ms p50={:.2} p99={:.2} max={:.2}",
        args.committers,
        args.partitions,
        all.len(),
        all.len() as f64 / elapsed,
        all.len() as f64 * f64::from(args.partitions) / elapsed,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        percentile(&all, 1.0)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    rebalances(&args)?;
    commits(&args)
}
