//! The Helm chart `charts/vigil`: `helm lint --strict` and `helm template` for default and
//! non-default values, every rendered object validated offline against the Kubernetes API
//! schemas (`kubernetes-validate`, installed by scripts/install-test-tools.sh), and the
//! properties users and reviewers rely on: probes, hardening (PodSecurity `restricted`),
//! fail-open pod webhook, least-privilege RBAC that also works where
//! `OwnerReferencesPermissionEnforcement` runs, aggregated user roles, safe rollouts, and flags
//! that agree with the objects they name. RBAC is checked in `chart/rbac.rs`, the operator's pod
//! (security contexts, images, injection mode, drain) in `chart/operator_pod.rs`, the optional
//! NetworkPolicy in `chart/network_policy.rs`.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed step must fail the test with its message"
)]

#[path = "chart/analytics.rs"]
mod analytics;
#[path = "chart/network_policy.rs"]
mod network_policy;
#[path = "chart/operator_pod.rs"]
mod operator_pod;
#[path = "chart/pod_security.rs"]
mod pod_security;
#[path = "chart/rbac.rs"]
mod rbac;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use clap::Parser;
use serde_json::Value;
use vigil_operator::tls::CertSource;
use vigil_operator::webhook::WebhookArgs;
use vigil_tests::{repo_root, run, run_ok};

const NAMESPACE: &str = "vigil-system";
/// Kubernetes versions the rendered objects must be valid for: the chart's minimum and the
/// newest the tools ship.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.26.0", "1.34.0"];
/// Custom resources of other projects; their schemas are not part of Kubernetes, so their key
/// fields are asserted by hand below.
const FOREIGN_KINDS: [&str; 3] = ["ServiceMonitor", "Certificate", "Issuer"];

/// Non-default values: cert-manager with an existing ClusterIssuer, a ServiceMonitor, three
/// replicas, custom images, reload URLs of a plain Prometheus and Alertmanager, OpenShift's
/// security context (no fixed UID/GID), a longer drain, no aggregated user roles.
const CUSTOM: &[&str] = &[
    "--set",
    "prometheus.reloadUrl=http://prometheus-server.monitoring:9090",
    "--set",
    "alertmanager.reloadUrl=http://alertmanager.monitoring:9093",
    "--set",
    "alertmanager.version=0.25",
    "--set",
    "replicas=3",
    "--set",
    "image.repository=registry.example.com/platform/vigil-operator",
    "--set",
    "image.tag=0.1.0-rc.1",
    "--set",
    "agent.image.repository=registry.example.com/platform/vigil-agent",
    "--set",
    "agent.image.tag=0.1.0-rc.1",
    "--set",
    "agent.nativeSidecar=false",
    "--set",
    "cluster.name=eu-prod-1",
    "--set",
    "webhook.certManager.enabled=true",
    "--set",
    "webhook.certManager.issuerRef.name=platform-ca",
    "--set",
    "webhook.certManager.issuerRef.kind=ClusterIssuer",
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "serviceMonitor.labels.release=kube-prometheus-stack",
    "--set",
    "webhook.excludedNamespaces={kube-system,ingress-nginx}",
    "--set",
    "commonLabels.team=platform",
    "--set",
    "podSecurityContext.runAsUser=null",
    "--set",
    "podSecurityContext.runAsGroup=null",
    "--set",
    "shutdown.drainSeconds=30",
    "--set",
    "terminationGracePeriodSeconds=45",
    "--set",
    "rbac.aggregateToDefaultRoles=false",
];

struct Rendered {
    yaml: String,
    objects: Vec<Value>,
}

impl Rendered {
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let found = self.all(kind);
        assert_eq!(found.len(), 1, "expected one {kind}");
        found[0]
    }
}

