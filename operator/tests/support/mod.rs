//! Shared helpers of the operator's live tests: example manifests, waiting with a deadline,
//! and reading conditions.
#![allow(
    dead_code,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: each test binary uses part of it, and a failed step fails the test"
)]

pub mod fake_api;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// How long a live test waits for the operator to reach a state before failing.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Every object of the multi-document YAML file `path` (relative to the repository root).
pub fn manifests(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo_root().join(path))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    yaml_documents(&text)
}

/// The objects of a multi-document YAML text (empty documents skipped).
pub fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)
                .expect("valid YAML document");
            serde_json::to_value(value).expect("YAML maps to JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// Polls `probe` every 100 ms until it returns `Some`, failing the test with `what` and the
/// last observation when [`DEADLINE`] passes.
pub async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match probe() {
            Ok(found) => return found,
            Err(last) if tokio::time::Instant::now() > deadline => {
                panic!("timed out after {DEADLINE:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The condition `type_` of `object`'s status, if any.
pub fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Whether `object` reports on its current generation with a `Ready` condition, which it
/// returns.
pub fn current_ready(object: &Value) -> Result<Value, String> {
    let generation = &object["metadata"]["generation"];
    if object["status"]["observedGeneration"] != *generation {
        return Err(format!(
            "observedGeneration {} != generation {generation}: {}",
            object["status"]["observedGeneration"], object["status"]
        ));
    }
    condition(object, "Ready")
        .cloned()
        .ok_or_else(|| format!("no Ready condition: {}", object["status"]))
}

/// Whether `child` has an owner reference to `owner` (by uid) and Vigil's managed-by label.
pub fn owned_by(child: &Value, owner: &Value) -> bool {
    let uid = &owner["metadata"]["uid"];
    child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "vigil"
        && child["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|refs| refs.iter().any(|r| r["uid"] == *uid))
}
