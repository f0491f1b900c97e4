//! One run of one job: read the rule's series from Prometheus, update its detectors or refit
//! its forecasts (one per result series, keyed by label set), and replace what the job
//! publishes. Model work runs on the blocking pool so a long fit never stalls the scheduler.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use vigil_crds::alert_policy::Direction;

use super::exposition::{EngineMetrics, Point, Published};
use super::jobs::{Job, JobKind};
use super::prometheus::{Labels, PrometheusClient, PrometheusError, RangeSeries};
use crate::analytics::detector::{Detector, DetectorSettings, Judgement};
use crate::analytics::forecast::{fit_and_forecast, ForecastSettings, HorizonBand};
use crate::analytics::normal;
use crate::analytics::series::Series;
use crate::analytics::AnalyticsError;
use crate::render::alerts::{POLICY_LABEL, RULE_LABEL};

/// Central probability of every published band.
pub const LEVEL: f64 = 0.8;
/// Points of the forecast grid the capacity crossing is searched on.
const CROSSING_GRID: usize = 48;
const WEEK: i64 = 7 * 86_400;

/// How jobs run.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// Seconds between points.
    pub step: i64,
    /// Seconds between forecast refits.
    pub refit_interval: i64,
    /// Most result series one rule follows; more are left out with a warning.
    pub max_series_per_rule: usize,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            step: 60,
            refit_interval: 3_600,
            max_series_per_rule: 500,
        }
    }
}

/// What shared parts a run uses.
#[derive(Clone)]
pub struct RunContext {
    pub prometheus: PrometheusClient,
    pub published: Published,
    pub metrics: EngineMetrics,
    pub settings: RunSettings,
}

/// How the last run of a job ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Models are current for `series` result series.
    Fitted { series: usize },
    /// The query returned no series.
    NoData,
    /// Too few points for the model (each series).
    TooLittleHistory { have: usize, need: usize },
    /// Prometheus failed or refused the query.
    PrometheusFailed {
        category: &'static str,
        message: String,
    },
    /// Every series' model failed.
    FitFailed { message: String },
}

impl Outcome {
    /// The `reason` of the `Analytics` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Outcome::Fitted { .. } => "Fitted",
            Outcome::NoData => "NoData",
            Outcome::TooLittleHistory { .. } => "TooLittleHistory",
            Outcome::PrometheusFailed { category, .. } => category,
            Outcome::FitFailed { .. } => "FitFailed",
        }
    }

    /// Whether the job is healthy.
    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Fitted { .. })
    }

    /// One line for humans.
    pub fn message(&self) -> String {
        match self {
            Outcome::Fitted { series } => format!("{series} series modelled"),
            Outcome::NoData => "the query returned no series".to_owned(),
            Outcome::TooLittleHistory { have, need } => {
                format!("{have} usable points, the model needs {need}")
            }
            Outcome::PrometheusFailed { message, .. } | Outcome::FitFailed { message } => {
                message.clone()
            }
        }
    }

    /// Whether the scheduler should back off.
    pub fn backs_off(&self) -> bool {
        matches!(self, Outcome::PrometheusFailed { .. })
    }
}

/// The detector of one result series and what it last judged.
#[derive(Clone, Debug)]
struct Tracked {
    detector: Detector,
    last_timestamp: i64,
    /// Whether each recent point fell inside its band (at most a week of points).
    inside: VecDeque<bool>,
    latest: Option<(i64, f64, Judgement)>,
}

/// Everything the engine keeps about one job between runs.
#[derive(Debug)]
pub struct JobState {
    pub job: Job,
    detectors: BTreeMap<Labels, Tracked>,
    /// End of the last range read (anomaly jobs read only newer points).
    last_end: Option<i64>,
    /// When the job last ran without a Prometheus failure, Unix seconds.
    pub last_success: Option<i64>,
    pub outcome: Option<Outcome>,
}

impl JobState {
    pub fn new(job: Job) -> JobState {
        JobState {
            job,
            detectors: BTreeMap::new(),
            last_end: None,
            last_success: None,
            outcome: None,
        }
    }

