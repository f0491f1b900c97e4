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
//!
//! Nor may the patch make the pod inadmissible. The sidecar follows the namespace's Pod
//! Security level (no hostPath for pod logs under `baseline`/`restricted`), and the injected
//! pod is checked against that level: if the agent would add a violation the pod itself does
//! not have, the pod is admitted without the agent, with a warning naming each violation.
//!
//! The API server waits for this answer on every pod creation, so it is made in one pass:
//! - The review is read once into [`PodReview`], typed only where the webhook looks. (kube's
//!   `AdmissionReview` flattens its type fields, which makes serde read the whole review into
//!   an intermediate tree before decoding it.)
//! - `inject` runs once, on the pod itself. A first injection only adds (an agent container,
//!   volumes, environment variables, markers), so an [`Outline`] of the pod taken before —
//!   its annotations, labels, and the names of its containers and volumes — is enough to
//!   write the patch from the injected pod: what the outline lacks is added, encoded straight
//!   from the typed values. Anything else (a pod injected before, whose old agent `inject`
//!   removes first, or a change that is not an addition) falls back to the general diff
//!   [`pod_patch`] against the pod read again from the request.
//! - The response is written from a small struct, with the patch in base64.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, Volume};
use k8s_openapi::ByteString;
use kube::core::admission::{AdmissionResponse, Operation};
use kube::core::{Selector, SelectorExt};
use kube::ResourceExt;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use vigil_crds::MonitoredApp;

use super::{Webhook, APP_ANNOTATION, DEFAULT_APP, INJECT_ANNOTATION};
use crate::render::inject::{inject, pod_security, AgentSidecar, PodSecurityLevel, INJECTED};

/// A request body that is not an `AdmissionReview` with a request: answered with HTTP 400.
#[derive(Debug, thiserror::Error)]
#[error("malformed AdmissionReview: {0}")]
pub struct MalformedReview(pub String);

/// The parts of an `admission.k8s.io/v1` `AdmissionReview` the pod webhook reads; `T` is the
/// pod (or [`IgnoredAny`] when the pod cannot be read).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodReview<'a, T> {
    /// Echoed in the response.
    #[serde(borrow)]
    pub api_version: Cow<'a, str>,
    /// Echoed in the response.
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
    /// Absent in a malformed review.
    #[serde(borrow)]
    pub request: Option<PodRequest<'a, T>>,
}

/// The request of a [`PodReview`]. `kind`, `resource` and `userInfo` are required, as in the
/// API, but not read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRequest<'a, T> {
    /// Identifies the request; the response answers it.
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    /// Create, update, delete or connect.
    pub operation: Operation,
    /// Namespace of the pod.
    #[serde(default, borrow)]
    pub namespace: Option<Cow<'a, str>>,
    /// The pod as it would be stored.
    pub object: Option<T>,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    #[serde(rename = "resource")]
    _resource: IgnoredAny,
    #[serde(rename = "userInfo")]
    _user_info: IgnoredAny,
}

/// Reads a review of a pod.
pub fn read_review(body: &[u8]) -> Result<PodReview<'_, Pod>, serde_json::Error> {
    serde_json::from_slice(body)
}

/// Answers one `AdmissionReview` of a pod: the response review as JSON, or
/// [`MalformedReview`] when the body is not a review at all.
pub fn review(webhook: &Webhook, body: &[u8]) -> Result<Vec<u8>, MalformedReview> {
    let review = match read_review(body) {
        Ok(review) => review,
        Err(pod_error) => return undecodable_pod(body, &pod_error),
    };
    let request = review.request.ok_or_else(no_request)?;
    let uid = request.uid.clone();
    let answer = admit_pod(webhook, request, || {
        read_review(body)
            .ok()
            .and_then(|r| r.request)
            .and_then(|r| r.object)
    });
    response_json(&review.api_version, &review.kind, &uid, answer)
}

fn no_request() -> MalformedReview {
    MalformedReview("it has no request".into())
}

/// A review whose pod does not decode (a field newer than this operator knows, with an
/// unexpected type): admit the pod unchanged rather than block it.
fn undecodable_pod(body: &[u8], pod_error: &serde_json::Error) -> Result<Vec<u8>, MalformedReview> {
    let review: PodReview<'_, IgnoredAny> =
        serde_json::from_slice(body).map_err(|e| MalformedReview(e.to_string()))?;
    let request = review.request.ok_or_else(no_request)?;
    let answer = Answer {
        patch: None,
        warnings: vec![format!(
            "vigil: agent not injected: cannot read the pod: {pod_error}"
        )],
    };
    response_json(&review.api_version, &review.kind, &request.uid, answer)
}

