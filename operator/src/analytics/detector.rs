//! The online anomaly detector behind `vigil:baseline:*` and `vigil:anomaly:score`: each point
//! is judged with what was known before it, then learned from. One default setting serves
//! every series.
//!
//! Three kinds of evidence, each turned into an anomaly likelihood:
//! - **Surprise.** Several simple predictions of the point — the median of the last
//!   [`RECENT`] values, a fast moving average, the previous value, and the values around the
//!   same time one day and one week earlier — and the smallest of their errors, divided by the
//!   range the series has spanned so far (so the detector is scale-free). A point any one
//!   prediction explains is not surprising: a daily peak matches yesterday's, a new level
//!   matches the previous value once it holds. Judged over the last [`SHORT`] points and,
//!   for slow incidents, as a moving average of about [`SLOW`] points.
//! - **Rarity.** How few of the last [`RARITY_WINDOW`] values lie within
//!   [`RARITY_WIDTH`] of the range of this one (`1 / (1 + count)`), judged over the last
//!   [`RARITY_SHORT`] points: a value the series has not visited lately.
//! - **Anomaly likelihood.** Each judged statistic is compared with its own long-run mean and
//!   spread (exponentially weighted over about `1 / LONG` points; the spread widened when its
//!   tracked [`TAIL_QUANTILE`] shows a heavier tail than a Gaussian's): its Gaussian tail
//!   probability `p` gives `−ln p / ln 10¹⁰` (`p = 10⁻¹⁰` gives 1). The score is the sum of
//!   the short surprise's and [`RARITY_WEIGHT`] times the rarity's (independent evidence
//!   multiplies probabilities), or the slow surprise's if higher, capped at 1.
//! - **One alarm per incident.** Once a score reaches [`FIRED`], the next [`QUIET`] points
//!   score 0: the first detection of an incident is the one that matters, repeats are noise.
//!   The first [`WARM_UP`] points are learned but score 0.
//!
//! The published band is the median prediction ± the normal quantile of `level` times the
//! exponentially weighted spread of its errors.
//!
//! **Seasonality.** Without [`DetectorSettings::periods`] the seasonal predictions try one
//! day and one week back, and a lag explains a point only where it fits; the last
//! [`HISTORY`] points are kept (a week of 5-minute points: at 1-minute points the week lag is
//! out of reach). With periods (the rule's `seasonality`, in points at the series' step, the
//! step being the smallest gap between learned points) exactly those lags are tried, the
//! history holds the longest period and [`HISTORY_SPARE`] points more, and the rarity counts
//! over the longest period (sampled, so its work stays O([`RARITY_WINDOW`])): a weekend's
//! usual level is neither surprising nor rare, the same level on a weekday is surprising.
//!
//! State per series: a few numbers, the last [`RECENT`] values, a few recent statistics, and
//! the history at 8 bytes a point (`u32` time offset, `f32` deviation): 18 KB with no period,
//! 83 KB for a weekly period at 1-minute points ([`Detector::state_bytes`]; the NAB bench
//! prints both). Work per point: O([`RARITY_WINDOW`]).
//!
//! `cargo bench -p vigil-operator --bench nab` scores it on the Numenta Anomaly Benchmark.

use std::collections::VecDeque;

use super::normal::{quantile as normal_quantile, tail as normal_tail};

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
    /// Anomaly score in `[0, 1]`: how unusual the point is given everything before it; 0 for
    /// the [`QUIET`] points after one that reached [`FIRED`] (one detection per incident).
    pub score: f64,
    /// Score of the incident the point belongs to: for the [`QUIET`] points after a detection,
    /// the highest score since it; elsewhere the point's own score. What an alert thresholds:
    /// it holds while an incident lasts, so the alert's `for` and the band decide when it ends.
    pub incident: f64,
}

