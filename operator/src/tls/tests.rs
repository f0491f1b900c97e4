//! Certificate decisions (pure) and the Secret / webhook-configuration round trip against an
//! in-memory fake API server.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed step must fail the test with its message"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

use super::*;

const DAY: u64 = 24 * 60 * 60;

fn at(days: u64) -> SystemTime {
    // A fixed, recent instant: 2025-01-01T00:00:00Z.
    UNIX_EPOCH + Duration::from_secs(1_735_689_600 + days * DAY)
}

fn short() -> Validity {
    Validity {
        ca: Duration::from_secs(300 * DAY),
        serving: Duration::from_secs(30 * DAY),
    }
}

fn names() -> Vec<String> {
    settings().dns_names()
}

fn settings() -> TlsSettings {
    TlsSettings {
        namespace: "vigil-system".into(),
        service: "vigil-webhook".into(),
        secret: "vigil-webhook-tls".into(),
        mutating_webhook: Some("vigil".into()),
        validating_webhook: Some("vigil".into()),
        validity: Validity::default(),
    }
}

fn create(now: SystemTime, validity: Validity) -> WebhookCerts {
    issue(None, Plan::Create, &names(), now, validity).expect("issue")
}

/// Nothing stored means create; freshly issued certificates are kept.
#[test]
fn fresh_certificates_are_kept() {
    assert_eq!(decide(None, &names(), at(0)), Plan::Create);
    let certs = create(at(0), short());
    assert_eq!(decide(Some(&certs), &names(), at(0)), Plan::Keep);
    assert_eq!(decide(Some(&certs), &names(), at(19)), Plan::Keep);
    let serving = cert_facts(&certs.serving.cert_pem).unwrap();
    assert_eq!(serving.dns_names, names());
    assert!(!serving.is_ca);
    assert!(cert_facts(&certs.ca_bundle[0]).unwrap().is_ca);
    assert!(signed_by(&certs.serving.cert_pem, &certs.ca_bundle[0]));
}

/// The serving certificate is renewed once less than a third of its validity remains, by the
/// same CA; the bundle stays as it was.
#[test]
fn serving_certificate_renews_with_a_third_left() {
    let certs = create(at(0), short());
    assert_eq!(decide(Some(&certs), &names(), at(21)), Plan::RenewServing);
    let renewed = issue(Some(&certs), Plan::RenewServing, &names(), at(21), short()).unwrap();
    assert_eq!(renewed.ca_bundle, certs.ca_bundle);
    assert_ne!(renewed.serving, certs.serving);
    assert!(signed_by(&renewed.serving.cert_pem, &renewed.ca_bundle[0]));
    assert_eq!(decide(Some(&renewed), &names(), at(21)), Plan::Keep);
}

/// A serving certificate for other names, with a foreign key or unreadable is replaced; a CA
/// without its key, or garbage, means starting afresh.
#[test]
fn unusable_certificates_are_replaced() {
    let certs = create(at(0), short());
    let other_names = vec!["other.vigil-system.svc".to_owned()];
    assert_eq!(
        decide(Some(&certs), &other_names, at(1)),
        Plan::RenewServing
    );
    let other = create(at(0), short());
    let foreign_key = WebhookCerts {
        serving: KeyedCert {
            key_pem: other.serving.key_pem.clone(),
            ..certs.serving.clone()
        },
        ..certs.clone()
    };
    assert_eq!(
        decide(Some(&foreign_key), &names(), at(1)),
        Plan::RenewServing
    );
    let other_ca_key = WebhookCerts {
        ca_key_pem: other.ca_key_pem.clone(),
        ..certs.clone()
    };
    assert_eq!(decide(Some(&other_ca_key), &names(), at(1)), Plan::Create);
    let garbage = WebhookCerts {
        ca_bundle: vec!["not a certificate".into()],
        ..certs.clone()
    };
    assert_eq!(decide(Some(&garbage), &names(), at(1)), Plan::Create);
    // Starting afresh keeps a still-valid CA of the old Secret trusted, behind the new one.
    let fresh = issue(Some(&other_ca_key), Plan::Create, &names(), at(1), short()).unwrap();
    assert_eq!(fresh.ca_bundle.len(), 2);
    assert_eq!(fresh.ca_bundle[1], certs.ca_bundle[0]);
    assert_eq!(decide(Some(&fresh), &names(), at(1)), Plan::Keep);
}

