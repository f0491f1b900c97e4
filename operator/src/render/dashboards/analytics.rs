//! Panels on the analytics engine's series (`vigil:baseline:*`, `vigil:forecast:*`, see
//! `super::super::alerts::analytics`) for the anomaly and forecast rules of a view's apps: the
//! value against its learned band, and forecasts made an hour earlier against what happened.
//! A view whose apps have no such rule gets none of these panels, so no panel stays empty.

use vigil_crds::dashboard_view::PanelKind;

use super::super::alerts::{horizon_label, scoped_promql};
use super::{namespace_of, promql_str, q, Inventory, Panel, Section, SCOPE};

/// An anomaly or forecast rule of one of the view's apps.
pub(super) struct AnalyticsRule {
    name: String,
    /// The rule's query, scoped to the dashboard's variables (forecast rules).
    actual: Option<String>,
    /// What the query reads, for picking preset panels' rules.
    query: String,
}

/// The anomaly and forecast rules of the view's apps, in inventory order.
pub(super) struct AnalyticsRules {
    anomaly: Vec<AnalyticsRule>,
    forecast: Vec<AnalyticsRule>,
}

impl AnalyticsRules {
    pub(super) fn of(namespace: &str, apps: &[String], inv: &Inventory) -> Self {
        let mut out = AnalyticsRules {
            anomaly: Vec::new(),
            forecast: Vec::new(),
        };
        let policies = inv
            .policies
            .iter()
            .filter(|p| namespace_of(*p) == namespace && apps.contains(&p.spec.app_ref.name));
        for policy in policies {
            for rule in &policy.spec.rules {
                if let Some(a) = &rule.anomaly {
                    out.anomaly.push(AnalyticsRule {
                        name: rule.name.clone(),
                        actual: None,
                        query: a.query.as_str().to_owned(),
                    });
                }
                if let Some(f) = &rule.forecast {
                    out.forecast.push(AnalyticsRule {
                        name: rule.name.clone(),
                        actual: Some(scoped_promql(f.query.as_str(), SCOPE)),
                        query: f.query.as_str().to_owned(),
                    });
                }
            }
        }
        out
    }

    /// Forecast rules whose query reads `metric`.
    pub(super) fn forecasts_of(&self, metric: &str) -> Vec<&AnalyticsRule> {
        self.forecast
            .iter()
            .filter(|r| r.query.contains(metric))
            .collect()
    }

    /// Every forecast rule.
    pub(super) fn forecasts(&self) -> Vec<&AnalyticsRule> {
        self.forecast.iter().collect()
    }

    /// The section drawing every rule: the judged value with its learned band, and each
    /// forecast made an hour earlier against what happened. `None` without such rules.
    pub(super) fn section(&self) -> Option<Section> {
        let mut panels = Vec::new();
        if !self.anomaly.is_empty() {
            let sel = rule_selector(self.anomaly.iter());
            panels.push(
                Panel::new(
                    PanelKind::Timeseries,
                    "Against the learned baseline",
                    "short",
                    vec![
                        q(
                            format!("vigil:baseline:actual{{{sel}}}"),
                            "{{vigil_rule}} actual",
                        ),
                        q(
                            format!("vigil:baseline:expected{{{sel}}}"),
                            "{{vigil_rule}} expected",
                        ),
                        q(
                            format!("vigil:baseline:lower{{{sel}}}"),
                            "{{vigil_rule}} band low",
                        ),
                        q(
                            format!("vigil:baseline:upper{{{sel}}}"),
                            "{{vigil_rule}} band high",
                        ),
                    ],
                )
                .describe(
                    "The value each anomaly rule judges, the value the analytics engine expected \
                     at that moment and its 80 % band. An alert needs the value outside the band \
                     and a high anomaly score.",
                )
                .bands(self.anomaly.iter().map(|r| r.name.clone()).collect()),
            );
            panels.push(
                Panel::new(
                    PanelKind::Stat,
                    "Baseline band held (last week)",
                    "percentunit",
                    vec![q(
                        format!("min by (vigil_rule) (vigil:baseline:coverage{{{sel}}})"),
                        "{{vigil_rule}}",
                    )],
                )
                .describe(
                    "Share of last week's points inside the 80 % band: near 80 % the band can be \
                     trusted.",
                ),
            );
        }
        let forecasts = self.forecasts();
        if !forecasts.is_empty() {
            panels.push(
                forecast_panel(
                    "Forecast an hour ahead against what happened",
                    "short",
                    &forecasts,
                )
                .describe(
                    "Each forecast rule's series, and what the analytics engine forecast for \
                         it one hour earlier with its 80 % band.",
                ),
            );
        }
        (!panels.is_empty()).then(|| super::section("Baselines and forecasts", panels))
    }