    /// Seconds after the last success at which the job's series are withdrawn.
    pub fn stale_after(&self, settings: &RunSettings) -> i64 {
        match self.job.kind {
            JobKind::Anomaly { .. } => (5 * settings.step).max(300),
            JobKind::Forecast { .. } | JobKind::Budget { .. } => {
                2 * settings.refit_interval + self.job.step(settings.step)
            }
        }
    }
}

/// The identity labels of a result series: its own labels (minus `__name__`, already gone),
/// then `namespace`, `app`, `vigil_policy` and `vigil_rule`, which win over the query's.
fn identity(job: &Job, labels: &Labels) -> Labels {
    let mut out = labels.clone();
    out.insert("namespace".to_owned(), job.key.namespace.clone());
    out.insert("app".to_owned(), job.app.clone());
    out.insert(POLICY_LABEL.to_owned(), job.key.policy.clone());
    out.insert(RULE_LABEL.to_owned(), job.key.rule.clone());
    out
}

/// Runs `state`'s job once at `now` (Unix seconds) and publishes its series.
pub async fn run(state: &mut JobState, ctx: &RunContext, now: i64) -> Outcome {
    let step = state.job.step(ctx.settings.step);
    let end = now - now.rem_euclid(step);
    let history = state.job.history_seconds(step);
    let start = match (&state.job.kind, state.last_end) {
        (JobKind::Anomaly { .. }, Some(last)) => (last + step).max(end - history),
        _ => end - history,
    };
    let outcome = if start > end {
        state.outcome.clone().unwrap_or(Outcome::NoData)
    } else {
        match fetch(&state.job, ctx, start, end, step).await {
            Ok(result) => {
                let result = capped(state, ctx, result);
                state.last_success = Some(now);
                match state.job.kind {
                    JobKind::Anomaly { .. } => anomaly(state, ctx, result, end).await,
                    JobKind::Forecast { .. } | JobKind::Budget { .. } => {
                        forecast(state, ctx, result, now).await
                    }
                }
            }
            Err(e) => failed(state, ctx, &e, now),
        }
    };
    ctx.metrics.series.set(ctx.published.len() as i64);
    state.outcome = Some(outcome.clone());
    outcome
}

/// The job's series from `start` to `end`. A budget job whose query fills the SLO's recording
/// in from the raw series reads the recording alone first, and the raw series only when the
/// recording does not reach back to `start` for every group (an SLO younger than its
/// window): computing the ratio from the raw series over the whole window costs Prometheus
/// far more, and an established SLO never needs it. When that query fails, the recording's
/// own points serve (the forecast then reads what the recording holds).
async fn fetch(
    job: &Job,
    ctx: &RunContext,
    start: i64,
    end: i64,
    step: i64,
) -> Result<Vec<RangeSeries>, PrometheusError> {
    let JobKind::Budget {
        recorded: Some(recorded),
        ..
    } = &job.kind
    else {
        return ctx
            .prometheus
            .query_range(&job.query, start, end, step)
            .await;
    };
    let own = ctx
        .prometheus
        .query_range(recorded, start, end, step)
        .await?;
    if reaches_back(&own) {
        return Ok(own);
    }
    match ctx
        .prometheus
        .query_range(&job.query, start, end, step)
        .await
    {
        Ok(filled) => Ok(filled),
        Err(e) => {
            tracing::warn!(
                job = %job.key,
                error = %e,
                "the raw error ratio could not be read; the recording alone is forecast"
            );
            Ok(own)
        }
    }
}

/// Whether every series (and at least one) has a point at the range's first step.
fn reaches_back(result: &[RangeSeries]) -> bool {
    !result.is_empty()
        && result
            .iter()
            .all(|r| r.series.values.first().is_some_and(|v| v.is_finite()))
}

