use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const A: BrokerSession = BrokerSession {
    node_id: 1,
    incarnation: 7,
};
const B: BrokerSession = BrokerSession {
    node_id: 2,
    incarnation: 1,
};

fn open_row(head: i64) -> SessionRow {
    SessionRow {
        incarnation: A.incarnation,
        status: SessionStatus::Open,
        lease_expires_ms: 10_000,
        head,
    }
}

fn append(seq: i64, token: &str) -> JournalAppend {
    JournalAppend {
        session: A,
        seq,
        token: token.to_string(),
    }
}

#[test]
fn an_entry_holding_our_token_is_committed_whatever_the_row_says_now() {
    let a = append(4, "obj-4");
    let fenced = SessionRow {
        status: SessionStatus::Fenced,
        ..open_row(4)
    };
    for row in [Some(open_row(4)), Some(open_row(9)), Some(fenced), None] {
        assert_eq!(
            after_read_back(&a, row.as_ref(), Some("obj-4"), false),
            AppendOutcome::Committed
        );
    }
}

#[test]
fn no_entry_and_an_ended_session_is_fenced_and_an_open_one_at_our_head_is_not_applied() {
    let a = append(4, "obj-4");
    assert_eq!(
        after_read_back(&a, Some(&open_row(3)), None, false),
        AppendOutcome::NotApplied
    );
    for status in [SessionStatus::Closed, SessionStatus::Fenced] {
        let row = SessionRow {
            status,
            ..open_row(3)
        };
        assert_eq!(
            after_read_back(&a, Some(&row), None, false),
            AppendOutcome::Fenced
        );
        // Its answer lost, it may have applied and been trimmed since.
        assert_eq!(
            after_read_back(&a, Some(&row), None, true),
            AppendOutcome::Unknown
        );
    }
    let replaced = SessionRow {
        incarnation: A.incarnation + 1,
        ..open_row(0)
    };
    assert_eq!(
        after_read_back(&a, Some(&replaced), None, false),
        AppendOutcome::Fenced
    );
    assert_eq!(
        after_read_back(&a, None, None, false),
        AppendOutcome::Fenced
    );
}

#[test]
fn another_token_at_our_seq_or_a_head_past_a_missing_entry_is_inconsistent() {
    let a = append(4, "obj-4");
    assert!(matches!(
        after_read_back(&a, Some(&open_row(4)), Some("obj-x"), false),
        AppendOutcome::Inconsistent(_)
    ));
    assert!(matches!(
        after_read_back(&a, Some(&open_row(5)), None, true),
        AppendOutcome::Inconsistent(_)
    ));
}

#[test]
fn claims_take_what_is_free_fence_a_lapsed_holder_and_leave_a_live_one() {
    let now = 5_000;
    let live = SessionRow {
        incarnation: A.incarnation,
        status: SessionStatus::Open,
        lease_expires_ms: now + 1,
        head: 0,
    };
    let lapsed = SessionRow {
        lease_expires_ms: now,
        ..live
    };
    let closed = SessionRow {
        status: SessionStatus::Closed,
        ..live
    };
    let replaced = SessionRow {
        incarnation: A.incarnation + 1,
        ..live
    };
    assert_eq!(claim_step(B, None, None, now), ClaimStep::Claim);
    assert_eq!(claim_step(B, Some(B), None, now), ClaimStep::Claim);
    assert_eq!(
        claim_step(B, Some(A), Some(&live), now),
        ClaimStep::NotClaimable
    );
    assert_eq!(
        claim_step(B, Some(A), Some(&lapsed), now),
        ClaimStep::FenceHolder
    );
    assert_eq!(claim_step(B, Some(A), Some(&closed), now), ClaimStep::Claim);
    assert_eq!(
        claim_step(B, Some(A), Some(&replaced), now),
        ClaimStep::Claim
    );
    assert_eq!(claim_step(B, Some(A), None, now), ClaimStep::Claim);
}

#[test]
fn registration_inserts_replaces_an_ended_or_lapsed_session_and_refuses_a_live_one() {
    let now = 5_000;
    let live = SessionRow {
        incarnation: 3,
        status: SessionStatus::Open,
        lease_expires_ms: now + 1,
        head: 12,
    };
    assert_eq!(register_step(None, now), RegisterStep::Insert);
    assert_eq!(
        register_step(Some(&live), now),
        RegisterStep::InUse {
            lease_expires_ms: now + 1
        }
    );
    let lapsed = SessionRow {
        lease_expires_ms: now,
        ..live
    };
    assert_eq!(
        register_step(Some(&lapsed), now),
        RegisterStep::Replace { incarnation: 3 }
    );
    let closed = SessionRow {
        status: SessionStatus::Closed,
        ..live
    };
    assert_eq!(
        register_step(Some(&closed), now),
        RegisterStep::Replace { incarnation: 3 }
    );
}

/// How the network treats one LWT.
#[derive(Clone, Copy, Debug)]
enum Fate {
    /// Applied (if its condition holds) and answered.
    Deliver,
    /// Never reached a replica: not applied, no answer.
    LoseRequest,
    /// Applied (if its condition holds), answer lost.
    LoseReply,
    /// Accepted by a minority (if its condition holds): it applies or
    /// vanishes when the next Paxos round on the partition settles it.
    LeavePending,
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        Just(Fate::Deliver),
        Just(Fate::LoseRequest),
        Just(Fate::LoseReply),
        Just(Fate::LeavePending),
    ]
}

/// One Scylla partition: broker A's session row and journal, with Paxos's
/// rule for rounds in flight: a proposal accepted by a minority is either
/// completed by the next round on the partition (a later LWT or a SERIAL
/// read) or never applied.
struct Partition {
    row: SessionRow,
    journal: BTreeMap<i64, String>,
    pending: Option<(i64, String)>,
    /// Operations so far, and at which one A's session was fenced.
    clock: usize,
    fenced_at: Option<usize>,
    /// (seq, operation) of every applied append.
    applied_at: Vec<(i64, usize)>,
}

