//! What the ScyllaDB backend does when the server does not answer as
//! hoped, checked through `scylla-proxy` between the driver and an
//! in-process CQL server (`test_server`): a conditional write that timed
//! out is read back and never retried blindly; one that did not apply is
//! never acknowledged, one that applied is acknowledged once; Unavailable
//! answers are retried, then reported as retriable; a plain write that timed
//! out is reported as uncertain.
//!
//! The server ignores `IF` conditions and cannot hold the session and group
//! tables, so these go through topic operations, whose conditional writes
//! and SERIAL read-backs follow the same path (`exec::Cql::lwt`) as every
//! other; the journal's own decisions are `decide`'s property tests.

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::time::Duration;

    use scylla_proxy::{
        Condition, Node, Proxy, Reaction, RequestOpcode, RequestReaction, RequestRule,
        ResponseOpcode, ResponseReaction, ResponseRule, RunningProxy, ShardAwareness,
    };
    use tokio::sync::mpsc;

    use crate::model::TopicId;
    use crate::scylla::config::ScyllaConfig;
    use crate::scylla::store::ScyllaStore;
    use crate::scylla::test_server::{kassandra_cql, start_kassandra};
    use crate::store::{Error, ErrorKind, LogStore, TopicStore};

    /// The client-side request timeout the tests run with.
    const REQUEST_TIMEOUT_MS: u64 = 500;

    struct Rig {
        store: ScyllaStore,
        proxy: RunningProxy,
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port()
    }

    /// kassandra behind a proxy, and a store talking to the proxy.
    async fn rig() -> Rig {
        let server = start_kassandra();
        let proxy_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let proxy = Proxy::new([Node::new(
            server,
            proxy_addr,
            ShardAwareness::Unaware,
            None,
            None,
        )])
        .run()
        .await
        .expect("proxy");
        let config = ScyllaConfig::from_url(&format!(
            "scylla://{proxy_addr}/lightstream?request_timeout_ms={REQUEST_TIMEOUT_MS}"
        ))
        .expect("url");
        let store = ScyllaStore::on_session(kassandra_cql(&config).await, "test-cluster");
        Rig { store, proxy }
    }

    /// Executions whose bound values hold `marker`.
    fn executions_of(marker: &str) -> Condition {
        Condition::RequestOpcode(RequestOpcode::Execute).and(Condition::BodyContainsCaseSensitive(
            marker.as_bytes().into(),
        ))
    }

    /// Sets the request rules; the receiver gets every frame they matched.
    fn on_requests(
        rig: &mut Rig,
        rules: Vec<(Condition, RequestReaction)>,
    ) -> mpsc::UnboundedReceiver<(scylla_proxy::RequestFrame, Option<u16>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let rules = rules
            .into_iter()
            .map(|(c, r)| RequestRule(c, r.with_feedback_when_performed(tx.clone())))
            .collect();
        rig.proxy.running_nodes[0].change_request_rules(Some(rules));
        rx
    }

    fn count(rx: &mut mpsc::UnboundedReceiver<(scylla_proxy::RequestFrame, Option<u16>)>) -> usize {
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        n
    }

    #[tokio::test]
    async fn a_conditional_write_that_timed_out_and_did_not_apply_is_never_acknowledged() {
        let mut rig = rig().await;
        // The first execution naming the topic (its creation) is answered
        // with a write timeout and never reaches the server; the read-back
        // after it goes through.
        let mut seen = on_requests(
            &mut rig,
            vec![(
                executions_of("lost-topic").and(Condition::TrueForLimitedTimes(1)),
                RequestReaction::forge().write_timeout(),
            )],
        );
        let created = rig
            .store
            .create_topic("lost-topic", TopicId::new_random(), 3, BTreeMap::new())
            .await;
        // The SERIAL read-back found no topic: known not applied, retriable.
        assert!(
            matches!(&created, Err(Error::Unavailable(why)) if why.contains("did not apply")),
            "got {created:?}"
        );
        assert_eq!(count(&mut seen), 1, "the conditional write was sent again");
        let names: Vec<String> = rig
            .store
            .topics()
            .await
            .expect("topics")
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert!(!names.contains(&"lost-topic".to_string()), "{names:?}");
    }

    #[tokio::test]
    async fn a_conditional_write_that_applied_but_whose_answer_was_lost_is_acknowledged_once() {
        let mut rig = rig().await;
        let mut seen = on_requests(
            &mut rig,
            vec![(executions_of("late-answer"), RequestReaction::noop())],
        );
        // The server applies the creation, but its answer comes after the
        // client gave up waiting: the outcome is unknown to the driver.
        // Only on the connections requests go through: the driver's control
        // connection (the one that REGISTERed for events) also gets Result
        // answers, to its metadata refreshes, and delaying one of those
        // instead let the creation's answer through (a CI run saw it).
        rig.proxy.running_nodes[0].change_response_rules(Some(vec![ResponseRule(
            Condition::ResponseOpcode(ResponseOpcode::Result)
                .and(Condition::not(Condition::ConnectionRegisteredAnyEvent))
                .and(Condition::TrueForLimitedTimes(1)),
            ResponseReaction::delay(Duration::from_millis(4 * REQUEST_TIMEOUT_MS)),
        )]));
        let topic_id = TopicId::new_random();
        let created = rig
            .store
            .create_topic("late-answer", topic_id, 3, BTreeMap::new())
            .await
            .expect("the SERIAL read-back found the topic: created");
        assert_eq!(created.topic_id, topic_id);
        // One creation, one read-back: nothing was sent twice.
        assert_eq!(count(&mut seen), 2);
        let listed: Vec<TopicId> = rig
            .store
            .topics()
            .await
            .expect("topics")
            .into_iter()
            .filter(|t| t.name == "late-answer")
            .map(|t| t.topic_id)
            .collect();
        assert_eq!(listed, [topic_id]);
        let stats = rig.store.statement_stats();
        assert_eq!(stats.lwt_uncertain, 1, "{stats:?}");
    }

    #[tokio::test]
    async fn unavailable_answers_to_a_conditional_write_are_retried_then_reported_retriable() {
        let mut rig = rig().await;
        let mut seen = on_requests(
            &mut rig,
            vec![(
                executions_of("busy-topic"),
                RequestReaction::forge().unavailable(),
            )],
        );
        let created = rig
            .store
            .create_topic("busy-topic", TopicId::new_random(), 1, BTreeMap::new())
            .await;
        assert!(
            matches!(&created, Err(Error::Unavailable(_))),
            "got {created:?}"
        );
        assert_eq!(created.unwrap_err().kind(), ErrorKind::NotApplied);
        // The first try and three retries: Unavailable means nothing applied.
        assert_eq!(count(&mut seen), 4);
    }

    #[tokio::test]
    async fn a_plain_write_that_timed_out_is_reported_uncertain() {
        let mut rig = rig().await;
        let _seen = on_requests(
            &mut rig,
            vec![(
                executions_of("objects/timed-out"),
                RequestReaction::forge().write_timeout(),
            )],
        );
        let forgotten = rig
            .store
            .forget_objects(&["objects/timed-out".to_string()])
            .await;
        assert!(
            matches!(forgotten, Err(Error::Timeout)),
            "got {forgotten:?}"
        );
    }
}