fn failed(state: &mut JobState, ctx: &RunContext, e: &PrometheusError, now: i64) -> Outcome {
    ctx.metrics.prometheus_errors.inc();
    tracing::warn!(job = %state.job.key, error = %e, "prometheus query failed");
    let stale = state
        .last_success
        .is_none_or(|t| now - t > state.stale_after(&ctx.settings));
    if stale {
        ctx.published.remove(&state.job.key);
    }
    Outcome::PrometheusFailed {
        category: e.category(),
        message: e.to_string(),
    }
}

fn capped(state: &JobState, ctx: &RunContext, mut result: Vec<RangeSeries>) -> Vec<RangeSeries> {
    let max = ctx.settings.max_series_per_rule;
    if result.len() > max {
        tracing::warn!(
            job = %state.job.key,
            series = result.len(),
            max,
            "the query returns more series than one rule may follow; the rest are left out"
        );
        result.truncate(max);
    }
    result
}

/// The anomaly score published for `judgement` of a value `value` under `direction`: the score
/// of the incident the point belongs to (held while the incident lasts, so an alert's `for`
/// can hold), 0 for a deviation the rule does not alert on.
fn directional(judgement: Judgement, value: f64, direction: Direction) -> f64 {
    let up = value >= judgement.expected;
    match direction {
        Direction::Both => judgement.incident,
        Direction::Up if up => judgement.incident,
        Direction::Down if !up => judgement.incident,
        _ => 0.0,
    }
}

async fn anomaly(
    state: &mut JobState,
    ctx: &RunContext,
    result: Vec<RangeSeries>,
    end: i64,
) -> Outcome {
    let JobKind::Anomaly { direction, .. } = state.job.kind else {
        return Outcome::NoData;
    };
    let step = ctx.settings.step.max(1);
    let settings = DetectorSettings {
        periods: state.job.periods.clone(),
        level: LEVEL,
    };
    let week_points = usize::try_from(WEEK / step).unwrap_or(usize::MAX);
    let mut detectors = std::mem::take(&mut state.detectors);
    let started = Instant::now();
    let work = tokio::task::spawn_blocking(move || {
        let mut updated = 0;
        for RangeSeries { labels, series } in result {
            let tracked = detectors.entry(labels).or_insert_with(|| Tracked {
                detector: Detector::new(settings.clone()),
                last_timestamp: i64::MIN,
                inside: VecDeque::new(),
                latest: None,
            });
            let mut any = false;
            for (i, &value) in series.values.iter().enumerate() {
                let timestamp = series.timestamp(i);
                if !value.is_finite() || timestamp <= tracked.last_timestamp {
                    continue;
                }
                let mut judgement = tracked.detector.observe(timestamp, value);
                judgement.score = directional(judgement, value, direction);
                tracked
                    .inside
                    .push_back((judgement.lower..=judgement.upper).contains(&value));
                if tracked.inside.len() > week_points {
                    tracked.inside.pop_front();
                }
                tracked.latest = Some((timestamp, value, judgement));
                tracked.last_timestamp = timestamp;
                any = true;
            }
            updated += usize::from(any);
        }
        (detectors, updated)
    })
    .await;
    let (mut detectors, updated) = match work {
        Ok(done) => done,
        Err(e) => {
            ctx.metrics.fits.with_label_values(&["failed"]).inc();
            return Outcome::FitFailed {
                message: format!("the detector update panicked: {e}"),
            };
        }
    };
    ctx.metrics
        .fit_duration
        .observe(started.elapsed().as_secs_f64());
    ctx.metrics
        .fits
        .with_label_values(&["fitted"])
        .inc_by(updated as u64);
    // A series the query stopped returning is forgotten once stale.
    let stale_after = state.stale_after(&ctx.settings);
    detectors.retain(|_, t| t.latest.is_some_and(|(ts, _, _)| end - ts <= stale_after));
    state.last_end = Some(end);
    let mut points = Vec::new();
    for (labels, tracked) in &detectors {
        let Some((_, value, judgement)) = tracked.latest else {
            continue;
        };
        let labels = identity(&state.job, labels);
        let coverage = tracked.inside.iter().filter(|i| **i).count() as f64
            / tracked.inside.len().max(1) as f64;
        for (name, v) in [
            ("vigil:baseline:actual", value),
            ("vigil:baseline:expected", judgement.expected),
            ("vigil:baseline:lower", judgement.lower),
            ("vigil:baseline:upper", judgement.upper),
            ("vigil:baseline:coverage", coverage),
            ("vigil:anomaly:score", judgement.score),
        ] {
            points.push(Point {
                name,
                labels: labels.clone(),
                value: v,
            });
        }
    }
    let series = detectors.len();
    state.detectors = detectors;
    let k = &state.job.key;
    ctx.metrics
        .last_fit
        .with_label_values(&[&k.namespace, &k.policy, &k.rule])
        .set(end as f64);
    ctx.published.replace(k, points);
    if series == 0 {
        Outcome::NoData
    } else {
        Outcome::Fitted { series }
    }
}

