//! The analytics engine's Prometheus client: `query_range` and instant `query` over HTTP(S)
//! against Prometheus or any server speaking its HTTP API (Thanos, Mimir, VictoriaMetrics).
//!
//! Credentials come from files read on every request (a rotated token is picked up without a
//! restart): a bearer token, or a basic-auth user name and password. Extra headers (such as
//! `X-Scope-OrgID` for a Mimir tenant) go on every request; a custom CA replaces the system
//! roots. No credential or header value is ever logged or put into an error message.
//!
//! Long ranges are split into chunks under Prometheus' limit of 11,000 points per series and
//! merged back into one [`Series`] per label set.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use crate::analytics::series::Series;

/// Most points one `query_range` chunk asks for: under Prometheus' 11,000 per series.
pub const MAX_POINTS_PER_QUERY: i64 = 10_000;

/// The labels of one result series (without `__name__`).
pub type Labels = BTreeMap<String, String>;

/// Where Prometheus is and how to authenticate to it.
#[derive(Clone, Default)]
pub struct PrometheusSettings {
    /// Base URL, such as `http://prometheus:9090` or `https://mimir/prometheus`.
    pub url: String,
    /// File holding a bearer token, read on every request.
    pub bearer_token_file: Option<PathBuf>,
    /// Files holding the basic-auth user name and password, read on every request.
    pub basic_auth_files: Option<(PathBuf, PathBuf)>,
    /// Headers sent on every request (values are treated as secrets).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// PEM file of the CA certificates trusted instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// How long one request may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for PrometheusSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("PrometheusSettings")
            .field("url", &self.url)
            .field("bearer_token_file", &self.bearer_token_file)
            .field("basic_auth_files", &self.basic_auth_files)
            .field("headers", &names)
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why a Prometheus request failed.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("prometheus URL {url:?} is not an http:// or https:// URL")]
    Url { url: String },
    #[error("cannot read the CA file {path}")]
    CaFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the CA file {path} holds no usable PEM certificate")]
    NoCertificate { path: String },
    #[error("cannot set up TLS for prometheus: {reason}")]
    Tls { reason: String },
    #[error("cannot read the {what} file {path}")]
    Credentials {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the {what} file {path} does not hold a valid header value")]
    CredentialValue { what: &'static str, path: String },
    #[error(
        "TLS handshake with prometheus at {base} failed: {reason} (is --prometheus-ca-file \
         the CA that signed its certificate?)"
    )]
    Handshake { base: String, reason: String },
    #[error("cannot reach prometheus at {base}")]
    Connect {
        base: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("prometheus at {base} did not answer within {seconds}s")]
    Timeout { base: String, seconds: u64 },
    #[error(
        "prometheus refused the credentials (HTTP {status}: {body}); check the bearer token \
         or basic-auth files"
    )]
    Unauthorized { status: u16, body: String },
    #[error("prometheus answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("prometheus refused the query ({error_type}): {error}")]
    Api { error_type: String, error: String },
    #[error("cannot decode prometheus' answer: {reason}")]
    Decode { reason: String },
}

impl PrometheusError {
    /// A stable PascalCase name for conditions and logs.
    pub fn category(&self) -> &'static str {
        match self {
            PrometheusError::Url { .. }
            | PrometheusError::CaFile { .. }
            | PrometheusError::NoCertificate { .. }
            | PrometheusError::Tls { .. }
            | PrometheusError::Credentials { .. }
            | PrometheusError::CredentialValue { .. }
            | PrometheusError::Handshake { .. } => "PrometheusMisconfigured",
            PrometheusError::Unauthorized { .. } => "PrometheusUnauthorized",
            PrometheusError::Connect { .. }
            | PrometheusError::Timeout { .. }
            | PrometheusError::Status { .. } => "PrometheusUnavailable",
            PrometheusError::Api { .. } => "QueryRejected",
            PrometheusError::Decode { .. } => "PrometheusUnreadable",
        }
    }
}

/// One sample of an instant query.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    /// Unix seconds.
    pub timestamp: f64,
    pub value: f64,
}

