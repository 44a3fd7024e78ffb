//! The `ObjectStore` contract against a real S3-compatible server: s3s-fs
//! (which verifies SigV4 signatures and checksums) started on a free
//! loopback port for the test and stopped after it. `bash .ci/test-all.sh`
//! installs it; without it on PATH the tests say they skipped.
//!
//! `put_never_overwrites` in the contract fails against a server that
//! ignores `If-None-Match: *`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use storage::{ObjectStore, S3Config, S3Store, contract};

const ACCESS_KEY: &str = "lightstream-test";
const SECRET_KEY: &str = "lightstream-test-secret";

/// An s3s-fs process over a temporary directory; killed on drop.
struct S3Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl S3Server {
    fn start() -> Option<S3Server> {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = match Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                eprintln!(
                    "SKIPPED: s3s-fs not runnable ({e}); install it with \
                     `cargo install s3s-fs@0.14.1 --features binary --locked` (bash .ci/test-all.sh does)"
                );
                return None;
            }
        };
        let server = S3Server {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    fn config(&self, bucket: &str, prefix: &str) -> S3Config {
        S3Config {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            endpoint: Some(format!("http://127.0.0.1:{}", self.port)),
            path_style: true,
            access_key_id: Some(ACCESS_KEY.to_string()),
            secret_access_key: Some(SECRET_KEY.to_string()),
            ..S3Config::default()
        }
    }

    /// A store on a new bucket.
    async fn store(&self, bucket: &str, prefix: &str) -> S3Store {
        let config = self.config(bucket, prefix);
        let sdk = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::new()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .endpoint_url(config.endpoint.clone().unwrap())
                .force_path_style(true)
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    ACCESS_KEY, SECRET_KEY, None, None, "test",
                ))
                .build(),
        );
        sdk.create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("create bucket");
        S3Store::open(config).await.expect("open s3 store")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn s3_store_meets_the_contract() {
    let Some(server) = S3Server::start() else {
        return;
    };
    let store = server.store("contract", "").await;
    contract::run_all(&store).await;
    let stats = store.stats();
    assert!(
        stats
            .put
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 5
    );
    println!("{stats}");
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
    let result = store.put("k/x.obj", bytes::Bytes::from_static(b"x")).await;
    assert!(
        matches!(result, Err(storage::Error::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