fn template(extra: &[&str]) -> Rendered {
    let mut args = vec![
        "template",
        "vigil",
        "charts/vigil",
        "--namespace",
        NAMESPACE,
        "--include-crds",
    ];
    args.extend_from_slice(extra);
    let out = run_ok("helm", &args, &repo_root());
    let objects = out
        .stdout
        .split("\n---\n")
        .map(|doc| serde_yaml::from_str::<serde_yaml::Value>(doc).expect("helm renders YAML"))
        .filter(|v| !v.is_null())
        .map(|v| serde_json::to_value(v).unwrap())
        .collect();
    Rendered {
        yaml: out.stdout,
        objects,
    }
}

fn kubernetes_validate() -> PathBuf {
    let path = repo_root().join(".tools/venv/bin/kubernetes-validate");
    assert!(
        path.is_file(),
        "{} not found: run scripts/install-test-tools.sh (the README's test command does)",
        path.display()
    );
    path
}

/// Every object of a Kubernetes API kind passes `kubernetes-validate --strict` (unknown fields
/// are errors) for each supported version; only the foreign custom resources are skipped.
fn validate_offline(rendered: &Rendered) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &rendered.yaml).unwrap();
    let checked = rendered
        .objects
        .iter()
        .filter(|o| !FOREIGN_KINDS.contains(&o["kind"].as_str().unwrap_or("")))
        .count();
    for version in KUBERNETES_VERSIONS {
        let out = Command::new(kubernetes_validate())
            .args(["--strict", "--kubernetes-version", version])
            .arg(&file)
            .output()
            .expect("kubernetes-validate runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "kubernetes-validate {version} failed:\n{stdout}\n{stderr}"
        );
        let passed = format!("{stdout}{stderr}")
            .lines()
            .filter(|l| l.contains(" passed for resource "))
            .count();
        assert_eq!(
            passed, checked,
            "every rendered Kubernetes object must be validated against {version}:\n{stdout}\n{stderr}"
        );
    }
}

fn container(rendered: &Rendered) -> &Value {
    &rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
}

fn args(rendered: &Rendered) -> Vec<String> {
    container(rendered)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().replace("$(POD_NAMESPACE)", NAMESPACE))
        .collect()
}

/// The operator's webhook flags exactly as the chart passes them, parsed by the operator's own
/// flag definitions (a renamed flag fails here, not in a cluster).
fn webhook_args(rendered: &Rendered) -> WebhookArgs {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        webhook: WebhookArgs,
    }
    let ours = [
        "--webhook-",
        "--mutating-webhook-configuration",
        "--validating-webhook-configuration",
    ];
    let flags: Vec<String> = args(rendered)
        .into_iter()
        .filter(|a| ours.iter().any(|p| a.starts_with(p)))
        .collect();
    Cli::try_parse_from(std::iter::once("vigil-operator".to_owned()).chain(flags))
        .expect("the chart's webhook flags parse")
        .webhook
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// `helm lint --strict` passes for the default and the non-default values.
#[test]
fn chart_lints_strictly() {
    let root = repo_root();
    run_ok("helm", &["lint", "--strict", "charts/vigil"], &root);
    let mut custom = vec!["lint", "--strict", "charts/vigil"];
    custom.extend_from_slice(CUSTOM);
    run_ok("helm", &custom, &root);
}

/// With default values every object is valid Kubernetes (offline schemas, strict), and the
/// operator runs hardened with probes, two replicas spread over nodes and a PDB.
#[test]
fn default_values_render_valid_hardened_objects() {
    let rendered = template(&[]);
    validate_offline(&rendered);
    let kinds: BTreeSet<&str> = rendered
        .objects
        .iter()
        .filter_map(|o| o["kind"].as_str())
        .collect();
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(kind), "{kind} missing: {kinds:?}");
    }
    for kind in FOREIGN_KINDS {
        assert!(!kinds.contains(kind), "{kind} rendered by default");
    }

    let deployment = rendered.one("Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["vigil.dev/inject"], "false",
        "the operator never injects itself"
    );
    assert!(pod["affinity"]["podAntiAffinity"].is_object());
    assert!(pod["topologySpreadConstraints"].is_array());

    let c = container(&rendered);
    assert_eq!(c["image"], "ghcr.io/vigil-dev/vigil-operator:0.1.0");
    assert_eq!(args(&rendered)[0], "run");
    assert!(args(&rendered).contains(&"--metrics-listen=0.0.0.0:8080".to_owned()));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                c["resources"][bound][resource].is_string(),
                "resources.{bound}.{resource} missing"
            );
        }
    }
    let probe_port = c["readinessProbe"]["httpGet"]["port"].as_str().unwrap();
    assert!(c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == probe_port));

    let service = rendered.one("Service");
    let webhook_port = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "webhook")
        .unwrap();
    assert_eq!(webhook_port["port"], 443);
    assert_eq!(webhook_port["targetPort"], "webhook");
    assert_eq!(
        rendered.one("PodDisruptionBudget")["spec"]["minAvailable"],
        1
    );
}

