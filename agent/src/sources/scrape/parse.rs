//! Parsing of what the scrape source fetches: the Prometheus text exposition format 0.0.4 and
//! OpenMetrics 1.0 text.
//!
//! The parser is hand-written over `&str` and borrows from the scraped body: metric and label
//! names are slices of it, label values and help texts are copied only when they contain
//! escapes. Samples and labels of the whole page live in two flat vectors, so a page costs a
//! handful of allocations rather than one per sample.
//!
//! Samples are grouped into metric families the way Prometheus reads them: a `# TYPE` or
//! `# HELP` line opens a family, and the samples that follow belong to it when their name is
//! the family name plus a suffix its type allows (`_total`, `_created`, `_bucket`, `_sum`,
//! `_count`, `_gsum`, `_gcount`, `_info`). Any other sample opens an untyped family of its own.
//!
//! Differences between the two formats that matter here: OpenMetrics timestamps are seconds
//! (floats) and 0.0.4 timestamps are milliseconds (integers); OpenMetrics text must end with
//! `# EOF` and may carry exemplars (`# {…} value`), which are ignored; OpenMetrics escapes `"`
//! in help texts. Malformed lines are an error naming the line number and what is wrong.

use std::borrow::Cow;
use std::ops::Range;

/// The exposition format of a scraped page, decided by its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `text/plain; version=0.0.4`: the classic Prometheus text format.
    PrometheusText,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` header announces; anything but OpenMetrics is read as the
    /// Prometheus text format, as Prometheus itself does.
    pub fn from_content_type(content_type: &str) -> Format {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        if media_type.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }
}

/// The type of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    /// OpenMetrics only: a histogram whose buckets can go down.
    GaugeHistogram,
    Summary,
    /// OpenMetrics only: labels describing the target, value 1.
    Info,
    /// OpenMetrics only: one series per state, value 1 for the current ones.
    StateSet,
    /// `untyped` (0.0.4) or `unknown` (OpenMetrics), and every family without a `# TYPE` line.
    Untyped,
}

impl MetricType {
    /// Reads a `# TYPE` keyword of either format.
    pub fn parse(keyword: &str) -> Option<MetricType> {
        Some(match keyword {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "untyped" | "unknown" => MetricType::Untyped,
            _ => return None,
        })
    }

    /// The name of the type in OpenMetrics (`unknown` for untyped).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Untyped => "unknown",
        }
    }

    /// Suffixes a sample name may add to the family name.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            MetricType::Counter => &["_total", "_created"],
            MetricType::Histogram => &["_bucket", "_sum", "_count", "_created"],
            MetricType::GaugeHistogram => &["_bucket", "_gsum", "_gcount", "_created"],
            MetricType::Summary => &["_sum", "_count", "_created"],
            MetricType::Info => &["_info"],
            MetricType::Gauge | MetricType::StateSet | MetricType::Untyped => &[],
        }
    }
}

/// One metric family: its metadata and the range of its samples in the [`Exposition`].
#[derive(Clone, Debug, PartialEq)]
pub struct Family<'a> {
    /// Family name as declared by `# TYPE`/`# HELP`, or the sample name for untyped samples.
    pub name: &'a str,
    /// Declared type; [`MetricType::Untyped`] without a `# TYPE` line.
    pub metric_type: MetricType,
    /// Help text, unescaped.
    pub help: Option<Cow<'a, str>>,
    /// OpenMetrics unit.
    pub unit: Option<&'a str>,
    typed: bool,
    samples: Range<usize>,
}

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    /// Series name, suffix included (`http_requests_total`, `latency_seconds_bucket`).
    pub name: &'a str,
    /// The value; `NaN`, `+Inf` and `-Inf` included.
    pub value: f64,
    /// Explicit timestamp in milliseconds since the epoch, converted from seconds for
    /// OpenMetrics.
    pub timestamp_ms: Option<i64>,
    labels: Range<usize>,
}

/// One label of a sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label<'a> {
    pub name: &'a str,
    /// The value, unescaped.
    pub value: Cow<'a, str>,
}

/// A parsed page: families in the order they appeared, with their samples and labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition<'a> {
    families: Vec<Family<'a>>,
    samples: Vec<Sample<'a>>,
    labels: Vec<Label<'a>>,
}

impl<'a> Exposition<'a> {
    /// Families in page order, including those declared without samples.
    pub fn families(&self) -> &[Family<'a>] {
        &self.families
    }

