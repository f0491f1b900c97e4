//! The analytics engine's SLO discovery against the in-memory API server: SLOs of the watched
//! namespace become budget jobs next to the policies' rule jobs, and the leader writes each
//! SLO's `Analytics` condition beside the conditions the SLO controller wrote. Without the SLO
//! kind being served, the policies' jobs still come.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod support;

use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};
use support::fake_api::{FakeApiServer, FakeHttpServer};
use vigil_crds::{AlertPolicy, Slo};
use vigil_operator::analytics::engine::cluster::sync;
use vigil_operator::analytics::engine::jobs::{JobKey, JobKind};
use vigil_operator::analytics::engine::runner::Outcome;

fn slo(namespace: &str) -> Slo {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: vigil.dev/v1alpha1
kind: SLO
metadata: {{name: checkout-availability, namespace: {namespace}}}
spec:
  appRef: {{name: checkout}}
  objective: 99.9
  sli:
    availability: {{}}
"#
    ))
    .unwrap()
}

fn policy() -> AlertPolicy {
    serde_yaml::from_str(
        r#"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: {name: checkout-availability, namespace: shop}
spec:
  appRef: {name: checkout}
  rules:
    - name: Disk
      forecast: {query: node_filesystem_used_bytes, horizon: 6h, capacity: 100}
"#,
    )
    .unwrap()
}

fn conditions(fake: &FakeApiServer, plural: &str) -> Vec<Value> {
    let object = fake.get(plural, "shop", "checkout-availability").unwrap();
    object["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// An SLO in the watched namespace gives one budget job (reading its 5-minute SLI ratio over
/// 30 days) beside the rule job of a policy with the same name; the leader's condition on the
/// SLO says how its budget forecast went and keeps `Ready`, and the policy's condition names
/// only its own rule.
#[tokio::test]
async fn slos_become_budget_jobs_and_get_an_analytics_condition() {
    let fake = FakeApiServer::new();
    fake.create(&slo("shop"));
    fake.create(&slo("staging"));
    fake.create(&policy());
    let client = fake.client();

    let jobs = sync(&client, Some("shop"), 60, &[], true).await.unwrap();
    let keys: Vec<&JobKey> = jobs.iter().map(|j| &j.key).collect();
    let slo_key = JobKey::slo("shop", "checkout-availability");
    let disk = JobKey {
        namespace: "shop".into(),
        policy: "checkout-availability".into(),
        rule: "Disk".into(),
    };
    assert_eq!(keys, vec![&disk, &slo_key]);
    let budget = &jobs[1];
    assert_eq!(
        budget.query,
        r#"slo:sli_error:ratio_rate5m{namespace="shop", app="checkout", slo="checkout-availability"}"#
    );
    assert!(matches!(
        budget.kind,
        JobKind::Budget {
            window: 2_592_000,
            step: 300,
            ..
        }
    ));
    assert_eq!(
        sync(&client, None, 60, &[], true).await.unwrap().len(),
        3,
        "every namespace without --namespace"
    );

    let api: Api<Slo> = Api::namespaced(client.clone(), "shop");
    let ready = json!({"type": "Ready", "status": "True", "reason": "Applied", "message": "ok",
        "lastTransitionTime": "2026-01-01T00:00:00Z"});
    api.patch_status(
        "checkout-availability",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": [ready]}})),
    )
    .await
    .unwrap();

    let outcomes = vec![
        (disk.clone(), Some(Outcome::Fitted { series: 1 })),
        (slo_key.clone(), Some(Outcome::NoData)),
    ];
    sync(&client, Some("shop"), 60, &outcomes, true)
        .await
        .unwrap();
    let shown = conditions(&fake, "slos");
    let analytics = shown
        .iter()
        .find(|c| c["type"] == "Analytics")
        .expect("Analytics on the SLO");
    assert_eq!(
        (
            &analytics["status"],
            &analytics["reason"],
            &analytics["message"]
        ),
        (
            &json!("False"),
            &json!("NoData"),
            &json!("error budget forecast: the query returned no series")
        )
    );
    assert!(
        shown.iter().any(|c| c["type"] == "Ready"),
        "the controller's conditions stay: {shown:?}"
    );
    let policy_analytics = conditions(&fake, "alertpolicies")
        .into_iter()
        .find(|c| c["type"] == "Analytics")
        .expect("Analytics on the policy");
    assert_eq!(policy_analytics["message"], "rule Disk: 1 series modelled");
    assert_eq!(policy_analytics["status"], "True");

    let fitted = vec![(slo_key, Some(Outcome::Fitted { series: 2 }))];
    sync(&client, Some("shop"), 60, &fitted, true)
        .await
        .unwrap();
    let analytics = conditions(&fake, "slos")
        .into_iter()
        .find(|c| c["type"] == "Analytics")
        .unwrap();
    assert_eq!(
        (&analytics["status"], &analytics["reason"]),
        (&json!("True"), &json!("Fitted"))
    );
}

/// A client of the engine's service account in `shop`, whose role may read only `resources`
/// (a flow list of plurals) of `vigil.dev`, and the server it talks to (stopped when dropped).
async fn client_allowed(fake: &FakeApiServer, resources: &str) -> (kube::Client, FakeHttpServer) {
    let role: k8s_openapi::api::rbac::v1::Role = serde_yaml::from_str(&format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: analytics-before-slos, namespace: shop}}
rules:
  - apiGroups: [vigil.dev]
    resources: [{resources}]
    verbs: [get, list, watch]
"#
    ))
    .unwrap();
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_yaml::from_str(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: analytics-before-slos, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: analytics-before-slos}
subjects: [{kind: ServiceAccount, name: vigil-analytics, namespace: vigil-system}]
"#,
    )
    .unwrap();
    fake.create(&role);
    fake.create(&binding);
    let http = fake.serve_http(([127, 0, 0, 1], 0).into()).await.unwrap();
    let token = FakeApiServer::service_account_token("vigil-system", "vigil-analytics");
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&http.kubeconfig_with_token("shop", &token)).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    (kube::Client::try_from(config).unwrap(), http)
}

