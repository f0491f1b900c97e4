//! The scrape source: fetches the application's Prometheus endpoint on localhost every
//! `interval`, and turns each scrape into one samples batch for the router.
//!
//! A scrape asks for OpenMetrics first and the Prometheus text format 0.0.4 second (the
//! `Accept` header Prometheus sends); the response's `Content-Type` decides the [`parse`]r.
//! Every series gets the pod identity labels (`namespace`, `app`, `pod`, `version`, `cluster`)
//! and, when remote-written, the target labels Prometheus' own scrape would give it (`job` the
//! app's scrape job, `instance` the pod's `host:port`, `container` the one declaring the port;
//! [`render`] says which labels win over the page's), and the
//! scrape adds, as Prometheus does, `up` (1 or 0), `scrape_duration_seconds` and
//! `scrape_samples_scraped`. The crash series of the [`CrashDetector`] travel in the same
//! batch, written straight into the batch's buffer record (no owned series in between). The
//! page's series are encoded through the [`cache`] of their labels, so a series known from the
//! last scrape costs its value and timestamp only, and a record in which no series repeats is
//! written as a checked one ([`CHECKED_SAMPLES_TAG`]), which the remote-write sink sends as it
//! is. The
//! latest page is also kept for the agent's own `/metrics` in pull setups ([`LatestScrape`]),
//! re-rendered in the 0.0.4 text format when that page is asked for; a failed scrape empties
//! it, so the app's series go stale there as they would in Prometheus.
//!
//! With `honorAnnotations`, the pod's `prometheus.io/scrape|port|path|scheme` annotations,
//! read from the downward API file before every scrape, override the config for this pod;
//! [`annotations`] documents the precedence. A pod annotated `prometheus.io/scrape: "false"`
//! is not scraped and has no `up` series; its crash series are still sent.

pub mod annotations;
pub mod cache;
pub mod parse;
pub mod render;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use vigil_crds::agent_config::ScrapeConfig;

use crate::batch::{Batch, Signal, CHECKED_SAMPLES_HEADER, CHECKED_SAMPLES_TAG, SAMPLES_TAG};
use crate::identity::Identity;
use crate::processors::crash::CrashDetector;
use crate::processors::enrich;
use crate::prompb::WriteRequest;
use crate::router::Router;
use crate::telemetry::{emit, InternalEvent};

use annotations::{Endpoint, PodAnnotations, Scheme, POD_INFO_DIR};
use parse::{Format, ParseError};

/// Component name in the agent's own telemetry.
pub const COMPONENT: &str = "scrape";

/// What a scrape asks for: OpenMetrics, else the 0.0.4 text format.
pub const ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

/// Environment variable holding the number of the scrape port when the config names the port
/// (`http-metrics`); the pod's container ports are known where the sidecar is injected.
pub const PORT_ENV: &str = "VIGIL_SCRAPE_PORT";

/// Largest page the agent reads; a bigger one fails the scrape rather than the sidecar's
/// memory bound.
pub const MAX_PAGE_BYTES: usize = 64 << 20;

/// Port names with a conventional number, used when [`PORT_ENV`] is not set.
const WELL_KNOWN_PORTS: &[(&str, u16)] = &[("http", 80), ("http-alt", 8080)];

/// The latest scrape, for the agent's `/metrics` (pull setups): the page as fetched, with the
/// identity labels to add. It is re-rendered in the Prometheus text format only when asked
/// ([`LatestScrape::text`]), so an agent whose scrapes leave by remote write does not render
/// every page for nobody.
#[derive(Debug, Default)]
pub struct LatestScrape {
    page: Mutex<Option<Arc<LatestPage>>>,
}

#[derive(Debug)]
struct LatestPage {
    page: Page,
    identity: Vec<(String, String)>,
}

impl LatestScrape {
    /// Makes `page` the latest; returns the text of the page it replaces, when no reader of
    /// `/metrics` holds it, for the next scrape to read into.
    fn replace(&self, page: Option<LatestPage>) -> Option<String> {
        // A poisoned lock only means a reader panicked mid-read; the page is still whole.
        let mut guard = self.page.lock().unwrap_or_else(|e| e.into_inner());
        let previous = std::mem::replace(&mut *guard, page.map(Arc::new));
        drop(guard);
        Arc::into_inner(previous?).map(|latest| latest.page.text)
    }

