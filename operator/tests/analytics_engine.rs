//! The analytics engine against a real Prometheus (2.42+): a TSDB backfilled with
//! `promtool tsdb create-blocks-from openmetrics` holds four days of a daily pattern at
//! 5-minute points for two routes, ending now; route `spiky` ends in one large spike. One
//! engine cycle over an anomaly job and a forecast job must publish the metric contract with
//! sane figures. Also: an absent or silent Prometheus gives backoff and an error count, not a
//! hang.

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

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use vigil_crds::alert_policy::Direction;
use vigil_operator::analytics::engine::exposition;
use vigil_operator::analytics::engine::jobs::{horizons, Job, JobKey, JobKind};
use vigil_operator::analytics::engine::prometheus::{PrometheusClient, PrometheusSettings};
use vigil_operator::analytics::engine::runner::Outcome;

use engine_support::{find, new_engine, one};
use prometheus_support::{backfill, free_port, start, Running};

const STEP: i64 = 300;
const DAY: i64 = 86_400;

/// The test load: 100 + 50·sin(2π·t/day) plus deterministic noise of at most ±4.
fn load(t: i64, seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    let noise = ((*seed >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 8.0;
    100.0 + 50.0 * (2.0 * std::f64::consts::PI * t as f64 / DAY as f64).sin() + noise
}

/// Writes four days of both routes ending at `end` (a multiple of [`STEP`]) as OpenMetrics,
/// backfills them into `data`, and starts Prometheus on it.
fn prometheus_with_history(dir: &Path, end: i64) -> (Running, String) {
    let mut text =
        String::from("# HELP vigil_test_load Test load.\n# TYPE vigil_test_load gauge\n");
    for (route, spike) in [("calm", false), ("spiky", true)] {
        let mut seed = 7;
        let mut t = end - 4 * DAY;
        while t <= end {
            let mut value = load(t, &mut seed);
            if spike && t == end {
                value = 1_000.0;
            }
            text.push_str(&format!(
                "vigil_test_load{{route=\"{route}\"}} {value} {t}\n"
            ));
            t += STEP;
        }
    }
    text.push_str("# EOF\n");
    let data = backfill(dir, &text);
    let (running, port) = start(dir, &data, "global: {scrape_interval: 1m}\n");
    (running, format!("http://127.0.0.1:{port}"))
}

fn key(rule: &str) -> JobKey {
    JobKey {
        namespace: "shop".into(),
        policy: "checkout-alerts".into(),
        rule: rule.into(),
    }
}

fn anomaly_job() -> Job {
    Job {
        key: key("LoadAnomaly"),
        app: "checkout".into(),
        query: "vigil_test_load".into(),
        periods: vec![(DAY / STEP) as usize],
        events: Vec::new(),
        kind: JobKind::Anomaly {
            baseline_window: 2 * DAY,
            direction: Direction::Up,
        },
    }
}

fn forecast_job() -> Job {
    Job {
        key: key("LoadForecast"),
        app: "checkout".into(),
        query: r#"vigil_test_load{route="calm"}"#.into(),
        periods: vec![(DAY / STEP) as usize],
        events: Vec::new(),
        kind: JobKind::Forecast {
            horizon: 6 * 3_600,
            capacity: 140.0,
            lookback: 3 * DAY,
            horizons: horizons(6 * 3_600),
        },
    }
}

/// One cycle publishes, for the anomaly job, every baseline series of both routes with the
/// identity labels, a high score for the spike and a low one for the calm route; for the
/// forecast job, mean, lower, upper and coverage at `1h`, `6h` and `1d` with
/// lower ≤ mean ≤ upper and coverage in [0, 1], and a capacity probability in [0, 1]. The
/// exposition is served over HTTP; removing the jobs withdraws their series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cycle_against_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // The last point at the start of the current day (UTC): the daily load then has the same
    // phase at every run. Ending at the run's own time made the spike's score depend on the
    // hour (0.72–0.74 when run around 16:30 UTC, where the load is at its lowest).
    let end = now - now % DAY;
    let (_prometheus, url) = prometheus_with_history(dir.path(), end);
    let (mut engine, registry) = new_engine(&url, STEP, Duration::from_secs(20));

    // Four days at 30 s are 11,521 points, over Prometheus' 11,000 per query: two chunks,
    // stitched without a gap or a shift (the backfilled points sit every tenth step).
    let client = &engine.context().prometheus;
    let range = client
        .query_range(r#"vigil_test_load{route="calm"}"#, end - 4 * DAY, end, 30)
        .await
        .unwrap();
    assert_eq!(range.len(), 1);
    let values = &range[0].series.values;
    assert_eq!(values.len(), 11_521);
    assert!(values.iter().all(|v| v.is_finite()), "a chunk left a gap");
    let mut seed = 7;
    for (i, written) in
        (0..=4 * DAY / STEP).map(|k| (k * STEP / 30, load(end - 4 * DAY + k * STEP, &mut seed)))
    {
        assert!(
            (values[i as usize] - written).abs() < 1e-9,
            "point {i}: {} != {written}",
            values[i as usize]
        );
    }

    engine.set_jobs(vec![anomaly_job(), forecast_job()]);

    let started = Instant::now();
    let outcomes = engine.run_all_at(end).await;
    let took = started.elapsed();
    eprintln!("one cycle (2 days warm-up of 2 series, 1 forecast of 3 days) took {took:?}");
    assert_eq!(
        outcomes,
        vec![
            (key("LoadAnomaly"), Outcome::Fitted { series: 2 }),
            (key("LoadForecast"), Outcome::Fitted { series: 1 }),
        ]
    );
    let published = engine.context().published.clone();
    let text = exposition::metrics_text(&registry, &published);

    let identity = [
        ("namespace", "shop"),
        ("app", "checkout"),
        ("vigil_policy", "checkout-alerts"),
        ("vigil_rule", "LoadAnomaly"),
    ];
    let route = |r: &'static str| {
        let mut labels = identity.to_vec();
        labels.push(("route", r));
        labels
    };
    let spike = one(&text, "vigil:anomaly:score", &route("spiky"));
    let calm = one(&text, "vigil:anomaly:score", &route("calm"));
    eprintln!("scores: spike {spike}, calm {calm}");
    // Above even the `low` sensitivity's threshold (0.75).
    assert!(spike > 0.75, "spike scored {spike}");
    assert!(calm < 0.5, "normal point scored {calm}");
    assert_eq!(
        one(&text, "vigil:baseline:actual", &route("spiky")),
        1_000.0
    );
    for name in [
        "vigil:baseline:expected",
        "vigil:baseline:lower",
        "vigil:baseline:upper",
    ] {
        assert!(one(&text, name, &route("calm")).is_finite());
    }
    let lower = one(&text, "vigil:baseline:lower", &route("calm"));
    let upper = one(&text, "vigil:baseline:upper", &route("calm"));
    assert!(lower <= upper, "{lower} > {upper}");
    let coverage = one(&text, "vigil:baseline:coverage", &route("calm"));
    assert!((0.0..=1.0).contains(&coverage), "{coverage}");

    let forecast = |horizon: &'static str| {
        vec![
            ("vigil_rule", "LoadForecast"),
            ("route", "calm"),
            ("app", "checkout"),
            ("horizon", horizon),
        ]
    };
    for horizon in ["1h", "6h", "1d"] {
        let labels = forecast(horizon);
        let mean = one(&text, "vigil:forecast:mean", &labels);
        let lower = one(&text, "vigil:forecast:lower", &labels);
        let upper = one(&text, "vigil:forecast:upper", &labels);
        assert!(
            lower < mean && mean < upper,
            "{horizon}: {lower} {mean} {upper}"
        );
        // The pattern stays between 46 and 154: a sane forecast does too.
        assert!((20.0..180.0).contains(&mean), "{horizon}: mean {mean}");
        // Coverage is published only where the history held enough backtests to measure it
        // out of sample (three days here are too few at some horizons): never made up.
        let coverage = find(&text, "vigil:forecast:coverage", &labels);
        assert!(coverage.len() <= 1, "{horizon}: {coverage:?}");
        assert!(
            coverage.iter().all(|c| (0.0..=1.0).contains(c)),
            "{horizon}: coverage {coverage:?}"
        );
    }
    let p = one(
        &text,
        "vigil:forecast:capacity_probability",
        &[("vigil_rule", "LoadForecast"), ("route", "calm")],
    );
    assert!((0.0..=1.0).contains(&p), "{p}");
    assert!(
        text.contains("vigil_analytics_fits_total{outcome=\"fitted\"} 3\n"),
        "{text}"
    );
    assert!(text.contains("vigil_analytics_prometheus_errors_total 0\n"));
    assert!(text.contains(
        "vigil_analytics_last_fit_timestamp_seconds{namespace=\"shop\",vigil_policy=\"checkout-alerts\",vigil_rule=\"LoadForecast\"}"
    ));

    // Served over HTTP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(exposition::serve(
        listener,
        registry.clone(),
        published.clone(),
        ready,
        async {
            let _ = stopped.await;
        },
    ));
    let body = tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap();
    assert!(body.starts_with("HTTP/1.0 200"), "{body}");
    assert!(body.contains("vigil:anomaly:score{"), "{body}");
    let _ = stop.send(());
    server.await.unwrap();

    engine.set_jobs(vec![forecast_job()]);
    let text = exposition::metrics_text(&registry, &published);
    assert!(!text.contains("vigil:anomaly:score"), "{text}");
    assert!(text.contains("vigil:forecast:mean"));
    assert!(!text.contains("vigil_rule=\"LoadAnomaly\""), "{text}");
}

