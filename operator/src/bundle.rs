//! The output of `vigil-operator render`: every artefact the renderers produce for an
//! inventory, laid out as files, and written to a directory all at once or not at all.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use kube::ResourceExt;
use serde::Serialize;

use crate::render::alertmanager::AlertmanagerVersion;
use crate::render::outputs::Outputs;
use crate::render::{
    agent_config, alertmanager, alerts, dashboards, expressions, namespace_of, scrape, slo,
    Inventory,
};

/// Address of the Alertmanager the rendered `prometheus.yml` sends alerts to.
pub const ALERTMANAGER_TARGET: &str = "localhost:9093";

/// Namespace of the operator (the README's `helm install` namespace), whose release, restart
/// and acknowledgement series the rendered `prometheus.yml` scrapes.
pub const OPERATOR_NAMESPACE: &str = "vigil-system";

/// Rendered files, keyed by their path relative to the output directory.
#[derive(Debug, Default, PartialEq)]
pub struct Bundle {
    pub files: BTreeMap<PathBuf, Vec<u8>>,
    /// Resources left out because an expression rendered for them does not parse, each as
    /// `Kind/namespace/name: what is wrong`; everything else is rendered.
    pub skipped: Vec<String>,
}

/// Why rendering failed (an encoder error; renderers themselves cannot fail).
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot encode {path} as YAML")]
    Yaml {
        path: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("cannot encode {path} as JSON")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot merge Vigil's routes into the base Alertmanager configuration")]
    BaseConfig(#[source] alertmanager::BaseConfigError),
}

impl Bundle {
    fn yaml<T: Serialize>(&mut self, path: String, value: &T) -> Result<(), BundleError> {
        let text = crate::yaml::to_string(value).map_err(|source| BundleError::Yaml {
            path: path.clone(),
            source,
        })?;
        self.files.insert(path.into(), text.into_bytes());
        Ok(())
    }

    fn json<T: Serialize>(&mut self, path: String, value: &T) -> Result<(), BundleError> {
        let mut text = serde_json::to_string_pretty(value).map_err(|source| BundleError::Json {
            path: path.clone(),
            source,
        })?;
        text.push('\n');
        self.files.insert(path.into(), text.into_bytes());
        Ok(())
    }

    /// Paths of the files, in order.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.keys().map(PathBuf::as_path)
    }
}

/// The complete `prometheus.yml`: scrape configs, rule files and the Alertmanager target.
#[derive(Debug, Serialize)]
struct PrometheusConfig {
    global: PrometheusGlobal,
    rule_files: Vec<String>,
    alerting: serde_json::Value,
    scrape_configs: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct PrometheusGlobal {
    scrape_interval: &'static str,
    evaluation_interval: &'static str,
}

/// Choices that depend on the target environment rather than on the manifests.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The Alertmanager release the configuration is for.
    pub alertmanager: AlertmanagerVersion,
    /// Labels, annotations, Grafana selector and folder of the generated objects, and the
    /// severities of SLO alerts.
    pub outputs: Outputs,
    /// Name of the cluster (`--cluster-name`): the agents' `cluster` label and
    /// `k8s.cluster.name` attribute, and the `cluster` label of every generated alert.
    pub cluster: Option<String>,
    /// The platform's own `alertmanager.yml` (its text), into which Vigil's routes and
    /// receivers are merged; it brings the SMTP relay, root receiver and templates. `None`:
    /// a standalone file with a no-op root receiver and no SMTP settings.
    pub alertmanager_base: Option<String>,
}

