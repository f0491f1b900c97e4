//! `ReleaseState` and `AppIndex`: which releases are live, how they are labelled, and that the
//! version matches what the injected agent reports.

use serde_json::json;

use super::{controller_revision, monitored_app, replica_set, stateful_set, unix};
use crate::signals::apps::AppIndex;
use crate::signals::releases::{Release, ReleaseState, WorkloadKind};

const T1: &str = "2024-05-01T10:00:00Z";
const T2: &str = "2024-05-02T09:30:00Z";

fn release(version: &str, revision: &str, image: &str, started: &str) -> Release {
    Release {
        namespace: "shop".into(),
        app: "checkout".into(),
        version: version.into(),
        revision: revision.into(),
        image: image.into(),
        started: Some(unix(started)),
    }
}

fn checkout_labels(version: &str) -> Vec<(&'static str, String)> {
    vec![
        ("app", "checkout".into()),
        ("app.kubernetes.io/version", version.into()),
    ]
}

fn rs(
    revision: u32,
    created: &str,
    replicas: i32,
    version: &str,
) -> k8s_openapi::api::apps::v1::ReplicaSet {
    let labels = checkout_labels(version);
    let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let image = format!("registry.example/checkout:{version}");
    replica_set(
        "checkout",
        revision,
        created,
        replicas,
        &labels,
        &[("api", &image)],
    )
}

fn apps() -> AppIndex {
    let mut apps = AppIndex::default();
    apps.apply(&monitored_app("checkout", "checkout", None));
    apps
}

/// During a rollout both the new revision and the old one that still has pods are live; once
/// the old ReplicaSet is scaled to zero only the newest remains. Versions come from the
/// `app.kubernetes.io/version` label (the default release source), timestamps from the
/// ReplicaSets' creation.
#[test]
fn a_deployment_rollout_exports_every_live_revision() {
    let apps = apps();
    let mut state = ReleaseState::default();
    state.observe_replica_set(&rs(1, T1, 3, "17.1"));
    state.observe_replica_set(&rs(2, T2, 1, "17.2"));
    assert_eq!(
        state.releases(&apps),
        vec![
            release("17.1", "1", "registry.example/checkout:17.1", T1),
            release("17.2", "2", "registry.example/checkout:17.2", T2),
        ]
    );
    state.observe_replica_set(&rs(1, T1, 0, "17.1"));
    assert_eq!(
        state.releases(&apps),
        vec![release("17.2", "2", "registry.example/checkout:17.2", T2)]
    );
    // A Deployment scaled to zero still has a current release.
    state.observe_replica_set(&rs(2, T2, 0, "17.2"));
    assert_eq!(state.releases(&apps).len(), 1);
}

/// Deleting the ReplicaSets (the Deployment was deleted) removes the releases, and a re-list
/// forgets ReplicaSets deleted while the watch was down.
#[test]
fn deleted_workloads_leave_no_release() {
    let apps = apps();
    let mut state = ReleaseState::default();
    state.observe_replica_set(&rs(1, T1, 3, "17.1"));
    state.observe_replica_set(&rs(2, T2, 3, "17.2"));
    state.delete(WorkloadKind::ReplicaSet, "shop", "checkout-1abc");
    assert_eq!(state.releases(&apps).len(), 1);
    state.begin_relist(WorkloadKind::ReplicaSet);
    state.end_relist(WorkloadKind::ReplicaSet);
    assert!(state.releases(&apps).is_empty());
}

/// With `release.source: imageTag` the version is the release container's image tag (as the
/// agent computes it), and `image` names that container's image.
#[test]
fn image_tag_releases_take_the_version_from_the_named_container() {
    let mut apps = AppIndex::default();
    apps.apply(&monitored_app(
        "checkout",
        "checkout",
        Some(json!({"source": "imageTag", "container": "api"})),
    ));
    let mut state = ReleaseState::default();
    state.observe_replica_set(&replica_set(
        "checkout",
        4,
        T1,
        2,
        &[("app", "checkout")],
        &[
            ("proxy", "envoyproxy/envoy:v1.30.1"),
            (
                "api",
                "registry.example:5000/shop/checkout:2024.05.1@sha256:abcd",
            ),
        ],
    ));
    assert_eq!(
        state.releases(&apps),
        vec![release(
            "2024.05.1",
            "4",
            "registry.example:5000/shop/checkout:2024.05.1@sha256:abcd",
            T1
        )]
    );
}

