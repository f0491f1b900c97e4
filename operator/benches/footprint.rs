//! Memory benchmark: resident memory (`VmRSS`) of watch state with 10,000 watched objects —
//! 8,000 Pods of realistic size (≈ 7 KB of JSON, managedFields included) and 2,000
//! `MonitoredApp`s — decoded from JSON as a watch delivers them. Each scenario runs in its own
//! process so one cannot inherit another's heap:
//! - `operator`: what the operator keeps — a `MonitoredApp` reflector store (managedFields
//!   dropped) and the cluster signals' compact state for every pod and app. The operator never
//!   stores Pods: its controllers watch pod metadata without a store, and the signals keep only
//!   restart baselines;
//! - `metadata`: reflector stores of the apps and of pod metadata (`PartialObjectMeta<Pod>`),
//!   managedFields dropped (what `WatchStreamExt::modify` does in a watcher);
//! - `full-pods`: reflector stores of the apps and of full typed Pods, managedFields dropped,
//!   and the same with managedFields kept — for comparison: typed Pods cost ≈ 25 KB each.
//!
//! Prints figures; asserts nothing (the bar: RSS ≤ 64 MiB).
//!
//! Run: `cargo bench -p vigil-operator --bench footprint`
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "benchmark: a failed setup step must stop it with its message"
)]

/// The operator binary's allocator, so the figures are those of the operator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::Command;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;
use kube::ResourceExt;
use serde_json::{json, Value};
use vigil_crds::MonitoredApp;
use vigil_operator::signals::Signals;
use vigil_operator::telemetry::resident_memory_bytes;

const PODS: usize = 8_000;
const APPS: usize = 2_000;
const NAMESPACES: usize = 200;
const MODE_ENV: &str = "VIGIL_FOOTPRINT_SCENARIO";

fn managed_field(
    manager: &str,
    operation: &str,
    subresource: Option<&str>,
    fields: Value,
) -> Value {
    let mut entry = json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": "v1",
        "time": "2024-05-01T10:00:00Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    });
    if let Some(sub) = subresource {
        entry["subresource"] = json!(sub);
    }
    entry
}

