use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::event::{LogEvent, Origin, Stream};

/// The stack-trace corpus (fluent-plugin-detect-exceptions' test traces, see
/// `tests/fixtures/stacktraces/SOURCE.txt`).
pub(crate) fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stacktraces")
}

/// Traces from real projects kept beside this module (see `testdata/SOURCE.txt`).
pub(crate) fn testdata_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/processors/multiline/testdata")
}

/// (file name, language, expected one trace) for every corpus file in the manifest.
pub(crate) fn corpus_manifest() -> Vec<(String, String, usize, bool)> {
    let manifest = std::fs::read_to_string(corpus_dir().join("manifest.csv")).unwrap();
    manifest
        .lines()
        .skip(1)
        .map(|row| {
            let cols: Vec<&str> = row.split(',').collect();
            (
                cols[0].to_owned(),
                cols[1].to_owned(),
                cols[2].parse().unwrap(),
                cols[3].starts_with("one_trace"),
            )
        })
        .collect()
}

/// Every `.txt` fixture from real projects, with its text.
pub(crate) fn real_project_traces() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(testdata_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt") && !p.ends_with("SOURCE.txt"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(files.len() >= 6, "real-project fixtures missing");
    files
}

pub(crate) fn read_corpus(name: &str) -> String {
    std::fs::read_to_string(corpus_dir().join(name)).unwrap()
}

/// Writes lines into a pretend CRI file, keeping byte offsets like the tailer does.
struct FakeFile {
    file: Arc<str>,
    offset: u64,
    time: u64,
}

impl FakeFile {
    fn new(name: &str) -> Self {
        FakeFile {
            file: Arc::from(name),
            offset: 0,
            time: 1_700_000_000_000_000_000,
        }
    }

    fn line(&mut self, container: &str, stream: Stream, text: &str) -> LogEvent {
        let mut event = LogEvent::line(container, stream, self.time, text);
        let start = self.offset;
        // A CRI line: timestamp, stream, tag, message, newline.
        self.offset += 40 + text.len() as u64;
        self.time += 1_000;
        event.origin = Some(Origin {
            file: self.file.clone(),
            path: self.file.clone(),
            start,
            end: self.offset,
        });
        event
    }
}

fn join_all(events: Vec<LogEvent>) -> Vec<LogEvent> {
    let mut joiner = Joiner::new(DEFAULT_MAX_LINES, DEFAULT_TIMEOUT);
    let now = Instant::now();
    let mut out = Vec::new();
    for event in events {
        joiner.push(event, now, &mut out);
    }
    joiner.flush_all(&mut out);
    assert_eq!(joiner.open_traces(), 0);
    out
}

fn join_text(text: &str) -> Vec<LogEvent> {
    let mut file = FakeFile::new("app.log");
    join_all(
        text.lines()
            .map(|l| file.line("app", Stream::Stderr, l))
            .collect(),
    )
}

