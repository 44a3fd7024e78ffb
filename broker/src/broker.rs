//! The broker's shared state, handed to every handler: settings, identity,
//! the metadata store, the log and the topic cache.
//!
//! Components are built in `Broker::open` from settings (the embedded
//! defaults: a local object directory and a SQLite file under `data_dir`), or
//! wired in by tests through `Broker::with_components`.

use std::sync::Arc;

use metadata::{MetadataStore, SqliteStore, Topic, TopicId};
use storage::{
    Clock, LocalDirStore, Log, LogConfig, ObjectCollector, ObjectStore, S3Config, S3Store,
    SystemClock,
};
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, ClusterSettings};
use crate::config::Settings;
use crate::configs::BrokerDefaults;
use crate::groups::{GroupConfig, GroupCoordinator};
use crate::producer_ids::ProducerIds;
use crate::topics::TopicCache;

pub struct Broker {
    pub settings: Settings,
    pub cluster_id: String,
    /// Host and port in Metadata answers.
    pub advertised_host: String,
    pub advertised_port: i32,
    pub metadata: Arc<dyn MetadataStore>,
    /// The object store the log writes to.
    pub log_objects: Arc<dyn ObjectStore>,
    pub log: Log,
    /// This broker among the others: registry session, cluster view,
    /// partition leadership and placement.
    pub cluster: Cluster,
    pub topics: TopicCache,
    pub defaults: BrokerDefaults,
    /// Serialises topic changes (create, delete, grow, configs) made by this
    /// broker, so a check-then-act in a handler cannot interleave with another.
    pub admin_lock: tokio::sync::Mutex<()>,
    /// Cancelled when the broker starts shutting down; long polls end early.
    pub shutdown: CancellationToken,
    /// The broker's time (record timestamp checks); injected for tests.
    pub clock: Arc<dyn Clock>,
    /// Room for requests read but not yet answered (`queued_max_request_bytes`).
    pub request_room: Arc<tokio::sync::Semaphore>,
    /// Room for Fetch answers read but not yet written
    /// (`fetch_response_buffer_max_bytes`).
    pub response_room: Arc<tokio::sync::Semaphore>,
    /// Hands out producer ids (InitProducerId) from blocks reserved in the metadata store.
    pub producer_ids: ProducerIds,
    /// The group coordinator (of the groups placed on this broker).
    pub groups: Arc<GroupCoordinator>,
    /// Validates produce batches, large ones off the async workers.
    pub record_checks: crate::record_checks::RecordCheckPool,
    /// Counters and histograms of the request path (`/metrics`).
    pub metrics: crate::metrics::Metrics,
    /// Liveness and readiness (`/healthz`, `/readyz`).
    pub health: crate::admin::Health,
    /// What garbage collection has done (`/metrics`).
    pub gc_stats: Arc<storage::GcStats>,
    /// What retention has done (`/metrics`).
    pub retention_stats: crate::retention::RetentionStats,
    /// What object compaction has done (`/metrics`).
    pub compaction_stats: crate::compaction::CompactionStats,
    /// The stores' own request counters, when they keep any (`/metrics`).
    pub store_stats: StoreStats,
}

/// Request counters of the object store and the metadata store: S3 and
/// ScyllaDB keep them; the local directory and the embedded file do not.
#[derive(Default)]
pub struct StoreStats {
    pub s3: Option<Arc<storage::S3Stats>>,
    pub scylla: Option<std::sync::Weak<metadata::scylla::store::ScyllaStore>>,
}

