//! What one flush commit costs in the ScyllaDB backend.
//!
//! Always: the statements per flush by kind at 10, 100 and 1,000 active
//! partitions, counted from the code that builds them
//! (`metadata::scylla::apply`). With `LIGHTSTREAM_TEST_SCYLLA=host:port`
//! also, against that node: commits per second, commit latency p50/p99 and
//! LWTs per flush, measured (each size in a keyspace of its own, dropped
//! after).
//!
//! `cargo run --release -p metadata --example scylla_commit_cost`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use metadata::scylla::cql::{self, Kind};
use metadata::scylla::store::ScyllaStore;
use metadata::scylla::{ScyllaConfig, apply};
use metadata::{
    BrokerRegistration, BrokerSession, ClusterStore, FlushCommit, IndexEntry, LogStore, TopicId,
    TopicPartition, TopicStore,
};

const SIZES: [i32; 3] = [10, 100, 1_000];

fn commit(session: BrokerSession, topic_id: TopicId, partitions: i32, n: i64) -> FlushCommit {
    let key = format!("bench/{topic_id}/{n:08}");
    let entries: Vec<IndexEntry> = (0..partitions)
        .map(|p| IndexEntry {
            topic_partition: TopicPartition::new(topic_id, p),
            base_offset: n * 10,
            last_offset: n * 10 + 9,
            object_key: key.clone(),
            position: 4_096 * p as u64,
            length: 4_096,
            max_timestamp: 1_700_000_000_000 + n,
        })
        .collect();
    FlushCommit {
        session,
        object_key: key,
        object_size: 4_096 * partitions as u64,
        leader_epochs: vec![1; entries.len()],
        entries,
        producers: Vec::new(),
    }
}

fn kind_of(name: &str) -> Kind {
    cql::ALL
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.kind)
        .expect("a statement of cql.rs")
}

fn counted() {
    println!("statements per flush, counted (steady state: partitions led, summaries cached)");
    println!(
        "{:>10} {:>12} {:>8} {:>14} {:>8}",
        "partitions", "LWT batches", "reads", "plain writes", "total"
    );
    let session = BrokerSession {
        node_id: 1,
        incarnation: 1,
    };
    for partitions in SIZES {
        let counts =
            apply::statements_per_flush(&commit(session, TopicId::new_random(), partitions, 1))
                .expect("plan");
        let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
        for (name, n) in &counts {
            let kind = match kind_of(name) {
                Kind::Read | Kind::SerialRead => "reads",
                Kind::Conditional => "lwt",
                Kind::InConditionalBatch => "in_batch",
                _ => "writes",
            };
            *by_kind.entry(kind).or_default() += n;
        }
        println!(
            "{:>10} {:>12} {:>8} {:>14} {:>8}",
            partitions,
            by_kind.get("lwt").copied().unwrap_or(0),
            by_kind.get("reads").copied().unwrap_or(0),
            by_kind.get("writes").copied().unwrap_or(0),
            counts.values().sum::<usize>()
        );
    }
    println!("(the LWT is one conditional batch: head advance + entry + trim)");
}

async fn measured(node: &str) {
    println!("\nagainst ScyllaDB at {node}");
    println!(
        "{:>10} {:>8} {:>10} {:>9} {:>9} {:>10}",
        "partitions", "commits", "commits/s", "p50 ms", "p99 ms", "LWTs/flush"
    );
    for partitions in SIZES {
        let keyspace = format!("lightstream_bench_{}", uuid::Uuid::new_v4().simple());
        let config = ScyllaConfig::from_url(&format!("scylla://{node}/{keyspace}")).expect("url");
        let store = ScyllaStore::connect(&config).await.expect("connect");
        let topic_id = TopicId::new_random();
        store
            .create_topic("bench", topic_id, partitions, BTreeMap::new())
            .await
            .expect("create");
        let registration = BrokerRegistration {
            node_id: 1,
            host: "localhost".into(),
            port: 9092,
            rack: None,
        };
        let session = store
            .register_broker(&registration, 0, 1 << 40)
            .await
            .expect("register");
        let all: Vec<TopicPartition> = (0..partitions)
            .map(|p| TopicPartition::new(topic_id, p))
            .collect();
        for claim in store
            .claim_partitions(session, &all, 0)
            .await
            .expect("claim")
        {
            claim.expect("claimed");
        }
        let before = store.statement_stats();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut latencies = Vec::new();
        let started = Instant::now();
        for n in 0..500 {
            if Instant::now() > deadline {
                break;
            }
            let t = Instant::now();
            store
                .commit_flush(&commit(session, topic_id, partitions, n))
                .await
                .expect("commit");
            latencies.push(t.elapsed());
        }
        let elapsed = started.elapsed();
        let after = store.statement_stats();
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        let lwts = after.conditional_batches - before.conditional_batches;
        println!(
            "{:>10} {:>8} {:>10.1} {:>9.2} {:>9.2} {:>10.2}",
            partitions,
            latencies.len(),
            latencies.len() as f64 / elapsed.as_secs_f64(),
            at(0.5).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            lwts as f64 / latencies.len() as f64
        );
        let session = scylla::client::session_builder::SessionBuilder::new()
            .known_nodes(&config.contact_points)
            .build()
            .await
            .expect("session");
        let _ = session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
            .await;
    }
}

#[tokio::main]
async fn main() {
    counted();
    match std::env::var("LIGHTSTREAM_TEST_SCYLLA") {
        Ok(node) => measured(&node).await,
        Err(_) => println!(
            "\nLIGHTSTREAM_TEST_SCYLLA is not set: commit rate and latency not measured (README, \"Testing against ScyllaDB\")"
        ),
    }
}
