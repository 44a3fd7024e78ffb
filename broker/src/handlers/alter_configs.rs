//! AlterConfigs (replace a topic's whole config set) and
//! IncrementalAlterConfigs (SET / DELETE / APPEND / SUBTRACT per key). The
//! merge rules and validation live in `crate::configs`; this file finds the
//! topic, stores the result, and answers each resource on its own.
//! Broker configs are static here: altering them is refused.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, alter_configs_response, incremental_alter_configs_response,
};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::broker::Broker;
use crate::configs::{self, ConfigError};
use crate::errors;

/// The outcome of altering one resource: `Ok(true)` when new configs were stored.
type Outcome = Result<bool, (ResponseError, String)>;

pub async fn handle_alter(broker: &Broker, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let _guard = broker.admin_lock.lock().await;
    let mut responses = Vec::with_capacity(request.resources.len());
    let mut stored_any = false;
    for resource in request.resources {
        let changes: Vec<(String, Option<String>)> = resource
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let outcome = alter_topic(
            broker,
            resource.resource_type,
            resource.resource_name.as_str(),
            request.validate_only,
            |_current| configs::apply_alter_configs(changes),
        )
        .await;
        stored_any |= matches!(outcome, Ok(true));
        let (code, message) = split(outcome);
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    if stored_any {
        refresh(broker).await;
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn handle_incremental(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let _guard = broker.admin_lock.lock().await;
    let mut responses = Vec::with_capacity(request.resources.len());
    let mut stored_any = false;
    for resource in request.resources {
        let ops: Vec<(String, i8, Option<String>)> = resource
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        let outcome = alter_topic(
            broker,
            resource.resource_type,
            resource.resource_name.as_str(),
            request.validate_only,
            |current| configs::apply_incremental_alter(current, &ops),
        )
        .await;
        stored_any |= matches!(outcome, Ok(true));
        let (code, message) = split(outcome);
        responses.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    if stored_any {
        refresh(broker).await;
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// Finds the topic, computes its new config set with `change`, and stores it
/// unless `validate_only`.
async fn alter_topic(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ConfigError>,
) -> Outcome {
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return Err((
                ResponseError::InvalidRequest,
                "Lightstream broker configs are static: set them in lightstream.toml, the environment or flags".to_string(),
            ));
        }
        other => {
            return Err((
                ResponseError::InvalidRequest,
                format!("Unsupported resource type {other}"),
            ));
        }
    }
    let view = broker.topics.by_name(name).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("The topic '{name}' does not exist."),
        )
    })?;
    let next =
        change(&view.topic.configs).map_err(|e| (errors::config_error(&e), e.to_string()))?;
    if validate_only {
        return Ok(false);
    }
    broker
        .metadata
        .set_topic_configs(view.topic.topic_id, next)
        .await
        .map_err(|e| (errors::metadata_error(&e), e.to_string()))?;
    tracing::info!(topic = name, "altered topic configs");
    Ok(true)
}

fn split(outcome: Outcome) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(_) => (0, None),
        Err((code, message)) => (code.code(), Some(StrBytes::from_string(message))),
    }
}

async fn refresh(broker: &Broker) {
    if let Err(e) = broker.refresh_topics().await {
        tracing::error!(error = %e, "could not reload topics after altering configs");
    }
}
