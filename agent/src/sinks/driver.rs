//! The delivery loop of one sink: drains the sink's disk [`buffer`](crate::buffer) into the
//! sink, retrying with backoff, and acknowledges what the backend accepted.
//!
//! Per batch of buffer records: decode them ([`Batch::decode`]; a record that does not decode is
//! dropped as `corrupt_record` and acked) → [`Sink::send`] →
//! - `Ok`: ack, emit `Sent`, reset the backoff;
//! - [`SendError::Retryable`]: emit `Retried`, wait `max(backoff delay, Retry-After)` and send
//!   the same batches again — for as long as it takes (the buffer holds the data meanwhile);
//! - [`SendError::Permanent`]: emit `Dropped{reason: "rejected"}` and an `Error`, and ack, so one
//!   batch the backend refuses never blocks the ones behind it.
//!
//! On shutdown the loop takes no new batch and stops any backoff wait at once; a send in flight
//! gets [`DriverSettings::shutdown_grace`] to finish (and is acked if it succeeds), otherwise it
//! is abandoned. Whatever is not acked stays in the buffer and is sent after the next start
//! (at-least-once delivery).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::retry::Backoff;
use super::{SendError, Sink};
use crate::batch::Batch;
use crate::buffer::{BufferError, BufferReader, Record, RecordId};
use crate::telemetry::{emit, InternalEvent};

/// How a sink's delivery loop batches, retries and stops.
#[derive(Clone, Debug)]
pub struct DriverSettings {
    /// Delays between retries of a failed send.
    pub backoff: Backoff,
    /// Most buffer records (each one [`Batch`]) handed to one `send`. Default 64.
    pub batch_records: usize,
    /// Most record bytes handed to one `send` (a single larger record still goes alone).
    /// Default 4 MiB.
    pub batch_bytes: usize,
    /// How long a send in flight at shutdown may still take. Default 5 s.
    pub shutdown_grace: Duration,
}

