//! `/mutate-pods`: which new pods get the agent, and the JSON Patch that adds it.
//!
//! Which app's agent a pod gets, in order:
//! 1. `vigil.dev/inject: "false"` on the pod: none, whatever else says so. (This and
//!    `"true"` below may be an annotation or a label; the annotation wins when both are set.)
//! 2. `vigil.dev/app: <name>`: that `MonitoredApp` of the pod's namespace.
//! 3. The `MonitoredApp`s of the pod's namespace whose selector matches the pod's labels; if
//!    several do, the first by name, with a warning naming the others.
//! 4. `vigil.dev/inject: "true"` and no app selects the pod: the agent of a `MonitoredApp`
//!    named `default` (its ConfigMap `vigil-agent-default` is mounted optionally, so the agent
//!    starts and waits until such an app exists), with a warning saying so.
//! 5. Otherwise none.
//!
//! Only pod creation is handled (an existing pod's containers cannot change). The answer is
//! the difference between the pod and `inject(pod)` as a JSON Patch: re-invocation on an
//! injected pod gives an empty patch, because `inject` is idempotent. The webhook fails open:
//! any error admits the pod unchanged with a warning, never a rejection.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Selector, SelectorExt};
use kube::ResourceExt;
use serde_json::Value;
use vigil_crds::MonitoredApp;

use super::{Webhook, APP_ANNOTATION, DEFAULT_APP, INJECT_ANNOTATION};
use crate::render::inject::inject;

/// A request body that is not an `AdmissionReview` with a request: answered with HTTP 400.
#[derive(Debug, thiserror::Error)]
#[error("malformed AdmissionReview: {0}")]
pub struct MalformedReview(pub String);

/// Answers one `AdmissionReview` of a pod: the response review as JSON, or
/// [`MalformedReview`] when the body is not a review at all.
pub fn review(webhook: &Webhook, body: &[u8]) -> Result<Vec<u8>, MalformedReview> {
    let response = match serde_json::from_slice::<AdmissionReview<Pod>>(body) {
        Ok(review) => {
            let request: AdmissionRequest<Pod> = review
                .try_into()
                .map_err(|_| MalformedReview("it has no request".into()))?;
            let namespace = request.namespace.as_deref().unwrap_or("default");
            let apps = webhook
                .apps
                .state_filter(|app| app.namespace().as_deref() == Some(namespace));
            admit_pod(webhook, &request, &apps)
        }
        // A review whose pod does not decode (a field newer than this operator knows, with an
        // unexpected type): admit the pod unchanged rather than block it.
        Err(pod_error) => match serde_json::from_slice::<AdmissionReview<DynamicObject>>(body) {
            Ok(review) => {
                let request: AdmissionRequest<DynamicObject> = review
                    .try_into()
                    .map_err(|_| MalformedReview("it has no request".into()))?;
                let mut response = AdmissionResponse::from(&request);
                response.warnings = Some(vec![format!(
                    "vigil: agent not injected: cannot read the pod: {pod_error}"
                )]);
                response
            }
            Err(e) => return Err(MalformedReview(e.to_string())),
        },
    };
    review_json(response)
}

/// The response review as the API server reads it. `patch` is a byte string in the
/// Kubernetes API, which JSON carries as base64 (the Go encoding); kube's type would write it
/// as a list of numbers.
pub fn review_json(mut response: AdmissionResponse) -> Result<Vec<u8>, MalformedReview> {
    let patch = response.patch.take();
    let mut review =
        serde_json::to_value(response.into_review()).map_err(|e| MalformedReview(e.to_string()))?;
    if let (Some(patch), Some(Value::Object(slot))) = (patch, review.get_mut("response")) {
        let encoded = serde_json::to_value(k8s_openapi::ByteString(patch))
            .map_err(|e| MalformedReview(e.to_string()))?;
        slot.insert("patch".to_owned(), encoded);
    }
    serde_json::to_vec(&review).map_err(|e| MalformedReview(e.to_string()))
}

