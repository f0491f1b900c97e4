//! OpenSLO input: an `openslo/v1` `SLO` with an inline ratio indicator on Prometheus becomes a
//! Vigil `SLO` (`vigil.dev/v1alpha1`), which is then validated like any other. What Vigil
//! cannot honour is refused with the OpenSLO field that holds it, never silently dropped.
//!
//! | OpenSLO | Vigil |
//! |---|---|
//! | `metadata.name`, `metadata.namespace` | the same |
//! | `metadata.labels` (a string, or a list of one) | `spec.labels` |
//! | `spec.service` | `spec.appRef.name` (the `MonitoredApp`) |
//! | `spec.description` | `spec.description` |
//! | `spec.indicator.spec.ratioMetric.good` / `.bad` and `.total`, `metricSource.type: Prometheus` | `spec.sli.goodTotal` / `spec.sli.errorTotal` |
//! | `spec.timeWindow[0].duration` (rolling) | `spec.window` |
//! | `spec.objectives[0].target` (or `targetPercent`) | `spec.objective` (percent) |
//!
//! A query that uses `{{.window}}` is taken as it is; a plain counter selector such as
//! `http_requests_total{code=~"5.."}` becomes `sum(rate(<selector>[{{.window}}]))`.

use serde_yaml::{Mapping, Value as Yaml};

/// The OpenSLO `apiVersion` read.
pub const API_VERSION: &str = "openslo/v1";

/// A field of the OpenSLO document and what is wrong with it.
pub type FieldProblem = (String, String);

