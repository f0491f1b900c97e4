//! Side by side: the real `vigil-agent` binary against the C log shippers rsyslog (imfile →
//! omfwd) and syslog-ng (file → network: its `file()` source followed rotations better than
//! `wildcard-file()` in a trial), and against Prometheus itself for scraping,
//! on the same input and into one local sink that counts every line by its number, so lost and
//! duplicated lines are seen. Prints one table per case with ratios agent/peer; asserts nothing
//! (`cargo bench -p vigil-agent --bench side_by_side`, from `scripts/bench.sh`).
//!
//! The shippers do not do the same work: the agent parses each CRI line (timestamp, stream,
//! partial tag), joins multi-line records, redacts, batches and ships OTLP/gRPC; rsyslog and
//! syslog-ng forward the raw file lines over TCP (newline-framed). The sink takes both (OTLP
//! log bodies and TCP lines) and reads the number in each line.
//!
//! - **backlog**: a file of `SIDE_BACKLOG_MIB` (default 256) MiB of numbered 256-byte CRI lines
//!   is in `pod/app/0.log` before the shipper starts; timed until the sink has every line.
//!   MiB/s delivered, MiB per shipper CPU-second (utime+stime), peak RSS (VmHWM) and steady RSS
//!   (median of VmRSS sampled every 100 ms).
//! - **live**: a writer appends numbered lines at `SIDE_LIVE_MIB_S` (default 5) MiB/s for
//!   `SIDE_LIVE_SECONDS` (default 60) s, with `SIDE_ROTATIONS` (default 20) rename rotations
//!   (kubelet: `0.log` → `0.log.<timestamp>`, a new `0.log`; 4 rotated files kept) and as many
//!   copy-truncate rotations, interleaved. Lines lost and duplicated, CPU and RSS.
//! - **scrape**: node_exporter's own page (`tests/fixtures/node_exporter/e2e-output.txt`, 3,027
//!   series) served by a small HTTP server, scraped every 1 s for `SIDE_SCRAPE_SECONDS`
//!   (default 30) s by the agent (remote write out to a counting receiver) and by Prometheus
//!   (TSDB in a temp dir).
//!   CPU ms per scrape and RSS.
//! - **otlp**: OTLP/gRPC traces in, OTLP/gRPC out, the agent alone (no peer here): a tonic
//!   client (`opentelemetry-proto`'s generated one) sends requests of `SIDE_OTLP_SPANS` (default
//!   512) spans of an HTTP service from `SIDE_OTLP_SENDERS` (default 4) concurrent senders as
//!   fast as the agent answers for `SIDE_OTLP_SECONDS` (default 20) s; the agent receives,
//!   samples (ratio 1), redacts with every detector, stores in its disk buffer and exports to a
//!   local OTLP/gRPC sink that counts the spans. Spans delivered per second and per CPU-second
//!   of the whole agent process (the client's encoding is in the bench process, not counted),
//!   peak and steady RSS, and spans sent but not delivered.
//!
//! Shippers run one at a time, in alternating order over `SIDE_ROUNDS` (default 2) rounds.
//! `SIDE_CASE=backlog`, `live`, `scrape` or `otlp` runs one case; `SIDE_SHIPPERS=vigil-agent,rsyslog`
//! runs only the named log shippers. rsyslogd and syslog-ng are taken from
//! `/usr/sbin`, or syslog-ng from `<repo>/.tools/syslog-ng` where `scripts/bench.sh` unpacks
//! Debian's package (it conflicts with rsyslog's).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the report

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tonic::{Request, Response, Status};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use support::{
    bench_spans, cpu_ticks, free_port, proc_status_kib, Agent, CountingOtlpSink, Prometheus,
};

/// Bytes of one CRI line, newline included.
const LINE_BYTES: usize = 256;
/// What precedes the number in every line.
const MARK: &str = "sbs-line-";
/// Rotated files kept by the live writer (kubelet's `containerLogMaxFiles` is 5 with the live one).
const KEEP_ROTATED: usize = 4;

/// The numbered CRI line `n`, [`LINE_BYTES`] long.
fn numbered_line(n: u64) -> String {
    let mut line = format!(
        "2026-12-06T10:{:02}:{:02}.{:09}Z stdout F 2026-12-06 10:00:00.000 INFO \
         [http-nio-8080-exec-{}] c.e.shop.OrderService - {MARK}{n} GET /api/orders completed \
         status=200 in {} ms ",
        (n / 60_000) % 60,
        (n / 1000) % 60,
        n % 1_000_000_000,
        n % 16,
        n % 250,
    );
    while line.len() < LINE_BYTES - 1 {
        line.push('x');
    }
    line.truncate(LINE_BYTES - 1);
    line.push('\n');
    line
}

/// Every line number in `text` (one per [`MARK`]).
fn line_numbers(text: &[u8]) -> impl Iterator<Item = u64> + '_ {
    memchr_marks(text).filter_map(move |at| {
        let digits = &text[at + MARK.len()..];
        let end = digits
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(digits.len());
        std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
    })
}

