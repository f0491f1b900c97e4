//! STUB — owned by the multiline/crash helper. Interface contract below; replace the bodies.
//!
//! Multi-line joining of stack traces.

use std::time::{Duration, Instant};

use crate::event::LogEvent;

/// Joins the lines of a stack trace into one event, per (container, stream).
#[derive(Debug, Default)]
pub struct Joiner {}

impl Joiner {
    /// `max_lines` bounds one joined event; `timeout` flushes an open trace with no new line.
    pub fn new(_max_lines: usize, _timeout: Duration) -> Self {
        Joiner {}
    }

    /// Feeds one line; appends to `out` the events that are complete.
    pub fn push(&mut self, event: LogEvent, _now: Instant, out: &mut Vec<LogEvent>) {
        out.push(event);
    }

    /// Appends to `out` the held events whose last line is older than the timeout.
    pub fn flush_expired(&mut self, _now: Instant, _out: &mut Vec<LogEvent>) {}

    /// Appends every held event to `out`.
    pub fn flush_all(&mut self, _out: &mut Vec<LogEvent>) {}

    /// Smallest `origin.start` among events still held for `file`: the log source must not
    /// checkpoint past it.
    pub fn pending_start(&self, _file: &str) -> Option<u64> {
        None
    }
}
