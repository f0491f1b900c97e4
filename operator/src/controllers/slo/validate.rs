//! Validation of an `SLO` read from the cluster: its `appRef` must name an existing
//! `MonitoredApp`, and the cross-field checks of `crate::manifests` (window length, queries,
//! and that every burn-rate alert reaches a receiver: its own, or one of the `policies`' of
//! its namespace) must pass.

use vigil_crds::{AlertPolicy, MonitoredApp, Slo};

use crate::controllers::apply::describe;
use crate::controllers::error::ValidateError;
use crate::manifests;
use crate::render::{namespace_of, Inventory};

/// The objective's app, or what is wrong with the objective.
pub fn check(
    slo: &Slo,
    app: Option<MonitoredApp>,
    policies: Vec<AlertPolicy>,
) -> Result<MonitoredApp, ValidateError> {
    let object = describe(slo);
    let missing = || {
        ValidateError::app_not_found(
            &object,
            "spec.appRef",
            &namespace_of(slo),
            &slo.spec.app_ref.name,
        )
    };
    let Some(app) = app else {
        return Err(missing());
    };
    let inv = Inventory {
        apps: vec![app],
        slos: vec![slo.clone()],
        policies,
        ..Inventory::default()
    };
    // Only the objective's own problems count: the policies report theirs in their status.
    if let Some(e) = ValidateError::from_problems(&object, manifests::check_references(&inv)) {
        return Err(e);
    }
    let Inventory { mut apps, .. } = inv;
    // `apps` holds exactly the one app put in above.
    apps.pop().ok_or_else(missing)
}
