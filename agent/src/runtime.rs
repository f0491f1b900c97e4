//! The agent's runtime: builds a running pipeline (a [`Generation`]) from an [`AgentConfig`],
//! watches the config file and swaps generations on change, and shuts down on SIGTERM.
//!
//! Reload keeps everything that must outlive a config: the disk buffers (reopened from the same
//! directories, so buffered data is delivered by the new sinks), the crash counters (so
//! `vigil_crashes_total` stays monotonic), the latest scrape and the admin endpoint. An invalid
//! new config is logged and counted, and the running generation stays in force.
//!
//! Shutdown order: sources stop first and flush what they hold into the buffers (durable from
//! then on); sinks keep draining until their buffers are empty or the deadline passes; what is
//! left stays on disk for the next start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use vigil_crds::agent_config::{AgentConfigError, POD_LOGS_OFF_ENV};
use vigil_crds::AgentConfig;

use crate::admin::{self, AdminState};
use crate::buffer::{self, BufferError, BufferWriter};
use crate::identity::Identity;
use crate::processors::crash::{AppPackages, CrashDetector};
use crate::processors::redact::{RedactError, Redactor};
use crate::router::{Route, Router};
use crate::sinks::driver::{self, DriverSettings};
use crate::sinks::retry::Backoff;
use crate::sinks::{Exporter, SinkConfigError};
use crate::sources::otlp::{self, OtlpReceiver};
use crate::sources::scrape::LatestScrape;
use crate::sources::{logs, scrape};
use crate::telemetry::{emit, InternalEvent};

