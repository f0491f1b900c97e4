//! An in-memory Kubernetes API server for controller tests and benchmarks: a
//! `tower::Service` that a real [`kube::Client`] talks to, so controllers run their real request
//! code against it.
//!
//! It keeps objects as JSON keyed by resource, namespace and name and answers what the
//! controllers and leader election use: GET, LIST (with `labelSelector`, also as metadata-only
//! `PartialObjectMetadataList`), POST (create), PUT (replace, with `resourceVersion`
//! preconditions), PATCH (server-side apply, JSON merge and strategic merge treated as JSON
//! merge; on the main resource or the `status` subresource), DELETE, and API discovery of group
//! versions. WATCH is not served: tests call reconcile functions directly.
//!
//! Semantics modelled because controllers depend on them:
//! - server-side apply creates or merges, and removes the fields the same field manager applied
//!   before but no longer applies (so a dropped ConfigMap key disappears, as in a real cluster);
//! - writes to the main resource keep `status`; status writes keep everything else;
//! - `resourceVersion` increases on every write; `generation` increases when `spec` changes;
//! - DELETE of an object with finalizers only sets `deletionTimestamp`; the object goes when
//!   its last finalizer is removed;
//! - garbage collection: when an object goes, every object whose owner references all point
//!   at objects that no longer exist goes too (cascading).
//!
//! Tests can make applies fail with `409 Conflict` ([`FakeApiServer::fail_applies`]) and hide an
//! API group from discovery and routing ([`FakeApiServer::without_group`]).

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll};

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::core::ApiResource;
use kube::{Client, Resource};
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::discovery;

/// One API the fake serves.
#[derive(Clone, Debug)]
struct Served {
    resource: ApiResource,
    namespaced: bool,
}

#[derive(Debug, Default)]
struct State {
    served: Vec<Served>,
    hidden_groups: BTreeSet<String>,
    /// (api version, plural) → namespace → name → object.
    objects: BTreeMap<(String, String), BTreeMap<String, BTreeMap<String, Value>>>,
    /// Last object applied per (api version, plural, namespace, name, field manager).
    applied: BTreeMap<(String, String, String, String, String), Value>,
    resource_version: u64,
    uids: u64,
    /// plural → number of applies still to fail with 409.
    failing_applies: BTreeMap<String, u32>,
    /// (method, path) of every request, in order.
    requests: Vec<(String, String)>,
}

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

