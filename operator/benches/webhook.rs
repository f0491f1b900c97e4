//! Webhook benchmark: the `/mutate-pods` handler's time per review, and end-to-end latency over
//! TLS on loopback at 1, 50 and 200 concurrent requests, for pods of about 2, 10 and 50 KB.
//! Prints figures; asserts nothing (the bar: handler ≤ 50 µs, end-to-end p99 ≤ 5 ms).
//!
//! Run: `cargo bench -p vigil-operator --bench webhook`
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "benchmark: a failed setup step must stop it with its message"
)]

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::{json, Value};
use vigil_crds::MonitoredApp;
use vigil_operator::tls::{self, Plan, ServingCertResolver};
use vigil_operator::webhook::{mutate, server, Webhook};

const FIXTURE: &str = include_str!("../src/webhook/fixtures/pod-from-deployment.json");
const HOST: &str = "vigil-webhook.vigil-system.svc";

fn webhook() -> Webhook {
    let app: MonitoredApp = serde_json::from_value(json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "MonitoredApp",
        "metadata": {"name": "checkout", "namespace": "retail"},
        "spec": {
            "selector": {"matchLabels": {"app": "checkout"}},
            "logs": {"containerLogs": true},
            "traces": {"enabled": true},
            "exporters": {"prometheusRemoteWrite": {
                "url": "http://mimir:8080/api/v1/push",
                "bearerTokenSecretRef": {"name": "mimir", "key": "token"}
            }}
        }
    }))
    .unwrap();
    let mut writer: Writer<MonitoredApp> = Writer::default();
    writer.apply_watcher_event(&watcher::Event::Apply(app));
    // Other apps of other namespaces, as in a busy cluster.
    for i in 0..200 {
        let other: MonitoredApp = serde_json::from_value(json!({
            "apiVersion": "vigil.dev/v1alpha1",
            "kind": "MonitoredApp",
            "metadata": {"name": format!("app-{i}"), "namespace": format!("team-{}", i % 40)},
            "spec": {"selector": {"matchLabels": {"app": format!("app-{i}")}}}
        }))
        .unwrap();
        writer.apply_watcher_event(&watcher::Event::Apply(other));
    }
    Webhook {
        apps: writer.as_reader(),
        agent_image: "ghcr.io/vigil-dev/vigil-agent:0.1.0".into(),
        native_sidecar: true,
    }
}

