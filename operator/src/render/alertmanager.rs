//! Alertmanager stage of the render pipeline: turns every `AlertPolicy` (and the audiences the
//! `SLO`s page or ticket) into Alertmanager routes, receivers and inhibition rules — as a full
//! `alertmanager.yml` for a standalone Alertmanager, and as prometheus-operator
//! `AlertmanagerConfig` objects for clusters that run one.
//!
//! The routing tree of `alertmanager.yml`:
//!
//! ```text
//! root (vigil-default, a no-op — or the base configuration's root route, see
//! │     `merge_into_base`; group_by namespace, app, alertname, audience)
//! ├─ namespace="<ns>", vigil_policy=~".+"   continue: false → <ns>/vigil-unrouted (no-op)
//! │  ├─ escalation_level="<n>", app, vigil_policy → <ns>/<policy>/<step receiver>
//! │  ├─ escalation_level=~".+"   (a level no step declares) → <ns>/vigil-unrouted
//! │  └─ audience="<audience>"    → <ns>/vigil-unrouted
//! │     └─ app, vigil_policy, severity=~<filter>   → the policy's receivers of that audience
//! ├─ namespace="<ns>", slo=~".+"            continue: false → <ns>/vigil-unrouted (no-op)
//! │  ├─ app, slo="<slo>"         → the SLO's own receivers (`spec.alerting.receivers`)
//! │  └─ audience="<audience>"    → <ns>/vigil-unrouted
//! │     └─ app, slo=~".+", vigil_slo_alert=~<class> → the policy's receivers of that audience
//! │                                                  (continue: true, so every policy of the
//! │                                                  app gets SLO alerts)
//! └─ (the base configuration's own routes: alerts Vigil did not generate)
//! ```
//!
//! Every route below the root sits under exactly one `namespace="<ns>"` route that never
//! continues and ends in a namespace-local no-op receiver, so an alert labelled with one
//! namespace can never reach another namespace's receivers; every inhibition rule has
//! `namespace` in `equal` for the same reason.
//!
//! Secrets are never inlined: each channel reads its credential from the file where the
//! Secret key is mounted (`SecretKeyRef::namespaced_mount_path`). Alertmanager 0.25, the release this
//! project installs and tests against, supports `api_url_file` (Slack), `routing_key_file`
//! (PagerDuty) and `auth_password_file` (e-mail) but not the webhook's `url_file` (added in
//! 0.26); see [`AlertmanagerVersion`] for what the webhook gets on 0.25.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use kube::ResourceExt;
use serde::{Serialize, Serializer};
use serde_json::{json, Value};
use vigil_crds::alert_policy::{AudienceRoute, Receiver as PolicyReceiver};
use vigil_crds::{AlertPolicy, Audience, Severity, Slo};

mod base;
pub mod destinations;

pub use base::{merge_into_base, BaseConfigError};

use super::scrape::regex_escape;
use super::{child_meta, namespace_of, Inventory};

/// The root route's receiver: no notification configs, so anything that matches no namespace
/// route is accepted and dropped.
pub const DEFAULT_RECEIVER: &str = "vigil-default";
/// Suffix of the namespace-local no-op receiver (`<ns>/vigil-unrouted`) that ends every
/// namespace route. It has two path segments, so it cannot collide with a policy's receivers.
pub const UNROUTED_RECEIVER: &str = "vigil-unrouted";
/// The no-op receiver inside an `AlertmanagerConfig`; the dot keeps it apart from user receiver
/// names, which are lower-case letters, digits and `-`.
pub const CR_UNROUTED_RECEIVER: &str = "vigil.unrouted";
/// Labels alerts are grouped by: one notification per app, alert and audience.
pub const GROUP_BY: [&str; 4] = ["namespace", "app", "alertname", "audience"];
/// Labels that split crash alerts into notification groups: each version × fingerprint is its
/// own group, so a new crash pages even while another one is firing.
pub const CRASH_GROUP_BY: [&str; 6] = [
    "namespace",
    "app",
    "alertname",
    "audience",
    "version",
    "fingerprint",
];
/// Crash routes notify at once (`group_wait`) and, for a group that fired again right after
/// it resolved, after this `group_interval`.
pub const CRASH_GROUP_WAIT: &str = "0s";
/// See [`CRASH_GROUP_WAIT`].
pub const CRASH_GROUP_INTERVAL: &str = "5s";
/// Re-send interval when an audience sets none (the `repeatInterval` default in the CRD).
pub const DEFAULT_REPEAT_INTERVAL: &str = "4h";
/// SLO burn-rate tiers (`vigil_burn_tier` label), fastest first, as the SLO renderer names them.
/// A firing tier inhibits every slower one of the same SLO and audience.
pub const BURN_TIERS: [&str; 4] = [
    super::slo::BURN_TIERS[0].0,
    super::slo::BURN_TIERS[1].0,
    super::slo::BURN_TIERS[2].0,
    super::slo::BURN_TIERS[3].0,
];
/// Host of the placeholder webhook URL rendered for Alertmanager 0.25 (see
/// [`AlertmanagerVersion::V0_25`]). `.invalid` is reserved (RFC 2606) and never resolves.
pub const WEBHOOK_PLACEHOLDER_HOST: &str = "webhook-url-needs-alertmanager-0-26.invalid";

