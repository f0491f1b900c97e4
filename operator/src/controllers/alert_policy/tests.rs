//! `AlertPolicy` controller behaviour against the in-memory API server.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use vigil_crds::{AlertPolicy, MonitoredApp};

use super::*;
use crate::controllers::aggregate::{
    policy_rules_key, ALERTMANAGER_KEY, ALERTMANAGER_SECRET, FINALIZER, PROMETHEUS_CONFIG_MAP,
};
use crate::controllers::fixtures::{self, condition, create, one_request, APP, NAMESPACE, POLICY};
use crate::controllers::{error_policy, Reloader, Settings};
use crate::fake_api::FakeApiServer;

fn create_app(server: &FakeApiServer) {
    create::<MonitoredApp>(server, APP);
}

fn create_policy(server: &FakeApiServer, yaml: &str) -> Arc<AlertPolicy> {
    create(server, yaml)
}

fn stored(server: &FakeApiServer) -> Arc<AlertPolicy> {
    fixtures::stored(server, "crashes", NAMESPACE)
}

fn stored_json(server: &FakeApiServer) -> Value {
    server.get("alertpolicies", NAMESPACE, "crashes").unwrap()
}

fn settings() -> Settings {
    Settings {
        alertmanager_namespace: "vigil-system".into(),
        ..Settings::default()
    }
}

