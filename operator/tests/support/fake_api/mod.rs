//! **Test support, not product code.** An in-memory Kubernetes API server for the operator's
//! controller tests, live tests and benchmarks: a
//! `tower::Service` that a real [`kube::Client`] talks to, and the same service over real HTTP
//! ([`FakeApiServer::serve_http`]) for the `vigil-operator run` binary and `kubectl`. Controllers,
//! watchers, leader election and the webhook's certificate handling run their real request code
//! against it.
//!
//! It keeps objects as JSON keyed by resource, namespace and name and answers:
//! - GET, LIST (with `labelSelector` and `fieldSelector` on `metadata.name`/`metadata.namespace`,
//!   also as metadata-only `PartialObjectMetadataList`), for one namespace, all namespaces, or
//!   cluster-scoped kinds;
//! - WATCH (`?watch=true&resourceVersion=…`, `timeoutSeconds`, selectors,
//!   `sendInitialEvents`): newline-delimited `ADDED`/`MODIFIED`/`DELETED` events streamed as
//!   they happen; an object that starts or stops matching the label selector arrives as
//!   `ADDED`/`DELETED`, as from a real API server. The last [`HISTORY`] changes are kept; a
//!   watch from an older resource version gets `410 Expired` (etcd compaction), so the client
//!   lists again;
//! - POST (create, with `generateName`), PUT (replace, with `resourceVersion` preconditions),
//!   PATCH (server-side apply; JSON merge patch; strategic merge patch, which merges lists of
//!   objects by `name` such as containers, volumes and webhooks and replaces other lists; JSON
//!   patch), on the main resource or the `status` subresource, DELETE;
//! - discovery: `/version`, `/api`, `/apis`, `/apis/<group>`, and the resource list of every
//!   group version (names, kinds, short names, scope, verbs).
//!
//! Semantics modelled because controllers depend on them:
//! - server-side apply creates or merges, and removes the fields the same field manager applied
//!   before but no longer applies (so a dropped ConfigMap key disappears, as in a real cluster);
//! - writes to the main resource keep `status`; status writes keep everything else;
//! - `resourceVersion` increases on every write; `generation` increases when `spec` changes;
//! - DELETE of an object with finalizers only sets `deletionTimestamp`; the object goes when
//!   its last finalizer is removed;
//! - garbage collection: when an object goes, every object whose owner references all point
//!   at objects that no longer exist goes too (cascading);
//! - a created `CustomResourceDefinition` makes its served versions appear in discovery and
//!   routing (short names and scope included) and is reported `Established`; deleting it
//!   removes the resource and its objects;
//! - a created `Namespace` gets the `kubernetes.io/metadata.name` label;
//! - admission: CREATE and UPDATE of a main resource call the stored
//!   `MutatingWebhookConfiguration`s (in name order) and then the
//!   `ValidatingWebhookConfiguration`s whose rules match the group, version, resource and
//!   operation and whose `namespaceSelector` and `objectSelector` select the namespace and the
//!   object. Each call is a real `AdmissionReview` v1 POST over HTTPS that verifies the server
//!   certificate against the webhook's `caBundle` with the name `<service>.<namespace>.svc`;
//!   services are mapped to loopback addresses with [`FakeApiServer::route_service`]. The
//!   returned JSON patch is applied; a denial becomes an error with the webhook's code and
//!   message; a failed call is ignored or rejected by `failurePolicy`; `timeoutSeconds` applies;
//! - RBAC: a request with the bearer token of [`FakeApiServer::service_account_token`] is
//!   authorized against the stored Roles, ClusterRoles and their bindings (verbs, API groups,
//!   resources and subresources, `resourceNames`, namespace); a refusal is a `403` with the
//!   API server's message, also kept for [`FakeApiServer::forbidden`]. Any other request acts
//!   as an administrator.
//!
//! Tests can make applies fail with `409 Conflict` ([`FakeApiServer::fail_applies`]) and hide an
//! API group from discovery and routing ([`FakeApiServer::without_group`]).
//!
//! Not modelled: real authentication (tokens are not verified), aggregation of ClusterRoles,
//! non-resource-URL authorization (discovery is open to all), OpenAPI schemas (`kubectl` needs
//! `--validate=false`), protobuf (refused with `415`, so typed `kubectl create <kind>`
//! commands do not work; `kubectl apply`/`create -f`/`get`/`delete` do), CRD
//! structural-schema validation and defaulting, CEL rules, field ownership conflicts between
//! managers (except on demand), merge keys of server-side apply (lists replace), admission on
//! DELETE and on subresources, webhook reinvocation, pagination (`limit` returns everything),
//! table output (use `-o json`), aggregated discovery (`kubectl` falls back to the per-group
//! lists), namespace lifecycle (objects may be created in a namespace that does not exist), and
//! everything outside the API server: no kubelet or built-in controllers (a Deployment never
//! gets Pods, a Pod never runs or gets a status), no Service endpoints other than the routes
//! given, and garbage collection runs at once inside the deleting request, whatever
//! `propagationPolicy` says.
//!
//! **What a real API server enforces that this one does not** — a test passing here proves
//! nothing about these, so each is covered by a test of the generated artefact instead:
//! - *CEL cost budget* (per rule 10,000,000, per CRD 100,000,000, from the maxItems, maxLength
//!   and maxProperties of every field a rule touches): `crds` walks the generated CRDs and
//!   estimates every rule's cost the way the server does.
//! - *PodSecurity admission* (`pod-security.kubernetes.io/enforce: baseline|restricted` rejects
//!   hostPath volumes, privilege, missing `runAsNonRoot`/seccomp/capability drops): the
//!   injection tests check every injected pod against the Pod Security Standards of its
//!   namespace's level, and the chart tests check the operator's own pod against `restricted`.
//! - *Version-specific pod fields* (before native sidecars are served, an init container's
//!   `restartPolicy` is dropped and its probes are rejected): the injection tests check the pod
//!   injected for each server version against the fields that version accepts.
//! - *`OwnerReferencesPermissionEnforcement`* (setting `blockOwnerDeletion` needs `update` on
//!   the owner's `finalizers`): the chart tests check the ClusterRole grants it for every kind
//!   the operator owns children of.
//! - *Aggregated ClusterRoles* (`aggregate-to-edit`/`-view`): the chart tests check the labels
//!   and rules.
//! - *Endpoint propagation during a rollout*: the webhook server's drain test checks a
//!   terminating server keeps answering while `/readyz` fails.

#![allow(
    dead_code,
    unused_imports,
    reason = "test support included by several test binaries and a benchmark, each using part of it"
)]

mod admission;
mod authorization;
mod http_server;
mod watch;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::core::ApiResource;
use kube::{Client, Resource};
use serde::Serialize;
use serde_json::{json, Map, Value};

pub use http_server::FakeHttpServer;

use vigil_operator::controllers::{self as controllers, discovery};

/// The Kubernetes minor version `/version` reports unless told otherwise.
pub const DEFAULT_MINOR_VERSION: u32 = 34;

/// Number of past changes kept for watches that start from an older resource version.
pub const HISTORY: usize = 4096;

/// The body type of the fake's responses: whole JSON documents, or a watch's event stream.
pub type FakeBody = BoxBody<Bytes, Infallible>;

