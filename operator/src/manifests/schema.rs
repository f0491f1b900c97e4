//! The OpenAPI checks of a CRD schema that serde does not make: numeric ranges, string and list
//! lengths, patterns and enums. Together with serde (types, required and unknown fields) and
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
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                walk(item_schema, item, format!("{path}[{i}]"), out);
            }
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties").filter(|a| a.is_object());
        for (key, child) in object {
            if let Some(child_schema) = properties.and_then(|p| p.get(key)).or(additional) {
                walk(child_schema, child, join(&path, key), out);
            }
        }
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
}
