//! The admission webhook: the thin shell around the pure `render::inject` (`/mutate-pods`) and
//! around the manifest validation of `vigil-operator check` (`/validate`), served over HTTPS by
//! every operator replica.
//!
//! - [`mutate`] decides whether a new pod gets the agent and answers with a JSON Patch. It fails
//!   open: whatever goes wrong, the pod is admitted unchanged with a warning.
//! - [`validate`] rejects invalid Vigil resources with a message naming the field. It fails
//!   closed.
//! - [`server`] is the hyper + rustls server; [`crate::tls`] supplies its certificate.
//! - [`run`] wires them together for `vigil-operator run`.

pub mod mutate;
pub mod server;
pub mod validate;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::version::Info;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Client;
use vigil_crds::MonitoredApp;

use crate::render::inject::{AgentSidecar, PodSecurityLevel};
use crate::tls::{self, CertSource, ServingCertResolver, TlsSettings, Validity};

/// Path of the pod injection webhook.
pub const MUTATE_PATH: &str = "/mutate-pods";
/// Path of the Vigil resource validation webhook.
pub const VALIDATE_PATH: &str = "/validate";
/// Pod annotation (or label): `"true"` asks for the agent, `"false"` refuses it (always wins).
pub const INJECT_ANNOTATION: &str = "vigil.dev/inject";
/// Pod annotation naming the `MonitoredApp` (in the pod's namespace) whose agent to inject,
/// when its selector does not select the pod or more than one app does.
pub const APP_ANNOTATION: &str = "vigil.dev/app";
/// Name of the `MonitoredApp` whose configuration a pod gets when it asks for the agent with
/// `vigil.dev/inject: "true"` but no app selects it: the agent mounts the ConfigMap
/// `vigil-agent-default` of the pod's namespace, which exists once a `MonitoredApp` called
/// `default` does.
pub const DEFAULT_APP: &str = "default";

/// Command-line flags of the webhook, for `vigil-operator run` (`#[command(flatten)]`). The
/// agent image and the sidecar mode are the controllers' settings too (the stale-pod check
/// hashes them), so they are not flags here: [`run`] takes them in its [`Webhook`].
#[derive(Clone, Debug, clap::Args)]
pub struct WebhookArgs {
    /// Address of the webhook's HTTPS server (`/mutate-pods`, `/validate`, `/healthz`).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9443")]
    pub webhook_listen: SocketAddr,
    /// Read the serving certificate from `tls.crt` and `tls.key` in this directory (a mounted
    /// cert-manager Secret) instead of managing a CA and certificate.
    #[arg(long, value_name = "DIR")]
    pub webhook_cert_dir: Option<PathBuf>,
    /// Namespace of the operator: where its Service and certificate Secret are.
    #[arg(long, value_name = "NAMESPACE", default_value = "vigil-system")]
    pub webhook_namespace: String,
    /// Service in front of the webhook; the certificate names `<service>.<namespace>.svc`.
    #[arg(long, value_name = "NAME", default_value = "vigil-webhook")]
    pub webhook_service: String,
    /// Secret holding the self-managed CA and serving certificate.
    #[arg(long, value_name = "NAME", default_value = "vigil-webhook-tls")]
    pub webhook_secret: String,
    /// MutatingWebhookConfiguration whose `caBundle` is kept current ("" for none).
    #[arg(long, value_name = "NAME", default_value = "vigil")]
    pub mutating_webhook_configuration: String,
    /// ValidatingWebhookConfiguration whose `caBundle` is kept current ("" for none).
    #[arg(long, value_name = "NAME", default_value = "vigil")]
    pub validating_webhook_configuration: String,
    /// Seconds between checks of the certificate (renewal, and picking up a renewal made by
    /// another replica or by cert-manager).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub webhook_cert_check_seconds: u64,
}

impl WebhookArgs {
    /// Where the serving certificate comes from.
    pub fn cert_source(&self) -> CertSource {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        match &self.webhook_cert_dir {
            Some(dir) => CertSource::Directory(dir.clone()),
            None => CertSource::SelfManaged(TlsSettings {
                namespace: self.webhook_namespace.clone(),
                service: self.webhook_service.clone(),
                secret: self.webhook_secret.clone(),
                mutating_webhook: some(&self.mutating_webhook_configuration),
                validating_webhook: some(&self.validating_webhook_configuration),
                validity: Validity::default(),
            }),
        }
    }
}

