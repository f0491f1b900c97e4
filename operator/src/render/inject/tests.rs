//! Tests of sidecar injection: idempotence, reversibility, and the shape of the injected agent.

use super::*;

const IMAGE: &str = "ghcr.io/vigil-dev/vigil-agent:0.1.0";

fn app(yaml: &str) -> MonitoredApp {
    serde_yaml::from_str(yaml).unwrap()
}

fn pod(yaml: &str) -> Pod {
    serde_yaml::from_str(yaml).unwrap()
}

/// An app using every injection feature: logs, traces, secrets, label versions, metrics with
/// the pod's `prometheus.io/*` annotations honoured (the default).
const FULL_APP: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: checkout, namespace: shop}
spec:
  selector: {matchLabels: {app: checkout}}
  metrics: {port: 9102}
  logs: {format: json}
  exporters:
    otlp:
      endpoint: https://otel.example:4317
      bearerTokenSecretRef: {name: otlp-auth, key: token}
      caSecretRef: {name: otlp-auth, key: ca.crt}
    splunkHec:
      url: https://splunk.example:8088
      tokenSecretRef: {name: splunk.hec, key: hec-token}
  agent: {bufferSize: 512Mi, adminPort: 9555}
"#;

/// An app without logs or traces, versioned by image tag.
const LEAN_APP: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: portal, namespace: gov}
spec:
  selector: {matchLabels: {app: portal}}
  traces: {enabled: false}
  release: {source: imageTag, container: web}
  agent:
    image: registry.gov.example/vigil-agent:pinned
    resources:
      requests: {cpu: 50m, memory: 32Mi}
"#;

