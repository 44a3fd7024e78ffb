//! One classic consumer group: Kafka's state machine (Empty →
//! PreparingRebalance → CompletingRebalance → Stable, and Dead), as the
//! Java `GroupMetadataManager` runs it for the classic protocol.
//!
//! Plain data and synchronous methods, driven by the coordinator under the
//! group's lock with the current time passed in (`now_ms`), so the rules can
//! be tested without sockets or sleeps. JoinGroup and SyncGroup answers that
//! must wait (for the other members, for the leader's assignment) are
//! oneshot channels the handlers await.
//!
//! The broker relays what the members say: protocol metadata and
//! assignments are opaque bytes, so eager and cooperative rebalancing work
//! alike (both are client-side protocols).

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use metadata::CommittedOffset;
use tokio::sync::oneshot;

use super::{GroupConfig, GroupError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// Kafka's names, as DescribeGroups and ListGroups report them.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup request carries, decoded.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member first gets MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
}

/// A member as the leader sees it in its JoinGroup answer.
#[derive(Clone, Debug)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// A JoinGroup answer. `error` set means the rest is as Kafka fills it on errors.
#[derive(Clone, Debug)]
pub struct JoinAnswer {
    pub error: Option<GroupError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<JoinedMember>,
}

impl JoinAnswer {
    pub fn error(error: GroupError, member_id: &str) -> Self {
        JoinAnswer {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

pub type SyncAnswer = Result<SyncAssignment, GroupError>;

#[derive(Clone, Debug)]
pub struct SyncAssignment {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// An answer now, or one to wait for.
pub enum Pending<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

#[derive(Debug)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// When it joined the group, to pick a leader in join order.
    joined_seq: u64,
    join_waiter: Option<oneshot::Sender<JoinAnswer>>,
    sync_waiter: Option<oneshot::Sender<SyncAnswer>>,
    heartbeat_deadline_ms: i64,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn awaiting(&self) -> bool {
        self.join_waiter.is_some() || self.sync_waiter.is_some()
    }
}

/// The initial-rebalance delay of a new group (Kafka's `DelayedInitialJoin`):
/// completes only when it runs out, extended while members keep arriving.
#[derive(Debug)]
struct InitialDelay {
    remaining_ms: i64,
    member_added: bool,
}

#[derive(Debug)]
pub struct Group {
    pub group_id: String,
    pub state: GroupState,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id → member id of static members.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their deadlines.
    pending_members: HashMap<String, i64>,
    rebalance_deadline_ms: i64,
    initial_delay: Option<InitialDelay>,
    /// Members of the current generation that have not sent SyncGroup yet,
    /// and when they are removed if they still have not (Kafka's
    /// `DelayedSync`: the generation's rebalance timeout after it formed).
    pending_sync: HashSet<String>,
    sync_deadline_ms: i64,
    /// When the group last changed state (offsets retention counts from the
    /// moment it became Empty).
    pub state_since_ms: i64,
    next_join_seq: u64,
    /// Committed offsets by (topic, partition), as stored.
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
}

impl Group {
    pub fn new(group_id: &str, protocol_type: Option<String>, now_ms: i64) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            rebalance_deadline_ms: 0,
            initial_delay: None,
            pending_sync: HashSet::new(),
            sync_deadline_ms: 0,
            state_since_ms: now_ms,
            next_join_seq: 0,
            offsets: BTreeMap::new(),
        }
    }

    fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_since_ms = now_ms;
    }

