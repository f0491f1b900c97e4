//! Seasonal forecasts with calibrated intervals.
//!
//! [`fit_and_forecast`] fits a model to a [`Series`] and forecasts it at each requested
//! horizon. The published band is not the model's nominal interval: the model is backtested on
//! the series' own recent history (rolling origin) and the band is made of the measured errors,
//! whose coverage on that history is published beside it.
//!
//! The point model ([`model`]) is MSTL + AutoETS from augurs, with known events learned and
//! applied, positive series modelled on their logarithm and a short-horizon correction from
//! the latest innovations.
//!
//! Calibration. Per-horizon quantiles from a dozen origins drifted from the level across
//! horizons: one origin's errors at neighbouring leads move together, so a horizon's pool held
//! about as many independent samples as origins; long leads were reached by the oldest origins
//! only; and the pool's edge at the longest horizon mixed in shorter, smaller errors. Hence:
//! - Rolling origins: the model is refitted at origins spaced back from the last point (at most
//!   a third of the longest horizon apart), each on the few cycles before it, and each
//!   contributes its errors at the leads whose outcomes are known — the most recent origins
//!   calibrate the short leads. Refits cost in proportion to the points they read, so the
//!   number of origins is what a fixed budget of points affords ([`ORIGINS`] to 48).
//! - Per-lead scale: errors grow with the lead, unevenly and noisily from one lead to the next.
//!   Each lead's typical error (mean absolute error over the origins) is fitted non-decreasing
//!   in the lead (pool-adjacent-violators): the typical error never shrinks further ahead.
//! - Pooled quantiles: errors divided by their lead's scale are comparable across leads, so a
//!   horizon's quantiles come from every origin's errors at leads from half to twice the
//!   horizon rather than from the few origins that reach that one lead; they are the
//!   finite-sample (conformal) order statistics, `ceil((n + 1) q)`-th, and the band at the
//!   horizon is them times its scale.
//! - Absolute or relative errors (relative to the forecast), whichever covers closer to the
//!   level out of sample near the horizon.
//! - Coverage is measured out of sample: quantiles from the older half of the origins are
//!   checked against the errors of the newer half at the leads near the horizon.

mod model;
#[cfg(test)]
mod tests;

use augurs::seasons::{Detector as _, PeriodogramDetector};

use self::model::TrendChoice;
use super::series::Series;
use super::AnalyticsError;

/// Fewest rolling origins the band is calibrated on (each one refit of the model).
pub const ORIGINS: usize = 12;
/// Most rolling origins, when the refit window is short.
const MAX_ORIGINS: usize = 48;
/// Points all calibration refits read together, at most (more origins for shorter windows).
const REFIT_BUDGET: usize = 12 * 4320;
/// Errors wanted to measure coverage near a horizon; fewer widen the leads counted as near.
const MIN_ERRORS: usize = 30;
/// Cycles of the longest period each calibration refit reads.
const CALIBRATION_CYCLES: usize = 3;
/// Fewest usable points any forecast is made from.
const MIN_POINTS: usize = 16;

/// A dated special period (a tax deadline, a store feature) the model treats as such.
#[derive(Clone, Debug, PartialEq)]
pub struct KnownEvent {
    /// Name; occurrences with one name share their learned effect.
    pub name: String,
    /// Start, Unix seconds (inclusive).
    pub start: i64,
    /// End, Unix seconds (exclusive).
    pub end: i64,
}

/// How a forecast is fitted.
#[derive(Clone, Debug, PartialEq)]
pub struct ForecastSettings {
    /// Seasonal periods in steps (such as 1440 for daily at 1-minute steps); empty: detected.
    pub periods: Vec<usize>,
    /// Central probability of the published band, such as `0.8`.
    pub level: f64,
    /// Horizons to forecast, in steps ahead (at least 1 each).
    pub horizons: Vec<usize>,
    /// Special periods, past and future.
    pub events: Vec<KnownEvent>,
}