/// Pod shapes the webhook sees in practice.
fn pods() -> Vec<(&'static str, Pod)> {
    vec![
        (
            "single container",
            pod(r#"
metadata: {name: checkout-1, namespace: shop, labels: {app: checkout}}
spec:
  containers:
  - {name: app, image: "shop/checkout:17.2"}
"#),
        ),
        (
            "init containers, colliding volume names, own annotations",
            pod(r#"
metadata:
  generateName: checkout-
  namespace: shop
  labels: {app: checkout, app.kubernetes.io/version: "17.2"}
  annotations: {prometheus.io/scrape: "true"}
spec:
  initContainers:
  - {name: migrate, image: "shop/migrate:1", volumeMounts: [{name: vigil-buffer, mountPath: /data}]}
  containers:
  - name: app
    image: shop/checkout:17.2
    volumeMounts: [{name: vigil-agent-config, mountPath: /etc/app}]
  volumes:
  - {name: vigil-buffer, emptyDir: {}}
  - {name: vigil-agent-config, configMap: {name: app-config}}
  - {name: vigil-buffer-2, emptyDir: {}}
"#),
        ),
        (
            "containers that configure OTLP themselves",
            pod(r#"
metadata: {name: web-1, namespace: gov, labels: {app: portal}}
spec:
  containers:
  - name: web
    image: gov/portal:2024.4@sha256:0123456789abcdef
    env:
    - {name: OTEL_EXPORTER_OTLP_ENDPOINT, value: "http://collector:4318"}
  - name: worker
    image: gov/worker:3
    envFrom: [{configMapRef: {name: worker-env}}]
  - name: cron
    image: gov/cron
    env:
    - {name: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, value: "http://tempo:4318/v1/traces"}
  - name: plain
    image: gov/plain:1
    env:
    - {name: LOG_LEVEL, value: debug}
"#),
        ),
        (
            "empty maps and lists written out",
            pod(r#"
metadata: {name: odd, namespace: shop, labels: {}, annotations: {}}
spec:
  initContainers: []
  volumes: []
  containers:
  - {name: app, image: "shop/odd:1", env: []}
"#),
        ),
        (
            "no spec",
            pod(r#"
metadata: {name: bare}
"#),
        ),
        (
            // No valid container name has a comma (the API server refuses the pod after
            // admission), but the webhook sees it first.
            "a container name with a comma",
            pod(r#"
metadata: {name: checkout-1, namespace: shop, labels: {app: checkout}}
spec:
  containers:
  - {name: "app,web", image: "shop/checkout:17.2"}
  - {name: side, image: "shop/side:1"}
"#),
        ),
    ]
}

/// Every sidecar variant: both apps, native and regular-container mode.
fn sidecars() -> Vec<AgentSidecar> {
    let mut out = Vec::new();
    for yaml in [FULL_APP, LEAN_APP] {
        let native = AgentSidecar::for_app(&app(yaml), IMAGE);
        let legacy = AgentSidecar {
            native_sidecar: false,
            ..native.clone()
        };
        out.push(native);
        out.push(legacy);
    }
    out
}

fn agent(pod: &Pod) -> Option<&Container> {
    let spec = pod.spec.as_ref()?;
    all_containers(spec).find(|c| c.name == AGENT_CONTAINER)
}

fn volume_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .map(|v| v.name.clone())
        .collect()
}

/// Injecting twice is the same as injecting once, for every pod shape and sidecar mode.
#[test]
fn inject_is_idempotent() {
    for sidecar in sidecars() {
        for (shape, p) in pods() {
            let once = inject(p, &sidecar);
            let twice = inject(once.clone(), &sidecar);
            assert_eq!(twice, once, "{shape} (native={})", sidecar.native_sidecar);
        }
    }
}

/// Removing the injection restores the original pod exactly, for pods with no Vigil parts
/// (empty lists and maps written out are the one normalisation: see the dedicated test).
#[test]
fn uninject_reverses_inject() {
    for sidecar in sidecars() {
        for (shape, p) in pods().into_iter().filter(|(s, _)| !s.starts_with("empty")) {
            let back = uninject(inject(p.clone(), &sidecar));
            assert_eq!(back, p, "{shape} (native={})", sidecar.native_sidecar);
        }
    }
}

/// Explicitly empty lists and maps come back absent, which Kubernetes treats the same way;
/// everything else is restored.
#[test]
fn uninject_normalises_only_empty_collections() {
    let (_, p) = pods()
        .into_iter()
        .find(|(s, _)| s.starts_with("empty"))
        .unwrap();
    let back = uninject(inject(p.clone(), &sidecars()[0]));
    assert_eq!(back.metadata.labels, None);
    assert_eq!(back.metadata.annotations, None);
    let spec = back.spec.unwrap();
    assert_eq!(spec.init_containers, None);
    assert_eq!(spec.volumes, None);
    assert_eq!(
        spec.containers,
        p.spec
            .unwrap()
            .containers
            .into_iter()
            .map(|mut c| {
                c.env = None;
                c
            })
            .collect::<Vec<_>>()
    );
}

/// The pod as JSON with empty lists and maps removed (Kubernetes reads both as absent).
fn without_empties(pod: &Pod) -> serde_json::Value {
    fn strip(v: serde_json::Value) -> Option<serde_json::Value> {
        use serde_json::Value;
        match v {
            Value::Array(a) if a.is_empty() => None,
            Value::Object(o) if o.is_empty() => None,
            Value::Array(a) => Some(Value::Array(a.into_iter().filter_map(strip).collect())),
            Value::Object(o) => {
                let o: serde_json::Map<_, _> = o
                    .into_iter()
                    .filter_map(|(k, v)| strip(v).map(|v| (k, v)))
                    .collect();
                (!o.is_empty()).then_some(Value::Object(o))
            }
            other => Some(other),
        }
    }
    strip(serde_json::to_value(pod).unwrap()).unwrap_or_default()
}

/// Re-injecting an injected pod with a different sidecar (a new image, another mode) gives the
/// same pod as injecting the original (up to empty lists written out by the user): the old
/// agent is replaced, never doubled.
#[test]
fn reinjection_replaces_the_previous_agent() {
    let all = sidecars();
    for first in &all {
        for second in &all {
            for (shape, p) in pods() {
                let direct = inject(p.clone(), second);
                let via = inject(inject(p, first), second);
                assert_eq!(without_empties(&via), without_empties(&direct), "{shape}");
                let agents = via
                    .spec
                    .iter()
                    .flat_map(all_containers)
                    .filter(|c| c.name == AGENT_CONTAINER)
                    .count();
                assert_eq!(agents, usize::from(via.spec.is_some()), "{shape}");
            }
        }
    }
}

/// A native sidecar is the first init container with `restartPolicy: Always`; in legacy mode
/// the agent is the last regular container and has no restart policy.
#[test]
fn agent_placement_depends_on_mode() {
    let (_, p) = pods().into_iter().nth(1).unwrap();
    let native = AgentSidecar::for_app(&app(FULL_APP), IMAGE);
    let injected = inject(p.clone(), &native);
    let spec = injected.spec.as_ref().unwrap();
    let inits = spec.init_containers.as_ref().unwrap();
    assert_eq!(inits[0].name, AGENT_CONTAINER);
    assert_eq!(inits[0].restart_policy.as_deref(), Some("Always"));
    assert_eq!(inits[1].name, "migrate");
    assert!(spec.containers.iter().all(|c| c.name != AGENT_CONTAINER));

    let legacy = AgentSidecar {
        native_sidecar: false,
        ..native
    };
    let injected = inject(p, &legacy);
    let spec = injected.spec.as_ref().unwrap();
    let last = spec.containers.last().unwrap();
    assert_eq!(last.name, AGENT_CONTAINER);
    assert_eq!(last.restart_policy, None);
    assert_eq!(spec.containers[0].name, "app");
}

/// The pod's own volumes are never shadowed or removed: Vigil picks free names, and every
/// volume the agent mounts exists.
#[test]
fn colliding_volume_names_are_avoided() {
    let (_, p) = pods().into_iter().nth(1).unwrap();
    let before = volume_names(&p);
    let injected = inject(p, &AgentSidecar::for_app(&app(FULL_APP), IMAGE));
    let after = volume_names(&injected);
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "the pod's volumes come first, unchanged"
    );
    let unique: BTreeSet<&String> = after.iter().collect();
    assert_eq!(
        unique.len(),
        after.len(),
        "volume names are unique: {after:?}"
    );
    let mounts: Vec<String> = agent(&injected)
        .unwrap()
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.name.clone())
        .collect();
    assert!(mounts.iter().all(|m| after.contains(m)));
    assert!(
        mounts.iter().all(|m| !before.contains(m)),
        "agent mounts only its own: {mounts:?}"
    );
    assert!(mounts.contains(&"vigil-buffer-3".to_owned()));
    assert!(mounts.contains(&"vigil-agent-config-2".to_owned()));
}

/// Only containers that do not configure OTLP themselves get the agent's endpoint, the
/// annotation lists exactly them, and nothing is added when traces are off.
#[test]
fn otlp_environment_respects_the_containers_own_settings() {
    let (_, p) = pods().into_iter().nth(2).unwrap();
    let injected = inject(p.clone(), &AgentSidecar::for_app(&app(FULL_APP), IMAGE));
    let spec = injected.spec.as_ref().unwrap();
    let env_of = |name: &str| {
        let c = spec.containers.iter().find(|c| c.name == name).unwrap();
        c.env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        env_of("web"),
        vec![(
            OTLP_ENDPOINT_VAR.to_owned(),
            Some("http://collector:4318".to_owned())
        )]
    );
    assert!(env_of("worker").is_empty());
    assert_eq!(env_of("cron").len(), 1);
    assert_eq!(
        env_of("plain"),
        vec![
            ("LOG_LEVEL".to_owned(), Some("debug".to_owned())),
            (
                OTLP_ENDPOINT_VAR.to_owned(),
                Some("http://localhost:4318".to_owned())
            ),
            (
                OTLP_PROTOCOL_VAR.to_owned(),
                Some("http/protobuf".to_owned())
            ),
        ]
    );
    assert_eq!(
        injected.metadata.annotations.as_ref().unwrap()[OTLP_ENV_ANNOTATION],
        "plain"
    );

    let no_traces = inject(p, &AgentSidecar::for_app(&app(LEAN_APP), IMAGE));
    assert!(!no_traces
        .metadata
        .annotations
        .unwrap()
        .contains_key(OTLP_ENV_ANNOTATION));
    let plain = no_traces
        .spec
        .unwrap()
        .containers
        .into_iter()
        .find(|c| c.name == "plain")
        .unwrap();
    assert_eq!(plain.env.unwrap().len(), 1);
}

/// The agent sees only its own pod's logs: the node's pod-log root is mounted read-only with a
/// sub-path built from the downward-API variables the container defines; without container
/// logs there is no hostPath volume at all.
#[test]
fn log_mount_is_limited_to_the_own_pod() {
    let (_, p) = pods().into_iter().next().unwrap();
    let injected = inject(p.clone(), &AgentSidecar::for_app(&app(FULL_APP), IMAGE));
    let a = agent(&injected).unwrap();
    let mount = a
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == POD_LOG_DIR)
        .unwrap();
    assert_eq!(mount.read_only, Some(true));
    let expr = mount.sub_path_expr.as_deref().unwrap();
    assert_eq!(expr, "$(POD_NAMESPACE)_$(POD_NAME)_$(POD_UID)");
    let env: Vec<&str> = a.env.iter().flatten().map(|e| e.name.as_str()).collect();
    for var in ["POD_NAMESPACE", "POD_NAME", "POD_UID", "NODE_NAME"] {
        assert!(env.contains(&var), "{var} is defined for subPathExpr");
    }
    let volume = injected
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap();
    assert_eq!(volume.host_path.as_ref().unwrap().path, NODE_POD_LOGS);
    assert_eq!(a.security_context.as_ref().unwrap().run_as_group, Some(0));

    let lean = inject(p, &AgentSidecar::for_app(&app(LEAN_APP), IMAGE));
    let spec = lean.spec.as_ref().unwrap();
    assert!(spec.volumes.iter().flatten().all(|v| v.host_path.is_none()));
    assert_eq!(
        agent(&lean)
            .unwrap()
            .security_context
            .as_ref()
            .unwrap()
            .run_as_group,
        Some(AGENT_UID)
    );
}

/// The agent is locked down (non-root, read-only root, no escalation, no capabilities,
/// default seccomp) and probed on /readyz and /healthz at the admin port.
#[test]
fn agent_is_locked_down_and_probed() {
    for sidecar in sidecars() {
        let injected = inject(pods().remove(0).1, &sidecar);
        let a = agent(&injected).unwrap();
        let sc = a.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_ne!(sc.run_as_user, Some(0));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_owned()][..])
        );
        let path = |p: &Option<Probe>| p.as_ref().unwrap().http_get.as_ref().unwrap().path.clone();
        assert_eq!(path(&a.readiness_probe).as_deref(), Some("/readyz"));
        assert_eq!(path(&a.liveness_probe).as_deref(), Some("/healthz"));
        let admin = a
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(ADMIN_PORT_NAME));
        assert_eq!(admin.unwrap().container_port, i32::from(sidecar.admin_port));
        assert_eq!(
            a.args.as_ref().unwrap(),
            &["--config", "/etc/vigil/agent/agent.yaml"]
        );
    }
}

