//! Scrape configuration renderer: how Prometheus finds and scrapes each `MonitoredApp`'s pods,
//! as plain Prometheus `scrape_configs` entries (for `prometheus.yml` or an additional-scrape-
//! configs Secret) and as prometheus-operator `PodMonitor` objects.
//!
//! Each app gets two jobs:
//! - `vigil/<ns>/<app>` scrapes the application's own metrics endpoint (only when the app sets
//!   `metrics`). Pods are discovered with the `pod` role in the app's namespace and kept when
//!   they match the app's label selector, translated to relabel rules with the Kubernetes
//!   semantics (a `NotIn` or `DoesNotExist` also matches pods without the label). The port is
//!   picked by name or number among the ports the pod declares (Prometheus' pod discovery only
//!   sees declared ports). With `honorAnnotations`, `prometheus.io/scrape: "false"` drops the
//!   pod, `prometheus.io/port` / `prometheus.io/path` override port and path, and
//!   `prometheus.io/scheme: https` switches the scheme; an annotated port need not be declared: every target of the pod is rewritten to `<pod IP>:<port>`, and
//!   Prometheus merges the identical targets into one.
//! - `vigil-agent/<ns>/<app>` and `vigil-crashes/<ns>/<app>` scrape the injected agent's admin
//!   port (container `vigil-agent`, port `vigil-admin`): its own series, and the crash series
//!   from their own page. The pod controls what it serves there, so these jobs do not honour
//!   its labels: `namespace`, `app`, `pod` and `job` come from discovery and win, and the
//!   scraped copies Prometheus would keep as `exported_*` are dropped — a pod cannot publish
//!   series for another namespace or app. The target sets no `version`, so the one the agent
//!   sends (with `fingerprint`, `type`, …) is kept: the agent knows the running version better
//!   than discovery does.
//!
//! Every target carries `namespace`, `app` (the `MonitoredApp`'s name) and `pod`, and the
//! application's targets `version`: the labels every Vigil rule and dashboard joins on.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::ResourceExt;
use serde_json::{json, Map, Value};
use vigil_crds::monitored_app::{MetricsPort, ReleaseSource};
use vigil_crds::MonitoredApp;

use super::inject::{ADMIN_PORT_NAME, AGENT_CONTAINER};
use super::{child_meta, namespace_of, Inventory};

/// Default scrape interval of the agent job when the app does not set `metrics`.
const AGENT_SCRAPE_INTERVAL: &str = "30s";
/// Scrape interval of the agent's crash page (`/metrics/crashes`): a crash reaches Prometheus
/// within this, so crash alerts fire in seconds. The page is a few lines per crash group.
pub const CRASH_SCRAPE_INTERVAL: &str = "2s";
/// Path of the agent's crash series alone.
pub const CRASHES_PATH: &str = "/metrics/crashes";
/// The crash series, which only the crash job stores (the agent's `/metrics` repeats them for
/// pull setups without Vigil's scrape configs; storing both would count every crash twice).
const CRASH_SERIES: &str = "vigil_crash.*";
/// The scraped copies (`exported_<name>`) of the identity labels the agent jobs set from the
/// target: without `honor_labels`, Prometheus keeps what a pod sent for these under that name.
const EXPORTED_IDENTITY_LABELS: &str =
    "exported_(namespace|app|pod|job|instance|container|endpoint)";
/// Temporary label marking targets whose port is the one to scrape.
const PORT_MATCH_LABEL: &str = "__tmp_vigil_port_match";

/// One relabel rule, rendered either for `prometheus.yml` or for a prometheus-operator
/// `relabelings` list (the same rule in camelCase).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relabel {
    /// `keep`, `drop` or `replace`.
    pub action: &'static str,
    /// Labels whose values, joined by `separator`, are matched.
    pub source_labels: Vec<String>,
    /// Separator of the joined source values (Prometheus' default `;` when `None`).
    pub separator: Option<String>,
    /// Fully anchored RE2 regex (Prometheus' default `(.*)` when `None`).
    pub regex: Option<String>,
    /// Label written by `replace`.
    pub target_label: Option<String>,
    /// Value written by `replace` (Prometheus' default `$1` when `None`).
    pub replacement: Option<String>,
}

impl Relabel {
    fn keep(source: &[&str], regex: impl Into<String>) -> Self {
        Self::filter("keep", source, regex)
    }

    fn drop(source: &[&str], regex: impl Into<String>) -> Self {
        Self::filter("drop", source, regex)
    }

    fn filter(action: &'static str, source: &[&str], regex: impl Into<String>) -> Self {
        Relabel {
            action,
            source_labels: source.iter().map(|s| (*s).to_owned()).collect(),
            separator: None,
            regex: Some(regex.into()),
            target_label: None,
            replacement: None,
        }
    }

    /// Copies the (joined) source values matching `regex` into `target` as `replacement`.
    fn replace(
        source: &[&str],
        regex: Option<&str>,
        target: &str,
        replacement: Option<&str>,
    ) -> Self {
        Relabel {
            action: "replace",
            source_labels: source.iter().map(|s| (*s).to_owned()).collect(),
            separator: None,
            regex: regex.map(str::to_owned),
            target_label: Some(target.to_owned()),
            replacement: replacement.map(str::to_owned),
        }
    }

    /// Sets `target` to a fixed value on every target.
    fn set(target: &str, value: &str) -> Self {
        // `$` starts a capture reference in a replacement; `$$` is a literal dollar.
        Self::replace(&[], None, target, Some(&value.replace('$', "$$")))
    }

