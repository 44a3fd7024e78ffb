//! The group coordinator: every classic consumer group placed on this
//! broker (a single broker coordinates them all), their committed offsets,
//! and the timer that expires sessions and ends rebalances.
//!
//! Each group is a `Group` state machine behind its own lock; the registry
//! maps group ids to them. Committed offsets are written to the metadata
//! store before they are acknowledged and cached in the group; membership is
//! memory only — after a restart, members rejoin (as after a Kafka
//! coordinator move) and resume from their committed offsets.
//!
//! Before its first store read or write of a group, the coordinator claims
//! it (`GroupStore::claim_groups`): the claim raises the group's coordinator
//! epoch and returns what is stored of it, and every later write carries
//! that epoch. A broker whose write is refused for a newer epoch lost the
//! group to another coordinator: it forgets the group and answers
//! NOT_COORDINATOR, so clients find the new one. A group placed elsewhere
//! is released once its writes in flight are done.
//!
//! Time comes from the injected clock: the timer task ticks every
//! `TICK_MS` and hands `clock.now_ms()` to each group.

mod group;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use metadata::{BrokerSession, CommittedOffset, ErrorKind, GroupClaim, MetadataStore, StoredGroup};
use storage::Clock;
use tokio_util::sync::CancellationToken;

pub use group::{
    Group, GroupState, JoinAnswer, JoinRequest, JoinedMember, Pending, SyncAnswer, SyncAssignment,
};

/// How often the timer looks at session and rebalance deadlines.
const TICK_MS: u64 = 50;

/// The group settings, with Kafka's names and defaults.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`: a new group's first rebalance
    /// waits this long for more members (3 s in Kafka).
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `offsets.retention.minutes`, in ms: offsets of an Empty group expire
    /// this long after it became Empty (or after their commit, for groups
    /// that never had members).
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: 3_000,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1_000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4_096,
        }
    }
}

/// The group errors Kafka answers; `crate::errors::group_error` maps them to codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("unknown member id")]
    UnknownMemberId,
    #[error("illegal generation")]
    IllegalGeneration,
    #[error("rebalance in progress")]
    RebalanceInProgress,
    #[error("fenced instance id")]
    FencedInstanceId,
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    #[error("invalid session timeout")]
    InvalidSessionTimeout,
    #[error("member id required")]
    MemberIdRequired,
    #[error("group id not found")]
    GroupIdNotFound,
    #[error("group is not empty")]
    NonEmptyGroup,
    #[error("group is subscribed to the topic")]
    GroupSubscribedToTopic,
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
    #[error("invalid group id")]
    InvalidGroupId,
    #[error("metadata store failed")]
    Storage,
    /// The broker is shutting down, or another broker coordinates the
    /// group: clients look for the coordinator again.
    #[error("not coordinator")]
    NotCoordinator,
    /// The group is placed here but its previous coordinator has not let
    /// go of it yet: clients retry.
    #[error("coordinator load in progress")]
    CoordinatorLoadInProgress,
}

/// Offsets a timer step found expired: (group id, its entry, partitions,
/// whether the group itself goes, having no offsets left and no members).
type Expired = (String, Arc<Entry>, Vec<(String, i32)>, bool);

/// A group's entry in the registry: the state machine, a lock that orders
/// the group's claim and store writes (store write, then cache), and the
/// coordinator epoch this broker claimed it at.
struct Entry {
    group: Mutex<Group>,
    commits: tokio::sync::Mutex<()>,
    /// `None` until claimed; only read or set with `commits` held.
    epoch: Mutex<Option<i32>>,
    /// Whether the group exists as Kafka sees it: stored, joined or
    /// committed to. An OffsetFetch of an unknown group makes an entry
    /// (to claim it and read the store) but not a group.
    exists: std::sync::atomic::AtomicBool,
}

impl Entry {
    fn epoch(&self) -> Option<i32> {
        *self.epoch.lock().expect("epoch lock")
    }