/// One API the fake serves.
#[derive(Clone, Debug)]
struct Served {
    resource: ApiResource,
    namespaced: bool,
    short_names: Vec<String>,
    /// Name of the CustomResourceDefinition that serves it, if any.
    crd: Option<String>,
}

/// Label or field values of an object, for selectors.
type Labels = BTreeMap<String, String>;

/// One stored change, kept for watches.
#[derive(Clone, Debug)]
struct Change {
    resource_version: u64,
    key: (String, String),
    namespace: String,
    kind: ChangeKind,
    /// Labels before the change (for modifications).
    old_labels: Option<Labels>,
    /// The object after the change (before it, for deletions).
    object: Arc<Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug, Default)]
struct State {
    served: Vec<Served>,
    hidden_groups: BTreeSet<String>,
    /// (api version, plural) → namespace ("" for cluster-scoped) → name → object.
    objects: BTreeMap<(String, String), BTreeMap<String, BTreeMap<String, Value>>>,
    /// Last object applied per (api version, plural, namespace, name, field manager).
    applied: BTreeMap<ApplyKey, Value>,
    resource_version: u64,
    uids: u64,
    /// plural → number of applies still to fail with 409.
    failing_applies: BTreeMap<String, u32>,
    /// (method, path) of every request, in order.
    requests: Vec<(String, String)>,
    /// The last [`HISTORY`] changes, oldest first.
    history: VecDeque<Change>,
    /// Resource version of the newest change dropped from `history`.
    history_floor: u64,
    /// Open watches.
    watchers: Vec<watch::Watcher>,
    /// (namespace, service, port) → address of its only endpoint.
    routes: BTreeMap<(String, String, i32), SocketAddr>,
    /// Why each request refused by RBAC was refused, in order.
    forbidden: Vec<String>,
    /// The minor version `/version` reports (1.`minor`); 0 until set means the default.
    minor_version: u32,
}

type ApplyKey = (String, String, String, String, String);

/// The fake API server; cheap to clone (clones share state).
#[derive(Clone, Debug)]
pub struct FakeApiServer {
    state: Arc<Mutex<State>>,
}

impl Default for FakeApiServer {
    fn default() -> Self {
        FakeApiServer::new()
    }
}

fn erase<K: Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

/// The built-in kinds every server has: (resource, namespaced, short names).
fn builtin_kinds() -> Vec<(ApiResource, bool, &'static [&'static str])> {
    use k8s_openapi::api::admissionregistration::v1::{
        MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
    };
    use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment, ReplicaSet, StatefulSet};
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{
        ConfigMap, Event as CoreEvent, Namespace, Pod, Secret, Service, ServiceAccount,
    };
    use k8s_openapi::api::events::v1::Event;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    vec![
        (erase::<ConfigMap>(), true, &["cm"]),
        (erase::<Secret>(), true, &[]),
        (erase::<Pod>(), true, &["po"]),
        (erase::<Event>(), true, &["ev"]),
        (erase::<CoreEvent>(), true, &["ev"]),
        (erase::<Lease>(), true, &[]),
        (erase::<Namespace>(), false, &["ns"]),
        (erase::<Service>(), true, &["svc"]),
        (erase::<ServiceAccount>(), true, &["sa"]),
        (erase::<Deployment>(), true, &["deploy"]),
        (erase::<ReplicaSet>(), true, &["rs"]),
        (erase::<StatefulSet>(), true, &["sts"]),
        (erase::<ControllerRevision>(), true, &[]),
        (erase::<PodDisruptionBudget>(), true, &["pdb"]),
        (erase::<Role>(), true, &[]),
        (erase::<RoleBinding>(), true, &[]),
        (erase::<ClusterRole>(), false, &[]),
        (erase::<ClusterRoleBinding>(), false, &[]),
        (erase::<MutatingWebhookConfiguration>(), false, &[]),
        (erase::<ValidatingWebhookConfiguration>(), false, &[]),
        (erase::<CustomResourceDefinition>(), false, &["crd", "crds"]),
    ]
}

impl FakeApiServer {
    /// A server for the built-in kinds (core, apps, coordination, events, policy, RBAC,
    /// admission registration, CustomResourceDefinitions), the Vigil kinds and the optional
    /// prometheus-operator and grafana-operator kinds, as if all their CRDs were installed.
    pub fn new() -> FakeApiServer {
        let server = FakeApiServer::kubernetes_only();
        let custom = [
            (erase::<vigil_crds::MonitoredApp>(), "mapp"),
            (erase::<vigil_crds::AlertPolicy>(), "ap"),
            (erase::<vigil_crds::Slo>(), "slo"),
            (erase::<vigil_crds::DashboardView>(), "dv"),
            (discovery::pod_monitor(), ""),
            (discovery::prometheus_rule(), ""),
            (discovery::alertmanager_config(), ""),
            (discovery::grafana_dashboard(), ""),
        ];
        server
            .lock()
            .served
            .extend(custom.into_iter().map(|(resource, short)| {
                Served {
                    resource,
                    namespaced: true,
                    short_names: [short]
                        .iter()
                        .filter(|s| !s.is_empty())
                        .map(|s| (*s).to_owned())
                        .collect(),
                    crd: None,
                }
            }));
        server
    }

    /// A server with only the built-in kinds, like a fresh cluster: custom resources are served
    /// once their `CustomResourceDefinition` is created.
    pub fn kubernetes_only() -> FakeApiServer {
        let served = builtin_kinds()
            .into_iter()
            .map(|(resource, namespaced, short)| Served {
                resource,
                namespaced,
                short_names: short.iter().map(|s| (*s).to_owned()).collect(),
                crd: None,
            })
            .collect();
        FakeApiServer {
            state: Arc::new(Mutex::new(State {
                served,
                minor_version: DEFAULT_MINOR_VERSION,
                ..State::default()
            })),
        }
    }

    /// The same server reporting Kubernetes 1.`minor` on `/version` (only the version: fields
    /// of newer releases are still accepted).
    pub fn reporting_version(self, minor: u32) -> FakeApiServer {
        self.lock().minor_version = minor;
        self
    }

    /// The same server without `group` (as if its CRDs were not installed): discovery answers
    /// 404 for it and so does every request to it.
    pub fn without_group(self, group: &str) -> FakeApiServer {
        self.lock().hidden_groups.insert(group.to_owned());
        self
    }

    /// Installs or uninstalls `group` at run time.
    pub fn set_group_served(&self, group: &str, served: bool) {
        let mut state = self.lock();
        if served {
            state.hidden_groups.remove(group);
        } else {
            state.hidden_groups.insert(group.to_owned());
        }
    }

    /// Sends admission calls for the Service `namespace/name` on `port` to `address` (its only
    /// endpoint), as kube-proxy would.
    pub fn route_service(&self, namespace: &str, name: &str, port: i32, address: SocketAddr) {
        self.lock()
            .routes
            .insert((namespace.to_owned(), name.to_owned(), port), address);
    }

    /// The bearer token of the ServiceAccount `namespace/name`: requests that carry it are
    /// authorized by the stored RBAC objects (requests without it act as an administrator).
    pub fn service_account_token(namespace: &str, name: &str) -> String {
        authorization::token(namespace, name)
    }

