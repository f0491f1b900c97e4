//! `promtool test rules` on the anomaly, forecast and missing-engine alerts, fed the series
//! the analytics engine publishes (its metric contract: `vigil:baseline:*`,
//! `vigil:anomaly:score`, `vigil:forecast:*` labelled with `namespace`, `app`, `vigil_policy`,
//! `vigil_rule` and the query's own labels).

#![allow(clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use crate::render::alerts::alert_rules;
use crate::render::alerts::tests::{app, policy};
use crate::render::promtool_tests::{check_rules, test_rules};

/// One anomaly rule watching upwards with medium sensitivity (score above 0.58) and one
/// forecast rule with a 4h horizon and a capacity of 1000, both to engineering, whose context
/// list adds no phrase of its own.
const POLICY: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: { name: analytics, namespace: shop }
spec:
  appRef: { name: checkout }
  rules:
    - name: CheckoutTrafficAnomaly
      anomaly:
        query: sum by (route) (rate(http_requests_total[5m]))
        seasonality: dailyAndWeekly
        knownEvents:
          - { name: black-friday, start: 2026-11-27 }
    - name: CheckoutCapacity
      for: 1m
      forecast:
        query: sum(rate(http_requests_total[5m]))
        horizon: 240m
        capacity: 1000
        seasonality: daily
        lookback: 2w
  audiences:
    - audience: engineering
      context: [runbook]
      receivers:
        - { name: oncall, webhook: { urlSecretRef: { name: hook, key: url } } }
"#;

/// The engine's anomaly series for `route` of `namespace`, values one a minute.
fn anomaly_series(namespace: &str, route: &str, score: &str, actual: &str) -> String {
    let labels = format!(
        "namespace=\"{namespace}\", app=\"checkout\", vigil_policy=\"analytics\", vigil_rule=\"CheckoutTrafficAnomaly\", route=\"{route}\""
    );
    format!(
        r#"
      - series: 'vigil:anomaly:score{{{labels}}}'
        values: '{score}'
      - series: 'vigil:baseline:actual{{{labels}}}'
        values: '{actual}'
      - series: 'vigil:baseline:expected{{{labels}}}'
        values: '120x20'
      - series: 'vigil:baseline:lower{{{labels}}}'
        values: '90x20'
      - series: 'vigil:baseline:upper{{{labels}}}'
        values: '150x20'
      - series: 'vigil:baseline:coverage{{{labels}}}'
        values: '0.81x20'"#
    )
}

fn anomaly_test(series: &str, fires: bool) -> String {
    let alert = if fires {
        r#"
          - exp_labels:
              namespace: shop
              app: checkout
              route: /pay
              severity: warning
              audience: engineering
              vigil_policy: analytics
              vigil_rule: CheckoutTrafficAnomaly
            exp_annotations:
              summary: CheckoutTrafficAnomaly in shop/checkout left its learned baseline
              description: "CheckoutTrafficAnomaly is above its learned 80 % band with anomaly score 0.95 (alerts above 0.58)."
              baseline: "now 300, expected 120 ± 30 at this hour (80 % band, held 81% of the time last week), learned with daily and weekly seasonality.""#
    } else {
        " []"
    };
    format!(
        r#"evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:{series}
    alert_rule_test:
      - eval_time: 4m
        alertname: CheckoutTrafficAnomaly
        exp_alerts: []
      - eval_time: 10m
        alertname: CheckoutTrafficAnomaly
        exp_alerts:{alert}
"#
    )
}

/// A score above the threshold with the value above the band fires after `for` (5m), with the
/// expected value, the band's half-width and its measured coverage of this series (not of the
/// sibling route's, which is quiet and has its own band), in this namespace only.
#[test]
fn anomaly_fires_when_the_score_is_high_and_the_value_above_the_band() {
    let file = alert_rules(&policy(POLICY), &app());
    let series = format!(
        "{}{}{}",
        anomaly_series("shop", "/pay", "0.95x20", "300x20"),
        anomaly_series("shop", "/home", "0.1x20", "100x20"),
        anomaly_series("other", "/pay", "0.99x20", "900x20"),
    );
    test_rules(&[&file], &anomaly_test(&series, true));
}

/// It does not fire for a high score while the value is inside the band or below it (the
/// rule watches upwards), nor for a value above the band whose score is under the threshold.
#[test]
fn anomaly_stays_quiet_inside_the_band_below_it_or_with_a_low_score() {
    let file = alert_rules(&policy(POLICY), &app());
    for (score, actual) in [
        ("0.95x20", "140x20"),
        ("0.95x20", "10x20"),
        ("0.5x20", "300x20"),
    ] {
        let series = anomaly_series("shop", "/pay", score, actual);
        test_rules(&[&file], &anomaly_test(&series, false));
    }
}

