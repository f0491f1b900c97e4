//! Behaviour across the controllers against the in-memory API server: the shared outputs of a
//! plain Prometheus and Alertmanager (kept from each resource's part, written only when they
//! change, cleaned up when prometheus-operator comes or goes) and the watches' stores.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::{json, Value};
use vigil_crds::{AlertPolicy, MonitoredApp, Slo};

use super::aggregate::{
    prometheus_config_map, renderable, ALERTMANAGER_KEY, ALERTMANAGER_SECRET, FINALIZER,
    PROMETHEUS_CONFIG_MAP, SCRAPE_CONFIGS_KEY,
};
use super::fixtures::{self, create, parse, APP, NAMESPACE, POLICY};
use super::{alert_policy, monitored_app, slo, OptionalApis, Settings};
use crate::fake_api::FakeApiServer;
use crate::render::Inventory;

const PROMETHEUS_OPERATOR: &str = "monitoring.coreos.com";

/// The app `name` in `shop`, scraped on its metrics port.
fn app_yaml(name: &str) -> String {
    format!(
        "{APP}  metrics: {{port: http-metrics, interval: 15s}}\n",
        APP = APP.replace("checkout", name)
    )
}

fn settings() -> Settings {
    Settings {
        alertmanager_namespace: "vigil-system".into(),
        ..Settings::default()
    }
}

fn app(server: &FakeApiServer, name: &str) -> Arc<MonitoredApp> {
    fixtures::stored(server, name, NAMESPACE)
}

fn policy(server: &FakeApiServer) -> Arc<AlertPolicy> {
    fixtures::stored(server, "crashes", NAMESPACE)
}

/// Reconciles `checkout` and then `crashes` as the server holds them now.
async fn reconcile_app_and_policy(server: &FakeApiServer, ctx: &Arc<super::Context>) {
    monitored_app::reconcile(app(server, "checkout"), ctx.clone())
        .await
        .unwrap();
    alert_policy::reconcile(policy(server), ctx.clone())
        .await
        .unwrap();
}

fn shared_config_map(server: &FakeApiServer) -> Option<Value> {
    server.get("configmaps", NAMESPACE, PROMETHEUS_CONFIG_MAP)
}

fn scrape_configs(server: &FakeApiServer) -> String {
    shared_config_map(server).unwrap()["data"][SCRAPE_CONFIGS_KEY]
        .as_str()
        .unwrap()
        .to_owned()
}

fn alertmanager_yml(server: &FakeApiServer) -> String {
    let secret: Secret = server
        .fetch("secrets", "vigil-system", ALERTMANAGER_SECRET)
        .unwrap();
    String::from_utf8(secret.data.unwrap()[ALERTMANAGER_KEY].0.clone()).unwrap()
}

/// Requests (method and path) made since `since` requests had been made.
fn requests_since(server: &FakeApiServer, since: usize) -> Vec<(String, String)> {
    server.requests().into_iter().skip(since).collect()
}

const SHARED_WRITE: (&str, &str) = (
    "PATCH",
    "/api/v1/namespaces/shop/configmaps/vigil-prometheus",
);

/// Creates apps `app-0` … `app-{n-1}` in a cluster without prometheus-operator.
fn plain_cluster_with_apps(n: usize) -> FakeApiServer {
    let server = FakeApiServer::new().without_group(PROMETHEUS_OPERATOR);
    for i in 0..n {
        create::<MonitoredApp>(&server, &app_yaml(&format!("app-{i}")));
    }
    server
}

/// Quadratic-cost guard: once a namespace's parts are known, reconciling an unchanged app
/// reads no other resource of the namespace and writes no shared ConfigMap.
#[tokio::test]
async fn unchanged_app_neither_lists_the_namespace_nor_rewrites_the_shared_config_map() {
    let server = plain_cluster_with_apps(20);
    let ctx = server.context(settings());
    for i in 0..20 {
        monitored_app::reconcile(app(&server, &format!("app-{i}")), ctx.clone())
            .await
            .unwrap();
    }
    let before = server.requests().len();

    monitored_app::reconcile(app(&server, "app-7"), ctx.clone())
        .await
        .unwrap();

    let requests = requests_since(&server, before);
    let listed: Vec<&(String, String)> = requests
        .iter()
        .filter(|(method, path)| {
            method == "GET"
                && ["/monitoredapps", "/alertpolicies", "/slos"]
                    .iter()
                    .any(|kind| path.ends_with(kind))
        })
        .collect();
    assert!(listed.is_empty(), "{listed:?}");
    assert!(
        !requests
            .iter()
            .any(|(m, p)| (m.as_str(), p.as_str()) == SHARED_WRITE),
        "{requests:?}"
    );
    let scrape = scrape_configs(&server);
    assert_eq!(
        scrape.matches("job_name: vigil/shop/").count(),
        20,
        "{scrape}"
    );
}