impl Default for ForecastSettings {
    fn default() -> Self {
        ForecastSettings {
            periods: Vec::new(),
            level: 0.8,
            horizons: vec![1],
            events: Vec::new(),
        }
    }
}

/// The forecast at one horizon.
#[derive(Clone, Debug, PartialEq)]
pub struct HorizonBand {
    /// Steps ahead of the series' last point.
    pub horizon: usize,
    /// Expected value.
    pub mean: f64,
    /// Lower edge of the calibrated band; `NaN` when the history held no backtest to calibrate
    /// it on (a band is never made up).
    pub lower: f64,
    /// Upper edge of the calibrated band.
    pub upper: f64,
    /// Share of backtested outcomes the band held (`None` when history was too short to tell).
    pub coverage: Option<f64>,
}

/// A fitted forecast.
#[derive(Clone, Debug, PartialEq)]
pub struct Forecast {
    /// Seasonal periods used, in steps.
    pub periods: Vec<usize>,
    /// One band per requested horizon, in the order requested.
    pub bands: Vec<HorizonBand>,
}

/// Fits `series` and forecasts each horizon of `settings`.
pub fn fit_and_forecast(
    series: &Series,
    settings: &ForecastSettings,
) -> Result<Forecast, AnalyticsError> {
    validate(series, settings)?;
    let periods = if settings.periods.is_empty() {
        detect_periods(series)
    } else {
        settings.periods.clone()
    };
    let need = periods
        .iter()
        .min()
        .map_or(MIN_POINTS, |p| (2 * p).max(MIN_POINTS));
    if series.usable() < need {
        return Err(AnalyticsError::TooShort {
            have: series.usable(),
            need,
        });
    }
    let horizon = settings.horizons.iter().copied().max().unwrap_or(1);
    let events = &settings.events;
    let values = &series.values;
    let full = model::fit(
        values,
        series.start,
        series.step,
        &periods,
        events,
        &TrendChoice::Auto,
        horizon,
    )?;
    let errors = rolling_errors(series, &periods, events, &full.trend_choice, horizon, need);
    let pooled = [false, true].map(|relative| Pooled::fit(&errors, relative));
    let bands = settings
        .horizons
        .iter()
        .map(|&h| {
            let mean = full.point(h, events);
            let band = calibrate(&errors, &pooled, h, settings.level);
            // No backtest at all (too little history): no band rather than a certain one.
            let (lower, upper) = band.map_or((f64::NAN, f64::NAN), |b| b.edges(mean));
            HorizonBand {
                horizon: h,
                mean,
                lower,
                upper,
                coverage: band.and_then(|b| b.coverage),
            }
        })
        .collect();
    Ok(Forecast {
        periods: full.periods,
        bands,
    })
}

fn validate(series: &Series, settings: &ForecastSettings) -> Result<(), AnalyticsError> {
    let invalid = |field, reason: String| Err(AnalyticsError::InvalidSetting { field, reason });
    if !(settings.level > 0.0 && settings.level < 1.0) {
        return invalid(
            "level",
            format!("{} is not between 0 and 1", settings.level),
        );
    }
    if settings.horizons.is_empty() {
        return invalid("horizons", "at least one horizon is needed".into());
    }
    if settings.horizons.contains(&0) {
        return invalid("horizons", "a horizon is at least one step".into());
    }
    if let Some(p) = settings.periods.iter().find(|p| **p < 2) {
        return invalid(
            "periods",
            format!("a seasonal period is at least 2 steps, not {p}"),
        );
    }
    if series.step < 1 {
        return invalid("step", format!("{} s is not a step", series.step));
    }
    if let Some(e) = settings.events.iter().find(|e| e.end <= e.start) {
        return invalid(
            "events",
            format!("event {:?} ends before it starts", e.name),
        );
    }
    Ok(())
}

