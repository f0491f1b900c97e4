//! The analytics engine's SLO budget forecasts against a real Prometheus (2.42+): a TSDB
//! backfilled with `promtool tsdb create-blocks-from openmetrics` holds eight days of the SLI
//! error ratio an SLO records (`slo:sli_error:ratio_rate5m`, as its recording rule would have
//! written it) for two routes of a `groupBy: [route]` objective of 99 % over 7 days, ending
//! now. Route `browse` is healthy (about a fifth of its budget spent); route `pay` had five
//! good days and then errors growing from 0.4 % to 3 % over the last two. One engine cycle must
//! forecast `pay`'s budget to run out soon and almost surely, and `browse`'s not at all.
//!
//! End to end, the same Prometheus also scrapes the engine and evaluates the rule file
//! `vigil-operator render` and the operator write for the SLO:
//! `SLOErrorBudgetExhaustionForecast` must fire for `pay` only, saying when and how likely,
//! with the budget Prometheus itself records.
//!
//! A new SLO, whose recording rules have written two hours of one route only, over an app
//! whose raw request counters go back a week: its budget job reads the raw error ratio where
//! the recording has no point, and is forecast at the first refit.
//!
//! What this does not model: the recording rules writing the ratio history (it is backfilled
//! as they would have written it), Alertmanager (routing is covered by the render tests), the
//! engine's own loop (one cycle is run directly), and the rule group's interval (rewritten to
//! 1 s so the test takes seconds).

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

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_crds::{MonitoredApp, Slo};
use vigil_operator::analytics::engine::exposition;
use vigil_operator::analytics::engine::jobs::{slo_jobs, JobKey};
use vigil_operator::analytics::engine::runner::{Outcome, RunSettings};
use vigil_operator::render::slo::slo_rules;

use engine_support::{find, new_engine, one};
use prometheus_support::{backfill, get, start, Running};

const STEP: i64 = 300;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
const BUDGET: f64 = 0.01;

