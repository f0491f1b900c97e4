//! Agent configuration renderer: turns a `MonitoredApp` into the `AgentConfig` the sidecar agent
//! reads, and wraps it in the per-app ConfigMap that sidecar injection mounts.
//!
//! The paths here are the agent's view of the pod and must agree with the volumes that
//! `super::inject` mounts; both modules use the constants below, so they cannot drift apart.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use sha2::{Digest, Sha256};
use vigil_crds::agent_config::{
    AppIdentity, BasicAuthFile, BufferConfig, CrashesConfig, DeliveryConfig, ExportersConfig,
    HeaderConfig, HttpSink, Listen, LogsConfig, NamedSink, OtlpSink, RedactionConfig, ScrapeConfig,
    SplunkHecSink, TracesConfig, AGENT_CONFIG_VERSION,
};
use vigil_crds::monitored_app::{
    BasicAuth, HeaderSpec, HttpExporter, OtlpExporter, ReleaseSource, SplunkHecExporter,
};
use vigil_crds::{AgentConfig, MonitoredApp, SecretKeyRef};

use super::{child_meta, namespace_of};

/// Directory where the agent's ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/vigil/agent";
/// Key of the agent configuration inside the ConfigMap (and file name under [`CONFIG_DIR`]).
pub const CONFIG_KEY: &str = "agent.yaml";
/// Where the pod's own log directory (`/var/log/pods/<ns>_<pod>_<uid>`) is mounted read-only.
pub const POD_LOG_DIR: &str = "/var/log/vigil/pod";
/// Directory of the agent's disk buffer (an `emptyDir` sized by `agent.bufferSize`).
pub const BUFFER_DIR: &str = "/var/lib/vigil/buffer";
/// Where log read offsets are checkpointed; inside the buffer volume so that offsets and
/// buffered data survive an agent restart together.
pub const CHECKPOINT_DIR: &str = "/var/lib/vigil/buffer/checkpoints";
/// OTLP/gRPC port the agent listens on (localhost only).
pub const OTLP_GRPC_PORT: u16 = 4317;
/// OTLP/HTTP port the agent listens on (localhost only).
pub const OTLP_HTTP_PORT: u16 = 4318;
/// Annotation on the ConfigMap holding [`config_hash`] of its `agent.yaml`.
pub const CONFIG_HASH_ANNOTATION: &str = "vigil.dev/config-hash";

/// Name of the agent ConfigMap of the app called `app_name`.
pub fn config_map_name(app_name: &str) -> String {
    format!("vigil-agent-{app_name}")
}

/// The agent configuration for one `MonitoredApp`.
///
/// Secret references become file paths under the secrets directory (see
/// [`SecretKeyRef::mount_path`]); the values never appear in the config. `cluster` (the
/// operator's `--cluster-name`) becomes `app.cluster`: the agent's `cluster` label and
/// `k8s.cluster.name` attribute.
pub fn agent_config(app: &MonitoredApp, cluster: Option<&str>) -> AgentConfig {
    let spec = &app.spec;
    let (version_label, version_container) = match spec.release.source {
        ReleaseSource::Label => (Some(spec.release.label.clone()), None),
        ReleaseSource::ImageTag => (None, spec.release.container.clone()),
    };
    AgentConfig {
        version: AGENT_CONFIG_VERSION,
        app: AppIdentity {
            namespace: namespace_of(app),
            name: app.name_any(),
            client_type: spec.client_type,
            release_source: spec.release.source,
            version_label,
            version_container,
            cluster: cluster.filter(|c| !c.is_empty()).map(str::to_owned),
        },
        listen: Listen {
            otlp_grpc: format!("127.0.0.1:{OTLP_GRPC_PORT}"),
            otlp_http: format!("127.0.0.1:{OTLP_HTTP_PORT}"),
            admin: format!("0.0.0.0:{}", spec.agent.admin_port),
        },
        scrape: spec.metrics.as_ref().map(|m| ScrapeConfig {
            port: m.port.to_string(),
            path: m.path.clone(),
            interval: m.interval.clone(),
            timeout: m.timeout.clone(),
            honor_annotations: m.honor_annotations,
            pod_info_dir: None,
            job: Some(super::scrape::app_job_name(
                &namespace_of(app),
                &app.name_any(),
            )),
        }),
        logs: spec.logs.as_ref().map(|l| LogsConfig {
            pod_log_dir: l.container_logs.then(|| POD_LOG_DIR.to_owned()),
            containers: l.containers.clone(),
            files: l.files.clone(),
            format: l.format,
            multiline: l.multiline,
            user_field: l.user_field.clone(),
            checkpoint_dir: CHECKPOINT_DIR.to_owned(),
        }),
        traces: TracesConfig {
            enabled: spec.traces.enabled,
            sampling_ratio: spec.traces.sampling_ratio,
            max_request_bytes_in_flight: None,
        },
        crashes: CrashesConfig {
            enabled: spec.crashes.enabled,
            app_packages: spec.crashes.app_packages.clone(),
        },
        redaction: RedactionConfig {
            detectors: spec.redaction.detectors.clone(),
            patterns: spec.redaction.patterns.clone(),
        },
        buffer: BufferConfig {
            path: BUFFER_DIR.to_owned(),
            max_bytes: spec.agent.buffer_bytes(),
            when_full: spec.agent.when_full,
        },
        // Only when set, so that agents older than the field keep reading the default config.
        delivery: spec
            .agent
            .max_in_flight
            .map(|max_in_flight| DeliveryConfig { max_in_flight }),
        exporters: exporters(app),
    }
}