/// Recent values whose median is the expected value.
const RECENT: usize = 16;
/// Weight of the newest value in the fast moving average.
const FAST: f64 = 0.3;
/// Weight of the newest error in the band's spread.
const BAND: f64 = 0.02;
/// Points whose mean surprise is judged.
const SHORT: usize = 5;
/// Points in the slow moving average of the surprise.
const SLOW: f64 = 30.0;
/// Past values a value's rarity is counted among.
const RARITY_WINDOW: usize = 2_000;
/// Half-width, as a share of the range seen so far, of the neighbourhood counted for rarity.
const RARITY_WIDTH: f64 = 0.08;
/// Points whose mean rarity is judged.
const RARITY_SHORT: usize = 6;
/// Weight of the rarity's score against the surprise's.
const RARITY_WEIGHT: f64 = 1.2;
/// Weight of the newest statistic in its long-run mean and variance.
const LONG: f64 = 1.0 / 1000.0;
/// Points learned before any score is published.
const WARM_UP: u64 = 250;
/// Quantile of each statistic tracked to measure how heavy its upper tail is.
const TAIL_QUANTILE: f64 = 0.985;
/// Step of the tracked quantile, in standard deviations of the statistic.
const TAIL_STEP: f64 = 0.01;
/// Tail probability `10⁻¹⁰`, as `−ln`: the tail that scores 1.
const FULL_SCORE_LOG_TAIL: f64 = 23.025_850_929_940_457;
/// Score at which the detector has fired.
const FIRED: f64 = 0.58;
/// Points after a firing that score 0.
const QUIET: u64 = 120;
/// Seasonal lags when the settings give no period, in seconds: one day and one week.
const LAGS: [i64; 2] = [86_400, 7 * 86_400];
/// Points on either side of a lagged time that may explain a value.
const LAG_SLACK: usize = 2;
/// Points kept beyond the longest given period, so the points around its lag stay in reach.
const HISTORY_SPARE: usize = 184;
/// Most points kept for the seasonal predictions and the rarity when the settings give no
/// period (a week of 5-minute points and some).
const HISTORY: usize = 2_016 + HISTORY_SPARE;

/// A statistic's long-run mean, variance and upper [`TAIL_QUANTILE`], and how unlikely a new
/// value of it is.
#[derive(Clone, Debug, Default)]
struct Likelihood {
    mean: f64,
    variance: f64,
    /// Running estimate of the statistic's [`TAIL_QUANTILE`] (stochastic approximation).
    tail: f64,
}

impl Likelihood {
    /// `−ln P(Z > z) / ln 10¹⁰` in `[0, 1]` for the statistic's z-score, then learns it.
    ///
    /// The z-score's unit is the standard deviation or, when the statistic's upper tail is
    /// heavier than a Gaussian's (its tracked quantile lies further out than the Gaussian
    /// quantile would), the spread that tail implies: a bursty series needs a bigger burst to
    /// raise the same score as a calm one.
    fn judge_and_learn(&mut self, statistic: f64) -> f64 {
        let sd = self.variance.sqrt().max(1e-6);
        let tail_spread = (self.tail - self.mean) / normal_quantile(TAIL_QUANTILE);
        let z = (statistic - self.mean) / tail_spread.max(sd);
        let step = TAIL_STEP * sd;
        if statistic > self.tail {
            self.tail += step * TAIL_QUANTILE;
        } else {
            self.tail -= step * (1.0 - TAIL_QUANTILE);
        }
        let score = (-log_normal_tail(z) / FULL_SCORE_LOG_TAIL).clamp(0.0, 1.0);
        let delta = statistic - self.mean;
        self.mean += LONG * delta;
        self.variance = (1.0 - LONG) * (self.variance + LONG * delta * delta);
        score
    }
}

/// The mean of the last `N` values of a statistic.
#[derive(Clone, Debug, Default)]
struct RecentMean<const N: usize> {
    values: VecDeque<f64>,
    sum: f64,
}