/// Defaults from the spec: the default image and resources unless the app overrides them, a
/// buffer `sizeLimit` above the configured buffer, and one read-only volume per Secret with
/// only the referenced keys, at the path the agent config names.
#[test]
fn sidecar_is_resolved_from_the_app() {
    let full = AgentSidecar::for_app(&app(FULL_APP), IMAGE);
    assert_eq!(full.image, IMAGE);
    assert_eq!(full.resources, default_resources());
    assert_eq!(full.buffer_size_limit, "528Mi");
    assert_eq!(full.config_map, "vigil-agent-checkout");
    assert_eq!(
        full.secrets,
        vec![
            SecretMount {
                secret: "otlp-auth".into(),
                keys: vec!["ca.crt".into(), "token".into()]
            },
            SecretMount {
                secret: "splunk.hec".into(),
                keys: vec!["hec-token".into()]
            },
        ]
    );
    let injected = inject(pods().remove(0).1, &full);
    let a = agent(&injected).unwrap();
    let secret_mounts: Vec<(&str, &str)> = a
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.mount_path.starts_with(SECRETS_DIR))
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    assert_eq!(
        secret_mounts,
        vec![
            ("vigil-secret-otlp-auth", "/etc/vigil/secrets/otlp-auth"),
            ("vigil-secret-splunk-hec", "/etc/vigil/secrets/splunk.hec"),
        ]
    );

    // A reference that could leave its Secret's folder is never mounted.
    let mut escaping = app(FULL_APP);
    if let Some(otlp) = escaping.spec.exporters.otlp.as_mut() {
        otlp.bearer_token_secret_ref = Some(vigil_crds::SecretKeyRef {
            name: "otlp-auth".into(),
            key: "../../other/token".into(),
        });
    }
    let escaping = AgentSidecar::for_app(&escaping, IMAGE);
    assert!(
        escaping
            .secrets
            .iter()
            .flat_map(|s| &s.keys)
            .all(|k| !k.contains("..") && !k.contains('/')),
        "{:?}",
        escaping.secrets
    );

    let lean = AgentSidecar::for_app(&app(LEAN_APP), IMAGE);
    assert_eq!(lean.image, "registry.gov.example/vigil-agent:pinned");
    assert_eq!(lean.buffer_size_limit, "272Mi");
    assert!(lean.secrets.is_empty());
    assert_ne!(lean.spec_hash(), full.spec_hash());
    assert_eq!(
        full.spec_hash(),
        AgentSidecar::for_app(&app(FULL_APP), IMAGE).spec_hash()
    );
}

