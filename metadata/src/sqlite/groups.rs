//! Consumer groups in the SQLite backend: coordinators claimed by epoch,
//! protocol types and committed offsets. Every write checks the group's
//! coordinator epoch in its own transaction, which is what ScyllaDB's
//! conditional batch on the group's partition will do.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::leadership::{check_session_open, holds_live, session_of};
use super::{OrBackend, SqliteStore, begin_write, commit};
use crate::model::{BrokerSession, CommittedOffset, GroupClaim, StoredGroup};
use crate::store::{Error, GroupStore, Result};

/// Version 6 → 7: each group's coordinator and coordinator epoch. Kept
/// when the group is deleted, so its epoch never goes back.
pub(super) const SCHEMA_7: &str = "
CREATE TABLE IF NOT EXISTS group_coordinators (
    group_id                 TEXT PRIMARY KEY,
    coordinator_epoch        INTEGER NOT NULL,
    coordinator_node         INTEGER,
    coordinator_incarnation  INTEGER
) WITHOUT ROWID;
";

/// (epoch, coordinator) of a group; `None` for a group never claimed.
fn coordinator(conn: &Connection, group_id: &str) -> Result<Option<(i32, Option<BrokerSession>)>> {
    conn.prepare_cached(
        "SELECT coordinator_epoch, coordinator_node, coordinator_incarnation
         FROM group_coordinators WHERE group_id = ?1",
    )
    .and_then(|mut stmt| {
        stmt.query_row(params![group_id], |r| {
            Ok((r.get(0)?, session_of(r.get(1)?, r.get(2)?)))
        })
        .optional()
    })
    .or_backend(|| format!("read group_coordinators group_id={group_id}"))
}

/// `GroupFenced` unless `epoch` is the group's current coordinator epoch
/// and a coordinator holds it (not released).
fn check_epoch(tx: &Transaction<'_>, group_id: &str, epoch: i32) -> Result<()> {
    match coordinator(tx, group_id)? {
        Some((current, Some(_))) if current == epoch => Ok(()),
        found => Err(Error::GroupFenced {
            group_id: group_id.to_string(),
            expected: epoch,
            current: found.map_or(0, |(current, _)| current),
        }),
    }
}

fn claim_one(
    tx: &Transaction<'_>,
    session: BrokerSession,
    group_id: &str,
    now_ms: i64,
) -> Result<Result<GroupClaim>> {
    let (epoch, holder) = coordinator(tx, group_id)?.unwrap_or((0, None));
    if let Some(holder) = holder
        && holds_live(tx, holder, session, now_ms)?
    {
        return Ok(Err(Error::GroupNotClaimable {
            group_id: group_id.to_string(),
            coordinator: holder,
        }));
    }
    let coordinator_epoch = epoch
        .checked_add(1)
        .ok_or_else(|| Error::Backend(format!("coordinator epoch overflow group_id={group_id}")))?;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO group_coordinators
             (group_id, coordinator_epoch, coordinator_node, coordinator_incarnation)
         VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            group_id,
            coordinator_epoch,
            session.node_id,
            session.incarnation
        ])
    })
    .or_backend(|| format!("claim group_id={group_id}"))?;
    let stored = tx
        .prepare_cached("SELECT protocol_type FROM consumer_groups WHERE group_id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row(params![group_id], |r| r.get::<_, String>(0))
                .optional()
        })
        .or_backend(|| format!("read consumer_groups group_id={group_id}"))?
        .map(|protocol_type| StoredGroup {
            group_id: group_id.to_string(),
            protocol_type,
        });
    Ok(Ok(GroupClaim {
        group_id: group_id.to_string(),
        coordinator_epoch,
        stored,
        offsets: read_offsets(tx, group_id)?,
    }))
}

