//! Webhook TLS without cert-manager: the operator's own certificate authority and the
//! serving certificate of the admission webhook, kept in a Secret, trusted by the webhook
//! configurations through their `caBundle`, renewed before they expire, and handed to the HTTPS
//! server without a restart.
//!
//! How it works, and why:
//! - **One Secret is the source of truth** (`kubernetes.io/tls`, in the operator's namespace):
//!   `tls.crt`/`tls.key` are the serving certificate and key, `ca.crt` is the trust bundle (every
//!   CA the webhook configurations must trust, newest first) and `ca.key` the key of the newest
//!   CA. Every replica runs the same [`ensure`] on a timer: it reads the Secret, decides with the
//!   pure [`decide`], writes a renewal with optimistic concurrency (create fails if another
//!   replica created it first, replace fails if the `resourceVersion` moved) and then serves
//!   whatever the Secret holds. No leader is needed and replicas always converge on one
//!   certificate.
//! - **Serving certificate**: issued for `<service>.<namespace>.svc` and
//!   `<service>.<namespace>.svc.cluster.local`, valid 90 days, renewed when less than a third of
//!   its validity remains (or when its names, key or issuer no longer fit).
//! - **CA rotation without an outage**: the CA is valid ten years and replaced when less than a
//!   third remains. The new CA is added *in front of* the bundle while the old one stays until
//!   it expires, and the serving certificate keeps its old issuer until its own next renewal.
//!   By then the API server has trusted the new CA for weeks, so no handshake ever sees a
//!   certificate its bundle cannot verify.
//! - **`caBundle`** of the named Mutating- and ValidatingWebhookConfiguration is patched (a
//!   strategic merge on each webhook, by name) whenever it differs from the Secret's bundle,
//!   which also repairs a configuration that was re-applied without it.
//! - **cert-manager** instead: with `--webhook-cert-dir` the certificate is read from mounted
//!   files ([`read_cert_dir`]) and nothing here writes to the cluster.
//!
//! Private keys never appear in logs, errors or events.

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

/// Secret key of the serving certificate (PEM).
pub const TLS_CRT: &str = "tls.crt";
/// Secret key of the serving certificate's private key (PEM).
pub const TLS_KEY: &str = "tls.key";
/// Secret key of the trust bundle: every CA the webhook configurations trust, newest first.
pub const CA_CRT: &str = "ca.crt";
/// Secret key of the newest CA's private key (PEM).
pub const CA_KEY: &str = "ca.key";
/// Field manager of the `caBundle` patches.
pub const FIELD_MANAGER: &str = "vigil-operator";
/// How far `notBefore` is set in the past, so that a peer whose clock is a little behind
/// accepts a certificate issued a moment ago.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// How long certificates are valid; each is renewed when less than a third of it remains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Lifetime of a CA. Default 10 years.
    pub ca: Duration,
    /// Lifetime of a serving certificate. Default 90 days.
    pub serving: Duration,
}

impl Default for Validity {
    fn default() -> Self {
        const DAY: u64 = 24 * 60 * 60;
        Validity {
            ca: Duration::from_secs(3650 * DAY),
            serving: Duration::from_secs(90 * DAY),
        }
    }
}

/// Where the webhook's certificate lives and whom to tell about its CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The operator's namespace: where the Service and the Secret are.
    pub namespace: String,
    /// The Service in front of the webhook; the certificate names `<service>.<namespace>.svc`.
    pub service: String,
    /// The Secret holding CA, key and serving certificate.
    pub secret: String,
    /// MutatingWebhookConfiguration whose `caBundle` is kept current, if any.
    pub mutating_webhook: Option<String>,
    /// ValidatingWebhookConfiguration whose `caBundle` is kept current, if any.
    pub validating_webhook: Option<String>,
    /// Certificate lifetimes.
    pub validity: Validity,
}

impl TlsSettings {
    /// The DNS names the serving certificate must carry.
    pub fn dns_names(&self) -> Vec<String> {
        let host = format!("{}.{}.svc", self.service, self.namespace);
        vec![host.clone(), format!("{host}.cluster.local")]
    }
}