/// Reconciles running at the same time share writes of the shared ConfigMap: fewer writes than
/// reconciles, and every app's scrape configs are in the result.
#[tokio::test]
async fn concurrent_reconciles_share_writes_of_the_shared_config_map() {
    let server = plain_cluster_with_apps(40);
    let ctx = server.context(settings());
    let apps: Vec<Arc<MonitoredApp>> = (0..40).map(|i| app(&server, &format!("app-{i}"))).collect();

    let results = futures::future::join_all(
        apps.into_iter()
            .map(|a| monitored_app::reconcile(a, ctx.clone())),
    )
    .await;

    assert!(results.iter().all(Result::is_ok));
    let writes = server
        .requests()
        .iter()
        .filter(|(m, p)| (m.as_str(), p.as_str()) == SHARED_WRITE)
        .count();
    assert!(writes < 40, "{writes} writes for 40 reconciles");
    let scrape = scrape_configs(&server);
    for i in 0..40 {
        assert!(
            scrape.contains(&format!("job_name: vigil/shop/app-{i}\n")),
            "app-{i} missing"
        );
    }
}

/// The ConfigMap built from the resources' parts is exactly what the offline renderer makes
/// of the same resources.
#[tokio::test]
async fn shared_config_map_equals_the_offline_rendering() {
    let server = plain_cluster_with_apps(3);
    let ctx = server.context(settings());
    create::<MonitoredApp>(&server, APP);
    create::<AlertPolicy>(&server, POLICY);
    create::<Slo>(
        &server,
        r#"
apiVersion: vigil.dev/v1alpha1
kind: SLO
metadata: {name: availability, namespace: shop}
spec:
  appRef: {name: app-1}
  sli:
    availability: {metric: http_requests_total}
  objective: 99.9
  window: 30d
  alerting:
    receivers:
      - name: sre-mail
        email: {to: sre@shop.example}
"#,
    );
    for name in ["app-0", "app-1", "app-2", "checkout"] {
        monitored_app::reconcile(app(&server, name), ctx.clone())
            .await
            .unwrap();
    }
    alert_policy::reconcile(policy(&server), ctx.clone())
        .await
        .unwrap();
    slo::reconcile(fixtures::stored(&server, "availability", NAMESPACE), ctx)
        .await
        .unwrap();

    let decode = |plural: &str| -> Vec<Value> { server.list(plural, NAMESPACE) };
    let inv = renderable(Inventory {
        apps: decode("monitoredapps")
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect(),
        policies: decode("alertpolicies")
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect(),
        slos: decode("slos")
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect(),
        views: Vec::new(),
    });
    let apis = OptionalApis {
        grafana_dashboard: true,
        ..OptionalApis::default()
    };
    let expected = prometheus_config_map(NAMESPACE, &inv, apis, &Default::default(), None)
        .unwrap()
        .unwrap();
    let stored: ConfigMap = server
        .fetch("configmaps", NAMESPACE, PROMETHEUS_CONFIG_MAP)
        .unwrap();
    assert_eq!(stored.data, expected.data);
    assert_eq!(
        stored.data.unwrap().len(),
        3,
        "scrape configs and two rule files"
    );
}

/// After a restart (a new leader, empty memory) the first reconcile in a namespace reads the
/// other resources' parts, so the shared ConfigMap never loses them.
#[tokio::test]
async fn a_new_leader_keeps_the_other_resources_parts() {
    let server = plain_cluster_with_apps(3);
    let first = server.context(settings());
    for i in 0..3 {
        monitored_app::reconcile(app(&server, &format!("app-{i}")), first.clone())
            .await
            .unwrap();
    }
    let mut spec = server.get("monitoredapps", NAMESPACE, "app-0").unwrap()["spec"].clone();
    spec["metrics"]["path"] = json!("/internal/metrics");
    server.update_spec("monitoredapps", NAMESPACE, "app-0", spec);

    let second = server.context(settings());
    monitored_app::reconcile(app(&server, "app-0"), second)
        .await
        .unwrap();

    let scrape = scrape_configs(&server);
    assert!(scrape.contains("/internal/metrics"), "{scrape}");
    for i in 0..3 {
        assert!(
            scrape.contains(&format!("job_name: vigil/shop/app-{i}\n")),
            "{scrape}"
        );
    }
}

