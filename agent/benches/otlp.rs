//! OTLP/gRPC ingest benchmark: spans per second per core through the whole receive path —
//! tonic decode, id checks, sampling, redaction (all built-in detectors), enrichment and the
//! router's `try_send` into a real disk buffer in a temporary directory — fed by a tonic client
//! in the same process with batches of 512 spans shaped like an HTTP service's spans.
//!
//! Prints figures; asserts nothing. CPU time is the process's user + system time from
//! `/proc/self/stat`, so it includes the client's encoding, which is measured separately and
//! reported alongside.
//!
//! Run with `cargo bench -p vigil-agent --bench otlp`.

#![allow(
    clippy::expect_used,
    reason = "a benchmark stops at the first failed setup step"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;
use vigil_agent::batch::Signal;
use vigil_agent::buffer;
use vigil_agent::identity::Identity;
use vigil_agent::processors::redact::Redactor;
use vigil_agent::router::{Route, Router};
use vigil_agent::sources::otlp::{serve_grpc_on, Limits, OtlpReceiver, RequestBudget};
use vigil_crds::agent_config::RedactionConfig;
use vigil_crds::monitored_app::{Detector, WhenFull};

const SPANS_PER_BATCH: usize = 512;
const BATCHES: usize = 2_000;
const CONCURRENT_SENDERS: usize = 4;
const PACED_SPANS_PER_SECOND: usize = 10_000;
const PACED_SECONDS: u64 = 10;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run());
}

/// Process CPU time (user + system).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    let ticks_per_second = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(100);
    Duration::from_nanos(ticks * 1_000_000_000 / ticks_per_second)
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A batch of spans like an instrumented HTTP service produces: server spans with the usual
/// semantic-convention attributes, client and database child spans.
fn batch(seed: u64, count: usize) -> ExportTraceServiceRequest {
    let mut spans = Vec::with_capacity(count);
    for i in 0..count as u64 {
        let trace = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i / 4);
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&trace.to_be_bytes());
        trace_id[8..].copy_from_slice(&trace.rotate_left(17).wrapping_add(1).to_be_bytes());
        let start = 1_700_000_000_000_000_000 + i * 1_000_000;
        spans.push(Span {
            trace_id: trace_id.to_vec(),
            span_id: (seed << 20 | i | 1).to_be_bytes().to_vec(),
            parent_span_id: if i % 4 == 0 {
                Vec::new()
            } else {
                (seed << 20 | (i - i % 4) | 1).to_be_bytes().to_vec()
            },
            name: if i % 4 == 0 {
                "GET /api/orders/{id}".into()
            } else {
                "SELECT orders".into()
            },
            kind: if i % 4 == 0 { 2 } else { 3 },
            start_time_unix_nano: start,
            end_time_unix_nano: start + 3_500_000,
            attributes: vec![
                kv("http.request.method", Value::StringValue("GET".into())),
                kv("http.route", Value::StringValue("/api/orders/{id}".into())),
                kv("http.response.status_code", Value::IntValue(200)),
                kv(
                    "url.path",
                    Value::StringValue(format!("/api/orders/{}", 10_000 + i)),
                ),
                kv(
                    "server.address",
                    Value::StringValue("orders.shop.svc".into()),
                ),
                kv(
                    "user_agent.original",
                    Value::StringValue("okhttp/4.12.0".into()),
                ),
                kv("db.system", Value::StringValue("postgresql".into())),
            ],
            ..Default::default()
        });
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", Value::StringValue("orders".into())),
                    kv("telemetry.sdk.language", Value::StringValue("java".into())),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "io.opentelemetry.okhttp-3.0".into(),
                    version: "2.9.0".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A running gRPC receiver over a fresh buffer.
struct Agent {
    client: TraceServiceClient<tonic::transport::Channel>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<Result<(), vigil_agent::sources::otlp::OtlpError>>,
    _reader: buffer::BufferReader,
    _dir: tempfile::TempDir,
}

