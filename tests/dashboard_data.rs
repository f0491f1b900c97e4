//! The examples' Grafana dashboards against a real Prometheus holding each example app's series
//! under the names the app really exposes (backfilled with `promtool tsdb create-blocks-from
//! openmetrics`) and evaluating the example's rendered alert and SLO rules: every panel query,
//! with Grafana's variables substituted as Grafana would, returns data.
//!
//! What this does not model: Grafana itself (panel rendering; `$__rate_interval` is fixed at four
//! times the 15 s scrape interval of the fed series) and scraping (series are backfilled).
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step must fail the test with its message"
)]

#[path = "dashboard_data/feed.rs"]
mod feed;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_tests::{example_dashboards as dashboards, free_port, render_example, run_ok, tool};

use feed::{app_series, feeds, now_secs, openmetrics, sample_times, Series};

/// Kills the child process when the test ends, whatever its outcome.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A real Prometheus on the backfilled TSDB in `dir`, evaluating the example's rendered rule
/// files every second (their own intervals are up to a minute; only the cadence changes).
fn start_prometheus(dir: &Path, example: &str) -> (Running, u16) {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    for (path, bytes) in render_example(example).files {
        if !path.starts_with("prometheus/rules") {
            continue;
        }
        let mut doc: serde_yaml::Value = serde_yaml::from_slice(&bytes).expect("rule file");
        for group in doc["groups"].as_sequence_mut().expect("groups") {
            group["interval"] = "1s".into();
        }
        let file = rules.join(path.file_name().expect("file name"));
        std::fs::write(file, serde_yaml::to_string(&doc).expect("yaml")).expect("write rules");
    }
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{evaluation_interval: 1s}}\nrule_files: ['{}/*.yml']\n",
            rules.display()
        ),
    )
    .expect("write config");
    let port = free_port();
    let child = Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg("--storage.tsdb.retention.time=30d")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    (Running(child), port)
}

/// `GET /api/v1/<endpoint>` with URL-encoded parameters, through curl; the parsed reply.
fn api(port: u16, endpoint: &str, params: &[(&str, String)]) -> Option<Value> {
    let mut cmd = Command::new(tool("curl"));
    cmd.args([
        "-sfG",
        &format!("http://127.0.0.1:{port}/api/v1/{endpoint}"),
    ]);
    for (k, v) in params {
        cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
    }
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// One query a dashboard sends, with Grafana's variables substituted.
struct PanelQuery {
    what: String,
    expr: String,
    instant: bool,
}

/// The value Grafana puts for each variable when "All" is selected: the variable's all-value
/// (for `app`, the dashboard's apps; for `cluster`, `.*`), or the constant's value.
fn variable_values(d: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for v in d["templating"]["list"].as_array().expect("variables") {
        let name = v["name"].as_str().expect("name").to_owned();
        let value = match v["type"].as_str() {
            Some("constant") => v["query"].as_str(),
            Some("query") => v["allValue"].as_str(),
            _ => None,
        };
        if let Some(value) = value {
            out.insert(name, value.to_owned());
        }
    }
    out.insert("__rate_interval".into(), "1m".into());
    out
}

fn substitute(expr: &str, values: &BTreeMap<String, String>) -> String {
    // Longest names first, so `$app` never eats the start of a longer name.
    let mut names: Vec<&String> = values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut out = expr.to_owned();
    for n in names {
        out = out
            .replace(&format!("${{{n}}}"), &values[n])
            .replace(&format!("${n}"), &values[n]);
    }
    assert!(!out.contains('$'), "a variable is left in {out}");
    out
}

/// Every panel target and annotation query of a dashboard.
fn panel_queries(file: &str, d: &Value) -> Vec<PanelQuery> {
    let values = variable_values(d);
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(PanelQuery {
                what: format!("{file}: panel {:?} target {}", p["title"], t["refId"]),
                expr: substitute(t["expr"].as_str().expect("expr"), &values),
                instant: t["instant"] == true,
            });
        }
    }
    for a in d["annotations"]["list"].as_array().expect("annotations") {
        if let Some(expr) = a["target"]["expr"].as_str() {
            out.push(PanelQuery {
                what: format!("{file}: annotation {:?}", a["name"]),
                expr: substitute(expr, &values),
                instant: false,
            });
        }
    }
    out
}

/// Series a query returns over the dashboard's default time range (the last 6 hours), or at
/// its end for instant queries; `None` when Prometheus rejects the query.
fn result_count(port: u16, q: &PanelQuery) -> Option<usize> {
    let now = now_secs();
    let reply = if q.instant {
        api(
            port,
            "query",
            &[("query", q.expr.clone()), ("time", now.to_string())],
        )
    } else {
        api(
            port,
            "query_range",
            &[
                ("query", q.expr.clone()),
                ("start", (now - 6 * 3600).to_string()),
                ("end", now.to_string()),
                ("step", "60".into()),
            ],
        )
    }?;
    (reply["status"] == "success").then(|| reply["data"]["result"].as_array().map_or(0, Vec::len))
}

