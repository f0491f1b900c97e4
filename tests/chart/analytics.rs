//! The analytics engine's objects (`analytics.enabled`): off by default, and when on a
//! Deployment running `vigil-operator analytics` with the flags of the values, hardened like the
//! operator's pod, its own least-privilege RBAC, a `metrics` Service and a ServiceMonitor
//! beside the operator's, none of which selects the operator's pods (nor the operator's the
//! engine's).

use std::collections::BTreeSet;

use serde_json::Value;
use vigil_tests::{repo_root, run, run_ok};

use super::pod_security;
use super::{strings, template, validate_offline, Rendered, NAMESPACE};

const COMPONENT: &str = "app.kubernetes.io/component";

/// The engine with every Prometheus option: basic auth from a Secret (a bearer token is the
/// other choice, see below), a Mimir tenant header, a CA bundle, and a ServiceMonitor.
const ANALYTICS: &[&str] = &[
    "--set",
    "analytics.enabled=true",
    "--set",
    "analytics.prometheus.url=https://mimir.example.com/prometheus",
    "--set",
    "analytics.prometheus.basicAuthSecret.name=mimir-basic",
    "--set",
    "analytics.prometheus.headers.X-Scope-OrgID=tenant-1",
    "--set",
    "analytics.prometheus.caConfigMap.name=mimir-ca",
    "--set",
    "analytics.refitInterval=30m",
    "--set",
    "analytics.step=30s",
    "--set",
    "analytics.replicas=2",
    "--set",
    "serviceMonitor.enabled=true",
];

/// Objects of the chart whose component label is `analytics`.
fn analytics_objects(rendered: &Rendered) -> Vec<&Value> {
    rendered
        .objects
        .iter()
        .filter(|o| o["metadata"]["labels"][COMPONENT] == "analytics")
        .collect()
}

fn analytics_deployment(rendered: &Rendered) -> &Value {
    let found: Vec<&Value> = rendered
        .all("Deployment")
        .into_iter()
        .filter(|d| d["metadata"]["labels"][COMPONENT] == "analytics")
        .collect();
    assert_eq!(found.len(), 1, "expected one analytics Deployment");
    found[0]
}

/// Off by default: no object of the engine. Turned on without a Prometheus URL the chart
/// refuses to render, naming the value.
#[test]
fn analytics_is_off_by_default_and_needs_a_prometheus_url() {
    let rendered = template(&[]);
    assert!(analytics_objects(&rendered).is_empty());
    assert!(!rendered.yaml.contains("vigil-analytics"));
    let out = run(
        "helm",
        &[
            "template",
            "vigil",
            "charts/vigil",
            "--set",
            "analytics.enabled=true",
        ],
        &repo_root(),
    );
    assert!(!out.success, "rendered without a Prometheus URL");
    assert!(
        out.stderr
            .contains("analytics.prometheus.url is required when analytics.enabled is true"),
        "{}",
        out.stderr
    );

    // A bearer token instead of basic auth; both at once is refused (the engine takes one).
    let token = [
        "--set",
        "analytics.enabled=true",
        "--set",
        "analytics.prometheus.url=http://prometheus:9090",
        "--set",
        "analytics.prometheus.bearerTokenSecret.name=mimir-token",
        "--set",
        "analytics.prometheus.bearerTokenSecret.key=token",
    ];
    let rendered = template(&token);
    let args = strings(
        &analytics_deployment(&rendered)["spec"]["template"]["spec"]["containers"][0]["args"],
    );
    assert!(
        args.contains(&"--prometheus-bearer-token-file=/etc/vigil/prometheus/bearer/token"),
        "{args:?}"
    );
    let mut both = vec!["template", "vigil", "charts/vigil"];
    both.extend_from_slice(&token);
    both.extend_from_slice(&[
        "--set",
        "analytics.prometheus.basicAuthSecret.name=mimir-basic",
    ]);
    let out = run("helm", &both, &repo_root());
    assert!(!out.success, "rendered with two kinds of credentials");
    assert!(out.stderr.contains("not both"), "{}", out.stderr);
}

