//! Alert rules: renders an `AlertPolicy` into a Prometheus rule file (and the `PrometheusRule`
//! object that carries it), the first half of the alerting pipeline; the Alertmanager renderer
//! routes what these rules fire.
//!
//! # What every alert carries
//! Labels: `namespace` and `app` (forced to the policy's own namespace and app, so no rule can
//! reach another tenant's receivers), `severity`, `audience`, `vigil_policy` and `vigil_rule`.
//! Crash alerts add `version` (from the crash series). Escalation copies add
//! `escalation_level: "<n>"` and `vigil_escalation_receiver: <receiver name>`.
//!
//! Annotations: `summary`, `description`, and per audience context (`version`, `release`,
//! `users_affected`, `trend`, `fingerprint`), plus `runbook_url` when the rule sets one,
//! `baseline` for anomaly rules, `forecast` for forecast rules (both read the analytics engine's
//! series, see [`analytics`]) and `escalation` for escalation copies. Context comes from `query`
//! templates on the operator's release series, the agent's crash series and the engine's
//! series, so a missing series only leaves a phrase out: it never drops the alert (a
//! `group_left` join on release info would).
//!
//! # Namespace isolation
//! Every selector in every expression, including selectors inside user PromQL, is scoped with
//! the app's `{namespace="…", app="…"}` matcher (see [`scoped_promql`]).
//!
//! # Crashes in seconds
//! Crash rules live in their own group, evaluated every second ([`CRASH_GROUP_INTERVAL`]), over
//! the crash series Prometheus scrapes every 2 s from the agent's `/metrics/crashes`. A rule
//! with no threshold and no factor pages every crash group (version × fingerprint) once; a
//! spike rule needs the threshold and, with a factor, the ×N against the previous window.
//!
//! # Escalation
//! Escalation means "nobody acknowledged it". Escalation copies keep the base alert's name:
//! Alertmanager tells them apart by the `escalation_level` label, and a silence on the alert
//! name (an acknowledgement) also covers them, which is what acknowledging means. Step N's copy
//! fires once the base alert has fired `after` ago — read from Prometheus' own `ALERTS` series,
//! so it escalates whether or not the condition still holds (a single crash too) — and keeps
//! firing for [`ESCALATION_HORIZON`] after the base alert last fired, until
//! `vigil_alert_acknowledged{namespace, app, alertname="<base>"}` says it was acknowledged. It
//! is sent to the audience that lists the step's receiver.

use std::collections::BTreeMap;

use kube::ResourceExt;
use vigil_crds::alert_policy::{
    AlertRule, ContextField, CrashRateRule, ErrorRateRule, LatencyRule, RuleKind, TargetDownRule,
};
use vigil_crds::crash_users::users_affected_promql;
use vigil_crds::monitored_app::RequestMetrics;
use vigil_crds::{AlertPolicy, Audience, Duration, MonitoredApp, Severity};

use super::rules::{AlertingRule, RecordingRule, Rule, RuleFile, RuleGroup};
use super::{app_matcher, child_meta, namespace_of, promql_str};

/// Evaluation interval of the alert rule groups other than crashes: rates, latencies, trends.
pub const GROUP_INTERVAL: &str = "15s";
/// Evaluation interval of a policy's crash group (`vigil.<namespace>.<policy>.crashes`): with
/// the crash page scraped every 2 s and Alertmanager's crash routes waiting 0 s, the first page
/// follows the crash line by a few seconds. The crash expressions read a handful of series.
pub const CRASH_GROUP_INTERVAL: &str = "1s";
/// How long an unacknowledged alert keeps escalating after it last fired.
pub const ESCALATION_HORIZON: &str = "1d";

/// Label added to escalation copies: the 1-based step number, as a string.
pub const ESCALATION_LEVEL_LABEL: &str = "escalation_level";
/// Label added to escalation copies: the receiver the step notifies.
pub const ESCALATION_RECEIVER_LABEL: &str = "vigil_escalation_receiver";
/// Label naming the `AlertPolicy` an alert comes from.
pub const POLICY_LABEL: &str = "vigil_policy";
/// Label naming the rule (its alert name) inside the policy.
pub const RULE_LABEL: &str = "vigil_rule";