impl<const N: usize> RecentMean<N> {
    fn push(&mut self, value: f64) -> f64 {
        self.values.push_back(value);
        self.sum += value;
        if self.values.len() > N {
            self.sum -= self.values.pop_front().unwrap_or(0.0);
        }
        self.sum / self.values.len() as f64
    }
}

/// The last points, oldest first, packed for a long memory: each timestamp as seconds after
/// the first one learned (`u32`: 136 years), each value as its `f32` difference from the
/// first value learned. Every value lies within the series' range of that first one, so the
/// rounding is below 10⁻⁷ of the range, whatever the magnitude (a gauge near 10¹² varying by
/// 10 too), while the seasonal predictions and the rarity compare values to a share of the
/// range.
#[derive(Clone, Debug)]
struct History {
    origin: i64,
    base: f64,
    offsets: VecDeque<u32>,
    deviations: VecDeque<f32>,
}

impl History {
    fn with_capacity(capacity: usize) -> Self {
        History {
            origin: i64::MIN,
            base: 0.0,
            offsets: VecDeque::with_capacity(capacity),
            deviations: VecDeque::with_capacity(capacity),
        }
    }

    fn len(&self) -> usize {
        self.deviations.len()
    }

    fn offset(&self, timestamp: i64) -> i64 {
        timestamp.saturating_sub(self.origin)
    }

    fn push(&mut self, timestamp: i64, value: f64) {
        if self.origin == i64::MIN {
            self.origin = timestamp;
            self.base = value;
        }
        let offset = self.offset(timestamp).clamp(0, i64::from(u32::MAX));
        // Clamped into range just above.
        self.offsets.push_back(offset as u32);
        self.deviations.push_back((value - self.base) as f32);
    }

    fn pop_front(&mut self) {
        self.offsets.pop_front();
        self.deviations.pop_front();
    }

    /// Timestamp of the oldest point kept.
    fn first_time(&self) -> Option<i64> {
        self.offsets.front().map(|&o| self.origin + i64::from(o))
    }

    /// Index of the first point at or after `timestamp`.
    fn position(&self, timestamp: i64) -> usize {
        let offset = self.offset(timestamp);
        self.offsets.partition_point(|&o| i64::from(o) < offset)
    }

    fn value(&self, index: usize) -> f64 {
        self.base + f64::from(self.deviations[index])
    }

    fn capacity_bytes(&self) -> usize {
        self.offsets.capacity() * std::mem::size_of::<u32>()
            + self.deviations.capacity() * std::mem::size_of::<f32>()
    }
}

/// Online detector state for one series.
#[derive(Clone, Debug)]
pub struct Detector {
    settings: DetectorSettings,
    /// Values learned so far.
    seen: u64,
    min: f64,
    max: f64,
    /// Fast exponentially weighted moving average of the values.
    fast: f64,
    /// The last [`RECENT`] values.
    recent: VecDeque<f64>,
    /// Exponentially weighted variance of the expected value's error.
    error_var: f64,
    short_surprise: RecentMean<SHORT>,
    short_surprise_likelihood: Likelihood,
    slow_surprise: f64,
    slow_surprise_likelihood: Likelihood,
    short_rarity: RecentMean<RARITY_SHORT>,
    rarity_likelihood: Likelihood,
    /// Points since the score last reached [`FIRED`].
    since_fired: u64,
    /// Highest score since the last detection, while [`QUIET`].
    incident: f64,
    /// The last points: a week and some, or the longest given period and some.
    history: History,
    /// Most points [`Detector::history`] keeps.
    history_limit: usize,
    /// Seconds between points: the smallest gap between two learned points so far.
    step: i64,
    /// Timestamp of the last learned point.
    last_learned: Option<i64>,
}

