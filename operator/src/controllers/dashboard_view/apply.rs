//! Writes a `DashboardView`'s children with server-side apply and prunes the ones no longer
//! desired.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::ApiResource;
use vigil_crds::DashboardView;

use super::Desired;
use crate::controllers::apply::{apply_and_prune, describe, encode, Child, Outcome};
use crate::controllers::{discovery, Context, Error, OptionalApis};

/// Applies `desired` for `view`.
pub async fn children(
    view: &DashboardView,
    desired: Desired,
    apis: OptionalApis,
    ctx: &Context,
) -> Result<Outcome, Error> {
    let owner = describe(view);
    let Desired {
        dashboard_config_map,
        grafana_dashboard,
    } = desired;
    let mut children = vec![encode(&owner, &dashboard_config_map)?];
    children.extend(grafana_dashboard.map(|d| Child::dynamic(discovery::grafana_dashboard(), d)));
    let mut kinds = vec![ApiResource::erase::<ConfigMap>(&())];
    if apis.grafana_dashboard {
        kinds.push(discovery::grafana_dashboard());
    }
    Ok(apply_and_prune(&ctx.client, view, &children, &kinds, &ctx.settings.outputs).await?)
}