/// The Alertmanager release the standalone `alertmanager.yml` is written for. Only the generic
/// webhook differs: its URL is a Secret, and only 0.26+ can read a webhook URL from a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AlertmanagerVersion {
    /// Alertmanager 0.25 (Debian 12, the release the tests run). Webhook receivers keep their
    /// route and receiver but get a placeholder URL on a reserved `.invalid` host naming the
    /// mounted Secret file: the secret is never inlined, Alertmanager logs each failed delivery
    /// and counts it in `alertmanager_notifications_failed_total{integration="webhook"}`.
    /// Webhooks are fully delivered through the `AlertmanagerConfig` objects (`urlSecret`) or
    /// with [`AlertmanagerVersion::V0_26`].
    #[default]
    V0_25,
    /// Alertmanager 0.26 and later: webhooks read their URL with `url_file`.
    V0_26,
}

/// A whole `alertmanager.yml`.
#[derive(Clone, Debug, PartialEq, Serialize)]
///
/// It has no `global` section: SMTP relay, sender and every other default come from the base
/// configuration the routes are merged into ([`merge_into_base`]); Vigil hard-codes none.
pub struct AlertmanagerFile {
    /// The routing tree.
    pub route: Route,
    /// Inhibition rules; each keeps `namespace` in `equal`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inhibit_rules: Vec<InhibitRule>,
    /// Every receiver a route names, sorted by name.
    pub receivers: Vec<Receiver>,
    /// Notification template files; none by default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<String>,
}

/// One node of the routing tree.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Route {
    /// Receiver of alerts that stop here; inherited from the parent when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    /// Labels that split alerts into notification groups.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// Every matcher must hold for an alert to enter the route.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matchers: Vec<Matcher>,
    /// Whether siblings after this route are tried once it matched.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_: Option<bool>,
    /// Wait before the first notification of a group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<String>,
    /// Wait before notifying about new alerts in a group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_interval: Option<String>,
    /// Wait before re-sending a still-firing alert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<String>,
    /// Child routes, tried in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
}

/// How a matcher compares a label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatchOp {
    /// `=`: equal.
    Equal,
    /// `=~`: the whole value matches a regular expression.
    Regex,
}

impl MatchOp {
    /// The operator as written in matchers.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::Regex => "=~",
        }
    }
}

/// A label matcher, written in Alertmanager's matcher syntax (`name="value"`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub op: MatchOp,
    /// Value or regular expression (anchored by Alertmanager).
    pub value: String,
}

impl Matcher {
    /// `name="value"`.
    pub fn eq(name: &str, value: &str) -> Self {
        Self {
            name: name.to_owned(),
            op: MatchOp::Equal,
            value: value.to_owned(),
        }
    }

    /// `name=~"regex"`.
    pub fn re(name: &str, regex: &str) -> Self {
        Self {
            name: name.to_owned(),
            op: MatchOp::Regex,
            value: regex.to_owned(),
        }
    }

    /// The matcher as a prometheus-operator `AlertmanagerConfig` matcher object.
    pub fn to_cr(&self) -> Value {
        json!({ "name": self.name, "value": self.value, "matchType": self.op.as_str() })
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escaped = self
            .value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        write!(f, "{}{}\"{}\"", self.name, self.op.as_str(), escaped)
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An inhibition rule: while a source alert fires, matching target alerts with the same
/// `equal` labels are muted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InhibitRule {
    /// Matchers the muting alert satisfies.
    pub source_matchers: Vec<Matcher>,
    /// Matchers the muted alert satisfies.
    pub target_matchers: Vec<Matcher>,
    /// Labels that must be equal on both; always starts with `namespace`.
    pub equal: Vec<String>,
}

/// A named receiver with its notification configs (none: a no-op receiver).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Receiver {
    /// Unique name, `<namespace>/<policy>/<receiver>` for a policy's receivers.
    pub name: String,
    /// E-mail configs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub email_configs: Vec<EmailConfig>,
    /// PagerDuty configs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pagerduty_configs: Vec<PagerDutyConfig>,
    /// Slack configs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slack_configs: Vec<SlackConfig>,
    /// Webhook configs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhook_configs: Vec<WebhookConfig>,
}