impl Detector {
    /// A detector that has seen nothing yet.
    pub fn new(settings: DetectorSettings) -> Self {
        let longest = settings.periods.iter().copied().max().unwrap_or(0);
        let history_limit = HISTORY.max(longest.saturating_add(HISTORY_SPARE));
        Detector {
            settings,
            seen: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            fast: 0.0,
            recent: VecDeque::with_capacity(RECENT + 1),
            error_var: 0.0,
            short_surprise: RecentMean::default(),
            short_surprise_likelihood: Likelihood::default(),
            slow_surprise: 0.0,
            slow_surprise_likelihood: Likelihood::default(),
            short_rarity: RecentMean::default(),
            rarity_likelihood: Likelihood::default(),
            since_fired: u64::MAX,
            incident: 0.0,
            history: History::with_capacity(history_limit + 1),
            history_limit,
            step: i64::MAX,
            last_learned: None,
        }
    }

    /// Judges `value` (at `timestamp`, Unix seconds) against what came before, then learns it.
    /// A missing value (NaN or infinite) is judged with score 0 and not learned.
    pub fn observe(&mut self, timestamp: i64, value: f64) -> Judgement {
        let expected = if self.seen == 0 {
            if value.is_finite() {
                value
            } else {
                0.0
            }
        } else {
            self.median_recent()
        };
        let width = normal_quantile(0.5 + self.settings.level / 2.0) * self.error_var.sqrt();
        let mut judgement = Judgement {
            expected,
            lower: expected - width,
            upper: expected + width,
            score: 0.0,
            incident: if self.since_fired < QUIET {
                self.incident
            } else {
                0.0
            },
        };
        if !value.is_finite() {
            return judgement;
        }

        let surprise = self.surprise(timestamp, value, expected);
        let short = self.short_surprise.push(surprise);
        let short = self.short_surprise_likelihood.judge_and_learn(short);
        self.slow_surprise += (surprise - self.slow_surprise) / SLOW;
        let slow = self
            .slow_surprise_likelihood
            .judge_and_learn(self.slow_surprise);
        let rarity = self.short_rarity.push(self.rarity(value));
        let rarity = self.rarity_likelihood.judge_and_learn(rarity);
        if self.seen >= WARM_UP && self.since_fired >= QUIET {
            judgement.score = (short + RARITY_WEIGHT * rarity).max(slow).min(1.0);
        }
        self.since_fired = if judgement.score >= FIRED {
            self.incident = judgement.score;
            0
        } else {
            self.since_fired.saturating_add(1)
        };
        judgement.incident = judgement.incident.max(judgement.score);
        self.learn(timestamp, value, expected);
        judgement
    }

