//! Tests of the scrape source: the parser on every type and edge case of both formats, the
//! real node_exporter pages, re-rendering, port resolution, and scrapes of a real Python
//! `prometheus_client` application.

use std::collections::{BTreeMap, BTreeSet};

use super::cache::SeriesCache;
use super::parse::{parse, Exposition, Format, MetricType, Problem};
use super::render::{append_series, owned_encoding, render_text};
use super::*;

fn text(page: &str) -> Exposition<'_> {
    parse(page, Format::PrometheusText).unwrap()
}

fn open_metrics(page: &str) -> Exposition<'_> {
    parse(page, Format::OpenMetrics).unwrap()
}

/// A sample as `(name, labels as name=value pairs, value)`.
type FlatSample = (String, Vec<(String, String)>, f64);

/// Every sample of a page, flattened.
fn flat(page: &Exposition<'_>) -> Vec<FlatSample> {
    page.all_samples()
        .iter()
        .map(|s| {
            let labels = page
                .labels(s)
                .iter()
                .map(|l| (l.name.to_owned(), l.value.to_string()))
                .collect();
            (s.name.to_owned(), labels, s.value)
        })
        .collect()
}

fn error_of(page: &str, format: Format) -> (usize, Problem) {
    let e = parse(page, format).unwrap_err();
    (e.line, e.problem)
}

/// Counters, gauges and untyped samples of the 0.0.4 format land in their families with
/// their help, labels and values.
#[test]
fn text_counter_gauge_untyped() {
    let page = text(
        "# HELP http_requests_total Requests served.\n\
         # TYPE http_requests_total counter\n\
         http_requests_total{method=\"get\",code=\"200\"} 1027\n\
         http_requests_total{method=\"post\",code=\"500\"} 3\n\
         \n\
         # TYPE temperature_celsius gauge\n\
         temperature_celsius -4.5\n\
         # a free-form comment\n\
         legacy_thing{a=\"b\"} 12\n\
         other_thing 1e3\n",
    );
    let families = page.families();
    assert_eq!(families.len(), 4);
    assert_eq!(families[0].name, "http_requests_total");
    assert_eq!(families[0].metric_type, MetricType::Counter);
    assert_eq!(families[0].help.as_deref(), Some("Requests served."));
    assert_eq!(page.samples(&families[0]).len(), 2);
    assert_eq!(families[1].metric_type, MetricType::Gauge);
    assert_eq!(page.samples(&families[1])[0].value, -4.5);
    assert_eq!(families[2].name, "legacy_thing");
    assert_eq!(families[2].metric_type, MetricType::Untyped);
    assert_eq!(families[3].name, "other_thing");
    assert_eq!(page.samples(&families[3])[0].value, 1000.0);
    let samples = flat(&page);
    assert_eq!(
        samples[1].1,
        vec![
            ("method".to_owned(), "post".to_owned()),
            ("code".to_owned(), "500".to_owned())
        ]
    );
    assert_eq!(page.sample_count(), 5);
}

/// A histogram's `_bucket`, `_sum` and `_count` samples form one family; `le` is an ordinary
/// label with `+Inf` as written.
#[test]
fn histogram_groups_its_series() {
    let page = text(
        "# HELP rpc_seconds RPC latency.\n\
         # TYPE rpc_seconds histogram\n\
         rpc_seconds_bucket{le=\"0.05\"} 24054\n\
         rpc_seconds_bucket{le=\"0.1\"} 33444\n\
         rpc_seconds_bucket{le=\"+Inf\"} 144320\n\
         rpc_seconds_sum 53423\n\
         rpc_seconds_count 144320\n\
         # TYPE next gauge\n\
         next 1\n",
    );
    let family = page.family("rpc_seconds").unwrap();
    assert_eq!(family.metric_type, MetricType::Histogram);
    let names: Vec<_> = page.samples(family).iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "rpc_seconds_bucket",
            "rpc_seconds_bucket",
            "rpc_seconds_bucket",
            "rpc_seconds_sum",
            "rpc_seconds_count"
        ]
    );
    let inf = &page.samples(family)[2];
    assert_eq!(page.labels(inf)[0].value, "+Inf");
    assert_eq!(page.families().len(), 2);
}

/// A summary's quantile samples, `_sum` and `_count` form one family.
#[test]
fn summary_with_quantiles() {
    let page = text(
        "# TYPE rpc_duration_seconds summary\n\
         rpc_duration_seconds{quantile=\"0.5\"} 4773\n\
         rpc_duration_seconds{quantile=\"0.99\"} 76656\n\
         rpc_duration_seconds_sum 1.7560473e+07\n\
         rpc_duration_seconds_count 2693\n",
    );
    assert_eq!(page.families().len(), 1);
    let family = &page.families()[0];
    assert_eq!(family.metric_type, MetricType::Summary);
    assert_eq!(page.samples(family).len(), 4);
    assert_eq!(page.samples(family)[2].value, 1.7560473e7);
}

/// Special values parse as IEEE values, in the spellings Prometheus accepts.
#[test]
fn nan_and_infinities() {
    let page: Vec<f64> = text("a NaN\nb +Inf\nc -Inf\nd Inf\ne -0.0\n")
        .all_samples()
        .iter()
        .map(|s| s.value)
        .collect();
    assert!(page[0].is_nan());
    assert_eq!(page[1], f64::INFINITY);
    assert_eq!(page[2], f64::NEG_INFINITY);
    assert_eq!(page[3], f64::INFINITY);
    assert_eq!(page[4], 0.0);
}

/// Timestamps: integer milliseconds in 0.0.4, float seconds in OpenMetrics (converted to
/// milliseconds); a sample without one has none.
#[test]
fn timestamps_in_both_formats() {
    let page = text("a 1 1395066363000\nb 2\n");
    assert_eq!(page.all_samples()[0].timestamp_ms, Some(1_395_066_363_000));
    assert_eq!(page.all_samples()[1].timestamp_ms, None);
    let page = open_metrics("a 1 1520879607.789\nb 2 1520879607\n# EOF\n");
    assert_eq!(page.all_samples()[0].timestamp_ms, Some(1_520_879_607_789));
    assert_eq!(page.all_samples()[1].timestamp_ms, Some(1_520_879_607_000));
    // A float timestamp is not 0.0.4.
    let (line, problem) = error_of("a 1 1520879607.789\n", Format::PrometheusText);
    assert_eq!(line, 1);
    assert!(matches!(problem, Problem::Timestamp { .. }), "{problem}");
}