    /// The latest page in the Prometheus text format 0.0.4 with the identity labels added to
    /// every sample; empty after a failed scrape (and before the first).
    pub fn text(&self) -> String {
        let latest = self.page.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut text = String::new();
        let Some(latest) = latest else {
            return text;
        };
        // The page parsed when it was scraped; it parses the same now.
        if let Ok(exposition) = parse::parse(&latest.page.text, latest.page.format) {
            let identity: Vec<(&str, &str)> = latest
                .identity
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            render::render_text(&exposition, &identity, &mut text);
        }
        text
    }

    /// Makes `text` (a 0.0.4 page, no identity labels) the latest scrape.
    #[cfg(test)]
    pub(crate) fn set_text(&self, text: &str) {
        self.replace(Some(LatestPage {
            page: Page {
                format: Format::PrometheusText,
                text: text.to_owned(),
            },
            identity: Vec::new(),
        }));
    }
}

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("scrape.port: port name {name:?} is unknown to the agent; set {PORT_ENV} to its number or configure the port by number")]
    PortName { name: String },
    #[error("scrape: cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("scrape of {url} failed")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("scrape of {url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("scrape of {url}: page larger than {MAX_PAGE_BYTES} bytes")]
    TooLarge { url: String },
    #[error("scrape of {url}: page is not UTF-8")]
    NotUtf8 { url: String },
    #[error("scrape of {url}: invalid {format} page")]
    Parse {
        url: String,
        format: &'static str,
        #[source]
        source: ParseError,
    },
}

impl ScrapeError {
    /// Stable PascalCase name, the `error` label of the agent's error counter.
    pub fn category(&self) -> &'static str {
        match self {
            ScrapeError::PortName { .. } => "ScrapePortUnknown",
            ScrapeError::Client(_) => "ScrapeClient",
            ScrapeError::Request { .. } => "ScrapeRequest",
            ScrapeError::Status { .. } => "ScrapeStatus",
            ScrapeError::TooLarge { .. } => "ScrapeTooLarge",
            ScrapeError::NotUtf8 { .. } => "ScrapeNotUtf8",
            ScrapeError::Parse { .. } => "ScrapeParse",
        }
    }

    /// The message with its causes, for the agent's log.
    fn describe(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        message
    }
}

/// The scrape port as a number: given as one, or named and resolved through [`PORT_ENV`]
/// (read through `env`), or a conventional port name.
pub fn resolve_port(port: &str, env: impl Fn(&str) -> Option<String>) -> Result<u16, ScrapeError> {
    if let Ok(number) = port.trim().parse::<u16>() {
        return Ok(number);
    }
    if let Some(number) = env(PORT_ENV).and_then(|v| v.trim().parse::<u16>().ok()) {
        return Ok(number);
    }
    WELL_KNOWN_PORTS
        .iter()
        .find(|(name, _)| *name == port)
        .map(|(_, number)| *number)
        .ok_or_else(|| ScrapeError::PortName {
            name: port.to_owned(),
        })
}

/// A fetched page.
#[derive(Debug)]
pub struct Page {
    pub format: Format,
    pub text: String,
}

/// What one scrape produced.
#[derive(Debug)]
pub struct Scraped {
    /// The samples batch as its buffer record ([`Batch::encode`]'s encoding): the page's
    /// series, the scrape series and the crash series.
    pub record: Vec<u8>,
    /// Samples in the record.
    pub items: usize,
    /// Samples on the page (0 when the scrape failed).
    pub samples: usize,
    /// Bytes of the page.
    pub bytes: usize,
    /// Why the scrape failed.
    pub error: Option<ScrapeError>,
}

impl Scraped {
    /// The samples batch the record holds.
    pub fn batch(&self) -> Result<Batch, crate::batch::DecodeError> {
        Batch::decode(&self.record)
    }
}