/// A shared ConfigMap edited by hand is repaired once the memory of the last write is older
/// than the resync period.
#[tokio::test]
async fn hand_edited_shared_config_map_is_repaired_after_a_resync_period() {
    let server = plain_cluster_with_apps(1);
    let ctx = server.context(Settings {
        resync: Duration::ZERO,
        ..settings()
    });
    monitored_app::reconcile(app(&server, "app-0"), ctx.clone())
        .await
        .unwrap();
    let original = scrape_configs(&server);
    let api: Api<ConfigMap> = Api::namespaced(server.client(), NAMESPACE);
    api.patch(
        PROMETHEUS_CONFIG_MAP,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {SCRAPE_CONFIGS_KEY: "scrape_configs: []\n"}})),
    )
    .await
    .unwrap();

    monitored_app::reconcile(app(&server, "app-0"), ctx)
        .await
        .unwrap();

    assert_eq!(scrape_configs(&server), original);
}

/// prometheus-operator installed after the operator ran without it: the next reconciles apply
/// `PodMonitor`s, `PrometheusRule`s and `AlertmanagerConfig`s, delete the namespace's shared
/// ConfigMap (found by its labels), empty `alertmanager.yml` of the policy's routes and drop
/// the finalizers.
#[tokio::test]
async fn prometheus_operator_appearing_cleans_up_the_shared_outputs() {
    let server = FakeApiServer::new().without_group(PROMETHEUS_OPERATOR);
    let ctx = server.context(settings());
    create::<MonitoredApp>(&server, APP);
    create::<AlertPolicy>(&server, POLICY);
    reconcile_app_and_policy(&server, &ctx).await;
    assert!(shared_config_map(&server).is_some());
    assert!(alertmanager_yml(&server).contains("shop/crashes/oncall"));

    server.set_group_served(PROMETHEUS_OPERATOR, true);
    ctx.discovery.refresh().await.unwrap();
    reconcile_app_and_policy(&server, &ctx).await;

    assert!(shared_config_map(&server).is_none());
    let yml = alertmanager_yml(&server);
    assert!(!yml.contains("shop/crashes/"), "{yml}");
    assert!(server
        .get("podmonitors", NAMESPACE, "vigil-agent-checkout")
        .is_some());
    assert!(server
        .get("prometheusrules", NAMESPACE, "vigil-crashes")
        .is_some());
    assert!(server
        .get("alertmanagerconfigs", NAMESPACE, "vigil-crashes")
        .is_some());
    for (plural, name) in [("monitoredapps", "checkout"), ("alertpolicies", "crashes")] {
        let stored = server.get(plural, NAMESPACE, name).unwrap();
        assert!(stored["metadata"]
            .get("finalizers")
            .is_none_or(|f| f == &json!([])));
    }
}

/// Falling back to a plain Prometheus: the first reconcile without prometheus-operator's APIs
/// moves the outputs into the shared ConfigMap and Secret and prunes the `PodMonitor`s,
/// `PrometheusRule` and `AlertmanagerConfig` left from before (here still reachable because
/// discovery's answer lags behind the cluster).
#[tokio::test]
async fn falling_back_to_plain_prometheus_prunes_the_operator_children() {
    let server = FakeApiServer::new();
    let ctx = server.context(settings());
    create::<MonitoredApp>(&server, APP);
    create::<AlertPolicy>(&server, POLICY);
    reconcile_app_and_policy(&server, &ctx).await;
    assert!(server
        .get("podmonitors", NAMESPACE, "vigil-agent-checkout")
        .is_some());

    let plain = server.context(settings());
    server.set_group_served(PROMETHEUS_OPERATOR, false);
    plain.discovery.refresh().await.unwrap();
    server.set_group_served(PROMETHEUS_OPERATOR, true);
    reconcile_app_and_policy(&server, &plain).await;

    assert!(server.list("podmonitors", NAMESPACE).is_empty());
    assert!(server.list("prometheusrules", NAMESPACE).is_empty());
    assert!(server.list("alertmanagerconfigs", NAMESPACE).is_empty());
    assert!(scrape_configs(&server).contains("job_name: vigil-agent/shop/checkout"));
    assert!(alertmanager_yml(&server).contains("shop/crashes/oncall"));
    let app = server.get("monitoredapps", NAMESPACE, "checkout").unwrap();
    assert_eq!(app["metadata"]["finalizers"], json!([FINALIZER]));
}

