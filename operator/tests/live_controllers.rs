//! The live operator's controllers and leader election (`run::run_with`, exactly what
//! `vigil-operator run` runs once connected) against the in-memory API server, which serves
//! the watches the controllers are driven by. Examples from `examples/banking` are applied as
//! a user would; the test waits (with a deadline) for what a user would then see.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed step must fail the test with its message"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::Client;
use serde_json::{json, Value};
use support::fake_api::FakeApiServer;
use support::{current_ready, eventually, manifests, owned_by};
use vigil_operator::controllers::{Context, ReconcileMetrics, Reloader, Settings};
use vigil_operator::run::{run_with, RunOptions};

const IDENTITY: &str = "vigil-operator-test-0";
const LEASE_NAMESPACE: &str = "vigil-system";
const LEASE: &str = "vigil-operator";

/// Applies `object` with server-side apply as `kubectl apply --server-side` would.
async fn apply(client: &Client, object: &Value) -> Value {
    let gvk = GroupVersionKind::try_from(&kube::core::TypeMeta {
        api_version: object["apiVersion"].as_str().unwrap().to_owned(),
        kind: object["kind"].as_str().unwrap().to_owned(),
    })
    .unwrap();
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk).await.unwrap();
    let name = object["metadata"]["name"].as_str().unwrap();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let applied = api
        .patch(name, &PatchParams::apply("kubectl"), &Patch::Apply(object))
        .await
        .unwrap_or_else(|e| panic!("cannot apply {} {name}: {e}", gvk.kind));
    serde_json::to_value(applied).unwrap()
}

fn options() -> RunOptions {
    RunOptions {
        kubeconfig: None,
        settings: Settings::default(),
        identity: IDENTITY.to_owned(),
        lease_namespace: LEASE_NAMESPACE.to_owned(),
        lease_name: LEASE.to_owned(),
        lease_duration: Duration::from_secs(15),
        prometheus_url: None,
        alertmanager_url: None,
        reload_delay: Duration::from_secs(90),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        webhook: vigil_operator::webhook::WebhookArgs {
            webhook_listen: "127.0.0.1:0".parse().unwrap(),
            webhook_cert_dir: None,
            webhook_namespace: LEASE_NAMESPACE.to_owned(),
            webhook_service: "vigil-webhook".to_owned(),
            webhook_secret: "vigil-webhook-tls".to_owned(),
            mutating_webhook_configuration: String::new(),
            validating_webhook_configuration: String::new(),
            webhook_cert_check_seconds: 300,
        },
        native_sidecar: vigil_operator::run::NativeSidecar::Auto,
        shutdown_drain: Duration::ZERO,
    }
}

/// Children of `owner` among `plural` in `namespace`: owned by it and labelled managed-by.
fn children(server: &FakeApiServer, plural: &str, namespace: &str, owner: &Value) -> Vec<Value> {
    server
        .list(plural, namespace)
        .into_iter()
        .filter(|child| owned_by(child, owner))
        .collect()
}

