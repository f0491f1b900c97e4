//! The HTTP client the push sinks share (OTLP/HTTP, Prometheus remote write, Loki, Splunk HEC):
//! rustls with the `ring` provider and either the CA bundle named by `caFile` or the system
//! roots, fixed timeouts, the `X-Scope-OrgID` tenant header, a credential (bearer token, basic
//! authentication, HEC token) re-read from its mounted Secret file when the file changes, the
//! exporter's [`Access`] settings (extra headers, client certificate: see [`super::access`]),
//! and the mapping of responses onto [`SendError`].
//!
//! Credentials never leave this module except in the `Authorization` header: errors and `Debug`
//! output name the credential file, not its content, and error messages quote at most a short
//! piece of the response body, never headers. Backends echo requests back in their errors, so
//! that piece is scrubbed before it is quoted ([`super::error_body`]): the sink's own
//! credential, `Bearer`/`Basic` tokens, `Authorization` values, JWTs and `api_key=…`-like pairs
//! become `[REDACTED]`, and so does the value of any header read from a Secret file.
//!
//! A 401 or 403 is retried with backoff, not dropped: a rotated or not yet mounted credential is
//! fixed without the agent, and the data the agent acknowledged stays buffered meanwhile.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

pub use super::access::{access, credential, Access, ClientIdentity, HeaderSource};
pub use super::error_body::{body_excerpt, mask_credential};
use super::{SendError, SinkConfigError};

/// How long a connection may take to establish.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take, response included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("vigil-agent/", env!("CARGO_PKG_VERSION"));

/// Parses an exporter URL; only `http` and `https` are accepted.
pub fn parse_url(field: &str, url: &str) -> Result<Url, SinkConfigError> {
    let parsed = Url::parse(url)
        .map_err(|e| SinkConfigError::invalid(field, format!("{url:?} is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(SinkConfigError::invalid(
            field,
            format!("{url:?} must be an http:// or https:// URL"),
        ));
    }
    if parsed.host_str().is_none() {
        return Err(SinkConfigError::invalid(
            field,
            format!("{url:?} has no host"),
        ));
    }
    Ok(parsed)
}

/// The trust anchors for one exporter: the certificates of the PEM bundle `ca_file` when set
/// (and only those), else the system's roots. `field` is the config path of `caFile`.
pub fn root_store(ca_file: Option<&str>, field: &str) -> Result<RootCertStore, SinkConfigError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_ca_bundle(path, field)? {
                roots.add(cert).map_err(|e| {
                    SinkConfigError::invalid(field, format!("{path} holds an unusable CA: {e}"))
                })?;
            }
        }
        None => {
            // Unreadable files among the system's certificates are skipped; a missing root
            // surfaces as a certificate error on the first send, naming the endpoint.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    Ok(roots)
}

/// The certificates of a PEM CA bundle.
pub fn read_ca_bundle(
    path: &str,
    field: &str,
) -> Result<Vec<CertificateDer<'static>>, SinkConfigError> {
    let pem = std::fs::read(path).map_err(|source| SinkConfigError::ReadFile {
        field: field.to_owned(),
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            SinkConfigError::invalid(
                field,
                format!("{path} is not a PEM certificate bundle: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(SinkConfigError::invalid(
            field,
            format!("{path} holds no PEM certificate"),
        ));
    }
    Ok(certs)
}

