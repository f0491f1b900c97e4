//! What the analytics engine computes: one [`Job`] per `anomaly` or `forecast` rule of every
//! `AlertPolicy`, and one error-budget forecast per `SLO` ([`slo_jobs`]), derived purely from
//! the objects (no client, no clock).

use std::collections::BTreeMap;

use kube::ResourceExt;
use vigil_crds::alert_policy::{Direction, RuleKind, Seasonality};
use vigil_crds::{AlertPolicy, MonitoredApp, Slo};

use crate::analytics::forecast::KnownEvent;
use crate::render::namespace_of;

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

/// The `rule` of an SLO's budget job key: never a rule name (rules are UpperCamelCase), so an
/// SLO's job never collides with a rule of a policy that has the SLO's name.
pub const SLO_BUDGET_RULE: &str = "slo:budget";

/// Identifies a job and the series it publishes: `(namespace, policy, rule)`, or for an SLO's
/// budget forecast `(namespace, SLO name, `[`SLO_BUDGET_RULE`]`)` ([`JobKey::slo`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobKey {
    pub namespace: String,
    pub policy: String,
    pub rule: String,
}

impl JobKey {
    /// The key of the budget forecast of SLO `name` in `namespace`.
    pub fn slo(namespace: &str, name: &str) -> JobKey {
        JobKey {
            namespace: namespace.to_owned(),
            policy: name.to_owned(),
            rule: SLO_BUDGET_RULE.to_owned(),
        }
    }

    /// Whether this is an SLO's budget forecast (`policy` then holds the SLO's name).
    pub fn is_slo(&self) -> bool {
        self.rule == SLO_BUDGET_RULE
    }
}

impl std::fmt::Display for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_slo() {
            return write!(f, "SLO/{}/{} budget forecast", self.namespace, self.policy);
        }
        write!(
            f,
            "AlertPolicy/{}/{} rule {}",
            self.namespace, self.policy, self.rule
        )
    }
}

/// A forecast horizon: steps ahead and the `horizon` label text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Horizon {
    pub seconds: i64,
    /// Prometheus duration text, such as `1h` or `1d`.
    pub label: String,
}

/// What a job computes.
#[derive(Clone, Debug, PartialEq)]
pub enum JobKind {
    /// Judges each new point with an online detector warmed up on the baseline window.
    Anomaly {
        /// History replayed through the detector at start, seconds.
        baseline_window: i64,
        /// Which deviations score.
        direction: Direction,
    },
    /// Refits a forecast on the lookback and publishes its bands.
    Forecast {
        /// The rule's horizon, seconds.
        horizon: i64,
        /// The capacity the forecast must stay under.
        capacity: f64,
        /// History the model is fitted on, seconds.
        lookback: i64,
        /// Published horizons: the rule's, `1h` and `1d`, ascending.
        horizons: Vec<Horizon>,
    },
    /// Refits a forecast of an SLO's error ratio and projects when its error budget runs out.
    Budget {
        /// The SLO's rolling window, seconds: the history read and the budget's span.
        window: i64,
        /// The error budget as a ratio of events, `1 - objective / 100`.
        budget: f64,
        /// How far ahead exhaustion is searched, seconds ([`budget_horizon`]).
        horizon: i64,
        /// Published horizons of the error-ratio forecast: the budget horizon, `1h` and `1d`.
        horizons: Vec<Horizon>,
        /// Seconds between points read: the engine step, or the SLI ratio's rate window when
        /// longer (the ratio moves no faster, and a 30-day window stays under 9,000 points).
        step: i64,
        /// The labels the SLO's recording rules put on every series
        /// ([`crate::render::slo::recording_labels`]), put back on the published series.
        labels: BTreeMap<String, String>,
        /// The recording alone, read first when the job's `query` also computes the ratio from
        /// the raw series ([`slo_query`]): while the recording covers the whole window that
        /// query is not needed, and it is the costly one (the raw series' rates over the whole
        /// window). `None`: the `query` is the recording.
        recorded: Option<String>,
    },
}

/// One rule the engine works on.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub key: JobKey,
    /// The `MonitoredApp` the policy targets (the `app` label).
    pub app: String,
    /// PromQL returning an instant vector.
    pub query: String,
    /// Seasonal periods in steps; empty: none given (the model detects what it can).
    pub periods: Vec<usize>,
    /// Known special periods (the CRD's `knownEvents`).
    pub events: Vec<KnownEvent>,
    pub kind: JobKind,
}

