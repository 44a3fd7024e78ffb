//! The admin HTTP listener (`admin_listen`): `/metrics` for Prometheus,
//! `/healthz` and `/readyz` for Kubernetes' probes. It serves until the
//! broker has finished shutting down, so `/readyz` answers 503 ("shutting
//! down") while partitions are handed over.

mod health;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use health::Health;

use crate::broker::Broker;
use crate::metrics::BrokerState;

/// OpenMetrics text, which Prometheus scrapes (and prefers when offered).
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves the admin endpoints on `listener` until `stop` is cancelled.
pub async fn serve(broker: Arc<Broker>, listener: TcpListener, stop: CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(broker);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "admin listener failed");
    }
}

async fn metrics(State(broker): State<Arc<Broker>>) -> Response {
    let text = broker.metrics.encode(BrokerState(broker.clone()));
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response()
}

async fn healthz(State(broker): State<Arc<Broker>>) -> Response {
    // The loop turns every cluster_watch_interval_ms; a store call inside
    // it is bounded by the metadata timeout. Several missed turns, or a
    // session timeout's worth, mean it is stuck.
    let settings = &broker.settings;
    let stall = Duration::from_millis(
        (settings.cluster_watch_interval_ms * 10)
            .max(settings.broker_session_timeout_ms)
            .max(30_000),
    );
    answer(broker.health.liveness(stall))
}

async fn readyz(State(broker): State<Arc<Broker>>) -> Response {
    answer(broker.health.readiness(&broker).await)
}

fn answer(outcome: Result<(), String>) -> Response {
    match outcome {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}