    /// The management trend panels: each forecast a day ahead and the chance of exceeding
    /// capacity within the rule's horizon. Empty without forecast rules.
    pub(super) fn trend_panels(&self) -> Vec<Panel> {
        if self.forecast.is_empty() {
            return Vec::new();
        }
        let sel = rule_selector(self.forecast.iter());
        vec![
            Panel::new(
                PanelKind::Timeseries,
                "Trends: forecast a day ahead",
                "short",
                vec![
                    q(
                        format!("vigil:forecast:mean{{{sel}, horizon=\"1d\"}}"),
                        "{{vigil_rule}} in a day",
                    ),
                    q(
                        format!("vigil:forecast:upper{{{sel}, horizon=\"1d\"}}"),
                        "{{vigil_rule}} in a day, high",
                    ),
                ],
            )
            .describe("Where each forecast puts its series one day from each moment, with the upper edge of its 80 % band."),
            Panel::new(
                PanelKind::Stat,
                "Chance of exceeding capacity",
                "percentunit",
                vec![q(
                    format!("max by (vigil_rule) (vigil:forecast:capacity_probability{{{sel}}})"),
                    "{{vigil_rule}}",
                )],
            )
            .describe("Probability that each forecast series exceeds its capacity within its rule's horizon."),
        ]
    }
}

/// The preset "… against forecast" panel: `rules`' series and their forecasts made an hour
/// earlier (`vigil:forecast:* offset 1h` at the `1h` horizon), with the 80 % band.
pub(super) fn forecast_panel(title: &str, unit: &str, rules: &[&AnalyticsRule]) -> Panel {
    let mut queries = Vec::new();
    for rule in rules {
        if let Some(actual) = &rule.actual {
            queries.push(q(actual.clone(), &rule.name));
        }
        let sel = format!(
            "{SCOPE}, vigil_rule=\"{}\", horizon=\"{}\"",
            promql_str(&rule.name),
            horizon_label(&vigil_crds::Duration::from_secs(3600))
        );
        for (metric, legend) in [
            ("mean", "forecast 1h earlier"),
            ("lower", "band low"),
            ("upper", "band high"),
        ] {
            queries.push(q(
                format!("vigil:forecast:{metric}{{{sel}}} offset 1h"),
                &format!("{} {legend}", rule.name),
            ));
        }
    }
    Panel::new(PanelKind::Timeseries, title, unit, queries)
        .bands(rules.iter().map(|r| r.name.clone()).collect())
}

/// `SCOPE` and a `vigil_rule` matcher for `rules`.
fn rule_selector<'a>(rules: impl Iterator<Item = &'a AnalyticsRule>) -> String {
    let mut names: Vec<String> = rules.map(|r| regex_quote(&r.name)).collect();
    names.sort();
    names.dedup();
    format!("{SCOPE}, vigil_rule=~\"{}\"", promql_str(&names.join("|")))
}

/// Rule names are UpperCamelCase letters and digits (CRD validation), so nothing needs
/// escaping; anything else is escaped anyway.
fn regex_quote(name: &str) -> String {
    name.chars()
        .flat_map(|c| {
            let special = !c.is_ascii_alphanumeric() && c != '_';
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}
