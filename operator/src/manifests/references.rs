//! Checks that span objects or need more than the schema: `appRef` and `apps` targets, receiver
//! and rule names, escalation steps, selectors, regexes and scrape timing.

use std::collections::BTreeSet;

use kube::ResourceExt;
use vigil_crds::alert_policy::AlertPolicy;
use vigil_crds::common::{GeneratedObjects, HasGeneratedObjects};
use vigil_crds::Audience;

use super::{Loaded, Problem};
use crate::render::alertmanager::destinations::{undelivered_alerts, Undelivered};
use crate::render::outputs::{label_key_problem, label_value_problem};
use crate::render::{alerts, expressions, namespace_of, slo};

/// Every cross-object problem in what was loaded.
pub fn check(loaded: &Loaded) -> Vec<Problem> {
    check_with(loaded, true)
}

/// The checks of [`check`]; with `across_objects` false, those that need another object
/// (`appRef` and `apps` targets) are skipped and only checks within each object run.
pub fn check_with(loaded: &Loaded, across_objects: bool) -> Vec<Problem> {
    let inv = &loaded.inventory;
    let mut out = Vec::new();
    let mut report = |kind: &str, ns: &str, name: &str, field: String, message: String| {
        let object = format!("{kind}/{ns}/{name}");
        let file = loaded.origins.get(&object).cloned().unwrap_or_default();
        out.push(Problem {
            file,
            object: Some(object),
            field: Some(field),
            message,
        });
    };
    let app_exists = |ns: &str, name: &str| !across_objects || inv.app(ns, name).is_some();

    for (kind, ns, name, extras) in generated_objects(inv) {
        for (field, message) in generated_objects_problems(extras) {
            report(
                kind,
                &ns,
                &name,
                format!("spec.generatedObjects.{field}"),
                message,
            );
        }
    }

    for app in &inv.apps {
        let (ns, name) = (namespace_of(app), app.name_any());
        let selector = &app.spec.selector;
        let empty_labels = selector.match_labels.as_ref().is_none_or(|m| m.is_empty());
        let empty_exprs = selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty());
        if empty_labels && empty_exprs {
            report("MonitoredApp", &ns, &name, "spec.selector".into(),
                "an empty selector would select every pod in the namespace; set matchLabels or matchExpressions".into());
        }
        if let Some(metrics) = &app.spec.metrics {
            if metrics.timeout.as_secs_f64() > metrics.interval.as_secs_f64() {
                report(
                    "MonitoredApp",
                    &ns,
                    &name,
                    "spec.metrics.timeout".into(),
                    format!(
                        "timeout {} is longer than the scrape interval {}",
                        metrics.timeout, metrics.interval
                    ),
                );
            }
            let error_regex = metrics
                .requests
                .as_ref()
                .and_then(|r| r.error_regex.as_ref());
            if let Some(Err(e)) = error_regex.map(|re| regex::Regex::new(re)) {
                report(
                    "MonitoredApp",
                    &ns,
                    &name,
                    "spec.metrics.requests.errorRegex".into(),
                    format!("invalid regular expression: {}", regex_error(&e)),
                );
            }
        }
        for (field, message) in secret_ref_problems(&app.spec) {
            report("MonitoredApp", &ns, &name, format!("spec.{field}"), message);
        }
        for (field, message) in exporter_signal_problems(&app.spec.exporters) {
            report(
                "MonitoredApp",
                &ns,
                &name,
                format!("spec.exporters.{field}"),
                message,
            );
        }
        for (i, pattern) in app.spec.redaction.patterns.iter().enumerate() {
            if let Err(e) = regex::Regex::new(&pattern.regex) {
                report(
                    "MonitoredApp",
                    &ns,
                    &name,
                    format!("spec.redaction.patterns[{i}].regex"),
                    format!("invalid regular expression: {}", regex_error(&e)),
                );
            }
        }
    }

    for policy in &inv.policies {
        let (ns, name) = (namespace_of(policy), policy.name_any());
        if !app_exists(&ns, &policy.spec.app_ref.name) {
            report(
                "AlertPolicy",
                &ns,
                &name,
                "spec.appRef.name".into(),
                missing_app(&ns, &policy.spec.app_ref.name),
            );
        }
        for (field, message) in policy_problems(policy) {
            report("AlertPolicy", &ns, &name, field, message);
        }
        for (field, message) in secret_ref_problems(&policy.spec) {
            report("AlertPolicy", &ns, &name, format!("spec.{field}"), message);
        }
        let queries = policy_query_problems(policy);
        let queries_parse = queries.is_empty();
        for (field, message) in queries {
            report("AlertPolicy", &ns, &name, field, message);
        }
        if let Some(app) = inv.app(&ns, &policy.spec.app_ref.name) {
            if !app.spec.serves_requests() {
                for (i, rule) in policy.spec.rules.iter().enumerate() {
                    let unnamed = match (&rule.error_rate, &rule.latency) {
                        (Some(r), _) if r.metric.is_none() => Some("errorRate.metric"),
                        (_, Some(r)) if r.histogram.is_none() => Some("latency.histogram"),
                        _ => None,
                    };
                    if let Some(field) = unnamed {
                        report(
                            "AlertPolicy",
                            &ns,
                            &name,
                            format!("spec.rules[{i}].{field}"),
                            serves_no_requests(&policy.spec.app_ref.name),
                        );
                    }
                }
            }
        }
        // What the renderer builds around valid user queries must parse too.
        let app = queries_parse
            .then(|| inv.app(&ns, &policy.spec.app_ref.name))
            .flatten();
        if let Some(app) = app {
            if let Err(bad) = expressions::check_rule_file(&alerts::alert_rules(policy, app)) {
                report(
                    "AlertPolicy",
                    &ns,
                    &name,
                    "spec.rules".into(),
                    bad.to_string(),
                );
            }
        }
    }

    for slo in &inv.slos {
        let (ns, name) = (namespace_of(slo), slo.name_any());
        if let Some(app) = inv.app(&ns, &slo.spec.app_ref.name) {
            let sli = &slo.spec.sli;
            let unnamed = match (&sli.availability, &sli.latency) {
                (Some(a), _) if a.metric.is_none() => Some("availability.metric"),
                (_, Some(l)) if l.histogram.is_none() => Some("latency.histogram"),
                _ => None,
            };
            if let (Some(field), false) = (unnamed, app.spec.serves_requests()) {
                report(
                    "SLO",
                    &ns,
                    &name,
                    format!("spec.sli.{field}"),
                    serves_no_requests(&slo.spec.app_ref.name),
                );
            }
        }
        if !app_exists(&ns, &slo.spec.app_ref.name) {
            report(
                "SLO",
                &ns,
                &name,
                "spec.appRef.name".into(),
                missing_app(&ns, &slo.spec.app_ref.name),
            );
        }
        if slo.spec.window.as_secs_f64() < 86_400.0 {
            report("SLO", &ns, &name, "spec.window".into(),
                format!("window {} is shorter than 1d; SLO windows are days or weeks, such as 28d or 30d", slo.spec.window));
        }
        for key in slo.spec.labels.keys() {
            if let Some(message) = slo_label_key_problem(key) {
                report("SLO", &ns, &name, format!("spec.labels.{key}"), message);
            }
        }
        if slo.spec.alerting.absent_for.as_secs_f64() < 60.0 {
            report(
                "SLO",
                &ns,
                &name,
                "spec.alerting.absentFor".into(),
                format!(
                    "absentFor {} is shorter than 1m; a scrape or two missing is not an absent SLI",
                    slo.spec.alerting.absent_for
                ),
            );
        }
        let queries = slo_query_problems(slo);
        let queries_parse = queries.is_empty();
        for (field, message) in queries {
            report("SLO", &ns, &name, field, message);
        }
        for (field, message) in secret_ref_problems(&slo.spec) {
            report("SLO", &ns, &name, format!("spec.{field}"), message);
        }
        let mut receivers = BTreeSet::new();
        for (j, receiver) in slo.spec.alerting.receivers.iter().enumerate() {
            if !receivers.insert(receiver.name.as_str()) {
                report(
                    "SLO",
                    &ns,
                    &name,
                    format!("spec.alerting.receivers[{j}].name"),
                    format!("receiver name {:?} is used twice", receiver.name),
                );
            }
        }
        let app = queries_parse
            .then(|| inv.app(&ns, &slo.spec.app_ref.name))
            .flatten();
        if let Some(app) = app {
            if let Err(bad) = expressions::check_rule_file(&slo::slo_rules(slo, app)) {
                report("SLO", &ns, &name, "spec.sli".into(), bad.to_string());
            }
        }
    }

    for undelivered in undelivered_alerts(inv, across_objects) {
        let Undelivered {
            kind,
            namespace,
            name,
            field,
            message,
        } = undelivered;
        report(kind, &namespace, &name, field, message);
    }

    for view in &inv.views {
        let (ns, name) = (namespace_of(view), view.name_any());
        for (i, app) in view.spec.apps.iter().enumerate() {
            if !app_exists(&ns, app) {
                report(
                    "DashboardView",
                    &ns,
                    &name,
                    format!("spec.apps[{i}]"),
                    missing_app(&ns, app),
                );
            }
        }
    }
    out
}