/// The probability that the series exceeds `capacity` at some horizon of `bands` (those up to
/// the rule's horizon), reading each band as a normal distribution whose upper half-width is
/// the `LEVEL` quantile; the largest single-horizon probability (a lower bound of the union).
pub fn capacity_probability(bands: &[HorizonBand], capacity: f64) -> f64 {
    let z = normal::quantile((1.0 + LEVEL) / 2.0);
    bands
        .iter()
        .filter(|b| b.mean.is_finite() && b.upper.is_finite())
        .map(|b| {
            let sigma = (b.upper - b.mean) / z;
            if sigma > 0.0 {
                normal::tail((capacity - b.mean) / sigma)
            } else if b.mean >= capacity {
                1.0
            } else {
                0.0
            }
        })
        .fold(0.0, f64::max)
}

/// Steps ahead (fractional) at which the upper band first reaches `capacity`, interpolating
/// linearly between grid horizons and from `(0, last)`; `None` if it never does.
pub fn crossing_steps(bands: &[HorizonBand], last: f64, capacity: f64) -> Option<f64> {
    let mut previous = (0.0, last);
    if last >= capacity {
        return Some(0.0);
    }
    for band in bands.iter().filter(|b| b.upper.is_finite()) {
        let here = (band.horizon as f64, band.upper);
        if here.1 >= capacity {
            let rise = here.1 - previous.1;
            let part = if rise > 0.0 {
                (capacity - previous.1) / rise
            } else {
                1.0
            };
            return Some(previous.0 + part.clamp(0.0, 1.0) * (here.0 - previous.0));
        }
        previous = here;
    }
    None
}

/// Where a forecast made at `now` starts: the series' last value, and how many steps `now`
/// lies past it, so that horizons count from `now` and not from the last point.
pub(super) struct Ahead {
    /// Seconds per step.
    pub step: i64,
    /// Whole steps from the last value to `now`.
    pub gap: usize,
    /// The last value (NaN when there is none).
    pub last_value: f64,
}

impl Ahead {
    /// Trims the trailing gaps of `series` (the newest evaluation may not be in yet) and
    /// measures how far `now` lies past its last value.
    pub fn trim(series: &mut Series, step: i64, now: i64) -> Ahead {
        while series.values.last().is_some_and(|v| !v.is_finite()) {
            series.values.pop();
        }
        let last_time = series.timestamp(series.values.len().saturating_sub(1));
        Ahead {
            step,
            gap: usize::try_from(((now - last_time).max(0)) / step).unwrap_or(0),
            last_value: series.values.last().copied().unwrap_or(f64::NAN),
        }
    }

    /// Whole steps covering `seconds`, at least one.
    pub fn steps_of(&self, seconds: i64) -> usize {
        usize::try_from((seconds + self.step - 1) / self.step)
            .unwrap_or(1)
            .max(1)
    }

    /// The forecast horizon, in steps after the last value, of `seconds` after `now`.
    pub fn horizon_of(&self, seconds: i64) -> usize {
        self.steps_of(seconds) + self.gap
    }

