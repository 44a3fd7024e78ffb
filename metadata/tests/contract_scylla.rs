//! The `MetadataStore` contract suite against a real ScyllaDB, and what only
//! a shared ScyllaDB promises: brokers starting together on an empty
//! keyspace agree on one cluster, a keyspace from a newer broker is refused,
//! and two brokers racing for a partition see one winner.
//!
//! Needs `LIGHTSTREAM_TEST_SCYLLA=host:port` (README, "Testing against
//! ScyllaDB"); without it every test prints one skip line and passes.
//! Each test works in a keyspace of its own, dropped afterwards.

use metadata::contract::StoreFixture;
use metadata::scylla::ScyllaConfig;
use metadata::scylla::store::ScyllaStore;
use metadata::{ClusterStore, Error, MetadataStore};

const VARIABLE: &str = "LIGHTSTREAM_TEST_SCYLLA";

fn skip() -> Option<String> {
    std::env::var(VARIABLE).is_err().then(|| {
        format!(
            "{VARIABLE} is not set, so the ScyllaDB contract suite did not run \
             (start a node as the README says, then set {VARIABLE}=127.0.0.1:9042)"
        )
    })
}

/// A config for a fresh keyspace on the test node.
fn fresh_config() -> ScyllaConfig {
    let node = std::env::var(VARIABLE).expect("checked by skip()");
    let keyspace = format!("lightstream_test_{}", uuid::Uuid::new_v4().simple());
    ScyllaConfig::from_url(&format!("scylla://{node}/{keyspace}")).expect("test url")
}

/// A store on a keyspace of its own, dropped with the fixture.
struct ScyllaFixture {
    store: ScyllaStore,
    config: ScyllaConfig,
}

impl ScyllaFixture {
    async fn new() -> ScyllaFixture {
        let config = fresh_config();
        let store = ScyllaStore::connect(&config).await.expect("connect");
        ScyllaFixture { store, config }
    }
}

impl StoreFixture for ScyllaFixture {
    fn store(&self) -> &dyn MetadataStore {
        &self.store
    }
}

impl Drop for ScyllaFixture {
    fn drop(&mut self) {
        drop_keyspace(&self.config);
    }
}

/// Drops the config's keyspace from a thread of its own (`Drop` cannot wait
/// on the test's runtime).
fn drop_keyspace(config: &ScyllaConfig) {
    let keyspace = config.keyspace.clone();
    let config = config.clone();
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let session = scylla::client::session_builder::SessionBuilder::new()
                .known_nodes(&config.contact_points)
                .build()
                .await?;
            session
                .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", config.keyspace), ())
                .await
                .map(|_| ())
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
    })
    .join();
    if !matches!(dropped, Ok(Ok(()))) {
        eprintln!("could not drop test keyspace {keyspace}");
    }
}

mod contract {
    metadata::metadata_store_contract_tests!(unless super::skip(); || async {
        super::ScyllaFixture::new().await
    });
}

#[tokio::test]
async fn brokers_starting_together_on_an_empty_keyspace_agree_on_one_cluster() {
    if let Some(why) = skip() {
        return metadata::contract::print_skip_once(&why);
    }
    let config = fresh_config();
    let (a, b, c) = tokio::join!(
        ScyllaStore::connect(&config),
        ScyllaStore::connect(&config),
        ScyllaStore::connect(&config)
    );
    let ids = [
        a.expect("a").cluster_id().await.expect("id"),
        b.expect("b").cluster_id().await.expect("id"),
        c.expect("c").cluster_id().await.expect("id"),
    ];
    drop_keyspace(&config);
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
}

#[tokio::test]
async fn a_keyspace_made_by_a_newer_broker_is_refused() {
    if let Some(why) = skip() {
        return metadata::contract::print_skip_once(&why);
    }
    let fixture = ScyllaFixture::new().await;
    let cql = format!(
        "UPDATE {}.meta SET schema_version = {} WHERE key = 'cluster'",
        fixture.config.keyspace,
        metadata::scylla::store::SCHEMA_VERSION + 1
    );
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&fixture.config.contact_points)
        .build()
        .await
        .expect("session");
    session.query_unpaged(cql, ()).await.expect("raise version");
    let refused = ScyllaStore::connect(&fixture.config).await;
    assert!(
        matches!(&refused, Err(Error::Backend(why)) if why.contains("newer")),
        "got {refused:?}"
    );
}

#[tokio::test]
async fn two_brokers_racing_for_a_partition_see_one_winner() {
    if let Some(why) = skip() {
        return metadata::contract::print_skip_once(&why);
    }
    let fixture = ScyllaFixture::new().await;
    let other = ScyllaStore::connect(&fixture.config)
        .await
        .expect("second broker");
    metadata::contract::two_stores_racing_for_a_partition_one_wins([&fixture.store, &other], 10)
        .await;
}
