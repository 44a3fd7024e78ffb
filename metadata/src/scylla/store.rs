//! `ScyllaStore`: the metadata seam on ScyllaDB (docs/design/0008). This
//! file holds the store itself, what it keeps in memory per broker
//! session, and the steps the seam's operations share: reading session
//! rows, fencing a session whose lease lapsed, applying an ended session's
//! journal, and moving the cluster version. The operations are in
//! `registry` (`ClusterStore`), `topics`, `log` and `groups`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::config::ScyllaConfig;
use super::cql::{self};
use super::decide::SessionRow;
use super::entry;
use super::exec::{Lwt, StatsSnapshot, binds};
use super::session::Cql;
use crate::model::{BrokerSession, IndexSegment, SessionStatus, TopicId, TopicPartition};
use crate::store::{Error, Result};

/// The schema this build writes and reads. A keyspace whose `meta` row
/// says more was made by a newer broker: refused at connect.
pub const SCHEMA_VERSION: i32 = 1;

/// Status codes of `broker_sessions.status` (as in the SQLite backend).
pub(super) const OPEN: i32 = 0;
pub(super) const CLOSED: i32 = 1;
pub(super) const FENCED: i32 = 2;

pub(super) fn status_of(code: i32) -> SessionStatus {
    match code {
        OPEN => SessionStatus::Open,
        CLOSED => SessionStatus::Closed,
        _ => SessionStatus::Fenced,
    }
}

/// `meta` keys.
const META_CLUSTER: &str = "cluster";
pub(super) const META_PRODUCER_IDS: &str = "producer_ids";
pub(super) const CLUSTER_VERSION_KEY: &str = "cluster";

/// Journal entries an ended session's tail read takes; more means a full read.
const JOURNAL_TAIL: i32 = 64;

/// The one bucket of `broker_ids` and `topics` (both bounded lists).
pub(super) const BUCKET: i32 = 0;
/// Buckets of `group_ids`, by a hash of the id.
pub(super) const GROUP_ID_BUCKETS: i32 = 16;

/// A stable hash (FNV-1a) for bucketing: the same in every broker and build.
pub(super) fn bucket_of(key: &str, buckets: i32) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % buckets as u32) as i32
}

/// Whether `tp`'s topic is in `topics` (id → (name, partition count)) with that partition.
pub(super) fn partition_exists(
    topics: &HashMap<TopicId, (String, i32)>,
    tp: TopicPartition,
) -> bool {
    topics
        .get(&tp.topic_id)
        .is_some_and(|(_, count)| tp.partition < *count)
}

/// A node id's session row as read: the condition columns `decide` works
/// on, and what the registry lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SessionInfo {
    pub row: SessionRow,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

type SessionColumns = (
    Option<i64>,
    Option<i32>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i32>,
    Option<String>,
);

fn session_info(columns: SessionColumns) -> Option<SessionInfo> {
    let (incarnation, status, lease_expires_ms, head, host, port, rack) = columns;
    Some(SessionInfo {
        row: SessionRow {
            incarnation: incarnation?,
            status: status_of(status?),
            lease_expires_ms: lease_expires_ms.unwrap_or(0),
            head: head.unwrap_or(0),
        },
        host: host.unwrap_or_default(),
        port: port.unwrap_or(0),
        rack,
    })
}

/// What this process knows of a partition its session leads: enough to
/// check and apply a commit without reading the store.
#[derive(Clone, Debug)]
pub(super) struct Led {
    pub leader_epoch: i32,
    pub next_offset: i64,
    /// The summary of the partition's last index segment, once read.
    pub last_segment: Option<IndexSegment>,
}

/// One broker session's journal as this process knows it. Its lock
/// serialises the session's commits, claims and releases: appends to a
/// journal are sequential by construction (`IF head = seq - 1`).
#[derive(Debug, Default)]
pub(super) struct Journal {
    /// The seq of the session's last journal entry; `None` when unknown
    /// (never read, or an append's outcome could not be settled).
    pub head: Option<i64>,
    /// Every entry up to this seq has been applied.
    pub applied: i64,
    /// Applied entries still in the journal: deleted by the next append.
    pub untrimmed: Vec<i64>,
    pub led: HashMap<TopicPartition, Led>,
}

pub(super) struct Inner {
    pub cql: Cql,
    pub cluster_id: String,
    journals: Mutex<HashMap<BrokerSession, Arc<tokio::sync::Mutex<Journal>>>>,
    /// The topic list as of a cluster version (every topic change moves
    /// it), so a commit checks its topics with one counter read.
    topics: Mutex<Option<(i64, Arc<TopicMap>)>>,
}

/// Topic id → (name, partition count).
pub(super) type TopicMap = HashMap<TopicId, (String, i32)>;