    /// The first family called `name`.
    pub fn family(&self, name: &str) -> Option<&Family<'a>> {
        self.families.iter().find(|f| f.name == name)
    }

    /// Samples of `family`, in page order.
    pub fn samples(&self, family: &Family<'a>) -> &[Sample<'a>] {
        self.samples.get(family.samples.clone()).unwrap_or_default()
    }

    /// Every sample of the page, in page order.
    pub fn all_samples(&self) -> &[Sample<'a>] {
        &self.samples
    }

    /// Labels of `sample`, in the order written.
    pub fn labels(&self, sample: &Sample<'a>) -> &[Label<'a>] {
        self.labels.get(sample.labels.clone()).unwrap_or_default()
    }

    /// Number of samples on the page.
    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }

    /// Drops the samples read so far and their labels, for a reader that is done with each
    /// sample once it is read ([`super::cache`], which groups no families).
    pub(crate) fn forget_samples(&mut self) {
        self.samples.clear();
        self.labels.clear();
    }
}

/// A malformed page: the line (1-based) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    pub line: usize,
    pub problem: Problem,
}

/// What is wrong with a line. Messages quote names and at most a short piece of the offending
/// token, never whole label values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("invalid metric name")]
    MetricName,
    #[error("`{metric}`: invalid label name")]
    LabelName { metric: String },
    #[error("`{metric}`: expected `=` after label `{label}`")]
    LabelEquals { metric: String, label: String },
    #[error("`{metric}`: value of label `{label}` must be a quoted string")]
    LabelQuote { metric: String, label: String },
    #[error("`{metric}`: value of label `{label}` has no closing quote")]
    LabelUnterminated { metric: String, label: String },
    #[error("`{metric}`: label `{label}` given twice")]
    LabelDuplicate { metric: String, label: String },
    #[error("`{metric}`: expected `,` or `}}` after label `{label}`")]
    LabelSeparator { metric: String, label: String },
    #[error("`{metric}`: missing sample value")]
    MissingValue { metric: String },
    #[error("`{metric}`: invalid sample value `{text}`")]
    Value { metric: String, text: String },
    #[error("`{metric}`: invalid timestamp `{text}` (expected {expected})")]
    Timestamp {
        metric: String,
        text: String,
        expected: &'static str,
    },
    #[error("`{metric}`: unexpected text after the sample")]
    TrailingText { metric: String },
    #[error("`# {keyword}` line without a metric name")]
    MetadataName { keyword: &'static str },
    #[error("`# TYPE {metric}`: unknown type `{text}`")]
    UnknownType { metric: String, text: String },
    #[error("text after `# EOF`")]
    AfterEof,
    #[error("OpenMetrics text does not end with `# EOF` (truncated?)")]
    MissingEof,
}

/// At most 32 characters of a token, for error messages.
fn snippet(token: &str) -> String {
    match token.char_indices().nth(32) {
        Some((end, _)) => format!("{}…", &token[..end]),
        None => token.to_owned(),
    }
}

/// Parses a whole page.
pub fn parse(text: &str, format: Format) -> Result<Exposition<'_>, ParseError> {
    let page = Exposition {
        // node_exporter's page has a family per 300 bytes; growing the vector instead
        // copies it several times per scrape.
        families: Vec::with_capacity(text.len() / 256 + 16),
        samples: Vec::with_capacity(text.len() / 64),
        labels: Vec::with_capacity(text.len() / 32),
    };
    scan(text, format, page, true, |parser, line| {
        parser.sample(line).map(drop)
    })
    .map(|p| p.page)
}

/// Reads every line of `text`: blank lines are skipped, `#` lines are read by the parser
/// (metadata, `# EOF`), and each sample line is handed to `sample` with the parser, which
/// reads it ([`Parser::sample`]) or what of it the caller needs. The first problem is the
/// error, with its line number. Without `families`, metadata lines are only checked and samples
/// are not grouped (a reader of series alone).
pub(crate) fn scan<'a>(
    text: &'a str,
    format: Format,
    page: Exposition<'a>,
    families: bool,
    mut sample: impl FnMut(&mut Parser<'a>, &'a str) -> Result<(), Problem>,
) -> Result<Parser<'a>, ParseError> {
    let mut parser = Parser {
        format,
        page,
        families,
    };
    let mut eof = false;
    let mut line_number = 0;
    // Lines end at '\n' (found with memchr's vector search); the last runs to the end.
    let ends = memchr::memchr_iter(b'\n', text.as_bytes()).chain(std::iter::once(text.len()));
    let mut start = 0;
    for end in ends {
        // A newline is a character boundary.
        let raw = &text[start..end];
        start = end + 1;
        line_number += 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let problem = if line.trim_ascii().is_empty() {
            continue;
        } else if eof {
            Err(Problem::AfterEof)
        } else if line.as_bytes()[0] == b'#' {
            parser.comment(line).map(|is_eof| eof = is_eof)
        } else {
            sample(&mut parser, line)
        };
        if let Err(problem) = problem {
            return Err(ParseError {
                line: line_number,
                problem,
            });
        }
    }
    if format == Format::OpenMetrics && !eof {
        return Err(ParseError {
            line: line_number,
            problem: Problem::MissingEof,
        });
    }
    Ok(parser)
}

