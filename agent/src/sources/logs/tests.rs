//! Tests of the log source as a whole, on real files in temporary directories: the reading core
//! driven poll by poll (with instants passed in, so rescans and grace periods need no sleeping),
//! and the full pipeline through the router into a real disk buffer.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use vigil_crds::agent_config::{LogsConfig, RedactionConfig};
use vigil_crds::monitored_app::{LogFormat, WhenFull};

use super::*;
use crate::batch::{Batch, Signal};
use crate::buffer::BufferReader;
use crate::event::{Level, Stream};
use crate::router::Route;

const TIME: &str = "2024-05-01T12:00:00.000000001Z";
const T0_NANOS: u64 = 1_714_564_800_000_000_001;

fn cri(stream: &str, tag: &str, message: &str) -> String {
    format!("{TIME} {stream} {tag} {message}\n")
}

fn line(n: usize) -> String {
    format!("line {n:06} {}", "x".repeat(n % 97))
}

fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn cri_lines(range: std::ops::Range<usize>) -> String {
    range.map(|n| cri("stdout", "F", &line(n))).collect()
}

struct Pod {
    _dir: tempfile::TempDir,
    root: PathBuf,
    pod_dir: PathBuf,
}

impl Pod {
    fn new() -> Pod {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let pod_dir = root.join("pod");
        fs::create_dir_all(&pod_dir).unwrap();
        Pod {
            _dir: dir,
            root,
            pod_dir,
        }
    }

    fn container_file(&self, container: &str, file: &str) -> PathBuf {
        let dir = self.pod_dir.join(container);
        fs::create_dir_all(&dir).unwrap();
        dir.join(file)
    }

    fn config(&self, format: LogFormat) -> LogsConfig {
        LogsConfig {
            pod_log_dir: Some(self.pod_dir.display().to_string()),
            containers: Vec::new(),
            files: Vec::new(),
            format,
            multiline: false,
            user_field: None,
            checkpoint_dir: self.root.join("checkpoints").display().to_string(),
        }
    }

