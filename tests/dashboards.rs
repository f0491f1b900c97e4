//! The examples' Grafana dashboards, checked against what consumes them:
//!
//! - Grafana's published dashboard schema: the TypeScript types of the npm package
//!   `@grafana/schema` (it ships no JSON schema), checked by the TypeScript compiler, both
//!   installed into `.tools/grafana-schema` by `scripts/install-test-tools.sh`;
//! - a real Prometheus holding each example app's series under the names the app really exposes
//!   (backfilled with `promtool tsdb create-blocks-from openmetrics`) and evaluating the
//!   example's rendered alert and SLO rules, where every panel query, with Grafana's variables
//!   substituted as Grafana would, returns data.
//!
//! What this does not model: Grafana itself (panel rendering, `$__rate_interval` is fixed at
//! four times the 15 s scrape interval of the fed series) and scraping (series are backfilled).
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step must fail the test with its message"
)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use vigil_tests::{free_port, render_example, repo_root, run_ok, tool};

const EXAMPLES: [&str; 3] = ["banking", "infrastructure", "public-sector"];

/// The rendered dashboards of an example: file name and JSON.
fn dashboards(example: &str) -> Vec<(String, Value)> {
    render_example(example)
        .files
        .iter()
        .filter(|(p, _)| {
            p.starts_with("grafana/dashboards") && p.extension().is_some_and(|e| e == "json")
        })
        .map(|(p, bytes)| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, serde_json::from_slice(bytes).expect("dashboard JSON"))
        })
        .collect()
}

// ---- Grafana's dashboard schema ----------------------------------------------------------

/// Where `scripts/install-test-tools.sh` puts `@grafana/schema` and `typescript`.
fn schema_tools() -> (PathBuf, PathBuf) {
    let root = repo_root().join(".tools/grafana-schema/node_modules");
    let types = root.join("@grafana/schema/dist/types/index.d.ts");
    let tsc = root.join("typescript/bin/tsc");
    assert!(
        types.is_file() && tsc.is_file(),
        "@grafana/schema or typescript missing under {}: run scripts/install-test-tools.sh",
        root.display()
    );
    (types, tsc)
}

/// A TypeScript module that type-checks `dashboard` as a Grafana `Dashboard`.
///
/// The schema leaves two things to the data source plugin: the query type of an annotation
/// (`AnnotationQuery<TQuery>`) and the plugin's own annotation fields. Both are typed here as
/// the Prometheus data source reads them (`expr` and `interval` in `target`; `titleFormat`,
/// `textFormat`, `tagKeys`, `useValueForTime` beside it); everything else is the schema's own.
fn typed_module(types: &Path, dashboard: &Value) -> String {
    let import = types.with_extension("").with_extension("");
    format!(
        "import type {{ Dashboard, AnnotationQuery, DataQuery }} from '{}';\n\
         interface PrometheusQuery extends DataQuery {{ expr: string; interval?: string; }}\n\
         type PrometheusAnnotation = AnnotationQuery<PrometheusQuery> & {{\n  \
           titleFormat?: string; textFormat?: string; tagKeys?: string; useValueForTime?: boolean;\n\
         }};\n\
         type CheckedDashboard = Omit<Dashboard, 'annotations'> & {{\n  \
           annotations?: {{ list?: Array<AnnotationQuery | PrometheusAnnotation> }};\n\
         }};\n\
         export const dashboard: CheckedDashboard = {};\n",
        import.display(),
        serde_json::to_string_pretty(dashboard).expect("JSON")
    )
}