/// The ScyllaDB backend. Cheap to clone (one shared session).
#[derive(Clone)]
pub struct ScyllaStore {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for ScyllaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaStore")
            .field("cluster_id", &self.inner.cluster_id)
            .finish_non_exhaustive()
    }
}

impl ScyllaStore {
    /// Connects, creates or checks the schema, and reads (or makes) the
    /// cluster id.
    pub async fn connect(config: &ScyllaConfig) -> Result<ScyllaStore> {
        let cql = Cql::connect(config).await?;
        let cluster_id = init_meta(&cql).await?;
        Ok(ScyllaStore {
            inner: Arc::new(Inner {
                cql,
                cluster_id,
                journals: Mutex::new(HashMap::new()),
                topics: Mutex::new(None),
            }),
        })
    }

    /// A store on a prepared session, skipping schema and cluster-row set-up
    /// (tests on servers that cannot hold the whole schema).
    #[cfg(test)]
    pub(super) fn on_session(cql: Cql, cluster_id: &str) -> ScyllaStore {
        ScyllaStore {
            inner: Arc::new(Inner {
                cql,
                cluster_id: cluster_id.to_string(),
                journals: Mutex::new(HashMap::new()),
                topics: Mutex::new(None),
            }),
        }
    }

    pub(super) fn cql(&self) -> &Cql {
        &self.inner.cql
    }

    /// Statement counts by kind and LWT outcomes since connect.
    pub fn statement_stats(&self) -> StatsSnapshot {
        self.cql().stats().snapshot()
    }

    /// The journal state of `session` in this process (made empty and
    /// unknown the first time).
    pub(super) fn journal(&self, session: BrokerSession) -> Arc<tokio::sync::Mutex<Journal>> {
        self.inner
            .journals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(session)
            .or_default()
            .clone()
    }

