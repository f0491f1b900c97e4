//! Status plumbing shared by every controller: building conditions (whose
//! `lastTransitionTime` only moves when the status flips), merging them into what the object
//! already shows, and writing the status subresource with a merge patch.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::apply::{describe, FIELD_MANAGER};
use super::error::StatusError;

/// Condition type every resource has: the resource's outputs are applied and current.
pub const READY: &str = "Ready";

/// A condition of `type_` for the object at `generation`.
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(now),
    }
}

/// `existing` with every condition of `updates` replacing the one of the same type. A condition
/// whose status did not change keeps its `lastTransitionTime`. Output is sorted by type so that
/// re-writing the same status is a no-op.
pub fn merge(existing: &[Condition], updates: Vec<Condition>) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|c| !updates.iter().any(|u| u.type_ == c.type_))
        .cloned()
        .collect();
    for mut update in updates {
        if let Some(old) = existing.iter().find(|c| c.type_ == update.type_) {
            if old.status == update.status {
                update.last_transition_time = old.last_transition_time.clone();
            }
        }
        out.push(update);
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// The conditions an object currently shows in `status.conditions`.
pub fn current<K: Serialize>(object: &K) -> Vec<Condition> {
    serde_json::to_value(object)
        .ok()
        .and_then(|v| {
            let conditions = v.get("status")?.get("conditions")?.clone();
            serde_json::from_value(conditions).ok()
        })
        .unwrap_or_default()
}

/// `status.observedGeneration` of an object.
pub fn observed_generation<K: Serialize>(object: &K) -> Option<i64> {
    serde_json::to_value(object)
        .ok()
        .and_then(|v| v.get("status")?.get("observedGeneration")?.as_i64())
}

/// Writes `status` (a JSON object in the resource's status shape) with a merge patch on the
/// status subresource.
pub async fn patch_status<K>(
    client: &kube::Client,
    object: &K,
    status: Value,
) -> Result<(), StatusError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + ResourceExt
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await
    .map(|_| ())
    .map_err(|source| StatusError::Write {
        object: describe(object),
        source,
    })
}
