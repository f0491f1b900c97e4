//! SLO budget forecast benchmark: what one budget fit of one SLI ratio series costs, as the
//! engine runs it on every refit (the forecast with its calibration backtests, then the
//! rolling-window projection), for the windows users pick: 30 days and 28 days at the 5-minute
//! ratio step (8,641 and 8,065 points, a one-week horizon), and 7 days (2,017 points, 42 h).
//! The error ratio has a daily pattern and noise; the last two days grow, so the projection
//! runs to an exhaustion.
//!
//! Prints figures and the projection; asserts nothing beyond the fits succeeding.
//!
//! Run: `cargo bench -p vigil-operator --bench slo_budget`
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "benchmark: a failed setup step must stop it with its message"
)]

use std::time::{Duration, Instant};

use vigil_crds::Slo;
use vigil_operator::analytics::engine::budget::fit_series;
use vigil_operator::analytics::engine::jobs::slo_jobs;
use vigil_operator::analytics::engine::prometheus::Labels;
use vigil_operator::analytics::series::Series;

const STEP: i64 = 300;
const DAY: i64 = 86_400;
const RUNS: usize = 5;

/// `days` of a 0.2 % error ratio with a daily wave and noise, growing to 2 % over the last two
/// days, ending at `end`.
fn history(end: i64, days: i64) -> Series {
    let mut seed: u64 = 5;
    let start = end - days * DAY;
    let values = (0..=days * DAY / STEP)
        .map(|i| {
            let t = start + i * STEP;
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let noise = ((seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.0006;
            let wave = 0.0008 * (2.0 * std::f64::consts::PI * t as f64 / DAY as f64).sin();
            let ramp = ((t - (end - 2 * DAY)) as f64 / (2 * DAY) as f64).clamp(0.0, 1.0);
            (0.002 + wave + noise + 0.018 * ramp).max(0.0)
        })
        .collect();
    Series {
        start,
        step: STEP,
        values,
    }
}

fn slo(window: &str) -> Slo {
    serde_yaml::from_str(&format!(
        "apiVersion: vigil.dev/v1alpha1\nkind: SLO\n\
         metadata: {{name: bench, namespace: shop}}\n\
         spec: {{appRef: {{name: checkout}}, objective: 99.5, window: {window}, sli: {{availability: {{}}}}}}\n"
    ))
    .unwrap()
}

fn main() {
    let end = 1_800_000_000 - 1_800_000_000 % STEP;
    for (window, days) in [("30d", 30), ("28d", 28), ("7d", 7)] {
        let job = slo_jobs(&[slo(window)], &[], 60).remove(0);
        let series = history(end, days);
        let points = series.values.len();
        let mut runs: Vec<Duration> = Vec::new();
        let mut published = Vec::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            published = fit_series(&job, &Labels::new(), series.clone(), end).unwrap();
            runs.push(started.elapsed());
        }
        runs.sort();
        let figure = |name: &str| {
            published
                .iter()
                .find(|p| p.name == name)
                .map_or("absent".to_owned(), |p| format!("{:.4}", p.value))
        };
        println!(
            "budget fit, {window} window ({points} points): median {:.0} ms, min {:.0} ms, max {:.0} ms over {RUNS} runs; \
             exhaustion in {} s, probability {}",
            runs[RUNS / 2].as_secs_f64() * 1e3,
            runs[0].as_secs_f64() * 1e3,
            runs[RUNS - 1].as_secs_f64() * 1e3,
            figure("vigil:slo:budget_exhaustion_seconds"),
            figure("vigil:slo:budget_exhaustion_probability"),
        );
    }
}
