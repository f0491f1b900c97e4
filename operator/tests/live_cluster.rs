//! The whole product as a cluster sees it, as close to "chart installed into a real API
//! server" as this machine allows: the in-memory API server served over HTTP on loopback, the
//! chart rendered by real `helm template` and applied with real `kubectl apply --server-side`,
//! the real `vigil-operator run` binary as a subprocess with the Deployment's own arguments,
//! and admission done by the fake API server calling the operator's webhook over HTTPS with
//! the `caBundle` the operator wrote (certificate checked for `vigil-webhook.vigil-system.svc`).
//!
//! The operator authenticates as the chart's ServiceAccount and the fake enforces the chart's
//! RBAC, so a permission the code needs and the chart lacks fails the test.
//!
//! A user's path: the operator takes the Lease and publishes its CA; the banking example is
//! applied (each object validated by `/validate`); an invalid app is rejected naming the
//! field; a pod of the app gets the agent from `/mutate-pods`; statuses and Events read back;
//! deleting the example removes its children; SIGTERM stops the operator cleanly and frees
//! the Lease.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed step must fail the test with its message"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::fake_api::FakeApiServer;
use support::{condition, current_ready, eventually, owned_by, repo_root, yaml_documents};

const NAMESPACE: &str = "vigil-system";
const IDENTITY: &str = "vigil-6d5f7c9b8-x2k4q";

/// A real tool from `.tools/bin` (installed by scripts/install-test-tools.sh) or PATH; a
/// missing tool fails the test.
fn tool(name: &str) -> PathBuf {
    let local = repo_root().join(".tools/bin").join(name);
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    std::iter::once(local)
        .chain(on_path)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found: run scripts/install-test-tools.sh (the README's test command does)")
        })
}

