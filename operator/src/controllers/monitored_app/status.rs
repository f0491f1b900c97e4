//! A `MonitoredApp`'s status: which pods its selector matches, how many run the agent, how many
//! run an outdated agent (their `vigil.dev/injected` hash differs from the sidecar the webhook
//! would inject now, so only a restart picks up the change), the published config hash and the
//! `Ready`, `ConfigRendered`, `Injected` and `PodLogs` conditions. Pods the API server refused
//! to create (`FailedCreate` Events of the selected workloads, such as a Pod Security
//! rejection) are reported as such, never as a selector that matches nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::core::{PartialObjectMeta, Selector, SelectorExt};
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
use crate::render::inject::pod_security::ENFORCE_LABEL;
use crate::render::inject::{PodSecurityLevel, INJECTED};
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

/// The Pod Security level the app's namespace enforces (its `pod-security.kubernetes.io/enforce`
/// label), which decides whether injected pods may mount the node's pod log directory.
pub async fn namespace_level(app: &MonitoredApp, ctx: &Context) -> Result<PodSecurityLevel, Error> {
    let ns = namespace_of(app);
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let found = api
        .get_metadata_opt(&ns)
        .await
        .map_err(|source| ObserveError::Read {
            object: describe(app),
            what: format!("the labels of namespace {ns}"),
            source,
        })?;
    Ok(PodSecurityLevel::enforced_by(
        found.as_ref().and_then(|n| n.metadata.labels.as_ref()),
    ))
}

/// A workload selected by the app whose pods the API server refused to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreationFailure {
    /// `ReplicaSet/<name>` or `StatefulSet/<name>`.
    pub workload: String,
    /// The API server's refusal, as the workload controller recorded it.
    pub message: String,
}

/// Workload kinds whose `FailedCreate` Events are read (the operator may read their templates).
const WORKLOAD_KINDS: [&str; 2] = ["ReplicaSet", "StatefulSet"];

/// The `FailedCreate` Events of the app's namespace whose workload's pod template `selector`
/// matches: pods of the app that could not be created at all, newest first, one per workload.
pub async fn creation_failures(
    app: &MonitoredApp,
    selector: &Selector,
    ctx: &Context,
) -> Result<Vec<CreationFailure>, Error> {
    let ns = namespace_of(app);
    let read_error = |what: String| {
        let object = describe(app);
        move |source| ObserveError::Read {
            object,
            what,
            source,
        }
    };
    let events: Api<Event> = Api::namespaced(ctx.client.clone(), &ns);
    let mut events = events
        .list(&ListParams::default())
        .await
        .map_err(read_error(format!("the Events of namespace {ns}")))?
        .items;
    events.retain(|e| {
        e.reason.as_deref() == Some("FailedCreate")
            && e.involved_object
                .kind
                .as_deref()
                .is_some_and(|k| WORKLOAD_KINDS.contains(&k))
    });
    events.sort_by_key(|e| std::cmp::Reverse(event_time(e)));
    let mut failures: Vec<CreationFailure> = Vec::new();
    for event in events {
        let (Some(kind), Some(name)) = (
            event.involved_object.kind.as_deref(),
            event.involved_object.name.as_deref(),
        ) else {
            continue;
        };
        let workload = format!("{kind}/{name}");
        if failures.iter().any(|f| f.workload == workload) {
            continue;
        }
        let template = match kind {
            "ReplicaSet" => Api::<ReplicaSet>::namespaced(ctx.client.clone(), &ns)
                .get_opt(name)
                .await
                .map_err(read_error(workload.clone()))?
                .and_then(|w| w.spec.template),
            _ => Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns)
                .get_opt(name)
                .await
                .map_err(read_error(workload.clone()))?
                .map(|w| w.spec.template),
        };
        if template_selected(template.as_ref(), selector) {
            failures.push(CreationFailure {
                workload,
                message: event.message.unwrap_or_default(),
            });
        }
    }
    Ok(failures)
}

