//! A `DashboardView`'s status: the dashboard's uid and panel count, and the `Ready` and
//! `DashboardApplied` conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use vigil_crds::dashboard_view::DashboardViewStatus;
use vigil_crds::DashboardView;

use super::desired::{summary, Summary};
use crate::controllers::apply::Outcome;
use crate::controllers::conditions::{self, Check};
use crate::controllers::{Context, Error, OptionalApis};
use crate::render::dashboards::{dashboard_object_name, folder_of};
use crate::render::Inventory;

/// The conditions of a view whose dashboard was applied.
pub fn view_conditions(
    view: &DashboardView,
    summary: &Summary,
    apis: OptionalApis,
    now: Timestamp,
) -> Vec<Condition> {
    let name = dashboard_object_name(view);
    let delivered = if apis.grafana_dashboard {
        format!("ConfigMap and GrafanaDashboard {name}")
    } else {
        format!("ConfigMap {name} (grafana-operator is not installed)")
    };
    conditions::applied(
        view.metadata.generation,
        now,
        format!(
            "dashboard {} with {} panels is applied",
            summary.uid, summary.panels
        ),
        vec![Check::passed(
            "DashboardApplied",
            format!(
                "dashboard {} is in {delivered}, folder {:?}",
                summary.uid,
                folder_of(view)
            ),
        )],
    )
}

/// Writes the status and publishes an Event when a new generation was applied.
pub async fn publish(
    view: &DashboardView,
    inv: &Inventory,
    apis: OptionalApis,
    outcome: &Outcome,
    ctx: &Context,
) -> Result<(), Error> {
    let summary = summary(view, inv);
    let previous = view.status.clone().unwrap_or_default();
    let status = DashboardViewStatus {
        observed_generation: view.metadata.generation,
        conditions: conditions::merge(
            &previous.conditions,
            view_conditions(view, &summary, apis, Timestamp::now()),
        ),
        panels: summary.panels,
        uid: Some(summary.uid.clone()),
    };
    let produced = format!("dashboard {} with {} panels", summary.uid, summary.panels);
    conditions::publish(ctx, view, &previous, &status, &produced, outcome).await?;
    Ok(())
}