/// A closed port fails fast with `PrometheusUnavailable`, counts an error and backs off 5 s,
/// then 10 s; a server that accepts but never answers fails at the request timeout.
#[tokio::test]
async fn an_absent_prometheus_backs_off_without_hanging() {
    let port = free_port();
    let (mut engine, registry) = new_engine(
        &format!("http://127.0.0.1:{port}"),
        STEP,
        Duration::from_secs(2),
    );
    engine.set_jobs(vec![anomaly_job()]);
    let now = 1_700_000_000;
    for (round, wait) in [(1, 5), (2, 10)] {
        let outcomes = tokio::time::timeout(Duration::from_secs(10), engine.run_all_at(now))
            .await
            .expect("a closed port does not hang the engine");
        let Outcome::PrometheusFailed { category, message } = &outcomes[0].1 else {
            panic!("{outcomes:?}");
        };
        assert_eq!(*category, "PrometheusUnavailable");
        assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
        let (failures, due) = engine.backoff_of(&key("LoadAnomaly")).unwrap();
        assert_eq!(failures, round);
        assert!(
            due <= Duration::from_secs(wait) && due > Duration::from_secs(wait - 2),
            "{due:?}"
        );
    }
    let text = exposition::metrics_text(&registry, &engine.context().published);
    assert!(
        text.contains("vigil_analytics_prometheus_errors_total 2\n"),
        "{text}"
    );
    assert!(!text.contains("vigil:"), "nothing is published:\n{text}");

    // Accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (mut engine, _registry) = new_engine(
        &format!("http://{}", silent.local_addr().unwrap()),
        STEP,
        Duration::from_secs(1),
    );
    engine.set_jobs(vec![forecast_job()]);
    let outcomes = tokio::time::timeout(Duration::from_secs(10), engine.run_all_at(now))
        .await
        .expect("a silent server does not hang the engine");
    let Outcome::PrometheusFailed { message, .. } = &outcomes[0].1 else {
        panic!("{outcomes:?}");
    };
    assert!(message.contains("did not answer within 1s"), "{message}");
    drop(silent);
}

