//! Topics on ScyllaDB: one small Scylla partition (`topics`, bucket 0) whose
//! rows are created, changed and deleted only by LWT, so names stay unique
//! and a delete or a grow never crosses another.
//!
//! A topic's partitions need no rows of their own to exist: a partition
//! with no leader row is at leader epoch 0 with no leader, and one with no
//! offsets row is empty. The first claim creates its leader row. So
//! creating a topic is one LWT, and a broker that dies half-way through it
//! leaves nothing half-made.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use futures_util::future::try_join;

use super::cql;
use super::exec::{Lwt, binds};
use super::store::{BUCKET, ScyllaStore};
use crate::model::{BrokerSession, PartitionState, Topic, TopicId, TopicPartition, Uuid};
use crate::store::{Error, Result, TopicStore};

type TopicColumns = (String, Uuid, i32, Option<BTreeMap<String, String>>);

fn topic_of((name, id, partition_count, configs): TopicColumns) -> Topic {
    Topic {
        name,
        topic_id: TopicId(id),
        partition_count,
        configs: configs.unwrap_or_default(),
    }
}

/// A partition's leader row: (partition, leader epoch, leader node, leader incarnation).
pub(super) type LeaderColumns = (i32, Option<i32>, Option<i32>, Option<i64>);

pub(super) fn leader_of(node: Option<i32>, incarnation: Option<i64>) -> Option<BrokerSession> {
    Some(BrokerSession {
        node_id: node?,
        incarnation: incarnation?,
    })
}

