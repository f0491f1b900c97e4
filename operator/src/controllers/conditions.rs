//! Status plumbing shared by every controller: building conditions (whose
//! `lastTransitionTime` only moves when the status flips), the condition set of a resource
//! whose outputs were applied, merging them into what the object already shows, and writing
//! the status subresource with a merge patch (plus the `Applied` Event of a new generation).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde::Serialize;
use serde_json::Value;

use super::apply::{describe, Outcome, FIELD_MANAGER};
use super::error::StatusError;
use super::{report, Context, Error, VigilResource};

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
        message: bounded_message(message.into()),
        observed_generation: generation,
        last_transition_time: Time(now),
    }
}

/// Longest condition message the API server stores (the CRDs' and `metav1.Condition`'s
/// `maxLength`); a longer one would make the whole status write fail.
pub const MAX_MESSAGE_BYTES: usize = 32768;

/// `message` cut to [`MAX_MESSAGE_BYTES`] at a character boundary, marked with `…`.
fn bounded_message(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES - '…'.len_utf8();
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

/// One kind-specific condition of a resource whose outputs were applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// Condition type, such as `RulesApplied`.
    pub type_: &'static str,
    /// Whether it holds.
    pub ok: bool,
    /// PascalCase reason.
    pub reason: &'static str,
    /// One sentence for the user.
    pub message: String,
}

impl Check {
    /// A condition that holds, with its type as reason (such as `RulesApplied`).
    pub fn passed(type_: &'static str, message: String) -> Check {
        Check {
            type_,
            ok: true,
            reason: type_,
            message,
        }
    }
}

/// The conditions of a resource whose outputs were applied at `generation`: `Ready=True`
/// (reason `Applied`) saying what was applied, then `checks`.
pub fn applied(
    generation: Option<i64>,
    now: Timestamp,
    ready_message: String,
    checks: Vec<Check>,
) -> Vec<Condition> {
    let ready = condition(READY, true, "Applied", ready_message, generation, now);
    std::iter::once(ready)
        .chain(
            checks
                .into_iter()
                .map(|c| condition(c.type_, c.ok, c.reason, c.message, generation, now)),
        )
        .collect()
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
    K: VigilResource,
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

/// Writes `status` (the resource's new status) when it differs from `previous`, and publishes
/// an `Applied` Event (`summary` of what was produced, then the children applied and pruned)
/// when the status records a new generation. Returns whether the status changed.
pub async fn publish<K, S>(
    ctx: &Context,
    object: &K,
    previous: &S,
    status: &S,
    summary: &str,
    outcome: &Outcome,
) -> Result<bool, Error>
where
    K: VigilResource,
    S: Serialize + PartialEq,
{
    if status == previous {
        return Ok(false);
    }
    let generation = |s: &Value| s.get("observedGeneration").and_then(Value::as_i64);
    let before = serde_json::to_value(previous).unwrap_or_default();
    let json = serde_json::to_value(status).unwrap_or_default();
    let new_generation = generation(&before) != generation(&json);
    patch_status(&ctx.client, object, json).await?;
    if new_generation {
        let note = report::applied_note(summary, outcome);
        report::event(ctx, object, EventType::Normal, "Applied", note).await;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A condition message never exceeds what the API server stores, however many problems an
    /// invalid object has, and is cut at a character boundary.
    #[test]
    fn messages_fit_the_api_server_bound() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let c = condition(READY, false, "Invalid", long, Some(1), Timestamp::now());
        assert!(c.message.len() <= MAX_MESSAGE_BYTES);
        assert!(c.message.ends_with('…'));
        let short = condition(READY, true, "Applied", "fine", Some(1), Timestamp::now());
        assert_eq!(short.message, "fine");
    }
}