/// The mounted file of a Secret reference. An invalid reference (rejected by validation before
/// anything is rendered) gets no path rather than one that could leave its Secret's folder.
fn file(r: Option<&SecretKeyRef>) -> Option<String> {
    r.and_then(SecretKeyRef::mount_path)
}

fn basic_auth(b: &Option<BasicAuth>) -> Option<BasicAuthFile> {
    let b = b.as_ref()?;
    Some(BasicAuthFile {
        username: b.username.clone(),
        password_file: file(Some(&b.password_secret_ref))?,
    })
}

fn headers(headers: &[HeaderSpec]) -> Vec<HeaderConfig> {
    headers
        .iter()
        .map(|h| HeaderConfig {
            name: h.name.clone(),
            value: h.value.clone(),
            value_file: file(h.value_secret_ref.as_ref()),
        })
        .collect()
}

fn http_sink(h: &HttpExporter) -> HttpSink {
    HttpSink {
        url: h.url.clone(),
        tenant: h.tenant.clone(),
        bearer_token_file: file(h.bearer_token_secret_ref.as_ref()),
        ca_file: file(h.ca_secret_ref.as_ref()),
        basic_auth: basic_auth(&h.basic_auth),
        headers: headers(&h.headers),
        client_cert_file: file(h.client_cert_secret_ref.as_ref()),
        client_key_file: file(h.client_key_secret_ref.as_ref()),
        signals: h.signals.clone(),
    }
}

fn otlp_sink(o: &OtlpExporter) -> OtlpSink {
    OtlpSink {
        endpoint: o.endpoint.clone(),
        protocol: o.protocol,
        tenant: o.tenant.clone(),
        bearer_token_file: file(o.bearer_token_secret_ref.as_ref()),
        ca_file: file(o.ca_secret_ref.as_ref()),
        basic_auth: basic_auth(&o.basic_auth),
        headers: headers(&o.headers),
        client_cert_file: file(o.client_cert_secret_ref.as_ref()),
        client_key_file: file(o.client_key_secret_ref.as_ref()),
        signals: o.signals.clone(),
    }
}

fn splunk_sink(s: &SplunkHecExporter) -> Option<SplunkHecSink> {
    Some(SplunkHecSink {
        url: s.url.clone(),
        token_file: s.token_secret_ref.mount_path()?,
        index: s.index.clone(),
        sourcetype: s.sourcetype.clone(),
        ca_file: file(s.ca_secret_ref.as_ref()),
        headers: headers(&s.headers),
        client_cert_file: file(s.client_cert_secret_ref.as_ref()),
        client_key_file: file(s.client_key_secret_ref.as_ref()),
        signals: s.signals.clone(),
    })
}

fn exporters(app: &MonitoredApp) -> ExportersConfig {
    let e = &app.spec.exporters;
    ExportersConfig {
        otlp: e.otlp.as_ref().map(otlp_sink),
        prometheus_remote_write: e.prometheus_remote_write.as_ref().map(http_sink),
        loki: e.loki.as_ref().map(http_sink),
        splunk_hec: e.splunk_hec.as_ref().and_then(splunk_sink),
        named: e
            .named
            .iter()
            .map(|n| NamedSink {
                name: n.name.clone(),
                otlp: n.otlp.as_ref().map(otlp_sink),
                prometheus_remote_write: n.prometheus_remote_write.as_ref().map(http_sink),
                loki: n.loki.as_ref().map(http_sink),
                splunk_hec: n.splunk_hec.as_ref().and_then(splunk_sink),
            })
            .collect(),
    }
}

