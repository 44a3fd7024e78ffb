//! Consumer groups on ScyllaDB: one Scylla partition per group id in
//! `groups`, its static columns the coordinator (epoch and session) and
//! protocol type, its rows the committed offsets. Every write is one LWT
//! (a conditional batch for several rows) conditioned on the coordinator
//! epoch and on a coordinator holding it, so a broker that lost the group —
//! or released it — writes nothing more. `group_ids` lists the ids for
//! `groups()`, bucketed by a hash of the id.
//!
//! A group is stored while it has a protocol type or committed offsets; a
//! deleted group keeps its static coordinator columns, so its epoch never
//! goes back.

use async_trait::async_trait;

use super::cql::{self, Statement};
use super::exec::{Lwt, Values, binds};
use super::registry::Holders;
use super::store::{GROUP_ID_BUCKETS, ScyllaStore, bucket_of};
use super::topics::leader_of;
use crate::model::{BrokerSession, CommittedOffset, GroupClaim, StoredGroup};
use crate::store::{Error, GroupStore, Result};

type GroupColumns = (
    Option<i32>,
    Option<i32>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<i64>,
    Option<i32>,
    Option<String>,
    Option<i64>,
);

/// What `groups` holds of one group id.
#[derive(Debug, Default)]
struct GroupRow {
    epoch: Option<i32>,
    coordinator: Option<BrokerSession>,
    protocol_type: Option<String>,
    offsets: Vec<CommittedOffset>,
}

impl GroupRow {
    fn stored(&self, group_id: &str) -> Option<StoredGroup> {
        (self.protocol_type.is_some() || !self.offsets.is_empty()).then(|| StoredGroup {
            group_id: group_id.to_string(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
        })
    }
}

impl ScyllaStore {
    async fn group_row(&self, group_id: &str) -> Result<GroupRow> {
        let rows: Vec<GroupColumns> = self.cql().read(&cql::GROUP_READ, binds![group_id]).await?;
        let mut group = GroupRow::default();
        for (
            epoch,
            node,
            inc,
            protocol_type,
            topic,
            partition,
            offset,
            leader_epoch,
            metadata,
            at,
        ) in rows
        {
            group.epoch = epoch;
            group.coordinator = leader_of(node, inc);
            group.protocol_type = protocol_type;
            if let (Some(topic), Some(partition), Some(offset)) = (topic, partition, offset) {
                group.offsets.push(CommittedOffset {
                    topic,
                    partition,
                    offset,
                    leader_epoch: leader_epoch.unwrap_or(-1),
                    metadata: metadata.unwrap_or_default(),
                    commit_timestamp_ms: at.unwrap_or(0),
                });
            }
        }
        group
            .offsets
            .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(group)
    }

    /// (epoch, coordinator) of a group at SERIAL consistency.
    async fn coordinator_serial(
        &self,
        group_id: &str,
    ) -> Result<(Option<i32>, Option<BrokerSession>)> {
        let row: Option<(Option<i32>, Option<i32>, Option<i64>)> = self
            .cql()
            .read_one(&cql::GROUP_COORDINATOR_READ_SERIAL, binds![group_id])
            .await?;
        Ok(row.map_or((None, None), |(e, n, i)| (e, leader_of(n, i))))
    }