impl DriverSettings {
    /// Default batching and shutdown grace with the given backoff.
    pub fn new(backoff: Backoff) -> Self {
        DriverSettings {
            backoff,
            batch_records: 64,
            batch_bytes: 4 << 20,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl Default for DriverSettings {
    fn default() -> Self {
        DriverSettings::new(Backoff::default())
    }
}

/// Why a delivery loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Shutdown was requested (or its sender dropped).
    Shutdown,
    /// Every writer of the buffer is gone and everything in it was delivered or dropped.
    Closed,
}

/// Delivers `reader`'s records to `sink` until `shutdown` turns `true` (or its sender is
/// dropped) or the buffer is closed, with default batching and shutdown grace.
pub async fn run(
    sink: Sink,
    reader: BufferReader,
    backoff: Backoff,
    shutdown: watch::Receiver<bool>,
) -> Stopped {
    run_with(sink, reader, DriverSettings::new(backoff), shutdown).await
}

/// [`run`] with explicit settings.
pub async fn run_with(
    sink: Sink,
    mut reader: BufferReader,
    settings: DriverSettings,
    mut shutdown: watch::Receiver<bool>,
) -> Stopped {
    let sink = Arc::new(sink);
    let component = sink.name();
    deliver(
        component,
        &mut reader,
        &settings,
        &mut shutdown,
        move |batches: Arc<[Batch]>| {
            let sink = sink.clone();
            async move { sink.send(&batches).await }
        },
    )
    .await
}

/// The delivery loop, over any `send` function (the sink's, or a fake in tests).
pub(crate) async fn deliver<S, F>(
    component: &str,
    reader: &mut BufferReader,
    settings: &DriverSettings,
    shutdown: &mut watch::Receiver<bool>,
    mut send: S,
) -> Stopped
where
    S: FnMut(Arc<[Batch]>) -> F,
    F: Future<Output = Result<(), SendError>>,
{
    let mut delays = settings.backoff.delays();
    loop {
        if shutdown_requested(shutdown) {
            return Stopped::Shutdown;
        }
        let next = tokio::select! {
            biased;
            () = wait_for_shutdown(shutdown) => return Stopped::Shutdown,
            next = reader.next_batch(settings.batch_records, settings.batch_bytes) => next,
        };
        let records = match next {
            Ok(records) => records,
            Err(BufferError::Closed { .. }) => return Stopped::Closed,
            Err(e) => {
                emit(InternalEvent::Error {
                    component,
                    error: e.category(),
                    message: &e.to_string(),
                });
                if sleep_or_shutdown(delays.next_delay(None), shutdown).await {
                    return Stopped::Shutdown;
                }
                continue;
            }
        };
        let Some(through) = records.last().map(|r| r.id) else {
            continue;
        };
        let (batches, bytes) = decode_records(component, records);
        if batches.is_empty() {
            ack(component, reader, through);
            continue;
        }
        let events: u64 = batches.iter().map(|b| b.item_count() as u64).sum();
        let batches: Arc<[Batch]> = batches.into();
        loop {
            let Some((result, stopping)) =
                attempt(&mut send, &batches, shutdown, settings.shutdown_grace).await
            else {
                return Stopped::Shutdown; // abandoned in flight; redelivered after restart
            };
            match result {
                Ok(()) => {
                    ack(component, reader, through);
                    emit(InternalEvent::Sent {
                        component,
                        events,
                        bytes,
                    });
                    delays.reset();
                }
                Err(SendError::Permanent { reason }) => {
                    emit(InternalEvent::Dropped {
                        component,
                        events,
                        reason: "rejected",
                    });
                    emit(InternalEvent::Error {
                        component,
                        error: "Rejected",
                        message: &reason,
                    });
                    ack(component, reader, through);
                    delays.reset();
                }
                Err(SendError::Retryable {
                    reason,
                    retry_after,
                }) => {
                    if stopping {
                        return Stopped::Shutdown;
                    }
                    let after = delays.next_delay(retry_after);
                    emit(InternalEvent::Retried {
                        component,
                        reason: &reason,
                        after,
                    });
                    if sleep_or_shutdown(after, shutdown).await {
                        return Stopped::Shutdown;
                    }
                    continue;
                }
            }
            if stopping {
                return Stopped::Shutdown;
            }
            break;
        }
    }
}

/// One send. `None` when shutdown came and the send did not finish within `grace`; otherwise
/// its result and whether shutdown was requested meanwhile.
async fn attempt<S, F>(
    send: &mut S,
    batches: &Arc<[Batch]>,
    shutdown: &mut watch::Receiver<bool>,
    grace: Duration,
) -> Option<(Result<(), SendError>, bool)>
where
    S: FnMut(Arc<[Batch]>) -> F,
    F: Future<Output = Result<(), SendError>>,
{
    let sending = send(batches.clone());
    tokio::pin!(sending);
    tokio::select! {
        biased;
        result = &mut sending => Some((result, false)),
        () = wait_for_shutdown(shutdown) => {
            tokio::time::timeout(grace, sending).await.ok().map(|result| (result, true))
        }
    }
}

/// Decodes buffer records; the ones that are not batches are counted as dropped. Returns the
/// batches and their encoded size.
fn decode_records(component: &str, records: Vec<Record>) -> (Vec<Batch>, u64) {
    let mut batches = Vec::with_capacity(records.len());
    let mut bytes = 0u64;
    let mut undecodable = 0u64;
    let mut first_error = None;
    for record in records {
        match Batch::decode(&record.bytes) {
            Ok(batch) => {
                bytes += record.bytes.len() as u64;
                batches.push(batch);
            }
            Err(e) => {
                undecodable += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        emit(InternalEvent::Dropped {
            component,
            events: undecodable,
            reason: "corrupt_record",
        });
        emit(InternalEvent::Error {
            component,
            error: "CorruptRecord",
            message: &format!("buffer record is not a batch: {e}"),
        });
    }
    (batches, bytes)
}

/// Acks delivered records; a failure to persist the ack only means redelivery after a restart,
/// so it is reported and delivery goes on.
fn ack(component: &str, reader: &mut BufferReader, through: RecordId) {
    if let Err(e) = reader.ack(through) {
        emit(InternalEvent::Error {
            component,
            error: e.category(),
            message: &e.to_string(),
        });
    }
}

fn shutdown_requested(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// Resolves once shutdown is requested. A dropped sender means the agent is going away, so it
/// counts as a request.
async fn wait_for_shutdown(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&stop| stop).await;
}

/// Sleeps for `delay`; `true` when shutdown cut it short.
async fn sleep_or_shutdown(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        biased;
        () = wait_for_shutdown(shutdown) => true,
        () = tokio::time::sleep(delay) => false,
    }
}

#[cfg(test)]
mod tests;