/// Deterministic noise in [-1, 1).
fn noise(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    ((*seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 2.0
}

/// The healthy route: 0.2 % errors, a little higher in the day, ±0.05 % noise.
fn browse(t: i64, seed: &mut u64) -> f64 {
    let day = (2.0 * std::f64::consts::PI * t as f64 / DAY as f64).sin();
    0.002 + 0.0005 * day + 0.0005 * noise(seed)
}

/// The failing route: 0.4 % errors until two days before `end`, then growing linearly to 3 %.
fn pay(t: i64, end: i64, seed: &mut u64) -> f64 {
    let ramp = ((t - (end - 2 * DAY)) as f64 / (2 * DAY) as f64).clamp(0.0, 1.0);
    0.004 + 0.026 * ramp + 0.0003 * noise(seed)
}

/// The ratio recording as the SLO's rules write it: every label they put on it.
const RECORDED: &str = "namespace=\"shop\",app=\"checkout\",slo=\"checkout-availability\",sloth_id=\"shop-checkout-checkout-availability\",sloth_service=\"checkout\",sloth_slo=\"checkout-availability\"";

/// Eight days of both routes' recorded error ratio ending at `end`, as OpenMetrics.
fn history(end: i64) -> String {
    let mut text = String::from(
        "# HELP slo:sli_error:ratio_rate5m SLI error ratio.\n\
         # TYPE slo:sli_error:ratio_rate5m gauge\n",
    );
    for route in ["browse", "pay"] {
        let mut seed = 11;
        let mut t = end - 8 * DAY;
        while t <= end {
            let value = if route == "pay" {
                pay(t, end, &mut seed)
            } else {
                browse(t, &mut seed)
            };
            text.push_str(&format!(
                "slo:sli_error:ratio_rate5m{{{RECORDED},route=\"{route}\"}} {value} {t}\n"
            ));
            t += STEP;
        }
    }
    text.push_str("# EOF\n");
    text
}

fn prometheus_with_history(dir: &Path, end: i64) -> (Running, String) {
    let text = history(end);
    let data = backfill(dir, &text);
    let (running, port) = start(dir, &data, &logging_queries(dir));
    (running, format!("http://127.0.0.1:{port}"))
}

/// A Prometheus configuration that logs every query it evaluates to `dir/queries.log`.
fn logging_queries(dir: &Path) -> String {
    format!(
        "global: {{scrape_interval: 1m, query_log_file: {}}}\n",
        dir.join("queries.log").display()
    )
}

/// The queries Prometheus logged (see [`logging_queries`]).
fn logged_queries(dir: &Path) -> Vec<String> {
    let log = std::fs::read_to_string(dir.join("queries.log")).unwrap_or_default();
    log.lines()
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            entry["params"]["query"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn slo(name: &str) -> Slo {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: vigil.dev/v1alpha1
kind: SLO
metadata: {{name: {name}, namespace: shop}}
spec:
  appRef: {{name: checkout}}
  objective: 99
  window: 7d
  groupBy: [route]
  sli:
    availability: {{}}
"#
    ))
    .unwrap()
}

/// The budget left on `pay` now, and when it would run out if its errors stayed at their last
/// value: the window's mean error ratio reaches the budget once enough old slots are replaced.
fn flat_exhaustion_seconds(end: i64) -> (f64, f64) {
    let mut seed = 11;
    let values: Vec<f64> = (0..=8 * DAY / STEP)
        .map(|k| pay(end - 8 * DAY + k * STEP, end, &mut seed))
        .collect();
    let slots = (7 * DAY / STEP) as usize;
    let mut window: Vec<f64> = values[values.len() - slots..].to_vec();
    let remaining = 1.0 - window.iter().sum::<f64>() / slots as f64 / BUDGET;
    let last = *values.last().unwrap();
    for k in 1..slots {
        window.remove(0);
        window.push(last);
        if window.iter().sum::<f64>() / slots as f64 >= BUDGET {
            return (remaining, (k * STEP as usize) as f64);
        }
    }
    (remaining, f64::INFINITY)
}

/// One cycle fits both routes of the SLO in one job (kept apart by `route`) and publishes the
/// budget contract with the SLO's labels: `pay` gets an exhaustion time between a third of and
/// just over what flat errors at their last value would give (the errors are still growing) and
/// a probability over 0.9; `browse` gets no exhaustion time and a probability under 0.05. The
/// error-ratio forecasts at `1h`, `1d` and the horizon (`42h`, a quarter of 7 days) keep
/// lower ≤ mean ≤ upper. An SLO without recorded ratios has no data; the SLO's last fit is
/// recorded under its budget key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_forecasts_against_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let end = now - now % STEP;
    let (_prometheus, url) = prometheus_with_history(dir.path(), end);

    let (mut engine, registry) = new_engine(&url, 60, Duration::from_secs(20));
    let jobs = slo_jobs(
        &[slo("checkout-availability"), slo("search-latency")],
        &objects::<MonitoredApp>("MonitoredApp"),
        60,
    );
    engine.set_jobs(jobs);
    let started = std::time::Instant::now();
    let outcomes = engine.run_all_at(end).await;
    eprintln!(
        "one cycle (2 series of 7 days at 5m) took {:?}",
        started.elapsed()
    );
    assert_eq!(
        outcomes,
        vec![
            (
                JobKey::slo("shop", "checkout-availability"),
                Outcome::Fitted { series: 2 }
            ),
            (JobKey::slo("shop", "search-latency"), Outcome::NoData),
        ]
    );
    // The recording covers the window: the raw series are not read (their ratio over the
    // whole window is the costly query); the SLO without a recording reads them.
    let queries = logged_queries(dir.path());
    let raw = |slo: &str| {
        queries
            .iter()
            .filter(|q| q.contains("or on (") && q.contains(&format!("slo=\"{slo}\"")))
            .count()
    };
    assert!(!queries.is_empty(), "no query logged");
    assert_eq!(raw("checkout-availability"), 0, "{queries:#?}");
    assert!(raw("search-latency") > 0, "{queries:#?}");
    let text = exposition::metrics_text(&registry, &engine.context().published);
    let route = |r: &'static str| {
        vec![
            ("namespace", "shop"),
            ("app", "checkout"),
            ("slo", "checkout-availability"),
            ("sloth_id", "shop-checkout-checkout-availability"),
            ("sloth_service", "checkout"),
            ("route", r),
        ]
    };

    let (remaining, flat) = flat_exhaustion_seconds(end);
    let exhaustion = one(&text, "vigil:slo:budget_exhaustion_seconds", &route("pay"));
    let probability = one(
        &text,
        "vigil:slo:budget_exhaustion_probability",
        &route("pay"),
    );
    eprintln!(
        "pay: {:.0} % of the budget left, exhausted in {:.1} h (flat errors: {:.1} h), probability {probability:.3}",
        remaining * 100.0,
        exhaustion / HOUR as f64,
        flat / HOUR as f64
    );
    assert!(remaining > 0.1 && remaining < 0.4, "test data: {remaining}");
    assert!(flat < 42.0 * HOUR as f64, "test data: {flat}");
    assert!(
        exhaustion > flat / 3.0 && exhaustion < flat + 2.0 * HOUR as f64,
        "pay's budget forecast to run out in {exhaustion} s; flat errors give {flat} s"
    );
    // Well above the even odds at which the ticket fires, short of certainty: the calibrated
    // band keeps room for the errors to ease.
    assert!(probability > 0.75, "pay: probability {probability}");

    assert_healthy(&text, &route("browse"));

    for r in ["browse", "pay"] {
        for horizon in ["1h", "1d", "42h"] {
            let mut labels = route(r);
            labels.push(("horizon", horizon));
            let mean = one(&text, "vigil:slo:error_ratio_forecast:mean", &labels);
            let lower = one(&text, "vigil:slo:error_ratio_forecast:lower", &labels);
            let upper = one(&text, "vigil:slo:error_ratio_forecast:upper", &labels);
            assert!(
                lower <= mean && mean <= upper,
                "{r} {horizon}: {lower} {mean} {upper}"
            );
        }
    }
    let browse_1d = one(
        &text,
        "vigil:slo:error_ratio_forecast:mean",
        &[("route", "browse"), ("horizon", "1d")],
    );
    assert!(
        (0.0..0.005).contains(&browse_1d),
        "browse forecast {browse_1d}"
    );
    assert!(text.contains(
        "vigil_analytics_last_fit_timestamp_seconds{namespace=\"shop\",vigil_policy=\"checkout-availability\",vigil_rule=\"slo:budget\"}"
    ), "{text}");
    assert!(
        !text.contains("search-latency\""),
        "no data, no series:\n{text}"
    );
}