    /// Seconds after `now` of `steps` after the last value (never negative).
    pub fn seconds_from_now(&self, steps: f64) -> f64 {
        ((steps - self.gap as f64) * self.step as f64).max(0.0)
    }
}

/// The forecast settings of `job` at the `wanted` horizons (steps after the last value), which
/// are sorted and deduplicated here.
pub(super) fn forecast_settings(job: &Job, mut wanted: Vec<usize>) -> ForecastSettings {
    wanted.sort_unstable();
    wanted.dedup();
    ForecastSettings {
        periods: job.periods.clone(),
        level: LEVEL,
        horizons: wanted,
        events: job.events.clone(),
    }
}

/// One forecast fit of one series at `now`: the points it publishes (bands per published
/// horizon, capacity probability and crossing), or why there are none.
pub fn fit_series(
    job: &Job,
    labels: &Labels,
    mut series: Series,
    step: i64,
    now: i64,
) -> Result<Vec<Point>, AnalyticsError> {
    let JobKind::Forecast {
        horizon,
        capacity,
        horizons,
        ..
    } = &job.kind
    else {
        return Ok(Vec::new());
    };
    // Horizons count from the last point with a value: the newest scrape may not be in yet.
    let ahead = Ahead::trim(&mut series, step, now);
    let rule_steps = ahead.steps_of(*horizon);
    let mut wanted: Vec<usize> = horizons
        .iter()
        .map(|h| ahead.horizon_of(h.seconds))
        .collect();
    wanted
        .extend((1..=CROSSING_GRID).map(|i| (rule_steps * i).div_ceil(CROSSING_GRID) + ahead.gap));
    let forecast = fit_and_forecast(&series, &forecast_settings(job, wanted))?;
    let mut points = Vec::new();
    let base = identity(job, labels);
    for h in horizons {
        let Some(band) = forecast
            .bands
            .iter()
            .find(|b| b.horizon == ahead.horizon_of(h.seconds))
        else {
            continue;
        };
        let mut labels = base.clone();
        labels.insert("horizon".to_owned(), h.label.clone());
        let mut push = |name, value| {
            points.push(Point {
                name,
                labels: labels.clone(),
                value,
            })
        };
        push("vigil:forecast:mean", band.mean);
        // No band without a backtest to calibrate it on: its edges are left out, not made up.
        if band.lower.is_finite() && band.upper.is_finite() {
            push("vigil:forecast:lower", band.lower);
            push("vigil:forecast:upper", band.upper);
        }
        if let Some(coverage) = band.coverage {
            push("vigil:forecast:coverage", coverage);
        }
    }
    let within: Vec<HorizonBand> = forecast
        .bands
        .iter()
        .filter(|b| b.horizon <= rule_steps + ahead.gap)
        .cloned()
        .collect();
    if within.iter().any(|b| b.upper.is_finite()) {
        points.push(Point {
            name: "vigil:forecast:capacity_probability",
            labels: base.clone(),
            value: capacity_probability(&within, *capacity),
        });
    }
    if let Some(steps) = crossing_steps(&within, ahead.last_value, *capacity) {
        points.push(Point {
            name: "vigil:forecast:capacity_crossing_seconds",
            labels: base,
            value: ahead.seconds_from_now(steps),
        });
    }
    Ok(points)
}

