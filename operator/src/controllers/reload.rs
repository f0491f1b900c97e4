//! Reload signals for a plain Prometheus and Alertmanager: after the shared rule/scrape
//! ConfigMap or the `alertmanager.yml` Secret changed, `POST <url>/-/reload` is sent once the
//! kubelet has had time to update the mounted files (`delay`). Requests that arrive while one
//! is pending are merged into it. Only `http://` URLs are supported: both servers are reached
//! inside the cluster, usually through a Service.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;

/// Which server to reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Prometheus: rule files and scrape configs.
    Prometheus,
    /// Alertmanager: `alertmanager.yml`.
    Alertmanager,
}

/// Default wait between a change and the reload: the kubelet's default sync period (60 s) plus
/// its ConfigMap cache TTL margin.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(90);

/// Sends debounced `/-/reload` requests.
#[derive(Clone, Debug, Default)]
pub struct Reloader {
    prometheus: Option<Arc<Endpoint>>,
    alertmanager: Option<Arc<Endpoint>>,
    delay: Duration,
}

#[derive(Debug)]
struct Endpoint {
    url: http::Uri,
    pending: AtomicBool,
}

/// A reload URL that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReloadUrlError {
    #[error("reload URL {url:?} is not a valid URL")]
    Invalid {
        url: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("reload URL {url:?} must start with http:// (TLS is not supported for reloads)")]
    NotHttp { url: String },
}

impl Reloader {
    /// A reloader for the given base URLs (such as `http://prometheus.monitoring:9090`); a
    /// `None` URL disables reloads of that server.
    pub fn new(
        prometheus: Option<&str>,
        alertmanager: Option<&str>,
        delay: Duration,
    ) -> Result<Reloader, ReloadUrlError> {
        let endpoint = |base: &str| -> Result<Arc<Endpoint>, ReloadUrlError> {
            if !base.starts_with("http://") {
                return Err(ReloadUrlError::NotHttp {
                    url: base.to_owned(),
                });
            }
            let url = format!("{}/-/reload", base.trim_end_matches('/'))
                .parse()
                .map_err(|source| ReloadUrlError::Invalid {
                    url: base.to_owned(),
                    source,
                })?;
            Ok(Arc::new(Endpoint {
                url,
                pending: AtomicBool::new(false),
            }))
        };
        Ok(Reloader {
            prometheus: prometheus.map(endpoint).transpose()?,
            alertmanager: alertmanager.map(endpoint).transpose()?,
            delay,
        })
    }

    /// Schedules a reload of `target` after the delay, unless one is already scheduled. Does
    /// nothing when no URL is configured for `target`.
    pub fn request(&self, target: Target) {
        let endpoint = match target {
            Target::Prometheus => &self.prometheus,
            Target::Alertmanager => &self.alertmanager,
        };
        let Some(endpoint) = endpoint.clone() else {
            return;
        };
        if endpoint.pending.swap(true, Ordering::SeqCst) {
            return;
        }
        let delay = self.delay;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            endpoint.pending.store(false, Ordering::SeqCst);
            let client = HttpClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
            let request = http::Request::post(endpoint.url.clone()).body(Empty::new());
            match request {
                Ok(request) => match client.request(request).await {
                    Ok(response) if response.status().is_success() => {
                        tracing::info!(url = %endpoint.url, "reload requested");
                    }
                    Ok(response) => {
                        tracing::warn!(url = %endpoint.url, status = %response.status(), "reload refused");
                    }
                    Err(e) => tracing::warn!(url = %endpoint.url, error = %e, "reload failed"),
                },
                Err(e) => tracing::warn!(url = %endpoint.url, error = %e, "reload request invalid"),
            }
        });
    }
}