/// Why the agent could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot read config file {path}")]
    ReadConfig {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}")]
    Config {
        path: String,
        #[source]
        source: AgentConfigError,
    },
    #[error("config: {0}")]
    Redaction(#[from] RedactError),
    #[error("config: {0}")]
    Sinks(#[from] SinkConfigError),
    #[error("config: listen.{field}: {value:?} is not an address such as 127.0.0.1:4317")]
    Listen { field: &'static str, value: String },
    #[error("listen.{field}: cannot listen on {addr}")]
    Bind {
        field: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the buffer of {sink}")]
    Buffer {
        sink: String,
        #[source]
        source: BufferError,
    },
    #[error("admin endpoint {addr}")]
    Admin {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Process-level settings (from the command line).
#[derive(Clone, Debug)]
pub struct Settings {
    /// The config file; polled for changes.
    pub config_path: PathBuf,
    /// How often the config file is checked.
    pub reload_interval: Duration,
    /// How long shutdown may take to drain the buffers.
    pub shutdown_deadline: Duration,
}

/// Reads and validates the config file.
pub fn load_config(path: &Path) -> Result<(AgentConfig, [u8; 32]), RuntimeError> {
    let text = std::fs::read_to_string(path).map_err(|source| RuntimeError::ReadConfig {
        path: path.display().to_string(),
        source,
    })?;
    let mut config = AgentConfig::from_yaml(&text).map_err(|source| RuntimeError::Config {
        path: path.display().to_string(),
        source,
    })?;
    if std::env::var_os(POD_LOGS_OFF_ENV).is_some() {
        without_pod_logs(&mut config);
    }
    Ok((config, Sha256::digest(text.as_bytes()).into()))
}

/// Stops reading the pod's log files (its namespace forbids the hostPath mount they come
/// from); extra file globs are still read.
pub fn without_pod_logs(config: &mut AgentConfig) {
    if let Some(logs) = config.logs.as_mut() {
        logs.pod_log_dir = None;
    }
}

fn listen(field: &'static str, value: &str) -> Result<SocketAddr, RuntimeError> {
    value.parse().map_err(|_| RuntimeError::Listen {
        field,
        value: value.to_owned(),
    })
}

/// Binds a listener before anything reports ready, so `/readyz` means "accepting".
async fn bind(field: &'static str, value: &str) -> Result<TcpListener, RuntimeError> {
    let addr = listen(field, value)?;
    TcpListener::bind(addr)
        .await
        .map_err(|source| RuntimeError::Bind {
            field,
            addr,
            source,
        })
}

/// State that outlives config reloads.
#[derive(Clone, Debug)]
struct Shared {
    identity: Identity,
    crashes: Arc<CrashDetector>,
    latest_scrape: Arc<LatestScrape>,
    ready: Arc<AtomicBool>,
}

/// One running pipeline built from one config.
struct Generation {
    /// Stops the sources.
    sources_stop: watch::Sender<bool>,
    sources: JoinSet<()>,
    /// Stops the sinks.
    sinks_stop: watch::Sender<bool>,
    sinks: JoinSet<()>,
    writers: Vec<BufferWriter>,
}

impl Generation {
    async fn start(config: &AgentConfig, shared: &Shared) -> Result<Generation, RuntimeError> {
        let redactor = Arc::new(Redactor::new(&config.redaction)?);
        shared
            .crashes
            .set_app_packages(AppPackages::new(&config.crashes.app_packages));
        let exporters = Exporter::from_config(&config.exporters)?;
        let (sinks_stop, sinks_rx) = watch::channel(false);
        let (sources_stop, sources_rx) = watch::channel(false);
        let mut sink_tasks = JoinSet::new();
        let mut routes = Vec::new();
        let mut writers = Vec::new();
        for Exporter {
            name,
            signals,
            sink,
        } in exporters
        {
            let dir = Path::new(&config.buffer.path).join(&name);
            let (writer, reader) = buffer::open(
                &dir,
                config.buffer.max_bytes,
                config.buffer.when_full,
                &name,
            )
            .map_err(|source| RuntimeError::Buffer {
                sink: name.clone(),
                source,
            })?;
            routes.push(Route {
                sink: name.clone(),
                signals,
                writer: writer.clone(),
            });
            writers.push(writer);
            let stop = sinks_rx.clone();
            let settings = DriverSettings {
                max_in_flight: config.max_in_flight() as usize,
                ..DriverSettings::new(Backoff::default())
            };
            sink_tasks.spawn(async move {
                driver::run_as(&name, sink, reader, settings, stop).await;
            });
        }
        let router = Router::new(routes);
        let mut sources = JoinSet::new();
        if config.traces.enabled {
            let receiver = OtlpReceiver {
                identity: shared.identity.clone(),
                redactor: redactor.clone(),
                router: router.clone(),
                sampling_ratio: config.traces.sampling_ratio,
                budget: otlp::RequestBudget::new(
                    config
                        .traces
                        .max_request_bytes_in_flight
                        .map_or(otlp::DEFAULT_REQUEST_BYTES_IN_FLIGHT, |bytes| {
                            usize::try_from(bytes).unwrap_or(usize::MAX)
                        }),
                ),
                limits: otlp::Limits::default(),
            };
            let grpc = bind("otlpGrpc", &config.listen.otlp_grpc).await?;
            let http = bind("otlpHttp", &config.listen.otlp_http).await?;
            let (r, stop) = (receiver.clone(), sources_rx.clone());
            sources.spawn(async move {
                if let Err(e) = otlp::serve_grpc_on(grpc, r, stop).await {
                    report_error("otlp_grpc", "Serve", &e);
                }
            });
            let stop = sources_rx.clone();
            sources.spawn(async move {
                if let Err(e) = otlp::serve_http_on(http, receiver, stop).await {
                    report_error("otlp_http", "Serve", &e);
                }
            });
        }
        if let Some(scrape_config) = config.scrape.clone() {
            sources.spawn(scrape::run(
                scrape_config,
                shared.identity.clone(),
                shared.crashes.clone(),
                shared.latest_scrape.clone(),
                router.clone(),
                sources_rx.clone(),
            ));
        } else {
            // No scrape to carry them: the crash series travel on their own.
            sources.spawn(scrape::run_crash_series(
                shared.identity.clone(),
                shared.crashes.clone(),
                router.clone(),
                sources_rx.clone(),
            ));
        }
        if let Some(logs_config) = config.logs.clone() {
            let pipeline = logs::LogPipeline {
                identity: shared.identity.clone(),
                crashes: shared.crashes.clone(),
                redactor,
                router,
            };
            let stop = sources_rx.clone();
            sources.spawn(async move {
                if let Err(e) = logs::run(logs_config, pipeline, stop).await {
                    report_error("logs", "LogSource", &e);
                }
            });
        }
        Ok(Generation {
            sources_stop,
            sources,
            sinks_stop,
            sinks: sink_tasks,
            writers,
        })
    }

    /// Stops sources (they flush into the buffers), lets sinks drain until `deadline` when
    /// `drain` (shutdown; a reload hands the buffers to the next generation instead), then
    /// stops them.
    async fn stop(mut self, deadline: Instant, drain: bool) {
        let _ = self.sources_stop.send(true);
        while self.sources.join_next().await.is_some() {}
        while drain
            && Instant::now() < deadline
            && self.writers.iter().any(|w| w.buffered_bytes() > 0)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.sinks_stop.send(true);
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        if tokio::time::timeout(left, async {
            while self.sinks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            self.sinks.abort_all();
        }
    }
}

fn report_error(component: &str, error: &str, e: &dyn std::error::Error) {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    emit(InternalEvent::Error {
        component,
        error,
        message: &message,
    });
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(settings: Settings) -> Result<(), RuntimeError> {
    let (mut config, mut hash) = load_config(&settings.config_path)?;
    if let Ok(reason) = std::env::var(POD_LOGS_OFF_ENV) {
        tracing::warn!(reason = %reason, "pod log files are not read: {reason}");
    }
    let identity = Identity::from_env(&config.app, |k| std::env::var(k).ok());
    let user_field = config.logs.as_ref().and_then(|l| l.user_field.clone());
    let shared = Shared {
        crashes: Arc::new(CrashDetector::new(&identity, user_field)),
        identity,
        latest_scrape: Arc::new(LatestScrape::default()),
        ready: Arc::new(AtomicBool::new(false)),
    };
    let admin_addr = listen("admin", &config.listen.admin)?;
    let admin_listener = bind("admin", &config.listen.admin).await?;
    let (admin_stop, admin_rx) = watch::channel(false);
    let admin_state = AdminState {
        ready: shared.ready.clone(),
        crashes: shared.crashes.clone(),
        latest_scrape: shared.latest_scrape.clone(),
    };
    let admin = tokio::spawn(admin::serve_on(admin_listener, admin_state, admin_rx));

    let mut generation = Generation::start(&config, &shared).await?;
    shared.ready.store(true, Ordering::SeqCst);
    tracing::info!(
        namespace = %config.app.namespace,
        app = %config.app.name,
        pod = %shared.identity.pod,
        version = %shared.identity.version,
        "vigil-agent started"
    );

    let mut terminate = signal(tokio::signal::unix::SignalKind::terminate());
    let mut interrupt = signal(tokio::signal::unix::SignalKind::interrupt());
    let mut tick = tokio::time::interval(settings.reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = recv(&mut terminate) => break,
            _ = recv(&mut interrupt) => break,
            _ = tick.tick() => {
                // The usual case, an unchanged file, is not parsed again.
                let unchanged = std::fs::read(&settings.config_path)
                    .is_ok_and(|text| <[u8; 32]>::from(Sha256::digest(&text)) == hash);
                if unchanged {
                    continue;
                }
                match load_config(&settings.config_path) {
                    Ok((_, new_hash)) if new_hash == hash => {}
                    Ok((new_config, new_hash)) => {
                        hash = new_hash;
                        let (next, accepted) =
                            reload(generation, &new_config, &config, &shared, &settings).await;
                        generation = next;
                        if accepted {
                            config = new_config;
                        }
                    }
                    Err(e) => {
                        // Remember the hash of the rejected text so it is reported once.
                        if let Ok(text) = std::fs::read(&settings.config_path) {
                            let rejected: [u8; 32] = Sha256::digest(&text).into();
                            if rejected == hash {
                                continue;
                            }
                            hash = rejected;
                        }
                        let message = format!("{e}: {}", source_chain(&e));
                        emit(InternalEvent::ConfigReload { accepted: false, message: &message });
                    }
                }
            }
        }
    }
    tracing::info!("vigil-agent stopping: flushing buffers");
    shared.ready.store(false, Ordering::SeqCst);
    generation
        .stop(Instant::now() + settings.shutdown_deadline, true)
        .await;
    let _ = admin_stop.send(true);
    if let Ok(Err(source)) = admin.await {
        return Err(RuntimeError::Admin {
            addr: admin_addr,
            source,
        });
    }
    tracing::info!("vigil-agent stopped");
    Ok(())
}

async fn reload(
    old: Generation,
    new_config: &AgentConfig,
    running: &AgentConfig,
    shared: &Shared,
    settings: &Settings,
) -> (Generation, bool) {
    // Validate what can be validated before stopping anything.
    if let Err(e) = Redactor::new(&new_config.redaction) {
        emit(InternalEvent::ConfigReload {
            accepted: false,
            message: &e.to_string(),
        });
        return (old, false);
    }
    if let Err(e) = Exporter::from_config(&new_config.exporters) {
        emit(InternalEvent::ConfigReload {
            accepted: false,
            message: &e.to_string(),
        });
        return (old, false);
    }
    if new_config.listen.admin != running.listen.admin || new_config.app != running.app {
        tracing::warn!("listen.admin and app changes take effect when the agent restarts");
    }
    old.stop(Instant::now() + settings.shutdown_deadline, false)
        .await;
    match Generation::start(new_config, shared).await {
        Ok(new) => {
            emit(InternalEvent::ConfigReload {
                accepted: true,
                message: "new configuration in force",
            });
            (new, true)
        }
        Err(e) => {
            let message = format!(
                "{e}: {}; keeping the previous configuration",
                source_chain(&e)
            );
            emit(InternalEvent::ConfigReload {
                accepted: false,
                message: &message,
            });
            let restored = match Generation::start(running, shared).await {
                Ok(g) => g,
                Err(e) => {
                    report_error("runtime", "Restart", &e);
                    // Nothing can run; an empty generation keeps the process (and its admin
                    // endpoint, reporting not-ready) alive until the config is fixed.
                    shared.ready.store(false, Ordering::SeqCst);
                    empty_generation()
                }
            };
            (restored, false)
        }
    }
}

fn empty_generation() -> Generation {
    let (sources_stop, _) = watch::channel(false);
    let (sinks_stop, _) = watch::channel(false);
    Generation {
        sources_stop,
        sources: JoinSet::new(),
        sinks_stop,
        sinks: JoinSet::new(),
        writers: Vec::new(),
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).ok()
}

async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