/// CA rotation never swaps trust and certificate at once: the new CA joins the front of the
/// bundle while the serving certificate keeps its issuer; the serving certificate moves to
/// the new CA at its next renewal; the old CA leaves the bundle once it has expired.
#[test]
fn ca_rotation_keeps_the_old_ca_until_it_expires() {
    let v = short();
    let first = create(at(0), v);
    let renewed = issue(Some(&first), Plan::RenewServing, &names(), at(195), v).unwrap();
    // At day 201 the CA (300 days) has 99 days left: less than a third.
    assert_eq!(
        decide(Some(&renewed), &names(), at(201)),
        Plan::RotateCa {
            renew_serving: false
        }
    );
    let rotated = issue(
        Some(&renewed),
        Plan::RotateCa {
            renew_serving: false,
        },
        &names(),
        at(201),
        v,
    )
    .unwrap();
    assert_eq!(rotated.ca_bundle.len(), 2);
    assert_eq!(rotated.ca_bundle[1], first.ca_bundle[0]);
    assert_eq!(rotated.serving, renewed.serving, "serving certificate kept");
    assert!(signed_by(&rotated.serving.cert_pem, &rotated.ca_bundle[1]));
    assert_eq!(decide(Some(&rotated), &names(), at(201)), Plan::Keep);

    // Day 221: the serving certificate (from day 195) is due and moves to the new CA.
    assert_eq!(
        decide(Some(&rotated), &names(), at(221)),
        Plan::RenewServing
    );
    let moved = issue(Some(&rotated), Plan::RenewServing, &names(), at(221), v).unwrap();
    assert!(signed_by(&moved.serving.cert_pem, &moved.ca_bundle[0]));
    assert_eq!(
        moved.ca_bundle.len(),
        2,
        "old CA still valid, still trusted"
    );

    // Day 301: the first CA has expired; a serving certificate renewed on day 295 is fine, so
    // only the bundle is tidied.
    let late = issue(Some(&moved), Plan::RenewServing, &names(), at(295), v).unwrap();
    assert_eq!(decide(Some(&late), &names(), at(301)), Plan::DropExpiredCas);
    let tidy = issue(Some(&late), Plan::DropExpiredCas, &names(), at(301), v).unwrap();
    assert_eq!(tidy.ca_bundle, vec![moved.ca_bundle[0].clone()]);
    assert_eq!(decide(Some(&tidy), &names(), at(301)), Plan::Keep);
}

/// A serving certificate never outlives its CA.
#[test]
fn serving_certificate_ends_with_its_ca() {
    let v = Validity {
        ca: Duration::from_secs(10 * DAY),
        serving: Duration::from_secs(30 * DAY),
    };
    let certs = create(at(0), v);
    let ca = cert_facts(&certs.ca_bundle[0]).unwrap();
    let serving = cert_facts(&certs.serving.cert_pem).unwrap();
    assert_eq!(serving.not_after, ca.not_after);
}

/// The Secret round-trips, and its Debug output never shows a private key.
#[test]
fn secret_round_trip_hides_keys() {
    let certs = create(at(0), short());
    let secret = certs.to_secret("vigil-system", "vigil-webhook-tls");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(WebhookCerts::from_secret(&secret), Some(certs.clone()));
    let debug = format!("{certs:?}");
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
}

/// `caBundle` is patched only on webhooks whose value differs.
#[test]
fn ca_bundle_patch_names_only_stale_webhooks() {
    let bundle = b"PEM".as_slice();
    let current = [("a.vigil.dev", Some(bundle)), ("b.vigil.dev", None)];
    let patch = ca_bundle_patch(current.iter().copied(), bundle).unwrap();
    assert_eq!(
        patch,
        json!({"webhooks": [{"name": "b.vigil.dev", "clientConfig": {"caBundle": "UEVN"}}]})
    );
    assert_eq!(
        ca_bundle_patch([("a.vigil.dev", Some(bundle))].into_iter(), bundle),
        None
    );
}

/// A mounted certificate directory (cert-manager) is read and served.
#[test]
fn cert_dir_is_read_into_the_resolver() {
    let certs = create(at(0), short());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(TLS_CRT), &certs.serving.cert_pem).unwrap();
    std::fs::write(dir.path().join(TLS_KEY), &certs.serving.key_pem).unwrap();
    let read = read_cert_dir(dir.path()).unwrap();
    assert_eq!(read, certs.serving);
    let resolver = ServingCertResolver::new();
    assert!(!resolver.is_loaded());
    assert!(resolver.set(&read).unwrap());
    assert!(!resolver.set(&read).unwrap(), "same certificate: no change");
    assert!(resolver.is_loaded());
    let missing = read_cert_dir(&dir.path().join("nope")).unwrap_err();
    assert_eq!(missing.category(), "CertificateUnreadable");
}