/// The version reaches the agent: from the pod label through the downward API, or from the
/// image tag of the named container (digest stripped).
#[test]
fn version_is_passed_to_the_agent() {
    let labelled = inject(
        pods().remove(0).1,
        &AgentSidecar::for_app(&app(FULL_APP), IMAGE),
    );
    let env = agent(&labelled).unwrap().env.clone().unwrap();
    let version = env.iter().find(|e| e.name == VERSION_ENV).unwrap();
    let field = version
        .value_from
        .as_ref()
        .unwrap()
        .field_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        field.field_path,
        "metadata.labels['app.kubernetes.io/version']"
    );

    let tagged = inject(
        pods().remove(2).1,
        &AgentSidecar::for_app(&app(LEAN_APP), IMAGE),
    );
    let env = agent(&tagged).unwrap().env.clone().unwrap();
    let version = env.iter().find(|e| e.name == VERSION_ENV).unwrap();
    assert_eq!(version.value.as_deref(), Some("2024.4"));

    assert_eq!(image_tag("registry:5000/team/app:1.2.3"), Some("1.2.3"));
    assert_eq!(image_tag("registry:5000/team/app"), None);
    assert_eq!(image_tag("app@sha256:abc"), None);
}

/// A pod that already runs a container named `vigil-agent` that Vigil did not inject is left
/// exactly as it is (adding ours would make the pod invalid).
#[test]
fn foreign_agent_container_is_left_alone() {
    let p = pod(r#"
metadata: {name: diy, namespace: shop}
spec:
  containers:
  - {name: app, image: "shop/app:1"}
  - {name: vigil-agent, image: "someone/else:1"}
"#);
    for sidecar in sidecars() {
        assert_eq!(inject(p.clone(), &sidecar), p);
    }
}

/// Long or dotted Secret names still give valid, distinct volume names (DNS labels ≤ 63).
#[test]
fn secret_volume_names_are_dns_labels() {
    let long_a = format!("{}.a", "x".repeat(80));
    let long_b = format!("{}.b", "x".repeat(80));
    let (a, b) = (secret_volume_base(&long_a), secret_volume_base(&long_b));
    assert_ne!(a, b);
    for name in [a, b, secret_volume_base("tls.cert")] {
        assert!(name.len() <= 58, "{name}");
        assert!(name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }
}

/// Snapshots live with the other renderers' in `render/snapshots/`.
fn snapshot(name: &str, pod: &Pod) {
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_yaml_snapshot!(name, pod);
    });
}

