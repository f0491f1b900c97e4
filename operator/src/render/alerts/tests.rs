//! Tests of the alert-rule renderer: snapshots, `promtool check rules` and `promtool test
//! rules` on the rendered files.

#![allow(clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use vigil_crds::{AlertPolicy, MonitoredApp};

use super::super::promtool_tests::{check_rules, rule_file_yaml, test_rules};
use super::*;

pub(crate) const APP: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: { name: checkout, namespace: shop }
spec:
  selector: { matchLabels: { app: checkout } }
  clientType: banking
"#;

/// One rule of every kind, three audiences and two escalation steps.
pub(crate) const POLICY: &str = r##"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: { name: checkout-alerts, namespace: shop }
spec:
  appRef: { name: checkout }
  rules:
    - name: CheckoutCrashSpike
      severity: critical
      runbookUrl: https://runbooks.example.com/checkout/crash
      crashRate: { threshold: 0, increaseFactor: 3, window: 15m }
    - name: CheckoutErrors
      audiences: [support, engineering]
      errorRate: { thresholdPercent: 5 }
    - name: CheckoutSlow
      latency: { quantile: 0.99, thresholdSeconds: 0.5 }
    - name: CheckoutDown
      audiences: [engineering]
      targetDown: { minDownPercent: 50 }
    - name: CheckoutErrorAnomaly
      audiences: [engineering]
      anomaly:
        query: sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))
        seasonality: daily
        direction: both
    - name: CheckoutDiskFull
      audiences: [management]
      forecast:
        query: max(disk_used_bytes)
        horizon: 4h
        capacity: 100e9
    - name: CheckoutQueueStuck
      audiences: [engineering]
      for: 10m
      promql: { expr: 'sum by (queue) (queue_depth{namespace="other"}) > 1000 and on() vector(1)' }
  audiences:
    - audience: engineering
      receivers:
        - { name: team-slack, slack: { channel: "#checkout", apiUrlSecretRef: { name: slack, key: url } } }
        - { name: oncall, pagerDuty: { routingKeySecretRef: { name: pd, key: key } } }
    - audience: support
      receivers:
        - { name: support-mail, email: { to: support@example.com } }
    - audience: management
      context: [trend]
      receivers:
        - { name: mgmt-mail, email: { to: cto@example.com } }
  escalation:
    - { after: 10m, receiver: oncall }
    - { after: 30m, receiver: mgmt-mail }
"##;

pub(crate) fn app() -> MonitoredApp {
    serde_yaml::from_str(APP).expect("app fixture")
}

pub(crate) fn policy(yaml: &str) -> AlertPolicy {
    serde_yaml::from_str(yaml).expect("policy fixture")
}

/// The rendered rule file of the representative policy is reviewed and pinned.
#[test]
fn representative_policy_snapshot() {
    let file = alert_rules(&policy(POLICY), &app());
    insta::with_settings!({ snapshot_path => "../snapshots" }, {
        insta::assert_snapshot!("alerts__representative_policy", rule_file_yaml(&file));
    });
}

/// Every rendered expression and template is valid for the real Prometheus.
#[test]
fn representative_policy_passes_promtool_check() {
    check_rules(&alert_rules(&policy(POLICY), &app()));
}

/// A policy with one crash rule whose engineering alert carries every context field.
const CRASH_POLICY: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: { name: crashes, namespace: shop }
spec:
  appRef: { name: checkout }
  rules:
    - name: CheckoutCrash
      severity: critical
      crashRate: { window: 15m }
  audiences:
    - audience: engineering
      context: [trend, version, release, usersAffected, fingerprint]
      receivers:
        - { name: oncall, webhook: { urlSecretRef: { name: hook, key: url } } }
"#;

/// Series shared by the crash tests: release info and affected users for `shop/checkout`, and
/// a noisy tenant `other/checkout` (same app name, other namespace) crashing at the same time.
const CRASH_CONTEXT_SERIES: &str = r#"
      - series: 'vigil_app_release_info{namespace="shop", app="checkout", version="17.2", revision="abc123"}'
        values: '1x40'
      - series: 'vigil_app_release_timestamp_seconds{namespace="shop", app="checkout", version="17.2", revision="abc123"}'
        values: '600x40'
      - series: 'vigil_app_release_timestamp_seconds{namespace="other", app="checkout", version="9.9", revision="zzz999"}'
        values: '1200x40'
      - series: 'vigil_crashes_total{namespace="other", app="checkout", version="17.2", fingerprint="ffff", type="panic", language="go"}'
        values: '0x20 7x20'
