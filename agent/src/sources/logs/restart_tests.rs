//! Restart equivalence of the log source: reading files in runs separated by kills (the
//! source dropped with whatever it had not had acknowledged, started again from its persisted
//! checkpoint) delivers exactly what one uninterrupted run delivers — no line lost, none
//! repeated — with stdout and stderr interleaved in one CRI file, stack traces open in the
//! multi-line joiner, `P` fragments, rename rotation (kubelet's) and copy-truncate rotation
//! (logrotate's, with its copy in the watched glob).
//!
//! Time is held still, so the joiner's timeout never ends a trace and both runs join the same
//! lines: what differs between them is only where the kills fall.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use proptest::prelude::*;
use vigil_crds::agent_config::LogsConfig;
use vigil_crds::monitored_app::LogFormat;

use super::*;
use crate::event::Stream;

const TIME: &str = "2024-05-01T12:00:00.000000001Z";

fn cri(stream: Stream, tag: &str, message: &str) -> String {
    let stream = match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    format!("{TIME} {stream} {tag} {message}\n")
}

fn append(path: &Path, text: &str) {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// A pod's log directory with one container (`app`, CRI lines) and a plain log file read
/// through a glob that also matches its rotated copies, and a log source reading them whose
/// deliveries are modelled: events handed out wait in `unsent` until acknowledged.
struct Harness {
    _dir: tempfile::TempDir,
    cri_log: PathBuf,
    plain_log: PathBuf,
    config: LogsConfig,
    source: Option<LogSource>,
    now: Instant,
    unsent: Vec<LogEvent>,
    delivered: Vec<LogEvent>,
    rotations: usize,
    /// A poll has seen the CRI file.
    cri_seen: bool,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let pod_dir = dir.path().join("pod");
        fs::create_dir_all(pod_dir.join("app")).unwrap();
        let plain_dir = dir.path().join("plain");
        fs::create_dir_all(&plain_dir).unwrap();
        let config = LogsConfig {
            pod_log_dir: Some(pod_dir.display().to_string()),
            containers: Vec::new(),
            files: vec![format!("{}/app.log*", plain_dir.display())],
            format: LogFormat::Text,
            multiline: true,
            user_field: None,
            checkpoint_dir: dir.path().join("checkpoints").display().to_string(),
        };
        let mut harness = Harness {
            cri_log: pod_dir.join("app/0.log"),
            plain_log: plain_dir.join("app.log"),
            _dir: dir,
            config,
            source: None,
            now: Instant::now(),
            unsent: Vec::new(),
            delivered: Vec::new(),
            rotations: 0,
            cri_seen: false,
        };
        harness.start();
        harness
    }

    fn start(&mut self) {
        self.source = Some(
            LogSource::open(&self.config, &super::tests::pipeline(Router::default())).unwrap(),
        );
    }

    fn source(&mut self) -> &mut LogSource {
        self.source.as_mut().unwrap()
    }

    /// Reads until no file has more, then checkpoints what is not acknowledged (as the driver
    /// does before it waits).
    fn poll(&mut self) {
        self.cri_seen |= self.cri_log.exists();
        let now = self.now;
        let mut out = Vec::new();
        let source = self.source.as_mut().unwrap();
        // As a file-change notification makes the driver do.
        source.rescan();
        while source.poll(now, &mut out).more {}
        self.unsent.append(&mut out);
        source.checkpoint(&self.unsent);
    }

    /// The buffer acknowledges the oldest `count` events; the checkpoint follows.
    fn deliver(&mut self, count: usize) {
        let count = count.min(self.unsent.len());
        self.delivered.extend(self.unsent.drain(..count));
        let source = self.source.as_mut().unwrap();
        source.checkpoint(&self.unsent);
    }

    /// The agent is killed: what was not acknowledged is gone with it; it starts again.
    fn kill(&mut self) {
        self.source = None;
        self.unsent.clear();
        self.start();
    }

    /// Reads everything, flushes the joiner and acknowledges all.
    fn finish(mut self) -> Vec<LogEvent> {
        self.poll();
        let mut rest = Vec::new();
        self.source().flush_all(&mut rest);
        self.unsent.append(&mut rest);
        self.deliver(usize::MAX);
        self.delivered
    }

    fn write_cri(&self, stream: Stream, tag: &str, message: &str) {
        append(&self.cri_log, &cri(stream, tag, message));
    }

    fn write_plain(&self, message: &str) {
        append(&self.plain_log, &format!("{message}\n"));
    }

    /// Kubelet's rotation: `0.log` renamed to `0.log.<time>`, the runtime reopens `0.log`.
    /// Rotated files are not discovered, so one that was never seen at all would not be read:
    /// the first one is read before it rotates (kubelet rotates files of megabytes, not ones
    /// the agent has not looked at yet).
    fn rotate_cri(&mut self) {
        if !self.cri_seen {
            self.poll();
        }
        self.rotations += 1;
        if self.cri_log.exists() {
            let rotated = self
                .cri_log
                .with_file_name(format!("0.log.20240501-1200{:02}", self.rotations));
            fs::rename(&self.cri_log, rotated).unwrap();
            fs::File::create(&self.cri_log).unwrap();
        }
    }

    /// logrotate's `copytruncate`: the file copied to `app.log.<n>`, then cut to nothing in
    /// place while the writer goes on appending.
    fn copy_truncate_plain(&mut self) {
        self.rotations += 1;
        if self.plain_log.exists() {
            fs::copy(
                &self.plain_log,
                self.plain_log
                    .with_file_name(format!("app.log.{}", self.rotations)),
            )
            .unwrap();
            OpenOptions::new()
                .write(true)
                .open(&self.plain_log)
                .unwrap()
                .set_len(0)
                .unwrap();
        }
    }

    /// logrotate's default: the file renamed to `app.log-<n>`, the writer reopens `app.log`.
    fn rename_plain(&mut self) {
        self.rotations += 1;
        if self.plain_log.exists() {
            fs::rename(
                &self.plain_log,
                self.plain_log
                    .with_file_name(format!("app.log-{}", self.rotations)),
            )
            .unwrap();
            fs::File::create(&self.plain_log).unwrap();
        }
    }
}

