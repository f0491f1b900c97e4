//! Forecast benchmark: accuracy, calibration and cost of `analytics::forecast`.
//!
//! - (a) Prophet's documented cross-validation on `example_wp_log_peyton_manning.csv` (initial
//!   730 days, period 180 days, horizon 365 days; weekly + yearly seasonality): MAPE and 80 %
//!   band coverage per horizon, averaged like Prophet's `performance_metrics` (each horizon
//!   row averages the 10 % of predictions with the nearest shorter horizons). Prophet's default
//!   model: MAPE 5.8 % and coverage 0.68 at 37 days.
//! - (b) rolling evaluation on NAB `realKnownCause/nyc_taxi.csv` (30-minute data, daily +
//!   weekly) at 1 hour and 1 day ahead: MAPE and band coverage.
//! - (c) the coverage each forecast published (measured on its own history) beside the
//!   coverage actually achieved, per horizon.
//! - (d) cost: fit time and peak memory for one week of 1-minute points (10,080 points, daily
//!   period, horizons 1h, 6h, 1d), and the implied series per hour on one core.
//!
//! Figures on the 2-core development machine (shared, load 1–6): (a) MAPE 5.47 % at 37 days
//! (Prophet 5.84 %), coverage 0.753–0.845 across horizons, every one within 0.75–0.85 (329
//! days at 0.753 and 256 days at 0.845, a prediction or two inside the range; 329 days was
//! 0.726 before the level-move floor); (b) 1 h MAPE 9.7 % on all outcomes, 6.2 % outside NAB's
//! anomaly windows, coverage 0.82 at 1 h and 0.77 at 1 d; (d) 141 ms per fit and 12.2 MiB
//! peak (release, load 2.4; 134 ms before the level-move floor, at another load).
//! `--profile dev` gives the same accuracy figures (the numeric crates are optimised there).
//!
//! Prints figures; asserts nothing. Run: `cargo bench -p vigil-operator --bench forecast`
//! (`FORECAST_BENCH=a,b,d` picks parts).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "benchmark: a failed setup step must stop it with its message"
)]

use std::time::Instant;

use vigil_operator::analytics::forecast::{fit_and_forecast, ForecastSettings};
use vigil_operator::analytics::series::{parse_timestamp, Series};

/// The operator binary's allocator, so the figures are those of the operator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DAY: i64 = 86_400;

fn fixture(path: &str) -> Series {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
    Series::from_csv(&text).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn truncated(series: &Series, len: usize) -> Series {
    Series {
        start: series.start,
        step: series.step,
        values: series.values[..len].to_vec(),
    }
}

/// One judged prediction: how far ahead, the error, and whether the band held the outcome.
struct Outcome {
    /// When the outcome happened (Unix seconds).
    at: i64,
    horizon: usize,
    ape: f64,
    inside: bool,
    published: Option<f64>,
}

fn summarise(label: &str, outcomes: &[Outcome], horizons: &[(usize, &str)], window: usize) {
    for (h, name) in horizons {
        let near: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| o.horizon <= *h && o.horizon + window > *h)
            .collect();
        if near.is_empty() {
            continue;
        }
        let count = near.len() as f64;
        let mape = near.iter().map(|o| o.ape).sum::<f64>() / count * 100.0;
        let coverage = near.iter().filter(|o| o.inside).count() as f64 / count;
        let published: Vec<f64> = near.iter().filter_map(|o| o.published).collect();
        let published = if published.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{:.3}",
                published.iter().sum::<f64>() / published.len() as f64
            )
        };
        println!(
            "{label}: horizon {name:>8}: MAPE {mape:5.2} %, band coverage {coverage:.3} \
             (published {published}), {} predictions",
            near.len()
        );
    }
}

fn judge(
    series: &Series,
    origin: usize,
    forecast: &[vigil_operator::analytics::forecast::HorizonBand],
) -> Vec<Outcome> {
    forecast
        .iter()
        .filter_map(|band| {
            let actual = *series.values.get(origin - 1 + band.horizon)?;
            (actual.is_finite() && actual != 0.0).then(|| Outcome {
                at: series.timestamp(origin - 1 + band.horizon),
                horizon: band.horizon,
                ape: ((actual - band.mean) / actual).abs(),
                inside: band.lower <= actual && actual <= band.upper,
                published: band.coverage,
            })
        })
        .collect()
}

/// (a) Prophet's cross-validation on the Peyton Manning series.
fn prophet_cross_validation() {
    let series = fixture("prophet/example_wp_log_peyton_manning.csv");
    let per_day = (DAY / series.step) as usize;
    let (initial, period, horizon) = (730 * per_day, 180 * per_day, 365 * per_day);
    let n = series.values.len();
    let mut cutoffs = Vec::new();
    let mut cutoff = n - horizon;
    while cutoff >= initial {
        cutoffs.push(cutoff);
        cutoff -= period;
    }
    let settings = ForecastSettings {
        periods: vec![7 * per_day, 365 * per_day],
        level: 0.8,
        horizons: (1..=horizon).collect(),
        events: Vec::new(),
    };
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for &cutoff in &cutoffs {
        let forecast = fit_and_forecast(&truncated(&series, cutoff), &settings)
            .unwrap_or_else(|e| panic!("cutoff {cutoff}: {e}"));
        outcomes.extend(judge(&series, cutoff, &forecast.bands));
    }
    println!(
        "(a) prophet peyton_manning: {} cutoffs, {} predictions, {:.1} s",
        cutoffs.len(),
        outcomes.len(),
        started.elapsed().as_secs_f64()
    );
    let rows: Vec<(usize, String)> = [37, 73, 110, 146, 183, 219, 256, 292, 329, 365]
        .iter()
        .map(|d| (d * per_day, format!("{d}d")))
        .collect();
    let rows: Vec<(usize, &str)> = rows.iter().map(|(h, s)| (*h, s.as_str())).collect();
    summarise("(a)", &outcomes, &rows, horizon / 10 + 1);
}