/// `email_configs` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EmailConfig {
    /// Recipient.
    pub to: String,
    /// File holding the SMTP password (the mounted Secret key). The user name comes from
    /// `global.smtp_auth_username`, which the chart sets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_password_file: Option<String>,
    /// Also notify when the alert resolves.
    pub send_resolved: bool,
}

/// `pagerduty_configs` entry (Events API v2).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PagerDutyConfig {
    /// File holding the routing key.
    pub routing_key_file: String,
    /// Also notify when the alert resolves.
    pub send_resolved: bool,
}

/// `slack_configs` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SlackConfig {
    /// File holding the incoming-webhook URL.
    pub api_url_file: String,
    /// Channel.
    pub channel: String,
    /// Message title ([`SLACK_TITLE`]).
    pub title: String,
    /// Message text ([`SLACK_TEXT`]): every alert's summary and the audience's context.
    pub text: String,
    /// Also notify when the alert resolves.
    pub send_resolved: bool,
}

/// Title of a Slack notification: status, alert count and the group's summary.
pub const SLACK_TITLE: &str = "[{{ .Status | toUpper }}{{ if eq .Status \"firing\" }}:{{ .Alerts.Firing | len }}{{ end }}] {{ .CommonAnnotations.summary }}";
/// Text of a Slack notification. Alertmanager's default Slack text is empty; this one carries
/// each alert's summary, its description (which holds the audience's context: version, the
/// deploy before it, fingerprint, trend, users affected), escalation and runbook.
pub const SLACK_TEXT: &str = "{{ range .Alerts }}*{{ .Annotations.summary }}*{{ if eq .Status \"resolved\" }} (resolved){{ end }}\n{{ .Annotations.description }}\n{{ with .Annotations.escalation }}{{ . }}\n{{ end }}{{ with .Annotations.runbook_url }}Runbook: {{ . }}\n{{ end }}{{ end }}";

/// `webhook_configs` entry: exactly one of `url_file` (0.26+) and the 0.25 placeholder `url`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WebhookConfig {
    /// File holding the URL (Alertmanager 0.26+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_file: Option<String>,
    /// Placeholder URL for Alertmanager 0.25; see [`AlertmanagerVersion::V0_25`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Also notify when the alert resolves.
    pub send_resolved: bool,
}

/// The complete `alertmanager.yml` for every policy in `inv`, written for Alertmanager 0.25
/// (see [`alertmanager_config_for`]).
pub fn alertmanager_config(inv: &Inventory) -> AlertmanagerFile {
    alertmanager_config_for(inv, AlertmanagerVersion::default())
}

/// The complete `alertmanager.yml` for every policy in `inv`, written for `version`.
pub fn alertmanager_config_for(inv: &Inventory, version: AlertmanagerVersion) -> AlertmanagerFile {
    let mut by_namespace: BTreeMap<String, Vec<&AlertPolicy>> = BTreeMap::new();
    for policy in &inv.policies {
        by_namespace
            .entry(namespace_of(policy))
            .or_default()
            .push(policy);
    }
    let mut slos_by_namespace: BTreeMap<String, Vec<&Slo>> = BTreeMap::new();
    for slo in inv
        .slos
        .iter()
        .filter(|s| !s.spec.alerting.receivers.is_empty())
    {
        let ns = namespace_of(slo);
        by_namespace.entry(ns.clone()).or_default();
        slos_by_namespace.entry(ns).or_default().push(slo);
    }
    let mut receivers: BTreeMap<String, Receiver> = BTreeMap::new();
    receivers.insert(DEFAULT_RECEIVER.to_owned(), no_op(DEFAULT_RECEIVER));
    let mut namespace_routes = Vec::new();
    for (ns, mut policies) in by_namespace {
        policies.sort_by_key(|p| p.name_any());
        let unrouted = format!("{ns}/{UNROUTED_RECEIVER}");
        receivers.insert(unrouted.clone(), no_op(&unrouted));
        let mut escalations = Vec::new();
        let mut audiences: BTreeMap<Audience, Vec<Route>> = BTreeMap::new();
        for policy in policies {
            let prefix = format!("{ns}/{}/", policy.name_any());
            let name = |receiver: &str| format!("{prefix}{receiver}");
            for route in &policy.spec.audiences {
                for r in &route.receivers {
                    let full = name(&r.name);
                    receivers.insert(full.clone(), file_receiver(full, &ns, r, version));
                }
            }
            let app = Matcher::eq("app", &policy.spec.app_ref.name);
            for mut route in escalation_routes(policy, &name) {
                route.matchers.insert(1, app.clone());
                escalations.push(route);
            }
            for route in &policy.spec.audiences {
                let children = audience_children(policy, route, &name);
                audiences
                    .entry(route.audience)
                    .or_default()
                    .extend(children.into_iter().map(|mut r| {
                        r.matchers.insert(0, app.clone());
                        r
                    }));
            }
        }
        let mut routes = escalations;
        routes.push(stray_escalation_route(&unrouted));
        let mut slos = slos_by_namespace.remove(&ns).unwrap_or_default();
        slos.sort_by_key(|s| s.name_any());
        for slo in slos {
            let prefix = format!("{ns}/slo/{}/", slo.name_any());
            let names: Vec<String> = slo
                .spec
                .alerting
                .receivers
                .iter()
                .map(|r| {
                    let full = format!("{prefix}{}", r.name);
                    receivers.insert(full.clone(), file_receiver(full.clone(), &ns, r, version));
                    full
                })
                .collect();
            routes.push(slo_receivers_route(slo, &names));
        }
        routes.extend(Audience::ALL.into_iter().filter_map(|audience| {
            audiences
                .remove(&audience)
                .map(|children| audience_route(audience, &unrouted, children))
        }));
        // One route for policy alerts and one for SLO alerts: alerts of the namespace that
        // Vigil did not generate (the platform's own) match neither and keep flowing to the
        // routes of the base configuration.
        for (label, slo) in [(POLICY_LABEL, false), ("slo", true)] {
            namespace_routes.push(Route {
                receiver: Some(unrouted.clone()),
                matchers: vec![Matcher::eq("namespace", &ns), Matcher::re(label, ".+")],
                continue_: Some(false),
                routes: routes_for(&routes, slo),
                ..Route::default()
            });
        }
    }
    AlertmanagerFile {
        route: Route {
            receiver: Some(DEFAULT_RECEIVER.to_owned()),
            group_by: GROUP_BY.iter().map(|l| (*l).to_owned()).collect(),
            group_wait: Some("30s".to_owned()),
            group_interval: Some("5m".to_owned()),
            repeat_interval: Some(DEFAULT_REPEAT_INTERVAL.to_owned()),
            routes: namespace_routes,
            ..Route::default()
        },
        inhibit_rules: inhibit_rules(&[]),
        receivers: receivers.into_values().collect(),
        templates: Vec::new(),
    }
}

