//! The delivery loop of one sink: drains the sink's disk [`buffer`](crate::buffer) into the
//! sink, retrying with backoff, and acknowledges what the backend accepted.
//!
//! Batching by size and time: the loop takes the records the buffer has (at most
//! [`DriverSettings::batch_records`] and [`DriverSettings::batch_bytes`]); when that is short of
//! a full batch it waits [`DriverSettings::linger`] for more, so that a steady trickle of small
//! requests leaves as a few large ones (fewer requests, acks and wake-ups).
//!
//! Per batch of buffer records: prepare them — decode them ([`Batch::decode`]) for
//! [`Sink::send`], or, for a sink that sends records as they are (OTLP,
//! [`Sink::sends_encoded`]), check their framing for [`Sink::send_encoded`]; a record that does
//! not decode is dropped as `corrupt_record` and acked — → send →
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

use futures::FutureExt;
use tokio::sync::watch;

use super::otlp::EncodedBatches;
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
    /// How long a batch short of `batch_records` and `batch_bytes` waits for more records
    /// before it is sent. Default 200 ms (the OpenTelemetry Collector's batch timeout); zero
    /// sends at once.
    pub linger: Duration,
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
            linger: Duration::from_millis(200),
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
    if sink.sends_encoded() {
        deliver_prepared(
            component,
            &mut reader,
            &settings,
            &mut shutdown,
            prepare_encoded,
            move |batches: Arc<EncodedBatches>| {
                let sink = sink.clone();
                async move { sink.send_encoded(&batches).await }
            },
        )
        .await
    } else {
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
}

/// The delivery loop with decoded batches, over any `send` function (the sink's, or a fake in
/// tests).
pub(crate) async fn deliver<S, F>(
    component: &str,
    reader: &mut BufferReader,
    settings: &DriverSettings,
    shutdown: &mut watch::Receiver<bool>,
    send: S,
) -> Stopped
where
    S: FnMut(Arc<[Batch]>) -> F,
    F: Future<Output = Result<(), SendError>>,
{
    deliver_prepared(component, reader, settings, shutdown, prepare_decoded, send).await
}

/// What one send carries, prepared once from buffer records and reused by every retry.
pub(crate) struct Prepared<P: ?Sized> {
    payload: Arc<P>,
    /// Items (spans, data points, log records, samples) in it.
    events: u64,
    /// Bytes of the records it came from.
    bytes: u64,
}

/// The delivery loop: `prepare` turns buffer records into what `send` takes (`None` when
/// none of them can be sent; it counts those it drops).
async fn deliver_prepared<P, S, F>(
    component: &str,
    reader: &mut BufferReader,
    settings: &DriverSettings,
    shutdown: &mut watch::Receiver<bool>,
    prepare: fn(&str, Vec<Record>) -> Option<Prepared<P>>,
    mut send: S,
) -> Stopped
where
    P: ?Sized,
    S: FnMut(Arc<P>) -> F,
    F: Future<Output = Result<(), SendError>>,
{
    let mut delays = settings.backoff.delays();
    // Records read for the next batch that did not fit in the last one.
    let mut carried = Vec::new();
    loop {
        if shutdown_requested(shutdown) {
            return Stopped::Shutdown;
        }
        let records = if carried.is_empty() {
            let next = tokio::select! {
                biased;
                () = wait_for_shutdown(shutdown) => return Stopped::Shutdown,
                next = reader.next_batch(settings.batch_records, settings.batch_bytes) => next,
            };
            match next {
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
            }
        } else {
            std::mem::take(&mut carried)
        };
        let Some(records) = top_up(reader, records, &mut carried, settings, shutdown).await else {
            return Stopped::Shutdown; // not acked: delivered after the next start
        };
        let Some(through) = records.last().map(|r| r.id) else {
            continue;
        };
        let Some(Prepared {
            payload,
            events,
            bytes,
        }) = prepare(component, records)
        else {
            ack(component, reader, through);
            continue;
        };
        loop {
            let Some((result, stopping)) =
                attempt(&mut send, &payload, shutdown, settings.shutdown_grace).await
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

/// Makes a batch short of `batch_records` and `batch_bytes` wait `linger` and adds the records
/// stored meanwhile; a record that would overfill the batch goes to `carried`, for the next
/// one. `None` when shutdown came while waiting.
async fn top_up(
    reader: &mut BufferReader,
    mut records: Vec<Record>,
    carried: &mut Vec<Record>,
    settings: &DriverSettings,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Vec<Record>> {
    let mut held: usize = records.iter().map(|r| r.bytes.len()).sum();
    if settings.linger.is_zero()
        || records.len() >= settings.batch_records
        || held >= settings.batch_bytes
    {
        return Some(records);
    }
    if sleep_or_shutdown(settings.linger, shutdown).await {
        return None;
    }
    // Taking what is there now never waits; an error shows again at the next read.
    let more = reader
        .next_batch(
            settings.batch_records - records.len(),
            settings.batch_bytes - held,
        )
        .now_or_never();
    if let Some(Ok(more)) = more {
        for record in more {
            if carried.is_empty() && held + record.bytes.len() <= settings.batch_bytes {
                held += record.bytes.len();
                records.push(record);
            } else {
                carried.push(record);
            }
        }
    }
    Some(records)
}

/// One send. `None` when shutdown came and the send did not finish within `grace`; otherwise
/// its result and whether shutdown was requested meanwhile.
async fn attempt<P, S, F>(
    send: &mut S,
    payload: &Arc<P>,
    shutdown: &mut watch::Receiver<bool>,
    grace: Duration,
) -> Option<(Result<(), SendError>, bool)>
where
    P: ?Sized,
    S: FnMut(Arc<P>) -> F,
    F: Future<Output = Result<(), SendError>>,
{
    let sending = send(payload.clone());
    tokio::pin!(sending);
    tokio::select! {
        biased;
        result = &mut sending => Some((result, false)),
        () = wait_for_shutdown(shutdown) => {
            tokio::time::timeout(grace, sending).await.ok().map(|result| (result, true))
        }
    }
}

/// Decodes buffer records; the ones that are not batches are counted as dropped.
fn prepare_decoded(component: &str, records: Vec<Record>) -> Option<Prepared<[Batch]>> {
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
        report_corrupt(component, undecodable, &e);
    }
    if batches.is_empty() {
        return None;
    }
    Some(Prepared {
        events: batches.iter().map(|b| b.item_count() as u64).sum(),
        payload: batches.into(),
        bytes,
    })
}

/// Takes buffer records as encoded export requests; the ones that do not frame are counted as
/// dropped.
fn prepare_encoded(component: &str, records: Vec<Record>) -> Option<Prepared<EncodedBatches>> {
    let (batches, errors) = EncodedBatches::from_records(records);
    if let Some(e) = errors.first() {
        report_corrupt(component, errors.len() as u64, e);
    }
    if batches.is_empty() {
        return None;
    }
    Some(Prepared {
        events: batches.items,
        bytes: batches.record_bytes,
        payload: Arc::new(batches),
    })
}

fn report_corrupt(component: &str, records: u64, first_error: &dyn std::error::Error) {
    emit(InternalEvent::Dropped {
        component,
        events: records,
        reason: "corrupt_record",
    });
    emit(InternalEvent::Error {
        component,
        error: "CorruptRecord",
        message: &format!("buffer record is not a batch: {first_error}"),
    });
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