/// The outcome of one `kubectl` run.
struct Kubectl {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `kubectl` against the fake with its own discovery cache.
async fn kubectl(dir: &Path, args: &[&str]) -> Kubectl {
    let out = tokio::process::Command::new(tool("kubectl"))
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.join("kube-cache"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .await
        .expect("kubectl runs");
    Kubectl {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn kubectl_ok(dir: &Path, args: &[&str]) -> String {
    let run = kubectl(dir, args).await;
    assert!(
        run.success,
        "kubectl {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    run.stdout
}

/// Creates a namespace without labels.
async fn create_namespace(dir: &Path, name: &str) {
    create_labelled_namespace(dir, name, &[]).await;
}

/// `helm template` of the chart with its CRDs, as `helm install` would create them.
fn helm_template() -> String {
    let out = Command::new(tool("helm"))
        .args([
            "template",
            "vigil",
            "charts/vigil",
            "--namespace",
            NAMESPACE,
            "--include-crds",
        ])
        .current_dir(repo_root())
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The operator subprocess; killed when dropped (a failed test leaves nothing running).
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `vigil-operator` with the container arguments of the chart's Deployment, its
/// `POD_NAME`/`POD_NAMESPACE` environment, a kubeconfig instead of the in-cluster
/// configuration, and loopback listeners.
fn start_operator(deployment: &Value, dir: &Path, webhook: u16, identity: &str) -> Operator {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut args: Vec<String> = container["args"]
        .as_array()
        .expect("the Deployment passes arguments")
        .iter()
        .map(|a| a.as_str().unwrap().replace("$(POD_NAMESPACE)", NAMESPACE))
        .filter(|a| !a.starts_with("--metrics-listen") && !a.starts_with("--webhook-listen"))
        .collect();
    assert_eq!(args.first().map(String::as_str), Some("run"));
    args.extend([
        format!("--kubeconfig={}", dir.join("operator-kubeconfig").display()),
        "--metrics-listen=127.0.0.1:0".to_owned(),
        format!("--webhook-listen=127.0.0.1:{webhook}"),
    ]);
    let log = dir.join(format!("operator-{identity}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_vigil-operator"))
        .args(&args)
        .env("POD_NAME", identity)
        .env("POD_NAMESPACE", NAMESPACE)
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .expect("vigil-operator starts");
    Operator { child, log }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A pod of the banking example's app, as its Deployment would create it.
fn app_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "banking",
            "labels": {"app.kubernetes.io/name": "mobile-api", "app.kubernetes.io/version": "17.2"},
        },
        "spec": {
            "containers": [{
                "name": "api",
                "image": "registry.example.com/bank/mobile-api:17.2",
                "ports": [{"name": "http-metrics", "containerPort": 8080}],
            }],
        },
    })
}

/// The injected agent: a native sidecar (init container that always restarts) mounting a
/// ConfigMap volume; `Err` says what is missing.
fn injected_agent(pod: &Value) -> Result<(), String> {
    let agent = pod["spec"]["initContainers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "vigil-agent"))
        .ok_or_else(|| format!("no vigil-agent init container in {}", pod["spec"]))?;
    if agent["restartPolicy"] != "Always" {
        return Err(format!("the agent is not a native sidecar: {agent}"));
    }
    let mounts: Vec<&str> = agent["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["name"].as_str())
        .collect();
    let config_volume = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| {
            v["configMap"].is_object() && v["name"].as_str().is_some_and(|n| mounts.contains(&n))
        });
    config_volume
        .map(|_| ())
        .ok_or_else(|| format!("no ConfigMap volume mounted by the agent: {}", pod["spec"]))
}

/// Calls through two extra fail-closed webhook configurations that must not verify: one
/// trusting a foreign CA, one reaching the operator under a service name its certificate does
/// not carry; then removes them.
async fn check_webhook_tls(server: &FakeApiServer, namespace: &str, service: &str, port: u16) {
    use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::ByteString;
    use kube::api::{Api, DeleteParams, PostParams};

    let operator_ca = server
        .get("validatingwebhookconfigurations", "", "vigil")
        .unwrap()["webhooks"][0]["clientConfig"]["caBundle"]
        .clone();
    let operator_ca: ByteString = serde_json::from_value(operator_ca).unwrap();
    let foreign = rcgen::generate_simple_self_signed(vec![format!("{service}.{namespace}.svc")])
        .unwrap()
        .cert
        .pem();
    server.route_service(namespace, "impostor", 443, ([127, 0, 0, 1], port).into());
    let client = server.client();
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
    for (check, service, ca, expected) in [
        (
            "foreign-ca",
            service,
            ByteString(foreign.into_bytes()),
            "UnknownIssuer",
        ),
        (
            "wrong-name",
            "impostor",
            operator_ca,
            "certificate not valid for name",
        ),
    ] {
        let mut config: ValidatingWebhookConfiguration = serde_json::from_value(json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": format!("tls-check-{check}")},
            "webhooks": [{
                "name": format!("{check}.tls-check.vigil.dev"),
                "admissionReviewVersions": ["v1"],
                "clientConfig": {"service": {"name": service, "namespace": namespace, "path": "/validate", "port": 443}},
                "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}],
                "objectSelector": {"matchLabels": {"tls-check": check}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "timeoutSeconds": 5,
            }],
        }))
        .unwrap();
        for webhook in config.webhooks.iter_mut().flatten() {
            webhook.client_config.ca_bundle = Some(ca.clone());
        }
        configs
            .create(&PostParams::default(), &config)
            .await
            .unwrap();
        let probe: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("probe-{check}"), "labels": {"tls-check": check}},
        }))
        .unwrap();
        let error = config_maps
            .create(&PostParams::default(), &probe)
            .await
            .expect_err("a webhook whose certificate does not verify must fail the request");
        let message = error.to_string();
        assert!(
            message.contains("failed calling webhook") && message.contains(expected),
            "{check}: {message}"
        );
        configs
            .delete(&format!("tls-check-{check}"), &DeleteParams::default())
            .await
            .unwrap();
    }
}

/// The chart's objects created in the API server, the operator binary running against it,
/// the banking example applied with kubectl through the validating webhook, a pod injected
/// by the mutating webhook, statuses and Events read back, the example deleted with its
/// children, and a clean SIGTERM that frees the Lease.
/// The chart installed into a served fake API server, with one operator replica running as
/// the chart's Deployment and ServiceAccount, leading and with its CA published.
struct Installed {
    server: FakeApiServer,
    /// Holds the kubeconfigs, rendered files and logs.
    dir: tempfile::TempDir,
    objects: Vec<Value>,
    service_name: String,
    service_port: i32,
    operator: Operator,
    webhook_port: u16,
    _http: support::fake_api::FakeHttpServer,
}