/// The file as YAML, exactly as the offline renderer writes `alertmanager.yml`.
pub fn to_yaml(file: &AlertmanagerFile) -> String {
    // Every field is a string, bool, struct or list, and `Matcher` serialises as a string:
    // nothing here can make serde_yaml fail (it only fails on non-string map keys or custom
    // serialiser errors).
    #[allow(clippy::expect_used)] // cannot fire, see above
    crate::yaml::to_string(file).expect("an Alertmanager file always serialises")
}

/// One prometheus-operator `AlertmanagerConfig` (`monitoring.coreos.com/v1alpha1`) per
/// `AlertPolicy`, in the policy's namespace, owned by it. prometheus-operator adds a
/// `namespace="<ns>"` matcher to each object's top route and inhibition rules and prefixes its
/// receiver names, so the objects never reach another namespace. Each top route matches the
/// policy's app; prometheus-operator forces `continue: true` on it, so an SLO alert reaches the
/// objects of every policy of its app. Credentials are Secret key selectors `{name, key}`.
pub fn alertmanager_config_crs(inv: &Inventory) -> Vec<Value> {
    let mut policies: Vec<&AlertPolicy> = inv.policies.iter().collect();
    policies.sort_by_key(|p| (namespace_of(*p), p.name_any()));
    let mut out: Vec<Value> = policies.into_iter().map(policy_cr).collect();
    let mut slos: Vec<&Slo> = inv
        .slos
        .iter()
        .filter(|s| !s.spec.alerting.receivers.is_empty())
        .collect();
    slos.sort_by_key(|s| (namespace_of(*s), s.name_any()));
    out.extend(slos.into_iter().map(slo_cr));
    out
}

/// Name of the `AlertmanagerConfig` rendered for an `SLO` that names its own receivers.
pub fn slo_alertmanager_config_name(slo_name: &str) -> String {
    format!("vigil-slo-{slo_name}")
}

/// The `AlertmanagerConfig` of an `SLO` with its own receivers: its burn-rate alerts go to
/// them. (prometheus-operator forces `continue: true` on the top route, so the app's policies
/// may also route them to their audiences.)
fn slo_cr(slo: &Slo) -> Value {
    let names: Vec<String> = slo
        .spec
        .alerting
        .receivers
        .iter()
        .map(|r| r.name.clone())
        .collect();
    let mut top = slo_receivers_route(slo, &names);
    top.group_by = GROUP_BY.iter().map(|l| (*l).to_owned()).collect();
    top.continue_ = None;
    let receivers: BTreeMap<String, Value> = slo
        .spec
        .alerting
        .receivers
        .iter()
        .map(|r| (r.name.clone(), cr_receiver(r)))
        .collect();
    json!({
        "apiVersion": "monitoring.coreos.com/v1alpha1",
        "kind": "AlertmanagerConfig",
        "metadata": child_meta(slo, slo_alertmanager_config_name(&slo.name_any())),
        "spec": {
            "route": cr_route(&top),
            "receivers": receivers.into_values().collect::<Vec<_>>(),
        },
    })
}

