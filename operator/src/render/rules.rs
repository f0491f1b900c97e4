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

/// Label naming the cluster on every generated alert (the operator's `--cluster-name`).
pub const CLUSTER_LABEL: &str = "cluster";

impl RuleFile {
    /// Adds `cluster="<cluster>"` to every alerting rule (not to recording rules: the series
    /// they read carry the agents' own `cluster` label already), so an alert from one of many
    /// clusters sharing an Alertmanager says where it comes from. No-op without a cluster.
    pub fn with_cluster(mut self, cluster: Option<&str>) -> RuleFile {
        let Some(cluster) = cluster.filter(|c| !c.is_empty()) else {
            return self;
        };
        for rule in self.groups.iter_mut().flat_map(|g| g.rules.iter_mut()) {
            if let Rule::Alerting(alert) = rule {
                alert
                    .labels
                    .insert(CLUSTER_LABEL.to_owned(), cluster.to_owned());
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every alerting rule gets the cluster label, recording rules keep theirs, and without a
    /// cluster nothing changes.
    #[test]
    fn alerts_carry_the_cluster_label() {
        let file = RuleFile {
            groups: vec![RuleGroup {
                name: "g".into(),
                interval: None,
                rules: vec![
                    Rule::Recording(RecordingRule {
                        record: "r".into(),
                        expr: "1".into(),
                        labels: BTreeMap::new(),
                    }),
                    Rule::Alerting(AlertingRule {
                        alert: "A".into(),
                        expr: "1".into(),
                        for_: None,
                        labels: BTreeMap::from([("severity".into(), "page".into())]),
                        annotations: BTreeMap::new(),
                    }),
                ],
            }],
        };
        assert_eq!(file.clone().with_cluster(None), file);
        let labelled = file.with_cluster(Some("eu-prod-1"));
        let Rule::Alerting(alert) = &labelled.groups[0].rules[1] else {
            panic!("alert expected");
        };
        assert_eq!(alert.labels["cluster"], "eu-prod-1");
        assert_eq!(alert.labels["severity"], "page");
        let Rule::Recording(record) = &labelled.groups[0].rules[0] else {
            panic!("recording rule expected");
        };
        assert!(record.labels.is_empty());
    }
}
