//! Peers for the sink tests: a recording HTTP server (plain or TLS), a recording OTLP/gRPC
//! collector built on `opentelemetry-proto`'s service definitions, a throw-away certificate
//! authority, and a real Prometheus process with its remote-write receiver enabled. All listen
//! on 127.0.0.1 with ports chosen by the system and stop when dropped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::server::NamedService;

/// A request as the recording server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the recording server answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }
}

#[derive(Default)]
struct HttpState {
    requests: Vec<Recorded>,
    replies: VecDeque<Reply>,
}

/// An HTTP/1.1 and HTTP/2 server that records every request and answers with queued replies
/// (then `default_reply`).
pub struct HttpRecorder {
    pub addr: SocketAddr,
    tls: bool,
    state: Arc<Mutex<HttpState>>,
    task: JoinHandle<()>,
}

impl Drop for HttpRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpRecorder {
    /// A plain HTTP server answering `default_reply` when no reply is queued.
    pub async fn start(default_reply: Reply) -> HttpRecorder {
        Self::start_with(default_reply, None).await
    }

    /// An HTTPS server with the given certificate.
    pub async fn start_tls(default_reply: Reply, tls: rustls::ServerConfig) -> HttpRecorder {
        Self::start_with(default_reply, Some(Arc::new(tls))).await
    }

    async fn start_with(
        default_reply: Reply,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> HttpRecorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(HttpState::default()));
        let acceptor = tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let task_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = task_state.clone();
                let default_reply = default_reply.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<Incoming>| {
                        let state = state.clone();
                        let default_reply = default_reply.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes());
                            let body = body.unwrap_or_default();
                            let reply = {
                                let mut state = state.lock().unwrap();
                                state.requests.push(Recorded {
                                    method: parts.method.to_string(),
                                    path: parts.uri.path().to_owned(),
                                    headers: parts.headers,
                                    body,
                                });
                                state.replies.pop_front().unwrap_or(default_reply)
                            };
                            let mut response = hyper::Response::builder().status(reply.status);
                            for (name, value) in &reply.headers {
                                response = response.header(*name, value);
                            }
                            Ok::<_, std::convert::Infallible>(
                                response.body(Full::new(Bytes::from(reply.body))).unwrap(),
                            )
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(acceptor) => {
                            // A handshake refused by the client (unknown CA) ends here.
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        HttpRecorder {
            addr,
            tls: tls.is_some(),
            state,
            task,
        }
    }

    /// The URL of `path` on this server (`https://localhost:…` when serving TLS, so the
    /// certificate's name matches).
    pub fn url(&self, path: &str) -> String {
        if self.tls {
            format!("https://localhost:{}{path}", self.addr.port())
        } else {
            format!("http://{}{path}", self.addr)
        }
    }

    /// Queues a reply for the next request.
    pub fn reply_next(&self, reply: Reply) {
        self.state.lock().unwrap().replies.push_back(reply);
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }
}

/// What the recording collector received, with the request metadata.
#[derive(Clone, Default)]
pub struct OtlpRecorder {
    pub traces: Arc<Mutex<Vec<(tonic::metadata::MetadataMap, ExportTraceServiceRequest)>>>,
    pub metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    pub logs: Arc<Mutex<Vec<ExportLogsServiceRequest>>>,
    /// Statuses returned, one per call, before calls succeed again.
    pub failures: Arc<Mutex<VecDeque<tonic::Status>>>,
}

