//! The Numenta Anomaly Benchmark's scorer, from the NAB paper's rules (Lavin & Ahmad 2015,
//! Ahmad et al. 2017) as NAB v1.1's sweeper applies them, so Vigil's detector is judged on the
//! same scale as the published ones.
//!
//! - Each series' first 15 % of rows (at most 750) is a probation period: nothing there counts.
//! - A detection is a row whose anomaly score reaches the threshold. Inside a labelled window
//!   only the earliest detection counts, worth `tp · σ(y) / σ(−1)` where `y ∈ [−1, 0)` is its
//!   position relative to the window's right end and `σ(y) = 2/(1+e^{5y}) − 1` (the first row
//!   of a window is worth `tp`, the last about nothing); a window with no detection costs `−fn`.
//!   A window that lies wholly in the probation period does not count.
//! - A detection outside every window costs `fp · σ(y)`, with `y` its distance past the previous
//!   window's end in window widths (≈ 0 just after a window, −1 far after it), or `−fp` when no
//!   window precedes it.
//! - One threshold per profile is chosen for the whole corpus (the one with the best total
//!   score), and the total is normalised: `100 · (raw − null) / (perfect − null)`, where the null
//!   detector (a constant 0.5) scores `null` and `perfect = tp · windows`.

use std::collections::BTreeMap;

/// The weights of one scoring profile.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CostMatrix {
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
}

/// NAB's three application profiles, as in its `config/profiles.json`.
pub const PROFILES: [(&str, CostMatrix); 3] = [
    (
        "standard",
        CostMatrix {
            tp: 1.0,
            fp: 0.11,
            fn_: 1.0,
        },
    ),
    (
        "reward_low_FP_rate",
        CostMatrix {
            tp: 1.0,
            fp: 0.22,
            fn_: 1.0,
        },
    ),
    (
        "reward_low_FN_rate",
        CostMatrix {
            tp: 1.0,
            fp: 0.11,
            fn_: 2.0,
        },
    ),
];

/// One series as the scorer sees it: a detector's anomaly score per row and the labelled
/// windows as inclusive row ranges.
#[derive(Clone, Debug)]
pub struct Scored {
    pub name: String,
    pub scores: Vec<f64>,
    pub windows: Vec<(usize, usize)>,
}

/// A scored corpus under one profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The threshold that gives the best total over the corpus.
    pub threshold: f64,
    /// The corpus' raw score at that threshold.
    pub raw: f64,
    /// The null detector's raw score.
    pub null: f64,
    /// The perfect detector's raw score.
    pub perfect: f64,
    /// `100 · (raw − null) / (perfect − null)`: NAB's published figure.
    pub normalized: f64,
}

/// Rows in a series' probation period: the first 15 %, at most 750.
pub fn probation_rows(rows: usize) -> usize {
    ((0.15 * rows as f64).floor()).min(0.15 * 5000.0) as usize
}

/// NAB's scaled sigmoid of a relative position.
fn scaled_sigmoid(position: f64) -> f64 {
    if position >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * position).exp()) - 1.0
    }
}

/// One row after probation: its anomaly score, what detecting it is worth, and its window (a
/// corpus-wide index) when it lies in one.
#[derive(Clone, Copy, Debug)]
struct Row {
    score: f64,
    worth: f64,
    window: Option<usize>,
}

