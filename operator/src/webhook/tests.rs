//! The webhook against real `AdmissionReview` bodies (fixtures/), and the HTTPS server with a
//! real TLS handshake.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed step must fail the test with its message"
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::{json, Value};
use vigil_crds::MonitoredApp;

use super::*;
use crate::render::inject::{inject, pod_security, AGENT_CONTAINER, INJECTED};
use crate::tls::{Plan, WebhookCerts};

const DEPLOYMENT_POD: &str = include_str!("fixtures/pod-from-deployment.json");
const OPTED_OUT_POD: &str = include_str!("fixtures/pod-opted-out.json");
const ANNOTATED_POD: &str = include_str!("fixtures/pod-annotated.json");
const AGENT_IMAGE: &str = "ghcr.io/vigil-dev/vigil-agent:0.1.0";

fn app(name: &str, namespace: &str, selector: Value) -> MonitoredApp {
    serde_json::from_value(json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "MonitoredApp",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}")},
        "spec": {
            "selector": selector,
            "logs": {"containerLogs": true, "format": "json"},
            "traces": {"enabled": true},
            "exporters": {
                "otlp": {"endpoint": "http://otel-collector.observability:4317"},
                "prometheusRemoteWrite": {
                    "url": "http://mimir.observability:8080/api/v1/push",
                    "bearerTokenSecretRef": {"name": "mimir-credentials", "key": "token"}
                }
            }
        }
    }))
    .expect("valid MonitoredApp")
}

fn checkout() -> MonitoredApp {
    app(
        "checkout",
        "retail",
        json!({"matchLabels": {"app": "checkout"}}),
    )
}

fn webhook(apps: Vec<MonitoredApp>, native_sidecar: bool) -> Webhook {
    let mut writer: Writer<MonitoredApp> = Writer::default();
    for app in apps {
        writer.apply_watcher_event(&watcher::Event::Apply(app));
    }
    Webhook {
        apps: writer.as_reader(),
        namespaces: namespaces(&[("retail", None), ("shop", None)]),
        agent_image: AGENT_IMAGE.into(),
        native_sidecar,
    }
}

/// A namespace store: each namespace with its `pod-security.kubernetes.io/enforce` level.
fn namespaces(levels: &[(&str, Option<&str>)]) -> Store<PartialObjectMeta<Namespace>> {
    let mut writer: Writer<PartialObjectMeta<Namespace>> = Writer::default();
    for (name, level) in levels {
        let labels =
            level.map(|l| BTreeMap::from([(pod_security::ENFORCE_LABEL.to_owned(), l.to_owned())]));
        let ns = PartialObjectMeta::<Namespace> {
            types: None,
            metadata: ObjectMeta {
                name: Some((*name).to_owned()),
                labels,
                ..ObjectMeta::default()
            },
            _phantom: std::marker::PhantomData,
        };
        writer.apply_watcher_event(&watcher::Event::Apply(ns));
    }
    writer.as_reader()
}

/// Sends `review` to `/mutate-pods` and returns the response review.
fn mutate_json(webhook: &Webhook, review: &Value) -> Value {
    let body = serde_json::to_vec(review).unwrap();
    let out = mutate::review(webhook, &body).expect("well-formed review");
    serde_json::from_slice(&out).unwrap()
}

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// The pod the API server would store: the request's object with the response's patch applied.
fn patched(review: &Value, response: &Value) -> Value {
    let mut object = review["request"]["object"].clone();
    let patch: ByteString = serde_json::from_value(response["response"]["patch"].clone())
        .expect("response carries a patch");
    let patch: json_patch::Patch = serde_json::from_slice(&patch.0).unwrap();
    json_patch::patch(&mut object, &patch).expect("patch applies to the original object");
    object
}

fn request_pod(review: &Value) -> Pod {
    serde_json::from_value(review["request"]["object"].clone()).unwrap()
}

