//! A `MonitoredApp`'s status: which pods its selector matches, how many run the agent, how many
//! run an outdated agent (their `vigil.dev/injected` hash differs from the sidecar the webhook
//! would inject now, so only a restart picks up the change), the published config hash and the
//! `Ready`, `ConfigRendered` and `Injected` conditions.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::core::{PartialObjectMeta, Selector};
use kube::runtime::events::EventType;
use kube::ResourceExt;
use vigil_crds::monitored_app::MonitoredAppStatus;
use vigil_crds::MonitoredApp;

use super::apply::Applied;
use super::desired::sidecar_for;
use crate::controllers::apply::describe;
use crate::controllers::conditions::{self, Check};
use crate::controllers::error::ObserveError;
use crate::controllers::{report, Context, Error};
use crate::render::agent_config::config_map_name;
use crate::render::inject::INJECTED;
use crate::render::namespace_of;

/// Lists the metadata of the pods `selector` matches in the app's namespace.
pub async fn selected_pods(
    app: &MonitoredApp,
    selector: &Selector,
    ctx: &Context,
) -> Result<Vec<ObjectMeta>, Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace_of(app));
    let pods = api
        .list_metadata(&ListParams::default().labels(&selector.to_string()))
        .await
        .map_err(|source| ObserveError::Read {
            object: describe(app),
            what: "the pods selected by spec.selector".to_owned(),
            source,
        })?;
    Ok(pods
        .items
        .into_iter()
        .map(|p: PartialObjectMeta<Pod>| p.metadata)
        .collect())
}

/// Pod counts for the status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodCounts {
    /// Pods the selector matches (terminating pods excluded).
    pub selected: i32,
    /// Selected pods that run the agent.
    pub injected: i32,
    /// Injected pods whose sidecar hash differs from `current_hash`.
    pub stale: i32,
}

/// Counts `pods` against the hash of the sidecar the webhook injects now.
pub fn count_pods(pods: &[ObjectMeta], current_hash: &str) -> PodCounts {
    let mut counts = PodCounts::default();
    for pod in pods.iter().filter(|p| p.deletion_timestamp.is_none()) {
        counts.selected += 1;
        let hash = pod.annotations.as_ref().and_then(|a| a.get(INJECTED));
        if let Some(hash) = hash {
            counts.injected += 1;
            if hash != current_hash {
                counts.stale += 1;
            }
        }
    }
    counts
}

/// The conditions for an app whose children were applied.
pub fn app_conditions(
    app: &MonitoredApp,
    counts: PodCounts,
    applied: &Applied,
    now: Timestamp,
) -> Vec<Condition> {
    let ns = namespace_of(app);
    let config_map = config_map_name(&app.name_any());
    let hash = applied.config_hash.as_deref().unwrap_or("unknown");
    let (injected_ok, reason, message) = if counts.selected == 0 {
        (false, "NoPodsSelected", format!(
            "spec.selector matches no pods in namespace {ns:?}; check it against the labels of the app's pods"
        ))
    } else if counts.injected < counts.selected {
        (false, "PodsNotInjected", format!(
            "{} of {} selected pods run no agent; restart them (kubectl rollout restart) so the webhook injects it",
            counts.selected - counts.injected, counts.selected
        ))
    } else if counts.stale > 0 {
        (false, "StalePods", format!(
            "{} of {} pods run an agent whose image, resources or mounts differ from the spec; restart them to pick up the change",
            counts.stale, counts.injected
        ))
    } else {
        (
            true,
            "AllPodsInjected",
            format!(
                "all {} selected pods run the current agent",
                counts.selected
            ),
        )
    };
    conditions::applied(
        app.metadata.generation,
        now,
        format!("agent config {hash} and scrape targets are applied"),
        vec![
            Check {
                type_: "ConfigRendered",
                ok: true,
                reason: "ConfigApplied",
                message: format!(
                    "ConfigMap {config_map} holds agent config {hash}; running agents reload it without a restart"
                ),
            },
            Check {
                type_: "Injected",
                ok: injected_ok,
                reason,
                message,
            },
        ],
    )
}

/// Writes the status and publishes Events for what changed.
pub async fn publish(
    app: &MonitoredApp,
    pods: &[ObjectMeta],
    applied: &Applied,
    ctx: &Context,
) -> Result<(), Error> {
    let sidecar = sidecar_for(app, &ctx.settings);
    let counts = count_pods(pods, &sidecar.spec_hash());
    let previous = app.status.clone().unwrap_or_default();
    let status = MonitoredAppStatus {
        observed_generation: app.metadata.generation,
        conditions: conditions::merge(
            &previous.conditions,
            app_conditions(app, counts, applied, Timestamp::now()),
        ),
        selected_pods: counts.selected,
        injected_pods: counts.injected,
        stale_pods: counts.stale,
        config_hash: applied.config_hash.clone(),
    };
    let produced = format!(
        "agent config {}",
        applied.config_hash.as_deref().unwrap_or("unknown")
    );
    if !conditions::publish(ctx, app, &previous, &status, &produced, &applied.outcome).await? {
        return Ok(());
    }
    if counts.stale > previous.stale_pods {
        report::event(
            ctx,
            app,
            EventType::Warning,
            "StalePods",
            format!(
                "{} pods run an outdated agent image or resources; restart them to pick up the change",
                counts.stale
            ),
        )
        .await;
    }
    Ok(())
}
