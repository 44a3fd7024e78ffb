//! The driver path against `kassandra`, an in-process CQL server: connect,
//! schema creation, preparing every statement, plain writes and reads,
//! paging and a batch, with our flags on the prepared statements.
//!
//! kassandra ignores `IF` conditions (every conditional write applies) and
//! mishandles clustering-key ranges, so nothing here judges a condition or
//! a range read: those are `decide`'s property tests and the contract suite
//! against a real ScyllaDB (`LIGHTSTREAM_TEST_SCYLLA`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use kassandra::KassandraSession;
use kassandra::frame::request::Request;
use kassandra::frame::response::Response;
use kassandra::frame::{request_stream, response_sink};
use scylla::statement::batch::Batch;

use super::*;

/// Serves kassandra on a free loopback port from a thread of its own (its
/// futures are not `Send`), for as long as the test process lives.
fn start_kassandra() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let local = tokio::task::LocalSet::new();
        let db = Arc::new(Mutex::new(KassandraSession::new()));
        local.block_on(&runtime, async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::task::spawn_local(client(stream, db.clone()));
            }
        });
    });
    addr
}

async fn client(mut stream: tokio::net::TcpStream, db: Arc<Mutex<KassandraSession>>) {
    let (mut read, mut write) = stream.split();
    let mut requests = request_stream(&mut read);
    let mut responses = response_sink(&mut write);
    while let Some(Ok((frame, opcode, data))) = requests.next().await {
        let response = match Request::deserialize(opcode, &data, frame.flags) {
            Err(_) => break,
            Ok(request) => answer(request, &db),
        };
        if responses.send((response, frame.stream)).await.is_err() {
            break;
        }
    }
}

enum Answer<T, E> {
    Ready,
    Options,
    Done(std::result::Result<T, E>),
}

fn answer(request: Request<'_>, db: &Mutex<KassandraSession>) -> Response {
    let mut db = db.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // kassandra panics on what it does not implement: answer that as a
    // server error, so the driver sees a refusal and the test goes on.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match request {
        Request::StartUp(_) | Request::Register { .. } | Request::AuthResponse => Answer::Ready,
        Request::Options => Answer::Options,
        Request::Query(query) => Answer::Done(db.process(query)),
        Request::Prepare(query) => Answer::Done(db.prepare(query)),
        Request::Execute(execute) => Answer::Done(db.execute(execute)),
        Request::Batch(batch) => Answer::Done(db.process_batch(batch)),
    }));
    match outcome {
        Ok(Answer::Ready) => Response::Ready,
        Ok(Answer::Options) => Response::options(),
        Ok(Answer::Done(Ok(result))) => Response::Result(result),
        Ok(Answer::Done(Err(e))) => Response::Error(e),
        Err(_) => Response::Error(kassandra::frame::response::error::Error::new(
            kassandra::error::DbError::ServerError,
            "kassandra does not implement this",
        )),
    }
}

/// What kassandra 0.14 cannot create or prepare (it refuses, panics or
/// drops the connection), so this test cannot judge them: the `counter`
/// type (the cluster version), STATIC columns (the session and group
/// tables, where the conditional batches live) and `USING TIMESTAMP` and
/// `WRITETIME` (the max-register writes and their deletes). The test fails if the list changes either way.
const KASSANDRA_CANNOT: &[&str] = &[
    "CREATE_CLUSTER_VERSION",
    "CREATE_BROKER_SESSIONS",
    "CREATE_GROUPS",
    "CLUSTER_VERSION_BUMP",
    "SESSION_READ",
    "SESSION_READ_SERIAL",
    "SESSION_INSERT",
    "SESSION_REPLACE",
    "SESSION_RENEW",
    "SESSION_CLOSE",
    "SESSION_FENCE",
    "JOURNAL_ADVANCE",
    "JOURNAL_APPEND",
    "JOURNAL_TRIM",
    "SESSION_HOLD",
    "JOURNAL_READ",
    "JOURNAL_ENTRY_READ_SERIAL",
    "NEXT_OFFSET_WRITE",
    "INDEX_SEGMENT_WRITE",
    "PRODUCER_STATE_WRITE",
    "PRODUCER_STATES_READ",
    "PRODUCER_STATE_DELETE",
    "GROUP_READ",
    "GROUP_COORDINATOR_READ_SERIAL",
    "GROUP_CLAIM_NEW",
    "GROUP_CLAIM",
    "GROUP_RELEASE",
    "GROUP_SAVE",
    "GROUP_FORGET",
    "GROUP_HOLD",
    "GROUP_OFFSET_WRITE",
    "GROUP_OFFSET_DELETE",
];

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
            cql.prepared(statement).get_is_idempotent(),
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
                cql.prepared(&cql::GROUP_IDS_ADD),
                (7_i32, format!("g{i:02}")),
            )
            .await
            .expect("add group id");
    }
    let mut paged = cql.prepared(&cql::GROUP_IDS_READ).clone();
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
        batch.append_statement(cql.prepared(&cql::LEADER_CREATE).clone());
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
        .execute_unpaged(cql.prepared(&cql::LEADERS_READ), (topic_id,))
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
