//! The Pod Security Standards as PodSecurity admission enforces them at the `restricted` level
//! (which includes `baseline`), checked on a rendered pod spec. The chart tests use it on the
//! operator's own pod, because no API server in the tests runs PodSecurity admission.
//!
//! Follows the checks of `k8s.io/pod-security-admission` for version `latest`; not modelled:
//! the AppArmor annotations of Kubernetes before 1.30 (the chart sets none) and the
//! version-specific relaxations of older policy versions.

use serde_json::Value;

/// Volume sources `restricted` allows.
const RESTRICTED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];
/// SELinux types `baseline` allows (empty: unset).
const SELINUX_TYPES: [&str; 5] = [
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];
/// Sysctls `baseline` allows.
const SAFE_SYSCTLS: [&str; 9] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
];

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Every way `pod` (a pod spec) would make PodSecurity `restricted` reject it, one line each
/// naming the field; empty when it is admitted.
pub fn restricted_violations(pod: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let pod_context = &pod["securityContext"];
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[field] == true {
            found.push(format!("spec.{field} is true"));
        }
    }
    for volume in pod["volumes"].as_array().into_iter().flatten() {
        let name = &volume["name"];
        let source = volume
            .as_object()
            .into_iter()
            .flat_map(|v| v.keys())
            .find(|k| *k != "name");
        match source.map(String::as_str) {
            Some(kind) if RESTRICTED_VOLUMES.contains(&kind) => {}
            Some(kind) => found.push(format!("volume {name} uses {kind}")),
            None => {}
        }
    }
    for sysctl in pod_context["sysctls"].as_array().into_iter().flatten() {
        let name = sysctl["name"].as_str().unwrap_or("");
        if !SAFE_SYSCTLS.contains(&name) {
            found.push(format!("sysctl {name} is not safe"));
        }
    }
    found.extend(context_violations("spec.securityContext", pod_context));

    let containers: Vec<&Value> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| pod[*list].as_array().into_iter().flatten())
        .collect();
    for container in containers {
        let name = container["name"].as_str().unwrap_or("?");
        let at = format!("container {name:?}");
        let context = &container["securityContext"];
        found.extend(context_violations(
            &format!("{at} securityContext"),
            context,
        ));
        if context["privileged"] == true {
            found.push(format!("{at} is privileged"));
        }
        if context["allowPrivilegeEscalation"] != false {
            found.push(format!("{at} does not set allowPrivilegeEscalation: false"));
        }
        if container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["hostPort"].as_i64().unwrap_or(0) != 0)
        {
            found.push(format!("{at} uses a hostPort"));
        }
        if context["procMount"]
            .as_str()
            .is_some_and(|m| m != "Default")
        {
            found.push(format!("{at} has a non-default procMount"));
        }
        let capabilities = &context["capabilities"];
        if !strings(&capabilities["drop"]).contains(&"ALL") {
            found.push(format!("{at} does not drop ALL capabilities"));
        }
        for added in strings(&capabilities["add"]) {
            // Baseline allows a few more; restricted only this one.
            if added != "NET_BIND_SERVICE" {
                found.push(format!("{at} adds capability {added}"));
            }
        }
        // runAsNonRoot: the container's own setting wins; otherwise the pod's must be true.
        match context["runAsNonRoot"].as_bool() {
            Some(true) => {}
            Some(false) => found.push(format!("{at} sets runAsNonRoot: false")),
            None if pod_context["runAsNonRoot"] == true => {}
            None => found.push(format!("{at} may run as root (no runAsNonRoot: true)")),
        }
        // seccomp: the container's own profile wins; otherwise the pod's must be set.
        let profile = context["seccompProfile"]["type"]
            .as_str()
            .or_else(|| pod_context["seccompProfile"]["type"].as_str());
        if !matches!(profile, Some("RuntimeDefault" | "Localhost")) {
            found.push(format!(
                "{at} has seccomp profile {profile:?}, not RuntimeDefault or Localhost"
            ));
        }
    }
    found
}

/// Checks shared by the pod's and each container's security context.
fn context_violations(at: &str, context: &Value) -> Vec<String> {
    let mut found = Vec::new();
    if context["runAsUser"] == 0 {
        found.push(format!("{at} runs as UID 0"));
    }
    if context["windowsOptions"]["hostProcess"] == true {
        found.push(format!("{at} is a Windows HostProcess"));
    }
    if context["appArmorProfile"]["type"] == "Unconfined" {
        found.push(format!("{at} is AppArmor Unconfined"));
    }
    if context["seccompProfile"]["type"] == "Unconfined" {
        found.push(format!("{at} is seccomp Unconfined"));
    }
    let selinux = &context["seLinuxOptions"];
    if !SELINUX_TYPES.contains(&selinux["type"].as_str().unwrap_or("")) {
        found.push(format!("{at} sets SELinux type {}", selinux["type"]));
    }
    for field in ["user", "role"] {
        if selinux[field].as_str().is_some_and(|v| !v.is_empty()) {
            found.push(format!("{at} sets SELinux {field}"));
        }
    }
    found
}

/// The check itself: a pod breaking each baseline rule the chart could break is reported once
/// per rule, naming the field.
#[test]
fn restricted_violations_names_each_broken_rule() {
    let pod = serde_json::json!({
        "hostNetwork": true,
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "logs", "hostPath": {"path": "/var/log/pods"}}],
        "containers": [{
            "name": "app",
            "ports": [{"containerPort": 8080, "hostPort": 8080}],
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
            },
        }],
    });
    let found = restricted_violations(&pod);
    assert_eq!(
        found,
        [
            "spec.hostNetwork is true",
            "volume \"logs\" uses hostPath",
            "container \"app\" uses a hostPort",
        ]
    );
}