    /// The denial message of every request that RBAC refused so far.
    pub fn forbidden(&self) -> Vec<String> {
        self.lock().forbidden.clone()
    }

    /// A client talking to this server, with `default` as its default namespace.
    pub fn client(&self) -> Client {
        Client::new(
            FakeService {
                server: self.clone(),
            },
            "default",
        )
    }

    /// A controller context whose client talks to this server, with `settings`, fresh metrics
    /// and reloads disabled.
    pub fn context(&self, settings: controllers::Settings) -> Arc<controllers::Context> {
        self.context_with(settings, controllers::Reloader::default())
    }

    /// Like [`FakeApiServer::context`], with reloads sent by `reloader`.
    pub fn context_with(
        &self,
        settings: controllers::Settings,
        reloader: controllers::Reloader,
    ) -> Arc<controllers::Context> {
        // Registering fresh collectors in a fresh registry cannot collide.
        let metrics = controllers::ReconcileMetrics::new(&prometheus::Registry::new());
        #[allow(clippy::expect_used)] // see above
        let metrics = metrics.expect("fresh registry");
        Arc::new(controllers::Context::new(
            self.client(),
            settings,
            metrics,
            reloader,
            Some("fake".to_owned()),
        ))
    }

    /// The stored object decoded as `K`, if present and decodable.
    pub fn fetch<K: serde::de::DeserializeOwned>(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> Option<K> {
        serde_json::from_value(self.get(plural, namespace, name)?).ok()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the next `times` server-side applies to `plural` fail with `409 Conflict`.
    pub fn fail_applies(&self, plural: &str, times: u32) {
        self.lock().failing_applies.insert(plural.to_owned(), times);
    }

    /// Stores `object` as if a user had created it (uid, resourceVersion, generation set),
    /// without admission, and returns it as stored. Namespaced objects without a namespace go
    /// to `default`.
    pub fn create<K: Serialize>(&self, object: &K) -> Value {
        let value = serde_json::to_value(object).unwrap_or(Value::Null);
        let mut state = self.lock();
        let Some(served) = state.find_kind(&value) else {
            return Value::Null;
        };
        let ns = if served.namespaced {
            value["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned()
        } else {
            String::new()
        };
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        state.insert_new(&served, &ns, &name, value)
    }

    /// Replaces the stored object's `spec` (as a user's `kubectl apply` would), bumping its
    /// generation; returns it as stored.
    pub fn update_spec(&self, plural: &str, namespace: &str, name: &str, spec: Value) -> Value {
        let mut state = self.lock();
        let Some(served) = state.by_plural(plural) else {
            return Value::Null;
        };
        let Some(existing) = state.get(&served.resource, namespace, name).cloned() else {
            return Value::Null;
        };
        let mut next = existing.clone();
        next["spec"] = spec;
        state.store(&served, namespace, name, existing, next)
    }

    /// The stored object, if any (`namespace` is ignored for cluster-scoped kinds).
    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let state = self.lock();
        let served = state.by_plural(plural)?;
        let ns = if served.namespaced { namespace } else { "" };
        state.get(&served.resource, ns, name).cloned()
    }

    /// Every stored object of `plural` in `namespace` (ignored for cluster-scoped kinds),
    /// sorted by name.
    pub fn list(&self, plural: &str, namespace: &str) -> Vec<Value> {
        let state = self.lock();
        let Some(served) = state.by_plural(plural) else {
            return Vec::new();
        };
        let ns = if served.namespaced { namespace } else { "" };
        state
            .objects
            .get(&key_of(&served.resource))
            .and_then(|by_ns| by_ns.get(ns))
            .map(|by_name| by_name.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Deletes an object as a user would (finalizers and garbage collection apply).
    pub fn delete(&self, plural: &str, namespace: &str, name: &str) {
        let mut state = self.lock();
        if let Some(served) = state.by_plural(plural) {
            let ns = if served.namespaced { namespace } else { "" };
            state.delete(&served, ns, name);
        }
    }

    /// `(method, path)` of every request received so far.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.lock().requests.clone()
    }

    /// Number of watches currently open.
    pub fn open_watches(&self) -> usize {
        let mut state = self.lock();
        state.watchers.retain(|w| !w.is_closed());
        state.watchers.len()
    }

    /// Answers one request: the whole exchange, including admission calls.
    async fn respond(
        &self,
        method: Method,
        uri: http::Uri,
        headers: http::HeaderMap,
        body: Bytes,
    ) -> Response<FakeBody> {
        // A write whose object changed between admission and commit is prepared again, as
        // the API server retries patches on conflicts.
        for _ in 0..5 {
            let answer = {
                let mut state = self.lock();
                state
                    .requests
                    .push((method.to_string(), uri.path().to_owned()));
                state.handle(method.clone(), &uri, &headers, &body)
            };
            match answer {
                Answer::Json(code, value) => return json_response(code, &value),
                Answer::Watch(events) => return watch::response(events),
                Answer::Admit(pending, hooks) => {
                    let routes = self.lock().routes.clone();
                    let pending = match admission::review(*pending, hooks, &routes).await {
                        Ok(p) => p,
                        Err((code, value)) => return json_response(code, &value),
                    };
                    let retry = pending.retry_on_conflict;
                    match self.lock().commit(pending) {
                        Ok((code, value)) => return json_response(code, &value),
                        Err((code, value)) if !retry => return json_response(code, &value),
                        Err(_) => continue,
                    }
                }
            }
        }
        json_response(
            StatusCode::CONFLICT,
            &status_body(
                StatusCode::CONFLICT,
                "Conflict",
                "the object kept changing; try again",
            ),
        )
    }
}

fn json_response(code: StatusCode, value: &Value) -> Response<FakeBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(BodyExt::boxed(Full::new(Bytes::from(body))));
    *response.status_mut() = code;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// What a request comes to.
enum Answer {
    /// A finished answer.
    Json(StatusCode, Value),
    /// A watch: events as they come.
    Watch(watch::Events),
    /// A write waiting for the admission webhooks.
    Admit(Box<PendingWrite>, Vec<admission::Hook>),
}

/// CREATE or UPDATE, as admission sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    Create,
    Update,
}

/// How a write request goes on: a write to admit and store, or a finished answer (an error,
/// or a subresource write that needs no admission).
enum Step {
    Write(Box<PendingWrite>),
    Done(StatusCode, Value),
}

impl Step {
    fn done((code, value): (StatusCode, Value)) -> Step {
        Step::Done(code, value)
    }
}

/// A write to a main resource, computed but not yet stored.
#[derive(Clone, Debug)]
struct PendingWrite {
    served: Served,
    namespace: String,
    name: String,
    operation: Operation,
    /// The stored object the write started from (updates).
    old: Option<Value>,
    /// The object to store.
    object: Value,
    /// What a server-side apply applied, remembered for its field manager.
    applied: Option<(ApplyKey, Value)>,
    /// Whether a conflicting change made meanwhile means "prepare again" (patches) rather
    /// than "409" (replace with a resourceVersion, create).
    retry_on_conflict: bool,
    /// Status code of success.
    code: StatusCode,
}

fn key_of(resource: &ApiResource) -> (String, String) {
    (resource.api_version.clone(), resource.plural.clone())
}

fn labels_of(object: &Value) -> Labels {
    serde_json::from_value(object["metadata"]["labels"].clone()).unwrap_or_default()
}

fn fields_of(object: &Value) -> Labels {
    let mut fields = Labels::new();
    for key in ["name", "namespace"] {
        fields.insert(
            format!("metadata.{key}"),
            object["metadata"][key]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    fields
}

impl State {
    fn visible(&self) -> impl Iterator<Item = &Served> {
        self.served
            .iter()
            .filter(|s| !self.hidden_groups.contains(&s.resource.group))
    }

    fn by_plural(&self, plural: &str) -> Option<Served> {
        self.served
            .iter()
            .find(|s| s.resource.plural == plural)
            .cloned()
    }

    fn find_kind(&self, object: &Value) -> Option<Served> {
        let api_version = object["apiVersion"].as_str()?;
        let kind = object["kind"].as_str()?;
        self.served
            .iter()
            .find(|s| s.resource.api_version == api_version && s.resource.kind == kind)
            .cloned()
    }

    fn get(&self, resource: &ApiResource, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&key_of(resource))?.get(ns)?.get(name)
    }

    fn next_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    /// Stores `object` (whose resourceVersion is already the newest) and tells the watches.
    fn put(&mut self, resource: &ApiResource, ns: &str, name: &str, object: Value) {
        let previous = self
            .objects
            .entry(key_of(resource))
            .or_default()
            .entry(ns.to_owned())
            .or_default()
            .insert(name.to_owned(), object.clone());
        let kind = if previous.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        self.record(resource, ns, kind, previous.as_ref(), object);
    }

    /// Removes an object from the store and tells the watches.
    fn take(&mut self, resource: &ApiResource, ns: &str, name: &str) -> Option<Value> {
        let mut removed = self
            .objects
            .get_mut(&key_of(resource))?
            .get_mut(ns)?
            .remove(name)?;
        let version = self.next_version();
        if let Some(meta) = metadata_mut(&mut removed) {
            meta.insert("resourceVersion".into(), json!(version));
        }
        self.record(resource, ns, ChangeKind::Deleted, None, removed.clone());
        Some(removed)
    }

    fn record(
        &mut self,
        resource: &ApiResource,
        ns: &str,
        kind: ChangeKind,
        previous: Option<&Value>,
        object: Value,
    ) {
        let change = Change {
            resource_version: self.resource_version,
            key: key_of(resource),
            namespace: ns.to_owned(),
            kind,
            old_labels: previous.map(labels_of),
            object: Arc::new(object),
        };
        self.watchers.retain(|w| w.send(&change));
        self.history.push_back(change);
        while self.history.len() > HISTORY {
            if let Some(dropped) = self.history.pop_front() {
                self.history_floor = dropped.resource_version;
            }
        }
    }

    fn insert_new(&mut self, served: &Served, ns: &str, name: &str, mut object: Value) -> Value {
        let resource = &served.resource;
        self.uids += 1;
        let uid = format!("00000000-0000-4000-8000-{:012}", self.uids);
        let version = self.next_version();
        object["apiVersion"] = json!(resource.api_version);
        object["kind"] = json!(resource.kind);
        if let Some(meta) = metadata_mut(&mut object) {
            meta.insert("name".into(), json!(name));
            if served.namespaced {
                meta.insert("namespace".into(), json!(ns));
            } else {
                meta.remove("namespace");
            }
            meta.insert("uid".into(), json!(uid));
            meta.insert("resourceVersion".into(), json!(version));
            meta.insert("generation".into(), json!(1));
            meta.insert("creationTimestamp".into(), json!(now()));
            meta.remove("deletionTimestamp");
        }
        self.on_create(served, name, &mut object);
        self.put(resource, ns, name, object.clone());
        object
    }

    /// What the API server does on creating some built-in kinds.
    fn on_create(&mut self, served: &Served, name: &str, object: &mut Value) {
        match (
            served.resource.group.as_str(),
            served.resource.kind.as_str(),
        ) {
            ("", "Namespace") => {
                if let Some(meta) = metadata_mut(object) {
                    let labels = meta.entry("labels").or_insert_with(|| json!({}));
                    if labels.is_object() {
                        labels["kubernetes.io/metadata.name"] = json!(name);
                    }
                }
                object["status"] = json!({"phase": "Active"});
            }
            ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                self.serve_crd(name, object);
                let names = object["spec"]["names"].clone();
                let condition = |type_: &str, reason: &str| {
                    json!({"type": type_, "status": "True", "reason": reason, "message": "",
                           "lastTransitionTime": now()})
                };
                object["status"] = json!({
                    "acceptedNames": names,
                    "storedVersions": object["spec"]["versions"].as_array().map(|vs| {
                        vs.iter().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>()
                    }).unwrap_or_default(),
                    "conditions": [
                        condition("NamesAccepted", "NoConflicts"),
                        condition("Established", "InitialNamesAccepted"),
                    ],
                });
            }
            _ => {}
        }
    }

    /// Serves the versions of the CustomResourceDefinition `name` (replacing what it served).
    fn serve_crd(&mut self, name: &str, crd: &Value) {
        self.served.retain(|s| s.crd.as_deref() != Some(name));
        let spec = &crd["spec"];
        let group = spec["group"].as_str().unwrap_or_default();
        let kind = spec["names"]["kind"].as_str().unwrap_or_default();
        let plural = spec["names"]["plural"].as_str().unwrap_or_default();
        let short_names: Vec<String> = spec["names"]["shortNames"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let namespaced = spec["scope"].as_str() != Some("Cluster");
        for version in spec["versions"].as_array().into_iter().flatten() {
            if version["served"] == false {
                continue;
            }
            let version = version["name"].as_str().unwrap_or_default();
            self.served.push(Served {
                resource: ApiResource {
                    group: group.to_owned(),
                    version: version.to_owned(),
                    api_version: format!("{group}/{version}"),
                    kind: kind.to_owned(),
                    plural: plural.to_owned(),
                },
                namespaced,
                short_names: short_names.clone(),
                crd: Some(name.to_owned()),
            });
        }
    }

    /// What the API server does when an object of some built-in kinds goes.
    fn on_remove(&mut self, served: &Served, name: &str) {
        if served.resource.group == "apiextensions.k8s.io"
            && served.resource.kind == "CustomResourceDefinition"
        {
            let gone: Vec<Served> = self
                .served
                .iter()
                .filter(|s| s.crd.as_deref() == Some(name))
                .cloned()
                .collect();
            self.served.retain(|s| s.crd.as_deref() != Some(name));
            for s in gone {
                let names: Vec<(String, String)> = self
                    .objects
                    .get(&key_of(&s.resource))
                    .map(|by_ns| {
                        by_ns
                            .iter()
                            .flat_map(|(ns, by_name)| {
                                by_name.keys().map(move |n| (ns.clone(), n.clone()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                for (ns, n) in names {
                    self.take(&s.resource, &ns, &n);
                }
            }
        }
    }

    /// Stores `next` as the new version of `previous`: keeps identity fields, bumps versions,
    /// finishes a deletion whose last finalizer went.
    fn store(
        &mut self,
        served: &Served,
        ns: &str,
        name: &str,
        previous: Value,
        mut next: Value,
    ) -> Value {
        let resource = &served.resource;
        let version = self.next_version();
        let spec_changed = previous.get("spec") != next.get("spec");
        let generation =
            previous["metadata"]["generation"].as_i64().unwrap_or(1) + i64::from(spec_changed);
        next["apiVersion"] = json!(resource.api_version);
        next["kind"] = json!(resource.kind);
        let mut finishing = false;
        if let Some(meta) = metadata_mut(&mut next) {
            for key in ["uid", "creationTimestamp", "deletionTimestamp"] {
                match previous["metadata"].get(key) {
                    Some(v) => meta.insert(key.into(), v.clone()),
                    None => meta.remove(key),
                };
            }
            meta.insert("name".into(), json!(name));
            if served.namespaced {
                meta.insert("namespace".into(), json!(ns));
            }
            meta.insert("resourceVersion".into(), json!(version));
            meta.insert("generation".into(), json!(generation));
            finishing = meta.contains_key("deletionTimestamp")
                && meta
                    .get("finalizers")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
        }
        if finishing {
            self.put(resource, ns, name, next.clone());
            self.remove(served, ns, name);
            return next;
        }
        if resource.kind == "CustomResourceDefinition" && spec_changed {
            self.serve_crd(name, &next);
        }
        self.put(resource, ns, name, next.clone());
        next
    }

    fn delete(&mut self, served: &Served, ns: &str, name: &str) -> Option<Value> {
        let resource = &served.resource;
        let existing = self.get(resource, ns, name)?.clone();
        let has_finalizers = existing["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if existing["metadata"].get("deletionTimestamp").is_some() {
                return Some(existing);
            }
            let mut next = existing.clone();
            next["metadata"]["deletionTimestamp"] = json!(now());
            let version = self.next_version();
            next["metadata"]["resourceVersion"] = json!(version);
            self.put(resource, ns, name, next.clone());
            return Some(next);
        }
        self.remove(served, ns, name);
        Some(existing)
    }

    /// Removes an object, then garbage-collects dependents whose owners are all gone.
    fn remove(&mut self, served: &Served, ns: &str, name: &str) {
        let resource = &served.resource;
        self.take(resource, ns, name);
        self.applied.retain(|(av, plural, n, o, _), _| {
            !(av == &resource.api_version && plural == &resource.plural && n == ns && o == name)
        });
        self.on_remove(served, name);
        loop {
            let uids: BTreeSet<String> = self
                .all_objects()
                .filter_map(|(_, _, _, o)| o["metadata"]["uid"].as_str().map(str::to_owned))
                .collect();
            let orphan = self.all_objects().find_map(|(key, ns, name, o)| {
                let owners = o["metadata"]["ownerReferences"].as_array()?;
                let gone = !owners.is_empty()
                    && owners
                        .iter()
                        .all(|r| r["uid"].as_str().is_none_or(|u| !uids.contains(u)));
                gone.then(|| (key.clone(), ns.to_owned(), name.to_owned()))
            });
            let Some(((api_version, plural), ns, name)) = orphan else {
                break;
            };
            let Some(dependent) = self
                .served
                .iter()
                .find(|s| s.resource.api_version == api_version && s.resource.plural == plural)
                .cloned()
            else {
                break;
            };
            // Dependents go through the normal deletion path, so their finalizers are honoured.
            if self
                .delete(&dependent, &ns, &name)
                .is_some_and(|o| o["metadata"].get("deletionTimestamp").is_some())
            {
                // Waiting for a finalizer: it keeps its owner references but is not removed now.
                if let Some(mut o) = self.get(&dependent.resource, &ns, &name).cloned() {
                    // Drop the dangling owner references so the loop terminates.
                    o["metadata"]["ownerReferences"] = json!([]);
                    let version = self.next_version();
                    o["metadata"]["resourceVersion"] = json!(version);
                    self.put(&dependent.resource, &ns, &name, o);
                }
            }
        }
    }

    fn all_objects(&self) -> impl Iterator<Item = (&(String, String), &str, &str, &Value)> {
        self.objects.iter().flat_map(|(key, by_ns)| {
            by_ns.iter().flat_map(move |(ns, by_name)| {
                by_name
                    .iter()
                    .map(move |(name, o)| (key, ns.as_str(), name.as_str(), o))
            })
        })
    }

    fn handle(
        &mut self,
        method: Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Answer {
        let json = |(code, value): (StatusCode, Value)| Answer::Json(code, value);
        let query = parse_query(uri.query().unwrap_or_default());
        let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
        let (group, version, rest) = match segments.as_slice() {
            ["version"] => {
                let minor = self.minor_version;
                return json((StatusCode::OK, version_info(minor)));
            }
            ["api"] => return json(self.core_versions()),
            ["apis"] => return json(self.group_list()),
            ["apis", group] => return json(self.group(group)),
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => {
                return json(not_found(
                    "the server could not find the requested resource",
                ))
            }
        };
        if self.hidden_groups.contains(group) {
            return json(not_found(&format!(
                "the server could not find the requested resource ({group}/{version})"
            )));
        }
        let (ns, plural, name, sub) = match rest {
            [] => return json(self.discovery(group, version)),
            ["namespaces", ns, plural, tail @ ..] if !matches!(*plural, "status" | "finalize") => (
                Some(*ns),
                *plural,
                tail.first().copied(),
                tail.get(1).copied(),
            ),
            [plural, tail @ ..] => (None, *plural, tail.first().copied(), tail.get(1).copied()),
        };
        if rest.len() > 5 {
            return json(not_found("unsupported path"));
        }
        let api_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        let Some(served) = self
            .visible()
            .find(|s| s.resource.api_version == api_version && s.resource.plural == plural)
            .cloned()
        else {
            return json(not_found(&format!(
                "the server could not find the requested resource ({plural})"
            )));
        };
        // Where objects of this kind live for this request: a namespace, all of them (None),
        // or "" for cluster-scoped kinds.
        let ns: Option<&str> = match (served.namespaced, ns) {
            (true, ns) => ns,
            (false, None) => Some(""),
            (false, Some(_)) => {
                return json(not_found(&format!(
                    "{} is not namespaced",
                    served.resource.plural
                )))
            }
        };
        if let Some(user) = authorization::service_account(headers) {
            let verb = match (&method, name) {
                (&Method::GET, Some(_)) => "get",
                (&Method::GET, None)
                    if query.get("watch").is_some_and(|w| w == "true" || w == "1") =>
                {
                    "watch"
                }
                (&Method::GET, None) => "list",
                (&Method::POST, _) => "create",
                (&Method::PUT, _) => "update",
                (&Method::PATCH, _) => "patch",
                (&Method::DELETE, Some(_)) => "delete",
                (&Method::DELETE, None) => "deletecollection",
                _ => "unknown",
            };
            let attributes = authorization::Attributes {
                verb,
                group,
                resource: &served.resource.plural,
                subresource: sub,
                namespace: ns.filter(|ns| !ns.is_empty()),
                name,
            };
            if !authorization::allowed(self, &user, &attributes) {
                let message = attributes.denial(&user);
                self.forbidden.push(message.clone());
                return json(status(StatusCode::FORBIDDEN, "Forbidden", &message));
            }
        }
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let metadata_only = headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
        if content_type.contains("protobuf") {
            return json(status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                "the fake API server speaks JSON and YAML only, not protobuf",
            ));
        }
        // DELETE may carry DeleteOptions, which the fake does not use.
        let body: Value = if body.is_empty() || method == Method::DELETE {
            Value::Null
        } else {
            match serde_json::from_slice(body).or_else(|_| serde_yaml::from_slice(body)) {
                Ok(v) => v,
                Err(e) => {
                    return json(status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        &format!("cannot decode body: {e}"),
                    ))
                }
            }
        };
        let pending = match (method, ns, name) {
            (Method::GET, _, None) => {
                let selector = query.get("labelSelector").cloned().unwrap_or_default();
                let fields = query.get("fieldSelector").cloned().unwrap_or_default();
                let (selector, fields) = match (parse_selector(&selector), parse_selector(&fields))
                {
                    (Ok(s), Ok(f)) => (s, f),
                    (Err(e), _) | (_, Err(e)) => {
                        return json(status(StatusCode::BAD_REQUEST, "BadRequest", &e))
                    }
                };
                if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
                    return self.watch(&served, ns, selector, fields, &query, metadata_only);
                }
                return json(self.list_objects(
                    &served.resource,
                    ns,
                    &selector,
                    &fields,
                    metadata_only,
                ));
            }
            (Method::GET, Some(ns), Some(name)) => {
                return json(match self.get(&served.resource, ns, name) {
                    Some(o) if metadata_only => (StatusCode::OK, partial(o)),
                    Some(o) => (StatusCode::OK, o.clone()),
                    None => not_found_object(&served.resource, name),
                })
            }
            (Method::POST, Some(ns), None) => match self.prepare_create(&served, ns, body) {
                Ok(p) => p,
                Err(e) => return json(e),
            },
            (Method::PUT, Some(ns), Some(name)) => {
                let Some(existing) = self.get(&served.resource, ns, name).cloned() else {
                    return json(not_found_object(&served.resource, name));
                };
                if let Some(conflict) = version_conflict(&existing, &body, &served.resource, name) {
                    return json(conflict);
                }
                let mut next = body;
                match sub {
                    Some("status") => {
                        let mut merged = existing.clone();
                        merged["status"] = next["status"].take();
                        return json((
                            StatusCode::OK,
                            self.store(&served, ns, name, existing, merged),
                        ));
                    }
                    _ => keep_status(&existing, &mut next),
                }
                PendingWrite {
                    served: served.clone(),
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                    operation: Operation::Update,
                    old: Some(existing),
                    object: next,
                    applied: None,
                    retry_on_conflict: false,
                    code: StatusCode::OK,
                }
            }
            (Method::PATCH, Some(ns), Some(name)) => {
                match self.patch(&served, ns, name, sub, &content_type, &query, body) {
                    Step::Write(p) => *p,
                    Step::Done(code, value) => return json((code, value)),
                }
            }
            (Method::DELETE, Some(ns), Some(name)) => {
                return json(match self.delete(&served, ns, name) {
                    Some(o) => (StatusCode::OK, o),
                    None => not_found_object(&served.resource, name),
                })
            }
            _ => {
                return json(status(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "unsupported request",
                ))
            }
        };
        if query.get("dryRun").is_some_and(|d| d == "All") {
            return json((pending.code, pending.object));
        }
        let hooks = admission::matching(self, &pending);
        if hooks.is_empty() {
            return json(self.commit(pending).unwrap_or_else(|e| e));
        }
        Answer::Admit(Box::new(pending), hooks)
    }

    fn prepare_create(
        &mut self,
        served: &Served,
        ns: &str,
        mut body: Value,
    ) -> Result<PendingWrite, (StatusCode, Value)> {
        let mut name = body["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            if let Some(prefix) = body["metadata"]["generateName"].as_str() {
                self.uids += 1;
                name = format!("{prefix}{:05x}", (self.uids * 7919) % 0xfffff);
                body["metadata"]["name"] = json!(name);
            }
        }
        if name.is_empty() {
            return Err(status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "metadata.name is required",
            ));
        }
        if self.get(&served.resource, ns, &name).is_some() {
            return Err(status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                &format!("{} {name:?} already exists", served.resource.plural),
            ));
        }
        if served.namespaced {
            body["metadata"]["namespace"] = json!(ns);
        }
        Ok(PendingWrite {
            served: served.clone(),
            namespace: ns.to_owned(),
            name,
            operation: Operation::Create,
            old: None,
            object: body,
            applied: None,
            retry_on_conflict: false,
            code: StatusCode::CREATED,
        })
    }

    /// Stores an admitted write, unless the object changed since it was prepared.
    fn commit(
        &mut self,
        pending: PendingWrite,
    ) -> Result<(StatusCode, Value), (StatusCode, Value)> {
        let PendingWrite {
            served,
            namespace: ns,
            name,
            operation,
            old,
            object,
            applied,
            retry_on_conflict: _,
            code,
        } = pending;
        let current = self.get(&served.resource, &ns, &name).cloned();
        let stored = match (operation, current, old) {
            (Operation::Create, None, _) => self.insert_new(&served, &ns, &name, object),
            (Operation::Create, Some(_), _) => {
                return Err(status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    &format!("{} {name:?} already exists", served.resource.plural),
                ))
            }
            (Operation::Update, Some(current), Some(old))
                if current["metadata"]["resourceVersion"] == old["metadata"]["resourceVersion"] =>
            {
                self.store(&served, &ns, &name, current, object)
            }
            (Operation::Update, None, _) => return Err(not_found_object(&served.resource, &name)),
            (Operation::Update, _, _) => {
                return Err(status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                        served.resource.plural
                    ),
                ))
            }
        };
        if let Some((key, value)) = applied {
            self.applied.insert(key, value);
        }
        Ok((code, stored))
    }

