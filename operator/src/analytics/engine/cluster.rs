//! The engine in a cluster: lists AlertPolicies and SLOs (with the SLOs' MonitoredApps, whose
//! request metrics the SLIs read; in `--namespace` or everywhere) every [`DISCOVERY_INTERVAL`]
//! into jobs, competes for the `vigil-analytics` Lease so only one
//! replica fits and publishes, serves `/metrics`, `/healthz` and `/readyz`, and writes each
//! policy's and SLO's `Analytics` condition.
//!
//! The operator's controllers write an AlertPolicy's or SLO's status by merging their own
//! condition types into the conditions the object already shows, so they keep `Analytics`; the
//! engine does the same from its side, with the object's `resourceVersion` in the patch so
//! neither write can silently drop the other's condition (a conflict is retried on the next
//! round).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use prometheus::Registry;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use vigil_crds::{AlertPolicy, MonitoredApp, Slo};

use super::exposition::{self, EngineMetrics, Published};
use super::jobs::{jobs, slo_jobs, JobKey};
use super::prometheus::{PrometheusClient, PrometheusError};
use super::runner::{Outcome, RunContext};
use super::{Engine, EngineArgs};
use crate::controllers::conditions;
use crate::leader::{LeaderElector, LeaseSettings};

/// How often AlertPolicies are listed (and conditions written).
pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(30);
/// The condition type the engine owns.
pub const CONDITION: &str = "Analytics";
/// Field manager of the engine's status writes.
const FIELD_MANAGER: &str = "vigil-analytics";

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot connect to Kubernetes")]
    Kube(#[source] crate::run::RunError),
    #[error("invalid Prometheus settings")]
    Prometheus(#[source] PrometheusError),
    #[error("cannot register the engine metrics")]
    Metrics(#[source] prometheus::Error),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The `Analytics` condition of a policy whose jobs ended with `outcomes` (rule name and
/// outcome); `None` until every job has run once.
pub fn policy_condition(
    outcomes: &[(&str, &Outcome)],
    generation: Option<i64>,
    now: Timestamp,
) -> Option<Condition> {
    if outcomes.is_empty() {
        return None;
    }
    let failing: Vec<&(&str, &Outcome)> = outcomes.iter().filter(|(_, o)| !o.ok()).collect();
    let reason = failing.first().map_or("Fitted", |(_, o)| o.reason());
    let message = outcomes
        .iter()
        .map(|(rule, o)| format!("rule {rule}: {}", o.message()))
        .collect::<Vec<_>>()
        .join("; ");
    Some(conditions::condition(
        CONDITION,
        failing.is_empty(),
        reason,
        message,
        generation,
        now,
    ))
}

/// Writes the `Analytics` condition of `object` (whose conditions are `existing`) when it
/// differs from what the object shows.
async fn write_condition<K>(
    client: &Client,
    object: &K,
    existing: &[Condition],
    condition: Condition,
) where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let same = existing.iter().any(|c| {
        c.type_ == condition.type_
            && c.status == condition.status
            && c.reason == condition.reason
            && c.message == condition.message
            && c.observed_generation == condition.observed_generation
    });
    if same {
        return;
    }
    let merged = conditions::merge(existing, vec![condition]);
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": object.resource_version() },
        "status": { "conditions": merged },
    });
    if let Err(e) = api
        .patch_status(
            &object.name_any(),
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(patch),
        )
        .await
    {
        tracing::debug!(
            kind = %K::kind(&()),
            name = %object.name_any(),
            error = %e,
            "cannot write the Analytics condition yet"
        );
    }
}

/// The conditions to write: per policy, from the outcomes of its jobs.
fn conditions_by_policy(
    policies: &[AlertPolicy],
    outcomes: &[(JobKey, Option<Outcome>)],
    now: Timestamp,
) -> Vec<(AlertPolicy, Condition)> {
    let mut by_policy: BTreeMap<(String, String), Vec<(&str, &Outcome)>> = BTreeMap::new();
    let mut incomplete = std::collections::BTreeSet::new();
    for (key, outcome) in outcomes.iter().filter(|(k, _)| !k.is_slo()) {
        let id = (key.namespace.clone(), key.policy.clone());
        match outcome {
            Some(o) => by_policy.entry(id).or_default().push((&key.rule, o)),
            None => {
                incomplete.insert(id);
            }
        }
    }
    policies
        .iter()
        .filter_map(|p| {
            let id = (crate::render::namespace_of(p), p.name_any());
            if incomplete.contains(&id) {
                return None;
            }
            let condition = policy_condition(by_policy.get(&id)?, p.metadata.generation, now)?;
            Some((p.clone(), condition))
        })
        .collect()
}

