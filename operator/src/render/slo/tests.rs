//! Tests of the SLO renderer: snapshots of every SLI form, `promtool check rules`, and
//! `promtool test rules` proving that a 14.4× burn pages within minutes and a 0.5× burn never
//! alerts.

#![allow(clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use vigil_crds::Slo;

use super::super::alerts::tests::app;
use super::super::promtool_tests::{check_rules, rule_file_yaml, test_rules};
use super::*;

const AVAILABILITY: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: SLO
metadata: { name: checkout-availability, namespace: shop }
spec:
  appRef: { name: checkout }
  description: 99.9 % of checkout requests succeed
  objective: 99.9
  sli:
    availability: { matchers: 'route="/checkout"' }
  alerting: { page: [engineering], ticket: [support, engineering] }
"#;

const LATENCY: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: SLO
metadata: { name: checkout-latency, namespace: shop }
spec:
  appRef: { name: checkout }
  objective: 99
  window: 7d
  sli:
    latency: { thresholdSeconds: 0.25 }
"#;

const GOOD_TOTAL: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: SLO
metadata: { name: payouts, namespace: shop }
spec:
  appRef: { name: checkout }
  objective: 99.5
  sli:
    goodTotal:
      good: 'sum(rate(jobs_total{result="ok"}[{{.window}}]))'
      total: 'sum(rate(jobs_total[{{.window}}]))'
"#;

const ERROR_TOTAL: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: SLO
metadata: { name: ledger-writes, namespace: shop }
spec:
  appRef: { name: checkout }
  objective: 99.95
  window: 28d
  sli:
    errorTotal:
      errors: 'sum by (namespace, app) (rate(ledger_write_failures_total[{{.window}}]))'
      total: 'sum by (namespace, app) (rate(ledger_writes_total[{{.window}}]))'
  alerting: { page: [engineering, management], ticket: [] }
"#;

fn slo(yaml: &str) -> Slo {
    serde_yaml::from_str(yaml).expect("slo fixture")
}

/// The rule files of an SLO of each SLI form are reviewed and pinned.
#[test]
fn every_sli_form_snapshot() {
    for (name, yaml) in [
        ("availability", AVAILABILITY),
        ("latency_7d", LATENCY),
        ("good_total", GOOD_TOTAL),
        ("error_total_28d", ERROR_TOTAL),
        ("grouped_labels", GROUPED),
    ] {
        let file = slo_rules(&slo(yaml), &app());
        insta::with_settings!({ snapshot_path => "../snapshots" }, {
            insta::assert_snapshot!(format!("slo__{name}"), rule_file_yaml(&file));
        });
    }
}

/// Every SLI form renders rules the real Prometheus accepts.
#[test]
fn every_sli_form_passes_promtool_check() {
    for yaml in [AVAILABILITY, LATENCY, GOOD_TOTAL, ERROR_TOTAL] {
        check_rules(&slo_rules(&slo(yaml), &app()));
    }
}

/// For 30 days the windows are the SRE workbook's; for 7 days they shrink in proportion and
/// stay whole minutes, never shorter than 5m.
#[test]
fn burn_windows_scale_with_the_slo_window() {
    let names = |secs: f64| {
        sli_windows(secs)
            .into_iter()
            .map(duration)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(30.0 * 86_400.0),
        ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]
    );
    assert_eq!(
        names(7.0 * 86_400.0),
        ["5m", "7m", "14m", "28m", "85m", "335m", "1010m", "1w"]
    );
    let tiers = burn_tiers(7.0 * 86_400.0);
    assert_eq!(
        tiers.iter().map(|t| t.factor).collect::<Vec<_>>(),
        [14.4, 6.0, 3.0, 1.0]
    );
}

