//! The offline `vigil-operator analytics backtest` command: reads a series from CSV, forecasts
//! it from its end with calibrated bands, evaluates the forecast at rolling origins (MAPE and
//! band coverage per horizon), and summarises the online detector's anomaly scores — what the
//! engine would publish for the series, checked against its own history.

use serde::Serialize;

use super::detector::{Detector, DetectorSettings};
use super::forecast::{fit_and_forecast, ForecastSettings, KnownEvent};
use super::series::{format_timestamp, parse_timestamp, Series};
use super::AnalyticsError;

/// Origins the rolling evaluation forecasts from.
pub const EVALUATION_ORIGINS: usize = 10;
/// Highest-scored points listed in the detector summary.
const TOP_ANOMALIES: usize = 5;
const DAY: i64 = 86_400;

/// A seasonal period as the command line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeriodSpec {
    /// One day.
    Daily,
    /// One week.
    Weekly,
    /// Both a day and a week.
    DailyAndWeekly,
    /// A period of this many seconds.
    Seconds(i64),
}

/// Parses `daily`, `weekly`, `dailyAndWeekly` or a duration such as `12h`.
pub fn parse_period(text: &str) -> Result<PeriodSpec, String> {
    match text {
        "daily" => Ok(PeriodSpec::Daily),
        "weekly" => Ok(PeriodSpec::Weekly),
        "dailyAndWeekly" => Ok(PeriodSpec::DailyAndWeekly),
        other => parse_duration(other)
            .map(PeriodSpec::Seconds)
            .map_err(|e| format!("{e}; a period is daily, weekly, dailyAndWeekly or a duration")),
    }
}

/// Parses a Prometheus-style duration such as `90s`, `30m`, `1h30m`, `1d` or `1w` into seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a duration (such as 30m, 1h, 1d, 1w)");
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => DAY,
            'w' => 7 * DAY,
            'y' => 365 * DAY,
            _ => return Err(bad()),
        };
        let amount: i64 = digits.parse().map_err(|_| bad())?;
        total = amount
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || total <= 0 {
        return Err(bad());
    }
    Ok(total)
}

/// Formats seconds as Prometheus duration text: `1h`, `6h`, `1d`, `1h30m`.
pub fn format_duration(seconds: i64) -> String {
    let mut rest = seconds;
    let mut text = String::new();
    for (unit, name) in [(7 * DAY, "w"), (DAY, "d"), (3600, "h"), (60, "m"), (1, "s")] {
        if rest >= unit {
            text.push_str(&format!("{}{name}", rest / unit));
            rest %= unit;
        }
    }
    if text.is_empty() {
        "0s".to_owned()
    } else {
        text
    }
}

/// Reads known events from CSV rows `name,start,end` (an optional `name,start,end` header; RFC
/// 3339 date or date-time; `end` exclusive, empty or absent meaning start + 1 day).
pub fn parse_events(text: &str) -> Result<Vec<KnownEvent>, AnalyticsError> {
    let mut events = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let fields: Vec<&str> = line
            .split(',')
            .map(|f| f.trim().trim_matches('"'))
            .collect();
        if line.trim().is_empty() || (index == 0 && fields[0].eq_ignore_ascii_case("name")) {
            continue;
        }
        let csv = |column: &str, reason: String| AnalyticsError::Csv {
            line: number,
            column: column.to_owned(),
            reason,
        };
        if fields.len() < 2 || fields.len() > 3 || fields[0].is_empty() {
            return Err(csv("row", "an event row is name,start[,end]".into()));
        }
        let start = parse_timestamp(fields[1])
            .map_err(|e| csv("start", format!("{:?}: {e}", fields[1])))?;
        let end = match fields.get(2).filter(|f| !f.is_empty()) {
            Some(end) => parse_timestamp(end).map_err(|e| csv("end", format!("{end:?}: {e}")))?,
            None => start + DAY,
        };
        if end <= start {
            return Err(csv(
                "end",
                format!("{:?} is not after the start", fields[2]),
            ));
        }
        events.push(KnownEvent {
            name: fields[0].to_owned(),
            start,
            end,
        });
    }
    Ok(events)
}

/// What the backtest is asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct BacktestOptions {
    /// Seasonal periods; empty: detected.
    pub periods: Vec<PeriodSpec>,
    /// Horizons in seconds; empty: 1 hour and 1 day.
    pub horizons: Vec<i64>,
    /// Central probability of the band.
    pub level: f64,
    /// Known events, past and future.
    pub events: Vec<KnownEvent>,
}

