//! Runs the `ObjectStore` contract against the local directory and memory stores.

use storage::{LocalDirStore, MemoryStore, contract};

#[tokio::test]
async fn memory_store_meets_the_contract() {
    contract::run_all(&MemoryStore::new()).await;
}

#[tokio::test]
async fn local_dir_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract::run_all(&LocalDirStore::open(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn local_dir_store_rejects_keys_that_escape_its_root() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDirStore::open(dir.path()).unwrap();
    for key in ["../x", "/etc/passwd", "a//b", ""] {
        assert!(
            storage::ObjectStore::put(&store, key, bytes::Bytes::from_static(b"x"))
                .await
                .is_err(),
            "{key}"
        );
    }
}
