//! The `SLO` controller: turns an objective on its `MonitoredApp` into SLI recording rules,
//! error-budget rules and burn-rate alerts (a `PrometheusRule`, or a rule file in the shared
//! `vigil-prometheus` ConfigMap) and an SLO dashboard (a labelled ConfigMap, plus a
//! `GrafanaDashboard` when grafana-operator is installed).

mod apply;
mod budget;
mod desired;
mod status;
#[cfg(test)]
mod tests;
mod validate;

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::Resource;
use vigil_crds::{AlertPolicy, Slo};

use super::aggregate::{self, Shares};
use super::apply::describe;
use super::{referenced_app, Context, Error, OptionalApis};
use crate::render::namespace_of;
pub use desired::{Desired, Summary};

/// Kind name used in metrics and spans.
pub const KIND: &str = "SLO";

/// Reconciles one `SLO`.
pub async fn reconcile(slo: Arc<Slo>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.reconcile_with(KIND, slo.as_ref(), steps(&slo, &ctx))
        .await
}

async fn steps(slo: &Slo, ctx: &Context) -> Result<Action, Error> {
    let owner = describe(slo);
    let apis = ctx.optional_apis(&owner).await?;
    if slo.meta().deletion_timestamp.is_some() {
        return aggregate::leave(ctx, slo, desired::withdrawn(slo)).await;
    }
    let app_name = &slo.spec.app_ref.name;
    let app = referenced_app(ctx, &namespace_of(slo), app_name, &owner).await?; // observe
                                                                                // The policies that may route the objective's alerts (when it names no receivers).
    let policies = if slo.spec.alerting.receivers.is_empty() {
        aggregate::list::<AlertPolicy>(ctx, Some(&namespace_of(slo)), &owner).await?
    } else {
        Vec::new()
    };
    let app = match validate::check(slo, app, policies) {
        Ok(app) => app, // pure
        Err(e) => return aggregate::reject(ctx, slo, desired::withdrawn(slo), e).await,
    };
    let desired = desired::children(
        slo,
        &app,
        apis,
        &ctx.settings.outputs.slo_severities,
        ctx.settings.cluster.as_deref(),
    ) // pure
    .map_err(|e| aggregate::encode_error(&owner, &namespace_of(slo), e))?;
    let switched = aggregate::join(ctx, slo, shares(apis)).await?;
    let applied = apply::children(slo, desired, apis, switched, ctx).await?; // write
    status::publish(slo, &app, apis, &applied, ctx).await?; // write status
    Ok(Action::requeue(ctx.settings.resync))
}

/// The shared outputs an SLO feeds under `apis`.
fn shares(apis: OptionalApis) -> Shares {
    Shares {
        prometheus: !apis.prometheus_rule,
        alertmanager: !apis.alertmanager_config,
    }
}
