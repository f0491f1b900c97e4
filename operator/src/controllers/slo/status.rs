//! An `SLO`'s status: how many recording rules and burn-rate alerts it produced, where they
//! went, and the `Ready` and `RulesApplied` conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;
use kube::ResourceExt;
use vigil_crds::slo::SloStatus;
use vigil_crds::{MonitoredApp, Slo};

use super::desired::{summary, Summary};
use crate::controllers::aggregate::{slo_rules_key, PROMETHEUS_CONFIG_MAP};
use crate::controllers::apply::Outcome;
use crate::controllers::conditions::{self, condition, READY};
use crate::controllers::{report, Context, Error, OptionalApis};
use crate::render::dashboards::dashboard_object_name;

/// The conditions of an objective whose outputs were applied.
pub fn slo_conditions(
    slo: &Slo,
    summary: Summary,
    apis: OptionalApis,
    now: Timestamp,
) -> Vec<Condition> {
    let generation = slo.metadata.generation;
    let rules_where = if apis.prometheus_rule {
        format!("PrometheusRule vigil-slo-{}", slo.name_any())
    } else {
        format!(
            "ConfigMap {PROMETHEUS_CONFIG_MAP}, file {}",
            slo_rules_key(&slo.name_any())
        )
    };
    let dashboard = dashboard_object_name(slo);
    let dashboard_where = if apis.grafana_dashboard {
        format!("ConfigMap and GrafanaDashboard {dashboard}")
    } else {
        format!("ConfigMap {dashboard}")
    };
    vec![
        condition(
            READY,
            true,
            "Applied",
            format!(
                "{} recording rules, {} burn-rate alerts and the dashboard ({dashboard_where}) are applied",
                summary.recording_rules, summary.alerts
            ),
            generation,
            now,
        ),
        condition(
            "RulesApplied",
            true,
            "RulesApplied",
            format!(
                "{} recording rules and {} burn-rate alerts are in {rules_where}",
                summary.recording_rules, summary.alerts
            ),
            generation,
            now,
        ),
    ]
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
    let status = SloStatus {
        observed_generation: slo.metadata.generation,
        conditions: conditions::merge(
            &previous.conditions,
            slo_conditions(slo, summary, apis, Timestamp::now()),
        ),
        recording_rules: summary.recording_rules,
        alerts: summary.alerts,
    };
    if status == previous {
        return Ok(());
    }
    let json = serde_json::to_value(&status).unwrap_or_default();
    conditions::patch_status(&ctx.client, slo, json).await?;
    if previous.observed_generation != slo.metadata.generation {
        let note = report::applied_note(
            &format!(
                "{} recording rules, {} burn-rate alerts",
                summary.recording_rules, summary.alerts
            ),
            outcome,
        );
        report::event(ctx, slo, EventType::Normal, "Applied", note).await;
    }
    Ok(())
}
