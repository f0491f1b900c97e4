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
//!   a third of the longest horizon apart), each on the whole history before it, as the
//!   published fit reads the whole series — refits on a shorter window were worse models, and
//!   their errors made the band too wide for the published one (NYC taxi: 0.95 held outside
//!   the holidays). Origins without two cycles of every period the published model decomposes
//!   are left out: they forecast without that season. Each origin contributes its errors at
//!   the leads whose outcomes are known — the most recent origins calibrate the short leads.
//!   Refits cost in proportion to the points they read, so the number of origins is what a
//!   fixed budget of points affords ([`ORIGINS`] to 48).
//! - Per-lead scale: errors grow with the lead, unevenly and noisily from one lead to the next.
//!   Each lead's typical error (mean absolute error over the origins) is fitted non-decreasing
//!   in the lead (pool-adjacent-violators): the typical error never shrinks further ahead.
//! - Per-phase scale: errors are larger at some phases of a season than at others (a sports
//!   star's page views swing in the season and sit still in summer; traffic is calmer at
//!   night). The lead-scaled errors' typical size per twelfth of the longest period the
//!   outcomes span twice, shrunk toward the overall size as far as sampling noise explains
//!   its differences, scales the errors too.
//! - Pooled quantiles: errors divided by their scale are comparable across leads and phases,
//!   so a horizon's quantiles come from every origin's errors at leads from half to twice the
//!   horizon rather than from the few origins that reach that one lead; they are the
//!   finite-sample (conformal) order statistics, `ceil((n + 1) q)`-th, and the band at the
//!   horizon is them times its scale.
//! - Drift: when the newer half of the origins erred more (or less) than the older half, the
//!   band is widened (or narrowed) by the factor the older half's band needed to hold the
//!   level of the newer half's errors; errors that grew over the history are taken to go on
//!   growing, as conformal bands otherwise lag behind.
//! - Level moves: a long lead is backtested only from the origins old enough to reach it,
//!   fewer than a short lead's, whose errors at neighbouring leads move together, and never
//!   on the level moves of the history before the first origin; and the per-phase scale,
//!   measured mostly on how short leads' noise differs between phases, narrows it in calm
//!   phases — while a shift of the series' level (a star changing teams, a customer leaving)
//!   is no calmer there. As Prophet draws its future trend changes from the past ones, the
//!   band at a horizon is at least the central interval of the level's moves over that many
//!   steps anywhere in the history, less their median (the model extrapolates the typical
//!   move): the level is the deseasonalised series averaged over a cycle of its shortest
//!   period, and the share of the moves' variance its leftover noise explains is taken out.
//!   It is a floor, not a term added to the errors: at short leads the level barely moves,
//!   the backtested band holds such moves already and stays as it was; a series whose level
//!   never moved keeps its band.
//! - Errors relative to the forecast for a series modelled on its logarithm (its errors grow
//!   with its level), absolute otherwise.
//! - Coverage is measured out of sample, of the whole method: the band from the older two
//!   thirds of the origins, corrected by their own drift (oldest third against the middle
//!   one) and widened by the level moves that ended before the newest third, is checked
//!   against the errors of the newest third at the leads near the horizon.

mod model;
#[cfg(test)]
mod tests;

use augurs::seasons::{Detector as _, PeriodogramDetector};

use self::model::TrendChoice;
use super::series::Series;
use super::AnalyticsError;