impl Installed {
    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn deployment(&self) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .unwrap()
    }

    fn log(&self) -> String {
        format!("\noperator log:\n{}", self.operator.log())
    }

    /// Points the webhook Service at `port` (its only endpoint), as the endpoints controller
    /// does when a replica becomes ready or leaves.
    fn route_webhook_to(&self, port: u16) {
        self.server.route_service(
            NAMESPACE,
            &self.service_name,
            self.service_port,
            ([127, 0, 0, 1], port).into(),
        );
    }
}

/// `helm template` + `kubectl apply` of the chart into `server`, then the operator started as
/// its Deployment says; returns once it holds the Lease and both webhook configurations carry
/// its CA.
async fn install(server: FakeApiServer) -> Installed {
    let dir = tempfile::tempdir().unwrap();
    let http = server
        .serve_http("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    std::fs::write(dir.path().join("kubeconfig"), http.kubeconfig("default")).unwrap();

    // Install: the release namespace, then every rendered object (CRDs first, as helm does).
    let rendered = helm_template();
    let objects = yaml_documents(&rendered);
    std::fs::write(dir.path().join("chart.yaml"), &rendered).unwrap();
    create_namespace(dir.path(), NAMESPACE).await;
    kubectl_ok(
        dir.path(),
        &[
            "apply",
            "--server-side",
            "--validate=false",
            "-f",
            &dir.path().join("chart.yaml").display().to_string(),
        ],
    )
    .await;
    for object in &objects {
        let kind = object["kind"].as_str().unwrap();
        let name = object["metadata"]["name"].as_str().unwrap();
        let plural = match kind {
            "CustomResourceDefinition" => "customresourcedefinitions",
            "PodDisruptionBudget" => "poddisruptionbudgets",
            "ServiceAccount" => "serviceaccounts",
            "ClusterRole" => "clusterroles",
            "ClusterRoleBinding" => "clusterrolebindings",
            "Role" => "roles",
            "RoleBinding" => "rolebindings",
            "Service" => "services",
            "Deployment" => "deployments",
            "MutatingWebhookConfiguration" => "mutatingwebhookconfigurations",
            "ValidatingWebhookConfiguration" => "validatingwebhookconfigurations",
            other => panic!("the chart renders a kind this test does not know: {other}"),
        };
        assert!(
            server.get(plural, NAMESPACE, name).is_some(),
            "{kind} {name} was not created"
        );
    }
    let crds = kubectl_ok(dir.path(), &["get", "crd", "-o", "json"]).await;
    let crds: Value = serde_json::from_str(&crds).unwrap();
    assert_eq!(crds["items"].as_array().unwrap().len(), 4, "{crds}");

    // Run the operator as the Deployment would; the Service's port 443 leads to it.
    let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let service = objects.iter().find(|o| o["kind"] == "Service").unwrap();
    let service_name = service["metadata"]["name"].as_str().unwrap().to_owned();
    let webhook_port = free_port();
    let service_port = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["targetPort"] == "webhook")
        .unwrap_or_else(|| panic!("no webhook port in {service}"))["port"]
        .as_i64()
        .unwrap();
    let service_port = i32::try_from(service_port).unwrap();
    server.route_service(
        NAMESPACE,
        &service_name,
        service_port,
        ([127, 0, 0, 1], webhook_port).into(),
    );
    // The operator authenticates as the chart's ServiceAccount, so the chart's RBAC decides
    // what it may do.
    let account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .expect("the Deployment names its ServiceAccount");
    let token = FakeApiServer::service_account_token(NAMESPACE, account);
    std::fs::write(
        dir.path().join("operator-kubeconfig"),
        http.kubeconfig_with_token(NAMESPACE, &token),
    )
    .unwrap();
    let operator = start_operator(deployment, dir.path(), webhook_port, IDENTITY);
    let installed = Installed {
        server,
        dir,
        objects,
        service_name,
        service_port,
        operator,
        webhook_port,
        _http: http,
    };

    eventually("the operator to take the Lease", || {
        let lease = installed
            .server
            .list("leases", NAMESPACE)
            .into_iter()
            .find(|l| l["spec"]["holderIdentity"] == IDENTITY);
        lease.map(|_| ()).ok_or_else(|| installed.log())
    })
    .await;
    for plural in [
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
    ] {
        eventually(&format!("caBundle in the {plural}"), || {
            let config = installed.server.get(plural, "", "vigil").ok_or("gone")?;
            let webhooks = config["webhooks"].as_array().cloned().unwrap_or_default();
            let all = !webhooks.is_empty()
                && webhooks.iter().all(|w| {
                    w["clientConfig"]["caBundle"]
                        .as_str()
                        .is_some_and(|b| !b.is_empty())
                        && w["rules"].is_array()
                });
            all.then_some(())
                .ok_or_else(|| format!("{config}{}", installed.log()))
        })
        .await;
    }
    installed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_operator_and_examples_in_a_served_api() {
    let Installed {
        server,
        dir,
        service_name,
        webhook_port,
        mut operator,
        objects: _,
        service_port: _,
        _http,
    } = install(FakeApiServer::kubernetes_only()).await;
    let server = &server;
    let dir = dir.path();
    let service_name = service_name.as_str();
    let log = |operator: &Operator| format!("\noperator log:\n{}", operator.log());

    // The API server really checks the webhook's certificate: a CA other than the operator's,
    // or a service name the certificate does not carry, fails the call.
    check_webhook_tls(server, NAMESPACE, service_name, webhook_port).await;

    // The banking example, applied by kubectl; every Vigil object passes /validate.
    create_namespace(dir, "banking").await;
    let applied = kubectl(
        dir,
        &[
            "apply",
            "--server-side",
            "--validate=false",
            "-f",
            "examples/banking/",
        ],
    )
    .await;
    assert!(
        applied.success,
        "kubectl apply of examples/banking failed\nstdout:\n{}\nstderr:\n{}{}",
        applied.stdout,
        applied.stderr,
        log(&operator)
    );

    // An invalid app is rejected by the webhook, naming the field.
    let invalid = dir.join("invalid.yaml");
    std::fs::write(
        &invalid,
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {name: broken, namespace: banking}\n\
         spec:\n  selector: {matchLabels: {app: broken}}\n  clientType: banking\n  \
         metrics: {port: http-metrics, interval: often}\n",
    )
    .unwrap();
    let rejected = kubectl(
        dir,
        &[
            "apply",
            "--server-side",
            "--validate=false",
            "-f",
            &invalid.display().to_string(),
        ],
    )
    .await;
    assert!(!rejected.success, "the invalid app was admitted");
    assert!(
        rejected.stderr.contains("denied the request")
            && rejected.stderr.contains("spec.metrics.interval"),
        "the rejection does not name the field: {}",
        rejected.stderr
    );
    assert!(server.get("monitoredapps", "banking", "broken").is_none());

    // Statuses of what the example declares, read back with kubectl.
    eventually("the app Ready on its generation", || {
        let app = server
            .get("monitoredapps", "banking", "mobile-api")
            .ok_or("not found")?;
        current_ready(&app).map_err(|e| format!("{e}{}", log(&operator)))
    })
    .await;

    // A pod of the app gets the agent. The webhook answers from its own watch of the apps,
    // so a pod created before that watch saw the app is replaced by a new one, as its
    // ReplicaSet would.
    let (pod, attempt) = create_injected_pod(
        server,
        dir,
        "banking",
        "mobile-api",
        app_pod,
        injected_agent,
    )
    .await;
    let pod_name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    eprintln!("pod {pod_name} injected after {attempt} attempt(s)");
    assert!(
        pod["metadata"]["annotations"]["vigil.dev/injected"].is_string(),
        "{pod}"
    );

    let app = eventually("the app status counting the injected pod", || {
        let app = server
            .get("monitoredapps", "banking", "mobile-api")
            .ok_or("not found")?;
        current_ready(&app)?;
        let status = &app["status"];
        (status["selectedPods"] == 1 && status["injectedPods"] == 1)
            .then_some(app.clone())
            .ok_or_else(|| status.to_string())
    })
    .await;
    assert!(condition(&app, "Injected").is_some(), "{}", app["status"]);
    let listed = kubectl_ok(
        dir,
        &["get", "monitoredapps", "-n", "banking", "-o", "json"],
    )
    .await;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["items"][0]["status"]["injectedPods"], 1, "{listed}");
    for (plural, name) in [
        ("alertpolicies", "mobile-api-crashes"),
        ("alertpolicies", "mobile-api-performance"),
        ("dashboardviews", "mobile-support"),
    ] {
        eventually(&format!("{plural}/{name} Ready on its generation"), || {
            current_ready(&server.get(plural, "banking", name).ok_or("not found")?)
        })
        .await;
    }
    let about_the_app = |events: &Value| {
        events["items"].as_array().into_iter().flatten().any(|e| {
            e["regarding"]["kind"] == "MonitoredApp" && e["regarding"]["name"] == "mobile-api"
        })
    };
    eventually("Events about the app", || {
        let events = json!({"items": server.list("events", "banking")});
        about_the_app(&events)
            .then_some(())
            .ok_or_else(|| events.to_string())
    })
    .await;
    let events = kubectl_ok(
        dir,
        &["get", "events.events.k8s.io", "-n", "banking", "-o", "json"],
    )
    .await;
    let events: Value = serde_json::from_str(&events).unwrap();
    assert!(
        about_the_app(&events),
        "kubectl lists no Event about the app: {events}"
    );
    let children: Vec<Value> = server
        .list("configmaps", "banking")
        .into_iter()
        .filter(|c| owned_by(c, &app))
        .collect();
    assert!(!children.is_empty(), "the app has no ConfigMap children");

    // Deleting the example removes everything it produced.
    kubectl_ok(dir, &["delete", "pod", "-n", "banking", &pod_name]).await;
    kubectl_ok(dir, &["delete", "-f", "examples/banking/", "--wait=false"]).await;
    eventually("the example's resources and their children gone", || {
        let left: Vec<String> = [
            "monitoredapps",
            "alertpolicies",
            "slos",
            "dashboardviews",
            "configmaps",
        ]
        .iter()
        .flat_map(|plural| {
            server
                .list(plural, "banking")
                .into_iter()
                .filter(|o| *plural != "configmaps" || o["metadata"]["ownerReferences"].is_array())
                .map(move |o| format!("{plural}/{}", o["metadata"]["name"]))
        })
        .collect();
        left.is_empty()
            .then_some(())
            .ok_or_else(|| format!("{left:?}"))
    })
    .await;

    // Everything the operator did, the chart's RBAC allowed.
    assert_eq!(
        server.forbidden(),
        Vec::<String>::new(),
        "requests refused by the chart's RBAC{}",
        log(&operator)
    );

    // SIGTERM: a clean exit that frees the Lease for the next replica.
    let pid = operator.child.id().to_string();
    let term = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(term.success());
    let status = eventually("the operator to exit after SIGTERM", || {
        operator
            .child
            .try_wait()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "running".to_owned())
    })
    .await;
    assert!(status.success(), "exit status {status}{}", log(&operator));
    let lease = server.list("leases", NAMESPACE).into_iter().next().unwrap();
    assert!(
        lease["spec"]["holderIdentity"].is_null(),
        "the Lease is still held: {}",
        lease["spec"]
    );
}