    /// Bytes this detector occupies: the struct itself and every buffer it has allocated (by
    /// capacity, as the allocator sees it).
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.settings.periods.capacity() * std::mem::size_of::<usize>()
            + self.recent.capacity() * std::mem::size_of::<f64>()
            + self.short_surprise.values.capacity() * std::mem::size_of::<f64>()
            + self.short_rarity.values.capacity() * std::mem::size_of::<f64>()
            + self.history.capacity_bytes()
    }

    /// The smallest error of the simple predictions, as a share of the range seen so far.
    fn surprise(&self, timestamp: i64, value: f64, expected: f64) -> f64 {
        let range = self.max - self.min;
        if self.seen == 0 || range <= 0.0 {
            return 0.0;
        }
        let last = self.recent.back().copied().unwrap_or(expected);
        let recent = [expected, self.fast, last]
            .iter()
            .map(|p| (value - p).abs())
            .fold(f64::INFINITY, f64::min);
        let seasonal = self
            .lags()
            .filter_map(|lag| self.lagged_error(timestamp - lag, value))
            .fold(f64::INFINITY, f64::min);
        (recent.min(seasonal) / range).min(1.0)
    }

    /// The seasonal lags tried, in seconds: the given periods at the series' step, or one day
    /// and one week when none is given.
    fn lags(&self) -> impl Iterator<Item = i64> + '_ {
        let given = self.settings.periods.iter().filter_map(|&p| {
            let points = i64::try_from(p).ok()?;
            (self.step != i64::MAX).then(|| points.saturating_mul(self.step))
        });
        let default = LAGS
            .iter()
            .copied()
            .filter(|_| self.settings.periods.is_empty());
        given.chain(default)
    }

    /// `1 / (1 + n)` for the `n` of the recent values near `value`: among the last
    /// [`RARITY_WINDOW`] values or, when a longer period is given, the last period's values
    /// (every `k`-th of them, `n` scaled by `k`, so the work stays O([`RARITY_WINDOW`])).
    fn rarity(&self, value: f64) -> f64 {
        let range = self.max - self.min;
        if self.seen < 2 || range <= 0.0 {
            return 0.0;
        }
        let width = RARITY_WIDTH * range;
        let longest = self.settings.periods.iter().copied().max().unwrap_or(0);
        let window = RARITY_WINDOW.max(longest);
        let stride = window.div_ceil(RARITY_WINDOW);
        let start = self.history.len().saturating_sub(window);
        let (older, newer) = self.history.deviations.as_slices();
        let deviation = value - self.history.base;
        let is_near = |d: &f32| (f64::from(*d) - deviation).abs() <= width;
        // The plain loop when every value counts: it vectorises, a stepped one does not.
        let near = |deviations: &[f32]| match stride {
            1 => deviations.iter().filter(|d| is_near(d)).count(),
            _ => deviations
                .iter()
                .step_by(stride)
                .filter(|d| is_near(d))
                .count(),
        };
        let count = near(older.get(start..).unwrap_or_default())
            + near(&newer[start.saturating_sub(older.len())..]);
        1.0 / (1.0 + (count * stride) as f64)
    }

    /// The smallest distance from `value` to the points next to `target` in the history, if
    /// the history reaches back that far.
    fn lagged_error(&self, target: i64, value: f64) -> Option<f64> {
        if self.history.first_time().is_none_or(|t| t > target) {
            return None;
        }
        let at = self.history.position(target);
        let end = (at + LAG_SLACK + 1).min(self.history.len());
        (at.saturating_sub(LAG_SLACK)..end)
            .map(|i| (value - self.history.value(i)).abs())
            .reduce(f64::min)
    }

    fn median_recent(&self) -> f64 {
        let mut values = [0.0; RECENT];
        let n = self.recent.len();
        for (slot, value) in values.iter_mut().zip(&self.recent) {
            *slot = *value;
        }
        let values = &mut values[..n];
        values.sort_by(f64::total_cmp);
        match n {
            0 => 0.0,
            n if n % 2 == 1 => values[n / 2],
            n => 0.5 * (values[n / 2 - 1] + values[n / 2]),
        }
    }

    fn learn(&mut self, timestamp: i64, value: f64, expected: f64) {
        if self.seen == 0 {
            self.fast = value;
        } else {
            let error = value - expected;
            self.error_var = (1.0 - BAND) * (self.error_var + BAND * error * error);
            self.fast += FAST * (value - self.fast);
        }
        self.recent.push_back(value);
        if self.recent.len() > RECENT {
            self.recent.pop_front();
        }
        if let Some(last) = self.last_learned {
            if timestamp > last {
                self.step = self.step.min(timestamp - last);
            }
        }
        self.last_learned = Some(timestamp);
        self.history.push(timestamp, value);
        let longest = self.lags().max().unwrap_or(0).max(LAGS[LAGS.len() - 1]);
        let oldest = timestamp - longest - 3_600;
        while self.history.len() > self.history_limit
            || self.history.first_time().is_some_and(|t| t < oldest)
        {
            self.history.pop_front();
        }
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.seen += 1;
    }
}

