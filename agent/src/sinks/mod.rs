//! Sinks: where data leaves the agent. Each sink drains its own disk buffer, sends with retry
//! and acknowledges what the backend accepted.

pub mod driver;
pub mod loki;
pub mod otlp;
pub mod remote_write;
pub mod splunk_hec;

use std::time::Duration;

use crate::batch::{Batch, Signal};

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying (connection refused, timeout, 429, 5xx); `retry_after` from the backend.
    #[error("{reason}")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (400, 401, 403, 404, 413, payload the backend refuses).
    #[error("{reason}")]
    Permanent { reason: String },
}

/// A configured exporter. STUB — owned by the sinks helper.
#[derive(Debug)]
pub enum Sink {}

impl Sink {
    /// Component name (`sink_otlp`, `sink_remote_write`, `sink_loki`, `sink_splunk_hec`).
    pub fn name(&self) -> &'static str {
        match *self {}
    }

    /// Signals this sink takes.
    pub fn signals(&self) -> &'static [Signal] {
        match *self {}
    }

    /// Sends batches (all of signals this sink takes) as few requests as the protocol allows.
    pub async fn send(&self, _batches: &[Batch]) -> Result<(), SendError> {
        match *self {}
    }
}