/// Every corpus trace becomes exactly one event holding all its lines, and
/// `arbitrary_text.txt` stays one event per line. Prints the per-file table.
#[test]
fn corpus_files_become_one_event_each() {
    let manifest = corpus_manifest();
    assert_eq!(manifest.len(), 39);
    let mut failures = Vec::new();
    println!(
        "{:<40} {:<11} {:>5} {:>7}",
        "file", "language", "lines", "events"
    );
    for (name, language, lines, one_trace) in &manifest {
        let text = read_corpus(name);
        let out = join_text(&text);
        println!("{name:<40} {language:<11} {lines:>5} {:>7}", out.len());
        if *one_trace {
            if out.len() != 1
                || out[0].lines as usize != *lines
                || out[0].message != text.trim_end()
            {
                failures.push(format!("{name}: {} events", out.len()));
            }
        } else if out.len() != *lines || out.iter().any(|e| e.lines != 1) {
            failures.push(format!("{name}: expected {lines} single lines"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Traces from real projects (not in the fixture corpus) also become one event each.
#[test]
fn real_project_traces_become_one_event_each() {
    for (name, text) in real_project_traces() {
        let out = join_text(&text);
        assert_eq!(out.len(), 1, "{name}: {out:#?}");
        assert_eq!(out[0].message, text.trim_end(), "{name}");
        assert_eq!(out[0].lines as usize, text.lines().count(), "{name}");
    }
}

/// Real log excerpts with ordinary lines around the trace: the ordinary lines stay apart.
#[test]
fn real_project_context_lines_stay_apart() {
    let cases: [(&str, &[u32]); 3] = [
        ("spring_root_cause.log", &[1, 1, 4]),
        ("buildkite_nil_map.log", &[1, 15]),
        ("mint_tokio_worker.log", &[1, 1, 4]),
    ];
    for (name, expected) in cases {
        let text = std::fs::read_to_string(testdata_dir().join("context").join(name)).unwrap();
        let out = join_text(&text);
        let got: Vec<u32> = out.iter().map(|e| e.lines).collect();
        assert_eq!(got, expected, "{name}");
    }
}

/// All traces in one stderr stream, separated by ordinary lines, with stdout lines between
/// every stderr line: each trace is still exactly one event, each ordinary line its own, in
/// order, and the joined event carries the first line's start and the last line's end.
#[test]
fn traces_interleaved_with_ordinary_lines_and_stdout() {
    let ordinary = [
        "2024-05-01T10:00:00.123Z INFO request served path=/api/orders status=200",
        "listening on 0.0.0.0:8080",
        "   an indented ordinary line",
        "GET /healthz 200 1ms",
        "level=info msg=\"cache warmed\" entries=1200",
        "{\"level\":\"info\",\"msg\":\"user logged in\"}",
        "",
        "Done (took 3 s)",
    ];
    let mut traces: Vec<(String, String)> = corpus_manifest()
        .into_iter()
        .filter(|(_, _, _, one)| *one)
        .map(|(name, ..)| {
            let text = read_corpus(&name);
            (name, text)
        })
        .collect();
    traces.extend(real_project_traces());

    for separation in [1usize, 2, 0] {
        let mut file = FakeFile::new("0.log");
        let mut input = Vec::new();
        // (trace name or none, message, origin start, origin end)
        let mut expected: Vec<(Option<String>, String, u64, u64)> = Vec::new();
        let mut stdout_count = 0;
        for (i, (name, text)) in traces.iter().enumerate() {
            for k in 0..separation {
                let line = ordinary[(i + k) % ordinary.len()];
                let start = file.offset;
                input.push(file.line("app", Stream::Stderr, line));
                expected.push((None, line.to_owned(), start, file.offset));
            }
            let start = file.offset;
            let mut end = start;
            for line in text.lines() {
                input.push(file.line("app", Stream::Stderr, line));
                end = file.offset;
                input.push(file.line("app", Stream::Stdout, "stdout: tick"));
                stdout_count += 1;
            }
            expected.push((Some(name.clone()), text.trim_end().to_owned(), start, end));
        }
        let start = file.offset;
        input.push(file.line("app", Stream::Stderr, "shutting down"));
        expected.push((None, "shutting down".to_owned(), start, file.offset));

        let out = join_all(input);
        let (stdout, stderr): (Vec<_>, Vec<_>) =
            out.into_iter().partition(|e| e.stream == Stream::Stdout);
        assert_eq!(stdout.len(), stdout_count);
        assert!(stdout.iter().all(|e| e.lines == 1));
        for (i, (event, (name, message, start, end))) in stderr.iter().zip(&expected).enumerate() {
            assert_eq!(
                &event.message, message,
                "separation {separation}, event {i} ({name:?})"
            );
            let origin = event.origin.as_ref().unwrap();
            assert_eq!((origin.start, origin.end), (*start, *end), "{name:?}");
        }
        assert_eq!(stderr.len(), expected.len(), "separation {separation}");
    }
}

/// A line that only might continue a trace (a blank line, a possible message line) never
/// ends up glued to it when no confirming line follows.
#[test]
fn unconfirmed_lines_are_not_glued() {
    let out = join_text("Error: connection refused\n\nserver started\nsecond line");
    let got: Vec<&str> = out.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        got,
        [
            "Error: connection refused",
            "",
            "server started",
            "second line"
        ]
    );

    let out = join_text("panic: boom\n\nnot a goroutine\n");
    assert_eq!(out.len(), 3);

    // A Go function-like line after the last frame is not taken without its file line.
    let text = read_corpus("go_signal_exc.txt");
    let out = join_text(&format!("{text}served request (200)\nnext"));
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].message, text.trim_end());
}

/// `max_lines` bounds a joined event; the rest of a long trace is not lost.
#[test]
fn max_lines_caps_a_trace() {
    let mut text = String::from("java.lang.IllegalStateException: deep\n");
    for i in 0..30 {
        text.push_str(&format!("\tat com.example.Deep.level{i}(Deep.java:{i})\n"));
    }
    let mut file = FakeFile::new("a.log");
    let mut joiner = Joiner::new(10, DEFAULT_TIMEOUT);
    let mut out = Vec::new();
    for line in text.lines() {
        joiner.push(
            file.line("c", Stream::Stderr, line),
            Instant::now(),
            &mut out,
        );
    }
    joiner.flush_all(&mut out);
    assert_eq!(out[0].lines, 10);
    let total: u32 = out.iter().map(|e| e.lines).sum();
    assert_eq!(total, 31);
    assert!(out.iter().all(|e| e.lines <= 10));
}

/// An open trace is flushed once no line came for the timeout, and not before; the log
/// source may checkpoint only up to the start of what is held.
#[test]
fn timeout_flushes_and_pending_start_holds_checkpoint() {
    let mut file = FakeFile::new("0.log");
    let mut joiner = Joiner::new(100, Duration::from_millis(500));
    let t0 = Instant::now();
    let mut out = Vec::new();
    joiner.push(file.line("c", Stream::Stdout, "hello"), t0, &mut out);
    let trace_start = file.offset;
    for line in read_corpus("java_exc.txt").lines() {
        joiner.push(file.line("c", Stream::Stderr, line), t0, &mut out);
    }
    assert_eq!(out.len(), 1);
    assert_eq!(
        joiner.pending_start("0.log", Stream::Stderr),
        Some(trace_start)
    );
    // The stdout line before the trace is not held: that stream may be checkpointed past it.
    assert_eq!(joiner.pending_start("0.log", Stream::Stdout), None);
    assert_eq!(joiner.pending_start("other.log", Stream::Stderr), None);

    joiner.flush_expired(t0 + Duration::from_millis(499), &mut out);
    assert_eq!(out.len(), 1);
    joiner.flush_expired(t0 + Duration::from_millis(500), &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].lines, 6);
    assert_eq!(out[1].origin.as_ref().unwrap().start, trace_start);
    assert_eq!(out[1].origin.as_ref().unwrap().end, file.offset);
    assert_eq!(joiner.pending_start("0.log", Stream::Stderr), None);
}

/// The joined event takes time, level and attributes of its first line.
#[test]
fn joined_event_keeps_first_line_fields() {
    let mut file = FakeFile::new("0.log");
    let mut first = file.line("c", Stream::Stderr, "java.lang.RuntimeException: x");
    first.level = Some(crate::event::Level::Error);
    first.attributes.push(("user".into(), "alice".into()));
    let time = first.time_unix_nano;
    let second = file.line("c", Stream::Stderr, "\tat a.B.c(B.java:1)");
    let out = join_all(vec![first, second]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].time_unix_nano, time);
    assert_eq!(out[0].level, Some(crate::event::Level::Error));
    assert_eq!(out[0].attribute("user"), Some("alice"));
}

/// Traces of two containers writing at the same time join separately.
#[test]
fn containers_join_separately() {
    let mut file = FakeFile::new("x.log");
    let java = read_corpus("java_exc.txt");
    let python = read_corpus("python_exc.txt");
    let mut input = Vec::new();
    let mut a = java.lines();
    let mut b = python.lines();
    loop {
        let (x, y) = (a.next(), b.next());
        if x.is_none() && y.is_none() {
            break;
        }
        if let Some(x) = x {
            input.push(file.line("java", Stream::Stderr, x));
        }
        if let Some(y) = y {
            input.push(file.line("python", Stream::Stderr, y));
        }
    }
    let out = join_all(input);
    assert_eq!(out.len(), 2);
    assert!(out.iter().any(|e| e.message == java.trim_end()));
    assert!(out.iter().any(|e| e.message == python.trim_end()));
}
