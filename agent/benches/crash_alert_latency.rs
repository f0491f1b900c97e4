//! Crash → page latency through the whole chain (see `tests/support/alert_chain.rs`): the real
//! agent, Prometheus and Alertmanager running the rendered banking example. Each of
//! `VIGIL_CRASHES` (default 60) crashes has a fingerprint of its own, so each pages; the time
//! from the crash lines being written to the PagerDuty page at the local receiver is measured,
//! and p50 / p99 / max printed. Needs prometheus and prometheus-alertmanager
//! (scripts/install-test-tools.sh).
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "benchmark: a failed setup step must stop it with its message"
)]

#[path = "../tests/support/alert_chain.rs"]
mod alert_chain;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use alert_chain::{percentile, Chain};

fn main() {
    let crashes: usize = std::env::var("VIGIL_CRASHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let mut chain = Chain::start(["1h", "2h"]);
    chain.add_pod("mobile-api-7f9c-a", "17.2");
    let mut latencies = Vec::with_capacity(crashes);
    for i in 0..crashes {
        let message = format!("ledger {i} closed");
        let written = chain.crash(
            "mobile-api-7f9c-a",
            &format!("com.bank.mobile.ledger.Ledger{i}Exception"),
            &format!("post{i}"),
            &message,
        );
        let page = chain
            .wait_for(written, Duration::from_secs(60), |n| {
                n.channel == "pagerduty" && n.body.contains(&format!("Ledger{i}Exception"))
            })
            .unwrap_or_else(|| panic!("crash {i} was not paged within 60 s{}", chain.logs()));
        latencies.push(page.at - written);
        // Crashes arrive at random phases of the scrape and evaluation cycles.
        std::thread::sleep(Duration::from_millis(700 + (i as u64 * 377) % 1300));
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "crash line written → PagerDuty page, {} crashes: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (min {:.0} ms)",
        latencies.len(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(*latencies.last().unwrap()),
        ms(latencies[0]),
    );
}
