//! `vigil-operator run`: the live operator's process. It connects to the API server, takes part
//! in leader election, and while it leads runs the controllers; services every replica runs
//! whatever its leadership (such as the admission webhook) start beside the election in [`run`].
//!
//! Shutdown (SIGTERM or Ctrl-C): the controllers stop taking new work and finish the reconciles
//! in flight, then the lease is released so another replica takes over at once. The webhook
//! drains: `/readyz` fails at once so the endpoints controller takes the replica out of the
//! webhook Service, but admission requests are answered for `--shutdown-drain-seconds` more
//! (the API server keeps calling a replica until the endpoint change reaches it; a refused
//! connection would reject Vigil resources, whose webhook fails closed). Then the process exits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Config};
use prometheus::Registry;
use tokio::sync::watch;
use vigil_crds::MonitoredApp;

use crate::controllers::{self, discovery, Context, ReconcileMetrics, Reloader, Settings};
use crate::leader::{LeaderElector, LeaseSettings};

/// Everything `run` is told on the command line.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Kubeconfig file; `None` for the in-cluster configuration (or `KUBECONFIG`, or
    /// `~/.kube/config`, as kubectl finds them).
    pub kubeconfig: Option<PathBuf>,
    /// Controller settings (namespace scope, agent image, Alertmanager namespace…).
    pub settings: Settings,
    /// This replica's identity for leader election and Events (its pod name).
    pub identity: String,
    /// Namespace of the leader-election Lease.
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    pub lease_name: String,
    /// Lease validity without renewal.
    pub lease_duration: Duration,
    /// Base URL of a plain Prometheus to reload after shared rule or scrape files change.
    pub prometheus_url: Option<String>,
    /// Base URL of a plain Alertmanager to reload after `alertmanager.yml` changes.
    pub alertmanager_url: Option<String>,
    /// Wait between a change of a mounted file and its reload.
    pub reload_delay: Duration,
    /// Address of the telemetry server (`/metrics`, `/healthz`, `/readyz`).
    pub metrics_listen: std::net::SocketAddr,
    /// The admission webhook's listener and certificate handling.
    pub webhook: crate::webhook::WebhookArgs,
    /// How the agent's sidecar mode is chosen; resolved into `settings.native_sidecar` by
    /// [`run`].
    pub native_sidecar: NativeSidecar,
    /// How long the webhook keeps answering after SIGTERM while reporting not ready.
    pub shutdown_drain: Duration,
}

/// How the agent is injected: decided by the cluster (`auto`) or forced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NativeSidecar {
    /// A native sidecar where the API server serves them (1.29+), else a regular container.
    Auto,
    /// Always a native sidecar (for a 1.28 cluster with the `SidecarContainers` gate on).
    Always,
    /// Always a regular container.
    Never,
}

impl NativeSidecar {
    /// Whether to inject a native sidecar into this cluster. `Auto` asks the API server for its
    /// version (three tries); if it cannot tell, the regular container, which every version
    /// accepts.
    pub async fn resolve(self, client: &Client) -> bool {
        match self {
            NativeSidecar::Always => true,
            NativeSidecar::Never => false,
            NativeSidecar::Auto => {
                for attempt in 1..=3 {
                    match client.apiserver_version().await {
                        Ok(info) => {
                            let native = crate::webhook::supports_native_sidecar(&info);
                            tracing::info!(
                                version = %info.git_version,
                                native_sidecar = native,
                                "sidecar mode chosen from the API server version"
                            );
                            return native;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, attempt, "cannot read the API server version");
                            tokio::time::sleep(Duration::from_secs(attempt)).await;
                        }
                    }
                }
                tracing::warn!(
                    "API server version unknown: injecting the agent as a regular container, which every version accepts"
                );
                false
            }
        }
    }
}

/// Why the operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read kubeconfig {path}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("cannot find a Kubernetes configuration (in-cluster or kubeconfig)")]
    Infer {
        #[source]
        source: kube::config::InferConfigError,
    },
    #[error("cannot create the Kubernetes client")]
    Client {
        #[source]
        source: kube::Error,
    },
    #[error("cannot register the operator's metrics")]
    Metrics {
        #[source]
        source: prometheus::Error,
    },
    #[error(transparent)]
    ReloadUrl(#[from] controllers::reload::ReloadUrlError),
}