/// The pod webhook fails open, answers fast, has no side effects, is re-invoked when needed
/// and only sees candidate pods; the resource webhook fails closed on the four Vigil kinds.
#[test]
fn webhooks_fail_open_for_pods_and_closed_for_config() {
    let rendered = template(&[]);
    let mutating = rendered.one("MutatingWebhookConfiguration");
    let hooks = mutating["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 1);
    let pods = &hooks[0];
    assert_eq!(pods["failurePolicy"], "Ignore");
    assert!(pods["timeoutSeconds"].as_i64().unwrap() <= 5);
    assert_eq!(pods["sideEffects"], "None");
    assert_eq!(pods["reinvocationPolicy"], "IfNeeded");
    assert_eq!(strings(&pods["admissionReviewVersions"]), ["v1"]);
    assert_eq!(pods["clientConfig"]["service"]["path"], "/mutate-pods");
    assert!(
        pods["clientConfig"].get("caBundle").is_none(),
        "the chart never sets caBundle"
    );
    assert_eq!(strings(&pods["rules"][0]["operations"]), ["CREATE"]);
    assert_eq!(strings(&pods["rules"][0]["resources"]), ["pods"]);
    let namespace_rules = pods["namespaceSelector"]["matchExpressions"]
        .as_array()
        .unwrap();
    let excluded: Vec<&str> = namespace_rules
        .iter()
        .find(|e| e["key"] == "kubernetes.io/metadata.name")
        .map(|e| strings(&e["values"]))
        .unwrap();
    assert!(
        excluded.contains(&"kube-system") && excluded.contains(&NAMESPACE),
        "{excluded:?}"
    );
    assert!(namespace_rules
        .iter()
        .any(|e| e["key"] == "vigil.dev/injection" && e["operator"] == "NotIn"));
    let object_rule = &pods["objectSelector"]["matchExpressions"][0];
    assert_eq!(object_rule["key"], "vigil.dev/inject");
    assert_eq!(strings(&object_rule["values"]), ["false"]);

    let validating = rendered.one("ValidatingWebhookConfiguration");
    let config = &validating["webhooks"][0];
    assert_eq!(config["failurePolicy"], "Fail");
    assert!(config["timeoutSeconds"].as_i64().unwrap() <= 5);
    assert_eq!(config["sideEffects"], "None");
    assert_eq!(config["clientConfig"]["service"]["path"], "/validate");
    assert_eq!(
        strings(&config["rules"][0]["resources"]),
        ["monitoredapps", "alertpolicies", "slos", "dashboardviews"]
    );
    assert_eq!(
        strings(&config["rules"][0]["operations"]),
        ["CREATE", "UPDATE"]
    );
}

/// The flags the chart passes name exactly the objects it renders: the Service the certificate
/// is issued for, the Secret the Role allows, the webhook configurations to patch.
#[test]
fn operator_flags_match_the_rendered_objects() {
    let rendered = template(&[]);
    let parsed = webhook_args(&rendered);
    let CertSource::SelfManaged(tls) = parsed.cert_source() else {
        panic!("self-managed TLS by default");
    };
    assert_eq!(tls.namespace, NAMESPACE);
    assert_eq!(
        tls.service,
        rendered.one("Service")["metadata"]["name"]
            .as_str()
            .unwrap()
    );
    assert_eq!(
        tls.mutating_webhook.as_deref(),
        rendered.one("MutatingWebhookConfiguration")["metadata"]["name"].as_str()
    );
    assert_eq!(
        tls.validating_webhook.as_deref(),
        rendered.one("ValidatingWebhookConfiguration")["metadata"]["name"].as_str()
    );
    let role = rendered.one("Role");
    let named: Vec<&str> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| strings(&r["resourceNames"]))
        .collect();
    assert!(named.contains(&tls.secret.as_str()), "{named:?}");
    let container_ports: Vec<i64> = container(&rendered)["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_i64().unwrap())
        .collect();
    assert!(container_ports.contains(&i64::from(parsed.webhook_listen.port())));
    let args = args(&rendered);
    assert!(args.contains(&"--agent-image=ghcr.io/vigil-dev/vigil-agent:0.1.0".to_owned()));
    assert!(args.contains(&"--native-sidecar=auto".to_owned()));
    assert!(args.contains(&"--alertmanager-version=0.26".to_owned()));
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--prometheus-url") || a.starts_with("--alertmanager-url")),
        "no reload URLs unless set: {args:?}"
    );
    assert!(
        !args.iter().any(|a| a.starts_with("--cluster-name")),
        "no cluster name unless set: {args:?}"
    );
}