/// Converts an OpenSLO `SLO` document into a Vigil `SLO` document.
pub fn to_vigil(doc: &Yaml) -> Result<Yaml, Vec<FieldProblem>> {
    let mut problems: Vec<FieldProblem> = Vec::new();
    let mut problem = |field: &str, message: String| problems.push((field.to_owned(), message));
    let get = |v: &Yaml, key: &str| v.get(key).cloned().unwrap_or(Yaml::Null);
    let metadata = get(doc, "metadata");
    let spec = get(doc, "spec");

    let mut vigil_meta = Mapping::new();
    for key in ["name", "namespace"] {
        if let Some(value) = metadata.get(key) {
            vigil_meta.insert(key.into(), value.clone());
        }
    }
    let mut labels = Mapping::new();
    if let Some(map) = metadata.get("labels").and_then(Yaml::as_mapping) {
        for (key, value) in map {
            let name = key.as_str().unwrap_or_default();
            let one = match value {
                Yaml::String(s) => Some(s.clone()),
                Yaml::Sequence(list) if list.len() == 1 => list[0].as_str().map(str::to_owned),
                _ => None,
            };
            match one {
                Some(text) => {
                    labels.insert(key.clone(), Yaml::String(text));
                }
                None => problem(
                    &format!("metadata.labels.{name}"),
                    "a label becomes a Prometheus label and needs exactly one string value".into(),
                ),
            }
        }
    }

    let known = [
        "description",
        "service",
        "indicator",
        "indicatorRef",
        "timeWindow",
        "budgetingMethod",
        "objectives",
        "alertPolicies",
    ];
    if let Some(map) = spec.as_mapping() {
        for key in map.keys().filter_map(Yaml::as_str) {
            if !known.contains(&key) {
                problem(
                    &format!("spec.{key}"),
                    format!("unknown OpenSLO v1 SLO field `{key}`"),
                );
            }
        }
    } else {
        problem("spec", "missing the OpenSLO SLO spec".into());
    }
    let mut out_spec = Mapping::new();
    match spec.get("service").and_then(Yaml::as_str) {
        Some(service) => {
            let mut app = Mapping::new();
            app.insert("name".into(), service.into());
            out_spec.insert("appRef".into(), Yaml::Mapping(app));
        }
        None => problem(
            "spec.service",
            "missing: the service names the MonitoredApp (same namespace) the objective is about"
                .into(),
        ),
    }
    if let Some(description) = spec.get("description") {
        out_spec.insert("description".into(), description.clone());
    }
    if spec.get("indicatorRef").is_some() {
        problem(
            "spec.indicatorRef",
            "SLI references are not supported; put the indicator inline in spec.indicator".into(),
        );
    }
    if let Some(alerts) = spec.get("alertPolicies") {
        if !matches!(alerts, Yaml::Null) && alerts.as_sequence().is_none_or(|l| !l.is_empty()) {
            problem(
                "spec.alertPolicies",
                "OpenSLO alert policies are not supported; Vigil renders multi-window burn-rate \
                 alerts (spec.alerting of the Vigil SLO)"
                    .into(),
            );
        }
    }
    match spec.get("budgetingMethod").and_then(Yaml::as_str) {
        None | Some("Occurrences") => {}
        Some(other) => problem(
            "spec.budgetingMethod",
            format!(
                "{other} is not supported; Vigil counts Occurrences (good events / all events)"
            ),
        ),
    }
    if let Some(indicator) = spec.get("indicator") {
        match indicator_sli(indicator) {
            Ok(sli) => {
                out_spec.insert("sli".into(), sli);
            }
            Err(list) => problems.extend(list),
        }
    } else if spec.get("indicatorRef").is_none() {
        problems.push((
            "spec.indicator".into(),
            "missing: an inline indicator with a ratioMetric is required".into(),
        ));
    }
    match window(&spec) {
        Ok(Some(w)) => {
            out_spec.insert("window".into(), w);
        }
        Ok(None) => {}
        Err(p) => problems.push(p),
    }
    match objective(&spec) {
        Ok(o) => {
            out_spec.insert("objective".into(), o);
        }
        Err(p) => problems.push(p),
    }
    if !labels.is_empty() {
        out_spec.insert("labels".into(), Yaml::Mapping(labels));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut out = Mapping::new();
    out.insert("apiVersion".into(), vigil_crds::API_VERSION.into());
    out.insert("kind".into(), "SLO".into());
    out.insert("metadata".into(), Yaml::Mapping(vigil_meta));
    out.insert("spec".into(), Yaml::Mapping(out_spec));
    Ok(Yaml::Mapping(out))
}

/// `spec.indicator` as a Vigil `sli`.
fn indicator_sli(indicator: &Yaml) -> Result<Yaml, Vec<FieldProblem>> {
    let base = "spec.indicator.spec";
    let spec = indicator.get("spec").cloned().unwrap_or(Yaml::Null);
    if spec.get("thresholdMetric").is_some() {
        return Err(vec![(
            format!("{base}.thresholdMetric"),
            "threshold metrics are not supported; use a ratioMetric (good or bad over total)"
                .into(),
        )]);
    }
    let Some(ratio) = spec.get("ratioMetric") else {
        return Err(vec![(
            format!("{base}.ratioMetric"),
            "missing: Vigil reads ratio metrics (good or bad over total)".into(),
        )]);
    };
    let base = format!("{base}.ratioMetric");
    let mut problems = Vec::new();
    if ratio.get("raw").is_some() || ratio.get("rawType").is_some() {
        problems.push((
            format!("{base}.raw"),
            "raw (precomputed) ratios are not supported; give good or bad and total".into(),
        ));
    }
    let counter = ratio.get("counter").and_then(Yaml::as_bool).unwrap_or(true);
    let mut query = |part: &str| -> Option<String> {
        let field = format!("{base}.{part}.metricSource");
        let source = ratio.get(part)?.get("metricSource");
        let Some(source) = source else {
            problems.push((field, "missing".into()));
            return None;
        };
        let kind = source
            .get("type")
            .and_then(Yaml::as_str)
            .unwrap_or_default();
        if !kind.eq_ignore_ascii_case("prometheus") {
            problems.push((
                format!("{field}.type"),
                format!("metric source type {kind:?} is not supported; Vigil reads Prometheus"),
            ));
            return None;
        }
        let Some(q) = source
            .get("spec")
            .and_then(|s| s.get("query"))
            .and_then(Yaml::as_str)
        else {
            problems.push((format!("{field}.spec.query"), "missing PromQL query".into()));
            return None;
        };
        match windowed_query(q.trim(), counter) {
            Ok(q) => Some(q),
            Err(message) => {
                problems.push((format!("{field}.spec.query"), message));
                None
            }
        }
    };
    let good = query("good");
    let bad = query("bad");
    let total = query("total");
    let has = |part: &str| ratio.get(part).is_some();
    if !has("total") {
        problems.push((format!("{base}.total"), "missing".into()));
    }
    if has("good") == has("bad") {
        problems.push((
            base.clone(),
            "set exactly one of good and bad next to total".into(),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut sli = Mapping::new();
    let mut form = Mapping::new();
    match (good, bad, total) {
        (Some(good), None, Some(total)) => {
            form.insert("good".into(), good.into());
            form.insert("total".into(), total.into());
            sli.insert("goodTotal".into(), Yaml::Mapping(form));
        }
        (None, Some(bad), Some(total)) => {
            form.insert("errors".into(), bad.into());
            form.insert("total".into(), total.into());
            sli.insert("errorTotal".into(), Yaml::Mapping(form));
        }
        _ => {
            return Err(vec![(
                base,
                "set exactly one of good and bad next to total".into(),
            )])
        }
    }
    Ok(Yaml::Mapping(sli))
}

/// A query with `{{.window}}` as it is; a counter selector as its summed rate over
/// `{{.window}}`.
fn windowed_query(query: &str, counter: bool) -> Result<String, String> {
    if query.contains("{{.window}}") {
        return Ok(query.to_owned());
    }
    let selector = regex::Regex::new(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^{}]*\})?$")
        .map_err(|e| format!("internal error: {e}"))?;
    if counter && selector.is_match(query) {
        return Ok(format!("sum(rate({query}[{{{{.window}}}}]))"));
    }
    Err(
        "the query must use {{.window}} as its range (such as sum(rate(x_total[{{.window}}]))) \
         or be a plain counter selector such as http_requests_total{code=~\"5..\"}"
            .into(),
    )
}

/// `spec.timeWindow` as a Vigil `window`; `None` for the default.
fn window(spec: &Yaml) -> Result<Option<Yaml>, FieldProblem> {
    let Some(list) = spec.get("timeWindow") else {
        return Ok(None);
    };
    let Some(list) = list.as_sequence() else {
        return Err((
            "spec.timeWindow".into(),
            "must be a list of one window".into(),
        ));
    };
    if list.len() != 1 {
        return Err((
            "spec.timeWindow".into(),
            format!(
                "has {} windows; Vigil measures an objective over exactly one",
                list.len()
            ),
        ));
    }
    let w = &list[0];
    if w.get("calendar").is_some() || w.get("isRolling").and_then(Yaml::as_bool) == Some(false) {
        return Err((
            "spec.timeWindow[0].isRolling".into(),
            "calendar windows are not supported; Vigil's windows are rolling".into(),
        ));
    }
    let Some(duration) = w.get("duration").and_then(Yaml::as_str) else {
        return Err((
            "spec.timeWindow[0].duration".into(),
            "missing, such as 28d".into(),
        ));
    };
    // OpenSLO writes minutes as `m` and months as `M`; a month is not a fixed duration.
    if duration.ends_with('M') || duration.ends_with('Q') || duration.ends_with('Y') {
        return Err((
            "spec.timeWindow[0].duration".into(),
            format!("{duration} is a calendar length; give days or weeks, such as 28d or 4w"),
        ));
    }
    Ok(Some(Yaml::String(duration.to_owned())))
}

/// `spec.objectives` (exactly one, with a target) as a Vigil `objective` percentage.
fn objective(spec: &Yaml) -> Result<Yaml, FieldProblem> {
    let Some(list) = spec.get("objectives").and_then(Yaml::as_sequence) else {
        return Err((
            "spec.objectives".into(),
            "missing: one objective with a target".into(),
        ));
    };
    if list.len() != 1 {
        return Err((
            "spec.objectives".into(),
            format!(
                "has {} objectives; Vigil reads exactly one (create one SLO per target)",
                list.len()
            ),
        ));
    }
    let o = &list[0];
    for unsupported in [
        "op",
        "value",
        "timeSliceTarget",
        "timeSliceWindow",
        "indicator",
        "indicatorRef",
    ] {
        if o.get(unsupported).is_some() {
            return Err((
                format!("spec.objectives[0].{unsupported}"),
                "not supported: Vigil objectives are a target share of good events".into(),
            ));
        }
    }
    let percent = match (
        o.get("target").and_then(Yaml::as_f64),
        o.get("targetPercent").and_then(Yaml::as_f64),
    ) {
        (Some(t), None) => t * 100.0,
        (None, Some(p)) => p,
        _ => {
            return Err((
                "spec.objectives[0].target".into(),
                "set exactly one of target (such as 0.999) and targetPercent (such as 99.9)".into(),
            ))
        }
    };
    // 0.999 × 100 is 99.9000000001 in binary; the objective is written as the user meant it.
    let percent = (percent * 1e9).round() / 1e9;
    Ok(Yaml::Number(percent.into()))
}

#[cfg(test)]
mod tests;