    /// Runs a group write conditioned on `epoch` (`statements[0]` carries
    /// the condition). Not applied: `GroupFenced`. Unknown: read back at
    /// SERIAL; if the epoch still holds, the write is sent again — it sets
    /// the same values under the same condition, so a second apply changes
    /// nothing.
    async fn under_epoch(
        &self,
        group_id: &str,
        epoch: i32,
        statements: Vec<(&'static Statement, Values)>,
    ) -> Result<()> {
        for _ in 0..2 {
            let answer = if statements.len() == 1 {
                let (statement, values) = &statements[0];
                self.cql().lwt(statement, values.clone()).await?
            } else {
                let batch: Vec<(&Statement, Values)> =
                    statements.iter().map(|(s, v)| (*s, v.clone())).collect();
                self.cql().lwt_batch(&batch).await?
            };
            let (current, coordinator) = match answer {
                Lwt::Applied => return Ok(()),
                Lwt::NotApplied | Lwt::Uncertain => self.coordinator_serial(group_id).await?,
            };
            if current != Some(epoch) || coordinator.is_none() {
                if answer == Lwt::Uncertain {
                    // It may have applied before the group moved on.
                    return Err(Error::Timeout);
                }
                return Err(Error::GroupFenced {
                    group_id: group_id.to_string(),
                    expected: epoch,
                    current: current.unwrap_or(0),
                });
            }
            if answer == Lwt::NotApplied {
                // Refused although the epoch holds now: it moved and came
                // back? Epochs never go back, so this is a store we do not
                // understand.
                return Err(Error::Backend(format!(
                    "group_id={group_id}: write under epoch {epoch} refused while it holds"
                )));
            }
        }
        Err(Error::Timeout)
    }

    async fn list_group_id(&self, group_id: &str) -> Result<()> {
        self.cql()
            .write(
                &cql::GROUP_IDS_ADD,
                binds![bucket_of(group_id, GROUP_ID_BUCKETS), group_id],
            )
            .await
    }

    async fn claim_group(
        &self,
        session: BrokerSession,
        group_id: &str,
        now_ms: i64,
        holders: &mut Holders,
    ) -> Result<Result<GroupClaim>> {
        for _ in 0..3 {
            let row = self.group_row(group_id).await?;
            if let Some(coordinator) = self
                .free_from(session, row.coordinator, now_ms, holders)
                .await?
            {
                return Ok(Err(Error::GroupNotClaimable {
                    group_id: group_id.to_string(),
                    coordinator,
                }));
            }
            let epoch = row.epoch.unwrap_or(0);
            let new_epoch = epoch.checked_add(1).ok_or_else(|| {
                Error::Backend(format!("coordinator epoch overflow group_id={group_id}"))
            })?;
            let answer = match row.epoch {
                None => {
                    self.cql()
                        .lwt(
                            &cql::GROUP_CLAIM_NEW,
                            binds![group_id, new_epoch, session.node_id, session.incarnation],
                        )
                        .await?
                }
                Some(_) => {
                    self.cql()
                        .lwt(
                            &cql::GROUP_CLAIM,
                            binds![
                                new_epoch,
                                session.node_id,
                                session.incarnation,
                                group_id,
                                epoch
                            ],
                        )
                        .await?
                }
            };
            let claimed = match answer {
                Lwt::Applied => true,
                Lwt::NotApplied => false,
                Lwt::Uncertain => {
                    self.coordinator_serial(group_id).await? == (Some(new_epoch), Some(session))
                }
            };
            if claimed {
                // Read again: writes under the old epoch may have landed
                // between the first read and the claim.
                let row = self.group_row(group_id).await?;
                return Ok(Ok(GroupClaim {
                    group_id: group_id.to_string(),
                    coordinator_epoch: new_epoch,
                    stored: row.stored(group_id),
                    offsets: row.offsets,
                }));
            }
        }
        Ok(Err(Error::Unavailable(format!(
            "claim group_id={group_id}: its coordinator kept changing; retry"
        ))))
    }
}

#[async_trait]
impl GroupStore for ScyllaStore {
    async fn claim_groups(
        &self,
        session: BrokerSession,
        group_ids: &[String],
        now_ms: i64,
    ) -> Result<Vec<Result<GroupClaim>>> {
        self.check_open(session).await?;
        let mut holders = Holders::default();
        let mut answers = Vec::with_capacity(group_ids.len());
        for group_id in group_ids {
            answers.push(
                self.claim_group(session, group_id, now_ms, &mut holders)
                    .await?,
            );
        }
        // Group claims do not move the cluster version (as in the SQLite
        // backend): brokers find coordinators by placement, not by reading.
        Ok(answers)
    }

