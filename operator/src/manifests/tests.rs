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

/// A policy with `rules` and an engineering audience that receives them, so that every alert
/// reaches a receiver.
fn policy(rules: &str) -> String {
    format!(
        "{}  audiences: [{{audience: engineering, receivers: [{{name: oncall, email: {{to: oncall@shop.example}}}}]}}]\n",
        bare_policy(rules)
    )
}

/// A policy with `rules` and nothing else: a case appends its own `audiences`.
fn bare_policy(rules: &str) -> String {
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
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {name: m, namespace: retail}\nspec:\n  selector: {matchLabels: {a: b}}\n  metrics: {port: 80, requests: {errorRegex: \"5(..\"}}\n".into(),
            "m.yaml: MonitoredApp/retail/m: spec.metrics.requests.errorRegex: invalid regular expression",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {name: m, namespace: retail}\nspec:\n  selector: {matchLabels: {a: b}}\n  metrics: {port: 80, requests: {counter: \"http requests\"}}\n".into(),
            "m.yaml: MonitoredApp/retail/m: spec.metrics.requests.counter: requests.counter must be a Prometheus metric name",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {name: m, namespace: retail}\nspec:\n  selector: {matchLabels: {a: b}}\n  metrics: {port: 80, requests: {preset: micrometer}}\n".into(),
            "m.yaml: MonitoredApp/retail/m: spec.metrics.requests.preset: unknown variant `micrometer`",
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
            policy("    - name: Up\n      crashRate: {}\n    - name: Bad\n      promql: {expr: \"sum(rate(errors_total[5m])) > bogus bogus\"}\n"),
            "m.yaml: AlertPolicy/retail/p: spec.rules[1].promql.expr: unexpected identifier \"bogus\" at character 37",
        ),
        (
            policy("    - name: Load\n      anomaly: {query: \"up\", knownEvents: [{name: deadline, start: \"2027-02-30\"}]}\n"),
            "m.yaml: AlertPolicy/retail/p: spec.rules[0].anomaly.knownEvents[0].start: invalid date \"2027-02-30\": expected an RFC 3339 date",
        ),
        (
            policy("    - name: Load\n      forecast: {query: \"up\", horizon: 1d, capacity: 10, knownEvents: [{name: deadline, start: \"2027-04-30\", end: \"2027-04-30T01:00:00+02:00\"}]}\n"),
            "m.yaml: AlertPolicy/retail/p: spec.rules[0].forecast.knownEvents[0].end: knownEvents: end must be later than start",
        ),
        (
            policy("    - name: Load\n      forecast: {query: \"up\", horizon: 1d, capacity: 10, seasonality: dailyAndWeekly, lookback: 10d}\n"),
            "m.yaml: AlertPolicy/retail/p: spec.rules[0].forecast.lookback: rule Load: lookback 10d is too short to learn dailyAndWeekly seasonality: it needs at least 2w (two periods)",
        ),
        (
            policy("    - name: Bad\n      anomaly: {query: \"rate(x[5m]) +\"}\n"),
            "m.yaml: AlertPolicy/retail/p: spec.rules[0].anomaly.query: unexpected end of input",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: SLO\nmetadata: {name: s, namespace: retail}\nspec:\n  appRef: {name: shop}\n  sli: {availability: {matchers: \"route=/checkout\"}}\n  objective: 99\n  alerting: {receivers: [{name: sre, email: {to: sre@shop.example}}]}\n".into(),
            "m.yaml: SLO/retail/s: spec.sli.availability.matchers: ",
        ),
        (
            bare_policy("    - name: Slow\n      severity: warning\n      latency: {quantile: 0.99, thresholdSeconds: 1}\n  audiences: [{audience: support, severities: [critical], receivers: [{name: desk, email: {to: desk@shop.example}}]}]\n"),
            "m.yaml: AlertPolicy/retail/p: spec.rules[0]: alert Slow (severity warning) for audience support reaches no receiver: the receivers of audience support only take severities [critical] (spec.audiences[0].severities)",
        ),
        (
            bare_policy("    - name: Crash\n      crashRate: {}\n"),
            "m.yaml: AlertPolicy/retail/p: spec.rules[0]: alert Crash (severity warning) for audience engineering reaches no receiver: the policy has no receivers for audience engineering",
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
            "apiVersion: vigil.dev/v1alpha1\nkind: AlertPolicy\nmetadata: {name: p, namespace: retail}\nspec:\n  appRef: {name: shopp}\n  rules: [{name: Crash, crashRate: {}}]\n  audiences: [{audience: engineering, receivers: [{name: oncall, email: {to: oncall@shop.example}}]}]\n".into(),
            "m.yaml: AlertPolicy/retail/p: spec.appRef.name: no MonitoredApp \"shopp\" in namespace \"retail\"",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: AlertPolicy\nmetadata: {name: p, namespace: other}\nspec:\n  appRef: {name: shop}\n  rules: [{name: Crash, crashRate: {}}]\n  audiences: [{audience: engineering, receivers: [{name: oncall, email: {to: oncall@shop.example}}]}]\n".into(),
            "m.yaml: AlertPolicy/other/p: spec.appRef.name: no MonitoredApp \"shop\" in namespace \"other\"",
        ),
        (
            format!("{}  escalation: [{{after: 10m, receiver: nobody}}]\n", policy("    - name: Crash\n      crashRate: {}\n")),
            "m.yaml: AlertPolicy/retail/p: spec.escalation[0].receiver: no receiver named \"nobody\"",
        ),
        (
            format!("{}  audiences: [{{audience: support, receivers: [{{name: a, email: {{to: a@x}}, slack: {{channel: c, apiUrlSecretRef: {{name: s, key: k}}}}}}]}}]\n", bare_policy("    - name: Crash\n      crashRate: {}\n")),
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
            "apiVersion: vigil.dev/v1alpha1\nkind: SLO\nmetadata: {name: s, namespace: retail}\nspec:\n  appRef: {name: shop}\n  sli: {availability: {}}\n  objective: 99\n  labels: {severity: high}\n  alerting: {receivers: [{name: desk, email: {to: desk@shop.example}}]}\n".into(),
            "m.yaml: SLO/retail/s: spec.labels.severity: \"severity\" is set by Vigil on every SLO series and alert",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: SLO\nmetadata: {name: s, namespace: retail}\nspec:\n  appRef: {name: shop}\n  sli: {availability: {}}\n  objective: 99\n  labels: {team-name: payments}\n  alerting: {receivers: [{name: desk, email: {to: desk@shop.example}}]}\n".into(),
            "m.yaml: SLO/retail/s: spec.labels.team-name: \"team-name\" is not a Prometheus label name",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: SLO\nmetadata: {name: s, namespace: retail}\nspec:\n  appRef: {name: shop}\n  sli: {availability: {}}\n  objective: 99\n  groupBy: [app]\n  alerting: {receivers: [{name: desk, email: {to: desk@shop.example}}]}\n".into(),
            "m.yaml: SLO/retail/s: spec.groupBy: groupBy holds Prometheus label names other than namespace, app and slo",
        ),
        (
            "apiVersion: vigil.dev/v1alpha1\nkind: SLO\nmetadata: {name: s, namespace: retail}\nspec:\n  appRef: {name: shop}\n  sli: {availability: {}}\n  objective: 99\n  alerting: {absentFor: 30s, receivers: [{name: desk, email: {to: desk@shop.example}}]}\n".into(),
            "m.yaml: SLO/retail/s: spec.alerting.absentFor: absentFor 30s is shorter than 1m",
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
            bare_policy("    - name: Crash\n      crashRate: {}\n")
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

/// Exporter access settings are checked before anything renders: a header with both or
/// neither value, a client certificate without its key, a named exporter of no or two kinds,
/// a name used twice, a signal the kind cannot carry, a basic-auth password given literally
/// (unknown field: secrets only by reference) and an invalid Secret name in a new reference
/// each give one problem naming the object and the field.
#[test]
fn exporter_access_mistakes_name_the_field() {
    let app = |exporters: &str| {
        format!("apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {{name: m, namespace: retail}}\nspec:\n  selector: {{matchLabels: {{a: b}}}}\n  exporters: {exporters}\n")
    };
    let loki = "url: \"http://loki:3100/loki/api/v1/push\"";
    let cases = [
        (
            app(&format!("{{loki: {{{loki}, headers: [{{name: X-Org, value: a, valueSecretRef: {{name: s, key: k}}}}]}}}}")),
            "spec.exporters.loki.headers[0]: a header sets exactly one of value and valueSecretRef",
        ),
        (
            app(&format!("{{loki: {{{loki}, clientCertSecretRef: {{name: mtls, key: tls.crt}}}}}}")),
            "spec.exporters.loki: clientCertSecretRef and clientKeySecretRef go together",
        ),
        (
            app("{named: [{name: a}]}"),
            "spec.exporters.named[0]: a named exporter sets exactly one of otlp, prometheusRemoteWrite, loki and splunkHec",
        ),
        (
            app(&format!("{{named: [{{name: a, loki: {{{loki}}}}}, {{name: a, loki: {{{loki}}}}}]}}")),
            "spec.exporters.named: named exporter names must be unique",
        ),
        (
            app(&format!("{{named: [{{name: a, loki: {{{loki}, signals: [traces]}}}}]}}")),
            "spec.exporters.named[0].loki.signals[0]: loki does not carry traces; choose among logs",
        ),
        (
            app(&format!("{{loki: {{{loki}, basicAuth: {{username: u, password: hunter2}}}}}}")),
            "spec.exporters.loki.basicAuth.password: unknown field `password`",
        ),
        (
            app(&format!("{{loki: {{{loki}, basicAuth: {{username: u, passwordSecretRef: {{name: Bad_Name, key: k}}}}}}}}")),
            "spec.exporters.loki.basicAuth.passwordSecretRef.name:",
        ),
    ];
    for (manifest, expected) in cases {
        let got = problems(&manifest);
        assert!(
            got.iter().any(|p| p.contains(expected)),
            "expected {expected:?} in {got:#?}"
        );
        // No problem ever quotes a secret's value.
        assert!(got.iter().all(|p| !p.contains("hunter2")), "{got:#?}");
    }
    // A valid combination of every new field has no problem.
    let valid = app(&format!(
        "{{prometheusRemoteWrite: {{url: \"https://mimir:8080/api/v1/push\", basicAuth: {{username: \"123\", passwordSecretRef: {{name: gc, key: token}}}}, headers: [{{name: X-Org, value: shop}}, {{name: X-Key, valueSecretRef: {{name: gw, key: key}}}}], clientCertSecretRef: {{name: mtls, key: tls.crt}}, clientKeySecretRef: {{name: mtls, key: tls.key}}, signals: [metrics]}}, named: [{{name: central, otlp: {{endpoint: \"https://otel:4317\", signals: [traces, logs]}}}}, {{name: team, loki: {{{loki}}}}}]}}"
    ));
    assert_eq!(problems(&valid), Vec::<String>::new());
}

/// An objective on an app that no `AlertPolicy` covers, with no receivers of its own, would
/// page nobody: `check` refuses it naming the objective and `spec.alerting.receivers`.
#[test]
fn objective_without_policy_or_receivers_is_refused() {
    let slo = "apiVersion: vigil.dev/v1alpha1\nkind: SLO\nmetadata: {name: s, namespace: retail}\nspec:\n  appRef: {name: shop}\n  sli: {availability: {}}\n  objective: 99.9\n";
    let found = problems(slo);
    assert!(!found.is_empty());
    for line in &found {
        assert!(
            line.starts_with("m.yaml: SLO/retail/s: spec.alerting.receivers: alert SLOErrorBudgetBurn (severity ")
                || line.starts_with("m.yaml: SLO/retail/s: spec.alerting.receivers: alert SLOMetricsAbsent (severity ")
                || line.starts_with("m.yaml: SLO/retail/s: spec.alerting.receivers: alert SLOErrorBudgetExhaustionForecast (severity "),
            "{found:#?}"
        );
        assert!(
            line.contains("no AlertPolicy routes alerts of app \"shop\""),
            "{line}"
        );
    }
    let audiences: Vec<&str> = [
        "page) for audience engineering",
        "ticket) for audience support",
    ]
    .into_iter()
    .filter(|a| found.iter().any(|l| l.contains(a)))
    .collect();
    assert_eq!(audiences.len(), 2, "{found:#?}");
}

/// An app that serves no HTTP requests (`requests: {preset: none}`) has no request metrics for
/// an `errorRate` or `latency` rule or an `availability` SLI to default to: each must name its
/// own, and `check` says so naming the field; one that names it passes.
#[test]
fn request_presets_on_an_app_without_requests_are_refused() {
    let app = "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {name: db, namespace: retail}\nspec:\n  selector: {matchLabels: {app: db}}\n  metrics: {port: 9187, requests: {preset: none}}\n---\n";
    let on_db = |rules: &str| policy(rules).replace("appRef: {name: shop}", "appRef: {name: db}");
    let found = problems(&format!(
        "{app}{}",
        on_db("    - name: DbErrors\n      errorRate: {thresholdPercent: 1}\n")
    ));
    assert_eq!(
        found,
        ["m.yaml: AlertPolicy/retail/p: spec.rules[0].errorRate.metric: MonitoredApp \"db\" serves no HTTP requests (spec.metrics.requests.preset: none); name the metric here"]
    );
    let named = problems(&format!(
        "{app}{}",
        on_db("    - name: DbErrors\n      errorRate: {thresholdPercent: 1, metric: pg_errors_total, statusLabel: kind, errorRegex: fatal}\n")
    ));
    assert_eq!(named, Vec::<String>::new());
    let slo = "apiVersion: vigil.dev/v1alpha1\nkind: SLO\nmetadata: {name: s, namespace: retail}\nspec:\n  appRef: {name: db}\n  sli: {availability: {}}\n  objective: 99\n  alerting: {receivers: [{name: desk, email: {to: desk@shop.example}}]}\n";
    assert_eq!(
        problems(&format!("{app}{slo}")),
        ["m.yaml: SLO/retail/s: spec.sli.availability.metric: MonitoredApp \"db\" serves no HTTP requests (spec.metrics.requests.preset: none); name the metric here"]
    );
}
