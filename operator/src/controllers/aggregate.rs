//! Shared outputs for a plain Prometheus and Alertmanager (no prometheus-operator):
//!
//! - the ConfigMap `vigil-prometheus` in each namespace with Vigil resources holds
//!   `scrape-configs.yml` (a `scrape_configs:` document for Prometheus' `scrape_config_files`,
//!   when `PodMonitor` is not served) and one `*.rules.yml` file per `AlertPolicy` and `SLO`
//!   (for `rule_files`, when `PrometheusRule` is not served). It is per namespace because a
//!   ConfigMap is limited to 1 MiB; a Prometheus mounts the ConfigMaps of the namespaces it
//!   monitors (a projected volume) and globs `*.rules.yml`;
//! - the Secret `vigil-alertmanager` in the operator's namespace holds the one
//!   `alertmanager.yml` for every `AlertPolicy` in scope (when `AlertmanagerConfig` is not
//!   served), since an Alertmanager reads exactly one configuration file.
//!
//! Both are re-rendered from all remaining resources whenever one of them changes, with the
//! same pure renderers as `vigil-operator render`. Objects shared by several owners cannot be
//! removed by owner-reference garbage collection when one owner goes, so a resource that feeds a
//! shared output carries the finalizer [`FINALIZER`]: on deletion the outputs are re-rendered
//! without it and only then is the finalizer removed. Resources whose outputs are all their own
//! (owner references do the cleanup) get no finalizer. The shared objects carry the managed-by
//! label and [`AGGREGATE_LABEL`] but no owner label, so no owner's prune ever deletes them; they
//! stay (emptied) when their last contributor goes, so that a Prometheus or Alertmanager that
//! mounts them keeps starting.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use vigil_crds::{AlertPolicy, MonitoredApp, Slo};

use super::apply::{apply, describe, Child};
use super::discovery::OptionalApis;
use super::error::{is_not_found, ApplyError, Error, ObserveError};
use super::reload::Target;
use super::Context;
use crate::manifests;
use crate::render::alertmanager::{self, AlertmanagerVersion};
use crate::render::{alerts, namespace_of, scrape, slo, Inventory, MANAGER};

/// Finalizer of resources that feed a shared output.
pub const FINALIZER: &str = "vigil.dev/shared-outputs";
/// Name of the per-namespace ConfigMap of scrape configs and rule files.
pub const PROMETHEUS_CONFIG_MAP: &str = "vigil-prometheus";
/// Key of the scrape configs in [`PROMETHEUS_CONFIG_MAP`].
pub const SCRAPE_CONFIGS_KEY: &str = "scrape-configs.yml";
/// Name of the Secret holding `alertmanager.yml`.
pub const ALERTMANAGER_SECRET: &str = "vigil-alertmanager";
/// Key of the configuration in [`ALERTMANAGER_SECRET`].
pub const ALERTMANAGER_KEY: &str = "alertmanager.yml";
/// Label marking a shared output, with the consumer as value (`prometheus`, `alertmanager`).
pub const AGGREGATE_LABEL: &str = "vigil.dev/aggregate";

/// Which shared outputs one resource feeds under the current discovery answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shares {
    /// Its scrape configs or rules go into `vigil-prometheus`.
    pub prometheus: bool,
    /// Its routes go into `alertmanager.yml`.
    pub alertmanager: bool,
}

impl Shares {
    /// Feeds any shared output.
    pub fn any(self) -> bool {
        self.prometheus || self.alertmanager
    }
}

/// Key of an `AlertPolicy`'s rule file in [`PROMETHEUS_CONFIG_MAP`].
pub fn policy_rules_key(policy_name: &str) -> String {
    format!("alerts-{policy_name}.rules.yml")
}

/// Key of an `SLO`'s rule file in [`PROMETHEUS_CONFIG_MAP`].
pub fn slo_rules_key(slo_name: &str) -> String {
    format!("slo-{slo_name}.rules.yml")
}

fn shared_labels(consumer: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGER.to_owned(),
        ),
        (AGGREGATE_LABEL.to_owned(), consumer.to_owned()),
    ])
}