/// Scrapes one endpoint.
#[derive(Debug)]
pub struct Scraper {
    client: reqwest::Client,
    /// The endpoint the config names.
    config_endpoint: Endpoint,
    /// The URL scraped now, or the unresolved port name.
    url: Result<String, String>,
    timeout: Duration,
    accept: &'static str,
    identity: Vec<(String, String)>,
    /// `job`, `instance` and `container`, as Prometheus' own scrape of the pod would set them:
    /// added to the remote-written series (not to the agent's `/metrics`, whose scraper sets
    /// its own).
    target: Target,
    full_identity: Identity,
    /// The encoded labels of the series scraped last.
    cache: cache::SeriesCache,
    /// Bytes to reserve for the next scrape's record: the last one's, and some.
    record_hint: usize,
    /// The text of the page before the latest, read into again by the next scrape.
    spare_body: String,
}

/// The target labels of remote-written series.
#[derive(Clone, Debug, Default)]
struct Target {
    /// The job name of the app's scrape config (`scrape.job`).
    job: Option<String>,
    /// `POD_IP`, else the loopback address the agent scrapes.
    host: String,
    /// The container declaring the scraped port (`VIGIL_SCRAPE_CONTAINER`, set by injection).
    container: Option<String>,
    /// `host:port` of the endpoint scraped now.
    instance: Option<String>,
}

impl Target {
    fn aim(&mut self, endpoint: &Endpoint) {
        self.instance = endpoint.port.as_ref().ok().map(|port| {
            if self.host.contains(':') {
                format!("[{}]:{port}", self.host)
            } else {
                format!("{}:{port}", self.host)
            }
        });
    }

    fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        [
            ("job", self.job.as_deref()),
            ("instance", self.instance.as_deref()),
            ("container", self.container.as_deref()),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
    }
}

/// The series a scrape adds to the page's (`up`, the scrape's own, the crash series), written
/// into the record behind the page's, and whether they keep the record checked: each with
/// exactly one sample and sorted labels of a value with `__name__`, and no label set the page
/// or another added series has.
struct AddedSeries<'c> {
    cache: &'c cache::SeriesCache,
    labels: Vec<Vec<u8>>,
    samples: usize,
    unique: bool,
}

impl<'c> AddedSeries<'c> {
    fn new(cache: &'c cache::SeriesCache) -> Self {
        AddedSeries {
            cache,
            labels: Vec::new(),
            samples: 0,
            unique: true,
        }
    }

    fn put(&mut self, series: &crate::prompb::TimeSeries, record: &mut Vec<u8>) {
        self.samples += series.samples.len();
        let labels = &series.labels;
        let canonical = labels.iter().any(|l| l.name == "__name__")
            && labels.iter().all(|l| !l.value.is_empty())
            && labels.windows(2).all(|pair| pair[0].name < pair[1].name);
        let [sample] = series.samples.as_slice() else {
            self.unique = false;
            crate::prompb::put_owned_series(series, record);
            return;
        };
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        let mut encoded = Vec::new();
        crate::prompb::put_labels(&pairs, &mut encoded);
        crate::prompb::put_encoded_series(&encoded, sample.value, sample.timestamp, record);
        if !canonical || self.cache.has_labels(&encoded) || self.labels.contains(&encoded) {
            self.unique = false;
        }
        self.labels.push(encoded);
    }
}

/// Environment variable injection sets to the name of the container that declares the scraped
/// port.
pub const SCRAPE_CONTAINER_ENV: &str = "VIGIL_SCRAPE_CONTAINER";