/// One result series of a range query, sampled at the query's step.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    pub series: Series,
}

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct PrometheusClient {
    base: String,
    settings: Arc<PrometheusSettings>,
    http: HttpClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

fn tls_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl PrometheusClient {
    /// A client for `settings`; fails on a malformed URL or an unreadable CA file.
    pub fn new(settings: PrometheusSettings) -> Result<PrometheusClient, PrometheusError> {
        let base = settings.url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://"))
            || base.parse::<http::Uri>().is_err()
        {
            return Err(PrometheusError::Url { url: settings.url });
        }
        let tls_error = |e: rustls::Error| PrometheusError::Tls {
            reason: e.to_string(),
        };
        let builder = match &settings.ca_file {
            Some(path) => {
                let shown = path.display().to_string();
                let pem = std::fs::read(path).map_err(|source| PrometheusError::CaFile {
                    path: shown.clone(),
                    source,
                })?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(PrometheusError::NoCertificate { path: shown });
                }
                let config = rustls::ClientConfig::builder_with_provider(tls_provider())
                    .with_safe_default_protocol_versions()
                    .map_err(tls_error)?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
            None => match hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(tls_provider())
            {
                Ok(builder) => builder,
                // No system roots (a scratch image): plain HTTP still works; HTTPS needs
                // --prometheus-ca-file.
                Err(_) => {
                    let config = rustls::ClientConfig::builder_with_provider(tls_provider())
                        .with_safe_default_protocol_versions()
                        .map_err(tls_error)?
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth();
                    hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
                }
            },
        };
        let connector = builder.https_or_http().enable_http1().build();
        let http = HttpClient::builder(TokioExecutor::new()).build(connector);
        Ok(PrometheusClient {
            base,
            settings: Arc::new(settings),
            http,
        })
    }

    /// The base URL (no credentials: they never go into the URL).
    pub fn base(&self) -> &str {
        &self.base
    }

    fn credential(&self, what: &'static str, path: &PathBuf) -> Result<String, PrometheusError> {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .map_err(|source| PrometheusError::Credentials {
                what,
                path: path.display().to_string(),
                source,
            })
    }

    fn authorization(&self) -> Result<Option<HeaderValue>, PrometheusError> {
        let text = if let Some(path) = &self.settings.bearer_token_file {
            format!("Bearer {}", self.credential("bearer token", path)?)
        } else if let Some((user, password)) = &self.settings.basic_auth_files {
            let pair = format!(
                "{}:{}",
                self.credential("basic-auth username", user)?,
                self.credential("basic-auth password", password)?
            );
            format!("Basic {}", base64(pair.as_bytes()))
        } else {
            return Ok(None);
        };
        let mut value =
            HeaderValue::from_str(&text).map_err(|_| PrometheusError::CredentialValue {
                what: if self.settings.bearer_token_file.is_some() {
                    "bearer token"
                } else {
                    "basic-auth"
                },
                path: self
                    .settings
                    .bearer_token_file
                    .as_ref()
                    .or(self.settings.basic_auth_files.as_ref().map(|(u, _)| u))
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    /// POSTs `form` to `path` under the base URL and returns the `data` of a successful answer.
    async fn call(&self, path: &str, form: &str) -> Result<serde_json::Value, PrometheusError> {
        let uri: http::Uri =
            format!("{}{path}", self.base)
                .parse()
                .map_err(|_| PrometheusError::Url {
                    url: self.base.clone(),
                })?;
        let mut request = http::Request::post(uri)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form.to_owned())))
            .map_err(|_| PrometheusError::Url {
                url: self.base.clone(),
            })?;
        let headers = request.headers_mut();
        for (name, value) in &self.settings.headers {
            let mut value = value.clone();
            value.set_sensitive(true);
            headers.insert(name.clone(), value);
        }
        if let Some(auth) = self.authorization()? {
            headers.insert(AUTHORIZATION, auth);
        }
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|source| match tls_failure(&source) {
                    Some(reason) => PrometheusError::Handshake {
                        base: self.base.clone(),
                        reason,
                    },
                    None => PrometheusError::Connect {
                        base: self.base.clone(),
                        source,
                    },
                })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| PrometheusError::Decode {
                    reason: format!("body cut off: {e}"),
                })?
                .to_bytes();
            Ok::<_, PrometheusError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.settings.timeout, exchange)
            .await
            .map_err(|_| PrometheusError::Timeout {
                base: self.base.clone(),
                seconds: self.settings.timeout.as_secs().max(1),
            })??;
        parse_envelope(status.as_u16(), &body)
    }

    /// The instant query `query` at `time` (Unix seconds).
    pub async fn query(&self, query: &str, time: f64) -> Result<Vec<Sample>, PrometheusError> {
        let form = format!("query={}&time={}", form_encode(query), time);
        let data = self.call("/api/v1/query", &form).await?;
        parse_vector(&data)
    }

    /// The range query `query` from `start` to `end` (Unix seconds, both aligned to `step`
    /// by the caller, `end` included), split into chunks of at most
    /// [`MAX_POINTS_PER_QUERY`] points; one [`RangeSeries`] per label set covering the whole
    /// range, `NaN` where a chunk had no point.
    pub async fn query_range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Vec<RangeSeries>, PrometheusError> {
        let step = step.max(1);
        let points = usize::try_from((end - start) / step + 1).unwrap_or(0);
        let mut merged: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
        for (chunk_start, chunk_end) in chunks(start, end, step) {
            let form = format!(
                "query={}&start={chunk_start}&end={chunk_end}&step={step}",
                form_encode(query)
            );
            let data = self.call("/api/v1/query_range", &form).await?;
            for (labels, samples) in parse_matrix(&data)? {
                let values = merged
                    .entry(labels)
                    .or_insert_with(|| vec![f64::NAN; points]);
                for (timestamp, value) in samples {
                    let offset = (timestamp - start as f64) / step as f64;
                    let index = offset.round();
                    if index >= 0.0 && (index as usize) < points {
                        values[index as usize] = value;
                    }
                }
            }
        }
        Ok(merged
            .into_iter()
            .map(|(labels, values)| RangeSeries {
                labels,
                series: Series {
                    start,
                    step,
                    values,
                },
            })
            .collect())
    }
}

