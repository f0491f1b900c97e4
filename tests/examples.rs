//! Every example renders, deterministically, into output that the real tools accept:
//! `promtool check config` and `check rules`, `amtool check-config` and routing tests, a real
//! Prometheus that starts on the rendered configuration and loads every rule group, and the
//! agent's own config parser.
#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step must fail the test with its message"
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vigil_operator::bundle;
use vigil_operator::manifests;
use vigil_tests::{free_port, render_example, repo_root, run_ok, tested_options, tool, CLUSTER};

const EXAMPLES: [&str; 3] = ["banking", "infrastructure", "public-sector"];

/// With a cluster name, every generated alert carries it as its `cluster` label and every
/// agent config as `app.cluster`, which the agent puts on every series and OTLP record.
#[test]
fn cluster_name_reaches_every_alert_and_agent_config() {
    for name in EXAMPLES {
        let bundle = render_example(name);
        let mut alerts = 0;
        let mut agents = 0;
        for path in bundle.paths() {
            let text = String::from_utf8(bundle.files[path].clone()).expect("utf-8");
            let path_text = path.to_string_lossy();
            if path_text.starts_with("prometheus/rules/") {
                let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("rules yaml");
                for group in doc["groups"].as_sequence().expect("groups") {
                    for rule in group["rules"].as_sequence().expect("rules") {
                        if rule.get("alert").is_some() {
                            alerts += 1;
                            assert_eq!(
                                rule["labels"]["cluster"].as_str(),
                                Some(CLUSTER),
                                "{name}: {path_text}: {rule:?}"
                            );
                        }
                    }
                }
            } else if path_text.starts_with("agent/") {
                agents += 1;
                let config = vigil_crds::AgentConfig::from_yaml(&text).expect("agent config");
                assert_eq!(config.app.cluster.as_deref(), Some(CLUSTER), "{path_text}");
            }
        }
        assert!(
            alerts > 0 && agents > 0,
            "{name}: {alerts} alerts, {agents} agents"
        );
    }
}

/// Debian's Prometheus 2.42 is built without Kubernetes service discovery and rejects
/// `kubernetes_sd_configs`. To check everything else in the rendered configuration with the
/// real tools, each discovery block is swapped for an empty static target list; the discovery
/// blocks themselves are covered by the scrape renderer's tests.
fn without_kubernetes_sd(prometheus_yml: &Path) {
    let text = std::fs::read_to_string(prometheus_yml).expect("prometheus.yml");
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    let jobs = doc["scrape_configs"]
        .as_sequence_mut()
        .expect("scrape_configs");
    assert!(!jobs.is_empty(), "no scrape jobs rendered");
    for job in jobs {
        let map = job.as_mapping_mut().expect("job");
        let sd = map
            .remove("kubernetes_sd_configs")
            .expect("every job discovers pods");
        assert_eq!(sd[0]["role"].as_str(), Some("pod"));
        map.insert(
            "static_configs".into(),
            serde_yaml::from_str("[{targets: []}]").expect("yaml"),
        );
    }
    std::fs::write(prometheus_yml, serde_yaml::to_string(&doc).expect("yaml")).expect("write");
}

fn written(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    bundle::write(&render_example(name), &out, false).expect("bundle written");
    (tmp, out)
}

fn files_under(dir: &Path, ext: &str) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    found.sort();
    found
}

