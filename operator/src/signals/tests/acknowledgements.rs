//! Acknowledgements: which Alertmanager alerts count as acknowledged, what happens when
//! Alertmanager is unreachable, and the whole path against a real Alertmanager and `amtool`.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use crate::signals::acknowledgements::{
    acknowledged, Acknowledgement, AcknowledgementError, AcknowledgementState, AlertmanagerAlert,
    AlertmanagerClient, STALE_AFTER,
};
use crate::signals::Signals;

fn ack(namespace: &str, alertname: &str) -> Acknowledgement {
    Acknowledgement {
        namespace: namespace.into(),
        app: "checkout".into(),
        alertname: alertname.into(),
    }
}

/// Silenced alerts are acknowledged (once, however many escalation copies match); inhibited
/// or active ones are not, and alerts without `namespace`/`app` are not Vigil's.
#[test]
fn only_silenced_vigil_alerts_are_acknowledged() {
    let alerts: Vec<AlertmanagerAlert> = serde_json::from_value(json!([
        {"labels": {"alertname": "CheckoutCrash", "namespace": "shop", "app": "checkout"},
         "status": {"state": "suppressed", "silencedBy": ["a"], "inhibitedBy": []}},
        {"labels": {"alertname": "CheckoutCrash", "namespace": "shop", "app": "checkout", "escalation_level": "1"},
         "status": {"state": "suppressed", "silencedBy": ["a"], "inhibitedBy": []}},
        {"labels": {"alertname": "CheckoutSlow", "namespace": "shop", "app": "checkout"},
         "status": {"state": "suppressed", "silencedBy": [], "inhibitedBy": ["b"]}},
        {"labels": {"alertname": "CheckoutErrors", "namespace": "shop", "app": "checkout"},
         "status": {"state": "active", "silencedBy": [], "inhibitedBy": []}},
        {"labels": {"alertname": "Watchdog"},
         "status": {"state": "suppressed", "silencedBy": ["c"], "inhibitedBy": []}},
        {"labels": {"alertname": "Unrelated", "namespace": "shop"},
         "status": {"state": "suppressed", "silencedBy": ["c"]}}
    ]))
    .unwrap();
    assert_eq!(
        acknowledged(&alerts),
        BTreeSet::from([ack("shop", "CheckoutCrash")])
    );
}

/// While Alertmanager cannot be reached the last answer stays (a short outage does not
/// restart escalations), but not beyond `STALE_AFTER`: an Alertmanager that is gone never
/// keeps escalation suppressed.
#[test]
fn an_unreachable_alertmanager_drops_acknowledgements_after_a_while() {
    let mut state = AcknowledgementState::default();
    state.update(BTreeSet::from([ack("shop", "CheckoutCrash")]));
    let t0 = Instant::now();
    state.failed(t0);
    state.failed(t0 + STALE_AFTER - Duration::from_secs(1));
    assert_eq!(state.current().len(), 1);
    state.failed(t0 + STALE_AFTER);
    assert!(state.current().is_empty());
}

/// Only `http://` URLs are accepted, and the error names the URL.
#[test]
fn a_non_http_alertmanager_url_is_refused() {
    let err = AlertmanagerClient::new("https://alertmanager:9093").unwrap_err();
    assert!(matches!(err, AcknowledgementError::NotHttp { .. }));
    assert!(err.to_string().contains("https://alertmanager:9093"));
}

