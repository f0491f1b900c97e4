//! Remote-write sink tests: conversion and merging (pure), the wire format against a recording
//! server, status mapping, credentials, TLS, and delivery into a real Prometheus.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, summary_data_point, AggregationTemporality, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use prost::Message;
use vigil_crds::agent_config::{ExportersConfig, HttpSink};

use super::*;
use crate::sinks::test_support::*;
use crate::sinks::Sink;

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.into(),
        value: value.into(),
    }
}

fn config(url: String) -> HttpSink {
    HttpSink {
        url,
        tenant: None,
        bearer_token_file: None,
        ca_file: None,
        ..Default::default()
    }
}

fn sink(config: HttpSink) -> Sink {
    Sink::from_config(&ExportersConfig {
        prometheus_remote_write: Some(config),
        ..Default::default()
    })
    .unwrap()
    .remove(0)
}

fn metric(name: &str, unit: &str, data: metric::Data) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn metrics_batch(metrics: Vec<Metric>) -> Batch {
    Batch::Metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(POD_RESOURCE)),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

/// A cumulative histogram: bounds 10 and 100 ms, 3 + 5 + 2 observations summing to 420.
fn latency_histogram(time_unix_nano: u64) -> Metric {
    metric(
        "http.server.duration",
        "ms",
        metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes: vec![kv("http.route", "/pay")],
                time_unix_nano,
                count: 10,
                sum: Some(420.0),
                bucket_counts: vec![3, 5, 2],
                explicit_bounds: vec![10.0, 100.0],
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
    )
}

fn find<'a>(request: &'a WriteRequest, name: &str, extra: &[(&str, &str)]) -> &'a TimeSeries {
    request
        .timeseries
        .iter()
        .find(|s| {
            s.labels.contains(&label("__name__", name))
                && extra.iter().all(|(n, v)| s.labels.contains(&label(n, v)))
        })
        .unwrap_or_else(|| panic!("no series {name} {extra:?} in {request:#?}"))
}

/// Every OTLP metric type converts as Prometheus' OTLP receiver would; exponential histograms
/// and delta sums are counted as dropped.
#[test]
fn otlp_metrics_convert_to_series() {
    let t = 1_700_000_000_000_000_000;
    let batch = metrics_batch(vec![
        metric(
            "queue.depth",
            "",
            metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    time_unix_nano: t,
                    value: Some(number_data_point::Value::AsInt(7)),
                    ..Default::default()
                }],
            }),
        ),
        metric(
            "http.requests",
            "{request}",
            metric::Data::Sum(Sum {
                data_points: vec![NumberDataPoint {
                    attributes: vec![kv("http.status_code", "200")],
                    time_unix_nano: t,
                    value: Some(number_data_point::Value::AsDouble(12.0)),
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            }),
        ),
        latency_histogram(t),
        metric(
            "rpc.duration",
            "s",
            metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: t,
                    count: 4,
                    sum: 2.0,
                    quantile_values: vec![summary_data_point::ValueAtQuantile {
                        quantile: 0.99,
                        value: 0.9,
                    }],
                    ..Default::default()
                }],
            }),
        ),
        metric(
            "exp.latency",
            "s",
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint::default()],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
        ),
        metric(
            "delta.requests",
            "",
            metric::Data::Sum(Sum {
                data_points: vec![NumberDataPoint::default(), NumberDataPoint::default()],
                aggregation_temporality: AggregationTemporality::Delta as i32,
                is_monotonic: true,
            }),
        ),
    ]);
    let unsupported = crate::telemetry::dropped_total(COMPONENT, "unsupported");
    let delta = crate::telemetry::dropped_total(COMPONENT, "delta_temporality");
    let request = write_request(&[batch]);
    assert!(crate::telemetry::dropped_total(COMPONENT, "unsupported") > unsupported);
    assert!(crate::telemetry::dropped_total(COMPONENT, "delta_temporality") >= delta + 2);

    let gauge = find(&request, "queue_depth", &[]);
    assert_eq!(
        gauge.labels,
        vec![
            label("__name__", "queue_depth"),
            label("app", "checkout"),
            label("instance", "checkout-7d9f-abcde"),
            label("job", "checkout"),
            label("k8s_node_name", "node-1"),
            label("namespace", "shop"),
            label("pod", "checkout-7d9f-abcde"),
            label("version", "17.2"),
        ],
        "resource attributes become sorted labels"
    );
    assert_eq!(gauge.samples[0].value, 7.0);
    assert_eq!(gauge.samples[0].timestamp, 1_700_000_000_000);
    let counter = find(
        &request,
        "http_requests_total",
        &[("http_status_code", "200")],
    );
    assert_eq!(counter.samples[0].value, 12.0);
    let bucket = |le| {
        find(
            &request,
            "http_server_duration_milliseconds_bucket",
            &[("le", le), ("http_route", "/pay")],
        )
        .samples[0]
            .value
    };
    assert_eq!(
        [bucket("10"), bucket("100"), bucket("+Inf")],
        [3.0, 8.0, 10.0]
    );
    assert_eq!(
        find(&request, "http_server_duration_milliseconds_sum", &[]).samples[0].value,
        420.0
    );
    assert_eq!(
        find(&request, "http_server_duration_milliseconds_count", &[]).samples[0].value,
        10.0
    );
    assert_eq!(
        find(&request, "rpc_duration_seconds", &[("quantile", "0.99")]).samples[0].value,
        0.9
    );
    assert_eq!(
        find(&request, "rpc_duration_seconds_count", &[]).samples[0].value,
        4.0
    );
    assert!(!request.timeseries.iter().any(|s| s
        .labels
        .iter()
        .any(|l| l.value.starts_with("exp_latency") || l.value.starts_with("delta_requests"))));
}

