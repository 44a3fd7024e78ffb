//! The S3 backend of `ObjectStore`, on `aws-sdk-s3`: AWS S3 or any
//! S3-compatible server (s3s-fs, Ceph RGW, MinIO…).
//!
//! - `put` is a PutObject with `If-None-Match: *`, so an existing key is never
//!   overwritten (412 → `AlreadyExists`), the same contract as the local
//!   directory's hard link. An object over `part_size_bytes` goes up as a
//!   multipart upload instead (`multipart.rs`), completed under the same
//!   condition.
//! - `get_range` is a ranged GetObject; a short answer (the range ran past
//!   the end) is `InvalidRange`, as the other stores say.
//! - Requests go through one client with the SDK's standard retries
//!   (jittered exponential backoff, `max_attempts`), a per-attempt timeout,
//!   and a semaphore bounding requests in flight.
//! - Every request is counted by kind with bytes, errors and latency
//!   (`S3Stats`), for the broker's stats line, the tests and the bench.
//!
//! Checksums: "when supported" (the SDK's default: CRC on every upload,
//! validated on download) suits AWS and modern servers; "when required"
//! suits older ones such as Ceph RGW 16, which reject unknown checksum
//! headers.

pub mod faults;
mod multipart;
mod stats;

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::client::customize::CustomizableOperation;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::object_store::{ByteChunks, PartCount, PartReceiver};
use crate::{Error, ObjectStore, Result};

pub use multipart::MIN_PART_SIZE;
pub use stats::{RequestStats, S3Stats};

/// Where and how to reach the bucket. Plain data; see `docs/configuration.md`.
#[derive(Clone, Debug)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix inside the bucket ("" for none); joined with `/`.
    pub prefix: String,
    /// e.g. `http://127.0.0.1:9000`; `None` for AWS's own endpoints.
    pub endpoint: Option<String>,
    pub region: String,
    /// `bucket` in the path instead of the host name (local servers, Ceph).
    pub path_style: bool,
    /// Static keys; `None` uses the SDK's default chain (env, profile, IMDS…).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// `true`: checksums only when the operation requires one ("when required").
    pub checksum_when_required: bool,
    /// Per-attempt timeout of one request.
    pub request_timeout_ms: u64,
    /// Attempts per request, first one included (SDK standard retry mode).
    pub max_attempts: u32,
    /// Requests in flight at once, all kinds together.
    pub max_concurrent_requests: usize,
    /// Objects bigger than this are written as multipart uploads in parts of
    /// this size (at least `MIN_PART_SIZE`, S3's minimum).
    pub part_size_bytes: usize,
    /// Parts of one upload in flight at once.
    pub max_parts_in_flight: usize,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            prefix: String::new(),
            endpoint: None,
            region: "us-east-1".to_string(),
            path_style: false,
            access_key_id: None,
            secret_access_key: None,
            checksum_when_required: false,
            request_timeout_ms: 5_000,
            max_attempts: 4,
            max_concurrent_requests: 64,
            part_size_bytes: 16 * 1024 * 1024,
            max_parts_in_flight: 8,
        }
    }
}

impl S3Config {
    /// Reads `s3://bucket/prefix` into `bucket` and `prefix`.
    pub fn with_url(mut self, url: &str) -> Result<S3Config> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::InvalidKey(format!("not an s3:// url: {url}")))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::InvalidKey(format!("no bucket in {url}")));
        }
        self.bucket = bucket.to_string();
        self.prefix = prefix.trim_matches('/').to_string();
        Ok(self)
    }
}

pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    room: Semaphore,
    stats: Arc<S3Stats>,
    checksum_when_required: bool,
    part_size: usize,
    max_parts_in_flight: usize,
}

impl S3Store {
    /// Builds the client. Makes no request: a wrong endpoint or key shows on
    /// the first operation.
    pub async fn open(config: S3Config) -> Result<S3Store> {
        S3Store::open_with(config, None).await
    }

    /// `open`, with `faults` injected between the SDK and the server.
    pub async fn open_with_faults(
        config: S3Config,
        faults: Arc<faults::S3Faults>,
    ) -> Result<S3Store> {
        S3Store::open_with(config, Some(faults)).await
    }

