//! `lightstream`: a Kafka-compatible broker whose log lives in object
//! storage. With no arguments it serves 127.0.0.1:9092 and keeps its data
//! under `./lightstream-data` (objects and an embedded SQLite metadata file).
//!
//! This file is the binary's edge: settings, logging, signals, the two
//! listeners. Everything else is in the modules it starts.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use broker::config::{Flags, Loaded, Settings};
use broker::server;

fn main() -> ExitCode {
    let flags = Flags::parse_args();
    let loaded = match Settings::load(&flags) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("lightstream: {e}");
            return ExitCode::FAILURE;
        }
    };
    if flags.check_config {
        return check_config(&loaded);
    }
    if let Err(e) = init_logging(&loaded.settings) {
        eprintln!("lightstream: {e:#}");
        return ExitCode::FAILURE;
    }
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lightstream")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(loaded)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--check-config`: the effective settings on stdout (secrets masked),
/// warnings on stderr.
fn check_config(loaded: &Loaded) -> ExitCode {
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    match &loaded.file {
        Some(file) => println!("# settings file: {}", file.display()),
        None => println!("# settings file: none (defaults, environment and flags)"),
    }
    print!("{}", loaded.settings.masked_toml());
    ExitCode::SUCCESS
}

async fn run(loaded: Loaded) -> anyhow::Result<()> {
    let settings = loaded.settings;
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("listen: cannot bind {}", settings.listen))?;
    let admin_listener = tokio::net::TcpListener::bind(&settings.admin_listen)
        .await
        .with_context(|| format!("admin_listen: cannot bind {}", settings.admin_listen))?;
    let bound = listener.local_addr().context("read the bound address")?;
    let admin_bound = admin_listener
        .local_addr()
        .context("read the admin listener's address")?;
    let data_dir = std::path::absolute(&settings.data_dir).unwrap_or(settings.data_dir.clone());
    let broker = Arc::new(
        broker::broker::Broker::open(settings, bound.port())
            .await
            .context("open the broker's storage")?,
    );
    let admin_stop = CancellationToken::new();
    let admin = tokio::spawn(broker::admin::serve(
        broker.clone(),
        admin_listener,
        admin_stop.clone(),
    ));
    broker.spawn_cluster_loop();
    tracing::info!(
        listen = %bound,
        admin = %admin_bound,
        advertised = format!("{}:{}", broker.advertised_host, broker.advertised_port),
        settings_file = %loaded.file.as_ref().map_or("none".to_string(), |f| f.display().to_string()),
        data_dir = %data_dir.display(),
        objects = if broker.settings.storage_url.is_empty() { "data_dir/objects" } else { broker.settings.storage_url.as_str() },
        metadata = if broker.settings.metadata_url.is_empty() { "data_dir/metadata.sqlite" } else { "scylla" },
        cluster_id = broker.cluster_id,
        node_id = broker.node_id(),
        "lightstream is serving"
    );
    if !bound.ip().is_loopback() {
        tracing::warn!(
            listen = %bound,
            "the Kafka listener is reachable beyond this machine and Lightstream has no \
             authentication yet: anyone who can reach it can read and write every topic"
        );
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let stopping = {
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            // Readiness first, so Kubernetes stops sending clients here
            // while partitions are handed over.
            broker.health.stopping();
            exit_if_shutdown_overruns(Duration::from_millis(broker.settings.shutdown_timeout_ms));
        }
    };
    tokio::spawn(stopping);
    server::run(broker, listener, shutdown).await;
    admin_stop.cancel();
    // A scraper's open connection must not hold the exit up.
    let _ = tokio::time::timeout(Duration::from_secs(1), admin).await;
    Ok(())
}

/// The whole shutdown has `budget` (`shutdown_timeout_ms`, below Kubernetes'
/// grace period): past it the process exits anyway. Nothing acknowledged is
/// lost by that; produces still waiting are answered by no one and retried
/// by their clients elsewhere.
fn exit_if_shutdown_overruns(budget: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(budget);
        tracing::error!(
            budget_ms = budget.as_millis() as u64,
            "shutdown did not finish within shutdown_timeout_ms; exiting now"
        );
        std::process::exit(1);
    });
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C (SIGINT). SIGHUP, which some
/// process managers send, is logged and ignored: settings are read at start.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(term), Ok(hup)) => (term, hup),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM and SIGHUP");
            return;
        }
    };
    loop {
        // Cancel-safe: all three are signal streams; a missed poll loses nothing.
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: shutting down");
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupt: shutting down");
                break;
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP ignored: settings are read only at start; restart the broker to change them");
            }
        }
    }
    shutdown.cancel();
}

fn init_logging(settings: &Settings) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log)
        .with_context(|| format!("invalid setting log: {:?}", settings.log))?;
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
