//! SLO rules: renders an `SLO` into Prometheus recording rules (SLI error ratios over the
//! standard windows, objective, error budget, budget remaining, current burn rate) and
//! multi-window multi-burn-rate alerts in the style of the Google SRE workbook (chapter
//! "Alerting on SLOs") and Sloth. The Alertmanager renderer routes and inhibits what these
//! alerts fire.
//!
//! # Contract with the Alertmanager renderer
//! Every burn-rate alert is named [`BURN_ALERT`] (`SLOErrorBudgetBurn`) and carries:
//!
//! | label | values |
//! |---|---|
//! | `namespace`, `app` | the SLO's namespace and app (forced) |
//! | `slo` | the SLO's name |
//! | `vigil_slo_alert`, `sloth_severity` | `page` (fast tiers) or `ticket` (slow tiers): what routing matches |
//! | `severity` | `critical` for page, `warning` for ticket by default; configurable ([`SloSeverities`]) |
//! | `audience` | one alert per audience in `spec.alerting.page` (page tiers) or `.ticket` |
//! | `vigil_burn_tier` | `page-fast`, `page-slow`, `ticket-fast`, `ticket-slow` |
//! | the SLO's `spec.labels`, and its `spec.groupBy` labels | as the SLI's series carry them |
//!
//! [`ABSENT_ALERT`] (`SLOMetricsAbsent`) carries the same labels as a ticket (no tier) and fires
//! when the SLI's total series have been missing for `spec.alerting.absentFor`.
//!
//! [`BUDGET_FORECAST_ALERT`] (`SLOErrorBudgetExhaustionForecast`) carries the same labels as a
//! ticket (no tier) and fires when the analytics engine (`vigil-operator analytics`) gives the
//! budget at least [`BUDGET_FORECAST_PROBABILITY`] of running out within its forecast horizon
//! ([`budget_forecast_horizon`]): it reads the engine's `vigil:slo:budget_exhaustion_*` series,
//! which carry the SLO's recording labels, so it is one alert per `groupBy` group. Without the
//! engine those series do not exist and the alert stays silent; there is no missing-engine
//! alert for SLOs, since an objective does not ask for analytics the way an `anomaly` or
//! `forecast` rule does (the budget forecast is an extra wherever the engine runs).
//!
//! The tiers, fastest first, for a 30-day window:
//!
//! | `vigil_burn_tier` | burn factor | long window | short window | budget spent when it fires |
//! |---|---|---|---|---|
//! | `page-fast` | 14.4× | 1h | 5m | 2 % |
//! | `page-slow` | 6× | 6h | 30m | 5 % |
//! | `ticket-fast` | 3× | 1d | 2h | 10 % |
//! | `ticket-slow` | 1× | 3d | 6h | 10 % |
//!
//! A fast burn also satisfies every slower tier, so the suggested inhibition is: a firing
//! alert with tier T inhibits alerts of every later tier in [`BURN_TIERS`] order, with
//! `equal: [namespace, app, slo]` (source `vigil_burn_tier="page-fast"` → targets
//! `vigil_burn_tier=~"page-slow|ticket-fast|ticket-slow"`, and so on). The tier names stay the
//! same whatever the SLO window; the windows themselves scale (see [`burn_tiers`]).
//!
//! # Recording rules
//! Every series carries `namespace`, `app`, `slo`, the SLO's `spec.labels` and Sloth's
//! `sloth_id`, `sloth_service` (the app) and `sloth_slo`, so Sloth's Grafana dashboards read
//! them as they are. With `spec.groupBy` the SLI ratios, burn rates and budgets are one series
//! per group.
//!
//! | series | what |
//! |---|---|
//! | `slo:sli_error:ratio_rate<window>` | error ratio over each window used; windows under 1d from the raw series, longer ones as `avg_over_time` of the shortest window's recording |
//! | `slo:objective:ratio`, `slo:error_budget:ratio`, `slo:time_period:days` | the objective, its budget and the window |
//! | `slo:current_burn_rate:ratio`, `slo:period_burn_rate:ratio` | burn rate over the shortest window and over the whole window |
//! | `slo:period_error_budget_remaining:ratio` (and its older name `slo:error_budget_remaining:ratio`) | budget left over the window |
//! | `vigil_slo_info`, `sloth_slo_info` | 1, with the objective (and window) as labels |

