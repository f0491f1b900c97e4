//! What the scrape source makes of a parsed page: remote-write series and the Prometheus text
//! format 0.0.4 for the agent's `/metrics` (pull setups), both carrying the pod identity labels.
//!
//! The labels Vigil enforces — `namespace`, `app`, `pod` and `cluster`, the tenancy and
//! alert-routing boundary — always carry the agent's values: a page label of one of these names
//! is kept as `exported_<name>` (as Prometheus does for target labels without `honor_labels`),
//! and the Prometheus jobs Vigil renders drop those copies. Every other label the agent adds
//! (`version`, and on remote-written series `job`, `instance`, `container`) only fills a gap:
//! when the page has a label of that name, the page's label is kept as it is, never renamed.

use std::fmt::Write as _;

use super::parse::{Exposition, Family, Label, MetricType, Sample};
use crate::prompb::{self, TimeSeries};

/// Identity labels as `(name, value)` pairs.
pub type IdentityLabels<'a> = [(&'a str, &'a str)];

/// The identity labels whose value is always the agent's.
pub const ENFORCED_LABELS: [&str; 4] = ["namespace", "app", "pod", "cluster"];

fn enforced(name: &str) -> bool {
    ENFORCED_LABELS.contains(&name)
}

/// The name a page label is kept under: itself, or `exported_<name>` (repeated until free)
/// when an enforced identity label or another page label already has that name.
fn kept_name<'n>(
    name: &'n str,
    labels: &[Label<'_>],
    identity: &IdentityLabels<'_>,
) -> std::borrow::Cow<'n, str> {
    if !enforced(name) || !identity.iter().any(|(n, _)| *n == name) {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut renamed = format!("exported_{name}");
    while identity.iter().any(|(n, _)| *n == renamed) || labels.iter().any(|l| l.name == renamed) {
        renamed.insert_str(0, "exported_");
    }
    std::borrow::Cow::Owned(renamed)
}

/// The identity labels a sample with page labels `labels` gets: the enforced ones always, the
/// others when the page has no label of their name; empty values never.
fn added<'x>(
    identity: &'x IdentityLabels<'x>,
    labels: &'x [Label<'x>],
) -> impl Iterator<Item = (&'x str, &'x str)> + 'x {
    identity.iter().copied().filter(|(name, value)| {
        !value.is_empty() && (enforced(name) || !labels.iter().any(|l| l.name == *name))
    })
}

/// One remote-write series per sample of the page, labels sorted by name with `__name__`,
/// stamped with the sample's own timestamp or `scrape_time_ms`.
pub fn append_series(
    page: &Exposition<'_>,
    identity: &IdentityLabels<'_>,
    scrape_time_ms: i64,
    out: &mut Vec<TimeSeries>,
) {
    out.reserve(page.sample_count());
    for sample in page.all_samples() {
        let labels = page.labels(sample);
        let mut series_labels = Vec::with_capacity(labels.len() + identity.len() + 1);
        series_labels.push(prompb::Label {
            name: "__name__".to_owned(),
            value: sample.name.to_owned(),
        });
        for label in labels {
            series_labels.push(prompb::Label {
                name: kept_name(label.name, labels, identity).into_owned(),
                value: label.value.clone().into_owned(),
            });
        }
        for (name, value) in added(identity, labels) {
            series_labels.push(prompb::Label {
                name: name.to_owned(),
                value: value.to_owned(),
            });
        }
        series_labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        out.push(TimeSeries {
            labels: series_labels,
            samples: vec![prompb::Sample {
                value: sample.value,
                timestamp: sample.timestamp_ms.unwrap_or(scrape_time_ms),
            }],
        });
    }
}