/// The full injected pod for the common case, as the webhook's patch will produce it.
#[test]
fn injected_pod_snapshot() {
    let (_, p) = pods().into_iter().nth(1).unwrap();
    let injected = inject(p, &AgentSidecar::for_app(&app(FULL_APP), IMAGE));
    snapshot("inject__native_sidecar_pod", &injected);
}

/// The legacy (regular container) form for clusters without native sidecars.
#[test]
fn legacy_injected_pod_snapshot() {
    let (_, p) = pods().into_iter().nth(2).unwrap();
    let sidecar = AgentSidecar {
        native_sidecar: false,
        ..AgentSidecar::for_app(&app(LEAN_APP), IMAGE)
    };
    snapshot("inject__legacy_container_pod", &inject(p, &sidecar));
}

/// A named metrics port is resolved against the pod's container ports into
/// `VIGIL_SCRAPE_PORT`, the number the agent scrapes; a numeric port needs no variable.
#[test]
fn named_metrics_port_is_resolved_for_the_agent() {
    let named = app(r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: api, namespace: bank}
spec:
  selector: {matchLabels: {app: api}}
  metrics: {port: http-metrics}
"#);
    let p = pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: api-0, namespace: bank, labels: {app: api}}
spec:
  containers:
  - name: api
    image: bank/api:17.2
    ports: [{name: http, containerPort: 8080}, {name: http-metrics, containerPort: 9102}]