/// Builds the API client from `--kubeconfig` or the environment.
pub async fn client(kubeconfig: Option<&PathBuf>) -> Result<Client, RunError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|source| RunError::Kubeconfig {
                path: path.clone(),
                source,
            })?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|source| RunError::Kubeconfig {
                    path: path.clone(),
                    source,
                })?
        }
        None => Config::infer()
            .await
            .map_err(|source| RunError::Infer { source })?,
    };
    Client::try_from(config).map_err(|source| RunError::Client { source })
}

/// Runs the operator until SIGTERM or Ctrl-C.
pub async fn run(options: RunOptions) -> Result<(), RunError> {
    let client = client(options.kubeconfig.as_ref()).await?;
    let registry = Registry::new();
    let metrics =
        ReconcileMetrics::new(&registry).map_err(|source| RunError::Metrics { source })?;
    let signals = crate::signals::Signals::default();
    signals
        .register(&registry)
        .and_then(|()| crate::telemetry::register_process(&registry))
        .map_err(|source| RunError::Metrics { source })?;
    let reloader = Reloader::new(
        options.prometheus_url.as_deref(),
        options.alertmanager_url.as_deref(),
        options.reload_delay,
    )?;
    let mut settings = options.settings.clone();
    settings.native_sidecar = options.native_sidecar.resolve(&client).await;
    let ctx = Arc::new(Context::new(
        client.clone(),
        settings,
        metrics,
        reloader,
        Some(options.identity.clone()),
    ));
    let (shutdown_tx, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        shutdown_tx.send_replace(true);
    });
    let options_metrics_listen = options.metrics_listen;
    let mut stop_telemetry = shutdown.clone();
    tokio::spawn(async move {
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let stop = async move {
            let _ = stop_telemetry.wait_for(|s| *s).await;
        };
        let serve = crate::telemetry::serve(options_metrics_listen, registry, ready, stop);
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "telemetry server failed");
        }
    });
    run_with(ctx, client, &options, signals, shutdown).await;
    Ok(())
}