/// Direction `down` fires below the band and `both` on either side.
#[test]
fn anomaly_direction_picks_the_side_of_the_band() {
    for (direction, actual, fires) in [
        ("down", "10x20", true),
        ("down", "300x20", false),
        ("both", "10x20", true),
        ("both", "300x20", true),
    ] {
        let yaml = POLICY.replace(
            "seasonality: dailyAndWeekly",
            &format!("seasonality: dailyAndWeekly\n        direction: {direction}"),
        );
        let file = alert_rules(&policy(&yaml), &app());
        let series = anomaly_series("shop", "/pay", "0.95x20", actual);
        let test = anomaly_test(&series, fires)
            .replace(
                "is above its",
                &format!(
                    "is {} its",
                    if direction == "down" {
                        "below"
                    } else {
                        "outside"
                    }
                ),
            )
            .replace(
                "now 300",
                &format!("now {}", actual.trim_end_matches("x20")),
            );
        test_rules(&[&file], &test);
    }
}

/// The engine's forecast series of the capacity rule, with `upper` at the rule's horizon
/// (written `4h` by the engine, `240m` in the rule) and above capacity at `1d` only.
fn forecast_series(upper_4h: &str, crossing: bool) -> String {
    let labels = "namespace=\"shop\", app=\"checkout\", vigil_policy=\"analytics\", vigil_rule=\"CheckoutCapacity\"";
    let mut out = String::new();
    for (horizon, mean, lower, upper) in [
        ("1h", "700", "650", "760"),
        ("4h", "850", "700", upper_4h),
        ("1d", "1500", "1000", "2000"),
    ] {
        for (metric, value) in [
            ("mean", mean),
            ("lower", lower),
            ("upper", upper),
            ("coverage", "0.78"),
        ] {
            out.push_str(&format!(
                "\n      - series: 'vigil:forecast:{metric}{{{labels}, horizon=\"{horizon}\"}}'\n        values: '{value}x20'"
            ));
        }
    }
    out.push_str(&format!(
        "\n      - series: 'vigil:forecast:capacity_probability{{{labels}}}'\n        values: '0.25x20'"
    ));
    if crossing {
        out.push_str(&format!(
            "\n      - series: 'vigil:forecast:capacity_crossing_seconds{{{labels}}}'\n        values: '9000x20'"
        ));
    }
    out
}

fn forecast_test(series: &str, alert: &str) -> String {
    format!(
        r#"evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:{series}
    alert_rule_test:
      - eval_time: 5m
        alertname: CheckoutCapacity
        exp_alerts:{alert}
"#
    )
}

/// The upper edge of the band at the rule's horizon above capacity fires after its `for` (1m)
/// and says the forecast, its band and coverage, when the capacity is crossed and with which
/// probability.
#[test]
fn forecast_fires_when_the_band_at_the_horizon_crosses_capacity() {
    let file = alert_rules(&policy(POLICY), &app());
    let alert = r#"
          - exp_labels:
              namespace: shop
              app: checkout
              horizon: 4h
              severity: warning
              audience: engineering
              vigil_policy: analytics
              vigil_rule: CheckoutCapacity
            exp_annotations:
              summary: shop/checkout is forecast to exceed its capacity of 1000 within 240m
              description: "The forecast's 80 % band reaches 1.1k in 240m (capacity 1000)."
              forecast: "expected 850 in 240m (80 % band from 700 to 1.1k), held 78% of the time on past forecasts; capacity 1000 crossed in 2h 30m 0s, probability 25% of exceeding it within 240m.""#;
    test_rules(
        &[&file],
        &forecast_test(&forecast_series("1100", true), alert),
    );
}

/// Below capacity at the rule's horizon it stays quiet, even though the `1d` forecast (not the
/// rule's horizon) is above it.
#[test]
fn forecast_stays_quiet_below_capacity_at_its_horizon() {
    let file = alert_rules(&policy(POLICY), &app());
    test_rules(
        &[&file],
        &forecast_test(&forecast_series("990", false), " []"),
    );
}

fn missing_test(series: &str, at_35m: &str) -> String {
    format!(
        r#"evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:{series}
    alert_rule_test:
      - eval_time: 20m
        alertname: VigilAnalyticsMissing
        exp_alerts: []
      - eval_time: 35m
        alertname: VigilAnalyticsMissing
        exp_alerts:{at_35m}
"#
    )
}

