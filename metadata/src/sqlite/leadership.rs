//! The broker registry, partition leadership and the cluster version in the
//! SQLite backend: each operation is one transaction, so the rules of the
//! seam (`MetadataStore::register_broker`, `claim_partitions`, …) hold
//! between brokers sharing the file.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{OrBackend, begin_write, commit, id_bytes, read_producer_states};
use crate::model::{
    BrokerRegistration, BrokerSession, PartitionClaim, PartitionState, RegisteredBroker,
    SessionStatus, TopicPartition,
};
use crate::store::{Error, Result};

const OPEN: i64 = 0;
const CLOSED: i64 = 1;
const FENCED: i64 = 2;

fn status_of(code: i64) -> SessionStatus {
    match code {
        OPEN => SessionStatus::Open,
        CLOSED => SessionStatus::Closed,
        _ => SessionStatus::Fenced,
    }
}

/// The session stored in a partition's two leader columns.
pub(super) fn session_of(node: Option<i32>, incarnation: Option<i64>) -> Option<BrokerSession> {
    Some(BrokerSession {
        node_id: node?,
        incarnation: incarnation?,
    })
}

pub(super) fn bump_cluster_version(tx: &Transaction<'_>) -> Result<()> {
    tx.prepare_cached("UPDATE cluster_version SET version = version + 1 WHERE singleton = 0")
        .and_then(|mut stmt| stmt.execute([]))
        .or_backend(|| "bump cluster_version".into())?;
    Ok(())
}

pub(super) fn cluster_version(conn: &Connection) -> Result<i64> {
    conn.prepare_cached("SELECT version FROM cluster_version WHERE singleton = 0")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .or_backend(|| "read cluster_version".into())
}

/// (incarnation, status, lease_expires_ms) of a node id's current session.
fn current(conn: &Connection, node_id: i32) -> Result<Option<(i64, i64, i64)>> {
    conn.prepare_cached(
        "SELECT incarnation, status, lease_expires_ms FROM brokers WHERE node_id = ?1",
    )
    .and_then(|mut stmt| {
        stmt.query_row(params![node_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
    })
    .or_backend(|| format!("read brokers node_id={node_id}"))
}

/// `SessionFenced` unless `session` is its node id's current, open session.
pub(super) fn check_session_open(conn: &Connection, session: BrokerSession) -> Result<()> {
    match current(conn, session.node_id)? {
        Some((incarnation, OPEN, _)) if incarnation == session.incarnation => Ok(()),
        _ => Err(Error::SessionFenced(session)),
    }
}

pub(super) fn register(
    conn: &mut Connection,
    registration: &BrokerRegistration,
    now_ms: i64,
    lease_ms: i64,
) -> Result<BrokerSession> {
    let tx = begin_write(conn)?;
    let node_id = registration.node_id;
    let incarnation = match current(&tx, node_id)? {
        Some((_, OPEN, lease_expires_ms)) if lease_expires_ms > now_ms => {
            let (host, port): (String, i32) = tx
                .query_row(
                    "SELECT host, port FROM brokers WHERE node_id = ?1",
                    params![node_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .or_backend(|| format!("read brokers node_id={node_id}"))?;
            return Err(Error::BrokerIdInUse {
                node_id,
                host,
                port,
                lease_expires_ms,
            });
        }
        Some((incarnation, _, _)) => incarnation + 1,
        None => 1,
    };
    tx.execute(
        "INSERT OR REPLACE INTO brokers
             (node_id, incarnation, host, port, rack, status, lease_expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            node_id,
            incarnation,
            registration.host,
            registration.port,
            registration.rack,
            OPEN,
            now_ms.saturating_add(lease_ms)
        ],
    )
    .or_backend(|| format!("register node_id={node_id}"))?;
    bump_cluster_version(&tx)?;
    commit(tx)?;
    Ok(BrokerSession {
        node_id,
        incarnation,
    })
}

pub(super) fn renew_lease(
    conn: &mut Connection,
    session: BrokerSession,
    now_ms: i64,
    lease_ms: i64,
) -> Result<()> {
    let tx = begin_write(conn)?;
    let changed = tx
        .prepare_cached(
            "UPDATE brokers SET lease_expires_ms = ?3
             WHERE node_id = ?1 AND incarnation = ?2 AND status = 0",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                session.node_id,
                session.incarnation,
                now_ms.saturating_add(lease_ms)
            ])
        })
        .or_backend(|| format!("renew lease session={session}"))?;
    if changed == 0 {
        return Err(Error::SessionFenced(session));
    }
    commit(tx)
}

pub(super) fn close(conn: &mut Connection, session: BrokerSession) -> Result<()> {
    let tx = begin_write(conn)?;
    let changed = tx
        .execute(
            "UPDATE brokers SET status = ?3, lease_expires_ms = 0
             WHERE node_id = ?1 AND incarnation = ?2 AND status = 0",
            params![session.node_id, session.incarnation, CLOSED],
        )
        .or_backend(|| format!("close session={session}"))?;
    if changed > 0 {
        bump_cluster_version(&tx)?;
    }
    commit(tx)
}

pub(super) fn brokers(conn: &Connection) -> Result<Vec<RegisteredBroker>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT node_id, incarnation, host, port, rack, status, lease_expires_ms
             FROM brokers ORDER BY node_id",
        )
        .or_backend(|| "prepare read brokers".into())?;
    let rows = stmt
        .query_map([], |r| {
            let node_id: i32 = r.get(0)?;
            Ok(RegisteredBroker {
                registration: BrokerRegistration {
                    node_id,
                    host: r.get(2)?,
                    port: r.get(3)?,
                    rack: r.get(4)?,
                },
                session: BrokerSession {
                    node_id,
                    incarnation: r.get(1)?,
                },
                status: status_of(r.get(5)?),
                lease_expires_ms: r.get(6)?,
            })
        })
        .or_backend(|| "read brokers".into())?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .or_backend(|| "read brokers row".into())
}