    /// JoinGroup.
    pub fn join(
        &mut self,
        req: JoinRequest,
        cfg: &GroupConfig,
        now_ms: i64,
    ) -> Pending<JoinAnswer> {
        let fail = |e: GroupError| Pending::Now(JoinAnswer::error(e, &req.member_id));
        if self.state == GroupState::Dead {
            return fail(GroupError::CoordinatorNotAvailable);
        }
        if req.session_timeout_ms < cfg.min_session_timeout_ms
            || req.session_timeout_ms > cfg.max_session_timeout_ms
        {
            return fail(GroupError::InvalidSessionTimeout);
        }
        if !self.supports(&req.protocol_type, &req.protocols) {
            return fail(GroupError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            return self.join_unknown_member(req, cfg, now_ms);
        }
        if self.pending_members.remove(&req.member_id).is_some() {
            return self.add_member_and_rebalance(req.member_id.clone(), req, cfg, now_ms);
        }
        if !self.members.contains_key(&req.member_id) {
            return fail(GroupError::UnknownMemberId);
        }
        if let Err(e) = self.check_instance(&req.member_id, req.group_instance_id.as_deref()) {
            return fail(e);
        }
        let member_id = req.member_id.clone();
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_wait(req, now_ms),
            GroupState::CompletingRebalance => {
                if self.members[&member_id].protocols == req.protocols {
                    // A resent JoinGroup: the answer of this generation again.
                    Pending::Now(self.current_answer(&member_id, true))
                } else {
                    self.update_member_and_rebalance(req, cfg, now_ms)
                }
            }
            GroupState::Stable => {
                let is_leader = self.leader.as_deref() == Some(member_id.as_str());
                if is_leader || self.members[&member_id].protocols != req.protocols {
                    self.update_member_and_rebalance(req, cfg, now_ms)
                } else {
                    Pending::Now(self.current_answer(&member_id, false))
                }
            }
            GroupState::Empty | GroupState::Dead => fail(GroupError::UnknownMemberId),
        }
    }

    fn join_unknown_member(
        &mut self,
        req: JoinRequest,
        cfg: &GroupConfig,
        now_ms: i64,
    ) -> Pending<JoinAnswer> {
        let prefix = req
            .group_instance_id
            .clone()
            .unwrap_or_else(|| req.client_id.clone());
        let new_member_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
        if let Some(instance_id) = req.group_instance_id.clone() {
            if let Some(old_member_id) = self.static_members.get(&instance_id).cloned() {
                return self.replace_static_member(old_member_id, new_member_id, req, cfg, now_ms);
            }
            self.static_members
                .insert(instance_id, new_member_id.clone());
            return self.add_member_and_rebalance(new_member_id, req, cfg, now_ms);
        }
        if req.require_known_member_id {
            let deadline = now_ms + i64::from(req.session_timeout_ms);
            self.pending_members.insert(new_member_id.clone(), deadline);
            return Pending::Now(JoinAnswer::error(
                GroupError::MemberIdRequired,
                &new_member_id,
            ));
        }
        self.add_member_and_rebalance(new_member_id, req, cfg, now_ms)
    }

    /// A static member rejoining under a new member id (KIP-345): the old id
    /// is fenced; in a Stable group whose protocol would not change, the
    /// member gets its assignment back without a rebalance.
    fn replace_static_member(
        &mut self,
        old_member_id: String,
        new_member_id: String,
        req: JoinRequest,
        cfg: &GroupConfig,
        now_ms: i64,
    ) -> Pending<JoinAnswer> {
        let Some(mut member) = self.members.remove(&old_member_id) else {
            // Its instance id outlived the member (removed meanwhile): a new member.
            let instance_id = req.group_instance_id.clone().unwrap_or_default();
            self.static_members
                .insert(instance_id, new_member_id.clone());
            return self.add_member_and_rebalance(new_member_id, req, cfg, now_ms);
        };
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.send(JoinAnswer::error(
                GroupError::FencedInstanceId,
                &old_member_id,
            ));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.send(Err(GroupError::FencedInstanceId));
        }
        let old_leader = self.leader.clone().unwrap_or_default();
        if self.leader.as_deref() == Some(old_member_id.as_str()) {
            self.leader = Some(new_member_id.clone());
        }
        let protocols_changed = member.protocols != req.protocols;
        member.member_id = new_member_id.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.protocols = req.protocols.clone();
        member.heartbeat_deadline_ms = now_ms + i64::from(req.session_timeout_ms);
        self.members.insert(new_member_id.clone(), member);
        // The new incarnation owes the SyncGroup the old one did, by the same
        // deadline. (Kafka's `replaceStaticMember` leaves the old id in its
        // pending set, so the expiry removes nobody yet still rebalances;
        // moving the entry spares the group that needless rebalance.)
        if self.pending_sync.remove(&old_member_id) {
            self.pending_sync.insert(new_member_id.clone());
        }
        if let Some(instance_id) = &req.group_instance_id {
            self.static_members
                .insert(instance_id.clone(), new_member_id.clone());
        }
        match self.state {
            GroupState::Stable
                if !protocols_changed
                    || self.protocol_name.as_deref() == Some(self.select_protocol().as_str()) =>
            {
                // Kafka answers with the *old* leader id, so a static leader
                // does not run a trivial assignment the Stable group would
                // never hand out; it syncs as a follower and gets its own.
                let mut answer = self.current_answer(&new_member_id, false);
                answer.leader = old_leader;
                Pending::Now(answer)
            }
            GroupState::PreparingRebalance => self.update_member_and_wait(
                JoinRequest {
                    member_id: new_member_id,
                    ..req
                },
                now_ms,
            ),
            _ => {
                let (tx, rx) = oneshot::channel();
                self.members
                    .get_mut(&new_member_id)
                    .expect("just inserted")
                    .join_waiter = Some(tx);
                self.prepare_rebalance(cfg, now_ms);
                self.maybe_complete_join(now_ms);
                Pending::Later(rx)
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        req: JoinRequest,
        cfg: &GroupConfig,
        now_ms: i64,
    ) -> Pending<JoinAnswer> {
        if self.protocol_type.is_none() || self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        let (tx, rx) = oneshot::channel();
        self.next_join_seq += 1;
        self.members.insert(
            member_id.clone(),
            Member {
                member_id,
                group_instance_id: req.group_instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocols: req.protocols,
                assignment: Bytes::new(),
                joined_seq: self.next_join_seq,
                join_waiter: Some(tx),
                sync_waiter: None,
                heartbeat_deadline_ms: now_ms + i64::from(req.session_timeout_ms),
            },
        );
        if let Some(delay) = &mut self.initial_delay {
            delay.member_added = true;
        }
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(cfg, now_ms);
        }
        self.maybe_complete_join(now_ms);
        Pending::Later(rx)
    }

