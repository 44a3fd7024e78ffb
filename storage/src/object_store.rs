//! The `ObjectStore` seam: where the log's objects live.
//!
//! Implementations here: a local directory (the embedded default) and memory
//! (tests); S3 is in `crate::s3`. Every implementation runs
//! `crate::contract` in its tests. A store may take objects in parts as a
//! flush fills (`part_size`, `put_parts`); the others get whole objects.
//!
//! Keys are relative paths with `/` separators (`ab/0192…​.obj`). Objects are
//! written once and never overwritten: `put` of an existing key fails with
//! `AlreadyExists`, the same contract S3's `If-None-Match: *` gives.

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use crate::{Error, Result};

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Stores `bytes` under `key`. When this returns `Ok` the object is durable
    /// (fsynced, or acknowledged by the remote store). Never overwrites.
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()>;
    /// Reads `range` of the object. Errors with `NotFound` if absent and
    /// `InvalidRange` if the range goes past its end.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;
    /// Reads `range` of the object as it arrives: chunks in order, of any
    /// size, that add up to the range (a stream that ends short is the
    /// reader's error to find). Errors like `get_range`, at the start or as
    /// the stream's item. A reader may stop pulling for a while (the block
    /// cache parks a stream between a consumer's fetches) or drop it. The
    /// default reads the range whole, as one chunk.
    async fn get_range_stream(&self, key: &str, range: Range<u64>) -> Result<ByteChunks> {
        let bytes = self.get_range(key, range).await?;
        Ok(Box::pin(futures::stream::once(async move { Ok(bytes) })))
    }
    /// Reads a whole object.
    async fn get(&self, key: &str) -> Result<Bytes>;
    /// Deletes an object; deleting an absent key succeeds.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Keys starting with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;

    /// The part size this store streams objects in, if it does: a flush
    /// then hands its object over part by part while it still fills
    /// (`put_parts`). `None` (the default): whole objects, through `put`.
    fn part_size(&self) -> Option<usize> {
        None
    }

    /// Writes `key` from parts received in order (every part but the last
    /// of one size: `part_size()`, or a smaller one no smaller than
    /// `MIN_PART_SIZE` for a writer that holds less, as object compaction
    /// does), completed by `None`. A sender dropped before
    /// `None` abandons the write: nothing is left under `key`. Never
    /// overwrites. Each part is let go once it is written (or copied): a
    /// writer may wait for the parts it sent to be let go before it sends
    /// more (object compaction bounds its memory so): with
    /// `PartCount::Several`, the store does not hold the first part back
    /// for the second, so such a writer may hold one part at a time. The
    /// default joins the parts and calls `put`.
    async fn put_parts(&self, key: &str, mut parts: PartReceiver, _count: PartCount) -> Result<()> {
        let mut object = BytesMut::new();
        loop {
            match parts.recv().await {
                Some(Some(part)) => object.extend_from_slice(&part),
                Some(None) => break,
                None => return Err(abandoned(key)),
            }
        }
        self.put(key, object.freeze()).await
    }
}

/// A ranged read delivered as it arrives (`ObjectStore::get_range_stream`).
pub type ByteChunks = futures::stream::BoxStream<'static, Result<Bytes>>;

/// Chunks a local file range is read in.
const FILE_CHUNK: u64 = 1 << 20;

/// The parts of a streamed object write, then `None` to complete it.
pub type PartReceiver = tokio::sync::mpsc::UnboundedReceiver<Option<Bytes>>;

/// What the writer of a streamed object knows of its number of parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartCount {
    /// One or more (a flush does not know its size): the S3 store holds
    /// the first part until the second or the end comes, to choose between
    /// one PutObject and a multipart upload.
    Unknown,
    /// Two or more (a rewrite knows its size): the S3 store starts a
    /// multipart upload with the first part. (Should only one come, the
    /// upload completes with that one part, which S3 allows at any size.)
    Several,
}

/// A streamed write whose sender went away before completing it.
pub(crate) fn abandoned(key: &str) -> Error {
    Error::Unavailable(format!("object write abandoned key={key}"))
}

/// Objects as files under one directory. `put` writes a temporary file,
/// fsyncs it, links it into place (failing if the key exists), and fsyncs the
/// directory, so a crash leaves either no object or the whole object.
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| Error::io(format!("create object dir path={}", root.display()), e))?;
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent)
                .map_err(|e| Error::io(format!("fsync dir path={}", parent.display()), e))?;
        }
        Ok(LocalDirStore { root })
    }

    fn path_of(&self, key: &str) -> Result<PathBuf> {
        if key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(Error::InvalidKey(key.to_string()));
        }
        Ok(self.root.join(key))
    }
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Runs file I/O on tokio's blocking pool, off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io(format!("blocking task failed: {e}")))?
}

