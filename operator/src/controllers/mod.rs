//! The live half of the operator: one kube-runtime controller per Vigil resource kind, each
//! `observe → validate → desired → apply → status`. Rendering is the pure `crate::render`
//! code that `vigil-operator render` also uses; this module only reads the cluster, writes
//! children with server-side apply, prunes what is no longer desired, and reports status,
//! Events and metrics.
//!
//! Error handling: an invalid spec (or a reference to a `MonitoredApp` that does not exist) is
//! permanent — the resource gets `Ready=False` with a one-sentence fix-it message and an Event,
//! and the controller waits for a change; anything else is transient and requeued with
//! exponential backoff per object. Each object is reconciled on its own, so one bad object
//! never stalls the others.

pub mod aggregate;
pub mod alert_policy;
pub mod apply;
pub mod conditions;
pub mod dashboard_view;
pub mod discovery;
pub mod error;
#[cfg(test)]
pub mod fixtures;
pub mod metrics;
pub mod monitored_app;
pub mod reload;
pub mod report;
pub mod slo;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, PartialObjectMeta, SelectorExt};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument;
use vigil_crds::{AlertPolicy, DashboardView, MonitoredApp, Slo};

use crate::render::alertmanager::AlertmanagerVersion;
use crate::render::namespace_of;
pub use apply::FIELD_MANAGER;
pub use discovery::OptionalApis;
pub use error::Error;
pub use metrics::ReconcileMetrics;
pub use reload::Reloader;

/// Agent image injected when a `MonitoredApp` names none.
pub const DEFAULT_AGENT_IMAGE: &str =
    concat!("ghcr.io/vigil-dev/vigil-agent:", env!("CARGO_PKG_VERSION"));

/// Name under which the operator reports Events.
pub const REPORTER: &str = "vigil-operator";

/// How the operator is deployed: choices that come from flags, not from resources.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Agent image for apps that name none (must match what the webhook injects).
    pub agent_image: String,
    /// Whether the webhook injects the agent as a native sidecar (Kubernetes ≥ 1.29); part of
    /// the sidecar hash that decides which pods are stale.
    pub native_sidecar: bool,
    /// The Alertmanager release the shared `alertmanager.yml` is written for.
    pub alertmanager_version: AlertmanagerVersion,
    /// Namespace of the shared `vigil-alertmanager` Secret (usually the operator's own).
    pub alertmanager_namespace: String,
    /// The platform's own `alertmanager.yml` that the shared file merges Vigil's routes into
    /// (`--alertmanager-base-config`); `None`: a standalone file.
    pub alertmanager_base: Option<String>,
    /// Watch and write in this namespace only; `None` for the whole cluster.
    pub namespace: Option<String>,
    /// How often a healthy resource is reconciled again even without a change (pod counts,
    /// drifted shared outputs).
    pub resync: Duration,
    /// Labels and annotations of the generated objects, the `GrafanaDashboard` selector and
    /// folder, and the severities of SLO alerts.
    pub outputs: crate::render::outputs::Outputs,
    /// How long the target Prometheus keeps data, when known: an `SLO` whose window is longer
    /// gets a warning in its status.
    pub prometheus_retention: Option<Duration>,
    /// Base URL of the Prometheus the `SLO` status reads the remaining error budget from.
    pub prometheus_query_url: Option<String>,
    /// Name of this cluster (`--cluster-name`): the agents' `cluster` label and
    /// `k8s.cluster.name` attribute, and the `cluster` label of generated alerts.
    pub cluster: Option<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            agent_image: DEFAULT_AGENT_IMAGE.to_owned(),
            native_sidecar: true,
            alertmanager_version: AlertmanagerVersion::default(),
            alertmanager_namespace: "vigil-system".to_owned(),
            alertmanager_base: None,
            namespace: None,
            resync: Duration::from_secs(300),
            outputs: crate::render::outputs::Outputs::default(),
            prometheus_retention: None,
            prometheus_query_url: None,
            cluster: None,
        }
    }
}

/// A Vigil resource as the controllers handle it: namespaced, typed, readable and writable.
pub trait VigilResource:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + ResourceExt
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
{
}