/// The rows of one series with what detecting each is worth; `first_window` numbers its
/// windows corpus-wide.
fn sweep_rows(series: &Scored, costs: CostMatrix, first_window: usize, out: &mut Vec<Row>) {
    let probation = probation_rows(series.scores.len());
    let mut windows = series.windows.iter().enumerate().peekable();
    let mut current: Option<(usize, usize, f64)> = None; // (window id, right index, width)
    let mut previous: Option<(usize, f64)> = None; // (right index, width)
    for (i, &score) in series.scores.iter().enumerate() {
        if let Some(&(n, &(start, end))) = windows.peek() {
            if i == start {
                current = Some((first_window + n, end, (end - start + 1) as f64));
                windows.next();
            }
        }
        let (worth, window) = match current {
            Some((id, right, width)) => {
                let position = -((right - i + 1) as f64) / width;
                (
                    scaled_sigmoid(position) * costs.tp / scaled_sigmoid(-1.0),
                    Some(id),
                )
            }
            None => {
                let unweighted = match previous {
                    None => -1.0,
                    Some((right, width)) => {
                        scaled_sigmoid((i as f64 - right as f64).abs() / (width - 1.0))
                    }
                };
                (unweighted * costs.fp, None)
            }
        };
        if i >= probation {
            out.push(Row {
                score,
                worth,
                window,
            });
        }
        if let Some((_, right, width)) = current {
            if i == right {
                previous = Some((right, width));
                current = None;
            }
        }
    }
}

/// The corpus' total score at every distinct threshold, highest threshold first: sweeping the
/// threshold down adds detections one score at a time.
fn scores_by_threshold(mut rows: Vec<Row>, windows: usize, costs: CostMatrix) -> Vec<(f64, f64)> {
    // Only windows with rows after probation count.
    let mut counted = vec![false; windows];
    for row in &rows {
        if let Some(w) = row.window {
            counted[w] = true;
        }
    }
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut best_in_window = vec![-costs.fn_; windows];
    let mut window_total = -costs.fn_ * counted.iter().filter(|&&c| c).count() as f64;
    let mut fp_total = 0.0;
    let mut threshold = 1.1;
    let mut out = Vec::new();
    for row in rows {
        if row.score != threshold {
            out.push((threshold, fp_total + window_total));
            threshold = row.score;
        }
        match row.window {
            None => fp_total += row.worth,
            Some(w) => {
                if row.worth > best_in_window[w] {
                    window_total += row.worth - best_in_window[w];
                    best_in_window[w] = row.worth;
                }
            }
        }
    }
    out.push((threshold, fp_total + window_total));
    out
}

/// The best threshold and its raw score for a corpus.
fn best(corpus: &[Scored], costs: CostMatrix) -> (f64, f64) {
    let mut rows = Vec::new();
    let mut windows = 0;
    for series in corpus {
        sweep_rows(series, costs, windows, &mut rows);
        windows += series.windows.len();
    }
    scores_by_threshold(rows, windows, costs)
        .into_iter()
        // The first of equal scores: the highest threshold reaching it.
        .fold((1.1, f64::NEG_INFINITY), |acc, (t, s)| {
            if s > acc.1 {
                (t, s)
            } else {
                acc
            }
        })
}

/// Scores a detector's output over a corpus under one profile.
pub fn score(corpus: &[Scored], costs: CostMatrix) -> Report {
    let (threshold, raw) = best(corpus, costs);
    let null_corpus: Vec<Scored> = corpus
        .iter()
        .map(|s| Scored {
            name: s.name.clone(),
            scores: vec![0.5; s.scores.len()],
            windows: s.windows.clone(),
        })
        .collect();
    let (_, null) = best(&null_corpus, costs);
    let windows: usize = corpus.iter().map(|s| s.windows.len()).sum();
    let perfect = costs.tp * windows as f64;
    Report {
        threshold,
        raw,
        null,
        perfect,
        normalized: 100.0 * (raw - null) / (perfect - null),
    }
}

/// Errors reading NAB's files.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{series}: window limit {timestamp} is not a timestamp of the series")]
    UnknownTimestamp { series: String, timestamp: String },
    #[error("{series}: no labelled windows entry")]
    NoLabels { series: String },
}

/// NAB timestamps (`2014-04-10 07:15:00` or with `.000000`) in one form.
fn normal_timestamp(text: &str) -> &str {
    text.trim().split('.').next().unwrap_or(text)
}