    async fn release_groups(&self, session: BrokerSession, groups: &[(String, i32)]) -> Result<()> {
        let mut failure = None;
        for (group_id, epoch) in groups {
            let answer = self
                .cql()
                .lwt(
                    &cql::GROUP_RELEASE,
                    binds![
                        group_id.as_str(),
                        *epoch,
                        session.node_id,
                        session.incarnation
                    ],
                )
                .await;
            match answer {
                Ok(Lwt::Applied | Lwt::NotApplied) => {}
                Ok(Lwt::Uncertain) => failure = Some(Error::Timeout),
                Err(e) => failure = Some(e),
            }
        }
        failure.map_or(Ok(()), Err)
    }

    async fn save_group(&self, group: &StoredGroup, coordinator_epoch: i32) -> Result<()> {
        self.list_group_id(&group.group_id).await?;
        self.under_epoch(
            &group.group_id,
            coordinator_epoch,
            vec![(
                &cql::GROUP_SAVE,
                binds![
                    group.protocol_type.as_str(),
                    group.group_id.as_str(),
                    coordinator_epoch
                ],
            )],
        )
        .await
    }

    async fn groups(&self) -> Result<Vec<StoredGroup>> {
        let mut ids = Vec::new();
        for bucket in 0..GROUP_ID_BUCKETS {
            let rows: Vec<(String,)> = self
                .cql()
                .read(&cql::GROUP_IDS_READ, binds![bucket])
                .await?;
            ids.extend(rows.into_iter().map(|(id,)| id));
        }
        ids.sort();
        let mut groups = Vec::new();
        for group_id in ids {
            if let Some(stored) = self.group_row(&group_id).await?.stored(&group_id) {
                groups.push(stored);
            }
        }
        Ok(groups)
    }

    async fn delete_group(&self, group_id: &str, coordinator_epoch: i32) -> Result<()> {
        let row = self.group_row(group_id).await?;
        let mut statements = vec![(&cql::GROUP_FORGET, binds![group_id, coordinator_epoch])];
        for o in &row.offsets {
            statements.push((
                &cql::GROUP_OFFSET_DELETE,
                binds![group_id, o.topic.as_str(), o.partition],
            ));
        }
        self.under_epoch(group_id, coordinator_epoch, statements)
            .await
    }

    async fn commit_offsets(
        &self,
        group_id: &str,
        coordinator_epoch: i32,
        offsets: &[CommittedOffset],
    ) -> Result<()> {
        self.list_group_id(group_id).await?;
        let mut statements = vec![(
            &cql::GROUP_HOLD,
            binds![coordinator_epoch, group_id, coordinator_epoch],
        )];
        for o in offsets {
            statements.push((
                &cql::GROUP_OFFSET_WRITE,
                binds![
                    o.offset,
                    o.leader_epoch,
                    o.metadata.as_str(),
                    o.commit_timestamp_ms,
                    group_id,
                    o.topic.as_str(),
                    o.partition
                ],
            ));
        }
        self.under_epoch(group_id, coordinator_epoch, statements)
            .await
    }

    async fn committed_offsets(&self, group_id: &str) -> Result<Vec<CommittedOffset>> {
        Ok(self.group_row(group_id).await?.offsets)
    }

    async fn delete_committed_offsets(
        &self,
        group_id: &str,
        coordinator_epoch: i32,
        partitions: &[(String, i32)],
    ) -> Result<()> {
        let mut statements = vec![(
            &cql::GROUP_HOLD,
            binds![coordinator_epoch, group_id, coordinator_epoch],
        )];
        for (topic, partition) in partitions {
            statements.push((
                &cql::GROUP_OFFSET_DELETE,
                binds![group_id, topic.as_str(), *partition],
            ));
        }
        self.under_epoch(group_id, coordinator_epoch, statements)
            .await
    }
}