/// A pod as the API server returns it for a Deployment's replica with the agent injected:
/// two containers, env, probes, volumes, status with conditions and container statuses, and
/// the managedFields of the controller manager and the kubelet (≈ 9 KB of JSON).
fn pod(i: usize) -> Value {
    let app = i % APPS;
    let ns = format!("team-{}", app % NAMESPACES);
    let name = format!("app-{app}-7d9f8b6c5-{:05x}", i);
    let container = |name: &str, image: &str, port: u16| {
        json!({
            "name": name,
            "image": image,
            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
                {"name": "LOG_LEVEL", "value": "info"},
                {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}
            ],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": port, "scheme": "HTTP"}, "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "livenessProbe": {"httpGet": {"path": "/health", "port": port, "scheme": "HTTP"}, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/app", "readOnly": true},
                {"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}
            ],
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent"
        })
    };
    let status = |name: &str, image: &str| {
        json!({
            "name": name,
            "image": image,
            "imageID": format!("{image}@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
            "containerID": format!("containerd://{:064x}", i * 7919),
            "ready": true,
            "started": true,
            "restartCount": i % 3,
            "state": {"running": {"startedAt": "2024-05-01T10:00:05Z"}},
            "lastState": if i % 3 == 0 { json!({}) } else {
                json!({"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": "2024-05-01T09:00:00Z", "finishedAt": "2024-05-01T10:00:00Z", "containerID": "containerd://0"}})
            }
        })
    };
    let condition = |kind: &str| json!({"type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": "2024-05-01T10:00:06Z"});
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": format!("app-{app}-7d9f8b6c5-"),
            "namespace": ns,
            "uid": format!("{:08x}-7d3c-4e1a-9b2f-{:012x}", i, i * 31),
            "resourceVersion": format!("{}", 1_000_000 + i),
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "labels": {"app": format!("app-{app}"), "app.kubernetes.io/version": "17.2", "pod-template-hash": "7d9f8b6c5"},
            "annotations": {"vigil.dev/injected": "3f2a9c1b7e4d5a60", "prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("app-{app}-7d9f8b6c5"), "uid": format!("{:08x}-aaaa-bbbb-cccc-dddddddddddd", app), "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [
                managed_field("kube-controller-manager", "Update", None, json!({
                    "f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:app.kubernetes.io/version": {}, "f:pod-template-hash": {}}, "f:ownerReferences": {".": {}, "k:{\"uid\":\"x\"}": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"main\"}": {".": {}, "f:env": {".": {}, "k:{\"name\":\"POD_NAME\"}": {".": {}, "f:name": {}, "f:valueFrom": {".": {}, "f:fieldRef": {}}}, "k:{\"name\":\"LOG_LEVEL\"}": {".": {}, "f:name": {}, "f:value": {}}}, "f:image": {}, "f:imagePullPolicy": {}, "f:livenessProbe": {".": {}, "f:httpGet": {".": {}, "f:path": {}, "f:port": {}, "f:scheme": {}}, "f:periodSeconds": {}}, "f:name": {}, "f:ports": {".": {}, "k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:name": {}, "f:protocol": {}}}, "f:readinessProbe": {".": {}, "f:httpGet": {".": {}, "f:path": {}, "f:port": {}}}, "f:resources": {".": {}, "f:limits": {".": {}, "f:memory": {}}, "f:requests": {".": {}, "f:cpu": {}, "f:memory": {}}}, "f:volumeMounts": {".": {}, "k:{\"mountPath\":\"/etc/app\"}": {".": {}, "f:mountPath": {}, "f:name": {}, "f:readOnly": {}}}}}, "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {}, "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}, "f:volumes": {".": {}, "k:{\"name\":\"config\"}": {".": {}, "f:configMap": {".": {}, "f:defaultMode": {}, "f:name": {}}, "f:name": {}}}}
                })),
                managed_field("kubelet", "Update", Some("status"), json!({
                    "f:status": {"f:conditions": {"k:{\"type\":\"ContainersReady\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}, "k:{\"type\":\"Initialized\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}, "k:{\"type\":\"Ready\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}}, "f:containerStatuses": {}, "f:hostIP": {}, "f:hostIPs": {}, "f:initContainerStatuses": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": {".": {}, "k:{\"ip\":\"10.0.0.1\"}": {".": {}, "f:ip": {}}}, "f:startTime": {}}
                }))
            ]
        },
        "spec": {
            "containers": [container("main", &format!("registry.example/team/app-{app}:17.2"), 8080)],
            "initContainers": [{
                "name": "vigil-agent",
                "image": "ghcr.io/vigil-dev/vigil-agent:0.1.0",
                "restartPolicy": "Always",
                "args": ["--config", "/etc/vigil/agent.yaml"],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                "volumeMounts": [{"name": "vigil-config", "mountPath": "/etc/vigil", "readOnly": true}, {"name": "vigil-buffer", "mountPath": "/var/lib/vigil"}]
            }],
            "volumes": [
                {"name": "config", "configMap": {"name": format!("app-{app}"), "defaultMode": 420}},
                {"name": "vigil-config", "configMap": {"name": format!("vigil-agent-app-{app}"), "defaultMode": 420}},
                {"name": "vigil-buffer", "emptyDir": {"sizeLimit": "256Mi"}},
                {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}, {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "nodeName": format!("node-{}", i % 60),
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ],
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {
            "phase": "Running",
            "conditions": [condition("Initialized"), condition("Ready"), condition("ContainersReady"), condition("PodScheduled")],
            "hostIP": format!("10.1.{}.{}", i % 60, 10),
            "hostIPs": [{"ip": format!("10.1.{}.{}", i % 60, 10)}],
            "podIP": format!("10.2.{}.{}", i / 250, i % 250),
            "podIPs": [{"ip": format!("10.2.{}.{}", i / 250, i % 250)}],
            "startTime": "2024-05-01T10:00:00Z",
            "containerStatuses": [status("main", &format!("registry.example/team/app-{app}:17.2"))],
            "initContainerStatuses": [status("vigil-agent", "ghcr.io/vigil-dev/vigil-agent:0.1.0")],
            "qosClass": "Burstable"
        }
    })
}

/// A `MonitoredApp` as stored: spec, status with conditions, managedFields of the user's
/// `kubectl apply` and the operator's status writes (≈ 3 KB of JSON).
fn monitored_app(i: usize) -> Value {
    json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "MonitoredApp",
        "metadata": {
            "name": format!("app-{i}"),
            "namespace": format!("team-{}", i % NAMESPACES),
            "uid": format!("{:08x}-1111-2222-3333-444444444444", i),
            "resourceVersion": format!("{}", 2_000_000 + i),
            "generation": 3,
            "creationTimestamp": "2024-04-01T08:00:00Z",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": format!("{{\"apiVersion\":\"vigil.dev/v1alpha1\",\"kind\":\"MonitoredApp\",\"metadata\":{{\"name\":\"app-{i}\"}},\"spec\":{{\"selector\":{{\"matchLabels\":{{\"app\":\"app-{i}\"}}}}}}}}")},
            "finalizers": ["vigil.dev/shared-outputs"],
            "managedFields": [
                managed_field("kubectl-client-side-apply", "Update", None, json!({"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}}, "f:spec": {".": {}, "f:clientType": {}, "f:exporters": {".": {}, "f:prometheusRemoteWrite": {".": {}, "f:url": {}, "f:bearerTokenSecretRef": {".": {}, "f:key": {}, "f:name": {}}}}, "f:logs": {".": {}, "f:containerLogs": {}}, "f:metrics": {".": {}, "f:interval": {}, "f:port": {}}, "f:selector": {}}})),
                managed_field("vigil-operator", "Apply", Some("status"), json!({"f:status": {"f:conditions": {}, "f:configHash": {}, "f:injectedPods": {}, "f:observedGeneration": {}, "f:selectedPods": {}, "f:stalePods": {}}}))
            ]
        },
        "spec": {
            "selector": {"matchLabels": {"app": format!("app-{i}")}},
            "clientType": "banking",
            "metrics": {"port": "http-metrics", "interval": "15s"},
            "logs": {"containerLogs": true},
            "exporters": {"prometheusRemoteWrite": {"url": "http://mimir.monitoring:8080/api/v1/push", "bearerTokenSecretRef": {"name": "mimir", "key": "token"}}}
        },
        "status": {
            "observedGeneration": 3,
            "selectedPods": 4,
            "injectedPods": 4,
            "stalePods": 0,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Applied", "message": "Agent config, scrape targets and status are up to date.", "lastTransitionTime": "2024-05-01T10:00:00Z", "observedGeneration": 3},
                {"type": "Injected", "status": "True", "reason": "AllPodsInjected", "message": "All 4 selected pods run the current agent.", "lastTransitionTime": "2024-05-01T10:00:00Z", "observedGeneration": 3}
            ]
        }
    })
}

