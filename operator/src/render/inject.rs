//! Sidecar injection: the pure `Pod -> Pod` transformation behind the `/mutate-pods` webhook.
//! [`inject`] adds the Vigil agent (container, volumes, OTLP environment, markers) to a pod,
//! [`uninject`] removes exactly what `inject` added.
//!
//! Choices, and why:
//! - **Native sidecar first.** On Kubernetes ≥ 1.29 the agent is an init container with
//!   `restartPolicy: Always`, placed *first* among the init containers, so it is already running
//!   when the other init containers start (their logs and crashes are seen too, and it is
//!   started before and stopped after every app container). It has no startup probe, so the
//!   kubelet starts the next container as soon as the agent's process is up: a slow or broken
//!   agent never delays the application ("fail open for pods"). On older clusters
//!   (`native_sidecar: false`) it is appended as the *last* regular container, so that
//!   `kubectl logs/exec` keep defaulting to the application's first container.
//! - **Readiness.** Kubernetes counts a sidecar's readiness in the pod's readiness, so the
//!   agent's `/readyz` must turn ready as soon as its listeners are bound and never depend on a
//!   back end being reachable (the disk buffer absorbs outages); `/healthz` is liveness.
//! - **OTLP environment.** App containers get `OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318`
//!   with `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf` (the OpenTelemetry spec's default protocol,
//!   and the pair is self-consistent whatever an SDK's own default is). A container that
//!   configures OTLP itself — any `OTEL_EXPORTER_OTLP_*` variable, or any `envFrom`, which may
//!   carry one we cannot see — is left alone; SDK defaults already point at `localhost`, where
//!   the agent listens. Only regular containers get it (init containers run once and rarely
//!   trace), and only when the app has traces enabled.
//! - **Own logs only.** The pod's log directory is mounted read-only from the node's
//!   `/var/log/pods` with `subPathExpr: $(POD_NAMESPACE)_$(POD_NAME)_$(POD_UID)`, so the agent
//!   sees its own pod's logs and nothing else. The hostPath volume is added only when the app
//!   collects container logs (namespaces enforcing the Pod Security `baseline` level reject
//!   hostPath volumes).
//! - **Security context.** The agent runs as the fixed non-root uid 65532 with a read-only root
//!   filesystem, no privilege escalation, all capabilities dropped and the runtime's default
//!   seccomp profile (Pod Security `restricted` compliant). Kubelet log files are written by the
//!   container runtime as root: containerd creates them `0640 root:root`, so when container
//!   logs are collected the agent's primary group is 0 (`runAsGroup: 0`, not a privilege: no
//!   capability, no root uid) which grants exactly that read. CRI-O writes `0600`; there no
//!   non-root reader can open them, and the agent must report the permission error (log and
//!   metric) rather than silently read nothing. No `fsGroup` is set: it would not change
//!   hostPath ownership and would chown the app's volumes.
//! - **Pod annotations.** When the app honours the `prometheus.io/*` annotations
//!   (`metrics.honorAnnotations`), a `downwardAPI` volume exposes the pod's
//!   `metadata.annotations` as the file `annotations`, mounted read-only at
//!   `/etc/vigil/podinfo` in the agent only. The kubelet rewrites it when the annotations change,
//!   so a developer's `kubectl annotate` reaches the running agent without a restart. The agent
//!   reads only the `prometheus.io/*` keys and never logs the other values.
//! - **Fail open.** The ConfigMap and Secret volumes are `optional`, so a pod admitted before
//!   the operator published them still starts; the agent retries until its config appears.
//!   The buffer `emptyDir`'s `sizeLimit` is the configured buffer size plus headroom, because
//!   exceeding an `emptyDir` limit evicts the whole pod, not just the agent.
//! - **Reversible and idempotent.** `inject` first removes any earlier injection, so
//!   `inject(inject(p)) == inject(p)` and re-injecting with a changed spec replaces the old
//!   agent. Vigil's volumes are exactly those the agent container mounts (names are chosen to
//!   avoid the pod's own volumes, so they never collide), and the containers that received the
//!   OTLP variables are listed in an annotation, so `uninject` removes only what `inject`
//!   added. A pod that already has a container called `vigil-agent` that Vigil did not inject
//!   is left untouched.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, DownwardAPIVolumeFile,
    DownwardAPIVolumeSource, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction,
    HostPathVolumeSource, KeyToPath, ObjectFieldSelector, Pod, PodSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use vigil_crds::agent_config::{POD_ANNOTATIONS_FILE, POD_INFO_DIR, POD_LOGS_OFF_ENV};
