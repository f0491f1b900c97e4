//! Multi-line joining of stack traces, the first processor of the log pipeline
//! (tail → parse → **join** → crash → redact → batch).
//!
//! A [`Joiner`] keeps one open trace per (container, stream), so a trace written to stderr
//! still joins when ordinary stdout lines of the same CRI file arrive between its lines. Which
//! line starts a trace and which lines continue it is decided by the per-language state machine
//! in `rules` (Java and other JVM languages, Python, Go, Node/V8 and browser JavaScript, Ruby,
//! PHP, C#, Dart, Rust).
//!
//! An open trace ends when a line does not fit it (that line is then read as a fresh line), when
//! its end marker is seen (Python's chained tracebacks aside, e.g. PHP's `thrown in`, Rust's
//! `note: run with RUST_BACKTRACE`), when it reaches `max_lines`, when no line came for
//! `timeout` ([`Joiner::flush_expired`]) or at shutdown ([`Joiner::flush_all`]). Lines the
//! machine was unsure of are joined only once a later line confirms the trace; otherwise they
//! leave as events of their own, so unrelated lines are never glued to a trace.
//!
//! The joined event keeps the time, level, attributes and `origin.start` of its first line and
//! the `origin.end` of its last; [`Joiner::pending_start`] tells the log source how far it may
//! checkpoint each stream while lines are held. Each (container, stream) is joined on its own
//! lines only, so reading one stream again from the start of its held trace gives the same
//! events, whatever the other stream did in between.

#[cfg(test)]
pub(crate) mod jvm_tests;
pub(crate) mod rules;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::{LogEvent, Stream};
use rules::{State, Step};

/// Most lines held tentatively in a row before the trace is given up on: enough for the
/// longest JVM exception messages seen in real traces (a test's expected-versus-actual help
/// text of 41 lines), while a lone exception-like line holds back at most this many ordinary
/// lines, and only until the next line that is a log record.
const MAX_TENTATIVE_LINES: usize = 64;

/// Default bound of one joined event, in lines: a JVM prints at most 1,024 frames of a
/// throwable (`-XX:MaxJavaStackTraceDepth`), so a `StackOverflowError` with its header and a
/// cause or two still makes one event.
pub const DEFAULT_MAX_LINES: usize = 1100;

/// Default time after which an open trace with no new line is flushed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// A trace being joined.
#[derive(Debug)]
struct OpenTrace {
    /// The confirmed lines, already joined.
    joined: LogEvent,
    /// Lines that join only if a later line confirms the trace.
    tentative: Vec<LogEvent>,
    state: State,
    last_line_at: Instant,
}

impl OpenTrace {
    fn append(&mut self, event: LogEvent) {
        let joined = &mut self.joined;
        joined.message.push('\n');
        joined.message.push_str(&event.message);
        joined.lines = joined.lines.saturating_add(event.lines);
        if let (Some(origin), Some(next)) = (joined.origin.as_mut(), event.origin.as_ref()) {
            origin.end = origin.end.max(next.end);
        }
    }

    fn confirm(&mut self) {
        for event in std::mem::take(&mut self.tentative) {
            self.append(event);
        }
    }

    fn line_count(&self) -> usize {
        self.joined.lines as usize + self.tentative.len()
    }

    fn file(&self) -> Option<&Arc<str>> {
        self.joined.origin.as_ref().map(|o| &o.file)
    }
}

type StreamKey = (Arc<str>, Stream);

/// Joins the lines of a stack trace into one event, per (container, stream).
#[derive(Debug)]
pub struct Joiner {
    max_lines: usize,
    timeout: Duration,
    open: HashMap<StreamKey, OpenTrace>,
}

impl Default for Joiner {
    fn default() -> Self {
        Joiner::new(DEFAULT_MAX_LINES, DEFAULT_TIMEOUT)
    }
}

impl Joiner {
    /// `max_lines` bounds one joined event; `timeout` flushes an open trace with no new line.
    pub fn new(max_lines: usize, timeout: Duration) -> Self {
        Joiner {
            max_lines: max_lines.max(2),
            timeout,
            open: HashMap::new(),
        }
    }

    /// Feeds one line; appends to `out` the events that are complete.
    pub fn push(&mut self, event: LogEvent, now: Instant, out: &mut Vec<LogEvent>) {
        // The common case, an ordinary line with no trace open, passes straight through.
        if self.open.is_empty()
            && (event.message.contains('\n') || rules::start(&event.message).is_none())
        {
            out.push(event);
            return;
        }
        let key = (event.container.clone(), event.stream);
        self.feed(&key, event, now, out);
    }

