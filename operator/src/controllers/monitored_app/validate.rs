//! Validation of a `MonitoredApp` read from the cluster: the cross-field checks of
//! `crate::manifests` (the API server has already applied the schema and CEL rules) and a
//! selector the API server can evaluate.

use std::path::PathBuf;

use kube::core::Selector;
use vigil_crds::MonitoredApp;

use crate::controllers::apply::describe;
use crate::controllers::error::ValidateError;
use crate::manifests::{self, Problem};
use crate::render::Inventory;

/// The app's pod selector, or every problem with the spec.
pub fn check(app: &MonitoredApp) -> Result<Selector, ValidateError> {
    let object = describe(app);
    let inv = Inventory {
        apps: vec![app.clone()],
        ..Inventory::default()
    };
    if let Some(e) = ValidateError::from_problems(&object, manifests::check_references(&inv)) {
        return Err(e);
    }
    Selector::try_from(app.spec.selector.clone()).map_err(|e| ValidateError::InvalidSpec {
        object: object.clone(),
        problems: vec![Problem {
            file: PathBuf::new(),
            object: Some(object),
            field: Some("spec.selector".to_owned()),
            message: format!("{e}; fix the matchExpressions operator or values"),
        }],
    })
}
