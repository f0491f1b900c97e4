//! Splunk HEC sink tests against a recording server.

use vigil_crds::agent_config::{ExportersConfig, SplunkHecSink as SplunkHecSinkConfig};

use super::*;
use crate::sinks::test_support::*;
use crate::sinks::Sink;

fn config(url: String, token_file: String) -> SplunkHecSinkConfig {
    SplunkHecSinkConfig {
        url,
        token_file,
        index: None,
        sourcetype: None,
        ca_file: None,
        ..Default::default()
    }
}

fn sink(config: SplunkHecSinkConfig) -> Sink {
    Sink::from_config(&ExportersConfig {
        splunk_hec: Some(config),
        ..Default::default()
    })
    .unwrap()
    .remove(0)
}

fn success() -> Reply {
    Reply::status(200).body(r#"{"text":"Success","code":0}"#)
}

/// The configured URL may or may not already name the event endpoint.
#[test]
fn event_url_accepts_base_and_full_urls() {
    for url in [
        "https://splunk:8088",
        "https://splunk:8088/",
        "https://splunk:8088/services/collector",
        "https://splunk:8088/services/collector/event",
    ] {
        assert_eq!(
            event_url(url),
            "https://splunk:8088/services/collector/event"
        );
    }
}

/// One request with `Authorization: Splunk <token>` carries every record as a concatenated
/// HEC event with time, host, source, sourcetype, index, the line and indexed fields.
#[tokio::test]
async fn events_on_the_wire() {
    let server = HttpRecorder::start(success()).await;
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(SplunkHecSinkConfig {
        index: Some("apps".into()),
        ..config(server.url(""), write_file(&dir, "hec", "hec-token-value\n"))
    });
    let batches = [
        logs_batch(
            POD_RESOURCE,
            vec![log_record(
                1_700_000_000_123_456_789,
                "payment accepted",
                "info",
                &[
                    ("k8s.container.name", "app"),
                    ("log.iostream", "stdout"),
                    ("order.id", "o-1"),
                ],
            )],
        ),
        logs_batch(
            POD_RESOURCE,
            vec![log_record(
                1_700_000_001_000_000_000,
                "panic: boom",
                "fatal",
                &[
                    ("k8s.container.name", "app"),
                    ("vigil.crash.fingerprint", "fedcba9876543210"),
                    ("exception.type", "panic"),
                    ("vigil.crash.language", "go"),
                    // The body itself: sent once.
                    ("exception.stacktrace", "panic: boom"),
                ],
            )],
        ),
    ];
    sink.send(&batches).await.unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.path, "/services/collector/event");
    assert_eq!(r.header("authorization"), Some("Splunk hec-token-value"));
    let events: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&r.body)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0],
        serde_json::json!({
            "time": 1_700_000_000.123,
            "host": "node-1",
            "source": "checkout-7d9f-abcde/app",
            "sourcetype": "vigil",
            "index": "apps",
            "event": {"message": "payment accepted", "order.id": "o-1"},
            "fields": {"namespace": "shop", "app": "checkout", "pod": "checkout-7d9f-abcde",
                       "container": "app", "stream": "stdout", "level": "info"},
        })
    );
    assert_eq!(events[1]["event"], "panic: boom");
    assert_eq!(events[1]["fields"]["crash_fingerprint"], "fedcba9876543210");
    assert_eq!(events[1]["fields"]["level"], "fatal");
    assert_eq!(events[1]["fields"]["crash_language"], "go");
}

/// HEC error codes decide: 9 (server busy) is retryable, 4 (invalid token) permanent; the
/// token never appears in an error or in `Debug`.
#[tokio::test]
async fn hec_error_codes() {
    let server = HttpRecorder::start(success()).await;
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(config(
        server.url("/services/collector"),
        write_file(&dir, "hec", "hec-secret-value"),
    ));
    server.reply_next(
        Reply::status(503)
            .header("retry-after", "12")
            .body(r#"{"text":"Server is busy","code":9}"#),
    );
    server.reply_next(
        Reply::status(403).body(r#"{"text":"Invalid token hec-secret-value","code":4}"#),
    );
    let batch = [logs_batch(POD_RESOURCE, vec![log_record(1, "x", "", &[])])];
    let e = sink.send(&batch).await.unwrap_err();
    assert!(
        matches!(e, SendError::Retryable { retry_after: Some(d), .. } if d.as_secs() == 12),
        "{e:?}"
    );
    assert!(e.to_string().contains("Server is busy"), "{e}");
    // A refused token is retried (the data stays buffered), saying authentication failed.
    let e = sink.send(&batch).await.unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    assert!(e.to_string().contains("authentication failed"), "{e}");
    assert!(e.to_string().contains("code 4"), "{e}");
    for text in [e.to_string(), format!("{e:?}"), format!("{sink:?}")] {
        assert!(!text.contains("hec-secret-value"), "token leaked: {text}");
    }
    sink.send(&batch).await.unwrap();
}

/// A missing token file is a retryable failure (the Secret may be mounted later), not a
/// dropped batch.
#[tokio::test]
async fn missing_token_file_is_retryable() {
    let server = HttpRecorder::start(success()).await;
    let sink = sink(config(server.url(""), "/nonexistent/hec-token".into()));
    let batch = [logs_batch(POD_RESOURCE, vec![log_record(1, "x", "", &[])])];
    let e = sink.send(&batch).await.unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    assert!(e.to_string().contains("/nonexistent/hec-token"), "{e}");
    assert!(server.requests().is_empty());
}