/// Renders every artefact for `inv`.
pub fn render(inv: &Inventory, options: Options) -> Result<Bundle, BundleError> {
    let mut out = Bundle::default();
    let mut k8s: Vec<(String, serde_json::Value)> = Vec::new();
    let mut push_k8s = |mut value: serde_json::Value| {
        options.outputs.decorate(&mut value);
        let kind = value["kind"].as_str().unwrap_or("object").to_lowercase();
        let ns = value["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned();
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or("unnamed")
            .to_owned();
        k8s.push((format!("kubernetes/{ns}-{kind}-{name}.yaml"), value));
    };

    for app in &inv.apps {
        let (ns, name) = (namespace_of(app), app.name_any());
        let config = agent_config::agent_config(app, options.cluster.as_deref());
        out.files.insert(
            format!("agent/{ns}-{name}.yaml").into(),
            agent_config::agent_config_yaml(&config).into_bytes(),
        );
        push_k8s(to_json(&agent_config::agent_config_map(app, &config)));
        for monitor in scrape::pod_monitors(app) {
            push_k8s(monitor);
        }
    }

    // Every expression is parsed before anything is written: a resource with one that does
    // not parse is reported and left out (its routes too), and the others still render.
    let mut routed = inv.clone();
    let mut skipped = Vec::new();
    for policy in &inv.policies {
        let ns = namespace_of(policy);
        let Some(app) = inv.app(&ns, &policy.spec.app_ref.name) else {
            continue;
        };
        let file = alerts::alert_rules(policy, app).with_cluster(options.cluster.as_deref());
        if let Err(e) = expressions::check_rule_file(&file) {
            skipped.push(format!("AlertPolicy/{ns}/{}: {e}", policy.name_any()));
            routed
                .policies
                .retain(|p| (namespace_of(p), p.name_any()) != (ns.clone(), policy.name_any()));
            continue;
        }
        out.yaml(
            format!("prometheus/rules/{ns}-{}.yml", policy.name_any()),
            &file,
        )?;
        push_k8s(alerts::prometheus_rule(policy, &file));
    }

    for objective in &inv.slos {
        let ns = namespace_of(objective);
        let Some(app) = inv.app(&ns, &objective.spec.app_ref.name) else {
            continue;
        };
        let file = slo::slo_rules_with(objective, app, &options.outputs.slo_severities)
            .with_cluster(options.cluster.as_deref());
        if let Err(e) = expressions::check_rule_file(&file) {
            skipped.push(format!("SLO/{ns}/{}: {e}", objective.name_any()));
            routed
                .slos
                .retain(|s| (namespace_of(s), s.name_any()) != (ns.clone(), objective.name_any()));
            continue;
        }
        out.yaml(
            format!("prometheus/rules/{ns}-slo-{}.yml", objective.name_any()),
            &file,
        )?;
        push_k8s(slo::slo_prometheus_rule(objective, &file));
        let dashboard = dashboards::slo_dashboard(objective);
        let folder = dashboards::DEFAULT_FOLDER;
        out.json(
            format!("grafana/dashboards/{ns}-slo-{}.json", objective.name_any()),
            &dashboard,
        )?;
        let name = dashboards::dashboard_object_name(objective);
        push_k8s(to_json(&dashboards::dashboard_config_map(
            objective, name, &dashboard, folder,
        )));
        push_k8s(dashboards::grafana_dashboard_cr(
            objective, &dashboard, folder,
        ));
    }

    for view in &inv.views {
        let ns = namespace_of(view);
        let dashboard = dashboards::dashboard(view, inv);
        let folder = dashboards::folder_of(view);
        out.json(
            format!("grafana/dashboards/{ns}-{}.json", view.name_any()),
            &dashboard,
        )?;
        let name = dashboards::dashboard_object_name(view);
        push_k8s(to_json(&dashboards::dashboard_config_map(
            view, name, &dashboard, folder,
        )));
        push_k8s(dashboards::grafana_dashboard_cr(view, &dashboard, folder));
    }

    let am = alertmanager::alertmanager_config_for(&routed, options.alertmanager);
    let am_yaml = match &options.alertmanager_base {
        Some(base) => alertmanager::merge_into_base(&am, base).map_err(BundleError::BaseConfig)?,
        None => alertmanager::to_yaml(&am),
    };
    out.files
        .insert("alertmanager/alertmanager.yml".into(), am_yaml.into_bytes());
    for cr in alertmanager::alertmanager_config_crs(&routed) {
        push_k8s(cr);
    }

    let prometheus = PrometheusConfig {
        global: PrometheusGlobal {
            scrape_interval: "30s",
            evaluation_interval: "30s",
        },
        rule_files: vec!["rules/*.yml".to_owned()],
        alerting: serde_json::json!({
            "alertmanagers": [{ "static_configs": [{ "targets": [ALERTMANAGER_TARGET] }] }]
        }),
        scrape_configs: [
            scrape::operator_job(OPERATOR_NAMESPACE),
            scrape::analytics_job(OPERATOR_NAMESPACE),
        ]
        .into_iter()
        .chain(scrape::scrape_configs(inv))
        .collect(),
    };
    out.yaml("prometheus/prometheus.yml".to_owned(), &prometheus)?;

    for (path, value) in k8s {
        out.yaml(path, &value)?;
    }
    out.skipped = skipped;
    Ok(out)
}

/// A typed Kubernetes object as JSON, for the object list.
fn to_json<T: Serialize>(object: &T) -> serde_json::Value {
    // Kubernetes objects have string keys only, so encoding cannot fail.
    serde_json::to_value(object).unwrap_or(serde_json::Value::Null)
}

/// Mode of every rendered file: readable by all (Prometheus, Alertmanager and Grafana often run
/// as other users), writable by the owner only, whatever the umask.
const FILE_MODE: u32 = 0o644;
/// Mode of every rendered directory, the output directory included.
const DIR_MODE: u32 = 0o755;

/// Sets `path`'s permission bits to exactly `mode` (the umask only ever removes bits, and a
/// umask of 000 would leave files world-writable).
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Name of the file `render` leaves in every directory it writes: its presence is how a later
/// `render` knows the directory is its own to replace.
pub const MARKER: &str = ".vigil-render";

/// What `dir` holds before a render writes to it.
#[derive(Debug, PartialEq, Eq)]
enum Existing {
    /// Absent, or an empty directory.
    Nothing,
    /// A directory an earlier `render` wrote (it holds the marker).
    Rendered,
    /// A non-empty directory `render` did not write.
    Foreign,
}

fn existing(dir: &Path) -> io::Result<Existing> {
    let mut entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(e) => return Err(e),
    };
    if entries.next().is_none() {
        Ok(Existing::Nothing)
    } else if dir.join(MARKER).is_file() {
        Ok(Existing::Rendered)
    } else {
        Ok(Existing::Foreign)
    }
}