    /// Whether this is a group Kafka would not know: not claimed here yet
    /// (its previous coordinator still holds it), or never stored, joined
    /// or committed to.
    fn is_unknown(&self) -> bool {
        self.epoch().is_none() || !self.exists.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn mark_existing(&self) {
        self.exists
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A group as DescribeGroups shows it.
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
}

pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Only in a Stable group, as Kafka.
    pub metadata: bytes::Bytes,
    pub assignment: bytes::Bytes,
}

/// Which groups this broker coordinates (from the cluster's placement).
pub type Placement = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// This broker's current session (a new one after it registered again).
pub type SessionSource = Arc<dyn Fn() -> BrokerSession + Send + Sync>;

pub struct GroupCoordinator {
    config: GroupConfig,
    metadata: Arc<dyn MetadataStore>,
    clock: Arc<dyn Clock>,
    session: SessionSource,
    groups: Mutex<HashMap<String, Arc<Entry>>>,
    /// The groups placed on this broker; every group until the cluster
    /// says otherwise.
    placement: std::sync::RwLock<Option<Placement>>,
}

impl GroupCoordinator {
    /// Starts the timer, which stops with `shutdown`. Groups are claimed
    /// and loaded by `keep_placed`, or at their first request.
    pub fn open(
        config: GroupConfig,
        metadata: Arc<dyn MetadataStore>,
        clock: Arc<dyn Clock>,
        session: SessionSource,
        shutdown: CancellationToken,
    ) -> Arc<GroupCoordinator> {
        let coordinator = Arc::new(GroupCoordinator {
            config,
            metadata,
            clock,
            session,
            groups: Mutex::new(HashMap::new()),
            placement: std::sync::RwLock::new(None),
        });
        tokio::spawn(run_timer(Arc::downgrade(&coordinator), shutdown));
        coordinator
    }

    /// The coordinator epoch of `entry`, claiming the group first when this
    /// broker has not yet; the claim brings what is stored of the group.
    /// The caller holds `entry.commits`.
    async fn claimed(&self, group_id: &str, entry: &Entry) -> Result<i32, GroupError> {
        if let Some(epoch) = entry.epoch() {
            return Ok(epoch);
        }
        let claim = self.claim(group_id).await?;
        let epoch = claim.coordinator_epoch;
        if claim.stored.is_some() || !claim.offsets.is_empty() {
            entry.mark_existing();
        }
        entry.group.lock().expect("group lock").adopt(claim);
        *entry.epoch.lock().expect("epoch lock") = Some(epoch);
        Ok(epoch)
    }

    async fn claim(&self, group_id: &str) -> Result<GroupClaim, GroupError> {
        let session = (self.session)();
        let answer = self
            .metadata
            .claim_groups(session, &[group_id.to_string()], self.now_ms())
            .await
            .map(|mut answers| answers.pop());
        match answer {
            Ok(Some(Ok(claim))) => {
                tracing::debug!(
                    group = group_id,
                    epoch = claim.coordinator_epoch,
                    "claimed group"
                );
                Ok(claim)
            }
            Ok(Some(Err(metadata::Error::GroupNotClaimable { coordinator, .. }))) => {
                tracing::debug!(group = group_id, %coordinator, "group not released yet");
                Err(GroupError::CoordinatorLoadInProgress)
            }
            Err(e) if e.kind() == ErrorKind::Fenced => Err(GroupError::NotCoordinator),
            Ok(Some(Err(e))) | Err(e) => {
                tracing::warn!(group = group_id, error = %e, "could not claim group");
                Err(GroupError::Storage)
            }
            Ok(None) => Err(GroupError::Storage),
        }
    }

    /// The answer to a store write of a group. A write refused for a newer
    /// coordinator epoch means another broker took the group: forget it.
    fn stored(
        &self,
        group_id: &str,
        result: metadata::Result<()>,
        what: &str,
    ) -> Result<(), GroupError> {
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::Fenced => {
                tracing::warn!(group = group_id, error = %e, "{what} refused: another broker coordinates the group now");
                self.forget(group_id);
                Err(GroupError::NotCoordinator)
            }
            Err(e) => {
                tracing::warn!(group = group_id, error = %e, "{what} not stored");
                Err(GroupError::Storage)
            }
        }
    }