"#);
    let env_of = |pod: &Pod| -> Option<String> {
        let spec = pod.spec.as_ref()?;
        let agent = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .find(|c| c.name == AGENT_CONTAINER)?;
        agent
            .env
            .iter()
            .flatten()
            .find(|e| e.name == SCRAPE_PORT_ENV)?
            .value
            .clone()
    };
    let injected = inject(p.clone(), &AgentSidecar::for_app(&named, IMAGE));
    assert_eq!(env_of(&injected).as_deref(), Some("9102"));

    let numbered = app(FULL_APP);
    let injected = inject(p, &AgentSidecar::for_app(&numbered, IMAGE));
    assert_eq!(env_of(&injected), None);
}

/// The agent container and nothing else mounts the pod's annotations.
fn pod_info_mounts(pod: &Pod) -> Vec<(String, String, Option<bool>)> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    all_containers(spec)
        .flat_map(|c| {
            c.volume_mounts
                .iter()
                .flatten()
                .filter(|m| m.mount_path == POD_INFO_DIR)
                .map(|m| (c.name.clone(), m.name.clone(), m.read_only))
        })
        .collect()
}

/// With `honorAnnotations` (the default when the app has `metrics`), the pod's annotations
/// reach the agent through a downward API volume, read-only at the directory the agent reads
/// by default; the volume exposes exactly `metadata.annotations` as `annotations`. Without
/// metrics, or with honouring off, there is no such volume.
#[test]
fn pod_annotations_are_mounted_for_the_agent() {
    let (_, p) = pods().into_iter().next().unwrap();
    let honouring = AgentSidecar::for_app(&app(FULL_APP), IMAGE);
    assert!(honouring.pod_annotations);
    let injected = inject(p.clone(), &honouring);
    assert_eq!(
        pod_info_mounts(&injected),
        [(
            AGENT_CONTAINER.to_owned(),
            "vigil-podinfo".to_owned(),
            Some(true)
        )]
    );
    let volume = injected
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|v| v.iter().find(|v| v.name == "vigil-podinfo"))
        .expect("pod info volume");
    let items = volume
        .downward_api
        .as_ref()
        .and_then(|d| d.items.clone())
        .expect("downward API items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].path, POD_ANNOTATIONS_FILE);
    assert_eq!(
        items[0].field_ref.as_ref().map(|f| f.field_path.as_str()),
        Some("metadata.annotations")
    );
    assert_eq!(
        format!("{POD_INFO_DIR}/{POD_ANNOTATIONS_FILE}"),
        "/etc/vigil/podinfo/annotations"
    );

    let off = app(&FULL_APP.replace("{port: 9102}", "{port: 9102, honorAnnotations: false}"));
    for sidecar in [
        AgentSidecar::for_app(&off, IMAGE),
        AgentSidecar::for_app(&app(LEAN_APP), IMAGE),
    ] {
        assert!(!sidecar.pod_annotations);
        let injected = inject(p.clone(), &sidecar);
        assert!(pod_info_mounts(&injected).is_empty());
        assert!(!volume_names(&injected)
            .iter()
            .any(|n| n.starts_with("vigil-podinfo")));
    }
}