/// Label values unescape `\\`, `\"` and `\n`; help texts unescape `\\` and `\n`, and `\"`
/// only in OpenMetrics.
#[test]
fn escaping_in_labels_and_help() {
    let page = text(
        "# HELP msg A \\\"quoted\\\" help\\nwith \\\\ two lines.\n\
         msg{path=\"C:\\\\dir\\\\file\",quote=\"say \\\"hi\\\"\",nl=\"a\\nb\",other=\"\\t\"} 1\n",
    );
    let family = &page.families()[0];
    assert_eq!(
        family.help.as_deref(),
        Some("A \\\"quoted\\\" help\nwith \\ two lines.")
    );
    let labels = page.labels(&page.all_samples()[0]);
    assert_eq!(labels[0].value, "C:\\dir\\file");
    assert_eq!(labels[1].value, "say \"hi\"");
    assert_eq!(labels[2].value, "a\nb");
    assert_eq!(labels[3].value, "\\t");

    let page = open_metrics("# HELP msg A \\\"quoted\\\" help.\nmsg 1\n# EOF\n");
    assert_eq!(
        page.families()[0].help.as_deref(),
        Some("A \"quoted\" help.")
    );
}

/// Blanks around label tokens, a trailing comma, empty braces and a label value with `}`
/// and `,` inside are all accepted.
#[test]
fn label_syntax_variants() {
    let page = text("a{ x = \"1\" , y=\"}{,\" , } 1\nb{} 2\nc\t3\n");
    let samples = flat(&page);
    assert_eq!(
        samples[0].1,
        vec![
            ("x".to_owned(), "1".to_owned()),
            ("y".to_owned(), "}{,".to_owned())
        ]
    );
    assert!(samples[1].1.is_empty());
    assert_eq!(samples[2].2, 3.0);
}

/// OpenMetrics: counters with `_total` and `_created`, info, stateset, gaugehistogram, unit,
/// `unknown`, exemplars ignored, `# EOF` required.
#[test]
fn open_metrics_types() {
    let page = open_metrics(
        "# TYPE orders counter\n\
         # UNIT orders orders\n\
         # HELP orders Orders placed.\n\
         orders_total{method=\"card\"} 3.0 # {trace_id=\"abc\"} 1.0 1520879607.789\n\
         orders_created{method=\"card\"} 1.7e9\n\
         # TYPE build info\n\
         build_info{version=\"1.2\"} 1\n\
         # TYPE state stateset\n\
         state{state=\"ready\"} 1\n\
         state{state=\"broken\"} 0\n\
         # TYPE queue gaugehistogram\n\
         queue_bucket{le=\"1\"} 2\n\
         queue_bucket{le=\"+Inf\"} 3\n\
         queue_gsum 4\n\
         queue_gcount 3\n\
         # TYPE mystery unknown\n\
         mystery 7\n\
         # EOF\n",
    );
    let types: Vec<_> = page
        .families()
        .iter()
        .map(|f| (f.name, f.metric_type, page.samples(f).len()))
        .collect();
    assert_eq!(
        types,
        [
            ("orders", MetricType::Counter, 2),
            ("build", MetricType::Info, 1),
            ("state", MetricType::StateSet, 2),
            ("queue", MetricType::GaugeHistogram, 4),
            ("mystery", MetricType::Untyped, 1),
        ]
    );
    let orders = &page.families()[0];
    assert_eq!(orders.unit, Some("orders"));
    assert_eq!(orders.help.as_deref(), Some("Orders placed."));
    let total = &page.samples(orders)[0];
    assert_eq!(
        (total.name, total.value, total.timestamp_ms),
        ("orders_total", 3.0, None)
    );
}

/// OpenMetrics text must end with `# EOF`, and nothing may follow it.
#[test]
fn open_metrics_eof() {
    let (line, problem) = error_of("a 1\nb 2\n", Format::OpenMetrics);
    assert_eq!((line, problem), (3, Problem::MissingEof));
    let (line, problem) = error_of("a 1\n# EOF\nb 2\n", Format::OpenMetrics);
    assert_eq!((line, problem), (3, Problem::AfterEof));
    // In 0.0.4 `# EOF` is an ordinary comment.
    assert_eq!(text("a 1\n# EOF\nb 2\n").sample_count(), 2);
}

/// Each malformed line is reported with its line number and what is wrong.
#[test]
fn malformed_lines_name_line_and_problem() {
    let cases: &[(&str, usize, &str)] = &[
        ("ok 1\n9bad 1\n", 2, "line 2: invalid metric name"),
        ("ok 1\nbad-name 1\n", 2, "line 2: invalid metric name"),
        ("a{1x=\"v\"} 1\n", 1, "line 1: `a`: invalid label name"),
        (
            "a{x \"v\"} 1\n",
            1,
            "line 1: `a`: expected `=` after label `x`",
        ),
        (
            "a{x=v} 1\n",
            1,
            "line 1: `a`: value of label `x` must be a quoted string",
        ),
        (
            "\n\na{x=\"v} 1\n",
            3,
            "line 3: `a`: value of label `x` has no closing quote",
        ),
        (
            "a{x=\"1\",x=\"2\"} 1\n",
            1,
            "line 1: `a`: label `x` given twice",
        ),
        (
            "a{x=\"1\" y=\"2\"} 1\n",
            1,
            "line 1: `a`: expected `,` or `}` after label `x`",
        ),
        ("a\n", 1, "line 1: `a`: missing sample value"),
        ("a{x=\"1\"}\n", 1, "line 1: `a`: missing sample value"),
        ("a one\n", 1, "line 1: `a`: invalid sample value `one`"),
        (
            "a 1 later\n",
            1,
            "line 1: `a`: invalid timestamp `later` (expected integer milliseconds)",
        ),
        (
            "a 1 2 3\n",
            1,
            "line 1: `a`: unexpected text after the sample",
        ),
        (
            "a{x=\"1\"}2\n",
            1,
            "line 1: `a`: unexpected text after the sample",
        ),
        (
            "# TYPE a countr\n",
            1,
            "line 1: `# TYPE a`: unknown type `countr`",
        ),
        ("# TYPE\n", 1, "line 1: `# TYPE` line without a metric name"),
        (
            "# HELP 1a x\n",
            1,
            "line 1: `# HELP` line without a metric name",
        ),
    ];
    for (page, line, message) in cases {
        let error = parse(page, Format::PrometheusText).unwrap_err();
        assert_eq!(error.line, *line, "{page:?}");
        assert_eq!(error.to_string(), *message, "{page:?}");
    }
    // An exemplar is not part of the 0.0.4 format.
    let (_, problem) = error_of("a 1 # {x=\"1\"} 1\n", Format::PrometheusText);
    assert!(matches!(problem, Problem::Timestamp { .. }), "{problem}");
}

/// Error messages never carry whole tokens from the page: long ones are cut.
#[test]
fn error_messages_cut_long_tokens() {
    let page = format!("a {}\n", "x".repeat(500));
    let error = parse(&page, Format::PrometheusText).unwrap_err();
    assert!(error.to_string().len() < 100, "{error}");
}