/// A failed poll is counted and reported, not a panic.
#[tokio::test]
async fn a_failed_poll_is_counted() {
    let port = free_port();
    let client = AlertmanagerClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let signals = Signals::default();
    let err = signals.poll_acknowledgements(&client).await.unwrap_err();
    assert!(matches!(err, AcknowledgementError::Connect { .. }), "{err}");
    let registry = prometheus::Registry::new();
    signals.register(&registry).unwrap();
    let failures = registry
        .gather()
        .into_iter()
        .find(|f| f.name() == "vigil_operator_alertmanager_poll_failures_total")
        .unwrap();
    assert_eq!(failures.get_metric()[0].get_counter().get_value(), 1.0);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Alertmanager on a free port, killed on drop.
struct Alertmanager {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    async fn start() -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager must be installed (scripts/install-test-tools.sh)");
        let alertmanager = Alertmanager {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let ready = format!("{}/-/ready", alertmanager.url);
        wait_until("Alertmanager to be ready", || async {
            request("GET", &ready, None).await.is_ok_and(|s| s == 200)
        })
        .await;
        alertmanager
    }

    fn amtool(&self, args: &[&str]) -> String {
        let output = Command::new("amtool")
            .args(args)
            .arg(format!("--alertmanager.url={}", self.url))
            .output()
            .expect("amtool must be installed (scripts/install-test-tools.sh)");
        assert!(
            output.status.success(),
            "amtool {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

/// Sends a request and returns the status code.
async fn request(method: &str, url: &str, body: Option<String>) -> Result<u16, String> {
    let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

/// Waits (up to a generous deadline) until `check` holds.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn exported(registry: &prometheus::Registry) -> Vec<(String, String, String)> {
    registry
        .gather()
        .into_iter()
        .filter(|f| f.name() == "vigil_alert_acknowledged")
        .flat_map(|f| f.get_metric().to_vec())
        .map(|m| {
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            (label("namespace"), label("app"), label("alertname"))
        })
        .collect()
}

/// End to end with a real Alertmanager 0.25: alerts posted to `/api/v2/alerts` are not
/// acknowledged; `amtool silence add` acknowledges exactly the matching alert (not the same
/// alert name in another namespace) and `vigil_alert_acknowledged` appears; `amtool silence
/// expire` withdraws it.
#[tokio::test]
async fn silences_in_a_real_alertmanager_acknowledge_alerts() {
    let alertmanager = Alertmanager::start().await;
    let alerts = json!([
        {"labels": {"alertname": "CheckoutCrash", "namespace": "shop", "app": "checkout", "severity": "page"}},
        {"labels": {"alertname": "CheckoutCrash", "namespace": "shop", "app": "checkout", "severity": "page", "escalation_level": "1"}},
        {"labels": {"alertname": "CheckoutCrash", "namespace": "other", "app": "checkout", "severity": "page"}},
        {"labels": {"alertname": "CheckoutSlow", "namespace": "shop", "app": "checkout", "severity": "ticket"}}
    ]);
    let status = request(
        "POST",
        &format!("{}/api/v2/alerts", alertmanager.url),
        Some(alerts.to_string()),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);

    let client = AlertmanagerClient::new(&alertmanager.url).unwrap();
    let signals = Signals::default();
    let registry = prometheus::Registry::new();
    signals.register(&registry).unwrap();
    wait_until("the posted alerts", || async {
        client.alerts().await.is_ok_and(|a| a.len() == 4)
    })
    .await;
    signals.poll_acknowledgements(&client).await.unwrap();
    assert!(exported(&registry).is_empty());

    let id = alertmanager.amtool(&[
        "silence",
        "add",
        "alertname=CheckoutCrash",
        "namespace=shop",
        "--comment=looking into it",
        "--author=sre@example.com",
        "--duration=1h",
    ]);
    assert!(!id.is_empty(), "amtool printed no silence id");
    wait_until("the silence to acknowledge the alert", || async {
        signals.poll_acknowledgements(&client).await.is_ok() && !exported(&registry).is_empty()
    })
    .await;
    assert_eq!(
        exported(&registry),
        vec![(
            "shop".to_owned(),
            "checkout".to_owned(),
            "CheckoutCrash".to_owned()
        )]
    );

    alertmanager.amtool(&["silence", "expire", &id]);
    wait_until(
        "the expired silence to withdraw the acknowledgement",
        || async {
            signals.poll_acknowledgements(&client).await.is_ok() && exported(&registry).is_empty()
        },
    )
    .await;
}
