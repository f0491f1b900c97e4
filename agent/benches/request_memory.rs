//! Memory of the real `vigil-agent` binary, read from `/proc`: peak RSS while it handles one
//! OTLP request of 1, 4, 8 and 15 MB (HTTP and gRPC) and several large ones at once, and the
//! RSS a second after (memory given back); then steady RSS at 10,000 spans/s over gRPC, at a
//! live 5 MiB/s of container logs, and while it catches up a backlog of logs. Prints figures;
//! asserts nothing (`cargo bench -p vigil-agent --bench request_memory`).
//!
//! The peak of each step is the kernel's high-water mark (`VmHWM`), reset before the step
//! through `/proc/PID/clear_refs`. Knobs (environment): `REQUEST_MEMORY_SECONDS` sets the
//! length of each steady load (default 20); `REQUEST_MEMORY_BACKLOG_MIB` the backlog (default
//! 256); `VIGIL_AGENT_BINARY=PATH` runs another build of the agent (such as the release binary
//! from a bench compiled with `--profile dev`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code: a failure is the report

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use support::{bench_spans, free_port, Agent, CountingOtlpSink};

const MIB: f64 = 1024.0 * 1024.0;

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn rss_mib(pid: u32) -> f64 {
    proc_status_kib(pid, "VmRSS:") as f64 / 1024.0
}

fn peak_mib(pid: u32) -> f64 {
    proc_status_kib(pid, "VmHWM:") as f64 / 1024.0
}

/// Resets the peak RSS (`VmHWM`) to the current RSS.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("clear_refs (needs Linux)");
}

