//! Loki sink tests: stream shaping (pure) and the push request a recording server receives.

use std::io::Read;

use flate2::read::GzDecoder;
use vigil_crds::agent_config::{ExportersConfig, HttpSink};

use super::*;
use crate::sinks::test_support::*;
use crate::sinks::Sink;

fn sink(config: HttpSink) -> Sink {
    Sink::from_config(&ExportersConfig {
        loki: Some(config),
        ..Default::default()
    })
    .unwrap()
    .remove(0)
}

const CRASH: &[(&str, &str)] = &[
    ("k8s.container.name", "app"),
    ("vigil.crash.fingerprint", "0123456789abcdef"),
    ("exception.type", "java.lang.NullPointerException"),
    ("vigil.crash.language", "java"),
    ("exception.message", "name is null"),
    (
        "exception.stacktrace",
        "java.lang.NullPointerException: name is null\n\tat A.b(A.java:1)",
    ),
];

/// Records become streams with only low-cardinality labels (namespace, app, pod, container,
/// level, crash); the fingerprint and parsed fields travel as structured metadata (a stack
/// trace that repeats the line does not); entries are in time order within a stream.
#[test]
fn streams_have_low_cardinality_labels_and_sorted_entries() {
    let batches = [
        logs_batch(
            POD_RESOURCE,
            vec![
                log_record(3_000, "third", "INFO", &[("k8s.container.name", "app")]),
                log_record(
                    1_000,
                    "first",
                    "info",
                    &[("k8s.container.name", "app"), ("user.id", "u-42")],
                ),
                log_record(
                    5_000,
                    "java.lang.NullPointerException: name is null\n\tat A.b(A.java:1)",
                    "ERROR",
                    CRASH,
                ),
            ],
        ),
        logs_batch(
            POD_RESOURCE,
            vec![log_record(
                2_000,
                "second",
                "information",
                &[("k8s.container.name", "app")],
            )],
        ),
    ];
    let push = PushRequest::from_batches(&batches);
    assert_eq!(push.streams.len(), 2, "{push:#?}");
    let info = push
        .streams
        .iter()
        .find(|s| s.stream.get("level").map(String::as_str) == Some("info"))
        .unwrap();
    let labels: Vec<_> = info.stream.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        labels,
        [
            ("app", "checkout"),
            ("container", "app"),
            ("level", "info"),
            ("namespace", "shop"),
            ("pod", "checkout-7d9f-abcde"),
        ]
    );
    let lines: Vec<_> = info.values.iter().map(|e| e.line.as_str()).collect();
    assert_eq!(lines, ["first", "second", "third"]);
    assert_eq!(info.values[0].metadata.get("user_id").unwrap(), "u-42");

    let crash = push
        .streams
        .iter()
        .find(|s| s.stream.contains_key("crash"))
        .unwrap();
    assert_eq!(crash.stream.get("crash").unwrap(), "true");
    assert_eq!(crash.stream.get("level").unwrap(), "error");
    let metadata = &crash.values[0].metadata;
    assert_eq!(
        metadata.get("vigil_crash_fingerprint").unwrap(),
        "0123456789abcdef"
    );
    assert_eq!(
        metadata.get("exception_type").unwrap(),
        "java.lang.NullPointerException"
    );
    assert!(!metadata.contains_key("k8s_container_name"));
    // The stack trace is the line itself: not repeated in the metadata.
    assert_eq!(metadata.get("exception_message").unwrap(), "name is null");
    assert!(!metadata.contains_key("exception_stacktrace"));

    let json = serde_json::to_value(&push).unwrap();
    let entry = &json["streams"][0]["values"][0];
    assert!(entry[0].is_string(), "timestamps are strings: {entry}");
}

/// The push is one gzip-compressed JSON request to the configured URL, with the tenant and
/// bearer headers, that decodes to the expected streams.
#[tokio::test]
async fn push_request_on_the_wire() {
    let server = HttpRecorder::start(Reply::status(204)).await;
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(HttpSink {
        url: server.url("/loki/api/v1/push"),
        tenant: Some("tenant-x".into()),
        bearer_token_file: Some(write_file(&dir, "token", "loki-token-value")),
        ca_file: None,
        ..Default::default()
    });
    let batches = [
        logs_batch(POD_RESOURCE, vec![log_record(2_000, "b", "warn", &[])]),
        logs_batch(POD_RESOURCE, vec![log_record(1_000, "a", "warn", &[])]),
    ];
    sink.send(&batches).await.unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.path, "/loki/api/v1/push");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("x-scope-orgid"), Some("tenant-x"));
    assert_eq!(r.header("authorization"), Some("Bearer loki-token-value"));
    let mut json = String::new();
    GzDecoder::new(r.body.as_ref())
        .read_to_string(&mut json)
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"streams": [{
            "stream": {"app": "checkout", "level": "warn", "namespace": "shop",
                       "pod": "checkout-7d9f-abcde"},
            "values": [["1000", "a"], ["2000", "b"]],
        }]})
    );

    // Nothing to send is no request.
    sink.send(&[counter_batch("x", 1.0, 1)]).await.unwrap();
    assert_eq!(server.requests().len(), 1);
}

/// Loki's 429 (rate limited) is retryable, 400 (bad stream) is permanent.
#[tokio::test]
async fn loki_status_mapping() {
    let server = HttpRecorder::start(Reply::status(204)).await;
    let sink = sink(HttpSink {
        url: server.url("/loki/api/v1/push"),
        tenant: None,
        bearer_token_file: None,
        ca_file: None,
        ..Default::default()
    });
    server.reply_next(Reply::status(429).body("Ingestion rate limit exceeded"));
    server.reply_next(Reply::status(400).body("entry too far behind"));
    let batch = [logs_batch(POD_RESOURCE, vec![log_record(1, "x", "", &[])])];
    assert!(matches!(
        sink.send(&batch).await,
        Err(SendError::Retryable { .. })
    ));
    let e = sink.send(&batch).await.unwrap_err();
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    assert!(e.to_string().contains("entry too far behind"), "{e}");
}
