//! The joiner and the crash detector on real JVM traces: the 801 failing-test traces of the
//! Defects4J bugs in `tests/fixtures/stacktraces-defects4j/` (see its `SOURCE.txt`), each
//! with the bug it belongs to. They have every JVM shape: exception types of any name
//! (`junit.framework.ComparisonFailure`), messages over many lines (some of them blank, some
//! starting with `[` or `{`), `Caused by:` chains, `... N more`, and Jackson's ` at [Source:`
//! message lines.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

use super::*;
use crate::event::{LogEvent, Origin, Stream};
use crate::identity::Identity;
use crate::processors::crash::CrashDetector;

/// One failing-test trace of a Defects4J bug.
#[derive(Debug, Deserialize)]
pub(crate) struct Defects4jTrace {
    /// `Lang`, `Math`, …
    pub project: String,
    /// The bug, such as `Lang-12`: ground truth for grouping.
    pub bug: String,
    /// The lines as printed.
    pub lines: Vec<String>,
}

impl Defects4jTrace {
    pub(crate) fn text(&self) -> String {
        self.lines.join("\n")
    }
}

pub(crate) fn defects4j_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stacktraces-defects4j")
}

/// All 801 traces, in file order.
pub(crate) fn defects4j_traces() -> Vec<Defects4jTrace> {
    let text = std::fs::read_to_string(defects4j_dir().join("traces.jsonl")).unwrap();
    let traces: Vec<Defects4jTrace> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(traces.len(), 801);
    traces
}

/// Ordinary lines of a service's log, plain and JSON, including ones that share words with
/// traces (`Error:`, an indented line, a line starting with `at`, a bracketed level).
const ORDINARY: [&str; 12] = [
    "2024-05-01T10:00:00.123Z INFO request served path=/api/orders status=200",
    "{\"level\":\"info\",\"ts\":\"2024-05-01T10:00:01Z\",\"msg\":\"user logged in\",\"user\":\"u1\"}",
    "listening on 0.0.0.0:8080",
    "   an indented ordinary line",
    "{\"level\":\"warn\",\"msg\":\"slow query {\",\"ms\":812}",
    "GET /healthz 200 1ms",
    "level=info msg=\"cache warmed\" entries=1200",
    "[INFO] Building project 1.0-SNAPSHOT",
    "Error: connection refused",
    "at 10:00 the nightly job starts",
    "",
    "Done (took 3 s)",
];

/// Writes lines into a pretend CRI file, keeping byte offsets like the tailer does.
struct FakeFile {
    file: Arc<str>,
    offset: u64,
}

impl FakeFile {
    fn line(&mut self, stream: Stream, text: &str) -> LogEvent {
        let mut event = LogEvent::line("app", stream, 1_700_000_000_000_000_000, text);
        let start = self.offset;
        self.offset += 40 + text.len() as u64;
        event.origin = Some(Origin {
            file: self.file.clone(),
            path: self.file.clone(),
            start,
            end: self.offset,
        });
        event
    }
}

/// What a joined-and-detected log of traces and ordinary lines came out as.
struct Outcome {
    /// Traces that became exactly one event holding all their lines, found to be a crash,
    /// with no other crash inside their byte range.
    joined: usize,
    /// Names of the traces that did not.
    failed: Vec<String>,
    /// Ordinary lines that did not come out as an event of their own.
    swallowed: Vec<String>,
}

