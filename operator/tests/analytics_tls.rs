//! The analytics engine's Prometheus client against a real Prometheus (2.42+) serving HTTPS
//! with basic auth (`--web.config.file`: `tls_server_config` and `basic_auth_users`), its
//! certificate signed by a CA generated in the test. The client is configured from the
//! engine's own flags (`--prometheus-ca-file`, `--prometheus-basic-auth-*-file`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

#[path = "support/prometheus.rs"]
mod prometheus_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use vigil_operator::analytics::engine::prometheus::{PrometheusClient, PrometheusError};
use vigil_operator::analytics::engine::EngineArgs;

use prometheus_support::{backfill, spawn, tool, Running};

/// The password Prometheus accepts for user `vigil`.
const PASSWORD: &str = "correct horse battery";
/// bcrypt (cost 4, the least Prometheus accepts) of [`PASSWORD`], made with Python's
/// `crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))`.
const PASSWORD_HASH: &str = "$2b$04$3FXocVPEDf5k/beEZ3M7S.EBgXRzJfjHIcApgURvNVTgz0Fw/d1tW";
/// A password Prometheus refuses.
const WRONG_PASSWORD: &str = "wrong-password-Zq9";

const STEP: i64 = 60;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    engine: EngineArgs,
}

/// A CA and a serving certificate for `127.0.0.1` signed by it, written as `ca.pem`,
/// `server.pem` and `server-key.pem` in `dir`.
fn certificates(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server-key.pem"), key.serialize_pem()).unwrap();
}

/// Starts Prometheus on `data` serving HTTPS with basic auth (web config checked by
/// `promtool check web-config`); returns once the port accepts connections.
fn start_tls(dir: &Path, data: &Path) -> (Running, u16) {
    std::fs::write(
        dir.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n\
             basic_auth_users:\n  vigil: {PASSWORD_HASH}\n"
        ),
    )
    .unwrap();
    let check = Command::new(tool("promtool"))
        .current_dir(dir)
        .args(["check", "web-config", "web.yml"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let (running, port) = spawn(
        dir,
        data,
        "global: {scrape_interval: 1m}\n",
        &["--web.config.file=web.yml"],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "prometheus did not listen");
        std::thread::sleep(Duration::from_millis(200));
    }
    (running, port)
}

/// A client built from the engine's flags `extra` (plus the URL and a 10 s timeout).
fn client(url: &str, extra: &[String]) -> PrometheusClient {
    let mut argv = vec![
        "analytics".to_owned(),
        format!("--prometheus-url={url}"),
        "--prometheus-timeout-seconds=10".to_owned(),
    ];
    argv.extend_from_slice(extra);
    let cli = Cli::try_parse_from(argv).unwrap();
    PrometheusClient::new(cli.engine.prometheus_settings()).unwrap()
}

/// The error and every cause below it, as one line.
fn chain(error: &PrometheusError) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        text.push_str(&format!(": {e}"));
        cause = e.source();
    }
    text
}

/// Over HTTPS with the test CA from `--prometheus-ca-file` and basic auth from files, the
/// client reads the backfilled series exactly. Without the CA the request fails with the TLS
/// reason (unknown issuer) in the message, as `PrometheusMisconfigured`. A wrong password gets
/// a clear 401 error, `PrometheusUnauthorized`, that never shows the password. The password
/// file is read on every request: rotating it to the right password makes the next request
/// succeed, rotating it back makes the next one fail.
#[tokio::test]
async fn https_with_a_custom_ca_and_basic_auth_from_files() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let end = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / STEP)
        * STEP
        - 10 * STEP;
    let start = end - 60 * STEP;
    let mut text = String::from("# TYPE vigil_tls_test gauge\n");
    for t in (start..=end).step_by(STEP as usize) {
        text.push_str(&format!(
            "vigil_tls_test{{route=\"a\"}} {} {t}\n",
            (t - start) / STEP
        ));
    }
    text.push_str("# EOF\n");
    let data = backfill(dir.path(), &text);
    let (_prometheus, port) = start_tls(dir.path(), &data);
    let url = format!("https://127.0.0.1:{port}");

    let (user, password) = (dir.path().join("user"), dir.path().join("password"));
    std::fs::write(&user, "vigil\n").unwrap();
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    let auth = [
        format!("--prometheus-basic-auth-username-file={}", user.display()),
        format!(
            "--prometheus-basic-auth-password-file={}",
            password.display()
        ),
    ];
    let mut with_ca = auth.to_vec();
    with_ca.push(format!(
        "--prometheus-ca-file={}",
        dir.path().join("ca.pem").display()
    ));
    let trusted = client(&url, &with_ca);

    // Prometheus answers 503 until its TSDB is open.
    let deadline = Instant::now() + Duration::from_secs(60);
    let series = loop {
        match trusted
            .query_range("vigil_tls_test", end - 10 * STEP, end, STEP)
            .await
        {
            Ok(series) => break series,
            Err(e) => assert!(Instant::now() < deadline, "never read: {}", chain(&e)),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0].labels.get("route").map(String::as_str), Some("a"));
    let want: Vec<f64> = (50..=60).map(f64::from).collect();
    assert_eq!(series[0].series.values, want);

    let untrusted = client(&url, &auth);
    let e = untrusted
        .query("vigil_tls_test", end as f64)
        .await
        .unwrap_err();
    assert!(
        matches!(e, PrometheusError::Handshake { .. }),
        "{}",
        chain(&e)
    );
    assert_eq!(e.category(), "PrometheusMisconfigured");
    let shown = e.to_string();
    assert!(shown.contains(&url), "{shown}");
    assert!(
        shown.contains("invalid peer certificate: UnknownIssuer"),
        "{shown}"
    );
    assert!(shown.contains("--prometheus-ca-file"), "{shown}");

    std::fs::write(&password, WRONG_PASSWORD).unwrap();
    let e = trusted
        .query("vigil_tls_test", end as f64)
        .await
        .unwrap_err();
    assert_eq!(e.category(), "PrometheusUnauthorized", "{}", chain(&e));
    let shown = chain(&e);
    assert!(shown.contains("HTTP 401"), "{shown}");
    assert!(shown.contains("credentials"), "{shown}");
    assert!(!shown.contains(WRONG_PASSWORD), "{shown}");
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(!format!("{e:?}").contains(WRONG_PASSWORD), "{e:?}");

    std::fs::write(&password, PASSWORD).unwrap();
    let samples = trusted.query("vigil_tls_test", end as f64).await.unwrap();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].value, 60.0);

    std::fs::write(&password, WRONG_PASSWORD).unwrap();
    let e = trusted
        .query("vigil_tls_test", end as f64)
        .await
        .unwrap_err();
    assert_eq!(e.category(), "PrometheusUnauthorized");
}