use std::collections::BTreeMap;

use kube::ResourceExt;
use vigil_crds::monitored_app::RequestMetrics;
use vigil_crds::slo::{AvailabilitySli, LatencySli, Sli};
use vigil_crds::{Audience, MonitoredApp, Slo};

use super::alerts::{duration, num, prometheus_rule_object, scoped_promql};
use super::rules::{AlertingRule, RecordingRule, Rule, RuleFile, RuleGroup};
use super::{app_matcher, child_meta, namespace_of, promql_str};

/// Name of every burn-rate alert.
pub const BURN_ALERT: &str = "SLOErrorBudgetBurn";
/// Label holding the burn tier.
pub const BURN_TIER_LABEL: &str = "vigil_burn_tier";
/// Evaluation interval of SLO rule groups.
pub const GROUP_INTERVAL: &str = "1m";
/// Length of the reference window the SRE workbook's burn windows are given for.
const REFERENCE_WINDOW_SECS: f64 = 30.0 * 86_400.0;

/// One multi-window burn-rate tier.
#[derive(Clone, Debug, PartialEq)]
pub struct BurnTier {
    /// Value of the `vigil_burn_tier` label.
    pub name: &'static str,
    /// `page` or `ticket`: the `severity` label.
    pub severity: &'static str,
    /// How many times faster than "exactly spend the budget over the window" the errors come.
    pub factor: f64,
    /// Long window, in seconds: the burn must have lasted this long.
    pub long_secs: f64,
    /// Short window, in seconds: and still be going on (stops the alert soon after recovery).
    pub short_secs: f64,
}

/// The tiers for a 30-day window, fastest first: (name, severity, factor, long, short).
pub const BURN_TIERS: [(&str, &str, f64, f64, f64); 4] = [
    ("page-fast", "page", 14.4, 3_600.0, 300.0),
    ("page-slow", "page", 6.0, 21_600.0, 1_800.0),
    ("ticket-fast", "ticket", 3.0, 86_400.0, 7_200.0),
    ("ticket-slow", "ticket", 1.0, 259_200.0, 21_600.0),
];

/// The burn tiers for an SLO window of `window_secs`. The workbook's windows are for 30 days;
/// for another window both the long and short windows are scaled by `window / 30d` and rounded
/// (to the minute below 1h, to 5 minutes below 1d, to the hour above, and never under 5m
/// so a rate always spans several scrapes), while the burn factors
/// stay: a factor F over a long window L spends F × L / window of the budget, so scaling L
/// with the window keeps each tier's meaning (2 %, 5 %, 10 %, 10 % of the budget).
pub fn burn_tiers(window_secs: f64) -> Vec<BurnTier> {
    let scale = window_secs / REFERENCE_WINDOW_SECS;
    BURN_TIERS
        .iter()
        .map(|&(name, severity, factor, long, short)| BurnTier {
            name,
            severity,
            factor,
            long_secs: round_window(long * scale),
            short_secs: round_window(short * scale),
        })
        .collect()
}

fn round_window(secs: f64) -> f64 {
    let step = if secs < 3_600.0 {
        60.0
    } else if secs < 86_400.0 {
        300.0
    } else {
        3_600.0
    };
    ((secs / step).round() * step).max(300.0)
}

/// Every window an SLI error ratio is recorded for: the tiers' windows and the whole SLO
/// window, shortest first.
pub fn sli_windows(window_secs: f64) -> Vec<f64> {
    let mut out: Vec<f64> = burn_tiers(window_secs)
        .iter()
        .flat_map(|t| [t.long_secs, t.short_secs])
        .chain([window_secs])
        .collect();
    out.sort_by(f64::total_cmp);
    out.dedup();
    out
}

/// Name of the alert fired when the SLI's series are missing.
pub const ABSENT_ALERT: &str = "SLOMetricsAbsent";
/// Name of the alert fired when the analytics engine forecasts the error budget to run out.
pub const BUDGET_FORECAST_ALERT: &str = "SLOErrorBudgetExhaustionForecast";
/// Probability of running out within the forecast horizon from which
/// [`BUDGET_FORECAST_ALERT`] fires.
pub const BUDGET_FORECAST_PROBABILITY: f64 = 0.5;

