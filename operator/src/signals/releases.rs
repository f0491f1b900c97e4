//! Release tracking, the series alert context joins on ("version 17.2, started after deploy
//! 42"): from ReplicaSets (owned by Deployments) and from StatefulSets with their
//! ControllerRevisions, the gauges
//! - `vigil_app_release_info{namespace, app, version, revision, image}` = 1 per live release,
//! - `vigil_app_release_timestamp_seconds{namespace, app, version, revision}` = when that
//!   release was introduced.
//!
//! # What a release is
//! - **Deployment**: each of its ReplicaSets is one revision (`deployment.kubernetes.io/revision`,
//!   the number `kubectl rollout history` shows). Live are the newest revision and any older
//!   one that still has pods (during a rollout, both). The timestamp is the ReplicaSet's
//!   creation; a rollback re-uses an old ReplicaSet, so it keeps that ReplicaSet's time.
//! - **StatefulSet**: its `updateRevision` (the current template) and, while a rollout is in
//!   progress, its `currentRevision`; both name ControllerRevisions, whose `revision` number
//!   and creation time are used.
//!
//! `app` is the `MonitoredApp` selecting the pod template (else its application-name label, see
//! [`super::apps`]) and `version` is computed from the template exactly as the injected agent
//! computes it, so these series join the agent's crash series on `namespace, app, version`.
//! Workloads of no application are ignored.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::apps::v1::{ControllerRevision, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt;
use serde_json::Value;

use super::apps::{AppIndex, TemplateSummary};
use crate::render::namespace_of;

/// Annotation holding a Deployment revision on its ReplicaSets.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// One live release, as exported.
#[derive(Clone, Debug, PartialEq)]
pub struct Release {
    pub namespace: String,
    pub app: String,
    pub version: String,
    /// Deployment or StatefulSet revision number (as `kubectl rollout history` shows it).
    pub revision: String,
    /// Image of the container the version is read from.
    pub image: String,
    /// Creation time (Unix seconds) of the ReplicaSet or ControllerRevision that introduced
    /// the release, when known.
    pub started: Option<f64>,
}

/// `(namespace, name)` of an object.
type Key = (String, String);

#[derive(Clone, Debug)]
struct ReplicaSetRecord {
    deployment: String,
    revision: Option<u64>,
    created: Option<f64>,
    has_pods: bool,
    template: TemplateSummary,
}

#[derive(Clone, Debug)]
struct StatefulSetRecord {
    template: TemplateSummary,
    current_revision: Option<String>,
    update_revision: Option<String>,
}

#[derive(Clone, Debug)]
struct RevisionRecord {
    revision: i64,
    created: Option<f64>,
    /// The template stored in the revision (kept only for StatefulSets' revisions).
    template: Option<TemplateSummary>,
}

/// The release-relevant part of ReplicaSets, StatefulSets and ControllerRevisions.
#[derive(Debug, Default)]
pub struct ReleaseState {
    replica_sets: HashMap<Key, ReplicaSetRecord>,
    stateful_sets: HashMap<Key, StatefulSetRecord>,
    revisions: HashMap<Key, RevisionRecord>,
    relisted: Relists,
}

/// Objects seen since a re-list of each kind began.
#[derive(Debug, Default)]
struct Relists {
    replica_sets: Option<HashSet<Key>>,
    stateful_sets: Option<HashSet<Key>>,
    revisions: Option<HashSet<Key>>,
}

/// The kinds [`ReleaseState`] follows, to scope a re-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    ReplicaSet,
    StatefulSet,
    ControllerRevision,
}

fn key_of<K: ResourceExt>(object: &K) -> Key {
    (namespace_of(object), object.name_any())
}

fn seconds(time: Option<&Time>) -> Option<f64> {
    // Whole seconds are what the API server stores; the conversion is exact below 2^53.
    #[allow(clippy::cast_precision_loss)]
    time.map(|t| t.0.as_second() as f64)
}