/// Input series of an availability SLO on `shop/checkout` for `minutes` minutes with
/// `errors_per_min` failures out of 1000 requests per minute, plus another namespace's app of
/// the same name failing every request.
fn traffic(minutes: u32, errors_per_min: f64) -> String {
    let ok = 1000.0 - errors_per_min;
    format!(
        r#"
      - series: 'http_requests_total{{namespace="shop", app="checkout", route="/checkout", code="200"}}'
        values: '0+{ok}x{minutes}'
      - series: 'http_requests_total{{namespace="shop", app="checkout", route="/checkout", code="500"}}'
        values: '0+{errors_per_min}x{minutes}'
      - series: 'http_requests_total{{namespace="other", app="checkout", route="/checkout", code="500"}}'
        values: '0+1000x{minutes}'"#
    )
}

/// The expected page/ticket alert of `tier` for `audience`, at burn rate `burn`.
fn burn_alert(tier: &str, audience: &str, burn: &str, remaining: &str) -> String {
    let (class, factor, long, short, spent) = match tier {
        "page-fast" => ("page", "14.4", "1h", "5m", "2"),
        "page-slow" => ("page", "6", "6h", "30m", "5"),
        "ticket-fast" => ("ticket", "3", "1d", "2h", "10"),
        _ => ("ticket", "1", "3d", "6h", "10"),
    };
    let severity = if class == "page" {
        "critical"
    } else {
        "warning"
    };
    format!(
        r#"
          - exp_labels:
              namespace: shop
              app: checkout
              slo: checkout-availability
              severity: {severity}
              vigil_slo_alert: {class}
              sloth_severity: {class}
              sloth_id: shop-checkout-checkout-availability
              sloth_service: checkout
              sloth_slo: checkout-availability
              audience: {audience}
              vigil_burn_tier: {tier}
            exp_annotations:
              summary: "SLO checkout-availability of shop/checkout is burning its error budget {factor}× or more faster than sustainable"
              description: "99.9 % of checkout requests succeed: the error budget is burning {burn}× faster than the objective allows over the last {long} (and still over the last {short}); {factor}× for {long} spends {spent} % of the 30d budget. Budget remaining: {remaining}."
              burn_rate: "{burn}"
              budget_remaining: "{remaining}"
              objective: 99.9 % over 30d"#,
    )
}

/// An error ratio of 14.4 × the error budget (1.44 % errors against a 99.9 % objective) pages
/// engineering within 5 minutes; being faster than every slower tier, it also satisfies them
/// (which is why the Alertmanager inhibits slower tiers). The other namespace's 100 % errors
/// never reach this SLO.
#[test]
fn fast_burn_pages_within_five_minutes() {
    let file = slo_rules(&slo(AVAILABILITY), &app());
    // Over the whole 30d window the SLI only has these minutes of history, all at 1.44 % errors.
    let remaining = "-1340%";
    let alerts = [
        burn_alert("page-fast", "engineering", "14.4", remaining),
        burn_alert("page-slow", "engineering", "14.4", remaining),
        burn_alert("ticket-fast", "engineering", "14.4", remaining),
        burn_alert("ticket-fast", "support", "14.4", remaining),
        burn_alert("ticket-slow", "engineering", "14.4", remaining),
        burn_alert("ticket-slow", "support", "14.4", remaining),
    ]
    .concat();
    test_rules(
        &[&file],
        &format!(
            r#"evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:{series}
    alert_rule_test:
      - eval_time: 5m
        alertname: SLOErrorBudgetBurn
        exp_alerts:{alerts}
"#,
            series = traffic(10, 14.4)
        ),
    );
}

/// A 0.5× burn spends only half the budget over the window: no tier ever fires, at any point of
/// three days of steady traffic.
#[test]
fn slow_burn_below_budget_never_alerts() {
    let file = slo_rules(&slo(AVAILABILITY), &app());
    let checks: String = ["5m", "1h", "6h", "1d", "2d", "3d"]
        .iter()
        .map(|t| format!("\n      - eval_time: {t}\n        alertname: SLOErrorBudgetBurn\n        exp_alerts: []"))
        .collect();
    test_rules(
        &[&file],
        &format!(
            r#"evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:{series}
    alert_rule_test:{checks}
"#,
            series = traffic(3 * 24 * 60, 0.5)
        ),
    );
}

