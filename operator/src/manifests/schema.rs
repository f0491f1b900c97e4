//! The OpenAPI checks of a CRD schema that serde does not make: numeric ranges, string, list and
//! map lengths, patterns and enums. Together with serde (types, required and unknown fields) and
//! kube's CEL evaluator (`x-kubernetes-validations`) this is what the API server would reject.

use serde_json::Value;

/// Every violation in `value` as `(field path, message)`.
pub fn check(schema: &Value, value: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk(schema, value, String::new(), &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(schema: &Value, value: &Value, path: String, out: &mut Vec<(String, String)>) {
    let number = |key: &str| schema.get(key).and_then(Value::as_f64);
    if let Some(n) = value.as_f64() {
        if let Some(min) = number("minimum") {
            if n < min {
                out.push((path.clone(), format!("must be at least {min}, got {n}")));
            }
        }
        if let Some(max) = number("maximum") {
            if n > max {
                out.push((path.clone(), format!("must be at most {max}, got {n}")));
            }
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as f64;
        if number("minLength").is_some_and(|min| len < min) {
            out.push((path.clone(), "must not be empty".to_owned()));
        }
        if let Some(max) = number("maxLength").filter(|max| len > *max) {
            out.push((
                path.clone(),
                format!("must be at most {max} characters long"),
            ));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            let matches = regex::Regex::new(pattern)
                .map(|re| re.is_match(s))
                .unwrap_or(true);
            if !matches {
                out.push((
                    path.clone(),
                    format!("{s:?} does not match the pattern {pattern}"),
                ));
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.iter().any(|a| a == value) {
                let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
                out.push((
                    path.clone(),
                    format!("{s:?} is not one of {}", names.join(", ")),
                ));
            }
        }
    }
    if let Some(items) = value.as_array() {
        if number("minItems").is_some_and(|min| (items.len() as f64) < min) {
            out.push((path.clone(), "must list at least one item".to_owned()));
        }
        if let Some(max) = number("maxItems").filter(|max| items.len() as f64 > *max) {
            out.push((
                path.clone(),
                format!("at most {max} {}, got {}", item_noun(&path), items.len()),
            ));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                walk(item_schema, item, format!("{path}[{i}]"), out);
            }
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties").filter(|a| a.is_object());
        let too_many = number("maxProperties").filter(|max| object.len() as f64 > *max);
        if let Some(max) = too_many.filter(|_| additional.is_some()) {
            out.push((
                path.clone(),
                format!("at most {max} entries, got {}", object.len()),
            ));
        }
        for (key, child) in object {
            if let Some(child_schema) = properties.and_then(|p| p.get(key)).or(additional) {
                walk(child_schema, child, join(&path, key), out);
            }
        }
    }
}

/// What a list at `path` holds, in the user's words: its field name when that is a plural
/// (`spec.rules` → `rules`), else `items`.
fn item_noun(path: &str) -> &str {
    let field = path.rsplit('.').next().unwrap_or(path);
    let field = field.split('[').next().unwrap_or(field);
    if field.len() > 1 && field.ends_with('s') {
        field
    } else {
        "items"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Ranges, lengths, patterns and enums are reported with the path of the offending field.
    #[test]
    fn reports_each_violation_with_its_path() {
        let schema = json!({"properties": {"spec": {"properties": {
            "ratio": {"minimum": 0.0, "maximum": 1.0},
            "name": {"minLength": 1, "pattern": "^[a-z]+$"},
            "kind": {"enum": ["a", "b"]},
            "rules": {"minItems": 1, "items": {"properties": {"n": {"maximum": 5}}}},
        }}}});
        let value = json!({"spec": {"ratio": 1.5, "name": "Ab", "kind": "c", "rules": [{"n": 1}, {"n": 9}]}});
        let found = check(&schema, &value);
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["spec.kind", "spec.name", "spec.ratio", "spec.rules[1].n"],
            "{found:?}"
        );
        assert!(check(&schema, &json!({"spec": {"rules": []}}))[0]
            .1
            .contains("at least one"));
    }

    /// Lists and maps over their bound are reported with the bound, in the field's words.
    #[test]
    fn reports_lists_and_maps_over_their_bound() {
        let schema = json!({"properties": {"spec": {"properties": {
            "rules": {"maxItems": 2, "items": {}},
            "escalation": {"maxItems": 1, "items": {}},
            "audiences": {"items": {"properties": {"receivers": {"maxItems": 1, "items": {}}}}},
            "labels": {"maxProperties": 1, "additionalProperties": {"type": "string"}},
        }}}});
        let value = json!({"spec": {
            "rules": [1, 2, 3],
            "escalation": [1, 2],
            "audiences": [{"receivers": [1, 2]}],
            "labels": {"a": "1", "b": "2"},
        }});
        assert_eq!(
            check(&schema, &value),
            [
                (
                    "spec.audiences[0].receivers".to_owned(),
                    "at most 1 receivers, got 2".to_owned()
                ),
                (
                    "spec.escalation".to_owned(),
                    "at most 1 items, got 2".to_owned()
                ),
                (
                    "spec.labels".to_owned(),
                    "at most 1 entries, got 2".to_owned()
                ),
                ("spec.rules".to_owned(), "at most 2 rules, got 3".to_owned()),
            ]
        );
    }
}
