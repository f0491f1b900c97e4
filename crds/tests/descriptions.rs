//! What `kubectl explain` shows: every CRD describes itself in its own words at the root and on
//! `spec`, never with the derive macro's placeholder.
#![allow(clippy::expect_used, reason = "test code")]

#[test]
fn every_crd_describes_itself() {
    for crd in vigil_crds::crds() {
        let kind = &crd.spec.names.kind;
        for version in &crd.spec.versions {
            let schema = version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("schema");
            let root = schema.description.as_deref().unwrap_or_default();
            assert!(
                root.contains(kind.as_str()) && !root.contains("Auto-generated"),
                "{kind}: root description is {root:?}"
            );
            let spec = schema
                .properties
                .as_ref()
                .and_then(|p| p.get("spec"))
                .and_then(|s| s.description.as_deref())
                .unwrap_or_default();
            assert!(spec.len() > 40, "{kind}: spec description is {spec:?}");
        }
    }
}
