//! The point model behind a forecast: MSTL seasonal decomposition (augurs' `stlrs`), AutoETS on
//! the deseasonalised series (augurs' `ets`), and the learned effect of known events.
//!
//! Known-event points are neutralised before fitting (treated as missing and filled from
//! their neighbours), so an event neither bends the trend nor is learned as seasonality. The
//! event's effect is then learned per event name as the mean difference, per step into the
//! occurrence, between what happened and what the model expected, and added to future
//! occurrences of that name.
//!
//! A positive series (every observed point above zero) is modelled on its logarithm, so its
//! seasonality and event effects are multiplicative — a daily cycle whose swing grows with the
//! level, as request and traffic rates' do — and the point forecast is the exponential of the
//! log-scale one (a median). A trend then compounds: a linear ramp is extrapolated a little
//! faster than linearly, an error the calibrated band measures like any other.
//!
//! Short-horizon correction: the trend model's one-step errors (innovations) on the points it
//! read are often positively autocorrelated — the level it tracks lags a shift, or a burst
//! lasts a few steps. Their lag-1 autocorrelation `phi` is estimated on the trend window and
//! the last observed innovation `e` is carried into the forecast as `phi^k · e`, `k` being the
//! steps from that observation to the forecast point: an AR(1) view of the innovations whose
//! effect decays geometrically and vanishes at long horizons. Filled gaps and known-event
//! points are not observations, so a series that ends in a gap carries its last real
//! innovation, decayed by the gap's length too.

use std::collections::HashMap;

use augurs::ets::AutoETS;
use augurs::mstl::stlrs::MstlParams;
use augurs::{Fit, Predict};

use super::KnownEvent;
use crate::analytics::AnalyticsError;

/// Most recent deseasonalised points the trend model is fitted on.
pub(super) const TREND_WINDOW: usize = 720;

/// Which exponential-smoothing trend models are tried.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum TrendChoice {
    /// AutoETS picks among every non-seasonal model by AICc.
    Auto,
    /// One model, as chosen by an earlier automatic fit (`spec` like `AAN`).
    Fixed { spec: String, damped: bool },
}

/// A model fitted on the points before some origin.
pub(super) struct Fitted {
    /// Number of points fitted; forecasts start at this index.
    len: usize,
    start: i64,
    step: i64,
    /// Per period: the last fitted cycle of its seasonal component.
    cycles: Vec<Vec<f64>>,
    /// Point forecasts of the deseasonalised series, leads `1..=horizon`.
    trend: Vec<f64>,
    /// Learned effect per event name, per step into an occurrence.
    effects: HashMap<String, Vec<f64>>,
    /// Short-horizon correction: the last observed innovation and the steps from it to the
    /// last fitted point.
    innovation: (f64, usize),
    /// Lag-1 autocorrelation of the innovations (0 when they are not persistent).
    persistence: f64,
    /// Whether the model was fitted on the logarithm of the series (every point positive).
    pub(super) log: bool,
    /// The trend model AutoETS chose.
    pub(super) trend_choice: TrendChoice,
    /// Periods actually decomposed (those with two full cycles of history).
    pub(super) periods: Vec<usize>,
    /// The whole fitted series without its seasons (on the log scale if `log`): trend plus
    /// remainder, with known events filled from their neighbours.
    pub(super) deseasonalised: Vec<f64>,
}