/// The labels every SLO alert of `checkout-availability` carries besides its class.
fn ticket_labels(audience: &str) -> String {
    format!(
        r#"
          - exp_labels:
              namespace: shop
              app: checkout
              slo: checkout-availability
              severity: warning
              vigil_slo_alert: ticket
              sloth_severity: ticket
              audience: {audience}
            exp_annotations:
              summary: "SLO checkout-availability of shop/checkout has no SLI data"
              description: "99.9 % of checkout requests succeed: no series of the SLI's total events arrived for 10m; the exporter or the scrape may be down, and the objective cannot be measured."
              objective: 99.9 % over 30d"#
    )
}

/// A dead exporter makes the SLI's series vanish, which would read as 100 % good: once no
/// sample arrived for `absentFor` (10m), `SLOMetricsAbsent` tickets the ticket audiences. While
/// samples still arrive it is silent, and zero traffic (a rate of 0) is not an absence.
#[test]
fn vanished_sli_metrics_ticket() {
    let file = slo_rules(&slo(AVAILABILITY), &app());
    let alerts = [ticket_labels("engineering"), ticket_labels("support")].concat();
    test_rules(
        &[&file],
        &format!(
            r#"evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'http_requests_total{{namespace="shop", app="checkout", route="/checkout", code="200"}}'
        values: '0+1000x10'
    alert_rule_test:
      - eval_time: 15m
        alertname: SLOMetricsAbsent
        exp_alerts: []
      - eval_time: 25m
        alertname: SLOMetricsAbsent
        exp_alerts:{alerts}
  - interval: 1m
    input_series:
      - series: 'http_requests_total{{namespace="shop", app="checkout", route="/checkout", code="200"}}'
        values: '5+0x40'
    alert_rule_test:
      - eval_time: 30m
        alertname: SLOMetricsAbsent
        exp_alerts: []
"#
        ),
    );
}

/// Sloth's metadata series carry the values and labels Sloth's Grafana dashboards read:
/// objective 0.999, a 30-day period, the info series, and a remaining budget of half at a
/// steady 0.5× burn; the 30d ratio is the average of the 5m recording.
#[test]
fn sloth_metadata_series() {
    let file = slo_rules(&slo(AVAILABILITY), &app());
    let sloth = "sloth_id=\"shop-checkout-checkout-availability\", sloth_service=\"checkout\", sloth_slo=\"checkout-availability\"";
    let base =
        format!("namespace=\"shop\", app=\"checkout\", slo=\"checkout-availability\", {sloth}");
    test_rules(
        &[&file],
        &format!(
            r#"evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:{series}
    promql_expr_test:
      - expr: slo:objective:ratio
        eval_time: 10m
        exp_samples:
          - labels: 'slo:objective:ratio{{{base}}}'
            value: 0.999
      - expr: slo:time_period:days
        eval_time: 10m
        exp_samples:
          - labels: 'slo:time_period:days{{{base}}}'
            value: 30
      - expr: sloth_slo_info
        eval_time: 10m
        exp_samples:
          - labels: 'sloth_slo_info{{{base}, sloth_objective="99.9", sloth_mode="vigil", sloth_spec="vigil.dev/v1alpha1"}}'
            value: 1
      - expr: vigil_slo_info
        eval_time: 10m
        exp_samples:
          - labels: 'vigil_slo_info{{{base}, objective="99.9", window="30d"}}'
            value: 1
      - expr: round(slo:period_error_budget_remaining:ratio, 0.001)
        eval_time: 1h
        exp_samples:
          - labels: '{{{base}}}'
            value: 0.5
      - expr: round(slo:period_burn_rate:ratio, 0.001)
        eval_time: 1h
        exp_samples:
          - labels: '{{{base}}}'
            value: 0.5
      - expr: round(slo:current_burn_rate:ratio, 0.001)
        eval_time: 1h
        exp_samples:
          - labels: '{{{base}}}'
            value: 0.5
      - expr: round(slo:sli_error:ratio_rate30d, 0.0000001)
        eval_time: 1h
        exp_samples:
          - labels: '{{{base}}}'
            value: 0.0005
"#,
            series = traffic(120, 0.5)
        ),
    );
}

