//! Telling the user what happened: a failed reconcile becomes `Ready=False` with the error's
//! category as reason and a one-sentence message, plus a Warning Event; a successful apply of a
//! new generation becomes a Normal Event. Reporting never fails a reconcile: if the API server
//! refuses the status or the Event, the failure is logged and the reconcile result stands.

use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType};
use kube::Resource;

use super::apply::Outcome;
use super::conditions::{self, READY};
use super::{Context, Error, VigilResource};

/// Largest Event note the API server accepts.
const MAX_NOTE: usize = 1024;

/// Publishes an Event about `object`; logs instead of failing.
pub async fn event<K>(ctx: &Context, object: &K, type_: EventType, reason: &str, note: String)
where
    K: Resource<DynamicType = ()>,
{
    let mut note = note;
    if note.len() > MAX_NOTE {
        let mut cut = MAX_NOTE - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "cannot publish event");
    }
}

/// Reports a failed reconcile on the object: `Ready=False` (reason = the error's category) and a
/// Warning Event. The status also records the generation it judged, permanent error or not
/// (an API error is a verdict on this generation too), so `kubectl get` and `kubectl wait`
/// see the condition is about the current spec.
pub async fn failure<K>(ctx: &Context, object: &K, error: &Error)
where
    K: VigilResource,
{
    let message = error.user_message();
    let generation = object.meta().generation;
    let ready = conditions::condition(
        READY,
        false,
        error.category(),
        message.clone(),
        generation,
        Timestamp::now(),
    );
    let status = serde_json::json!({
        "observedGeneration": generation,
        "conditions": conditions::merge(&conditions::current(object), vec![ready]),
    });
    if let Err(e) = conditions::patch_status(&ctx.client, object, status).await {
        tracing::warn!(error = %e, "cannot record the failure in the status");
    }
    event(ctx, object, EventType::Warning, error.category(), message).await;
}

/// The note of an `Applied` Event: what was produced, the children applied and pruned.
pub fn applied_note(summary: &str, outcome: &Outcome) -> String {
    let mut note = summary.to_owned();
    if !outcome.applied.is_empty() {
        note.push_str(&format!("; applied {}", outcome.applied.join(", ")));
    }
    if !outcome.pruned.is_empty() {
        note.push_str(&format!("; pruned {}", outcome.pruned.join(", ")));
    }
    note
}
