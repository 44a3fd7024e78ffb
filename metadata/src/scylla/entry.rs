//! A journal entry's bytes (the `entry` blob of `broker_sessions`): one
//! flush commit without its session, which the row's key already names.
//! Whoever applies the journal — the writer itself, or a claimer after it
//! fenced the writer — decodes it back into index entries, leader epochs
//! and producer states.
//!
//! Form 1, big-endian: the form byte; the object key (u32 length + UTF-8)
//! and size (u64); the entries (u32 count; each: topic id 16 bytes,
//! partition i32, base and last offset i64, position and length u64, max
//! timestamp i64, leader epoch i32 — the object key is the commit's); the
//! producer states (u32 count; each: topic id, partition, producer id i64,
//! producer epoch i16, last write i64, then `ProducerBatch::encode_batches`
//! with a u32 length).
//!
//! Form 2: an index rewrite — a retention cut or an object-compaction swap
//! (`rewrite::Mutation`s, in order): the form byte; a u32 count; each
//! mutation a tag byte and its fields (partitions as above, entries as
//! topic, partition, base, last, object key, position, length, max
//! timestamp; summaries as topic, partition, segment, base, last, entries,
//! bytes, max timestamp; write times i64).
//!
//! Decoding reads bytes from the store, so it checks every length against
//! what is left and never panics: bytes it did not write are an error.
//! Encoding refuses a commit the form cannot carry faithfully.

use uuid::Uuid;

use super::rewrite::Mutation;
use crate::model::{
    BrokerSession, FlushCommit, IndexEntry, IndexSegment, ProducerBatch, ProducerState, TopicId,
    TopicPartition,
};

const FORM_1: u8 = 1;
const FORM_2: u8 = 2;

/// What one journal entry records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A flush commit (form 1).
    Commit(FlushCommit),
    /// An index rewrite (form 2).
    Rewrite(Vec<Mutation>),
}

/// The entry's bytes. Refused when the form cannot carry the commit as it
/// is — epochs not one per entry, or an entry in another object than the
/// commit's (the form keeps one object key) — instead of writing bytes that
/// would decode into another commit.
pub fn encode(commit: &FlushCommit) -> Result<Vec<u8>, String> {
    if commit.entries.len() != commit.leader_epochs.len() {
        return Err(format!(
            "{} entries but {} leader epochs",
            commit.entries.len(),
            commit.leader_epochs.len()
        ));
    }
    if let Some(e) = commit
        .entries
        .iter()
        .find(|e| e.object_key != commit.object_key)
    {
        return Err(format!(
            "entry of {} in object {}, not {}",
            e.topic_partition, e.object_key, commit.object_key
        ));
    }
    let mut out = Vec::with_capacity(64 + commit.entries.len() * 72);
    out.push(FORM_1);
    put_bytes(&mut out, commit.object_key.as_bytes());
    out.extend_from_slice(&commit.object_size.to_be_bytes());
    out.extend_from_slice(&(commit.entries.len() as u32).to_be_bytes());
    for (entry, epoch) in commit.entries.iter().zip(&commit.leader_epochs) {
        put_partition(&mut out, entry.topic_partition);
        out.extend_from_slice(&entry.base_offset.to_be_bytes());
        out.extend_from_slice(&entry.last_offset.to_be_bytes());
        out.extend_from_slice(&entry.position.to_be_bytes());
        out.extend_from_slice(&entry.length.to_be_bytes());
        out.extend_from_slice(&entry.max_timestamp.to_be_bytes());
        out.extend_from_slice(&epoch.to_be_bytes());
    }
    out.extend_from_slice(&(commit.producers.len() as u32).to_be_bytes());
    for p in &commit.producers {
        put_partition(&mut out, p.topic_partition);
        out.extend_from_slice(&p.producer_id.to_be_bytes());
        out.extend_from_slice(&p.producer_epoch.to_be_bytes());
        out.extend_from_slice(&p.last_write_ms.to_be_bytes());
        put_bytes(&mut out, &ProducerBatch::encode_batches(&p.batches));
    }
    Ok(out)
}

