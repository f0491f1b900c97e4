//! OTLP/JSON as the OTLP specification defines it: lowerCamelCase keys, trace and span ids as
//! hex strings, 64-bit integers as decimal strings, enums as integers, unknown fields ignored.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatusCode;
use reqwest::StatusCode;

use super::super::http::decode_json;
use super::*;

/// A traces request written by hand per the OTLP/JSON rules (shaped like the
/// `examples/trace.json` of opentelemetry-proto), with an unknown field that must be ignored.
pub(super) const TRACE_JSON: &str = r#"{
  "resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
    "scopeSpans": [{
      "scope": {"name": "shop.checkout", "version": "1.4.2"},
      "spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "parentSpanId": "eee19b7ec3c1b173",
        "name": "GET /cart",
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "kind": 2,
        "attributes": [
          {"key": "http.route", "value": {"stringValue": "/cart"}},
          {"key": "cart.size", "value": {"intValue": "9007199254740993"}},
          {"key": "cache.hit", "value": {"boolValue": true}},
          {"key": "load", "value": {"doubleValue": 0.25}},
          {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}]}}}
        ],
        "events": [{"timeUnixNano": "1544712660500000000", "name": "retry"}],
        "status": {"code": 2, "message": "upstream failed"},
        "flags": 257,
        "notAnOtlpField": {"ignored": true}
      }]
    }]
  }]
}"#;

const METRICS_JSON: &str = r#"{
  "resourceMetrics": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
    "scopeMetrics": [{
      "scope": {"name": "shop.checkout"},
      "metrics": [
        {"name": "orders_placed", "unit": "1", "sum": {
          "aggregationTemporality": 2, "isMonotonic": true,
          "dataPoints": [{"asInt": "42", "startTimeUnixNano": "1544712660000000000",
            "timeUnixNano": "1544712661000000000",
            "attributes": [{"key": "region", "value": {"stringValue": "eu"}}]}]}},
        {"name": "queue_fill", "gauge": {"dataPoints": [{"asDouble": 0.5,
          "timeUnixNano": "1544712661000000000"}]}},
        {"name": "checkout_duration_ms", "unit": "ms", "histogram": {
          "aggregationTemporality": 1,
          "dataPoints": [{"count": "3", "sum": 25.5, "bucketCounts": ["1", "2"],
            "explicitBounds": [10.0], "timeUnixNano": "1544712661000000000"}]}}
      ]
    }]
  }]
}"#;

const LOGS_JSON: &str = r#"{
  "resourceLogs": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
    "scopeLogs": [{
      "scope": {"name": "shop.checkout"},
      "logRecords": [
        {"timeUnixNano": "1544712660300000000", "observedTimeUnixNano": "1544712660300000001",
         "severityNumber": 13, "severityText": "WARN",
         "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
         "body": {"stringValue": "payment declined"},
         "attributes": [{"key": "attempt", "value": {"intValue": "2"}}]},
        {"timeUnixNano": "1544712660400000000", "severityNumber": 9,
         "body": {"kvlistValue": {"values": [{"key": "order", "value": {"stringValue": "A-1"}}]}}}
      ]
    }]
  }]
}"#;

/// Span fields decode per the OTLP/JSON rules: hex ids, 64-bit integers from strings, enum
/// integers, and an unknown field ignored.
#[test]
fn trace_json_decodes_per_otlp_spec() {
    let request: ExportTraceServiceRequest = decode_json(Signal::Traces, TRACE_JSON.as_bytes())
        .unwrap_or_else(|e| panic!("{}", e.message));
    let span = &request.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(
        span.trace_id,
        hex::decode("5b8efff798038103d269b633813fc60c").unwrap()
    );
    assert_eq!(span.span_id, hex::decode("eee19b7ec3c1b174").unwrap());
    assert_eq!(
        span.parent_span_id,
        hex::decode("eee19b7ec3c1b173").unwrap()
    );
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(span.flags, 257);
    assert_eq!(
        span.status.as_ref().unwrap().code,
        SpanStatusCode::Error as i32
    );
    assert_eq!(
        attribute(&span.attributes, "http.route"),
        Some(&string("/cart"))
    );
    assert_eq!(
        attribute(&span.attributes, "cart.size"),
        Some(&Value::IntValue(9_007_199_254_740_993))
    );
    assert_eq!(
        attribute(&span.attributes, "cache.hit"),
        Some(&Value::BoolValue(true))
    );
    assert_eq!(
        attribute(&span.attributes, "load"),
        Some(&Value::DoubleValue(0.25))
    );
    assert_eq!(
        attribute(&span.attributes, "tags"),
        Some(&Value::ArrayValue(ArrayValue {
            values: vec![AnyValue {
                value: Some(string("a"))
            }]
        }))
    );
    assert_eq!(span.events[0].time_unix_nano, 1_544_712_660_500_000_000);
}

