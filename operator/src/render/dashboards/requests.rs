//! The request panels' queries: each app's own request metrics
//! ([`MonitoredAppSpec::request_metrics`](vigil_crds::MonitoredAppSpec::request_metrics), the
//! names its alert rules and SLIs use too), scoped like every dashboard query, and joined with
//! `or` when a view's apps name them differently.

use std::collections::BTreeMap;

use vigil_crds::monitored_app::RequestMetrics;

use super::{promql_str, Inventory, RATE, SCOPE};

/// The request series of a dashboard's apps: one entry per distinct request metric naming,
/// with the apps that use it (`None` when every app uses the same naming).
pub(super) struct RequestSeries(Vec<(RequestMetrics, Option<String>)>);

impl RequestSeries {
    /// The request metrics of `apps` in `namespace`; an app missing from `inv` counts with the
    /// default naming, an app that serves no requests (preset `none`) not at all.
    pub(super) fn of(namespace: &str, apps: &[String], inv: &Inventory) -> Self {
        let mut by_naming: BTreeMap<RequestMetrics, Vec<&str>> = BTreeMap::new();
        for name in apps {
            let app = inv.app(namespace, name);
            if app.is_some_and(|a| !a.spec.serves_requests()) {
                continue;
            }
            let naming = app.map(|a| a.spec.request_metrics()).unwrap_or_default();
            by_naming.entry(naming).or_default().push(name);
        }
        if by_naming.len() <= 1 {
            let Some(naming) = by_naming.into_keys().next() else {
                return RequestSeries(Vec::new());
            };
            // One naming: no app matcher needed (apps that serve no requests have no such series).
            return RequestSeries(vec![(naming, None)]);
        }
        RequestSeries(
            by_naming
                .into_iter()
                .map(|(naming, names)| (naming, Some(promql_str(&app_regex(&names)))))
                .collect(),
        )
    }

    /// Whether none of the view's apps serves requests: the request panels are left out.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `sum by (<by>) (<func>(<series>[<range>]<offset>) or …)`, one term per naming;
    /// `series` gives a naming's series name and extra matchers (after the scope).
    pub(super) fn sum(
        &self,
        by: &str,
        (func, range, offset): (&str, &str, &str),
        series: impl Fn(&RequestMetrics) -> (String, String),
    ) -> String {
        let terms: Vec<String> = self
            .0
            .iter()
            .map(|(naming, apps)| {
                let (name, extra) = series(naming);
                let apps = apps
                    .as_ref()
                    .map(|re| format!(r#", app=~"{re}""#))
                    .unwrap_or_default();
                format!("{func}({name}{{{SCOPE}{apps}{extra}}}[{range}]{offset})")
            })
            .collect();
        format!("sum by ({by}) ({})", terms.join(" or "))
    }

    /// Requests per second.
    pub(super) fn rate(&self, by: &str) -> String {
        self.sum(by, ("rate", RATE, ""), |m| {
            (m.counter.clone(), String::new())
        })
    }

    /// Requests over `range`, ending `offset` ago (`""` or ` offset 1w`).
    pub(super) fn increase(&self, by: &str, range: &str, offset: &str) -> String {
        self.sum(by, ("increase", range, offset), |m| {
            (m.counter.clone(), String::new())
        })
    }

    /// Failed requests / all requests; 0 rather than no data when nothing failed.
    pub(super) fn error_ratio(&self, by: &str) -> String {
        let errors = self.sum(by, ("rate", RATE, ""), |m| {
            (
                m.counter.clone(),
                format!(r#", {}=~"{}""#, m.status_label, promql_str(&m.error_regex)),
            )
        });
        let all = self.rate(by);
        format!("({errors} or {all} * 0) / {all}")
    }

    /// The `quantile` of request durations, per app.
    pub(super) fn latency(&self, quantile: &str) -> String {
        let buckets = self.sum("app, le", ("rate", RATE, ""), |m| {
            (format!("{}_bucket", m.duration_histogram), String::new())
        });
        format!("histogram_quantile({quantile}, {buckets})")
    }
}

/// A regex matching exactly `names` (once anchored, as Prometheus anchors `=~`), not yet
/// escaped for a PromQL string.
pub(super) fn app_regex(names: &[&str]) -> String {
    let escaped: Vec<String> = names
        .iter()
        .map(|n| {
            n.chars()
                .flat_map(|c| {
                    let special = r"\.+*?()|[]{}^$".contains(c);
                    special.then_some('\\').into_iter().chain([c])
                })
                .collect()
        })
        .collect();
    escaped.join("|")
}