/// (b) Rolling evaluation on NAB's NYC taxi series at 1 hour and 1 day ahead.
fn nyc_taxi_rolling() {
    let series = fixture("nab/data/realKnownCause/nyc_taxi.csv");
    let per_day = (DAY / series.step) as usize;
    let settings = ForecastSettings {
        periods: vec![per_day, 7 * per_day],
        level: 0.8,
        horizons: vec![per_day / 24, per_day],
        events: Vec::new(),
    };
    let n = series.values.len();
    // Every 13 hours over the last 8 weeks: origins fall at every hour of the day.
    let stride = per_day * 13 / 24;
    let first = n - 8 * 7 * per_day;
    let started = Instant::now();
    let mut outcomes = Vec::new();
    let mut origins = 0;
    let mut origin = first;
    while origin + per_day <= n {
        let forecast = fit_and_forecast(&truncated(&series, origin), &settings)
            .unwrap_or_else(|e| panic!("origin {origin}: {e}"));
        outcomes.extend(judge(&series, origin, &forecast.bands));
        origins += 1;
        origin += stride;
    }
    println!(
        "(b) nab nyc_taxi: {origins} origins over the last 8 weeks, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let rows = [(per_day / 24, "1h"), (per_day, "1d")];
    summarise("(b) all outcomes", &outcomes, &rows, 1);
    // NAB's labelled anomaly windows (NYC marathon, Thanksgiving, Christmas, New Year, the
    // January blizzard) are what the detector should flag, not what a forecast should foresee.
    let windows = nab_windows("realKnownCause/nyc_taxi.csv");
    let normal: Vec<Outcome> = outcomes
        .into_iter()
        .filter(|o| {
            !windows
                .iter()
                .any(|(start, end)| (*start..=*end).contains(&o.at))
        })
        .collect();
    summarise("(b) outside NAB's anomaly windows", &normal, &rows, 1);
}

/// NAB's labelled anomaly windows of one series, as Unix seconds.
fn nab_windows(name: &str) -> Vec<(i64, i64)> {
    let path = format!(
        "{}/tests/fixtures/nab/labels/combined_windows.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let labels: serde_json::Value = serde_json::from_str(&text).expect("NAB windows JSON");
    let parse =
        |v: &serde_json::Value| parse_timestamp(v.as_str().expect("timestamp")).expect("timestamp");
    labels[name]
        .as_array()
        .expect("series in the windows file")
        .iter()
        .map(|w| (parse(&w[0]), parse(&w[1])))
        .collect()
}

/// (d) Cost of one fit on a week of 1-minute points.
fn cost() {
    let per_day = 1440;
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut noise = move || {
        // xorshift64* and Box-Muller: deterministic normal noise.
        let mut uniform = || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        };
        let (u, v) = (uniform().max(1e-12), uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    };
    let values: Vec<f64> = (0..7 * per_day)
        .map(|i| {
            let phase = 2.0 * std::f64::consts::PI * (i % per_day) as f64 / per_day as f64;
            100.0 + 30.0 * phase.sin() + 0.001 * i as f64 + 5.0 * noise()
        })
        .collect();
    let series = Series {
        start: 1_700_000_000,
        step: 60,
        values,
    };
    let settings = ForecastSettings {
        periods: vec![per_day],
        level: 0.8,
        horizons: vec![60, 360, per_day],
        events: Vec::new(),
    };
    let rss_before = proc_status_kib("VmRSS:");
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let runs = 5;
    let started = Instant::now();
    for _ in 0..runs {
        let forecast = fit_and_forecast(&series, &settings).expect("fit");
        std::hint::black_box(forecast);
    }
    let per_fit = started.elapsed().as_secs_f64() / runs as f64;
    let peak = proc_status_kib("VmHWM:").saturating_sub(rss_before);
    println!(
        "(d) cost: 10,080 1-minute points, daily period, horizons 1h/6h/1d: {:.0} ms per fit \
         (incl. {} calibration refits), peak memory +{:.1} MiB, {:.0} series/h on one core",
        per_fit * 1000.0,
        vigil_operator::analytics::forecast::ORIGINS,
        peak as f64 / 1024.0,
        3600.0 / per_fit
    );
}

fn proc_status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let parts = std::env::var("FORECAST_BENCH").unwrap_or_else(|_| "a,b,d".to_owned());
    if parts.contains('d') {
        cost();
    }
    if parts.contains('b') {
        nyc_taxi_rolling();
    }
    if parts.contains('a') {
        prophet_cross_validation();
    }
}
