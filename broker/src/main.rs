//! `lightstream`: a Kafka-compatible broker whose log lives in object
//! storage. With no arguments it serves 127.0.0.1:9092 and keeps its data
//! under `./lightstream-data` (objects and an embedded SQLite metadata file).
//!
//! This file is the binary's edge: settings, logging, signals. Everything
//! else is in the modules it starts.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use broker::config::{Flags, Settings};
use broker::server;

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let settings = Settings::load(&flags)?;
    init_logging(&settings)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lightstream")
        .build()
        .context("start the async runtime")?
        .block_on(run(settings))
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("bind {}", settings.listen))?;
    let bound = listener.local_addr().context("read the bound address")?;
    let broker = Arc::new(
        broker::broker::Broker::open(settings, bound.port())
            .await
            .context("open the broker's storage")?,
    );
    broker.spawn_cluster_loop();
    tracing::info!(
        listen = %bound,
        advertised = format!("{}:{}", broker.advertised_host, broker.advertised_port),
        data_dir = %broker.settings.data_dir.display(),
        cluster_id = broker.cluster_id,
        node_id = broker.node_id(),
        "lightstream is serving"
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    server::run(broker, listener, shutdown).await;
    Ok(())
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C (SIGINT).
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    // Cancel-safe: both are signal streams; a missed poll loses nothing.
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
    shutdown.cancel();
}

fn init_logging(settings: &Settings) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log)
        .with_context(|| format!("log filter {:?}", settings.log))?;
    // Colours only on a terminal: log files and CI output stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if settings.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}
