//! Writes a `MonitoredApp`'s children with server-side apply, prunes the ones no longer
//! desired, and hands its scrape configs to the namespace's shared ConfigMap (entries when
//! there is no prometheus-operator, none when there is).

use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::ApiResource;
use vigil_crds::MonitoredApp;

use super::Desired;
use crate::controllers::aggregate::{self, Contribution};
use crate::controllers::apply::{apply_and_prune, describe, encode, Child, Outcome};
use crate::controllers::{discovery, Context, Error, OptionalApis};
use crate::render::namespace_of;

/// What applying produced, for the status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// Children applied and pruned.
    pub outcome: Outcome,
    /// Hash of the published agent config.
    pub config_hash: Option<String>,
}

/// Applies `desired` for `app`; `switched` (the optional APIs changed since its last
/// reconcile) also prunes `PodMonitor`s when that kind is no longer served.
pub async fn children(
    app: &MonitoredApp,
    desired: Desired,
    apis: OptionalApis,
    switched: bool,
    ctx: &Context,
) -> Result<Applied, Error> {
    let owner = describe(app);
    let config_hash = desired.config_hash();
    let Desired {
        agent_config,
        pod_monitors,
        scrape_configs,
    } = desired;
    let mut children = vec![encode(&owner, &agent_config)?];
    children.extend(
        pod_monitors
            .into_iter()
            .map(|m| Child::dynamic(discovery::pod_monitor(), m)),
    );
    let mut kinds = vec![ApiResource::erase::<ConfigMap>(&())];
    if apis.pod_monitor || switched {
        kinds.push(discovery::pod_monitor());
    }
    let outcome =
        apply_and_prune(&ctx.client, app, &children, &kinds, &ctx.settings.outputs).await?;
    let shared = Contribution {
        prometheus: Some(scrape_configs),
        routes: None,
    };
    aggregate::contribute(ctx, &namespace_of(app), apis, &owner, shared).await?;
    Ok(Applied {
        outcome,
        config_hash,
    })
}