/// Whether an API server of this version runs native sidecars (Kubernetes 1.29 or later, where
/// the `SidecarContainers` feature is on by default), for choosing the sidecar mode from
/// `Client::apiserver_version`. Reads `major`/`minor` (`"1"`, `"29+"`), else `gitVersion`
/// (`v1.29.3-gke.1`); a version it cannot read counts as old: a regular sidecar container is
/// valid on every version, a native one is rejected before 1.29.
pub fn supports_native_sidecar(info: &Info) -> bool {
    let number = |s: &str| {
        s.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .ok()
    };
    let from_git = || {
        let mut parts = info.git_version.trim_start_matches('v').split('.');
        Some((number(parts.next()?)?, number(parts.next()?)?))
    };
    let version = match (number(&info.major), number(&info.minor)) {
        (Some(major), Some(minor)) => Some((major, minor)),
        _ => from_git(),
    };
    version.is_some_and(|(major, minor)| major > 1 || (major == 1 && minor >= 29))
}

/// What the injection webhook needs: the `MonitoredApp`s (a reflector's store, shared with the
/// controllers), the namespaces' labels and how to build the agent container.
#[derive(Clone)]
pub struct Webhook {
    /// Every `MonitoredApp` the operator sees.
    pub apps: Store<MonitoredApp>,
    /// The namespaces' metadata: the Pod Security level each enforces.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Agent image used unless an app names its own.
    pub agent_image: String,
    /// Inject a native sidecar (Kubernetes 1.29+) or a regular container.
    pub native_sidecar: bool,
}

impl Webhook {
    /// The sidecar to inject for `app` (into a pod of the app's namespace), in this cluster's
    /// mode and under the namespace's Pod Security level.
    pub fn sidecar_for(&self, app: &MonitoredApp) -> AgentSidecar {
        let level = self.pod_security(app.metadata.namespace.as_deref().unwrap_or("default"));
        AgentSidecar::for_pod_of(app, &self.agent_image, self.native_sidecar, level)
    }

    /// The Pod Security level `namespace` enforces. A namespace not (yet) in the store counts
    /// as `restricted`: a pod must never be rejected because of what Vigil added.
    pub fn pod_security(&self, namespace: &str) -> PodSecurityLevel {
        match self.namespaces.get(&ObjectRef::new(namespace)) {
            Some(ns) => PodSecurityLevel::enforced_by(ns.metadata.labels.as_ref()),
            None => PodSecurityLevel::Restricted,
        }
    }
}

/// Errors that stop the webhook.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The HTTPS listener could not be bound.
    #[error("cannot listen on {addr} for the webhook")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("webhook server failed")]
    Serve(#[source] std::io::Error),
}

impl WebhookError {
    /// A stable PascalCase name of the error, for Event reasons and metric labels.
    pub fn category(&self) -> &'static str {
        match self {
            WebhookError::Bind { .. } => "WebhookBindFailed",
            WebhookError::Serve(_) => "WebhookServeFailed",
        }
    }
}

/// Runs the webhook of `vigil-operator run` until `shutdown` completes: keeps the serving
/// certificate current (self-managed, or from `--webhook-cert-dir`) and serves
/// `/mutate-pods`, `/validate`, `/healthz` and `/readyz` on `--webhook-listen`. `ready` turns
/// true once the listener is bound and a certificate is loaded (AND it into the operator's own
/// readiness). After `shutdown`, it keeps answering for `drain` while not ready. Every replica
/// runs this; it needs no leadership.
///
/// `webhook` carries the `MonitoredApp` store (a reflector's reader, shared with the
/// controllers) and the same agent image and sidecar mode as the controllers' settings.
pub async fn run(
    client: Client,
    args: &WebhookArgs,
    webhook: Webhook,
    ready: Arc<AtomicBool>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> Result<(), WebhookError> {
    let resolver = Arc::new(ServingCertResolver::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            // An error means the sender is gone, which also means stop.
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let certs = tokio::spawn(tls::keep_current(
        client,
        args.cert_source(),
        resolver.clone(),
        Duration::from_secs(args.webhook_cert_check_seconds.max(1)),
        stopped(),
    ));
    let listener = tokio::net::TcpListener::bind(args.webhook_listen)
        .await
        .map_err(|source| WebhookError::Bind {
            addr: args.webhook_listen,
            source,
        })?;
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let served = server::serve(
        listener,
        Arc::new(webhook),
        resolver,
        ready,
        stopped(),
        drain,
    )
    .await;
    let _ = certs.await;
    served
}
