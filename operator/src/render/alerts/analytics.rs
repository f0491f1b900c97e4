//! Alert rules of `anomaly` and `forecast` rules: plain PromQL over the series the analytics
//! engine (`vigil-operator analytics`) publishes, so routing, `for`, escalation and context
//! work as for every other rule, and one `VigilAnalyticsMissing` alert per such rule that
//! fires when the engine's series for it are absent.
//!
//! The engine labels each series it publishes with `namespace`, `app`, `vigil_policy`,
//! `vigil_rule` and the labels of the rule query's result series; a rule's series are selected
//! by the first three and `vigil_rule` (see [`engine_selector`]). Context annotations read the
//! series of the alert's own result series: a template builds a selector from the alert's
//! labels (see [`SERIES_SELECTOR`]).

use vigil_crds::alert_policy::{AlertRule, AnomalyRule, Direction, ForecastRule};
use vigil_crds::Duration;

use super::{num, promql_str, tmpl_query, BaseAlert, Phrase, Scope, POLICY_LABEL, RULE_LABEL};

#[cfg(test)]
mod tests;

/// Name of the alert that fires when the engine publishes nothing for a rule.
pub const MISSING_ALERT: &str = "VigilAnalyticsMissing";

/// How long a rule's engine series may be absent before [`MISSING_ALERT`] fires: longer than
/// the engine needs to pick up a new rule and publish its first fit, so a rollout or a restart
/// (which re-reads history) does not page.
pub const MISSING_FOR_SECS: f64 = 30.0 * 60.0;

/// Go template that sets `$series` to a matcher list (`k="v", …, `) of the alert's labels
/// except the metric name, `alertname` (which escalation copies carry) and `horizon` (which
/// the capacity series lack): the labels the engine gave the series the alert came from, so
/// context queries read that series and not a sibling's. `%q` quotes values the way PromQL
/// reads them, and PromQL allows the trailing comma.
const SERIES_SELECTOR: &str = "{{ $series := \"\" }}{{ range $k, $v := $labels }}{{ if and (ne $k \"__name__\") (ne $k \"alertname\") (ne $k \"horizon\") }}{{ $series = printf \"%s%s=%q, \" $series $k $v }}{{ end }}{{ end }}";

/// `namespace`, `vigil_policy` and `vigil_rule` matchers selecting one rule's engine series.
fn engine_selector(ctx: &Scope, rule: &AlertRule) -> String {
    format!(
        "namespace=\"{}\", {POLICY_LABEL}=\"{}\", {RULE_LABEL}=\"{}\"",
        promql_str(&ctx.ns),
        promql_str(&ctx.policy),
        promql_str(&rule.name)
    )
}

/// A phrase showing `body` with the first sample of `promql`, in which each `%s` stands for the
/// matcher list of the alert's series.
fn series_phrase(promql: &str, body: &str, otherwise: Option<&str>) -> Phrase {
    Phrase::query(
        tmpl_query(
            &promql.replace('%', "%%").replace("%%s", "%[1]s"),
            &["$series"],
        ),
        body,
        otherwise,
    )
}

/// The horizon label value the engine writes for `horizon`: Prometheus duration text in its
/// largest exact unit (`6h`, `1d`), whatever spelling the rule used (`360m`).
pub fn horizon_label(horizon: &Duration) -> String {
    // Durations are positive; sub-second horizons round to the 1 s the engine can use.
    Duration::from_secs(horizon.as_secs_f64().round().max(1.0) as u64).to_string()
}

/// Anomaly rule: the engine's score is above the sensitivity's threshold while the judged
/// value is outside the 80 % band on the watched side. `$value` is the score.
pub(super) fn anomaly(ctx: &Scope, rule: &AlertRule, r: &AnomalyRule, base: &mut BaseAlert) {
    let sel = engine_selector(ctx, rule);
    let threshold = num(r.sensitivity.score_threshold());
    let actual = format!("vigil:baseline:actual{{{sel}}}");
    let above = format!("{actual} > vigil:baseline:upper{{{sel}}}");
    let below = format!("{actual} < vigil:baseline:lower{{{sel}}}");
    let outside = match r.direction {
        Direction::Up => above,
        Direction::Down => below,
        Direction::Both => format!("(\n    {above}\n  or\n    {below}\n  )"),
    };
    base.expr = format!("vigil:anomaly:score{{{sel}}} > {threshold}\nand\n  {outside}");
    base.summary = format!(
        "{} in {}/{} left its learned baseline",
        rule.name, ctx.ns, ctx.app
    );
    let side = match r.direction {
        Direction::Up => "above",
        Direction::Down => "below",
        Direction::Both => "outside",
    };
    base.headline = format!(
        "{} is {side} its learned 80 % band with anomaly score {{{{ $value | printf \"%.2f\" }}}} \
         (alerts above {threshold})",
        rule.name
    );
    let now = series_phrase(
        "vigil:baseline:actual{%s}",
        "now {{ .Value | humanize }}",
        Some("current value unknown"),
    );
    let expected = series_phrase(
        "vigil:baseline:expected{%s}",
        ", expected {{ .Value | humanize }}",
        None,
    );
    let spread = series_phrase(
        "(vigil:baseline:upper{%s} - vigil:baseline:lower{%s}) / 2",
        " ± {{ .Value | humanize }} at this hour",
        None,
    );
    let coverage = series_phrase(
        "vigil:baseline:coverage{%s}",
        "held {{ .Value | humanizePercentage }} of the time last week",
        Some("coverage not measured yet"),
    );
    base.extra.insert(
        "baseline".into(),
        format!(
            "{SERIES_SELECTOR}{}{}{} (80 % band, {}), learned with {} seasonality.",
            now.render(""),
            expected.render(""),
            spread.render(""),
            coverage.render(""),
            seasonality_text(r.seasonality),
        ),
    );
}

