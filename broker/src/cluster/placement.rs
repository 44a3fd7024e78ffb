//! Where partitions and groups go: rendezvous (highest-random-weight)
//! hashing over the live brokers.
//!
//! Every (key, node) pair gets a pseudo-random score and the key goes to the
//! node with the highest. It is stable (a key moves only when its winner
//! leaves, or when a new node beats it: adding a broker moves about 1/(N+1)
//! of the keys, all to the new broker) and needs no coordination: every
//! broker computes the same answer from the same list of live brokers.
//! Groups are placed so (`owner`). A topic's partitions are placed with
//! bounded loads (`topic_owners`), so that each topic is spread evenly too. The hash is written out
//! here rather than taken from `std`, whose hasher may change between Rust
//! releases: brokers of two versions during a rolling upgrade must agree.

use metadata::{TopicId, TopicPartition};

/// FNV-1a over the key's bytes: a stable, well-known 64-bit hash.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64's finaliser: spreads every input bit over every output bit,
/// so that the scores of one key on different nodes are unrelated.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn score(key_hash: u64, node_id: i32) -> u64 {
    mix(key_hash ^ mix(u64::from(node_id as u32)))
}

/// The node (of `nodes`) that `key` goes to; `None` when there is none.
pub fn owner(key: &[u8], nodes: &[i32]) -> Option<i32> {
    let hash = fnv1a(key);
    nodes
        .iter()
        .copied()
        .max_by_key(|&node| (score(hash, node), node))
}

/// The nodes the partitions of one topic go to, in partition order:
/// rendezvous hashing with bounded loads. Each partition goes to the node
/// with the highest score for it among those holding fewer than
/// ⌈partitions / nodes⌉ of the topic's partitions, so every topic is spread
/// evenly (plain rendezvous leaves 12 partitions on 3 nodes as unevenly as
/// 8/3/1), and a partition still moves only when its node leaves, a new
/// node beats it, or a bound forces it (a few more than 1/N when a node is
/// added). Empty when there is no node.
pub fn topic_owners(topic_id: TopicId, partition_count: i32, nodes: &[i32]) -> Vec<i32> {
    if nodes.is_empty() || partition_count <= 0 {
        return Vec::new();
    }
    let cap = (partition_count as usize).div_ceil(nodes.len());
    let mut load = vec![0usize; nodes.len()];
    partitions(topic_id, partition_count)
        .map(|tp| {
            let hash = fnv1a(&partition_key(&tp));
            let (i, &node) = nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| load[*i] < cap)
                .max_by_key(|(_, node)| (score(hash, **node), **node))
                .expect("the bound leaves room for every partition");
            load[i] += 1;
            node
        })
        .collect()
}

/// The key a partition is placed by.
pub fn partition_key(tp: &TopicPartition) -> [u8; 20] {
    let mut key = [0u8; 20];
    key[..16].copy_from_slice(tp.topic_id.0.as_bytes());
    key[16..].copy_from_slice(&tp.partition.to_be_bytes());
    key
}

/// The key a consumer group's coordinator is placed by.
pub fn group_key(group_id: &str) -> Vec<u8> {
    let mut key = b"group:".to_vec();
    key.extend_from_slice(group_id.as_bytes());
    key
}

/// The partitions of a topic, in order.
pub fn partitions(topic_id: TopicId, count: i32) -> impl Iterator<Item = TopicPartition> {
    (0..count).map(move |p| TopicPartition::new(topic_id, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(nodes: &[i32], keys: &[TopicPartition]) -> Vec<i32> {
        keys.iter()
            .map(|tp| owner(&partition_key(tp), nodes).unwrap())
            .collect()
    }

    #[test]
    fn keys_spread_evenly_and_a_new_node_takes_about_its_share_from_everyone() {
        let keys: Vec<_> = partitions(TopicId::new_random(), 12_000).collect();
        let three = owners(&[1, 2, 3], &keys);
        for node in [1, 2, 3] {
            let n = three.iter().filter(|&&o| o == node).count();
            assert!((3_500..4_500).contains(&n), "node {node} got {n} of 12000");
        }
        let four = owners(&[1, 2, 3, 4], &keys);
        let moved: Vec<_> = three.iter().zip(&four).filter(|(a, b)| a != b).collect();
        // Only to the new node, and about a quarter of the keys.
        assert!(moved.iter().all(|(_, b)| **b == 4));
        assert!(
            (2_500..3_500).contains(&moved.len()),
            "{} moved",
            moved.len()
        );
        // Removing it again restores the old placement exactly.
        assert_eq!(owners(&[3, 1, 2], &keys), three);
    }

    #[test]
    fn topics_are_spread_evenly_and_a_new_node_moves_about_its_share() {
        let topics: Vec<TopicId> = (0..200).map(|_| TopicId::new_random()).collect();
        let place = |nodes: &[i32]| -> Vec<Vec<i32>> {
            topics.iter().map(|t| topic_owners(*t, 12, nodes)).collect()
        };
        let three = place(&[1, 2, 3]);
        for owners in &three {
            for node in [1, 2, 3] {
                assert_eq!(
                    owners.iter().filter(|&&o| o == node).count(),
                    4,
                    "{owners:?}"
                );
            }
        }
        let four = place(&[1, 2, 3, 4]);
        let mut moved = 0;
        for (a, b) in three.iter().zip(&four) {
            for node in [1, 2, 3, 4] {
                assert_eq!(b.iter().filter(|&&o| o == node).count(), 3, "{b:?}");
            }
            moved += a.iter().zip(b).filter(|(x, y)| x != y).count();
        }
        // A quarter must move (the newcomer's 3 of 12); the bounds add a few.
        let fraction = moved as f64 / (200.0 * 12.0);
        println!("3 -> 4 brokers: {moved} of 2400 partitions moved ({fraction:.3})");
        assert!((0.25..0.40).contains(&fraction), "moved {fraction:.3}");
        // The order of the node list does not matter.
        assert_eq!(place(&[3, 1, 2]), three);
    }

    #[test]
    fn no_nodes_no_owner_and_the_answer_is_stable() {
        assert_eq!(owner(b"k", &[]), None);
        assert_eq!(owner(&group_key("g"), &[5]), Some(5));
        // Pinned, so a change of the hash (which would move every partition
        // during a rolling upgrade) is noticed.
        let keys: Vec<_> = partitions(TopicId(metadata::Uuid::from_u128(7)), 12).collect();
        assert_eq!(owners(&[1, 2, 3, 4, 5], &keys), PINNED);
    }

    const PINNED: [i32; 12] = [4, 5, 5, 4, 5, 2, 5, 5, 2, 5, 1, 4];
}