impl Job {
    /// Seconds of history each fit or warm-up reads: the baseline window or lookback, and at
    /// least two of the longest seasonal period so the model can see it repeat.
    pub fn history_seconds(&self, step: i64) -> i64 {
        let longest = self.periods.iter().copied().max().unwrap_or(0) as i64 * step;
        let window = match &self.kind {
            JobKind::Anomaly {
                baseline_window, ..
            } => *baseline_window,
            JobKind::Forecast { lookback, .. } => *lookback,
            JobKind::Budget { window, .. } => *window,
        };
        window.max(2 * longest)
    }

    /// `anomaly`, `forecast` or `budget`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            JobKind::Anomaly { .. } => "anomaly",
            JobKind::Forecast { .. } => "forecast",
            JobKind::Budget { .. } => "budget",
        }
    }

    /// Seconds between the points this job reads, given the engine's `--step`.
    pub fn step(&self, engine_step: i64) -> i64 {
        match self.kind {
            JobKind::Budget { step, .. } => step.max(engine_step).max(1),
            _ => engine_step.max(1),
        }
    }

    /// Whether the job refits on the refit interval (forecasts and budgets) rather than
    /// updating every step (anomaly detectors).
    pub fn refits(&self) -> bool {
        !matches!(self.kind, JobKind::Anomaly { .. })
    }
}

/// Seasonal periods of `seasonality` in steps of `step` seconds.
fn periods(seasonality: Seasonality, step: i64) -> Vec<usize> {
    seasonality
        .periods_seconds()
        .iter()
        .map(|s| usize::try_from(*s as i64 / step.max(1)).unwrap_or(0))
        .filter(|p| *p > 1)
        .collect()
}

/// A rule's `knownEvents` as the models take them. Events whose end is not after their start
/// are left out (`check`, the webhook and the CRD's own rule refuse them).
fn known_events(events: &[vigil_crds::alert_policy::KnownEvent]) -> Vec<KnownEvent> {
    events
        .iter()
        .filter_map(|e| {
            let (start, end) = e.interval().ok()?;
            Some(KnownEvent {
                name: e.name.clone(),
                start,
                end,
            })
        })
        .collect()
}

/// The published horizons of a rule with `horizon` seconds: it, `1h` and `1d`.
pub fn horizons(horizon: i64) -> Vec<Horizon> {
    let mut seconds = vec![horizon.max(1), HOUR, DAY];
    seconds.sort_unstable();
    seconds.dedup();
    seconds
        .into_iter()
        .map(|s| Horizon {
            seconds: s,
            label: crate::render::alerts::horizon_label(&vigil_crds::Duration::from_secs(
                s.unsigned_abs(),
            )),
        })
        .collect()
}

fn seconds(duration: &vigil_crds::common::Duration) -> i64 {
    duration.as_secs_f64().round() as i64
}

