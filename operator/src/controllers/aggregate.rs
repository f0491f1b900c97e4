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
//! Each reconcile renders only its own resource's part (an app's scrape configs, a policy's or
//! objective's rule file, a policy's routes: a [`Contribution`]) with the same pure renderers as
//! `vigil-operator render`, and hands it to [`SharedOutputs`], which keeps every resource's
//! part in memory. A shared object is rebuilt from those parts, and written with one apply only
//! when its content hash changed; reconciles that run at the same time share one write (the
//! first to take the output's lock writes every part handed in so far, the others find their
//! part already written). The first reconcile of a namespace after the controllers start reads
//! its resources once to learn the other parts, so a restart never writes a partial file. The
//! memory is trusted for one resync period; after that the next write compares with what the
//! cluster holds, so an output edited by hand is repaired.
//!
//! When the optional APIs change (prometheus-operator installed or removed), the parts are
//! rendered again for the new answer: a `vigil-prometheus` ConfigMap with nothing left to hold is
//! deleted (found by its managed-by and [`AGGREGATE_LABEL`] labels), and `alertmanager.yml` is
//! re-written without the routes that moved to `AlertmanagerConfig`s.
//!
//! Objects shared by several owners cannot be removed by owner-reference garbage collection
//! when one owner goes, so a resource that feeds a shared output carries the finalizer
//! [`FINALIZER`]: on deletion its parts are withdrawn and only then is the finalizer removed.
//! Resources whose outputs are all their own (owner references do the cleanup) get no
//! finalizer. The shared objects carry the managed-by label and [`AGGREGATE_LABEL`] but no owner
//! label, so no owner's prune ever deletes them; they stay (emptied) when their last
//! contributor goes, so that a Prometheus or Alertmanager that mounts them keeps starting.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use vigil_crds::alert_policy::AlertPolicySpec;
use vigil_crds::slo::SloSpec;
use vigil_crds::{AlertPolicy, MonitoredApp, Slo};

use super::apply::{apply, describe, Child};
use super::discovery::OptionalApis;
use super::error::{is_not_found, ApplyError, Error, ObserveError};
use super::reload::Target;
use super::{Context, VigilResource};
use crate::manifests;
use crate::render::alertmanager::{self, AlertmanagerVersion};
use crate::render::slo::SloSeverities;
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