/// Every panel of the banking dashboards shows data when Prometheus holds the app's own series:
/// request panels read Spring's `http_server_requests_seconds_*{status}`, the cluster filter's
/// "All" keeps series without a `cluster` label, and the alert and SLO panels read what the
/// example's own rules record and fire. The variables' queries list the dashboard's apps.
#[test]
fn banking_dashboards_have_data_for_every_panel() {
    dashboards_have_data_for_every_panel("banking", 40, Duration::from_secs(120));
}

/// The same for the public-sector portal: a Prometheus client's default names with a `region`
/// label, in a cluster that sets the `cluster` label.
#[test]
fn public_sector_dashboards_have_data_for_every_panel() {
    dashboards_have_data_for_every_panel("public-sector", 40, Duration::from_secs(120));
}

/// The same for the infrastructure example: a database and a queue that serve no HTTP requests
/// (no request panels), their exporters' own series behind the extra panel and the SLOs, and
/// the support view's current alerts, which need the queue's `targetDown` alert to have held
/// its `for: 2m`.
#[test]
fn infrastructure_dashboards_have_data_for_every_panel() {
    dashboards_have_data_for_every_panel("infrastructure", 20, Duration::from_secs(200));
}

/// Feeds `example`'s series to a real Prometheus running the example's rules, and asks every
/// panel query of the example's dashboards (at least `min_queries`) until each has data or
/// `patience` has passed.
fn dashboards_have_data_for_every_panel(example: &str, min_queries: usize, patience: Duration) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let now = now_secs() - 5;
    let times = sample_times(now);
    let start = times[0];
    let all: Vec<Series> = feeds(example)
        .into_iter()
        .flat_map(|f| app_series(f, start, now))
        .collect();
    let input = tmp.path().join("series.om");
    std::fs::write(&input, openmetrics(&all, &times)).expect("write series");
    let tsdb = tmp.path().join("tsdb");
    run_ok(
        "promtool",
        &[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--max-block-duration=24h",
            &input.to_string_lossy(),
            &tsdb.to_string_lossy(),
        ],
        tmp.path(),
    );
    let (mut prometheus, port) = start_prometheus(tmp.path(), example);

    let boards = dashboards(example);
    let mut pending: Vec<PanelQuery> = boards
        .iter()
        .flat_map(|(f, d)| panel_queries(f, d))
        .collect();
    let total = pending.len();
    assert!(total > min_queries, "{example}: only {total} queries");
    // Panels on recorded SLO series and firing alerts fill once the rules have been
    // evaluated: ask again until every query has data or a generous deadline passes.
    let deadline = Instant::now() + patience;
    let mut rejected = Vec::new();
    loop {
        if let Ok(Some(status)) = prometheus.0.try_wait() {
            panic!("{example}: prometheus exited with {status}");
        }
        let mut still = Vec::new();
        for q in pending {
            match result_count(port, &q) {
                Some(n) if n > 0 => {}
                Some(_) => still.push(q),
                None if api(port, "status/buildinfo", &[]).is_some() => rejected.push(q),
                None => still.push(q),
            }
        }
        pending = still;
        if pending.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let list = |qs: &[PanelQuery]| {
        qs.iter()
            .map(|q| format!("  {}\n    {}\n", q.what, q.expr))
            .collect::<String>()
    };
    assert!(
        rejected.is_empty(),
        "{example}: Prometheus rejects:\n{}",
        list(&rejected)
    );
    assert!(
        pending.is_empty(),
        "{example}: no data for:\n{}",
        list(&pending)
    );
    println!(
        "{example}: all {total} queries of {} dashboards returned data ({} series fed)",
        boards.len(),
        all.len()
    );

    for (file, d) in &boards {
        let values = variable_values(d);
        for v in d["templating"]["list"].as_array().expect("variables") {
            let Some(definition) = v["query"].as_str().filter(|_| v["type"] == "query") else {
                continue;
            };
            let (selector, label) = definition
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|r| r.rsplit_once(", "))
                .expect("label_values(selector, label)");
            let reply = api(
                port,
                "series",
                &[("match[]", substitute(selector, &values))],
            )
            .expect("series API");
            let found: Vec<&str> = reply["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s[label].as_str())
                .collect();
            match label {
                "app" => {
                    let apps = values["app"].split('|').collect::<Vec<_>>();
                    assert!(
                        !found.is_empty() && apps.iter().all(|a| found.contains(a)),
                        "{file}: the app variable lists {found:?}, not {apps:?}"
                    );
                }
                "cluster" => {
                    let expected: Vec<&str> =
                        feeds(example).iter().filter_map(|f| f.cluster).collect();
                    assert!(
                        expected.iter().all(|c| found.contains(c)),
                        "{file}: the cluster variable lists {found:?}"
                    );
                }
                other => panic!("{file}: unexpected variable label {other}"),
            }
        }
    }
    drop(prometheus);
}
