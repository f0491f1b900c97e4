//! Merging Vigil's Alertmanager routes into the platform's own `alertmanager.yml` (the
//! `--alertmanager-base-config` file): the base keeps what only the platform knows — the SMTP
//! relay, its root receiver, its own routes and templates — and Vigil adds its namespace routes
//! and receivers.

use serde::Serialize;

use super::{AlertmanagerFile, Receiver, DEFAULT_RECEIVER};

/// Why a base `alertmanager.yml` cannot take Vigil's routes.
#[derive(Debug, thiserror::Error)]
pub enum BaseConfigError {
    #[error("the base Alertmanager configuration is not valid YAML")]
    Yaml(#[source] serde_yaml::Error),
    #[error("the base Alertmanager configuration must be a mapping, such as `route: {{receiver: team}}`")]
    NotAMapping,
    #[error("the base Alertmanager configuration's `{0}` must be a list")]
    NotAList(&'static str),
    #[error("the base Alertmanager configuration already has a receiver named {0:?}, which Vigil renders")]
    DuplicateReceiver(String),
}

/// Vigil's `file` merged into a user-provided base `alertmanager.yml` (`base`, as YAML): the
/// base keeps its `global` section (SMTP relay and sender), its root route and receiver,
/// templates, time intervals and inhibition rules; Vigil's namespace routes go first under the
/// base's root route (each with Vigil's grouping, so the base's root grouping does not change
/// Vigil's notifications), and its receivers and inhibition rules are added to the base's.
/// Alerts that Vigil did not generate match none of Vigil's routes and are routed by the base
/// as before. An empty base is the standalone file with its no-op root receiver.
pub fn merge_into_base(file: &AlertmanagerFile, base: &str) -> Result<String, BaseConfigError> {
    use serde_yaml::{Mapping, Value as Yaml};
    let base: Yaml = serde_yaml::from_str(base).map_err(BaseConfigError::Yaml)?;
    let mut base = match base {
        Yaml::Null => Mapping::new(),
        Yaml::Mapping(m) => m,
        _ => return Err(BaseConfigError::NotAMapping),
    };
    let mut namespace_routes = file.route.routes.clone();
    for route in &mut namespace_routes {
        route.group_by.clone_from(&file.route.group_by);
        route.group_wait.clone_from(&file.route.group_wait);
        route.group_interval.clone_from(&file.route.group_interval);
        route.repeat_interval = route
            .repeat_interval
            .clone()
            .or_else(|| file.route.repeat_interval.clone());
    }
    let base_has_route = base.get("route").is_some_and(Yaml::is_mapping);
    let mut receivers: Vec<&Receiver> = file.receivers.iter().collect();
    if base_has_route {
        receivers.retain(|r| r.name != DEFAULT_RECEIVER);
        let Some(Yaml::Mapping(route)) = base.get_mut("route") else {
            return Err(BaseConfigError::NotAMapping);
        };
        let mut children: Vec<Yaml> = namespace_routes.iter().map(yaml_value).collect();
        match route.remove("routes") {
            None | Some(Yaml::Null) => {}
            Some(Yaml::Sequence(existing)) => children.extend(existing),
            Some(_) => return Err(BaseConfigError::NotAList("route.routes")),
        }
        route.insert("routes".into(), Yaml::Sequence(children));
    } else {
        let mut root = file.route.clone();
        root.routes = namespace_routes;
        base.insert("route".into(), yaml_value(&root));
    }
    let mut append = |key: &'static str, items: Vec<Yaml>| -> Result<(), BaseConfigError> {
        let mut all = match base.remove(key) {
            None | Some(Yaml::Null) => Vec::new(),
            Some(Yaml::Sequence(existing)) => existing,
            Some(_) => return Err(BaseConfigError::NotAList(key)),
        };
        if key == "receivers" {
            for item in &items {
                let name = item.get("name").and_then(Yaml::as_str).unwrap_or_default();
                if all
                    .iter()
                    .any(|r| r.get("name").and_then(Yaml::as_str) == Some(name))
                {
                    return Err(BaseConfigError::DuplicateReceiver(name.to_owned()));
                }
            }
        }
        all.extend(items);
        if !all.is_empty() {
            base.insert(key.into(), Yaml::Sequence(all));
        }
        Ok(())
    };
    append(
        "inhibit_rules",
        file.inhibit_rules.iter().map(yaml_value).collect(),
    )?;
    append("receivers", receivers.iter().map(yaml_value).collect())?;
    append(
        "templates",
        file.templates
            .iter()
            .map(|t| Yaml::from(t.clone()))
            .collect(),
    )?;
    // A mapping of strings, sequences and mappings always serialises.
    #[allow(clippy::expect_used)] // cannot fire, see above
    Ok(serde_yaml::to_string(&Yaml::Mapping(base)).expect("a YAML mapping always serialises"))
}

/// A typed part of the file as a YAML value for [`merge_into_base`]. The parts are structs of
/// strings, bools and lists (see [`super::to_yaml`]), so encoding cannot fail; `Null` would only drop
/// the part.
fn yaml_value<T: Serialize>(part: &T) -> serde_yaml::Value {
    serde_yaml::to_value(part).unwrap_or(serde_yaml::Value::Null)
}
