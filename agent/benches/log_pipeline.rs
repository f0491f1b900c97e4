//! Log pipeline throughput: tail → CRI parse → message parse → multi-line joiner → crash
//! detection → redaction → enrichment into OTLP requests, over a generated CRI log file
//! (~200 MiB, `VIGIL_BENCH_LOG_MIB` to change) read from the page cache.
//!
//! "Log source alone" is tail, CRI and message parsing, crash detection and redaction without
//! detectors, but no multi-line joiner and no enrichment. Prints, per case, MiB/s of log file and CPU-seconds per GiB (user + system time of the
//! process from `/proc/self/stat`). Run with `cargo bench -p vigil-agent --bench log_pipeline`.
//! `VIGIL_BENCH_CASE=<text>` runs only the cases whose name contains it. Figures only, no
//! assertions.

#![allow(clippy::unwrap_used)] // benchmark set-up: a failure is the report

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use vigil_agent::event::LogEvent;
use vigil_agent::identity::Identity;
use vigil_agent::processors::crash::CrashDetector;
use vigil_agent::processors::enrich::logs_request;
use vigil_agent::processors::redact::Redactor;
use vigil_agent::router::Router;
use vigil_agent::sources::logs::{LogPipeline, LogSource, BATCH_MAX_EVENTS};
use vigil_crds::agent_config::{LogsConfig, RedactionConfig};
use vigil_crds::monitored_app::{Detector, LogFormat};

const LEVELS: [&str; 4] = ["INFO", "INFO", "WARN", "DEBUG"];
const PATHS: [&str; 4] = [
    "/api/orders",
    "/api/cart",
    "/healthz",
    "/api/payments/confirm",
];

fn plain_line(n: u64) -> String {
    format!(
        "2024-05-01 12:{:02}:{:02}.{:03} {} [http-nio-8080-exec-{}] c.e.shop.OrderService - \
         GET {} completed status=200 in {} ms for customer {} (items={})",
        (n / 60_000) % 60,
        (n / 1000) % 60,
        n % 1000,
        LEVELS[(n % 4) as usize],
        n % 16,
        PATHS[(n % 4) as usize],
        n % 250,
        n * 7919 % 100_000,
        n % 9
    )
}

fn json_line(n: u64) -> String {
    format!(
        r#"{{"time":"2024-05-01T12:{:02}:{:02}.{:03}Z","level":"{}","logger":"c.e.shop.OrderService","thread":"http-nio-8080-exec-{}","msg":"request completed","method":"GET","path":"{}","status":200,"duration_ms":{},"customer":"c-{}","items":{}}}"#,
        (n / 60_000) % 60,
        (n / 1000) % 60,
        n % 1000,
        LEVELS[(n % 4) as usize].to_ascii_lowercase(),
        n % 16,
        PATHS[(n % 4) as usize],
        n % 250,
        n * 7919 % 100_000,
        n % 9
    )
}

/// Writes a CRI log file of about `bytes` bytes; returns its exact size and line count.
fn generate(path: &Path, bytes: u64, message: fn(u64) -> String) -> (u64, u64) {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut written = 0u64;
    let mut n = 0u64;
    while written < bytes {
        let line = format!(
            "2024-05-01T12:{:02}:{:02}.{:09}Z stdout F {}\n",
            (n / 60_000) % 60,
            (n / 1000) % 60,
            n % 1_000_000_000,
            message(n)
        );
        out.write_all(line.as_bytes()).unwrap();
        written += line.len() as u64;
        n += 1;
    }
    out.flush().unwrap();
    (written, n)
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    (ticks(11) + ticks(12)) / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    // USER_HZ is 100 on every Linux architecture the agent is built for.
    100.0
}

