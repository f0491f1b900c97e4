//! A regularly sampled series, as Prometheus' `query_range` returns one and as the offline
//! backtest reads one from CSV.

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
