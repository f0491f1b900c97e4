//! Delivery settings of the generated objects: extra labels and annotations per object kind
//! (`PodMonitor`, `PrometheusRule`, `AlertmanagerConfig`, `GrafanaDashboard`) so the monitoring
//! stack discovers them (kube-prometheus-stack selects rules and monitors on a `release`
//! label), the `GrafanaDashboard` instance selector and folder, and the `severity` of SLO
//! alerts. The renderers build objects without them; [`Outputs::decorate`] is applied to every
//! object on its way out, by `render` and by the controllers alike.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::slo::SloSeverities;
use super::OWNER_LABEL;

/// Extra metadata for every object of one kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectExtras {
    /// Labels added to `metadata.labels`; Vigil's own (`app.kubernetes.io/managed-by`,
    /// `vigil.dev/owner`) are never replaced, pruning relies on them.
    pub labels: BTreeMap<String, String>,
    /// Annotations added to `metadata.annotations`; the renderer's own win on a clash.
    pub annotations: BTreeMap<String, String>,
}

/// How generated objects are delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outputs {
    pub pod_monitor: ObjectExtras,
    pub prometheus_rule: ObjectExtras,
    pub alertmanager_config: ObjectExtras,
    pub grafana_dashboard: ObjectExtras,
    /// `spec.instanceSelector.matchLabels` of every `GrafanaDashboard`. Default
    /// `dashboards: grafana` (grafana-operator's examples).
    pub grafana_instance_selector: BTreeMap<String, String>,
    /// Grafana folder of every `GrafanaDashboard`, replacing the per-view folder; `None` keeps
    /// the renderer's (the view's client type, or `Vigil` for SLOs).
    pub grafana_folder: Option<String>,
    /// `severity` of SLO page and ticket alerts.
    pub slo_severities: SloSeverities,
}

impl Default for Outputs {
    fn default() -> Self {
        Self {
            pod_monitor: ObjectExtras::default(),
            prometheus_rule: ObjectExtras::default(),
            alertmanager_config: ObjectExtras::default(),
            grafana_dashboard: ObjectExtras::default(),
            grafana_instance_selector: BTreeMap::from([(
                "dashboards".to_owned(),
                "grafana".to_owned(),
            )]),
            grafana_folder: None,
            slo_severities: SloSeverities::default(),
        }
    }
}

impl Outputs {
    /// The extras of objects of `kind`, when that kind has any.
    fn extras(&self, kind: &str) -> Option<&ObjectExtras> {
        match kind {
            "PodMonitor" => Some(&self.pod_monitor),
            "PrometheusRule" => Some(&self.prometheus_rule),
            "AlertmanagerConfig" => Some(&self.alertmanager_config),
            "GrafanaDashboard" => Some(&self.grafana_dashboard),
            _ => None,
        }
    }

    /// Adds this kind's labels and annotations to `object` (a Kubernetes object as JSON), and
    /// for a `GrafanaDashboard` sets the instance selector and, when configured, the folder.
    /// Objects of other kinds are left as they are.
    pub fn decorate(&self, object: &mut Value) {
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let Some(extras) = self.extras(&kind) else {
            return;
        };
        let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        merge(metadata, "labels", &extras.labels, |key| {
            key == "app.kubernetes.io/managed-by" || key == OWNER_LABEL
        });
        merge(metadata, "annotations", &extras.annotations, |_| false);
        if kind == "GrafanaDashboard" {
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert(
                    "instanceSelector".into(),
                    json!({ "matchLabels": self.grafana_instance_selector }),
                );
                if let Some(folder) = &self.grafana_folder {
                    spec.insert("folder".into(), json!(folder));
                }
            }
        }
    }
}

/// Adds `extra` to the string map `metadata[field]`, keeping every key already there and never
/// writing a key `reserved` says is Vigil's.
fn merge(
    metadata: &mut serde_json::Map<String, Value>,
    field: &str,
    extra: &BTreeMap<String, String>,
    reserved: impl Fn(&str) -> bool,
) {
    if extra.is_empty() {
        return;
    }
    let map = metadata
        .entry(field)
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !map.is_object() {
        *map = Value::Object(serde_json::Map::new());
    }
    if let Some(map) = map.as_object_mut() {
        for (key, value) in extra {
            if !reserved(key) && !map.contains_key(key) {
                map.insert(key.clone(), json!(value));
            }
        }
    }
}