use vigil_crds::common::SECRETS_DIR;
use vigil_crds::monitored_app::{parse_byte_quantity, MetricsPort, ReleaseSource};
use vigil_crds::MonitoredApp;

use super::agent_config::{
    config_map_name, BUFFER_DIR, CONFIG_DIR, CONFIG_KEY, OTLP_GRPC_PORT, OTLP_HTTP_PORT,
    POD_LOG_DIR,
};

pub mod pod_security;
#[cfg(test)]
mod tests;

pub use pod_security::PodSecurityLevel;

/// Name of the injected agent container.
pub const AGENT_CONTAINER: &str = "vigil-agent";
/// Name of the agent's admin port (`/metrics`, `/healthz`, `/readyz`); scrape configs select it.
pub const ADMIN_PORT_NAME: &str = "vigil-admin";
/// Pod annotation (hash of the injected [`AgentSidecar`]) and pod label (`"true"`) marking an
/// injected pod. A pod whose annotation differs from the current sidecar's hash is stale.
pub const INJECTED: &str = "vigil.dev/injected";
/// Pod annotation listing, comma-separated, the containers that received the OTLP variables.
pub const OTLP_ENV_ANNOTATION: &str = "vigil.dev/otlp-env";
/// Node directory holding every pod's container logs (the CRI layout).
pub const NODE_POD_LOGS: &str = "/var/log/pods";
/// The uid (and, without container logs, gid) the agent runs as: distroless `nonroot`.
pub const AGENT_UID: i64 = 65532;

const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const OTLP_PROTOCOL_VAR: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// Environment variable carrying the application's version into the agent.
pub const VERSION_ENV: &str = "VIGIL_APP_VERSION";
/// Environment variable holding the resolved number of a named metrics port.
pub const SCRAPE_PORT_ENV: &str = "VIGIL_SCRAPE_PORT";
/// Environment variable holding the name of the container that declares the scraped port: the
/// `container` label of the remote-written series.
pub const SCRAPE_CONTAINER_ENV: &str = "VIGIL_SCRAPE_CONTAINER";
/// Extra `emptyDir` room above the buffer bound, for checkpoints and segment rollover.
const BUFFER_HEADROOM_BYTES: u64 = 16 << 20;

/// Everything injection needs to know about one app's agent, resolved from its `MonitoredApp`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentSidecar {
    /// Agent image.
    pub image: String,
    /// CPU and memory of the agent container.
    pub resources: ResourceRequirements,
    /// Name of the ConfigMap holding `agent.yaml`.
    pub config_map: String,
    /// Port of `/metrics`, `/healthz` and `/readyz`.
    pub admin_port: u16,
    /// `sizeLimit` of the buffer `emptyDir`: the configured buffer size plus headroom.
    pub buffer_size_limit: String,
    /// Secrets to mount, each with the keys the exporters reference, sorted by name.
    pub secrets: Vec<SecretMount>,
    /// `true`: a native sidecar (init container with `restartPolicy: Always`, Kubernetes ≥
    /// 1.29). `false`: a regular container, for older clusters.
    pub native_sidecar: bool,
    /// Point app containers at the agent with the OTLP environment variables.
    pub traces: bool,
    /// Mount the pod's own log directory.
    pub container_logs: bool,
    /// Why the app's container logs are not collected in this pod although it asks for them
    /// (the namespace's Pod Security level forbids the hostPath volume); passed to the agent in
    /// `VIGIL_POD_LOGS_OFF`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_logs_off: Option<String>,
    /// Where the application's version comes from.
    pub version: VersionSource,
    /// The metrics port when the app names it (`http-metrics`): injection resolves it against
    /// the pod's container ports into `VIGIL_SCRAPE_PORT`, which the agent scrapes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_port_name: Option<String>,
    /// Mount the pod's annotations (downward API) for the agent, which honours the
    /// `prometheus.io/*` ones (`metrics.honorAnnotations`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pod_annotations: bool,
}