/// Answers each request on `listener` with an empty vector result and sends its head and body
/// (lower-cased header names) to the test. Stands in for Prometheus only to observe what the
/// client sends; it does not evaluate queries.
fn capture(listener: std::net::TcpListener) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { return };
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            let request = loop {
                let n = tcp.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break String::from_utf8_lossy(&seen).into_owned();
                }
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_owned)
                        })
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        break text;
                    }
                }
            };
            let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
            let _ = write!(
                tcp,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            if tx.send(request).is_err() {
                return;
            }
        }
    });
    rx
}

/// The client sends the bearer token read from its file on every request (a rotated token is
/// used at once), basic auth from files, extra headers such as `X-Scope-OrgID`, and the query
/// form-encoded in a POST body.
#[tokio::test]
async fn credentials_and_tenant_headers_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "token-1\n").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = capture(listener);
    let client = PrometheusClient::new(PrometheusSettings {
        url: url.clone(),
        bearer_token_file: Some(token.clone()),
        headers: vec![(
            http::HeaderName::from_static("x-scope-orgid"),
            http::HeaderValue::from_static("tenant-a"),
        )],
        timeout: Duration::from_secs(5),
        ..PrometheusSettings::default()
    })
    .unwrap();
    let next = || {
        requests
            .recv_timeout(Duration::from_secs(5))
            .expect("a request")
            .to_ascii_lowercase()
    };
    assert!(client
        .query(r#"up{job="a b"}"#, 100.0)
        .await
        .unwrap()
        .is_empty());
    let first = next();
    assert!(first.starts_with("post /api/v1/query http/1.1"), "{first}");
    assert!(
        first.contains("authorization: bearer token-1\r\n"),
        "{first}"
    );
    assert!(first.contains("x-scope-orgid: tenant-a\r\n"), "{first}");
    assert!(
        first.ends_with("query=up%7bjob%3d%22a%20b%22%7d&time=100"),
        "{first}"
    );
    std::fs::write(&token, "token-2").unwrap();
    client.query("up", 100.0).await.unwrap();
    assert!(next().contains("authorization: bearer token-2\r\n"));

    let (user, password) = (dir.path().join("user"), dir.path().join("password"));
    std::fs::write(&user, "vigil").unwrap();
    std::fs::write(&password, "s3cret").unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = capture(listener);
    let client = PrometheusClient::new(PrometheusSettings {
        url,
        basic_auth_files: Some((user, password.clone())),
        timeout: Duration::from_secs(5),
        ..PrometheusSettings::default()
    })
    .unwrap();
    client.query("up", 1.0).await.unwrap();
    let request = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    // base64("vigil:s3cret")
    assert!(request.contains("Basic dmlnaWw6czNjcmV0\r\n"), "{request}");
    std::fs::remove_file(&password).unwrap();
    let e = client.query("up", 1.0).await.unwrap_err();
    assert!(e.to_string().contains("basic-auth password file"), "{e}");
    assert!(!e.to_string().contains("s3cret"));
}
