//! Test support: runs the real `promtool` against rendered rule files. Used by the alert and
//! SLO renderer tests and reusable by any test that wants `promtool check rules` or
//! `promtool test rules` on Vigil's output (the examples, the offline `render` command).
//!
//! The tool is looked up on `PATH`, then in `/usr/bin`, then in `<repo>/.tools/bin`. When it
//! cannot be found the helpers panic with a message telling how to install it: a missing tool
//! fails the test, it never skips it.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::rules::RuleFile;

/// Finds a test tool (`promtool`, `amtool`, `helm`, …) on `PATH`, then `/usr/bin`, then
/// `<repo>/.tools/bin`; panics with the install hint when it is nowhere.
pub(crate) fn tool(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let repo_tools = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.tools/bin")
        .join(name);
    on_path
        .into_iter()
        .chain([Path::new("/usr/bin").join(name), repo_tools])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found on PATH, in /usr/bin or in .tools/bin: run scripts/install-test-tools.sh")
        })
}

/// Serialises a rule file exactly as the offline renderer writes it.
pub(crate) fn rule_file_yaml(file: &RuleFile) -> String {
    serde_yaml::to_string(file).expect("a rule file always serialises")
}

/// Runs `promtool check rules` on `file` and panics with promtool's output unless it passes.
pub(crate) fn check_rules(file: &RuleFile) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("rules.yaml");
    let yaml = rule_file_yaml(file);
    std::fs::write(&path, &yaml).expect("write rules");
    let out = Command::new(tool("promtool"))
        .arg("check")
        .arg("rules")
        .arg(&path)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check rules failed:\n{}\n{}\n--- rules ---\n{yaml}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

/// Writes `files` as `rules-<i>.yaml` next to a unit-test file whose body is `tests_yaml`
/// (the `tests:` list and `evaluation_interval`; `rule_files:` is filled in here), runs
/// `promtool test rules` and returns whether it passed together with its combined output.
pub(crate) fn run_rule_tests(files: &[&RuleFile], tests_yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut names = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let name = format!("rules-{i}.yaml");
        std::fs::write(dir.path().join(&name), rule_file_yaml(file)).expect("write rules");
        names.push(name);
    }
    let header = format!(
        "rule_files:\n{}",
        names
            .iter()
            .map(|n| format!("  - {n}\n"))
            .collect::<String>()
    );
    let test_path = dir.path().join("test.yaml");
    std::fs::write(&test_path, format!("{header}{tests_yaml}")).expect("write test");
    let out = Command::new(tool("promtool"))
        .current_dir(dir.path())
        .arg("test")
        .arg("rules")
        .arg("test.yaml")
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Like [`run_rule_tests`], but panics with promtool's output and the rendered rules unless
/// every test case passes.
pub(crate) fn test_rules(files: &[&RuleFile], tests_yaml: &str) {
    let (ok, text) = run_rule_tests(files, tests_yaml);
    if !ok {
        let rules: String = files
            .iter()
            .map(|f| rule_file_yaml(f))
            .collect::<Vec<_>>()
            .join("---\n");
        panic!("promtool test rules failed:\n{text}\n--- tests ---\n{tests_yaml}\n--- rules ---\n{rules}");
    }
}