/// What the webhook says about one pod: always allowed, perhaps with a patch and warnings.
#[derive(Debug, Default)]
pub struct Answer {
    /// The JSON Patch, encoded.
    pub patch: Option<Vec<u8>>,
    /// Explanations for the user, shown by `kubectl`.
    pub warnings: Vec<String>,
}

/// The answer for one pod request. `original` reads the request's pod again, for the rare
/// patches that need the general diff.
pub fn admit_pod(
    webhook: &Webhook,
    request: PodRequest<'_, Pod>,
    original: impl Fn() -> Option<Pod>,
) -> Answer {
    let mut answer = Answer::default();
    if request.operation != Operation::Create {
        return answer;
    }
    let Some(pod) = request.object else {
        return answer;
    };
    let namespace: Cow<'_, str> = match (request.namespace, &pod.metadata.namespace) {
        (Some(namespace), _) => namespace,
        (None, Some(namespace)) => Cow::Owned(namespace.clone()),
        (None, None) => Cow::Borrowed("default"),
    };
    let apps = webhook
        .apps
        .state_filter(|app| app.metadata.namespace.as_deref() == Some(&*namespace));
    let sidecar = match choose_app(&pod, &namespace, &apps, &mut answer.warnings) {
        Choice::Skip => None,
        Choice::App(app) => Some(webhook.sidecar_for(app)),
        Choice::Default => default_app(&namespace).map(|app| webhook.sidecar_for(&app)),
    };
    let Some(sidecar) = sidecar else {
        return answer;
    };
    let name = tracing::enabled!(tracing::Level::DEBUG).then(|| pod_name(&pod));
    let level = webhook.pod_security(&namespace);
    match injection_patch(pod, &sidecar, level, original) {
        Ok(None) => {}
        Ok(Some(patch)) => {
            if let Some(name) = name {
                tracing::debug!(namespace = %namespace, pod = %name, "agent injected");
            }
            answer.patch = Some(patch);
        }
        Err(e) => answer
            .warnings
            .push(format!("vigil: agent not injected: {e}")),
    }
    answer
}

/// Why no patch could be made (the pod is admitted unchanged).
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The injected pod could not be encoded.
    #[error("cannot encode the patch")]
    Encode(#[from] serde_json::Error),
    /// The general diff needs the pod as the request has it, and it could not be read again.
    #[error("cannot read the pod again for the patch")]
    Original,
    /// The injected pod would break a rule of the namespace's Pod Security level that the pod
    /// itself keeps, so the API server would reject it.
    #[error("the namespace enforces Pod Security level {level}, and the agent would add: {}", violations.join(", "))]
    PodSecurity {
        level: PodSecurityLevel,
        violations: Vec<String>,
    },
}

/// The JSON Patch (encoded) that turns `pod` into `inject(pod, sidecar)`, or `None` when
/// they are equal. `original` gives the same pod again; it is called only when the patch is
/// not a plain addition (see the module documentation).
pub fn injection_patch(
    pod: Pod,
    sidecar: &AgentSidecar,
    level: PodSecurityLevel,
    original: impl Fn() -> Option<Pod>,
) -> Result<Option<Vec<u8>>, PatchError> {
    let outline = Outline::of(&pod);
    let before = pod_security_violations(&pod, level);
    let injected = inject(pod, sidecar);
    if level != PodSecurityLevel::Privileged {
        let added: Vec<String> = pod_security_violations(&injected, level)
            .difference(&before)
            .cloned()
            .collect();
        if !added.is_empty() {
            return Err(PatchError::PodSecurity {
                level,
                violations: added,
            });
        }
    }
    if let Some(outline) = outline {
        let mut patch = PatchWriter::default();
        if outline.additions(&injected, &mut patch)? {
            #[cfg(test)]
            tests_only::same_result(&patch, &original, &injected);
            return Ok(patch.finish());
        }
    }
    let original = original().ok_or(PatchError::Original)?;
    let patch = pod_patch(original, injected)?;
    Ok((!patch.0.is_empty())
        .then(|| serde_json::to_vec(&patch))
        .transpose()?)
}

fn pod_security_violations(pod: &Pod, level: PodSecurityLevel) -> BTreeSet<String> {
    pod.spec
        .as_ref()
        .map(|spec| pod_security::violations(spec, level))
        .unwrap_or_default()
}

