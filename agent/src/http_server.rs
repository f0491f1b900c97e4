//! The accept loop shared by the agent's HTTP listeners (OTLP/HTTP, OTLP/gRPC and the admin
//! endpoint): HTTP/1.1 and HTTP/2 (prior knowledge) on one port, and a graceful stop — on
//! `shutdown` the listener closes, idle keep-alive connections are closed and requests in
//! flight are answered.
//!
//! Memory and file descriptors are bounded by configuration, not by what clients send:
//!
//! - **Slow or silent clients time out** ([`Timeouts`]): a connection must start its first
//!   request within `handshake` (an HTTP/2 preface alone, or nothing at all, is closed), send
//!   HTTP/1 request headers within `header_read`, and is closed after `idle` without a request;
//!   HTTP/2 connections are pinged every `keep_alive` and closed when a ping goes unanswered.
//!   Bodies are read with [`read_body`], which gives up after `body_read`.
//! - **Request bodies share one byte budget** ([`RequestBudget`]): a body is only read while
//!   the bytes of all bodies being handled fit in it; one that does not fit is refused with a
//!   retryable answer (HTTP 429, gRPC `RESOURCE_EXHAUSTED` with a retry delay).
//! - **Connections are bounded** (`max_connections`): beyond it, new connections wait in the
//!   kernel's accept queue.
//! - **Running out of file descriptors does not spin**: a failed `accept` pauses the loop, the
//!   pause doubling from 50 ms to 1 s while failures continue, and is logged once per
//!   [`ACCEPT_ERROR_LOG_PERIOD`] with the number of failures since the last log.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::telemetry::{emit, InternalEvent};

/// How long a stop waits for requests in flight before giving up on them.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// First pause after a failed `accept` (such as running out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Longest pause between `accept` attempts while they keep failing.
const ACCEPT_ERROR_MAX_PAUSE: Duration = Duration::from_secs(1);

/// Failed `accept`s are logged at most once per this period, with their count.
pub(crate) const ACCEPT_ERROR_LOG_PERIOD: Duration = Duration::from_secs(10);

/// HTTP/2 flow-control windows: how much a client may send before the agent reads it, per
/// stream and per connection. Small enough that many connections cannot fill memory with
/// unread data, large enough for a local client at full speed.
const HTTP2_WINDOW: u32 = 256 * 1024;

/// Time limits of a listener's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// From accepting a connection to its first request's headers (HTTP/2: preface, settings
    /// and a request's headers).
    pub handshake: Duration,
    /// HTTP/1: from the first byte of a request to the end of its headers.
    pub header_read: Duration,
    /// From a request's headers to the last byte of its body.
    pub body_read: Duration,
    /// A connection without a request in flight for this long is closed.
    pub idle: Duration,
    /// HTTP/2: interval of keep-alive pings, and how long an answer may take.
    pub keep_alive: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(30),
            body_read: Duration::from_secs(60),
            idle: Duration::from_secs(120),
            keep_alive: Duration::from_secs(30),
        }
    }
}

/// Limits of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub timeouts: Timeouts,
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeouts: Timeouts::default(),
            max_connections: 256,
        }
    }
}

/// Resolves once `shutdown` says stop (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Requests of one connection, for its idle and handshake deadlines.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    /// When the connection last had no request in flight after one; `None` before the first.
    last_request_end: Mutex<Option<Instant>>,
}

impl Activity {
    fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    fn finished(&self) {
        if let Ok(mut last) = self.last_request_end.lock() {
            *last = Some(Instant::now());
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// When the connection is to be closed if nothing happens before; `None` while a request is
    /// in flight (its body read has its own deadline).
    fn deadline(&self, accepted: Instant, timeouts: &Timeouts) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let last = self.last_request_end.lock().ok().and_then(|last| *last);
        Some(match last {
            None => accepted + timeouts.handshake,
            Some(end) => end + timeouts.idle,
        })
    }
}

/// Marks a request finished when dropped (answered, or abandoned by a client gone away).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finished();
    }
}

/// Failed `accept`s: the pause before the next attempt and the once-per-period log.
struct AcceptErrors {
    component: &'static str,
    pause: Duration,
    unlogged: u64,
    last_log: Option<Instant>,
}

impl AcceptErrors {
    fn new(component: &'static str) -> Self {
        AcceptErrors {
            component,
            pause: ACCEPT_ERROR_PAUSE,
            unlogged: 0,
            last_log: None,
        }
    }

    /// Counts a failure, logs when the period is over, and returns how long to pause.
    fn failed(&mut self, error: &std::io::Error) -> Duration {
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|last| now.duration_since(last) >= ACCEPT_ERROR_LOG_PERIOD)
        {
            let message = format!(
                "{} failed accept(s) since the last report, the latest: {error}; new \
                 connections wait meanwhile",
                self.unlogged
            );
            emit(InternalEvent::Error {
                component: self.component,
                error: "Accept",
                message: &message,
            });
            self.unlogged = 0;
            self.last_log = Some(now);
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(ACCEPT_ERROR_MAX_PAUSE);
        pause
    }

