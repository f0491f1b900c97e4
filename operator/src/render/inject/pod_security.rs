//! Pod Security Standards, as the API server's PodSecurity admission enforces them per
//! namespace (`pod-security.kubernetes.io/enforce: privileged | baseline | restricted`).
//!
//! Injection must never turn an admissible pod into one the API server rejects: a pod webhook
//! that fails open is no use if its patch makes the pod fail instead. So the webhook reads the
//! namespace's level, leaves out what the level forbids (the hostPath volume of the pod's own
//! log files, under `baseline` and `restricted`), and checks the injected pod with
//! [`violations`] before answering: anything the injection added that the level forbids means
//! the pod is admitted without the agent, with a warning.
//!
//! [`violations`] follows the published standards (kubernetes.io/docs/concepts/security/
//! pod-security-standards, policy version `latest`) for the controls a pod spec carries. Not
//! modelled: AppArmor annotations, SELinux options and `/proc` mount types — Vigil never sets
//! them, so an injection cannot add such a violation.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, PodSpec, SecurityContext, Volume};

/// The namespace label PodSecurity admission enforces.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// A Pod Security Standards level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PodSecurityLevel {
    /// No restriction (also what a namespace without the label gets by default).
    Privileged,
    /// Known privilege escalations forbidden: no hostPath, host namespaces, privileged
    /// containers, added capabilities beyond the default set, host ports.
    Baseline,
    /// Baseline plus hardening: non-root, no privilege escalation, all capabilities dropped,
    /// a seccomp profile, and only ephemeral or API-backed volume types.
    Restricted,
}

impl PodSecurityLevel {
    /// The level a namespace with these labels enforces. No label is `privileged` (the
    /// admission plugin's default; a cluster-wide default set in its configuration file is not
    /// visible here); an unknown value is `restricted`, as the admission plugin treats it.
    pub fn enforced_by(labels: Option<&BTreeMap<String, String>>) -> PodSecurityLevel {
        match labels
            .and_then(|l| l.get(ENFORCE_LABEL))
            .map(String::as_str)
        {
            None | Some("privileged") => PodSecurityLevel::Privileged,
            Some("baseline") => PodSecurityLevel::Baseline,
            Some(_) => PodSecurityLevel::Restricted,
        }
    }

    /// Whether pods may mount hostPath volumes (only `privileged`).
    pub fn allows_host_path(self) -> bool {
        self == PodSecurityLevel::Privileged
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurityLevel::Privileged => "privileged",
            PodSecurityLevel::Baseline => "baseline",
            PodSecurityLevel::Restricted => "restricted",
        }
    }
}

impl std::fmt::Display for PodSecurityLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Capabilities `baseline` lets a container add (the container runtimes' defaults).
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Sysctls `baseline` allows.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// Every control of `level` that `spec` violates, one line each naming the field, such as
/// `hostPath volume "vigil-pod-logs"` or `container "app": allowPrivilegeEscalation != false`.
/// Empty when PodSecurity admission at `level` admits the pod.
pub fn violations(spec: &PodSpec, level: PodSecurityLevel) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    if level == PodSecurityLevel::Privileged {
        return found;
    }
    baseline(spec, &mut found);
    if level == PodSecurityLevel::Restricted {
        restricted(spec, &mut found);
    }
    found
}

fn containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
}

