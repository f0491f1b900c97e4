//! The operator's pod as the chart renders it: its security contexts against PodSecurity
//! `restricted`, its images, the injection mode and the drain it is told, and what keeps a
//! webhook replica serving through rollouts.

use vigil_tests::{repo_root, run};

use super::pod_security;
use super::{args, container, template, validate_offline, CUSTOM};

/// The default security contexts are the hardened ones the chart always had, and the operator's
/// pod passes PodSecurity `restricted` with them, with OpenShift's (no fixed UID/GID) and with
/// other non-default values; a value that breaks `restricted` is caught by the check.
#[test]
fn operator_pod_meets_pod_security_restricted() {
    let rendered = template(&[]);
    let pod = &rendered.one("Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["securityContext"],
        serde_json::json!({
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        })
    );
    assert_eq!(
        container(&rendered)["securityContext"],
        serde_json::json!({
            "runAsNonRoot": true,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "privileged": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        })
    );
    for values in [&[][..], CUSTOM] {
        let rendered = template(values);
        let pod = &rendered.one("Deployment")["spec"]["template"]["spec"];
        assert_eq!(
            pod_security::restricted_violations(pod),
            Vec::<String>::new(),
            "with {values:?}"
        );
    }
    // The container's setting wins over the pod's, so seccomp and runAsNonRoot are only lost
    // when both go.
    for (sets, violation) in [
        (
            &["securityContext.allowPrivilegeEscalation=true"][..],
            "allowPrivilegeEscalation",
        ),
        (&["securityContext.capabilities.drop=null"], "drop ALL"),
        (
            &["securityContext.capabilities.add={NET_ADMIN}"],
            "NET_ADMIN",
        ),
        (&["securityContext.privileged=true"], "privileged"),
        (
            &[
                "securityContext.seccompProfile=null",
                "podSecurityContext.seccompProfile=null",
            ],
            "seccomp",
        ),
        (&["securityContext.runAsNonRoot=false"], "runAsNonRoot"),
        (
            &[
                "securityContext.runAsNonRoot=null",
                "podSecurityContext.runAsNonRoot=null",
            ],
            "runAsNonRoot",
        ),
        (&["podSecurityContext.runAsUser=0"], "UID 0"),
    ] {
        let extra: Vec<&str> = sets.iter().flat_map(|s| ["--set", *s]).collect();
        let rendered = template(&extra);
        let pod = &rendered.one("Deployment")["spec"]["template"]["spec"];
        let found = pod_security::restricted_violations(pod);
        assert!(
            found.iter().any(|v| v.contains(violation)),
            "{sets:?} must violate restricted ({violation}): {found:?}"
        );
    }
}

/// global.imageRegistry replaces the registry of the operator image (the Deployment) and of the
/// agent image (`--agent-image`), keeping the rest of each path and the tags; a repository
/// without a registry gets it in front.
#[test]
fn global_image_registry_rewrites_both_images() {
    let rendered = template(&["--set", "global.imageRegistry=registry.corp:5000"]);
    assert_eq!(
        container(&rendered)["image"],
        "registry.corp:5000/vigil-dev/vigil-operator:0.1.0"
    );
    assert!(
        args(&rendered)
            .contains(&"--agent-image=registry.corp:5000/vigil-dev/vigil-agent:0.1.0".to_owned()),
        "{:?}",
        args(&rendered)
    );
    validate_offline(&rendered);

    let rendered = template(&[
        "--set",
        "global.imageRegistry=harbor.corp/mirror",
        "--set",
        "image.repository=platform/vigil-operator",
        "--set",
        "image.tag=0.2.0",
        "--set",
        "agent.image.repository=localhost:5000/platform/vigil-agent",
    ]);
    assert_eq!(
        container(&rendered)["image"],
        "harbor.corp/mirror/platform/vigil-operator:0.2.0"
    );
    assert!(args(&rendered)
        .contains(&"--agent-image=harbor.corp/mirror/platform/vigil-agent:0.1.0".to_owned()));
}