async fn start(detectors: Vec<Detector>) -> Agent {
    let dir = tempfile::tempdir().expect("temporary directory");
    // Nothing drains the buffer during the run, so it is sized to hold everything.
    let (writer, reader) =
        buffer::open(dir.path(), 8 << 30, WhenFull::Block, "sink_bench").expect("buffer");
    let identity = Identity {
        namespace: "shop".into(),
        app: "orders".into(),
        pod: "orders-6c9f7-abcde".into(),
        pod_uid: "0f0e0d0c-0000-4000-8000-000000000001".into(),
        node: "node-a".into(),
        version: "3.2.1".into(),
        cluster: String::new(),
    };
    let redaction = RedactionConfig {
        detectors,
        patterns: Vec::new(),
    };
    let receiver = OtlpReceiver {
        identity,
        redactor: Arc::new(Redactor::new(&redaction).expect("redactor")),
        router: Router::new(vec![Route {
            sink: "sink_bench".into(),
            signals: [Signal::Traces].to_vec(),
            writer,
        }]),
        sampling_ratio: 1.0,
        budget: RequestBudget::new(1 << 30),
        limits: Limits::default(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("listener");
    let addr = listener.local_addr().expect("address");
    let (stop, shutdown) = watch::channel(false);
    let server = tokio::spawn(serve_grpc_on(listener, receiver, shutdown));
    let client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("client")
        .max_encoding_message_size(64 << 20);
    Agent {
        client,
        stop,
        server,
        _reader: reader,
        _dir: dir,
    }
}

impl Agent {
    async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.server.await;
    }
}

async fn run() {
    let requests: Vec<ExportTraceServiceRequest> =
        (0..16).map(|seed| batch(seed, SPANS_PER_BATCH)).collect();
    let batch_bytes = requests[0].encoded_len();
    println!(
        "otlp bench: {BATCHES} batches × {SPANS_PER_BATCH} spans ({} KiB per batch) over gRPC, \
         {CONCURRENT_SENDERS} concurrent senders, 2 runtime threads, sampling ratio 1",
        batch_bytes / 1024
    );

    // Client-side encoding alone, to separate it from the agent's share.
    let cpu = cpu_time();
    for n in 0..BATCHES / 4 {
        std::hint::black_box(requests[n % requests.len()].encode_to_vec());
    }
    let encode_per_span = (cpu_time() - cpu).as_secs_f64() / (BATCHES / 4 * SPANS_PER_BATCH) as f64;
    println!(
        "  client encode alone: {:.2} µs CPU per span",
        encode_per_span * 1e6
    );

    for (label, detectors) in [
        ("redaction: all detectors", Detector::all()),
        ("redaction: none", Vec::new()),
    ] {
        println!("{label}");
        let agent = start(detectors).await;
        throughput(&agent, &requests, encode_per_span).await;
        paced(&agent).await;
        agent.stop().await;
    }
}

/// As fast as the senders go.
async fn throughput(agent: &Agent, requests: &[ExportTraceServiceRequest], encode_per_span: f64) {
    for request in &requests[..4] {
        agent
            .client
            .clone()
            .export(request.clone())
            .await
            .expect("export");
    }
    let cpu = cpu_time();
    let wall = Instant::now();
    let mut senders = Vec::new();
    for sender in 0..CONCURRENT_SENDERS {
        let mut client = agent.client.clone();
        let requests = requests.to_vec();
        senders.push(tokio::spawn(async move {
            for n in (sender..BATCHES).step_by(CONCURRENT_SENDERS) {
                client
                    .export(requests[n % requests.len()].clone())
                    .await
                    .expect("export");
            }
        }));
    }
    for sender in senders {
        sender.await.expect("sender");
    }
    let wall = wall.elapsed();
    let cpu = cpu_time() - cpu;
    let spans = (BATCHES * SPANS_PER_BATCH) as f64;
    let cpu_per_span = cpu.as_secs_f64() / spans;
    let agent_per_span = (cpu_per_span - encode_per_span).max(f64::EPSILON);
    println!(
        "  throughput:        {:>10.0} spans/s wall",
        spans / wall.as_secs_f64()
    );
    println!(
        "  CPU per span:      {:>10.2} µs (process, incl. client) · {:.2} µs without client encode",
        cpu_per_span * 1e6,
        agent_per_span * 1e6
    );
    println!(
        "  spans/s per core:  {:>10.0} (process) · {:.0} without client encode",
        1.0 / cpu_per_span,
        1.0 / agent_per_span
    );
}

/// A steady 10k spans/s: ten batches a second, as an SDK batch processor with a 100 ms delay
/// sends them.
async fn paced(agent: &Agent) {
    let request = batch(99, PACED_SPANS_PER_SECOND / 10);
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let mut client = agent.client.clone();
    let cpu = cpu_time();
    let wall = Instant::now();
    let mut sent = 0usize;
    for _ in 0..PACED_SECONDS * 10 {
        ticker.tick().await;
        sent += PACED_SPANS_PER_SECOND / 10;
        client.export(request.clone()).await.expect("export");
    }
    let wall = wall.elapsed();
    let cpu = cpu_time() - cpu;
    println!(
        "  at {:.0} spans/s:  {:>8.2} % of one core (process, incl. client)",
        sent as f64 / wall.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    );
}