    /// The rule as a `relabel_configs` entry of `prometheus.yml`.
    pub fn to_prometheus(&self) -> Value {
        self.render([
            "source_labels",
            "separator",
            "regex",
            "target_label",
            "replacement",
            "action",
        ])
    }

    /// The rule as a prometheus-operator `relabelings` entry.
    pub fn to_operator(&self) -> Value {
        self.render([
            "sourceLabels",
            "separator",
            "regex",
            "targetLabel",
            "replacement",
            "action",
        ])
    }

    fn render(&self, keys: [&str; 6]) -> Value {
        let mut m = Map::new();
        if !self.source_labels.is_empty() {
            m.insert(keys[0].into(), json!(self.source_labels));
        }
        let optional = [
            &self.separator,
            &self.regex,
            &self.target_label,
            &self.replacement,
        ];
        for (key, value) in keys[1..5].iter().zip(optional) {
            if let Some(v) = value {
                m.insert((*key).into(), json!(v));
            }
        }
        m.insert(keys[5].into(), json!(self.action));
        Value::Object(m)
    }
}

/// A Kubernetes label name as Prometheus' discovery writes it in meta labels: every character
/// outside `[a-zA-Z0-9_]` becomes `_`.
pub fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Escapes a literal for use inside an RE2 regex.
pub fn regex_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn pod_label(name: &str) -> String {
    format!("__meta_kubernetes_pod_label_{}", sanitize_label_name(name))
}

fn pod_label_present(name: &str) -> String {
    format!(
        "__meta_kubernetes_pod_labelpresent_{}",
        sanitize_label_name(name)
    )
}

fn alternatives(values: &[String]) -> String {
    let escaped: Vec<String> = values.iter().map(|v| regex_escape(v)).collect();
    format!("({})", escaped.join("|"))
}

/// Relabel rules that keep exactly the pods a label selector matches, with Kubernetes
/// semantics: `matchLabels` and `In` need the label present with one of the values; `NotIn`
/// drops pods that have the label with one of the values (pods without it stay); `Exists` and
/// `DoesNotExist` test presence. An empty selector keeps every pod, as in Kubernetes.
pub fn selector_relabels(selector: &LabelSelector) -> Vec<Relabel> {
    let mut rules = Vec::new();
    let value_in = |rules: &mut Vec<Relabel>, key: &str, values: &[String]| {
        if values.iter().any(String::is_empty) {
            // An empty value is also what discovery reports for a missing label.
            rules.push(Relabel::keep(&[&pod_label_present(key)], "true"));
        }
        rules.push(Relabel::keep(&[&pod_label(key)], alternatives(values)));
    };
    for (key, value) in selector.match_labels.iter().flatten() {
        value_in(&mut rules, key, std::slice::from_ref(value));
    }
    for LabelSelectorRequirement {
        key,
        operator,
        values,
    } in selector.match_expressions.iter().flatten()
    {
        let values = values.as_deref().unwrap_or_default();
        match operator.as_str() {
            "In" => value_in(&mut rules, key, values),
            "NotIn" if !values.is_empty() => {
                let sources = [pod_label_present(key), pod_label(key)];
                let mut rule = Relabel::drop(
                    &[&sources[0], &sources[1]],
                    format!("true;{}", alternatives(values)),
                );
                rule.separator = Some(";".into());
                rules.push(rule);
            }
            "Exists" => rules.push(Relabel::keep(&[&pod_label_present(key)], "true")),
            "DoesNotExist" => rules.push(Relabel::drop(&[&pod_label_present(key)], "true")),
            // `NotIn` with no values excludes nothing; the API server rejects other operators.
            _ => {}
        }
    }
    rules
}

/// Drops pods that are not running (pending pods have no address, finished ones no server).
fn running_pods_only() -> Relabel {
    Relabel::drop(
        &["__meta_kubernetes_pod_phase"],
        "Pending|Succeeded|Failed|Unknown",
    )
}

/// `version` from the release label, or from the image tag of the target's container.
fn version_relabel(app: &MonitoredApp) -> Relabel {
    let release = &app.spec.release;
    match release.source {
        ReleaseSource::Label => {
            Relabel::replace(&[&pod_label(&release.label)], None, "version", None)
        }
        ReleaseSource::ImageTag => {
            let container = release
                .container
                .as_deref()
                .map(regex_escape)
                .unwrap_or(".*".into());
            Relabel::replace(
                &[
                    "__meta_kubernetes_pod_container_name",
                    "__meta_kubernetes_pod_container_image",
                ],
                Some(&format!("{container};[^@]*:([^:/@]+)(@.*)?")),
                "version",
                Some("$1"),
            )
        }
    }
}

/// The labels every Vigil target carries (`namespace`, `pod`, `app`, `version`).
fn identity_relabels(app: &MonitoredApp) -> Vec<Relabel> {
    vec![
        Relabel::replace(&["__meta_kubernetes_namespace"], None, "namespace", None),
        Relabel::replace(&["__meta_kubernetes_pod_name"], None, "pod", None),
        Relabel::set("app", &app.name_any()),
        version_relabel(app),
    ]
}

fn port_relabel(port: &MetricsPort) -> Relabel {
    match port {
        MetricsPort::Name(name) => Relabel::keep(
            &["__meta_kubernetes_pod_container_port_name"],
            regex_escape(name),
        ),
        MetricsPort::Number(n) => Relabel::keep(
            &["__meta_kubernetes_pod_container_port_number"],
            n.to_string(),
        ),
    }
}