    fn checkpoint_json(&self) -> serde_json::Value {
        let text = fs::read_to_string(self.root.join("checkpoints/logs.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

/// The pipeline the log source tests share: no redaction detectors, crash detection on.
pub(super) fn pipeline(router: Router) -> LogPipeline {
    let identity = Identity {
        namespace: "shop".into(),
        app: "checkout".into(),
        pod: "checkout-0".into(),
        pod_uid: "uid-1".into(),
        node: "node-1".into(),
        version: "1.2.3".into(),
        cluster: String::new(),
    };
    LogPipeline {
        crashes: Arc::new(CrashDetector::new(&identity, None)),
        redactor: Arc::new(
            Redactor::new(&RedactionConfig {
                detectors: Vec::new(),
                patterns: Vec::new(),
            })
            .unwrap(),
        ),
        identity,
        router,
    }
}

/// Polls at `now` until no file has more to read.
fn drain(source: &mut LogSource, now: Instant) -> Vec<LogEvent> {
    let mut out = Vec::new();
    while source.poll(now, &mut out).more {}
    out
}

fn messages(events: &[LogEvent]) -> Vec<String> {
    events.iter().map(|e| e.message.clone()).collect()
}

fn expected(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(line).collect()
}

/// CRI lines become events with the runtime's time, stream and container; a `P` fragment
/// whose `F` arrives in a later read is reassembled; stdout and stderr fragments do not mix.
#[test]
fn cri_lines_and_fragments_across_reads() {
    let pod = Pod::new();
    let log = pod.container_file("app", "0.log");
    append(
        &log,
        &[
            cri("stdout", "F", "first"),
            cri("stdout", "P", "hello "),
            cri("stderr", "P", "err-a "),
        ]
        .concat(),
    );
    let config = pod.config(LogFormat::Text);
    let mut source = LogSource::open(&config, &pipeline(Router::default())).unwrap();
    let t0 = Instant::now();
    let events = drain(&mut source, t0);
    assert_eq!(messages(&events), vec!["first"]);
    assert_eq!(events[0].time_unix_nano, T0_NANOS);
    assert_eq!(&*events[0].container, "app");
    // The fragments' continuation arrives later, the stdout one split inside its line.
    append(&log, &format!("{TIME} stdout P big "));
    assert!(drain(&mut source, t0).is_empty());
    append(
        &log,
        &[
            "\n".to_owned(),
            cri("stderr", "F", "err-b"),
            cri("stdout", "F", "world"),
        ]
        .concat(),
    );
    let events = drain(&mut source, t0);
    assert_eq!(messages(&events), vec!["err-a err-b", "hello big world"]);
    assert_eq!(events[0].stream, Stream::Stderr);
    assert_eq!(events[1].stream, Stream::Stdout);
    let origin = events[1].origin.as_ref().unwrap();
    // The file's path, for `log.file.path` (the key is the tailer's own).
    assert_eq!(&*origin.path, log.to_string_lossy());
    assert_ne!(origin.file, origin.path);
    assert_eq!(origin.start, cri("stdout", "F", "first").len() as u64);
    assert_eq!(origin.end, fs::metadata(&log).unwrap().len());
}

/// Rename rotation (kubelet's `0.log` → `0.log.<time>`): the lines still in the renamed file,
/// including some written after the rename, come before the successor's, none lost or
/// repeated, even when the rest exceeds a poll's read budget; the finished file is then
/// forgotten by the checkpoint.
#[test]
fn rename_rotation_loses_and_repeats_nothing() {
    let pod = Pod::new();
    let log = pod.container_file("app", "0.log");
    append(&log, &cri_lines(0..100));
    let config = pod.config(LogFormat::Text);
    let mut source = LogSource::open(&config, &pipeline(Router::default())).unwrap();
    let t0 = Instant::now();
    let mut events = drain(&mut source, t0);
    // More than a poll's budget still unread when the file is renamed.
    append(&log, &cri_lines(100..20_000));
    let rotated = pod.container_file("app", "0.log.20240501-120000");
    fs::rename(&log, &rotated).unwrap();
    append(&rotated, &cri_lines(20_000..20_010));
    append(&log, &cri_lines(20_010..20_100));
    let mut polls = 0;
    loop {
        let mut out = Vec::new();
        let outcome = source.poll(t0 + Duration::from_millis(polls), &mut out);
        events.extend(out);
        polls += 1;
        if !outcome.more && events.len() >= 20_100 {
            break;
        }
        assert!(polls < 1000, "rotation never finished");
    }
    assert_eq!(messages(&events), expected(0..20_100));
    source.checkpoint(&[]);
    let checkpoint = pod.checkpoint_json();
    let files = checkpoint["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{checkpoint}");
    assert!(files[0]["path"].as_str().unwrap().ends_with("app/0.log"));
    assert_eq!(files[0]["offset"], fs::metadata(&log).unwrap().len());
}

/// Copy-truncate rotation: a file cut back in place is read again from its start, whether it
/// is now shorter than what was read or already longer again (told by its first bytes).
#[test]
fn copy_truncate_rotation_loses_and_repeats_nothing() {
    let pod = Pod::new();
    let log = pod.root.join("app.log");
    let plain = |range: std::ops::Range<usize>| -> String {
        range.map(|n| format!("{}\n", line(n))).collect()
    };
    append(&log, &plain(0..50));
    let mut config = pod.config(LogFormat::Text);
    config.pod_log_dir = None;
    config.files = vec![format!("{}/*.log", pod.root.display())];
    let mut source = LogSource::open(&config, &pipeline(Router::default())).unwrap();
    let t0 = Instant::now();
    let mut events = drain(&mut source, t0);
    for (round, range) in [(1, 50..60), (2, 60..400)] {
        fs::copy(&log, pod.root.join(format!("app.log.{round}"))).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&log, &plain(range));
        events.extend(drain(&mut source, t0 + Duration::from_millis(round)));
    }
    assert_eq!(messages(&events), expected(0..400));
    let path = log.display().to_string();
    assert!(events.iter().all(
        |e| e.origin.as_ref().map(|o| &*o.path) == Some(path.as_str()) && e.container.is_empty()
    ));
}

/// A restart resumes at the checkpoint: events handed out but not delivered, a held `P`
/// fragment and a line without its newline are read again, delivered ones are not.
#[test]
fn restart_from_checkpoint_neither_loses_nor_repeats() {
    let pod = Pod::new();
    let log = pod.container_file("app", "0.log");
    append(&log, &cri_lines(0..100));
    append(&log, &cri("stderr", "P", "part-1 "));
    append(&log, &format!("{TIME} stdout F incompl"));
    let config = pod.config(LogFormat::Text);
    let t0 = Instant::now();
    {
        let mut source = LogSource::open(&config, &pipeline(Router::default())).unwrap();
        let events = drain(&mut source, t0);
        assert_eq!(messages(&events), expected(0..100));
        // The first 60 were stored in the buffer; the rest were not when the agent died.
        source.checkpoint(&events[60..]);
    }
    append(&log, "ete\n");
    append(&log, &cri("stderr", "F", "part-2"));
    {
        let mut source = LogSource::open(&config, &pipeline(Router::default())).unwrap();
        let events = drain(&mut source, t0);
        let mut want = expected(60..100);
        want.push("incomplete".into());
        want.push("part-1 part-2".into());
        assert_eq!(messages(&events), want);
        source.checkpoint(&[]);
    }
    append(&log, &cri_lines(100..101));
    let mut source = LogSource::open(&config, &pipeline(Router::default())).unwrap();
    assert_eq!(messages(&drain(&mut source, t0)), expected(100..101));
}

/// A file renamed by rotation while the agent was down is found by its inode and finished
/// from its checkpoint before its successor is read.
#[test]
fn rotation_while_down_is_resumed() {
    let pod = Pod::new();
    let log = pod.container_file("app", "0.log");
    append(&log, &cri_lines(0..10));
    let config = pod.config(LogFormat::Text);
    let t0 = Instant::now();
    {
        let mut source = LogSource::open(&config, &pipeline(Router::default())).unwrap();
        assert_eq!(drain(&mut source, t0).len(), 10);
        source.checkpoint(&[]);
    }
    append(&log, &cri_lines(10..20));
    let rotated = pod.container_file("app", "0.log.20240501-120000");
    fs::rename(&log, &rotated).unwrap();
    append(&log, &cri_lines(20..30));
    let mut source = LogSource::open(&config, &pipeline(Router::default())).unwrap();
    let mut events = drain(&mut source, t0);
    events.extend(drain(&mut source, t0 + Duration::from_millis(1)));
    assert_eq!(messages(&events), expected(0..30)[10..].to_vec());
}

/// `json` and `logfmt` lines give message, level, time and attributes; other lines stay text
/// with a guessed level; without a time of their own events carry the runtime's.
#[test]
fn structured_messages() {
    let pod = Pod::new();
    let json = pod.container_file("api", "0.log");
    append(
        &json,
        &[
            cri(
                "stdout",
                "F",
                r#"{"ts":1714564800.5,"level":"error","msg":"payment failed","order":"A-1","attempt":2}"#,
            ),
            cri("stderr", "F", "WARN plain text among JSON"),
        ]
        .concat(),
    );
    let config = pod.config(LogFormat::Json);
    let mut source = LogSource::open(&config, &pipeline(Router::default())).unwrap();
    let events = drain(&mut source, Instant::now());
    assert_eq!(events[0].message, "payment failed");
    assert_eq!(events[0].level, Some(Level::Error));
    assert_eq!(events[0].time_unix_nano, 1_714_564_800_500_000_000);
    assert_eq!(
        events[0].attributes,
        vec![
            ("order".to_owned(), "A-1".to_owned()),
            ("attempt".to_owned(), "2".to_owned())
        ]
    );
    assert_eq!(events[1].message, "WARN plain text among JSON");
    assert_eq!(events[1].level, Some(Level::Warn));
    assert_eq!(events[1].time_unix_nano, T0_NANOS);

    let pod = Pod::new();
    append(
        &pod.container_file("api", "0.log"),
        &cri(
            "stdout",
            "F",
            r#"time=2024-05-01T12:00:01Z lvl=warn message="slow query" ms=1200"#,
        ),
    );
    let config = pod.config(LogFormat::Logfmt);
    let mut source = LogSource::open(&config, &pipeline(Router::default())).unwrap();
    let events = drain(&mut source, Instant::now());
    assert_eq!(events[0].message, "slow query");
    assert_eq!(events[0].level, Some(Level::Warn));
    assert_eq!(events[0].time_unix_nano, 1_714_564_801_000_000_000);
    assert_eq!(events[0].attribute("ms"), Some("1200"));
}

/// Containers that appear later (a new container, a restart's `1.log`) are discovered; the
/// agent's own container never is; `containers` restricts the set.
#[test]
fn new_containers_discovered_agent_skipped() {
    let pod = Pod::new();
    append(
        &pod.container_file("app", "0.log"),
        &cri("stdout", "F", "app 0"),
    );
    append(
        &pod.container_file(AGENT_CONTAINER, "0.log"),
        &cri("stdout", "F", "agent line"),
    );
    let config = pod.config(LogFormat::Text);
    let mut source = LogSource::open(&config, &pipeline(Router::default())).unwrap();
    let t0 = Instant::now();
    assert_eq!(messages(&drain(&mut source, t0)), vec!["app 0"]);
    append(
        &pod.container_file("app", "1.log"),
        &cri("stdout", "F", "app 1"),
    );
    append(
        &pod.container_file("worker", "0.log"),
        &cri("stderr", "F", "worker 0"),
    );
    append(
        &pod.container_file(AGENT_CONTAINER, "0.log"),
        &cri("stdout", "F", "agent again"),
    );
    let events = drain(&mut source, t0 + RESCAN_INTERVAL);
    let mut seen: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.container.to_string(), e.message.clone()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("app".to_owned(), "app 1".to_owned()),
            ("worker".to_owned(), "worker 0".to_owned())
        ]
    );

    let mut only_worker = pod.config(LogFormat::Text);
    only_worker.containers = vec!["worker".into()];
    only_worker.checkpoint_dir = pod.root.join("other-checkpoints").display().to_string();
    let mut source = LogSource::open(&only_worker, &pipeline(Router::default())).unwrap();
    assert_eq!(messages(&drain(&mut source, t0)), vec!["worker 0"]);
}

/// A stack trace becomes one event (with its crash); while the joiner still holds it, the
/// checkpoint stays before its first line, so a restart joins it again instead of losing it.
#[test]
fn held_stack_trace_bounds_checkpoint() {
    let pod = Pod::new();
    let log = pod.container_file("app", "0.log");
    let trace = [
        "Exception in thread \"main\" java.lang.IllegalStateException: boom",
        "\tat com.example.Orders.place(Orders.java:42)",
        "\tat com.example.Main.main(Main.java:7)",
    ];
    append(&log, &cri("stdout", "F", "before"));
    for frame in trace {
        append(&log, &cri("stderr", "F", frame));
    }
    let mut config = pod.config(LogFormat::Text);
    config.multiline = true;
    let t0 = Instant::now();
    {
        let mut source = LogSource::open(&config, &pipeline(Router::default())).unwrap();
        let events = drain(&mut source, t0);
        assert_eq!(messages(&events), vec!["before"]);
        source.checkpoint(&[]);
    }
    let checkpoint = pod.checkpoint_json();
    assert_eq!(
        checkpoint["files"][0]["offset"],
        cri("stdout", "F", "before").len() as u64,
        "{checkpoint}"
    );
    append(&log, &cri("stdout", "F", "after"));
    let mut source = LogSource::open(&config, &pipeline(Router::default())).unwrap();
    let mut events = drain(&mut source, t0);
    events.extend(drain(&mut source, t0 + MULTILINE_TIMEOUT * 2));
    source.flush_all(&mut events);
    let joined: Vec<_> = events
        .iter()
        .filter(|e| e.stream == Stream::Stderr)
        .collect();
    assert_eq!(joined.len(), 1, "{events:?}");
    assert_eq!(joined[0].message, trace.join("\n"));
    assert_eq!(joined[0].lines, 3);
    assert!(joined[0].crash.is_some(), "a Java trace is a crash");
    let stdout: Vec<_> = events
        .iter()
        .filter(|e| e.stream == Stream::Stdout)
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(stdout, vec!["after"]);
}

// --- The whole pipeline, through the router into a real disk buffer. ---

/// Deadline for anything the pipeline tests wait for.
const DEADLINE: Duration = Duration::from_secs(30);

fn buffered_router(dir: &Path) -> (Router, BufferReader) {
    let (writer, reader) =
        crate::buffer::open(&dir.join("buffer"), 256 << 20, WhenFull::Block, "sink_test").unwrap();
    let router = Router::new(vec![Route {
        sink: "sink_test".into(),
        signals: [Signal::Logs].to_vec(),
        writer,
    }]);
    (router, reader)
}

/// Reads delivered log bodies until `want` have arrived (acknowledging them).
async fn read_bodies(reader: &mut BufferReader, bodies: &mut Vec<String>, want: usize) {
    let wait = async {
        while bodies.len() < want {
            let records = reader.next_batch(64, 16 << 20).await.unwrap();
            for record in &records {
                let Batch::Logs(request) = Batch::decode(&record.bytes).unwrap() else {
                    panic!("not a logs batch");
                };
                for log in request
                    .resource_logs
                    .iter()
                    .flat_map(|r| &r.scope_logs)
                    .flat_map(|s| &s.log_records)
                {
                    match log.body.as_ref().and_then(|b| b.value.as_ref()) {
                        Some(AnyValueKind::StringValue(text)) => bodies.push(text.clone()),
                        other => panic!("log body is not text: {other:?}"),
                    }
                }
            }
            if let Some(last) = records.last() {
                reader.ack(last.id).unwrap();
            }
        }
    };
    if tokio::time::timeout(DEADLINE, wait).await.is_err() {
        panic!(
            "only {} of {want} log records reached the buffer",
            bodies.len()
        );
    }
}

/// End to end: lines written to a container's log reach the sink's buffer as OTLP log
/// records; the source killed mid-way (its task dropped) and started again delivers every line
/// exactly once; shutdown flushes and returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_survives_kill_without_loss_or_repeat() {
    let pod = Pod::new();
    let log = pod.container_file("app", "0.log");
    append(&log, &cri_lines(0..5_000));
    let config = pod.config(LogFormat::Text);
    let (router, mut reader) = buffered_router(&pod.root);
    let pipeline = pipeline(router);
    let mut bodies = Vec::new();

    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(run(config.clone(), pipeline.clone(), shutdown));
    read_bodies(&mut reader, &mut bodies, 1).await;
    task.abort();
    let _ = task.await;

