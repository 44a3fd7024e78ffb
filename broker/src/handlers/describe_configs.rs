//! DescribeConfigs: topic configs (explicit ones and the defaults behind
//! them, with sources and synonyms) and this broker's configs. What each
//! entry says is decided in `crate::configs`; this handler only finds the
//! resource.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::configs;
use crate::topics::invalid_topic_name;

/// Kafka's `ConfigResource.Type` ids.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// DescribeConfigs v3 added `documentation`.
const FIRST_VERSION_WITH_DOCUMENTATION: i16 = 3;

pub fn handle(
    broker: &Broker,
    version: i16,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let include_documentation =
        version >= FIRST_VERSION_WITH_DOCUMENTATION && request.include_documentation;
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.as_str().to_string();
            let keys: Option<Vec<String>> = resource
                .configuration_keys
                .map(|keys| keys.iter().map(|k| k.to_string()).collect());
            let keys = keys.as_deref();
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let refuse = |code: ResponseError, message: String| {
                result
                    .clone()
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message)))
            };
            match resource.resource_type {
                RESOURCE_TOPIC => {
                    if let Some(why) = invalid_topic_name(&name) {
                        return refuse(ResponseError::InvalidTopicException, why);
                    }
                    match broker.topics.by_name(&name) {
                        Some(view) => result.clone().with_configs(configs::describe_topic(
                            &view.topic.configs,
                            &broker.defaults,
                            keys,
                            request.include_synonyms,
                            include_documentation,
                        )),
                        None => refuse(
                            ResponseError::UnknownTopicOrPartition,
                            format!("The topic '{name}' does not exist."),
                        ),
                    }
                }
                RESOURCE_BROKER => {
                    if name.is_empty() {
                        // Cluster-wide dynamic defaults: there are none.
                        return result.clone();
                    }
                    if name != broker.node_id().to_string() {
                        return refuse(
                            ResponseError::InvalidRequest,
                            format!("Unexpected broker id, expected {} or empty string, but received {name}", broker.node_id()),
                        );
                    }
                    result.clone().with_configs(configs::describe_broker(
                        &broker.defaults,
                        keys,
                        request.include_synonyms,
                        include_documentation,
                    ))
                }
                other => refuse(
                    ResponseError::InvalidRequest,
                    format!("Unsupported resource type {other}"),
                ),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
