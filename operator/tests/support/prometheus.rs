//! A real Prometheus for the analytics tests and bench: tools found on `PATH`, `/usr/bin` or
//! the repository's `.tools/bin`, series backfilled from OpenMetrics text with promtool, and a
//! server that stops when its guard is dropped.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: each user needs part of it, and a failed step fails the test"
)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Finds a tool on `PATH`, then `/usr/bin`, then `<repo>/.tools/bin`.
pub fn tool(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.tools/bin")
        .join(name);
    on_path
        .into_iter()
        .chain([Path::new("/usr/bin").join(name), repo])
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found: run scripts/install-test-tools.sh"))
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Stops the process when the test ends, however it ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Backfills `openmetrics` (text ending in `# EOF`) into `dir/data` with `promtool tsdb
/// create-blocks-from openmetrics`; the TSDB directory.
pub fn backfill(dir: &Path, openmetrics: &str) -> PathBuf {
    let input = dir.join("series.om");
    std::fs::write(&input, openmetrics).unwrap();
    let data = dir.join("data");
    let status = Command::new(tool("promtool"))
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&data)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "promtool backfill failed");
    data
}

/// Starts Prometheus in `dir` on the TSDB `data` with `config` (the text of its
/// `prometheus.yml`, checked by `promtool check config` first) and waits until it is ready;
/// the guard and its port.
pub fn start(dir: &Path, data: &Path, config: &str) -> (Running, u16) {
    let (running, port) = spawn(dir, data, config, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = tcp.write_all(b"GET /-/ready HTTP/1.0\r\n\r\n");
            let mut answer = String::new();
            let _ = tcp.read_to_string(&mut answer);
            if answer.contains(" 200 ") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "prometheus did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    (running, port)
}

/// Starts Prometheus in `dir` on the TSDB `data` with `config` (checked by `promtool check
/// config` first) and the `extra` flags, without waiting for it; the guard and its port.
pub fn spawn(dir: &Path, data: &Path, config: &str, extra: &[&str]) -> (Running, u16) {
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let check = Command::new(tool("promtool"))
        .args(["check", "config"])
        .arg(dir.join("prometheus.yml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let port = free_port();
    let running = Running(
        Command::new(tool("prometheus"))
            .current_dir(dir)
            .arg("--config.file=prometheus.yml")
            .args(extra)
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg("--storage.tsdb.retention.time=30d")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    (running, port)
}

/// `GET path` on 127.0.0.1:`port` over HTTP/1.0: (status line, body); empty on no answer.
pub fn get(port: u16, path: &str) -> (String, String) {
    let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return Default::default();
    };
    let _ = write!(tcp, "GET {path} HTTP/1.0\r\n\r\n");
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_default();
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}