/// The response review answering request `uid` as the API server reads it (`patch` in
/// base64, as Go encodes bytes); `api_version` and `kind` are the request review's.
pub fn response_json(
    api_version: &str,
    kind: &str,
    uid: &str,
    answer: Answer,
) -> Result<Vec<u8>, MalformedReview> {
    /// An `AdmissionReview` carrying a response.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ReviewJson<'a> {
        api_version: &'a str,
        kind: &'a str,
        response: ResponseJson<'a>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ResponseJson<'a> {
        uid: &'a str,
        allowed: bool,
        /// Always the empty status (success), as kube writes it.
        status: EmptyStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch_type: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<ByteString>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        warnings: &'a [String],
    }
    #[derive(Serialize)]
    struct EmptyStatus {}

    let patch_type = answer.patch.is_some().then_some("JSONPatch");
    let json = ReviewJson {
        api_version,
        kind,
        response: ResponseJson {
            uid,
            allowed: true,
            status: EmptyStatus {},
            patch_type,
            patch: answer.patch.map(ByteString),
            warnings: &answer.warnings,
        },
    };
    serde_json::to_vec(&json).map_err(|e| MalformedReview(e.to_string()))
}

/// The response review of a kube [`AdmissionResponse`] (used by `/validate`). `patch` is a
/// byte string in the Kubernetes API, which JSON carries as base64 (the Go encoding); kube's
/// type would write it as a list of numbers.
pub fn review_json(mut response: AdmissionResponse) -> Result<Vec<u8>, MalformedReview> {
    let patch = response.patch.take();
    let mut review =
        serde_json::to_value(response.into_review()).map_err(|e| MalformedReview(e.to_string()))?;
    if let (Some(patch), Some(Value::Object(slot))) = (patch, review.get_mut("response")) {
        let encoded =
            serde_json::to_value(ByteString(patch)).map_err(|e| MalformedReview(e.to_string()))?;
        slot.insert("patch".to_owned(), encoded);
    }
    serde_json::to_vec(&review).map_err(|e| MalformedReview(e.to_string()))
}

/// The pod's name, or its `generateName` prefix followed by `*` while it has no name yet.
fn pod_name(pod: &Pod) -> String {
    match (&pod.metadata.name, &pod.metadata.generate_name) {
        (Some(name), _) => name.clone(),
        (None, Some(prefix)) => format!("{prefix}*"),
        (None, None) => String::new(),
    }
}

/// A pod before a first injection: what [`Outline::additions`] compares the injected pod
/// with. Lists of named items are kept as names only; containers also keep how many
/// environment variables they had.
#[derive(Debug)]
pub struct Outline {
    annotations: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
    spec: Option<SpecOutline>,
}

#[derive(Debug)]
struct SpecOutline {
    init_containers: Option<Vec<ContainerOutline>>,
    containers: Vec<ContainerOutline>,
    volumes: Option<Vec<String>>,
}

#[derive(Debug)]
struct ContainerOutline {
    name: String,
    env: Option<usize>,
}

impl ContainerOutline {
    fn of(container: &Container) -> Self {
        ContainerOutline {
            name: container.name.clone(),
            env: container.env.as_ref().map(Vec::len),
        }
    }
}

impl Outline {
    /// The outline of a pod `inject` has not seen (no `vigil.dev/injected` annotation), or
    /// `None`: re-injection first removes the old agent, which is not an addition.
    pub fn of(pod: &Pod) -> Option<Outline> {
        let annotations = pod.metadata.annotations.as_ref();
        if annotations.is_some_and(|a| a.contains_key(INJECTED)) {
            return None;
        }
        Some(Outline {
            annotations: annotations.cloned(),
            labels: pod.metadata.labels.clone(),
            spec: pod.spec.as_ref().map(|spec| SpecOutline {
                init_containers: spec
                    .init_containers
                    .as_ref()
                    .map(|list| list.iter().map(ContainerOutline::of).collect()),
                containers: spec.containers.iter().map(ContainerOutline::of).collect(),
                volumes: spec
                    .volumes
                    .as_ref()
                    .map(|list| list.iter().map(|v| v.name.clone()).collect()),
            }),
        })
    }