/// The bytes of an index rewrite (form 2).
pub fn encode_rewrite(mutations: &[Mutation]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + mutations.len() * 80);
    out.push(FORM_2);
    out.extend_from_slice(&(mutations.len() as u32).to_be_bytes());
    for m in mutations {
        match m {
            Mutation::LogStart { tp, offset } => {
                out.push(1);
                put_partition(&mut out, *tp);
                out.extend_from_slice(&offset.to_be_bytes());
            }
            Mutation::DropSegment { tp, segment, at } => {
                out.push(2);
                put_partition(&mut out, *tp);
                out.extend_from_slice(&segment.to_be_bytes());
                out.extend_from_slice(&at.to_be_bytes());
            }
            Mutation::DeleteEntry { entry, at } => put_entry(&mut out, 3, entry, *at),
            Mutation::DeleteReference { entry, at } => put_entry(&mut out, 4, entry, *at),
            Mutation::WriteEntry { entry, at } => put_entry(&mut out, 5, entry, *at),
            Mutation::WriteSummary { summary: s, at } => {
                out.push(6);
                put_partition(&mut out, s.topic_partition);
                for v in [
                    s.segment,
                    s.base_offset,
                    s.last_offset,
                    s.entries,
                    s.bytes,
                    s.max_timestamp,
                    *at,
                ] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
    }
    out
}

fn put_entry(out: &mut Vec<u8>, tag: u8, e: &IndexEntry, at: i64) {
    out.push(tag);
    put_partition(out, e.topic_partition);
    out.extend_from_slice(&e.base_offset.to_be_bytes());
    out.extend_from_slice(&e.last_offset.to_be_bytes());
    put_bytes(out, e.object_key.as_bytes());
    out.extend_from_slice(&e.position.to_be_bytes());
    out.extend_from_slice(&e.length.to_be_bytes());
    out.extend_from_slice(&e.max_timestamp.to_be_bytes());
    out.extend_from_slice(&at.to_be_bytes());
}

/// The record `bytes` hold, under `session`; `Err` names what is wrong.
pub fn decode(bytes: &[u8], session: BrokerSession) -> Result<Record, String> {
    match bytes.first() {
        Some(&FORM_1) => decode_commit(bytes, session).map(Record::Commit),
        Some(&FORM_2) => decode_rewrite(bytes).map(Record::Rewrite),
        Some(form) => Err(format!("unknown journal entry form {form}")),
        None => Err("empty journal entry".into()),
    }
}

fn decode_rewrite(bytes: &[u8]) -> Result<Vec<Mutation>, String> {
    let mut r = Reader { bytes, at: 1 };
    let count = r.count(1 + 20 + 8)?;
    let mut mutations = Vec::with_capacity(count);
    for _ in 0..count {
        let tag = r.u8()?;
        let m = match tag {
            1 => Mutation::LogStart {
                tp: r.partition()?,
                offset: r.i64()?,
            },
            2 => Mutation::DropSegment {
                tp: r.partition()?,
                segment: r.i64()?,
                at: r.i64()?,
            },
            3..=5 => {
                let topic_partition = r.partition()?;
                let entry = IndexEntry {
                    topic_partition,
                    base_offset: r.i64()?,
                    last_offset: r.i64()?,
                    object_key: String::from_utf8(r.bytes()?.to_vec())
                        .map_err(|_| "object key is not UTF-8".to_string())?,
                    position: r.u64()?,
                    length: r.u64()?,
                    max_timestamp: r.i64()?,
                };
                let at = r.i64()?;
                match tag {
                    3 => Mutation::DeleteEntry { entry, at },
                    4 => Mutation::DeleteReference { entry, at },
                    _ => Mutation::WriteEntry { entry, at },
                }
            }
            6 => Mutation::WriteSummary {
                summary: IndexSegment {
                    topic_partition: r.partition()?,
                    segment: r.i64()?,
                    base_offset: r.i64()?,
                    last_offset: r.i64()?,
                    entries: r.i64()?,
                    bytes: r.i64()?,
                    max_timestamp: r.i64()?,
                },
                at: r.i64()?,
            },
            other => return Err(format!("unknown index rewrite mutation {other}")),
        };
        mutations.push(m);
    }
    if r.at != bytes.len() {
        return Err(format!("{} bytes after the entry", bytes.len() - r.at));
    }
    Ok(mutations)
}

fn decode_commit(bytes: &[u8], session: BrokerSession) -> Result<FlushCommit, String> {
    let mut r = Reader { bytes, at: 1 };
    let object_key = String::from_utf8(r.bytes()?.to_vec())
        .map_err(|_| "object key is not UTF-8".to_string())?;
    let object_size = r.u64()?;
    let count = r.count(16 + 4 + 8 * 5 + 4)?;
    let mut entries = Vec::with_capacity(count);
    let mut leader_epochs = Vec::with_capacity(count);
    for _ in 0..count {
        let topic_partition = r.partition()?;
        entries.push(IndexEntry {
            topic_partition,
            base_offset: r.i64()?,
            last_offset: r.i64()?,
            object_key: object_key.clone(),
            position: r.u64()?,
            length: r.u64()?,
            max_timestamp: r.i64()?,
        });
        leader_epochs.push(r.i32()?);
    }
    let count = r.count(16 + 4 + 8 + 2 + 8 + 4)?;
    let mut producers = Vec::with_capacity(count);
    for _ in 0..count {
        let topic_partition = r.partition()?;
        let producer_id = r.i64()?;
        let producer_epoch = r.i16()?;
        let last_write_ms = r.i64()?;
        let batches = ProducerBatch::decode_batches(r.bytes()?)
            .ok_or_else(|| "producer batches malformed".to_string())?;
        producers.push(ProducerState {
            topic_partition,
            producer_id,
            producer_epoch,
            last_write_ms,
            batches,
        });
    }
    if r.at != bytes.len() {
        return Err(format!("{} bytes after the entry", bytes.len() - r.at));
    }
    Ok(FlushCommit {
        session,
        object_key,
        object_size,
        entries,
        leader_epochs,
        producers,
    })
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_partition(out: &mut Vec<u8>, tp: TopicPartition) {
    out.extend_from_slice(tp.topic_id.0.as_bytes());
    out.extend_from_slice(&tp.partition.to_be_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("journal entry cut short at byte {}", self.at))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = u32::from_be_bytes(self.array()?) as usize;
        self.take(len)
    }

    /// A count of items of at least `min_len` bytes each, refused when the
    /// bytes left cannot hold them (so no allocation follows a lie).
    fn count(&mut self, min_len: usize) -> Result<usize, String> {
        let count = u32::from_be_bytes(self.array()?) as usize;
        if count.saturating_mul(min_len) > self.bytes.len() - self.at {
            return Err(format!("count {count} beyond the entry's bytes"));
        }
        Ok(count)
    }

    fn partition(&mut self) -> Result<TopicPartition, String> {
        let id = Uuid::from_bytes(self.array()?);
        Ok(TopicPartition::new(TopicId(id), self.i32()?))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SESSION: BrokerSession = BrokerSession {
        node_id: 3,
        incarnation: 9,
    };

    fn partition() -> impl Strategy<Value = TopicPartition> {
        (any::<u128>(), 0..64i32)
            .prop_map(|(id, p)| TopicPartition::new(TopicId(Uuid::from_u128(id)), p))
    }

    fn commit() -> impl Strategy<Value = FlushCommit> {
        let entry = (
            partition(),
            any::<i64>(),
            any::<i64>(),
            any::<u64>(),
            any::<u64>(),
            any::<i64>(),
            any::<i32>(),
        );
        let batch = (
            any::<i32>(),
            any::<i32>(),
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
        )
            .prop_map(
                |(first_sequence, last_sequence, base_offset, last_offset, max_timestamp)| {
                    ProducerBatch {
                        first_sequence,
                        last_sequence,
                        base_offset,
                        last_offset,
                        max_timestamp,
                    }
                },
            );
        let producer = (
            partition(),
            any::<i64>(),
            any::<i16>(),
            any::<i64>(),
            prop::collection::vec(batch, 0..6),
        )
            .prop_map(
                |(topic_partition, producer_id, producer_epoch, last_write_ms, batches)| {
                    ProducerState {
                        topic_partition,
                        producer_id,
                        producer_epoch,
                        last_write_ms,
                        batches,
                    }
                },
            );
        (
            "[a-z0-9/._-]{1,40}",
            any::<u64>(),
            prop::collection::vec(entry, 0..20),
            prop::collection::vec(producer, 0..8),
        )
            .prop_map(
                |(object_key, object_size, entries, producers)| FlushCommit {
                    session: SESSION,
                    leader_epochs: entries.iter().map(|e| e.6).collect(),
                    entries: entries
                        .into_iter()
                        .map(|(tp, base, last, position, length, ts, _)| IndexEntry {
                            topic_partition: tp,
                            base_offset: base,
                            last_offset: last,
                            object_key: object_key.clone(),
                            position,
                            length,
                            max_timestamp: ts,
                        })
                        .collect(),
                    object_key,
                    object_size,
                    producers,
                },
            )
    }

    fn index_entry() -> impl Strategy<Value = IndexEntry> {
        (
            partition(),
            any::<i64>(),
            any::<i64>(),
            "[a-z0-9/._-]{0,40}",
            any::<u64>(),
            any::<u64>(),
            any::<i64>(),
        )
            .prop_map(|(tp, base, last, key, position, length, ts)| IndexEntry {
                topic_partition: tp,
                base_offset: base,
                last_offset: last,
                object_key: key,
                position,
                length,
                max_timestamp: ts,
            })
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let summary =
            (partition(), prop::array::uniform6(any::<i64>())).prop_map(|(tp, v)| IndexSegment {
                topic_partition: tp,
                segment: v[0],
                base_offset: v[1],
                last_offset: v[2],
                entries: v[3],
                bytes: v[4],
                max_timestamp: v[5],
            });
        prop_oneof![
            (partition(), any::<i64>()).prop_map(|(tp, offset)| Mutation::LogStart { tp, offset }),
            (partition(), any::<i64>(), any::<i64>())
                .prop_map(|(tp, segment, at)| Mutation::DropSegment { tp, segment, at }),
            (index_entry(), any::<i64>())
                .prop_map(|(entry, at)| Mutation::DeleteEntry { entry, at }),
            (index_entry(), any::<i64>())
                .prop_map(|(entry, at)| Mutation::DeleteReference { entry, at }),
            (index_entry(), any::<i64>())
                .prop_map(|(entry, at)| Mutation::WriteEntry { entry, at }),
            (summary, any::<i64>())
                .prop_map(|(summary, at)| Mutation::WriteSummary { summary, at }),
        ]
    }

    proptest! {
        #[test]
        fn a_rewrite_reads_back_as_written(mutations in prop::collection::vec(mutation(), 0..12)) {
            let bytes = encode_rewrite(&mutations);
            prop_assert_eq!(decode(&bytes, SESSION), Ok(Record::Rewrite(mutations)));
        }

        #[test]
        fn a_cut_or_extended_rewrite_is_refused(mutations in prop::collection::vec(mutation(), 1..6), cut in any::<prop::sample::Index>(), junk in any::<u8>()) {
            let bytes = encode_rewrite(&mutations);
            prop_assert!(decode(&bytes[..cut.index(bytes.len())], SESSION).is_err());
            let mut long = bytes.clone();
            long.push(junk);
            prop_assert!(decode(&long, SESSION).is_err());
        }

        #[test]
        fn a_commit_reads_back_as_written(commit in commit()) {
            let bytes = encode(&commit).expect("encodable");
            prop_assert_eq!(decode(&bytes, SESSION), Ok(Record::Commit(commit)));
        }

        #[test]
        fn cut_or_extended_bytes_are_refused_not_panicked_on(commit in commit(), cut in any::<prop::sample::Index>(), junk in any::<u8>()) {
            let bytes = encode(&commit).expect("encodable");
            let short = &bytes[..cut.index(bytes.len())];
            prop_assert!(decode(short, SESSION).is_err());
            let mut long = bytes.clone();
            long.push(junk);
            prop_assert!(decode(&long, SESSION).is_err());
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes, SESSION);
        }
    }

    #[test]
    fn a_commit_the_form_cannot_carry_is_refused() {
        let entry = IndexEntry {
            topic_partition: TopicPartition::new(TopicId(Uuid::from_u128(7)), 0),
            base_offset: 0,
            last_offset: 9,
            object_key: "objects/a".into(),
            position: 0,
            length: 100,
            max_timestamp: 1,
        };
        let commit = FlushCommit {
            session: SESSION,
            object_key: "objects/a".into(),
            object_size: 100,
            entries: vec![entry.clone()],
            leader_epochs: vec![],
            producers: vec![],
        };
        assert!(
            encode(&commit)
                .expect_err("no epoch")
                .contains("leader epochs")
        );
        let elsewhere = FlushCommit {
            leader_epochs: vec![3],
            entries: vec![IndexEntry {
                object_key: "objects/b".into(),
                ..entry
            }],
            ..commit
        };
        assert!(
            encode(&elsewhere)
                .expect_err("two objects")
                .contains("objects/b")
        );
    }

    #[test]
    fn a_count_beyond_the_bytes_is_refused_before_allocating() {
        let mut bytes = vec![FORM_1];
        put_bytes(&mut bytes, b"k");
        bytes.extend_from_slice(&0u64.to_be_bytes());
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        let e = decode(&bytes, SESSION).expect_err("lying count");
        assert!(e.contains("beyond"), "{e}");
    }
}
