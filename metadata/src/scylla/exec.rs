//! Running the statements of `cql` on a `Cql` session: binding values,
//! reading rows (paged where a partition can be long), plain writes, and
//! conditional writes (LWT) with their three answers. Every failure becomes
//! one of the seam's error kinds here, and nowhere else:
//!
//! - a timeout or a broken connection on a write, `Error::Timeout` (the
//!   write may have applied: the caller reads back before deciding), or for
//!   a conditional write `Lwt::Uncertain`;
//! - the same on a read, and every "not enough replicas" answer
//!   (Unavailable, Overloaded, bootstrapping, no connection),
//!   `Error::Unavailable` (nothing applied; retry later);
//! - anything else, `Error::Backend`.
//!
//! A conditional write refused with Unavailable is retried here a few
//! times (the coordinator checks replicas before it proposes, so usually
//! nothing applied); a retry answered "not applied" is reported uncertain,
//! since the first try may have been accepted before the refusal. One that
//! timed out is never retried.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use scylla::deserialize::row::DeserializeRow;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::response::query_result::QueryResult;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::statement::batch::{Batch, BatchType};
use scylla::value::{CqlValue, Row};

use super::cql::{Kind, Statement};
use super::session::Cql;
use crate::model::TopicId;
use crate::store::{Error, Result};

/// A statement's values, in the order of its bind markers.
pub type Values = Vec<Option<CqlValue>>;

/// A Rust value as a CQL value (`None`: null).
pub trait Bind {
    fn bind(self) -> Option<CqlValue>;
}

impl Bind for i16 {
    fn bind(self) -> Option<CqlValue> {
        Some(CqlValue::SmallInt(self))
    }
}
impl Bind for i32 {
    fn bind(self) -> Option<CqlValue> {
        Some(CqlValue::Int(self))
    }
}
impl Bind for i64 {
    fn bind(self) -> Option<CqlValue> {
        Some(CqlValue::BigInt(self))
    }
}
impl Bind for &str {
    fn bind(self) -> Option<CqlValue> {
        Some(CqlValue::Text(self.to_owned()))
    }
}
impl Bind for String {
    fn bind(self) -> Option<CqlValue> {
        Some(CqlValue::Text(self))
    }
}
impl Bind for TopicId {
    fn bind(self) -> Option<CqlValue> {
        Some(CqlValue::Uuid(self.0))
    }
}
impl Bind for Vec<u8> {
    fn bind(self) -> Option<CqlValue> {
        Some(CqlValue::Blob(self))
    }
}
impl Bind for &std::collections::BTreeMap<String, String> {
    fn bind(self) -> Option<CqlValue> {
        Some(CqlValue::Map(
            self.iter()
                .map(|(k, v)| (CqlValue::Text(k.clone()), CqlValue::Text(v.clone())))
                .collect(),
        ))
    }
}
impl<T: Bind> Bind for Option<T> {
    fn bind(self) -> Option<CqlValue> {
        self.and_then(Bind::bind)
    }
}

/// `binds![a, b, c]`: the values of a statement's markers.
macro_rules! binds {
    ($($value:expr),* $(,)?) => {
        vec![$($crate::scylla::exec::Bind::bind($value)),*]
    };
}
pub(crate) use binds;

/// What a conditional write answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lwt {
    Applied,
    NotApplied,
    /// No answer in time, or the connection broke: it may have applied, or
    /// may still apply.
    Uncertain,
}

/// Statement counts and latencies by kind, and what LWTs answered: the
/// figures the admin endpoint will export (issue 13) and the benchmark
/// prints.
#[derive(Debug, Default)]
pub struct StatementStats {
    counts: [AtomicU64; KINDS],
    micros: [AtomicU64; KINDS],
    lwt_not_applied: AtomicU64,
    lwt_uncertain: AtomicU64,
    batches: AtomicU64,
}

const KINDS: usize = 7;

fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Read => 0,
        Kind::SerialRead => 1,
        Kind::IdempotentWrite => 2,
        Kind::NonIdempotentWrite => 3,
        Kind::Conditional => 4,
        Kind::InConditionalBatch => 5,
        Kind::Schema => 6,
    }
}

const KIND_NAMES: [&str; KINDS] = [
    "read",
    "serial_read",
    "idempotent_write",
    "non_idempotent_write",
    "conditional",
    "in_conditional_batch",
    "schema",
];

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// (kind, statements executed, total microseconds), by kind.
    pub by_kind: Vec<(&'static str, u64, u64)>,
    pub lwt_not_applied: u64,
    pub lwt_uncertain: u64,
    /// Conditional batches (each also counted once as `conditional`).
    pub conditional_batches: u64,
}

impl std::fmt::Display for StatsSnapshot {
    /// `read=12/3.4ms conditional=5/20.1ms … lwt_not_applied=0 lwt_uncertain=0`:
    /// statements run and their mean latency, by kind.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (kind, count, micros) in self.by_kind.iter().filter(|(_, c, _)| *c > 0) {
            let mean_ms = *micros as f64 / *count as f64 / 1e3;
            write!(f, "{kind}={count}/{mean_ms:.1}ms ")?;
        }
        write!(
            f,
            "conditional_batches={} lwt_not_applied={} lwt_uncertain={}",
            self.conditional_batches, self.lwt_not_applied, self.lwt_uncertain
        )
    }
}

