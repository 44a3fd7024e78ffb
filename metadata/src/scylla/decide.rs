//! What the ScyllaDB backend decides from what a conditional write (LWT)
//! or a SERIAL read answered, as pure functions: no driver, no I/O, so each
//! rule is tested alone and under random interleavings (`tests`).
//!
//! The commit is the session journal of docs/design/0007: a flush appends
//! entry `seq` to its broker session's journal with one LWT on the session's
//! Scylla partition, `IF incarnation = ? AND status = open AND head = seq - 1`.
//! The LWT can answer three ways:
//!
//! - applied: committed;
//! - not applied, with the row's current condition columns: the session was
//!   fenced, closed or replaced, or `head` already moved — which happens when
//!   an earlier try of this very append applied although its answer was lost;
//!   so read the journal entry at `seq` and look for this append's token;
//! - timed out (uncertain): it may have applied, may still apply, or not.
//!   Never retried blindly: a SERIAL read of the row and of the entry at
//!   `seq` settles any Paxos round in flight on the partition (a proposal
//!   the read did not complete can no longer apply once a later round
//!   committed), and then decides.
//!
//! An append is acknowledged only when the journal holds its token at its
//! seq, and then exactly once; one that did not apply is retried under the
//! same seq and token, or given up on (the client gets a retriable error).

use crate::model::{BrokerSession, SessionStatus};

/// A session row's condition columns, as a not-applied LWT returned them or
/// a SERIAL read saw them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionRow {
    /// The node id's current session.
    pub incarnation: i64,
    pub status: SessionStatus,
    pub lease_expires_ms: i64,
    /// The seq of the session's last journal entry (0: none).
    pub head: i64,
}

/// One journal append: entry `seq` of `session`'s journal, identified by
/// `token` (the flush's object key, unique per flush).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalAppend {
    pub session: BrokerSession,
    pub seq: i64,
    pub token: String,
}

/// What an LWT answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LwtAnswer<R> {
    Applied,
    /// Not applied; the current row as the LWT returned it (`None`: no row).
    NotApplied(Option<R>),
    /// No answer in time: it may or may not have applied.
    Uncertain,
}

/// The next step after an append's LWT answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendStep {
    Committed,
    /// Read the journal entry at the append's seq (QUORUM is enough: the
    /// LWT's answer already settled the partition), then `after_read_back`
    /// with the row the LWT returned.
    ReadEntry,
    /// SERIAL-read the session row and the journal entry at the append's
    /// seq, then `after_read_back`.
    ReadBack,
}

/// What the append came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// In the journal: acknowledge it.
    Committed,
    /// Known not applied, and the session still open: retry with the same
    /// seq and token, or give up (retriable for the client).
    NotApplied,
    /// The session ended (fenced, closed or replaced) and the append is not
    /// in its journal: drop everything the session led.
    Fenced,
    /// The session ended, the append is not in its journal, and its answer
    /// was lost: it may have applied and then been applied and trimmed by
    /// the broker that fenced the session. Drop everything the session led
    /// and answer the client with a retriable error (a retry may duplicate,
    /// never lose).
    Unknown,
    /// What was read contradicts the protocol (a journal entry of this
    /// session that is not ours, a head behind what we appended). Nothing is
    /// acknowledged; the broker treats it as a store failure.
    Inconsistent(String),
}

pub fn after_append(answer: &LwtAnswer<SessionRow>) -> AppendStep {
    match answer {
        LwtAnswer::Applied => AppendStep::Committed,
        LwtAnswer::NotApplied(_) => AppendStep::ReadEntry,
        LwtAnswer::Uncertain => AppendStep::ReadBack,
    }
}

/// Decides from the session row and the token of the journal entry at the
/// append's seq (`None`: no entry there), both read after the append's LWT
/// was settled. `answer_lost`: the LWT's answer never came (`ReadBack`).
pub fn after_read_back(
    append: &JournalAppend,
    row: Option<&SessionRow>,
    entry_token: Option<&str>,
    answer_lost: bool,
) -> AppendOutcome {
    let ours = entry_token == Some(append.token.as_str());
    if ours {
        // Applied while the session was open (the condition says so), so a
        // claimer that fenced the session later applies it too.
        return AppendOutcome::Committed;
    }
    let ended = if answer_lost {
        AppendOutcome::Unknown
    } else {
        // A not-applied answer: this very proposal failed its condition.
        AppendOutcome::Fenced
    };
    let Some(row) = row else {
        return ended;
    };
    if row.incarnation != append.session.incarnation || row.status != SessionStatus::Open {
        return ended;
    }
    if let Some(other) = entry_token {
        return AppendOutcome::Inconsistent(format!(
            "journal entry {} of session {} holds token {other}, not {}",
            append.seq, append.session, append.token
        ));
    }
    if row.head == append.seq - 1 {
        AppendOutcome::NotApplied
    } else {
        AppendOutcome::Inconsistent(format!(
            "session {} journal head {} for an append at seq {} that is not there",
            append.session, row.head, append.seq
        ))
    }
}

/// What a broker claiming a partition (or a group) does about its holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimStep {
    /// Free (no holder, the claimer itself, or a holder whose session
    /// ended): claim with `IF leader_epoch = <the epoch read>`.
    Claim,
    /// The holder's lease lapsed while its session is open: fence it first
    /// (`IF incarnation = ? AND status = open AND lease_expires_ms = <read>`,
    /// so that a renewal meanwhile makes the fence fail), apply its journal,
    /// then claim.
    FenceHolder,
    /// A live session holds it.
    NotClaimable,
}

/// `holder`: the session the partition row names; `holder_row`: its node
/// id's session row as read (`None`: no row).
pub fn claim_step(
    claimer: BrokerSession,
    holder: Option<BrokerSession>,
    holder_row: Option<&SessionRow>,
    now_ms: i64,
) -> ClaimStep {
    let Some(holder) = holder else {
        return ClaimStep::Claim;
    };
    if holder == claimer {
        return ClaimStep::Claim;
    }
    match holder_row {
        Some(row) if row.incarnation == holder.incarnation && row.status == SessionStatus::Open => {
            if row.lease_expires_ms > now_ms {
                ClaimStep::NotClaimable
            } else {
                ClaimStep::FenceHolder
            }
        }
        _ => ClaimStep::Claim,
    }
}

/// What a registering broker does with its node id's session row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterStep {
    /// No row yet: `INSERT … IF NOT EXISTS` with incarnation 1.
    Insert,
    /// Replace the ended or lapsed session `incarnation` with `incarnation
    /// + 1`, conditioned on the row as read.
    Replace { incarnation: i64 },
    /// A live session holds the node id until `lease_expires_ms`.
    InUse { lease_expires_ms: i64 },
}

pub fn register_step(row: Option<&SessionRow>, now_ms: i64) -> RegisterStep {
    match row {
        None => RegisterStep::Insert,
        Some(row) if row.status == SessionStatus::Open && row.lease_expires_ms > now_ms => {
            RegisterStep::InUse {
                lease_expires_ms: row.lease_expires_ms,
            }
        }
        Some(row) => RegisterStep::Replace {
            incarnation: row.incarnation,
        },
    }
}

#[cfg(test)]
mod tests;