    /// Drops a group this broker no longer coordinates; its waiting members
    /// get NOT_COORDINATOR.
    fn forget(&self, group_id: &str) {
        let gone = self.groups.lock().expect("groups lock").remove(group_id);
        if let Some(entry) = gone {
            entry
                .group
                .lock()
                .expect("group lock")
                .fail_waiters(GroupError::NotCoordinator);
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Whether this broker coordinates `group_id`; others get NOT_COORDINATOR.
    pub fn placed_here(&self, group_id: &str) -> bool {
        self.placement
            .read()
            .expect("placement lock")
            .as_ref()
            .is_none_or(|placed| placed(group_id))
    }

    fn check_placed(&self, group_id: &str) -> Result<(), GroupError> {
        if self.placed_here(group_id) {
            Ok(())
        } else {
            Err(GroupError::NotCoordinator)
        }
    }

    /// Takes a new placement: forgets the groups that moved to another
    /// broker (their waiting members get NOT_COORDINATOR and rejoin there)
    /// and releases them once their writes in flight are done, then claims
    /// the stored groups placed here, which loads their committed offsets.
    /// A group its previous coordinator has not released yet is claimed at
    /// its next request. Membership is not stored: members rejoin, as after
    /// a Kafka coordinator move.
    pub async fn keep_placed(&self, placement: Placement) {
        *self.placement.write().expect("placement lock") = Some(placement.clone());
        let gone: Vec<(String, Arc<Entry>)> = {
            let mut groups = self.groups.lock().expect("groups lock");
            let ids: Vec<String> = groups.keys().filter(|g| !placement(g)).cloned().collect();
            ids.into_iter()
                .filter_map(|id| groups.remove(&id).map(|e| (id, e)))
                .collect()
        };
        let mut released = Vec::new();
        for (id, entry) in &gone {
            entry
                .group
                .lock()
                .expect("group lock")
                .fail_waiters(GroupError::NotCoordinator);
            let _order = entry.commits.lock().await;
            if let Some(epoch) = entry.epoch() {
                released.push((id.clone(), epoch));
            }
        }
        if !released.is_empty()
            && let Err(e) = self
                .metadata
                .release_groups((self.session)(), &released)
                .await
        {
            tracing::warn!(error = %e, "could not release groups; the next coordinator waits for this broker's lease");
        }
        let stored = match self.metadata.groups().await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the stored groups");
                return;
            }
        };
        let mut loaded = 0;
        for stored in stored {
            let id = stored.group_id;
            if !placement(&id) || self.entry(&id).is_some_and(|e| e.epoch().is_some()) {
                continue;
            }
            let entry = self.entry_or_create(&id, None);
            let _order = entry.commits.lock().await;
            match self.claimed(&id, &entry).await {
                Ok(_) => loaded += 1,
                Err(e) => {
                    tracing::debug!(group = id, error = %e, "group placed here not claimed yet")
                }
            }
        }
        if !gone.is_empty() || loaded > 0 {
            tracing::info!(
                moved_away = gone.len(),
                released = released.len(),
                loaded,
                "group placement changed"
            );
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Every group's entry, taken out of the registry lock.
    fn entries(&self) -> Vec<(String, Arc<Entry>)> {
        self.groups
            .lock()
            .expect("groups lock")
            .iter()
            .map(|(id, e)| (id.clone(), e.clone()))
            .collect()
    }

    /// Locks a group with its timers brought up to now, for a request: a
    /// member whose session ran out is gone for it even if the timer task
    /// (every 50 ms) has not turned yet, as Kafka's purgatory expires it on
    /// the millisecond. Clients time their requests by those deadlines
    /// (librdkafka's suite deletes a group session.timeout.ms after its
    /// static members close).
    fn lock_current<'a>(&self, entry: &'a Entry) -> MutexGuard<'a, Group> {
        let mut group = entry.group.lock().expect("group lock");
        group.tick(&self.config, self.now_ms());
        group
    }