impl Partition {
    fn new() -> Partition {
        Partition {
            row: open_row(0),
            journal: BTreeMap::new(),
            pending: None,
            clock: 0,
            fenced_at: None,
            applied_at: Vec::new(),
        }
    }

    fn settle(&mut self, complete: bool) {
        self.clock += 1;
        if let Some((seq, token)) = self.pending.take()
            && complete
        {
            self.apply(seq, token);
        }
    }

    fn apply(&mut self, seq: i64, token: String) {
        self.row.head = seq;
        self.journal.insert(seq, token);
        self.applied_at.push((seq, self.clock));
    }

    fn holds(&self, append: &JournalAppend) -> bool {
        self.row.incarnation == append.session.incarnation
            && self.row.status == SessionStatus::Open
            && self.row.head == append.seq - 1
    }

    fn append(&mut self, a: &JournalAppend, fate: Fate, complete: bool) -> LwtAnswer<SessionRow> {
        self.settle(complete);
        let holds = self.holds(a);
        match fate {
            Fate::Deliver if holds => {
                self.apply(a.seq, a.token.clone());
                LwtAnswer::Applied
            }
            Fate::Deliver => LwtAnswer::NotApplied(Some(self.row)),
            Fate::LoseRequest => LwtAnswer::Uncertain,
            Fate::LoseReply => {
                if holds {
                    self.apply(a.seq, a.token.clone());
                }
                LwtAnswer::Uncertain
            }
            Fate::LeavePending => {
                if holds {
                    self.pending = Some((a.seq, a.token.clone()));
                }
                LwtAnswer::Uncertain
            }
        }
    }

    fn serial_read(&mut self, seq: i64, complete: bool) -> (SessionRow, Option<String>) {
        self.settle(complete);
        (self.row, self.journal.get(&seq).cloned())
    }

    /// Broker B fences A's session (its lease lapsed): an LWT too.
    fn fence(&mut self, complete: bool) {
        self.settle(complete);
        if self.row.status == SessionStatus::Open {
            self.row.status = SessionStatus::Fenced;
            self.fenced_at = Some(self.clock);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Broker A appends flushes to its journal through lost, late and
    /// uncertain LWTs, retrying each under the same seq and token up to
    /// three times, while broker B fences A's session at a random moment
    /// (before an append or between an append and its read-back).
    /// A acknowledges exactly the appends its journal holds, each once;
    /// nothing applies after the fence; the journal is dense.
    #[test]
    fn two_writers_lost_and_late_lwts_ack_exactly_the_journal(
        flushes in 1usize..10,
        fates in prop::collection::vec((fate(), any::<bool>()), 1..80),
        fence_at in 0usize..100,
    ) {
        let mut p = Partition::new();
        let mut fates = fates.into_iter().cycle();
        let mut acked: Vec<(i64, String)> = Vec::new();
        let mut next_seq = 1;
        let mut ops = 0;
        let mut b_fenced = false;
        'flushes: for flush in 0..flushes {
            let a = append(next_seq, &format!("obj-{flush}"));
            for _try in 0..3 {
                let (fate, complete) = fates.next().expect("cycle");
                ops += 1;
                if ops >= fence_at && !b_fenced {
                    p.fence(complete);
                    b_fenced = true;
                }
                let answer = p.append(&a, fate, complete);
                let outcome = match after_append(&answer) {
                    AppendStep::Committed => AppendOutcome::Committed,
                    AppendStep::ReadEntry => {
                        let LwtAnswer::NotApplied(row) = &answer else {
                            panic!("ReadEntry after {answer:?}");
                        };
                        // The not-applied LWT was a Paxos round: settled.
                        prop_assert!(p.pending.is_none());
                        let entry = p.journal.get(&a.seq).cloned();
                        after_read_back(&a, row.as_ref(), entry.as_deref(), false)
                    }
                    AppendStep::ReadBack => {
                        let (_, complete) = fates.next().expect("cycle");
                        ops += 1;
                        if ops >= fence_at && !b_fenced {
                            p.fence(complete);
                            b_fenced = true;
                        }
                        let (row, entry) = p.serial_read(a.seq, complete);
                        after_read_back(&a, Some(&row), entry.as_deref(), true)
                    }
                };
                match outcome {
                    AppendOutcome::Committed => {
                        acked.push((a.seq, a.token.clone()));
                        next_seq += 1;
                        continue 'flushes;
                    }
                    AppendOutcome::NotApplied => continue,
                    AppendOutcome::Fenced | AppendOutcome::Unknown => break 'flushes,
                    AppendOutcome::Inconsistent(why) => {
                        prop_assert!(false, "inconsistent: {why}");
                    }
                }
            }
            // Given up after three tries known not applied: the client
            // retries; the next flush takes the same seq.
        }
        // Whatever is still in flight settles some day, either way.
        let (_, complete) = fates.next().expect("cycle");
        p.settle(complete);

        let journal: Vec<(i64, String)> = p.journal.clone().into_iter().collect();
        prop_assert_eq!(&acked, &journal, "acknowledged appends differ from the journal");
        let seqs: Vec<i64> = journal.iter().map(|(s, _)| *s).collect();
        prop_assert_eq!(seqs, (1..=journal.len() as i64).collect::<Vec<_>>());
        if let Some(fenced_at) = p.fenced_at {
            for (seq, at) in &p.applied_at {
                prop_assert!(*at <= fenced_at, "append {seq} applied after the fence");
            }
        }
    }
}