    fn succeeded(&mut self) {
        self.pause = ACCEPT_ERROR_PAUSE;
    }
}

/// Answers each request on `listener` with `handle` until `shutdown`, then drains.
pub(crate) async fn serve<H, F, B>(
    listener: TcpListener,
    component: &'static str,
    limits: Limits,
    handle: H,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let timeouts = limits.timeouts;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(timeouts.keep_alive)
        .keep_alive_timeout(timeouts.keep_alive)
        .initial_stream_window_size(HTTP2_WINDOW)
        .initial_connection_window_size(HTTP2_WINDOW);
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Every connection task holds a sender; the receiver learns when the last one is done.
    let (alive, mut all_done) = mpsc::channel::<()>(1);
    let mut accept_errors = AcceptErrors::new(component);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&connections).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = stopped(&mut shutdown) => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    accept_errors.succeeded();
                    let _ = stream.set_nodelay(true);
                    let activity = Arc::new(Activity {
                        in_flight: AtomicUsize::new(0),
                        last_request_end: Mutex::new(None),
                    });
                    let handle = handle.clone();
                    let service = hyper::service::service_fn({
                        let activity = Arc::clone(&activity);
                        move |request| {
                            activity.started();
                            let in_flight = InFlight(Arc::clone(&activity));
                            let response = handle(request);
                            async move {
                                let response = response.await;
                                drop(in_flight);
                                Ok::<_, Infallible>(response)
                            }
                        }
                    });
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    let stop = shutdown.clone();
                    let alive = alive.clone();
                    tokio::spawn(async move {
                        let mut connection = std::pin::pin!(connection);
                        let mut closing = Closing::new(activity, timeouts, stop);
                        loop {
                            tokio::select! {
                                _ = connection.as_mut() => break,
                                step = closing.next() => match step {
                                    Step::Close => connection.as_mut().graceful_shutdown(),
                                    Step::Abandon => break,
                                },
                            }
                        }
                        drop(slot);
                        drop(alive);
                    });
                }
                Err(error) => {
                    drop(slot);
                    let pause = accept_errors.failed(&error);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stopped(&mut shutdown) => break,
                    }
                }
            },
            () = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    drop(alive);
    // Each connection gives its requests up to DRAIN_DEADLINE once it sees the stop.
    let drained = tokio::time::timeout(DRAIN_DEADLINE + Duration::from_secs(1), all_done.recv());
    if drained.await.is_err() {
        emit(InternalEvent::Error {
            component,
            error: "Drain",
            message: "requests still in flight at the drain deadline were abandoned",
        });
    }
}

/// What to do next with a connection.
enum Step {
    /// Finish the requests in flight and close.
    Close,
    /// Drop the connection now: it did not close within the drain deadline.
    Abandon,
}

/// When a connection is to be closed: it overstayed its handshake or idle deadline, or the
/// listener stops; and when it is dropped because closing takes longer than the drain deadline.
struct Closing {
    activity: Arc<Activity>,
    timeouts: Timeouts,
    stop: watch::Receiver<bool>,
    accepted: Instant,
    check_at: Instant,
    closing_since: Option<Instant>,
}

impl Closing {
    fn new(activity: Arc<Activity>, timeouts: Timeouts, stop: watch::Receiver<bool>) -> Self {
        let accepted = Instant::now();
        Closing {
            activity,
            timeouts,
            stop,
            accepted,
            check_at: accepted + timeouts.handshake,
            closing_since: None,
        }
    }

    async fn next(&mut self) -> Step {
        loop {
            if let Some(since) = self.closing_since {
                tokio::time::sleep_until(since + DRAIN_DEADLINE).await;
                return Step::Abandon;
            }
            tokio::select! {
                () = tokio::time::sleep_until(self.check_at) => {
                    let now = Instant::now();
                    match self.activity.deadline(self.accepted, &self.timeouts) {
                        // A request is in flight (its body read has its own deadline).
                        None => self.check_at = now + self.timeouts.idle,
                        Some(deadline) if deadline > now => self.check_at = deadline,
                        Some(_) => {
                            self.closing_since = Some(now);
                            return Step::Close;
                        }
                    }
                }
                () = stopped(&mut self.stop) => {
                    self.closing_since = Some(Instant::now());
                    return Step::Close;
                }
            }
        }
    }
}

/// Why a request body was not read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Larger than the request limit.
    TooLarge { limit: usize },
    /// The bodies being handled already use the whole [`RequestBudget`]: retry later.
    OverBudget,
    /// Did not arrive within [`Timeouts::body_read`].
    TimedOut,
    /// The client went away or sent a malformed body.
    Unreadable,
}