/// The operator's real run loop takes the Lease, reconciles every kind from watch events
/// (children with owner references and labels, statuses on the current generation with a
/// Ready condition), follows a spec change, explains a dangling `appRef`, removes an app's
/// children with it, and releases the Lease at shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_run_live_against_the_fake_api() {
    let server = FakeApiServer::kubernetes_only();
    let client = server.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in vigil_crds::crds() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }

    let options = options();
    let metrics = ReconcileMetrics::new(&prometheus::Registry::new()).unwrap();
    let ctx = Arc::new(Context::new(
        client.clone(),
        options.settings.clone(),
        metrics,
        Reloader::default(),
        Some(IDENTITY.to_owned()),
    ));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let operator = tokio::spawn({
        let client = client.clone();
        async move {
            let signals = vigil_operator::signals::Signals::default();
            run_with(ctx, client, &options, signals, shutdown).await;
        }
    });

    eventually("the Lease held by this replica", || {
        let lease = server
            .get("leases", LEASE_NAMESPACE, LEASE)
            .ok_or("no Lease")?;
        (lease["spec"]["holderIdentity"] == IDENTITY)
            .then_some(())
            .ok_or_else(|| lease["spec"].to_string())
    })
    .await;

    for file in [
        "examples/banking/monitoredapp.yaml",
        "examples/banking/alertpolicy-crashes.yaml",
        "examples/banking/slo.yaml",
        "examples/banking/dashboards.yaml",
    ] {
        for object in manifests(file) {
            apply(&client, &object).await;
        }
    }

    // Every resource gets its status on its current generation, and children it owns.
    for (plural, name) in [
        ("monitoredapps", "mobile-api"),
        ("alertpolicies", "mobile-api-crashes"),
        ("dashboardviews", "mobile-engineering"),
    ] {
        eventually(&format!("{plural}/{name} Ready on its generation"), || {
            let object = server.get(plural, "banking", name).ok_or("not found")?;
            current_ready(&object)
        })
        .await;
    }
    for slo in manifests("examples/banking/slo.yaml") {
        let name = slo["metadata"]["name"].as_str().unwrap().to_owned();
        eventually(&format!("SLO {name} Ready on its generation"), || {
            current_ready(&server.get("slos", "banking", &name).ok_or("not found")?)
        })
        .await;
    }
    let app = server
        .get("monitoredapps", "banking", "mobile-api")
        .unwrap();
    let agent_configs = eventually("the app's agent ConfigMap", || {
        let found = children(&server, "configmaps", "banking", &app);
        (!found.is_empty())
            .then_some(found)
            .ok_or("none".to_owned())
    })
    .await;
    let view = server
        .get("dashboardviews", "banking", "mobile-engineering")
        .unwrap();
    eventually("the dashboard ConfigMap of the view", || {
        let found = children(&server, "configmaps", "banking", &view);
        found
            .iter()
            .any(|cm| cm["metadata"]["labels"]["grafana_dashboard"] == "1")
            .then_some(())
            .ok_or_else(|| format!("{found:?}"))
    })
    .await;

    // A spec change reaches the children.
    let before: Vec<Value> = agent_configs.iter().map(|c| c["data"].clone()).collect();
    let mut changed = manifests("examples/banking/monitoredapp.yaml").remove(0);
    changed["spec"]["metrics"]["interval"] = json!("45s");
    apply(&client, &changed).await;
    eventually("the agent ConfigMap to follow the new interval", || {
        let now: Vec<Value> = children(&server, "configmaps", "banking", &app)
            .iter()
            .map(|c| c["data"].clone())
            .collect();
        (now != before && !now.is_empty())
            .then_some(())
            .ok_or_else(|| "unchanged".to_owned())
    })
    .await;
    eventually("the app's status on generation 2", || {
        let object = server
            .get("monitoredapps", "banking", "mobile-api")
            .unwrap();
        if object["metadata"]["generation"] == 2 {
            current_ready(&object)
        } else {
            Err("generation not bumped".into())
        }
    })
    .await;

    // A policy for an app that does not exist says so.
    let mut orphan = manifests("examples/banking/alertpolicy-crashes.yaml").remove(0);
    orphan["metadata"]["name"] = json!("orphan-crashes");
    orphan["spec"]["appRef"]["name"] = json!("no-such-app");
    apply(&client, &orphan).await;
    eventually("a condition naming the missing app", || {
        let policy = server
            .get("alertpolicies", "banking", "orphan-crashes")
            .ok_or("not found")?;
        let ready = current_ready(&policy)?;
        (ready["status"] == "False"
            && ready["message"]
                .as_str()
                .is_some_and(|m| m.contains("no-such-app")))
        .then_some(())
        .ok_or_else(|| ready.to_string())
    })
    .await;

    // Deleting the app removes what it produced.
    let apps: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "banking",
        &kube::core::ApiResource::erase::<vigil_crds::MonitoredApp>(&()),
    );
    apps.delete("mobile-api", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the app and its children gone", || {
        let app_left = server.get("monitoredapps", "banking", "mobile-api");
        let left = children(&server, "configmaps", "banking", &app);
        (app_left.is_none() && left.is_empty())
            .then_some(())
            .ok_or_else(|| format!("app: {app_left:?}, children: {}", left.len()))
    })
    .await;
    assert!(
        server.open_watches() > 0,
        "the controllers are driven by watches"
    );

    // Shutdown releases the lease.
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(30), operator)
        .await
        .expect("the operator stops within its drain time")
        .unwrap();
    let lease = server.get("leases", LEASE_NAMESPACE, LEASE).unwrap();
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "lease still held: {}",
        lease["spec"]
    );
}
