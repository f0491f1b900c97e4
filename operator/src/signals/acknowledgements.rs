//! Acknowledgements, the stop signal of escalation: an alert is acknowledged while an
//! Alertmanager silence matches it. The operator polls Alertmanager's API v2
//! (`GET /api/v2/alerts`, which evaluates the silences against each alert) and exports
//! `vigil_alert_acknowledged{namespace, app, alertname}` = 1 for every silenced alert, the
//! series each escalation rule excludes with `unless on () vigil_alert_acknowledged{…}` (see
//! `crate::render::alerts`).
//!
//! Only alerts that carry `namespace`, `app` and `alertname` (every alert Vigil renders does)
//! are exported. An inhibited alert is not acknowledged: nobody has looked at it. When
//! Alertmanager cannot be reached the last answer is kept for [`STALE_AFTER`], then dropped,
//! so a lost Alertmanager never suppresses escalation for long.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

/// Default time between two polls of Alertmanager.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(15);
/// How long the last answer is kept while Alertmanager cannot be reached.
pub const STALE_AFTER: Duration = Duration::from_secs(300);
/// Largest alert list read (a few thousand alerts are a few MiB).
const MAX_BODY_BYTES: usize = 64 << 20;
/// Deadline of one poll.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One acknowledged alert, as exported.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Acknowledgement {
    pub namespace: String,
    pub app: String,
    pub alertname: String,
}

/// An alert as `GET /api/v2/alerts` returns it (the fields used here).
#[derive(Clone, Debug, Deserialize)]
pub struct AlertmanagerAlert {
    /// The alert's labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Whether, and by what, the alert is suppressed.
    #[serde(default)]
    pub status: AlertStatus,
}

/// The `status` of an Alertmanager alert.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertStatus {
    /// `active`, `suppressed` or `unprocessed`.
    #[serde(default)]
    pub state: String,
    /// Ids of the silences that match the alert.
    #[serde(default)]
    pub silenced_by: Vec<String>,
}

/// The acknowledgements among `alerts`: each silenced alert that carries `namespace`, `app`
/// and `alertname`, once.
pub fn acknowledged(alerts: &[AlertmanagerAlert]) -> BTreeSet<Acknowledgement> {
    alerts
        .iter()
        .filter(|a| !a.status.silenced_by.is_empty())
        .filter_map(|a| {
            let label = |name: &str| a.labels.get(name).filter(|v| !v.is_empty()).cloned();
            Some(Acknowledgement {
                namespace: label("namespace")?,
                app: label("app")?,
                alertname: label("alertname")?,
            })
        })
        .collect()
}

/// Why Alertmanager could not be polled.
#[derive(Debug, thiserror::Error)]
pub enum AcknowledgementError {
    #[error("alertmanager URL {url:?} must be an http:// URL")]
    NotHttp { url: String },
    #[error("alertmanager URL {url:?} is not a valid URL")]
    InvalidUrl {
        url: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("cannot build the request to {url}")]
    Request {
        url: String,
        #[source]
        source: http::Error,
    },
    #[error("cannot reach alertmanager at {url}")]
    Connect {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("alertmanager at {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("cannot read the alert list from {url}")]
    Body {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("alert list from {url} is not valid JSON")]
    Decode {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("alertmanager at {url} did not answer within {REQUEST_TIMEOUT:?}")]
    Timeout { url: String },
}

/// Reads alerts from one Alertmanager.
#[derive(Clone, Debug)]
pub struct AlertmanagerClient {
    alerts_url: http::Uri,
    http: HttpClient<HttpConnector, Empty<Bytes>>,
}

impl AlertmanagerClient {
    /// A client for the Alertmanager at `base` (such as `http://alertmanager.monitoring:9093`).
    /// Only `http://` is supported: Alertmanager is reached inside the cluster.
    pub fn new(base: &str) -> Result<AlertmanagerClient, AcknowledgementError> {
        if !base.starts_with("http://") {
            return Err(AcknowledgementError::NotHttp {
                url: base.to_owned(),
            });
        }
        let alerts_url = format!("{}/api/v2/alerts", base.trim_end_matches('/'))
            .parse()
            .map_err(|source| AcknowledgementError::InvalidUrl {
                url: base.to_owned(),
                source,
            })?;
        Ok(AlertmanagerClient {
            alerts_url,
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// The alerts Alertmanager holds, with their silence status.
    pub async fn alerts(&self) -> Result<Vec<AlertmanagerAlert>, AcknowledgementError> {
        let url = self.alerts_url.to_string();
        let fetch = async {
            let request = http::Request::get(self.alerts_url.clone())
                .header(http::header::ACCEPT, "application/json")
                .body(Empty::new())
                .map_err(|source| AcknowledgementError::Request {
                    url: url.clone(),
                    source,
                })?;
            let response = self.http.request(request).await.map_err(|source| {
                AcknowledgementError::Connect {
                    url: url.clone(),
                    source,
                }
            })?;
            if !response.status().is_success() {
                return Err(AcknowledgementError::Status {
                    url: url.clone(),
                    status: response.status().as_u16(),
                });
            }
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|source| AcknowledgementError::Body {
                    url: url.clone(),
                    source,
                })?
                .to_bytes();
            serde_json::from_slice(&body).map_err(|source| AcknowledgementError::Decode {
                url: url.clone(),
                source,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, fetch)
            .await
            .unwrap_or_else(|_| Err(AcknowledgementError::Timeout { url: url.clone() }))
    }

    /// The acknowledged alerts right now.
    pub async fn acknowledgements(
        &self,
    ) -> Result<BTreeSet<Acknowledgement>, AcknowledgementError> {
        Ok(acknowledged(&self.alerts().await?))
    }
}

/// The acknowledgements currently exported, and since when Alertmanager has been unreachable.
#[derive(Debug, Default)]
pub struct AcknowledgementState {
    current: BTreeSet<Acknowledgement>,
    failing_since: Option<Instant>,
}

impl AcknowledgementState {
    /// Records a successful poll.
    pub fn update(&mut self, acknowledged: BTreeSet<Acknowledgement>) {
        self.current = acknowledged;
        self.failing_since = None;
    }

    /// Records a failed poll at `now`: the last answer is dropped once polls have failed for
    /// [`STALE_AFTER`].
    pub fn failed(&mut self, now: Instant) {
        let since = *self.failing_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= STALE_AFTER {
            self.current.clear();
        }
    }

    /// The acknowledged alerts to export.
    pub fn current(&self) -> &BTreeSet<Acknowledgement> {
        &self.current
    }
}
