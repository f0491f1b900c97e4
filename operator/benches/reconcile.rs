//! Reconcile benchmark: time to reconcile 1,000 `MonitoredApp`s (agent ConfigMap, PodMonitors,
//! status with pod counts) against the in-memory API server, first when every child must be
//! created, then in the steady state where every apply is a no-op; sequentially and with
//! 16 reconciles in flight. A second case puts 1,000 `MonitoredApp`s and 1,000 `AlertPolicy`s
//! into ONE namespace of a cluster without prometheus-operator, where every reconcile feeds the
//! namespace's shared `vigil-prometheus` ConfigMap and the shared `alertmanager.yml` Secret.
//! Prints figures; asserts nothing.
//!
//! The in-memory server answers from one lock over JSON objects, so the figures measure the
//! operator's own work (rendering, request building, (de)serialisation) plus a cheap API, not
//! a real API server's latency.
//!
//! Run: `cargo bench -p vigil-operator --bench reconcile`
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "benchmark: a failed setup step must stop it with its message"
)]

#[path = "../tests/support/fake_api/mod.rs"]
mod fake_api;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_api::FakeApiServer;
use futures::StreamExt;
use serde_json::json;
use vigil_crds::{AlertPolicy, MonitoredApp};
use vigil_operator::controllers::{alert_policy, monitored_app, Context, Settings};

const APPS: usize = 1_000;
const NAMESPACES: usize = 50;
const PODS_PER_APP: usize = 3;
const CLIENT_TYPES: [&str; 4] = ["banking", "infrastructure", "publicSector", "generic"];

fn app(i: usize) -> MonitoredApp {
    serde_json::from_value(json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "MonitoredApp",
        "metadata": {"name": format!("app-{i}"), "namespace": format!("team-{}", i % NAMESPACES)},
        "spec": {
            "selector": {"matchLabels": {"app": format!("app-{i}")}},
            "clientType": CLIENT_TYPES[i % CLIENT_TYPES.len()],
            "metrics": {"port": "http-metrics", "interval": "15s"},
            "logs": {"containerLogs": true},
            "traces": {"enabled": true},
            "exporters": {"prometheusRemoteWrite": {
                "url": "http://mimir.monitoring:8080/api/v1/push",
                "bearerTokenSecretRef": {"name": "mimir", "key": "token"}
            }}
        }
    }))
    .expect("valid MonitoredApp")
}

fn pod(app: usize, n: usize) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("app-{app}-{n}"),
            "namespace": format!("team-{}", app % NAMESPACES),
            "labels": {"app": format!("app-{app}"), "pod-template-hash": "7d9f8b6c5"},
        },
        "spec": {"containers": [{"name": "main", "image": "registry.example/app:1.0"}]},
    })
}

/// Populates a fresh server with the apps and their pods; returns the stored apps.
fn populate(server: &FakeApiServer) -> Vec<Arc<MonitoredApp>> {
    for i in 0..APPS {
        server.create(&app(i));
        for n in 0..PODS_PER_APP {
            server.create(&pod(i, n));
        }
    }
    (0..APPS)
        .map(|i| {
            let ns = format!("team-{}", i % NAMESPACES);
            Arc::new(
                server
                    .fetch::<MonitoredApp>("monitoredapps", &ns, &format!("app-{i}"))
                    .expect("stored app"),
            )
        })
        .collect()
}

