//! Webhook benchmark: the `/mutate-pods` handler's time per review, and end-to-end latency over
//! TLS on loopback, for pods of about 2, 10 and 50 KB. Prints figures; asserts nothing (the
//! bar: handler ≤ 50 µs, end-to-end p99 ≤ 5 ms).
//!
//! Run: `cargo bench -p vigil-operator --bench webhook` (`VIGIL_BENCH_HANDLER_ONLY=1` for the
//! handler part only).
//!
//! - **Handler**: `mutate::review` on one thread, body in memory → response JSON: read the
//!   review, choose the app, inject, write the patch, encode the response. Then the same
//!   steps one by one, next to yardsticks of this machine's speed (the body parsed into an
//!   untyped `serde_json::Value`; the pod read with kube's `AdmissionReview`, which the
//!   handler no longer uses).
//! - **End to end**: the webhook server (`server::serve`, hyper over rustls, two worker
//!   threads) runs in a separate process — this benchmark started again as its own child —
//!   and a light load generator in this process (two threads, hyper's HTTP/1.1 client over
//!   rustls, TLS 1.3) sends the review over kept-alive connections, as the API server does.
//!   Handshakes happen before measuring. Two kinds of load:
//!   - *closed loop*: 1, 50 or 200 clients, each sending its next request as soon as the
//!     previous is answered. Latency here is queueing: with `c` requests always in flight
//!     and `t` CPU time per request (server and client, measured from `/proc`) on `n` cores,
//!     the mean latency is at least `c × t / n` (Little's law); the table prints that bound.
//!   - *open loop*: requests at a fixed rate (500 and 2,000 pod creations per second, a
//!     large cluster's burst) over 200 connections, at most 200 in flight. This is how an
//!     API server calls a webhook: one call per pod creation, whenever it happens. Latency
//!     counts from the moment the request is due, including any wait for a free connection.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "benchmark: a failed setup step must stop it with its message"
)]

/// The operator binary's allocator, so handler figures match what the operator runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use vigil_crds::MonitoredApp;
use vigil_operator::render::inject::inject;
use vigil_operator::tls::{self, Plan, ServingCertResolver};
use vigil_operator::webhook::mutate::{self, Choice, Outline, PatchWriter};
use vigil_operator::webhook::{server, Webhook};

const FIXTURE: &str = include_str!("../src/webhook/fixtures/pod-from-deployment.json");
const HOST: &str = "vigil-webhook.vigil-system.svc";
/// Set in the child process that serves the webhook: the file to write the CA bundle to.
const SERVER_ROLE: &str = "VIGIL_WEBHOOK_BENCH_SERVE_CA_FILE";
/// Worker threads of the server process.
const SERVER_THREADS: usize = 2;
/// Worker threads of the load generator: one would be the bottleneck (TLS and HTTP cost the
/// client about as much as the server).
const CLIENT_THREADS: usize = 2;
/// Cores of the machine, for the queueing bound.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

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
    // Every namespace privileged, as most are: the full injection, hostPath included.
    let (namespaces, mut namespace_writer) = kube::runtime::reflector::store();
    for i in 0..40 {
        let name = if i == 0 {
            "retail".to_owned()
        } else {
            format!("team-{i}")
        };
        let ns = kube::core::PartialObjectMeta::<k8s_openapi::api::core::v1::Namespace> {
            types: None,
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name),
                ..Default::default()
            },
            _phantom: std::marker::PhantomData,
        };
        namespace_writer.apply_watcher_event(&watcher::Event::Apply(ns));
    }
    Webhook {
        apps: writer.as_reader(),
        namespaces,
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

fn sizes() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("2 KB", minimal_review()),
        ("10 KB", review_of_size(10 * 1024)),
        ("50 KB", review_of_size(50 * 1024)),
    ]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------------------------
// Handler