/// Samples of one series from several batches become one series with sorted labels and
/// samples in time order; a repeated timestamp keeps the last value; series without a name
/// or with empty labels are cleaned up.
#[test]
fn series_are_merged_and_sorted() {
    let series = |labels: Vec<Label>, samples: &[(i64, f64)]| TimeSeries {
        labels,
        samples: samples
            .iter()
            .map(|(timestamp, value)| Sample {
                value: *value,
                timestamp: *timestamp,
            })
            .collect(),
    };
    let a = Batch::Samples(WriteRequest {
        timeseries: vec![
            series(
                vec![
                    label("pod", "p"),
                    label("__name__", "up"),
                    label("zone", ""),
                ],
                &[(3000, 1.0), (1000, 1.0)],
            ),
            series(vec![label("pod", "p")], &[(1000, 5.0)]),
        ],
    });
    let b = Batch::Samples(WriteRequest {
        timeseries: vec![series(
            vec![label("__name__", "up"), label("pod", "p")],
            &[(2000, 0.0), (3000, 0.5)],
        )],
    });
    let request = write_request(&[a, b]);
    assert_eq!(
        request,
        WriteRequest {
            timeseries: vec![series(
                vec![label("__name__", "up"), label("pod", "p")],
                &[(1000, 1.0), (2000, 0.0), (3000, 0.5)],
            )]
        }
    );
}

/// The body is a snappy-compressed `WriteRequest` with the remote-write headers, the tenant
/// and the bearer token.
#[tokio::test]
async fn wire_format_and_headers() {
    let server = HttpRecorder::start(Reply::status(204)).await;
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(HttpSink {
        tenant: Some("tenant-1".into()),
        bearer_token_file: Some(write_file(&dir, "token", "rw-token-value\n")),
        ..config(server.url("/api/v1/write"))
    });
    let batches = [
        counter_batch("orders", 1.0, 1_000_000_000),
        counter_batch("orders", 2.0, 2_000_000_000),
    ];
    sink.send(&batches).await.unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.path, "/api/v1/write");
    assert_eq!(r.header("content-encoding"), Some("snappy"));
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(r.header("x-prometheus-remote-write-version"), Some("0.1.0"));
    assert_eq!(r.header("x-scope-orgid"), Some("tenant-1"));
    assert_eq!(r.header("authorization"), Some("Bearer rw-token-value"));
    let raw = snap::raw::Decoder::new().decompress_vec(&r.body).unwrap();
    let request = WriteRequest::decode(raw.as_slice()).unwrap();
    assert_eq!(request.timeseries.len(), 1, "{request:#?}");
    let values: Vec<_> = request.timeseries[0]
        .samples
        .iter()
        .map(|s| (s.timestamp, s.value))
        .collect();
    assert_eq!(values, [(1000, 1.0), (2000, 2.0)]);
}