/// The pod-info volume keeps injection idempotent and reversible, also when the pod already
/// has a volume of that name (ours takes a free one, theirs stays), and turning honouring off
/// and re-injecting removes it.
#[test]
fn pod_info_volume_is_idempotent_and_reversible() {
    let p = pod(r#"
metadata:
  name: checkout-2
  namespace: shop
  labels: {app: checkout}
  annotations: {prometheus.io/port: "9102", prometheus.io/path: /stats}
spec:
  containers:
  - name: app
    image: shop/checkout:17.2
    volumeMounts: [{name: vigil-podinfo, mountPath: /etc/podinfo}]
  volumes:
  - name: vigil-podinfo
    downwardAPI:
      items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]
"#);
    let sidecar = AgentSidecar::for_app(&app(FULL_APP), IMAGE);
    let once = inject(p.clone(), &sidecar);
    assert_eq!(inject(once.clone(), &sidecar), once);
    assert_eq!(uninject(once.clone()), p);
    assert_eq!(
        pod_info_mounts(&once),
        [(
            AGENT_CONTAINER.to_owned(),
            "vigil-podinfo-2".to_owned(),
            Some(true)
        )]
    );
    let names = volume_names(&once);
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("vigil-podinfo"))
            .count(),
        2,
        "{names:?}"
    );
    let theirs = once
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|v| v.iter().find(|v| v.name == "vigil-podinfo"))
        .unwrap();
    assert_eq!(
        theirs
            .downward_api
            .as_ref()
            .and_then(|d| d.items.as_ref())
            .unwrap()[0]
            .path,
        "labels"
    );

    let off = AgentSidecar::for_app(
        &app(&FULL_APP.replace("{port: 9102}", "{port: 9102, honorAnnotations: false}")),
        IMAGE,
    );
    let switched = inject(once, &off);
    assert_eq!(switched, inject(p, &off));
    assert!(pod_info_mounts(&switched).is_empty());
    assert_ne!(
        sidecar.spec_hash(),
        off.spec_hash(),
        "the change needs a restart"
    );
}

// ---------------------------------------------------------------------------------------------
// What a real API server would refuse: Pod Security admission and version-specific pod fields.

/// A pod that `restricted` admits: non-root, no escalation, all capabilities dropped, seccomp.
const RESTRICTED_POD: &str = r#"
metadata: {name: hardened-1, namespace: shop, labels: {app: checkout}}
spec:
  securityContext:
    runAsNonRoot: true
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: app
    image: shop/checkout:17.2
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
  volumes:
  - {name: cache, emptyDir: {}}
"#;

const LEVELS: [PodSecurityLevel; 3] = [
    PodSecurityLevel::Privileged,
    PodSecurityLevel::Baseline,
    PodSecurityLevel::Restricted,
];

/// Injection never makes a pod violate its namespace's Pod Security level: for every level,
/// pod shape, app and sidecar mode, the injected pod breaks no rule the pod itself kept (what
/// the API server's PodSecurity admission would otherwise reject).
#[test]
fn injection_keeps_the_namespace_pod_security_level() {
    let mut shapes = pods();
    shapes.push(("restricted-compliant", pod(RESTRICTED_POD)));
    for level in LEVELS {
        for sidecar in sidecars() {
            let sidecar = sidecar.under_pod_security(level);
            for (shape, p) in &shapes {
                let Some(spec) = p.spec.as_ref() else {
                    continue;
                };
                let before = pod_security::violations(spec, level);
                let injected = inject(p.clone(), &sidecar);
                let after = pod_security::violations(injected.spec.as_ref().unwrap(), level);
                let added: Vec<_> = after.difference(&before).collect();
                assert!(
                    added.is_empty(),
                    "{shape} at {level} (native={}): injection adds {added:?}",
                    sidecar.native_sidecar
                );
            }
        }
    }
    // The restricted-compliant pod stays admissible at every level once injected.
    let hardened = pod(RESTRICTED_POD);
    assert!(pod_security::violations(
        hardened.spec.as_ref().unwrap(),
        PodSecurityLevel::Restricted
    )
    .is_empty());
    for level in LEVELS {
        let sidecar = AgentSidecar::for_pod_of(&app(FULL_APP), IMAGE, true, level);
        let injected = inject(hardened.clone(), &sidecar);
        assert_eq!(
            pod_security::violations(injected.spec.as_ref().unwrap(), level),
            std::collections::BTreeSet::new(),
            "{level}"
        );
    }
}