/// `ln P(Z > z)` for a standard normal `Z`; past `z = 5` from the asymptotic series, where the
/// tail itself is too small for the approximation below.
fn log_normal_tail(z: f64) -> f64 {
    if z < 5.0 {
        normal_tail(z).ln()
    } else {
        -0.5 * z * z - (z * std::f64::consts::TAU.sqrt()).ln() + (1.0 - 1.0 / (z * z)).ln()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    /// A NAB data file (`tests/fixtures/nab/data/<name>`): its timestamps as written, their
    /// Unix seconds (every NAB timestamp is on a regular grid from the first one) and values.
    fn nab_series(name: &str) -> (Vec<String>, Vec<i64>, Vec<f64>) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/nab/data")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut timestamps = Vec::new();
        let mut values = Vec::new();
        for line in text.lines().skip(1) {
            let (t, v) = line.split_once(',').unwrap();
            timestamps.push(t.to_owned());
            values.push(v.parse().unwrap());
        }
        // Seconds since the first row: a day is 86,400 s whatever the epoch.
        let seconds = timestamps
            .iter()
            .map(|t| {
                let (date, time) = t.split_once(' ').unwrap();
                let day: i64 = date[8..10].parse().unwrap();
                let month: i64 = date[5..7].parse().unwrap();
                let hms: Vec<i64> = time.split(':').map(|p| p.parse().unwrap()).collect();
                // Days before each month in a non-leap year; these series span one spring.
                const BEFORE: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
                (BEFORE[(month - 1) as usize] + day) * 86_400 + hms[0] * 3_600 + hms[1] * 60
            })
            .collect();
        (timestamps, seconds, values)
    }

    fn judge(seconds: &[i64], values: &[f64]) -> Vec<Judgement> {
        let mut detector = Detector::new(DetectorSettings::default());
        seconds
            .iter()
            .zip(values)
            .map(|(&t, &v)| detector.observe(t, v))
            .collect()
    }

    /// Deterministic standard normal noise (a 64-bit LCG through Box–Muller).
    fn noise(n: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        let mut uniform = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (u, v) = (uniform(), uniform());
                (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
            })
            .collect()
    }

    /// Online: a point's judgement depends only on the points before it, so judging a prefix
    /// alone gives exactly the judgements the full series gives for that prefix.
    #[test]
    fn judgements_of_a_prefix_do_not_depend_on_later_points() {
        let (_, seconds, values) =
            nab_series("realKnownCause/ec2_request_latency_system_failure.csv");
        let full = judge(&seconds, &values);
        for cut in [1, 250, 2_000, 3_100] {
            let prefix = judge(&seconds[..cut], &values[..cut]);
            assert_eq!(prefix, full[..cut], "prefix of {cut} points");
        }
        assert!(full.iter().all(|j| (0.0..=1.0).contains(&j.score)));
    }

    /// On a noisy constant series the band holds the expected value, sits around the level and
    /// holds about 80 % of the points; plain noise raises at most a rare alarm.
    #[test]
    fn band_is_sane_on_a_noisy_constant_series() {
        let values: Vec<f64> = noise(5_000, 7).iter().map(|e| 50.0 + 2.0 * e).collect();
        let seconds: Vec<i64> = (0..values.len() as i64).map(|i| i * 300).collect();
        let judgements = judge(&seconds, &values);
        let settled = &judgements[500..];
        let mut inside = 0;
        for (j, v) in settled.iter().zip(&values[500..]) {
            assert!(j.lower <= j.expected && j.expected <= j.upper, "{j:?}");
            assert!((j.expected - 50.0).abs() < 2.0, "{j:?}");
            let half_width = (j.upper - j.lower) / 2.0;
            assert!((1.5..=4.5).contains(&half_width), "{j:?}");
            inside += usize::from(j.lower <= *v && *v <= j.upper);
        }
        let coverage = inside as f64 / settled.len() as f64;
        assert!((0.75..=0.86).contains(&coverage), "coverage {coverage}");
        let alarms = settled.iter().filter(|j| j.score >= FIRED).count();
        assert!(
            alarms <= 2,
            "{alarms} alarms on 4,500 points of plain noise"
        );
    }

    /// After a detection the point scores are quiet (one detection per incident) while the
    /// incident score holds the detection's score for [`QUIET`] points, so an alert with a
    /// `for` keeps firing through the incident; then it follows the points again.
    #[test]
    fn incident_score_holds_through_the_quiet_period() {
        let mut values: Vec<f64> = noise(3_000, 11).iter().map(|e| 50.0 + 2.0 * e).collect();
        for v in &mut values[2_000..2_300] {
            *v += 60.0;
        }
        let seconds: Vec<i64> = (0..values.len() as i64).map(|i| i * 60).collect();
        let judgements = judge(&seconds, &values);
        let first = (1_990..2_100)
            .find(|&i| judgements[i].score >= FIRED)
            .expect("the level shift is detected");
        let fired = judgements[first].score;
        assert_eq!(judgements[first].incident, fired);
        let quiet = &judgements[first + 1..first + QUIET as usize];
        assert!(quiet.iter().all(|j| j.score == 0.0));
        assert!(quiet.iter().all(|j| j.incident >= fired), "{quiet:?}");
        assert!(judgements[first + QUIET as usize + 5..]
            .iter()
            .all(|j| j.incident == j.score));
    }

    /// On a real NAB series (an EC2 request latency that failed three times), each labelled
    /// anomaly window holds a score above every score outside the windows after warm-up.
    #[test]
    fn labelled_anomalies_score_above_the_quiet_part_of_a_real_series() {
        let name = "realKnownCause/ec2_request_latency_system_failure.csv";
        let (timestamps, seconds, values) = nab_series(name);
        let labels: BTreeMap<String, Vec<[String; 2]>> = serde_json::from_str(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/nab/labels/combined_windows.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let windows = crate::analytics::nab::windows_for(name, &timestamps, &labels).unwrap();
        assert_eq!(windows.len(), 3);
        let scores: Vec<f64> = judge(&seconds, &values).iter().map(|j| j.score).collect();
        let in_window = |i: usize| windows.iter().any(|&(a, b)| (a..=b).contains(&i));
        let outside = (WARM_UP as usize..scores.len())
            .filter(|&i| !in_window(i))
            .map(|i| scores[i])
            .fold(0.0, f64::max);
        for &(a, b) in &windows {
            let inside = scores[a..=b].iter().copied().fold(0.0, f64::max);
            assert!(
                inside > outside && inside >= FIRED,
                "window {a}..={b} peaks at {inside}, outside peaks at {outside}"
            );
        }
    }

    /// A weekly pattern at 1-minute points: weekdays around 100, weekends around 40, each
    /// with a daily swing of ±15 and noise of σ = 1, for four weeks; in the fourth, Wednesday 10:00–13:00 drops to the
    /// weekend's level. The timestamps (Unix seconds, from a Monday) and values.
    fn weekly_load() -> (Vec<i64>, Vec<f64>) {
        const DAY: usize = 1_440;
        let noise = noise(28 * DAY, 3);
        let mut values = Vec::with_capacity(28 * DAY);
        for (i, e) in noise.iter().enumerate() {
            let day = i / DAY;
            let weekend = day % 7 >= 5;
            let dip = day == 23 && (600..780).contains(&(i % DAY));
            let level = if weekend || dip { 40.0 } else { 100.0 };
            let swing = 15.0 * (std::f64::consts::TAU * (i % DAY) as f64 / DAY as f64).sin();
            values.push(level + swing + e);
        }
        let seconds = (0..values.len() as i64)
            .map(|i| 1_767_571_200 + 60 * i)
            .collect();
        (seconds, values)
    }

    /// With the rule's weekly period (in points at the step), a weekend's drop to its usual
    /// level scores as normal while the same level on a weekday fires: the week-ago value
    /// explains the one and not the other. Without the period the detector keeps only a day
    /// and a half of 1-minute points, so the weekend's start looks new.
    #[test]
    fn weekly_period_tells_a_weekend_from_a_weekday_dip() {
        const DAY: usize = 1_440;
        let (seconds, values) = weekly_load();
        let scores = |periods: Vec<usize>| -> Vec<f64> {
            let mut detector = Detector::new(DetectorSettings {
                periods,
                ..DetectorSettings::default()
            });
            seconds
                .iter()
                .zip(&values)
                .map(|(&t, &v)| detector.observe(t, v).score)
                .collect()
        };
        let peak = |scores: &[f64], from: usize, to: usize| -> f64 {
            scores[from..to].iter().copied().fold(0.0, f64::max)
        };
        let weekly = scores(vec![7 * DAY]);
        let dip = peak(&weekly, 23 * DAY + 600, 23 * DAY + 780);
        assert!(dip >= FIRED, "the weekday dip peaks at {dip}");
        // Thursday and Friday before the weekend, then the weekend itself.
        let weekend = peak(&weekly, 24 * DAY, 28 * DAY);
        assert!(weekend < FIRED, "the usual weekend peaks at {weekend}");
        let dip_level = values[23 * DAY + 700];
        let saturday = values[26 * DAY + 700];
        assert!(
            (dip_level - saturday).abs() < 10.0,
            "{dip_level} vs {saturday}"
        );

        let unseasonal = scores(Vec::new());
        let weekend = peak(&unseasonal, 26 * DAY - 5, 26 * DAY + 60);
        assert!(
            weekend >= FIRED,
            "without the period the weekend's start peaks at {weekend}"
        );
    }

    /// The packed history keeps a value's difference from the first one, not the value: a
    /// gauge near 10¹² varying by a few units (where `f32` steps by 65,536) is judged as the
    /// same gauge near 0 is, spike included.
    #[test]
    fn a_large_offset_does_not_blur_the_history() {
        let mut values: Vec<f64> = noise(3_000, 5).iter().map(|e| 3.0 * e).collect();
        values[2_500] += 40.0;
        let seconds: Vec<i64> = (0..values.len() as i64).map(|i| i * 300).collect();
        let near_zero = judge(&seconds, &values);
        let offset: Vec<f64> = values.iter().map(|v| 1e12 + v).collect();
        let near_offset = judge(&seconds, &offset);
        for (i, (a, b)) in near_zero.iter().zip(&near_offset).enumerate() {
            assert!(
                (a.score - b.score).abs() < 1e-3,
                "point {i}: {a:?} vs {b:?}"
            );
        }
        assert!(
            near_offset[2_500].score >= FIRED,
            "{:?}",
            near_offset[2_500]
        );
    }

    /// A missing value is judged with score 0 and not learned: with NaNs interleaved, every
    /// present point gets the judgement it gets when the NaNs are left out.
    #[test]
    fn missing_values_are_skipped_without_poisoning_state() {
        let (_, seconds, values) =
            nab_series("realKnownCause/ec2_request_latency_system_failure.csv");
        let clean = judge(&seconds, &values);
        let mut detector = Detector::new(DetectorSettings::default());
        let mut present = 0;
        for (i, (&t, &v)) in seconds.iter().zip(&values).enumerate() {
            if i % 7 == 3 {
                let gap = detector.observe(t - 1, f64::NAN);
                assert_eq!(gap.score, 0.0);
                assert!(gap.expected.is_finite() && gap.lower.is_finite() && gap.upper.is_finite());
                let infinite = detector.observe(t - 1, f64::INFINITY);
                assert_eq!(infinite.score, 0.0);
            }
            assert_eq!(detector.observe(t, v), clean[i], "point {i}");
            present += 1;
        }
        assert_eq!(present, values.len());
    }
}
