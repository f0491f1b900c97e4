//! `SLO`: a service-level objective on one application, its error budget and burn-rate alerts.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::alert_policy::Receiver;
use crate::common::{AppRef, Audience, Condition, Duration, GeneratedObjects, PromQl};

/// A service-level objective: an SLI, a target over a window, and who is paged or ticketed when
/// the error budget burns too fast.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vigil.dev",
    version = "v1alpha1",
    kind = "SLO",
    doc = "An SLO is a service-level objective on one MonitoredApp: an SLI, a target over a window, its error budget, and who is paged or ticketed when the budget burns too fast.",
    root = "Slo",
    plural = "slos",
    namespaced,
    status = "SloStatus",
    shortname = "slo",
    category = "vigil",
    printcolumn = r#"{"name":"App","type":"string","jsonPath":".spec.appRef.name"}"#,
    printcolumn = r#"{"name":"Objective","type":"number","jsonPath":".spec.objective"}"#,
    printcolumn = r#"{"name":"Window","type":"string","jsonPath":".spec.window"}"#,
    printcolumn = r#"{"name":"Budget","type":"string","jsonPath":".status.budgetRemaining"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SloSpec {
    /// The `MonitoredApp` (same namespace) this objective is about.
    pub app_ref: AppRef,

    /// What the objective promises, in words, such as "99.9 % of checkout requests succeed".
    /// At most 1024 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// How good and bad events are counted.
    pub sli: Sli,

    /// Target percentage of good events, strictly between 0 and 100, such as `99.9`.
    #[x_kube(validation = Rule::new("self > 0.0 && self < 100.0").message("objective is a percentage strictly between 0 and 100, such as 99.9"))]
    pub objective: f64,

    /// Rolling window the objective is measured over. Default `30d`. The burn-rate windows
    /// scale with it.
    #[serde(default = "default_window")]
    pub window: Duration,

    /// Who gets burn-rate alerts.
    #[serde(default)]
    pub alerting: SloAlerting,

    /// Labels added to every series recorded and every alert fired for this objective, such as
    /// `team: payments` or `tier: "1"`. Keys are Prometheus label names (letters, digits and
    /// `_`, not starting with a digit or `__`) other than the ones Vigil sets (`namespace`,
    /// `app`, `slo`, `severity`, `audience`, and any starting with `vigil_` or `sloth_`). At
    /// most 16 labels; each value at most 256 characters. (Keys are checked by the admission
    /// webhook and `vigil-operator check`: a CEL rule over map keys costs more than the API
    /// server allows.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = crate::bounds::slo_labels)]
    pub labels: BTreeMap<String, String>,

    /// Labels of the SLI's series to measure the objective separately for, such as `[route]`:
    /// error ratios, burn rates, budgets and alerts are then one per route. The presets keep
    /// these labels; `goodTotal` and `errorTotal` queries must keep them too (`sum by (route)
    /// (…)`). Default none: one objective over all the app's events. At most 4 labels of at
    /// most 128 characters, none of `namespace`, `app`, `slo`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4), inner(length(max = 128)))]
    #[x_kube(validation = Rule::new("self.all(l, l.matches('^[a-zA-Z_][a-zA-Z0-9_]*$') && !(l in ['namespace', 'app', 'slo']))").message("groupBy holds Prometheus label names other than namespace, app and slo"))]
    pub group_by: Vec<String>,
    /// Extra labels and annotations for the objects generated from this resource, such as
    /// `labels: {release: kube-prometheus-stack}`.
    #[serde(default, skip_serializing_if = "GeneratedObjects::is_empty")]
    pub generated_objects: GeneratedObjects,
}

impl crate::common::HasGeneratedObjects for Slo {
    fn generated_objects(&self) -> &crate::common::GeneratedObjects {
        &self.spec.generated_objects
    }
}

/// The service-level indicator. Exactly one form is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("(has(self.goodTotal) ? 1 : 0) + (has(self.errorTotal) ? 1 : 0) + (has(self.availability) ? 1 : 0) + (has(self.latency) ? 1 : 0) == 1").message("sli sets exactly one of goodTotal, errorTotal, availability, latency"))]
pub struct Sli {
    /// Good and total event rates as PromQL. `{{.window}}` is replaced by each evaluation
    /// window, e.g. `sum(rate(jobs_total{result="ok"}[{{.window}}]))`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good_total: Option<GoodTotalSli>,
    /// Error and total event rates as PromQL, with `{{.window}}` as above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_total: Option<ErrorTotalSli>,
    /// Preset: availability from an HTTP request counter with a status label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<AvailabilitySli>,
    /// Preset: share of requests faster than a threshold, from a histogram.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySli>,
}

