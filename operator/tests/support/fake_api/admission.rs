//! Admission for the fake API server: picks the stored Mutating- and
//! ValidatingWebhookConfigurations' webhooks that match a write, and calls each with a real
//! `AdmissionReview` v1 over HTTPS, verifying the webhook's certificate against its `caBundle`,
//! as kube-apiserver does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::ByteString;
use kube::core::SelectorExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{labels_of, status, Operation, PendingWrite, State};

/// Routes of services to loopback addresses: (namespace, service, port) → address.
pub(super) type Routes = BTreeMap<(String, String, i32), SocketAddr>;

/// One webhook to call for a write.
#[derive(Clone, Debug)]
pub(crate) struct Hook {
    name: String,
    mutating: bool,
    client_config: WebhookClientConfig,
    /// `failurePolicy: Fail` (the default).
    fail_closed: bool,
    timeout: Duration,
}

/// The webhooks that apply to `pending`: mutating ones first, each kind in the order of the
/// configurations' names and then of their webhooks.
pub(super) fn matching(state: &State, pending: &PendingWrite) -> Vec<Hook> {
    let resource = &pending.served.resource;
    // Webhook configurations are never subject to webhooks (so a bad one can be fixed).
    if resource.group == "admissionregistration.k8s.io" {
        return Vec::new();
    }
    let stored = |plural: &str| -> Vec<Value> {
        state
            .objects
            .get(&(
                "admissionregistration.k8s.io/v1".to_owned(),
                plural.to_owned(),
            ))
            .and_then(|by_ns| by_ns.get(""))
            .map(|by_name| by_name.values().cloned().collect())
            .unwrap_or_default()
    };
    let namespace_labels = if !pending.served.namespaced {
        None
    } else {
        let stored_namespace = state
            .objects
            .get(&("v1".to_owned(), "namespaces".to_owned()))
            .and_then(|by_ns| by_ns.get(""))
            .and_then(|by_name| by_name.get(&pending.namespace));
        Some(match stored_namespace {
            Some(namespace) => labels_of(namespace),
            None => BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                pending.namespace.clone(),
            )]),
        })
    };
    let own_labels = if resource.group.is_empty() && resource.kind == "Namespace" {
        Some(labels_of(&pending.object))
    } else {
        namespace_labels
    };
    let object_labels = [Some(&pending.object), pending.old.as_ref()]
        .into_iter()
        .flatten()
        .map(labels_of)
        .collect::<Vec<_>>();
    let applies = |rules: &Option<Vec<RuleWithOperations>>,
                   namespace_selector: &Option<LabelSelector>,
                   object_selector: &Option<LabelSelector>| {
        let rule_matches = rules
            .iter()
            .flatten()
            .any(|rule| rule_matches(rule, pending));
        let namespace_matches = own_labels
            .as_ref()
            .is_none_or(|labels| selects(namespace_selector, labels));
        let object_matches = object_labels
            .iter()
            .any(|labels| selects(object_selector, labels));
        rule_matches && namespace_matches && object_matches
    };
    let timeout = |seconds: Option<i32>| {
        Duration::from_secs(u64::try_from(seconds.unwrap_or(10).clamp(1, 30)).unwrap_or(10))
    };
    let mut hooks = Vec::new();
    for config in stored("mutatingwebhookconfigurations") {
        let Ok(config) = serde_json::from_value::<MutatingWebhookConfiguration>(config) else {
            continue;
        };
        for webhook in config.webhooks.into_iter().flatten() {
            if applies(
                &webhook.rules,
                &webhook.namespace_selector,
                &webhook.object_selector,
            ) {
                hooks.push(Hook {
                    name: webhook.name,
                    mutating: true,
                    client_config: webhook.client_config,
                    fail_closed: webhook.failure_policy.as_deref() != Some("Ignore"),
                    timeout: timeout(webhook.timeout_seconds),
                });
            }
        }
    }
    for config in stored("validatingwebhookconfigurations") {
        let Ok(config) = serde_json::from_value::<ValidatingWebhookConfiguration>(config) else {
            continue;
        };
        for webhook in config.webhooks.into_iter().flatten() {
            if applies(
                &webhook.rules,
                &webhook.namespace_selector,
                &webhook.object_selector,
            ) {
                hooks.push(Hook {
                    name: webhook.name,
                    mutating: false,
                    client_config: webhook.client_config,
                    fail_closed: webhook.failure_policy.as_deref() != Some("Ignore"),
                    timeout: timeout(webhook.timeout_seconds),
                });
            }
        }
    }
    hooks
}

