//! Two analytics engines (`cluster::serve`, as `vigil-operator analytics` runs it) against
//! the in-memory API server and a real Prometheus, competing for the `vigil-analytics` Lease
//! with a 3 s lease: exactly one fits and publishes at a time, a leader cut off from the API
//! server is replaced within about the lease duration, it stays out when it comes back, and a
//! leader that shuts down hands over at once.
//!
//! The cut is a `tower` layer in front of the in-memory API server that fails every request
//! while it is set: the engine's own lease renewal and policy listing fail as they would on a
//! network partition; its Prometheus and its `/metrics` stay reachable.
//!
//! Not covered: a leader whose whole process is paused (SIGSTOP, a long GC-like stall) past its
//! lease. On resuming, its engine may run a round before its elector notices the lost lease,
//! since leadership is a flag rather than a deadline checked before each publish.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

#[path = "support/prometheus.rs"]
mod prometheus_support;
mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use clap::Parser;
use kube::client::Body;
use support::fake_api::FakeApiServer;
use tokio::sync::watch;
use vigil_crds::AlertPolicy;
use vigil_operator::analytics::engine::{cluster, EngineArgs};

use prometheus_support::{free_port, start};

const LEASE_SECONDS: u64 = 3;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    engine: EngineArgs,
}

/// The in-memory API server behind a switch: while `cut` is set every request fails.
#[derive(Clone)]
struct Partitionable {
    inner: kube::Client,
    cut: Arc<AtomicBool>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Request<Body>> for Partitionable {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let (inner, cut) = (self.inner.clone(), self.cut.load(Ordering::SeqCst));
        Box::pin(async move {
            if cut {
                return Err("connection refused (network partition in the test)".into());
            }
            inner.send(request).await.map_err(Into::into)
        })
    }
}

/// One engine replica.
struct Replica {
    identity: String,
    port: u16,
    cut: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn replica(fake: &FakeApiServer, prometheus: &str, identity: &str) -> Replica {
    let port = free_port();
    let cli = Cli::try_parse_from([
        "analytics".to_owned(),
        format!("--prometheus-url={prometheus}"),
        "--step=2s".to_owned(),
        format!("--listen=127.0.0.1:{port}"),
        "--namespace=shop".to_owned(),
        "--operator-namespace=vigil-system".to_owned(),
        format!("--identity={identity}"),
        format!("--lease-duration-seconds={LEASE_SECONDS}"),
    ])
    .unwrap();
    let cut = Arc::new(AtomicBool::new(false));
    let client = kube::Client::new(
        Partitionable {
            inner: fake.client(),
            cut: cut.clone(),
        },
        "default",
    );
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(async move {
        cluster::serve(client, cli.engine, shutdown).await.unwrap();
    });
    Replica {
        identity: identity.to_owned(),
        port,
        cut,
        stop,
        task,
    }
}

/// What a replica's `/metrics` shows: whether it publishes anomaly scores, and its count of
/// fitted series updates. A replica whose server is not up yet shows nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Seen {
    publishes: bool,
    fitted: f64,
}

async fn seen(port: u16) -> Seen {
    let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return Seen::default();
    };
    let text = response.text().await.unwrap_or_default();
    Seen {
        publishes: text.contains("vigil:anomaly:score{"),
        fitted: text
            .lines()
            .find_map(|l| l.strip_prefix("vigil_analytics_fits_total{outcome=\"fitted\"} "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0),
    }
}

fn holder(fake: &FakeApiServer) -> Option<String> {
    let lease = fake.get("leases", "vigil-system", "vigil-analytics")?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
}

