//! The analytics chain as a user runs it, end to end: a real NAB series
//! (`artificialWithAnomaly/art_daily_jumpsup.csv`, 5-minute points) is backfilled into a real
//! Prometheus (2.42+) twice, shifted so that it ends now — once for `shop/checkout` a few
//! points into its labelled anomaly (the jump the window is centred on), once for
//! `billing/invoices` at the same hour of a normal day three days earlier. The analytics
//! engine runs in process on the jobs `jobs::jobs` derives from the two `AlertPolicy`
//! manifests, reads the series from that Prometheus and serves its `/metrics` over HTTP; the
//! same Prometheus scrapes it and evaluates the rule files `vigil-operator render` writes for
//! the same manifests. The anomaly alert must fire for the anomaly, with its identity labels
//! and the baseline context filled in from the scraped series, and must not fire for the
//! normal stretch.
//!
//! What this does not model: Alertmanager (routing is covered by the render tests), the
//! engine's own loop and leader election (one cycle is run directly), and the rule groups'
//! rendered intervals (rewritten to 1 s so the test takes seconds, not minutes).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

#[path = "support/engine.rs"]
mod engine_support;
#[path = "support/prometheus.rs"]
mod prometheus_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use vigil_crds::alert_policy::Sensitivity;
use vigil_crds::AlertPolicy;
use vigil_operator::analytics::engine::exposition;
use vigil_operator::analytics::engine::jobs::{self, JobKind};
use vigil_operator::analytics::engine::runner::Outcome;

use engine_support::{new_engine, one};
use prometheus_support::{backfill, get, start, Running};

/// NAB series are 5-minute data: the engine's step.
const STEP: i64 = 300;
const DAY: i64 = 86_400;
/// The NAB series both cases replay, relative to the fixtures' `data` and `labels` keys.
const SERIES: &str = "artificialWithAnomaly/art_daily_jumpsup.csv";
/// The metric name the backfilled series carry and the policies' queries select.
const METRIC: &str = "nab_requests_per_second";
/// How long Prometheus may take to scrape the engine and fire (or not) the alert.
const DEADLINE: Duration = Duration::from_secs(60);

/// Two apps, each with a policy holding one `anomaly` rule; `for: 1s` so the alert fires on
/// the second evaluation instead of after the default 5m.
const MANIFESTS: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: checkout, namespace: shop}
spec:
  selector: {matchLabels: {app: checkout}}
---
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: {name: checkout-traffic, namespace: shop}
spec:
  appRef: {name: checkout}
  rules:
    - name: CheckoutTrafficAnomaly
      severity: warning
      audiences: [engineering]
      for: 1s
      anomaly:
        query: nab_requests_per_second{namespace="shop", app="checkout"}
        baselineWindow: 3d
        seasonality: daily
        sensitivity: medium
        direction: up
  audiences:
    - {audience: engineering, receivers: [{name: oncall, email: {to: oncall@shop.example}}]}
---
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: invoices, namespace: billing}
spec:
  selector: {matchLabels: {app: invoices}}
---
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: {name: invoices-traffic, namespace: billing}
spec:
  appRef: {name: invoices}
  rules:
    - name: InvoicesTrafficAnomaly
      severity: warning
      audiences: [engineering]
      for: 1s
      anomaly:
        query: nab_requests_per_second{namespace="billing", app="invoices"}
        baselineWindow: 3d
        seasonality: daily
        sensitivity: medium
        direction: up
  audiences:
    - {audience: engineering, receivers: [{name: oncall, email: {to: oncall@billing.example}}]}
"#;

/// Unix seconds of a NAB timestamp `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC).
fn unix(text: &str) -> i64 {
    let field = |range: std::ops::Range<usize>| -> i64 { text[range].parse().unwrap() };
    let (y, m, d) = (field(0..4), field(5..7), field(8..10));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * DAY + field(11..13) * 3_600 + field(14..16) * 60 + field(17..19)
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nab")
}

/// The NAB series: (Unix seconds, value as written).
fn nab_series() -> Vec<(i64, String)> {
    let text = std::fs::read_to_string(fixtures().join("data").join(SERIES)).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let (t, v) = line.split_once(',').unwrap();
            (unix(t), v.to_owned())
        })
        .collect()
}

