//! Redaction: the processor that removes secrets and personal data before anything leaves the
//! pod — from log messages and attributes, from OTLP log bodies and attributes, and from span,
//! span event and span link attributes.
//!
//! The built-in detectors ([`detectors`]) replace what they find with `[REDACTED:<kind>]`
//! (`card`, `iban`, `email`, `phone`, `token`, `jwt`); configured patterns with their own
//! replacement (default `[REDACTED]`, taken literally). Clean text is the common case and
//! costs one prescan pass plus, with configured patterns, one `RegexSet` match; nothing is
//! allocated unless something is found. Overlapping finds are merged into one replacement, so
//! no part of a secret survives between two of them.

pub mod detectors;

#[cfg(test)]
mod tests;

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use regex::{Regex, RegexSet};
use vigil_crds::agent_config::RedactionConfig;
use vigil_crds::monitored_app::Detector;

use crate::batch::Batch;
use crate::event::LogEvent;
use detectors::Found;

#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    #[error("redaction.patterns[{index}] ({name}): invalid regular expression")]
    Pattern {
        index: usize,
        name: String,
        #[source]
        source: regex::Error,
    },
    #[error("redaction.patterns: the patterns together are too large to compile")]
    PatternSet(#[source] regex::Error),
}

/// A configured pattern.
#[derive(Debug)]
struct Pattern {
    name: String,
    regex: Regex,
    replacement: String,
}

/// Which built-in detectors run.
#[derive(Clone, Copy, Debug, Default)]
struct Enabled {
    card: bool,
    iban: bool,
    email: bool,
    phone: bool,
    token: bool,
    jwt: bool,
}

impl Enabled {
    fn any(self) -> bool {
        self.card || self.iban || self.email || self.phone || self.token || self.jwt
    }
}

/// What replaces a find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    BuiltIn(Found),
    Pattern(usize),
}

const BUILT_INS: [(Found, &str, &str); 6] = [
    (Found::Card, "card", "[REDACTED:card]"),
    (Found::Iban, "iban", "[REDACTED:iban]"),
    (Found::Email, "email", "[REDACTED:email]"),
    (Found::Phone, "phone", "[REDACTED:phone]"),
    (Found::Token, "token", "[REDACTED:token]"),
    (Found::Jwt, "jwt", "[REDACTED:jwt]"),
];

/// Which rule names a range several rules found: configured patterns (the user's own choice)
/// first, then the more specific built-ins.
fn rank(rule: Rule) -> usize {
    match rule {
        Rule::Pattern(index) => index,
        Rule::BuiltIn(Found::Jwt) => usize::MAX - 6,
        Rule::BuiltIn(Found::Card) => usize::MAX - 5,
        Rule::BuiltIn(Found::Iban) => usize::MAX - 4,
        Rule::BuiltIn(Found::Email) => usize::MAX - 3,
        Rule::BuiltIn(Found::Phone) => usize::MAX - 2,
        Rule::BuiltIn(Found::Token) => usize::MAX - 1,
    }
}

fn built_in_index(found: Found) -> usize {
    BUILT_INS
        .iter()
        .position(|(f, _, _)| *f == found)
        .unwrap_or_default()
}

/// Applies the configured detectors and patterns.
#[derive(Debug)]
pub struct Redactor {
    enabled: Enabled,
    patterns: Vec<Pattern>,
    pattern_set: Option<RegexSet>,
    /// Replacements made, per built-in detector then per pattern.
    counts: Vec<AtomicU64>,
}