/// A `# TYPE` seen again for the current family, or a sample that does not belong to the
/// current family, opens a new family rather than failing the scrape.
#[test]
fn family_boundaries() {
    let page = text(
        "# TYPE a counter\n\
         a 1\n\
         # TYPE a counter\n\
         a 2\n\
         b 3\n\
         a 4\n",
    );
    let shape: Vec<_> = page
        .families()
        .iter()
        .map(|f| (f.name, page.samples(f).len()))
        .collect();
    assert_eq!(shape, [("a", 1), ("a", 1), ("b", 1), ("a", 1)]);
}

/// Real node_exporter pages (see `tests/fixtures/node_exporter/SOURCE.txt`).
const NODE_EXPORTER: &str = "tests/fixtures/node_exporter";

fn node_exporter_pages() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(NODE_EXPORTER);
    let mut pages: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("e2e-") && name.ends_with(".txt")
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    pages.sort();
    pages
}

/// Every real node_exporter page parses completely: one sample per sample line, one typed
/// family per `# TYPE` line, and the 0.0.4 rendering parses back to the same samples.
#[test]
fn node_exporter_pages_parse_fully() {
    let pages = node_exporter_pages();
    assert!(pages.len() >= 8, "fixture pages missing: {pages:?}");
    for (name, page_text) in &pages {
        let page = text(page_text);
        let sample_lines = page_text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        let type_lines = page_text
            .lines()
            .filter(|l| l.starts_with("# TYPE "))
            .count();
        assert_eq!(page.sample_count(), sample_lines, "{name}");
        let typed = page
            .families()
            .iter()
            .filter(|f| f.help.is_some() || f.metric_type != MetricType::Untyped)
            .count();
        assert_eq!(typed, type_lines, "{name}");

        let mut rendered = String::new();
        render_text(&page, &[], &mut rendered);
        let again = text(&rendered);
        let original = flat(&page);
        let round_trip = flat(&again);
        assert_eq!(original.len(), round_trip.len(), "{name}");
        for (a, b) in original.iter().zip(&round_trip) {
            assert_eq!((&a.0, &a.1), (&b.0, &b.1), "{name}");
            assert!(
                a.2 == b.2 || (a.2.is_nan() && b.2.is_nan()),
                "{name}: {a:?} {b:?}"
            );
        }
    }
}

/// The series cache writes the owned series of [`append_series`] encoded by prost, less their
/// labels of empty value: on node_exporter's pages and on pages whose labels are out of order,
/// upper-case, empty, or clash with identity labels (merged with the identity labels rather than
/// sorted together, they must still come out sorted); read afresh and again from the cache.
#[test]
fn encoded_series_are_the_owned_series() {
    let mut pages = node_exporter_pages();
    pages.push((
        "edge cases".into(),
        "b{zone=\"x\",Alpha=\"1\",namespace=\"tenant\",empty=\"\"} 1\n\
         A_upper{job=\"mine\",app=\"own\",version=\"1.2\"} 2 1234\n\
         c{exported_namespace=\"e\",namespace=\"n\",a=\"1\"} 3\n\
         plain 4\n"
            .into(),
    ));
    let labels = target_labels();
    for (name, page_text) in &pages {
        let page = text(page_text);
        let mut owned = Vec::new();
        append_series(&page, &labels, 99, &mut owned);
        for series in &mut owned {
            series.labels.retain(|l| !l.value.is_empty());
            assert!(
                series.labels.windows(2).all(|p| p[0].name < p[1].name),
                "{name}: {:?}",
                series.labels
            );
        }
        let expected = prost::Message::encode_to_vec(&WriteRequest { timeseries: owned });
        let mut cache = SeriesCache::default();
        for read in ["afresh", "from the cache"] {
            let mut encoded = Vec::new();
            let count = cache
                .encode(page_text, Format::PrometheusText, &labels, 99, &mut encoded)
                .unwrap();
            assert_eq!(count.samples, page.sample_count(), "{name}, {read}");
            assert!(count.unique, "{name}, {read}");
            assert!(encoded == expected, "{name}, {read}: the encodings differ");
        }
        assert!(!cache.is_empty(), "{name}");
    }
}

/// Identity and target labels of the encoding tests.
fn target_labels() -> Vec<(&'static str, &'static str)> {
    vec![
        ("namespace", "shop"),
        ("app", "checkout"),
        ("pod", "checkout-7d9f"),
        ("version", "17.2"),
        ("cluster", "eu-prod-1"),
        ("job", "vigil/shop/checkout"),
        ("instance", "10.1.2.3:8080"),
        ("container", ""),
    ]
}

/// From scrape to scrape the cache follows the page: new values and timestamps, a series that
/// appears, one that goes (and leaves the cache), the same series written with other spacing,
/// escapes that make a `}` or `"` part of a value, and OpenMetrics exemplars; every page is
/// encoded as it is afresh.
#[test]
fn cached_series_follow_the_page() {
    let labels = target_labels();
    let pages: [(&str, Format); 5] = [
        (
            "a{x=\"1\"} 1\nb 2\nc{v=\"}{\\\"\",w=\"\\\\\"} 3\n",
            Format::PrometheusText,
        ),
        (
            "a{x=\"1\"} 10 1700000000000\nc{v=\"}{\\\"\",w=\"\\\\\"} 30\nd 4\n",
            Format::PrometheusText,
        ),
        (
            "a{ x = \"1\" } 11\na{x=\"1\"} 12\nd -Inf\n",
            Format::PrometheusText,
        ),
        (
            "# TYPE a counter\na_total{x=\"1\"} 5 # {trace_id=\"abc}\"} 1 1.5\na_total{x=\"2\"} 6 17.25\n# EOF\n",
            Format::OpenMetrics,
        ),
        (
            "# TYPE a counter\na_total{x=\"1\"} 7\n# EOF\n",
            Format::OpenMetrics,
        ),
    ];
    let mut cache = SeriesCache::default();
    let mut sizes = Vec::new();
    let mut unique = Vec::new();
    for (i, (page_text, format)) in pages.iter().enumerate() {
        let page = parse(page_text, *format).unwrap();
        let mut encoded = vec![0xff];
        let count = cache
            .encode(page_text, *format, &labels, 99, &mut encoded)
            .unwrap();
        assert_eq!(count.samples, page.sample_count(), "page {i}");
        unique.push(count.unique);
        assert_eq!(encoded[0], 0xff, "page {i}: what was in the record stays");
        assert!(
            encoded[1..] == owned_encoding(&page, &labels, 99),
            "page {i}: the encodings differ"
        );
        sizes.push(cache.len());
    }
    // a, b, c; then a, c, d; then a as written before and a with other spacing (the same
    // series, not cached under its second key), d; then the OpenMetrics page afresh (the
    // format changed); then only a_total{x="1"}.
    assert_eq!(sizes, [3, 3, 2, 2, 1]);
    assert_eq!(unique, [true, true, false, true, true]);
}

