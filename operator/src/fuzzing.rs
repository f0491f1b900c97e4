//! The properties the fuzz targets in `fuzz/` check, one function per target, each taking the
//! fuzzer's bytes and panicking when a property fails. Built with the `fuzzing` feature (for
//! `fuzz/`) and under test, where the tests run every function over the committed fixtures.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "fuzz properties and their tests: a failed property must panic, with its message"
)]

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use serde_json::{json, Value};
use vigil_crds::MonitoredApp;

use crate::manifests::{self, Loaded};
use crate::render::inject::pod_security;
use crate::webhook::{mutate, validate, Webhook};

/// The manifest loader behind `vigil-operator check` and `render`: every problem names the file
/// it was read from and is one line.
pub fn manifests(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let file = Path::new("fuzz.yaml");
    let mut loaded = Loaded::default();
    let mut problems = Vec::new();
    manifests::load_text(file, &text, &mut loaded, &mut problems);
    problems.extend(manifests::check_references(&loaded.inventory));
    for problem in &problems {
        assert!(
            problem.file == file || problem.file.as_os_str().is_empty(),
            "{problem}"
        );
    }
}

/// `/mutate-pods`: the body is an `AdmissionReview`. Whatever it holds, the answer is a
/// review; a patch in it applies to the request's pod (RFC 6902), and the patched pod, reviewed
/// again, gets no further patch. The first byte picks native sidecars or not.
pub fn mutate_pods(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let webhook = webhook(selector & 1 == 1);
    let Ok(answer) = mutate::review(&webhook, body) else {
        return;
    };
    let response: Value = match serde_json::from_slice(&answer) {
        Ok(response) => response,
        Err(e) => panic!("the answer is not JSON: {e}"),
    };
    let Some(patch) = patch_of(&response) else {
        return;
    };
    // A body the typed review reads but a JSON value does not (invalid UTF-8 in a field the
    // review skips) is nothing the API server sends: nothing to apply the patch to.
    let Ok(mut review) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let mut pod = review["request"]["object"].clone();
    if let Err(e) = json_patch::patch(&mut pod, &patch) {
        panic!("the patch does not apply to the request's pod: {e}\npatch: {patch:?}");
    }
    if let Err(e) = serde_json::from_value::<Pod>(pod.clone()) {
        panic!("the patched pod does not decode: {e}");
    }
    review["request"]["object"] = pod;
    let Ok(body) = serde_json::to_vec(&review) else {
        return;
    };
    let again = match mutate::review(&webhook, &body) {
        Ok(again) => again,
        Err(e) => panic!("the review of the patched pod is malformed: {e}"),
    };
    let again: Value = match serde_json::from_slice(&again) {
        Ok(again) => again,
        Err(e) => panic!("the second answer is not JSON: {e}"),
    };
    if let Some(second) = patch_of(&again) {
        panic!("the patched pod is patched again: {second:?}");
    }
}

