//! The `MonitoredApp` controller: publishes the agent ConfigMap the injected sidecar mounts, the
//! app's scrape targets (`PodMonitor`s, or its entry in the shared `vigil-prometheus`
//! ConfigMap), and a status counting selected, injected and stale pods.

mod apply;
mod desired;
mod status;
#[cfg(test)]
mod tests;
mod validate;

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::Resource;
use vigil_crds::MonitoredApp;

use super::aggregate::{self, Shares};
use super::apply::describe;
use super::{Context, Error, OptionalApis};
pub use desired::{sidecar_for, Desired};
pub use status::{count_pods, CreationFailure, PodCounts, PodsObserved};

/// Kind name used in metrics and spans.
pub const KIND: &str = "MonitoredApp";

/// Reconciles one `MonitoredApp`.
pub async fn reconcile(app: Arc<MonitoredApp>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.reconcile_with(KIND, app.as_ref(), steps(&app, &ctx))
        .await
}

async fn steps(app: &MonitoredApp, ctx: &Context) -> Result<Action, Error> {
    let apis = ctx.optional_apis(&describe(app)).await?;
    if app.meta().deletion_timestamp.is_some() {
        return aggregate::leave(ctx, app, desired::withdrawn(app)).await;
    }
    let selector = match validate::check(app) {
        Ok(selector) => selector, // pure
        Err(e) => return aggregate::reject(ctx, app, desired::withdrawn(app), e).await,
    };
    let pods = status::selected_pods(app, &selector, ctx).await?; // observe
    let level = status::namespace_level(app, ctx).await?;
    let failures = status::creation_failures(app, &selector, ctx).await?;
    let desired = desired::children(app, apis, ctx.settings.cluster.as_deref()); // pure
    let switched = aggregate::join(ctx, app, shares(apis)).await?;
    let applied = apply::children(app, desired, apis, switched, ctx).await?; // write
    status::publish(app, &pods, level, failures, &applied, ctx).await?; // write status
    Ok(Action::requeue(ctx.settings.resync))
}

/// The shared outputs an app feeds under `apis`.
fn shares(apis: OptionalApis) -> Shares {
    Shares {
        prometheus: !apis.pod_monitor,
        alertmanager: false,
    }
}