/// The `Analytics` condition of an SLO whose budget forecast ended with `outcome`.
pub fn slo_condition(outcome: &Outcome, generation: Option<i64>, now: Timestamp) -> Condition {
    conditions::condition(
        CONDITION,
        outcome.ok(),
        outcome.reason(),
        format!("error budget forecast: {}", outcome.message()),
        generation,
        now,
    )
}

/// The conditions to write: per SLO, from the outcome of its budget job.
fn conditions_by_slo(
    slos: &[Slo],
    outcomes: &[(JobKey, Option<Outcome>)],
    now: Timestamp,
) -> Vec<(Slo, Condition)> {
    let by_key: BTreeMap<&JobKey, &Outcome> = outcomes
        .iter()
        .filter_map(|(k, o)| Some((k, o.as_ref()?)))
        .collect();
    slos.iter()
        .filter_map(|slo| {
            let key = JobKey::slo(&crate::render::namespace_of(slo), &slo.name_any());
            let outcome = by_key.get(&key)?;
            Some((
                slo.clone(),
                slo_condition(outcome, slo.metadata.generation, now),
            ))
        })
        .collect()
}

/// One discovery round: lists the AlertPolicies, SLOs and MonitoredApps (of `namespace`, or
/// all), writes
/// each one's `Analytics` condition from `outcomes` when `write_status` (the leader), and
/// returns the jobs at `step`. SLOs that cannot be listed (the CRD missing, or the engine's
/// role predating SLO budget forecasts) leave out their jobs with a warning rather than
/// stopping the policies' jobs; MonitoredApps that cannot be listed leave the SLOs' jobs
/// reading their recordings alone.
pub async fn sync(
    client: &Client,
    namespace: Option<&str>,
    step: i64,
    outcomes: &[(JobKey, Option<Outcome>)],
    write_status: bool,
) -> Result<Vec<super::jobs::Job>, kube::Error> {
    let policies = list::<AlertPolicy>(client, namespace).await?;
    let slos = match list::<Slo>(client, namespace).await {
        Ok(slos) => slos,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list SLOs: no error-budget forecasts this round");
            Vec::new()
        }
    };
    // Only read to fill an SLO's ratio from the raw series before its recording has history;
    // without them the forecasts read the recordings alone.
    let apps = if slos.is_empty() {
        Vec::new()
    } else {
        match list::<MonitoredApp>(client, namespace).await {
            Ok(apps) => apps,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "cannot list MonitoredApps: error-budget forecasts read the SLOs' \
                     recordings alone this round"
                );
                Vec::new()
            }
        }
    };
    if write_status {
        let now = Timestamp::now();
        for (policy, condition) in conditions_by_policy(&policies, outcomes, now) {
            let existing = policy
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default();
            write_condition(client, &policy, &existing, condition).await;
        }
        for (slo, condition) in conditions_by_slo(&slos, outcomes, now) {
            let existing = slo
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default();
            write_condition(client, &slo, &existing, condition).await;
        }
    }
    let mut out = jobs(&policies, step);
    out.extend(slo_jobs(&slos, &apps, step));
    Ok(out)
}

async fn list<K>(client: &Client, namespace: Option<&str>) -> Result<Vec<K>, kube::Error>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    Ok(api.list(&ListParams::default()).await?.items)
}

/// Runs the engine until SIGTERM or Ctrl-C.
pub async fn run(args: EngineArgs) -> Result<(), EngineError> {
    let client = crate::run::client(args.kubeconfig.as_ref())
        .await
        .map_err(EngineError::Kube)?;
    let (shutdown_tx, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        crate::run::shutdown_signal().await;
        tracing::info!("shutting down");
        shutdown_tx.send_replace(true);
    });
    serve(client, args, shutdown).await
}