/// The object file at `path`, once `range` is found within it.
fn open_range(path: &Path, key: String, range: Range<u64>) -> Result<std::fs::File> {
    let file = std::fs::File::open(path).map_err(|e| not_found_or(key.clone(), e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io(format!("stat key={key}"), e))?
        .len();
    if range.start > range.end || range.end > size {
        return Err(Error::InvalidRange { key, range, size });
    }
    Ok(file)
}

#[async_trait]
impl ObjectStore for LocalDirStore {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let path = self.path_of(key)?;
        let key = key.to_string();
        let root = self.root.clone();
        blocking(move || {
            let dir = path
                .parent()
                .expect("object path has a parent")
                .to_path_buf();
            if !dir.is_dir() {
                // A new prefix directory must itself be durable in its parent,
                // or the first object in it could vanish after a crash.
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::io(format!("create dir key={key}"), e))?;
                let mut child = dir.as_path();
                while let Some(parent) = child.parent() {
                    fsync_dir(parent).map_err(|e| Error::io(format!("fsync dir key={key}"), e))?;
                    if parent == root.as_path() {
                        break;
                    }
                    child = parent;
                }
            }
            let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
            let write = || -> std::io::Result<()> {
                let mut file = std::fs::File::create_new(&tmp)?;
                file.write_all(&bytes)?;
                file.sync_all()
            };
            if let Err(e) = write() {
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::io(format!("write object key={key}"), e));
            }
            let linked = std::fs::hard_link(&tmp, &path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::AlreadyExists(key));
                }
                Err(e) => return Err(Error::io(format!("link object key={key}"), e)),
            }
            fsync_dir(&dir).map_err(|e| Error::io(format!("fsync dir key={key}"), e))
        })
        .await
    }

    /// A chunk at a time, each read when pulled, from a file opened once.
    async fn get_range_stream(&self, key: &str, range: Range<u64>) -> Result<ByteChunks> {
        let path = self.path_of(key)?;
        let key = key.to_string();
        let opened = {
            let (key, range) = (key.clone(), range.clone());
            blocking(move || open_range(&path, key, range).map(std::sync::Arc::new)).await?
        };
        let chunks = futures::stream::try_unfold(range.start, move |at| {
            let (file, key, end) = (opened.clone(), key.clone(), range.end);
            async move {
                if at >= end {
                    return Ok(None);
                }
                let len = FILE_CHUNK.min(end - at);
                let chunk = blocking(move || {
                    let mut buf = vec![0; len as usize];
                    std::os::unix::fs::FileExt::read_exact_at(&*file, &mut buf, at)
                        .map_err(|e| Error::io(format!("read key={key}"), e))?;
                    Ok(Bytes::from(buf))
                })
                .await?;
                Ok(Some((chunk, at + len)))
            }
        });
        Ok(Box::pin(chunks))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let path = self.path_of(key)?;
        let key = key.to_string();
        blocking(move || {
            use std::io::{Read, Seek};
            let file = open_range(&path, key.clone(), range.clone())?;
            // `read_to_end` fills spare capacity without zeroing it first.
            let len = range.end - range.start;
            let mut buf = Vec::with_capacity(len as usize);
            let mut reader = &file;
            reader
                .seek(std::io::SeekFrom::Start(range.start))
                .and_then(|_| reader.take(len).read_to_end(&mut buf))
                .map_err(|e| Error::io(format!("read key={key}"), e))?;
            if buf.len() as u64 != len {
                return Err(Error::Io(format!(
                    "short read key={key} wanted={len} got={}",
                    buf.len()
                )));
            }
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let path = self.path_of(key)?;
        let key = key.to_string();
        blocking(move || {
            std::fs::read(&path)
                .map(Bytes::from)
                .map_err(|e| not_found_or(key, e))
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        let key = key.to_string();
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("delete key={key}"), e)),
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        blocking(move || {
            let mut keys = Vec::new();
            let mut dirs = vec![root.clone()];
            while let Some(dir) = dirs.pop() {
                let entries = std::fs::read_dir(&dir)
                    .map_err(|e| Error::io(format!("list dir={}", dir.display()), e))?;
                for entry in entries {
                    let entry = entry.map_err(|e| Error::io("list entry".to_string(), e))?;
                    let path = entry.path();
                    let name = entry.file_name();
                    if name.to_string_lossy().starts_with(".tmp-") {
                        continue;
                    }
                    if path.is_dir() {
                        dirs.push(path);
                    } else if let Ok(rel) = path.strip_prefix(&root) {
                        let key = rel.to_string_lossy().replace('\\', "/");
                        if key.starts_with(&prefix) {
                            keys.push(key);
                        }
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
    }
}

fn not_found_or(key: String, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::NotFound(key)
    } else {
        Error::io(format!("open key={key}"), e)
    }
}

/// Objects in a map: for tests, and for the contract suite's reference.
#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Bytes>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let mut objects = self.objects.lock().expect("memory store lock");
        if objects.contains_key(key) {
            return Err(Error::AlreadyExists(key.to_string()));
        }
        objects.insert(key.to_string(), bytes);
        Ok(())
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let object = self.get(key).await?;
        let size = object.len() as u64;
        if range.start > range.end || range.end > size {
            return Err(Error::InvalidRange {
                key: key.to_string(),
                range,
                size,
            });
        }
        Ok(object.slice(range.start as usize..range.end as usize))
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let objects = self.objects.lock().expect("memory store lock");
        objects
            .get(key)
            .cloned()
            .ok_or_else(|| Error::NotFound(key.to_string()))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.objects.lock().expect("memory store lock").remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let objects = self.objects.lock().expect("memory store lock");
        Ok(objects
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}