/// Creates pods `<prefix>-1`, `<prefix>-2`… from `make` in `namespace` with kubectl until one
/// passes `check` (the webhook answers from its own watch of the apps, so a pod created before
/// that watch saw the app is replaced by a new one, as its ReplicaSet would); returns it and
/// the number of attempts.
async fn create_injected_pod(
    server: &FakeApiServer,
    dir: &Path,
    namespace: &str,
    prefix: &str,
    make: impl Fn(&str) -> Value,
    check: impl Fn(&Value) -> Result<(), String>,
) -> (Value, usize) {
    let pods_file = dir.join(format!("pod-{namespace}.yaml"));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let name = format!("{prefix}-{attempt}");
        let mut pod = make(&name);
        pod["metadata"]["namespace"] = json!(namespace);
        std::fs::write(&pods_file, serde_json::to_string(&pod).unwrap()).unwrap();
        kubectl_ok(
            dir,
            &[
                "create",
                "--validate=false",
                "-f",
                &pods_file.display().to_string(),
            ],
        )
        .await;
        let stored = server.get("pods", namespace, &name).unwrap();
        match check(&stored) {
            Ok(()) => return (stored, attempt),
            Err(e) if attempt >= 20 => panic!("{e}"),
            Err(_) => {
                kubectl_ok(dir, &["delete", "pod", "-n", namespace, &name]).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Applies a namespace with labels (`kubectl create namespace` speaks protobuf, which the
/// fake does not).
async fn create_labelled_namespace(dir: &Path, name: &str, labels: &[(&str, &str)]) {
    let file = dir.join(format!("namespace-{name}.yaml"));
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
    std::fs::write(&file, ns.to_string()).unwrap();
    kubectl_ok(
        dir,
        &[
            "apply",
            "--server-side",
            "--validate=false",
            "-f",
            &file.display().to_string(),
        ],
    )
    .await;
}

/// The agent as a regular container (clusters without native sidecars): the last container,
/// no init container carrying `restartPolicy` or probes (fields such a server drops or
/// rejects); `hostPath` says whether the pod-log volume must be there.
fn regular_agent(pod: &Value, host_path: bool) -> Result<(), String> {
    let spec = &pod["spec"];
    let agent = spec["containers"]
        .as_array()
        .and_then(|c| c.last())
        .filter(|c| c["name"] == "vigil-agent")
        .ok_or_else(|| format!("the agent is not the last regular container: {spec}"))?;
    for init in spec["initContainers"].as_array().into_iter().flatten() {
        if !init["restartPolicy"].is_null()
            || !init["livenessProbe"].is_null()
            || !init["readinessProbe"].is_null()
        {
            return Err(format!("an init container a 1.28 server rejects: {init}"));
        }
    }
    let host_paths = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["hostPath"].is_object())
        .count();
    let told = agent["env"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["name"] == "VIGIL_POD_LOGS_OFF");
    match (host_path, host_paths, told) {
        (true, 1, false) | (false, 0, true) => Ok(()),
        _ => Err(format!(
            "pod-log hostPath expected {host_path}, found {host_paths} (VIGIL_POD_LOGS_OFF set: {told}): {spec}"
        )),
    }
}

/// A MonitoredApp `name` in `namespace` selecting `app: <name>` and collecting its pods' logs.
fn logging_app(name: &str, namespace: &str, interval: u32) -> String {
    format!(
        "apiVersion: vigil.dev/v1alpha1\nkind: MonitoredApp\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         spec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  logs: {{containerLogs: true, format: json}}\n  \
         metrics: {{port: 8080, interval: {interval}s}}\n"
    )
}

/// A pod of `logging_app(name)`.
fn logging_pod(app: &str) -> impl Fn(&str) -> Value + '_ {
    move |name| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"containers": [{"name": "app", "image": "shop/app:1"}]}
        })
    }
}