impl Redactor {
    pub fn new(config: &RedactionConfig) -> Result<Self, RedactError> {
        let mut enabled = Enabled::default();
        for detector in &config.detectors {
            match detector {
                Detector::CreditCard => enabled.card = true,
                Detector::Iban => enabled.iban = true,
                Detector::Email => enabled.email = true,
                Detector::Phone => enabled.phone = true,
                Detector::BearerToken => enabled.token = true,
                Detector::Jwt => enabled.jwt = true,
            }
        }
        let patterns = config
            .patterns
            .iter()
            .enumerate()
            .map(|(index, p)| {
                Regex::new(&p.regex)
                    .map(|regex| Pattern {
                        name: p.name.clone(),
                        regex,
                        replacement: p.replacement.clone(),
                    })
                    .map_err(|source| RedactError::Pattern {
                        index,
                        name: p.name.clone(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pattern_set = if patterns.is_empty() {
            None
        } else {
            Some(
                RegexSet::new(patterns.iter().map(|p| p.regex.as_str()))
                    .map_err(RedactError::PatternSet)?,
            )
        };
        let counts = (0..BUILT_INS.len() + patterns.len())
            .map(|_| AtomicU64::new(0))
            .collect();
        Ok(Redactor {
            enabled,
            patterns,
            pattern_set,
            counts,
        })
    }

    /// Replacements made so far, by rule: `card`, `iban`, `email`, `phone`, `token`, `jwt`,
    /// then each configured pattern by name.
    pub fn redactions(&self) -> Vec<(&str, u64)> {
        BUILT_INS
            .iter()
            .map(|(_, name, _)| *name)
            .chain(self.patterns.iter().map(|p| p.name.as_str()))
            .zip(&self.counts)
            .map(|(name, count)| (name, count.load(Ordering::Relaxed)))
            .collect()
    }

    /// Every range a rule matches in `text`, unsorted.
    fn finds(&self, text: &str) -> Vec<(Range<usize>, Rule)> {
        let bytes = text.as_bytes();
        let mut found = Vec::new();
        if self.enabled.any() {
            let t = detectors::prescan(bytes);
            let e = self.enabled;
            if e.card && t.card {
                detectors::cards(bytes, &mut found);
            }
            if e.iban && t.iban {
                detectors::ibans(bytes, &mut found);
            }
            if e.email && t.email {
                detectors::emails(bytes, &mut found);
            }
            if e.phone && t.phone {
                detectors::phones(bytes, &mut found);
            }
            if e.token && t.token {
                detectors::tokens(bytes, &mut found);
            }
            if e.jwt && t.jwt {
                detectors::jwts(bytes, &mut found);
            }
        }
        let mut finds: Vec<(Range<usize>, Rule)> = found
            .into_iter()
            .map(|(range, kind)| (range, Rule::BuiltIn(kind)))
            .collect();
        if let Some(set) = &self.pattern_set {
            for index in set.matches(text).iter() {
                finds.extend(
                    self.patterns[index]
                        .regex
                        .find_iter(text)
                        .filter(|m| !m.is_empty())
                        .map(|m| (m.range(), Rule::Pattern(index))),
                );
            }
        }
        finds
    }

    fn replacement(&self, rule: Rule) -> &str {
        match rule {
            Rule::BuiltIn(found) => BUILT_INS[built_in_index(found)].2,
            Rule::Pattern(index) => &self.patterns[index].replacement,
        }
    }

    fn count(&self, rule: Rule) {
        let index = match rule {
            Rule::BuiltIn(found) => built_in_index(found),
            Rule::Pattern(index) => BUILT_INS.len() + index,
        };
        if let Some(counter) = self.counts.get(index) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The redacted text, or `None` when nothing matched (no allocation on the common path).
    pub fn redact(&self, text: &str) -> Option<String> {
        let mut finds = self.finds(text);
        if finds.is_empty() {
            return None;
        }
        // Earliest first, longest first among equal starts, then the most specific rule;
        // overlaps merge into the first.
        finds.sort_unstable_by(|(a, rule_a), (b, rule_b)| {
            a.start
                .cmp(&b.start)
                .then(b.end.cmp(&a.end))
                .then(rank(*rule_a).cmp(&rank(*rule_b)))
        });
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut current: Option<(Range<usize>, Rule)> = None;
        for (range, rule) in finds {
            match &mut current {
                Some((open, _)) if range.start < open.end => open.end = open.end.max(range.end),
                _ => {
                    if let Some((done, done_rule)) = current.take() {
                        out.push_str(&text[copied..done.start]);
                        out.push_str(self.replacement(done_rule));
                        self.count(done_rule);
                        copied = done.end;
                    }
                    current = Some((range, rule));
                }
            }
        }
        if let Some((done, done_rule)) = current {
            out.push_str(&text[copied..done.start]);
            out.push_str(self.replacement(done_rule));
            self.count(done_rule);
            copied = done.end;
        }
        out.push_str(&text[copied..]);
        Some(out)
    }

    /// Redacts `text`; whether anything was replaced.
    fn redact_in_place(&self, text: &mut String) -> bool {
        match self.redact(text) {
            Some(redacted) => {
                *text = redacted;
                true
            }
            None => false,
        }
    }

    /// Redacts the message and attribute values of a log event.
    pub fn redact_event(&self, event: &mut LogEvent) {
        self.redact_in_place(&mut event.message);
        for (_, value) in &mut event.attributes {
            self.redact_in_place(value);
        }
    }

    /// Redacts string values, also inside arrays and key-value lists; whether anything was
    /// replaced.
    fn redact_value(&self, value: &mut AnyValue) -> bool {
        match &mut value.value {
            Some(any_value::Value::StringValue(s)) => self.redact_in_place(s),
            Some(any_value::Value::ArrayValue(array)) => {
                let mut replaced = false;
                for v in &mut array.values {
                    replaced |= self.redact_value(v);
                }
                replaced
            }
            Some(any_value::Value::KvlistValue(list)) => self.redact_attributes(&mut list.values),
            _ => false,
        }
    }

    fn redact_attributes(&self, attributes: &mut [KeyValue]) -> bool {
        let mut replaced = false;
        for kv in attributes {
            if let Some(value) = &mut kv.value {
                replaced |= self.redact_value(value);
            }
        }
        replaced
    }

    /// Redacts log bodies and attributes, and span attributes and event attributes, in place.
    /// Resource attributes (the pod identity) and metrics are left as they are. Returns whether
    /// anything was replaced.
    pub fn redact_batch(&self, batch: &mut Batch) -> bool {
        let mut replaced = false;
        match batch {
            Batch::Logs(request) => {
                for record in request
                    .resource_logs
                    .iter_mut()
                    .flat_map(|rl| &mut rl.scope_logs)
                    .flat_map(|sl| &mut sl.log_records)
                {
                    if let Some(body) = &mut record.body {
                        replaced |= self.redact_value(body);
                    }
                    replaced |= self.redact_attributes(&mut record.attributes);
                }
            }
            Batch::Traces(request) => {
                for span in request
                    .resource_spans
                    .iter_mut()
                    .flat_map(|rs| &mut rs.scope_spans)
                    .flat_map(|ss| &mut ss.spans)
                {
                    replaced |= self.redact_attributes(&mut span.attributes);
                    for event in &mut span.events {
                        replaced |= self.redact_attributes(&mut event.attributes);
                    }
                    for link in &mut span.links {
                        replaced |= self.redact_attributes(&mut link.attributes);
                    }
                    if let Some(status) = &mut span.status {
                        replaced |= self.redact_in_place(&mut status.message);
                    }
                }
            }
            Batch::Metrics(_) | Batch::Samples(_) => {}
        }
        replaced
    }
}