/// A Deployment's pod (generateName, no name) selected by a MonitoredApp gets exactly what
/// `inject` adds: the patch applied to the API server's object gives `inject(pod)`, and the
/// response is a v1 review answering the request's uid.
#[test]
fn deployment_pod_gets_the_agent() {
    for native in [true, false] {
        let webhook = webhook(vec![checkout()], native);
        let review = fixture(DEPLOYMENT_POD);
        let response = mutate_json(&webhook, &review);
        assert_eq!(response["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(response["kind"], "AdmissionReview");
        assert_eq!(response["response"]["uid"], review["request"]["uid"]);
        assert_eq!(response["response"]["allowed"], true);
        assert_eq!(response["response"]["patchType"], "JSONPatch");
        assert!(response["response"]["warnings"].is_null());

        let expected = inject(request_pod(&review), &webhook.sidecar_for(&checkout()));
        let result: Pod = serde_json::from_value(patched(&review, &response)).unwrap();
        assert_eq!(result, expected, "native sidecar: {native}");
        let spec = result.spec.unwrap();
        if native {
            assert_eq!(spec.init_containers.unwrap()[0].name, AGENT_CONTAINER);
        } else {
            assert_eq!(spec.containers.last().unwrap().name, AGENT_CONTAINER);
        }
        assert!(result.metadata.annotations.unwrap().contains_key(INJECTED));
    }
}

/// The patch adds and never rewrites: items it does not touch keep fields this operator does
/// not know (a field of a newer Kubernetes), and the agent is one `add` in front of the init
/// containers rather than a rewrite of each shifted one.
#[test]
fn patch_leaves_unknown_fields_alone() {
    let webhook = webhook(vec![checkout()], true);
    let mut review = fixture(DEPLOYMENT_POD);
    review["request"]["object"]["spec"]["initContainers"][0]["fieldFromTheFuture"] = json!(7);
    review["request"]["object"]["spec"]["fieldFromTheFuture"] = json!({"a": 1});
    let response = mutate_json(&webhook, &review);
    let object = patched(&review, &response);
    assert_eq!(object["spec"]["initContainers"][1]["name"], "migrate");
    assert_eq!(object["spec"]["initContainers"][1]["fieldFromTheFuture"], 7);
    assert_eq!(object["spec"]["fieldFromTheFuture"], json!({"a": 1}));
    let patch: ByteString = serde_json::from_value(response["response"]["patch"].clone()).unwrap();
    let ops: Vec<Value> = serde_json::from_slice(&patch.0).unwrap();
    assert!(
        ops.iter()
            .any(|op| op["op"] == "add" && op["path"] == "/spec/initContainers/0"),
        "{ops:#?}"
    );
    assert!(
        ops.iter().all(|op| op["op"] == "add"),
        "a first injection only adds: {ops:#?}"
    );
}

/// The patch is right also when pods differ outside the fields `inject` writes (the general
/// diff, used then instead of the cheaper one).
#[test]
fn patch_of_other_changes_is_complete() {
    let review = fixture(DEPLOYMENT_POD);
    let original = request_pod(&review);
    let mut changed = inject(
        original.clone(),
        &webhook(vec![], true).sidecar_for(&checkout()),
    );
    let spec = changed.spec.as_mut().unwrap();
    spec.restart_policy = Some("OnFailure".into());
    spec.tolerations = None;
    changed.metadata.generate_name = None;
    let patch = mutate::pod_patch(original, changed.clone()).unwrap();
    let mut object = review["request"]["object"].clone();
    json_patch::patch(&mut object, &patch).unwrap();
    assert_eq!(serde_json::from_value::<Pod>(object).unwrap(), changed);
}

/// Repeated environment variable names (allowed by Kubernetes) and a container list whose
/// order differs still give a patch whose result is `inject(pod)`.
#[test]
fn patch_handles_repeated_names() {
    let webhook = webhook(vec![checkout()], false);
    let mut review = fixture(DEPLOYMENT_POD);
    let env = review["request"]["object"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap();
    env.push(json!({"name": "LOG_FORMAT", "value": "text"}));
    let response = mutate_json(&webhook, &review);
    let expected = inject(request_pod(&review), &webhook.sidecar_for(&checkout()));
    let result: Pod = serde_json::from_value(patched(&review, &response)).unwrap();
    assert_eq!(result, expected);
}

/// The deployment fixture padded with environment variables and annotations to about `bytes`
/// (the sizes the benchmark measures), or trimmed to a minimal pod when `bytes` is small.
fn review_of_size(bytes: usize) -> Value {
    let mut review = fixture(DEPLOYMENT_POD);
    if bytes < 4096 {
        let object = &mut review["request"]["object"];
        object["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        let spec = object["spec"].as_object_mut().unwrap();
        spec.remove("initContainers");
        spec.remove("tolerations");
        return review;
    }
    let mut i = 0;
    while serde_json::to_vec(&review).unwrap().len() < bytes {
        let object = &mut review["request"]["object"];
        object["spec"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": format!("FEATURE_FLAG_{i}"), "value": "enabled-for-tenant-retail-bank"}));
        object["metadata"]["annotations"][format!("example.com/note-{i}")] =
            json!("owned by the payments team; see runbook");
        i += 1;
    }
    review
}

/// The patch is written from what `inject` added, not from a diff of whole pods, so it must
/// never drift from `inject`: for pods of 2, 10 and 50 KB, in both sidecar modes, the patch
/// applied to the request's pod JSON gives exactly `inject(pod)`.
#[test]
fn patch_gives_what_inject_gives_at_every_size() {
    for bytes in [2 << 10, 10 << 10, 50 << 10] {
        for native in [true, false] {
            let webhook = webhook(vec![checkout()], native);
            let review = review_of_size(bytes);
            let response = mutate_json(&webhook, &review);
            assert_eq!(response["response"]["patchType"], "JSONPatch");
            let result: Pod = serde_json::from_value(patched(&review, &response)).unwrap();
            let expected = inject(request_pod(&review), &webhook.sidecar_for(&checkout()));
            assert_eq!(
                serde_json::to_value(result).unwrap(),
                serde_json::to_value(expected).unwrap(),
                "{bytes} bytes, native sidecar: {native}"
            );
        }
    }
}

/// A pod whose injection is not a plain addition (an empty init container list, which
/// `inject` drops when it adds a regular container; a container with an empty environment
/// list) still gets exactly `inject(pod)`, through the general diff.
#[test]
fn unusual_pods_get_what_inject_gives() {
    let webhook = webhook(vec![checkout()], false);
    let mut review = fixture(DEPLOYMENT_POD);
    review["request"]["object"]["spec"]["initContainers"] = json!([]);
    review["request"]["object"]["spec"]["containers"][0]["env"] = json!([]);
    let response = mutate_json(&webhook, &review);
    let result: Pod = serde_json::from_value(patched(&review, &response)).unwrap();
    let expected = inject(request_pod(&review), &webhook.sidecar_for(&checkout()));
    assert_eq!(result, expected);
    assert!(result.spec.unwrap().init_containers.is_none());
}

/// A pod without `containers` (the API server rejects it later, but the webhook sees it first)
/// gets a patch that applies to it as sent: the agent's container list is added whole rather
/// than at an index of a list that does not exist. Both patch paths, both agent placements;
/// the patched pod, reviewed again, gets no further patch.
#[test]
fn pod_without_containers_gets_a_patch_that_applies() {
    for native_sidecar in [false, true] {
        let webhook = webhook(vec![checkout()], native_sidecar);
        for general_diff in [false, true] {
            let mut review = fixture(DEPLOYMENT_POD);
            let spec = review["request"]["object"]["spec"].as_object_mut().unwrap();
            spec.remove("containers");
            if general_diff {
                // An empty init container list is not a plain addition.
                spec.insert("initContainers".into(), json!([]));
            }
            let response = mutate_json(&webhook, &review);
            let result = patched(&review, &response);
            let expected = inject(request_pod(&review), &webhook.sidecar_for(&checkout()));
            let result_pod: Pod = serde_json::from_value(result.clone()).unwrap();
            assert_eq!(
                result_pod, expected,
                "native {native_sidecar}, diff {general_diff}"
            );
            let mut again = review.clone();
            again["request"]["object"] = result;
            let response = mutate_json(&webhook, &again);
            assert!(
                response["response"]["patch"].is_null(),
                "second review patched again: {response}"
            );
        }
    }
}

/// A first injection is written from the pod's outline (the cheap path), and an injected
/// pod has no outline (its old agent must be removed, which the general diff does).
#[test]
fn first_injection_is_written_from_the_outline() {
    let pod = request_pod(&fixture(DEPLOYMENT_POD));
    let sidecar = webhook(vec![], true).sidecar_for(&checkout());
    let outline = mutate::Outline::of(&pod).expect("a pod never injected has an outline");
    let injected = inject(pod, &sidecar);
    let mut patch = mutate::PatchWriter::default();
    assert!(outline.additions(&injected, &mut patch).unwrap());
    let ops: Vec<Value> = serde_json::from_slice(&patch.finish().unwrap()).unwrap();
    assert!(ops.iter().all(|op| op["op"] == "add"), "{ops:#?}");
    assert!(mutate::Outline::of(&injected).is_none());
}

/// The patch written from an outline is exact for labels and annotations whatever changed:
/// added, replaced and removed keys (including keys that need escaping in a JSON Pointer).
#[test]
fn outline_patch_adds_replaces_and_removes_keys() {
    let before = request_pod(&fixture(DEPLOYMENT_POD));
    let mut after = before.clone();
    let annotations = after
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.clear();
    annotations.insert("a~b/c".into(), "new".into());
    annotations.insert("zz".into(), "last".into());
    let labels = after.metadata.labels.as_mut().unwrap();
    labels.insert("app".into(), "renamed".into());
    labels.remove("tier");
    let outline = mutate::Outline::of(&before).unwrap();
    let mut patch = mutate::PatchWriter::default();
    assert!(outline.additions(&after, &mut patch).unwrap());
    let patch: json_patch::Patch = serde_json::from_slice(&patch.finish().unwrap()).unwrap();
    let mut pod = serde_json::to_value(&before).unwrap();
    json_patch::patch(&mut pod, &patch).unwrap();
    assert_eq!(pod, serde_json::to_value(&after).unwrap(), "{patch:?}");
}

/// A pod carrying `vigil.dev/otlp-env` without having been injected gets the value `inject`
/// writes (a `replace`), through the outline.
#[test]
fn stale_marker_is_replaced() {
    let webhook = webhook(vec![checkout()], true);
    let mut review = fixture(DEPLOYMENT_POD);
    review["request"]["object"]["metadata"]["annotations"]["vigil.dev/otlp-env"] = json!("old");
    let response = mutate_json(&webhook, &review);
    let result: Pod = serde_json::from_value(patched(&review, &response)).unwrap();
    let expected = inject(request_pod(&review), &webhook.sidecar_for(&checkout()));
    assert_eq!(result, expected);
}

/// Re-invocation (`reinvocationPolicy: IfNeeded`) on an injected pod yields no patch.
#[test]
fn injected_pod_gets_no_patch() {
    let webhook = webhook(vec![checkout()], true);
    let review = fixture(DEPLOYMENT_POD);
    let first = mutate_json(&webhook, &review);
    let mut again = review.clone();
    again["request"]["object"] = patched(&review, &first);
    let second = mutate_json(&webhook, &again);
    assert_eq!(second["response"]["allowed"], true);
    assert!(second["response"]["patch"].is_null(), "{second}");
}

/// A changed sidecar (new agent image) on re-invocation replaces the old agent instead of
/// adding a second one.
#[test]
fn changed_sidecar_replaces_the_old_agent() {
    let review = fixture(DEPLOYMENT_POD);
    let old = mutate_json(&webhook(vec![checkout()], true), &review);
    let mut again = review.clone();
    again["request"]["object"] = patched(&review, &old);
    let mut newer = webhook(vec![checkout()], true);
    newer.agent_image = "ghcr.io/vigil-dev/vigil-agent:0.2.0".into();
    let response = mutate_json(&newer, &again);
    let result: Pod = serde_json::from_value(patched(&again, &response)).unwrap();
    let inits = result.spec.unwrap().init_containers.unwrap();
    let agents: Vec<_> = inits.iter().filter(|c| c.name == AGENT_CONTAINER).collect();
    assert_eq!(agents.len(), 1);
    assert_eq!(
        agents[0].image.as_deref(),
        Some("ghcr.io/vigil-dev/vigil-agent:0.2.0")
    );
}

/// `vigil.dev/inject: "false"` wins over a selecting MonitoredApp: no patch.
#[test]
fn opted_out_pod_is_left_alone() {
    let webhook = webhook(vec![checkout()], true);
    let response = mutate_json(&webhook, &fixture(OPTED_OUT_POD));
    assert_eq!(response["response"]["allowed"], true);
    assert!(response["response"]["patch"].is_null());
}

/// The opt-out and opt-in also work as labels; the annotation wins over the label.
#[test]
fn inject_label_works_like_the_annotation() {
    let webhook = webhook(vec![checkout()], true);
    let mut labelled = fixture(DEPLOYMENT_POD);
    labelled["request"]["object"]["metadata"]["labels"][INJECT_ANNOTATION] = json!("false");
    assert!(mutate_json(&webhook, &labelled)["response"]["patch"].is_null());
    labelled["request"]["object"]["metadata"]["annotations"][INJECT_ANNOTATION] = json!("true");
    assert!(mutate_json(&webhook, &labelled)["response"]["patch"].is_string());

    let mut asked = fixture(ANNOTATED_POD);
    let meta = &mut asked["request"]["object"]["metadata"];
    meta.as_object_mut().unwrap().remove("annotations");
    meta["labels"][INJECT_ANNOTATION] = json!("true");
    assert!(mutate_json(&webhook, &asked)["response"]["patch"].is_string());
}

/// A pod no app selects and that does not ask for the agent is left alone; so is a pod
/// selected by an app of another namespace, and a pod matched only by an empty selector.
#[test]
fn unselected_pod_is_left_alone() {
    let elsewhere = app(
        "checkout",
        "other",
        json!({"matchLabels": {"app": "checkout"}}),
    );
    let everything = app("everything", "retail", json!({}));
    let webhook = webhook(vec![elsewhere, everything], true);
    let response = mutate_json(&webhook, &fixture(DEPLOYMENT_POD));
    assert!(response["response"]["patch"].is_null());
}

/// `matchExpressions` select as Kubernetes does.
#[test]
fn match_expressions_select_pods() {
    let by_expr = app(
        "backend",
        "retail",
        json!({"matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["backend", "api"]},
            {"key": "canary", "operator": "DoesNotExist"}
        ]}),
    );
    let webhook = webhook(vec![by_expr], true);
    let response = mutate_json(&webhook, &fixture(DEPLOYMENT_POD));
    let result: Pod = serde_json::from_value(patched(&fixture(DEPLOYMENT_POD), &response)).unwrap();
    let volumes = result.spec.unwrap().volumes.unwrap();
    assert!(volumes.iter().any(|v| v
        .config_map
        .as_ref()
        .is_some_and(|c| c.name == "vigil-agent-backend")));
}

/// A pod asking for the agent that no app selects gets the agent of the namespace's
/// `default` app, with a warning telling the user what to create.
#[test]
fn annotated_pod_without_app_gets_the_default_agent() {
    let webhook = webhook(vec![checkout()], true);
    let review = fixture(ANNOTATED_POD);
    let response = mutate_json(&webhook, &review);
    let result: Pod = serde_json::from_value(patched(&review, &response)).unwrap();
    let volumes = result.spec.unwrap().volumes.unwrap();
    assert!(volumes.iter().any(|v| v
        .config_map
        .as_ref()
        .is_some_and(|c| c.name == "vigil-agent-default" && c.optional == Some(true))));
    let warning = response["response"]["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("no MonitoredApp selects this pod"),
        "{warning}"
    );
    assert!(warning.contains("\"default\""), "{warning}");
}

/// `vigil.dev/app` picks the app; when several apps select a pod the first by name wins and
/// a warning names them all.
#[test]
fn app_annotation_and_overlapping_selectors() {
    let a = app(
        "a-shop",
        "retail",
        json!({"matchLabels": {"app": "checkout"}}),
    );
    let b = app(
        "b-shop",
        "retail",
        json!({"matchLabels": {"tier": "backend"}}),
    );
    let webhook = webhook(vec![b.clone(), a], true);
    let review = fixture(DEPLOYMENT_POD);
    let response = mutate_json(&webhook, &review);
    let warning = response["response"]["warnings"][0].as_str().unwrap();
    assert!(warning.contains("a-shop, b-shop"), "{warning}");
    let result: Pod = serde_json::from_value(patched(&review, &response)).unwrap();
    let uses = |pod: &Pod, cm: &str| {
        pod.spec
            .as_ref()
            .unwrap()
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .any(|v| v.config_map.as_ref().is_some_and(|c| c.name == cm))
    };
    assert!(uses(&result, "vigil-agent-a-shop"));

    let mut chosen = review.clone();
    chosen["request"]["object"]["metadata"]["annotations"][APP_ANNOTATION] = json!("b-shop");
    let response = mutate_json(&webhook, &chosen);
    assert!(response["response"]["warnings"].is_null());
    let result: Pod = serde_json::from_value(patched(&chosen, &response)).unwrap();
    assert!(uses(&result, "vigil-agent-b-shop"));
    assert_eq!(
        result,
        inject(request_pod(&chosen), &webhook.sidecar_for(&b))
    );
}

/// Only pod creation is mutated; an UPDATE is allowed unchanged.
#[test]
fn updates_are_not_mutated() {
    let webhook = webhook(vec![checkout()], true);
    let mut review = fixture(DEPLOYMENT_POD);
    review["request"]["operation"] = json!("UPDATE");
    review["request"]["oldObject"] = review["request"]["object"].clone();
    let response = mutate_json(&webhook, &review);
    assert_eq!(response["response"]["allowed"], true);
    assert!(response["response"]["patch"].is_null());
}

/// A review whose pod cannot be decoded admits the pod unchanged with a warning (fail open).
#[test]
fn undecodable_pod_fails_open() {
    let webhook = webhook(vec![checkout()], true);
    let mut review = fixture(DEPLOYMENT_POD);
    review["request"]["object"]["spec"]["containers"] = json!("not a list");
    let response = mutate_json(&webhook, &review);
    assert_eq!(response["response"]["allowed"], true);
    assert_eq!(response["response"]["uid"], review["request"]["uid"]);
    assert!(response["response"]["patch"].is_null());
    let warning = response["response"]["warnings"][0].as_str().unwrap();
    assert!(
        warning.starts_with("vigil: agent not injected"),
        "{warning}"
    );
}

/// Bodies that are not an AdmissionReview are errors (HTTP 400), never panics.
#[test]
fn malformed_reviews_are_errors() {
    let webhook = webhook(vec![checkout()], true);
    let bodies: [&[u8]; 6] = [
        b"",
        b"not json",
        b"{\"kind\": \"AdmissionReview\"",
        b"[]",
        b"{\"kind\": \"AdmissionReview\", \"apiVersion\": \"admission.k8s.io/v1\"}",
        b"{\"request\": {\"uid\": 5}}",
    ];
    for body in bodies {
        let err = mutate::review(&webhook, body).unwrap_err();
        assert!(
            err.to_string().starts_with("malformed AdmissionReview"),
            "{err}"
        );
        let err = validate::review(body).unwrap_err();
        assert!(
            err.to_string().starts_with("malformed AdmissionReview"),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// /validate

fn resource_review(operation: &str, object: Value, old: Option<Value>) -> Value {
    json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "c3b4a5d6-e7f8-4901-a2b3-c4d5e6f7a8b9",
            "kind": {"group": "vigil.dev", "version": "v1alpha1", "kind": object["kind"]},
            "resource": {"group": "vigil.dev", "version": "v1alpha1", "resource": "monitoredapps"},
            "requestKind": {"group": "vigil.dev", "version": "v1alpha1", "kind": object["kind"]},
            "requestResource": {"group": "vigil.dev", "version": "v1alpha1", "resource": "monitoredapps"},
            "name": object["metadata"]["name"],
            "namespace": "retail",
            "operation": operation,
            "userInfo": {"username": "jane@example.com", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

fn validate_json(review: &Value) -> Value {
    let out = validate::review(&serde_json::to_vec(review).unwrap()).unwrap();
    serde_json::from_slice(&out).unwrap()
}

fn monitored_app(spec: Value) -> Value {
    json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "MonitoredApp",
        "metadata": {"name": "checkout", "creationTimestamp": null},
        "spec": spec
    })
}

/// A valid MonitoredApp is admitted; invalid ones are rejected with 422 and a message naming
/// the field, the same message `vigil-operator check` prints.
#[test]
fn validate_names_the_field() {
    let good = monitored_app(json!({"selector": {"matchLabels": {"app": "checkout"}}}));
    let response = validate_json(&resource_review("CREATE", good, None));
    assert_eq!(response["response"]["allowed"], true);

    let cases = [
        (
            json!({"selector": {"matchLabels": {"app": "checkout"}}, "traces": {"samplingRatio": 1.5}}),
            "spec.traces.samplingRatio: must be at most 1",
        ),
        (
            json!({"selector": {}}),
            "spec.selector: an empty selector would select every pod in the namespace",
        ),
        (
            json!({"selector": {"matchLabels": {"app": "x"}}, "sepc": 1}),
            "spec.sepc: unknown field `sepc`",
        ),
        (
            json!({"selector": {"matchLabels": {"app": "x"}}, "exporters": {"loki": {
                "url": "http://loki:3100",
                "bearerTokenSecretRef": {"name": "..", "key": "tenant-b"},
            }}}),
            "spec.exporters.loki.bearerTokenSecretRef.name: \"..\" does not match the pattern",
        ),
        (
            json!({"selector": {"matchLabels": {"app": "x"}}, "exporters": {"loki": {
                "url": "http://loki:3100",
                "bearerTokenSecretRef": {"name": "loki", "key": "../tenant-b/token"},
            }}}),
            "spec.exporters.loki.bearerTokenSecretRef.key: \"../tenant-b/token\" does not match the pattern",
        ),
    ];
    for (spec, expected) in cases {
        let response = validate_json(&resource_review("CREATE", monitored_app(spec), None));
        assert_eq!(response["response"]["allowed"], false);
        assert_eq!(response["response"]["status"]["code"], 422);
        let message = response["response"]["status"]["message"].as_str().unwrap();
        assert!(message.starts_with(expected), "{message}");
    }
}

/// An AlertPolicy whose app does not exist yet is admitted (folders apply in any order; the
/// status reports it), while a broken one is rejected naming the field.
#[test]
fn validate_checks_each_object_on_its_own() {
    let policy = |rules: Value| {
        json!({
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "AlertPolicy",
            "metadata": {"name": "checkout-alerts"},
            "spec": {
                "appRef": {"name": "not-created-yet"},
                "rules": rules,
                "audiences": [{"audience": "engineering", "receivers": [
                    {"name": "oncall", "email": {"to": "oncall@shop.example"}}
                ]}]
            }
        })
    };
    let ok = policy(json!([{"name": "Crash", "crashRate": {}}]));
    assert_eq!(
        validate_json(&resource_review("CREATE", ok, None))["response"]["allowed"],
        true
    );
    let twice =
        policy(json!([{"name": "Crash", "crashRate": {}}, {"name": "Crash", "crashRate": {}}]));
    let response = validate_json(&resource_review("CREATE", twice, None));
    assert_eq!(response["response"]["allowed"], false);
    let message = response["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("spec.rules[1].name: rule name \"Crash\" is used twice"),
        "{message}"
    );
}

/// PromQL is parsed for real: an expression with a stray word that only balances brackets and
/// quotes is refused, naming the field and the word.
#[test]
fn validate_parses_promql() {
    let policy = json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "AlertPolicy",
        "metadata": {"name": "checkout-alerts", "namespace": "retail"},
        "spec": {
            "appRef": {"name": "checkout"},
            "rules": [
                {"name": "Crash", "crashRate": {}},
                {"name": "Errors", "errorRate": {"thresholdPercent": 2}},
                {"name": "Bogus", "promql": {"expr": "sum(rate(errors_total[5m])) > bogus bogus"}}
            ],
            "audiences": [{"audience": "engineering", "receivers": [
                {"name": "oncall", "email": {"to": "oncall@shop.example"}}
            ]}]
        }
    });
    let response = validate_json(&resource_review("CREATE", policy, None));
    assert_eq!(response["response"]["allowed"], false);
    let message = response["response"]["status"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        "spec.rules[2].promql.expr: unexpected identifier \"bogus\" at character 37"
    );
}

/// A policy whose rule goes to an audience whose receivers filter out the rule's severity is
/// refused, naming the rule, the audience and the reason; an objective with receivers of its
/// own that are valid is admitted.
#[test]
fn validate_refuses_alerts_without_a_receiver() {
    let policy = json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "AlertPolicy",
        "metadata": {"name": "checkout-alerts", "namespace": "retail"},
        "spec": {
            "appRef": {"name": "checkout"},
            "rules": [{"name": "Slow", "severity": "warning", "audiences": ["support"],
                       "latency": {"quantile": 0.99, "thresholdSeconds": 1}}],
            "audiences": [{"audience": "support", "severities": ["critical"], "receivers": [
                {"name": "desk", "email": {"to": "desk@shop.example"}}
            ]}]
        }
    });
    let response = validate_json(&resource_review("CREATE", policy, None));
    assert_eq!(response["response"]["allowed"], false);
    let message = response["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("spec.rules[0]: alert Slow (severity warning) for audience support reaches no receiver: the receivers of audience support only take severities [critical]"),
        "{message}"
    );
    let slo = json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "SLO",
        "metadata": {"name": "availability", "namespace": "retail"},
        "spec": {
            "appRef": {"name": "checkout"},
            "sli": {"availability": {}},
            "objective": 99.9,
            "alerting": {"receivers": [{"name": "sre", "email": {"to": "sre@shop.example"}}]}
        }
    });
    let response = validate_json(&resource_review("CREATE", slo, None));
    assert_eq!(response["response"]["allowed"], true, "{response}");
}