fn summary(events: &[LogEvent]) -> Vec<(&'static str, String)> {
    let mut all: Vec<_> = events
        .iter()
        .map(|e| (e.stream.as_str(), e.message.clone()))
        .collect();
    all.sort();
    all
}

/// How many times `token` occurs in the delivered messages.
fn occurrences(events: &[LogEvent], token: &str) -> usize {
    events
        .iter()
        .map(|e| e.message.matches(token).count())
        .sum()
}

const TRACE_START: &str = "Exception in thread \"main\" java.lang.IllegalStateException: boom";

fn frame(n: usize) -> String {
    format!("\tat com.example.Orders{n}.place(Orders.java:42)")
}

/// Issue 14: while a stack trace was open on stderr the file's one checkpoint stayed at the
/// trace's start, so every kill made the stdout lines delivered since then be sent again.
/// With a checkpoint per stream, 120 stdout lines over 4 kills arrive once each, and the trace
/// (read again from its start after each kill) still arrives whole, once.
#[test]
fn open_stderr_trace_does_not_repeat_stdout_across_kills() {
    let mut harness = Harness::new();
    harness.write_cri(Stream::Stderr, "F", TRACE_START);
    for n in 0..120 {
        harness.write_cri(Stream::Stdout, "F", &format!("request <L{n}> served"));
        if n % 10 == 9 {
            harness.write_cri(Stream::Stderr, "F", &frame(n));
        }
        if n % 30 == 29 {
            harness.poll();
            harness.deliver(usize::MAX);
            harness.kill();
        }
    }
    harness.write_cri(Stream::Stderr, "F", "worker restarted");
    let delivered = harness.finish();
    for n in 0..120 {
        assert_eq!(
            occurrences(&delivered, &format!("<L{n}>")),
            1,
            "stdout line {n} in {:#?}",
            summary(&delivered)
        );
    }
    let traces: Vec<_> = delivered
        .iter()
        .filter(|e| e.message.starts_with(TRACE_START))
        .collect();
    assert_eq!(traces.len(), 1, "{:#?}", summary(&delivered));
    assert_eq!(traces[0].lines, 13);
}

/// Issue 14: a stdout line written in `P` fragments that began before a stderr trace's first
/// line and ended inside the trace was, after a restart, read again from the trace's start —
/// past its first part — and sent as its tail alone. It arrives once and whole, whether it
/// had been acknowledged before the kill or not.
#[test]
fn partial_line_straddling_trace_start_survives_kill() {
    for acknowledged in [true, false] {
        let mut harness = Harness::new();
        harness.write_cri(Stream::Stdout, "P", "hello ");
        harness.write_cri(Stream::Stderr, "F", TRACE_START);
        harness.write_cri(Stream::Stdout, "P", "big ");
        harness.write_cri(Stream::Stderr, "F", &frame(1));
        harness.write_cri(Stream::Stdout, "F", "world");
        harness.poll();
        if acknowledged {
            harness.deliver(usize::MAX);
        }
        harness.kill();
        harness.write_cri(Stream::Stderr, "F", &frame(2));
        harness.write_cri(Stream::Stderr, "F", "worker restarted");
        let delivered = harness.finish();
        let stdout: Vec<_> = delivered
            .iter()
            .filter(|e| e.stream == Stream::Stdout)
            .map(|e| e.message.as_str())
            .collect();
        assert_eq!(
            stdout,
            vec!["hello big world"],
            "acknowledged: {acknowledged}"
        );
        let stderr: Vec<_> = delivered
            .iter()
            .filter(|e| e.stream == Stream::Stderr)
            .map(|e| e.message.clone())
            .collect();
        assert_eq!(
            stderr,
            vec![
                [TRACE_START.to_owned(), frame(1), frame(2)].join("\n"),
                "worker restarted".to_owned()
            ],
            "acknowledged: {acknowledged}"
        );
    }
}

