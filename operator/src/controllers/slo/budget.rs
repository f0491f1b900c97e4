//! The remaining error budget of an `SLO`, read from Prometheus for its status (and the
//! `Budget` column of `kubectl get slo`): an instant query of
//! `slo:period_error_budget_remaining:ratio`, the lowest group's when the objective has
//! `groupBy`. Best effort: an unreachable Prometheus or no data yet leaves the field unset.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use kube::ResourceExt;
use vigil_crds::Slo;

use crate::render::{namespace_of, promql_str};

/// How long one query may take before the status is written without it.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// The PromQL reading `slo`'s lowest remaining budget.
pub fn budget_query(slo: &Slo) -> String {
    format!(
        r#"min(slo:period_error_budget_remaining:ratio{{namespace="{}", app="{}", slo="{}"}})"#,
        promql_str(&namespace_of(slo)),
        promql_str(&slo.spec.app_ref.name),
        promql_str(&slo.name_any())
    )
}

/// `/api/v1/query?query=<query>` under `base` (an `http://` URL).
pub fn query_url(base: &str, query: &str) -> String {
    let mut encoded = String::with_capacity(query.len() * 3);
    for byte in query.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!(
        "{}/api/v1/query?query={encoded}",
        base.trim_end_matches('/')
    )
}

/// The first sample of a Prometheus instant-query response as a percentage such as `87.5%`;
/// `None` when the response has no sample or is not a success.
pub fn percent_from_response(body: &[u8]) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    if json["status"] != "success" {
        return None;
    }
    let value: f64 = json["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()?;
    value.is_finite().then(|| {
        format!(
            "{}%",
            crate::render::alerts::num((value * 1000.0).round() / 10.0)
        )
    })
}

/// Reads `slo`'s remaining budget from the Prometheus at `base`, if it answers in time.
pub async fn read(base: &str, slo: &Slo) -> Option<String> {
    if !base.starts_with("http://") {
        return None;
    }
    let uri: http::Uri = query_url(base, &budget_query(slo)).parse().ok()?;
    let client = HttpClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = http::Request::get(uri).body(Empty::new()).ok()?;
    let fetch = async {
        let response = client.request(request).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = response.into_body().collect().await.ok()?.to_bytes();
        percent_from_response(&body)
    };
    match tokio::time::timeout(QUERY_TIMEOUT, fetch).await {
        Ok(found) => found,
        Err(_) => {
            tracing::debug!(slo = %slo.name_any(), "budget query timed out");
            None
        }
    }
}