/// Enabled, every object is valid Kubernetes (strict offline schemas) and lints strictly; the
/// Deployment runs `vigil-operator analytics` with the contract's flags from the values, reads
/// credentials only from mounted files, passes PodSecurity `restricted`, and the Service and
/// ServiceMonitor select its pods and not the operator's.
#[test]
fn analytics_renders_valid_hardened_objects() {
    let mut lint = vec!["lint", "--strict", "charts/vigil"];
    lint.extend_from_slice(ANALYTICS);
    run_ok("helm", &lint, &repo_root());
    let rendered = template(ANALYTICS);
    validate_offline(&rendered);
    let kinds: BTreeSet<&str> = analytics_objects(&rendered)
        .iter()
        .filter_map(|o| o["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ])
    );

    let deployment = analytics_deployment(&rendered);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    let violations = pod_security::restricted_violations(pod);
    assert!(violations.is_empty(), "{violations:?}");
    let container = &pod["containers"][0];
    let args = strings(&container["args"]);
    for expected in [
        "analytics",
        "--prometheus-url=https://mimir.example.com/prometheus",
        "--prometheus-basic-auth-username-file=/etc/vigil/prometheus/basic-auth/username",
        "--prometheus-basic-auth-password-file=/etc/vigil/prometheus/basic-auth/password",
        "--prometheus-header=X-Scope-OrgID=tenant-1",
        "--prometheus-ca-file=/etc/vigil/prometheus/ca/ca.crt",
        "--refit-interval=30m",
        "--step=30s",
        "--listen=0.0.0.0:8090",
        "--operator-namespace=$(POD_NAMESPACE)",
        "--identity=$(POD_NAME)",
    ] {
        assert!(args.contains(&expected), "{expected} missing from {args:?}");
    }
    assert_eq!(args[0], "analytics");
    // The flags exactly as the chart passes them, parsed by the engine's own definitions (a
    // renamed flag fails here, not in a cluster).
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        engine: vigil_operator::analytics::engine::EngineArgs,
    }
    let flags = args[1..].iter().map(|a| {
        a.replace("$(POD_NAMESPACE)", "vigil-system")
            .replace("$(POD_NAME)", "vigil-analytics-0")
    });
    let parsed =
        <Cli as clap::Parser>::try_parse_from(std::iter::once("analytics".to_owned()).chain(flags))
            .expect("the chart's analytics flags parse");
    let settings = parsed.engine.run_settings();
    assert_eq!((settings.step, settings.refit_interval), (30, 1800));
    // Every mounted file comes from the named Secret or ConfigMap, under the key the values say.
    let volumes: Vec<(String, String)> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| {
            let source = v["secret"]["secretName"]
                .as_str()
                .or(v["configMap"]["name"].as_str())?;
            let keys = v["secret"]["items"]
                .as_array()
                .or(v["configMap"]["items"].as_array())?
                .iter()
                .map(|i| {
                    format!(
                        "{}->{}",
                        i["key"].as_str().unwrap(),
                        i["path"].as_str().unwrap()
                    )
                })
                .collect::<Vec<_>>()
                .join(",");
            Some((source.to_owned(), keys))
        })
        .collect();
    assert_eq!(
        volumes,
        vec![
            (
                "mimir-basic".to_owned(),
                "username->username,password->password".to_owned()
            ),
            ("mimir-ca".to_owned(), "ca.crt->ca.crt".to_owned()),
        ]
    );
    let ports = &container["ports"];
    assert_eq!(ports[0]["name"], "metrics");
    assert_eq!(ports[0]["containerPort"], 8090);

    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let operator = rendered
        .all("Deployment")
        .into_iter()
        .find(|d| d["metadata"]["labels"][COMPONENT] == "operator")
        .expect("the operator's Deployment");
    let operator_labels = &operator["spec"]["template"]["metadata"]["labels"];
    let selects = |selector: &Value, labels: &Value| {
        selector
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| &labels[k] == v)
    };
    let service = rendered
        .all("Service")
        .into_iter()
        .find(|s| s["metadata"]["labels"][COMPONENT] == "analytics")
        .unwrap();
    assert_eq!(service["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(service["spec"]["ports"][0]["port"], 8090);
    assert!(selects(&service["spec"]["selector"], pod_labels));
    assert!(!selects(&service["spec"]["selector"], operator_labels));
    for monitor in rendered.all("ServiceMonitor") {
        let matched = &monitor["spec"]["selector"]["matchLabels"];
        let ours = monitor["metadata"]["labels"][COMPONENT] == "analytics";
        assert_eq!(selects(matched, pod_labels), ours, "{monitor}");
        assert_eq!(monitor["spec"]["endpoints"][0]["honorLabels"], true);
        assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    }
    assert!(!selects(
        &operator["spec"]["selector"]["matchLabels"],
        pod_labels
    ));
    assert!(!selects(
        &deployment["spec"]["selector"]["matchLabels"],
        operator_labels
    ));
}

/// The engine's ServiceAccount is granted exactly what it does: read AlertPolicies, SLOs and
/// MonitoredApps (whose request metrics an SLO's raw error ratio reads),
/// patch their status (the `Analytics` condition), create Events, and its own Lease by name in the release namespace.
#[test]
fn analytics_rbac_is_least_privilege() {
    let rendered = template(ANALYTICS);
    let account = analytics_deployment(&rendered)["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut grants = BTreeSet::new();
    for binding in rendered
        .all("ClusterRoleBinding")
        .into_iter()
        .chain(rendered.all("RoleBinding"))
    {
        let bound = binding["subjects"].as_array().unwrap().iter().any(|s| {
            s["kind"] == "ServiceAccount"
                && s["name"] == account.as_str()
                && s["namespace"] == NAMESPACE
        });
        if !bound {
            continue;
        }
        let kind = binding["roleRef"]["kind"].as_str().unwrap();
        let role = rendered
            .all(kind)
            .into_iter()
            .find(|r| r["metadata"]["name"] == binding["roleRef"]["name"])
            .expect("bound role is rendered");
        for rule in role["rules"].as_array().unwrap() {
            let names = strings(&rule["resourceNames"]).join(",");
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        assert!(
                            ![group, resource, verb].contains(&"*"),
                            "wildcard in {role}"
                        );
                        grants.insert(format!("{kind} {group}/{resource} {verb} {names}"));
                    }
                }
            }
        }
    }
    let expected: BTreeSet<String> = [
        "ClusterRole vigil.dev/alertpolicies get ",
        "ClusterRole vigil.dev/alertpolicies list ",
        "ClusterRole vigil.dev/alertpolicies watch ",
        "ClusterRole vigil.dev/slos get ",
        "ClusterRole vigil.dev/slos list ",
        "ClusterRole vigil.dev/slos watch ",
        "ClusterRole vigil.dev/monitoredapps get ",
        "ClusterRole vigil.dev/monitoredapps list ",
        "ClusterRole vigil.dev/monitoredapps watch ",
        "ClusterRole vigil.dev/alertpolicies/status patch ",
        "ClusterRole vigil.dev/slos/status patch ",
        "ClusterRole /events create ",
        "ClusterRole events.k8s.io/events create ",
        "Role coordination.k8s.io/leases create ",
        "Role coordination.k8s.io/leases get vigil-analytics",
        "Role coordination.k8s.io/leases update vigil-analytics",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(grants, expected);
}

