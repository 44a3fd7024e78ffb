//! Probation: a broker that lost the store for a while takes no one's
//! partitions for a session timeout after it answers again.

use std::collections::HashMap;
use std::sync::Arc;

use metadata::{
    BrokerRegistration, BrokerSession, ClusterStore, RegisteredBroker, SessionStatus, SqliteStore,
};
use storage::ManualClock;

use super::{Cluster, ClusterSettings, ClusterView};

const SESSION_MS: i64 = 3_000;
const HEARTBEAT_MS: i64 = 500;

fn settings() -> ClusterSettings {
    ClusterSettings {
        session_timeout_ms: SESSION_MS as u64,
        heartbeat_interval_ms: HEARTBEAT_MS as u64,
        watch_interval_ms: 100,
        handover_drain_ms: 0,
    }
}

fn registration(node_id: i32) -> BrokerRegistration {
    BrokerRegistration {
        node_id,
        host: "127.0.0.1".into(),
        port: 9000 + node_id,
        rack: None,
    }
}

fn broker(node_id: i32, status: SessionStatus, lease_expires_ms: i64) -> RegisteredBroker {
    RegisteredBroker {
        registration: registration(node_id),
        session: BrokerSession {
            node_id,
            incarnation: 1,
        },
        status,
        lease_expires_ms,
    }
}

#[test]
fn on_probation_an_open_session_with_a_lapsed_lease_is_live_and_an_ended_one_is_not() {
    let now_ms = 10_000;
    let brokers = [
        broker(1, SessionStatus::Open, now_ms + 1),
        broker(2, SessionStatus::Open, now_ms - 1),
        broker(3, SessionStatus::Closed, now_ms + 1),
        broker(4, SessionStatus::Fenced, now_ms + 1),
    ];
    let me = brokers[0].session;
    let live = |on_probation| {
        let view = ClusterView::new(1, &brokers, now_ms, HashMap::new(), me, on_probation);
        (1..=4).filter(|&n| view.is_live(n)).collect::<Vec<_>>()
    };
    assert_eq!(live(false), vec![1]);
    assert_eq!(live(true), vec![1, 2]);
}

/// Renews `cluster`'s lease in the store as its heartbeat does.
async fn renew(cluster: &Cluster, store: &SqliteStore, clock: &ManualClock) {
    store
        .renew_lease(cluster.session(), storage::Clock::now_ms(clock), SESSION_MS)
        .await
        .expect("renew");
    cluster.renewed();
}

#[tokio::test]
async fn a_gap_in_lease_renewals_starts_a_probation_of_one_session_timeout() {
    let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
    let clock = Arc::new(ManualClock::new(1_000_000));
    // Another broker, registered straight in the store; it never renews.
    store
        .register_broker(&registration(2), 1_000_000, SESSION_MS)
        .await
        .expect("register 2");
    let cluster = Cluster::join(store.clone(), clock.clone(), registration(1), settings())
        .await
        .expect("join");
    assert!(!cluster.on_probation(), "a normal start is no probation");

    // Renewals on time: broker 2's lease lapses and it is taken for dead.
    for _ in 0..8 {
        clock.advance(HEARTBEAT_MS);
        renew(&cluster, &store, &clock).await;
    }
    assert!(!cluster.on_probation());
    cluster.reload_view(true).await.expect("view");
    assert!(!cluster.view().is_live(2));

    // One slow renewal, too short for any lease to lapse: no probation.
    clock.advance(3 * HEARTBEAT_MS);
    renew(&cluster, &store, &clock).await;
    assert!(!cluster.on_probation());

    // The store was out of reach for 10 s: everyone's lease lapsed.
    clock.advance(10_000);
    renew(&cluster, &store, &clock).await;
    assert!(cluster.on_probation());
    cluster.reload_view(true).await.expect("view");
    assert!(
        cluster.view().is_live(2),
        "on probation a lapsed open session counts"
    );

    // One session timeout of renewals on time later, broker 2 is dead again.
    for _ in 0..(SESSION_MS / HEARTBEAT_MS) {
        clock.advance(HEARTBEAT_MS);
        renew(&cluster, &store, &clock).await;
    }
    assert!(!cluster.on_probation());
    cluster.reload_view(true).await.expect("view");
    assert!(!cluster.view().is_live(2));
}
