//! Tests of the cluster signals: the pure states, the exported series, the watchers against an
//! in-memory API server, and acknowledgements against a real Alertmanager.

mod acknowledgements;
mod exposition;
mod fake_watch;
mod releases;
mod restarts;
mod watchers;

use k8s_openapi::api::apps::v1::{ControllerRevision, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use vigil_crds::MonitoredApp;

/// A container's `(name, restartCount, last termination (reason, exit code))`.
pub type ContainerRestarts<'a> = (&'a str, i32, Option<(&'a str, i32)>);

fn labels_json(labels: &[(&str, &str)]) -> Value {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn status_json(containers: &[ContainerRestarts]) -> Vec<Value> {
    containers
        .iter()
        .map(|(name, restarts, last)| {
            let mut status = json!({
                "name": name,
                "restartCount": restarts,
                "ready": true,
                "image": format!("registry.example/{name}:1.0"),
                "imageID": "",
                "state": {"running": {"startedAt": "2024-05-01T10:00:00Z"}},
            });
            if let Some((reason, code)) = last {
                status["lastState"] = json!({"terminated": {"reason": reason, "exitCode": code}});
            }
            status
        })
        .collect()
}

/// A running pod in `shop` with the given labels, uid and container restart states.
pub fn pod(
    name: &str,
    uid: &str,
    labels: &[(&str, &str)],
    containers: &[ContainerRestarts],
) -> Pod {
    pod_with_init(name, uid, labels, containers, &[])
}

/// Like [`pod`], with init (or native sidecar) container statuses.
pub fn pod_with_init(
    name: &str,
    uid: &str,
    labels: &[(&str, &str)],
    containers: &[ContainerRestarts],
    init: &[ContainerRestarts],
) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "labels": labels_json(labels)},
        "spec": {"containers": containers.iter().map(|(n, _, _)| json!({"name": n, "image": "x"})).collect::<Vec<_>>()},
        "status": {
            "phase": "Running",
            "containerStatuses": status_json(containers),
            "initContainerStatuses": status_json(init),
        },
    }))
    .unwrap()
}

/// A `MonitoredApp` in `shop` selecting `app: <selects>`, with an optional `release` spec.
pub fn monitored_app(name: &str, selects: &str, release: Option<Value>) -> MonitoredApp {
    let mut spec = json!({"selector": {"matchLabels": {"app": selects}}});
    if let Some(release) = release {
        spec["release"] = release;
    }
    serde_json::from_value(json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "MonitoredApp",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": spec,
    }))
    .unwrap()
}

fn template_json(labels: &[(&str, &str)], images: &[(&str, &str)]) -> Value {
    json!({
        "metadata": {"labels": labels_json(labels)},
        "spec": {"containers": images.iter().map(|(n, i)| json!({"name": n, "image": i})).collect::<Vec<_>>()},
    })
}

fn owner(kind: &str, name: &str) -> Value {
    json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": format!("uid-{name}"), "controller": true}])
}

/// A ReplicaSet of Deployment `deployment` at `revision`, created at `created` (RFC 3339),
/// with `replicas` pods of a template with `labels` and `images`.
pub fn replica_set(
    deployment: &str,
    revision: u32,
    created: &str,
    replicas: i32,
    labels: &[(&str, &str)],
    images: &[(&str, &str)],
) -> ReplicaSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{deployment}-{revision}abc"),
            "namespace": "shop",
            "creationTimestamp": created,
            "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
            "ownerReferences": owner("Deployment", deployment),
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "x"}},
            "template": template_json(labels, images),
        },
        "status": {"replicas": replicas},
    }))
    .unwrap()
}

/// A StatefulSet whose template has `labels` and `images`, at `update` (and `current`)
/// revision names.
pub fn stateful_set(
    name: &str,
    labels: &[(&str, &str)],
    images: &[(&str, &str)],
    current: &str,
    update: &str,
) -> StatefulSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "serviceName": name,
            "selector": {"matchLabels": {"app": "x"}},
            "template": template_json(labels, images),
        },
        "status": {"replicas": 3, "currentRevision": current, "updateRevision": update},
    }))
    .unwrap()
}

/// A ControllerRevision `name` (number `revision`) of StatefulSet `owner_name`, holding a
/// template with `labels` and `images`.
pub fn controller_revision(
    name: &str,
    owner_name: &str,
    revision: i64,
    created: &str,
    labels: &[(&str, &str)],
    images: &[(&str, &str)],
) -> ControllerRevision {
    let mut template = template_json(labels, images);
    template["$patch"] = json!("replace");
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "creationTimestamp": created,
            "ownerReferences": owner("StatefulSet", owner_name),
        },
        "revision": revision,
        "data": {"spec": {"template": template}},
    }))
    .unwrap()
}

/// Unix seconds of an RFC 3339 time.
pub fn unix(time: &str) -> f64 {
    time.parse::<k8s_openapi::jiff::Timestamp>()
        .unwrap()
        .as_second() as f64
}