/// A rustls client configuration with the `ring` provider and the given roots, presenting
/// `identity` when set (mutual TLS), offering HTTP/2 and HTTP/1.1. `field` is the exporter's
/// config path.
pub fn tls_client_config(
    roots: RootCertStore,
    identity: Option<&ClientIdentity>,
    field: &str,
) -> Result<rustls::ClientConfig, SinkConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            SinkConfigError::invalid(format!("{field}.caFile"), format!("TLS setup failed: {e}"))
        })?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.certs.clone(), identity.key.clone_key())
            .map_err(|e| {
                SinkConfigError::invalid(
                    format!("{field}.clientKeyFile"),
                    format!("does not match the client certificate or is unusable: {e}"),
                )
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A credential kept in a mounted Secret file, sent as `Authorization: <scheme> <content>`.
///
/// The file is checked on every request and re-read when its modification time or size
/// changed, so a rotated Secret is used without restarting the agent.
pub struct CredentialFile {
    path: PathBuf,
    format: CredentialFormat,
    cached: Mutex<Option<CachedCredential>>,
}

/// How a credential file's content becomes a header value.
#[derive(Clone, Debug, PartialEq, Eq)]
enum CredentialFormat {
    /// `<scheme> <content>` (`Bearer`, `Splunk`).
    Scheme(&'static str),
    /// `Basic base64(<username>:<content>)`.
    Basic(String),
    /// The content as it is (a custom header's value).
    Raw,
}

struct CachedCredential {
    modified: Option<SystemTime>,
    len: u64,
    header: HeaderValue,
}

impl fmt::Debug for CredentialFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The credential itself is never printed.
        f.debug_struct("CredentialFile")
            .field("path", &self.path)
            .field(
                "scheme",
                &match &self.format {
                    CredentialFormat::Scheme(scheme) => scheme,
                    CredentialFormat::Basic(_) => "Basic",
                    CredentialFormat::Raw => "raw",
                },
            )
            .finish_non_exhaustive()
    }
}

impl CredentialFile {
    /// A bearer token file (`Authorization: Bearer <token>`).
    pub fn bearer(path: impl Into<PathBuf>) -> Self {
        Self::new(path, "Bearer")
    }

    /// A credential file sent with the given `Authorization` scheme (`Splunk` for HEC tokens).
    pub fn new(path: impl Into<PathBuf>, scheme: &'static str) -> Self {
        Self::with_format(path, CredentialFormat::Scheme(scheme))
    }

    /// A password file for HTTP basic authentication as `username`
    /// (`Authorization: Basic base64(<username>:<password>)`).
    pub fn basic(path: impl Into<PathBuf>, username: &str) -> Self {
        Self::with_format(path, CredentialFormat::Basic(username.to_owned()))
    }

    /// A file whose content is a header value as it is.
    pub fn raw(path: impl Into<PathBuf>) -> Self {
        Self::with_format(path, CredentialFormat::Raw)
    }

    fn with_format(path: impl Into<PathBuf>, format: CredentialFormat) -> Self {
        CredentialFile {
            path: path.into(),
            format,
            cached: Mutex::new(None),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `Authorization` header value (marked sensitive), from the cache when the file did
    /// not change. A missing, empty or unusable file is retryable: the Secret may be mounted
    /// or fixed later, and buffered data must not be lost meanwhile.
    pub fn header_value(&self) -> Result<HeaderValue, SendError> {
        let path = self.path.display();
        let meta = std::fs::metadata(&self.path).map_err(|e| SendError::Retryable {
            reason: format!("cannot read credential file {path}: {e}"),
            retry_after: None,
        })?;
        let modified = meta.modified().ok();
        let len = meta.len();
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cached.as_ref() {
            if c.modified == modified && c.len == len && modified.is_some() {
                return Ok(c.header.clone());
            }
        }
        let content = std::fs::read_to_string(&self.path).map_err(|e| SendError::Retryable {
            reason: format!("cannot read credential file {path}: {e}"),
            retry_after: None,
        })?;
        let token = content.trim();
        if token.is_empty() {
            return Err(SendError::Retryable {
                reason: format!("credential file {path} is empty"),
                retry_after: None,
            });
        }
        let text = match &self.format {
            CredentialFormat::Scheme(scheme) => format!("{scheme} {token}"),
            CredentialFormat::Basic(username) => {
                use base64::Engine as _;
                let pair = format!("{username}:{token}");
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            CredentialFormat::Raw => token.to_owned(),
        };
        let mut header = HeaderValue::from_str(&text).map_err(|_| SendError::Retryable {
            reason: format!("credential file {path} holds characters not allowed in a header"),
            retry_after: None,
        })?;
        header.set_sensitive(true);
        *cached = Some(CachedCredential {
            modified,
            len,
            header: header.clone(),
        });
        Ok(header)
    }
}

/// Settings of one exporter's HTTP client; `field` is the exporter's config path
/// (`loki`, `prometheusRemoteWrite`, `otlp`, `splunkHec`, `named[0].loki`).
#[derive(Debug)]
pub struct HttpSettings<'a> {
    pub field: &'a str,
    pub ca_file: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub credential: Option<CredentialFile>,
    pub access: Access,
}

/// The push URL and client of a generic HTTP push exporter (`HttpSink`: Loki, remote write),
/// with errors naming `exporters.<field>.…`.
pub fn push_client(
    field: &str,
    config: &vigil_crds::agent_config::HttpSink,
) -> Result<(HttpClient, Url), SinkConfigError> {
    let vigil_crds::agent_config::HttpSink {
        url,
        tenant,
        bearer_token_file,
        ca_file,
        basic_auth,
        headers,
        client_cert_file,
        client_key_file,
        signals: _,
    } = config;
    let url = parse_url(&format!("{field}.url"), url)?;
    let credential = credential(field, bearer_token_file.as_deref(), basic_auth.as_ref())?;
    let access = access(
        field,
        headers,
        client_cert_file.as_deref(),
        client_key_file.as_deref(),
        credential.is_some(),
        tenant.is_some(),
    )?;
    let client = HttpClient::new(HttpSettings {
        field,
        ca_file: ca_file.as_deref(),
        tenant: tenant.as_deref(),
        credential,
        access,
    })?;
    Ok((client, url))
}

/// An HTTP client for one exporter.
#[derive(Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    tenant: Option<HeaderValue>,
    credential: Option<CredentialFile>,
    access: Access,
}

/// A response, before its status is judged.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

impl HttpResponse {
    /// The body of a 2xx response, else the error its status maps to.
    pub fn into_result(self) -> Result<Bytes, SendError> {
        if self.status.is_success() {
            Ok(self.body)
        } else {
            Err(status_error(self.status, self.retry_after, &self.body))
        }
    }
}

impl HttpClient {
    /// Builds the client. Reads the CA bundle now (an unreadable `caFile` is a config error);
    /// the credential file is read on each request.
    pub fn new(settings: HttpSettings<'_>) -> Result<Self, SinkConfigError> {
        let HttpSettings {
            field,
            ca_file,
            tenant,
            credential,
            access,
        } = settings;
        let roots = root_store(ca_file, &format!("{field}.caFile"))?;
        let tls = tls_client_config(roots, access.client_identity.as_ref(), field)?;
        let tenant = tenant
            .map(|t| {
                HeaderValue::from_str(t).map_err(|_| {
                    SinkConfigError::invalid(
                        format!("{field}.tenant"),
                        "must be printable text without line breaks",
                    )
                })
            })
            .transpose()?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .build()
            .map_err(|source| SinkConfigError::HttpClient {
                field: field.to_owned(),
                source,
            })?;
        Ok(HttpClient {
            client,
            tenant,
            credential,
            access,
        })
    }

    /// POSTs `body` to `url` with the tenant and credential headers and `headers`, and returns
    /// the response whatever its status. Transport failures (refused, reset, timeout, TLS)
    /// are retryable.
    pub async fn post(
        &self,
        url: &Url,
        content_type: &'static str,
        headers: &[(&'static str, &'static str)],
        body: Vec<u8>,
    ) -> Result<HttpResponse, SendError> {
        let mut request = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, content_type)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let extra = self.access.header_values()?;
        for (name, value) in &extra {
            request = request.header(name.clone(), value.clone());
        }
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Scope-OrgID", tenant.clone());
        }
        let credential = match &self.credential {
            Some(file) => Some(file.header_value()?),
            None => None,
        };
        if let Some(credential) = &credential {
            request = request.header(AUTHORIZATION, credential.clone());
        }
        let response = request.send().await.map_err(|e| transport_error(url, e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let mut body = response
            .bytes()
            .await
            .map_err(|e| transport_error(url, e))?;
        if !status.is_success() {
            // An error body may echo the request's credential: mask it before anything reads it.
            if let Some(credential) = &credential {
                body = mask_credential(body, credential);
            }
            for (_, value) in extra.iter().filter(|(_, v)| v.is_sensitive()) {
                body = mask_credential(body, value);
            }
        }
        Ok(HttpResponse {
            status,
            retry_after,
            body,
        })
    }
}

/// The error for a failed request: retryable unless the request itself could not be built.
fn transport_error(url: &Url, error: reqwest::Error) -> SendError {
    let builder = error.is_builder();
    let timeout = error.is_timeout();
    let mut reason = format!("request to {} failed", redacted_url(url));
    if timeout {
        reason.push_str(": timed out");
    }
    let error = error.without_url();
    let mut source: Option<&dyn std::error::Error> = Some(&error);
    while let Some(e) = source {
        reason.push_str(": ");
        reason.push_str(&e.to_string());
        source = e.source();
    }
    if builder {
        SendError::Permanent { reason }
    } else {
        SendError::Retryable {
            reason,
            retry_after: None,
        }
    }
}

/// A URL without user info or query, for messages.
pub fn redacted_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.to_string()
}

/// The error a non-2xx status maps to: 408, 425, 429 and 5xx are retryable, and so are 401
/// and 403 (authentication failed: the credential may be rotated or mounted later, and the
/// data stays buffered meanwhile); everything else is permanent. The message gives the status
/// and the scrubbed start of the body.
pub fn status_error(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> SendError {
    let reason = format!("backend answered {status}{}", body_excerpt(body));
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return auth_failed(reason, retry_after);
    }
    let retryable = status.is_server_error()
        || matches!(
            status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_EARLY | StatusCode::TOO_MANY_REQUESTS
        );
    if retryable {
        SendError::Retryable {
            reason,
            retry_after,
        }
    } else {
        SendError::Permanent { reason }
    }
}

/// The error for a backend that refused the credential: retryable, so the data stays buffered,
/// with a message saying authentication failed.
pub fn auth_failed(reason: String, retry_after: Option<Duration>) -> SendError {
    SendError::Retryable {
        reason: format!("authentication failed, keeping the data buffered and retrying: {reason}"),
        retry_after,
    }
}

/// The `Retry-After` header: delay in seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?.to_str().ok()?, now)
}

