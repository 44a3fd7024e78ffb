//! The `Clock` seam: the log never reads the wall clock directly, so tests can
//! control the timestamps it stamps (LogAppendTime) and the times it waits.

/// Milliseconds since the Unix epoch, as Kafka timestamps are.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}