/// The YAML text of an agent config, exactly as written into the ConfigMap.
pub fn agent_config_yaml(config: &AgentConfig) -> String {
    // `AgentConfig` is plain structs, enums, strings and numbers with no maps, so serde_yaml has
    // no case in which it can fail for it (its only serialisation errors are non-string map keys
    // and errors raised by custom `Serialize` impls, of which there are none).
    #[allow(clippy::expect_used)] // infallible for this type, see above
    crate::yaml::to_string(config).expect("AgentConfig always serialises to YAML")
}

/// Content hash of a rendered config: sha256 of the text, hex, first 16 characters.
pub fn config_hash(text: &str) -> String {
    let mut hex = hex::encode(Sha256::digest(text.as_bytes()));
    hex.truncate(16);
    hex
}

/// The ConfigMap `vigil-agent-<app>` holding `agent.yaml`, annotated with the config's hash so
/// that a changed config is visible in `kubectl get -o yaml` and in the app's status.
pub fn agent_config_map(app: &MonitoredApp, config: &AgentConfig) -> ConfigMap {
    let yaml = agent_config_yaml(config);
    let mut metadata = child_meta(app, config_map_name(&app.name_any()));
    metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONFIG_HASH_ANNOTATION.into(), config_hash(&yaml));
    ConfigMap {
        metadata,
        data: Some(BTreeMap::from([(CONFIG_KEY.to_owned(), yaml)])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(yaml: &str) -> MonitoredApp {
        serde_yaml::from_str(yaml).unwrap()
    }

    const FULL: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: checkout, namespace: shop}
spec:
  selector: {matchLabels: {app: checkout}}
  clientType: banking
  metrics: {port: http-metrics, interval: 15s}
  logs: {format: json, userField: customer_id, containers: [app]}
  traces: {samplingRatio: 0.25}
  crashes: {appPackages: [com.shop.checkout, github.com/shop/checkout]}
  release: {source: imageTag, container: app}
  exporters:
    otlp:
      endpoint: https://otel.example:4317
      tenant: shop
      bearerTokenSecretRef: {name: otlp-auth, key: token}
      caSecretRef: {name: otlp-auth, key: ca.crt}
    loki: {url: "http://loki:3100/loki/api/v1/push"}
    splunkHec:
      url: https://splunk.example:8088
      tokenSecretRef: {name: splunk, key: hec-token}
    prometheusRemoteWrite:
      url: https://prometheus-prod-01-eu-west-0.grafana.net/api/prom/push
      basicAuth: {username: "123456", passwordSecretRef: {name: grafana-cloud, key: token}}
      headers:
      - {name: X-Org, value: shop}
      - {name: X-Api-Key, valueSecretRef: {name: gateway, key: api-key}}
      clientCertSecretRef: {name: mtls, key: tls.crt}
      clientKeySecretRef: {name: mtls, key: tls.key}
    named:
    - name: central
      otlp: {endpoint: "https://central.example:4317", signals: [traces]}
    - name: team-loki
      loki:
        url: http://loki.team:3100/loki/api/v1/push
        basicAuth: {username: shop, passwordSecretRef: {name: team-loki, key: password}}
  agent: {bufferSize: 1Gi, whenFull: dropNewest, adminPort: 9555, maxInFlight: 4}
"#;

    const MINIMAL: &str = r#"
apiVersion: vigil.dev/v1alpha1
kind: MonitoredApp
metadata: {name: portal}
spec:
  selector: {matchLabels: {app: portal}}
"#;

    /// The rendered config of a fully specified app, as the agent will read it.
    #[test]
    fn full_app_config_snapshot() {
        let config = agent_config(&app(FULL), Some("eu-prod-1"));
        insta::assert_yaml_snapshot!("agent_config__full", config);
    }

    /// The defaults an app with only a selector gets (no scrape, no logs, label release source).
    #[test]
    fn minimal_app_config_snapshot() {
        let config = agent_config(&app(MINIMAL), None);
        insta::assert_yaml_snapshot!("agent_config__minimal", config);
    }

    /// What the operator writes is accepted by the agent's own parser and validation, and reads
    /// back unchanged.
    #[test]
    fn rendered_yaml_round_trips_through_the_agent_parser() {
        for yaml in [FULL, MINIMAL] {
            let config = agent_config(&app(yaml), Some("eu-prod-1"));
            let parsed = AgentConfig::from_yaml(&agent_config_yaml(&config)).unwrap();
            assert_eq!(parsed, config);
        }
    }

    /// Secrets are referenced by mounted file path, never by value, and the paths are where
    /// injection mounts them.
    #[test]
    fn secrets_become_mounted_file_paths() {
        let config = agent_config(&app(FULL), None);
        let otlp = config.exporters.otlp.unwrap();
        assert_eq!(
            otlp.bearer_token_file.as_deref(),
            Some("/etc/vigil/secrets/otlp-auth/token")
        );
        assert_eq!(
            otlp.ca_file.as_deref(),
            Some("/etc/vigil/secrets/otlp-auth/ca.crt")
        );
        assert_eq!(
            config.exporters.splunk_hec.unwrap().token_file,
            "/etc/vigil/secrets/splunk/hec-token"
        );
        let rw = config.exporters.prometheus_remote_write.unwrap();
        let basic = rw.basic_auth.unwrap();
        assert_eq!(basic.username, "123456");
        assert_eq!(
            basic.password_file,
            "/etc/vigil/secrets/grafana-cloud/token"
        );
        assert_eq!(rw.headers[0].value.as_deref(), Some("shop"));
        assert_eq!(
            rw.headers[1].value_file.as_deref(),
            Some("/etc/vigil/secrets/gateway/api-key")
        );
        assert_eq!(
            rw.client_cert_file.as_deref(),
            Some("/etc/vigil/secrets/mtls/tls.crt")
        );
        assert_eq!(
            rw.client_key_file.as_deref(),
            Some("/etc/vigil/secrets/mtls/tls.key")
        );
        assert_eq!(config.exporters.named.len(), 2);
        assert_eq!(
            config.exporters.named[1]
                .loki
                .as_ref()
                .unwrap()
                .basic_auth
                .as_ref()
                .unwrap()
                .password_file,
            "/etc/vigil/secrets/team-loki/password"
        );
    }

    /// Every Secret the exporters reference — basic-auth passwords, header values, client
    /// certificates and keys, of the single and the named exporters — is one injection mounts.
    #[test]
    fn every_referenced_secret_is_mounted() {
        let a = app(FULL);
        let refs: Vec<(String, String)> = a
            .spec
            .exporters
            .secret_refs()
            .into_iter()
            .map(|r| (r.name.clone(), r.key.clone()))
            .collect();
        for expected in [
            ("grafana-cloud", "token"),
            ("gateway", "api-key"),
            ("mtls", "tls.crt"),
            ("mtls", "tls.key"),
            ("team-loki", "password"),
            ("splunk", "hec-token"),
        ] {
            assert!(
                refs.contains(&(expected.0.to_owned(), expected.1.to_owned())),
                "{expected:?} not in {refs:?}"
            );
        }
    }

    /// Listen addresses: OTLP only on loopback, admin on all interfaces at the configured port;
    /// logs come from the mounted pod log dir and checkpoint inside the buffer volume.
    #[test]
    fn listen_and_paths_match_the_injected_pod() {
        let config = agent_config(&app(FULL), None);
        assert_eq!(config.listen.otlp_grpc, "127.0.0.1:4317");
        assert_eq!(config.listen.otlp_http, "127.0.0.1:4318");
        assert_eq!(config.listen.admin, "0.0.0.0:9555");
        let logs = config.logs.unwrap();
        assert_eq!(logs.pod_log_dir.as_deref(), Some(POD_LOG_DIR));
        assert!(logs.checkpoint_dir.starts_with(&config.buffer.path));
        assert_eq!(config.buffer.max_bytes, 1 << 30);
    }

    /// The ConfigMap is named after the app, owned by it, and its hash annotation is the hash
    /// of exactly the YAML it carries (16 hex characters), so any config change changes it.
    #[test]
    fn config_map_carries_yaml_and_its_hash() {
        let a = app(FULL);
        let cm = agent_config_map(&a, &agent_config(&a, None));
        assert_eq!(cm.metadata.name.as_deref(), Some("vigil-agent-checkout"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("shop"));
        let yaml = &cm.data.as_ref().unwrap()[CONFIG_KEY];
        let hash = &cm.metadata.annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION];
        assert_eq!(hash, &config_hash(yaml));
        assert_eq!(hash.len(), 16);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));

        let mut changed = agent_config(&a, None);
        changed.traces.sampling_ratio = 0.5;
        let cm2 = agent_config_map(&a, &changed);
        assert_ne!(
            cm2.metadata.annotations.unwrap()[CONFIG_HASH_ANNOTATION],
            *hash
        );
        insta::assert_yaml_snapshot!("agent_config__config_map", cm);
    }
}
