//! Writes an `SLO`'s children with server-side apply, prunes the ones no longer desired, and
//! re-renders the shared rule files when prometheus-operator does not serve `PrometheusRule`.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::ApiResource;
use vigil_crds::Slo;

use super::Desired;
use crate::controllers::apply::{apply_and_prune, describe, encode, Child, Outcome};
use crate::controllers::{aggregate, discovery, Context, Error, OptionalApis};
use crate::render::namespace_of;

/// Applies `desired` for `slo`.
pub async fn children(
    slo: &Slo,
    desired: Desired,
    apis: OptionalApis,
    ctx: &Context,
) -> Result<Outcome, Error> {
    let owner = describe(slo);
    let Desired {
        prometheus_rule,
        dashboard_config_map,
        grafana_dashboard,
    } = desired;
    let mut children = vec![encode(&owner, &dashboard_config_map)?];
    children.extend(prometheus_rule.map(|r| Child::dynamic(discovery::prometheus_rule(), r)));
    children.extend(grafana_dashboard.map(|d| Child::dynamic(discovery::grafana_dashboard(), d)));
    let mut kinds = vec![ApiResource::erase::<ConfigMap>(&())];
    if apis.prometheus_rule {
        kinds.push(discovery::prometheus_rule());
    }
    if apis.grafana_dashboard {
        kinds.push(discovery::grafana_dashboard());
    }
    let outcome = apply_and_prune(&ctx.client, slo, &children, &kinds).await?;
    if !apis.prometheus_rule {
        aggregate::sync_prometheus(ctx, &namespace_of(slo), apis, &owner).await?;
    }
    Ok(outcome)
}
