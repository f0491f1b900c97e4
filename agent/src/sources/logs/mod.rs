//! The pod log source and the log pipeline: tail → parse → join → crash → redact → batch →
//! router → checkpoint.
//!
//! Layers, each in its own file: `discover` (which files), `tail` (reading a file in chunks
//! and cutting lines), `cri` (the runtime's line format and its `P`/`F` fragments), `parse`
//! (JSON, logfmt and text messages), `checkpoint` (delivered offsets), [`LogSource`] (all of
//! it together, driven by polls) and [`run`] (batching, sending, checkpointing).
//!
//! Guarantees:
//! - **No line lost, none repeated across restarts.** A file's checkpoint is the start of the
//!   first line whose event is not yet stored in every sink's buffer — held fragments, events
//!   still open in the multi-line joiner and events batched but not sent all keep it back — and
//!   it is written right after the router has stored a batch, with no await in between. A
//!   restarted agent resumes exactly there. Each stream of a runtime's file has its own
//!   offset as well, so one stream's held lines do not make the other's delivered lines be
//!   sent again. Rename rotation loses nothing; copy-truncate rotation loses nothing either when
//!   the copy is next to the file under a rotated name (`app.log.1`, `app.log-20240501`): the
//!   lines the truncation removed before they were read are read from the copy. (Lines written
//!   between the copy and the truncation are in neither file: copy-truncate's own race.)
//! - **Back-pressure, not memory.** While the router waits for room in a `block` buffer the
//!   source reads nothing; lines wait in the files. Memory is bounded in bytes: by the read
//!   chunk, the longest line (256 KiB; longer ones are cut), what one poll reads
//!   (`READ_BUDGET_PER_FILE` per file; batches are taken before the next poll) and one batch,
//!   which goes into the buffer as one record encoded straight from the events.
//!
//! Files are read when a change notification (inotify; see `notify_watch`) says
//! their directory changed, and polled every [`POLL_INTERVAL`] besides: the pod log directory
//! is a hostPath mount over the node's `/var/log/pods`, where inotify events can be missed
//! across overlay and bind mounts, while a poll of a handful of files costs a few `fstat`
//! calls. A poll that finds more to read polls again at once, so throughput is not bound by
//! the interval, and a truncation is noticed on the write that follows it. Notifications that
//! come in a steady stream are gathered for [`WAKE_GATHER`] between polls.

mod checkpoint;
mod cri;
mod discover;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzzing;
mod notify_watch;
mod parse;
mod source;
mod tail;

#[cfg(test)]
mod restart_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use vigil_crds::agent_config::LogsConfig;

use crate::batch::Signal;
use crate::buffer::BufferError;
use crate::event::LogEvent;
use crate::identity::Identity;
use crate::processors::crash::CrashDetector;
use crate::processors::enrich;
use crate::processors::redact::Redactor;
use crate::router::Router;
use crate::telemetry::{emit, InternalEvent};

pub use discover::AGENT_CONTAINER;
pub use source::{
    LogSource, PollOutcome, FILE_PATH_ATTRIBUTE, GONE_GRACE, MULTILINE_MAX_LINES,
    MULTILINE_TIMEOUT, READ_BUDGET_PER_FILE, RESCAN_INTERVAL,
};

/// How often files are looked at when they had nothing new.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Shortest time between two polls woken by change notifications: an application writing
/// steadily appends in many small writes, each one notified, and reading them together costs
/// one round of file checks, reads and checkpoint per gathering instead of one per write. A
/// write after a quiet spell is read at once; under a steady stream lines wait at most this
/// long more.
pub const WAKE_GATHER: Duration = Duration::from_millis(50);
/// Most events in one batch.
pub const BATCH_MAX_EVENTS: usize = 1000;
/// Most message and attribute bytes in one batch (a batch may exceed it by one event).
pub const BATCH_MAX_BYTES: usize = 1024 * 1024;
/// Longest an event waits in a batch that is not full.
pub const BATCH_MAX_AGE: Duration = Duration::from_secs(1);
/// Longest wait between attempts to store a batch the buffer refused.
const SEND_RETRY_MAX: Duration = Duration::from_secs(5);

/// Everything the log pipeline needs besides its config.
#[derive(Clone, Debug)]
pub struct LogPipeline {
    pub identity: Identity,
    pub crashes: Arc<CrashDetector>,
    pub redactor: Arc<Redactor>,
    pub router: Router,
}

/// Why the log source stopped.
#[derive(Debug, thiserror::Error)]
pub enum LogSourceError {
    #[error("logs: {message}")]
    Io {
        message: String,
        #[source]
        source: std::io::Error,
    },
    #[error("logs: a batch of {events} events could not be stored in the buffer before shutdown")]
    Buffer {
        events: usize,
        #[source]
        source: BufferError,
    },
}

