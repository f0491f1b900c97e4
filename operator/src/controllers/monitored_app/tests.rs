//! `MonitoredApp` controller behaviour against the in-memory API server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::controller::Action;
use serde_json::json;
use vigil_crds::MonitoredApp;

use super::*;
use crate::controllers::aggregate::{FINALIZER, PROMETHEUS_CONFIG_MAP, SCRAPE_CONFIGS_KEY};
use crate::controllers::fixtures::{condition, event_reasons};
use crate::controllers::{error_policy, Settings};
use crate::fake_api::FakeApiServer;
use crate::render::agent_config::CONFIG_HASH_ANNOTATION;
use crate::render::inject::{PodSecurityLevel, INJECTED};

const APP: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: checkout, namespace: shop}
spec:
  selector: {matchLabels: {app: checkout}}
  clientType: banking
  metrics: {port: http-metrics, interval: 15s}
"#;

fn app_from(yaml: &str) -> MonitoredApp {
    serde_yaml::from_str(yaml).unwrap()
}

/// Creates `app` in the server and returns it as stored (with uid and generation).
fn create(server: &FakeApiServer, app: &MonitoredApp) -> Arc<MonitoredApp> {
    server.create(app);
    stored(server)
}

fn stored(server: &FakeApiServer) -> Arc<MonitoredApp> {
    Arc::new(server.fetch("monitoredapps", "shop", "checkout").unwrap())
}

fn pod(name: &str, labels: &[(&str, &str)], injected: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            annotations: injected.map(|h| BTreeMap::from([(INJECTED.to_owned(), h.to_owned())])),
            ..ObjectMeta::default()
        },
        ..Pod::default()
    }
}

