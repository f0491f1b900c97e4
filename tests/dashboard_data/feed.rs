//! The series each example's app exposes, as the dashboards test feeds them to Prometheus: its
//! request metrics under the names the example says it uses, its own metrics that the views'
//! extra panels read, and what the agent and the operator export about it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .expect("clock after 1970")
}

/// The sample times of the fed series: every 10 minutes over the last 9 days (so week-over-week
/// panels have last week's day), then every 15 s over the last 2 hours.
pub fn sample_times(now: i64) -> Vec<i64> {
    let recent = now - 2 * 3600;
    let mut times: Vec<i64> = (now - 9 * 86_400..recent).step_by(600).collect();
    times.extend((recent..=now).step_by(15));
    times
}

/// One series: its name and labels, and its value at a time (`None`: absent then).
pub struct Series {
    name: String,
    labels: Vec<(String, String)>,
    value: Box<dyn Fn(i64) -> Option<f64>>,
}

/// A series of the app's own, with its labels beside the app's.
pub fn series(
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
pub struct AppFeed {
    namespace: &'static str,
    app: &'static str,
    /// `cluster` label on every series, as the agent's external labels set it in a
    /// multi-cluster setup; `None` for a single cluster without the label.
    pub cluster: Option<&'static str>,
    /// Whether the app serves HTTP requests (and so exposes the request series below).
    requests: bool,
    /// Request counter (for Spring, the histogram's own `_count`).
    counter: &'static str,
    status_label: &'static str,
    histogram: &'static str,
    /// Extra labels of the request series, such as `region`.
    request_labels: Vec<(&'static str, Vec<&'static str>)>,
    /// Further series of the app itself (its own metrics that the views' extra panels read).
    own: Vec<Series>,
    /// The example's anomaly and forecast rules on the app, whose series the analytics engine
    /// publishes.
    analytics: Vec<EngineRule>,
    /// The example's SLOs on the app, whose error-budget forecasts the analytics engine
    /// publishes.
    slos: Vec<&'static str>,
}

/// An anomaly or forecast rule of an example, as the analytics engine sees it.
pub struct EngineRule {
    policy: &'static str,
    rule: &'static str,
    /// `None`: an anomaly rule; else the forecast rule's horizon as the engine labels it.
    horizon: Option<&'static str>,
    /// The level of the series the rule watches.
    level: f64,
}

/// Every series of `feed` at the sample times; `now` is the last one. The old release runs until
/// 3 hours ago, the new one since; the new one crashes at 2 per minute in the last 10 minutes
/// (a spike the crash alerts fire on), the old one rarely over the 9 days.
pub fn app_series(feed: AppFeed, start: i64, now: i64) -> Vec<Series> {
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
    for pod in ["0", "1"].into_iter().filter(|_| feed.requests) {
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
    let engine = feed
        .analytics
        .iter()
        .flat_map(engine_series)
        .chain(feed.slos.iter().flat_map(|slo| budget_series(slo)));
    for s in feed.own.into_iter().chain(engine) {
        let labels = with(&[]).into_iter().chain(s.labels).collect();
        out.push(Series {
            name: s.name,
            labels,
            value: s.value,
        });
    }
    out
}

/// What the analytics engine publishes for `rule` (its metric contract): every series labelled
/// with the app's labels, `vigil_policy` and `vigil_rule`; an anomaly rule's value, expected value,
/// 80 % band, coverage and score; a forecast rule's mean, band and coverage at `1h`, `1d` and its
/// own horizon, and its capacity probability (no crossing: the band stays under capacity).
fn engine_series(rule: &EngineRule) -> Vec<Series> {
    let ids = [("vigil_policy", rule.policy), ("vigil_rule", rule.rule)];
    let level = rule.level;
    let constant =
        |name: &str, labels: &[(&str, &str)], v: f64| series(name, labels, move |_| Some(v));
    let mut out = Vec::new();
    match rule.horizon {
        None => {
            for (name, value) in [
                ("vigil:baseline:actual", level * 1.02),
                ("vigil:baseline:expected", level),
                ("vigil:baseline:lower", level * 0.85),
                ("vigil:baseline:upper", level * 1.15),
                ("vigil:baseline:coverage", 0.81),
                ("vigil:anomaly:score", 0.12),
            ] {
                out.push(constant(name, &ids, value));
            }
        }
        Some(own) => {
            let mut horizons = vec!["1h", "1d", own];
            horizons.sort_unstable();
            horizons.dedup();
            for horizon in horizons {
                let labels = [ids[0], ids[1], ("horizon", horizon)];
                for (name, value) in [
                    ("vigil:forecast:mean", level),
                    ("vigil:forecast:lower", level * 0.9),
                    ("vigil:forecast:upper", level * 1.1),
                    ("vigil:forecast:coverage", 0.79),
                ] {
                    out.push(constant(name, &labels, value));
                }
            }
            out.push(constant("vigil:forecast:capacity_probability", &ids, 0.02));
        }
    }
    out
}

/// What the analytics engine publishes for the SLO `slo` (its metric contract): the error-ratio
/// forecast at `1h`, `1d` and the budget horizon (`1w` for the examples' 28- and 30-day
/// windows), and a budget forecast to run out in four days with probability 0.62 (so the
/// SLO's forecast ticket fires too).
fn budget_series(slo: &'static str) -> Vec<Series> {
    let constant =
        |name: &str, labels: &[(&str, &str)], v: f64| series(name, labels, move |_| Some(v));
    let mut out = Vec::new();
    for horizon in ["1h", "1d", "1w"] {
        let labels = [("slo", slo), ("horizon", horizon)];
        for (name, value) in [
            ("vigil:slo:error_ratio_forecast:mean", 0.0012),
            ("vigil:slo:error_ratio_forecast:lower", 0.0008),
            ("vigil:slo:error_ratio_forecast:upper", 0.0016),
        ] {
            out.push(constant(name, &labels, value));
        }
    }
    let labels = [("slo", slo)];
    out.push(constant(
        "vigil:slo:budget_exhaustion_seconds",
        &labels,
        4.0 * 86_400.0,
    ));
    out.push(constant(
        "vigil:slo:budget_exhaustion_probability",
        &labels,
        0.62,
    ));
    out
}

/// The series of each example's app, under the names the example says it exposes.
pub fn feeds(example: &str) -> Vec<AppFeed> {
    match example {
        // Spring Boot with Micrometer (`requests: {preset: spring-micrometer}`), one cluster
        // without a `cluster` label.
        "banking" => vec![AppFeed {
            namespace: "banking",
            app: "mobile-api",
            cluster: None,
            requests: true,
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
            slos: vec!["mobile-api-availability"],
            analytics: vec![
                EngineRule {
                    policy: "mobile-api-performance",
                    rule: "MobileApiErrorAnomaly",
                    horizon: None,
                    level: 0.8,
                },
                EngineRule {
                    policy: "mobile-api-performance",
                    rule: "MobileApiActiveUsersForecast",
                    horizon: Some("1d"),
                    level: 2400.0,
                },
            ],
        }],
        // A Prometheus client (the default names) with a `region` label, in a cluster that
        // sets the `cluster` label.
        "public-sector" => vec![AppFeed {
            namespace: "tax-filing",
            app: "tax-portal",
            cluster: Some("gov-eu-1"),
            requests: true,
            counter: "http_requests_total",
            status_label: "code",
            histogram: "http_request_duration_seconds",
            request_labels: vec![("region", vec!["north", "south"])],
            own: vec![series(
                "tax_filings_submitted_total",
                &[("region", "north")],
                |t| Some((t % 10_000_000) as f64),
            )],
            slos: vec!["tax-portal-latency"],
            analytics: vec![
                EngineRule {
                    policy: "tax-portal-capacity",
                    rule: "TaxPortalLoadForecast",
                    horizon: Some("6h"),
                    level: 80.0,
                },
                EngineRule {
                    policy: "tax-portal-capacity",
                    rule: "TaxPortalTrafficAnomaly",
                    horizon: None,
                    level: 80.0,
                },
            ],
        }],
        // A PostgreSQL database and a RabbitMQ queue (`requests: {preset: none}`): no request
        // series, their exporters' own instead. One of the queue's two targets is down, so its
        // `targetDown` alert fires for the support audience.
        "infrastructure" => vec![
            AppFeed {
                namespace: "core-infra",
                app: "ledger-db",
                cluster: None,
                requests: false,
                counter: "",
                status_label: "",
                histogram: "",
                request_labels: vec![],
                own: [
                    ("0.05", 0.99),
                    ("0.1", 0.9999),
                    ("0.25", 1.0),
                    ("+Inf", 1.0),
                ]
                .into_iter()
                .map(|(le, share)| {
                    series(
                        "pg_query_duration_seconds_bucket",
                        &[("le", le)],
                        move |t| Some(((t % 10_000_000) as f64 * 100.0 * share).floor()),
                    )
                })
                .chain([
                    series("pg_query_duration_seconds_count", &[], |t| {
                        Some((t % 10_000_000) as f64 * 100.0)
                    }),
                    series("pg_query_duration_seconds_sum", &[], |t| {
                        Some((t % 10_000_000) as f64 * 2.0)
                    }),
                    series(
                        "pg_replication_lag_seconds",
                        &[("pod", "ledger-db-1")],
                        |_| Some(2.5),
                    ),
                    series("pg_database_size_bytes", &[("pod", "ledger-db-0")], |_| {
                        Some(5.0e10)
                    }),
                    series("up", &[("pod", "ledger-db-0")], |_| Some(1.0)),
                    series("up", &[("pod", "ledger-db-1")], |_| Some(1.0)),
                ])
                .collect(),
                slos: vec!["ledger-query-latency"],
                analytics: vec![EngineRule {
                    policy: "ledger-db",
                    rule: "LedgerDbStorageExhaustion",
                    horizon: Some("3d"),
                    level: 5.0e10,
                }],
            },
            AppFeed {
                namespace: "core-infra",
                app: "settlement-queue",
                cluster: None,
                requests: false,
                counter: "",
                status_label: "",
                histogram: "",
                request_labels: vec![],
                own: vec![
                    series("settlement_messages_processed_total", &[], |t| {
                        Some((t % 10_000_000) as f64 * 50.0)
                    }),
                    series("settlement_messages_failed_total", &[], |t| {
                        Some(((t % 10_000_000) as f64 / 1000.0).floor())
                    }),
                    series(
                        "rabbitmq_global_messages_received_total",
                        &[("pod", "settlement-queue-0")],
                        |t| Some((t % 10_000_000) as f64 * 50.0),
                    ),
                    series(
                        "rabbitmq_queue_messages_ready",
                        &[("pod", "settlement-queue-0")],
                        |_| Some(1200.0),
                    ),
                    series("up", &[("pod", "settlement-queue-0")], |_| Some(1.0)),
                    series("up", &[("pod", "settlement-queue-1")], |_| Some(0.0)),
                ],
                slos: vec!["settlement-success"],
                analytics: vec![
                    EngineRule {
                        policy: "settlement-queue",
                        rule: "SettlementBacklogGrowing",
                        horizon: Some("2h"),
                        level: 1200.0,
                    },
                    EngineRule {
                        policy: "settlement-queue",
                        rule: "SettlementPublishAnomaly",
                        horizon: None,
                        level: 50.0,
                    },
                ],
            },
        ],
        other => panic!("no feed for example {other}"),
    }
}

/// The fed series as OpenMetrics text, one series after another in time order.
pub fn openmetrics(series: &[Series], times: &[i64]) -> String {
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