/// An `appRef` naming no `MonitoredApp` is `AppNotFound`: a permanent error whose message says
/// which reference is dangling and how to fix it; nothing is applied. Creating the app fixes it.
#[tokio::test]
async fn dangling_app_ref_is_app_not_found_until_the_app_exists() {
    let server = FakeApiServer::new();
    let ctx = server.context(settings());
    let policy = create_policy(&server, POLICY);

    let error = reconcile(policy.clone(), ctx.clone()).await.unwrap_err();
    assert_eq!(error.category(), "AppNotFound");
    assert_eq!(
        error_policy(policy, &error, ctx.clone()),
        Action::await_change()
    );
    let ready = condition(&stored_json(&server), "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "AppNotFound");
    assert_eq!(
        ready["message"],
        r#"spec.appRef "checkout" names no MonitoredApp in namespace "shop"; create it or fix spec.appRef"#
    );
    assert!(server.list("prometheusrules", "shop").is_empty());
    assert!(server
        .list("events", "shop")
        .iter()
        .any(|e| e["reason"] == "AppNotFound" && e["type"] == "Warning"));

    create_app(&server);
    reconcile(stored(&server), ctx).await.unwrap();
    assert_eq!(condition(&stored_json(&server), "Ready")["status"], "True");
}

/// With prometheus-operator: a `PrometheusRule` and an `AlertmanagerConfig`, owned by the
/// policy; status counts the rules and receivers and says where they are; no finalizer.
#[tokio::test]
async fn with_prometheus_operator_rules_and_routes_are_custom_resources() {
    let server = FakeApiServer::new();
    let ctx = server.context(settings());
    create_app(&server);
    let policy = create_policy(&server, POLICY);
    reconcile(policy.clone(), ctx).await.unwrap();

    let rule = server
        .get("prometheusrules", "shop", "vigil-crashes")
        .unwrap();
    assert_eq!(
        rule["metadata"]["ownerReferences"][0]["uid"],
        json!(policy.metadata.uid.clone().unwrap())
    );
    assert_eq!(
        rule["spec"]["groups"][0]["name"],
        "vigil.shop.crashes.crashes"
    );
    let routes = server
        .get("alertmanagerconfigs", "shop", "vigil-crashes")
        .unwrap();
    assert_eq!(
        routes["metadata"]["labels"]["vigil.dev/owner"],
        "alertpolicy.crashes"
    );
    assert!(server
        .get("secrets", "vigil-system", ALERTMANAGER_SECRET)
        .is_none());
    assert!(server
        .get("configmaps", "shop", PROMETHEUS_CONFIG_MAP)
        .is_none());

    let stored = stored_json(&server);
    assert_eq!(stored["status"]["receivers"], 2);
    assert!(stored["status"]["rules"].as_i64().unwrap() >= 1);
    assert_eq!(stored["status"]["observedGeneration"], 1);
    let rules = condition(&stored, "RulesApplied");
    assert_eq!(rules["status"], "True");
    assert!(rules["message"]
        .as_str()
        .unwrap()
        .contains("PrometheusRule vigil-crashes"));
    assert!(condition(&stored, "RoutesApplied")["message"]
        .as_str()
        .unwrap()
        .contains("AlertmanagerConfig vigil-crashes"));
    assert!(stored["metadata"].get("finalizers").is_none());
}

/// An in-object mistake (an escalation step naming an undeclared receiver) is `InvalidSpec`
/// with the field in the message.
#[tokio::test]
async fn invalid_escalation_is_reported_with_its_field() {
    let server = FakeApiServer::new();
    let ctx = server.context(settings());
    create_app(&server);
    let yaml = format!("{POLICY}  escalation:\n    - {{after: 15m, receiver: nobody}}\n");
    let policy = create_policy(&server, &yaml);

    let error = reconcile(policy, ctx).await.unwrap_err();
    assert_eq!(error.category(), "InvalidSpec");
    let ready = condition(&stored_json(&server), "Ready");
    assert!(ready["message"]
        .as_str()
        .unwrap()
        .starts_with("spec.escalation[0].receiver: no receiver named \"nobody\""));
    assert!(server.list("prometheusrules", "shop").is_empty());
}

/// A rule whose alerts would reach no receiver (the engineering audience takes only
/// `critical`, the rule is a `warning`) is `InvalidSpec`: the `Ready` condition names the rule,
/// the audience and why, and nothing is applied.
#[tokio::test]
async fn alert_without_a_receiver_is_reported_in_the_status() {
    let server = FakeApiServer::new();
    let ctx = server.context(settings());
    create_app(&server);
    let yaml = POLICY
        .replace("      severity: critical\n", "      severity: warning\n")
        .replace(
            "    - audience: engineering\n",
            "    - audience: engineering\n      severities: [critical]\n",
        );
    let policy = create_policy(&server, &yaml);

    let error = reconcile(policy, ctx).await.unwrap_err();
    assert_eq!(error.category(), "InvalidSpec");
    let ready = condition(&stored_json(&server), "Ready");
    assert_eq!(ready["status"], "False");
    assert!(
        ready["message"].as_str().unwrap().starts_with(
            "spec.rules[0]: alert CheckoutCrash (severity warning) for audience engineering reaches no receiver: the receivers of audience engineering only take severities [critical]"
        ),
        "{ready}"
    );
    assert!(server.list("prometheusrules", "shop").is_empty());
}

fn alertmanager_yml(server: &FakeApiServer) -> String {
    let secret: Secret = server
        .fetch("secrets", "vigil-system", ALERTMANAGER_SECRET)
        .unwrap();
    String::from_utf8(secret.data.unwrap()[ALERTMANAGER_KEY].0.clone()).unwrap()
}

/// Without prometheus-operator: the rule file goes into the namespace's shared ConfigMap and
/// the routes into the shared `alertmanager.yml` Secret, Alertmanager is asked to reload, and
/// deleting the policy re-renders both without it before the policy goes (finalizer).
#[tokio::test]
async fn without_prometheus_operator_shared_outputs_are_maintained_and_cleaned() {
    let server = FakeApiServer::new().without_group("monitoring.coreos.com");
    let alertmanager = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", alertmanager.local_addr().unwrap());
    let received = tokio::spawn(one_request(alertmanager));
    let reloader = Reloader::new(None, Some(&url), Duration::ZERO).unwrap();
    let ctx = server.context_with(settings(), reloader);
    create_app(&server);
    reconcile(create_policy(&server, POLICY), ctx.clone())
        .await
        .unwrap();

    let shared = server
        .get("configmaps", "shop", PROMETHEUS_CONFIG_MAP)
        .unwrap();
    let rules = shared["data"][policy_rules_key("crashes")]
        .as_str()
        .unwrap();
    assert!(rules.contains("alert: CheckoutCrash"), "{rules}");
    let yml = alertmanager_yml(&server);
    assert!(yml.contains("shop/crashes/oncall"), "{yml}");
    assert_eq!(
        stored_json(&server)["metadata"]["finalizers"],
        json!([FINALIZER])
    );
    let request = tokio::time::timeout(Duration::from_secs(10), received)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(request, "POST /-/reload HTTP/1.1");
    assert!(condition(&stored_json(&server), "RoutesApplied")["message"]
        .as_str()
        .unwrap()
        .contains("Secret vigil-system/vigil-alertmanager"));

    server.delete("alertpolicies", "shop", "crashes");
    reconcile(stored(&server), ctx).await.unwrap();

    assert!(server.get("alertpolicies", "shop", "crashes").is_none());
    let shared = server
        .get("configmaps", "shop", PROMETHEUS_CONFIG_MAP)
        .unwrap();
    assert!(shared["data"].get(policy_rules_key("crashes")).is_none());
    let yml = alertmanager_yml(&server);
    assert!(!yml.contains("shop/crashes/"), "{yml}");
}