/// A malformed page is refused by the cache with the parser's own error, at the same line, even
/// when the cache holds every well-formed series of the page; nothing is written, and the
/// cache still serves the next page.
#[test]
fn cache_refuses_what_the_parser_refuses() {
    let labels = target_labels();
    let good = "a{x=\"1\"} 1\nb 2\n";
    let bad_pages = [
        "a{x=\"1\"} one\nb 2\n",
        "a{x=\"1\"} 1 later\n",
        "a{x=\"1\"}1\n",
        "a{x=\"1\"} 1 2 3\n",
        "a{x=\"1\"}\n",
        "b 2\na{x=\"1\",x=\"1\"} 1\n",
        "b 2\na{x=\"1\"\n",
        "# TYPE b countr\nb 2\n",
        "a{x=\"1\"} 1\n# EOF\nb 2\n",
        "b 2\nb# EOF\n",
        "b 2\nb\"1\n",
    ];
    let mut cache = SeriesCache::default();
    let mut refused = 0;
    for bad in bad_pages {
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            let warm = match format {
                Format::PrometheusText => good.to_owned(),
                Format::OpenMetrics => format!("{good}# EOF\n"),
            };
            cache
                .encode(&warm, format, &labels, 99, &mut Vec::new())
                .unwrap();
            assert_eq!(cache.len(), 2);
            // `# EOF` is only a comment in the 0.0.4 format.
            let expected = parse(bad, format).map(|page| owned_encoding(&page, &labels, 99));
            let mut out = vec![1, 2, 3];
            let got = cache
                .encode(bad, format, &labels, 99, &mut out)
                .map(|_| out[3..].to_vec());
            assert_eq!(got, expected, "{bad:?} as {format:?}");
            if got.is_err() {
                refused += 1;
                assert_eq!(out, [1, 2, 3], "{bad:?} as {format:?}");
            }
        }
    }
    assert_eq!(refused, 2 * bad_pages.len() - 1);
}

/// A page that names a series twice is not unique, however it writes it: the same text twice,
/// other spacing or label order, an empty label beside the same series without it, or a label
/// renamed onto one the page has; a page whose series changed spacing since the last scrape is
/// unique again from the next scrape.
#[test]
fn cache_sees_a_series_named_twice() {
    let labels = target_labels();
    let mut cache = SeriesCache::default();
    let mut encode = |page: &str| {
        let mut out = Vec::new();
        let encoded = cache
            .encode(page, Format::PrometheusText, &labels, 99, &mut out)
            .unwrap();
        assert!(out == owned_encoding(&text(page), &labels, 99), "{page:?}");
        encoded.unique
    };
    for page in [
        "a 1\na 2\n",
        "a{x=\"1\",y=\"2\"} 1\na{y=\"2\",x=\"1\"} 2\n",
        "a{x=\"1\"} 1\na{ x=\"1\" } 2\n",
        "a{x=\"\"} 1\na 2\n",
        "a{namespace=\"own\"} 1\na{exported_namespace=\"own\"} 2\n",
    ] {
        assert!(!encode(page), "{page:?}");
    }
    assert!(encode("a{x=\"1\"} 1\nb 2\n"));
    assert!(!encode("a{ x=\"1\"} 1\nb 2\n"));
    assert!(encode("a{ x=\"1\"} 1\nb 2\n"));
}

/// A scrape's record is a checked one, its series counted in its header, unless two of its
/// series have the same labels: a page naming a series twice, or a page with an `up` of its
/// own beside the scrape's. Both read back as the same series.
#[tokio::test]
async fn scrape_records_are_checked_unless_a_series_repeats() {
    use crate::batch::{CHECKED_SAMPLES_TAG, SAMPLES_TAG};
    let pages = [
        "a{x=\"1\"} 1\nb 2\n",
        "a{x=\"1\"} 1\na{x=\"1\"} 2\n",
        "up 1\n",
    ];
    let port = serve_pages(pages.iter().map(|p| (*p).to_owned()).collect());
    let id = identity();
    let mut scraper = Scraper::new(&scrape_config(port), &id, |_| None).unwrap();
    let crashes = CrashDetector::new(&id, None);
    let latest = LatestScrape::default();
    let mut tags = Vec::new();
    for page in pages {
        let scraped = scraper.scrape(&crashes, &latest).await;
        assert!(scraped.error.is_none(), "{:?}", scraped.error);
        tags.push(scraped.record[0]);
        let batch = scraped.batch().unwrap();
        assert_eq!(batch.item_count(), scraped.items, "{page:?}");
        // The page's samples and `up`, `scrape_duration_seconds`, `scrape_samples_scraped`.
        assert_eq!(scraped.items, text(page).sample_count() + 3, "{page:?}");
        if scraped.record[0] == CHECKED_SAMPLES_TAG {
            let count = u32::from_le_bytes(scraped.record[1..5].try_into().unwrap());
            assert_eq!(count as usize, scraped.items);
        }
    }
    assert_eq!(tags, [CHECKED_SAMPLES_TAG, SAMPLES_TAG, SAMPLES_TAG]);
}

/// Serves `pages` one per request, in order, each on its own connection.
fn serve_pages(pages: Vec<String>) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for page in pages {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    port
}

/// Other identity labels (the pod was aimed at another port: another `instance`) give other
/// series, never the cached ones.
#[test]
fn cache_follows_the_identity() {
    let page_text = "a{x=\"1\"} 1\n";
    let page = text(page_text);
    let mut cache = SeriesCache::default();
    let mut labels = target_labels();
    for instance in ["10.1.2.3:8080", "10.1.2.3:9090"] {
        labels[6].1 = instance;
        let mut encoded = Vec::new();
        cache
            .encode(page_text, Format::PrometheusText, &labels, 99, &mut encoded)
            .unwrap();
        assert!(encoded == owned_encoding(&page, &labels, 99), "{instance}");
    }
}

/// The cache stays within its bound: a page of long series fills it to
/// [`cache::MAX_CACHE_BYTES`], and the series beyond are still encoded, afresh.
#[test]
fn cache_is_bounded_in_bytes() {
    let labels = target_labels();
    let value = "v".repeat(1000);
    let page_text: String = (0..12_000)
        .map(|i| format!("series_{i}{{long=\"{value}\"}} {i}\n"))
        .collect();
    let mut cache = SeriesCache::default();
    for _ in 0..2 {
        let mut encoded = Vec::new();
        let count = cache
            .encode(
                &page_text,
                Format::PrometheusText,
                &labels,
                99,
                &mut encoded,
            )
            .unwrap();
        // Series beyond the bound are not tracked, so the page is not known to be unique.
        assert_eq!(count.samples, 12_000);
        assert!(!count.unique);
        assert!(encoded == owned_encoding(&text(&page_text), &labels, 99));
        assert!(cache.bytes() <= cache::MAX_CACHE_BYTES, "{}", cache.bytes());
        assert!(
            cache.len() > 1_000 && cache.len() < 12_000,
            "{}",
            cache.len()
        );
    }
}