"#;

/// The users-affected registers two pods of `namespace` export (`vigil_crash_users_register`,
/// 64 per pod): the pods' registers merged give 32 registers at 1 and 32 empty, whose
/// HyperLogLog estimate (linear counting, 64·ln 2) is 44 users. The other namespace's pod has
/// every register at 9 (thousands of users), which must not leak into ours.
fn user_registers() -> String {
    let mut out = String::new();
    for register in 0..64 {
        for (pod, value) in [
            ("a", register % 2),
            ("b", u32::from(register < 32 && register % 2 == 1)),
        ] {
            out.push_str(&format!(
                "\n      - series: 'vigil_crash_users_register{{namespace=\"shop\", app=\"checkout\", version=\"17.2\", pod=\"{pod}\", register=\"{register}\"}}'\n        values: '{value}x40'"
            ));
        }
        out.push_str(&format!(
            "\n      - series: 'vigil_crash_users_register{{namespace=\"other\", app=\"checkout\", version=\"17.2\", pod=\"x\", register=\"{register}\"}}'\n        values: '9x40'"
        ));
    }
    out.push('\n');
    out
}

fn crash_test(shop_series: &str, crash_at_min: u32, description: &str) -> String {
    let users = user_registers();
    let before = crash_at_min - 1;
    let within = crash_at_min + 1;
    format!(
        r#"evaluation_interval: 15s
tests:
  - interval: 1m
    input_series:{CRASH_CONTEXT_SERIES}{users}      - series: 'vigil_crashes_total{{namespace="shop", app="checkout", version="17.2", fingerprint="a1b2", type="NullPointerException", language="java", frame="com.shop.Cart.total"}}'
        values: '{shop_series}'
    alert_rule_test:
      - eval_time: {before}m
        alertname: CheckoutCrash
        exp_alerts: []
      - eval_time: {within}m
        alertname: CheckoutCrash
        exp_alerts:
          - exp_labels:
              namespace: shop
              app: checkout
              version: "17.2"
              severity: critical
              audience: engineering
              vigil_policy: crashes
              vigil_rule: CheckoutCrash
              fingerprint: a1b2
              type: NullPointerException
              frame: com.shop.Cart.total
            exp_annotations:
              summary: Crash NullPointerException in shop/checkout version 17.2
              description: "{description}"
              trend: "new: not seen in the previous 15m"
              version: version 17.2
              release: started after deploy abc123 (1970-01-01 00:10:00 +0000 UTC)
              users_affected: 44 users affected in the last hour
              fingerprint: "fingerprint a1b2 (NullPointerException at com.shop.Cart.total)"
"#,
        description = description.replace('"', "\\\"")
    )
}

/// The first crash of a fingerprint whose counter already existed at 0 fires within 60 s, names
/// the version, the deploy and the users affected, and the other namespace's crashes (same app
/// name) neither fire nor leak into the context.
#[test]
fn crash_of_existing_series_fires_within_a_minute_in_its_namespace_only() {
    let file = alert_rules(&policy(CRASH_POLICY), &app());
    test_rules(
        &[&file],
        &crash_test(
            "0x20 1x20",
            21,
            "NullPointerException at com.shop.Cart.total (fingerprint a1b2): 1 in the last 15m, new: not seen in the previous 15m, version 17.2, started after deploy abc123 (1970-01-01 00:10:00 +0000 UTC), 44 users affected in the last hour, fingerprint a1b2 (NullPointerException at com.shop.Cart.total).",
        ),
    );
}

/// A brand-new fingerprint appears already at 1 (there is no 0 sample to `increase()` from);
/// it still fires within 60 s.
#[test]
fn crash_of_brand_new_series_fires_within_a_minute() {
    let file = alert_rules(&policy(CRASH_POLICY), &app());
    test_rules(
        &[&file],
        &crash_test(
            "_x21 1x20",
            21,
            "NullPointerException at com.shop.Cart.total (fingerprint a1b2): 1 in the last 15m, new: not seen in the previous 15m, version 17.2, started after deploy abc123 (1970-01-01 00:10:00 +0000 UTC), 44 users affected in the last hour, fingerprint a1b2 (NullPointerException at com.shop.Cart.total).",
        ),
    );
}

