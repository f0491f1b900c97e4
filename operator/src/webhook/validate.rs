//! `/validate`: rejects invalid `MonitoredApp`, `AlertPolicy`, `SLO` and `DashboardView`
//! objects when they are created or their spec changes, with the same checks and messages as
//! `vigil-operator check` (`crate::manifests::check_object`), each naming the field.
//!
//! The webhook fails closed (`failurePolicy: Fail`), so it must never stand in the way of the
//! operator itself: an update that leaves the spec as it was (finalizers, labels, status) and
//! any change to an object being deleted are allowed, even if the object predates a stricter
//! rule. Checks that need other objects (does the `appRef` exist?) are not made here: manifests
//! may be applied in any order, and the resource's status reports a missing app.

use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Status};
use serde_json::Value;

use super::mutate::{self, MalformedReview};
use crate::manifests::{self, Problem};

/// Answers one `AdmissionReview` of a Vigil resource: the response review as JSON, or
/// [`MalformedReview`] when the body is not a review at all.
pub fn review(body: &[u8]) -> Result<Vec<u8>, MalformedReview> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|e| MalformedReview(e.to_string()))?;
    let request: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|_| MalformedReview("it has no request".into()))?;
    let response = admit_resource(&request);
    mutate::review_json(response)
}

/// The admission response for one Vigil resource: allowed, or denied with every problem.
pub fn admit_resource(request: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return response;
    }
    let Some(object) = &request.object else {
        return response;
    };
    if object.metadata.deletion_timestamp.is_some() {
        return response;
    }
    if request.operation == Operation::Update {
        let spec = |o: &DynamicObject| o.data.get("spec").cloned();
        if request.old_object.as_ref().map(spec) == Some(spec(object)) {
            return response;
        }
    }
    let mut json = match serde_json::to_value(object) {
        Ok(json) => json,
        Err(e) => return response.deny(format!("cannot read the object: {e}")),
    };
    // The request knows what the object may not say yet: its namespace (from the URL) and, for
    // `generateName`, nothing better than the prefix.
    if let Some(meta) = json.get_mut("metadata").and_then(Value::as_object_mut) {
        if !meta.contains_key("namespace") {
            if let Some(ns) = &request.namespace {
                meta.insert("namespace".into(), ns.clone().into());
            }
        }
        if !meta.contains_key("name") {
            let name = Some(request.name.clone())
                .filter(|n| !n.is_empty())
                .or_else(|| object.metadata.generate_name.clone())
                .unwrap_or_else(|| "generated".to_owned());
            meta.insert("name".into(), name.into());
        }
    }
    let problems = manifests::check_object(&json);
    if problems.is_empty() {
        return response;
    }
    let message = denial_message(&problems);
    let mut denied = response.deny(&message);
    denied.result = Status::failure(&message, "Invalid").with_code(422);
    denied
}

/// One line per problem, each starting with the field it is about.
pub fn denial_message(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| match &p.field {
            Some(field) => format!("{field}: {}", p.message),
            None => p.message.clone(),
        })
        .collect();
    lines.join("; ")
}
