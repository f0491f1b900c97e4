//! Where every generated alert goes: each alert the rule renderers write for an `AlertPolicy`
//! (one per rule and audience, one per escalation step) or an `SLO` (one per burn tier and
//! audience) is routed through the rendered `alertmanager.yml` the way Alertmanager routes
//! it, and an alert that reaches only no-op receivers is reported — with its rule, audience
//! and why — so `check`, the `/validate` webhook and the resources' status refuse what would
//! otherwise fire into the void.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use vigil_crds::{AlertPolicy, Audience, Severity, Slo};

use super::{alertmanager_config_for, AlertmanagerVersion, MatchOp, Route};
use crate::render::alerts::{
    receiver_audience, rule_audiences, ESCALATION_LEVEL_LABEL, POLICY_LABEL, RULE_LABEL,
};
use crate::render::slo::{self, BURN_ALERT, BURN_TIERS, BURN_TIER_LABEL};
use crate::render::{namespace_of, Inventory};

/// A generated alert that no real receiver gets.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Undelivered {
    /// `AlertPolicy` or `SLO`.
    pub kind: &'static str,
    /// Namespace of the resource.
    pub namespace: String,
    /// Name of the resource.
    pub name: String,
    /// The field to change, such as `spec.rules[2]` or `spec.alerting.ticket[0]`.
    pub field: String,
    /// What is wrong: the alert, its audience and severity, and why it reaches nobody.
    pub message: String,
}

/// One alert as the rule renderers label it, with the field of the resource it comes from.
struct Generated {
    field: String,
    alert: String,
    audience: Audience,
    severity: String,
    labels: BTreeMap<String, String>,
}

/// Every alert of `inv`'s policies and objectives that reaches no receiver with a
/// notification config in the `alertmanager.yml` rendered for `inv`. With `slos_need_policies`
/// false, objectives without their own receivers are not checked (the `/validate` webhook sees
/// one object and cannot know the app's policies).
pub fn undelivered_alerts(inv: &Inventory, slos_need_policies: bool) -> Vec<Undelivered> {
    let file = alertmanager_config_for(inv, AlertmanagerVersion::V0_26);
    let real: BTreeSet<&str> = file
        .receivers
        .iter()
        .filter(|r| {
            !(r.email_configs.is_empty()
                && r.pagerduty_configs.is_empty()
                && r.slack_configs.is_empty()
                && r.webhook_configs.is_empty())
        })
        .map(|r| r.name.as_str())
        .collect();
    let reaches_someone = |labels: &BTreeMap<String, String>| {
        let mut reached = Vec::new();
        route(&file.route, labels, "", &mut reached);
        reached.iter().any(|r| real.contains(r.as_str()))
    };
    let mut out = BTreeSet::new();
    for policy in &inv.policies {
        for alert in policy_alerts(policy) {
            if !reaches_someone(&alert.labels) {
                out.insert(Undelivered {
                    kind: "AlertPolicy",
                    namespace: namespace_of(policy),
                    name: policy.name_any(),
                    field: alert.field.clone(),
                    message: message(&alert, &policy_reason(policy, &alert)),
                });
            }
        }
    }
    for slo in &inv.slos {
        if !slos_need_policies && slo.spec.alerting.receivers.is_empty() {
            continue;
        }
        for alert in slo_alerts(slo) {
            if !reaches_someone(&alert.labels) {
                let (field, reason) = slo_reason(slo, inv, &alert);
                out.insert(Undelivered {
                    kind: "SLO",
                    namespace: namespace_of(slo),
                    name: slo.name_any(),
                    field,
                    message: message(&alert, &reason),
                });
            }
        }
    }
    out.into_iter().collect()
}

fn message(alert: &Generated, reason: &str) -> String {
    format!(
        "alert {} (severity {}) for audience {} reaches no receiver: {reason}",
        alert.alert, alert.severity, alert.audience
    )
}

