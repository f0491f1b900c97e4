//! What the analytics engine publishes: the `vigil:baseline:*`, `vigil:anomaly:score`,
//! `vigil:forecast:*` and `vigil:slo:*` series of every job ([`Published`]), the engine's own
//! health metrics ([`EngineMetrics`]), and the HTTP server for `/metrics`, `/healthz` and
//! `/readyz`.
//!
//! Job series are held per job and replaced as a whole after each run, so a series the query
//! no longer returns, or of a rule or policy that was removed, disappears at once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};
use tokio::net::TcpListener;

use super::jobs::JobKey;
use super::prometheus::Labels;

/// Every job series name, in exposition order, with its help text.
pub const SERIES: [(&str, &str); 17] = [
    (
        "vigil:baseline:actual",
        "The value judged by the anomaly detector.",
    ),
    (
        "vigil:baseline:expected",
        "The value the anomaly detector expected.",
    ),
    (
        "vigil:baseline:lower",
        "Lower edge of the 80 % baseline band.",
    ),
    (
        "vigil:baseline:upper",
        "Upper edge of the 80 % baseline band.",
    ),
    (
        "vigil:baseline:coverage",
        "Share of the last week's points that fell inside the baseline band.",
    ),
    (
        "vigil:anomaly:score",
        "Anomaly score of the newest point, 0 to 1.",
    ),
    (
        "vigil:forecast:mean",
        "Forecast expected value at the horizon.",
    ),
    (
        "vigil:forecast:lower",
        "Lower edge of the calibrated 80 % forecast band.",
    ),
    (
        "vigil:forecast:upper",
        "Upper edge of the calibrated 80 % forecast band.",
    ),
    (
        "vigil:forecast:coverage",
        "Share of backtested outcomes the forecast band held at the horizon.",
    ),
    (
        "vigil:forecast:capacity_probability",
        "Probability the series exceeds the rule's capacity within its horizon.",
    ),
    (
        "vigil:forecast:capacity_crossing_seconds",
        "Seconds from now until the forecast's upper band first crosses the capacity.",
    ),
    (
        "vigil:slo:error_ratio_forecast:mean",
        "Forecast SLI error ratio at the horizon.",
    ),
    (
        "vigil:slo:error_ratio_forecast:lower",
        "Lower edge of the calibrated 80 % band of the SLI error ratio forecast.",
    ),
    (
        "vigil:slo:error_ratio_forecast:upper",
        "Upper edge of the calibrated 80 % band of the SLI error ratio forecast.",
    ),
    (
        "vigil:slo:budget_exhaustion_seconds",
        "Seconds from now until the forecast error ratio spends the SLO's remaining error budget over its rolling window.",
    ),
    (
        "vigil:slo:budget_exhaustion_probability",
        "Probability the SLO's error budget is spent within the budget forecast's horizon.",
    ),
];

/// One published sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// One of [`SERIES`].
    pub name: &'static str,
    pub labels: Labels,
    pub value: f64,
}

/// The job series currently published, per job.
#[derive(Clone, Default)]
pub struct Published {
    jobs: Arc<Mutex<BTreeMap<JobKey, Vec<Point>>>>,
}

impl Published {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<JobKey, Vec<Point>>> {
        // A panic while holding the lock leaves whole per-job vectors: still consistent.
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces everything `key` publishes with `points`.
    pub fn replace(&self, key: &JobKey, points: Vec<Point>) {
        self.lock().insert(key.clone(), points);
    }

    /// Withdraws every series of `key`.
    pub fn remove(&self, key: &JobKey) {
        self.lock().remove(key);
    }

    /// Withdraws the series of every job `keep` refuses.
    pub fn retain(&self, keep: impl Fn(&JobKey) -> bool) {
        self.lock().retain(|k, _| keep(k));
    }

    /// Withdraws everything (this replica stopped leading).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Number of published label sets (for `vigil_analytics_series`).
    pub fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Whether nothing is published.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The points of `key`.
    pub fn of(&self, key: &JobKey) -> Vec<Point> {
        self.lock().get(key).cloned().unwrap_or_default()
    }

    /// Everything, in the Prometheus text format (gauges, grouped by name).
    pub fn render(&self) -> String {
        let jobs = self.lock();
        let mut out = String::new();
        for (name, help) in SERIES {
            let mut lines = jobs
                .values()
                .flatten()
                .filter(|p| p.name == name)
                .peekable();
            if lines.peek().is_none() {
                continue;
            }
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for point in lines {
                out.push_str(name);
                out.push('{');
                for (i, (k, v)) in point.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape_label(v));
                }
                out.push('}');
                let _ = writeln!(out, " {}", format_value(point.value));
            }
        }
        out
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        value.to_string()
    }
}

/// The engine's health metrics.
#[derive(Clone)]
pub struct EngineMetrics {
    /// `vigil_analytics_fits_total{outcome}`: `fitted`, `too_little_history`, `failed`.
    pub fits: IntCounterVec,
    /// `vigil_analytics_fit_duration_seconds`.
    pub fit_duration: Histogram,
    /// `vigil_analytics_series`: published label sets.
    pub series: IntGauge,
    /// `vigil_analytics_prometheus_errors_total`.
    pub prometheus_errors: IntCounter,
    /// `vigil_analytics_last_fit_timestamp_seconds{namespace,vigil_policy,vigil_rule}`.
    pub last_fit: GaugeVec,
}