/// The admission response for one pod request (always allowed).
pub fn admit_pod(
    webhook: &Webhook,
    request: &AdmissionRequest<Pod>,
    apps: &[Arc<MonitoredApp>],
) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(request);
    if request.operation != Operation::Create {
        return response;
    }
    let Some(pod) = &request.object else {
        return response;
    };
    let namespace = request
        .namespace
        .clone()
        .or_else(|| pod.namespace())
        .unwrap_or_else(|| "default".to_owned());
    let mut warnings = Vec::new();
    let sidecar = match choose_app(pod, &namespace, apps, &mut warnings) {
        Choice::Skip => None,
        Choice::App(app) => Some(webhook.sidecar_for(app)),
        Choice::Default => default_app(&namespace).map(|app| webhook.sidecar_for(&app)),
    };
    if let Some(sidecar) = sidecar {
        let injected = inject(pod.clone(), &sidecar);
        match pod_patch(pod, &injected) {
            Ok(patch) if patch.0.is_empty() => {}
            Ok(patch) => match response.clone().with_patch(patch) {
                Ok(patched) => {
                    tracing::debug!(
                        namespace = %namespace,
                        pod = %pod_name(pod),
                        "agent injected"
                    );
                    response = patched;
                }
                Err(e) => warnings.push(format!("vigil: agent not injected: {e}")),
            },
            Err(e) => warnings.push(format!("vigil: agent not injected: {e}")),
        }
    }
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}

/// The pod's name, or its `generateName` prefix followed by `*` while it has no name yet.
fn pod_name(pod: &Pod) -> String {
    match (&pod.metadata.name, &pod.metadata.generate_name) {
        (Some(name), _) => name.clone(),
        (None, Some(prefix)) => format!("{prefix}*"),
        (None, None) => String::new(),
    }
}

/// Whose agent a pod gets.
#[derive(Debug)]
pub enum Choice<'a> {
    /// No agent.
    Skip,
    /// The agent of this app.
    App(&'a MonitoredApp),
    /// The agent of the namespace's `default` app (which may not exist yet).
    Default,
}

/// Applies the rules in this module's documentation; `apps` are the `MonitoredApp`s of the
/// pod's namespace. Explanations for the user go to `warnings`.
pub fn choose_app<'a>(
    pod: &Pod,
    namespace: &str,
    apps: &'a [Arc<MonitoredApp>],
    warnings: &mut Vec<String>,
) -> Choice<'a> {
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    // The annotation, or else a label of the same name (a label also lets the API server skip
    // opted-out pods before calling the webhook).
    let setting = annotations
        .get(INJECT_ANNOTATION)
        .or_else(|| labels.get(INJECT_ANNOTATION));
    let asked = match setting.map(String::as_str) {
        Some(v) if v.eq_ignore_ascii_case("false") => return Choice::Skip,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(other) => {
            warnings.push(format!(
                "vigil: {INJECT_ANNOTATION}={other:?} is neither \"true\" nor \"false\"; ignored"
            ));
            false
        }
        None => false,
    };
    if let Some(name) = annotations.get(APP_ANNOTATION) {
        if let Some(app) = apps.iter().find(|a| a.name_any() == *name) {
            return Choice::App(app);
        }
        warnings.push(format!(
            "vigil: annotation {APP_ANNOTATION} names MonitoredApp {name:?}, which does not exist in namespace {namespace:?}"
        ));
    }
    let mut selecting: Vec<&MonitoredApp> = apps
        .iter()
        .map(Arc::as_ref)
        .filter(|app| selects(app, labels))
        .collect();
    selecting.sort_by_key(|a| a.name_any());
    if let Some(first) = selecting.first() {
        if selecting.len() > 1 {
            let names: Vec<String> = selecting.iter().map(|a| a.name_any()).collect();
            warnings.push(format!(
                "vigil: this pod is selected by MonitoredApps {}; injected the agent of {:?} (set the annotation {APP_ANNOTATION} to choose)",
                names.join(", "),
                first.name_any()
            ));
        }
        return Choice::App(first);
    }
    if asked {
        let exists = apps.iter().any(|a| a.name_any() == DEFAULT_APP);
        if !exists {
            warnings.push(format!(
                "vigil: no MonitoredApp selects this pod; injected an agent that waits for MonitoredApp {DEFAULT_APP:?} in namespace {namespace:?} (or set the annotation {APP_ANNOTATION})"
            ));
        }
        return Choice::Default;
    }
    Choice::Skip
}

