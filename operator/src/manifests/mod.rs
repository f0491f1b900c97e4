//! Reading Vigil manifests: files and directories of multi-document YAML become a validated
//! [`Inventory`], or a list of problems, one per line, each naming the file, the object as
//! `Kind/namespace/name` and the field path.
//!
//! Validation runs the same checks the API server would (types and unknown fields through serde,
//! the CRD schema's ranges and patterns, its CEL rules through kube's CEL evaluator) and then the
//! checks that span objects (`appRef` targets, receiver names, duplicates). Nothing is rendered
//! unless every object passes.
//!
//! OpenSLO `openslo/v1` `SLO` documents are read too, converted to Vigil `SLO`s first (see
//! [`openslo`]).

mod depth;
pub mod openslo;
mod references;
mod schema;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use kube::core::cel::Validator;
use kube::CustomResourceExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use vigil_crds::{AlertPolicy, DashboardView, MonitoredApp, Slo};

use crate::render::Inventory;

/// One thing wrong with the input, printed as one line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The file the object came from.
    pub file: PathBuf,
    /// `Kind/namespace/name`, when the object could be identified.
    pub object: Option<String>,
    /// Field path such as `spec.rules[0].for`, when the problem is in one field.
    pub field: Option<String>,
    /// What is wrong, in lower case.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(object) = &self.object {
            write!(f, ": {object}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What loading produced.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The Vigil resources, sorted by namespace and name.
    pub inventory: Inventory,
    /// Objects of other kinds (Secrets, Deployments…) that were read and left alone, as
    /// `Kind/namespace/name`.
    pub skipped: Vec<String>,
    /// The file each Vigil object came from, keyed by `Kind/namespace/name`.
    pub origins: BTreeMap<String, PathBuf>,
}

/// Reads every path (files, or directories searched recursively for `.yaml`, `.yml` and
/// `.json`) and validates what it finds.
pub fn load(paths: &[PathBuf]) -> Result<Loaded, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files, &mut problems);
    }
    let mut loaded = Loaded::default();
    for file in &files {
        match std::fs::read_to_string(file) {
            Ok(text) => load_text(file, &text, &mut loaded, &mut problems),
            Err(e) => problems.push(file_problem(file, format!("cannot read file: {e}"))),
        }
    }
    if files.is_empty() && problems.is_empty() {
        problems.push(Problem {
            file: paths.first().cloned().unwrap_or_default(),
            object: None,
            field: None,
            message: "no .yaml, .yml or .json files found".into(),
        });
    }
    problems.extend(references::check(&loaded));
    if problems.is_empty() {
        loaded.inventory = loaded.inventory.sorted();
        Ok(loaded)
    } else {
        problems.sort();
        problems.dedup();
        Err(problems)
    }
}

/// Validates one object on its own, as the `/validate` admission webhook does: the same type,
/// schema, CEL and in-object checks as [`load`] (so `vigil-operator check` and the API server
/// reject the same mistakes with the same messages), without the checks that need other objects.
/// An `appRef` naming a `MonitoredApp` that does not exist yet is not an error here: applying
/// a folder must work in any order, and the resource's status reports the missing app.
/// Returns every problem found (none: valid); the problems' `file` is empty.
pub fn check_object(object: &Json) -> Vec<Problem> {
    let mut problems = Vec::new();
    let value = match serde_yaml::to_value(object) {
        Ok(value) => value,
        Err(e) => {
            problems.push(file_problem(
                Path::new(""),
                format!("cannot read object: {e}"),
            ));
            return problems;
        }
    };
    let mut loaded = Loaded::default();
    load_document(Path::new(""), 0, value, &mut loaded, &mut problems);
    problems.extend(references::check_with(&loaded, false));
    problems
}

/// The checks that span objects (`appRef` and `apps` targets, receiver and rule names,
/// escalation steps, selectors, regexes, scrape timing) for objects read from a cluster, where
/// the API server has already applied the schema and CEL rules. `inventory` holds the objects
/// to check together with the objects they refer to; problems name no file.
pub fn check_references(inventory: &Inventory) -> Vec<Problem> {
    let loaded = Loaded {
        inventory: inventory.clone(),
        ..Loaded::default()
    };
    references::check(&loaded)
}

/// Parses manifests from text as if read from `file`; used by [`load`] and by tests.
/// Documents nested deeper than a bound are rejected before parsing (see [`depth`]): the
/// parser's cost grows with the square of the nesting.
pub fn load_text(file: &Path, text: &str, loaded: &mut Loaded, problems: &mut Vec<Problem>) {
    if let Err(e) = depth::check(text) {
        problems.push(file_problem(file, e.to_string()));
        return;
    }
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        match Yaml::deserialize(document) {
            Ok(Yaml::Null) => {}
            Ok(value) => load_document(file, index, value, loaded, problems),
            Err(e) => {
                // A syntax error ends the stream: later documents cannot be located reliably.
                problems.push(file_problem(file, format!("invalid YAML: {e}")));
                return;
            }
        }
    }
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>, problems: &mut Vec<Problem>) {
    if path.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => {
                return problems.push(file_problem(path, format!("cannot list directory: {e}")))
            }
        };
        let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        children.sort();
        for child in children {
            let is_manifest = child
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
            if child.is_dir() || is_manifest {
                collect_files(&child, out, problems);
            }
        }
    } else if path.is_file() {
        out.push(path.to_path_buf());
    } else {
        problems.push(file_problem(path, "no such file or directory".into()));
    }
}

fn file_problem(file: &Path, message: String) -> Problem {
    Problem {
        file: file.to_path_buf(),
        object: None,
        field: None,
        message,
    }
}

