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
    let args = [
        "render",
        "-f",
        "examples/infrastructure",
        "-o",
        dir.to_str().expect("utf-8"),
    ];
    let first = vigil(&args);
    assert!(first.status.success(), "{}", text(&first.stderr));
    std::fs::write(dir.join("grafana/dashboards/stale.json"), "{}").expect("write");
    let out = vigil(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!dir.join("grafana/dashboards/stale.json").exists());
    assert!(dir
        .join("grafana/dashboards/core-infra-core-infra-support.json")
        .is_file());
    assert_eq!(
        entries(tmp.path()),
        ["out"],
        "staging directories left behind"
    );
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A mistyped `-o` never deletes a user's files: a non-empty directory an earlier render did not
/// write is refused, naming it and the way out, and left exactly as it was; `--force` replaces it.
#[test]
fn render_refuses_a_directory_it_did_not_write() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("home");
    std::fs::create_dir_all(dir.join("notes")).expect("mkdir");
    std::fs::write(dir.join("notes/todo.txt"), "keep me").expect("write");
    let path = dir.to_str().expect("utf-8");
    let out = vigil(&["render", "-f", "examples/infrastructure", "-o", path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(path)
            && stderr.contains("was not written by")
            && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(entries(&dir), ["notes"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("notes/todo.txt")).expect("kept"),
        "keep me"
    );
    assert_eq!(
        entries(tmp.path()),
        ["home"],
        "staging directories left behind"
    );

    let forced = vigil(&[
        "render",
        "-f",
        "examples/infrastructure",
        "-o",
        path,
        "--force",
    ]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert!(!dir.join("notes").exists());
    assert!(dir.join("prometheus/prometheus.yml").is_file());
    assert!(dir.join(".vigil-render").is_file());
}

/// `-o .` renders into the working directory itself (first into an empty one, then again over
/// its own output), leaving no staging directories behind.
#[test]
fn render_into_the_working_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let examples = repo_root().join("examples/infrastructure");
    let examples = examples.to_str().expect("utf-8");
    for round in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_vigil-operator"))
            .args(["render", "-f", examples, "-o", "."])
            .current_dir(tmp.path())
            .output()
            .expect("vigil-operator runs");
        assert!(out.status.success(), "round {round}: {}", text(&out.stderr));
        assert_eq!(
            entries(tmp.path()),
            [
                ".vigil-render",
                "agent",
                "alertmanager",
                "grafana",
                "kubernetes",
                "prometheus"
            ],
            "round {round}"
        );
    }
}

/// The `vigil-operator` commands of the README's shell blocks, as a user on a fresh checkout
/// types them (in a scratch copy, so `crd > crds/vigil-crds.yaml` cannot touch the repository):
/// each succeeds, and `crd` prints exactly the committed CRDs.
#[test]
fn readme_operator_commands_work_as_written() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README");
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            text if in_sh => {
                if let Some(rest) = text.strip_prefix("cargo run -q -p vigil-operator -- ") {
                    // Drop a trailing `# comment`.
                    let rest = rest.split(" #").next().unwrap_or(rest).trim();
                    commands.push(rest.to_owned());
                }
            }
            _ => {}
        }
    }
    assert!(
        commands.len() >= 3,
        "README commands not found: {commands:?}"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(repo_root().join("examples"), tmp.path().join("examples"))
        .expect("symlink");
    std::fs::create_dir(tmp.path().join("crds")).expect("mkdir");
    // Twice: a second render over the first one's output must work as well.
    for round in 0..2 {
        for command in &commands {
            let (args, redirect) = match command.split_once(" > ") {
                Some((args, file)) => (args, Some(file.trim())),
                None => (command.as_str(), None),
            };
            let out = Command::new(env!("CARGO_BIN_EXE_vigil-operator"))
                .args(args.split_whitespace())
                .current_dir(tmp.path())
                .output()
                .expect("vigil-operator runs");
            assert!(
                out.status.success(),
                "round {round}: `{command}` failed: {}",
                text(&out.stderr)
            );
            if let Some(file) = redirect {
                std::fs::write(tmp.path().join(file), &out.stdout).expect("write");
            }
        }
    }
    assert!(tmp
        .path()
        .join("out/banking/prometheus/prometheus.yml")
        .is_file());
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("crds/vigil-crds.yaml")).expect("crd output"),
        std::fs::read_to_string(repo_root().join("crds/vigil-crds.yaml")).expect("committed")
    );
}