impl<K> VigilResource for K where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + ResourceExt
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug
{
}

/// Everything a reconcile needs, shared by all controllers.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Deployment choices.
    pub settings: Settings,
    /// Which optional output APIs the cluster serves (cached).
    pub discovery: discovery::Discovery,
    /// Reconcile counters and durations.
    pub metrics: ReconcileMetrics,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Reloads a plain Prometheus and Alertmanager after shared outputs change.
    pub reloader: Reloader,
    /// Every resource's part of the shared outputs of a plain Prometheus and Alertmanager.
    pub shared: aggregate::SharedOutputs,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context for `client`; `instance` names this replica in Events (the pod name).
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: ReconcileMetrics,
        reloader: Reloader,
        instance: Option<String>,
    ) -> Context {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: REPORTER.to_owned(),
                instance,
            },
        );
        Context {
            discovery: discovery::Discovery::new(client.clone(), discovery::DEFAULT_TTL),
            client,
            settings,
            metrics,
            recorder,
            reloader,
            shared: aggregate::SharedOutputs::default(),
            locks: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The cached discovery answer, for a reconcile of `owner`.
    pub async fn optional_apis(&self, owner: &str) -> Result<OptionalApis, Error> {
        self.discovery.current().await.map_err(|source| {
            error::ObserveError::Discovery {
                object: owner.to_owned(),
                source,
            }
            .into()
        })
    }

    /// The lock serialising writes of one shared output.
    fn lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(key.to_owned()).or_default().clone()
    }

    /// The delay before retrying `object` after one more transient failure: 5 s doubling up
    /// to 5 min.
    fn next_backoff(&self, object: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(object.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        backoff(*n)
    }

    fn reset_backoff(&self, object: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(object);
    }

    /// Runs one reconcile of `object` inside a tracing span, reports a failure on the object
    /// (condition and Event) and records the metrics.
    pub async fn reconcile_with<K, F>(
        &self,
        kind: &'static str,
        object: &K,
        steps: F,
    ) -> Result<Action, Error>
    where
        K: VigilResource,
        F: Future<Output = Result<Action, Error>>,
    {
        let started = Instant::now();
        let span = tracing::info_span!(
            "reconcile",
            kind,
            namespace = %namespace_of(object),
            name = %object.name_any(),
            generation = object.meta().generation.unwrap_or_default(),
        );
        let result = steps.instrument(span.clone()).await;
        match &result {
            Ok(_) => self.reset_backoff(&apply::describe(object)),
            Err(e) => {
                tracing::warn!(parent: &span, error = %e, category = e.category(), "reconcile failed");
                report::failure(self, object, e).instrument(span).await;
            }
        }
        self.metrics
            .record(kind, started, result.as_ref().err().map(Error::category));
        result
    }
}

/// Reads the `MonitoredApp` `name` of `namespace` that `owner` refers to; `None` when it does
/// not exist (or is being deleted).
pub async fn referenced_app(
    ctx: &Context,
    namespace: &str,
    name: &str,
    owner: &str,
) -> Result<Option<MonitoredApp>, Error> {
    let api: Api<MonitoredApp> = Api::namespaced(ctx.client.clone(), namespace);
    let app = api
        .get_opt(name)
        .await
        .map_err(|source| error::ObserveError::Read {
            object: owner.to_owned(),
            what: format!("MonitoredApp/{namespace}/{name}"),
            source,
        })?;
    Ok(app.filter(|a| a.metadata.deletion_timestamp.is_none()))
}

/// 5 s × 2^(failures − 1), at most 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(6);
    Duration::from_secs(5 << exponent).min(Duration::from_secs(300))
}

/// What the controllers do with a failed reconcile: wait for a change after a permanent error,
/// retry with per-object backoff after a transient one.
pub fn error_policy<K>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    if error.is_permanent() {
        Action::await_change()
    } else {
        Action::requeue(ctx.next_backoff(&apply::describe(object.as_ref())))
    }
}

fn scoped<K>(ctx: &Context) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match &ctx.settings.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    }
}

fn scoped_dynamic(ctx: &Context, resource: &ApiResource) -> Api<PartialObjectMeta<DynamicObject>> {
    match &ctx.settings.namespace {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, resource),
        None => Api::all_with(ctx.client.clone(), resource),
    }
}

