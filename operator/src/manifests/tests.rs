//! Malformed manifests: each must give exactly the expected one-line problem, naming the file,
//! the object and the field.

use std::path::Path;

use super::{load_text, references, Loaded, Problem};

const APP: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: shop, namespace: retail}
spec:
  selector: {matchLabels: {app: shop}}
"#;

/// Loads `text` (after a valid app) and returns every problem as its printed line.
fn problems(text: &str) -> Vec<String> {
    let mut loaded = Loaded::default();
    let mut problems: Vec<Problem> = Vec::new();
    load_text(
        Path::new("m.yaml"),
        &format!("{APP}---\n{text}"),
        &mut loaded,
        &mut problems,
    );
    problems.extend(references::check(&loaded));
    problems.iter().map(ToString::to_string).collect()
}

fn policy(rules: &str) -> String {
    format!(
        "apiVersion: vigil.dev/v1alpha1\nkind: AlertPolicy\nmetadata: {{name: p, namespace: retail}}\nspec:\n  appRef: {{name: shop}}\n  rules:\n{rules}"
    )
}

/// A valid app and policy load without problems (the baseline the other cases break).
#[test]
fn valid_manifests_have_no_problems() {
    assert_eq!(
        problems(&policy("    - name: ShopCrash\n      crashRate: {}\n")),
        Vec::<String>::new()
    );
}

