//! The examples' Grafana dashboards against Grafana's published dashboard schema: the
//! TypeScript types of the npm package `@grafana/schema` (it ships no JSON schema), checked by
//! the TypeScript compiler, both installed into `.tools/grafana-schema` by
//! `scripts/install-test-tools.sh`.
//!
//! What this does not model: Grafana's own migrations and the panel plugins' option types (the
//! schema types panel options and query targets as open records).
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step must fail the test with its message"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use vigil_tests::{example_dashboards as dashboards, repo_root, tool};

const EXAMPLES: [&str; 3] = ["banking", "infrastructure", "public-sector"];

/// Where `scripts/install-test-tools.sh` puts `@grafana/schema` and `typescript`.
fn schema_tools() -> (PathBuf, PathBuf) {
    let root = repo_root().join(".tools/grafana-schema/node_modules");
    let types = root.join("@grafana/schema/dist/types/index.d.ts");
    let tsc = root.join("typescript/bin/tsc");
    assert!(
        types.is_file() && tsc.is_file(),
        "@grafana/schema or typescript missing under {}: run scripts/install-test-tools.sh",
        root.display()
    );
    (types, tsc)
}

/// A TypeScript module that type-checks `dashboard` as a Grafana `Dashboard`.
///
/// The schema leaves two things to the data source plugin: the query type of an annotation
/// (`AnnotationQuery<TQuery>`) and the plugin's own annotation fields. Both are typed here as
/// the Prometheus data source reads them (`expr` and `interval` in `target`; `titleFormat`,
/// `textFormat`, `tagKeys`, `useValueForTime` beside it); everything else is the schema's own.
fn typed_module(types: &Path, dashboard: &Value) -> String {
    let import = types.with_extension("").with_extension("");
    format!(
        "import type {{ Dashboard, AnnotationQuery, DataQuery }} from '{}';\n\
         interface PrometheusQuery extends DataQuery {{ expr: string; interval?: string; }}\n\
         type PrometheusAnnotation = AnnotationQuery<PrometheusQuery> & {{\n  \
           titleFormat?: string; textFormat?: string; tagKeys?: string; useValueForTime?: boolean;\n\
         }};\n\
         type CheckedDashboard = Omit<Dashboard, 'annotations'> & {{\n  \
           annotations?: {{ list?: Array<AnnotationQuery | PrometheusAnnotation> }};\n\
         }};\n\
         export const dashboard: CheckedDashboard = {};\n",
        import.display(),
        serde_json::to_string_pretty(dashboard).expect("JSON")
    )
}

/// Runs `tsc --strict --noEmit` on one module per dashboard; the error text when it fails.
fn type_check(dashboards: &[(String, Value)]) -> Result<(), String> {
    let (types, tsc) = schema_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for (name, d) in dashboards {
        let path = dir
            .path()
            .join(format!("{}.ts", name.trim_end_matches(".json")));
        std::fs::write(&path, typed_module(&types, d)).expect("write module");
        files.push(path);
    }
    let out = Command::new(tool("node"))
        .arg(&tsc)
        .args([
            "--strict",
            "--noEmit",
            "--target",
            "es2020",
            "--moduleResolution",
            "node",
        ])
        .args(&files)
        .output()
        .expect("tsc runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Every dashboard of every example (views and SLOs) is a `Dashboard` of Grafana's published
/// schema: no unknown or legacy fields (such as an annotation's top-level `expr`), no missing
/// required ones (such as a variable's current `text` and `value`).
#[test]
fn every_example_dashboard_matches_grafanas_schema() {
    let all: Vec<(String, Value)> = EXAMPLES.iter().flat_map(|e| dashboards(e)).collect();
    assert!(
        all.len() >= 12,
        "expected every example's dashboards, got {}",
        all.len()
    );
    if let Err(errors) = type_check(&all) {
        panic!("rendered dashboards do not match @grafana/schema:\n{errors}");
    }
}

/// The schema check catches the two defects the renderer had: a release annotation with its
/// query in the legacy top-level `expr`, and a data source variable with an empty `current`.
#[test]
fn the_schema_check_rejects_legacy_annotations_and_empty_current_values() {
    let (name, good) = dashboards("banking")
        .into_iter()
        .next()
        .expect("a dashboard");
    let mut legacy_annotation = good.clone();
    let releases = &mut legacy_annotation["annotations"]["list"][1];
    let target = releases["target"].take();
    let releases = releases.as_object_mut().expect("annotation object");
    releases.remove("target");
    releases.insert("expr".into(), target["expr"].clone());
    let errors =
        type_check(&[(name.clone(), legacy_annotation)]).expect_err("legacy expr accepted");
    assert!(errors.contains(r#""expr"' does not exist"#), "{errors}");

    let mut empty_current = good;
    empty_current["templating"]["list"][0]["current"] = serde_json::json!({});
    let errors = type_check(&[(name, empty_current)]).expect_err("empty current accepted");
    assert!(
        errors.contains("missing the following properties") && errors.contains("text"),
        "{errors}"
    );
}