/// How far ahead the analytics engine forecasts an SLO's error budget, in seconds, for a window
/// of `window_secs`: a quarter of the window, at least an hour and at most a week, in whole
/// hours. The forecast's band is calibrated by backtests that each need this much history
/// after their training part, so the horizon stays well inside the window the engine reads.
pub fn budget_forecast_horizon(window_secs: f64) -> f64 {
    ((window_secs / 4.0).clamp(3_600.0, 7.0 * 86_400.0) / 3_600.0).floor() * 3_600.0
}
/// Label keeping Vigil's own alert class (`page` or `ticket`) whatever `severity` it maps to.
pub const SLO_ALERT_LABEL: &str = "vigil_slo_alert";
/// Windows this long or longer are averaged from the shortest window's recording instead of
/// being computed from the raw series.
const AVERAGED_FROM_SECS: f64 = 86_400.0;

/// The `severity` label value of each SLO alert class. Vigil's classes stay in
/// [`SLO_ALERT_LABEL`] (and Sloth's `sloth_severity`), so routing does not depend on this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SloSeverities {
    /// `severity` of page alerts (fast burns). Default `critical`.
    pub page: String,
    /// `severity` of ticket alerts (slow burns, absent SLI, budget forecast). Default `warning`.
    pub ticket: String,
}

impl Default for SloSeverities {
    fn default() -> Self {
        Self {
            page: "critical".to_owned(),
            ticket: "warning".to_owned(),
        }
    }
}

impl SloSeverities {
    /// The `severity` value of Vigil's alert class `class` (`page` or `ticket`).
    pub fn of(&self, class: &str) -> &str {
        if class == "page" {
            &self.page
        } else {
            &self.ticket
        }
    }
}

/// The `sloth_id` of an objective: unique per namespace, app and name.
pub fn sloth_id(namespace: &str, app: &str, slo: &str) -> String {
    format!("{namespace}-{app}-{slo}")
}

/// The labels every recording rule of `slo` (of the `MonitoredApp` named `app`) puts on its
/// series: the SLO's `spec.labels`, then `namespace`, `app`, `slo` and Sloth's `sloth_id`,
/// `sloth_service` and `sloth_slo`, which win over them (validation forbids the clash anyway).
pub fn recording_labels(slo: &Slo, app: &str) -> BTreeMap<String, String> {
    let ns = namespace_of(slo);
    let name = slo.name_any();
    let mut labels: BTreeMap<String, String> = slo.spec.labels.clone();
    labels.extend([
        ("namespace".to_owned(), ns.clone()),
        ("app".to_owned(), app.to_owned()),
        ("slo".to_owned(), name.clone()),
        ("sloth_id".to_owned(), sloth_id(&ns, app, &name)),
        ("sloth_service".to_owned(), app.to_owned()),
        ("sloth_slo".to_owned(), name),
    ]);
    labels
}

/// The SLI error ratio of `slo` over `window_secs` computed from the raw series, as the
/// recording rule `slo:sli_error:ratio_rate<window>` of a window under 1d evaluates it: one
/// series per `groupBy` group, nothing (rather than NaN) for a group without traffic.
/// The analytics engine reads it where the recording has no history yet.
pub fn raw_error_ratio(slo: &Slo, app: &MonitoredApp, window_secs: f64) -> String {
    let app_sel = app_matcher(&namespace_of(slo), &app.name_any());
    format!(
        "(\n{}\n) >= 0",
        sli_error_ratio(
            &slo.spec.sli,
            &app.spec.request_metrics(),
            &app_sel,
            &slo.spec.group_by,
            &duration(window_secs)
        )
    )
}

/// The rule file of one `SLO` with the default severities.
pub fn slo_rules(slo: &Slo, app: &MonitoredApp) -> RuleFile {
    slo_rules_with(slo, app, &SloSeverities::default())
}