/// The fixture review, padded with environment variables and annotations to about `bytes`.
fn review_of_size(bytes: usize) -> Vec<u8> {
    let mut review: Value = serde_json::from_str(FIXTURE).unwrap();
    let mut i = 0;
    loop {
        let body = serde_json::to_vec(&review).unwrap();
        if body.len() >= bytes {
            return body;
        }
        let object = &mut review["request"]["object"];
        object["spec"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": format!("FEATURE_FLAG_{i}"), "value": "enabled-for-tenant-retail-bank"}));
        object["metadata"]["annotations"][format!("example.com/note-{i}")] =
            json!("owned by the payments team; see runbook");
        i += 1;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn handler_bench(webhook: &Webhook, sizes: &[(&str, Vec<u8>)]) {
    println!("handler (mutate::review: parse, choose app, inject, diff, encode), one thread:");
    println!(
        "  {:>6} {:>8} {:>10} {:>10} {:>10}",
        "pod", "bytes", "mean µs", "p50 µs", "p99 µs"
    );
    for (name, body) in sizes {
        for _ in 0..200 {
            mutate::review(webhook, body).unwrap();
        }
        let runs = 3000;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            let out = mutate::review(webhook, body).unwrap();
            times.push(start.elapsed());
            std::hint::black_box(out);
        }
        let mean = times.iter().sum::<Duration>() / runs as u32;
        times.sort();
        println!(
            "  {:>6} {:>8} {:>10.1} {:>10.1} {:>10.1}",
            name,
            body.len(),
            micros(mean),
            micros(percentile(&times, 0.5)),
            micros(percentile(&times, 0.99))
        );
    }
}

/// Where the handler's time goes, per step, for each size.
fn handler_phases(webhook: &Webhook, sizes: &[(&str, Vec<u8>)]) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
    println!();
    println!("handler steps, mean µs (untyped: the same body parsed into serde_json::Value, a yardstick of this machine's speed):");
    println!(
        "  {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>12}",
        "pod", "parse", "apps", "sidecar", "inject", "diff", "encode", "(untyped)"
    );
    for (name, body) in sizes {
        let runs = 2000u32;
        let mut t = [Duration::ZERO; 6];
        for _ in 0..runs {
            let s0 = Instant::now();
            let review: AdmissionReview<Pod> = serde_json::from_slice(body).unwrap();
            let request: AdmissionRequest<Pod> = review.try_into().unwrap();
            let s1 = Instant::now();
            let apps = webhook
                .apps
                .state_filter(|a| a.metadata.namespace.as_deref() == Some("retail"));
            let s2 = Instant::now();
            let sidecar = webhook.sidecar_for(&apps[0]);
            let s3 = Instant::now();
            let pod = request.object.clone().unwrap();
            let injected = vigil_operator::render::inject::inject(pod.clone(), &sidecar);
            let s4 = Instant::now();
            let patch = mutate::pod_patch(pod, injected).unwrap();
            let s5 = Instant::now();
            let response = AdmissionResponse::from(&request).with_patch(patch).unwrap();
            let out = mutate::review_json(response).unwrap();
            let s6 = Instant::now();
            std::hint::black_box(out);
            for (i, (a, b)) in [(s0, s1), (s1, s2), (s2, s3), (s3, s4), (s4, s5), (s5, s6)]
                .into_iter()
                .enumerate()
            {
                t[i] += b - a;
            }
        }
        // Machine yardstick: parsing the same body into an untyped `serde_json::Value`.
        let start = Instant::now();
        for _ in 0..runs {
            std::hint::black_box(serde_json::from_slice::<Value>(body).unwrap());
        }
        let yardstick = start.elapsed();
        let m = |d: Duration| micros(d / runs);
        println!(
            "  {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>12.1}",
            name,
            m(t[0]),
            m(t[1]),
            m(t[2]),
            m(t[3]),
            m(t[4]),
            m(t[5]),
            m(yardstick)
        );
    }
}

fn client(ca_pem: &str, addr: SocketAddr) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .resolve(HOST, addr)
        .pool_max_idle_per_host(512)
        .http1_only()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn end_to_end(sizes: &[(&str, Vec<u8>)]) {
    let certs = tls::issue(
        None,
        Plan::Create,
        &[HOST.to_owned()],
        SystemTime::now(),
        tls::Validity::default(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let resolver = Arc::new(ServingCertResolver::new());
    resolver.set(&certs.serving).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(
        listener,
        Arc::new(webhook()),
        resolver,
        Arc::new(AtomicBool::new(false)),
        async move {
            let _ = stopped.await;
        },
    ));
    let url = format!("https://{HOST}:{}/mutate-pods", addr.port());
    println!();
    println!("end to end over TLS 1.3 on loopback (HTTP/1.1 keep-alive, client and server in one process, 2 cores):");
    println!(
        "  {:>6} {:>11} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "pod", "concurrency", "requests", "p50 ms", "p99 ms", "max ms", "req/s"
    );
    for (name, body) in sizes {
        for concurrency in [1usize, 50, 200] {
            let client = client(&certs.bundle_pem(), addr);
            let per_worker = (3000 / concurrency).max(20);
            let body = bytes::Bytes::from(body.clone());
            // Warm up: open every connection (TLS handshakes are not what is measured).
            let warm: Vec<_> = (0..concurrency)
                .map(|_| {
                    let (client, url, body) = (client.clone(), url.clone(), body.clone());
                    tokio::spawn(async move {
                        for _ in 0..3 {
                            let r = client.post(&url).body(body.clone()).send().await.unwrap();
                            assert!(r.status().is_success());
                            r.bytes().await.unwrap();
                        }
                    })
                })
                .collect();
            for w in warm {
                w.await.unwrap();
            }
            let started = Instant::now();
            let workers: Vec<_> = (0..concurrency)
                .map(|_| {
                    let (client, url, body) = (client.clone(), url.clone(), body.clone());
                    tokio::spawn(async move {
                        let mut times = Vec::with_capacity(per_worker);
                        for _ in 0..per_worker {
                            let start = Instant::now();
                            let r = client.post(&url).body(body.clone()).send().await.unwrap();
                            assert!(r.status().is_success());
                            let answer = r.bytes().await.unwrap();
                            times.push(start.elapsed());
                            std::hint::black_box(answer);
                        }
                        times
                    })
                })
                .collect();
            let mut times = Vec::new();
            for w in workers {
                times.extend(w.await.unwrap());
            }
            let wall = started.elapsed();
            times.sort();
            println!(
                "  {:>6} {:>11} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>10.0}",
                name,
                concurrency,
                times.len(),
                micros(percentile(&times, 0.5)) / 1000.0,
                micros(percentile(&times, 0.99)) / 1000.0,
                micros(*times.last().unwrap()) / 1000.0,
                times.len() as f64 / wall.as_secs_f64()
            );
        }
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

fn main() {
    let sizes = vec![
        ("2 KB", review_of_size(2 * 1024)),
        ("10 KB", review_of_size(10 * 1024)),
        ("50 KB", review_of_size(50 * 1024)),
    ];
    // The base fixture is already ~5 KB; the "2 KB" case trims it to a minimal pod.
    let sizes: Vec<(&str, Vec<u8>)> = sizes
        .into_iter()
        .map(|(name, body)| {
            if name == "2 KB" {
                (name, minimal_review())
            } else {
                (name, body)
            }
        })
        .collect();
    handler_bench(&webhook(), &sizes);
    handler_phases(&webhook(), &sizes);
    if std::env::var_os("VIGIL_BENCH_HANDLER_ONLY").is_some() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(end_to_end(&sizes));
}

/// The fixture without managed fields, tolerations and the init container: about 2 KB.
fn minimal_review() -> Vec<u8> {
    let mut review: Value = serde_json::from_str(FIXTURE).unwrap();
    let object = &mut review["request"]["object"];
    object["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    let spec = object["spec"].as_object_mut().unwrap();
    spec.remove("initContainers");
    spec.remove("tolerations");
    serde_json::to_vec(&review).unwrap()
}