/// Name of the `AlertmanagerConfig` rendered for a policy.
pub fn alertmanager_config_name(policy_name: &str) -> String {
    format!("vigil-{policy_name}")
}

fn policy_cr(policy: &AlertPolicy) -> Value {
    let name = |receiver: &str| receiver.to_owned();
    let mut routes = escalation_routes(policy, &name);
    routes.push(stray_escalation_route(CR_UNROUTED_RECEIVER));
    let mut audiences: Vec<&AudienceRoute> = policy.spec.audiences.iter().collect();
    audiences.sort_by_key(|a| a.audience);
    routes.extend(audiences.into_iter().map(|a| {
        audience_route(
            a.audience,
            CR_UNROUTED_RECEIVER,
            audience_children(policy, a, &name),
        )
    }));
    let top = Route {
        receiver: Some(CR_UNROUTED_RECEIVER.to_owned()),
        group_by: GROUP_BY.iter().map(|l| (*l).to_owned()).collect(),
        matchers: vec![Matcher::eq("app", &policy.spec.app_ref.name)],
        routes,
        ..Route::default()
    };
    let mut receivers: BTreeMap<String, Value> = BTreeMap::new();
    receivers.insert(
        CR_UNROUTED_RECEIVER.to_owned(),
        json!({ "name": CR_UNROUTED_RECEIVER }),
    );
    for r in policy.spec.audiences.iter().flat_map(|a| &a.receivers) {
        receivers.insert(r.name.clone(), cr_receiver(r));
    }
    let app = Matcher::eq("app", &policy.spec.app_ref.name);
    let inhibit: Vec<Value> = inhibit_rules(&[
        app,
        Matcher::eq("vigil_policy", &policy.name_any()),
    ])
    .iter()
    .map(|rule| {
        json!({
            "sourceMatch": rule.source_matchers.iter().map(Matcher::to_cr).collect::<Vec<_>>(),
            "targetMatch": rule.target_matchers.iter().map(Matcher::to_cr).collect::<Vec<_>>(),
            "equal": rule.equal,
        })
    })
    .collect();
    json!({
        "apiVersion": "monitoring.coreos.com/v1alpha1",
        "kind": "AlertmanagerConfig",
        "metadata": child_meta(policy, alertmanager_config_name(&policy.name_any())),
        "spec": {
            "route": cr_route(&top),
            "receivers": receivers.into_values().collect::<Vec<_>>(),
            "inhibitRules": inhibit,
        },
    })
}

/// Label naming the `AlertPolicy` of a policy alert (absent on SLO alerts).
const POLICY_LABEL: &str = super::alerts::POLICY_LABEL;

/// The routes of `routes` that SLO alerts (`slo`) or policy alerts (otherwise) can take: a
/// route matching on `slo` is for SLO alerts, any other for policy alerts; an audience route
/// keeps the children of the kind.
fn routes_for(routes: &[Route], slo: bool) -> Vec<Route> {
    let for_slo = |r: &Route| r.matchers.iter().any(|m| m.name == "slo");
    routes
        .iter()
        .filter_map(|r| {
            if r.matchers.iter().any(|m| m.name == "audience") {
                let mut audience = r.clone();
                audience.routes.retain(|c| for_slo(c) == slo);
                (!audience.routes.is_empty()).then_some(audience)
            } else {
                (for_slo(r) == slo).then(|| r.clone())
            }
        })
        .collect()
}

/// The route of an `SLO` that names its own receivers: every burn-rate alert of the
/// objective goes to them, and to nobody else.
fn slo_receivers_route(slo: &Slo, receivers: &[String]) -> Route {
    fan_out(
        vec![
            Matcher::eq("app", &slo.spec.app_ref.name),
            Matcher::eq("slo", &slo.name_any()),
        ],
        receivers,
        DEFAULT_REPEAT_INTERVAL,
        false,
    )
}

/// A receiver with no notification configs.
fn no_op(name: &str) -> Receiver {
    Receiver {
        name: name.to_owned(),
        ..Receiver::default()
    }
}

/// How long an escalation waits for others of its group before it is sent: an escalation is
/// already late, but alerts escalating together arrive as one notification.
pub const ESCALATION_GROUP_WAIT: &str = "10s";

