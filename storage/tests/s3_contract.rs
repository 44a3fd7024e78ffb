//! The `ObjectStore` contract against real S3-compatible servers, each
//! started on a free loopback port for the test and stopped after it:
//!
//! - s3s-fs, which verifies SigV4 signatures and checksums;
//! - moto's server, the only one here with ListMultipartUploads (s3s-fs
//!   answers 501), for the stale-upload sweep.
//!
//! `bash .ci/test-all.sh` installs both (s3s-fs with cargo, moto into
//! compat-tests/.venv); a test whose server is missing says it skipped, or fails when
//! `LIGHTSTREAM_REQUIRE_TEST_TOOLS` is set (the test command sets it).
//!
//! `put_never_overwrites` in the contract, and its multipart twin here, fail
//! against a server that ignores `If-None-Match: *`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use storage::object_key::object_key_at;
use storage::{MIN_PART_SIZE, ObjectStore, PartCount, S3Config, S3Store, contract};

mod common;

use common::{S3Server, object_of};

/// The object-store contract and the multipart checks against `server`.
async fn meets_the_contract(server: S3Server, prefix: &str) {
    let store = Arc::new(server.store("contract", prefix).await);
    contract::run_all(&*store).await;
    multipart_checks(store.clone()).await;
    println!("{}", store.stats());
}

#[tokio::test]
async fn s3_store_meets_the_contract() {
    if let Some(server) = S3Server::start() {
        meets_the_contract(server, "").await;
    }
}

#[tokio::test]
async fn moto_store_meets_the_contract() {
    if let Some(server) = S3Server::start_moto() {
        meets_the_contract(server, "p").await;
    }
}

fn requests(s: &storage::RequestStats) -> (u64, u64) {
    (
        s.requests.load(Ordering::Relaxed),
        s.errors.load(Ordering::Relaxed),
    )
}

/// Objects over the part size go up as multipart uploads; the store's part
/// size is `MIN_PART_SIZE`.
async fn multipart_checks(store: Arc<S3Store>) {
    let stats = store.stats();
    let (puts_before, _) = requests(&stats.put);
    // Three parts, the last one short; read back byte for byte.
    let big = object_of(2 * MIN_PART_SIZE + 12_345, 1);
    store.put("mp/three-parts.obj", big.clone()).await.unwrap();
    assert_eq!(requests(&stats.create_multipart), (1, 0));
    assert_eq!(requests(&stats.upload_part), (3, 0));
    assert_eq!(requests(&stats.complete_multipart), (1, 0));
    assert_eq!(requests(&stats.put).0, puts_before, "no PutObject for it");
    assert!(store.get("mp/three-parts.obj").await.unwrap() == big);
    // Ranged reads across both part boundaries, and the short last part.
    let p = MIN_PART_SIZE as u64;
    for range in [
        p - 10..p + 10,
        2 * p - 1..2 * p + 1,
        p - 1..2 * p + 100,
        0..big.len() as u64,
    ] {
        let got = store
            .get_range("mp/three-parts.obj", range.clone())
            .await
            .unwrap();
        assert!(
            got == big.slice(range.start as usize..range.end as usize),
            "{range:?}"
        );
    }
    // Completing onto an existing key is refused and changes nothing.
    let other = object_of(MIN_PART_SIZE + 1, 2);
    let again = store.put("mp/three-parts.obj", other).await;
    assert!(
        matches!(again, Err(storage::Error::AlreadyExists(_))),
        "{again:?}"
    );
    assert!(store.get("mp/three-parts.obj").await.unwrap() == big);
    assert_eq!(
        requests(&stats.abort_multipart),
        (1, 0),
        "the refused upload is aborted"
    );
    several_parts_start_the_upload_with_the_first(&store).await;
    // A write dropped half-way (a flush's write timeout drops it) aborts
    // its upload and leaves no object. The drop must land after
    // CreateMultipartUpload and before Complete; retried if it missed.
    for attempt in 0..5 {
        let key = format!("mp/dropped-{attempt}.obj");
        let creates = requests(&stats.create_multipart).0;
        let aborts = requests(&stats.abort_multipart).0;
        let writer = {
            let (store, key) = (store.clone(), key.clone());
            tokio::spawn(async move { store.put(&key, object_of(6 * MIN_PART_SIZE, 3)).await })
        };
        while requests(&stats.create_multipart).0 == creates && !writer.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        writer.abort();
        if writer.await.is_ok() {
            continue; // finished before the drop: try again
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while requests(&stats.abort_multipart).0 == aborts {
            assert!(
                Instant::now() < deadline,
                "dropped upload not aborted: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(requests(&stats.abort_multipart).1, 0, "{stats}");
        assert!(matches!(
            store.get(&key).await,
            Err(storage::Error::NotFound(_))
        ));
        return;
    }
    panic!("every 30 MiB upload completed before it could be dropped");
}

/// A part that tells the writer when the store lets go of it.
struct Watched(Bytes, Option<tokio::sync::oneshot::Sender<()>>);

impl AsRef<[u8]> for Watched {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(gone) = self.1.take() {
            let _ = gone.send(());
        }
    }
}

/// With `PartCount::Several` the first part is uploaded before the second
/// is sent (a writer holding one part at a time, as a rewrite does, would
/// otherwise wait forever); one part alone completes as a one-part upload.
async fn several_parts_start_the_upload_with_the_first(store: &Arc<S3Store>) {
    let stats = store.stats();
    let object = object_of(2 * MIN_PART_SIZE + 7, 4);
    let (parts, received) = tokio::sync::mpsc::unbounded_channel();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .put_parts("mp/one-at-a-time.obj", received, PartCount::Several)
                .await
        })
    };
    for part in storage_parts(&object) {
        let (gone, let_go) = tokio::sync::oneshot::channel();
        parts
            .send(Some(Bytes::from_owner(Watched(part, Some(gone)))))
            .unwrap();
        // Bounds a deadlock, not a speed: the upload takes milliseconds.
        tokio::time::timeout(Duration::from_secs(60), let_go)
            .await
            .expect("the store held the part for the next one")
            .unwrap();
    }
    parts.send(None).unwrap();
    writer.await.unwrap().unwrap();
    assert!(store.get("mp/one-at-a-time.obj").await.unwrap() == object);
    // One part only, though several were announced.
    let (creates, uploads) = (
        requests(&stats.create_multipart).0,
        requests(&stats.upload_part).0,
    );
    let (parts, received) = tokio::sync::mpsc::unbounded_channel();
    let small = object_of(1_000, 5);
    parts.send(Some(small.clone())).unwrap();
    parts.send(None).unwrap();
    store
        .put_parts("mp/announced-several.obj", received, PartCount::Several)
        .await
        .unwrap();
    assert!(store.get("mp/announced-several.obj").await.unwrap() == small);
    assert_eq!(requests(&stats.create_multipart).0, creates + 1);
    assert_eq!(requests(&stats.upload_part).0, uploads + 1);
}

