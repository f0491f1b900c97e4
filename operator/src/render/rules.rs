//! Typed Prometheus rule files, shared by the alert and SLO renderers: what `promtool check
//! rules` reads and what a `PrometheusRule` object's `spec` holds.

use std::collections::BTreeMap;

use serde::Serialize;

/// A Prometheus rule file.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

/// A rule group: rules evaluated together at one interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleGroup {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    pub rules: Vec<Rule>,
}

/// A recording or alerting rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Rule {
    Recording(RecordingRule),
    Alerting(AlertingRule),
}

/// `record:` rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordingRule {
    pub record: String,
    pub expr: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `alert:` rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertingRule {
    pub alert: String,
    pub expr: String,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}