/// The manifests the e2e test renders and derives jobs from: the app, and the SLO of
/// [`slo`] with its own alerting.
const MANIFESTS: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: checkout, namespace: shop}
spec:
  selector: {matchLabels: {app: checkout}}
---
apiVersion: vigil.dev/v1alpha1
kind: SLO
metadata: {name: checkout-availability, namespace: shop}
spec:
  appRef: {name: checkout}
  objective: 99
  window: 7d
  groupBy: [route]
  sli:
    availability: {}
  alerting:
    page: [engineering]
    ticket: [support]
    receivers:
      - {name: tickets, email: {to: tickets@shop.example}}
"#;

/// The objects of [`MANIFESTS`] of kind `kind`.
fn objects<T: serde::de::DeserializeOwned>(kind: &str) -> Vec<T> {
    serde_yaml::Deserializer::from_str(MANIFESTS)
        .filter_map(|doc| {
            let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc).unwrap();
            (value["kind"] == kind).then(|| serde_yaml::from_value(value).unwrap())
        })
        .collect()
}

/// The SLO's rule file as `render` and the operator write it, its group's interval set to 1 s.
fn rendered_rules() -> String {
    let app: MonitoredApp = objects("MonitoredApp").remove(0);
    let slo: Slo = objects("SLO").remove(0);
    let mut doc = serde_yaml::to_value(slo_rules(&slo, &app)).unwrap();
    for group in doc["groups"].as_sequence_mut().unwrap() {
        group["interval"] = "1s".into();
    }
    serde_yaml::to_string(&doc).unwrap()
}