    /// Forgets what this process knew of an ended session.
    pub(super) fn forget_journal(&self, session: BrokerSession) {
        self.inner
            .journals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&session);
    }

    /// A node id's session row; `serial` settles conditional writes in
    /// flight on it first.
    pub(super) async fn session_row(
        &self,
        node_id: i32,
        serial: bool,
    ) -> Result<Option<SessionInfo>> {
        let statement = if serial {
            &cql::SESSION_READ_SERIAL
        } else {
            &cql::SESSION_READ
        };
        Ok(self
            .cql()
            .read_one::<SessionColumns>(statement, binds![node_id])
            .await?
            .and_then(session_info))
    }

    /// `SessionFenced` unless `session` is its node id's current open session.
    pub(super) async fn check_open(&self, session: BrokerSession) -> Result<SessionInfo> {
        match self.session_row(session.node_id, false).await? {
            Some(info)
                if info.row.incarnation == session.incarnation
                    && info.row.status == SessionStatus::Open =>
            {
                Ok(info)
            }
            _ => Err(Error::SessionFenced(session)),
        }
    }

    /// Moves the cluster version. A counter increment must not be sent
    /// twice, and the version only has to move: a failure is logged, and
    /// brokers still learn the change at their next periodic reload.
    pub(super) async fn bump_cluster_version(&self) {
        if let Err(e) = self
            .cql()
            .write(&cql::CLUSTER_VERSION_BUMP, binds![CLUSTER_VERSION_KEY])
            .await
        {
            tracing::warn!(error = %e, "could not move the cluster version");
        }
    }

    /// Fences `holder`, whose lease lapsed at `lease_expires_ms` as read.
    /// `Ok(true)`: fenced (by us or, as a read-back shows, by another);
    /// `Ok(false)`: the row changed meanwhile (a renewal): decide again.
    pub(super) async fn fence(
        &self,
        holder: BrokerSession,
        lease_expires_ms: i64,
        claimer: BrokerSession,
    ) -> Result<bool> {
        let answer = self
            .cql()
            .lwt(
                &cql::SESSION_FENCE,
                binds![
                    FENCED,
                    holder.node_id,
                    holder.incarnation,
                    OPEN,
                    lease_expires_ms
                ],
            )
            .await?;
        let fenced = match answer {
            Lwt::Applied => true,
            Lwt::NotApplied | Lwt::Uncertain => {
                let row = self.session_row(holder.node_id, true).await?;
                !row.is_some_and(|info| {
                    info.row.incarnation == holder.incarnation
                        && info.row.status == SessionStatus::Open
                })
            }
        };
        if fenced {
            tracing::info!(session = %holder, claimed_by = %claimer, "fenced a broker session whose lease lapsed");
            self.bump_cluster_version().await;
        }
        Ok(fenced)
    }

    /// Applies every entry left in an ended session's journal (a second
    /// apply of one is harmless: the writes are max-registers), then
    /// deletes them, conditioned on the node id's row as read so that the
    /// delete never races a live append.
    pub(super) async fn apply_ended_journal(&self, ended: BrokerSession) -> Result<()> {
        // Newest first, a few: applied entries were trimmed one per append,
        // and their tombstones lie before the live tail.
        let mut rows: Vec<(i64, Option<Vec<u8>>, Option<String>)> = self
            .cql()
            .read(
                &cql::JOURNAL_TAIL_READ,
                binds![ended.node_id, ended.incarnation, JOURNAL_TAIL],
            )
            .await?;
        if rows.len() >= JOURNAL_TAIL as usize {
            rows = self
                .cql()
                .read(
                    &cql::JOURNAL_READ,
                    binds![ended.node_id, ended.incarnation, 0_i64],
                )
                .await?;
        } else {
            rows.reverse();
        }
        if rows.is_empty() {
            return Ok(());
        }
        let mut seqs = Vec::with_capacity(rows.len());
        for (seq, bytes, _token) in rows {
            let Some(bytes) = bytes else { continue };
            let record = entry::decode(&bytes, ended).map_err(|e| {
                Error::Backend(format!("journal entry {seq} of session {ended}: {e}"))
            })?;
            self.apply_record(&record, None).await?;
            seqs.push(seq);
        }
        tracing::info!(session = %ended, entries = seqs.len(), "applied an ended session's journal");
        let Some(current) = self.session_row(ended.node_id, false).await? else {
            return Ok(());
        };
        let status = match current.row.status {
            SessionStatus::Open => OPEN,
            SessionStatus::Closed => CLOSED,
            SessionStatus::Fenced => FENCED,
        };
        let mut batch = vec![(
            &cql::SESSION_HOLD,
            binds![status, ended.node_id, current.row.incarnation, status],
        )];
        for seq in seqs {
            batch.push((
                &cql::JOURNAL_TRIM,
                binds![ended.node_id, ended.incarnation, seq],
            ));
        }
        // Not applied, unknown or failed: the entries stay, applied; the
        // next claimer applies and trims them again.
        if let Err(e) = self.cql().lwt_batch(&batch).await {
            tracing::warn!(session = %ended, error = %e, "could not trim an ended session's journal");
        }
        Ok(())
    }

    /// Every topic: id → (name, partition count).
    pub(super) async fn topic_map(&self) -> Result<TopicMap> {
        Ok(self
            .read_topics()
            .await?
            .into_iter()
            .map(|t| (t.topic_id, (t.name, t.partition_count)))
            .collect())
    }

    /// `topic_map`, read again only when the cluster version moved since
    /// the last read (one small counter read otherwise).
    pub(super) async fn topic_map_cached(&self) -> Result<Arc<TopicMap>> {
        let version = self.cluster_version_now().await?;
        let cached = self
            .inner
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some((at, topics)) = cached
            && at == version
        {
            return Ok(topics);
        }
        let topics = Arc::new(self.topic_map().await?);
        *self
            .inner
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((version, topics.clone()));
        Ok(topics)
    }

    /// The cluster version counter (0 before anything moved it).
    pub(super) async fn cluster_version_now(&self) -> Result<i64> {
        let row: Option<(Option<scylla::value::Counter>,)> = self
            .cql()
            .read_one(&cql::CLUSTER_VERSION_READ, binds![CLUSTER_VERSION_KEY])
            .await?;
        Ok(row.and_then(|(v,)| v).map_or(0, |c| c.0))
    }
}

/// Reads the cluster row, creating it on first start, and refuses a schema
/// newer than this build's.
async fn init_meta(cql: &Cql) -> Result<String> {
    let proposed = crate::sqlite::new_cluster_id();
    cql.lwt(
        &cql::META_INIT,
        binds![META_CLUSTER, SCHEMA_VERSION, proposed.as_str(), None::<i64>],
    )
    .await?;
    cql.lwt(
        &cql::META_INIT,
        binds![META_PRODUCER_IDS, None::<i32>, None::<String>, 0_i64],
    )
    .await?;
    // Whichever broker's insert won (ours, another's, or one whose answer
    // was lost), a SERIAL read sees it.
    let row: Option<(Option<i32>, Option<String>, Option<i64>)> =
        cql.read_one(&cql::META_READ, binds![META_CLUSTER]).await?;
    let Some((Some(version), Some(cluster_id), _)) = row else {
        return Err(Error::Backend(
            "scylla: the keyspace has no cluster row after creating it".into(),
        ));
    };
    if version > SCHEMA_VERSION {
        return Err(Error::Backend(format!(
            "scylla: the keyspace has schema version {version}, newer than this broker's \
             {SCHEMA_VERSION}: upgrade the broker (or point it at another keyspace)"
        )));
    }
    // Version 1 is the first: there is nothing to migrate from yet. A
    // migration goes here, step by step, each ending with META_MIGRATE.
    Ok(cluster_id)
}
