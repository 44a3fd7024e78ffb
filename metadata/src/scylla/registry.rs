//! The broker registry and partition leadership on ScyllaDB: sessions with
//! leases in `broker_sessions` (one Scylla partition per node id, written
//! only by LWT), leader rows in `partition_leaders` (claimed and released by
//! LWT on the leader epoch), the cluster version as a counter.
//!
//! What a claim does about the partition's holder is `decide::claim_step`;
//! a holder whose lease lapsed is fenced first and its journal applied, so
//! the claim hands over every commit the holder made.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use async_trait::async_trait;

use super::cql;
use super::decide::{self, ClaimStep, RegisterStep};
use super::exec::{Lwt, binds};
use super::store::{BUCKET, CLOSED, Led, OPEN, ScyllaStore, SessionInfo, partition_exists};
use super::topics::{LeaderColumns, leader_of};
use crate::model::{
    BrokerRegistration, BrokerSession, PartitionClaim, PartitionState, RegisteredBroker,
    SessionStatus, TopicId, TopicPartition,
};
use crate::store::{ClusterStore, Error, Result};

/// Rounds of read-decide-write a claim or registration makes before it
/// gives up on a row that keeps changing.
const ROUNDS: usize = 4;

/// What one claim call learned of holders' sessions, so each is read once.
#[derive(Default)]
pub(super) struct Holders {
    rows: HashMap<i32, Option<SessionInfo>>,
    /// Ended sessions whose journals this call applied.
    applied: HashSet<BrokerSession>,
}

impl ScyllaStore {
    /// Frees the way for `claimer` past `holder` (the session a leader or
    /// coordinator row names). `Ok(None)`: free, and an ended holder's
    /// journal applied; `Ok(Some(holder))`: a live session holds it.
    pub(super) async fn free_from(
        &self,
        claimer: BrokerSession,
        holder: Option<BrokerSession>,
        now_ms: i64,
        holders: &mut Holders,
    ) -> Result<Option<BrokerSession>> {
        let Some(h) = holder else { return Ok(None) };
        if h == claimer {
            return Ok(None);
        }
        for _ in 0..ROUNDS {
            if let Entry::Vacant(slot) = holders.rows.entry(h.node_id) {
                slot.insert(self.session_row(h.node_id, false).await?);
            }
            let row = holders.rows[&h.node_id].clone();
            match decide::claim_step(claimer, holder, row.as_ref().map(|i| &i.row), now_ms) {
                ClaimStep::NotClaimable => return Ok(Some(h)),
                ClaimStep::Claim => {
                    if holders.applied.insert(h) {
                        self.apply_ended_journal(h).await?;
                    }
                    return Ok(None);
                }
                ClaimStep::FenceHolder => {
                    let lease = row.as_ref().map_or(0, |i| i.row.lease_expires_ms);
                    if self.fence(h, lease, claimer).await? {
                        self.apply_ended_journal(h).await?;
                        holders.applied.insert(h);
                        // Its other partitions in this call: ended, applied.
                        if let Some(Some(info)) = holders.rows.get_mut(&h.node_id) {
                            info.row.status = SessionStatus::Fenced;
                        }
                        return Ok(None);
                    }
                    // Renewed (or changed) meanwhile: read it again.
                    holders.rows.remove(&h.node_id);
                }
            }
        }
        Ok(Some(h))
    }

    /// One partition of a claim. The outer `Result` fails the whole call;
    /// the inner one is this partition's answer.
    async fn claim_one(
        &self,
        session: BrokerSession,
        tp: TopicPartition,
        now_ms: i64,
        topics: &HashMap<TopicId, (String, i32)>,
        holders: &mut Holders,
    ) -> Result<Result<PartitionClaim>> {
        if !partition_exists(topics, tp) {
            return Ok(Err(Error::UnknownTopic(format!("topic_partition={tp}"))));
        }
        for _ in 0..ROUNDS {
            let row = self.leader_rows(tp.topic_id).await?.remove(&tp.partition);
            let Some((_, epoch, node, incarnation)) = row else {
                // The partition's first claim: its leader row, at epoch 0.
                self.cql()
                    .lwt(
                        &cql::LEADER_CREATE,
                        binds![tp.topic_id, tp.partition, 0_i32],
                    )
                    .await?;
                continue;
            };
            let epoch = epoch.unwrap_or(0);
            let holder = leader_of(node, incarnation);
            if let Some(leader) = self.free_from(session, holder, now_ms, holders).await? {
                return Ok(Err(Error::NotClaimable {
                    topic_partition: tp,
                    leader,
                }));
            }
            let leader_epoch = epoch.checked_add(1).ok_or_else(|| {
                Error::Backend(format!("leader epoch overflow topic_partition={tp}"))
            })?;
            let answer = self
                .cql()
                .lwt(
                    &cql::LEADER_CLAIM,
                    binds![
                        leader_epoch,
                        session.node_id,
                        session.incarnation,
                        tp.topic_id,
                        tp.partition,
                        epoch
                    ],
                )
                .await?;
            let claimed = match answer {
                Lwt::Applied => true,
                Lwt::NotApplied => false,
                Lwt::Uncertain => {
                    let now: Option<LeaderColumns> = self
                        .cql()
                        .read_one(&cql::LEADER_READ_SERIAL, binds![tp.topic_id, tp.partition])
                        .await?;
                    now.is_some_and(|(_, e, n, i)| {
                        e == Some(leader_epoch) && leader_of(n, i) == Some(session)
                    })
                }
            };
            if !claimed {
                continue;
            }
            let offsets = self.offset_rows(tp.topic_id).await?;
            let (log_start_offset, next_offset) =
                offsets.get(&tp.partition).copied().unwrap_or((0, 0));
            let producers = self.partition_producer_states(tp).await?;
            return Ok(Ok(PartitionClaim {
                state: PartitionState {
                    topic_partition: tp,
                    leader_epoch,
                    leader: Some(session),
                    log_start_offset,
                    next_offset,
                },
                producers,
            }));
        }
        Ok(Err(Error::Unavailable(format!(
            "claim topic_partition={tp}: its leader row kept changing; retry"
        ))))
    }
}