/// Under `baseline` and `restricted` the pod-log hostPath is left out and the agent is told
/// why in `VIGIL_POD_LOGS_OFF`; under `privileged` (or no label) it is mounted as before.
#[test]
fn pod_logs_follow_the_pod_security_level() {
    let full = app(FULL_APP);
    for level in LEVELS {
        let sidecar = AgentSidecar::for_pod_of(&full, IMAGE, true, level);
        let injected = inject(pod(RESTRICTED_POD), &sidecar);
        let host_paths = injected
            .spec
            .as_ref()
            .unwrap()
            .volumes
            .iter()
            .flatten()
            .filter(|v| v.host_path.is_some())
            .count();
        let env = agent(&injected).unwrap().env.clone().unwrap_or_default();
        let off = env.iter().find(|e| e.name == POD_LOGS_OFF_ENV);
        if level == PodSecurityLevel::Privileged {
            assert_eq!(host_paths, 1);
            assert!(off.is_none());
            assert_eq!(sidecar.pod_logs_off, None);
        } else {
            assert_eq!(host_paths, 0, "{level}");
            let reason = off.and_then(|e| e.value.clone()).unwrap();
            assert!(
                reason.contains(level.as_str()) && reason.contains(pod_security::ENFORCE_LABEL),
                "{reason}"
            );
            // The group-0 read of the runtime's log files is not needed without them.
            let sc = agent(&injected).unwrap().security_context.clone().unwrap();
            assert_eq!(sc.run_as_group, Some(AGENT_UID));
        }
    }
    // An app that collects no container logs is the same sidecar at every level.
    let lean = app(LEAN_APP);
    let hashes: std::collections::BTreeSet<_> = LEVELS
        .iter()
        .map(|l| AgentSidecar::for_pod_of(&lean, IMAGE, true, *l).spec_hash())
        .collect();
    assert_eq!(hashes.len(), 1);
}

/// Version-specific pod fields: a regular sidecar container (clusters without native
/// sidecars) leaves no init container with `restartPolicy` or probes — the fields such a
/// server drops or rejects (`livenessProbe: Forbidden: may not be set for init containers
/// without restartPolicy=Always`); a native sidecar is the first init container with
/// `restartPolicy: Always`, its probes allowed only there.
#[test]
fn sidecar_mode_uses_only_fields_the_server_version_accepts() {
    for (shape, p) in pods() {
        for sidecar in sidecars() {
            let injected = inject(p.clone(), &sidecar);
            let Some(spec) = injected.spec.as_ref() else {
                continue;
            };
            for c in spec.init_containers.iter().flatten() {
                let always = c.restart_policy.as_deref() == Some("Always");
                if !sidecar.native_sidecar {
                    assert!(
                        c.restart_policy.is_none(),
                        "{shape}: init container {} has restartPolicy",
                        c.name
                    );
                }
                if !always {
                    assert!(
                        c.liveness_probe.is_none()
                            && c.readiness_probe.is_none()
                            && c.startup_probe.is_none(),
                        "{shape}: init container {} has probes without restartPolicy Always",
                        c.name
                    );
                }
            }
            let agent_is_init = spec
                .init_containers
                .iter()
                .flatten()
                .any(|c| c.name == AGENT_CONTAINER);
            assert_eq!(agent_is_init, sidecar.native_sidecar, "{shape}");
            if sidecar.native_sidecar {
                assert_eq!(
                    spec.init_containers.as_ref().unwrap()[0].name,
                    AGENT_CONTAINER
                );
            }
        }
    }
}
