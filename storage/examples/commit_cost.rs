//! What a flush's commit costs at the metadata seam, as the number of active
//! partitions grows: flushes, partitions per flush, conditional writes per
//! flush and per second in the ScyllaDB shape (`metadata::counting`), and
//! the commit's latency on the embedded SQLite file.
//!
//!     cargo run --release -p storage --example commit_cost [SECONDS]
//!
//! For each of 10, 100 and 1,000 partitions: one log (objects in a local
//! directory, metadata in a SQLite file, both in a temporary directory)
//! leads every partition; producers append one small batch to each
//! partition in turn, with 4 appends per partition in flight, for SECONDS
//! (default 5). Prints figures; asserts nothing.

use metadata::TopicStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metadata::counting::CountingStore;
use metadata::{SqliteStore, TopicId, TopicPartition};
use protocol::kafka_protocol::records::Compression;
use protocol::testing::record_batch;
use storage::{AppendOptions, LocalDirStore, LogConfig, SystemClock};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!(
        "partitions | flushes/s | partitions/flush | LWT/flush (journal shape) | LWT/flush (one per partition) | LWT/s (journal) | LWT/s (per partition) | commit p50 ms | commit p99 ms | appends/s"
    );
    for partitions in [10, 100, 1000] {
        run(partitions, Duration::from_secs(seconds)).await;
    }
}

async fn run(partitions: i32, duration: Duration) {
    let dir = tempfile::tempdir().expect("temp dir");
    let counting = Arc::new(CountingStore::new(
        SqliteStore::open(&dir.path().join("metadata.sqlite")).expect("metadata file"),
    ));
    let topic_id = TopicId::new_random();
    counting
        .create_topic("bench", topic_id, partitions, BTreeMap::new())
        .await
        .expect("topic");
    let objects = Arc::new(LocalDirStore::open(dir.path().join("objects")).expect("objects"));
    let log = Arc::new(
        storage::testing::open_leading(
            LogConfig::default(),
            objects,
            counting.clone(),
            Arc::new(SystemClock),
        )
        .await
        .expect("log"),
    );
    counting.reset();
    let batch = record_batch(
        &["a-small-record-of-some-bytes"],
        1,
        false,
        Compression::None,
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..partitions {
        for _ in 0..4 {
            let (log, batch) = (log.clone(), batch.clone());
            tasks.push(tokio::spawn(async move {
                let tp = TopicPartition::new(topic_id, p);
                let mut appended = 0u64;
                while started.elapsed() < duration {
                    if log
                        .append(tp, batch.clone(), AppendOptions::default())
                        .await
                        .is_ok()
                    {
                        appended += 1;
                    }
                }
                appended
            }));
        }
    }
    let mut appended = 0;
    for t in tasks {
        appended += t.await.expect("append task");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = counting.stats();
    let flushes = stats.calls.get("commit_flush").copied().unwrap_or(0).max(1);
    let mut latencies = stats.commit_latencies.clone();
    latencies.sort();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let per_flush = stats.committed_entries as f64 / flushes as f64;
    println!(
        "{partitions:>10} | {:>9.0} | {per_flush:>16.1} | {:>25.2} | {:>29.1} | {:>15.0} | {:>21.0} | {:>13.2} | {:>13.2} | {:>9.0}",
        flushes as f64 / elapsed,
        stats.commit_conditional_writes as f64 / flushes as f64,
        per_flush,
        stats.commit_conditional_writes as f64 / elapsed,
        stats.committed_entries as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        appended as f64 / elapsed,
    );
    log.shutdown().await;
}