/// The alerts `alerts::alert_rules` writes for `policy`, labelled as it labels them.
fn policy_alerts(policy: &AlertPolicy) -> Vec<Generated> {
    let ns = namespace_of(policy);
    let mut out = Vec::new();
    for (i, rule) in policy.spec.rules.iter().enumerate() {
        if rule.kind().is_err() {
            continue;
        }
        let audiences = rule_audiences(policy, rule);
        let labels = |audience: Audience| {
            BTreeMap::from([
                ("namespace".to_owned(), ns.clone()),
                ("app".to_owned(), policy.spec.app_ref.name.clone()),
                ("severity".to_owned(), rule.severity.as_str().to_owned()),
                ("audience".to_owned(), audience.as_str().to_owned()),
                (POLICY_LABEL.to_owned(), policy.name_any()),
                (RULE_LABEL.to_owned(), rule.name.clone()),
                ("alertname".to_owned(), rule.name.clone()),
            ])
        };
        for audience in &audiences {
            out.push(Generated {
                field: format!("spec.rules[{i}]"),
                alert: rule.name.clone(),
                audience: *audience,
                severity: rule.severity.as_str().to_owned(),
                labels: labels(*audience),
            });
        }
        for (j, step) in policy.spec.escalation.iter().enumerate() {
            // A step naming no declared receiver is reported on its own field already.
            if receiver_audience(policy, &step.receiver).is_none() {
                continue;
            }
            let audience = receiver_audience(policy, &step.receiver)
                .or_else(|| audiences.first().copied())
                .unwrap_or(Audience::Engineering);
            let mut labels = labels(audience);
            labels.insert(ESCALATION_LEVEL_LABEL.to_owned(), (j + 1).to_string());
            out.push(Generated {
                field: format!("spec.escalation[{j}]"),
                alert: format!("{} (escalation level {})", rule.name, j + 1),
                audience,
                severity: rule.severity.as_str().to_owned(),
                labels,
            });
        }
    }
    out
}

/// The alerts `slo::slo_rules` writes for `slo`, labelled as it labels them (with the default
/// severities; routing reads the class in `vigil_slo_alert`, never `severity`).
fn slo_alerts(slo: &Slo) -> Vec<Generated> {
    let severities = slo::SloSeverities::default();
    let alerting = &slo.spec.alerting;
    let generated =
        |alert: &str, class: &str, field: String, audience: Audience, tier: Option<&str>| {
            let mut labels = slo.spec.labels.clone();
            labels.extend([
                ("namespace".to_owned(), namespace_of(slo)),
                ("app".to_owned(), slo.spec.app_ref.name.clone()),
                ("slo".to_owned(), slo.name_any()),
                ("severity".to_owned(), severities.of(class).to_owned()),
                (slo::SLO_ALERT_LABEL.to_owned(), class.to_owned()),
                ("sloth_severity".to_owned(), class.to_owned()),
                ("audience".to_owned(), audience.as_str().to_owned()),
                ("alertname".to_owned(), alert.to_owned()),
            ]);
            if let Some(tier) = tier {
                labels.insert(BURN_TIER_LABEL.to_owned(), tier.to_owned());
            }
            Generated {
                field,
                alert: alert.to_owned(),
                audience,
                severity: class.to_owned(),
                labels,
            }
        };
    let mut out = Vec::new();
    for (tier, class, ..) in BURN_TIERS {
        let (list, audiences) = if class == "page" {
            ("page", &alerting.page)
        } else {
            ("ticket", &alerting.ticket)
        };
        for (j, audience) in audiences.iter().enumerate() {
            out.push(generated(
                BURN_ALERT,
                class,
                format!("spec.alerting.{list}[{j}]"),
                *audience,
                Some(tier),
            ));
        }
    }
    // The absent-SLI and budget-forecast alerts ticket the ticket audiences, or the page ones
    // when there are none.
    let (list, audiences) = if alerting.ticket.is_empty() {
        ("page", &alerting.page)
    } else {
        ("ticket", &alerting.ticket)
    };
    for alert in [slo::ABSENT_ALERT, slo::BUDGET_FORECAST_ALERT] {
        for (j, audience) in audiences.iter().enumerate() {
            out.push(generated(
                alert,
                "ticket",
                format!("spec.alerting.{list}[{j}]"),
                *audience,
                None,
            ));
        }
    }
    out
}

/// The policy severity an SLO severity (`page`, `ticket`) is routed as.
fn policy_severity(slo_severity: &str) -> Severity {
    if slo_severity == "page" {
        Severity::Critical
    } else {
        Severity::Warning
    }
}