/// Rendering is a pure function: the same input gives byte-identical output, and every kind of
/// artefact is produced for every object.
#[test]
fn examples_render_deterministically_and_completely() {
    for name in EXAMPLES {
        let first = render_example(name);
        assert_eq!(first, render_example(name), "{name}: two renders differ");
        let loaded = manifests::load(&[repo_root().join("examples").join(name)]).expect("valid");
        let inv = &loaded.inventory;
        let count = |prefix: &str| first.paths().filter(|p| p.starts_with(prefix)).count();
        assert_eq!(
            count("agent"),
            inv.apps.len(),
            "{name}: one agent config per app"
        );
        assert_eq!(
            count("prometheus/rules"),
            inv.policies.len() + inv.slos.len(),
            "{name}: rule files"
        );
        assert_eq!(
            count("grafana/dashboards"),
            inv.views.len() + inv.slos.len(),
            "{name}: dashboards"
        );
        assert!(first
            .files
            .contains_key(Path::new("prometheus/prometheus.yml")));
        assert!(first
            .files
            .contains_key(Path::new("alertmanager/alertmanager.yml")));
        let kinds: std::collections::BTreeSet<String> = first
            .files
            .iter()
            .filter(|(p, _)| p.starts_with("kubernetes"))
            .map(|(_, bytes)| {
                let doc: serde_yaml::Value =
                    serde_yaml::from_slice(bytes).expect("kubernetes object is YAML");
                assert_eq!(
                    doc["metadata"]["labels"]["app.kubernetes.io/managed-by"].as_str(),
                    Some("vigil")
                );
                doc["kind"].as_str().unwrap_or_default().to_owned()
            })
            .collect();
        for kind in [
            "ConfigMap",
            "PodMonitor",
            "PrometheusRule",
            "AlertmanagerConfig",
            "GrafanaDashboard",
        ] {
            assert!(kinds.contains(kind), "{name}: no {kind} among {kinds:?}");
        }
    }
}

/// promtool accepts the complete Prometheus configuration and every rule file.
#[test]
fn promtool_accepts_every_example() {
    for name in EXAMPLES {
        let (_tmp, out) = written(name);
        let prom = out.join("prometheus");
        without_kubernetes_sd(&prom.join("prometheus.yml"));
        run_ok("promtool", &["check", "config", "prometheus.yml"], &prom);
        let rules = files_under(&prom.join("rules"), "yml");
        assert!(!rules.is_empty());
        let mut args = vec!["check", "rules"];
        args.extend(rules.iter().map(String::as_str));
        run_ok("promtool", &args, &prom);
        // The parser `check`, the webhook and the renderers use agrees with promtool on every
        // expression written.
        let mut expressions = 0;
        for file in &rules {
            let doc: serde_yaml::Value =
                serde_yaml::from_str(&std::fs::read_to_string(file).expect("rule file"))
                    .expect("yaml");
            for rule in doc["groups"]
                .as_sequence()
                .expect("groups")
                .iter()
                .flat_map(|g| g["rules"].as_sequence().expect("rules"))
            {
                let expr = rule["expr"].as_str().expect("expr");
                assert_eq!(
                    vigil_operator::render::expressions::parse_error(expr),
                    None,
                    "{name}: {file}: {expr}"
                );
                expressions += 1;
            }
        }
        assert!(expressions > 0, "{name}: no expressions");
    }
}

/// amtool accepts the rendered Alertmanager configuration.
#[test]
fn amtool_accepts_every_example() {
    for name in EXAMPLES {
        let (_tmp, out) = written(name);
        run_ok(
            "amtool",
            &["check-config", "alertmanager/alertmanager.yml"],
            &out,
        );
    }
}

/// Every rendered agent configuration is accepted by the agent's own parser and names its app.
#[test]
fn agent_accepts_every_rendered_config() {
    for name in EXAMPLES {
        let bundle = render_example(name);
        for (path, bytes) in bundle.files.iter().filter(|(p, _)| p.starts_with("agent")) {
            let text = String::from_utf8_lossy(bytes);
            let config = vigil_crds::AgentConfig::from_yaml(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            assert_eq!(
                stem,
                format!("{}-{}", config.app.namespace, config.app.name)
            );
        }
    }
}

/// A secret value placed beside the manifests never reaches any rendered file: Vigil only ever
/// renders references (mounted file paths).
#[test]
fn secret_values_never_reach_rendered_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: alerting-secrets, namespace: banking}\nstringData:\n  pagerduty-mobile: pd-routing-key-7f3a9c\n  slack-webhook: https://hooks.slack.example/services/T000/B000/s3cr3t\n";
    std::fs::write(tmp.path().join("secret.yaml"), secret).expect("write");
    let loaded = manifests::load(&[
        repo_root().join("examples/banking"),
        tmp.path().to_path_buf(),
    ])
    .expect("valid");
    assert_eq!(loaded.skipped, ["Secret/banking/alerting-secrets"]);
    let bundle = bundle::render(&loaded.inventory, tested_options()).expect("renders");
    for (path, bytes) in &bundle.files {
        let text = String::from_utf8_lossy(bytes);
        for value in ["pd-routing-key-7f3a9c", "s3cr3t"] {
            assert!(
                !text.contains(value),
                "{} contains a secret value",
                path.display()
            );
        }
    }
}