/// Seasonal periods found by augurs' periodogram detector, each refined to the autocorrelation
/// peak near it and snapped to a day or a week when within 5 % of one.
pub fn detect_periods(series: &Series) -> Vec<usize> {
    let mut filled = series.values.clone();
    if !model::fill_gaps(&mut filled) || filled.len() < 2 * MIN_POINTS {
        return Vec::new();
    }
    let max_period = (filled.len() / 2).min(u32::MAX as usize) as u32;
    let detector = PeriodogramDetector::builder()
        .max_period(max_period)
        .build();
    // Strongest last.
    let mut found: Vec<usize> = Vec::new();
    for raw in detector.detect(&filled).into_iter().rev() {
        let refined = refine_period(&filled, raw as usize, series.step);
        if refined >= 2 && 2 * refined <= filled.len() && !found.contains(&refined) {
            found.push(refined);
        }
        if found.len() == 2 {
            break;
        }
    }
    found.sort_unstable();
    found
}

fn refine_period(values: &[f64], period: usize, step: i64) -> usize {
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let centred: Vec<f64> = values.iter().map(|v| v - mean).collect();
    let acf = |lag: usize| -> f64 {
        centred[lag..]
            .iter()
            .zip(&centred)
            .map(|(a, b)| a * b)
            .sum::<f64>()
            / (n - lag) as f64
    };
    let peak_near = |period: usize| {
        let (low, high) = ((period * 4 / 5).max(2), (period * 6 / 5).min(n / 2));
        (low..=high)
            .max_by(|a, b| acf(*a).total_cmp(&acf(*b)))
            .unwrap_or(period)
    };
    let mut best = peak_near(period);
    // The periodogram's coarse bins can land on a multiple of the cycle, whose autocorrelation
    // is as high as the cycle's own: prefer the shortest such cycle.
    for divisor in [3, 2] {
        let shorter = peak_near(best / divisor);
        if shorter >= 2 && acf(shorter) >= 0.9 * acf(best) {
            best = shorter;
            break;
        }
    }
    for calendar in [86_400 / step, 604_800 / step] {
        let calendar = calendar as usize;
        if calendar >= 2 && (best as f64 - calendar as f64).abs() <= 0.05 * calendar as f64 {
            return calendar;
        }
    }
    best
}

/// Forecast errors at one lead time, from one origin.
#[derive(Clone, Copy, Debug)]
struct Miss {
    origin: usize,
    lead: usize,
    actual: f64,
    forecast: f64,
}

/// Refits at rolling origins back from the last point and collects every lead's error whose
/// outcome is known.
fn rolling_errors(
    series: &Series,
    periods: &[usize],
    events: &[KnownEvent],
    trend: &TrendChoice,
    horizon: usize,
    min_train: usize,
) -> Vec<Miss> {
    let values = &series.values;
    let n = values.len();
    // Short horizons' coverage is measured on neighbouring leads, so forecast a few steps on.
    let reach = horizon.max(4);
    let window = (CALIBRATION_CYCLES * periods.iter().copied().max().unwrap_or(0))
        .max(reach + min_train)
        .max(model::TREND_WINDOW);
    // A refit costs about in proportion to the points it reads: short windows afford more
    // origins for the same cost.
    let count = (REFIT_BUDGET / window).clamp(ORIGINS, MAX_ORIGINS);
    // Origins run up to the last point (each contributes the leads whose outcomes are known),
    // spaced so that they span the history but a third of the reach at most.
    let span = n.saturating_sub(min_train + 1);
    let stride = (reach / 3).min(span / count).max(1);
    let mut misses = Vec::new();
    for k in 0..count {
        let Some(origin) = (n - 1).checked_sub(k * stride) else {
            break;
        };
        if origin < min_train {
            break;
        }
        // Each refit reads the last few cycles only: the refits are most of a fit's cost.
        let first = origin.saturating_sub(window);
        let history = &values[first..origin];
        if history.iter().filter(|v| v.is_finite()).count() < min_train {
            break;
        }
        let Ok(fitted) = model::fit(
            history,
            series.start + first as i64 * series.step,
            series.step,
            periods,
            events,
            trend,
            reach.min(n - origin),
        ) else {
            continue;
        };
        for lead in 1..=reach.min(n - origin) {
            let actual = values[origin - 1 + lead];
            let forecast = fitted.point(lead, events);
            if actual.is_finite() && forecast.is_finite() {
                misses.push(Miss {
                    origin,
                    lead,
                    actual,
                    forecast,
                });
            }
        }
    }
    misses
}