/// One Secret mounted under `/etc/vigil/secrets/<secret>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretMount {
    /// Secret name.
    pub secret: String,
    /// Keys projected into the volume (only those the exporters use), sorted.
    pub keys: Vec<String>,
}

/// Where the agent learns the application's version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum VersionSource {
    /// A pod label, passed through the downward API.
    Label(String),
    /// The image tag of this container (default: the first container), read at injection.
    ImageTag(Option<String>),
}

impl AgentSidecar {
    /// The sidecar for `app`; `default_image` is used unless the app names its own image.
    /// Native sidecar mode is on; set `native_sidecar = false` for clusters older than 1.29.
    pub fn for_app(app: &MonitoredApp, default_image: &str) -> AgentSidecar {
        let spec = &app.spec;
        let mut secrets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        // An invalid reference (rejected by validation; possible only for objects stored
        // before the CRD's patterns) is not mounted: its volume would make the pod invalid.
        for r in spec
            .exporters
            .secret_refs()
            .into_iter()
            .filter(|r| r.problems().is_empty())
        {
            secrets
                .entry(r.name.clone())
                .or_default()
                .insert(r.key.clone());
        }
        let buffer_bytes = parse_byte_quantity(&spec.agent.buffer_size)
            .unwrap_or(256 << 20)
            .saturating_add(BUFFER_HEADROOM_BYTES);
        AgentSidecar {
            image: spec
                .agent
                .image
                .clone()
                .unwrap_or_else(|| default_image.to_owned()),
            resources: spec
                .agent
                .resources
                .clone()
                .unwrap_or_else(default_resources),
            config_map: config_map_name(&app.name_any()),
            admin_port: spec.agent.admin_port,
            buffer_size_limit: byte_quantity(buffer_bytes),
            secrets: secrets
                .into_iter()
                .map(|(secret, keys)| SecretMount {
                    secret,
                    keys: keys.into_iter().collect(),
                })
                .collect(),
            native_sidecar: true,
            traces: spec.traces.enabled,
            container_logs: spec.logs.as_ref().is_some_and(|l| l.container_logs),
            pod_logs_off: None,
            version: match spec.release.source {
                ReleaseSource::Label => VersionSource::Label(spec.release.label.clone()),
                ReleaseSource::ImageTag => VersionSource::ImageTag(spec.release.container.clone()),
            },
            scrape_port_name: match spec.metrics.as_ref().map(|m| &m.port) {
                Some(MetricsPort::Name(name)) => Some(name.clone()),
                _ => None,
            },
            pod_annotations: spec.metrics.as_ref().is_some_and(|m| m.honor_annotations),
        }
    }

    /// The sidecar injected for `app` into a pod of a namespace enforcing `level`, in the
    /// cluster's sidecar mode: what the webhook injects and what the controller's stale-pod
    /// count compares against.
    pub fn for_pod_of(
        app: &MonitoredApp,
        default_image: &str,
        native_sidecar: bool,
        level: PodSecurityLevel,
    ) -> AgentSidecar {
        let mut sidecar = AgentSidecar::for_app(app, default_image);
        sidecar.native_sidecar = native_sidecar;
        sidecar.under_pod_security(level)
    }

    /// This sidecar in a namespace enforcing `level`: without the pod log mount where the
    /// level forbids hostPath volumes (the agent is told why, and reads no pod log files).
    pub fn under_pod_security(mut self, level: PodSecurityLevel) -> AgentSidecar {
        if self.container_logs && !level.allows_host_path() {
            self.container_logs = false;
            self.pod_logs_off = Some(format!(
                "the namespace enforces Pod Security level {level} ({}), which forbids the hostPath volume of the node's pod log directory",
                pod_security::ENFORCE_LABEL
            ));
        }
        self
    }

    /// A short content hash of this sidecar (sha256 of its JSON form, 16 hex characters): the
    /// value of the `vigil.dev/injected` annotation. It changes when the image, resources,
    /// ports, volumes or mode change, i.e. exactly when a running pod would need a restart to
    /// pick the change up; the agent config itself is reloaded live and is not part of it.
    pub fn spec_hash(&self) -> String {
        // Serialising plain structs, strings, numbers and k8s-openapi quantities to JSON cannot
        // fail (no maps with non-string keys, no fallible custom impls).
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut hex = hex::encode(Sha256::digest(&json));
        hex.truncate(16);
        hex
    }
}