/// Every Secret reference (a field named `…SecretRef`) in `spec` whose name is not a Kubernetes
/// object name or whose key is not a Secret key, as `(field path, message)`. The CRD schema's
/// patterns reject these too; this check also covers objects read from a cluster whose CRDs
/// predate the patterns, so that no rendered secret path can leave its Secret's folder.
fn secret_ref_problems(spec: &impl serde::Serialize) -> Vec<(String, String)> {
    fn walk(value: &serde_json::Value, path: String, out: &mut Vec<(String, String)>) {
        let join = |key: &str| {
            if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            }
        };
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map {
                    let field = join(key);
                    if key.ends_with("SecretRef") {
                        if let Ok(secret) =
                            serde_json::from_value::<vigil_crds::SecretKeyRef>(child.clone())
                        {
                            for (part, message) in secret.problems() {
                                out.push((format!("{field}.{part}"), message));
                            }
                        }
                    } else {
                        walk(child, field, out);
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(value) = serde_json::to_value(spec) {
        walk(&value, String::new(), &mut out);
    }
    out
}

/// Signals an exporter chose that its kind cannot carry (`traces` on Loki), and signals named
/// twice, as `(field path under exporters, message)`.
fn exporter_signal_problems(
    exporters: &vigil_crds::monitored_app::ExportersSpec,
) -> Vec<(String, String)> {
    use vigil_crds::monitored_app::ExportSignal::{self, Logs, Metrics, Traces};
    let mut out = Vec::new();
    let mut check =
        |field: String, kind: &str, carried: &[ExportSignal], chosen: &[ExportSignal]| {
            let mut seen = BTreeSet::new();
            for (i, signal) in chosen.iter().enumerate() {
                if !carried.contains(signal) {
                    out.push((
                        format!("{field}.signals[{i}]"),
                        format!(
                            "{kind} does not carry {}; choose among {}",
                            signal.as_str(),
                            carried
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                } else if !seen.insert(*signal) {
                    out.push((
                        format!("{field}.signals[{i}]"),
                        format!("{} is listed twice", signal.as_str()),
                    ));
                }
            }
        };
    let levels = std::iter::once((
        String::new(),
        &exporters.otlp,
        &exporters.prometheus_remote_write,
        &exporters.loki,
        &exporters.splunk_hec,
    ))
    .chain(exporters.named.iter().enumerate().map(|(i, n)| {
        (
            format!("named[{i}]."),
            &n.otlp,
            &n.prometheus_remote_write,
            &n.loki,
            &n.splunk_hec,
        )
    }));
    for (prefix, otlp, remote_write, loki, splunk) in levels {
        if let Some(o) = otlp {
            check(
                format!("{prefix}otlp"),
                "otlp",
                &[Traces, Metrics, Logs],
                &o.signals,
            );
        }
        if let Some(r) = remote_write {
            check(
                format!("{prefix}prometheusRemoteWrite"),
                "prometheusRemoteWrite",
                &[Metrics],
                &r.signals,
            );
        }
        if let Some(l) = loki {
            check(format!("{prefix}loki"), "loki", &[Logs], &l.signals);
        }
        if let Some(s) = splunk {
            check(
                format!("{prefix}splunkHec"),
                "splunkHec",
                &[Logs],
                &s.signals,
            );
        }
    }
    out
}

/// Every PromQL expression, metric name and matcher list a policy's rules take from the user
/// that the PromQL parser rejects, as `(field path, message)`.
fn policy_query_problems(policy: &AlertPolicy) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, rule) in policy.spec.rules.iter().enumerate() {
        let mut check = |field: &str, expr: String| {
            if let Some(message) = expressions::parse_error(&expr) {
                out.push((format!("spec.rules[{i}].{field}"), message));
            }
        };
        if let Some(r) = &rule.promql {
            check("promql.expr", r.expr.as_str().to_owned());
        }
        if let Some(r) = &rule.anomaly {
            check("anomaly.query", r.query.as_str().to_owned());
        }
        if let Some(r) = &rule.forecast {
            check("forecast.query", r.query.as_str().to_owned());
        }
        if let Some(r) = &rule.error_rate {
            if let Some(metric) = &r.metric {
                check("errorRate.metric", metric_selector(metric));
            }
        }
        if let Some(r) = &rule.latency {
            if let Some(histogram) = &r.histogram {
                check("latency.histogram", metric_selector(histogram));
            }
        }
    }
    out
}

/// The same for an objective's SLI: its queries (with `{{.window}}` read as a range), metric
/// names and extra matchers.
fn slo_query_problems(slo: &vigil_crds::Slo) -> Vec<(String, String)> {
    let sli = &slo.spec.sli;
    let mut out = Vec::new();
    let mut check = |field: &str, expr: String| {
        if let Some(message) = expressions::parse_error(&expr) {
            out.push((format!("spec.sli.{field}"), message));
        }
    };
    if let Some(s) = &sli.good_total {
        check("goodTotal.good", s.good.as_str().to_owned());
        check("goodTotal.total", s.total.as_str().to_owned());
    }
    if let Some(s) = &sli.error_total {
        check("errorTotal.errors", s.errors.as_str().to_owned());
        check("errorTotal.total", s.total.as_str().to_owned());
    }
    if let Some(s) = &sli.availability {
        if let Some(metric) = &s.metric {
            check("availability.metric", metric_selector(metric));
        }
        if let Some(m) = &s.matchers {
            check("availability.matchers", format!("x{{{m}}}"));
        }
    }
    if let Some(s) = &sli.latency {
        if let Some(histogram) = &s.histogram {
            check("latency.histogram", metric_selector(histogram));
        }
        if let Some(m) = &s.matchers {
            check("latency.matchers", format!("x{{{m}}}"));
        }
    }
    out
}

/// A metric name as a selector, so that anything but a plain name fails to parse.
fn metric_selector(metric: &str) -> String {
    format!("{metric}{{x=\"\"}}")
}

/// Why a request preset cannot apply to an app that declares it serves no requests.
fn serves_no_requests(app: &str) -> String {
    format!(
        "MonitoredApp {app:?} serves no HTTP requests (spec.metrics.requests.preset: none); name the metric here"
    )
}

fn missing_app(ns: &str, name: &str) -> String {
    format!("no MonitoredApp {name:?} in namespace {ns:?}; create it or fix the name")
}

/// A forecast's seasonality that its lookback cannot learn: a period needs two of itself. (A
/// known event whose end is not after its start is caught by the CRD's CEL rule, which the
/// loader runs like the API server.)
fn seasonality_problems(
    i: usize,
    rule: &vigil_crds::alert_policy::AlertRule,
) -> Option<(String, String)> {
    let f = rule.forecast.as_ref()?;
    let period = f.seasonality.periods_seconds().iter().max().copied()?;
    if f.lookback.as_secs_f64() >= 2.0 * period as f64 {
        return None;
    }
    let seasonality = serde_json::to_value(f.seasonality)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    Some((
        format!("spec.rules[{i}].forecast.lookback"),
        format!(
            "rule {}: lookback {} is too short to learn {seasonality} seasonality: it needs at least {} (two periods)",
            rule.name,
            f.lookback,
            vigil_crds::Duration::from_secs(2 * period)
        ),
    ))
}

/// Problems inside one policy: duplicate names, audiences without receivers, escalation steps.
fn policy_problems(policy: &AlertPolicy) -> Vec<(String, String)> {
    let spec = &policy.spec;
    let mut out = Vec::new();
    let mut rule_names = BTreeSet::new();
    let configured: BTreeSet<Audience> = spec.audiences.iter().map(|a| a.audience).collect();
    for (i, rule) in spec.rules.iter().enumerate() {
        if !rule_names.insert(rule.name.as_str()) {
            out.push((
                format!("spec.rules[{i}].name"),
                format!("rule name {:?} is used twice", rule.name),
            ));
        }
        if let Err(n) = rule.kind() {
            out.push((format!("spec.rules[{i}]"),
                format!("a rule sets exactly one of crashRate, errorRate, latency, targetDown, anomaly, forecast, promql; this one sets {n}")));
        }
        out.extend(seasonality_problems(i, rule));
        for (j, audience) in rule.audiences.iter().enumerate() {
            if !configured.is_empty() && !configured.contains(audience) {
                out.push((format!("spec.rules[{i}].audiences[{j}]"),
                    format!("audience {audience} has no receivers: add it to spec.audiences or remove it here")));
            }
        }
    }
    let mut seen_audiences = BTreeSet::new();
    let mut receivers = BTreeSet::new();
    for (i, route) in spec.audiences.iter().enumerate() {
        if !seen_audiences.insert(route.audience) {
            out.push((
                format!("spec.audiences[{i}].audience"),
                format!(
                    "audience {} is listed twice; merge its receivers into one entry",
                    route.audience
                ),
            ));
        }
        for (j, receiver) in route.receivers.iter().enumerate() {
            if !receivers.insert(receiver.name.as_str()) {
                out.push((
                    format!("spec.audiences[{i}].receivers[{j}].name"),
                    format!(
                        "receiver name {:?} is used twice in this policy",
                        receiver.name
                    ),
                ));
            }
        }
    }
    let mut previous = 0.0;
    for (i, step) in spec.escalation.iter().enumerate() {
        if !receivers.contains(step.receiver.as_str()) {
            out.push((
                format!("spec.escalation[{i}].receiver"),
                format!("no receiver named {:?} under spec.audiences", step.receiver),
            ));
        }
        if step.after.as_secs_f64() <= previous {
            out.push((
                format!("spec.escalation[{i}].after"),
                "escalation steps must come later than the step before".to_owned(),
            ));
        }
        previous = step.after.as_secs_f64();
    }
    out
}

/// What is wrong with `key` as a user label of an SLO's series and alerts: it must be a
/// Prometheus label name and not one Vigil sets.
/// Every loaded resource's `spec.generatedObjects`, with its kind, namespace and name.
fn generated_objects(
    inv: &crate::render::Inventory,
) -> impl Iterator<Item = (&'static str, String, String, &GeneratedObjects)> {
    fn each<'a, K: ResourceExt + HasGeneratedObjects>(
        kind: &'static str,
        items: &'a [K],
    ) -> impl Iterator<Item = (&'static str, String, String, &'a GeneratedObjects)> {
        items
            .iter()
            .map(move |o| (kind, namespace_of(o), o.name_any(), o.generated_objects()))
    }
    each("MonitoredApp", &inv.apps)
        .chain(each("AlertPolicy", &inv.policies))
        .chain(each("SLO", &inv.slos))
        .chain(each("DashboardView", &inv.views))
}

/// Label and annotation keys that are not Kubernetes keys and label values that are not label
/// values: the API server would refuse every object generated with them.
fn generated_objects_problems(extras: &GeneratedObjects) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (key, value) in &extras.labels {
        if key == "app.kubernetes.io/managed-by" || key == crate::render::OWNER_LABEL {
            out.push((
                format!("labels.{key}"),
                format!(
                    "{key:?} is set by Vigil on every generated object (pruning selects on it)"
                ),
            ));
        } else if let Some(message) = label_key_problem(key).or_else(|| label_value_problem(value))
        {
            out.push((format!("labels.{key}"), message));
        }
    }
    for key in extras.annotations.keys() {
        if let Some(message) = label_key_problem(key) {
            out.push((
                format!("annotations.{key}"),
                message.replace("label key", "annotation key"),
            ));
        }
    }
    out
}

fn slo_label_key_problem(key: &str) -> Option<String> {
    let name_like = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && key.len() <= 128;
    if !name_like || key.starts_with("__") {
        return Some(format!(
            "{key:?} is not a Prometheus label name (letters, digits and _, not starting with a digit or __, at most 128 characters)"
        ));
    }
    let reserved = ["namespace", "app", "slo", "severity", "audience"].contains(&key)
        || key.starts_with("vigil_")
        || key.starts_with("sloth_");
    reserved.then(|| {
        format!("{key:?} is set by Vigil on every SLO series and alert; choose another name")
    })
}

/// The last line of a regex error: what is wrong, without the pattern repeated.
fn regex_error(e: &regex::Error) -> String {
    e.to_string()
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned()
}