/// Label selector of every child the operator writes.
const CHILD_SELECTOR: &str = "app.kubernetes.io/managed-by=vigil";

/// Drops `metadata.managedFields` from an object a watch delivers. The controllers never read
/// them (server-side apply tracks field ownership on the API server, from the applied objects
/// alone), and they are often the larger part of an object kept in a reflector store.
pub fn drop_managed_fields<K: Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
}

/// A watch of `api`, reflected into the returned store (without managed fields), yielding the
/// objects applied: the trigger of a controller for `K`.
pub fn reflected<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, config)
        .modify(drop_managed_fields)
        .reflect(writer)
        .applied_objects();
    (store, stream)
}

/// A metadata-only watch of owned children (without managed fields).
fn owned_metadata<K>(
    api: Api<PartialObjectMeta<K>>,
) -> impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    PartialObjectMeta<K>: Resource + DeserializeOwned + Clone,
{
    watcher(api, watcher::Config::default().labels(CHILD_SELECTOR))
        .modify(drop_managed_fields)
        .touched_objects()
}

/// A watch of related objects that trigger reconciles (without managed fields).
fn related<K>(api: Api<K>) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(api, watcher::Config::default())
        .modify(drop_managed_fields)
        .touched_objects()
}

/// A controller for `K`'s objects in scope.
fn controller<K: VigilResource + Send + Sync + 'static>(ctx: &Context) -> Controller<K> {
    let (store, trigger) = reflected(scoped::<K>(ctx), watcher::Config::default());
    Controller::for_stream(trigger, store)
}

/// Adds an owned child kind served by an optional API.
fn owns_optional<K>(
    controller: Controller<K>,
    ctx: &Context,
    served: bool,
    resource: ApiResource,
) -> Controller<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    if !served {
        return controller;
    }
    let api = scoped_dynamic(ctx, &resource);
    controller.owns_stream_with(owned_metadata(api), resource)
}

/// Objects in the same namespace whose `appRef`/`apps` name the changed `MonitoredApp`.
fn referring<K, F>(
    store: Store<K>,
    refers: F,
) -> impl Fn(MonitoredApp) -> Vec<ObjectRef<K>> + Send + Sync + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    F: Fn(&K, &str) -> bool + Send + Sync + 'static,
{
    move |app: MonitoredApp| {
        let (ns, name) = (namespace_of(&app), app.name_any());
        store
            .state()
            .into_iter()
            .filter(|k| k.meta().namespace.as_deref() == Some(ns.as_str()) && refers(k, &name))
            .map(|k| ObjectRef::from_obj(k.as_ref()))
            .collect()
    }
}