/// Default agent resources: requests 10m CPU / 16Mi, limits 200m / 64Mi.
pub fn default_resources() -> ResourceRequirements {
    let q = |cpu: &str, mem: &str| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(mem.to_owned())),
        ])
    };
    ResourceRequirements {
        requests: Some(q("10m", "16Mi")),
        limits: Some(q("200m", "64Mi")),
        ..ResourceRequirements::default()
    }
}

/// Writes bytes in the largest binary unit that divides them exactly.
fn byte_quantity(bytes: u64) -> String {
    for (unit, size) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// Adds the agent to `pod`. Idempotent, and replaces an earlier injection (for instance with an
/// older image) instead of adding a second agent.
pub fn inject(pod: Pod, sidecar: &AgentSidecar) -> Pod {
    let mut pod = uninject(pod);
    let Some(spec) = pod.spec.as_mut() else {
        return pod;
    };
    if all_containers(spec).any(|c| c.name == AGENT_CONTAINER) {
        // Someone else's container already uses our name; adding ours would make the pod
        // invalid, and failing open means leaving the pod as it is.
        return pod;
    }

    let names = VolumeNames::choose(spec, sidecar);
    let agent = agent_container(spec, sidecar, &names);
    spec.volumes
        .get_or_insert_with(Vec::new)
        .extend(agent_volumes(sidecar, &names));
    if sidecar.native_sidecar {
        spec.init_containers
            .get_or_insert_with(Vec::new)
            .insert(0, agent);
    } else {
        spec.containers.push(agent);
    }
    // Same normal form as `uninject`, so that injecting an injected pod changes nothing.
    none_if_empty(&mut spec.init_containers);

    let mut otlp_env = Vec::new();
    if sidecar.traces {
        // A name with a comma could not be listed in the annotation, so it is left alone: no
        // valid container name has one (the API server refuses the pod after admission).
        for c in spec
            .containers
            .iter_mut()
            .filter(|c| c.name != AGENT_CONTAINER && !c.name.contains(','))
        {
            if configures_otlp_itself(c) {
                continue;
            }
            let env = c.env.get_or_insert_with(Vec::new);
            env.push(plain_env(
                OTLP_ENDPOINT_VAR,
                &format!("http://localhost:{OTLP_HTTP_PORT}"),
            ));
            env.push(plain_env(OTLP_PROTOCOL_VAR, "http/protobuf"));
            otlp_env.push(c.name.clone());
        }
    }

    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(INJECTED.to_owned(), sidecar.spec_hash());
    if !otlp_env.is_empty() {
        annotations.insert(OTLP_ENV_ANNOTATION.to_owned(), otlp_env.join(","));
    }
    pod.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(INJECTED.to_owned(), "true".into());
    pod
}

/// Removes what [`inject`] added: the agent container, the volumes only it mounts, the OTLP
/// variables it set and its markers. A pod without the `vigil.dev/injected` annotation is
/// returned unchanged. Lists and maps left empty are removed (Kubernetes treats both alike).
pub fn uninject(mut pod: Pod) -> Pod {
    let injected = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(INJECTED));
    if !injected {
        return pod;
    }
    let otlp_env: BTreeSet<String> = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OTLP_ENV_ANNOTATION))
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();

    if let Some(spec) = pod.spec.as_mut() {
        let mut agent_volumes = BTreeSet::new();
        for list in [Some(&mut spec.containers), spec.init_containers.as_mut()]
            .into_iter()
            .flatten()
        {
            list.retain(|c| {
                let ours = c.name == AGENT_CONTAINER;
                if ours {
                    agent_volumes.extend(c.volume_mounts.iter().flatten().map(|m| m.name.clone()));
                }
                !ours
            });
        }
        let still_used: BTreeSet<String> = all_containers(spec)
            .flat_map(|c| c.volume_mounts.iter().flatten().map(|m| m.name.clone()))
            .collect();
        if let Some(volumes) = spec.volumes.as_mut() {
            volumes.retain(|v| !agent_volumes.contains(&v.name) || still_used.contains(&v.name));
        }
        for c in spec
            .containers
            .iter_mut()
            .filter(|c| otlp_env.contains(&c.name))
        {
            if let Some(env) = c.env.as_mut() {
                env.retain(|e| e.name != OTLP_ENDPOINT_VAR && e.name != OTLP_PROTOCOL_VAR);
            }
            none_if_empty(&mut c.env);
        }
        none_if_empty(&mut spec.init_containers);
        none_if_empty(&mut spec.volumes);
    }

    if let Some(a) = pod.metadata.annotations.as_mut() {
        a.remove(INJECTED);
        a.remove(OTLP_ENV_ANNOTATION);
    }
    if let Some(l) = pod.metadata.labels.as_mut() {
        l.remove(INJECTED);
    }
    if pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(BTreeMap::is_empty)
    {
        pod.metadata.annotations = None;
    }
    if pod.metadata.labels.as_ref().is_some_and(BTreeMap::is_empty) {
        pod.metadata.labels = None;
    }
    pod
}

