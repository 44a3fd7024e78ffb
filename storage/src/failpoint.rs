//! Crash points for durability tests: the process aborts at a named step of
//! the write path with a given probability, the way a SIGKILL at exactly that
//! instant would stop it.
//!
//! Off unless `LIGHTSTREAM_FAILPOINTS` is set when the process starts, e.g.
//! `LIGHTSTREAM_FAILPOINTS=flush.before_commit=0.02,flush.after_commit=0.02`.
//! A point costs one lookup in an empty list when the variable is unset.
//!
//! Points:
//! - `flush.before_commit`: the flush's object is durable, its index entries
//!   and producer states are not committed (an orphan object; the appends
//!   were not acknowledged).
//! - `flush.after_commit`: committed, nobody answered yet (the client
//!   retries a batch the log already holds; idempotence must deduplicate it).
//! - `compaction.after_write`: a rewrite's object is written, the index
//!   does not name it (garbage for GC).
//! - `compaction.after_swap`: the index names the rewrite's object, the old
//!   objects are garbage for GC once nothing else names them.

use std::sync::OnceLock;

/// The environment variable naming the active points.
pub const ENV: &str = "LIGHTSTREAM_FAILPOINTS";

fn points() -> &'static [(String, f64)] {
    static POINTS: OnceLock<Vec<(String, f64)>> = OnceLock::new();
    POINTS.get_or_init(|| {
        std::env::var(ENV)
            .map(|spec| parse(&spec))
            .unwrap_or_default()
    })
}

fn parse(spec: &str) -> Vec<(String, f64)> {
    spec.split(',')
        .filter_map(|item| {
            let (name, p) = item.trim().split_once('=')?;
            let p: f64 = p.trim().parse().ok()?;
            Some((name.trim().to_string(), p.clamp(0.0, 1.0)))
        })
        .collect()
}

/// Aborts the process with the configured probability of point `name`.
pub fn crash_point(name: &str) {
    let Some((_, p)) = points().iter().find(|(n, _)| n == name) else {
        return;
    };
    if fastrand::f64() < *p {
        // stderr is unbuffered: the line is out before the abort.
        eprintln!("failpoint {name}: aborting the process");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_points_and_skips_malformed_ones() {
        let points = super::parse("a=0.5, b = 1 ,c,d=x,e=7");
        assert_eq!(
            points,
            vec![
                ("a".to_string(), 0.5),
                ("b".to_string(), 1.0),
                ("e".to_string(), 1.0)
            ]
        );
    }
}