async fn forecast(
    state: &mut JobState,
    ctx: &RunContext,
    result: Vec<RangeSeries>,
    now: i64,
) -> Outcome {
    if result.is_empty() {
        ctx.published.replace(&state.job.key, Vec::new());
        return Outcome::NoData;
    }
    let job = state.job.clone();
    let step = job.step(ctx.settings.step);
    let metrics = ctx.metrics.clone();
    let work = tokio::task::spawn_blocking(move || {
        let mut points = Vec::new();
        let (mut fitted, mut short, mut failure) = (0, None, None);
        for RangeSeries { labels, series } in result {
            let started = Instant::now();
            let fit = match job.kind {
                JobKind::Budget { .. } => super::budget::fit_series(&job, &labels, series, now),
                _ => fit_series(&job, &labels, series, step, now),
            };
            metrics
                .fit_duration
                .observe(started.elapsed().as_secs_f64());
            match fit {
                Ok(more) => {
                    metrics.fits.with_label_values(&["fitted"]).inc();
                    points.extend(more);
                    fitted += 1;
                }
                Err(AnalyticsError::TooShort { have, need }) => {
                    metrics.fits.with_label_values(&["too_little_history"]).inc();
                    short = Some((have, need));
                }
                Err(e) => {
                    metrics.fits.with_label_values(&["failed"]).inc();
                    tracing::warn!(job = %job.key, labels = ?labels, error = %e, "forecast fit failed");
                    failure = Some(e.to_string());
                }
            }
        }
        (points, fitted, short, failure)
    })
    .await;
    let (points, fitted, short, failure) = match work {
        Ok(done) => done,
        Err(e) => {
            ctx.metrics.fits.with_label_values(&["failed"]).inc();
            (Vec::new(), 0, None, Some(format!("the fit panicked: {e}")))
        }
    };
    let k = &state.job.key;
    ctx.published.replace(k, points);
    if fitted > 0 {
        ctx.metrics
            .last_fit
            .with_label_values(&[&k.namespace, &k.policy, &k.rule])
            .set(now as f64);
        return Outcome::Fitted { series: fitted };
    }
    match (short, failure) {
        (Some((have, need)), _) => Outcome::TooLittleHistory { have, need },
        (None, Some(message)) => Outcome::FitFailed { message },
        (None, None) => Outcome::NoData,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn band(horizon: usize, mean: f64, upper: f64) -> HorizonBand {
        HorizonBand {
            horizon,
            mean,
            lower: mean - (upper - mean),
            upper,
            coverage: Some(0.8),
        }
    }

    /// A capacity at a band's upper edge is exceeded with probability 10 %; far above, almost
    /// never; below the mean, more than half the time; the largest horizon's risk wins.
    #[test]
    fn capacity_probability_reads_the_band() {
        let bands = [band(1, 10.0, 12.0), band(2, 10.0, 14.0)];
        assert!((capacity_probability(&bands[..1], 12.0) - 0.1).abs() < 1e-4);
        assert!(capacity_probability(&bands, 100.0) < 1e-6);
        assert!(capacity_probability(&bands, 9.0) > 0.5);
        assert!(capacity_probability(&bands, 14.0) > capacity_probability(&bands[..1], 14.0));
        assert_eq!(capacity_probability(&[], 1.0), 0.0);
    }

    /// The crossing is interpolated between grid horizons, immediate when the last value is
    /// already over, and absent when the upper band never reaches capacity.
    #[test]
    fn crossing_is_interpolated() {
        let bands = [band(10, 5.0, 8.0), band(20, 5.0, 12.0)];
        assert_eq!(crossing_steps(&bands, 4.0, 10.0), Some(15.0));
        assert_eq!(crossing_steps(&bands, 4.0, 6.0), Some(5.0));
        assert_eq!(crossing_steps(&bands, 11.0, 10.0), Some(0.0));
        assert_eq!(crossing_steps(&bands, 4.0, 13.0), None);
    }

    /// Direction zeroes the score of deviations the rule does not alert on.
    #[test]
    fn direction_filters_the_score() {
        let j = Judgement {
            expected: 10.0,
            lower: 8.0,
            upper: 12.0,
            score: 0.0,
            incident: 0.9,
        };
        assert_eq!(directional(j, 20.0, Direction::Up), 0.9);
        assert_eq!(directional(j, 0.0, Direction::Up), 0.0);
        assert_eq!(directional(j, 0.0, Direction::Down), 0.9);
        assert_eq!(directional(j, 20.0, Direction::Down), 0.0);
        assert_eq!(directional(j, 0.0, Direction::Both), 0.9);
    }
}
