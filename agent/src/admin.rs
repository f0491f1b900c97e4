//! The admin endpoint: `/healthz` (the process runs), `/readyz` (every listener is bound),
//! `/metrics` — the agent's own telemetry, the crash series and, for pull setups, the latest
//! scrape of the application — and `/metrics/crashes`, the crash series alone, in the
//! Prometheus text format 0.0.4. The crash page is a few lines, so Prometheus scrapes it every
//! couple of seconds (crash alerts in seconds) without the cost of scraping the app that often.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::processors::crash::CrashDetector;
use crate::sources::scrape::LatestScrape;
use crate::telemetry::{emit, InternalEvent};

/// Component name in the agent's own telemetry.
const COMPONENT: &str = "admin";

/// Path of the crash series alone.
pub const CRASHES_PATH: &str = "/metrics/crashes";

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What `/metrics` serves and `/readyz` reports.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// Set once every listener is bound (independent of backends).
    pub ready: Arc<AtomicBool>,
    pub crashes: Arc<CrashDetector>,
    pub latest_scrape: Arc<LatestScrape>,
}

/// Serves until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    state: AdminState,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_on(TcpListener::bind(addr).await?, state, shutdown).await
}

/// Serves on a bound `listener` until `shutdown`; requests in flight are answered.
pub async fn serve_on(
    listener: TcpListener,
    state: AdminState,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let state = Arc::new(state);
    crate::http_server::serve(
        listener,
        COMPONENT,
        crate::http_server::Limits::default(),
        move |request| {
            let state = Arc::clone(&state);
            async move { answer(&state, &request) }
        },
        shutdown,
    )
    .await;
    Ok(())
}

fn answer<B>(state: &AdminState, request: &Request<B>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if !matches!(path, "/healthz" | "/readyz" | "/metrics" | CRASHES_PATH) {
        return text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz, /metrics or /metrics/crashes\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if state.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => {
            let page = if path == CRASHES_PATH {
                state.crashes.exposition()
            } else {
                metrics_page(state)
            };
            let mut response = Response::new(Full::new(Bytes::from(page)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(PROMETHEUS_TEXT),
            );
            response
        }
    }
}

/// The `/metrics` page: own telemetry, then crash series, then the latest scrape.
pub fn metrics_page(state: &AdminState) -> String {
    let mut page = prometheus::TextEncoder::new()
        .encode_to_string(&crate::telemetry::registry().gather())
        .unwrap_or_else(|error| {
            emit(InternalEvent::Error {
                component: COMPONENT,
                error: "MetricsEncoding",
                message: &error.to_string(),
            });
            String::new()
        });
    append_section(&mut page, &state.crashes.exposition());
    append_section(&mut page, &state.latest_scrape.text());
    page
}

/// Appends an exposition section, keeping every line newline-terminated.
fn append_section(page: &mut String, section: &str) {
    if section.is_empty() {
        return;
    }
    if !page.is_empty() && !page.ends_with('\n') {
        page.push('\n');
    }
    page.push_str(section);
    if !page.ends_with('\n') {
        page.push('\n');
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::identity::Identity;

    struct Admin {
        addr: SocketAddr,
        state: AdminState,
        stop: watch::Sender<bool>,
        server: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    async fn start() -> Admin {
        let state = AdminState {
            ready: Arc::new(AtomicBool::new(false)),
            crashes: Arc::new(CrashDetector::new(&Identity::default(), None)),
            latest_scrape: Arc::new(LatestScrape::default()),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, shutdown) = watch::channel(false);
        let server = tokio::spawn(serve_on(listener, state.clone(), shutdown));
        Admin {
            addr,
            state,
            stop,
            server,
        }
    }

    async fn get(admin: &Admin, path: &str) -> (u16, String, String) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let response = reqwest::Client::new()
            .get(format!("http://{}{path}", admin.addr))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, response.text().await.unwrap())
    }

    /// `/healthz` answers while the process runs; `/readyz` only once the agent says it is
    /// ready; other paths are 404 and other methods 405.
    #[tokio::test]
    async fn health_and_readiness() {
        let admin = start().await;
        assert_eq!(get(&admin, "/healthz").await.0, 200);
        assert_eq!(get(&admin, "/healthz").await.2, "ok\n");
        assert_eq!(get(&admin, "/readyz").await.0, 503);
        admin.state.ready.store(true, Ordering::Release);
        assert_eq!(get(&admin, "/readyz").await.0, 200);
        assert_eq!(get(&admin, "/nothing-here").await.0, 404);
        let response = reqwest::Client::new()
            .post(format!("http://{}/metrics", admin.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405);
        assert_eq!(response.headers()["allow"], "GET, HEAD");
        admin.stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(60), admin.server)
            .await
            .expect("admin endpoint stops on shutdown")
            .unwrap()
            .unwrap();
    }

    /// `/metrics` serves the agent's own series and the latest scrape in text format 0.0.4,
    /// and promtool accepts the page.
    #[tokio::test]
    async fn metrics_page_has_own_telemetry_and_scraped_series() {
        let admin = start().await;
        emit(InternalEvent::Received {
            component: "admin_test",
            signal: "logs",
            events: 2,
            bytes: 10,
        });
        admin.state.latest_scrape.set_text(
            "# HELP http_requests_total Requests served.\n\
             # TYPE http_requests_total counter\n\
             http_requests_total{namespace=\"shop\",app=\"checkout\"} 7",
        );
        let (status, content_type, page) = get(&admin, "/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(content_type, PROMETHEUS_TEXT);
        assert!(page.contains(
            "vigil_agent_received_events_total{component=\"admin_test\",signal=\"logs\"} 2\n"
        ));
        assert!(page.ends_with("http_requests_total{namespace=\"shop\",app=\"checkout\"} 7\n"));
        // The crash page holds the crash series alone: no telemetry, no app series.
        let (status, content_type, crashes) = get(&admin, CRASHES_PATH).await;
        assert_eq!((status, content_type.as_str()), (200, PROMETHEUS_TEXT));
        assert!(
            !crashes.contains("vigil_agent_") && !crashes.contains("http_requests_total"),
            "{crashes}"
        );
        assert_eq!(crashes, admin.state.crashes.exposition());
        let mut promtool = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool (scripts/install-test-tools.sh) is installed");
        std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), page.as_bytes()).unwrap();
        let checked = promtool.wait_with_output().unwrap();
        assert!(
            checked.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
    }
}