impl Default for BacktestOptions {
    fn default() -> Self {
        BacktestOptions {
            periods: Vec::new(),
            horizons: Vec::new(),
            level: 0.8,
            events: Vec::new(),
        }
    }
}

/// The backtest's findings.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The series read.
    pub series: SeriesSummary,
    /// Seasonal periods the final forecast decomposed, as durations.
    pub periods: Vec<String>,
    /// Central probability of the bands.
    pub level: f64,
    /// The forecast from the series' last point, per horizon.
    pub forecast: Vec<ForecastRow>,
    /// Rolling-origin evaluation, per horizon.
    pub evaluation: Vec<EvaluationRow>,
    /// The online detector over the whole series.
    pub anomalies: AnomalySummary,
}

/// Shape of the series read.
#[derive(Clone, Debug, Serialize)]
pub struct SeriesSummary {
    /// First timestamp (RFC 3339).
    pub start: String,
    /// Last timestamp (RFC 3339).
    pub end: String,
    /// Step between points, as a duration.
    pub step: String,
    /// Steps, including missing ones.
    pub points: usize,
    /// Steps without a value.
    pub missing: usize,
}

/// The forecast at one horizon.
#[derive(Clone, Debug, Serialize)]
pub struct ForecastRow {
    /// Horizon as a duration, such as `1h`.
    pub horizon: String,
    /// The moment forecast (RFC 3339).
    pub at: String,
    /// Expected value.
    pub mean: f64,
    /// Lower edge of the calibrated band.
    pub lower: f64,
    /// Upper edge of the calibrated band.
    pub upper: f64,
    /// Share of backtested outcomes the band held, measured out of sample.
    pub coverage: Option<f64>,
}

/// Accuracy at one horizon over the rolling origins.
#[derive(Clone, Debug, Serialize)]
pub struct EvaluationRow {
    /// Horizon as a duration.
    pub horizon: String,
    /// Outcomes judged.
    pub predictions: usize,
    /// Mean absolute percentage error, in percent (outcomes equal to zero left out).
    pub mape: Option<f64>,
    /// Share of outcomes inside the published band.
    pub coverage: Option<f64>,
}

/// The online detector's scores.
#[derive(Clone, Debug, Serialize)]
pub struct AnomalySummary {
    /// Points judged.
    pub judged: usize,
    /// Points scoring at least 0.5.
    pub above_half: usize,
    /// Points scoring at least 0.9.
    pub above_nine_tenths: usize,
    /// The highest-scored points, highest first.
    pub top: Vec<ScoredPoint>,
}

/// One judged point.
#[derive(Clone, Debug, Serialize)]
pub struct ScoredPoint {
    /// When (RFC 3339).
    pub at: String,
    /// The value.
    pub value: f64,
    /// What the detector expected.
    pub expected: f64,
    /// Anomaly score in `[0, 1]`.
    pub score: f64,
}