/// Parses `key=value` (a `--*-label` or `--*-annotation` flag) into its parts; the key must be
/// a Kubernetes label key (an optional DNS prefix and `/`, then at most 63 name characters).
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!("{text:?} is not key=value"));
    };
    if let Some(problem) = label_key_problem(key) {
        return Err(problem);
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Why `key` is not a Kubernetes label or annotation key (an optional DNS-subdomain prefix and
/// `/`, then 1 to 63 letters, digits, `-`, `_`, `.`, alphanumeric at both ends), if it is not.
pub fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = key.rsplit_once('/').map_or(("", key), |(p, n)| (p, n));
    let prefix_ok = key.rsplit_once('/').is_none()
        || (!prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            }));
    (!prefix_ok || !label_value_ok(name) || name.is_empty()).then(|| {
        format!(
            "{key:?} is not a label key (letters, digits, `-`, `_`, `.`, at most 63, with an optional DNS prefix/)"
        )
    })
}

/// Why `value` is not a Kubernetes label value (at most 63 letters, digits, `-`, `_`, `.`,
/// alphanumeric at both ends, or empty), if it is not.
pub fn label_value_problem(value: &str) -> Option<String> {
    (!label_value_ok(value)).then(|| {
        format!("{value:?} is not a label value (at most 63 letters, digits, `-`, `_`, `.`, beginning and ending with a letter or digit)")
    })
}

fn label_value_ok(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// How generated objects are delivered: extra labels and annotations per kind, the
/// `GrafanaDashboard` instance selector and folder, and the `severity` of SLO alerts.
#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs {
    /// Label added to every `PodMonitor`, as `KEY=VALUE` (such as
    /// `release=kube-prometheus-stack`); repeatable.
    #[arg(long = "pod-monitor-label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub pod_monitor_labels: Vec<(String, String)>,
    /// Annotation added to every `PodMonitor`, as `KEY=VALUE`; repeatable.
    #[arg(long = "pod-monitor-annotation", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub pod_monitor_annotations: Vec<(String, String)>,
    /// Label added to every `PrometheusRule`, as `KEY=VALUE`; repeatable.
    #[arg(long = "prometheus-rule-label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub prometheus_rule_labels: Vec<(String, String)>,
    /// Annotation added to every `PrometheusRule`, as `KEY=VALUE`; repeatable.
    #[arg(long = "prometheus-rule-annotation", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub prometheus_rule_annotations: Vec<(String, String)>,
    /// Label added to every `AlertmanagerConfig`, as `KEY=VALUE`; repeatable.
    #[arg(long = "alertmanager-config-label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub alertmanager_config_labels: Vec<(String, String)>,
    /// Annotation added to every `AlertmanagerConfig`, as `KEY=VALUE`; repeatable.
    #[arg(long = "alertmanager-config-annotation", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub alertmanager_config_annotations: Vec<(String, String)>,
    /// Label added to every `GrafanaDashboard`, as `KEY=VALUE`; repeatable.
    #[arg(long = "grafana-dashboard-label", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub grafana_dashboard_labels: Vec<(String, String)>,
    /// Annotation added to every `GrafanaDashboard`, as `KEY=VALUE`; repeatable.
    #[arg(long = "grafana-dashboard-annotation", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub grafana_dashboard_annotations: Vec<(String, String)>,
    /// A `matchLabels` entry of every `GrafanaDashboard`'s `instanceSelector`, as `KEY=VALUE`;
    /// repeatable. Default `dashboards=grafana`.
    #[arg(long = "grafana-instance-selector", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub grafana_instance_selector: Vec<(String, String)>,
    /// Grafana folder of every `GrafanaDashboard`; default: the view's client type, `Vigil`
    /// for SLO dashboards.
    #[arg(long, value_name = "FOLDER", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub grafana_folder: Option<String>,
    /// `severity` label of SLO page alerts (fast burns); `vigil_slo_alert="page"` keeps the
    /// class.
    #[arg(long, value_name = "SEVERITY", default_value = "critical", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub slo_page_severity: String,
    /// `severity` label of SLO ticket alerts (slow burns, absent SLI, budget forecast);
    /// `vigil_slo_alert="ticket"` keeps the class.
    #[arg(long, value_name = "SEVERITY", default_value = "warning", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub slo_ticket_severity: String,
}