    /// Writes to `patch` what turns this outline's pod into `injected`, if `injected` is
    /// that pod with additions only: new keys or values in its annotations and labels, new
    /// containers, volumes and, at the end of existing containers' lists, environment
    /// variables. `Ok(false)` (with `patch` unusable) when it is not.
    pub fn additions(&self, injected: &Pod, patch: &mut PatchWriter) -> serde_json::Result<bool> {
        let meta = &injected.metadata;
        if !map_changes(
            self.annotations.as_ref(),
            meta.annotations.as_ref(),
            "/metadata/annotations",
            patch,
        )? || !map_changes(
            self.labels.as_ref(),
            meta.labels.as_ref(),
            "/metadata/labels",
            patch,
        )? {
            return Ok(false);
        }
        let (before, after) = match (&self.spec, &injected.spec) {
            (None, None) => return Ok(true),
            (Some(before), Some(after)) => (before, after),
            _ => return Ok(false),
        };
        let init = "/spec/initContainers";
        let init_added = match (&before.init_containers, &after.init_containers) {
            (None, None) => true,
            (None, Some(after)) => {
                patch.op("add", init, Some(after))?;
                true
            }
            (Some(_), None) => false,
            (Some(before), Some(after)) => container_additions(before, after, init, patch)?,
        };
        let (before_containers, after_containers) = (&before.containers, &after.containers);
        if !init_added {
            return Ok(false);
        }
        if before_containers.is_empty() {
            // A pod without containers decodes as an empty list, which the request's JSON may
            // not have at all: the list is added whole (an `add` that replaces an empty list
            // or creates a missing one), never item by item.
            if !after_containers.is_empty() {
                patch.op("add", "/spec/containers", Some(after_containers))?;
            }
        } else if !container_additions(
            before_containers,
            after_containers,
            "/spec/containers",
            patch,
        )? {
            return Ok(false);
        }
        match (&before.volumes, &after.volumes) {
            (None, None) => Ok(true),
            (None, Some(after)) => {
                patch.op("add", "/spec/volumes", Some(after))?;
                Ok(true)
            }
            (Some(_), None) => Ok(false),
            (Some(before), Some(after)) => {
                let names: Vec<&str> = before.iter().map(String::as_str).collect();
                let Some(inserted) = insertions(&names, after.iter().map(|v| v.name.as_str()))
                else {
                    return Ok(false);
                };
                for j in inserted {
                    patch.op("add", &format!("/spec/volumes/{j}"), Some(&after[j]))?;
                }
                Ok(true)
            }
        }
    }
}

/// Labels or annotations, key by key; `false` when a map that existed is gone.
fn map_changes(
    before: Option<&BTreeMap<String, String>>,
    after: Option<&BTreeMap<String, String>>,
    path: &str,
    patch: &mut PatchWriter,
) -> serde_json::Result<bool> {
    match (before, after) {
        (None, None) => Ok(true),
        (None, Some(after)) => {
            patch.op("add", path, Some(after))?;
            Ok(true)
        }
        (Some(_), None) => Ok(false),
        (Some(before), Some(after)) => {
            // Both maps in key order, side by side: one comparison per key rather than a
            // lookup per key (pods carry hundreds of annotations).
            let at = |key: &str| pointer(path, key);
            let (mut before, mut after) = (before.iter().peekable(), after.iter().peekable());
            loop {
                match (before.peek(), after.peek()) {
                    (None, None) => return Ok(true),
                    (Some((old_key, old)), Some((key, value))) if old_key == key => {
                        if old != value {
                            patch.op("replace", &at(key), Some(*value))?;
                        }
                        before.next();
                        after.next();
                    }
                    (Some((old_key, _)), Some((key, _))) if old_key < key => {
                        patch.op::<()>("remove", &at(old_key), None)?;
                        before.next();
                    }
                    (Some((old_key, _)), None) => {
                        patch.op::<()>("remove", &at(old_key), None)?;
                        before.next();
                    }
                    (_, Some((key, value))) => {
                        patch.op("add", &at(key), Some(*value))?;
                        after.next();
                    }
                }
            }
        }
    }
}

/// A container list that gained containers, or environment variables at the end of a
/// container's list; `false` when it changed otherwise.
fn container_additions(
    before: &[ContainerOutline],
    after: &[Container],
    path: &str,
    patch: &mut PatchWriter,
) -> serde_json::Result<bool> {
    let names: Vec<&str> = before.iter().map(|c| c.name.as_str()).collect();
    let Some(inserted) = insertions(&names, after.iter().map(|c| c.name.as_str())) else {
        return Ok(false);
    };
    let mut kept = before.iter();
    let mut inserted = inserted.into_iter().peekable();
    for (j, container) in after.iter().enumerate() {
        if inserted.next_if_eq(&j).is_some() {
            patch.op("add", &format!("{path}/{j}"), Some(container))?;
            continue;
        }
        let Some(old) = kept.next() else {
            return Ok(false);
        };
        match (old.env, &container.env) {
            (None, None) => {}
            (None, Some(env)) => patch.op("add", &format!("{path}/{j}/env"), Some(env))?,
            (Some(_), None) => return Ok(false),
            (Some(len), Some(env)) if env.len() >= len => {
                for (k, var) in env.iter().enumerate().skip(len) {
                    patch.op("add", &format!("{path}/{j}/env/{k}"), Some(var))?;
                }
            }
            (Some(_), Some(_)) => return Ok(false),
        }
    }
    Ok(true)
}