fn selects(selector: &Option<LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    match selector {
        None => true,
        Some(selector) => {
            kube::core::Selector::try_from(selector.clone()).is_ok_and(|s| s.matches(labels))
        }
    }
}

fn rule_matches(rule: &RuleWithOperations, pending: &PendingWrite) -> bool {
    let resource = &pending.served.resource;
    let listed = |list: &Option<Vec<String>>, value: &str| {
        list.iter().flatten().any(|v| v == "*" || v == value)
    };
    let operation = match pending.operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
    };
    let scope = match rule.scope.as_deref() {
        None | Some("*") => true,
        Some("Namespaced") => pending.served.namespaced,
        Some("Cluster") => !pending.served.namespaced,
        Some(_) => false,
    };
    listed(&rule.operations, operation)
        && listed(&rule.api_groups, &resource.group)
        && listed(&rule.api_versions, &resource.version)
        && listed(&rule.resources, &resource.plural)
        && scope
}

/// The webhook's answer.
#[derive(Debug, Deserialize)]
struct ReviewReply {
    response: Option<Reply>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reply {
    #[serde(default)]
    uid: String,
    allowed: bool,
    patch: Option<ByteString>,
    patch_type: Option<String>,
    status: Option<ReplyStatus>,
}

#[derive(Debug, Deserialize)]
struct ReplyStatus {
    code: Option<u16>,
    message: Option<String>,
    reason: Option<String>,
}

static REVIEWS: AtomicU64 = AtomicU64::new(0);

/// Calls `hooks` in order for `pending`, applying the mutating webhooks' patches to its
/// object; the error is the API server's answer to the request.
pub(super) async fn review(
    mut pending: PendingWrite,
    hooks: Vec<Hook>,
    routes: &Routes,
) -> Result<PendingWrite, (StatusCode, Value)> {
    for hook in hooks {
        let uid = format!(
            "00000000-0000-4000-a000-{:012}",
            REVIEWS.fetch_add(1, Ordering::Relaxed)
        );
        let review = review_json(&pending, &uid);
        let outcome = match tokio::time::timeout(hook.timeout, call(&hook, routes, &review)).await {
            Ok(Ok(reply)) if reply.uid != uid => Err(format!(
                "expected response.uid={uid:?}, got {:?}",
                reply.uid
            )),
            Ok(outcome) => outcome,
            Err(_) => Err(format!(
                "context deadline exceeded after {:?}",
                hook.timeout
            )),
        };
        let reply = match outcome {
            Ok(reply) => reply,
            Err(e) if hook.fail_closed => {
                return Err(status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    &format!(
                        "Internal error occurred: failed calling webhook {:?}: {e}",
                        hook.name
                    ),
                ))
            }
            Err(e) => {
                tracing::warn!(webhook = %hook.name, error = %e, "failed calling webhook, failing open");
                continue;
            }
        };
        if !reply.allowed {
            let (code, reason, message) = match reply.status {
                Some(s) => (
                    s.code
                        .and_then(|c| StatusCode::from_u16(c).ok())
                        .filter(|c| c.as_u16() >= 400),
                    s.reason,
                    s.message,
                ),
                None => (None, None, None),
            };
            let message = match message {
                Some(m) => format!("admission webhook {:?} denied the request: {m}", hook.name),
                None => format!(
                    "admission webhook {:?} denied the request without explanation",
                    hook.name
                ),
            };
            return Err(status(
                code.unwrap_or(StatusCode::FORBIDDEN),
                reason.as_deref().unwrap_or("Forbidden"),
                &message,
            ));
        }
        match (hook.mutating, reply.patch) {
            (true, Some(ByteString(patch))) if !patch.is_empty() => {
                let applied = if reply.patch_type.as_deref().unwrap_or("JSONPatch") != "JSONPatch" {
                    Err(format!("unsupported patchType {:?}", reply.patch_type))
                } else {
                    serde_json::from_slice::<json_patch::Patch>(&patch)
                        .map_err(|e| e.to_string())
                        .and_then(|p| {
                            json_patch::patch(&mut pending.object, &p).map_err(|e| e.to_string())
                        })
                };
                if let Err(e) = applied {
                    return Err(status(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalError",
                        &format!(
                            "Internal error occurred: the patch of webhook {:?} cannot be applied: {e}",
                            hook.name
                        ),
                    ));
                }
            }
            (false, Some(ByteString(patch))) if !patch.is_empty() => {
                tracing::warn!(webhook = %hook.name, "validating webhook returned a patch; ignored");
            }
            _ => {}
        }
    }
    Ok(pending)
}