/// A Kubernetes 1.28 API server (no native sidecars) and a namespace enforcing Pod Security
/// `baseline`: with the chart's defaults (`agent.nativeSidecar: auto`) the operator reads the
/// version and injects a regular container; in the baseline namespace the pod gets no hostPath
/// and the app's status says pod logs are off and why, while a namespace without the label
/// still gets its logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_cluster_and_pod_security_baseline() {
    let installed = install(FakeApiServer::kubernetes_only().reporting_version(28)).await;
    let (server, dir) = (&installed.server, installed.dir());
    create_labelled_namespace(
        dir,
        "hardened",
        &[("pod-security.kubernetes.io/enforce", "baseline")],
    )
    .await;
    create_labelled_namespace(dir, "open", &[]).await;
    let apps = dir.join("apps.yaml");
    std::fs::write(
        &apps,
        format!(
            "{}---\n{}",
            logging_app("shop", "hardened", 15),
            logging_app("shop", "open", 15)
        ),
    )
    .unwrap();
    kubectl_ok(
        dir,
        &[
            "apply",
            "--server-side",
            "--validate=false",
            "-f",
            &apps.display().to_string(),
        ],
    )
    .await;

    for (namespace, host_path) in [("hardened", false), ("open", true)] {
        eventually(&format!("the app in {namespace} Ready"), || {
            current_ready(
                &server
                    .get("monitoredapps", namespace, "shop")
                    .ok_or("not found")?,
            )
            .map(|_| ())
            .map_err(|e| format!("{e}{}", installed.log()))
        })
        .await;
        let (pod, _) =
            create_injected_pod(server, dir, namespace, "shop", logging_pod("shop"), |p| {
                regular_agent(p, host_path)
            })
            .await;
        assert!(pod["metadata"]["annotations"]["vigil.dev/injected"].is_string());
        let app = eventually(&format!("the app in {namespace} counting its pod"), || {
            let app = server
                .get("monitoredapps", namespace, "shop")
                .ok_or("not found")?;
            current_ready(&app)?;
            (app["status"]["injectedPods"] == 1 && app["status"]["stalePods"] == 0)
                .then_some(app.clone())
                .ok_or_else(|| app["status"].to_string())
        })
        .await;
        let logs = condition(&app, "PodLogs").cloned().unwrap_or_default();
        if host_path {
            assert_eq!(logs["status"], "True", "{logs}");
        } else {
            assert_eq!(logs["status"], "False", "{logs}");
            assert_eq!(logs["reason"], "PodSecurityForbidsHostPath", "{logs}");
        }
    }
    assert!(
        installed
            .operator
            .log()
            .contains("\"native_sidecar\":false"),
        "{}",
        installed.log()
    );
    assert_eq!(
        server.forbidden(),
        Vec::<String>::new(),
        "requests refused by the chart's RBAC"
    );
}

