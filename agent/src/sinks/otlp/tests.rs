//! OTLP sink tests against a recording collector (gRPC) and a recording HTTP server.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use vigil_crds::agent_config::{ExportersConfig, OtlpSink as OtlpSinkConfig};
use vigil_crds::monitored_app::OtlpProtocol;

use super::*;
use crate::sinks::test_support::*;
use crate::sinks::Sink;

fn config(endpoint: String, protocol: OtlpProtocol) -> OtlpSinkConfig {
    OtlpSinkConfig {
        endpoint,
        protocol,
        tenant: None,
        bearer_token_file: None,
        ca_file: None,
        ..Default::default()
    }
}

fn sink(config: OtlpSinkConfig) -> Sink {
    Sink::from_config(&ExportersConfig {
        otlp: Some(config),
        ..Default::default()
    })
    .unwrap()
    .remove(0)
}

fn span_names(request: &ExportTraceServiceRequest) -> Vec<&str> {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.name.as_str())
        .collect()
}

/// Over gRPC, several batches of a signal go out as one export request, with the tenant and
/// the bearer token from the file as metadata.
#[tokio::test]
async fn grpc_sends_one_request_per_signal_with_tenant_and_token() {
    let collector = GrpcCollector::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let token = write_file(&dir, "token", "grpc-token-value\n");
    let sink = sink(OtlpSinkConfig {
        tenant: Some("team-a".into()),
        bearer_token_file: Some(token),
        ..config(format!("http://{}", collector.addr), OtlpProtocol::Grpc)
    });
    let logs = logs_batch(POD_RESOURCE, vec![log_record(1, "hello", "info", &[])]);
    let batches = [
        traces_batch("GET /a"),
        logs,
        counter_batch("orders", 3.0, 1),
        traces_batch("GET /b"),
    ];
    sink.send(&batches).await.unwrap();

    let traces = collector.recorder.traces.lock().unwrap().clone();
    assert_eq!(traces.len(), 1, "one traces request");
    let (metadata, request) = &traces[0];
    assert_eq!(span_names(request), ["GET /a", "GET /b"]);
    assert_eq!(metadata.get("x-scope-orgid").unwrap(), "team-a");
    assert_eq!(
        metadata.get("authorization").unwrap(),
        "Bearer grpc-token-value"
    );
    assert_eq!(collector.recorder.metrics.lock().unwrap().len(), 1);
    let logs = collector.recorder.logs.lock().unwrap().clone();
    assert_eq!(logs.len(), 1);
    assert_eq!(
        Batch::Logs(logs[0].clone()),
        batches[1],
        "the logs arrive unchanged"
    );
}

fn status_with_retry_info(code: tonic::Code, delay: Duration) -> tonic::Status {
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: delay.as_secs() as i64,
            nanos: delay.subsec_nanos() as i32,
        }),
    };
    let details = RpcStatus {
        code: code as i32,
        message: "slow down".into(),
        details: vec![ProtoAny {
            type_url: RETRY_INFO_TYPE.into(),
            value: info.encode_to_vec(),
        }],
    };
    tonic::Status::with_details(code, "slow down", details.encode_to_vec().into())
}

