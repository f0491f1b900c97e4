//! `RestartState`: what counts as a restart, with which labels, and when series go away.

use std::time::{Duration, Instant};

use kube::runtime::watcher::Event;

use super::{pod, pod_with_init};
use crate::signals::restarts::{Increment, RestartSeries, RestartState, Sighting};
use crate::signals::Signals;

const APP: Option<&str> = Some("checkout");
const LABELS: &[(&str, &str)] = &[("app", "checkout")];

fn series(state: &RestartState) -> Vec<RestartSeries> {
    let mut series = state.series();
    series.sort();
    series
}

fn one(container: &str, reason: &str, exit_code: &str, restarts: u64) -> RestartSeries {
    RestartSeries {
        namespace: "shop".into(),
        pod: "checkout-0".into(),
        container: container.into(),
        app: "checkout".into(),
        reason: reason.into(),
        exit_code: exit_code.into(),
        restarts,
    }
}

/// Restarts a pod already had when it was listed are history: they are not counted, so a
/// restarted operator never counts them twice; later restarts are.
#[test]
fn listed_restarts_are_a_baseline_and_later_ones_count() {
    let mut state = RestartState::default();
    let listed = pod(
        "checkout-0",
        "u1",
        LABELS,
        &[("api", 3, Some(("Error", 1)))],
    );
    assert!(state.observe(&listed, APP, Sighting::Listed).is_empty());
    assert!(series(&state).is_empty());

    let oom = pod(
        "checkout-0",
        "u1",
        LABELS,
        &[("api", 4, Some(("OOMKilled", 137)))],
    );
    let increments = state.observe(&oom, APP, Sighting::Changed);
    assert_eq!(
        increments,
        vec![Increment {
            namespace: "shop".into(),
            pod: "checkout-0".into(),
            container: "api".into(),
            app: "checkout".into(),
            reason: "OOMKilled".into(),
            exit_code: "137".into(),
            restarts: 1,
        }]
    );
    assert_eq!(series(&state), vec![one("api", "OOMKilled", "137", 1)]);

    // The same status again (a resync, another field changed) counts nothing.
    assert!(state.observe(&oom, APP, Sighting::Changed).is_empty());
    assert_eq!(series(&state), vec![one("api", "OOMKilled", "137", 1)]);
}

/// A second operator process (restart, new leader) that lists the same pods exports no
/// increase for restarts the first one already counted.
#[test]
fn a_restarted_operator_does_not_count_old_restarts_again() {
    let mut first = RestartState::default();
    first.observe(
        &pod("checkout-0", "u1", LABELS, &[("api", 0, None)]),
        APP,
        Sighting::Listed,
    );
    let crashed = pod(
        "checkout-0",
        "u1",
        LABELS,
        &[("api", 2, Some(("Error", 2)))],
    );
    assert_eq!(first.observe(&crashed, APP, Sighting::Changed).len(), 1);

    let mut second = RestartState::default();
    assert!(second.observe(&crashed, APP, Sighting::Listed).is_empty());
    let again = pod(
        "checkout-0",
        "u1",
        LABELS,
        &[("api", 3, Some(("Error", 2)))],
    );
    assert_eq!(
        second.observe(&again, APP, Sighting::Changed)[0].restarts,
        1
    );
    assert_eq!(series(&second), vec![one("api", "Error", "2", 1)]);
}

/// A pod that appears through the live watch is new: the restarts it already shows happened
/// since it was created and all count (several in one update go to the last reason).
#[test]
fn a_new_pod_counts_the_restarts_it_already_had() {
    let mut state = RestartState::default();
    let new = pod(
        "checkout-0",
        "u1",
        LABELS,
        &[("api", 2, Some(("Error", 1)))],
    );
    let increments = state.observe(&new, APP, Sighting::Changed);
    assert_eq!(increments.len(), 1);
    assert_eq!(increments[0].restarts, 2);
    assert_eq!(series(&state), vec![one("api", "Error", "1", 2)]);
}

/// Each reason and exit code is its own series, and each container its own.
#[test]
fn reasons_exit_codes_and_containers_label_separate_series() {
    let mut state = RestartState::default();
    let base = &[("api", 0, None), ("worker", 0, None)];
    state.observe(
        &pod("checkout-0", "u1", LABELS, base),
        APP,
        Sighting::Listed,
    );
    let steps = [
        [("api", 1, Some(("OOMKilled", 137))), ("worker", 0, None)],
        [
            ("api", 2, Some(("Error", 1))),
            ("worker", 1, Some(("Completed", 0))),
        ],
        [
            ("api", 3, Some(("OOMKilled", 137))),
            ("worker", 1, Some(("Completed", 0))),
        ],
    ];
    for step in &steps {
        state.observe(
            &pod("checkout-0", "u1", LABELS, step),
            APP,
            Sighting::Changed,
        );
    }
    assert_eq!(
        series(&state),
        vec![
            one("api", "Error", "1", 1),
            one("api", "OOMKilled", "137", 2),
            one("worker", "Completed", "0", 1),
        ]
    );
}

/// Init containers and native sidecars (which restart like regular containers) count too.
#[test]
fn init_and_sidecar_containers_count() {
    let mut state = RestartState::default();
    let before = pod_with_init(
        "checkout-0",
        "u1",
        LABELS,
        &[("api", 0, None)],
        &[("vigil-agent", 0, None)],
    );
    state.observe(&before, APP, Sighting::Listed);
    let after = pod_with_init(
        "checkout-0",
        "u1",
        LABELS,
        &[("api", 0, None)],
        &[("vigil-agent", 1, Some(("OOMKilled", 137)))],
    );
    state.observe(&after, APP, Sighting::Changed);
    assert_eq!(
        series(&state),
        vec![one("vigil-agent", "OOMKilled", "137", 1)]
    );
}