/// Runs `reconcile` on every object with `concurrency` in flight; returns each one's duration,
/// in completion order.
async fn timed_reconciles<K, E, Fut>(
    objects: &[Arc<K>],
    ctx: &Arc<Context>,
    concurrency: usize,
    reconcile: impl Fn(Arc<K>, Arc<Context>) -> Fut,
) -> Vec<Duration>
where
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, E>>,
    E: std::fmt::Debug,
{
    futures::stream::iter(objects.iter().cloned())
        .map(|object| {
            let run = reconcile(object, ctx.clone());
            async move {
                let t = Instant::now();
                run.await.expect("reconcile succeeds");
                t.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Reconciles every app with `concurrency` in flight; returns the wall time and each
/// reconcile's duration, sorted.
async fn pass(
    apps: &[Arc<MonitoredApp>],
    ctx: &Arc<Context>,
    concurrency: usize,
) -> (Duration, Vec<Duration>) {
    let started = Instant::now();
    let mut durations = timed_reconciles(apps, ctx, concurrency, monitored_app::reconcile).await;
    durations.sort();
    (started.elapsed(), durations)
}

/// The one namespace of the plain-Prometheus case.
const SHARED_NAMESPACE: &str = "shop";

/// An app of the plain-Prometheus case, in [`SHARED_NAMESPACE`].
fn shared_app(i: usize) -> MonitoredApp {
    let mut app = app(i);
    app.metadata.namespace = Some(SHARED_NAMESPACE.to_owned());
    app
}

/// A crash-rate policy on `app-{i}` with one receiver.
fn policy(i: usize) -> AlertPolicy {
    serde_json::from_value(json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "AlertPolicy",
        "metadata": {"name": format!("policy-{i}"), "namespace": SHARED_NAMESPACE},
        "spec": {
            "appRef": {"name": format!("app-{i}")},
            "rules": [{
                "name": "Crash",
                "severity": "critical",
                "audiences": ["engineering"],
                "crashRate": {"threshold": 0, "window": "15m"}
            }],
            "audiences": [{
                "audience": "engineering",
                "receivers": [{"name": "oncall", "email": {"to": "oncall@shop.example"}}]
            }]
        }
    }))
    .expect("valid AlertPolicy")
}

/// Re-reads every app and policy of the shared namespace as a watch would deliver them.
fn shared_objects(server: &FakeApiServer) -> (Vec<Arc<MonitoredApp>>, Vec<Arc<AlertPolicy>>) {
    let apps = (0..APPS)
        .map(|i| {
            Arc::new(
                server
                    .fetch::<MonitoredApp>("monitoredapps", SHARED_NAMESPACE, &format!("app-{i}"))
                    .expect("stored app"),
            )
        })
        .collect();
    let policies = (0..APPS)
        .map(|i| {
            Arc::new(
                server
                    .fetch::<AlertPolicy>("alertpolicies", SHARED_NAMESPACE, &format!("policy-{i}"))
                    .expect("stored policy"),
            )
        })
        .collect();
    (apps, policies)
}

/// Reconciles every app, then every policy, with `concurrency` in flight; returns the wall time
/// and each reconcile's duration.
async fn shared_pass(
    (apps, policies): &(Vec<Arc<MonitoredApp>>, Vec<Arc<AlertPolicy>>),
    ctx: &Arc<Context>,
    concurrency: usize,
) -> (Duration, Vec<Duration>) {
    let started = Instant::now();
    let mut durations = timed_reconciles(apps, ctx, concurrency, monitored_app::reconcile).await;
    durations.extend(timed_reconciles(policies, ctx, concurrency, alert_policy::reconcile).await);
    durations.sort();
    (started.elapsed(), durations)
}

/// 1,000 apps and 1,000 policies in one namespace without prometheus-operator.
async fn plain_prometheus_case() {
    println!(
        "reconcile {APPS} MonitoredApps + {APPS} AlertPolicies in ONE namespace without prometheus-operator (shared ConfigMap and Secret)"
    );
    let server = FakeApiServer::new().without_group("monitoring.coreos.com");
    for i in 0..APPS {
        server.create(&shared_app(i));
        server.create(&policy(i));
    }
    let ctx = server.context(Settings::default());
    let concurrency = 16;
    report(
        &format!("create children, {concurrency} in flight"),
        shared_pass(&shared_objects(&server), &ctx, concurrency).await,
    );
    report(
        &format!("steady state (no-op), {concurrency} in flight"),
        shared_pass(&shared_objects(&server), &ctx, concurrency).await,
    );
    let shared = server
        .get("configmaps", SHARED_NAMESPACE, "vigil-prometheus")
        .expect("shared ConfigMap");
    println!(
        "shared ConfigMap: {} files; API requests: {}",
        shared["data"].as_object().map_or(0, |d| d.len()),
        server.requests().len()
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(label: &str, (wall, durations): (Duration, Vec<Duration>)) {
    println!(
        "{label:<44} total {:>8.1} ms  per reconcile {:>7.1} µs  p50 {:>7.1} µs  p99 {:>8.1} µs",
        wall.as_secs_f64() * 1e3,
        wall.as_secs_f64() * 1e6 / durations.len() as f64,
        percentile(&durations, 0.50).as_secs_f64() * 1e6,
        percentile(&durations, 0.99).as_secs_f64() * 1e6,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!(
            "reconcile {APPS} MonitoredApps ({NAMESPACES} namespaces, {PODS_PER_APP} pods each) against the in-memory API server"
        );
        for concurrency in [1, 16] {
            let server = FakeApiServer::new();
            let apps = populate(&server);
            let ctx = server.context(Settings::default());
            report(
                &format!("create children, {concurrency} in flight"),
                pass(&apps, &ctx, concurrency).await,
            );
            // Re-read the apps so their generation and status are current, as a watch would.
            let apps = populate_refresh(&server, &apps);
            report(
                &format!("steady state (no-op), {concurrency} in flight"),
                pass(&apps, &ctx, concurrency).await,
            );
        }
        plain_prometheus_case().await;
    });
}

fn populate_refresh(server: &FakeApiServer, apps: &[Arc<MonitoredApp>]) -> Vec<Arc<MonitoredApp>> {
    apps.iter()
        .map(|app| {
            let ns = app.metadata.namespace.clone().unwrap_or_default();
            let name = app.metadata.name.clone().unwrap_or_default();
            Arc::new(
                server
                    .fetch::<MonitoredApp>("monitoredapps", &ns, &name)
                    .expect("stored app"),
            )
        })
        .collect()
}