/// With prometheus-operator's API gone entirely (its CRDs deleted, and their objects with
/// them), pruning its kinds is a no-op, not an error: the reconcile fills the shared outputs.
#[tokio::test]
async fn prometheus_operator_removed_is_no_error() {
    let server = FakeApiServer::new();
    let ctx = server.context(settings());
    create::<MonitoredApp>(&server, APP);
    create::<AlertPolicy>(&server, POLICY);
    reconcile_app_and_policy(&server, &ctx).await;

    server.set_group_served(PROMETHEUS_OPERATOR, false);
    ctx.discovery.refresh().await.unwrap();
    monitored_app::reconcile(app(&server, "checkout"), ctx.clone())
        .await
        .unwrap();
    alert_policy::reconcile(policy(&server), ctx).await.unwrap();

    assert!(scrape_configs(&server).contains("job_name: vigil-agent/shop/checkout"));
    let rules = &shared_config_map(&server).unwrap()["data"]["alerts-crashes.rules.yml"];
    assert!(rules.as_str().unwrap().contains("alert: CheckoutCrash"));
    assert!(alertmanager_yml(&server).contains("shop/crashes/oncall"));
}

/// The controllers' watches keep no `managedFields`: the objects in a reflector store (and
/// those handed to reconciles) are stripped of them, while the server keeps them.
#[tokio::test]
async fn watched_objects_keep_no_managed_fields() {
    let server = FakeApiServer::new();
    let mut with_fields: MonitoredApp = parse(APP);
    with_fields.metadata.managed_fields = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
            manager: Some("kubectl".into()),
            operation: Some("Apply".into()),
            api_version: Some("vigil.dev/v1alpha1".into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
                json!({"f:spec": {"f:selector": {}}}),
            )),
            ..Default::default()
        },
    ]);
    server.create(&with_fields);
    let stored: MonitoredApp = server
        .fetch("monitoredapps", NAMESPACE, "checkout")
        .unwrap();
    assert!(!stored.managed_fields().is_empty(), "the server keeps them");

    let api: Api<MonitoredApp> = Api::namespaced(server.client(), NAMESPACE);
    let (store, trigger) = super::reflected(api, kube::runtime::watcher::Config::default());
    let mut trigger = Box::pin(trigger);
    let delivered = tokio::time::timeout(Duration::from_secs(30), trigger.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // The store is filled once the initial listing is complete: keep the watch running.
    let watch = tokio::spawn(async move { while trigger.next().await.is_some() {} });
    tokio::time::timeout(Duration::from_secs(30), store.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    watch.abort();

    assert!(delivered.managed_fields().is_empty());
    let held = store.state();
    assert_eq!(held.len(), 1);
    assert!(held[0].managed_fields().is_empty());
}

/// A policy change re-checks the SLOs it may route (same namespace, no receivers of their
/// own), and only those.
#[test]
fn policy_changes_recheck_the_slos_they_route() {
    let slo = |ns: &str, name: &str, receivers: &str| -> Arc<Slo> {
        Arc::new(parse(&format!(
            "apiVersion: vigil.dev/v1alpha1\nkind: SLO\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  appRef: {{name: checkout}}\n  sli: {{availability: {{}}}}\n  objective: 99.9\n  alerting: {{receivers: [{receivers}]}}\n"
        )))
    };
    let slos = [
        slo(NAMESPACE, "routed", ""),
        slo(
            NAMESPACE,
            "own-receivers",
            "{name: desk, email: {to: desk@shop.example}}",
        ),
        slo("elsewhere", "other-namespace", ""),
    ];
    let policy: AlertPolicy = parse(&format!(
        "apiVersion: vigil.dev/v1alpha1\nkind: AlertPolicy\nmetadata: {{name: p, namespace: {NAMESPACE}}}\nspec:\n  appRef: {{name: other-app}}\n  rules: [{{name: Down, targetDown: {{}}}}]\n"
    ));
    let names: Vec<String> = super::slos_routed_by(&slos, &policy)
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["routed"]);
}