/// Where a policy's or objective's rules are, for its status: the `PrometheusRule`
/// `rule_name` when prometheus-operator serves that kind, else the file `key` of the shared
/// ConfigMap.
pub fn rules_location(apis: OptionalApis, rule_name: &str, key: &str) -> String {
    if apis.prometheus_rule {
        format!("PrometheusRule {rule_name}")
    } else {
        format!("ConfigMap {PROMETHEUS_CONFIG_MAP}, file {key}")
    }
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

/// Label selector of the shared outputs read by `consumer`.
fn shared_selector(consumer: &str) -> String {
    shared_labels(consumer)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
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

/// One resource's part of its namespace's `vigil-prometheus` ConfigMap.
#[derive(Clone, Debug, PartialEq)]
pub enum PrometheusPart {
    /// An app's `scrape_configs` entries; `None` when it has none there (prometheus-operator
    /// serves `PodMonitor`, or the app is invalid or gone).
    ScrapeConfigs {
        /// The app's name.
        app: String,
        /// Its entries, in the order [`scrape::scrape_configs`] writes them.
        entries: Option<Vec<Value>>,
    },
    /// A policy's or objective's rule file; `None` when it has none there.
    RuleFile {
        /// The file's key, from [`policy_rules_key`] or [`slo_rules_key`].
        key: String,
        /// The rule file as YAML.
        yaml: Option<String>,
    },
}

/// What one resource puts into the shared outputs, rendered by its own reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Contribution {
    /// Its part of the namespace's `vigil-prometheus` ConfigMap, when its kind has one.
    pub prometheus: Option<PrometheusPart>,
    /// Its routes in `alertmanager.yml`, when its kind has them.
    pub routes: Option<Routes>,
}

/// A policy's routes in `alertmanager.yml`, or those of an `SLO` that names its own receivers.
#[derive(Clone, Debug, PartialEq)]
pub struct Routes {
    /// The resource's namespace.
    pub namespace: String,
    /// The resource's name.
    pub name: String,
    /// Whether the resource is an `SLO` (else an `AlertPolicy`).
    pub of_slo: bool,
    /// The spec to render routes from; `None` when it has none there.
    pub spec: Option<RoutedSpec>,
}

/// The spec routes are rendered from.
#[derive(Clone, Debug, PartialEq)]
pub enum RoutedSpec {
    /// An `AlertPolicy`'s.
    Policy(AlertPolicySpec),
    /// An `SLO`'s with receivers of its own.
    Slo(Box<SloSpec>),
}

impl Routes {
    fn key(&self) -> String {
        let kind = if self.of_slo { "slo:" } else { "" };
        format!("{kind}{}/{}", self.namespace, self.name)
    }
}

/// An app's scrape-config part under `apis` (entries only without `PodMonitor`).
pub fn scrape_configs_part(app: &MonitoredApp, apis: OptionalApis) -> PrometheusPart {
    PrometheusPart::ScrapeConfigs {
        app: app.name_any(),
        entries: (!apis.pod_monitor).then(|| {
            scrape::scrape_configs(&Inventory {
                apps: vec![app.clone()],
                ..Inventory::default()
            })
        }),
    }
}

/// The rule file `key` under `apis`: `file` rendered as YAML only without `PrometheusRule`.
fn rule_file_part<T: Serialize>(
    key: String,
    apis: OptionalApis,
    file: impl FnOnce() -> T,
) -> Result<PrometheusPart, serde_yaml::Error> {
    let yaml = if apis.prometheus_rule {
        None
    } else {
        Some(crate::yaml::to_string(&file())?)
    };
    Ok(PrometheusPart::RuleFile { key, yaml })
}

/// A policy's rule-file part under `apis` (a file only without `PrometheusRule`), its alerts
/// labelled with `cluster`.
pub fn policy_rules_part(
    policy: &AlertPolicy,
    app: &MonitoredApp,
    apis: OptionalApis,
    cluster: Option<&str>,
) -> Result<PrometheusPart, serde_yaml::Error> {
    rule_file_part(policy_rules_key(&policy.name_any()), apis, || {
        alerts::alert_rules(policy, app).with_cluster(cluster)
    })
}

/// An objective's rule-file part under `apis` (a file only without `PrometheusRule`), its
/// alerts labelled with `cluster`.
pub fn slo_rules_part(
    objective: &Slo,
    app: &MonitoredApp,
    apis: OptionalApis,
    severities: &SloSeverities,
    cluster: Option<&str>,
) -> Result<PrometheusPart, serde_yaml::Error> {
    rule_file_part(slo_rules_key(&objective.name_any()), apis, || {
        slo::slo_rules_with(objective, app, severities).with_cluster(cluster)
    })
}

/// A policy's routes under `apis` (only without `AlertmanagerConfig`).
pub fn routes_part(policy: &AlertPolicy, apis: OptionalApis) -> Routes {
    Routes {
        namespace: namespace_of(policy),
        name: policy.name_any(),
        of_slo: false,
        spec: (!apis.alertmanager_config).then(|| RoutedSpec::Policy(policy.spec.clone())),
    }
}

/// An objective's routes under `apis`: only without `AlertmanagerConfig`, and only when it
/// names receivers of its own (otherwise its alerts take its app's policies' routes).
pub fn slo_routes_part(objective: &Slo, apis: OptionalApis) -> Routes {
    Routes {
        namespace: namespace_of(objective),
        name: objective.name_any(),
        of_slo: true,
        spec: (!apis.alertmanager_config && !objective.spec.alerting.receivers.is_empty())
            .then(|| RoutedSpec::Slo(Box::new(objective.spec.clone()))),
    }
}

/// The `vigil-prometheus` ConfigMap of `namespace` for the resources of `inv` (all in that
/// namespace, already [`renderable`]), or `None` when prometheus-operator serves both
/// `PodMonitor` and `PrometheusRule` and nothing is shared. The controllers build the same
/// object from the parts in [`SharedOutputs`].
pub fn prometheus_config_map(
    namespace: &str,
    inv: &Inventory,
    apis: OptionalApis,
    severities: &SloSeverities,
    cluster: Option<&str>,
) -> Result<Option<ConfigMap>, serde_yaml::Error> {
    let mut share = PrometheusShare::new(apis, cluster);
    share.learn(namespace, inv, severities)?;
    Ok(share
        .data()?
        .map(|data| prometheus_config_map_with(namespace, data)))
}

fn prometheus_config_map_with(namespace: &str, data: BTreeMap<String, String>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(PROMETHEUS_CONFIG_MAP.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(shared_labels("prometheus")),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// The `vigil-alertmanager` Secret in `namespace` with `alertmanager.yml` for every policy of
/// `inv` (already [`renderable`]).
/// With a `base` configuration (`--alertmanager-base-config`), the routes are merged into it;
/// the operator checked at start that they can be, so a failure here (a base receiver that
/// takes the name of a receiver Vigil renders later) is logged and the base is left out
/// rather than writing a file Alertmanager would refuse.
pub fn alertmanager_secret(
    namespace: &str,
    inv: &Inventory,
    version: AlertmanagerVersion,
    base: Option<&str>,
) -> Secret {
    let file = alertmanager::alertmanager_config_for(inv, version);
    let yaml = match base.map(|base| alertmanager::merge_into_base(&file, base)) {
        None => alertmanager::to_yaml(&file),
        Some(Ok(yaml)) => yaml,
        Some(Err(e)) => {
            tracing::error!(error = %e, "cannot merge the routes into the base Alertmanager configuration; writing them without it");
            alertmanager::to_yaml(&file)
        }
    };
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

/// What was last made true in the cluster for one shared output.
#[derive(Clone, Debug)]
struct Written {
    /// The share's version at that time: every part handed in up to it is in the cluster.
    version: u64,
    /// Content hash of the object written; `None` when it was deleted (or is not wanted).
    hash: Option<String>,
    /// When; the memory is trusted for one resync period.
    at: Instant,
}

impl Written {
    fn trusted(&self, resync: Duration) -> bool {
        self.at.elapsed() < resync
    }
}

/// The parts of one namespace's `vigil-prometheus` ConfigMap.
#[derive(Debug)]
struct PrometheusShare {
    /// The discovery answer the parts were rendered for.
    apis: OptionalApis,
    /// The cluster name alerts are labelled with (`--cluster-name`).
    cluster: Option<String>,
    /// App name → its `scrape_configs` entries.
    scrape_configs: BTreeMap<String, Vec<Value>>,
    /// File key → rule file YAML.
    rule_files: BTreeMap<String, String>,
    version: u64,
    written: Option<Written>,
}

impl PrometheusShare {
    fn new(apis: OptionalApis, cluster: Option<&str>) -> PrometheusShare {
        PrometheusShare {
            apis,
            cluster: cluster.map(str::to_owned),
            scrape_configs: BTreeMap::new(),
            rule_files: BTreeMap::new(),
            version: 1,
            written: None,
        }
    }

    /// Takes in the parts of every resource of `inv` (all in `namespace`, [`renderable`]).
    fn learn(
        &mut self,
        namespace: &str,
        inv: &Inventory,
        severities: &SloSeverities,
    ) -> Result<(), serde_yaml::Error> {
        for app in &inv.apps {
            self.set(scrape_configs_part(app, self.apis));
        }
        for policy in &inv.policies {
            if let Some(app) = inv.app(namespace, &policy.spec.app_ref.name) {
                let cluster = self.cluster.clone();
                self.set(policy_rules_part(
                    policy,
                    app,
                    self.apis,
                    cluster.as_deref(),
                )?);
            }
        }
        for objective in &inv.slos {
            if let Some(app) = inv.app(namespace, &objective.spec.app_ref.name) {
                let cluster = self.cluster.clone();
                self.set(slo_rules_part(
                    objective,
                    app,
                    self.apis,
                    severities,
                    cluster.as_deref(),
                )?);
            }
        }
        Ok(())
    }

    /// Puts in one part; returns whether anything changed.
    fn set(&mut self, part: PrometheusPart) -> bool {
        let changed = match part {
            PrometheusPart::ScrapeConfigs { app, entries } => {
                let entries = entries.filter(|_| !self.apis.pod_monitor);
                replace(&mut self.scrape_configs, app, entries)
            }
            PrometheusPart::RuleFile { key, yaml } => {
                let yaml = yaml.filter(|_| !self.apis.prometheus_rule);
                replace(&mut self.rule_files, key, yaml)
            }
        };
        if changed {
            self.version += 1;
        }
        changed
    }

    /// The ConfigMap's data, or `None` when nothing is shared under these APIs.
    fn data(&self) -> Result<Option<BTreeMap<String, String>>, serde_yaml::Error> {
        if self.apis.pod_monitor && self.apis.prometheus_rule {
            return Ok(None);
        }
        let mut data = BTreeMap::new();
        if !self.apis.pod_monitor {
            let entries: Vec<&Value> = self.scrape_configs.values().flatten().collect();
            let configs = serde_json::json!({ "scrape_configs": entries });
            data.insert(
                SCRAPE_CONFIGS_KEY.to_owned(),
                crate::yaml::to_string(&configs)?,
            );
        }
        if !self.apis.prometheus_rule {
            data.extend(self.rule_files.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(Some(data))
    }
}

/// The policies behind the `vigil-alertmanager` Secret.
#[derive(Debug)]
struct AlertmanagerShare {
    apis: OptionalApis,
    /// `namespace/name` → the policy's routes.
    policies: BTreeMap<String, Routes>,
    version: u64,
    written: Option<Written>,
}

impl AlertmanagerShare {
    fn set(&mut self, routes: Routes) -> bool {
        let key = routes.key();
        let routes = Some(routes).filter(|r| r.spec.is_some() && !self.apis.alertmanager_config);
        let changed = replace(&mut self.policies, key, routes);
        if changed {
            self.version += 1;
        }
        changed
    }

    fn secret(&self, namespace: &str, version: AlertmanagerVersion, base: Option<&str>) -> Secret {
        let mut inv = Inventory::default();
        for r in self.policies.values() {
            match r.spec.clone() {
                Some(RoutedSpec::Policy(spec)) => {
                    let mut policy = AlertPolicy::new(&r.name, spec);
                    policy.metadata.namespace = Some(r.namespace.clone());
                    inv.policies.push(policy);
                }
                Some(RoutedSpec::Slo(spec)) => {
                    let mut objective = Slo::new(&r.name, *spec);
                    objective.metadata.namespace = Some(r.namespace.clone());
                    inv.slos.push(objective);
                }
                None => {}
            }
        }
        alertmanager_secret(namespace, &inv, version, base)
    }
}

/// Sets or removes `map[key]`; returns whether the map changed.
fn replace<V: PartialEq>(map: &mut BTreeMap<String, V>, key: String, value: Option<V>) -> bool {
    match value {
        Some(value) => {
            if map.get(&key) == Some(&value) {
                false
            } else {
                map.insert(key, value);
                true
            }
        }
        None => map.remove(&key).is_some(),
    }
}

/// SHA-256 over the keys and values of a shared object's data.
fn content_hash<'a>(entries: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in entries {
        hasher.update((key.len() as u64).to_le_bytes());
        hasher.update(key.as_bytes());
        hasher.update((value.len() as u64).to_le_bytes());
        hasher.update(value);
    }
    hex::encode(hasher.finalize())
}

fn config_map_hash(data: &BTreeMap<String, String>) -> String {
    content_hash(data.iter().map(|(k, v)| (k.as_str(), v.as_bytes())))
}

fn secret_hash(data: &BTreeMap<String, ByteString>) -> String {
    content_hash(data.iter().map(|(k, v)| (k.as_str(), v.0.as_slice())))
}

/// Every resource's part of the shared outputs, kept between reconciles (see the module
/// documentation). Emptied whenever the controllers start, since a replica that did not lead
/// for a while has missed changes.
#[derive(Debug, Default)]
pub struct SharedOutputs {
    prometheus: Mutex<HashMap<String, PrometheusShare>>,
    alertmanager: Mutex<Option<AlertmanagerShare>>,
}

impl SharedOutputs {
    /// Forgets every part; the next reconcile of each namespace reads its resources again.
    pub fn reset(&self) {
        self.prometheus_shares().clear();
        *self.alertmanager_share() = None;
    }

    fn prometheus_shares(&self) -> std::sync::MutexGuard<'_, HashMap<String, PrometheusShare>> {
        self.prometheus.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn alertmanager_share(&self) -> std::sync::MutexGuard<'_, Option<AlertmanagerShare>> {
        self.alertmanager.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn prometheus_known(&self, namespace: &str, apis: OptionalApis) -> bool {
        self.prometheus_shares()
            .get(namespace)
            .is_some_and(|s| s.apis == apis)
    }

    /// Puts in `part`; the share's version after it, or `None` when the namespace's parts were
    /// rendered for other APIs (they must be read again first).
    fn set_prometheus(
        &self,
        namespace: &str,
        apis: OptionalApis,
        part: &PrometheusPart,
    ) -> Option<u64> {
        let mut shares = self.prometheus_shares();
        let share = shares.get_mut(namespace).filter(|s| s.apis == apis)?;
        share.set(part.clone());
        Some(share.version)
    }

    fn alertmanager_known(&self, apis: OptionalApis) -> bool {
        self.alertmanager_share()
            .as_ref()
            .is_some_and(|s| s.apis.alertmanager_config == apis.alertmanager_config)
    }

    fn set_alertmanager(&self, apis: OptionalApis, routes: &Routes) -> Option<u64> {
        let mut share = self.alertmanager_share();
        let share = share
            .as_mut()
            .filter(|s| s.apis.alertmanager_config == apis.alertmanager_config)?;
        share.set(routes.clone());
        Some(share.version)
    }
}

pub(crate) async fn list<K>(
    ctx: &Context,
    namespace: Option<&str>,
    owner: &str,
) -> Result<Vec<K>, Error>
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

/// Hands `contribution` (rendered for `apis`) to the shared outputs and returns once it is in
/// the cluster: `namespace`'s `vigil-prometheus` ConfigMap and the `vigil-alertmanager` Secret
/// are rewritten (and Prometheus or Alertmanager asked to reload) only when their content
/// changed.
pub async fn contribute(
    ctx: &Context,
    namespace: &str,
    apis: OptionalApis,
    owner: &str,
    contribution: Contribution,
) -> Result<(), Error> {
    let Contribution { prometheus, routes } = contribution;
    if let Some(part) = prometheus {
        share_prometheus(ctx, namespace, apis, owner, &part).await?;
    }
    if let Some(routes) = routes {
        share_routes(ctx, apis, owner, &routes).await?;
    }
    Ok(())
}

async fn share_prometheus(
    ctx: &Context,
    namespace: &str,
    apis: OptionalApis,
    owner: &str,
    part: &PrometheusPart,
) -> Result<(), Error> {
    // A second round only when the APIs changed between reading and putting in; a third
    // change in the meantime is left to the next reconcile.
    for _ in 0..2 {
        learn_prometheus(ctx, namespace, apis, owner).await?;
        if let Some(version) = ctx.shared.set_prometheus(namespace, apis, part) {
            return flush_prometheus(ctx, namespace, version, owner).await;
        }
    }
    Ok(())
}

/// Reads `namespace`'s resources once, when its parts are not known for `apis`.
async fn learn_prometheus(
    ctx: &Context,
    namespace: &str,
    apis: OptionalApis,
    owner: &str,
) -> Result<(), Error> {
    if ctx.shared.prometheus_known(namespace, apis) {
        return Ok(());
    }
    let lock = ctx.lock(&format!("prometheus/{namespace}"));
    let _guard = lock.lock().await;
    if ctx.shared.prometheus_known(namespace, apis) {
        return Ok(());
    }
    let mut share = PrometheusShare::new(apis, ctx.settings.cluster.as_deref());
    if !(apis.pod_monitor && apis.prometheus_rule) {
        let (policies, slos) = if apis.prometheus_rule {
            (Vec::new(), Vec::new())
        } else {
            (
                list::<AlertPolicy>(ctx, Some(namespace), owner).await?,
                list::<Slo>(ctx, Some(namespace), owner).await?,
            )
        };
        let inv = renderable(Inventory {
            apps: list::<MonitoredApp>(ctx, Some(namespace), owner).await?,
            policies,
            slos,
            views: Vec::new(),
        });
        share
            .learn(namespace, &inv, &ctx.settings.outputs.slo_severities)
            .map_err(|source| encode_error(owner, namespace, source))?;
    }
    ctx.shared
        .prometheus_shares()
        .insert(namespace.to_owned(), share);
    Ok(())
}

/// A part of `namespace`'s `vigil-prometheus` ConfigMap that `owner` could not encode.
pub fn encode_error(owner: &str, namespace: &str, source: serde_yaml::Error) -> Error {
    ApplyError::EncodeYaml {
        object: owner.to_owned(),
        child: format!("ConfigMap/{namespace}/{PROMETHEUS_CONFIG_MAP}"),
        source,
    }
    .into()
}

/// Makes the cluster hold every part of `namespace` up to `version`: writes the ConfigMap when
/// its content hash differs from the one last written (or, when the memory is older than one
/// resync period or new, from the one the cluster holds), deletes it when nothing is shared.
async fn flush_prometheus(
    ctx: &Context,
    namespace: &str,
    version: u64,
    owner: &str,
) -> Result<(), Error> {
    let resync = ctx.settings.resync;
    let done = |w: &Option<Written>| {
        w.as_ref()
            .is_some_and(|w| w.version >= version && w.trusted(resync))
    };
    let written = |ctx: &Context| {
        ctx.shared
            .prometheus_shares()
            .get(namespace)
            .map(|s| s.written.clone())
    };
    if written(ctx).is_none_or(|w| done(&w)) {
        return Ok(());
    }
    let lock = ctx.lock(&format!("prometheus/{namespace}"));
    let _guard = lock.lock().await;
    // Another reconcile may have written this part while this one waited for the lock.
    let snapshot = {
        let shares = ctx.shared.prometheus_shares();
        match shares.get(namespace) {
            // Forgotten meanwhile (controllers restarted): the next reconcile reads again.
            None => return Ok(()),
            Some(share) if done(&share.written) => return Ok(()),
            Some(share) => (share.version, share.data(), share.written.clone()),
        }
    };
    let (current, data, last) = snapshot;
    let data = data.map_err(|source| encode_error(owner, namespace, source))?;
    let hash = data.as_ref().map(config_map_hash);
    let last = last.filter(|w| w.trusted(resync));
    let unchanged = match &last {
        Some(last) => last.hash == hash,
        None => cluster_prometheus_hash(ctx, namespace, owner).await? == hash,
    };
    if !unchanged {
        match data {
            Some(data) => {
                write(ctx, owner, &prometheus_config_map_with(namespace, data)).await?;
                ctx.reloader.request(Target::Prometheus);
            }
            None => prune_prometheus(ctx, namespace, owner).await?,
        }
    }
    if let Some(share) = ctx.shared.prometheus_shares().get_mut(namespace) {
        share.written = Some(Written {
            version: current,
            hash,
            at: Instant::now(),
        });
    }
    Ok(())
}

/// The content hash of what `namespace` holds: `None` when no shared ConfigMap exists there.
async fn cluster_prometheus_hash(
    ctx: &Context,
    namespace: &str,
    owner: &str,
) -> Result<Option<String>, Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let found = api
        .list(&ListParams::default().labels(&shared_selector("prometheus")))
        .await
        .map_err(|source| ObserveError::Read {
            object: owner.to_owned(),
            what: format!("the shared ConfigMaps of namespace {namespace}"),
            source,
        })?;
    let mut hash = None;
    for config_map in found.items {
        if config_map.name_any() != PROMETHEUS_CONFIG_MAP {
            // Not a name this operator writes: never equal, so the prune removes it.
            return Ok(Some(String::new()));
        }
        hash = Some(config_map_hash(&config_map.data.unwrap_or_default()));
    }
    Ok(hash)
}

/// Deletes every shared Prometheus ConfigMap of `namespace` (by its labels).
async fn prune_prometheus(ctx: &Context, namespace: &str, owner: &str) -> Result<(), Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let prune_error = |name: &str, source| -> Error {
        ApplyError::Prune {
            object: owner.to_owned(),
            child: format!("ConfigMap/{namespace}/{name}"),
            source,
        }
        .into()
    };
    let found = api
        .list_metadata(&ListParams::default().labels(&shared_selector("prometheus")))
        .await
        .map_err(|source| prune_error(PROMETHEUS_CONFIG_MAP, source))?;
    for object in found.items {
        let name = object.name_any();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(namespace, name, "deleted the shared Prometheus ConfigMap"),
            Err(e) if is_not_found(&e) => {}
            Err(source) => return Err(prune_error(&name, source)),
        }
    }
    Ok(())
}

async fn share_routes(
    ctx: &Context,
    apis: OptionalApis,
    owner: &str,
    routes: &Routes,
) -> Result<(), Error> {
    for _ in 0..2 {
        learn_alertmanager(ctx, apis, owner).await?;
        if let Some(version) = ctx.shared.set_alertmanager(apis, routes) {
            return flush_alertmanager(ctx, version, owner).await;
        }
    }
    Ok(())
}

/// Reads every policy in scope once, when the policies are not known for `apis`.
async fn learn_alertmanager(ctx: &Context, apis: OptionalApis, owner: &str) -> Result<(), Error> {
    if ctx.shared.alertmanager_known(apis) {
        return Ok(());
    }
    let lock = ctx.lock("alertmanager");
    let _guard = lock.lock().await;
    if ctx.shared.alertmanager_known(apis) {
        return Ok(());
    }
    let mut share = AlertmanagerShare {
        apis,
        policies: BTreeMap::new(),
        version: 1,
        written: None,
    };
    if !apis.alertmanager_config {
        let scope = ctx.settings.namespace.as_deref();
        let inv = renderable(Inventory {
            apps: list::<MonitoredApp>(ctx, scope, owner).await?,
            policies: list::<AlertPolicy>(ctx, scope, owner).await?,
            slos: list::<Slo>(ctx, scope, owner).await?,
            views: Vec::new(),
        });
        for policy in &inv.policies {
            share.set(routes_part(policy, apis));
        }
        for objective in &inv.slos {
            share.set(slo_routes_part(objective, apis));
        }
    }
    *ctx.shared.alertmanager_share() = Some(share);
    Ok(())
}

/// Makes the `vigil-alertmanager` Secret hold every policy's routes up to `version`. While
/// prometheus-operator serves `AlertmanagerConfig` the Secret is never created, but one left
/// from before is emptied of its routes.
async fn flush_alertmanager(ctx: &Context, version: u64, owner: &str) -> Result<(), Error> {
    let resync = ctx.settings.resync;
    let done = |w: &Option<Written>| {
        w.as_ref()
            .is_some_and(|w| w.version >= version && w.trusted(resync))
    };
    let written = ctx
        .shared
        .alertmanager_share()
        .as_ref()
        .map(|s| s.written.clone());
    if written.is_none_or(|w| done(&w)) {
        return Ok(());
    }
    let lock = ctx.lock("alertmanager");
    let _guard = lock.lock().await;
    let namespace = &ctx.settings.alertmanager_namespace;
    let (current, desired, create, last) = {
        let share = ctx.shared.alertmanager_share();
        match share.as_ref() {
            None => return Ok(()),
            Some(share) if done(&share.written) => return Ok(()),
            Some(share) => (
                share.version,
                share.secret(
                    namespace,
                    ctx.settings.alertmanager_version,
                    ctx.settings.alertmanager_base.as_deref(),
                ),
                !share.apis.alertmanager_config,
                share.written.clone(),
            ),
        }
    };
    let data = desired.data.clone().unwrap_or_default();
    let hash = Some(secret_hash(&data));
    let unchanged = match last.filter(|w| w.trusted(resync)) {
        Some(last) => last.hash == hash,
        None => {
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
            let existing =
                api.get_opt(ALERTMANAGER_SECRET)
                    .await
                    .map_err(|source| ObserveError::Read {
                        object: owner.to_owned(),
                        what: format!("Secret/{namespace}/{ALERTMANAGER_SECRET}"),
                        source,
                    })?;
            match existing {
                Some(existing) => existing.data.as_ref().map(secret_hash) == hash,
                // Nothing to empty while prometheus-operator routes the alerts.
                None => !create,
            }
        }
    };
    if !unchanged {
        write(ctx, owner, &desired).await?;
        ctx.reloader.request(Target::Alertmanager);
    }
    if let Some(share) = ctx.shared.alertmanager_share().as_mut() {
        share.written = Some(Written {
            version: current,
            hash,
            at: Instant::now(),
        });
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
    K: VigilResource,
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

/// Makes sure `object` carries the finalizer exactly when it feeds a shared output. Returns
/// whether it just switched (prometheus-operator's APIs appeared or went since its last
/// reconcile): then children of kinds the cluster no longer serves are pruned too.
pub async fn join<K>(ctx: &Context, object: &K, shares: Shares) -> Result<bool, ApplyError>
where
    K: VigilResource,
{
    let switched = shares.any() != has_finalizer(object);
    if switched {
        set_finalizer(ctx, object, shares.any()).await?;
    }
    Ok(switched)
}

/// Takes `object`'s parts (`withdrawn`: its contribution with every part empty) out of the
/// shared outputs, for an object that is invalid or whose app is gone; then returns `error`.
pub async fn reject<K>(
    ctx: &Context,
    object: &K,
    withdrawn: Contribution,
    error: impl Into<Error>,
) -> Result<Action, Error>
where
    K: VigilResource,
{
    if has_finalizer(object) {
        let owner = describe(object);
        let apis = ctx.optional_apis(&owner).await?;
        contribute(ctx, &namespace_of(object), apis, &owner, withdrawn).await?;
    }
    Err(error.into())
}

/// Handles the deletion of `object`: withdraws its parts (`withdrawn`: its contribution with
/// every part empty) from the shared outputs, then removes the finalizer so the API server can
/// finish the deletion (and garbage-collect the children it owns).
pub async fn leave<K>(ctx: &Context, object: &K, withdrawn: Contribution) -> Result<Action, Error>
where
    K: VigilResource,
{
    if !has_finalizer(object) {
        return Ok(Action::await_change());
    }
    let owner = describe(object);
    let apis = ctx.optional_apis(&owner).await?;
    contribute(ctx, &namespace_of(object), apis, &owner, withdrawn).await?;
    set_finalizer(ctx, object, false).await?;
    Ok(Action::await_change())
}