/// `object` in parts of `MIN_PART_SIZE`, the last one short.
fn storage_parts(object: &Bytes) -> Vec<Bytes> {
    object
        .chunks(MIN_PART_SIZE)
        .map(|c| object.slice_ref(c))
        .collect()
}

#[tokio::test]
async fn s3_store_keeps_to_its_prefix() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let a = server.store("shared", "").await;
    let b = S3Store::open(server.config("shared", "tenant/b"))
        .await
        .unwrap();
    contract::run_all(&b).await;
    // Under the bucket's root the prefixed keys are visible with the prefix.
    let all = a.list("tenant/b/aa/").await.unwrap();
    assert_eq!(
        all,
        vec![
            "tenant/b/aa/one.obj".to_string(),
            "tenant/b/aa/two.obj".to_string()
        ]
    );
    assert_eq!(b.get("aa/two.obj").await.unwrap(), &b"first"[..]);
}

#[tokio::test]
async fn a_stopped_server_is_a_retriable_error_not_a_hang() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let store = S3Store::open(S3Config {
        request_timeout_ms: 500,
        max_attempts: 2,
        ..server.config("nowhere", "")
    })
    .await
    .unwrap();
    drop(server);
    let started = Instant::now();
    let result = store.put("k/x.obj", Bytes::from_static(b"x")).await;
    assert!(
        matches!(result, Err(storage::Error::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Uploads a crash left behind are aborted once their key (which carries
/// its creation time) is older than the threshold; younger ones (maybe a
/// write in progress), keys that are not object keys of ours, and keys
/// outside the prefix are left alone. (moto reports every upload as
/// initiated on 2010-11-10, so the server's date could not be used anyway.)
#[tokio::test]
async fn stale_multipart_uploads_are_aborted() {
    let Some(server) = S3Server::start_moto() else {
        return;
    };
    let store = server.store("sweep", "lightstream").await;
    let sdk = server.sdk();
    let now = storage::Clock::now_ms(&storage::SystemClock);
    let stale = object_key_at(now - 2 * 3_600_000);
    let young = object_key_at(now);
    let keys = [
        format!("lightstream/{stale}"),
        format!("lightstream/{young}"),
        "lightstream/aa/not-ours.obj".to_string(),
        format!("other-tenant/{stale}"),
    ];
    for key in &keys {
        sdk.create_multipart_upload()
            .bucket("sweep")
            .key(key)
            .send()
            .await
            .unwrap();
    }
    let hour = Duration::from_secs(3600);
    assert_eq!(store.abort_stale_uploads(hour).await.unwrap(), 1);
    let left = sdk
        .list_multipart_uploads()
        .bucket("sweep")
        .send()
        .await
        .unwrap();
    let mut left: Vec<_> = left.uploads().iter().filter_map(|u| u.key()).collect();
    left.sort();
    let mut expected: Vec<&str> = keys[1..].iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(left, expected, "only our stale upload is aborted");
    assert_eq!(store.abort_stale_uploads(hour).await.unwrap(), 0);
}
