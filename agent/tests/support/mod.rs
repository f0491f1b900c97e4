//! Support for the agent's end-to-end tests: the real `vigil-agent` binary as a child process,
//! an OTLP receiver built on `opentelemetry-proto` standing in for a collector, a real
//! Prometheus with its remote-write receiver, and the Python OpenTelemetry and Prometheus
//! clients from the test tools venv. Every process is killed when its handle drops.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the report
#![allow(dead_code)] // each test binary uses a different part of this module

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tonic::{Request, Response, Status};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The agent's test fixtures from public projects, each folder with its SOURCE.txt and licence.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// Waits until `check` holds or `deadline` passes; returns whether it held.
pub fn wait_until(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

/// Async version of [`wait_until`].
pub async fn wait_for(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}

/// A blocking HTTP GET returning (status, body); `None` when nothing answers.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "-w", "\n%{http_code}", url])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    let code: u16 = code.trim().parse().ok()?;
    (code != 0).then(|| (code, body.to_owned()))
}

/// A running `vigil-agent`.
pub struct Agent {
    child: Option<Child>,
    /// `RLIMIT_NOFILE` of the agent process, when lowered.
    fd_limit: Option<u64>,
    pub config_path: PathBuf,
    pub admin: SocketAddr,
    pub stderr_path: PathBuf,
    /// Environment set beside the pod identity (what injection adds, such as `POD_IP`).
    env: Vec<(String, String)>,
}

impl Agent {
    /// Starts the agent on `config_yaml` (written into `dir/agent.yaml`) and waits for `/readyz`.
    pub fn start(dir: &Path, config_yaml: &str, admin: SocketAddr) -> Agent {
        Agent::start_with(dir, config_yaml, admin, &[], None)
    }

    /// [`Agent::start`] with more environment variables, as injection sets them.
    pub fn start_with_env(
        dir: &Path,
        config_yaml: &str,
        admin: SocketAddr,
        env: &[(&str, &str)],
    ) -> Agent {
        Agent::start_with(dir, config_yaml, admin, env, None)
    }

    /// [`Agent::start`] with the agent's open-files limit (`RLIMIT_NOFILE`) lowered to
    /// `fd_limit`, set by `sh`'s `ulimit` before it executes the agent (same process id).
    pub fn start_with_fd_limit(
        dir: &Path,
        config_yaml: &str,
        admin: SocketAddr,
        fd_limit: u64,
    ) -> Agent {
        Agent::start_with(dir, config_yaml, admin, &[], Some(fd_limit))
    }