fn memchr_marks(text: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mark = MARK.as_bytes();
    text.windows(mark.len())
        .enumerate()
        .filter(move |(_, w)| *w == mark)
        .map(|(i, _)| i)
}

/// The sink: how often each line number arrived, over OTLP/gRPC logs or over TCP lines.
#[derive(Clone, Default)]
struct LineSink {
    counts: Arc<Mutex<Vec<u16>>>,
    distinct: Arc<AtomicU64>,
}

impl LineSink {
    fn record(&self, numbers: impl Iterator<Item = u64>) {
        let mut counts = self.counts.lock().unwrap();
        for n in numbers {
            let n = n as usize;
            if n >= counts.len() {
                counts.resize(n + 1, 0);
            }
            if counts[n] == 0 {
                self.distinct.fetch_add(1, Ordering::Relaxed);
            }
            counts[n] = counts[n].saturating_add(1);
        }
    }

    fn distinct(&self) -> u64 {
        self.distinct.load(Ordering::Relaxed)
    }

    /// (lost, duplicated) of lines `0..owed`.
    fn tally(&self, owed: u64) -> (u64, u64) {
        let counts = self.counts.lock().unwrap();
        let lost = (0..owed as usize)
            .filter(|&n| counts.get(n).is_none_or(|c| *c == 0))
            .count() as u64;
        let duplicated = counts.iter().map(|&c| u64::from(c.saturating_sub(1))).sum();
        (lost, duplicated)
    }

    fn reset(&self) {
        self.counts.lock().unwrap().clear();
        self.distinct.store(0, Ordering::Relaxed);
    }

    /// Serves OTLP/gRPC logs on `addr` (the agent's exporter) until the handle drops.
    fn serve_otlp(&self, addr: SocketAddr) -> tokio::task::JoinHandle<()> {
        let svc = self.clone();
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(LogsServiceServer::new(svc).max_decoding_message_size(usize::MAX))
                .serve(addr)
                .await;
        })
    }

    /// Accepts newline-framed TCP connections (rsyslog's and syslog-ng's forwarding) forever.
    fn serve_tcp(&self, listener: TcpListener) {
        let sink = self.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let mut conn = conn;
                    let mut buf = vec![0u8; 1 << 20];
                    let mut filled = 0;
                    loop {
                        let n = match conn.read(&mut buf[filled..]) {
                            Ok(0) | Err(_) => {
                                sink.record(
                                    line_numbers(&buf[..filled]).collect::<Vec<_>>().into_iter(),
                                );
                                return;
                            }
                            Ok(n) => n,
                        };
                        filled += n;
                        // Up to the last newline, so no number is cut in two.
                        let take = match buf[..filled].iter().rposition(|&b| b == b'\n') {
                            Some(last) => last + 1,
                            None if filled == buf.len() => filled,
                            None => continue,
                        };
                        sink.record(line_numbers(&buf[..take]).collect::<Vec<_>>().into_iter());
                        buf.copy_within(take..filled, 0);
                        filled -= take;
                    }
                });
            }
        });
    }
}