/// With no engine series for either rule, one `VigilAnalyticsMissing` per rule fires after 30
/// minutes, naming the rule; with the series published, none fires.
#[test]
fn missing_engine_series_alert_after_thirty_minutes() {
    let file = alert_rules(&policy(POLICY), &app());
    let missing = |rule: &str, extra: &str| {
        format!(
            r#"
          - exp_labels:
              namespace: shop
              app: checkout{extra}
              severity: warning
              audience: engineering
              vigil_policy: analytics
              vigil_rule: {rule}
            exp_annotations:
              summary: "No analytics for {rule} in shop/checkout: the engine publishes nothing for it"
              description: "The analytics engine has published no series for rule {rule} of policy analytics for 30m: its anomaly or forecast alert cannot fire. Check that the chart runs it (analytics.enabled), that it reaches Prometheus, and that the rule's query returns data.""#
        )
    };
    let unrelated = r#"
      - series: 'up{namespace="shop", app="checkout"}'
        values: '1x40'"#;
    let both = format!(
        "{}{}",
        missing("CheckoutCapacity", "\n              horizon: 4h"),
        missing("CheckoutTrafficAnomaly", ""),
    );
    test_rules(&[&file], &missing_test(unrelated, &both));
    let published = format!(
        "{}{}",
        anomaly_series("shop", "/pay", "0.1x40", "100x40"),
        forecast_series("990", false)
    )
    .replace("x20", "x40");
    test_rules(&[&file], &missing_test(&published, " []"));
}

/// The rendered rules pass `promtool check rules`.
#[test]
fn analytics_rules_pass_promtool_check() {
    check_rules(&alert_rules(&policy(POLICY), &app()));
}

/// An escalation copy of an anomaly alert (built from `ALERTS`, which also carries
/// `alertname`) still says the value, band and coverage of its own series.
#[test]
fn escalated_anomaly_keeps_its_baseline_context() {
    let yaml = format!("{POLICY}  escalation:\n    - {{ after: 5m, receiver: oncall }}\n");
    let file = alert_rules(&policy(&yaml), &app());
    let series = format!(
        "{}{}",
        anomaly_series("shop", "/pay", "0.95x40", "300x40"),
        anomaly_series("shop", "/home", "0.1x40", "100x40"),
    );
    let test = format!(
        r#"evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:{series}
    alert_rule_test:
      - eval_time: 12m
        alertname: CheckoutTrafficAnomaly
        exp_alerts:
          - exp_labels:
              namespace: shop
              app: checkout
              route: /pay
              severity: warning
              audience: engineering
              vigil_policy: analytics
              vigil_rule: CheckoutTrafficAnomaly
            exp_annotations:
              summary: CheckoutTrafficAnomaly in shop/checkout left its learned baseline
              description: "CheckoutTrafficAnomaly is above its learned 80 % band with anomaly score 0.95 (alerts above 0.58)."
              baseline: "now 300, expected 120 ± 30 at this hour (80 % band, held 81% of the time last week), learned with daily and weekly seasonality."
          - exp_labels:
              namespace: shop
              app: checkout
              route: /pay
              severity: warning
              audience: engineering
              vigil_policy: analytics
              vigil_rule: CheckoutTrafficAnomaly
              escalation_level: "1"
              vigil_escalation_receiver: oncall
            exp_annotations:
              summary: CheckoutTrafficAnomaly in shop/checkout left its learned baseline
              description: "CheckoutTrafficAnomaly is above its learned 80 % band with anomaly score 1.00 (alerts above 0.58)."
              baseline: "now 300, expected 120 ± 30 at this hour (80 % band, held 81% of the time last week), learned with daily and weekly seasonality."
              escalation: "Not acknowledged 5m after firing: escalation level 1 to oncall."
"#
    );
    test_rules(&[&file], &test);
}

/// The horizon label is the rule's horizon in its largest exact unit, however it was written,
/// so the alert reads the series the engine labels `4h` or `1d`.
#[test]
fn horizon_label_is_the_largest_exact_unit() {
    let label =
        |text: &str| super::horizon_label(&vigil_crds::Duration::parse(text).expect("duration"));
    assert_eq!(label("240m"), "4h");
    assert_eq!(label("24h"), "1d");
    assert_eq!(label("90m"), "90m");
    assert_eq!(label("1h30m"), "90m");
    assert_eq!(label("6h"), "6h");
}