/// Fits `values` (index `i` at `start + i * step`; `NaN` missing) and prepares forecasts up to
/// `horizon` steps ahead.
pub(super) fn fit(
    values: &[f64],
    start: i64,
    step: i64,
    periods: &[usize],
    events: &[KnownEvent],
    trend_choice: &TrendChoice,
    horizon: usize,
) -> Result<Fitted, AnalyticsError> {
    let len = values.len();
    let occurrence = |i: usize| -> Option<(&KnownEvent, usize)> {
        let at = start + i as i64 * step;
        events
            .iter()
            .find(|e| e.start <= at && at < e.end)
            .map(|e| (e, ((at - e.start) / step) as usize))
    };
    // A positive series is modelled multiplicatively: on its logarithm.
    let log = values.iter().all(|v| !v.is_finite() || *v > 0.0);
    let logged: Vec<f64>;
    let values = if log {
        logged = values.iter().map(|v| v.ln()).collect();
        &logged[..]
    } else {
        values
    };
    let mut cleaned: Vec<f64> = values.to_vec();
    let mut in_event = false;
    for (i, v) in cleaned.iter_mut().enumerate() {
        if occurrence(i).is_some() {
            *v = f64::NAN;
            in_event = true;
        }
    }
    if !fill_gaps(&mut cleaned) {
        return Err(AnalyticsError::TooShort { have: 0, need: 2 });
    }
    let mut periods: Vec<usize> = periods.iter().copied().filter(|p| 2 * p <= len).collect();
    periods.sort_unstable();
    periods.dedup();

    // `smooth`: the decomposition's trend, what an event's effect is measured against.
    let (seasonal, smooth, deseasonalised) = if periods.is_empty() {
        (Vec::new(), None, cleaned.clone())
    } else {
        let as_f32: Vec<f32> = cleaned.iter().map(|v| *v as f32).collect();
        let decomposed = MstlParams::new()
            .fit(&as_f32, &periods)
            .map_err(|e| AnalyticsError::Fit(format!("seasonal decomposition: {e}")))?;
        let (seasonal, trend, remainder) = decomposed.into_parts();
        let seasonal: Vec<Vec<f64>> = seasonal
            .into_iter()
            .map(|c| c.into_iter().map(f64::from).collect())
            .collect();
        let deseasonalised = trend
            .iter()
            .zip(&remainder)
            .map(|(t, r)| f64::from(*t) + f64::from(*r))
            .collect();
        let smooth: Vec<f64> = trend.into_iter().map(f64::from).collect();
        (seasonal, Some(smooth), deseasonalised)
    };

    // The trend model reads the recent past only: its forecast starts from the last level and
    // slope, and fitting it costs in proportion to the points it reads.
    let recent = deseasonalised.len().saturating_sub(TREND_WINDOW);
    let whole = deseasonalised;
    let deseasonalised = &whole[recent..];
    // A fixed model can fail to fit a shorter history (its optimiser leaves the admissible
    // region): the automatic search then picks another.
    let fixed = match trend_choice {
        TrendChoice::Auto => None,
        TrendChoice::Fixed { spec, damped } => AutoETS::new(1, spec.as_str())
            .and_then(|m| m.damped(*damped))
            .and_then(|m| m.fit(deseasonalised))
            .ok(),
    };
    let fitted = match fixed {
        Some(fitted) => fitted,
        None => AutoETS::non_seasonal()
            .fit(deseasonalised)
            .map_err(|e| AnalyticsError::Fit(format!("trend: {e}")))?,
    };
    let chosen = fitted.model();
    let chosen_choice = TrendChoice::Fixed {
        spec: chosen.model_type().to_string(),
        damped: chosen.damped(),
    };
    let trend = fitted
        .predict(horizon.max(1), None)
        .map_err(|e| AnalyticsError::Fit(format!("trend forecast: {e}")))?
        .point;
    let in_sample = fitted
        .predict_in_sample(None)
        .map_err(|e| AnalyticsError::Fit(format!("trend in sample: {e}")))?
        .point;
    let observed = |i: usize| values[i].is_finite() && occurrence(i).is_none();
    let (innovation, persistence) =
        innovations(deseasonalised, &in_sample, |i| observed(recent + i));

    let mut effects: HashMap<String, Vec<f64>> = HashMap::new();
    if in_event {
        let level = match smooth {
            Some(smooth) => smooth,
            None => {
                let mut level = vec![f64::NAN; recent];
                level.extend(in_sample);
                level
            }
        };
        let mut sums: HashMap<&str, Vec<(f64, usize)>> = HashMap::new();
        for (i, value) in values.iter().enumerate() {
            let Some((event, offset)) = occurrence(i) else {
                continue;
            };
            let expected = level.get(i).copied().unwrap_or(f64::NAN)
                + seasonal.iter().map(|c| c[i]).sum::<f64>();
            if !(value.is_finite() && expected.is_finite()) {
                continue;
            }
            let slots = sums.entry(event.name.as_str()).or_default();
            if slots.len() <= offset {
                slots.resize(offset + 1, (0.0, 0));
            }
            slots[offset].0 += value - expected;
            slots[offset].1 += 1;
        }
        for (name, slots) in sums {
            let overall = {
                let (s, c) = slots.iter().fold((0.0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
                s / c.max(1) as f64
            };
            let profile = slots
                .iter()
                .map(|(s, c)| if *c > 0 { s / *c as f64 } else { overall })
                .collect();
            effects.insert(name.to_owned(), profile);
        }
    }

    let cycles = periods
        .iter()
        .zip(&seasonal)
        .map(|(p, component)| component[component.len() - p..].to_vec())
        .collect();
    Ok(Fitted {
        len,
        start,
        step,
        cycles,
        trend,
        effects,
        innovation,
        persistence,
        log,
        trend_choice: chosen_choice,
        periods,
        deseasonalised: whole,
    })
}

impl Fitted {
    /// The forecast `lead` steps after the last fitted point (`lead >= 1`, at most the
    /// horizon the model was fitted for), with the effect of any known event then.
    pub(super) fn point(&self, lead: usize, events: &[KnownEvent]) -> f64 {
        let Some(trend) = self.trend.get(lead - 1) else {
            return f64::NAN;
        };
        let seasonal: f64 = self.cycles.iter().map(|c| c[(lead - 1) % c.len()]).sum();
        let at = self.start + (self.len - 1 + lead) as i64 * self.step;
        let effect = events
            .iter()
            .find(|e| e.start <= at && at < e.end)
            .and_then(|e| {
                let profile = self.effects.get(&e.name)?;
                let offset = ((at - e.start) / self.step) as usize;
                profile.get(offset.min(profile.len() - 1)).copied()
            })
            .unwrap_or(0.0);
        let (last, age) = self.innovation;
        let correction = last
            * self
                .persistence
                .powi((age + lead).min(i32::MAX as usize) as i32);
        let point = trend + seasonal + effect + correction;
        if self.log {
            point.exp()
        } else {
            point
        }
    }

    /// The same model without its short-horizon correction.
    #[cfg(test)]
    pub(super) fn without_correction(self) -> Self {
        Fitted {
            persistence: 0.0,
            ..self
        }
    }

    /// The persistence of the innovations (the correction's decay per step).
    #[cfg(test)]
    pub(super) fn persistence(&self) -> f64 {
        self.persistence
    }

    /// Whether an effect was learned for the event named `name`.
    #[cfg(test)]
    pub(super) fn has_effect(&self, name: &str) -> bool {
        self.effects.contains_key(name)
    }
}

/// The last observed one-step innovation of the trend model (with the steps from it to the
/// last point) and the innovations' lag-1 autocorrelation, clamped to `[0, 0.95]`: only
/// persistence is carried forward, and never forever. Pairs with a point that was not
/// observed (filled gap, known event) are left out.
pub(super) fn innovations(
    deseasonalised: &[f64],
    in_sample: &[f64],
    observed: impl Fn(usize) -> bool,
) -> ((f64, usize), f64) {
    let n = deseasonalised.len().min(in_sample.len());
    let innovation = |i: usize| {
        let e = deseasonalised[i] - in_sample[i];
        (observed(i) && e.is_finite()).then_some(e)
    };
    // The first in-sample forecast is the initial state's: leave it out.
    let (mut lagged, mut square) = (0.0, 0.0);
    for i in 2..n {
        if let (Some(a), Some(b)) = (innovation(i - 1), innovation(i)) {
            lagged += a * b;
            square += a * a;
        }
    }
    let persistence = if square > 0.0 {
        (lagged / square).clamp(0.0, 0.95)
    } else {
        0.0
    };
    let last = (1..n)
        .rev()
        .find_map(|i| innovation(i).map(|e| (e, n - 1 - i)))
        .unwrap_or((0.0, 0));
    (last, persistence)
}

/// Fills `NaN`s linearly between their neighbours (and flat at the ends); `false` if nothing is
/// finite.
pub(super) fn fill_gaps(values: &mut [f64]) -> bool {
    let Some(first) = values.iter().position(|v| v.is_finite()) else {
        return false;
    };
    let first_value = values[first];
    values[..first].iter_mut().for_each(|v| *v = first_value);
    let mut last = first;
    for i in first + 1..values.len() {
        if values[i].is_finite() {
            let (a, b) = (values[last], values[i]);
            let span = (i - last) as f64;
            for (k, v) in values[last + 1..i].iter_mut().enumerate() {
                *v = a + (b - a) * (k + 1) as f64 / span;
            }
            last = i;
        }
    }
    let last_value = values[last];
    values[last + 1..].iter_mut().for_each(|v| *v = last_value);
    true
}