/// The rule file of one `SLO`: one group `vigil.<namespace>.slo.<name>` with the recording
/// rules, the burn-rate alerts and the absent-SLI alert, `severity` set from `severities`.
pub fn slo_rules_with(slo: &Slo, app: &MonitoredApp, severities: &SloSeverities) -> RuleFile {
    let ns = namespace_of(slo);
    let name = slo.name_any();
    let app_name = app.name_any();
    let spec = &slo.spec;
    let window_secs = spec.window.as_secs_f64();
    let budget = (100.0 - spec.objective) / 100.0;
    let labels = recording_labels(slo, &app_name);
    let sel = format!(
        "{}, slo=\"{}\"",
        app_matcher(&ns, &app_name),
        promql_str(&name)
    );
    let record_with = |record: &str, expr: String, extra: &[(&str, String)]| {
        let mut labels = labels.clone();
        labels.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        Rule::Recording(RecordingRule {
            record: record.to_owned(),
            expr,
            labels,
        })
    };
    let record = |record: &str, expr: String| record_with(record, expr, &[]);
    let ratio = |secs: f64| format!("slo:sli_error:ratio_rate{}", duration(secs));
    let windows = sli_windows(window_secs);
    let shortest = windows.first().copied().unwrap_or(window_secs);
    let app_sel = app_matcher(&ns, &app_name);

    // Short windows from the raw series; long ones as the time average of the shortest
    // window's recording, so a 30-day ratio costs one series' samples rather than a 30-day
    // rate over every raw series. A window without traffic (0 / 0) records nothing rather
    // than NaN, which would poison every average over it.
    let mut rules: Vec<Rule> = windows
        .iter()
        .map(|&w| {
            let expr = if w >= AVERAGED_FROM_SECS && w > shortest {
                format!(
                    "avg_over_time({}{{{sel}}}[{}])",
                    ratio(shortest),
                    duration(w)
                )
            } else {
                raw_error_ratio(slo, app, w)
            };
            record(&ratio(w), expr)
        })
        .collect();
    rules.push(record(
        "slo:objective:ratio",
        format!("vector({})", num(spec.objective / 100.0)),
    ));
    rules.push(record(
        "slo:error_budget:ratio",
        format!("vector({})", num(budget)),
    ));
    rules.push(record(
        "slo:time_period:days",
        format!("vector({})", num(window_secs / 86_400.0)),
    ));
    rules.push(record(
        "slo:current_burn_rate:ratio",
        format!("{}{{{sel}}} / {}", ratio(shortest), num(budget)),
    ));
    rules.push(record(
        "slo:period_burn_rate:ratio",
        format!("{}{{{sel}}} / {}", ratio(window_secs), num(budget)),
    ));
    rules.push(record(
        "slo:period_error_budget_remaining:ratio",
        format!("1 - slo:period_burn_rate:ratio{{{sel}}}"),
    ));
    rules.push(record(
        "slo:error_budget_remaining:ratio",
        format!("slo:period_error_budget_remaining:ratio{{{sel}}}"),
    ));
    rules.push(record_with(
        "vigil_slo_info",
        "vector(1)".to_owned(),
        &[
            ("objective", num(spec.objective)),
            ("window", spec.window.to_string()),
        ],
    ));
    rules.push(record_with(
        "sloth_slo_info",
        "vector(1)".to_owned(),
        &[
            ("sloth_objective", num(spec.objective)),
            ("sloth_mode", "vigil".to_owned()),
            ("sloth_spec", vigil_crds::API_VERSION.to_owned()),
        ],
    ));

    let objective_text = format!("{} % over {}", num(spec.objective), spec.window);
    let what = spec
        .description
        .clone()
        .unwrap_or_else(|| format!("objective {objective_text}"));
    let alert_labels = |class: &str, audience: Audience| {
        let mut out = spec.labels.clone();
        out.extend([
            ("namespace".to_owned(), ns.clone()),
            ("app".to_owned(), app_name.clone()),
            ("slo".to_owned(), name.clone()),
            ("severity".to_owned(), severities.of(class).to_owned()),
            (SLO_ALERT_LABEL.to_owned(), class.to_owned()),
            ("sloth_severity".to_owned(), class.to_owned()),
            ("audience".to_owned(), audience.as_str().to_owned()),
        ]);
        out
    };
    let unique = |audiences: &[Audience]| {
        let mut sorted: Vec<Audience> = audiences.to_vec();
        sorted.sort();
        sorted.dedup();
        sorted
    };
    // The budget of this alert's own group, when the objective is grouped.
    let group_matchers: String = spec.group_by.iter().map(|l| format!(", {l}=%q")).collect();
    let group_args: String = spec
        .group_by
        .iter()
        .map(|l| format!(" $labels.{l}"))
        .collect();
    let remaining = format!(
        "{{{{ with printf `slo:error_budget_remaining:ratio{{namespace=%q, app=%q, slo=%q{group_matchers}}}` \
         $labels.namespace $labels.app $labels.slo{group_args} | query }}}}{{{{ with . | first }}}}\
         {{{{ .Value | humanizePercentage }}}}{{{{ end }}}}{{{{ else }}}}unknown{{{{ end }}}}"
    );
    for tier in burn_tiers(window_secs) {
        let audiences: &[Audience] = if tier.severity == "page" {
            &spec.alerting.page
        } else {
            &spec.alerting.ticket
        };
        let (long, short) = (duration(tier.long_secs), duration(tier.short_secs));
        let factor = num(tier.factor);
        // Burn rate = error ratio / error budget, so `$value` is the burn rate itself. It is
        // rounded to 0.001 before the comparison so that a burn of exactly F× (an error ratio
        // of exactly F × budget) fires despite float rounding in the division.
        let expr = format!(
            "round({long_r}{{{sel}}} / {b}, 0.001) >= {factor}\nand\n\
             round({short_r}{{{sel}}} / {b}, 0.001) >= {factor}",
            long_r = ratio(tier.long_secs),
            short_r = ratio(tier.short_secs),
            b = num(budget),
        );
        let spent = num((tier.factor * tier.long_secs / window_secs * 1000.0).round() / 10.0);
        for audience in unique(audiences) {
            let mut labels = alert_labels(tier.severity, audience);
            labels.insert(BURN_TIER_LABEL.into(), tier.name.into());
            let annotations = BTreeMap::from([
                (
                    "summary".to_owned(),
                    format!("SLO {name} of {ns}/{app_name} is burning its error budget {factor}× or more faster than sustainable"),
                ),
                (
                    "description".to_owned(),
                    format!(
                        "{what}: the error budget is burning {{{{ $value | printf \"%.1f\" }}}}× \
                         faster than the objective allows over the last {long} (and still over the \
                         last {short}); {factor}× for {long} spends {spent} % of the {window} budget. \
                         Budget remaining: {remaining}.",
                        window = spec.window,
                    ),
                ),
                ("burn_rate".to_owned(), "{{ $value | printf \"%.1f\" }}".to_owned()),
                ("budget_remaining".to_owned(), remaining.clone()),
                ("objective".to_owned(), objective_text.clone()),
            ]);
            rules.push(Rule::Alerting(AlertingRule {
                alert: BURN_ALERT.into(),
                expr: expr.clone(),
                for_: None,
                labels,
                annotations,
            }));
        }
    }

    // A dead exporter makes the SLI vanish, not fail: without this alert it reads as 100 %
    // good. The total is evaluated over `absentFor`, so it is absent only once no sample at all
    // arrived for that long (zero traffic is a rate of 0, not an absence).
    let absent_for = spec.alerting.absent_for.as_secs_f64();
    let absent_expr = format!(
        "absent(\n{}\n)",
        sli_total(
            &spec.sli,
            &app.spec.request_metrics(),
            &app_sel,
            &spec.group_by,
            &duration(absent_for)
        )
    );
    let absent_audiences = if spec.alerting.ticket.is_empty() {
        &spec.alerting.page
    } else {
        &spec.alerting.ticket
    };
    for audience in unique(absent_audiences) {
        rules.push(Rule::Alerting(AlertingRule {
            alert: ABSENT_ALERT.into(),
            expr: absent_expr.clone(),
            for_: None,
            labels: alert_labels("ticket", audience),
            annotations: BTreeMap::from([
                (
                    "summary".to_owned(),
                    format!("SLO {name} of {ns}/{app_name} has no SLI data"),
                ),
                (
                    "description".to_owned(),
                    format!(
                        "{what}: no series of the SLI's total events arrived for {}; the \
                         exporter or the scrape may be down, and the objective cannot be \
                         measured.",
                        spec.alerting.absent_for
                    ),
                ),
                ("objective".to_owned(), objective_text.clone()),
            ]),
        }));
    }
    // The engine's budget forecast: its series carry the SLO's recording labels (and the
    // groupBy labels), so `$labels` name the group whose exhaustion time the text shows.
    let horizon = duration(budget_forecast_horizon(window_secs));
    let exhaustion = format!(
        "{{{{ with printf `vigil:slo:budget_exhaustion_seconds{{namespace=%q, app=%q, slo=%q{group_matchers}}}` \
         $labels.namespace $labels.app $labels.slo{group_args} | query }}}}{{{{ with . | first }}}}\
         in {{{{ .Value | humanizeDuration }}}}{{{{ end }}}}{{{{ else }}}}within {horizon}{{{{ end }}}}"
    );
    let group_text: String = spec
        .group_by
        .iter()
        .map(|l| format!(" {l}={{{{ $labels.{l} }}}}"))
        .collect();
    let group_text = if group_text.is_empty() {
        String::new()
    } else {
        format!(" for{group_text}")
    };
    for audience in unique(absent_audiences) {
        rules.push(Rule::Alerting(AlertingRule {
            alert: BUDGET_FORECAST_ALERT.into(),
            expr: format!(
                "vigil:slo:budget_exhaustion_probability{{{sel}}} >= {}",
                num(BUDGET_FORECAST_PROBABILITY)
            ),
            for_: None,
            labels: alert_labels("ticket", audience),
            annotations: BTreeMap::from([
                (
                    "summary".to_owned(),
                    format!("SLO {name} of {ns}/{app_name} is forecast to run out of error budget"),
                ),
                (
                    "description".to_owned(),
                    format!(
                        "{what}: the error budget of {name}{group_text} is forecast to run out \
                         {exhaustion} (probability {{{{ $value | humanizePercentage }}}} within \
                         {horizon}), by the analytics engine's forecast of the SLI's error ratio \
                         over the rolling {window}. Budget remaining: {remaining}.",
                        window = spec.window,
                    ),
                ),
                (
                    "probability".to_owned(),
                    "{{ $value | humanizePercentage }}".to_owned(),
                ),
                ("exhaustion".to_owned(), exhaustion.clone()),
                ("budget_remaining".to_owned(), remaining.clone()),
                ("objective".to_owned(), objective_text.clone()),
            ]),
        }));
    }
    RuleFile {
        groups: vec![RuleGroup {
            name: format!("vigil.{ns}.slo.{name}"),
            interval: Some(GROUP_INTERVAL.into()),
            rules,
        }],
    }
}