/// The body of [`run`] once the client and context exist: leader election plus the controllers
/// while this replica leads, until `shutdown` turns `true`.
pub async fn run_with(
    ctx: Arc<Context>,
    client: Client,
    options: &RunOptions,
    signals: crate::signals::Signals,
    shutdown: watch::Receiver<bool>,
) {
    let elector = LeaderElector::new(
        client,
        LeaseSettings {
            name: options.lease_name.clone(),
            namespace: options.lease_namespace.clone(),
            identity: options.identity.clone(),
            duration: options.lease_duration,
        },
    );
    let (leading_tx, leading) = watch::channel(false);
    // The election stops only after the controllers have, so the lease is released by a
    // replica that no longer writes.
    let (stop_election, election_shutdown) = watch::channel(false);
    let election = tokio::spawn(elector.run(leading_tx, election_shutdown));

    // Services that every replica runs regardless of leadership start here.
    // The admission webhook: every replica serves it, from its own MonitoredApp reflector.
    let (apps, apps_writer) = kube::runtime::reflector::store::<MonitoredApp>();
    let apps_api: Api<MonitoredApp> = match &options.settings.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let app_stream = kube::runtime::reflector(
        apps_writer,
        kube::runtime::watcher(apps_api, kube::runtime::watcher::Config::default())
            .default_backoff()
            .modify(controllers::drop_managed_fields),
    );
    let mut stop_reflector = shutdown.clone();
    tokio::spawn(async move {
        let drain = app_stream.for_each(|_| std::future::ready(()));
        tokio::select! {
            () = drain => {}
            _ = stop_reflector.wait_for(|s| *s) => {}
        }
    });
    // The namespaces' labels (Pod Security levels), metadata only.
    let (namespaces, namespaces_writer) = kube::runtime::reflector::store();
    let namespaces_config = match &options.settings.namespace {
        Some(ns) => {
            kube::runtime::watcher::Config::default().fields(&format!("metadata.name={ns}"))
        }
        None => kube::runtime::watcher::Config::default(),
    };
    let namespace_stream = kube::runtime::reflector(
        namespaces_writer,
        kube::runtime::watcher(
            Api::<PartialObjectMeta<Namespace>>::all(ctx.client.clone()),
            namespaces_config,
        )
        .default_backoff()
        .modify(controllers::drop_managed_fields),
    );
    let mut stop_namespaces = shutdown.clone();
    tokio::spawn(async move {
        let drain = namespace_stream.for_each(|_| std::future::ready(()));
        tokio::select! {
            () = drain => {}
            _ = stop_namespaces.wait_for(|s| *s) => {}
        }
    });
    let webhook = crate::webhook::Webhook {
        apps: apps.clone(),
        namespaces: namespaces.clone(),
        agent_image: ctx.settings.agent_image.clone(),
        native_sidecar: ctx.settings.native_sidecar,
    };
    let webhook_args = options.webhook.clone();
    let webhook_client = ctx.client.clone();
    let drain = options.shutdown_drain;
    let mut stop_webhook = shutdown.clone();
    let webhook_task = tokio::spawn(async move {
        // Answer no pod before the stores have synced: a pod must not miss its agent, or get
        // one its namespace forbids, because the operator just started.
        let synced = futures::future::join(apps.wait_until_ready(), namespaces.wait_until_ready());
        if tokio::time::timeout(STORE_SYNC_TIMEOUT, synced)
            .await
            .is_err()
        {
            tracing::warn!("MonitoredApps or namespaces not listed after {STORE_SYNC_TIMEOUT:?}; serving the webhook anyway");
        }
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = async move {
            let _ = stop_webhook.wait_for(|s| *s).await;
        };
        if let Err(e) =
            crate::webhook::run(webhook_client, &webhook_args, webhook, ready, stop, drain).await
        {
            tracing::error!(error = %e, category = e.category(), "admission webhook failed");
        }
    });
    // Cluster signals: every replica keeps its state warm, only the leader exports it.
    signals.export_while(leading.clone());
    let signal_options = crate::signals::SignalOptions {
        namespace: options.settings.namespace.clone(),
        alertmanager_url: options.alertmanager_url.clone(),
        ..crate::signals::SignalOptions::default()
    };
    let mut stop_signals = shutdown.clone();
    tokio::spawn(crate::signals::run(
        ctx.client.clone(),
        signals,
        signal_options,
        async move {
            let _ = stop_signals.wait_for(|s| *s).await;
        },
    ));

    lead(ctx, leading, shutdown).await;
    stop_election.send_replace(true);
    if let Err(e) = election.await {
        tracing::warn!(error = %e, "leader election task failed");
    }
    // The webhook drains for its own period after shutdown begins; exit once it has.
    if let Err(e) = webhook_task.await {
        tracing::warn!(error = %e, "admission webhook task failed");
    }
}

/// Longest wait for the `MonitoredApp` and namespace stores before the webhook serves anyway.
const STORE_SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the controllers whenever this replica leads. They are restarted when the set of
/// optional APIs changes (so newly installed CRDs are watched) and stopped when leadership is
/// lost or on shutdown.
async fn lead(
    ctx: Arc<Context>,
    mut leading: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = leading.wait_for(|l| *l) => if r.is_err() { return },
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let apis = match ctx.discovery.refresh().await {
            Ok(apis) => apis,
            Err(e) => {
                tracing::warn!(error = %e, "API discovery failed; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        tracing::info!(?apis, "leading: starting controllers");
        let stop = stop_when(ctx.clone(), apis, leading.clone(), shutdown.clone());
        controllers::run(ctx.clone(), apis, stop).await;
        tracing::info!("controllers stopped");
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Completes when leadership is lost, shutdown starts, or discovery finds the optional APIs
/// changed from `apis`.
async fn stop_when(
    ctx: Arc<Context>,
    apis: controllers::OptionalApis,
    mut leading: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let changed = async {
        loop {
            tokio::time::sleep(discovery::DEFAULT_TTL).await;
            match ctx.discovery.refresh().await {
                Ok(now) if now != apis => {
                    tracing::info!(?now, "optional APIs changed; restarting controllers");
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "API discovery failed"),
            }
        }
    };
    tokio::select! {
        _ = leading.wait_for(|l| !*l) => {}
        _ = shutdown.wait_for(|s| *s) => {}
        _ = changed => {}
    }
}

/// SIGTERM (how Kubernetes stops a pod) or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
