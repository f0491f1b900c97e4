//! An `SLO`'s status: how many recording rules and burn-rate alerts it produced, where they
//! went, the `Ready` and `RulesApplied` conditions, the remaining error budget (read from
//! Prometheus when its URL is known) and warnings such as a window longer than Prometheus'
//! retention.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use vigil_crds::slo::SloStatus;
use vigil_crds::{MonitoredApp, Slo};

use super::desired::{summary, Summary};
use crate::controllers::aggregate::{rules_location, slo_rules_key};
use crate::controllers::apply::Outcome;
use crate::controllers::conditions::{self, Check};
use crate::controllers::{Context, Error, OptionalApis};
use crate::render::dashboards::dashboard_object_name;

/// The conditions of an objective whose outputs were applied.
pub fn slo_conditions(
    slo: &Slo,
    summary: Summary,
    apis: OptionalApis,
    now: Timestamp,
) -> Vec<Condition> {
    let name = slo.name_any();
    let rules_where = rules_location(apis, &format!("vigil-slo-{name}"), &slo_rules_key(&name));
    let dashboard = dashboard_object_name(slo);
    let dashboard_where = if apis.grafana_dashboard {
        format!("ConfigMap and GrafanaDashboard {dashboard}")
    } else {
        format!("ConfigMap {dashboard}")
    };
    conditions::applied(
        slo.metadata.generation,
        now,
        format!(
            "{} recording rules, {} alerts (burn rate, absent SLI, budget forecast) and the dashboard ({dashboard_where}) are applied",
            summary.recording_rules, summary.alerts
        ),
        vec![Check::passed(
            "RulesApplied",
            format!(
                "{} recording rules and {} alerts (burn rate, absent SLI, budget forecast) are in {rules_where}",
                summary.recording_rules, summary.alerts
            ),
        )],
    )
}

/// What makes the objective's figures doubtful: a window longer than Prometheus keeps data.
pub fn warnings(slo: &Slo, retention: Option<std::time::Duration>) -> Vec<String> {
    crate::render::slo::retention_warning(slo, retention)
        .into_iter()
        .collect()
}

/// Writes the status and publishes an Event when a new generation was applied.
pub async fn publish(
    slo: &Slo,
    app: &MonitoredApp,
    apis: OptionalApis,
    outcome: &Outcome,
    ctx: &Context,
) -> Result<(), Error> {
    let summary = summary(slo, app);
    let previous = slo.status.clone().unwrap_or_default();
    let budget_remaining = match &ctx.settings.prometheus_query_url {
        Some(base) => super::budget::read(base, slo).await,
        None => None,
    };
    let status = SloStatus {
        budget_remaining,
        warnings: warnings(slo, ctx.settings.prometheus_retention),
        observed_generation: slo.metadata.generation,
        conditions: conditions::merge(
            &previous.conditions,
            slo_conditions(slo, summary, apis, Timestamp::now()),
        ),
        recording_rules: summary.recording_rules,
        alerts: summary.alerts,
    };
    let produced = format!(
        "{} recording rules, {} alerts",
        summary.recording_rules, summary.alerts
    );
    conditions::publish(ctx, slo, &previous, &status, &produced, outcome).await?;
    Ok(())
}
