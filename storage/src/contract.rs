//! The `ObjectStore` contract, written once and run against every
//! implementation (local directory and memory here; S3 with its issue).

use bytes::Bytes;

use crate::{Error, ObjectStore};

/// Runs every check against `store`, which must be empty.
pub async fn run_all(store: &dyn ObjectStore) {
    put_then_get_returns_same_bytes(store).await;
    put_never_overwrites(store).await;
    ranged_reads_are_exact(store).await;
    streamed_ranged_reads_are_exact(store).await;
    missing_objects_are_not_found(store).await;
    list_filters_by_prefix_and_sorts(store).await;
    delete_is_idempotent(store).await;
}

async fn put_then_get_returns_same_bytes(store: &dyn ObjectStore) {
    let bytes = Bytes::from(
        (0..10_000u32)
            .flat_map(|i| i.to_be_bytes())
            .collect::<Vec<_>>(),
    );
    store.put("aa/one.obj", bytes.clone()).await.unwrap();
    assert_eq!(store.get("aa/one.obj").await.unwrap(), bytes);
}

async fn put_never_overwrites(store: &dyn ObjectStore) {
    store
        .put("aa/two.obj", Bytes::from_static(b"first"))
        .await
        .unwrap();
    let again = store.put("aa/two.obj", Bytes::from_static(b"second")).await;
    assert!(matches!(again, Err(Error::AlreadyExists(_))), "{again:?}");
    assert_eq!(store.get("aa/two.obj").await.unwrap(), &b"first"[..]);
}

async fn streamed_ranged_reads_are_exact(store: &dyn ObjectStore) {
    use futures::TryStreamExt;
    // Large enough to arrive in several chunks from a file or a socket.
    let bytes = Bytes::from(
        (0..1_000_000u32)
            .flat_map(|i| i.to_le_bytes())
            .collect::<Vec<_>>(),
    );
    store.put("bb/stream.obj", bytes.clone()).await.unwrap();
    for range in [0..4_000_000u64, 3..2_500_007, 1_048_575..1_048_577, 9..9] {
        let chunks: Vec<Bytes> = store
            .get_range_stream("bb/stream.obj", range.clone())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let joined: Vec<u8> = chunks.concat();
        assert_eq!(
            joined,
            &bytes[range.start as usize..range.end as usize],
            "{range:?}"
        );
    }
    // A stream dropped after one chunk leaves nothing behind to trip on.
    let mut partial = store
        .get_range_stream("bb/stream.obj", 0..4_000_000)
        .await
        .unwrap();
    assert!(partial.try_next().await.unwrap().is_some());
    drop(partial);
    let missing = match store.get_range_stream("bb/absent.obj", 0..1).await {
        Ok(chunks) => chunks.try_collect::<Vec<Bytes>>().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");
    let beyond = match store
        .get_range_stream("bb/stream.obj", 3_999_999..4_000_001)
        .await
    {
        Ok(chunks) => chunks.try_collect::<Vec<Bytes>>().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(beyond.is_err(), "a range past the end: {beyond:?}");
}

async fn ranged_reads_are_exact(store: &dyn ObjectStore) {
    store
        .put("bb/range.obj", Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    assert_eq!(
        store.get_range("bb/range.obj", 2..5).await.unwrap(),
        &b"234"[..]
    );
    assert_eq!(
        store.get_range("bb/range.obj", 0..10).await.unwrap(),
        &b"0123456789"[..]
    );
    assert_eq!(
        store.get_range("bb/range.obj", 10..10).await.unwrap(),
        &b""[..]
    );
    assert!(matches!(
        store.get_range("bb/range.obj", 5..11).await,
        Err(Error::InvalidRange { .. })
    ));
}

async fn missing_objects_are_not_found(store: &dyn ObjectStore) {
    assert!(matches!(
        store.get("zz/none.obj").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.get_range("zz/none.obj", 0..1).await,
        Err(Error::NotFound(_))
    ));
}

async fn list_filters_by_prefix_and_sorts(store: &dyn ObjectStore) {
    store
        .put("cc/b.obj", Bytes::from_static(b"b"))
        .await
        .unwrap();
    store
        .put("cc/a.obj", Bytes::from_static(b"a"))
        .await
        .unwrap();
    assert_eq!(
        store.list("cc/").await.unwrap(),
        vec!["cc/a.obj".to_string(), "cc/b.obj".to_string()]
    );
}

async fn delete_is_idempotent(store: &dyn ObjectStore) {
    store
        .put("dd/x.obj", Bytes::from_static(b"x"))
        .await
        .unwrap();
    store.delete("dd/x.obj").await.unwrap();
    store.delete("dd/x.obj").await.unwrap();
    assert!(matches!(
        store.get("dd/x.obj").await,
        Err(Error::NotFound(_))
    ));
}