/// One step of a scenario.
#[derive(Clone, Debug)]
enum Op {
    /// A whole CRI line with a unique token.
    Line(Stream),
    /// A `P` fragment: the stream's next line continues it.
    Fragment(Stream),
    /// The first line of a Java stack trace.
    TraceStart(Stream),
    /// A stack frame.
    Frame(Stream),
    /// A plain line in the glob-matched file.
    PlainLine,
    /// Kubelet rotates the CRI file (and the source notices before the next step).
    RotateCri,
    /// logrotate copies and truncates the plain file.
    CopyTruncate,
    /// logrotate renames the plain file.
    RenamePlain,
    /// The source reads what there is.
    Poll,
    /// The buffer acknowledges a quarter, half, … of what waits.
    Deliver(u8),
    /// The agent is killed and restarted.
    Kill,
}

fn stream() -> impl Strategy<Value = Stream> {
    prop_oneof![Just(Stream::Stdout), Just(Stream::Stderr)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => stream().prop_map(Op::Line),
        2 => stream().prop_map(Op::Fragment),
        1 => stream().prop_map(Op::TraceStart),
        3 => stream().prop_map(Op::Frame),
        3 => Just(Op::PlainLine),
        1 => Just(Op::RotateCri),
        1 => Just(Op::CopyTruncate),
        1 => Just(Op::RenamePlain),
        3 => Just(Op::Poll),
        2 => (0u8..=4).prop_map(Op::Deliver),
        1 => Just(Op::Kill),
    ]
}

/// Runs a scenario; kills are ignored when `with_kills` is false.
fn run_scenario(ops: &[Op], with_kills: bool) -> Vec<LogEvent> {
    let mut harness = Harness::new();
    for (n, op) in ops.iter().enumerate() {
        match op {
            Op::Line(stream) => harness.write_cri(*stream, "F", &format!("line <L{n}>")),
            Op::Fragment(stream) => harness.write_cri(*stream, "P", &format!("part <P{n}> ")),
            Op::TraceStart(stream) => harness.write_cri(*stream, "F", TRACE_START),
            Op::Frame(stream) => harness.write_cri(*stream, "F", &frame(n)),
            Op::PlainLine => harness.write_plain(&format!("plain <Q{n}>")),
            // A rotation is noticed before the file rotates again, as it is when files rotate
            // by size or by the hour.
            Op::RotateCri => {
                harness.rotate_cri();
                harness.poll();
            }
            Op::CopyTruncate => {
                harness.copy_truncate_plain();
                harness.poll();
            }
            Op::RenamePlain => {
                harness.rename_plain();
                harness.poll();
            }
            Op::Poll => harness.poll(),
            Op::Deliver(quarters) => {
                let count = harness.unsent.len() * usize::from(*quarters) / 4;
                harness.deliver(count);
            }
            Op::Kill => {
                if with_kills {
                    harness.kill();
                }
            }
        }
    }
    harness.finish()
}

proptest! {
    // 128 scenarios by default; `PROPTEST_CASES` for more.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(128),
        ..ProptestConfig::default()
    })]

    /// Kills anywhere change nothing in what is delivered; and the uninterrupted run itself
    /// delivers every whole line exactly once.
    #[test]
    fn restart_equivalence(ops in proptest::collection::vec(op(), 1..80)) {
        let reference = run_scenario(&ops, false);
        for (n, op) in ops.iter().enumerate() {
            let token = match op {
                Op::Line(_) => format!("<L{n}>"),
                Op::PlainLine => format!("<Q{n}>"),
                _ => continue,
            };
            prop_assert_eq!(occurrences(&reference, &token), 1, "{} in {:#?}", token, summary(&reference));
        }
        let killed = run_scenario(&ops, true);
        prop_assert_eq!(summary(&killed), summary(&reference));
    }
}