/// The Prometheus rule file of one `AlertPolicy` on its `MonitoredApp`: one group
/// `vigil.<namespace>.<policy>` with, per rule, the recording rules it needs, one alerting rule
/// per audience, one escalation copy per escalation step and, for anomaly and forecast rules,
/// one [`MISSING_ALERT`] that fires when the analytics engine publishes nothing for the rule.
pub fn alert_rules(policy: &AlertPolicy, app: &MonitoredApp) -> RuleFile {
    let ns = namespace_of(policy);
    let ctx = Scope {
        ns: ns.clone(),
        app: app.name_any(),
        policy: policy.name_any(),
        requests: app.spec.request_metrics(),
    };
    let mut rules = Vec::new();
    let mut crash_rules = Vec::new();
    for rule in &policy.spec.rules {
        // Validation (CEL and `crate::manifests`) guarantees exactly one kind per rule; a rule
        // that still has none or several renders nothing rather than a wrong alert.
        let Ok(kind) = rule.kind() else { continue };
        let base = base_alert(&ctx, rule, kind);
        let group = if matches!(kind, RuleKind::CrashRate(_)) {
            &mut crash_rules
        } else {
            &mut rules
        };
        group.extend(base.recordings.iter().cloned().map(Rule::Recording));
        let audiences = rule_audiences(policy, rule);
        for audience in &audiences {
            group.push(Rule::Alerting(audience_alert(
                &ctx, policy, rule, &base, *audience,
            )));
        }
        for (i, step) in policy.spec.escalation.iter().enumerate() {
            let audience = receiver_audience(policy, &step.receiver)
                .or_else(|| audiences.first().copied())
                .unwrap_or(Audience::Engineering);
            let mut alert = audience_alert(&ctx, policy, rule, &base, audience);
            alert.expr = escalation_expr(&ctx, &rule.name, &step.after);
            alert.for_ = Some(duration(0.0));
            alert
                .labels
                .insert(ESCALATION_LEVEL_LABEL.into(), (i + 1).to_string());
            alert
                .labels
                .insert(ESCALATION_RECEIVER_LABEL.into(), step.receiver.clone());
            alert.annotations.insert(
                "escalation".into(),
                format!(
                    "Not acknowledged {} after firing: escalation level {} to {}.",
                    step.after,
                    i + 1,
                    step.receiver
                ),
            );
            rules.push(Rule::Alerting(alert));
        }
        if let Some(expr) = analytics::missing_expr(&ctx, rule) {
            rules.push(Rule::Alerting(missing_alert(
                &ctx, policy, rule, &base, expr,
            )));
        }
    }
    let mut groups = Vec::new();
    if !crash_rules.is_empty() {
        groups.push(RuleGroup {
            name: format!("vigil.{}.{}.crashes", ns, policy.name_any()),
            interval: Some(CRASH_GROUP_INTERVAL.into()),
            rules: crash_rules,
        });
    }
    if !rules.is_empty() || groups.is_empty() {
        groups.push(RuleGroup {
            name: format!("vigil.{}.{}", ns, policy.name_any()),
            interval: Some(GROUP_INTERVAL.into()),
            rules,
        });
    }
    RuleFile { groups }
}

/// [`MISSING_ALERT`] for an anomaly or forecast rule: a `warning` to engineering (or, when the
/// policy has no engineering receivers, to the rule's first audience), without escalation.
/// It keeps the rule's `vigil_rule` label, so it says which rule has no analytics.
fn missing_alert(
    ctx: &Scope,
    policy: &AlertPolicy,
    rule: &AlertRule,
    base: &BaseAlert,
    expr: String,
) -> AlertingRule {
    let audiences = rule_audiences(policy, rule);
    let configured = policy.spec.audiences.iter().map(|a| a.audience);
    let audience = if configured.clone().any(|a| a == Audience::Engineering)
        || policy.spec.audiences.is_empty()
    {
        Audience::Engineering
    } else {
        audiences.first().copied().unwrap_or(Audience::Engineering)
    };
    let mut alert = audience_alert(ctx, policy, rule, base, audience);
    let (summary, description) = analytics::missing_text(ctx, rule);
    alert.alert = MISSING_ALERT.to_owned();
    alert.expr = expr;
    alert.for_ = Some(duration(analytics::MISSING_FOR_SECS));
    alert
        .labels
        .insert("severity".into(), Severity::Warning.as_str().to_owned());
    alert.annotations = BTreeMap::from([
        ("summary".to_owned(), summary),
        ("description".to_owned(), format!("{description}.")),
    ]);
    alert
}