/// `outputs.*` values reach the operator as flags that its own flag definitions parse into the
/// delivery settings: labels and annotations per generated kind (kube-prometheus-stack's
/// `release` label on PodMonitors and PrometheusRules), the GrafanaDashboard instance selector
/// and folder, and the SLO severities; `prometheus.retention` and `prometheus.queryUrl` become
/// their flags. With default values the selector and severities keep their defaults.
#[test]
fn outputs_values_become_operator_flags() {
    use vigil_operator::render::outputs::OutputArgs;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        outputs: OutputArgs,
    }
    let output_flags = |rendered: &Rendered| -> Vec<String> {
        let ours = [
            "--pod-monitor-",
            "--prometheus-rule-",
            "--alertmanager-config-",
            "--grafana-",
            "--slo-",
        ];
        args(rendered)
            .into_iter()
            .filter(|a| ours.iter().any(|p| a.starts_with(p)))
            .collect()
    };
    let parse = |flags: Vec<String>| {
        Cli::try_parse_from(std::iter::once("vigil-operator".to_owned()).chain(flags))
            .expect("the chart's output flags parse")
            .outputs
            .outputs()
    };

    let defaults = parse(output_flags(&template(&[])));
    assert_eq!(
        defaults,
        vigil_operator::render::outputs::Outputs::default()
    );

    let rendered = template(&[
        "--set",
        "outputs.podMonitor.labels.release=kube-prometheus-stack",
        "--set",
        "outputs.prometheusRule.labels.release=kube-prometheus-stack",
        "--set",
        "outputs.prometheusRule.annotations.example\\.com/owner=platform",
        "--set",
        "outputs.alertmanagerConfig.labels.alertmanagerConfig=vigil",
        "--set",
        "outputs.grafanaDashboard.labels.team=sre",
        "--set",
        "outputs.grafanaDashboard.instanceSelector.dashboards=null",
        "--set",
        "outputs.grafanaDashboard.instanceSelector.grafana=main",
        "--set",
        "outputs.grafanaDashboard.folder=Service levels",
        "--set",
        "outputs.sloSeverity.page=P1",
        "--set",
        "outputs.sloSeverity.ticket=P3",
        "--set",
        "prometheus.retention=15d",
        "--set",
        "prometheus.queryUrl=http://prometheus-operated.monitoring:9090",
    ]);
    validate_offline(&rendered);
    let outputs = parse(output_flags(&rendered));
    let label = |extras: &vigil_operator::render::outputs::ObjectExtras, key: &str| {
        extras.labels.get(key).cloned().unwrap_or_default()
    };
    assert_eq!(
        label(&outputs.pod_monitor, "release"),
        "kube-prometheus-stack"
    );
    assert_eq!(
        label(&outputs.prometheus_rule, "release"),
        "kube-prometheus-stack"
    );
    assert_eq!(
        outputs
            .prometheus_rule
            .annotations
            .get("example.com/owner")
            .map(String::as_str),
        Some("platform")
    );
    assert_eq!(
        label(&outputs.alertmanager_config, "alertmanagerConfig"),
        "vigil"
    );
    assert_eq!(label(&outputs.grafana_dashboard, "team"), "sre");
    assert_eq!(
        outputs.grafana_instance_selector,
        [("grafana".to_owned(), "main".to_owned())].into()
    );
    assert_eq!(outputs.grafana_folder.as_deref(), Some("Service levels"));
    assert_eq!(outputs.slo_severities.page, "P1");
    assert_eq!(outputs.slo_severities.ticket, "P3");
    let args = args(&rendered);
    assert!(
        args.contains(&"--prometheus-retention=15d".to_owned()),
        "{args:?}"
    );
    assert!(
        args.contains(
            &"--prometheus-query-url=http://prometheus-operated.monitoring:9090".to_owned()
        ),
        "{args:?}"
    );
}