/// The warning for an objective whose window is longer than the target Prometheus keeps data
/// (`retention`, when known): its whole-window ratio, burn rate and budget then only cover the
/// retained part, and read better than they are.
pub fn retention_warning(slo: &Slo, retention: Option<std::time::Duration>) -> Option<String> {
    let retention = retention?;
    let window = slo.spec.window.as_secs_f64();
    (window > retention.as_secs_f64()).then(|| {
        format!(
            "window {} is longer than the {} of data the target Prometheus keeps \
             (--prometheus-retention): the error ratio, burn rate and budget over the window \
             only cover the last {}; raise the retention or shorten the window",
            slo.spec.window,
            duration(retention.as_secs_f64()),
            duration(retention.as_secs_f64()),
        )
    })
}

/// The `monitoring.coreos.com/v1` `PrometheusRule` carrying `file`, named `vigil-slo-<name>`
/// in the SLO's namespace and owned by it.
pub fn slo_prometheus_rule(slo: &Slo, file: &RuleFile) -> serde_json::Value {
    prometheus_rule_object(
        child_meta(slo, format!("vigil-slo-{}", slo.name_any())),
        file,
    )
}

/// `sum by (namespace, app, <groupBy>)`: the presets' aggregation.
fn preset_by(group_by: &[String]) -> String {
    let mut labels = vec!["namespace", "app"];
    labels.extend(group_by.iter().map(String::as_str));
    format!("sum by ({})", labels.join(", "))
}

