//! Multipart uploads: an object over the part size goes up as several
//! UploadPart requests in flight at once, each retried on its own by the
//! SDK's retry policy, then CompleteMultipartUpload with `If-None-Match: *`
//! (so a multipart write never overwrites either). Any failure aborts the
//! upload; so does dropping the write half-way (a flush's write timeout).
//! Uploads a crash leaves behind are aborted by `abort_stale_uploads`.

use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::sync::Arc;

use super::stats::S3Stats;
use super::{Digest, DisablePayloadSigning, S3Store, s3_error, status};
use crate::object_store::{PartCount, PartReceiver, abandoned};
use crate::{Error, Result};

/// S3's smallest part (every part but the last must be at least this big).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// `bytes` cut into parts of `part_size` (the last one shorter), zero-copy.
pub(super) fn split_parts(bytes: &Bytes, part_size: usize) -> Vec<Bytes> {
    let part_size = part_size.max(1);
    (0..bytes.len())
        .step_by(part_size)
        .map(|start| bytes.slice(start..(start + part_size).min(bytes.len())))
        .collect()
}

/// An upload that is aborted unless it completed: explicitly on failure, or
/// from a spawned task if the future writing it is dropped.
struct OpenUpload {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    stats: Arc<S3Stats>,
    open: bool,
}

impl OpenUpload {
    async fn abort(mut self) {
        self.open = false;
        abort_upload(
            &self.client,
            &self.bucket,
            &self.key,
            &self.upload_id,
            &self.stats,
        )
        .await;
    }
}

impl Drop for OpenUpload {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime to abort from: the stale-upload sweep will
        };
        let (client, bucket, key, upload_id, stats) = (
            self.client.clone(),
            self.bucket.clone(),
            self.key.clone(),
            self.upload_id.clone(),
            self.stats.clone(),
        );
        runtime
            .spawn(async move { abort_upload(&client, &bucket, &key, &upload_id, &stats).await });
    }
}

/// Best effort: a failed abort leaves the upload to the stale-upload sweep.
/// Says whether the upload was aborted.
async fn abort_upload(
    client: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    stats: &S3Stats,
) -> bool {
    let started = Instant::now();
    let result = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await;
    stats.abort_multipart.record(started, 0, result.is_ok());
    if let Err(e) = &result {
        tracing::warn!(key, upload_id, error = %s3_error("abort multipart".to_string(), e), "could not abort a multipart upload; the stale-upload sweep will");
    }
    result.is_ok()
}

impl S3Store {
    /// Writes `key` (`full` with the prefix) from streamed parts: one part
    /// then `None` is a PutObject; more is a multipart upload, started when
    /// the second part arrives (with `PartCount::Several`, at the first),
    /// its parts uploaded (up to `max_parts_in_flight` at once) while later
    /// ones are still coming.
    pub(super) async fn put_streamed(
        &self,
        key: &str,
        full: &str,
        mut parts: PartReceiver,
        count: PartCount,
    ) -> Result<()> {
        let first = match parts.recv().await {
            Some(Some(part)) => part,
            Some(None) => return self.put_object(key, full, Bytes::new()).await,
            None => return Err(abandoned(key)),
        };
        let second = match count {
            PartCount::Several => None,
            PartCount::Unknown => match parts.recv().await {
                Some(Some(part)) => Some(part),
                Some(None) => return self.put_object(key, full, first).await,
                None => return Err(abandoned(key)),
            },
        };
        let upload = self.create_multipart(full).await?;
        let id = upload.upload_id.clone();
        // What was sent, to tell our own applied Complete apart; a digest,
        // not the parts, so that memory stays with the parts in flight.
        let mut sent = Digest::of(&first);
        let mut part_count = 1;
        let mut uploading = FuturesUnordered::new();
        uploading.push(self.upload_part(full, &id, 1, first));
        if let Some(second) = second {
            sent = sent.then(&second);
            part_count = 2;
            uploading.push(self.upload_part(full, &id, 2, second));
        }
        let mut completed = Vec::new();
        let mut all_received = false;
        loop {
            tokio::select! {
                Some(done) = uploading.next() => match done {
                    Ok(part) => completed.push(part),
                    Err(e) => {
                        drop(uploading);
                        upload.abort().await;
                        return Err(e);
                    }
                },
                next = parts.recv(), if !all_received && uploading.len() < self.max_parts_in_flight => {
                    match next {
                        Some(Some(part)) => {
                            sent = sent.then(&part);
                            part_count += 1;
                            let number = part_count;
                            uploading.push(self.upload_part(full, &id, number, part));
                        }
                        Some(None) => all_received = true,
                        None => {
                            drop(uploading);
                            upload.abort().await;
                            return Err(abandoned(key));
                        }
                    }
                }
                else => break,
            }
        }
        completed.sort_by_key(|p| p.part_number());
        let completed = match self.complete_multipart(key, full, &id, completed).await {
            // Our own Complete may have applied on an earlier attempt: the
            // retry then gets 412, 404 or (s3s-fs) 403 for the finished upload.
            Err(e) if self.holds_digest(key, &sent).await => {
                tracing::debug!(key, error = %e, "complete failed after it applied");
                Ok(())
            }
            other => other,
        };
        match completed {
            Ok(()) => {
                let mut upload = upload;
                upload.open = false;
                Ok(())
            }
            Err(e) => {
                upload.abort().await;
                Err(e)
            }
        }
    }