/// Escalation step after `after`: the base alert `alertname` fired (in any audience's copy)
/// at some moment between [`ESCALATION_HORIZON`] and `after` ago, and nobody acknowledged it
/// (`vigil_alert_acknowledged`, an Alertmanager silence on the alert). It does not need the
/// condition to hold still: a single crash nobody acknowledged escalates too. One escalation
/// per base alert instance (per version and fingerprint for crash groups).
fn escalation_expr(ctx: &Scope, alertname: &str, after: &Duration) -> String {
    // `on ()`: the acknowledgement selector is already this app's and this alert's.
    format!(
        "max without (alertstate, audience, severity) (\n  max_over_time(ALERTS{{{m}, {policy}=\"{p}\", alertname=\"{a}\", alertstate=\"firing\", {level}=\"\"}}[{h}] offset {after})\n)\nunless on ()\n  vigil_alert_acknowledged{{{m}, alertname=\"{a}\"}}",
        m = ctx.matcher(),
        policy = POLICY_LABEL,
        p = promql_str(&ctx.policy),
        a = promql_str(alertname),
        level = ESCALATION_LEVEL_LABEL,
        h = ESCALATION_HORIZON,
    )
}

/// The `monitoring.coreos.com/v1` `PrometheusRule` carrying `file`, named `vigil-<policy>` in
/// the policy's namespace and owned by it.
pub fn prometheus_rule(policy: &AlertPolicy, file: &RuleFile) -> serde_json::Value {
    prometheus_rule_object(
        child_meta(policy, format!("vigil-{}", policy.name_any())),
        file,
    )
}

/// A `PrometheusRule` object with the given metadata and `file` as its spec; shared with the
/// SLO renderer.
pub(crate) fn prometheus_rule_object(
    meta: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    file: &RuleFile,
) -> serde_json::Value {
    // Both values hold only strings, numbers and string-keyed maps, which always serialise;
    // `Null` is unreachable.
    let meta = serde_json::to_value(meta).unwrap_or_default();
    let spec = serde_json::to_value(file).unwrap_or_default();
    serde_json::json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": meta,
        "spec": spec,
    })
}