/// The TLS error somewhere in `error`'s causes, as rustls words it (such as `invalid peer
/// certificate: UnknownIssuer`). TLS errors reach the client inside `io::Error`s (tokio-rustls
/// wraps rustls' error, hyper-rustls wraps that again), whose `source()` skips the error they
/// wrap, so every `io::Error` is unwrapped too.
fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        let mut inner: &(dyn std::error::Error + 'static) = e;
        loop {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(tls.to_string());
            }
            match inner
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                Some(wrapped) => inner = wrapped,
                None => break,
            }
        }
        cause = e.source();
    }
    None
}

/// `[start, end]` at `step` cut into ranges of at most [`MAX_POINTS_PER_QUERY`] points.
pub fn chunks(start: i64, end: i64, step: i64) -> Vec<(i64, i64)> {
    let step = step.max(1);
    let mut out = Vec::new();
    let mut from = start;
    while from <= end {
        let to = (from + (MAX_POINTS_PER_QUERY - 1) * step).min(end);
        out.push((from, to));
        from = to + step;
    }
    out
}

/// `application/x-www-form-urlencoded` encoding of `text`.
pub fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    status: String,
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// The `data` of a Prometheus API answer with HTTP status `status`, or why there is none.
pub fn parse_envelope(status: u16, body: &[u8]) -> Result<serde_json::Value, PrometheusError> {
    match serde_json::from_slice::<Envelope>(body) {
        Ok(envelope) if envelope.status == "success" && (200..300).contains(&status) => {
            Ok(envelope.data)
        }
        Ok(envelope) if envelope.status == "error" || envelope.error.is_some() => {
            Err(PrometheusError::Api {
                error_type: envelope.error_type.unwrap_or_else(|| "unknown".to_owned()),
                error: envelope.error.unwrap_or_default(),
            })
        }
        _ if matches!(status, 401 | 403) => Err(PrometheusError::Unauthorized {
            status,
            body: excerpt(body).trim().to_owned(),
        }),
        _ if !(200..300).contains(&status) => Err(PrometheusError::Status {
            status,
            body: excerpt(body),
        }),
        Ok(envelope) => Err(PrometheusError::Decode {
            reason: format!("status {:?} is neither success nor error", envelope.status),
        }),
        Err(e) => Err(PrometheusError::Decode {
            reason: format!("{e} (body starts {:?})", excerpt(body)),
        }),
    }
}