fn baseline(spec: &PodSpec, found: &mut BTreeSet<String>) {
    for (on, field) in [
        (spec.host_network, "hostNetwork"),
        (spec.host_pid, "hostPID"),
        (spec.host_ipc, "hostIPC"),
    ] {
        if on == Some(true) {
            found.insert(format!("{field}=true"));
        }
    }
    for volume in spec.volumes.iter().flatten() {
        if volume.host_path.is_some() {
            found.insert(format!("hostPath volume {:?}", volume.name));
        }
    }
    let pod_seccomp = spec
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref());
    if pod_seccomp.is_some_and(|p| p.type_ == "Unconfined") {
        found.insert("pod seccompProfile Unconfined".to_owned());
    }
    for sysctl in spec
        .security_context
        .as_ref()
        .and_then(|s| s.sysctls.as_ref())
        .into_iter()
        .flatten()
    {
        if !SAFE_SYSCTLS.contains(&sysctl.name.as_str()) {
            found.insert(format!("sysctl {:?}", sysctl.name));
        }
    }
    for c in containers(spec) {
        let name = &c.name;
        let sc = c.security_context.as_ref();
        if sc.and_then(|s| s.privileged) == Some(true) {
            found.insert(format!("container {name:?}: privileged"));
        }
        for cap in added_capabilities(sc) {
            if !BASELINE_CAPABILITIES.contains(&cap.as_str()) {
                found.insert(format!("container {name:?}: adds capability {cap}"));
            }
        }
        for port in c.ports.iter().flatten() {
            if port.host_port.is_some_and(|p| p != 0) {
                found.insert(format!("container {name:?}: hostPort"));
            }
        }
        if sc
            .and_then(|s| s.seccomp_profile.as_ref())
            .is_some_and(|p| p.type_ == "Unconfined")
        {
            found.insert(format!("container {name:?}: seccompProfile Unconfined"));
        }
    }
}

fn restricted(spec: &PodSpec, found: &mut BTreeSet<String>) {
    for volume in spec.volumes.iter().flatten() {
        if !restricted_volume(volume) {
            found.insert(format!("volume {:?} of a restricted type", volume.name));
        }
    }
    let pod = spec.security_context.as_ref();
    let pod_non_root = pod.and_then(|s| s.run_as_non_root);
    let pod_seccomp = pod
        .and_then(|s| s.seccomp_profile.as_ref())
        .map(|p| p.type_.as_str());
    if pod.and_then(|s| s.run_as_user) == Some(0) {
        found.insert("pod runAsUser=0".to_owned());
    }
    for c in containers(spec) {
        let name = &c.name;
        let sc = c.security_context.as_ref();
        if sc.and_then(|s| s.allow_privilege_escalation) != Some(false) {
            found.insert(format!(
                "container {name:?}: allowPrivilegeEscalation != false"
            ));
        }
        match (sc.and_then(|s| s.run_as_non_root), pod_non_root) {
            (Some(true), _) | (None, Some(true)) => {}
            _ => {
                found.insert(format!("container {name:?}: runAsNonRoot != true"));
            }
        }
        if sc.and_then(|s| s.run_as_user) == Some(0) {
            found.insert(format!("container {name:?}: runAsUser=0"));
        }
        let seccomp = sc
            .and_then(|s| s.seccomp_profile.as_ref())
            .map(|p| p.type_.as_str())
            .or(pod_seccomp);
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            found.insert(format!(
                "container {name:?}: seccompProfile not RuntimeDefault or Localhost"
            ));
        }
        let drops_all = sc
            .and_then(|s| s.capabilities.as_ref())
            .and_then(|c| c.drop.as_ref())
            .is_some_and(|d| d.iter().any(|c| c == "ALL"));
        if !drops_all {
            found.insert(format!("container {name:?}: capabilities do not drop ALL"));
        }
        for cap in added_capabilities(sc) {
            if cap != "NET_BIND_SERVICE" {
                found.insert(format!("container {name:?}: adds capability {cap}"));
            }
        }
    }
}

fn added_capabilities(sc: Option<&SecurityContext>) -> impl Iterator<Item = &String> {
    sc.and_then(|s| s.capabilities.as_ref())
        .and_then(|c| c.add.as_ref())
        .into_iter()
        .flatten()
}

/// The volume types `restricted` allows.
fn restricted_volume(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.csi.is_some()
        || v.downward_api.is_some()
        || v.empty_dir.is_some()
        || v.ephemeral.is_some()
        || v.persistent_volume_claim.is_some()
        || v.projected.is_some()
        || v.secret.is_some()
}

#[cfg(test)]
mod tests {
    //! The standards' own examples of what each level admits and rejects.
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    fn spec(yaml: &str) -> PodSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    const HARDENED: &str = r#"
securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
containers:
- name: app
  securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}