/// A missing version label gives `unknown`, the value the agent reports in that case, so the
/// join on `version` still matches.
#[test]
fn a_missing_version_label_is_unknown_like_the_agent() {
    let apps = apps();
    let mut state = ReleaseState::default();
    state.observe_replica_set(&replica_set(
        "checkout",
        1,
        T1,
        1,
        &[("app", "checkout")],
        &[("api", "c:1")],
    ));
    assert_eq!(state.releases(&apps)[0].version, "unknown");
}

/// The `app` label is the `MonitoredApp` selecting the template (not the workload's name),
/// else the template's `app.kubernetes.io/name` label; workloads of no app are ignored, and so
/// are ReplicaSets without a Deployment.
#[test]
fn workloads_are_attributed_to_their_application() {
    let mut apps = AppIndex::default();
    apps.apply(&monitored_app("payments", "checkout", None));
    let mut state = ReleaseState::default();
    state.observe_replica_set(&rs(1, T1, 1, "1.0"));
    state.observe_replica_set(&replica_set(
        "search",
        1,
        T1,
        1,
        &[
            ("app.kubernetes.io/name", "search"),
            ("app.kubernetes.io/version", "3"),
        ],
        &[("s", "s:3")],
    ));
    state.observe_replica_set(&replica_set(
        "tooling",
        1,
        T1,
        1,
        &[("tier", "x")],
        &[("t", "t:1")],
    ));
    let mut bare = rs(1, T1, 1, "9.9");
    bare.metadata.owner_references = None;
    bare.metadata.name = Some("bare".into());
    state.observe_replica_set(&bare);
    let names: Vec<(String, String)> = state
        .releases(&apps)
        .into_iter()
        .map(|r| (r.app, r.version))
        .collect();
    assert_eq!(
        names,
        vec![
            ("payments".into(), "1.0".into()),
            ("search".into(), "3".into())
        ]
    );
}

/// A StatefulSet mid-rollout exports its update revision (the current template) and its
/// current revision (from the stored ControllerRevision), numbered and timed by their
/// ControllerRevisions.
#[test]
fn a_stateful_set_rollout_exports_both_controller_revisions() {
    let apps = apps();
    let mut state = ReleaseState::default();
    let old = [("app", "checkout"), ("app.kubernetes.io/version", "5.0")];
    let new = [("app", "checkout"), ("app.kubernetes.io/version", "5.1")];
    state.observe_revision(&controller_revision(
        "db-6f7",
        "db",
        3,
        T1,
        &old,
        &[("db", "db:5.0")],
    ));
    state.observe_revision(&controller_revision(
        "db-8a9",
        "db",
        4,
        T2,
        &new,
        &[("db", "db:5.1")],
    ));
    state.observe_stateful_set(&stateful_set(
        "db",
        &new,
        &[("db", "db:5.1")],
        "db-6f7",
        "db-8a9",
    ));
    assert_eq!(
        state.releases(&apps),
        vec![
            release("5.0", "3", "db:5.0", T1),
            release("5.1", "4", "db:5.1", T2),
        ]
    );
    // Rollout finished: one release.
    state.observe_stateful_set(&stateful_set(
        "db",
        &new,
        &[("db", "db:5.1")],
        "db-8a9",
        "db-8a9",
    ));
    assert_eq!(
        state.releases(&apps),
        vec![release("5.1", "4", "db:5.1", T2)]
    );
}

/// `AppIndex` forgets deleted apps and apps missing from a re-list; a selector matching
/// nothing it should not (other namespace) is not used.
#[test]
fn the_app_index_follows_monitored_apps() {
    let mut apps = AppIndex::default();
    let app = monitored_app("payments", "checkout", None);
    apps.apply(&app);
    let labels = [("app".to_owned(), "checkout".to_owned())].into();
    assert_eq!(
        apps.resolve("shop", &labels).map(|a| a.name),
        Some("payments")
    );
    // Other namespace: falls back to the `app` label.
    assert_eq!(
        apps.resolve("other", &labels).map(|a| a.name),
        Some("checkout")
    );
    apps.begin_relist();
    apps.end_relist();
    assert!(apps.is_empty());
    apps.apply(&app);
    apps.delete(&app);
    assert_eq!(
        apps.resolve("shop", &labels).map(|a| a.name),
        Some("checkout")
    );
}
