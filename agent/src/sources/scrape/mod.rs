//! STUB — owned by the scrape/redact helper. Interface contract below; replace the bodies.
//!
//! Scraping the application's Prometheus endpoint.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use vigil_crds::agent_config::ScrapeConfig;

use crate::identity::Identity;
use crate::processors::crash::CrashDetector;
use crate::router::Router;

/// The latest scrape, re-rendered in the Prometheus text format with the identity labels, for
/// the agent's `/metrics` (pull setups).
#[derive(Debug, Default)]
pub struct LatestScrape {
    pub text: Mutex<String>,
}

/// Scrapes every interval until `shutdown`; each scrape (plus an `up` series and the crash
/// series) goes to the router as one samples batch.
pub async fn run(
    _config: ScrapeConfig,
    _identity: Identity,
    _crashes: Arc<CrashDetector>,
    _latest: Arc<LatestScrape>,
    _router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
