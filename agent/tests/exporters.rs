//! End to end: the real `vigil-agent` binary exporting to several backends at once the way
//! real ones want to be spoken to — basic authentication, custom headers (literal and from
//! Secret files), a client certificate for mutual TLS, several exporters of one kind each
//! taking the signals it chose — and stamping the cluster name and Prometheus' target labels
//! on what it exports. The backends are recording hyper servers (`support/backend.rs`) and
//! OTLP/gRPC receivers built on `opentelemetry-proto`; the scraped app is a hyper server
//! serving a fixed Prometheus page.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the report

#[path = "support/backend.rs"]
mod backend;
mod support;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::SocketAddr;
use std::time::Duration;

use backend::{Backend, TestPki};
use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use support::*;

/// The page the scraped app serves: it has a `version` label of its own.
const APP_PAGE: &str = "# TYPE shop_orders_total counter\n\
shop_orders_total{method=\"card\"} 3\n\
# TYPE build_info gauge\n\
build_info{version=\"9.9.9\",revision=\"abc123\"} 1\n";

/// A hyper server answering every request with [`APP_PAGE`].
async fn serve_app_page() -> (u16, tokio::task::JoinHandle<()>) {
    use http_body_util::Full;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("Content-Type", "text/plain; version=0.0.4")
                            .body(Full::new(bytes::Bytes::from_static(APP_PAGE.as_bytes())))
                            .unwrap(),
                    )
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, task)
}

fn string(value: &Option<AnyValue>) -> Option<&str> {
    match value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn resource_attr<'a>(resource: &'a Option<Resource>, key: &str) -> Option<&'a str> {
    resource
        .as_ref()?
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| string(&kv.value))
}

async fn send_otlp(grpc: u16) {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let mut traces = TraceServiceClient::connect(endpoint.clone()).await.unwrap();
    traces.export(bench_spans(0, 3)).await.unwrap();
    let mut logs = LogsServiceClient::connect(endpoint).await.unwrap();
    let record = LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000,
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(Value::StringValue("payment accepted".into())),
        }),
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            // An application that claims another cluster: the agent's name wins.
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "k8s.cluster.name".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue("somewhere-else".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![record],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    logs.export(request).await.unwrap();
}

/// The labels of every series of a remote-write body (snappy-compressed protobuf).
fn remote_write_series(body: &[u8]) -> Vec<BTreeMap<String, String>> {
    let raw = snap::raw::Decoder::new().decompress_vec(body).unwrap();
    let request = vigil_agent::prompb::WriteRequest::decode(raw.as_slice()).unwrap();
    request
        .timeseries
        .iter()
        .map(|s| {
            s.labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect()
        })
        .collect()
}