/// What stopped the broker from opening.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("metadata store: {0}")]
    Metadata(#[from] metadata::Error),
    #[error("object store: {0}")]
    Storage(#[from] storage::Error),
    #[error("broker settings: {0}")]
    Settings(#[from] crate::configs::ConfigError),
}

impl Broker {
    /// Opens the embedded components under `settings.data_dir`.
    pub async fn open(settings: Settings, bound_port: u16) -> Result<Broker, OpenError> {
        check_writable(&settings.data_dir)?;
        let mut store_stats = StoreStats::default();
        let metadata = open_metadata(&settings, &mut store_stats).await?;
        let (objects, compaction_objects) = open_objects(&settings, &mut store_stats).await?;
        let mut broker = Self::with_components(
            settings,
            bound_port,
            metadata,
            objects,
            Arc::new(SystemClock),
        )
        .await?;
        if let Some(store) = compaction_objects {
            broker.log.set_compaction_store(store);
        }
        broker.store_stats = store_stats;
        Ok(broker)
    }

    pub async fn with_components(
        settings: Settings,
        bound_port: u16,
        metadata: Arc<dyn MetadataStore>,
        objects: Arc<dyn ObjectStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Broker, OpenError> {
        let log_config = LogConfig {
            flush_interval_ms: settings.flush_interval_ms,
            flush_max_bytes: settings.flush_max_bytes,
            flush_buffer_max_bytes: settings.flush_buffer_max_bytes,
            tail_cache_max_bytes: settings.tail_cache_max_bytes,
            block_cache_max_bytes: settings.block_cache_max_bytes,
            read_ahead_max_bytes: settings.read_ahead_max_bytes,
            max_flushes_in_flight: settings.max_flushes_in_flight,
            object_write_timeout_ms: settings.object_write_timeout_ms,
            producer_id_expiration_ms: settings.producer_id_expiration_ms,
            producer_id_expiration_check_interval_ms: settings
                .producer_id_expiration_check_interval_ms,
            ..LogConfig::default()
        };
        let log = Log::open(log_config, objects.clone(), metadata.clone(), clock.clone()).await?;
        let cluster_id = metadata.cluster_id().await?;
        let listen_host = settings
            .listen
            .rsplit_once(':')
            .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
            .unwrap_or_default();
        let advertised_host = settings.advertised_host.clone().unwrap_or_else(|| {
            if listen_host == "0.0.0.0" || listen_host == "::" {
                "localhost".to_string()
            } else {
                listen_host
            }
        });
        let advertised_port = settings.advertised_port.unwrap_or(bound_port) as i32;
        let cluster = Cluster::join(
            metadata.clone(),
            clock.clone(),
            metadata::BrokerRegistration {
                node_id: settings.node_id,
                host: advertised_host.clone(),
                port: advertised_port,
                rack: settings.broker_rack.clone(),
            },
            ClusterSettings {
                session_timeout_ms: settings.broker_session_timeout_ms,
                heartbeat_interval_ms: settings.broker_heartbeat_interval_ms,
                watch_interval_ms: settings.cluster_watch_interval_ms,
                handover_drain_ms: settings.partition_handover_drain_ms,
            },
        )
        .await?;
        let settings_queued_max_request_bytes = settings.queued_max_request_bytes;
        let settings_metrics_max_topics = settings.metrics_max_topics;
        let settings_fetch_response_buffer_max_bytes = settings.fetch_response_buffer_max_bytes;
        let defaults = broker_defaults(&settings, &advertised_host, advertised_port);
        defaults.validate()?;
        let shutdown = CancellationToken::new();
        let groups = GroupCoordinator::open(
            GroupConfig {
                initial_rebalance_delay_ms: settings.group_initial_rebalance_delay_ms,
                min_session_timeout_ms: settings.group_min_session_timeout_ms,
                max_session_timeout_ms: settings.group_max_session_timeout_ms,
                offsets_retention_ms: settings.offsets_retention_minutes.saturating_mul(60_000),
                offsets_retention_check_interval_ms: settings.offsets_retention_check_interval_ms,
                offset_metadata_max_bytes: settings.offset_metadata_max_bytes,
            },
            metadata.clone(),
            clock.clone(),
            cluster.session_source(),
            shutdown.clone(),
        );
        let broker = Broker {
            cluster_id,
            advertised_host,
            advertised_port,
            metadata,
            log_objects: objects,
            log,
            cluster,
            topics: TopicCache::new(),
            defaults,
            settings,
            admin_lock: tokio::sync::Mutex::new(()),
            shutdown,
            clock,
            request_room: Arc::new(tokio::sync::Semaphore::new(
                settings_queued_max_request_bytes,
            )),
            response_room: Arc::new(tokio::sync::Semaphore::new(
                settings_fetch_response_buffer_max_bytes,
            )),
            producer_ids: ProducerIds::default(),
            groups,
            record_checks: crate::record_checks::RecordCheckPool::per_core(),
            metrics: crate::metrics::Metrics::new(settings_metrics_max_topics),
            health: crate::admin::Health::default(),
            gc_stats: Arc::default(),
            retention_stats: Default::default(),
            compaction_stats: Default::default(),
            store_stats: StoreStats::default(),
        };
        broker.refresh_topics().await?;
        broker
            .groups
            .keep_placed(broker.cluster.group_placement())
            .await;
        Ok(broker)
    }

    pub fn node_id(&self) -> i32 {
        self.settings.node_id
    }

    /// The replicas (and in-sync replicas) of every partition: the live
    /// brokers, whatever replication factor a topic was created with,
    /// because the object store, not brokers, holds the copies.
    pub fn replica_nodes(&self) -> Vec<i32> {
        let view = self.cluster.view();
        let live: Vec<i32> = view.live.iter().map(|b| b.session.node_id).collect();
        if live.is_empty() {
            vec![self.node_id()]
        } else {
            live
        }
    }

    /// Re-reads topics and partitions after a change to them, and claims
    /// or hands over partitions as their placement says.
    pub async fn refresh_topics(&self) -> Result<(), OpenError> {
        self.topics
            .refresh(self.metadata.as_ref(), &self.defaults)
            .await?;
        self.cluster.reload_view(true).await?;
        self.cluster.rebalance(&self.log).await;
        Ok(())
    }

    /// Starts the background tasks: the cluster loop (lease renewal,
    /// watching the cluster version, rebalancing), object garbage
    /// collection, which runs on the controller only, retention and object
    /// compaction. All
    /// hold the broker weakly and end with `shutdown`.
    pub fn spawn_cluster_loop(self: &Arc<Self>) {
        tokio::spawn(crate::cluster::run(
            Arc::downgrade(self),
            self.shutdown.clone(),
        ));
        let weak = Arc::downgrade(self);
        let collecting = Arc::new(move || {
            weak.upgrade().is_some_and(|b| {
                b.cluster
                    .view()
                    .controller()
                    .is_some_and(|c| c.session.node_id == b.node_id())
            })
        });
        Arc::new(
            ObjectCollector::new(
                self.log_objects.clone(),
                self.metadata.clone(),
                self.clock.clone(),
                i64::try_from(self.settings.object_gc_grace_ms).unwrap_or(i64::MAX),
            )
            .keeping(self.log.unsettled_objects())
            .only_when(collecting)
            .counting(self.gc_stats.clone()),
        )
        .spawn(
            std::time::Duration::from_millis(self.settings.object_gc_interval_ms.max(1_000)),
            self.shutdown.clone(),
        );
        crate::retention::spawn(
            Arc::downgrade(self),
            std::time::Duration::from_millis(self.settings.log_retention_check_interval_ms.max(1)),
            self.shutdown.clone(),
        );
        crate::compaction::spawn(
            Arc::downgrade(self),
            self.settings.object_compaction_interval_ms,
            self.settings.object_compaction_thread_niceness,
            self.shutdown.clone(),
        );
    }

    /// Refuses `topics` more topics holding `partitions` more partitions
    /// when the cluster would pass `max_topics` or `max_partitions`, with
    /// the message clients see (POLICY_VIOLATION).
    pub fn check_room_for(&self, topics: usize, partitions: i64) -> Result<(), String> {
        let all = self.topics.all();
        let held: i64 = all.iter().map(|v| v.topic.partition_count as i64).sum();
        if all.len() + topics > self.settings.max_topics {
            return Err(format!(
                "The cluster holds {} topics; {topics} more would pass max_topics={}.",
                all.len(),
                self.settings.max_topics
            ));
        }
        if held + partitions > self.settings.max_partitions as i64 {
            return Err(format!(
                "The cluster holds {held} partitions; {partitions} more would pass max_partitions={}.",
                self.settings.max_partitions
            ));
        }
        Ok(())
    }

    /// Creates the topics named, with the broker's defaults (auto-creation),
    /// in one step: one admin lock and one reload for all of them, however
    /// many one Metadata request names. A topic another request created
    /// first is returned as it is.
    pub async fn auto_create_topics(&self, names: &[&str]) -> Vec<Result<Topic, AutoCreateError>> {
        let _guard = self.admin_lock.lock().await;
        let partitions = self.settings.num_partitions;
        let mut results = Vec::with_capacity(names.len());
        let mut created = 0usize;
        let mut lost_races = false;
        for &name in names {
            if let Some(view) = self.topics.by_name(name) {
                results.push(Ok(view.topic.clone()));
                continue;
            }
            if let Err(why) =
                self.check_room_for(created + 1, (created as i64 + 1) * partitions as i64)
            {
                results.push(Err(AutoCreateError::Limit(why)));
                continue;
            }
            let outcome = self
                .metadata
                .create_topic(name, TopicId::new_random(), partitions, Default::default())
                .await;
            results.push(match outcome {
                Ok(topic) => {
                    tracing::info!(topic = name, topic_id = %topic.topic_id, partitions, "auto-created topic");
                    created += 1;
                    Ok(topic)
                }
                Err(metadata::Error::TopicAlreadyExists(_)) => {
                    lost_races = true;
                    Err(AutoCreateError::Failed(
                        metadata::Error::TopicAlreadyExists(name.to_string()).into(),
                    ))
                }
                Err(e) => Err(AutoCreateError::Failed(e.into())),
            });
        }
        if created == 0 && !lost_races {
            return results;
        }
        if let Err(e) = self.refresh_topics().await {
            tracing::error!(error = %e, "could not reload topics after auto-creating some");
        }
        // Topics another broker (or request) created first are read back.
        names
            .iter()
            .zip(results)
            .map(|(&name, result)| match result {
                Err(AutoCreateError::Failed(OpenError::Metadata(
                    metadata::Error::TopicAlreadyExists(_),
                ))) => self
                    .topics
                    .by_name(name)
                    .map(|v| v.topic.clone())
                    .ok_or_else(|| {
                        AutoCreateError::Failed(
                            metadata::Error::UnknownTopic(name.to_string()).into(),
                        )
                    }),
                other => other,
            })
            .collect()
    }
}

/// Why a topic was not auto-created.
#[derive(Debug, thiserror::Error)]
pub enum AutoCreateError {
    /// `max_topics` or `max_partitions` would be passed.
    #[error("{0}")]
    Limit(String),
    #[error(transparent)]
    Failed(#[from] OpenError),
}

/// The metadata store the settings name: the embedded file under
/// `data_dir`, or ScyllaDB for a `scylla://` metadata URL.
async fn open_metadata(
    settings: &Settings,
    stats: &mut StoreStats,
) -> Result<Arc<dyn MetadataStore>, OpenError> {
    if settings.metadata_url.is_empty() {
        return Ok(Arc::new(SqliteStore::open(
            &settings.data_dir.join("metadata.sqlite"),
        )?));
    }
    let backend = |what: String| OpenError::Metadata(metadata::Error::Backend(what));
    let mut config = metadata::scylla::ScyllaConfig::from_url(&settings.metadata_url)
        .map_err(|e| backend(format!("metadata_url: {e}")))?;
    if !settings.metadata_username.is_empty() {
        config.username = Some(settings.metadata_username.clone());
    }
    if !settings.metadata_password.is_empty() {
        config.password = Some(settings.metadata_password.clone());
    } else if !settings.metadata_password_file.is_empty() {
        let file = &settings.metadata_password_file;
        let password = std::fs::read_to_string(file)
            .map_err(|e| backend(format!("metadata_password_file {file}: {e}")))?;
        config.password = Some(password.trim_end_matches(['\n', '\r']).to_string());
    }
    tracing::info!(contact_points = ?config.contact_points, keyspace = config.keyspace, "metadata in ScyllaDB");
    let store = Arc::new(metadata::scylla::store::ScyllaStore::connect(&config).await?);
    stats.scylla = Some(Arc::downgrade(&store));
    log_stats_every(settings, Arc::downgrade(&store), "scylla stats", |s| {
        s.statement_stats().to_string()
    });
    Ok(store)
}

/// The object store the settings name: `data_dir/objects`, or S3 for an
/// `s3://` storage URL (whose request counts are then logged every
/// `s3_stats_interval_ms`); and for S3 a second client of it for object
/// compaction, counted with the first.
async fn open_objects(
    settings: &Settings,
    stats: &mut StoreStats,
) -> Result<(Arc<dyn ObjectStore>, Option<Arc<dyn ObjectStore>>), OpenError> {
    if settings.storage_url.is_empty() {
        let dir = settings.data_dir.join("objects");
        let store = LocalDirStore::open(dir.clone())?;
        check_writable(&dir)?;
        return Ok((Arc::new(store), None));
    }
    let non_empty = |s: &String| Some(s.clone()).filter(|s| !s.is_empty());
    let config = S3Config {
        endpoint: non_empty(&settings.s3_endpoint),
        region: settings.s3_region.clone(),
        path_style: settings.s3_path_style,
        access_key_id: non_empty(&settings.s3_access_key_id),
        secret_access_key: non_empty(&settings.s3_secret_access_key),
        checksum_when_required: settings.s3_checksum == "when_required",
        request_timeout_ms: settings.s3_request_timeout_ms,
        max_attempts: settings.s3_max_attempts,
        max_concurrent_requests: settings.s3_max_concurrent_requests,
        part_size_bytes: settings.s3_part_size_bytes,
        max_parts_in_flight: settings.s3_max_parts_in_flight,
        ..S3Config::default()
    }
    .with_url(&settings.storage_url)?;
    tracing::info!(bucket = config.bucket, prefix = config.prefix, endpoint = ?config.endpoint, "objects in S3");
    let store = Arc::new(S3Store::open(config.clone()).await?);
    // Object compaction runs on a thread of its own (crate::compaction):
    // a client of its own keeps that thread's connections (which the
    // thread drives) out of produce's and fetch's pool.
    let compaction = S3Store::open(config).await?.counting_into(store.stats());
    stats.s3 = Some(store.stats());
    spawn_stale_upload_sweep(Arc::downgrade(&store), settings);
    log_stats_every(settings, Arc::downgrade(&store), "s3 stats", |s| {
        s.stats().to_string()
    });
    Ok((store, Some(Arc::new(compaction))))
}

/// Refuses a directory the broker cannot write, at start rather than at
/// the first produce: creates and removes a probe file in it.
fn check_writable(dir: &std::path::Path) -> Result<(), OpenError> {
    let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let refuse = |what: &str, e: std::io::Error| {
        OpenError::Storage(storage::Error::Io(format!(
            "{what} {}: {e} (the broker must be able to write there)",
            shown.display()
        )))
    };
    std::fs::create_dir_all(dir).map_err(|e| refuse("cannot create directory", e))?;
    let probe = dir.join(".lightstream-write-check");
    std::fs::write(&probe, b"ok").map_err(|e| refuse("cannot write in directory", e))?;
    std::fs::remove_file(&probe).map_err(|e| refuse("cannot remove a file in directory", e))?;
    Ok(())
}

/// Logs a store's request counters every `s3_stats_interval_ms`. The loop
/// holds the store weakly: it ends when the broker (or a failed open)
/// drops it.
fn log_stats_every<T: Send + Sync + 'static>(
    settings: &Settings,
    store: std::sync::Weak<T>,
    message: &'static str,
    stats: fn(&T) -> String,
) {
    let interval = std::time::Duration::from_millis(settings.s3_stats_interval_ms.max(100));
    tokio::spawn(async move {
        let mut every = tokio::time::interval(interval);
        every.tick().await;
        loop {
            every.tick().await;
            let Some(store) = store.upgrade() else { return };
            tracing::info!(stats = %stats(&store), "{message}");
        }
    });
}

/// Aborts multipart uploads a crash left behind: at start-up, then every
/// `s3_stale_upload_sweep_interval_ms`. A server without
/// ListMultipartUploads (s3s-fs answers 501) gets one warning, not one per
/// sweep.
fn spawn_stale_upload_sweep(store: std::sync::Weak<S3Store>, settings: &Settings) {
    let age = std::time::Duration::from_millis(settings.s3_stale_upload_age_ms);
    let interval =
        std::time::Duration::from_millis(settings.s3_stale_upload_sweep_interval_ms.max(1_000));
    tokio::spawn(async move {
        let mut every = tokio::time::interval(interval);
        let mut warned = false;
        loop {
            every.tick().await;
            let Some(store) = store.upgrade() else { return };
            match store.abort_stale_uploads(age).await {
                Ok(0) => {}
                Ok(aborted) => tracing::info!(aborted, "aborted stale multipart uploads"),
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(error = %e, "stale multipart upload sweep failed; uploads a crash left behind are not aborted");
                }
                Err(e) => tracing::debug!(error = %e, "stale multipart upload sweep failed"),
            }
        }
    });
}

/// The broker configs DescribeConfigs reports and topic configs fall back to,
/// from this broker's settings; everything else keeps Kafka's default.
fn broker_defaults(
    settings: &Settings,
    advertised_host: &str,
    advertised_port: i32,
) -> BrokerDefaults {
    BrokerDefaults {
        node_id: settings.node_id,
        num_partitions: settings.num_partitions,
        auto_create_topics_enable: settings.auto_create_topics,
        message_max_bytes: settings.message_max_bytes,
        log_retention_ms: settings.log_retention_effective_ms(),
        log_retention_bytes: settings.log_retention_bytes,
        socket_request_max_bytes: i32::try_from(settings.socket_request_max_bytes)
            .unwrap_or(i32::MAX),
        listeners: format!("PLAINTEXT://{}", settings.listen),
        advertised_listeners: Some(format!("PLAINTEXT://{advertised_host}:{advertised_port}")),
        ..BrokerDefaults::default()
    }
}

/// Runs `pass` every `interval` until `shutdown`, holding the broker only
/// weakly between passes (retention, object compaction).
pub fn spawn_periodic<F, Fut>(
    broker: std::sync::Weak<Broker>,
    interval: std::time::Duration,
    shutdown: CancellationToken,
    pass: F,
) where
    F: Fn(Arc<Broker>, CancellationToken) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(run_periodic(broker, interval, shutdown, pass));
}

/// What `spawn_periodic` spawns, for a caller that runs it elsewhere.
pub async fn run_periodic<F, Fut>(
    broker: std::sync::Weak<Broker>,
    interval: std::time::Duration,
    shutdown: CancellationToken,
    pass: F,
) where
    F: Fn(Arc<Broker>, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
        let Some(broker) = broker.upgrade() else {
            return;
        };
        pass(broker, shutdown.clone()).await;
    }
}