/// The `WriteRequest` encoding of [`append_series`]' series less their labels of empty value,
/// by prost: what the series cache must write for a page.
#[cfg(any(test, feature = "fuzzing"))]
pub fn owned_encoding(
    page: &Exposition<'_>,
    identity: &IdentityLabels<'_>,
    scrape_time_ms: i64,
) -> Vec<u8> {
    let mut timeseries = Vec::new();
    append_series(page, identity, scrape_time_ms, &mut timeseries);
    for series in &mut timeseries {
        series.labels.retain(|l| !l.value.is_empty());
    }
    prost::Message::encode_to_vec(&prompb::WriteRequest { timeseries })
}

/// The labels of remote-written series, [`append_series`]' labels encoded straight into a
/// `WriteRequest`'s protobuf ([`prompb::put_labels`]) without building owned strings, and
/// without the labels of empty value (Prometheus treats an empty value as absent, and the
/// remote-write sink drops them), so a record of such series is sent as it is
/// ([`crate::sinks::remote_write`]). What does not change from sample to sample is worked out
/// once: the identity labels with a value, sorted by name, whether each is enforced, and the
/// enforced names a page label may clash with.
#[derive(Debug)]
pub struct SeriesLabels<'i> {
    identity: &'i IdentityLabels<'i>,
    added: Vec<(&'i str, &'i str, bool)>,
    clashing: Vec<&'i str>,
}

