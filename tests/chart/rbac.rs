//! The chart's RBAC: what the operator's ServiceAccount is granted (least privilege, and what
//! hardened clusters such as OpenShift require) and the aggregated ClusterRoles for users.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{strings, template, Rendered, CUSTOM, NAMESPACE};

/// The four Vigil kinds, as RBAC names them.
const VIGIL_KINDS: [&str; 4] = ["monitoredapps", "alertpolicies", "slos", "dashboardviews"];

/// The Roles and ClusterRoles the chart binds to the operator's ServiceAccount.
fn operator_roles(rendered: &Rendered) -> Vec<&Value> {
    let account = rendered.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap();
    let bindings = rendered
        .all("ClusterRoleBinding")
        .into_iter()
        .chain(rendered.all("RoleBinding"))
        .filter(|b| {
            b["subjects"].as_array().unwrap().iter().any(|s| {
                s["kind"] == "ServiceAccount" && s["name"] == account && s["namespace"] == NAMESPACE
            })
        });
    let roles: Vec<&Value> = bindings
        .map(|b| {
            let kind = b["roleRef"]["kind"].as_str().unwrap();
            rendered
                .all(kind)
                .into_iter()
                .find(|r| r["metadata"]["name"] == b["roleRef"]["name"])
                .unwrap_or_else(|| panic!("{b} refers to a role the chart does not render"))
        })
        .collect();
    assert!(!roles.is_empty(), "nothing is bound to {account}");
    roles
}

/// Whether any rule of `roles` lets `verb` act on every object of `group`/`resource` (RBAC's
/// matching: a rule limited by resourceNames does not count).
fn grants(roles: &[&Value], group: &str, resource: &str, verb: &str) -> bool {
    roles
        .iter()
        .flat_map(|r| r["rules"].as_array().unwrap())
        .any(|rule| {
            strings(&rule["apiGroups"]).contains(&group)
                && strings(&rule["resources"]).contains(&resource)
                && strings(&rule["verbs"]).contains(&verb)
                && strings(&rule["resourceNames"]).is_empty()
        })
}

/// No role the chart renders (the operator's or the users') has a wildcard; the operator's
/// grant only the resources the operator uses, Secrets only by name in its own namespace, and
/// the webhook configurations only by name.
#[test]
fn rbac_is_least_privilege() {
    for rendered in [template(&[]), template(CUSTOM)] {
        for role in rendered
            .all("ClusterRole")
            .into_iter()
            .chain(rendered.all("Role"))
        {
            for rule in role["rules"].as_array().unwrap() {
                for field in ["verbs", "resources", "apiGroups", "resourceNames"] {
                    assert!(
                        !strings(&rule[field]).contains(&"*"),
                        "wildcard in {field} of {}: {rule}",
                        role["metadata"]["name"]
                    );
                }
            }
        }
        let allowed: BTreeSet<(&str, &str)> = [
            ("vigil.dev", "monitoredapps"),
            ("vigil.dev", "alertpolicies"),
            ("vigil.dev", "slos"),
            ("vigil.dev", "dashboardviews"),
            ("vigil.dev", "monitoredapps/status"),
            ("vigil.dev", "alertpolicies/status"),
            ("vigil.dev", "slos/status"),
            ("vigil.dev", "dashboardviews/status"),
            ("vigil.dev", "monitoredapps/finalizers"),
            ("vigil.dev", "alertpolicies/finalizers"),
            ("vigil.dev", "slos/finalizers"),
            ("vigil.dev", "dashboardviews/finalizers"),
            ("", "namespaces"),
            ("", "pods"),
            ("apps", "deployments"),
            ("apps", "replicasets"),
            ("apps", "statefulsets"),
            ("apps", "controllerrevisions"),
            ("", "configmaps"),
            ("", "events"),
            ("events.k8s.io", "events"),
            ("monitoring.coreos.com", "podmonitors"),
            ("monitoring.coreos.com", "prometheusrules"),
            ("monitoring.coreos.com", "alertmanagerconfigs"),
            ("grafana.integreatly.org", "grafanadashboards"),
            (
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
            ),
            (
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
            ),
            ("coordination.k8s.io", "leases"),
            ("", "secrets"),
        ]
        .into_iter()
        .collect();
        for role in operator_roles(&rendered) {
            let cluster_wide = role["kind"] == "ClusterRole";
            for rule in role["rules"].as_array().unwrap() {
                let verbs = strings(&rule["verbs"]);
                assert!(
                    !verbs.contains(&"escalate")
                        && !verbs.contains(&"bind")
                        && !verbs.contains(&"impersonate")
                );
                for group in strings(&rule["apiGroups"]) {
                    for resource in strings(&rule["resources"]) {
                        assert!(
                            allowed.contains(&(group, resource)),
                            "{group}/{resource} is not used by the operator"
                        );
                        if resource == "secrets" {
                            assert!(!cluster_wide, "Secrets must not be granted cluster-wide");
                            assert!(
                                verbs == ["create"] || rule["resourceNames"].is_array(),
                                "Secret access beyond create must name the Secrets: {rule}"
                            );
                        }
                        if group == "admissionregistration.k8s.io" {
                            assert_eq!(strings(&rule["resourceNames"]), ["vigil"]);
                            assert_eq!(verbs, ["get", "patch"]);
                        }
                        if resource.ends_with("/finalizers") {
                            assert_eq!(verbs, ["update"], "finalizers need update only: {rule}");
                        }
                        if resource == "namespaces" {
                            assert_eq!(verbs, ["get", "list", "watch"], "read only: {rule}");
                        }
                    }
                }
            }
        }
    }
}