/// Spot checks on the main node_exporter page: a summary with quantiles, labels with spaces
/// and parentheses, and exact values.
#[test]
fn node_exporter_values() {
    let pages = node_exporter_pages();
    let (_, page_text) = pages.iter().find(|(n, _)| n == "e2e-output.txt").unwrap();
    let page = text(page_text);
    let gc = page.family("go_gc_duration_seconds").unwrap();
    assert_eq!(gc.metric_type, MetricType::Summary);
    let cpu_info = page.family("node_cpu_info").unwrap();
    let first = &page.samples(cpu_info)[0];
    let model = page
        .labels(first)
        .iter()
        .find(|l| l.name == "model_name")
        .unwrap();
    assert_eq!(model.value, "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz");
    let counters = page
        .families()
        .iter()
        .filter(|f| f.metric_type == MetricType::Counter)
        .count();
    assert!(counters > 100, "{counters}");
}

fn identity() -> Identity {
    Identity {
        namespace: "shop".into(),
        app: "checkout".into(),
        pod: "checkout-7d9f".into(),
        pod_uid: "0b7e-uid".into(),
        node: "node-1".into(),
        version: "17.2".into(),
        cluster: String::new(),
    }
}

/// Series carry `__name__` and the identity labels, sorted by name; a page label that has an
/// identity label's name is kept as `exported_<name>`; explicit timestamps win.
#[test]
fn series_get_identity_labels() {
    let page = text("a{namespace=\"tenant\",zone=\"x\"} 1\nb 2 1234\n");
    let id = identity();
    let labels = id.series_labels();
    let mut series = Vec::new();
    append_series(&page, &labels, 99, &mut series);
    let names: Vec<_> = series[0].labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "__name__",
            "app",
            "exported_namespace",
            "namespace",
            "pod",
            "version",
            "zone"
        ]
    );
    let get = |i: usize, name: &str| {
        series[i]
            .labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.clone())
    };
    assert_eq!(get(0, "exported_namespace").as_deref(), Some("tenant"));
    assert_eq!(get(0, "namespace").as_deref(), Some("shop"));
    assert_eq!(series[0].samples[0].timestamp, 99);
    assert_eq!(series[1].samples[0].timestamp, 1234);
}

/// The 0.0.4 rendering of an OpenMetrics page names counters `_total`, moves `_created` to a
/// gauge family of its own, maps info and stateset to gauges, and adds the identity labels; a
/// page's own `version` is kept as it is (not renamed `exported_version`) and the agent's is
/// then left out.
#[test]
fn render_open_metrics_as_text() {
    let page = open_metrics(
        "# TYPE orders counter\n\
         # HELP orders Orders\\nplaced.\n\
         orders_total{method=\"card\"} 3\n\
         orders_created{method=\"card\"} 1.7e9\n\
         # TYPE build info\n\
         build_info{version=\"1.2\"} 1\n\
         # TYPE temp gauge\n\
         temp NaN\n\
         # EOF\n",
    );
    let mut out = String::new();
    render_text(&page, &[("app", "checkout"), ("version", "17.2")], &mut out);
    assert_eq!(
        out,
        "# HELP orders_total Orders\\nplaced.\n\
         # TYPE orders_total counter\n\
         orders_total{method=\"card\",app=\"checkout\",version=\"17.2\"} 3\n\
         # HELP orders_created Orders\\nplaced.\n\
         # TYPE orders_created gauge\n\
         orders_created{method=\"card\",app=\"checkout\",version=\"17.2\"} 1700000000\n\
         # TYPE build_info gauge\n\
         build_info{version=\"1.2\",app=\"checkout\"} 1\n\
         # TYPE temp gauge\n\
         temp{app=\"checkout\",version=\"17.2\"} NaN\n"
    );
}

/// Content types pick the parser; anything unknown is read as the text format.
#[test]
fn content_type_picks_format() {
    assert_eq!(
        Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::from_content_type("text/plain; version=0.0.4; charset=utf-8"),
        Format::PrometheusText
    );
    assert_eq!(Format::from_content_type(""), Format::PrometheusText);
}

/// A port number is used as is; a port name resolves through `VIGIL_SCRAPE_PORT`, else a
/// conventional name, else it is an error naming the port.
#[test]
fn port_resolution() {
    let no_env = |_: &str| None;
    assert_eq!(resolve_port("9102", no_env).unwrap(), 9102);
    let env = |key: &str| (key == PORT_ENV).then(|| "8081".to_owned());
    assert_eq!(resolve_port("http-metrics", env).unwrap(), 8081);
    assert_eq!(resolve_port("http", no_env).unwrap(), 80);
    let error = resolve_port("http-metrics", no_env).unwrap_err();
    assert_eq!(error.category(), "ScrapePortUnknown");
    assert!(error.to_string().contains("\"http-metrics\""), "{error}");
}

// ---- scrapes of a real Python prometheus_client application --------------------------------

const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../.tools/venv/bin/python");

const APP: &str = r#"
import sys, time
from prometheus_client import Counter, Gauge, Histogram, Summary, start_http_server
orders = Counter('shop_orders', 'Orders placed.', ['method'])
orders.labels(method='card').inc(3)
orders.labels(method='cash').inc()
depth = Gauge('shop_queue_depth', 'Jobs waiting.\nSecond line with a \\ backslash.', ['namespace'])
depth.labels(namespace='tenant-a').set(7.5)
latency = Histogram('shop_request_seconds', 'Request latency.', buckets=(0.1, 0.5, 1.0))
latency.observe(0.3)
latency.observe(2)
size = Summary('shop_payload_bytes', 'Payload size.')
size.observe(512)
# Optional arguments: a certificate and key file, to serve HTTPS.
tls = dict(certfile=sys.argv[1], keyfile=sys.argv[2]) if len(sys.argv) > 2 else {}
server, thread = start_http_server(0, addr='127.0.0.1', **tls)
print(server.server_port, flush=True)
while True:
    time.sleep(60)
"#;

/// A running Python app, killed when dropped.
struct PythonApp {
    child: std::process::Child,
    port: u16,
}

impl PythonApp {
    fn start() -> PythonApp {
        PythonApp::start_with(&[])
    }