    fn entry(&self, group_id: &str) -> Option<Arc<Entry>> {
        self.groups
            .lock()
            .expect("groups lock")
            .get(group_id)
            .cloned()
    }

    fn entry_or_create(&self, group_id: &str, protocol_type: Option<&str>) -> Arc<Entry> {
        let mut groups = self.groups.lock().expect("groups lock");
        if let Some(entry) = groups.get(group_id) {
            return entry.clone();
        }
        let group = Group::new(group_id, protocol_type.map(str::to_string), self.now_ms());
        let entry = new_entry(group);
        groups.insert(group_id.to_string(), entry.clone());
        entry
    }

    /// JoinGroup. A known member id of an unknown group is UNKNOWN_MEMBER_ID.
    /// The group is claimed first, so that one moved here joins with its
    /// stored protocol type and offsets.
    pub async fn join(&self, group_id: &str, request: JoinRequest) -> Pending<JoinAnswer> {
        if let Err(e) = self.check_placed(group_id) {
            return Pending::Now(JoinAnswer::error(e, &request.member_id));
        }
        if group_id.is_empty() {
            return Pending::Now(JoinAnswer::error(
                GroupError::InvalidGroupId,
                &request.member_id,
            ));
        }
        let entry = if request.member_id.is_empty() {
            self.entry_or_create(group_id, Some(&request.protocol_type))
        } else {
            match self.entry(group_id) {
                Some(entry) => entry,
                None => {
                    return Pending::Now(JoinAnswer::error(
                        GroupError::UnknownMemberId,
                        &request.member_id,
                    ));
                }
            }
        };
        {
            let _order = entry.commits.lock().await;
            if let Err(e) = self.claimed(group_id, &entry).await {
                return Pending::Now(JoinAnswer::error(e, &request.member_id));
            }
        }
        entry.mark_existing();
        let protocol_type = request.protocol_type.clone();
        let (answer, changed_type) = {
            let mut group = self.lock_current(&entry);
            let before = group.protocol_type.clone();
            let answer = group.join(request, &self.config, self.now_ms());
            (answer, group.protocol_type != before)
        };
        if changed_type {
            // The answer stands either way: a failed save only means
            // ListGroups misses the type after a restart; a fenced one
            // already answers the group's later requests NOT_COORDINATOR.
            let _ = self.save_group(group_id, &entry, &protocol_type).await;
        }
        answer
    }

    /// Records the group's protocol type, so ListGroups shows it after a restart.
    async fn save_group(
        &self,
        group_id: &str,
        entry: &Entry,
        protocol_type: &str,
    ) -> Result<(), GroupError> {
        let stored = StoredGroup {
            group_id: group_id.to_string(),
            protocol_type: protocol_type.to_string(),
        };
        let _order = entry.commits.lock().await;
        let epoch = self.claimed(group_id, entry).await?;
        let saved = self.metadata.save_group(&stored, epoch).await;
        self.stored(group_id, saved, "group save")
    }

    pub fn sync(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        protocol: (Option<&str>, Option<&str>),
        assignments: Vec<(String, bytes::Bytes)>,
    ) -> Pending<SyncAnswer> {
        if let Err(e) = self.check_placed(group_id) {
            return Pending::Now(Err(e));
        }
        let Some(entry) = self.entry(group_id) else {
            return Pending::Now(Err(GroupError::UnknownMemberId));
        };
        let mut group = self.lock_current(&entry);
        group.sync(
            generation_id,
            member_id,
            group_instance_id,
            protocol,
            assignments,
            self.now_ms(),
        )
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        self.check_placed(group_id)?;
        let entry = self.entry(group_id).ok_or(GroupError::UnknownMemberId)?;
        let mut group = self.lock_current(&entry);
        group.heartbeat(generation_id, member_id, group_instance_id, self.now_ms())
    }

