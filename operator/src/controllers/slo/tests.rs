//! `SLO` controller behaviour against the in-memory API server.

use std::sync::Arc;

use serde_json::{json, Value};
use vigil_crds::{MonitoredApp, Slo};

use super::*;
use crate::controllers::aggregate::{
    slo_rules_key, ALERTMANAGER_KEY, ALERTMANAGER_SECRET, PROMETHEUS_CONFIG_MAP,
};
use crate::controllers::fixtures::{condition, create, APP, NAMESPACE};
use crate::controllers::Settings;
use crate::fake_api::FakeApiServer;

const SLO: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: SLO
metadata: {name: availability, namespace: shop}
spec:
  appRef: {name: checkout}
  sli:
    availability: {metric: http_requests_total}
  objective: 99.9
  window: 30d
  alerting:
    receivers:
      - name: sre-mail
        email: {to: sre@shop.example}
"#;

fn setup(server: &FakeApiServer) -> Arc<Slo> {
    create::<MonitoredApp>(server, APP);
    create(server, SLO)
}

fn stored(server: &FakeApiServer) -> Value {
    server.get("slos", NAMESPACE, "availability").unwrap()
}

/// With prometheus-operator and grafana-operator: a `PrometheusRule`, the dashboard ConfigMap
/// and a `GrafanaDashboard`, all owned by the SLO; the status counts the rules.
#[tokio::test]
async fn with_both_operators_every_output_is_applied() {
    let server = FakeApiServer::new();
    let ctx = server.context(Settings::default());
    let slo = setup(&server);
    reconcile(slo.clone(), ctx).await.unwrap();

    let uid = json!(slo.metadata.uid.clone().unwrap());
    let rule = server
        .get("prometheusrules", "shop", "vigil-slo-availability")
        .unwrap();
    assert_eq!(rule["metadata"]["ownerReferences"][0]["uid"], uid);
    let dashboard = server
        .get("configmaps", "shop", "vigil-slo-availability")
        .unwrap();
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(dashboard["metadata"]["ownerReferences"][0]["uid"], uid);
    let cr = server
        .get("grafanadashboards", "shop", "vigil-slo-availability")
        .unwrap();
    assert_eq!(
        cr["metadata"]["labels"]["vigil.dev/owner"],
        "slo.availability"
    );

    let stored = stored(&server);
    assert!(stored["status"]["recordingRules"].as_i64().unwrap() > 0);
    // Four burn tiers (page: engineering, ticket: support), the absent-SLI ticket and the
    // budget-forecast ticket.
    assert_eq!(stored["status"]["alerts"].as_i64().unwrap(), 6);
    assert!(stored["status"].get("warnings").is_none());
    assert_eq!(condition(&stored, "RulesApplied")["status"], "True");
    assert!(stored["metadata"].get("finalizers").is_none());
}

/// The configured output labels and annotations reach the applied `PrometheusRule` and
/// `GrafanaDashboard` (kube-prometheus-stack selects rules on `release`), the dashboard gets
/// the configured instance selector and folder, the alerts the configured severities, and a
/// window longer than Prometheus' retention is warned about in the status.
#[tokio::test]
async fn configured_outputs_reach_the_applied_objects() {
    use crate::render::outputs::{ObjectExtras, Outputs};
    use crate::render::slo::SloSeverities;
    let server = FakeApiServer::new();
    let release = ObjectExtras {
        labels: [("release".to_owned(), "kube-prometheus-stack".to_owned())].into(),
        annotations: [("team".to_owned(), "sre".to_owned())].into(),
    };
    let settings = Settings {
        outputs: Outputs {
            prometheus_rule: release.clone(),
            grafana_dashboard: release,
            grafana_instance_selector: [("grafana".to_owned(), "main".to_owned())].into(),
            grafana_folder: Some("SLOs".to_owned()),
            slo_severities: SloSeverities {
                page: "P1".to_owned(),
                ticket: "P3".to_owned(),
            },
            ..Outputs::default()
        },
        prometheus_retention: Some(std::time::Duration::from_secs(15 * 86_400)),
        ..Settings::default()
    };
    reconcile(setup(&server), server.context(settings))
        .await
        .unwrap();

    let rule = server
        .get("prometheusrules", "shop", "vigil-slo-availability")
        .unwrap();
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(
        rule["metadata"]["labels"]["vigil.dev/owner"],
        "slo.availability"
    );
    assert_eq!(rule["metadata"]["annotations"]["team"], "sre");
    let severities: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["labels"]["severity"].as_str())
        .collect();
    assert!(
        severities.contains(&"P1") && severities.contains(&"P3"),
        "{severities:?}"
    );
    let cr = server
        .get("grafanadashboards", "shop", "vigil-slo-availability")
        .unwrap();
    assert_eq!(cr["metadata"]["labels"]["release"], "kube-prometheus-stack");
    assert_eq!(
        cr["spec"]["instanceSelector"],
        json!({"matchLabels": {"grafana": "main"}})
    );
    assert_eq!(cr["spec"]["folder"], "SLOs");
    let config_map = server
        .get("configmaps", "shop", "vigil-slo-availability")
        .unwrap();
    assert!(config_map["metadata"]["labels"].get("release").is_none());

    let warnings = stored(&server)["status"]["warnings"].clone();
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("window 30d is longer than the 15d"),
        "{warnings}"
    );
}

