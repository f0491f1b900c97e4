//! The write half of every controller: server-side apply of children under the one field
//! manager [`FIELD_MANAGER`], and pruning of children that are no longer desired by listing
//! them with their owner's labels (`app.kubernetes.io/managed-by: vigil` plus
//! `vigil.dev/owner: <kind>.<name>`) and deleting the ones not in the desired set.

use std::collections::BTreeSet;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde_json::Value;

use super::error::{is_not_found, ApplyError};
use crate::render::child_labels;
use crate::render::outputs::Outputs;

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "vigil-operator";

/// One child object ready to apply: its API resource and the complete object.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    /// The child's API (group, version, kind, plural).
    pub resource: ApiResource,
    /// The object with `apiVersion`, `kind` and `metadata`.
    pub object: Value,
}

impl Child {
    /// A child from a typed object such as a `ConfigMap`.
    pub fn typed<T>(object: &T) -> Result<Child, serde_json::Error>
    where
        T: Resource<DynamicType = ()> + Serialize,
    {
        Ok(Child {
            resource: ApiResource::erase::<T>(&()),
            object: serde_json::to_value(object)?,
        })
    }

    /// A child rendered as JSON, such as a `PodMonitor`.
    pub fn dynamic(resource: ApiResource, object: Value) -> Child {
        Child { resource, object }
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// `metadata.namespace`.
    pub fn namespace(&self) -> &str {
        self.object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
    }

    /// `Kind/namespace/name`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{}/{}/{}",
            self.resource.kind,
            self.namespace(),
            self.name()
        )
    }
}

/// A typed child of `owner` (as `Kind/namespace/name`), ready to apply.
pub fn encode<T>(owner: &str, object: &T) -> Result<Child, ApplyError>
where
    T: Resource<DynamicType = ()> + Serialize,
{
    Child::typed(object).map_err(|source| ApplyError::Encode {
        object: owner.to_owned(),
        child: format!(
            "{}/{}",
            T::kind(&()),
            object.meta().name.as_deref().unwrap_or_default()
        ),
        source,
    })
}

/// `Kind/namespace/name` of a resource, for messages.
pub fn describe<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

/// The label selector matching every child of `owner`.
pub fn owner_selector<K: Resource<DynamicType = ()> + ResourceExt>(owner: &K) -> String {
    child_labels(owner)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Server-side applies `child` (forcing ownership of its fields) and returns what the API server
/// stored.
pub async fn apply(
    client: &Client,
    owner: &str,
    child: &Child,
) -> Result<DynamicObject, ApplyError> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), child.namespace(), &child.resource);
    api.patch(
        child.name(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&child.object),
    )
    .await
    .map_err(|source| ApplyError::Apply {
        object: owner.to_owned(),
        child: child.describe(),
        source,
    })
}

/// Deletes the children of kind `resource` in `namespace` that match `selector` and are not
/// named in `keep`; returns the names deleted. A kind the API server does not serve (its CRD
/// is gone) has no children to delete.
pub async fn prune(
    client: &Client,
    owner: &str,
    resource: &ApiResource,
    namespace: &str,
    selector: &str,
    keep: &BTreeSet<String>,
) -> Result<Vec<String>, ApplyError> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    let error = |source| ApplyError::Prune {
        object: owner.to_owned(),
        child: resource.kind.clone(),
        source,
    };
    let existing = match api
        .list_metadata(&ListParams::default().labels(selector))
        .await
    {
        Ok(existing) => existing,
        Err(e) if is_not_found(&e) => return Ok(Vec::new()),
        Err(e) => return Err(error(e)),
    };
    let mut deleted = Vec::new();
    for object in existing.items {
        let name = object.name_any();
        if keep.contains(&name) || object.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => deleted.push(name),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(error(e)),
        }
    }
    Ok(deleted)
}

/// What applying one owner's children did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Children applied, as `Kind/namespace/name`.
    pub applied: Vec<String>,
    /// Children deleted because they are no longer desired, as `Kind/namespace/name`.
    pub pruned: Vec<String>,
}

/// Applies every child of `owner` (with the labels, annotations and Grafana settings of
/// `outputs`), then prunes, for each kind in `kinds`, the children with the
/// owner's labels that were not just applied. `kinds` lists every kind the owner can produce
/// and the cluster serves (plus, right after the optional APIs changed, the kinds it no longer
/// serves), so a child kind that stops being desired is cleaned up too.
pub async fn apply_and_prune<K>(
    client: &Client,
    owner: &K,
    children: &[Child],
    kinds: &[ApiResource],
    outputs: &Outputs,
) -> Result<Outcome, ApplyError>
where
    K: Resource<DynamicType = ()> + ResourceExt,
{
    let owner_name = describe(owner);
    let namespace = owner.namespace().unwrap_or_default();
    let mut outcome = Outcome::default();
    for child in children {
        let mut child = child.clone();
        outputs.decorate(&mut child.object);
        apply(client, &owner_name, &child).await?;
        outcome.applied.push(child.describe());
    }
    let selector = owner_selector(owner);
    for kind in kinds {
        let keep: BTreeSet<String> = children
            .iter()
            .filter(|c| c.resource.plural == kind.plural && c.resource.group == kind.group)
            .map(|c| c.name().to_owned())
            .collect();
        for name in prune(client, &owner_name, kind, &namespace, &selector, &keep).await? {
            outcome
                .pruned
                .push(format!("{}/{namespace}/{name}", kind.kind));
        }
    }
    Ok(outcome)
}