/// Where the `OwnerReferencesPermissionEnforcement` admission plugin runs (on by default in
/// OpenShift), a child whose ownerReference sets `blockOwnerDeletion` may only be written by
/// whoever may update the owner's `finalizers`: the operator is granted exactly that for all
/// four Vigil kinds. It also reads Namespaces (their PodSecurity level) and core Events
/// (ReplicaSets' `FailedCreate`), besides writing Events.
#[test]
fn operator_rbac_covers_hardened_clusters() {
    for rendered in [template(&[]), template(CUSTOM)] {
        let roles = operator_roles(&rendered);
        for kind in VIGIL_KINDS {
            let finalizers = format!("{kind}/finalizers");
            assert!(
                grants(&roles, "vigil.dev", &finalizers, "update"),
                "no update on {finalizers}: child writes are forbidden under \
                 OwnerReferencesPermissionEnforcement"
            );
            for verb in ["get", "list", "watch", "patch", "create", "delete"] {
                assert!(
                    !grants(&roles, "vigil.dev", &finalizers, verb),
                    "{verb} on {finalizers} is more than blockOwnerDeletion needs"
                );
            }
        }
        for verb in ["get", "list", "watch"] {
            assert!(grants(&roles, "", "namespaces", verb), "{verb} namespaces");
        }
        for verb in ["list", "watch", "create", "patch"] {
            assert!(grants(&roles, "", "events", verb), "{verb} core events");
        }
        for verb in ["create", "update", "patch", "delete"] {
            assert!(!grants(&roles, "", "namespaces", verb), "{verb} namespaces");
        }
        assert!(!grants(&roles, "", "events", "delete"));
    }
}

/// Every verb any rule of `roles` grants on `group`/`resource`, by name or not.
fn verbs_on<'a>(roles: &[&'a Value], group: &str, resource: &str) -> BTreeSet<&'a str> {
    roles
        .iter()
        .flat_map(|r| r["rules"].as_array().unwrap())
        .filter(|rule| {
            strings(&rule["apiGroups"]).contains(&group)
                && strings(&rule["resources"]).contains(&resource)
        })
        .flat_map(|rule| strings(&rule["verbs"]))
        .collect()
}

