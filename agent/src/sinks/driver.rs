//! The delivery loop of one sink: drains the sink's disk [`buffer`](crate::buffer) into the
//! sink, retrying with backoff, and acknowledges what the backend accepted.
//!
//! Batching by size and time: a batch takes the records the buffer has, up to
//! [`DriverSettings::batch_records`] and [`DriverSettings::batch_bytes`]. A **full** batch (by
//! count, or because the next record does not fit in its bytes) is sent at once. A batch short
//! of full is sent as soon as it fills up, or [`DriverSettings::linger`] after its first record
//! was read when nothing more arrives — so with a backlog every request leaves as soon as it is
//! built, and a steady trickle of small records still leaves as a few large requests.
//!
//! Several sends at once: up to [`DriverSettings::max_in_flight`] batches may be sent and not
//! yet answered, so that building and sending the next request overlaps the backend's answer
//! to the previous one. Batches are cut and sent in buffer order, but answers may come back in
//! any order; the buffer is acknowledged only up to the last batch before the oldest one not
//! yet answered, so a restart sends again what was unanswered (and possibly some answered
//! batches after it), never skips it: at-least-once delivery as the buffer guarantees it.
//!
//! Per batch of buffer records: prepare them — decode them ([`Batch::decode`]) for
//! [`Sink::send`], or, for a sink that sends records as they are (OTLP,
//! [`Sink::sends_encoded`]), check their framing for [`Sink::send_encoded`]; a record that does
//! not decode is dropped as `corrupt_record` and acked — → send →
//! - `Ok`: emit `Sent`, reset the backoff, ack once every batch before it is answered too;
//! - [`SendError::Retryable`]: emit `Retried`, wait `max(backoff delay, Retry-After)` and send
//!   the same batch again — for as long as it takes (the buffer holds the data meanwhile). While
//!   a batch waits to be retried no new batch is started, so a failing backend is not sent more;
//! - [`SendError::Permanent`]: emit `Dropped{reason: "rejected"}` and an `Error`, and ack (in
//!   order, as for `Ok`), so one batch the backend refuses never blocks the ones behind it.
//!
//! On shutdown the loop takes no new batch and stops every backoff wait at once; the sends in
//! flight get [`DriverSettings::shutdown_grace`] to finish (those that succeed are acked, up to
//! the first that does not), the others are abandoned. Whatever is not acked stays in the
//! buffer and is sent after the next start (at-least-once delivery).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::otlp::EncodedBatches;
use super::retry::{Backoff, RetryDelays};
use super::{SendError, Sink};
use crate::batch::Batch;
use crate::buffer::{BufferError, BufferReader, Record, RecordId};
use crate::telemetry::{emit, InternalEvent};

use vigil_crds::agent_config::DEFAULT_MAX_IN_FLIGHT;

/// How a sink's delivery loop batches, retries and stops.
#[derive(Clone, Debug)]
pub struct DriverSettings {
    /// Delays between retries of a failed send.
    pub backoff: Backoff,
    /// Most buffer records (each one [`Batch`]) handed to one `send`. Default 64.
    pub batch_records: usize,
    /// Most record bytes handed to one `send` (a single larger record still goes alone).
    /// Default 1 MiB: large enough that a request's overhead is small, small enough that the
    /// sends in flight (each held as records and as the request body) stay a few MiB of the
    /// agent's memory while it catches up a backlog.
    pub batch_bytes: usize,
    /// How long a batch short of `batch_records` and `batch_bytes` waits for more records,
    /// from its first record, when the buffer has no more. Default 200 ms (the OpenTelemetry
    /// Collector's batch timeout); zero sends whatever the buffer has at once.
    pub linger: Duration,
    /// Most batches sent and not yet answered (or waiting for a retry) at once. Default
    /// [`DEFAULT_MAX_IN_FLIGHT`]; zero counts as one.
    pub max_in_flight: usize,
    /// How long the sends in flight at shutdown may still take. Default 5 s.
    pub shutdown_grace: Duration,
}

