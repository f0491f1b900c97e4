//! The analytics engine's cluster side against the in-memory API server: AlertPolicies of the
//! watched namespace become jobs, and the leader writes each policy's `Analytics` condition
//! next to the conditions the operator's controller wrote, only when it changes.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod support;

use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};
use support::fake_api::FakeApiServer;
use vigil_crds::AlertPolicy;
use vigil_operator::analytics::engine::cluster::sync;
use vigil_operator::analytics::engine::jobs::JobKey;
use vigil_operator::analytics::engine::runner::Outcome;

fn policy(namespace: &str) -> AlertPolicy {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: {{name: checkout-alerts, namespace: {namespace}}}
spec:
  appRef: {{name: checkout}}
  rules:
    - name: Traffic
      anomaly: {{query: "sum(rate(http_requests_total[5m]))"}}
    - name: Disk
      forecast: {{query: node_filesystem_used_bytes, horizon: 6h, capacity: 100}}
    - name: Errors
      errorRate: {{thresholdPercent: 5}}
"#
    ))
    .unwrap()
}

fn key(rule: &str) -> JobKey {
    JobKey {
        namespace: "shop".into(),
        policy: "checkout-alerts".into(),
        rule: rule.into(),
    }
}

fn conditions(fake: &FakeApiServer) -> Vec<Value> {
    let object = fake
        .get("alertpolicies", "shop", "checkout-alerts")
        .unwrap();
    object["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn status_patches(fake: &FakeApiServer) -> usize {
    fake.requests()
        .iter()
        .filter(|(method, path)| method == "PATCH" && path.ends_with("/status"))
        .count()
}

/// Jobs come from the watched namespace only; with outcomes, the leader adds `Analytics`
/// (reason of the failing rule, message naming each rule) and keeps `Ready`; the same outcome
/// again writes nothing; a replica that does not lead never writes.
#[tokio::test]
async fn policies_become_jobs_and_get_an_analytics_condition() {
    let fake = FakeApiServer::new();
    fake.create(&policy("shop"));
    fake.create(&policy("staging"));
    let client = fake.client();

    let jobs = sync(&client, Some("shop"), 60, &[], true).await.unwrap();
    let keys: Vec<JobKey> = jobs.iter().map(|j| j.key.clone()).collect();
    assert_eq!(keys, vec![key("Disk"), key("Traffic")]);
    let all = sync(&client, None, 60, &[], true).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(status_patches(&fake), 0, "no outcome yet, no condition");

    let api: Api<AlertPolicy> = Api::namespaced(client.clone(), "shop");
    let ready = json!({"type": "Ready", "status": "True", "reason": "Applied", "message": "ok",
        "lastTransitionTime": "2026-01-01T00:00:00Z"});
    api.patch_status(
        "checkout-alerts",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": [ready]}})),
    )
    .await
    .unwrap();
    let before = status_patches(&fake);

    let outcomes = vec![
        (key("Disk"), Some(Outcome::Fitted { series: 1 })),
        (
            key("Traffic"),
            Some(Outcome::PrometheusFailed {
                category: "PrometheusUnavailable",
                message: "cannot reach prometheus at http://prometheus:9090".into(),
            }),
        ),
    ];
    sync(&client, Some("shop"), 60, &outcomes, false)
        .await
        .unwrap();
    assert_eq!(status_patches(&fake), before, "a non-leader never writes");

    sync(&client, Some("shop"), 60, &outcomes, true)
        .await
        .unwrap();
    let shown = conditions(&fake);
    let analytics = shown
        .iter()
        .find(|c| c["type"] == "Analytics")
        .expect("Analytics");
    assert_eq!(analytics["status"], "False");
    assert_eq!(analytics["reason"], "PrometheusUnavailable");
    assert_eq!(
        analytics["message"],
        "rule Disk: 1 series modelled; rule Traffic: cannot reach prometheus at http://prometheus:9090"
    );
    assert!(
        shown
            .iter()
            .any(|c| c["type"] == "Ready" && c["reason"] == "Applied"),
        "{shown:?}"
    );
    let written = status_patches(&fake);
    assert_eq!(written, before + 1);

    sync(&client, Some("shop"), 60, &outcomes, true)
        .await
        .unwrap();
    assert_eq!(
        status_patches(&fake),
        written,
        "an unchanged condition is not rewritten"
    );

    let healthy = vec![
        (key("Disk"), Some(Outcome::Fitted { series: 1 })),
        (key("Traffic"), Some(Outcome::Fitted { series: 3 })),
    ];
    sync(&client, Some("shop"), 60, &healthy, true)
        .await
        .unwrap();
    let analytics = conditions(&fake)
        .into_iter()
        .find(|c| c["type"] == "Analytics")
        .unwrap();
    assert_eq!(
        (analytics["status"].clone(), analytics["reason"].clone()),
        (json!("True"), json!("Fitted"))
    );
}