/// The controller owner of `meta` with kind `kind`.
fn owner_named<'a>(meta: &'a ObjectMeta, kind: &str) -> Option<&'a str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == kind && o.controller == Some(true))
        .map(|o| o.name.as_str())
}

/// Labels and images of a typed pod template.
pub fn summarize_template(template: &PodTemplateSpec) -> TemplateSummary {
    TemplateSummary {
        labels: template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default(),
        images: template
            .spec
            .iter()
            .flat_map(|spec| &spec.containers)
            .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
            .collect(),
    }
}

/// Labels and images of a pod template stored as JSON (a ControllerRevision's `data` holds
/// `{"spec": {"template": …}}`).
fn summarize_template_json(data: &Value) -> Option<TemplateSummary> {
    let template = data.get("spec")?.get("template")?;
    let labels = template
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let images = template
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|containers| {
            containers
                .iter()
                .filter_map(|c| {
                    let name = c.get("name")?.as_str()?.to_owned();
                    let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
                    Some((name, image.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default();
    Some(TemplateSummary { labels, images })
}

impl ReleaseState {
    /// Records a created or changed ReplicaSet; ReplicaSets not owned by a Deployment are
    /// ignored.
    pub fn observe_replica_set(&mut self, rs: &ReplicaSet) {
        let key = key_of(rs);
        if let Some(seen) = &mut self.relisted.replica_sets {
            seen.insert(key.clone());
        }
        let Some(deployment) = owner_named(&rs.metadata, "Deployment") else {
            self.replica_sets.remove(&key);
            return;
        };
        let has_pods =
            rs.spec.replicas.unwrap_or(1) > 0 || rs.status.as_ref().is_some_and(|s| s.replicas > 0);
        let record = ReplicaSetRecord {
            deployment: deployment.to_owned(),
            revision: rs
                .annotations()
                .get(REVISION_ANNOTATION)
                .and_then(|r| r.parse().ok()),
            created: seconds(rs.metadata.creation_timestamp.as_ref()),
            has_pods,
            template: rs
                .spec
                .template
                .as_ref()
                .map(summarize_template)
                .unwrap_or_default(),
        };
        self.replica_sets.insert(key, record);
    }

    /// Records a created or changed StatefulSet.
    pub fn observe_stateful_set(&mut self, sts: &StatefulSet) {
        let key = key_of(sts);
        if let Some(seen) = &mut self.relisted.stateful_sets {
            seen.insert(key.clone());
        }
        let status = sts.status.as_ref();
        let record = StatefulSetRecord {
            template: summarize_template(&sts.spec.template),
            current_revision: status.and_then(|s| s.current_revision.clone()),
            update_revision: status.and_then(|s| s.update_revision.clone()),
        };
        self.stateful_sets.insert(key, record);
    }

    /// Records a created or changed ControllerRevision; only those of StatefulSets are kept.
    pub fn observe_revision(&mut self, revision: &ControllerRevision) {
        let key = key_of(revision);
        if let Some(seen) = &mut self.relisted.revisions {
            seen.insert(key.clone());
        }
        if owner_named(&revision.metadata, "StatefulSet").is_none() {
            self.revisions.remove(&key);
            return;
        }
        let record = RevisionRecord {
            revision: revision.revision.unwrap_or_default(),
            created: seconds(revision.metadata.creation_timestamp.as_ref()),
            template: summarize_template_json(&revision.data.0),
        };
        self.revisions.insert(key, record);
    }

    /// Forgets a deleted object of `kind`.
    pub fn delete(&mut self, kind: WorkloadKind, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        match kind {
            WorkloadKind::ReplicaSet => self.replica_sets.remove(&key).map(drop),
            WorkloadKind::StatefulSet => self.stateful_sets.remove(&key).map(drop),
            WorkloadKind::ControllerRevision => self.revisions.remove(&key).map(drop),
        };
    }

    /// Starts a full re-list of `kind`.
    pub fn begin_relist(&mut self, kind: WorkloadKind) {
        *self.relist_slot(kind) = Some(HashSet::new());
    }

    /// Ends a re-list of `kind`, forgetting the objects it did not contain.
    pub fn end_relist(&mut self, kind: WorkloadKind) {
        let Some(seen) = self.relist_slot(kind).take() else {
            return;
        };
        match kind {
            WorkloadKind::ReplicaSet => self.replica_sets.retain(|k, _| seen.contains(k)),
            WorkloadKind::StatefulSet => self.stateful_sets.retain(|k, _| seen.contains(k)),
            WorkloadKind::ControllerRevision => self.revisions.retain(|k, _| seen.contains(k)),
        }
    }

    fn relist_slot(&mut self, kind: WorkloadKind) -> &mut Option<HashSet<Key>> {
        match kind {
            WorkloadKind::ReplicaSet => &mut self.relisted.replica_sets,
            WorkloadKind::StatefulSet => &mut self.relisted.stateful_sets,
            WorkloadKind::ControllerRevision => &mut self.relisted.revisions,
        }
    }

    /// Number of objects held (ReplicaSets, StatefulSets and their revisions).
    pub fn tracked_objects(&self) -> usize {
        self.replica_sets.len() + self.stateful_sets.len() + self.revisions.len()
    }

    /// The live releases of every application, sorted, with applications resolved by `apps`.
    /// Two workloads of one app at the same version and revision give one release (the
    /// earlier start).
    pub fn releases(&self, apps: &AppIndex) -> Vec<Release> {
        let mut out: BTreeMap<(String, String, String, String, String), Option<f64>> =
            BTreeMap::new();
        let mut add = |namespace: &str, template: &TemplateSummary, revision: String, started| {
            let Some(app) = apps.resolve(namespace, &template.labels) else {
                return;
            };
            let version = template.version(app.release);
            let image = template.release_image(app.release).unwrap_or_default();
            let key = (
                namespace.to_owned(),
                app.name.to_owned(),
                version,
                revision,
                image.to_owned(),
            );
            let slot = out.entry(key).or_insert(started);
            *slot = match (*slot, started) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        };

        // Deployments: the newest revision of each, plus older ones that still have pods.
        let mut newest: HashMap<(&str, &str), u64> = HashMap::new();
        for ((namespace, _), rs) in &self.replica_sets {
            if let Some(revision) = rs.revision {
                let slot = newest.entry((namespace, &rs.deployment)).or_insert(0);
                *slot = (*slot).max(revision);
            }
        }
        for ((namespace, name), rs) in &self.replica_sets {
            let is_newest = rs.revision.is_some_and(|r| {
                newest.get(&(namespace.as_str(), rs.deployment.as_str())) == Some(&r)
            });
            if !(is_newest || rs.has_pods) {
                continue;
            }
            let revision = rs.revision.map_or_else(|| name.clone(), |r| r.to_string());
            add(namespace, &rs.template, revision, rs.created);
        }

        // StatefulSets: the update revision (the current template) and, during a rollout,
        // the revision still running the older pods.
        for ((namespace, _), sts) in &self.stateful_sets {
            let revision = |name: &String| self.revisions.get(&(namespace.clone(), name.clone()));
            if let Some(update) = &sts.update_revision {
                let record = revision(update);
                add(
                    namespace,
                    &sts.template,
                    record.map_or_else(|| update.clone(), |r| r.revision.to_string()),
                    record.and_then(|r| r.created),
                );
            }
            if let Some(current) = sts
                .current_revision
                .as_ref()
                .filter(|c| Some(*c) != sts.update_revision.as_ref())
            {
                if let Some(record) = revision(current) {
                    if let Some(template) = &record.template {
                        add(
                            namespace,
                            template,
                            record.revision.to_string(),
                            record.created,
                        );
                    }
                }
            }
        }

        out.into_iter()
            .map(
                |((namespace, app, version, revision, image), started)| Release {
                    namespace,
                    app,
                    version,
                    revision,
                    image,
                    started,
                },
            )
            .collect()
    }
}
