//! Forecast tests: calibration, known events, period detection, refusals.

use super::*;

const HOUR: i64 = 3600;
/// A Monday, midnight UTC.
const START: i64 = 1_704_067_200;

/// Deterministic standard-normal noise (xorshift64* and Box-Muller).
fn noise(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed | 1;
    move || {
        let mut uniform = || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        };
        let (u, v) = (uniform().max(1e-12), uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Hourly points with a daily cycle of amplitude 20 and normal noise of sd `sd`.
fn daily_series(days: usize, sd: f64, seed: u64) -> Series {
    daily_with_noise(days, seed, |_| sd)
}

/// Hourly points with a daily cycle of amplitude 20 and normal noise whose sd at point `i` is
/// `sd(i)`.
fn daily_with_noise(days: usize, seed: u64, sd: impl Fn(usize) -> f64) -> Series {
    let mut noise = noise(seed);
    let values = (0..days * 24)
        .map(|i| {
            let phase = 2.0 * std::f64::consts::PI * (i % 24) as f64 / 24.0;
            100.0 + 20.0 * phase.sin() + sd(i) * noise()
        })
        .collect();
    Series {
        start: START,
        step: HOUR,
        values,
    }
}

fn head(series: &Series, len: usize) -> Series {
    Series {
        start: series.start,
        step: series.step,
        values: series.values[..len].to_vec(),
    }
}

/// The band calibrates: forecasts from origins in a held-out tail of a seasonal series with
/// known noise hold close to 80 % of the outcomes, at every horizon, and each forecast's
/// published (out-of-sample) coverage is close to 80 % too.
#[test]
fn band_coverage_on_held_out_tail_is_near_the_level() {
    let series = daily_series(40, 4.0, 7);
    let settings = ForecastSettings {
        periods: vec![24],
        level: 0.8,
        horizons: vec![1, 6, 24],
        events: Vec::new(),
    };
    let (mut inside, mut judged) = ([0usize; 3], [0usize; 3]);
    let mut published = Vec::new();
    // 16 origins 13 hours apart over the last 9 days.
    for k in 0..16 {
        let origin = 31 * 24 + k * 13 - 24;
        let forecast = fit_and_forecast(&head(&series, origin), &settings).unwrap();
        for (i, band) in forecast.bands.iter().enumerate() {
            let actual = series.values[origin - 1 + band.horizon];
            inside[i] += usize::from(band.lower <= actual && actual <= band.upper);
            judged[i] += 1;
            published.extend(band.coverage);
        }
    }
    let total = inside.iter().sum::<usize>() as f64 / judged.iter().sum::<usize>() as f64;
    assert!(
        (0.7..=0.9).contains(&total),
        "held-out coverage {total} ({inside:?} of {judged:?})"
    );
    for (held, count) in inside.iter().zip(judged) {
        let share = *held as f64 / count as f64;
        assert!(
            (0.55..=1.0).contains(&share),
            "per-horizon coverage {share}"
        );
    }
    let mean_published = published.iter().sum::<f64>() / published.len() as f64;
    assert!(
        (0.7..=0.9).contains(&mean_published),
        "published coverage {mean_published}"
    );
}

/// A band is about as wide as the noise says: with noise sd 4, the 80 % band at one step is
/// near 2 × 1.28 × 4 ≈ 10 wide, not collapsed and not blown up.
#[test]
fn band_width_follows_the_noise() {
    let series = daily_series(30, 4.0, 11);
    let settings = ForecastSettings {
        periods: vec![24],
        horizons: vec![1],
        ..ForecastSettings::default()
    };
    let band = &fit_and_forecast(&series, &settings).unwrap().bands[0];
    let width = band.upper - band.lower;
    assert!(
        (5.0..=20.0).contains(&width),
        "band width {width}: {band:?}"
    );
}

/// Hourly series with a daily cycle and, on `event_days`, a peak of +60 from 10:00 to 16:00.
fn series_with_peaks(days: usize, event_days: &[usize]) -> Series {
    let mut noise = noise(3);
    let values = (0..days * 24)
        .map(|i| {
            let (day, hour) = (i / 24, i % 24);
            let phase = 2.0 * std::f64::consts::PI * hour as f64 / 24.0;
            let peak = if event_days.contains(&day) && (10..16).contains(&hour) {
                60.0
            } else {
                0.0
            };
            100.0 + 20.0 * phase.sin() + peak + 2.0 * noise()
        })
        .collect();
    Series {
        start: START,
        step: HOUR,
        values,
    }
}

fn deadline(day: usize) -> KnownEvent {
    let start = START + day as i64 * 86_400;
    KnownEvent {
        name: "deadline".into(),
        start,
        end: start + 86_400,
    }
}

/// A recurring known event is forecast: its peak, learned from past occurrences, is predicted
/// at its next occurrence; without the event the same forecast has no peak.
#[test]
fn known_event_peak_is_forecast_at_its_next_occurrence() {
    let series = series_with_peaks(28, &[6, 13, 20]);
    // The series ends at the end of day 27; 13:00 on day 28 is 14 steps ahead.
    let events: Vec<KnownEvent> = [6, 13, 20, 28].into_iter().map(deadline).collect();
    let settings = ForecastSettings {
        periods: vec![24],
        level: 0.8,
        horizons: vec![14, 14 + 24],
        events: events.clone(),
    };
    let baseline = 100.0 + 20.0 * (2.0 * std::f64::consts::PI * 13.0 / 24.0).sin();
    let with = fit_and_forecast(&series, &settings).unwrap();
    let on_event = with.bands[0].mean;
    assert!(
        (on_event - baseline - 60.0).abs() < 12.0,
        "event day forecast {on_event}"
    );
    let day_after = with.bands[1].mean;
    assert!(
        (day_after - baseline).abs() < 12.0,
        "day after the event: {day_after}"
    );
    let without = fit_and_forecast(
        &series,
        &ForecastSettings {
            events: Vec::new(),
            ..settings
        },
    )
    .unwrap();
    assert!(
        without.bands[0].mean < baseline + 25.0,
        "no event: {}",
        without.bands[0].mean
    );

    let fitted = model::fit(
        &series.values,
        series.start,
        series.step,
        &[24],
        &events,
        &TrendChoice::Auto,
        1,
    )
    .unwrap();
    assert!(fitted.has_effect("deadline"));
}

/// Without periods in the settings, a daily cycle in 5-minute data is found as 288 steps.
#[test]
fn daily_period_is_detected() {
    let mut noise = noise(5);
    let values = (0..7 * 288)
        .map(|i| {
            let phase = 2.0 * std::f64::consts::PI * (i % 288) as f64 / 288.0;
            10.0 + 3.0 * phase.sin() + 0.5 * noise()
        })
        .collect();
    let series = Series {
        start: START,
        step: 300,
        values,
    };
    assert_eq!(detect_periods(&series), vec![288]);
    let settings = ForecastSettings {
        horizons: vec![12],
        ..ForecastSettings::default()
    };
    assert_eq!(
        fit_and_forecast(&series, &settings).unwrap().periods,
        vec![288]
    );
}

/// Noise without a cycle yields no period... or at least not a daily one.
#[test]
fn white_noise_has_no_daily_period() {
    let mut noise = noise(9);
    let values = (0..7 * 288).map(|_| 10.0 + noise()).collect();
    let series = Series {
        start: START,
        step: 300,
        values,
    };
    assert!(!detect_periods(&series).contains(&288));
}

/// A series shorter than two cycles of its period is refused with the counts.
#[test]
fn too_short_series_is_refused() {
    let series = daily_series(1, 1.0, 1);
    let settings = ForecastSettings {
        periods: vec![24],
        ..ForecastSettings::default()
    };
    match fit_and_forecast(&series, &settings) {
        Err(AnalyticsError::TooShort { have: 24, need: 48 }) => {}
        other => panic!("{other:?}"),
    }
    let tiny = Series {
        start: 0,
        step: 60,
        values: vec![1.0; 5],
    };
    assert!(matches!(
        fit_and_forecast(&tiny, &ForecastSettings::default()),
        Err(AnalyticsError::TooShort { have: 5, .. })
    ));
}

/// With just enough history to fit but none left to backtest, the forecast has a mean but no
/// band and no coverage: a band is never made up.
#[test]
fn no_backtest_means_no_band() {
    let series = daily_series(2, 1.0, 3);
    let settings = ForecastSettings {
        periods: vec![24],
        horizons: vec![12],
        ..ForecastSettings::default()
    };
    let forecast = fit_and_forecast(&series, &settings).expect("fits");
    let band = &forecast.bands[0];
    assert!(band.mean.is_finite(), "{band:?}");
    assert!(band.lower.is_nan() && band.upper.is_nan(), "{band:?}");
    assert_eq!(band.coverage, None);
}

/// Out-of-range settings are refused naming the setting.
#[test]
fn bad_settings_are_refused() {
    let series = daily_series(5, 1.0, 1);
    let field_of = |settings: ForecastSettings| match fit_and_forecast(&series, &settings) {
        Err(AnalyticsError::InvalidSetting { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    let base = ForecastSettings {
        periods: vec![24],
        ..ForecastSettings::default()
    };
    assert_eq!(
        field_of(ForecastSettings {
            level: 1.0,
            ..base.clone()
        }),
        "level"
    );
    assert_eq!(
        field_of(ForecastSettings {
            level: f64::NAN,
            ..base.clone()
        }),
        "level"
    );
    assert_eq!(
        field_of(ForecastSettings {
            horizons: vec![0],
            ..base.clone()
        }),
        "horizons"
    );
    assert_eq!(
        field_of(ForecastSettings {
            horizons: vec![],
            ..base.clone()
        }),
        "horizons"
    );
    assert_eq!(
        field_of(ForecastSettings {
            periods: vec![1],
            ..base.clone()
        }),
        "periods"
    );
    let backwards = KnownEvent {
        name: "x".into(),
        start: 10,
        end: 10,
    };
    assert_eq!(
        field_of(ForecastSettings {
            events: vec![backwards],
            ..base
        }),
        "events"
    );
}

/// Gaps in the history are filled, not propagated: a series with missing points still
/// forecasts finite values.
#[test]
fn gaps_do_not_break_the_forecast() {
    let mut series = daily_series(10, 2.0, 4);
    for i in (5..series.values.len()).step_by(17) {
        series.values[i] = f64::NAN;
    }
    let settings = ForecastSettings {
        periods: vec![24],
        horizons: vec![1, 24],
        ..ForecastSettings::default()
    };
    let forecast = fit_and_forecast(&series, &settings).unwrap();
    for band in &forecast.bands {
        assert!(
            band.mean.is_finite() && band.lower <= band.mean && band.mean <= band.upper,
            "{band:?}"
        );
    }
}

/// Hourly points with a daily cycle whose level triples over `days` and whose noise is 5 % of
/// the level: errors grow with the level.
fn growing_series(days: usize, seed: u64) -> Series {
    let mut noise = noise(seed);
    let n = days * 24;
    let values = (0..n)
        .map(|i| {
            let level = 100.0 * (1.0 + 2.0 * i as f64 / n as f64);
            let phase = 2.0 * std::f64::consts::PI * (i % 24) as f64 / 24.0;
            level * (1.0 + 0.2 * phase.sin()) * (1.0 + 0.05 * noise())
        })
        .collect();
    Series {
        start: START,
        step: HOUR,
        values,
    }
}

/// The band stays calibrated when the noise grows with the level: forecasts from origins in a
/// held-out tail hold close to 80 % of the outcomes at a short and at a long horizon alike.
#[test]
fn band_coverage_holds_when_noise_grows_with_the_level() {
    let series = growing_series(50, 21);
    let settings = ForecastSettings {
        periods: vec![24],
        level: 0.8,
        horizons: vec![1, 36],
        events: Vec::new(),
    };
    let (mut inside, mut judged) = ([0usize; 2], [0usize; 2]);
    // 30 origins 7 hours apart over the last 10 days.
    for k in 0..30 {
        let origin = 40 * 24 + k * 7 - 36;
        let forecast = fit_and_forecast(&head(&series, origin), &settings).unwrap();
        for (i, band) in forecast.bands.iter().enumerate() {
            let actual = series.values[origin - 1 + band.horizon];
            inside[i] += usize::from(band.lower <= actual && actual <= band.upper);
            judged[i] += 1;
        }
    }
    for (held, count) in inside.iter().zip(judged) {
        let share = *held as f64 / count as f64;
        assert!(
            (0.65..=0.95).contains(&share),
            "coverage {share} ({inside:?} of {judged:?})"
        );
    }
}

/// Hourly points with a daily cycle whose noise is calm (sd 1) before noon and rough (sd 6)
/// after: like traffic that is steady at night and bursty by day.
fn rough_afternoons(days: usize, seed: u64) -> Series {
    daily_with_noise(days, seed, |i| if i % 24 < 12 { 1.0 } else { 6.0 })
}

/// Errors sized by the season's phase: where the noise is six times rougher the band is
/// several times wider, and the band holds about its level of outcomes in the calm half and in
/// the rough half alike — one width for both would hold nearly all calm outcomes and too few
/// rough ones.
#[test]
fn band_follows_the_noise_of_each_phase() {
    let series = rough_afternoons(40, 3);
    let settings = ForecastSettings {
        periods: vec![24],
        level: 0.8,
        horizons: (1..=24).collect(),
        events: Vec::new(),
    };
    // [calm, rough]: outcomes held, outcomes judged, summed band width.
    let (mut inside, mut judged, mut width) = ([0usize; 2], [0usize; 2], [0.0; 2]);
    // 12 origins 11 hours apart over the last 6 days.
    for k in 0..12 {
        let origin = 34 * 24 + k * 11 - 24;
        let forecast = fit_and_forecast(&head(&series, origin), &settings).unwrap();
        for band in &forecast.bands {
            let at = origin - 1 + band.horizon;
            let actual = series.values[at];
            let rough = usize::from(at % 24 >= 12);
            inside[rough] += usize::from(band.lower <= actual && actual <= band.upper);
            judged[rough] += 1;
            width[rough] += band.upper - band.lower;
        }
    }
    let (calm, rough) = (width[0] / judged[0] as f64, width[1] / judged[1] as f64);
    assert!(
        rough > 2.5 * calm,
        "mean band width {calm:.1} in the calm half, {rough:.1} in the rough half"
    );
    for (half, (held, count)) in ["calm", "rough"].iter().zip(inside.iter().zip(judged)) {
        let share = *held as f64 / count as f64;
        assert!(
            (0.68..=0.92).contains(&share),
            "{half} half: coverage {share} ({inside:?} of {judged:?})"
        );
    }
}

/// Hourly points with a daily cycle whose noise grows steadily: sd 1 at the start, doubling
/// every 8 days.
fn roughening(days: usize, seed: u64) -> Series {
    daily_with_noise(days, seed, |i| (i as f64 / (8.0 * 24.0)).exp2())
}

/// Errors that grew over the history are taken to go on growing: the band follows the drift
/// and holds about its level of outcomes ahead, where the errors of the calibration origins
/// alone, smaller on average than those to come, would hold too few.
#[test]
fn band_follows_errors_that_grow() {
    let series = roughening(60, 17);
    let settings = ForecastSettings {
        periods: vec![24],
        level: 0.8,
        horizons: (1..=12).collect(),
        events: Vec::new(),
    };
    let (mut inside, mut judged) = (0usize, 0usize);
    // 16 origins 13 hours apart over the last 9 days.
    for k in 0..16 {
        let origin = 51 * 24 + k * 13 - 12;
        let forecast = fit_and_forecast(&head(&series, origin), &settings).unwrap();
        for band in &forecast.bands {
            let actual = series.values[origin - 1 + band.horizon];
            inside += usize::from(band.lower <= actual && actual <= band.upper);
            judged += 1;
        }
    }
    let share = inside as f64 / judged as f64;
    assert!(
        (0.72..=0.9).contains(&share),
        "coverage {share} ({inside} of {judged})"
    );
}

/// When errors grow with the lead, so does the band: the day-ahead and two-day bands are wider
/// than the first step's.
#[test]
fn band_widens_with_the_horizon() {
    let series = growing_series(30, 5);
    let settings = ForecastSettings {
        periods: vec![24],
        horizons: vec![1, 6, 12, 24, 48],
        ..ForecastSettings::default()
    };
    let forecast = fit_and_forecast(&series, &settings).unwrap();
    let widths: Vec<f64> = forecast
        .bands
        .iter()
        .map(|b| (b.upper - b.lower) / b.mean)
        .collect();
    assert!(
        widths[3] > widths[0] && widths[4] > widths[0],
        "relative widths {widths:?}"
    );
}

/// The per-lead scale is non-decreasing even where the measured errors dip, and leads without
/// errors take a neighbour's scale.
#[test]
fn lead_scale_is_non_decreasing() {
    let miss = |lead: usize, error: f64| Miss {
        origin: 100,
        lead,
        actual: 10.0 + error,
        forecast: 10.0,
    };
    let misses = [
        miss(1, 1.0),
        miss(2, 3.0),
        miss(3, 1.0),
        miss(5, 4.0),
        miss(5, -6.0),
    ];
    let scale = LeadScale::fit(&misses, false);
    let at: Vec<f64> = (0..=6).map(|lead| scale.at(lead)).collect();
    assert_eq!(at, vec![1.0, 1.0, 2.0, 2.0, 2.0, 5.0, 5.0]);
}

/// The innovations' persistence is their lag-1 autocorrelation, and the innovation carried
/// is the last observed one, aged by the unobserved points after it.
#[test]
fn innovation_persistence_and_last_observation() {
    let mut noise = noise(29);
    let mut innovation = 0.0;
    let actual: Vec<f64> = (0..2000)
        .map(|_| {
            innovation = 0.7 * innovation + noise();
            innovation
        })
        .collect();
    let forecast = vec![0.0; actual.len()];
    let ((last, age), persistence) = model::innovations(&actual, &forecast, |_| true);
    assert!((0.6..=0.8).contains(&persistence), "{persistence}");
    assert_eq!((last, age), (actual[1999], 0));
    // The last three points were filled, not observed.
    let ((last, age), _) = model::innovations(&actual, &forecast, |i| i < 1997);
    assert_eq!((last, age), (actual[1996], 3));
    // Alternating innovations are not persistent: nothing is carried.
    let alternating: Vec<f64> = (0..100)
        .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let (_, persistence) = model::innovations(&alternating, &vec![0.0; 100], |_| true);
    assert_eq!(persistence, 0.0);
}

/// Hourly points with a daily cycle, a 7.3-hour swing of amplitude 10 that the trend model
/// lags behind, and noise of sd 2.
fn lagging_series(days: usize, seed: u64) -> Series {
    let mut noise = noise(seed);
    let values = (0..days * 24)
        .map(|i| {
            let phase = 2.0 * std::f64::consts::PI * (i % 24) as f64 / 24.0;
            let swing = 2.0 * std::f64::consts::PI * i as f64 / 7.3;
            100.0 + 20.0 * phase.sin() + 10.0 * swing.sin() + 2.0 * noise()
        })
        .collect();
    Series {
        start: START,
        step: HOUR,
        values,
    }
}

/// Where the trend model lags a swing, its innovations persist: the correction lowers the
/// mean absolute one-step error over many origins, and has faded a day ahead.
#[test]
fn short_horizon_correction_lowers_one_step_errors_and_fades() {
    let series = lagging_series(40, 17);
    let (mut with, mut without) = (0.0, 0.0);
    for origin in (30 * 24..40 * 24 - 24).step_by(7) {
        let fitted = model::fit(
            &series.values[..origin],
            series.start,
            series.step,
            &[24],
            &[],
            &TrendChoice::Auto,
            24,
        )
        .unwrap();
        assert!(fitted.persistence() > 0.1, "{}", fitted.persistence());
        let actual = series.values[origin];
        let corrected = fitted.point(1, &[]);
        let far = fitted.point(24, &[]);
        let plain = fitted.without_correction();
        with += (actual - corrected).abs();
        without += (actual - plain.point(1, &[])).abs();
        let far_plain = plain.point(24, &[]);
        assert!(
            (far - far_plain).abs() < 0.01 * far_plain.abs(),
            "a day ahead: corrected {far}, uncorrected {far_plain}"
        );
    }
    assert!(with < without, "with correction {with}, without {without}");
}

/// Hourly points with a daily cycle and noise of sd 2 ([`daily_with_noise`]) around a level
/// that steps between 100 and 120 every 60 hours for the first `shifting` days (a large
/// customer coming and going), then holds still.
fn shifting_level(days: usize, shifting: usize, seed: u64) -> Series {
    let mut series = daily_with_noise(days, seed, |_| 2.0);
    for (i, value) in series.values.iter_mut().enumerate() {
        if i < shifting * 24 && (i / 60) % 2 == 1 {
            *value += 20.0;
        }
    }
    series
}

/// The band remembers level moves older than the backtests reach: a series whose level
/// stepped by 20 every few days for seven weeks and has held still for the seven since has a
/// two-day band wide enough to hold such a step, though the two-day backtests (all in the
/// still weeks) saw the noise only; a step ahead, the level barely moves and the band stays
/// as narrow as the noise.
#[test]
fn band_remembers_level_shifts_older_than_the_backtests() {
    let settings = ForecastSettings {
        periods: vec![24],
        level: 0.8,
        horizons: vec![1, 48],
        events: Vec::new(),
    };
    let forecast = fit_and_forecast(&shifting_level(100, 50, 31), &settings).unwrap();
    let widths: Vec<f64> = forecast.bands.iter().map(|b| b.upper - b.lower).collect();
    assert!(widths[1] >= 20.0, "band widths {widths:?}");
    assert!(widths[0] <= 12.0, "band widths {widths:?}");
    // Without the early steps, the two-day band is as narrow as the noise.
    let still = fit_and_forecast(&shifting_level(100, 0, 31), &settings).unwrap();
    let still_width = still.bands[1].upper - still.bands[1].lower;
    assert!(
        still_width < 15.0,
        "still series' two-day band {still_width}"
    );
}