    async fn create_multipart(&self, full: &str) -> Result<OpenUpload> {
        let _permit = self.permit().await?;
        let started = Instant::now();
        let result = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .set_checksum_algorithm(self.body_checksum())
            .send()
            .await;
        self.stats
            .create_multipart
            .record(started, 0, result.is_ok());
        let output = result.map_err(|e| s3_error(format!("create multipart key={full}"), &e))?;
        let upload_id = output.upload_id().ok_or_else(|| {
            Error::Unavailable(format!("s3 create multipart key={full}: no upload id"))
        })?;
        Ok(OpenUpload {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: full.to_string(),
            upload_id: upload_id.to_string(),
            stats: self.stats.clone(),
            open: true,
        })
    }

    async fn upload_part(
        &self,
        full: &str,
        upload_id: &str,
        number: i32,
        part: Bytes,
    ) -> Result<CompletedPart> {
        let len = part.len() as u64;
        let _permit = self.permit().await?;
        let started = Instant::now();
        let result = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(len as i64)
            .set_checksum_algorithm(self.body_checksum())
            .body(part.into())
            .customize()
            .disable_payload_signing_if(self.body_checksum().is_some())
            .send()
            .await;
        self.stats.upload_part.record(started, len, result.is_ok());
        let output =
            result.map_err(|e| s3_error(format!("upload part={number} key={full}"), &e))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(output.e_tag().map(str::to_string))
            .set_checksum_crc32(output.checksum_crc32().map(str::to_string))
            .build())
    }

    async fn complete_multipart(
        &self,
        key: &str,
        full: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<()> {
        let _permit = self.permit().await?;
        let started = Instant::now();
        let result = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        self.stats
            .complete_multipart
            .record(started, 0, result.is_ok());
        match result {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(412) => Err(Error::AlreadyExists(key.to_string())),
            Err(e) => Err(s3_error(format!("complete multipart key={full}"), &e)),
        }
    }

    /// Aborts multipart uploads a crash left behind: those under this
    /// store's prefix whose key is one of ours (`object_key`) and whose key
    /// time is more than `older_than` ago. Other keys are never touched, and
    /// ages come from the key (the broker's clock, the one the write timeout
    /// runs on), not from the server's `Initiated`. Returns how many it
    /// aborted. `older_than` must exceed the longest an object write may take.
    pub async fn abort_stale_uploads(&self, older_than: Duration) -> Result<usize> {
        let now_ms = crate::Clock::now_ms(&crate::SystemClock);
        let cutoff_ms =
            now_ms.saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
        let prefix = self.full_prefix("");
        let mut aborted = 0;
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let page = {
                let _permit = self.permit().await?;
                let started = Instant::now();
                let result = self
                    .client
                    .list_multipart_uploads()
                    .bucket(&self.bucket)
                    .prefix(&prefix)
                    .set_key_marker(markers.0.clone())
                    .set_upload_id_marker(markers.1.clone())
                    .send()
                    .await;
                self.stats.list_multipart.record(started, 0, result.is_ok());
                result.map_err(|e| s3_error(format!("list multipart prefix={prefix}"), &e))?
            };
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let created_ms = key
                    .strip_prefix(&prefix)
                    .and_then(crate::object_key::object_key_time_ms);
                if created_ms.is_some_and(|t| t < cutoff_ms) {
                    let _permit = self.permit().await?;
                    if abort_upload(&self.client, &self.bucket, key, id, &self.stats).await {
                        aborted += 1;
                    }
                }
            }
            let next = (
                page.next_key_marker().map(str::to_string),
                page.next_upload_id_marker().map(str::to_string),
            );
            // A server that repeats its markers would loop forever.
            if page.is_truncated() != Some(true) || next == (None, None) || next == markers {
                break;
            }
            markers = next;
        }
        Ok(aborted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_object_in_order() {
        let bytes = Bytes::from((0..23u8).collect::<Vec<_>>());
        let parts = split_parts(&bytes, 10);
        assert_eq!(
            parts.iter().map(Bytes::len).collect::<Vec<_>>(),
            vec![10, 10, 3]
        );
        assert_eq!(parts.concat(), bytes.to_vec());
        assert_eq!(split_parts(&bytes.slice(0..20), 10).len(), 2);
        assert!(split_parts(&Bytes::new(), 10).is_empty());
    }
}