/// A policy whose crash alerts escalate to the on-call receiver after 5 minutes.
const ESCALATING_POLICY: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: { name: crashes, namespace: shop }
spec:
  appRef: { name: checkout }
  rules:
    - name: CheckoutCrash
      crashRate: {}
  audiences:
    - audience: support
      context: [version]
      receivers:
        - { name: helpdesk, email: { to: help@example.com } }
    - audience: engineering
      context: [version]
      receivers:
        - { name: team, email: { to: team@example.com } }
        - { name: oncall, pagerDuty: { routingKeySecretRef: { name: pd, key: key } } }
  escalation:
    - { after: 5m, receiver: oncall }
"#;

fn escalation_test(extra_series: &str, escalated: bool) -> String {
    let alert = |audience: &str, extra_labels: &str, extra_annotations: &str| {
        format!(
            r#"
          - exp_labels:
              namespace: shop
              app: checkout
              version: "17.2"
              severity: warning
              audience: {audience}
              vigil_policy: crashes
              vigil_rule: CheckoutCrash
              fingerprint: a1b2
              type: panic{extra_labels}
            exp_annotations:
              summary: Crash panic in shop/checkout version 17.2
              description: "panic (fingerprint a1b2): 1 in the last 15m, version 17.2."
              version: version 17.2{extra_annotations}"#
        )
    };
    let base = format!(
        "{}{}",
        alert("engineering", "", ""),
        alert("support", "", "")
    );
    let later = if escalated {
        format!(
            "{base}{}",
            alert(
                "engineering",
                "\n              escalation_level: \"1\"\n              vigil_escalation_receiver: oncall",
                "\n              escalation: \"Not acknowledged 5m after firing: escalation level 1 to oncall.\""
            )
        )
    } else {
        base.clone()
    };
    format!(
        r#"evaluation_interval: 15s
tests:
  - interval: 1m
    input_series:
      - series: 'vigil_crashes_total{{namespace="shop", app="checkout", version="17.2", fingerprint="a1b2", type="panic", language="go"}}'
        values: '0 0 1x20'{extra_series}
    alert_rule_test:
      - eval_time: 6m
        alertname: CheckoutCrash
        exp_alerts:{base}
      - eval_time: 8m
        alertname: CheckoutCrash
        exp_alerts:{later}
"#
    )
}

/// An alert nobody acknowledges is sent again with `escalation_level: "1"` to the step's
/// receiver's audience once the step's delay has passed, and not before.
#[test]
fn unacknowledged_alert_escalates_after_the_step_delay() {
    let file = alert_rules(&policy(ESCALATING_POLICY), &app());
    test_rules(&[&file], &escalation_test("", true));
}

/// An acknowledged alert (`vigil_alert_acknowledged` = 1, exported while it is silenced) does
/// not escalate, while another namespace's acknowledgement of the same alert name does not
/// stop ours.
#[test]
fn acknowledged_alert_does_not_escalate() {
    let file = alert_rules(&policy(ESCALATING_POLICY), &app());
    let acked = r#"
      - series: 'vigil_alert_acknowledged{namespace="shop", app="checkout", alertname="CheckoutCrash"}'
        values: '1x20'"#;
    test_rules(&[&file], &escalation_test(acked, false));
    let acked_elsewhere = r#"
      - series: 'vigil_alert_acknowledged{namespace="other", app="checkout", alertname="CheckoutCrash"}'
        values: '1x20'"#;
    test_rules(&[&file], &escalation_test(acked_elsewhere, true));
}

/// Escalation means "nobody acknowledged it", not "still crashing": a single crash whose alert
/// resolved a minute later still escalates once the step's delay has passed.
#[test]
fn single_unacknowledged_crash_escalates_after_it_resolved() {
    let yaml = ESCALATING_POLICY.replace("crashRate: {}", "crashRate: { window: 1m }");
    let file = alert_rules(&policy(&yaml), &app());
    let escalated = r#"
          - exp_labels:
              namespace: shop
              app: checkout
              version: "17.2"
              severity: warning
              audience: engineering
              vigil_policy: crashes
              vigil_rule: CheckoutCrash
              fingerprint: a1b2
              type: panic
              escalation_level: "1"
              vigil_escalation_receiver: oncall
            exp_annotations:
              summary: Crash panic in shop/checkout version 17.2
              description: "panic (fingerprint a1b2): 0 in the last 1m, version 17.2."
              version: version 17.2
              escalation: "Not acknowledged 5m after firing: escalation level 1 to oncall."
"#;
    test_rules(
        &[&file],
        &format!(
            r#"evaluation_interval: 15s
tests:
  - interval: 1m
    input_series:
      - series: 'vigil_crashes_total{{namespace="shop", app="checkout", version="17.2", fingerprint="a1b2", type="panic", language="go"}}'
        values: '0 0 1x20'
    alert_rule_test:
      - eval_time: 5m
        alertname: CheckoutCrash
        exp_alerts: []
      - eval_time: 8m
        alertname: CheckoutCrash
        exp_alerts:{escalated}"#
        ),
    );
}

