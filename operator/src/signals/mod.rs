//! Cluster signals for crash correlation: what the operator sees in the cluster and exports on
//! its own `/metrics`, so alert rules and dashboards can join it with the agent's crash series.
//!
//! - [`restarts`]: `vigil_container_restarts_total` from Pods (reason and exit code of each
//!   restart);
//! - [`releases`]: `vigil_app_release_info` and `vigil_app_release_timestamp_seconds` from
//!   ReplicaSets, StatefulSets and ControllerRevisions;
//! - [`acknowledgements`]: `vigil_alert_acknowledged` from Alertmanager's silences, which
//!   stops escalation.
//!
//! Each is a pure state struct fed by a kube watcher (or an HTTP poll) and unit-tested without
//! a client. The series are computed from that state at scrape time by one collector, so a
//! scrape never sees a half-updated set and deleted objects never leave stale series.
//!
//! With several operator replicas every replica keeps its state warm (so a new leader counts
//! from an accurate baseline), but only the leader exports the series: otherwise
//! `sum(increase(vigil_container_restarts_total[…]))` would count every restart once per
//! replica. See [`Signals::export_while`].

pub mod acknowledgements;
pub mod apps;
pub mod releases;
pub mod restarts;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::NamespaceResourceScope;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntCounter, IntCounterVec, Opts, Registry};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use vigil_crds::MonitoredApp;

use crate::render::namespace_of;
use acknowledgements::{AcknowledgementState, AlertmanagerClient};
use apps::AppIndex;
use releases::{ReleaseState, WorkloadKind};
use restarts::{RestartState, Sighting};

/// `vigil_container_restarts_total`.
pub const RESTARTS_METRIC: &str = "vigil_container_restarts_total";
/// `vigil_app_release_info`.
pub const RELEASE_INFO_METRIC: &str = "vigil_app_release_info";
/// `vigil_app_release_timestamp_seconds`.
pub const RELEASE_TIMESTAMP_METRIC: &str = "vigil_app_release_timestamp_seconds";
/// `vigil_alert_acknowledged`.
pub const ACKNOWLEDGED_METRIC: &str = "vigil_alert_acknowledged";

/// How long workload watchers wait for the first list of `MonitoredApp`s before starting
/// anyway (the CRD may be missing).
const APPS_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often deleted pods past their grace period are forgotten.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(30);

/// What the signals watch and poll.
#[derive(Clone, Debug)]
pub struct SignalOptions {
    /// Watch this namespace only; `None` for the whole cluster.
    pub namespace: Option<String>,
    /// Base URL of the Alertmanager whose silences acknowledge alerts (`http://…`); `None`
    /// exports no acknowledgements.
    pub alertmanager_url: Option<String>,
    /// Time between two polls of Alertmanager.
    pub poll_interval: Duration,
}

impl Default for SignalOptions {
    fn default() -> Self {
        SignalOptions {
            namespace: None,
            alertmanager_url: None,
            poll_interval: acknowledgements::DEFAULT_POLL_INTERVAL,
        }
    }
}

/// The state behind the exported series, shared by the watchers and the collector.
#[derive(Debug)]
struct Shared {
    apps: RwLock<AppIndex>,
    restarts: Mutex<RestartState>,
    releases: Mutex<ReleaseState>,
    acknowledgements: Mutex<AcknowledgementState>,
    /// Export only while this is `true`; `None`: always.
    leading: Mutex<Option<watch::Receiver<bool>>>,
    /// Failed polls of Alertmanager.
    poll_failures: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state stays consistent across a panicking holder: every update is a single insert
    // or remove, so a poisoned lock is safe to keep using.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The cluster signals: their state, the collector that exports it, and the watchers that
/// feed it. Cheap to clone (clones share state).
#[derive(Clone, Debug)]
pub struct Signals {
    shared: Arc<Shared>,
}

impl Default for Signals {
    fn default() -> Self {
        Signals::new(restarts::DEFAULT_DELETED_POD_GRACE)
    }
}

impl Signals {
    /// Empty signals whose deleted pods' series stay exported for `deleted_pod_grace`.
    pub fn new(deleted_pod_grace: Duration) -> Signals {
        Signals {
            shared: Arc::new(Shared {
                apps: RwLock::new(AppIndex::default()),
                restarts: Mutex::new(RestartState::new(deleted_pod_grace)),
                releases: Mutex::new(ReleaseState::default()),
                acknowledgements: Mutex::new(AcknowledgementState::default()),
                leading: Mutex::new(None),
                poll_failures: AtomicU64::new(0),
            }),
        }
    }

