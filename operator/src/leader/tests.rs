//! Leader election: the pure decision, and rounds against the in-memory API server.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

use super::*;
use crate::fake_api::FakeApiServer;

const DURATION: Duration = Duration::from_secs(15);

fn spec(holder: Option<&str>, renewed_ago_secs: i64, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: holder.map(str::to_owned),
        lease_duration_seconds: Some(15),
        renew_time: Some(MicroTime(now - SignedDuration::from_secs(renewed_ago_secs))),
        ..LeaseSpec::default()
    }
}

/// Who acts in a round depends only on the holder and the age of the last renewal.
#[test]
fn decision_follows_holder_and_expiry() {
    let now = Timestamp::now();
    assert_eq!(decide(None, now, "a", DURATION), Decision::Create);
    assert_eq!(
        decide(Some(&spec(Some("a"), 100, now)), now, "a", DURATION),
        Decision::Renew
    );
    assert_eq!(
        decide(Some(&spec(None, 1, now)), now, "a", DURATION),
        Decision::Acquire
    );
    assert_eq!(
        decide(Some(&spec(Some("b"), 5, now)), now, "a", DURATION),
        Decision::Wait { holder: "b".into() }
    );
    assert_eq!(
        decide(Some(&spec(Some("b"), 15, now)), now, "a", DURATION),
        Decision::Acquire
    );
    let never_renewed = LeaseSpec {
        holder_identity: Some("b".into()),
        ..LeaseSpec::default()
    };
    assert_eq!(
        decide(Some(&never_renewed), now, "a", DURATION),
        Decision::Acquire
    );
}

/// The renewal interval is a third of the lease duration.
#[test]
fn renews_at_a_third_of_the_duration() {
    let settings = settings("a", DURATION);
    assert_eq!(settings.renew_interval(), Duration::from_secs(5));
}

fn settings(identity: &str, duration: Duration) -> LeaseSettings {
    LeaseSettings {
        name: "vigil-operator".into(),
        namespace: "vigil-system".into(),
        identity: identity.into(),
        duration,
    }
}

fn holder(server: &FakeApiServer) -> Option<String> {
    let lease: Lease = server.fetch("leases", "vigil-system", "vigil-operator")?;
    lease.spec?.holder_identity
}

/// One replica creates and renews the lease, the other waits; after a release the other takes
/// over and the transition is counted.
#[tokio::test]
async fn one_leader_at_a_time_and_release_hands_over() {
    let server = FakeApiServer::new();
    let a = LeaderElector::new(server.client(), settings("a", DURATION));
    let b = LeaderElector::new(server.client(), settings("b", DURATION));

    assert!(a.try_lead().await.unwrap());
    assert!(!b.try_lead().await.unwrap());
    assert!(a.try_lead().await.unwrap());
    assert_eq!(holder(&server).as_deref(), Some("a"));

    a.release().await.unwrap();
    assert_eq!(holder(&server), None);
    assert!(b.try_lead().await.unwrap());
    assert!(!a.try_lead().await.unwrap());
    let lease: Lease = server
        .fetch("leases", "vigil-system", "vigil-operator")
        .unwrap();
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(1));
}

/// A lease its holder stopped renewing is taken over.
#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    let server = FakeApiServer::new();
    let now = Timestamp::now();
    server.create(&Lease {
        metadata: ObjectMeta {
            name: Some("vigil-operator".into()),
            namespace: Some("vigil-system".into()),
            ..ObjectMeta::default()
        },
        spec: Some(spec(Some("crashed"), 60, now)),
    });
    let b = LeaderElector::new(server.client(), settings("b", DURATION));
    assert!(b.try_lead().await.unwrap());
    assert_eq!(holder(&server).as_deref(), Some("b"));
}

/// The election loop reports leadership and releases the lease on shutdown.
#[tokio::test]
async fn run_reports_leadership_and_releases_on_shutdown() {
    let server = FakeApiServer::new();
    let elector = LeaderElector::new(server.client(), settings("a", Duration::from_millis(300)));
    let (leading_tx, mut leading) = watch::channel(false);
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(elector.run(leading_tx, shutdown));

    tokio::time::timeout(Duration::from_secs(10), leading.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(holder(&server).as_deref(), Some("a"));

    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert!(!*leading.borrow());
    assert_eq!(holder(&server), None);
}