/// gRPC statuses map as the OTLP specification says, and a `RetryInfo` delay is honoured.
#[tokio::test]
async fn grpc_status_mapping() {
    let collector = GrpcCollector::start(None).await;
    let sink = sink(config(
        format!("http://{}", collector.addr),
        OtlpProtocol::Grpc,
    ));
    {
        let mut failures = collector.recorder.failures.lock().unwrap();
        failures.push_back(status_with_retry_info(
            tonic::Code::ResourceExhausted,
            Duration::from_millis(2500),
        ));
        failures.push_back(tonic::Status::unavailable("restarting"));
        failures.push_back(tonic::Status::invalid_argument("bad span"));
        failures.push_back(tonic::Status::unauthenticated("who are you"));
        failures.push_back(tonic::Status::unknown("collector bug"));
    }
    let batch = [traces_batch("x")];
    match sink.send(&batch).await {
        Err(SendError::Retryable {
            retry_after: Some(d),
            reason,
        }) => {
            assert_eq!(d, Duration::from_millis(2500));
            assert!(reason.contains("ResourceExhausted"), "{reason}");
        }
        other => panic!("expected retryable with delay, got {other:?}"),
    }
    assert!(matches!(
        sink.send(&batch).await,
        Err(SendError::Retryable {
            retry_after: None,
            ..
        })
    ));
    let e = sink.send(&batch).await.unwrap_err();
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    assert!(e.to_string().contains("bad span"), "{e}");
    // A refused credential keeps the data buffered: retried, saying authentication failed.
    let e = sink.send(&batch).await.unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    assert!(e.to_string().contains("authentication failed"), "{e}");
    // `UNKNOWN` answered by the collector stays permanent; only a transport failure reported
    // as `UNKNOWN` on this side (a refused client certificate) is retried.
    let e = sink.send(&batch).await.unwrap_err();
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    sink.send(&batch).await.unwrap();
    assert_eq!(collector.recorder.traces.lock().unwrap().len(), 1);
}

/// A collector that is not there is a retryable failure.
#[tokio::test]
async fn grpc_connection_refused_is_retryable() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let sink = sink(config(
        format!("http://127.0.0.1:{port}"),
        OtlpProtocol::Grpc,
    ));
    let e = sink.send(&[traces_batch("x")]).await.unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
}

/// With a custom CA the sink trusts the collector's certificate; with another CA it refuses
/// the connection (and keeps the data for a retry).
#[tokio::test]
async fn grpc_tls_with_custom_ca() {
    let ca = TestCa::new();
    let collector = GrpcCollector::start(Some((
        ca.server_cert_pem.clone(),
        ca.server_key_pem.clone(),
    )))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("https://localhost:{}", collector.addr.port());
    let good = sink(OtlpSinkConfig {
        ca_file: Some(write_file(&dir, "ca.pem", &ca.ca_pem)),
        ..config(endpoint.clone(), OtlpProtocol::Grpc)
    });
    good.send(&[traces_batch("secure")]).await.unwrap();
    assert_eq!(collector.recorder.traces.lock().unwrap().len(), 1);

    let other = TestCa::new();
    let bad = sink(OtlpSinkConfig {
        ca_file: Some(write_file(&dir, "other.pem", &other.ca_pem)),
        ..config(endpoint, OtlpProtocol::Grpc)
    });
    let e = bad.send(&[traces_batch("insecure")]).await.unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    assert_eq!(collector.recorder.traces.lock().unwrap().len(), 1);
}