/// Top-level keys a Kubernetes object may have.
const TOP_LEVEL: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];

fn load_document(
    file: &Path,
    index: usize,
    value: Yaml,
    loaded: &mut Loaded,
    problems: &mut Vec<Problem>,
) {
    let text = |key: &str| value.get(key).and_then(Yaml::as_str).map(str::to_owned);
    let kind = text("kind");
    let metadata = value.get("metadata");
    let name = metadata.and_then(|m| m.get("name")).and_then(Yaml::as_str);
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Yaml::as_str)
        .unwrap_or("default");
    let object = format!(
        "{}/{}/{}",
        kind.as_deref().unwrap_or("<no kind>"),
        namespace,
        name.unwrap_or("<no name>")
    );
    let mut problem = |field: Option<&str>, message: String| {
        problems.push(Problem {
            file: file.to_path_buf(),
            object: Some(object.clone()),
            field: field.map(str::to_owned),
            message,
        })
    };
    let Some(api_version) = text("apiVersion") else {
        return problem(
            Some("apiVersion"),
            format!("document {} has no apiVersion", index + 1),
        );
    };
    let Some(kind) = kind else {
        return problem(Some("kind"), format!("document {} has no kind", index + 1));
    };
    if api_version == openslo::API_VERSION {
        if kind != "SLO" {
            // Services, SLIs, alert policies: not read on their own (an SLO's indicator must be
            // inline), left alone like any other object.
            loaded.skipped.push(object);
            return;
        }
        match openslo::to_vigil(&value) {
            Ok(converted) => return load_document(file, index, converted, loaded, problems),
            Err(found) => {
                for (field, message) in found {
                    problem(Some(&field), format!("OpenSLO: {message}"));
                }
                return;
            }
        }
    }
    if !api_version.starts_with(&format!("{}/", vigil_crds::GROUP)) {
        loaded.skipped.push(object);
        return;
    }
    if api_version != vigil_crds::API_VERSION {
        return problem(
            Some("apiVersion"),
            format!(
                "unsupported apiVersion {api_version:?}; this version of Vigil reads {}",
                vigil_crds::API_VERSION
            ),
        );
    }
    if name.is_none() {
        return problem(
            Some("metadata.name"),
            "missing required field `name`".into(),
        );
    }
    let unknown: Vec<&str> = value
        .as_mapping()
        .map(|map| {
            map.keys()
                .filter_map(Yaml::as_str)
                .filter(|k| !TOP_LEVEL.contains(k))
                .collect()
        })
        .unwrap_or_default();
    if !unknown.is_empty() {
        for key in unknown {
            problem(Some(key), format!("unknown field `{key}`, expected one of apiVersion, kind, metadata, spec, status"));
        }
        return;
    }
    let before = problems.len();
    match kind.as_str() {
        "MonitoredApp" => typed::<MonitoredApp>(file, &object, value, problems)
            .map(|o| loaded.inventory.apps.push(o)),
        "AlertPolicy" => typed::<AlertPolicy>(file, &object, value, problems)
            .map(|o| loaded.inventory.policies.push(o)),
        "SLO" => {
            typed::<Slo>(file, &object, value, problems).map(|o| loaded.inventory.slos.push(o))
        }
        "DashboardView" => typed::<DashboardView>(file, &object, value, problems)
            .map(|o| loaded.inventory.views.push(o)),
        other => {
            problems.push(Problem {
                file: file.to_path_buf(),
                object: Some(object.clone()),
                field: Some("kind".into()),
                message: format!("unknown kind {other:?}; expected MonitoredApp, AlertPolicy, SLO or DashboardView"),
            });
            None
        }
    };
    if problems.len() == before {
        if let Some(previous) = loaded.origins.insert(object.clone(), file.to_path_buf()) {
            problems.push(Problem {
                file: file.to_path_buf(),
                object: Some(object),
                field: Some("metadata.name".into()),
                message: format!(
                    "duplicate object: already defined in {}",
                    previous.display()
                ),
            });
        }
    }
}

/// Deserialises one object with field paths in errors, then checks it against its CRD schema
/// (ranges, lengths, patterns) and CEL rules, as the API server would.
fn typed<K>(file: &Path, object: &str, value: Yaml, problems: &mut Vec<Problem>) -> Option<K>
where
    K: DeserializeOwned + Serialize + CustomResourceExt,
{
    let mut found: Vec<(String, String)> = Vec::new();
    let mut push = |field: String, message: String| {
        problems.push(Problem {
            file: file.to_path_buf(),
            object: Some(object.to_owned()),
            field: (!field.is_empty() && field != ".").then_some(field),
            message,
        })
    };
    let typed: K = match serde_path_to_error::deserialize(value) {
        Ok(typed) => typed,
        Err(e) => {
            push(e.path().to_string(), e.inner().to_string());
            return None;
        }
    };
    let json = match serde_json::to_value(&typed) {
        Ok(json) => json,
        Err(e) => {
            push(String::new(), format!("cannot re-encode object: {e}"));
            return None;
        }
    };
    let crd = K::crd();
    let Some(schema) = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
    else {
        push(
            String::new(),
            "internal error: the CRD has no schema".into(),
        );
        return None;
    };
    let schema = serde_json::to_value(schema).unwrap_or(Json::Null);
    found.extend(schema::check(&schema, &json));
    if let Err(errors) = Validator::new().validate(&schema, &json, None) {
        found.extend(
            errors
                .into_vec()
                .into_iter()
                .map(|e| (e.field_path.trim_start_matches('.').to_owned(), e.message)),
        );
    }
    let valid = found.is_empty();
    for (field, message) in found {
        push(field, message);
    }
    valid.then_some(typed)
}
