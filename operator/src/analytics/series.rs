//! A regularly sampled series, as Prometheus' `query_range` returns one and as the offline
//! backtest reads one from CSV.

use k8s_openapi::jiff;
use vigil_crds::known_event::midnight_utc;

use super::AnalyticsError;

/// `values[i]` is the value at `start + i * step` (Unix seconds); `NaN` marks a missing point.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Timestamp of the first point, Unix seconds.
    pub start: i64,
    /// Seconds between points (at least 1).
    pub step: i64,
    /// One value per step; `NaN` where nothing was sampled.
    pub values: Vec<f64>,
}

impl Series {
    /// Timestamp of point `i`.
    pub fn timestamp(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    /// Number of points with a value.
    pub fn usable(&self) -> usize {
        self.values.iter().filter(|v| v.is_finite()).count()
    }
}

/// Column names read as the timestamp column, in order of preference.
const TIME_COLUMNS: [&str; 5] = ["timestamp", "ds", "time", "date", "datetime"];
/// Column names read as the value column, in order of preference.
const VALUE_COLUMNS: [&str; 3] = ["value", "y", "count"];

impl Series {
    /// Reads a CSV series: a header row, then one row per point. The timestamp column is
    /// `timestamp` (NAB, `YYYY-MM-DD HH:MM:SS`), `ds` (Prophet, `YYYY-MM-DD`), or the first
    /// column; timestamps may also be Unix seconds or RFC 3339. The value column is `value`, `y`
    /// or the second column; an empty value is a missing point. Points are placed on the median
    /// step between consecutive timestamps, and steps with no point hold `NaN`.
    pub fn from_csv(text: &str) -> Result<Series, AnalyticsError> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = lines.next() else {
            return Err(csv_error(1, "header", "the file is empty".into()));
        };
        let columns: Vec<String> = header
            .split(',')
            .map(|c| c.trim().trim_matches('"').to_ascii_lowercase())
            .collect();
        let find = |names: &[&str], fallback: usize| {
            names
                .iter()
                .find_map(|n| columns.iter().position(|c| c == n))
                .unwrap_or(fallback)
        };
        if columns.len() < 2 {
            return Err(csv_error(
                1,
                "header",
                format!(
                    "{header:?} has {} column(s), a series needs a timestamp and a value",
                    columns.len()
                ),
            ));
        }
        let (time_col, value_col) = (find(&TIME_COLUMNS, 0), find(&VALUE_COLUMNS, 1));
        let column_name = |i: usize| columns[i].clone();
        let mut points: Vec<(i64, f64)> = Vec::new();
        for (index, line) in lines {
            let number = index + 1;
            let fields: Vec<&str> = line
                .split(',')
                .map(|f| f.trim().trim_matches('"'))
                .collect();
            if fields.len() != columns.len() {
                return Err(csv_error(
                    number,
                    "row",
                    format!(
                        "has {} fields, the header has {}",
                        fields.len(),
                        columns.len()
                    ),
                ));
            }
            let stamp = parse_timestamp(fields[time_col]).map_err(|reason| {
                csv_error(
                    number,
                    &column_name(time_col),
                    format!("{:?}: {reason}", fields[time_col]),
                )
            })?;
            let raw = fields[value_col];
            let value = if raw.is_empty() {
                f64::NAN
            } else {
                raw.parse::<f64>().map_err(|_| {
                    csv_error(
                        number,
                        &column_name(value_col),
                        format!("{raw:?} is not a number"),
                    )
                })?
            };
            points.push((stamp, value));
        }
        Series::regularise(points)
    }

    /// Places `(timestamp, value)` points on the median step between consecutive distinct
    /// timestamps; a later point on the same step replaces an earlier one.
    fn regularise(mut points: Vec<(i64, f64)>) -> Result<Series, AnalyticsError> {
        if points.len() < 2 {
            return Err(AnalyticsError::TooShort {
                have: points.len(),
                need: 2,
            });
        }
        points.sort_by_key(|p| p.0);
        let mut gaps: Vec<i64> = points
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .filter(|d| *d > 0)
            .collect();
        if gaps.is_empty() {
            return Err(AnalyticsError::TooShort { have: 1, need: 2 });
        }
        gaps.sort_unstable();
        let step = gaps[gaps.len() / 2].max(1);
        let start = points[0].0;
        let last = points[points.len() - 1].0;
        let len = usize::try_from((last - start + step / 2) / step + 1).unwrap_or(0);
        const MAX_POINTS: usize = 50_000_000;
        if len > MAX_POINTS {
            return Err(AnalyticsError::InvalidSetting {
                field: "csv",
                reason: format!("{len} steps of {step} s between the first and last timestamp"),
            });
        }
        let mut values = vec![f64::NAN; len];
        for (stamp, value) in points {
            let slot = ((stamp - start + step / 2) / step) as usize;
            if let Some(v) = values.get_mut(slot) {
                *v = value;
            }
        }
        Ok(Series {
            start,
            step,
            values,
        })
    }
}