    /// Registers the signal series (and the Alertmanager poll failure counter) in `registry`.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(SignalCollector::new(self.shared.clone())?))
    }

    /// Exports the series only while `leading` is `true` (the replica holds the leader lease);
    /// without this call they are always exported.
    pub fn export_while(&self, leading: watch::Receiver<bool>) {
        *lock(&self.shared.leading) = Some(leading);
    }

    /// Records a `MonitoredApp` event.
    pub fn on_app(&self, event: Event<MonitoredApp>) {
        let mut apps = self
            .shared
            .apps
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match event {
            Event::Apply(app) | Event::InitApply(app) => apps.apply(&app),
            Event::Delete(app) => apps.delete(&app),
            Event::Init => apps.begin_relist(),
            Event::InitDone => apps.end_relist(),
        }
    }

    /// Records a Pod event at `now`, returning the restarts it shows.
    pub fn on_pod(&self, event: Event<Pod>, now: Instant) -> Vec<restarts::Increment> {
        let apps = self
            .shared
            .apps
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut restarts = lock(&self.shared.restarts);
        let (pod, sighting) = match event {
            Event::Apply(pod) => (pod, Sighting::Changed),
            Event::InitApply(pod) => (pod, Sighting::Listed),
            Event::Delete(pod) => {
                restarts.delete(&pod, now);
                return Vec::new();
            }
            Event::Init => {
                restarts.begin_relist();
                return Vec::new();
            }
            Event::InitDone => {
                restarts.end_relist(now);
                return Vec::new();
            }
        };
        let app = apps
            .resolve(&namespace_of(&pod), pod.labels())
            .map(|a| a.name);
        let increments = restarts.observe(&pod, app, sighting);
        if is_finished(&pod) {
            // A finished pod never restarts again; its series age out like a deleted one's.
            restarts.delete(&pod, now);
        }
        increments
    }

    /// Records a ReplicaSet event.
    pub fn on_replica_set(&self, event: Event<ReplicaSet>) {
        let mut releases = lock(&self.shared.releases);
        match event {
            Event::Apply(rs) | Event::InitApply(rs) => releases.observe_replica_set(&rs),
            Event::Delete(rs) => {
                releases.delete(WorkloadKind::ReplicaSet, &namespace_of(&rs), &rs.name_any())
            }
            Event::Init => releases.begin_relist(WorkloadKind::ReplicaSet),
            Event::InitDone => releases.end_relist(WorkloadKind::ReplicaSet),
        }
    }

    /// Records a StatefulSet event.
    pub fn on_stateful_set(&self, event: Event<StatefulSet>) {
        let mut releases = lock(&self.shared.releases);
        match event {
            Event::Apply(sts) | Event::InitApply(sts) => releases.observe_stateful_set(&sts),
            Event::Delete(sts) => releases.delete(
                WorkloadKind::StatefulSet,
                &namespace_of(&sts),
                &sts.name_any(),
            ),
            Event::Init => releases.begin_relist(WorkloadKind::StatefulSet),
            Event::InitDone => releases.end_relist(WorkloadKind::StatefulSet),
        }
    }

