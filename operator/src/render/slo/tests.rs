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
    let (severity, factor, long, short, spent) = match tier {
        "page-fast" => ("page", "14.4", "1h", "5m", "2"),
        "page-slow" => ("page", "6", "6h", "30m", "5"),
        "ticket-fast" => ("ticket", "3", "1d", "2h", "10"),
        _ => ("ticket", "1", "3d", "6h", "10"),
    };
    format!(
        r#"
          - exp_labels:
              namespace: shop
              app: checkout
              slo: checkout-availability
              severity: {severity}
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
