//! Output-target discovery: which optional APIs (prometheus-operator's `PodMonitor`,
//! `PrometheusRule` and `AlertmanagerConfig`, grafana-operator's `GrafanaDashboard`) the cluster
//! serves. Controllers read a cached answer; it is re-checked after [`DEFAULT_TTL`], and the run
//! loop restarts the controllers when it changes so that newly installed CRDs are also watched.

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::core::ApiResource;
use kube::Client;
use tokio::sync::RwLock;

use super::error::is_not_found;

/// How long a discovery answer is trusted before the API server is asked again.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// prometheus-operator's `PodMonitor` (`monitoring.coreos.com/v1`).
pub fn pod_monitor() -> ApiResource {
    resource("monitoring.coreos.com", "v1", "PodMonitor", "podmonitors")
}

/// prometheus-operator's `PrometheusRule` (`monitoring.coreos.com/v1`).
pub fn prometheus_rule() -> ApiResource {
    resource(
        "monitoring.coreos.com",
        "v1",
        "PrometheusRule",
        "prometheusrules",
    )
}

/// prometheus-operator's `AlertmanagerConfig` (`monitoring.coreos.com/v1alpha1`).
pub fn alertmanager_config() -> ApiResource {
    resource(
        "monitoring.coreos.com",
        "v1alpha1",
        "AlertmanagerConfig",
        "alertmanagerconfigs",
    )
}

/// grafana-operator's `GrafanaDashboard` (`grafana.integreatly.org/v1beta1`).
pub fn grafana_dashboard() -> ApiResource {
    resource(
        "grafana.integreatly.org",
        "v1beta1",
        "GrafanaDashboard",
        "grafanadashboards",
    )
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: format!("{group}/{version}"),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    }
}

/// Which optional output APIs the cluster serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptionalApis {
    /// `PodMonitor`s replace the plain scrape configs.
    pub pod_monitor: bool,
    /// `PrometheusRule`s replace the plain rule files.
    pub prometheus_rule: bool,
    /// `AlertmanagerConfig`s replace the shared `alertmanager.yml`.
    pub alertmanager_config: bool,
    /// `GrafanaDashboard`s are applied next to the dashboard ConfigMaps.
    pub grafana_dashboard: bool,
}

impl OptionalApis {
    /// Every optional API present (a cluster with prometheus-operator and grafana-operator).
    pub const ALL: OptionalApis = OptionalApis {
        pod_monitor: true,
        prometheus_rule: true,
        alertmanager_config: true,
        grafana_dashboard: true,
    };

    /// Reads the answer from the resource lists of the group versions that exist; a group
    /// version the server does not serve is simply absent from `lists`.
    pub fn from_resource_lists(lists: &[APIResourceList]) -> OptionalApis {
        let serves = |wanted: ApiResource| {
            lists.iter().any(|list| {
                list.group_version == wanted.api_version
                    && list.resources.iter().any(|r| r.name == wanted.plural)
            })
        };
        OptionalApis {
            pod_monitor: serves(pod_monitor()),
            prometheus_rule: serves(prometheus_rule()),
            alertmanager_config: serves(alertmanager_config()),
            grafana_dashboard: serves(grafana_dashboard()),
        }
    }
}

/// The group versions [`OptionalApis`] is read from.
const GROUP_VERSIONS: [&str; 3] = [
    "monitoring.coreos.com/v1",
    "monitoring.coreos.com/v1alpha1",
    "grafana.integreatly.org/v1beta1",
];

/// Asks the API server which optional APIs it serves (one request per group version; a 404
/// means the group version is not installed).
pub async fn discover(client: &Client) -> Result<OptionalApis, kube::Error> {
    let mut lists = Vec::new();
    for group_version in GROUP_VERSIONS {
        match client.list_api_group_resources(group_version).await {
            Ok(list) => lists.push(list),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(OptionalApis::from_resource_lists(&lists))
}

/// A cached [`discover`] answer shared by all controllers.
pub struct Discovery {
    client: Client,
    ttl: Duration,
    cached: RwLock<Option<(Instant, OptionalApis)>>,
}

impl Discovery {
    /// A cache that asks the API server at most once per `ttl`.
    pub fn new(client: Client, ttl: Duration) -> Discovery {
        Discovery {
            client,
            ttl,
            cached: RwLock::new(None),
        }
    }

    /// The cached answer, refreshed when older than the TTL. When a refresh fails, the
    /// previous answer stays in use (a flapping API server must not flip output targets);
    /// with no previous answer the error is returned.
    pub async fn current(&self) -> Result<OptionalApis, kube::Error> {
        if let Some((at, apis)) = *self.cached.read().await {
            if at.elapsed() < self.ttl {
                return Ok(apis);
            }
        }
        match self.refresh().await {
            Ok(apis) => Ok(apis),
            Err(e) => match *self.cached.read().await {
                Some((_, apis)) => {
                    tracing::warn!(error = %e, "API discovery failed; keeping the previous answer");
                    Ok(apis)
                }
                None => Err(e),
            },
        }
    }

    /// Asks the API server now and caches the answer.
    pub async fn refresh(&self) -> Result<OptionalApis, kube::Error> {
        let apis = discover(&self.client).await?;
        *self.cached.write().await = Some((Instant::now(), apis));
        Ok(apis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_api::FakeApiServer;

    /// Discovery reads each optional API from the group versions the server serves; a group
    /// the server does not know is absent, not an error.
    #[tokio::test]
    async fn missing_groups_are_absent_not_errors() {
        let all = FakeApiServer::new();
        assert_eq!(discover(&all.client()).await.unwrap(), OptionalApis::ALL);

        let plain = FakeApiServer::new().without_group("monitoring.coreos.com");
        let apis = discover(&plain.client()).await.unwrap();
        assert_eq!(
            apis,
            OptionalApis {
                grafana_dashboard: true,
                ..OptionalApis::default()
            }
        );
    }

    /// The cache answers from memory until refreshed; a refresh sees newly installed CRDs.
    #[tokio::test]
    async fn cache_is_refreshed_on_demand() {
        let server = FakeApiServer::new().without_group("grafana.integreatly.org");
        let cache = Discovery::new(server.client(), Duration::from_secs(3600));
        assert!(!cache.current().await.unwrap().grafana_dashboard);
        server.set_group_served("grafana.integreatly.org", true);
        assert!(!cache.current().await.unwrap().grafana_dashboard);
        assert!(cache.refresh().await.unwrap().grafana_dashboard);
        assert!(cache.current().await.unwrap().grafana_dashboard);
    }
}