impl Scraper {
    /// A scraper of `http://127.0.0.1:<port><path>`. An unresolvable port name is not an
    /// error here: every scrape then reports it (and `up` is 0), so the user sees it.
    /// [`Scraper::aim`] points it elsewhere (the pod's annotations).
    pub fn new(
        config: &ScrapeConfig,
        identity: &Identity,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Scraper, ScrapeError> {
        let timeout = Duration::from_secs_f64(config.timeout.as_secs_f64().max(0.001));
        // The client speaks plain HTTP to localhost only, but reqwest's rustls build wants a
        // process-wide crypto provider: install ring's unless one is already there.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            // Only used when the pod is annotated `prometheus.io/scheme: https`: the request
            // stays on the pod's loopback, and the app's certificate names its Service, so
            // there is no name to verify it against.
            .tls_danger_accept_invalid_certs(true)
            .user_agent(concat!("vigil-agent/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .build()
            .map_err(ScrapeError::Client)?;
        let path = if config.path.starts_with('/') {
            config.path.clone()
        } else {
            format!("/{}", config.path)
        };
        let nonempty = |key: &str| env(key).filter(|v| !v.is_empty());
        let mut target = Target {
            job: config.job.clone().filter(|j| !j.is_empty()),
            host: nonempty("POD_IP").unwrap_or_else(|| "127.0.0.1".to_owned()),
            container: nonempty(SCRAPE_CONTAINER_ENV),
            instance: None,
        };
        let config_endpoint = Endpoint {
            scheme: Scheme::Http,
            port: resolve_port(&config.port, env).map_err(|_| config.port.clone()),
            path,
        };
        target.aim(&config_endpoint);
        Ok(Scraper {
            target,
            client,
            url: config_endpoint.url(),
            config_endpoint,
            timeout,
            accept: ACCEPT,
            identity: identity
                .series_labels()
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            full_identity: identity.clone(),
            cache: cache::SeriesCache::default(),
            record_hint: 0,
            spare_body: String::new(),
        })
    }

    /// Asks for the 0.0.4 text format only (tests of that path against real clients).
    #[cfg(test)]
    pub(crate) fn prefer_text_format(&mut self) {
        self.accept = "text/plain;version=0.0.4";
    }

    /// The URL scraped, when the port resolved.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref().ok()
    }

    /// The endpoint the config names (before any annotation override).
    pub fn config_endpoint(&self) -> &Endpoint {
        &self.config_endpoint
    }

    /// Scrapes `endpoint` from now on.
    pub fn aim(&mut self, endpoint: &Endpoint) {
        self.url = endpoint.url();
        self.target.aim(endpoint);
    }

    /// Fetches the page.
    pub async fn fetch(&self) -> Result<Page, ScrapeError> {
        self.fetch_into(Vec::new()).await
    }

    /// Fetches the page into `body` (emptied first): the text of an earlier page, so that a
    /// page of the same size takes no new memory.
    async fn fetch_into(&self, mut body: Vec<u8>) -> Result<Page, ScrapeError> {
        let url = match &self.url {
            Ok(url) => url.as_str(),
            Err(name) => return Err(ScrapeError::PortName { name: name.clone() }),
        };
        let request_error = |source| ScrapeError::Request {
            url: url.to_owned(),
            source,
        };
        let mut response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, self.accept)
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", self.timeout.as_secs_f64()),
            )
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(ScrapeError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        let format = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(Format::from_content_type)
            .unwrap_or(Format::PrometheusText);
        let too_large = || ScrapeError::TooLarge {
            url: url.to_owned(),
        };
        if response
            .content_length()
            .is_some_and(|len| len > MAX_PAGE_BYTES as u64)
        {
            return Err(too_large());
        }
        body.clear();
        body.reserve(response.content_length().unwrap_or(64 << 10) as usize);
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if body.len() + chunk.len() > MAX_PAGE_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(body).map_err(|_| ScrapeError::NotUtf8 {
            url: url.to_owned(),
        })?;
        Ok(Page { format, text })
    }

    /// One scrape: fetch, parse, label; also updates `latest`. Never fails: a failed scrape
    /// is `up` 0 and carries its error. The record is a checked one
    /// ([`CHECKED_SAMPLES_TAG`]) unless two of its series have the same labels.
    pub async fn scrape(&mut self, crashes: &CrashDetector, latest: &LatestScrape) -> Scraped {
        let started = Instant::now();
        let now_ms = unix_millis(SystemTime::now());
        let identity = series_labels(&self.identity, &self.target);
        // The header; the count is written at the end.
        let mut record = vec![CHECKED_SAMPLES_TAG, 0, 0, 0, 0];
        let mut unique = true;
        let mut latest_page = None;
        let body = std::mem::take(&mut self.spare_body).into_bytes();
        let (samples, bytes, error) = match self.fetch_into(body).await {
            Ok(page) => {
                // Room for the page's series as the last scrape wrote them (or twice the
                // page's text, about what node_exporter's page takes with identity labels).
                record.reserve(self.record_hint.max(page.text.len() * 2));
                let parsed =
                    self.cache
                        .encode(&page.text, page.format, &identity, now_ms, &mut record);
                let bytes = page.text.len();
                match parsed {
                    Ok(encoded) => {
                        unique = encoded.unique;
                        self.record_hint = record.len() + record.len() / 8;
                        latest_page = Some(LatestPage {
                            page,
                            identity: self.identity.clone(),
                        });
                        (encoded.samples, bytes, None)
                    }
                    Err(source) => (
                        0,
                        bytes,
                        Some(ScrapeError::Parse {
                            url: self.url().unwrap_or_default().to_owned(),
                            format: match page.format {
                                Format::PrometheusText => "Prometheus text",
                                Format::OpenMetrics => "OpenMetrics",
                            },
                            source,
                        }),
                    ),
                }
            }
            Err(error) => (0, 0, Some(error)),
        };
        self.spare_body = latest.replace(latest_page).unwrap_or_default();
        let up = if error.is_none() { 1.0 } else { 0.0 };
        let mut added = AddedSeries::new(&self.cache);
        for (name, value) in [
            ("up", up),
            ("scrape_duration_seconds", started.elapsed().as_secs_f64()),
            ("scrape_samples_scraped", samples as f64),
        ] {
            let series = render::scrape_series(name, value, &identity, now_ms);
            added.put(&series, &mut record);
        }
        for mut series in self.crash_series(crashes, now_ms) {
            // As the remote-write sink wants them, so the record is sent as it is.
            series.labels.retain(|l| !l.value.is_empty());
            series.labels.sort_by(|a, b| a.name.cmp(&b.name));
            series
                .labels
                .dedup_by(|later, earlier| later.name == earlier.name);
            added.put(&series, &mut record);
        }
        unique &= added.unique;
        let items = samples + added.samples;
        match u32::try_from(items) {
            Ok(count) if unique => {
                record[1..CHECKED_SAMPLES_HEADER].copy_from_slice(&count.to_le_bytes())
            }
            // Two series with the same labels: a plain samples record, which the sink merges.
            _ => {
                record.drain(1..CHECKED_SAMPLES_HEADER);
                record[0] = SAMPLES_TAG;
            }
        }
        Scraped {
            record,
            items,
            samples,
            bytes,
            error,
        }
    }

    /// The crash series, labelled, without scraping: what is sent for a pod annotated
    /// `prometheus.io/scrape: "false"`. Also empties `latest`, so the app's series go stale
    /// on the agent's `/metrics`.
    pub fn skip(&self, crashes: &CrashDetector, latest: &LatestScrape) -> Batch {
        latest.replace(None);
        let now_ms = unix_millis(SystemTime::now());
        Batch::Samples(WriteRequest {
            timeseries: self.crash_series(crashes, now_ms),
        })
    }

    fn crash_series(&self, crashes: &CrashDetector, now_ms: i64) -> Vec<crate::prompb::TimeSeries> {
        let mut crash_series = Batch::Samples(crashes.samples(now_ms));
        enrich::enrich_batch(&self.full_identity, &mut crash_series);
        match crash_series {
            Batch::Samples(crash_series) => crash_series.timeseries,
            _ => Vec::new(),
        }
    }
}

/// The identity labels with the target labels (`job`, `instance`, `container`).
fn series_labels<'s>(
    identity: &'s [(String, String)],
    target: &'s Target,
) -> Vec<(&'s str, &'s str)> {
    identity
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain(target.labels())
        .collect()
}