/// Over gRPC to a collector that requires a client certificate: with the configured
/// certificate the call goes through and carries basic authentication and the extra headers
/// (literal and from a Secret file) as metadata; without one the handshake is refused and the
/// data kept for a retry.
#[tokio::test]
async fn grpc_mutual_tls_with_basic_auth_and_headers() {
    use vigil_crds::agent_config::{BasicAuthFile, HeaderConfig};
    let ca = TestCa::new();
    let collector = GrpcCollector::start_with(
        Some((ca.server_cert_pem.clone(), ca.server_key_pem.clone())),
        Some(ca.ca_pem.clone()),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("https://localhost:{}", collector.addr.port());
    let ca_file = write_file(&dir, "ca.pem", &ca.ca_pem);
    let basic = BasicAuthFile {
        username: "tenant-7".into(),
        password_file: write_file(&dir, "password", "grpc-password\n"),
    };
    let headers = vec![
        HeaderConfig {
            name: "X-Org".into(),
            value: Some("shop".into()),
            value_file: None,
        },
        HeaderConfig {
            name: "X-Api-Key".into(),
            value: None,
            value_file: Some(write_file(&dir, "key", "grpc-api-key")),
        },
    ];
    let good = sink(OtlpSinkConfig {
        ca_file: Some(ca_file.clone()),
        basic_auth: Some(basic.clone()),
        headers: headers.clone(),
        client_cert_file: Some(write_file(&dir, "tls.crt", &ca.client_cert_pem)),
        client_key_file: Some(write_file(&dir, "tls.key", &ca.client_key_pem)),
        ..config(endpoint.clone(), OtlpProtocol::Grpc)
    });
    good.send(&[traces_batch("mutual")]).await.unwrap();
    {
        let traces = collector.recorder.traces.lock().unwrap();
        assert_eq!(traces.len(), 1);
        let metadata = &traces[0].0;
        let text = |key: &str| metadata.get(key).and_then(|v| v.to_str().ok());
        // base64("tenant-7:grpc-password")
        assert_eq!(
            text("authorization"),
            Some("Basic dGVuYW50LTc6Z3JwYy1wYXNzd29yZA==")
        );
        assert_eq!(text("x-org"), Some("shop"));
        assert_eq!(text("x-api-key"), Some("grpc-api-key"));
    }

    let without_cert = sink(OtlpSinkConfig {
        ca_file: Some(ca_file),
        basic_auth: Some(basic),
        headers,
        ..config(endpoint, OtlpProtocol::Grpc)
    });
    let e = without_cert
        .send(&[traces_batch("anonymous")])
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
    assert!(!e.to_string().contains("grpc-password"), "{e}");
    assert_eq!(collector.recorder.traces.lock().unwrap().len(), 1);
}

/// OTLP/HTTP posts protobuf to `/v1/<signal>`, one request per signal, with the tenant header
/// and the bearer token.
#[tokio::test]
async fn http_protobuf_posts_per_signal() {
    let server = HttpRecorder::start(
        Reply::status(200)
            .header("content-type", "application/x-protobuf")
            .body(ExportTraceServiceResponse::default().encode_to_vec()),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(OtlpSinkConfig {
        tenant: Some("team-b".into()),
        bearer_token_file: Some(write_file(&dir, "token", "http-token-value")),
        ..config(server.url("/otlp/"), OtlpProtocol::Http)
    });
    let batches = [
        traces_batch("a"),
        traces_batch("b"),
        logs_batch(POD_RESOURCE, vec![log_record(1, "one", "", &[])]),
        logs_batch(POD_RESOURCE, vec![log_record(2, "two", "", &[])]),
    ];
    sink.send(&batches).await.unwrap();
    let requests = server.requests();
    let paths: Vec<_> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/otlp/v1/traces", "/otlp/v1/logs"]);
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(r.header("x-scope-orgid"), Some("team-b"));
        assert_eq!(r.header("authorization"), Some("Bearer http-token-value"));
    }
    let traces = ExportTraceServiceRequest::decode(requests[0].body.clone()).unwrap();
    assert_eq!(span_names(&traces), ["a", "b"]);
    let logs = ExportLogsServiceRequest::decode(requests[1].body.clone()).unwrap();
    assert_eq!(logs.resource_logs.len(), 2);
}

/// OTLP/HTTP error statuses: 503 with `Retry-After` is retryable after that delay, 400 is
/// permanent and quotes the backend's message.
#[tokio::test]
async fn http_status_mapping() {
    let server = HttpRecorder::start(Reply::status(200)).await;
    let sink = sink(config(server.url(""), OtlpProtocol::Http));
    server.reply_next(Reply::status(503).header("retry-after", "4"));
    server.reply_next(
        Reply::status(400).body(
            RpcStatus {
                code: 3,
                message: "span has no trace id".into(),
                details: Vec::new(),
            }
            .encode_to_vec(),
        ),
    );
    let batch = [traces_batch("x")];
    assert!(matches!(
        sink.send(&batch).await,
        Err(SendError::Retryable { retry_after: Some(d), .. }) if d == Duration::from_secs(4)
    ));
    let e = sink.send(&batch).await.unwrap_err();
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    assert!(e.to_string().contains("span has no trace id"), "{e}");
}