/// HTTP status of `GET https://127.0.0.1:<port><path>` (certificate not checked), 0 when the
/// connection fails.
fn https_status(port: u16, path: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "2",
        ])
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl runs (scripts/install-test-tools.sh installs it)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// A rolling update of the operator while Vigil resources are applied: a second replica
/// starts, the first gets SIGTERM and drains (not ready, still answering `/validate`, which
/// fails closed) while the Service still leads to it; the endpoint then moves to the new
/// replica, which takes the Lease and reconciles what was applied meanwhile. No apply fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_never_refuses_an_apply() {
    let mut installed = install(FakeApiServer::kubernetes_only()).await;
    let dir = installed.dir().to_path_buf();
    create_labelled_namespace(&dir, "shop", &[]).await;
    let probe = dir.join("probe.yaml");
    let mut applies = 0_u32;
    let mut apply = |interval: u32| {
        std::fs::write(&probe, logging_app("probe", "shop", interval)).unwrap();
        applies += 1;
        let dir = dir.clone();
        let probe = probe.clone();
        async move {
            kubectl(
                &dir,
                &[
                    "apply",
                    "--server-side",
                    "--validate=false",
                    "-f",
                    &probe.display().to_string(),
                ],
            )
            .await
        }
    };
    let first = apply(10).await;
    assert!(first.success, "{}", first.stderr);

    let second_port = free_port();
    let second_identity = "vigil-6d5f7c9b8-new01";
    let second = start_operator(installed.deployment(), &dir, second_port, second_identity);
    eventually("the new replica ready", || {
        (https_status(second_port, "/readyz") == 200)
            .then_some(())
            .ok_or_else(|| second.log())
    })
    .await;

    let old_port = installed.webhook_port;
    let pid = installed.operator.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let terminated = tokio::time::Instant::now();
    let mut refused = Vec::new();
    let mut interval = 11;
    // While the Service still leads to the draining replica.
    eventually(
        "the old replica to report not ready",
        || match https_status(old_port, "/readyz") {
            503 => Ok(()),
            other => Err(format!("/readyz answered {other}")),
        },
    )
    .await;
    while terminated.elapsed() < Duration::from_secs(4) {
        let run = apply(interval).await;
        interval += 1;
        if !run.success {
            refused.push(run.stderr);
        }
    }
    // The endpoint moves to the new replica; the old one is still draining.
    installed.route_webhook_to(second_port);
    assert!(
        installed.operator.child.try_wait().unwrap().is_none(),
        "the old replica exited before its drain ended"
    );
    while terminated.elapsed() < Duration::from_secs(8) {
        let run = apply(interval).await;
        interval += 1;
        if !run.success {
            refused.push(run.stderr);
        }
    }
    assert!(
        refused.is_empty(),
        "{} of {applies} applies refused during the rollout: {refused:?}{}",
        refused.len(),
        installed.log()
    );
    let status = eventually("the old replica to exit after its drain", || {
        installed
            .operator
            .child
            .try_wait()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "draining".to_owned())
    })
    .await;
    assert!(status.success(), "exit status {status}{}", installed.log());
    eventually("the new replica to take the Lease", || {
        let lease = installed
            .server
            .list("leases", NAMESPACE)
            .into_iter()
            .next()
            .ok_or("no lease")?;
        (lease["spec"]["holderIdentity"] == second_identity)
            .then_some(())
            .ok_or_else(|| format!("{}\n{}", lease["spec"], second.log()))
    })
    .await;
    eventually("the last apply reconciled by the new replica", || {
        let app = installed
            .server
            .get("monitoredapps", "shop", "probe")
            .ok_or("not found")?;
        current_ready(&app)
            .map(|_| ())
            .map_err(|e| format!("{e}\n{}", second.log()))
    })
    .await;
    eprintln!(
        "{applies} applies during the rollout, none refused; old replica exited {:?} after SIGTERM",
        terminated.elapsed()
    );
}