/// `check --prometheus-retention` warns about every SLO whose window is longer than Prometheus
/// keeps data (naming the object and field) and still succeeds; without the flag, or with a
/// long enough retention, nothing is said.
#[test]
fn check_warns_when_the_window_exceeds_the_retention() {
    let out = vigil(&[
        "check",
        "-f",
        "examples/banking",
        "--prometheus-retention",
        "15d",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warning: SLO/banking/")
            && stderr.contains(": spec.window: window 30d is longer than the 15d"),
        "{stderr}"
    );
    for quiet in [
        vec!["check", "-f", "examples/banking"],
        vec![
            "check",
            "-f",
            "examples/banking",
            "--prometheus-retention",
            "90d",
        ],
    ] {
        let out = vigil(&quiet);
        assert!(out.status.success());
        assert!(!text(&out.stderr).contains("warning"), "{quiet:?}");
    }
    let bad = vigil(&[
        "check",
        "-f",
        "examples/banking",
        "--prometheus-retention",
        "2 weeks",
    ]);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("--prometheus-retention"));
}

/// `render` reads OpenSLO `SLO` documents next to Vigil manifests, and the output flags put
/// their labels on the generated `PrometheusRule` and the chosen severities on its alerts.
#[test]
fn render_reads_openslo_and_applies_output_flags() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).expect("mkdir");
    std::fs::write(
        input.join("app.yaml"),
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {name: shop, namespace: retail}\nspec:\n  selector: {matchLabels: {app: shop}}\n---\napiVersion: vigil.dev/v1alpha1\nkind: AlertPolicy\nmetadata: {name: shop, namespace: retail}\nspec:\n  appRef: {name: shop}\n  rules:\n    - {name: ShopDown, severity: critical, audiences: [engineering], promql: {expr: 'up{job=\"shop\"} == 0'}}\n  audiences:\n    - {audience: engineering, receivers: [{name: oncall, email: {to: oncall@shop.example}}]}\n    - {audience: support, receivers: [{name: desk, email: {to: desk@shop.example}}]}\n",
    )
    .expect("write app");
    std::fs::copy(
        repo_root().join("operator/src/manifests/openslo/fixtures/ratio-good-total.yaml"),
        input.join("openslo.yaml"),
    )
    .expect("copy fixture");
    let dir = tmp.path().join("out");
    let out = vigil(&[
        "render",
        "-f",
        input.to_str().expect("utf-8"),
        "-o",
        dir.to_str().expect("utf-8"),
        "--prometheus-rule-label",
        "release=kube-prometheus-stack",
        "--slo-page-severity",
        "P1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rule: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            dir.join("kubernetes/retail-prometheusrule-vigil-slo-checkout-availability.yaml"),
        )
        .expect("PrometheusRule rendered"),
    )
    .expect("YAML");
    assert_eq!(
        rule["metadata"]["labels"]["release"].as_str(),
        Some("kube-prometheus-stack")
    );
    let text = serde_yaml::to_string(&rule["spec"]).expect("yaml");
    assert!(text.contains("severity: P1") && text.contains("vigil_slo_alert: page"));
    assert!(
        text.contains("team: payments"),
        "OpenSLO labels reach the series"
    );
    let bad = vigil(&[
        "render",
        "-f",
        input.to_str().expect("utf-8"),
        "-o",
        dir.to_str().expect("utf-8"),
        "--prometheus-rule-label",
        "not a label",
    ]);
    assert!(!bad.status.success());
}