/// The SLI as an error ratio (bad / all events) over `window`, scoped to the app. A missing
/// error series (no error ever happened) counts as 0 errors rather than leaving the ratio
/// empty.
/// The `availability` and `latency` presets read the app's request metrics (`requests`) unless
/// they name their own.
fn sli_error_ratio(
    sli: &Sli,
    requests: &RequestMetrics,
    app_sel: &str,
    group_by: &[String],
    window: &str,
) -> String {
    let user =
        |q: &vigil_crds::PromQl| scoped_promql(&q.as_str().replace("{{.window}}", window), app_sel);
    if let Some(gt) = &sli.good_total {
        let (good, total) = (user(&gt.good), user(&gt.total));
        format!("1 - (\n  (({good}) or ({total}) * 0)\n  / ({total})\n)")
    } else if let Some(et) = &sli.error_total {
        let (errors, total) = (user(&et.errors), user(&et.total));
        format!("(({errors}) or ({total}) * 0)\n/ ({total})")
    } else if let Some(av) = &sli.availability {
        availability_ratio(av, requests, app_sel, group_by, window)
    } else if let Some(lat) = &sli.latency {
        latency_ratio(lat, requests, app_sel, group_by, window)
    } else {
        // Validation guarantees one SLI form; with none, a ratio that is never recorded.
        "vector(0) unless vector(0)".to_owned()
    }
}