pub(super) fn claim(
    conn: &mut Connection,
    session: BrokerSession,
    partitions: &[TopicPartition],
    now_ms: i64,
) -> Result<Vec<Result<PartitionClaim>>> {
    let tx = begin_write(conn)?;
    check_session_open(&tx, session)?;
    let mut answers = Vec::with_capacity(partitions.len());
    let mut changed = false;
    for &tp in partitions {
        let answer = claim_one(&tx, session, tp, now_ms)?;
        changed |= answer.is_ok();
        answers.push(answer);
    }
    if changed {
        bump_cluster_version(&tx)?;
    }
    commit(tx)?;
    Ok(answers)
}

/// Whether `holder` still holds what `claimer` wants at `now_ms`: it is
/// another session, its node id's current one, open, with a live lease.
/// A holder whose lease lapsed is fenced here, in the claim's transaction,
/// so that none of its commits lands after the claim; one that ended or was
/// replaced holds nothing.
pub(super) fn holds_live(
    tx: &Transaction<'_>,
    holder: BrokerSession,
    claimer: BrokerSession,
    now_ms: i64,
) -> Result<bool> {
    if holder == claimer {
        return Ok(false);
    }
    match current(tx, holder.node_id)? {
        Some((inc, OPEN, lease_expires_ms)) if inc == holder.incarnation => {
            if lease_expires_ms > now_ms {
                return Ok(true);
            }
            tx.execute(
                "UPDATE brokers SET status = ?3 WHERE node_id = ?1 AND incarnation = ?2",
                params![holder.node_id, holder.incarnation, FENCED],
            )
            .or_backend(|| format!("fence session={holder}"))?;
            tracing::info!(session = %holder, claimed_by = %claimer, "fenced a broker session whose lease lapsed");
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// One partition of a claim. The outer `Result` fails the whole call (a
/// broken store); the inner one is this partition's answer.
fn claim_one(
    tx: &Transaction<'_>,
    session: BrokerSession,
    tp: TopicPartition,
    now_ms: i64,
) -> Result<Result<PartitionClaim>> {
    let id = id_bytes(tp.topic_id);
    type Stored = (i32, i64, i64, Option<i32>, Option<i64>);
    let stored: Option<Stored> = tx
        .prepare_cached(
            "SELECT leader_epoch, log_start_offset, next_offset, leader_node, leader_incarnation
             FROM partition_state WHERE topic_id = ?1 AND partition = ?2",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![id, tp.partition], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()
        })
        .or_backend(|| format!("read partition_state topic_partition={tp}"))?;
    let Some((epoch, log_start_offset, next_offset, node, incarnation)) = stored else {
        return Ok(Err(Error::UnknownTopic(format!("topic_partition={tp}"))));
    };
    if let Some(leader) = session_of(node, incarnation)
        && holds_live(tx, leader, session, now_ms)?
    {
        return Ok(Err(Error::NotClaimable {
            topic_partition: tp,
            leader,
        }));
    }
    let leader_epoch = epoch
        .checked_add(1)
        .ok_or_else(|| Error::Backend(format!("leader epoch overflow topic_partition={tp}")))?;
    tx.prepare_cached(
        "UPDATE partition_state SET leader_epoch = ?3, leader_node = ?4, leader_incarnation = ?5
         WHERE topic_id = ?1 AND partition = ?2",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            id,
            tp.partition,
            leader_epoch,
            session.node_id,
            session.incarnation
        ])
    })
    .or_backend(|| format!("claim topic_partition={tp}"))?;
    Ok(Ok(PartitionClaim {
        state: PartitionState {
            topic_partition: tp,
            leader_epoch,
            leader: Some(session),
            log_start_offset,
            next_offset,
        },
        producers: read_producer_states(tx, Some(tp))?,
    }))
}

pub(super) fn release(
    conn: &mut Connection,
    session: BrokerSession,
    partitions: &[(TopicPartition, i32)],
) -> Result<()> {
    let tx = begin_write(conn)?;
    let mut changed = 0;
    for &(tp, epoch) in partitions {
        changed += tx
            .prepare_cached(
                "UPDATE partition_state SET leader_node = NULL, leader_incarnation = NULL
                 WHERE topic_id = ?1 AND partition = ?2 AND leader_epoch = ?3
                   AND leader_node = ?4 AND leader_incarnation = ?5",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    id_bytes(tp.topic_id),
                    tp.partition,
                    epoch,
                    session.node_id,
                    session.incarnation
                ])
            })
            .or_backend(|| format!("release topic_partition={tp}"))?;
    }
    if changed > 0 {
        bump_cluster_version(&tx)?;
    }
    commit(tx)
}