/// Updates that leave the spec alone (finalizers, labels) and objects being deleted are never
/// blocked, even when the stored spec would no longer pass.
#[test]
fn validate_never_blocks_the_operator() {
    let invalid = monitored_app(json!({"selector": {}}));
    let mut with_finalizer = invalid.clone();
    with_finalizer["metadata"]["finalizers"] = json!(["vigil.dev/cleanup"]);
    let response = validate_json(&resource_review(
        "UPDATE",
        with_finalizer,
        Some(invalid.clone()),
    ));
    assert_eq!(response["response"]["allowed"], true);

    let mut deleting = invalid.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2025-03-04T10:21:34Z");
    deleting["spec"]["clientType"] = json!("banking");
    let response = validate_json(&resource_review("UPDATE", deleting, Some(invalid.clone())));
    assert_eq!(response["response"]["allowed"], true);

    let mut changed = invalid.clone();
    changed["spec"]["clientType"] = json!("banking");
    let response = validate_json(&resource_review("UPDATE", changed, Some(invalid)));
    assert_eq!(response["response"]["allowed"], false);
}

/// The pod's namespace decides what is injected: under Pod Security `baseline` the agent comes
/// without the pod-log hostPath (and says why); a namespace the webhook has not seen yet counts
/// as `restricted`; a privileged namespace gets the log mount.
#[test]
fn injection_follows_the_namespace_pod_security_level() {
    let review = fixture(DEPLOYMENT_POD);
    for (level, host_path) in [
        (Some("baseline"), false),
        (Some("restricted"), false),
        (None, true),
    ] {
        let mut webhook = webhook(vec![checkout()], true);
        webhook.namespaces = namespaces(&[("retail", level)]);
        let answer = mutate_json(&webhook, &review);
        assert_eq!(answer["response"]["allowed"], true);
        let pod: Pod = serde_json::from_value(patched(&review, &answer)).unwrap();
        let spec = pod.spec.unwrap();
        let mounts_logs = spec.volumes.iter().flatten().any(|v| v.host_path.is_some());
        assert_eq!(mounts_logs, host_path, "{level:?}");
        let agent = spec
            .init_containers
            .unwrap()
            .into_iter()
            .find(|c| c.name == AGENT_CONTAINER)
            .unwrap();
        let off = agent
            .env
            .unwrap()
            .into_iter()
            .any(|e| e.name == vigil_crds::agent_config::POD_LOGS_OFF_ENV);
        assert_eq!(off, !host_path, "{level:?}");
    }
    let mut unseen = webhook(vec![checkout()], true);
    unseen.namespaces = namespaces(&[]);
    assert_eq!(unseen.pod_security("retail"), PodSecurityLevel::Restricted);
}