const GROUPED: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: SLO
metadata: { name: routes, namespace: shop }
spec:
  appRef: { name: checkout }
  objective: 99.9
  labels: { team: payments, tier: "1" }
  groupBy: [route]
  sli:
    availability: {}
  alerting: { page: [engineering], ticket: [] }
"#;

/// With `groupBy: [route]` each route has its own error ratio and burn rate, and only the
/// failing route pages; the SLO's `labels` are on every series and alert.
#[test]
fn grouped_objective_alerts_per_route() {
    let file = slo_rules(&slo(GROUPED), &app());
    check_rules(&file);
    let labels = r#"namespace="shop", app="checkout", slo="routes", sloth_id="shop-checkout-routes", sloth_service="checkout", sloth_slo="routes", team="payments", tier="1""#;
    test_rules(
        &[&file],
        &format!(
            r#"evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'http_requests_total{{namespace="shop", app="checkout", route="/checkout", code="200"}}'
        values: '0+985.6x10'
      - series: 'http_requests_total{{namespace="shop", app="checkout", route="/checkout", code="500"}}'
        values: '0+14.4x10'
      - series: 'http_requests_total{{namespace="shop", app="checkout", route="/search", code="200"}}'
        values: '0+1000x10'
    promql_expr_test:
      - expr: round(slo:current_burn_rate:ratio, 0.001)
        eval_time: 5m
        exp_samples:
          - labels: '{{{labels}, route="/checkout"}}'
            value: 14.4
          - labels: '{{{labels}, route="/search"}}'
            value: 0
    alert_rule_test:
      - eval_time: 5m
        alertname: SLOErrorBudgetBurn
        exp_alerts:
          - exp_labels:
              namespace: shop
              app: checkout
              slo: routes
              route: /checkout
              team: payments
              tier: "1"
              severity: critical
              vigil_slo_alert: page
              sloth_severity: page
              sloth_id: shop-checkout-routes
              sloth_service: checkout
              sloth_slo: routes
              audience: engineering
              vigil_burn_tier: page-fast
            exp_annotations:
              summary: "SLO routes of shop/checkout is burning its error budget 14.4× or more faster than sustainable"
              description: "objective 99.9 % over 30d: the error budget is burning 14.4× faster than the objective allows over the last 1h (and still over the last 5m); 14.4× for 1h spends 2 % of the 30d budget. Budget remaining: -1340%."
              burn_rate: "14.4"
              budget_remaining: "-1340%"
              objective: 99.9 % over 30d
          - exp_labels:
              namespace: shop
              app: checkout
              slo: routes
              route: /checkout
              team: payments
              tier: "1"
              severity: critical
              vigil_slo_alert: page
              sloth_severity: page
              sloth_id: shop-checkout-routes
              sloth_service: checkout
              sloth_slo: routes
              audience: engineering
              vigil_burn_tier: page-slow
            exp_annotations:
              summary: "SLO routes of shop/checkout is burning its error budget 6× or more faster than sustainable"
              description: "objective 99.9 % over 30d: the error budget is burning 14.4× faster than the objective allows over the last 6h (and still over the last 30m); 6× for 6h spends 5 % of the 30d budget. Budget remaining: -1340%."
              burn_rate: "14.4"
              budget_remaining: "-1340%"
              objective: 99.9 % over 30d
"#
        ),
    );
}

/// The severity of each class is configurable; the class itself stays in `vigil_slo_alert`.
#[test]
fn severities_are_configurable() {
    let severities = SloSeverities {
        page: "P1".into(),
        ticket: "P3".into(),
    };
    let file = slo_rules_with(&slo(AVAILABILITY), &app(), &severities);
    let alerts: Vec<&AlertingRule> = file.groups[0]
        .rules
        .iter()
        .filter_map(|r| match r {
            Rule::Alerting(a) => Some(a),
            Rule::Recording(_) => None,
        })
        .collect();
    assert!(!alerts.is_empty());
    for alert in alerts {
        let class = &alert.labels[SLO_ALERT_LABEL];
        let expected = if class == "page" { "P1" } else { "P3" };
        assert_eq!(alert.labels["severity"], expected, "{alert:?}");
    }
}