    fn start_with(
        dir: &Path,
        config_yaml: &str,
        admin: SocketAddr,
        env: &[(&str, &str)],
        fd_limit: Option<u64>,
    ) -> Agent {
        let config_path = dir.join("agent.yaml");
        std::fs::write(&config_path, config_yaml).expect("write agent config");
        let mut agent = Agent {
            child: None,
            fd_limit,
            config_path,
            admin,
            stderr_path: dir.join("agent.stderr"),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        agent.spawn();
        agent
    }

    fn spawn(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .expect("agent stderr file");
        // `VIGIL_AGENT_BINARY` runs another build (a benchmark compiled in the dev profile
        // measuring the release binary).
        let binary = std::env::var("VIGIL_AGENT_BINARY")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_vigil-agent").to_owned());
        let mut command = match self.fd_limit {
            Some(limit) => {
                let mut command = Command::new("sh");
                command.args([
                    "-c",
                    "ulimit -n \"$0\" && exec \"$@\"",
                    &limit.to_string(),
                    &binary,
                ]);
                command
            }
            None => Command::new(binary),
        };
        let child = command
            .arg("--config")
            .arg(&self.config_path)
            .args(["--reload-interval", "0.5", "--shutdown-timeout", "5"])
            .env("POD_NAME", "checkout-7d9f-abcde")
            .env("POD_NAMESPACE", "shop")
            .env("POD_UID", "0b5c2f6e-1111-2222-3333-444455556666")
            .env("NODE_NAME", "node-a")
            .env("VIGIL_APP_VERSION", "17.2")
            .env("VIGIL_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start vigil-agent");
        self.child = Some(child);
        let ready = wait_until(Duration::from_secs(30), || {
            http_get(&format!("http://{}/readyz", self.admin)).is_some_and(|(code, _)| code == 200)
        });
        assert!(ready, "agent not ready; its log:\n{}", self.log());
    }

    /// Starts the agent again on the same config (after a kill).
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// Process id of the running agent (0 when stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The agent's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// `GET /metrics`.
    pub fn metrics(&self) -> String {
        http_get(&format!("http://{}/metrics", self.admin))
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    fn signal(&mut self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        self.signal("-KILL");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// SIGTERM, and wait (up to `deadline`) for a clean exit; returns the exit success.
    pub fn terminate(&mut self, deadline: Duration) -> bool {
        self.signal("-TERM");
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let end = Instant::now() + deadline;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the OTLP receiver got.
#[derive(Default, Debug)]
pub struct Received {
    pub traces: Vec<ExportTraceServiceRequest>,
    pub metrics: Vec<ExportMetricsServiceRequest>,
    pub logs: Vec<ExportLogsServiceRequest>,
}

/// An OTLP/gRPC receiver (the three collector services from `opentelemetry-proto`) that
/// records every request.
#[derive(Clone, Default)]
pub struct OtlpSinkServer {
    pub received: Arc<Mutex<Received>>,
}

#[tonic::async_trait]
impl TraceService for OtlpSinkServer {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.received
            .lock()
            .unwrap()
            .traces
            .push(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpSinkServer {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.received
            .lock()
            .unwrap()
            .metrics
            .push(request.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for OtlpSinkServer {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.received
            .lock()
            .unwrap()
            .logs
            .push(request.into_inner());
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

impl OtlpSinkServer {
    /// Serves on `addr` until the returned handle is aborted or dropped.
    pub fn serve(&self, addr: SocketAddr) -> ServerHandle {
        let svc = self.clone();
        let handle = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(svc.clone()))
                .add_service(MetricsServiceServer::new(svc.clone()))
                .add_service(LogsServiceServer::new(svc))
                .serve(addr)
                .await;
        });
        ServerHandle(handle)
    }
}

/// An OTLP/gRPC receiver that answers at once and only counts what it got (spans, log records,
/// data points), so that a benchmark measures the agent rather than the receiver's memory. Unlike
/// a collector it keeps nothing, never fails a request and applies no limits.
#[derive(Clone, Default)]
pub struct CountingOtlpSink {
    pub spans: Arc<AtomicU64>,
    pub log_records: Arc<AtomicU64>,
    pub data_points: Arc<AtomicU64>,
    pub requests: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for CountingOtlpSink {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans.fetch_add(spans as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for CountingOtlpSink {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let metrics: usize = request
            .get_ref()
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .map(|s| s.metrics.len())
            .sum();
        self.data_points
            .fetch_add(metrics as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for CountingOtlpSink {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let records: usize = request
            .get_ref()
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len())
            .sum();
        self.log_records
            .fetch_add(records as u64, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

impl CountingOtlpSink {
    /// Serves on `addr` until the returned handle is aborted or dropped. Accepts requests of
    /// any size.
    pub fn serve(&self, addr: SocketAddr) -> ServerHandle {
        let svc = self.clone();
        let handle = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(
                    TraceServiceServer::new(svc.clone()).max_decoding_message_size(usize::MAX),
                )
                .add_service(
                    MetricsServiceServer::new(svc.clone()).max_decoding_message_size(usize::MAX),
                )
                .add_service(LogsServiceServer::new(svc).max_decoding_message_size(usize::MAX))
                .serve(addr)
                .await;
        });
        ServerHandle(handle)
    }
}

/// Aborts the server task on drop.
pub struct ServerHandle(tokio::task::JoinHandle<()>);

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The test tools venv's Python (fails the test when missing: the test command installs it).
pub fn python() -> PathBuf {
    let python = repo_root().join(".tools/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run ./scripts/install-test-tools.sh (the test command does)",
        python.display()
    );
    python
}

/// Runs a Python script with the venv; panics with its output when it fails.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A real Prometheus with the remote-write receiver, on a free port, in a temp dir.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start() -> Prometheus {
        Prometheus::start_with("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    }

    /// Starts Prometheus on the given `prometheus.yml` (to make it scrape something).
    pub fn start_with(config_yaml: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml).expect("write prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is not installed: run ./scripts/install-test-tools.sh");
        let prometheus = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        let ready = wait_until(Duration::from_secs(30), || {
            http_get(&format!("http://{addr}/-/ready")).is_some_and(|(code, _)| code == 200)
        });
        assert!(ready, "prometheus did not become ready on {addr}");
        prometheus
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The remote-write URL.
    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Instant query; the `data.result` array.
    pub fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let out = Command::new("curl")
            .args(["-s", "-m", "5", "--data-urlencode"])
            .arg(format!("query={promql}"))
            .arg(format!("http://{}/api/v1/query", self.addr))
            .output()
            .expect("curl");
        let body: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of the process, in clock ticks (100 Hz on Linux).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12) // fields 14 and 15 of stat, counted after the comm field
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, …) in KiB; 0 when unreadable.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The ids of the spans [`bench_spans`] made that the receiver got, with repeats.
pub fn received_span_ids(received: &Received) -> Vec<u64> {
    received
        .traces
        .iter()
        .flat_map(|t| &t.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .filter_map(|s| <[u8; 8]>::try_from(s.span_id.as_slice()).ok())
        .map(|id| u64::from_be_bytes(id) - 1)
        .collect()
}

/// Request `batch` of `n` spans of an HTTP server, with ids unique across batches: the load
/// the agent benchmarks send.
pub fn bench_spans(batch: u64, n: u64) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| {
            let id = batch * n + i;
            Span {
                trace_id: (u128::from(id) + 1).to_be_bytes().to_vec(),
                span_id: (id + 1).to_be_bytes().to_vec(),
                name: "GET /api/accounts/{id}".into(),
                start_time_unix_nano: 1_700_000_000_000_000_000 + id,
                end_time_unix_nano: 1_700_000_000_000_500_000 + id,
                attributes: vec![
                    KeyValue {
                        key: "http.route".into(),
                        value: Some(AnyValue {
                            value: Some(AnyValueKind::StringValue("/api/accounts/{id}".into())),
                        }),
                        ..Default::default()
                    },
                    KeyValue {
                        key: "http.status_code".into(),
                        value: Some(AnyValue {
                            value: Some(AnyValueKind::IntValue(200)),
                        }),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
