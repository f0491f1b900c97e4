//! Detection benchmark: Vigil's online detector on all 58 series of the Numenta Anomaly
//! Benchmark (`tests/fixtures/nab/data/`, NAB v1.1), with `DetectorSettings::default()` for
//! every series — no per-series tuning. Each series is judged point by point (a point's score
//! depends only on the points before it), scored with the crate's NAB scorer (one threshold per
//! profile swept over the whole corpus, as NAB does) and printed as NAB's three normalised
//! scores, beside the published figures of other detectors, with the time spent per point.
//!
//! Prints figures; asserts nothing (the bar: standard ≥ 65, reward_low_FP_rate ≥ 55,
//! reward_low_FN_rate ≥ 70).
//!
//! Run: `cargo bench -p vigil-operator --bench nab` (`-- --per-file` also prints each series'
//! detection count and best-scoring rows, for looking into one file).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "benchmark: a failed setup step must stop it with its message"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vigil_operator::analytics::detector::{Detector, DetectorSettings};
use vigil_operator::analytics::nab::{self, Scored, PROFILES};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nab")
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_index = (month + 9) % 12; // March = 0
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn bad_timestamp(text: &str, file: &Path) -> ! {
    panic!(
        "{}: timestamp {text:?} is not YYYY-MM-DD HH:MM:SS",
        file.display()
    )
}

/// Unix seconds of a NAB timestamp, `YYYY-MM-DD HH:MM:SS` (UTC).
fn unix_seconds(text: &str, file: &Path) -> i64 {
    let numbers = |part: &str, separator: char| -> Vec<i64> {
        part.split(separator)
            .map(|p| p.parse().unwrap_or_else(|_| bad_timestamp(text, file)))
            .collect()
    };
    let (date, time) = text
        .trim()
        .split_once(' ')
        .unwrap_or_else(|| bad_timestamp(text, file));
    let date = numbers(date, '-');
    let time = numbers(time.split('.').next().unwrap_or_default(), ':');
    if date.len() != 3 || time.len() != 3 {
        bad_timestamp(text, file);
    }
    days_from_civil(date[0], date[1], date[2]) * 86_400 + time[0] * 3_600 + time[1] * 60 + time[2]
}

/// One NAB data file: its name as the labels spell it (`category/file.csv`), its timestamps as
/// written and its values.
struct DataFile {
    name: String,
    path: PathBuf,
    timestamps: Vec<String>,
    values: Vec<f64>,
}

fn read_data() -> Vec<DataFile> {
    let root = fixtures().join("data");
    let mut files = Vec::new();
    let mut categories: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    categories.sort();
    for category in categories {
        let mut paths: Vec<_> = std::fs::read_dir(&category)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "csv"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut timestamps = Vec::new();
            let mut values = Vec::new();
            for (n, line) in text.lines().enumerate().skip(1) {
                let (timestamp, value) = line.split_once(',').unwrap_or_else(|| {
                    panic!(
                        "{} line {}: expected timestamp,value",
                        path.display(),
                        n + 1
                    )
                });
                let value = value.trim().parse::<f64>().unwrap_or_else(|e| {
                    panic!("{} line {}: value {value:?}: {e}", path.display(), n + 1)
                });
                timestamps.push(timestamp.to_owned());
                values.push(value);
            }
            let name = format!(
                "{}/{}",
                category.file_name().unwrap().to_str().unwrap(),
                path.file_name().unwrap().to_str().unwrap()
            );
            files.push(DataFile {
                name,
                path,
                timestamps,
                values,
            });
        }
    }
    files
}

fn main() {
    let per_file = std::env::args().any(|a| a == "--per-file");
    let labels: BTreeMap<String, Vec<[String; 2]>> = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("labels/combined_windows.json")).unwrap(),
    )
    .unwrap();
    let published: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("results/final_results.json")).unwrap(),
    )
    .unwrap();
    let files = read_data();
    assert_eq!(files.len(), 58, "NAB has 58 data files");

    let mut corpus = Vec::new();
    let mut spent = Duration::ZERO;
    let mut points = 0usize;
    for file in &files {
        let seconds: Vec<i64> = file
            .timestamps
            .iter()
            .map(|t| unix_seconds(t, &file.path))
            .collect();
        let mut detector = Detector::new(DetectorSettings::default());
        let mut scores = Vec::with_capacity(file.values.len());
        let started = Instant::now();
        for (&t, &v) in seconds.iter().zip(&file.values) {
            scores.push(detector.observe(t, v).score);
        }
        spent += started.elapsed();
        points += scores.len();
        let windows = nab::windows_for(&file.name, &file.timestamps, &labels)
            .unwrap_or_else(|e| panic!("{e}"));
        corpus.push(Scored {
            name: file.name.clone(),
            scores,
            windows,
        });
    }

    println!(
        "NAB v1.1: {} series, {points} points, {} windows; DetectorSettings::default()",
        corpus.len(),
        corpus.iter().map(|s| s.windows.len()).sum::<usize>()
    );
    let mut thresholds = Vec::new();
    for (profile, costs) in PROFILES {
        let report = nab::score(&corpus, costs);
        println!(
            "{profile:>19}: {:6.2}  (threshold {:.4}, raw {:.2}; published: ARTime {:.1}, \
             Numenta HTM {:.1}, CAD OSE {:.1}, windowed Gaussian {:.1})",
            report.normalized,
            report.threshold,
            report.raw,
            published["ARTime"][profile].as_f64().unwrap_or(f64::NAN),
            published["numenta"][profile].as_f64().unwrap_or(f64::NAN),
            published["contextOSE"][profile]
                .as_f64()
                .unwrap_or(f64::NAN),
            published["windowedGaussian"][profile]
                .as_f64()
                .unwrap_or(f64::NAN),
        );
        thresholds.push(report.threshold);
    }
    println!(
        "time per point: {:.2} µs ({} points in {:.2} s)",
        spent.as_secs_f64() * 1e6 / points as f64,
        points,
        spent.as_secs_f64()
    );
    // State of one series after a week of 1-minute points, as the engine keeps it per series.
    let week = 7 * 1_440;
    let load: Vec<f64> = (0..week)
        .map(|i| 100.0 + 30.0 * (std::f64::consts::TAU * i as f64 / 1_440.0).sin())
        .collect();
    for (what, periods) in [
        ("no seasonality given", Vec::new()),
        ("daily and weekly", vec![1_440, week]),
    ] {
        let mut detector = Detector::new(DetectorSettings {
            periods,
            ..DetectorSettings::default()
        });
        for (i, &v) in load.iter().enumerate() {
            detector.observe(1_700_000_000 + 60 * i as i64, v);
        }
        println!(
            "state per series after a week of 1-minute points ({what}): {} bytes",
            detector.state_bytes()
        );
    }
    if per_file {
        let threshold = thresholds[0];
        for series in &corpus {
            let probation = nab::probation_rows(series.scores.len());
            let detections: Vec<usize> = (probation..series.scores.len())
                .filter(|&i| series.scores[i] >= threshold)
                .collect();
            let hit = series
                .windows
                .iter()
                .filter(|(a, b)| detections.iter().any(|d| d >= a && d <= b))
                .count();
            println!(
                "{:60} windows {:2} hit {:2} detections {:4} first {:?}",
                series.name,
                series.windows.len(),
                hit,
                detections.len(),
                &detections[..detections.len().min(6)]
            );
        }
    }
}
