//! Tests of the delivery check: alerts that reach only no-op receivers are found with their
//! field and reason, and the labels it routes are the labels the rule renderers write.

// A broken fixture must fail the test loudly.
#![allow(clippy::expect_used)]

use vigil_crds::{AlertPolicy, MonitoredApp, Slo};

use super::*;
use crate::render::rules::Rule;
use crate::render::{alerts, slo};

const APP: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: checkout, namespace: payments}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: checkout}}
"#;

/// Support takes only `critical`; engineering takes everything.
const POLICY: &str = r##"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: {name: checkout-alerts, namespace: payments}
spec:
  appRef: {name: checkout}
  rules:
    - name: CheckoutCrash
      severity: critical
      crashRate: {threshold: 0}
    - name: CheckoutSlow
      severity: warning
      audiences: [support]
      latency: {quantile: 0.99, thresholdSeconds: 1}
  audiences:
    - audience: engineering
      receivers:
        - name: eng-pager
          pagerDuty:
            routingKeySecretRef: {name: alerting, key: pagerduty}
    - audience: support
      receivers:
        - name: support-mail
          email: {to: support@bank.example}
      severities: [critical]
  escalation:
    - after: 30m
      receiver: eng-pager
"##;

const SLO: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: SLO
metadata: {name: checkout-availability, namespace: payments}
spec:
  appRef: {name: checkout}
  sli: {availability: {}}
  objective: 99.9
  alerting: {page: [engineering], ticket: [support]}
"#;

fn inventory(docs: &[&str]) -> Inventory {
    let mut inv = Inventory::default();
    for doc in docs {
        let value: serde_yaml::Value = serde_yaml::from_str(doc).expect("fixture");
        match value["kind"].as_str() {
            Some("MonitoredApp") => inv.apps.push(serde_yaml::from_value(value).expect("app")),
            Some("AlertPolicy") => inv
                .policies
                .push(serde_yaml::from_value(value).expect("ap")),
            Some("SLO") => inv.slos.push(serde_yaml::from_value(value).expect("slo")),
            other => panic!("unexpected fixture kind {other:?}"),
        }
    }
    inv
}

/// A warning rule sent only to an audience whose receivers take `critical`, and SLO tickets
/// for that audience, are reported with the field to change and the reason; everything else
/// the policy and objective generate is delivered.
#[test]
fn severity_filters_that_drop_alerts_are_reported() {
    let found = undelivered_alerts(&inventory(&[APP, POLICY, SLO]), true);
    let lines: Vec<String> = found
        .iter()
        .map(|u| format!("{}/{}: {}: {}", u.kind, u.name, u.field, u.message))
        .collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines[2].starts_with("SLO/checkout-availability: spec.alerting.ticket[0]: alert SLOErrorBudgetExhaustionForecast (severity ticket) for audience support reaches no receiver"),
        "{lines:#?}"
    );
    assert!(
        lines[3].starts_with("SLO/checkout-availability: spec.alerting.ticket[0]: alert SLOMetricsAbsent (severity ticket) for audience support reaches no receiver"),
        "{lines:#?}"
    );
    assert!(
        lines[0].starts_with("AlertPolicy/checkout-alerts: spec.rules[1]: alert CheckoutSlow (severity warning) for audience support reaches no receiver: the receivers of audience support only take severities [critical] (spec.audiences[1].severities)"),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with("SLO/checkout-availability: spec.alerting.ticket[0]: alert SLOErrorBudgetBurn (severity ticket) for audience support reaches no receiver: ticket alerts are routed as warning, and for audience support AlertPolicy checkout-alerts takes only [critical]"),
        "{lines:#?}"
    );
}

/// An objective with no policy on its app and no receivers of its own pages nobody: reported
/// on `spec.alerting.receivers`; with receivers of its own every alert is delivered.
#[test]
fn objectives_without_policy_need_their_own_receivers() {
    let found = undelivered_alerts(&inventory(&[APP, SLO]), true);
    assert!(!found.is_empty());
    assert!(found
        .iter()
        .all(|u| u.field == "spec.alerting.receivers" && u.message.contains("no AlertPolicy")));
    // The webhook, which cannot see policies, does not guess.
    assert!(undelivered_alerts(&inventory(&[APP, SLO]), false).is_empty());
    let with_receivers = SLO.replace(
        "alerting: {page: [engineering], ticket: [support]}",
        "alerting:\n    page: [engineering]\n    ticket: [support]\n    receivers:\n      - name: sre-mail\n        email: {to: sre@bank.example}",
    );
    assert_eq!(
        undelivered_alerts(&inventory(&[APP, &with_receivers]), true),
        Vec::new()
    );
}

/// The labels routed here are exactly those of the alerting rules the renderers write (the
/// `alertname` aside, which Prometheus adds from the rule name).
#[test]
fn routed_labels_are_the_rendered_labels() {
    let inv = inventory(&[APP, POLICY, SLO]);
    let app: &MonitoredApp = &inv.apps[0];
    let policy: &AlertPolicy = &inv.policies[0];
    let objective: &Slo = &inv.slos[0];
    let rendered = |file: crate::render::rules::RuleFile| -> BTreeSet<BTreeMap<String, String>> {
        file.groups
            .iter()
            .flat_map(|g| &g.rules)
            .filter_map(|r| match r {
                Rule::Alerting(a) => {
                    let mut labels = a.labels.clone();
                    labels.remove(crate::render::alerts::ESCALATION_RECEIVER_LABEL);
                    labels.insert("alertname".into(), a.alert.clone());
                    Some(labels)
                }
                Rule::Recording(_) => None,
            })
            .collect()
    };
    let generated = |alerts: Vec<Generated>| -> BTreeSet<BTreeMap<String, String>> {
        alerts.into_iter().map(|a| a.labels).collect()
    };
    assert_eq!(
        generated(policy_alerts(policy)),
        rendered(alerts::alert_rules(policy, app))
    );
    assert_eq!(
        generated(slo_alerts(objective)),
        rendered(slo::slo_rules(objective, app))
    );
}
