//! Counters of every S3 request a store makes, by kind: kept by the broker
//! (logged as `s3 stats`), read by the tests and the bench.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// One kind of request's counters.
#[derive(Default)]
pub struct RequestStats {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub bytes: AtomicU64,
    pub latency: crate::Latencies,
}

impl RequestStats {
    pub(super) fn record(&self, started: Instant, bytes: u64, ok: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if ok {
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        self.latency.observe(started.elapsed());
    }
}

/// Counters of every request this store made, by kind. One request is one
/// SDK call, its retries included; bytes count only requests that succeeded.
#[derive(Default)]
pub struct S3Stats {
    /// PutObject: objects under the part size.
    pub put: RequestStats,
    pub create_multipart: RequestStats,
    pub upload_part: RequestStats,
    pub complete_multipart: RequestStats,
    pub abort_multipart: RequestStats,
    pub list_multipart: RequestStats,
    pub get: RequestStats,
    pub delete: RequestStats,
    pub list: RequestStats,
}

impl S3Stats {
    /// Every kind with the name it is logged under.
    pub fn kinds(&self) -> [(&'static str, &RequestStats); 9] {
        [
            ("put", &self.put),
            ("create_multipart", &self.create_multipart),
            ("upload_part", &self.upload_part),
            ("complete_multipart", &self.complete_multipart),
            ("abort_multipart", &self.abort_multipart),
            ("list_multipart", &self.list_multipart),
            ("get", &self.get),
            ("delete", &self.delete),
            ("list", &self.list),
        ]
    }
}

impl fmt::Display for S3Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, s)) in self.kinds().into_iter().enumerate() {
            let requests = s.requests.load(Ordering::Relaxed);
            let mean_ms = if requests == 0 {
                0.0
            } else {
                s.latency.micros() as f64 / requests as f64 / 1e3
            };
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(
                f,
                "{name}_requests={requests} {name}_errors={} {name}_bytes={} {name}_mean_ms={mean_ms:.2}",
                s.errors.load(Ordering::Relaxed),
                s.bytes.load(Ordering::Relaxed)
            )?;
        }
        Ok(())
    }
}
