//! Test support: `kassandra`, an in-process CQL server, on a free loopback
//! port. It ignores `IF` conditions and mishandles clustering ranges, so the
//! tests only use it for what it gets right (session/tests.rs lists what it
//! cannot do).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use kassandra::KassandraSession;
use kassandra::frame::request::Request;
use kassandra::frame::response::Response;
use kassandra::frame::{request_stream, response_sink};

use super::config::ScyllaConfig;
use super::cql::{self, Kind, Statement};
use super::session::{Cql, create_schema, open};

/// Serves kassandra on a free loopback port from a thread of its own (its
/// futures are not `Send`), for as long as the test process lives.
pub fn start_kassandra() -> SocketAddr {
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
        let mut data = data.to_vec();
        serial_read_as_quorum(opcode as u8, &mut data);
        let response = match Request::deserialize(opcode, &data, frame.flags) {
            Err(_) => break,
            Ok(request) => answer(request, &db),
        };
        if responses.send((response, frame.stream)).await.is_err() {
            break;
        }
    }
}

/// kassandra cannot parse the SERIAL and LOCAL_SERIAL consistencies (it
/// has no Paxos), and drops the connection. On its single node with no
/// conditional write ever in flight, a SERIAL read is a plain read: an
/// EXECUTE at SERIAL or LOCAL_SERIAL is given QUORUM. (The body is the
/// statement id, a short length then its bytes, then the consistency.)
fn serial_read_as_quorum(opcode: u8, data: &mut [u8]) {
    const EXECUTE: u8 = 0x0A;
    const SERIAL: [u16; 2] = [0x0008, 0x0009];
    const QUORUM: u16 = 0x0004;
    if opcode != EXECUTE || data.len() < 2 {
        return;
    }
    let at = 2 + usize::from(u16::from_be_bytes([data[0], data[1]]));
    if let Some(consistency) = data.get_mut(at..at + 2)
        && SERIAL.contains(&u16::from_be_bytes([consistency[0], consistency[1]]))
    {
        consistency.copy_from_slice(&QUORUM.to_be_bytes());
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
/// `WRITETIME` on updates and deletes (the max-register writes and the
/// index rewrites' deletes). The test fails if the list changes either way.
pub const KASSANDRA_CANNOT: &[&str] = &[
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
    "JOURNAL_TAIL_READ",
    "JOURNAL_ENTRY_READ_SERIAL",
    "NEXT_OFFSET_WRITE",
    "LOG_START_WRITE",
    "INDEX_ENTRY_DELETE",
    "INDEX_ENTRIES_CUT_SEGMENT",
    "INDEX_SEGMENT_WRITE",
    "INDEX_SEGMENT_DELETE",
    "OBJECT_REFERENCE_DELETE",
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

/// A `Cql` on kassandra at `addr` with the schema and statements it can
/// handle: none of `KASSANDRA_CANNOT`, nor any on a table it cannot create.
pub async fn kassandra_cql(config: &ScyllaConfig) -> Cql {
    let missing_tables: Vec<String> = KASSANDRA_CANNOT
        .iter()
        .filter_map(|name| name.strip_prefix("CREATE_"))
        .map(|table| format!("{{ks}}.{} ", table.to_lowercase()))
        .collect();
    let usable: Vec<&Statement> = cql::ALL
        .iter()
        .filter(|s| !KASSANDRA_CANNOT.contains(&s.name))
        .filter(|s| !missing_tables.iter().any(|t| s.cql.contains(t.as_str())))
        .collect();
    let session = open(config, false).await.expect("connect");
    create_schema(&session, config, &usable)
        .await
        .expect("schema");
    let statements: Vec<&Statement> = usable
        .into_iter()
        .filter(|s| s.kind != Kind::Schema)
        .collect();
    Cql::prepare_all(session, config, &statements)
        .await
        .expect("prepare")
}