/// Waits until `replica` holds the lease and publishes; how long that took.
async fn leads(fake: &FakeApiServer, replica: &Replica, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let holds = holder(fake).as_deref() == Some(replica.identity.as_str());
        if holds && seen(replica.port).await.publishes {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{} did not take over within {within:?}: holder {:?}",
            replica.identity,
            holder(fake)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Exactly one replica fits and publishes at a time: the lease holder. Cut off from the API
/// server, the leader stops publishing and the other takes over within a few lease durations;
/// back on the network it stays out (no fits, nothing published) while the other holds a
/// valid lease. A leader that shuts down releases the lease and the other takes over at once.
/// A sampler reading both `/metrics` every 50 ms never sees both publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_fits_and_publishes_and_hands_over() {
    // For the test's own HTTP client (reqwest built without a default provider).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    // `up` of a target that is never there: one sample per second, always 0.
    let (_prometheus, prometheus_port) = start(
        dir.path(),
        &dir.path().join("data"),
        "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: absent\n    \
         static_configs: [{targets: ['127.0.0.1:9']}]\n",
    );
    let prometheus = format!("http://127.0.0.1:{prometheus_port}");
    let fake = FakeApiServer::new();
    let policy: AlertPolicy = serde_yaml::from_str(
        r#"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: {name: checkout-alerts, namespace: shop}
spec:
  appRef: {name: checkout}
  rules:
    - name: Up
      anomaly: {query: "up", baselineWindow: 10m}
"#,
    )
    .unwrap();
    fake.create(&policy);

    let replicas = [
        replica(&fake, &prometheus, "analytics-a"),
        replica(&fake, &prometheus, "analytics-b"),
    ];
    let ports = [replicas[0].port, replicas[1].port];
    let both = Arc::new(Mutex::new(Vec::<String>::new()));
    let samples = Arc::new(Mutex::new(0usize));
    let (stop_sampler, mut sampler_stopped) = watch::channel(false);
    let sampler = {
        let (both, samples) = (both.clone(), samples.clone());
        tokio::spawn(async move {
            while !*sampler_stopped.borrow() {
                let (a, b) = tokio::join!(seen(ports[0]), seen(ports[1]));
                if a.publishes && b.publishes {
                    both.lock().unwrap().push(format!("{a:?} {b:?}"));
                }
                *samples.lock().unwrap() += 1;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = sampler_stopped.changed() => {}
                }
            }
        })
    };

    // Exactly one wins; only it fits.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(h) = holder(&fake) {
            break h;
        }
        assert!(Instant::now() < deadline, "nobody took the lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (leader, follower) = if first == replicas[0].identity {
        (&replicas[0], &replicas[1])
    } else {
        (&replicas[1], &replicas[0])
    };
    leads(&fake, leader, Duration::from_secs(30)).await;
    let before = (seen(leader.port).await, seen(follower.port).await);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = (seen(leader.port).await, seen(follower.port).await);
    assert!(after.0.fitted > before.0.fitted, "{before:?} {after:?}");
    assert_eq!(after.1, Seen::default(), "the follower fits nothing");
    assert_eq!(holder(&fake).as_deref(), Some(leader.identity.as_str()));

    // The leader loses the API server: it steps down, the follower takes over.
    leader.cut.store(true, Ordering::SeqCst);
    let took = leads(&fake, follower, Duration::from_secs(4 * LEASE_SECONDS)).await;
    assert!(!seen(leader.port).await.publishes);
    eprintln!("take-over after the leader was cut off: {took:?}");

    // Back on the network, the old leader stays out while the new one renews.
    leader.cut.store(false, Ordering::SeqCst);
    let back = (seen(leader.port).await, seen(follower.port).await);
    tokio::time::sleep(Duration::from_secs(2 * LEASE_SECONDS)).await;
    let later = (seen(leader.port).await, seen(follower.port).await);
    assert_eq!(holder(&fake).as_deref(), Some(follower.identity.as_str()));
    assert!(!later.0.publishes, "{later:?}");
    assert_eq!(later.0.fitted, back.0.fitted, "the old leader fits nothing");
    assert!(later.1.fitted > back.1.fitted, "{back:?} {later:?}");

    // The new leader shuts down: it releases the lease and the old one takes over at once.
    follower.stop.send_replace(true);
    let took = leads(&fake, leader, Duration::from_secs(LEASE_SECONDS)).await;
    eprintln!("take-over after the leader shut down: {took:?}");
    assert!(!seen(follower.port).await.publishes);

    stop_sampler.send_replace(true);
    sampler.await.unwrap();
    for replica in replicas {
        replica.stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(40), replica.task)
            .await
            .expect("the engine stops")
            .unwrap();
    }
    let samples = *samples.lock().unwrap();
    assert!(samples > 100, "only {samples} samples");
    let both = both.lock().unwrap();
    assert!(both.is_empty(), "both published: {both:?}");
}