/// Each malformed manifest yields one line naming file, object and field.
#[test]
fn malformed_manifests_name_object_and_field() {
    let cases: Vec<(String, &str)> = vec![
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {name: m, namespace: retail}\nspec:\n  selector: {matchLabels: {a: b}}\n  sepc: 1\n".into(),
            "m.yaml: MonitoredApp/retail/m: spec.sepc: unknown field `sepc`",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {name: m, namespace: retail}\nspec:\n  selector: {matchLabels: {a: b}}\n  traces: {samplingRatio: lots}\n".into(),
            "m.yaml: MonitoredApp/retail/m: spec.traces.samplingRatio: invalid type: string \"lots\"",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {name: m, namespace: retail}\nspec:\n  selector: {matchLabels: {a: b}}\n  traces: {samplingRatio: 1.5}\n".into(),
            "m.yaml: MonitoredApp/retail/m: spec.traces.samplingRatio: must be at most 1",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {name: m, namespace: retail}\nspec:\n  selector: {}\n".into(),
            "m.yaml: MonitoredApp/retail/m: spec.selector: an empty selector would select every pod",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {name: m, namespace: retail}\nspec:\n  selector: {matchLabels: {a: b}}\n  logs: {containerLogs: false}\n".into(),
            "m.yaml: MonitoredApp/retail/m: spec.logs: logs needs a source",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {name: m, namespace: retail}\nspec:\n  selector: {matchLabels: {a: b}}\n  redaction: {patterns: [{name: x, regex: \"(unclosed\"}]}\n".into(),
            "m.yaml: MonitoredApp/retail/m: spec.redaction.patterns[0].regex: invalid regular expression",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {name: m, namespace: retail}\nspec:\n  selector: {matchLabels: {a: b}}\n  exporters: {loki: {url: \"loki:3100\"}}\n".into(),
            "m.yaml: MonitoredApp/retail/m: spec.exporters.loki: url must be an http:// or https:// URL",
        ),
        (policy("    - name: ShopCrash\n      for: 5x\n      crashRate: {}\n"), "m.yaml: AlertPolicy/retail/p: spec.rules[0].for: invalid duration \"5x\""),
        (policy("    - name: shop-crash\n      crashRate: {}\n"), "m.yaml: AlertPolicy/retail/p: spec.rules[0].name: name must be UpperCamelCase"),
        (
            policy("    - name: Bad\n      promql: {expr: \"sum(rate(x[5m])\"}\n"),
            "m.yaml: AlertPolicy/retail/p: spec.rules[0].promql.expr: PromQL expression has an unbalanced '('",
        ),
        (
            policy("    - name: Two\n      promql: {expr: up}\n      targetDown: {}\n"),
            "m.yaml: AlertPolicy/retail/p: spec.rules[0]: a rule sets exactly one of crashRate",
        ),
        (
            policy("    - name: Slow\n      latency: {quantile: 1.5, thresholdSeconds: 1}\n"),
            "m.yaml: AlertPolicy/retail/p: spec.rules[0].latency.quantile: must be at most 1",
        ),
        (
            policy("    - name: Crash\n      severity: urgent\n      crashRate: {}\n"),
            "m.yaml: AlertPolicy/retail/p: spec.rules[0].severity: unknown variant `urgent`",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: AlertPolicy\nmetadata: {name: p, namespace: retail}\nspec:\n  appRef: {name: shopp}\n  rules: [{name: Crash, crashRate: {}}]\n".into(),
            "m.yaml: AlertPolicy/retail/p: spec.appRef.name: no MonitoredApp \"shopp\" in namespace \"retail\"",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: AlertPolicy\nmetadata: {name: p, namespace: other}\nspec:\n  appRef: {name: shop}\n  rules: [{name: Crash, crashRate: {}}]\n".into(),
            "m.yaml: AlertPolicy/other/p: spec.appRef.name: no MonitoredApp \"shop\" in namespace \"other\"",
        ),
        (
            format!("{}  escalation: [{{after: 10m, receiver: nobody}}]\n", policy("    - name: Crash\n      crashRate: {}\n")),
            "m.yaml: AlertPolicy/retail/p: spec.escalation[0].receiver: no receiver named \"nobody\"",
        ),
        (
            format!("{}  audiences: [{{audience: support, receivers: [{{name: a, email: {{to: a@x}}, slack: {{channel: c, apiUrlSecretRef: {{name: s, key: k}}}}}}]}}]\n", policy("    - name: Crash\n      crashRate: {}\n")),
            "m.yaml: AlertPolicy/retail/p: spec.audiences[0].receivers[0]: a receiver sets exactly one of email, slack, webhook, pagerDuty",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: SLO\nmetadata: {name: s, namespace: retail}\nspec:\n  appRef: {name: shop}\n  sli: {availability: {}}\n  objective: 140\n".into(),
            "m.yaml: SLO/retail/s: spec.objective: objective is a percentage strictly between 0 and 100",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: SLO\nmetadata: {name: s, namespace: retail}\nspec:\n  appRef: {name: shop}\n  sli: {goodTotal: {good: \"sum(rate(ok[5m]))\", total: \"sum(rate(all[{{.window}}]))\"}}\n  objective: 99\n".into(),
            "m.yaml: SLO/retail/s: spec.sli.goodTotal.good: good must use {{.window}} as its range",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: DashboardView\nmetadata: {name: d, namespace: retail}\nspec:\n  apps: [shop, cart]\n  audience: support\n".into(),
            "m.yaml: DashboardView/retail/d: spec.apps[1]: no MonitoredApp \"cart\" in namespace \"retail\"",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: DashboardView\nmetadata: {name: d, namespace: retail}\nspec:\n  apps: [shop]\n  audience: customers\n".into(),
            "m.yaml: DashboardView/retail/d: spec.audience: unknown variant `customers`",
        ),
        ("apiVersion: vigil.dev/v1alpha1\nkind: Dashboard\nmetadata: {name: d}\n".into(), "m.yaml: Dashboard/default/d: kind: unknown kind \"Dashboard\""),
        ("apiVersion: vigil.dev/v1beta1\nkind: SLO\nmetadata: {name: s}\n".into(), "m.yaml: SLO/default/s: apiVersion: unsupported apiVersion \"vigil.dev/v1beta1\""),
        ("apiVersion: vigil.dev/v1alpha1\nkind: SLO\nmetadata: {namespace: x}\n".into(), "m.yaml: SLO/x/<no name>: metadata.name: missing required field `name`"),
        ("apiVersion: vigil.dev/v1alpha1\nkind: SLO\nmetadata: {name: s}\nspek: {}\n".into(), "m.yaml: SLO/default/s: spek: unknown field `spek`"),
        (APP.into(), "m.yaml: MonitoredApp/retail/shop: metadata.name: duplicate object"),
        ("kind: [unclosed\n".into(), "m.yaml: invalid YAML:"),
    ];
    for (text, expected) in cases {
        let found = problems(&text);
        assert!(
            found.len() == 1 && found[0].starts_with(expected),
            "expected one problem starting with\n  {expected}\ngot\n  {found:#?}\nfor\n{text}"
        );
    }
}

/// 100 000 nested `[` (the YAML parser's cost grows with the square of the nesting) are one
/// problem naming the file and the document, found before parsing.
#[test]
fn deeply_nested_documents_are_rejected_naming_the_document() {
    let deep = format!(
        "apiVersion: vigil.dev/v1alpha1\nkind: SLO\nmetadata: {{name: s}}\nspec: {}\n",
        "[".repeat(100_000)
    );
    assert_eq!(
        problems(&deep),
        vec!["m.yaml: document 2 nests collections more than 100 levels deep (line 11); Vigil manifests nest a few levels"]
    );
}

/// A list over its CRD bound is one problem naming the object, the list and the bound, as the
/// API server would reject it.
#[test]
fn lists_over_their_bound_name_object_field_and_bound() {
    let rules: String = (0..65)
        .map(|i| format!("    - name: Crash{i}\n      crashRate: {{}}\n"))
        .collect();
    assert_eq!(
        problems(&policy(&rules)),
        ["m.yaml: AlertPolicy/retail/p: spec.rules: at most 64 rules, got 65"]
    );
}

/// Objects of other API groups (Secrets, Deployments) are skipped, not rejected.
#[test]
fn foreign_objects_are_skipped() {
    let mut loaded = Loaded::default();
    let mut problems = Vec::new();
    let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: retail}\nstringData: {token: x}\n";
    load_text(Path::new("m.yaml"), text, &mut loaded, &mut problems);
    assert!(problems.is_empty());
    assert_eq!(loaded.skipped, ["Secret/retail/s"]);
}

/// A Secret reference that could reach another tenant's Secret or another file (`..`, `/`,
/// upper case in a name) is rejected by `check` naming the object and the field, for the
/// receivers of an `AlertPolicy` and the exporters of a `MonitoredApp`.
#[test]
fn secret_refs_that_leave_their_folder_are_rejected() {
    let receivers = |secret: &str| {
        format!(
            "{}  audiences: [{{audience: engineering, receivers: [{{name: pd, pagerDuty: {{routingKeySecretRef: {secret}}}}}]}}]\n",
            policy("    - name: Crash\n      crashRate: {}\n")
        )
    };
    let app = |secret: &str| {
        format!("apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {{name: m, namespace: retail}}\nspec:\n  selector: {{matchLabels: {{a: b}}}}\n  exporters: {{loki: {{url: \"http://loki:3100\", bearerTokenSecretRef: {secret}}}}}\n")
    };
    let pd = "m.yaml: AlertPolicy/retail/p: spec.audiences[0].receivers[0].pagerDuty.routingKeySecretRef";
    let loki = "m.yaml: MonitoredApp/retail/m: spec.exporters.loki.bearerTokenSecretRef";
    let cases = [
        (
            receivers("{name: \"..\", key: \"tenant-b/pd/routing-key\"}"),
            format!("{pd}."),
        ),
        (
            receivers("{name: \"../tenant-b/pd\", key: routing-key}"),
            format!("{pd}.name"),
        ),
        (receivers("{name: pd, key: \"..\"}"), format!("{pd}.key")),
        (
            receivers("{name: PD, key: routing-key}"),
            format!("{pd}.name"),
        ),
        (app("{name: \"a/b\", key: token}"), format!("{loki}.name")),
        (
            app("{name: loki, key: \"../../etc/passwd\"}"),
            format!("{loki}.key"),
        ),
    ];
    for (text, expected) in cases {
        let found = problems(&text);
        assert!(
            !found.is_empty() && found.iter().all(|p| p.starts_with(&expected)),
            "expected problems starting with\n  {expected}\ngot\n  {found:#?}\nfor\n{text}"
        );
    }
    assert_eq!(
        problems(&receivers("{name: pd.team-a, key: routing_key.txt}")),
        Vec::<String>::new()
    );
}

/// Objects read from a cluster whose CRDs predate the name and key patterns are still checked:
/// the cross-object checks reject an escaping Secret reference, naming the field.
#[test]
fn secret_refs_from_the_cluster_are_checked() {
    let mut app: vigil_crds::MonitoredApp = serde_yaml::from_str(
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {name: m, namespace: retail}\nspec:\n  selector: {matchLabels: {a: b}}\n  exporters: {loki: {url: \"http://loki:3100\"}}\n",
    )
    .unwrap();
    if let Some(loki) = app.spec.exporters.loki.as_mut() {
        loki.bearer_token_secret_ref = Some(vigil_crds::SecretKeyRef {
            name: "loki".into(),
            key: "../../other/token".into(),
        });
    }
    let inventory = crate::render::Inventory {
        apps: vec![app],
        ..Default::default()
    };
    let found: Vec<String> = super::check_references(&inventory)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("MonitoredApp/retail/m: spec.exporters.loki.bearerTokenSecretRef.key: \"../../other/token\" is not a valid Secret key"),
        "{found:#?}"
    );
}

/// The CRD schema's patterns and the checks behind rendered paths agree on what a Secret name
/// and key are.
#[test]
fn secret_ref_patterns_match_the_path_checks() {
    let name = regex::Regex::new(vigil_crds::SecretKeyRef::NAME_PATTERN).unwrap();
    let key = regex::Regex::new(vigil_crds::SecretKeyRef::KEY_PATTERN).unwrap();
    let samples = [
        "a",
        "pd",
        "team.a",
        "a-b",
        "a..b",
        "-a",
        "a-",
        ".a",
        "..",
        ".",
        "..a",
        "a/b",
        "A",
        "routing_key",
        "x.txt",
        "a.-b",
        "0",
        "",
        "a b",
        "é",
    ];
    for sample in samples {
        let as_name = vigil_crds::SecretKeyRef {
            name: sample.into(),
            key: "k".into(),
        };
        let as_key = vigil_crds::SecretKeyRef {
            name: "n".into(),
            key: sample.into(),
        };
        assert_eq!(
            name.is_match(sample),
            as_name.problems().is_empty(),
            "name {sample:?}"
        );
        assert_eq!(
            key.is_match(sample),
            as_key.problems().is_empty(),
            "key {sample:?}"
        );
    }
}