/// Metric points decode per the OTLP/JSON rules: `asInt` and histogram counts from strings,
/// temporality as an integer, the point kind from its key.
#[test]
fn metrics_json_decodes_per_otlp_spec() {
    let request: ExportMetricsServiceRequest =
        decode_json(Signal::Metrics, METRICS_JSON.as_bytes())
            .unwrap_or_else(|e| panic!("{}", e.message));
    let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
    let Some(Data::Sum(sum)) = &metrics[0].data else {
        panic!("sum expected: {:?}", metrics[0]);
    };
    assert_eq!(sum.aggregation_temporality, 2);
    assert!(sum.is_monotonic);
    assert_eq!(
        sum.data_points[0].value,
        Some(number_data_point::Value::AsInt(42))
    );
    assert_eq!(sum.data_points[0].time_unix_nano, 1_544_712_661_000_000_000);
    let Some(Data::Gauge(gauge)) = &metrics[1].data else {
        panic!("gauge expected: {:?}", metrics[1]);
    };
    assert_eq!(
        gauge.data_points[0].value,
        Some(number_data_point::Value::AsDouble(0.5))
    );
    let Some(Data::Histogram(histogram)) = &metrics[2].data else {
        panic!("histogram expected: {:?}", metrics[2]);
    };
    let point = &histogram.data_points[0];
    assert_eq!(
        (point.count, point.sum, point.bucket_counts.as_slice()),
        (3, Some(25.5), &[1, 2][..])
    );
    assert_eq!(point.explicit_bounds, [10.0]);
}

/// Log records decode per the OTLP/JSON rules: severity number as an integer, hex ids, string
/// and key-value-list bodies.
#[test]
fn logs_json_decodes_per_otlp_spec() {
    let request: ExportLogsServiceRequest =
        decode_json(Signal::Logs, LOGS_JSON.as_bytes()).unwrap_or_else(|e| panic!("{}", e.message));
    let records = &request.resource_logs[0].scope_logs[0].log_records;
    assert_eq!(records[0].severity_number, 13);
    assert_eq!(records[0].time_unix_nano, 1_544_712_660_300_000_000);
    assert_eq!(
        records[0].observed_time_unix_nano,
        1_544_712_660_300_000_001
    );
    assert_eq!(body_text(&records[0].body), Some("payment declined"));
    assert_eq!(
        records[0].trace_id,
        hex::decode("5b8efff798038103d269b633813fc60c").unwrap()
    );
    assert_eq!(
        attribute(&records[0].attributes, "attempt"),
        Some(&Value::IntValue(2))
    );
    assert_eq!(
        records[1].body.as_ref().unwrap().value,
        Some(Value::KvlistValue(KeyValueList {
            values: vec![KeyValue {
                key: "order".into(),
                value: Some(AnyValue {
                    value: Some(string("A-1"))
                }),
                ..Default::default()
            }]
        }))
    );
}

/// A bad value is refused with the JSON path of the field and without quoting the value.
#[test]
fn json_error_names_the_field_not_the_value() {
    let bad = TRACE_JSON.replace("eee19b7ec3c1b174", "s3cr3t-not-hex!!");
    let rejection =
        decode_json::<ExportTraceServiceRequest>(Signal::Traces, bad.as_bytes()).unwrap_err();
    assert!(
        rejection
            .message
            .contains("resourceSpans[0].scopeSpans[0].spans[0].spanId"),
        "{}",
        rejection.message
    );
    assert!(
        !rejection.message.contains("s3cr3t"),
        "{}",
        rejection.message
    );
    let truncated = &TRACE_JSON[..TRACE_JSON.len() / 2];
    let rejection =
        decode_json::<ExportTraceServiceRequest>(Signal::Traces, truncated.as_bytes()).unwrap_err();
    assert!(
        rejection.message.contains("JSON ends early"),
        "{}",
        rejection.message
    );
}

/// OTLP/HTTP JSON end to end: the three signals posted as JSON are stored as protobuf with
/// the values the JSON carried, and the response is JSON.
#[tokio::test]
async fn json_requests_over_http_are_stored() {
    let mut agent = TestAgent::start(Setup::new("sink_json_http")).await;
    let client = http_client();
    for (path, body) in [
        ("/v1/traces", TRACE_JSON),
        ("/v1/metrics", METRICS_JSON),
        ("/v1/logs", LOGS_JSON),
    ] {
        let response = client
            .post(format!("http://{}{path}", agent.http))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.text().await.unwrap(), "{}");
    }
    let batches = agent.stored_until(|b| b.len() >= 3).await;
    let spans = spans(&batches);
    let (resource, span) = spans[0];
    assert_eq!(span.name, "GET /cart");
    assert_eq!(
        span.trace_id,
        hex::decode("5b8efff798038103d269b633813fc60c").unwrap()
    );
    assert_eq!(
        attribute(&span.attributes, "cart.size"),
        Some(&Value::IntValue(9_007_199_254_740_993))
    );
    assert_enriched(resource);
    assert!(
        matches!(&batches[1], Batch::Metrics(m) if m.resource_metrics[0].scope_metrics[0].metrics.len() == 3)
    );
    assert!(
        matches!(&batches[2], Batch::Logs(l) if l.resource_logs[0].scope_logs[0].log_records.len() == 2)
    );
    agent.stop().await;
}