volumes: [{name: c, configMap: {name: c}}, {name: t, emptyDir: {}}, {name: s, secret: {secretName: s}}]
"#;

    /// The namespace label decides the level; no label is privileged, an unknown value is
    /// restricted (as PodSecurity admission treats it).
    #[test]
    fn level_comes_from_the_enforce_label() {
        let labels = |v: &str| BTreeMap::from([(ENFORCE_LABEL.to_owned(), v.to_owned())]);
        assert_eq!(
            PodSecurityLevel::enforced_by(None),
            PodSecurityLevel::Privileged
        );
        assert_eq!(
            PodSecurityLevel::enforced_by(Some(&BTreeMap::new())),
            PodSecurityLevel::Privileged
        );
        assert_eq!(
            PodSecurityLevel::enforced_by(Some(&labels("baseline"))),
            PodSecurityLevel::Baseline
        );
        assert_eq!(
            PodSecurityLevel::enforced_by(Some(&labels("restricted"))),
            PodSecurityLevel::Restricted
        );
        assert_eq!(
            PodSecurityLevel::enforced_by(Some(&labels("strict"))),
            PodSecurityLevel::Restricted
        );
    }

    /// A hardened pod passes every level; each single relaxation is caught at the level that
    /// forbids it and named by field.
    #[test]
    fn each_control_is_caught_at_its_level() {
        let hardened = spec(HARDENED);
        for level in [
            PodSecurityLevel::Privileged,
            PodSecurityLevel::Baseline,
            PodSecurityLevel::Restricted,
        ] {
            assert!(
                violations(&hardened, level).is_empty(),
                "{level}: {:?}",
                violations(&hardened, level)
            );
        }
        let cases: &[(&str, PodSecurityLevel, &str)] = &[
            (
                "volumes: [{name: logs, hostPath: {path: /var/log/pods}}]",
                PodSecurityLevel::Baseline,
                "hostPath volume \"logs\"",
            ),
            (
                "hostNetwork: true",
                PodSecurityLevel::Baseline,
                "hostNetwork=true",
            ),
            ("hostPID: true", PodSecurityLevel::Baseline, "hostPID=true"),
            (
                "containers: [{name: app, securityContext: {privileged: true}}]",
                PodSecurityLevel::Baseline,
                "container \"app\": privileged",
            ),
            (
                "containers: [{name: app, securityContext: {capabilities: {add: [SYS_ADMIN]}}}]",
                PodSecurityLevel::Baseline,
                "container \"app\": adds capability SYS_ADMIN",
            ),
            (
                "containers: [{name: app, ports: [{containerPort: 80, hostPort: 80}]}]",
                PodSecurityLevel::Baseline,
                "container \"app\": hostPort",
            ),
            (
                "securityContext: {sysctls: [{name: kernel.msgmax, value: '1'}]}",
                PodSecurityLevel::Baseline,
                "sysctl \"kernel.msgmax\"",
            ),
            (
                "containers: [{name: app}]",
                PodSecurityLevel::Restricted,
                "container \"app\": allowPrivilegeEscalation != false",
            ),
            (
                "{securityContext: {}, containers: [{name: app}]}",
                PodSecurityLevel::Restricted,
                "container \"app\": runAsNonRoot != true",
            ),
            (
                "containers: [{name: app}]",
                PodSecurityLevel::Restricted,
                "container \"app\": capabilities do not drop ALL",
            ),
            (
                "{securityContext: {}, containers: [{name: app}]}",
                PodSecurityLevel::Restricted,
                "container \"app\": seccompProfile not RuntimeDefault or Localhost",
            ),
            (
                "volumes: [{name: nfs, nfs: {server: s, path: /}}]",
                PodSecurityLevel::Restricted,
                "volume \"nfs\" of a restricted type",
            ),
        ];
        for (yaml, level, expected) in cases {
            let mut relaxed: serde_json::Value = serde_json::to_value(&hardened).unwrap();
            let change: serde_json::Value = serde_yaml::from_str(yaml).unwrap();
            for (k, v) in change.as_object().unwrap() {
                relaxed[k] = v.clone();
            }
            let relaxed: PodSpec = serde_json::from_value(relaxed).unwrap();
            let found = violations(&relaxed, *level);
            assert!(found.contains(*expected), "{yaml} at {level}: {found:?}");
            if *level == PodSecurityLevel::Restricted {
                // Restricted-only controls are not baseline's business.
                assert!(!violations(&relaxed, PodSecurityLevel::Baseline).contains(*expected));
            }
            assert!(violations(&relaxed, PodSecurityLevel::Privileged).is_empty());
        }
    }
}
