//! Container restarts, the operator's half of crash detection: from the Pods it watches, the
//! counter `vigil_container_restarts_total{namespace, pod, container, app, reason, exit_code}`,
//! increased whenever a container's `restartCount` grows and labelled with the reason and exit
//! code of the termination that caused it (`OOMKilled`/137, `Error`/1, …).
//!
//! # Counting rules
//! - The kubelet keeps a cumulative `restartCount` per container but only the *last*
//!   termination state, so history before the operator saw a pod cannot be split by reason.
//!   Pods found by a (re-)list — at operator start, after a leader change, after the watch was
//!   interrupted — are therefore recorded as a **baseline without counting**: a restarted
//!   operator never counts the same restart twice, and a new series starts at the restarts seen
//!   since. Pods that appear through the live watch are new, so every restart they already
//!   had is counted (baseline 0).
//! - When a single update shows more than one new restart, all of them go to the reason of the
//!   last termination (the only one the kubelet still reports).
//! - A pod recreated under the same name (a StatefulSet pod) continues its series: counters
//!   stay monotonic and only the per-container baselines start again.
//! - Deleted pods keep their series for a grace period (so the last increase is scraped), then
//!   are forgotten: memory is bounded by the pods that exist plus those deleted within the
//!   grace period.
//! - Pods whose application cannot be resolved (no `MonitoredApp` selects them and they have no
//!   application-name label) are tracked but produce no series until they have one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::ResourceExt;

use crate::render::namespace_of;

/// How long the series of a deleted pod stay exported.
pub const DEFAULT_DELETED_POD_GRACE: Duration = Duration::from_secs(300);

/// `reason` label when a restart was seen without a termination state.
pub const UNKNOWN_REASON: &str = "Unknown";

/// How a pod state reached the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sighting {
    /// Part of a (re-)list: restarts of a pod seen for the first time are history and are
    /// recorded as the baseline.
    Listed,
    /// A live watch event: a pod seen for the first time is new, and all its restarts count.
    Changed,
}

/// One counted restart (or several, when one update showed more than one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Increment {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub app: String,
    /// Reason of the last termination, such as `OOMKilled`, `Error` or `Completed`.
    pub reason: String,
    /// Exit code of the last termination, as a decimal string.
    pub exit_code: String,
    /// Number of restarts counted by this increment.
    pub restarts: u64,
}

/// One exported series of `vigil_container_restarts_total`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RestartSeries {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub app: String,
    pub reason: String,
    pub exit_code: String,
    /// Counter value.
    pub restarts: u64,
}

/// Labels of a series inside one pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct SeriesKey {
    container: String,
    app: String,
    reason: String,
    exit_code: String,
}

#[derive(Debug, Default)]
struct PodRecord {
    uid: String,
    /// Last seen `restartCount` per container (regular, init and native sidecar containers).
    restart_counts: HashMap<String, i32>,
    series: BTreeMap<SeriesKey, u64>,
    deleted_at: Option<Instant>,
}

/// Last seen restart counts and the counters derived from them, per pod.
#[derive(Debug)]
pub struct RestartState {
    pods: HashMap<(String, String), PodRecord>,
    grace: Duration,
    /// Pods seen since the last [`RestartState::begin_relist`].
    relisted: Option<HashSet<(String, String)>>,
}

impl Default for RestartState {
    fn default() -> Self {
        RestartState::new(DEFAULT_DELETED_POD_GRACE)
    }
}

impl RestartState {
    /// An empty state whose deleted pods' series are dropped `grace` after the deletion.
    pub fn new(grace: Duration) -> RestartState {
        RestartState {
            pods: HashMap::new(),
            grace,
            relisted: None,
        }
    }