/// A spike needs both: above the threshold and ×`increaseFactor` against the previous window.
/// A single crash (0.07/min, below the threshold) never fires it, even with no crash before;
/// a ×5 rise above the threshold does, and the alert says by how much.
#[test]
fn crash_rate_rise_fires_on_increase_factor() {
    let spike = r#"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: { name: crashes, namespace: shop }
spec:
  appRef: { name: checkout }
  rules:
    - name: CheckoutCrash
      crashRate: { threshold: 0.2, increaseFactor: 3, window: 15m }
  audiences:
    - audience: management
      receivers:
        - { name: cto, email: { to: cto@example.com } }
"#;
    let file = alert_rules(&policy(spike), &app());
    test_rules(
        &[&file],
        &r#"evaluation_interval: 15s
tests:
  - interval: 1m
    input_series:
      - series: 'vigil_crashes_total{namespace="shop", app="checkout", version="17.2", fingerprint="a1b2", type="panic", language="go"}'
        values: '0 0 1x18 6x20'
{users}    alert_rule_test:
      - eval_time: 3m
        alertname: CheckoutCrash
        exp_alerts: []
      - eval_time: 20m
        alertname: CheckoutCrash
        exp_alerts: []
      - eval_time: 22m
        alertname: CheckoutCrash
        exp_alerts:
          - exp_labels:
              namespace: shop
              app: checkout
              version: "17.2"
              severity: warning
              audience: management
              vigil_policy: crashes
              vigil_rule: CheckoutCrash
            exp_annotations:
              summary: Crash spike in shop/checkout version 17.2
              description: "0.33 crashes/min over the last 15m (threshold 0.2/min), crash rate ×5.0 vs the previous 15m, 44 users affected in the last hour."
              trend: "crash rate ×5.0 vs the previous 15m"
              users_affected: 44 users affected in the last hour
"#
            .replace("{users}", &user_registers()),
    );
}