    /// LeaveGroup: one answer per (member id, instance id). `Err` for the
    /// whole request when the group does not exist.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        self.check_placed(group_id)?;
        let entry = self.entry(group_id).ok_or(GroupError::UnknownMemberId)?;
        let mut group = self.lock_current(&entry);
        if group.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let now_ms = self.now_ms();
        Ok(members
            .iter()
            .map(|(member_id, instance_id)| {
                group.leave(member_id, instance_id.as_deref(), &self.config, now_ms)
            })
            .collect())
    }

    /// OffsetCommit of already-checked partitions: the member is checked,
    /// the offsets stored, then cached. `version_9_or_later` picks the error
    /// for a member commit to a group that does not exist.
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        version_9_or_later: bool,
        mut offsets: Vec<CommittedOffset>,
    ) -> Result<(), GroupError> {
        self.check_placed(group_id)?;
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let simple = generation_id < 0 && member_id.is_empty() && group_instance_id.is_none();
        let entry = match self.entry(group_id) {
            Some(entry) => entry,
            None if generation_id < 0 => self.entry_or_create(group_id, None),
            None if version_9_or_later => return Err(GroupError::GroupIdNotFound),
            None => return Err(GroupError::IllegalGeneration),
        };
        let _order = entry.commits.lock().await;
        let epoch = self.claimed(group_id, &entry).await?;
        let now_ms = self.now_ms();
        {
            let mut group = self.lock_current(&entry);
            group.validate_commit(generation_id, member_id, group_instance_id)?;
            if !simple {
                group.touch(member_id, now_ms);
            }
        }
        for o in &mut offsets {
            o.commit_timestamp_ms = now_ms;
        }
        let committed = self
            .metadata
            .commit_offsets(group_id, epoch, &offsets)
            .await;
        self.stored(group_id, committed, "offset commit")?;
        entry.mark_existing();
        let mut group = self.lock_current(&entry);
        for o in offsets {
            group.offsets.insert((o.topic.clone(), o.partition), o);
        }
        Ok(())
    }

    /// OffsetFetch: the committed offsets of `partitions` (all of the
    /// group's when `None`), -1 for those without one; nothing for an
    /// unknown group asked for all. A group not claimed here yet is claimed
    /// first: its offsets may have been committed at its previous
    /// coordinator.
    pub async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<CommittedOffset>, GroupError> {
        self.check_placed(group_id)?;
        let entry = match self.entry(group_id) {
            Some(entry) => entry,
            None => self.entry_or_create(group_id, None),
        };
        if entry.epoch().is_none() {
            let _order = entry.commits.lock().await;
            self.claimed(group_id, &entry).await?;
        }
        let committed = entry.group.lock().expect("group lock").offsets.clone();
        Ok(match partitions {
            None => committed.into_values().collect(),
            Some(wanted) => wanted
                .into_iter()
                .map(|(topic, partition)| {
                    committed
                        .get(&(topic.clone(), partition))
                        .cloned()
                        .unwrap_or(CommittedOffset {
                            topic,
                            partition,
                            offset: -1,
                            leader_epoch: -1,
                            metadata: String::new(),
                            commit_timestamp_ms: -1,
                        })
                })
                .collect(),
        })
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let entry = self.entry(group_id).filter(|e| !e.is_unknown())?;
        let group = self.lock_current(&entry);
        let stable = group.state == GroupState::Stable;
        let protocol = group.protocol_name.clone().unwrap_or_default();
        Some(GroupDescription {
            state: group.state,
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol_name: protocol.clone(),
            members: group
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.protocols
                            .iter()
                            .find(|(n, _)| *n == protocol)
                            .map(|(_, b)| b.clone())
                            .unwrap_or_default()
                    } else {
                        bytes::Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        bytes::Bytes::new()
                    },
                })
                .collect(),
        })
    }

    /// (group id, protocol type, state) of every group, ordered by id.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let entries = self.entries();
        let mut out: Vec<_> = entries
            .into_iter()
            .filter(|(_, e)| !e.is_unknown())
            .map(|(id, e)| {
                let g = self.lock_current(&e);
                (id, g.protocol_type.clone().unwrap_or_default(), g.state)
            })
            .filter(|(_, _, state)| *state != GroupState::Dead)
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// (group id, topic, partition, committed offset) of the groups placed
    /// here, at most `limit` of them, ordered by group and partition: for
    /// the consumer-lag metrics.
    pub fn committed_offsets(&self, limit: usize) -> Vec<(String, String, i32, i64)> {
        let mut entries = self.entries();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::new();
        for (id, entry) in entries {
            let group = entry.group.lock().expect("group lock");
            for ((topic, partition), committed) in &group.offsets {
                if out.len() >= limit {
                    return out;
                }
                out.push((id.clone(), topic.clone(), *partition, committed.offset));
            }
        }
        out
    }

    /// DeleteGroups of one group: only an Empty group goes, with its offsets.
    pub async fn delete_group(&self, group_id: &str) -> Result<(), GroupError> {
        self.check_placed(group_id)?;
        let entry = self
            .entry(group_id)
            .filter(|e| !e.is_unknown())
            .ok_or(GroupError::GroupIdNotFound)?;
        let _order = entry.commits.lock().await;
        let epoch = self.claimed(group_id, &entry).await?;
        {
            let mut group = self.lock_current(&entry);
            match group.state {
                GroupState::Dead => return Err(GroupError::GroupIdNotFound),
                GroupState::Empty => group.state = GroupState::Dead,
                _ => return Err(GroupError::NonEmptyGroup),
            }
        }
        let deleted = self.metadata.delete_group(group_id, epoch).await;
        self.groups.lock().expect("groups lock").remove(group_id);
        self.stored(group_id, deleted, "group deletion")
    }

    /// OffsetDelete: per partition, GROUP_SUBSCRIBED_TO_TOPIC for topics a
    /// member of a non-empty consumer group is subscribed to.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<((String, i32), Option<GroupError>)>, GroupError> {
        self.check_placed(group_id)?;
        let entry = self
            .entry(group_id)
            .filter(|e| !e.is_unknown())
            .ok_or(GroupError::GroupIdNotFound)?;
        let _order = entry.commits.lock().await;
        let epoch = self.claimed(group_id, &entry).await?;
        let answers: Vec<((String, i32), Option<GroupError>)> = {
            let group = self.lock_current(&entry);
            match group.state {
                GroupState::Dead => return Err(GroupError::GroupIdNotFound),
                GroupState::Empty => {}
                _ if group.protocol_type.as_deref() != Some("consumer") => {
                    return Err(GroupError::NonEmptyGroup);
                }
                _ => {}
            }
            let non_empty = group.state != GroupState::Empty;
            partitions
                .into_iter()
                .map(|tp| {
                    let error = (non_empty && group.subscribed_to(&tp.0))
                        .then_some(GroupError::GroupSubscribedToTopic);
                    (tp, error)
                })
                .collect()
        };
        let gone: Vec<(String, i32)> = answers
            .iter()
            .filter(|(_, e)| e.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        let deleted = self
            .metadata
            .delete_committed_offsets(group_id, epoch, &gone)
            .await;
        self.stored(group_id, deleted, "offset deletion")?;
        let mut group = entry.group.lock().expect("group lock");
        for tp in &gone {
            group.offsets.remove(tp);
        }
        Ok(answers)
    }

    /// One timer step: sessions, rebalances, and (every check interval)
    /// offsets retention.
    fn tick(&self, retention_due: bool) -> Vec<Expired> {
        let now_ms = self.now_ms();
        let entries = self.entries();
        let mut expired = Vec::new();
        for (id, entry) in entries {
            let mut group = entry.group.lock().expect("group lock");
            group.tick(&self.config, now_ms);
            if retention_due && group.state == GroupState::Empty {
                let retention = self.config.offsets_retention_ms;
                let empty_since = group.state_since_ms;
                let has_protocol = group.protocol_type.is_some();
                let old: Vec<(String, i32)> = group
                    .offsets
                    .values()
                    .filter(|o| {
                        let base = if has_protocol {
                            empty_since.max(o.commit_timestamp_ms)
                        } else {
                            o.commit_timestamp_ms
                        };
                        now_ms.saturating_sub(base) >= retention
                    })
                    .map(|o| (o.topic.clone(), o.partition))
                    .collect();
                for tp in &old {
                    group.offsets.remove(tp);
                }
                // A group with nothing left goes too (Kafka's cleanup), but
                // not one just created: its first member may be between its
                // MEMBER_ID_REQUIRED answer and its second JoinGroup.
                let drop_group = group.offsets.is_empty()
                    && !group.has_pending_members()
                    && now_ms.saturating_sub(empty_since)
                        >= self.config.offsets_retention_check_interval_ms;
                if !old.is_empty() || drop_group {
                    expired.push((id, entry.clone(), old, drop_group));
                }
            }
        }
        expired
    }

    async fn expire(&self, expired: Vec<Expired>) {
        for (group_id, entry, partitions, drop_group) in expired {
            tracing::info!(
                group = group_id,
                partitions = partitions.len(),
                drop_group,
                "offsets expired"
            );
            let _order = entry.commits.lock().await;
            let removed = drop_group && {
                let mut groups = self.groups.lock().expect("groups lock");
                let empty = groups.get(&group_id).is_some_and(|e| {
                    let g = e.group.lock().expect("group lock");
                    Arc::ptr_eq(e, &entry) && g.state == GroupState::Empty && g.offsets.is_empty()
                });
                if empty {
                    groups.remove(&group_id);
                }
                empty
            };
            // Nothing of a group never claimed here was stored by this broker.
            let Some(epoch) = entry.epoch() else {
                continue;
            };
            let result = if removed {
                self.metadata.delete_group(&group_id, epoch).await
            } else {
                self.metadata
                    .delete_committed_offsets(&group_id, epoch, &partitions)
                    .await
            };
            let _ = self.stored(&group_id, result, "offsets expiry");
        }
    }
}

