//! The driver path against `kassandra`, an in-process CQL server: connect,
//! schema creation, preparing every statement, plain writes and reads,
//! paging and a batch, with our flags on the prepared statements.
//!
//! kassandra ignores `IF` conditions (every conditional write applies) and
//! mishandles clustering-key ranges, so nothing here judges a condition or
//! a range read: those are `decide`'s property tests and the contract suite
//! against a real ScyllaDB (`LIGHTSTREAM_TEST_SCYLLA`).

use futures_util::StreamExt;
use scylla::statement::batch::Batch;

use super::*;
use crate::scylla::test_server::{KASSANDRA_CANNOT, start_kassandra};

#[tokio::test]
async fn the_driver_creates_the_schema_prepares_every_statement_and_reads_what_it_wrote() {
    let addr = start_kassandra();
    let config = ScyllaConfig::from_url(&format!("scylla://{addr}/lightstream")).expect("url");
    let mut cannot = Vec::new();
    let mut statements = Vec::new();
    for statement in cql::ALL {
        // A session each: kassandra drops the connection on some statements.
        let session = open(&config, false).await.expect("connect");
        let done = if statement.kind == Kind::Schema {
            create_schema(&session, &config, &[statement])
                .await
                .map(|_| ())
        } else {
            prepare(
                &session,
                statement,
                &config.keyspace,
                SerialConsistency::Serial,
            )
            .await
            .map(|_| ())
        };
        match done {
            Ok(()) if statement.kind != Kind::Schema => statements.push(statement),
            Ok(()) => {}
            Err(_) => cannot.push(statement.name),
        }
    }
    assert_eq!(
        cannot, KASSANDRA_CANNOT,
        "what kassandra cannot handle changed"
    );
    let session = open(&config, false).await.expect("connect");
    let cql = Cql::prepare_all(session, &config, &statements)
        .await
        .expect("prepare");
    for statement in statements {
        assert_eq!(
            cql.prepared(statement)
                .expect("prepared")
                .get_is_idempotent(),
            statement.kind.idempotent(),
            "{}",
            statement.name
        );
    }
    let session = cql.session();

    // A plain write and a read by partition key, through `exec`.
    let topic_id = crate::model::TopicId::new_random();
    cql.write(
        &cql::OBJECT_REFERENCE_WRITE,
        crate::scylla::exec::binds!["objects/0001", topic_id, 3_i32, 100_i64],
    )
    .await
    .expect("write");
    let references: Vec<(uuid::Uuid, i32, i64)> = cql
        .read(
            &cql::OBJECT_REFERENCES_READ,
            crate::scylla::exec::binds!["objects/0001"],
        )
        .await
        .expect("read");
    assert_eq!(references, [(topic_id.0, 3, 100)]);
    let counts = cql.stats().snapshot();
    assert_eq!(counts.by_kind[0], ("read", 1, counts.by_kind[0].2));
    assert_eq!(counts.by_kind[2].1, 1, "one idempotent write: {counts:?}");

    // Paging: 25 group ids read back in pages of 10.
    for i in 0..25 {
        session
            .execute_unpaged(
                cql.prepared(&cql::GROUP_IDS_ADD).expect("prepared"),
                (7_i32, format!("g{i:02}")),
            )
            .await
            .expect("add group id");
    }
    let mut paged = cql
        .prepared(&cql::GROUP_IDS_READ)
        .expect("prepared")
        .clone();
    paged.set_page_size(10);
    let mut pages = session
        .execute_iter(paged, (7_i32,))
        .await
        .expect("pager")
        .rows_stream::<(String,)>()
        .expect("typed");
    let mut ids = Vec::new();
    while let Some(row) = pages.next().await {
        ids.push(row.expect("row").0);
    }
    assert_eq!(ids, (0..25).map(|i| format!("g{i:02}")).collect::<Vec<_>>());

    // A batch on one partition: a topic's leader rows created at once, as
    // `create_topic` does (kassandra applies the `IF NOT EXISTS` without
    // judging it).
    let topic_id = uuid::Uuid::new_v4();
    let mut batch = Batch::default();
    for _ in 0..3 {
        batch.append_statement(cql.prepared(&cql::LEADER_CREATE).expect("prepared").clone());
    }
    session
        .batch(
            &batch,
            (
                (topic_id, 0_i32, 0_i32),
                (topic_id, 1_i32, 0_i32),
                (topic_id, 2_i32, 0_i32),
            ),
        )
        .await
        .expect("batch");
    let rows = session
        .execute_unpaged(
            cql.prepared(&cql::LEADERS_READ).expect("prepared"),
            (topic_id,),
        )
        .await
        .expect("read leaders")
        .into_rows_result()
        .expect("rows");
    let leaders: Vec<(i32, i32, Option<i32>, Option<i64>)> = rows
        .rows::<(i32, i32, Option<i32>, Option<i64>)>()
        .expect("typed")
        .collect::<std::result::Result<_, _>>()
        .expect("decode");
    assert_eq!(
        leaders,
        [(0, 0, None, None), (1, 0, None, None), (2, 0, None, None)]
    );
}

#[test]
fn tls_trusts_the_ca_file_and_refuses_one_it_cannot_use() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A self-signed CA made for this test (its key was not kept).
    let ca = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/scylla/session/test-ca.pem"
    );
    tls_config(ca).expect("a PEM CA certificate");
    let missing = dir.path().join("missing.pem");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").expect("write");
    for (file, why) in [(&missing, "cannot read"), (&empty, "holds no certificate")] {
        let refused = tls_config(file.to_str().expect("utf-8"));
        assert!(
            matches!(&refused, Err(Error::Backend(e)) if e.contains(why)),
            "{file:?}: {refused:?}"
        );
    }
}
