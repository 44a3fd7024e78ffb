//! What the loopback-socket test files share: a broker on a free port with
//! in-memory stores (or stores the test hands in), a client that speaks raw
//! Kafka frames, and request builders.
//!
//! Each test binary uses a different part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use broker::broker::Broker;
use broker::config::Settings;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::Compression;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub struct TestBroker {
    pub addr: std::net::SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        Self::start_with(Settings::default()).await
    }

    /// A broker with `settings`, listening on a free loopback port.
    pub async fn start_with(settings: Settings) -> TestBroker {
        Self::start_on(
            settings,
            Arc::new(metadata::SqliteStore::open_in_memory().unwrap()),
            Arc::new(storage::MemoryStore::new()),
        )
        .await
    }

    /// A broker over the given stores (to restart one on the same data).
    pub async fn start_on(
        settings: Settings,
        metadata: Arc<dyn metadata::MetadataStore>,
        objects: Arc<dyn storage::ObjectStore>,
    ) -> TestBroker {
        Self::start_on_clock(settings, metadata, objects, Arc::new(storage::SystemClock)).await
    }

    /// `start_on`, with the broker's clock in the test's hands.
    pub async fn start_on_clock(
        settings: Settings,
        metadata: Arc<dyn metadata::MetadataStore>,
        objects: Arc<dyn storage::ObjectStore>,
        clock: Arc<dyn storage::Clock>,
    ) -> TestBroker {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let settings = Settings {
            listen: addr.to_string(),
            ..settings
        };
        let broker = Broker::with_components(settings, addr.port(), metadata, objects, clock)
            .await
            .unwrap();
        let broker = Arc::new(broker);
        broker.spawn_cluster_loop();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(broker::server::run(broker, listener, shutdown.clone()));
        TestBroker {
            addr,
            shutdown,
            task,
        }
    }

    pub async fn connect(&self) -> Client {
        Client {
            stream: TcpStream::connect(self.addr).await.unwrap(),
            correlation_id: 0,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("broker stops")
            .unwrap();
    }
}

pub struct Client {
    pub stream: TcpStream,
    pub correlation_id: i32,
}

impl Client {
    pub async fn send_raw(&mut self, frame: &[u8]) {
        self.stream.write_all(frame).await.unwrap();
    }

    /// Sends a request and returns the response body (header stripped).
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Resp {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("wire-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, api_key.request_header_version(version))
            .unwrap();
        request.encode(&mut body, version).unwrap();
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.send_raw(&frame).await;
        let mut response = self.read_frame().await.expect("a response");
        let header =
            ResponseHeader::decode(&mut response, api_key.response_header_version(version))
                .unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        Resp::decode(&mut response, version).unwrap()
    }

    /// One response frame, or None if the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let read = async {
            let size = self.stream.read_i32().await.ok()?;
            let mut buf = vec![0u8; size as usize];
            self.stream.read_exact(&mut buf).await.ok()?;
            Some(Bytes::from(buf))
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("broker answers or closes within 10 s")
    }
}

pub fn batch(values: &[&str]) -> Bytes {
    protocol::testing::record_batch(values, 1_700_000_000_000, true, Compression::Lz4)
}

pub async fn create_topic(
    client: &mut Client,
    name: &str,
    partitions: i32,
) -> CreateTopicsResponse {
    let request = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.to_string())))
                .with_num_partitions(partitions)
                .with_replication_factor(-1),
        ])
        .with_timeout_ms(5_000);
    client.call(ApiKey::CreateTopics, 7, &request).await
}

pub fn produce_request(topic: &str, partition: i32, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ])
}

pub fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ])
}

pub fn values_of(records: Bytes) -> Vec<(i64, String)> {
    protocol::testing::offsets_and_values(&records)
}

/// Stores that outlive a broker (SQLite in a temporary file, objects in
/// memory), so a test can stop a broker and start another on the same data.
pub struct DurableStores {
    _dir: tempfile::TempDir,
    metadata: Arc<dyn metadata::MetadataStore>,
    objects: Arc<dyn storage::ObjectStore>,
}

impl DurableStores {
    pub fn new() -> DurableStores {
        let dir = tempfile::tempdir().unwrap();
        let metadata = Arc::new(metadata::SqliteStore::open(&dir.path().join("m.sqlite")).unwrap());
        DurableStores {
            _dir: dir,
            metadata,
            objects: Arc::new(storage::MemoryStore::new()),
        }
    }

    /// A broker with default settings over these stores.
    pub async fn start(&self) -> TestBroker {
        TestBroker::start_on(
            Settings::default(),
            self.metadata.clone(),
            self.objects.clone(),
        )
        .await
    }
}