const ANNOTATION_SCRAPE: &str = "__meta_kubernetes_pod_annotation_prometheus_io_scrape";
const ANNOTATION_PORT: &str = "__meta_kubernetes_pod_annotation_prometheus_io_port";
const ANNOTATION_PORT_PRESENT: &str = "__meta_kubernetes_pod_annotationpresent_prometheus_io_port";
const ANNOTATION_PATH: &str = "__meta_kubernetes_pod_annotation_prometheus_io_path";
const ANNOTATION_SCHEME: &str = "__meta_kubernetes_pod_annotation_prometheus_io_scheme";

/// `prometheus.io/path` and `prometheus.io/scheme` (`http` or `https`) of an annotated pod.
fn path_and_scheme_relabels() -> [Relabel; 2] {
    [
        Relabel::replace(&[ANNOTATION_PATH], Some("(/.*)"), "__metrics_path__", None),
        Relabel::replace(&[ANNOTATION_SCHEME], Some("(https?)"), "__scheme__", None),
    ]
}

/// Relabel rules of the application job, in order.
fn app_relabels(app: &MonitoredApp) -> Vec<Relabel> {
    let mut rules = vec![running_pods_only()];
    rules.extend(selector_relabels(&app.spec.selector));
    let Some(metrics) = &app.spec.metrics else {
        return rules;
    };
    if metrics.honor_annotations {
        rules.push(Relabel::drop(&[ANNOTATION_SCRAPE], "false"));
        // Mark the target of the configured port, or every target of a pod with an annotated
        // port; the annotated ones are then rewritten to the same address and merged.
        let mut matched = port_relabel(&metrics.port);
        matched.action = "replace";
        matched.target_label = Some(PORT_MATCH_LABEL.into());
        matched.replacement = Some("true".into());
        rules.push(matched);
        rules.push(Relabel::replace(
            &[ANNOTATION_PORT_PRESENT],
            Some("true"),
            PORT_MATCH_LABEL,
            Some("true"),
        ));
        rules.push(Relabel::keep(&[PORT_MATCH_LABEL], "true"));
        // IPv4 pod IPs have no colon; IPv6 ones are bracketed.
        rules.push(Relabel::replace(
            &["__meta_kubernetes_pod_ip", ANNOTATION_PORT],
            Some(r"([^:]+);(\d+)"),
            "__address__",
            Some("$1:$2"),
        ));
        rules.push(Relabel::replace(
            &["__meta_kubernetes_pod_ip", ANNOTATION_PORT],
            Some(r"(.+:.+);(\d+)"),
            "__address__",
            Some("[$1]:$2"),
        ));
        rules.extend(path_and_scheme_relabels());
    } else {
        rules.push(port_relabel(&metrics.port));
    }
    rules.extend(identity_relabels(app));
    rules
}

/// Relabel rules of the agent job, in order.
fn agent_relabels(app: &MonitoredApp) -> Vec<Relabel> {
    let mut rules = vec![running_pods_only()];
    rules.extend(selector_relabels(&app.spec.selector));
    let mut admin = Relabel::keep(
        &[
            "__meta_kubernetes_pod_container_name",
            "__meta_kubernetes_pod_container_port_name",
        ],
        format!(
            "{};{}",
            regex_escape(AGENT_CONTAINER),
            regex_escape(ADMIN_PORT_NAME)
        ),
    );
    admin.separator = Some(";".into());
    rules.push(admin);
    rules.extend(agent_identity_relabels(app));
    rules
}

/// The identity labels of the agent's targets: `namespace`, `pod` and `app`, and no `version`
/// (the agent's own `version` label is kept).
fn agent_identity_relabels(app: &MonitoredApp) -> Vec<Relabel> {
    let mut rules = identity_relabels(app);
    rules.retain(|r| r.target_label.as_deref() != Some("version"));
    rules
}

/// The metric relabel rule dropping the scraped copies of the identity labels of an agent job
/// (the same in prometheus.yml and in a PodMonitor).
fn drop_exported_identity() -> Value {
    json!({ "action": "labeldrop", "regex": EXPORTED_IDENTITY_LABELS })
}

fn pod_discovery(namespace: &str) -> Value {
    json!([{ "role": "pod", "namespaces": { "names": [namespace] } }])
}

fn relabel_list(rules: &[Relabel], operator: bool) -> Value {
    Value::Array(
        rules
            .iter()
            .map(|r| {
                if operator {
                    r.to_operator()
                } else {
                    r.to_prometheus()
                }
            })
            .collect(),
    )
}

/// The job scraping the operator's own `/metrics` in `namespace`: its release, restart and
/// acknowledgement series carry the `namespace` and `app` of the apps they describe, so the
/// job honours them (`honor_labels`); without it Prometheus would file every release under the
/// operator's namespace and no alert could say which deploy preceded a crash. Only the chart's
/// operator pods (component label and the `metrics` port) in that namespace are scraped.
pub fn operator_job(namespace: &str) -> Value {
    let mut keep = Relabel::keep(
        &[
            "__meta_kubernetes_pod_label_app_kubernetes_io_component",
            "__meta_kubernetes_pod_label_app_kubernetes_io_part_of",
            "__meta_kubernetes_pod_container_port_name",
        ],
        "operator;vigil;metrics",
    );
    keep.separator = Some(";".into());
    json!({
        "job_name": "vigil-operator",
        "honor_labels": true,
        "scrape_interval": "15s",
        "metrics_path": "/metrics",
        "kubernetes_sd_configs": pod_discovery(namespace),
        "relabel_configs": relabel_list(&[keep], false),
    })
}