    /// The app serving HTTPS with a self-signed certificate for its Service name (not for
    /// `127.0.0.1`), as an app in a cluster would; the files live in `dir`.
    fn start_tls(dir: &std::path::Path) -> PythonApp {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["checkout.shop.svc".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        PythonApp::start_with(&[cert_file.to_str().unwrap(), key_file.to_str().unwrap()])
    }

    fn start_with(args: &[&str]) -> PythonApp {
        use std::io::BufRead;
        assert!(
            std::path::Path::new(PYTHON).exists(),
            "{PYTHON} is missing: run scripts/install-test-tools.sh"
        );
        let mut child = std::process::Command::new(PYTHON)
            .args(["-c", APP])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_default();
        let mut app = PythonApp { child, port: 0 };
        app.port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("python app did not report its port: {line:?}"));
        app
    }
}

impl Drop for PythonApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scrape_config(port: u16) -> ScrapeConfig {
    ScrapeConfig {
        port: port.to_string(),
        path: "/metrics".into(),
        interval: vigil_crds::common::Duration::parse("1s").unwrap(),
        timeout: vigil_crds::common::Duration::parse("10s").unwrap(),
        honor_annotations: false,
        pod_info_dir: None,
        job: None,
    }
}

/// Series of a samples batch by name and labels (without the identity labels).
type SeriesMap = BTreeMap<String, f64>;

fn series_map(batch: &Batch) -> (SeriesMap, Vec<crate::prompb::TimeSeries>) {
    let Batch::Samples(request) = batch else {
        panic!("not a samples batch: {batch:?}");
    };
    let mut map = SeriesMap::new();
    for series in &request.timeseries {
        let key = series
            .labels
            .iter()
            .filter(|l| {
                ![
                    "namespace",
                    "app",
                    "pod",
                    "version",
                    "cluster",
                    "job",
                    "instance",
                    "container",
                ]
                .contains(&l.name.as_str())
            })
            .map(|l| {
                if l.name == "__name__" {
                    l.value.clone()
                } else {
                    format!("{}={}", l.name, l.value)
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        map.insert(key, series.samples[0].value);
    }
    (map, request.timeseries.clone())
}

/// What both formats must yield from the Python app.
fn check_app_series(batch: &Batch) {
    let (map, series) = series_map(batch);
    let get = |key: &str| {
        *map.get(key)
            .unwrap_or_else(|| panic!("series {key} missing in {:#?}", map.keys()))
    };
    assert_eq!(get("shop_orders_total,method=card"), 3.0);
    assert_eq!(get("shop_orders_total,method=cash"), 1.0);
    assert!(get("shop_orders_created,method=card") > 1.6e9);
    assert_eq!(get("shop_queue_depth,exported_namespace=tenant-a"), 7.5);
    assert_eq!(get("shop_request_seconds_bucket,le=0.1"), 0.0);
    assert_eq!(get("shop_request_seconds_bucket,le=0.5"), 1.0);
    assert_eq!(get("shop_request_seconds_bucket,le=1.0"), 1.0);
    assert_eq!(get("shop_request_seconds_bucket,le=+Inf"), 2.0);
    assert_eq!(get("shop_request_seconds_count"), 2.0);
    assert!((get("shop_request_seconds_sum") - 2.3).abs() < 1e-9);
    assert_eq!(get("shop_payload_bytes_count"), 1.0);
    assert_eq!(get("shop_payload_bytes_sum"), 512.0);
    assert_eq!(get("up"), 1.0);
    let scraped = get("scrape_samples_scraped");
    assert!(scraped >= 15.0, "{scraped}");
    // Every series: identity labels, labels sorted by name.
    for s in &series {
        let names: Vec<_> = s.labels.iter().map(|l| l.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        let value = |n: &str| {
            s.labels
                .iter()
                .find(|l| l.name == n)
                .map(|l| l.value.as_str())
        };
        assert_eq!(value("namespace"), Some("shop"), "{names:?}");
        assert_eq!(value("app"), Some("checkout"));
        assert_eq!(value("pod"), Some("checkout-7d9f"));
        // The client's `python_info` has a `version` of its own (the interpreter's): kept as
        // it is, not renamed, and the app's version is not added beside it.
        if value("__name__") == Some("python_info") {
            assert_ne!(value("version"), Some("17.2"), "{names:?}");
        } else {
            assert_eq!(value("version"), Some("17.2"), "{names:?}");
        }
        assert_eq!(value("exported_version"), None, "{names:?}");
    }
}

/// What both formats must yield in the re-rendered 0.0.4 text.
fn check_latest_text(latest: &LatestScrape) {
    let rendered = latest.text();
    let page = text(&rendered);
    let family_type = |name: &str| {
        page.family(name)
            .unwrap_or_else(|| panic!("family {name} missing in\n{rendered}"))
            .metric_type
    };
    assert_eq!(family_type("shop_orders_total"), MetricType::Counter);
    assert_eq!(family_type("shop_orders_created"), MetricType::Gauge);
    assert_eq!(family_type("shop_queue_depth"), MetricType::Gauge);
    assert_eq!(family_type("shop_request_seconds"), MetricType::Histogram);
    assert_eq!(family_type("shop_payload_bytes"), MetricType::Summary);
    assert_eq!(
        page.family("shop_queue_depth").unwrap().help.as_deref(),
        Some("Jobs waiting.\nSecond line with a \\ backslash.")
    );
    for sample in page.all_samples() {
        let labels: BTreeMap<_, _> = page
            .labels(sample)
            .iter()
            .map(|l| (l.name, l.value.to_string()))
            .collect();
        assert_eq!(labels.get("namespace").map(String::as_str), Some("shop"));
        assert_eq!(labels.get("app").map(String::as_str), Some("checkout"));
        assert_eq!(labels.get("pod").map(String::as_str), Some("checkout-7d9f"));
        if sample.name != "python_info" {
            assert_eq!(labels.get("version").map(String::as_str), Some("17.2"));
        }
        assert!(!labels.contains_key("exported_version"), "{labels:?}");
    }
    assert!(rendered.contains(
        "shop_queue_depth{exported_namespace=\"tenant-a\",namespace=\"shop\",app=\"checkout\",pod=\"checkout-7d9f\",version=\"17.2\"} 7.5\n"
    ), "{rendered}");
}

/// The Python client serves OpenMetrics when asked first: the scrape reads it, and the
/// batch and the re-rendered text carry every family with the identity labels.
#[tokio::test]
async fn scrape_python_app_open_metrics() {
    let app = PythonApp::start();
    let id = identity();
    let mut scraper = Scraper::new(&scrape_config(app.port), &id, |_| None).unwrap();
    let page = scraper.fetch().await.unwrap();
    assert_eq!(page.format, Format::OpenMetrics);
    let exposition = parse(&page.text, page.format).unwrap();
    let orders = exposition.family("shop_orders").unwrap();
    assert_eq!(orders.metric_type, MetricType::Counter);
    assert_eq!(
        exposition
            .family("shop_request_seconds")
            .unwrap()
            .metric_type,
        MetricType::Histogram
    );

    let crashes = CrashDetector::new(&id, None);
    let latest = LatestScrape::default();
    let scraped = scraper.scrape(&crashes, &latest).await;
    assert!(scraped.error.is_none(), "{:?}", scraped.error);
    check_app_series(&scraped.batch().unwrap());
    check_latest_text(&latest);
}

/// The same app asked for the 0.0.4 text format only.
#[tokio::test]
async fn scrape_python_app_text_format() {
    let app = PythonApp::start();
    let id = identity();
    let mut scraper = Scraper::new(&scrape_config(app.port), &id, |_| None).unwrap();
    scraper.prefer_text_format();
    let page = scraper.fetch().await.unwrap();
    assert_eq!(page.format, Format::PrometheusText);
    let exposition = parse(&page.text, page.format).unwrap();
    assert_eq!(
        exposition.family("shop_orders_total").unwrap().metric_type,
        MetricType::Counter
    );
    assert_eq!(
        exposition.family("shop_payload_bytes").unwrap().metric_type,
        MetricType::Summary
    );

    let crashes = CrashDetector::new(&id, None);
    let latest = LatestScrape::default();
    let scraped = scraper.scrape(&crashes, &latest).await;
    assert!(scraped.error.is_none(), "{:?}", scraped.error);
    check_app_series(&scraped.batch().unwrap());
    check_latest_text(&latest);
}

/// A scrape of a closed port is `up` 0 with the error, no page series, and empties the text
/// served for pull setups.
#[tokio::test]
async fn failed_scrape_is_up_zero() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let id = identity();
    let mut scraper = Scraper::new(&scrape_config(port), &id, |_| None).unwrap();
    let latest = LatestScrape::default();
    latest.set_text("old 1\n");
    let scraped = scraper
        .scrape(&CrashDetector::new(&id, None), &latest)
        .await;
    assert_eq!(scraped.error.as_ref().unwrap().category(), "ScrapeRequest");
    let (map, _) = series_map(&scraped.batch().unwrap());
    assert_eq!(map.get("up"), Some(&0.0));
    assert_eq!(map.get("scrape_samples_scraped"), Some(&0.0));
    assert!(map.keys().all(|k| !k.starts_with("shop_")));
    assert!(latest.text().is_empty());
}

/// The scrape loop delivers each scrape as one samples batch into a sink's buffer, where it
/// reads back intact.
#[tokio::test]
async fn scrape_loop_delivers_to_the_buffer() {
    use crate::batch::Signal;
    use crate::router::Route;
    use vigil_crds::monitored_app::WhenFull;

    let app = PythonApp::start();
    let dir = tempfile::tempdir().unwrap();
    let (writer, mut reader) =
        crate::buffer::open(dir.path(), 64 << 20, WhenFull::Block, "sink_test").unwrap();
    let router = Router::new(vec![Route {
        sink: "sink_test".into(),
        signals: [Signal::Samples].to_vec(),
        writer,
    }]);
    let id = identity();
    let latest = Arc::new(LatestScrape::default());
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(run(
        scrape_config(app.port),
        id.clone(),
        Arc::new(CrashDetector::new(&id, None)),
        latest.clone(),
        router,
        shutdown,
    ));
    let records = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        reader.next_batch(16, 64 << 20),
    )
    .await
    .expect("no batch reached the buffer within 60 s")
    .unwrap();
    let batch = Batch::decode(&records[0].bytes).unwrap();
    check_app_series(&batch);
    check_latest_text(&latest);
    stop.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), task)
        .await
        .expect("scrape loop did not stop")
        .unwrap();
}