/// What went wrong while managing or loading certificates. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating a key or signing a certificate failed.
    #[error("cannot issue the {what} certificate")]
    Issue {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    /// A PEM certificate or key could not be read.
    #[error("cannot read {what}: {reason}")]
    Pem { what: String, reason: String },
    /// The serving key is of a type rustls cannot sign with.
    #[error("unsupported serving key")]
    Key(#[source] rustls::Error),
    /// An API call on the certificate Secret failed.
    #[error("cannot {action} Secret {namespace}/{name}")]
    Secret {
        action: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// The Secret kept changing under us (other replicas renewing at the same moment).
    #[error("Secret {namespace}/{name} changed on every attempt; will try again")]
    Contended { namespace: String, name: String },
    /// Reading or patching a webhook configuration failed.
    #[error("cannot {action} {kind} {name}")]
    WebhookConfig {
        action: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// Reading a mounted certificate file failed.
    #[error("cannot read {}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl TlsError {
    /// A stable PascalCase name of the error, for Event reasons and metric labels.
    pub fn category(&self) -> &'static str {
        match self {
            TlsError::Issue { .. } => "CertificateIssueFailed",
            TlsError::Pem { .. } | TlsError::Key(_) | TlsError::File { .. } => {
                "CertificateUnreadable"
            }
            TlsError::Secret { .. } | TlsError::Contended { .. } => "CertificateSecretFailed",
            TlsError::WebhookConfig { .. } => "CaBundlePatchFailed",
        }
    }
}

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyedCert {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl fmt::Debug for KeyedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Everything the Secret holds.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookCerts {
    /// PEM certificates of every CA the webhook configurations trust, newest first; the first
    /// signs new serving certificates.
    pub ca_bundle: Vec<String>,
    /// Private key of `ca_bundle[0]` (PEM).
    pub ca_key_pem: String,
    /// The serving certificate and key.
    pub serving: KeyedCert,
}

impl fmt::Debug for WebhookCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookCerts")
            .field("ca_bundle", &self.ca_bundle)
            .field("ca_key_pem", &"<redacted>")
            .field("serving", &self.serving)
            .finish()
    }
}

impl WebhookCerts {
    /// The trust bundle as one PEM text, the value of `caBundle`.
    pub fn bundle_pem(&self) -> String {
        self.ca_bundle.concat()
    }

    /// Reads the Secret's data; `None` when a key is missing or not text.
    pub fn from_secret(secret: &Secret) -> Option<WebhookCerts> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| {
            data.get(key)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        Some(WebhookCerts {
            ca_bundle: split_pem_certificates(&text(CA_CRT)?),
            ca_key_pem: text(CA_KEY)?,
            serving: KeyedCert {
                cert_pem: text(TLS_CRT)?,
                key_pem: text(TLS_KEY)?,
            },
        })
    }

    /// The Secret `name` in `namespace` holding these certificates (`kubernetes.io/tls`).
    pub fn to_secret(&self, namespace: &str, name: &str) -> Secret {
        let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
        Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_owned(),
                        crate::render::MANAGER.to_owned(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(
                [
                    (TLS_CRT.to_owned(), bytes(&self.serving.cert_pem)),
                    (TLS_KEY.to_owned(), bytes(&self.serving.key_pem)),
                    (CA_CRT.to_owned(), bytes(&self.bundle_pem())),
                    (CA_KEY.to_owned(), bytes(&self.ca_key_pem)),
                ]
                .into(),
            ),
            ..Secret::default()
        }
    }
}

/// Splits concatenated PEM certificates into one PEM text per certificate.
pub fn split_pem_certificates(pem: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(end) = rest[start..].find(END) else {
            break;
        };
        let stop = start + end + END.len();
        out.push(format!("{}\n", &rest[start..stop]));
        rest = &rest[stop..];
    }
    out
}

/// What [`ensure`] must do with the stored certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Everything stored is valid and fits: serve it.
    Keep,
    /// The bundle still lists CAs that have expired: drop them.
    DropExpiredCas,
    /// Issue a new serving certificate with the newest CA (expiring, wrong names, unreadable,
    /// or not signed by the newest CA).
    RenewServing,
    /// Create a new CA in front of the bundle; the old CA stays until it expires. With
    /// `renew_serving`, the serving certificate is renewed too, still by the old CA, which the
    /// API server already trusts.
    RotateCa {
        /// The serving certificate also needs renewal.
        renew_serving: bool,
    },
    /// Nothing usable is stored (no Secret, or no valid CA with its key): start afresh.
    Create,
}

/// The facts about one certificate that renewal decisions need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFacts {
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// Whether the certificate is a CA.
    pub is_ca: bool,
}