fn review_json(pending: &PendingWrite, uid: &str) -> Vec<u8> {
    let resource = &pending.served.resource;
    let (operation, options_kind) = match pending.operation {
        Operation::Create => ("CREATE", "CreateOptions"),
        Operation::Update => ("UPDATE", "UpdateOptions"),
    };
    let kind = json!({"group": resource.group, "version": resource.version, "kind": resource.kind});
    let gvr =
        json!({"group": resource.group, "version": resource.version, "resource": resource.plural});
    let mut request = json!({
        "uid": uid,
        "kind": kind,
        "resource": gvr,
        "requestKind": kind,
        "requestResource": gvr,
        "name": pending.name,
        "operation": operation,
        "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
        "object": pending.object,
        "oldObject": pending.old,
        "dryRun": false,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": options_kind},
    });
    if pending.served.namespaced {
        request["namespace"] = json!(pending.namespace);
    }
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": request,
    }))
    .unwrap_or_default()
}

/// POSTs `review` to the webhook over HTTPS and decodes its answer.
async fn call(hook: &Hook, routes: &Routes, review: &[u8]) -> Result<Reply, String> {
    let config = &hook.client_config;
    let query = format!("?timeout={}s", hook.timeout.as_secs());
    let (address, host, port, path) = match (&config.service, &config.url) {
        (Some(service), _) => {
            let port = service.port.unwrap_or(443);
            let host = format!("{}.{}.svc", service.name, service.namespace);
            let key = (service.namespace.clone(), service.name.clone(), port);
            let address = routes.get(&key).copied().ok_or_else(|| {
                format!(
                    "service \"{}/{}:{port}\" has no endpoints",
                    service.namespace, service.name
                )
            })?;
            let path = service.path.clone().unwrap_or_else(|| "/".to_owned());
            (address, host, port, format!("{path}{query}"))
        }
        (None, Some(url)) => {
            let uri: http::Uri = url
                .parse()
                .map_err(|e| format!("invalid url {url:?}: {e}"))?;
            let host = uri.host().unwrap_or_default().to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let address = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .next()
                .ok_or_else(|| format!("cannot resolve {host}"))?;
            (
                address,
                host,
                i32::from(port),
                format!("{}{query}", uri.path()),
            )
        }
        (None, None) => return Err("the webhook has neither service nor url".to_owned()),
    };
    let url = format!("https://{host}:{port}{path}");
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        format!("failed to call webhook: Post {url:?}: {what}: {e}")
    };
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ByteString(bundle)) = &config.ca_bundle {
        for cert in CertificateDer::pem_slice_iter(bundle) {
            let cert = cert.map_err(|e| fail("invalid caBundle", &e))?;
            roots.add(cert).map_err(|e| fail("invalid caBundle", &e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("tls", &e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(host.clone()).map_err(|e| fail("server name", &e))?;
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| fail("dial tcp", &e))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(server_name, tcp)
        .await
        .map_err(|e| fail("tls", &e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail("http", &e))?;
    tokio::spawn(connection);
    let request = Request::post(path)
        .header(http::header::HOST, host.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::copy_from_slice(review)))
        .map_err(|e| fail("request", &e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| fail("http", &e))?;
    let code = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| fail("read body", &e))?
        .to_bytes();
    if !code.is_success() {
        return Err(fail(
            "unexpected status",
            &format!("{code}: {}", String::from_utf8_lossy(&body)),
        ));
    }
    let reply: ReviewReply =
        serde_json::from_slice(&body).map_err(|e| fail("decode AdmissionReview", &e))?;
    reply
        .response
        .ok_or_else(|| fail("decode AdmissionReview", &"no response"))
}