fn read_offsets(conn: &Connection, group_id: &str) -> Result<Vec<CommittedOffset>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT topic, partition, committed_offset, leader_epoch, metadata, commit_timestamp_ms
             FROM committed_offsets WHERE group_id = ?1 ORDER BY topic, partition",
        )
        .or_backend(|| "prepare read committed_offsets".into())?;
    let rows = stmt
        .query_map(params![group_id], |row| {
            Ok(CommittedOffset {
                topic: row.get(0)?,
                partition: row.get(1)?,
                offset: row.get(2)?,
                leader_epoch: row.get(3)?,
                metadata: row.get(4)?,
                commit_timestamp_ms: row.get(5)?,
            })
        })
        .or_backend(|| format!("read committed_offsets group_id={group_id}"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .or_backend(|| format!("read committed_offsets row group_id={group_id}"))
}

#[async_trait]
impl GroupStore for SqliteStore {
    async fn claim_groups(
        &self,
        session: BrokerSession,
        group_ids: &[String],
        now_ms: i64,
    ) -> Result<Vec<Result<GroupClaim>>> {
        let group_ids = group_ids.to_vec();
        self.with_conn(move |conn| {
            let tx = begin_write(conn)?;
            check_session_open(&tx, session)?;
            let mut answers = Vec::with_capacity(group_ids.len());
            for group_id in &group_ids {
                answers.push(claim_one(&tx, session, group_id, now_ms)?);
            }
            commit(tx)?;
            Ok(answers)
        })
        .await
    }

    async fn release_groups(&self, session: BrokerSession, groups: &[(String, i32)]) -> Result<()> {
        let groups = groups.to_vec();
        self.with_conn(move |conn| {
            let tx = begin_write(conn)?;
            for (group_id, epoch) in &groups {
                tx.prepare_cached(
                    "UPDATE group_coordinators
                     SET coordinator_node = NULL, coordinator_incarnation = NULL
                     WHERE group_id = ?1 AND coordinator_epoch = ?2
                       AND coordinator_node = ?3 AND coordinator_incarnation = ?4",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        group_id,
                        epoch,
                        session.node_id,
                        session.incarnation
                    ])
                })
                .or_backend(|| format!("release group_id={group_id}"))?;
            }
            commit(tx)
        })
        .await
    }

    async fn save_group(&self, group: &StoredGroup, coordinator_epoch: i32) -> Result<()> {
        let group = group.clone();
        self.with_conn(move |conn| {
            let tx = begin_write(conn)?;
            check_epoch(&tx, &group.group_id, coordinator_epoch)?;
            tx.execute(
                "INSERT INTO consumer_groups (group_id, protocol_type) VALUES (?1, ?2)
                 ON CONFLICT (group_id) DO UPDATE SET protocol_type = excluded.protocol_type",
                params![group.group_id, group.protocol_type],
            )
            .or_backend(|| format!("save group group_id={}", group.group_id))?;
            commit(tx)
        })
        .await
    }

    async fn groups(&self) -> Result<Vec<StoredGroup>> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare("SELECT group_id, protocol_type FROM consumer_groups ORDER BY group_id")
                .or_backend(|| "prepare read consumer_groups".into())?;
            let rows = stmt
                .query_map([], |row| {
                    Ok(StoredGroup {
                        group_id: row.get(0)?,
                        protocol_type: row.get(1)?,
                    })
                })
                .or_backend(|| "read consumer_groups".into())?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .or_backend(|| "read consumer_groups row".into())
        })
        .await
    }

    async fn delete_group(&self, group_id: &str, coordinator_epoch: i32) -> Result<()> {
        let group_id = group_id.to_string();
        self.with_conn(move |conn| {
            let tx = begin_write(conn)?;
            check_epoch(&tx, &group_id, coordinator_epoch)?;
            for table in ["consumer_groups", "committed_offsets"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE group_id = ?1"),
                    params![group_id],
                )
                .or_backend(|| format!("delete from {table} group_id={group_id}"))?;
            }
            commit(tx)
        })
        .await
    }

    async fn commit_offsets(
        &self,
        group_id: &str,
        coordinator_epoch: i32,
        offsets: &[CommittedOffset],
    ) -> Result<()> {
        let group_id = group_id.to_string();
        let offsets = offsets.to_vec();
        self.with_conn(move |conn| {
            let tx = begin_write(conn)?;
            check_epoch(&tx, &group_id, coordinator_epoch)?;
            tx.execute(
                "INSERT OR IGNORE INTO consumer_groups (group_id, protocol_type) VALUES (?1, '')",
                params![group_id],
            )
            .or_backend(|| format!("record group group_id={group_id}"))?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO committed_offsets (group_id, topic, partition,
                             committed_offset, leader_epoch, metadata, commit_timestamp_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .or_backend(|| "prepare commit offsets".into())?;
                for o in &offsets {
                    stmt.execute(params![
                        group_id,
                        o.topic,
                        o.partition,
                        o.offset,
                        o.leader_epoch,
                        o.metadata,
                        o.commit_timestamp_ms
                    ])
                    .or_backend(|| {
                        format!(
                            "commit offset group_id={group_id} topic={} partition={}",
                            o.topic, o.partition
                        )
                    })?;
                }
            }
            commit(tx)
        })
        .await
    }

    async fn committed_offsets(&self, group_id: &str) -> Result<Vec<CommittedOffset>> {
        let group_id = group_id.to_string();
        self.with_conn(move |conn| read_offsets(conn, &group_id))
            .await
    }

    async fn delete_committed_offsets(
        &self,
        group_id: &str,
        coordinator_epoch: i32,
        partitions: &[(String, i32)],
    ) -> Result<()> {
        let group_id = group_id.to_string();
        let partitions = partitions.to_vec();
        self.with_conn(move |conn| {
            let tx = begin_write(conn)?;
            check_epoch(&tx, &group_id, coordinator_epoch)?;
            for (topic, partition) in &partitions {
                tx.execute(
                    "DELETE FROM committed_offsets WHERE group_id = ?1 AND topic = ?2 AND partition = ?3",
                    params![group_id, topic, partition],
                )
                .or_backend(|| {
                    format!("delete offset group_id={group_id} topic={topic} partition={partition}")
                })?;
            }
            commit(tx)
        })
        .await
    }
}