fn handler_bench(webhook: &Webhook, sizes: &[(&str, Vec<u8>)]) {
    println!("handler (mutate::review: read, choose app, inject, patch, encode), one thread:");
    println!(
        "  {:>6} {:>8} {:>9} {:>9} {:>9} {:>12}   previous: {:>9} {:>9}",
        "pod", "bytes", "mean µs", "p50 µs", "p99 µs", "patch bytes", "p50 µs", "p99 µs"
    );
    for (name, body) in sizes {
        let out = mutate::review(webhook, body).unwrap();
        let answer: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(answer["response"]["patchType"], "JSONPatch", "{answer}");
        let patch_bytes = answer["response"]["patch"].as_str().unwrap().len() * 3 / 4;
        // One handler after the other, each warmed up first.
        let runs = 5000;
        let time = |handler: &dyn Fn() -> Vec<u8>| {
            for _ in 0..300 {
                std::hint::black_box(handler());
            }
            let mut times = Vec::with_capacity(runs);
            for _ in 0..runs {
                let start = Instant::now();
                let out = handler();
                times.push(start.elapsed());
                std::hint::black_box(out);
            }
            times
        };
        let mut times = time(&|| mutate::review(webhook, body).unwrap());
        let mut previous = time(&|| previous_handler(webhook, body));
        let mean = times.iter().sum::<Duration>() / runs as u32;
        times.sort();
        previous.sort();
        println!(
            "  {:>6} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>12}             {:>9.1} {:>9.1}",
            name,
            body.len(),
            micros(mean),
            micros(percentile(&times, 0.5)),
            micros(percentile(&times, 0.99)),
            patch_bytes,
            micros(percentile(&previous, 0.5)),
            micros(percentile(&previous, 0.99)),
        );
    }
    println!(
        "  (previous: the handler before this version — kube's AdmissionReview, a copy of the \
         pod for inject, the general diff, kube's AdmissionResponse — measured right after it)"
    );
}

/// The handler as it was before `mutate::review` was rewritten, for comparison on the same
/// machine: kube's `AdmissionReview`, a copy of the pod for `inject`, the general diff
/// `pod_patch`, kube's `AdmissionResponse`.
fn previous_handler(webhook: &Webhook, body: &[u8]) -> Vec<u8> {
    let review: AdmissionReview<Pod> = serde_json::from_slice(body).unwrap();
    let mut request: AdmissionRequest<Pod> = review.try_into().unwrap();
    let namespace = request.namespace.clone().unwrap();
    let apps = webhook
        .apps
        .state_filter(|a| a.metadata.namespace.as_deref() == Some(namespace.as_str()));
    let pod = request.object.take().unwrap();
    let mut warnings = Vec::new();
    let Choice::App(app) = mutate::choose_app(&pod, &namespace, &apps, &mut warnings) else {
        panic!("the checkout app selects the pod");
    };
    let sidecar = webhook.sidecar_for(app);
    let injected = inject(pod.clone(), &sidecar);
    let patch = mutate::pod_patch(pod, injected).unwrap();
    let response = AdmissionResponse::from(&request).with_patch(patch).unwrap();
    mutate::review_json(response).unwrap()
}

/// Mean time of `f` over `runs` runs; `setup` (not timed) makes its input.
fn mean_of<I, O>(runs: u32, mut setup: impl FnMut() -> I, mut f: impl FnMut(I) -> O) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..runs {
        let input = setup();
        let start = Instant::now();
        let out = f(input);
        total += start.elapsed();
        std::hint::black_box(out);
    }
    total / runs
}

