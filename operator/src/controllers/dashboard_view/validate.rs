//! Validation of a `DashboardView` read from the cluster: every name in `apps` must be an
//! existing `MonitoredApp`, and the cross-field checks of `crate::manifests` must pass.

use vigil_crds::{DashboardView, MonitoredApp};

use crate::controllers::apply::describe;
use crate::controllers::error::ValidateError;
use crate::manifests;
use crate::render::{namespace_of, Inventory};

/// The view and its apps as an inventory for the renderer, or what is wrong with the view.
/// `apps` holds one entry per name in `spec.apps`, `None` where no such app exists.
pub fn check(
    view: &DashboardView,
    apps: Vec<Option<MonitoredApp>>,
) -> Result<Inventory, ValidateError> {
    let object = describe(view);
    let mut found = Vec::new();
    for (i, (name, app)) in view.spec.apps.iter().zip(apps).enumerate() {
        match app {
            Some(app) => found.push(app),
            None => {
                return Err(ValidateError::app_not_found(
                    &object,
                    &format!("spec.apps[{i}]"),
                    &namespace_of(view),
                    name,
                ))
            }
        }
    }
    let inv = Inventory {
        apps: found,
        views: vec![view.clone()],
        ..Inventory::default()
    };
    match ValidateError::from_problems(&object, manifests::check_references(&inv)) {
        Some(e) => Err(e),
        None => Ok(inv),
    }
}
