//! Scrape parsing throughput: the real node_exporter page
//! (`tests/fixtures/node_exporter/e2e-output.txt`, 368 KiB, 3 027 samples) parsed
//! again and again, alone and followed by what a scrape does with it (remote-write series with
//! identity labels, 0.0.4 re-rendering), and the remote-write record through the series cache,
//! warm and cold. Also redaction throughput on clean and dirty log text.
//!
//! Prints MiB/s and items (samples, log lines) per second of one core's CPU time, and MiB/s of
//! wall time. Run with
//! `cargo bench -p vigil-agent --bench scrape_parse`. Figures only, no assertions.

use std::hint::black_box;
use std::time::{Duration, Instant};

use vigil_agent::processors::redact::Redactor;
use vigil_agent::sources::scrape::cache::SeriesCache;
use vigil_agent::sources::scrape::parse::{parse, Format};
use vigil_agent::sources::scrape::render::{append_series, render_text};
use vigil_crds::agent_config::RedactionConfig;
use vigil_crds::monitored_app::Detector;

const PAGE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/node_exporter/e2e-output.txt"
);

/// CPU time this thread has run, from `/proc/thread-self/schedstat` (nanoseconds), so the
/// figures hold on a busy machine too.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// One measured case: iterations, wall time, CPU time.
struct Run {
    iterations: u64,
    wall: Duration,
    cpu: Option<Duration>,
}

/// Runs `work` for at least `min` of wall time.
fn measure(min: Duration, mut work: impl FnMut()) -> Run {
    // Warm up caches and the allocator.
    for _ in 0..5 {
        work();
    }
    let cpu_start = thread_cpu();
    let start = Instant::now();
    let mut iterations = 0;
    while start.elapsed() < min {
        work();
        iterations += 1;
    }
    let wall = start.elapsed();
    let cpu = thread_cpu()
        .zip(cpu_start)
        .map(|(end, start)| end.saturating_sub(start));
    Run {
        iterations,
        wall,
        cpu,
    }
}

fn report(case: &str, bytes_per_iteration: usize, items_per_iteration: usize, run: Run) {
    let mib = bytes_per_iteration as f64 * run.iterations as f64 / (1024.0 * 1024.0);
    let items = items_per_iteration as f64 * run.iterations as f64;
    // Per CPU-second when known (one core's throughput), else per wall second.
    let seconds = run
        .cpu
        .filter(|c| !c.is_zero())
        .unwrap_or(run.wall)
        .as_secs_f64();
    println!(
        "{case:<42} {:>8.1} MiB/s {:>11.0} items/s per core  ({:.1} MiB/s wall, {} runs)",
        mib / seconds,
        items / seconds,
        mib / run.wall.as_secs_f64(),
        run.iterations,
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

    // What a scrape does for remote write: the series cache, warm from the previous scrape
    // (every series known), and cold (every series read and encoded afresh).
    let mut cache = SeriesCache::default();
    let mut record = Vec::new();
    report(
        "remote-write record, series cache warm",
        page.len(),
        samples,
        measure(min, || {
            record.clear();
            let _ = black_box(cache.encode(
                black_box(&page),
                Format::PrometheusText,
                &identity,
                1_700_000_000_000,
                &mut record,
            ));
        }),
    );
    report(
        "remote-write record, series cache cold",
        page.len(),
        samples,
        measure(min, || {
            record.clear();
            let _ = black_box(SeriesCache::default().encode(
                black_box(&page),
                Format::PrometheusText,
                &identity,
                1_700_000_000_000,
                &mut record,
            ));
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