impl EngineMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<EngineMetrics, prometheus::Error> {
        let metrics = EngineMetrics {
            fits: IntCounterVec::new(
                Opts::new(
                    "vigil_analytics_fits_total",
                    "Model fits and detector updates, by outcome.",
                ),
                &["outcome"],
            )?,
            fit_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "vigil_analytics_fit_duration_seconds",
                    "Time one forecast fit or detector update of one series took.",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ]),
            )?,
            series: IntGauge::new(
                "vigil_analytics_series",
                "Label sets the engine currently publishes.",
            )?,
            prometheus_errors: IntCounter::new(
                "vigil_analytics_prometheus_errors_total",
                "Prometheus queries that failed.",
            )?,
            last_fit: GaugeVec::new(
                Opts::new(
                    "vigil_analytics_last_fit_timestamp_seconds",
                    "When the rule's models were last fitted or updated, Unix seconds.",
                ),
                &["namespace", "vigil_policy", "vigil_rule"],
            )?,
        };
        for outcome in ["fitted", "too_little_history", "failed"] {
            metrics.fits.with_label_values(&[outcome]);
        }
        registry.register(Box::new(metrics.fits.clone()))?;
        registry.register(Box::new(metrics.fit_duration.clone()))?;
        registry.register(Box::new(metrics.series.clone()))?;
        registry.register(Box::new(metrics.prometheus_errors.clone()))?;
        registry.register(Box::new(metrics.last_fit.clone()))?;
        Ok(metrics)
    }

    /// Forgets the last-fit time of a removed job.
    pub fn forget(&self, key: &JobKey) {
        let _ = self
            .last_fit
            .remove_label_values(&[&key.namespace, &key.policy, &key.rule]);
    }
}

/// The full `/metrics` text: the engine registry, then the job series.
pub fn metrics_text(registry: &Registry, published: &Published) -> String {
    let mut body = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut body) {
        tracing::warn!(error = %e, "cannot encode the engine metrics");
    }
    let mut text = String::from_utf8_lossy(&body).into_owned();
    text.push_str(&published.render());
    text
}

/// Serves `/metrics` (the registry and the job series), `/healthz` (the process answers) and
/// `/readyz` (`ready` is set) on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    published: Published,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()>,
) {
    let metrics = move || {
        let mut response =
            Response::new(Full::new(Bytes::from(metrics_text(&registry, &published))));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    };
    crate::telemetry::serve_routes("analytics", listener, metrics, ready, shutdown).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    fn key(rule: &str) -> JobKey {
        JobKey {
            namespace: "shop".into(),
            policy: "p".into(),
            rule: rule.into(),
        }
    }

    /// Job series render grouped by name with escaped label values and special values; a
    /// removed job's series disappear; the engine metrics come first.
    #[test]
    fn series_render_and_disappear() {
        let published = Published::default();
        let labels = Labels::from([
            ("app".to_owned(), "a\"b\\c\nd".to_owned()),
            ("horizon".to_owned(), "1h".to_owned()),
        ]);
        published.replace(
            &key("A"),
            vec![
                Point {
                    name: "vigil:forecast:mean",
                    labels: labels.clone(),
                    value: 1.5,
                },
                Point {
                    name: "vigil:forecast:upper",
                    labels: labels.clone(),
                    value: f64::INFINITY,
                },
            ],
        );
        published.replace(
            &key("B"),
            vec![Point {
                name: "vigil:forecast:mean",
                labels: Labels::new(),
                value: f64::NAN,
            }],
        );
        let text = published.render();
        assert_eq!(
            text,
            "# HELP vigil:forecast:mean Forecast expected value at the horizon.\n\
             # TYPE vigil:forecast:mean gauge\n\
             vigil:forecast:mean{app=\"a\\\"b\\\\c\\nd\",horizon=\"1h\"} 1.5\n\
             vigil:forecast:mean{} NaN\n\
             # HELP vigil:forecast:upper Upper edge of the calibrated 80 % forecast band.\n\
             # TYPE vigil:forecast:upper gauge\n\
             vigil:forecast:upper{app=\"a\\\"b\\\\c\\nd\",horizon=\"1h\"} +Inf\n"
        );
        assert_eq!(published.len(), 3);
        published.retain(|k| k.rule != "A");
        assert_eq!(published.len(), 1);
        assert!(!published.render().contains("vigil:forecast:upper"));

        let registry = Registry::new();
        let metrics = EngineMetrics::new(&registry).unwrap();
        metrics.prometheus_errors.inc();
        let all = metrics_text(&registry, &published);
        assert!(
            all.contains("vigil_analytics_prometheus_errors_total 1\n"),
            "{all}"
        );
        assert!(all.contains("vigil_analytics_fits_total{outcome=\"fitted\"} 0\n"));
        assert!(all.ends_with("vigil:forecast:mean{} NaN\n"), "{all}");
    }
}