impl DriverSettings {
    /// Default batching, sends in flight and shutdown grace with the given backoff.
    pub fn new(backoff: Backoff) -> Self {
        DriverSettings {
            backoff,
            batch_records: 64,
            batch_bytes: 1 << 20,
            linger: Duration::from_millis(200),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT as usize,
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

/// [`run`] with explicit settings. A sink whose backend needs its requests in order
/// ([`Sink::needs_order`]) keeps one in flight whatever `max_in_flight` says.
pub async fn run_with(
    sink: Sink,
    reader: BufferReader,
    settings: DriverSettings,
    shutdown: watch::Receiver<bool>,
) -> Stopped {
    let component = sink.name().to_owned();
    run_as(&component, sink, reader, settings, shutdown).await
}

/// [`run_with`] reporting under `component` (a named exporter's `sink_<kind>_<name>`).
pub async fn run_as(
    component: &str,
    sink: Sink,
    mut reader: BufferReader,
    settings: DriverSettings,
    mut shutdown: watch::Receiver<bool>,
) -> Stopped {
    let settings = if sink.needs_order() {
        DriverSettings {
            max_in_flight: 1,
            ..settings
        }
    } else {
        settings
    };
    let sink = Arc::new(sink);
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
    let max_in_flight = settings.max_in_flight.max(1);
    let mut delays = settings.backoff.delays();
    let mut filling = Filling::default();
    let mut window = Window::<P>::default();
    // One closure each, so that every future in a set has the same type.
    let answer = |flight: u64, sending: F| async move { (flight, sending.await) };
    let retry_after = |flight: u64, after: Duration| async move {
        tokio::time::sleep(after).await;
        flight
    };
    let mut sending = FuturesUnordered::new();
    let mut retrying = FuturesUnordered::new();
    let mut closed = false;
    loop {
        window.ack_answered(component, reader);
        if closed && window.is_empty() {
            return Stopped::Closed;
        }
        let room = !closed && window.len() < max_in_flight && window.retrying == 0;
        tokio::select! {
            biased;
            () = wait_for_shutdown(shutdown) => {
                // Backoff waits stop at once; sends in flight get the grace period.
                drop(retrying);
                let _ = tokio::time::timeout(settings.shutdown_grace, async {
                    while let Some((flight, result)) = sending.next().await {
                        if let Err(SendError::Retryable { .. }) = result {
                            continue; // abandoned: redelivered after the next start
                        }
                        window.answered(component, flight, result, &mut delays);
                    }
                })
                .await;
                window.ack_answered(component, reader);
                return Stopped::Shutdown;
            }
            Some((flight, result)) = sending.next(), if !sending.is_empty() => {
                if let Some(after) = window.answered(component, flight, result, &mut delays) {
                    retrying.push(retry_after(flight, after));
                }
            }
            Some(flight) = retrying.next(), if !retrying.is_empty() => {
                if let Some(payload) = window.payload(flight) {
                    sending.push(answer(flight, send(payload)));
                }
            }
            filled = filling.fill(component, reader, settings, &mut delays), if room => {
                let Some(records) = filled else {
                    closed = true;
                    continue;
                };
                let Some(through) = records.last().map(|r| r.id) else {
                    continue;
                };
                match prepare(component, records) {
                    Some(prepared) => {
                        let payload = prepared.payload.clone();
                        let flight = window.push(through, Some(prepared));
                        sending.push(answer(flight, send(payload)));
                    }
                    // Nothing in it can be sent: acked in its turn.
                    None => {
                        window.push(through, None);
                    }
                }
            }
        }
    }
}

/// The batch being cut from the buffer. Kept between calls of [`Filling::fill`], so that a
/// call cut short (another branch of the loop's `select!` won) loses nothing.
#[derive(Default)]
struct Filling {
    records: Vec<Record>,
    bytes: usize,
    /// A record read that does not fit in `records`: the first of the next batch.
    carried: Option<Record>,
    /// When the batch leaves even if short: `linger` after its first record.
    deadline: Option<Instant>,
}

impl Filling {
    /// The next batch: at once when full (by count, or the next record does not fit), else as
    /// soon as it fills up or its linger runs out with nothing more in the buffer. `None` once
    /// the buffer is closed and everything in it was cut into batches. Cancel-safe.
    async fn fill(
        &mut self,
        component: &str,
        reader: &mut BufferReader,
        settings: &DriverSettings,
        delays: &mut RetryDelays,
    ) -> Option<Vec<Record>> {
        let max_records = settings.batch_records.max(1);
        loop {
            if self.records.is_empty() {
                if let Some(record) = self.carried.take() {
                    self.add(record, settings);
                }
            }
            if self.carried.is_some()
                || self.records.len() >= max_records
                || self.bytes >= settings.batch_bytes
            {
                return Some(self.take());
            }
            let wanted = (
                max_records - self.records.len(),
                settings.batch_bytes - self.bytes,
            );
            let next = match self.deadline {
                None => reader.next_batch(wanted.0, wanted.1).await,
                Some(deadline) => {
                    // Biased: records already in the buffer are taken before the linger can
                    // run out, so a batch leaves short only when the buffer has no more.
                    tokio::select! {
                        biased;
                        next = reader.next_batch(wanted.0, wanted.1) => next,
                        () = tokio::time::sleep_until(deadline) => return Some(self.take()),
                    }
                }
            };
            match next {
                Ok(records) => {
                    for record in records {
                        if !self.records.is_empty()
                            && self.bytes + record.bytes.len() > settings.batch_bytes
                        {
                            // `next_batch` returns a record over the byte limit only first
                            // and alone.
                            self.carried = Some(record);
                        } else {
                            self.add(record, settings);
                        }
                    }
                }
                Err(BufferError::Closed { .. }) if self.records.is_empty() => return None,
                // The error shows again at the next read.
                Err(_) if !self.records.is_empty() => return Some(self.take()),
                Err(e) => {
                    emit(InternalEvent::Error {
                        component,
                        error: e.category(),
                        message: &e.to_string(),
                    });
                    tokio::time::sleep(delays.next_delay(None)).await;
                }
            }
        }
    }

    fn add(&mut self, record: Record, settings: &DriverSettings) {
        if self.records.is_empty() {
            self.deadline = Some(Instant::now() + settings.linger);
        }
        self.bytes += record.bytes.len();
        self.records.push(record);
    }

    fn take(&mut self) -> Vec<Record> {
        self.bytes = 0;
        self.deadline = None;
        std::mem::take(&mut self.records)
    }
}

/// The batches cut from the buffer and not yet acked, in buffer order: sending, waiting for a
/// retry, or answered and waiting for the ones before them.
struct Window<P: ?Sized> {
    flights: VecDeque<Flight<P>>,
    /// Number of the first of `flights`; a batch's number stays the same while it is in the
    /// window.
    first: u64,
    /// Batches that failed and are not yet answered otherwise: no new batch starts meanwhile.
    retrying: usize,
}

impl<P: ?Sized> Default for Window<P> {
    fn default() -> Self {
        Window {
            flights: VecDeque::new(),
            first: 0,
            retrying: 0,
        }
    }
}

/// One batch in the window.
struct Flight<P: ?Sized> {
    /// Its last buffer record.
    through: RecordId,
    /// What is sent; `None` once answered (or when nothing in it could be sent).
    unanswered: Option<Prepared<P>>,
    /// A send of it failed and it is being retried.
    retried: bool,
}

impl<P: ?Sized> Window<P> {
    fn len(&self) -> usize {
        self.flights.len()
    }

    fn is_empty(&self) -> bool {
        self.flights.is_empty()
    }

    /// Adds a batch ending at buffer record `through`; returns its number.
    fn push(&mut self, through: RecordId, unanswered: Option<Prepared<P>>) -> u64 {
        self.flights.push_back(Flight {
            through,
            unanswered,
            retried: false,
        });
        self.first + self.flights.len() as u64 - 1
    }

    fn index(&self, flight: u64) -> Option<usize> {
        usize::try_from(flight.checked_sub(self.first)?).ok()
    }

    /// What batch `flight` sends, for a retry.
    fn payload(&self, flight: u64) -> Option<Arc<P>> {
        let prepared = self.flights.get(self.index(flight)?)?.unanswered.as_ref()?;
        Some(prepared.payload.clone())
    }

    /// Records the backend's answer for batch `flight`; the delay before retrying it when the
    /// answer is worth a retry.
    fn answered(
        &mut self,
        component: &str,
        flight: u64,
        result: Result<(), SendError>,
        delays: &mut RetryDelays,
    ) -> Option<Duration> {
        let index = self.index(flight)?;
        let entry = self.flights.get_mut(index)?;
        let events = entry.unanswered.as_ref().map_or(0, |p| p.events);
        let was_retried = entry.retried;
        if !matches!(result, Err(SendError::Retryable { .. })) && was_retried {
            entry.retried = false;
            self.retrying -= 1;
        }
        match result {
            Ok(()) => {
                let bytes = entry.unanswered.take().map_or(0, |p| p.bytes);
                emit(InternalEvent::Sent {
                    component,
                    events,
                    bytes,
                });
                delays.reset();
                None
            }
            Err(SendError::Permanent { reason }) => {
                entry.unanswered = None;
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
                delays.reset();
                None
            }
            Err(SendError::Retryable {
                reason,
                retry_after,
            }) => {
                if !was_retried {
                    entry.retried = true;
                    self.retrying += 1;
                }
                let after = delays.next_delay(retry_after);
                emit(InternalEvent::Retried {
                    component,
                    reason: &reason,
                    after,
                });
                Some(after)
            }
        }
    }

    /// Acks the buffer through the last of the answered batches at the front of the window:
    /// never past a batch still unanswered.
    fn ack_answered(&mut self, component: &str, reader: &mut BufferReader) {
        let mut through = None;
        while self.flights.front().is_some_and(|f| f.unanswered.is_none()) {
            through = self.flights.pop_front().map(|f| f.through);
            self.first += 1;
        }
        if let Some(through) = through {
            ack(component, reader, through);
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

/// Resolves once shutdown is requested. A dropped sender means the agent is going away, so it
/// counts as a request.
async fn wait_for_shutdown(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&stop| stop).await;
}

#[cfg(test)]
mod tests;