impl Miss {
    /// The error, as a share of the forecast if `relative`.
    fn error(&self, relative: bool) -> f64 {
        let e = self.actual - self.forecast;
        if relative {
            e / self.forecast.abs().max(f64::MIN_POSITIVE)
        } else {
            e
        }
    }
}

/// The typical size of the errors per lead: their mean absolute value at each lead, fitted
/// non-decreasing in the lead (pool-adjacent-violators), since a forecast further ahead is no
/// more certain than a nearer one.
#[derive(Clone, Debug)]
struct LeadScale {
    /// Index: lead; index 0 repeats lead 1.
    per_lead: Vec<f64>,
}

impl LeadScale {
    fn fit(misses: &[Miss], relative: bool) -> LeadScale {
        let reach = misses.iter().map(|m| m.lead).max().unwrap_or(0);
        let mut sums = vec![(0.0, 0usize); reach + 1];
        for m in misses {
            let e = m.error(relative);
            if e.is_finite() {
                sums[m.lead].0 += e.abs();
                sums[m.lead].1 += 1;
            }
        }
        // Blocks of consecutive leads (sum, count, leads) with non-decreasing means; a lead
        // without errors joins its neighbour.
        let mut blocks: Vec<(f64, usize, usize)> = Vec::new();
        for (sum, count) in sums.into_iter().skip(1) {
            blocks.push((sum, count, 1));
            while let [.., (s1, c1, l1), (s2, c2, l2)] = blocks[..] {
                let violates = c1 == 0 || c2 == 0 || s1 * c2 as f64 > s2 * c1 as f64;
                if !violates {
                    break;
                }
                blocks.truncate(blocks.len() - 2);
                blocks.push((s1 + s2, c1 + c2, l1 + l2));
            }
        }
        let mut per_lead = Vec::with_capacity(reach + 1);
        for (sum, count, leads) in blocks {
            let mean = sum / count as f64;
            // No error, or none but zeros: unit scale, the quantiles then carry the size.
            let mean = if mean > 0.0 { mean } else { 1.0 };
            per_lead.extend(std::iter::repeat_n(mean, leads));
        }
        let first = per_lead.first().copied().unwrap_or(1.0);
        per_lead.insert(0, first);
        LeadScale { per_lead }
    }

    /// The scale at `lead` (the furthest lead's beyond the backtested reach).
    fn at(&self, lead: usize) -> f64 {
        self.per_lead
            .get(lead)
            .or(self.per_lead.last())
            .copied()
            .unwrap_or(1.0)
    }
}

/// A calibrated band: error quantiles added to a forecast.
#[derive(Clone, Copy, Debug)]
struct Band {
    low: f64,
    high: f64,
    relative: bool,
    coverage: Option<f64>,
}

impl Band {
    fn edges(&self, mean: f64) -> (f64, f64) {
        let scale = if self.relative { mean.abs() } else { 1.0 };
        (mean + self.low * scale, mean + self.high * scale)
    }
}

/// How errors of one kind (absolute or relative) are normalised and split.
struct Pooled {
    relative: bool,
    scale: LeadScale,
    /// The median origin: older ones calibrate, newer ones (from this one on) check.
    split: Option<usize>,
}