/// Bytes an event adds to a batch, for the batch size bound.
fn event_bytes(event: &LogEvent) -> usize {
    event.message.len()
        + event
            .attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

/// Events waiting to be sent, oldest first.
#[derive(Debug, Default)]
struct Pending {
    /// A batch is encoded from the front of it in place and removed once stored: the events
    /// are not moved into a batch of their own first.
    events: Vec<LogEvent>,
    bytes: usize,
    since: Option<Instant>,
}

impl Pending {
    fn add(&mut self, events: &mut Vec<LogEvent>, now: Instant) {
        if events.is_empty() {
            return;
        }
        self.bytes += events.iter().map(event_bytes).sum::<usize>();
        self.events.append(events);
        self.since.get_or_insert(now);
    }

    /// Whether a batch should go now: a full one, or an old one.
    fn ready(&self, now: Instant) -> bool {
        self.events.len() >= BATCH_MAX_EVENTS
            || self.bytes >= BATCH_MAX_BYTES
            || self
                .since
                .is_some_and(|since| now.duration_since(since) >= BATCH_MAX_AGE)
    }

    /// How many of the oldest events make one batch.
    fn batch_len(&self) -> usize {
        let mut count = 0;
        let mut bytes = 0;
        for event in &self.events {
            if count == BATCH_MAX_EVENTS || (count > 0 && bytes >= BATCH_MAX_BYTES) {
                break;
            }
            count += 1;
            bytes += event_bytes(event);
        }
        count
    }

    /// Removes the oldest `count` events (a batch now stored).
    fn remove(&mut self, count: usize, now: Instant) {
        self.bytes -= self.events[..count].iter().map(event_bytes).sum::<usize>();
        self.events.drain(..count);
        self.since = (!self.events.is_empty()).then_some(now);
    }
}

/// Tails until `shutdown` turns true, then flushes what it holds and checkpoints.
pub async fn run(
    config: LogsConfig,
    pipeline: LogPipeline,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LogSourceError> {
    let mut source = LogSource::open(&config, &pipeline)?;
    let mut watcher = notify_watch::FileWatch::start(source.targets());
    let mut pending = Pending::default();
    let mut polled = Vec::new();
    let mut woken = false;
    let mut last_poll = tokio::time::Instant::now();
    loop {
        if *shutdown.borrow() {
            break;
        }
        if std::mem::take(&mut woken) {
            let gathered = last_poll + WAKE_GATHER;
            if gathered > tokio::time::Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(gathered) => {}
                    changed = shutdown.changed() => {
                        if changed.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        let now = Instant::now();
        last_poll = tokio::time::Instant::now();
        if watcher.take().rescan {
            source.rescan();
        }
        let outcome = source.poll(now, &mut polled);
        pending.add(&mut polled, now);
        while !pending.events.is_empty() && pending.ready(now) {
            let count = pending.batch_len();
            deliver(&pipeline, &pending.events[..count], &mut shutdown).await?;
            pending.remove(count, now);
            source.checkpoint(&pending.events);
        }
        if outcome.more {
            tokio::task::yield_now().await;
            continue;
        }
        source.checkpoint(&pending.events);
        woken = tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => false,
            changes = watcher.changed() => {
                if changes.rescan {
                    source.rescan();
                }
                true
            }
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
                false
            }
        };
    }
    drop(watcher);
    source.flush_all(&mut polled);
    pending.add(&mut polled, Instant::now());
    while !pending.events.is_empty() {
        let count = pending.batch_len();
        deliver(&pipeline, &pending.events[..count], &mut shutdown).await?;
        pending.remove(count, Instant::now());
        source.checkpoint(&pending.events);
    }
    source.checkpoint(&[]);
    Ok(())
}

/// Shapes events into one OTLP logs batch and stores it through the router, waiting while a
/// `block` buffer is full. A refused batch is retried with backoff until shutdown.
async fn deliver(
    pipeline: &LogPipeline,
    events: &[LogEvent],
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), LogSourceError> {
    let count = events.len();
    // Written straight into the buffer record; a retry encodes it again.
    let mut record = Some(enrich::logs_record(&pipeline.identity, events));
    let mut wait = Duration::from_millis(100);
    loop {
        let attempt = record
            .take()
            .unwrap_or_else(|| enrich::logs_record(&pipeline.identity, events));
        let sent = pipeline
            .router
            .send_record(Signal::Logs, count as u64, attempt)
            .await;
        let error = match sent {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        emit(InternalEvent::Error {
            component: source::COMPONENT,
            error: "LogBatchStore",
            message: &error.to_string(),
        });
        if *shutdown.borrow() {
            return Err(LogSourceError::Buffer {
                events: count,
                source: error,
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        wait = (wait * 2).min(SEND_RETRY_MAX);
    }
}