fn pipeline(detectors: Vec<Detector>) -> LogPipeline {
    let identity = Identity {
        namespace: "shop".into(),
        app: "checkout".into(),
        pod: "checkout-7d9f-abcde".into(),
        pod_uid: "0b5c6f9e-3f0e-4f4e-9b1e-2a1d2c3b4a5f".into(),
        node: "node-1".into(),
        version: "1.2.3".into(),
        cluster: String::new(),
    };
    LogPipeline {
        crashes: Arc::new(CrashDetector::new(&identity, Some("customer".into()))),
        redactor: Arc::new(
            Redactor::new(&RedactionConfig {
                detectors,
                patterns: Vec::new(),
            })
            .unwrap(),
        ),
        identity,
        router: Router::default(),
    }
}

/// One measured configuration.
struct Case {
    name: &'static str,
    format: LogFormat,
    message: fn(u64) -> String,
    detectors: Vec<Detector>,
    /// Multi-line joining and enrichment on (the whole pipeline), or the log source alone.
    whole: bool,
}

fn run_case(case: Case) {
    let Case {
        name,
        format,
        message,
        detectors,
        whole,
    } = case;
    if std::env::var("VIGIL_BENCH_CASE").is_ok_and(|only| !name.contains(&only)) {
        return;
    }
    let mib: u64 = std::env::var("VIGIL_BENCH_LOG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let container = dir.path().join("pod/app");
    std::fs::create_dir_all(&container).unwrap();
    let (size, lines) = generate(&container.join("0.log"), mib << 20, message);
    let config = LogsConfig {
        pod_log_dir: Some(dir.path().join("pod").display().to_string()),
        containers: Vec::new(),
        files: Vec::new(),
        format,
        multiline: whole,
        user_field: Some("customer".into()),
        checkpoint_dir: dir.path().join("checkpoints").display().to_string(),
    };
    let pipeline = pipeline(detectors);
    let mut source = LogSource::open(&config, &pipeline).unwrap();

    let cpu_start = cpu_seconds();
    let start = Instant::now();
    let mut read = 0u64;
    let mut events: Vec<LogEvent> = Vec::new();
    let mut delivered = 0usize;
    let mut records = 0usize;
    loop {
        let outcome = source.poll(Instant::now(), &mut events);
        read += outcome.bytes;
        // Full batches leave in order, each event moved once; the rest waits for the next poll.
        let full = events.len() / BATCH_MAX_EVENTS * BATCH_MAX_EVENTS;
        let mut ready = events.drain(..full);
        loop {
            let batch: Vec<LogEvent> = ready.by_ref().take(BATCH_MAX_EVENTS).collect();
            if batch.is_empty() {
                break;
            }
            delivered += batch.len();
            if whole {
                records += logs_request(&pipeline.identity, batch).resource_logs.len();
            }
        }
        drop(ready);
        if !outcome.more && read >= size {
            break;
        }
    }
    source.flush_all(&mut events);
    delivered += events.len();
    if whole {
        records += logs_request(&pipeline.identity, std::mem::take(&mut events))
            .resource_logs
            .len();
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    let mib_read = size as f64 / f64::from(1 << 20);
    println!(
        "{name:<34} {mib_read:>7.1} MiB {lines:>9} lines {delivered:>9} events  \
         {:>7.1} MiB/s  {:>6.2} CPU-s/GiB  ({wall:.2} s wall, {cpu:.2} s CPU, {records} requests)",
        mib_read / wall,
        cpu / (mib_read / 1024.0),
    );
}

fn main() {
    println!("log pipeline: tail + CRI + parse + join + crash + redact + enrich");
    let cases = [
        (
            "plain text, all detectors",
            LogFormat::Text,
            Detector::all(),
            true,
        ),
        (
            "plain text, no detectors",
            LogFormat::Text,
            Vec::new(),
            true,
        ),
        (
            "plain text, log source alone",
            LogFormat::Text,
            Vec::new(),
            false,
        ),
        (
            "json, all detectors",
            LogFormat::Json,
            Detector::all(),
            true,
        ),
        ("json, no detectors", LogFormat::Json, Vec::new(), true),
        ("json, log source alone", LogFormat::Json, Vec::new(), false),
    ];
    for (name, format, detectors, whole) in cases {
        run_case(Case {
            name,
            format,
            message: if format == LogFormat::Json {
                json_line
            } else {
                plain_line
            },
            detectors,
            whole,
        });
    }
}