/// Non-default values: cert-manager (Certificate for the Service's names, CA injection
/// annotation, mounted Secret read by the operator, no certificate RBAC), a ServiceMonitor,
/// three replicas and custom images, all valid Kubernetes.
#[test]
fn non_default_values_render_valid_objects() {
    let rendered = template(CUSTOM);
    validate_offline(&rendered);
    let deployment = rendered.one("Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        container(&rendered)["image"],
        "registry.example.com/platform/vigil-operator:0.1.0-rc.1"
    );
    assert_eq!(deployment["metadata"]["labels"]["team"], "platform");

    let parsed = webhook_args(&rendered);
    let args = args(&rendered);
    assert!(args.contains(
        &"--agent-image=registry.example.com/platform/vigil-agent:0.1.0-rc.1".to_owned()
    ));
    assert!(args.contains(&"--native-sidecar=false".to_owned()));
    assert!(args.contains(&"--cluster-name=eu-prod-1".to_owned()));
    assert!(args.contains(&"--shutdown-drain-seconds=30".to_owned()));
    let pod_context = &deployment["spec"]["template"]["spec"]["securityContext"];
    assert!(
        pod_context.get("runAsUser").is_none() && pod_context.get("runAsGroup").is_none(),
        "null removes a default: {pod_context}"
    );
    assert!(args.contains(&"--prometheus-url=http://prometheus-server.monitoring:9090".to_owned()));
    assert!(args.contains(&"--alertmanager-url=http://alertmanager.monitoring:9093".to_owned()));
    assert!(args.contains(&"--alertmanager-version=0.25".to_owned()));
    let CertSource::Directory(cert_dir) = parsed.cert_source() else {
        panic!("cert-manager mode reads mounted files");
    };
    let pod = &deployment["spec"]["template"]["spec"];
    let mount = container(&rendered)["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == cert_dir.to_str().unwrap())
        .expect("certificate directory mounted");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();

    let certificate = rendered.one("Certificate");
    assert_eq!(certificate["apiVersion"], "cert-manager.io/v1");
    assert_eq!(
        certificate["spec"]["secretName"],
        volume["secret"]["secretName"]
    );
    assert_eq!(certificate["spec"]["issuerRef"]["name"], "platform-ca");
    assert_eq!(certificate["spec"]["issuerRef"]["kind"], "ClusterIssuer");
    assert!(
        rendered.all("Issuer").is_empty(),
        "an existing issuer is used"
    );
    let service = rendered.one("Service")["metadata"]["name"]
        .as_str()
        .unwrap();
    assert_eq!(
        strings(&certificate["spec"]["dnsNames"]),
        [
            format!("{service}.{NAMESPACE}.svc"),
            format!("{service}.{NAMESPACE}.svc.cluster.local")
        ]
    );
    let inject_from = format!(
        "{NAMESPACE}/{}",
        certificate["metadata"]["name"].as_str().unwrap()
    );
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        assert_eq!(
            rendered.one(kind)["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            inject_from.as_str()
        );
    }
    let cluster_role = rendered.one("ClusterRole");
    assert!(
        !cluster_role
            .to_string()
            .contains("admissionregistration.k8s.io"),
        "cert-manager mode needs no webhook configuration access"
    );
    let excluded = &rendered.one("MutatingWebhookConfiguration")["webhooks"][0]
        ["namespaceSelector"]["matchExpressions"][1]["values"];
    assert_eq!(
        strings(excluded),
        [NAMESPACE, "kube-system", "ingress-nginx"]
    );

    let monitor = rendered.one("ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    // The release series keep the namespace and app of the apps they describe.
    assert_eq!(monitor["spec"]["endpoints"][0]["honorLabels"], true);
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        rendered.one("Service")["spec"]["selector"]
    );
    assert_eq!(
        rendered.one("PodDisruptionBudget")["spec"]["minAvailable"],
        1
    );
}

/// cert-manager without an issuer gets a self-signed Issuer; one replica gets no PDB (it
/// would block every node drain).
#[test]
fn self_signed_cert_manager_and_single_replica() {
    let rendered = template(&[
        "--set",
        "webhook.certManager.enabled=true",
        "--set",
        "replicas=1",
    ]);
    validate_offline(&rendered);
    let issuer = rendered.one("Issuer");
    assert!(issuer["spec"]["selfSigned"].is_object());
    assert_eq!(
        rendered.one("Certificate")["spec"]["issuerRef"]["name"],
        issuer["metadata"]["name"]
    );
    assert!(rendered.all("PodDisruptionBudget").is_empty());
}

/// values.schema.json rejects wrong types, out-of-range numbers, unknown enum values and
/// unknown keys, each with the offending value's path.
#[test]
fn schema_rejects_bad_values() {
    let root = repo_root();
    for (set, path) in [
        ("replicas=0", "replicas"),
        ("webhook.timeoutSeconds=10", "timeoutSeconds"),
        ("agent.nativeSidecar=sometimes", "nativeSidecar"),
        ("agent.nativeSidecar=maybe", "nativeSidecar"),
        ("agent.nativeSidecar=1", "nativeSidecar"),
        ("cluster.name=eu/prod", "name"),
        ("securityContext.runAsNonRoot=yes", "runAsNonRoot"),
        ("securityContext.runAsNonroot=true", "runAsNonroot"),
        ("securityContext.seccompProfile.type=Default", "type"),
        ("securityContext.capabilities.drop=ALL", "drop"),
        ("podSecurityContext.runAsUser=-1", "runAsUser"),
        ("podSecurityContext.fsGroup=staff", "fsGroup"),
        ("shutdown.drainSeconds=fifteen", "drainSeconds"),
        ("shutdown.drainSeconds=-1", "drainSeconds"),
        (
            "terminationGracePeriodSeconds=thirty",
            "terminationGracePeriodSeconds",
        ),
        (
            "global.imageRegistry=https://registry.corp",
            "imageRegistry",
        ),
        ("global.imageRegistry=registry.corp/", "imageRegistry"),
        (
            "rbac.aggregateToDefaultRoles=yes",
            "aggregateToDefaultRoles",
        ),
        ("extraArgs={run}", "extraArgs"),
        ("prometheus.reloadUrl=https://prometheus:9090", "reloadUrl"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("serviceMonitor.enabled=yes", "enabled"),
        ("networkPolicy.enabled=yes", "enabled"),
        ("networkPolicy.webhookFrom=everyone", "webhookFrom"),
        (
            "networkPolicy.metricsNamespaceSelector=monitoring",
            "metricsNamespaceSelector",
        ),
        ("webhook.certManager.issuerRef.kind=Vault", "kind"),
        ("replica=2", "replica"),
    ] {
        let out = run(
            "helm",
            &["template", "vigil", "charts/vigil", "--set", set],
            &root,
        );
        assert!(!out.success, "--set {set} was accepted");
        assert!(out.stderr.contains(path), "--set {set}: {}", out.stderr);
    }
}

/// Every value in values.yaml is described and typed in values.schema.json.
#[test]
fn schema_covers_every_value() {
    let root = repo_root();
    let values: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("charts/vigil/values.yaml")).unwrap(),
    )
    .unwrap();
    let values = serde_json::to_value(values).unwrap();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("charts/vigil/values.schema.json")).unwrap(),
    )
    .unwrap();
    let mut missing = Vec::new();
    covered(&values, &schema, "", &mut missing);
    assert!(
        missing.is_empty(),
        "values without a typed, described schema entry: {missing:?}"
    );
}

