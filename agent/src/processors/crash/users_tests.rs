//! Users affected across pods: the register series of several simulated pods merged the way
//! the PromQL of `vigil_crds::crash_users` merges them, checked against the true distinct count
//! and against a real Prometheus engine (`promtool test rules`).

use std::collections::BTreeMap;
use std::process::Command;

use vigil_crds::crash_users::{
    users_affected_estimate, users_affected_promql, REGISTERS, REGISTER_METRIC, STANDARD_ERROR,
};

use super::hll::{add_to_user_registers, stable_hash, UserRegisters};
use super::*;
use crate::event::{LogEvent, Stream};

const TRACES: [&str; 3] = [
    "java.lang.IllegalStateException: cart empty\n\tat com.shop.Cart.pay(Cart.java:3)",
    "java.lang.NullPointerException\n\tat com.shop.Orders.get(Orders.java:9)",
    "panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:8 +0x1d",
];

fn pod(name: &str) -> Identity {
    Identity {
        namespace: "shop".into(),
        app: "checkout".into(),
        pod: name.into(),
        pod_uid: format!("uid-{name}"),
        node: "node-1".into(),
        version: "17.2".into(),
        cluster: String::new(),
    }
}

/// Crash events of `n` users spread over three pods: every user crashes in one pod, every
/// fourth in a second, every tenth in all three, over three fingerprints.
fn three_pods(n: usize, prefix: &str, now_ms: i64) -> Vec<CrashDetector> {
    let pods: Vec<CrashDetector> = ["a", "b", "c"]
        .iter()
        .map(|p| CrashDetector::new(&pod(p), Some("user".into())))
        .collect();
    for i in 0..n {
        let mut targets = vec![i % 3];
        if i % 4 == 0 {
            targets.push((i + 1) % 3);
        }
        if i % 10 == 0 {
            targets = vec![0, 1, 2];
        }
        for target in targets {
            let trace = TRACES[(i + target) % TRACES.len()];
            let mut event = LogEvent::line("app", Stream::Stderr, 1, trace);
            event.lines = trace.lines().count() as u32;
            event
                .attributes
                .push(("user".into(), format!("{prefix}-user-{i}")));
            pods[target].observe_at(&mut event, now_ms).unwrap();
        }
    }
    pods
}

