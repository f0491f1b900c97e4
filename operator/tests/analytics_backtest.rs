//! `vigil-operator analytics backtest` as users run it: the real binary on Prophet's Peyton
//! Manning series (`tests/fixtures/prophet/`), in text and JSON, and on a malformed CSV.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed step must fail the test with its message"
)]

use std::path::Path;
use std::process::{Command, Output};

fn vigil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil-operator"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("vigil-operator runs")
}

const PEYTON: &str = "tests/fixtures/prophet/example_wp_log_peyton_manning.csv";

/// The JSON report lists every horizon asked for, with a band around the mean, coverages in
/// [0, 1], finite MAPEs from the rolling evaluation, and the detector's top points.
#[test]
fn json_report_has_every_horizon_with_finite_figures() {
    let out = vigil(&[
        "analytics",
        "backtest",
        "--csv",
        PEYTON,
        "--period",
        "weekly",
        "--horizon",
        "1d",
        "--horizon",
        "7d",
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["series"]["step"], "1d");
    assert_eq!(report["periods"], serde_json::json!(["1w"]));
    let horizons: Vec<&str> = report["forecast"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["horizon"].as_str().unwrap())
        .collect();
    assert_eq!(horizons, ["1d", "1w"]);
    for row in report["forecast"].as_array().unwrap() {
        let (mean, lower, upper) = (
            row["mean"].as_f64().unwrap(),
            row["lower"].as_f64().unwrap(),
            row["upper"].as_f64().unwrap(),
        );
        assert!(lower < mean && mean < upper, "{row}");
        // Log page views: around 6 to 13.
        assert!((5.0..14.0).contains(&mean), "{row}");
        let coverage = row["coverage"].as_f64().expect("coverage measured");
        assert!((0.0..=1.0).contains(&coverage), "{row}");
    }
    for row in report["evaluation"].as_array().unwrap() {
        assert!(row["predictions"].as_u64().unwrap() > 0, "{row}");
        let mape = row["mape"].as_f64().expect("MAPE");
        assert!(mape.is_finite() && mape > 0.0 && mape < 50.0, "{row}");
        let coverage = row["coverage"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&coverage), "{row}");
    }
    let top = report["anomalies"]["top"].as_array().unwrap();
    assert!(
        !top.is_empty()
            && top[0]["score"].as_f64().unwrap() >= top[top.len() - 1]["score"].as_f64().unwrap()
    );
}

/// The text report names its sections and horizons.
#[test]
fn text_report_lists_forecast_evaluation_and_detector() {
    let out = vigil(&[
        "analytics",
        "backtest",
        "--csv",
        PEYTON,
        "--period",
        "weekly",
        "--horizon",
        "3d",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for part in [
        "forecast from the last point (80 % band)",
        "rolling-origin evaluation",
        "online detector",
        "  3d ",
    ] {
        assert!(text.contains(part), "missing {part:?} in:\n{text}");
    }
}

/// A malformed CSV fails with the file, line and column of the bad value.
#[test]
fn bad_csv_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    std::fs::write(
        &path,
        "timestamp,value\n2014-07-01 00:00:00,1\n2014-07-01 00:30:00,one\n",
    )
    .unwrap();
    let out = vigil(&["analytics", "backtest", "--csv", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.csv") && stderr.contains("line 3") && stderr.contains("value"),
        "{stderr}"
    );
}

/// Without a subcommand `analytics` runs the engine, which needs a cluster: with none it says so
/// and exits 1, instead of serving nothing.
#[test]
fn engine_without_a_cluster_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-operator"))
        .args(["analytics", "--listen", "127.0.0.1:0"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect to Kubernetes"), "{stderr}");
    assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join(PEYTON).exists());
}
