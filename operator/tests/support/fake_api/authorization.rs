//! RBAC for the fake API server: requests that carry a ServiceAccount token from
//! [`super::FakeApiServer::service_account_token`] are authorized against the stored Roles,
//! ClusterRoles and their bindings, as kube-apiserver's RBAC authorizer does; every other
//! request is an administrator's.

use serde_json::Value;

use super::State;

/// Prefix of the fake ServiceAccount tokens: `system:serviceaccount:<namespace>:<name>`.
const PREFIX: &str = "system:serviceaccount:";

/// The ServiceAccount user a request authenticates as, if any.
pub(super) fn service_account(headers: &http::HeaderMap) -> Option<(String, String)> {
    let token = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    let (namespace, name) = token.strip_prefix(PREFIX)?.split_once(':')?;
    Some((namespace.to_owned(), name.to_owned()))
}

/// The token a ServiceAccount's pods would present.
pub(super) fn token(namespace: &str, name: &str) -> String {
    format!("{PREFIX}{namespace}:{name}")
}

/// What one request asks to do, in RBAC's terms.
#[derive(Debug)]
pub(super) struct Attributes<'a> {
    pub(super) verb: &'a str,
    pub(super) group: &'a str,
    pub(super) resource: &'a str,
    pub(super) subresource: Option<&'a str>,
    /// `None` for cluster-scoped kinds and for requests across all namespaces.
    pub(super) namespace: Option<&'a str>,
    /// `None` for create, list and watch.
    pub(super) name: Option<&'a str>,
}

impl Attributes<'_> {
    /// The API server's message when the request is denied.
    pub(super) fn denial(&self, user: &(String, String)) -> String {
        let resource = match self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.to_owned(),
        };
        let object = match self.name {
            Some(name) => format!("{resource} {name:?}"),
            None => resource.clone(),
        };
        let scope = match self.namespace {
            Some(ns) => format!("in the namespace {ns:?}"),
            None => "at the cluster scope".to_owned(),
        };
        format!(
            "{object} is forbidden: User \"{PREFIX}{}:{}\" cannot {} resource {resource:?} in API group {:?} {scope}",
            user.0, user.1, self.verb, self.group
        )
    }
}

fn contains(list: &Value, wanted: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|v| v == "*" || v == wanted))
}

fn rule_allows(rule: &Value, attributes: &Attributes<'_>) -> bool {
    let resource = match attributes.subresource {
        Some(sub) => format!("{}/{sub}", attributes.resource),
        None => attributes.resource.to_owned(),
    };
    let names_ok = match rule["resourceNames"].as_array() {
        None => true,
        Some(names) if names.is_empty() => true,
        Some(names) => attributes
            .name
            .is_some_and(|name| names.iter().any(|n| n == name)),
    };
    contains(&rule["verbs"], attributes.verb)
        && contains(&rule["apiGroups"], attributes.group)
        && contains(&rule["resources"], &resource)
        && names_ok
}

fn binds(binding: &Value, user: &(String, String)) -> bool {
    binding["subjects"].as_array().is_some_and(|subjects| {
        subjects.iter().any(|s| {
            s["kind"] == "ServiceAccount" && s["namespace"] == user.0 && s["name"] == user.1
        })
    })
}

fn stored<'a>(state: &'a State, plural: &str, namespace: &str) -> Vec<&'a Value> {
    state
        .objects
        .get(&("rbac.authorization.k8s.io/v1".to_owned(), plural.to_owned()))
        .and_then(|by_ns| by_ns.get(namespace))
        .map(|by_name| by_name.values().collect())
        .unwrap_or_default()
}

fn role<'a>(state: &'a State, role_ref: &Value, namespace: &str) -> Option<&'a Value> {
    let name = role_ref["name"].as_str()?;
    let (plural, ns) = match role_ref["kind"].as_str()? {
        "ClusterRole" => ("clusterroles", ""),
        _ => ("roles", namespace),
    };
    stored(state, plural, ns)
        .into_iter()
        .find(|r| r["metadata"]["name"] == name)
}

fn role_allows(role: Option<&Value>, attributes: &Attributes<'_>) -> bool {
    role.and_then(|r| r["rules"].as_array())
        .is_some_and(|rules| rules.iter().any(|rule| rule_allows(rule, attributes)))
}

/// Whether `user` may do what `attributes` describe under the stored RBAC objects.
pub(super) fn allowed(state: &State, user: &(String, String), attributes: &Attributes<'_>) -> bool {
    let cluster_wide = stored(state, "clusterrolebindings", "")
        .into_iter()
        .filter(|b| binds(b, user))
        .any(|b| role_allows(role(state, &b["roleRef"], ""), attributes));
    if cluster_wide {
        return true;
    }
    let Some(namespace) = attributes.namespace else {
        return false;
    };
    stored(state, "rolebindings", namespace)
        .into_iter()
        .filter(|b| binds(b, user))
        .any(|b| role_allows(role(state, &b["roleRef"], namespace), attributes))
}