/// The end of the series (metric name and label block) of a sample line whose name ends at
/// `name_end`, found without reading the labels: the first `}` outside quoted values (escapes
/// skipped as the parser skips them), or `name_end` without a label block. `None` when the block
/// is not closed or the name runs into other text. For a valid line it is where [`Parser::sample`] finds the series to end; it
/// is only a key to look up a series read before, never a check.
pub(crate) fn series_end(bytes: &[u8], name_end: usize) -> Option<usize> {
    match bytes.get(name_end) {
        Some(b'{') => {}
        // A name run into other text is no series (the parser says what is wrong).
        Some(&b) if !is_blank(b) => return None,
        _ => return Some(name_end),
    }
    let mut at = name_end + 1;
    loop {
        at += memchr::memchr2(b'"', b'}', &bytes[at..])?;
        if bytes[at] == b'}' {
            return Some(at + 1);
        }
        // A quoted value: up to its closing quote, past escaped characters.
        at += 1;
        loop {
            at += memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
            if bytes[at] == b'"' {
                break;
            }
            at += 2;
        }
        at += 1;
    }
}

pub(crate) struct Parser<'a> {
    format: Format,
    pub(crate) page: Exposition<'a>,
    /// Whether metadata and samples are grouped into the page's families.
    families: bool,
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

fn is_label_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_label_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Index of the first non-blank byte at or after `at`.
fn skip_blanks(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() && is_blank(bytes[at]) {
        at += 1;
    }
    at
}

/// End of the token (run of non-blank bytes) starting at `at`.
fn token_end(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() && !is_blank(bytes[at]) {
        at += 1;
    }
    at
}

/// End of the metric name starting at `at`, or `at` when there is none.
pub(crate) fn metric_name_end(bytes: &[u8], at: usize) -> usize {
    if at >= bytes.len() || !is_name_start(bytes[at]) {
        return at;
    }
    let mut end = at + 1;
    while end < bytes.len() && is_name_char(bytes[end]) {
        end += 1;
    }
    end
}

/// Unescapes a label value (`\\`, `\"`, `\n`; other escapes are kept as written, as
/// Prometheus does).
fn unescape_label_value(escaped: &str) -> String {
    unescape(escaped, true)
}

