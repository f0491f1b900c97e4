//! Who this agent runs for: the pod identity from the downward API (environment variables set
//! by the injected sidecar) and the app identity from the config. Used by enrichment (resource
//! attributes, series labels) and crash series labels.

use vigil_crds::agent_config::AppIdentity;

/// Pod and app identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub namespace: String,
    pub app: String,
    pub pod: String,
    pub pod_uid: String,
    pub node: String,
    /// Application version (`VIGIL_APP_VERSION`, from the release label or image tag);
    /// `unknown` when not set.
    pub version: String,
    /// Name of the cluster (`app.cluster` of the config); empty when not set.
    pub cluster: String,
}

impl Identity {
    /// Reads `POD_NAME`, `POD_NAMESPACE`, `POD_UID`, `NODE_NAME` and `VIGIL_APP_VERSION` through
    /// `env` (so tests need not touch the process environment); the cluster comes from the
    /// config.
    pub fn from_env(app: &AppIdentity, env: impl Fn(&str) -> Option<String>) -> Identity {
        let get = |key: &str| env(key).filter(|v| !v.is_empty());
        Identity {
            namespace: get("POD_NAMESPACE").unwrap_or_else(|| app.namespace.clone()),
            app: app.name.clone(),
            pod: get("POD_NAME").unwrap_or_default(),
            pod_uid: get("POD_UID").unwrap_or_default(),
            node: get("NODE_NAME").unwrap_or_default(),
            version: get("VIGIL_APP_VERSION").unwrap_or_else(|| "unknown".to_owned()),
            cluster: app.cluster.clone().unwrap_or_default(),
        }
    }

    /// Labels added to every series the agent sends or serves; `cluster` only when the config
    /// names one.
    pub fn series_labels(&self) -> Vec<(&'static str, &str)> {
        let mut labels = vec![
            ("namespace", self.namespace.as_str()),
            ("app", self.app.as_str()),
            ("pod", self.pod.as_str()),
            ("version", self.version.as_str()),
        ];
        if !self.cluster.is_empty() {
            labels.push(("cluster", self.cluster.as_str()));
        }
        labels
    }
}