fn csv_error(line: usize, column: &str, reason: String) -> AnalyticsError {
    AnalyticsError::Csv {
        line,
        column: column.to_owned(),
        reason,
    }
}

/// Parses Unix seconds, `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS` or RFC 3339 (UTC unless an offset
/// is given) into Unix seconds.
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    if let Ok(seconds) = text.parse::<f64>() {
        if seconds.is_finite() {
            return Ok(seconds.round() as i64);
        }
    }
    let bad = |e: jiff::Error| {
        format!("not a timestamp (Unix seconds, YYYY-MM-DD, YYYY-MM-DD HH:MM:SS or RFC 3339): {e}")
    };
    if text.len() == 10 {
        return text
            .parse::<jiff::civil::Date>()
            .map(midnight_utc)
            .map_err(bad);
    }
    // With an offset it is an instant; without one, a wall-clock time read as UTC.
    text.parse::<jiff::Timestamp>()
        .map(jiff::Timestamp::as_second)
        .or_else(|_| {
            text.parse::<jiff::civil::DateTime>()
                .map_err(bad)
                .and_then(|t| {
                    t.to_zoned(jiff::tz::TimeZone::UTC)
                        .map(|z| z.timestamp().as_second())
                        .map_err(bad)
                })
        })
}

/// Formats Unix seconds as RFC 3339 UTC, such as `2014-07-01T00:00:00Z`.
pub fn format_timestamp(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds).map_or_else(|_| seconds.to_string(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NAB's timestamps are read as UTC and placed on the median step, gaps as NaN.
    #[test]
    fn nab_csv_is_regularised_with_gaps() {
        let csv = "timestamp,value\n2014-07-01 00:00:00,10\n2014-07-01 00:30:00,11\n\
                   2014-07-01 01:30:00,13\n2014-07-01 02:00:00,14\n";
        let series = Series::from_csv(csv).unwrap();
        assert_eq!(series.start, 1_404_172_800);
        assert_eq!(series.step, 1800);
        assert_eq!(series.values.len(), 5);
        assert!(series.values[2].is_nan());
        assert_eq!(series.values[4], 14.0);
    }

    /// Prophet's `ds,y` dates, Unix seconds and RFC 3339 with offsets all parse.
    #[test]
    fn other_timestamp_forms_parse() {
        let prophet = Series::from_csv("\"ds\",\"y\"\n2007-12-10,9.59\n2007-12-11,8.51\n").unwrap();
        assert_eq!((prophet.start, prophet.step), (1_197_244_800, 86_400));
        let unix = Series::from_csv("t,v\n100,1\n160,2\n220,3\n").unwrap();
        assert_eq!((unix.start, unix.step, unix.values.len()), (100, 60, 3));
        assert_eq!(
            parse_timestamp("2014-07-01T02:00:00+02:00"),
            Ok(1_404_172_800)
        );
        assert_eq!(parse_timestamp("2014-07-01T00:00:00.5Z"), Ok(1_404_172_800));
        assert_eq!(format_timestamp(1_404_174_600), "2014-07-01T00:30:00Z");
    }

    /// A bad value or timestamp is reported with its line and column.
    #[test]
    fn bad_rows_name_line_and_column() {
        let err =
            Series::from_csv("timestamp,value\n2014-07-01 00:00:00,1\n2014-07-01 00:05:00,x\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("line 3") && err.contains("value"), "{err}");
        let err = Series::from_csv("ds,y\n2014-02-30,1\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("ds") && err.contains("day"),
            "{err}"
        );
        let err = Series::from_csv("ds,y\n2014-02-03,1,2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("fields"), "{err}");
    }
}