/// Where the handler's time goes, step by step, for each size.
fn handler_steps(webhook: &Webhook, sizes: &[(&str, Vec<u8>)]) {
    println!();
    println!("handler steps, mean µs:");
    println!(
        "  {:>6} {:>7} {:>7} {:>8} {:>8} {:>7} {:>7} {:>7}   yardsticks: {:>7} {:>7} {:>7} {:>9}",
        "pod",
        "read",
        "apps",
        "sidecar",
        "outline",
        "inject",
        "patch",
        "encode",
        "Value",
        "clone",
        "drop",
        "kube read"
    );
    let runs = 2000;
    for (name, body) in sizes {
        let pod = || {
            mutate::read_review(body)
                .unwrap()
                .request
                .unwrap()
                .object
                .unwrap()
        };
        let read = mean_of(runs, || (), |()| mutate::read_review(body).unwrap());
        let apps = mean_of(
            runs,
            || (),
            |()| {
                webhook
                    .apps
                    .state_filter(|a| a.metadata.namespace.as_deref() == Some("retail"))
            },
        );
        let chosen = webhook
            .apps
            .state_filter(|a| a.metadata.namespace.as_deref() == Some("retail"));
        let sidecar_time = mean_of(runs, || (), |()| webhook.sidecar_for(&chosen[0]));
        let sidecar = webhook.sidecar_for(&chosen[0]);
        let original = pod();
        let outline_time = mean_of(runs, || (), |()| Outline::of(&original));
        let inject_time = mean_of(runs, || original.clone(), |p| inject(p, &sidecar));
        let outline = Outline::of(&original).unwrap();
        let injected = inject(original.clone(), &sidecar);
        let patch_time = mean_of(
            runs,
            || (),
            |()| {
                let mut patch = PatchWriter::default();
                assert!(outline.additions(&injected, &mut patch).unwrap());
                patch.finish()
            },
        );
        let mut patch = PatchWriter::default();
        outline.additions(&injected, &mut patch).unwrap();
        let patch = patch.finish();
        let encode = mean_of(
            runs,
            || mutate::Answer {
                patch: patch.clone(),
                warnings: Vec::new(),
            },
            |answer| {
                mutate::response_json(
                    "admission.k8s.io/v1",
                    "AdmissionReview",
                    "0df28fbd-5f5f-11e8-bc74-36e6bb280816",
                    answer,
                )
                .unwrap()
            },
        );
        let untyped = mean_of(
            runs,
            || (),
            |()| serde_json::from_slice::<Value>(body).unwrap(),
        );
        let clone = mean_of(runs, || (), |()| original.clone());
        let drop = mean_of(runs, || original.clone(), std::mem::drop);
        let kube = mean_of(
            runs,
            || (),
            |()| serde_json::from_slice::<AdmissionReview<Pod>>(body).unwrap(),
        );
        let m = micros;
        println!(
            "  {:>6} {:>7.1} {:>7.1} {:>8.1} {:>8.1} {:>7.1} {:>7.1} {:>7.1}               {:>7.1} {:>7.1} {:>7.1} {:>9.1}",
            name,
            m(read),
            m(apps),
            m(sidecar_time),
            m(outline_time),
            m(inject_time),
            m(patch_time),
            m(encode),
            m(untyped),
            m(clone),
            m(drop),
            m(kube)
        );
    }
    println!(
        "  (Value: the body read into an untyped serde_json::Value; clone, drop: copying and \
         freeing the pod, the handler frees two; kube read: the review read with kube's \
         AdmissionReview<Pod>; inject is timed on a copy of the pod)"
    );
}

// ---------------------------------------------------------------------------------------------
// End to end: the server process

/// The child process: serves the webhook on 127.0.0.1 with a fresh CA, writes the CA bundle
/// to `ca_file`, prints the port, and stops when its standard input closes.
fn serve_child(ca_file: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(SERVER_THREADS)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let certs = tls::issue(
            None,
            Plan::Create,
            &[HOST.to_owned()],
            SystemTime::now(),
            tls::Validity::default(),
        )
        .unwrap();
        std::fs::write(ca_file, certs.bundle_pem()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let resolver = Arc::new(ServingCertResolver::new());
        resolver.set(&certs.serving).unwrap();
        let stdin_closed = async {
            tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
            })
            .await
            .unwrap();
        };
        println!("{port}");
        std::io::stdout().flush().unwrap();
        server::serve(
            listener,
            Arc::new(webhook()),
            resolver,
            Arc::new(AtomicBool::new(false)),
            stdin_closed,
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    });
}