impl CertFacts {
    /// Whether less than a third of the validity remains at `now` (or it is not valid at all).
    pub fn needs_renewal(&self, now: i64) -> bool {
        let lifetime = self.not_after - self.not_before;
        now < self.not_before || self.not_after - now < lifetime / 3
    }
}

/// Reads the facts of one PEM certificate.
pub fn cert_facts(pem: &str) -> Result<CertFacts, TlsError> {
    let der = pem_der(pem, "certificate")?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| TlsError::Pem {
        what: "certificate".into(),
        reason: e.to_string(),
    })?;
    let mut dns_names = Vec::new();
    let mut is_ca = false;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    if let GeneralName::DNSName(dns) = name {
                        dns_names.push((*dns).to_owned());
                    }
                }
            }
            ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
            _ => {}
        }
    }
    Ok(CertFacts {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        dns_names,
        is_ca,
    })
}

fn pem_der(pem: &str, what: &str) -> Result<Vec<u8>, TlsError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|d| d.to_vec())
        .map_err(|e| TlsError::Pem {
            what: what.to_owned(),
            reason: e.to_string(),
        })
}

/// Whether `cert_pem` was signed by the CA `ca_pem`.
fn signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let (Ok(cert_der), Ok(ca_der)) = (pem_der(cert_pem, "cert"), pem_der(ca_pem, "ca")) else {
        return false;
    };
    let (Ok((_, cert)), Ok((_, ca))) = (
        X509Certificate::from_der(&cert_der),
        X509Certificate::from_der(&ca_der),
    ) else {
        return false;
    };
    cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// Whether the private key `key_pem` belongs to the certificate `cert_pem`.