/// Turns a series' timestamps and its entry of `combined_windows.json` (a list of
/// `[start, end]` timestamps) into row ranges.
pub fn windows_for(
    series: &str,
    timestamps: &[String],
    labels: &BTreeMap<String, Vec<[String; 2]>>,
) -> Result<Vec<(usize, usize)>, LoadError> {
    let limits = labels.get(series).ok_or_else(|| LoadError::NoLabels {
        series: series.to_owned(),
    })?;
    let index: BTreeMap<&str, usize> = timestamps
        .iter()
        .enumerate()
        .map(|(i, t)| (normal_timestamp(t), i))
        .collect();
    let find = |t: &str| {
        index
            .get(normal_timestamp(t))
            .copied()
            .ok_or_else(|| LoadError::UnknownTimestamp {
                series: series.to_owned(),
                timestamp: t.to_owned(),
            })
    };
    limits
        .iter()
        .map(|[start, end]| Ok((find(start)?, find(end)?)))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    const STANDARD: CostMatrix = PROFILES[0].1;

    fn series(rows: usize, windows: Vec<(usize, usize)>, detections: &[usize]) -> Scored {
        let mut scores = vec![0.0; rows];
        for &d in detections {
            scores[d] = 1.0;
        }
        Scored {
            name: "s".into(),
            scores,
            windows,
        }
    }

    /// Early detection in a window is worth almost a full point, a detection at its last row
    /// about nothing; missing a window costs one point; detections after probation only.
    #[test]
    fn window_detections_follow_the_scaled_sigmoid() {
        let early = score(&[series(1000, vec![(500, 599)], &[500])], STANDARD);
        assert!((early.raw - 1.0).abs() < 1e-12, "{early:?}");
        assert!((scaled_sigmoid(-1.0) - 0.986_614_298).abs() < 1e-6);
        let late = score(&[series(1000, vec![(500, 599)], &[599])], STANDARD);
        let expected = scaled_sigmoid(-0.01) / scaled_sigmoid(-1.0);
        assert!((late.raw - expected).abs() < 1e-12, "{late:?}");
        let missed = score(&[series(1000, vec![(500, 599)], &[])], STANDARD);
        assert_eq!((missed.raw, missed.null, missed.perfect), (-1.0, -1.0, 1.0));
        assert_eq!(missed.normalized, 0.0);
        // Only the first detection counts; a detection in probation counts for nothing.
        let twice = score(&[series(1000, vec![(500, 599)], &[10, 500, 550])], STANDARD);
        assert_eq!(twice.raw, early.raw);
    }

    /// A false positive long after a window, or with none before it, costs the full FP weight;
    /// right after a window it costs nearly nothing. When FPs cost more than the window brings,
    /// the best threshold is to detect nothing.
    #[test]
    fn false_positives_cost_by_distance_from_the_window() {
        let before = score(&[series(1000, vec![(500, 599)], &[200, 500])], STANDARD);
        assert!((before.raw - (1.0 - 0.11)).abs() < 1e-12);
        let after = score(&[series(1000, vec![(500, 599)], &[500, 600])], STANDARD);
        assert!(after.raw > before.raw && after.raw < early_raw());
        let far = score(&[series(2000, vec![(500, 599)], &[500, 1500])], STANDARD);
        assert!((far.raw - (1.0 - 0.11)).abs() < 1e-12);
        let noisy: Vec<usize> = (200..490).collect();
        let mut detections = noisy.clone();
        detections.push(500);
        let bad = score(&[series(1000, vec![(500, 599)], &detections)], STANDARD);
        assert_eq!(bad.raw, -1.0, "detecting nothing beats 290 false positives");
    }

    fn early_raw() -> f64 {
        1.0
    }

    /// A window wholly inside the probation period neither rewards nor costs anything.
    #[test]
    fn windows_in_probation_do_not_count() {
        let report = score(&[series(1000, vec![(10, 100), (500, 599)], &[])], STANDARD);
        assert_eq!(report.raw, -1.0);
    }

    #[test]
    fn probation_is_fifteen_percent_capped_at_750() {
        assert_eq!(probation_rows(1000), 150);
        assert_eq!(probation_rows(4032), 604);
        assert_eq!(probation_rows(22695), 750);
    }
}