/// The server process, killed on drop.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    ca_pem: String,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    fn start() -> ServerProcess {
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(SERVER_ROLE, &ca_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the server prints its port");
        ServerProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            ca_pem: std::fs::read_to_string(&ca_file).unwrap(),
            _dir: dir,
        }
    }

    /// CPU time (user + system) the server process has used.
    fn cpu(&self) -> Duration {
        cpu_of(&format!("/proc/{}/stat", self.child.id()))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU time from a `/proc/<pid>/stat` file.
fn cpu_of(stat: &str) -> Duration {
    let text = std::fs::read_to_string(stat).unwrap();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let after = &text[text.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // The kernel's USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

// ---------------------------------------------------------------------------------------------
// End to end: the load generator

/// Kept-alive HTTPS connections to the server.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    tls: TlsConnector,
}

impl Target {
    fn new(server: &ServerProcess) -> Target {
        let mut roots = rustls::RootCertStore::empty();
        for der in CertificateDer::pem_slice_iter(server.ca_pem.as_bytes()) {
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
        Target {
            addr: server.addr,
            tls: TlsConnector::from(Arc::new(config)),
        }
    }

    /// A new connection, handshake done.
    async fn connect(&self) -> SendRequest<Full<Bytes>> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let name = ServerName::try_from(HOST).unwrap();
        let tls = self.tls.connect(name, tcp).await.unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(connection);
        sender
    }

    async fn connections(&self, n: usize, body: &Bytes) -> Vec<SendRequest<Full<Bytes>>> {
        let mut all = Vec::with_capacity(n);
        for _ in 0..n {
            let mut c = self.connect().await;
            post(&mut c, body).await;
            all.push(c);
        }
        all
    }
}

/// Sends one review and reads the whole answer.
async fn post(connection: &mut SendRequest<Full<Bytes>>, body: &Bytes) {
    connection.ready().await.unwrap();
    let request = hyper::Request::post("/mutate-pods")
        .header(hyper::header::HOST, HOST)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.clone()))
        .unwrap();
    let response = connection.send_request(request).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let answer = response.into_body().collect().await.unwrap().to_bytes();
    assert!(answer.len() > 100);
    std::hint::black_box(answer);
}

/// Latencies and cost of one run.
struct Run {
    times: Vec<Duration>,
    wall: Duration,
    /// Server and client CPU time during the run.
    cpu: Duration,
    /// The server's part of `cpu`.
    server_cpu: Duration,
}

impl Run {
    fn cpu_per_request(&self) -> Duration {
        self.cpu / self.times.len() as u32
    }

    fn server_cpu_per_request(&self) -> Duration {
        self.server_cpu / self.times.len() as u32
    }
}

/// Measures `load` with the CPU time of both processes.
async fn measured<F: std::future::Future<Output = Vec<Duration>>>(
    server: &ServerProcess,
    load: F,
) -> Run {
    let client = || cpu_of("/proc/self/stat");
    let (server_before, client_before) = (server.cpu(), client());
    let started = Instant::now();
    let mut times = load.await;
    let wall = started.elapsed();
    let server_cpu = server.cpu() - server_before;
    let cpu = server_cpu + client() - client_before;
    times.sort();
    Run {
        times,
        wall,
        cpu,
        server_cpu,
    }
}

/// `clients` connections, each sending `per_client` reviews one after the other.
async fn closed_loop(
    target: &Target,
    body: &Bytes,
    clients: usize,
    per_client: usize,
) -> Vec<Duration> {
    let connections = target.connections(clients, body).await;
    let workers: Vec<_> = connections
        .into_iter()
        .map(|mut connection| {
            let body = body.clone();
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    let start = Instant::now();
                    post(&mut connection, &body).await;
                    times.push(start.elapsed());
                }
                times
            })
        })
        .collect();
    let mut times = Vec::new();
    for w in workers {
        times.extend(w.await.unwrap());
    }
    times
}

/// `rate` reviews per second for `duration` over `connections` connections (at most that
/// many in flight); latency from when each request was due.
async fn open_loop(
    target: &Target,
    body: &Bytes,
    rate: u32,
    duration: Duration,
    connections: usize,
) -> Vec<Duration> {
    let idle = Arc::new(Mutex::new(target.connections(connections, body).await));
    let free = Arc::new(tokio::sync::Semaphore::new(connections));
    let count = (f64::from(rate) * duration.as_secs_f64()) as u32;
    let interval = Duration::from_secs(1) / rate;
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(count as usize);
    for i in 0..count {
        tokio::time::sleep_until(start + interval * i).await;
        let due = Instant::now();
        let (idle, free, body) = (idle.clone(), free.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = free.acquire().await.unwrap();
            let mut connection = idle.lock().unwrap().pop().unwrap();
            post(&mut connection, &body).await;
            let took = due.elapsed();
            idle.lock().unwrap().push(connection);
            took
        }));
    }
    let mut times = Vec::with_capacity(tasks.len());
    for t in tasks {
        times.push(t.await.unwrap());
    }
    times
}

