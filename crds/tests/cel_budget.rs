//! The CRDs fit what a real Kubernetes API server accepts: every list, string and map has a
//! bound, each bound is documented where `kubectl explain` shows it, and the estimated cost of
//! every CEL rule stays within the server's per-rule and per-CRD budgets.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step must fail the test with its message"
)]

mod support;

use serde_json::{json, Value};

use support::cel_cost::{CRD_LIMIT, RULE_LIMIT};
use support::{nodes, rule_costs, schema_of, unbounded, RuleCost};

/// The four CRDs as the API server receives them: the committed YAML, parsed back.
fn crds() -> Vec<Value> {
    let yaml = vigil_crds::crds_yaml().expect("CRDs encode");
    parse_crds(&yaml)
}

fn parse_crds(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("CRD YAML parses"))
        .filter(|crd: &Value| !crd.is_null())
        .collect()
}

fn kind(crd: &Value) -> &str {
    crd["spec"]["names"]["kind"].as_str().unwrap_or("?")
}

/// Without `maxItems`, `maxLength` and `maxProperties` the server sizes lists, strings and maps
/// by the 3 MiB request limit, and any CEL rule that touches them, or sits under them, blows
/// its budget. So every one of them carries a bound.
#[test]
fn every_list_string_and_map_has_a_bound() {
    let mut missing = Vec::new();
    for crd in crds() {
        for place in unbounded(schema_of(&crd)) {
            missing.push(format!("{}: {place}", kind(&crd)));
        }
    }
    assert!(
        missing.is_empty(),
        "give these a bound (schemars `length(max = …)`, or the k8s-openapi transforms in \
         crds/src/bounds.rs), document it in the field's doc comment, then run \
         scripts/generate.sh:\n  {}",
        missing.join("\n  ")
    );
}

/// Each rule's estimated cost times the number of times it can run per object stays under the
/// server's per-rule limit, and their sum under the per-CRD limit (the figures are printed
/// with `--nocapture`).
#[test]
fn cel_rules_fit_the_api_servers_budget() {
    let mut over = Vec::new();
    for crd in crds() {
        let costs = rule_costs(schema_of(&crd)).unwrap_or_else(|e| panic!("{}: {e}", kind(&crd)));
        let total = print_costs(kind(&crd), &costs);
        for rule in costs.iter().filter(|r| r.total > RULE_LIMIT) {
            over.push(format!(
                "{}: {}: {:?} costs {} × {} = {} > {RULE_LIMIT}",
                kind(&crd),
                rule.path,
                rule.rule,
                rule.cost,
                rule.cardinality,
                rule.total
            ));
        }
        if total > CRD_LIMIT {
            over.push(format!(
                "{}: all rules together cost {total} > {CRD_LIMIT}",
                kind(&crd)
            ));
        }
    }
    assert!(
        over.is_empty(),
        "over the API server's CEL budget:\n  {}",
        over.join("\n  ")
    );
}

/// Prints one CRD's rules and returns their total.
fn print_costs(kind: &str, costs: &[RuleCost]) -> u64 {
    let total = costs
        .iter()
        .fold(0u64, |sum, r| sum.saturating_add(r.total));
    println!("{kind}: {} rules, estimated total {total}", costs.len());
    for r in costs {
        println!(
            "  {:>20} = {:>8} × {:<6} {}: {}",
            r.total, r.cost, r.cardinality, r.path, r.rule
        );
    }
    total
}

/// The bound of every Vigil field appears in its description (or, for list items and map
/// values, in the description of the list or map), so `kubectl explain` shows it. Durations
/// are exempt: the pattern bounds them far below their `maxLength`, which `Duration` documents.
#[test]
fn bounds_are_documented() {
    let mut undocumented = Vec::new();
    for crd in crds() {
        for node in nodes(schema_of(&crd)) {
            let duration = node.schema.get("pattern").and_then(Value::as_str)
                == Some(vigil_crds::Duration::PATTERN);
            if duration {
                continue;
            }
            let text = |s: Option<&Value>| {
                s.and_then(|s| s.get("description"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let described = format!("{} {}", text(Some(node.schema)), text(node.container));
            for key in ["maxItems", "maxLength", "maxProperties"] {
                let Some(bound) = node.schema.get(key).and_then(Value::as_u64) else {
                    continue;
                };
                if !mentions_number(&described, bound) {
                    undocumented.push(format!("{}: {}: {key} {bound}", kind(&crd), node.path));
                }
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "say these bounds in the field's doc comment (such as \"At most 64 rules.\"):\n  {}",
        undocumented.join("\n  ")
    );
}

/// Whether `text` contains `n` as a whole number (digits, optionally grouped with commas).
fn mentions_number(text: &str, n: u64) -> bool {
    let digits: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                c
            } else if c == ',' {
                ','
            } else {
                ' '
            }
        })
        .collect();
    digits
        .split_whitespace()
        .any(|word| word.trim_matches(',').replace(',', "") == n.to_string())
}

/// Self-check of the walk and the model: a rule over a list without `maxItems` of strings
/// without `maxLength` is over budget and both places are reported; the same rule with bounds
/// fits.
#[test]
fn a_rule_over_an_unbounded_list_fails() {
    let unbounded_schema = json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "properties": {"hosts": {
            "type": "array",
            "items": {"type": "string"},
            "x-kubernetes-validations": [{"rule": "self.all(h, h.matches('^[a-z.]+$'))"}],
        }},
    }}});
    assert_eq!(
        unbounded(&unbounded_schema),
        [
            "spec.hosts: lacks maxItems",
            "spec.hosts[*]: lacks maxLength"
        ]
    );
    let costs = rule_costs(&unbounded_schema).expect("rule is modelled");
    assert!(costs[0].total > RULE_LIMIT, "{costs:?}");

    let mut bounded_schema = unbounded_schema.clone();
    let hosts = &mut bounded_schema["properties"]["spec"]["properties"]["hosts"];
    hosts["maxItems"] = json!(16);
    hosts["items"]["maxLength"] = json!(253);
    let bounded_hosts = hosts.clone();
    assert!(unbounded(&bounded_schema).is_empty());
    let costs = rule_costs(&bounded_schema).expect("rule is modelled");
    assert!(costs[0].total < RULE_LIMIT / 100, "{costs:?}");

    // The same list nested in an unbounded list: the nested rule is over budget again.
    let nested = json!({"type": "object", "properties": {"groups": {
        "type": "array",
        "items": {"type": "object", "properties": {"hosts": bounded_hosts}},
    }}});
    let costs = rule_costs(&nested).expect("rule is modelled");
    assert!(costs[0].total > RULE_LIMIT, "{costs:?}");
}

