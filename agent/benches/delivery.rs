//! Delivered throughput of the real `vigil-agent` binary, end to end: what leaves the agent and
//! reaches a local OTLP/gRPC receiver that answers at once and only counts
//! ([`support::CountingOtlpSink`]), so the figures are bounded by the agent, not the backend.
//! Prints figures; asserts nothing (`cargo bench -p vigil-agent --bench delivery`).
//!
//! - **logs**: a backlog of 256-byte plain CRI lines (`DELIVERY_LOG_MIB`, default 256) is in the
//!   pod's log file before the agent starts; timed from the agent's start until the receiver has
//!   every line. Prints MiB of log file delivered per wall second and per agent CPU-second.
//! - **traces**: two OTLP/gRPC clients send 500-span requests as fast as the agent takes them for
//!   `DELIVERY_SECONDS` (default 10); timed from the first request until the receiver has every
//!   span the agent accepted. Prints spans delivered per wall second, and the ingest rate.
//!
//! `DELIVERY_AGENT=PATH` runs another build of the agent (to alternate two builds in one
//! session); `DELIVERY_CASE=logs` or `traces` runs one case.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the report

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

use support::{bench_spans, cpu_ticks, free_port, http_get, wait_until, CountingOtlpSink};

/// Bytes of one CRI line, newline included.
const LINE_BYTES: usize = 256;
/// Spans per OTLP request from the load clients.
const SPANS_PER_REQUEST: u64 = 500;

/// The agent under test, killed on drop.
struct Agent(Child);