async fn end_to_end(sizes: &[(&str, Vec<u8>)]) {
    let server = ServerProcess::start();
    let target = Target::new(&server);
    let n = cores();
    println!();
    println!(
        "end to end over TLS 1.3 on loopback: server in its own process ({SERVER_THREADS} worker threads), \
         load generator in another ({CLIENT_THREADS} worker threads), HTTP/1.1 keep-alive, {n} cores shared by both"
    );
    println!();
    println!("closed loop (each client sends its next review when the previous is answered):");
    println!(
        "  {:>6} {:>7} {:>8} {:>7} {:>7} {:>7} {:>8} {:>9} {:>7} {:>9}",
        "pod",
        "clients",
        "requests",
        "p50 ms",
        "p99 ms",
        "max ms",
        "req/s",
        "CPU µs/req",
        "server",
        "bound ms"
    );
    for (name, body) in sizes {
        let body = Bytes::from(body.clone());
        for clients in [1usize, 50, 200] {
            let per_client = (4000 / clients).max(25);
            let run = measured(&server, closed_loop(&target, &body, clients, per_client)).await;
            let cpu = run.cpu_per_request();
            // Little's law: `clients` requests always in flight, each needing `cpu` of `n` cores.
            let bound = cpu * clients as u32 / n as u32;
            println!(
                "  {:>6} {:>7} {:>8} {:>7.2} {:>7.2} {:>7.2} {:>8.0} {:>9.0} {:>7.0} {:>9.2}",
                name,
                clients,
                run.times.len(),
                millis(percentile(&run.times, 0.5)),
                millis(percentile(&run.times, 0.99)),
                millis(*run.times.last().unwrap()),
                run.times.len() as f64 / run.wall.as_secs_f64(),
                micros(cpu),
                micros(run.server_cpu_per_request()),
                millis(bound)
            );
        }
    }
    println!(
        "  (CPU µs/req: both processes; server: its part. bound ms = clients × CPU µs/req ÷ {n} cores: the mean latency no server can beat when \
         that many requests are always queued on these cores)"
    );
    println!();
    println!("open loop (reviews at a fixed rate, as an API server sends them; 200 connections, ≤ 200 in flight):");
    println!(
        "  {:>6} {:>7} {:>8} {:>7} {:>7} {:>7} {:>8} {:>9} {:>7} {:>7}",
        "pod",
        "rate/s",
        "requests",
        "p50 ms",
        "p99 ms",
        "max ms",
        "req/s",
        "CPU µs/req",
        "server",
        "demand"
    );
    for (name, body) in sizes {
        let body = Bytes::from(body.clone());
        for rate in [500u32, 2000] {
            let run = measured(
                &server,
                open_loop(&target, &body, rate, Duration::from_secs(4), 200),
            )
            .await;
            let cpu = run.cpu_per_request();
            println!(
                "  {:>6} {:>7} {:>8} {:>7.2} {:>7.2} {:>7.2} {:>8.0} {:>9.0} {:>7.0} {:>6.0}%",
                name,
                rate,
                run.times.len(),
                millis(percentile(&run.times, 0.5)),
                millis(percentile(&run.times, 0.99)),
                millis(*run.times.last().unwrap()),
                run.times.len() as f64 / run.wall.as_secs_f64(),
                micros(cpu),
                micros(run.server_cpu_per_request()),
                // The CPU the offered rate needs, as a share of the machine's cores.
                100.0 * f64::from(rate) * cpu.as_secs_f64() / n as f64
            );
        }
    }
    println!(
        "  (demand = rate × CPU µs/req ÷ {n} cores; at 100 % or more the reviews arrive faster \
         than these cores can answer them and the queue, hence latency, grows for as long as \
         the rate lasts)"
    );
}

/// The 1-minute load average, to tell a quiet machine from a busy one.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    if let Some(ca_file) = std::env::var_os(SERVER_ROLE) {
        return serve_child(&ca_file.to_string_lossy());
    }
    println!(
        "{} cores, load average {} before the run (other work on the machine slows every figure)",
        cores(),
        load_average()
    );
    let sizes = sizes();
    let webhook = webhook();
    handler_bench(&webhook, &sizes);
    handler_steps(&webhook, &sizes);
    if std::env::var_os("VIGIL_BENCH_HANDLER_ONLY").is_some() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(CLIENT_THREADS)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(end_to_end(&sizes));
}