fn unescape(escaped: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

impl<'a> Parser<'a> {
    /// A `#` line. Returns whether it was `# EOF` (OpenMetrics).
    fn comment(&mut self, line: &'a str) -> Result<bool, Problem> {
        let bytes = line.as_bytes();
        let word_start = skip_blanks(bytes, 1);
        let word_end = token_end(bytes, word_start);
        let keyword = &line[word_start..word_end];
        let keyword: &'static str = match keyword {
            "HELP" => "HELP",
            "TYPE" => "TYPE",
            "UNIT" => "UNIT",
            "EOF" if self.format == Format::OpenMetrics && word_start == 2 => {
                return if line[word_end..].trim_ascii().is_empty() {
                    Ok(true)
                } else {
                    Err(Problem::AfterEof)
                };
            }
            // Any other comment is ignored (0.0.4 allows free-form comments).
            _ => return Ok(false),
        };
        let name_start = skip_blanks(bytes, word_end);
        let name_end = metric_name_end(bytes, name_start);
        if name_end == name_start || (name_end < bytes.len() && !is_blank(bytes[name_end])) {
            return Err(Problem::MetadataName { keyword });
        }
        let name = &line[name_start..name_end];
        // One separating blank; the rest of the line is the help text, as written.
        let rest = if name_end < bytes.len() {
            &line[name_end + 1..]
        } else {
            ""
        };
        // A `# TYPE` line's type is checked in either pass; the families are kept only when
        // the page is read whole.
        let metric_type = if keyword == "TYPE" {
            let text = rest.trim_ascii();
            Some(MetricType::parse(text).ok_or_else(|| Problem::UnknownType {
                metric: name.to_owned(),
                text: snippet(text),
            })?)
        } else {
            None
        };
        if !self.families {
            return Ok(false);
        }
        if let Some(metric_type) = metric_type {
            let family = self.metadata_family(name, |f| !f.typed && f.samples.is_empty());
            family.metric_type = metric_type;
            family.typed = true;
        } else if keyword == "HELP" {
            let help = if rest.contains('\\') {
                Cow::Owned(unescape(rest, self.format == Format::OpenMetrics))
            } else {
                Cow::Borrowed(rest)
            };
            let family = self.metadata_family(name, |f| f.help.is_none());
            family.help = Some(help);
        } else {
            let family = self.metadata_family(name, |f| f.unit.is_none());
            family.unit = Some(rest.trim_ascii());
        }
        Ok(false)
    }

    /// The family a metadata line for `name` describes: the current family when it has that
    /// name and `fits` (the field is still free), else a new one.
    fn metadata_family(
        &mut self,
        name: &'a str,
        fits: impl Fn(&Family<'a>) -> bool,
    ) -> &mut Family<'a> {
        let reuse = matches!(self.page.families.last(), Some(f) if f.name == name && fits(f));
        if !reuse {
            self.open_family(name);
        }
        let last = self.page.families.len() - 1;
        &mut self.page.families[last]
    }

    fn open_family(&mut self, name: &'a str) {
        let at = self.page.samples.len();
        self.page.families.push(Family {
            name,
            metric_type: MetricType::Untyped,
            help: None,
            unit: None,
            typed: false,
            samples: at..at,
        });
    }

    /// Whether a sample called `name` belongs to the current family.
    fn belongs_to_current(&self, name: &str) -> bool {
        let Some(family) = self.page.families.last() else {
            return false;
        };
        match name.strip_prefix(family.name) {
            Some("") => true,
            Some(suffix) => family.metric_type.suffixes().contains(&suffix),
            None => false,
        }
    }

    /// A sample line: `name{labels} value [timestamp] [# exemplar]`, added to the page.
    /// Returns where its series (name and labels) ends.
    pub(crate) fn sample(&mut self, line: &'a str) -> Result<usize, Problem> {
        let bytes = line.as_bytes();
        let name_end = metric_name_end(bytes, 0);
        if name_end == 0
            || (name_end < bytes.len() && !is_blank(bytes[name_end]) && bytes[name_end] != b'{')
        {
            return Err(Problem::MetricName);
        }
        let name = &line[..name_end];
        let labels_start = self.page.labels.len();
        let mut series_end = name_end;
        if series_end < bytes.len() && bytes[series_end] == b'{' {
            series_end = self.labels(line, name, series_end + 1)?;
        }
        let labels = labels_start..self.page.labels.len();
        let (value, timestamp_ms) = self.value_and_timestamp(line, name, series_end)?;

        if self.families && !self.belongs_to_current(name) {
            self.open_family(name);
        }
        self.page.samples.push(Sample {
            name,
            value,
            timestamp_ms,
            labels,
        });
        let count = self.page.samples.len();
        if let Some(family) = self.page.families.last_mut() {
            family.samples.end = count;
        }
        Ok(series_end)
    }

    /// The value and timestamp of the sample line `line` of metric `name`, whose series ends
    /// at `at`; what follows them may only be an exemplar (OpenMetrics).
    pub(crate) fn value_and_timestamp(
        &self,
        line: &str,
        name: &str,
        at: usize,
    ) -> Result<(f64, Option<i64>), Problem> {
        let bytes = line.as_bytes();
        let value_start = skip_blanks(bytes, at);
        if value_start == at && value_start < bytes.len() {
            // `name{…}1`: the value must be separated from the labels.
            return Err(Problem::TrailingText {
                metric: name.to_owned(),
            });
        }
        let value_end = token_end(bytes, value_start);
        if value_start == value_end {
            return Err(Problem::MissingValue {
                metric: name.to_owned(),
            });
        }
        let value_text = &line[value_start..value_end];
        let value = parse_value(value_text).ok_or_else(|| Problem::Value {
            metric: name.to_owned(),
            text: snippet(value_text),
        })?;

        let mut timestamp_ms = None;
        let ts_start = skip_blanks(bytes, value_end);
        if ts_start < bytes.len() && !self.is_exemplar(bytes, ts_start) {
            let ts_end = token_end(bytes, ts_start);
            let ts_text = &line[ts_start..ts_end];
            timestamp_ms = Some(self.timestamp(ts_text).ok_or_else(|| Problem::Timestamp {
                metric: name.to_owned(),
                text: snippet(ts_text),
                expected: match self.format {
                    Format::PrometheusText => "integer milliseconds",
                    Format::OpenMetrics => "seconds",
                },
            })?);
            let rest = skip_blanks(bytes, ts_end);
            if rest < bytes.len() && !self.is_exemplar(bytes, rest) {
                return Err(Problem::TrailingText {
                    metric: name.to_owned(),
                });
            }
        }
        Ok((value, timestamp_ms))
    }

    /// An OpenMetrics exemplar (`# {…} value`) starts at `at`; it is ignored.
    fn is_exemplar(&self, bytes: &[u8], at: usize) -> bool {
        self.format == Format::OpenMetrics && bytes[at] == b'#'
    }

    fn timestamp(&self, text: &str) -> Option<i64> {
        match self.format {
            Format::PrometheusText => text.parse::<i64>().ok(),
            Format::OpenMetrics => {
                let seconds = text.parse::<f64>().ok().filter(|s| s.is_finite())?;
                let ms = (seconds * 1000.0).round();
                // Beyond ±2^63 ms (292 million years) the cast would saturate; refuse instead.
                (ms.abs() < 9.2e18).then_some(ms as i64)
            }
        }
    }

    /// Parses labels after `{` at `at`; returns the index just past `}`.
    fn labels(&mut self, line: &'a str, metric: &str, mut at: usize) -> Result<usize, Problem> {
        let bytes = line.as_bytes();
        let first = self.page.labels.len();
        loop {
            at = skip_blanks(bytes, at);
            if at < bytes.len() && bytes[at] == b'}' {
                return Ok(at + 1);
            }
            if at >= bytes.len() || !is_label_start(bytes[at]) {
                return Err(Problem::LabelName {
                    metric: metric.to_owned(),
                });
            }
            let name_start = at;
            at += 1;
            while at < bytes.len() && is_label_char(bytes[at]) {
                at += 1;
            }
            let label = &line[name_start..at];
            at = skip_blanks(bytes, at);
            if at >= bytes.len() || bytes[at] != b'=' {
                return Err(Problem::LabelEquals {
                    metric: metric.to_owned(),
                    label: label.to_owned(),
                });
            }
            at = skip_blanks(bytes, at + 1);
            if at >= bytes.len() || bytes[at] != b'"' {
                return Err(Problem::LabelQuote {
                    metric: metric.to_owned(),
                    label: label.to_owned(),
                });
            }
            at += 1;
            let value_start = at;
            let mut escaped = false;
            loop {
                match bytes.get(at) {
                    Some(b'"') => break,
                    Some(b'\\') => {
                        escaped = true;
                        at += 2;
                    }
                    Some(_) => at += 1,
                    None => {
                        return Err(Problem::LabelUnterminated {
                            metric: metric.to_owned(),
                            label: label.to_owned(),
                        })
                    }
                }
            }
            let raw = &line[value_start..at];
            at += 1;
            let value = if escaped {
                Cow::Owned(unescape_label_value(raw))
            } else {
                Cow::Borrowed(raw)
            };
            if self.page.labels[first..].iter().any(|l| l.name == label) {
                return Err(Problem::LabelDuplicate {
                    metric: metric.to_owned(),
                    label: label.to_owned(),
                });
            }
            self.page.labels.push(Label { name: label, value });
            at = skip_blanks(bytes, at);
            match bytes.get(at) {
                Some(b',') => at += 1,
                Some(b'}') => return Ok(at + 1),
                _ => {
                    return Err(Problem::LabelSeparator {
                        metric: metric.to_owned(),
                        label: label.to_owned(),
                    })
                }
            }
        }
    }
}

/// A sample value: a float, or `NaN`, `+Inf`, `-Inf` (any case, as Go's `ParseFloat`).
fn parse_value(text: &str) -> Option<f64> {
    // Fast path for plain non-negative integers, the most common value by far.
    let bytes = text.as_bytes();
    if !bytes.is_empty() && bytes.len() <= 15 && bytes.iter().all(u8::is_ascii_digit) {
        let mut n: u64 = 0;
        for &b in bytes {
            n = n * 10 + u64::from(b - b'0');
        }
        // Exact: at most 15 digits is below 2^53.
        return Some(n as f64);
    }
    text.parse::<f64>().ok()
}
