//! Real S3-compatible servers for the storage tests, each started on a free
//! loopback port and killed when dropped: s3s-fs (SigV4 and checksums
//! verified) and moto's server (ListMultipartUploads). A test whose server
//! is missing prints SKIPPED with how to install it and returns.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use bytes::Bytes;
use storage::s3::faults::S3Faults;
use storage::{MIN_PART_SIZE, S3Config, S3Store};

/// An object of `len` bytes that differ from part to part and byte to byte.
pub fn object_of(len: usize, seed: u32) -> Bytes {
    Bytes::from(
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
            .collect::<Vec<u8>>(),
    )
}

const ACCESS_KEY: &str = "lightstream-test";
const SECRET_KEY: &str = "lightstream-test-secret";

/// A server process (over a temporary directory for s3s-fs); killed on drop.
pub struct S3Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Set (by `.ci/test-all.sh`) when s3s-fs and moto must be there: a test
/// then fails rather than skips without them.
const REQUIRE_SERVERS: &str = "LIGHTSTREAM_REQUIRE_TEST_TOOLS";

impl S3Server {
    pub fn start() -> Option<S3Server> {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut command = Command::new("s3s-fs");
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(dir.path());
        Self::spawn(
            command,
            port,
            dir,
            "s3s-fs",
            "`cargo install s3s-fs@0.14.1 --features binary --locked`",
        )
    }

    /// moto's server: `LIGHTSTREAM_MOTO_SERVER`, else the compat-tests venv's.
    pub fn start_moto() -> Option<S3Server> {
        let program = std::env::var_os("LIGHTSTREAM_MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../compat-tests/.venv/bin/moto_server")
            });
        let port = free_port();
        let mut command = Command::new(program);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        Self::spawn(
            command,
            port,
            tempfile::tempdir().unwrap(),
            "moto_server",
            "pip install 'moto[s3,server]==5.2.5' into compat-tests/.venv",
        )
    }

    fn spawn(
        mut command: Command,
        port: u16,
        dir: tempfile::TempDir,
        name: &str,
        install: &str,
    ) -> Option<S3Server> {
        let child = match command.stdout(Stdio::null()).stderr(Stdio::null()).spawn() {
            Ok(child) => child,
            Err(e) => {
                // The test command installs both servers and sets this, so
                // there a missing server fails the test instead of passing
                // it unrun.
                assert!(
                    std::env::var_os(REQUIRE_SERVERS).is_none(),
                    "{name} not runnable ({e}) and {REQUIRE_SERVERS} is set; install it with {install}"
                );
                eprintln!(
                    "SKIPPED: {name} not runnable ({e}); install it with {install} \
                     (bash .ci/test-all.sh does)"
                );
                return None;
            }
        };
        let server = S3Server {
            child,
            port,
            _dir: dir,
        };
        let mut server = server;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{name} exited before listening on {port}: {status}");
            }
            assert!(Instant::now() < deadline, "{name} did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    pub fn config(&self, bucket: &str, prefix: &str) -> S3Config {
        S3Config {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            endpoint: Some(format!("http://127.0.0.1:{}", self.port)),
            path_style: true,
            access_key_id: Some(ACCESS_KEY.to_string()),
            secret_access_key: Some(SECRET_KEY.to_string()),
            part_size_bytes: MIN_PART_SIZE,
            ..S3Config::default()
        }
    }

    pub fn sdk(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::new()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .endpoint_url(format!("http://127.0.0.1:{}", self.port))
                .force_path_style(true)
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    ACCESS_KEY, SECRET_KEY, None, None, "test",
                ))
                .build(),
        )
    }

    pub async fn create_bucket(&self, bucket: &str) {
        self.sdk()
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("create bucket");
    }

    /// A store with `config` on a new bucket, with faults the test arms.
    pub async fn faulty_store(&self, bucket: &str, config: S3Config) -> (S3Store, Arc<S3Faults>) {
        self.create_bucket(bucket).await;
        let faults = Arc::new(S3Faults::new());
        let store = S3Store::open_with_faults(config, faults.clone())
            .await
            .expect("open s3 store");
        (store, faults)
    }

    /// A store on a new bucket.
    pub async fn store(&self, bucket: &str, prefix: &str) -> S3Store {
        self.create_bucket(bucket).await;
        S3Store::open(self.config(bucket, prefix))
            .await
            .expect("open s3 store")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
