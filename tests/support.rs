//! Shared helpers for the end-to-end tests: locating the real tools (installed by
//! `scripts/install-test-tools.sh`) and running them with their output kept for the failure
//! message.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step must fail the test with its message"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Finds `name` on PATH, in /usr/bin, /usr/sbin or in the repository's `.tools/bin`. A missing
/// tool is a test failure, never a skip: the test command installs every tool.
pub fn tool(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let fallbacks = [
        PathBuf::from("/usr/bin").join(name),
        PathBuf::from("/usr/sbin").join(name),
        repo_root().join(".tools/bin").join(name),
    ];
    on_path
        .into_iter()
        .chain(fallbacks)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found: run scripts/install-test-tools.sh (the README's test command does)"))
}

/// The outcome of one tool run.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `tool args…` in `dir` and captures its output.
pub fn run(tool_name: &str, args: &[&str], dir: &Path) -> Run {
    let out = Command::new(tool(tool_name))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {tool_name}: {e}"));
    Run {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a tool and fails the test with its full output unless it succeeds.
pub fn run_ok(tool_name: &str, args: &[&str], dir: &Path) -> Run {
    let r = run(tool_name, args, dir);
    assert!(
        r.success,
        "{tool_name} {args:?} failed in {}\nstdout:\n{}\nstderr:\n{}",
        dir.display(),
        r.stdout,
        r.stderr
    );
    r
}

/// Renders `examples/<name>` the way the end-to-end tests check it ([`tested_options`]), failing the test with every problem when the example is invalid.
pub fn render_example(name: &str) -> vigil_operator::bundle::Bundle {
    use vigil_operator::bundle;
    let dir = repo_root().join("examples").join(name);
    let loaded = vigil_operator::manifests::load(&[dir]).unwrap_or_else(|problems| {
        panic!(
            "example {name} is invalid:\n{}",
            problems
                .iter()
                .map(|p| format!("  {p}\n"))
                .collect::<String>()
        )
    });
    bundle::render(&loaded.inventory, tested_options()).expect("example renders")
}

/// The cluster name the examples are rendered for.
pub const CLUSTER: &str = "eu-prod-1";

/// A platform's own `alertmanager.yml` that Vigil's routes are merged into: the SMTP relay
/// e-mail receivers need, a root receiver and a route of the platform's own.
pub const PLATFORM_BASE: &str = r#"
global:
  smtp_smarthost: mail.platform.example:587
  smtp_from: alerts@platform.example
route:
  receiver: platform-oncall
  routes:
    - receiver: platform-db
      matchers: ['team="db"']
receivers:
  - name: platform-oncall
    email_configs: [{to: oncall@platform.example}]
  - name: platform-db
    email_configs: [{to: db@platform.example}]
"#;

/// The Alertmanager on these machines is 0.25, so the configuration is rendered for it,
/// merged into the platform's base configuration; a cluster name is set, so the real tools
/// also check the rules and configs that carry it.
pub fn tested_options() -> vigil_operator::bundle::Options {
    vigil_operator::bundle::Options {
        alertmanager: vigil_operator::render::alertmanager::AlertmanagerVersion::V0_25,
        alertmanager_base: Some(PLATFORM_BASE.to_owned()),
        cluster: Some(CLUSTER.to_owned()),
        ..vigil_operator::bundle::Options::default()
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The rendered Grafana dashboards of `examples/<name>`: file name and JSON.
pub fn example_dashboards(example: &str) -> Vec<(String, serde_json::Value)> {
    render_example(example)
        .files
        .iter()
        .filter(|(p, _)| {
            p.starts_with("grafana/dashboards") && p.extension().is_some_and(|e| e == "json")
        })
        .map(|(p, bytes)| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, serde_json::from_slice(bytes).expect("dashboard JSON"))
        })
        .collect()
}