/// Runs `tsc --strict --noEmit` on one module per dashboard; the error text when it fails.
fn type_check(dashboards: &[(String, Value)]) -> Result<(), String> {
    let (types, tsc) = schema_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for (name, d) in dashboards {
        let path = dir
            .path()
            .join(format!("{}.ts", name.trim_end_matches(".json")));
        std::fs::write(&path, typed_module(&types, d)).expect("write module");
        files.push(path);
    }
    let out = Command::new(tool("node"))
        .arg(&tsc)
        .args([
            "--strict",
            "--noEmit",
            "--target",
            "es2020",
            "--moduleResolution",
            "node",
        ])
        .args(&files)
        .output()
        .expect("tsc runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Every dashboard of every example (views and SLOs) is a `Dashboard` of Grafana's published
/// schema: no unknown or legacy fields (such as an annotation's top-level `expr`), no missing
/// required ones (such as a variable's current `text` and `value`).
#[test]
fn every_example_dashboard_matches_grafanas_schema() {
    let all: Vec<(String, Value)> = EXAMPLES.iter().flat_map(|e| dashboards(e)).collect();
    assert!(
        all.len() >= 12,
        "expected every example's dashboards, got {}",
        all.len()
    );
    if let Err(errors) = type_check(&all) {
        panic!("rendered dashboards do not match @grafana/schema:\n{errors}");
    }
}

/// The schema check catches the two defects the renderer had: a release annotation with its
/// query in the legacy top-level `expr`, and a data source variable with an empty `current`.
#[test]
fn the_schema_check_rejects_legacy_annotations_and_empty_current_values() {
    let (name, good) = dashboards("banking")
        .into_iter()
        .next()
        .expect("a dashboard");
    let mut legacy_annotation = good.clone();
    let releases = &mut legacy_annotation["annotations"]["list"][1];
    let target = releases["target"].take();
    let releases = releases.as_object_mut().expect("annotation object");
    releases.remove("target");
    releases.insert("expr".into(), target["expr"].clone());
    let errors =
        type_check(&[(name.clone(), legacy_annotation)]).expect_err("legacy expr accepted");
    assert!(errors.contains(r#""expr"' does not exist"#), "{errors}");

    let mut empty_current = good;
    empty_current["templating"]["list"][0]["current"] = serde_json::json!({});
    let errors = type_check(&[(name, empty_current)]).expect_err("empty current accepted");
    assert!(
        errors.contains("missing the following properties") && errors.contains("text"),
        "{errors}"
    );
}

// ---- every panel has data ----------------------------------------------------------------

/// Seconds since the epoch.
fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .expect("clock after 1970")
}

/// The sample times of the fed series: every 10 minutes over the last 9 days (so week-over-week
/// panels have last week's day), then every 15 s over the last 2 hours.
fn sample_times(now: i64) -> Vec<i64> {
    let recent = now - 2 * 3600;
    let mut times: Vec<i64> = (now - 9 * 86_400..recent).step_by(600).collect();
    times.extend((recent..=now).step_by(15));
    times
}

/// One series: its name and labels, and its value at a time (`None`: absent then).
struct Series {
    name: String,
    labels: Vec<(String, String)>,
    value: Box<dyn Fn(i64) -> Option<f64>>,
}

fn series(
    name: &str,
    labels: &[(&str, &str)],
    value: impl Fn(i64) -> Option<f64> + 'static,
) -> Series {
    Series {
        name: name.to_owned(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        value: Box::new(value),
    }
}

/// What an example's app exposes: its request metrics under the names it really uses, and
/// what the agent and the operator export about it.
struct AppFeed {
    namespace: &'static str,
    app: &'static str,
    /// `cluster` label on every series, as the agent's external labels set it in a
    /// multi-cluster setup; `None` for a single cluster without the label.
    cluster: Option<&'static str>,
    /// Request counter (for Spring, the histogram's own `_count`).
    counter: &'static str,
    status_label: &'static str,
    histogram: &'static str,
    /// Extra labels of the request series, such as `region`.
    request_labels: Vec<(&'static str, Vec<&'static str>)>,
    /// Further series of the app itself (its own metrics that the views' extra panels read).
    own: Vec<Series>,
}

/// Every series of `feed` at the sample times; `now` is the last one. The old release runs until
/// 3 hours ago, the new one since; the new one crashes at 2 per minute in the last 10 minutes
/// (a spike the crash alerts fire on), the old one rarely over the 9 days.
fn app_series(feed: AppFeed, start: i64, now: i64) -> Vec<Series> {
    let release = now - 3 * 3600;
    let mut base = vec![("namespace", feed.namespace), ("app", feed.app)];
    if let Some(c) = feed.cluster {
        base.push(("cluster", c));
    }
    let with = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        base.iter()
            .chain(extra)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let mut out: Vec<Series> = Vec::new();
    let mut push =
        |name: &str, labels: Vec<(String, String)>, value: Box<dyn Fn(i64) -> Option<f64>>| {
            out.push(Series {
                name: name.to_owned(),
                labels,
                value,
            });
        };
    let elapsed = move |t: i64| (t - start) as f64;

    // Requests: 20/s succeed and 0.2/s fail per pod and label combination.
    let combos: Vec<Vec<(&str, &str)>> =
        feed.request_labels
            .iter()
            .fold(vec![vec![]], |acc, (k, vs)| {
                acc.iter()
                    .flat_map(|prefix| {
                        vs.iter()
                            .map(move |v| [prefix.clone(), vec![(*k, *v)]].concat())
                    })
                    .collect()
            });
    let buckets = [
        ("0.1", 0.5),
        ("0.25", 0.8),
        ("0.5", 0.95),
        ("1.0", 0.99),
        ("2.5", 1.0),
        ("+Inf", 1.0),
    ];
    for pod in ["0", "1"] {
        let pod = format!("{}-{pod}", feed.app);
        for extra in &combos {
            for (status, per_sec) in [("200", 20.0), ("500", 0.2)] {
                let mut labels = with(extra);
                labels.push(("pod".into(), pod.clone()));
                labels.push((feed.status_label.into(), status.into()));
                let count = move |t: i64| Some((elapsed(t) * per_sec).floor());
                if feed.counter != format!("{}_count", feed.histogram) {
                    push(
                        &format!("{}_count", feed.histogram),
                        labels.clone(),
                        Box::new(count),
                    );
                }
                push(feed.counter, labels.clone(), Box::new(count));
                push(
                    &format!("{}_sum", feed.histogram),
                    labels.clone(),
                    Box::new(move |t| Some(elapsed(t) * per_sec * 0.12)),
                );
                for (le, share) in buckets {
                    let mut l = labels.clone();
                    l.push(("le".into(), le.into()));
                    push(
                        &format!("{}_bucket", feed.histogram),
                        l,
                        Box::new(move |t| Some((elapsed(t) * per_sec * share).floor())),
                    );
                }
            }
        }
    }

    let old = [("version", "4.1.0"), ("revision", "a1b2c3d")];
    let new = [("version", "4.2.0"), ("revision", "e4f5a6b")];
    let old_live = move |t: i64| t < release;
    for (labels, from, to) in [(old, start, release), (new, release, i64::MAX)] {
        let live = move |t: i64| from <= t && t < to;
        push(
            "vigil_app_release_info",
            with(&labels),
            Box::new(move |t| live(t).then_some(1.0)),
        );
        let at = from as f64;
        push(
            "vigil_app_release_timestamp_seconds",
            with(&labels),
            Box::new(move |t| live(t).then_some(at)),
        );
    }
    for pod in ["0", "1"] {
        let pod = format!("{}-{pod}", feed.app);
        let p = [("pod", pod.as_str())];
        let crash = |version: &'static str, fingerprint: &'static str, kind: &'static str| {
            with(&[
                ("pod", pod.as_str()),
                ("version", version),
                ("fingerprint", fingerprint),
                ("type", kind),
                ("language", "java"),
            ])
        };
        push(
            "vigil_crashes_total",
            crash("4.1.0", "9f2c41d07a", "NullPointerException"),
            Box::new(move |t| old_live(t).then(|| (elapsed(t) / 1000.0).floor())),
        );
        let spike = now - 600;
        push(
            "vigil_crashes_total",
            crash("4.2.0", "3be8d2a611", "IllegalStateException"),
            Box::new(move |t| (t >= spike).then(|| ((t - spike) as f64 / 30.0).floor())),
        );
        push(
            "vigil_container_restarts_total",
            with(&[("pod", pod.as_str()), ("reason", "OOMKilled")]),
            Box::new(move |t| Some((elapsed(t) / 7200.0).floor())),
        );
        push("vigil_active_users", with(&p), Box::new(|_| Some(1200.0)));
        for register in 0..64 {
            let r = register.to_string();
            let rank = f64::from(register % 4);
            push(
                "vigil_crash_users_register",
                with(&[
                    ("pod", pod.as_str()),
                    ("version", "4.2.0"),
                    ("register", r.as_str()),
                ]),
                Box::new(move |t| (t >= now - 3600).then_some(rank)),
            );
        }
    }
    push(
        "vigil_crash_affected_users",
        with(&[
            ("version", "4.2.0"),
            ("fingerprint", "3be8d2a611"),
            ("type", "IllegalStateException"),
        ]),
        Box::new(move |t| (t >= now - 600).then_some(37.0)),
    );
    for s in feed.own {
        let labels = with(&[]).into_iter().chain(s.labels).collect();
        out.push(Series {
            name: s.name,
            labels,
            value: s.value,
        });
    }
    out
}

/// The series of each example's app, under the names the example says it exposes.
fn feeds(example: &str) -> Vec<AppFeed> {
    match example {
        // Spring Boot with Micrometer (`requests: {preset: spring-micrometer}`), one cluster
        // without a `cluster` label.
        "banking" => vec![AppFeed {
            namespace: "banking",
            app: "mobile-api",
            cluster: None,
            counter: "http_server_requests_seconds_count",
            status_label: "status",
            histogram: "http_server_requests_seconds",
            request_labels: vec![
                ("uri", vec!["/accounts", "/transfers"]),
                ("method", vec!["GET"]),
            ],
            own: vec![
                series(
                    "jvm_memory_used_bytes",
                    &[("area", "heap"), ("id", "G1 Eden Space")],
                    |_| Some(2.1e8),
                ),
                series("payments_total", &[("channel", "card")], |t| {
                    Some((t % 10_000_000) as f64 * 3.0)
                }),
            ],
        }],
        // A Prometheus client (the default names) with a `region` label, in a cluster that
        // sets the `cluster` label.
        "public-sector" => vec![AppFeed {
            namespace: "tax-filing",
            app: "tax-portal",
            cluster: Some("gov-eu-1"),
            counter: "http_requests_total",
            status_label: "code",
            histogram: "http_request_duration_seconds",
            request_labels: vec![("region", vec!["north", "south"])],
            own: vec![series(
                "tax_filings_submitted_total",
                &[("region", "north")],
                |t| Some((t % 10_000_000) as f64),
            )],
        }],
        other => panic!("no feed for example {other}"),
    }
}

/// The fed series as OpenMetrics text, one series after another in time order.
fn openmetrics(series: &[Series], times: &[i64]) -> String {
    let mut by_name: BTreeMap<&str, Vec<&Series>> = BTreeMap::new();
    for s in series {
        by_name.entry(&s.name).or_default().push(s);
    }
    let mut out = String::new();
    for (name, all) in by_name {
        for s in all {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            let labels = labels.join(",");
            for &t in times {
                if let Some(v) = (s.value)(t) {
                    let _ = writeln!(out, "{name}{{{labels}}} {v} {t}");
                }
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

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

/// Every panel of the banking and public-sector dashboards shows data when Prometheus holds the
/// app's own series: request panels read the app's request metric names (Spring's
/// `http_server_requests_seconds_*{status}` for banking), the cluster filter's "All" keeps
/// series without a `cluster` label, and the alert and SLO panels read what the example's own
/// rules record and fire. The variables' queries list the dashboard's apps.
#[test]
fn example_dashboards_have_data_for_every_panel() {
    for example in ["banking", "public-sector"] {
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
        assert!(total > 40, "{example}: only {total} queries");
        // Panels on recorded SLO series and firing alerts fill once the rules have been
        // evaluated: ask again until every query has data or a generous deadline passes.
        let deadline = Instant::now() + Duration::from_secs(120);
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
}
