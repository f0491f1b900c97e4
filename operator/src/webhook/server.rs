//! The webhook's HTTPS server: hyper (HTTP/1.1 and HTTP/2) over rustls with the `ring`
//! provider. The certificate comes from a [`ServingCertResolver`] at each handshake, so a
//! renewed certificate is served from the next connection on without a restart.
//!
//! Routes: `POST /mutate-pods`, `POST /validate`, `GET /healthz` (the process is up) and
//! `GET /readyz` (listening with a certificate). A body that is not an `AdmissionReview` gets
//! HTTP 400 with a message, a body over 8 MiB gets 413; handlers never panic on input.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
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
/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(certs.clone())?));
    let builder = auto::Builder::new(TokioExecutor::new());
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
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => return tracing::debug!(error = %e, "webhook TLS handshake failed"),
                        Err(_) => return tracing::debug!("webhook TLS handshake timed out"),
                    };
                    let service = service_fn(move |req| {
                        let webhook = webhook.clone();
                        let ready = ready.clone();
                        async move { Ok::<_, Infallible>(route(&webhook, &ready, req).await) }
                    });
                    let conn = builder.serve_connection(TokioIo::new(tls), service).into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, "webhook connection ended with an error");
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
            let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
            {
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