/// `/validate`: whatever the body, the answer is a review that allows or denies, and a denial
/// says why.
pub fn validate(data: &[u8]) {
    let Ok(answer) = validate::review(data) else {
        return;
    };
    let response: Value = match serde_json::from_slice(&answer) {
        Ok(response) => response,
        Err(e) => panic!("the answer is not JSON: {e}"),
    };
    let Some(allowed) = response["response"]["allowed"].as_bool() else {
        panic!("the answer neither allows nor denies: {response}");
    };
    if !allowed {
        let message = response["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(!message.is_empty(), "a denial without a reason: {response}");
    }
}

fn patch_of(response: &Value) -> Option<json_patch::Patch> {
    let encoded = response["response"]["patch"].as_str()?;
    let bytes: k8s_openapi::ByteString = match serde_json::from_value(json!(encoded)) {
        Ok(bytes) => bytes,
        Err(e) => panic!("the patch is not base64: {e}"),
    };
    match serde_json::from_slice(&bytes.0) {
        Ok(patch) => Some(patch),
        Err(e) => panic!("the patch is not a JSON Patch: {e}"),
    }
}

/// The webhook with one app in `retail` selecting `app: checkout`, and two namespaces, one of
/// them enforcing Pod Security `restricted`.
fn webhook(native_sidecar: bool) -> Webhook {
    let mut apps: Writer<MonitoredApp> = Writer::default();
    let app = serde_json::from_value::<MonitoredApp>(json!({
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "MonitoredApp",
        "metadata": {"name": "checkout", "namespace": "retail", "uid": "uid-checkout"},
        "spec": {
            "selector": {"matchLabels": {"app": "checkout"}},
            "logs": {"containerLogs": true, "format": "json"},
            "traces": {"enabled": true},
            "exporters": {"otlp": {"endpoint": "http://otel-collector.observability:4317"}}
        }
    }));
    if let Ok(app) = app {
        apps.apply_watcher_event(&watcher::Event::Apply(app));
    }
    Webhook {
        apps: apps.as_reader(),
        namespaces: namespaces(&[("retail", None), ("locked", Some("restricted"))]),
        agent_image: "ghcr.io/vigil-dev/vigil-agent:0.1.0".into(),
        native_sidecar,
    }
}

fn namespaces(levels: &[(&str, Option<&str>)]) -> Store<PartialObjectMeta<Namespace>> {
    let mut writer: Writer<PartialObjectMeta<Namespace>> = Writer::default();
    for (name, level) in levels {
        let labels =
            level.map(|l| BTreeMap::from([(pod_security::ENFORCE_LABEL.to_owned(), l.to_owned())]));
        writer.apply_watcher_event(&watcher::Event::Apply(PartialObjectMeta::<Namespace> {
            types: None,
            metadata: ObjectMeta {
                name: Some((*name).to_owned()),
                labels,
                ..ObjectMeta::default()
            },
            _phantom: std::marker::PhantomData,
        }));
    }
    writer.as_reader()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn files(dir: &str, extensions: &[&str]) -> Vec<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut out = Vec::new();
        let mut dirs = vec![root.join(dir)];
        while let Some(dir) = dirs.pop() {
            for entry in
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path
                    .extension()
                    .is_some_and(|e| extensions.iter().any(|x| e == *x))
                {
                    out.push(path);
                }
            }
        }
        out.sort();
        assert!(!out.is_empty(), "no files in {dir}");
        out
    }

    /// Runs `property` on `input` and, when `VIGIL_FUZZ_SEEDS` is set, keeps it as a seed of
    /// `target` (see scripts/fuzz.sh).
    fn seed(target: &str, name: &str, input: &[u8], property: fn(&[u8])) {
        property(input);
        if let Some(dir) = std::env::var_os("VIGIL_FUZZ_SEEDS") {
            let dir = Path::new(&dir).join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), input).unwrap();
        }
    }

    /// Every object of the examples, as the API server would send it to `/validate` (created,
    /// and updated with another spec), holds.
    #[test]
    fn validate_holds_for_the_examples() {
        for file in files("examples", &["yaml", "yml"]) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (i, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
                let object: serde_json::Value = serde::Deserialize::deserialize(document).unwrap();
                if object["apiVersion"]
                    .as_str()
                    .is_none_or(|v| !v.starts_with("vigil.dev/"))
                {
                    continue;
                }
                let kind = object["kind"].as_str().unwrap_or_default().to_owned();
                for operation in ["CREATE", "UPDATE"] {
                    let review = serde_json::json!({
                        "apiVersion": "admission.k8s.io/v1",
                        "kind": "AdmissionReview",
                        "request": {
                            "uid": "0df28fbd-5f5f-11e8-bc74-36e6bb280816",
                            "kind": {"group": "vigil.dev", "version": "v1alpha1", "kind": kind},
                            "resource": {"group": "vigil.dev", "version": "v1alpha1", "resource": "x"},
                            "namespace": "retail",
                            "operation": operation,
                            "userInfo": {"username": "admin"},
                            "object": object,
                            "oldObject": if operation == "UPDATE" {
                                serde_json::json!({"apiVersion": object["apiVersion"], "kind": kind, "metadata": object["metadata"], "spec": {}})
                            } else {
                                serde_json::Value::Null
                            },
                        }
                    });
                    let name = format!(
                        "{}-{i}-{operation}",
                        file.file_stem().unwrap().to_string_lossy()
                    );
                    seed(
                        "validate",
                        &name,
                        &serde_json::to_vec(&review).unwrap(),
                        super::validate,
                    );
                }
            }
        }
    }

    /// The examples (valid) and each cut short or nested deep (invalid) hold.
    #[test]
    fn manifests_hold_for_the_examples() {
        for file in files("examples", &["yaml", "yml"]) {
            let text = std::fs::read(&file).unwrap();
            super::manifests(&text);
            super::manifests(&text[..text.len() / 2]);
        }
        super::manifests(format!("a: {}", "[{".repeat(5000)).as_bytes());
    }

    /// The review fixtures, each with and without native sidecars, with and without
    /// containers, and in a namespace that enforces `restricted`.
    #[test]
    fn webhook_reviews_hold() {
        for file in files("operator/src/webhook/fixtures", &["json"]) {
            let review: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
            let mut variants = vec![review.clone()];
            let mut bare = review.clone();
            if let Some(spec) = bare["request"]["object"]["spec"].as_object_mut() {
                spec.remove("containers");
            }
            variants.push(bare);
            let mut locked = review.clone();
            locked["request"]["namespace"] = "locked".into();
            variants.push(locked);
            for variant in variants {
                let body = serde_json::to_vec(&variant).unwrap();
                for selector in [0u8, 1] {
                    let mut input = vec![selector];
                    input.extend_from_slice(&body);
                    super::mutate_pods(&input);
                }
                super::validate(&body);
            }
        }
    }
}
