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

#[cfg(test)]
mod tests {
    //! The budget reader against a real Prometheus that records
    //! `slo:period_error_budget_remaining:ratio` for two groups of one objective.

    #![allow(clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

    use std::process::{Child, Command, Stdio};

    use super::*;
    use crate::render::promtool_tests::tool;

    fn objective() -> Slo {
        serde_yaml::from_str(
            "apiVersion: vigil.dev/v1alpha1\nkind: SLO\nmetadata: {name: checkout \"avail\", namespace: shop}\nspec:\n  appRef: {name: checkout}\n  objective: 99.9\n  sli: {availability: {}}\n",
        )
        .expect("slo")
    }

    /// Stops the Prometheus when the test ends, however it ends.
    struct Running(Child);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port")
    }

    /// The query names the objective (quotes escaped) and is percent-encoded into the URL.
    #[test]
    fn query_is_scoped_and_encoded() {
        let query = budget_query(&objective());
        assert_eq!(
            query,
            r#"min(slo:period_error_budget_remaining:ratio{namespace="shop", app="checkout", slo="checkout \"avail\""})"#
        );
        let url = query_url("http://prom:9090/", &query);
        assert!(
            url.starts_with("http://prom:9090/api/v1/query?query=min%28slo%3Aperiod"),
            "{url}"
        );
        assert!(
            !url[url.find('?').unwrap_or(0)..].contains(['"', ' ', '{']),
            "{url}"
        );
    }

    /// Responses without a sample, with NaN or with an error give no figure.
    #[test]
    fn only_a_finite_sample_is_a_figure() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.8755"]}]}}"#;
        assert_eq!(percent_from_response(ok).as_deref(), Some("87.6%"));
        for none in [
            &br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#[..],
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#,
            br#"{"status":"error","error":"bad"}"#,
            b"not json",
        ] {
            assert_eq!(percent_from_response(none), None);
        }
    }

    /// A real Prometheus recording the budget of two routes of the objective (and another
    /// objective's) answers with the lowest of this objective's: `-12.5%`. An unreachable
    /// Prometheus gives no figure rather than an error.
    #[tokio::test]
    async fn reads_the_lowest_group_budget_from_prometheus() {
        let dir = tempfile::tempdir().expect("tempdir");
        let labels = |slo: &str, route: &str| {
            format!("{{namespace: shop, app: checkout, slo: '{slo}', route: '{route}'}}")
        };
        let rules = format!(
            "groups:\n- name: budgets\n  rules:\n\
             \x20 - record: slo:period_error_budget_remaining:ratio\n    expr: vector(0.875)\n    labels: {}\n\
             \x20 - record: slo:period_error_budget_remaining:ratio\n    expr: vector(-0.125)\n    labels: {}\n\
             \x20 - record: slo:period_error_budget_remaining:ratio\n    expr: vector(-5)\n    labels: {}\n",
            labels("checkout \"avail\"", "/search"),
            labels("checkout \"avail\"", "/checkout"),
            labels("other", "/checkout"),
        );
        std::fs::write(dir.path().join("rules.yml"), rules).expect("rules");
        std::fs::write(
            dir.path().join("prometheus.yml"),
            "global: {evaluation_interval: 1s}\nrule_files: [rules.yml]\n",
        )
        .expect("config");
        let port = free_port();
        let _prometheus = Running(
            Command::new(tool("prometheus"))
                .current_dir(dir.path())
                .arg("--config.file=prometheus.yml")
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start prometheus"),
        );
        let base = format!("http://127.0.0.1:{port}");
        let slo = objective();
        let mut found = None;
        // Wait for start-up and the first rule evaluation (a readiness wait, not a timing
        // assertion).
        for _ in 0..600 {
            found = read(&base, &slo).await;
            if found.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(found.as_deref(), Some("-12.5%"));

        assert_eq!(
            read(&format!("http://127.0.0.1:{}", free_port()), &slo).await,
            None
        );
        assert_eq!(read("https://prometheus.example", &slo).await, None);
    }
}