    #[allow(clippy::too_many_arguments)] // one request's parts
    fn patch(
        &mut self,
        served: &Served,
        ns: &str,
        name: &str,
        sub: Option<&str>,
        content_type: &str,
        query: &BTreeMap<String, String>,
        body: Value,
    ) -> Step {
        let resource = &served.resource;
        let existing = self.get(resource, ns, name).cloned();
        let pending = |operation, old: Option<Value>, object, applied, code| {
            Box::new(PendingWrite {
                served: served.clone(),
                namespace: ns.to_owned(),
                name: name.to_owned(),
                operation,
                old,
                object,
                applied,
                retry_on_conflict: true,
                code,
            })
        };
        if content_type.starts_with("application/apply-patch") {
            if let Some(left) = self.failing_applies.get_mut(&resource.plural) {
                if *left > 0 {
                    *left -= 1;
                    return Step::done(status(
                        StatusCode::CONFLICT,
                        "Conflict",
                        &format!("Apply failed with 1 conflict: conflict with \"kubectl-edit\": .metadata.labels ({} {name:?})", resource.plural),
                    ));
                }
            }
            let manager = query.get("fieldManager").cloned().unwrap_or_default();
            let key = (
                resource.api_version.clone(),
                resource.plural.clone(),
                ns.to_owned(),
                name.to_owned(),
                manager,
            );
            let Some(existing) = existing else {
                if sub.is_some() {
                    return Step::done(not_found_object(resource, name));
                }
                let mut object = body.clone();
                if served.namespaced {
                    object["metadata"]["namespace"] = json!(ns);
                }
                return Step::Write(pending(
                    Operation::Create,
                    None,
                    object,
                    Some((key, body)),
                    StatusCode::CREATED,
                ));
            };
            let previous = self.applied.get(&key).cloned().unwrap_or(Value::Null);
            let mut next = existing.clone();
            let applied = match sub {
                Some("status") => json!({"status": body["status"].clone()}),
                _ => {
                    let mut b = body.clone();
                    if let Some(o) = b.as_object_mut() {
                        o.remove("status");
                    }
                    b
                }
            };
            remove_dropped(&mut next, &previous, &applied);
            deep_merge(&mut next, &applied);
            if sub.is_some() {
                self.applied.insert(key, applied);
                return Step::Done(StatusCode::OK, self.store(served, ns, name, existing, next));
            }
            return Step::Write(pending(
                Operation::Update,
                Some(existing),
                next,
                Some((key, applied)),
                StatusCode::OK,
            ));
        }
        let Some(existing) = existing else {
            return Step::done(not_found_object(resource, name));
        };
        if let Some(conflict) = version_conflict(&existing, &body, resource, name) {
            return Step::done(conflict);
        }
        let mut next = existing.clone();
        if content_type.starts_with("application/json-patch") {
            let patch: json_patch::Patch = match serde_json::from_value(body) {
                Ok(p) => p,
                Err(e) => {
                    let message = format!("invalid JSON patch: {e}");
                    return Step::done(status(StatusCode::BAD_REQUEST, "BadRequest", &message));
                }
            };
            if let Err(e) = json_patch::patch(&mut next, &patch) {
                let message = format!("the JSON patch cannot be applied: {e}");
                return Step::done(status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    &message,
                ));
            }
            if sub == Some("status") {
                let mut merged = existing.clone();
                merged["status"] = next["status"].take();
                next = merged;
            } else {
                keep_status(&existing, &mut next);
            }
        } else {
            let strategic = content_type.starts_with("application/strategic-merge-patch");
            let merge = |target: &mut Value, patch: &mut Value| {
                if strategic {
                    strategic_merge(target, patch);
                } else {
                    merge_patch(target, patch);
                }
            };
            match sub {
                Some("status") => {
                    let mut patch_status = body["status"].clone();
                    let target = next
                        .as_object_mut()
                        .map(|o| o.entry("status").or_insert(json!({})));
                    if let Some(target) = target {
                        merge(target, &mut patch_status);
                    }
                }
                _ => {
                    let mut patch = body;
                    if let Some(o) = patch.as_object_mut() {
                        o.remove("status");
                        if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                            meta.remove("resourceVersion");
                        }
                    }
                    merge(&mut next, &mut patch);
                }
            }
        }
        if sub.is_some() {
            return Step::Done(StatusCode::OK, self.store(served, ns, name, existing, next));
        }
        Step::Write(pending(
            Operation::Update,
            Some(existing),
            next,
            None,
            StatusCode::OK,
        ))
    }

    fn matching_objects<'a>(
        &'a self,
        resource: &ApiResource,
        ns: Option<&'a str>,
        selector: &'a [Requirement],
        fields: &'a [Requirement],
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .get(&key_of(resource))
            .into_iter()
            .flat_map(|by_ns| by_ns.iter())
            .filter(move |(n, _)| ns.is_none_or(|ns| ns == n.as_str()))
            .flat_map(|(_, by_name)| by_name.values())
            .filter(move |o| {
                let labels = labels_of(o);
                let object_fields = fields_of(o);
                selector.iter().all(|r| r.matches(&labels))
                    && fields.iter().all(|r| r.matches(&object_fields))
            })
    }

    fn list_objects(
        &self,
        resource: &ApiResource,
        ns: Option<&str>,
        selector: &[Requirement],
        fields: &[Requirement],
        metadata_only: bool,
    ) -> (StatusCode, Value) {
        let items: Vec<Value> = self
            .matching_objects(resource, ns, selector, fields)
            .map(|o| if metadata_only { partial(o) } else { o.clone() })
            .collect();
        let (api_version, kind) = if metadata_only {
            (
                "meta.k8s.io/v1".to_owned(),
                "PartialObjectMetadataList".to_owned(),
            )
        } else {
            (
                resource.api_version.clone(),
                format!("{}List", resource.kind),
            )
        };
        (
            StatusCode::OK,
            json!({
                "apiVersion": api_version,
                "kind": kind,
                "metadata": { "resourceVersion": self.resource_version.to_string() },
                "items": items,
            }),
        )
    }

    /// Opens a watch: past changes after the requested resource version (or the current
    /// objects when it asks for initial events), then every change as it happens.
    fn watch(
        &mut self,
        served: &Served,
        ns: Option<&str>,
        selector: Vec<Requirement>,
        fields: Vec<Requirement>,
        query: &BTreeMap<String, String>,
        metadata_only: bool,
    ) -> Answer {
        let since = query
            .get("resourceVersion")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let initial = query.get("sendInitialEvents").is_some_and(|v| v == "true") || since == 0;
        let timeout = query
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .map(std::time::Duration::from_secs);
        let bookmarks = query
            .get("allowWatchBookmarks")
            .is_some_and(|v| v == "true");
        let (watcher, events) = watch::Watcher::open(
            key_of(&served.resource),
            ns.map(str::to_owned),
            selector,
            fields,
            metadata_only,
            timeout,
        );
        if initial {
            let current: Vec<Value> = self
                .matching_objects(&served.resource, ns, &watcher.selector, &watcher.fields)
                .cloned()
                .collect();
            for object in current {
                watcher.send_event("ADDED", &object);
            }
            if bookmarks && query.get("sendInitialEvents").is_some_and(|v| v == "true") {
                watcher.send_bookmark(&served.resource, self.resource_version, true);
            }
        } else if since < self.history_floor {
            watcher.send_expired(since, self.history_floor);
            return Answer::Watch(events);
        } else {
            for change in self.history.iter().filter(|c| c.resource_version > since) {
                watcher.send(change);
            }
        }
        self.watchers.push(watcher);
        Answer::Watch(events)
    }

    /// `GET /api`.
    fn core_versions(&self) -> (StatusCode, Value) {
        (
            StatusCode::OK,
            json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
            }),
        )
    }

    /// Every visible group with its versions, in order of first appearance.
    fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for s in self.visible().filter(|s| !s.resource.group.is_empty()) {
            let g = &s.resource.group;
            match groups.iter_mut().find(|(name, _)| name == g) {
                Some((_, versions)) => {
                    if !versions.contains(&s.resource.version) {
                        versions.push(s.resource.version.clone());
                    }
                }
                None => groups.push((g.clone(), vec![s.resource.version.clone()])),
            }
        }
        groups
    }

    fn group_json(name: &str, versions: &[String]) -> Value {
        let versions: Vec<Value> = versions
            .iter()
            .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
            .collect();
        json!({
            "name": name,
            "versions": versions,
            "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
        })
    }

    /// `GET /apis`.
    fn group_list(&self) -> (StatusCode, Value) {
        let groups: Vec<Value> = self
            .groups()
            .iter()
            .map(|(name, versions)| State::group_json(name, versions))
            .collect();
        (
            StatusCode::OK,
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
        )
    }

    /// `GET /apis/<group>`.
    fn group(&self, group: &str) -> (StatusCode, Value) {
        match self.groups().iter().find(|(name, _)| name == group) {
            Some((name, versions)) => {
                let mut value = State::group_json(name, versions);
                value["kind"] = json!("APIGroup");
                value["apiVersion"] = json!("v1");
                (StatusCode::OK, value)
            }
            None => not_found(&format!(
                "the server could not find the requested resource ({group})"
            )),
        }
    }

    fn discovery(&self, group: &str, version: &str) -> (StatusCode, Value) {
        let api_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        let mut resources: Vec<Value> = Vec::new();
        for s in self
            .visible()
            .filter(|s| s.resource.api_version == api_version)
        {
            resources.push(json!({
                "name": s.resource.plural,
                "singularName": s.resource.kind.to_lowercase(),
                "namespaced": s.namespaced,
                "kind": s.resource.kind,
                "shortNames": s.short_names,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            }));
            resources.push(json!({
                "name": format!("{}/status", s.resource.plural),
                "singularName": "",
                "namespaced": s.namespaced,
                "kind": s.resource.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if resources.is_empty() {
            return not_found(&format!(
                "the server could not find the requested resource ({api_version})"
            ));
        }
        (
            StatusCode::OK,
            json!({
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": api_version,
                "resources": resources,
            }),
        )
    }
}

/// `GET /version`: the Kubernetes release the fake stands for (1.`minor`).
fn version_info(minor: u32) -> Value {
    json!({
        "major": "1",
        "minor": minor.to_string(),
        "gitVersion": format!("v1.{minor}.0"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-08-27T00:00:00Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `metadata.resourceVersion` in `body` that differs from the stored one: a 409.
fn version_conflict(
    existing: &Value,
    body: &Value,
    resource: &ApiResource,
    name: &str,
) -> Option<(StatusCode, Value)> {
    let wanted = body["metadata"]["resourceVersion"].as_str()?;
    let current = existing["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default();
    (wanted != current).then(|| {
        status(
            StatusCode::CONFLICT,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                resource.plural
            ),
        )
    })
}

fn keep_status(existing: &Value, next: &mut Value) {
    if let Some(o) = next.as_object_mut() {
        match existing.get("status") {
            Some(s) => o.insert("status".into(), s.clone()),
            None => o.remove("status"),
        };
    }
}

fn partial(object: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": object["metadata"].clone(),
    })
}

/// `object.metadata` as a map, created when missing.
fn metadata_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    if !object.is_object() {
        *object = json!({});
    }
    let meta = object
        .as_object_mut()?
        .entry("metadata")
        .or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut()
}

/// JSON merge patch (RFC 7386): objects merge, `null` deletes, everything else replaces.
fn merge_patch(target: &mut Value, patch: &mut Value) {
    match (target.as_object_mut(), patch.as_object_mut()) {
        (Some(target), Some(patch)) => {
            for (key, value) in patch.iter_mut() {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        _ => *target = patch.take(),
    }
}

/// Whether `list` is a non-empty list of objects that each have a `name`: merged by name in
/// strategic merge patches (containers, volumes, env, webhooks).
fn keyed_by_name(list: &[Value]) -> bool {
    !list.is_empty() && list.iter().all(|v| v["name"].is_string())
}

/// Strategic merge patch, simplified: a JSON merge patch whose lists of named objects merge by
/// name; `$`-directives are ignored and other lists replace.
fn strategic_merge(target: &mut Value, patch: &mut Value) {
    if let (Some(target_list), Some(patch_list)) = (target.as_array_mut(), patch.as_array_mut()) {
        if keyed_by_name(patch_list) && (target_list.is_empty() || keyed_by_name(target_list)) {
            for item in patch_list.iter_mut() {
                let name = item["name"].clone();
                match target_list.iter_mut().find(|t| t["name"] == name) {
                    Some(existing) => strategic_merge(existing, item),
                    None => target_list.push(item.take()),
                }
            }
            return;
        }
    }
    match (target.as_object_mut(), patch.as_object_mut()) {
        (Some(target), Some(patch)) => {
            for (key, value) in patch.iter_mut() {
                if key.starts_with('$') {
                    continue;
                }
                if value.is_null() {
                    target.remove(key);
                } else {
                    strategic_merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        _ => *target = patch.take(),
    }
}

/// Server-side apply's merge for one manager: objects merge, lists and scalars replace.
fn deep_merge(target: &mut Value, applied: &Value) {
    match (target.as_object_mut(), applied.as_object()) {
        (Some(target), Some(applied)) => {
            for (key, value) in applied {
                deep_merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        _ => *target = applied.clone(),
    }
}

/// Removes from `target` the fields that `previous` applied and `applied` no longer does.
fn remove_dropped(target: &mut Value, previous: &Value, applied: &Value) {
    let (Some(target), Some(previous)) = (target.as_object_mut(), previous.as_object()) else {
        return;
    };
    for (key, old) in previous {
        match applied.get(key) {
            None => {
                target.remove(key);
            }
            Some(new) => {
                if let Some(t) = target.get_mut(key) {
                    remove_dropped(t, old, new);
                }
            }
        }
    }
}

/// Now, in the API server's second precision.
fn now() -> String {
    Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string()
}

fn status_body(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    })
}

fn status(code: StatusCode, reason: &str, message: &str) -> (StatusCode, Value) {
    (code, status_body(code, reason, message))
}

fn not_found(message: &str) -> (StatusCode, Value) {
    status(StatusCode::NOT_FOUND, "NotFound", message)
}

fn not_found_object(resource: &ApiResource, name: &str) -> (StatusCode, Value) {
    not_found(&format!("{} {name:?} not found", resource.plural))
}

fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One requirement of a label or field selector.
#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

/// Parses `a=b,c!=d,e in (f,g),h notin (i),j,!k`.
fn parse_selector(selector: &str) -> Result<Vec<Requirement>, String> {
    let mut terms = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    let list = |values: &str| -> Vec<String> {
        values
            .trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let mut out = Vec::new();
    for term in terms.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
        let requirement = if let Some((k, v)) = term.split_once(" notin ") {
            Requirement::NotIn(k.trim().to_owned(), list(v))
        } else if let Some((k, v)) = term.split_once(" in ") {
            Requirement::In(k.trim().to_owned(), list(v))
        } else if let Some((k, v)) = term.split_once("!=") {
            Requirement::NotEquals(k.trim().to_owned(), v.trim().to_owned())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            Requirement::Equals(k.trim().to_owned(), v.trim().to_owned())
        } else if let Some(k) = term.strip_prefix('!') {
            Requirement::DoesNotExist(k.trim().to_owned())
        } else if term.contains(' ') || term.contains('(') {
            return Err(format!("unable to parse requirement: {term:?}"));
        } else {
            Requirement::Exists(term.to_owned())
        };
        out.push(requirement);
    }
    Ok(out)
}

/// The `tower::Service` a [`kube::Client`] sends requests to.
#[derive(Clone, Debug)]
pub struct FakeService {
    server: FakeApiServer,
}

impl tower::Service<Request<Body>> for FakeService {
    type Response = Response<FakeBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<FakeBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let server = self.server.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            Ok(server
                .respond(parts.method, parts.uri, parts.headers, bytes)
                .await)
        })
    }
}

#[cfg(test)]
mod tests;
