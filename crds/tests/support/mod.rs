//! Test support for `cel_budget.rs`: walks a CRD's OpenAPI schema the way the API server does
//! when it decides whether to accept the CRD, and reports the lists, strings and maps without a
//! bound and the estimated cost of every CEL rule.
//!
//! What the real thing does that this does not: it also rejects non-structural schemas, rules
//! that do not compile or type-check, and transition rules on lists it cannot correlate; the
//! walk here assumes a schema kube's derive produced (no `allOf`/`anyOf` carrying properties).

pub mod cel_cost;

use serde_json::Value;

use cel_cost::{is_int_or_string, map_values, rule_cost, unbounded_cardinality};

/// A node of a schema with where it sits.
pub struct Node<'a> {
    /// Path from the root, such as `spec.rules[*].name` (`[*]` list items, `.*` map values).
    pub path: String,
    pub schema: &'a Value,
    /// The list or map this node is the items or values of; its description documents them.
    pub container: Option<&'a Value>,
    /// How many times the node can repeat in one object: the product of the bounds of every
    /// enclosing list and map, or `None` when one of them has no bound.
    pub repeat: Option<u64>,
}

/// The OpenAPI schema of a CRD's first version.
pub fn schema_of(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
}

/// Every node under `root`, parents first.
pub fn nodes(root: &Value) -> Vec<Node<'_>> {
    let mut out = Vec::new();
    visit(root, String::new(), None, Some(1), &mut out);
    out
}

fn visit<'a>(
    schema: &'a Value,
    path: String,
    container: Option<&'a Value>,
    repeat: Option<u64>,
    out: &mut Vec<Node<'a>>,
) {
    let times = |key: &str| {
        let bound = schema.get(key).and_then(Value::as_u64);
        repeat.zip(bound).map(|(r, b)| r.saturating_mul(b))
    };
    out.push(Node {
        path: path.clone(),
        schema,
        container,
        repeat,
    });
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            let child_path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            visit(child, child_path, None, repeat, out);
        }
    }
    if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
        visit(
            items,
            format!("{path}[*]"),
            Some(schema),
            times("maxItems"),
            out,
        );
    }
    if let Some(values) = map_values(schema) {
        visit(
            values,
            format!("{path}.*"),
            Some(schema),
            times("maxProperties"),
            out,
        );
    }
}

/// The bound a node needs and lacks, if any: lists need `maxItems`, maps `maxProperties`,
/// strings (and int-or-string) `maxLength`. Strings with an `enum` are bounded by their longest
/// value, and `date-time` strings by their format, so they need none.
pub fn missing_bound(schema: &Value) -> Option<&'static str> {
    let has = |key: &str| schema.get(key).is_some();
    let kind = schema.get("type").and_then(Value::as_str).unwrap_or("");
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return Some("x-kubernetes-preserve-unknown-fields (free-form, cannot be bounded)");
    }
    if kind == "array" && !has("maxItems") {
        return Some("maxItems");
    }
    if kind == "object" && map_values(schema).is_some() && !has("maxProperties") {
        return Some("maxProperties");
    }
    let inherently_bounded = has("enum")
        || matches!(
            schema.get("format").and_then(Value::as_str),
            Some("date-time" | "date")
        );
    if (kind == "string" || is_int_or_string(schema)) && !has("maxLength") && !inherently_bounded {
        return Some("maxLength");
    }
    None
}

/// Every place under `root` that lacks a bound, as `path: lacks maxItems`.
pub fn unbounded(root: &Value) -> Vec<String> {
    nodes(root)
        .into_iter()
        .filter_map(|n| missing_bound(n.schema).map(|what| format!("{}: lacks {what}", n.path)))
        .collect()
}

/// One CEL rule and its estimate.
#[derive(Debug)]
pub struct RuleCost {
    pub path: String,
    pub rule: String,
    /// Estimated cost of one evaluation.
    pub cost: u64,
    /// How many times it may be evaluated per object.
    pub cardinality: u64,
    /// `cost × cardinality`: what the server compares with the per-rule limit and sums.
    pub total: u64,
}

/// The estimate of every CEL rule under `root`; an error names a rule the model cannot cost.
pub fn rule_costs(root: &Value) -> Result<Vec<RuleCost>, String> {
    let mut out = Vec::new();
    for node in nodes(root) {
        let rules = node
            .schema
            .get("x-kubernetes-validations")
            .and_then(Value::as_array);
        for rule in rules.into_iter().flatten() {
            let text = rule["rule"].as_str().unwrap_or_default().to_owned();
            let cost = rule_cost(&text, node.schema)
                .map_err(|e| format!("{}: cannot estimate {text:?}: {e}", node.path))?;
            let cardinality = node
                .repeat
                .unwrap_or_else(|| unbounded_cardinality(node.schema));
            out.push(RuleCost {
                path: node.path.clone(),
                total: cost.saturating_mul(cardinality),
                rule: text,
                cost,
                cardinality,
            });
        }
    }
    Ok(out)
}
