//! Tests of the Alertmanager renderer: snapshots of both outputs, and the real `amtool`
//! checking the file and routing alerts through it.

// A broken fixture or a failed tool run must fail the test loudly.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};

use vigil_crds::{AlertPolicy, MonitoredApp, Slo};

use super::*;

const PAYMENTS_APP: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: checkout, namespace: payments}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: checkout}}
  clientType: banking
"#;

const PORTAL_APP: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: tax-portal, namespace: portal}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: tax-portal}}
  clientType: publicSector
"#;

/// All four receiver kinds, a severity filter on support, a two-step escalation.
const PAYMENTS_POLICY: &str = r##"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: {name: checkout-alerts, namespace: payments}
spec:
  appRef: {name: checkout}
  rules:
    - name: CheckoutCrash
      severity: critical
      crashRate: {threshold: 0}
    - name: CheckoutErrors
      severity: warning
      errorRate: {thresholdPercent: 2}
  audiences:
    - audience: engineering
      receivers:
        - name: eng-pager
          pagerDuty:
            routingKeySecretRef: {name: alerting, key: pagerduty}
        - name: eng-slack
          slack:
            channel: "#checkout-oncall"
            apiUrlSecretRef: {name: alerting, key: slack-url}
      repeatInterval: 1h
    - audience: support
      receivers:
        - name: support-mail
          email:
            to: support@bank.example
            authPasswordSecretRef: {name: smtp, key: password}
      severities: [critical]
    - audience: management
      receivers:
        - name: mgmt-hook
          webhook:
            urlSecretRef: {name: alerting, key: mgmt-webhook}
      repeatInterval: 12h
  escalation:
    - after: 15m
      receiver: eng-slack
    - after: 45m
      receiver: mgmt-hook
"##;

/// A second tenant reusing a receiver name (`eng-slack`) of the first one.
const PORTAL_POLICY: &str = r##"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: {name: portal-alerts, namespace: portal}
spec:
  appRef: {name: tax-portal}
  rules:
    - name: PortalDown
      severity: critical
      targetDown: {}
  audiences:
    - audience: support
      receivers:
        - name: desk-mail
          email: {to: desk@portal.example}
    - audience: engineering
      receivers:
        - name: eng-slack
          slack:
            channel: "#portal"
            apiUrlSecretRef: {name: portal-alerting, key: slack-url}
        - name: portal-hook
          webhook:
            urlSecretRef: {name: portal-alerting, key: webhook-url}
  escalation:
    - after: 30m
      receiver: portal-hook
"##;

const PAYMENTS_SLO: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: SLO
metadata: {name: checkout-availability, namespace: payments}
spec:
  appRef: {name: checkout}
  sli: {availability: {}}
  objective: 99.9
  alerting: {page: [engineering], ticket: [support]}
"#;

/// The two-namespace inventory every test here uses.
fn inventory() -> Inventory {
    Inventory {
        apps: [PAYMENTS_APP, PORTAL_APP]
            .iter()
            .map(|y| serde_yaml::from_str::<MonitoredApp>(y).expect("app fixture"))
            .collect(),
        policies: [PORTAL_POLICY, PAYMENTS_POLICY]
            .iter()
            .map(|y| serde_yaml::from_str::<AlertPolicy>(y).expect("policy fixture"))
            .collect(),
        slos: vec![serde_yaml::from_str::<Slo>(PAYMENTS_SLO).expect("slo fixture")],
        views: Vec::new(),
    }
}

