//! The point model behind a forecast: MSTL seasonal decomposition (augurs' `stlrs`), AutoETS on
//! the deseasonalised series (augurs' `ets`), and the learned effect of known events.
//!
//! Known-event points are neutralised before fitting (treated as missing and filled from
//! their neighbours), so an event neither bends the trend nor is learned as seasonality. The
//! event's effect is then learned per event name as the mean difference, per step into the
//! occurrence, between what happened and what the model expected, and added to future
//! occurrences of that name.

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
    /// The trend model AutoETS chose.
    pub(super) trend_choice: TrendChoice,
    /// Periods actually decomposed (those with two full cycles of history).
    pub(super) periods: Vec<usize>,
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
    let deseasonalised = &deseasonalised[recent..];
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

    let mut effects: HashMap<String, Vec<f64>> = HashMap::new();
    if in_event {
        let level = match smooth {
            Some(smooth) => smooth,
            None => {
                let mut level = vec![f64::NAN; recent];
                level.extend(
                    fitted
                        .predict_in_sample(None)
                        .map_err(|e| AnalyticsError::Fit(format!("trend in sample: {e}")))?
                        .point,
                );
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
        trend_choice: chosen_choice,
        periods,
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
        trend + seasonal + effect
    }

    /// Whether an effect was learned for the event named `name`.
    #[cfg(test)]
    pub(super) fn has_effect(&self, name: &str) -> bool {
        self.effects.contains_key(name)
    }
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
