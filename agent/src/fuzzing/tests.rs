//! Every fuzz property over real inputs: the repository's fixtures and typical requests. With
//! `VIGIL_FUZZ_SEEDS=<dir>` set, the inputs made here are also written to `<dir>/<target>/` as
//! seeds for `scripts/fuzz.sh` (the inputs that are not plain fixture files: protobuf requests,
//! buffer layouts, selector bytes).
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "fuzz properties and their tests: a failed property must panic, with its message"
)]

use std::path::{Path, PathBuf};

use super::*;
use crate::batch::Batch;
use crate::sinks::test_support::{counter_batch, log_record, logs_batch, traces_batch};

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt" || e == "jsonl"))
        .filter(|p| !p.ends_with("SOURCE.txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// Runs `property` on `input` and, when `VIGIL_FUZZ_SEEDS` is set, keeps it as a seed.
fn seed(target: &str, name: &str, input: &[u8], property: fn(&[u8])) {
    property(input);
    if let Some(dir) = std::env::var_os("VIGIL_FUZZ_SEEDS") {
        let dir = Path::new(&dir).join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), input).unwrap();
    }
}

fn with_selector(selector: u8, bytes: &[u8]) -> Vec<u8> {
    let mut input = vec![selector];
    input.extend_from_slice(bytes);
    input
}

#[test]
fn scrape_fixtures_hold() {
    for file in fixtures("node_exporter") {
        scrape(&std::fs::read(&file).unwrap());
    }
    seed(
        "scrape",
        "openmetrics",
        b"# TYPE a counter\n# HELP a \"x\\n\"\na_total{b=\"c\\\"d\"} 1 1.5\na_created 2\n# EOF\n",
        scrape,
    );
    // Found by the fuzzer: a name cached from line 2 and run into `#` on line 4 is refused as
    // the parser refuses it (an invalid name), not read as the cached series.
    seed(
        "scrape",
        "name-run-into-eof.txt",
        b"# T# TYPEea ta ced 25\na_created 2\n#ea ta ced 25\na_created# EOF\n",
        scrape,
    );
    // A page whose first half ends inside a character.
    seed(
        "scrape",
        "half-inside-a-character.txt",
        "\u{447}\u{447}\u{447}\n".as_bytes(),
        scrape,
    );
}

#[test]
fn log_lines_hold() {
    let cri = b"2024-01-02T03:04:05.123456789Z stdout P part one \n2024-01-02T03:04:05.2Z stderr F {\"level\":\"error\",\"msg\":\"boom\"}\n2024-01-02T03:04:05.3Z stdout F and two\n";
    let docker = b"{\"log\":\"level=warn msg=\\\"slow\\\" took=3s\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-02T03:04:05.1Z\"}\n{\"log\":\"part\",\"stream\":\"stderr\"}\n{\"log\":\"end\\n\",\"stream\":\"stderr\"}\n";
    let plain = b"ERROR something failed\r\nts=2024-01-02T03:04:05Z level=info msg=ok\n";
    for selector in [0u8, 1, 6, 255] {
        seed(
            "logs",
            &format!("cri-{selector}"),
            &with_selector(selector, cri),
            logs,
        );
        seed(
            "logs",
            &format!("docker-{selector}"),
            &with_selector(selector, docker),
            logs,
        );
        seed(
            "logs",
            &format!("plain-{selector}"),
            &with_selector(selector, plain),
            logs,
        );
    }
}

#[test]
fn stack_traces_hold() {
    for file in fixtures("stacktraces")
        .into_iter()
        .chain(fixtures("stacktraces-defects4j"))
    {
        let text = std::fs::read(&file).unwrap();
        for selector in [0u8, 0x3f, 0x80, 0xff] {
            join_and_analyse(&with_selector(selector, &text));
        }
    }
}

#[test]
fn redaction_prescans_hold() {
    let lines: [&[u8]; 8] = [
        b"card 4111 1111 1111 1111 and 4111-1111-1111-1111 and 4111111111111111",
        b"iban GB82 WEST 1234 5698 7654 32 or DE89370400440532013000",
        b"mail jane.doe+x@example.co.uk, <a@b.io>",
        b"call +44 20 7946 0958 or 020 7946 0958 or 555-0100",
        b"Authorization: Bearer abc.DEF-123_456 bearer=xyz",
        b"jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        b"2024-01-02T03:04:05Z took 1234567890123ms v1.2.3 10.0.0.1",
        b"",
    ];
    for (i, line) in lines.iter().enumerate() {
        seed("redact", &format!("line-{i}"), line, redact);
    }
}

fn otlp_batches() -> Vec<(&'static str, Batch)> {
    vec![
        ("traces", traces_batch("GET /checkout")),
        (
            "metrics",
            counter_batch("orders_total", 3.0, 1_700_000_000_000_000_000),
        ),
        (
            "logs",
            logs_batch(
                &[("service.name", "checkout"), ("k8s.pod.name", "other")],
                vec![log_record(
                    1,
                    "card 4111 1111 1111 1111",
                    "error",
                    &[("a", "b")],
                )],
            ),
        ),
    ]
}

#[test]
fn otlp_requests_hold() {
    for (i, (name, batch)) in otlp_batches().into_iter().enumerate() {
        let selector = i as u8;
        let protobuf = &batch.encode()[1..];
        seed(
            "otlp_grpc",
            name,
            &with_selector(selector, protobuf),
            otlp_grpc,
        );
        seed(
            "otlp_http",
            &format!("{name}-protobuf"),
            &with_selector(selector, protobuf),
            otlp_http,
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, protobuf).unwrap();
        let gzipped = gz.finish().unwrap();
        seed(
            "otlp_http",
            &format!("{name}-gzip"),
            &with_selector(selector | 0x40, &gzipped),
            otlp_http,
        );
        let json = match &batch {
            Batch::Traces(r) => serde_json::to_vec(r),
            Batch::Metrics(r) => serde_json::to_vec(r),
            Batch::Logs(r) => serde_json::to_vec(r),
            Batch::Samples(_) => unreachable!(),
        }
        .unwrap();
        seed(
            "otlp_http",
            &format!("{name}-json"),
            &with_selector(selector | 0x80, &json),
            otlp_http,
        );
    }
}

#[test]
fn buffer_layouts_hold() {
    // Records written by the buffer, undamaged: every one comes back in order.
    seed(
        "buffer_recovery",
        "records",
        b"\x01first\nsecond\n\nthird",
        buffer_recovery,
    );
    // The same, with bytes flipped in the segment header, a frame header and a payload.
    seed(
        "buffer_recovery",
        "damaged",
        b"\x01first\nsecond\nthird\xff\x02\x00\x10\x30\x00\x01\x40\x00\x80",
        buffer_recovery,
    );
    // Files the buffer never wrote.
    seed(
        "buffer_recovery",
        "garbage",
        b"\x00not a segment at all",
        buffer_recovery,
    );
    seed(
        "buffer_recovery",
        "garbage-ack",
        b"\x02\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x05",
        buffer_recovery,
    );
}
