//! Scrape parsing throughput: the real node_exporter page
//! (`../shared/data/prometheus/node_exporter/e2e-output.txt`, 368 KiB, 3 027 samples) parsed
//! again and again, alone and followed by what a scrape does with it (remote-write series with
//! identity labels, 0.0.4 re-rendering). Also redaction throughput on clean and dirty log text.
//!
//! Prints MiB/s and samples/s on one core. Run with
//! `cargo bench -p vigil-agent --bench scrape_parse`. Figures only, no assertions.

use std::hint::black_box;
use std::time::{Duration, Instant};

use vigil_agent::processors::redact::Redactor;
use vigil_agent::sources::scrape::parse::{parse, Format};
use vigil_agent::sources::scrape::render::{append_series, render_text};
use vigil_crds::agent_config::RedactionConfig;
use vigil_crds::monitored_app::Detector;

const PAGE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/prometheus/node_exporter/e2e-output.txt"
);

/// Runs `work` for at least `min` and returns (iterations, elapsed).
fn measure(min: Duration, mut work: impl FnMut()) -> (u64, Duration) {
    // Warm up caches and the allocator.
    for _ in 0..5 {
        work();
    }
    let start = Instant::now();
    let mut iterations = 0;
    while start.elapsed() < min {
        work();
        iterations += 1;
    }
    (iterations, start.elapsed())
}

fn report(
    case: &str,
    bytes_per_iteration: usize,
    items_per_iteration: usize,
    run: (u64, Duration),
) {
    let (iterations, elapsed) = run;
    let seconds = elapsed.as_secs_f64();
    let mib = bytes_per_iteration as f64 * iterations as f64 / (1024.0 * 1024.0);
    let items = items_per_iteration as f64 * iterations as f64;
    println!(
        "{case:<44} {:>9.1} MiB/s {:>12.0} items/s  ({iterations} runs in {seconds:.2} s)",
        mib / seconds,
        items / seconds,
    );
}

fn main() {
    let page = match std::fs::read_to_string(PAGE) {
        Ok(page) => page,
        Err(e) => {
            eprintln!("cannot read {PAGE}: {e}");
            std::process::exit(1);
        }
    };
    let samples = match parse(&page, Format::PrometheusText) {
        Ok(exposition) => exposition.sample_count(),
        Err(e) => {
            eprintln!("{PAGE}: {e}");
            std::process::exit(1);
        }
    };
    let min = Duration::from_secs(3);
    println!("page: {} bytes, {samples} samples", page.len());

    report(
        "parse (text 0.0.4)",
        page.len(),
        samples,
        measure(min, || {
            let _ = black_box(parse(black_box(&page), Format::PrometheusText));
        }),
    );

    let identity = [
        ("namespace", "shop"),
        ("app", "checkout"),
        ("pod", "checkout-7d9f8c6b5-x2x9q"),
        ("version", "17.2.0"),
    ];
    let mut series = Vec::new();
    let mut text = String::new();
    report(
        "parse + remote-write series + 0.0.4 text",
        page.len(),
        samples,
        measure(min, || {
            if let Ok(exposition) = parse(black_box(&page), Format::PrometheusText) {
                series.clear();
                text.clear();
                append_series(&exposition, &identity, 1_700_000_000_000, &mut series);
                render_text(&exposition, &identity, &mut text);
                black_box((&series, &text));
            }
        }),
    );

    redaction(min);
}

/// Redaction over ~4 MiB of log lines: ordinary lines, and lines of which one in four
/// carries a secret.
fn redaction(min: Duration) {
    let redactor = match Redactor::new(&RedactionConfig {
        detectors: Detector::all(),
        patterns: Vec::new(),
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let clean: Vec<String> = (0..32_000u64)
        .map(|n| {
            format!(
                "2024-05-01 12:{:02}:{:02}.{:03} INFO [http-nio-8080-exec-{}] c.e.shop.OrderService - \
                 GET /api/orders/{} completed status=200 in {} ms (items={})",
                (n / 60_000) % 60,
                (n / 1000) % 60,
                n % 1000,
                n % 16,
                n * 7919 % 100_000,
                n % 250,
                n % 9
            )
        })
        .collect();
    let secrets = [
        "customer jane.doe@example.com",
        "card 4111 1111 1111 1111",
        "Authorization: Bearer abc123.DEF456-ghi789",
        "phone +44 20 7946 0958",
    ];
    let dirty: Vec<String> = clean
        .iter()
        .enumerate()
        .map(|(i, line)| {
            if i % 4 == 0 {
                format!("{line} {}", secrets[(i / 4) % secrets.len()])
            } else {
                line.clone()
            }
        })
        .collect();
    for (case, lines) in [
        ("redact clean lines", &clean),
        ("redact lines, 1 in 4 dirty", &dirty),
    ] {
        let bytes: usize = lines.iter().map(|l| l.len()).sum();
        report(
            case,
            bytes,
            lines.len(),
            measure(min, || {
                for line in lines {
                    black_box(redactor.redact(black_box(line)));
                }
            }),
        );
    }
}