// ---------------------------------------------------------------------------------------------
// An in-memory API server: Secrets and webhook configurations, by path.

#[derive(Default)]
struct FakeApi {
    objects: Mutex<BTreeMap<String, Value>>,
    /// `(method, path)` of every request.
    requests: Mutex<Vec<(Method, String)>>,
    /// When set, the next Secret write stores this object instead and answers 409, as if
    /// another replica had written first.
    lose_next_write_to: Mutex<Option<Value>>,
    version: Mutex<u64>,
}

const SECRETS: &str = "/api/v1/namespaces/vigil-system/secrets";
const SECRET: &str = "/api/v1/namespaces/vigil-system/secrets/vigil-webhook-tls";
const MUTATING: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/vigil";
const VALIDATING: &str =
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/vigil";

impl FakeApi {
    fn with_webhook_configs() -> Arc<FakeApi> {
        let fake = Arc::new(FakeApi::default());
        let config = |kind: &str, hooks: &[&str]| {
            json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": kind,
                "metadata": {"name": "vigil", "resourceVersion": "1"},
                "webhooks": hooks.iter().map(|h| json!({
                    "name": h,
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "clientConfig": {"service": {"name": "vigil-webhook", "namespace": "vigil-system", "path": "/x"}},
                })).collect::<Vec<_>>(),
            })
        };
        let mut objects = fake.objects.lock().unwrap();
        objects.insert(
            MUTATING.into(),
            config("MutatingWebhookConfiguration", &["pods.vigil.dev"]),
        );
        objects.insert(
            VALIDATING.into(),
            config(
                "ValidatingWebhookConfiguration",
                &["monitoredapps.vigil.dev", "alertpolicies.vigil.dev"],
            ),
        );
        drop(objects);
        fake
    }

    fn client(self: &Arc<Self>) -> Client {
        let fake = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let fake = fake.clone();
            async move { Ok::<_, std::convert::Infallible>(fake.handle(req).await) }
        });
        Client::new(service, "default")
    }

    fn object(&self, path: &str) -> Option<Value> {
        self.objects.lock().unwrap().get(path).cloned()
    }

    fn writes(&self) -> Vec<(Method, String)> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| *m != Method::GET)
            .cloned()
            .collect()
    }

    fn next_version(&self) -> String {
        let mut v = self.version.lock().unwrap();
        *v += 1;
        v.to_string()
    }

    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        self.requests
            .lock()
            .unwrap()
            .push((method.clone(), path.clone()));
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match (method, path.as_str()) {
            (Method::GET, p) => match self.object(p) {
                Some(obj) => reply(StatusCode::OK, obj),
                None => status(404, "NotFound"),
            },
            (Method::POST, SECRETS) => {
                if let Some(winner) = self.lose_next_write_to.lock().unwrap().take() {
                    self.store(SECRET, winner);
                    return status(409, "AlreadyExists");
                }
                if self.object(SECRET).is_some() {
                    return status(409, "AlreadyExists");
                }
                reply(StatusCode::CREATED, self.store(SECRET, body))
            }
            (Method::PUT, SECRET) => {
                if let Some(winner) = self.lose_next_write_to.lock().unwrap().take() {
                    self.store(SECRET, winner);
                    return status(409, "Conflict");
                }
                let current = self.object(SECRET).unwrap();
                if current["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"] {
                    return status(409, "Conflict");
                }
                reply(StatusCode::OK, self.store(SECRET, body))
            }
            (Method::PATCH, p @ (MUTATING | VALIDATING)) => {
                assert_eq!(content_type, "application/strategic-merge-patch+json");
                let mut obj = self.object(p).unwrap();
                for hook in body["webhooks"].as_array().unwrap() {
                    let target = obj["webhooks"]
                        .as_array_mut()
                        .unwrap()
                        .iter_mut()
                        .find(|w| w["name"] == hook["name"])
                        .expect("patch names an existing webhook");
                    target["clientConfig"]["caBundle"] = hook["clientConfig"]["caBundle"].clone();
                }
                reply(StatusCode::OK, self.store(p, obj))
            }
            (m, p) => panic!("unexpected request {m} {p}"),
        }
    }

    fn store(&self, path: &str, mut obj: Value) -> Value {
        obj["metadata"]["resourceVersion"] = json!(self.next_version());
        self.objects
            .lock()
            .unwrap()
            .insert(path.to_owned(), obj.clone());
        obj
    }

    fn stored_certs(&self) -> WebhookCerts {
        let secret: Secret = serde_json::from_value(self.object(SECRET).unwrap()).unwrap();
        WebhookCerts::from_secret(&secret).unwrap()
    }

    /// The decoded `caBundle` of every webhook of a configuration.
    fn ca_bundles(&self, path: &str) -> Vec<String> {
        let obj = self.object(path).unwrap();
        obj["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                let b: ByteString =
                    serde_json::from_value(w["clientConfig"]["caBundle"].clone()).unwrap();
                String::from_utf8(b.0).unwrap()
            })
            .collect()
    }
}

