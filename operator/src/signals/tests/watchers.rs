//! The signal watchers end to end through a real `kube::Client` talking to an in-memory API
//! server that serves LIST and WATCH.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::fake_watch::FakeWatchApi;
use super::{controller_revision, monitored_app, pod, replica_set, stateful_set};
use crate::signals::{SignalOptions, Signals};

async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pods and workloads that exist when the operator starts are listed (restarts as baseline,
/// releases exported); later changes arrive by WATCH: a new restart is counted under the
/// `MonitoredApp`'s name with its reason, a new ReplicaSet adds a release, a deleted
/// `MonitoredApp` changes attribution; and `run` stops on shutdown.
#[tokio::test]
async fn watchers_follow_the_cluster() {
    let api = FakeWatchApi::default();
    let labels = [("app", "checkout"), ("app.kubernetes.io/version", "17.1")];
    let app = monitored_app("payments", "checkout", None);
    api.apply(&app);
    api.apply(&pod(
        "checkout-0",
        "u1",
        &labels,
        &[("api", 4, Some(("Error", 1)))],
    ));
    api.apply(&replica_set(
        "checkout",
        1,
        "2024-05-01T10:00:00Z",
        2,
        &labels,
        &[("api", "c:17.1")],
    ));

    let signals = Signals::default();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn({
        let signals = signals.clone();
        let client = api.client();
        async move {
            signals
                .run(client, &SignalOptions::default(), async {
                    let _ = stopped.await;
                })
                .await;
        }
    });

    eventually("the listed release", || signals.releases().len() == 1).await;
    assert_eq!(signals.releases()[0].app, "payments");
    eventually("every watch to be open", || api.watch_requests() >= 5).await;
    assert!(
        signals.restart_series().is_empty(),
        "listed restarts are a baseline"
    );

    api.apply(&pod(
        "checkout-0",
        "u1",
        &labels,
        &[("api", 5, Some(("OOMKilled", 137)))],
    ));
    eventually("the restart", || !signals.restart_series().is_empty()).await;
    let series = signals.restart_series();
    assert_eq!(series.len(), 1);
    assert_eq!(
        (
            series[0].app.as_str(),
            series[0].reason.as_str(),
            series[0].exit_code.as_str(),
            series[0].restarts
        ),
        ("payments", "OOMKilled", "137", 1)
    );

    let new_labels = [("app", "checkout"), ("app.kubernetes.io/version", "17.2")];
    api.apply(&replica_set(
        "checkout",
        2,
        "2024-05-02T10:00:00Z",
        1,
        &new_labels,
        &[("api", "c:17.2")],
    ));
    eventually("the new release", || signals.releases().len() == 2).await;

    let sts_labels = [("app", "ledger"), ("app.kubernetes.io/version", "3")];
    api.apply(&controller_revision(
        "ledger-1",
        "ledger",
        1,
        "2024-05-03T10:00:00Z",
        &sts_labels,
        &[("db", "db:3")],
    ));
    api.apply(&stateful_set(
        "ledger",
        &sts_labels,
        &[("db", "db:3")],
        "ledger-1",
        "ledger-1",
    ));
    eventually("the StatefulSet release", || {
        signals
            .releases()
            .iter()
            .any(|r| r.app == "ledger" && r.revision == "1" && r.started.is_some())
    })
    .await;

    api.delete(&app);
    eventually("attribution by label once the MonitoredApp is gone", || {
        signals
            .releases()
            .iter()
            .filter(|r| r.app == "checkout")
            .count()
            == 2
    })
    .await;

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run stops on shutdown")
        .unwrap();
}