/// A StatefulSet pod recreated under the same name continues its series (counters stay
/// monotonic) and its new containers count from zero.
#[test]
fn a_pod_recreated_under_the_same_name_continues_its_series() {
    let mut state = RestartState::default();
    state.observe(
        &pod("checkout-0", "u1", LABELS, &[("api", 0, None)]),
        APP,
        Sighting::Listed,
    );
    state.observe(
        &pod(
            "checkout-0",
            "u1",
            LABELS,
            &[("api", 5, Some(("Error", 1)))],
        ),
        APP,
        Sighting::Changed,
    );
    let old = pod(
        "checkout-0",
        "u1",
        LABELS,
        &[("api", 5, Some(("Error", 1)))],
    );
    state.delete(&old, Instant::now());
    let recreated = pod(
        "checkout-0",
        "u2",
        LABELS,
        &[("api", 1, Some(("Error", 1)))],
    );
    assert_eq!(
        state.observe(&recreated, APP, Sighting::Changed)[0].restarts,
        1
    );
    assert_eq!(series(&state), vec![one("api", "Error", "1", 6)]);
    // The new pod is live: its series must not expire with the old pod's deletion.
    assert_eq!(state.expire(Instant::now() + Duration::from_secs(3600)), 0);
}

/// Deleted pods keep their series through the grace period (so the last increase is
/// scraped), then are forgotten: memory does not grow with pod churn.
#[test]
fn deleted_pods_are_forgotten_after_the_grace_period() {
    let grace = Duration::from_secs(300);
    let mut state = RestartState::new(grace);
    let t0 = Instant::now();
    for i in 0..100 {
        let name = format!("checkout-{i}");
        state.observe(
            &pod(&name, &format!("u{i}"), LABELS, &[("api", 0, None)]),
            APP,
            Sighting::Listed,
        );
        let crashed = pod(
            &name,
            &format!("u{i}"),
            LABELS,
            &[("api", 1, Some(("Error", 1)))],
        );
        state.observe(&crashed, APP, Sighting::Changed);
        state.delete(&crashed, t0);
    }
    assert_eq!(state.series().len(), 100);
    assert_eq!(state.expire(t0 + grace - Duration::from_secs(1)), 0);
    assert_eq!(state.series().len(), 100);
    assert_eq!(state.expire(t0 + grace), 100);
    assert_eq!(state.tracked_pods(), 0);
    assert!(state.series().is_empty());
}

/// Pods that vanished while the watch was down (missing from the re-list) age out like
/// deleted ones; pods in the re-list stay.
#[test]
fn a_relist_treats_missing_pods_as_deleted() {
    let mut state = RestartState::new(Duration::from_secs(60));
    let t0 = Instant::now();
    for name in ["a", "b"] {
        state.observe(
            &pod(name, name, LABELS, &[("api", 0, None)]),
            APP,
            Sighting::Listed,
        );
    }
    state.begin_relist();
    state.observe(
        &pod("a", "a", LABELS, &[("api", 0, None)]),
        APP,
        Sighting::Listed,
    );
    state.end_relist(t0);
    assert_eq!(state.expire(t0 + Duration::from_secs(60)), 1);
    assert_eq!(state.tracked_pods(), 1);
}

/// A restart seen by a re-list of a pod known before is counted (the baseline is the last
/// count seen, not the re-listed one).
#[test]
fn a_relist_counts_restarts_of_known_pods() {
    let mut state = RestartState::default();
    state.observe(
        &pod("a", "a", LABELS, &[("api", 1, None)]),
        APP,
        Sighting::Listed,
    );
    state.begin_relist();
    let increments = state.observe(
        &pod("a", "a", LABELS, &[("api", 3, Some(("OOMKilled", 137)))]),
        APP,
        Sighting::Listed,
    );
    state.end_relist(Instant::now());
    assert_eq!(increments[0].restarts, 2);
}

/// Pods of no application are tracked but export nothing; their restarts count once an app
/// selects them.
#[test]
fn pods_of_no_application_export_nothing() {
    let mut state = RestartState::default();
    state.observe(
        &pod("x", "x", &[], &[("main", 0, None)]),
        None,
        Sighting::Listed,
    );
    assert!(state
        .observe(
            &pod("x", "x", &[], &[("main", 1, Some(("Error", 1)))]),
            None,
            Sighting::Changed
        )
        .is_empty());
    assert!(state.series().is_empty());
    let increments = state.observe(
        &pod("x", "x", &[], &[("main", 2, Some(("Error", 1)))]),
        Some("late"),
        Sighting::Changed,
    );
    assert_eq!(increments.len(), 1);
    assert_eq!(increments[0].restarts, 1);
}

/// Finished pods (`Succeeded`/`Failed`, such as Jobs) restart no more: their series age out
/// like a deleted pod's, and a listed one is still only a baseline.
#[test]
fn finished_pods_age_out_like_deleted_ones() {
    let signals = Signals::new(Duration::from_secs(60));
    let t0 = Instant::now();
    let running = pod("job-1", "j1", LABELS, &[("main", 2, Some(("Error", 1)))]);
    assert!(signals.on_pod(Event::InitApply(running), t0).is_empty());
    let mut failed = pod("job-1", "j1", LABELS, &[("main", 3, Some(("Error", 1)))]);
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    assert_eq!(signals.on_pod(Event::Apply(failed), t0).len(), 1);
    assert_eq!(signals.restart_series().len(), 1);
    assert_eq!(signals.expire(t0 + Duration::from_secs(59)), 0);
    assert_eq!(signals.expire(t0 + Duration::from_secs(60)), 1);
    assert!(signals.restart_series().is_empty());
}
