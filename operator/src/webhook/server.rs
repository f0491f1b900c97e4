//! The webhook's HTTPS server: hyper (HTTP/1.1 and HTTP/2) over rustls with the `ring`
//! provider. The certificate comes from a [`ServingCertResolver`] at each handshake, so a
//! renewed certificate is served from the next connection on without a restart.
//!
//! Routes: `POST /mutate-pods`, `POST /validate`, `GET /healthz` (the process is up) and
//! `GET /readyz` (listening with a certificate). A body that is not an `AdmissionReview` gets
//! HTTP 400 with a message, a body over 8 MiB gets 413; handlers never panic on input.
//!
//! No client holds a connection without using it ([`ConnectionLimits`]): the TLS handshake,
//! an HTTP/1.1 request's headers and a request's body each have a deadline, HTTP/2 peers must
//! answer keep-alive pings, and a connection with no request in flight for the idle timeout
//! is closed (the API server opens a new one when it needs it).

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::{mutate, validate, Webhook, WebhookError, MUTATE_PATH, VALIDATE_PATH};
use crate::tls::ServingCertResolver;

/// Largest request body accepted. The API server sends at most an object and its old version,
/// each bounded by etcd's 1.5 MiB.
pub const MAX_BODY_BYTES: usize = 8 << 20;
/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take over each part of a connection. The API server sends a whole
/// admission request at once and answers pings at once; these only ever cut off clients that
/// hold connections open without using them (slowloris).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// To complete the TLS handshake. Default 10 s.
    pub handshake: Duration,
    /// To send the headers of an HTTP/1.1 request, from its first byte. Default 10 s.
    pub header_read: Duration,
    /// To send a request's body, once its headers are in. Default 10 s; a slower body gets 408.
    pub body_read: Duration,
    /// With no request in flight, before the connection is closed. Default 60 s.
    pub idle: Duration,
    /// Between HTTP/2 keep-alive pings on a quiet connection; a ping unanswered for as long
    /// again closes it. Default 20 s.
    pub http2_keep_alive: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            http2_keep_alive: Duration::from_secs(20),
        }
    }
}

/// What a connection is doing: requests in flight and when the last one ended, for the idle
/// timeout.
struct Activity {
    started: tokio::time::Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `started` to the end of the last request (0: none yet).
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: tokio::time::Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    fn end(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::SeqCst);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// When the connection becomes idle for `idle` if nothing happens meanwhile; `None` while
    /// a request is in flight.
    fn idle_deadline(&self, idle: Duration) -> Option<tokio::time::Instant> {
        (self.in_flight.load(Ordering::SeqCst) == 0).then(|| {
            self.started + Duration::from_millis(self.last_ms.load(Ordering::SeqCst)) + idle
        })
    }
}

