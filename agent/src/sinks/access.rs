//! What an exporter adds to a plain connection besides the tenant and the bearer token: HTTP
//! basic authentication with the password in a mounted Secret file, extra headers (literal, or
//! read from Secret files and marked sensitive), and a client certificate for mutual TLS. The
//! HTTP client ([`super::http`]) and the OTLP/gRPC transport both take an [`Access`].
//!
//! Nothing secret leaves this module but as a header value marked sensitive: `Debug` output
//! names files and counts certificates, never prints a password, header value or key, and a
//! key that does not parse is reported without quoting it.

use std::fmt;

use reqwest::header::{HeaderName, HeaderValue};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::http::{read_ca_bundle, CredentialFile};
use super::{SendError, SinkConfigError};

/// What an exporter adds to the plain connection besides tenant and token: extra headers
/// (literal or read from mounted Secret files) and a client certificate for mutual TLS.
#[derive(Debug, Default)]
pub struct Access {
    /// Extra headers in the configured order.
    pub headers: Vec<(HeaderName, HeaderSource)>,
    /// The client certificate chain and its key, read when the exporter is built.
    pub client_identity: Option<ClientIdentity>,
}

/// Where an extra header's value comes from.
#[derive(Debug)]
pub enum HeaderSource {
    /// A value written in the config (not secret).
    Literal(HeaderValue),
    /// A mounted Secret file, re-read when it changes; the value is marked sensitive.
    File(CredentialFile),
}

/// A client certificate chain and its private key.
pub struct ClientIdentity {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: rustls_pki_types::PrivateKeyDer<'static>,
    /// The PEM texts, for tonic's TLS settings.
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is never printed.
        f.debug_struct("ClientIdentity")
            .field("certs", &self.certs.len())
            .finish_non_exhaustive()
    }
}

/// The credential of an exporter: a bearer token file or basic authentication, not both.
/// `field` is the exporter's config path.
pub fn credential(
    field: &str,
    bearer_token_file: Option<&str>,
    basic_auth: Option<&vigil_crds::agent_config::BasicAuthFile>,
) -> Result<Option<CredentialFile>, SinkConfigError> {
    match (bearer_token_file, basic_auth) {
        (Some(_), Some(_)) => Err(SinkConfigError::invalid(
            format!("{field}.basicAuth"),
            "set bearerTokenFile or basicAuth, not both",
        )),
        (Some(path), None) => Ok(Some(CredentialFile::bearer(path))),
        (None, Some(basic)) => {
            if basic.username.is_empty()
                || basic.username.contains(':')
                || basic.username.chars().any(char::is_control)
            {
                return Err(SinkConfigError::invalid(
                    format!("{field}.basicAuth.username"),
                    "must be non-empty text without ':' or line breaks",
                ));
            }
            Ok(Some(CredentialFile::basic(
                &basic.password_file,
                &basic.username,
            )))
        }
        (None, None) => Ok(None),
    }
}

/// Header names the agent sets itself and a custom header may not replace.
const RESERVED_HEADERS: [&str; 5] = [
    "content-type",
    "content-encoding",
    "content-length",
    "x-prometheus-remote-write-version",
    "user-agent",
];

/// Checks an exporter's extra headers and client certificate and reads the certificate.
/// `has_credential`: the exporter sends its own `Authorization`, which a header may then not
/// replace. `tenant`: likewise for `X-Scope-OrgID`.
pub fn access(
    field: &str,
    headers: &[vigil_crds::agent_config::HeaderConfig],
    client_cert_file: Option<&str>,
    client_key_file: Option<&str>,
    has_credential: bool,
    has_tenant: bool,
) -> Result<Access, SinkConfigError> {
    let mut out = Vec::with_capacity(headers.len());
    for (i, header) in headers.iter().enumerate() {
        let at = format!("{field}.headers[{i}]");
        let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| {
            SinkConfigError::invalid(
                format!("{at}.name"),
                format!("{:?} is not an HTTP header name", header.name),
            )
        })?;
        let lower = name.as_str();
        let taken = RESERVED_HEADERS.contains(&lower)
            || (has_credential && lower == "authorization")
            || (has_tenant && lower == "x-scope-orgid")
            || out
                .iter()
                .any(|(n, _): &(HeaderName, HeaderSource)| n == name);
        if taken {
            return Err(SinkConfigError::invalid(
                format!("{at}.name"),
                format!(
                    "{:?} is already set by the exporter or by another header",
                    header.name
                ),
            ));
        }
        let source = match (&header.value, &header.value_file) {
            (Some(value), None) => {
                HeaderSource::Literal(HeaderValue::from_str(value).map_err(|_| {
                    SinkConfigError::invalid(
                        format!("{at}.value"),
                        "must be printable text without line breaks",
                    )
                })?)
            }
            (None, Some(path)) => HeaderSource::File(CredentialFile::raw(path)),
            _ => {
                return Err(SinkConfigError::invalid(
                    at,
                    "set exactly one of value and valueFile",
                ))
            }
        };
        out.push((name, source));
    }
    let client_identity = match (client_cert_file, client_key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(read_client_identity(field, cert, key)?),
        (Some(_), None) => {
            return Err(SinkConfigError::invalid(
                format!("{field}.clientKeyFile"),
                "is needed with clientCertFile",
            ))
        }
        (None, Some(_)) => {
            return Err(SinkConfigError::invalid(
                format!("{field}.clientCertFile"),
                "is needed with clientKeyFile",
            ))
        }
    };
    Ok(Access {
        headers: out,
        client_identity,
    })
}

/// Reads a PEM client certificate chain and its PEM private key.
fn read_client_identity(
    field: &str,
    cert_file: &str,
    key_file: &str,
) -> Result<ClientIdentity, SinkConfigError> {
    let cert_field = format!("{field}.clientCertFile");
    let certs = read_ca_bundle(cert_file, &cert_field)?;
    let cert_pem = std::fs::read(cert_file).map_err(|source| SinkConfigError::ReadFile {
        field: cert_field,
        path: cert_file.to_owned(),
        source,
    })?;
    let key_field = format!("{field}.clientKeyFile");
    let key_pem = std::fs::read(key_file).map_err(|source| SinkConfigError::ReadFile {
        field: key_field.clone(),
        path: key_file.to_owned(),
        source,
    })?;
    // The parse error is not quoted: it could carry a piece of the key.
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        SinkConfigError::invalid(key_field, format!("{key_file} holds no PEM private key"))
    })?;
    Ok(ClientIdentity {
        certs,
        key,
        cert_pem,
        key_pem,
    })
}

impl Access {
    /// The extra headers' values for one request, and the secret ones among them (to mask in
    /// error bodies). A Secret file that cannot be read is retryable.
    pub fn header_values(&self) -> Result<Vec<(HeaderName, HeaderValue)>, SendError> {
        self.headers
            .iter()
            .map(|(name, source)| {
                let value = match source {
                    HeaderSource::Literal(value) => value.clone(),
                    HeaderSource::File(file) => file.header_value()?,
                };
                Ok((name.clone(), value))
            })
            .collect()
    }
}
