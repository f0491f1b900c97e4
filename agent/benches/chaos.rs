//! Chaos: the real `vigil-agent` binary is killed with SIGKILL again and again while a local
//! OTLP/gRPC backend ([`support::OtlpSinkServer`], which records every request) goes down and
//! comes back, and what reached the backend is compared with what the agent took on. Prints
//! figures; asserts nothing (`cargo bench -p vigil-agent --bench chaos --profile dev`: the
//! figures are counts, not speed, so the dev build does).
//!
//! - **otlp**: a client sends 20-span requests (every span id unique) to the agent's OTLP/gRPC
//!   port without pause; a request the agent answered OK is *acknowledged*.
//! - **logs**: a writer appends numbered CRI lines to a container log file in the pod's log
//!   directory the agent tails (checkpointed); every line written is owed to the backend.
//!
//! Each trial lets the agent run 150–650 ms under load, kills it with SIGKILL and starts it
//! again; the backend is stopped on every third kill and started again on the next. After the
//! last trial the backend stays up until everything owed arrived (or 180 s passed). Printed per
//! case: kills, acknowledged (owed), delivered (distinct), lost (owed, never delivered) and
//! duplicated (deliveries beyond the first). `CHAOS_KILLS` sets the kills per case (default 50,
//! so 100 in all); `CHAOS_CASE=otlp` or `logs` runs one case.
//!
//! Then the full-disk case on a real 256 KiB tmpfs (needs root to mount) runs as the ignored
//! unit test `buffer::tests::full_tmpfs_heals_after_delivery_without_resending`, from
//! `scripts/bench.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the report

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::any_value::Value;

use support::{bench_spans, free_port, received_span_ids, Agent, OtlpSinkServer, ServerHandle};

/// Spans per OTLP request.
const SPANS_PER_REQUEST: u64 = 20;
/// How long to wait, after the last trial, for everything owed to arrive.
const SETTLE: Duration = Duration::from_secs(180);

/// The agent's config: OTLP in, `logs` (a `logs:` block or nothing), OTLP/gRPC out to
/// `sink_port`, a disk buffer under `dir`.
fn config(dir: &Path, admin: SocketAddr, grpc: u16, sink_port: u16, logs: &str) -> String {
    format!(
        "version: 1\napp:\n  namespace: bench\n  name: api\n  clientType: generic\n  releaseSource: label\nlisten:\n  otlpGrpc: 127.0.0.1:{grpc}\n  otlpHttp: 127.0.0.1:{}\n  admin: {admin}\ntraces:\n  enabled: true\n  samplingRatio: 1.0\ncrashes:\n  enabled: false\nredaction:\n  detectors: []\nbuffer:\n  path: {}\n  maxBytes: 67108864\n  whenFull: block\n{logs}exporters:\n  otlp:\n    endpoint: http://127.0.0.1:{sink_port}\n    protocol: grpc\n",
        free_port(),
        dir.join("buffer").display()
    )
}

/// A backend that can go down (its port closed) and come back on the same port.
struct Backend {
    sink: OtlpSinkServer,
    addr: SocketAddr,
    server: Option<ServerHandle>,
}

impl Backend {
    fn start() -> Backend {
        let sink = OtlpSinkServer::default();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let server = Some(sink.serve(addr));
        Backend { sink, addr, server }
    }

    fn set_up(&mut self, up: bool) {
        match (up, self.server.is_some()) {
            (true, false) => self.server = Some(self.sink.serve(self.addr)),
            (false, true) => self.server = None,
            _ => {}
        }
    }
}

/// A small deterministic generator for the trial lengths.
struct Jitter(u64);

impl Jitter {
    fn millis(&mut self, from: u64, to: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(from + self.0 % (to - from))
    }
}

/// Runs `kills` trials against `agent`; the backend fails on every third kill and recovers on
/// the next. Returns the agent (running) and how many kills were made.
async fn kill_trials(mut agent: Agent, backend: &mut Backend, kills: u32) -> (Agent, u32) {
    let mut jitter = Jitter(0x9e37_79b9_7f4a_7c15);
    let mut made = 0;
    for trial in 0..kills {
        tokio::time::sleep(jitter.millis(150, 650)).await;
        agent = tokio::task::spawn_blocking(move || {
            agent.kill9();
            agent
        })
        .await
        .unwrap();
        made += 1;
        match trial % 3 {
            0 => backend.set_up(false),
            1 => backend.set_up(true),
            _ => {}
        }
        agent = tokio::task::spawn_blocking(move || {
            agent.restart();
            agent
        })
        .await
        .unwrap();
    }
    backend.set_up(true);
    (agent, made)
}

