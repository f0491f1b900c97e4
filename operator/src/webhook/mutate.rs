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
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, Volume};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Selector, SelectorExt};
use kube::ResourceExt;
use serde::Serialize;
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
                .state_filter(|app| app.metadata.namespace.as_deref() == Some(namespace));
            admit_pod(webhook, request, &apps)
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
    mut request: AdmissionRequest<Pod>,
    apps: &[Arc<MonitoredApp>],
) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(&request);
    if request.operation != Operation::Create {
        return response;
    }
    let Some(pod) = request.object.take() else {
        return response;
    };
    let namespace = request
        .namespace
        .take()
        .or_else(|| pod.namespace())
        .unwrap_or_else(|| "default".to_owned());
    let mut warnings = Vec::new();
    let sidecar = match choose_app(&pod, &namespace, apps, &mut warnings) {
        Choice::Skip => None,
        Choice::App(app) => Some(webhook.sidecar_for(app)),
        Choice::Default => default_app(&namespace).map(|app| webhook.sidecar_for(&app)),
    };
    if let Some(sidecar) = sidecar {
        let name = pod_name(&pod);
        let injected = inject(pod.clone(), &sidecar);
        match pod_patch(pod, injected) {
            Ok(patch) if patch.0.is_empty() => {}
            Ok(patch) => match response.clone().with_patch(patch) {
                Ok(patched) => {
                    tracing::debug!(namespace = %namespace, pod = %name, "agent injected");
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
/// Items that are equal are compared as typed values and never encoded, which keeps the cost
/// close to that of encoding what the agent adds, whatever the pod's size.
pub fn pod_patch(mut original: Pod, mut injected: Pod) -> Result<Patch, serde_json::Error> {
    let mut ops = Vec::new();
    let mut before = InjectedParts::take(&mut original);
    let mut after = InjectedParts::take(&mut injected);
    if original != injected {
        // `inject` changed more than it is known to: compare the whole pods.
        before.put_back(&mut original);
        after.put_back(&mut injected);
        let (before, after) = (
            serde_json::to_value(original)?,
            serde_json::to_value(injected)?,
        );
        diff_values(&before, &after, &mut PointerBuf::new(), &mut ops);
        return Ok(Patch(ops));
    }
    let at = |tokens: &[&str]| {
        let mut pointer = PointerBuf::new();
        for token in tokens {
            pointer.push_back(*token);
        }
        pointer
    };
    diff_option(
        before.annotations,
        after.annotations,
        &at(&["metadata", "annotations"]),
        &mut ops,
        diff_string_map,
    )?;
    diff_option(
        before.labels,
        after.labels,
        &at(&["metadata", "labels"]),
        &mut ops,
        diff_string_map,
    )?;
    let init = at(&["spec", "initContainers"]);
    diff_option(
        before.init_containers,
        after.init_containers,
        &init,
        &mut ops,
        diff_containers,
    )?;
    let containers = at(&["spec", "containers"]);
    diff_option(
        before.containers,
        after.containers,
        &containers,
        &mut ops,
        diff_containers,
    )?;
    diff_option(
        before.volumes,
        after.volumes,
        &at(&["spec", "volumes"]),
        &mut ops,
        |b, a, path, ops| diff_named(b, a, |v: &Volume| v.name.as_str(), path, ops, diff_encoded),
    )?;
    Ok(Patch(ops))
}

/// The fields of a pod that `inject` writes, taken out so the rest can be compared as a whole.
struct InjectedParts {
    annotations: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
    init_containers: Option<Vec<Container>>,
    containers: Option<Vec<Container>>,
    volumes: Option<Vec<Volume>>,
}

impl InjectedParts {
    fn take(pod: &mut Pod) -> InjectedParts {
        let spec = pod.spec.as_mut();
        let (init_containers, containers, volumes) = match spec {
            Some(spec) => (
                spec.init_containers.take(),
                Some(std::mem::take(&mut spec.containers)),
                spec.volumes.take(),
            ),
            None => (None, None, None),
        };
        InjectedParts {
            annotations: pod.metadata.annotations.take(),
            labels: pod.metadata.labels.take(),
            init_containers,
            containers,
            volumes,
        }
    }

    fn put_back(&mut self, pod: &mut Pod) {
        pod.metadata.annotations = self.annotations.take();
        pod.metadata.labels = self.labels.take();
        if let Some(spec) = pod.spec.as_mut() {
            spec.init_containers = self.init_containers.take();
            spec.containers = self.containers.take().unwrap_or_default();
            spec.volumes = self.volumes.take();
        }
    }
}

type Ops = Vec<PatchOperation>;

/// An optional field: added or removed as a whole, else compared with `diff`.
fn diff_option<T: Serialize>(
    before: Option<T>,
    after: Option<T>,
    path: &PointerBuf,
    ops: &mut Ops,
    diff: impl FnOnce(T, T, &PointerBuf, &mut Ops) -> Result<(), serde_json::Error>,
) -> Result<(), serde_json::Error> {
    match (before, after) {
        (None, None) => Ok(()),
        (None, Some(after)) => {
            ops.push(add(path, &serde_json::to_value(after)?));
            Ok(())
        }
        (Some(_), None) => {
            ops.push(remove(path));
            Ok(())
        }
        (Some(before), Some(after)) => diff(before, after, path, ops),
    }
}

/// Labels or annotations, key by key.
fn diff_string_map(
    before: BTreeMap<String, String>,
    after: BTreeMap<String, String>,
    path: &PointerBuf,
    ops: &mut Ops,
) -> Result<(), serde_json::Error> {
    let at = |key: &str| {
        let mut pointer = path.clone();
        pointer.push_back(key);
        pointer
    };
    for (key, value) in &after {
        match before.get(key) {
            Some(old) if old == value => {}
            Some(_) => ops.push(PatchOperation::Replace(ReplaceOperation {
                path: at(key),
                value: Value::String(value.clone()),
            })),
            None => ops.push(add(&at(key), &Value::String(value.clone()))),
        }
    }
    for key in before.keys().filter(|k| !after.contains_key(*k)) {
        ops.push(remove(&at(key)));
    }
    Ok(())
}

/// Any two values, through their JSON form (only when they differ).
fn diff_encoded<T: Serialize + PartialEq>(
    before: T,
    after: T,
    path: &PointerBuf,
    ops: &mut Ops,
) -> Result<(), serde_json::Error> {
    if before != after {
        let (before, after) = (serde_json::to_value(before)?, serde_json::to_value(after)?);
        diff_values(&before, &after, &mut path.clone(), ops);
    }
    Ok(())
}

fn diff_containers(
    before: Vec<Container>,
    after: Vec<Container>,
    path: &PointerBuf,
    ops: &mut Ops,
) -> Result<(), serde_json::Error> {
    diff_named(
        before,
        after,
        |c: &Container| c.name.as_str(),
        path,
        ops,
        diff_container,
    )
}

/// One container: the environment (where `inject` appends) by name, the rest as a whole.
fn diff_container(
    mut before: Container,
    mut after: Container,
    path: &PointerBuf,
    ops: &mut Ops,
) -> Result<(), serde_json::Error> {
    if before == after {
        return Ok(());
    }
    let (env_before, env_after) = (before.env.take(), after.env.take());
    if before != after {
        before.env = env_before;
        after.env = env_after;
        return diff_encoded(before, after, path, ops);
    }
    let mut env = path.clone();
    env.push_back("env");
    diff_option(env_before, env_after, &env, ops, |b, a, path, ops| {
        diff_named(b, a, |e: &EnvVar| e.name.as_str(), path, ops, diff_encoded)
    })
}

/// A list of named items, matched by name as [`diff_arrays`] does, comparing matched items
/// with `diff_item`; falls back to the JSON comparison when names repeat or items move.
fn diff_named<T: Serialize + PartialEq>(
    before: Vec<T>,
    after: Vec<T>,
    name: impl Fn(&T) -> &str,
    path: &PointerBuf,
    ops: &mut Ops,
    diff_item: impl Fn(T, T, &PointerBuf, &mut Ops) -> Result<(), serde_json::Error>,
) -> Result<(), serde_json::Error> {
    if before == after {
        return Ok(());
    }
    // Which items stay (`keep`, by index in `before`) and which are new (`added`, by index
    // in `after`), or `None` when names repeat or kept items change order.
    let alignment = {
        let before_names: Vec<&str> = before.iter().map(&name).collect();
        let after_names: Vec<&str> = after.iter().map(&name).collect();
        let in_before: HashSet<&str> = before_names.iter().copied().collect();
        let in_after: HashSet<&str> = after_names.iter().copied().collect();
        let unique = in_before.len() == before_names.len() && in_after.len() == after_names.len();
        let kept_before = before_names.iter().filter(|n| in_after.contains(*n));
        let kept_after = after_names.iter().filter(|n| in_before.contains(*n));
        (unique && kept_before.eq(kept_after)).then(|| {
            let keep: Vec<bool> = before_names.iter().map(|n| in_after.contains(n)).collect();
            let added: Vec<bool> = after_names.iter().map(|n| !in_before.contains(n)).collect();
            (keep, added)
        })
    };
    let Some((keep, added)) = alignment else {
        return diff_encoded(before, after, path, ops);
    };
    let removed: Vec<usize> = (0..before.len()).filter(|&i| !keep[i]).collect();
    // Removals from the back, so the indices of the earlier ones stay valid.
    for &i in removed.iter().rev() {
        let mut item = path.clone();
        item.push_back(i);
        ops.push(remove(&item));
    }
    let mut kept = before
        .into_iter()
        .zip(keep)
        .filter_map(|(item, keep)| keep.then_some(item));

    let at = |j: usize| {
        let mut at = path.clone();
        at.push_back(j);
        at
    };
    for (j, (item, new)) in after.into_iter().zip(added).enumerate() {
        if new {
            ops.push(add(&at(j), &serde_json::to_value(item)?));
        } else if let Some(old) = kept.next() {
            if old != item {
                diff_item(old, item, &at(j), ops)?;
            }
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