/// Whether `app` selects a pod with `labels`. An empty selector selects nothing here: it is
/// rejected as invalid, and must never put the agent into every pod of a namespace.
fn selects(app: &MonitoredApp, labels: &BTreeMap<String, String>) -> bool {
    match Selector::try_from(app.spec.selector.clone()) {
        Ok(selector) => !selector.selects_all() && selector.matches(labels),
        Err(_) => false,
    }
}

/// The `default` app of a namespace: every setting at its default.
fn default_app(namespace: &str) -> Option<MonitoredApp> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": vigil_crds::API_VERSION,
        "kind": "MonitoredApp",
        "metadata": {"name": DEFAULT_APP, "namespace": namespace},
        "spec": {"selector": {}},
    }))
    .ok()
}

/// The JSON Patch turning `original` into `injected`.
///
/// Lists of named items (containers, volumes, environment variables) are compared by name, so
/// an agent inserted in front of the init containers is one `add`, and items the patch does
/// not touch are never rewritten (a field this operator does not know survives). Both pods
/// are compared in the same typed form, so fields unknown to it never appear in the patch.
pub fn pod_patch(original: &Pod, injected: &Pod) -> Result<Patch, serde_json::Error> {
    let mut ops = Vec::new();
    if differs_only_where_inject_writes(original, injected) {
        // The common case, and much cheaper than encoding both whole pods: only the parts
        // `inject` writes are compared.
        let (before, after) = (&original.metadata, &injected.metadata);
        diff_part(
            &before.annotations,
            &after.annotations,
            &["metadata", "annotations"],
            &mut ops,
        )?;
        diff_part(
            &before.labels,
            &after.labels,
            &["metadata", "labels"],
            &mut ops,
        )?;
        if let (Some(before), Some(after)) = (&original.spec, &injected.spec) {
            diff_part(
                &before.init_containers,
                &after.init_containers,
                &["spec", "initContainers"],
                &mut ops,
            )?;
            diff_part(
                &Some(&before.containers),
                &Some(&after.containers),
                &["spec", "containers"],
                &mut ops,
            )?;
            diff_part(
                &before.volumes,
                &after.volumes,
                &["spec", "volumes"],
                &mut ops,
            )?;
        }
    } else {
        let before = serde_json::to_value(original)?;
        let after = serde_json::to_value(injected)?;
        diff_values(&before, &after, &mut PointerBuf::new(), &mut ops);
    }
    Ok(Patch(ops))
}

/// Whether the two pods are equal once the fields `inject` writes are set aside (and both
/// have a spec, or neither).
fn differs_only_where_inject_writes(original: &Pod, injected: &Pod) -> bool {
    fn rest(pod: &Pod) -> Pod {
        let mut pod = pod.clone();
        pod.metadata.annotations = None;
        pod.metadata.labels = None;
        if let Some(spec) = pod.spec.as_mut() {
            spec.init_containers = None;
            spec.containers = Vec::new();
            spec.volumes = None;
        }
        pod
    }
    original.spec.is_some() == injected.spec.is_some() && rest(original) == rest(injected)
}