    async fn open_with(config: S3Config, faults: Option<Arc<faults::S3Faults>>) -> Result<S3Store> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()));
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                id.clone(),
                secret.clone(),
                None,
                None,
                "lightstream-settings",
            ));
        }
        let shared = loader.load().await;
        let (request_checksum, response_checksum) = if config.checksum_when_required {
            (
                RequestChecksumCalculation::WhenRequired,
                ResponseChecksumValidation::WhenRequired,
            )
        } else {
            (
                RequestChecksumCalculation::WhenSupported,
                ResponseChecksumValidation::WhenSupported,
            )
        };
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.path_style)
            .request_checksum_calculation(request_checksum)
            .response_checksum_validation(response_checksum)
            .retry_config(RetryConfig::standard().with_max_attempts(config.max_attempts.max(1)))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_millis(config.request_timeout_ms))
                    .build(),
            );
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        if let Some(faults) = faults {
            builder = builder.http_client(faults.wrap_default_client());
        }
        Ok(S3Store {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket,
            prefix: config.prefix,
            room: Semaphore::new(config.max_concurrent_requests.max(1)),
            stats: Arc::new(S3Stats::default()),
            checksum_when_required: config.checksum_when_required,
            part_size: config.part_size_bytes.max(MIN_PART_SIZE),
            max_parts_in_flight: config.max_parts_in_flight.max(1),
        })
    }

    pub fn stats(&self) -> Arc<S3Stats> {
        self.stats.clone()
    }

    /// This store, counting its requests in `stats` (another store's, so
    /// that two clients of one bucket report as one).
    pub fn counting_into(mut self, stats: Arc<S3Stats>) -> S3Store {
        self.stats = stats;
        self
    }

    fn full_key(&self, key: &str) -> Result<String> {
        if key.is_empty() || key.starts_with('/') {
            return Err(Error::InvalidKey(key.to_string()));
        }
        Ok(self.full_prefix(key))
    }

    /// `key_or_prefix` under this store's prefix.
    fn full_prefix(&self, key_or_prefix: &str) -> String {
        if self.prefix.is_empty() {
            key_or_prefix.to_string()
        } else {
            format!("{}/{key_or_prefix}", self.prefix)
        }
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.room
            .acquire()
            .await
            .map_err(|_| Error::Unavailable("s3 store closed".to_string()))
    }

    /// One counted GetObject of the whole object or of `range`; with the
    /// object's size when the server gave it (Content-Range), else 0.
    async fn get_object(&self, key: &str, range: Option<&Range<u64>>) -> Result<(Bytes, u64)> {
        let full = self.full_key(key)?;
        let _permit = self.permit().await?;
        let started = Instant::now();
        let result = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .set_range(range.map(|r| format!("bytes={}-{}", r.start, r.end - 1)))
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(e) => {
                self.stats.get.record(started, 0, false);
                return Err(match (status(&e), range) {
                    (Some(404), _) => Error::NotFound(key.to_string()),
                    (Some(416), Some(range)) => Error::InvalidRange {
                        key: key.to_string(),
                        range: range.clone(),
                        size: 0,
                    },
                    _ => s3_error(format!("get key={full}"), &e),
                });
            }
        };
        let size = object_size(output.content_range());
        match output.body.collect().await {
            Ok(body) => {
                let bytes = body.into_bytes();
                self.stats.get.record(started, bytes.len() as u64, true);
                Ok((bytes, size))
            }
            Err(e) => {
                self.stats.get.record(started, 0, false);
                Err(Error::Unavailable(format!("s3 get key={full} body: {e}")))
            }
        }
    }
}

/// The object's size from a GET's Content-Range (`bytes a-b/size`), else 0.
fn object_size(content_range: Option<&str>) -> u64 {
    content_range
        .and_then(|r| r.rsplit('/').next())
        .and_then(|total| total.parse::<u64>().ok())
        .unwrap_or(0)
}