impl GroupCoordinator {
    /// Answers every held JoinGroup and SyncGroup with NOT_COORDINATOR, so
    /// a stopping broker does not keep them waiting for a rebalance.
    fn answer_waiters_on_shutdown(&self) {
        for (_, entry) in self.entries() {
            entry
                .group
                .lock()
                .expect("group lock")
                .fail_waiters(GroupError::NotCoordinator);
        }
    }
}

fn new_entry(group: Group) -> Arc<Entry> {
    Arc::new(Entry {
        group: Mutex::new(group),
        commits: tokio::sync::Mutex::new(()),
        epoch: Mutex::new(None),
        exists: std::sync::atomic::AtomicBool::new(false),
    })
}

async fn run_timer(coordinator: std::sync::Weak<GroupCoordinator>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(Duration::from_millis(TICK_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_retention_ms = i64::MIN;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.cancelled() => {
                if let Some(coordinator) = coordinator.upgrade() {
                    coordinator.answer_waiters_on_shutdown();
                }
                return;
            }
        }
        let Some(coordinator) = coordinator.upgrade() else {
            return;
        };
        let now_ms = coordinator.now_ms();
        let retention_due = now_ms.saturating_sub(last_retention_ms)
            >= coordinator.config.offsets_retention_check_interval_ms;
        if retention_due {
            last_retention_ms = now_ms;
        }
        let expired = coordinator.tick(retention_due);
        if !expired.is_empty() {
            coordinator.expire(expired).await;
        }
    }
}

#[cfg(test)]
mod tests;