/// Forecasts, evaluates and scores `series`.
pub fn run(series: &Series, options: &BacktestOptions) -> Result<Report, AnalyticsError> {
    let step = series.step;
    let horizon_seconds = if options.horizons.is_empty() {
        vec![3600, DAY]
    } else {
        options.horizons.clone()
    };
    let horizons = horizon_seconds
        .iter()
        .map(|s| {
            if *s < step {
                return Err(AnalyticsError::InvalidSetting {
                    field: "horizon",
                    reason: format!(
                        "{} is shorter than the series' step {}",
                        format_duration(*s),
                        format_duration(step)
                    ),
                });
            }
            Ok((s / step) as usize)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let periods = period_steps(&options.periods, step)?;
    let settings = ForecastSettings {
        periods: periods.clone(),
        level: options.level,
        horizons: horizons.clone(),
        events: options.events.clone(),
    };
    let n = series.values.len();
    let last = series.timestamp(n.saturating_sub(1));
    let forecast = fit_and_forecast(series, &settings)?;
    let rows = forecast
        .bands
        .iter()
        .map(|b| ForecastRow {
            horizon: format_duration(b.horizon as i64 * step),
            at: format_timestamp(last + b.horizon as i64 * step),
            mean: b.mean,
            lower: b.lower,
            upper: b.upper,
            coverage: b.coverage,
        })
        .collect();
    let evaluation = evaluate(series, &settings);
    let anomalies = score(series, &forecast.periods, options.level);
    Ok(Report {
        series: SeriesSummary {
            start: format_timestamp(series.start),
            end: format_timestamp(last),
            step: format_duration(step),
            points: n,
            missing: n - series.usable(),
        },
        periods: forecast
            .periods
            .iter()
            .map(|p| format_duration(*p as i64 * step))
            .collect(),
        level: options.level,
        forecast: rows,
        evaluation,
        anomalies,
    })
}

fn period_steps(specs: &[PeriodSpec], step: i64) -> Result<Vec<usize>, AnalyticsError> {
    let mut seconds = Vec::new();
    for spec in specs {
        match spec {
            PeriodSpec::Daily => seconds.push(DAY),
            PeriodSpec::Weekly => seconds.push(7 * DAY),
            PeriodSpec::DailyAndWeekly => seconds.extend([DAY, 7 * DAY]),
            PeriodSpec::Seconds(s) => seconds.push(*s),
        }
    }
    let mut steps = Vec::new();
    for s in seconds {
        if s < 2 * step {
            return Err(AnalyticsError::InvalidSetting {
                field: "period",
                reason: format!(
                    "{} is less than two steps of {}",
                    format_duration(s),
                    format_duration(step)
                ),
            });
        }
        let p = (s / step) as usize;
        if !steps.contains(&p) {
            steps.push(p);
        }
    }
    Ok(steps)
}

/// Forecasts from [`EVALUATION_ORIGINS`] origins ending where the longest horizon reaches the
/// last point, each from the history before it only, and judges every horizon.
fn evaluate(series: &Series, settings: &ForecastSettings) -> Vec<EvaluationRow> {
    let n = series.values.len();
    let longest = settings.horizons.iter().copied().max().unwrap_or(1);
    let stride = (longest / 2).max(1);
    // (absolute percentage errors, inside count, judged) per horizon.
    let mut tallies = vec![(Vec::new(), 0usize, 0usize); settings.horizons.len()];
    for k in 0..EVALUATION_ORIGINS {
        let Some(origin) = n.checked_sub(longest + k * stride) else {
            break;
        };
        let history = Series {
            start: series.start,
            step: series.step,
            values: series.values[..origin].to_vec(),
        };
        let Ok(forecast) = fit_and_forecast(&history, settings) else {
            break;
        };
        for (band, tally) in forecast.bands.iter().zip(&mut tallies) {
            let actual = series.values[origin - 1 + band.horizon];
            if !actual.is_finite() {
                continue;
            }
            if actual != 0.0 {
                tally.0.push(((actual - band.mean) / actual).abs() * 100.0);
            }
            tally.1 += usize::from(band.lower <= actual && actual <= band.upper);
            tally.2 += 1;
        }
    }
    settings
        .horizons
        .iter()
        .zip(tallies)
        .map(|(h, (errors, inside, judged))| EvaluationRow {
            horizon: format_duration(*h as i64 * series.step),
            predictions: judged,
            mape: (!errors.is_empty()).then(|| errors.iter().sum::<f64>() / errors.len() as f64),
            coverage: (judged > 0).then(|| inside as f64 / judged as f64),
        })
        .collect()
}

fn score(series: &Series, periods: &[usize], level: f64) -> AnomalySummary {
    let mut detector = Detector::new(DetectorSettings {
        periods: periods.to_vec(),
        level,
    });
    let mut scored: Vec<ScoredPoint> = Vec::new();
    for (i, value) in series.values.iter().enumerate() {
        let at = series.timestamp(i);
        let judgement = detector.observe(at, *value);
        if value.is_finite() && judgement.score.is_finite() {
            scored.push(ScoredPoint {
                at: format_timestamp(at),
                value: *value,
                expected: judgement.expected,
                score: judgement.score,
            });
        }
    }
    let above = |t: f64| scored.iter().filter(|p| p.score >= t).count();
    let (judged, above_half, above_nine_tenths) = (scored.len(), above(0.5), above(0.9));
    scored.sort_by(|a, b| b.score.total_cmp(&a.score));
    scored.truncate(TOP_ANOMALIES);
    AnomalySummary {
        judged,
        above_half,
        above_nine_tenths,
        top: scored,
    }
}

impl Report {
    /// The report as aligned text for a terminal.
    pub fn to_text(&self) -> String {
        let s = &self.series;
        let mut out = format!(
            "series: {} .. {}, step {}, {} points ({} missing)\nseasonal periods: {}\n\n",
            s.start,
            s.end,
            s.step,
            s.points,
            s.missing,
            if self.periods.is_empty() {
                "none".to_owned()
            } else {
                self.periods.join(", ")
            }
        );
        let percent = self.level * 100.0;
        out.push_str(&format!(
            "forecast from the last point ({percent:.0} % band):\n"
        ));
        out.push_str("  horizon  at                     mean          lower         upper         coverage\n");
        for r in &self.forecast {
            out.push_str(&format!(
                "  {:<8} {:<22} {:<13.4} {:<13.4} {:<13.4} {}\n",
                r.horizon,
                r.at,
                r.mean,
                r.lower,
                r.upper,
                r.coverage.map_or("-".to_owned(), |c| format!("{c:.3}"))
            ));
        }
        out.push_str(&format!(
            "\nrolling-origin evaluation (up to {EVALUATION_ORIGINS} origins):\n  horizon  predictions  MAPE %    coverage\n"
        ));
        for r in &self.evaluation {
            out.push_str(&format!(
                "  {:<8} {:<12} {:<9} {}\n",
                r.horizon,
                r.predictions,
                r.mape.map_or("-".to_owned(), |m| format!("{m:.2}")),
                r.coverage.map_or("-".to_owned(), |c| format!("{c:.3}"))
            ));
        }
        let a = &self.anomalies;
        out.push_str(&format!(
            "\nonline detector: {} points judged, {} scored >= 0.5, {} scored >= 0.9; highest:\n",
            a.judged, a.above_half, a.above_nine_tenths
        ));
        for p in &a.top {
            out.push_str(&format!(
                "  {}  value {:.4}  expected {:.4}  score {:.3}\n",
                p.at, p.value, p.expected, p.score
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations read and print in Prometheus' form, and bad ones are refused.
    #[test]
    fn durations_round_trip() {
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("1d"), Ok(DAY));
        assert_eq!(format_duration(5400), "1h30m");
        assert_eq!(format_duration(DAY), "1d");
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("10").is_err());
        assert_eq!(
            parse_period("dailyAndWeekly"),
            Ok(PeriodSpec::DailyAndWeekly)
        );
        assert!(parse_period("hourly")
            .unwrap_err()
            .contains("dailyAndWeekly"));
    }

    /// Event rows read with their default end, and a bad date names its line and column.
    #[test]
    fn events_parse_with_defaults_and_errors() {
        let events = parse_events(
            "name,start,end\ndeadline,2024-04-15\nsale,2024-11-29T00:00:00Z,2024-12-01\n",
        )
        .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].end - events[0].start, DAY);
        assert_eq!(events[1].end - events[1].start, 2 * DAY);
        let err = parse_events("deadline,2024-13-01\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") && err.contains("start"), "{err}");
    }

    /// On a daily-seasonal series the report forecasts every horizon, evaluates it at rolling
    /// origins with a finite MAPE, and lists scored points.
    #[test]
    fn report_covers_every_horizon() {
        let values: Vec<f64> = (0..24 * 21)
            .map(|i| {
                let phase = 2.0 * std::f64::consts::PI * (i % 24) as f64 / 24.0;
                50.0 + 20.0 * phase.sin() + ((i * 7919) % 13) as f64 * 0.5
            })
            .collect();
        let series = Series {
            start: 1_700_000_000 - 1_700_000_000 % DAY,
            step: 3600,
            values,
        };
        let options = BacktestOptions {
            periods: vec![PeriodSpec::Daily],
            horizons: vec![3600, 6 * 3600, DAY],
            ..BacktestOptions::default()
        };
        let report = run(&series, &options).unwrap();
        let horizons: Vec<&str> = report.forecast.iter().map(|r| r.horizon.as_str()).collect();
        assert_eq!(horizons, ["1h", "6h", "1d"]);
        assert_eq!(report.periods, ["1d"]);
        for row in &report.evaluation {
            assert_eq!(row.predictions, EVALUATION_ORIGINS, "{row:?}");
            let mape = row.mape.unwrap();
            assert!(mape.is_finite() && mape < 20.0, "{row:?}");
        }
        assert_eq!(report.anomalies.judged, 24 * 21);
        assert!(report.to_text().contains("rolling-origin evaluation"));
    }
}