/// The job scraping the analytics engine's `/metrics` (`vigil-operator analytics`, the chart's
/// `analytics.enabled`) in `namespace`: its baseline, anomaly and forecast series carry the
/// `namespace` and `app` of the apps whose rules they serve, so the job honours them, as the
/// operator's does. Only the chart's analytics pods (component label and the `metrics` port)
/// are scraped; without them the job has no targets.
pub fn analytics_job(namespace: &str) -> Value {
    let mut keep = Relabel::keep(
        &[
            "__meta_kubernetes_pod_label_app_kubernetes_io_component",
            "__meta_kubernetes_pod_label_app_kubernetes_io_part_of",
            "__meta_kubernetes_pod_container_port_name",
        ],
        "analytics;vigil;metrics",
    );
    keep.separator = Some(";".into());
    json!({
        "job_name": "vigil-analytics",
        "honor_labels": true,
        "scrape_interval": "30s",
        "metrics_path": "/metrics",
        "kubernetes_sd_configs": pod_discovery(namespace),
        "relabel_configs": relabel_list(&[keep], false),
    })
}

/// The job name of the scrape config of an app's own metrics; the agent gives remote-written
/// series the same `job` label, so pushed and scraped series look alike.
pub fn app_job_name(namespace: &str, app: &str) -> String {
    format!("vigil/{namespace}/{app}")
}

/// The `scrape_configs` entries for every app of the inventory, sorted by namespace and name:
/// the application job (when the app sets `metrics`), the agent job, then the crash job.
pub fn scrape_configs(inv: &Inventory) -> Vec<Value> {
    let mut apps: Vec<&MonitoredApp> = inv.apps.iter().collect();
    apps.sort_by_key(|a| (namespace_of(*a), a.name_any()));
    let mut out = Vec::new();
    for app in apps {
        let (ns, name) = (namespace_of(app), app.name_any());
        let agent_interval = app
            .spec
            .metrics
            .as_ref()
            .map_or(AGENT_SCRAPE_INTERVAL.to_owned(), |m| m.interval.to_string());
        if let Some(metrics) = &app.spec.metrics {
            out.push(json!({
                "job_name": app_job_name(&ns, &name),
                "honor_labels": false,
                "scrape_interval": metrics.interval.as_str(),
                "scrape_timeout": metrics.timeout.as_str(),
                "metrics_path": metrics.path,
                "kubernetes_sd_configs": pod_discovery(&ns),
                "relabel_configs": relabel_list(&app_relabels(app), false),
            }));
        }
        // Both agent jobs: Vigil's target labels win over what the pod publishes (no
        // `honor_labels`, scraped copies dropped): a pod cannot claim another namespace or app.
        out.push(json!({
            "job_name": format!("vigil-agent/{ns}/{name}"),
            "honor_labels": false,
            "scrape_interval": agent_interval,
            "metrics_path": "/metrics",
            "kubernetes_sd_configs": pod_discovery(&ns),
            "relabel_configs": relabel_list(&agent_relabels(app), false),
            "metric_relabel_configs": [
                {
                    "action": "drop",
                    "source_labels": ["__name__"],
                    "regex": CRASH_SERIES,
                },
                drop_exported_identity(),
            ],
        }));
        // The crash series every couple of seconds, from their own small page.
        out.push(json!({
            "job_name": format!("vigil-crashes/{ns}/{name}"),
            "honor_labels": false,
            "scrape_interval": CRASH_SCRAPE_INTERVAL,
            "scrape_timeout": CRASH_SCRAPE_INTERVAL,
            "metrics_path": CRASHES_PATH,
            "kubernetes_sd_configs": pod_discovery(&ns),
            "relabel_configs": relabel_list(&agent_relabels(app), false),
            "metric_relabel_configs": [drop_exported_identity()],
        }));
    }
    out
}

/// prometheus-operator `PodMonitor`s for one app: `vigil-<app>` for the application's metrics
/// (when it sets `metrics`), `vigil-agent-<app>` for the agent's own series and
/// `vigil-crashes-<app>` for its crash series, every couple of seconds.
///
/// prometheus-operator adds `namespace`, `pod`, `container` and `job` itself and filters on
/// the named port; Vigil adds `app` (and, for the application, `version`), a numeric port
/// filter, and the `prometheus.io/scrape`, `prometheus.io/path` and `prometheus.io/scheme`
/// annotations. An annotated `prometheus.io/port` is not honoured here: the operator's own
/// port filter runs first. No endpoint honours the pod's labels.
pub fn pod_monitors(app: &MonitoredApp) -> Vec<Value> {
    let (ns, name) = (namespace_of(app), app.name_any());
    let identity = [Relabel::set("app", &name), version_relabel(app)];
    let monitor = |object_name: String, endpoint: Value| {
        json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": child_meta(app, object_name),
            "spec": {
                "selector": app.spec.selector,
                "namespaceSelector": { "matchNames": [ns] },
                "podMetricsEndpoints": [endpoint],
            },
        })
    };
    let mut out = Vec::new();
    if let Some(metrics) = &app.spec.metrics {
        let mut rules = Vec::new();
        if metrics.honor_annotations {
            rules.push(Relabel::drop(&[ANNOTATION_SCRAPE], "false"));
            rules.extend(path_and_scheme_relabels());
        }
        let mut endpoint: BTreeMap<&str, Value> = BTreeMap::from([
            ("path", json!(metrics.path)),
            ("interval", json!(metrics.interval.as_str())),
            ("scrapeTimeout", json!(metrics.timeout.as_str())),
        ]);
        match &metrics.port {
            MetricsPort::Name(port) => {
                endpoint.insert("port", json!(port));
            }
            // A numeric port is filtered by relabelling, which every operator version accepts.
            number @ MetricsPort::Number(_) => rules.push(port_relabel(number)),
        }
        rules.extend(identity.iter().cloned());
        endpoint.insert("relabelings", relabel_list(&rules, true));
        out.push(monitor(format!("vigil-{name}"), json!(endpoint)));
    }
    let agent_interval = app
        .spec
        .metrics
        .as_ref()
        .map_or(AGENT_SCRAPE_INTERVAL.to_owned(), |m| m.interval.to_string());
    // The agent's endpoints: the pod's labels are not honoured and their scraped copies are
    // dropped; the agent's own `version` is kept (the target sets none).
    let agent_identity = [Relabel::set("app", &name)];
    out.push(monitor(
        format!("vigil-agent-{name}"),
        json!({
            "port": ADMIN_PORT_NAME,
            "path": "/metrics",
            "interval": agent_interval,
            "honorLabels": false,
            "relabelings": relabel_list(&agent_identity, true),
            "metricRelabelings": [
                {
                    "action": "drop",
                    "sourceLabels": ["__name__"],
                    "regex": CRASH_SERIES,
                },
                drop_exported_identity(),
            ],
        }),
    ));
    out.push(monitor(
        format!("vigil-crashes-{name}"),
        json!({
            "port": ADMIN_PORT_NAME,
            "path": CRASHES_PATH,
            "interval": CRASH_SCRAPE_INTERVAL,
            "scrapeTimeout": CRASH_SCRAPE_INTERVAL,
            "honorLabels": false,
            "relabelings": relabel_list(&agent_identity, true),
            "metricRelabelings": [drop_exported_identity()],
        }),
    ));
    out
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn app(yaml: &str) -> MonitoredApp {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn selector(yaml: &str) -> LabelSelector {
        serde_yaml::from_str(yaml).unwrap()
    }

    const CHECKOUT: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: checkout, namespace: shop}