/// The `vigil-analytics` job of the rendered `prometheus.yml` (plain Prometheus) keeps the
/// chart's analytics pods on their `metrics` port, honours their `namespace` and `app` labels,
/// and keeps neither the operator's pods nor any other port.
#[test]
fn rendered_scrape_job_finds_the_charts_analytics_pods() {
    let rendered = template(ANALYTICS);
    let job = vigil_operator::render::scrape::analytics_job(NAMESPACE);
    assert_eq!(job["job_name"], "vigil-analytics");
    assert_eq!(job["honor_labels"], true);
    let keep = &job["relabel_configs"][0];
    assert_eq!(keep["action"], "keep");
    // A literal: the values joined must equal it (no regex metacharacters to interpret).
    let wanted = keep["regex"].as_str().unwrap();
    assert!(wanted
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == ';'));
    let meta = [
        (
            "__meta_kubernetes_pod_label_app_kubernetes_io_component",
            COMPONENT,
        ),
        (
            "__meta_kubernetes_pod_label_app_kubernetes_io_part_of",
            "app.kubernetes.io/part-of",
        ),
    ];
    let joined = |pod: &Value, port: &str| {
        strings(&keep["source_labels"])
            .iter()
            .map(|source| match meta.iter().find(|(m, _)| m == source) {
                Some((_, label)) => pod["metadata"]["labels"][*label]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                None => {
                    assert_eq!(*source, "__meta_kubernetes_pod_container_port_name");
                    port.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(keep["separator"].as_str().unwrap_or(";"))
    };
    let template_of = |component: &str| {
        rendered
            .all("Deployment")
            .into_iter()
            .find(|d| d["metadata"]["labels"][COMPONENT] == component)
            .map(|d| d["spec"]["template"].clone())
            .expect("deployment")
    };
    let analytics = template_of("analytics");
    let port = analytics["spec"]["containers"][0]["ports"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(joined(&analytics, &port), wanted);
    assert_ne!(joined(&analytics, "webhook"), wanted);
    assert_ne!(joined(&template_of("operator"), "metrics"), wanted);
}
