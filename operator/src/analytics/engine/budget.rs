//! One SLO budget fit: forecast the SLI's error ratio (one series per `groupBy` group), then
//! roll the SLO's window forward over that forecast to find when the error budget runs out
//! and how likely that is within the budget horizon.
//!
//! The window is rolling, so the budget spent at a future moment is the mean error ratio over
//! the window ending then: the history still inside it plus the forecast so far, divided by
//! the budget. Errors that leave the window give budget back, so a steady service spending
//! half its budget is never forecast to run out, and a past incident ages out.
//!
//! The probability reads the calibrated 80 % band at each future step as a split normal
//! distribution around the mean (each half-width is a 90 % quantile of its side: a band after
//! a surge reaches far up and little down) and takes the forecast errors of all steps as
//! moving together (a path that runs high keeps running high), which is what budget burns do:
//! the spend's spread on each side is then the sum of the steps' spreads. The probability is
//! the largest, over the horizon, that the window's spend reaches the budget: read on the upper
//! side while the mean spend is short of the budget, on the lower side once it is past it. No
//! band, no probability.

use super::exposition::Point;
use super::jobs::{Job, JobKind};
use super::prometheus::Labels;
use super::runner::{forecast_settings, Ahead, LEVEL};
use crate::analytics::forecast::{fit_and_forecast, HorizonBand};
use crate::analytics::normal;
use crate::analytics::series::Series;
use crate::analytics::AnalyticsError;

/// Points of the forecast grid the spend is interpolated on.
const GRID: usize = 96;

/// The identity labels of one SLI ratio series: its own (its `groupBy` labels), then the
/// labels the SLO's recording rules put on every series, then `namespace`, `app` and `slo`
/// forced to the job's, so the published series join the SLO's recording rules.
fn identity(job: &Job, labels: &Labels) -> Labels {
    let mut out = labels.clone();
    if let JobKind::Budget { labels, .. } = &job.kind {
        out.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out.insert("namespace".to_owned(), job.key.namespace.clone());
    out.insert("app".to_owned(), job.app.clone());
    out.insert("slo".to_owned(), job.key.policy.clone());
    out
}

/// The forecast of the error ratio at one step: the mean and the standard deviations the band
/// gives below and above it (NaN without a band).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub mean: f64,
    pub below: f64,
    pub above: f64,
}

impl Step {
    fn lerp(a: Step, b: Step, t: f64) -> Step {
        Step {
            mean: a.mean + t * (b.mean - a.mean),
            below: a.below + t * (b.below - a.below),
            above: a.above + t * (b.above - a.above),
        }
    }
}

/// The forecast of the error ratio one step at a time (`1..=steps` after the last point):
/// mean (never below 0) and the band's spreads, interpolated linearly between the forecast's
/// horizons and from the last value.
pub fn per_step(bands: &[HorizonBand], last: f64, steps: usize) -> Vec<Step> {
    let z = normal::quantile((1.0 + LEVEL) / 2.0);
    let spread = |edge: f64, distance: f64| {
        if edge.is_finite() {
            (distance / z).max(0.0)
        } else {
            f64::NAN
        }
    };
    let mut knots: Vec<(f64, Step)> = vec![(
        0.0,
        Step {
            mean: last.max(0.0),
            below: 0.0,
            above: 0.0,
        },
    )];
    for b in bands.iter().filter(|b| b.mean.is_finite()) {
        let mean = b.mean.max(0.0);
        knots.push((
            b.horizon as f64,
            Step {
                mean,
                below: spread(b.lower, mean - b.lower.max(0.0)),
                above: spread(b.upper, b.upper - mean),
            },
        ));
    }
    knots.sort_by(|a, b| a.0.total_cmp(&b.0));
    (1..=steps)
        .map(|k| {
            let k = k as f64;
            let right = knots.iter().position(|n| n.0 >= k);
            match right {
                Some(0) => knots[0].1,
                Some(i) => {
                    let (a, b) = (knots[i - 1], knots[i]);
                    let t = (k - a.0) / (b.0 - a.0);
                    let mut step = Step::lerp(a.1, b.1, t);
                    // The band starts at the first knot: no interpolation from "certain".
                    if i == 1 {
                        (step.below, step.above) = (b.1.below, b.1.above);
                    }
                    step
                }
                None => knots.last().map_or(
                    Step {
                        mean: 0.0,
                        below: f64::NAN,
                        above: f64::NAN,
                    },
                    |n| n.1,
                ),
            }
        })
        .collect()
}

/// What the budget projection found.
#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    /// Share of the budget left now (by the history alone), such as `0.4`; may be negative.
    pub remaining: f64,
    /// Steps after the last point at which the forecast mean has spent the budget
    /// (fractional); `None` if not within the forecast.
    pub exhaustion_steps: Option<f64>,
    /// Probability the budget is spent within the forecast; `None` without a band.
    pub probability: Option<f64>,
}

