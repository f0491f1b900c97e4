//! STUB — owned by the OTLP/admin helper. Interface contract below; replace the bodies.
//!
//! The admin endpoint: `/healthz`, `/readyz`, `/metrics`.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::sync::watch;

use crate::processors::crash::CrashDetector;
use crate::sources::scrape::LatestScrape;

/// What `/metrics` serves and `/readyz` reports.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// Set once every listener is bound (independent of backends).
    pub ready: Arc<AtomicBool>,
    pub crashes: Arc<CrashDetector>,
    pub latest_scrape: Arc<LatestScrape>,
}

/// Serves until `shutdown`.
pub async fn serve(
    _addr: SocketAddr,
    _state: AdminState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let _ = shutdown.wait_for(|stop| *stop).await;
    Ok(())
}