fn key_matches(cert_pem: &str, key_pem: &str) -> bool {
    let (Ok(der), Ok(key)) = (pem_der(cert_pem, "cert"), KeyPair::from_pem(key_pem)) else {
        return false;
    };
    X509Certificate::from_der(&der)
        .is_ok_and(|(_, c)| c.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
}

/// Decides what to do with what is stored (pure: the same input gives the same plan).
pub fn decide(stored: Option<&WebhookCerts>, dns_names: &[String], now: SystemTime) -> Plan {
    let now = unix(now);
    let Some(stored) = stored else {
        return Plan::Create;
    };
    let Some(newest_ca) = stored.ca_bundle.first() else {
        return Plan::Create;
    };
    let ca = match cert_facts(newest_ca) {
        Ok(ca) if ca.is_ca && now >= ca.not_before && now < ca.not_after => ca,
        _ => return Plan::Create,
    };
    if !key_matches(newest_ca, &stored.ca_key_pem) {
        return Plan::Create;
    }
    let serving = &stored.serving;
    let serving_ok = cert_facts(&serving.cert_pem)
        .is_ok_and(|s| !s.needs_renewal(now) && dns_names.iter().all(|n| s.dns_names.contains(n)))
        && key_matches(&serving.cert_pem, &serving.key_pem)
        && stored
            .ca_bundle
            .iter()
            .any(|ca| signed_by(&serving.cert_pem, ca));
    if ca.needs_renewal(now) {
        return Plan::RotateCa {
            renew_serving: !serving_ok,
        };
    }
    // A serving certificate issued by an older CA of the bundle is fine: it moves to the
    // newest CA at its regular renewal.
    if !serving_ok {
        return Plan::RenewServing;
    }
    let expired = stored
        .ca_bundle
        .iter()
        .any(|pem| cert_facts(pem).map_or(true, |f| f.not_after <= now));
    if expired {
        return Plan::DropExpiredCas;
    }
    Plan::Keep
}

/// Carries out `plan`, returning what the Secret must hold next. Generates keys (so it is not
/// pure), but reads no clock: `now` is passed in.
pub fn issue(
    stored: Option<&WebhookCerts>,
    plan: Plan,
    dns_names: &[String],
    now: SystemTime,
    validity: Validity,
) -> Result<WebhookCerts, TlsError> {
    let now_s = unix(now);
    let still_valid = |bundle: &[String]| -> Vec<String> {
        bundle
            .iter()
            .filter(|pem| cert_facts(pem).is_ok_and(|f| f.not_after > now_s))
            .cloned()
            .collect()
    };
    match (plan, stored) {
        (Plan::Keep, Some(stored)) => Ok(stored.clone()),
        (Plan::DropExpiredCas, Some(stored)) => Ok(WebhookCerts {
            ca_bundle: still_valid(&stored.ca_bundle),
            ..stored.clone()
        }),
        (Plan::RenewServing, Some(stored)) => {
            let newest = stored.ca_bundle.first().map(String::as_str).unwrap_or("");
            let serving = serving_cert(newest, &stored.ca_key_pem, dns_names, now, validity)?;
            Ok(WebhookCerts {
                ca_bundle: still_valid(&stored.ca_bundle),
                ca_key_pem: stored.ca_key_pem.clone(),
                serving,
            })
        }
        (Plan::RotateCa { renew_serving }, Some(stored)) => {
            let ca = new_ca(now, validity)?;
            let serving = if renew_serving {
                let old = stored.ca_bundle.first().map(String::as_str).unwrap_or("");
                serving_cert(old, &stored.ca_key_pem, dns_names, now, validity)?
            } else {
                stored.serving.clone()
            };
            let mut bundle = vec![ca.cert_pem];
            bundle.extend(still_valid(&stored.ca_bundle));
            Ok(WebhookCerts {
                ca_bundle: bundle,
                ca_key_pem: ca.key_pem,
                serving,
            })
        }
        // Create, or any plan without stored certificates.
        (_, stored) => {
            let ca = new_ca(now, validity)?;
            let serving = serving_cert(&ca.cert_pem, &ca.key_pem, dns_names, now, validity)?;
            // CAs of an unusable Secret stay trusted while valid: replicas still serving the
            // old certificate keep working until they pick up the new one.
            let mut bundle = vec![ca.cert_pem];
            if let Some(stored) = stored {
                bundle.extend(
                    still_valid(&stored.ca_bundle)
                        .into_iter()
                        .filter(|pem| cert_facts(pem).is_ok_and(|f| f.is_ca)),
                );
            }
            Ok(WebhookCerts {
                ca_bundle: bundle,
                ca_key_pem: ca.key_pem,
                serving,
            })
        }
    }
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn offset_time(t: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

fn new_ca(now: SystemTime, validity: Validity) -> Result<KeyedCert, TlsError> {
    let issue_err = |source| TlsError::Issue { what: "CA", source };
    let now = unix(now);
    let key = KeyPair::generate().map_err(issue_err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(issue_err)?;
    let mut dn = DistinguishedName::new();
    // The creation time in the name tells CAs apart in a bundle during rotation.
    dn.push(DnType::CommonName, format!("vigil-webhook-ca@{now}"));
    dn.push(DnType::OrganizationName, "Vigil");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = offset_time(now - secs(CLOCK_SKEW));
    params.not_after = offset_time(now + secs(validity.ca));
    let cert = params.self_signed(&key).map_err(issue_err)?;
    Ok(KeyedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn serving_cert(
    ca_pem: &str,
    ca_key_pem: &str,
    dns_names: &[String],
    now: SystemTime,
    validity: Validity,
) -> Result<KeyedCert, TlsError> {
    let issue_err = |source| TlsError::Issue {
        what: "serving",
        source,
    };
    let now = unix(now);
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(issue_err)?;
    let ca_end = cert_facts(ca_pem)?.not_after;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key).map_err(issue_err)?;
    let key = KeyPair::generate().map_err(issue_err)?;
    let mut params = CertificateParams::new(dns_names.to_vec()).map_err(issue_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        dns_names.first().cloned().unwrap_or_default(),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = offset_time(now - secs(CLOCK_SKEW));
    // Never outlive the issuer: a chain is only as valid as its CA.
    params.not_after = offset_time((now + secs(validity.serving)).min(ca_end));
    let cert = params.signed_by(&key, &issuer).map_err(issue_err)?;
    Ok(KeyedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The certificate the HTTPS server presents, swapped in place when it is renewed: each TLS
/// handshake asks for the current one, so a renewal needs no restart and no new listener.
#[derive(Default)]
pub struct ServingCertResolver {
    current: RwLock<Option<(String, Arc<CertifiedKey>)>>,
}

impl fmt::Debug for ServingCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingCertResolver")
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

impl ServingCertResolver {
    /// An empty resolver: handshakes fail until [`ServingCertResolver::set`] is called.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `cert` (the certificate, optionally followed by its chain) from the next
    /// handshake on. Returns whether it differs from what was served before.
    pub fn set(&self, cert: &KeyedCert) -> Result<bool, TlsError> {
        if self
            .current
            .read()
            .ok()
            .and_then(|c| c.as_ref().map(|(pem, _)| *pem == cert.cert_pem))
            .unwrap_or(false)
        {
            return Ok(false);
        }
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| TlsError::Pem {
                    what: "serving certificate".into(),
                    reason: e.to_string(),
                })?;
        if chain.is_empty() {
            return Err(TlsError::Pem {
                what: "serving certificate".into(),
                reason: "no certificate found".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).map_err(|_| {
            // The parser's message may quote the input; never echo key material.
            TlsError::Pem {
                what: "serving key".into(),
                reason: "not a PEM private key".into(),
            }
        })?;
        let signing_key =
            rustls::crypto::ring::sign::any_supported_type(&key).map_err(TlsError::Key)?;
        let certified = Arc::new(CertifiedKey::new(chain, signing_key));
        if let Ok(mut current) = self.current.write() {
            *current = Some((cert.cert_pem.clone(), certified));
        }
        Ok(true)
    }

    /// Whether a certificate is loaded (the server can complete handshakes).
    pub fn is_loaded(&self) -> bool {
        self.current.read().is_ok_and(|c| c.is_some())
    }

    /// The PEM of the certificate currently served.
    pub fn current_pem(&self) -> Option<String> {
        self.current
            .read()
            .ok()
            .and_then(|c| c.as_ref().map(|(pem, _)| pem.clone()))
    }
}

impl ResolvesServerCert for ServingCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .ok()
            .and_then(|c| c.as_ref().map(|(_, key)| key.clone()))
    }
}

/// Reads `tls.crt` and `tls.key` from a directory, such as a mounted cert-manager Secret.
pub fn read_cert_dir(dir: &Path) -> Result<KeyedCert, TlsError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| TlsError::File { path, source })
    };
    Ok(KeyedCert {
        cert_pem: read(TLS_CRT)?,
        key_pem: read(TLS_KEY)?,
    })
}

/// Makes sure the Secret holds a valid CA and serving certificate (creating or renewing them as
/// [`decide`] says), patches the trust bundle into the webhook configurations, and returns the
/// serving certificate to present. Safe to run from every replica at once.
pub async fn ensure(
    client: &Client,
    settings: &TlsSettings,
    now: SystemTime,
) -> Result<KeyedCert, TlsError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &settings.namespace);
    let names = settings.dns_names();
    let secret_err = |action: &'static str| {
        let (namespace, name) = (settings.namespace.clone(), settings.secret.clone());
        move |source| TlsError::Secret {
            action,
            namespace,
            name,
            source: Box::new(source),
        }
    };
    for _attempt in 0..4 {
        let existing = secrets
            .get_opt(&settings.secret)
            .await
            .map_err(secret_err("read"))?;
        let stored = existing.as_ref().and_then(WebhookCerts::from_secret);
        let plan = decide(stored.as_ref(), &names, now);
        let certs = if plan == Plan::Keep {
            stored.clone()
        } else {
            None
        };
        let certs = match certs {
            Some(certs) => certs,
            None => {
                let next = issue(stored.as_ref(), plan, &names, now, settings.validity)?;
                let mut secret = next.to_secret(&settings.namespace, &settings.secret);
                let written = match &existing {
                    None => secrets.create(&PostParams::default(), &secret).await,
                    Some(existing) => {
                        secret.metadata.resource_version =
                            existing.metadata.resource_version.clone();
                        secret.metadata.labels = merged_labels(existing, &secret);
                        secrets
                            .replace(&settings.secret, &PostParams::default(), &secret)
                            .await
                    }
                };
                match written {
                    Ok(_) => {
                        tracing::info!(
                            secret = %settings.secret,
                            namespace = %settings.namespace,
                            plan = ?plan,
                            "webhook certificate Secret updated"
                        );
                        next
                    }
                    // Another replica wrote first: read its result and decide again.
                    Err(kube::Error::Api(e)) if e.code == 409 => continue,
                    Err(e) => {
                        let action = if existing.is_some() {
                            "replace"
                        } else {
                            "create"
                        };
                        return Err(secret_err(action)(e));
                    }
                }
            }
        };
        patch_ca_bundles(client, settings, certs.bundle_pem().as_bytes()).await?;
        return Ok(certs.serving);
    }
    Err(TlsError::Contended {
        namespace: settings.namespace.clone(),
        name: settings.secret.clone(),
    })
}

fn merged_labels(
    existing: &Secret,
    ours: &Secret,
) -> Option<std::collections::BTreeMap<String, String>> {
    let mut labels = existing.metadata.labels.clone().unwrap_or_default();
    labels.extend(ours.metadata.labels.clone().unwrap_or_default());
    Some(labels)
}

/// Writes `bundle` into `caBundle` of every webhook of the configured webhook configurations
/// whose value differs.
async fn patch_ca_bundles(
    client: &Client,
    settings: &TlsSettings,
    bundle: &[u8],
) -> Result<(), TlsError> {
    if let Some(name) = &settings.mutating_webhook {
        let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        let get = api.get(name).await;
        let config = get.map_err(|source| TlsError::WebhookConfig {
            action: "read",
            kind: "MutatingWebhookConfiguration",
            name: name.clone(),
            source: Box::new(source),
        })?;
        let webhooks = config.webhooks.iter().flatten().map(|w| {
            let current = w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice());
            (w.name.as_str(), current)
        });
        if let Some(patch) = ca_bundle_patch(webhooks, bundle) {
            api.patch(
                name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Strategic(patch),
            )
            .await
            .map_err(|source| TlsError::WebhookConfig {
                action: "patch caBundle of",
                kind: "MutatingWebhookConfiguration",
                name: name.clone(),
                source: Box::new(source),
            })?;
            tracing::info!(configuration = %name, "caBundle of MutatingWebhookConfiguration updated");
        }
    }
    if let Some(name) = &settings.validating_webhook {
        let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        let get = api.get(name).await;
        let config = get.map_err(|source| TlsError::WebhookConfig {
            action: "read",
            kind: "ValidatingWebhookConfiguration",
            name: name.clone(),
            source: Box::new(source),
        })?;
        let webhooks = config.webhooks.iter().flatten().map(|w| {
            let current = w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice());
            (w.name.as_str(), current)
        });
        if let Some(patch) = ca_bundle_patch(webhooks, bundle) {
            api.patch(
                name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Strategic(patch),
            )
            .await
            .map_err(|source| TlsError::WebhookConfig {
                action: "patch caBundle of",
                kind: "ValidatingWebhookConfiguration",
                name: name.clone(),
                source: Box::new(source),
            })?;
            tracing::info!(configuration = %name, "caBundle of ValidatingWebhookConfiguration updated");
        }
    }
    Ok(())
}