/// The 30-day (and every ≥ 1d) ratio is the time average of the 5m recording, never a rate over
/// the raw series for the whole window.
#[test]
fn long_windows_average_the_short_recording() {
    let file = slo_rules(&slo(AVAILABILITY), &app());
    for rule in &file.groups[0].rules {
        let Rule::Recording(r) = rule else { continue };
        for long in ["1d", "3d", "30d"] {
            if r.record == format!("slo:sli_error:ratio_rate{long}") {
                assert!(
                    r.expr
                        .starts_with("avg_over_time(slo:sli_error:ratio_rate5m{")
                        && !r.expr.contains("http_requests_total"),
                    "{}: {}",
                    r.record,
                    r.expr
                );
            }
        }
    }
}

/// A window longer than the target Prometheus keeps data is warned about; a shorter one, or an
/// unknown retention, is not.
#[test]
fn retention_shorter_than_the_window_warns() {
    let objective = slo(AVAILABILITY);
    let days = |d: u64| Some(std::time::Duration::from_secs(d * 86_400));
    let warning = retention_warning(&objective, days(15)).expect("15d < 30d warns");
    assert!(
        warning.contains("30d") && warning.contains("15d"),
        "{warning}"
    );
    assert_eq!(retention_warning(&objective, days(30)), None);
    assert_eq!(retention_warning(&objective, None), None);
}

/// Minutes without traffic (0 / 0 in the 5m window) are left out of the 5m recording rather
/// than recorded as NaN, which would make every average over them (the 1d, 3d and 30d ratios,
/// the budget) NaN for the whole window: after 30 quiet minutes and 30 minutes at 0.05 %
/// errors, the 30d ratio is 0.05 %.
#[test]
fn quiet_minutes_do_not_poison_the_long_windows() {
    let file = slo_rules(&slo(AVAILABILITY), &app());
    let sloth = "sloth_id=\"shop-checkout-checkout-availability\", sloth_service=\"checkout\", sloth_slo=\"checkout-availability\"";
    let base =
        format!("namespace=\"shop\", app=\"checkout\", slo=\"checkout-availability\", {sloth}");
    test_rules(
        &[&file],
        &format!(
            r#"evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'http_requests_total{{namespace="shop", app="checkout", route="/checkout", code="200"}}'
        values: '0+0x30 0+999.5x30'
      - series: 'http_requests_total{{namespace="shop", app="checkout", route="/checkout", code="500"}}'
        values: '0+0x30 0+0.5x30'
    promql_expr_test:
      - expr: count(slo:sli_error:ratio_rate5m)
        eval_time: 20m
        exp_samples: []
      - expr: round(slo:sli_error:ratio_rate30d, 0.0000001)
        eval_time: 60m
        exp_samples:
          - labels: '{{{base}}}'
            value: 0.0005
"#
        ),
    );
}

/// Regression: the `availability` and `latency` SLIs defaulted to `http_requests_total{code}`
/// and `http_request_duration_seconds` whatever the app exposed. Without names of their own
/// they read the app's declared request metrics (here the OpenTelemetry conventions).
#[test]
fn request_slis_read_the_apps_request_metrics() {
    let otel: MonitoredApp = serde_yaml::from_str(&format!(
        "{}  metrics: {{ port: 8080, requests: {{ preset: opentelemetry-http }} }}\n",
        super::super::alerts::tests::APP
    ))
    .expect("app");
    for (fixture, wanted) in [
        (
            AVAILABILITY,
            r#"http_server_request_duration_seconds_count{namespace="shop", app="checkout", route="/checkout", http_response_status_code=~"5.."}"#,
        ),
        (LATENCY, "http_server_request_duration_seconds_bucket{"),
    ] {
        let file = slo_rules(&slo(fixture), &otel);
        let yaml = rule_file_yaml(&file);
        assert!(yaml.contains(wanted), "{wanted} not in:\n{yaml}");
        assert!(!yaml.contains("http_requests_total") && !yaml.contains("http_request_duration"));
        check_rules(&file);
    }
}