    fn update_member(&mut self, req: &JoinRequest, now_ms: i64) -> oneshot::Receiver<JoinAnswer> {
        let member = self
            .members
            .get_mut(&req.member_id)
            .expect("checked member");
        member.protocols = req.protocols.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.heartbeat_deadline_ms = now_ms + i64::from(req.session_timeout_ms);
        let (tx, rx) = oneshot::channel();
        if let Some(old) = member.join_waiter.replace(tx) {
            // The same member joined twice in one rebalance: the newer request wins.
            let _ = old.send(JoinAnswer::error(
                GroupError::UnknownMemberId,
                &req.member_id,
            ));
        }
        rx
    }

    fn update_member_and_wait(&mut self, req: JoinRequest, now_ms: i64) -> Pending<JoinAnswer> {
        let rx = self.update_member(&req, now_ms);
        self.maybe_complete_join(now_ms);
        Pending::Later(rx)
    }

    fn update_member_and_rebalance(
        &mut self,
        req: JoinRequest,
        cfg: &GroupConfig,
        now_ms: i64,
    ) -> Pending<JoinAnswer> {
        let rx = self.update_member(&req, now_ms);
        self.prepare_rebalance(cfg, now_ms);
        self.maybe_complete_join(now_ms);
        Pending::Later(rx)
    }

    /// Starts a rebalance: members must rejoin. A new group waits
    /// `group.initial.rebalance.delay.ms` first (so a starting fleet lands in
    /// one generation); any other rebalance ends as soon as every known
    /// member has rejoined, or at the largest rebalance timeout.
    fn prepare_rebalance(&mut self, cfg: &GroupConfig, now_ms: i64) {
        if self.state == GroupState::CompletingRebalance {
            self.fail_sync_waiters(GroupError::RebalanceInProgress);
        }
        self.pending_sync.clear();
        let max_rebalance_ms = self.max_rebalance_timeout_ms();
        if self.state == GroupState::Empty && cfg.initial_rebalance_delay_ms > 0 {
            let delay = cfg.initial_rebalance_delay_ms.min(max_rebalance_ms.max(0));
            self.initial_delay = Some(InitialDelay {
                remaining_ms: (max_rebalance_ms - delay).max(0),
                member_added: false,
            });
            self.rebalance_deadline_ms = now_ms + delay;
        } else {
            self.initial_delay = None;
            self.rebalance_deadline_ms = now_ms + max_rebalance_ms;
        }
        self.transition(GroupState::PreparingRebalance, now_ms);
    }