fn severities_text(severities: &[Severity]) -> String {
    let names: Vec<&str> = severities.iter().map(|s| s.as_str()).collect();
    names.join(", ")
}

fn policy_reason(policy: &AlertPolicy, alert: &Generated) -> String {
    let audience = alert.audience;
    if alert.labels.contains_key(ESCALATION_LEVEL_LABEL) {
        return "the step's receiver is not declared under spec.audiences".to_owned();
    }
    match policy
        .spec
        .audiences
        .iter()
        .enumerate()
        .find(|(_, a)| a.audience == audience)
    {
        None => format!(
            "the policy has no receivers for audience {audience}; add it to spec.audiences or \
             list only routed audiences in the rule's audiences"
        ),
        Some((k, route)) => format!(
            "the receivers of audience {audience} only take severities [{}] \
             (spec.audiences[{k}].severities); add {} there or send the rule to another \
             audience",
            severities_text(&route.severities),
            alert.severity
        ),
    }
}

/// The field to change and why an SLO alert reaches nobody.
fn slo_reason(slo: &Slo, inv: &Inventory, alert: &Generated) -> (String, String) {
    let ns = namespace_of(slo);
    let app = &slo.spec.app_ref.name;
    let wanted = policy_severity(&alert.severity);
    let policies: Vec<&AlertPolicy> = inv
        .policies
        .iter()
        .filter(|p| namespace_of(*p) == ns && &p.spec.app_ref.name == app)
        .collect();
    if !slo.spec.alerting.receivers.is_empty() {
        return (
            "spec.alerting.receivers".to_owned(),
            "no receiver in spec.alerting.receivers has a usable notification config".to_owned(),
        );
    }
    if policies.is_empty() {
        return (
            "spec.alerting.receivers".to_owned(),
            format!(
                "no AlertPolicy routes alerts of app {app:?} and spec.alerting.receivers is \
                 empty; name receivers there or create an AlertPolicy for the app with an \
                 audience {}",
                alert.audience
            ),
        );
    }
    let filtered: Vec<String> = policies
        .iter()
        .flat_map(|p| {
            p.spec
                .audiences
                .iter()
                .filter(|a| a.audience == alert.audience)
                .map(|a| {
                    format!(
                        "AlertPolicy {} takes only [{}]",
                        p.name_any(),
                        severities_text(&a.severities)
                    )
                })
        })
        .collect();
    let reason = if filtered.is_empty() {
        format!(
            "no AlertPolicy of app {app:?} has receivers for audience {}; name receivers in \
             spec.alerting.receivers or add the audience to a policy",
            alert.audience
        )
    } else {
        format!(
            "{} alerts are routed as {wanted}, and for audience {} {}; add {wanted} to that \
             audience's severities, name receivers in spec.alerting.receivers, or remove the \
             audience here",
            alert.severity,
            alert.audience,
            filtered.join(", ")
        )
    };
    (alert.field.clone(), reason)
}

/// Routes `labels` through `node` (already matched) as Alertmanager does, appending the
/// receivers the alert reaches to `out`.
fn route(node: &Route, labels: &BTreeMap<String, String>, inherited: &str, out: &mut Vec<String>) {
    let receiver = node.receiver.as_deref().unwrap_or(inherited);
    let mut matched = false;
    for child in &node.routes {
        if matches(child, labels) {
            matched = true;
            route(child, labels, receiver, out);
            if child.continue_ != Some(true) {
                break;
            }
        }
    }
    if !matched {
        out.push(receiver.to_owned());
    }
}

/// Whether every matcher of `node` holds for `labels` (a missing label is the empty string;
/// regular expressions are anchored, as in Alertmanager).
fn matches(node: &Route, labels: &BTreeMap<String, String>) -> bool {
    node.matchers.iter().all(|m| {
        let value = labels.get(&m.name).map_or("", String::as_str);
        match m.op {
            MatchOp::Equal => value == m.value,
            MatchOp::Regex => {
                regex::Regex::new(&format!("^(?:{})$", m.value)).is_ok_and(|re| re.is_match(value))
            }
        }
    })
}

#[cfg(test)]
mod tests;
