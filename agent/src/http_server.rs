//! The accept loop shared by the agent's HTTP listeners (OTLP/HTTP and the admin endpoint):
//! HTTP/1.1 and HTTP/2 (prior knowledge) on one port, and a graceful stop — on `shutdown` the
//! listener closes, idle keep-alive connections are closed and requests in flight are answered.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::telemetry::{emit, InternalEvent};

/// How long a client may take to send the request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stop waits for requests in flight before giving up on them.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Pause after a failed `accept` (such as running out of file descriptors) before the next.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Resolves once `shutdown` says stop (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Answers each request on `listener` with `handle` until `shutdown`, then drains.
pub(crate) async fn serve<H, F>(
    listener: TcpListener,
    component: &'static str,
    handle: H,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let handle = handle.clone();
                    let service = hyper::service::service_fn(move |request| {
                        let response = handle(request);
                        async move { Ok::<_, Infallible>(response.await) }
                    });
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        // A client that goes away mid-request is its own business.
                        let _ = connection.await;
                    });
                }
                Err(error) => {
                    emit(InternalEvent::Error {
                        component,
                        error: "Accept",
                        message: &error.to_string(),
                    });
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            () = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_DEADLINE, graceful.shutdown())
        .await
        .is_err()
    {
        emit(InternalEvent::Error {
            component,
            error: "Drain",
            message: "requests still in flight at the drain deadline were abandoned",
        });
    }
}