/// Rolls a window of `window_steps` slots over `history` (the newest last, NaN where nothing
/// was recorded) and then over `forecast` (per step, as [`per_step`] gives), with an error
/// budget of `budget`.
pub fn project(history: &[f64], forecast: &[Step], window_steps: usize, budget: f64) -> Projection {
    let window_steps = window_steps.max(1);
    let inside = &history[history.len().saturating_sub(window_steps)..];
    // Slots of the window are taken from the history front first as the window moves on.
    let missing = window_steps - inside.len();
    let mut hist_sum: f64 = inside.iter().filter(|v| v.is_finite()).sum();
    let mut hist_count = inside.iter().filter(|v| v.is_finite()).count();
    let spent = |sum: f64, count: usize| {
        if count == 0 {
            0.0
        } else {
            sum / count as f64 / budget
        }
    };
    let remaining = 1.0 - spent(hist_sum, hist_count);
    if remaining <= 0.0 {
        return Projection {
            remaining,
            exhaustion_steps: Some(0.0),
            probability: Some(1.0),
        };
    }
    let banded = forecast
        .iter()
        .all(|s| s.below.is_finite() && s.above.is_finite())
        && !forecast.is_empty();
    let (mut mean_sum, mut below_sum, mut above_sum) = (0.0, 0.0, 0.0);
    let mut previous_spent = 1.0 - remaining;
    let mut exhaustion = None;
    let mut probability: f64 = 0.0;
    for (k, step) in forecast.iter().enumerate() {
        // The slot leaving the window: before the history began (nothing), or its oldest.
        let leaving = k + 1;
        if leaving > missing {
            if let Some(v) = inside.get(leaving - missing - 1).filter(|v| v.is_finite()) {
                hist_sum -= v;
                hist_count -= 1;
            }
        }
        mean_sum += step.mean;
        below_sum += step.below;
        above_sum += step.above;
        let count = hist_count + k + 1;
        let now_spent = spent(hist_sum + mean_sum, count);
        if exhaustion.is_none() && now_spent >= 1.0 {
            let rise = now_spent - previous_spent;
            let part = if rise > 0.0 {
                ((1.0 - previous_spent) / rise).clamp(0.0, 1.0)
            } else {
                1.0
            };
            exhaustion = Some(k as f64 + part);
        }
        previous_spent = now_spent;
        if banded {
            // The side of the split normal the budget lies on.
            let side = if now_spent < 1.0 {
                above_sum
            } else {
                below_sum
            };
            let spread = side / count as f64 / budget;
            let p = if spread > 0.0 {
                normal::tail((1.0 - now_spent) / spread)
            } else if now_spent >= 1.0 {
                1.0
            } else {
                0.0
            };
            probability = probability.max(p);
        }
    }
    Projection {
        remaining,
        exhaustion_steps: exhaustion,
        probability: banded.then_some(probability),
    }
}

