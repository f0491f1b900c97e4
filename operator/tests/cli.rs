//! The `vigil-operator` command as users run it: `crd`, `check` and `render`, including what
//! happens to the output directory when the input is invalid.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step must fail the test with its message"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vigil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil-operator"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("vigil-operator runs")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `crd` prints exactly the committed CRDs.
#[test]
fn crd_prints_the_committed_crds() {
    let out = vigil(&["crd"]);
    assert!(out.status.success());
    let committed =
        std::fs::read_to_string(repo_root().join("crds/vigil-crds.yaml")).expect("committed CRDs");
    assert!(
        text(&out.stdout) == committed,
        "crds/vigil-crds.yaml is stale: run scripts/generate.sh"
    );
}

/// `render` writes the documented layout and lists what it produced.
#[test]
fn render_writes_the_documented_layout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("out");
    let out = vigil(&[
        "render",
        "-f",
        "examples/banking",
        "-o",
        dir.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for path in [
        "prometheus/prometheus.yml",
        "prometheus/rules/banking-mobile-api-crashes.yml",
        "prometheus/rules/banking-slo-mobile-api-availability.yml",
        "alertmanager/alertmanager.yml",
        "grafana/dashboards/banking-mobile-support.json",
        "agent/banking-mobile-api.yaml",
        "kubernetes/banking-configmap-vigil-agent-mobile-api.yaml",
    ] {
        assert!(dir.join(path).is_file(), "{path} missing");
        assert!(
            text(&out.stdout).contains(path),
            "{path} not listed in the summary"
        );
    }
}

/// `render` output is readable by all and writable by its owner only, even under umask 000:
/// every file 0644, every directory (the output directory too) 0755.
#[test]
fn render_output_is_not_world_writable() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("out");
    let out = Command::new("sh")
        .args(["-c", "umask 000 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_vigil-operator"))
        .args(["render", "-f", "examples/banking", "-o"])
        .arg(&dir)
        .current_dir(repo_root())
        .output()
        .expect("vigil-operator runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut pending = vec![dir];
    let mut files = 0;
    while let Some(path) = pending.pop() {
        let meta = std::fs::metadata(&path).expect("metadata");
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o755, "{} is {mode:o}", path.display());
            for entry in std::fs::read_dir(&path).expect("read_dir") {
                pending.push(entry.expect("entry").path());
            }
        } else {
            assert_eq!(mode, 0o644, "{} is {mode:o}", path.display());
            files += 1;
        }
    }
    assert!(files > 5, "only {files} files rendered");
}

/// Invalid input: non-zero exit, one line per problem naming file, object and field, and the
/// previous content of the output directory left exactly as it was.
#[test]
fn invalid_input_leaves_output_untouched() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("out");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("previous.txt"), "keep me").expect("write");
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: vigil.dev/v1alpha1\nkind: SLO\nmetadata: {name: checkout, namespace: shop}\nspec:\n  appRef: {name: shop}\n  sli: {availability: {}}\n  objective: 100.5\n---\napiVersion: vigil.dev/v1alpha1\nkind: AlertPolicy\nmetadata: {name: crashes, namespace: shop}\nspec:\n  appRef: {name: shop}\n  rules: [{name: ShopCrash, for: soon, crashRate: {}}]\n---\napiVersion: vigil.dev/v1alpha1\nkind: DashboardView\nmetadata: {name: support, namespace: shop}\nspec: {apps: [shop], audience: support}\n",
    )
    .expect("write");
    let out = vigil(&[
        "render",
        "-f",
        bad.to_str().expect("utf-8"),
        "-o",
        dir.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let file = bad.display().to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{file}: AlertPolicy/shop/crashes: spec.rules[0].for: invalid duration \"soon\": expected a Prometheus duration such as 30s, 5m, 1h30m or 30d").as_str(),
            format!("{file}: DashboardView/shop/support: spec.apps[0]: no MonitoredApp \"shop\" in namespace \"shop\"; create it or fix the name").as_str(),
            format!("{file}: SLO/shop/checkout: spec.objective: objective is a percentage strictly between 0 and 100, such as 99.9").as_str(),
            "3 problem(s); nothing was written",
        ]
    );
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(entries, ["previous.txt"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("previous.txt")).expect("read"),
        "keep me"
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "staging directories left behind: {leftovers:?}"
    );
}