/// Runs the engine with `client` until `shutdown` turns `true`: serves the exposition,
/// competes for the lease, discovers policies, and runs their jobs while leading. On the way
/// out it withdraws its series and releases the lease.
pub async fn serve(
    client: Client,
    args: EngineArgs,
    shutdown: watch::Receiver<bool>,
) -> Result<(), EngineError> {
    let prometheus =
        PrometheusClient::new(args.prometheus_settings()).map_err(EngineError::Prometheus)?;
    let registry = Registry::new();
    let metrics = EngineMetrics::new(&registry).map_err(EngineError::Metrics)?;
    crate::telemetry::register_process(&registry).map_err(EngineError::Metrics)?;
    let published = Published::default();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| EngineError::Bind {
            addr: args.listen,
            source,
        })?;
    tracing::info!(
        prometheus = %prometheus.base(),
        listen = %args.listen,
        "analytics engine starting"
    );

    let ready = Arc::new(AtomicBool::new(false));
    let mut stop_server = shutdown.clone();
    let server = tokio::spawn(exposition::serve(
        listener,
        registry,
        published.clone(),
        ready.clone(),
        async move {
            let _ = stop_server.wait_for(|s| *s).await;
        },
    ));

    let elector = LeaderElector::new(
        client.clone(),
        LeaseSettings {
            name: "vigil-analytics".to_owned(),
            namespace: args.operator_namespace.clone(),
            identity: args.identity.clone(),
            duration: Duration::from_secs(args.lease_duration_seconds),
        },
    );
    let (leading_tx, leading) = watch::channel(false);
    let (stop_election, election_shutdown) = watch::channel(false);
    let election = tokio::spawn(elector.run(leading_tx, election_shutdown));

    let settings = args.run_settings();
    let step = settings.step;
    let engine = Engine::new(
        RunContext {
            prometheus,
            published,
            metrics,
            settings,
        },
        usize::try_from(args.max_concurrent_fits).unwrap_or(2),
    );
    let (jobs_tx, jobs_rx) = watch::channel(Vec::new());
    let (outcomes_tx, mut outcomes_rx) = watch::channel(Vec::new());
    let engine_task =
        tokio::spawn(engine.run(jobs_rx, leading.clone(), shutdown.clone(), outcomes_tx));

    let mut shutdown_discovery = shutdown.clone();
    loop {
        let outcomes = outcomes_rx.borrow_and_update().clone();
        let leads = *leading.borrow();
        match sync(&client, args.namespace.as_deref(), step, &outcomes, leads).await {
            Ok(wanted) => {
                jobs_tx.send_if_modified(|current| {
                    let changed = *current != wanted;
                    if changed {
                        tracing::info!(jobs = wanted.len(), "analytics jobs updated");
                        *current = wanted.clone();
                    }
                    changed
                });
                ready.store(true, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "cannot list AlertPolicies"),
        }
        tokio::select! {
            _ = tokio::time::sleep(DISCOVERY_INTERVAL) => {}
            _ = shutdown_discovery.wait_for(|s| *s) => break,
        }
    }
    ready.store(false, Ordering::Relaxed);
    let _ = engine_task.await;
    stop_election.send_replace(true);
    let _ = election.await;
    let _ = server.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    /// All jobs fitted: `True`/`Fitted`; one failing: `False` with that job's reason, and the
    /// message names every rule; no outcome yet: no condition.
    #[test]
    fn condition_summarises_the_rules() {
        let now = Timestamp::now();
        let fitted = Outcome::Fitted { series: 2 };
        let down = Outcome::PrometheusFailed {
            category: "PrometheusUnavailable",
            message: "cannot reach prometheus at http://p:9090".into(),
        };
        let c = policy_condition(&[("A", &fitted)], Some(3), now).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Fitted"));
        assert_eq!(c.type_, CONDITION);
        assert_eq!(c.observed_generation, Some(3));
        let c = policy_condition(&[("A", &fitted), ("B", &down)], None, now).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "PrometheusUnavailable")
        );
        assert_eq!(
            c.message,
            "rule A: 2 series modelled; rule B: cannot reach prometheus at http://p:9090"
        );
        let short = Outcome::TooLittleHistory { have: 3, need: 10 };
        let c = policy_condition(&[("A", &short)], None, now).unwrap();
        assert_eq!(c.reason, "TooLittleHistory");
        assert!(policy_condition(&[], None, now).is_none());
    }

    /// An SLO's condition says it is about the budget forecast and takes its reason and status
    /// from the job's outcome; policy conditions never count an SLO's job as a rule.
    #[test]
    fn slo_condition_reads_the_budget_job() {
        let now = Timestamp::now();
        let c = slo_condition(&Outcome::Fitted { series: 2 }, Some(4), now);
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            ("Analytics", "True", "Fitted")
        );
        assert_eq!(c.message, "error budget forecast: 2 series modelled");
        assert_eq!(c.observed_generation, Some(4));
        let c = slo_condition(&Outcome::NoData, None, now);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "NoData"));

        let policy: AlertPolicy = serde_yaml::from_str(
            "apiVersion: vigil.dev/v1alpha1\nkind: AlertPolicy\n\
             metadata: {name: checkout, namespace: shop}\n\
             spec: {appRef: {name: checkout}, rules: []}\n",
        )
        .unwrap();
        let outcomes = vec![(JobKey::slo("shop", "checkout"), Some(Outcome::NoData))];
        assert!(conditions_by_policy(&[policy], &outcomes, now).is_empty());
    }
}
