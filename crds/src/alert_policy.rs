//! `AlertPolicy`: alert rules on one application, who receives them and how they escalate.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    AppRef, Audience, Condition, Duration, GeneratedObjects, PromQl, SecretKeyRef, Severity,
};
pub use crate::known_event::{EventTime, KnownEvent};

/// Alert rules on a `MonitoredApp`, the audiences that receive them and the escalation of
/// alerts nobody acknowledges.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vigil.dev",
    version = "v1alpha1",
    kind = "AlertPolicy",
    doc = "An AlertPolicy holds alert rules on one MonitoredApp, the audiences (support, engineering, management) that receive them and the escalation of alerts nobody acknowledges.",
    namespaced,
    status = "AlertPolicyStatus",
    shortname = "ap",
    category = "vigil",
    printcolumn = r#"{"name":"App","type":"string","jsonPath":".spec.appRef.name"}"#,
    printcolumn = r#"{"name":"Rules","type":"integer","jsonPath":".status.rules"}"#,
    printcolumn = r#"{"name":"Receivers","type":"integer","jsonPath":".status.receivers"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertPolicySpec {
    /// The `MonitoredApp` (same namespace) the rules watch.
    pub app_ref: AppRef,

    /// The alert rules. Each rule sets exactly one kind: `crashRate`, `errorRate`, `latency`,
    /// `targetDown`, `anomaly`, `forecast` or `promql`. At most 64 rules.
    #[schemars(length(min = 1, max = 64))]
    pub rules: Vec<AlertRule>,

    /// Who receives the alerts, per audience, and what context each audience wants. At most 3
    /// entries, one per audience.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub audiences: Vec<AudienceRoute>,

    /// Escalation of alerts that stay firing without being acknowledged (silenced in
    /// Alertmanager): after each step's delay the alert is sent again, labelled
    /// `escalation_level: "<n>"`, to the step's receiver. At most 8 steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub escalation: Vec<EscalationStep>,
    /// Extra labels and annotations for the objects generated from this resource, such as
    /// `labels: {release: kube-prometheus-stack}`.
    #[serde(default, skip_serializing_if = "GeneratedObjects::is_empty")]
    pub generated_objects: GeneratedObjects,
}

impl crate::common::HasGeneratedObjects for AlertPolicy {
    fn generated_objects(&self) -> &crate::common::GeneratedObjects {
        &self.spec.generated_objects
    }
}

/// One alert rule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
// Counting with `? 1 : 0` costs the API server a sixth of building and filtering a list.
#[x_kube(validation = Rule::new("(has(self.crashRate) ? 1 : 0) + (has(self.errorRate) ? 1 : 0) + (has(self.latency) ? 1 : 0) + (has(self.targetDown) ? 1 : 0) + (has(self.anomaly) ? 1 : 0) + (has(self.forecast) ? 1 : 0) + (has(self.promql) ? 1 : 0) == 1").message("a rule sets exactly one of crashRate, errorRate, latency, targetDown, anomaly, forecast, promql"))]
pub struct AlertRule {
    /// Alert name, in UpperCamelCase as Prometheus convention has it, such as `CheckoutCrashSpike`.
    /// At most 128 characters.
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Z][A-Za-z0-9]*$')").message("name must be UpperCamelCase letters and digits, such as CheckoutCrashSpike"))]
    pub name: String,

    /// How long the condition must hold before the alert fires. Default `0s` for crash rules,
    /// `5m` otherwise.
    #[serde(
        default,
        rename = "for",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::common::optional_duration_allowing_zero"
    )]
    pub for_: Option<Duration>,

    /// Severity label of the alert. Default `warning`.
    #[serde(default)]
    pub severity: Severity,

    /// Audiences that receive this rule's alerts. Empty: every audience configured in the
    /// policy. At most 3 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub audiences: Vec<Audience>,

    /// A one-line summary overriding the generated one. May use Prometheus templating. At most
    /// 1024 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub summary: Option<String>,

    /// Link to the runbook for this alert. At most 2048 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub runbook_url: Option<String>,

    /// Fires when crashes per minute exceed a threshold, or rise sharply against the previous
    /// period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_rate: Option<CrashRateRule>,

    /// Fires when the share of failed requests exceeds a threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<ErrorRateRule>,

    /// Fires when a latency quantile exceeds a threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyRule>,

    /// Fires when the app's scrape target has been down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_down: Option<TargetDownRule>,

    /// Fires when a series leaves its learned baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<AnomalyRule>,

    /// Fires when a series is forecast (by a learned model) to cross a capacity within a
    /// horizon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastRule>,

    /// A raw PromQL alert expression; it fires for each series it returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promql: Option<PromQlRule>,
}

