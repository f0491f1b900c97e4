//! At its open-files limit the real agent sheds load without spinning: accepting fails
//! (`EMFILE`), the accept loop backs off and reports the failures once per period with their
//! count — not every 100 ms — and serves again once descriptors are free. The agent runs as a
//! child process with `RLIMIT_NOFILE` lowered.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure is the report

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::{free_port, wait_until, Agent};

/// Open-files limit of the agent under test: room for its runtime, buffer and listeners and a
/// few connections.
const FD_LIMIT: u64 = 64;

/// How long the limit is held after the first report: with the old 100 ms pause and a log line
/// per failure, dozens of lines.
const HOLD: Duration = Duration::from_secs(3);

fn config(admin: SocketAddr, grpc: u16, http: u16, dir: &std::path::Path) -> String {
    format!(
        "version: 1\napp:\n  namespace: shop\n  name: checkout\n  clientType: generic\n  releaseSource: label\nlisten:\n  otlpGrpc: 127.0.0.1:{grpc}\n  otlpHttp: 127.0.0.1:{http}\n  admin: {admin}\ntraces:\n  enabled: true\n  samplingRatio: 1.0\ncrashes:\n  enabled: true\nredaction:\n  detectors: []\nbuffer:\n  path: {}\n  maxBytes: 67108864\n  whenFull: block\n",
        dir.join("buffer").display()
    )
}

/// An empty OTLP/HTTP export (a valid request with nothing in it); `Some(status line)` when
/// answered.
fn post_empty(http: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", http)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(
            b"POST /v1/traces HTTP/1.1\r\nhost: agent\r\nconnection: close\r\n\
              content-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        )
        .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    text.lines().next().map(str::to_owned)
}

#[test]
fn at_the_fd_limit_accept_errors_back_off_and_are_reported_once_per_period() {
    let dir = tempfile::tempdir().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let agent = Agent::start_with_fd_limit(
        dir.path(),
        &config(admin, grpc, http, dir.path()),
        admin,
        FD_LIMIT,
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", agent.pid())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert!(
        open_files.split_whitespace().nth(3) == Some(&FD_LIMIT.to_string()),
        "the limit is not lowered: {open_files}"
    );
    assert_eq!(post_empty(http).as_deref(), Some("HTTP/1.1 200 OK"));

    // More connections than descriptors: the agent accepts until it has none left; the rest
    // wait in the kernel's accept queue.
    let held: Vec<TcpStream> = (0..FD_LIMIT + 16)
        .map(|_| TcpStream::connect(("127.0.0.1", http)).unwrap())
        .collect();
    let reports = || {
        agent
            .log()
            .lines()
            .filter(|line| {
                line.contains("\"error\":\"Accept\"") && line.contains("Too many open files")
            })
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(Duration::from_secs(30), || !reports().is_empty()),
        "no accept error reported; the agent's log:\n{}",
        agent.log()
    );
    std::thread::sleep(HOLD);
    let reported = reports();
    assert!(
        reported.len() <= 2,
        "accept errors reported {} times within {HOLD:?}:\n{}",
        reported.len(),
        reported.join("\n")
    );
    assert!(reported[0].contains("failed accept(s)"), "{}", reported[0]);

    // Descriptors freed: the agent serves again.
    drop(held);
    assert!(
        wait_until(Duration::from_secs(30), || post_empty(http).as_deref()
            == Some("HTTP/1.1 200 OK")),
        "the agent does not serve after the descriptors are back; its log:\n{}",
        agent.log()
    );
}