impl OtlpRecorder {
    fn next_failure(&self) -> Result<(), tonic::Status> {
        match self.failures.lock().unwrap().pop_front() {
            Some(status) => Err(status),
            None => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl TraceService for OtlpRecorder {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.next_failure()?;
        let metadata = request.metadata().clone();
        self.traces
            .lock()
            .unwrap()
            .push((metadata, request.into_inner()));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpRecorder {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.next_failure()?;
        self.metrics.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for OtlpRecorder {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.next_failure()?;
        self.logs.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// A running OTLP/gRPC collector.
pub struct GrpcCollector {
    pub addr: SocketAddr,
    pub recorder: OtlpRecorder,
    task: JoinHandle<()>,
}

impl Drop for GrpcCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GrpcCollector {
    /// Starts a collector, with TLS when `identity` (certificate and key PEM) is given.
    pub async fn start(identity: Option<(String, String)>) -> GrpcCollector {
        Self::start_with(identity, None).await
    }

    /// [`GrpcCollector::start`] requiring, with `client_ca` (PEM), a client certificate that
    /// CA signed (mutual TLS).
    pub async fn start_with(
        identity: Option<(String, String)>,
        client_ca: Option<String>,
    ) -> GrpcCollector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let recorder = OtlpRecorder::default();
        let mut server = tonic::transport::Server::builder();
        if let Some((cert, key)) = identity {
            let mut tls = tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(cert, key));
            if let Some(ca) = client_ca {
                tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(ca));
            }
            server = server.tls_config(tls).unwrap();
        }
        let services = CollectorServices {
            traces: TraceServiceServer::new(recorder.clone()),
            metrics: MetricsServiceServer::new(recorder.clone()),
            logs: LogsServiceServer::new(recorder.clone()),
        };
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let task = tokio::spawn(async move {
            let _ = server.serve_with_incoming(services, incoming).await;
        });
        GrpcCollector {
            addr,
            recorder,
            task,
        }
    }
}

/// The three collector services on one server, chosen by the gRPC path.
#[derive(Clone)]
struct CollectorServices {
    traces: TraceServiceServer<OtlpRecorder>,
    metrics: MetricsServiceServer<OtlpRecorder>,
    logs: LogsServiceServer<OtlpRecorder>,
}

impl Service<http::Request<Body>> for CollectorServices {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
        match service {
            TraceServiceServer::<OtlpRecorder>::NAME => self.traces.call(request),
            MetricsServiceServer::<OtlpRecorder>::NAME => self.metrics.call(request),
            LogsServiceServer::<OtlpRecorder>::NAME => self.logs.call(request),
            _ => {
                Box::pin(async { Ok(tonic::Status::unimplemented("unknown service").into_http()) })
            }
        }
    }
}

/// A certificate authority, a server certificate it signed for `localhost` and 127.0.0.1, and
/// a client certificate it signed (for mutual TLS), in PEM.
pub struct TestCa {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "vigil test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client_cert = CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .signed_by(&client_key, &issuer)
            .unwrap();
        TestCa {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }

    /// A rustls server configuration presenting the server certificate.
    pub fn server_config(&self) -> rustls::ServerConfig {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let certs = vec![CertificateDer::from_pem_slice(self.server_cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

/// A real Prometheus (the `prometheus` binary on `PATH`) with the remote-write receiver on,
/// on a free port of 127.0.0.1, with its data in a temporary directory. Killed when dropped.
pub struct Prometheus {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus and waits until it is ready; fails the test when the binary is
    /// missing or Prometheus does not get ready within a minute.
    pub async fn start() -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            "global:\n  scrape_interval: 1h\nscrape_configs: []\n",
        )
        .unwrap();
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new("prometheus")
            .arg("--web.enable-remote-write-receiver")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `prometheus` (run scripts/install-test-tools.sh): {e}")
            });
        let prometheus = Prometheus {
            port,
            child,
            _dir: dir,
            log,
        };
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        let client = plain_client();
        for _ in 0..240 {
            if let Ok(response) = client.get(&ready).send().await {
                if response.status().is_success() {
                    return prometheus;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "prometheus did not get ready; its log:\n{}",
            std::fs::read_to_string(&prometheus.log).unwrap_or_default()
        );
    }

    /// The remote-write URL.
    pub fn write_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }

    /// Runs an instant query at `time` (seconds) and returns `data.result`.
    pub async fn query(&self, query: &str, time: f64) -> Vec<serde_json::Value> {
        let url = reqwest::Url::parse_with_params(
            &format!("http://127.0.0.1:{}/api/v1/query", self.port),
            &[("query", query.to_owned()), ("time", time.to_string())],
        )
        .unwrap();
        let response = plain_client().get(url).send().await.unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(json["status"], "success", "{json}");
        json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// A client for plain-HTTP test requests (the workspace's reqwest has no default TLS provider).
pub fn plain_client() -> reqwest::Client {
    let tls = super::http::tls_client_config(rustls::RootCertStore::empty(), None, "test").unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

/// A string attribute.
pub fn kv(key: &str, value: &str) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// A resource with string attributes.
pub fn resource(attributes: &[(&str, &str)]) -> opentelemetry_proto::tonic::resource::v1::Resource {
    opentelemetry_proto::tonic::resource::v1::Resource {
        attributes: attributes.iter().map(|(k, v)| kv(k, v)).collect(),
        ..Default::default()
    }
}

/// The resource attributes enrichment puts on everything from one pod.
pub const POD_RESOURCE: &[(&str, &str)] = &[
    ("k8s.namespace.name", "shop"),
    ("service.name", "checkout"),
    ("service.version", "17.2"),
    ("k8s.pod.name", "checkout-7d9f-abcde"),
    ("k8s.node.name", "node-1"),
];

/// A log record with a string body.
pub fn log_record(
    time_unix_nano: u64,
    body: &str,
    severity_text: &str,
    attributes: &[(&str, &str)],
) -> opentelemetry_proto::tonic::logs::v1::LogRecord {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
    opentelemetry_proto::tonic::logs::v1::LogRecord {
        time_unix_nano,
        severity_text: severity_text.to_owned(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.to_owned())),
        }),
        attributes: attributes.iter().map(|(k, v)| kv(k, v)).collect(),
        ..Default::default()
    }
}

/// A logs batch under one resource.
pub fn logs_batch(
    resource_attributes: &[(&str, &str)],
    records: Vec<opentelemetry_proto::tonic::logs::v1::LogRecord>,
) -> crate::batch::Batch {
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    crate::batch::Batch::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource(resource_attributes)),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

/// A traces batch with one span named `name`.
pub fn traces_batch(name: &str) -> crate::batch::Batch {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    crate::batch::Batch::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(POD_RESOURCE)),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    name: name.to_owned(),
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_000_100_000_000,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

/// A metrics batch with one cumulative monotonic sum `name` of value `value`.
pub fn counter_batch(name: &str, value: f64, time_unix_nano: u64) -> crate::batch::Batch {
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, number_data_point, AggregationTemporality, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum,
    };
    crate::batch::Batch::Metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(POD_RESOURCE)),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.to_owned(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![kv("http.route", "/pay")],
                            time_unix_nano,
                            value: Some(number_data_point::Value::AsDouble(value)),
                            ..Default::default()
                        }],
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

/// Writes `content` to a new file in `dir` and returns its path as a string.
pub fn write_file(dir: &tempfile::TempDir, name: &str, content: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    path.display().to_string()
}
