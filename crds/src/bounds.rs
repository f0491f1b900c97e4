//! Bounds for the parts of the CRD schemas that come from k8s-openapi (label selectors, resource
//! requirements, status conditions), which carry none.
//!
//! A real API server sizes a list, string or map without `maxItems`, `maxLength` or
//! `maxProperties` by its 3 MiB request limit when it estimates the cost of CEL rules, and then
//! rejects the CRD. Each function here is a schemars field transform
//! (`#[schemars(transform = …)]`) that adds the bounds and says them in the descriptions that
//! `kubectl explain` shows. The bounds follow Kubernetes' own validation where it has one (label
//! values, condition fields) and Vigil's needs elsewhere.

use schemars::Schema;
use serde_json::Value;

/// `selector` of a `MonitoredApp`: at most 64 `matchLabels` (values are label values, at most
/// 63 characters) and 16 `matchExpressions` of at most 64 values.
pub fn label_selector(schema: &mut Schema) {
    bound(
        schema,
        "/properties/matchLabels",
        "maxProperties",
        64,
        "Vigil allows at most 64 labels; each value has at most 63 characters.",
    );
    bound(
        schema,
        "/properties/matchLabels/additionalProperties",
        "maxLength",
        63,
        "",
    );
    bound(
        schema,
        "/properties/matchExpressions",
        "maxItems",
        16,
        "Vigil allows at most 16 expressions.",
    );
    let requirement = "/properties/matchExpressions/items/properties";
    bound(
        schema,
        &format!("{requirement}/key"),
        "maxLength",
        LABEL_KEY,
        "At most 317 characters (a 253-character prefix, `/` and a 63-character name).",
    );
    bound(
        schema,
        &format!("{requirement}/operator"),
        "maxLength",
        12,
        "At most 12 characters.",
    );
    bound(
        schema,
        &format!("{requirement}/values"),
        "maxItems",
        64,
        "Vigil allows at most 64 values of at most 63 characters each.",
    );
    bound(
        schema,
        &format!("{requirement}/values/items"),
        "maxLength",
        63,
        "",
    );
}

/// `resources` of the agent: at most 16 resource names in `limits` and `requests` with
/// quantities of at most 64 characters, and 16 `claims`.
pub fn resource_requirements(schema: &mut Schema) {
    for field in ["limits", "requests"] {
        bound(
            schema,
            &format!("/properties/{field}"),
            "maxProperties",
            16,
            "Vigil allows at most 16 resources; each quantity has at most 64 characters.",
        );
        bound(
            schema,
            &format!("/properties/{field}/additionalProperties"),
            "maxLength",
            64,
            "",
        );
    }
    bound(
        schema,
        "/properties/claims",
        "maxItems",
        16,
        "Vigil allows at most 16 claims.",
    );
    for field in ["name", "request"] {
        bound(
            schema,
            &format!("/properties/claims/items/properties/{field}"),
            "maxLength",
            63,
            "At most 63 characters.",
        );
    }
}

/// `status.conditions`: the bounds of Kubernetes' own `metav1.Condition` validation (type 316,
/// reason 1024, message 32768 characters; status `True`, `False` or `Unknown`). The list's
/// `maxItems` is set with `length(max = …)` on the field.
pub fn conditions(schema: &mut Schema) {
    let condition = "/items/properties";
    bound(
        schema,
        &format!("{condition}/type"),
        "maxLength",
        316,
        "At most 316 characters.",
    );
    bound(
        schema,
        &format!("{condition}/reason"),
        "maxLength",
        1024,
        "At most 1024 characters.",
    );
    bound(
        schema,
        &format!("{condition}/message"),
        "maxLength",
        32768,
        "At most 32768 characters.",
    );
    if let Some(Value::Object(status)) = schema.pointer_mut(&format!("{condition}/status")) {
        status.insert(
            "enum".into(),
            serde_json::json!(["True", "False", "Unknown"]),
        );
    }
}

/// `labels` of an `SLO`: at most 16 labels, each value at most 256 characters (the keys are
/// checked by a CEL rule on the field).
pub fn slo_labels(schema: &mut Schema) {
    bound(schema, "", "maxProperties", 16, "");
    bound(schema, "/additionalProperties", "maxLength", 256, "");
}

/// `generatedObjects.labels`: at most 32 labels whose values are label values.
pub fn generated_labels(schema: &mut Schema) {
    bound(schema, "", "maxProperties", 32, "");
    bound(schema, "/additionalProperties", "maxLength", 63, "");
}

/// `generatedObjects.annotations`: at most 32 annotations of at most 4096 characters.
pub fn generated_annotations(schema: &mut Schema) {
    bound(schema, "", "maxProperties", 32, "");
    bound(schema, "/additionalProperties", "maxLength", 4096, "");
}

/// Longest label key: a DNS-subdomain prefix (253), `/` and a name (63).
const LABEL_KEY: u64 = 317;

/// Sets `key: max` on the schema node at `pointer` (when k8s-openapi has it: a node that moved
/// is caught by the bounds test in `crds/tests/cel_budget.rs`) and appends `says` to its
/// description.
fn bound(schema: &mut Schema, pointer: &str, key: &str, max: u64, says: &str) {
    let Some(Value::Object(node)) = schema.pointer_mut(pointer) else {
        return;
    };
    node.insert(key.into(), max.into());
    if says.is_empty() {
        return;
    }
    let description = match node.get("description").and_then(Value::as_str) {
        Some(text) if !text.is_empty() => format!("{} {says}", text.trim_end()),
        _ => says.to_owned(),
    };
    node.insert("description".into(), description.into());
}