/// 429 with `Retry-After` is retryable after that delay; 400 is permanent with the body's
/// start; 401 is retried (the data stays buffered) saying authentication failed; neither the
/// error nor the sink's `Debug` output contains the token, even when the backend echoes it.
#[tokio::test]
async fn status_mapping_keeps_the_token_secret() {
    let server = HttpRecorder::start(Reply::status(204)).await;
    let dir = tempfile::tempdir().unwrap();
    let token = "very-secret-token-123";
    let sink = sink(HttpSink {
        bearer_token_file: Some(write_file(&dir, "token", token)),
        ..config(server.url("/api/v1/write"))
    });
    server.reply_next(Reply::status(429).header("retry-after", "7"));
    server.reply_next(Reply::status(400).body("out of order sample"));
    server.reply_next(Reply::status(401).body(format!(
        "invalid credentials: Bearer {token} (token {token})"
    )));
    let batch = [counter_batch("orders", 1.0, 1_000_000_000)];
    let e = sink.send(&batch).await.unwrap_err();
    assert!(
        matches!(e, SendError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(7)),
        "{e:?}"
    );
    let e = sink.send(&batch).await.unwrap_err();
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    assert!(e.to_string().contains("400"), "{e}");
    assert!(e.to_string().contains("out of order sample"), "{e}");
    let e = sink.send(&batch).await.unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    assert!(e.to_string().contains("authentication failed"), "{e}");
    assert!(e.to_string().contains("invalid credentials"), "{e}");
    for text in [e.to_string(), format!("{e:?}"), format!("{sink:?}")] {
        assert!(!text.contains(token), "token leaked: {text}");
    }
    assert!(server
        .requests()
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer very-secret-token-123")));
}

/// `caFile` makes the sink trust a private CA; a certificate from another CA is refused as a
/// retryable failure and nothing is delivered.
#[tokio::test]
async fn tls_with_custom_ca() {
    let ca = TestCa::new();
    let server = HttpRecorder::start_tls(Reply::status(204), ca.server_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let good = sink(HttpSink {
        ca_file: Some(write_file(&dir, "ca.pem", &ca.ca_pem)),
        ..config(server.url("/api/v1/write"))
    });
    good.send(&[counter_batch("orders", 1.0, 1_000_000_000)])
        .await
        .unwrap();
    assert_eq!(server.requests().len(), 1);

    let other = TestCa::new();
    let bad = sink(HttpSink {
        ca_file: Some(write_file(&dir, "other.pem", &other.ca_pem)),
        ..config(server.url("/api/v1/write"))
    });
    let e = bad
        .send(&[counter_batch("orders", 1.0, 1_000_000_000)])
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    assert_eq!(server.requests().len(), 1);
}

fn number(value: &serde_json::Value) -> f64 {
    value["value"][1].as_str().unwrap().parse().unwrap()
}

/// Samples and a converted OTLP histogram delivered by remote write into a real Prometheus
/// are what its query API returns.
#[tokio::test]
async fn delivers_into_real_prometheus() {
    let prometheus = Prometheus::start().await;
    let sink = sink(config(prometheus.write_url()));
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t1 = now_ms - 60_000;
    let t2 = now_ms - 30_000;
    let crashes = |timestamp, value| {
        Batch::Samples(WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    label("__name__", "vigil_crashes_total"),
                    label("namespace", "shop"),
                    label("app", "checkout"),
                    label("fingerprint", "a1b2c3d4e5f60718"),
                ],
                samples: vec![Sample { value, timestamp }],
            }],
        })
    };
    let batches = [
        // Out of order on purpose: the sink sorts.
        crashes(t2, 5.0),
        crashes(t1, 2.0),
        metrics_batch(vec![latency_histogram(t2 as u64 * 1_000_000)]),
    ];
    sink.send(&batches).await.unwrap();

    let at = |ms: i64| ms as f64 / 1000.0;
    let result = prometheus
        .query(
            r#"vigil_crashes_total{namespace="shop",app="checkout"}"#,
            at(t2),
        )
        .await;
    assert_eq!(result.len(), 1, "{result:?}");
    assert_eq!(number(&result[0]), 5.0);
    assert_eq!(result[0]["metric"]["fingerprint"], "a1b2c3d4e5f60718");
    let result = prometheus.query("vigil_crashes_total", at(t1)).await;
    assert_eq!(number(&result[0]), 2.0);

    let result = prometheus
        .query(
            r#"http_server_duration_milliseconds_bucket{le="100",job="checkout",namespace="shop"}"#,
            at(t2),
        )
        .await;
    assert_eq!(result.len(), 1, "{result:?}");
    assert_eq!(number(&result[0]), 8.0);
    assert_eq!(result[0]["metric"]["http_route"], "/pay");
    let result = prometheus
        .query("http_server_duration_milliseconds_count", at(t2))
        .await;
    assert_eq!(number(&result[0]), 10.0);
    let result = prometheus
        .query("http_server_duration_milliseconds_sum", at(t2))
        .await;
    assert_eq!(number(&result[0]), 420.0);
}