impl<'i> SeriesLabels<'i> {
    pub fn new(identity: &'i IdentityLabels<'i>) -> SeriesLabels<'i> {
        let mut added: Vec<(&str, &str, bool)> = identity
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|&(name, value)| (name, value, enforced(name)))
            .collect();
        added.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let clashing = identity
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| enforced(name))
            .collect();
        SeriesLabels {
            identity,
            added,
            clashing,
        }
    }

    /// Appends the encoded labels of the series of the sample `name` with page labels
    /// `labels`: `__name__`, the page's labels (renamed where they clash) and the identity
    /// labels, sorted by name.
    pub fn encode(&self, name: &str, labels: &[Label<'_>], out: &mut Vec<u8>) {
        // Pages write labels sorted as a rule, so the page's are only sorted when they are
        // not, and the merge with the identity labels takes one comparison per label.
        let mut page_labels: Vec<(std::borrow::Cow<'_, str>, &str)> =
            Vec::with_capacity(labels.len() + 1);
        page_labels.push((std::borrow::Cow::Borrowed("__name__"), name));
        for label in labels.iter().filter(|l| !l.value.is_empty()) {
            let name = if self.clashing.contains(&label.name) {
                kept_name(label.name, labels, self.identity)
            } else {
                std::borrow::Cow::Borrowed(label.name)
            };
            page_labels.push((name, label.value.as_ref()));
        }
        if !page_labels.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            page_labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        // As [`added`]: the enforced ones always, the others where the page has none.
        let mut added = self
            .added
            .iter()
            .filter(|(name, _, enforced)| *enforced || !labels.iter().any(|l| l.name == *name))
            .peekable();
        let mut series_labels: Vec<(std::borrow::Cow<'_, str>, &str)> =
            Vec::with_capacity(page_labels.len() + self.added.len());
        for (name, value) in page_labels {
            while let Some(&&(added_name, added_value, _)) = added.peek() {
                if added_name >= name.as_ref() {
                    break;
                }
                series_labels.push((std::borrow::Cow::Borrowed(added_name), added_value));
                added.next();
            }
            series_labels.push((name, value));
        }
        series_labels
            .extend(added.map(|&(name, value, _)| (std::borrow::Cow::Borrowed(name), value)));
        prompb::put_labels(&series_labels, out);
    }
}

/// A series the agent adds about the scrape itself (`up`, `scrape_duration_seconds`, …); identity
/// labels of empty value are left out.
pub fn scrape_series(
    name: &str,
    value: f64,
    identity: &IdentityLabels<'_>,
    time_ms: i64,
) -> TimeSeries {
    let mut labels: Vec<prompb::Label> = std::iter::once(("__name__", name))
        .chain(
            identity
                .iter()
                .copied()
                .filter(|(_, value)| !value.is_empty()),
        )
        .map(|(name, value)| prompb::Label {
            name: name.to_owned(),
            value: value.to_owned(),
        })
        .collect();
    labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    TimeSeries {
        labels,
        samples: vec![prompb::Sample {
            value,
            timestamp: time_ms,
        }],
    }
}

/// Whether `sample` is the OpenMetrics `_created` series of `family`, which the 0.0.4 format
/// carries as a gauge family of its own.
fn is_created(family: &Family<'_>, sample: &Sample<'_>) -> bool {
    matches!(
        family.metric_type,
        MetricType::Counter
            | MetricType::Histogram
            | MetricType::GaugeHistogram
            | MetricType::Summary
    ) && sample.name.strip_prefix(family.name) == Some("_created")
}

/// The 0.0.4 type keyword for a family type (OpenMetrics-only types map as the Python client
/// maps them).
fn text_type(metric_type: MetricType) -> &'static str {
    match metric_type {
        MetricType::Counter => "counter",
        MetricType::Gauge | MetricType::Info | MetricType::StateSet => "gauge",
        MetricType::Histogram | MetricType::GaugeHistogram => "histogram",
        MetricType::Summary => "summary",
        MetricType::Untyped => "untyped",
    }
}

/// Renders the page in the Prometheus text format 0.0.4 with the identity labels added to
/// every sample. Families declared without samples are left out.
pub fn render_text(page: &Exposition<'_>, identity: &IdentityLabels<'_>, out: &mut String) {
    for family in page.families() {
        let samples = page.samples(family);
        let Some(first_main) = samples.iter().find(|s| !is_created(family, s)) else {
            if samples.is_empty() {
                continue;
            }
            render_created(page, family, samples, identity, out);
            continue;
        };
        // Counters and infos are named after their samples in 0.0.4 (`foo_total`,
        // `foo_info`); the other types after the family.
        let header = match family.metric_type {
            MetricType::Counter | MetricType::Info => first_main.name,
            _ => family.name,
        };
        render_header(header, family, text_type(family.metric_type), out);
        for sample in samples.iter().filter(|s| !is_created(family, s)) {
            render_sample(page, sample, identity, out);
        }
        render_created(page, family, samples, identity, out);
    }
}

fn render_created(
    page: &Exposition<'_>,
    family: &Family<'_>,
    samples: &[Sample<'_>],
    identity: &IdentityLabels<'_>,
    out: &mut String,
) {
    let mut created = samples.iter().filter(|s| is_created(family, s)).peekable();
    let Some(first) = created.peek() else {
        return;
    };
    render_header(first.name, family, "gauge", out);
    for sample in created {
        render_sample(page, sample, identity, out);
    }
}

fn render_header(name: &str, family: &Family<'_>, type_keyword: &str, out: &mut String) {
    if let Some(help) = &family.help {
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(type_keyword);
    out.push('\n');
}

fn push_label(name: &str, value: &str, first: &mut bool, out: &mut String) {
    if !*first {
        out.push(',');
    }
    *first = false;
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn render_sample(
    page: &Exposition<'_>,
    sample: &Sample<'_>,
    identity: &IdentityLabels<'_>,
    out: &mut String,
) {
    out.push_str(sample.name);
    let labels = page.labels(sample);
    if !labels.is_empty() || !identity.is_empty() {
        out.push('{');
        let mut first = true;
        for label in labels {
            push_label(
                &kept_name(label.name, labels, identity),
                &label.value,
                &mut first,
                out,
            );
        }
        for (name, value) in added(identity, labels) {
            push_label(name, value, &mut first, out);
        }
        out.push('}');
    }
    out.push(' ');
    push_value(sample.value, out);
    if let Some(ts) = sample.timestamp_ms {
        let _ = write!(out, " {ts}");
    }
    out.push('\n');
}

/// A value as Go writes it: `NaN`, `+Inf`, `-Inf`, integers without a fraction.
pub fn push_value(value: f64, out: &mut String) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value:?}");
    }
}