/// `spec.generatedObjects` puts a resource's labels and annotations on every object generated
/// from it, winning over the output flags' on a clash while both apply; `check` refuses keys
/// and values the API server would refuse, and Vigil's own labels, naming the field.
#[test]
fn generated_objects_carry_each_resource_labels() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let extras = "  generatedObjects:\n    labels: {release: team-a}\n    annotations: {example.com/contact: shop team}\n";
    let manifests = format!(
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {{name: shop, namespace: retail}}\nspec:\n  selector: {{matchLabels: {{app: shop}}}}\n  metrics: {{port: 8080}}\n{extras}---\napiVersion: vigil.dev/v1alpha1\nkind: AlertPolicy\nmetadata: {{name: shop, namespace: retail}}\nspec:\n  appRef: {{name: shop}}\n  rules: [{{name: ShopDown, severity: critical, targetDown: {{}}}}]\n  audiences: [{{audience: engineering, receivers: [{{name: oncall, email: {{to: oncall@shop.example}}}}]}}]\n{extras}---\napiVersion: vigil.dev/v1alpha1\nkind: SLO\nmetadata: {{name: checkout, namespace: retail}}\nspec:\n  appRef: {{name: shop}}\n  sli: {{availability: {{}}}}\n  objective: 99.5\n  alerting: {{receivers: [{{name: desk, email: {{to: desk@shop.example}}}}]}}\n{extras}---\napiVersion: vigil.dev/v1alpha1\nkind: DashboardView\nmetadata: {{name: shop-eng, namespace: retail}}\nspec:\n  apps: [shop]\n  audience: engineering\n{extras}"
    );
    let input = tmp.path().join("in.yaml");
    std::fs::write(&input, &manifests).expect("write");
    let dir = tmp.path().join("out");
    let out = vigil(&[
        "render",
        "-f",
        input.to_str().expect("utf-8"),
        "-o",
        dir.to_str().expect("utf-8"),
        "--prometheus-rule-label",
        "release=platform",
        "--prometheus-rule-label",
        "tier=platform",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut kinds = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir.join("kubernetes")).expect("kubernetes/") {
        let path = entry.expect("entry").path();
        let object: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).expect("read")).expect("YAML");
        let metadata = &object["metadata"];
        let name = path.display();
        assert_eq!(
            metadata["labels"]["release"].as_str(),
            Some("team-a"),
            "{name}"
        );
        assert_eq!(
            metadata["annotations"]["example.com/contact"].as_str(),
            Some("shop team"),
            "{name}"
        );
        assert_eq!(
            metadata["labels"]["app.kubernetes.io/managed-by"].as_str(),
            Some("vigil"),
            "{name}"
        );
        if object["kind"] == "PrometheusRule" {
            assert_eq!(
                metadata["labels"]["tier"].as_str(),
                Some("platform"),
                "{name}"
            );
        }
        kinds.insert(object["kind"].as_str().expect("kind").to_owned());
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "AlertmanagerConfig",
            "ConfigMap",
            "GrafanaDashboard",
            "PodMonitor",
            "PrometheusRule"
        ]
    );

    let bad = manifests.replacen(
        "labels: {release: team-a}",
        "labels: {release: team a, vigil.dev/owner: mine, -x: y}",
        1,
    );
    std::fs::write(&input, bad).expect("write");
    let out = vigil(&["check", "-f", input.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let file = input.display();
    for line in [
        format!("{file}: MonitoredApp/retail/shop: spec.generatedObjects.labels.-x: \"-x\" is not a label key"),
        format!("{file}: MonitoredApp/retail/shop: spec.generatedObjects.labels.release: \"team a\" is not a label value"),
        format!("{file}: MonitoredApp/retail/shop: spec.generatedObjects.labels.vigil.dev/owner: \"vigil.dev/owner\" is set by Vigil"),
    ] {
        assert!(stderr.lines().any(|l| l.starts_with(&line)), "{line}\n{stderr}");
    }
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