/// The kind of an alert rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RuleKind<'a> {
    CrashRate(&'a CrashRateRule),
    ErrorRate(&'a ErrorRateRule),
    Latency(&'a LatencyRule),
    TargetDown(&'a TargetDownRule),
    Anomaly(&'a AnomalyRule),
    Forecast(&'a ForecastRule),
    PromQl(&'a PromQlRule),
}

impl AlertRule {
    /// The rule's kind, or the number of kinds set when it is not exactly one.
    pub fn kind(&self) -> Result<RuleKind<'_>, usize> {
        let kinds: Vec<RuleKind<'_>> = [
            self.crash_rate.as_ref().map(RuleKind::CrashRate),
            self.error_rate.as_ref().map(RuleKind::ErrorRate),
            self.latency.as_ref().map(RuleKind::Latency),
            self.target_down.as_ref().map(RuleKind::TargetDown),
            self.anomaly.as_ref().map(RuleKind::Anomaly),
            self.forecast.as_ref().map(RuleKind::Forecast),
            self.promql.as_ref().map(RuleKind::PromQl),
        ]
        .into_iter()
        .flatten()
        .collect();
        match kinds.as_slice() {
            [one] => Ok(*one),
            other => Err(other.len()),
        }
    }
}

/// Crash rule over `vigil_crashes_total`. With no `threshold` and no `increaseFactor` it pages
/// every crash group: one alert per version and fingerprint, fired within seconds of the first
/// crash (a new fingerprint, a new version or a crash after the group's alert resolved pages
/// again; more crashes of a firing group do not). With a `threshold` it is a spike rule over all
/// crashes of a version.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrashRateRule {
    /// Crashes per minute (all fingerprints of a version together) above which the spike alert
    /// fires; it never fires at or below it. Default `0`: every crash group pages (see above).
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub threshold: f64,

    /// Fire only when the crash rate is also at least this many times the rate of the previous
    /// window (×N against the period before; a version with no crashes before counts as a
    /// rise). Unset: the threshold alone decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0))]
    pub increase_factor: Option<f64>,

    /// Window the rate is computed over. Default `15m`.
    #[serde(default = "default_crash_window")]
    pub window: Duration,
}

/// Error-rate rule: failed requests / all requests.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorRateRule {
    /// Counter of requests, with a status label. Default: the app's request counter
    /// (`spec.metrics.requests` of its `MonitoredApp`). At most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub metric: Option<String>,
    /// Label holding the response status. Default: the app's status label. At most 128
    /// characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub status_label: Option<String>,
    /// Regex of status values that count as errors. Default: the app's (`5..` unless it sets
    /// one). At most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub error_regex: Option<String>,
    /// Error percentage above which the alert fires, from 0 to 100.
    #[schemars(range(min = 0.0, max = 100.0))]
    pub threshold_percent: f64,
    /// Window the ratio is computed over. Default `5m`.
    #[serde(default = "default_short_window")]
    pub window: Duration,
}

/// Latency rule over a Prometheus histogram.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencyRule {
    /// Histogram base name (without `_bucket`). Default: the app's request duration histogram
    /// (`spec.metrics.requests` of its `MonitoredApp`). At most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub histogram: Option<String>,
    /// Quantile from 0 to 1, such as `0.99`.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub quantile: f64,
    /// Threshold in seconds above which the alert fires.
    #[schemars(range(min = 0.0))]
    pub threshold_seconds: f64,
    /// Window the quantile is computed over. Default `5m`.
    #[serde(default = "default_short_window")]
    pub window: Duration,
}

/// Scrape-target availability rule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetDownRule {
    /// Percentage of the app's targets that must be down for the alert to fire. Default `0`:
    /// any down target.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub min_down_percent: f64,
}