/// The jobs of `policies` at a step of `step` seconds, ordered by key.
pub fn jobs(policies: &[AlertPolicy], step: i64) -> Vec<Job> {
    let mut out = Vec::new();
    for policy in policies {
        let namespace = namespace_of(policy);
        let name = policy.name_any();
        for rule in &policy.spec.rules {
            let key = JobKey {
                namespace: namespace.clone(),
                policy: name.clone(),
                rule: rule.name.clone(),
            };
            let app = policy.spec.app_ref.name.clone();
            let job = match rule.kind() {
                Ok(RuleKind::Anomaly(r)) => Job {
                    key,
                    app,
                    query: r.query.as_str().to_owned(),
                    periods: periods(r.seasonality, step),
                    events: known_events(&r.known_events),
                    kind: JobKind::Anomaly {
                        baseline_window: seconds(&r.baseline_window),
                        direction: r.direction,
                    },
                },
                Ok(RuleKind::Forecast(r)) => Job {
                    key,
                    app,
                    query: r.query.as_str().to_owned(),
                    periods: periods(r.seasonality, step),
                    events: known_events(&r.known_events),
                    kind: JobKind::Forecast {
                        horizon: seconds(&r.horizon),
                        capacity: r.capacity,
                        lookback: seconds(&r.lookback),
                        horizons: horizons(seconds(&r.horizon)),
                    },
                },
                _ => continue,
            };
            out.push(job);
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out.dedup_by(|a, b| a.key == b.key);
    out
}

/// How far ahead an SLO's budget exhaustion is searched, seconds: the rendered alert's horizon
/// ([`crate::render::slo::budget_forecast_horizon`]: a quarter of the window, at most a week).
pub fn budget_horizon(window: i64) -> i64 {
    crate::render::slo::budget_forecast_horizon(window as f64).round() as i64
}

/// The query of an SLO budget job: the SLI error ratio over `rate_window` seconds, one series
/// per `groupBy` group.
///
/// With the SLO's `app`, the shortest ratio recording where it has a point and the same ratio
/// computed from the raw series at the steps (and for the groups) it has none, so an SLO over
/// an app with history is forecast before its recording rules have built any up:
/// `max by (<groupBy>) (<recording>) or on (<groupBy>) max by (<groupBy>) (<raw ratio>)`.
/// Both sides are reduced to the `groupBy` labels so a group is one series whichever side
/// gives a step (the recording's constant labels are put back from the job); a group is one
/// series in the recording anyway, and where an SLI keeps more labels the worst ratio counts.
///
/// Without the app (not found, or not readable) the recording alone, as its rules write it:
/// the forecast then waits for the recording's history.
pub fn slo_query(slo: &Slo, app: Option<&MonitoredApp>, rate_window: f64) -> String {
    let namespace = namespace_of(slo);
    let recording = format!(
        "slo:sli_error:ratio_rate{}{{namespace=\"{}\", app=\"{}\", slo=\"{}\"}}",
        crate::render::alerts::duration(rate_window),
        crate::render::promql_str(&namespace),
        crate::render::promql_str(&slo.spec.app_ref.name),
        crate::render::promql_str(&slo.name_any()),
    );
    let Some(app) = app else {
        return recording;
    };
    let by = slo.spec.group_by.join(", ");
    format!(
        "max by ({by}) (\n{recording}\n)\nor on ({by})\nmax by ({by}) (\n{}\n)",
        crate::render::slo::raw_error_ratio(slo, app, rate_window)
    )
}

/// The budget jobs of `slos` at an engine step of `step` seconds, ordered by key: each reads
/// the shortest SLI error ratio over the SLO's window ([`slo_query`]: the recording, filled in
/// from the raw series when the SLO's `MonitoredApp` is among `apps`).
pub fn slo_jobs(slos: &[Slo], apps: &[MonitoredApp], step: i64) -> Vec<Job> {
    let mut out: Vec<Job> = slos
        .iter()
        .map(|slo| {
            let namespace = namespace_of(slo);
            let name = slo.name_any();
            let app = slo.spec.app_ref.name.clone();
            let window = seconds(&slo.spec.window).max(1);
            let rate_window = crate::render::slo::sli_windows(window as f64)
                .first()
                .copied()
                .unwrap_or(300.0);
            let monitored = apps
                .iter()
                .find(|a| namespace_of(*a) == namespace && a.name_any() == app);
            let horizon = budget_horizon(window);
            let query = slo_query(slo, monitored, rate_window);
            let recorded = monitored.map(|_| slo_query(slo, None, rate_window));
            Job {
                key: JobKey::slo(&namespace, &name),
                query,
                // Detected: an SLI's errors may or may not follow the traffic's day.
                periods: Vec::new(),
                events: Vec::new(),
                kind: JobKind::Budget {
                    window,
                    budget: (100.0 - slo.spec.objective) / 100.0,
                    horizon,
                    horizons: horizons(horizon),
                    step: (rate_window.round() as i64).max(step),
                    labels: crate::render::slo::recording_labels(slo, &app),
                    recorded,
                },
                app,
            }
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out.dedup_by(|a, b| a.key == b.key);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;
    use crate::controllers::fixtures;

    fn policy(yaml: &str) -> AlertPolicy {
        serde_yaml::from_str(yaml).unwrap()
    }

    const POLICY: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: {name: checkout-alerts, namespace: shop}
spec:
  appRef: {name: checkout}
  rules:
    - name: CheckoutErrors
      errorRate: {thresholdPercent: 5}
    - name: CheckoutTraffic
      anomaly:
        query: sum(rate(http_requests_total[5m]))
        seasonality: daily
        baselineWindow: 3d
        direction: both
    - name: CheckoutDisk
      forecast:
        query: node_filesystem_avail_bytes
        horizon: 6h
        capacity: 1000
"#;

    /// Only anomaly and forecast rules become jobs, keyed by namespace, policy and rule, with
    /// the policy's app, the rule's query, its seasonality in steps and its windows in
    /// seconds; forecast horizons are the rule's, `1h` and `1d`.
    #[test]
    fn anomaly_and_forecast_rules_become_jobs() {
        let jobs = jobs(&[policy(POLICY)], 60);
        assert_eq!(jobs.len(), 2);
        let disk = &jobs[0];
        assert_eq!(
            disk.key,
            JobKey {
                namespace: "shop".into(),
                policy: "checkout-alerts".into(),
                rule: "CheckoutDisk".into()
            }
        );
        assert_eq!(disk.app, "checkout");
        assert_eq!(disk.query, "node_filesystem_avail_bytes");
        let JobKind::Forecast {
            horizon,
            capacity,
            lookback,
            horizons,
        } = &disk.kind
        else {
            panic!("forecast expected");
        };
        assert_eq!((*horizon, *capacity, *lookback), (21_600, 1000.0, 21_600));
        let labels: Vec<&str> = horizons.iter().map(|h| h.label.as_str()).collect();
        assert_eq!(labels, ["1h", "6h", "1d"]);
        assert_eq!(disk.history_seconds(60), 21_600);

        let traffic = &jobs[1];
        assert_eq!(traffic.key.rule, "CheckoutTraffic");
        assert_eq!(traffic.periods, vec![1440]);
        assert_eq!(
            traffic.kind,
            JobKind::Anomaly {
                baseline_window: 3 * DAY,
                direction: Direction::Both
            }
        );
        assert_eq!(traffic.history_seconds(60), 3 * DAY);
        assert!(traffic.events.is_empty());
    }

    /// A weekly season at 5-minute steps is 2016 steps and stretches a 1-day baseline to two
    /// weeks; a rule horizon equal to `1h` or `1d` is not repeated.
    #[test]
    fn seasons_stretch_history_and_horizons_dedupe() {
        assert_eq!(periods(Seasonality::Weekly, 300), vec![2016]);
        assert_eq!(periods(Seasonality::DailyAndWeekly, 300), vec![288, 2016]);
        assert!(periods(Seasonality::None, 60).is_empty());
        let labels: Vec<String> = horizons(DAY).into_iter().map(|h| h.label).collect();
        assert_eq!(labels, ["1h", "1d"]);
        let mut p = policy(POLICY);
        p.spec.rules[1].anomaly.as_mut().unwrap().seasonality = Seasonality::Weekly;
        p.spec.rules[1].anomaly.as_mut().unwrap().baseline_window =
            vigil_crds::common::Duration::from_secs(DAY as u64);
        let jobs = jobs(&[p], 300);
        assert_eq!(jobs[1].history_seconds(300), 2 * 7 * DAY);
    }

    /// Policies in different namespaces with the same names give distinct jobs; no policy,
    /// no job.
    #[test]
    fn jobs_are_distinct_per_namespace() {
        let other = POLICY.replace("namespace: shop", "namespace: staging");
        let jobs = jobs(&[policy(POLICY), policy(&other)], 60);
        assert_eq!(jobs.len(), 4);
        assert_eq!(jobs[0].key.namespace, "shop");
        assert_eq!(jobs[2].key.namespace, "staging");
        assert!(super::jobs(&[], 60).is_empty());
    }

    /// A rule's known events and seasonality reach its job: events as Unix-second intervals
    /// (a date lasts one day), periods in steps.
    #[test]
    fn known_events_and_forecast_seasonality_reach_the_job() {
        let jobs = jobs(
            &[policy(
                r#"
apiVersion: vigil.dev/v1alpha1
kind: AlertPolicy
metadata: {name: capacity, namespace: tax}
spec:
  appRef: {name: portal}
  rules:
    - name: PortalLoad
      forecast:
        query: sum(rate(http_requests_total[5m]))
        horizon: 6h
        capacity: 100
        lookback: 4w
        seasonality: dailyAndWeekly
        knownEvents:
          - {name: tax-deadline, start: "2027-04-30"}
          - {name: tax-deadline, start: "2027-05-31T00:00:00Z", end: "2027-06-01T12:00:00Z"}
"#,
            )],
            60,
        );
        assert_eq!(jobs[0].periods, vec![1440, 10_080]);
        let events: Vec<(&str, i64, i64)> = jobs[0]
            .events
            .iter()
            .map(|e| (e.name.as_str(), e.start, e.end))
            .collect();
        assert_eq!(
            events,
            [
                ("tax-deadline", 1_809_043_200, 1_809_043_200 + DAY),
                (
                    "tax-deadline",
                    1_811_721_600,
                    1_811_721_600 + DAY + 12 * HOUR
                ),
            ]
        );
    }

    /// An SLO becomes one budget job keyed apart from any policy: without its app it reads the
    /// SLO's shortest SLI ratio recording (5m for 30 days, scaled for other windows) at that step, over the
    /// window, with the budget from the objective and a horizon of a quarter window, at most
    /// a week.
    #[test]
    fn slos_become_budget_jobs() {
        let slo = |name: &str, window: &str| -> Slo {
            serde_yaml::from_str(&format!(
                r#"
apiVersion: vigil.dev/v1alpha1
kind: SLO
metadata: {{name: {name}, namespace: shop}}
spec:
  appRef: {{name: checkout}}
  objective: 99.5
  window: {window}
  groupBy: [route]
  sli:
    errorTotal:
      errors: sum by (route) (rate(http_errors_total[{{{{.window}}}}]))
      total: sum by (route) (rate(http_requests_total[{{{{.window}}}}]))
"#
            ))
            .unwrap()
        };
        let jobs = slo_jobs(
            &[slo("checkout-availability", "30d"), slo("quick", "7d")],
            &[],
            60,
        );
        assert_eq!(jobs.len(), 2);
        let month = &jobs[0];
        assert_eq!(month.key, JobKey::slo("shop", "checkout-availability"));
        assert!(month.key.is_slo());
        assert_eq!(
            month.key.to_string(),
            "SLO/shop/checkout-availability budget forecast"
        );
        assert_eq!(month.app, "checkout");
        assert_eq!(
            month.query,
            r#"slo:sli_error:ratio_rate5m{namespace="shop", app="checkout", slo="checkout-availability"}"#
        );
        let JobKind::Budget {
            window,
            budget,
            horizon,
            horizons,
            step,
            ..
        } = &month.kind
        else {
            panic!("budget expected");
        };
        assert_eq!((*window, *horizon, *step), (30 * DAY, 7 * DAY, 300));
        assert!((budget - 0.005).abs() < 1e-12);
        let labels: Vec<&str> = horizons.iter().map(|h| h.label.as_str()).collect();
        assert_eq!(labels, ["1h", "1d", "1w"]);
        assert_eq!(month.step(60), 300);
        assert_eq!(month.step(600), 600, "a coarser engine step wins");
        assert_eq!(month.history_seconds(300), 30 * DAY);
        assert!(month.refits());

        let week = &jobs[1];
        assert_eq!(week.key.policy, "quick");
        let JobKind::Budget { horizon, .. } = week.kind else {
            panic!("budget expected");
        };
        assert_eq!(horizon, 42 * HOUR);
        assert_eq!(budget_horizon(3_600), HOUR);
    }

    /// An availability SLO of the `checkout` app in `shop`, with `extra` spec lines.
    fn availability(extra: &str) -> Slo {
        serde_yaml::from_str(&format!(
            "apiVersion: vigil.dev/v1alpha1\nkind: SLO\n\
             metadata: {{name: checkout-availability, namespace: shop}}\n\
             spec:\n  appRef: {{name: checkout}}\n  objective: 99.5\n  window: 30d\n\
             \x20 sli: {{availability: {{}}}}\n{extra}"
        ))
        .unwrap()
    }

    fn parse(query: &str) -> promql_parser::parser::Expr {
        promql_parser::parser::parse(query).unwrap_or_else(|e| panic!("{e} in the query:\n{query}"))
    }

    /// `max by (<labels>) (<inner>)`: the labels and the inner expression.
    fn max_by(expr: &promql_parser::parser::Expr) -> (Vec<String>, promql_parser::parser::Expr) {
        let promql_parser::parser::Expr::Aggregate(a) = expr else {
            panic!("an aggregation expected: {expr}");
        };
        assert_eq!(a.op.to_string(), "max", "{expr}");
        let Some(promql_parser::parser::LabelModifier::Include(by)) = &a.modifier else {
            panic!("max by (…) expected: {expr}");
        };
        (by.labels.clone(), (*a.expr).clone())
    }

    /// The budget query of `slo` over the `checkout` app: the recording side, the raw side, and
    /// the labels each side and the `or` keep; the published labels are the recording rule's.
    fn sides(
        slo: &Slo,
    ) -> (
        Vec<String>,
        Vec<String>,
        promql_parser::parser::Expr,
        promql_parser::parser::Expr,
        Vec<String>,
    ) {
        let app: MonitoredApp = serde_yaml::from_str(fixtures::APP).unwrap();
        let job = slo_jobs(std::slice::from_ref(slo), std::slice::from_ref(&app), 60).remove(0);
        let promql_parser::parser::Expr::Binary(or) = parse(&job.query) else {
            panic!("a binary expression expected: {}", job.query);
        };
        assert_eq!(or.op.to_string(), "or", "{}", job.query);
        let Some(promql_parser::parser::LabelModifier::Include(on)) =
            or.modifier.as_ref().and_then(|m| m.matching.clone())
        else {
            panic!("or on (…) expected: {}", job.query);
        };
        let (left_by, recording) = max_by(&or.lhs);
        let (right_by, raw) = max_by(&or.rhs);
        assert_eq!(left_by, right_by, "both sides keep the same labels");
        // The recording side reads what the job reads without the app.
        assert_eq!(
            recording,
            parse(&slo_jobs(std::slice::from_ref(slo), &[], 60)[0].query)
        );
        // The raw side is the expression the 5-minute ratio's recording rule evaluates, and the
        // labels put back are the ones that rule writes.
        let rules = crate::render::slo::slo_rules(slo, &app);
        let rule = rules.groups[0]
            .rules
            .iter()
            .find_map(|r| match r {
                crate::render::rules::Rule::Recording(r)
                    if r.record == "slo:sli_error:ratio_rate5m" =>
                {
                    Some(r.clone())
                }
                _ => None,
            })
            .unwrap();
        let JobKind::Budget { labels, step, .. } = &job.kind else {
            panic!("budget expected");
        };
        assert_eq!(*step, 300);
        assert_eq!(labels, &rule.labels);
        assert_eq!(raw, parse(&rule.expr));
        (
            left_by,
            on.labels,
            recording,
            raw,
            labels.keys().cloned().collect(),
        )
    }

    /// With its app, a budget job reads the recording where it has a point and the rendered
    /// raw ratio elsewhere, both reduced to the `groupBy` labels and joined on them, so one
    /// group stays one series whichever side fills a step.
    #[test]
    fn a_grouped_budget_job_fills_the_recording_from_the_raw_series() {
        let slo = availability("  groupBy: [route, method]\n  labels: {team: payments}\n");
        let (by, on, recording, raw, labels) = sides(&slo);
        assert_eq!(by, ["route", "method"]);
        assert_eq!(on, ["route", "method"]);
        assert!(recording.to_string().contains("slo:sli_error:ratio_rate5m"));
        let raw = raw.to_string();
        assert!(
            raw.contains("http_requests_total") && raw.contains("[5m]"),
            "the raw side reads the app's request counter at the recording's window: {raw}"
        );
        assert!(labels.contains(&"team".to_owned()) && labels.contains(&"sloth_id".to_owned()));
    }

    /// Without `groupBy` both sides are reduced to one series with no labels and joined on
    /// none; the published labels are still the recording rule's.
    #[test]
    fn an_ungrouped_budget_job_is_one_series() {
        let (by, on, _, _, labels) = sides(&availability(""));
        assert!(by.is_empty() && on.is_empty(), "{by:?} {on:?}");
        assert_eq!(
            labels,
            [
                "app",
                "namespace",
                "slo",
                "sloth_id",
                "sloth_service",
                "sloth_slo"
            ]
        );
    }

    /// An SLO whose app is not among the apps (another namespace's `checkout` does not count)
    /// reads its recording alone, as before the app could be read.
    #[test]
    fn without_its_app_a_budget_job_reads_the_recording_alone() {
        let other: MonitoredApp =
            serde_yaml::from_str(&fixtures::APP.replace("namespace: shop", "namespace: staging"))
                .unwrap();
        let job = slo_jobs(&[availability("")], &[other], 60).remove(0);
        assert_eq!(
            job.query,
            r#"slo:sli_error:ratio_rate5m{namespace="shop", app="checkout", slo="checkout-availability"}"#
        );
        assert!(matches!(
            parse(&job.query),
            promql_parser::parser::Expr::VectorSelector(_)
        ));
    }
}