/// Writes every trace into one stderr stream with `separation` ordinary lines before each (and,
/// with `stdout_between`, an ordinary stdout line after every trace line), runs the joiner and
/// the crash detector, and checks each trace and each ordinary line.
fn join_and_detect(traces: &[Defects4jTrace], separation: usize, stdout_between: bool) -> Outcome {
    let mut file = FakeFile {
        file: Arc::from("0.log"),
        offset: 0,
    };
    let mut input = Vec::new();
    // (name, text, start, end) of each trace; (text, start) of each ordinary line.
    let mut trace_ranges = Vec::new();
    let mut ordinary_lines = Vec::new();
    let mut k = 0;
    for (i, trace) in traces.iter().enumerate() {
        for _ in 0..separation {
            let line = ORDINARY[k % ORDINARY.len()];
            k += 1;
            ordinary_lines.push((line, file.offset));
            input.push(file.line(Stream::Stderr, line));
        }
        let start = file.offset;
        let mut end = start;
        for line in &trace.lines {
            input.push(file.line(Stream::Stderr, line));
            end = file.offset;
            if stdout_between {
                let line = ORDINARY[k % ORDINARY.len()];
                k += 1;
                ordinary_lines.push((line, file.offset));
                input.push(file.line(Stream::Stdout, line));
            }
        }
        trace_ranges.push((format!("{} #{i}", trace.bug), trace.text(), start, end));
    }
    ordinary_lines.push(("shutting down", file.offset));
    input.push(file.line(Stream::Stderr, "shutting down"));

    let mut joiner = Joiner::default();
    let now = Instant::now();
    let mut out = Vec::new();
    for event in input {
        joiner.push(event, now, &mut out);
    }
    joiner.flush_all(&mut out);

    let detector = CrashDetector::new(&Identity::default(), None);
    let mut events: Vec<(u64, u64, String, bool)> = out
        .into_iter()
        .map(|mut event| {
            let crash = detector.observe(&mut event).is_some();
            let origin = event.origin.unwrap();
            (origin.start, origin.end, event.message, crash)
        })
        .collect();
    events.sort_by_key(|e| e.0);

    let single: std::collections::HashMap<u64, &str> = events
        .iter()
        .filter(|e| !e.2.contains('\n'))
        .map(|e| (e.0, e.2.as_str()))
        .collect();
    let swallowed = ordinary_lines
        .iter()
        .filter(|(line, start)| single.get(start) != Some(line))
        .map(|(line, start)| format!("{start}: {line}"))
        .collect();

    let mut joined = 0;
    let mut failed = Vec::new();
    for (name, text, start, end) in &trace_ranges {
        let inside: Vec<&(u64, u64, String, bool)> = events
            .iter()
            .filter(|e| e.0 >= *start && e.1 <= *end && e.3)
            .collect();
        let whole = inside.len() == 1 && inside[0].0 == *start && inside[0].1 == *end;
        // With stdout lines between, the joined message is the trace itself.
        if whole && inside[0].2 == *text {
            joined += 1;
        } else {
            failed.push(name.clone());
        }
    }
    Outcome {
        joined,
        failed,
        swallowed,
    }
}

/// At least 99 % of the real Defects4J traces, each after ordinary plain and JSON lines,
/// become exactly one crash holding all their lines, and no ordinary line is swallowed —
/// with one or two ordinary lines between traces, none, or stdout lines between every line.
/// Prints the join rate (`cargo test -p vigil-agent --lib defects4j -- --nocapture`).
#[test]
fn defects4j_traces_become_one_crash_each() {
    let traces = defects4j_traces();
    let outcomes: Vec<_> = [(1, false), (2, false), (0, false), (1, true)]
        .into_iter()
        .map(|(separation, stdout_between)| {
            let outcome = join_and_detect(&traces, separation, stdout_between);
            println!(
                "{} ordinary line(s) before each trace{}: {}/{} traces joined into one crash \
                 ({:.1} %), {} ordinary lines swallowed",
                separation,
                if stdout_between {
                    ", stdout lines between its lines"
                } else {
                    ""
                },
                outcome.joined,
                traces.len(),
                outcome.joined as f64 / traces.len() as f64 * 100.0,
                outcome.swallowed.len()
            );
            if separation == 1 && !stdout_between {
                println!("not joined into one crash: {:?}", outcome.failed);
            }
            (separation, outcome)
        })
        .collect();
    for (separation, outcome) in outcomes {
        let rate = outcome.joined as f64 / traces.len() as f64;
        assert!(
            rate >= 0.99,
            "separation {separation}: {:.3}, failed: {:#?}",
            rate,
            outcome.failed
        );
        assert!(outcome.swallowed.is_empty(), "{:#?}", outcome.swallowed);
    }
}