fn reply(code: StatusCode, body: Value) -> Response<Body> {
    let mut response = Response::new(Body::from(serde_json::to_vec(&body).unwrap()));
    *response.status_mut() = code;
    response
}

fn status(code: u16, reason: &str) -> Response<Body> {
    reply(
        StatusCode::from_u16(code).unwrap(),
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code}),
    )
}

/// Without a Secret, `ensure` creates one with CA, key and serving certificate, and writes the
/// CA into every webhook's `caBundle`; a second run changes nothing.
#[tokio::test]
async fn ensure_creates_the_secret_and_patches_ca_bundles() {
    let fake = FakeApi::with_webhook_configs();
    let client = fake.client();
    let served = ensure(&client, &settings(), at(0)).await.unwrap();

    let secret = fake.object(SECRET).unwrap();
    assert_eq!(secret["type"], "kubernetes.io/tls");
    for key in [TLS_CRT, TLS_KEY, CA_CRT, CA_KEY] {
        assert!(secret["data"][key].is_string(), "{key} missing");
    }
    let stored = fake.stored_certs();
    assert_eq!(stored.serving, served);
    assert!(stored.serving.key_pem.contains("PRIVATE KEY"));
    assert_eq!(fake.ca_bundles(MUTATING), vec![stored.bundle_pem()]);
    assert_eq!(fake.ca_bundles(VALIDATING), vec![stored.bundle_pem(); 2]);
    assert_eq!(
        fake.writes(),
        vec![
            (Method::POST, SECRETS.to_owned()),
            (Method::PATCH, MUTATING.to_owned()),
            (Method::PATCH, VALIDATING.to_owned()),
        ]
    );

    let again = ensure(&client, &settings(), at(1)).await.unwrap();
    assert_eq!(again, served);
    assert_eq!(fake.writes().len(), 3, "nothing written the second time");
}

/// An expiring serving certificate is replaced in the Secret (optimistic concurrency through
/// the resourceVersion), signed by the same CA, so the caBundle needs no patch.
#[tokio::test]
async fn ensure_replaces_an_expiring_certificate() {
    let fake = FakeApi::with_webhook_configs();
    let client = fake.client();
    let first = ensure(&client, &settings(), at(0)).await.unwrap();
    let bundle = fake.stored_certs().bundle_pem();
    // 90-day certificates are renewed with 30 days left.
    let renewed = ensure(&client, &settings(), at(61)).await.unwrap();
    assert_ne!(renewed, first);
    assert_eq!(fake.stored_certs().serving, renewed);
    assert_eq!(fake.stored_certs().bundle_pem(), bundle);
    assert_eq!(
        fake.writes()[3..],
        [(Method::PUT, SECRET.to_owned())],
        "only the Secret is rewritten"
    );
    let facts = cert_facts(&renewed.cert_pem).unwrap();
    assert!(facts.not_after > unix(at(61)) + 80 * DAY as i64);
}

/// When another replica writes the Secret first, `ensure` reads and serves its result instead
/// of overwriting it.
#[tokio::test]
async fn ensure_yields_to_another_replica() {
    let fake = FakeApi::with_webhook_configs();
    let theirs = create(at(0), Validity::default());
    *fake.lose_next_write_to.lock().unwrap() =
        Some(serde_json::to_value(theirs.to_secret("vigil-system", "vigil-webhook-tls")).unwrap());
    let served = ensure(&fake.client(), &settings(), at(0)).await.unwrap();
    assert_eq!(served, theirs.serving);
    assert_eq!(fake.stored_certs(), theirs);
    assert_eq!(fake.ca_bundles(MUTATING), vec![theirs.bundle_pem()]);
}

/// A missing webhook configuration is an error naming it (the chart creates both).
#[tokio::test]
async fn missing_webhook_configuration_is_named() {
    let fake = Arc::new(FakeApi::default());
    let err = ensure(&fake.client(), &settings(), at(0))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot read MutatingWebhookConfiguration vigil"
    );
    assert_eq!(err.category(), "CaBundlePatchFailed");
}
