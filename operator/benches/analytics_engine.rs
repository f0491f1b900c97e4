//! Analytics engine benchmark: what one job costs with the current forecast and detector.
//!
//! 1. One forecast refit of one week of 1-minute points (10,080) with a daily period, as the
//!    engine runs it (published horizons `1h`, `6h`, `1d` plus the 48-point crossing grid).
//! 2. One detector warm-up over the same week (10,080 `observe` calls).
//! 3. One engine cycle against a real Prometheus backfilled with that week for 10 series: the
//!    chunked `query_range` (two chunks per series) plus fits or warm-ups, for a forecast job
//!    and an anomaly job.
//!
//! Prints figures; asserts nothing beyond the runs succeeding.
//!
//! Run: `cargo bench -p vigil-operator --bench analytics_engine`
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "benchmark: a failed setup step must stop it with its message"
)]

#[path = "../tests/support/prometheus.rs"]
mod prometheus_support;

use std::path::Path;
use std::time::{Duration, Instant};

use vigil_crds::alert_policy::Direction;
use vigil_operator::analytics::detector::{Detector, DetectorSettings};
use vigil_operator::analytics::engine::exposition::{EngineMetrics, Published};
use vigil_operator::analytics::engine::jobs::{horizons, Job, JobKey, JobKind};
use vigil_operator::analytics::engine::prometheus::{PrometheusClient, PrometheusSettings};
use vigil_operator::analytics::engine::runner::{fit_series, RunContext, RunSettings};
use vigil_operator::analytics::engine::Engine;
use vigil_operator::analytics::series::Series;

use prometheus_support::{backfill, start, Running};

const STEP: i64 = 60;
const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;

fn value(t: i64, seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    let noise = ((*seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 8.0;
    100.0 + 50.0 * (2.0 * std::f64::consts::PI * t as f64 / DAY as f64).sin() + noise
}

fn week(end: i64, seed: u64) -> Series {
    let mut seed = seed;
    let start = end - WEEK;
    Series {
        start,
        step: STEP,
        values: (0..=WEEK / STEP)
            .map(|i| value(start + i * STEP, &mut seed))
            .collect(),
    }
}

fn job(rule: &str, kind: JobKind) -> Job {
    Job {
        key: JobKey {
            namespace: "bench".into(),
            policy: "p".into(),
            rule: rule.into(),
        },
        app: "app".into(),
        query: "bench_load".into(),
        periods: vec![(DAY / STEP) as usize],
        events: Vec::new(),
        kind,
    }
}

fn forecast_kind() -> JobKind {
    JobKind::Forecast {
        horizon: 6 * 3_600,
        capacity: 140.0,
        lookback: WEEK,
        horizons: horizons(6 * 3_600),
    }
}

fn anomaly_kind() -> JobKind {
    JobKind::Anomaly {
        baseline_window: WEEK,
        direction: Direction::Up,
    }
}

fn report(name: &str, mut runs: Vec<Duration>) {
    runs.sort();
    println!(
        "{name}: median {:.2} ms, min {:.2} ms, max {:.2} ms over {} runs",
        runs[runs.len() / 2].as_secs_f64() * 1e3,
        runs[0].as_secs_f64() * 1e3,
        runs[runs.len() - 1].as_secs_f64() * 1e3,
        runs.len()
    );
}

fn start_prometheus(dir: &Path, end: i64, series: usize) -> (Running, String) {
    let mut text = String::from("# HELP bench_load Load.\n# TYPE bench_load gauge\n");
    for s in 0..series {
        let w = week(end, s as u64 + 1);
        for (i, v) in w.values.iter().enumerate() {
            text.push_str(&format!(
                "bench_load{{instance=\"i{s}\"}} {v} {}\n",
                w.timestamp(i)
            ));
        }
    }
    text.push_str("# EOF\n");
    let data = backfill(dir, &text);
    let (running, port) = start(dir, &data, "global: {scrape_interval: 1m}\n");
    (running, format!("http://127.0.0.1:{port}"))
}

fn main() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let end = now - now % STEP;
    let forecast = job("Forecast", forecast_kind());
    let series = week(end, 1);
    let labels = Default::default();
    let runs = (0..5)
        .map(|_| {
            let started = Instant::now();
            let points = fit_series(&forecast, &labels, series.clone(), STEP, end).unwrap();
            assert!(!points.is_empty());
            started.elapsed()
        })
        .collect();
    report(
        "forecast refit, 1 week of 1-minute points (10,081), 3 horizons + 48-point crossing grid",
        runs,
    );

    let runs = (0..5)
        .map(|_| {
            let started = Instant::now();
            let mut detector = Detector::new(DetectorSettings {
                periods: vec![1440],
                level: 0.8,
            });
            for (i, v) in series.values.iter().enumerate() {
                std::hint::black_box(detector.observe(series.timestamp(i), *v));
            }
            started.elapsed()
        })
        .collect();
    report(
        "detector warm-up, 1 week of 1-minute points (10,081 observe calls)",
        runs,
    );

    let series_count = 10;
    let dir = tempfile::tempdir().unwrap();
    let (_prometheus, url) = start_prometheus(dir.path(), end, series_count);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (name, kind) in [("forecast", forecast_kind()), ("anomaly", anomaly_kind())] {
        let mut engine = Engine::new(
            RunContext {
                prometheus: PrometheusClient::new(PrometheusSettings {
                    url: url.clone(),
                    timeout: Duration::from_secs(60),
                    ..PrometheusSettings::default()
                })
                .unwrap(),
                published: Published::default(),
                metrics: EngineMetrics::new(&prometheus::Registry::new()).unwrap(),
                settings: RunSettings {
                    step: STEP,
                    refit_interval: 3_600,
                    max_series_per_rule: 500,
                },
            },
            2,
        );
        engine.set_jobs(vec![job(name, kind)]);
        let started = Instant::now();
        let outcomes = runtime.block_on(engine.run_all_at(end));
        let took = started.elapsed();
        println!(
            "engine cycle, {name} job over {series_count} series x 1 week at 1m from a real Prometheus: {:.0} ms ({:?}, {} published samples)",
            took.as_secs_f64() * 1e3,
            outcomes[0].1,
            engine.context().published.len()
        );
    }
}
