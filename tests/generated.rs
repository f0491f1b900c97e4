//! Generated artefacts stay in sync with the code, and the Helm chart passes the real `helm`.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step must fail the test with its message"
)]

use vigil_tests::{repo_root, run_ok};

const REGENERATE: &str = "run scripts/generate.sh and commit the result";

/// The committed CRDs in crds/ and in the chart equal what `vigil-operator crd` prints.
#[test]
fn committed_crds_match_the_types() {
    let expected = vigil_crds::crds_yaml().expect("CRDs encode");
    for path in ["crds/vigil-crds.yaml", "charts/vigil/crds/vigil-crds.yaml"] {
        let committed = std::fs::read_to_string(repo_root().join(path)).unwrap_or_default();
        assert!(
            committed == expected,
            "{path} is out of date with the CRD types: {REGENERATE}"
        );
    }
}

/// Every CRD has the group, version, short name, status subresource and printer columns users
/// rely on, and a description on every spec field.
#[test]
fn crds_are_complete() {
    let crds = vigil_crds::crds();
    let short: Vec<String> = crds
        .iter()
        .flat_map(|c| c.spec.names.short_names.clone().unwrap_or_default())
        .collect();
    assert_eq!(short, ["mapp", "ap", "slo", "dv"]);
    for crd in &crds {
        assert_eq!(crd.spec.group, "vigil.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{} lacks status",
            crd.spec.names.kind
        );
        assert!(version
            .additional_printer_columns
            .as_ref()
            .is_some_and(|c| c.len() >= 3));
        let schema = serde_json::to_value(
            version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref()),
        )
        .expect("schema");
        let mut undocumented = Vec::new();
        undocumented_fields(&schema["properties"]["spec"], "spec", &mut undocumented);
        assert!(
            undocumented.is_empty(),
            "{}: fields without a description: {undocumented:?}",
            crd.spec.names.kind
        );
    }
}

fn undocumented_fields(schema: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        for (key, child) in props {
            let child_path = format!("{path}.{key}");
            if child.get("description").is_none() {
                out.push(child_path.clone());
            }
            undocumented_fields(child, &child_path, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undocumented_fields(items, &format!("{path}[]"), out);
    }
}

/// `helm lint` passes and `helm template` renders the four CRDs.
#[test]
fn helm_chart_lints_and_templates() {
    let root = repo_root();
    run_ok("helm", &["lint", "--strict", "charts/vigil"], &root);
    let out = run_ok(
        "helm",
        &[
            "template",
            "vigil",
            "charts/vigil",
            "--include-crds",
            "--namespace",
            "vigil-system",
        ],
        &root,
    );
    let kinds: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| *l == "kind: CustomResourceDefinition")
        .collect();
    assert_eq!(kinds.len(), 4, "{}", out.stdout);
    for name in [
        "monitoredapps.vigil.dev",
        "alertpolicies.vigil.dev",
        "slos.vigil.dev",
        "dashboardviews.vigil.dev",
    ] {
        assert!(
            out.stdout.contains(&format!("name: {name}")),
            "{name} missing from helm template output"
        );
    }
}