    /// Appends to `out` the held events whose last line is older than the timeout.
    pub fn flush_expired(&mut self, now: Instant, out: &mut Vec<LogEvent>) {
        let expired: Vec<StreamKey> = self
            .open
            .iter()
            .filter(|(_, open)| now.saturating_duration_since(open.last_line_at) >= self.timeout)
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            self.finish(&key, now, out);
        }
    }

    /// Appends every held event to `out`.
    pub fn flush_all(&mut self, out: &mut Vec<LogEvent>) {
        let keys: Vec<StreamKey> = self.open.keys().cloned().collect();
        let now = Instant::now();
        for key in keys {
            self.finish(&key, now, out);
        }
    }

    /// Smallest `origin.start` among events of `stream` still held for `file`: the log source
    /// must not checkpoint that stream past it.
    pub fn pending_start(&self, file: &str, stream: Stream) -> Option<u64> {
        self.open
            .values()
            .filter(|open| open.joined.stream == stream)
            .filter_map(|open| open.joined.origin.as_ref())
            .filter(|origin| &*origin.file == file)
            .map(|origin| origin.start)
            .min()
    }

    /// Number of (container, stream) pairs with a trace open.
    pub fn open_traces(&self) -> usize {
        self.open.len()
    }

    /// Runs `event`, and the lines a broken trace hands back, through the machine of `key`.
    fn feed(&mut self, key: &StreamKey, event: LogEvent, now: Instant, out: &mut Vec<LogEvent>) {
        let mut queue = std::collections::VecDeque::from([event]);
        while let Some(event) = queue.pop_front() {
            let Some(open) = self.open.get_mut(key) else {
                self.open_or_pass(key, event, now, out);
                continue;
            };
            let same_file = match (open.file(), event.origin.as_ref()) {
                (Some(file), Some(origin)) => *file == origin.file,
                (None, None) => true,
                _ => false,
            };
            // A record that already spans lines (a JSON field with newlines) is whole as it is.
            let step = if !same_file || event.message.contains('\n') {
                Step::Break
            } else {
                rules::step(open.state, &event.message)
            };
            let step = match step {
                Step::Maybe(_)
                    if open.tentative.len() >= MAX_TENTATIVE_LINES
                        || open.line_count() + 1 >= self.max_lines =>
                {
                    Step::Break
                }
                other => other,
            };
            open.last_line_at = now;
            match step {
                Step::Continue(state) => {
                    open.confirm();
                    open.append(event);
                    open.state = state;
                    if open.joined.lines as usize >= self.max_lines {
                        if let Some(open) = self.open.remove(key) {
                            out.push(open.joined);
                        }
                    }
                }
                Step::Maybe(state) => {
                    open.tentative.push(event);
                    open.state = state;
                }
                Step::End => {
                    open.confirm();
                    open.append(event);
                    if let Some(open) = self.open.remove(key) {
                        out.push(open.joined);
                    }
                }
                Step::Break => {
                    if let Some(open) = self.open.remove(key) {
                        out.push(open.joined);
                        queue.push_front(event);
                        for line in open.tentative.into_iter().rev() {
                            queue.push_front(line);
                        }
                    }
                }
            }
        }
    }

    /// With no trace open: opens one if `event` starts a trace, else passes it on.
    fn open_or_pass(
        &mut self,
        key: &StreamKey,
        event: LogEvent,
        now: Instant,
        out: &mut Vec<LogEvent>,
    ) {
        let state = if event.message.contains('\n') {
            None
        } else {
            rules::start(&event.message)
        };
        match state {
            Some(state) => {
                self.open.insert(
                    key.clone(),
                    OpenTrace {
                        joined: event,
                        tentative: Vec::new(),
                        state,
                        last_line_at: now,
                    },
                );
            }
            None => out.push(event),
        }
    }

    /// Ends the trace open for `key`; its unconfirmed lines are read again as fresh lines,
    /// and whatever they open is ended too.
    fn finish(&mut self, key: &StreamKey, now: Instant, out: &mut Vec<LogEvent>) {
        while let Some(open) = self.open.remove(key) {
            out.push(open.joined);
            for line in open.tentative {
                self.feed(key, line, now, out);
            }
        }
    }
}
