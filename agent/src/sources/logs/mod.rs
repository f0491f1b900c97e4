//! STUB — owned by the logs helper. Interface contract below; replace the bodies.
//!
//! Pod log tailing and the log pipeline (tail → parse → join → crash → redact → batch → router
//! → checkpoint).

use std::sync::Arc;

use tokio::sync::watch;
use vigil_crds::agent_config::LogsConfig;

use crate::identity::Identity;
use crate::processors::crash::CrashDetector;
use crate::processors::redact::Redactor;
use crate::router::Router;

/// Everything the log pipeline needs besides its config.
#[derive(Clone, Debug)]
pub struct LogPipeline {
    pub identity: Identity,
    pub crashes: Arc<CrashDetector>,
    pub redactor: Arc<Redactor>,
    pub router: Router,
}

#[derive(Debug, thiserror::Error)]
pub enum LogSourceError {
    #[error("logs: {message}")]
    Io {
        message: String,
        #[source]
        source: std::io::Error,
    },
}

/// Tails until `shutdown` turns true, then flushes what it holds and checkpoints.
pub async fn run(
    _config: LogsConfig,
    _pipeline: LogPipeline,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LogSourceError> {
    let _ = shutdown.wait_for(|stop| *stop).await;
    Ok(())
}