/// Decodes `value` as a watch event's object would be.
fn decode<K: serde::de::DeserializeOwned>(value: &Value) -> K {
    serde_json::from_slice(&serde_json::to_vec(value).unwrap()).unwrap()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs one scenario in this process and prints `rss-before rss-after seconds objects`.
fn scenario(name: &str) {
    let before = resident_memory_bytes().unwrap_or(0);
    let started = Instant::now();
    let strip = name != "full-pods-managed-fields";
    let mut app_store: Writer<MonitoredApp> = Writer::default();
    let mut pod_store: Writer<Pod> = Writer::default();
    let mut pod_metadata_store: Writer<PartialObjectMeta<Pod>> = Writer::default();
    let signals = Signals::default();
    for i in 0..APPS {
        let mut app: MonitoredApp = decode(&monitored_app(i));
        if strip {
            app.managed_fields_mut().clear();
        }
        if name == "operator" {
            signals.on_app(Event::InitApply(app.clone()));
        }
        app_store.apply_watcher_event(&Event::Apply(app));
    }
    for i in 0..PODS {
        let json = pod(i);
        match name {
            "operator" => {
                let pod: Pod = decode(&json);
                signals.on_pod(Event::InitApply(pod), Instant::now());
            }
            "metadata" => {
                let mut pod: PartialObjectMeta<Pod> = decode(&json);
                pod.managed_fields_mut().clear();
                pod_metadata_store.apply_watcher_event(&Event::Apply(pod));
            }
            _ => {
                let mut pod: Pod = decode(&json);
                if strip {
                    pod.managed_fields_mut().clear();
                }
                pod_store.apply_watcher_event(&Event::Apply(pod));
            }
        }
    }
    let elapsed = started.elapsed();
    let after = resident_memory_bytes().unwrap_or(0);
    let held = app_store.as_reader().len()
        + pod_store.as_reader().len()
        + pod_metadata_store.as_reader().len()
        + signals.tracked_objects();
    println!("{before} {after} {:.3} {held}", elapsed.as_secs_f64());
}

fn main() {
    if let Ok(name) = std::env::var(MODE_ENV) {
        scenario(&name);
        return;
    }
    let pod_bytes = serde_json::to_vec(&pod(1)).unwrap().len();
    let app_bytes = serde_json::to_vec(&monitored_app(1)).unwrap().len();
    println!(
        "footprint: {PODS} Pods (~{:.1} KB JSON each) + {APPS} MonitoredApps (~{:.1} KB each)",
        pod_bytes as f64 / 1024.0,
        app_bytes as f64 / 1024.0
    );
    let exe = std::env::current_exe().expect("own path");
    for (name, label) in [
        ("operator", "operator: app store + signal state"),
        ("metadata", "stores: app + pod metadata, no managedFields"),
        ("full-pods", "stores: app + full pods, no managedFields"),
        (
            "full-pods-managed-fields",
            "stores: app + full pods, managedFields",
        ),
    ] {
        let output = Command::new(&exe)
            .env(MODE_ENV, name)
            .output()
            .expect("run scenario");
        let text = String::from_utf8_lossy(&output.stdout);
        let fields: Vec<f64> = text
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        let [before, after, seconds, held] = fields[..] else {
            panic!(
                "scenario {name} printed {text:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        println!(
            "{label:<46} RSS {:>6.1} MiB (process baseline {:>5.1} MiB, +{:>5.1} MiB for {held} objects; fed in {seconds:.2} s)",
            mib(after as u64),
            mib(before as u64),
            mib((after - before) as u64),
        );
    }
}
