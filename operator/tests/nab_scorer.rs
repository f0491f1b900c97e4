//! Vigil's NAB scorer against NAB's own reference: the Windowed Gaussian detector's published
//! per-row output (`tests/fixtures/nab/results/windowedGaussian/`, copied from NAB v1.1 with its
//! licence) must score 39.65 (standard), 20.87 (reward_low_FP_rate) and 47.41
//! (reward_low_FN_rate), NAB's published figures, which the scoreboard in
//! `results/final_results.json` also holds.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use vigil_operator::analytics::nab::{self, Scored, PROFILES};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nab")
}

/// Every result file of the Windowed Gaussian detector, as scored series.
fn windowed_gaussian() -> Vec<Scored> {
    let labels: BTreeMap<String, Vec<[String; 2]>> = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("labels/combined_windows.json")).unwrap(),
    )
    .unwrap();
    let root = fixtures().join("results/windowedGaussian");
    let mut corpus = Vec::new();
    let mut categories: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    categories.sort();
    for category in categories {
        let mut files: Vec<_> = std::fs::read_dir(&category)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let mut text = String::new();
            flate2::read::GzDecoder::new(std::fs::File::open(&file).unwrap())
                .read_to_string(&mut text)
                .unwrap();
            let file_name = file.file_name().unwrap().to_str().unwrap();
            let series = format!(
                "{}/{}",
                category.file_name().unwrap().to_str().unwrap(),
                file_name
                    .trim_start_matches("windowedGaussian_")
                    .trim_end_matches(".gz")
            );
            let mut timestamps = Vec::new();
            let mut scores = Vec::new();
            for line in text.lines().skip(1) {
                let mut fields = line.split(',');
                timestamps.push(fields.next().unwrap().to_owned());
                let _value = fields.next();
                scores.push(fields.next().unwrap().parse::<f64>().unwrap());
            }
            let windows = nab::windows_for(&series, &timestamps, &labels).unwrap();
            corpus.push(Scored {
                name: series,
                scores,
                windows,
            });
        }
    }
    corpus
}

#[test]
fn windowed_gaussian_scores_as_published() {
    let corpus = windowed_gaussian();
    assert_eq!(corpus.len(), 58);
    assert_eq!(corpus.iter().map(|s| s.windows.len()).sum::<usize>(), 116);
    let published: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("results/final_results.json")).unwrap(),
    )
    .unwrap();
    for (profile, costs) in PROFILES {
        let report = nab::score(&corpus, costs);
        let expected = published["windowedGaussian"][profile].as_f64().unwrap();
        println!("{profile}: {report:?} (published {expected:.2})");
        assert!(
            (report.normalized - expected).abs() < 0.005,
            "{profile}: scored {:.4}, NAB published {expected:.4} ({report:?})",
            report.normalized
        );
    }
}