/// The register series of one pod, read from its exposition as Prometheus would scrape it.
fn scraped_registers(detector: &CrashDetector, now_ms: i64) -> UserRegisters {
    let mut registers = [0u8; REGISTERS];
    let mut seen = 0;
    for line in detector.exposition_at(now_ms).lines() {
        let Some(rest) = line.strip_prefix(&format!("{REGISTER_METRIC}{{")) else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").unwrap();
        let index: usize = labels
            .split("register=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .parse()
            .unwrap();
        registers[index] = value.parse().unwrap();
        seen += 1;
    }
    assert_eq!(seen, REGISTERS);
    registers
}

/// `max by (register)` across pods.
fn merged(pods: &[UserRegisters]) -> UserRegisters {
    let mut out = [0u8; REGISTERS];
    for registers in pods {
        for (o, r) in out.iter_mut().zip(registers) {
            *o = (*o).max(*r);
        }
    }
    out
}

/// What rules summed before: the per-pod, per-fingerprint estimates.
fn summed_affected_users(pods: &[CrashDetector], now_ms: i64) -> f64 {
    pods.iter()
        .flat_map(|p| {
            p.exposition_at(now_ms)
                .lines()
                .filter(|l| l.starts_with("vigil_crash_affected_users{"))
                .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
                .collect::<Vec<_>>()
        })
        .sum::<f64>()
        + 0.0
}

/// N distinct users split over three pods with overlap, and over three fingerprints: the
/// registers scraped from each pod, merged with `max` and turned into an estimate by the
/// PromQL's formula, count each user once, within three standard errors (3 × 1.04/√64); the
/// old sum of per-pod, per-fingerprint estimates counts users several times.
#[test]
fn users_across_pods_are_counted_once() {
    let now = 1_700_000_000_000;
    for n in [0usize, 5, 60, 150, 400, 2000] {
        let pods = three_pods(n, "bound", now);
        let registers: Vec<UserRegisters> =
            pods.iter().map(|p| scraped_registers(p, now)).collect();
        let estimate = users_affected_estimate(&merged(&registers));
        let error = (estimate - n as f64).abs();
        let summed = summed_affected_users(&pods, now);
        println!("{n} users: estimate {estimate:.0}, summed per pod and fingerprint {summed}");
        assert!(
            error <= 3.0 * STANDARD_ERROR * n as f64 + 1.0,
            "{n} users, estimate {estimate}"
        );
        if n >= 60 {
            assert!(summed > 1.2 * n as f64, "the old sum over-counts: {summed}");
        }
    }
}

/// Over many independent sets of users, the merged estimate's relative error has the
/// standard error HyperLogLog promises for 64 registers (1.04/√64 ≈ 13 %), at sizes on both
/// sides of the small-range correction.
#[test]
fn merged_estimate_has_the_promised_standard_error() {
    for n in [100usize, 1000, 5000] {
        let trials = 100;
        let mut squared = 0.0;
        for trial in 0..trials {
            let mut pods = [[0u8; REGISTERS]; 3];
            for i in 0..n {
                let hash = stable_hash(&format!("trial-{trial}-user-{i}"));
                add_to_user_registers(&mut pods[i % 3], hash);
                if i % 4 == 0 {
                    add_to_user_registers(&mut pods[(i + 1) % 3], hash);
                }
            }
            let estimate = users_affected_estimate(&merged(&pods));
            squared += ((estimate - n as f64) / n as f64).powi(2);
        }
        let rms = (squared / trials as f64).sqrt();
        println!("{n} users: relative standard error {rms:.3} over {trials} trials");
        assert!(rms <= STANDARD_ERROR * 1.15, "{n} users: {rms}");
    }
}

/// The register series: 64 per pod whatever the number of fingerprints, only with a user
/// field; users of crashes older than an hour fall out, ordinary lines' users never count.
#[test]
fn register_series_cover_the_last_hour() {
    let t0 = 1_700_000_000_000;
    let minute = 60_000;
    let detector = CrashDetector::new(&pod("a"), Some("user".into()));
    let count = |now| users_affected_estimate(&scraped_registers(&detector, now));
    let crash = |i: usize, at: i64| {
        let mut event = LogEvent::line("app", Stream::Stderr, 1, TRACES[i]);
        event.lines = 3;
        event.attributes.push(("user".into(), format!("u{i}")));
        detector.observe_at(&mut event, at);
    };
    let mut ordinary = LogEvent::line("app", Stream::Stdout, 1, "GET /cart 200");
    ordinary.attributes.push(("user".into(), "browsing".into()));
    detector.observe_at(&mut ordinary, t0);
    // Crashes at 0, 30 and 60 minutes; the window is the current minute and the 59 before.
    crash(0, t0);
    assert_eq!(count(t0 + 29 * minute).round(), 1.0);
    crash(1, t0 + 30 * minute);
    assert_eq!(count(t0 + 59 * minute).round(), 2.0);
    crash(2, t0 + 60 * minute);
    assert_eq!(count(t0 + 60 * minute).round(), 2.0);
    assert_eq!(count(t0 + 90 * minute).round(), 1.0);
    assert_eq!(count(t0 + 120 * minute), 0.0);
    let text = detector.exposition_at(t0);
    assert_eq!(
        text.matches(&format!("{REGISTER_METRIC}{{")).count(),
        REGISTERS
    );
    assert!(text.contains(&format!(
        "{REGISTER_METRIC}{{namespace=\"shop\",app=\"checkout\",version=\"17.2\",register=\"63\"}}"
    )));
    let without_users = CrashDetector::new(&pod("a"), None);
    let mut event = LogEvent::line("app", Stream::Stderr, 1, TRACES[0]);
    event.lines = 2;
    without_users.observe_at(&mut event, t0);
    assert!(!without_users.exposition_at(t0).contains(REGISTER_METRIC));
}

/// The PromQL the rules use, run by Prometheus' own engine (`promtool test rules`) over the
/// register series of three pods (and of another app, which must not mix in), gives the
/// estimate computed in Rust — in the linear-counting range, above it, and with no user.
#[test]
fn promql_merges_the_pods_like_the_rust_estimate() {
    let now = 1_700_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let mut tests = String::new();
    for (case, n) in [0usize, 40, 3000].into_iter().enumerate() {
        let pods = three_pods(n, &format!("promql-{case}"), now);
        let mut series = BTreeMap::new();
        for (name, detector) in ["a", "b", "c"].iter().zip(&pods) {
            for (register, value) in scraped_registers(detector, now).iter().enumerate() {
                series.insert(
                    format!(
                        "{REGISTER_METRIC}{{namespace=\"shop\",app=\"checkout\",version=\"17.2\",\
                         pod=\"{name}\",register=\"{register}\"}}"
                    ),
                    *value,
                );
            }
        }
        // Another app's pod with every register high: must not change checkout's count.
        for register in 0..REGISTERS {
            series.insert(
                format!(
                    "{REGISTER_METRIC}{{namespace=\"shop\",app=\"search\",version=\"1\",\
                     pod=\"s\",register=\"{register}\"}}"
                ),
                20,
            );
        }
        let registers: Vec<UserRegisters> =
            pods.iter().map(|p| scraped_registers(p, now)).collect();
        let expected = users_affected_estimate(&merged(&registers)).round();
        let expr =
            users_affected_promql(r#"namespace="shop", app="checkout""#, &["namespace", "app"]);
        tests.push_str("  - interval: 1m\n    input_series:\n");
        for (name, value) in &series {
            tests.push_str(&format!(
                "      - series: '{name}'\n        values: '{value}x10'\n"
            ));
        }
        tests.push_str(&format!(
            "    promql_expr_test:\n      - expr: 'round({expr})'\n        eval_time: 5m\n        \
             exp_samples:\n          - labels: '{{namespace=\"shop\", app=\"checkout\"}}'\n            \
             value: {expected}\n"
        ));
    }
    let file = dir.path().join("users_test.yaml");
    std::fs::write(&file, format!("rule_files: []\ntests:\n{tests}")).unwrap();
    let output = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("promtool must be installed (scripts/install-test-tools.sh)");
    assert!(
        output.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