/// Only the resources that can be rendered: not being deleted, and free of the problems
/// [`manifests::check_references`] finds. An invalid resource contributes nothing, so that one
/// bad rule never makes Prometheus reject every rule file.
pub fn renderable(inv: Inventory) -> Inventory {
    fn live<K: Resource>(k: &K) -> bool {
        k.meta().deletion_timestamp.is_none()
    }
    let mut inv = Inventory {
        apps: inv.apps.into_iter().filter(live).collect(),
        policies: inv.policies.into_iter().filter(live).collect(),
        slos: inv.slos.into_iter().filter(live).collect(),
        views: inv.views.into_iter().filter(live).collect(),
    };
    let bad: Vec<String> = manifests::check_references(&inv)
        .into_iter()
        .filter_map(|p| p.object)
        .collect();
    let ok = |kind: &str, k: &dyn Fn() -> (String, String)| {
        let (ns, name) = k();
        !bad.contains(&format!("{kind}/{ns}/{name}"))
    };
    inv.apps
        .retain(|a| ok("MonitoredApp", &|| (namespace_of(a), a.name_any())));
    inv.policies
        .retain(|p| ok("AlertPolicy", &|| (namespace_of(p), p.name_any())));
    inv.slos
        .retain(|s| ok("SLO", &|| (namespace_of(s), s.name_any())));
    inv.sorted()
}

/// The `vigil-prometheus` ConfigMap of `namespace` for the resources of `inv` (all in that
/// namespace, already [`renderable`]), or `None` when prometheus-operator serves both
/// `PodMonitor` and `PrometheusRule` and nothing is shared.
pub fn prometheus_config_map(
    namespace: &str,
    inv: &Inventory,
    apis: OptionalApis,
) -> Result<Option<ConfigMap>, serde_yaml::Error> {
    if apis.pod_monitor && apis.prometheus_rule {
        return Ok(None);
    }
    let mut data = BTreeMap::new();
    if !apis.pod_monitor {
        let configs = serde_json::json!({ "scrape_configs": scrape::scrape_configs(inv) });
        data.insert(
            SCRAPE_CONFIGS_KEY.to_owned(),
            serde_yaml::to_string(&configs)?,
        );
    }
    if !apis.prometheus_rule {
        for policy in &inv.policies {
            if let Some(app) = inv.app(namespace, &policy.spec.app_ref.name) {
                let file = alerts::alert_rules(policy, app);
                data.insert(
                    policy_rules_key(&policy.name_any()),
                    serde_yaml::to_string(&file)?,
                );
            }
        }
        for objective in &inv.slos {
            if let Some(app) = inv.app(namespace, &objective.spec.app_ref.name) {
                let file = slo::slo_rules(objective, app);
                data.insert(
                    slo_rules_key(&objective.name_any()),
                    serde_yaml::to_string(&file)?,
                );
            }
        }
    }
    Ok(Some(ConfigMap {
        metadata: ObjectMeta {
            name: Some(PROMETHEUS_CONFIG_MAP.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(shared_labels("prometheus")),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }))
}

/// The `vigil-alertmanager` Secret in `namespace` with `alertmanager.yml` for every policy of
/// `inv` (already [`renderable`]).
pub fn alertmanager_secret(
    namespace: &str,
    inv: &Inventory,
    version: AlertmanagerVersion,
) -> Secret {
    let yaml = alertmanager::to_yaml(&alertmanager::alertmanager_config_for(inv, version));
    Secret {
        metadata: ObjectMeta {
            name: Some(ALERTMANAGER_SECRET.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(shared_labels("alertmanager")),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            ALERTMANAGER_KEY.to_owned(),
            ByteString(yaml.into_bytes()),
        )])),
        ..Secret::default()
    }
}

async fn list<K>(ctx: &Context, namespace: Option<&str>, owner: &str) -> Result<Vec<K>, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|source| {
            ObserveError::Read {
                object: owner.to_owned(),
                what: format!("every {} for the shared outputs", K::kind(&())),
                source,
            }
            .into()
        })
}

/// Re-renders `namespace`'s `vigil-prometheus` ConfigMap from every resource in it and writes
/// it when it changed (then asks Prometheus to reload). Deletes it when nothing is shared.
pub async fn sync_prometheus(
    ctx: &Context,
    namespace: &str,
    apis: OptionalApis,
    owner: &str,
) -> Result<(), Error> {
    let lock = ctx.lock(&format!("prometheus/{namespace}"));
    let _guard = lock.lock().await;
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let inv = renderable(Inventory {
        apps: list::<MonitoredApp>(ctx, Some(namespace), owner).await?,
        policies: list::<AlertPolicy>(ctx, Some(namespace), owner).await?,
        slos: list::<Slo>(ctx, Some(namespace), owner).await?,
        views: Vec::new(),
    });
    let desired =
        prometheus_config_map(namespace, &inv, apis).map_err(|source| ApplyError::EncodeYaml {
            object: owner.to_owned(),
            child: format!("ConfigMap/{namespace}/{PROMETHEUS_CONFIG_MAP}"),
            source,
        })?;
    let existing =
        api.get_opt(PROMETHEUS_CONFIG_MAP)
            .await
            .map_err(|source| ObserveError::Read {
                object: owner.to_owned(),
                what: format!("ConfigMap/{namespace}/{PROMETHEUS_CONFIG_MAP}"),
                source,
            })?;
    match (desired, existing) {
        (Some(desired), existing) => {
            let unchanged = existing.as_ref().is_some_and(|e| {
                e.data == desired.data && e.metadata.labels == desired.metadata.labels
            });
            if !unchanged {
                write(ctx, owner, &desired).await?;
                ctx.reloader.request(Target::Prometheus);
            }
        }
        (None, Some(_)) => match api.delete(PROMETHEUS_CONFIG_MAP, &Default::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(source) => {
                return Err(ApplyError::Prune {
                    object: owner.to_owned(),
                    child: format!("ConfigMap/{namespace}/{PROMETHEUS_CONFIG_MAP}"),
                    source,
                }
                .into())
            }
        },
        (None, None) => {}
    }
    Ok(())
}

