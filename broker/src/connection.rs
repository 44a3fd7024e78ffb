//! One client connection: read frames, dispatch requests, write responses in
//! request order.
//!
//! A reader and a writer run side by side, joined by a bounded queue of
//! replies (`max_in_flight_requests_per_connection`). The reader dispatches
//! each request in arrival order, so produces of one connection enter the log
//! in order. A produce hands back a task that waits for its flush, which lets
//! a pipelining producer keep several in flight; any other request waits
//! until every earlier reply has been written, as Kafka's muted channel does,
//! so it sees their effects and large replies never pile up. When the queue
//! is full the reader stops reading: back-pressure to the client.
//!
//! A frame that cannot be decoded closes the connection with one log line;
//! nothing else is affected.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use protocol::Decoded;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::handlers::{self, Reply};

mod incoming;
use incoming::Incoming;

// A reply is built once and moved once; boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Outgoing {
    Encoded(Bytes),
    Response {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
        reply: PendingReply,
        /// Room the answer holds until it is written (a Fetch answer's
        /// share of `fetch_response_buffer_max_bytes`).
        holding: Option<OwnedSemaphorePermit>,
        /// When the request was read, for its latency.
        received: std::time::Instant,
    },
}

#[allow(clippy::large_enum_variant)]
enum PendingReply {
    Ready(Option<ResponseKind>),
    Task(JoinHandle<Option<ResponseKind>>),
}

pub async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (queue, mut replies) = mpsc::channel::<(Outgoing, OwnedSemaphorePermit)>(
        broker.settings.max_in_flight_requests_per_connection,
    );
    // How many queued items the writer has finished; the reader waits on it
    // before any request but a produce (see the module doc).
    let (written_tx, mut written) = watch::channel(0u64);

    // Cancelled by the writer when it stops early (a client that does not
    // read its answers, or went away), which stops the reader too.
    let connection_ended = shutdown.child_token();
    let writer_stopped = connection_ended.clone();
    let write_timeout = std::time::Duration::from_millis(broker.settings.response_write_timeout_ms);
    let metrics = broker.metrics.clone();
    let write_loop = async move {
        // `_room` is the request's share of `queued_max_request_bytes`,
        // given back once its answer is written.
        while let Some((out, _room)) = replies.recv().await {
            let mut _holding = None;
            let mut segments = match out {
                Outgoing::Encoded(bytes) => vec![bytes],
                Outgoing::Response {
                    api_key,
                    api_version,
                    correlation_id,
                    reply,
                    holding,
                    received,
                } => {
                    _holding = holding;
                    let body = match reply {
                        PendingReply::Ready(body) => body,
                        PendingReply::Task(task) => match task.await {
                            Ok(body) => body,
                            Err(e) => {
                                tracing::error!(%peer, ?api_key, error = %e, "handler task failed; closing connection");
                                return;
                            }
                        },
                    };
                    metrics.answered(api_key, api_version, received.elapsed(), body.as_ref());
                    let Some(body) = body else {
                        written_tx.send_modify(|n| *n += 1);
                        continue;
                    };
                    match protocol::encode_response_segments(
                        api_key,
                        api_version,
                        correlation_id,
                        &body,
                    ) {
                        Ok(segments) => segments,
                        Err(e) => {
                            tracing::error!(%peer, ?api_key, api_version, error = %e, "cannot encode response; closing connection");
                            return;
                        }
                    }
                }
            };
            let write = write_all_vectored(&mut writer, &mut segments);
            match tokio::time::timeout(write_timeout, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "client went away while we wrote");
                    writer_stopped.cancel();
                    return;
                }
                Err(_) => {
                    // The answer's room (fetch_response_buffer_max_bytes)
                    // goes back with it; the reader stops too.
                    tracing::info!(%peer, timeout_ms = write_timeout.as_millis() as u64, "client did not read its answer within response_write_timeout_ms; closing connection");
                    writer_stopped.cancel();
                    return;
                }
            }
            written_tx.send_modify(|n| *n += 1);
        }
    };

    let read_loop = async move {
        let mut incoming = Incoming::new(&broker, connection_ended);
        let mut queued = 0u64;
        loop {
            let (frame, room) = match incoming.next_frame(&mut reader, &written, queued).await {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(reason) => {
                    tracing::info!(%peer, "{reason}; closing connection");
                    return;
                }
            };
            let outgoing = match protocol::decode_request(frame) {
                Ok(Decoded::Request(request)) => {
                    // Like Kafka's muted channel: a request other than a
                    // produce runs only once every earlier reply is written,
                    // so it sees their effects and replies never pile up.
                    if request.api_key != ApiKey::Produce
                        && written.wait_for(|n| *n == queued).await.is_err()
                    {
                        return; // the writer stopped: the client is gone
                    }
                    let received = std::time::Instant::now();
                    let api_key = request.api_key;
                    let api_version = request.api_version();
                    let correlation_id = request.header.correlation_id;
                    tracing::trace!(%peer, ?api_key, api_version, correlation_id, "request");
                    let mut holding = None;
                    let reply = match handlers::dispatch(&broker, *request, peer).await {
                        Reply::Now(body) => PendingReply::Ready(body),
                        Reply::Holding(body, room) => {
                            holding = room;
                            PendingReply::Ready(Some(body))
                        }
                        Reply::Later(task) => PendingReply::Task(task),
                        Reply::Close => {
                            tracing::info!(%peer, ?api_key, "request refused without a response; closing connection");
                            return;
                        }
                    };
                    Outgoing::Response {
                        api_key,
                        api_version,
                        correlation_id,
                        reply,
                        holding,
                        received,
                    }
                }
                Ok(Decoded::UnsupportedApiVersions { correlation_id }) => {
                    match protocol::codec::encode_unsupported_api_versions(correlation_id) {
                        Ok(bytes) => Outgoing::Encoded(bytes),
                        Err(e) => {
                            tracing::error!(%peer, error = %e, "cannot encode ApiVersions error");
                            return;
                        }
                    }
                }
                Err(e @ protocol::Error::UnsupportedVersion { .. }) => {
                    // The message names the API, the version and the range
                    // answered: what an operator needs to find the client.
                    tracing::warn!(%peer, "{e}; closing connection");
                    return;
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "undecodable request; closing connection");
                    return;
                }
            };
            if queue.send((outgoing, room)).await.is_err() {
                return; // the writer stopped: the client is gone
            }
            queued += 1;
        }
    };

    // The writer drains every queued reply after the reader stops, so
    // requests read before a shutdown are still answered.
    let writer_task = tokio::spawn(write_loop);
    read_loop.await;
    if let Err(e) = writer_task.await {
        tracing::error!(%peer, error = %e, "connection writer failed");
    }
}

/// Writes every segment, in order, with as few system calls as the socket
/// allows and without joining them first.
async fn write_all_vectored(
    writer: &mut (impl AsyncWriteExt + Unpin),
    segments: &mut [Bytes],
) -> std::io::Result<()> {
    /// iovecs per call; Linux accepts 1,024.
    const MAX_IOVECS: usize = 64;
    let mut first = 0;
    while first < segments.len() {
        if segments[first].is_empty() {
            first += 1;
            continue;
        }
        let slices: Vec<std::io::IoSlice<'_>> = segments[first..]
            .iter()
            .take(MAX_IOVECS)
            .map(|s| std::io::IoSlice::new(s))
            .collect();
        let mut written = writer.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let segment = &mut segments[first];
            let step = written.min(segment.len());
            bytes::Buf::advance(segment, step);
            written -= step;
            if segment.is_empty() {
                first += 1;
            }
        }
    }
    Ok(())
}