    /// The group's rebalance timeout: the largest of its members'.
    fn max_rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// Completes the join phase once every member has rejoined (never during
    /// the initial delay, which only ends by time).
    fn maybe_complete_join(&mut self, now_ms: i64) {
        if self.state == GroupState::PreparingRebalance
            && self.initial_delay.is_none()
            && self.all_members_joined()
        {
            self.complete_join(now_ms);
        }
    }

    fn complete_join(&mut self, now_ms: i64) {
        self.initial_delay = None;
        // Dynamic members that did not rejoin in time are out; static ones
        // stay until their session runs out (KIP-345).
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in gone {
            self.remove_member(&member_id);
        }
        if !self.members.is_empty() && self.members.values().all(|m| m.join_waiter.is_none()) {
            // Only absent static members: wait another rebalance timeout.
            self.rebalance_deadline_ms = now_ms + self.max_rebalance_timeout_ms();
            return;
        }
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader = None;
            self.transition(GroupState::Empty, now_ms);
            return;
        }
        self.protocol_name = Some(self.select_protocol());
        let leader_alive = self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l));
        if !leader_alive {
            self.leader = self
                .members
                .values()
                .min_by_key(|m| m.joined_seq)
                .map(|m| m.member_id.clone());
        }
        self.transition(GroupState::CompletingRebalance, now_ms);
        self.pending_sync = self.members.keys().cloned().collect();
        self.sync_deadline_ms = now_ms + self.max_rebalance_timeout_ms();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in ids {
            let answer = self.current_answer(&member_id, true);
            let member = self.members.get_mut(&member_id).expect("listed");
            member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(answer);
            }
        }
    }

    /// The JoinGroup answer of the current generation for `member_id`; the
    /// leader gets every member's metadata when `with_members`.
    fn current_answer(&self, member_id: &str, with_members: bool) -> JoinAnswer {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if with_members && leader == member_id {
            let mut all: Vec<&Member> = self.members.values().collect();
            all.sort_by_key(|m| m.joined_seq);
            all.into_iter()
                .map(|m| JoinedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinAnswer {
            error: None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }

    /// Whether a member with these protocols may join (Kafka's
    /// `supportsProtocols`): same protocol type, and a protocol every member
    /// supports.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// The protocol every member supports that most members prefer (each
    /// votes for its first supported candidate); ties go to the name first
    /// in the leader-to-be's order.
    fn select_protocol(&self) -> String {
        let mut candidates: Vec<&String> = match self.members.values().min_by_key(|m| m.joined_seq)
        {
            Some(first) => first.protocols.iter().map(|(n, _)| n).collect(),
            None => return String::new(),
        };
        candidates.retain(|name| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == *name))
        });
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                *votes.entry(name).or_default() += 1;
            }
        }
        candidates
            .iter()
            .max_by_key(|name| {
                (
                    votes.get(*name).copied().unwrap_or(0),
                    std::cmp::Reverse(candidates.iter().position(|c| c == *name)),
                )
            })
            .map(|s| (*s).clone())
            .unwrap_or_default()
    }

    /// SyncGroup.
    pub fn sync(
        &mut self,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        protocol: (Option<&str>, Option<&str>),
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
    ) -> Pending<SyncAnswer> {
        let fail = |e| Pending::Now(Err(e));
        if !self.members.contains_key(member_id) {
            return fail(GroupError::UnknownMemberId);
        }
        if let Err(e) = self.check_instance(member_id, group_instance_id) {
            return fail(e);
        }
        if generation_id != self.generation_id {
            return fail(GroupError::IllegalGeneration);
        }
        let (protocol_type, protocol_name) = protocol;
        // Inconsistent only when both sides name one and they differ.
        let differs = |asked: Option<&str>, ours: Option<&str>| matches!((asked, ours), (Some(a), Some(o)) if a != o);
        if differs(protocol_type, self.protocol_type.as_deref())
            || differs(protocol_name, self.protocol_name.as_deref())
        {
            return fail(GroupError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => fail(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => fail(GroupError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                self.pending_sync.remove(member_id);
                let (tx, rx) = oneshot::channel();
                let member = self.members.get_mut(member_id).expect("checked");
                member.sync_waiter = Some(tx);
                member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.member_id).unwrap_or_default();
                    }
                    self.transition(GroupState::Stable, now_ms);
                    let answer_of = |m: &Member| SyncAssignment {
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol_name.clone(),
                        assignment: m.assignment.clone(),
                    };
                    let answers: Vec<(String, SyncAssignment)> = self
                        .members
                        .values()
                        .map(|m| (m.member_id.clone(), answer_of(m)))
                        .collect();
                    for (id, answer) in answers {
                        if let Some(waiter) =
                            self.members.get_mut(&id).and_then(|m| m.sync_waiter.take())
                        {
                            let _ = waiter.send(Ok(answer));
                        }
                    }
                }
                Pending::Later(rx)
            }
            GroupState::Stable => {
                self.pending_sync.remove(member_id);
                let member = self.members.get_mut(member_id).expect("checked");
                member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                Pending::Now(Ok(SyncAssignment {
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment: member.assignment.clone(),
                }))
            }
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        match self.state {
            GroupState::Dead => return Err(GroupError::CoordinatorNotAvailable),
            GroupState::Empty => return Err(GroupError::UnknownMemberId),
            _ => {}
        }
        self.check_instance(member_id, group_instance_id)?;
        let Some(member) = self.members.get_mut(member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        if generation_id != self.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
        match self.state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// LeaveGroup of one member (by member id, or by instance id for static
    /// members).
    pub fn leave(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        cfg: &GroupConfig,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let member_id = match group_instance_id {
            Some(instance_id) => {
                let Some(known) = self.static_members.get(instance_id).cloned() else {
                    return Err(GroupError::UnknownMemberId);
                };
                if !member_id.is_empty() && member_id != known {
                    return Err(GroupError::FencedInstanceId);
                }
                known
            }
            None => {
                if self.pending_members.remove(member_id).is_some() {
                    self.maybe_complete_join(now_ms);
                    return Ok(());
                }
                member_id.to_string()
            }
        };
        if !self.members.contains_key(&member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        self.remove_member(&member_id);
        self.after_member_removed(cfg, now_ms);
        Ok(())
    }

    fn remove_member(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if let Some(mut member) = self.members.remove(member_id) {
            if let Some(instance_id) = &member.group_instance_id
                && self.static_members.get(instance_id).map(String::as_str) == Some(member_id)
            {
                self.static_members.remove(instance_id);
            }
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(JoinAnswer::error(GroupError::UnknownMemberId, member_id));
            }
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(Err(GroupError::UnknownMemberId));
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
    }

    fn after_member_removed(&mut self, cfg: &GroupConfig, now_ms: i64) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(cfg, now_ms);
                self.maybe_complete_join(now_ms);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Answers every held JoinGroup and SyncGroup with `error`.
    pub fn fail_waiters(&mut self, error: GroupError) {
        for m in self.members.values_mut() {
            if let Some(waiter) = m.join_waiter.take() {
                let _ = waiter.send(JoinAnswer::error(error, &m.member_id));
            }
        }
        self.fail_sync_waiters(error);
    }

    fn fail_sync_waiters(&mut self, error: GroupError) {
        for m in self.members.values_mut() {
            if let Some(waiter) = m.sync_waiter.take() {
                let _ = waiter.send(Err(error));
            }
        }
    }

    /// A static member's instance id must map to this member id.
    fn check_instance(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        match group_instance_id {
            Some(instance_id) => match self.static_members.get(instance_id) {
                Some(known) if known != member_id => Err(GroupError::FencedInstanceId),
                Some(_) => Ok(()),
                None => Err(GroupError::UnknownMemberId),
            },
            None => Ok(()),
        }
    }

    /// OffsetCommit's check of who commits (Kafka's `validateOffsetCommit`
    /// for classic groups). A commit with generation -1, no member id and
    /// no instance id is a "simple" commit, accepted while the group has no
    /// members.
    pub fn validate_commit(
        &self,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if generation_id < 0 && member_id.is_empty() && group_instance_id.is_none() {
            return if self.state == GroupState::Empty {
                Ok(())
            } else {
                Err(GroupError::UnknownMemberId)
            };
        }
        if self.state == GroupState::Empty {
            return Err(GroupError::UnknownMemberId);
        }
        self.check_instance(member_id, group_instance_id)?;
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation_id != self.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Takes what a claim found stored: the committed offsets (which are
    /// the whole truth: nothing was written here before the claim) and the
    /// protocol type when the group has none yet.
    pub fn adopt(&mut self, claim: metadata::GroupClaim) {
        self.offsets = claim
            .offsets
            .into_iter()
            .map(|o| ((o.topic.clone(), o.partition), o))
            .collect();
        if self.protocol_type.is_none() {
            self.protocol_type = claim
                .stored
                .map(|g| g.protocol_type)
                .filter(|t| !t.is_empty());
        }
    }

    pub fn has_pending_members(&self) -> bool {
        !self.pending_members.is_empty()
    }

    /// Restarts a member's session timer (an accepted offset commit counts
    /// as a heartbeat, as in Kafka).
    pub fn touch(&mut self, member_id: &str, now_ms: i64) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.heartbeat_deadline_ms = now_ms + i64::from(m.session_timeout_ms);
        }
    }

    /// Expires pending members and members whose session ran out, and ends
    /// a join phase whose time is up. Called by the coordinator's timer.
    pub fn tick(&mut self, cfg: &GroupConfig, now_ms: i64) {
        if self.state == GroupState::Dead {
            return;
        }
        let pending_before = self.pending_members.len();
        self.pending_members
            .retain(|_, deadline| *deadline > now_ms);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting() && m.heartbeat_deadline_ms <= now_ms)
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in &expired {
            tracing::info!(group = self.group_id, member_id, "member session expired");
            self.remove_member(member_id);
        }
        let sync_expired = self.expire_pending_sync(now_ms);
        if !expired.is_empty() || sync_expired {
            self.after_member_removed(cfg, now_ms);
        } else if pending_before != self.pending_members.len() {
            self.maybe_complete_join(now_ms);
        }
        if self.state == GroupState::PreparingRebalance && now_ms >= self.rebalance_deadline_ms {
            if let Some(delay) = &mut self.initial_delay
                && delay.member_added
                && delay.remaining_ms > 0
            {
                let step = cfg.initial_rebalance_delay_ms.min(delay.remaining_ms);
                delay.remaining_ms -= step;
                delay.member_added = false;
                self.rebalance_deadline_ms = now_ms + step;
                return;
            }
            self.complete_join(now_ms);
        }
    }

    /// Removes the members of the current generation that have not sent
    /// SyncGroup within its rebalance timeout (Kafka's `onExpirePendingSync`),
    /// so a member that joined and went quiet cannot hold the others in
    /// CompletingRebalance, or keep partitions nobody consumes. True when
    /// any was removed.
    fn expire_pending_sync(&mut self, now_ms: i64) -> bool {
        let completing = matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        );
        if !completing || self.pending_sync.is_empty() || now_ms < self.sync_deadline_ms {
            return false;
        }
        let mut late: Vec<String> = self.pending_sync.drain().collect();
        late.sort();
        tracing::info!(
            group = self.group_id,
            members = ?late,
            "members removed: no SyncGroup within the rebalance timeout"
        );
        for member_id in &late {
            self.remove_member(member_id);
        }
        true
    }

    /// Members subscribed to `topic`, for OffsetDelete. Classic consumer
    /// metadata (`ConsumerProtocolSubscription`) is parsed only as far as its
    /// topic list.
    pub fn subscribed_to(&self, topic: &str) -> bool {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.protocol_type.as_deref() == Some("consumer")
            && self.members.values().any(|m| {
                subscription_topics(&m.metadata_for(&protocol))
                    .iter()
                    .any(|t| t == topic)
            })
    }
}

/// The topics of a `ConsumerProtocolSubscription` (version i16, then an
/// array of i16-length strings). Empty for bytes that do not parse.
fn subscription_topics(metadata: &[u8]) -> Vec<String> {
    let mut topics = Vec::new();
    let Some(count) = metadata.get(2..6) else {
        return topics;
    };
    let count = i32::from_be_bytes(count.try_into().expect("4 bytes"));
    let mut at = 6usize;
    for _ in 0..count.max(0) {
        let Some(len) = metadata.get(at..at + 2) else {
            break;
        };
        let len = i16::from_be_bytes(len.try_into().expect("2 bytes")).max(0) as usize;
        let Some(name) = metadata.get(at + 2..at + 2 + len) else {
            break;
        };
        topics.push(String::from_utf8_lossy(name).into_owned());
        at += 2 + len;
    }
    topics
}
