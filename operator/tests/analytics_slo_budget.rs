//! The analytics engine's SLO budget forecasts against a real Prometheus (2.42+): a TSDB
//! backfilled with `promtool tsdb create-blocks-from openmetrics` holds eight days of the SLI
//! error ratio an SLO records (`slo:sli_error:ratio_rate5m`, as its recording rule would have
//! written it) for two routes of a `groupBy: [route]` objective of 99 % over 7 days, ending
//! now. Route `browse` is healthy (about a fifth of its budget spent); route `pay` had five
//! good days and then errors growing from 0.4 % to 3 % over the last two. One engine cycle must
//! forecast `pay`'s budget to run out soon and almost surely, and `browse`'s not at all.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

#[path = "support/prometheus.rs"]
mod prometheus_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use prometheus::Registry;
use vigil_crds::Slo;
use vigil_operator::analytics::engine::exposition::{self, EngineMetrics, Published};
use vigil_operator::analytics::engine::jobs::{slo_jobs, JobKey};
use vigil_operator::analytics::engine::prometheus::{PrometheusClient, PrometheusSettings};
use vigil_operator::analytics::engine::runner::{Outcome, RunContext, RunSettings};
use vigil_operator::analytics::engine::Engine;

use prometheus_support::{backfill, start, Running};

const STEP: i64 = 300;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
const BUDGET: f64 = 0.01;

/// Deterministic noise in [-1, 1).
fn noise(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    ((*seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 2.0
}

/// The healthy route: 0.2 % errors, a little higher in the day, ±0.05 % noise.
fn browse(t: i64, seed: &mut u64) -> f64 {
    let day = (2.0 * std::f64::consts::PI * t as f64 / DAY as f64).sin();
    0.002 + 0.0005 * day + 0.0005 * noise(seed)
}

/// The failing route: 0.4 % errors until two days before `end`, then growing linearly to 3 %.
fn pay(t: i64, end: i64, seed: &mut u64) -> f64 {
    let ramp = ((t - (end - 2 * DAY)) as f64 / (2 * DAY) as f64).clamp(0.0, 1.0);
    0.004 + 0.026 * ramp + 0.0003 * noise(seed)
}

fn prometheus_with_history(dir: &Path, end: i64) -> (Running, String) {
    let mut text = String::from(
        "# HELP slo:sli_error:ratio_rate5m SLI error ratio.\n\
         # TYPE slo:sli_error:ratio_rate5m gauge\n",
    );
    for route in ["browse", "pay"] {
        let mut seed = 11;
        let mut t = end - 8 * DAY;
        while t <= end {
            let value = if route == "pay" {
                pay(t, end, &mut seed)
            } else {
                browse(t, &mut seed)
            };
            text.push_str(&format!(
                "slo:sli_error:ratio_rate5m{{namespace=\"shop\",app=\"checkout\",slo=\"checkout-availability\",sloth_id=\"shop-checkout-checkout-availability\",route=\"{route}\"}} {value} {t}\n"
            ));
            t += STEP;
        }
    }
    text.push_str("# EOF\n");
    let data = backfill(dir, &text);
    let (running, port) = start(dir, &data, "global: {scrape_interval: 1m}\n");
    (running, format!("http://127.0.0.1:{port}"))
}

fn slo(name: &str) -> Slo {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: vigil.dev/v1alpha1
kind: SLO
metadata: {{name: {name}, namespace: shop}}
spec:
  appRef: {{name: checkout}}
  objective: 99
  window: 7d
  groupBy: [route]
  sli:
    availability: {{}}
"#
    ))
    .unwrap()
}

fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let label = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""#).unwrap();
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = rest.rsplit_once("} ")?;
            let labels = label
                .captures_iter(labels)
                .map(|c| (c[1].to_owned(), c[2].to_owned()))
                .collect();
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

