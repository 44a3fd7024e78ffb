//! Object compaction runs on a thread of its own, at
//! `object_compaction_thread_niceness`, and the thread ends with the broker.

#![cfg(target_os = "linux")]

mod common;

use std::time::Duration;

use broker::config::Settings;
use common::TestBroker;

/// A thread's name and nice value, from its `/proc/…/stat`: "tid (comm)
/// state ppid …". The name may hold spaces, so the line is split at its
/// closing parenthesis; nice is the 19th field, the 17th after it.
fn name_and_niceness(stat: &str) -> (&str, i32) {
    let (head, rest) = stat.rsplit_once(')').unwrap();
    let name = &head[head.find('(').unwrap() + 1..];
    let nice = rest.split_whitespace().nth(16).unwrap().parse().unwrap();
    (name, nice)
}

/// The nice value of each of this process's threads named `name`.
fn niceness_of_threads(name: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let (thread, nice) = name_and_niceness(&stat);
        if thread == name {
            found.push(nice);
        }
    }
    found
}

/// Waits up to ten seconds for `done`.
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: still not so after 10 s");
}

#[tokio::test]
async fn compaction_runs_on_its_own_thread_below_the_brokers_priority_and_ends_with_it() {
    assert!(niceness_of_threads("ls-compaction").is_empty());
    let broker = TestBroker::start_with(Settings {
        object_compaction_interval_ms: 60_000,
        object_compaction_thread_niceness: 7,
        ..Settings::default()
    })
    .await;
    wait_for("the compaction thread started", || {
        !niceness_of_threads("ls-compaction").is_empty()
    })
    .await;
    assert_eq!(niceness_of_threads("ls-compaction"), vec![7]);
    // The broker's own threads keep their priority.
    let own = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    assert_eq!(name_and_niceness(&own).1, 0);

    broker.stop().await;
    wait_for("the compaction thread ended", || {
        niceness_of_threads("ls-compaction").is_empty()
    })
    .await;
}