impl ScyllaStore {
    pub(super) async fn read_topics(&self) -> Result<Vec<Topic>> {
        let mut topics: Vec<Topic> = self
            .cql()
            .read::<TopicColumns>(&cql::TOPICS_READ, binds![BUCKET])
            .await?
            .into_iter()
            .map(topic_of)
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    async fn topic_by_id(&self, topic_id: TopicId) -> Result<Topic> {
        self.read_topics()
            .await?
            .into_iter()
            .find(|t| t.topic_id == topic_id)
            .ok_or_else(|| Error::UnknownTopic(format!("topic_id={topic_id}")))
    }

    /// The topic named `name`, read at SERIAL (after an uncertain LWT on it).
    async fn topic_serial(&self, name: &str) -> Result<Option<Topic>> {
        Ok(self
            .cql()
            .read_one::<TopicColumns>(&cql::TOPIC_READ_SERIAL, binds![BUCKET, name])
            .await?
            .map(topic_of))
    }

    /// Leader rows of a topic, by partition.
    pub(super) async fn leader_rows(
        &self,
        topic_id: TopicId,
    ) -> Result<HashMap<i32, LeaderColumns>> {
        Ok(self
            .cql()
            .read::<LeaderColumns>(&cql::LEADERS_READ, binds![topic_id])
            .await?
            .into_iter()
            .map(|row| (row.0, row))
            .collect())
    }

    /// (log start, next offset) of a topic's partitions, by partition.
    pub(super) async fn offset_rows(&self, topic_id: TopicId) -> Result<HashMap<i32, (i64, i64)>> {
        let rows: Vec<(i32, Option<i64>, Option<i64>)> = self
            .cql()
            .read(&cql::OFFSETS_READ, binds![topic_id])
            .await?;
        Ok(rows
            .into_iter()
            .map(|(p, start, next)| (p, (start.unwrap_or(0), next.unwrap_or(0))))
            .collect())
    }

    /// Drops what a deleted topic left: leader rows, the index, segment
    /// summaries, producer states and offsets. Best effort: what a failure
    /// leaves is unreachable (topic ids are never reused).
    async fn drop_topic_rows(&self, topic: &Topic) -> Result<()> {
        let id = topic.topic_id;
        for partition in 0..topic.partition_count {
            let tp = TopicPartition::new(id, partition);
            for segment in self.segments(tp).await? {
                self.cql()
                    .write(
                        &cql::INDEX_ENTRIES_DROP_SEGMENT,
                        binds![id, partition, segment.segment],
                    )
                    .await?;
            }
            self.cql()
                .write(&cql::INDEX_SEGMENTS_DROP, binds![id, partition])
                .await?;
            self.cql()
                .write(&cql::PRODUCER_STATES_DROP, binds![id, partition])
                .await?;
            self.cql()
                .lwt(&cql::LEADER_DELETE, binds![id, partition])
                .await?;
        }
        self.cql().write(&cql::OFFSETS_DROP, binds![id]).await
    }
}

#[async_trait]
impl TopicStore for ScyllaStore {
    async fn create_topic(
        &self,
        name: &str,
        topic_id: TopicId,
        partition_count: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Topic> {
        crate::commit_rules::check_partition_count(name, partition_count)?;
        let answer = self
            .cql()
            .lwt(
                &cql::TOPIC_CREATE,
                binds![BUCKET, name, topic_id, partition_count, &configs],
            )
            .await?;
        let created = match answer {
            Lwt::Applied => true,
            Lwt::NotApplied => false,
            Lwt::Uncertain => match self.topic_serial(name).await? {
                Some(t) if t.topic_id == topic_id => true,
                Some(_) => false,
                None => {
                    return Err(Error::Unavailable(format!(
                        "create topic name={name} did not apply; retry"
                    )));
                }
            },
        };
        if !created {
            return Err(Error::TopicAlreadyExists(name.to_owned()));
        }
        self.bump_cluster_version().await;
        Ok(Topic {
            name: name.to_owned(),
            topic_id,
            partition_count,
            configs,
        })
    }

    async fn delete_topic(&self, topic_id: TopicId) -> Result<Topic> {
        let topic = self.topic_by_id(topic_id).await?;
        let answer = self
            .cql()
            .lwt(
                &cql::TOPIC_DELETE,
                binds![BUCKET, topic.name.as_str(), topic_id],
            )
            .await?;
        match answer {
            Lwt::Applied => {}
            Lwt::NotApplied => return Err(Error::UnknownTopic(format!("topic_id={topic_id}"))),
            Lwt::Uncertain => {
                if self
                    .topic_serial(&topic.name)
                    .await?
                    .is_some_and(|t| t.topic_id == topic_id)
                {
                    return Err(Error::Unavailable(format!(
                        "delete topic_id={topic_id} did not apply; retry"
                    )));
                }
            }
        }
        self.bump_cluster_version().await;
        if let Err(e) = self.drop_topic_rows(&topic).await {
            tracing::warn!(topic = topic.name, %topic_id, error = %e, "a deleted topic's rows were not all dropped; they are unreachable");
        }
        Ok(topic)
    }

    async fn topics(&self) -> Result<Vec<Topic>> {
        self.read_topics().await
    }

    async fn set_topic_configs(
        &self,
        topic_id: TopicId,
        configs: BTreeMap<String, String>,
    ) -> Result<()> {
        let topic = self.topic_by_id(topic_id).await?;
        let answer = self
            .cql()
            .lwt(
                &cql::TOPIC_SET_CONFIGS,
                binds![&configs, BUCKET, topic.name.as_str(), topic_id],
            )
            .await?;
        match answer {
            Lwt::Applied => {}
            Lwt::NotApplied => return Err(Error::UnknownTopic(format!("topic_id={topic_id}"))),
            Lwt::Uncertain => match self.topic_serial(&topic.name).await? {
                Some(t) if t.topic_id == topic_id && t.configs == configs => {}
                Some(t) if t.topic_id == topic_id => return Err(Error::Timeout),
                _ => return Err(Error::UnknownTopic(format!("topic_id={topic_id}"))),
            },
        }
        self.bump_cluster_version().await;
        Ok(())
    }

    async fn create_partitions(&self, topic_id: TopicId, partition_count: i32) -> Result<()> {
        let mut topic = self.topic_by_id(topic_id).await?;
        for _ in 0..3 {
            let current = topic.partition_count;
            if partition_count <= current {
                return Err(Error::InvalidPartitions(format!(
                    "partition_count={partition_count} must exceed current={current} topic_id={topic_id}"
                )));
            }
            let answer = self
                .cql()
                .lwt(
                    &cql::TOPIC_GROW,
                    binds![
                        partition_count,
                        BUCKET,
                        topic.name.as_str(),
                        topic_id,
                        current
                    ],
                )
                .await?;
            let now = match answer {
                Lwt::Applied => {
                    self.bump_cluster_version().await;
                    return Ok(());
                }
                Lwt::NotApplied | Lwt::Uncertain => self.topic_serial(&topic.name).await?,
            };
            match now {
                Some(t) if t.topic_id == topic_id => {
                    if answer == Lwt::Uncertain && t.partition_count == partition_count {
                        self.bump_cluster_version().await;
                        return Ok(());
                    }
                    topic = t;
                }
                _ => return Err(Error::UnknownTopic(format!("topic_id={topic_id}"))),
            }
        }
        Err(Error::Unavailable(format!(
            "create partitions topic_id={topic_id}: the topic kept changing; retry"
        )))
    }

    async fn partition_states(&self, topic_ids: &[TopicId]) -> Result<Vec<PartitionState>> {
        let topics = self.topic_map().await?;
        let mut states = Vec::new();
        for &topic_id in topic_ids {
            let Some((_, partition_count)) = topics.get(&topic_id) else {
                continue;
            };
            let (leaders, offsets) =
                try_join(self.leader_rows(topic_id), self.offset_rows(topic_id)).await?;
            for partition in 0..*partition_count {
                let (epoch, leader) = leaders
                    .get(&partition)
                    .map(|&(_, epoch, node, inc)| (epoch.unwrap_or(0), leader_of(node, inc)))
                    .unwrap_or((0, None));
                let (log_start_offset, next_offset) =
                    offsets.get(&partition).copied().unwrap_or((0, 0));
                states.push(PartitionState {
                    topic_partition: TopicPartition::new(topic_id, partition),
                    leader_epoch: epoch,
                    leader,
                    log_start_offset,
                    next_offset,
                });
            }
        }
        Ok(states)
    }
}
