//! Writes an `AlertPolicy`'s children with server-side apply, prunes the ones no longer desired,
//! and re-renders the shared rule files and `alertmanager.yml` when prometheus-operator does
//! not serve the corresponding kinds.

use vigil_crds::AlertPolicy;

use super::Desired;
use crate::controllers::apply::{apply_and_prune, describe, Child, Outcome};
use crate::controllers::{aggregate, discovery, Context, Error, OptionalApis};
use crate::render::namespace_of;

/// Applies `desired` for `policy`.
pub async fn children(
    policy: &AlertPolicy,
    desired: Desired,
    apis: OptionalApis,
    ctx: &Context,
) -> Result<Outcome, Error> {
    let owner = describe(policy);
    let Desired {
        prometheus_rule,
        alertmanager_config,
    } = desired;
    let mut children = Vec::new();
    children.extend(prometheus_rule.map(|r| Child::dynamic(discovery::prometheus_rule(), r)));
    children
        .extend(alertmanager_config.map(|c| Child::dynamic(discovery::alertmanager_config(), c)));
    let mut kinds = Vec::new();
    if apis.prometheus_rule {
        kinds.push(discovery::prometheus_rule());
    }
    if apis.alertmanager_config {
        kinds.push(discovery::alertmanager_config());
    }
    let outcome = apply_and_prune(&ctx.client, policy, &children, &kinds).await?;
    if !apis.prometheus_rule {
        aggregate::sync_prometheus(ctx, &namespace_of(policy), apis, &owner).await?;
    }
    aggregate::sync_alertmanager(ctx, apis, &owner).await?;
    Ok(outcome)
}