/// One escalation route per step, matching `escalation_level="<n>"` and the policy.
fn escalation_routes(policy: &AlertPolicy, name: &dyn Fn(&str) -> String) -> Vec<Route> {
    policy
        .spec
        .escalation
        .iter()
        .enumerate()
        .map(|(i, step)| Route {
            receiver: Some(name(&step.receiver)),
            matchers: vec![
                Matcher::eq("escalation_level", &(i + 1).to_string()),
                Matcher::eq("vigil_policy", &policy.name_any()),
            ],
            continue_: Some(false),
            group_wait: Some(ESCALATION_GROUP_WAIT.to_owned()),
            ..Route::default()
        })
        .collect()
}

/// Escalation alerts whose level no step declares stop in the no-op receiver instead of being
/// sent again to a whole audience.
fn stray_escalation_route(unrouted: &str) -> Route {
    Route {
        receiver: Some(unrouted.to_owned()),
        matchers: vec![Matcher::re("escalation_level", ".+")],
        continue_: Some(false),
        ..Route::default()
    }
}

/// `audience="<audience>"` around the policy and SLO routes of that audience.
fn audience_route(audience: Audience, unrouted: &str, routes: Vec<Route>) -> Route {
    Route {
        receiver: Some(unrouted.to_owned()),
        matchers: vec![Matcher::eq("audience", audience.as_str())],
        continue_: Some(false),
        routes,
        ..Route::default()
    }
}

/// The policy's alerts and its app's SLO alerts for one audience, with the audience's severity
/// filter and repeat interval, fanned out to the audience's receivers. SLO alert classes (the
/// `vigil_slo_alert` label, whatever `severity` they were rendered with) map onto the filter as
/// `page` ≈ `critical` and `ticket` ≈ `warning`.
fn audience_children(
    policy: &AlertPolicy,
    audience: &AudienceRoute,
    name: &dyn Fn(&str) -> String,
) -> Vec<Route> {
    let receivers: Vec<String> = audience.receivers.iter().map(|r| name(&r.name)).collect();
    let repeat = audience
        .repeat_interval
        .as_ref()
        .map_or(DEFAULT_REPEAT_INTERVAL.to_owned(), |d| {
            d.as_str().to_owned()
        });
    let severities: BTreeSet<Severity> = audience.severities.iter().copied().collect();
    let mut policy_matchers = vec![Matcher::eq("vigil_policy", &policy.name_any())];
    let mut slo_matchers = vec![Matcher::re("slo", ".+")];
    let mut with_slo = true;
    if !severities.is_empty() {
        let names: Vec<&str> = severities.iter().map(|s| s.as_str()).collect();
        policy_matchers.push(Matcher::re("severity", &names.join("|")));
        let slo: Vec<&str> = severities
            .iter()
            .filter_map(|s| match s {
                Severity::Critical => Some("page"),
                Severity::Warning => Some("ticket"),
                Severity::Info => None,
            })
            .collect();
        with_slo = !slo.is_empty();
        slo_matchers.push(Matcher::re(super::slo::SLO_ALERT_LABEL, &slo.join("|")));
    }
    let crash_rules: Vec<String> = policy
        .spec
        .rules
        .iter()
        .filter(|r| r.crash_rate.is_some())
        .map(|r| regex_escape(&r.name))
        .collect();
    let mut out = Vec::new();
    if !crash_rules.is_empty() {
        let mut matchers = policy_matchers.clone();
        matchers.insert(1, Matcher::re("vigil_rule", &crash_rules.join("|")));
        let mut crashes = fan_out(matchers, &receivers, &repeat, false);
        crashes.group_by = CRASH_GROUP_BY.iter().map(|l| (*l).to_owned()).collect();
        crashes.group_wait = Some(CRASH_GROUP_WAIT.to_owned());
        crashes.group_interval = Some(CRASH_GROUP_INTERVAL.to_owned());
        out.push(crashes);
    }
    out.push(fan_out(policy_matchers, &receivers, &repeat, false));
    if with_slo {
        out.push(fan_out(slo_matchers, &receivers, &repeat, true));
    }
    out
}

/// A route sending to every receiver in `receivers`: directly for one, else through children
/// that all but the last continue.
fn fan_out(matchers: Vec<Matcher>, receivers: &[String], repeat: &str, continue_: bool) -> Route {
    let mut route = Route {
        matchers,
        continue_: Some(continue_),
        repeat_interval: Some(repeat.to_owned()),
        ..Route::default()
    };
    match receivers {
        [one] => route.receiver = Some(one.clone()),
        many => {
            route.routes = many
                .iter()
                .enumerate()
                .map(|(i, r)| Route {
                    receiver: Some(r.clone()),
                    continue_: Some(i + 1 < many.len()),
                    ..Route::default()
                })
                .collect();
        }
    }
    route
}