fn seasonality_text(s: vigil_crds::alert_policy::Seasonality) -> &'static str {
    use vigil_crds::alert_policy::Seasonality;
    match s {
        Seasonality::None => "no",
        Seasonality::Daily => "daily",
        Seasonality::Weekly => "weekly",
        Seasonality::DailyAndWeekly => "daily and weekly",
    }
}

/// Forecast rule: the upper edge of the 80 % band at the rule's horizon is above the capacity,
/// that is, the engine gives at least about 10 % to exceeding it at the horizon. The band is
/// what the dashboards draw, so the alert fires exactly when the drawn band crosses the
/// capacity line. `$value` is that upper edge.
pub(super) fn forecast(ctx: &Scope, rule: &AlertRule, r: &ForecastRule, base: &mut BaseAlert) {
    let horizon = horizon_label(&r.horizon);
    let sel = engine_selector(ctx, rule);
    let capacity = num(r.capacity);
    base.expr = format!("vigil:forecast:upper{{{sel}, horizon=\"{horizon}\"}} > {capacity}");
    base.summary = format!(
        "{}/{} is forecast to exceed its capacity of {capacity} within {}",
        ctx.ns, ctx.app, r.horizon
    );
    base.headline = format!(
        "The forecast's 80 % band reaches {{{{ $value | humanize }}}} in {} (capacity {capacity})",
        r.horizon
    );
    let at_horizon = |metric: &str| format!("{metric}{{%shorizon=\"{horizon}\"}}");
    let mean = series_phrase(
        &at_horizon("vigil:forecast:mean"),
        &format!("expected {{{{ .Value | humanize }}}} in {}", r.horizon),
        None,
    );
    let band = series_phrase(
        &at_horizon("vigil:forecast:lower"),
        " (80 % band from {{ .Value | humanize }}",
        None,
    );
    let upper = series_phrase(
        &at_horizon("vigil:forecast:upper"),
        " to {{ .Value | humanize }})",
        None,
    );
    let coverage = series_phrase(
        &at_horizon("vigil:forecast:coverage"),
        ", held {{ .Value | humanizePercentage }} of the time on past forecasts",
        None,
    );
    let crossing = series_phrase(
        "vigil:forecast:capacity_crossing_seconds{%s}",
        &format!("capacity {capacity} crossed in {{{{ .Value | humanizeDuration }}}}"),
        Some(&format!(
            "capacity {capacity} not crossed by the band within the forecast"
        )),
    );
    let probability = series_phrase(
        "vigil:forecast:capacity_probability{%s}",
        &format!(
            ", probability {{{{ .Value | humanizePercentage }}}} of exceeding it within {}",
            r.horizon
        ),
        None,
    );
    base.extra.insert(
        "forecast".into(),
        format!(
            "{SERIES_SELECTOR}{}{}{}{}; {}{}.",
            mean.render(""),
            band.render(""),
            upper.render(""),
            coverage.render(""),
            crossing.render(""),
            probability.render(""),
        ),
    );
}

/// The expression of [`MISSING_ALERT`] for an anomaly or forecast rule: the engine publishes
/// no series for it (the score, or the upper band at the rule's horizon, whose `horizon` label
/// the alert then carries).
pub(super) fn missing_expr(ctx: &Scope, rule: &AlertRule) -> Option<String> {
    let sel = engine_selector(ctx, rule);
    if rule.anomaly.is_some() {
        Some(format!("absent(vigil:anomaly:score{{{sel}}})"))
    } else {
        rule.forecast.as_ref().map(|r| {
            format!(
                "absent(vigil:forecast:upper{{{sel}, horizon=\"{}\"}})",
                horizon_label(&r.horizon)
            )
        })
    }
}

/// Summary and description of [`MISSING_ALERT`].
pub(super) fn missing_text(ctx: &Scope, rule: &AlertRule) -> (String, String) {
    (
        format!(
            "No analytics for {} in {}/{}: the engine publishes nothing for it",
            rule.name, ctx.ns, ctx.app
        ),
        format!(
            "The analytics engine has published no series for rule {} of policy {} for {}: its \
             anomaly or forecast alert cannot fire. Check that the chart runs it \
             (analytics.enabled), that it reaches Prometheus, and that the rule's query returns \
             data",
            rule.name,
            ctx.policy,
            super::duration(MISSING_FOR_SECS)
        ),
    )
}