/// Rendering again replaces the previous output completely (no stale files survive).
#[test]
fn render_replaces_previous_output() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("out");
    std::fs::create_dir_all(dir.join("grafana/dashboards")).expect("mkdir");
    std::fs::write(dir.join("grafana/dashboards/stale.json"), "{}").expect("write");
    let out = vigil(&[
        "render",
        "-f",
        "examples/infrastructure",
        "-o",
        dir.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!dir.join("grafana/dashboards/stale.json").exists());
    assert!(dir
        .join("grafana/dashboards/core-infra-core-infra-support.json")
        .is_file());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers, ["out"], "staging directories left behind");
}

/// `check` parses PromQL for real: an expression that balances its brackets and quotes but
/// ends in a stray word is refused, naming the file, the object, the field and the word.
#[test]
fn check_refuses_promql_that_does_not_parse() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {name: shop, namespace: shop}\nspec:\n  selector: {matchLabels: {app: shop}}\n---\napiVersion: vigil.dev/v1alpha1\nkind: AlertPolicy\nmetadata: {name: errors, namespace: shop}\nspec:\n  appRef: {name: shop}\n  rules:\n    - {name: ShopCrash, crashRate: {}}\n    - {name: ShopDown, targetDown: {}}\n    - {name: ShopErrors, promql: {expr: \"sum(rate(errors_total[5m])) > bogus bogus\"}}\n  audiences: [{audience: engineering, receivers: [{name: oncall, email: {to: oncall@shop.example}}]}]\n",
    )
    .expect("write");
    let out = vigil(&["check", "-f", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.lines().next().unwrap_or_default(),
        format!(
            "{}: AlertPolicy/shop/errors: spec.rules[2].promql.expr: unexpected identifier \"bogus\" at character 37",
            bad.display()
        ),
        "{stderr}"
    );
}

/// `render --alertmanager-base-config` merges Vigil's routes into the platform's file: its SMTP
/// relay and root receiver stay, Vigil's receivers are added, and no relay is made up.
#[test]
fn render_merges_into_the_base_alertmanager_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().join("base.yml");
    std::fs::write(
        &base,
        "global: {smtp_smarthost: 'mail.platform.example:587', smtp_from: alerts@platform.example}\nroute: {receiver: platform-oncall}\nreceivers: [{name: platform-oncall, email_configs: [{to: oncall@platform.example}]}]\n",
    )
    .expect("write");
    let dir = tmp.path().join("out");
    let out = vigil(&[
        "render",
        "-f",
        "examples/banking",
        "-o",
        dir.to_str().expect("utf-8"),
        "--alertmanager-base-config",
        base.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let am = std::fs::read_to_string(dir.join("alertmanager/alertmanager.yml")).expect("read");
    assert!(
        am.contains("smtp_smarthost: mail.platform.example:587"),
        "{am}"
    );
    assert!(am.contains("receiver: platform-oncall"), "{am}");
    assert!(
        am.contains("name: banking/mobile-api-crashes/support-desk"),
        "{am}"
    );
    assert!(!am.contains("localhost:25"), "{am}");
    assert!(
        !text(&out.stderr).contains("no SMTP relay"),
        "{}",
        text(&out.stderr)
    );

    // Without a base file nothing is made up, and the missing relay is pointed out.
    let standalone = vigil(&[
        "render",
        "-f",
        "examples/banking",
        "-o",
        dir.to_str().expect("utf-8"),
    ]);
    assert!(standalone.status.success(), "{}", text(&standalone.stderr));
    assert!(
        text(&standalone.stderr)
            .contains("e-mail receivers but no SMTP relay; pass --alertmanager-base-config"),
        "{}",
        text(&standalone.stderr)
    );
    let am = std::fs::read_to_string(dir.join("alertmanager/alertmanager.yml")).expect("read");
    assert!(!am.contains("smtp_smarthost"), "{am}");

    let missing = vigil(&[
        "render",
        "-f",
        "examples/banking",
        "-o",
        dir.to_str().expect("utf-8"),
        "--alertmanager-base-config",
        "no-such-base.yml",
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr)
            .contains("cannot read the base Alertmanager configuration no-such-base.yml"),
        "{}",
        text(&missing.stderr)
    );
}
