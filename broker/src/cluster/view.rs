//! One broker's picture of the cluster at one moment: the live brokers, each
//! partition's committed state and leader, and where partitions and groups
//! are placed. Built from the store by `Cluster::reload_view`; never
//! changed in place (a new view replaces it).

use std::collections::HashMap;

use metadata::{BrokerSession, PartitionState, RegisteredBroker, TopicId, TopicPartition};

use super::placement;

#[derive(Debug, Default)]
pub struct ClusterView {
    /// The store's cluster version this view was built at.
    pub version: i64,
    /// Brokers whose session is open with a lease that had not lapsed, by
    /// node id, and this broker itself while its session is open: a broker
    /// knows it is alive; its lease only tells the others. (If the others
    /// took it for dead, they fenced its session, and its next heartbeat
    /// registers it again.) While this broker is on probation (see
    /// `Cluster::heartbeat`), every open session counts, lapsed or not.
    pub live: Vec<RegisteredBroker>,
    /// Every partition's committed state, with its leader as stored.
    pub partitions: HashMap<TopicPartition, PartitionState>,
    live_ids: Vec<i32>,
    /// The live broker each partition is placed on.
    placements: HashMap<TopicPartition, i32>,
}

impl ClusterView {
    pub fn new(
        version: i64,
        brokers: &[RegisteredBroker],
        now_ms: i64,
        partitions: HashMap<TopicPartition, PartitionState>,
        me: BrokerSession,
        on_probation: bool,
    ) -> ClusterView {
        let live: Vec<RegisteredBroker> = brokers
            .iter()
            .filter(|b| {
                let open = b.status == metadata::SessionStatus::Open;
                b.is_live(now_ms) || (open && (b.session == me || on_probation))
            })
            .cloned()
            .collect();
        let live_ids: Vec<i32> = live.iter().map(|b| b.session.node_id).collect();
        let mut counts: HashMap<TopicId, i32> = HashMap::new();
        for tp in partitions.keys() {
            let count = counts.entry(tp.topic_id).or_default();
            *count = (*count).max(tp.partition + 1);
        }
        let placements = counts
            .into_iter()
            .flat_map(|(topic_id, count)| {
                placement::topic_owners(topic_id, count, &live_ids)
                    .into_iter()
                    .enumerate()
                    .map(move |(p, node)| (TopicPartition::new(topic_id, p as i32), node))
            })
            .collect();
        ClusterView {
            version,
            live,
            partitions,
            live_ids,
            placements,
        }
    }

    pub fn is_live(&self, node_id: i32) -> bool {
        self.live_ids.contains(&node_id)
    }

    /// Whether `session` is its node id's current session and live.
    pub fn is_current_and_live(&self, session: BrokerSession) -> bool {
        self.live.iter().any(|b| b.session == session)
    }

    pub fn broker(&self, node_id: i32) -> Option<&RegisteredBroker> {
        self.live.iter().find(|b| b.session.node_id == node_id)
    }

    /// The live broker leading `tp` and the epoch it leads at; `None` while
    /// no live broker does (between a leader's loss and the next claim).
    pub fn leader(&self, tp: &TopicPartition) -> Option<(&RegisteredBroker, i32)> {
        let state = self.partitions.get(tp)?;
        let leader = state.leader?;
        let broker = self.live.iter().find(|b| b.session == leader)?;
        Some((broker, state.leader_epoch))
    }

    /// The partition's current leader epoch (0 for a partition not known).
    pub fn leader_epoch(&self, tp: &TopicPartition) -> i32 {
        self.partitions.get(tp).map_or(0, |s| s.leader_epoch)
    }

    /// The live broker `tp` is placed on; `None` for an unknown partition
    /// or when no broker is live.
    pub fn placement_of(&self, tp: &TopicPartition) -> Option<i32> {
        self.placements.get(tp).copied()
    }

    /// The live broker that coordinates `group_id`.
    pub fn coordinator_of(&self, group_id: &str) -> Option<&RegisteredBroker> {
        let node = placement::owner(&placement::group_key(group_id), &self.live_ids)?;
        self.broker(node)
    }

    /// The broker named as controller: the live broker with the lowest node
    /// id (admin clients send some requests to it; any broker serves them).
    pub fn controller(&self) -> Option<&RegisteredBroker> {
        self.live.first()
    }
}