/// Bytes of request bodies that may be held at once, across every request on every listener
/// that shares it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RequestBudget {
    semaphore: Arc<Semaphore>,
    bytes: usize,
}

impl RequestBudget {
    pub fn new(bytes: usize) -> Self {
        let bytes = bytes.min(Semaphore::MAX_PERMITS);
        RequestBudget {
            semaphore: Arc::new(Semaphore::new(bytes)),
            bytes,
        }
    }

    /// The whole budget.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes not held by any request now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// Takes `bytes` more for `held`, or fails without waiting when they are not free.
    pub(crate) fn take(
        &self,
        held: &mut Option<OwnedSemaphorePermit>,
        bytes: usize,
    ) -> Result<(), BodyError> {
        if bytes == 0 {
            return Ok(());
        }
        let bytes = u32::try_from(bytes).map_err(|_| BodyError::OverBudget)?;
        let permit = Arc::clone(&self.semaphore)
            .try_acquire_many_owned(bytes)
            .map_err(|_| BodyError::OverBudget)?;
        match held {
            Some(held) => held.merge(permit),
            None => *held = Some(permit),
        }
        Ok(())
    }
}

/// A request body read into one contiguous buffer, with the budget it holds until dropped.
#[derive(Debug)]
pub(crate) struct ReadBody {
    pub bytes: Bytes,
    pub permit: Option<OwnedSemaphorePermit>,
}

/// How a body tells its length besides `Content-Length`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Only `Content-Length`, if at all.
    Plain,
    /// One gRPC message: a flag byte and the message length (u32, big-endian) come first.
    Grpc,
}

/// Most bytes of a refused body read and discarded, so that the client gets the answer rather
/// than a connection closed under its upload.
const DRAIN_MAX_BYTES: usize = 32 * 1024 * 1024;

/// Reads `body` into one buffer of at most `limit` bytes within `timeout`. Its bytes are taken
/// from `budget` before they are stored: all at once when the length is known in advance
/// (`declared`, the `Content-Length`, or the gRPC message length), else as they arrive. A body
/// declared larger than `limit` (or the whole budget) is refused at once; one that does not fit
/// in the budget now is read to its end and discarded (up to [`DRAIN_MAX_BYTES`]) before the
/// refusal, since a client still sending would not see an answer before the connection closed.
pub(crate) async fn read_body(
    body: Incoming,
    declared: Option<u64>,
    framing: Framing,
    limit: usize,
    budget: &RequestBudget,
    timeout: Duration,
) -> Result<ReadBody, BodyError> {
    // A body larger than the whole budget could never be read: retrying cannot help.
    let limit = limit.min(budget.bytes());
    let declared = declared.map(|length| usize::try_from(length).unwrap_or(usize::MAX));
    if declared.is_some_and(|length| length > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let read = async {
        let mut body = std::pin::pin!(body);
        let mut permit = None;
        let mut held = 0;
        let mut buffer = BytesMut::new();
        // Takes the budget for a body of `len` bytes and makes room for it.
        let mut admit = |len: usize, buffer: &mut BytesMut| -> Result<(), BodyError> {
            if len > limit {
                return Err(BodyError::TooLarge { limit });
            }
            if len > held {
                budget.take(&mut permit, len - held)?;
                held = len;
            }
            buffer.reserve(len - buffer.len());
            Ok(())
        };
        let mut known = declared.is_some();
        let mut refused = declared.and_then(|len| admit(len, &mut buffer).err());
        let mut discarded = 0;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Err(refused.unwrap_or(BodyError::Unreadable));
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if let Some(refusal) = refused.take() {
                discarded += data.len();
                if refusal != BodyError::OverBudget || discarded > DRAIN_MAX_BYTES {
                    return Err(refusal);
                }
                refused = Some(refusal);
                continue;
            }
            let len = buffer.len() + data.len();
            if framing == Framing::Grpc && !known && len >= 5 {
                let mut head = [0; 5];
                for (i, byte) in buffer.iter().chain(data.iter()).take(5).enumerate() {
                    head[i] = *byte;
                }
                let message = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
                known = true;
                if let Err(refusal) = admit(5 + message as usize, &mut buffer) {
                    discarded += data.len();
                    refused = Some(refusal);
                    continue;
                }
            }
            if let Err(refusal) = admit(len, &mut buffer) {
                discarded += data.len();
                refused = Some(refusal);
                continue;
            }
            buffer.extend_from_slice(&data);
        }
        match refused {
            Some(refusal) => Err(refusal),
            None => Ok(ReadBody {
                bytes: buffer.freeze(),
                permit,
            }),
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| BodyError::TimedOut)?
}

#[cfg(test)]
mod tests;