/// Whether `dir` is the process's working directory (`-o .`), which cannot be swapped for
/// another directory under the user's shell.
fn is_working_directory(dir: &Path) -> bool {
    match (
        dir.canonicalize(),
        std::env::current_dir().and_then(|d| d.canonicalize()),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Writes the bundle to `dir`, replacing its previous content only once every file is written:
/// files go to a staging directory beside `dir`, which then takes `dir`'s place. Files get mode
/// 0644 and directories 0755, whatever the umask.
///
/// `dir` must be absent, empty, or a directory an earlier render wrote (it holds [`MARKER`]);
/// anything else is refused, so a mistyped `-o` never deletes a user's files, unless `force` is
/// set. The working directory (`-o .`) is emptied and filled in place rather than swapped.
pub fn write(bundle: &Bundle, dir: &Path, force: bool) -> io::Result<()> {
    let before = existing(dir)?;
    if before == Existing::Foreign && !force {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} is not empty and was not written by `vigil-operator render` (it has no {MARKER} \
                 file); choose a new or empty directory, or pass --force to replace its content",
                dir.display()
            ),
        ));
    }
    let in_place = is_working_directory(dir);
    let parent = if in_place {
        // Stage inside the directory itself, so the final moves stay on one file system.
        dir.to_path_buf()
    } else {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    };
    std::fs::create_dir_all(&parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".vigil-render-")
        .tempdir_in(&parent)?;
    set_mode(staging.path(), DIR_MODE)?;
    let marker = std::iter::once((
        Path::new(MARKER),
        &b"Written by `vigil-operator render`, which replaces this directory as a whole.\n"[..],
    ));
    let files = bundle
        .files
        .iter()
        .map(|(p, b)| (p.as_path(), b.as_slice()));
    for (path, bytes) in files.chain(marker) {
        let target = staging.path().join(path);
        if let Some(folder) = target.parent() {
            std::fs::create_dir_all(folder)?;
            // Every folder between the staging directory and the file, each set explicitly.
            let mut current = folder;
            while current != staging.path() {
                set_mode(current, DIR_MODE)?;
                match current.parent() {
                    Some(up) => current = up,
                    None => break,
                }
            }
        }
        std::fs::write(&target, bytes)?;
        set_mode(&target, FILE_MODE)?;
    }
    if in_place {
        return replace_in_place(staging, dir);
    }
    let staged = staging.keep();
    if dir.exists() {
        let old = tempfile::Builder::new()
            .prefix(".vigil-old-")
            .tempdir_in(&parent)?
            .keep();
        std::fs::rename(dir, old.join("out"))?;
        if let Err(e) = std::fs::rename(&staged, dir) {
            // Put the previous output back so the user is left with what they had.
            let _ = std::fs::rename(old.join("out"), dir);
            let _ = std::fs::remove_dir_all(&staged);
            return Err(e);
        }
        std::fs::remove_dir_all(old)?;
    } else {
        std::fs::rename(&staged, dir)?;
    }
    Ok(())
}

/// Empties `dir` (all but the staging directory) and moves the staged files into it.
fn replace_in_place(staging: tempfile::TempDir, dir: &Path) -> io::Result<()> {
    let staged = staging.path().to_path_buf();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // The staging directory is `dir`'s own child (tempfile makes its path absolute).
        if Some(entry.file_name().as_os_str()) == staged.file_name() {
            continue;
        }
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    for entry in std::fs::read_dir(&staged)? {
        let entry = entry?;
        std::fs::rename(entry.path(), dir.join(entry.file_name()))?;
    }
    set_mode(dir, DIR_MODE)?;
    // The staging directory, now empty, is removed when `staging` drops.
    drop(staging);
    Ok(())
}