fn none_if_empty<T>(v: &mut Option<Vec<T>>) {
    if v.as_ref().is_some_and(Vec::is_empty) {
        *v = None;
    }
}

fn all_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
}

fn configures_otlp_itself(c: &Container) -> bool {
    c.env_from.as_ref().is_some_and(|e| !e.is_empty())
        || c.env
            .iter()
            .flatten()
            .any(|e| e.name.starts_with("OTEL_EXPORTER_OTLP_"))
}

/// Names of the volumes Vigil adds, chosen not to collide with the pod's own volumes.
struct VolumeNames {
    config: String,
    logs: String,
    buffer: String,
    pod_info: String,
    /// Secret name → volume name.
    secrets: BTreeMap<String, String>,
}

impl VolumeNames {
    fn choose(spec: &PodSpec, sidecar: &AgentSidecar) -> Self {
        let mut taken: BTreeSet<String> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.clone())
            .collect();
        let mut pick = |base: String| {
            let mut name = base.clone();
            let mut n = 2;
            while taken.contains(&name) {
                name = format!("{base}-{n}");
                n += 1;
            }
            taken.insert(name.clone());
            name
        };
        VolumeNames {
            config: pick("vigil-agent-config".into()),
            logs: pick("vigil-pod-logs".into()),
            buffer: pick("vigil-buffer".into()),
            pod_info: pick("vigil-podinfo".into()),
            secrets: sidecar
                .secrets
                .iter()
                .map(|s| (s.secret.clone(), pick(secret_volume_base(&s.secret))))
                .collect(),
        }
    }
}

/// `vigil-secret-<name>` as a DNS label (≤ 63 characters; leaves room for a `-N` suffix):
/// dots become dashes, and a long name is cut and completed with a hash of the full name.
fn secret_volume_base(secret: &str) -> String {
    let clean = secret.replace('.', "-");
    let name = format!("vigil-secret-{clean}");
    if name.len() <= 58 {
        return name;
    }
    let hash = hex::encode(Sha256::digest(secret.as_bytes()));
    let head: String = name.chars().take(49).collect();
    format!("{}-{}", head.trim_end_matches('-'), &hash[..8])
}

fn plain_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The tag of an image reference (`repo/name:tag@sha256:…` → `tag`), if it has one.
pub fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last_segment
        .split_once(':')
        .map(|(_, tag)| tag)
        .filter(|t| !t.is_empty())
}