/// Inhibition rules, each narrowed by `scope` on both sides (the `AlertmanagerConfig` objects
/// scope to their app and policy; the standalone file relies on `equal` alone).
fn inhibit_rules(scope: &[Matcher]) -> Vec<InhibitRule> {
    let scoped = |mut matchers: Vec<Matcher>| {
        let mut all = scope.to_vec();
        all.append(&mut matchers);
        all
    };
    let slo_scope: Vec<Matcher> = scope
        .iter()
        .filter(|m| m.name != "vigil_policy")
        .cloned()
        .collect();
    let slo_scoped = |mut matchers: Vec<Matcher>| {
        let mut all = slo_scope.clone();
        all.append(&mut matchers);
        all
    };
    let mut rules: Vec<InhibitRule> = BURN_TIERS
        .iter()
        .enumerate()
        .filter(|(i, _)| i + 1 < BURN_TIERS.len())
        .map(|(i, tier)| {
            let slower = BURN_TIERS[i + 1..].join("|");
            InhibitRule {
                source_matchers: slo_scoped(vec![Matcher::eq(super::slo::BURN_TIER_LABEL, tier)]),
                target_matchers: slo_scoped(vec![Matcher::re(
                    super::slo::BURN_TIER_LABEL,
                    &slower,
                )]),
                equal: ["namespace", "app", "slo", "audience"]
                    .map(str::to_owned)
                    .to_vec(),
            }
        })
        .collect();
    rules.push(InhibitRule {
        source_matchers: scoped(vec![
            Matcher::eq("severity", Severity::Critical.as_str()),
            Matcher::re("vigil_rule", ".+"),
        ]),
        target_matchers: scoped(vec![
            Matcher::eq("severity", Severity::Warning.as_str()),
            Matcher::re("vigil_rule", ".+"),
        ]),
        equal: ["namespace", "app", "vigil_policy", "vigil_rule", "audience"]
            .map(str::to_owned)
            .to_vec(),
    });
    rules
}

/// A policy receiver as an `alertmanager.yml` receiver reading its secrets from mounted files.
/// Alertmanager serves every namespace, so the namespace is part of each secret's path: two
/// tenants' Secrets of the same name never share a file. A path is only built from a valid
/// namespace, Secret name and key, so it never leaves `/etc/vigil/secrets/<namespace>/`; a
/// receiver config whose reference is invalid (validation rejects it before anything is
/// rendered) is left out rather than pointed elsewhere.
fn file_receiver(
    name: String,
    namespace: &str,
    r: &PolicyReceiver,
    version: AlertmanagerVersion,
) -> Receiver {
    let file = |secret: &vigil_crds::SecretKeyRef| secret.namespaced_mount_path(namespace);
    let mut out = Receiver {
        name,
        ..Receiver::default()
    };
    if let Some(email) = &r.email {
        let auth_password_file = match &email.auth_password_secret_ref {
            Some(secret) => file(secret),
            None => None,
        };
        if email.auth_password_secret_ref.is_none() || auth_password_file.is_some() {
            out.email_configs.push(EmailConfig {
                to: email.to.clone(),
                auth_password_file,
                send_resolved: true,
            });
        }
    }
    if let Some(slack) = &r.slack {
        if let Some(api_url_file) = file(&slack.api_url_secret_ref) {
            out.slack_configs.push(SlackConfig {
                api_url_file,
                channel: slack.channel.clone(),
                title: SLACK_TITLE.to_owned(),
                text: SLACK_TEXT.to_owned(),
                send_resolved: true,
            });
        }
    }
    if let Some(pd) = &r.pager_duty {
        if let Some(routing_key_file) = file(&pd.routing_key_secret_ref) {
            out.pagerduty_configs.push(PagerDutyConfig {
                routing_key_file,
                send_resolved: true,
            });
        }
    }
    if let Some(path) = r.webhook.as_ref().and_then(|w| file(&w.url_secret_ref)) {
        out.webhook_configs.push(match version {
            AlertmanagerVersion::V0_26 => WebhookConfig {
                url_file: Some(path),
                url: None,
                send_resolved: true,
            },
            AlertmanagerVersion::V0_25 => WebhookConfig {
                url_file: None,
                url: Some(format!("http://{WEBHOOK_PLACEHOLDER_HOST}{path}")),
                send_resolved: true,
            },
        });
    }
    out
}

