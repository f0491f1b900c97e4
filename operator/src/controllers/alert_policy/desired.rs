//! What an `AlertPolicy` should produce, from the pure renderers: a `PrometheusRule` and an
//! `AlertmanagerConfig` when prometheus-operator serves them; otherwise its rule file and
//! routes, its parts of the shared outputs (see `aggregate`).

use kube::ResourceExt;
use serde_json::Value;
use vigil_crds::{AlertPolicy, MonitoredApp};

use crate::controllers::aggregate::{self, Contribution, PrometheusPart, Routes};
use crate::controllers::OptionalApis;
use crate::render::rules::Rule;
use crate::render::{alertmanager, alerts, namespace_of, Inventory};

/// The children of one policy, one field per child kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// `vigil-<policy>`, when `PrometheusRule` is served.
    pub prometheus_rule: Option<Value>,
    /// `vigil-<policy>`, when `AlertmanagerConfig` is served.
    pub alertmanager_config: Option<Value>,
    /// The policy's file in the namespace's shared ConfigMap; none when `PrometheusRule` is
    /// served.
    pub rule_file: PrometheusPart,
    /// The policy's routes in the shared `alertmanager.yml`; none when `AlertmanagerConfig` is
    /// served.
    pub routes: Routes,
}

/// What the policy renders to, for the status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Alerting rules, escalation copies included.
    pub rules: i32,
    /// Receivers across all audiences.
    pub receivers: i32,
}

/// Renders the children of `policy` on `app`; alerts carry `cluster` (`--cluster-name`).
pub fn children(
    policy: &AlertPolicy,
    app: &MonitoredApp,
    apis: OptionalApis,
    cluster: Option<&str>,
) -> Result<Desired, serde_yaml::Error> {
    let prometheus_rule = apis.prometheus_rule.then(|| {
        alerts::prometheus_rule(
            policy,
            &alerts::alert_rules(policy, app).with_cluster(cluster),
        )
    });
    let alertmanager_config = if apis.alertmanager_config {
        let inv = Inventory {
            policies: vec![policy.clone()],
            ..Inventory::default()
        };
        alertmanager::alertmanager_config_crs(&inv)
            .into_iter()
            .next()
    } else {
        None
    };
    Ok(Desired {
        prometheus_rule,
        alertmanager_config,
        rule_file: aggregate::policy_rules_part(policy, app, apis, cluster)?,
        routes: aggregate::routes_part(policy, apis),
    })
}

/// The policy's parts of the shared outputs, all empty: what is withdrawn when it goes.
pub fn withdrawn(policy: &AlertPolicy) -> Contribution {
    Contribution {
        prometheus: Some(PrometheusPart::RuleFile {
            key: aggregate::policy_rules_key(&policy.name_any()),
            yaml: None,
        }),
        routes: Some(Routes {
            namespace: namespace_of(policy),
            name: policy.name_any(),
            of_slo: false,
            spec: None,
        }),
    }
}

/// Counts what `policy` renders to.
pub fn summary(policy: &AlertPolicy, app: &MonitoredApp) -> Summary {
    let file = alerts::alert_rules(policy, app);
    let rules = file
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter(|r| matches!(r, Rule::Alerting(_)))
        .count();
    let receivers: usize = policy
        .spec
        .audiences
        .iter()
        .map(|a| a.receivers.len())
        .sum();
    Summary {
        rules: i32::try_from(rules).unwrap_or(i32::MAX),
        receivers: i32::try_from(receivers).unwrap_or(i32::MAX),
    }
}
