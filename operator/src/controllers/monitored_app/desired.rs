//! What a `MonitoredApp` should produce, from the pure renderers: the agent ConfigMap and, when
//! prometheus-operator serves `PodMonitor`, the app's `PodMonitor`s; without it, the app's
//! scrape configs, its part of the shared `vigil-prometheus` ConfigMap (see `aggregate`).

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use serde_json::Value;
use vigil_crds::MonitoredApp;

use crate::controllers::aggregate::{self, Contribution, PrometheusPart};
use crate::controllers::{OptionalApis, Settings};
use crate::render::agent_config::{self, CONFIG_HASH_ANNOTATION};
use crate::render::inject::{AgentSidecar, PodSecurityLevel};
use crate::render::scrape;

/// The children of one app, one field per child kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// `vigil-agent-<app>` with `agent.yaml`, annotated with its hash.
    pub agent_config: ConfigMap,
    /// `vigil-<app>` and `vigil-agent-<app>`; empty when `PodMonitor` is not served.
    pub pod_monitors: Vec<Value>,
    /// The app's entries in the namespace's shared `scrape-configs.yml`; none when
    /// `PodMonitor` is served.
    pub scrape_configs: PrometheusPart,
}

/// Renders the children of `app`; `cluster` is the operator's `--cluster-name`.
pub fn children(app: &MonitoredApp, apis: OptionalApis, cluster: Option<&str>) -> Desired {
    let config = agent_config::agent_config(app, cluster);
    Desired {
        agent_config: agent_config::agent_config_map(app, &config),
        pod_monitors: if apis.pod_monitor {
            scrape::pod_monitors(app)
        } else {
            Vec::new()
        },
        scrape_configs: aggregate::scrape_configs_part(app, apis),
    }
}

/// The app's parts of the shared outputs, all empty: what is withdrawn when it goes.
pub fn withdrawn(app: &MonitoredApp) -> Contribution {
    Contribution {
        prometheus: Some(PrometheusPart::ScrapeConfigs {
            app: app.name_any(),
            entries: None,
        }),
        routes: None,
    }
}

impl Desired {
    /// Hash of the rendered agent config (the ConfigMap's `vigil.dev/config-hash`).
    pub fn config_hash(&self) -> Option<String> {
        self.agent_config
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CONFIG_HASH_ANNOTATION))
            .cloned()
    }
}

/// The sidecar the webhook injects for `app` under `settings` in a namespace enforcing
/// `level`: its `spec_hash` is what a current pod carries in `vigil.dev/injected`.
pub fn sidecar_for(
    app: &MonitoredApp,
    settings: &Settings,
    level: PodSecurityLevel,
) -> AgentSidecar {
    AgentSidecar::for_pod_of(app, &settings.agent_image, settings.native_sidecar, level)
}