/// Learned-baseline anomaly rule. The analytics engine (`vigil-operator analytics`) runs the
/// query, judges each point online against a baseline learned from what came before it, and
/// publishes the value (`vigil:baseline:actual`), the expected value and its 80 % band
/// (`vigil:baseline:expected`, `:lower`, `:upper`), the share of last week's points inside the
/// band (`vigil:baseline:coverage`) and an anomaly score from 0 to 1 (`vigil:anomaly:score`).
/// The alert fires while the score is above the sensitivity's threshold and the value is
/// outside the band on the watched side.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnomalyRule {
    /// The series to watch, as PromQL (typically a rate or ratio), such as
    /// `sum(rate(http_requests_total{code=~"5.."}[5m]))`. At most 8192 characters.
    pub query: PromQl,
    /// How much history the baseline learns from. Default `1d`.
    #[serde(default = "default_baseline_window")]
    pub baseline_window: Duration,
    /// Repeating pattern the baseline learns: `none`, `daily`, `weekly` or `dailyAndWeekly`.
    /// Default `none`.
    #[serde(default)]
    pub seasonality: Seasonality,
    /// How unusual a point must be to alert: `low` (score above 0.75), `medium` (0.58) or
    /// `high` (0.5), on the engine's anomaly score from 0 to 1. Default `medium`.
    #[serde(default)]
    pub sensitivity: Sensitivity,
    /// Which deviations alert: `up` (above the band), `down` (below it) or `both`. Default `up`.
    #[serde(default)]
    pub direction: Direction,
    /// Dated events (a tax deadline, a sale) whose effect is learned rather than judged
    /// anomalous. At most 366 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 366))]
    pub known_events: Vec<KnownEvent>,
}

/// Repeating pattern a baseline or forecast learns.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Seasonality {
    /// No repeating pattern: level and trend only.
    #[default]
    None,
    /// A pattern that repeats every day.
    Daily,
    /// A pattern that repeats every week.
    Weekly,
    /// Both a daily and a weekly pattern (weekdays that differ from weekends).
    DailyAndWeekly,
}

impl Seasonality {
    /// The periods learned, in seconds.
    pub fn periods_seconds(self) -> &'static [u64] {
        match self {
            Seasonality::None => &[],
            Seasonality::Daily => &[86_400],
            Seasonality::Weekly => &[604_800],
            Seasonality::DailyAndWeekly => &[86_400, 604_800],
        }
    }
}

/// Sensitivity of an anomaly rule.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Sensitivity {
    /// Anomaly score above 0.75: only strong evidence (a chance below about 3 in 10⁸).
    Low,
    /// Anomaly score above 0.58, the threshold at which the engine's detector scores best on
    /// the Numenta Anomaly Benchmark.
    #[default]
    Medium,
    /// Anomaly score above 0.5: catches smaller departures, more noise.
    High,
}

impl Sensitivity {
    /// The anomaly score (from 0 to 1) above which a point outside the band alerts.
    pub fn score_threshold(self) -> f64 {
        match self {
            Sensitivity::Low => 0.75,
            Sensitivity::Medium => 0.58,
            Sensitivity::High => 0.5,
        }
    }
}

/// Direction of an anomaly.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// Only values above the band.
    #[default]
    Up,
    /// Only values below the band.
    Down,
    /// Both.
    Both,
}

/// Capacity forecast rule. The analytics engine (`vigil-operator analytics`) fits a model of
/// the query's level, trend, seasonality and known events on the lookback, refits it every
/// refit interval, and publishes the forecast at the horizons `1h`, `1d` and the rule's own
/// (`vigil:forecast:mean`, `:lower`, `:upper` with an 80 % band, `:coverage` measured on past
/// forecasts), the probability of exceeding the capacity within the horizon
/// (`vigil:forecast:capacity_probability`) and when the band's upper edge first crosses it
/// (`vigil:forecast:capacity_crossing_seconds`). The alert fires while the upper edge at the
/// horizon is above the capacity.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForecastRule {
    /// The series to forecast, as PromQL returning an instant vector (such as a request rate or
    /// a disk usage gauge). At most 8192 characters.
    pub query: PromQl,
    /// How far ahead to look, such as `4h`.
    pub horizon: Duration,
    /// The capacity the forecast must stay under, in the query's unit.
    pub capacity: f64,
    /// History the model is fitted on. Default `6h`. A seasonal pattern is only learned from
    /// at least two of its periods (`2d` for `daily`, `2w` for `weekly`).
    #[serde(default = "default_forecast_lookback")]
    pub lookback: Duration,
    /// Repeating pattern the model learns: `none`, `daily`, `weekly` or `dailyAndWeekly`.
    /// Default `none`, which suits the default lookback: level and trend only.
    #[serde(default)]
    pub seasonality: Seasonality,
    /// Dated events (a tax deadline, a sale) whose past effect is learned and whose future
    /// occurrences are forecast with it. At most 366 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 366))]
    pub known_events: Vec<KnownEvent>,
}

/// Raw PromQL rule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromQlRule {
    /// Alert expression; each returned series is one alert. Keep the `namespace` and `app`
    /// labels or let Vigil add them. At most 8192 characters.
    pub expr: PromQl,
}