fn find(text: &str, name: &str, want: &[(&str, &str)]) -> Vec<f64> {
    samples(text, name)
        .into_iter()
        .filter(|(labels, _)| {
            want.iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .collect()
}

fn one(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    let found = find(text, name, want);
    assert_eq!(
        found.len(),
        1,
        "expected one {name} with {want:?} in:\n{text}"
    );
    found[0]
}

/// The budget left on `pay` now, and when it would run out if its errors stayed at their last
/// value: the window's mean error ratio reaches the budget once enough old slots are replaced.
fn flat_exhaustion_seconds(end: i64) -> (f64, f64) {
    let mut seed = 11;
    let values: Vec<f64> = (0..=8 * DAY / STEP)
        .map(|k| pay(end - 8 * DAY + k * STEP, end, &mut seed))
        .collect();
    let slots = (7 * DAY / STEP) as usize;
    let mut window: Vec<f64> = values[values.len() - slots..].to_vec();
    let remaining = 1.0 - window.iter().sum::<f64>() / slots as f64 / BUDGET;
    let last = *values.last().unwrap();
    for k in 1..slots {
        window.remove(0);
        window.push(last);
        if window.iter().sum::<f64>() / slots as f64 >= BUDGET {
            return (remaining, (k * STEP as usize) as f64);
        }
    }
    (remaining, f64::INFINITY)
}

/// One cycle fits both routes of the SLO in one job (kept apart by `route`) and publishes the
/// budget contract with the SLO's labels: `pay` gets an exhaustion time between a third of and
/// just over what flat errors at their last value would give (the errors are still growing) and
/// a probability over 0.9; `browse` gets no exhaustion time and a probability under 0.05. The
/// error-ratio forecasts at `1h`, `1d` and the horizon (`42h`, a quarter of 7 days) keep
/// lower ≤ mean ≤ upper. An SLO without recorded ratios has no data; the SLO's last fit is
/// recorded under its budget key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_forecasts_against_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let end = now - now % STEP;
    let (_prometheus, url) = prometheus_with_history(dir.path(), end);

    let registry = Registry::new();
    let metrics = EngineMetrics::new(&registry).unwrap();
    let prometheus = PrometheusClient::new(PrometheusSettings {
        url,
        timeout: Duration::from_secs(20),
        ..PrometheusSettings::default()
    })
    .unwrap();
    let mut engine = Engine::new(
        RunContext {
            prometheus,
            published: Published::default(),
            metrics,
            settings: RunSettings {
                step: 60,
                refit_interval: 3_600,
                max_series_per_rule: 500,
            },
        },
        2,
    );
    let jobs = slo_jobs(&[slo("checkout-availability"), slo("search-latency")], 60);
    engine.set_jobs(jobs);
    let started = std::time::Instant::now();
    let outcomes = engine.run_all_at(end).await;
    eprintln!(
        "one cycle (2 series of 7 days at 5m) took {:?}",
        started.elapsed()
    );
    assert_eq!(
        outcomes,
        vec![
            (
                JobKey::slo("shop", "checkout-availability"),
                Outcome::Fitted { series: 2 }
            ),
            (JobKey::slo("shop", "search-latency"), Outcome::NoData),
        ]
    );
    let text = exposition::metrics_text(&registry, &engine.context().published);
    let route = |r: &'static str| {
        vec![
            ("namespace", "shop"),
            ("app", "checkout"),
            ("slo", "checkout-availability"),
            ("sloth_id", "shop-checkout-checkout-availability"),
            ("route", r),
        ]
    };

    let (remaining, flat) = flat_exhaustion_seconds(end);
    let exhaustion = one(&text, "vigil:slo:budget_exhaustion_seconds", &route("pay"));
    let probability = one(
        &text,
        "vigil:slo:budget_exhaustion_probability",
        &route("pay"),
    );
    eprintln!(
        "pay: {:.0} % of the budget left, exhausted in {:.1} h (flat errors: {:.1} h), probability {probability:.3}",
        remaining * 100.0,
        exhaustion / HOUR as f64,
        flat / HOUR as f64
    );
    assert!(remaining > 0.1 && remaining < 0.4, "test data: {remaining}");
    assert!(flat < 42.0 * HOUR as f64, "test data: {flat}");
    assert!(
        exhaustion > flat / 3.0 && exhaustion < flat + 2.0 * HOUR as f64,
        "pay's budget forecast to run out in {exhaustion} s; flat errors give {flat} s"
    );
    assert!(probability > 0.9, "pay: probability {probability}");

    assert!(
        find(
            &text,
            "vigil:slo:budget_exhaustion_seconds",
            &route("browse")
        )
        .is_empty(),
        "a healthy route's budget does not run out:\n{text}"
    );
    let healthy = one(
        &text,
        "vigil:slo:budget_exhaustion_probability",
        &route("browse"),
    );
    eprintln!("browse: probability {healthy:.4}");
    assert!(healthy < 0.05, "browse: probability {healthy}");

    for r in ["browse", "pay"] {
        for horizon in ["1h", "1d", "42h"] {
            let mut labels = route(r);
            labels.push(("horizon", horizon));
            let mean = one(&text, "vigil:slo:error_ratio_forecast:mean", &labels);
            let lower = one(&text, "vigil:slo:error_ratio_forecast:lower", &labels);
            let upper = one(&text, "vigil:slo:error_ratio_forecast:upper", &labels);
            assert!(
                lower <= mean && mean <= upper,
                "{r} {horizon}: {lower} {mean} {upper}"
            );
        }
    }
    let browse_1d = one(
        &text,
        "vigil:slo:error_ratio_forecast:mean",
        &[("route", "browse"), ("horizon", "1d")],
    );
    assert!(
        (0.0..0.005).contains(&browse_1d),
        "browse forecast {browse_1d}"
    );
    assert!(text.contains(
        "vigil_analytics_last_fit_timestamp_seconds{namespace=\"shop\",vigil_policy=\"checkout-availability\",vigil_rule=\"slo:budget\"}"
    ), "{text}");
    assert!(
        !text.contains("search-latency\""),
        "no data, no series:\n{text}"
    );
}