impl StatementStats {
    fn record(&self, kind: Kind, started: Instant) {
        let i = kind_index(kind);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.micros[i].fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            by_kind: (0..KINDS)
                .map(|i| {
                    (
                        KIND_NAMES[i],
                        self.counts[i].load(Ordering::Relaxed),
                        self.micros[i].load(Ordering::Relaxed),
                    )
                })
                .collect(),
            lwt_not_applied: self.lwt_not_applied.load(Ordering::Relaxed),
            lwt_uncertain: self.lwt_uncertain.load(Ordering::Relaxed),
            conditional_batches: self.batches.load(Ordering::Relaxed),
        }
    }
}

/// How a failed request leaves the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// Nothing was applied: retry later.
    Unavailable,
    /// A write may have applied.
    Uncertain,
    Other,
}

fn classify(e: &ExecutionError) -> Failure {
    match e {
        ExecutionError::RequestTimeout(_) => Failure::Uncertain,
        ExecutionError::EmptyPlan | ExecutionError::ConnectionPoolError(_) => Failure::Unavailable,
        ExecutionError::LastAttemptError(attempt) => match attempt {
            RequestAttemptError::DbError(db, _) => match db {
                DbError::Unavailable { .. } | DbError::Overloaded | DbError::IsBootstrapping => {
                    Failure::Unavailable
                }
                DbError::WriteTimeout { .. }
                | DbError::ReadTimeout { .. }
                | DbError::WriteFailure { .. }
                | DbError::ReadFailure { .. } => Failure::Uncertain,
                _ => Failure::Other,
            },
            RequestAttemptError::BrokenConnectionError(_)
            | RequestAttemptError::UnableToAllocStreamId => Failure::Uncertain,
            _ => Failure::Other,
        },
        _ => Failure::Other,
    }
}

/// The seam's error for a failed plain statement.
fn plain_error(statement: &Statement, e: ExecutionError) -> Error {
    let write = !matches!(statement.kind, Kind::Read | Kind::SerialRead);
    match classify(&e) {
        Failure::Uncertain if write => {
            tracing::warn!(statement = statement.name, error = %e, "scylla write outcome unknown");
            Error::Timeout
        }
        Failure::Uncertain | Failure::Unavailable => {
            Error::Unavailable(format!("scylla {}: {e}", statement.name))
        }
        Failure::Other => Error::Backend(format!("scylla {}: {e}", statement.name)),
    }
}

/// Unavailable answers to a conditional write retried, at most.
const LWT_UNAVAILABLE_RETRIES: u32 = 3;

/// A conditional write's answer after `tries` retries. Unavailable can come
/// after a proposal was accepted (in Paxos's commit phase), so a retry that
/// is not applied may have failed on our own first try's write: uncertain,
/// for the caller to read back.
fn after_retries(lwt: Lwt, tries: u32) -> Lwt {
    if tries > 0 && lwt == Lwt::NotApplied {
        Lwt::Uncertain
    } else {
        lwt
    }
}

/// Rows of `result` as `R` (owned types: `String`, `Vec<u8>`, numbers, options).
fn rows_of<R>(statement: &Statement, result: QueryResult) -> Result<Vec<R>>
where
    R: for<'f> DeserializeRow<'f, 'f>,
{
    let rows = result
        .into_rows_result()
        .map_err(|e| Error::Backend(format!("scylla {}: not rows: {e}", statement.name)))?;
    let iter = rows
        .rows::<R>()
        .map_err(|e| Error::Backend(format!("scylla {}: row types: {e}", statement.name)))?;
    iter.collect::<std::result::Result<Vec<R>, _>>()
        .map_err(|e| Error::Backend(format!("scylla {}: row: {e}", statement.name)))
}

/// The `[applied]` column of a conditional write's answer.
fn applied(what: &str, result: QueryResult) -> Result<bool> {
    let rows = result
        .into_rows_result()
        .map_err(|e| Error::Backend(format!("scylla {what}: LWT answered no rows: {e}")))?;
    let column = rows
        .column_specs()
        .iter()
        .position(|c| c.name() == "[applied]")
        .ok_or_else(|| Error::Backend(format!("scylla {what}: LWT answer has no [applied]")))?;
    let first: Option<Row> = rows
        .maybe_first_row::<Row>()
        .map_err(|e| Error::Backend(format!("scylla {what}: LWT answer: {e}")))?;
    match first.and_then(|row| row.columns.into_iter().nth(column).flatten()) {
        Some(CqlValue::Boolean(applied)) => Ok(applied),
        other => Err(Error::Backend(format!(
            "scylla {what}: [applied] is {other:?}"
        ))),
    }
}