/// The receivers and context of one audience.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AudienceRoute {
    /// The audience.
    pub audience: Audience,
    /// Where this audience's alerts go. At most 16 receivers.
    #[schemars(length(min = 1, max = 16))]
    pub receivers: Vec<Receiver>,
    /// Context this audience wants in notifications. Default: what suits the audience
    /// (engineering: version, release, fingerprint, stack trace link; support: users affected;
    /// management: trend). At most 16 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub context: Vec<ContextField>,
    /// Only these severities reach the audience. Empty: all. At most 3 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub severities: Vec<Severity>,
    /// How long to wait before re-sending a still-firing alert. Default `4h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<Duration>,
}

/// A piece of alert context.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ContextField {
    /// The version running when the alert fired.
    Version,
    /// The release (revision) that preceded the alert and when it rolled out.
    Release,
    /// Distinct users affected.
    UsersAffected,
    /// The rate compared to the previous period (×N).
    Trend,
    /// Crash fingerprint and crash type.
    Fingerprint,
    /// Link to the dashboard.
    Dashboard,
    /// Link to the runbook.
    Runbook,
}

/// A notification receiver. Exactly one channel is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("(has(self.email) ? 1 : 0) + (has(self.slack) ? 1 : 0) + (has(self.webhook) ? 1 : 0) + (has(self.pagerDuty) ? 1 : 0) == 1").message("a receiver sets exactly one of email, slack, webhook, pagerDuty"))]
pub struct Receiver {
    /// Receiver name, unique in the policy; escalation steps refer to it. At most 63
    /// characters.
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("receiver name must be lower-case letters, digits and '-'"))]
    pub name: String,
    /// E-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailReceiver>,
    /// Slack incoming webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackReceiver>,
    /// Generic webhook (Alertmanager webhook payload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookReceiver>,
    /// PagerDuty Events API v2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pager_duty: Option<PagerDutyReceiver>,
}

/// E-mail receiver.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailReceiver {
    /// Recipient address. At most 254 characters, the longest address SMTP allows.
    #[schemars(length(max = 254))]
    #[x_kube(validation = Rule::new("self.contains('@')").message("email.to must be an e-mail address"))]
    pub to: String,
    /// SMTP password for Alertmanager's configured smarthost, if it needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_password_secret_ref: Option<SecretKeyRef>,
}

/// Slack receiver.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlackReceiver {
    /// Channel, such as `#payments-oncall`. At most 81 characters: `#` and Slack's 80.
    #[schemars(length(max = 81))]
    pub channel: String,
    /// The incoming-webhook URL (a secret: it grants posting rights).
    pub api_url_secret_ref: SecretKeyRef,
}

/// Generic webhook receiver.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookReceiver {
    /// The URL, kept in a Secret because such URLs often embed tokens.
    pub url_secret_ref: SecretKeyRef,
}

/// PagerDuty receiver.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PagerDutyReceiver {
    /// The Events API v2 routing key.
    pub routing_key_secret_ref: SecretKeyRef,
}

impl Receiver {
    /// Every Secret key this receiver reads.
    pub fn secret_refs(&self) -> Vec<&SecretKeyRef> {
        let mut refs = Vec::new();
        if let Some(e) = &self.email {
            refs.extend(e.auth_password_secret_ref.iter());
        }
        if let Some(s) = &self.slack {
            refs.push(&s.api_url_secret_ref);
        }
        if let Some(w) = &self.webhook {
            refs.push(&w.url_secret_ref);
        }
        if let Some(p) = &self.pager_duty {
            refs.push(&p.routing_key_secret_ref);
        }
        refs
    }
}

/// An escalation step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EscalationStep {
    /// How long the alert must stay firing and unacknowledged, counted from when it first fired.
    pub after: Duration,
    /// Name of a receiver declared under `audiences` that this step notifies. At most 63
    /// characters.
    #[schemars(length(max = 63))]
    pub receiver: String,
}

/// Observed state of an `AlertPolicy`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `RulesApplied` and `RoutesApplied` conditions. At most 16 conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), transform = crate::bounds::conditions)]
    pub conditions: Vec<Condition>,
    /// Prometheus alerting rules generated (including escalation rules).
    #[serde(default)]
    pub rules: i32,
    /// Alertmanager receivers generated.
    #[serde(default)]
    pub receivers: i32,
}

fn default_crash_window() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_short_window() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_baseline_window() -> Duration {
    Duration::from_secs(86_400)
}
fn default_forecast_lookback() -> Duration {
    Duration::from_secs(6 * 3600)
}