/// The first 200 characters of `body`, for error messages.
fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}

/// A sample value as Prometheus writes it: a decimal string, `NaN`, `+Inf` or `-Inf`.
pub fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

fn decode(reason: impl Into<String>) -> PrometheusError {
    PrometheusError::Decode {
        reason: reason.into(),
    }
}

fn labels_of(result: &serde_json::Value) -> Result<Labels, PrometheusError> {
    let metric = result
        .get("metric")
        .and_then(|m| m.as_object())
        .ok_or_else(|| decode("a result has no metric object"))?;
    Ok(metric
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect())
}

fn point(pair: &serde_json::Value) -> Result<(f64, f64), PrometheusError> {
    let timestamp = pair
        .get(0)
        .and_then(|t| t.as_f64())
        .ok_or_else(|| decode("a point has no numeric timestamp"))?;
    let text = pair
        .get(1)
        .and_then(|v| v.as_str())
        .ok_or_else(|| decode("a point has no value string"))?;
    let value = parse_value(text).ok_or_else(|| decode(format!("{text:?} is not a number")))?;
    Ok((timestamp, value))
}

fn results<'a>(
    data: &'a serde_json::Value,
    expected: &str,
) -> Result<&'a Vec<serde_json::Value>, PrometheusError> {
    let kind = data
        .get("resultType")
        .and_then(|t| t.as_str())
        .unwrap_or("");
    if kind != expected {
        return Err(decode(format!(
            "expected a {expected} result, got {kind:?} (the query must return an instant vector)"
        )));
    }
    data.get("result")
        .and_then(|r| r.as_array())
        .ok_or_else(|| decode("the result is not a list"))
}

/// One series of a `matrix` result: its labels and `(timestamp, value)` points.
pub type MatrixSeries = (Labels, Vec<(f64, f64)>);

/// The series of a `matrix` result.
pub fn parse_matrix(data: &serde_json::Value) -> Result<Vec<MatrixSeries>, PrometheusError> {
    results(data, "matrix")?
        .iter()
        .map(|result| {
            let points = result
                .get("values")
                .and_then(|v| v.as_array())
                .ok_or_else(|| decode("a matrix series has no values"))?
                .iter()
                .map(point)
                .collect::<Result<Vec<_>, _>>()?;
            Ok((labels_of(result)?, points))
        })
        .collect()
}

