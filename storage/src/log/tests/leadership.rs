//! Leadership seen from the log: a fenced log drops the partition, answers
//! NotLeader and never takes the new epoch; a hand-over drains first; a
//! claim by another log makes every later commit of the old one fail.

use metadata::ClusterStore;
use std::time::Duration;

use metadata::BrokerRegistration;

use super::*;
use crate::testing::{TEST_LEASE_MS, lead_every_partition};

/// A second log over the fixture's stores, registered as `node_id`, leading
/// nothing yet.
async fn second_log<S: crate::ObjectStore>(f: &Fixture<S>) -> Log {
    Log::open(
        LogConfig::default(),
        f.store.clone(),
        f.metadata.clone(),
        f.clock.clone(),
    )
    .await
    .unwrap()
}

async fn register(f: &Fixture, node_id: i32, now_ms: i64) -> metadata::BrokerSession {
    f.metadata
        .register_broker(
            &BrokerRegistration {
                node_id,
                host: "localhost".into(),
                port: 9092,
                rack: None,
            },
            now_ms,
            TEST_LEASE_MS,
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_log_fenced_by_a_claim_drops_the_partition_and_answers_not_leader() {
    let f = fixture(LogConfig::default()).await;
    append_each(&f, &["a", "b"]).await;
    let old_epoch = f.log.offsets(&f.tp).unwrap().2;

    // Another broker takes the partition after this one's lease lapsed.
    let later = f.clock.now_ms() + TEST_LEASE_MS + 1;
    let heir = register(&f, 2, later).await;
    let claim = f
        .metadata
        .claim_partitions(heir, &[f.tp], later)
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(claim.state.next_offset, 2);
    let new_log = second_log(&f).await;
    new_log.lead(heir, vec![claim]);

    // The old log still believes it leads: its next flush is refused whole,
    // and it stops leading everything its fenced session led.
    let refused = f
        .log
        .append(f.tp, batch(&["zombie"], 1), AppendOptions::default())
        .await;
    assert!(
        matches!(refused, Err(Error::NotLeader(tp)) if tp == f.tp),
        "got {refused:?}"
    );
    assert!(
        f.log.offsets(&f.tp).is_none(),
        "a fenced log kept the partition"
    );
    assert!(f.log.led().is_empty(), "the whole session was fenced");
    let again = f
        .log
        .append(f.tp, batch(&["zombie"], 1), AppendOptions::default())
        .await;
    assert!(matches!(again, Err(Error::NotLeader(_))), "got {again:?}");

    // The new leader continues the log; nothing of the zombie is in it.
    new_log
        .append(f.tp, batch(&["c"], 1), AppendOptions::default())
        .await
        .unwrap();
    let (_, hw, epoch) = new_log.offsets(&f.tp).unwrap();
    assert_eq!((hw, epoch), (3, old_epoch + 1));
    let read = new_log.read(f.tp, 0, 1 << 20, true).await.unwrap();
    assert_eq!(
        values(&read.records),
        vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]
    );
}

#[tokio::test]
async fn a_partition_released_by_a_live_log_fences_only_that_partition() {
    let f = fixture(LogConfig::default()).await;
    let other = TopicPartition::new(f.tp.topic_id, 1);
    append_each(&f, &["a"]).await;
    let session = f.log.session().unwrap();
    // Released in the store behind the log's back (as if a hand-over raced),
    // then claimed by another broker.
    let epoch = f.log.offsets(&f.tp).unwrap().2;
    f.metadata
        .release_partitions(session, &[(f.tp, epoch)])
        .await
        .unwrap();
    let now = f.clock.now_ms();
    let heir = register(&f, 2, now).await;
    f.metadata
        .claim_partitions(heir, &[f.tp], now)
        .await
        .unwrap()
        .remove(0)
        .unwrap();

    // One flush holding both partitions: the fenced one is set apart, the
    // other commits.
    let (lost, kept) = tokio::join!(
        f.log
            .append(f.tp, batch(&["x"], 1), AppendOptions::default()),
        f.log
            .append(other, batch(&["y"], 1), AppendOptions::default()),
    );
    assert!(matches!(lost, Err(Error::NotLeader(_))), "got {lost:?}");
    assert_eq!(kept.unwrap().base_offset, 0);
    assert!(!f.log.leads(&f.tp));
    assert!(f.log.leads(&other));
    // The log never took the new epoch as its own.
    assert_eq!(f.log.led(), vec![(other, epoch)]);
}

#[tokio::test]
async fn resign_drains_queued_appends_then_hands_the_partition_over() {
    let f = fixture(LogConfig {
        flush_interval_ms: 50,
        ..LogConfig::default()
    })
    .await;
    let queued = f
        .log
        .enqueue(f.tp, batch(&["queued"], 1), AppendOptions::default())
        .await
        .unwrap();
    let released = f.log.resign(&[f.tp], Duration::from_secs(10)).await;
    let epoch = released[0].1;
    assert_eq!(released, vec![(f.tp, epoch)]);
    // What was queued before the hand-over is committed, not failed.
    assert_eq!(queued.wait().await.unwrap().base_offset, 0);
    let refused = f
        .log
        .append(f.tp, batch(&["late"], 1), AppendOptions::default())
        .await;
    assert!(
        matches!(refused, Err(Error::NotLeader(_))),
        "got {refused:?}"
    );

    let session = f.log.session().unwrap();
    f.metadata
        .release_partitions(session, &released)
        .await
        .unwrap();
    // The next leader claims at once (no lease to wait out) and continues.
    let now = f.clock.now_ms();
    let heir = register(&f, 2, now).await;
    let claim = f
        .metadata
        .claim_partitions(heir, &[f.tp], now)
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(
        (claim.state.next_offset, claim.state.leader_epoch),
        (1, epoch + 1)
    );
}

#[tokio::test]
async fn a_restarted_log_leads_again_under_a_new_session_and_the_old_one_is_fenced() {
    let f = fixture(LogConfig::default()).await;
    append_each(&f, &["a"]).await;
    let old = f.log.session().unwrap();
    // The same node id starts again (the test takes the old process for dead).
    let restarted = second_log(&f).await;
    let new = lead_every_partition(&restarted, f.metadata.as_ref(), f.clock.as_ref(), 1)
        .await
        .unwrap();
    assert_eq!(new.node_id, old.node_id);
    assert_eq!(new.incarnation, old.incarnation + 1);
    restarted
        .append(f.tp, batch(&["b"], 1), AppendOptions::default())
        .await
        .unwrap();
    let zombie = f
        .log
        .append(f.tp, batch(&["zombie"], 1), AppendOptions::default())
        .await;
    assert!(matches!(zombie, Err(Error::NotLeader(_))), "got {zombie:?}");
    let read = restarted.read(f.tp, 0, 1 << 20, true).await.unwrap();
    assert_eq!(
        values(&read.records),
        vec![(0, "a".into()), (1, "b".into())]
    );
}