fn template_selected(template: Option<&PodTemplateSpec>, selector: &Selector) -> bool {
    let empty = BTreeMap::new();
    let labels = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
        .unwrap_or(&empty);
    template.is_some() && selector.matches(labels)
}

fn event_time(event: &Event) -> Option<Timestamp> {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0))
}

/// What the app's pods look like from the API server, for its conditions.
#[derive(Clone, Debug, Default)]
pub struct PodsObserved {
    /// Selected, injected and stale pods.
    pub counts: PodCounts,
    /// Pod Security level of the namespace.
    pub level: Option<PodSecurityLevel>,
    /// Selected workloads whose pods could not be created.
    pub failures: Vec<CreationFailure>,
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
    observed: &PodsObserved,
    applied: &Applied,
    now: Timestamp,
) -> Vec<Condition> {
    let ns = namespace_of(app);
    let counts = observed.counts;
    let config_map = config_map_name(&app.name_any());
    let hash = applied.config_hash.as_deref().unwrap_or("unknown");
    let (injected_ok, reason, message) = if let Some(failure) = observed.failures.first() {
        (
            false,
            "PodsRejected",
            rejected_message(failure, observed.failures.len()),
        )
    } else if counts.selected == 0 {
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
            pod_logs_check(app, observed.level),
        ],
    )
}

/// One sentence for pods the API server refused to create.
fn rejected_message(failure: &CreationFailure, workloads: usize) -> String {
    let mut message: String = failure.message.chars().take(400).collect();
    if message.len() < failure.message.len() {
        message.push('…');
    }
    let others = match workloads {
        1 => String::new(),
        n => format!(" (and {} more selected workloads)", n - 1),
    };
    let hint = if message.contains("vigil") {
        "what the webhook injected is refused: check the operator's version and the namespace's pod-security.kubernetes.io/enforce label, or set the pod label vigil.dev/inject=false to run the workload without the agent"
    } else {
        "the cause is in the workload, not in the agent; fix it and the pods are created with the agent"
    };
    format!(
        "{} cannot create pods{others}: {message}; {hint}",
        failure.workload
    )
}

/// `PodLogs`: whether the app's pods can have their log files read, which needs a hostPath
/// volume that Pod Security `baseline` and `restricted` forbid.
fn pod_logs_check(app: &MonitoredApp, level: Option<PodSecurityLevel>) -> Check {
    let wanted = app.spec.logs.as_ref().is_some_and(|l| l.container_logs);
    let ns = namespace_of(app);
    match level {
        _ if !wanted => Check {
            type_: "PodLogs",
            ok: true,
            reason: "NotRequested",
            message: "spec.logs.containerLogs is off: the agent reads no pod log files".to_owned(),
        },
        Some(level) if !level.allows_host_path() => Check {
            type_: "PodLogs",
            ok: false,
            reason: "PodSecurityForbidsHostPath",
            message: format!(
                "namespace {ns:?} enforces Pod Security level {level} (label {ENFORCE_LABEL}), which forbids the hostPath volume pod log files are read from, so the agent in these pods reads no logs and detects no crashes in them (OTLP, metrics and restart signals still work); label the namespace {ENFORCE_LABEL}=privileged to collect them, or send logs over OTLP"
            ),
        },
        _ => Check::passed(
            "PodLogs",
            "the agent reads the pods' own log files".to_owned(),
        ),
    }
}

/// Writes the status and publishes Events for what changed.
pub async fn publish(
    app: &MonitoredApp,
    pods: &[ObjectMeta],
    level: PodSecurityLevel,
    failures: Vec<CreationFailure>,
    applied: &Applied,
    ctx: &Context,
) -> Result<(), Error> {
    let sidecar = sidecar_for(app, &ctx.settings, level);
    let counts = count_pods(pods, &sidecar.spec_hash());
    let observed = PodsObserved {
        counts,
        level: Some(level),
        failures,
    };
    let previous = app.status.clone().unwrap_or_default();
    let status = MonitoredAppStatus {
        observed_generation: app.metadata.generation,
        conditions: conditions::merge(
            &previous.conditions,
            app_conditions(app, &observed, applied, Timestamp::now()),
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