/// An engine whose role predates SLO budget forecasts (it may read AlertPolicies but not
/// SLOs) still gets its policies' jobs: the refused SLO list costs the budget jobs only.
#[tokio::test]
async fn policies_still_come_when_slos_are_forbidden() {
    let fake = FakeApiServer::new();
    fake.create(&policy());
    fake.create(&slo("shop"));
    let (client, _server) = client_allowed(&fake, "alertpolicies").await;

    let jobs = sync(&client, Some("shop"), 60, &[], false).await.unwrap();
    let rules: Vec<&str> = jobs.iter().map(|j| j.key.rule.as_str()).collect();
    assert_eq!(rules, ["Disk"]);
    assert!(
        fake.forbidden().iter().any(|d| d.contains("\"slos\"")),
        "the SLO list was refused: {:?}",
        fake.forbidden()
    );
}

/// The SLO of an app in the watched namespace reads its ratio from the raw request counters
/// where the recording has none; an engine whose role predates that (it may read SLOs but not
/// MonitoredApps) still gets the SLO's job, reading the recording alone.
#[tokio::test]
async fn an_slo_with_its_app_reads_the_raw_series_and_without_it_the_recording() {
    let app: vigil_crds::MonitoredApp = serde_yaml::from_str(
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\n\
         metadata: {name: checkout, namespace: shop}\n\
         spec: {selector: {matchLabels: {app: checkout}}}\n",
    )
    .unwrap();
    let recording = r#"slo:sli_error:ratio_rate5m{namespace="shop", app="checkout", slo="checkout-availability"}"#;

    let fake = FakeApiServer::new();
    fake.create(&slo("shop"));
    fake.create(&app);
    let jobs = sync(&fake.client(), Some("shop"), 60, &[], false)
        .await
        .unwrap();
    let query = &jobs[0].query;
    assert!(
        query.contains(recording)
            && query.contains("or on ()")
            && query.contains("http_requests_total{namespace=\"shop\", app=\"checkout\""),
        "{query}"
    );

    let (client, _server) = client_allowed(&fake, "alertpolicies, slos").await;
    let jobs = sync(&client, Some("shop"), 60, &[], false).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].query, recording);
    assert!(
        fake.forbidden()
            .iter()
            .any(|d| d.contains("\"monitoredapps\"")),
        "the MonitoredApp list was refused: {:?}",
        fake.forbidden()
    );
}