impl FakeApiServer {
    /// A server for core kinds (ConfigMaps, Secrets, Pods, Events, Leases), the Vigil kinds and
    /// the optional prometheus-operator and grafana-operator kinds.
    pub fn new() -> FakeApiServer {
        use k8s_openapi::api::coordination::v1::Lease;
        use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
        use k8s_openapi::api::events::v1::Event;
        let served = [
            erase::<ConfigMap>(),
            erase::<Secret>(),
            erase::<Pod>(),
            erase::<Event>(),
            erase::<Lease>(),
            erase::<vigil_crds::MonitoredApp>(),
            erase::<vigil_crds::AlertPolicy>(),
            erase::<vigil_crds::Slo>(),
            erase::<vigil_crds::DashboardView>(),
            discovery::pod_monitor(),
            discovery::prometheus_rule(),
            discovery::alertmanager_config(),
            discovery::grafana_dashboard(),
        ]
        .into_iter()
        .map(|resource| Served {
            resource,
            namespaced: true,
        })
        .collect();
        FakeApiServer {
            state: Arc::new(Mutex::new(State {
                served,
                ..State::default()
            })),
        }
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
    pub fn context(&self, settings: super::Settings) -> Arc<super::Context> {
        self.context_with(settings, super::Reloader::default())
    }

    /// Like [`FakeApiServer::context`], with reloads sent by `reloader`.
    pub fn context_with(
        &self,
        settings: super::Settings,
        reloader: super::Reloader,
    ) -> Arc<super::Context> {
        // Registering fresh collectors in a fresh registry cannot collide.
        let metrics = super::ReconcileMetrics::new(&prometheus::Registry::new());
        #[allow(clippy::expect_used)] // see above
        let metrics = metrics.expect("fresh registry");
        Arc::new(super::Context::new(
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

    /// Stores `object` as if a user had created it (uid, resourceVersion, generation set) and
    /// returns it as stored.
    pub fn create<K: Serialize>(&self, object: &K) -> Value {
        let value = serde_json::to_value(object).unwrap_or(Value::Null);
        let mut state = self.lock();
        let Some(served) = state.find_kind(&value) else {
            return Value::Null;
        };
        let ns = value["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned();
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        state.insert_new(&served.resource, &ns, &name, value)
    }

    /// Replaces the stored object's `spec` (as a user's `kubectl apply` would), bumping its
    /// generation; returns it as stored.
    pub fn update_spec(&self, plural: &str, namespace: &str, name: &str, spec: Value) -> Value {
        let mut state = self.lock();
        let Some(resource) = state.by_plural(plural) else {
            return Value::Null;
        };
        let Some(existing) = state.get(&resource, namespace, name).cloned() else {
            return Value::Null;
        };
        let mut next = existing.clone();
        next["spec"] = spec;
        state.store(&resource, namespace, name, existing, next)
    }

    /// The stored object, if any.
    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let state = self.lock();
        let resource = state.by_plural(plural)?;
        state.get(&resource, namespace, name).cloned()
    }

    /// Every stored object of `plural` in `namespace`, sorted by name.
    pub fn list(&self, plural: &str, namespace: &str) -> Vec<Value> {
        let state = self.lock();
        let Some(resource) = state.by_plural(plural) else {
            return Vec::new();
        };
        state
            .objects
            .get(&(resource.api_version.clone(), resource.plural.clone()))
            .and_then(|by_ns| by_ns.get(namespace))
            .map(|by_name| by_name.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Deletes an object as a user would (finalizers and garbage collection apply).
    pub fn delete(&self, plural: &str, namespace: &str, name: &str) {
        let mut state = self.lock();
        if let Some(resource) = state.by_plural(plural) {
            state.delete(&resource, namespace, name);
        }
    }

    /// `(method, path)` of every request received so far.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.lock().requests.clone()
    }

    fn handle(
        &self,
        method: Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> (StatusCode, Value) {
        let mut state = self.lock();
        state
            .requests
            .push((method.to_string(), uri.path().to_owned()));
        state.handle(method, uri, headers, body)
    }
}

impl State {
    fn visible(&self) -> impl Iterator<Item = &Served> {
        self.served
            .iter()
            .filter(|s| !self.hidden_groups.contains(&s.resource.group))
    }

    fn by_plural(&self, plural: &str) -> Option<ApiResource> {
        self.served
            .iter()
            .find(|s| s.resource.plural == plural)
            .map(|s| s.resource.clone())
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
        self.objects
            .get(&(resource.api_version.clone(), resource.plural.clone()))?
            .get(ns)?
            .get(name)
    }

    fn next_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    fn insert_new(
        &mut self,
        resource: &ApiResource,
        ns: &str,
        name: &str,
        mut object: Value,
    ) -> Value {
        self.uids += 1;
        let uid = format!("00000000-0000-4000-8000-{:012}", self.uids);
        let version = self.next_version();
        object["apiVersion"] = json!(resource.api_version);
        object["kind"] = json!(resource.kind);
        if let Some(meta) = metadata_mut(&mut object) {
            meta.insert("name".into(), json!(name));
            meta.insert("namespace".into(), json!(ns));
            meta.insert("uid".into(), json!(uid));
            meta.insert("resourceVersion".into(), json!(version));
            meta.insert("generation".into(), json!(1));
            meta.insert("creationTimestamp".into(), json!(now()));
            meta.remove("deletionTimestamp");
        }
        self.objects
            .entry((resource.api_version.clone(), resource.plural.clone()))
            .or_default()
            .entry(ns.to_owned())
            .or_default()
            .insert(name.to_owned(), object.clone());
        object
    }

    /// Stores `next` as the new version of `previous`: keeps identity fields, bumps versions,
    /// finishes a deletion whose last finalizer went.
    fn store(
        &mut self,
        resource: &ApiResource,
        ns: &str,
        name: &str,
        previous: Value,
        mut next: Value,
    ) -> Value {
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
            meta.insert("namespace".into(), json!(ns));
            meta.insert("resourceVersion".into(), json!(version));
            meta.insert("generation".into(), json!(generation));
            finishing = meta.contains_key("deletionTimestamp")
                && meta
                    .get("finalizers")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
        }
        if finishing {
            self.remove(resource, ns, name);
            return next;
        }
        self.objects
            .entry((resource.api_version.clone(), resource.plural.clone()))
            .or_default()
            .entry(ns.to_owned())
            .or_default()
            .insert(name.to_owned(), next.clone());
        next
    }

    fn delete(&mut self, resource: &ApiResource, ns: &str, name: &str) -> Option<Value> {
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
            self.objects
                .entry((resource.api_version.clone(), resource.plural.clone()))
                .or_default()
                .entry(ns.to_owned())
                .or_default()
                .insert(name.to_owned(), next.clone());
            return Some(next);
        }
        self.remove(resource, ns, name);
        Some(existing)
    }

    /// Removes an object, then garbage-collects dependents whose owners are all gone.
    fn remove(&mut self, resource: &ApiResource, ns: &str, name: &str) {
        if let Some(by_ns) = self
            .objects
            .get_mut(&(resource.api_version.clone(), resource.plural.clone()))
        {
            if let Some(by_name) = by_ns.get_mut(ns) {
                by_name.remove(name);
            }
        }
        self.applied.retain(|(av, plural, n, o, _), _| {
            !(av == &resource.api_version && plural == &resource.plural && n == ns && o == name)
        });
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
            let Some(resource) = self
                .served
                .iter()
                .find(|s| s.resource.api_version == api_version && s.resource.plural == plural)
                .map(|s| s.resource.clone())
            else {
                break;
            };
            // Dependents go through the normal deletion path, so their finalizers are honoured.
            if self
                .delete(&resource, &ns, &name)
                .is_some_and(|o| o["metadata"].get("deletionTimestamp").is_some())
            {
                // Waiting for a finalizer: it keeps its owner references but is not removed now.
                let still_there = self.get(&resource, &ns, &name).is_some();
                if still_there {
                    // Drop the dangling owner references so the loop terminates.
                    if let Some(o) = self
                        .objects
                        .get_mut(&(api_version.clone(), plural.clone()))
                        .and_then(|m| m.get_mut(&ns))
                        .and_then(|m| m.get_mut(&name))
                    {
                        o["metadata"]["ownerReferences"] = json!([]);
                    }
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
    ) -> (StatusCode, Value) {
        let query = parse_query(uri.query().unwrap_or_default());
        let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return not_found("the server could not find the requested resource"),
        };
        if self.hidden_groups.contains(group) {
            return not_found(&format!(
                "the server could not find the requested resource ({group}/{version})"
            ));
        }
        let (ns, plural, name, sub) = match rest {
            [] => return self.discovery(group, version),
            ["namespaces", ns, plural] => (Some(*ns), *plural, None, None),
            ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name), None),
            ["namespaces", ns, plural, name, sub] => (Some(*ns), *plural, Some(*name), Some(*sub)),
            [plural] => (None, *plural, None, None),
            _ => return not_found("unsupported path"),
        };
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
            return not_found(&format!(
                "the server could not find the requested resource ({plural})"
            ));
        };
        let resource = served.resource;
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let metadata_only = headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(body).or_else(|_| serde_yaml::from_slice(body)) {
                Ok(v) => v,
                Err(e) => {
                    return status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        &format!("cannot decode body: {e}"),
                    )
                }
            }
        };
        match (method, ns, name) {
            (Method::GET, _, None) => {
                if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
                    return status(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "MethodNotAllowed",
                        "the fake API server does not serve watches",
                    );
                }
                let selector = query.get("labelSelector").cloned().unwrap_or_default();
                self.list_objects(&resource, ns, &selector, metadata_only)
            }
            (Method::GET, Some(ns), Some(name)) => match self.get(&resource, ns, name) {
                Some(o) if metadata_only => (StatusCode::OK, partial(o)),
                Some(o) => (StatusCode::OK, o.clone()),
                None => not_found_object(&resource, name),
            },
            (Method::POST, Some(ns), None) => {
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if name.is_empty() {
                    return status(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        "metadata.name is required",
                    );
                }
                if self.get(&resource, ns, &name).is_some() {
                    return status(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        &format!("{} {name:?} already exists", resource.plural),
                    );
                }
                (
                    StatusCode::CREATED,
                    self.insert_new(&resource, ns, &name, body),
                )
            }
            (Method::PUT, Some(ns), Some(name)) => {
                let Some(existing) = self.get(&resource, ns, name).cloned() else {
                    return not_found_object(&resource, name);
                };
                if let Some(conflict) = version_conflict(&existing, &body, &resource, name) {
                    return conflict;
                }
                let mut next = body;
                match sub {
                    Some("status") => {
                        let mut merged = existing.clone();
                        merged["status"] = next["status"].take();
                        next = merged;
                    }
                    _ => keep_status(&existing, &mut next),
                }
                (
                    StatusCode::OK,
                    self.store(&resource, ns, name, existing, next),
                )
            }
            (Method::PATCH, Some(ns), Some(name)) => {
                self.patch(&resource, ns, name, sub, &content_type, &query, body)
            }
            (Method::DELETE, Some(ns), Some(name)) => match self.delete(&resource, ns, name) {
                Some(o) => (StatusCode::OK, o),
                None => not_found_object(&resource, name),
            },
            _ => status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "unsupported request",
            ),
        }
    }

    #[allow(clippy::too_many_arguments)] // one request's parts
    fn patch(
        &mut self,
        resource: &ApiResource,
        ns: &str,
        name: &str,
        sub: Option<&str>,
        content_type: &str,
        query: &BTreeMap<String, String>,
        body: Value,
    ) -> (StatusCode, Value) {
        let existing = self.get(resource, ns, name).cloned();
        if content_type.starts_with("application/apply-patch") {
            if let Some(left) = self.failing_applies.get_mut(&resource.plural) {
                if *left > 0 {
                    *left -= 1;
                    return status(
                        StatusCode::CONFLICT,
                        "Conflict",
                        &format!("Apply failed with 1 conflict: conflict with \"kubectl-edit\": .metadata.labels ({} {name:?})", resource.plural),
                    );
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
                    return not_found_object(resource, name);
                }
                self.applied.insert(key, body.clone());
                return (
                    StatusCode::CREATED,
                    self.insert_new(resource, ns, name, body),
                );
            };
            let previous = self.applied.get(&key).cloned().unwrap_or(Value::Null);
            let mut next = existing.clone();
            let (applied, target) = match sub {
                Some("status") => (json!({"status": body["status"].clone()}), &mut next),
                _ => {
                    let mut b = body.clone();
                    if let Some(o) = b.as_object_mut() {
                        o.remove("status");
                    }
                    (b, &mut next)
                }
            };
            remove_dropped(target, &previous, &applied);
            deep_merge(target, &applied);
            self.applied.insert(key, applied);
            return (
                StatusCode::OK,
                self.store(resource, ns, name, existing, next),
            );
        }
        let Some(existing) = existing else {
            return not_found_object(resource, name);
        };
        if content_type.starts_with("application/json-patch") {
            return status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                "the fake API server does not support JSON patch",
            );
        }
        if let Some(conflict) = version_conflict(&existing, &body, resource, name) {
            return conflict;
        }
        let mut next = existing.clone();
        match sub {
            Some("status") => {
                let mut patch_status = body["status"].clone();
                let target = next
                    .as_object_mut()
                    .map(|o| o.entry("status").or_insert(json!({})));
                if let Some(target) = target {
                    merge_patch(target, &mut patch_status);
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
                merge_patch(&mut next, &mut patch);
            }
        }
        (
            StatusCode::OK,
            self.store(resource, ns, name, existing, next),
        )
    }

    fn list_objects(
        &self,
        resource: &ApiResource,
        ns: Option<&str>,
        selector: &str,
        metadata_only: bool,
    ) -> (StatusCode, Value) {
        let requirements = match parse_selector(selector) {
            Ok(r) => r,
            Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e),
        };
        let items: Vec<Value> = self
            .objects
            .get(&(resource.api_version.clone(), resource.plural.clone()))
            .into_iter()
            .flat_map(|by_ns| by_ns.iter())
            .filter(|(n, _)| ns.is_none_or(|ns| ns == n.as_str()))
            .flat_map(|(_, by_name)| by_name.values())
            .filter(|o| {
                let labels: BTreeMap<String, String> =
                    serde_json::from_value(o["metadata"]["labels"].clone()).unwrap_or_default();
                requirements.iter().all(|r| r.matches(&labels))
            })
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

    fn discovery(&self, group: &str, version: &str) -> (StatusCode, Value) {
        let api_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        let resources: Vec<Value> = self
            .visible()
            .filter(|s| s.resource.api_version == api_version)
            .map(|s| {
                json!({
                    "name": s.resource.plural,
                    "singularName": s.resource.kind.to_lowercase(),
                    "namespaced": s.namespaced,
                    "kind": s.resource.kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                })
            })
            .collect();
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

fn status(code: StatusCode, reason: &str, message: &str) -> (StatusCode, Value) {
    (
        code,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code.as_u16(),
        }),
    )
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