/// A function the model has no cost for is an error, never a guess.
#[test]
fn unknown_functions_are_not_guessed() {
    let schema = json!({"type": "object", "properties": {"url": {
        "type": "string", "maxLength": 10,
        "x-kubernetes-validations": [{"rule": "isURL(self)"}],
    }}});
    let error = rule_costs(&schema).expect_err("isURL has no cost model");
    assert!(error.contains("isURL"), "{error}");
}

/// Calibration against a real server: Kubernetes v1.28.7 rejected the first AlertPolicy CRD
/// with `rules.items` 3.3× over the per-rule limit, `receivers.items` 2.1× and
/// `rules.items.name` more than 100×. On the same schema parts the model gives at least those
/// figures (it may over-estimate, never under-estimate), and not wildly more.
#[test]
fn estimates_are_at_least_what_a_real_server_reported() {
    let one_of_rule = |kinds: &[&str]| {
        let has: Vec<String> = kinds.iter().map(|k| format!("has(self.{k})")).collect();
        format!("[{}].filter(x, x).size() == 1", has.join(", "))
    };
    let object = json!({"type": "object"});
    let rule_kinds = [
        "crashRate",
        "errorRate",
        "latency",
        "targetDown",
        "anomaly",
        "forecast",
        "promql",
    ];
    let mut rule_properties = serde_json::Map::new();
    rule_properties.insert(
        "name".into(),
        json!({"type": "string", "x-kubernetes-validations": [{"rule": "self.matches('^[A-Z][A-Za-z0-9]*$')"}]}),
    );
    for k in rule_kinds {
        rule_properties.insert(k.into(), object.clone());
    }
    let receiver_kinds = ["email", "slack", "webhook", "pagerDuty"];
    let mut receiver_properties = serde_json::Map::new();
    receiver_properties.insert("name".into(), json!({"type": "string"}));
    for k in receiver_kinds {
        receiver_properties.insert(k.into(), object.clone());
    }
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "rules": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name"], "properties": rule_properties,
            "x-kubernetes-validations": [{"rule": one_of_rule(&rule_kinds)}],
        }},
        "audiences": {"type": "array", "items": {"type": "object", "properties": {
            "receivers": {"type": "array", "items": {
                "type": "object", "required": ["name"], "properties": receiver_properties,
                "x-kubernetes-validations": [{"rule": one_of_rule(&receiver_kinds)}],
            }},
        }}},
    }}}});
    let costs = rule_costs(&schema).expect("rules are modelled");
    let factor_of = |path: &str| {
        let rule = costs
            .iter()
            .find(|r| r.path == path)
            .unwrap_or_else(|| panic!("no rule at {path}: {costs:?}"));
        rule.total as f64 / RULE_LIMIT as f64
    };
    let rules = factor_of("spec.rules[*]");
    let receivers = factor_of("spec.audiences[*].receivers[*]");
    let name = factor_of("spec.rules[*].name");
    assert!(
        (3.25..6.6).contains(&rules),
        "rules.items: {rules}× (server: 3.3×)"
    );
    assert!(
        (2.05..4.2).contains(&receivers),
        "receivers.items: {receivers}× (server: 2.1×)"
    );
    assert!(
        name > 100.0,
        "rules.items.name: {name}× (server: more than 100×)"
    );
}

/// Prints the estimate of a CRD file without judging it: the committed CRDs, or another file
/// such as an older release's with
/// `CRD_YAML=old.yaml cargo test -p vigil-crds --test cel_budget report -- --nocapture`.
/// Every CRD of the file must still parse and be estimable.
#[test]
fn report_for_a_crd_file() {
    let path = std::env::var("CRD_YAML")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/vigil-crds.yaml").to_owned());
    let yaml = std::fs::read_to_string(&path).expect("the CRD file is readable");
    let crds = parse_crds(&yaml);
    assert!(!crds.is_empty(), "no CRD in {path}");
    for crd in crds {
        let schema = schema_of(&crd);
        println!(
            "{}: {} places without a bound",
            kind(&crd),
            unbounded(schema).len()
        );
        match rule_costs(schema) {
            Ok(costs) => {
                print_costs(kind(&crd), &costs);
            }
            Err(e) => println!("{}: {e}", kind(&crd)),
        }
    }
}