/// Adds the operations turning `before` into `after`, both at `path`: an absent field is
/// added or removed as a whole.
fn diff_part<T: serde::Serialize>(
    before: &Option<T>,
    after: &Option<T>,
    path: &[&str],
    ops: &mut Vec<PatchOperation>,
) -> Result<(), serde_json::Error> {
    let mut pointer = PointerBuf::new();
    for token in path {
        pointer.push_back(*token);
    }
    match (before, after) {
        (None, None) => {}
        (None, Some(after)) => ops.push(add(&pointer, &serde_json::to_value(after)?)),
        (Some(_), None) => ops.push(remove(&pointer)),
        (Some(before), Some(after)) => {
            let (before, after) = (serde_json::to_value(before)?, serde_json::to_value(after)?);
            diff_values(&before, &after, &mut pointer, ops);
        }
    }
    Ok(())
}

fn diff_values(left: &Value, right: &Value, path: &mut PointerBuf, ops: &mut Vec<PatchOperation>) {
    match (left, right) {
        (Value::Object(l), Value::Object(r)) => {
            for (key, rv) in r {
                path.push_back(key.as_str());
                match l.get(key) {
                    Some(lv) => diff_values(lv, rv, path, ops),
                    None => ops.push(add(path, rv)),
                }
                path.pop_back();
            }
            for key in l.keys().filter(|k| !r.contains_key(*k)) {
                path.push_back(key.as_str());
                ops.push(remove(path));
                path.pop_back();
            }
        }
        (Value::Array(l), Value::Array(r)) => diff_arrays(l, r, path, ops),
        _ if left == right => {}
        _ => ops.push(PatchOperation::Replace(ReplaceOperation {
            path: path.clone(),
            value: right.clone(),
        })),
    }
}

/// The `name` of every item, if every item is an object with a distinct string `name`.
fn item_names(items: &[Value]) -> Option<Vec<&str>> {
    let names: Vec<&str> = items
        .iter()
        .map(|v| v.get("name").and_then(Value::as_str))
        .collect::<Option<_>>()?;
    let distinct: HashSet<&str> = names.iter().copied().collect();
    (distinct.len() == names.len()).then_some(names)
}

fn diff_arrays(l: &[Value], r: &[Value], path: &mut PointerBuf, ops: &mut Vec<PatchOperation>) {
    if let (Some(left_names), Some(right_names)) = (item_names(l), item_names(r)) {
        let in_right: HashSet<&str> = right_names.iter().copied().collect();
        let in_left: HashSet<&str> = left_names.iter().copied().collect();
        let kept: Vec<usize> = (0..l.len())
            .filter(|&i| in_right.contains(left_names[i]))
            .collect();
        let kept_in_right: Vec<&str> = right_names
            .iter()
            .copied()
            .filter(|n| in_left.contains(n))
            .collect();
        let same_order = kept.iter().map(|&i| left_names[i]).eq(kept_in_right);
        if same_order {
            // Removals from the back, so the indices of the earlier ones stay valid.
            for i in (0..l.len())
                .rev()
                .filter(|&i| !in_right.contains(left_names[i]))
            {
                path.push_back(i);
                ops.push(remove(path));
                path.pop_back();
            }
            let mut next_kept = kept.iter().peekable();
            for (j, item) in r.iter().enumerate() {
                path.push_back(j);
                match next_kept.peek() {
                    Some(&&i) if left_names[i] == right_names[j] => {
                        diff_values(&l[i], item, path, ops);
                        next_kept.next();
                    }
                    _ => ops.push(add(path, item)),
                }
                path.pop_back();
            }
            return;
        }
    }
    for (i, (lv, rv)) in l.iter().zip(r).enumerate() {
        path.push_back(i);
        diff_values(lv, rv, path, ops);
        path.pop_back();
    }
    for (i, item) in r.iter().enumerate().skip(l.len()) {
        path.push_back(i);
        ops.push(add(path, item));
        path.pop_back();
    }
    for i in (r.len()..l.len()).rev() {
        path.push_back(i);
        ops.push(remove(path));
        path.pop_back();
    }
}

fn add(path: &PointerBuf, value: &Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: path.clone(),
        value: value.clone(),
    })
}

fn remove(path: &PointerBuf) -> PatchOperation {
    PatchOperation::Remove(RemoveOperation { path: path.clone() })
}