/// The SLI's total event rate over `window`, scoped to the app: what is absent when the SLI's
/// metrics are.
fn sli_total(
    sli: &Sli,
    requests: &RequestMetrics,
    app_sel: &str,
    group_by: &[String],
    window: &str,
) -> String {
    let user =
        |q: &vigil_crds::PromQl| scoped_promql(&q.as_str().replace("{{.window}}", window), app_sel);
    if let Some(gt) = &sli.good_total {
        user(&gt.total)
    } else if let Some(et) = &sli.error_total {
        user(&et.total)
    } else if let Some(av) = &sli.availability {
        let sel = with_extra(app_sel, av.matchers.as_ref());
        let m = requests.overridden(av.metric.as_ref(), None, None, None);
        format!(
            "{} (rate({}{{{sel}}}[{window}]))",
            preset_by(group_by),
            m.counter
        )
    } else if let Some(lat) = &sli.latency {
        let sel = with_extra(app_sel, lat.matchers.as_ref());
        let m = requests.overridden(None, None, None, lat.histogram.as_ref());
        format!(
            "{} (rate({}_count{{{sel}}}[{window}]))",
            preset_by(group_by),
            m.duration_histogram
        )
    } else {
        "vector(0) unless vector(0)".to_owned()
    }
}

fn with_extra(sel: &str, extra: Option<&String>) -> String {
    match extra.map(|m| m.trim()).filter(|m| !m.is_empty()) {
        Some(m) => format!("{sel}, {m}"),
        None => sel.to_owned(),
    }
}

fn availability_ratio(
    av: &AvailabilitySli,
    requests: &RequestMetrics,
    app_sel: &str,
    group_by: &[String],
    window: &str,
) -> String {
    let sel = with_extra(app_sel, av.matchers.as_ref());
    let by = preset_by(group_by);
    let m = requests.overridden(
        av.metric.as_ref(),
        av.status_label.as_ref(),
        av.error_regex.as_ref(),
        None,
    );
    let total = format!("{by} (rate({}{{{sel}}}[{window}]))", m.counter);
    let errors = format!(
        "{by} (rate({}{{{sel}, {}=~\"{}\"}}[{window}]))",
        m.counter,
        m.status_label,
        promql_str(&m.error_regex)
    );
    format!("({errors}\n  or {total} * 0)\n/ {total}")
}

fn latency_ratio(
    lat: &LatencySli,
    requests: &RequestMetrics,
    app_sel: &str,
    group_by: &[String],
    window: &str,
) -> String {
    let sel = with_extra(app_sel, lat.matchers.as_ref());
    let le = num(lat.threshold_seconds);
    let by = preset_by(group_by);
    // Client libraries write whole bounds as `1` (Go) or `1.0` (Python, Java): match both.
    let le_matcher = if le.contains('.') {
        format!("le=\"{le}\"")
    } else {
        format!("le=~\"{le}(\\\\.0)?\"")
    };
    format!(
        "1 - (\n  {by} (rate({h}_bucket{{{sel}, {le_matcher}}}[{window}]))\n  \
         / {by} (rate({h}_count{{{sel}}}[{window}]))\n)",
        h = requests
            .overridden(None, None, None, lat.histogram.as_ref())
            .duration_histogram
    )
}

#[cfg(test)]
mod tests;