/// agent.nativeSidecar `auto` (the default), `true` and `false` each reach the operator as
/// `--native-sidecar=<value>`; the old `--no-native-sidecar` is never passed.
#[test]
fn native_sidecar_value_reaches_the_operator() {
    for (set, flag) in [
        (None, "--native-sidecar=auto"),
        (Some("agent.nativeSidecar=auto"), "--native-sidecar=auto"),
        (Some("agent.nativeSidecar=true"), "--native-sidecar=true"),
        (Some("agent.nativeSidecar=false"), "--native-sidecar=false"),
    ] {
        let extra: Vec<&str> = set.into_iter().flat_map(|s| ["--set", s]).collect();
        let args = args(&template(&extra));
        let passed: Vec<&String> = args
            .iter()
            .filter(|a| a.contains("native-sidecar"))
            .collect();
        assert_eq!(passed, [flag], "{set:?}");
    }
}

/// A rollout or node drain never leaves the API server without a webhook replica: the drain
/// reaches the operator as `--shutdown-drain-seconds`; the grace period outlasts it (a shorter
/// one is refused, naming both values); readiness notices a draining replica well inside the
/// drain; the PodDisruptionBudget and the rolling update keep a ready replica.
#[test]
fn rollouts_drain_before_exit() {
    let rendered = template(&[]);
    let deployment = rendered.one("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let drain = args(&rendered)
        .iter()
        .find_map(|a| {
            a.strip_prefix("--shutdown-drain-seconds=")?
                .parse::<i64>()
                .ok()
        })
        .expect("--shutdown-drain-seconds passed");
    assert_eq!(drain, 15);
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    assert!(
        grace >= drain + 5,
        "grace {grace}s must outlast the {drain}s drain"
    );

    let readiness = &container(&rendered)["readinessProbe"];
    let noticed = readiness["periodSeconds"].as_i64().unwrap()
        * readiness["failureThreshold"].as_i64().unwrap()
        + readiness["timeoutSeconds"].as_i64().unwrap();
    assert!(
        noticed < drain,
        "readiness takes up to {noticed}s to notice, the drain lasts {drain}s"
    );
    assert!(readiness["periodSeconds"].as_i64().unwrap() <= 5);

    let strategy = &deployment["spec"]["strategy"];
    assert_eq!(strategy["type"], "RollingUpdate");
    assert_eq!(strategy["rollingUpdate"]["maxUnavailable"], 0);
    assert_eq!(strategy["rollingUpdate"]["maxSurge"], 1);
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap();
    let pdb = rendered.one("PodDisruptionBudget");
    let min_available = pdb["spec"]["minAvailable"].as_i64().unwrap();
    assert!(
        (1..replicas).contains(&min_available),
        "minAvailable {min_available} with {replicas} replicas"
    );
    let pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    for (key, value) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(pod_labels.get(key), Some(value), "the PDB selects the pods");
    }

    let custom = template(&[
        "--set",
        "shutdown.drainSeconds=0",
        "--set",
        "terminationGracePeriodSeconds=5",
    ]);
    assert!(args(&custom).contains(&"--shutdown-drain-seconds=0".to_owned()));
    assert_eq!(
        custom.one("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        5
    );

    let root = repo_root();
    for set in [
        ["--set", "terminationGracePeriodSeconds=19"],
        ["--set", "shutdown.drainSeconds=60"],
    ] {
        let mut helm = vec!["template", "vigil", "charts/vigil"];
        helm.extend_from_slice(&set);
        let out = run("helm", &helm, &root);
        assert!(!out.success, "{set:?} was accepted");
        assert!(
            out.stderr.contains("terminationGracePeriodSeconds (")
                && out.stderr.contains("shutdown.drainSeconds ("),
            "{set:?}: {}",
            out.stderr
        );
    }
}
