//! Which application a pod or workload belongs to, for the `app` label of the cluster signals:
//! the `MonitoredApp` whose selector matches its (template) labels, else its
//! `app.kubernetes.io/name` or `app` label. The same name is what the alert rules and dashboards
//! select on (`app="<MonitoredApp name>"`), so the signals join the app's own series.

use std::collections::{BTreeMap, HashSet};

use kube::core::{Selector, SelectorExt};
use kube::ResourceExt;
use vigil_crds::monitored_app::{ReleaseSource, ReleaseSpec};
use vigil_crds::MonitoredApp;

use crate::render::inject::image_tag;
use crate::render::namespace_of;

/// Pod labels naming an application when no `MonitoredApp` selects the pod, in order of
/// preference.
pub const APP_NAME_LABELS: [&str; 2] = ["app.kubernetes.io/name", "app"];

/// One `MonitoredApp` as the signals need it.
#[derive(Clone, Debug)]
struct AppEntry {
    /// `None` when the selector cannot be parsed: it then selects nothing (validation reports
    /// it on the resource).
    selector: Option<Selector>,
    release: ReleaseSpec,
}

/// The application a pod or pod template belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedApp<'a> {
    /// Value of the `app` label.
    pub name: &'a str,
    /// Where the version is read from: the `MonitoredApp`'s `release`, or the default
    /// (`app.kubernetes.io/version`) for apps known only by a label.
    pub release: &'a ReleaseSpec,
}

/// The `MonitoredApp`s of the cluster, by namespace and name.
#[derive(Debug, Default)]
pub struct AppIndex {
    apps: BTreeMap<String, BTreeMap<String, AppEntry>>,
    default_release: ReleaseSpec,
    /// `(namespace, name)` of apps seen since the last [`AppIndex::begin_relist`].
    relisted: Option<HashSet<(String, String)>>,
}

impl AppIndex {
    /// Records a created or changed `MonitoredApp`.
    pub fn apply(&mut self, app: &MonitoredApp) {
        let (namespace, name) = (namespace_of(app), app.name_any());
        if let Some(seen) = &mut self.relisted {
            seen.insert((namespace.clone(), name.clone()));
        }
        let entry = AppEntry {
            selector: Selector::try_from(app.spec.selector.clone()).ok(),
            release: app.spec.release.clone(),
        };
        self.apps.entry(namespace).or_default().insert(name, entry);
    }

    /// Forgets a deleted `MonitoredApp`.
    pub fn delete(&mut self, app: &MonitoredApp) {
        let namespace = namespace_of(app);
        if let Some(apps) = self.apps.get_mut(&namespace) {
            apps.remove(&app.name_any());
            if apps.is_empty() {
                self.apps.remove(&namespace);
            }
        }
    }

    /// Starts a full re-list (the watch restarted): apps not applied again before
    /// [`AppIndex::end_relist`] were deleted meanwhile.
    pub fn begin_relist(&mut self) {
        self.relisted = Some(HashSet::new());
    }

    /// Ends a re-list, forgetting the apps it did not contain.
    pub fn end_relist(&mut self) {
        let Some(seen) = self.relisted.take() else {
            return;
        };
        for (namespace, apps) in &mut self.apps {
            apps.retain(|name, _| seen.contains(&(namespace.clone(), name.clone())));
        }
        self.apps.retain(|_, apps| !apps.is_empty());
    }

    /// Number of `MonitoredApp`s known.
    pub fn len(&self) -> usize {
        self.apps.values().map(BTreeMap::len).sum()
    }

    /// Whether no `MonitoredApp` is known.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// The application of a pod (or pod template) with `labels` in `namespace`: the first
    /// `MonitoredApp` by name whose selector matches, else the pod's application-name label;
    /// `None` when neither exists.
    pub fn resolve<'a>(
        &'a self,
        namespace: &str,
        labels: &'a BTreeMap<String, String>,
    ) -> Option<ResolvedApp<'a>> {
        let selected = self.apps.get(namespace).and_then(|apps| {
            apps.iter().find(|(_, entry)| {
                entry
                    .selector
                    .as_ref()
                    .is_some_and(|selector| selector.matches(labels))
            })
        });
        if let Some((name, entry)) = selected {
            return Some(ResolvedApp {
                name,
                release: &entry.release,
            });
        }
        APP_NAME_LABELS
            .iter()
            .find_map(|key| labels.get(*key))
            .filter(|name| !name.is_empty())
            .map(|name| ResolvedApp {
                name,
                release: &self.default_release,
            })
    }
}

/// What the signals keep of a pod template: its labels and its containers' images.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateSummary {
    /// The template's labels.
    pub labels: BTreeMap<String, String>,
    /// `(container name, image)` of the regular containers, in order.
    pub images: Vec<(String, String)>,
}

/// The agent's value for the version when the release label or image tag is missing.
pub const UNKNOWN_VERSION: &str = "unknown";

impl TemplateSummary {
    /// The image of the container the release is read from: `release.container`, else the
    /// first container.
    pub fn release_image(&self, release: &ReleaseSpec) -> Option<&str> {
        let found = match &release.container {
            Some(name) => self.images.iter().find(|(n, _)| n == name),
            None => self.images.first(),
        };
        found.map(|(_, image)| image.as_str())
    }

    /// The version pods of this template report, computed exactly as the injected agent does
    /// (the release label, or the release container's image tag), so release series join the
    /// agent's crash series on `version`; [`UNKNOWN_VERSION`] when absent.
    pub fn version(&self, release: &ReleaseSpec) -> String {
        let found = match release.source {
            ReleaseSource::Label => self.labels.get(&release.label).map(String::as_str),
            ReleaseSource::ImageTag => self.release_image(release).and_then(image_tag),
        };
        found
            .filter(|v| !v.is_empty())
            .unwrap_or(UNKNOWN_VERSION)
            .to_owned()
    }
}