impl Pooled {
    fn fit(misses: &[Miss], relative: bool) -> Pooled {
        let mut origins: Vec<usize> = misses.iter().map(|m| m.origin).collect();
        origins.sort_unstable();
        origins.dedup();
        // Origins are older the smaller they are.
        let split = (origins.len() >= 2)
            .then(|| origins.get(origins.len() / 2).copied())
            .flatten();
        Pooled {
            relative,
            scale: LeadScale::fit(misses, relative),
            split,
        }
    }

    /// An error in units of its lead's scale.
    fn normalised(&self, m: &Miss) -> f64 {
        m.error(self.relative) / self.scale.at(m.lead)
    }

    /// The band at `horizon` in units of its scale, from the `pool`'s errors, with its
    /// coverage of the newer origins' errors at `near` leads.
    fn band(&self, pool: &[&Miss], near: &[&Miss], level: f64) -> Option<(f64, f64, Option<f64>)> {
        let (low, high) = quantiles(pool.iter().map(|m| self.normalised(m)).collect(), level)?;
        let coverage = self.split.and_then(|split| {
            let older = pool.iter().filter(|m| m.origin < split);
            let (lo, hi) = quantiles(older.map(|m| self.normalised(m)).collect(), level)?;
            let newer: Vec<f64> = near
                .iter()
                .filter(|m| m.origin >= split)
                .map(|m| self.normalised(m))
                .collect();
            let held = newer.iter().filter(|e| (lo..=hi).contains(*e)).count();
            (!newer.is_empty()).then(|| held as f64 / newer.len() as f64)
        });
        Some((low, high, coverage))
    }
}

/// The band at `horizon`: the quantiles of the normalised errors at leads from half to twice
/// the horizon, times the scale at `horizon`; of absolute or relative errors, whichever covers
/// closer to `level` out of sample at the leads near `horizon`.
fn calibrate(misses: &[Miss], pooled: &[Pooled; 2], horizon: usize, level: f64) -> Option<Band> {
    // The leads near the horizon, where coverage is measured.
    let mut spread = horizon / 4;
    let near = loop {
        let near: Vec<&Miss> = misses
            .iter()
            .filter(|m| m.lead.abs_diff(horizon) <= spread)
            .collect();
        if near.len() >= MIN_ERRORS || spread >= horizon.max(8) {
            break near;
        }
        spread += 1;
    };
    if near.is_empty() {
        return None;
    }
    let pool: Vec<&Miss> = misses
        .iter()
        .filter(|m| 2 * m.lead >= horizon && m.lead <= 2 * horizon)
        .collect();
    let pool = if pool.len() >= MIN_ERRORS {
        pool
    } else {
        misses.iter().collect()
    };
    let [absolute, relative] = pooled.each_ref().map(|p| {
        let (low, high, coverage) = p.band(&pool, &near, level)?;
        let scale = p.scale.at(horizon);
        Some(Band {
            low: low * scale,
            high: high * scale,
            relative: p.relative,
            coverage,
        })
    });
    match (absolute, relative) {
        (Some(a), Some(r)) => {
            let miss = |b: &Band| b.coverage.map_or(f64::INFINITY, |c| (c - level).abs());
            Some(if miss(&r) < miss(&a) { r } else { a })
        }
        (a, r) => a.or(r),
    }
}

/// The central `level` interval of `errors` with the finite-sample (conformal) correction: the
/// `ceil((n + 1) q)`-th smallest error as the upper edge.
fn quantiles(mut errors: Vec<f64>, level: f64) -> Option<(f64, f64)> {
    errors.retain(|e| e.is_finite());
    if errors.is_empty() {
        return None;
    }
    errors.sort_by(f64::total_cmp);
    let n = errors.len();
    let tail = (1.0 - level) / 2.0;
    let low = ((tail * (n + 1) as f64).floor() as usize).clamp(1, n) - 1;
    let high = (((1.0 - tail) * (n + 1) as f64).ceil() as usize).clamp(1, n) - 1;
    Some((errors[low], errors[high]))
}