/// Fewest rolling origins the band is calibrated on (each one refit of the model).
pub const ORIGINS: usize = 12;
/// Most rolling origins, when the series is short.
const MAX_ORIGINS: usize = 48;
/// Points all calibration refits read together, at most (more origins for shorter series).
const REFIT_BUDGET: usize = 12 * 4320;
/// Errors wanted to measure coverage near a horizon; fewer widen the leads counted as near.
const MIN_ERRORS: usize = 30;
/// Most the drift widens (or narrows, by its inverse) a band: measured on half the origins it
/// is itself noisy, and errors that grew more than that are a change of regime, not a trend of
/// the errors a wider band would foresee.
const MAX_DRIFT: f64 = 2.0;
/// Phases of a seasonal period whose error sizes are told apart.
const PHASES: usize = 12;
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
    // The refits are the published model's peers: history enough for every period it
    // decomposes (an origin before that forecasts without a season, far worse).
    let min_history = full
        .periods
        .iter()
        .map(|p| 2 * p)
        .max()
        .unwrap_or(0)
        .max(need);
    let errors = rolling_errors(
        series,
        &periods,
        events,
        &full.trend_choice,
        horizon,
        (min_history, need),
    );
    // A series modelled on its logarithm errs in proportion to its level.
    let pooled = Pooled::fit(&errors, full.log, &full.periods, settings.level);
    let moves = LevelMoves::fit(&full.deseasonalised, &full.periods);
    let last = values.len() - 1;
    let bands = settings
        .horizons
        .iter()
        .map(|&h| {
            let mean = full.point(h, events);
            let band = calibrate(
                &errors,
                &pooled,
                moves.as_ref(),
                h,
                last + h,
                settings.level,
            );
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
/// outcome is known. Origins need `min_history` points before them, `min_usable` of them known.
fn rolling_errors(
    series: &Series,
    periods: &[usize],
    events: &[KnownEvent],
    trend: &TrendChoice,
    horizon: usize,
    (min_history, min_usable): (usize, usize),
) -> Vec<Miss> {
    let values = &series.values;
    let n = values.len();
    // Short horizons' coverage is measured on neighbouring leads, so forecast a few steps on.
    let reach = horizon.max(4);
    // Each refit reads the whole history before its origin, as the published fit reads the
    // whole series: the band measures the model that is published (refits on a shorter
    // window are worse models, and their errors made the band too wide). A refit costs about
    // in proportion to the points it reads: a shorter series affords more origins.
    let count = (REFIT_BUDGET / n.max(1)).clamp(ORIGINS, MAX_ORIGINS);
    // Origins run up to the last point (each contributes the leads whose outcomes are known),
    // spaced so that they span the history but a third of the reach at most.
    let span = n.saturating_sub(min_history + 1);
    let stride = (reach / 3).min(span / count).max(1);
    let mut misses = Vec::new();
    for k in 0..count {
        let Some(origin) = (n - 1).checked_sub(k * stride) else {
            break;
        };
        if origin < min_history {
            break;
        }
        let history = &values[..origin];
        if history.iter().filter(|v| v.is_finite()).count() < min_usable {
            break;
        }
        let Ok(fitted) = model::fit(
            history,
            series.start,
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
    /// Index of the outcome in the series.
    fn at(&self) -> usize {
        self.origin - 1 + self.lead
    }

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

/// How much larger or smaller the errors are at each phase of a seasonal period (a sports
/// season's page views swing more than the summer's; night traffic less than the day's): the
/// mean size of the lead-scaled errors whose outcomes fell in each of [`PHASES`] parts of the
/// period, relative to their overall mean size. Each phase's ratio is shrunk toward 1 by how
/// much of its spread around 1 sampling noise explains (empirical Bayes: weight τ² / (τ² +
/// s²), with τ² the phases' spread beyond their sampling variances s²), so a season whose
/// phases err alike keeps one width. The period is the longest one the outcomes span twice;
/// none: no phase scale.
#[derive(Clone, Debug)]
struct PhaseScale {
    period: usize,
    /// Factor per phase; empty: 1 everywhere.
    factors: Vec<f64>,
}

impl PhaseScale {
    fn fit(misses: &[Miss], periods: &[usize], lead_scaled: impl Fn(&Miss) -> f64) -> PhaseScale {
        let none = PhaseScale {
            period: 1,
            factors: Vec::new(),
        };
        let first = misses.iter().map(Miss::at).min().unwrap_or(0);
        let last = misses.iter().map(Miss::at).max().unwrap_or(0);
        let Some(period) = periods
            .iter()
            .copied()
            .filter(|p| 2 * p <= last - first + 1)
            .max()
        else {
            return none;
        };
        let phases = PHASES.min(period);
        // Per phase: count, sum and sum of squares of the error sizes.
        let mut sums = vec![(0usize, 0.0, 0.0); phases];
        for m in misses {
            let e = lead_scaled(m).abs();
            if e.is_finite() {
                let slot = &mut sums[(m.at() % period) * phases / period];
                slot.0 += 1;
                slot.1 += e;
                slot.2 += e * e;
            }
        }
        let (count, total) = sums.iter().fold((0, 0.0), |(c, t), s| (c + s.0, t + s.1));
        let overall = total / count as f64;
        if !(overall > 0.0 && overall.is_finite()) {
            return none;
        }
        // Origins close together judge the same outcomes: a phase's sample is as large as the
        // outcomes it holds, not its errors.
        let mut outcomes: Vec<usize> = misses.iter().map(Miss::at).collect();
        outcomes.sort_unstable();
        outcomes.dedup();
        let mut distinct = vec![0usize; phases];
        for at in outcomes {
            distinct[(at % period) * phases / period] += 1;
        }
        // Per phase: its size relative to the overall one, and that ratio's sampling variance.
        let ratios: Vec<Option<(f64, f64)>> = sums
            .iter()
            .zip(distinct)
            .map(|(&(n, sum, squares), outcomes)| {
                (outcomes > 1).then(|| {
                    let mean = sum / n as f64;
                    let variance = (squares / n as f64 - mean * mean).max(0.0);
                    (
                        mean / overall,
                        variance / outcomes as f64 / (overall * overall),
                    )
                })
            })
            .collect();
        let known: Vec<(f64, f64)> = ratios.iter().flatten().copied().collect();
        if known.len() < 2 {
            return none;
        }
        let k = known.len() as f64;
        let mean_ratio = known.iter().map(|r| r.0).sum::<f64>() / k;
        let spread = known
            .iter()
            .map(|r| (r.0 - mean_ratio).powi(2))
            .sum::<f64>()
            / k;
        let noise = known.iter().map(|r| r.1).sum::<f64>() / k;
        let tau2 = spread - noise;
        if tau2 <= 0.0 || !tau2.is_finite() {
            return none;
        }
        let factors = ratios
            .into_iter()
            .map(|r| r.map_or(1.0, |(ratio, s2)| 1.0 + tau2 / (tau2 + s2) * (ratio - 1.0)))
            .collect();
        PhaseScale { period, factors }
    }

    /// The factor for an outcome at index `at` of the series.
    fn at(&self, at: usize) -> f64 {
        if self.factors.is_empty() {
            return 1.0;
        }
        self.factors[(at % self.period) * self.factors.len() / self.period]
    }
}

/// How far the series' level moved over a given number of steps, anywhere in its history: the
/// moves a forecast's long leads must allow for, whether or not the backtests, which reach those
/// leads from a few origins only, met them. The level is the deseasonalised series' trailing
/// mean over one cycle of its shortest period, which averages out that season and most of the
/// noise; the noise left in it (the backtested errors' part, not a move) is taken out of the
/// moves' spread. A series without a period has no level.
#[derive(Clone, Debug)]
struct LevelMoves {
    /// Steps each level averages: the point at index `i` of `level` ends at index
    /// `i + cycle - 1` of the series.
    cycle: usize,
    level: Vec<f64>,
    /// The variance noise alone gives a move: two means of `cycle` points of white noise whose
    /// variance is half that of the one-step differences.
    noise: f64,
}

impl LevelMoves {
    fn fit(deseasonalised: &[f64], periods: &[usize]) -> Option<LevelMoves> {
        let cycle = periods.iter().copied().min()?;
        if cycle == 0 || deseasonalised.len() < cycle {
            return None;
        }
        let mut sums = Vec::with_capacity(deseasonalised.len() + 1);
        sums.push(0.0);
        for (i, v) in deseasonalised.iter().enumerate() {
            sums.push(sums[i] + v);
        }
        let level = sums[cycle..]
            .iter()
            .zip(&sums)
            .map(|(end, start)| (end - start) / cycle as f64)
            .collect();
        let steps: Vec<f64> = deseasonalised.windows(2).map(|w| w[1] - w[0]).collect();
        let noise = variance(&steps) / cycle as f64;
        Some(LevelMoves {
            cycle,
            level,
            noise,
        })
    }

    /// The central `level` interval of the level's moves over `steps`, less their median (the
    /// model foresees a typical move; what it cannot foresee is a departure from it), among the
    /// moves that ended before index `before` of the series, narrowed by the share of their
    /// variance that is noise; as errors relative to the forecast if `relative` (the level is
    /// then a logarithm). `None` with fewer than [`MIN_ERRORS`] moves.
    fn band(&self, steps: usize, before: usize, level: f64, relative: bool) -> Option<(f64, f64)> {
        let count = self
            .level
            .len()
            .saturating_sub(steps)
            .min(before.saturating_add(1).saturating_sub(steps + self.cycle));
        if count < MIN_ERRORS {
            return None;
        }
        let mut moves: Vec<f64> = self.level[steps..steps + count]
            .iter()
            .zip(&self.level)
            .map(|(later, earlier)| later - earlier)
            .filter(|m| m.is_finite())
            .collect();
        if moves.len() < MIN_ERRORS {
            return None;
        }
        moves.sort_by(f64::total_cmp);
        let n = moves.len();
        let median = if n % 2 == 0 {
            (moves[n / 2 - 1] + moves[n / 2]) / 2.0
        } else {
            moves[n / 2]
        };
        let spread = variance(&moves);
        let moved = if spread > 0.0 {
            (1.0 - self.noise / spread).max(0.0).sqrt()
        } else {
            0.0
        };
        let (low, high) = quantiles(moves, level)?;
        let (low, high) = ((low - median) * moved, (high - median) * moved);
        Some(if relative {
            (low.exp_m1(), high.exp_m1())
        } else {
            (low, high)
        })
    }
}

/// The variance of `values` about their mean (0 for fewer than two).
fn variance(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n
}

/// The wider of a band's edges and a level-move band's (`floor`), in the same units.
fn widened((low, high): (f64, f64), floor: Option<(f64, f64)>) -> (f64, f64) {
    match floor {
        Some((floor_low, floor_high)) => (low.min(floor_low), high.max(floor_high)),
        None => (low, high),
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
        if self.relative {
            // Relative errors are those of a series modelled on its logarithm: it stays
            // positive, whatever the errors' spread.
            let scale = mean.abs();
            ((mean + self.low * scale).max(0.0), mean + self.high * scale)
        } else {
            (mean + self.low, mean + self.high)
        }
    }
}

/// How errors (absolute, or relative to the forecast) are normalised, split by age and drift.
struct Pooled {
    relative: bool,
    scale: LeadScale,
    phase: PhaseScale,
    /// How much the band of the older half of the origins must widen (above 1) or narrow to
    /// hold the level of the newer half's errors: the band is corrected by it, as errors that
    /// grew (or shrank) over the history are taken to go on so.
    drift: f64,
    /// The first origin of the newest third, whose errors check the coverage of the band of
    /// the older two thirds, corrected by their own drift (`check_drift`): the published
    /// coverage is that of the whole method, out of sample.
    check_from: Option<usize>,
    check_drift: f64,
}

impl Pooled {
    fn fit(misses: &[Miss], relative: bool, periods: &[usize], level: f64) -> Pooled {
        let mut origins: Vec<usize> = misses.iter().map(|m| m.origin).collect();
        origins.sort_unstable();
        origins.dedup();
        let scale = LeadScale::fit(misses, relative);
        let phase = PhaseScale::fit(misses, periods, |m| m.error(relative) / scale.at(m.lead));
        let mut pooled = Pooled {
            relative,
            scale,
            phase,
            drift: 1.0,
            check_from: None,
            check_drift: 1.0,
        };
        // Origins are older the smaller they are.
        let cut = |share: usize| origins.get(origins.len() * share / 6).copied();
        let drift_across = |before: usize, from: usize, until: usize| {
            let older = misses.iter().filter(|m| m.origin < before);
            let newer = misses.iter().filter(|m| (from..until).contains(&m.origin));
            drift(
                older.map(|m| pooled.normalised(m)).collect(),
                newer.map(|m| pooled.normalised(m)).collect(),
                level,
            )
        };
        if origins.len() >= 3 {
            let (third, half, two_thirds) = (cut(2), cut(3), cut(4));
            if let (Some(third), Some(half), Some(two_thirds)) = (third, half, two_thirds) {
                let drift = drift_across(half, half, usize::MAX);
                let check_drift = drift_across(third, third, two_thirds);
                pooled.drift = drift;
                pooled.check_drift = check_drift;
                pooled.check_from = Some(two_thirds);
            }
        }
        pooled
    }

    /// The scale of an error at `lead` whose outcome is at index `at`.
    fn scale(&self, lead: usize, at: usize) -> f64 {
        self.scale.at(lead) * self.phase.at(at)
    }

    /// An error in units of its scale.
    fn normalised(&self, m: &Miss) -> f64 {
        m.error(self.relative) / self.scale(m.lead, m.at())
    }

    /// The band at `horizon` in units of its scale, from the `pool`'s errors and corrected by
    /// the drift, with the coverage the same method (level moves included, as far as they were
    /// known before the newest origins) had on the newest origins' errors at `near` leads.
    fn band(
        &self,
        pool: &[&Miss],
        near: &[&Miss],
        moves: Option<&LevelMoves>,
        horizon: usize,
        level: f64,
    ) -> Option<(f64, f64, Option<f64>)> {
        let (low, high) = quantiles(pool.iter().map(|m| self.normalised(m)).collect(), level)?;
        let coverage = self.check_from.and_then(|from| {
            let older = pool.iter().filter(|m| m.origin < from);
            let (lo, hi) = quantiles(older.map(|m| self.normalised(m)).collect(), level)?;
            let (lo, hi) = (lo * self.check_drift, hi * self.check_drift);
            let floor = moves.and_then(|mv| mv.band(horizon, from, level, self.relative));
            let newer: Vec<&&Miss> = near.iter().filter(|m| m.origin >= from).collect();
            let held = newer
                .iter()
                .filter(|m| {
                    let scale = self.scale(m.lead, m.at());
                    let (lo, hi) = widened((lo * scale, hi * scale), floor);
                    (lo..=hi).contains(&m.error(self.relative))
                })
                .count();
            (!newer.is_empty()).then(|| held as f64 / newer.len() as f64)
        });
        Some((low * self.drift, high * self.drift, coverage))
    }
}

/// The band at `horizon` (its outcome at index `at`): the quantiles of the normalised errors at
/// leads from half to twice the horizon, times the scale there, widened to the level's moves
/// over the horizon (`moves`) where those reach further.
fn calibrate(
    misses: &[Miss],
    pooled: &Pooled,
    moves: Option<&LevelMoves>,
    horizon: usize,
    at: usize,
    level: f64,
) -> Option<Band> {
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
    let (low, high, coverage) = pooled.band(&pool, &near, moves, horizon, level)?;
    let scale = pooled.scale(horizon, at);
    let floor = moves.and_then(|m| m.band(horizon, usize::MAX, level, pooled.relative));
    let (low, high) = widened((low * scale, high * scale), floor);
    Some(Band {
        low,
        high,
        relative: pooled.relative,
        coverage,
    })
}

/// The factor by which the central `level` band of the `older` errors must be scaled to hold
/// `level` of the `newer` ones (the conformal order statistic of the factor each one needs),
/// within [`MAX_DRIFT`]; 1 when either holds too few errors to tell or the band is one-sided.
fn drift(older: Vec<f64>, newer: Vec<f64>, level: f64) -> f64 {
    let Some((low, high)) = quantiles(older, level) else {
        return 1.0;
    };
    if !(low < 0.0 && high > 0.0) || newer.len() < MIN_ERRORS {
        return 1.0;
    }
    let mut needed: Vec<f64> = newer
        .into_iter()
        .filter(|e| e.is_finite())
        .map(|e| if e >= 0.0 { e / high } else { e / low })
        .collect();
    if needed.len() < MIN_ERRORS {
        return 1.0;
    }
    needed.sort_by(f64::total_cmp);
    let n = needed.len();
    let at = ((level * (n + 1) as f64).ceil() as usize).clamp(1, n) - 1;
    let factor = needed[at];
    if factor > 0.0 && factor.is_finite() {
        factor.clamp(1.0 / MAX_DRIFT, MAX_DRIFT)
    } else {
        1.0
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
