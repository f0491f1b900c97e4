//! The OpenTelemetry Python SDK with its OTLP exporters (gRPC and HTTP/protobuf) sends traces,
//! metrics and logs; the stored batches carry exactly what it sent, enriched and redacted.

use std::path::PathBuf;
use std::process::Stdio;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::*;

const SEND_OTLP: &str = include_str!("send_otlp.py");

/// The Python of the test tools; the test fails when it is missing.
fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-test-tools.sh",
        python.display()
    );
    python
}

/// Span ids the script created, as hex.
#[derive(serde::Deserialize, Debug)]
struct SentIds {
    trace: String,
    checkout: String,
    #[serde(rename = "charge-card")]
    charge_card: String,
}

/// Runs the sender script against `endpoint` and returns the ids it printed.
async fn send_with_python(protocol: &str, endpoint: &str) -> SentIds {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("send_otlp.py");
    std::fs::write(&script, SEND_OTLP).unwrap();
    let child = tokio::process::Command::new(python())
        .arg(&script)
        .arg(protocol)
        .arg(endpoint)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("OTEL_SDK_DISABLED", "false")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("the Python sender finishes")
        .unwrap();
    assert!(
        output.status.success(),
        "the Python sender failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn metrics(batches: &[Batch]) -> Vec<(&Resource, &Metric)> {
    let mut out = Vec::new();
    for batch in batches {
        if let Batch::Metrics(request) = batch {
            for rm in &request.resource_metrics {
                for scope in &rm.scope_metrics {
                    let resource = rm.resource.as_ref().unwrap();
                    out.extend(scope.metrics.iter().map(|m| (resource, m)));
                }
            }
        }
    }
    out
}

fn logs(batches: &[Batch]) -> Vec<(&Resource, &LogRecord)> {
    let mut out = Vec::new();
    for batch in batches {
        if let Batch::Logs(request) = batch {
            for rl in &request.resource_logs {
                for scope in &rl.scope_logs {
                    let resource = rl.resource.as_ref().unwrap();
                    out.extend(scope.log_records.iter().map(|r| (resource, r)));
                }
            }
        }
    }
    out
}

/// All that the script sends has arrived: two spans, both metrics, two log records.
fn all_arrived(batches: &[Batch]) -> bool {
    spans(batches).len() >= 2 && metrics(batches).len() >= 2 && logs(batches).len() >= 2
}

/// Checks the stored batches against what the script sent.
fn assert_stored_as_sent(batches: &[Batch], sent: &SentIds) {
    let spans = spans(batches);
    assert_eq!(spans.len(), 2, "two spans stored: {spans:#?}");
    let find = |name: &str| spans.iter().find(|(_, s)| s.name == name).unwrap();
    let (resource, checkout) = find("checkout");
    let (_, charge) = find("charge-card");
    assert_eq!(hex::encode(&checkout.trace_id), sent.trace);
    assert_eq!(hex::encode(&charge.trace_id), sent.trace);
    assert_eq!(hex::encode(&checkout.span_id), sent.checkout);
    assert_eq!(hex::encode(&charge.span_id), sent.charge_card);
    assert_eq!(charge.parent_span_id, checkout.span_id);
    assert_eq!(
        attribute(&checkout.attributes, "order.id"),
        Some(&string("A-1001"))
    );
    assert_eq!(
        attribute(&checkout.attributes, "order.items"),
        Some(&Value::IntValue(3))
    );
    assert_eq!(
        attribute(&charge.attributes, "payment.provider"),
        Some(&string("acme"))
    );
    assert_eq!(charge.events[0].name, "retry");
    assert_eq!(
        attribute(&resource.attributes, "service.name"),
        Some(&string("checkout"))
    );
    assert_enriched(resource);

    let metrics = metrics(batches);
    let (resource, orders) = metrics
        .iter()
        .find(|(_, m)| m.name == "orders_placed")
        .unwrap();
    let Some(Data::Sum(sum)) = &orders.data else {
        panic!("orders_placed is a sum: {orders:?}");
    };
    assert!(sum.is_monotonic);
    let mut points: Vec<(String, i64)> = sum
        .data_points
        .iter()
        .map(|p| {
            let Some(Value::StringValue(region)) = attribute(&p.attributes, "region") else {
                panic!("point without region: {p:?}");
            };
            let Some(number_data_point::Value::AsInt(value)) = p.value else {
                panic!("integer point: {p:?}");
            };
            (region.clone(), value)
        })
        .collect();
    points.sort();
    assert_eq!(points, [("eu".to_owned(), 3), ("us".to_owned(), 2)]);
    assert_enriched(resource);
    let (_, duration) = metrics
        .iter()
        .find(|(_, m)| m.name == "checkout_duration_ms")
        .unwrap();
    let Some(Data::Histogram(histogram)) = &duration.data else {
        panic!("checkout_duration_ms is a histogram: {duration:?}");
    };
    assert_eq!(histogram.data_points[0].count, 2);
    assert_eq!(histogram.data_points[0].sum, Some(92.5));

    let logs = logs(batches);
    assert_eq!(logs.len(), 2, "two log records stored: {logs:#?}");
    let (resource, declined) = logs
        .iter()
        .find(|(_, r)| body_text(&r.body) == Some("payment declined for order A-1001"))
        .unwrap();
    assert_eq!(declined.severity_text, "WARN");
    assert_eq!(hex::encode(&declined.trace_id), sent.trace);
    assert_eq!(hex::encode(&declined.span_id), sent.charge_card);
    assert_eq!(
        attribute(&declined.attributes, "attempt"),
        Some(&Value::IntValue(2))
    );
    assert_enriched(resource);
    let (_, placed) = logs
        .iter()
        .find(|(_, r)| body_text(&r.body).is_some_and(|b| b.starts_with("order A-1001 placed")))
        .unwrap();
    let placed = body_text(&placed.body).unwrap();
    assert!(
        !placed.contains("alice@example.com"),
        "e-mail redacted: {placed}"
    );
}

/// Python SDK → OTLP/gRPC (traces gzip-compressed) → buffer: every span, point and record is
/// stored as sent, with the pod identity added and the e-mail address redacted.
#[tokio::test]
async fn python_sdk_over_grpc_is_stored_as_sent() {
    let mut agent = TestAgent::start(Setup::new("sink_python_grpc")).await;
    let sent = send_with_python("grpc", &format!("http://{}", agent.grpc)).await;
    let batches = agent.stored_until(all_arrived).await;
    assert_stored_as_sent(&batches, &sent);
    agent.stop().await;
}

/// Python SDK → OTLP/HTTP protobuf (traces gzip-compressed) → buffer, as over gRPC.
#[tokio::test]
async fn python_sdk_over_http_is_stored_as_sent() {
    let mut agent = TestAgent::start(Setup::new("sink_python_http")).await;
    let sent = send_with_python("http", &format!("http://{}", agent.http)).await;
    let batches = agent.stored_until(all_arrived).await;
    assert_stored_as_sent(&batches, &sent);
    agent.stop().await;
}