#[tonic::async_trait]
impl LogsService for LineSink {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let numbers: Vec<u64> = request
            .get_ref()
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
            .filter_map(|r| match r.body.as_ref()?.value.as_ref()? {
                Value::StringValue(body) => Some(line_numbers(body.as_bytes()).collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect();
        self.record(numbers.into_iter());
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Shipper {
    Agent,
    Rsyslog,
    SyslogNg,
}

impl Shipper {
    fn name(self) -> &'static str {
        match self {
            Shipper::Agent => "vigil-agent",
            Shipper::Rsyslog => "rsyslog",
            Shipper::SyslogNg => "syslog-ng",
        }
    }
}

const SHIPPERS: [Shipper; 3] = [Shipper::Agent, Shipper::Rsyslog, Shipper::SyslogNg];

/// Shippers in the order of `round`: forwards on even rounds, backwards on odd ones; only those
/// named in `SIDE_SHIPPERS` (comma-separated) when it is set.
fn order(round: u64) -> Vec<Shipper> {
    let only = std::env::var("SIDE_SHIPPERS").unwrap_or_default();
    let mut order: Vec<Shipper> = SHIPPERS
        .into_iter()
        .filter(|s| only.is_empty() || only.split(',').any(|name| name.trim() == s.name()))
        .collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running shipper.
enum Running {
    Agent(Agent),
    Peer(Proc, String),
}

impl Running {
    fn pid(&self) -> u32 {
        match self {
            Running::Agent(agent) => agent.pid(),
            Running::Peer(proc, _) => proc.0.id(),
        }
    }

    /// Panics with the shipper's output if it exited.
    fn check_alive(&mut self) {
        if let Running::Peer(proc, log) = self {
            if let Ok(Some(status)) = proc.0.try_wait() {
                panic!(
                    "{} exited ({status}): {}",
                    proc.0.id(),
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
    }
}

/// The agent's config: `extra` (a `logs:` or `scrape:` block), OTLP/gRPC out to `sink_port`.
fn agent_config(dir: &Path, admin: SocketAddr, sink_port: u16, extra: &str) -> String {
    format!(
        "version: 1\napp:\n  namespace: bench\n  name: api\n  clientType: generic\n  releaseSource: label\nlisten:\n  otlpGrpc: 127.0.0.1:{}\n  otlpHttp: 127.0.0.1:{}\n  admin: {admin}\ntraces:\n  enabled: false\n  samplingRatio: 1.0\ncrashes:\n  enabled: true\nredaction:\n  detectors: [creditCard, iban, email, phone, bearerToken, jwt]\nbuffer:\n  path: {}\n  maxBytes: 2147483648\n  whenFull: block\n{extra}exporters:\n  otlp:\n    endpoint: http://127.0.0.1:{sink_port}\n    protocol: grpc\n",
        free_port(),
        free_port(),
        dir.join("buffer").display()
    )
}

/// syslog-ng: Debian's `/usr/sbin/syslog-ng`, else the package unpacked in `.tools/syslog-ng`.
fn syslog_ng_command() -> Command {
    if Path::new("/usr/sbin/syslog-ng").exists() {
        return Command::new("/usr/sbin/syslog-ng");
    }
    let root = support::repo_root().join(".tools/syslog-ng");
    let binary = root.join("usr/sbin/syslog-ng");
    assert!(
        binary.exists(),
        "syslog-ng is not installed (/usr/sbin/syslog-ng nor {}): run ./scripts/bench.sh",
        binary.display()
    );
    // Its modules are in `usr/lib/syslog-ng/<version>`.
    let lib = root.join("usr/lib/syslog-ng");
    let modules = std::fs::read_dir(&lib)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("syslog-ng's module folder");
    let mut command = Command::new(binary);
    command
        .env("LD_LIBRARY_PATH", &lib)
        .arg(format!("--module-path={}", modules.display()));
    command
}

/// Starts `shipper` on the pod log directory `pod_dir` (containers in sub-folders), its state in
/// `work`; the agent ships to the OTLP port, the peers to the TCP port.
fn start_logs(shipper: Shipper, work: &Path, pod_dir: &Path, otlp: u16, tcp: u16) -> Running {
    std::fs::create_dir_all(work).unwrap();
    let log = work.join("shipper.log");
    match shipper {
        Shipper::Agent => {
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let logs = format!(
                "logs:\n  podLogDir: {}\n  format: text\n  multiline: true\n  checkpointDir: {}\n",
                pod_dir.display(),
                work.join("checkpoints").display()
            );
            Running::Agent(Agent::start(
                work,
                &agent_config(work, admin, otlp, &logs),
                admin,
            ))
        }
        Shipper::Rsyslog => {
            let conf = work.join("rsyslog.conf");
            std::fs::write(
                &conf,
                format!(
                    "global(workDirectory=\"{work}\" maxMessageSize=\"64k\")\n\
                     module(load=\"imfile\" mode=\"inotify\")\n\
                     template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
                     input(type=\"imfile\" file=\"{pod}/app/*.log\" tag=\"app\" \
                     reopenOnTruncate=\"on\" freshStartTail=\"off\")\n\
                     action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{tcp}\" protocol=\"tcp\" \
                     template=\"raw\" queue.type=\"LinkedList\" queue.size=\"100000\" \
                     action.resumeRetryCount=\"-1\")\n",
                    work = work.display(),
                    pod = pod_dir.display(),
                ),
            )
            .unwrap();
            let child = Command::new("/usr/sbin/rsyslogd")
                .arg("-n")
                .arg("-f")
                .arg(&conf)
                .arg("-i")
                .arg(work.join("rsyslogd.pid"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("rsyslogd is not installed: run ./scripts/bench.sh");
            Running::Peer(Proc(child), log.display().to_string())
        }
        Shipper::SyslogNg => {
            let conf = work.join("syslog-ng.conf");
            std::fs::write(
                &conf,
                format!(
                    "@version: 3.35\n\
                     options {{ stats-freq(0); log-msg-size(65536); }};\n\
                     source s_pod {{ file(\"{pod}/app/0.log\" follow-freq(1) flags(no-parse) log-fetch-limit(1000) \
                     log-iw-size(10000)); }};\n\
                     destination d_sink {{ network(\"127.0.0.1\" port({tcp}) transport(\"tcp\") \
                     template(\"${{MESSAGE}}\\n\") log-fifo-size(100000)); }};\n\
                     log {{ source(s_pod); destination(d_sink); }};\n",
                    pod = pod_dir.display(),
                ),
            )
            .unwrap();
            let child = syslog_ng_command()
                .arg("-F")
                .arg("--no-caps")
                .arg("-f")
                .arg(&conf)
                .arg(format!(
                    "--persist-file={}",
                    work.join("syslog-ng.persist").display()
                ))
                .arg(format!(
                    "--pidfile={}",
                    work.join("syslog-ng.pid").display()
                ))
                .arg(format!(
                    "--control={}",
                    work.join("syslog-ng.ctl").display()
                ))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start syslog-ng");
            Running::Peer(Proc(child), log.display().to_string())
        }
    }
}

/// Samples VmRSS of a process every 100 ms until stopped.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<u64>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let kib = proc_status_kib(pid, "VmRSS");
                    if kib > 0 {
                        samples.push(kib);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                samples
            }
        });
        RssSampler { stop, thread }
    }

    /// Median VmRSS, KiB.
    fn median(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let mut samples = self.thread.join().unwrap();
        samples.sort_unstable();
        samples.get(samples.len() / 2).copied().unwrap_or(0)
    }
}

/// One shipper's figures from one run.
#[derive(Default, Clone)]
struct Figures {
    mib_per_s: f64,
    mib_per_cpu_s: f64,
    cpu_ms_per_scrape: f64,
    peak_kib: u64,
    steady_kib: u64,
    lost: u64,
    duplicated: u64,
    note: String,
}

/// Waits until the sink has `target` distinct lines, nothing new came for `stall` or `limit`
/// passed; whether it has them all.
async fn wait_distinct(sink: &LineSink, target: u64, stall: Duration, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    let (mut last, mut since) = (sink.distinct(), Instant::now());
    loop {
        let now = sink.distinct();
        if now >= target {
            return true;
        }
        if now != last {
            (last, since) = (now, Instant::now());
        }
        if since.elapsed() > stall || Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn start_blocking(
    shipper: Shipper,
    work: PathBuf,
    pod_dir: PathBuf,
    otlp: u16,
    tcp: u16,
) -> Running {
    tokio::task::spawn_blocking(move || start_logs(shipper, &work, &pod_dir, otlp, tcp))
        .await
        .unwrap()
}

async fn backlog_run(shipper: Shipper, pod_dir: &Path, lines: u64, sink: &LineSink) -> Figures {
    sink.reset();
    let work = tempfile::tempdir().unwrap();
    let (otlp, tcp) = sink_ports();
    let start = Instant::now();
    let mut running = start_blocking(
        shipper,
        work.path().to_owned(),
        pod_dir.to_owned(),
        otlp,
        tcp,
    )
    .await;
    let pid = running.pid();
    let rss = RssSampler::start(pid);
    let all = wait_distinct(
        sink,
        lines,
        Duration::from_secs(30),
        Duration::from_secs(900),
    )
    .await;
    let elapsed = start.elapsed().as_secs_f64();
    running.check_alive();
    let cpu = cpu_ticks(pid) as f64 / 100.0;
    let peak_kib = proc_status_kib(pid, "VmHWM");
    let steady_kib = rss.median();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (lost, duplicated) = sink.tally(lines);
    let mib = (sink.distinct() * LINE_BYTES as u64) as f64 / f64::from(1 << 20);
    Figures {
        mib_per_s: mib / elapsed,
        mib_per_cpu_s: mib / cpu.max(0.01),
        peak_kib,
        steady_kib,
        lost,
        duplicated,
        note: if all {
            String::new()
        } else {
            format!("stalled after {elapsed:.0} s")
        },
        ..Figures::default()
    }
}

/// The sink's OTLP/gRPC and TCP ports, served for the whole bench.
static PORTS: std::sync::OnceLock<(u16, u16)> = std::sync::OnceLock::new();

fn sink_ports() -> (u16, u16) {
    *PORTS.get().expect("sink served")
}

/// Writes numbered lines into `pod/app/0.log` at `bytes_per_s` for `seconds`, with
/// `rotations` rename rotations and as many copy-truncate rotations interleaved; returns the
/// number of lines written.
fn live_writer(log: &Path, bytes_per_s: f64, seconds: f64, rotations: u32) -> u64 {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap()
    };
    let mut file = open();
    let dir = log.parent().unwrap();
    let total_rotations = 2 * rotations;
    let every = seconds / f64::from(total_rotations + 1);
    let mut rotated: Vec<PathBuf> = Vec::new();
    let (mut written, mut done_rotations) = (0u64, 0u32);
    let start = Instant::now();
    loop {
        let t = start.elapsed().as_secs_f64();
        if t >= seconds {
            break;
        }
        let owed = (t * bytes_per_s / LINE_BYTES as f64) as u64;
        if owed > written {
            let chunk: String = (written..owed).map(numbered_line).collect();
            file.write_all(chunk.as_bytes()).unwrap();
            written = owed;
        }
        if done_rotations < total_rotations && t >= every * f64::from(done_rotations + 1) {
            let target = dir.join(format!("0.log.20261206-{:06}", done_rotations));
            if done_rotations % 2 == 0 {
                std::fs::rename(log, &target).unwrap();
                file = open();
            } else {
                std::fs::copy(log, &target).unwrap();
                file.set_len(0).unwrap();
            }
            rotated.push(target);
            if rotated.len() > KEEP_ROTATED {
                let _ = std::fs::remove_file(rotated.remove(0));
            }
            done_rotations += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    written
}

async fn live_run(
    shipper: Shipper,
    bytes_per_s: f64,
    seconds: f64,
    rotations: u32,
    sink: &LineSink,
) -> Figures {
    sink.reset();
    let work = tempfile::tempdir().unwrap();
    let pod_dir = work.path().join("pod");
    std::fs::create_dir_all(pod_dir.join("app")).unwrap();
    let log = pod_dir.join("app/0.log");
    std::fs::File::create(&log).unwrap();
    let (otlp, tcp) = sink_ports();
    let mut running = start_blocking(
        shipper,
        work.path().join("state"),
        pod_dir.clone(),
        otlp,
        tcp,
    )
    .await;
    // The peers have no readiness signal: give them a second to open the file.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = running.pid();
    let (cpu_before, rss) = (cpu_ticks(pid), RssSampler::start(pid));
    let written =
        tokio::task::spawn_blocking(move || live_writer(&log, bytes_per_s, seconds, rotations))
            .await
            .unwrap();
    let steady_kib = rss.median();
    let all = wait_distinct(
        sink,
        written,
        Duration::from_secs(15),
        Duration::from_secs(120),
    )
    .await;
    // Late duplicates get a moment to arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    running.check_alive();
    let cpu = (cpu_ticks(pid) - cpu_before) as f64 / 100.0;
    let (lost, duplicated) = sink.tally(written);
    let mib = ((written - lost) * LINE_BYTES as u64) as f64 / f64::from(1 << 20);
    Figures {
        mib_per_s: mib / seconds,
        mib_per_cpu_s: mib / cpu.max(0.01),
        peak_kib: proc_status_kib(pid, "VmHWM"),
        steady_kib,
        lost,
        duplicated,
        note: if all {
            format!("{written} lines")
        } else {
            format!("{written} lines, incomplete after settling")
        },
        ..Figures::default()
    }
}

/// A tiny HTTP server answering every request with `page`; counts the requests.
fn serve_page(page: Arc<String>) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicU64::new(0));
    std::thread::spawn({
        let hits = hits.clone();
        move || {
            for mut conn in listener.incoming().flatten() {
                let (page, hits) = (page.clone(), hits.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    // Keep-alive: one response per request head.
                    loop {
                        let mut line = String::new();
                        let mut head_lines = 0;
                        loop {
                            line.clear();
                            match reader.read_line(&mut line) {
                                Ok(0) | Err(_) => return,
                                Ok(_) if line == "\r\n" || line == "\n" => break,
                                Ok(_) => head_lines += 1,
                            }
                        }
                        if head_lines == 0 {
                            continue;
                        }
                        hits.fetch_add(1, Ordering::Relaxed);
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                             Content-Length: {}\r\n\r\n",
                            page.len()
                        );
                        if conn.write_all(head.as_bytes()).is_err()
                            || conn.write_all(page.as_bytes()).is_err()
                        {
                            return;
                        }
                    }
                });
            }
        }
    });
    (port, hits)
}

/// A Prometheus remote-write receiver: answers 204 to every request and counts the samples
/// (snappy, `prompb.WriteRequest`).
fn serve_remote_write() -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let samples = Arc::new(AtomicU64::new(0));
    std::thread::spawn({
        let samples = samples.clone();
        move || {
            for conn in listener.incoming().flatten() {
                let samples = samples.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut conn = conn;
                    loop {
                        let (mut line, mut length) = (String::new(), 0usize);
                        loop {
                            line.clear();
                            match reader.read_line(&mut line) {
                                Ok(0) | Err(_) => return,
                                Ok(_) if line == "\r\n" => break,
                                Ok(_) => {
                                    if let Some((name, value)) = line.split_once(':') {
                                        if name.eq_ignore_ascii_case("content-length") {
                                            length = value.trim().parse().unwrap_or(0);
                                        }
                                    }
                                }
                            }
                        }
                        let mut body = vec![0u8; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        let n: usize = snap::raw::Decoder::new()
                            .decompress_vec(&body)
                            .ok()
                            .and_then(|raw| {
                                <vigil_agent::prompb::WriteRequest as prost::Message>::decode(
                                    raw.as_slice(),
                                )
                                .ok()
                            })
                            .map(|w| w.timeseries.iter().map(|t| t.samples.len()).sum())
                            .unwrap_or(0);
                        samples.fetch_add(n as u64, Ordering::Relaxed);
                        if conn
                            .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        }
    });
    (port, samples)
}

/// Scraper under test for the scrape case.
enum Scraper {
    Agent(Agent, tokio::task::JoinHandle<()>, Arc<AtomicU64>),
    Prometheus(Prometheus),
}

async fn scrape_run(prometheus: bool, page: Arc<String>, seconds: f64) -> Figures {
    let (port, hits) = serve_page(page);
    let work = tempfile::tempdir().unwrap();
    let scraper = if prometheus {
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        );
        Scraper::Prometheus(
            tokio::task::spawn_blocking(move || Prometheus::start_with(&config))
                .await
                .unwrap(),
        )
    } else {
        let sink = CountingOtlpSink::default();
        let sink_port = free_port();
        let server = sink.serve(format!("127.0.0.1:{sink_port}").parse().unwrap());
        let (write_port, samples) = serve_remote_write();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let scrape = format!(
            "scrape:\n  port: \"{port}\"\n  path: /metrics\n  interval: 1s\n  timeout: 1s\n  honorAnnotations: false\n"
        );
        // Scraped samples leave by remote write (the OTLP exporter is the config's required one).
        let config = agent_config(work.path(), admin, sink_port, &scrape).replace(
            "exporters:\n",
            &format!(
                "exporters:\n  prometheusRemoteWrite:\n    url: http://127.0.0.1:{write_port}/api/v1/write\n"
            ),
        );
        let dir = work.path().to_owned();
        let agent = tokio::task::spawn_blocking(move || Agent::start(&dir, &config, admin))
            .await
            .unwrap();
        // Keep the OTLP sink's server for the run (dropping the handle aborts it).
        let keep = tokio::spawn(async move {
            let _server = server;
            std::future::pending::<()>().await;
        });
        Scraper::Agent(agent, keep, samples)
    };
    let pid = match &scraper {
        Scraper::Agent(agent, _, _) => agent.pid(),
        Scraper::Prometheus(p) => p.pid(),
    };
    // Warm up: a few scrapes first.
    let warm = Instant::now();
    while hits.load(Ordering::Relaxed) < 3 && warm.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (cpu0, hits0, rss) = (
        cpu_ticks(pid),
        hits.load(Ordering::Relaxed),
        RssSampler::start(pid),
    );
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let (cpu1, hits1) = (cpu_ticks(pid), hits.load(Ordering::Relaxed));
    let steady_kib = rss.median();
    let scrapes = hits1 - hits0;
    // What each scraper made of the page, so a failed parse shows.
    let took = match &scraper {
        Scraper::Agent(_, _, samples) => {
            format!("{} samples remote-written", samples.load(Ordering::Relaxed))
        }
        Scraper::Prometheus(p) => format!(
            "last scrape {} samples",
            p.query("scrape_samples_scraped")
                .first()
                .and_then(|r| r["value"][1].as_str().map(str::to_owned))
                .unwrap_or_else(|| "no".into())
        ),
    };
    let figures = Figures {
        cpu_ms_per_scrape: (cpu1 - cpu0) as f64 * 10.0 / scrapes.max(1) as f64,
        peak_kib: proc_status_kib(pid, "VmHWM"),
        steady_kib,
        note: format!("{scrapes} scrapes, {took}"),
        ..Figures::default()
    };
    if let Scraper::Agent(_, keep, _) = &scraper {
        keep.abort();
    }
    drop(scraper);
    figures
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.collect();
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// Rounds' figures of one shipper folded: means of rates and steady RSS, the highest peak,
/// summed losses and duplicates.
fn fold(runs: &[Figures]) -> Figures {
    Figures {
        mib_per_s: mean(runs.iter().map(|f| f.mib_per_s)),
        mib_per_cpu_s: mean(runs.iter().map(|f| f.mib_per_cpu_s)),
        cpu_ms_per_scrape: mean(runs.iter().map(|f| f.cpu_ms_per_scrape)),
        peak_kib: runs.iter().map(|f| f.peak_kib).max().unwrap_or(0),
        steady_kib: mean(runs.iter().map(|f| f.steady_kib as f64)) as u64,
        lost: runs.iter().map(|f| f.lost).sum(),
        duplicated: runs.iter().map(|f| f.duplicated).sum(),
        note: runs
            .iter()
            .map(|f| f.note.as_str())
            .filter(|n| !n.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ratio(agent: f64, peer: f64) -> String {
    if peer == 0.0 {
        if agent == 0.0 {
            "=".into()
        } else {
            "-".into()
        }
    } else {
        format!("{:.2}x", agent / peer)
    }
}

/// Prints a log case's table with the agent's ratios to each peer.
fn print_log_table(title: &str, rows: &[(Shipper, Figures)]) {
    println!("\n{title}");
    println!(
        "  {:<16} {:>9} {:>11} {:>13} {:>15} {:>9} {:>11}  note",
        "shipper", "MiB/s", "MiB/CPU-s", "peak RSS MiB", "steady RSS MiB", "lost", "duplicated"
    );
    for (shipper, f) in rows {
        println!(
            "  {:<16} {:>9.1} {:>11.1} {:>13.1} {:>15.1} {:>9} {:>11}  {}",
            shipper.name(),
            f.mib_per_s,
            f.mib_per_cpu_s,
            mib(f.peak_kib),
            mib(f.steady_kib),
            f.lost,
            f.duplicated,
            f.note
        );
    }
    let Some((Shipper::Agent, agent)) = rows.first() else {
        return;
    };
    for (shipper, peer) in &rows[1..] {
        println!(
            "  {:<16} {:>9} {:>11} {:>13} {:>15} {:>9} {:>11}",
            format!("agent/{}", shipper.name()),
            ratio(agent.mib_per_s, peer.mib_per_s),
            ratio(agent.mib_per_cpu_s, peer.mib_per_cpu_s),
            ratio(mib(agent.peak_kib), mib(peer.peak_kib)),
            ratio(mib(agent.steady_kib), mib(peer.steady_kib)),
            ratio(agent.lost as f64, peer.lost as f64),
            ratio(agent.duplicated as f64, peer.duplicated as f64),
        );
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs every shipper `rounds` times in alternating order; the folded figures, agent first.
async fn alternate<F, Fut>(rounds: u64, mut run: F) -> Vec<(Shipper, Figures)>
where
    F: FnMut(Shipper) -> Fut,
    Fut: std::future::Future<Output = Figures>,
{
    let mut runs: Vec<(Shipper, Vec<Figures>)> =
        SHIPPERS.iter().map(|s| (*s, Vec::new())).collect();
    for round in 0..rounds {
        for shipper in order(round) {
            let figures = run(shipper).await;
            runs.iter_mut()
                .find(|(s, _)| *s == shipper)
                .unwrap()
                .1
                .push(figures);
        }
    }
    runs.into_iter()
        .filter(|(_, f)| !f.is_empty())
        .map(|(s, f)| (s, fold(&f)))
        .collect()
}

async fn backlog_case(rounds: u64, sink: &LineSink) {
    let mib = env_number("SIDE_BACKLOG_MIB", 256);
    let lines = mib * (1 << 20) / LINE_BYTES as u64;
    let dir = tempfile::tempdir().unwrap();
    let pod_dir = dir.path().join("pod");
    std::fs::create_dir_all(pod_dir.join("app")).unwrap();
    {
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(pod_dir.join("app/0.log")).unwrap());
        for n in 0..lines {
            out.write_all(numbered_line(n).as_bytes()).unwrap();
        }
        out.flush().unwrap();
    }
    let rows = alternate(rounds, |shipper| {
        let pod_dir = pod_dir.clone();
        async move { backlog_run(shipper, &pod_dir, lines, sink).await }
    })
    .await;
    print_log_table(
        &format!(
            "side-by-side backlog: {mib} MiB of {LINE_BYTES} B CRI lines already in the file, \
             {rounds} rounds alternating (means; peak = highest). The agent parses CRI, redacts \
             and ships OTLP/gRPC; rsyslog and syslog-ng forward the raw lines over TCP."
        ),
        &rows,
    );
}

async fn live_case(rounds: u64, sink: &LineSink) {
    let rate = env_number("SIDE_LIVE_MIB_S", 5);
    let seconds = env_number("SIDE_LIVE_SECONDS", 60);
    let rotations = env_number("SIDE_ROTATIONS", 20) as u32;
    let rows = alternate(rounds, |shipper| async move {
        live_run(
            shipper,
            (rate << 20) as f64,
            seconds as f64,
            rotations,
            sink,
        )
        .await
    })
    .await;
    print_log_table(
        &format!(
            "side-by-side live: {rate} MiB/s of {LINE_BYTES} B CRI lines for {seconds} s with \
             {rotations} rename and {rotations} copy-truncate rotations interleaved, {rounds} \
             rounds alternating (lost/duplicated summed over rounds; MiB/s: lines delivered \
             per second of writing). Agent: CRI parse + OTLP; peers: raw lines over TCP."
        ),
        &rows,
    );
}

async fn scrape_case(rounds: u64) {
    let seconds = env_number("SIDE_SCRAPE_SECONDS", 30) as f64;
    let page = Arc::new(
        std::fs::read_to_string(support::fixtures().join("node_exporter/e2e-output.txt")).unwrap(),
    );
    let series = page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    let mut runs: [Vec<Figures>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for prometheus in [round % 2 == 1, round % 2 == 0] {
            runs[usize::from(prometheus)].push(scrape_run(prometheus, page.clone(), seconds).await);
        }
    }
    let (agent, prom) = (fold(&runs[0]), fold(&runs[1]));
    println!(
        "\nside-by-side scrape: node_exporter's page ({series} series, {} KiB) every 1 s for \
         {seconds:.0} s, {rounds} rounds alternating. Agent: parse + remote write out; Prometheus: \
         parse + TSDB append.",
        page.len() / 1024
    );
    println!(
        "  {:<20} {:>13} {:>13} {:>15}  note",
        "scraper", "CPU ms/scrape", "peak RSS MiB", "steady RSS MiB"
    );
    for (name, f) in [("vigil-agent", &agent), ("prometheus", &prom)] {
        println!(
            "  {:<20} {:>13.2} {:>13.1} {:>15.1}  {}",
            name,
            f.cpu_ms_per_scrape,
            mib(f.peak_kib),
            mib(f.steady_kib),
            f.note
        );
    }
    println!(
        "  {:<20} {:>13} {:>13} {:>15}",
        "agent/prometheus",
        ratio(agent.cpu_ms_per_scrape, prom.cpu_ms_per_scrape),
        ratio(mib(agent.peak_kib), mib(prom.peak_kib)),
        ratio(mib(agent.steady_kib), mib(prom.steady_kib)),
    );
}

/// The OTLP case: spans in over OTLP/gRPC as fast as the agent takes them, out to a counting
/// OTLP sink; figures per CPU-second of the agent process.
async fn otlp_case(rounds: u64) {
    let seconds = env_number("SIDE_OTLP_SECONDS", 20) as f64;
    let per_request = env_number("SIDE_OTLP_SPANS", 512);
    let senders = env_number("SIDE_OTLP_SENDERS", 4);
    let mut runs = Vec::new();
    for _ in 0..rounds {
        runs.push(otlp_run(seconds, per_request, senders).await);
    }
    let bytes = prost::Message::encoded_len(&bench_spans(0, per_request));
    println!(
        "\nside-by-side otlp: OTLP/gRPC traces in ({senders} senders, {per_request} spans = {} KiB \
         per request) → receive, sample, redact (all detectors), disk buffer → OTLP/gRPC out to a \
         counting sink, {seconds:.0} s, {rounds} rounds (means); CPU of the agent process only.",
        bytes / 1024
    );
    println!(
        "  {:<16} {:>12} {:>16} {:>13} {:>15} {:>12}  note",
        "shipper", "spans/s", "spans/CPU-s", "peak RSS MiB", "steady RSS MiB", "undelivered"
    );
    let f = fold(&runs);
    println!(
        "  {:<16} {:>12.0} {:>16.0} {:>13.1} {:>15.1} {:>12}  {}",
        "vigil-agent",
        f.mib_per_s,
        f.mib_per_cpu_s,
        mib(f.peak_kib),
        mib(f.steady_kib),
        f.lost,
        f.note
    );
}

/// One OTLP run; `mib_per_s` and `mib_per_cpu_s` carry spans per second and per CPU-second,
/// `lost` the spans acknowledged to the client but not delivered to the sink.
async fn otlp_run(seconds: f64, per_request: u64, senders: u64) -> Figures {
    let work = tempfile::tempdir().unwrap();
    let sink = CountingOtlpSink::default();
    let sink_port = free_port();
    let server = sink.serve(format!("127.0.0.1:{sink_port}").parse().unwrap());
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = agent_config(work.path(), admin, sink_port, "")
        .replace("traces:\n  enabled: false", "traces:\n  enabled: true");
    let grpc = config
        .split("otlpGrpc: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap()
        .to_owned();
    let dir = work.path().to_owned();
    let agent = tokio::task::spawn_blocking(move || Agent::start(&dir, &config, admin))
        .await
        .unwrap();
    let pid = agent.pid();
    let client = TraceServiceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20);
    // Requests made before the clock starts: the client builds nothing while measured.
    let requests: Arc<Vec<_>> = Arc::new((0..64).map(|b| bench_spans(b, per_request)).collect());
    client.clone().export(requests[0].clone()).await.unwrap();
    let settle = Instant::now();
    while sink.spans.load(Ordering::Relaxed) < per_request
        && settle.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (delivered0, cpu0, rss) = (
        sink.spans.load(Ordering::Relaxed),
        cpu_ticks(pid),
        RssSampler::start(pid),
    );
    let acked = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|sender| {
            let (mut client, requests, acked) = (client.clone(), requests.clone(), acked.clone());
            tokio::spawn(async move {
                let mut n = sender as usize;
                while Instant::now() < end {
                    let request = requests[n % requests.len()].clone();
                    if client.export(request).await.is_ok() {
                        acked.fetch_add(per_request, Ordering::Relaxed);
                    }
                    n += senders as usize;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let sent = acked.load(Ordering::Relaxed);
    let target = delivered0 + sent;
    let drained = Instant::now() + Duration::from_secs(120);
    while sink.spans.load(Ordering::Relaxed) < target && Instant::now() < drained {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid) - cpu0) as f64 / 100.0;
    let steady_kib = rss.median();
    let delivered = sink.spans.load(Ordering::Relaxed) - delivered0;
    let figures = Figures {
        mib_per_s: delivered as f64 / elapsed,
        mib_per_cpu_s: delivered as f64 / cpu.max(0.01),
        peak_kib: proc_status_kib(pid, "VmHWM"),
        steady_kib,
        lost: sent.saturating_sub(delivered),
        note: format!(
            "{sent} spans acknowledged in {seconds:.0} s, delivered after {elapsed:.1} s, {:.1} CPU-s",
            cpu
        ),
        ..Figures::default()
    };
    drop(agent);
    drop(server);
    figures
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rounds = env_number("SIDE_ROUNDS", 2).max(1);
    let case = std::env::var("SIDE_CASE").unwrap_or_default();
    runtime.block_on(async {
        let sink = LineSink::default();
        let otlp = free_port();
        let _otlp_server = sink.serve_otlp(format!("127.0.0.1:{otlp}").parse().unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = listener.local_addr().unwrap().port();
        sink.serve_tcp(listener);
        PORTS.set((otlp, tcp)).unwrap();
        if case.is_empty() || case == "backlog" {
            backlog_case(rounds, &sink).await;
        }
        if case.is_empty() || case == "live" {
            live_case(rounds, &sink).await;
        }
        if case.is_empty() || case == "scrape" {
            scrape_case(rounds).await;
        }
        if case.is_empty() || case == "otlp" {
            otlp_case(rounds).await;
        }
    });
}