/// The labels of `SLOErrorBudgetExhaustionForecast` on route `route` of the grouped objective.
fn forecast_alert(route: &str, description: &str, probability: &str, exhaustion: &str) -> String {
    format!(
        r#"
          - exp_labels:
              namespace: shop
              app: checkout
              slo: routes
              route: {route}
              team: payments
              tier: "1"
              severity: warning
              vigil_slo_alert: ticket
              sloth_severity: ticket
              sloth_id: shop-checkout-routes
              sloth_service: checkout
              sloth_slo: routes
              audience: engineering
            exp_annotations:
              summary: "SLO routes of shop/checkout is forecast to run out of error budget"
              description: "{description}"
              probability: "{probability}"
              exhaustion: "{exhaustion}"
              budget_remaining: "{remaining}"
              objective: 99.9 % over 30d"#,
        remaining = if route == "/checkout" {
            "50%"
        } else {
            "unknown"
        },
    )
}

/// The analytics engine's budget forecast tickets a group whose budget it gives at least even
/// odds of running out within the horizon (a week for 30 days), saying when and how likely,
/// with the group's own remaining budget; a group at 10 % stays silent, and one whose mean
/// does not run out within the horizon says so.
#[test]
fn budget_forecast_tickets_likely_exhaustion() {
    let file = slo_rules(&slo(GROUPED), &app());
    check_rules(&file);
    let labels = r#"namespace="shop", app="checkout", slo="routes", sloth_id="shop-checkout-routes", sloth_service="checkout", sloth_slo="routes", team="payments", tier="1""#;
    let checkout = forecast_alert(
        "/checkout",
        "objective 99.9 % over 30d: the error budget of routes for route=/checkout is forecast to run out in 3d 4h 0m 0s (probability 72% within 1w), by the analytics engine's forecast of the SLI's error ratio over the rolling 30d. Budget remaining: 50%.",
        "72%",
        "in 3d 4h 0m 0s",
    );
    let cart = forecast_alert(
        "/cart",
        "objective 99.9 % over 30d: the error budget of routes for route=/cart is forecast to run out within 1w (probability 60% within 1w), by the analytics engine's forecast of the SLI's error ratio over the rolling 30d. Budget remaining: unknown.",
        "60%",
        "within 1w",
    );
    test_rules(
        &[&file],
        &format!(
            r#"evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'http_requests_total{{namespace="shop", app="checkout", route="/checkout", code="200"}}'
        values: '0+999.5x20'
      - series: 'http_requests_total{{namespace="shop", app="checkout", route="/checkout", code="500"}}'
        values: '0+0.5x20'
      - series: 'vigil:slo:budget_exhaustion_probability{{{labels}, route="/checkout"}}'
        values: '0.3x5 0.72x15'
      - series: 'vigil:slo:budget_exhaustion_seconds{{{labels}, route="/checkout"}}'
        values: '273600x20'
      - series: 'vigil:slo:budget_exhaustion_probability{{{labels}, route="/search"}}'
        values: '0.1x20'
      - series: 'vigil:slo:budget_exhaustion_probability{{{labels}, route="/cart"}}'
        values: '0.6x20'
    alert_rule_test:
      - eval_time: 4m
        alertname: SLOErrorBudgetExhaustionForecast
        exp_alerts:{cart}
      - eval_time: 10m
        alertname: SLOErrorBudgetExhaustionForecast
        exp_alerts:{cart}{checkout}
"#
        ),
    );
}

/// The budget horizon is a quarter of the window in whole hours, between an hour and a week.
#[test]
fn budget_forecast_horizon_is_a_quarter_window() {
    assert_eq!(budget_forecast_horizon(30.0 * 86_400.0), 7.0 * 86_400.0);
    assert_eq!(budget_forecast_horizon(7.0 * 86_400.0), 42.0 * 3_600.0);
    assert_eq!(budget_forecast_horizon(86_400.0), 6.0 * 3_600.0);
    assert_eq!(budget_forecast_horizon(600.0), 3_600.0);
    assert_eq!(budget_forecast_horizon(5.0 * 3_600.0 + 1.0), 3_600.0);
}