// ---- the pod's prometheus.io annotations ------------------------------------------------------

/// `prometheus.io/scheme: https` (with the annotated port) scrapes an app that serves TLS with
/// a certificate for its Service name: on the pod's loopback the certificate is not checked
/// against a name, and the page arrives whole.
#[tokio::test]
async fn annotated_https_scheme_scrapes_a_tls_app() {
    let dir = tempfile::tempdir().unwrap();
    let app = PythonApp::start_tls(dir.path());
    let id = identity();
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut scraper = Scraper::new(&scrape_config(closed_port), &id, |_| None).unwrap();
    let annotations = BTreeMap::from([
        ("prometheus.io/port".to_owned(), app.port.to_string()),
        ("prometheus.io/scheme".to_owned(), "https".to_owned()),
    ]);
    let endpoint = annotations::Overrides::from_annotations(&annotations)
        .apply(scraper.config_endpoint())
        .unwrap();
    scraper.aim(&endpoint);
    assert_eq!(
        scraper.url(),
        Some(format!("https://127.0.0.1:{}/metrics", app.port).as_str())
    );
    let latest = LatestScrape::default();
    let scraped = scraper
        .scrape(&CrashDetector::new(&id, None), &latest)
        .await;
    assert!(scraped.error.is_none(), "{:?}", scraped.error);
    check_app_series(&scraped.batch().unwrap());
}

/// The next batch in the buffer, acknowledged.
async fn next_batch(reader: &mut crate::buffer::BufferReader) -> Batch {
    let records = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        reader.next_batch(1, 64 << 20),
    )
    .await
    .expect("no batch reached the buffer within 60 s")
    .unwrap();
    let batch = Batch::decode(&records[0].bytes).unwrap();
    reader.ack(records[0].id).unwrap();
    batch
}