fn seconds() -> u64 {
    std::env::var("REQUEST_MEMORY_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

struct Ports {
    admin: SocketAddr,
    grpc: u16,
    http: u16,
}

fn new_ports() -> Ports {
    Ports {
        admin: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        grpc: free_port(),
        http: free_port(),
    }
}

/// The agent config: OTLP in, everything out to the counting sink on `sink_port`, `extra`
/// appended (a `logs:` section).
fn config(ports: &Ports, dir: &Path, sink_port: u16, extra: &str) -> String {
    format!(
        "version: 1\napp:\n  namespace: bench\n  name: api\n  clientType: generic\n  releaseSource: label\nlisten:\n  otlpGrpc: 127.0.0.1:{grpc}\n  otlpHttp: 127.0.0.1:{http}\n  admin: {admin}\ntraces:\n  enabled: true\n  samplingRatio: 1.0\ncrashes:\n  enabled: true\nredaction:\n  detectors: [creditCard, iban, email, phone, bearerToken, jwt]\nbuffer:\n  path: {buffer}\n  maxBytes: 268435456\n  whenFull: block\nexporters:\n  otlp:\n    endpoint: http://127.0.0.1:{sink_port}\n    protocol: grpc\n{extra}",
        grpc = ports.grpc,
        http = ports.http,
        admin = ports.admin,
        buffer = dir.join("buffer").display(),
    )
}

async fn start_agent(dir: &Path, config: String, admin: SocketAddr) -> Agent {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || Agent::start(&dir, &config, admin))
        .await
        .unwrap()
}

/// A traces request of about `bytes` encoded bytes.
fn request_of(bytes: usize, batch: u64) -> ExportTraceServiceRequest {
    let per_span = bench_spans(0, 1000).encoded_len() / 1000;
    bench_spans(batch, (bytes / per_span) as u64)
}

/// Sends `request` over `transport`; returns the outcome (`ok`, or the refusal).
async fn send(transport: &str, ports: &Ports, request: ExportTraceServiceRequest) -> String {
    match transport {
        "http" => {
            let response = reqwest::Client::new()
                .post(format!("http://127.0.0.1:{}/v1/traces", ports.http))
                .header("content-type", "application/x-protobuf")
                .body(request.encode_to_vec())
                .send()
                .await;
            match response {
                Ok(r) if r.status().is_success() => "ok".into(),
                Ok(r) => r.status().as_u16().to_string(),
                Err(e) => format!("error {e}"),
            }
        }
        _ => {
            let client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", ports.grpc))
                .await
                .unwrap();
            let mut client = client.max_encoding_message_size(64 << 20);
            match client.export(request).await {
                Ok(_) => "ok".into(),
                Err(status) => format!("{:?}", status.code()),
            }
        }
    }
}

/// Steady RSS under a load: the median and the largest of one sample a second after the
/// first quarter of `seconds` (warm-up).
fn steady(samples: &[f64]) -> (f64, f64) {
    let mut tail: Vec<f64> = samples[samples.len() / 4..].to_vec();
    tail.sort_by(f64::total_cmp);
    (tail[tail.len() / 2], tail.last().copied().unwrap_or(0.0))
}

/// Appends CRI lines of about 200 bytes to `file` at `bytes_per_second` for `seconds`, or as
/// fast as it can when `bytes_per_second` is 0 and `total` bytes are asked for.
fn write_logs(file: &Path, bytes_per_second: usize, seconds: u64, total: usize) -> usize {
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    let mut line_no = 0u64;
    let mut line = |buf: &mut Vec<u8>| {
        line_no += 1;
        writeln!(
            buf,
            "2026-11-21T10:00:00.000000000Z stdout F {{\"level\":\"info\",\"msg\":\"request served\",\"route\":\"/api/accounts/{{id}}\",\"status\":200,\"duration_ms\":12,\"request_id\":\"{line_no:016x}\",\"user\":\"u-{}\"}}",
            line_no % 1000
        )
        .unwrap();
    };
    let mut written = 0;
    if bytes_per_second == 0 {
        let mut buf = Vec::with_capacity(1 << 20);
        while written < total {
            buf.clear();
            while buf.len() < (1 << 20) - 300 {
                line(&mut buf);
            }
            out.write_all(&buf).unwrap();
            written += buf.len();
        }
        return written;
    }
    // Ten writes a second.
    let start = Instant::now();
    let mut buf = Vec::new();
    for tick in 0..seconds * 10 {
        buf.clear();
        while buf.len() < bytes_per_second / 10 {
            line(&mut buf);
        }
        out.write_all(&buf).unwrap();
        written += buf.len();
        let next = start + Duration::from_millis(100 * (tick + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    written
}

fn logs_section(pod_dir: &Path, dir: &Path) -> String {
    format!(
        "logs:\n  podLogDir: {}\n  format: json\n  multiline: true\n  checkpointDir: {}\n",
        pod_dir.display(),
        dir.join("checkpoints").display()
    )
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sink = CountingOtlpSink::default();
        let sink_port = free_port();
        let _server = sink.serve(format!("127.0.0.1:{sink_port}").parse().unwrap());
        let seconds = seconds();

        // One request at a time, then several at once.
        let dir = tempfile::tempdir().unwrap();
        let ports = new_ports();
        let agent = start_agent(dir.path(), config(&ports, dir.path(), sink_port, ""), ports.admin).await;
        let pid = agent.pid();
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!("request_memory: idle RSS {:.1} MiB", rss_mib(pid));
        for transport in ["http", "grpc"] {
            for mb in [1usize, 4, 8, 15] {
                let request = request_of(mb * 1_000_000, mb as u64);
                let bytes = request.encoded_len() as f64 / MIB;
                reset_peak(pid);
                let outcome = send(transport, &ports, request).await;
                // Delivery to the sink is part of handling it.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let peak = peak_mib(pid);
                println!(
                    "request_memory: one {bytes:.1} MiB request over {transport}: {outcome}, peak RSS {peak:.1} MiB, RSS 1 s after {:.1} MiB",
                    rss_mib(pid)
                );
            }
            for (count, mb) in [(4usize, 15usize), (8, 4)] {
                reset_peak(pid);
                let sends = (0..count).map(|i| {
                    let request = request_of(mb * 1_000_000, 100 + i as u64);
                    let ports = &ports;
                    async move { send(transport, ports, request).await }
                });
                let outcomes = futures::future::join_all(sends).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let ok = outcomes.iter().filter(|o| *o == "ok").count();
                let refused: Vec<&String> = outcomes.iter().filter(|o| *o != "ok").collect();
                println!(
                    "request_memory: {count} × {mb} MB at once over {transport}: {ok} stored, refused {refused:?} (retryable), peak RSS {:.1} MiB, RSS 1 s after {:.1} MiB",
                    peak_mib(pid),
                    rss_mib(pid)
                );
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        println!("request_memory: RSS 3 s after the bursts {:.1} MiB", rss_mib(pid));

        // 10,000 spans/s over gRPC, batches of 100.
        let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", ports.grpc))
            .await
            .unwrap();
        let mut interval = tokio::time::interval(Duration::from_millis(10));
        let mut samples = Vec::new();
        let start = Instant::now();
        let mut batch = 1_000_000u64;
        while start.elapsed() < Duration::from_secs(seconds) {
            interval.tick().await;
            batch += 1;
            let _ = client.export(bench_spans(batch, 100)).await;
            if batch % 100 == 0 {
                samples.push(rss_mib(pid));
            }
        }
        let (median, max) = steady(&samples);
        println!("request_memory: 10,000 spans/s over gRPC for {seconds} s: steady RSS {median:.1} MiB (largest sample {max:.1} MiB)");
        drop(agent);

        // Live logs at 5 MiB/s.
        let dir = tempfile::tempdir().unwrap();
        let pod_dir = dir.path().join("pod");
        std::fs::create_dir_all(pod_dir.join("api")).unwrap();
        let log_file = pod_dir.join("api/0.log");
        std::fs::write(&log_file, "").unwrap();
        let ports = new_ports();
        let extra = logs_section(&pod_dir, dir.path());
        let agent = start_agent(dir.path(), config(&ports, dir.path(), sink_port, &extra), ports.admin).await;
        let pid = agent.pid();
        let before = sink.log_records.load(Ordering::Relaxed);
        let writer = {
            let log_file = log_file.clone();
            std::thread::spawn(move || write_logs(&log_file, 5 << 20, seconds, 0))
        };
        let mut samples = Vec::new();
        while !writer.is_finished() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            samples.push(rss_mib(pid));
        }
        let written = writer.join().unwrap();
        let (median, max) = steady(&samples);
        println!(
            "request_memory: live logs at {:.1} MiB/s for {seconds} s: steady RSS {median:.1} MiB (largest sample {max:.1} MiB, peak {:.1} MiB), {} records delivered meanwhile",
            written as f64 / MIB / seconds as f64,
            peak_mib(pid),
            sink.log_records.load(Ordering::Relaxed) - before
        );
        drop(agent);

        // A backlog of logs, written before the agent starts.
        let backlog_mib: usize = std::env::var("REQUEST_MEMORY_BACKLOG_MIB")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(256);
        let dir = tempfile::tempdir().unwrap();
        let pod_dir = dir.path().join("pod");
        std::fs::create_dir_all(pod_dir.join("api")).unwrap();
        let written = write_logs(&pod_dir.join("api/0.log"), 0, 0, backlog_mib << 20);
        let lines = written / 200;
        let ports = new_ports();
        let extra = logs_section(&pod_dir, dir.path());
        let before = sink.log_records.load(Ordering::Relaxed);
        let agent = start_agent(dir.path(), config(&ports, dir.path(), sink_port, &extra), ports.admin).await;
        let pid = agent.pid();
        let start = Instant::now();
        let mut samples = Vec::new();
        let deadline = Duration::from_secs(seconds * 6);
        let mut delivered = 0;
        while start.elapsed() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
            samples.push(rss_mib(pid));
            delivered = sink.log_records.load(Ordering::Relaxed) - before;
            if delivered as usize >= lines * 99 / 100 {
                break;
            }
        }
        let (median, max) = steady(&samples);
        println!(
            "request_memory: catching up a {:.0} MiB backlog of logs: steady RSS {median:.1} MiB (largest sample {max:.1} MiB, peak {:.1} MiB), {delivered} records in {:.1} s",
            written as f64 / MIB,
            peak_mib(pid),
            start.elapsed().as_secs_f64()
        );
        drop(agent);
    });
}