/// User PromQL is confined to the app: every selector gets the app matcher, while strings,
/// ranges, offsets, functions, aggregations and grouping labels are left alone.
#[test]
fn user_promql_selectors_are_scoped_to_the_app() {
    let m = r#"namespace="shop", app="checkout""#;
    let cases = [
        ("up", r#"up{namespace="shop", app="checkout"}"#),
        (
            r#"sum by (code) (rate(http_requests_total{code=~"5.."}[5m] offset 1h))"#,
            r#"sum by (code) (rate(http_requests_total{namespace="shop", app="checkout", code=~"5.."}[5m] offset 1h))"#,
        ),
        (
            r#"label_replace(x{}, "dst", "$1", "src", "(.*)") > bool 1e3"#,
            r#"label_replace(x{namespace="shop", app="checkout"}, "dst", "$1", "src", "(.*)") > bool 1e3"#,
        ),
        (
            r#"{__name__="jobs_total"} * on (job) group_left (team) team_info"#,
            r#"{namespace="shop", app="checkout", __name__="jobs_total"} * on (job) group_left (team) team_info{namespace="shop", app="checkout"}"#,
        ),
        (
            "max_over_time(deriv(disk_used[1h])[6h:5m]) # growth\n",
            "max_over_time(deriv(disk_used{namespace=\"shop\", app=\"checkout\"}[1h])[6h:5m]) # growth\n",
        ),
        (
            r#"SUM WITHOUT (pod) (q{namespace="other"}) unless absent(q) or vector(1)"#,
            r#"SUM WITHOUT (pod) (q{namespace="shop", app="checkout", namespace="other"}) unless absent(q{namespace="shop", app="checkout"}) or vector(1)"#,
        ),
    ];
    for (input, want) in cases {
        assert_eq!(scoped_promql(input, m), want, "scoping {input}");
    }
}

/// Scoped user PromQL still parses: promtool accepts a policy of tricky raw PromQL rules.
#[test]
fn scoped_user_promql_passes_promtool_check() {
    let tricky = r#"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: { name: raw, namespace: shop }
spec:
  appRef: { name: checkout }
  rules:
    - name: Joined
      promql: { expr: 'sum by (job) (rate(jobs_total{result!~"ok|skipped"}[5m])) * on (job) group_left (team) team_info > 0' }
    - name: Subquery
      promql: { expr: 'max_over_time(deriv(disk_used[1h])[6h:5m] offset 1d) > 0' }
    - name: Absent
      promql: { expr: 'absent({__name__="heartbeat_total"}) == 1' }
    - name: Topk
      promql: { expr: 'topk(3, count_values("version", build_info)) > 2' }
"#;
    check_rules(&alert_rules(&policy(tricky), &app()));
}

/// The `PrometheusRule` object is named after the policy, lives in its namespace, carries
/// Vigil's owner labels and holds the rule file as its spec.
#[test]
fn prometheus_rule_object_wraps_the_rule_file() {
    let policy = policy(CRASH_POLICY);
    let file = alert_rules(&policy, &app());
    let object = prometheus_rule(&policy, &file);
    assert_eq!(object["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(object["kind"], "PrometheusRule");
    assert_eq!(object["metadata"]["name"], "vigil-crashes");
    assert_eq!(object["metadata"]["namespace"], "shop");
    assert_eq!(
        object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "vigil"
    );
    assert_eq!(object["spec"], serde_json::to_value(&file).expect("json"));
    // The crash rule gets its own group, evaluated every second; a policy of crash rules only
    // has no other group.
    assert_eq!(
        object["spec"]["groups"][0]["name"],
        "vigil.shop.crashes.crashes"
    );
    assert_eq!(
        object["spec"]["groups"][0]["interval"],
        CRASH_GROUP_INTERVAL
    );
    assert_eq!(object["spec"]["groups"].as_array().map(Vec::len), Some(1));
}

/// Regression: `errorRate` and `latency` rules defaulted to `http_requests_total{code}` and
/// `http_request_duration_seconds` whatever the app exposed. Without names of their own they
/// read the app's declared request metrics; names a rule gives still win.
#[test]
fn request_rules_read_the_apps_request_metrics() {
    let spring: MonitoredApp = serde_yaml::from_str(&format!(
        "{APP}  metrics: {{ port: 8080, requests: {{ preset: spring-micrometer }} }}\n"
    ))
    .expect("app");
    let policy = policy(
        r#"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: { name: checkout-requests, namespace: shop }
spec:
  appRef: { name: checkout }
  rules:
    - { name: Errors, errorRate: { thresholdPercent: 5 } }
    - { name: Slow, latency: { quantile: 0.99, thresholdSeconds: 0.5 } }
    - { name: OwnErrors, errorRate: { thresholdPercent: 5, metric: own_total, statusLabel: rc } }
"#,
    );
    let file = alert_rules(&policy, &spring);
    let yaml = rule_file_yaml(&file);
    assert!(!yaml.contains("http_requests_total") && !yaml.contains("http_request_duration"));
    assert!(yaml.contains(
        r#"http_server_requests_seconds_count{namespace="shop", app="checkout", status=~"5.."}"#
    ));
    assert!(yaml.contains("http_server_requests_seconds_bucket{"));
    assert!(yaml.contains(r#"own_total{namespace="shop", app="checkout", rc=~"5.."}"#));
    check_rules(&file);
}

/// `for: 0s` (fire at the first matching evaluation, as Prometheus allows) is accepted on a
/// rule and rendered as written; a zero window stays refused.
#[test]
fn a_zero_for_fires_at_once() {
    let zero = policy(
        r#"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: { name: instant, namespace: shop }
spec:
  appRef: { name: checkout }
  rules:
    - { name: CheckoutErrors, for: 0s, errorRate: { thresholdPercent: 5, window: 5m } }
"#,
    );
    let file = alert_rules(&zero, &app());
    let yaml = rule_file_yaml(&file);
    let rule = yaml
        .split("- alert: ")
        .find(|r| r.starts_with("CheckoutErrors\n"))
        .expect("the error-rate alert is rendered");
    assert!(rule.contains("for: 0s"), "{rule}");
    check_rules(&file);

    let zero_window = serde_yaml::from_str::<AlertPolicy>(
        r#"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: { name: instant, namespace: shop }
spec:
  appRef: { name: checkout }
  rules:
    - { name: CheckoutErrors, errorRate: { thresholdPercent: 5, window: 0s } }
"#,
    );
    let error = zero_window
        .expect_err("a zero window is refused")
        .to_string();
    assert!(error.contains("invalid duration \"0s\""), "{error}");
}
