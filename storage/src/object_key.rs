//! Object keys: `<hh>/<uuid v7>.obj` for a flush's object and
//! `<hh>/<uuid v7>.compacted.obj` for object compaction's. The UUID is
//! time-ordered and unique (nothing is ever overwritten); `hh`, its last
//! byte in hex (random bits), spreads keys over 256 prefixes, because S3
//! limits request rates per prefix. The UUID's timestamp tells garbage
//! collection the object's age without a request; the kind tells the
//! compactor what it wrote itself (and must not copy again) from a look at
//! the index.

use uuid::Uuid;

/// The ending of a key that object compaction made.
const COMPACTED: &str = ".compacted.obj";

/// A fresh key for a flush's object.
pub fn new_object_key() -> String {
    let id = Uuid::now_v7();
    format!("{:02x}/{}.obj", id.as_bytes()[15], id.simple())
}

/// A fresh key for an object that compaction writes (one partition's runs).
pub fn new_compacted_object_key() -> String {
    let id = Uuid::now_v7();
    format!("{:02x}/{}{COMPACTED}", id.as_bytes()[15], id.simple())
}

/// Whether object compaction made the object named `key`.
pub fn is_compacted_object_key(key: &str) -> bool {
    key.ends_with(COMPACTED) && object_key_time_ms(key).is_some()
}

/// A key as `new_object_key` would have made it at `ms` (for tests of
/// anything that ages objects by their keys).
pub fn object_key_at(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    let at =
        uuid::Timestamp::from_unix(uuid::NoContext, ms / 1_000, (ms % 1_000) as u32 * 1_000_000);
    let id = Uuid::new_v7(at);
    format!("{:02x}/{}.obj", id.as_bytes()[15], id.simple())
}

/// When the object named `key` was created (ms since the epoch), if `key` is
/// one of ours; `None` for any other key, which garbage collection leaves.
pub fn object_key_time_ms(key: &str) -> Option<i64> {
    let (prefix, rest) = key.split_once('/')?;
    let simple = rest
        .strip_suffix(COMPACTED)
        .or_else(|| rest.strip_suffix(".obj"))?;
    if simple.len() != 32 || prefix.len() != 2 {
        return None;
    }
    let id = Uuid::try_parse(simple).ok()?;
    if id.get_version_num() != 7 || format!("{:02x}", id.as_bytes()[15]) != prefix {
        return None;
    }
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    Some(secs as i64 * 1_000 + nanos as i64 / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_creation_time() {
        let before = crate::Clock::now_ms(&crate::SystemClock);
        let key = new_object_key();
        let after = crate::Clock::now_ms(&crate::SystemClock);
        let at = object_key_time_ms(&key).expect("our key");
        assert!(
            (before..=after).contains(&at),
            "{before} <= {at} <= {after}"
        );
        assert_ne!(new_object_key(), key);
    }

    #[test]
    fn compacted_keys_are_ours_and_told_apart() {
        let before = crate::Clock::now_ms(&crate::SystemClock);
        let key = new_compacted_object_key();
        let at = object_key_time_ms(&key).expect("our key");
        assert!(at >= before, "{before} <= {at}");
        assert!(is_compacted_object_key(&key));
        assert!(!is_compacted_object_key(&new_object_key()));
        assert!(!is_compacted_object_key("ab/x.compacted.obj"));
    }

    #[test]
    fn keys_can_be_made_for_any_time() {
        let key = object_key_at(1_700_000_000_123);
        assert_eq!(object_key_time_ms(&key), Some(1_700_000_000_123));
    }

    #[test]
    fn other_keys_are_not_ours() {
        let key = new_object_key();
        let (prefix, rest) = key.split_once('/').unwrap();
        let wrong_prefix = if prefix == "00" { "01" } else { "00" };
        for other in [
            "README".to_string(),
            "ab/not-a-uuid.obj".to_string(),
            format!("{wrong_prefix}/{rest}"),
            format!("{prefix}/{}", rest.replace(".obj", ".tmp")),
            format!("{prefix}/{}", rest.replace(".obj", ".compacted.tmp")),
            format!("{prefix}/{}", rest.replace(".obj", ".other.obj")),
            format!("{prefix}/{}.obj", Uuid::new_v4().simple()),
            format!("x/{key}"),
        ] {
            assert_eq!(object_key_time_ms(&other), None, "{other}");
        }
    }
}