/// The last line of defence: if the agent would add something the namespace's level forbids
/// (here a sidecar built without the level, hostPath included), no patch is made and the pod
/// is admitted as it is, with the violation named.
#[test]
fn agent_that_would_break_pod_security_is_not_injected() {
    let review = fixture(DEPLOYMENT_POD);
    let sidecar = AgentSidecar::for_app(&checkout(), AGENT_IMAGE);
    assert!(sidecar.container_logs);
    let error = mutate::injection_patch(
        request_pod(&review),
        &sidecar,
        PodSecurityLevel::Baseline,
        || None,
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("Pod Security level baseline") && message.contains("hostPath volume"),
        "{message}"
    );
    // The same sidecar in a privileged namespace is fine.
    let original = || Some(request_pod(&review));
    assert!(mutate::injection_patch(
        request_pod(&review),
        &sidecar,
        PodSecurityLevel::Privileged,
        original
    )
    .unwrap()
    .is_some());
}

/// Kubernetes versions: native sidecars from 1.29 on, including provider suffixes; a version
/// that cannot be read gets the regular container every version accepts.
#[test]
fn native_sidecar_from_1_29() {
    let info =
        |major: &str, minor: &str, git: &str| k8s_openapi::apimachinery::pkg::version::Info {
            major: major.into(),
            minor: minor.into(),
            git_version: git.into(),
            ..Default::default()
        };
    assert!(!supports_native_sidecar(&info("1", "28", "v1.28.7")));
    assert!(!supports_native_sidecar(&info("1", "27+", "")));
    assert!(supports_native_sidecar(&info("1", "29", "")));
    assert!(supports_native_sidecar(&info("1", "31+", "")));
    assert!(supports_native_sidecar(&info("", "", "v1.30.2-gke.1")));
    assert!(!supports_native_sidecar(&info("", "", "v1.28.7+k3s1")));
    assert!(!supports_native_sidecar(&info("", "", "")));
}