/// The strategic merge patch setting `caBundle` on every webhook (by name) whose current
/// value differs from `bundle`; `None` when all are current.
pub fn ca_bundle_patch<'a>(
    webhooks: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
    bundle: &[u8],
) -> Option<serde_json::Value> {
    let encoded = serde_json::to_value(ByteString(bundle.to_vec())).unwrap_or_default();
    let stale: Vec<serde_json::Value> = webhooks
        .filter(|(_, current)| *current != Some(bundle))
        .map(|(name, _)| json!({"name": name, "clientConfig": {"caBundle": encoded}}))
        .collect();
    (!stale.is_empty()).then(|| json!({ "webhooks": stale }))
}

/// Where the serving certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertSource {
    /// The operator manages CA and certificate in a Secret ([`ensure`]).
    SelfManaged(TlsSettings),
    /// Files `tls.crt` and `tls.key` in a directory, kept current by someone else
    /// (cert-manager).
    Directory(PathBuf),
}

/// Loads the serving certificate into `resolver` now and again every `interval` until
/// `shutdown` completes, so that renewals (by this replica, another one, or cert-manager)
/// are served without a restart. Failures are logged and retried; the last good certificate
/// stays in use.
pub async fn keep_current(
    client: Client,
    source: CertSource,
    resolver: Arc<ServingCertResolver>,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    // Retry sooner while nothing is loaded: the server cannot serve without a certificate.
    let retry = Duration::from_secs(5).min(interval);
    loop {
        let result = match &source {
            CertSource::SelfManaged(settings) => ensure(&client, settings, SystemTime::now()).await,
            CertSource::Directory(dir) => read_cert_dir(dir),
        };
        let wait = match result.and_then(|cert| resolver.set(&cert)) {
            Ok(changed) => {
                if changed {
                    tracing::info!("webhook serving certificate loaded");
                }
                interval
            }
            Err(e) => {
                tracing::warn!(error = %e, category = e.category(), "cannot refresh the webhook certificate");
                if resolver.is_loaded() {
                    interval
                } else {
                    retry
                }
            }
        };
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