/// The rendered file written into a temp dir, with the path amtool reads.
struct Written {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

/// A platform's own `alertmanager.yml`: an SMTP relay, a root receiver that really notifies,
/// a route of its own and a template.
const BASE: &str = r#"
global:
  smtp_smarthost: mail.platform.example:587
  smtp_from: alerts@platform.example
route:
  receiver: platform-oncall
  group_by: [alertname]
  routes:
    - receiver: platform-db
      matchers: ['team="db"']
receivers:
  - name: platform-oncall
    email_configs: [{to: oncall@platform.example}]
  - name: platform-db
    email_configs: [{to: db@platform.example}]
templates: [/etc/alertmanager/templates/*.tmpl]
"#;

/// The rendered file merged into [`BASE`] (which brings the SMTP relay e-mail receivers need),
/// written into a temp dir, with the path amtool reads.
fn write(file: &AlertmanagerFile) -> Written {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("alertmanager.yml");
    let merged = merge_into_base(file, BASE).expect("merge into the base");
    std::fs::write(&path, merged).expect("write alertmanager.yml");
    Written { _dir: dir, path }
}

/// Labels of a policy alert in `payments`.
fn payments(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut labels = vec![
        ("namespace", "payments"),
        ("app", "checkout"),
        ("vigil_policy", "checkout-alerts"),
        ("vigil_rule", "CheckoutCrash"),
        ("alertname", "CheckoutCrash"),
        ("severity", "critical"),
    ];
    labels.extend_from_slice(extra);
    labels
}

fn routes(path: &Path, labels: &[(&str, &str)]) -> String {
    amtool_routes(path, labels)
}

/// Snapshots live with the other renderers' in `render/snapshots/`.
macro_rules! in_render_snapshots {
    ($($body:tt)*) => {
        insta::with_settings!({ snapshot_path => "../snapshots" }, { $($body)* })
    };
}

/// The rendered `alertmanager.yml` for the two-namespace inventory stays as reviewed.
#[test]
fn alertmanager_yaml_snapshot() {
    in_render_snapshots! {
        insta::assert_snapshot!(
            "alertmanager__two_namespaces_yaml",
            to_yaml(&alertmanager_config(&inventory()))
        );
    }
}

/// The rendered `AlertmanagerConfig` objects stay as reviewed.
#[test]
fn alertmanager_config_crs_snapshot() {
    in_render_snapshots! {
        insta::assert_yaml_snapshot!(
            "alertmanager__two_namespaces_crs",
            alertmanager_config_crs(&inventory())
        );
    }
}

/// The file passes `amtool check-config` (Alertmanager 0.25) as rendered, with the secret
/// mount paths untouched: amtool does not require the secret files to exist.
#[test]
fn amtool_accepts_rendered_file() {
    let written = write(&alertmanager_config(&inventory()));
    amtool::check_config(&written.path);
}

/// With no policy at all the file is still valid and every alert stops in the no-op default.
#[test]
fn empty_inventory_renders_a_valid_no_op_file() {
    let file = alertmanager_config(&Inventory::default());
    assert!(file.route.routes.is_empty());
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("alertmanager.yml");
    std::fs::write(&path, to_yaml(&file)).expect("write");
    amtool::check_config(&path);
    assert_eq!(
        routes(&path, &payments(&[("audience", "support")])),
        DEFAULT_RECEIVER
    );
    assert!(alertmanager_config_crs(&Inventory::default()).is_empty());
}

/// Input order never changes the output.
#[test]
fn output_is_independent_of_input_order() {
    let mut reversed = inventory();
    reversed.policies.reverse();
    assert_eq!(
        to_yaml(&alertmanager_config(&inventory())),
        to_yaml(&alertmanager_config(&reversed))
    );
    assert_eq!(
        alertmanager_config_crs(&inventory()),
        alertmanager_config_crs(&reversed)
    );
}

/// No secret value and no inline credential field reaches the rendered file: every channel
/// reads its secret from the mounted file.
#[test]
fn secrets_are_read_from_mounted_files() {
    let file = alertmanager_config_for(&inventory(), AlertmanagerVersion::V0_26);
    let yaml = to_yaml(&file);
    for field in ["api_url:", "routing_key:", "auth_password:", "service_key:"] {
        assert!(
            !yaml.contains(field),
            "inline secret field {field} in:\n{yaml}"
        );
    }
    for path in [
        "/etc/vigil/secrets/payments/alerting/pagerduty",
        "/etc/vigil/secrets/payments/alerting/slack-url",
        "/etc/vigil/secrets/payments/smtp/password",
        "/etc/vigil/secrets/payments/alerting/mgmt-webhook",
    ] {
        assert!(yaml.contains(path), "{path} missing from:\n{yaml}");
    }
    let hook = file
        .receivers
        .iter()
        .find(|r| r.name == "payments/checkout-alerts/mgmt-hook");
    assert_eq!(
        hook.map(|r| r.webhook_configs.clone()),
        Some(vec![WebhookConfig {
            url_file: Some("/etc/vigil/secrets/payments/alerting/mgmt-webhook".into()),
            url: None,
            send_resolved: true,
        }])
    );
    let v025 = to_yaml(&alertmanager_config(&inventory()));
    assert!(
        !v025.contains("  url_file:"),
        "0.25 does not know webhook url_file:\n{v025}"
    );
    assert!(v025.contains(&format!(
        "http://{WEBHOOK_PLACEHOLDER_HOST}/etc/vigil/secrets/payments/alerting/mgmt-webhook"
    )));
}

/// A Secret reference that tries to leave its tenant's folder (`..` or `/` in the name or the
/// key) never becomes a file path, even if it got past validation: every rendered `_file`
/// path stays under `/etc/vigil/secrets/<namespace>/`, and valid references still render.
#[test]
fn secret_paths_never_leave_their_namespace() {
    let escaping = PAYMENTS_POLICY
        .replace(
            "routingKeySecretRef: {name: alerting, key: pagerduty}",
            "routingKeySecretRef: {name: \"..\", key: \"portal/portal-alerting/pagerduty\"}",
        )
        .replace(
            "apiUrlSecretRef: {name: alerting, key: slack-url}",
            "apiUrlSecretRef: {name: \"../portal/portal-alerting\", key: slack-url}",
        )
        .replace(
            "authPasswordSecretRef: {name: smtp, key: password}",
            "authPasswordSecretRef: {name: smtp, key: \"../../portal/smtp/password\"}",
        );
    let mut inv = inventory();
    inv.policies = vec![
        serde_yaml::from_str::<AlertPolicy>(&escaping).expect("policy fixture"),
        serde_yaml::from_str::<AlertPolicy>(PORTAL_POLICY).expect("policy fixture"),
    ];
    let yaml = to_yaml(&alertmanager_config_for(&inv, AlertmanagerVersion::V0_26));
    assert!(!yaml.contains(".."), "escaping path rendered:\n{yaml}");
    for line in yaml.lines().filter(|l| l.contains("/etc/vigil/secrets/")) {
        let path = line
            .split_once("/etc/vigil/secrets/")
            .map_or("", |(_, p)| p);
        let (namespace, rest) = path.split_once('/').unwrap_or_default();
        assert!(
            matches!(namespace, "payments" | "portal") && rest.split('/').count() == 2,
            "{line}"
        );
        if namespace == "payments" {
            assert!(rest == "alerting/mgmt-webhook", "{line}");
        }
    }
    assert!(yaml.contains("/etc/vigil/secrets/payments/alerting/mgmt-webhook"));
}

/// Each audience's alerts reach that audience's receivers of the alert's policy, and only those.
#[test]
fn audiences_route_to_their_receivers() {
    let written = write(&alertmanager_config(&inventory()));
    let p = &written.path;
    assert_eq!(
        routes(p, &payments(&[("audience", "support")])),
        "payments/checkout-alerts/support-mail"
    );
    assert_eq!(
        routes(p, &payments(&[("audience", "engineering")])),
        "payments/checkout-alerts/eng-pager,payments/checkout-alerts/eng-slack"
    );
    assert_eq!(
        routes(p, &payments(&[("audience", "management")])),
        "payments/checkout-alerts/mgmt-hook"
    );
    let portal = [
        ("namespace", "portal"),
        ("app", "tax-portal"),
        ("vigil_policy", "portal-alerts"),
        ("alertname", "PortalDown"),
        ("severity", "critical"),
        ("audience", "support"),
    ];
    assert_eq!(routes(p, &portal), "portal/portal-alerts/desk-mail");
}

/// Escalation level N reaches the receiver of step N, whatever the audience label says, and
/// a level no step declares reaches nobody.
#[test]
fn escalation_levels_reach_their_step_receiver() {
    let written = write(&alertmanager_config(&inventory()));
    let p = &written.path;
    assert_eq!(
        routes(
            p,
            &payments(&[("escalation_level", "1"), ("audience", "engineering")])
        ),
        "payments/checkout-alerts/eng-slack"
    );
    assert_eq!(
        routes(
            p,
            &payments(&[("escalation_level", "2"), ("audience", "management")])
        ),
        "payments/checkout-alerts/mgmt-hook"
    );
    assert_eq!(
        routes(
            p,
            &payments(&[("escalation_level", "3"), ("audience", "management")])
        ),
        "payments/vigil-unrouted"
    );
}

/// An alert labelled with one namespace never reaches another namespace's receivers, even
/// when every other label names the other tenant's app, policy, audience and escalation step.
#[test]
fn namespaces_are_isolated() {
    let written = write(&alertmanager_config(&inventory()));
    let p = &written.path;
    let portal_as_payments = [
        ("namespace", "payments"),
        ("app", "tax-portal"),
        ("vigil_policy", "portal-alerts"),
        ("alertname", "PortalDown"),
        ("severity", "critical"),
    ];
    for audience in ["support", "engineering", "management"] {
        let mut labels = portal_as_payments.to_vec();
        labels.push(("audience", audience));
        assert_eq!(routes(p, &labels), "payments/vigil-unrouted", "{labels:?}");
        labels.push(("escalation_level", "1"));
        assert_eq!(routes(p, &labels), "payments/vigil-unrouted", "{labels:?}");
        let mut slo = vec![
            ("namespace", "payments"),
            ("app", "tax-portal"),
            ("slo", "x"),
        ];
        slo.extend([
            ("severity", "critical"),
            ("vigil_slo_alert", "page"),
            ("audience", audience),
        ]);
        assert_eq!(routes(p, &slo), "payments/vigil-unrouted", "{slo:?}");
    }
    for audience in ["support", "engineering", "management"] {
        let mut labels = payments(&[("audience", audience)]);
        labels[0] = ("namespace", "portal");
        assert_eq!(routes(p, &labels), "portal/vigil-unrouted", "{labels:?}");
        labels.push(("escalation_level", "2"));
        assert_eq!(routes(p, &labels), "portal/vigil-unrouted", "{labels:?}");
    }
    // amtool's own verification agrees, and rejects the other tenant's receiver.
    let mut cross = payments(&[("audience", "engineering")]);
    cross[0] = ("namespace", "portal");
    assert!(amtool_verify_routes(p, "portal/vigil-unrouted", &cross));
    assert!(!amtool_verify_routes(
        p,
        "payments/checkout-alerts/eng-pager,payments/checkout-alerts/eng-slack",
        &cross
    ));
    let mut unknown = payments(&[("audience", "engineering")]);
    unknown[0] = ("namespace", "elsewhere");
    assert_eq!(routes(p, &unknown), "platform-oncall");
    let file = alertmanager_config(&inventory());
    for ns_route in &file.route.routes {
        assert_eq!(ns_route.continue_, Some(false));
        let ns = &ns_route.matchers[0].value;
        assert_eq!(
            ns_route.receiver.as_deref(),
            Some(format!("{ns}/{UNROUTED_RECEIVER}").as_str())
        );
        assert!(receivers_below(ns_route)
            .iter()
            .all(|r| r.starts_with(&format!("{ns}/"))));
    }
}

fn receivers_below(route: &Route) -> Vec<String> {
    route
        .receiver
        .iter()
        .cloned()
        .chain(route.routes.iter().flat_map(receivers_below))
        .collect()
}

/// SLO burn-rate alerts (no `vigil_policy`) reach the receivers of their audience in the
/// policies of the same app. They are routed by their class (`vigil_slo_alert`), so whatever
/// `severity` the page and ticket classes are rendered with (`critical`/`warning` by default,
/// or a platform's own names) routing is the same.
#[test]
fn slo_alerts_reach_the_audience_of_their_app() {
    let written = write(&alertmanager_config(&inventory()));
    let p = &written.path;
    let slo = |class: &'static str, tier, audience| {
        vec![
            ("namespace", "payments"),
            ("app", "checkout"),
            ("slo", "checkout-availability"),
            ("alertname", "SLOErrorBudgetBurn"),
            (
                "severity",
                if class == "page" {
                    "critical"
                } else {
                    "warning"
                },
            ),
            ("vigil_slo_alert", class),
            ("vigil_burn_tier", tier),
            ("audience", audience),
        ]
    };
    let mut renamed = slo("page", "page-fast", "support");
    renamed[4] = ("severity", "P1");
    assert_eq!(routes(p, &renamed), "payments/checkout-alerts/support-mail");
    assert_eq!(
        routes(p, &slo("page", "page-fast", "engineering")),
        "payments/checkout-alerts/eng-pager,payments/checkout-alerts/eng-slack"
    );
    assert_eq!(
        routes(p, &slo("page", "page-fast", "support")),
        "payments/checkout-alerts/support-mail"
    );
    // support only takes `critical`, which admits `page` but not `ticket`.
    assert_eq!(
        routes(p, &slo("ticket", "ticket-fast", "support")),
        "payments/vigil-unrouted"
    );
    assert_eq!(
        routes(p, &slo("ticket", "ticket-slow", "management")),
        "payments/checkout-alerts/mgmt-hook"
    );
}

/// An audience's `severities` filter drops the other severities; audiences without a filter
/// take every severity.
#[test]
fn severities_filter_applies() {
    let written = write(&alertmanager_config(&inventory()));
    let p = &written.path;
    let warning = |audience| {
        let mut labels = payments(&[("audience", audience)]);
        labels[3] = ("vigil_rule", "CheckoutErrors");
        labels[4] = ("alertname", "CheckoutErrors");
        labels[5] = ("severity", "warning");
        labels
    };
    assert_eq!(routes(p, &warning("support")), "payments/vigil-unrouted");
    assert_eq!(
        routes(p, &payments(&[("audience", "support")])),
        "payments/checkout-alerts/support-mail"
    );
    assert_eq!(
        routes(p, &warning("engineering")),
        "payments/checkout-alerts/eng-pager,payments/checkout-alerts/eng-slack"
    );
}

/// An audience's `repeatInterval` reaches its routes; the CRD default (4h) applies otherwise.
#[test]
fn repeat_interval_applies() {
    let file = alertmanager_config(&inventory());
    // The namespace's policy-alert route, then its SLO-alert route.
    let (policies, slos) = (&file.route.routes[0], &file.route.routes[1]);
    let interval = |ns_route: &Route, audience: &str| -> Vec<Option<String>> {
        ns_route
            .routes
            .iter()
            .find(|r| r.matchers.first().map(|m| m.value.as_str()) == Some(audience))
            .map(|a| a.routes.iter().map(|r| r.repeat_interval.clone()).collect())
            .unwrap_or_default()
    };
    // Each audience: the crash route and the policy route, and the SLO route.
    for (audience, every) in [
        ("engineering", "1h"),
        ("management", "12h"),
        ("support", "4h"),
    ] {
        assert_eq!(
            interval(policies, audience),
            vec![Some(every.into()), Some(every.into())],
            "{audience}"
        );
        // support filters on critical: its SLO (page) route exists too.
        assert_eq!(
            interval(slos, audience),
            vec![Some(every.into())],
            "{audience}"
        );
    }
}

/// Faster burn tiers inhibit slower ones and critical inhibits warning, and every inhibition
/// rule is bounded to one namespace.
#[test]
fn inhibit_rules_are_tiered_and_namespaced() {
    let file = alertmanager_config(&inventory());
    let rendered: Vec<(String, String)> = file
        .inhibit_rules
        .iter()
        .map(|r| {
            assert_eq!(
                r.equal.first().map(String::as_str),
                Some("namespace"),
                "{r:?}"
            );
            let join = |m: &[Matcher]| {
                m.iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            (join(&r.source_matchers), join(&r.target_matchers))
        })
        .collect();
    assert_eq!(
        rendered,
        [
            (
                r#"vigil_burn_tier="page-fast""#,
                r#"vigil_burn_tier=~"page-slow|ticket-fast|ticket-slow""#
            ),
            (
                r#"vigil_burn_tier="page-slow""#,
                r#"vigil_burn_tier=~"ticket-fast|ticket-slow""#
            ),
            (
                r#"vigil_burn_tier="ticket-fast""#,
                r#"vigil_burn_tier=~"ticket-slow""#
            ),
            (
                r#"severity="critical",vigil_rule=~".+""#,
                r#"severity="warning",vigil_rule=~".+""#
            ),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    for cr in alertmanager_config_crs(&inventory()) {
        for rule in cr["spec"]["inhibitRules"].as_array().into_iter().flatten() {
            assert_eq!(rule["equal"][0], "namespace");
            assert_eq!(rule["sourceMatch"][0]["name"], "app");
        }
    }
}

/// One `AlertmanagerConfig` per policy, in the policy's namespace, with owner labels, Secret
/// key selectors for every credential and no secret value.
#[test]
fn alertmanager_config_crs_are_namespaced_and_reference_secrets() {
    let crs = alertmanager_config_crs(&inventory());
    let ids: Vec<(String, String)> = crs
        .iter()
        .map(|c| {
            let meta = &c["metadata"];
            (
                meta["namespace"].as_str().unwrap_or_default().into(),
                meta["name"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("payments", "vigil-checkout-alerts"),
            ("portal", "vigil-portal-alerts")
        ]
        .map(|(a, b)| (a.into(), b.into()))
    );
    let payments = &crs[0];
    assert_eq!(payments["apiVersion"], "monitoring.coreos.com/v1alpha1");
    assert_eq!(
        payments["metadata"]["labels"]["vigil.dev/owner"],
        "alertpolicy.checkout-alerts"
    );
    let receivers = payments["spec"]["receivers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let by_name = |n: &str| {
        receivers
            .iter()
            .find(|r| r["name"] == n)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        by_name("eng-pager")["pagerdutyConfigs"][0]["routingKey"],
        json!({"name": "alerting", "key": "pagerduty"})
    );
    assert_eq!(
        by_name("eng-slack")["slackConfigs"][0]["apiURL"],
        json!({"name": "alerting", "key": "slack-url"})
    );
    assert_eq!(
        by_name("support-mail")["emailConfigs"][0]["authPassword"],
        json!({"name": "smtp", "key": "password"})
    );
    assert_eq!(
        by_name("mgmt-hook")["webhookConfigs"][0]["urlSecret"],
        json!({"name": "alerting", "key": "mgmt-webhook"})
    );
    assert_eq!(
        payments["spec"]["route"]["matchers"],
        json!([{"name": "app", "value": "checkout", "matchType": "="}])
    );
}

/// Merged into a platform's base configuration, the base keeps its SMTP relay, root receiver,
/// routes and templates: the platform's own alerts — including those labelled with a tenant
/// namespace — still reach the platform's receivers, Vigil's alerts reach Vigil's, and no SMTP
/// relay is invented.
#[test]
fn base_configuration_keeps_its_routes_receivers_and_smtp() {
    let written = write(&alertmanager_config(&inventory()));
    let p = &written.path;
    amtool::check_config(p);
    let text = std::fs::read_to_string(p).expect("read");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    assert_eq!(
        doc["global"]["smtp_smarthost"].as_str(),
        Some("mail.platform.example:587")
    );
    assert!(!text.contains("localhost:25"), "{text}");
    assert_eq!(
        doc["templates"][0].as_str(),
        Some("/etc/alertmanager/templates/*.tmpl")
    );
    assert_eq!(doc["route"]["receiver"].as_str(), Some("platform-oncall"));
    // The platform's own alerts, even in a tenant namespace.
    assert_eq!(
        routes(
            p,
            &[
                ("namespace", "payments"),
                ("alertname", "KubePodCrashLooping")
            ]
        ),
        "platform-oncall"
    );
    assert_eq!(
        routes(
            p,
            &[
                ("namespace", "payments"),
                ("team", "db"),
                ("alertname", "PgDown")
            ]
        ),
        "platform-db"
    );
    // Vigil's alerts still reach their audience.
    assert_eq!(
        routes(p, &payments(&[("audience", "support")])),
        "payments/checkout-alerts/support-mail"
    );
    // Without a base there is no SMTP relay at all, rather than a made-up one.
    let standalone = to_yaml(&alertmanager_config(&inventory()));
    assert!(!standalone.contains("smtp_smarthost"), "{standalone}");
    // A base that already uses one of Vigil's receiver names is refused, not overwritten.
    let clash = "route: {receiver: payments/vigil-unrouted}\nreceivers: [{name: payments/vigil-unrouted}]\n";
    assert!(matches!(
        merge_into_base(&alertmanager_config(&inventory()), clash),
        Err(BaseConfigError::DuplicateReceiver(name)) if name == "payments/vigil-unrouted"
    ));
}