fn unix_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Scrapes every interval until `shutdown`; each scrape (plus an `up` series and the crash
/// series) goes to the router as one samples batch.
pub async fn run(
    config: ScrapeConfig,
    identity: Identity,
    crashes: Arc<CrashDetector>,
    latest: Arc<LatestScrape>,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut scraper = match Scraper::new(&config, &identity, |key| std::env::var(key).ok()) {
        Ok(scraper) => scraper,
        Err(error) => {
            emit(InternalEvent::Error {
                component: COMPONENT,
                error: error.category(),
                message: &error.describe(),
            });
            let _ = shutdown.wait_for(|stop| *stop).await;
            return;
        }
    };
    let mut pod_annotations = config.honor_annotations.then(|| {
        PodAnnotations::new(Path::new(
            config.pod_info_dir.as_deref().unwrap_or(POD_INFO_DIR),
        ))
    });
    // What is scraped now: `None` while the pod is annotated `prometheus.io/scrape: "false"`.
    let mut in_force = Some(scraper.config_endpoint().clone());
    let interval = Duration::from_secs_f64(config.interval.as_secs_f64().max(0.001));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        if let Some(pod_annotations) = pod_annotations.as_mut() {
            let wanted = pod_annotations.read().apply(scraper.config_endpoint());
            if wanted != in_force {
                report_target(&wanted, scraper.config_endpoint(), pod_annotations.file());
                if let Some(endpoint) = &wanted {
                    scraper.aim(endpoint);
                }
                in_force = wanted;
            }
        }
        let (record, items) = if in_force.is_some() {
            let scraped = tokio::select! {
                scraped = scraper.scrape(&crashes, &latest) => scraped,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            report(&scraped);
            (scraped.record, scraped.items)
        } else {
            let batch = scraper.skip(&crashes, &latest);
            (batch.encode(), batch.item_count())
        };
        if items == 0 {
            continue;
        }
        if let Err(error) = router
            .send_record(Signal::Samples, items as u64, record)
            .await
        {
            emit(InternalEvent::Error {
                component: COMPONENT,
                error: "BufferWrite",
                message: &error.to_string(),
            });
        }
    }
}

/// Longest time between two sends of unchanged crash series by [`run_crash_series`], well
/// inside Prometheus' 5-minute staleness.
pub const CRASH_SERIES_REFRESH: Duration = Duration::from_secs(60);

/// For an app that is not scraped (no `metrics`): sends the crash series on their own, within
/// a second of a change and at least every [`CRASH_SERIES_REFRESH`], so remote write carries
/// the crashes of every app, not only of scraped ones.
pub async fn run_crash_series(
    identity: Identity,
    crashes: Arc<CrashDetector>,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(usize, u64)> = None;
    let mut last_sent = Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let samples = crashes.samples(unix_millis(SystemTime::now()));
        if samples.timeseries.is_empty() {
            continue;
        }
        let signature = crash_signature(&samples);
        if last == Some(signature) && last_sent.elapsed() < CRASH_SERIES_REFRESH {
            continue;
        }
        let mut batch = Batch::Samples(samples);
        enrich::enrich_batch(&identity, &mut batch);
        if let Err(error) = router.send(&batch).await {
            emit(InternalEvent::Error {
                component: COMPONENT,
                error: "BufferWrite",
                message: &error.to_string(),
            });
            continue;
        }
        last = Some(signature);
        last_sent = Instant::now();
    }
}

