//! Source: OTLP reception over gRPC (port 4317) and HTTP (port 4318), for the traces, metrics
//! and logs that the application's OpenTelemetry SDK sends to `localhost`.
//!
//! Both transports decode a request into a [`Batch`](crate::batch::Batch) and hand it to the
//! same ingest step: spans with invalid ids are rejected (reported through `partial_success`),
//! traces are sampled by trace id, then the batch is redacted, enriched with the pod identity
//! and stored through the [`Router`] in every sink buffer. A request is answered with success
//! only once it is stored (acknowledged); when a `block` buffer is full the sender is pushed
//! back (gRPC `RESOURCE_EXHAUSTED` with `RetryInfo`, HTTP 429 with `Retry-After`) so the SDK
//! retries later, and under `dropNewest` the request succeeds and the drop is counted.

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzzing;
mod grpc;
mod http;
mod ingest;
mod rpc_status;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use crate::http_server::{Limits, RequestBudget, Timeouts};
use crate::identity::Identity;
use crate::processors::redact::Redactor;
use crate::router::Router;

pub use ingest::keeps_trace;

/// Largest accepted request, compressed or not (16 MiB, four times the SDKs' default batch).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// Default of `traces.maxRequestBytesInFlight`: one largest request at a time, with room for
/// its compressed form while it is decompressed.
pub const DEFAULT_REQUEST_BYTES_IN_FLIGHT: usize = MAX_REQUEST_BYTES + MAX_REQUEST_BYTES / 4;

/// How long a pushed-back sender is asked to wait before retrying.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What OTLP handlers need.
#[derive(Clone, Debug)]
pub struct OtlpReceiver {
    pub identity: Identity,
    pub redactor: Arc<Redactor>,
    pub router: Router,
    /// Fraction of traces kept (by trace id, so a trace is kept or dropped whole).
    pub sampling_ratio: f64,
    /// Request body bytes held at once across both listeners (`traces.maxRequestBytesInFlight`);
    /// a request that does not fit is answered with a retryable refusal.
    pub budget: RequestBudget,
    /// Time limits and connection bound of both listeners.
    pub limits: Limits,
}

/// A listener that could not be started or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("otlp: cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("otlp {transport} server failed")]
    Serve {
        transport: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Why a batch larger than the whole buffer is refused, and what the sender can do.
fn too_large_message(bytes: u64, max_bytes: u64) -> String {
    format!(
        "the request needs {bytes} bytes in the agent's buffer, which holds {max_bytes}: \
         send smaller batches"
    )
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, OtlpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| OtlpError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Serves OTLP/gRPC on `addr` until `shutdown`.
pub async fn serve_grpc(
    addr: SocketAddr,
    receiver: OtlpReceiver,
    shutdown: watch::Receiver<bool>,
) -> Result<(), OtlpError> {
    serve_grpc_on(bind(addr).await?, receiver, shutdown).await
}

/// Serves OTLP/gRPC on a bound `listener` until `shutdown`; calls in flight are finished.
pub async fn serve_grpc_on(
    listener: TcpListener,
    receiver: OtlpReceiver,
    shutdown: watch::Receiver<bool>,
) -> Result<(), OtlpError> {
    grpc::serve(listener, receiver, shutdown).await
}

/// Serves OTLP/HTTP (`/v1/traces`, `/v1/metrics`, `/v1/logs`) on `addr` until `shutdown`.
pub async fn serve_http(
    addr: SocketAddr,
    receiver: OtlpReceiver,
    shutdown: watch::Receiver<bool>,
) -> Result<(), OtlpError> {
    serve_http_on(bind(addr).await?, receiver, shutdown).await
}

/// Serves OTLP/HTTP on a bound `listener` until `shutdown`; requests in flight are answered.
pub async fn serve_http_on(
    listener: TcpListener,
    receiver: OtlpReceiver,
    shutdown: watch::Receiver<bool>,
) -> Result<(), OtlpError> {
    http::serve(listener, receiver, shutdown).await;
    Ok(())
}