    /// Records a ControllerRevision event.
    pub fn on_revision(&self, event: Event<ControllerRevision>) {
        let mut releases = lock(&self.shared.releases);
        match event {
            Event::Apply(cr) | Event::InitApply(cr) => releases.observe_revision(&cr),
            Event::Delete(cr) => releases.delete(
                WorkloadKind::ControllerRevision,
                &namespace_of(&cr),
                &cr.name_any(),
            ),
            Event::Init => releases.begin_relist(WorkloadKind::ControllerRevision),
            Event::InitDone => releases.end_relist(WorkloadKind::ControllerRevision),
        }
    }

    /// Forgets deleted pods whose grace period has passed at `now`.
    pub fn expire(&self, now: Instant) -> usize {
        lock(&self.shared.restarts).expire(now)
    }

    /// The exported restart series.
    pub fn restart_series(&self) -> Vec<restarts::RestartSeries> {
        lock(&self.shared.restarts).series()
    }

    /// The exported releases.
    pub fn releases(&self) -> Vec<releases::Release> {
        let apps = self
            .shared
            .apps
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        lock(&self.shared.releases).releases(&apps)
    }

    /// The exported acknowledgements.
    pub fn acknowledgements(&self) -> Vec<acknowledgements::Acknowledgement> {
        lock(&self.shared.acknowledgements)
            .current()
            .iter()
            .cloned()
            .collect()
    }

    /// Number of objects the signals hold state for: `MonitoredApp`s, pods, and release
    /// workloads.
    pub fn tracked_objects(&self) -> usize {
        let apps = self
            .shared
            .apps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        apps + lock(&self.shared.restarts).tracked_pods()
            + lock(&self.shared.releases).tracked_objects()
    }

    /// Records the alerts acknowledged right now (a successful poll).
    pub fn record_acknowledgements(
        &self,
        acknowledged: std::collections::BTreeSet<acknowledgements::Acknowledgement>,
    ) {
        lock(&self.shared.acknowledgements).update(acknowledged);
    }