/// Without grafana-operator only the dashboard ConfigMap is written.
#[tokio::test]
async fn without_grafana_operator_only_the_config_map_is_written() {
    let server = FakeApiServer::new().without_group("grafana.integreatly.org");
    let ctx = server.context(Settings::default());
    reconcile(setup(&server), ctx).await.unwrap();

    assert!(server
        .get("configmaps", "shop", "vigil-slo-availability")
        .is_some());
    assert!(server.list("grafanadashboards", "shop").is_empty());
    assert!(server
        .get("prometheusrules", "shop", "vigil-slo-availability")
        .is_some());
    let ready = condition(&stored(&server), "Ready");
    assert!(ready["message"]
        .as_str()
        .unwrap()
        .contains("(ConfigMap vigil-slo-availability)"));
}

/// Without prometheus-operator the SLO's rules go into the shared ConfigMap; deleting the SLO
/// takes them out again.
#[tokio::test]
async fn without_prometheus_operator_rules_go_to_the_shared_config_map() {
    let server = FakeApiServer::new().without_group("monitoring.coreos.com");
    let ctx = server.context(Settings::default());
    reconcile(setup(&server), ctx.clone()).await.unwrap();

    let shared = server
        .get("configmaps", "shop", PROMETHEUS_CONFIG_MAP)
        .unwrap();
    let rules = shared["data"][slo_rules_key("availability")]
        .as_str()
        .unwrap();
    assert!(rules.contains("SLOErrorBudgetBurn"), "{rules}");
    assert!(condition(&stored(&server), "RulesApplied")["message"]
        .as_str()
        .unwrap()
        .contains("file slo-availability.rules.yml"));

    server.delete("slos", "shop", "availability");
    reconcile(
        Arc::new(server.fetch("slos", "shop", "availability").unwrap()),
        ctx,
    )
    .await
    .unwrap();
    assert!(server.get("slos", "shop", "availability").is_none());
    assert!(server
        .get("configmaps", "shop", "vigil-slo-availability")
        .is_none());
    let shared = server
        .get("configmaps", "shop", PROMETHEUS_CONFIG_MAP)
        .unwrap();
    assert!(shared["data"].get(slo_rules_key("availability")).is_none());
}

/// An objective's own receivers (`spec.alerting.receivers`) get its alerts: as an
/// `AlertmanagerConfig` owned by it when prometheus-operator serves one, else as routes in the
/// shared `alertmanager.yml`, which deleting the objective takes out again.
#[tokio::test]
async fn own_receivers_are_routed_in_both_modes() {
    let server = FakeApiServer::new();
    let ctx = server.context(Settings::default());
    let slo = setup(&server);
    reconcile(slo.clone(), ctx).await.unwrap();
    let cr = server
        .get("alertmanagerconfigs", "shop", "vigil-slo-availability")
        .unwrap();
    assert_eq!(
        cr["metadata"]["ownerReferences"][0]["uid"],
        json!(slo.metadata.uid.clone().unwrap())
    );
    assert_eq!(cr["spec"]["receivers"][0]["name"], "sre-mail");
    assert!(server
        .get("secrets", "vigil-system", ALERTMANAGER_SECRET)
        .is_none());

    let server = FakeApiServer::new().without_group("monitoring.coreos.com");
    let ctx = server.context(Settings::default());
    reconcile(setup(&server), ctx.clone()).await.unwrap();
    let secret: k8s_openapi::api::core::v1::Secret = server
        .fetch("secrets", "vigil-system", ALERTMANAGER_SECRET)
        .unwrap();
    let data = secret.data.unwrap_or_default();
    let yaml = String::from_utf8(data[ALERTMANAGER_KEY].0.clone()).unwrap();
    assert!(
        yaml.contains("name: shop/slo/availability/sre-mail"),
        "{yaml}"
    );
    assert!(yaml.contains("slo=\"availability\""), "{yaml}");

    server.delete("slos", "shop", "availability");
    reconcile(
        Arc::new(server.fetch("slos", "shop", "availability").unwrap()),
        ctx,
    )
    .await
    .unwrap();
    let secret: k8s_openapi::api::core::v1::Secret = server
        .fetch("secrets", "vigil-system", ALERTMANAGER_SECRET)
        .unwrap();
    let data = secret.data.unwrap_or_default();
    let yaml = String::from_utf8(data[ALERTMANAGER_KEY].0.clone()).unwrap();
    assert!(!yaml.contains("sre-mail"), "{yaml}");
}

/// An objective with neither receivers of its own nor a policy on its app would page nobody:
/// `InvalidSpec`, and the `Ready` condition names `spec.alerting.receivers`; once a policy
/// routes its audiences, it is ready.
#[tokio::test]
async fn objective_paging_nobody_is_reported_in_the_status() {
    let server = FakeApiServer::new();
    let ctx = server.context(Settings::default());
    create::<MonitoredApp>(&server, APP);
    let without = SLO.replace(
        "  alerting:\n    receivers:\n      - name: sre-mail\n        email: {to: sre@shop.example}\n",
        "",
    );
    assert!(!without.contains("receivers"), "{without}");
    let slo: Arc<Slo> = create(&server, &without);
    let error = reconcile(slo, ctx.clone()).await.unwrap_err();
    assert_eq!(error.category(), "InvalidSpec");
    let ready = condition(&stored(&server), "Ready");
    assert_eq!(ready["status"], "False");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.alerting.receivers: alert SLOErrorBudgetBurn"),
        "{ready}"
    );

    let policy = crate::controllers::fixtures::POLICY.replace(
        "  audiences:\n    - audience: engineering\n",
        "  audiences:\n    - audience: support\n      receivers:\n        - name: desk\n          email: {to: desk@shop.example}\n    - audience: engineering\n",
    );
    create::<vigil_crds::AlertPolicy>(&server, &policy);
    reconcile(
        Arc::new(server.fetch("slos", "shop", "availability").unwrap()),
        ctx,
    )
    .await
    .unwrap();
    assert_eq!(condition(&stored(&server), "Ready")["status"], "True");
}
