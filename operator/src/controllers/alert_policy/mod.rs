//! The `AlertPolicy` controller: turns a policy on its `MonitoredApp` into Prometheus alerting
//! rules (a `PrometheusRule`, or a rule file in the shared `vigil-prometheus` ConfigMap) and
//! Alertmanager routes (an `AlertmanagerConfig`, or its part of the shared `alertmanager.yml`
//! Secret), and reports them in its status.

mod apply;
mod desired;
mod status;
#[cfg(test)]
mod tests;
mod validate;

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::Resource;
use vigil_crds::AlertPolicy;

use super::aggregate::{self, Shares};
use super::apply::describe;
use super::{referenced_app, Context, Error, OptionalApis};
use crate::render::namespace_of;
pub use desired::{Desired, Summary};

/// Kind name used in metrics and spans.
pub const KIND: &str = "AlertPolicy";

/// Reconciles one `AlertPolicy`.
pub async fn reconcile(policy: Arc<AlertPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.reconcile_with(KIND, policy.as_ref(), steps(&policy, &ctx))
        .await
}

async fn steps(policy: &AlertPolicy, ctx: &Context) -> Result<Action, Error> {
    let owner = describe(policy);
    let apis = ctx.optional_apis(&owner).await?;
    if policy.meta().deletion_timestamp.is_some() {
        return aggregate::leave(ctx, policy, desired::withdrawn(policy)).await;
    }
    let app_name = &policy.spec.app_ref.name;
    let app = referenced_app(ctx, &namespace_of(policy), app_name, &owner).await?; // observe
    let app = match validate::check(policy, app) {
        Ok(app) => app, // pure
        Err(e) => return aggregate::reject(ctx, policy, desired::withdrawn(policy), e).await,
    };
    let desired = desired::children(policy, &app, apis, ctx.settings.cluster.as_deref()) // pure
        .map_err(|e| aggregate::encode_error(&owner, &namespace_of(policy), e))?;
    let switched = aggregate::join(ctx, policy, shares(apis)).await?;
    let applied = apply::children(policy, desired, apis, switched, ctx).await?; // write
    status::publish(policy, &app, apis, &applied, ctx).await?; // write status
    Ok(Action::requeue(ctx.settings.resync))
}

/// The shared outputs a policy feeds under `apis`.
fn shares(apis: OptionalApis) -> Shares {
    Shares {
        prometheus: !apis.prometheus_rule,
        alertmanager: !apis.alertmanager_config,
    }
}