    /// Polls Alertmanager once and records the answer (or the failure).
    pub async fn poll_acknowledgements(
        &self,
        alertmanager: &AlertmanagerClient,
    ) -> Result<(), acknowledgements::AcknowledgementError> {
        match alertmanager.acknowledgements().await {
            Ok(acknowledged) => {
                self.record_acknowledgements(acknowledged);
                Ok(())
            }
            Err(e) => {
                lock(&self.shared.acknowledgements).failed(Instant::now());
                self.shared.poll_failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Watches and polls until `shutdown` completes. Watch errors are retried with kube's
    /// default backoff; a wrong Alertmanager URL only disables acknowledgements (and is
    /// logged).
    pub async fn run(
        &self,
        client: Client,
        options: &SignalOptions,
        shutdown: impl Future<Output = ()>,
    ) {
        let namespace = options.namespace.as_deref();
        let (apps_ready_tx, apps_ready) = watch::channel(false);
        let app_events = {
            let signals = self.clone();
            follow(scoped::<MonitoredApp>(&client, namespace), move |event| {
                let done = matches!(event, Event::InitDone);
                signals.on_app(event);
                if done {
                    apps_ready_tx.send_replace(true);
                }
            })
        };
        let pods = {
            let signals = self.clone();
            follow(scoped::<Pod>(&client, namespace), move |event| {
                for i in signals.on_pod(event, Instant::now()) {
                    tracing::debug!(
                        namespace = %i.namespace, pod = %i.pod, container = %i.container,
                        reason = %i.reason, exit_code = %i.exit_code, restarts = i.restarts,
                        "container restarted"
                    );
                }
            })
        };
        let replica_sets = {
            let signals = self.clone();
            follow(scoped::<ReplicaSet>(&client, namespace), move |e| {
                signals.on_replica_set(e)
            })
        };
        let stateful_sets = {
            let signals = self.clone();
            follow(scoped::<StatefulSet>(&client, namespace), move |e| {
                signals.on_stateful_set(e)
            })
        };
        let revisions = {
            let signals = self.clone();
            follow(scoped::<ControllerRevision>(&client, namespace), move |e| {
                signals.on_revision(e)
            })
        };
        let expiry = {
            let signals = self.clone();
            async move {
                let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
                loop {
                    tick.tick().await;
                    signals.expire(Instant::now());
                }
            }
        };
        let poll = self.poll_loop(options);
        // Workload events resolve apps when they arrive: start them once the apps are known.
        let workloads = after_apps(
            apps_ready,
            futures::future::join4(pods, replica_sets, stateful_sets, revisions),
        );
        let all = futures::future::join4(app_events, workloads, expiry, poll);
        tokio::select! {
            _ = all => {}
            () = shutdown => {}
        }
    }

    /// Polls Alertmanager every `poll_interval`; never completes.
    async fn poll_loop(&self, options: &SignalOptions) {
        let Some(url) = &options.alertmanager_url else {
            return futures::future::pending().await;
        };
        let alertmanager = match AlertmanagerClient::new(url) {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, "acknowledgements disabled");
                return futures::future::pending().await;
            }
        };
        let mut tick = tokio::time::interval(options.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.poll_acknowledgements(&alertmanager).await {
                tracing::warn!(error = %e, "cannot read silenced alerts");
            }
        }
    }
}

/// Runs the cluster signals of `signals` with `client` until `shutdown` completes.
pub async fn run(
    client: Client,
    signals: Signals,
    options: SignalOptions,
    shutdown: impl Future<Output = ()>,
) {
    signals.run(client, &options, shutdown).await;
}

/// Runs `watching` once the first `MonitoredApp` list is in (or after a timeout, when the CRD
/// is missing).
async fn after_apps<F: Future>(mut apps_ready: watch::Receiver<bool>, watching: F) -> F::Output {
    let ready = tokio::time::timeout(APPS_READY_TIMEOUT, apps_ready.wait_for(|r| *r));
    if ready.await.is_err() {
        tracing::warn!("no MonitoredApp list yet; watching workloads anyway");
    }
    watching.await
}

fn exporting(shared: &Shared) -> bool {
    lock(&shared.leading)
        .as_ref()
        .is_none_or(|leading| *leading.borrow())
}

/// Pods that finished (`Succeeded`/`Failed`) restart no more.
fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Feeds every event of a watch on `api` to `handle`, forever (errors are logged and the
/// watch resumes after kube's default backoff).
async fn follow<K>(api: Api<K>, mut handle: impl FnMut(Event<K>) + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let kind = K::kind(&()).into_owned();
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => handle(event),
            Err(e) => tracing::warn!(kind = %kind, error = %e, "watch failed; retrying"),
        }
    }
}

/// Exports the signal series from the shared state at scrape time.
struct SignalCollector {
    shared: Arc<Shared>,
    restarts: IntCounterVec,
    release_info: GaugeVec,
    release_timestamp: GaugeVec,
    acknowledged: GaugeVec,
    poll_failures: IntCounter,
}

const RESTART_LABELS: [&str; 6] = [
    "namespace",
    "pod",
    "container",
    "app",
    "reason",
    "exit_code",
];
const RELEASE_INFO_LABELS: [&str; 5] = ["namespace", "app", "version", "revision", "image"];
const RELEASE_TIMESTAMP_LABELS: [&str; 4] = ["namespace", "app", "version", "revision"];
const ACKNOWLEDGED_LABELS: [&str; 3] = ["namespace", "app", "alertname"];

fn poll_failures_counter() -> Result<IntCounter, prometheus::Error> {
    IntCounter::new(
        "vigil_operator_alertmanager_poll_failures_total",
        "Polls of Alertmanager for silenced alerts that failed.",
    )
}

fn restarts_vec() -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(
        Opts::new(
            RESTARTS_METRIC,
            "Container restarts seen by the operator, by the reason and exit code of the termination that caused them.",
        ),
        &RESTART_LABELS,
    )
}