/// Re-renders the `vigil-alertmanager` Secret from every `AlertPolicy` in scope and writes it
/// when it changed (then asks Alertmanager to reload). Does nothing while prometheus-operator
/// serves `AlertmanagerConfig`.
pub async fn sync_alertmanager(
    ctx: &Context,
    apis: OptionalApis,
    owner: &str,
) -> Result<(), Error> {
    if apis.alertmanager_config {
        return Ok(());
    }
    let lock = ctx.lock("alertmanager");
    let _guard = lock.lock().await;
    let scope = ctx.settings.namespace.as_deref();
    let inv = renderable(Inventory {
        apps: list::<MonitoredApp>(ctx, scope, owner).await?,
        policies: list::<AlertPolicy>(ctx, scope, owner).await?,
        slos: Vec::new(),
        views: Vec::new(),
    });
    let namespace = &ctx.settings.alertmanager_namespace;
    let desired = alertmanager_secret(namespace, &inv, ctx.settings.alertmanager_version);
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let existing = api
        .get_opt(ALERTMANAGER_SECRET)
        .await
        .map_err(|source| ObserveError::Read {
            object: owner.to_owned(),
            what: format!("Secret/{namespace}/{ALERTMANAGER_SECRET}"),
            source,
        })?;
    if existing.is_none_or(|e| e.data != desired.data) {
        write(ctx, owner, &desired).await?;
        ctx.reloader.request(Target::Alertmanager);
    }
    Ok(())
}

async fn write<T>(ctx: &Context, owner: &str, object: &T) -> Result<(), Error>
where
    T: Resource<DynamicType = ()> + Serialize,
{
    let child = Child::typed(object).map_err(|source| ApplyError::Encode {
        object: owner.to_owned(),
        child: T::kind(&()).into_owned(),
        source,
    })?;
    apply(&ctx.client, owner, &child).await?;
    Ok(())
}

fn has_finalizer<K: Resource>(object: &K) -> bool {
    object
        .meta()
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

async fn set_finalizer<K>(ctx: &Context, object: &K, present: bool) -> Result<(), ApplyError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + ResourceExt
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let mut finalizers: Vec<String> = object
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(FINALIZER.to_owned());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
    // The resourceVersion makes this a compare-and-swap: finalizers added by someone else in
    // the meantime are never overwritten (the patch fails with a conflict and is retried).
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": object.resource_version(),
        }
    });
    api.patch(
        &object.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
    .map(|_| ())
    .map_err(|source| ApplyError::Finalizer {
        object: describe(object),
        source,
    })
}

/// Makes sure `object` carries the finalizer exactly when it feeds a shared output.
pub async fn join<K>(ctx: &Context, object: &K, shares: Shares) -> Result<(), ApplyError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + ResourceExt
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    if shares.any() != has_finalizer(object) {
        set_finalizer(ctx, object, shares.any()).await?;
    }
    Ok(())
}

/// Handles the deletion of `object`: re-renders the shared outputs its kind can feed (`feeds`)
/// without it, then removes the finalizer so the API server can finish the deletion (and
/// garbage-collect the children it owns).
pub async fn leave<K>(ctx: &Context, object: &K, feeds: Shares) -> Result<Action, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + ResourceExt
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    if !has_finalizer(object) {
        return Ok(Action::await_change());
    }
    let owner = describe(object);
    let apis = ctx.optional_apis(&owner).await?;
    if feeds.prometheus {
        sync_prometheus(ctx, &namespace_of(object), apis, &owner).await?;
    }
    if feeds.alertmanager {
        sync_alertmanager(ctx, apis, &owner).await?;
    }
    set_finalizer(ctx, object, false).await?;
    Ok(Action::await_change())
}