/// A policy receiver as an `AlertmanagerConfig` receiver with Secret key selectors.
fn cr_receiver(r: &PolicyReceiver) -> Value {
    let selector = |s: &vigil_crds::SecretKeyRef| json!({ "name": s.name, "key": s.key });
    let mut out = serde_json::Map::new();
    out.insert("name".into(), json!(r.name));
    if let Some(email) = &r.email {
        let mut config = serde_json::Map::new();
        config.insert("to".into(), json!(email.to));
        if let Some(secret) = &email.auth_password_secret_ref {
            config.insert("authPassword".into(), selector(secret));
        }
        config.insert("sendResolved".into(), json!(true));
        out.insert("emailConfigs".into(), json!([config]));
    }
    if let Some(pd) = &r.pager_duty {
        out.insert(
            "pagerdutyConfigs".into(),
            json!([{ "routingKey": selector(&pd.routing_key_secret_ref), "sendResolved": true }]),
        );
    }
    if let Some(slack) = &r.slack {
        out.insert(
            "slackConfigs".into(),
            json!([{
                "apiURL": selector(&slack.api_url_secret_ref),
                "channel": slack.channel,
                "title": SLACK_TITLE,
                "text": SLACK_TEXT,
                "sendResolved": true,
            }]),
        );
    }
    if let Some(webhook) = &r.webhook {
        out.insert(
            "webhookConfigs".into(),
            json!([{ "urlSecret": selector(&webhook.url_secret_ref), "sendResolved": true }]),
        );
    }
    Value::Object(out)
}

/// A route in `AlertmanagerConfig` form: camelCase, matcher objects, nested routes.
fn cr_route(route: &Route) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(receiver) = &route.receiver {
        out.insert("receiver".into(), json!(receiver));
    }
    if !route.group_by.is_empty() {
        out.insert("groupBy".into(), json!(route.group_by));
    }
    if !route.matchers.is_empty() {
        out.insert(
            "matchers".into(),
            Value::Array(route.matchers.iter().map(Matcher::to_cr).collect()),
        );
    }
    if let Some(c) = route.continue_ {
        out.insert("continue".into(), json!(c));
    }
    if let Some(w) = &route.group_wait {
        out.insert("groupWait".into(), json!(w));
    }
    if let Some(i) = &route.group_interval {
        out.insert("groupInterval".into(), json!(i));
    }
    if let Some(r) = &route.repeat_interval {
        out.insert("repeatInterval".into(), json!(r));
    }
    if !route.routes.is_empty() {
        out.insert(
            "routes".into(),
            Value::Array(route.routes.iter().map(cr_route).collect()),
        );
    }
    Value::Object(out)
}

/// Test support: the real `amtool`, reusable by any test that checks rendered Alertmanager
/// configuration (the examples, the offline `render` command).
// Test helpers fail the test by panicking, with amtool's output in the message.
#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic)]
pub(crate) mod amtool {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Finds `amtool` on `PATH`, then in `/usr/bin`, then in `<repo>/.tools/bin`; panics with
    /// the install hint when it is nowhere (a missing tool fails the test, never skips it).
    pub(crate) fn amtool_path() -> PathBuf {
        crate::render::promtool_tests::tool("amtool")
    }

    /// Runs `amtool check-config` on `config_path`; panics with amtool's output unless it
    /// passes.
    pub(crate) fn check_config(config_path: &Path) {
        let out = Command::new(amtool_path())
            .arg("check-config")
            .arg(config_path)
            .output()
            .expect("run amtool check-config");
        assert!(
            out.status.success(),
            "amtool check-config {} failed:\n{}{}",
            config_path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }
}

/// Runs `amtool config routes test` on `config_path` for an alert with `labels` and returns
/// the receivers it reaches, comma-separated in routing-tree order, as amtool prints them.
/// Panics when amtool fails to run or rejects the configuration.
#[cfg(test)]
#[allow(clippy::expect_used)] // a test helper: failing to run amtool fails the test
pub(crate) fn amtool_routes(config_path: &std::path::Path, labels: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(amtool::amtool_path())
        .args(["config", "routes", "test"])
        .arg(format!("--config.file={}", config_path.display()))
        .args(labels.iter().map(|(k, v)| format!("{k}={v}")))
        .output()
        .expect("run amtool config routes test");
    assert!(
        out.status.success(),
        "amtool config routes test {labels:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs `amtool config routes test --verify.receivers=<expected>` for an alert with `labels`
/// and returns whether amtool confirmed that the alert reaches exactly `expected`
/// (comma-separated, in routing-tree order).
#[cfg(test)]
#[allow(clippy::expect_used)] // a test helper: failing to run amtool fails the test
pub(crate) fn amtool_verify_routes(
    config_path: &std::path::Path,
    expected: &str,
    labels: &[(&str, &str)],
) -> bool {
    std::process::Command::new(amtool::amtool_path())
        .args(["config", "routes", "test"])
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!("--verify.receivers={expected}"))
        .args(labels.iter().map(|(k, v)| format!("{k}={v}")))
        .output()
        .expect("run amtool config routes test")
        .status
        .success()
}

#[cfg(test)]
mod tests;