/// Where `after` has items that `before` lacks, if `after` is `before` with items inserted:
/// the indices (in `after`) of the inserted items. `None` when an item of `before` is
/// missing or moved, or when names repeat (the names then do not say which item is which).
fn insertions<'a>(before: &[&str], after: impl Iterator<Item = &'a str>) -> Option<Vec<usize>> {
    let known: HashSet<&str> = before.iter().copied().collect();
    if known.len() != before.len() {
        return None;
    }
    let mut next = 0;
    let mut inserted = Vec::new();
    let mut new_names = HashSet::new();
    for (j, name) in after.enumerate() {
        if before.get(next) == Some(&name) {
            next += 1;
        } else if known.contains(name) || !new_names.insert(name) {
            return None;
        } else {
            inserted.push(j);
        }
    }
    (next == before.len()).then_some(inserted)
}

/// `path` followed by `token` as a JSON Pointer token (`~` and `/` escaped).
fn pointer(path: &str, token: &str) -> String {
    let mut out = String::with_capacity(path.len() + token.len() + 4);
    out.push_str(path);
    out.push('/');
    for c in token.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON Patch written operation by operation, values encoded straight from their types.
#[derive(Debug, Default)]
pub struct PatchWriter {
    json: Vec<u8>,
}

impl PatchWriter {
    /// Appends `{"op": op, "path": path, "value": value}` (no `value` when `None`).
    pub fn op<T: Serialize + ?Sized>(
        &mut self,
        op: &str,
        path: &str,
        value: Option<&T>,
    ) -> serde_json::Result<()> {
        self.json
            .extend_from_slice(if self.json.is_empty() { b"[" } else { b"," });
        self.json.extend_from_slice(b"{\"op\":");
        serde_json::to_writer(&mut self.json, op)?;
        self.json.extend_from_slice(b",\"path\":");
        serde_json::to_writer(&mut self.json, path)?;
        if let Some(value) = value {
            self.json.extend_from_slice(b",\"value\":");
            serde_json::to_writer(&mut self.json, value)?;
        }
        self.json.push(b'}');
        Ok(())
    }

    /// The encoded patch, or `None` when it has no operation.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        if self.json.is_empty() {
            return None;
        }
        self.json.push(b']');
        Some(self.json)
    }
}

/// Under test, every patch written from an [`Outline`] is checked: applied to the original
/// pod, it must give exactly the injected pod.
#[cfg(test)]
mod tests_only {
    use super::*;

    #[allow(clippy::expect_used, reason = "test-only check")]
    pub(super) fn same_result(
        patch: &PatchWriter,
        original: &impl Fn() -> Option<Pod>,
        injected: &Pod,
    ) {
        let original = original().expect("the original pod reads again");
        let mut pod = serde_json::to_value(&original).expect("the pod encodes");
        let mut json = patch.json.clone();
        json.push(b']');
        let ops: Patch = match patch.json.is_empty() {
            true => Patch(Vec::new()),
            false => serde_json::from_slice(&json).expect("the patch is a JSON Patch"),
        };
        json_patch::patch(&mut pod, &ops).expect("the patch applies to the original pod");
        let expected = serde_json::to_value(injected).expect("the injected pod encodes");
        assert_eq!(pod, expected, "patch from the outline: {ops:?}");
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
        let (mut before, mut after) = (
            serde_json::to_value(original)?,
            serde_json::to_value(injected)?,
        );
        // An empty container list may be missing from the request's pod (see below).
        for pod in [&mut before, &mut after] {
            if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
                if spec
                    .get("containers")
                    .is_some_and(|c| c == &Value::Array(Vec::new()))
                {
                    spec.remove("containers");
                }
            }
        }
        diff_values(&before, &after, &mut PointerBuf::new(), &mut ops);
        return Ok(Patch(ops));
    }
    // A pod without containers decodes as an empty list, which the request's JSON may not have
    // at all: a list that was empty is added whole (creating or replacing it), never item by
    // item, and left out when it stays empty.
    if before.containers.as_ref().is_some_and(Vec::is_empty) {
        before.containers = None;
        after.containers = after.containers.filter(|c| !c.is_empty());
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