/// Parses a `Retry-After` value (`120` or `Wed, 21 Oct 2015 07:28:00 GMT`) into a delay from
/// `now`; a date in the past is no delay.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Retry-After` is understood both as seconds and as an HTTP date.
    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_400);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(1_445_412_480 - 1_445_412_400))
        );
        assert_eq!(
            parse_retry_after("Sat, 21 Oct 2000 07:28:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    /// Statuses map onto retryable and permanent failures as the retry policy expects.
    #[test]
    fn status_mapping() {
        for code in [408, 425, 429, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(
                matches!(
                    status_error(status, Some(Duration::from_secs(3)), b""),
                    SendError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(3)
                ),
                "{code}"
            );
        }
        for code in [401, 403] {
            let status = StatusCode::from_u16(code).unwrap();
            let e = status_error(status, None, b"invalid credentials");
            assert!(matches!(e, SendError::Retryable { .. }), "{code}");
            assert!(e.to_string().starts_with("authentication failed"), "{e}");
        }
        for code in [301, 400, 404, 413, 422] {
            let status = StatusCode::from_u16(code).unwrap();
            let e = status_error(status, None, b"bad\nthing");
            assert!(matches!(e, SendError::Permanent { .. }), "{code}");
            assert!(e.to_string().contains(&code.to_string()));
            assert!(e.to_string().ends_with(": bad thing"), "{e}");
        }
    }

    /// Error messages quote only the start of a long body.
    #[test]
    fn long_bodies_are_truncated() {
        let body = "x".repeat(10_000);
        let e = status_error(StatusCode::BAD_REQUEST, None, body.as_bytes());
        assert!(e.to_string().len() < 300, "{}", e.to_string().len());
        assert!(e.to_string().ends_with('…'));
    }

    /// A backend that echoes the request's credentials in its error body does not put them in
    /// the agent's log: bearer and basic tokens, `Authorization` values, JWTs and secret-named
    /// pairs are scrubbed from the quoted body, and a 401 is retried saying authentication
    /// failed.
    #[test]
    fn error_bodies_are_scrubbed_of_credentials() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ2aWdpbCJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
        let secrets = [
            "s3cr3t-T0ken-abcdef0123456789",
            "dXNlcjpwYXNzd29yZA==",
            jwt,
            "AKIAEXAMPLEKEY123",
            "hunter2hunter2",
        ];
        let bodies = [
            "invalid credentials: Bearer s3cr3t-T0ken-abcdef0123456789".to_owned(),
            "request headers: {\"Authorization\": \"Basic dXNlcjpwYXNzd29yZA==\"}".to_owned(),
            "Authorization: Bearer s3cr3t-T0ken-abcdef0123456789\r\nHost: x".to_owned(),
            format!("token {jwt} expired"),
            "denied for /push?api_key=AKIAEXAMPLEKEY123&x=1".to_owned(),
            "{\"password\":\"hunter2hunter2\",\"user\":\"a\"}".to_owned(),
            "x-api-key: AKIAEXAMPLEKEY123".to_owned(),
        ];
        for body in &bodies {
            let e = status_error(StatusCode::UNAUTHORIZED, None, body.as_bytes());
            let message = e.to_string();
            assert!(matches!(e, SendError::Retryable { .. }), "{message}");
            assert!(message.contains("authentication failed"), "{message}");
            assert!(message.contains("[REDACTED]"), "{message}");
            for secret in secrets {
                assert!(!message.contains(secret), "{secret} in {message}");
            }
        }
        // Ordinary error text is quoted as it is.
        for text in [
            "out of order sample, token bucket empty",
            "Basic authentication required",
        ] {
            let e = status_error(StatusCode::BAD_REQUEST, None, text.as_bytes());
            assert!(e.to_string().ends_with(&format!(": {text}")), "{e}");
        }
    }

    /// The sink's own credential is masked wherever the backend echoes it, even bare, and a
    /// body is only read for its first 512 bytes.
    #[test]
    fn own_credential_is_masked_in_error_bodies() {
        let header = HeaderValue::from_static("Splunk 0b9e2a1c-hec-token");
        let body = Bytes::from_static(b"unknown token 0b9e2a1c-hec-token (0b9e2a1c-hec-token)");
        let masked = mask_credential(body.clone(), &header);
        assert_eq!(masked.len(), body.len());
        assert!(!masked.windows(8).any(|w| w == b"0b9e2a1c"));
        let e = status_error(StatusCode::FORBIDDEN, None, &masked);
        assert!(!e.to_string().contains("0b9e2a1c"), "{e}");
        let untouched = Bytes::from_static(b"no credential here");
        assert_eq!(mask_credential(untouched.clone(), &header), untouched);

        let mut long = "y".repeat(600);
        long.push_str("Bearer s3cr3t-T0ken-abcdef0123456789");
        let e = status_error(StatusCode::BAD_REQUEST, None, long.as_bytes());
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }

    /// The credential file is re-read when it changes, and its content never shows up in
    /// `Debug` output.
    #[test]
    fn credential_file_rotates_and_stays_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first-secret\n").unwrap();
        let credential = CredentialFile::bearer(&path);
        assert_eq!(
            credential.header_value().unwrap().to_str().unwrap(),
            "Bearer first-secret"
        );
        assert!(credential.header_value().unwrap().is_sensitive());
        // A different length guarantees a change is seen even within the mtime granularity.
        std::fs::write(&path, "second-longer-secret").unwrap();
        assert_eq!(
            credential.header_value().unwrap().to_str().unwrap(),
            "Bearer second-longer-secret"
        );
        let debug = format!("{credential:?}");
        assert!(!debug.contains("first-secret"), "{debug}");
        assert!(!debug.contains("second-longer"), "{debug}");
        std::fs::write(&path, "  \n").unwrap();
        let e = credential.header_value().unwrap_err();
        assert!(matches!(e, SendError::Retryable { .. }));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            credential.header_value(),
            Err(SendError::Retryable { .. })
        ));
    }

    /// Basic authentication is `Basic base64(username:password)` with the password read from
    /// its file (trimmed, re-read when it changes); a header from a Secret file is sent as it
    /// is and marked sensitive, a literal one is not; neither value shows in `Debug` output.
    #[test]
    fn basic_auth_and_secret_headers_come_from_files() {
        use vigil_crds::agent_config::{BasicAuthFile, HeaderConfig};
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "p4ss-word\n").unwrap();
        let basic = BasicAuthFile {
            username: "123456".into(),
            password_file: password.display().to_string(),
        };
        let file = credential("loki", None, Some(&basic)).unwrap().unwrap();
        // base64("123456:p4ss-word")
        assert_eq!(
            file.header_value().unwrap().to_str().unwrap(),
            "Basic MTIzNDU2OnA0c3Mtd29yZA=="
        );
        assert!(!format!("{file:?}").contains("p4ss"));
        let bad = BasicAuthFile {
            username: "a:b".into(),
            ..basic
        };
        let e = credential("loki", None, Some(&bad)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("exporters.loki.basicAuth.username: "),
            "{e}"
        );

        let key = dir.path().join("api-key");
        std::fs::write(&key, "k-123456789\n").unwrap();
        let headers = [
            HeaderConfig {
                name: "X-Org".into(),
                value: Some("shop".into()),
                value_file: None,
            },
            HeaderConfig {
                name: "X-Api-Key".into(),
                value: None,
                value_file: Some(key.display().to_string()),
            },
        ];
        let access = access("loki", &headers, None, None, false, false).unwrap();
        let values = access.header_values().unwrap();
        assert_eq!(values[0].0.as_str(), "x-org");
        assert_eq!(values[0].1.to_str().unwrap(), "shop");
        assert!(!values[0].1.is_sensitive());
        assert_eq!(values[1].1.to_str().unwrap(), "k-123456789");
        assert!(values[1].1.is_sensitive());
        assert!(!format!("{access:?}").contains("k-123456789"));
        // An echoed secret header value is masked like the credential.
        let masked = mask_credential(Bytes::from_static(b"bad key k-123456789"), &values[1].1);
        assert!(!masked.windows(11).any(|w| w == b"k-123456789"));
    }
}