    append(&log, &cri_lines(5_000..6_000));
    let (stop_again, shutdown) = watch::channel(false);
    let task = tokio::spawn(run(config.clone(), pipeline.clone(), shutdown));
    read_bodies(&mut reader, &mut bodies, 6_000).await;
    append(&log, &cri_lines(6_000..6_010));
    read_bodies(&mut reader, &mut bodies, 6_010).await;
    stop_again.send(true).unwrap();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("the source stops on shutdown")
        .unwrap()
        .unwrap();
    drop(stop);
    assert_eq!(bodies, expected(0..6_010));
}

/// How the writer of [`rotations_under_load_lose_and_repeat_nothing`] rotates its file.
#[derive(Clone, Copy, Debug)]
enum Rotation {
    /// logrotate's `copytruncate`: copied to `app.log.<n>`, then cut to nothing in place; the
    /// application goes on appending to its open descriptor.
    CopyTruncate,
    /// logrotate's default: renamed to `app.log.<n>`, the application told to reopen.
    Rename,
}

/// Writes numbered lines to `app.log` in `dir` as fast as it can, rotating it after every
/// `per_generation` lines, alternating copy-truncate and rename. The rotation runs while the
/// application is between two writes (logrotate's copy-truncate race, a line written after
/// the copy and before the truncation, is not modelled: such a line is in neither file), and
/// only once the source has read a line of the current generation (`seen` is the highest line
/// number delivered): files rotate by size or by the hour, never twice before the agent looked.
fn write_with_rotations(
    dir: &Path,
    total: usize,
    per_generation: usize,
    seen: &std::sync::atomic::AtomicUsize,
) -> (usize, usize) {
    use std::sync::atomic::Ordering;
    let log = dir.join("app.log");
    let open = || {
        std::io::BufWriter::with_capacity(
            16 * 1024,
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap(),
        )
    };
    let mut file = open();
    let (mut copies, mut renames) = (0, 0);
    let mut generation_start = 0;
    for n in 0..total {
        file.write_all(format!("{}\n", line(n)).as_bytes()).unwrap();
        if n % 64 == 63 {
            file.flush().unwrap();
        }
        if n + 1 < total && (n + 1) % per_generation == 0 {
            file.flush().unwrap();
            while seen.load(Ordering::Acquire) < generation_start + 1 {
                std::thread::yield_now();
            }
            let rotation = if (copies + renames) % 2 == 0 {
                Rotation::CopyTruncate
            } else {
                Rotation::Rename
            };
            let rotated = dir.join(format!("app.log.{}", copies + renames + 1));
            match rotation {
                Rotation::CopyTruncate => {
                    fs::copy(&log, &rotated).unwrap();
                    file.get_ref().set_len(0).unwrap();
                    copies += 1;
                }
                Rotation::Rename => {
                    fs::rename(&log, &rotated).unwrap();
                    file = open();
                    renames += 1;
                }
            }
            generation_start = n + 1;
        }
    }
    file.flush().unwrap();
    (copies, renames)
}

