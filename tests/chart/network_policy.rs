//! The chart's optional NetworkPolicy: off by default; when on, the operator's pods admit
//! ingress only to the webhook port (from the configured peers, anywhere by default) and the
//! metrics port (from pods of the selected namespaces), and nothing else.

use serde_json::{json, Value};

use super::{template, validate_offline, Rendered};

/// The container port named `name` of the operator's Deployment.
fn container_port(rendered: &Rendered, name: &str) -> Value {
    let deployment = rendered.one("Deployment");
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no container port {name}"))["containerPort"]
        .clone()
}

/// The ingress rule of `policy` admitting `port`.
fn rule_for<'a>(policy: &'a Value, port: &Value) -> &'a Value {
    let rules: Vec<&Value> = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| &p["port"] == port)
        })
        .collect();
    assert_eq!(rules.len(), 1, "one rule for port {port}: {policy}");
    rules[0]
}

/// Without `networkPolicy.enabled` no NetworkPolicy is rendered.
#[test]
fn network_policy_is_off_by_default() {
    assert!(template(&[]).all("NetworkPolicy").is_empty());
}

/// With the defaults, the policy selects exactly the operator's pods, restricts ingress only,
/// admits the webhook port from anywhere (the API server's source cannot be selected
/// portably) and the metrics port from pods of every namespace, and nothing else; it is a
/// valid NetworkPolicy for every supported Kubernetes version.
#[test]
fn network_policy_admits_only_the_webhook_and_metrics_ports() {
    let rendered = template(&["--set", "networkPolicy.enabled=true"]);
    validate_offline(&rendered);
    let policy = rendered.one("NetworkPolicy");
    let pod_labels = &rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"];
    let selector = policy["spec"]["podSelector"]["matchLabels"]
        .as_object()
        .unwrap();
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(
            &pod_labels[key], value,
            "{key} does not select the operator's pods"
        );
    }
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
    let ingress = policy["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 2, "{policy}");
    for rule in ingress {
        for port in rule["ports"].as_array().unwrap() {
            assert_eq!(port["protocol"], "TCP");
        }
        assert_eq!(rule["ports"].as_array().unwrap().len(), 1, "{rule}");
    }
    let webhook = rule_for(policy, &container_port(&rendered, "webhook"));
    assert!(
        webhook.get("from").is_none(),
        "webhook from anywhere: {webhook}"
    );
    let metrics = rule_for(policy, &container_port(&rendered, "metrics"));
    assert_eq!(metrics["from"], json!([{ "namespaceSelector": {} }]));
}

/// Configured peers restrict the webhook port, and a namespace selector the metrics port; a
/// custom webhook port is followed.
#[test]
fn network_policy_follows_the_configured_peers() {
    let rendered = template(&[
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "webhook.port=10443",
        "--set",
        "networkPolicy.webhookFrom[0].ipBlock.cidr=10.0.0.0/24",
        "--set",
        "networkPolicy.metricsNamespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
    ]);
    validate_offline(&rendered);
    let policy = rendered.one("NetworkPolicy");
    let webhook = rule_for(policy, &json!(10443));
    assert_eq!(
        webhook["from"],
        json!([{ "ipBlock": { "cidr": "10.0.0.0/24" } }])
    );
    assert_eq!(container_port(&rendered, "webhook"), json!(10443));
    let metrics = rule_for(policy, &container_port(&rendered, "metrics"));
    assert_eq!(
        metrics["from"],
        json!([{ "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "monitoring" } } }])
    );
}