/// Adds the `{namespace="…", app="…"}`-style `matchers` to every vector selector of a PromQL
/// expression, so user-written PromQL only ever reads its own app's series.
///
/// A small lexer rather than a parser: it skips strings, comments, range brackets, numbers,
/// keywords, function names and grouping label lists, and treats every other identifier (and
/// every bare `{…}`) as a selector. promtool checks the result in the tests. A user matcher on
/// the same label (`namespace="other"`) is kept and ANDed with ours, so it can only narrow the
/// selection, never widen it.
pub fn scoped_promql(expr: &str, matchers: &str) -> String {
    const KEYWORDS: [&str; 22] = [
        "and",
        "or",
        "unless",
        "atan2",
        "bool",
        "offset",
        "inf",
        "nan",
        "sum",
        "avg",
        "count",
        "min",
        "max",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "limitk",
        "limit_ratio",
    ];
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut out = String::with_capacity(expr.len() + 64);
    let mut i = 0;
    let is_ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            let end = string_end(&chars, i);
            out.extend(&chars[i..end]);
            i = end;
        } else if c == '#' {
            let end = chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |p| i + p);
            out.extend(&chars[i..end]);
            i = end;
        } else if c == '[' {
            let end = chars[i..]
                .iter()
                .position(|&c| c == ']')
                .map_or(chars.len(), |p| i + p + 1);
            out.extend(&chars[i..end]);
            i = end;
        } else if c == '{' {
            i = scoped_braces(&chars, i, matchers, &mut out);
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let end = chars[i..]
                .iter()
                .position(|&c| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
                .map_or(chars.len(), |p| i + p);
            out.extend(&chars[i..end]);
            i = end;
        } else if is_ident_start(c) {
            let end = chars[i..]
                .iter()
                .position(|&c| !is_ident(c))
                .map_or(chars.len(), |p| i + p);
            let word: String = chars[i..end].iter().collect();
            out.push_str(&word);
            i = end;
            let lower = word.to_ascii_lowercase();
            let next = chars[i..]
                .iter()
                .position(|c| !c.is_whitespace())
                .map(|p| i + p);
            let next_char = next.map(|n| chars[n]);
            if GROUPING.contains(&lower.as_str()) {
                if let (Some(n), Some('(')) = (next, next_char) {
                    let close = chars[n..]
                        .iter()
                        .position(|&c| c == ')')
                        .map_or(chars.len(), |p| n + p + 1);
                    out.extend(&chars[i..close]);
                    i = close;
                }
            } else if KEYWORDS.contains(&lower.as_str()) || next_char == Some('(') {
                // An operator, aggregation or function call: not a selector.
            } else if let (Some(n), Some('{')) = (next, next_char) {
                out.extend(&chars[i..n]);
                i = scoped_braces(&chars, n, matchers, &mut out);
            } else {
                out.push('{');
                out.push_str(matchers);
                out.push('}');
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Copies the `{…}` matcher list starting at `open`, with `matchers` put first; returns the
/// index after the closing brace.
fn scoped_braces(chars: &[char], open: usize, matchers: &str, out: &mut String) -> usize {
    let mut i = open + 1;
    while i < chars.len() && chars[i] != '}' {
        i = if matches!(chars[i], '"' | '\'' | '`') {
            string_end(chars, i)
        } else {
            i + 1
        };
    }
    let body: String = chars[open + 1..i.min(chars.len())].iter().collect();
    out.push('{');
    out.push_str(matchers);
    if !body.trim().is_empty() {
        out.push_str(", ");
        out.push_str(body.trim());
    }
    out.push('}');
    (i + 1).min(chars.len())
}

/// Index just after the string literal opening at `start` (backslash escapes except in raw
/// backtick strings).
fn string_end(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// Names that scope one policy's rules.
struct Scope {
    ns: String,
    app: String,
    policy: String,
    /// The app's request metrics, which `errorRate` and `latency` rules read unless they name
    /// their own.
    requests: RequestMetrics,
}

impl Scope {
    fn matcher(&self) -> String {
        app_matcher(&self.ns, &self.app)
    }
}

/// What one rule's alert is, before it is copied per audience.
struct BaseAlert {
    expr: String,
    for_secs: f64,
    summary: String,
    /// First sentence of the description (a template).
    headline: String,
    /// Whether the alert carries a `version` label (crash alerts).
    has_version: bool,
    /// Phrase for the trend (×N vs the previous window), when the kind has one.
    trend: Option<Phrase>,
    /// Phrase naming the top crash fingerprint (crash alerts).
    fingerprint: Option<Phrase>,
    recordings: Vec<RecordingRule>,
    /// Kind-specific annotations (`baseline`, `forecast`).
    extra: BTreeMap<String, String>,
}

fn base_alert(ctx: &Scope, rule: &AlertRule, kind: RuleKind<'_>) -> BaseAlert {
    let default_for = if matches!(kind, RuleKind::CrashRate(_)) {
        0.0
    } else {
        300.0
    };
    let mut base = BaseAlert {
        expr: String::new(),
        for_secs: rule
            .for_
            .as_ref()
            .map_or(default_for, Duration::as_secs_f64),
        summary: String::new(),
        headline: String::new(),
        has_version: false,
        trend: None,
        fingerprint: None,
        recordings: Vec::new(),
        extra: BTreeMap::new(),
    };
    match kind {
        RuleKind::CrashRate(r) => crash_rate(ctx, r, &mut base),
        RuleKind::ErrorRate(r) => error_rate(ctx, r, &mut base),
        RuleKind::Latency(r) => latency(ctx, r, &mut base),
        RuleKind::TargetDown(r) => target_down(ctx, r, &mut base),
        RuleKind::Anomaly(r) => analytics::anomaly(ctx, rule, r, &mut base),
        RuleKind::Forecast(r) => analytics::forecast(ctx, rule, r, &mut base),
        RuleKind::PromQl(r) => {
            base.expr = scoped_promql(r.expr.as_str(), &ctx.matcher());
            base.summary = format!("{} in {}/{}", rule.name, ctx.ns, ctx.app);
            base.headline = format!("{} fired with value {{{{ $value | humanize }}}}", rule.name);
        }
    }
    if let Some(summary) = &rule.summary {
        base.summary = summary.clone();
    }
    base
}

/// Crashes counted in a window ending `back` ago, per crash series. A fingerprint seen for the
/// first time appears already at 1, and `increase()` over it is 0 (or absent), so series that
/// did not exist one window earlier count with their whole value; the others by `increase()`,
/// which also handles counter resets. (`or` keeps the left side, hence new series first.)
fn crashes_in_window(sel: &str, window: &Duration, back: f64) -> String {
    let w = window.as_secs_f64();
    let (now, before) = if back > 0.0 {
        (format!(" offset {}", duration(back)), duration(back + w))
    } else {
        (String::new(), duration(w))
    };
    format!(
        "(vigil_crashes_total{{{sel}}}{now} unless vigil_crashes_total{{{sel}}} offset {before})\n  \
         or increase(vigil_crashes_total{{{sel}}}[{window}]{now})"
    )
}

fn crash_rate(ctx: &Scope, r: &CrashRateRule, base: &mut BaseAlert) {
    if r.threshold == 0.0 && r.increase_factor.is_none() {
        crash_groups(ctx, r, base);
    } else {
        crash_spike(ctx, r, base);
    }
}

/// Every crash group pages: one alert per version and fingerprint with a crash in the window.
/// A new fingerprint, a new version, or a crash after the group's alert resolved is a new
/// alert instance (Alertmanager pages it at once); more crashes of a firing group only change
/// its counts.
fn crash_groups(ctx: &Scope, r: &CrashRateRule, base: &mut BaseAlert) {
    let sel = ctx.matcher();
    let w = r.window.as_secs_f64();
    base.expr = format!(
        "sum by (namespace, app, version, fingerprint, type, frame) (\n  {}\n) > 0",
        crashes_in_window(&sel, &r.window, 0.0)
    );
    base.has_version = true;
    base.summary = format!(
        "Crash {{{{ $labels.type }}}} in {}/{} version {{{{ $labels.version }}}}",
        ctx.ns, ctx.app
    );
    // Context narrows to this group: its version and fingerprint. The count is a query, not
    // `$value`, so escalation copies (whose value is 1) say it too.
    let gsel = format!(
        "{}, version=%[1]q, fingerprint=%[2]q",
        sel.replace('%', "%%")
    );
    let args = ["$labels.version", "$labels.fingerprint"];
    let count = Phrase::query(
        tmpl_query(
            &format!("sum({})", crashes_in_window(&gsel, &r.window, 0.0)),
            &args,
        ),
        &format!("{{{{ .Value | humanize }}}} in the last {}", r.window),
        None,
    );
    base.headline = format!(
        "{{{{ $labels.type }}}}{{{{ with $labels.frame }}}} at {{{{ . }}}}{{{{ end }}}} (fingerprint {{{{ $labels.fingerprint }}}}){}",
        count.render(": ")
    );
    let trend_q = format!(
        "sum({}) / (sum({}) > 0)",
        crashes_in_window(&gsel, &r.window, 0.0),
        crashes_in_window(&gsel, &r.window, w)
    );
    base.trend = Some(Phrase::query(
        tmpl_query(&trend_q, &args),
        &format!(
            "×{{{{ .Value | printf \"%.1f\" }}}} vs the previous {}",
            r.window
        ),
        Some(&format!("new: not seen in the previous {}", r.window)),
    ));
    base.fingerprint = Some(Phrase::plain(
        "fingerprint {{ $labels.fingerprint }} ({{ $labels.type }}{{ with $labels.frame }} at {{ . }}{{ end }})",
    ));
}

/// A crash spike: the rate of all crashes of a version over the window is above the threshold
/// and, with `increaseFactor`, also that many times the previous window's (a version without
/// crashes before counts as a spike once it is above the threshold). Below the threshold it
/// never fires, whatever the factor.
fn crash_spike(ctx: &Scope, r: &CrashRateRule, base: &mut BaseAlert) {
    let sel = ctx.matcher();
    let w = r.window.as_secs_f64();
    let minutes = num(w / 60.0);
    let per_min = |back: f64| {
        format!(
            "sum by (namespace, app, version) (\n  {}\n) / {minutes}",
            crashes_in_window(&sel, &r.window, back)
        )
    };
    let current = per_min(0.0);
    let mut expr = format!("{current} > {}", num(r.threshold));
    if let Some(factor) = r.increase_factor {
        let previous = per_min(w);
        expr = format!(
            "(\n{expr}\n)\nand\n(\n{current}\n  > {} * (\n{previous})\n  or ({current} unless (\n{previous}))\n)",
            num(factor),
        );
    }
    base.expr = expr;
    base.has_version = true;
    base.summary = format!(
        "Crash spike in {}/{} version {{{{ $labels.version }}}}",
        ctx.ns, ctx.app
    );
    base.headline = format!(
        "{{{{ $value | printf \"%.2f\" }}}} crashes/min over the last {} (threshold {}/min)",
        r.window,
        num(r.threshold)
    );
    // Context queries narrow to the alert's version; `%` is printf's, so escape ours.
    let vsel = format!("{}, version=%[1]q", sel.replace('%', "%%"));
    let args = ["$labels.version"];
    let trend_q = format!(
        "sum({}) / (sum({}) > 0)",
        crashes_in_window(&vsel, &r.window, 0.0),
        crashes_in_window(&vsel, &r.window, w)
    );
    base.trend = Some(Phrase::query(
        tmpl_query(&trend_q, &args),
        &format!(
            "crash rate ×{{{{ .Value | printf \"%.1f\" }}}} vs the previous {}",
            r.window
        ),
        Some(&format!("new: no crashes in the previous {}", r.window)),
    ));
    let fp_q = format!(
        "topk(1, sum by (fingerprint, type, language) ({}))",
        crashes_in_window(&vsel, &r.window, 0.0)
    );
    base.fingerprint = Some(Phrase::query(
        tmpl_query(&fp_q, &args),
        &format!(
            "top crash {{{{ .Labels.fingerprint }}}} ({{{{ .Labels.type }}}}, {{{{ .Labels.language }}}}): \
             {{{{ .Value | humanize }}}} in {}",
            r.window
        ),
        None,
    ));
}

/// `errors / all` over `window`, ending `offset` ago.
fn error_ratio(ctx: &Scope, sel: &str, r: &ErrorRateRule, offset: &str) -> String {
    let m = ctx.requests.overridden(
        r.metric.as_ref(),
        r.status_label.as_ref(),
        r.error_regex.as_ref(),
        None,
    );
    format!(
        "sum by (namespace, app) (rate({m}{{{sel}, {l}=~\"{re}\"}}[{w}]{offset}))\n  \
         / sum by (namespace, app) (rate({m}{{{sel}}}[{w}]{offset}))",
        m = m.counter,
        l = m.status_label,
        re = promql_str(&m.error_regex),
        w = r.window,
    )
}

fn error_rate(ctx: &Scope, r: &ErrorRateRule, base: &mut BaseAlert) {
    let sel = ctx.matcher();
    base.expr = format!(
        "{}\n> {}",
        error_ratio(ctx, &sel, r, ""),
        num(r.threshold_percent / 100.0)
    );
    base.summary = format!("High error rate in {}/{}", ctx.ns, ctx.app);
    base.headline = format!(
        "{{{{ $value | humanizePercentage }}}} of requests failed over the last {} (threshold {} %)",
        r.window,
        num(r.threshold_percent)
    );
    let trend_q = format!(
        "({}) / (({}) > 0)",
        error_ratio(ctx, &sel, r, ""),
        error_ratio(ctx, &sel, r, &format!(" offset {}", r.window))
    );
    base.trend = Some(trend_phrase(&trend_q, &r.window));
}

fn latency_quantile(ctx: &Scope, sel: &str, r: &LatencyRule, offset: &str) -> String {
    format!(
        "histogram_quantile({}, sum by (namespace, app, le) (rate({}_bucket{{{sel}}}[{}]{offset})))",
        num(r.quantile),
        ctx.requests
            .overridden(None, None, None, r.histogram.as_ref())
            .duration_histogram,
        r.window
    )
}

fn latency(ctx: &Scope, r: &LatencyRule, base: &mut BaseAlert) {
    let sel = ctx.matcher();
    base.expr = format!(
        "{} > {}",
        latency_quantile(ctx, &sel, r, ""),
        num(r.threshold_seconds)
    );
    let q = num(r.quantile * 100.0);
    base.summary = format!(
        "Slow responses in {}/{}: p{q} above {}s",
        ctx.ns,
        ctx.app,
        num(r.threshold_seconds)
    );
    base.headline = format!(
        "p{q} latency is {{{{ $value | humanizeDuration }}}} over the last {} (threshold {}s)",
        r.window,
        num(r.threshold_seconds)
    );
    let trend_q = format!(
        "{} / ({} > 0)",
        latency_quantile(ctx, &sel, r, ""),
        latency_quantile(ctx, &sel, r, &format!(" offset {}", r.window))
    );
    base.trend = Some(trend_phrase(&trend_q, &r.window));
}

fn trend_phrase(query: &str, window: &Duration) -> Phrase {
    Phrase::query(
        tmpl_query(query, &[]),
        &format!("×{{{{ .Value | printf \"%.1f\" }}}} vs the previous {window}"),
        None,
    )
}

fn target_down(ctx: &Scope, r: &TargetDownRule, base: &mut BaseAlert) {
    let sel = ctx.matcher();
    base.expr = format!(
        "100 * (\n  count by (namespace, app) (up{{{sel}}} == 0)\n  / count by (namespace, app) (up{{{sel}}})\n) > {}",
        num(r.min_down_percent)
    );
    base.summary = format!("Scrape targets of {}/{} are down", ctx.ns, ctx.app);
    base.headline = format!(
        "{{{{ $value | printf \"%.0f\" }}}} % of the scrape targets are down (threshold {} %)",
        num(r.min_down_percent)
    );
}

/// The audiences a rule's alerts go to: its own list, else every audience of the policy, else
/// engineering. Severity filters of an audience are applied by the Alertmanager routes.
pub(crate) fn rule_audiences(policy: &AlertPolicy, rule: &AlertRule) -> Vec<Audience> {
    let mut out: Vec<Audience> = if rule.audiences.is_empty() {
        policy.spec.audiences.iter().map(|a| a.audience).collect()
    } else {
        rule.audiences.clone()
    };
    if out.is_empty() {
        out.push(Audience::Engineering);
    }
    out.sort();
    out.dedup();
    out
}

/// The audience whose receivers include `receiver`.
pub(crate) fn receiver_audience(policy: &AlertPolicy, receiver: &str) -> Option<Audience> {
    policy
        .spec
        .audiences
        .iter()
        .find(|a| a.receivers.iter().any(|r| r.name == receiver))
        .map(|a| a.audience)
}

/// The context an audience gets: its own list, else the audience's defaults.
fn audience_context(policy: &AlertPolicy, audience: Audience) -> Vec<ContextField> {
    let own = policy
        .spec
        .audiences
        .iter()
        .find(|a| a.audience == audience)
        .map(|a| a.context.clone())
        .unwrap_or_default();
    if !own.is_empty() {
        return own;
    }
    use ContextField::*;
    match audience {
        Audience::Engineering => vec![Version, Release, Fingerprint, Trend],
        Audience::Support => vec![UsersAffected, Version],
        Audience::Management => vec![Trend, UsersAffected],
    }
}

/// The alerting rule of `base` for one audience.
fn audience_alert(
    ctx: &Scope,
    policy: &AlertPolicy,
    rule: &AlertRule,
    base: &BaseAlert,
    audience: Audience,
) -> AlertingRule {
    let labels = BTreeMap::from([
        ("namespace".to_owned(), ctx.ns.clone()),
        ("app".to_owned(), ctx.app.clone()),
        ("severity".to_owned(), rule.severity.as_str().to_owned()),
        ("audience".to_owned(), audience.as_str().to_owned()),
        (POLICY_LABEL.to_owned(), ctx.policy.clone()),
        (RULE_LABEL.to_owned(), rule.name.clone()),
    ]);
    let wanted = audience_context(policy, audience);
    let mut annotations = base.extra.clone();
    annotations.insert("summary".into(), base.summary.clone());
    let mut description = base.headline.clone();
    // Phrases in reading order: "×3 vs the previous 15m, version 17.2, started after deploy
    // abc123, 847 users affected".
    for field in [
        ContextField::Trend,
        ContextField::Version,
        ContextField::Release,
        ContextField::UsersAffected,
        ContextField::Fingerprint,
    ] {
        if !wanted.contains(&field) {
            continue;
        }
        if let Some((key, phrase)) = context_phrase(ctx, base, field) {
            description.push_str(&phrase.render(", "));
            annotations.insert(key.into(), phrase.render(""));
        }
    }
    description.push('.');
    annotations.insert("description".into(), description);
    if let Some(url) = &rule.runbook_url {
        annotations.insert("runbook_url".into(), url.clone());
    }
    AlertingRule {
        alert: rule.name.clone(),
        expr: base.expr.clone(),
        for_: Some(duration(base.for_secs)),
        labels,
        annotations,
    }
}

/// The annotation key and template phrase of one context field, when it applies to the kind.
fn context_phrase(
    ctx: &Scope,
    base: &BaseAlert,
    field: ContextField,
) -> Option<(&'static str, Phrase)> {
    let sel = ctx.matcher();
    let (vsel, args): (String, &[&str]) = if base.has_version {
        (
            format!("{}, version=%[1]q", sel.replace('%', "%%")),
            &["$labels.version"],
        )
    } else {
        (sel.clone(), &[])
    };
    match field {
        ContextField::Trend => base.trend.clone().map(|t| ("trend", t)),
        ContextField::Fingerprint => base.fingerprint.clone().map(|f| ("fingerprint", f)),
        ContextField::Version if base.has_version => {
            Some(("version", Phrase::plain("version {{ $labels.version }}")))
        }
        ContextField::Version => Some((
            "version",
            Phrase::query(
                tmpl_query(
                    &format!("topk(1, vigil_app_release_timestamp_seconds{{{sel}}})"),
                    &[],
                ),
                "version {{ .Labels.version }}",
                None,
            ),
        )),
        ContextField::Release => {
            let body = if base.has_version {
                "started after deploy {{ .Labels.revision }} ({{ .Value | humanizeTimestamp }})"
            } else {
                "latest deploy {{ .Labels.revision }} ({{ .Value | humanizeTimestamp }})"
            };
            Some((
                "release",
                Phrase::query(
                    tmpl_query(
                        &format!("topk(1, vigil_app_release_timestamp_seconds{{{vsel}}})"),
                        args,
                    ),
                    body,
                    None,
                ),
            ))
        }
        // Distinct users across pods and fingerprints (the agents' HyperLogLog registers merged
        // in PromQL; the last hour, ±13 %), not a sum of per-pod counts.
        ContextField::UsersAffected => {
            let group: &[&str] = if base.has_version {
                &["namespace", "app", "version"]
            } else {
                &["namespace", "app"]
            };
            Some((
                "users_affected",
                Phrase::query(
                    tmpl_query(&users_affected_promql(&vsel, group), args),
                    "{{ .Value | printf \"%.0f\" }} users affected in the last hour",
                    None,
                ),
            ))
        }
        // No dashboard URL is known when rendering; the runbook link is `runbook_url`.
        ContextField::Dashboard | ContextField::Runbook => None,
    }
}

/// A Go template pipeline running `promql` through `query`; with `args`, `promql` is a printf
/// format (`%q` placeholders, `%%` for a literal percent sign).
fn tmpl_query(promql: &str, args: &[&str]) -> String {
    if args.is_empty() {
        format!("query {}", go_string(promql))
    } else {
        format!("printf {} {} | query", go_string(promql), args.join(" "))
    }
}

/// A context phrase: a template body shown with the first sample of a query as `.` (or, with
/// no query, as is); an empty query result shows `otherwise`, or nothing.
#[derive(Clone, Debug)]
struct Phrase {
    pipeline: Option<String>,
    body: String,
    otherwise: Option<String>,
}

impl Phrase {
    fn plain(body: &str) -> Self {
        Self {
            pipeline: None,
            body: body.to_owned(),
            otherwise: None,
        }
    }

    fn query(pipeline: String, body: &str, otherwise: Option<&str>) -> Self {
        Self {
            pipeline: Some(pipeline),
            body: body.to_owned(),
            otherwise: otherwise.map(str::to_owned),
        }
    }

    /// The template, with `prefix` (such as `", "`) written only when the phrase shows.
    fn render(&self, prefix: &str) -> String {
        let Some(pipeline) = &self.pipeline else {
            return format!("{prefix}{}", self.body);
        };
        let otherwise = self
            .otherwise
            .as_ref()
            .map(|o| format!("{{{{ else }}}}{prefix}{o}"))
            .unwrap_or_default();
        format!(
            "{{{{ with {pipeline} }}}}{{{{ with . | first }}}}{prefix}{}{{{{ end }}}}{otherwise}{{{{ end }}}}",
            self.body
        )
    }
}

/// A Go string literal: a raw backtick string when possible, else an escaped one.
fn go_string(s: &str) -> String {
    if s.contains('`') {
        format!(
            "\"{}\"",
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        )
    } else {
        format!("`{s}`")
    }
}

/// A number as PromQL and people write it: no float noise (`0.1` not `0.1000000000000000055`),
/// no trailing zeros.
pub(crate) fn num(x: f64) -> String {
    let s = format!("{x:.12}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// A duration in seconds as a Prometheus duration (`0s` allowed, unlike `Duration`).
pub(crate) fn duration(secs: f64) -> String {
    if secs <= 0.0 {
        "0s".to_owned()
    } else if secs.fract() == 0.0 {
        Duration::from_secs(secs as u64).to_string()
    } else {
        format!("{}ms", (secs * 1000.0).round() as u64)
    }
}

mod analytics;
#[cfg(test)]
pub(crate) mod tests;

pub use analytics::{horizon_label, MISSING_ALERT};