fn agent_container(spec: &PodSpec, sidecar: &AgentSidecar, names: &VolumeNames) -> Container {
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_UID", "metadata.uid"),
        field_env("NODE_NAME", "spec.nodeName"),
        // The `instance` label of remote-written series: `<pod IP>:<port>`, as Prometheus'
        // own scrape of the pod would set it.
        field_env("POD_IP", "status.podIP"),
    ];
    match &sidecar.version {
        VersionSource::Label(label) => {
            env.push(field_env(
                VERSION_ENV,
                &format!("metadata.labels['{label}']"),
            ));
        }
        VersionSource::ImageTag(container) => {
            let source = match container {
                Some(name) => spec.containers.iter().find(|c| &c.name == name),
                None => spec.containers.first(),
            };
            if let Some(tag) = source.and_then(|c| c.image.as_deref()).and_then(image_tag) {
                env.push(plain_env(VERSION_ENV, tag));
            }
        }
    }

    if let Some((container, port)) = sidecar.scrape_port_name.as_deref().and_then(|name| {
        spec.containers.iter().find_map(|c| {
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .map(|p| (c.name.as_str(), p.container_port))
        })
    }) {
        env.push(plain_env(SCRAPE_PORT_ENV, &port.to_string()));
        env.push(plain_env(SCRAPE_CONTAINER_ENV, container));
    } else if let Some(container) = spec.containers.iter().find(|c| c.name != AGENT_CONTAINER) {
        // A port given by number: the pod's first application container.
        env.push(plain_env(SCRAPE_CONTAINER_ENV, &container.name));
    }
    if let Some(reason) = &sidecar.pod_logs_off {
        env.push(plain_env(POD_LOGS_OFF_ENV, reason));
    }

    let mut mounts = vec![VolumeMount {
        name: names.config.clone(),
        mount_path: CONFIG_DIR.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }];
    if sidecar.container_logs {
        mounts.push(VolumeMount {
            name: names.logs.clone(),
            mount_path: POD_LOG_DIR.to_owned(),
            read_only: Some(true),
            sub_path_expr: Some("$(POD_NAMESPACE)_$(POD_NAME)_$(POD_UID)".to_owned()),
            ..VolumeMount::default()
        });
    }
    mounts.push(VolumeMount {
        name: names.buffer.clone(),
        mount_path: BUFFER_DIR.to_owned(),
        ..VolumeMount::default()
    });
    if sidecar.pod_annotations {
        mounts.push(VolumeMount {
            name: names.pod_info.clone(),
            mount_path: POD_INFO_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    for s in &sidecar.secrets {
        // `names.secrets` was built from this same list, so every secret has a volume name.
        let Some(volume) = names.secrets.get(&s.secret) else {
            continue;
        };
        mounts.push(VolumeMount {
            name: volume.clone(),
            mount_path: format!("{SECRETS_DIR}/{}", s.secret),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }

    let port = |number: u16, name: &str| ContainerPort {
        container_port: i32::from(number),
        name: Some(name.to_owned()),
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(i32::from(sidecar.admin_port)),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    };

    Container {
        name: AGENT_CONTAINER.to_owned(),
        image: Some(sidecar.image.clone()),
        args: Some(vec![
            "--config".to_owned(),
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        ]),
        env: Some(env),
        ports: Some(vec![
            port(OTLP_GRPC_PORT, "vigil-otlp-grpc"),
            port(OTLP_HTTP_PORT, "vigil-otlp-http"),
            port(sidecar.admin_port, ADMIN_PORT_NAME),
        ]),
        resources: Some(sidecar.resources.clone()),
        volume_mounts: Some(mounts),
        readiness_probe: Some(probe("/readyz", 10)),
        liveness_probe: Some(probe("/healthz", 20)),
        restart_policy: sidecar.native_sidecar.then(|| "Always".to_owned()),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(AGENT_UID),
            run_as_group: Some(if sidecar.container_logs { 0 } else { AGENT_UID }),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..SecurityContext::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

fn agent_volumes(sidecar: &AgentSidecar, names: &VolumeNames) -> Vec<Volume> {
    let mut volumes = vec![Volume {
        name: names.config.clone(),
        config_map: Some(ConfigMapVolumeSource {
            name: sidecar.config_map.clone(),
            optional: Some(true),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    if sidecar.container_logs {
        volumes.push(Volume {
            name: names.logs.clone(),
            host_path: Some(HostPathVolumeSource {
                path: NODE_POD_LOGS.to_owned(),
                type_: Some("Directory".to_owned()),
            }),
            ..Volume::default()
        });
    }
    volumes.push(Volume {
        name: names.buffer.clone(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity(sidecar.buffer_size_limit.clone())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    });
    if sidecar.pod_annotations {
        volumes.push(Volume {
            name: names.pod_info.clone(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: POD_ANNOTATIONS_FILE.to_owned(),
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.annotations".to_owned(),
                        ..ObjectFieldSelector::default()
                    }),
                    ..DownwardAPIVolumeFile::default()
                }]),
                ..DownwardAPIVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    for s in &sidecar.secrets {
        let Some(volume) = names.secrets.get(&s.secret) else {
            continue;
        };
        volumes.push(Volume {
            name: volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(s.secret.clone()),
                items: Some(
                    s.keys
                        .iter()
                        .map(|k| KeyToPath {
                            key: k.clone(),
                            path: k.clone(),
                            ..KeyToPath::default()
                        })
                        .collect(),
                ),
                optional: Some(true),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    volumes
}