/// One requirement of a label selector.
#[derive(Debug, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
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
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let server = self.server.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let (code, value) = server.handle(parts.method, &parts.uri, &parts.headers, &bytes);
            let body = serde_json::to_vec(&value).unwrap_or_default();
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = code;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Label selectors select what the API server would.
    #[test]
    fn selectors_match_like_the_api_server() {
        let labels = BTreeMap::from([
            ("app".to_owned(), "shop".to_owned()),
            ("tier".to_owned(), "web".to_owned()),
        ]);
        let check = |s: &str| {
            parse_selector(s)
                .unwrap()
                .iter()
                .all(|r| r.matches(&labels))
        };
        assert!(check("app=shop"));
        assert!(check("app==shop,tier in (web, db)"));
        assert!(check("app,!missing,tier notin (db)"));
        assert!(!check("app!=shop"));
        assert!(!check("tier in (db)"));
        assert!(check(""));
    }

    /// Query strings are percent-decoded.
    #[test]
    fn query_values_are_decoded() {
        let q = parse_query("labelSelector=app%3Dshop%2Ctier+in+%28a%29&watch=false");
        assert_eq!(q["labelSelector"], "app=shop,tier in (a)");
    }

    /// Apply removes the fields its manager stopped applying and keeps everyone else's.
    #[test]
    fn apply_drops_fields_the_manager_no_longer_applies() {
        let mut target = json!({"data": {"a": "1", "b": "2", "theirs": "x"}});
        let previous = json!({"data": {"a": "1", "b": "2"}});
        let applied = json!({"data": {"a": "3"}});
        remove_dropped(&mut target, &previous, &applied);
        deep_merge(&mut target, &applied);
        assert_eq!(target, json!({"data": {"a": "3", "theirs": "x"}}));
    }
}