impl OutputArgs {
    /// The delivery settings these flags describe.
    pub fn outputs(self) -> Outputs {
        let extras =
            |labels: Vec<(String, String)>, annotations: Vec<(String, String)>| ObjectExtras {
                labels: labels.into_iter().collect(),
                annotations: annotations.into_iter().collect(),
            };
        let defaults = Outputs::default();
        Outputs {
            pod_monitor: extras(self.pod_monitor_labels, self.pod_monitor_annotations),
            prometheus_rule: extras(
                self.prometheus_rule_labels,
                self.prometheus_rule_annotations,
            ),
            alertmanager_config: extras(
                self.alertmanager_config_labels,
                self.alertmanager_config_annotations,
            ),
            grafana_dashboard: extras(
                self.grafana_dashboard_labels,
                self.grafana_dashboard_annotations,
            ),
            grafana_instance_selector: if self.grafana_instance_selector.is_empty() {
                defaults.grafana_instance_selector
            } else {
                self.grafana_instance_selector.into_iter().collect()
            },
            grafana_folder: self.grafana_folder,
            slo_severities: SloSeverities {
                page: self.slo_page_severity,
                ticket: self.slo_ticket_severity,
            },
        }
    }
}

/// Parses `--prometheus-retention` (a Prometheus duration such as `15d`).
pub fn parse_retention(text: &str) -> Result<std::time::Duration, String> {
    vigil_crds::Duration::parse(text)
        .map(|d| std::time::Duration::from_secs_f64(d.as_secs_f64()))
        .map_err(|e| format!("{text:?} is not a Prometheus duration such as 15d: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, reason = "tests fail loudly")]

    use super::*;
    use crate::render::MANAGER;

    fn outputs() -> Outputs {
        let extras = |k: &str| ObjectExtras {
            labels: BTreeMap::from([
                ("release".to_owned(), k.to_owned()),
                (OWNER_LABEL.to_owned(), "hijack".to_owned()),
            ]),
            annotations: BTreeMap::from([("team".to_owned(), "sre".to_owned())]),
        };
        Outputs {
            pod_monitor: extras("pm"),
            prometheus_rule: extras("pr"),
            alertmanager_config: extras("amc"),
            grafana_dashboard: extras("gd"),
            grafana_instance_selector: BTreeMap::from([("grafana".to_owned(), "main".to_owned())]),
            grafana_folder: Some("SLOs".to_owned()),
            slo_severities: SloSeverities::default(),
        }
    }

    fn object(kind: &str) -> Value {
        json!({
            "kind": kind,
            "metadata": { "name": "x", "labels": { OWNER_LABEL: "slo.x", "app.kubernetes.io/managed-by": MANAGER } },
            "spec": { "folder": "Vigil", "instanceSelector": { "matchLabels": { "dashboards": "grafana" } } },
        })
    }

    /// Each kind gets its own labels and annotations; Vigil's owner label, which pruning
    /// selects on, is never replaced.
    #[test]
    fn each_kind_gets_its_own_labels() {
        let o = outputs();
        for (kind, release) in [
            ("PodMonitor", "pm"),
            ("PrometheusRule", "pr"),
            ("AlertmanagerConfig", "amc"),
            ("GrafanaDashboard", "gd"),
        ] {
            let mut object = object(kind);
            o.decorate(&mut object);
            assert_eq!(object["metadata"]["labels"]["release"], release, "{kind}");
            assert_eq!(object["metadata"]["labels"][OWNER_LABEL], "slo.x", "{kind}");
            assert_eq!(object["metadata"]["annotations"]["team"], "sre", "{kind}");
        }
        let mut config_map = object("ConfigMap");
        o.decorate(&mut config_map);
        assert_eq!(config_map, object("ConfigMap"));
    }

    /// The GrafanaDashboard's instance selector and folder come from the settings.
    #[test]
    fn grafana_dashboard_selector_and_folder() {
        let mut object = object("GrafanaDashboard");
        outputs().decorate(&mut object);
        assert_eq!(
            object["spec"]["instanceSelector"],
            json!({ "matchLabels": { "grafana": "main" } })
        );
        assert_eq!(object["spec"]["folder"], "SLOs");
        let mut default = self::object("GrafanaDashboard");
        Outputs::default().decorate(&mut default);
        assert_eq!(default, self::object("GrafanaDashboard"));
    }

    /// Flag values are `key=value` with a label key; anything else is refused with the text.
    #[test]
    fn key_value_flags() {
        assert_eq!(
            parse_key_value("release=kube-prometheus-stack"),
            Ok(("release".into(), "kube-prometheus-stack".into()))
        );
        assert_eq!(
            parse_key_value("example.com/team=a=b"),
            Ok(("example.com/team".into(), "a=b".into()))
        );
        assert!(parse_key_value("release").is_err());
        assert!(parse_key_value("-bad=1").is_err());
        assert!(parse_key_value("Example.com/team=a").is_err());
        assert!(parse_key_value("/team=a").is_err());
        assert_eq!(label_value_problem("kube-prometheus-stack"), None);
        assert_eq!(label_value_problem(""), None);
        assert!(label_value_problem("a b").is_some());
        assert!(label_value_problem(&"x".repeat(64)).is_some());
    }
}