/// Good/total SLI.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GoodTotalSli {
    /// Rate of good events over `{{.window}}`. At most 8192 characters.
    #[x_kube(validation = Rule::new("self.contains('{{.window}}')").message("good must use {{.window}} as its range"))]
    pub good: PromQl,
    /// Rate of all events over `{{.window}}`. At most 8192 characters.
    #[x_kube(validation = Rule::new("self.contains('{{.window}}')").message("total must use {{.window}} as its range"))]
    pub total: PromQl,
}

/// Error/total SLI.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorTotalSli {
    /// Rate of failed events over `{{.window}}`. At most 8192 characters.
    #[x_kube(validation = Rule::new("self.contains('{{.window}}')").message("errors must use {{.window}} as its range"))]
    pub errors: PromQl,
    /// Rate of all events over `{{.window}}`. At most 8192 characters.
    #[x_kube(validation = Rule::new("self.contains('{{.window}}')").message("total must use {{.window}} as its range"))]
    pub total: PromQl,
}

/// Availability preset.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AvailabilitySli {
    /// Request counter. Default: the app's request counter (`spec.metrics.requests` of its
    /// `MonitoredApp`). At most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub metric: Option<String>,
    /// Label holding the status code. Default: the app's status label. At most 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub status_label: Option<String>,
    /// Regex of status values that are failures. Default: the app's (`5..` unless it sets
    /// one). At most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub error_regex: Option<String>,
    /// Extra label matchers narrowing the requests, such as `route="/checkout"`. At most 1024
    /// characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub matchers: Option<String>,
}

/// Latency preset.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencySli {
    /// Histogram base name (without `_bucket`). Default: the app's request duration histogram
    /// (`spec.metrics.requests` of its `MonitoredApp`). At most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub histogram: Option<String>,
    /// Requests at or below this many seconds are good. Must equal one of the histogram's `le`
    /// bucket bounds, such as `0.25`.
    #[schemars(range(min = 0.0))]
    pub threshold_seconds: f64,
    /// Extra label matchers narrowing the requests. At most 1024 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub matchers: Option<String>,
}

/// Who receives the SLO's burn-rate alerts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SloAlerting {
    /// Audiences paged on fast burns (14.4× over 1h, 6× over 6h for a 30-day window). Their
    /// receivers are `receivers` when set, else the receivers that the `AlertPolicy`s of the
    /// same app give the audience for `critical` alerts. Default `[engineering]`. At most 3
    /// entries.
    #[serde(default = "default_page")]
    #[schemars(length(max = 3))]
    pub page: Vec<Audience>,
    /// Audiences ticketed on slow burns (3× over 1d, 1× over 3d). Their receivers are
    /// `receivers` when set, else the receivers that the `AlertPolicy`s of the same app give
    /// the audience for `warning` alerts. Default `[support]`. At most 3 entries.
    #[serde(default = "default_ticket")]
    #[schemars(length(max = 3))]
    pub ticket: Vec<Audience>,
    /// How long the SLI's total series may be missing before `SLOMetricsAbsent` tickets the
    /// `ticket` audiences (the `page` ones when `ticket` is empty): a dead exporter would
    /// otherwise read as 100 % good. Default `10m`; at least `1m`.
    #[serde(default = "default_absent_for")]
    pub absent_for: Duration,
    /// Where this objective's burn-rate alerts go, page and ticket alike, instead of the
    /// receivers of the app's `AlertPolicy`s; needed when no policy routes an audience above.
    /// The same receiver kinds as an `AlertPolicy` audience (secrets by Secret reference).
    /// Empty (the default): the policies' receivers. At most 16 receivers, names unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub receivers: Vec<Receiver>,
}

impl Default for SloAlerting {
    fn default() -> Self {
        Self {
            page: default_page(),
            ticket: default_ticket(),
            absent_for: default_absent_for(),
            receivers: Vec::new(),
        }
    }
}

/// Observed state of an `SLO`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SloStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and `RulesApplied` conditions. At most 16 conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), transform = crate::bounds::conditions)]
    pub conditions: Vec<Condition>,
    /// Recording rules generated.
    #[serde(default)]
    pub recording_rules: i32,
    /// Burn-rate alerts generated.
    #[serde(default)]
    pub alerts: i32,
    /// Share of the error budget left over the window, such as `87.5%`, as Prometheus last
    /// reported it (`slo:period_error_budget_remaining:ratio`); unset when Prometheus is not
    /// reachable or has no data yet. For an objective with `groupBy`, the lowest group's.
    /// At most 32 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub budget_remaining: Option<String>,
    /// Things that make the objective's figures doubtful, such as a window longer than the
    /// target Prometheus keeps data. At most 8 warnings of at most 1024 characters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(max = 1024)))]
    pub warnings: Vec<String>,
}

fn default_window() -> Duration {
    Duration::from_secs(30 * 86_400)
}
fn default_absent_for() -> Duration {
    Duration::from_secs(600)
}
fn default_page() -> Vec<Audience> {
    vec![Audience::Engineering]
}
fn default_ticket() -> Vec<Audience> {
    vec![Audience::Support]
}