/// The agent's counter `name` for `component`, summed over its other labels.
fn agent_counter(agent: &Agent, name: &str, component: &str) -> f64 {
    let needle = format!("component=\"{component}\"");
    agent
        .metrics()
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One agent, five exporters:
/// - a remote-write exporter to a backend that requires a client certificate: it presents
///   its certificate (the handshake succeeds and the backend sees a verified client), sends
///   `Authorization: Basic` built from the username and the mounted password file, a literal
///   header and a header read from a Secret file, and its series carry `cluster`, `job`,
///   `instance` and `container` without the app's own `version` being renamed;
/// - a second remote-write exporter to the same backend without a certificate: refused at the
///   handshake, so nothing it sends is ever received;
/// - two OTLP exporters, one taking only traces and one only logs: each gets its signal and
///   nothing else, with `k8s.cluster.name` on every resource (the agent's value even where the
///   application set another);
/// - Loki with a custom header: its streams carry the `cluster` label.
///
/// No secret (password, header value, key) appears in the agent's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporters_authenticate_route_signals_and_label_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let write = |name: &str, content: &str| {
        let path = secrets.join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    };
    let ca = write("ca.crt", &pki.ca_pem);
    let password = write("password", "glc_s3cret-password-0123\n");
    let api_key = write("api-key", "k-9f8e7d6c5b4a\n");
    let cert = write("tls.crt", &pki.client_cert_pem);
    let key = write("tls.key", &pki.client_key_pem);

    let mimir = Backend::tls(pki.server_config(true)).await;
    let loki = Backend::plain().await;
    let (traces_port, logs_port) = (free_port(), free_port());
    let traces_receiver = OtlpSinkServer::default();
    let _traces = traces_receiver.serve(format!("127.0.0.1:{traces_port}").parse().unwrap());
    let logs_receiver = OtlpSinkServer::default();
    let _logs = logs_receiver.serve(format!("127.0.0.1:{logs_port}").parse().unwrap());
    let (app_port, _app) = serve_app_page().await;

    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let config = format!(
        r#"version: 1
app:
  namespace: shop
  name: checkout
  clientType: banking
  releaseSource: label
  versionLabel: app.kubernetes.io/version
  cluster: eu-prod-1
listen:
  otlpGrpc: 127.0.0.1:{grpc}
  otlpHttp: 127.0.0.1:{http}
  admin: {admin}
scrape:
  port: "{app_port}"
  path: /metrics
  interval: 1s
  timeout: 1s
  honorAnnotations: false
  job: vigil/shop/checkout
traces:
  enabled: true
  samplingRatio: 1.0
crashes:
  enabled: true
redaction:
  detectors: []
buffer:
  path: {buffer}
  maxBytes: 67108864
  whenFull: dropNewest
exporters:
  loki:
    url: {loki_url}
    headers:
    - {{name: X-Scope-Team, value: payments}}
  named:
  - name: mimir
    prometheusRemoteWrite:
      url: {mimir_url}
      caFile: {ca}
      basicAuth: {{username: "123456", passwordFile: {password}}}
      headers:
      - {{name: X-Org, value: shop}}
      - {{name: X-Api-Key, valueFile: {api_key}}}
      clientCertFile: {cert}
      clientKeyFile: {key}
      signals: [metrics]
  - name: no-cert
    prometheusRemoteWrite:
      url: {nocert_url}
      caFile: {ca}
      basicAuth: {{username: "123456", passwordFile: {password}}}
  - name: traces
    otlp: {{endpoint: "http://127.0.0.1:{traces_port}", protocol: grpc, signals: [traces]}}
  - name: logs
    otlp: {{endpoint: "http://127.0.0.1:{logs_port}", protocol: grpc, signals: [logs]}}
"#,
        buffer = dir.path().join("buffer").display(),
        loki_url = loki.url("/loki/api/v1/push"),
        mimir_url = mimir.url("/api/v1/push"),
        nocert_url = mimir.url("/nocert"),
    );
    let agent_dir = dir.path().to_owned();
    let agent = tokio::task::spawn_blocking(move || {
        Agent::start_with_env(
            &agent_dir,
            &config,
            admin,
            &[("POD_IP", "10.1.2.3"), ("VIGIL_SCRAPE_CONTAINER", "app")],
        )
    })
    .await
    .unwrap();
    send_otlp(grpc).await;

    // Remote write over mutual TLS, with basic auth and both custom headers.
    assert!(
        wait_for(Duration::from_secs(30), || !mimir
            .requests_to("/api/v1/push")
            .is_empty())
        .await,
        "no remote write arrived; agent log:\n{}",
        agent.log()
    );
    let request = mimir.requests_to("/api/v1/push").remove(0);
    assert!(request.client_certified, "no client certificate presented");
    let expected_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("123456:glc_s3cret-password-0123")
    );
    assert_eq!(
        request.header("authorization"),
        Some(expected_basic.as_str())
    );
    assert_eq!(request.header("x-org"), Some("shop"));
    assert_eq!(request.header("x-api-key"), Some("k-9f8e7d6c5b4a"));
    assert_eq!(request.header("x-scope-orgid"), None);

    // Series: cluster, job, instance, container; the app's own version kept as it is.
    let instance = format!("10.1.2.3:{app_port}");
    let series = remote_write_series(&request.body);
    let find = |name: &str| {
        series
            .iter()
            .find(|s| s.get("__name__").map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {series:#?}"))
            .clone()
    };
    for name in ["shop_orders_total", "build_info", "up"] {
        let labels = find(name);
        assert_eq!(labels["cluster"], "eu-prod-1", "{labels:?}");
        assert_eq!(labels["job"], "vigil/shop/checkout", "{labels:?}");
        assert_eq!(labels["instance"], instance, "{labels:?}");
        assert_eq!(labels["container"], "app", "{labels:?}");
        assert_eq!(labels["namespace"], "shop", "{labels:?}");
        assert_eq!(labels["pod"], "checkout-7d9f-abcde", "{labels:?}");
    }
    let build_info = find("build_info");
    assert_eq!(build_info["version"], "9.9.9", "{build_info:?}");
    assert_eq!(build_info["revision"], "abc123", "{build_info:?}");
    assert!(
        !build_info.keys().any(|k| k.starts_with("exported_")),
        "{build_info:?}"
    );
    assert_eq!(find("shop_orders_total")["version"], "17.2");

    // The exporter without a certificate is refused at the handshake and keeps retrying.
    assert!(
        wait_for(Duration::from_secs(30), || mimir.refused_handshakes() > 0
            && agent_counter(
                &agent,
                "vigil_agent_retries_total",
                "sink_remote_write_no-cert"
            ) > 0.0)
        .await,
        "the certificate-less exporter was not refused; agent log:\n{}",
        agent.log()
    );
    assert!(mimir.requests_to("/nocert").is_empty());

    // Each OTLP exporter gets its own signal, with the cluster on every resource.
    assert!(
        wait_for(Duration::from_secs(30), || {
            !traces_receiver.received.lock().unwrap().traces.is_empty()
                && !logs_receiver.received.lock().unwrap().logs.is_empty()
        })
        .await,
        "OTLP exporters got nothing; agent log:\n{}",
        agent.log()
    );
    {
        let traces = traces_receiver.received.lock().unwrap();
        assert!(
            traces.logs.is_empty() && traces.metrics.is_empty(),
            "{traces:?}"
        );
        for rs in traces.traces.iter().flat_map(|r| &r.resource_spans) {
            assert_eq!(
                resource_attr(&rs.resource, "k8s.cluster.name"),
                Some("eu-prod-1")
            );
        }
        let logs = logs_receiver.received.lock().unwrap();
        assert!(
            logs.traces.is_empty() && logs.metrics.is_empty(),
            "{logs:?}"
        );
        for rl in logs.logs.iter().flat_map(|r| &r.resource_logs) {
            assert_eq!(
                resource_attr(&rl.resource, "k8s.cluster.name"),
                Some("eu-prod-1")
            );
        }
    }
    // Loki: the custom header, and the cluster as a stream label.
    assert!(
        wait_for(Duration::from_secs(30), || !loki.requests().is_empty()).await,
        "Loki got nothing; agent log:\n{}",
        agent.log()
    );
    let push = loki.requests().remove(0);
    assert_eq!(push.header("x-scope-team"), Some("payments"));
    let mut json = String::new();
    flate2::read::GzDecoder::new(push.body.as_ref())
        .read_to_string(&mut json)
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&json).unwrap();
    let streams = body["streams"].as_array().unwrap();
    assert!(!streams.is_empty());
    for stream in streams {
        assert_eq!(stream["stream"]["cluster"], "eu-prod-1", "{stream}");
    }

    // No secret in the agent's own log.
    let log = agent.log();
    for secret in ["glc_s3cret-password-0123", "k-9f8e7d6c5b4a", "PRIVATE KEY"] {
        assert!(!log.contains(secret), "{secret} in the agent log:\n{log}");
    }
}
