//! An `AlertPolicy`'s status: how many alerting rules and receivers it produced, where they
//! went, and the `Ready`, `RulesApplied` and `RoutesApplied` conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use vigil_crds::alert_policy::AlertPolicyStatus;
use vigil_crds::{AlertPolicy, MonitoredApp};

use super::desired::{summary, Summary};
use crate::controllers::aggregate::{policy_rules_key, rules_location, ALERTMANAGER_SECRET};
use crate::controllers::apply::Outcome;
use crate::controllers::conditions::{self, Check};
use crate::controllers::{Context, Error, OptionalApis, Settings};
use crate::render::alertmanager::alertmanager_config_name;

/// The conditions of a policy whose outputs were applied.
pub fn policy_conditions(
    policy: &AlertPolicy,
    summary: Summary,
    apis: OptionalApis,
    settings: &Settings,
    now: Timestamp,
) -> Vec<Condition> {
    let name = policy.name_any();
    let rules_where = rules_location(apis, &format!("vigil-{name}"), &policy_rules_key(&name));
    let routes_where = if apis.alertmanager_config {
        format!("AlertmanagerConfig {}", alertmanager_config_name(&name))
    } else {
        format!(
            "Secret {}/{ALERTMANAGER_SECRET}",
            settings.alertmanager_namespace
        )
    };
    conditions::applied(
        policy.metadata.generation,
        now,
        format!(
            "{} alerting rules and routes to {} receivers are applied",
            summary.rules, summary.receivers
        ),
        vec![
            Check::passed(
                "RulesApplied",
                format!("{} alerting rules are in {rules_where}", summary.rules),
            ),
            Check::passed(
                "RoutesApplied",
                format!(
                    "routes to {} receivers are in {routes_where}",
                    summary.receivers
                ),
            ),
        ],
    )
}

/// Writes the status and publishes an Event when a new generation was applied.
pub async fn publish(
    policy: &AlertPolicy,
    app: &MonitoredApp,
    apis: OptionalApis,
    outcome: &Outcome,
    ctx: &Context,
) -> Result<(), Error> {
    let summary = summary(policy, app);
    let previous = policy.status.clone().unwrap_or_default();
    let status = AlertPolicyStatus {
        observed_generation: policy.metadata.generation,
        conditions: conditions::merge(
            &previous.conditions,
            policy_conditions(policy, summary, apis, &ctx.settings, Timestamp::now()),
        ),
        rules: summary.rules,
        receivers: summary.receivers,
    };
    let produced = format!(
        "{} alerting rules, {} receivers",
        summary.rules, summary.receivers
    );
    conditions::publish(ctx, policy, &previous, &status, &produced, outcome).await?;
    Ok(())
}