/// The labelled anomaly window of [`SERIES`], Unix seconds.
fn labelled_window() -> (i64, i64) {
    let text = std::fs::read_to_string(fixtures().join("labels/combined_windows.json")).unwrap();
    let labels: BTreeMap<String, Vec<[String; 2]>> = serde_json::from_str(&text).unwrap();
    let windows = &labels[SERIES];
    assert_eq!(windows.len(), 1, "{SERIES} has one labelled window");
    (unix(&windows[0][0]), unix(&windows[0][1]))
}

/// The policies of [`MANIFESTS`], parsed as the operator's types.
fn policies() -> Vec<AlertPolicy> {
    serde_yaml::Deserializer::from_str(MANIFESTS)
        .filter_map(|doc| {
            let value = serde_yaml::Value::deserialize(doc).unwrap();
            (value["kind"] == "AlertPolicy").then(|| serde_yaml::from_value(value).unwrap())
        })
        .collect()
}

/// `vigil-operator render` of [`MANIFESTS`] into `dir/render`; returns the rule files'
/// contents with every group's interval set to 1 s.
fn rendered_rules(dir: &Path) -> Vec<(String, String)> {
    let input = dir.join("manifests.yaml");
    std::fs::write(&input, MANIFESTS).unwrap();
    let out = dir.join("render");
    let run = Command::new(env!("CARGO_BIN_EXE_vigil-operator"))
        .arg("render")
        .arg("-f")
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut files = Vec::new();
    for entry in std::fs::read_dir(out.join("prometheus/rules")).unwrap() {
        let path = entry.unwrap().path();
        let mut doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for group in doc["groups"].as_sequence_mut().unwrap() {
            group["interval"] = "1s".into();
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.push((name, serde_yaml::to_string(&doc).unwrap()));
    }
    files.sort();
    files
}

/// Backfills `cases` — (namespace, app, original timestamp to end at) — as copies of the NAB
/// series shifted to end at `end`, and starts Prometheus on that TSDB with `rules` and a 1 s
/// scrape of the engine at `engine`.
fn start_prometheus(
    dir: &Path,
    cases: &[(&str, &str, i64)],
    end: i64,
    rules: &[(String, String)],
    engine: std::net::SocketAddr,
) -> (Running, u16) {
    let series = nab_series();
    let mut text = format!("# HELP {METRIC} A NAB series.\n# TYPE {METRIC} gauge\n");
    for (namespace, app, last) in cases {
        let shift = end - last;
        for (t, value) in series.iter().filter(|(t, _)| t <= last) {
            text.push_str(&format!(
                "{METRIC}{{namespace=\"{namespace}\",app=\"{app}\"}} {value} {}\n",
                t + shift
            ));
        }
    }
    text.push_str("# EOF\n");
    let data = backfill(dir, &text);

    let rule_dir = dir.join("rules");
    std::fs::create_dir_all(&rule_dir).unwrap();
    for (name, body) in rules {
        std::fs::write(rule_dir.join(name), body).unwrap();
    }
    // `honor_labels`: the engine's `namespace` and `app` labels are the alerts' identity.
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: ['{}/*.yml']\n\
             scrape_configs:\n\
             - job_name: vigil-analytics\n  honor_labels: true\n  \
             static_configs: [{{targets: ['{engine}']}}]\n",
        rule_dir.display()
    );
    let (running, port) = start(dir, &data, &config);
    (running, port)
}