impl S3Store {
    /// One PutObject of the whole object, never overwriting.
    async fn put_object(&self, key: &str, full: &str, body: Bytes) -> Result<()> {
        let len = body.len() as u64;
        let _permit = self.permit().await?;
        let started = Instant::now();
        let result = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(full)
            .if_none_match("*")
            .content_length(len as i64)
            .set_checksum_algorithm(self.body_checksum())
            .body(ByteStream::from(body.clone()))
            .customize()
            .disable_payload_signing_if(self.body_checksum().is_some())
            .send()
            .await;
        self.stats.put.record(started, len, result.is_ok());
        match result {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(412) => match self.holds(key, &body).await {
                true => Ok(()),
                false => Err(Error::AlreadyExists(key.to_string())),
            },
            Err(e) => Err(s3_error(format!("put key={full}"), &e)),
        }
    }

    /// Whether `key` holds exactly `bytes`. After a write failed with a 412
    /// (or, for a Complete, any error), this tells "our own write, applied
    /// on an earlier attempt whose answer was lost (a 5xx after apply, a
    /// reset, an attempt timeout) and then retried by the SDK" — a success
    /// — from "another object is there" (`AlreadyExists`) or "not written".
    /// Nothing is overwritten either way.
    async fn holds(&self, key: &str, bytes: &Bytes) -> bool {
        self.holds_digest(key, &Digest::of(bytes)).await
    }

    /// `holds` for an object known by its length and CRC-32C (a streamed
    /// write keeps these, not its parts). Object keys are unique, so the
    /// only other content to tell apart is a damaged or partial object.
    pub(super) async fn holds_digest(&self, key: &str, digest: &Digest) -> bool {
        let held = matches!(
            self.get_object(key, None).await,
            Ok((existing, _)) if Digest::of(&existing) == *digest
        );
        if held {
            tracing::info!(key, "a retried write had landed on an earlier attempt");
        }
        held
    }

    /// A CRC-32 on every uploaded body unless checksums are "when required"
    /// (servers such as Ceph RGW 16 refuse the headers). CRC-32, the SDK's
    /// default, not CRC-32C: s3s-fs verifies CRC-32C 35 % slower
    /// (docs/benchmarks.md), and AWS takes either.
    fn body_checksum(&self) -> Option<ChecksumAlgorithm> {
        (!self.checksum_when_required).then_some(ChecksumAlgorithm::Crc32)
    }
}

/// The length and CRC-32C of an object's bytes, built part by part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Digest {
    len: u64,
    crc: u32,
}

impl Digest {
    pub(super) fn of(bytes: &[u8]) -> Digest {
        Digest::default().then(bytes)
    }

    pub(super) fn then(self, bytes: &[u8]) -> Digest {
        Digest {
            len: self.len + bytes.len() as u64,
            crc: crc32c::crc32c_append(self.crc, bytes),
        }
    }
}

/// Payload signing hashes every uploaded byte with SHA-256: 40 % of the
/// broker's CPU in S3 mode (perf, docs/benchmarks.md). When the body carries
/// a CRC-32 checksum, which the server verifies, the signature need not
/// cover the payload too (`UNSIGNED-PAYLOAD`; headers stay signed).
trait DisablePayloadSigning: Sized {
    fn disable_payload_signing_if(self, unsigned: bool) -> Self;
}

macro_rules! disable_payload_signing_for {
    ($($output:ty),*) => {$(
        impl<E, B> DisablePayloadSigning for CustomizableOperation<$output, E, B> {
            fn disable_payload_signing_if(self, unsigned: bool) -> Self {
                if unsigned {
                    self.disable_payload_signing()
                } else {
                    self
                }
            }
        }
    )*};
}

disable_payload_signing_for!(
    aws_sdk_s3::operation::put_object::PutObjectOutput,
    aws_sdk_s3::operation::upload_part::UploadPartOutput
);