/// The scrape loop reads the annotations file before each scrape: an annotated port takes
/// over from the configured (closed) one at run time, and `prometheus.io/scrape: "false"`
/// stops the scrape — no page series and no `up` in the batches, only crash series — until
/// the annotation is gone.
#[tokio::test]
async fn scrape_loop_follows_the_annotations_file() {
    use crate::batch::Signal;
    use crate::router::Route;
    use vigil_crds::monitored_app::WhenFull;

    let app = PythonApp::start();
    let dir = tempfile::tempdir().unwrap();
    let pod_info = dir.path().join("podinfo");
    std::fs::create_dir(&pod_info).unwrap();
    let annotations_file = pod_info.join(annotations::POD_ANNOTATIONS_FILE);
    let (writer, mut reader) = crate::buffer::open(
        &dir.path().join("buffer"),
        64 << 20,
        WhenFull::Block,
        "sink_test",
    )
    .unwrap();
    let router = Router::new(vec![Route {
        sink: "sink_test".into(),
        signals: [Signal::Samples].to_vec(),
        writer,
    }]);
    let id = identity();
    let crashes = Arc::new(CrashDetector::new(&id, None));
    // A crash, so that the batches of a pod that is not scraped still carry its series.
    let trace = "Traceback (most recent call last):\n  File \"/app/shop.py\", line 12, in pay\n    charge(order)\nZeroDivisionError: division by zero";
    let mut event = crate::event::LogEvent::line("app", crate::event::Stream::Stderr, 1, trace);
    event.lines = 4;
    assert!(
        crashes.observe(&mut event).is_some(),
        "no crash found in the trace"
    );
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut config = scrape_config(closed_port);
    config.honor_annotations = true;
    config.pod_info_dir = Some(pod_info.to_str().unwrap().to_owned());
    let latest = Arc::new(LatestScrape::default());
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(run(
        config,
        id.clone(),
        crashes,
        latest.clone(),
        router,
        shutdown,
    ));

    let up = |batch: &Batch| series_map(batch).0.get("up").copied();

    // No file: the configured port, closed, so `up` is 0.
    assert_eq!(up(&next_batch(&mut reader).await), Some(0.0));
    std::fs::write(
        &annotations_file,
        format!("prometheus.io/port=\"{}\"", app.port),
    )
    .unwrap();
    let mut batch = next_batch(&mut reader).await;
    while up(&batch) == Some(0.0) {
        batch = next_batch(&mut reader).await;
    }
    check_app_series(&batch);

    std::fs::write(
        &annotations_file,
        format!(
            "prometheus.io/port=\"{}\"\nprometheus.io/scrape=\"false\"",
            app.port
        ),
    )
    .unwrap();
    let mut batch = next_batch(&mut reader).await;
    while up(&batch).is_some() {
        batch = next_batch(&mut reader).await;
    }
    for _ in 0..2 {
        let (map, _) = series_map(&batch);
        assert!(
            map.keys().all(|k| k.starts_with("vigil_crash")),
            "a pod annotated scrape=false sent {:?}",
            map.keys()
        );
        assert!(!map.is_empty(), "the crash series must keep flowing");
        assert!(latest.text().is_empty());
        batch = next_batch(&mut reader).await;
    }

    std::fs::write(
        &annotations_file,
        format!("prometheus.io/port=\"{}\"", app.port),
    )
    .unwrap();
    let mut batch = next_batch(&mut reader).await;
    while up(&batch).is_none() {
        batch = next_batch(&mut reader).await;
    }
    check_app_series(&batch);

    stop.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), task)
        .await
        .expect("scrape loop did not stop")
        .unwrap();
}

/// Regression: a page's own `version` (and `job`, `instance`, `container`) used to be renamed
/// `exported_version` beside the agent's. Now the labels Vigil enforces (`namespace`, `app`,
/// `pod`, `cluster`) win and keep the page's value as `exported_<name>`, while every other
/// label the agent adds only fills a gap: the page's own value stays under its own name.
#[test]
fn page_labels_are_kept_except_the_enforced_ones() {
    let page = text(
        "build_info{version=\"1.2\",namespace=\"tenant\",cluster=\"other\",job=\"mine\"} 1\n\
         plain 2\n",
    );
    let id = Identity {
        cluster: "eu-prod-1".into(),
        ..identity()
    };
    let mut labels = id.series_labels();
    labels.extend([
        ("job", "vigil/shop/checkout"),
        ("instance", "10.1.2.3:8080"),
        ("container", "app"),
    ]);
    let mut series = Vec::new();
    append_series(&page, &labels, 99, &mut series);
    let get = |i: usize| -> BTreeMap<String, String> {
        series[i]
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect()
    };
    let own = get(0);
    assert_eq!(own["version"], "1.2");
    assert!(!own.contains_key("exported_version"), "{own:?}");
    assert_eq!(own["job"], "mine");
    assert!(!own.contains_key("exported_job"), "{own:?}");
    assert_eq!(own["namespace"], "shop");
    assert_eq!(own["exported_namespace"], "tenant");
    assert_eq!(own["cluster"], "eu-prod-1");
    assert_eq!(own["exported_cluster"], "other");
    assert_eq!(own["instance"], "10.1.2.3:8080");
    assert_eq!(own["container"], "app");
    let plain = get(1);
    assert_eq!(plain["version"], "17.2");
    assert_eq!(plain["job"], "vigil/shop/checkout");
    assert_eq!(plain["cluster"], "eu-prod-1");
    // Names stay sorted, as remote write requires.
    assert!(series[0].labels.is_sorted_by(|a, b| a.name <= b.name));
}

/// A scrape of the real Python client's page gives every remote-written series (app series,
/// `up`, crash series) the cluster, and the app and `up` series the `job` of the app's scrape
/// config, `instance` `<pod IP>:<port>` and the container declaring the port, as Prometheus'
/// own scrape of the pod would; the agent's `/metrics` text carries the cluster but not the
/// target labels, which the Prometheus scraping it sets itself.
#[tokio::test]
async fn remote_written_series_carry_cluster_and_target_labels() {
    let app = PythonApp::start();
    let id = Identity {
        cluster: "eu-prod-1".into(),
        ..identity()
    };
    let mut config = scrape_config(app.port);
    config.job = Some("vigil/shop/checkout".into());
    let env = |key: &str| match key {
        "POD_IP" => Some("10.1.2.3".to_owned()),
        super::SCRAPE_CONTAINER_ENV => Some("app".to_owned()),
        _ => None,
    };
    let mut scraper = Scraper::new(&config, &id, env).unwrap();
    let crashes = CrashDetector::new(&id, None);
    let trace = "Traceback (most recent call last):\n  File \"/app/shop.py\", line 12, in pay\n    charge(order)\nZeroDivisionError: division by zero";
    let mut event = crate::event::LogEvent::line("app", crate::event::Stream::Stderr, 1, trace);
    event.lines = 4;
    assert!(crashes.observe(&mut event).is_some());
    let latest = LatestScrape::default();
    let scraped = scraper.scrape(&crashes, &latest).await;
    assert!(scraped.error.is_none(), "{:?}", scraped.error);
    let Batch::Samples(request) = &scraped.batch().unwrap() else {
        panic!("not samples");
    };
    let instance = format!("10.1.2.3:{}", app.port);
    let mut names = BTreeSet::new();
    for series in &request.timeseries {
        let labels: BTreeMap<&str, &str> = series
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        let name = labels["__name__"];
        names.insert(name.to_owned());
        assert_eq!(labels.get("cluster"), Some(&"eu-prod-1"), "{labels:?}");
        assert_eq!(labels.get("namespace"), Some(&"shop"), "{labels:?}");
        if name.starts_with("vigil_crash") {
            continue;
        }
        assert_eq!(
            labels.get("job"),
            Some(&"vigil/shop/checkout"),
            "{labels:?}"
        );
        assert_eq!(
            labels.get("instance"),
            Some(&instance.as_str()),
            "{labels:?}"
        );
        assert_eq!(labels.get("container"), Some(&"app"), "{labels:?}");
    }
    assert!(
        names.contains("up") && names.contains("shop_orders_total"),
        "{names:?}"
    );
    assert!(names.contains("vigil_crashes_total"), "{names:?}");
    let text = latest.text();
    assert!(text.contains("cluster=\"eu-prod-1\""), "{text}");
    assert!(!text.contains("instance="), "{text}");
}