    /// Records the state of `pod`, belonging to `app` (see [`super::apps::AppIndex::resolve`]),
    /// and returns the restarts it shows since the last observation.
    pub fn observe(&mut self, pod: &Pod, app: Option<&str>, sighting: Sighting) -> Vec<Increment> {
        let key = (namespace_of(pod), pod.name_any());
        if let Some(seen) = &mut self.relisted {
            seen.insert(key.clone());
        }
        let uid = pod.uid().unwrap_or_default();
        let known = self.pods.contains_key(&key);
        let record = self.pods.entry(key.clone()).or_default();
        record.deleted_at = None;
        // A first sight, or the same name now used by a new pod: baselines start again.
        let fresh = !known || record.uid != uid;
        if fresh {
            record.uid = uid;
            record.restart_counts.clear();
        }
        let Some(status) = &pod.status else {
            return Vec::new();
        };
        let containers = status
            .container_statuses
            .iter()
            .flatten()
            .chain(status.init_container_statuses.iter().flatten());
        let mut increments = Vec::new();
        for container in containers {
            let now = container.restart_count.max(0);
            let before = match record.restart_counts.insert(container.name.clone(), now) {
                Some(before) => before,
                // A new container of a known pod, or any container of a pod that is new to
                // the cluster, counts from zero; a listed pod's history is its baseline.
                None if known && !fresh => 0,
                None if sighting == Sighting::Changed => 0,
                None => now,
            };
            // A lower count than before cannot happen for one pod uid; take it as a new baseline.
            let Ok(delta) = u64::try_from(now - before) else {
                continue;
            };
            if delta == 0 {
                continue;
            }
            let Some(app) = app else { continue };
            let (reason, exit_code) = last_termination(container);
            let series = SeriesKey {
                container: container.name.clone(),
                app: app.to_owned(),
                reason,
                exit_code,
            };
            *record.series.entry(series.clone()).or_insert(0) += delta;
            increments.push(Increment {
                namespace: key.0.clone(),
                pod: key.1.clone(),
                container: series.container,
                app: series.app,
                reason: series.reason,
                exit_code: series.exit_code,
                restarts: delta,
            });
        }
        increments
    }

    /// Records that `pod` was deleted at `now`; its series are dropped by
    /// [`RestartState::expire`] once the grace period has passed.
    pub fn delete(&mut self, pod: &Pod, now: Instant) {
        let key = (namespace_of(pod), pod.name_any());
        if let Some(record) = self.pods.get_mut(&key) {
            if pod.uid().is_none_or(|uid| uid == record.uid) {
                record.deleted_at.get_or_insert(now);
            }
        }
    }

    /// Starts a full re-list: pods not observed again before [`RestartState::end_relist`]
    /// were deleted while the watch was down.
    pub fn begin_relist(&mut self) {
        self.relisted = Some(HashSet::new());
    }

    /// Ends a re-list: pods it did not contain count as deleted at `now`.
    pub fn end_relist(&mut self, now: Instant) {
        let Some(seen) = self.relisted.take() else {
            return;
        };
        for (key, record) in &mut self.pods {
            if !seen.contains(key) {
                record.deleted_at.get_or_insert(now);
            }
        }
    }

    /// Forgets pods deleted more than the grace period before `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.pods.len();
        let grace = self.grace;
        self.pods.retain(|_, record| {
            record
                .deleted_at
                .is_none_or(|at| now.saturating_duration_since(at) < grace)
        });
        before - self.pods.len()
    }

    /// Number of pods tracked (live, and deleted within the grace period).
    pub fn tracked_pods(&self) -> usize {
        self.pods.len()
    }

    /// Every exported series, in no particular order.
    pub fn series(&self) -> Vec<RestartSeries> {
        self.pods
            .iter()
            .flat_map(|((namespace, pod), record)| {
                record
                    .series
                    .iter()
                    .map(move |(key, restarts)| RestartSeries {
                        namespace: namespace.clone(),
                        pod: pod.clone(),
                        container: key.container.clone(),
                        app: key.app.clone(),
                        reason: key.reason.clone(),
                        exit_code: key.exit_code.clone(),
                        restarts: *restarts,
                    })
            })
            .collect()
    }
}

/// `(reason, exit code)` of the container's last termination.
fn last_termination(container: &ContainerStatus) -> (String, String) {
    let terminated = container
        .last_state
        .as_ref()
        .and_then(|state| state.terminated.as_ref());
    match terminated {
        Some(t) => (
            t.reason
                .clone()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| UNKNOWN_REASON.to_owned()),
            t.exit_code.to_string(),
        ),
        None => (UNKNOWN_REASON.to_owned(), String::new()),
    }
}