// ---------------------------------------------------------------------------------------------
// The HTTPS server

const HOST: &str = "vigil-webhook.vigil-system.svc";

fn dns_names() -> Vec<String> {
    vec![HOST.to_owned(), format!("{HOST}.cluster.local")]
}

fn issue_certs() -> WebhookCerts {
    tls::issue(
        None,
        Plan::Create,
        &dns_names(),
        SystemTime::now(),
        tls::Validity::default(),
    )
    .unwrap()
}

fn https_client(ca_pem: &str, addr: SocketAddr) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .resolve(HOST, addr)
        .tls_info(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

struct Running {
    addr: SocketAddr,
    resolver: Arc<ServingCertResolver>,
    ready: Arc<AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), WebhookError>>,
}

async fn start(certs: &WebhookCerts) -> Running {
    start_draining(certs, Duration::ZERO).await
}

/// A server that drains for `drain` after it is told to stop.
async fn start_draining(certs: &WebhookCerts, drain: Duration) -> Running {
    start_with(certs, drain, server::ConnectionLimits::default()).await
}

/// A server with the given drain period and connection limits.
async fn start_with(
    certs: &WebhookCerts,
    drain: Duration,
    limits: server::ConnectionLimits,
) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let resolver = Arc::new(ServingCertResolver::new());
    resolver.set(&certs.serving).unwrap();
    let ready = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::serve_with_limits(
        listener,
        Arc::new(webhook(vec![checkout()], true)),
        resolver.clone(),
        ready.clone(),
        async move {
            let _ = stopped.await;
        },
        drain,
        limits,
    ));
    Running {
        addr,
        resolver,
        ready,
        stop: Some(stop),
        task,
    }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("https://{HOST}:{}{path}", self.addr.port())
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
        assert!(!self.ready.load(Ordering::Relaxed));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn served_cert(client: &reqwest::Client, url: &str) -> Vec<u8> {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let info = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .unwrap();
    info.peer_certificate().unwrap().to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// A client trusting only the generated CA completes the handshake for the Service's name and
/// gets answers: `/healthz`, `/readyz`, an injection, and 400 for a malformed review. A
/// client trusting another CA is refused.
#[tokio::test]
async fn https_handshake_with_the_generated_ca() {
    let certs = issue_certs();
    let server = start(&certs).await;
    let client = https_client(&certs.bundle_pem(), server.addr);

    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !server.ready.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let review = fixture(DEPLOYMENT_POD);
    let response = client
        .post(server.url(MUTATE_PATH))
        .header("content-type", "application/json")
        .body(DEPLOYMENT_POD)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let pod: Pod = serde_json::from_value(patched(&review, &answer)).unwrap();
    assert!(pod.metadata.annotations.unwrap().contains_key(INJECTED));

    let bad = client
        .post(server.url(MUTATE_PATH))
        .body("{\"kind\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad
        .text()
        .await
        .unwrap()
        .starts_with("malformed AdmissionReview"));
    let bad = client
        .post(server.url(VALIDATE_PATH))
        .body("[1, 2]")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let missing = client.get(server.url("/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    let stranger = https_client(&issue_certs().bundle_pem(), server.addr);
    assert!(stranger.get(server.url("/healthz")).send().await.is_err());
    server.stop().await;
}

/// A terminating replica drains: once told to stop, `/readyz` fails at once (the endpoints
/// controller takes it out of the Service) while admission requests are still answered for the
/// drain period, so the API server's calls in that window succeed; then it stops listening.
#[tokio::test]
async fn terminating_server_keeps_answering_while_not_ready() {
    let certs = issue_certs();
    let drain = Duration::from_secs(2);
    let mut server = start_draining(&certs, drain).await;
    let client = https_client(&certs.bundle_pem(), server.addr);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !server.ready.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let _ = server.stop.take().unwrap().send(());
    let stopped_at = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    // A new connection (not only a kept-alive one) is still accepted and answered.
    let fresh = https_client(&certs.bundle_pem(), server.addr);
    let response = fresh
        .post(server.url(MUTATE_PATH))
        .header("content-type", "application/json")
        .body(DEPLOYMENT_POD)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert!(
        !server.task.is_finished(),
        "stopped before the drain period ended"
    );

    (&mut server.task).await.unwrap().unwrap();
    assert!(
        stopped_at.elapsed() >= drain,
        "drained only {:?}",
        stopped_at.elapsed()
    );
    let late = https_client(&certs.bundle_pem(), server.addr);
    assert!(
        late.get(server.url("/healthz")).send().await.is_err(),
        "still listening after the drain"
    );
}

/// After a renewal is handed to the resolver, new connections get the new certificate while
/// the server keeps running.
#[tokio::test]
async fn renewed_certificate_is_served_without_restart() {
    let certs = issue_certs();
    let server = start(&certs).await;
    let first = https_client(&certs.bundle_pem(), server.addr);
    assert_eq!(
        served_cert(&first, &server.url("/healthz")).await,
        der(&certs.serving.cert_pem)
    );

    let renewed = tls::issue(
        Some(&certs),
        Plan::RenewServing,
        &dns_names(),
        SystemTime::now(),
        tls::Validity::default(),
    )
    .unwrap();
    assert_ne!(renewed.serving, certs.serving);
    assert!(server.resolver.set(&renewed.serving).unwrap());
    let second = https_client(&certs.bundle_pem(), server.addr);
    assert_eq!(
        served_cert(&second, &server.url("/healthz")).await,
        der(&renewed.serving.cert_pem)
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Slow and idle connections

/// A raw TLS connection to `addr` trusting `ca_pem`, offering `alpn`.
async fn tls_connect(
    ca_pem: &str,
    addr: SocketAddr,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from(HOST.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// Sends `first`, then one byte of `trickle` every `every` (cycling), reading whatever the
/// server answers, until the server closes the connection; returns how long that took and what
/// the server sent, or `None` if it was still open after `give_up`.
async fn held_open(
    mut tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    first: &[u8],
    trickle: &[u8],
    every: Duration,
    give_up: Duration,
) -> Option<(Duration, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = tokio::time::Instant::now();
    let mut answer = Vec::new();
    if tls.write_all(first).await.is_err() || tls.flush().await.is_err() {
        return Some((started.elapsed(), answer));
    }
    let mut next = trickle.iter().cycle();
    let mut buf = [0u8; 4096];
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        if started.elapsed() > give_up {
            return None;
        }
        tokio::select! {
            read = tls.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some((started.elapsed(), answer)),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick() => {
                if let Some(&b) = next.next() {
                    if tls.write_all(&[b]).await.is_err() || tls.flush().await.is_err() {
                        return Some((started.elapsed(), answer));
                    }
                }
            }
        }
    }
}

/// Slowloris: connections that send an HTTP/1.1 request's headers a byte at a time are closed
/// once the header read timeout has passed, all of them, while the server keeps answering.
#[tokio::test]
async fn slow_headers_are_cut_off() {
    let certs = issue_certs();
    let limits = server::ConnectionLimits {
        header_read: Duration::from_secs(1),
        idle: Duration::from_secs(60),
        ..server::ConnectionLimits::default()
    };
    let server = start_with(&certs, Duration::ZERO, limits).await;
    let ca = certs.bundle_pem();
    let mut slow = Vec::new();
    for _ in 0..20 {
        let tls = tls_connect(&ca, server.addr, b"http/1.1").await;
        slow.push(tokio::spawn(held_open(
            tls,
            b"POST /validate HTTP/1.1\r\nHost: vigil\r\n",
            b"X-Slow: a\r\n",
            Duration::from_millis(200),
            Duration::from_secs(8),
        )));
    }
    let client = https_client(&ca, server.addr);
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    for conn in slow {
        let (after, _) = conn
            .await
            .unwrap()
            .expect("slow headers still open after 8 s");
        assert!(
            after < Duration::from_secs(4),
            "closed only after {after:?}"
        );
    }
    server.stop().await;
}

/// A connection with no request in flight is closed after the idle timeout: an HTTP/1.1
/// keep-alive connection after its request, and an HTTP/2 connection that only sent its
/// preface. A request is answered normally before that.
#[tokio::test]
async fn idle_connections_are_closed() {
    let certs = issue_certs();
    let limits = server::ConnectionLimits {
        idle: Duration::from_secs(1),
        ..server::ConnectionLimits::default()
    };
    let server = start_with(&certs, Duration::ZERO, limits).await;
    let ca = certs.bundle_pem();

    let h1 = tls_connect(&ca, server.addr, b"http/1.1").await;
    let kept_alive = held_open(
        h1,
        b"GET /healthz HTTP/1.1\r\nHost: vigil\r\n\r\n",
        b"",
        Duration::from_millis(100),
        Duration::from_secs(8),
    );
    let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // an empty SETTINGS frame
    let h2 = tls_connect(&ca, server.addr, b"h2").await;
    let preface_only = held_open(
        h2,
        &preface,
        b"",
        Duration::from_millis(100),
        Duration::from_secs(8),
    );
    let (h1, h2) = tokio::join!(kept_alive, preface_only);
    let (after, answer) = h1.expect("idle HTTP/1.1 connection still open after 8 s");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        after < Duration::from_secs(4),
        "HTTP/1.1 closed after {after:?}"
    );
    let (after, _) = h2.expect("idle HTTP/2 connection still open after 8 s");
    assert!(
        after < Duration::from_secs(4),
        "HTTP/2 closed after {after:?}"
    );
    server.stop().await;
}

/// A request body sent a byte at a time gets 408 once the body read timeout has passed, and
/// the connection is closed.
#[tokio::test]
async fn slow_bodies_time_out() {
    let certs = issue_certs();
    let limits = server::ConnectionLimits {
        body_read: Duration::from_secs(1),
        idle: Duration::from_secs(60),
        ..server::ConnectionLimits::default()
    };
    let server = start_with(&certs, Duration::ZERO, limits).await;
    let tls = tls_connect(&certs.bundle_pem(), server.addr, b"http/1.1").await;
    let (after, answer) = held_open(
        tls,
        b"POST /validate HTTP/1.1\r\nHost: vigil\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n{",
        b" ",
        Duration::from_millis(200),
        Duration::from_secs(8),
    )
    .await
    .expect("slow body still open after 8 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(after < Duration::from_secs(4), "closed after {after:?}");
    server.stop().await;
}