/// Samples records that need no merging are sent as they are (the body is their
/// concatenation); records with a series that needs work — labels out of order, an empty
/// value, a series in two records, two samples in one series — are sent merged as `send`
/// merges them. Either way the receiver gets the same series.
#[tokio::test]
async fn samples_records_sent_as_they_are_when_they_need_no_merging() {
    let one = |labels: &[(&str, &str)], samples: &[(i64, f64)]| TimeSeries {
        labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
    };
    let request = |series: Vec<TimeSeries>| Batch::Samples(WriteRequest { timeseries: series });
    let up = [("__name__", "up"), ("pod", "p")];
    let scrape_a = request(vec![
        one(&up, &[(1000, 1.0)]),
        one(&[("__name__", "x"), ("a", "1"), ("b", "2")], &[(1000, 2.0)]),
    ]);
    let scrape_b = request(vec![one(&[("__name__", "y")], &[(2000, 3.0)])]);
    let needs_work = [
        request(vec![one(
            &[("pod", "p"), ("__name__", "up")],
            &[(1000, 1.0)],
        )]),
        request(vec![one(
            &[("__name__", "up"), ("zone", "")],
            &[(1000, 1.0)],
        )]),
        request(vec![one(&up, &[(1000, 1.0), (2000, 2.0)])]),
        request(vec![one(&up, &[])]),
        request(vec![one(&[("pod", "p")], &[(1000, 1.0)])]),
    ];
    let records = |batches: &[Batch]| -> Vec<bytes::Bytes> {
        batches
            .iter()
            .map(|b| bytes::Bytes::from(b.encode()).slice(1..))
            .collect()
    };
    // As they are: one record, and two without a series in common.
    let single = records(std::slice::from_ref(&scrape_a));
    assert_eq!(as_is_body(&single).as_deref(), Some(&single[0][..]));
    let pair = records(&[scrape_a.clone(), scrape_b.clone()]);
    assert_eq!(as_is_body(&pair).as_deref(), Some(&pair.concat()[..]));
    // Not as they are.
    assert_eq!(
        as_is_body(&records(&[scrape_a.clone(), scrape_a.clone()])),
        None
    );
    for batch in &needs_work {
        assert_eq!(
            as_is_body(&records(std::slice::from_ref(batch))),
            None,
            "{batch:?}"
        );
    }
    // Through the sink: what the receiver decodes is what `send` sends.
    let server = HttpRecorder::start(Reply::status(204)).await;
    let sink = sink(config(server.url("/api/v1/write")));
    let cases: Vec<Vec<Batch>> = vec![
        vec![scrape_a.clone()],
        vec![scrape_a.clone(), scrape_b.clone()],
        vec![scrape_a.clone(), scrape_a.clone()],
        vec![needs_work[0].clone(), scrape_b.clone()],
        vec![needs_work[2].clone()],
    ];
    for batches in &cases {
        let encoded = EncodedBatches::from_batches(batches);
        assert_eq!(encoded.samples.len(), batches.len());
        sink.send_encoded(&encoded).await.unwrap();
        sink.send(batches).await.unwrap();
    }
    let requests = server.requests();
    assert_eq!(requests.len(), cases.len() * 2);
    let decode = |body: &[u8]| {
        let raw = snap::raw::Decoder::new().decompress_vec(body).unwrap();
        let mut series = WriteRequest::decode(raw.as_slice()).unwrap().timeseries;
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        series
    };
    for (i, pair) in requests.chunks(2).enumerate() {
        let (as_is, merged) = (decode(&pair[0].body), decode(&pair[1].body));
        assert!(!merged.is_empty());
        assert_eq!(as_is, merged, "case {i}");
    }
}