/// Prometheus' active alerts (`/api/v1/alerts`).
fn alerts(port: u16) -> Vec<serde_json::Value> {
    let (status, body) = get(port, "/api/v1/alerts");
    assert!(status.contains(" 200 "), "{status}: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    answer["data"]["alerts"].as_array().unwrap().clone()
}

/// Every rule of every group Prometheus loaded (`/api/v1/rules`).
fn rules_api(port: u16) -> Vec<serde_json::Value> {
    let (status, body) = get(port, "/api/v1/rules");
    assert!(status.contains(" 200 "), "{status}: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    answer["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect()
}

fn alertname(alert: &serde_json::Value) -> &str {
    alert["labels"]["alertname"].as_str().unwrap_or_default()
}

/// The labelled anomaly of `art_daily_jumpsup` — traffic jumping to well above any level of
/// the days before — fires the rendered `CheckoutTrafficAnomaly` alert in Prometheus with the
/// rule's identity labels and a baseline annotation filled in from the series the engine
/// published and Prometheus scraped; the same hour of a normal day scores below the `medium`
/// threshold and `InvoicesTrafficAnomaly` neither fires nor pends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_anomaly_alert_fires_on_a_labelled_anomaly_only() {
    let dir = tempfile::tempdir().unwrap();
    let series = nab_series();
    let (window_start, window_end) = labelled_window();
    // The anomaly: the first point inside the window above everything before the window.
    let before = series
        .iter()
        .filter(|(t, _)| *t < window_start)
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .fold(f64::MIN, f64::max);
    let jump = series
        .iter()
        .find(|(t, v)| *t >= window_start && v.parse::<f64>().unwrap() > before)
        .map(|(t, _)| *t)
        .expect("the labelled window holds the jump");
    // A few points into the jump, still inside the window; the normal case three days earlier
    // at the same hour, well before the window, with at least the 3d baseline behind it.
    let anomalous = jump + 2 * STEP;
    let normal = anomalous - 3 * DAY;
    assert!(anomalous < window_end);
    assert!(normal < window_start - DAY && normal - 3 * DAY >= series[0].0);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let end = now - now % STEP;

    // The engine serves from the start, as in a cluster; it publishes after its first cycle.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let engine_addr = listener.local_addr().unwrap();
    let rules = rendered_rules(dir.path());
    assert_eq!(
        rules.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["billing-invoices-traffic.yml", "shop-checkout-traffic.yml"]
    );
    let (_prometheus, port) = start_prometheus(
        dir.path(),
        &[
            ("shop", "checkout", anomalous),
            ("billing", "invoices", normal),
        ],
        end,
        &rules,
        engine_addr,
    );

    let (mut engine, registry) = new_engine(
        &format!("http://127.0.0.1:{port}"),
        STEP,
        Duration::from_secs(20),
    );
    let published = engine.context().published.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(exposition::serve(
        listener,
        registry.clone(),
        published.clone(),
        Arc::new(AtomicBool::new(true)),
        async {
            let _ = stopped.await;
        },
    ));

    // The jobs come from the same policies the rules were rendered from.
    let jobs = jobs::jobs(&policies(), STEP);
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    for job in &jobs {
        assert_eq!(job.periods, vec![(DAY / STEP) as usize], "{job:?}");
        assert!(
            matches!(job.kind, JobKind::Anomaly { baseline_window, .. } if baseline_window == 3 * DAY),
            "{job:?}"
        );
        assert!(job.query.starts_with(METRIC), "{job:?}");
    }
    engine.set_jobs(jobs);
    let outcomes = engine.run_all_at(end).await;
    assert!(
        outcomes
            .iter()
            .all(|(_, o)| *o == Outcome::Fitted { series: 1 }),
        "{outcomes:?}"
    );
    let text = exposition::metrics_text(&registry, &published);
    let (anomaly_score, normal_score) = (
        one(&text, "vigil:anomaly:score", &[("namespace", "shop")]),
        one(&text, "vigil:anomaly:score", &[("namespace", "billing")]),
    );
    eprintln!("engine scores: anomaly {anomaly_score}, normal {normal_score}");

    // Prometheus scrapes the engine and evaluates the rendered rules every second.
    let deadline = Instant::now() + DEADLINE;
    let firing = loop {
        let active = alerts(port);
        if let Some(alert) = active.iter().find(|a| {
            alertname(a) == "CheckoutTrafficAnomaly" && a["state"].as_str() == Some("firing")
        }) {
            break (alert.clone(), active);
        }
        assert!(
            Instant::now() < deadline,
            "CheckoutTrafficAnomaly did not fire within {DEADLINE:?} (engine scores: anomaly \
             {anomaly_score}, normal {normal_score}); active alerts: {active:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (alert, active) = firing;
    eprintln!("firing: {alert:#}");
    for (label, value) in [
        ("namespace", "shop"),
        ("app", "checkout"),
        ("vigil_policy", "checkout-traffic"),
        ("vigil_rule", "CheckoutTrafficAnomaly"),
        ("audience", "engineering"),
        ("severity", "warning"),
    ] {
        assert_eq!(alert["labels"][label], value, "{label} of {alert:#}");
    }
    // `$value` is the score Prometheus scraped from the engine.
    let value: f64 = alert["value"].as_str().unwrap().parse().unwrap();
    assert!(
        (value - anomaly_score).abs() < 1e-9,
        "{value} != {anomaly_score}"
    );
    let medium = Sensitivity::Medium.score_threshold();
    assert!(anomaly_score > medium, "the anomaly scored {anomaly_score}");
    // The baseline context reads the engine's scraped series of the alert's own series.
    let baseline = alert["annotations"]["baseline"].as_str().unwrap();
    assert!(baseline.starts_with("now "), "{baseline}");
    for part in [
        ", expected ",
        " ± ",
        " at this hour (80 % band, held ",
        "daily seasonality",
    ] {
        assert!(
            baseline.contains(part),
            "{part:?} missing from {baseline:?}"
        );
    }
    // … with the figures the engine published: actual, expected, half the band, coverage.
    let figure = |name: &str| one(&text, name, &[("namespace", "shop")]);
    let shown = regex::Regex::new(
        r"^now ([0-9.e+]+), expected ([0-9.e+-]+) ± ([0-9.e+]+) at this hour \(80 % band, held ([0-9.]+)% ",
    )
    .unwrap()
    .captures(baseline)
    .unwrap_or_else(|| panic!("unexpected baseline text {baseline:?}"));
    let half_band = (figure("vigil:baseline:upper") - figure("vigil:baseline:lower")) / 2.0;
    for (i, want) in [
        figure("vigil:baseline:actual"),
        figure("vigil:baseline:expected"),
        half_band,
        100.0 * figure("vigil:baseline:coverage"),
    ]
    .into_iter()
    .enumerate()
    {
        let got: f64 = shown[i + 1].parse().unwrap();
        // `humanize` keeps four significant digits.
        assert!(
            (got - want).abs() <= 1e-3 * want.abs().max(1.0),
            "figure {} of {baseline:?}: {got} vs {want}",
            i + 1
        );
    }
    assert!(
        figure("vigil:baseline:actual") > figure("vigil:baseline:upper"),
        "the anomaly is above the band"
    );
    let description = alert["annotations"]["description"].as_str().unwrap();
    assert!(
        description.contains(&format!("anomaly score {value:.2} (alerts above {medium})")),
        "{description}"
    );

    // By now the normal case's series were scraped and its rule evaluated as often.
    let scraped = engine
        .context()
        .prometheus
        .query(
            r#"vigil:anomaly:score{namespace="billing", vigil_rule="InvoicesTrafficAnomaly"}"#,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64(),
        )
        .await
        .unwrap();
    assert_eq!(scraped.len(), 1, "{scraped:?}");
    assert_eq!(scraped[0].labels["app"], "invoices");
    assert!(
        (scraped[0].value - normal_score).abs() < 1e-9,
        "{scraped:?} != {normal_score}"
    );
    assert!(
        normal_score < medium,
        "the normal stretch scored {normal_score}"
    );
    // `VigilAnalyticsMissing` pends (for 30m) until the first scrape; nothing else may fire.
    // Wait for an evaluation of the normal case's rule after its score was scraped: it must
    // be inactive (neither pending nor firing) and healthy, as must every rendered rule.
    let scraped_at = engine
        .context()
        .prometheus
        .query(
            r#"timestamp(vigil:anomaly:score{namespace="billing"})"#,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64(),
        )
        .await
        .unwrap()[0]
        .value;
    let deadline = Instant::now() + DEADLINE;
    let normal_rule = loop {
        let rule = rules_api(port)
            .into_iter()
            .find(|r| r["name"] == "InvoicesTrafficAnomaly")
            .expect("the normal case's rule is loaded");
        let evaluated = unix(rule["lastEvaluation"].as_str().unwrap()) as f64;
        if evaluated > scraped_at {
            break rule;
        }
        assert!(
            Instant::now() < deadline,
            "InvoicesTrafficAnomaly was not evaluated after the scrape at {scraped_at}: {rule:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(normal_rule["state"], "inactive", "{normal_rule:#}");
    assert!(
        normal_rule["alerts"].as_array().unwrap().is_empty(),
        "{normal_rule:#}"
    );
    for rule in rules_api(port) {
        assert_eq!(rule["health"], "ok", "{rule:#}");
    }
    let others: Vec<_> = active
        .iter()
        .filter(|a| alertname(a) != "CheckoutTrafficAnomaly" && a["state"] == "firing")
        .collect();
    assert!(others.is_empty(), "unexpected alerts: {others:#?}");
    assert!(
        alerts(port)
            .iter()
            .all(|a| alertname(a) != "InvoicesTrafficAnomaly"),
        "the normal stretch alerted"
    );

    let _ = stop.send(());
    server.await.unwrap();
}
