//! Writes an `SLO`'s children with server-side apply, prunes the ones no longer desired, and
//! hands its rule file to the namespace's shared ConfigMap (none when prometheus-operator
//! serves `PrometheusRule`).

use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::ApiResource;
use vigil_crds::Slo;

use super::Desired;
use crate::controllers::aggregate::{self, Contribution};
use crate::controllers::apply::{apply_and_prune, describe, encode, Child, Outcome};
use crate::controllers::{discovery, Context, Error, OptionalApis};
use crate::render::namespace_of;

/// Applies `desired` for `slo`; `switched` (the optional APIs changed since its last
/// reconcile) also prunes `PrometheusRule`s when that kind is no longer served.
pub async fn children(
    slo: &Slo,
    desired: Desired,
    apis: OptionalApis,
    switched: bool,
    ctx: &Context,
) -> Result<Outcome, Error> {
    let owner = describe(slo);
    let Desired {
        prometheus_rule,
        dashboard_config_map,
        grafana_dashboard,
        rule_file,
        alertmanager_config,
        routes,
    } = desired;
    let mut children = vec![encode(&owner, &dashboard_config_map)?];
    children.extend(prometheus_rule.map(|r| Child::dynamic(discovery::prometheus_rule(), r)));
    children.extend(grafana_dashboard.map(|d| Child::dynamic(discovery::grafana_dashboard(), d)));
    children
        .extend(alertmanager_config.map(|c| Child::dynamic(discovery::alertmanager_config(), c)));
    let mut kinds = vec![ApiResource::erase::<ConfigMap>(&())];
    if apis.prometheus_rule || switched {
        kinds.push(discovery::prometheus_rule());
    }
    if apis.grafana_dashboard {
        kinds.push(discovery::grafana_dashboard());
    }
    if apis.alertmanager_config || switched {
        kinds.push(discovery::alertmanager_config());
    }
    let outcome =
        apply_and_prune(&ctx.client, slo, &children, &kinds, &ctx.settings.outputs).await?;
    let shared = Contribution {
        prometheus: Some(rule_file),
        routes: Some(routes),
    };
    aggregate::contribute(ctx, &namespace_of(slo), apis, &owner, shared).await?;
    Ok(outcome)
}