/// The samples of a `vector` result.
pub fn parse_vector(data: &serde_json::Value) -> Result<Vec<Sample>, PrometheusError> {
    results(data, "vector")?
        .iter()
        .map(|result| {
            let (timestamp, value) = point(
                result
                    .get("value")
                    .ok_or_else(|| decode("a vector sample has no value"))?,
            )?;
            Ok(Sample {
                labels: labels_of(result)?,
                timestamp,
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]

    use super::*;

    /// A matrix keeps each series' labels without `__name__` and reads `NaN` and `±Inf`.
    #[test]
    fn matrix_results_are_read_with_special_values() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"up","job":"a"},"values":[[1700000000,"1.5"],[1700000060.5,"NaN"],[1700000120,"+Inf"],[1700000180,"-Inf"]]},
            {"metric":{},"values":[]}]}}"#;
        let data = parse_envelope(200, body).unwrap();
        let series = parse_matrix(&data).unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(
            series[0].0,
            Labels::from([("job".to_owned(), "a".to_owned())])
        );
        let values: Vec<f64> = series[0].1.iter().map(|p| p.1).collect();
        assert_eq!(values[0], 1.5);
        assert!(values[1].is_nan());
        assert_eq!(values[2], f64::INFINITY);
        assert_eq!(values[3], f64::NEG_INFINITY);
        assert_eq!(series[0].1[1].0, 1700000060.5);
        assert!(series[1].0.is_empty() && series[1].1.is_empty());
    }

    /// A vector result gives one sample per series; a matrix where a vector was expected is
    /// an error saying what the query must return.
    #[test]
    fn vector_results_and_wrong_kinds() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"p"},"value":[12.5,"3"]}]}}"#;
        let data = parse_envelope(200, body).unwrap();
        let samples = parse_vector(&data).unwrap();
        assert_eq!(
            samples,
            vec![Sample {
                labels: Labels::from([("pod".to_owned(), "p".to_owned())]),
                timestamp: 12.5,
                value: 3.0
            }]
        );
        let e = parse_matrix(&data).unwrap_err();
        assert!(e.to_string().contains("expected a matrix result"), "{e}");
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#;
        let e = parse_vector(&parse_envelope(200, scalar).unwrap()).unwrap_err();
        assert!(e.to_string().contains("instant vector"), "{e}");
    }

    /// Error answers surface Prometheus' `errorType` and `error`; non-JSON answers give the
    /// HTTP status and the start of the body; malformed points are named.
    #[test]
    fn errors_are_surfaced_clearly() {
        let body =
            br#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected"}"#;
        let e = parse_envelope(400, body).unwrap_err();
        assert_eq!(e.category(), "QueryRejected");
        assert_eq!(
            e.to_string(),
            "prometheus refused the query (bad_data): 1:5: parse error: unexpected"
        );
        let e = parse_envelope(502, b"<html>Bad Gateway</html>").unwrap_err();
        assert_eq!(e.category(), "PrometheusUnavailable");
        assert!(e.to_string().contains("HTTP 502: <html>Bad Gateway"), "{e}");
        let e = parse_envelope(401, b"Unauthorized\n").unwrap_err();
        assert_eq!(e.category(), "PrometheusUnauthorized");
        assert_eq!(
            e.to_string(),
            "prometheus refused the credentials (HTTP 401: Unauthorized); check the bearer \
             token or basic-auth files"
        );
        let e = parse_envelope(200, b"not json").unwrap_err();
        assert_eq!(e.category(), "PrometheusUnreadable");
        let bad = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"abc"]]}]}}"#;
        let e = parse_matrix(&parse_envelope(200, bad).unwrap()).unwrap_err();
        assert!(e.to_string().contains("\"abc\" is not a number"), "{e}");
    }

    /// Chunks cover the range exactly, never overlap and never exceed the point limit.
    #[test]
    fn ranges_are_chunked_under_the_point_limit() {
        assert_eq!(chunks(0, 600, 60), vec![(0, 600)]);
        let step = 60;
        let end = 25_000 * step;
        let parts = chunks(0, end, step);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], (0, 9_999 * step));
        assert_eq!(parts[1].0, parts[0].1 + step);
        assert_eq!(parts.last().unwrap().1, end);
        for (from, to) in &parts {
            assert!((to - from) / step < MAX_POINTS_PER_QUERY);
        }
        let total: i64 = parts.iter().map(|(f, t)| (t - f) / step + 1).sum();
        assert_eq!(total, 25_001);
    }

    /// Form encoding leaves nothing PromQL-special unescaped; base64 matches RFC 4648.
    #[test]
    fn encodings() {
        assert_eq!(
            form_encode(r#"sum(rate(x{a="b c"}[5m]))+1"#),
            "sum%28rate%28x%7Ba%3D%22b%20c%22%7D%5B5m%5D%29%29%2B1"
        );
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("user:pässword", "dXNlcjpww6Rzc3dvcmQ="),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    /// A URL that is not http(s) and a CA file without certificates are refused by name;
    /// the settings' debug text names header names but never their values.
    #[test]
    fn bad_settings_are_refused() {
        let e = PrometheusClient::new(PrometheusSettings {
            url: "prometheus:9090".into(),
            ..PrometheusSettings::default()
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("\"prometheus:9090\""), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "no certificate here").unwrap();
        let e = PrometheusClient::new(PrometheusSettings {
            url: "https://mimir".into(),
            ca_file: Some(ca.clone()),
            ..PrometheusSettings::default()
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains(&ca.display().to_string()), "{e}");
        let settings = PrometheusSettings {
            url: "http://p".into(),
            headers: vec![(
                HeaderName::from_static("x-scope-orgid"),
                HeaderValue::from_static("tenant-secret"),
            )],
            ..PrometheusSettings::default()
        };
        let shown = format!("{settings:?}");
        assert!(shown.contains("x-scope-orgid") && !shown.contains("tenant-secret"));
    }
}