spec:
  selector:
    matchLabels: {app.kubernetes.io/name: checkout}
    matchExpressions:
    - {key: tier, operator: In, values: [web, api]}
    - {key: track, operator: NotIn, values: [canary]}
    - {key: vigil.dev/opt-out, operator: DoesNotExist}
  metrics: {port: http-metrics, path: /internal/metrics, interval: 15s, timeout: 5s}
"#;

    const PORTAL: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: portal, namespace: gov}
spec:
  selector: {matchExpressions: [{key: app, operator: Exists}]}
  metrics: {port: 8080, honorAnnotations: false}
  release: {source: imageTag, container: web}
"#;

    const NO_METRICS: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: batch, namespace: gov}
spec:
  selector: {matchLabels: {app: batch}}
"#;

    fn inventory() -> Inventory {
        Inventory {
            apps: vec![app(PORTAL), app(NO_METRICS), app(CHECKOUT)],
            ..Inventory::default()
        }
    }

    /// Applies relabel rules the way Prometheus does for keep/drop/replace (fully anchored RE2
    /// regexes, `$n` expansion, an empty result deleting the label); `None` means dropped.
    fn relabel(rules: &[Relabel], labels: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        let mut l: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        for r in rules {
            let sep = r.separator.clone().unwrap_or(";".into());
            let value: Vec<String> = r
                .source_labels
                .iter()
                .map(|s| l.get(s).cloned().unwrap_or_default())
                .collect();
            let value = value.join(&sep);
            let pattern = r.regex.clone().unwrap_or("(.*)".into());
            let re = regex::Regex::new(&format!("^(?s:{pattern})$")).unwrap();
            let captures = re.captures(&value);
            match (r.action, captures) {
                ("keep", None) | ("drop", Some(_)) => return None,
                ("replace", Some(caps)) => {
                    let template = r.replacement.clone().unwrap_or("$1".into());
                    let mut out = String::new();
                    caps.expand(
                        &template.replace("$1", "${1}").replace("$2", "${2}"),
                        &mut out,
                    );
                    let target = r.target_label.clone().unwrap();
                    if out.is_empty() {
                        l.remove(&target);
                    } else {
                        l.insert(target, out);
                    }
                }
                _ => {}
            }
        }
        Some(l)
    }

    fn pod_labels(labels: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, v) in labels {
            out.push((pod_label(k), (*v).to_owned()));
            out.push((pod_label_present(k), "true".to_owned()));
        }
        out
    }

    fn selects(sel: &LabelSelector, labels: &[(&str, &str)]) -> bool {
        let owned = pod_labels(labels);
        let borrowed: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        relabel(&selector_relabels(sel), &borrowed).is_some()
    }

    /// Selector translation keeps exactly the pods Kubernetes would select, for every operator,
    /// including the cases where a missing label matters (`NotIn`, `DoesNotExist`, `In ""`).
    #[test]
    fn selector_relabels_follow_kubernetes_semantics() {
        let sel = selector(
            r#"
matchLabels: {app.kubernetes.io/name: checkout}
matchExpressions:
- {key: tier, operator: In, values: [web, api]}
- {key: track, operator: NotIn, values: [canary]}
- {key: legacy, operator: DoesNotExist}
- {key: team, operator: Exists}
"#,
        );
        let base = [
            ("app.kubernetes.io/name", "checkout"),
            ("tier", "web"),
            ("team", "pay"),
        ];
        assert!(selects(&sel, &base));
        assert!(selects(
            &sel,
            &[base[0], ("tier", "api"), base[2], ("track", "stable")]
        ));
        assert!(!selects(
            &sel,
            &[("app.kubernetes.io/name", "checkout-v2"), base[1], base[2]]
        ));
        assert!(!selects(&sel, &[base[0], ("tier", "db"), base[2]]));
        assert!(!selects(&sel, &[base[0], base[2]]), "In needs the label");
        assert!(!selects(
            &sel,
            &[base[0], base[1], base[2], ("track", "canary")]
        ));
        assert!(!selects(&sel, &[base[0], base[1], base[2], ("legacy", "")]));
        assert!(
            !selects(&sel, &[base[0], base[1]]),
            "Exists needs the label"
        );

        let empty_value = selector("matchExpressions: [{key: flag, operator: In, values: ['']}]");
        assert!(selects(&empty_value, &[("flag", "")]));
        assert!(
            !selects(&empty_value, &[]),
            "a missing label is not an empty one"
        );

        assert!(
            selector_relabels(&LabelSelector::default()).is_empty(),
            "empty selects all"
        );
    }

    /// Label names are sanitised as Prometheus' discovery does, and selector values are matched
    /// literally (a dot is not a wildcard).
    #[test]
    fn selector_names_and_values_are_escaped() {
        assert_eq!(
            sanitize_label_name("app.kubernetes.io/name"),
            "app_kubernetes_io_name"
        );
        let rules = selector_relabels(&selector("matchLabels: {version: '1.2'}"));
        assert_eq!(
            rules[0].source_labels,
            vec!["__meta_kubernetes_pod_label_version"]
        );
        assert_eq!(rules[0].regex.as_deref(), Some(r"(1\.2)"));
        assert_eq!(regex_escape("a+b(c)$"), r"a\+b\(c\)\$");
    }

    /// The application job keeps only the configured port (or, with an annotation, the
    /// annotated one), drops opted-out pods and sets namespace/app/pod/version.
    #[test]
    fn app_job_picks_port_and_sets_identity() {
        let a = app(CHECKOUT);
        let rules = app_relabels(&a);
        let pod = |extra: &[(&str, &str)]| {
            let mut l = pod_labels(&[
                ("app.kubernetes.io/name", "checkout"),
                ("tier", "api"),
                ("app.kubernetes.io/version", "17.2"),
            ]);
            l.extend([
                ("__meta_kubernetes_pod_phase".into(), "Running".into()),
                ("__meta_kubernetes_namespace".into(), "shop".into()),
                ("__meta_kubernetes_pod_name".into(), "checkout-7d9".into()),
                ("__meta_kubernetes_pod_ip".into(), "10.0.0.7".into()),
                ("__address__".into(), "10.0.0.7:8080".into()),
            ]);
            l.extend(
                extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
            l
        };
        let run = |l: Vec<(String, String)>| {
            let b: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            relabel(&rules, &b)
        };
        let named = run(pod(&[(
            "__meta_kubernetes_pod_container_port_name",
            "http-metrics",
        )]))
        .unwrap();
        assert_eq!(named["namespace"], "shop");
        assert_eq!(named["app"], "checkout");
        assert_eq!(named["pod"], "checkout-7d9");
        assert_eq!(named["version"], "17.2");
        assert_eq!(named["__address__"], "10.0.0.7:8080");
        assert!(run(pod(&[(
            "__meta_kubernetes_pod_container_port_name",
            "grpc"
        )]))
        .is_none());
        assert!(run(pod(&[
            ("__meta_kubernetes_pod_container_port_name", "http-metrics"),
            ("__meta_kubernetes_pod_phase", "Pending"),
        ]))
        .is_none());
        assert!(run(pod(&[
            ("__meta_kubernetes_pod_container_port_name", "http-metrics"),
            (ANNOTATION_SCRAPE, "false"),
        ]))
        .is_none());
        let annotated = [
            ("__meta_kubernetes_pod_container_port_name", "grpc"),
            (ANNOTATION_PORT_PRESENT, "true"),
            (ANNOTATION_PORT, "9102"),
            (ANNOTATION_PATH, "/custom"),
        ];
        let target = run(pod(&annotated)).unwrap();
        assert_eq!(target["__address__"], "10.0.0.7:9102");
        assert_eq!(target["__metrics_path__"], "/custom");
        assert!(!target.contains_key("__scheme__"));
        let mut https = annotated.to_vec();
        https.push((ANNOTATION_SCHEME, "https"));
        assert_eq!(run(pod(&https)).unwrap()["__scheme__"], "https");
        let mut bogus = annotated.to_vec();
        bogus.push((ANNOTATION_SCHEME, "ftp"));
        assert!(!run(pod(&bogus)).unwrap().contains_key("__scheme__"));
        let mut v6 = annotated.to_vec();
        v6.push(("__meta_kubernetes_pod_ip", "fd00::7"));
        assert_eq!(run(pod(&v6)).unwrap()["__address__"], "[fd00::7]:9102");
    }

    /// A numbered port is matched on the declared port number, annotations are ignored when
    /// `honorAnnotations` is off, and an image-tag release source reads the named container's
    /// tag.
    #[test]
    fn numbered_port_and_image_tag_version() {
        let rules = app_relabels(&app(PORTAL));
        let target = |port: &str, container: &str, extra: (&str, &str)| {
            let mut l = pod_labels(&[("app", "portal")]);
            l.extend(
                [
                    ("__meta_kubernetes_pod_phase", "Running"),
                    ("__meta_kubernetes_pod_container_port_number", port),
                    ("__meta_kubernetes_pod_container_name", container),
                    (
                        "__meta_kubernetes_pod_container_image",
                        "gov/portal:2024.4@sha256:00ff",
                    ),
                    extra,
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
            );
            let b: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            relabel(&rules, &b)
        };
        let hit = target("8080", "web", (ANNOTATION_SCRAPE, "false")).unwrap();
        assert_eq!(hit["version"], "2024.4");
        assert_eq!(hit["app"], "portal");
        assert!(target("9090", "web", (ANNOTATION_PORT_PRESENT, "true")).is_none());
        assert!(!target("8080", "sidecar", ("x", "y"))
            .unwrap()
            .contains_key("version"));
    }

    /// The agent job selects the agent's admin port only, and keeps the agent's own labels.
    #[test]
    fn agent_job_targets_the_admin_port() {
        let configs = scrape_configs(&inventory());
        let agent = configs
            .iter()
            .find(|c| c["job_name"] == "vigil-agent/shop/checkout")
            .unwrap();
        assert_eq!(agent["honor_labels"], false);
        let keep = agent["relabel_configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["regex"] == "vigil-agent;vigil-admin")
            .unwrap();
        assert_eq!(keep["action"], "keep");
    }

    /// What Prometheus stores for one series scraped from a target with `target` labels: the
    /// target's labels win unless the job honours labels (a conflicting scraped label is then
    /// kept as `exported_<name>`), labels starting `__` are internal, and the job's
    /// `metric_relabel_configs` (`drop`, `labeldrop`) run last. `None`: the series is dropped.
    fn stored(
        job: &Value,
        target: &BTreeMap<String, String>,
        series: &[(&str, &str)],
    ) -> Option<BTreeMap<String, String>> {
        let honor = job["honor_labels"].as_bool().unwrap_or(false);
        let mut out: BTreeMap<String, String> = series
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut target = target.clone();
        target.insert("job".into(), job["job_name"].as_str().unwrap().to_owned());
        for (k, v) in target.iter().filter(|(k, _)| !k.starts_with("__")) {
            match out.get(k).cloned() {
                Some(_) if honor => {}
                Some(scraped) => {
                    out.insert(format!("exported_{k}"), scraped);
                    out.insert(k.clone(), v.clone());
                }
                None => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        for rule in job["metric_relabel_configs"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let pattern = rule["regex"].as_str().unwrap_or("(.*)");
            let re = regex::Regex::new(&format!("^(?s:{pattern})$")).unwrap();
            match rule["action"].as_str().unwrap_or("replace") {
                "drop" => {
                    let value: Vec<String> = rule["source_labels"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| out.get(s.as_str().unwrap()).cloned().unwrap_or_default())
                        .collect();
                    if re.is_match(&value.join(";")) {
                        return None;
                    }
                }
                "labeldrop" => out.retain(|k, _| !re.is_match(k)),
                other => panic!("metric relabel action {other} not modelled"),
            }
        }
        Some(out)
    }

    /// A pod of namespace `shop` cannot publish agent or crash series for another namespace or
    /// app: on both agent jobs Vigil's target labels (`namespace`, `app`, `pod`, `job`) win over
    /// what the pod sends, no `exported_*` copy of a spoofed value is kept, and the labels only
    /// the agent knows (`version`, `fingerprint`) are the agent's.
    #[test]
    fn agent_series_cannot_claim_another_namespace() {
        let configs = scrape_configs(&inventory());
        let discovered = [
            ("__meta_kubernetes_namespace", "shop"),
            ("__meta_kubernetes_pod_name", "checkout-7d9f"),
            ("__meta_kubernetes_pod_phase", "Running"),
            (
                "__meta_kubernetes_pod_label_app_kubernetes_io_name",
                "checkout",
            ),
            (
                "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name",
                "true",
            ),
            ("__meta_kubernetes_pod_label_tier", "web"),
            ("__meta_kubernetes_pod_labelpresent_tier", "true"),
            (
                "__meta_kubernetes_pod_label_app_kubernetes_io_version",
                "2024.5",
            ),
            (
                "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_version",
                "true",
            ),
            ("__meta_kubernetes_pod_container_name", AGENT_CONTAINER),
            (
                "__meta_kubernetes_pod_container_image",
                "ghcr.io/vigil/agent:0.9.0",
            ),
            ("__meta_kubernetes_pod_container_port_name", ADMIN_PORT_NAME),
            ("__address__", "10.0.0.7:9464"),
        ];
        let spoofed = [
            ("namespace", "bank"),
            ("app", "payments"),
            ("pod", "payments-1"),
            ("job", "vigil-crashes/bank/payments"),
            ("version", "2024.5"),
            ("fingerprint", "f00d"),
            ("type", "panic"),
        ];
        for (job_name, name) in [
            ("vigil-crashes/shop/checkout", "vigil_crashes_total"),
            ("vigil-agent/shop/checkout", "vigil_active_users"),
            ("vigil-agent/shop/checkout", "vigil_agent_sent_events_total"),
        ] {
            let job = configs.iter().find(|c| c["job_name"] == job_name).unwrap();
            assert_eq!(job["honor_labels"], false, "{job_name}");
            let rules = agent_relabels(&app(CHECKOUT));
            assert_eq!(
                relabel_list(&rules, false),
                job["relabel_configs"],
                "{job_name}"
            );
            let target = relabel(&rules, &discovered).expect("the agent's target is kept");
            let mut series = vec![("__name__", name)];
            series.extend_from_slice(&spoofed);
            let got = stored(job, &target, &series).expect("the series is kept");
            assert_eq!(got["namespace"], "shop", "{job_name} {got:?}");
            assert_eq!(got["app"], "checkout", "{job_name} {got:?}");
            assert_eq!(got["pod"], "checkout-7d9f", "{job_name} {got:?}");
            assert_eq!(got["job"], job_name, "{job_name} {got:?}");
            assert_eq!(got["version"], "2024.5", "{job_name} {got:?}");
            assert_eq!(got["fingerprint"], "f00d", "{job_name} {got:?}");
            assert!(
                !got.keys().any(|k| k.starts_with("exported_")),
                "{job_name} keeps a spoofed copy: {got:?}"
            );
        }
        // The agent's version wins over the image tag of the agent's own container.
        let by_tag = app(&CHECKOUT.replace(
            "metrics: {port",
            "release: {source: imageTag}\n  metrics: {port",
        ));
        let job = &scrape_configs(&Inventory {
            apps: vec![by_tag.clone()],
            ..Inventory::default()
        })[2];
        let target = relabel(&agent_relabels(&by_tag), &discovered).unwrap();
        let got = stored(
            job,
            &target,
            &[("__name__", "vigil_crashes_total"), ("version", "3.1")],
        );
        assert_eq!(got.unwrap()["version"], "3.1");
    }

    /// The agent PodMonitors do not honour the pod's labels, set no `version` of their own (the
    /// agent's is kept) and drop the `exported_*` copies of Vigil's identity labels.
    #[test]
    fn agent_pod_monitors_do_not_honour_pod_labels() {
        let monitors = pod_monitors(&app(CHECKOUT));
        for agent in &monitors[1..] {
            let endpoint = &agent["spec"]["podMetricsEndpoints"][0];
            assert_eq!(endpoint["honorLabels"], false, "{endpoint}");
            let relabelings = endpoint["relabelings"].as_array().unwrap();
            assert!(
                !relabelings.iter().any(|r| r["targetLabel"] == "version"),
                "{endpoint}"
            );
            assert!(
                endpoint["metricRelabelings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["action"] == "labeldrop" && r["regex"] == EXPORTED_IDENTITY_LABELS),
                "{endpoint}"
            );
        }
    }

    /// Jobs come sorted by namespace and app, apps without `metrics` only get the agent and
    /// crash jobs, and job names are unique.
    #[test]
    fn jobs_are_sorted_and_unique() {
        let names: Vec<String> = scrape_configs(&inventory())
            .iter()
            .map(|c| c["job_name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "vigil-agent/gov/batch",
                "vigil-crashes/gov/batch",
                "vigil/gov/portal",
                "vigil-agent/gov/portal",
                "vigil-crashes/gov/portal",
                "vigil/shop/checkout",
                "vigil-agent/shop/checkout",
                "vigil-crashes/shop/checkout",
            ]
        );
    }

    /// The scrape configs as written into prometheus.yml.
    #[test]
    fn scrape_configs_snapshot() {
        insta::assert_yaml_snapshot!("scrape__scrape_configs", scrape_configs(&inventory()));
    }

    /// The PodMonitors of a named-port app and of a numbered-port app.
    #[test]
    fn pod_monitors_snapshot() {
        insta::assert_yaml_snapshot!(
            "scrape__pod_monitors_checkout",
            pod_monitors(&app(CHECKOUT))
        );
        insta::assert_yaml_snapshot!("scrape__pod_monitors_portal", pod_monitors(&app(PORTAL)));
    }

    /// PodMonitors select the app's pods in its namespace only and add the `app` label.
    #[test]
    fn pod_monitors_are_scoped_to_the_app() {
        let a = app(CHECKOUT);
        let monitors = pod_monitors(&a);
        assert_eq!(monitors.len(), 3);
        for m in &monitors {
            assert_eq!(
                m["spec"]["namespaceSelector"]["matchNames"],
                json!(["shop"])
            );
            assert_eq!(
                m["spec"]["selector"],
                serde_json::to_value(&a.spec.selector).unwrap()
            );
            let relabelings = m["spec"]["podMetricsEndpoints"][0]["relabelings"]
                .as_array()
                .unwrap();
            assert!(relabelings
                .iter()
                .any(|r| r["targetLabel"] == "app" && r["replacement"] == "checkout"));
        }
        for agent in &monitors[1..] {
            assert_eq!(
                agent["spec"]["podMetricsEndpoints"][0]["port"],
                ADMIN_PORT_NAME
            );
        }
        // The crash page every 2 s, where Vigil's labels win over the pod's.
        let crashes = &monitors[2]["spec"]["podMetricsEndpoints"][0];
        assert_eq!(crashes["path"], CRASHES_PATH);
        assert_eq!(crashes["interval"], CRASH_SCRAPE_INTERVAL);
        assert_eq!(crashes["honorLabels"], false);
        assert_eq!(pod_monitors(&app(NO_METRICS)).len(), 2);
    }

    use crate::render::promtool_tests::tool;

    /// Prometheus itself accepts the rendered jobs: `promtool check config` on a minimal
    /// prometheus.yml holding them passes (relabel actions and regexes, intervals, timeouts,
    /// paths). Debian's Prometheus is built without Kubernetes discovery and rejects
    /// `kubernetes_sd_configs` as an unknown field, so for promtool the discovery block is
    /// swapped for an empty static one; its shape is asserted right here instead.
    #[test]
    fn promtool_accepts_the_scrape_configs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prometheus.yml");
        let mut jobs = scrape_configs(&inventory());
        for job in &mut jobs {
            let ns = job["job_name"]
                .as_str()
                .unwrap()
                .split('/')
                .nth(1)
                .unwrap()
                .to_owned();
            let sd = job
                .as_object_mut()
                .unwrap()
                .remove("kubernetes_sd_configs")
                .unwrap();
            assert_eq!(
                sd,
                json!([{ "role": "pod", "namespaces": { "names": [ns] } }])
            );
            job["static_configs"] = json!([]);
        }
        let config = json!({ "global": { "scrape_interval": "30s" }, "scrape_configs": jobs });
        std::fs::write(&file, serde_yaml::to_string(&config).unwrap()).unwrap();
        let out = Command::new(tool("promtool"))
            .arg("check")
            .arg("config")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool check config failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