impl Cql {
    /// Every row a read returns, one page at a time (pages of the
    /// driver's default size), so a long partition never arrives in one frame.
    pub async fn read<R>(&self, statement: &Statement, values: Values) -> Result<Vec<R>>
    where
        R: for<'f> DeserializeRow<'f, 'f>,
    {
        debug_assert!(matches!(statement.kind, Kind::Read | Kind::SerialRead));
        let prepared = self.prepared(statement)?;
        let mut out = Vec::new();
        let mut paging = PagingState::start();
        loop {
            let started = Instant::now();
            let answer = self
                .session()
                .execute_single_page(prepared, &values, paging)
                .await;
            self.stats().record(statement.kind, started);
            let (result, next) = answer.map_err(|e| plain_error(statement, e))?;
            out.extend(rows_of::<R>(statement, result)?);
            match next {
                PagingStateResponse::HasMorePages { state } => paging = state,
                PagingStateResponse::NoMorePages => return Ok(out),
            }
        }
    }

    /// The first row a read returns, if any.
    pub async fn read_one<R>(&self, statement: &Statement, values: Values) -> Result<Option<R>>
    where
        R: for<'f> DeserializeRow<'f, 'f>,
    {
        Ok(self.read::<R>(statement, values).await?.into_iter().next())
    }

    /// A plain write: `Ok` when applied, `Timeout` when it may have.
    pub async fn write(&self, statement: &Statement, values: Values) -> Result<()> {
        debug_assert!(matches!(
            statement.kind,
            Kind::IdempotentWrite | Kind::NonIdempotentWrite
        ));
        let started = Instant::now();
        let answer = self
            .session()
            .execute_unpaged(self.prepared(statement)?, &values)
            .await;
        self.stats().record(statement.kind, started);
        answer.map(|_| ()).map_err(|e| plain_error(statement, e))
    }

    /// One conditional write.
    pub async fn lwt(&self, statement: &Statement, values: Values) -> Result<Lwt> {
        debug_assert_eq!(statement.kind, Kind::Conditional);
        let prepared = self.prepared(statement)?;
        self.conditional(statement.name, || {
            self.session().execute_unpaged(prepared, &values)
        })
        .await
    }

    /// A conditional batch: `statements[0]` carries the condition, the rest
    /// run only if it holds; all on one partition key.
    pub async fn lwt_batch(&self, statements: &[(&Statement, Values)]) -> Result<Lwt> {
        let (first, _) = statements.first().expect("a batch has statements");
        debug_assert_eq!(first.kind, Kind::Conditional);
        debug_assert!(
            statements[1..]
                .iter()
                .all(|(s, _)| s.kind == Kind::InConditionalBatch)
        );
        let mut batch = Batch::new(BatchType::Unlogged);
        for (statement, _) in statements {
            batch.append_statement(self.prepared(statement)?.clone());
        }
        batch.set_is_idempotent(false);
        batch.set_serial_consistency(Some(self.serial_consistency()));
        let values: Vec<&Values> = statements.iter().map(|(_, v)| v).collect();
        self.conditional(first.name, || {
            self.stats().batches.fetch_add(1, Ordering::Relaxed);
            self.session().batch(&batch, &values)
        })
        .await
    }

    /// Sends a conditional write (`send` makes one try) until it is
    /// answered or refused with something other than Unavailable, at most
    /// `LWT_UNAVAILABLE_RETRIES` more times.
    async fn conditional<F, Fut>(&self, what: &str, send: F) -> Result<Lwt>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<QueryResult, ExecutionError>>,
    {
        let mut tries = 0;
        loop {
            let started = Instant::now();
            let answer = send().await;
            self.stats().record(Kind::Conditional, started);
            match self.lwt_answer(what, answer)? {
                Some(lwt) => return Ok(after_retries(lwt, tries)),
                None if tries < LWT_UNAVAILABLE_RETRIES => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50 << tries)).await;
                }
                None => {
                    return Err(Error::Unavailable(format!(
                        "scylla {what}: too few replicas"
                    )));
                }
            }
        }
    }

    /// `None`: refused with nothing applied (retry).
    fn lwt_answer(
        &self,
        what: &str,
        answer: std::result::Result<QueryResult, ExecutionError>,
    ) -> Result<Option<Lwt>> {
        match answer {
            Ok(result) => {
                if applied(what, result)? {
                    Ok(Some(Lwt::Applied))
                } else {
                    self.stats().lwt_not_applied.fetch_add(1, Ordering::Relaxed);
                    Ok(Some(Lwt::NotApplied))
                }
            }
            Err(e) => match classify(&e) {
                Failure::Uncertain => {
                    tracing::warn!(statement = what, error = %e, "scylla conditional write outcome unknown; reading back");
                    self.stats().lwt_uncertain.fetch_add(1, Ordering::Relaxed);
                    Ok(Some(Lwt::Uncertain))
                }
                Failure::Unavailable => {
                    tracing::info!(statement = what, error = %e, "scylla conditional write refused; retrying");
                    Ok(None)
                }
                Failure::Other => Err(Error::Backend(format!("scylla {what}: {e}"))),
            },
        }
    }
}