// ---------------------------------------------------------------------------------------------
// JVM shapes the Defects4J traces lack, each as its tools print it.

const JACKSON_PRETTY_SOURCE: &str = r#"com.fasterxml.jackson.databind.exc.MismatchedInputException: Cannot deserialize value of type `int` from String "abc": not a valid `int` value
 at [Source: {
  "id": "abc",
  "items": [1, 2]
}; line: 2, column: 9] (through reference chain: com.acme.Order["id"])
	at com.fasterxml.jackson.databind.exc.MismatchedInputException.from(MismatchedInputException.java:63)
	at com.fasterxml.jackson.databind.ObjectMapper.readValue(ObjectMapper.java:3548)
	at com.acme.orders.OrderReader.read(OrderReader.java:20)"#;

const SUPPRESSED_AND_CAUSES: &str = "java.io.IOException: close failed
	at com.acme.store.Store.close(Store.java:88)
	at com.acme.Main.main(Main.java:12)
	Suppressed: java.lang.IllegalStateException: flush failed
		at com.acme.store.Store.flush(Store.java:70)
		... 1 more
	Caused by: java.net.SocketException: Broken pipe
		at java.base/sun.nio.ch.NioSocketImpl.implWrite(NioSocketImpl.java:420)
		... 2 more
Caused by: java.io.EOFException: unexpected end
of stream after 12 bytes
	at com.acme.store.Store.read(Store.java:50)
	... 1 more";

const LOGBACK_ROOT_CAUSE_FIRST: &str = "java.net.ConnectException: Connection refused
	at java.base/sun.nio.ch.Net.connect0(Native Method)
	at com.acme.db.Pool.open(Pool.java:31)
	... 3 common frames omitted
Wrapped by: org.springframework.dao.DataAccessResourceFailureException: pool down
	at org.springframework.jdbc.support.SQLExceptionTranslator.translate(SQLExceptionTranslator.java:70)
	at com.acme.db.Repo.find(Repo.java:12)";

const JUNIT5_MULTIPLE_FAILURES: &str =
    "org.opentest4j.MultipleFailuresError: Multiple Failures (2 failures)
	org.opentest4j.AssertionFailedError: expected: <1> but was: <2>
	org.opentest4j.AssertionFailedError: expected: <true> but was: <false>
	at org.junit.jupiter.api.AssertAll.assertAll(AssertAll.java:80)
	at com.acme.CartTest.totals(CartTest.java:31)";

const MOCKITO_WANTED_BUT_NOT_INVOKED: &str =
    "org.mockito.exceptions.verification.WantedButNotInvoked: 
Wanted but not invoked:
mailer.send(<any>);
-> at com.acme.MailerTest.sends(MailerTest.java:22)
Actually, there were zero interactions with this mock.

	at com.acme.MailerTest.sends(MailerTest.java:22)";

const KOTLIN_IN_THREAD: &str =
    "Exception in thread \"main\" kotlinx.coroutines.JobCancellationException: Job was cancelled
	at kotlinx.coroutines.JobSupport.cancel(JobSupport.kt:1579)
	at com.acme.AppKt.main(App.kt:9)";

fn join_lines(text: &str) -> Vec<LogEvent> {
    let mut file = FakeFile {
        file: Arc::from("0.log"),
        offset: 0,
    };
    let mut joiner = Joiner::default();
    let now = Instant::now();
    let mut out = Vec::new();
    for line in text.lines() {
        joiner.push(file.line(Stream::Stderr, line), now, &mut out);
    }
    joiner.flush_all(&mut out);
    out
}