/// A record checked where it was written (a scrape's) is sent as it is, without a look at its
/// series; alone it is the body, and with another record the two are checked together as any
/// records are. Its count is the header's.
#[tokio::test]
async fn checked_samples_record_is_sent_as_it_is() {
    use crate::batch::{CHECKED_SAMPLES_HEADER, CHECKED_SAMPLES_TAG};
    use crate::buffer::{Record, RecordId};
    let series = |name: &str, value: f64| TimeSeries {
        labels: vec![label("__name__", name), label("pod", "p")],
        samples: vec![Sample {
            value,
            timestamp: 1000,
        }],
    };
    let request = WriteRequest {
        timeseries: vec![series("a", 1.0), series("b", 2.0)],
    };
    let mut checked = vec![CHECKED_SAMPLES_TAG];
    checked.extend_from_slice(&2u32.to_le_bytes());
    checked.extend_from_slice(&request.encode_to_vec());
    assert_eq!(
        Batch::decode(&checked).unwrap(),
        Batch::Samples(request.clone())
    );
    let record = |bytes: Vec<u8>| Record {
        id: RecordId(0),
        bytes,
    };
    let (alone, errors) = EncodedBatches::from_records(vec![record(checked.clone())]);
    assert!(errors.is_empty());
    assert_eq!((alone.items, alone.checked_samples), (2, 1));
    assert_eq!(alone.samples[0][..], checked[CHECKED_SAMPLES_HEADER..]);
    // The same series again in a plain record: not as they are, merged.
    let plain = Batch::Samples(request.clone()).encode();
    let (both, _) = EncodedBatches::from_records(vec![record(checked.clone()), record(plain)]);
    assert_eq!((both.items, both.checked_samples), (4, 1));
    assert_eq!(as_is_body(&both.samples), None);

    let server = HttpRecorder::start(Reply::status(204)).await;
    let sink = sink(config(server.url("/api/v1/write")));
    sink.send_encoded(&alone).await.unwrap();
    sink.send_encoded(&both).await.unwrap();
    let requests = server.requests();
    let raw = |i: usize| {
        snap::raw::Decoder::new()
            .decompress_vec(&requests[i].body)
            .unwrap()
    };
    assert_eq!(raw(0), checked[CHECKED_SAMPLES_HEADER..]);
    let merged = WriteRequest::decode(raw(1).as_slice()).unwrap();
    // The same sample twice is sent once.
    assert_eq!(merged, request);
}

/// The kept compressor gives, send after send, bodies that decompress to exactly their input:
/// a shorter body after a longer one carries nothing of the earlier output, and a body past
/// the kept buffer's bound is compressed on its own.
#[test]
fn kept_compressor_output_is_each_input() {
    let mut compressor = Compressor::default();
    let page = |n: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| format!("node_cpu_seconds_total{{cpu=\"{i}\"}} {i}\n").into_bytes())
            .collect()
    };
    for input in [
        page(5_000),
        page(10),
        Vec::new(),
        page(20_000),
        page(3),
        page(150_000),
    ] {
        let body = compressor.compress(&input).unwrap();
        let back = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert_eq!(back, input);
    }
    assert!(compressor.output.len() <= KEPT_OUTPUT_BYTES);
}