fn covered(value: &Value, schema: &Value, path: &str, missing: &mut Vec<String>) {
    let typed = schema.get("type").is_some() || schema.get("anyOf").is_some();
    if !path.is_empty() && (!typed || schema.get("description").is_none()) {
        missing.push(path.to_owned());
    }
    if let Some(map) = value.as_object() {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            // A free-form map (labels, affinity): typed as a whole.
            return;
        };
        for (key, child) in map {
            let child_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match props.get(key) {
                Some(child_schema) => covered(child, child_schema, &child_path, missing),
                None => missing.push(child_path),
            }
        }
    }
}

/// `alertmanager.baseConfig` becomes a Secret holding the platform's `alertmanager.yml`
/// exactly as given, mounted into the operator and passed as `--alertmanager-base-config`; a
/// change of it rolls the pods (the operator reads it at start). Without it, none of that.
#[test]
fn alertmanager_base_config_is_a_mounted_secret() {
    let base = r#"{"global":{"smtp_smarthost":"mail.platform.example:587","smtp_from":"alerts@platform.example"},"route":{"receiver":"platform-oncall"},"receivers":[{"name":"platform-oncall","email_configs":[{"to":"oncall@platform.example"}]}]}"#;
    let set = format!("alertmanager.baseConfig={base}");
    let rendered = template(&["--set-json", &set]);
    validate_offline(&rendered);
    let secret = rendered
        .all("Secret")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "vigil-alertmanager-base")
        .expect("the base configuration Secret");
    let encoded = secret["data"]["alertmanager.yml"].as_str().expect("data");
    let decoded = base64_decode(encoded);
    let stored: serde_yaml::Value = serde_yaml::from_str(&decoded).expect("YAML");
    let given: serde_yaml::Value = serde_yaml::from_str(base).expect("JSON is YAML");
    assert_eq!(stored, given);
    let path = "/etc/vigil/alertmanager-base/alertmanager.yml";
    assert!(args(&rendered).contains(&format!("--alertmanager-base-config={path}")));
    let mounts = container(&rendered)["volumeMounts"].as_array().unwrap();
    assert!(mounts
        .iter()
        .any(|m| m["name"] == "alertmanager-base"
            && m["mountPath"] == "/etc/vigil/alertmanager-base"));
    let deployment = rendered.one("Deployment");
    assert!(deployment["spec"]["template"]["metadata"]["annotations"]
        ["vigil.dev/alertmanager-base-checksum"]
        .is_string());

    let plain = template(&[]);
    assert!(!args(&plain)
        .iter()
        .any(|a| a.starts_with("--alertmanager-base-config")));
    assert!(!plain.yaml.contains("alertmanager-base"));
}

/// Standard base64 (as `b64enc` writes it) to text.
fn base64_decode(encoded: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in encoded
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
    {
        let value = ALPHABET
            .iter()
            .position(|a| *a == c)
            .expect("base64 character");
        bits = (bits << 6) | u32::try_from(value).expect("below 64");
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from((bits >> count) & 0xff).expect("a byte"));
        }
    }
    String::from_utf8(out).expect("UTF-8")
}