#[async_trait]
impl ClusterStore for ScyllaStore {
    async fn cluster_id(&self) -> Result<String> {
        Ok(self.inner.cluster_id.clone())
    }

    async fn cluster_version(&self) -> Result<i64> {
        self.cluster_version_now().await
    }

    async fn register_broker(
        &self,
        registration: &BrokerRegistration,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<BrokerSession> {
        let node_id = registration.node_id;
        let lease = now_ms.saturating_add(lease_ms);
        // Listed before its session exists, so `brokers()` never misses a
        // node id that registered (a listed id with no session is skipped).
        self.cql()
            .lwt(&cql::BROKER_IDS_ADD, binds![BUCKET, node_id])
            .await?;
        let host = registration.host.as_str();
        let port = registration.port;
        let rack = registration.rack.clone();
        for _ in 0..ROUNDS {
            let row = self.session_row(node_id, true).await?;
            let (answer, incarnation) =
                match decide::register_step(row.as_ref().map(|i| &i.row), now_ms) {
                    RegisterStep::InUse { lease_expires_ms } => {
                        let info = row.expect("in use means a row");
                        return Err(Error::BrokerIdInUse {
                            node_id,
                            host: info.host,
                            port: info.port,
                            lease_expires_ms,
                        });
                    }
                    RegisterStep::Insert => (
                        self.cql()
                            .lwt(
                                &cql::SESSION_INSERT,
                                binds![
                                    node_id,
                                    1_i64,
                                    OPEN,
                                    lease,
                                    0_i64,
                                    host,
                                    port,
                                    rack.clone()
                                ],
                            )
                            .await?,
                        1,
                    ),
                    RegisterStep::Replace { incarnation } => {
                        let old = row.expect("replace means a row").row;
                        let status = match old.status {
                            SessionStatus::Open => OPEN,
                            SessionStatus::Closed => CLOSED,
                            SessionStatus::Fenced => super::store::FENCED,
                        };
                        (
                            self.cql()
                                .lwt(
                                    &cql::SESSION_REPLACE,
                                    binds![
                                        incarnation + 1,
                                        OPEN,
                                        lease,
                                        0_i64,
                                        host,
                                        port,
                                        rack.clone(),
                                        node_id,
                                        incarnation,
                                        status,
                                        old.lease_expires_ms
                                    ],
                                )
                                .await?,
                            incarnation + 1,
                        )
                    }
                };
            let registered = match answer {
                Lwt::Applied => true,
                Lwt::NotApplied => false,
                Lwt::Uncertain => self.session_row(node_id, true).await?.is_some_and(|i| {
                    i.row.incarnation == incarnation
                        && i.row.status == SessionStatus::Open
                        && i.row.lease_expires_ms == lease
                }),
            };
            if registered {
                let session = BrokerSession {
                    node_id,
                    incarnation,
                };
                {
                    let journal = self.journal(session);
                    let mut journal = journal.lock().await;
                    journal.head = Some(0);
                    journal.applied = 0;
                }
                self.bump_cluster_version().await;
                return Ok(session);
            }
        }
        Err(Error::Unavailable(format!(
            "register node_id={node_id}: its session row kept changing; retry"
        )))
    }

    async fn renew_lease(&self, session: BrokerSession, now_ms: i64, lease_ms: i64) -> Result<()> {
        let lease = now_ms.saturating_add(lease_ms);
        let answer = self
            .cql()
            .lwt(
                &cql::SESSION_RENEW,
                binds![lease, session.node_id, session.incarnation, OPEN],
            )
            .await?;
        match answer {
            Lwt::Applied => Ok(()),
            Lwt::NotApplied => Err(Error::SessionFenced(session)),
            Lwt::Uncertain => match self.session_row(session.node_id, true).await? {
                Some(i)
                    if i.row.incarnation == session.incarnation
                        && i.row.status == SessionStatus::Open =>
                {
                    if i.row.lease_expires_ms == lease {
                        Ok(())
                    } else {
                        Err(Error::Unavailable(format!(
                            "lease renewal of {session} did not apply; retry"
                        )))
                    }
                }
                _ => Err(Error::SessionFenced(session)),
            },
        }
    }

    async fn close_session(&self, session: BrokerSession) -> Result<()> {
        let journal = self.journal(session);
        {
            // Whatever it committed is applied before its partitions go.
            let mut journal = journal.lock().await;
            match self.settle(&mut journal, session).await {
                Ok(()) | Err(Error::SessionFenced(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let answer = self
            .cql()
            .lwt(
                &cql::SESSION_CLOSE,
                binds![CLOSED, session.node_id, session.incarnation, OPEN],
            )
            .await?;
        let closed = match answer {
            Lwt::Applied => true,
            Lwt::NotApplied => false,
            Lwt::Uncertain => {
                if self
                    .session_row(session.node_id, true)
                    .await?
                    .is_some_and(|i| {
                        i.row.incarnation == session.incarnation
                            && i.row.status == SessionStatus::Open
                    })
                {
                    return Err(Error::Unavailable(format!(
                        "close of {session} did not apply; retry"
                    )));
                }
                true
            }
        };
        self.forget_journal(session);
        if closed {
            self.bump_cluster_version().await;
        }
        Ok(())
    }

    async fn brokers(&self) -> Result<Vec<RegisteredBroker>> {
        let ids: Vec<(i32,)> = self
            .cql()
            .read(&cql::BROKER_IDS_READ, binds![BUCKET])
            .await?;
        let mut brokers = Vec::with_capacity(ids.len());
        for (node_id,) in ids {
            let Some(info) = self.session_row(node_id, false).await? else {
                continue;
            };
            brokers.push(RegisteredBroker {
                registration: BrokerRegistration {
                    node_id,
                    host: info.host,
                    port: info.port,
                    rack: info.rack,
                },
                session: BrokerSession {
                    node_id,
                    incarnation: info.row.incarnation,
                },
                status: info.row.status,
                lease_expires_ms: info.row.lease_expires_ms,
            });
        }
        brokers.sort_by_key(|b| b.registration.node_id);
        Ok(brokers)
    }

    async fn claim_partitions(
        &self,
        session: BrokerSession,
        partitions: &[TopicPartition],
        now_ms: i64,
    ) -> Result<Vec<Result<PartitionClaim>>> {
        let journal = self.journal(session);
        let mut journal = journal.lock().await;
        if let Err(e) = self.check_open(session).await {
            drop(journal);
            self.forget_journal(session);
            return Err(e);
        }
        // Our own commits in doubt are settled (and applied) before any
        // partition's next offset is read.
        self.settle(&mut journal, session).await?;
        let topics = self.topic_map().await?;
        let mut holders = Holders::default();
        let mut answers = Vec::with_capacity(partitions.len());
        let mut changed = false;
        for &tp in partitions {
            // Unknown until the claim answers: a claim whose answer is lost
            // must not leave the old epoch here for commits to pass under.
            journal.led.remove(&tp);
            let answer = match self
                .claim_one(session, tp, now_ms, &topics, &mut holders)
                .await
            {
                Ok(answer) => answer,
                Err(e) => {
                    if changed {
                        self.bump_cluster_version().await;
                    }
                    return Err(e);
                }
            };
            if let Ok(claim) = &answer {
                changed = true;
                journal.led.insert(
                    tp,
                    Led {
                        leader_epoch: claim.state.leader_epoch,
                        next_offset: claim.state.next_offset,
                        last_segment: None,
                    },
                );
            }
            answers.push(answer);
        }
        if changed {
            self.bump_cluster_version().await;
        }
        Ok(answers)
    }

    async fn release_partitions(
        &self,
        session: BrokerSession,
        partitions: &[(TopicPartition, i32)],
    ) -> Result<()> {
        let journal = self.journal(session);
        let mut journal = journal.lock().await;
        // Whatever it committed is applied before another broker can claim
        // the partitions: a claimer of a released partition does not look
        // at this (live) session's journal.
        match self.settle(&mut journal, session).await {
            Ok(()) | Err(Error::SessionFenced(_)) => {}
            Err(e) => return Err(e),
        }
        let mut changed = false;
        let mut failure = None;
        for &(tp, epoch) in partitions {
            journal.led.remove(&tp);
            let answer = self
                .cql()
                .lwt(
                    &cql::LEADER_RELEASE,
                    binds![
                        tp.topic_id,
                        tp.partition,
                        epoch,
                        session.node_id,
                        session.incarnation
                    ],
                )
                .await;
            match answer {
                Ok(Lwt::Applied) => changed = true,
                Ok(Lwt::NotApplied) => {}
                // Still released in effect: this process commits nothing
                // for it any more; a claimer finds it held by a live session
                // only until this one closes or its lease lapses.
                Ok(Lwt::Uncertain) => failure = Some(Error::Timeout),
                Err(e) => failure = Some(e),
            }
        }
        if changed {
            self.bump_cluster_version().await;
        }
        failure.map_or(Ok(()), Err)
    }
}