/// The SLOs whose alerts `policy` may route: those of its namespace that name no receivers of
/// their own. A policy created, changed or deleted changes whether their alerts reach anyone,
/// so their status is checked again at once instead of at the next resync.
fn slos_routed_by(slos: &[Arc<Slo>], policy: &AlertPolicy) -> Vec<ObjectRef<Slo>> {
    let ns = namespace_of(policy);
    slos.iter()
        .filter(|s| s.meta().namespace.as_deref() == Some(ns.as_str()))
        .filter(|s| s.spec.alerting.receivers.is_empty())
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Runs the four controllers until `shutdown` completes (then lets in-flight reconciles
/// finish). `apis` is the discovery answer the watches are built for: the caller restarts the
/// controllers when it changes, so children of newly installed CRDs are watched too. Every
/// watch drops managed fields; the parts of the shared outputs are read again.
pub async fn run(
    ctx: Arc<Context>,
    apis: OptionalApis,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    ctx.shared.reset();
    let shutdown = shutdown.boxed().shared();
    let config = controller::Config::default().debounce(Duration::from_secs(1));

    // MonitoredApp: agent ConfigMap, PodMonitors; pods feed the status counts.
    let apps = controller::<MonitoredApp>(&ctx)
        .with_config(config.clone())
        .owns_stream(owned_metadata(scoped::<PartialObjectMeta<ConfigMap>>(&ctx)));
    let apps = owns_optional(apps, &ctx, apis.pod_monitor, discovery::pod_monitor());
    let app_store = apps.store();
    // Metadata only: pod labels and annotations are all the counts need.
    let pods: Api<PartialObjectMeta<Pod>> = scoped(&ctx);
    let apps = apps
        .watches_stream(related(pods), move |pod: PartialObjectMeta<Pod>| {
            let labels = pod.labels().clone();
            let ns = pod.namespace();
            app_store
                .state()
                .into_iter()
                .filter(|app| app.namespace() == ns)
                .filter(|app| {
                    kube::core::Selector::try_from(app.spec.selector.clone())
                        .is_ok_and(|s| s.matches(&labels))
                })
                .map(|app| ObjectRef::from_obj(app.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown.clone())
        .run(monitored_app::reconcile, error_policy, ctx.clone())
        .for_each(log_result);

    // AlertPolicy: PrometheusRule, AlertmanagerConfig; re-run when its app changes.
    let policies = controller::<AlertPolicy>(&ctx).with_config(config.clone());
    let policies = owns_optional(
        policies,
        &ctx,
        apis.prometheus_rule,
        discovery::prometheus_rule(),
    );
    let policies = owns_optional(
        policies,
        &ctx,
        apis.alertmanager_config,
        discovery::alertmanager_config(),
    );
    let mapper = referring(policies.store(), |p: &AlertPolicy, app| {
        p.spec.app_ref.name == app
    });
    let policies = policies
        .watches_stream(related(scoped::<MonitoredApp>(&ctx)), mapper)
        .graceful_shutdown_on(shutdown.clone())
        .run(alert_policy::reconcile, error_policy, ctx.clone())
        .for_each(log_result);

    // SLO: PrometheusRule, dashboard ConfigMap, GrafanaDashboard.
    let slos = controller::<Slo>(&ctx)
        .with_config(config.clone())
        .owns_stream(owned_metadata(scoped::<PartialObjectMeta<ConfigMap>>(&ctx)));
    let slos = owns_optional(
        slos,
        &ctx,
        apis.prometheus_rule,
        discovery::prometheus_rule(),
    );
    let slos = owns_optional(
        slos,
        &ctx,
        apis.grafana_dashboard,
        discovery::grafana_dashboard(),
    );
    let mapper = referring(slos.store(), |s: &Slo, app| s.spec.app_ref.name == app);
    let slo_store = slos.store();
    let routed_by = move |policy: AlertPolicy| slos_routed_by(&slo_store.state(), &policy);
    let slos = slos
        .watches_stream(related(scoped::<MonitoredApp>(&ctx)), mapper)
        .watches_stream(related(scoped::<AlertPolicy>(&ctx)), routed_by)
        .graceful_shutdown_on(shutdown.clone())
        .run(slo::reconcile, error_policy, ctx.clone())
        .for_each(log_result);

    // DashboardView: dashboard ConfigMap, GrafanaDashboard.
    let views = controller::<DashboardView>(&ctx)
        .with_config(config)
        .owns_stream(owned_metadata(scoped::<PartialObjectMeta<ConfigMap>>(&ctx)));
    let views = owns_optional(
        views,
        &ctx,
        apis.grafana_dashboard,
        discovery::grafana_dashboard(),
    );
    let mapper = referring(views.store(), |v: &DashboardView, app| {
        v.spec.apps.iter().any(|a| a == app)
    });
    let views = views
        .watches_stream(related(scoped::<MonitoredApp>(&ctx)), mapper)
        .graceful_shutdown_on(shutdown)
        .run(dashboard_view::reconcile, error_policy, ctx.clone())
        .for_each(log_result);

    futures::join!(apps, policies, slos, views);
}

async fn log_result<K, E1, E2>(result: Result<(ObjectRef<K>, Action), controller::Error<E1, E2>>)
where
    K: Resource,
    E1: std::error::Error,
    E2: std::error::Error,
{
    match result {
        Ok((object, _)) => tracing::debug!(%object, "reconciled"),
        Err(controller::Error::ReconcilerFailed(e, object)) => {
            tracing::debug!(%object, error = %e, "reconcile failed")
        }
        Err(e) => tracing::warn!(error = %e, "controller error"),
    }
}
