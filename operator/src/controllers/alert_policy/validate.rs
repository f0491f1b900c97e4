//! Validation of an `AlertPolicy` read from the cluster: its `appRef` must name an existing
//! `MonitoredApp`, and the cross-field checks of `crate::manifests` (rule kinds, audiences,
//! receivers, escalation steps) must pass.

use vigil_crds::{AlertPolicy, MonitoredApp};

use crate::controllers::apply::describe;
use crate::controllers::error::ValidateError;
use crate::manifests;
use crate::render::{namespace_of, Inventory};

/// The policy's app, or what is wrong with the policy.
pub fn check(
    policy: &AlertPolicy,
    app: Option<MonitoredApp>,
) -> Result<MonitoredApp, ValidateError> {
    let object = describe(policy);
    let Some(app) = app else {
        return Err(ValidateError::app_not_found(
            &object,
            "spec.appRef",
            &namespace_of(policy),
            &policy.spec.app_ref.name,
        ));
    };
    let inv = Inventory {
        apps: vec![app],
        policies: vec![policy.clone()],
        ..Inventory::default()
    };
    if let Some(e) = ValidateError::from_problems(&object, manifests::check_references(&inv)) {
        return Err(e);
    }
    let Inventory { mut apps, .. } = inv;
    // `apps` holds exactly the one app put in above.
    apps.pop().ok_or_else(|| {
        ValidateError::app_not_found(
            &object,
            "spec.appRef",
            &namespace_of(policy),
            &policy.spec.app_ref.name,
        )
    })
}
