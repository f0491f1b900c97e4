//! Writes an `AlertPolicy`'s children with server-side apply, prunes the ones no longer desired,
//! and hands its rule file and routes to the shared outputs (empty when prometheus-operator
//! serves the corresponding kinds).

use vigil_crds::AlertPolicy;

use super::Desired;
use crate::controllers::aggregate::{self, Contribution};
use crate::controllers::apply::{apply_and_prune, describe, Child, Outcome};
use crate::controllers::{discovery, Context, Error, OptionalApis};
use crate::render::namespace_of;

/// Applies `desired` for `policy`; `switched` (the optional APIs changed since its last
/// reconcile) also prunes the prometheus-operator kinds that are no longer served.
pub async fn children(
    policy: &AlertPolicy,
    desired: Desired,
    apis: OptionalApis,
    switched: bool,
    ctx: &Context,
) -> Result<Outcome, Error> {
    let owner = describe(policy);
    let Desired {
        prometheus_rule,
        alertmanager_config,
        rule_file,
        routes,
    } = desired;
    let mut children = Vec::new();
    children.extend(prometheus_rule.map(|r| Child::dynamic(discovery::prometheus_rule(), r)));
    children
        .extend(alertmanager_config.map(|c| Child::dynamic(discovery::alertmanager_config(), c)));
    let mut kinds = Vec::new();
    if apis.prometheus_rule || switched {
        kinds.push(discovery::prometheus_rule());
    }
    if apis.alertmanager_config || switched {
        kinds.push(discovery::alertmanager_config());
    }
    let outcome = apply_and_prune(
        &ctx.client,
        policy,
        &children,
        &kinds,
        &ctx.settings.outputs,
    )
    .await?;
    let shared = Contribution {
        prometheus: Some(rule_file),
        routes: Some(routes),
    };
    aggregate::contribute(ctx, &namespace_of(policy), apis, &owner, shared).await?;
    Ok(outcome)
}