/// Ends the request of an [`Activity`] when dropped, also when hyper drops the request's
/// future (the client went away).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.begin();
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Serves the webhook on `listener` until `shutdown` completes and `drain` has passed, then
/// stops accepting and lets requests in flight finish (up to 10 seconds).
///
/// `ready` is kept true while the listener is open and `certs` holds a certificate, and set
/// false when shutdown begins; `/readyz` answers from it, and the caller may combine it into
/// its own readiness. During `drain` the server keeps accepting and answering admission
/// requests while `/readyz` fails: the endpoints controller takes the replica out of the
/// Service, and the API server's calls that still arrive meanwhile are answered, not refused.
pub async fn serve(
    listener: TcpListener,
    webhook: Arc<Webhook>,
    certs: Arc<ServingCertResolver>,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> Result<(), WebhookError> {
    serve_with_limits(
        listener,
        webhook,
        certs,
        ready,
        shutdown,
        drain,
        ConnectionLimits::default(),
    )
    .await
}

/// [`serve`] with the given connection limits.
pub async fn serve_with_limits(
    listener: TcpListener,
    webhook: Arc<Webhook>,
    certs: Arc<ServingCertResolver>,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    limits: ConnectionLimits,
) -> Result<(), WebhookError> {
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(certs.clone())?));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.http2_keep_alive)
        .keep_alive_timeout(limits.http2_keep_alive);
    let graceful = GracefulShutdown::new();
    let mut readiness = tokio::time::interval(Duration::from_millis(250));
    tokio::pin!(shutdown);
    // Set when shutdown begins: the end of the drain period.
    let mut draining: Option<tokio::time::Instant> = None;
    loop {
        let drained = async {
            match draining {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut shutdown, if draining.is_none() => {
                ready.store(false, Ordering::Relaxed);
                if drain.is_zero() {
                    break;
                }
                tracing::info!(seconds = drain.as_secs_f64(), "webhook draining: not ready, still answering");
                draining = Some(tokio::time::Instant::now() + drain);
            }
            () = drained => break,
            _ = readiness.tick() => {
                ready.store(draining.is_none() && certs.is_loaded(), Ordering::Relaxed);
            }
            accepted = listener.accept() => {
                let (tcp, _peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "webhook cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let webhook = webhook.clone();
                let ready = ready.clone();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(limits.handshake, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => return tracing::debug!(error = %e, "webhook TLS handshake failed"),
                        Err(_) => return tracing::debug!("webhook TLS handshake timed out"),
                    };
                    let activity = Arc::new(Activity::new());
                    let requests = activity.clone();
                    let service = service_fn(move |req| {
                        let webhook = webhook.clone();
                        let ready = ready.clone();
                        let in_flight = InFlight::start(&requests);
                        async move {
                            let response = route(&webhook, &ready, req, limits.body_read).await;
                            drop(in_flight);
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let conn = builder.serve_connection(TokioIo::new(tls), service).into_owned();
                    let conn = watcher.watch(conn);
                    tokio::pin!(conn);
                    loop {
                        // Re-checked whenever the deadline passes: a request may have come and
                        // gone meanwhile, or be in flight (then check again after `idle`).
                        let deadline = activity
                            .idle_deadline(limits.idle)
                            .unwrap_or_else(|| tokio::time::Instant::now() + limits.idle);
                        tokio::select! {
                            ended = &mut conn => {
                                if let Err(e) = ended {
                                    tracing::debug!(error = %e, "webhook connection ended with an error");
                                }
                                break;
                            }
                            () = tokio::time::sleep_until(deadline) => {
                                let idle = activity
                                    .idle_deadline(limits.idle)
                                    .is_some_and(|d| d <= tokio::time::Instant::now());
                                if idle {
                                    // No request in flight: dropping the connection loses nothing.
                                    tracing::debug!("webhook connection idle; closing it");
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        }
    }
    ready.store(false, Ordering::Relaxed);
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("webhook requests still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    Ok(())
}

/// rustls with the `ring` provider, TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by ALPN, and the
/// certificate chosen per handshake by `certs`.
pub fn tls_config(certs: Arc<ServingCertResolver>) -> Result<ServerConfig, WebhookError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::Serve(std::io::Error::other(e)))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn route(
    webhook: &Webhook,
    ready: &AtomicBool,
    req: Request<Incoming>,
    body_read: Duration,
) -> Response<Full<Bytes>> {
    let mutate = req.uri().path() == MUTATE_PATH;
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok"),
        (&Method::GET, "/readyz") if ready.load(Ordering::Relaxed) => text(StatusCode::OK, "ok"),
        (&Method::GET, "/readyz") => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "no serving certificate loaded yet",
        ),
        (&Method::POST, MUTATE_PATH | VALIDATE_PATH) => {
            let collected = tokio::time::timeout(
                body_read,
                Limited::new(req.into_body(), MAX_BODY_BYTES).collect(),
            )
            .await;
            let Ok(collected) = collected else {
                return text(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!("request body not received within {body_read:?}"),
                );
            };
            let body = match collected {
                Ok(body) => body.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("request body is larger than {MAX_BODY_BYTES} bytes"),
                    )
                }
                Err(e) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        &format!("cannot read request body: {e}"),
                    )
                }
            };
            let answer = if mutate {
                mutate::review(webhook, &body)
            } else {
                validate::review(&body)
            };
            match answer {
                Ok(json) => {
                    let mut response = Response::new(Full::new(Bytes::from(json)));
                    response
                        .headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    response
                }
                Err(e) => text(StatusCode::BAD_REQUEST, &e.to_string()),
            }
        }
        (_, MUTATE_PATH | VALIDATE_PATH | "/healthz" | "/readyz") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
