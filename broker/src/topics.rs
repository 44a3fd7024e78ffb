//! The broker's view of the topics: an in-memory copy of the metadata store's
//! topic rows, looked up by name and by id on every request, refreshed after
//! every change this broker makes. Also Kafka's rules for topic names.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use metadata::{MetadataStore, Topic, TopicId};

use crate::configs::{BrokerDefaults, TopicSettings};

/// Kafka's longest legal topic name (`Topic.MAX_NAME_LENGTH`).
pub const MAX_TOPIC_NAME_LENGTH: usize = 249;

/// A topic with its effective settings (explicit configs over broker defaults).
#[derive(Clone, Debug)]
pub struct TopicView {
    pub topic: Topic,
    pub settings: TopicSettings,
}

#[derive(Default)]
struct Maps {
    by_name: BTreeMap<String, Arc<TopicView>>,
    by_id: HashMap<TopicId, Arc<TopicView>>,
}

pub struct TopicCache {
    maps: RwLock<Maps>,
}

impl TopicCache {
    pub fn new() -> Self {
        TopicCache {
            maps: RwLock::new(Maps::default()),
        }
    }

    /// Reloads every topic from the store.
    pub async fn refresh(
        &self,
        store: &dyn MetadataStore,
        defaults: &BrokerDefaults,
    ) -> metadata::Result<()> {
        let topics = store.topics().await?;
        let mut maps = Maps::default();
        for topic in topics {
            let settings = TopicSettings::from_configs(&topic.configs, defaults)
                .unwrap_or_else(|e| {
                    // Configs are validated before they are stored, so this
                    // means the store was edited by hand: keep serving.
                    tracing::error!(topic = topic.name, error = %e, "stored topic configs are invalid; using defaults");
                    TopicSettings::from_configs(&BTreeMap::new(), defaults)
                        .expect("broker defaults are validated at startup")
                });
            let view = Arc::new(TopicView { settings, topic });
            maps.by_id.insert(view.topic.topic_id, view.clone());
            maps.by_name.insert(view.topic.name.clone(), view);
        }
        *self.maps.write().expect("topic cache lock") = maps;
        Ok(())
    }

    pub fn by_name(&self, name: &str) -> Option<Arc<TopicView>> {
        self.maps
            .read()
            .expect("topic cache lock")
            .by_name
            .get(name)
            .cloned()
    }

    pub fn by_id(&self, id: TopicId) -> Option<Arc<TopicView>> {
        self.maps
            .read()
            .expect("topic cache lock")
            .by_id
            .get(&id)
            .cloned()
    }

    /// Every topic, by name.
    pub fn all(&self) -> Vec<Arc<TopicView>> {
        self.maps
            .read()
            .expect("topic cache lock")
            .by_name
            .values()
            .cloned()
            .collect()
    }

    /// The existing topic whose name collides with `name` once '.' and '_'
    /// are treated alike (Kafka refuses such pairs: metric names would clash).
    pub fn colliding(&self, name: &str) -> Option<String> {
        let key = name.replace('.', "_");
        self.maps
            .read()
            .expect("topic cache lock")
            .by_name
            .keys()
            .find(|n| n.as_str() != name && n.replace('.', "_") == key)
            .cloned()
    }
}

impl Default for TopicCache {
    fn default() -> Self {
        Self::new()
    }
}

/// Kafka's `Topic.validate`: why `name` is not a legal topic name, if it is not.
pub fn invalid_topic_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("Topic name is illegal, it can't be empty".to_string());
    }
    if name == "." || name == ".." {
        return Some("Topic name cannot be \".\" or \"..\"".to_string());
    }
    if name.len() > MAX_TOPIC_NAME_LENGTH {
        return Some(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LENGTH} characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Some(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_names_pass() {
        for name in ["a", "orders.v1", "A-b_c.9", &"x".repeat(249)] {
            assert_eq!(invalid_topic_name(name), None, "{name}");
        }
    }

    #[test]
    fn illegal_names_are_explained() {
        for name in [
            "",
            ".",
            "..",
            "bad/name",
            "spaces here",
            "ü",
            &"x".repeat(250),
        ] {
            assert!(invalid_topic_name(name).is_some(), "{name}");
        }
    }
}
