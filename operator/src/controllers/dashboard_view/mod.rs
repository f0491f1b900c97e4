//! The `DashboardView` controller: renders the view's Grafana dashboard for its apps and
//! delivers it as a ConfigMap labelled `grafana_dashboard: "1"` (Grafana's dashboard sidecar),
//! plus a `GrafanaDashboard` when grafana-operator is installed.

mod apply;
mod desired;
mod status;
#[cfg(test)]
mod tests;
mod validate;

use std::sync::Arc;

use kube::runtime::controller::Action;
use vigil_crds::{DashboardView, MonitoredApp};

use super::apply::describe;
use super::{referenced_app, Context, Error};
use crate::render::namespace_of;
pub use desired::{Desired, Summary};

/// Kind name used in metrics and spans.
pub const KIND: &str = "DashboardView";

/// Reconciles one `DashboardView`. Its outputs are its own, so deletion needs no finalizer:
/// owner references remove them.
pub async fn reconcile(view: Arc<DashboardView>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.reconcile_with(KIND, view.as_ref(), steps(&view, &ctx))
        .await
}

async fn steps(view: &DashboardView, ctx: &Context) -> Result<Action, Error> {
    let apis = ctx.optional_apis(&describe(view)).await?;
    let apps = observe(view, ctx).await?; // observe
    let inv = validate::check(view, apps)?; // pure
    let desired = desired::children(view, &inv, apis); // pure
    let applied = apply::children(view, desired, apis, ctx).await?; // write
    status::publish(view, &inv, apis, &applied, ctx).await?; // write status
    Ok(Action::requeue(ctx.settings.resync))
}

/// Reads every app the view names, in order; `None` for the missing ones.
async fn observe(view: &DashboardView, ctx: &Context) -> Result<Vec<Option<MonitoredApp>>, Error> {
    let (owner, ns) = (describe(view), namespace_of(view));
    let mut apps = Vec::with_capacity(view.spec.apps.len());
    for name in &view.spec.apps {
        apps.push(referenced_app(ctx, &ns, name, &owner).await?);
    }
    Ok(apps)
}
