//! Analytics: learned baselines and calibrated forecasts for `anomaly` and `forecast` rules.
//!
//! - [`series`]: the regularly sampled series every model reads.
//! - [`forecast`]: seasonal forecasts whose intervals are calibrated on the series' own
//!   recent history (rolling origin), so an 80 % band holds about 80 % of outcomes.
//! - [`detector`]: the online anomaly detector behind `vigil:baseline:*` and
//!   `vigil:anomaly:score`: each point is judged with what was known before it.
//! - [`backtest`]: the offline `vigil-operator analytics backtest` command's evaluation.
//! - [`nab`]: scores detectors the way the Numenta Anomaly Benchmark does.
//! - [`engine`]: `vigil-operator analytics`, which runs both against Prometheus and
//!   publishes the results on its `/metrics`.

pub mod backtest;
pub mod detector;
pub mod engine;
pub mod forecast;
pub mod nab;
pub mod normal;
pub mod series;

/// Why an analytics step failed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// The series is too short (or too sparse) for the requested model.
    #[error("series has {have} usable points, the model needs at least {need}")]
    TooShort {
        /// Points with a value.
        have: usize,
        /// Points the model needs.
        need: usize,
    },
    /// A setting is out of range.
    #[error("invalid setting {field}: {reason}")]
    InvalidSetting {
        /// The setting's name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A CSV series or event file has a bad row.
    #[error("line {line}, column {column}: {reason}")]
    Csv {
        /// 1-based line number in the file.
        line: usize,
        /// The column's header name (or `header`/`row` for the row as a whole).
        column: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The model could not be fitted.
    #[error("model fit failed: {0}")]
    Fit(String),
}
