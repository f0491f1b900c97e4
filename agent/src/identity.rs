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
}

impl Identity {
    /// Reads `POD_NAME`, `POD_NAMESPACE`, `POD_UID`, `NODE_NAME` and `VIGIL_APP_VERSION` through
    /// `env` (so tests need not touch the process environment).
    pub fn from_env(app: &AppIdentity, env: impl Fn(&str) -> Option<String>) -> Identity {
        let get = |key: &str| env(key).filter(|v| !v.is_empty());
        Identity {
            namespace: get("POD_NAMESPACE").unwrap_or_else(|| app.namespace.clone()),
            app: app.name.clone(),
            pod: get("POD_NAME").unwrap_or_default(),
            pod_uid: get("POD_UID").unwrap_or_default(),
            node: get("NODE_NAME").unwrap_or_default(),
            version: get("VIGIL_APP_VERSION").unwrap_or_else(|| "unknown".to_owned()),
        }
    }

    /// Labels added to every series the agent sends or serves.
    pub fn series_labels(&self) -> [(&'static str, &str); 4] {
        [
            ("namespace", &self.namespace),
            ("app", &self.app),
            ("pod", &self.pod),
            ("version", &self.version),
        ]
    }
}