/// What changes when a crash is counted: the number of series and the sum of their values.
fn crash_signature(samples: &WriteRequest) -> (usize, u64) {
    let total: f64 = samples
        .timeseries
        .iter()
        .flat_map(|t| &t.samples)
        .map(|s| s.value)
        .sum();
    (samples.timeseries.len(), total.to_bits())
}

/// Logs, once per change, what the pod's annotations make the agent scrape.
fn report_target(wanted: &Option<Endpoint>, config: &Endpoint, file: &Path) {
    match wanted {
        None => tracing::info!(
            component = COMPONENT,
            annotations = %file.display(),
            "scraping stopped: the pod is annotated prometheus.io/scrape: \"false\""
        ),
        Some(endpoint) => {
            let url = endpoint
                .url()
                .unwrap_or_else(|name| format!("port {name:?}"));
            let source = if endpoint == config {
                "the agent config"
            } else {
                "the agent config overridden by the pod's prometheus.io annotations"
            };
            tracing::info!(component = COMPONENT, url = %url, "scraping {url}: {source}");
        }
    }
}

/// Telemetry of one scrape.
fn report(scraped: &Scraped) {
    match &scraped.error {
        None => emit(InternalEvent::Received {
            component: COMPONENT,
            signal: "samples",
            events: scraped.samples as u64,
            bytes: scraped.bytes as u64,
        }),
        Some(error) => emit(InternalEvent::Error {
            component: COMPONENT,
            error: error.category(),
            message: &error.describe(),
        }),
    }
}