fn release_info_vec() -> Result<GaugeVec, prometheus::Error> {
    GaugeVec::new(
        Opts::new(
            RELEASE_INFO_METRIC,
            "1 for each live release of an application.",
        ),
        &RELEASE_INFO_LABELS,
    )
}

fn release_timestamp_vec() -> Result<GaugeVec, prometheus::Error> {
    GaugeVec::new(
        Opts::new(
            RELEASE_TIMESTAMP_METRIC,
            "Unix time at which a live release was introduced (its ReplicaSet or ControllerRevision was created).",
        ),
        &RELEASE_TIMESTAMP_LABELS,
    )
}

fn acknowledged_vec() -> Result<GaugeVec, prometheus::Error> {
    GaugeVec::new(
        Opts::new(
            ACKNOWLEDGED_METRIC,
            "1 while an alert is silenced in Alertmanager (acknowledged); stops its escalation.",
        ),
        &ACKNOWLEDGED_LABELS,
    )
}

impl SignalCollector {
    fn new(shared: Arc<Shared>) -> Result<SignalCollector, prometheus::Error> {
        Ok(SignalCollector {
            shared,
            restarts: restarts_vec()?,
            release_info: release_info_vec()?,
            release_timestamp: release_timestamp_vec()?,
            acknowledged: acknowledged_vec()?,
            poll_failures: poll_failures_counter()?,
        })
    }

    fn families(&self) -> Result<Vec<MetricFamily>, prometheus::Error> {
        let restarts = restarts_vec()?;
        for s in lock(&self.shared.restarts).series() {
            restarts
                .get_metric_with_label_values(&[
                    &s.namespace,
                    &s.pod,
                    &s.container,
                    &s.app,
                    &s.reason,
                    &s.exit_code,
                ])?
                .inc_by(s.restarts);
        }
        let info = release_info_vec()?;
        let timestamp = release_timestamp_vec()?;
        let releases = {
            let apps = self
                .shared
                .apps
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            lock(&self.shared.releases).releases(&apps)
        };
        let mut started = std::collections::BTreeMap::new();
        for r in &releases {
            info.get_metric_with_label_values(&[
                &r.namespace,
                &r.app,
                &r.version,
                &r.revision,
                &r.image,
            ])?
            .set(1.0);
            if let Some(at) = r.started {
                let key = [&r.namespace, &r.app, &r.version, &r.revision];
                let slot = started.entry(key).or_insert(at);
                *slot = f64::min(*slot, at);
            }
        }
        for (labels, at) in started {
            timestamp
                .get_metric_with_label_values(&labels.map(String::as_str))?
                .set(at);
        }
        let acknowledged = acknowledged_vec()?;
        for a in lock(&self.shared.acknowledgements).current() {
            acknowledged
                .get_metric_with_label_values(&[&a.namespace, &a.app, &a.alertname])?
                .set(1.0);
        }
        let mut families = restarts.collect();
        families.extend(info.collect());
        families.extend(timestamp.collect());
        families.extend(acknowledged.collect());
        // A family without series is left out, as the client library does for empty vectors.
        families.retain(|f| !f.get_metric().is_empty());
        Ok(families)
    }
}

impl Collector for SignalCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.poll_failures.desc();
        descs.extend(self.restarts.desc());
        descs.extend(self.release_info.desc());
        descs.extend(self.release_timestamp.desc());
        descs.extend(self.acknowledged.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Operator health: exported by every replica.
        let mut families = Vec::new();
        if let Ok(failures) = poll_failures_counter() {
            failures.inc_by(self.shared.poll_failures.load(Ordering::Relaxed));
            families.extend(failures.collect());
        }
        if exporting(&self.shared) {
            match self.families() {
                Ok(signals) => families.extend(signals),
                Err(e) => tracing::warn!(error = %e, "cannot export the cluster signals"),
            }
        }
        families
    }
}