impl Agent {
    /// Starts the agent on `config` (written into `dir`); does not wait for it to be ready.
    fn spawn(dir: &Path, config: &str) -> Agent {
        let config_path = dir.join("agent.yaml");
        std::fs::write(&config_path, config).unwrap();
        let binary = std::env::var_os("DELIVERY_AGENT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vigil-agent")));
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config_path)
            .env("POD_NAME", "api-7d9f-abcde")
            .env("POD_NAMESPACE", "bench")
            .env("POD_UID", "0b5c2f6e-1111-2222-3333-444455556666")
            .env("NODE_NAME", "node-a")
            .env("VIGIL_APP_VERSION", "17.2")
            .env("VIGIL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("agent.stderr")).unwrap())
            .spawn()
            .unwrap();
        Agent(child)
    }

    fn wait_ready(&self, admin: SocketAddr) {
        let ready = wait_until(Duration::from_secs(30), || {
            http_get(&format!("http://{admin}/readyz")).is_some_and(|(code, _)| code == 200)
        });
        assert!(ready, "agent not ready");
    }

    /// utime + stime of the process in seconds (clock ticks of 1/100 s on Linux).
    fn cpu_seconds(&self) -> f64 {
        cpu_ticks(self.0.id()) as f64 / 100.0
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Agent config with the given sources, exporting over OTLP/gRPC to `sink_port`.
fn config(dir: &Path, admin: SocketAddr, sink_port: u16, traces: bool, logs: &str) -> String {
    let (grpc, http) = (free_port(), free_port());
    format!(
        "version: 1\napp:\n  namespace: bench\n  name: api\n  clientType: generic\n  releaseSource: label\nlisten:\n  otlpGrpc: 127.0.0.1:{grpc}\n  otlpHttp: 127.0.0.1:{http}\n  admin: {admin}\ntraces:\n  enabled: {traces}\n  samplingRatio: 1.0\ncrashes:\n  enabled: true\nredaction:\n  detectors: [creditCard, iban, email, phone, bearerToken, jwt]\nbuffer:\n  path: {}\n  maxBytes: 2147483648\n  whenFull: block\n{logs}exporters:\n  otlp:\n    endpoint: http://127.0.0.1:{sink_port}\n    protocol: grpc\n",
        dir.join("buffer").display()
    )
}

/// Writes `lines` plain CRI lines of [`LINE_BYTES`] bytes each to `path`.
fn write_cri_log(path: &Path, lines: u64) {
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    for n in 0..lines {
        let mut line = format!(
            "2024-05-01T12:{:02}:{:02}.{:09}Z stdout F 2024-05-01 12:00:00.000 INFO \
             [http-nio-8080-exec-{}] c.e.shop.OrderService - GET /api/orders completed \
             status=200 in {} ms for customer {} request {n} ",
            (n / 60_000) % 60,
            (n / 1000) % 60,
            n % 1_000_000_000,
            n % 16,
            n % 250,
            n * 7919 % 100_000,
        );
        while line.len() < LINE_BYTES - 1 {
            line.push('x');
        }
        line.truncate(LINE_BYTES - 1);
        line.push('\n');
        out.write_all(line.as_bytes()).unwrap();
    }
    out.flush().unwrap();
}

async fn logs_case() {
    let mib: u64 = env_number("DELIVERY_LOG_MIB", 256);
    let lines = mib * (1 << 20) / LINE_BYTES as u64;
    let dir = tempfile::tempdir().unwrap();
    let pod_dir = dir.path().join("pod");
    std::fs::create_dir_all(pod_dir.join("app")).unwrap();
    write_cri_log(&pod_dir.join("app/0.log"), lines);
    let file_mib = (lines * LINE_BYTES as u64) as f64 / f64::from(1 << 20);

    let sink = CountingOtlpSink::default();
    let sink_port = free_port();
    let _server = sink.serve(format!("127.0.0.1:{sink_port}").parse().unwrap());
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let logs = format!(
        "logs:\n  podLogDir: {}\n  format: text\n  multiline: true\n  checkpointDir: {}\n",
        pod_dir.display(),
        dir.path().join("checkpoints").display()
    );
    let config = config(dir.path(), admin, sink_port, false, &logs);
    let start = Instant::now();
    let agent = Agent::spawn(dir.path(), &config);
    let delivered = wait_for_count(&sink.log_records, lines, Duration::from_secs(600)).await;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = agent.cpu_seconds();
    println!(
        "delivery logs: {file_mib:.0} MiB backlog of {LINE_BYTES} B CRI lines: {:.1} MiB/s delivered \
         ({delivered} of {lines} lines in {elapsed:.1} s, {} requests), {:.1} MiB per agent CPU-second",
        file_mib * delivered as f64 / lines as f64 / elapsed,
        sink.requests.load(Ordering::Relaxed),
        file_mib * delivered as f64 / lines as f64 / cpu,
    );
}

async fn traces_case() {
    let seconds: u64 = env_number("DELIVERY_SECONDS", 10);
    let dir = tempfile::tempdir().unwrap();
    let sink = CountingOtlpSink::default();
    let sink_port = free_port();
    let _server = sink.serve(format!("127.0.0.1:{sink_port}").parse().unwrap());
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = config(dir.path(), admin, sink_port, true, "");
    let grpc = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("otlpGrpc: "))
        .unwrap()
        .to_owned();
    let agent = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || {
            let agent = Agent::spawn(&dir, &config);
            agent.wait_ready(admin);
            agent
        }
    })
    .await
    .unwrap();

    let accepted = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let load_end = start + Duration::from_secs(seconds);
    let cpu_before = agent.cpu_seconds();
    let clients: Vec<_> = (0..2u64)
        .map(|client| {
            let accepted = accepted.clone();
            let grpc = grpc.clone();
            tokio::spawn(async move {
                let mut otlp = TraceServiceClient::connect(format!("http://{grpc}"))
                    .await
                    .unwrap();
                let mut batch = client;
                while Instant::now() < load_end {
                    if otlp
                        .export(bench_spans(batch, SPANS_PER_REQUEST))
                        .await
                        .is_ok()
                    {
                        accepted.fetch_add(SPANS_PER_REQUEST, Ordering::Relaxed);
                    } else {
                        // Pushed back (buffer full): the agent is behind.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    batch += 2;
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let load_seconds = start.elapsed().as_secs_f64();
    let accepted = accepted.load(Ordering::Relaxed);
    let delivered_in_load = sink.spans.load(Ordering::Relaxed);
    let delivered = wait_for_count(&sink.spans, accepted, Duration::from_secs(600)).await;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = agent.cpu_seconds() - cpu_before;
    println!(
        "delivery traces: {:.0} spans/s delivered ({delivered} of {accepted} accepted in \
         {elapsed:.1} s, {} requests; {:.0} spans/s delivered during the {load_seconds:.0} s of \
         load); ingest {:.0} spans/s; {:.0} spans per agent CPU-second",
        delivered as f64 / elapsed,
        sink.requests.load(Ordering::Relaxed),
        delivered_in_load as f64 / load_seconds,
        accepted as f64 / load_seconds,
        delivered as f64 / cpu,
    );
}

/// Waits until `counter` reaches `target` or `deadline` passes; the count reached.
async fn wait_for_count(counter: &AtomicU64, target: u64, deadline: Duration) -> u64 {
    let end = Instant::now() + deadline;
    loop {
        let n = counter.load(Ordering::Relaxed);
        if n >= target || Instant::now() >= end {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let case = std::env::var("DELIVERY_CASE").unwrap_or_default();
    runtime.block_on(async {
        if case.is_empty() || case == "logs" {
            logs_case().await;
        }
        if case.is_empty() || case == "traces" {
            traces_case().await;
        }
    });
}