/// The operator is granted the verbs its code calls and no others: it discovers optional APIs
/// through the discovery endpoints (no CRD reads), patches its resources (finalizers, status)
/// and never updates them, renews its Lease with update, and writes each of its Secrets the one
/// way it does (server-side apply for `vigil-alertmanager`, update for the webhook's).
#[test]
fn operator_rbac_grants_only_the_verbs_used() {
    for rendered in [template(&[]), template(CUSTOM)] {
        let roles = operator_roles(&rendered);
        let verbs = |group: &str, resource: &str| -> Vec<&str> {
            verbs_on(&roles, group, resource).into_iter().collect()
        };
        assert_eq!(
            verbs("apiextensions.k8s.io", "customresourcedefinitions"),
            Vec::<&str>::new()
        );
        for kind in VIGIL_KINDS {
            assert_eq!(verbs("vigil.dev", kind), ["get", "list", "patch", "watch"]);
            assert_eq!(verbs("vigil.dev", &format!("{kind}/status")), ["patch"]);
        }
        assert_eq!(
            verbs("coordination.k8s.io", "leases"),
            ["create", "get", "update"]
        );
        let secret_rules: Vec<(Vec<&str>, Vec<&str>)> = roles
            .iter()
            .flat_map(|r| r["rules"].as_array().unwrap())
            .filter(|rule| strings(&rule["resources"]).contains(&"secrets"))
            .map(|rule| (strings(&rule["resourceNames"]), strings(&rule["verbs"])))
            .collect();
        let expected_secrets = if rendered.all("Certificate").is_empty() {
            vec![
                (vec![], vec!["create"]),
                (vec!["vigil-alertmanager"], vec!["get", "patch"]),
                (vec!["vigil-webhook-tls"], vec!["get", "update"]),
            ]
        } else {
            vec![
                (vec![], vec!["create"]),
                (vec!["vigil-alertmanager"], vec!["get", "patch"]),
            ]
        };
        assert_eq!(secret_rules, expected_secrets);
    }
}

/// Users holding the built-in `admin` or `edit` role in a namespace may manage Vigil's
/// resources there, and `view` may read them and their status: two ClusterRoles carry
/// Kubernetes' aggregation labels and name only the four kinds; the chart binds them to no one;
/// rbac.aggregateToDefaultRoles=false leaves them out.
#[test]
fn aggregated_user_roles_extend_admin_edit_and_view() {
    let rendered = template(&[]);
    let role = |suffix: &str| {
        rendered
            .all("ClusterRole")
            .into_iter()
            .find(|r| r["metadata"]["name"] == format!("vigil-{suffix}"))
            .unwrap_or_else(|| panic!("no vigil-{suffix} ClusterRole"))
    };
    let aggregation = |role: &Value| -> BTreeSet<String> {
        role["metadata"]["labels"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("rbac.authorization.k8s.io/aggregate-to-"))
            .map(|(k, v)| {
                assert_eq!(v, "true", "{k}");
                k.trim_start_matches("rbac.authorization.k8s.io/aggregate-to-")
                    .to_owned()
            })
            .collect()
    };
    let edit = role("edit");
    let view = role("view");
    assert_eq!(
        aggregation(edit),
        BTreeSet::from(["admin".into(), "edit".into()])
    );
    assert_eq!(aggregation(view), BTreeSet::from(["view".into()]));

    let rules = |role: &Value| -> BTreeSet<(String, String, String)> {
        let mut all = BTreeSet::new();
        for rule in role["rules"].as_array().unwrap() {
            assert!(rule.get("resourceNames").is_none(), "{rule}");
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        all.insert((group.to_owned(), resource.to_owned(), verb.to_owned()));
                    }
                }
            }
        }
        all
    };
    let expected = |resources: &[String], verbs: &[&str]| -> BTreeSet<(String, String, String)> {
        resources
            .iter()
            .flat_map(|r| {
                verbs
                    .iter()
                    .map(move |v| ("vigil.dev".to_owned(), r.clone(), (*v).to_owned()))
            })
            .collect()
    };
    let kinds: Vec<String> = VIGIL_KINDS.iter().map(|k| (*k).to_owned()).collect();
    let with_status: Vec<String> = VIGIL_KINDS
        .iter()
        .flat_map(|k| [(*k).to_owned(), format!("{k}/status")])
        .collect();
    assert_eq!(
        rules(edit),
        expected(
            &kinds,
            &["create", "update", "patch", "delete", "get", "list", "watch"]
        ),
        "editors manage the four kinds; status stays the operator's"
    );
    assert_eq!(
        rules(view),
        expected(&with_status, &["get", "list", "watch"])
    );

    for binding in rendered
        .all("ClusterRoleBinding")
        .into_iter()
        .chain(rendered.all("RoleBinding"))
    {
        let bound = &binding["roleRef"]["name"];
        assert!(
            *bound != edit["metadata"]["name"] && *bound != view["metadata"]["name"],
            "the user roles are for aggregation, not bound by the chart: {binding}"
        );
    }

    let off = template(&["--set", "rbac.aggregateToDefaultRoles=false"]);
    let names: Vec<&Value> = off
        .all("ClusterRole")
        .into_iter()
        .map(|r| &r["metadata"]["name"])
        .collect();
    assert_eq!(names, ["vigil"], "only the operator's ClusterRole");
}