/// Prometheus' active `SLOErrorBudgetExhaustionForecast` alerts.
fn forecast_alerts(port: u16) -> Vec<serde_json::Value> {
    let (_, body) = get(port, "/api/v1/alerts");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    answer["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["alertname"] == "SLOErrorBudgetExhaustionForecast")
        .cloned()
        .collect()
}

/// The chain as a user runs it: Prometheus scrapes the engine and evaluates the rendered SLO
/// rules; `SLOErrorBudgetExhaustionForecast` fires for `pay` only, as a ticket to support with
/// the SLO's and the route's labels, `$value` the probability the engine published, and a
/// description giving the exhaustion time the engine published (as Prometheus humanizes it),
/// the probability, the horizon and the budget left as Prometheus' own recording rules compute
/// it from the same history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_forecast_ticket_fires_for_the_failing_route_only() {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let end = now - now % STEP;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let engine_addr = listener.local_addr().unwrap();
    let rule_dir = dir.path().join("rules");
    std::fs::create_dir_all(&rule_dir).unwrap();
    std::fs::write(rule_dir.join("slo.yml"), rendered_rules()).unwrap();
    let data = backfill(dir.path(), &history(end));
    // `honor_labels`: the engine's `namespace`, `app` and `slo` labels are the alerts' identity.
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         rule_files: ['{}/*.yml']\n\
         scrape_configs:\n\
         - job_name: vigil-analytics\n  honor_labels: true\n  \
         static_configs: [{{targets: ['{engine_addr}']}}]\n",
        rule_dir.display()
    );
    let (_prometheus, port) = start(dir.path(), &data, &config);

    let (mut engine, registry) = new_engine(
        &format!("http://127.0.0.1:{port}"),
        RunSettings::default().step,
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
    engine.set_jobs(slo_jobs(
        &objects::<Slo>("SLO"),
        &objects::<MonitoredApp>("MonitoredApp"),
        60,
    ));
    let outcomes = engine.run_all_at(end).await;
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].1, Outcome::Fitted { series: 2 });
    let text = exposition::metrics_text(&registry, &published);
    let pay = [("route", "pay")];
    let probability = one(&text, "vigil:slo:budget_exhaustion_probability", &pay);
    let exhaustion = one(&text, "vigil:slo:budget_exhaustion_seconds", &pay);

    let deadline = Instant::now() + Duration::from_secs(60);
    let alert = loop {
        let active = forecast_alerts(port);
        if let Some(a) = active.iter().find(|a| a["state"] == "firing") {
            break a.clone();
        }
        assert!(
            Instant::now() < deadline,
            "SLOErrorBudgetExhaustionForecast did not fire (pay: probability {probability}, \
             exhaustion {exhaustion} s); active: {active:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("firing: {}", alert["annotations"]["description"]);
    for (label, value) in [
        ("namespace", "shop"),
        ("app", "checkout"),
        ("slo", "checkout-availability"),
        ("route", "pay"),
        ("audience", "support"),
        ("vigil_slo_alert", "ticket"),
        ("severity", "warning"),
    ] {
        assert_eq!(alert["labels"][label], value, "{label} of {alert:#}");
    }
    let value: f64 = alert["value"].as_str().unwrap().parse().unwrap();
    assert!(
        (value - probability).abs() < 1e-9,
        "{value} != {probability}"
    );
    // Prometheus' humanizeDuration of the published seconds: days, hours, minutes, seconds.
    let secs = exhaustion.floor() as i64;
    let when = format!("in {}h {}m {}s", secs / 3_600, secs % 3_600 / 60, secs % 60);
    let description = alert["annotations"]["description"].as_str().unwrap();
    let prefix = format!(
        "objective 99 % over 7d: the error budget of checkout-availability for route=pay is \
         forecast to run out {when} (probability "
    );
    let shown_probability: f64 = description
        .strip_prefix(&prefix)
        .and_then(|rest| rest.split_once("% within 42h)"))
        .and_then(|(p, _)| p.parse().ok())
        .unwrap_or_else(|| panic!("{description:?} does not start with {prefix:?}"));
    // `humanizePercentage` keeps four significant digits.
    assert!(
        (shown_probability - 100.0 * probability).abs() < 0.01,
        "{description}"
    );
    let (remaining, _) = flat_exhaustion_seconds(end);
    let shown = regex::Regex::new(r"Budget remaining: (-?[0-9.]+)%\.$")
        .unwrap()
        .captures(description)
        .unwrap_or_else(|| panic!("no remaining budget in {description:?}"));
    let shown: f64 = shown[1].parse().unwrap();
    assert!(
        (shown - 100.0 * remaining).abs() < 1.0,
        "Prometheus records {shown} % left, the history gives {} %",
        100.0 * remaining
    );

    // By now `browse`'s probability was scraped and evaluated as often: it never alerts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let routes: Vec<String> = forecast_alerts(port)
        .iter()
        .map(|a| a["labels"]["route"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(routes, ["pay"], "only the failing route is ticketed");

    let _ = stop.send(());
    server.await.unwrap();
}

/// Minutes of raw counter history [`raw_history`] writes: the SLO's 7-day window and an hour.
const RAW_MINUTES: i64 = 7 * 24 * 60 + 60;
/// The ratio route `search`'s recording shows over its last two hours, far from its raw one.
const SEARCH_RECORDED: f64 = 0.0123;

/// The per-minute error ratio of each route of [`raw_history`] at minute `t`: `browse` and
/// `pay` as in [`history`], `search` a steady 0.1 %.
fn raw_ratios(end: i64) -> Vec<(&'static str, Vec<(i64, f64)>)> {
    ["browse", "pay", "search"]
        .into_iter()
        .map(|route| {
            let mut seed = 23;
            let points = (0..=RAW_MINUTES)
                .map(|k| {
                    let t = end - RAW_MINUTES * 60 + k * 60;
                    let ratio = match route {
                        "browse" => browse(t, &mut seed),
                        "pay" => pay(t, end, &mut seed),
                        _ => 0.001,
                    };
                    (t, ratio)
                })
                .collect();
            (route, points)
        })
        .collect()
}

/// A week of the app's raw request counters ending at `end`, scraped every minute: 600
/// requests a minute per route, of which the route's ratio ([`raw_ratios`]) answered `500`;
/// and the recording of route `search` for its last two hours only, at [`SEARCH_RECORDED`].
/// No other recording history: the SLO's rules were loaded two hours ago, for `search` only.
fn raw_history(end: i64) -> String {
    let mut text = String::from("# HELP http_requests Requests.\n# TYPE http_requests counter\n");
    for (route, ratios) in raw_ratios(end) {
        for code in ["200", "500"] {
            // Counters far from zero, so no rate is extrapolated to a counter start.
            let mut count = 1.0e6;
            for &(t, ratio) in &ratios {
                count += if code == "500" {
                    600.0 * ratio
                } else {
                    600.0 * (1.0 - ratio)
                };
                text.push_str(&format!(
                    "http_requests_total{{namespace=\"shop\",app=\"checkout\",route=\"{route}\",code=\"{code}\"}} {count} {t}\n"
                ));
            }
        }
    }
    text.push_str(
        "# HELP slo:sli_error:ratio_rate5m SLI error ratio.\n\
         # TYPE slo:sli_error:ratio_rate5m gauge\n",
    );
    let mut t = end - 2 * HOUR;
    while t <= end {
        text.push_str(&format!(
            "slo:sli_error:ratio_rate5m{{{RECORDED},route=\"search\"}} {SEARCH_RECORDED} {t}\n"
        ));
        t += 60;
    }
    text.push_str("# EOF\n");
    text
}

/// The error ratio over the five minutes up to `t` of `ratios` (each minute carries the same
/// number of requests, so it is the mean of the minutes' ratios); `None` before the history.
fn five_minute_ratio(ratios: &[(i64, f64)], t: i64) -> Option<f64> {
    let minutes: Vec<f64> = ratios
        .iter()
        .filter(|(s, _)| *s > t - 300 && *s <= t)
        .map(|(_, r)| *r)
        .collect();
    let first = ratios.first()?.0;
    (t - 300 >= first && minutes.len() == 5).then(|| minutes.iter().sum::<f64>() / 5.0)
}

/// A new SLO over an app whose raw request counters go back a week, but whose recording rules
/// were loaded two hours ago (for one route only): its budget job reads, per step and route,
/// the recording where it has a point and the raw error ratio, as the recording rule computes
/// it, everywhere else, one series per route with the `route` label alone. One engine cycle
/// then forecasts every route (where the recording alone gives too little history): the
/// forecast follows the backfilled ratios (`browse` near 0.2 %, `pay` near its last 3 %, run
/// out soon and likely) and is published with the labels the recording rules write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_slo_is_forecast_from_the_raw_series() {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let end = now - now % STEP;
    let data = backfill(dir.path(), &raw_history(end));
    let (_prometheus, port) = start(dir.path(), &data, &logging_queries(dir.path()));
    let url = format!("http://127.0.0.1:{port}");
    let apps = objects::<MonitoredApp>("MonitoredApp");
    let slos = objects::<Slo>("SLO");

    // Before: the recording alone is two hours of one route.
    let (mut recorded_only, _) = new_engine(&url, 60, Duration::from_secs(20));
    recorded_only.set_jobs(slo_jobs(&slos, &[], 60));
    let before = recorded_only.run_all_at(end).await;
    assert!(
        matches!(before[0].1, Outcome::TooLittleHistory { .. }),
        "the recording alone: {before:?}"
    );

    let (mut engine, registry) = new_engine(&url, 60, Duration::from_secs(20));
    let jobs = slo_jobs(&slos, &apps, 60);
    let read = engine
        .context()
        .prometheus
        .query_range(&jobs[0].query, end - 7 * DAY, end, STEP)
        .await
        .unwrap();
    let ratios = raw_ratios(end);
    let mut routes: Vec<&str> = Vec::new();
    for series in &read {
        let route = series.labels.get("route").unwrap().as_str();
        assert_eq!(series.labels.len(), 1, "{:?}", series.labels);
        routes.push(route);
        let raw = &ratios.iter().find(|(r, _)| *r == route).unwrap().1;
        let mut compared = 0;
        for (i, value) in series.series.values.iter().enumerate() {
            let t = series.series.timestamp(i);
            let expected = if route == "search" && t >= end - 2 * HOUR {
                Some(SEARCH_RECORDED)
            } else {
                five_minute_ratio(raw, t)
            };
            match expected {
                Some(e) => {
                    assert!(
                        (value - e).abs() < 1e-9,
                        "{route} at {t} (end {end}): read {value}, expected {e}"
                    );
                    compared += 1;
                }
                None => assert!(value.is_nan(), "{route} at {t}: {value} before the history"),
            }
        }
        assert!(compared >= 2_000, "{route}: {compared} steps compared");
    }
    routes.sort_unstable();
    assert_eq!(routes, ["browse", "pay", "search"]);

    engine.set_jobs(jobs);
    let outcomes = engine.run_all_at(end).await;
    assert_eq!(
        outcomes,
        vec![(
            JobKey::slo("shop", "checkout-availability"),
            Outcome::Fitted { series: 3 }
        )]
    );
    let text = exposition::metrics_text(&registry, &engine.context().published);
    let route = |r: &'static str| {
        vec![
            ("namespace", "shop"),
            ("app", "checkout"),
            ("slo", "checkout-availability"),
            ("sloth_id", "shop-checkout-checkout-availability"),
            ("sloth_service", "checkout"),
            ("sloth_slo", "checkout-availability"),
            ("route", r),
        ]
    };
    let hour_ahead = |r: &'static str| {
        let mut labels = route(r);
        labels.push(("horizon", "1h"));
        one(&text, "vigil:slo:error_ratio_forecast:mean", &labels)
    };
    let browse_1h = hour_ahead("browse");
    let pay_1h = hour_ahead("pay");
    let pay_last = ratios[1].1.last().unwrap().1;
    eprintln!("1h ahead: browse {browse_1h:.5}, pay {pay_1h:.5} (last raw {pay_last:.5})");
    assert!((0.001..0.004).contains(&browse_1h), "browse: {browse_1h}");
    assert!(
        (pay_1h - pay_last).abs() < 0.006,
        "pay: {pay_1h} vs {pay_last}"
    );
    let exhaustion = one(&text, "vigil:slo:budget_exhaustion_seconds", &route("pay"));
    let probability = one(
        &text,
        "vigil:slo:budget_exhaustion_probability",
        &route("pay"),
    );
    eprintln!(
        "pay: exhausted in {:.1} h, probability {probability:.3}",
        exhaustion / HOUR as f64
    );
    assert!(exhaustion < 42.0 * HOUR as f64, "pay: {exhaustion} s");
    assert!(probability > 0.75, "pay: probability {probability}");
    assert_healthy(&text, &route("browse"));
}

/// A healthy group's budget outlook in `text`: no exhaustion time and a probability of
/// running out under 0.05.
fn assert_healthy(text: &str, labels: &[(&str, &str)]) {
    assert!(
        find(text, "vigil:slo:budget_exhaustion_seconds", labels).is_empty(),
        "a healthy route's budget does not run out:\n{text}"
    );
    let healthy = one(text, "vigil:slo:budget_exhaustion_probability", labels);
    eprintln!("browse: probability {healthy:.4}");
    assert!(healthy < 0.05, "browse: probability {healthy}");
}