/// Create → apply → status: the agent ConfigMap and both PodMonitors exist, owned by the app
/// and labelled for pruning, and the status counts selected, injected and stale pods.
#[tokio::test]
async fn create_applies_children_and_reports_pod_counts() {
    let server = FakeApiServer::new();
    let ctx = server.context(Settings::default());
    let app = create(&server, &app_from(APP));
    let current = sidecar_for(&app, &ctx.settings, PodSecurityLevel::Privileged).spec_hash();
    server.create(&pod("a", &[("app", "checkout")], Some(&current)));
    server.create(&pod("b", &[("app", "checkout")], Some("0000000000000000")));
    server.create(&pod("c", &[("app", "checkout")], None));
    server.create(&pod("other", &[("app", "cart")], Some(&current)));

    let action = reconcile(app.clone(), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(ctx.settings.resync));

    let config = server
        .get("configmaps", "shop", "vigil-agent-checkout")
        .unwrap();
    let owner = &config["metadata"]["ownerReferences"][0];
    assert_eq!(owner["uid"], json!(app.metadata.uid.clone().unwrap()));
    assert_eq!(owner["controller"], json!(true));
    assert_eq!(
        config["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "vigil"
    );
    assert_eq!(
        config["metadata"]["labels"]["vigil.dev/owner"],
        "monitoredapp.checkout"
    );
    assert!(server
        .get("podmonitors", "shop", "vigil-checkout")
        .is_some());
    assert!(server
        .get("podmonitors", "shop", "vigil-agent-checkout")
        .is_some());
    assert!(server
        .get("configmaps", "shop", PROMETHEUS_CONFIG_MAP)
        .is_none());

    let stored = server.get("monitoredapps", "shop", "checkout").unwrap();
    let status = &stored["status"];
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["selectedPods"], 3);
    assert_eq!(status["injectedPods"], 2);
    assert_eq!(status["stalePods"], 1);
    assert_eq!(
        status["configHash"],
        config["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    );
    assert_eq!(condition(&stored, "Ready")["status"], "True");
    assert_eq!(condition(&stored, "ConfigRendered")["status"], "True");
    let injected = condition(&stored, "Injected");
    assert_eq!(injected["status"], "False");
    assert_eq!(injected["reason"], "PodsNotInjected");
    assert!(event_reasons(&server).contains(&"Applied".to_owned()));
    // Without prometheus-operator in the way, the app needs no finalizer.
    assert!(stored["metadata"].get("finalizers").is_none());
    assert_eq!(
        ctx.metrics
            .reconciles
            .with_label_values(&["MonitoredApp"])
            .get(),
        1
    );
}

/// Update: a spec change re-renders the children, prunes the PodMonitor that is no longer
/// desired and advances observedGeneration.
#[tokio::test]
async fn spec_change_updates_children_and_prunes_the_rest() {
    let server = FakeApiServer::new();
    let ctx = server.context(Settings::default());
    let app = create(&server, &app_from(APP));
    reconcile(app, ctx.clone()).await.unwrap();
    let before = server
        .get("configmaps", "shop", "vigil-agent-checkout")
        .unwrap();

    // Dropping `metrics` removes the application's PodMonitor, keeps the agent's.
    let mut spec = server.get("monitoredapps", "shop", "checkout").unwrap()["spec"].clone();
    spec.as_object_mut().unwrap().remove("metrics");
    spec["clientType"] = json!("generic");
    server.update_spec("monitoredapps", "shop", "checkout", spec);
    reconcile(stored(&server), ctx.clone()).await.unwrap();

    assert!(server
        .get("podmonitors", "shop", "vigil-checkout")
        .is_none());
    assert!(server
        .get("podmonitors", "shop", "vigil-agent-checkout")
        .is_some());
    let after = server
        .get("configmaps", "shop", "vigil-agent-checkout")
        .unwrap();
    assert_ne!(before["data"], after["data"]);
    let stored = server.get("monitoredapps", "shop", "checkout").unwrap();
    assert_eq!(stored["metadata"]["generation"], 2);
    assert_eq!(stored["status"]["observedGeneration"], 2);
}

/// Delete: the children go with the app (owner references, garbage-collected).
#[tokio::test]
async fn deleting_the_app_removes_its_children() {
    let server = FakeApiServer::new();
    let ctx = server.context(Settings::default());
    reconcile(create(&server, &app_from(APP)), ctx)
        .await
        .unwrap();
    assert!(server
        .get("configmaps", "shop", "vigil-agent-checkout")
        .is_some());

    server.delete("monitoredapps", "shop", "checkout");

    assert!(server.get("monitoredapps", "shop", "checkout").is_none());
    assert!(server.list("configmaps", "shop").is_empty());
    assert!(server.list("podmonitors", "shop").is_empty());
}

/// Invalid spec: Ready=False with a message naming the field and the fix, a Warning Event,
/// no children, and the controller waits for a change instead of retrying.
#[tokio::test]
async fn invalid_spec_sets_a_fix_it_condition_and_creates_nothing() {
    let server = FakeApiServer::new();
    let ctx = server.context(Settings::default());
    let mut app = app_from(APP);
    app.spec.selector = Default::default();
    let app = create(&server, &app);

    let error = reconcile(app.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(error.category(), "InvalidSpec");
    assert!(error.is_permanent());
    assert_eq!(
        error_policy(app, &error, ctx.clone()),
        Action::await_change()
    );

    let stored = server.get("monitoredapps", "shop", "checkout").unwrap();
    let ready = condition(&stored, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "InvalidSpec");
    let message = ready["message"].as_str().unwrap();
    assert!(message.starts_with("spec.selector: "), "{message}");
    assert!(
        message.contains("set matchLabels or matchExpressions"),
        "{message}"
    );
    assert_eq!(stored["status"]["observedGeneration"], 1);
    assert!(server.list("configmaps", "shop").is_empty());
    assert!(server.list("podmonitors", "shop").is_empty());
    assert!(event_reasons(&server).contains(&"InvalidSpec".to_owned()));
    assert_eq!(
        ctx.metrics
            .failures
            .with_label_values(&["MonitoredApp", "InvalidSpec"])
            .get(),
        1
    );
}

/// Conflict on apply: a transient error with its own category, requeued with growing backoff;
/// the next attempt succeeds.
#[tokio::test]
async fn apply_conflict_is_transient_and_requeued() {
    let server = FakeApiServer::new();
    let ctx = server.context(Settings::default());
    let app = create(&server, &app_from(APP));
    server.fail_applies("configmaps", 2);

    let error = reconcile(app.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(error.category(), "ApplyConflict");
    assert!(!error.is_permanent());
    assert_eq!(
        error_policy(app.clone(), &error, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    let error = reconcile(stored(&server), ctx.clone()).await.unwrap_err();
    assert_eq!(
        error_policy(app, &error, ctx.clone()),
        Action::requeue(Duration::from_secs(10))
    );
    let stored_app = server.get("monitoredapps", "shop", "checkout").unwrap();
    assert_eq!(condition(&stored_app, "Ready")["reason"], "ApplyConflict");
    // The verdict is about this generation, transient or not (kubectl wait relies on it).
    assert_eq!(stored_app["status"]["observedGeneration"], 1);
    assert!(condition(&stored_app, "Ready")["message"]
        .as_str()
        .unwrap()
        .contains("retries with backoff"));

    reconcile(stored(&server), ctx).await.unwrap();
    assert!(server
        .get("configmaps", "shop", "vigil-agent-checkout")
        .is_some());
    let stored_app = server.get("monitoredapps", "shop", "checkout").unwrap();
    assert_eq!(condition(&stored_app, "Ready")["status"], "True");
}

/// Without prometheus-operator: no PodMonitors; the scrape configs go into the namespace's
/// shared ConfigMap, the app gets the finalizer, and deleting the app removes its entry before
/// the app goes.
#[tokio::test]
async fn without_prometheus_operator_scrape_configs_go_to_the_shared_config_map() {
    let server = FakeApiServer::new().without_group("monitoring.coreos.com");
    let ctx = server.context(Settings::default());
    reconcile(create(&server, &app_from(APP)), ctx.clone())
        .await
        .unwrap();

    assert!(server
        .list("configmaps", "shop")
        .iter()
        .all(|c| c["metadata"]["name"] != "vigil-checkout"));
    let shared = server
        .get("configmaps", "shop", PROMETHEUS_CONFIG_MAP)
        .unwrap();
    let scrape = shared["data"][SCRAPE_CONFIGS_KEY].as_str().unwrap();
    assert!(scrape.contains("job_name: vigil/shop/checkout"), "{scrape}");
    assert!(
        scrape.contains("job_name: vigil-agent/shop/checkout"),
        "{scrape}"
    );
    let stored_app = server.get("monitoredapps", "shop", "checkout").unwrap();
    assert_eq!(stored_app["metadata"]["finalizers"], json!([FINALIZER]));
    assert_eq!(
        stored_app["status"]["conditions"][0]["type"], "ConfigRendered",
        "conditions are sorted by type"
    );

    server.delete("monitoredapps", "shop", "checkout");
    let deleting = stored(&server);
    assert!(deleting.metadata.deletion_timestamp.is_some());
    reconcile(deleting, ctx).await.unwrap();

    assert!(server.get("monitoredapps", "shop", "checkout").is_none());
    assert!(server
        .get("configmaps", "shop", "vigil-agent-checkout")
        .is_none());
    let shared = server
        .get("configmaps", "shop", PROMETHEUS_CONFIG_MAP)
        .unwrap();
    assert_eq!(shared["data"][SCRAPE_CONFIGS_KEY], "scrape_configs: []\n");
}

/// Pod counting: terminating pods are not counted; stale means injected with another hash.
#[test]
fn pod_counts_follow_the_sidecar_hash() {
    let meta = |injected: Option<&str>, terminating: bool| ObjectMeta {
        annotations: injected.map(|h| BTreeMap::from([(INJECTED.to_owned(), h.to_owned())])),
        deletion_timestamp: terminating.then_some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        ),
        ..ObjectMeta::default()
    };
    let pods = [
        meta(Some("new"), false),
        meta(Some("old"), false),
        meta(None, false),
        meta(Some("old"), true),
    ];
    assert_eq!(
        count_pods(&pods, "new"),
        PodCounts {
            selected: 3,
            injected: 2,
            stale: 1
        }
    );
}

/// One bad object never stalls the others: reconciling many apps at once, one of them
/// invalid, leaves every valid one applied and Ready and only the invalid one failed.
#[tokio::test]
async fn one_invalid_app_does_not_stall_the_others() {
    let server = FakeApiServer::new();
    let ctx = server.context(Settings::default());
    let mut apps = Vec::new();
    for i in 0..50 {
        let mut app = app_from(&APP.replace("checkout", &format!("app-{i}")));
        if i == 7 {
            app.spec.selector = Default::default();
        }
        server.create(&app);
        let stored: MonitoredApp = server
            .fetch("monitoredapps", "shop", &format!("app-{i}"))
            .unwrap();
        apps.push(Arc::new(stored));
    }
    let results =
        futures::future::join_all(apps.into_iter().map(|a| reconcile(a, ctx.clone()))).await;

    let failed: Vec<usize> = (0..50).filter(|i| results[*i].is_err()).collect();
    assert_eq!(failed, vec![7]);
    for i in (0..50).filter(|i| *i != 7) {
        let stored = server
            .get("monitoredapps", "shop", &format!("app-{i}"))
            .unwrap();
        assert_eq!(condition(&stored, "Ready")["status"], "True");
        assert!(server
            .get("configmaps", "shop", &format!("vigil-agent-app-{i}"))
            .is_some());
    }
}

/// An app collecting container logs, as most do.
const LOGGING_APP: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: checkout, namespace: shop}
spec:
  selector: {matchLabels: {app: checkout}}
  logs: {containerLogs: true, format: json}
"#;

fn namespace(level: Option<&str>) -> serde_json::Value {
    let mut ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}});
    if let Some(level) = level {
        ns["metadata"]["labels"] = json!({"pod-security.kubernetes.io/enforce": level});
    }
    ns
}

/// In a namespace enforcing Pod Security `baseline`, the status says in one sentence that pod
/// logs are not collected, why (the label), and how to change it; pods injected without the
/// log mount count as current, not stale. Without the label, logs are collected.
#[tokio::test]
async fn pod_security_level_is_reported_as_pod_logs() {
    for (level, ok) in [
        (Some("baseline"), false),
        (Some("privileged"), true),
        (None, true),
    ] {
        let server = FakeApiServer::new();
        server.create(&namespace(level));
        let ctx = server.context(Settings::default());
        let app = create(&server, &app_from(LOGGING_APP));
        let expected = PodSecurityLevel::enforced_by(
            level
                .map(|l| {
                    BTreeMap::from([(
                        "pod-security.kubernetes.io/enforce".to_owned(),
                        l.to_owned(),
                    )])
                })
                .as_ref(),
        );
        let current = sidecar_for(&app, &ctx.settings, expected).spec_hash();
        server.create(&pod("a", &[("app", "checkout")], Some(&current)));
        reconcile(app, ctx).await.unwrap();

        let stored = server.get("monitoredapps", "shop", "checkout").unwrap();
        assert_eq!(stored["status"]["stalePods"], 0, "{level:?}");
        assert_eq!(condition(&stored, "Ready")["status"], "True");
        let logs = condition(&stored, "PodLogs");
        assert_eq!(
            logs["status"],
            if ok { "True" } else { "False" },
            "{level:?}: {logs}"
        );
        if !ok {
            assert_eq!(logs["reason"], "PodSecurityForbidsHostPath");
            let message = logs["message"].as_str().unwrap();
            for part in [
                "\"shop\"",
                "baseline",
                "pod-security.kubernetes.io/enforce=privileged",
                "OTLP",
            ] {
                assert!(message.contains(part), "{part} missing: {message}");
            }
        }
    }
}

/// When the API server refuses the pods of a selected workload (its ReplicaSet records
/// `FailedCreate`), `Injected` says so with the server's message — not that the selector
/// matches nothing. A refused workload the app does not select is not its business.
#[tokio::test]
async fn refused_pods_are_reported_not_blamed_on_the_selector() {
    let server = FakeApiServer::new();
    let ctx = server.context(Settings::default());
    let app = create(&server, &app_from(LOGGING_APP));
    let replica_set = |name: &str, app_label: &str| {
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {
                "selector": {"matchLabels": {"app": app_label}},
                "template": {"metadata": {"labels": {"app": app_label}}, "spec": {"containers": [{"name": "app", "image": "shop/app:1"}]}}
            }
        })
    };
    let failed = |name: &str, rs: &str, message: &str| {
        json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": "shop"},
            "involvedObject": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "namespace": "shop"},
            "reason": "FailedCreate", "type": "Warning",
            "message": message,
            "lastTimestamp": "2026-12-06T00:00:00Z"
        })
    };
    server.create(&replica_set("checkout-7f9c", "checkout"));
    server.create(&replica_set("cart-5d4b", "cart"));
    // Without refusals, no pods is what it says: the selector matches nothing.
    reconcile(app.clone(), ctx.clone()).await.unwrap();
    let before = server.get("monitoredapps", "shop", "checkout").unwrap();
    assert_eq!(condition(&before, "Injected")["reason"], "NoPodsSelected");

    server.create(&failed(
        "checkout-7f9c.1",
        "checkout-7f9c",
        r#"pods "checkout-7f9c-x2" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "vigil-pod-logs")"#,
    ));
    server.create(&failed(
        "cart-5d4b.1",
        "cart-5d4b",
        "pods \"cart-5d4b-a\" is forbidden: exceeded quota",
    ));
    reconcile(stored(&server), ctx.clone()).await.unwrap();

    let after = server.get("monitoredapps", "shop", "checkout").unwrap();
    let injected = condition(&after, "Injected");
    assert_eq!(injected["status"], "False");
    assert_eq!(injected["reason"], "PodsRejected");
    let message = injected["message"].as_str().unwrap();
    assert!(
        message.starts_with("ReplicaSet/checkout-7f9c cannot create pods: "),
        "{message}"
    );
    assert!(
        message.contains("hostPath volumes") && message.contains("vigil.dev/inject=false"),
        "{message}"
    );
    assert!(!message.contains("cart"), "{message}");
}
