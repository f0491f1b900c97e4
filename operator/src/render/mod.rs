//! Pure renderers: functions from validated resources to the typed artefacts that Prometheus,
//! Alertmanager, Grafana, the agent and Kubernetes consume. No client, no clock, no globals:
//! the same input always gives the same output, which is what makes `vigil-operator render`
//! byte-for-byte reproducible and the live operator's desired state testable.

pub mod agent_config;
pub mod alertmanager;
pub mod alerts;
pub mod dashboards;
pub mod expressions;
pub mod inject;
pub mod outputs;
pub mod rules;
pub mod scrape;
pub mod slo;

#[cfg(test)]
pub(crate) mod promtool_tests;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use sha2::Digest;
use vigil_crds::common::HasGeneratedObjects;
use vigil_crds::{AlertPolicy, DashboardView, MonitoredApp, Slo};

/// The field manager of every server-side apply and the value of `app.kubernetes.io/managed-by`.
pub const MANAGER: &str = "vigil";
/// Label naming the Vigil resource that produced a child, as `<kind>.<name>`.
pub const OWNER_LABEL: &str = "vigil.dev/owner";

/// Every Vigil resource of one render or one reconcile, already validated (see
/// `crate::manifests`): every `appRef` resolves, every field is in range.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub apps: Vec<MonitoredApp>,
    pub policies: Vec<AlertPolicy>,
    pub slos: Vec<Slo>,
    pub views: Vec<DashboardView>,
}

impl Inventory {
    /// The `MonitoredApp` called `name` in `namespace`.
    pub fn app(&self, namespace: &str, name: &str) -> Option<&MonitoredApp> {
        self.apps
            .iter()
            .find(|a| a.name_any() == name && namespace_of(*a) == namespace)
    }

    /// Sorts every list by namespace and name so output order never depends on input order.
    pub fn sorted(mut self) -> Self {
        fn key<K: ResourceExt>(k: &K) -> (String, String) {
            (namespace_of(k), k.name_any())
        }
        self.apps.sort_by_key(key);
        self.policies.sort_by_key(key);
        self.slos.sort_by_key(key);
        self.views.sort_by_key(key);
        self
    }
}

/// The namespace of a namespaced resource (`default` when the manifest omits it, as kubectl
/// would apply it).
pub fn namespace_of<K: ResourceExt>(k: &K) -> String {
    k.namespace().unwrap_or_else(|| "default".to_owned())
}

/// Labels every child object carries: managed-by, and the owner as `<kind>.<name>`.
pub fn child_labels<K: Resource<DynamicType = ()> + ResourceExt>(
    owner: &K,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGER.to_owned(),
        ),
        (
            OWNER_LABEL.to_owned(),
            owner_label_value(&K::kind(&()).to_lowercase(), &owner.name_any()),
        ),
    ])
}

/// `<kind>.<name>` as a label value (at most 63 characters): a longer one is cut and completed
/// with a hash of the whole, so distinct owners keep distinct values.
pub fn owner_label_value(kind: &str, name: &str) -> String {
    let full = format!("{kind}.{name}");
    if full.len() <= 63 {
        return full;
    }
    let hash = hex::encode(sha2::Sha256::digest(full.as_bytes()));
    let head: String = full.chars().take(52).collect();
    let head = head.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{head}-{}", &hash[..10])
}

/// Metadata for a child object of `owner`: same namespace, owner labels, the owner's
/// `spec.generatedObjects` labels and annotations (never replacing Vigil's own labels), and an
/// owner reference when the owner has a uid (it has none when rendered offline from a manifest).
pub fn child_meta<K: Resource<DynamicType = ()> + ResourceExt + HasGeneratedObjects>(
    owner: &K,
    name: String,
) -> ObjectMeta {
    let extras = owner.generated_objects();
    let mut labels = child_labels(owner);
    for (key, value) in &extras.labels {
        labels.entry(key.clone()).or_insert_with(|| value.clone());
    }
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace_of(owner)),
        labels: Some(labels),
        annotations: (!extras.annotations.is_empty()).then(|| extras.annotations.clone()),
        owner_references: owner.uid().map(|uid| {
            vec![OwnerReference {
                api_version: K::api_version(&()).into_owned(),
                kind: K::kind(&()).into_owned(),
                name: owner.name_any(),
                uid,
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]
        }),
        ..ObjectMeta::default()
    }
}

/// Escapes a value for use inside a double-quoted PromQL label matcher.
pub fn promql_str(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The `{namespace="…", app="…"}` matcher selecting one app's series.
pub fn app_matcher(namespace: &str, app: &str) -> String {
    format!(
        r#"namespace="{}", app="{}""#,
        promql_str(namespace),
        promql_str(app)
    )
}

#[cfg(test)]
mod owner_label_tests {
    use super::owner_label_value;

    /// Owner label values stay valid label values (≤ 63 characters, alphanumeric at both ends)
    /// and distinct for long names that share a prefix.
    #[test]
    fn long_owner_names_fit_a_label_value() {
        assert_eq!(owner_label_value("slo", "checkout"), "slo.checkout");
        let a = owner_label_value("monitoredapp", &format!("{}-a", "x".repeat(70)));
        let b = owner_label_value("monitoredapp", &format!("{}-b", "x".repeat(70)));
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        for v in [&a, &b] {
            assert!(v.chars().next().unwrap().is_ascii_alphanumeric());
            assert!(v.chars().last().unwrap().is_ascii_alphanumeric());
        }
    }
}