/// Jackson's multi-line `at [Source: …]`, `Suppressed:` and `Caused by:` chains with their
/// own frames and `... N more`, logback's `Wrapped by:`, JUnit 5's nested failures,
/// Mockito's message with a blank line, and a Kotlin class after `Exception in thread`: each
/// is one event, between ordinary lines that stay apart.
#[test]
fn jvm_shapes_join_into_one_event() {
    for trace in [
        JACKSON_PRETTY_SOURCE,
        SUPPRESSED_AND_CAUSES,
        LOGBACK_ROOT_CAUSE_FIRST,
        JUNIT5_MULTIPLE_FAILURES,
        MOCKITO_WANTED_BUT_NOT_INVOKED,
        KOTLIN_IN_THREAD,
    ] {
        let text = format!("{}\n{trace}\n{}", ORDINARY[0], ORDINARY[1]);
        let out = join_lines(&text);
        let got: Vec<&str> = out.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(got, [ORDINARY[0], trace, ORDINARY[1]]);
    }
}

/// No line puts the joiner into a state that holds later lines beyond one trace: after an
/// exception line and a message line that looks like the start of an object (Jackson's
/// ` at [Source: {"`), a frame line that opens Node's error properties, or a class-name-like
/// line, a thousand ordinary lines (indented ones too) each still come out on their own.
#[test]
fn no_line_swallows_later_lines() {
    let ordinary: Vec<String> = (0..1000)
        .map(|i| match i % 4 {
            0 => format!("GET /orders/{i} 200 3ms"),
            1 => format!("  worker {i} idle"),
            2 => format!("{{\"level\":\"info\",\"msg\":\"tick {i}\"}}"),
            _ => format!("processed batch {i}"),
        })
        .collect();
    for opening in [
        "com.fasterxml.jackson.core.JsonParseException: Unexpected character ('}' (code 125))\n at [Source: {\"",
        "com.fasterxml.jackson.core.JsonParseException: Unexpected end-of-input\n at [Source: {",
        "TypeError: boom\n    at f (/app/a.js:1:2) {\n  code: 'E_BOOM'",
        "java.lang.IllegalStateException: x\n\tat com.acme.A.b(A.java:1)\n\tat [Source: {",
        "com.acme.Config: reloaded",
    ] {
        // Starting with each kind of ordinary line, the indented one too.
        for first in 0..4 {
            let ordinary = &ordinary[first..];
            let text = format!("{opening}\n{}", ordinary.join("\n"));
            let out = join_lines(&text);
            let tail: Vec<&str> = out[out.len() - ordinary.len()..]
                .iter()
                .map(|e| e.message.as_str())
                .collect();
            assert_eq!(tail, ordinary, "after {opening:?}");
            assert!(
                out.len() <= ordinary.len() + opening.lines().count(),
                "{opening:?}"
            );
        }
    }
}

/// Which first lines open a JVM trace: any class name with or without a message, after
/// `Exception in thread` too; not a host name, a sentence or a logger's record. (A class name
/// that is no exception opens a trace that no frame confirms: it stays a line of its own.)
#[test]
fn any_jvm_class_name_starts_a_trace() {
    for line in [
        "junit.framework.ComparisonFailure: expected:<[a]> but was:<[b]>",
        "org.junit.ComparisonFailure: expected:<…> but was:<…>",
        "org.mockito.exceptions.verification.WantedButNotInvoked: ",
        "org.apache.commons.math.MathRuntimeException$4: can't convert",
        "scala.MatchError: 42 (of class java.lang.Integer)",
        "java.lang.StackOverflowError",
        "com.acme.orders.OrderRejected",
        "Exception in thread \"main\" kotlinx.coroutines.TimeoutCancellationException: Timed out",
    ] {
        assert_eq!(rules::start(line), Some(rules::State::JavaHeader), "{line}");
    }
    for line in [
        "example.com: 200 OK",
        "com.acme.app started in 3.1 s",
        "mailer.send(<any>);",
        "2024-05-01 10:00:00 INFO com.acme.App: started",
    ] {
        assert_eq!(rules::start(line), None, "{line}");
    }
}
