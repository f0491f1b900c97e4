//! The operator's own telemetry: one Prometheus registry holding the reconcile metrics
//! ([`ReconcileMetrics`]), the cluster signals ([`Signals`]: restarts, releases,
//! acknowledgements) and process figures, served over plain HTTP with `/metrics`, `/healthz`
//! (the process answers) and `/readyz` (the caller's readiness flag).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use tokio::net::TcpListener;

use crate::controllers::ReconcileMetrics;
use crate::signals::Signals;

/// Default address of the telemetry server (the chart's `metrics.port`).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// How long shutdown waits for scrapes in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the telemetry server stopped.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot listen for telemetry on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The operator's registry: reconcile metrics, the cluster signals of `signals`, build info
/// and process memory. Returns the registry and the reconcile metrics registered in it.
pub fn operator_registry(
    signals: &Signals,
) -> Result<(Registry, ReconcileMetrics), prometheus::Error> {
    let registry = Registry::new();
    let reconcile = ReconcileMetrics::new(&registry)?;
    signals.register(&registry)?;
    register_process(&registry)?;
    Ok((registry, reconcile))
}

/// Registers `vigil_operator_build_info{version}` and
/// `vigil_operator_resident_memory_bytes` (read from `/proc/self/status` at scrape time).
pub fn register_process(registry: &Registry) -> Result<(), prometheus::Error> {
    let build = IntGaugeVec::new(
        Opts::new(
            "vigil_operator_build_info",
            "1, labelled with the operator's version.",
        ),
        &["version"],
    )?;
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    registry.register(Box::new(build))?;
    registry.register(Box::new(MemoryCollector::new()?))
}

/// The resident set size of this process in bytes (`VmRSS` of `/proc/self/status`); `None`
/// where that file does not exist.
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Reads the resident memory at scrape time.
struct MemoryCollector {
    template: IntGauge,
}

fn memory_gauge() -> Result<IntGauge, prometheus::Error> {
    IntGauge::new(
        "vigil_operator_resident_memory_bytes",
        "Resident memory of the operator process.",
    )
}

impl MemoryCollector {
    fn new() -> Result<MemoryCollector, prometheus::Error> {
        Ok(MemoryCollector {
            template: memory_gauge()?,
        })
    }
}

impl Collector for MemoryCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.template.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let (Some(bytes), Ok(gauge)) = (resident_memory_bytes(), memory_gauge()) else {
            return Vec::new();
        };
        gauge.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        gauge.collect()
    }
}

/// Listens on `addr` and serves `registry` until `shutdown` completes (see
/// [`serve_listener`]).
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TelemetryError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    serve_listener(listener, registry, ready, shutdown).await;
    Ok(())
}

/// Serves on `listener` until `shutdown` completes, then lets requests in flight finish (up to
/// five seconds):
/// - `GET /metrics`: `registry` in the Prometheus text format;
/// - `GET /healthz`: `200` while the process answers;
/// - `GET /readyz`: `200` while `ready` is true, else `503`.
pub async fn serve_listener(
    listener: TcpListener,
    registry: Registry,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()>,
) {
    let metrics = move || registry_metrics(&registry);
    serve_routes("telemetry", listener, metrics, ready, shutdown).await;
}

/// Serves `/metrics` (the response `metrics` makes per scrape), `/healthz` and `/readyz` on
/// `listener` as [`serve_listener`] does; `server` names it in logs.
pub(crate) async fn serve_routes<M>(
    server: &'static str,
    listener: TcpListener,
    metrics: M,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()>,
) where
    M: Fn() -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (tcp, _peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "{server} server cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let metrics = metrics.clone();
                let ready = ready.clone();
                let service = service_fn(move |req| {
                    let response = route(&metrics, &ready, &req);
                    async move { Ok::<_, Infallible>(response) }
                });
                let conn = builder.serve_connection(TokioIo::new(tcp), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "{server} connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("{server} requests still in flight at shutdown");
    }
}

/// `registry` in the Prometheus text format.
fn registry_metrics(registry: &Registry) -> Response<Full<Bytes>> {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&registry.gather(), &mut body) {
        Ok(()) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            if let Ok(value) = HeaderValue::from_str(encoder.format_type()) {
                response.headers_mut().insert(CONTENT_TYPE, value);
            }
            response
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode metrics: {e}"),
        ),
    }
}

fn route(
    metrics: &impl Fn() -> Response<Full<Bytes>>,
    ready: &AtomicBool,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => metrics(),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok"),
        (&Method::GET, "/readyz") if ready.load(Ordering::Relaxed) => text(StatusCode::OK, "ok"),
        (&Method::GET, "/readyz") => text(StatusCode::SERVICE_UNAVAILABLE, "not ready"),
        (_, "/metrics" | "/healthz" | "/readyz") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client as HttpClient;
    use tokio::sync::oneshot;

    use super::*;

    async fn get(method: Method, url: &str) -> (StatusCode, String, String) {
        let client = HttpClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let request = Request::builder()
            .method(method)
            .uri(url)
            .body(Empty::new())
            .unwrap();
        let response = client.request(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    /// `/metrics` serves the whole operator registry in the Prometheus text format (reconcile
    /// metrics, signals, build info, memory); `/healthz` answers while the process runs;
    /// `/readyz` follows the readiness flag; other methods and paths are refused; shutdown
    /// stops the server.
    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let signals = Signals::default();
        let (registry, reconcile) = operator_registry(&signals).unwrap();
        reconcile.record("MonitoredApp", Instant::now(), Some("InvalidSpec"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let ready = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_listener(listener, registry, ready.clone(), async {
            let _ = stopped.await;
        }));

        let (status, content_type, body) = get(Method::GET, &format!("{base}/metrics")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        for line in [
            r#"vigil_operator_reconciles_total{kind="MonitoredApp"} 1"#,
            r#"vigil_operator_reconcile_failures_total{error="InvalidSpec",kind="MonitoredApp"} 1"#,
            r#"vigil_operator_reconcile_duration_seconds_count{kind="MonitoredApp"} 1"#,
            r#"vigil_operator_alertmanager_poll_failures_total 0"#,
            concat!(
                r#"vigil_operator_build_info{version=""#,
                env!("CARGO_PKG_VERSION"),
                r#""} 1"#
            ),
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "missing {line:?} in:\n{body}"
            );
        }
        let rss = body
            .lines()
            .find_map(|l| l.strip_prefix("vigil_operator_resident_memory_bytes "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap();
        assert!(rss > 0.0);

        assert_eq!(
            get(Method::GET, &format!("{base}/healthz")).await.0,
            StatusCode::OK
        );
        assert_eq!(
            get(Method::GET, &format!("{base}/readyz")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        ready.store(true, Ordering::Relaxed);
        assert_eq!(
            get(Method::GET, &format!("{base}/readyz")).await.0,
            StatusCode::OK
        );
        assert_eq!(
            get(Method::POST, &format!("{base}/metrics")).await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            get(Method::GET, &format!("{base}/nope")).await.0,
            StatusCode::NOT_FOUND
        );

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the server stops on shutdown")
            .unwrap();
    }

    /// Binding an address in use is an error naming the address, not a panic.
    #[tokio::test]
    async fn an_address_in_use_is_reported() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let registry = Registry::new();
        let err = serve(addr, registry, Arc::new(AtomicBool::new(true)), async {})
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
