//! STUB — owned by the OTLP/admin helper. Interface contract below; replace the bodies.
//!
//! OTLP reception over gRPC and HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::identity::Identity;
use crate::processors::redact::Redactor;
use crate::router::Router;

/// What OTLP handlers need.
#[derive(Clone, Debug)]
pub struct OtlpReceiver {
    pub identity: Identity,
    pub redactor: Arc<Redactor>,
    pub router: Router,
    /// Fraction of traces kept (by trace id, so a trace is kept or dropped whole).
    pub sampling_ratio: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("otlp: cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Serves OTLP/gRPC on `addr` until `shutdown`.
pub async fn serve_grpc(
    _addr: SocketAddr,
    _receiver: OtlpReceiver,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), OtlpError> {
    let _ = shutdown.wait_for(|stop| *stop).await;
    Ok(())
}

/// Serves OTLP/HTTP (`/v1/traces`, `/v1/metrics`, `/v1/logs`) on `addr` until `shutdown`.
pub async fn serve_http(
    _addr: SocketAddr,
    _receiver: OtlpReceiver,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), OtlpError> {
    let _ = shutdown.wait_for(|stop| *stop).await;
    Ok(())
}