/// Copy-truncate and rename rotations under load, through the whole pipeline with file-change
/// notifications: every line arrives exactly once, whether the glob also matches the rotated
/// files (`app.log*`: copies are recognised and not read again from their start) or not
/// (`*.log`: the copy is found next to the truncated file). Prints lines lost, repeated and
/// torn (pieces of lines, as when a truncation cuts a line being read):
/// `cargo test -p vigil-agent --lib rotations_under_load -- --nocapture`
/// (`VIGIL_ROTATION_LINES`, default 100000, the lines written per glob).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_under_load_lose_and_repeat_nothing() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let total: usize = std::env::var("VIGIL_ROTATION_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let per_generation = total / 41;
    for glob in ["app.log*", "*.log"] {
        let pod = Pod::new();
        let logs = pod.root.join("logs");
        fs::create_dir_all(&logs).unwrap();
        fs::write(logs.join("app.log"), "").unwrap();
        let mut config = pod.config(LogFormat::Text);
        config.pod_log_dir = None;
        config.files = vec![format!("{}/{glob}", logs.display())];
        let (router, mut reader) = buffered_router(&pod.root);
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(run(config, pipeline(router), shutdown));

        let seen = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (logs, seen) = (logs.clone(), seen.clone());
            tokio::task::spawn_blocking(move || {
                write_with_rotations(&logs, total, per_generation, &seen)
            })
        };
        // Counts every line stored in the buffer until the buffer closes (the source stopped).
        let consumer = {
            let (seen, received) = (seen.clone(), received.clone());
            tokio::spawn(async move {
                let mut counts = vec![0u32; total];
                let mut foreign = Vec::new();
                while let Ok(records) = reader.next_batch(64, 16 << 20).await {
                    for record in &records {
                        let Batch::Logs(request) = Batch::decode(&record.bytes).unwrap() else {
                            panic!("not a logs batch");
                        };
                        for log in request
                            .resource_logs
                            .iter()
                            .flat_map(|r| &r.scope_logs)
                            .flat_map(|s| &s.log_records)
                        {
                            let Some(AnyValueKind::StringValue(body)) =
                                log.body.as_ref().and_then(|b| b.value.as_ref())
                            else {
                                panic!("log body is not text");
                            };
                            match body.get(5..11).and_then(|n| n.parse::<usize>().ok()) {
                                Some(n) if n < total => {
                                    counts[n] += 1;
                                    seen.fetch_max(n + 1, Ordering::AcqRel);
                                }
                                _ => foreign.push(body.clone()),
                            }
                            received.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                    if let Some(last) = records.last() {
                        reader.ack(last.id).unwrap();
                    }
                }
                (counts, foreign)
            })
        };
        let (copies, renames) = writer.await.unwrap();
        // Waits (not a timing check: a deadline so that a loss fails instead of hanging) until
        // as many lines as were written arrived, then stops the source; a repeat would show.
        let wait = async {
            while received.load(Ordering::Acquire) < total {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let _ = tokio::time::timeout(DEADLINE * 2, wait).await;
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
        let (counts, foreign) = consumer.await.unwrap();
        let lost = counts.iter().filter(|&&c| c == 0).count();
        let repeated: u32 = counts.iter().map(|&c| c.saturating_sub(1)).sum();
        println!(
            "rotations under load (glob {glob}): {total} lines, {copies} copy-truncate and \
             {renames} rename rotations: {lost} lost, {repeated} repeated, {} torn",
            foreign.len()
        );
        assert!(foreign.is_empty(), "lines not written: {foreign:?}");
        assert!(copies >= 20 && renames >= 20, "{copies} + {renames}");
        assert_eq!((lost, repeated), (0, 0));
    }
}
