//! Reading one connection's frames within the broker's memory bounds.
//!
//! Every byte read counts against `queued_max_request_bytes` from the moment
//! it arrives, not once its frame is complete: room for a chunk is taken
//! before the chunk is read, so a client that sends most of a large frame
//! and stops holds only what it sent, and the sum over all connections never
//! passes the limit (when it is reached, connections stop reading). The
//! buffer grows as bytes arrive — a length prefix reserves nothing — and
//! shrinks back after a large frame.
//!
//! Two deadlines close a connection: a frame that does not finish within
//! `request_read_timeout_ms` of its first byte (slowloris), and
//! `connections_max_idle_ms` without a byte from a client with no request
//! in flight (Kafka's idle timeout).

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use protocol::frame;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

/// Bytes read from the socket at a time, and room taken for each read.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// A buffer grown past this for a large frame is given back afterwards.
const KEEP_CAPACITY_BYTES: usize = 4 * READ_CHUNK_BYTES;

pub(super) struct Incoming<'a> {
    broker: &'a Broker,
    shutdown: CancellationToken,
    buf: BytesMut,
    /// `request_room` permits for exactly the bytes in `buf`.
    buffered: Option<OwnedSemaphorePermit>,
    /// Bytes read at a time: `READ_CHUNK_BYTES`, or all of
    /// `queued_max_request_bytes` when that is smaller.
    chunk: usize,
    /// When the first byte of the frame at the front of `buf` arrived.
    frame_started: Option<Instant>,
    last_read: Instant,
}

/// A whole frame and its share of `queued_max_request_bytes`, given back
/// when its answer is written.
pub(super) type Frame = (Bytes, OwnedSemaphorePermit);

impl<'a> Incoming<'a> {
    pub(super) fn new(broker: &'a Broker, shutdown: CancellationToken) -> Self {
        Incoming {
            broker,
            shutdown,
            buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            buffered: None,
            chunk: READ_CHUNK_BYTES.min(broker.settings.queued_max_request_bytes),
            frame_started: None,
            last_read: Instant::now(),
        }
    }

    /// The next whole frame; `Ok(None)` when the client closed the
    /// connection cleanly or the broker is shutting down; `Err(reason)` when
    /// the connection must be closed for the reason given.
    ///
    /// `written` and `queued` tell whether a request is in flight (queued
    /// replies not yet written), which suspends the idle timeout.
    pub(super) async fn next_frame(
        &mut self,
        reader: &mut OwnedReadHalf,
        written: &watch::Receiver<u64>,
        queued: u64,
    ) -> Result<Option<Frame>, String> {
        let settings = &self.broker.settings;
        loop {
            match frame::split_frame(&mut self.buf, settings.socket_request_max_bytes) {
                Ok(Some(frame)) => return Ok(Some(self.take(frame))),
                Ok(None) => {}
                Err(e) => return Err(format!("bad frame: {e}")),
            }
            let deadline = match self.frame_started {
                Some(started) => started + Duration::from_millis(settings.request_read_timeout_ms),
                None => self.last_read + Duration::from_millis(settings.connections_max_idle_ms),
            };
            // Cancel-safe: waiting for readability or room holds nothing.
            let room = tokio::select! {
                ready = reader.readable() => match ready {
                    Ok(()) => self.room_for_a_read(deadline).await?,
                    Err(e) => {
                        tracing::debug!(error = %e, "read failed");
                        return Ok(None);
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    if self.frame_started.is_some() {
                        return Err(format!(
                            "request not received within request_read_timeout_ms={} of its first byte ({} bytes buffered)",
                            settings.request_read_timeout_ms,
                            self.buf.len()
                        ));
                    }
                    if *written.borrow() != queued {
                        // Not idle: waiting for our answer.
                        self.last_read = Instant::now();
                        continue;
                    }
                    return Err(format!(
                        "idle for connections_max_idle_ms={}",
                        settings.connections_max_idle_ms
                    ));
                }
                _ = self.shutdown.cancelled() => return Ok(None),
            };
            let Some(mut room) = room else {
                return Ok(None);
            };
            if self.buf.capacity() - self.buf.len() < self.chunk {
                self.buf.reserve(self.chunk);
            }
            let read = reader.try_read_buf(&mut (&mut self.buf).limit(self.chunk));
            match read {
                Ok(0) => {
                    if !self.buf.is_empty() {
                        tracing::info!(buffered = self.buf.len(), "connection closed mid-frame");
                    }
                    return Ok(None);
                }
                Ok(n) => {
                    // Keep room for the bytes read; give back the rest.
                    drop(room.split(self.chunk - n));
                    match &mut self.buffered {
                        Some(held) => held.merge(room),
                        None => self.buffered = Some(room),
                    }
                    self.last_read = Instant::now();
                    self.frame_started.get_or_insert(self.last_read);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "read failed");
                    return Ok(None);
                }
            }
        }
    }

    /// Room for one read, waited for (back-pressure when every connection's
    /// buffered bytes together reach `queued_max_request_bytes`). `None`
    /// when the broker is shutting down.
    async fn room_for_a_read(
        &self,
        deadline: Instant,
    ) -> Result<Option<OwnedSemaphorePermit>, String> {
        let room = self.broker.request_room.clone();
        tokio::select! {
            room = room.acquire_many_owned(self.chunk as u32) => {
                Ok(Some(room.expect("the request semaphore is never closed")))
            }
            // A started frame that cannot get room in time frees what it
            // holds, so that others' frames can finish.
            _ = tokio::time::sleep_until(deadline), if self.frame_started.is_some() => Err(format!(
                "request not received within request_read_timeout_ms={} of its first byte (waiting for queued_max_request_bytes room)",
                self.broker.settings.request_read_timeout_ms
            )),
            _ = self.shutdown.cancelled() => Ok(None),
        }
    }

    /// Takes a split-off frame's room out of the buffered room, restarts the
    /// frame clock for what follows, and gives back a grown buffer.
    fn take(&mut self, frame: BytesMut) -> Frame {
        let size = frame::LENGTH_PREFIX_BYTES + frame.len();
        let held = self
            .buffered
            .as_mut()
            .expect("a whole frame was read, so its bytes hold room");
        let room = held
            .split(size)
            .expect("the buffered room covers every buffered byte");
        if self.buf.is_empty() {
            self.frame_started = None;
            if self.buf.capacity() > KEEP_CAPACITY_BYTES {
                self.buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
            }
        } else {
            self.frame_started = Some(Instant::now());
            if self.buf.capacity() > KEEP_CAPACITY_BYTES && self.buf.len() < READ_CHUNK_BYTES {
                self.buf = BytesMut::from(&self.buf[..]);
            }
        }
        (frame.freeze(), room)
    }
}