/// One budget fit of one SLI ratio series at `now`: the points it publishes, or why there are
/// none.
pub fn fit_series(
    job: &Job,
    labels: &Labels,
    mut series: Series,
    now: i64,
) -> Result<Vec<Point>, AnalyticsError> {
    let JobKind::Budget {
        window,
        budget,
        horizon,
        horizons,
        ..
    } = &job.kind
    else {
        return Ok(Vec::new());
    };
    let step = series.step.max(1);
    // Horizons count from the last point with a value: the newest evaluation may not be in.
    let ahead = Ahead::trim(&mut series, step, now);
    let reach = ahead.horizon_of(*horizon);
    let mut wanted: Vec<usize> = horizons
        .iter()
        .map(|h| ahead.horizon_of(h.seconds))
        .collect();
    wanted.extend((1..=GRID).map(|i| (reach * i).div_ceil(GRID)));
    let forecast = fit_and_forecast(&series, &forecast_settings(job, wanted))?;
    let base = identity(job, labels);
    let mut points = Vec::new();
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
        let mut push = |name, value: f64| {
            points.push(Point {
                name,
                labels: labels.clone(),
                value: value.max(0.0),
            })
        };
        push("vigil:slo:error_ratio_forecast:mean", band.mean);
        if band.lower.is_finite() && band.upper.is_finite() {
            push("vigil:slo:error_ratio_forecast:lower", band.lower);
            push("vigil:slo:error_ratio_forecast:upper", band.upper);
        }
    }
    let window_steps = usize::try_from(window / step).unwrap_or(1);
    let projection = project(
        &series.values,
        &per_step(&forecast.bands, ahead.last_value, reach),
        window_steps,
        *budget,
    );
    if let Some(steps) = projection.exhaustion_steps {
        points.push(Point {
            name: "vigil:slo:budget_exhaustion_seconds",
            labels: base.clone(),
            value: ahead.seconds_from_now(steps),
        });
    }
    if let Some(p) = projection.probability {
        points.push(Point {
            name: "vigil:slo:budget_exhaustion_probability",
            labels: base,
            value: p,
        });
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step whose band is even on both sides.
    fn even(mean: f64, sigma: f64) -> Step {
        Step {
            mean,
            below: sigma,
            above: sigma,
        }
    }

    fn band(horizon: usize, mean: f64, half: f64) -> HorizonBand {
        HorizonBand {
            horizon,
            mean,
            lower: mean - half,
            upper: mean + half,
            coverage: Some(0.8),
        }
    }

    /// A steady service spending half its budget keeps half of it however long the window
    /// rolls on: no exhaustion, and no probability to speak of.
    #[test]
    fn a_steady_spend_never_runs_out() {
        let history = vec![0.005; 100];
        let forecast = vec![even(0.005, 0.0001); 300];
        let p = project(&history, &forecast, 100, 0.01);
        assert!((p.remaining - 0.5).abs() < 1e-12);
        assert_eq!(p.exhaustion_steps, None);
        assert!(p.probability.unwrap() < 1e-6);
    }

    /// Errors at twice the budget from now on replace a clean window's slots one by one: the
    /// window's mean reaches the budget when half of it is new, 50 steps into a 100-step
    /// window; an old incident leaving the window gives its budget back.
    #[test]
    fn the_window_rolls_over_history_and_forecast() {
        let p = project(&[0.0; 100], &[even(0.02, f64::NAN); 80], 100, 0.01);
        assert!((p.exhaustion_steps.unwrap() - 50.0).abs() < 1e-6, "{p:?}");
        assert_eq!(p.probability, None, "no band, no probability");

        let mut incident = vec![0.0; 100];
        incident[..60].fill(0.015);
        let p = project(&incident, &[even(0.0, 0.0); 100], 100, 0.01);
        assert!((p.remaining - 0.1).abs() < 1e-12);
        assert_eq!(p.exhaustion_steps, None);
        assert_eq!(p.probability, Some(0.0));
    }

    /// A spent budget is spent now, for sure; missing history slots are not counted as clean
    /// ones.
    #[test]
    fn spent_budgets_and_gaps() {
        let p = project(&[0.02; 10], &[], 10, 0.01);
        assert_eq!(p.exhaustion_steps, Some(0.0));
        assert_eq!(p.probability, Some(1.0));
        let mut gappy = vec![f64::NAN; 100];
        gappy[90..].fill(0.005);
        let p = project(&gappy, &[even(0.02, f64::NAN); 10], 100, 0.01);
        assert!((p.remaining - 0.5).abs() < 1e-12);
        // Mean over 10 old and k new slots reaches 0.01 when (0.05 + 0.02k) / (10 + k) = 0.01.
        assert!((p.exhaustion_steps.unwrap() - 5.0).abs() < 1e-6, "{p:?}");
    }

    /// The band's spread makes a spend that the mean leaves just short of the budget likely
    /// but not certain, and a wider band more likely.
    #[test]
    fn the_band_gives_the_probability() {
        let history = vec![0.009; 100];
        let narrow = project(&history, &[even(0.0095, 0.001); 50], 100, 0.01);
        let wide = project(&history, &[even(0.0095, 0.002); 50], 100, 0.01);
        assert_eq!(narrow.exhaustion_steps, None);
        let (n, w) = (narrow.probability.unwrap(), wide.probability.unwrap());
        assert!(n > 0.0 && n < w && w < 0.5, "{n} {w}");
    }

    /// After a surge the band reaches far up and little down: once the mean spend is past the
    /// budget, the probability is read on the narrow lower side — nearly certain — where an
    /// even band as wide as the upper side would leave it near even odds.
    #[test]
    fn a_skewed_band_is_read_on_the_budgets_side() {
        let history = vec![0.009; 100];
        let skewed = Step {
            mean: 0.02,
            below: 0.002,
            above: 0.05,
        };
        let p = project(&history, &[skewed; 50], 100, 0.01);
        let even = project(&history, &[even(0.02, 0.05); 50], 100, 0.01);
        let (s, e) = (p.probability.unwrap(), even.probability.unwrap());
        assert!(s > 0.99 && e < 0.8, "skewed {s}, even {e}");
    }

    /// Per-step forecasts interpolate the means from the last value and take the band's spread
    /// from its first horizon on; past the last horizon they hold its value.
    #[test]
    fn per_step_interpolates() {
        let z = normal::quantile(0.9);
        let steps = per_step(&[band(2, 4.0, z), band(4, 8.0, 3.0 * z)], 2.0, 5);
        let means: Vec<f64> = steps.iter().map(|s| s.mean).collect();
        assert_eq!(means, [3.0, 4.0, 6.0, 8.0, 8.0]);
        let sigmas: Vec<f64> = steps
            .iter()
            .map(|s| (s.above * 1e9).round() / 1e9)
            .collect();
        assert_eq!(sigmas, [1.0, 1.0, 2.0, 3.0, 3.0]);
        let unbanded = HorizonBand {
            upper: f64::NAN,
            lower: f64::NAN,
            ..band(1, -1.0, 0.0)
        };
        let steps = per_step(&[unbanded], 1.0, 1);
        assert_eq!(
            steps[0].mean, 0.0,
            "a negative mean is no negative error ratio"
        );
        assert!(steps[0].above.is_nan() && steps[0].below.is_nan());
    }
}