/// Waits until `done` holds or [`SETTLE`] passed.
async fn settle(mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + SETTLE;
    while Instant::now() < end {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    done()
}

/// Prints the case's figures from what is owed and how often each item arrived.
fn report(case: &str, kills: u32, owed: &HashSet<u64>, arrived: &[u64], seconds: f64) {
    let mut counts: HashMap<u64, u64> = HashMap::new();
    for id in arrived {
        *counts.entry(*id).or_default() += 1;
    }
    let lost = owed.iter().filter(|id| !counts.contains_key(id)).count();
    let duplicated: u64 = counts.values().map(|c| c - 1).sum();
    println!(
        "chaos {case}: {kills} kills in {seconds:.0} s, acknowledged {}, delivered {} distinct \
         ({} deliveries), lost {lost}, duplicated {duplicated} ({:.2}% of delivered)",
        owed.len(),
        counts.len(),
        arrived.len(),
        100.0 * duplicated as f64 / counts.len().max(1) as f64,
    );
}

async fn otlp_case(kills: u32) {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = Backend::start();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let grpc = free_port();
    let config = config(dir.path(), admin, grpc, backend.addr.port(), "");
    let agent = {
        let dir = dir.path().to_owned();
        tokio::task::spawn_blocking(move || Agent::start(&dir, &config, admin))
            .await
            .unwrap()
    };

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<u64>::new()));
    let load = tokio::spawn({
        let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
        async move {
            let mut client = None;
            let mut batch = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if client.is_none() {
                    client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
                        .await
                        .ok();
                }
                let Some(otlp) = client.as_mut() else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                match otlp.export(bench_spans(batch, SPANS_PER_REQUEST)).await {
                    Ok(_) => acknowledged.lock().unwrap().push(batch),
                    Err(_) => {
                        client = None;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                batch += 1;
            }
        }
    });
    let start = Instant::now();
    let (agent, made) = kill_trials(agent, &mut backend, kills).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let seconds = start.elapsed().as_secs_f64();

    let owed: HashSet<u64> = acknowledged
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| b * SPANS_PER_REQUEST..(b + 1) * SPANS_PER_REQUEST)
        .collect();
    let received = backend.sink.received.clone();
    let span_ids = move || received_span_ids(&received.lock().unwrap());
    settle(|| {
        let got: HashSet<u64> = span_ids().into_iter().collect();
        owed.is_subset(&got)
    })
    .await;
    // Late duplicates still in flight get a moment to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    report("otlp", made, &owed, &span_ids(), seconds);
    drop(agent);
}

/// A CRI line of the pod's `app` container carrying number `n`.
fn cri_line(n: u64) -> String {
    format!(
        "2026-11-21T10:{:02}:{:02}.{:09}Z stdout F INFO c.e.shop.OrderService - chaos-line-{n} \
         order completed\n",
        (n / 60_000) % 60,
        (n / 1000) % 60,
        n % 1_000_000_000
    )
}

async fn logs_case(kills: u32) {
    let dir = tempfile::tempdir().unwrap();
    let pod_dir = dir.path().join("pod");
    std::fs::create_dir_all(pod_dir.join("app")).unwrap();
    let log_file: PathBuf = pod_dir.join("app/0.log");
    std::fs::File::create(&log_file).unwrap();
    let mut backend = Backend::start();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let logs = format!(
        "logs:\n  podLogDir: {}\n  format: text\n  multiline: false\n  checkpointDir: {}\n",
        pod_dir.display(),
        dir.path().join("checkpoints").display()
    );
    let config = config(dir.path(), admin, free_port(), backend.addr.port(), &logs);
    let agent = {
        let dir = dir.path().to_owned();
        tokio::task::spawn_blocking(move || Agent::start(&dir, &config, admin))
            .await
            .unwrap()
    };

    // The container writes 20 lines every 10 ms, as a kubelet appends them.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&log_file)
                .unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let lines: String = (n..n + 20).map(cri_line).collect();
                file.write_all(lines.as_bytes()).unwrap();
                n += 20;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            n
        }
    });
    let start = Instant::now();
    let (agent, made) = kill_trials(agent, &mut backend, kills).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    let seconds = start.elapsed().as_secs_f64();

    let owed: HashSet<u64> = (0..written).collect();
    let received = backend.sink.received.clone();
    let line_numbers = move || -> Vec<u64> {
        received
            .lock()
            .unwrap()
            .logs
            .iter()
            .flat_map(|l| &l.resource_logs)
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .filter_map(|r| match r.body.as_ref()?.value.as_ref()? {
                Value::StringValue(body) => {
                    let rest = &body[body.find("chaos-line-")? + "chaos-line-".len()..];
                    let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
                    digits.parse().ok()
                }
                _ => None,
            })
            .collect()
    };
    settle(|| line_numbers().into_iter().collect::<HashSet<u64>>().len() as u64 >= written).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    report("logs", made, &owed, &line_numbers(), seconds);
    drop(agent);
}

fn env_number(name: &str, default: u32) -> u32 {
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
    let kills = env_number("CHAOS_KILLS", 50);
    let case = std::env::var("CHAOS_CASE").unwrap_or_default();
    runtime.block_on(async {
        if case.is_empty() || case == "otlp" {
            otlp_case(kills).await;
        }
        if case.is_empty() || case == "logs" {
            logs_case(kills).await;
        }
    });
}