/// A Prometheus started on the rendered configuration becomes ready and loads every rule group.
#[test]
fn prometheus_starts_with_rendered_config() {
    let (tmp, out) = written("banking");
    without_kubernetes_sd(&out.join("prometheus/prometheus.yml"));
    let port = free_port();
    let mut prometheus = Running(
        Command::new(tool("prometheus"))
            .arg(format!(
                "--config.file={}",
                out.join("prometheus/prometheus.yml").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("tsdb").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("prometheus starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let rules = loop {
        if let Some(body) = http_get(port, "/api/v1/rules").filter(|b| b.contains("\"groups\":[{"))
        {
            break body;
        }
        if let Ok(Some(status)) = prometheus.0.try_wait() {
            let mut err = String::new();
            if let Some(mut stderr) = prometheus.0.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            panic!("prometheus exited with {status}:\n{err}");
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not load rules within 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let bundle = render_example("banking");
    let expected_groups: usize = bundle
        .files
        .iter()
        .filter(|(p, _)| p.starts_with("prometheus/rules"))
        .map(|(_, bytes)| {
            let doc: serde_yaml::Value = serde_yaml::from_slice(bytes).expect("yaml");
            doc["groups"]
                .as_sequence()
                .map(Vec::len)
                .unwrap_or_default()
        })
        .sum();
    assert_eq!(
        rules.matches("\"file\":").count(),
        expected_groups,
        "rule groups loaded: {rules}"
    );
    assert!(rules.contains("MobileApiCrash"));
    assert!(rules.contains("\"health\":\"ok\"") || rules.contains("\"health\":\"unknown\""));
    assert!(
        !rules.contains("\"health\":\"err\""),
        "a rule failed to evaluate: {rules}"
    );
}

/// Kills the child process when the test ends, whatever its outcome.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_owned()))
}

/// The Kubernetes pod-discovery and relabelling blocks, which Debian's promtool cannot parse,
/// are accepted by a second real implementation of Prometheus' scrape configuration: vmagent.
#[test]
fn vmagent_accepts_the_discovery_and_relabel_blocks() {
    for name in EXAMPLES {
        let (_tmp, out) = written(name);
        let text = std::fs::read_to_string(out.join("prometheus/prometheus.yml")).expect("read");
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
        let jobs = doc["scrape_configs"].as_sequence().expect("scrape_configs");
        assert!(jobs
            .iter()
            .all(|j| j["kubernetes_sd_configs"][0]["role"].as_str() == Some("pod")));
        let scrape_only = serde_yaml::to_string(&serde_yaml::Mapping::from_iter([(
            "scrape_configs".into(),
            doc["scrape_configs"].clone(),
        )]))
        .expect("yaml");
        std::fs::write(out.join("scrape.yml"), scrape_only).expect("write");
        let run = run_ok(
            "vmagent",
            &["-promscrape.config=scrape.yml", "-dryRun"],
            &out,
        );
        assert!(
            run.stderr.contains("all the configs are ok")
                || run.stdout.contains("all the configs are ok")
        );
    }
}

/// Routing of the three examples rendered together, checked with `amtool config routes test`:
/// audiences reach their own receivers, escalation levels reach the step's receiver, SLO pages
/// reach the paged audience, and an alert labelled with one tenant's namespace never reaches
/// another tenant's receivers, whatever its other labels say.
#[test]
fn amtool_routes_the_examples_by_namespace_audience_and_escalation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let loaded = manifests::load(&[repo_root().join("examples")]).expect("examples are valid");
    let rendered = bundle::render(&loaded.inventory, tested_options()).expect("renders");
    bundle::write(&rendered, &out, false).expect("written");
    let route = |labels: &[&str]| {
        let mut args = vec![
            "config",
            "routes",
            "test",
            "--config.file=alertmanager/alertmanager.yml",
        ];
        args.extend_from_slice(labels);
        run_ok("amtool", &args, &out).stdout.trim().to_owned()
    };
    let crash = [
        "namespace=banking",
        "app=mobile-api",
        "severity=critical",
        "vigil_policy=mobile-api-crashes",
        "alertname=MobileApiCrashSpike",
    ];
    let with = |extra: &[&'static str]| [crash.as_slice(), extra].concat();
    assert_eq!(
        route(&with(&["audience=engineering"])),
        "banking/mobile-api-crashes/mobile-oncall,banking/mobile-api-crashes/mobile-team-slack"
    );
    assert_eq!(
        route(&with(&["audience=support"])),
        "banking/mobile-api-crashes/support-desk"
    );
    assert_eq!(
        route(&with(&["audience=engineering", "escalation_level=1"])),
        "banking/mobile-api-crashes/mobile-team-slack"
    );
    assert_eq!(
        route(&with(&["audience=management", "escalation_level=2"])),
        "banking/mobile-api-crashes/digital-leadership"
    );
    let page = route(&[
        "namespace=banking",
        "app=mobile-api",
        "slo=mobile-api-availability",
        "severity=critical",
        "vigil_slo_alert=page",
        "audience=engineering",
        "alertname=SLOErrorBudgetBurn",
        "vigil_burn_tier=page-fast",
    ]);
    assert!(
        page.contains("banking/mobile-api-crashes/mobile-oncall"),
        "{page}"
    );
    for foreign in ["tax-filing", "core-infra", "unknown-tenant"] {
        let namespace = format!("namespace={foreign}");
        let got = route(&[
            namespace.as_str(),
            "app=mobile-api",
            "severity=critical",
            "audience=engineering",
            "vigil_policy=mobile-api-crashes",
            "alertname=MobileApiCrashSpike",
            "escalation_level=1",
        ]);
        assert!(
            !got.contains("banking/"),
            "an alert of namespace {foreign} reached banking's receivers: {got}"
        );
    }
}

/// Every rendered YAML file means the same to a YAML 1.1 loader (PyYAML, the loader Ansible and
/// many scripts use) as to Vigil's own YAML 1.2 reader: no `matchType: =` or `on`/`yes` strings
/// that PyYAML rejects or turns into booleans.
#[test]
fn rendered_yaml_reads_the_same_in_yaml_1_1_loaders() {
    let python = repo_root().join(".tools/venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing: run scripts/install-test-tools.sh",
        python.display()
    );
    let script = r#"
import json, sys, yaml
out = {}
for path in sys.argv[1:]:
    with open(path) as f:
        out[path] = list(yaml.safe_load_all(f))
json.dump(out, sys.stdout)
"#;
    for name in EXAMPLES {
        let (_tmp, dir) = written(name);
        let mut files = Vec::new();
        let mut pending = vec![dir.clone()];
        while let Some(path) = pending.pop() {
            if path.is_dir() {
                pending.extend(
                    std::fs::read_dir(&path)
                        .expect("dir")
                        .map(|e| e.expect("entry").path()),
                );
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
        assert!(files.len() > 5, "{name}: only {} YAML files", files.len());
        let out = Command::new(&python)
            .arg("-c")
            .arg(script)
            .args(&files)
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "{name}: PyYAML cannot load a rendered file: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let python_view: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("json from python");
        for file in &files {
            let text = std::fs::read_to_string(file).expect("read");
            let ours: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&text)
                .map(|doc| serde::Deserialize::deserialize(doc).expect("yaml"))
                .collect();
            let key = file.to_str().expect("utf-8");
            assert_eq!(
                python_view[key],
                serde_json::Value::from(ours),
                "{name}: {} reads differently under YAML 1.1",
                file.display()
            );
        }
    }
}

/// Every alert of every example — each alerting rule of each rendered rule file, with the
/// labels it carries — is routed by the real `amtool config routes test` through the rendered
/// `alertmanager.yml` and reaches only real receivers of its own namespace: none ends in a
/// no-op receiver (`<ns>/vigil-unrouted`, `vigil-default`) or falls through to the platform's
/// root receiver.
#[test]
fn every_alert_of_every_example_reaches_a_real_receiver() {
    let mut routed = 0;
    for name in EXAMPLES {
        let (_tmp, out) = written(name);
        let am: serde_yaml::Value = serde_yaml::from_str(
            &std::fs::read_to_string(out.join("alertmanager/alertmanager.yml")).expect("read"),
        )
        .expect("yaml");
        let real: std::collections::BTreeSet<String> = am["receivers"]
            .as_sequence()
            .expect("receivers")
            .iter()
            .filter(|r| {
                r.as_mapping().is_some_and(|m| {
                    m.keys()
                        .any(|k| k.as_str().is_some_and(|k| k.ends_with("_configs")))
                })
            })
            .filter_map(|r| r["name"].as_str().map(str::to_owned))
            .collect();
        let rules_dir = out.join("prometheus/rules");
        let mut alerts = 0;
        for file in files_under(&rules_dir, "yml") {
            let text = std::fs::read_to_string(rules_dir.join(&file)).expect("rule file");
            let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
            for rule in doc["groups"]
                .as_sequence()
                .expect("groups")
                .iter()
                .flat_map(|g| g["rules"].as_sequence().expect("rules"))
                .filter(|r| r.get("alert").is_some())
            {
                let alertname = rule["alert"].as_str().expect("alert name");
                let mut labels = vec![format!("alertname={alertname}")];
                for (k, v) in rule["labels"].as_mapping().expect("labels") {
                    labels.push(format!(
                        "{}={}",
                        k.as_str().expect("label name"),
                        v.as_str().expect("label value")
                    ));
                }
                let namespace = rule["labels"]["namespace"].as_str().expect("namespace");
                let mut args = vec![
                    "config",
                    "routes",
                    "test",
                    "--config.file=alertmanager/alertmanager.yml",
                ];
                args.extend(labels.iter().map(String::as_str));
                let got = run_ok("amtool", &args, &out).stdout.trim().to_owned();
                let receivers: Vec<&str> = got.split(',').collect();
                assert!(
                    receivers
                        .iter()
                        .all(|r| real.contains(*r) && r.starts_with(&format!("{namespace}/"))),
                    "{name}: {file}: alert {labels:?} reaches {got}, not only real receivers of \
                     namespace {namespace}"
                );
                alerts += 1;
            }
        }
        assert!(alerts > 0, "{name}: no alerts rendered");
        routed += alerts;
    }
    println!(
        "routed {routed} alerts of {} examples, each to real receivers",
        EXAMPLES.len()
    );
}

/// A resource whose rendered expression does not parse (here an objective whose matchers a
/// cluster with an older CRD let through) is reported and left out; everything else renders,
/// and promtool accepts every rule file that is written.
#[test]
fn a_bad_expression_leaves_out_its_resource_only() {
    let mut loaded =
        manifests::load(&[repo_root().join("examples").join("banking")]).expect("valid example");
    let mut bad = loaded.inventory.slos[0].clone();
    bad.metadata.name = Some("broken".to_owned());
    if let Some(a) = bad.spec.sli.availability.as_mut() {
        a.matchers = Some("route=/checkout".to_owned());
    }
    loaded.inventory.slos.push(bad);
    let rendered = bundle::render(&loaded.inventory, tested_options()).expect("renders");
    assert_eq!(rendered.skipped.len(), 1, "{:?}", rendered.skipped);
    assert!(
        rendered.skipped[0].starts_with("SLO/banking/broken: rendered rule "),
        "{:?}",
        rendered.skipped
    );
    let rules: Vec<String> = rendered
        .paths()
        .filter(|p| p.starts_with("prometheus/rules"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(!rules.iter().any(|p| p.contains("broken")), "{rules:?}");
    assert_eq!(
        rules.len(),
        loaded.inventory.policies.len() + loaded.inventory.slos.len() - 1
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    bundle::write(&rendered, &out, false).expect("written");
    let mut args = vec!["check", "rules"];
    args.extend(rules.iter().map(String::as_str));
    run_ok("promtool", &args, &out);
}
