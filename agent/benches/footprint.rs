//! Footprint of the real `vigil-agent` binary, read from `/proc`: RSS when idle, and RSS and
//! CPU at a steady 10,000 spans/s over OTLP/gRPC delivered to an OTLP receiver. Prints figures;
//! asserts nothing (`cargo bench -p vigil-agent --bench footprint`).
//!
//! Knobs (environment): `FOOTPRINT_WORKER_THREADS=N` starts the agent with `--worker-threads N`
//! (default: the agent's own default); `FOOTPRINT_SECONDS` sets the length of the load (default
//! 30); `FOOTPRINT_AGENT=PATH` runs another build of the agent (a copy kept for a profiler).
//! The agent inherits the environment, so `MALLOC_ARENA_MAX=2 cargo bench …` measures that.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the report

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use support::{bench_spans, cpu_ticks, free_port, http_get, wait_until, OtlpSinkServer};

/// The agent under test, killed on drop.
struct Agent(Child);

impl Agent {
    /// Starts the agent on `config` (written into `dir`) with the knobs above, and waits until
    /// it is ready.
    fn start(dir: &Path, config: &str, admin: SocketAddr) -> Agent {
        let config_path = dir.join("agent.yaml");
        std::fs::write(&config_path, config).unwrap();
        let binary = std::env::var_os("FOOTPRINT_AGENT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vigil-agent")));
        let mut command = Command::new(binary);
        command
            .arg("--config")
            .arg(&config_path)
            .env("POD_NAME", "api-7d9f-abcde")
            .env("POD_NAMESPACE", "bench")
            .env("POD_UID", "0b5c2f6e-1111-2222-3333-444455556666")
            .env("NODE_NAME", "node-a")
            .env("VIGIL_APP_VERSION", "17.2")
            .env("VIGIL_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("agent.stderr")).unwrap());
        if let Ok(threads) = std::env::var("FOOTPRINT_WORKER_THREADS") {
            command.args(["--worker-threads", &threads]);
        }
        let agent = Agent(command.spawn().unwrap());
        let ready = wait_until(Duration::from_secs(30), || {
            http_get(&format!("http://{admin}/readyz")).is_some_and(|(code, _)| code == 200)
        });
        assert!(ready, "agent not ready");
        agent
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sink = OtlpSinkServer::default();
        let sink_port = free_port();
        let _server = sink.serve(format!("127.0.0.1:{sink_port}").parse().unwrap());
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let (grpc, http) = (free_port(), free_port());
        let config = format!(
            "version: 1\napp:\n  namespace: bench\n  name: api\n  clientType: generic\n  releaseSource: label\nlisten:\n  otlpGrpc: 127.0.0.1:{grpc}\n  otlpHttp: 127.0.0.1:{http}\n  admin: {admin}\ntraces:\n  enabled: true\n  samplingRatio: 1.0\ncrashes:\n  enabled: true\nredaction:\n  detectors: [creditCard, iban, email, phone, bearerToken, jwt]\nbuffer:\n  path: {}\n  maxBytes: 268435456\n  whenFull: block\nexporters:\n  otlp:\n    endpoint: http://127.0.0.1:{sink_port}\n    protocol: grpc\n",
            dir.path().join("buffer").display()
        );
        let agent = tokio::task::spawn_blocking({
            let dir = dir.path().to_owned();
            move || Agent::start(&dir, &config, admin)
        })
        .await
        .unwrap();
        let pid = agent.pid();
        eprintln!("footprint: agent pid {pid}");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let idle_rss = proc_status(pid, "VmRSS:");

        let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}")).await.unwrap();
        let rate = 10_000u64;
        let per_batch = 100u64;
        let seconds: u64 = std::env::var("FOOTPRINT_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30);
        let ticks_before = cpu_ticks(pid);
        let start = Instant::now();
        let mut interval = tokio::time::interval(Duration::from_millis(1000 * per_batch / rate));
        let mut sent = 0u64;
        let mut peak_rss = 0;
        for batch in 0..(rate * seconds / per_batch) {
            interval.tick().await;
            if client.export(bench_spans(batch, per_batch)).await.is_ok() {
                sent += per_batch;
            }
            if batch % 100 == 0 {
                peak_rss = peak_rss.max(proc_status(pid, "VmRSS:"));
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = (cpu_ticks(pid) - ticks_before) as f64 / 100.0;
        let load_rss = proc_status(pid, "VmRSS:");
        let delivered = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let n: usize = sink
                    .received
                    .lock()
                    .unwrap()
                    .traces
                    .iter()
                    .flat_map(|t| &t.resource_spans)
                    .flat_map(|r| &r.scope_spans)
                    .map(|s| s.spans.len())
                    .sum();
                if n as u64 >= sent {
                    return n;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await
        .unwrap_or(0);
        let threads = std::env::var("FOOTPRINT_WORKER_THREADS").unwrap_or_else(|_| "default".into());
        println!(
            "footprint: idle RSS {:.1} MiB (worker threads: {threads})",
            idle_rss as f64 / 1024.0
        );
        println!(
            "footprint: {:.0} spans/s for {elapsed:.1} s: CPU {:.2} % of one core, RSS {:.1} MiB (peak sampled {:.1} MiB, VmHWM {:.1} MiB), delivered {delivered} of {sent}",
            sent as f64 / elapsed,
            cpu / elapsed * 100.0,
            load_rss as f64 / 1024.0,
            peak_rss as f64 / 1024.0,
            proc_status(pid, "VmHWM:") as f64 / 1024.0,
        );
        drop(agent);
    });
}