/// The HTTP status of a service error, if the request got that far.
fn status<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// An S3 error as a storage error, with what was being done.
fn s3_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    context: String,
    e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Error {
    let code = e.code().unwrap_or("-");
    let message = e.message().unwrap_or("");
    Error::Unavailable(format!(
        "s3 {context}: {} code={code} status={:?} {message}",
        aws_sdk_s3::error::DisplayErrorContext(e),
        status(e)
    ))
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let full = self.full_key(key)?;
        if bytes.len() <= self.part_size {
            return self.put_object(key, &full, bytes).await;
        }
        let (parts, receiver) = tokio::sync::mpsc::unbounded_channel();
        for part in multipart::split_parts(&bytes, self.part_size) {
            let _ = parts.send(Some(part));
        }
        let _ = parts.send(None);
        self.put_streamed(key, &full, receiver, PartCount::Several)
            .await
    }

    fn part_size(&self) -> Option<usize> {
        Some(self.part_size)
    }

    async fn put_parts(&self, key: &str, parts: PartReceiver, count: PartCount) -> Result<()> {
        let full = self.full_key(key)?;
        self.put_streamed(key, &full, parts, count).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        if range.start > range.end {
            return Err(Error::InvalidRange {
                key: key.to_string(),
                range,
                size: 0,
            });
        }
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let (bytes, size) = self.get_object(key, Some(&range)).await?;
        if bytes.len() as u64 != range.end - range.start {
            return Err(Error::InvalidRange {
                key: key.to_string(),
                range,
                size,
            });
        }
        Ok(bytes)
    }

    /// One GetObject whose body is handed over as it arrives. The request
    /// holds a permit until its answer's headers; the body then flows at
    /// the reader's pace (TCP holds what it has not pulled), so a parked
    /// stream costs a connection, not memory or a permit.
    async fn get_range_stream(&self, key: &str, range: Range<u64>) -> Result<ByteChunks> {
        if range.start > range.end {
            return Err(Error::InvalidRange {
                key: key.to_string(),
                range,
                size: 0,
            });
        }
        if range.is_empty() {
            return Ok(Box::pin(futures::stream::empty()));
        }
        let full = self.full_key(key)?;
        let started = Instant::now();
        let result = {
            let _permit = self.permit().await?;
            self.client
                .get_object()
                .bucket(&self.bucket)
                .key(&full)
                .range(format!("bytes={}-{}", range.start, range.end - 1))
                .send()
                .await
        };
        let output = match result {
            Ok(output) => output,
            Err(e) => {
                self.stats.get.record(started, 0, false);
                return Err(match status(&e) {
                    Some(404) => Error::NotFound(key.to_string()),
                    Some(416) => Error::InvalidRange {
                        key: key.to_string(),
                        range,
                        size: 0,
                    },
                    _ => s3_error(format!("get key={full}"), &e),
                });
            }
        };
        self.stats.get.record(started, 0, true);
        // A range past the end comes back short (206 with what there is).
        let wanted = range.end - range.start;
        if output.content_length().map(|n| n as u64) != Some(wanted) {
            let size = object_size(output.content_range());
            return Err(Error::InvalidRange {
                key: key.to_string(),
                range,
                size,
            });
        }
        let stats = self.stats.clone();
        let chunks = futures::stream::try_unfold(output.body, move |mut body| {
            let (stats, full) = (stats.clone(), full.clone());
            async move {
                match body.next().await {
                    None => Ok(None),
                    Some(Ok(chunk)) => {
                        stats
                            .get
                            .bytes
                            .fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        Ok(Some((chunk, body)))
                    }
                    Some(Err(e)) => {
                        stats
                            .get
                            .errors
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Err(Error::Unavailable(format!("s3 get key={full} body: {e}")))
                    }
                }
            }
        });
        Ok(Box::pin(chunks))
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        Ok(self.get_object(key, None).await?.0)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let full = self.full_key(key)?;
        let _permit = self.permit().await?;
        let started = Instant::now();
        let result = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await;
        self.stats.delete.record(started, 0, result.is_ok());
        match result {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(s3_error(format!("delete key={full}"), &e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let full_prefix = self.full_prefix(prefix);
        let ours = self.full_prefix("");
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let _permit = self.permit().await?;
            let started = Instant::now();
            let result = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full_prefix)
                .set_continuation_token(token.take())
                .send()
                .await;
            self.stats.list.record(started, 0, result.is_ok());
            let page = result.map_err(|e| s3_error(format!("list prefix={full_prefix}"), &e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key()?.strip_prefix(&ours))
                    .map(str::to_string),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_name_bucket_and_prefix() {
        let c = S3Config::default().with_url("s3://logs/a/b/").unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("logs", "a/b"));
        let c = S3Config::default().with_url("s3://logs").unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("logs", ""));
        assert!(S3Config::default().with_url("http://x").is_err());
        assert!(S3Config::default().with_url("s3:///p").is_err());
    }
}
